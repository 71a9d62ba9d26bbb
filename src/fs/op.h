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
 * Pre-modification events: a mutation of a file names it before the loop
 * (op_target, op_target_name); op_begin checks it against the watches'
 * marks before it takes the write lock (watch.c), delivering the events
 * and waiting for their acks with no pool lock held.  A retry (OP_RETRY)
 * is not checked again unless a mark was armed meanwhile.
 *
 * The change journal: each mutation site calls op_rec_* once its change
 * is stored (journal_hook.c); op_end appends the records in the same
 * transaction, so a commit has both or neither.
 */
#ifndef RFS_FS_OP_H
#define RFS_FS_OP_H

#include "fs/fs_internal.h"
#include "journal/journal.h"

/* Journal records an operation keeps without allocating (most make one). */
#define OP_RECS_INLINE 2

/* op_end's answer: run the whole operation again (a commit made room). */
#define OP_RETRY 1

/* A file an operation is about to change: node, or (node NULL) the entry
 * name of directory dir, looked up by the check only when marks exist.
 * The pointers must stay valid until op_end (the caller pins them). */
struct op_target {
	struct rfs_node *node, *dir;
	const char *name;
	size_t len;
	int kind; /* enum rfs_premod_kind */
};
#define OP_TARGETS 2

/* What op_begin checks against the marks; kept by op_begin across
 * retries. */
struct op_premod {
	struct op_target tgt[OP_TARGETS];
	unsigned ntgt;
	bool checked;  /* checked at arm generation gen */
	uint32_t gen;
};

/* journal_hook.c */
struct rec_shared;

struct rfs_op {
	rfs_fs *fs;
	const char *what;   /* operation name, for log lines */
	uint64_t need;      /* blocks reserved at begin (0: a deletion) */
	uint64_t data;      /* data blocks granted (op_begin's want) */
	unsigned steps;     /* inode paths stored since begin (ip_done) */
	bool retried;       /* already retried once after a commit (kept
			     * by op_begin: zero the op before the loop) */
	bool refused;       /* op_refuse: its -ENOSPC is a limit, not space */
	int halfway;        /* op_halfway: the error that left it half done */
	uint64_t items0;    /* rfs_pool_items when begin returned */
	bool claimed;       /* op_begin_claimed: the data blocks are claimed */
	/* Journal records of the changes made (op_rec_*), appended by
	 * op_end in the same transaction; jfail: one could not be built
	 * (memory), so op_end resets the journal instead of leaving a gap. */
	struct jnl_rec *recs; /* recs_inline, or malloc'ed when more */
	size_t nrecs, caprecs;
	bool jfail;
	/* Paths and directories that several records borrow (`lent`:
	 * op_rec_node_ranges), freed with the records. */
	struct rec_shared *rec_shared;
	struct op_premod pm; /* kept by op_begin, like retried */
	/* op_local: the one file the operation changes (kept by op_begin,
	 * like retried); NULL for every other operation. */
	struct rfs_node *local;
	/* Last: op_begin does not clear it (recs says what is used). */
	struct jnl_rec recs_inline[OP_RECS_INLINE]; /* no malloc for most ops */
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
/* op_depth, and (*dead) whether n's record is gone, read under the same
 * hold of nlock. */
unsigned op_depth_dead(rfs_fs *fs, struct rfs_node *n, bool *dead);

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
/* op_begin for a write whose data blocks are claimed and filled already
 * (file_claim.c): only meta blocks of metadata are reserved, judged as
 * for a data operation (the metadata may take half the reserve). */
int op_begin_claimed(rfs_fs *fs, struct rfs_op *op, const char *what, uint64_t meta);
/* op_begin_claimed for the operation that maps queued writes
 * (file_delay.c), which must not settle the queue itself.  Every other
 * op_begin* but op_begin_try maps the queued writes first. */
int op_begin_queued(rfs_fs *fs, struct rfs_op *op, const char *what, uint64_t meta);
/* op_begin, or -EBUSY at once when another writer or a commit holds the
 * pool (rfs_pool_trywrlock): for best-effort changes made on behalf of
 * a reader (atime), which must not wait behind a writer. */
int op_begin_try(rfs_fs *fs, struct rfs_op *op, const char *what, uint64_t meta,
		 uint64_t data);

/* Name a file the operation changes (kind: enum rfs_premod_kind), before
 * the first op_begin.  At most OP_TARGETS. */
static inline void op_target(struct rfs_op *op, struct rfs_node *n, int kind)
{
	assert(op->pm.ntgt < OP_TARGETS);
	op->pm.tgt[op->pm.ntgt++] = (struct op_target){n, NULL, NULL, 0, kind};
}
static inline void op_target_name(struct rfs_op *op, struct rfs_node *dir, const char *name,
				  size_t len, int kind)
{
	assert(op->pm.ntgt < OP_TARGETS);
	op->pm.tgt[op->pm.ntgt++] = (struct op_target){NULL, dir, name, len, kind};
}

/*
 * Declare, before the first op_begin, that the operation changes nothing
 * but regular file n's own record and extent tree (a data write, an
 * atime update): its write-lock acquisitions bump n->fgen instead of the
 * pool's change generation (rfs_pool_wrlock_local, _trywrlock_local), so
 * READ's copies of other files stay valid (rcache.c).  What the operation itself does beyond the file
 * -- a commit, a reclaim or a journal flush in op_begin/op_end -- bumps
 * the pool's generation as well (op.c).  Every operation that does not
 * call this is global: a path nobody declared local stays safe.
 */
static inline void op_local(struct rfs_op *op, struct rfs_node *n)
{
	op->local = n;
}

/* Check op's targets against the armed marks: queue their events and
 * wait for the acks of blocking ones (watch.c).  No pool lock held. */
void watch_op_check(rfs_fs *fs, struct rfs_op *op);

/* End the operation that returned ret (see above); releases the lock.
 * Returns ret, or OP_RETRY when the caller must run it again. */
int op_end(struct rfs_op *op, int ret);

/* The running operation is about to fail with -ENOSPC because a limit
 * refuses it (an inode's xattr room), not for lack of pool space: op_end
 * then returns the error as it is, without a commit to make room and a
 * retry that could not help.  No-op outside an operation. */
void op_refuse(rfs_fs *fs);
/* The running operation failed with err (negative) after part of a
 * change that belongs with the failed step was made (old extents
 * punched, the new ones not inserted): even when it reports progress
 * (a short write), op_end must discard the transaction and fail with
 * err.  No-op outside an operation. */
void op_halfway(rfs_fs *fs, int err);

/* A path was stored (ip_done succeeded) within the running operation.
 * Returns 0, or the error injected by rfs_fs_inject_op_failure. */
int op_step(rfs_fs *fs);

/* ---- journal records (journal_hook.c); the op's write lock held ---- */
/* kind (enum rfs_change_kind) of entry name in directory dir, inode
 * st_ino (create, unlink, link, snapshot...). */
void op_rec_entry(rfs_fs *fs, int kind, struct rfs_node *dir, const char *name,
		  size_t len, uint64_t st_ino);
/* kind of node n (data with the byte range [off, off + len), attr,
 * xattr). */
void op_rec_node(rfs_fs *fs, int kind, struct rfs_node *n, uint64_t off, uint64_t len);
/* k records of kind of node n, the i-th with the one byte range rg[i]
 * (data): the same records as k calls of op_rec_node, in that order,
 * built from one walk of n's chain (one path, one list of directories,
 * one clock read) that they share. */
void op_rec_node_ranges(rfs_fs *fs, int kind, struct rfs_node *n,
			const struct rfs_change_range *rg, size_t k);
/* A rename (or exchange) of odir/oname to ndir/nname, inode st_ino; call
 * before the node table moves the node. */
void op_rec_rename(rfs_fs *fs, int kind, struct rfs_node *odir, const char *oname,
		   size_t olen, struct rfs_node *ndir, const char *nname, size_t nlen,
		   uint64_t st_ino);
/* Append the running op's records (op_end). */
void op_journal(struct rfs_op *op, bool aborted);
/* Store the journal's pending records (jnl_flush) for what (an operation
 * name or "commit", for log lines); when that fails for space or memory,
 * reset the journal; when even that fails, discard the transaction
 * (rfs_pool_abort).  0 or the error.  Write lock held, fs->jnl set. */
int journal_flush(rfs_fs *fs, const char *what);

#endif
