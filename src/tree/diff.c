/*
 * Diff of two trees that skips what they share (rfs_tree_diff).
 *
 * Each side is a walk whose current *element* is either a leaf item or a
 * whole child subtree of an internal node (known from its parent: block
 * number, level, and a lower bound of its keys, without reading it).  A
 * merge over the two element streams then decides, at every step:
 *
 *   - both elements are subtrees in the same block: the same node, so the
 *     same content (a block holds one node at a time, and nodes are never
 *     changed in place once committed or shared): skip both, unread;
 *   - both are items: an ordinary merge step (report the smaller key as
 *     only on its side, or compare the values of equal keys);
 *   - otherwise a subtree is opened (its node read and pushed), choosing
 *     the one whose keys may start first; an item whose key is below a
 *     subtree's lower bound is decided without opening it.
 *
 * Why this is exact: at every step each item consumed on either side is
 * smaller than the smallest remaining item of both sides (the usual merge
 * invariant), since a subtree is only skipped when both sides stand at its
 * start, and an item is only declared one-sided when the other side's
 * remaining keys are all at or above a lower bound that exceeds it.  Lower
 * bounds: a child at slot s > 0 holds keys >= its separator; slot 0's
 * separator may be stale (node.h), so it inherits its parent's bound.
 *
 * Cost: nodes are read only along paths where the trees differ.  When
 * the trees' node boundaries differ locally (a split on one side), a side
 * may open a node the other skips later, O(height) extra reads per
 * difference.
 */
#include <errno.h>
#include <stdlib.h>

#include "reflinkfs/log.h"
#include "tree/tree_internal.h"

struct dside {
	rfs_pool *pool;
	int h; /* nodes on the stack; 0 = at the end */
	struct rfs_buf *b[NODE_MAX_HEIGHT];
	unsigned s[NODE_MAX_HEIGHT];
	/* Lower bound of the keys of node b[i] (NULL = minus infinity); points
	 * into b[i - 1], pinned while b[i] is on the stack. */
	const uint8_t *lb[NODE_MAX_HEIGHT];
	size_t lblen[NODE_MAX_HEIGHT];
};

static void side_release(struct dside *d)
{
	while (d->h > 0)
		rfs_buf_put(d->pool, d->b[--d->h]);
}

/* Push node blocknr (generation gen, 0 = any) with lower bound lb. */
static int side_push(struct dside *d, uint64_t blocknr, uint64_t gen,
		     const uint8_t *lb, size_t lblen, int want_level)
{
	struct rfs_buf *b;
	int ret;

	if (d->h >= NODE_MAX_HEIGHT)
		return -EUCLEAN;
	ret = tree_read(d->pool, blocknr, gen, &b);
	if (ret)
		return ret;
	if ((want_level >= 0 && (int)node_level(b->data) != want_level) ||
	    (node_level(b->data) > 0 && node_n(b->data) == 0)) {
		rfs_log(RFS_LOG_ERR, "tree: node %llu: bad level or empty internal node",
			(unsigned long long)b->blocknr);
		rfs_buf_put(d->pool, b);
		return -EUCLEAN;
	}
	d->b[d->h] = b;
	d->s[d->h] = 0;
	d->lb[d->h] = lb;
	d->lblen[d->h] = lblen;
	d->h++;
	return 0;
}

/* Move past the current element, popping finished nodes. */
static void side_advance(struct dside *d)
{
	while (d->h > 0) {
		if (++d->s[d->h - 1] < node_n(d->b[d->h - 1]->data))
			return;
		rfs_buf_put(d->pool, d->b[--d->h]);
	}
}

/* Level of the node holding the current element: 0 = the element is an
 * item, L > 0 = a subtree of level L - 1. */
static unsigned side_level(const struct dside *d)
{
	return node_level(d->b[d->h - 1]->data);
}

static struct node_child side_child(const struct dside *d)
{
	return node_get_child(d->b[d->h - 1]->data, d->s[d->h - 1]);
}

/* Lower bound of the current element (*key NULL = minus infinity); for an
 * item, its key. */
static void side_bound(const struct dside *d, const uint8_t **key, size_t *klen)
{
	const uint8_t *n = d->b[d->h - 1]->data;
	unsigned s = d->s[d->h - 1];

	if (node_level(n) == 0 || s > 0) {
		*key = node_key(n, s, klen);
		return;
	}
	*key = d->lb[d->h - 1];
	*klen = d->lblen[d->h - 1];
}

/* Open the current element, a subtree. */
static int side_descend(struct dside *d)
{
	const uint8_t *lb;
	size_t lblen;
	struct node_child ch = side_child(d);

	side_bound(d, &lb, &lblen);
	int ret = side_push(d, ch.blocknr, ch.gen, lb, lblen, (int)side_level(d) - 1);
	if (ret)
		return ret;
	/* Only a root may be an empty leaf; skip one anywhere else too. */
	if (node_n(d->b[d->h - 1]->data) == 0) {
		rfs_buf_put(d->pool, d->b[--d->h]);
		side_advance(d);
	}
	return 0;
}

static int side_open(struct dside *d, rfs_pool *pool, const rfs_tree *t)
{
	d->pool = pool;
	d->h = 0;
	if (!t->root)
		return 0;
	int ret = side_push(d, t->root, 0, NULL, 0, -1);
	if (ret)
		return ret;
	if (node_n(d->b[0]->data) == 0)
		side_release(d);
	return 0;
}

/* Bound comparison with NULL as minus infinity. */
static int bound_cmp(const uint8_t *a, size_t al, const uint8_t *b, size_t bl)
{
	if (!a || !b)
		return a ? 1 : b ? -1 : 0;
	return key_cmp(a, al, b, bl);
}

/* Report the current item of d as being only on that side. */
static int report_one(struct dside *d, bool is_a, rfs_tree_diff_fn fn, void *arg)
{
	const uint8_t *n = d->b[d->h - 1]->data;
	unsigned s = d->s[d->h - 1];
	struct rfs_tree_diff_item it = {0};
	size_t vl;
	const uint8_t *v = node_val((uint8_t *)n, s, &vl);

	it.key = node_key(n, s, &it.klen);
	if (is_a) {
		it.aval = v;
		it.avlen = vl;
		it.aflags = node_flags(n, s);
	} else {
		it.bval = v;
		it.bvlen = vl;
		it.bflags = node_flags(n, s);
	}
	return fn(arg, &it);
}

/* Both current elements are items with equal keys: report them if their
 * values or flags differ. */
static int compare_items(struct dside *a, struct dside *b, rfs_tree_diff_fn fn, void *arg)
{
	const uint8_t *na = a->b[a->h - 1]->data, *nb = b->b[b->h - 1]->data;
	unsigned sa = a->s[a->h - 1], sb = b->s[b->h - 1];
	struct rfs_tree_diff_item it = {0};

	it.key = node_key(na, sa, &it.klen);
	it.aval = node_val((uint8_t *)na, sa, &it.avlen);
	it.aflags = node_flags(na, sa);
	it.bval = node_val((uint8_t *)nb, sb, &it.bvlen);
	it.bflags = node_flags(nb, sb);
	if (it.aflags == it.bflags && it.avlen == it.bvlen &&
	    (it.avlen == 0 || memcmp(it.aval, it.bval, it.avlen) == 0))
		return 0;
	return fn(arg, &it);
}

/* One step of the merge; 0 = go on. */
static int diff_step(struct dside *a, struct dside *b, rfs_tree_diff_fn fn, void *arg)
{
	int ret;

	if (a->h == 0 || b->h == 0) {
		/* One side is done: the rest of the other is one-sided. */
		struct dside *d = a->h ? a : b;
		if (side_level(d) > 0)
			return side_descend(d);
		ret = report_one(d, d == a, fn, arg);
		side_advance(d);
		return ret;
	}

	unsigned la = side_level(a), lb = side_level(b);
	const uint8_t *ka, *kb;
	size_t kal, kbl;
	side_bound(a, &ka, &kal);
	side_bound(b, &kb, &kbl);

	if (la > 0 && lb > 0) {
		if (side_child(a).blocknr == side_child(b).blocknr) {
			side_advance(a);
			side_advance(b);
			return 0;
		}
		int c = bound_cmp(ka, kal, kb, kbl);
		if (c < 0 || (c == 0 && la > lb))
			return side_descend(a);
		if (c > 0 || lb > la)
			return side_descend(b);
		ret = side_descend(a);
		return ret ? ret : side_descend(b);
	}
	if (la == 0 && lb == 0) {
		int c = key_cmp(ka, kal, kb, kbl);
		if (c < 0) {
			ret = report_one(a, true, fn, arg);
			side_advance(a);
		} else if (c > 0) {
			ret = report_one(b, false, fn, arg);
			side_advance(b);
		} else {
			ret = compare_items(a, b, fn, arg);
			side_advance(a);
			side_advance(b);
		}
		return ret;
	}
	/* One item, one subtree: the item is one-sided when its key is below
	 * every key the subtree may hold; else open the subtree. */
	struct dside *item = la == 0 ? a : b, *sub = la == 0 ? b : a;
	const uint8_t *ik = la == 0 ? ka : kb, *sk = la == 0 ? kb : ka;
	size_t ikl = la == 0 ? kal : kbl, skl = la == 0 ? kbl : kal;
	if (bound_cmp(ik, ikl, sk, skl) < 0) {
		ret = report_one(item, item == a, fn, arg);
		side_advance(item);
		return ret;
	}
	return side_descend(sub);
}

int rfs_tree_diff(rfs_pool *pool, const rfs_tree *a, const rfs_tree *b,
		  rfs_tree_diff_fn fn, void *arg)
{
	struct dside *sa, *sb;
	int ret;

	if (a->root == b->root)
		return 0;
	sa = calloc(2, sizeof(*sa));
	if (!sa)
		return -ENOMEM;
	sb = sa + 1;
	ret = side_open(sa, pool, a);
	if (!ret)
		ret = side_open(sb, pool, b);
	while (!ret && (sa->h || sb->h))
		ret = diff_step(sa, sb, fn, arg);
	side_release(sa);
	side_release(sb);
	free(sa);
	return ret;
}
