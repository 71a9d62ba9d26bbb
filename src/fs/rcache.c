/*
 * READ's copy of an inode record, kept in the inode's node (issue 9).
 *
 * A READ needs the file's record (size, mode, flags, the root of its
 * extent tree or its inline map).  Finding it walks from the volume's
 * root through every directory on the file's path (ip_load: nlock to copy
 * the path, a catalog lookup, a tree search per level with a cache-shard
 * mutex per block, a heap-allocated path): about a fifth of the daemon's
 * own CPU per 4 KiB random read.  Nothing in the record changes unless
 * some operation takes the pool's write lock, and rfs_pool_change_gen
 * changes at every such acquisition; so the node keeps a copy of the
 * record stamped with the generation it was made at, and a READ that
 * finds the same generation under its read lock uses the copy.  Any
 * change -- a write, truncate, clone onto the file, snapshot restore,
 * rename over it, unlink, an atime update, a commit -- takes the write
 * lock first, so no path can forget to invalidate the copy; the price is
 * that every change of any file invalidates every copy (a READ after it
 * walks once more).
 *
 * The copy is protected by nlock, which the READ takes anyway to find
 * its node: a hit costs one nlock acquisition and a copy of the record,
 * instead of two acquisitions plus the walk.
 */
#include "fs/fs_internal.h"

#include <stdlib.h>
#include <string.h>

struct rfs_rcache {
	uint64_t gen; /* rfs_pool_change_gen when copied */
	size_t cap;   /* bytes tail[] holds */
	struct rfs_inode i;
	size_t taillen;
	char tail[];
};

static void copy_out(const struct rfs_rcache *c, struct rfs_irec *r)
{
	r->i = c->i;
	r->taillen = c->taillen;
	memcpy(r->tail, c->tail, c->taillen);
}

static void copy_in(struct rfs_rcache *c, uint64_t gen, const struct rfs_irec *r)
{
	c->gen = gen;
	c->i = r->i;
	c->taillen = r->taillen;
	memcpy(c->tail, r->tail, r->taillen);
}

int rcache_read(rfs_fs *fs, rfs_nodeid id, struct rfs_node **np, struct rfs_irec *r)
{
	RFS_ASSERT_LOCK(rfs_pool_holds_lock(fs->pool));
	/* Fixed while this thread holds the lock. */
	uint64_t gen = rfs_pool_change_gen(fs->pool);
	node_lock(fs);
	struct rfs_node *n = node_get_locked(fs, id);
	*np = n;
	if (!n) {
		node_unlock(fs);
		return -ESTALE;
	}
	struct rfs_rcache *c = n->rc;
	if (c && c->gen == gen && !n->dead) {
		copy_out(c, r);
		node_unlock(fs);
		atomic_fetch_add_explicit(&fs->rc_hits, 1, memory_order_relaxed);
		return 0;
	}
	size_t cap = c ? c->cap : 0;
	node_unlock(fs);
	atomic_fetch_add_explicit(&fs->rc_misses, 1, memory_order_relaxed);
	int ret = inode_read(fs, n, r);
	if (ret)
		return ret;
	/* Memory outside nlock; without it the READ goes on uncached. */
	struct rfs_rcache *nc = NULL;
	if (r->taillen > cap || !c) {
		nc = malloc(sizeof(*nc) + r->taillen);
		if (!nc)
			return 0;
		nc->cap = r->taillen;
	}
	node_lock(fs);
	struct rfs_rcache *old = NULL;
	/* Another READ may have replaced the copy meanwhile: the newest
	 * allocation wins, any of them holds a record of this generation. */
	if (nc) {
		old = n->rc;
		n->rc = nc;
	}
	c = n->rc;
	if (c->cap >= r->taillen)
		copy_in(c, gen, r);
	else
		c->gen = gen - 1; /* too small for this record: not valid */
	node_unlock(fs);
	free(old);
	return 0;
}

void rcache_free(struct rfs_node *n)
{
	free(n->rc);
	n->rc = NULL;
}

void rfs_fs_rcache_stats(rfs_fs *fs, uint64_t *hits, uint64_t *misses)
{
	*hits = atomic_load(&fs->rc_hits);
	*misses = atomic_load(&fs->rc_misses);
}
