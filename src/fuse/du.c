/*
 * `reflinkfs du` through ioctls on an open directory of the mount
 * (RFS_IOC_DU_STEP; see fs.h), in the scrub's style: the du belongs to the
 * open directory it was started on, found by the directory's file handle
 * (rfs_fuse_dir_handle), and releasedir ends it, so an interrupted
 * `reflinkfs du` leaves nothing behind.
 *
 * Each step works for about STEP_NS, in pieces of PIECE units under the
 * pool's read lock (rfs_du_step), so one FUSE worker is busy at most that
 * long and writers wait at most one piece.
 */
#include "fuse/rfs_fuse.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define STEP_NS 200000000ll /* 0.2 s of work per ioctl */
#define PIECE 1024          /* units (nodes, items, extent runs) per read-lock hold */

struct usession {
	uint64_t fh;
	uint64_t st_ino; /* the du's PATH, as the caller named it */
	rfs_du *du;
	pthread_mutex_t lock; /* one step at a time; held while stepping */
	struct usession *next;
};

/* g_lock protects the list; a session's du belongs to whoever holds its
 * lock, taken while g_lock is held, so releasedir cannot free it under a
 * running step. */
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static struct usession *g_sessions;

static void session_free(struct usession *s)
{
	rfs_du_end(s->du);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

void rfs_fuse_du_release(uint64_t fh)
{
	pthread_mutex_lock(&g_lock);
	struct usession **pp = &g_sessions, *s;
	while (*pp && (*pp)->fh != fh)
		pp = &(*pp)->next;
	s = *pp;
	if (s)
		*pp = s->next;
	pthread_mutex_unlock(&g_lock);
	if (!s)
		return;
	pthread_mutex_lock(&s->lock); /* a running step finishes first */
	pthread_mutex_unlock(&s->lock);
	session_free(s);
}

void rfs_fuse_du_release_all(void)
{
	pthread_mutex_lock(&g_lock);
	struct usession *s = g_sessions;
	g_sessions = NULL;
	pthread_mutex_unlock(&g_lock);
	while (s) {
		struct usession *next = s->next;
		session_free(s);
		s = next;
	}
}

/* PATH of a request: the directory dir itself or its entry io->name,
 * which must still be the inode io->ino.  *node has no lookup reference
 * of the caller's (rfs_du_begin holds the inode). */
static int target(rfs_fs *fs, rfs_nodeid dir, const struct rfs_ioc_du_step *io,
		  rfs_nodeid *node)
{
	struct stat st;
	size_t len = strnlen(io->name, sizeof(io->name));
	if (len == sizeof(io->name) || memchr(io->name, '/', len) || !strcmp(io->name, ".."))
		return -EINVAL;
	if (!len || !strcmp(io->name, ".")) {
		*node = dir;
		int ret = rfs_fs_getattr(fs, dir, &st);
		if (ret)
			return ret;
	} else {
		int ret = rfs_fs_lookup(fs, dir, io->name, node, &st);
		if (ret)
			return ret;
	}
	return (uint64_t)st.st_ino == io->ino ? 0 : -ESTALE;
}

/* The session of fh, locked; made (starting a du of PATH) when there is
 * none.  NULL with *err set otherwise. */
static struct usession *session_get(rfs_fs *fs, uint64_t fh, rfs_nodeid dir,
				    const struct rfs_ioc_du_step *io, int *err)
{
	pthread_mutex_lock(&g_lock);
	struct usession *s = g_sessions;
	while (s && s->fh != fh)
		s = s->next;
	if (!s) {
		rfs_nodeid node = 0;
		s = calloc(1, sizeof(*s));
		*err = s ? target(fs, dir, io, &node) : -ENOMEM;
		if (!*err)
			*err = rfs_du_begin(fs, node, &s->du);
		/* The du holds the inode open: give back what lookup took. */
		if (node && node != dir)
			rfs_fs_forget(fs, node, 1);
		if (*err) {
			free(s);
			s = NULL;
		} else {
			s->fh = fh;
			s->st_ino = io->ino;
			pthread_mutex_init(&s->lock, NULL);
			s->next = g_sessions;
			g_sessions = s;
			pthread_mutex_lock(&s->lock);
		}
	} else if (s->st_ino != io->ino) {
		*err = -EINVAL; /* one du per open directory */
		s = NULL;
	} else if (pthread_mutex_trylock(&s->lock)) {
		*err = -EBUSY; /* another thread of the caller is stepping */
		s = NULL;
	}
	pthread_mutex_unlock(&g_lock);
	return s;
}

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

int rfs_fuse_du_ioctl(rfs_fs *fs, const struct fuse_ctx *ctx, uint64_t fh, rfs_nodeid dir,
		      struct rfs_ioc_du_step *io)
{
	/* The walk reads directories the caller may not be allowed to
	 * read: root or the owner of the mount, as for the scrub. */
	if (ctx->uid != 0 && ctx->uid != getuid())
		return -EPERM;
	int ret;
	struct usession *s = session_get(fs, fh, dir, io, &ret);
	if (!s)
		return ret;
	int64_t start = now_ns();
	do
		ret = rfs_du_step(s->du, PIECE);
	while (ret == 1 && now_ns() - start < STEP_NS);
	rfs_du_get_stats(s->du, &io->st);
	pthread_mutex_unlock(&s->lock);
	return ret < 0 ? ret : 0;
}
