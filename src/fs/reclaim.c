/*
 * Deleted files and directories, released in the background.
 *
 * A deletion takes the removed record's subtree out of its parent and
 * hands that reference to the engine's drop queue (tree.h,
 * rfs_dropq_release): at once when releasing it is O(1) (a shared tree
 * only loses a count; a file tree that is one leaf is freed now, which
 * keeps `rm` of small files as cheap as before), else queued in O(1).  So
 * unlinking a huge file holds the pool write lock for O(1), not for
 * O(its extents).  rfs_fs_reclaim then releases the queue in bounded
 * steps, each an operation of its own so that other operations run in
 * between; the mount runs it from a background thread, and what is left
 * at unmount stays queued on disk for the next mount.  An operation short
 * of space releases queued trees first (op.c), so deleting on a full pool
 * still makes room at once.
 */
#include "fs/op.h"

/* Blocks a record's subtree may hold: its data, plus about one extent
 * leaf per 512 data blocks and the root.  Only an estimate for progress
 * reports (shared blocks are not freed, a directory's subtree is not
 * counted in its record). */
static uint64_t rec_estimate(const struct rfs_inode *i)
{
	return i->blocks + i->blocks / 512 + 1;
}

int rec_release(rfs_fs *fs, const struct rfs_irec *r)
{
	/* Inline extents: a handful, released at once. */
	int ret = inl_refs(fs, r, -1);
	if (ret)
		return ret;
	rfs_tree t = FS_TREE(r->i.subtree, rec_owner(&r->i));
	return tree_release(fs, &t, rec_estimate(&r->i));
}

int tree_release(rfs_fs *fs, rfs_tree *t, uint64_t est)
{
	int ret = rfs_dropq_release(fs->pool, t, est);
	if (ret == 1) {
		if (fs->queued_hook)
			fs->queued_hook(fs->queued_arg);
		ret = 0;
	}
	return ret;
}

void rfs_fs_set_queued_hook(rfs_fs *fs, void (*fn)(void *arg), void *arg)
{
	fs->queued_hook = fn;
	fs->queued_arg = arg;
}

/* Anything queued?  Under the read lock: O(1), no writer waits. */
static bool queued(rfs_fs *fs)
{
	fs_rdlock(fs);
	bool q = rfs_pool_root(fs->pool, RFS_ROOT_DROPQ) != 0;
	rfs_pool_unlock(fs->pool);
	return q;
}

int64_t rfs_fs_reclaim(rfs_fs *fs, uint64_t budget)
{
	uint64_t step = budget ? budget : RFS_RECLAIM_STEP;
	for (;;) {
		if (!queued(fs))
			return 0;
		if (fs->rdonly)
			return -EROFS;
		struct rfs_op op = {0};
		uint64_t freed, left = 0;
		int ret;
		do {
			ret = op_begin(fs, &op, "releasing deleted files", 0, 0);
			if (ret)
				return ret;
			ret = rfs_dropq_work(fs->pool, step, &freed, &left);
			fs->ops++; /* counts changed: a du running now is approximate */
		} while ((ret = op_end(&op, ret)) == OP_RETRY);
		if (ret) {
			rfs_log(RFS_LOG_ERR, "%s: releasing the blocks of deleted files failed: %s (they stay allocated; run reflinkfs fsck)",
				rfs_pool_path(fs->pool), strerror(-ret));
			return ret;
		}
		if (budget || !left)
			return (int64_t)left;
	}
}

int rfs_fs_reclaim_status(rfs_fs *fs, struct rfs_fs_reclaim_stat *st)
{
	struct rfs_dropq_stat q;
	memset(st, 0, sizeof(*st));
	fs_rdlock(fs);
	int ret = rfs_dropq_stat(fs->pool, &q);
	rfs_pool_unlock(fs->pool);
	if (ret)
		return ret;
	st->blocks = q.blocks;
	st->trees = q.trees;
	return 0;
}
