/* Sessions of the long ioctls on directories (see fh_session.h). */
#include "fuse/fh_session.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The start time of process pid (clock ticks since boot), 0 when it
 * cannot be read (no such process, /proc hidden). */
static uint64_t start_time(pid_t pid)
{
	char path[64], buf[1024];
	if (pid <= 0)
		return 0;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return 0;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	/* Field 2 (the command) may hold spaces and ')': count from the
	 * last ')'; field 22 is the 20th after it. */
	char *p = strrchr(buf, ')');
	if (!p)
		return 0;
	unsigned long long v = 0;
	for (int field = 2; field < 22 && p; field++)
		p = strchr(p + 1, ' ');
	if (!p || sscanf(p + 1, "%llu", &v) != 1)
		return 0;
	return v;
}

static int64_t now_secs(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

void fh_key_of(uint64_t dir, pid_t pid, struct fh_key *key)
{
	key->dir = dir;
	key->pid = pid;
	key->start = start_time(pid);
}

static bool same_key(const struct fh_key *a, const struct fh_key *b)
{
	return a->dir == b->dir && a->pid == b->pid && a->start == b->start;
}

/* Whether the session's caller may still come back: its process runs
 * (same pid, same start time); an unknown caller for IDLE_SECS. */
static bool owner_alive(const struct fh_session *s, int64_t now)
{
	if (!s->key.start)
		return now - s->used < FH_SESSION_IDLE_SECS;
	return start_time(s->key.pid) == s->key.start;
}

static void session_free(struct fh_table *t, struct fh_session *s)
{
	pthread_mutex_lock(&s->lock); /* a running request finishes first */
	pthread_mutex_unlock(&s->lock);
	t->free_data(s->data);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

/* Unlink the sessions whose caller is gone; returns them (table lock). */
static struct fh_session *unlink_dead(struct fh_table *t, int64_t now)
{
	struct fh_session *dead = NULL, **pp = &t->head;
	while (*pp) {
		struct fh_session *s = *pp;
		if (owner_alive(s, now)) {
			pp = &s->next;
			continue;
		}
		*pp = s->next;
		s->next = dead;
		dead = s;
	}
	return dead;
}

struct fh_session *fh_session_get(struct fh_table *t, const struct fh_key *key, bool create,
				  int *err)
{
	int64_t now = now_secs();
	pthread_mutex_lock(&t->lock);
	struct fh_session *dead = unlink_dead(t, now);
	struct fh_session *s = t->head;
	while (s && !same_key(&s->key, key))
		s = s->next;
	if (!s && create) {
		s = calloc(1, sizeof(*s));
		if (!s) {
			*err = -ENOMEM;
		} else {
			s->key = *key;
			s->used = now;
			pthread_mutex_init(&s->lock, NULL);
			pthread_mutex_lock(&s->lock);
			s->next = t->head;
			t->head = s;
		}
	} else if (!s) {
		*err = -ENOENT;
	} else if (pthread_mutex_trylock(&s->lock)) {
		*err = -EBUSY;
		s = NULL;
	} else {
		s->used = now;
	}
	pthread_mutex_unlock(&t->lock);
	/* Freed outside the table's lock: a dead caller's request may still
	 * run (session_free waits for it). */
	while (dead) {
		struct fh_session *next = dead->next;
		session_free(t, dead);
		dead = next;
	}
	return s;
}

void fh_session_put(struct fh_session *s)
{
	pthread_mutex_unlock(&s->lock);
}

void fh_session_release(struct fh_table *t, const struct fh_key *key)
{
	pthread_mutex_lock(&t->lock);
	struct fh_session **pp = &t->head, *s;
	while (*pp && !same_key(&(*pp)->key, key))
		pp = &(*pp)->next;
	s = *pp;
	if (s)
		*pp = s->next;
	pthread_mutex_unlock(&t->lock);
	if (s)
		session_free(t, s);
}

void fh_session_release_all(struct fh_table *t)
{
	pthread_mutex_lock(&t->lock);
	struct fh_session *s = t->head;
	t->head = NULL;
	pthread_mutex_unlock(&t->lock);
	while (s) {
		struct fh_session *next = s->next;
		session_free(t, s);
		s = next;
	}
}
