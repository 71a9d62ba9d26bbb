/* Sessions of the long ioctls on open directories (see fh_session.h). */
#include "fuse/fh_session.h"

#include <errno.h>
#include <stdlib.h>

static void session_free(struct fh_table *t, struct fh_session *s)
{
	t->free_data(s->data);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

struct fh_session *fh_session_get(struct fh_table *t, uint64_t fh, bool create, int *err)
{
	pthread_mutex_lock(&t->lock);
	struct fh_session *s = t->head;
	while (s && s->fh != fh)
		s = s->next;
	if (!s && create) {
		s = calloc(1, sizeof(*s));
		if (!s) {
			*err = -ENOMEM;
		} else {
			s->fh = fh;
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
	}
	pthread_mutex_unlock(&t->lock);
	return s;
}

void fh_session_put(struct fh_session *s)
{
	pthread_mutex_unlock(&s->lock);
}

void fh_session_release(struct fh_table *t, uint64_t fh)
{
	pthread_mutex_lock(&t->lock);
	struct fh_session **pp = &t->head, *s;
	while (*pp && (*pp)->fh != fh)
		pp = &(*pp)->next;
	s = *pp;
	if (s)
		*pp = s->next;
	pthread_mutex_unlock(&t->lock);
	if (!s)
		return;
	pthread_mutex_lock(&s->lock); /* a running request finishes first */
	pthread_mutex_unlock(&s->lock);
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
