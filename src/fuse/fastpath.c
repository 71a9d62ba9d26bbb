/*
 * READ and WRITE answered past libfuse (issue 9, "Parallel I/O").
 *
 * libfuse's dispatch of a request allocates, zeroes and frees a
 * fuse_req, initializes its mutex, links it into the session's list
 * under the session lock and unlinks it again, and builds the reply
 * through four more calls: about 1,000 instructions of a random 4 KiB
 * WRITE's 7,500, and of a READ's 3,400 (bench/README.md, "Session
 * 14").  READ and WRITE use none of it: op_read and op_write take no
 * credentials, no file handle and no interrupt callback.  So the
 * request hook (tmpfile.c) hands them here, where they are decoded from
 * the wire format of <linux/fuse.h> and answered through the same reply
 * hook as libfuse's replies (counted, or put in a ring entry).
 *
 * What is unusual goes to libfuse as before (false): a length that does
 * not add up, a WRITE that asks to clear set-user-ID bits (op_write
 * clears them with the request's context), a mount in debug mode
 * (libfuse logs each request).  An INTERRUPT for a request answered
 * here finds no request in libfuse's list; libfuse answers it EAGAIN at
 * its next request, and the kernel drops it when the request is gone,
 * as for FUSE_TMPFILE.
 */
#include "fuse/rfs_fuse.h"
#include "fuse/rbuf.h"

#include <errno.h>
#include <linux/fuse.h>
#include <string.h>
#include <sys/uio.h>

static void do_read(struct rfs_mount *m, int fd, const struct fuse_in_header *in,
		    const struct fuse_read_in *arg)
{
	uint64_t t0[2];
	rfs_fuse_readwaits_start(t0);
	struct fuse_out_header out = {.unique = in->unique};
	struct iovec iov[2] = {{&out, sizeof(out)}, {NULL, 0}};
	char *buf = rfs_fuse_read_buf(arg->size);
	ssize_t n = buf ? rfs_fs_read(m->fs, in->nodeid, buf, arg->size, arg->offset) : -ENOMEM;
	/* Before the reply, as op_read. */
	rfs_fuse_readwaits_note(t0);
	if (n < 0) {
		out.error = (int32_t)n;
	} else {
		iov[1].iov_base = buf;
		iov[1].iov_len = (size_t)n;
	}
	out.len = (uint32_t)(sizeof(out) + iov[1].iov_len);
	rfs_fuse_reply_out(fd, iov, n < 0 ? 1 : 2);
}

static void do_write(struct rfs_mount *m, int fd, const struct fuse_in_header *in,
		     const struct fuse_write_in *arg)
{
	ssize_t n = rfs_fs_write(m->fs, in->nodeid, arg + 1, arg->size, arg->offset);
	struct fuse_out_header out = {.unique = in->unique};
	struct fuse_write_out wo = {.size = n < 0 ? 0 : (uint32_t)n};
	struct iovec iov[2] = {{&out, sizeof(out)}, {&wo, sizeof(wo)}};
	if (n < 0)
		out.error = (int32_t)n;
	out.len = (uint32_t)(sizeof(out) + (n < 0 ? 0 : sizeof(wo)));
	rfs_fuse_reply_out(fd, iov, n < 0 ? 1 : 2);
}

bool rfs_fuse_fast_wants(const struct rfs_mount *m, const void *buf, size_t n)
{
	const struct fuse_in_header *in = buf;
	if (m->debug || n != in->len)
		return false;
	size_t len = n - sizeof(*in);
	if (in->opcode == FUSE_READ)
		return len >= sizeof(struct fuse_read_in);
	if (in->opcode == FUSE_WRITE) {
		const struct fuse_write_in *arg = (const void *)(in + 1);
		return len >= sizeof(*arg) && len - sizeof(*arg) == arg->size &&
		       !(arg->write_flags & FUSE_WRITE_KILL_SUIDGID);
	}
	return false;
}

void rfs_fuse_fast_serve(struct rfs_mount *m, int fd, const void *buf)
{
	const struct fuse_in_header *in = buf;
	if (in->opcode == FUSE_READ)
		do_read(m, fd, in, (const void *)(in + 1));
	else
		do_write(m, fd, in, (const void *)(in + 1));
}
