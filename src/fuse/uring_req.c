/*
 * A ring entry's request and reply, rebuilt and packed in place
 * (uring_req.h).  The kernel (fs/fuse/dev_uring.c) puts fuse_in_header
 * in in_out, the opcode's first argument in op_in and the rest in the
 * payload, with payload_sz its size; the header's len counts all of it,
 * as read(2) would have returned it.
 */
#include "fuse/uring_req.h"

#include <errno.h>
#include <linux/fuse.h>
#include <string.h>

_Static_assert(sizeof(struct fuse_in_header) <= RFS_URING_IN_OUT_SZ, "in_out holds the in header");
_Static_assert(sizeof(struct fuse_out_header) <= RFS_URING_IN_OUT_SZ, "in_out holds the out header");
/* The rebuilt header and first argument fit in the header area. */
_Static_assert(sizeof(struct fuse_in_header) + RFS_URING_OP_IN_SZ <= sizeof(struct rfs_uring_req_header),
	       "the rebuilt request starts inside the header area");

ssize_t rfs_uring_req_rebuild(void *mem, size_t cap, char **start)
{
	struct rfs_uring_req_header *h = mem;
	char *payload = (char *)mem + sizeof(*h);
	struct fuse_in_header in;
	memcpy(&in, h->in_out, sizeof(in));
	size_t psz = h->ent.payload_sz;
	if (psz > cap || in.len < sizeof(in) + psz)
		return -EBADMSG;
	size_t arg0 = (size_t)in.len - sizeof(in) - psz;
	if (arg0 > RFS_URING_OP_IN_SZ)
		return -EBADMSG;
	/* op_in lies inside the bytes the argument and header go to: the
	 * argument moves first, then the header goes before it. */
	char *s = payload - arg0 - sizeof(in);
	memmove(payload - arg0, h->op_in, arg0);
	memcpy(s, &in, sizeof(in));
	*start = s;
	return (ssize_t)in.len;
}

ssize_t rfs_uring_reply_pack(void *mem, size_t cap, const struct iovec *iov, int count)
{
	if (count < 1 || iov[0].iov_len < sizeof(struct fuse_out_header))
		return -EINVAL;
	struct rfs_uring_req_header *h = mem;
	char *payload = (char *)mem + sizeof(*h);
	struct fuse_out_header o;
	memcpy(&o, iov[0].iov_base, sizeof(o));
	size_t len = 0;
	for (int i = 1; i < count; i++)
		len += iov[i].iov_len;
	ssize_t ret;
	if (len > cap) {
		o.error = -EIO;
		len = 0;
		ret = -EMSGSIZE;
	} else {
		size_t at = 0;
		for (int i = 1; i < count; i++) {
			memmove(payload + at, iov[i].iov_base, iov[i].iov_len);
			at += iov[i].iov_len;
		}
		ret = (ssize_t)(sizeof(o) + len);
	}
	o.len = (uint32_t)(sizeof(o) + len);
	memcpy(h->in_out, &o, sizeof(o));
	h->ent.payload_sz = (uint32_t)len;
	return ret;
}
