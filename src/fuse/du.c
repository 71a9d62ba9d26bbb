/*
 * `reflinkfs du` through ioctls on a directory of the mount
 * (RFS_IOC_DU_STEP; see fs.h), in the scrub's style: the du belongs to the
 * directory and the process that started it (fh_session.h).  The step
 * that finishes it ends it (the figures go out with that step), so the
 * next du of the same process in the same directory starts afresh; one
 * that is interrupted ends when its process is gone.
 *
 * Each step works for about STEP_NS, in pieces of PIECE units under the
 * pool's read lock (rfs_du_step), so one FUSE worker is busy at most that
 * long and writers wait at most one piece.
 */
#include "fuse/rfs_fuse.h"
#include "fuse/fh_session.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define STEP_NS 200000000ll /* 0.2 s of work per ioctl */
#define PIECE 1024          /* units (nodes, items, extent runs) per read-lock hold */

/* The du of a session, of the PATH the caller named first. */
struct du_run {
	uint64_t st_ino; /* the du's PATH, as the caller named it */
	rfs_du *du;
};

static void du_free(void *p)
{
	struct du_run *r = p;
	if (r)
		rfs_du_end(r->du);
	free(r);
}

static struct fh_table g_dus = FH_TABLE_INIT(du_free);

void rfs_fuse_du_release_all(void)
{
	fh_session_release_all(&g_dus);
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

/* The session of key, locked, with its du (started on PATH by the first
 * request); NULL with *err set otherwise. */
static struct fh_session *session_get(rfs_fs *fs, const struct fh_key *key, rfs_nodeid dir,
				      const struct rfs_ioc_du_step *io, int *err)
{
	struct fh_session *s = fh_session_get(&g_dus, key, true, err);
	if (!s)
		return NULL;
	struct du_run *r = s->data;
	if (r && r->st_ino != io->ino) {
		*err = -EINVAL; /* one du at a time per caller and directory */
	} else if (!r) {
		rfs_nodeid node = 0;
		r = calloc(1, sizeof(*r));
		*err = r ? target(fs, dir, io, &node) : -ENOMEM;
		if (!*err)
			*err = rfs_du_begin(fs, node, &r->du);
		/* The du holds the inode open: give back what lookup took. */
		if (node && node != dir)
			rfs_fs_forget(fs, node, 1);
		if (*err) {
			free(r);
		} else {
			r->st_ino = io->ino;
			s->data = r;
		}
	}
	if (*err) {
		fh_session_put(s);
		return NULL;
	}
	return s;
}

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

int rfs_fuse_du_ioctl(rfs_fs *fs, const struct fuse_ctx *ctx, const struct fh_key *key,
		      rfs_nodeid dir, struct rfs_ioc_du_step *io)
{
	/* The walk reads directories the caller may not be allowed to
	 * read: root or the owner of the mount, as for the scrub. */
	if (ctx->uid != 0 && ctx->uid != getuid())
		return -EPERM;
	int ret;
	struct fh_session *s = session_get(fs, key, dir, io, &ret);
	if (!s)
		return ret;
	rfs_du *du = ((struct du_run *)s->data)->du;
	int64_t start = now_ns();
	do
		ret = rfs_du_step(du, PIECE);
	while (ret == 1 && now_ns() - start < STEP_NS);
	rfs_du_get_stats(du, &io->st);
	fh_session_put(s);
	if (ret <= 0)
		fh_session_release(&g_dus, key); /* done (or failed): figures sent */
	return ret < 0 ? ret : 0;
}
