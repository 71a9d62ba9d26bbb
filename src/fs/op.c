/*
 * The filesystem operation (see op.h): lock, reserve, and the rule that
 * no commit splits an operation and no half operation is committed.
 */
#include "fs/op.h"

#include <stddef.h>
#include <stdio.h>

/*
 * Budget per tree change: shadowing a path of up to 4 levels, a split at
 * every level, and refcount records for the children of shared nodes
 * shadowed on the way.
 */
#define META_PER_ITEM 16u
/* Kept free on top of that during the whole operation: the largest
 * admission check the tree makes before one change (tree.c
 * space_check), so that no change refuses midway. */
#define META_BASE 256u
/* The journal's share: a record, its index items (one per directory
 * above the change) and the header; trimming deletes (reserve). */
#define JNL_META 64u

uint64_t op_meta(unsigned depth, unsigned items)
{
	/* Each stored path level rewrites one record in its parent tree. */
	return (uint64_t)META_PER_ITEM * (depth + 1 + items);
}

unsigned op_depth_dead(rfs_fs *fs, struct rfs_node *n, bool *dead)
{
	unsigned d = 0;
	node_lock(fs);
	if (n->in_table)
		d = 1;
	else
		for (struct rfs_node *x = n; x->parent; x = x->parent)
			d++;
	if (dead)
		*dead = n->dead;
	node_unlock(fs);
	return d;
}

unsigned op_depth(rfs_fs *fs, struct rfs_node *n)
{
	return op_depth_dead(fs, n, NULL);
}

/*
 * Blocks this operation may count on: everything for a deletion (the
 * pool's reserve is for them); the reserve too for an operation that
 * changes only metadata; for one that writes data, what data
 * allocations may take (they keep the reserve, so the metadata of the
 * operation and the tree's admission checks fit in it).
 */
static uint64_t avail(rfs_fs *fs, const struct rfs_op *op)
{
	if (op->need == 0)
		return UINT64_MAX;
	/* A write whose blocks are claimed already (op_begin_claimed) is
	 * judged as a data operation whose data is in hand. */
	if (op->data == 0 && !op->claimed)
		return rfs_pool_free_blocks(fs->pool);
	/* The metadata of a data operation comes out of the reserve
	 * (rfs_pool_meta_from_reserve), as far as half the reserve goes. */
	uint64_t f = rfs_pool_free_blocks(fs->pool);
	uint64_t d = rfs_pool_data_free_blocks(fs->pool), r = (f - d) / 2;
	uint64_t meta = op->need - op->data;
	return d + (meta < r ? meta : r);
}

/* Errors that say the operation could not get a resource, as opposed to
 * a refusal decided before anything changed (EEXIST, ENOTEMPTY...). */
static bool resource_error(int ret)
{
	return ret == -ENOSPC || ret == -ENOMEM || ret == -EIO || ret == -EUCLEAN ||
	       ret == -EDQUOT || ret == -EFBIG;
}

/* Release queued trees (tree.h: the drop queue) until the operation's
 * need is met once the pending frees are usable, or the queue is empty.
 * Write lock held, nothing of the operation changed yet. */
static int reclaim_for(rfs_fs *fs, const struct rfs_op *op, uint64_t need)
{
	uint64_t freed, left = 1;
	while (left && rfs_pool_root(fs->pool, RFS_ROOT_DROPQ)) {
		uint64_t a = avail(fs, op), have = a + rfs_pool_pending_blocks(fs->pool);
		if (a == UINT64_MAX || have >= need)
			break;
		uint64_t want = need - have < RFS_RECLAIM_STEP ? RFS_RECLAIM_STEP : need - have;
		uint64_t c0 = rfs_pool_changes(fs->pool);
		int ret = rfs_dropq_work(fs->pool, want, &freed, &left);
		if (ret && resource_error(ret) && rfs_pool_changes(fs->pool) != c0) {
			/* A tree half released: not a state to commit. */
			char why[160];
			snprintf(why, sizeof(why), "releasing deleted files failed halfway (%s)",
				 strerror(-ret));
			rfs_pool_abort(fs->pool, why);
		}
		if (ret)
			return ret;
	}
	return rfs_pool_check_writable(fs->pool);
}

/* A local operation (op_local) is about to change more than its file
 * (reclaim, commit, journal flush, a discarded transaction): copies of
 * other files may depend on what changes, so the pool's generation
 * moves too.  True, for use in conditions. */
static bool op_global(rfs_fs *fs, const struct rfs_op *op)
{
	if (op->local)
		rfs_pool_bump_global(fs->pool);
	return true;
}

/*
 * Take the write lock, having checked the operation's files against the
 * pre-modification marks first (outside the lock: a subscriber that is
 * slow to acknowledge stalls only this operation).  Without armed marks
 * this is one atomic load, and one more under the lock that catches a
 * mark armed in between (rfs_fs_watch_arm bumps the generation with the
 * write lock held), so no modification that begins after an arm escapes
 * it.
 */
static void premod_lock(rfs_fs *fs, struct rfs_op *op)
{
	for (;;) {
		uint64_t ws = 0;
		if (op->pm.ntgt) {
			ws = atomic_load_explicit(&fs->watch_state, memory_order_acquire);
			uint32_t gen = (uint32_t)(ws >> 32);
			if ((ws & WATCH_ARMED_MASK) && !(op->pm.checked && op->pm.gen == gen)) {
				watch_op_check(fs, op);
				op->pm.checked = true;
				op->pm.gen = gen;
			}
			if (fs->premod_hook) {
				void (*fn)(void *) = fs->premod_hook;
				fs->premod_hook = NULL;
				fn(fs->premod_arg);
			}
		}
		if (op->local)
			rfs_pool_wrlock_local(fs->pool, &op->local->fgen);
		else
			rfs_pool_wrlock(fs->pool);
		if (!op->pm.ntgt ||
		    (atomic_load_explicit(&fs->watch_state, memory_order_relaxed) >> 32) == ws >> 32)
			return;
		rfs_pool_unlock(fs->pool);
	}
}

static int begin(rfs_fs *fs, struct rfs_op *op, const char *what, uint64_t meta,
		 uint64_t data, bool partial, bool try, bool claimed, bool settle)
{
	/* Writes answered before this operation are applied before it
	 * (file_delay.c); not by the queue's own operation, nor by a
	 * best-effort change for a reader (atime), which commutes with
	 * them. */
	if (settle)
		dm_settle(fs, NULL);
	bool retried = op->retried;
	struct op_premod pm = op->pm;
	struct rfs_node *local = op->local;
	memset(op, 0, offsetof(struct rfs_op, recs_inline));
	op->retried = retried;
	op->pm = pm;
	op->local = local;
	op->fs = fs;
	op->what = what;
	op->claimed = claimed;
	/* Data allocations keep the reserve, which covers the admission
	 * checks; so do the claims of a claimed write. */
	if (meta && !data && !claimed)
		meta += META_BASE;
	if (meta && fs->jnl)
		meta += JNL_META;
	op->need = meta + data;
	op->data = data;
	if (fs->rdonly)
		return -EROFS;
	rfs_pool_lock_label(what); /* the write-lock span's name */
	if (!try || op->pm.ntgt)
		premod_lock(fs, op);
	else if (!(op->local ? rfs_pool_trywrlock_local(fs->pool, &op->local->fgen)
			     : rfs_pool_trywrlock(fs->pool)))
		return -EBUSY;
	int ret = rfs_pool_check_writable(fs->pool);
	if (ret)
		goto fail;
	uint64_t have = avail(fs, op);
	if (fs->jnl && op->need && have < op->need + jnl_flush_blocks(fs->jnl)) {
		/* The journal's records wait for the commit: what storing
		 * them may take must stay free beside this operation's
		 * need, else they are stored now (before anything of this
		 * operation changes). */
		op_global(fs, op);
		ret = journal_flush(fs, what);
		if (ret)
			goto fail;
		have = avail(fs, op);
	}
	if (have < op->need && rfs_pool_root(fs->pool, RFS_ROOT_DROPQ)) {
		/* Deleted files whose release was deferred hold space: release
		 * them first, as far as needed (they come back as pending
		 * frees, made usable by the commit below). */
		op_global(fs, op);
		ret = reclaim_for(fs, op, op->need);
		if (ret)
			goto fail;
		have = avail(fs, op);
	}
	if (have < op->need && rfs_pool_pending_blocks(fs->pool) > 0) {
		/* Space freed earlier in this transaction comes back with a
		 * commit; nothing of this operation is shadowed yet. */
		op_global(fs, op);
		ret = rfs_pool_commit_locked(fs->pool);
		if (ret)
			goto fail;
		have = avail(fs, op);
	}
	if (have < op->need) {
		if (!partial || have <= meta) {
			ret = -ENOSPC;
			goto fail;
		}
		op->data = have - meta;
		op->need = have;
	}
	assert(!fs->cur_op);
	fs->cur_op = op;
	op->items0 = rfs_pool_items(fs->pool);
	if (op->data || op->claimed)
		rfs_pool_meta_from_reserve(fs->pool, true);
	return 0;
fail:
	rfs_pool_unlock(fs->pool);
	return ret;
}

int op_begin(rfs_fs *fs, struct rfs_op *op, const char *what, uint64_t meta,
	     uint64_t data)
{
	return begin(fs, op, what, meta, data, false, false, false, true);
}

int op_begin_claimed(rfs_fs *fs, struct rfs_op *op, const char *what, uint64_t meta)
{
	return begin(fs, op, what, meta, 0, false, false, true, true);
}

int op_begin_queued(rfs_fs *fs, struct rfs_op *op, const char *what, uint64_t meta)
{
	return begin(fs, op, what, meta, 0, false, false, true, false);
}

int op_begin_try(rfs_fs *fs, struct rfs_op *op, const char *what, uint64_t meta,
		 uint64_t data)
{
	return begin(fs, op, what, meta, data, false, true, false, false);
}

int op_begin_partial(rfs_fs *fs, struct rfs_op *op, const char *what,
		     uint64_t meta, uint64_t data)
{
	return begin(fs, op, what, meta, data, true, false, false, true);
}

int op_end(struct rfs_op *op, int ret)
{
	rfs_fs *fs = op->fs;
	assert(fs->cur_op == op);
	fs->cur_op = NULL;
	if (op->steps)
		fs->ops++; /* it changed something */
	rfs_pool_meta_from_reserve(fs->pool, false);
	/* Halfway: a path stored or an item changed, then a resource ran
	 * out; or a step that could not finish its own change
	 * (op_halfway: a path not stored back, a write's extents not
	 * stored).  The transaction cannot be kept.  A failure after a
	 * mutable walk alone is not halfway: the walk's copies of nodes
	 * are stored back (ip_done), and they change no item. */
	bool changed = op->steps > 0 || rfs_pool_items(fs->pool) != op->items0;
	if (op->halfway && ret >= 0)
		ret = op->halfway;
	bool aborted = op->halfway || (ret < 0 && changed && resource_error(ret));
	op_journal(op, aborted);
	if (aborted)
		op_global(fs, op);
	if (aborted) {
		char why[160];
		snprintf(why, sizeof(why), "%s failed halfway (%s)", op->what,
			 strerror(-ret));
		rfs_pool_abort(fs->pool, why);
	} else if (ret == -ENOSPC && !changed && !op->retried && !op->refused &&
		   (rfs_pool_root(fs->pool, RFS_ROOT_DROPQ) ||
		    rfs_pool_pending_blocks(fs->pool) > 0) &&
		   op_global(fs, op) && reclaim_for(fs, op, UINT64_MAX) == 0 &&
		   rfs_pool_pending_blocks(fs->pool) > 0 &&
		   rfs_pool_commit_locked(fs->pool) == 0) {
		/* Nothing changed; the queued deletions were released and
		 * the commit made the pending frees usable. */
		op->retried = true;
		rfs_pool_unlock(fs->pool);
		return OP_RETRY;
	}
	rfs_pool_unlock(fs->pool);
	rfs_pool_lock_label(NULL);
	return ret;
}

void op_halfway(rfs_fs *fs, int err)
{
	if (fs->cur_op && !fs->cur_op->halfway)
		fs->cur_op->halfway = err < 0 ? err : -EIO;
}

void op_refuse(rfs_fs *fs)
{
	if (fs->cur_op)
		fs->cur_op->refused = true;
}

int op_step(rfs_fs *fs)
{
	if (!fs->cur_op)
		return 0;
	fs->cur_op->steps++;
	if (fs->inject_after && --fs->inject_after == 0)
		return fs->inject_err;
	return 0;
}

void rfs_fs_inject_alloc_nospc(rfs_fs *fs, unsigned n)
{
	dm_settle(fs, NULL); /* the claim reserve too: its claims skip the check */
	rfs_pool_wrlock(fs->pool);
	fs->inject_nospc = n;
	rfs_pool_unlock(fs->pool);
}

void rfs_fs_set_premod_hook(rfs_fs *fs, void (*fn)(void *arg), void *arg)
{
	fs->premod_hook = fn;
	fs->premod_arg = arg;
}

void rfs_fs_inject_op_failure(rfs_fs *fs, unsigned after_steps, int err)
{
	rfs_pool_wrlock(fs->pool);
	fs->inject_after = after_steps;
	fs->inject_err = err;
	rfs_pool_unlock(fs->pool);
}
