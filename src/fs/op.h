/*
 * The filesystem operation: the one unit of change that no commit can
 * split (btrfs's btrfs_start_transaction(root, items), XFS's log
 * reservations).
 *
 *   op_begin   take the pool write lock and reserve the space the whole
 *              operation may need; when the space is short only because
 *              blocks freed in the running transaction are not reusable
 *              yet, commit first (nothing is shadowed yet, so the commit
 *              sees a consistent state) and check again.
 *   ...        the operation: ip_load / tree changes / ip_done, any
 *              number of times.  Nothing commits in between: the write
 *              lock keeps the background commit out, and nothing in the
 *              fs layer commits while an operation runs.
 *   op_end     release the lock.  An operation that fails with -ENOSPC
 *              before changing anything, while frees are pending, is
 *              retried once after a commit (op_end returns OP_RETRY).
 *              An operation that fails for lack of a resource (space,
 *              memory, a block that cannot be read) after it has
 *              already stored part of its change cannot be completed
 *              nor undone in memory: the running transaction is then
 *              discarded (the pool turns read-only, the last commit
 *              stays intact on disk), so no commit ever makes half an
 *              operation durable.
 *
 * Usage:
 *
 *	struct rfs_op op = {0};     // zeroed once: op_begin keeps `retried`
 *	do {
 *		ret = op_begin(fs, &op, "unlink", op_meta(fs, dn, 2), 0);
 *		if (ret)
 *			return ret;
 *		ret = ...the operation...;
 *	} while ((ret = op_end(&op, ret)) == OP_RETRY);
 *
 * This is also the place where the change journal will record each
 * change (one record per operation, in the same transaction).
 */
#ifndef RFS_FS_OP_H
#define RFS_FS_OP_H

#include "fs/fs_internal.h"

/* op_end's answer: run the whole operation again (a commit made room). */
#define OP_RETRY 1

struct rfs_op {
	rfs_fs *fs;
	const char *what;   /* operation name, for log lines */
	uint64_t need;      /* blocks reserved at begin (0: a deletion) */
	uint64_t data;      /* data blocks granted (op_begin's want) */
	unsigned steps;     /* inode paths stored since begin (ip_done) */
	bool retried;       /* already retried once after a commit (kept
			     * by op_begin: zero the op before the loop) */
};

/*
 * Metadata blocks that an operation may dirty: items tree changes
 * (record puts and deletes) below a node at the given path depth.  Every
 * change shadows at most one path per nested level plus the splits and
 * refcount records of its own tree; the result is an upper bound, not an
 * average, so a reserved operation does not run out midway.
 */
uint64_t op_meta(unsigned depth, unsigned items);

/* Depth of node below its volume's root (0 for the root; 1 for a
 * link-table inode).  Takes the node-table mutex. */
unsigned op_depth(rfs_fs *fs, struct rfs_node *n);

/*
 * Begin an operation named what: -EROFS on a read-only fs or pool, else
 * takes the pool write lock and checks that meta blocks of metadata
 * plus data blocks of data can be allocated (meta 0 and data 0: a
 * deletion, which may use the pool's reserve and never fails for
 * space).  When want_partial is set (writes), fewer data blocks are
 * granted when that is all there is (op->data says how many, at least
 * one); otherwise -ENOSPC.  On error nothing is held.
 */
int op_begin(rfs_fs *fs, struct rfs_op *op, const char *what, uint64_t meta,
	     uint64_t data);
int op_begin_partial(rfs_fs *fs, struct rfs_op *op, const char *what,
		     uint64_t meta, uint64_t data);

/* End the operation that returned ret (see above); releases the lock.
 * Returns ret, or OP_RETRY when the caller must run it again. */
int op_end(struct rfs_op *op, int ret);

/* A path was stored (ip_done succeeded) within the running operation.
 * Returns 0, or the error injected by rfs_fs_inject_op_failure. */
int op_step(rfs_fs *fs);

#endif
