/*
 * The buffers of one FUSE-over-io_uring ring entry (protocol 7.42) and
 * the two steps on them that need no kernel: turning the request the
 * kernel put there into the byte string read(2) on /dev/fuse would have
 * given, and putting a reply (as libfuse hands it to writev) back into
 * the entry.  Pure functions on memory, so that the unit tests can check
 * them (tests/unit/test_fuse_uring_req.c); uring.c does the rest.
 *
 * An entry is one allocation: the header area (struct
 * rfs_uring_req_header) immediately followed by the payload buffer.
 */
#ifndef RFS_FUSE_URING_REQ_H
#define RFS_FUSE_URING_REQ_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#define RFS_URING_IN_OUT_SZ 128
#define RFS_URING_OP_IN_SZ 128

/* The kernel's struct fuse_uring_ent_in_out. */
struct rfs_uring_ent_in_out {
	uint64_t flags;
	uint64_t commit_id; /* the request's unique, echoed on commit */
	uint32_t payload_sz;
	uint32_t padding;
	uint64_t reserved;
};

/* The kernel's struct fuse_uring_req_header. */
struct rfs_uring_req_header {
	char in_out[RFS_URING_IN_OUT_SZ]; /* fuse_in_header, then fuse_out_header */
	char op_in[RFS_URING_OP_IN_SZ];   /* the opcode's first argument */
	struct rfs_uring_ent_in_out ent;
};

_Static_assert(sizeof(struct rfs_uring_req_header) == 288, "fuse_uring_req_header is 288 bytes");

/* Rebuild in place, in the entry at mem (header, then a payload buffer
 * of cap bytes), the request the kernel put there: fuse_in_header, the
 * opcode's first argument (from op_in), then the payload, contiguous
 * and ending where the payload does, so the payload (a WRITE's data) is
 * not copied.  Sets *start to its first byte and returns its length
 * (the header's len).  -EBADMSG when the header's sizes do not add up
 * (len shorter than the header and payload, a first argument longer
 * than op_in, a payload longer than cap): nothing is moved, and the
 * header still holds the request (for its unique). */
ssize_t rfs_uring_req_rebuild(void *mem, size_t cap, char **start);

/* Put a reply into the entry at mem (header, then cap bytes of
 * payload): iov[0] is its fuse_out_header, iov[1..count-1] the rest,
 * which goes to the payload (the parts may point into the payload
 * itself: they are moved, not copied).  The out header's len and the
 * entry's payload_sz are set from the parts' sizes.  Returns the
 * reply's length; -EMSGSIZE when the parts do not fit in cap: the entry
 * then holds an EIO reply without payload.  -EINVAL (nothing written)
 * when iov[0] is no fuse_out_header. */
ssize_t rfs_uring_reply_pack(void *mem, size_t cap, const struct iovec *iov, int count);

#endif
