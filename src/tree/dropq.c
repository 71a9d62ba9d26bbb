/*
 * The drop queue: tree references given up by their owner, released
 * later in bounded, resumable steps (see tree.h and docs/ARCHITECTURE.md).
 *
 * One step works on the oldest queued tree.  It walks down from the root
 * along the progress key (the first child at the start), checking each
 * node's refcount:
 *   - a node with refcount > 1 is shared with a live tree: it loses one
 *     reference and its whole subtree counts as released (Rodeh's drop);
 *   - a leaf with refcount 1 releases its value references (a nested
 *     tree is released at once when that is O(1), else queued; an
 *     extent is rfs_ref_dec'ed) and is freed;
 *   - an internal node with refcount 1 is descended into.
 * The released subtree is then the frontier: the progress key moves to
 * the separator of its next sibling, and parents whose last child was
 * released are freed on the way up.  Every node on the progress path has
 * refcount 1 and keeps it (nothing but this queue entry reaches it), so a
 * resumed walk finds the same path.  Nodes left of the progress key are
 * never read again: they are freed (and may be reused) or belong to their
 * other owners now.
 *
 * Progress, frees and refcount changes happen in the running transaction
 * together, so any commit holds a consistent queue.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "reflinkfs/log.h"
#include "tree/dropq.h"

struct dq {
	rfs_pool *pool;
	rfs_tree q;
	struct dq_head head;
	bool head_dirty;
};

int dq_head_decode(const void *val, size_t vlen, struct dq_head *h)
{
	if (vlen != sizeof(*h))
		return -EUCLEAN;
	memcpy(h, val, sizeof(*h));
	if (h->magic != DQ_MAGIC || h->version != DQ_VERSION || !h->next_seq)
		return -EUCLEAN;
	return 0;
}

int dq_ent_decode(const void *key, size_t klen, const void *val, size_t vlen,
		  struct dq_ent *e)
{
	if (klen != 8 || vlen < DQ_ENT_HDR)
		return -EUCLEAN;
	e->seq = be64_get(key);
	memcpy(&e->h, val, DQ_ENT_HDR);
	if (!e->seq || !e->h.root || e->h.plen > RFS_KEY_MAX ||
	    vlen != DQ_ENT_HDR + e->h.plen)
		return -EUCLEAN;
	memcpy(e->pkey, (const uint8_t *)val + DQ_ENT_HDR, e->h.plen);
	return 0;
}

static void head_key(uint8_t key[8])
{
	be64_put(key, 0);
}

/* Read the queue's header (or start an empty queue). */
static int dq_load(rfs_pool *pool, struct dq *dq)
{
	uint8_t key[8];
	struct dq_head h;
	size_t vlen = sizeof(h);
	int ret;

	memset(dq, 0, sizeof(*dq));
	dq->pool = pool;
	dq->q.root = rfs_pool_root(pool, RFS_ROOT_DROPQ);
	dq->q.owner = RFS_OWNER_DROPQ;
	if (!dq->q.root) {
		dq->head.magic = DQ_MAGIC;
		dq->head.version = DQ_VERSION;
		dq->head.next_seq = 1;
		return 0;
	}
	head_key(key);
	ret = rfs_tree_lookup(pool, &dq->q, key, 8, &h, &vlen, NULL);
	if (ret == -ENOENT || (!ret && dq_head_decode(&h, vlen, &dq->head))) {
		rfs_log(RFS_LOG_ERR, "%s: drop queue (root block %llu): header record %s",
			rfs_pool_path(pool), (unsigned long long)dq->q.root,
			ret ? "missing" : "malformed or of a newer version");
		return -EUCLEAN;
	}
	return ret;
}

/* Write the header back and publish the queue's root.  An empty queue
 * (no tree left) is dropped whole, so the root slot goes back to 0. */
static int dq_store(struct dq *dq, bool empty)
{
	uint8_t key[8];
	int ret = 0;

	if (empty && dq->q.root) {
		ret = rfs_tree_drop(dq->pool, &dq->q);
	} else if (dq->head_dirty && (dq->q.root || dq->head.entries)) {
		head_key(key);
		ret = rfs_tree_put(dq->pool, &dq->q, key, 8, &dq->head,
				   sizeof(dq->head), 0, RFS_PUT_UPSERT);
	}
	rfs_pool_set_root(dq->pool, RFS_ROOT_DROPQ, dq->q.root);
	dq->head_dirty = false;
	return ret;
}

static int dq_put_ent(struct dq *dq, const struct dq_ent *e, int mode)
{
	uint8_t key[8], val[DQ_ENT_HDR + RFS_KEY_MAX];

	be64_put(key, e->seq);
	memcpy(val, &e->h, DQ_ENT_HDR);
	memcpy(val + DQ_ENT_HDR, e->pkey, e->h.plen);
	return rfs_tree_put(dq->pool, &dq->q, key, 8, val, DQ_ENT_HDR + e->h.plen,
			    0, mode);
}

/* Queue a reference to the tree at root, O(1). */
static int dq_push(struct dq *dq, uint64_t root, uint64_t owner, uint64_t est)
{
	struct dq_ent e;
	int ret;

	memset(&e, 0, sizeof(e));
	e.seq = dq->head.next_seq;
	e.h.root = root;
	e.h.owner = owner;
	e.h.gen = rfs_pool_txn_gen(dq->pool);
	ret = dq_put_ent(dq, &e, RFS_PUT_INSERT);
	if (ret)
		return ret;
	dq->head.next_seq++;
	dq->head.entries++;
	dq->head.blocks += est;
	dq->head_dirty = true;
	return 0;
}

/* The oldest queued tree; -ENOENT when none. */
static int dq_first(struct dq *dq, struct dq_ent *e)
{
	struct rfs_cursor c;
	const void *k, *v;
	size_t kl, vl;
	uint8_t key[8];
	int ret;

	if (!dq->q.root)
		return -ENOENT;
	be64_put(key, 1);
	tree_cursor_init(&c, dq->pool, dq->q.root);
	ret = rfs_cursor_seek(&c, key, 8, +1);
	if (!ret)
		ret = rfs_cursor_get(&c, &k, &kl, &v, &vl, NULL);
	if (!ret && dq_ent_decode(k, kl, v, vl, e)) {
		rfs_log(RFS_LOG_ERR, "%s: drop queue (root block %llu): malformed entry",
			rfs_pool_path(dq->pool), (unsigned long long)dq->q.root);
		ret = -EUCLEAN;
	}
	tree_cursor_fini(&c);
	return ret;
}

int rfs_dropq_add(rfs_pool *pool, rfs_tree *t, uint64_t est_blocks)
{
	struct dq dq;
	int ret = rfs_pool_check_writable(pool);

	if (ret || !t->root)
		return ret;
	if (!tree_refcounted(t))
		return -EINVAL;
	ret = dq_load(pool, &dq);
	if (ret)
		return ret;
	ret = dq_push(&dq, t->root, t->owner, est_blocks);
	if (!ret)
		t->root = 0; /* the queue holds the reference now */
	int r2 = dq_store(&dq, false);
	return ret ? ret : r2;
}

int rfs_dropq_release(rfs_pool *pool, rfs_tree *t, uint64_t est_blocks)
{
	struct rfs_buf *b;
	uint64_t count;
	bool small;
	int ret = rfs_pool_check_writable(pool);

	if (ret || !t->root)
		return ret;
	if (!tree_refcounted(t))
		return -EINVAL;
	ret = rfs_ref_get(pool, t->root, &count);
	if (ret)
		return ret;
	if (count > 1)
		return rfs_tree_drop(pool, t); /* one decrement */
	ret = tree_read(pool, t->root, 0, &b);
	if (ret)
		return ret;
	/* One leaf: a bounded number of value references, released now,
	 * unless one of them is a nested tree (of any size). */
	small = node_level(b->data) == 0;
	for (unsigned i = 0; small && i < node_n(b->data); i++)
		if (node_flags(b->data, i) & RFS_ITEM_TREE)
			small = false;
	rfs_buf_put(pool, b);
	if (small)
		return rfs_tree_drop(pool, t);
	ret = rfs_dropq_add(pool, t, est_blocks);
	return ret ? ret : 1;
}

/*
 * Release a nested tree met in a released leaf: at once when that is
 * O(1) (a shared root loses one reference; a single leaf without nested
 * trees is freed, its extents released), else queue it.  Directories of
 * small files are the common case, so most nested trees go at once and
 * the queue does not churn.
 */
static int release_nested(struct dq *dq, uint64_t root, uint64_t *cost, bool *changed)
{
	rfs_pool *pool = dq->pool;
	struct rfs_buf *b;
	uint64_t count, work = 1;
	bool small;
	int ret = rfs_ref_get(pool, root, &count);

	if (ret)
		return ret;
	if (count > 1) {
		*changed = true;
		*cost += 1;
		return rfs_ref_dec(pool, root, 1);
	}
	ret = tree_read(pool, root, 0, &b);
	if (ret)
		return ret;
	small = node_level(b->data) == 0;
	for (unsigned i = 0; small && i < node_n(b->data); i++) {
		struct tree_vrefs r;
		size_t vlen;
		uint8_t *v = node_val(b->data, i, &vlen);
		uint8_t fl = node_flags(b->data, i);
		if ((fl & RFS_ITEM_TREE) || !tree_value_refs_valid(v, vlen, fl)) {
			small = false;
			break;
		}
		tree_value_decode(v, vlen, fl, &r);
		for (unsigned x = 0; x < r.n; x++) {
			uint64_t start, len;
			tree_vrefs_ext(&r, x, &start, &len);
			work += len;
		}
	}
	rfs_buf_put(pool, b);
	*changed = true;
	if (!small) {
		*cost += 1;
		return dq_push(dq, root, RFS_OWNER_USER, 0);
	}
	rfs_tree t = { root, RFS_OWNER_USER };
	*cost += work;
	return rfs_tree_drop(pool, &t);
}

/*
 * Release the value references of a leaf's items from the progress key
 * on.  The values are checked first, so a malformed one fails before
 * anything changed.  *changed tells whether anything did.
 */
static int release_leaf(struct dq *dq, const struct dq_ent *e, uint8_t *d,
			uint64_t blk, uint64_t *cost, bool *changed)
{
	unsigned n = node_n(d), from = 0;
	int ret;

	if (e->h.plen) {
		bool exact;
		from = node_search(d, e->pkey, e->h.plen, &exact);
	}
	for (unsigned i = from; i < n; i++) {
		size_t vlen;
		const uint8_t *v = node_val(d, i, &vlen);
		if (!tree_value_refs_valid(v, vlen, node_flags(d, i))) {
			rfs_log(RFS_LOG_ERR, "%s: block %llu: item flags do not fit the value; queued tree not released",
				rfs_pool_path(dq->pool), (unsigned long long)blk);
			return -EUCLEAN;
		}
	}
	for (unsigned i = from; i < n; i++) {
		struct tree_vrefs r;
		size_t vlen;
		uint8_t *v = node_val(d, i, &vlen);
		uint8_t fl = node_flags(d, i);

		if (!fl)
			continue;
		tree_value_decode(v, vlen, fl, &r);
		if (r.root) {
			ret = release_nested(dq, r.root, cost, changed);
			if (ret)
				return ret;
		}
		for (unsigned x = 0; x < r.n; x++) {
			uint64_t start, len;
			tree_vrefs_ext(&r, x, &start, &len);
			if (!len)
				continue;
			*changed = true;
			ret = rfs_ref_dec(dq->pool, start, len);
			if (ret)
				return ret;
			*cost += len;
		}
	}
	return 0;
}

/*
 * One step on queued tree e: release the leaf or shared subtree at the
 * frontier, free the parents it completes, move the progress key.
 * Returns 1 when the whole tree is released, 0 when more remains, or a
 * negative errno (*changed: whether this step changed anything first).
 */
static int ent_step(struct dq *dq, struct dq_ent *e, uint64_t *cost, bool *changed)
{
	rfs_pool *pool = dq->pool;
	struct rfs_buf *path[NODE_MAX_HEIGHT];
	unsigned slot[NODE_MAX_HEIGHT];
	uint64_t blk = e->h.root, gen = 0, count;
	int h = 0, want = -1, ret;

	for (;;) {
		struct rfs_buf *b;

		ret = rfs_ref_get(pool, blk, &count);
		if (ret)
			goto out;
		if (count > 1) {
			/* Shared: the other owners keep it, and what it
			 * points at. */
			*changed = true;
			ret = rfs_ref_dec(pool, blk, 1);
			if (ret)
				goto out;
			*cost += 1;
			break;
		}
		ret = tree_read(pool, blk, gen, &b);
		if (ret)
			goto out;
		uint8_t *d = b->data;
		if ((want >= 0 && (int)node_level(d) != want) ||
		    (node_level(d) > 0 && (node_n(d) == 0 || h + 1 >= NODE_MAX_HEIGHT))) {
			rfs_log(RFS_LOG_ERR, "%s: block %llu: malformed node in a queued tree (level %u, %u items)",
				rfs_pool_path(pool), (unsigned long long)blk,
				node_level(d), node_n(d));
			rfs_buf_put(pool, b);
			ret = -EUCLEAN;
			goto out;
		}
		if (node_level(d) == 0) {
			ret = release_leaf(dq, e, d, blk, cost, changed);
			rfs_buf_put(pool, b);
			if (ret)
				goto out;
			*changed = true;
			ret = rfs_free_blocks(pool, blk, 1);
			if (ret)
				goto out;
			*cost += 1;
			break;
		}
		unsigned s = e->h.plen ? node_child_slot(d, e->pkey, e->h.plen) : 0;
		struct node_child ch = node_get_child(d, s);
		path[h] = b;
		slot[h] = s;
		h++;
		blk = ch.blocknr;
		gen = ch.gen;
		want = (int)node_level(d) - 1;
	}
	/* The subtree below path[h-1] at slot[h-1] is released. */
	while (h > 0) {
		struct rfs_buf *b = path[h - 1];
		unsigned s = slot[h - 1];

		if (s + 1 < node_n(b->data)) {
			size_t kl;
			const uint8_t *k = node_key(b->data, s + 1, &kl);
			memcpy(e->pkey, k, kl);
			e->h.plen = (uint16_t)kl;
			ret = 0;
			goto out;
		}
		/* Its last child is released: free it too. */
		blk = b->blocknr;
		rfs_buf_put(pool, b);
		h--;
		ret = rfs_free_blocks(pool, blk, 1);
		if (ret)
			goto out;
		*cost += 1;
	}
	return 1;
out:
	while (h > 0)
		rfs_buf_put(pool, path[--h]);
	return ret;
}

/* Work on queued tree e until it is released or cost reaches budget. */
static int ent_work(struct dq *dq, struct dq_ent *e, uint64_t budget,
		    uint64_t *cost)
{
	uint8_t key[8];
	bool moved = false;
	int ret;

	for (;;) {
		bool changed = false;
		ret = ent_step(dq, e, cost, &changed);
		if (ret < 0) {
			if (changed) {
				char why[128];
				snprintf(why, sizeof(why), "releasing queued tree %llu failed halfway (%s)",
					 (unsigned long long)e->seq, strerror(-ret));
				rfs_pool_abort(dq->pool, why);
				return ret;
			}
			break;
		}
		if (ret == 1) {
			be64_put(key, e->seq);
			ret = rfs_tree_delete(dq->pool, &dq->q, key, 8, 0);
			if (ret)
				return ret;
			dq->head.entries--;
			dq->head_dirty = true;
			return 0;
		}
		moved = true;
		if (*cost >= budget)
			break;
	}
	if (moved) {
		int r2 = dq_put_ent(dq, e, RFS_PUT_REPLACE);
		if (r2)
			return r2;
	}
	return ret;
}

int rfs_dropq_work(rfs_pool *pool, uint64_t budget, uint64_t *freed,
		   uint64_t *left)
{
	struct rfs_pool_stats s0, s1;
	struct dq dq;
	uint64_t cost = 0;
	bool empty = false;
	int ret;

	*freed = *left = 0;
	ret = rfs_pool_check_writable(pool);
	if (ret || !rfs_pool_root(pool, RFS_ROOT_DROPQ))
		return ret;
	rfs_pool_stats(pool, &s0);
	ret = dq_load(pool, &dq);
	if (ret)
		return ret;
	if (!budget)
		budget = 1;
	while (cost < budget) {
		struct dq_ent e;
		uint64_t before = cost;

		ret = dq_first(&dq, &e);
		if (ret == -ENOENT) {
			empty = true;
			ret = 0;
			break;
		}
		if (!ret)
			ret = ent_work(&dq, &e, budget, &cost);
		uint64_t done = cost - before;
		dq.head.blocks -= done < dq.head.blocks ? done : dq.head.blocks;
		dq.head_dirty |= done > 0;
		if (ret)
			break;
	}
	if (!ret && !empty && !dq.head.entries) {
		/* The budget ran out with the last tree: is anything left? */
		struct dq_ent e;
		ret = dq_first(&dq, &e);
		empty = ret == -ENOENT;
		if (empty)
			ret = 0;
	}
	if (empty && dq.head.entries) {
		rfs_log(RFS_LOG_WARN, "%s: drop queue header counted %llu trees but none is left",
			rfs_pool_path(pool), (unsigned long long)dq.head.entries);
		dq.head.entries = 0;
	}
	int r2 = rfs_pool_check_writable(pool) ? 0 : dq_store(&dq, empty);
	if (!ret)
		ret = r2;
	rfs_pool_stats(pool, &s1);
	*freed = s0.used_blocks > s1.used_blocks ? s0.used_blocks - s1.used_blocks : 0;
	if (!empty)
		*left = dq.head.blocks > dq.head.entries ? dq.head.blocks : dq.head.entries;
	if (!*left && !empty)
		*left = 1;
	return ret;
}

int rfs_dropq_stat(rfs_pool *pool, struct rfs_dropq_stat *st)
{
	struct dq dq;
	int ret;

	memset(st, 0, sizeof(*st));
	if (!rfs_pool_root(pool, RFS_ROOT_DROPQ))
		return 0;
	ret = dq_load(pool, &dq);
	if (ret)
		return ret;
	st->trees = dq.head.entries;
	st->blocks = dq.head.blocks > dq.head.entries ? dq.head.blocks : dq.head.entries;
	st->queued = dq.head.next_seq - 1;
	return 0;
}
