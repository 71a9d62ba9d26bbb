/* Ordered iteration over a tree, both directions. */
#include <errno.h>
#include <stdlib.h>

#include "reflinkfs/log.h"
#include "tree/tree_internal.h"
#include "util/lockcheck.h"

void tree_cursor_init(struct rfs_cursor *c, rfs_pool *pool, uint64_t root)
{
	c->pool = pool;
	c->root = root;
	c->h = 0;
}

static void cursor_release(struct rfs_cursor *c, int from)
{
	for (int i = from; i < c->h; i++)
		rfs_buf_put(c->pool, c->b[i]);
	c->h = from;
}

void tree_cursor_fini(struct rfs_cursor *c)
{
	cursor_release(c, 0);
}

int rfs_cursor_open(rfs_pool *pool, const rfs_tree *t, rfs_cursor **out)
{
	RFS_ASSERT_LOCK(rfs_pool_holds_lock(pool));
	struct rfs_cursor *c = malloc(sizeof(*c));

	if (!c)
		return -ENOMEM;
	tree_cursor_init(c, pool, t->root);
	*out = c;
	return 0;
}

void rfs_cursor_close(rfs_cursor *c)
{
	if (!c)
		return;
	tree_cursor_fini(c);
	free(c);
}

/* Push the child at slot s of the deepest node. */
static int push_child(struct rfs_cursor *c, unsigned s)
{
	uint8_t *d = c->b[c->h - 1]->data;
	struct node_child ch = node_get_child(d, s);
	struct rfs_buf *b;
	int ret;

	if (c->h >= NODE_MAX_HEIGHT)
		return -EUCLEAN;
	ret = tree_read(c->pool, ch.blocknr, ch.gen, &b);
	if (ret)
		return ret;
	if (node_level(b->data) + 1 != node_level(d) ||
	    (node_level(b->data) > 0 && node_n(b->data) == 0)) {
		rfs_log(RFS_LOG_ERR, "tree: node %llu: bad level or empty internal node",
			(unsigned long long)b->blocknr);
		rfs_buf_put(c->pool, b);
		return -EUCLEAN;
	}
	c->s[c->h - 1] = s;
	c->b[c->h++] = b;
	return 0;
}

/* From the current deepest node, descend to its first (dir > 0) or last
 * item. */
static int descend_edge(struct rfs_cursor *c, int dir)
{
	int ret;

	for (;;) {
		uint8_t *d = c->b[c->h - 1]->data;
		unsigned n = node_n(d);
		if (n == 0 && node_level(d) > 0)
			return -EUCLEAN;
		if (node_level(d) == 0) {
			if (n == 0)
				return -ENOENT;
			c->s[c->h - 1] = dir > 0 ? 0 : n - 1;
			return 0;
		}
		ret = push_child(c, dir > 0 ? 0 : n - 1);
		if (ret)
			return ret;
	}
}

int rfs_cursor_step(rfs_cursor *c, int dir)
{
	int l;

	if (c->h == 0)
		return -ENOENT;
	/* Find the deepest level that can move in direction dir. */
	for (l = c->h - 1; l >= 0; l--) {
		unsigned n = node_n(c->b[l]->data);
		if (dir > 0 ? c->s[l] + 1 < n : c->s[l] > 0)
			break;
	}
	if (l < 0)
		return -ENOENT;
	if (dir > 0)
		c->s[l]++;
	else
		c->s[l]--;
	if (l == c->h - 1)
		return 0;
	cursor_release(c, l + 1);
	int ret = push_child(c, c->s[l]);
	if (ret)
		return ret;
	return descend_edge(c, dir);
}

int rfs_cursor_seek(rfs_cursor *c, const void *key, size_t klen, int dir)
{
	struct rfs_buf *b;
	int ret;

	cursor_release(c, 0);
	if (!c->root)
		return -ENOENT;
	ret = tree_read(c->pool, c->root, 0, &b);
	if (ret)
		return ret;
	c->b[0] = b;
	c->h = 1;
	if (!key)
		return descend_edge(c, dir);
	while (node_level(c->b[c->h - 1]->data) > 0) {
		uint8_t *d = c->b[c->h - 1]->data;
		if (node_n(d) == 0)
			return -EUCLEAN;
		ret = push_child(c, node_child_slot(d, key, klen));
		if (ret)
			return ret;
	}
	uint8_t *leaf = c->b[c->h - 1]->data;
	bool exact;
	unsigned i = node_search(leaf, key, klen, &exact);
	unsigned n = node_n(leaf);

	if (dir > 0) {
		if (i < n) {
			c->s[c->h - 1] = i;
			return 0;
		}
		if (n == 0)
			return -ENOENT;
		c->s[c->h - 1] = n - 1;
		return rfs_cursor_step(c, +1);
	}
	if (exact) {
		c->s[c->h - 1] = i;
		return 0;
	}
	if (i > 0) {
		c->s[c->h - 1] = i - 1;
		return 0;
	}
	/* Every key here is greater: the answer is the last item before
	 * this leaf. */
	c->s[c->h - 1] = 0;
	return rfs_cursor_step(c, -1);
}

int rfs_cursor_get(rfs_cursor *c, const void **key, size_t *klen,
		   const void **val, size_t *vlen, uint8_t *flags)
{
	size_t kl, vl;

	if (c->h == 0)
		return -ENOENT;
	uint8_t *leaf = c->b[c->h - 1]->data;
	unsigned i = c->s[c->h - 1];
	if (i >= node_n(leaf))
		return -ENOENT;
	const uint8_t *k = node_key(leaf, i, &kl);
	const uint8_t *v = node_val(leaf, i, &vl);
	if (key)
		*key = k;
	if (klen)
		*klen = kl;
	if (val)
		*val = v;
	if (vlen)
		*vlen = vl;
	if (flags)
		*flags = node_flags(leaf, i);
	return 0;
}
