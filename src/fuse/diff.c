/*
 * `reflinkfs diff` through ioctls on an open directory of the mount
 * (RFS_IOC_DIFF_START, RFS_IOC_DIFF_REPORT; see fs.h), in the scrub's
 * style: the result belongs to the open directory it was computed on,
 * found by the directory's file handle (rfs_fuse_dir_handle), and
 * releasedir frees it, so an interrupted `reflinkfs diff` leaves nothing
 * behind.
 */
#include "fuse/rfs_fuse.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct dsession {
	uint64_t fh;
	rfs_diff *diff;
	pthread_mutex_t lock; /* one request at a time on a handle */
	struct dsession *next;
};

/* g_lock protects the list; a session's diff belongs to whoever holds its
 * lock, taken while g_lock is held, so releasedir cannot free it under a
 * running request. */
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static struct dsession *g_sessions;

static void session_free(struct dsession *s)
{
	rfs_diff_end(s->diff);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

void rfs_fuse_diff_release(uint64_t fh)
{
	pthread_mutex_lock(&g_lock);
	struct dsession **pp = &g_sessions, *s;
	while (*pp && (*pp)->fh != fh)
		pp = &(*pp)->next;
	s = *pp;
	if (s)
		*pp = s->next;
	pthread_mutex_unlock(&g_lock);
	if (!s)
		return;
	pthread_mutex_lock(&s->lock); /* a running request finishes first */
	pthread_mutex_unlock(&s->lock);
	session_free(s);
}

void rfs_fuse_diff_release_all(void)
{
	pthread_mutex_lock(&g_lock);
	struct dsession *s = g_sessions;
	g_sessions = NULL;
	pthread_mutex_unlock(&g_lock);
	while (s) {
		struct dsession *next = s->next;
		session_free(s);
		s = next;
	}
}

/* The session of fh, locked (made when create is set); NULL with *err. */
static struct dsession *session_get(uint64_t fh, bool create, int *err)
{
	pthread_mutex_lock(&g_lock);
	struct dsession *s = g_sessions;
	while (s && s->fh != fh)
		s = s->next;
	if (!s && create) {
		s = calloc(1, sizeof(*s));
		if (!s) {
			*err = -ENOMEM;
		} else {
			s->fh = fh;
			pthread_mutex_init(&s->lock, NULL);
			s->next = g_sessions;
			g_sessions = s;
		}
	} else if (!s) {
		*err = -ENOENT;
	} else if (pthread_mutex_trylock(&s->lock)) {
		*err = -EBUSY; /* another thread of the caller is using it */
		s = NULL;
	} else {
		pthread_mutex_unlock(&g_lock);
		return s;
	}
	if (s)
		pthread_mutex_lock(&s->lock);
	pthread_mutex_unlock(&g_lock);
	return s;
}

static int diff_start(rfs_fs *fs, uint64_t fh, rfs_nodeid a, rfs_nodeid b,
		      struct rfs_ioc_diff_start *out)
{
	int ret;
	struct dsession *s = session_get(fh, true, &ret);
	if (!s)
		return ret;
	rfs_diff_end(s->diff); /* a new start replaces an earlier result */
	s->diff = NULL;
	ret = rfs_diff_begin(fs, a, b, &s->diff);
	if (!ret)
		rfs_diff_get_stats(s->diff, &out->st);
	pthread_mutex_unlock(&s->lock);
	return ret;
}

static size_t cut(const char *p, uint8_t *flags)
{
	size_t n = p ? strlen(p) : 0;
	if (n > RFS_IOC_DIFF_PATH_MAX) {
		*flags |= RFS_IOC_DIFF_CUT;
		n = RFS_IOC_DIFF_PATH_MAX;
	}
	return n;
}

static int diff_report(uint64_t fh, struct rfs_ioc_diff_report *rep)
{
	int ret;
	struct dsession *s = session_get(fh, false, &ret);
	if (!s)
		return ret == -ENOENT ? -EINVAL : ret; /* no diff started on this handle */
	if (!s->diff) {
		pthread_mutex_unlock(&s->lock);
		return -EINVAL;
	}
	struct rfs_diff_record r;
	size_t used = 0;
	uint64_t i = rep->first;
	rep->count = 0;
	while (rfs_diff_record(s->diff, i, &r) == 0) {
		struct rfs_ioc_diff_rec h = {.op = (uint8_t)r.op, .what = r.what, .mode = r.mode,
					     .ino = r.ino};
		h.pathlen = (uint32_t)cut(r.path, &h.flags);
		h.oldlen = (uint32_t)cut(r.old_path, &h.flags);
		size_t need = (sizeof(h) + h.pathlen + h.oldlen + 7) & ~(size_t)7;
		if (used + need > sizeof(rep->buf))
			break;
		memcpy(rep->buf + used, &h, sizeof(h));
		memcpy(rep->buf + used + sizeof(h), r.path, h.pathlen);
		if (h.oldlen)
			memcpy(rep->buf + used + sizeof(h) + h.pathlen, r.old_path, h.oldlen);
		used += need;
		rep->count++;
		i++;
	}
	pthread_mutex_unlock(&s->lock);
	return 0;
}

int rfs_fuse_diff_ioctl(rfs_fs *fs, const struct fuse_ctx *ctx, uint64_t fh, unsigned cmd,
			rfs_nodeid a, rfs_nodeid b, const void *in, size_t in_size, void *out,
			size_t out_size)
{
	/* The result names files anywhere below A and B: root or the owner. */
	if (ctx->uid != 0 && ctx->uid != getuid())
		return -EPERM;
	if (cmd == RFS_IOC_DIFF_START) {
		if (out_size < sizeof(struct rfs_ioc_diff_start))
			return -EINVAL;
		memset(out, 0, sizeof(struct rfs_ioc_diff_start));
		return diff_start(fs, fh, a, b, out);
	}
	if (in_size < sizeof(struct rfs_ioc_diff_report) ||
	    out_size < sizeof(struct rfs_ioc_diff_report))
		return -EINVAL;
	struct rfs_ioc_diff_report *rep = out;
	uint64_t first;
	memcpy(&first, in, sizeof(first));
	memset(rep, 0, sizeof(*rep));
	rep->first = first;
	return diff_report(fh, rep);
}
