/*
 * The copy-on-write B+tree: lookup, put, delete, clone, drop.
 *
 * Shadowing follows Rodeh (ACM TOS 2008).  A mutation first shadows the
 * whole root-to-leaf path (cow_path): a node with refcount 1 that was
 * written in the running transaction is modified in place; any other node
 * is copied to a fresh block.  Copying a shared node (refcount > 1) adds a
 * reference to each of its children (and to the references its leaf values
 * carry) and removes one from the original; copying an exclusive committed
 * node frees the original (reusable after the commit) and the copy inherits
 * its references.  Splits and merges then work on writable nodes only.
 */
#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "reflinkfs/log.h"
#include "tree/tree_internal.h"
#include "util/lockcheck.h"

_Static_assert(RFS_TREE_MAX_HEIGHT == NODE_MAX_HEIGHT, "one height limit");

static pthread_once_t verifier_once = PTHREAD_ONCE_INIT;

static void register_verifier(void)
{
	rfs_pool_set_verifier(RFS_BT_NODE, node_validate);
}

int tree_read(rfs_pool *pool, uint64_t blocknr, uint64_t gen, struct rfs_buf **out)
{
	pthread_once(&verifier_once, register_verifier);
	return rfs_buf_read(pool, blocknr, RFS_BT_NODE, gen, out);
}

static bool refcounted(const rfs_tree *t)
{
	return tree_refcounted(t);
}

static void path_release(rfs_pool *pool, struct rfs_tree_path *p)
{
	for (int i = 0; i < p->h; i++) {
		if (p->b[i])
			rfs_buf_put(pool, p->b[i]);
		p->b[i] = NULL;
	}
	p->h = 0;
}

/* Enough free blocks for one mutation of a tree of this height, so that
 * -ENOSPC is reported before any node changes.  Shadowing a shared
 * internal node may add a refcount record per child; the budget covers
 * that too. */
static int space_check(rfs_pool *pool, int height)
{
	uint64_t need = 16 + 8 * (uint64_t)(height + 1);

	if (rfs_pool_root(pool, RFS_ROOT_REFCOUNT))
		need += 4 * (uint64_t)(height + 1) * 8;
	if (rfs_pool_free_blocks(pool) < need)
		return -ENOSPC;
	return 0;
}

int rfs_value_extlist(const void *val, size_t vlen, size_t off, const uint8_t **list)
{
	uint16_t n;

	if (vlen < off + 2)
		return -1;
	memcpy(&n, (const uint8_t *)val + vlen - 2, 2);
	if (vlen < off + RFS_EXTLIST_BYTES(n))
		return -1;
	if (list)
		*list = (const uint8_t *)val + vlen - RFS_EXTLIST_BYTES(n);
	return n;
}

bool tree_value_refs_valid(const uint8_t *val, size_t vlen, uint8_t flags)
{
	size_t need = 0;

	if (flags & ~(RFS_ITEM_TREE | RFS_ITEM_EXTENT | RFS_ITEM_EXTLIST))
		return false;
	if ((flags & RFS_ITEM_EXTENT) && (flags & RFS_ITEM_EXTLIST))
		return false;
	if (flags & RFS_ITEM_TREE)
		need += 8;
	if (flags & RFS_ITEM_EXTLIST)
		return rfs_value_extlist(val, vlen, need, NULL) >= 0;
	if (flags & RFS_ITEM_EXTENT)
		need += 16;
	return vlen >= need;
}

void tree_value_decode(const uint8_t *val, size_t vlen, uint8_t flags,
		       struct tree_vrefs *r)
{
	size_t off = 0;

	r->root = 0;
	r->n = 0;
	r->ext = NULL;
	if (flags & RFS_ITEM_TREE) {
		memcpy(&r->root, val, 8);
		off = 8;
	}
	if (flags & RFS_ITEM_EXTLIST) {
		int n = rfs_value_extlist(val, vlen, off, &r->ext);
		r->n = n > 0 ? (unsigned)n : 0;
	} else if (flags & RFS_ITEM_EXTENT) {
		r->ext = val + off;
		r->n = 1;
	}
}

int tree_value_refs(rfs_pool *pool, const uint8_t *val, size_t vlen,
		    uint8_t flags, int delta)
{
	struct tree_vrefs v;
	int ret = 0, r;

	if (!flags)
		return 0;
	if (!tree_value_refs_valid(val, vlen, flags))
		return -EUCLEAN;
	tree_value_decode(val, vlen, flags, &v);
	if (v.root) {
		r = delta > 0 ? rfs_ref_inc(pool, v.root, 1)
			      : tree_drop_node(pool, v.root, 0, true);
		if (r)
			ret = r;
	}
	for (unsigned i = 0; i < v.n; i++) {
		uint64_t start, len;
		tree_vrefs_ext(&v, i, &start, &len);
		if (!len)
			continue;
		r = delta > 0 ? rfs_ref_inc(pool, start, len)
			      : rfs_ref_dec(pool, start, len);
		if (r && !ret)
			ret = r;
	}
	return ret;
}

/* Add one reference to everything a node points at (children or value
 * references), because a copy of the node now points at them too. */
static int node_inc_refs(rfs_pool *pool, uint8_t *d)
{
	unsigned n = node_n(d);
	int ret;

	for (unsigned i = 0; i < n; i++) {
		if (node_level(d) > 0) {
			ret = rfs_ref_inc(pool, node_get_child(d, i).blocknr, 1);
		} else {
			size_t vlen;
			uint8_t *v = node_val(d, i, &vlen);
			ret = tree_value_refs(pool, v, vlen, node_flags(d, i), +1);
		}
		if (ret)
			return ret;
	}
	return 0;
}

/*
 * Make *bp writable for tree t.  On return *bp is a pinned dirty node
 * with refcount 1 (maybe a new block); the caller updates the pointer to
 * it when its block number changed.
 */
static int shadow_one(rfs_pool *pool, const rfs_tree *t, struct rfs_buf **bp,
		      uint64_t count);

static int shadow(rfs_pool *pool, const rfs_tree *t, struct rfs_buf **bp)
{
	uint64_t count = 1;
	int ret;

	if (refcounted(t)) {
		ret = rfs_ref_get(pool, (*bp)->blocknr, &count);
		if (ret)
			return ret;
	}
	if (count == 1 && rfs_buf_is_dirty(pool, *bp)) {
		/* Already this transaction's: changed in place (the
		 * common case of a path shadowed by an earlier change). */
		rfs_pool_note_change(pool);
		return 0;
	}
	/* A whole copy of a node is no change of items: the refcount
	 * updates it makes are not counted (rfs_pool_note_item).  One that
	 * failed after taking its block or some of those updates (a new
	 * block nothing points to, a shared node's children half
	 * referenced) is: the operation must not be kept. */
	uint64_t items = rfs_pool_items(pool), changes = rfs_pool_changes(pool);
	ret = shadow_one(pool, t, bp, count);
	if (!ret)
		rfs_pool_items_set(pool, items);
	else if (rfs_pool_changes(pool) != changes)
		rfs_pool_note_item(pool);
	return ret;
}

/* Copy *bp (count references) to a new block for t. */
static int shadow_one(rfs_pool *pool, const rfs_tree *t, struct rfs_buf **bp,
		      uint64_t count)
{
	struct rfs_buf *buf = *bp, *nb;
	uint64_t old = buf->blocknr;
	int ret;

	ret = rfs_buf_new(pool, RFS_BT_NODE, (uint8_t)node_level(buf->data),
			  t->owner, &nb);
	if (ret)
		return ret;
	memcpy(nb->data + RFS_BLOCK_HEADER_SIZE, buf->data + RFS_BLOCK_HEADER_SIZE,
	       RFS_BLOCK_SIZE - RFS_BLOCK_HEADER_SIZE);
	rfs_buf_put(pool, buf);
	if (count > 1) {
		ret = node_inc_refs(pool, nb->data);
		if (!ret)
			ret = rfs_ref_dec(pool, old, 1);
	} else {
		ret = rfs_free_blocks(pool, old, 1);
	}
	*bp = nb;
	return ret;
}

/* Shadow the rest of the path p to the leaf where key belongs: p holds
 * the shadowed nodes from the root down to one whose subtree holds key;
 * each child below is read, shadowed and linked into its parent.  On
 * failure the whole path is released. */
static int cow_descend(rfs_pool *pool, rfs_tree *t, const void *key, size_t klen,
		       struct rfs_tree_path *p)
{
	struct rfs_buf *b;
	int ret;

	while (node_level(p->b[p->h - 1]->data) > 0) {
		uint8_t *d = p->b[p->h - 1]->data;
		unsigned s;
		struct node_child c;

		if (p->h >= NODE_MAX_HEIGHT || node_n(d) == 0) {
			rfs_log(RFS_LOG_ERR, "tree: node %llu: malformed internal node",
				(unsigned long long)p->b[p->h - 1]->blocknr);
			ret = -EUCLEAN;
			goto fail;
		}
		s = node_child_slot(d, key, klen);
		c = node_get_child(d, s);
		ret = tree_read(pool, c.blocknr, c.gen, &b);
		if (ret)
			goto fail;
		if (node_level(b->data) + 1 != node_level(d)) {
			rfs_log(RFS_LOG_ERR, "tree: node %llu: level %u under level %u",
				(unsigned long long)b->blocknr, node_level(b->data),
				node_level(d));
			rfs_buf_put(pool, b);
			ret = -EUCLEAN;
			goto fail;
		}
		ret = shadow(pool, t, &b);
		p->s[p->h - 1] = s;
		p->b[p->h++] = b;
		if (ret)
			goto fail;
		node_set_child(d, s, b->blocknr, rfs_buf_gen(b));
	}
	return 0;
fail:
	path_release(pool, p);
	return ret;
}

/* Shadow the path from the root to the leaf where key belongs.  With
 * check_space, first make sure the pool has room for the whole mutation
 * (the root's level gives the height: no second read of the root). */
static int cow_path(rfs_pool *pool, rfs_tree *t, const void *key, size_t klen,
		    struct rfs_tree_path *p, bool check_space)
{
	struct rfs_buf *b;
	int ret;

	p->h = 0;
	ret = tree_read(pool, t->root, 0, &b);
	if (ret)
		return ret;
	if (check_space) {
		ret = space_check(pool, (int)node_level(b->data) + 1);
		if (ret) {
			rfs_buf_put(pool, b);
			return ret;
		}
	}
	ret = shadow(pool, t, &b);
	p->b[0] = b;
	p->h = 1;
	if (ret) {
		path_release(pool, p);
		return ret;
	}
	t->root = b->blocknr;
	return cow_descend(pool, t, key, klen, p);
}

/* Read-only descent to the leaf holding key. */
static int find_leaf(rfs_pool *pool, const rfs_tree *t, const void *key,
		     size_t klen, struct rfs_buf **leaf)
{
	struct rfs_buf *b;
	int ret, depth = 0;

	ret = tree_read(pool, t->root, 0, &b);
	if (ret)
		return ret;
	while (node_level(b->data) > 0) {
		uint8_t *d = b->data;
		struct rfs_buf *c;
		unsigned lvl = node_level(d);

		if (node_n(d) == 0 || ++depth >= NODE_MAX_HEIGHT) {
			rfs_log(RFS_LOG_ERR, "tree: node %llu: malformed internal node",
				(unsigned long long)b->blocknr);
			rfs_buf_put(pool, b);
			return -EUCLEAN;
		}
		struct node_child ch = node_get_child(d, node_child_slot(d, key, klen));
		ret = tree_read(pool, ch.blocknr, ch.gen, &c);
		rfs_buf_put(pool, b);
		if (ret)
			return ret;
		if (node_level(c->data) + 1 != lvl) {
			rfs_log(RFS_LOG_ERR, "tree: node %llu: level %u under level %u",
				(unsigned long long)c->blocknr, node_level(c->data), lvl);
			rfs_buf_put(pool, c);
			return -EUCLEAN;
		}
		b = c;
	}
	*leaf = b;
	return 0;
}

static int copy_out(uint8_t *leaf, unsigned i, void *val, size_t *vlen,
		    uint8_t *flags)
{
	size_t len;
	const uint8_t *v = node_val(leaf, i, &len);

	if (val && vlen)
		memcpy(val, v, len < *vlen ? len : *vlen);
	if (vlen)
		*vlen = len;
	if (flags)
		*flags = node_flags(leaf, i);
	return 0;
}

int rfs_tree_lookup(rfs_pool *pool, const rfs_tree *t, const void *key,
		    size_t klen, void *val, size_t *vlen, uint8_t *flags)
{
	RFS_ASSERT_LOCK(rfs_pool_holds_lock(pool));
	struct rfs_buf *leaf = NULL;
	bool exact;
	int ret;

	if (!t->root)
		return -ENOENT;
	ret = find_leaf(pool, t, key, klen, &leaf);
	if (ret)
		return ret;
	unsigned i = node_search(leaf->data, key, klen, &exact);
	ret = exact ? copy_out(leaf->data, i, val, vlen, flags) : -ENOENT;
	rfs_buf_put(pool, leaf);
	return ret;
}

int rfs_tree_lookup_mut(rfs_pool *pool, rfs_tree *t, const void *key,
			size_t klen, void *val, size_t *vlen, uint8_t *flags)
{
	RFS_ASSERT_LOCK(rfs_pool_holds_wrlock(pool));
	struct rfs_tree_path p;
	bool exact;
	int ret;

	if (!t->root)
		return -ENOENT;
	ret = rfs_pool_check_writable(pool);
	if (ret)
		return ret;
	ret = cow_path(pool, t, key, klen, &p, false);
	if (ret)
		return ret;
	uint8_t *leaf = p.b[p.h - 1]->data;
	unsigned i = node_search(leaf, key, klen, &exact);
	ret = exact ? copy_out(leaf, i, val, vlen, flags) : -ENOENT;
	path_release(pool, &p);
	return ret;
}

/*
 * Where to split node d for an item of isz bytes going in at idx.  An
 * append (the caller's RFS_PUT_APPEND: no key will come between this one
 * and the item after it) splits right at idx, so the left node stays full
 * and the appends that follow fill the right one: a 50/50 split would
 * leave every node of an append-only range half empty.  Only when the
 * left part is at least half full: items of several ranges share a node
 * (a per-directory index), and a small left part that none of them
 * grows any more would stay small.  Otherwise the balanced split.
 */
static unsigned split_at(const uint8_t *d, unsigned idx, size_t isz, bool append)
{
	if (append && idx > 0) {
		size_t left = 0, right = isz;
		for (unsigned i = 0; i < node_n(d); i++) {
			const struct node_slot *s = node_cslot(d, i);
			*(i < idx ? &left : &right) += item_size(s->klen, s->vlen);
		}
		if (left >= NODE_SPACE / 2 && right <= NODE_SPACE)
			return idx;
	}
	return node_split_point(d, idx, isz);
}

/* Whether the node at path level li is the last of its level: every
 * node above it was entered through its last child. */
static bool rightmost(const struct rfs_tree_path *p, int li)
{
	for (int k = 0; k < li; k++)
		if (p->s[k] + 1 != node_n(p->b[k]->data))
			return false;
	return true;
}

/* Replace the separator of parent slot i (i > 0) by key; the caller
 * checked that it fits (sep_fits). */
static void set_sep(uint8_t *parent, unsigned i, const uint8_t *key, size_t klen)
{
	uint8_t k[RFS_KEY_MAX];
	struct node_child c = node_get_child(parent, i);
	memcpy(k, key, klen); /* key may point into a node that changes */
	node_remove(parent, i);
	node_insert(parent, i, k, klen, &c, sizeof(c), 0);
}

static bool sep_fits(const uint8_t *parent, unsigned i, size_t klen)
{
	size_t oklen;
	(void)node_key(parent, i, &oklen);
	return node_free(parent) + item_size(oklen, sizeof(struct node_child)) >=
	       item_size(klen, sizeof(struct node_child));
}

/*
 * A full leaf at path level li (li > 0) gets an item of isz bytes at idx:
 * move items at its end into its right sibling, or at its start into its
 * left one, when that sibling has room for them, and insert the item
 * here, instead of splitting.  Inserts in the middle of a tree (the
 * names of a copied directory, which arrive in the source's inode order,
 * not in key order) would otherwise leave each leaf they split half
 * empty.  Only the fewest items that make room move, and never the new
 * item's place: 1 when inserted, 0 when neither sibling can take them,
 * or -errno.
 */
static int push_insert(rfs_pool *pool, rfs_tree *t, struct rfs_tree_path *p, int li, unsigned idx,
		       const void *key, size_t klen, const void *val, size_t vlen, uint8_t flags)
{
	uint8_t *d = p->b[li]->data, *parent = p->b[li - 1]->data;
	unsigned s = p->s[li - 1], n = node_n(d);
	size_t isz = item_size(klen, vlen), need = isz - node_free(d), moved = 0;
	struct rfs_buf *sb;
	int ret;

	if (idx == n && s + 1 < node_n(parent)) {
		/* Past this node's last item: the right sibling's first. */
		struct node_child c = node_get_child(parent, s + 1);
		ret = tree_read(pool, c.blocknr, c.gen, &sb);
		if (ret)
			return ret;
		if (node_free(sb->data) >= isz && node_level(sb->data) == 0 &&
		    sep_fits(parent, s + 1, klen)) {
			ret = shadow(pool, t, &sb);
			if (!ret) {
				node_set_child(parent, s + 1, sb->blocknr, rfs_buf_gen(sb));
				node_insert(sb->data, 0, key, klen, val, vlen, flags);
				set_sep(parent, s + 1, key, klen);
			}
			rfs_buf_put(pool, sb);
			return ret ? ret : 1;
		}
		rfs_buf_put(pool, sb);
	}
	for (int side = 0; side < 2; side++) {
		bool right = side == 0;
		if (right ? s + 1 >= node_n(parent) : s == 0)
			continue;
		/* The fewest items from the end (start) that make room,
		 * leaving the new item's place in this node. */
		unsigned m = 0;
		moved = 0;
		while (moved < need && m < n) {
			const struct node_slot *sl = node_cslot(d, right ? n - 1 - m : m);
			moved += item_size(sl->klen, sl->vlen);
			m++;
		}
		if (moved < need || (right ? n - m < idx : m > idx) || m >= n)
			continue;
		struct node_child c = node_get_child(parent, right ? s + 1 : s - 1);
		ret = tree_read(pool, c.blocknr, c.gen, &sb);
		if (ret)
			return ret;
		/* The separator that changes: the sibling's new first key
		 * (right), or this node's (left: after the insert). */
		size_t nklen = klen;
		if (right)
			(void)node_key(d, n - m, &nklen);
		else if (idx != m)
			(void)node_key(d, m, &nklen);
		if (node_free(sb->data) < moved || node_level(sb->data) != 0 ||
		    !sep_fits(parent, right ? s + 1 : s, nklen)) {
			rfs_buf_put(pool, sb);
			continue;
		}
		ret = shadow(pool, t, &sb);
		if (ret) {
			rfs_buf_put(pool, sb);
			return ret;
		}
		node_set_child(parent, right ? s + 1 : s - 1, sb->blocknr, rfs_buf_gen(sb));
		uint8_t *o = sb->data;
		if (right) {
			for (unsigned i = n; i-- > n - m;) {
				size_t kl, vl;
				const uint8_t *k = node_key(d, i, &kl);
				const uint8_t *v = node_val(d, i, &vl);
				node_insert(o, 0, k, kl, v, vl, node_flags(d, i));
			}
			while (node_n(d) > n - m)
				node_remove(d, node_n(d) - 1);
			node_insert(d, idx, key, klen, val, vlen, flags);
			size_t fl;
			const uint8_t *fk = node_key(o, 0, &fl);
			set_sep(parent, s + 1, fk, fl);
		} else {
			for (unsigned i = 0; i < m; i++) {
				size_t kl, vl;
				const uint8_t *k = node_key(d, i, &kl);
				const uint8_t *v = node_val(d, i, &vl);
				node_insert(o, node_n(o), k, kl, v, vl, node_flags(d, i));
			}
			for (unsigned i = 0; i < m; i++)
				node_remove(d, 0);
			node_insert(d, idx - m, key, klen, val, vlen, flags);
			size_t fl;
			const uint8_t *fk = node_key(d, 0, &fl);
			set_sep(parent, s, fk, fl);
		}
		rfs_buf_put(pool, sb);
		return 1;
	}
	return 0;
}

static int link_right(rfs_pool *pool, rfs_tree *t, struct rfs_tree_path *p, int li,
		      struct rfs_buf *right, bool append);

/*
 * Insert an item at index idx of the node at path level li, splitting
 * upwards as needed (append: see split_at).  Every node on the path is
 * writable.
 */
static int insert_at(rfs_pool *pool, rfs_tree *t, struct rfs_tree_path *p, int li,
		     unsigned idx, const void *key, size_t klen, const void *val,
		     size_t vlen, uint8_t flags, bool append)
{
	uint8_t *d = p->b[li]->data;
	size_t isz = item_size(klen, vlen);
	struct rfs_buf *right;
	unsigned sp;
	int ret;

	if (node_free(d) >= isz) {
		node_insert(d, idx, key, klen, val, vlen, flags);
		return 0;
	}
	if (li > 0 && node_level(d) == 0) {
		ret = push_insert(pool, t, p, li, idx, key, klen, val, vlen, flags);
		if (ret)
			return ret < 0 ? ret : 0;
	}
	ret = rfs_buf_new(pool, RFS_BT_NODE, (uint8_t)node_level(d), t->owner, &right);
	if (ret)
		return ret;
	node_init(right->data);
	/* An item going past the last one is usually the next of a run of
	 * increasing keys (new inode numbers, journal sequence numbers,
	 * entries of a copied directory): leave this node full and start
	 * the right one with the new item, instead of two half-empty nodes
	 * of which the left is never filled again.  Inside a node, only the
	 * caller knows (RFS_PUT_APPEND, split_at). */
	sp = idx == node_n(d) ? idx : split_at(d, idx, isz, append);
	/* The last node of the tree takes keys that arrive near its end (the
	 * entries of the directories a copy makes: keyed by the directory's
	 * new inode number, then their names' hashes): split at the new key
	 * whenever the balanced split would, so the left part stays full. */
	if (sp < idx && idx < node_n(d) && rightmost(p, li))
		sp = idx;
	node_move_tail(right->data, d, sp);
	if (idx < sp)
		node_insert(d, idx, key, klen, val, vlen, flags);
	else
		node_insert(right->data, idx - sp, key, klen, val, vlen, flags);

	return link_right(pool, t, p, li, right, append);
}

/* Link right, the new right sibling of the node at path level li, into
 * the level above (a new root when li is the root); puts right. */
static int link_right(rfs_pool *pool, rfs_tree *t, struct rfs_tree_path *p, int li,
		      struct rfs_buf *right, bool append)
{
	uint8_t *d = p->b[li]->data;
	struct rfs_buf *nroot;
	int ret;
	size_t sklen;
	const uint8_t *sk = node_key(right->data, 0, &sklen);
	struct node_child rc = { right->blocknr, rfs_buf_gen(right) };

	if (li == 0) {
		ret = rfs_buf_new(pool, RFS_BT_NODE, (uint8_t)(node_level(d) + 1),
				  t->owner, &nroot);
		if (ret) {
			rfs_buf_put(pool, right);
			return ret;
		}
		node_init(nroot->data);
		size_t lklen;
		const uint8_t *lk = node_key(d, 0, &lklen);
		struct node_child lc = { p->b[0]->blocknr, rfs_buf_gen(p->b[0]) };
		node_insert(nroot->data, 0, lk, lklen, &lc, sizeof(lc), 0);
		node_insert(nroot->data, 1, sk, sklen, &rc, sizeof(rc), 0);
		t->root = nroot->blocknr;
		rfs_buf_put(pool, nroot);
		rfs_buf_put(pool, right);
		return 0;
	}
	ret = insert_at(pool, t, p, li - 1, p->s[li - 1] + 1, sk, sklen, &rc,
			sizeof(rc), 0, append);
	rfs_buf_put(pool, right);
	return ret;
}

int rfs_tree_put(rfs_pool *pool, rfs_tree *t, const void *key, size_t klen,
		 const void *val, size_t vlen, uint8_t flags, int mode)
{
	RFS_ASSERT_LOCK(rfs_pool_holds_wrlock(pool));
	int m = mode & 0xff, keep = mode & RFS_KEEP_REFS;
	bool append = mode & RFS_PUT_APPEND;
	uint8_t old[RFS_VAL_MAX];
	size_t oldlen = 0;
	uint8_t oldflags = 0;
	struct rfs_tree_path p;
	bool exact;
	int ret;

	if (klen == 0 || klen > RFS_KEY_MAX || vlen > RFS_VAL_MAX ||
	    !tree_value_refs_valid(val, vlen, flags) || m > RFS_PUT_REPLACE)
		return -EINVAL;
	ret = rfs_pool_check_writable(pool);
	if (ret)
		return ret;
	if (!t->root) {
		struct rfs_buf *leaf;
		if (m == RFS_PUT_REPLACE)
			return -ENOENT;
		ret = rfs_buf_new(pool, RFS_BT_NODE, 0, t->owner, &leaf);
		if (ret)
			return ret;
		node_init(leaf->data);
		node_insert(leaf->data, 0, key, klen, val, vlen, flags);
		rfs_pool_note_item(pool);
		t->root = leaf->blocknr;
		rfs_buf_put(pool, leaf);
		return 0;
	}
	/* Refcount-tree updates are part of a mutation already checked.  A
	 * replace is how a caller records a change it already made (a new
	 * nested root after a delete), so like a delete it may use the
	 * pool's reserve: a full pool must be able to finish deleting. */
	ret = cow_path(pool, t, key, klen, &p,
		       refcounted(t) && m != RFS_PUT_REPLACE);
	if (ret)
		return ret;
	rfs_pool_note_item(pool); /* from here a failure is half a change */
	int li = p.h - 1;
	uint8_t *leaf = p.b[li]->data;
	unsigned idx = node_search(leaf, key, klen, &exact);
	if (exact) {
		if (m == RFS_PUT_INSERT) {
			ret = -EEXIST;
			goto out;
		}
		uint8_t *ov = node_val(leaf, idx, &oldlen);
		memcpy(old, ov, oldlen);
		oldflags = node_flags(leaf, idx);
		if (oldlen == vlen) {
			/* Same size (a file's extent moved to new blocks, an
			 * inode record rewritten): overwrite it where it lies.
			 * A remove and an insert would leave a hole that makes
			 * every few replaces compact the whole node. */
			memcpy(ov, val, vlen);
			node_slot(leaf, idx)->flags = flags;
			ret = 0;
			goto replaced;
		}
		node_remove(leaf, idx);
	} else if (m == RFS_PUT_REPLACE) {
		ret = -ENOENT;
		goto out;
	}
	ret = insert_at(pool, t, &p, li, idx, key, klen, val, vlen, flags, append && !exact);
replaced:
	if (!ret && exact && !keep)
		ret = tree_value_refs(pool, old, oldlen, oldflags, -1);
out:
	path_release(pool, &p);
	return ret;
}

/* ---- editing one leaf ---------------------------------------------------- */

int rfs_tree_edit_open(rfs_pool *pool, rfs_tree *t, const void *key, size_t klen,
		       struct rfs_tree_edit *e, unsigned *idx, bool *exact)
{
	RFS_ASSERT_LOCK(rfs_pool_holds_wrlock(pool));
	int ret;

	e->pool = pool;
	e->t = t;
	e->p.h = 0;
	e->reshaped = false;
	if (klen == 0 || klen > RFS_KEY_MAX)
		return -EINVAL;
	if (!t->root)
		return -ENOENT;
	ret = rfs_pool_check_writable(pool);
	if (ret)
		return ret;
	/* No space check: a splice within the leaf takes no block, and one
	 * that does not fit is done by puts, which check. */
	ret = cow_path(pool, t, key, klen, &e->p, false);
	if (ret)
		return ret;
	*idx = node_search(e->p.b[e->p.h - 1]->data, key, klen, exact);
	return 0;
}

unsigned rfs_tree_edit_n(const struct rfs_tree_edit *e)
{
	return node_n(e->p.b[e->p.h - 1]->data);
}

int rfs_tree_edit_get(const struct rfs_tree_edit *e, unsigned i, const void **key,
		      size_t *klen, const void **val, size_t *vlen, uint8_t *flags)
{
	uint8_t *d = e->p.b[e->p.h - 1]->data;

	if (i >= node_n(d))
		return -ENOENT;
	*key = node_key(d, i, klen);
	*val = node_val(d, i, vlen);
	if (flags)
		*flags = node_flags(d, i);
	return 0;
}

void rfs_tree_edit_close(struct rfs_tree_edit *e)
{
	path_release(e->pool, &e->p);
}

/* Whether key lies in the range of keys the node at path level j
 * serves: from the separator it was entered by (the nearest level above
 * whose slot is not the first) up to the next separator (the nearest
 * level above whose slot is not the last).  An internal slot 0's key is
 * no bound (node_child_slot).  lo, hi: which bounds to check. */
static bool node_serves(const struct rfs_tree_path *p, int j, const void *key, size_t klen,
			bool lo, bool hi)
{
	for (int k = j - 1; k >= 0 && (lo || hi); k--) {
		const uint8_t *d = p->b[k]->data;
		unsigned s = p->s[k];
		size_t bl;
		if (lo && s > 0) {
			const uint8_t *b = node_key(d, s, &bl);
			if (key_cmp(key, klen, b, bl) < 0)
				return false;
			lo = false;
		}
		if (hi && s + 1 < node_n(d)) {
			const uint8_t *b = node_key(d, s + 1, &bl);
			if (key_cmp(key, klen, b, bl) >= 0)
				return false;
			hi = false;
		}
	}
	return true;
}

/* The same for the leaf at the bottom of p. */
static bool leaf_serves(const struct rfs_tree_path *p, const void *key, size_t klen,
			bool lo, bool hi)
{
	return node_serves(p, p->h - 1, key, klen, lo, hi);
}

int rfs_tree_edit_move(struct rfs_tree_edit *e, const void *key, size_t klen,
		       unsigned *idx, bool *exact)
{
	RFS_ASSERT_LOCK(rfs_pool_holds_wrlock(e->pool));
	int ret = klen == 0 || klen > RFS_KEY_MAX ? -EINVAL : rfs_pool_check_writable(e->pool);
	if (ret) {
		path_release(e->pool, &e->p); /* closed on failure, as documented */
		return ret;
	}
	if (e->p.h == 0 || e->reshaped || e->p.b[0]->blocknr != e->t->root) {
		/* A split moved separators (or the root): from the root. */
		path_release(e->pool, &e->p);
		return rfs_tree_edit_open(e->pool, e->t, key, klen, e, idx, exact);
	}
	/* The lowest node of the path whose subtree holds key: it and all
	 * above it are shadowed already (this operation's, pinned). */
	int j = e->p.h - 1;
	while (j > 0 && !node_serves(&e->p, j, key, klen, true, true))
		j--;
	for (int k = j + 1; k < e->p.h; k++) {
		rfs_buf_put(e->pool, e->p.b[k]);
		e->p.b[k] = NULL;
	}
	e->p.h = j + 1;
	ret = cow_descend(e->pool, e->t, key, klen, &e->p);
	if (ret)
		return ret;
	*idx = node_search(e->p.b[e->p.h - 1]->data, key, klen, exact);
	return 0;
}

/*
 * Replace item i (nr = 1) of leaf d, or insert before item i (nr = 0),
 * by it[0..nins) (checked to fit).  The new data takes the old item's
 * place, the data below it moving down by what the new items need more:
 * a leaf without holes stays without them, so the inserts that follow
 * need no compaction (splitting an extent record in the middle of a
 * leaf by a remove and three inserts left a hole each time, and
 * compacted the leaf on about every third write).
 */
static void splice_leaf(uint8_t *d, unsigned i, unsigned nr,
			const struct rfs_tree_item *it, unsigned nins, size_t newb)
{
	struct node_hdr *h = node_hdr(d);
	unsigned n = h->nitems;
	size_t off, oldb = 0;

	if (nr) {
		const struct node_slot *sl = node_cslot(d, i);
		off = sl->off;
		oldb = (size_t)sl->klen + sl->vlen;
	} else {
		off = h->data_start;
	}
	size_t grow = newb > oldb ? newb - oldb : 0;
	size_t contig = h->data_start - NODE_HDR_SIZE - (size_t)n * NODE_SLOT_SIZE;
	if (contig < grow + (size_t)(nins - nr) * NODE_SLOT_SIZE) {
		/* Holes left by other changes, or the old item's bytes: the
		 * room is there (checked), only not in one piece.  Without
		 * the old item, compacted, it is. */
		if (nr) {
			node_remove(d, i);
			nr = 0;
			n--;
			oldb = 0;
		}
		node_compact(d);
		off = h->data_start;
		grow = newb;
	}
	if (grow) {
		size_t ds = h->data_start;
		memmove(d + ds - grow, d + ds, off - ds);
		if (off > ds)
			for (unsigned j = 0; j < n; j++) {
				struct node_slot *sl = node_slot(d, j);
				if (sl->off < off)
					sl->off = (uint16_t)(sl->off - grow);
			}
		h->data_start = (uint16_t)(ds - grow);
	} else if (newb < oldb) {
		if (off == h->data_start)
			h->data_start = (uint16_t)(h->data_start + oldb - newb);
		else
			h->frag = (uint16_t)(h->frag + oldb - newb);
	}
	size_t o = off + oldb - newb;
	memmove(node_slot(d, i + nins), node_slot(d, i + nr),
		(size_t)(n - i - nr) * NODE_SLOT_SIZE);
	for (unsigned k = 0; k < nins; k++) {
		struct node_slot *sl = node_slot(d, i + k);
		sl->off = (uint16_t)o;
		sl->klen = (uint16_t)it[k].klen;
		sl->vlen = (uint16_t)it[k].vlen;
		sl->flags = it[k].flags;
		sl->pad = 0;
		memcpy(d + o, it[k].key, it[k].klen);
		if (it[k].vlen)
			memcpy(d + o + it[k].klen, it[k].val, it[k].vlen);
		o += it[k].klen + it[k].vlen;
	}
	h->nitems = (uint16_t)(n - nr + nins);
}

/*
 * Where to split leaf d whose items [i, i + nremove) become rep bytes
 * (slots included; total: the leaf's bytes after that) so that the
 * larger half is smallest: the first index of the right half, never
 * inside the replaced items (they go right when it is i), each half
 * keeping an item of its own.  0 when no split leaves both halves
 * within a node.
 */
static unsigned splice_split_point(const uint8_t *d, unsigned i, unsigned nremove,
				   size_t rep, size_t total)
{
	unsigned n = node_n(d), best = 0;
	size_t pre = 0, best_max = NODE_SPACE + 1;

	for (unsigned s = 1; s <= n; s++) {
		const struct node_slot *sl = node_cslot(d, s - 1);
		if (s - 1 < i || s - 1 >= i + nremove)
			pre += item_size(sl->klen, sl->vlen);
		if ((s > i && s < i + nremove) || (s == n && s > i))
			continue;
		size_t l = pre + (s > i ? rep : 0), r = total - l;
		size_t mx = l > r ? l : r;
		if (mx < best_max) {
			best_max = mx;
			best = s;
		}
	}
	return best_max <= NODE_SPACE ? best : 0;
}

int rfs_tree_edit_splice(struct rfs_tree_edit *e, unsigned i, unsigned nremove,
			 const struct rfs_tree_item *it, unsigned nins, int mode)
{
	RFS_ASSERT_LOCK(rfs_pool_holds_wrlock(e->pool));
	uint8_t *d = e->p.b[e->p.h - 1]->data;
	unsigned n = node_n(d);
	size_t newb = 0, oldb = 0, kl = 0;
	const uint8_t *k;

	if (nins == 0 || nremove > 16 || i > n || nremove > n - i)
		return -EINVAL;
	for (unsigned j = 0; j < nins; j++) {
		if (it[j].klen == 0 || it[j].klen > RFS_KEY_MAX || it[j].vlen > RFS_VAL_MAX ||
		    !tree_value_refs_valid(it[j].val, it[j].vlen, it[j].flags))
			return -EINVAL;
		if (j > 0 && key_cmp(it[j - 1].key, it[j - 1].klen, it[j].key, it[j].klen) >= 0)
			return -EINVAL;
		newb += it[j].klen + it[j].vlen;
	}
	/* The new keys stay between the neighbours kept, and in the leaf. */
	const struct rfs_tree_item *last = &it[nins - 1];
	if (i > 0) {
		k = node_key(d, i - 1, &kl);
		if (key_cmp(k, kl, it[0].key, it[0].klen) >= 0)
			return -EINVAL;
	}
	if (i + nremove < n) {
		k = node_key(d, i + nremove, &kl);
		if (key_cmp(last->key, last->klen, k, kl) >= 0)
			return -EINVAL;
	}
	/* Keys past the separators the leaf was entered by belong to
	 * another leaf: an item's key may lie below the next leaf's
	 * separator while its value reaches past it (a file's extent
	 * that grew across), and its pieces go where their keys go. */
	if (!leaf_serves(&e->p, it[0].key, it[0].klen, i == 0, false) ||
	    !leaf_serves(&e->p, last->key, last->klen, false, i + nremove == n))
		return 0;
	for (unsigned j = i; j < i + nremove; j++) {
		const struct node_slot *sl = node_cslot(d, j);
		oldb += (size_t)sl->klen + sl->vlen;
	}
	size_t rep = newb + nins * NODE_SLOT_SIZE, gone = oldb + nremove * NODE_SLOT_SIZE;
	unsigned sp = 0; /* 0: within the leaf, else where it splits */
	if (rep > node_free(d) + gone) {
		sp = splice_split_point(d, i, nremove, rep, node_used(d) - gone + rep);
		if (!sp)
			return 0;
		if (refcounted(e->t)) {
			int ret = space_check(e->pool, e->p.h);
			if (ret)
				return ret;
		}
	}

	/* The removed items' references, to release once they are gone. */
	bool keep = mode & RFS_KEEP_REFS;
	uint8_t old[RFS_BLOCK_SIZE];
	size_t oo = 0;
	if (!keep) {
		for (unsigned j = i; j < i + nremove; j++) {
			size_t vl;
			const uint8_t *v = node_val(d, j, &vl);
			if (!node_flags(d, j))
				continue;
			memcpy(old + oo, v, vl);
			oo += vl;
		}
	}
	uint8_t oflags[16];
	size_t olen[16];
	for (unsigned j = 0; !keep && j < nremove; j++) {
		oflags[j] = node_flags(d, i + j);
		olen[j] = node_cslot(d, i + j)->vlen;
	}

	int ret = 0;
	struct rfs_buf *right = NULL;
	if (sp) {
		ret = rfs_buf_new(e->pool, RFS_BT_NODE, 0, e->t->owner, &right);
		if (ret)
			return ret; /* nothing changed */
		node_init(right->data);
	}
	rfs_pool_note_item(e->pool); /* from here a failure is half a change */
	uint8_t *tgt = d;
	unsigned ti = i;
	if (sp) {
		/* Balanced, not pushed to a sibling as insert_at does: the
		 * records of a file written at random grow at random
		 * places, and a leaf kept full would split or push on each
		 * of them. */
		node_move_tail(right->data, d, sp);
		if (sp <= i) {
			tgt = right->data;
			ti = i - sp;
		}
	}
	for (unsigned j = nremove; j > 1; j--)
		node_remove(tgt, ti + j - 1);
	splice_leaf(tgt, ti, nremove ? 1 : 0, it, nins, newb);
#ifdef RFS_DEBUG
	assert(node_validate(d) == NULL);
	assert(!right || node_validate(right->data) == NULL);
	k = node_key(d, 0, &kl); /* before kl is read: argument order */
	assert(leaf_serves(&e->p, k, kl, true, !right));
#endif
	if (right) {
		e->reshaped = true; /* the path's separators and slots moved */
		ret = link_right(e->pool, e->t, &e->p, e->p.h - 1, right, false);
	}
	if (ret)
		return ret;
	oo = 0;
	for (unsigned j = 0; !keep && j < nremove; j++) {
		if (!oflags[j])
			continue;
		int r = tree_value_refs(e->pool, old + oo, olen[j], oflags[j], -1);
		oo += olen[j];
		if (r && !ret)
			ret = r;
	}
	return ret ? ret : 1;
}

/* Merge two adjacent siblings (children ls and ls+1 of parent) when their
 * items fit in one node.  Returns 1 when merged, 0 when not, or -errno. */
static int try_merge(rfs_pool *pool, rfs_tree *t, uint8_t *parent, unsigned ls)
{
	struct rfs_buf *l, *r;
	struct node_child lc = node_get_child(parent, ls);
	struct node_child rc = node_get_child(parent, ls + 1);
	size_t seplen, r0len;
	const uint8_t *sep = node_key(parent, ls + 1, &seplen);
	int ret;

	ret = tree_read(pool, lc.blocknr, lc.gen, &l);
	if (ret)
		return ret;
	ret = tree_read(pool, rc.blocknr, rc.gen, &r);
	if (ret) {
		rfs_buf_put(pool, l);
		return ret;
	}
	size_t need = node_used(r->data);
	bool internal = node_level(l->data) > 0;
	if (internal && node_n(r->data)) {
		node_key(r->data, 0, &r0len);
		need = need - r0len + seplen;
	}
	if (node_used(l->data) + need > NODE_SPACE) {
		rfs_buf_put(pool, l);
		rfs_buf_put(pool, r);
		return 0;
	}
	ret = shadow(pool, t, &l);
	if (!ret) {
		node_set_child(parent, ls, l->blocknr, rfs_buf_gen(l));
		ret = shadow(pool, t, &r);
		if (!ret)
			node_set_child(parent, ls + 1, r->blocknr, rfs_buf_gen(r));
	}
	if (ret) {
		rfs_buf_put(pool, l);
		rfs_buf_put(pool, r);
		return ret;
	}
	if (internal && node_n(r->data)) {
		/* r's first separator is only implied by the parent; make it
		 * explicit now that it becomes a routing key inside l. */
		uint8_t key[RFS_KEY_MAX];
		size_t vlen;
		struct node_child c0 = node_get_child(r->data, 0);
		(void)node_val(r->data, 0, &vlen);
		memcpy(key, sep, seplen);
		node_remove(r->data, 0);
		node_insert(l->data, node_n(l->data), key, seplen, &c0, sizeof(c0), 0);
	}
	node_move_tail(l->data, r->data, 0);
	uint64_t rblk = r->blocknr;
	rfs_buf_put(pool, l);
	rfs_buf_put(pool, r);
	node_remove(parent, ls + 1);
	ret = rfs_free_blocks(pool, rblk, 1);
	return ret ? ret : 1;
}

/* After a removal at path level li, drop empty nodes and merge small ones,
 * bottom-up, then shrink the root. */
static int rebalance(rfs_pool *pool, rfs_tree *t, struct rfs_tree_path *p, int li)
{
	int ret;

	for (; li > 0; li--) {
		uint8_t *d = p->b[li]->data;
		uint8_t *parent = p->b[li - 1]->data;
		unsigned s = p->s[li - 1];

		if (node_n(d) > 0 && node_used(d) >= NODE_SPACE / 4)
			break;
		if (node_n(d) == 0) {
			uint64_t blk = p->b[li]->blocknr;
			rfs_buf_put(pool, p->b[li]);
			p->b[li] = NULL;
			node_remove(parent, s);
			ret = rfs_free_blocks(pool, blk, 1);
			if (ret)
				return ret;
			continue;
		}
		/* Release our pin: try_merge reads the siblings itself. */
		rfs_buf_put(pool, p->b[li]);
		p->b[li] = NULL;
		if (s > 0)
			ret = try_merge(pool, t, parent, s - 1);
		else if (s + 1 < node_n(parent))
			ret = try_merge(pool, t, parent, s);
		else
			ret = 0;
		if (ret < 0)
			return ret;
		if (ret == 0)
			break;
	}
	/* Shrink: an internal root with one child hands the tree to it. */
	for (;;) {
		struct rfs_buf *root;
		ret = tree_read(pool, t->root, 0, &root);
		if (ret)
			return ret;
		unsigned n = node_n(root->data), lvl = node_level(root->data);
		if (n > 1 || (n == 1 && lvl == 0)) {
			rfs_buf_put(pool, root);
			return 0;
		}
		uint64_t blk = root->blocknr, next = 0;
		if (n == 1)
			next = node_get_child(root->data, 0).blocknr;
		/* The root is dirty and exclusive (it was on the shadowed
		 * path), so it is freed without touching its child's count:
		 * the tree handle inherits that reference. */
		rfs_buf_put(pool, root);
		for (int i = 0; i < p->h; i++) {
			if (p->b[i] && p->b[i]->blocknr == blk) {
				rfs_buf_put(pool, p->b[i]);
				p->b[i] = NULL;
			}
		}
		ret = rfs_free_blocks(pool, blk, 1);
		if (ret)
			return ret;
		t->root = next;
		if (!next)
			return 0;
	}
}

int rfs_tree_delete(rfs_pool *pool, rfs_tree *t, const void *key,
		    size_t klen, int mode)
{
	RFS_ASSERT_LOCK(rfs_pool_holds_wrlock(pool));
	uint8_t old[RFS_VAL_MAX];
	size_t oldlen;
	uint8_t oldflags;
	struct rfs_tree_path p;
	bool exact;
	int ret;

	if (klen == 0 || klen > RFS_KEY_MAX)
		return -EINVAL;
	if (!t->root)
		return -ENOENT;
	ret = rfs_pool_check_writable(pool);
	if (ret)
		return ret;
	/* Deletion must work on a full pool: it may use the reserve. */
	ret = cow_path(pool, t, key, klen, &p, false);
	if (ret)
		return ret;
	int li = p.h - 1;
	uint8_t *leaf = p.b[li]->data;
	unsigned idx = node_search(leaf, key, klen, &exact);
	if (!exact) {
		path_release(pool, &p);
		return -ENOENT;
	}
	const uint8_t *ov = node_val(leaf, idx, &oldlen);
	memcpy(old, ov, oldlen);
	oldflags = node_flags(leaf, idx);
	rfs_pool_note_item(pool);
	node_remove(leaf, idx);
	ret = rebalance(pool, t, &p, li);
	path_release(pool, &p);
	if (!ret && !(mode & RFS_KEEP_REFS))
		ret = tree_value_refs(pool, old, oldlen, oldflags, -1);
	return ret;
}

int rfs_tree_clone(rfs_pool *pool, const rfs_tree *src, rfs_tree *dst)
{
	RFS_ASSERT_LOCK(rfs_pool_holds_wrlock(pool));
	int ret = rfs_pool_check_writable(pool);

	if (ret)
		return ret;
	if (src->root)
		ret = rfs_ref_inc(pool, src->root, 1);
	if (!ret)
		*dst = *src;
	return ret;
}

/* Nesting depth of tree_drop_node on this thread: a damaged pool could
 * hold a value that references its own tree, which would recurse forever. */
static _Thread_local int drop_depth;
#define DROP_DEPTH_MAX 4096

static int drop_node(rfs_pool *pool, uint64_t blocknr, uint64_t gen, bool rc, int level);

/* Drops the child of an interior node of the given level.  The child must
 * be one level lower: a damaged node that points to itself or up its own
 * path would otherwise be walked again at every level it lists, which
 * takes forever long before the depth limit stops it. */
static int drop_child(rfs_pool *pool, uint64_t blocknr, uint64_t gen, bool rc, int level)
{
	if (drop_depth >= DROP_DEPTH_MAX)
		return tree_drop_node(pool, blocknr, gen, rc); /* reports it */
	drop_depth++;
	int ret = drop_node(pool, blocknr, gen, rc, level - 1);
	drop_depth--;
	return ret;
}

/* level: the level the node must have, or -1 for a tree's root. */
static int drop_node(rfs_pool *pool, uint64_t blocknr, uint64_t gen, bool rc, int level)
{
	struct rfs_buf *b;
	uint64_t count = 1;
	int ret, first = 0;

	if (rc) {
		ret = rfs_ref_get(pool, blocknr, &count);
		if (ret)
			return ret;
		if (count > 1)
			return rfs_ref_dec(pool, blocknr, 1);
	}
	ret = tree_read(pool, blocknr, gen, &b);
	if (ret)
		return ret;
	uint8_t *d = b->data;
	if (level >= 0 && (int)node_level(d) != level) {
		rfs_log(RFS_LOG_ERR, "tree: block %llu: level %u where its parent expects %d "
			"(a reference loop?); not dropped",
			(unsigned long long)blocknr, node_level(d), level);
		rfs_buf_put(pool, b);
		return -EUCLEAN;
	}
	for (unsigned i = 0; i < node_n(d); i++) {
		if (node_level(d) > 0) {
			struct node_child c = node_get_child(d, i);
			ret = drop_child(pool, c.blocknr, c.gen, rc, (int)node_level(d));
		} else {
			size_t vlen;
			uint8_t *v = node_val(d, i, &vlen);
			ret = tree_value_refs(pool, v, vlen, node_flags(d, i), -1);
		}
		/* Keep going: free as much as possible, report the first error. */
		if (ret && !first)
			first = ret;
	}
	rfs_buf_put(pool, b);
	ret = rfs_free_blocks(pool, blocknr, 1);
	return first ? first : ret;
}

int tree_drop_node(rfs_pool *pool, uint64_t blocknr, uint64_t gen, bool rc)
{
	int ret;

	if (drop_depth >= DROP_DEPTH_MAX) {
		rfs_log(RFS_LOG_ERR, "tree: block %llu: trees nested more than %d "
			"deep (a reference loop?); not dropped",
			(unsigned long long)blocknr, DROP_DEPTH_MAX);
		return -EUCLEAN;
	}
	drop_depth++;
	ret = drop_node(pool, blocknr, gen, rc, -1);
	drop_depth--;
	return ret;
}

int rfs_tree_drop(rfs_pool *pool, rfs_tree *t)
{
	RFS_ASSERT_LOCK(rfs_pool_holds_wrlock(pool));
	int ret = rfs_pool_check_writable(pool);

	if (ret)
		return ret;
	if (t->root)
		ret = tree_drop_node(pool, t->root, 0, refcounted(t));
	t->root = 0;
	return ret;
}

int rfs_tree_path_shared(rfs_pool *pool, const rfs_tree *t, const void *key,
			 size_t klen, bool *shared)
{
	RFS_ASSERT_LOCK(rfs_pool_holds_lock(pool));
	struct rfs_buf *b;
	uint64_t count;
	int ret;

	*shared = false;
	if (!t->root)
		return 0;
	ret = tree_read(pool, t->root, 0, &b);
	if (ret)
		return ret;
	for (int depth = 0;; depth++) {
		ret = refcounted(t) ? rfs_ref_get(pool, b->blocknr, &count) : 0;
		if (ret || (refcounted(t) && count >= 2)) {
			*shared = !ret;
			break;
		}
		if (node_level(b->data) == 0)
			break;
		ret = tree_step_down(pool, &b, depth, key, klen);
		if (ret)
			break;
	}
	rfs_buf_put(pool, b);
	return ret;
}

int tree_step_down(rfs_pool *pool, struct rfs_buf **b, int depth, const void *key,
		   size_t klen)
{
	const uint8_t *d = (*b)->data;
	unsigned lvl = node_level(d);
	if (node_n(d) == 0 || depth >= NODE_MAX_HEIGHT)
		return -EUCLEAN;
	struct node_child ch = node_get_child(d, node_child_slot(d, key, klen));
	struct rfs_buf *c;
	int ret = tree_read(pool, ch.blocknr, ch.gen, &c);
	if (ret)
		return ret;
	rfs_buf_put(pool, *b);
	*b = c;
	return node_level(c->data) + 1 != lvl ? -EUCLEAN : 0;
}

int rfs_tree_height(rfs_pool *pool, const rfs_tree *t, int *height)
{
	RFS_ASSERT_LOCK(rfs_pool_holds_lock(pool));
	struct rfs_buf *b;
	int ret;

	*height = 0;
	if (!t->root)
		return 0;
	ret = tree_read(pool, t->root, 0, &b);
	if (ret)
		return ret;
	*height = (int)node_level(b->data) + 1;
	rfs_buf_put(pool, b);
	return 0;
}
