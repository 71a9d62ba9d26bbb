/*
 * Node walk of one tree (rfs_tree_walk): every node in pre-order with its
 * block number and refcount, every leaf item in key order, resumable from
 * a key after the caller let go of the lock.
 *
 * Resuming.  Between two calls the tree may have changed (the caller
 * releases the pool lock), so the position is a key, never a block: the
 * walk goes down from the root again.  A node whose lower bound is in the
 * part already done was entered by an earlier call (it is on the path to
 * the position) and is reported again with `resumed` set, so the caller
 * can rebuild what it derives from the path (which shared node a part
 * hangs below) without counting the node twice; subtrees entirely in the
 * done part are not entered.  Lower bounds: a child at slot s > 0 holds
 * keys >= its separator; slot 0's separator may be stale (node.h), so it
 * inherits its parent's bound.  A pause before a node is only allowed at
 * a slot > 0, where the node's bound is strictly above its parent's, so
 * that the parent still counts as entered and the node does not.
 */
#include <errno.h>

#include "reflinkfs/log.h"
#include "tree/tree_internal.h"

struct walk {
	rfs_pool *pool;
	bool refcounted;
	struct rfs_walk_pos *pos;
	const struct rfs_walk_ops *ops;
	void *arg;
};

/* Is a node with lower bound lb (NULL: minus infinity) in the done part? */
static bool bound_done(const struct walk *w, const uint8_t *lb, size_t lblen)
{
	const struct rfs_walk_pos *p = w->pos;
	if (p->mode == RFS_WALK_START)
		return false;
	if (!lb)
		return true;
	int c = key_cmp(lb, lblen, p->key, p->klen);
	return c < 0 || (c == 0 && p->mode != RFS_WALK_BEFORE);
}

/* Is an item with this key done already? */
static bool item_done(const struct walk *w, const uint8_t *k, size_t kl)
{
	const struct rfs_walk_pos *p = w->pos;
	if (p->mode == RFS_WALK_START)
		return false;
	int c = key_cmp(k, kl, p->key, p->klen);
	return c < 0 || (c == 0 && p->mode == RFS_WALK_AFTER);
}

static void set_pos(struct walk *w, int mode, const uint8_t *k, size_t kl)
{
	w->pos->mode = mode;
	w->pos->klen = kl;
	memcpy(w->pos->key, k, kl);
}

/* Walk the subtree of buffer b (lower bound lb, upper bound ub; NULL:
 * unbounded).  1 when paused, 0 when done, < 0 on error. */
static int walk_node(struct walk *w, struct rfs_buf *b, const uint8_t *lb, size_t lblen,
		     const uint8_t *ub, size_t ublen, int depth, bool can_pause)
{
	const uint8_t *d = b->data;
	unsigned n = node_n(d), level = node_level(d);
	struct rfs_walk_node info = {
		.blocknr = b->blocknr,
		.refcount = 1,
		.level = level,
		.resumed = bound_done(w, lb, lblen),
		.can_pause = can_pause && lb,
	};
	int ret = w->refcounted ? rfs_ref_get(w->pool, b->blocknr, &info.refcount) : 0;
	if (ret)
		return ret;
	info.can_pause = info.can_pause && !info.resumed;
	ret = w->ops->enter(w->arg, &info);
	if (ret < 0)
		return ret;
	if (!info.resumed && ret == RFS_WALK_SKIP)
		return 0;
	if (info.can_pause && ret == RFS_WALK_PAUSE) {
		set_pos(w, RFS_WALK_BEFORE, lb, lblen);
		return 1;
	}
	if (level == 0) {
		for (unsigned i = 0; i < n; i++) {
			size_t kl, vl;
			const uint8_t *k = node_key(d, i, &kl);
			if (info.resumed && item_done(w, k, kl))
				continue;
			const uint8_t *v = node_val((uint8_t *)d, i, &vl);
			ret = w->ops->item(w->arg, k, kl, v, vl, node_flags(d, i));
			if (ret < 0)
				return ret;
			if (ret == RFS_WALK_PAUSE || ret == RFS_WALK_PAUSE_AT) {
				set_pos(w, ret == RFS_WALK_PAUSE ? RFS_WALK_AFTER : RFS_WALK_AT, k, kl);
				return 1;
			}
		}
	} else {
		if (depth + 1 >= NODE_MAX_HEIGHT)
			return -EUCLEAN;
		for (unsigned s = 0; s < n; s++) {
			size_t cl = lblen, nl = ublen;
			const uint8_t *clb = s ? node_key(d, s, &cl) : lb;
			const uint8_t *cub = s + 1 < n ? node_key(d, s + 1, &nl) : ub;
			/* Every key of the child is below cub: done when cub is
			 * at or below the position. */
			if (info.resumed && cub && w->pos->mode != RFS_WALK_START &&
			    key_cmp(cub, nl, w->pos->key, w->pos->klen) <= 0)
				continue;
			struct node_child ch = node_get_child(d, s);
			struct rfs_buf *c;
			ret = tree_read(w->pool, ch.blocknr, ch.gen, &c);
			if (ret)
				return ret;
			if (node_level(c->data) + 1 != level ||
			    (node_level(c->data) > 0 && node_n(c->data) == 0)) {
				rfs_log(RFS_LOG_ERR, "tree: node %llu: bad level or empty internal node",
					(unsigned long long)c->blocknr);
				rfs_buf_put(w->pool, c);
				return -EUCLEAN;
			}
			ret = walk_node(w, c, clb, s ? cl : lblen, cub, nl, depth + 1, s > 0);
			rfs_buf_put(w->pool, c);
			if (ret)
				return ret;
		}
	}
	if (w->ops->leave)
		w->ops->leave(w->arg, &info);
	return 0;
}

int rfs_tree_walk(rfs_pool *pool, const rfs_tree *t, struct rfs_walk_pos *pos,
		  const struct rfs_walk_ops *ops, void *arg)
{
	struct walk w = {pool, tree_refcounted(t), pos, ops, arg};
	struct rfs_buf *b;
	if (!t->root)
		return 0;
	int ret = tree_read(pool, t->root, 0, &b);
	if (ret)
		return ret;
	if (node_level(b->data) > 0 && node_n(b->data) == 0) {
		rfs_log(RFS_LOG_ERR, "tree: node %llu: empty internal node",
			(unsigned long long)b->blocknr);
		rfs_buf_put(pool, b);
		return -EUCLEAN;
	}
	ret = walk_node(&w, b, NULL, 0, NULL, 0, 0, false);
	rfs_buf_put(pool, b);
	return ret;
}

int rfs_tree_leaf(rfs_pool *pool, const rfs_tree *t, const void *key, size_t klen,
		  uint64_t *leaf, bool *shared)
{
	struct rfs_buf *b;
	bool rc = tree_refcounted(t);
	*leaf = 0;
	*shared = false;
	if (!t->root)
		return 0;
	int ret = tree_read(pool, t->root, 0, &b);
	if (ret)
		return ret;
	for (int depth = 0;; depth++) {
		uint64_t count = 1;
		ret = rc ? rfs_ref_get(pool, b->blocknr, &count) : 0;
		if (ret)
			break;
		if (count >= 2)
			*shared = true;
		if (node_level(b->data) == 0) {
			*leaf = b->blocknr;
			break;
		}
		ret = tree_step_down(pool, &b, depth, key, klen);
		if (ret)
			break;
	}
	rfs_buf_put(pool, b);
	return ret;
}
