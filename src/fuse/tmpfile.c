/*
 * O_TMPFILE on a libfuse 3.14 mount.
 *
 * The kernel turns open(dir, O_TMPFILE) into a FUSE_TMPFILE request
 * (Linux 6.1, protocol 7.37): a FUSE_CREATE without a name, answered with
 * fuse_entry_out + fuse_open_out.  libfuse learned to dispatch it only in
 * 3.17; 3.14 (Debian 12) answers ENOSYS, after which the kernel reports
 * EOPNOTSUPP for O_TMPFILE on that mount for good.  So the session reads
 * requests through a custom I/O hook (fuse_session_custom_io, public in
 * 3.14) that answers FUSE_TMPFILE itself, straight on /dev/fuse, and hands
 * every other request to libfuse unchanged.  This relies only on the
 * kernel's wire format (<linux/fuse.h>) and on libfuse reading requests
 * with plain reads (no splice: FUSE_CAP_SPLICE_READ stays off, see
 * op_init).
 * The same hook counts requests (reqstats.c), shows each request and
 * reply to killpriv.c, which negotiates FUSE_HANDLE_KILLPRIV_V2 past
 * libfuse, and answers READ and WRITE itself (fastpath.c).
 */
#include "fuse/rfs_fuse.h"

#include <errno.h>
#include <linux/fuse.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "reflinkfs/log.h"

static void attr_of(const struct stat *st, struct fuse_attr *a)
{
	memset(a, 0, sizeof(*a));
	a->ino = st->st_ino;
	a->mode = st->st_mode;
	a->nlink = (uint32_t)st->st_nlink;
	a->uid = st->st_uid;
	a->gid = st->st_gid;
	a->rdev = (uint32_t)st->st_rdev;
	a->size = (uint64_t)st->st_size;
	a->blksize = (uint32_t)st->st_blksize;
	a->blocks = (uint64_t)st->st_blocks;
	a->atime = (uint64_t)st->st_atim.tv_sec;
	a->mtime = (uint64_t)st->st_mtim.tv_sec;
	a->ctime = (uint64_t)st->st_ctim.tv_sec;
	a->atimensec = (uint32_t)st->st_atim.tv_nsec;
	a->mtimensec = (uint32_t)st->st_mtim.tv_nsec;
	a->ctimensec = (uint32_t)st->st_ctim.tv_nsec;
}

static int reply(int fd, uint64_t unique, int err, const void *arg, size_t size)
{
	struct fuse_out_header out = {
		.len = (uint32_t)(sizeof(out) + (err ? 0 : size)),
		.error = -err,
		.unique = unique,
	};
	struct iovec iov[2] = {{&out, sizeof(out)}, {(void *)arg, size}};
	return rfs_fuse_reply_out(fd, iov, err ? 1 : 2);
}

/* Answer one FUSE_TMPFILE request (buf holds all n bytes of it). */
static void do_tmpfile(struct rfs_mount *m, int fd, const void *buf, size_t n)
{
	const struct fuse_in_header *in = buf;
	const struct fuse_create_in *arg = (const void *)(in + 1);
	if (n < sizeof(*in) + sizeof(*arg)) {
		reply(fd, in->unique, EINVAL, NULL, 0);
		return;
	}
	struct rfs_ctx c = {.uid = in->uid, .gid = in->gid, .pid = in->pid, .umask = arg->umask};
	rfs_nodeid node;
	struct stat st;
	int ret = rfs_fs_tmpfile(m->fs, &c, in->nodeid, arg->mode, &node, &st);
	if (!ret)
		ret = rfs_fs_open_node(m->fs, node);
	if (ret) {
		reply(fd, in->unique, -ret, NULL, 0);
		return;
	}
	struct {
		struct fuse_entry_out e;
		struct fuse_open_out o;
	} r;
	memset(&r, 0, sizeof(r));
	r.e.nodeid = node;
	r.e.generation = RFS_GENERATION;
	r.e.entry_valid = r.e.attr_valid = (uint64_t)m->timeout;
	r.e.entry_valid_nsec = r.e.attr_valid_nsec =
		(uint32_t)((m->timeout - (double)r.e.entry_valid) * 1e9);
	attr_of(&st, &r.e.attr);
	r.o.fh = arg->flags; /* as op_create: ioctls get the open flags */
	r.o.open_flags = FOPEN_KEEP_CACHE;
	if (reply(fd, in->unique, 0, &r, sizeof(r))) {
		/* interrupted (ENOENT) or the mount is gone: nobody holds it */
		rfs_fs_release(m->fs, node);
		rfs_fs_forget(m->fs, node, 1);
	}
}

/* What every request goes through as it comes in, from /dev/fuse or a
 * ring: counted, its kill bit and INIT's offers noted.  True when it is
 * FUSE_TMPFILE, which only this file answers. */
static bool request_note(const void *buf, size_t n)
{
	const struct fuse_in_header *in = buf;
	rfs_fuse_reqstats_count(in->opcode, in->unique);
	rfs_fuse_killpriv_note(buf, n);
	rfs_fuse_uring_note_init(buf, n);
	return in->opcode == FUSE_TMPFILE;
}

void rfs_fuse_request_in(struct rfs_mount *m, void *buf, size_t n)
{
	if (request_note(buf, n)) {
		do_tmpfile(m, fuse_session_fd(m->se), buf, n);
		return;
	}
	if (rfs_fuse_fast_wants(m, buf, n)) {
		rfs_fuse_fast_serve(m, fuse_session_fd(m->se), buf);
		return;
	}
	struct fuse_buf fb = {.mem = buf, .size = n};
	fuse_session_process_buf(m->se, &fb);
}

static ssize_t io_read(int fd, void *buf, size_t len, void *userdata)
{
	for (;;) {
		ssize_t n = read(fd, buf, len);
		if (n < (ssize_t)sizeof(struct fuse_in_header))
			return n; /* errors and short reads: libfuse reports them */
		bool tmpfile = request_note(buf, (size_t)n);
		if (!tmpfile && !rfs_fuse_fast_wants(userdata, buf, (size_t)n))
			return n;
		/* libfuse's workers read with cancellation enabled and cancel
		 * them at unmount (fuse_loop_mt): a cancel at a cancellation
		 * point inside the fs (a pool pwrite, a condition wait) would
		 * end the thread holding the pool's locks and hang the final
		 * commit.  The request is handled as if read, uncancellable;
		 * a pending cancel acts at the next read. */
		int cs;
		pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cs);
		if (tmpfile)
			do_tmpfile(userdata, fd, buf, (size_t)n);
		else
			rfs_fuse_fast_serve(userdata, fd, buf);
		pthread_setcancelstate(cs, NULL);
	}
}

static ssize_t io_writev(int fd, struct iovec *iov, int count, void *userdata)
{
	(void)userdata;
	rfs_fuse_killpriv_reply(iov, count);
	rfs_fuse_reqstats_reply(iov, count);
	rfs_fuse_uring_init_reply(iov, count);
	ssize_t r = rfs_fuse_uring_reply(iov, count);
	if (r >= 0)
		return r; /* a ring request: its thread commits it */
	return writev(fd, iov, count);
}

int rfs_fuse_reply_out(int fd, struct iovec *iov, int count)
{
	return io_writev(fd, iov, count, NULL) < 0 ? -errno : 0;
}

int rfs_fuse_tmpfile_setup(struct fuse_session *se)
{
	static const struct fuse_custom_io io = {
		.read = io_read,
		.writev = io_writev,
	};
	return fuse_session_custom_io(se, &io, fuse_session_fd(se));
}
