/*
 * Unit tests of rfs_tree_walk (src/tree/walk.c) and rfs_ref_get_run.
 *
 *  - a tree of height 3 and a clone of it changed in places (so some
 *    nodes are shared, count 2, and some are not): a walk in one call
 *    enters every node once with its refcount and delivers every item
 *    once in key order;
 *  - the same walk paused at random (after an item, at an item, before a
 *    node) and resumed, many times over: together the calls deliver the
 *    same items in the same order, enter each node once (other entries
 *    are `resumed` ones, of nodes entered before), and leave each node
 *    once;
 *  - skipping a node leaves out exactly the items below it;
 *  - the tree changed between the calls of a paused walk: the walk ends,
 *    in key order, with every key that was in the tree all along;
 *  - rfs_ref_get_run against rfs_ref_get block by block.
 *  RFS_SEED=<n> replays one seed.
 */
#include "../common/testutil.h"

static uint64_t seed_of(void)
{
	const char *s = getenv("RFS_SEED");
	return s && *s ? strtoull(s, NULL, 0) : 20240611;
}

static size_t mkkey(uint8_t *k, uint64_t i)
{
	/* 8-byte big-endian number plus a tail of varying length, so that
	 * separators are of different lengths. */
	tu_be64(k, i * 7);
	size_t tail = (size_t)(i % 13);
	memset(k + 8, 'a' + (int)(i % 26), tail);
	return 8 + tail;
}

static void put_n(tu_pool *c, rfs_tree *t, uint64_t from, uint64_t to, uint32_t tag)
{
	uint8_t k[64], v[48];
	for (uint64_t i = from; i < to; i++) {
		size_t kl = mkkey(k, i);
		memset(v, (int)(tag + i), sizeof(v));
		OK(rfs_tree_put(c->pool, t, k, kl, v, sizeof(v), 0, RFS_PUT_UPSERT));
	}
}

/* ---- what a walk saw ------------------------------------------------------ */

#define MAXN 4096

typedef struct {
	rfs_pool *pool;
	tu_rng rng;
	unsigned pause_pct; /* chance of a pause at each callback */
	uint64_t skip_block; /* enter answers SKIP for this node */
	/* items delivered (keys), in order */
	uint8_t (*keys)[64];
	size_t *klens, nkeys, capkeys;
	bool redeliver; /* the last callback paused AT an item */
	bool lax;       /* the tree changes between calls: that item may be gone */
	/* nodes */
	uint64_t entered[MAXN], left[MAXN];
	size_t nentered, nleft;
	uint64_t resumed_bad; /* a resumed node not entered before */
	uint64_t refcount_bad;
	uint64_t pauses;
} seen_t;

static bool in(const uint64_t *v, size_t n, uint64_t x)
{
	for (size_t i = 0; i < n; i++)
		if (v[i] == x)
			return true;
	return false;
}

static int on_enter(void *arg, const struct rfs_walk_node *n)
{
	seen_t *s = arg;
	uint64_t rc;
	OK(rfs_ref_get(s->pool, n->blocknr, &rc));
	if (rc != n->refcount)
		s->refcount_bad++;
	if (n->resumed) {
		if (!in(s->entered, s->nentered, n->blocknr))
			s->resumed_bad++;
		return 0;
	}
	if (n->can_pause && s->pause_pct && tu_below(&s->rng, 100) < s->pause_pct) {
		s->pauses++;
		return RFS_WALK_PAUSE;
	}
	CHECK(s->nentered < MAXN, "too many nodes");
	s->entered[s->nentered++] = n->blocknr;
	return n->blocknr == s->skip_block ? RFS_WALK_SKIP : 0;
}

static int on_item(void *arg, const void *key, size_t klen, const void *val, size_t vlen,
		   uint8_t flags)
{
	seen_t *s = arg;
	(void)val;
	(void)vlen;
	(void)flags;
	bool again = s->redeliver;
	s->redeliver = false;
	if (again && s->lax && !(s->klens[s->nkeys - 1] == klen &&
				 !memcmp(s->keys[s->nkeys - 1], key, klen)))
		again = false; /* deleted meanwhile */
	if (again) {
		/* The item paused at comes first, and only then. */
		CHECK(s->nkeys && s->klens[s->nkeys - 1] == klen &&
			      !memcmp(s->keys[s->nkeys - 1], key, klen),
		      "the item paused at was not delivered again first");
	} else {
		if (s->nkeys == s->capkeys) {
			s->capkeys = s->capkeys ? s->capkeys * 2 : 1024;
			s->keys = realloc(s->keys, s->capkeys * sizeof(*s->keys));
			s->klens = realloc(s->klens, s->capkeys * sizeof(*s->klens));
			assert_non_null(s->keys);
			assert_non_null(s->klens);
		}
		memcpy(s->keys[s->nkeys], key, klen);
		s->klens[s->nkeys++] = klen;
	}
	if (s->pause_pct && tu_below(&s->rng, 100) < s->pause_pct) {
		s->pauses++;
		if (tu_below(&s->rng, 2)) {
			s->redeliver = true;
			return RFS_WALK_PAUSE_AT;
		}
		return RFS_WALK_PAUSE;
	}
	return 0;
}

static void on_leave(void *arg, const struct rfs_walk_node *n)
{
	seen_t *s = arg;
	CHECK(s->nleft < MAXN, "too many leaves");
	s->left[s->nleft++] = n->blocknr;
}

static const struct rfs_walk_ops g_ops = {on_enter, on_item, on_leave};

static void seen_free(seen_t *s)
{
	free(s->keys);
	free(s->klens);
}

/* Walk t to its end, pausing as s says; returns the number of calls. */
static unsigned walk_all(rfs_pool *pool, const rfs_tree *t, seen_t *s)
{
	struct rfs_walk_pos pos = {.mode = RFS_WALK_START};
	unsigned calls = 0;
	int ret;
	do {
		ret = rfs_tree_walk(pool, t, &pos, &g_ops, s);
		CHECK(ret >= 0, "rfs_tree_walk = %d", ret);
		calls++;
		CHECK(calls < 1000000, "the walk does not end");
	} while (ret == 1);
	return calls;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static bool same_set(uint64_t *a, size_t na, uint64_t *b, size_t nb)
{
	if (na != nb)
		return false;
	qsort(a, na, 8, cmp_u64);
	qsort(b, nb, 8, cmp_u64);
	return !memcmp(a, b, na * 8);
}

/* A tree of height 3 and a clone of it with changes: both have shared
 * and unshared nodes. */
static void make_trees(tu_pool *c, rfs_tree *a, rfs_tree *b)
{
	*a = (rfs_tree){0, RFS_OWNER_USER};
	/* Descending: half-full leaves (ascending inserts pack them full,
	 * and the tree would be one level lower). */
	for (uint64_t i = 6000; i-- > 0;)
		put_n(c, a, i, i + 1, 1);
	tu_commit(c);
	OK(rfs_tree_clone(c->pool, a, b));
	put_n(c, b, 100, 140, 9);   /* changes in a few leaves */
	put_n(c, b, 3000, 3010, 9);
	put_n(c, b, 6000, 6100, 9); /* growth at the end */
	tu_commit(c);
	int h;
	OK(rfs_tree_height(c->pool, b, &h));
	CHECK(h >= 3, "height %d", h);
}

static void test_whole(void **state)
{
	tu_pool *c = *state;
	rfs_tree a, b;
	make_trees(c, &a, &b);
	seen_t s = {.pool = c->pool};
	EQ_U64(walk_all(c->pool, &b, &s), 1);
	EQ_U64(s.nkeys, 6100);
	uint8_t k[64];
	size_t shared = 0;
	for (uint64_t i = 0; i < 6100; i++) {
		size_t kl = mkkey(k, i);
		CHECK(s.klens[i] == kl && !memcmp(s.keys[i], k, kl), "item %" PRIu64, i);
	}
	EQ_U64(s.refcount_bad, 0);
	EQ_U64(s.nleft, s.nentered);
	CHECK(same_set(s.entered, s.nentered, s.left, s.nleft), "entered != left");
	for (size_t i = 0; i < s.nentered; i++) {
		uint64_t rc;
		OK(rfs_ref_get(c->pool, s.entered[i], &rc));
		shared += rc >= 2;
		for (size_t j = 0; j < i; j++)
			CHECK(s.entered[j] != s.entered[i], "node entered twice");
	}
	CHECK(shared > 0 && shared < s.nentered, "%zu shared of %zu", shared, s.nentered);
	seen_free(&s);
}

static void test_paused(void **state)
{
	tu_pool *c = *state;
	rfs_tree a, b;
	make_trees(c, &a, &b);
	seen_t full = {.pool = c->pool};
	walk_all(c->pool, &b, &full);
	uint64_t seed = seed_of();
	for (unsigned round = 0; round < 40; round++) {
		seen_t s = {.pool = c->pool, .rng = {seed + round}};
		s.pause_pct = round < 20 ? 1 + round : 50;
		unsigned calls = walk_all(c->pool, &b, &s);
		CHECK(calls > 1, "no pause (round %u)", round);
		EQ_U64(s.nkeys, full.nkeys);
		for (size_t i = 0; i < s.nkeys; i++)
			CHECK(s.klens[i] == full.klens[i] &&
				      !memcmp(s.keys[i], full.keys[i], s.klens[i]),
			      "seed %" PRIu64 " round %u: item %zu differs", seed, round, i);
		EQ_U64(s.resumed_bad, 0);
		EQ_U64(s.refcount_bad, 0);
		uint64_t e1[MAXN], e2[MAXN], l1[MAXN];
		memcpy(e1, s.entered, s.nentered * 8);
		memcpy(e2, full.entered, full.nentered * 8);
		memcpy(l1, s.left, s.nleft * 8);
		CHECK(same_set(e1, s.nentered, e2, full.nentered),
		      "round %u: %zu nodes entered, %zu in one call", round, s.nentered, full.nentered);
		CHECK(same_set(l1, s.nleft, e2, full.nentered), "round %u: %zu nodes left", round,
		      s.nleft);
		seen_free(&s);
	}
	seen_free(&full);
}

static void test_skip(void **state)
{
	tu_pool *c = *state;
	rfs_tree a, b;
	make_trees(c, &a, &b);
	seen_t full = {.pool = c->pool};
	walk_all(c->pool, &b, &full);
	/* Skip the root's first child (the first node entered after the
	 * root): the items below it, the smallest keys, go. */
	uint64_t internal = full.entered[1];
	seen_t s = {.pool = c->pool, .skip_block = internal};
	walk_all(c->pool, &b, &s);
	CHECK(s.nkeys > 0 && s.nkeys < full.nkeys, "%zu items after a skip", s.nkeys);
	/* The items left are a suffix of the full walk's: the first child
	 * holds the smallest keys. */
	size_t off = full.nkeys - s.nkeys;
	for (size_t i = 0; i < s.nkeys; i++)
		CHECK(s.klens[i] == full.klens[off + i] &&
			      !memcmp(s.keys[i], full.keys[off + i], s.klens[i]),
		      "item %zu", i);
	seen_free(&s);
	seen_free(&full);
}

/* Changes between the calls: the walk ends, in key order, and every key
 * that stayed in the tree all along is delivered. */
static void test_changes_between(void **state)
{
	tu_pool *c = *state;
	rfs_tree a, b;
	make_trees(c, &a, &b);
	uint64_t seed = seed_of();
	for (unsigned round = 0; round < 10; round++) {
		seen_t s = {.pool = c->pool, .rng = {seed * 31 + round}, .pause_pct = 5,
			    .lax = true};
		struct rfs_walk_pos pos = {.mode = RFS_WALK_START};
		tu_rng r = {seed + 1000 + round};
		bool stays[6100];
		for (int i = 0; i < 6100; i++)
			stays[i] = true;
		int ret;
		unsigned calls = 0;
		do {
			ret = rfs_tree_walk(c->pool, &b, &pos, &g_ops, &s);
			CHECK(ret >= 0, "rfs_tree_walk = %d", ret);
			/* Delete and re-insert keys (splits, merges, new roots). */
			for (int k = 0; k < 40 && ret == 1; k++) {
				uint64_t i = tu_below(&r, 6100);
				uint8_t key[64];
				size_t kl = mkkey(key, i);
				if (stays[i] || tu_below(&r, 2)) {
					int d = rfs_tree_delete(c->pool, &b, key, kl, 0);
					CHECK(d == 0 || d == -ENOENT, "delete = %d", d);
				} else {
					put_n(c, &b, i, i + 1, 5);
				}
				stays[i] = false;
			}
			if (ret == 1 && tu_below(&r, 3) == 0)
				tu_commit(c);
			calls++;
		} while (ret == 1 && calls < 100000);
		CHECK(ret == 0, "the walk did not end");
		for (size_t i = 1; i < s.nkeys; i++)
			CHECK(tu_keycmp(s.keys[i - 1], s.klens[i - 1], s.keys[i], s.klens[i]) < 0,
			      "round %u: items out of order at %zu", round, i);
		uint8_t key[64];
		for (uint64_t i = 0, j = 0; i < 6100; i++) {
			if (!stays[i])
				continue;
			size_t kl = mkkey(key, i);
			while (j < s.nkeys && tu_keycmp(s.keys[j], s.klens[j], key, kl) < 0)
				j++;
			CHECK(j < s.nkeys && s.klens[j] == kl && !memcmp(s.keys[j], key, kl),
			      "round %u: key %" PRIu64 " (never changed) not delivered", round, i);
		}
		seen_free(&s);
		/* Put the tree back for the next round. */
		put_n(c, &b, 0, 6100, 9);
		tu_commit(c);
	}
}

static void test_ref_run(void **state)
{
	tu_pool *c = *state;
	uint64_t s = 0, got = 0;
	OK(rfs_alloc_data(c->pool, 64, &s, &got));
	CHECK(got == 64, "got %" PRIu64, got);
	tu_rng r = {seed_of()};
	for (int i = 0; i < 20; i++) {
		uint64_t a = tu_below(&r, 60), n = tu_range(&r, 1, 64 - a);
		OK(rfs_ref_inc(c->pool, s + a, n));
	}
	for (uint64_t i = 0; i < 64; i++) {
		for (uint64_t max = 1; max <= 64 - i; max += 7) {
			uint64_t cnt, run;
			OK(rfs_ref_get_run(c->pool, s + i, max, &cnt, &run));
			CHECK(run >= 1 && run <= max, "run %" PRIu64, run);
			for (uint64_t k = 0; k < run; k++) {
				uint64_t one;
				OK(rfs_ref_get(c->pool, s + i + k, &one));
				CHECK(one == cnt, "block %" PRIu64 ": %" PRIu64 " != %" PRIu64, i + k,
				      one, cnt);
			}
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_whole, tu_setup_open, tu_teardown),
		cmocka_unit_test_setup_teardown(test_paused, tu_setup_open, tu_teardown),
		cmocka_unit_test_setup_teardown(test_skip, tu_setup_open, tu_teardown),
		cmocka_unit_test_setup_teardown(test_changes_between, tu_setup_open, tu_teardown),
		cmocka_unit_test_setup_teardown(test_ref_run, tu_setup_open, tu_teardown),
	};
	return tu_exit(cmocka_run_group_tests(tests, NULL, NULL));
}
