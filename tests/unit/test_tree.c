/*
 * Unit tests of the copy-on-write B+tree (include/reflinkfs/tree.h): point
 * operations with many keys of every size, put modes and limits, cursors,
 * clones and drops, nested trees and data extents carried in values, block
 * refcounts, the catalog, and rfs_check on good and deliberately broken
 * states.
 */
#include "../common/testutil.h"

#include <pthread.h>
#include <stdatomic.h>

/* ---- helpers ---------------------------------------------------------------- */

/* random length: mostly short, sometimes long, sometimes the extremes */
static size_t rand_len(tu_rng *r, size_t lo, size_t hi)
{
	uint64_t p = tu_below(r, 100);
	if (p < 3)
		return lo;
	if (p < 6)
		return hi;
	if (p < 70)
		return tu_range(r, lo, lo + 15 < hi ? lo + 15 : hi);
	if (p < 90)
		return tu_range(r, lo, hi / 8 > lo ? hi / 8 : hi);
	return tu_range(r, lo, hi);
}

static size_t rand_key(tu_rng *r, uint8_t *k)
{
	size_t kl = rand_len(r, 1, RFS_KEY_MAX);
	tu_fill(r, k, kl);
	/* a small alphabet in the first byte makes shared prefixes common */
	k[0] = (uint8_t)('a' + tu_below(r, 4));
	return kl;
}

static size_t rand_val(tu_rng *r, uint8_t *v)
{
	size_t vl = rand_len(r, 0, RFS_VAL_MAX);
	tu_fill(r, v, vl);
	return vl;
}

/* put in tree and model, checking the result against the model */
static void put_both(tu_pool *c, rfs_tree *t, tu_map *m, const void *k,
		     size_t kl, const void *v, size_t vl, uint8_t fl, int mode)
{
	bool exists = tu_map_get(m, k, kl) != NULL;
	int rc = rfs_tree_put(c->pool, t, k, kl, v, vl, fl, mode);
	int base = mode & 0xff;
	if (base == RFS_PUT_INSERT && exists) {
		RC(rc, -EEXIST);
		return;
	}
	if (base == RFS_PUT_REPLACE && !exists) {
		RC(rc, -ENOENT);
		return;
	}
	CHECK(rc == 0, "put (mode %d, klen %zu, vlen %zu, exists %d) = %d", mode, kl, vl, exists, rc);
	tu_map_put(m, k, kl, v, vl, fl);
}

static void del_both(tu_pool *c, rfs_tree *t, tu_map *m, const void *k, size_t kl)
{
	bool exists = tu_map_get(m, k, kl) != NULL;
	int rc = rfs_tree_delete(c->pool, t, k, kl, 0);
	if (!exists) {
		RC(rc, -ENOENT);
		return;
	}
	CHECK(rc == 0, "delete (klen %zu) = %d", kl, rc);
	tu_map_del(m, k, kl);
}

static void expect_lookup(tu_pool *c, const rfs_tree *t, const tu_map *m,
			  const void *k, size_t kl)
{
	static uint8_t v[RFS_VAL_MAX];
	size_t vl = sizeof v;
	uint8_t fl = 0xee;
	int rc = rfs_tree_lookup(c->pool, t, k, kl, v, &vl, &fl);
	const tu_item *e = tu_map_get(m, k, kl);
	if (!e) {
		RC(rc, -ENOENT);
		return;
	}
	OK(rc);
	EQ_U64(vl, e->vlen);
	EQ_U64(fl, e->flags);
	CHECK(vl == 0 || memcmp(v, e->val, vl) == 0, "value differs (klen %zu)", kl);
}

static void store(tu_pool *c, uint64_t id, const rfs_tree *t)
{
	OK(rfs_catalog_set(c->pool, id, t));
}

static rfs_tree load(tu_pool *c, uint64_t id)
{
	rfs_tree t = {12345, 0};
	OK(rfs_catalog_get(c->pool, id, &t));
	return t;
}

static uint64_t used(tu_pool *c)
{
	return tu_stats(c).used_blocks;
}

/* Commit, then check the pool. */
static void commit_clean(tu_pool *c)
{
	tu_commit(c);
	CHECK_CLEAN(c);
}

/* Delete catalog tree a, then b (0: none), commit, check the pool, and
 * check that it is back to u0 blocks in use (nothing leaked). */
static void drop_to(tu_pool *c, uint64_t a, uint64_t b, uint64_t u0)
{
	OK(rfs_catalog_del(c->pool, a));
	if (b)
		OK(rfs_catalog_del(c->pool, b));
	commit_clean(c);
	EQ_U64(used(c), u0);
}

static void key64(uint8_t *k, uint64_t v)
{
	tu_be64(k, v);
}

/* ------------------------------------------------------------------------------ */

static void test_empty(void **state)
{
	tu_pool *c = *state;
	CHECK_CLEAN(c);
	rfs_tree t = {0, RFS_OWNER_USER};
	uint8_t v[8];
	size_t vl = sizeof v;
	RC(rfs_tree_lookup(c->pool, &t, "a", 1, v, &vl, NULL), -ENOENT);
	RC(rfs_tree_delete(c->pool, &t, "a", 1, 0), -ENOENT);
	int h = -1;
	OK(rfs_tree_height(c->pool, &t, &h));
	EQ_U64(h, 0);
	rfs_cursor *cur = NULL;
	OK(rfs_cursor_open(c->pool, &t, &cur));
	RC(rfs_cursor_seek(cur, NULL, 0, 1), -ENOENT);
	RC(rfs_cursor_seek(cur, NULL, 0, -1), -ENOENT);
	RC(rfs_cursor_seek(cur, "a", 1, 1), -ENOENT);
	rfs_cursor_close(cur);
	rfs_tree t2 = {77, 0};
	OK(rfs_tree_clone(c->pool, &t, &t2));
	EQ_U64(t2.root, 0);
	OK(rfs_tree_drop(c->pool, &t));
	OK(rfs_tree_drop(c->pool, &t2));
	rfs_tree x;
	RC(rfs_catalog_get(c->pool, 1, &x), -ENOENT);
	RC(rfs_catalog_del(c->pool, 1), -ENOENT);
	uint64_t cid;
	RC(rfs_catalog_next(c->pool, 0, &cid, &x), -ENOENT);
	/* one item, then none */
	uint64_t u0 = used(c);
	OK(rfs_tree_put(c->pool, &t, "k", 1, "v", 1, 0, RFS_PUT_INSERT));
	CHECK(t.root != 0, "root still 0 after an insert");
	OK(rfs_tree_height(c->pool, &t, &h));
	EQ_U64(h, 1);
	OK(rfs_tree_delete(c->pool, &t, "k", 1, 0));
	RC(rfs_tree_lookup(c->pool, &t, "k", 1, v, &vl, NULL), -ENOENT);
	OK(rfs_tree_drop(c->pool, &t));
	EQ_U64(t.root, 0);
	EQ_U64(used(c), u0);
	commit_clean(c);
}

static void test_sequential(void **state)
{
	tu_pool *c = *state;
	tu_commit(c);
	uint64_t u0 = used(c);
	rfs_tree t = {0, RFS_OWNER_USER};
	tu_map m = {0};
	tu_rng r = {1};
	uint8_t k[8], v[RFS_VAL_MAX];
	const uint64_t N = 6000;
	for (uint64_t i = 0; i < N; i++) {
		key64(k, i);
		size_t vl = (size_t)(i % 97) * 3;
		tu_fill(&r, v, vl);
		put_both(c, &t, &m, k, 8, v, vl, 0, RFS_PUT_INSERT);
	}
	int h = 0;
	OK(rfs_tree_height(c->pool, &t, &h));
	CHECK(h >= 2, "6000 items in a single leaf? height %d", h);
	CHECK_TREE(c->pool, &t, &m);
	store(c, 1, &t);
	commit_clean(c);
	/* descending inserts into a second tree */
	rfs_tree t2 = {0, RFS_OWNER_USER};
	tu_map m2 = {0};
	for (uint64_t i = N; i-- > 0;) {
		key64(k, i * 2);
		put_both(c, &t2, &m2, k, 8, k, 8, 0, RFS_PUT_UPSERT);
	}
	CHECK_TREE(c->pool, &t2, &m2);
	store(c, 2, &t2);
	/* delete every other key of t, then every third */
	for (uint64_t i = 0; i < N; i += 2) {
		key64(k, i);
		del_both(c, &t, &m, k, 8);
	}
	for (uint64_t i = 0; i < N; i += 3) {
		key64(k, i);
		del_both(c, &t, &m, k, 8);
	}
	for (uint64_t i = 0; i < N; i += 7) {
		key64(k, i);
		expect_lookup(c, &t, &m, k, 8);
	}
	CHECK_TREE(c->pool, &t, &m);
	store(c, 1, &t);
	commit_clean(c);
	tu_reopen(c, 0);
	t = load(c, 1);
	t2 = load(c, 2);
	CHECK_TREE(c->pool, &t, &m);
	CHECK_TREE(c->pool, &t2, &m2);
	/* delete everything (ascending in t, descending in t2) */
	for (uint64_t i = 0; i < N; i++) {
		key64(k, i);
		del_both(c, &t, &m, k, 8);
	}
	for (uint64_t i = N; i-- > 0;) {
		key64(k, i * 2);
		del_both(c, &t2, &m2, k, 8);
	}
	CHECK_TREE(c->pool, &t, &m);
	CHECK_TREE(c->pool, &t2, &m2);
	store(c, 1, &t);
	store(c, 2, &t2);
	commit_clean(c);
	drop_to(c, 1, 2, u0);
	tu_map_clear(&m);
	tu_map_clear(&m2);
}

/* Ascending inserts (new inode numbers, journal sequence numbers) leave
 * full leaves behind them, not half-empty ones: the tree of N items takes
 * about as many blocks as the items fill, and still reads back whole. */
static void test_ascending_fill(void **state)
{
	tu_pool *c = *state;
	tu_commit(c);
	uint64_t u0 = used(c);
	rfs_tree t = {0, RFS_OWNER_USER};
	tu_map m = {0};
	tu_rng r = {7};
	uint8_t k[8], v[100];
	const uint64_t N = 3400;
	/* 8 bytes of slot, 8 of key, 100 of value: 34 items a leaf. */
	const uint64_t per_leaf = (RFS_BLOCK_SIZE - 48) / (8 + 8 + sizeof(v));
	for (uint64_t i = 0; i < N; i++) {
		key64(k, i * 3);
		tu_fill(&r, v, sizeof(v));
		put_both(c, &t, &m, k, 8, v, sizeof(v), 0, RFS_PUT_INSERT);
	}
	store(c, 1, &t);
	tu_commit(c);
	uint64_t leaves = (N + per_leaf - 1) / per_leaf;
	uint64_t got = used(c) - u0;
	/* + internal nodes (2) and the catalog's root; balanced splits
	 * would take about twice the leaves. */
	CHECK(got <= leaves + 4, "%llu items in %llu blocks, want about %llu",
	      (unsigned long long)N, (unsigned long long)got, (unsigned long long)leaves);
	/* Items inserted between the full leaves still go in. */
	for (uint64_t i = 0; i < N; i += 5) {
		key64(k, i * 3 + 1);
		tu_fill(&r, v, sizeof(v));
		put_both(c, &t, &m, k, 8, v, sizeof(v), 0, RFS_PUT_INSERT);
	}
	CHECK_TREE(c->pool, &t, &m);
	store(c, 1, &t);
	commit_clean(c);
	drop_to(c, 1, 0, u0);
	tu_map_clear(&m);
}

#define LEAF_SPACE (RFS_BLOCK_SIZE - 48) /* a node has a 48-byte header (docs/FORMAT.md) */

/* Keys that arrive in groups of ascending prefix, in random order within
 * a group (the entries of the directories `cp -a` makes, each keyed by
 * the directory's inode number and its names' hashes): each insert goes
 * among the last few items of the rightmost leaf.  Splitting that leaf at
 * the new key keeps what is before it in the left node, full, instead of
 * leaving half-empty leaves behind the growing end. */
static void test_rightmost_split(void **state)
{
	tu_pool *c = *state;
	const unsigned G = 6, NG = 1200, VL = 60;
	tu_commit(c);
	uint64_t u0 = used(c);
	rfs_tree t = {0, RFS_OWNER_USER};
	tu_map m = {0};
	tu_rng r = {11};
	uint8_t k[16], v[VL];
	memset(v, 3, sizeof(v));
	for (unsigned g = 0; g < NG; g++) {
		for (unsigned i = 0; i < G; i++) {
			key64(k, g);
			key64(k + 8, tu_next(&r));
			put_both(c, &t, &m, k, sizeof(k), v, VL, 0, RFS_PUT_INSERT);
		}
	}
	CHECK_TREE(c->pool, &t, &m);
	store(c, 1, &t);
	tu_commit(c);
	uint64_t nodes = used(c) - u0;
	uint64_t ideal = ((uint64_t)NG * G * (8 + sizeof(k) + VL) + LEAF_SPACE - 1) / LEAF_SPACE;
	/* A key that lands before the last split point of its group still
	 * splits a full node in the middle: 246 nodes for 150 full leaves
	 * here; with 50/50 splits of the last leaf too, 271. */
	CHECK(nodes <= ideal * 5 / 3, "%llu nodes for %llu full leaves",
	      (unsigned long long)nodes, (unsigned long long)ideal);
	/* Items inserted anywhere still go in. */
	for (unsigned g = 0; g < NG; g += 7) {
		key64(k, g);
		key64(k + 8, tu_next(&r));
		put_both(c, &t, &m, k, sizeof(k), v, VL, 0, RFS_PUT_INSERT);
	}
	CHECK_TREE(c->pool, &t, &m);
	store(c, 1, &t);
	drop_to(c, 1, 0, u0);
	tu_map_clear(&m);
}

/* Appends with RFS_PUT_APPEND fill nodes: one growing range, and eight
 * ranges growing in turn (the change journal's per-directory index).
 * Without the hint a full node whose new key is not its last first
 * hands items to a sibling with room (test_random_fill), so interleaved
 * append ranges fill nodes either way. */
static void test_append_split(void **state)
{
	tu_pool *c = *state;
	const unsigned N = 8000, VL = 20;
	for (int ranges = 1; ranges <= 8; ranges *= 8) {
		for (int hint = 0; hint <= 1; hint++) {
			tu_commit(c);
			uint64_t u0 = used(c);
			rfs_tree t = {0, RFS_OWNER_USER};
			tu_map m = {0};
			uint8_t k[9], v[VL];
			memset(v, 7, sizeof(v));
			for (unsigned i = 0; i < N; i++) {
				k[0] = (uint8_t)(i % (unsigned)ranges);
				key64(k + 1, i);
				put_both(c, &t, &m, k, sizeof(k), v, VL, 0,
					 RFS_PUT_INSERT | (hint ? RFS_PUT_APPEND : 0));
			}
			CHECK_TREE(c->pool, &t, &m);
			store(c, 1, &t);
			tu_commit(c);
			uint64_t nodes = used(c) - u0;
			/* Leaves at 100%: N items of 8 + 9 + VL bytes.  Interleaved
			 * ranges leave some nodes partly filled (about 78% here;
			 * without the hint, 92%: pushes to siblings instead of
			 * splits). */
			uint64_t ideal = (N * (8 + sizeof(k) + VL) + LEAF_SPACE - 1) / LEAF_SPACE;
			CHECK(nodes <= ideal * 4 / 3 + 3,
			      "%d range(s), %s: %llu nodes for %llu full leaves", ranges,
			      hint ? "appended" : "no hint", (unsigned long long)nodes,
			      (unsigned long long)ideal);
			/* Deleting from the front (a log's trim) keeps it sane. */
			for (unsigned i = 0; i < N / 2; i++) {
				k[0] = (uint8_t)(i % (unsigned)ranges);
				key64(k + 1, i);
				del_both(c, &t, &m, k, sizeof(k));
			}
			CHECK_TREE(c->pool, &t, &m);
			store(c, 1, &t);
			drop_to(c, 1, 0, u0);
			tu_map_clear(&m);
		}
	}
}

/* Keys in random order (names of a copied directory, which `cp` makes in
 * the source's inode order, not in their hash order): a full leaf first
 * moves its last (first) items into its right (left) sibling when that
 * has room, and splits only when neither has.  Balanced splits alone
 * leave leaves about 69% full (ln 2).  Also into a clone, whose siblings
 * are shared: they are shadowed before they take items, and the original
 * does not change. */
static void test_random_fill(void **state)
{
	tu_pool *c = *state;
	const unsigned N = 6000, VL = 60;
	tu_commit(c);
	uint64_t u0 = used(c);
	rfs_tree t = {0, RFS_OWNER_USER};
	tu_map m = {0}, m2 = {0};
	tu_rng r = {23};
	uint8_t k[16], v[VL];
	memset(v, 5, sizeof(v));
	for (unsigned i = 0; i < N; i++) {
		key64(k, tu_next(&r));
		key64(k + 8, i);
		put_both(c, &t, &m, k, sizeof(k), v, VL, 0, RFS_PUT_INSERT);
	}
	CHECK_TREE(c->pool, &t, &m);
	store(c, 1, &t);
	tu_commit(c);
	uint64_t nodes = used(c) - u0;
	uint64_t ideal = ((uint64_t)N * (8 + sizeof(k) + VL) + LEAF_SPACE - 1) / LEAF_SPACE;
	/* 158 blocks for 125 full leaves here; without pushes, 191 */
	CHECK(nodes <= ideal * 4 / 3, "%llu nodes for %llu full leaves",
	      (unsigned long long)nodes, (unsigned long long)ideal);
	/* A clone takes more items at random places: the original keeps
	 * its own, both check clean (refcounts of the shadowed siblings). */
	rfs_tree t2 = {0, 0};
	OK(rfs_tree_clone(c->pool, &t, &t2));
	store(c, 2, &t2);
	tu_map_copy(&m2, &m);
	for (unsigned i = 0; i < N / 3; i++) {
		key64(k, tu_next(&r));
		key64(k + 8, N + i);
		put_both(c, &t2, &m2, k, sizeof(k), v, VL, 0, RFS_PUT_INSERT);
	}
	store(c, 2, &t2);
	CHECK_TREE(c->pool, &t2, &m2);
	CHECK_TREE(c->pool, &t, &m);
	CHECK_CLEAN(c);
	commit_clean(c);
	drop_to(c, 2, 1, u0);
	tu_map_clear(&m);
	tu_map_clear(&m2);
}

static void test_random_varsize(void **state)
{
	tu_pool *c = *state;
	tu_commit(c);
	uint64_t u0 = used(c);
	rfs_tree t = {0, RFS_OWNER_USER};
	tu_map m = {0};
	tu_rng r = {0xfeed};
	uint8_t k[RFS_KEY_MAX], v[RFS_VAL_MAX];
	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < 2500; i++) {
			uint64_t op = tu_below(&r, 10);
			size_t kl;
			if (op < 3 && m.n) {
				/* existing key */
				const tu_item *e = &m.v[tu_below(&r, m.n)];
				kl = e->klen;
				memcpy(k, e->key, kl);
			} else {
				kl = rand_key(&r, k);
			}
			size_t vl = rand_val(&r, v);
			if (op < 6)
				put_both(c, &t, &m, k, kl, v, vl, 0, RFS_PUT_UPSERT);
			else if (op < 7)
				put_both(c, &t, &m, k, kl, v, vl, 0, RFS_PUT_INSERT);
			else if (op < 8)
				put_both(c, &t, &m, k, kl, v, vl, 0, RFS_PUT_REPLACE);
			else if (op < 9)
				del_both(c, &t, &m, k, kl);
			else
				expect_lookup(c, &t, &m, k, kl);
		}
		CHECK_TREE(c->pool, &t, &m);
		store(c, 1, &t);
		commit_clean(c);
	}
	int h = 0;
	OK(rfs_tree_height(c->pool, &t, &h));
	CHECK(h >= 3, "height %d with %zu big items", h, m.n);
	tu_reopen(c, 0);
	t = load(c, 1);
	CHECK_TREE(c->pool, &t, &m);
	/* delete in random order until empty */
	while (m.n) {
		const tu_item *e = &m.v[tu_below(&r, m.n)];
		uint8_t kk[RFS_KEY_MAX];
		size_t kl = e->klen;
		memcpy(kk, e->key, kl);
		del_both(c, &t, &m, kk, kl);
		if (m.n % 500 == 0)
			CHECK_TREE(c->pool, &t, &m);
	}
	CHECK_TREE(c->pool, &t, &m);
	store(c, 1, &t);
	commit_clean(c);
	OK(rfs_catalog_del(c->pool, 1));
	tu_commit(c);
	EQ_U64(used(c), u0);
	tu_map_clear(&m);
}

static void test_put_modes_and_limits(void **state)
{
	tu_pool *c = *state;
	rfs_tree t = {0, RFS_OWNER_USER};
	uint8_t big[RFS_VAL_MAX + 2];
	memset(big, 'x', sizeof big);
	OK(rfs_tree_put(c->pool, &t, "a", 1, "1", 1, 0, RFS_PUT_INSERT));
	RC(rfs_tree_put(c->pool, &t, "a", 1, "2", 1, 0, RFS_PUT_INSERT), -EEXIST);
	RC(rfs_tree_put(c->pool, &t, "b", 1, "2", 1, 0, RFS_PUT_REPLACE), -ENOENT);
	uint8_t v[RFS_VAL_MAX];
	size_t vl = sizeof v;
	uint8_t fl = 0x55;
	OK(rfs_tree_lookup(c->pool, &t, "a", 1, v, &vl, &fl));
	CHECK(vl == 1 && v[0] == '1' && fl == 0, "INSERT -EEXIST changed the value");
	vl = sizeof v;
	RC(rfs_tree_lookup(c->pool, &t, "b", 1, v, &vl, NULL), -ENOENT);
	OK(rfs_tree_put(c->pool, &t, "a", 1, "22", 2, 0, RFS_PUT_REPLACE));
	OK(rfs_tree_put(c->pool, &t, "b", 1, "3", 1, 0, RFS_PUT_UPSERT));
	OK(rfs_tree_put(c->pool, &t, "b", 1, "", 0, 0, RFS_PUT_UPSERT));
	vl = sizeof v;
	OK(rfs_tree_lookup(c->pool, &t, "a", 1, v, &vl, NULL));
	CHECK(vl == 2 && memcmp(v, "22", 2) == 0, "REPLACE did not replace");
	vl = sizeof v;
	OK(rfs_tree_lookup(c->pool, &t, "b", 1, v, &vl, NULL));
	EQ_U64(vl, 0);

	/* limits */
	uint8_t k[RFS_KEY_MAX + 2];
	memset(k, 'k', sizeof k);
	RC(rfs_tree_put(c->pool, &t, k, 0, "v", 1, 0, 0), -EINVAL);
	RC(rfs_tree_put(c->pool, &t, k, RFS_KEY_MAX + 1, "v", 1, 0, 0), -EINVAL);
	RC(rfs_tree_put(c->pool, &t, k, 1, big, RFS_VAL_MAX + 1, 0, 0), -EINVAL);
	RC(rfs_tree_put(c->pool, &t, k, RFS_KEY_MAX + 1, big, RFS_VAL_MAX + 1, 0, RFS_PUT_INSERT), -EINVAL);
	OK(rfs_tree_put(c->pool, &t, k, RFS_KEY_MAX, big, RFS_VAL_MAX, 0, RFS_PUT_INSERT));
	int rc = rfs_tree_delete(c->pool, &t, k, RFS_KEY_MAX + 1, 0);
	CHECK(rc == -EINVAL || rc == -ENOENT, "delete of a too long key = %d", rc);
	vl = sizeof v;
	rc = rfs_tree_lookup(c->pool, &t, k, RFS_KEY_MAX + 1, v, &vl, NULL);
	CHECK(rc == -EINVAL || rc == -ENOENT, "lookup of a too long key = %d", rc);
	/* a value whose flags promise references it cannot hold */
	rc = rfs_tree_put(c->pool, &t, "c", 1, "1234", 4, RFS_ITEM_TREE, 0);
	CHECK(rc < 0, "RFS_ITEM_TREE with a 4-byte value accepted");
	rc = rfs_tree_put(c->pool, &t, "c", 1, big, 12, RFS_ITEM_EXTENT, 0);
	CHECK(rc < 0, "RFS_ITEM_EXTENT with a 12-byte value accepted");
	vl = sizeof v;
	RC(rfs_tree_lookup(c->pool, &t, "c", 1, v, &vl, NULL), -ENOENT);

	/* a short buffer: *vlen tells the full length */
	uint8_t small[10];
	vl = sizeof small;
	OK(rfs_tree_lookup(c->pool, &t, k, RFS_KEY_MAX, small, &vl, NULL));
	EQ_U64(vl, RFS_VAL_MAX);
	CHECK(memcmp(small, big, sizeof small) == 0, "truncated copy differs");
	vl = 0;
	OK(rfs_tree_lookup(c->pool, &t, "a", 1, NULL, &vl, NULL));
	EQ_U64(vl, 2);

	/* fill a leaf with maximal items and beyond: splits of huge items */
	tu_map m = {0};
	tu_map_put(&m, "a", 1, "22", 2, 0);
	tu_map_put(&m, "b", 1, "", 0, 0);
	tu_map_put(&m, k, RFS_KEY_MAX, big, RFS_VAL_MAX, 0);
	for (int i = 0; i < 200; i++) {
		uint8_t kk[RFS_KEY_MAX];
		memset(kk, 'm', sizeof kk);
		kk[RFS_KEY_MAX - 1 - (i % 5)] = (uint8_t)i;
		kk[0] = (uint8_t)(i * 37);
		big[i % RFS_VAL_MAX] ^= (uint8_t)i;
		put_both(c, &t, &m, kk, RFS_KEY_MAX, big, RFS_VAL_MAX, 0, RFS_PUT_UPSERT);
	}
	CHECK_TREE(c->pool, &t, &m);
	store(c, 1, &t);
	commit_clean(c);
	tu_map_clear(&m);
}

static void cur_expect(rfs_cursor *cur, const void *key, size_t kl)
{
	const void *k, *v;
	size_t gkl, vl;
	uint8_t fl;
	OK(rfs_cursor_get(cur, &k, &gkl, &v, &vl, &fl));
	CHECK(gkl == kl && memcmp(k, key, kl) == 0, "cursor at a different key (klen %zu, want %zu)", gkl, kl);
}

static void cur_expect64(rfs_cursor *cur, uint64_t want)
{
	uint8_t k[8];
	key64(k, want);
	cur_expect(cur, k, 8);
}

static void test_cursor(void **state)
{
	tu_pool *c = *state;
	rfs_tree t = {0, RFS_OWNER_USER};
	tu_map m = {0};
	uint8_t k[8];
	for (uint64_t i = 1; i <= 3000; i++) {
		key64(k, i * 10);
		put_both(c, &t, &m, k, 8, &i, sizeof i, 0, RFS_PUT_INSERT);
	}
	CHECK_TREE(c->pool, &t, &m);
	rfs_cursor *cur = NULL;
	OK(rfs_cursor_open(c->pool, &t, &cur));
	/* >= and <= */
	key64(k, 15);
	OK(rfs_cursor_seek(cur, k, 8, 1));
	cur_expect64(cur, 20);
	OK(rfs_cursor_seek(cur, k, 8, -1));
	cur_expect64(cur, 10);
	key64(k, 500);
	OK(rfs_cursor_seek(cur, k, 8, 1));
	cur_expect64(cur, 500);
	OK(rfs_cursor_seek(cur, k, 8, -1));
	cur_expect64(cur, 500);
	OK(rfs_cursor_step(cur, 1));
	cur_expect64(cur, 510);
	OK(rfs_cursor_step(cur, -1));
	cur_expect64(cur, 500);
	OK(rfs_cursor_step(cur, -1));
	cur_expect64(cur, 490);
	/* ends */
	key64(k, 5);
	RC(rfs_cursor_seek(cur, k, 8, -1), -ENOENT);
	OK(rfs_cursor_seek(cur, k, 8, 1));
	cur_expect64(cur, 10);
	RC(rfs_cursor_step(cur, -1), -ENOENT);
	key64(k, 30001);
	RC(rfs_cursor_seek(cur, k, 8, 1), -ENOENT);
	OK(rfs_cursor_seek(cur, k, 8, -1));
	cur_expect64(cur, 30000);
	RC(rfs_cursor_step(cur, 1), -ENOENT);
	OK(rfs_cursor_seek(cur, NULL, 0, 1));
	cur_expect64(cur, 10);
	OK(rfs_cursor_seek(cur, NULL, 0, -1));
	cur_expect64(cur, 30000);
	/* shorter keys sort first: 7 bytes of 0 < every 8-byte key */
	uint8_t z[9] = {0};
	OK(rfs_cursor_seek(cur, z, 7, 1));
	cur_expect64(cur, 10);
	RC(rfs_cursor_seek(cur, z, 7, -1), -ENOENT);
	memset(z, 0xff, sizeof z);
	RC(rfs_cursor_seek(cur, z, 9, 1), -ENOENT);
	OK(rfs_cursor_seek(cur, z, 9, -1));
	cur_expect64(cur, 30000);
	/* every seek between all keys, both directions */
	for (uint64_t x = 0; x <= 30010; x += 7) {
		key64(k, x);
		int rc = rfs_cursor_seek(cur, k, 8, 1);
		uint64_t ge = (x + 9) / 10 * 10;
		if (ge == 0)
			ge = 10;
		if (ge > 30000)
			RC(rc, -ENOENT);
		else {
			OK(rc);
			cur_expect64(cur, ge);
		}
		rc = rfs_cursor_seek(cur, k, 8, -1);
		uint64_t le = x / 10 * 10;
		if (le > 30000)
			le = 30000;
		if (le == 0)
			RC(rc, -ENOENT);
		else {
			OK(rc);
			cur_expect64(cur, le);
		}
	}
	/* walk the whole tree in steps of +2 -1 */
	OK(rfs_cursor_seek(cur, NULL, 0, 1));
	uint64_t at = 10;
	for (;;) {
		int rc = rfs_cursor_step(cur, 1);
		if (rc == -ENOENT) {
			EQ_U64(at, 30000);
			break;
		}
		OK(rc);
		rc = rfs_cursor_step(cur, 1);
		if (rc == -ENOENT) {
			EQ_U64(at, 29990);
			break;
		}
		OK(rc);
		OK(rfs_cursor_step(cur, -1));
		at += 10;
		cur_expect64(cur, at);
	}
	rfs_cursor_close(cur);

	/* variable-length keys with shared prefixes */
	rfs_tree s = {0, RFS_OWNER_USER};
	const char *ks[] = {"a", "ab", "abc", "abd", "b", "ba"};
	for (size_t i = 0; i < 6; i++)
		OK(rfs_tree_put(c->pool, &s, ks[i], strlen(ks[i]), "", 0, 0, RFS_PUT_INSERT));
	OK(rfs_cursor_open(c->pool, &s, &cur));
	OK(rfs_cursor_seek(cur, "ab", 2, 1));
	cur_expect(cur, "ab", 2);
	OK(rfs_cursor_seek(cur, "aba", 3, 1));
	cur_expect(cur, "abc", 3);
	OK(rfs_cursor_seek(cur, "aba", 3, -1));
	cur_expect(cur, "ab", 2);
	OK(rfs_cursor_seek(cur, "abcd", 4, -1));
	cur_expect(cur, "abc", 3);
	OK(rfs_cursor_seek(cur, "abz", 3, 1));
	cur_expect(cur, "b", 1);
	OK(rfs_cursor_seek(cur, "\x01", 1, 1));
	cur_expect(cur, "a", 1);
	RC(rfs_cursor_seek(cur, "c", 1, 1), -ENOENT);
	OK(rfs_cursor_seek(cur, "c", 1, -1));
	cur_expect(cur, "ba", 2);
	rfs_cursor_close(cur);
	OK(rfs_tree_drop(c->pool, &s));
	store(c, 1, &t);
	commit_clean(c);
	tu_map_clear(&m);
}

/* random changes to t/m; returns nothing */
static void mutate(tu_pool *c, rfs_tree *t, tu_map *m, tu_rng *r, int n)
{
	uint8_t k[RFS_KEY_MAX], v[RFS_VAL_MAX];
	for (int i = 0; i < n; i++) {
		uint64_t op = tu_below(r, 10);
		size_t kl, vl;
		if (op < 5 && m->n) {
			const tu_item *e = &m->v[tu_below(r, m->n)];
			kl = e->klen;
			memcpy(k, e->key, kl);
		} else {
			kl = rand_key(r, k);
			if (kl > 40)
				kl = 40;
		}
		vl = rand_val(r, v);
		if (vl > 200)
			vl = 200;
		if (op < 3)
			del_both(c, t, m, k, kl);
		else
			put_both(c, t, m, k, kl, v, vl, 0, RFS_PUT_UPSERT);
	}
}

/* A replace by a value of the same size overwrites it in its node
 * (rfs_tree_put): it must still shadow a shared node first, so a clone
 * keeps its values, and values of other sizes mixed in must keep working. */
static void test_replace_in_place(void **state)
{
	tu_pool *c = *state;
	tu_rng r = {4242};
	rfs_tree t1 = {0, RFS_OWNER_USER};
	tu_map m1 = {0}, m2 = {0};
	uint8_t k[8], v[RFS_VAL_MAX];
	const unsigned nkeys = 3000;

	for (unsigned i = 0; i < nkeys; i++) {
		key64(k, i);
		tu_fill(&r, v, 24);
		put_both(c, &t1, &m1, k, sizeof k, v, 24, 0, RFS_PUT_INSERT);
	}
	store(c, 1, &t1);
	commit_clean(c);
	rfs_tree t2 = {0, 0};
	OK(rfs_tree_clone(c->pool, &t1, &t2));
	store(c, 2, &t2);
	tu_map_copy(&m2, &m1);
	for (int round = 0; round < 6; round++) {
		for (int i = 0; i < 2000; i++) {
			key64(k, tu_below(&r, nkeys));
			const tu_item *e = tu_map_get(&m2, k, sizeof k);
			/* mostly the same size, sometimes shorter or longer */
			uint64_t p = tu_below(&r, 10);
			size_t vl = p == 0 ? e->vlen / 2 : p == 1 ? e->vlen + 7 : e->vlen;
			if (vl > 200)
				vl = 24;
			tu_fill(&r, v, vl);
			put_both(c, &t2, &m2, k, sizeof k, v, vl, 0,
				 p & 1 ? RFS_PUT_REPLACE : RFS_PUT_UPSERT);
		}
		store(c, 2, &t2);
		CHECK_TREE(c->pool, &t2, &m2);
		CHECK_TREE(c->pool, &t1, &m1);
		if (round & 1)
			commit_clean(c);
	}
	/* the original's turn: the clone must not see its replaces */
	for (int i = 0; i < 2000; i++) {
		key64(k, tu_below(&r, nkeys));
		tu_fill(&r, v, tu_map_get(&m1, k, sizeof k)->vlen);
		put_both(c, &t1, &m1, k, sizeof k, v, tu_map_get(&m1, k, sizeof k)->vlen,
			 0, RFS_PUT_REPLACE);
	}
	store(c, 1, &t1);
	CHECK_TREE(c->pool, &t1, &m1);
	CHECK_TREE(c->pool, &t2, &m2);
	commit_clean(c);
	tu_reopen(c, 0);
	t1 = load(c, 1);
	t2 = load(c, 2);
	CHECK_TREE(c->pool, &t1, &m1);
	CHECK_TREE(c->pool, &t2, &m2);
	tu_map_clear(&m1);
	tu_map_clear(&m2);
}

static void test_clone_independence(void **state)
{
	tu_pool *c = *state;
	tu_rng r = {99};
	rfs_tree t1 = {0, RFS_OWNER_USER};
	tu_map m1 = {0}, m2 = {0}, m3 = {0};
	mutate(c, &t1, &m1, &r, 4000);
	store(c, 1, &t1);
	tu_commit(c);

	rfs_tree t2 = {0, 0};
	OK(rfs_tree_clone(c->pool, &t1, &t2));
	EQ_U64(t2.root, t1.root);
	store(c, 2, &t2);
	tu_map_copy(&m2, &m1);
	CHECK_TREE(c->pool, &t2, &m2);
	{
		static tu_reports rep;
		struct rfs_check_stats st;
		memset(&st, 0, sizeof st);
		EQ_U64(tu_check(c, &rep, &st), 0);
		CHECK(st.shared_blocks >= 1, "a fresh clone shares no block (%" PRIu64 ")", st.shared_blocks);
	}
	/* modify the clone; the original must not change */
	mutate(c, &t2, &m2, &r, 1500);
	CHECK_TREE(c->pool, &t2, &m2);
	CHECK_TREE(c->pool, &t1, &m1);
	/* modify the original; the clone must not change */
	mutate(c, &t1, &m1, &r, 1500);
	CHECK_TREE(c->pool, &t1, &m1);
	CHECK_TREE(c->pool, &t2, &m2);
	store(c, 1, &t1);
	store(c, 2, &t2);
	CHECK_CLEAN(c);

	/* clone of a tree modified in this transaction (dirty nodes): later
	 * in-place updates must not show through */
	rfs_tree t3 = {0, 0};
	OK(rfs_tree_clone(c->pool, &t2, &t3));
	store(c, 3, &t3);
	tu_map_copy(&m3, &m2);
	mutate(c, &t2, &m2, &r, 800);
	store(c, 2, &t2);
	CHECK_TREE(c->pool, &t3, &m3);
	CHECK_TREE(c->pool, &t2, &m2);
	mutate(c, &t3, &m3, &r, 800);
	store(c, 3, &t3);
	CHECK_TREE(c->pool, &t3, &m3);
	CHECK_TREE(c->pool, &t2, &m2);
	CHECK_TREE(c->pool, &t1, &m1);
	CHECK_CLEAN(c);
	commit_clean(c);
	tu_reopen(c, 0);
	t1 = load(c, 1);
	t2 = load(c, 2);
	t3 = load(c, 3);
	CHECK_TREE(c->pool, &t1, &m1);
	CHECK_TREE(c->pool, &t2, &m2);
	CHECK_TREE(c->pool, &t3, &m3);
	/* clone of a clone, then drop the middle one */
	rfs_tree t4 = {0, 0};
	OK(rfs_tree_clone(c->pool, &t3, &t4));
	store(c, 4, &t4);
	OK(rfs_catalog_del(c->pool, 3));
	CHECK_TREE(c->pool, &t4, &m3);
	mutate(c, &t4, &m3, &r, 300);
	store(c, 4, &t4);
	CHECK_TREE(c->pool, &t4, &m3);
	commit_clean(c);
	tu_map_clear(&m1);
	tu_map_clear(&m2);
	tu_map_clear(&m3);
}

static void test_drop_frees_unshared(void **state)
{
	tu_pool *c = *state;
	tu_rng r = {5};
	tu_commit(c);
	uint64_t u_empty = used(c);
	rfs_tree t1 = {0, RFS_OWNER_USER};
	tu_map m1 = {0}, m2 = {0};
	mutate(c, &t1, &m1, &r, 20000);
	store(c, 1, &t1);
	tu_commit(c);
	uint64_t u0 = used(c);
	CHECK(u0 > u_empty + 10, "5000 items use %" PRIu64 " blocks", u0 - u_empty);

	/* clone + modify + drop of the clone: back to u0 exactly */
	rfs_tree t2;
	OK(rfs_tree_clone(c->pool, &t1, &t2));
	store(c, 2, &t2);
	tu_map_copy(&m2, &m1);
	mutate(c, &t2, &m2, &r, 5);
	store(c, 2, &t2);
	tu_commit(c);
	uint64_t u1 = used(c);
	CHECK(u1 > u0, "modified clone uses no new block");
	CHECK(u1 < u0 + (u0 - u_empty) / 2, "5 changes in a clone copied most of the tree? %" PRIu64 " -> %" PRIu64, u0, u1);
	mutate(c, &t2, &m2, &r, 1000);
	store(c, 2, &t2);
	tu_commit(c);
	CHECK_TREE(c->pool, &t1, &m1);
	CHECK_TREE(c->pool, &t2, &m2);
	CHECK_CLEAN(c);
	OK(rfs_catalog_del(c->pool, 2));
	tu_commit(c);
	EQ_U64(used(c), u0);
	CHECK_CLEAN(c);
	t1 = load(c, 1);
	CHECK_TREE(c->pool, &t1, &m1);

	/* a clone that is never modified and dropped in the same txn */
	rfs_tree t3;
	OK(rfs_tree_clone(c->pool, &t1, &t3));
	OK(rfs_tree_drop(c->pool, &t3));
	EQ_U64(t3.root, 0);
	tu_commit(c);
	EQ_U64(used(c), u0);
	CHECK_CLEAN(c);

	/* drop the original, keep the (modified) clone */
	OK(rfs_tree_clone(c->pool, &t1, &t2));
	store(c, 2, &t2);
	tu_map_clear(&m2);
	tu_map_copy(&m2, &m1);
	mutate(c, &t2, &m2, &r, 500);
	store(c, 2, &t2);
	tu_commit(c);
	OK(rfs_catalog_del(c->pool, 1));
	commit_clean(c);
	t2 = load(c, 2);
	CHECK_TREE(c->pool, &t2, &m2);
	OK(rfs_catalog_del(c->pool, 2));
	commit_clean(c);
	EQ_U64(used(c), u_empty);
	tu_map_clear(&m1);
	tu_map_clear(&m2);
}

/* ---- nested trees ----------------------------------------------------------------- */

#define NOUTER 12

static void outer_key(uint8_t *k, int i)
{
	memcpy(k, "outer-", 6);
	key64(k + 6, (uint64_t)i);
}

/* value of an outer item: 8-byte root + 8-byte tag */
static void inner_update(tu_pool *c, rfs_tree *outer, int i, tu_map *im, tu_rng *r, int n)
{
	uint8_t k[14], v[64];
	size_t vl = sizeof v;
	uint8_t fl = 0;
	outer_key(k, i);
	OK(rfs_tree_lookup_mut(c->pool, outer, k, sizeof k, v, &vl, &fl));
	EQ_U64(fl, RFS_ITEM_TREE);
	EQ_U64(vl, 16);
	rfs_tree in = {0, RFS_OWNER_USER};
	memcpy(&in.root, v, 8);
	mutate(c, &in, im, r, n);
	memcpy(v, &in.root, 8);
	OK(rfs_tree_put(c->pool, outer, k, sizeof k, v, vl, fl, RFS_PUT_REPLACE | RFS_KEEP_REFS));
}

static void inner_expect(tu_pool *c, const rfs_tree *outer, int i, const tu_map *im)
{
	uint8_t k[14], v[64];
	size_t vl = sizeof v;
	uint8_t fl = 0;
	outer_key(k, i);
	OK(rfs_tree_lookup(c->pool, outer, k, sizeof k, v, &vl, &fl));
	EQ_U64(fl, RFS_ITEM_TREE);
	rfs_tree in = {0, RFS_OWNER_USER};
	memcpy(&in.root, v, 8);
	const char *d = tu_tree_diff(c->pool, &in, im, true);
	CHECK(d == NULL, "inner tree %d differs: %s", i, d);
}

static void test_nested_trees(void **state)
{
	tu_pool *c = *state;
	tu_rng r = {77};
	tu_commit(c);
	uint64_t u_empty = used(c);
	rfs_tree o1 = {0, RFS_OWNER_USER};
	static tu_map in1[NOUTER], in2[NOUTER];
	memset(in1, 0, sizeof in1);
	memset(in2, 0, sizeof in2);
	for (int i = 0; i < NOUTER; i++) {
		rfs_tree in = {0, RFS_OWNER_USER};
		mutate(c, &in, &in1[i], &r, 150 + 40 * i);
		uint8_t k[14], v[16];
		outer_key(k, i);
		memcpy(v, &in.root, 8);
		memcpy(v + 8, "tagtag00", 8);
		OK(rfs_tree_put(c->pool, &o1, k, sizeof k, v, 16, RFS_ITEM_TREE, RFS_PUT_INSERT));
	}
	store(c, 1, &o1);
	commit_clean(c);
	for (int i = 0; i < NOUTER; i++)
		inner_expect(c, &o1, i, &in1[i]);

	/* clone the outer tree: inner trees shared through it */
	rfs_tree o2;
	OK(rfs_tree_clone(c->pool, &o1, &o2));
	store(c, 2, &o2);
	for (int i = 0; i < NOUTER; i++)
		tu_map_copy(&in2[i], &in1[i]);
	/* modify inner trees through o2 */
	for (int i = 0; i < NOUTER; i += 2)
		inner_update(c, &o2, i, &in2[i], &r, 200);
	store(c, 2, &o2);
	for (int i = 0; i < NOUTER; i++) {
		inner_expect(c, &o1, i, &in1[i]);
		inner_expect(c, &o2, i, &in2[i]);
	}
	/* and through o1, other and same ones */
	for (int i = 0; i < NOUTER; i += 3)
		inner_update(c, &o1, i, &in1[i], &r, 100);
	store(c, 1, &o1);
	for (int i = 0; i < NOUTER; i++) {
		inner_expect(c, &o1, i, &in1[i]);
		inner_expect(c, &o2, i, &in2[i]);
	}
	CHECK_CLEAN(c);
	commit_clean(c);
	/* second-level clone inside one outer tree: inner 1 cloned as item 100 */
	{
		uint8_t k[14], v[64];
		size_t vl = sizeof v;
		uint8_t fl;
		outer_key(k, 1);
		OK(rfs_tree_lookup_mut(c->pool, &o1, k, sizeof k, v, &vl, &fl));
		rfs_tree in = {0, RFS_OWNER_USER}, cl;
		memcpy(&in.root, v, 8);
		OK(rfs_tree_clone(c->pool, &in, &cl));
		memcpy(v, &cl.root, 8);
		outer_key(k, 100);
		OK(rfs_tree_put(c->pool, &o1, k, sizeof k, v, 16, RFS_ITEM_TREE, RFS_PUT_INSERT));
		store(c, 1, &o1);
		CHECK_CLEAN(c);
	}
	/* delete inner trees: in o2 (shared with o1) and in o1 */
	{
		uint8_t k[14];
		outer_key(k, 3);
		OK(rfs_tree_delete(c->pool, &o2, k, sizeof k, 0));
		store(c, 2, &o2);
		inner_expect(c, &o1, 3, &in1[3]);
		outer_key(k, 5);
		OK(rfs_tree_delete(c->pool, &o1, k, sizeof k, 0));
		store(c, 1, &o1);
		inner_expect(c, &o2, 5, &in2[5]);
		outer_key(k, 1);
		OK(rfs_tree_delete(c->pool, &o1, k, sizeof k, 0));
		store(c, 1, &o1);
		inner_expect(c, &o1, 100, &in1[1]);
		inner_expect(c, &o2, 1, &in2[1]);
	}
	CHECK_CLEAN(c);
	commit_clean(c);
	tu_reopen(c, 0);
	o1 = load(c, 1);
	o2 = load(c, 2);
	for (int i = 0; i < NOUTER; i++) {
		if (i != 3)
			inner_expect(c, &o2, i, &in2[i]);
		if (i != 5 && i != 1)
			inner_expect(c, &o1, i, &in1[i]);
	}
	OK(rfs_catalog_del(c->pool, 1));
	commit_clean(c);
	o2 = load(c, 2);
	for (int i = 0; i < NOUTER; i++)
		if (i != 3)
			inner_expect(c, &o2, i, &in2[i]);
	OK(rfs_catalog_del(c->pool, 2));
	commit_clean(c);
	EQ_U64(used(c), u_empty);
	for (int i = 0; i < NOUTER; i++) {
		tu_map_clear(&in1[i]);
		tu_map_clear(&in2[i]);
	}
}

/* ---- data extents in values ------------------------------------------------------------- */

struct ext {
	uint64_t start, n;
};

static struct ext ext_of(const tu_map *m, const char *key)
{
	const tu_item *e = tu_map_get(m, key, strlen(key));
	CHECK(e != NULL, "no %s in the model", key);
	struct ext x;
	memcpy(&x.start, e->val, 8);
	memcpy(&x.n, e->val + 8, 8);
	return x;
}

static void verify_exts(tu_pool *c, const rfs_tree *t, const tu_map *m)
{
	CHECK_TREE(c->pool, t, m);
	for (size_t i = 0; i < m->n; i++) {
		int rc = tu_ext_verify(c->pool, m->v[i].val, m->v[i].vlen);
		CHECK(rc == 0, "extent of item %zu: %d", i, rc);
	}
}

static void put_ext(tu_pool *c, rfs_tree *t, tu_map *m, const char *key, uint64_t n, uint32_t seed)
{
	uint8_t v[RFS_VAL_MAX];
	long vl = tu_ext_make(c->pool, n, seed, v);
	CHECK(vl > 0, "tu_ext_make = %ld", vl);
	put_both(c, t, m, key, strlen(key), v, (size_t)vl, RFS_ITEM_EXTENT, RFS_PUT_UPSERT);
}

static void test_extent_refs(void **state)
{
	tu_pool *c = *state;
	tu_commit(c);
	uint64_t u_empty = used(c);
	rfs_tree o1 = {0, RFS_OWNER_USER};
	tu_map m1 = {0}, m2 = {0};
	char key[16];
	for (int i = 0; i < 10; i++) {
		snprintf(key, sizeof key, "e%d", i);
		put_ext(c, &o1, &m1, key, 1 + (uint64_t)i % 4, (uint32_t)i);
	}
	/* many more, so that the tree has several leaves */
	for (int i = 10; i < 300; i++) {
		snprintf(key, sizeof key, "f%03d", i);
		put_ext(c, &o1, &m1, key, 1, (uint32_t)i);
	}
	store(c, 1, &o1);
	verify_exts(c, &o1, &m1);
	commit_clean(c);
	struct ext e0 = ext_of(&m1, "e0"), e3 = ext_of(&m1, "e3"), e5 = ext_of(&m1, "e5"),
		   e7 = ext_of(&m1, "e7"), e8 = ext_of(&m1, "e8");
	uint64_t cnt = 0;
	OK(rfs_ref_get(c->pool, e8.start, &cnt));
	EQ_U64(cnt, 1);

	rfs_tree o2;
	OK(rfs_tree_clone(c->pool, &o1, &o2));
	store(c, 2, &o2);
	tu_map_copy(&m2, &m1);
	tu_commit(c);
	/* o2: delete e0..e2, replace e3 */
	del_both(c, &o2, &m2, "e0", 2);
	del_both(c, &o2, &m2, "e1", 2);
	del_both(c, &o2, &m2, "e2", 2);
	put_ext(c, &o2, &m2, "e3", 2, 1003);
	/* o1: delete e5, e6, replace e7 */
	del_both(c, &o1, &m1, "e5", 2);
	del_both(c, &o1, &m1, "e6", 2);
	put_ext(c, &o1, &m1, "e7", 3, 1007);
	store(c, 1, &o1);
	store(c, 2, &o2);
	verify_exts(c, &o1, &m1);
	verify_exts(c, &o2, &m2);
	CHECK(rfs_block_allocated(c->pool, e0.start), "e0 freed while o1 still holds it");
	CHECK(rfs_block_allocated(c->pool, e3.start), "e3 freed while o1 still holds it");
	CHECK(rfs_block_allocated(c->pool, e5.start), "e5 freed while o2 still holds it");
	CHECK(rfs_block_allocated(c->pool, e7.start), "e7 freed while o2 still holds it");
	/* e8 is now in a leaf of each tree */
	OK(rfs_ref_get(c->pool, e8.start, &cnt));
	EQ_U64(cnt, 2);
	OK(rfs_ref_get(c->pool, e8.start + e8.n - 1, &cnt));
	EQ_U64(cnt, 2);
	OK(rfs_ref_get(c->pool, e0.start, &cnt));
	EQ_U64(cnt, 1);
	CHECK_CLEAN(c);
	/* last references: freed */
	del_both(c, &o2, &m2, "e5", 2);
	CHECK(!rfs_block_allocated(c->pool, e5.start), "e5 still allocated without referrers");
	del_both(c, &o1, &m1, "e0", 2);
	CHECK(!rfs_block_allocated(c->pool, e0.start), "e0 still allocated without referrers");
	/* delete with RFS_KEEP_REFS hands the reference to us */
	struct ext e9 = ext_of(&m1, "e9");
	OK(rfs_tree_delete(c->pool, &o1, "e9", 2, RFS_KEEP_REFS));
	tu_map_del(&m1, "e9", 2);
	OK(rfs_tree_delete(c->pool, &o2, "e9", 2, RFS_KEEP_REFS));
	tu_map_del(&m2, "e9", 2);
	OK(rfs_ref_get(c->pool, e9.start, &cnt));
	EQ_U64(cnt, 2);
	CHECK(rfs_block_allocated(c->pool, e9.start), "KEEP_REFS delete freed the extent");
	OK(rfs_ref_dec(c->pool, e9.start, e9.n));
	OK(rfs_ref_dec(c->pool, e9.start, e9.n));
	CHECK(!rfs_block_allocated(c->pool, e9.start), "e9 not freed by the last rfs_ref_dec");
	store(c, 1, &o1);
	store(c, 2, &o2);
	CHECK_CLEAN(c);
	commit_clean(c);
	tu_reopen(c, 0);
	o1 = load(c, 1);
	o2 = load(c, 2);
	verify_exts(c, &o1, &m1);
	verify_exts(c, &o2, &m2);

	/* drop both: every data block comes back */
	OK(rfs_catalog_del(c->pool, 1));
	o2 = load(c, 2);
	verify_exts(c, &o2, &m2);
	CHECK(rfs_block_allocated(c->pool, e8.start), "e8 freed while o2 still holds it");
	OK(rfs_catalog_del(c->pool, 2));
	CHECK(!rfs_block_allocated(c->pool, e8.start), "e8 still allocated after both trees dropped");
	CHECK(!rfs_block_allocated(c->pool, e7.start), "e7 still allocated after both trees dropped");
	CHECK(!rfs_block_allocated(c->pool, e3.start), "e3 still allocated after both trees dropped");
	commit_clean(c);
	EQ_U64(used(c), u_empty);
	tu_map_clear(&m1);
	tu_map_clear(&m2);
}

static void expect_count(tu_pool *c, uint64_t b, uint64_t want)
{
	uint64_t cnt = 0xdead;
	OK(rfs_ref_get(c->pool, b, &cnt));
	CHECK(cnt == want, "refcount of block %" PRIu64 " = %" PRIu64 ", want %" PRIu64, b, cnt, want);
}

/* RFS_ITEM_EXTLIST: a value carrying several extents (an inline extent
 * map) is counted like RFS_ITEM_EXTENT values: shadowing a shared leaf
 * adds a reference to each listed extent, dropping releases each, and
 * check counts them. */
static void test_extent_list_refs(void **state)
{
	tu_pool *c = *state;
	tu_commit(c);
	uint64_t u_empty = used(c);
	rfs_tree t = {0, RFS_OWNER_USER}, t2;
	uint64_t start[3], got;
	uint8_t val[64 + RFS_EXTLIST_BYTES(3)];
	memset(val, 0x5a, 64); /* opaque bytes before the list */
	for (int i = 0; i < 3; i++) {
		OK(rfs_alloc_data(c->pool, 1, &start[i], &got));
		CHECK(got >= 1, "no data block");
		uint64_t e[2] = {start[i], 1};
		memcpy(val + 64 + 16 * i, e, 16);
	}
	uint16_t n = 3;
	memcpy(val + sizeof val - 2, &n, 2);
	/* too short for the count it claims */
	uint8_t shortv[20] = {0};
	memcpy(shortv + 18, &n, 2);
	RC(rfs_tree_put(c->pool, &t, "x", 1, shortv, sizeof shortv, RFS_ITEM_EXTLIST,
			RFS_PUT_INSERT), -EINVAL);
	RC(rfs_tree_put(c->pool, &t, "x", 1, val, sizeof val,
			RFS_ITEM_EXTLIST | RFS_ITEM_EXTENT, RFS_PUT_INSERT), -EINVAL);
	OK(rfs_tree_put(c->pool, &t, "x", 1, val, sizeof val, RFS_ITEM_EXTLIST, RFS_PUT_INSERT));
	store(c, 1, &t);
	commit_clean(c);
	OK(rfs_tree_clone(c->pool, &t, &t2));
	store(c, 2, &t2);
	tu_commit(c);
	/* a write to the shared leaf shadows it: each extent gets a count of 2 */
	OK(rfs_tree_put(c->pool, &t2, "y", 1, "v", 1, 0, RFS_PUT_INSERT));
	store(c, 2, &t2);
	for (int i = 0; i < 3; i++)
		expect_count(c, start[i], 2);
	CHECK_CLEAN(c);
	/* deleting the item in one tree leaves the blocks to the other */
	OK(rfs_tree_delete(c->pool, &t2, "x", 1, 0));
	store(c, 2, &t2);
	for (int i = 0; i < 3; i++) {
		expect_count(c, start[i], 1);
		CHECK(rfs_block_allocated(c->pool, start[i]), "extent %d freed while held", i);
	}
	commit_clean(c);
	OK(rfs_catalog_del(c->pool, 1));
	for (int i = 0; i < 3; i++)
		CHECK(!rfs_block_allocated(c->pool, start[i]), "extent %d leaked", i);
	OK(rfs_catalog_del(c->pool, 2));
	commit_clean(c);
	EQ_U64(used(c), u_empty);
}

static void test_refcount_ranges(void **state)
{
	tu_pool *c = *state;
	tu_commit(c);
	uint64_t u0 = used(c);
	uint64_t s = 0, got = 0;
	for (int tries = 0;; tries++) {
		OK(rfs_alloc_data(c->pool, 10, &s, &got));
		if (got == 10)
			break;
		CHECK(tries < 50, "no run of 10");
	}
	uint64_t u1 = used(c);
	for (uint64_t i = 0; i < 10; i++)
		expect_count(c, s + i, 1);
	OK(rfs_ref_inc(c->pool, s + 2, 5)); /* 2..6 -> 2 */
	OK(rfs_ref_inc(c->pool, s + 4, 4)); /* 4..6 -> 3, 7 -> 2 */
	uint64_t want[10] = {1, 1, 2, 2, 3, 3, 3, 2, 1, 1};
	for (int i = 0; i < 10; i++)
		expect_count(c, s + (uint64_t)i, want[i]);
	tu_commit(c);
	tu_reopen(c, 0);
	for (int i = 0; i < 10; i++)
		expect_count(c, s + (uint64_t)i, want[i]);
	/* a range covering several records */
	OK(rfs_ref_inc(c->pool, s + 1, 8)); /* 1..8 +1 */
	uint64_t want2[10] = {1, 2, 3, 3, 4, 4, 4, 3, 2, 1};
	for (int i = 0; i < 10; i++)
		expect_count(c, s + (uint64_t)i, want2[i]);
	OK(rfs_ref_dec(c->pool, s, 10)); /* 0 and 9 freed */
	uint64_t want3[10] = {0, 1, 2, 2, 3, 3, 3, 2, 1, 0};
	CHECK(!rfs_block_allocated(c->pool, s), "count 0 block still allocated");
	CHECK(!rfs_block_allocated(c->pool, s + 9), "count 0 block still allocated");
	for (int i = 1; i < 9; i++) {
		expect_count(c, s + (uint64_t)i, want3[i]);
		CHECK(rfs_block_allocated(c->pool, s + (uint64_t)i), "referenced block %d freed", i);
	}
	/* the two freed blocks are out of used_blocks; refcount-tree nodes may
	 * exist, so compare after all counts are gone */
	OK(rfs_ref_dec(c->pool, s + 1, 8)); /* 1 and 8 freed: {0,0,1,1,2,2,2,1,0,0} */
	CHECK(!rfs_block_allocated(c->pool, s + 1), "count 0 block still allocated");
	CHECK(!rfs_block_allocated(c->pool, s + 8), "count 0 block still allocated");
	OK(rfs_ref_dec(c->pool, s + 4, 3));
	for (int i = 2; i < 8; i++) {
		expect_count(c, s + (uint64_t)i, 1);
		CHECK(rfs_block_allocated(c->pool, s + (uint64_t)i), "block %d with count 1 not allocated", i);
	}
	tu_commit(c);
	tu_reopen(c, 0);
	for (int i = 2; i < 8; i++) {
		expect_count(c, s + (uint64_t)i, 1);
		CHECK(rfs_block_allocated(c->pool, s + (uint64_t)i), "block %d with count 1 not allocated after reopen", i);
	}
	EQ_U64(used(c), u1 - 4);
	OK(rfs_ref_dec(c->pool, s + 2, 6));
	for (int i = 0; i < 10; i++)
		CHECK(!rfs_block_allocated(c->pool, s + (uint64_t)i), "block %d not freed", i);
	tu_commit(c);
	EQ_U64(used(c), u0);
	CHECK_CLEAN(c);

	/* many interleaved ranges against a simple array model */
	uint64_t base = 0, n = 0;
	for (int tries = 0;; tries++) {
		OK(rfs_alloc_data(c->pool, 64, &base, &n));
		if (n == 64)
			break;
		CHECK(tries < 50, "no run of 64");
	}
	uint64_t model[64];
	for (int i = 0; i < 64; i++)
		model[i] = 1;
	tu_rng r = {4242};
	for (int step = 0; step < 400; step++) {
		uint64_t a = tu_below(&r, 64), l = tu_range(&r, 1, 64 - a);
		bool can_dec = true;
		for (uint64_t i = a; i < a + l; i++)
			if (model[i] == 0)
				can_dec = false;
		if (can_dec && tu_below(&r, 2)) {
			bool keep = true;
			for (uint64_t i = a; i < a + l; i++)
				if (model[i] == 1)
					keep = false;
			if (!keep && tu_below(&r, 4))
				continue; /* free less often */
			OK(rfs_ref_dec(c->pool, base + a, l));
			for (uint64_t i = a; i < a + l; i++)
				model[i]--;
		} else {
			bool all_live = true;
			for (uint64_t i = a; i < a + l; i++)
				if (model[i] == 0)
					all_live = false;
			if (!all_live)
				continue;
			OK(rfs_ref_inc(c->pool, base + a, l));
			for (uint64_t i = a; i < a + l; i++)
				model[i]++;
		}
		if (step % 50 == 0)
			tu_commit(c);
		for (int i = 0; i < 64; i++) {
			if (model[i])
				expect_count(c, base + (uint64_t)i, model[i]);
			else
				CHECK(!rfs_block_allocated(c->pool, base + (uint64_t)i),
				      "step %d: block %d with count 0 allocated", step, i);
		}
	}
	for (int i = 0; i < 64; i++)
		while (model[i]) {
			OK(rfs_ref_dec(c->pool, base + (uint64_t)i, 1));
			model[i]--;
		}
	tu_commit(c);
	EQ_U64(used(c), u0);
	CHECK_CLEAN(c);
}

static void test_catalog(void **state)
{
	tu_pool *c = *state;
	uint64_t ids[] = {1, 2, 255, 256, 1ull << 40, UINT64_MAX};
	tu_map m[6];
	memset(m, 0, sizeof m);
	tu_rng r = {31};
	for (int i = 0; i < 6; i++) {
		rfs_tree t = {0, RFS_OWNER_USER + (uint64_t)i};
		mutate(c, &t, &m[i], &r, 50 + 100 * i);
		store(c, ids[i], &t);
	}
	for (int i = 0; i < 6; i++) {
		rfs_tree t = load(c, ids[i]);
		EQ_U64(t.owner, RFS_OWNER_USER + (uint64_t)i);
		CHECK_TREE(c->pool, &t, &m[i]);
	}
	rfs_tree x;
	RC(rfs_catalog_get(c->pool, 3, &x), -ENOENT);
	/* walking the ids in order (scrub visits every volume so) */
	uint64_t id = 0, from = 0;
	for (int i = 0; i < 6; i++) {
		OK(rfs_catalog_next(c->pool, from, &id, &x));
		EQ_U64(id, ids[i]);
		EQ_U64(x.owner, RFS_OWNER_USER + (uint64_t)i);
		EQ_U64(x.root, load(c, ids[i]).root);
		from = id + 1;
	}
	OK(rfs_catalog_next(c->pool, 3, &id, &x));
	EQ_U64(id, 255);
	OK(rfs_catalog_next(c->pool, UINT64_MAX, &id, &x));
	EQ_U64(id, UINT64_MAX);
	RC(rfs_catalog_next(c->pool, (1ull << 40) + 1, &id, &x), 0);
	EQ_U64(id, UINT64_MAX);
	commit_clean(c);
	/* uncommitted changes vanish on close */
	OK(rfs_catalog_del(c->pool, ids[1]));
	rfs_tree t0 = load(c, ids[0]);
	OK(rfs_tree_put(c->pool, &t0, "zzz", 3, "", 0, 0, RFS_PUT_INSERT));
	store(c, ids[0], &t0);
	tu_reopen(c, 0);
	for (int i = 0; i < 6; i++) {
		rfs_tree t = load(c, ids[i]);
		CHECK_TREE(c->pool, &t, &m[i]);
	}
	/* update through the catalog, delete, persist */
	t0 = load(c, ids[0]);
	mutate(c, &t0, &m[0], &r, 300);
	store(c, ids[0], &t0);
	OK(rfs_catalog_del(c->pool, ids[2]));
	RC(rfs_catalog_get(c->pool, ids[2], &x), -ENOENT);
	RC(rfs_catalog_del(c->pool, ids[2]), -ENOENT);
	commit_clean(c);
	tu_reopen(c, 0);
	RC(rfs_catalog_get(c->pool, ids[2], &x), -ENOENT);
	for (int i = 0; i < 6; i++) {
		if (i == 2)
			continue;
		rfs_tree t = load(c, ids[i]);
		CHECK_TREE(c->pool, &t, &m[i]);
	}
	/* empty tree in the catalog */
	rfs_tree e = {0, RFS_OWNER_USER};
	store(c, 7, &e);
	tu_commit(c);
	tu_reopen(c, 0);
	e = load(c, 7);
	EQ_U64(e.root, 0);
	CHECK_CLEAN(c);
	for (int i = 0; i < 6; i++)
		tu_map_clear(&m[i]);
}

/* ---- rfs_check on broken states -------------------------------------------------------- */

static void expect_problem(tu_pool *c, uint64_t blocknr, const char *what)
{
	static tu_reports rep;
	long n = tu_check(c, &rep, NULL);
	CHECK(n > 0, "%s: rfs_check found nothing (returned %ld)", what, n);
	CHECK(rep.n > 0, "%s: rfs_check returned %ld but reported nothing", what, n);
	if (!tu_reports_name(&rep, blocknr)) {
		tu_reports_print(&rep, 10);
		CHECK(false, "%s: no report names block %" PRIu64, what, blocknr);
	}
}

static void test_check_detects(void **state)
{
	tu_pool *c = *state;
	tu_rng r = {8};
	rfs_tree t = {0, RFS_OWNER_USER};
	tu_map m = {0};
	mutate(c, &t, &m, &r, 2000);
	put_ext(c, &t, &m, "data-1", 3, 55);
	store(c, 1, &t);
	commit_clean(c);
	struct ext d = ext_of(&m, "data-1");
	struct rfs_check_stats st;
	static tu_reports rep;
	memset(&st, 0, sizeof st);
	EQ_U64(tu_check(c, &rep, &st), 0);
	CHECK(st.nodes >= 3, "check visited %" PRIu64 " nodes", st.nodes);
	CHECK(st.items >= m.n, "check visited %" PRIu64 " items, tree has %zu", st.items, m.n);
	CHECK(st.data_blocks >= 3, "check saw %" PRIu64 " data blocks", st.data_blocks);
	EQ_U64(st.problems, 0);

	/* a leaked block */
	uint64_t s = 0, got = 0;
	OK(rfs_alloc_data(c->pool, 1, &s, &got));
	expect_problem(c, s, "leaked data block");
	OK(rfs_free_blocks(c->pool, s, 1));
	CHECK_CLEAN(c);

	/* an extra reference on a data block */
	OK(rfs_ref_inc(c->pool, d.start + 1, 1));
	expect_problem(c, d.start + 1, "extra ref on a data block");
	OK(rfs_ref_dec(c->pool, d.start + 1, 1));
	CHECK_CLEAN(c);

	/* an extra reference on a tree node */
	OK(rfs_ref_inc(c->pool, t.root, 1));
	expect_problem(c, t.root, "extra ref on the root node");
	OK(rfs_ref_dec(c->pool, t.root, 1));
	CHECK_CLEAN(c);
	commit_clean(c);

	/* a referenced data block freed */
	OK(rfs_free_blocks(c->pool, d.start + 2, 1));
	expect_problem(c, d.start + 2, "referenced data block freed");
	tu_reopen(c, 0); /* discard */
	CHECK_CLEAN(c);

	/* a referenced tree node freed */
	t = load(c, 1);
	uint64_t node = t.root;
	OK(rfs_free_blocks(c->pool, node, 1));
	expect_problem(c, node, "referenced node freed");
	tu_reopen(c, 0);
	CHECK_CLEAN(c);

	/* a block referenced twice without a count: two items naming the
	 * same extent */
	t = load(c, 1);
	const tu_item *e = tu_map_get(&m, "data-1", 6);
	CHECK(e != NULL, "model");
	OK(rfs_tree_put(c->pool, &t, "data-2", 6, e->val, e->vlen, RFS_ITEM_EXTENT, RFS_PUT_INSERT));
	store(c, 1, &t);
	expect_problem(c, d.start, "extent referenced twice with count 1");
	tu_reopen(c, 0);
	CHECK_CLEAN(c);
	tu_map_clear(&m);
}

/* ---- a full pool --------------------------------------------------------------------- */

/* Recreate the pool with the minimal size (16 MiB) and fill tree 1 with
 * 1 KB items until -ENOSPC; the failed put must leave the tree unchanged. */
static void fill_pool(tu_pool *c, rfs_tree *t, tu_map *m, uint64_t *u_empty)
{
	tu_close(c);
	OK(rfs_pool_create(c->path, 16ull << 20, RFS_CREATE_FORCE));
	tu_open(c, 0);
	*u_empty = used(c);
	t->root = 0;
	t->owner = RFS_OWNER_USER;
	uint8_t k[8], v[1000];
	memset(v, 0x5a, sizeof v);
	store(c, 1, t);
	int rc = 0;
	uint64_t i;
	for (i = 0; i < 100000; i++) {
		key64(k, i * 7919 % 100003);
		memcpy(v, k, 8);
		rc = rfs_tree_put(c->pool, t, k, 8, v, sizeof v, 0, RFS_PUT_INSERT);
		if (rc)
			break;
		tu_map_put(m, k, 8, v, sizeof v, 0);
		OK(rfs_catalog_set(c->pool, 1, t));
		if (i % 1000 == 999)
			tu_commit(c);
	}
	RC(rc, -ENOSPC);
	CHECK(i > 5000, "ENOSPC after only %" PRIu64 " items of 1 KB in a 16 MiB pool", i);
	CHECK_TREE(c->pool, t, m);
	OK(rfs_catalog_set(c->pool, 1, t));
	/* data allocation fails too (it gives up before metadata does) */
	uint64_t s, got;
	RC(rfs_alloc_data(c->pool, 1, &s, &got), -ENOSPC);
}

/* A full pool can always drop a tree, and commit. */
static void test_enospc_drop(void **state)
{
	tu_pool *c = *state;
	rfs_tree t;
	tu_map m = {0};
	uint64_t u_empty;
	fill_pool(c, &t, &m, &u_empty);
	OK(rfs_catalog_del(c->pool, 1));
	commit_clean(c);
	EQ_U64(used(c), u_empty);

	/* fill with data extents referenced from tree 2, then drop it */
	uint64_t s, got;
	int rc;
	uint8_t k[8];
	while (rfs_alloc_data(c->pool, 64, &s, &got) == 0) {
		uint8_t val[16];
		memcpy(val, &s, 8);
		memcpy(val + 8, &got, 8);
		rfs_tree d = {0, RFS_OWNER_USER};
		if (rfs_catalog_get(c->pool, 2, &d) != 0)
			d.root = 0;
		key64(k, s);
		rc = rfs_tree_put(c->pool, &d, k, 8, val, 16, RFS_ITEM_EXTENT, RFS_PUT_INSERT);
		if (rc) {
			RC(rc, -ENOSPC);
			OK(rfs_free_blocks(c->pool, s, got));
			break;
		}
		rc = rfs_catalog_set(c->pool, 2, &d);
		CHECK(rc == 0, "catalog_set of a new tree root after a successful put = %d", rc);
	}
	CHECK_CLEAN(c);
	tu_commit(c);
	OK(rfs_catalog_del(c->pool, 2));
	commit_clean(c);
	EQ_U64(used(c), u_empty);
	tu_map_clear(&m);
}

/* A full pool can delete items from a tree AND store the tree's new root
 * (rfs_catalog_set), then commit; else a deletion cannot be persisted.
 * Within one transaction the reserve may run out (copy-on-write needs
 * blocks; freed ones come back at the commit): then the delete itself
 * must fail with -ENOSPC, not the catalog update after it. */
static void test_enospc_delete_items(void **state)
{
	tu_pool *c = *state;
	rfs_tree t;
	tu_map m = {0};
	uint64_t u_empty;
	fill_pool(c, &t, &m, &u_empty);
	/* deletions with a commit every 10 */
	for (int j = 0; j < 300 && m.n; j++) {
		uint8_t kk[8];
		memcpy(kk, m.v[(size_t)j * 7 % m.n].key, 8);
		del_both(c, &t, &m, kk, 8);
		int rc = rfs_catalog_set(c->pool, 1, &t);
		CHECK(rc == 0, "full pool: rfs_catalog_set after deleting %d items = %d", j + 1, rc);
		if (j % 10 == 9)
			tu_commit(c);
	}
	commit_clean(c);
	CHECK_TREE(c->pool, &t, &m);

	/* full again; now many deletions in one transaction */
	uint8_t k[8], v[1000];
	memset(v, 1, sizeof v);
	int rc = 0;
	for (uint64_t i = 0; i < 100000; i++) {
		key64(k, (1ull << 40) + i);
		rc = rfs_tree_put(c->pool, &t, k, 8, v, sizeof v, 0, RFS_PUT_INSERT);
		if (rc)
			break;
		tu_map_put(&m, k, 8, v, sizeof v, 0);
		OK(rfs_catalog_set(c->pool, 1, &t));
		if (i % 1000 == 999)
			tu_commit(c);
	}
	RC(rc, -ENOSPC);
	tu_commit(c);
	int deleted = 0;
	for (int j = 0; j < 2000 && m.n; j++) {
		uint8_t kk[8];
		memcpy(kk, m.v[(size_t)j * 13 % m.n].key, 8);
		rc = rfs_tree_delete(c->pool, &t, kk, 8, 0);
		if (rc == -ENOSPC)
			break; /* refused before any change: fine */
		CHECK(rc == 0, "full pool: delete = %d", rc);
		tu_map_del(&m, kk, 8);
		deleted++;
		rc = rfs_catalog_set(c->pool, 1, &t);
		CHECK(rc == 0, "full pool: the delete #%d succeeded but storing the new root failed: rfs_catalog_set = %d "
		      "(the deletion cannot be committed)", deleted, rc);
	}
	CHECK(deleted >= 1, "full pool: not even one delete possible");
	CHECK_TREE(c->pool, &t, &m);
	commit_clean(c);
	tu_map_clear(&m);
}

/* ---- concurrency: readers under the read lock, a writer committing ------------------- */

struct conc {
	rfs_pool *pool;
	const tu_map *m1;
	atomic_long errors;
	atomic_long reads;
	uint64_t seed;
	char first_error[256];
	pthread_mutex_t emu;
};

static void conc_error(struct conc *cc, const char *msg, long a, long b)
{
	if (atomic_fetch_add(&cc->errors, 1) == 0) {
		pthread_mutex_lock(&cc->emu);
		snprintf(cc->first_error, sizeof cc->first_error, "%s (%ld, %ld)", msg, a, b);
		pthread_mutex_unlock(&cc->emu);
	}
}

static void *reader(void *arg)
{
	struct conc *cc = arg;
	static atomic_ulong next_seed;
	tu_rng r = {cc->seed + atomic_fetch_add(&next_seed, 1) * 0x9e37};
	uint8_t v[RFS_VAL_MAX];
	for (int round = 0; round < 300; round++) {
		rfs_pool_rdlock(cc->pool);
		rfs_tree t;
		int rc = rfs_catalog_get(cc->pool, 1, &t);
		if (rc) {
			conc_error(cc, "catalog_get", rc, 0);
			rfs_pool_unlock(cc->pool);
			break;
		}
		for (int i = 0; i < 20; i++) {
			const tu_item *e = &cc->m1->v[tu_below(&r, cc->m1->n)];
			size_t vl = sizeof v;
			uint8_t fl;
			rc = rfs_tree_lookup(cc->pool, &t, e->key, e->klen, v, &vl, &fl);
			if (rc || vl != e->vlen || (vl && memcmp(v, e->val, vl)))
				conc_error(cc, "lookup", rc, (long)vl);
			atomic_fetch_add(&cc->reads, 1);
		}
		rfs_cursor *c = NULL;
		rc = rfs_cursor_open(cc->pool, &t, &c);
		if (rc == 0) {
			size_t at = tu_below(&r, cc->m1->n);
			const tu_item *e = &cc->m1->v[at];
			rc = rfs_cursor_seek(c, e->key, e->klen, 1);
			for (int i = 0; i < 50 && rc == 0 && at < cc->m1->n; i++, at++) {
				const void *k, *cv;
				size_t kl, cvl;
				uint8_t fl;
				rc = rfs_cursor_get(c, &k, &kl, &cv, &cvl, &fl);
				e = &cc->m1->v[at];
				if (rc || kl != e->klen || memcmp(k, e->key, kl) || cvl != e->vlen ||
				    (cvl && memcmp(cv, e->val, cvl)))
					conc_error(cc, "scan", rc, (long)i);
				rc = rfs_cursor_step(c, 1);
			}
			if (rc && rc != -ENOENT)
				conc_error(cc, "scan step", rc, 0);
			rfs_cursor_close(c);
		} else {
			conc_error(cc, "cursor_open", rc, 0);
		}
		rfs_pool_unlock(cc->pool);
	}
	return NULL;
}

static void test_concurrent_readers(void **state)
{
	tu_pool *c = *state;
	tu_rng r = {2024};
	rfs_tree t1 = {0, RFS_OWNER_USER}, t2 = {0, RFS_OWNER_USER};
	tu_map m1 = {0}, m2 = {0};
	mutate(c, &t1, &m1, &r, 6000);
	mutate(c, &t2, &m2, &r, 500);
	store(c, 1, &t1);
	store(c, 2, &t2);
	tu_commit(c);
	tu_reopen(c, 0);
	rfs_pool_set_cache_limit(c->pool, 16); /* constant eviction and reload */
	tu_unlock(c);

	static struct conc cc;
	memset(&cc, 0, sizeof cc);
	pthread_mutex_init(&cc.emu, NULL);
	cc.pool = c->pool;
	cc.m1 = &m1;
	pthread_t th[4];
	for (int i = 0; i < 4; i++)
		CHECK(pthread_create(&th[i], NULL, reader, &cc) == 0, "pthread_create");
	/* the writer: change tree 2 and commit, while the readers run */
	long werr = 0;
	for (int round = 0; round < 60; round++) {
		rfs_pool_wrlock(c->pool);
		rfs_tree t;
		int rc = rfs_catalog_get(c->pool, 2, &t);
		for (int i = 0; i < 20 && rc == 0; i++) {
			uint8_t k[8];
			uint64_t x = tu_below(&r, 3000);
			key64(k, x);
			rc = rfs_tree_put(c->pool, &t, k, 8, &x, sizeof x, 0, RFS_PUT_UPSERT);
			if (rc == 0)
				tu_map_put(&m2, k, 8, &x, sizeof x, 0);
		}
		if (rc == 0)
			rc = rfs_catalog_set(c->pool, 2, &t);
		rfs_pool_unlock(c->pool);
		if (rc == 0 && round % 5 == 4)
			rc = rfs_pool_commit(c->pool);
		if (rc && !werr)
			werr = rc;
	}
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	tu_lock(c);
	CHECK(werr == 0, "writer error %ld", werr);
	CHECK(atomic_load(&cc.errors) == 0, "%ld reader errors, first: %s", atomic_load(&cc.errors), cc.first_error);
	CHECK(atomic_load(&cc.reads) > 1000, "readers did little (%ld lookups)", atomic_load(&cc.reads));
	t1 = load(c, 1);
	t2 = load(c, 2);
	CHECK_TREE(c->pool, &t1, &m1);
	CHECK_TREE(c->pool, &t2, &m2);
	commit_clean(c);
	pthread_mutex_destroy(&cc.emu);
	tu_map_clear(&m1);
	tu_map_clear(&m2);
}

/* After a failed commit the pool is read-only: every mutation gives
 * -EROFS, also one that would only touch nodes already dirty. */
static void test_readonly_after_failed_commit(void **state)
{
	tu_pool *c = *state;
	rfs_tree t = {0, RFS_OWNER_USER};
	tu_map m = {0};
	tu_rng r = {3};
	mutate(c, &t, &m, &r, 500);
	store(c, 1, &t);
	tu_commit(c);
	uint8_t k[8];
	key64(k, 1);
	put_both(c, &t, &m, k, 8, "dirty", 5, 0, RFS_PUT_UPSERT); /* path now dirty */
	store(c, 1, &t);
	rfs_pool_fail_writes_after(c->pool, 0);
	RC(rfs_pool_commit_locked(c->pool), -EIO);
	rfs_pool_fail_writes_after(c->pool, UINT64_MAX);
	/* same leaf as the dirty one: no allocation needed, still refused */
	RC(rfs_tree_put(c->pool, &t, k, 8, "again", 5, 0, RFS_PUT_UPSERT), -EROFS);
	RC(rfs_tree_delete(c->pool, &t, k, 8, 0), -EROFS);
	rfs_tree t2;
	RC(rfs_tree_clone(c->pool, &t, &t2), -EROFS);
	RC(rfs_catalog_set(c->pool, 1, &t), -EROFS);
	RC(rfs_pool_commit_locked(c->pool), -EROFS);
	tu_map_clear(&m);
}

/* A put into a fresh clone copies the shared path, and each copy raises
 * its children's refcounts.  Whichever metadata allocation fails, either
 * the item counter moved (an fs operation then discards the transaction)
 * or the trees and refcounts are consistent once the new root is stored
 * back, as a failed walk does. */
static void test_failed_copy_counts(void **state)
{
	tu_pool *c = *state;
	tu_rng r = {7};
	rfs_tree t1 = {0, RFS_OWNER_USER}, t2;
	tu_map m1 = {0};
	mutate(c, &t1, &m1, &r, 30000);
	store(c, 1, &t1);
	OK(rfs_tree_clone(c->pool, &t1, &t2));
	store(c, 2, &t2);
	tu_commit(c);
	int counted = 0, clean = 0;
	for (uint64_t k = 0; k < 400; k++) {
		tu_reopen(c, 0); /* the committed state again */
		rfs_tree t = load(c, 2);
		tu_unlock(c);
		rfs_pool_fail_meta_allocs_after(c->pool, k);
		tu_lock(c);
		uint64_t i0 = rfs_pool_items(c->pool);
		uint8_t key[8];
		key64(key, k * 7919);
		int ret = rfs_tree_put(c->pool, &t, key, 8, "v", 1, 0, RFS_PUT_REPLACE);
		if (ret == -ENOENT)
			ret = rfs_tree_put(c->pool, &t, key, 8, "v", 1, 0, RFS_PUT_INSERT);
		tu_unlock(c);
		rfs_pool_fail_meta_allocs_after(c->pool, UINT64_MAX);
		tu_lock(c);
		if (!ret)
			break; /* allocation k came after the whole put */
		EQ_U64(ret, -ENOSPC);
		if (rfs_pool_items(c->pool) != i0) {
			counted++;
			continue;
		}
		store(c, 2, &t);
		CHECK_CLEAN(c);
		clean++;
	}
	print_message("failed puts: %d left a consistent state, %d counted an item change\n", clean, counted);
	tu_map_clear(&m1);
}

/* ---- editing one leaf (rfs_tree_edit_*) ------------------------------------------ */

static uint64_t key_u64(const void *k)
{
	const uint8_t *b = k;
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = (v << 8) | b[i];
	return v;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Item j of the open leaf as a u64 key; checks its size. */
static uint64_t edit_key(const struct rfs_tree_edit *ed, unsigned j)
{
	const void *k, *v;
	size_t kl, vl;
	OK(rfs_tree_edit_get(ed, j, &k, &kl, &v, &vl, NULL));
	EQ_U64(kl, 8);
	return key_u64(k);
}

/*
 * Random splices against a model: the leaf an edit opens is the run of
 * the model's keys around the key it was opened at; a splice replaces
 * 0-3 of its items by 1-4 new ones with random keys between the
 * neighbours and random sizes (some too big for the leaf: it splits, or
 * the splice says 0 and puts do it); keys out of order or equal to a
 * neighbour's are refused, keys outside the leaf's range left to puts
 * (0), both changing nothing.  A clone taken halfway must keep its own items, and every
 * few hundred splices the tree matches the model, commits and checks.
 */
static void test_edit_splice(void **state)
{
	tu_pool *c = *state;
	tu_rng r = {9090};
	rfs_tree t = {0, RFS_OWNER_USER}, t2 = {0, 0};
	tu_map m = {0}, m2 = {0};
	uint8_t k[8], v[RFS_VAL_MAX];
	const uint64_t SPAN = 1000, NK = 1500;
	unsigned spliced = 0, refused = 0, split_or_put = 0, bad_ok = 0;

	for (uint64_t i = 0; i < NK; i++) {
		key64(k, (i + 1) * SPAN);
		size_t vl = tu_range(&r, 0, 80);
		tu_fill(&r, v, vl);
		put_both(c, &t, &m, k, 8, v, vl, 0, RFS_PUT_INSERT);
	}
	store(c, 1, &t);
	commit_clean(c);
	for (int it = 0; it < 6000; it++) {
		if (it == 3000) {
			/* From here the nodes are shared until shadowed. */
			OK(rfs_tree_clone(c->pool, &t, &t2));
			store(c, 2, &t2);
			tu_map_copy(&m2, &m);
		}
		uint64_t x = tu_below(&r, (NK + 2) * SPAN);
		struct rfs_tree_edit ed;
		unsigned idx, n;
		bool exact;
		key64(k, x);
		OK(rfs_tree_edit_open(c->pool, &t, k, 8, &ed, &idx, &exact));
		n = rfs_tree_edit_n(&ed);
		CHECK(n > 0 && idx <= n, "leaf of %u items, index %u", n, idx);
		/* The leaf is a run of the model's keys around x. */
		bool f;
		size_t mi = tu_map_find(&m, k, 8, &f);
		EQ_U64(exact, f);
		if (idx < n)
			EQ_U64(edit_key(&ed, idx), key_u64(m.v[mi].key));
		if (idx > 0)
			EQ_U64(edit_key(&ed, idx - 1), key_u64(m.v[mi - 1].key));
		unsigned i = idx > 0 && tu_below(&r, 2) ? idx - 1 : idx;
		unsigned nrm = (unsigned)tu_below(&r, 4);
		if (nrm > n - i)
			nrm = n - i;
		/* The keys the new items may take: between the neighbours
		 * kept, within what routes here (x does). */
		uint64_t lo, hi, gone[4];
		if (i > 0)
			lo = edit_key(&ed, i - 1) + 1;
		else
			lo = nrm && edit_key(&ed, 0) < x ? edit_key(&ed, 0) : x;
		if (i + nrm < n)
			hi = edit_key(&ed, i + nrm) - 1;
		else
			hi = nrm && edit_key(&ed, n - 1) > x ? edit_key(&ed, n - 1) : x;
		for (unsigned j = 0; j < nrm; j++)
			gone[j] = edit_key(&ed, i + j);
		if (hi < lo) {
			rfs_tree_edit_close(&ed);
			continue;
		}
		uint64_t nk[4];
		unsigned nins = 1 + (unsigned)tu_below(&r, 4);
		for (unsigned j = 0; j < nins; j++)
			nk[j] = lo + tu_below(&r, hi - lo + 1);
		qsort(nk, nins, sizeof(nk[0]), cmp_u64);
		unsigned u = 1;
		for (unsigned j = 1; j < nins; j++)
			if (nk[j] != nk[u - 1])
				nk[u++] = nk[j];
		nins = u;
		uint8_t kb[4][8], vb[4][RFS_VAL_MAX];
		struct rfs_tree_item items[4];
		/* Sometimes items of the largest size: two or more between
		 * other items may fit neither half of a split. */
		bool huge = tu_below(&r, 30) == 0;
		for (unsigned j = 0; j < nins; j++) {
			key64(kb[j], nk[j]);
			size_t vl = huge ? RFS_VAL_MAX
				: tu_below(&r, 10) ? tu_range(&r, 0, 100) : tu_range(&r, 200, RFS_VAL_MAX);
			tu_fill(&r, vb[j], vl);
			items[j] = (struct rfs_tree_item){kb[j], 8, vb[j], vl, 0};
		}
		/* Now and then a splice the tree must refuse. */
		uint64_t p = tu_below(&r, 20);
		if (p == 0 && nins >= 2) {
			struct rfs_tree_item sw = items[0];
			items[0] = items[1];
			items[1] = sw;
		} else if (p == 1 && i > 0) {
			key64(kb[0], lo - 1); /* the left neighbour's key */
		} else if (p == 2 && i == 0 && nrm == 0 && key_u64(m.v[0].key) != edit_key(&ed, 0)) {
			/* This is not the first leaf: key 0 routes elsewhere. */
			key64(kb[0], 0);
		} else if (p == 3 && i == n && key_u64(m.v[m.n - 1].key) != edit_key(&ed, n - 1)) {
			key64(kb[nins - 1], UINT64_MAX);
		} else {
			p = 20;
		}
		int rc = rfs_tree_edit_splice(&ed, i, nrm, items, nins, 0);
		rfs_tree_edit_close(&ed);
		if (p < 20) {
			/* Out of order: refused.  Outside the leaf: for puts. */
			RC(rc, p < 2 ? -EINVAL : 0);
			refused++;
			continue;
		}
		CHECK(rc == 0 || rc == 1, "splice = %d", rc);
		if (rc == 0) {
			/* Only when no split holds it: do it with puts. */
			CHECK(huge && nins >= 2, "splice of %u items said 0", nins);
			split_or_put++;
			for (unsigned j = 0; j < nrm; j++) {
				key64(k, gone[j]);
				del_both(c, &t, &m, k, 8);
			}
			for (unsigned j = 0; j < nins; j++)
				put_both(c, &t, &m, kb[j], 8, vb[j], items[j].vlen, 0, RFS_PUT_INSERT);
		} else {
			spliced++;
			for (unsigned j = 0; j < nrm; j++) {
				key64(k, gone[j]);
				CHECK(tu_map_del(&m, k, 8), "removed key %llu not in the model",
				      (unsigned long long)gone[j]);
			}
			for (unsigned j = 0; j < nins; j++)
				tu_map_put(&m, kb[j], 8, vb[j], items[j].vlen, 0);
		}
		if (it % 500 == 499) {
			CHECK_TREE(c->pool, &t, &m);
			store(c, 1, &t);
			if (it > 3000) {
				CHECK_TREE(c->pool, &t2, &m2);
				bad_ok++;
			}
			commit_clean(c);
		}
	}
	CHECK(spliced > 3000 && refused > 50 && split_or_put > 0, "spliced %u, refused %u, by puts %u", spliced,
	      refused, split_or_put);
	CHECK(bad_ok > 0, "the clone was never checked");
	store(c, 1, &t);
	CHECK_TREE(c->pool, &t, &m);
	CHECK_TREE(c->pool, &t2, &m2);
	commit_clean(c);
	tu_reopen(c, 0);
	t = load(c, 1);
	t2 = load(c, 2);
	CHECK_TREE(c->pool, &t, &m);
	CHECK_TREE(c->pool, &t2, &m2);
	tu_map_clear(&m);
	tu_map_clear(&m2);
}

/*
 * The references of the items a splice removes: released (mode 0) or
 * handed to the caller (RFS_KEEP_REFS), in a tree whose leaves a clone
 * shares; the pool checks clean and the extents' counts are as the
 * trees say.
 */
static void test_edit_splice_refs(void **state)
{
	tu_pool *c = *state;
	tu_commit(c);
	uint64_t u0 = used(c);
	rfs_tree t = {0, RFS_OWNER_USER}, t2;
	tu_map m = {0};
	char key[16];
	for (int i = 0; i < 200; i++) {
		snprintf(key, sizeof key, "e%03d", i);
		put_ext(c, &t, &m, key, 1 + (uint64_t)i % 3, (uint32_t)i);
	}
	store(c, 1, &t);
	commit_clean(c);
	OK(rfs_tree_clone(c->pool, &t, &t2));
	store(c, 2, &t2);
	struct ext e10 = ext_of(&m, "e010"), e20 = ext_of(&m, "e020");
	for (int round = 0; round < 2; round++) {
		const char *at = round ? "e020" : "e010";
		struct rfs_tree_edit ed;
		unsigned idx;
		bool exact;
		OK(rfs_tree_edit_open(c->pool, &t, at, 4, &ed, &idx, &exact));
		CHECK(exact, "%s not found", at);
		uint8_t v1[RFS_VAL_MAX], v2[RFS_VAL_MAX];
		long l1 = tu_ext_make(c->pool, 2, 1000u + (unsigned)round, v1);
		long l2 = tu_ext_make(c->pool, 1, 2000u + (unsigned)round, v2);
		CHECK(l1 > 0 && l2 > 0, "tu_ext_make %ld %ld", l1, l2);
		char k2[16];
		snprintf(k2, sizeof k2, "%sa", at);
		struct rfs_tree_item items[2] = {
			{at, 4, v1, (size_t)l1, RFS_ITEM_EXTENT},
			{k2, 5, v2, (size_t)l2, RFS_ITEM_EXTENT},
		};
		RC(rfs_tree_edit_splice(&ed, idx, 1, items, 2, round ? RFS_KEEP_REFS : 0), 1);
		rfs_tree_edit_close(&ed);
		tu_map_put(&m, at, 4, v1, (size_t)l1, RFS_ITEM_EXTENT);
		tu_map_put(&m, k2, 5, v2, (size_t)l2, RFS_ITEM_EXTENT);
		if (round) /* the caller took that reference: give it back */
			OK(rfs_ref_dec(c->pool, e20.start, e20.n));
	}
	store(c, 1, &t);
	verify_exts(c, &t, &m);
	commit_clean(c);
	/* The clone alone holds the old extents now. */
	uint64_t cnt = 0;
	OK(rfs_ref_get(c->pool, e10.start, &cnt));
	EQ_U64(cnt, 1);
	OK(rfs_ref_get(c->pool, e20.start, &cnt));
	EQ_U64(cnt, 1);
	OK(rfs_catalog_del(c->pool, 2));
	commit_clean(c);
	CHECK(!rfs_block_allocated(c->pool, e10.start), "e10 kept after its last holder went");
	CHECK(!rfs_block_allocated(c->pool, e20.start), "e20 kept after its last holder went");
	drop_to(c, 1, 0, u0);
	tu_map_clear(&m);
}

/* ---- moving an open edit (rfs_tree_edit_move) ------------------------------------- */

/*
 * A moved edit must stand exactly where rfs_tree_edit_open on the same key
 * would: same idx and exact, the same shadowed nodes and slots on the
 * path, the leaf a read-only descent (rfs_tree_leaf) finds, and that
 * leaf's items a run of the model's.  The tests drive one edit through
 * many keys of a tree of height >= 3 and splice through it between moves.
 */
#define MV_SPAN 1000u

struct mv {
	tu_pool *c;
	rfs_tree *t;
	tu_map *m;
	uint64_t id; /* catalog slot of t */
	struct rfs_tree_edit ed;
	bool open;
	unsigned moves, same_leaf, same_parent, other_parent;
	unsigned replaced, split_recs, merged, leaf_splits, by_puts;
};

/* A key to move to: up to 9 bytes (a model key's 7-byte prefix sorts just
 * below the keys with that prefix, a model key plus a 0 byte just above
 * it: both land on separators). */
struct mv_probe {
	uint8_t k[9];
	uint8_t kl;
};

static int mv_probe_cmp(const void *a, const void *b)
{
	const struct mv_probe *x = a, *y = b;
	return tu_keycmp(x->k, x->kl, y->k, y->kl);
}

/* Probe of kind kind (0 exact, 1 prefix, 2 just above, 3 mid-gap) around u. */
static struct mv_probe mv_probe_of(uint64_t u, unsigned kind)
{
	struct mv_probe p = {{0}, 8};
	key64(p.k, kind == 3 ? u + MV_SPAN / 2 : u);
	if (kind == 1)
		p.kl = 7;
	else if (kind == 2)
		p.kl = 9; /* k[8] is 0 */
	return p;
}

/* The edit stands where a fresh open of key puts one: checks it all. */
static void mv_check(struct mv *v, const uint8_t *key, size_t kl, unsigned idx, bool exact)
{
	struct rfs_tree_edit *ed = &v->ed, f;
	unsigned fi = 12345, n = rfs_tree_edit_n(ed);
	bool fe = !exact;
	uint64_t root = v->t->root;

	OK(rfs_tree_edit_open(v->c->pool, v->t, key, kl, &f, &fi, &fe));
	/* Everything on the path is shadowed already: nothing moves. */
	EQ_U64(v->t->root, root);
	EQ_U64(fi, idx);
	EQ_U64(fe, exact);
	EQ_U64(f.p.h, ed->p.h);
	for (int k = 0; k < f.p.h; k++) {
		EQ_U64(f.p.b[k]->blocknr, ed->p.b[k]->blocknr);
		if (k + 1 < f.p.h)
			EQ_U64(f.p.s[k], ed->p.s[k]);
	}
	EQ_U64(rfs_tree_edit_n(&f), n);
	rfs_tree_edit_close(&f);

	uint64_t leaf = 0;
	bool shared = true;
	OK(rfs_tree_leaf(v->c->pool, v->t, key, kl, &leaf, &shared));
	EQ_U64(leaf, ed->p.b[ed->p.h - 1]->blocknr);
	CHECK(!shared, "path shared after the edit shadowed it");

	/* The leaf's items are a run of the model's, and idx is where key
	 * falls in it. */
	CHECK(n > 0, "empty leaf");
	const void *k0, *val;
	size_t k0l, vl;
	uint8_t fl;
	OK(rfs_tree_edit_get(ed, 0, &k0, &k0l, &val, &vl, &fl));
	bool found;
	size_t f0 = tu_map_find(v->m, k0, k0l, &found);
	CHECK(found, "leaf's first key not in the model");
	CHECK(f0 + n <= v->m->n, "leaf of %u items at model index %zu of %zu", n, f0, v->m->n);
	for (unsigned j = 0; j < n; j++) {
		const void *k;
		size_t l;
		OK(rfs_tree_edit_get(ed, j, &k, &l, &val, &vl, &fl));
		const tu_item *e = &v->m->v[f0 + j];
		CHECK(l == e->klen && memcmp(k, e->key, l) == 0, "leaf item %u: key differs", j);
		CHECK(vl == e->vlen && (vl == 0 || memcmp(val, e->val, vl) == 0) && fl == e->flags,
		      "leaf item %u: value differs (vlen %zu, model %u)", j, vl, e->vlen);
	}
	RC(rfs_tree_edit_get(ed, n, &k0, &k0l, &val, &vl, &fl), -ENOENT);
	size_t mi = tu_map_find(v->m, key, kl, &found);
	EQ_U64(exact, found);
	CHECK(mi >= f0 && mi - f0 == idx, "key at model index %zu, leaf from %zu, idx %u", mi, f0, idx);
}

/* Move the edit (or open it, when closed) to key and check where it went. */
static void mv_go(struct mv *v, const uint8_t *key, size_t kl, unsigned *idx, bool *exact)
{
	struct rfs_tree_edit *ed = &v->ed;
	if (!v->open) {
		OK(rfs_tree_edit_open(v->c->pool, v->t, key, kl, ed, idx, exact));
		v->open = true;
	} else {
		int h = ed->p.h;
		uint64_t lb = ed->p.b[h - 1]->blocknr, pb = h > 1 ? ed->p.b[h - 2]->blocknr : 0;
		OK(rfs_tree_edit_move(ed, key, kl, idx, exact));
		/* Where it went, to show every kind of move was made. */
		if (ed->p.b[ed->p.h - 1]->blocknr == lb)
			v->same_leaf++;
		else if (ed->p.h > 1 && ed->p.b[ed->p.h - 2]->blocknr == pb)
			v->same_parent++;
		else
			v->other_parent++;
		v->moves++;
	}
	mv_check(v, key, kl, *idx, *exact);
}

static void mv_close(struct mv *v)
{
	if (v->open)
		rfs_tree_edit_close(&v->ed);
	v->open = false;
}

/* The whole tree against the model, then a commit and rfs_check. */
static void mv_commit(struct mv *v)
{
	mv_close(v);
	CHECK_TREE(v->c->pool, v->t, v->m);
	store(v->c, v->id, v->t);
	commit_clean(v->c);
}

/* Keys (first + i + 1) * MV_SPAN for i < nk with values of 60-160 bytes,
 * put in random order (nodes part full, as in use). */
static void mv_build(tu_pool *c, rfs_tree *t, tu_map *m, tu_rng *r, uint64_t first, uint64_t nk)
{
	uint64_t *perm = malloc(nk * sizeof(*perm));
	uint8_t k[8], val[RFS_VAL_MAX];
	assert_non_null(perm);
	for (uint64_t i = 0; i < nk; i++)
		perm[i] = (first + i + 1) * MV_SPAN;
	for (uint64_t i = nk; i > 1; i--) {
		uint64_t j = tu_below(r, i), x = perm[i - 1];
		perm[i - 1] = perm[j];
		perm[j] = x;
	}
	for (uint64_t i = 0; i < nk; i++) {
		key64(k, perm[i]);
		size_t vl = tu_range(r, 60, 160);
		tu_fill(r, val, vl);
		put_both(c, t, m, k, 8, val, vl, 0, RFS_PUT_INSERT);
	}
	free(perm);
}

/* Probes around every model key, and below the first and past the last. */
static struct mv_probe *mv_probes(const tu_map *m, size_t *np)
{
	size_t n = 0;
	struct mv_probe *p = malloc((4 * m->n + 2) * sizeof(*p));
	assert_non_null(p);
	p[n++] = (struct mv_probe){{0}, 1};
	p[n++] = (struct mv_probe){{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 9};
	for (size_t i = 0; i < m->n; i++)
		for (unsigned kind = 0; kind < 4; kind++)
			p[n++] = mv_probe_of(key_u64(m->v[i].key), kind);
	qsort(p, n, sizeof(*p), mv_probe_cmp);
	*np = n;
	return p;
}

/* Moves only: through every probe ascending, then descending, then
 * nrand random ones (boundary probes and random keys of 1-9 bytes). */
static void mv_sweep(struct mv *v, tu_rng *r, unsigned nrand)
{
	size_t np;
	struct mv_probe *p = mv_probes(v->m, &np);
	unsigned idx;
	bool exact;
	/* Opened in the middle: the first moves go back up the path. */
	mv_go(v, p[np / 2].k, p[np / 2].kl, &idx, &exact);
	for (size_t i = 0; i < np; i++)
		mv_go(v, p[i].k, p[i].kl, &idx, &exact);
	for (size_t i = np; i-- > 0;)
		mv_go(v, p[i].k, p[i].kl, &idx, &exact);
	for (unsigned i = 0; i < nrand; i++) {
		struct mv_probe q;
		if (tu_below(r, 3)) {
			q = p[tu_below(r, np)];
		} else {
			q.kl = (uint8_t)tu_range(r, 1, 9);
			memset(q.k, 0, sizeof q.k);
			key64(q.k, tu_below(r, (v->m->n + 2) * MV_SPAN));
			if (q.kl == 9)
				q.k[8] = (uint8_t)tu_below(r, 256);
		}
		mv_go(v, q.k, q.kl, &idx, &exact);
	}
	free(p);
	mv_close(v);
}

/*
 * One splice through the edit standing at idx: replace an item's value
 * (same key), split an item into 2-3 items with new keys up to the next
 * one (an extent record split by a write in its middle), or merge two
 * items into one.  Big values make leaves split.  The model follows.
 */
static void mv_splice(struct mv *v, tu_rng *r, unsigned idx)
{
	struct rfs_tree_edit *ed = &v->ed;
	unsigned n = rfs_tree_edit_n(ed);
	unsigned i = idx < n ? idx : n - 1;
	if (i > 0 && tu_below(r, 3) == 0)
		i--;
	uint64_t u0 = edit_key(ed, i), next;
	if (i + 1 < n) {
		next = edit_key(ed, i + 1);
	} else {
		uint8_t k[8];
		bool f;
		key64(k, u0);
		size_t mi = tu_map_find(v->m, k, 8, &f);
		next = mi + 1 < v->m->n ? key_u64(v->m->v[mi + 1].key) : u0 + MV_SPAN;
		/* Now and then pieces up to the key after the next: past
		 * this leaf's end when the next key starts the next leaf. */
		if (mi + 2 < v->m->n && tu_below(r, 3) == 0)
			next = key_u64(v->m->v[mi + 2].key);
	}
	unsigned op = (unsigned)tu_below(r, 10);
	unsigned nrm = 1, nins = 1;
	uint64_t nk[3] = {u0, 0, 0};
	if (op >= 4 && op < 8 && next - u0 >= 3) {
		/* Split: the first piece keeps the key. */
		nins = 2 + (unsigned)tu_below(r, 2);
		nk[1] = u0 + 1 + tu_below(r, next - u0 - 2);
		if (nins == 3)
			nk[2] = nk[1] + 1 + tu_below(r, next - nk[1] - 1);
	} else if (op == 8 && i + 1 < n) {
		nrm = 2;
	} else if (op == 9) {
		return; /* just move on */
	}
	uint64_t gone[2] = {u0, nrm == 2 ? edit_key(ed, i + 1) : 0};
	uint8_t kb[3][8], vb[3][RFS_VAL_MAX];
	struct rfs_tree_item it[3];
	for (unsigned j = 0; j < nins; j++) {
		key64(kb[j], nk[j]);
		/* Pieces of a split stay small enough that a split of the
		 * leaf always holds them (<= half a node together). */
		size_t vl = nins > 1 ? tu_range(r, 40, 600)
			: tu_below(r, 4) ? tu_range(r, 0, 300) : tu_range(r, 400, RFS_VAL_MAX);
		tu_fill(r, vb[j], vl);
		it[j] = (struct rfs_tree_item){kb[j], 8, vb[j], vl, 0};
	}
	int rc = rfs_tree_edit_splice(ed, i, nrm, it, nins, 0);
	if (rc == 0) {
		/* Only a new key past the last item can lie in the next leaf
		 * (past its separator): the puts route it. */
		CHECK(nins > 1 && i + nrm == n, "splice of item %u/%u into %u said 0", i, n, nins);
		mv_close(v);
		for (unsigned j = 0; j < nins; j++)
			put_both(v->c, v->t, v->m, kb[j], 8, vb[j], it[j].vlen, 0, RFS_PUT_UPSERT);
		v->by_puts++;
		return;
	}
	RC(rc, 1);
	if (ed->reshaped)
		v->leaf_splits++;
	for (unsigned j = 0; j < nrm; j++) {
		uint8_t k[8];
		key64(k, gone[j]);
		CHECK(tu_map_del(v->m, k, 8), "removed key %llu not in the model",
		      (unsigned long long)gone[j]);
	}
	for (unsigned j = 0; j < nins; j++)
		tu_map_put(v->m, kb[j], 8, vb[j], it[j].vlen, 0);
	if (nrm == 2)
		v->merged++;
	else if (nins > 1)
		v->split_recs++;
	else
		v->replaced++;
}

/* nops moves to keys below lim, each checked, with a splice after most;
 * a commit every commit_every (the edit closed before it: an edit lives in
 * one transaction), and one at the end. */
static void mv_edit_run(struct mv *v, tu_rng *r, unsigned nops, unsigned commit_every, uint64_t lim)
{
	size_t at = 0;
	for (unsigned op = 0; op < nops; op++) {
		uint8_t lk[8];
		bool f;
		key64(lk, lim);
		size_t nl = tu_map_find(v->m, lk, 8, &f);
		/* Mostly short steps either way (a batch's writes in file
		 * order, say), sometimes a jump anywhere. */
		if (tu_below(r, 4))
			at = at + tu_below(r, 7) + nl - 3;
		else
			at = tu_below(r, nl);
		at %= nl;
		struct mv_probe q = mv_probe_of(key_u64(v->m->v[at].key), (unsigned)tu_below(r, 4));
		unsigned idx;
		bool exact;
		mv_go(v, q.k, q.kl, &idx, &exact);
		mv_splice(v, r, idx);
		if (op % commit_every == commit_every - 1)
			mv_commit(v);
	}
	mv_commit(v);
}

static void test_edit_move(void **state)
{
	tu_pool *c = *state;
	tu_rng r = {4711};
	rfs_tree t = {0, RFS_OWNER_USER};
	tu_map m = {0};
	struct mv v = {.c = c, .t = &t, .m = &m, .id = 1};

	/* Moves alone at heights 1, 2 and 3 (a committed tree: the edit
	 * shadows as it goes); they change no item. */
	const uint64_t sizes[] = {12, 600, 8000};
	uint64_t have = 0;
	for (int s = 0; s < 3; s++) {
		mv_build(c, &t, &m, &r, have, sizes[s] - have);
		have = sizes[s];
		int h = 0;
		OK(rfs_tree_height(c->pool, &t, &h));
		EQ_U64(h, s + 1);
		store(c, 1, &t);
		commit_clean(c);
		mv_sweep(&v, &r, 3000);
		mv_commit(&v);
	}
	print_message("moves alone: %u (%u in the leaf, %u to a sibling, %u further)\n", v.moves,
		      v.same_leaf, v.same_parent, v.other_parent);
	CHECK(v.same_leaf > 1000 && v.same_parent > 100 && v.other_parent > 10,
	      "moves: %u in the leaf, %u to a sibling, %u further", v.same_leaf, v.same_parent,
	      v.other_parent);

	/* Splices between moves; some split the leaf (the next move starts
	 * from the root), some pieces go to the next leaf (puts). */
	v = (struct mv){.c = c, .t = &t, .m = &m, .id = 1};
	mv_edit_run(&v, &r, 5000, 1000, UINT64_MAX);
	print_message("moves: %u (%u in the leaf, %u to a sibling, %u further); splices: %u "
		      "replaced, %u split, %u merged, %u leaf splits, %u by puts\n",
		      v.moves, v.same_leaf, v.same_parent, v.other_parent, v.replaced,
		      v.split_recs, v.merged, v.leaf_splits, v.by_puts);
	CHECK(v.replaced > 1000 && v.split_recs > 1000 && v.merged > 200 && v.leaf_splits > 50 &&
	      v.by_puts > 0 && v.other_parent > 100,
	      "replaced %u, split %u, merged %u, leaf splits %u, by puts %u, far moves %u",
	      v.replaced, v.split_recs, v.merged, v.leaf_splits, v.by_puts, v.other_parent);
	int h = 0;
	OK(rfs_tree_height(c->pool, &t, &h));
	CHECK(h >= 3, "height %d", h);
	tu_reopen(c, 0);
	t = load(c, 1);
	CHECK_TREE(c->pool, &t, &m);

	/* A bad key: -EINVAL, nothing changed, and the edit closed (as the
	 * header says of any failure: no node stays pinned); a move after
	 * it still lands right, from the root. */
	uint8_t k[8];
	unsigned idx = 77;
	bool exact = true;
	key64(k, 5000 * MV_SPAN);
	mv_go(&v, k, 8, &idx, &exact);
	RC(rfs_tree_edit_move(&v.ed, k, 0, &idx, &exact), -EINVAL);
	EQ_U64(v.ed.p.h, 0);
	v.open = false;
	mv_go(&v, k, 8, &idx, &exact);
	RC(rfs_tree_edit_move(&v.ed, k, RFS_KEY_MAX + 1, &idx, &exact), -EINVAL);
	EQ_U64(v.ed.p.h, 0);
	v.open = false;
	key64(k, 7000 * MV_SPAN + 1);
	mv_go(&v, k, 8, &idx, &exact);
	CHECK(!exact, "key %u found", 7000 * MV_SPAN + 1);
	mv_commit(&v);
	tu_map_clear(&m);
}

static int diff_count(void *arg, const struct rfs_tree_diff_item *d)
{
	(void)d;
	(*(unsigned *)arg)++;
	return 0;
}

/*
 * Moves and splices on a clone, whose nodes the source shares until the
 * edit shadows them: the source keeps its items, the clone has the
 * changes, the leaves the edit never reached stay shared, and dropping
 * both gives every block back.
 */
static void test_edit_move_clone(void **state)
{
	tu_pool *c = *state;
	tu_rng r = {8128};
	rfs_tree t = {0, RFS_OWNER_USER}, t2 = {0, 0};
	tu_map m = {0}, m2 = {0};
	const uint64_t NK = 6000;

	tu_commit(c);
	uint64_t u0 = used(c);
	mv_build(c, &t, &m, &r, 0, NK);
	int h = 0;
	OK(rfs_tree_height(c->pool, &t, &h));
	CHECK(h >= 3, "height %d", h);
	store(c, 1, &t);
	commit_clean(c);
	OK(rfs_tree_clone(c->pool, &t, &t2));
	store(c, 2, &t2);
	commit_clean(c);
	tu_map_copy(&m2, &m);
	uint64_t root1 = t.root;

	/* Edit the clone's lower half only. */
	struct mv v = {.c = c, .t = &t2, .m = &m2, .id = 2};
	mv_edit_run(&v, &r, 3000, 700, NK / 2 * MV_SPAN);
	CHECK(v.replaced > 500 && v.split_recs > 500 && v.leaf_splits > 20,
	      "replaced %u, split %u, leaf splits %u", v.replaced, v.split_recs, v.leaf_splits);

	t = load(c, 1);
	EQ_U64(t.root, root1);
	CHECK_TREE(c->pool, &t, &m);
	CHECK_TREE(c->pool, &t2, &m2);
	/* The trees differ in exactly the keys the models do. */
	unsigned want = 0, got = 0;
	for (size_t i = 0, j = 0; i < m.n || j < m2.n;) {
		int cmp = i == m.n ? 1 : j == m2.n ? -1
			: tu_keycmp(m.v[i].key, m.v[i].klen, m2.v[j].key, m2.v[j].klen);
		if (cmp != 0) {
			want++;
			if (cmp < 0)
				i++;
			else
				j++;
			continue;
		}
		if (m.v[i].vlen != m2.v[j].vlen || memcmp(m.v[i].val, m2.v[j].val, m.v[i].vlen))
			want++;
		i++;
		j++;
	}
	OK(rfs_tree_diff(c->pool, &t, &t2, diff_count, &got));
	CHECK(want > 1000, "only %u keys differ", want);
	EQ_U64(got, want);
	/* The first leaf was edited, the last never reached: shared. */
	uint8_t k[8];
	uint64_t l1, l2;
	bool s1, s2;
	key64(k, MV_SPAN);
	OK(rfs_tree_leaf(c->pool, &t, k, 8, &l1, &s1));
	OK(rfs_tree_leaf(c->pool, &t2, k, 8, &l2, &s2));
	CHECK(l1 != l2 && !s2, "first leaf %llu / %llu, shared %d", (unsigned long long)l1,
	      (unsigned long long)l2, s2);
	key64(k, NK * MV_SPAN);
	OK(rfs_tree_leaf(c->pool, &t, k, 8, &l1, &s1));
	OK(rfs_tree_leaf(c->pool, &t2, k, 8, &l2, &s2));
	CHECK(l1 == l2 && s1 && s2, "last leaf %llu / %llu, shared %d %d", (unsigned long long)l1,
	      (unsigned long long)l2, s1, s2);

	/* Without the clone the source is whole; without both, nothing left. */
	OK(rfs_catalog_del(c->pool, 2));
	commit_clean(c);
	t = load(c, 1);
	CHECK_TREE(c->pool, &t, &m);
	drop_to(c, 1, 0, u0);
	tu_map_clear(&m);
	tu_map_clear(&m2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_empty, tu_setup_open, tu_teardown),
		cmocka_unit_test_setup_teardown(test_failed_copy_counts, tu_setup_open, tu_teardown),
		cmocka_unit_test_setup_teardown(test_sequential, tu_setup_open, tu_teardown),
		cmocka_unit_test_setup_teardown(test_ascending_fill, tu_setup_open, tu_teardown),
		cmocka_unit_test_setup_teardown(test_append_split, tu_setup_open, tu_teardown),
		cmocka_unit_test_setup_teardown(test_random_fill, tu_setup_open, tu_teardown),
		cmocka_unit_test_setup_teardown(test_rightmost_split, tu_setup_open, tu_teardown),
		cmocka_unit_test_setup_teardown(test_random_varsize, tu_setup_open, tu_teardown),
		cmocka_unit_test_setup_teardown(test_put_modes_and_limits, tu_setup_open, tu_teardown),
		cmocka_unit_test_setup_teardown(test_cursor, tu_setup_open, tu_teardown),
		cmocka_unit_test_setup_teardown(test_clone_independence, tu_setup_open, tu_teardown),
		cmocka_unit_test_setup_teardown(test_replace_in_place, tu_setup_open, tu_teardown),
		cmocka_unit_test_setup_teardown(test_drop_frees_unshared, tu_setup_open, tu_teardown),
		cmocka_unit_test_setup_teardown(test_nested_trees, tu_setup_open, tu_teardown),
		cmocka_unit_test_setup_teardown(test_extent_refs, tu_setup_open, tu_teardown),
		cmocka_unit_test_setup_teardown(test_extent_list_refs, tu_setup_open, tu_teardown),
		cmocka_unit_test_setup_teardown(test_refcount_ranges, tu_setup_open, tu_teardown),
		cmocka_unit_test_setup_teardown(test_catalog, tu_setup_open, tu_teardown),
		cmocka_unit_test_setup_teardown(test_check_detects, tu_setup_open, tu_teardown),
		cmocka_unit_test_setup_teardown(test_concurrent_readers, tu_setup_open, tu_teardown),
		cmocka_unit_test_setup_teardown(test_readonly_after_failed_commit, tu_setup_open, tu_teardown),
		cmocka_unit_test_setup_teardown(test_enospc_drop, tu_setup_open, tu_teardown),
		cmocka_unit_test_setup_teardown(test_enospc_delete_items, tu_setup_open, tu_teardown),
		cmocka_unit_test_setup_teardown(test_edit_splice, tu_setup_open, tu_teardown),
		cmocka_unit_test_setup_teardown(test_edit_splice_refs, tu_setup_open, tu_teardown),
		cmocka_unit_test_setup_teardown(test_edit_move, tu_setup_open, tu_teardown),
		cmocka_unit_test_setup_teardown(test_edit_move_clone, tu_setup_open, tu_teardown),
	};
	return tu_exit(cmocka_run_group_tests(tests, NULL, NULL));
}
