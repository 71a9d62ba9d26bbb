/*
 * Unit tests of rfs_tree_diff (src/tree/diff.c).
 *
 *  - random trees against a model, in the style of the tree model test:
 *    a random tree, then either a clone of it or a tree of the same
 *    content built in another order (another history: different node
 *    boundaries), random inserts / replaces (some with the same value) /
 *    deletes on each side with commits in between; the diff must be
 *    exactly the models' difference, in key order, both ways round;
 *    RFS_SEED=<n> replays one seed, RFS_ROUNDS=<n> sets how many;
 *  - the cost: two clones of a big tree that differ in k keys are diffed
 *    reading O(k * height) nodes (counted with the pool's block_reads),
 *    identical trees read nothing, and trees of different histories are
 *    compared correctly by reading them whole;
 *  - stopping early and errors from the callback.
 */
#include "../common/testutil.h"

/* ---- what the diff reported ---------------------------------------------- */

typedef struct {
	tu_map a, b; /* one-sided or changed items, a's and b's value */
	size_t n;    /* callbacks */
	bool ordered;
	uint8_t last[RFS_KEY_MAX];
	size_t lastlen;
	long stop_after; /* > 0: return 1 after that many callbacks */
	int fail_with;   /* < 0: return it from the first callback */
} got_t;

static int collect(void *arg, const struct rfs_tree_diff_item *d)
{
	got_t *g = arg;
	if (g->fail_with)
		return g->fail_with;
	if (g->n && tu_keycmp(g->last, g->lastlen, d->key, d->klen) >= 0)
		g->ordered = false;
	memcpy(g->last, d->key, d->klen);
	g->lastlen = d->klen;
	g->n++;
	/* a flags byte of 0xff marks "absent on this side" in the maps */
	if (d->aval)
		tu_map_put(&g->a, d->key, d->klen, d->aval, d->avlen, d->aflags);
	else
		tu_map_put(&g->a, d->key, d->klen, "", 0, 0xff);
	if (d->bval)
		tu_map_put(&g->b, d->key, d->klen, d->bval, d->bvlen, d->bflags);
	else
		tu_map_put(&g->b, d->key, d->klen, "", 0, 0xff);
	if (g->stop_after && (long)g->n >= g->stop_after)
		return 1;
	return 0;
}

static void got_free(got_t *g)
{
	tu_map_clear(&g->a);
	tu_map_clear(&g->b);
}

static bool same_item(const tu_item *x, const tu_item *y)
{
	return x->flags == y->flags && x->vlen == y->vlen &&
	       (x->vlen == 0 || memcmp(x->val, y->val, x->vlen) == 0);
}

/* The model's answer: every key of ma or mb whose item differs. */
static void model_diff(const tu_map *ma, const tu_map *mb, got_t *want)
{
	size_t i = 0, j = 0;
	memset(want, 0, sizeof(*want));
	while (i < ma->n || j < mb->n) {
		int c = i == ma->n ? 1 : j == mb->n ? -1
			: tu_keycmp(ma->v[i].key, ma->v[i].klen, mb->v[j].key, mb->v[j].klen);
		if (c < 0) {
			tu_map_put(&want->a, ma->v[i].key, ma->v[i].klen, ma->v[i].val,
				   ma->v[i].vlen, ma->v[i].flags);
			tu_map_put(&want->b, ma->v[i].key, ma->v[i].klen, "", 0, 0xff);
			i++;
		} else if (c > 0) {
			tu_map_put(&want->a, mb->v[j].key, mb->v[j].klen, "", 0, 0xff);
			tu_map_put(&want->b, mb->v[j].key, mb->v[j].klen, mb->v[j].val,
				   mb->v[j].vlen, mb->v[j].flags);
			j++;
		} else {
			if (!same_item(&ma->v[i], &mb->v[j])) {
				tu_map_put(&want->a, ma->v[i].key, ma->v[i].klen, ma->v[i].val,
					   ma->v[i].vlen, ma->v[i].flags);
				tu_map_put(&want->b, mb->v[j].key, mb->v[j].klen, mb->v[j].val,
					   mb->v[j].vlen, mb->v[j].flags);
			}
			i++;
			j++;
		}
	}
	want->n = want->a.n;
}

static const char *maps_differ(const tu_map *x, const tu_map *y)
{
	static char msg[256];
	if (x->n != y->n) {
		snprintf(msg, sizeof msg, "%zu items, expected %zu", x->n, y->n);
		return msg;
	}
	for (size_t i = 0; i < x->n; i++) {
		if (tu_keycmp(x->v[i].key, x->v[i].klen, y->v[i].key, y->v[i].klen) != 0) {
			snprintf(msg, sizeof msg, "item %zu: key differs", i);
			return msg;
		}
		if (!same_item(&x->v[i], &y->v[i])) {
			snprintf(msg, sizeof msg, "item %zu: value differs (flags %u vs %u)", i,
				 x->v[i].flags, y->v[i].flags);
			return msg;
		}
	}
	return NULL;
}

/* Diff a and b and compare with the models, both ways round. */
static void check_diff(tu_pool *c, const rfs_tree *a, const rfs_tree *b, const tu_map *ma,
		       const tu_map *mb)
{
	for (int round = 0; round < 2; round++) {
		const rfs_tree *x = round ? b : a, *y = round ? a : b;
		const tu_map *mx = round ? mb : ma, *my = round ? ma : mb;
		got_t got = {.ordered = true}, want;
		model_diff(mx, my, &want);
		OK(rfs_tree_diff(c->pool, x, y, collect, &got));
		CHECK(got.ordered, "diff not in key order (round %d)", round);
		EQ_U64(got.n, want.n);
		const char *e = maps_differ(&got.a, &want.a);
		CHECK(e == NULL, "a side (round %d): %s", round, e);
		e = maps_differ(&got.b, &want.b);
		CHECK(e == NULL, "b side (round %d): %s", round, e);
		got_free(&got);
		got_free(&want);
	}
}

/* ---- random trees ------------------------------------------------------------ */

static size_t rkey(tu_rng *r, uint64_t space, uint8_t *k)
{
	uint64_t v = tu_below(r, space);
	tu_be64(k, v);
	/* a suffix derived from the number: same number, same key; lengths
	 * vary so that node fanouts vary */
	size_t extra = (size_t)(tu_splitmix(&v) % 4 == 0 ? v % 200 : v % 9);
	tu_rng s = {v};
	tu_fill(&s, k + 8, extra);
	return 8 + extra;
}

static size_t rval(tu_rng *r, uint8_t *v)
{
	uint64_t p = tu_below(r, 100);
	size_t vl = p < 5 ? 0 : p < 80 ? tu_range(r, 1, 40) : p < 97 ? tu_range(r, 41, 300)
							: tu_range(r, 301, RFS_VAL_MAX);
	tu_fill(r, v, vl);
	return vl;
}

static void put_m(tu_pool *c, rfs_tree *t, tu_map *m, const uint8_t *k, size_t kl,
		  const uint8_t *v, size_t vl)
{
	OK(rfs_tree_put(c->pool, t, k, kl, v, vl, 0, RFS_PUT_UPSERT));
	tu_map_put(m, k, kl, v, vl, 0);
}

/* n random changes of t (inserts, replaces, same-value replaces, deletes) */
static void mutate(tu_pool *c, tu_rng *r, rfs_tree *t, tu_map *m, uint64_t space, long n)
{
	static uint8_t k[RFS_KEY_MAX], v[RFS_VAL_MAX];
	for (long i = 0; i < n; i++) {
		uint64_t op = tu_below(r, 10);
		if (op < 3 && m->n) {
			tu_item *e = &m->v[tu_below(r, m->n)];
			size_t kl = e->klen;
			memcpy(k, e->key, kl);
			OK(rfs_tree_delete(c->pool, t, k, kl, 0));
			tu_map_del(m, k, kl);
		} else if (op < 4 && m->n) {
			/* same value again: the path is shadowed, nothing changes */
			tu_item *e = &m->v[tu_below(r, m->n)];
			OK(rfs_tree_put(c->pool, t, e->key, e->klen, e->val, e->vlen, e->flags,
					RFS_PUT_REPLACE));
		} else if (op < 7 && m->n) {
			tu_item *e = &m->v[tu_below(r, m->n)];
			size_t kl = e->klen;
			memcpy(k, e->key, kl);
			size_t vl = rval(r, v);
			put_m(c, t, m, k, kl, v, vl);
		} else {
			size_t kl = rkey(r, space, k);
			size_t vl = rval(r, v);
			put_m(c, t, m, k, kl, v, vl);
		}
	}
}

static void build(tu_pool *c, tu_rng *r, rfs_tree *t, tu_map *m, uint64_t space, long n)
{
	static uint8_t k[RFS_KEY_MAX], v[RFS_VAL_MAX];
	*t = (rfs_tree){0, RFS_OWNER_USER};
	for (long i = 0; i < n; i++) {
		size_t kl = rkey(r, space, k);
		size_t vl = rval(r, v);
		put_m(c, t, m, k, kl, v, vl);
	}
}

/* A tree with the items of m, inserted in a shuffled order. */
static void rebuild(tu_pool *c, tu_rng *r, rfs_tree *t, const tu_map *m)
{
	size_t *ord = malloc((m->n + 1) * sizeof(*ord));
	assert_non_null(ord);
	for (size_t i = 0; i < m->n; i++)
		ord[i] = i;
	for (size_t i = m->n; i > 1; i--) {
		size_t j = tu_below(r, i);
		size_t x = ord[i - 1];
		ord[i - 1] = ord[j];
		ord[j] = x;
	}
	*t = (rfs_tree){0, RFS_OWNER_USER};
	for (size_t i = 0; i < m->n; i++) {
		const tu_item *e = &m->v[ord[i]];
		OK(rfs_tree_put(c->pool, t, e->key, e->klen, e->val, e->vlen, e->flags,
				RFS_PUT_INSERT));
	}
	free(ord);
}

static uint64_t cur_seed;

static void seed_hint(void)
{
	fprintf(stderr, "replay: RFS_SEED=%" PRIu64 " build/asan/tests/unit/test_tree_diff\n",
		cur_seed);
}

static void one_round(tu_pool *c, uint64_t seed)
{
	tu_rng r = {seed};
	tu_map ma = {0}, mb = {0};
	rfs_tree a, b;
	uint64_t space = tu_below(&r, 2) ? 64 : 100000;
	long n = (long)tu_below(&r, 4) == 0 ? (long)tu_below(&r, 40) : (long)tu_range(&r, 100, 4000);

	cur_seed = seed;
	tu_fail_hook = seed_hint;
	build(c, &r, &a, &ma, space, n);
	OK(rfs_catalog_set(c->pool, 1, &a));
	if (tu_below(&r, 2))
		tu_commit(c);
	bool other_history = tu_below(&r, 4) == 0;
	if (other_history)
		rebuild(c, &r, &b, &ma);
	else
		OK(rfs_tree_clone(c->pool, &a, &b));
	tu_map_copy(&mb, &ma);
	check_diff(c, &a, &b, &ma, &mb);
	for (int phase = 0; phase < 3; phase++) {
		long ka = tu_below(&r, 3) == 0 ? 0 : (long)tu_below(&r, 60);
		long kb = (long)tu_below(&r, phase == 2 ? 400 : 60);
		mutate(c, &r, &a, &ma, space, ka);
		mutate(c, &r, &b, &mb, space, kb);
		OK(rfs_catalog_set(c->pool, 1, &a));
		OK(rfs_catalog_set(c->pool, 2, &b));
		if (tu_below(&r, 2))
			tu_commit(c);
		check_diff(c, &a, &b, &ma, &mb);
	}
	/* an empty side */
	rfs_tree empty = {0, RFS_OWNER_USER};
	tu_map none = {0};
	check_diff(c, &empty, &b, &none, &mb);
	OK(rfs_catalog_del(c->pool, 1));
	OK(rfs_catalog_del(c->pool, 2));
	tu_commit(c);
	CHECK_CLEAN(c);
	tu_map_clear(&ma);
	tu_map_clear(&mb);
	tu_fail_hook = NULL;
}

static void test_random(void **state)
{
	tu_pool *c = *state;
	const char *s = getenv("RFS_SEED");
	const char *rn = getenv("RFS_ROUNDS");
	long rounds = rn && *rn ? atol(rn) : 40;

	if (s && *s) {
		one_round(c, strtoull(s, NULL, 0));
		return;
	}
	for (long i = 0; i < rounds; i++)
		one_round(c, 1000 + (uint64_t)i);
}

/* ---- cost ------------------------------------------------------------------ */

static uint64_t reads(tu_pool *c)
{
	return tu_stats(c).block_reads;
}

static void key_of(uint8_t *k, uint64_t i)
{
	tu_be64(k, i);
}

static void test_cost(void **state)
{
	tu_pool *c = *state;
	const uint64_t n = 200000;
	uint8_t k[8], v[24];
	rfs_tree a = {0, RFS_OWNER_USER};
	tu_map none = {0};
	int height;

	tu_fail_hook = NULL;

	memset(v, 0x5a, sizeof v);
	for (uint64_t i = 0; i < n; i++) {
		key_of(k, i * 2);
		OK(rfs_tree_put(c->pool, &a, k, 8, v, sizeof v, 0, RFS_PUT_INSERT));
	}
	OK(rfs_catalog_set(c->pool, 1, &a));
	tu_commit(c);
	OK(rfs_tree_height(c->pool, &a, &height));
	CHECK(height >= 3, "height %d: the tree should be deep enough to show the cost", height);

	/* identical: nothing read */
	rfs_tree b;
	OK(rfs_tree_clone(c->pool, &a, &b));
	got_t got = {.ordered = true};
	uint64_t r0 = reads(c);
	OK(rfs_tree_diff(c->pool, &a, &b, collect, &got));
	EQ_U64(reads(c) - r0, 0);
	EQ_U64(got.n, 0);
	(void)none;

	/* k changes spread over the tree: a replace, an insert between two
	 * keys, a delete, in turn */
	const uint64_t ks[] = {1, 10, 100, 1000};
	uint64_t prev_changes = 0;
	for (size_t t = 0; t < sizeof(ks) / sizeof(ks[0]); t++) {
		uint64_t kk = ks[t];
		for (uint64_t j = prev_changes; j < kk; j++) {
			uint64_t i = (j * 7919 + 13) % n;
			key_of(k, i * 2 + (j % 3 == 1));
			if (j % 3 == 0) {
				v[0] = 0xa5; /* never the original 0x5a */
				OK(rfs_tree_put(c->pool, &b, k, 8, v, sizeof v, 0, RFS_PUT_REPLACE));
				v[0] = 0x5a;
			} else if (j % 3 == 1) {
				OK(rfs_tree_put(c->pool, &b, k, 8, v, sizeof v, 0, RFS_PUT_INSERT));
			} else {
				OK(rfs_tree_delete(c->pool, &b, k, 8, 0));
			}
		}
		prev_changes = kk;
		OK(rfs_catalog_set(c->pool, 2, &b));
		tu_commit(c);
		got_free(&got);
		memset(&got, 0, sizeof got);
		got.ordered = true;
		r0 = reads(c);
		OK(rfs_tree_diff(c->pool, &a, &b, collect, &got));
		uint64_t rd = reads(c) - r0;
		EQ_U64(got.n, kk);
		CHECK(got.ordered, "order");
		/* both sides read a path per change, plus a neighbouring path
		 * where a split or merge moved node boundaries */
		uint64_t bound = 4 * kk * (uint64_t)height + 4;
		CHECK(rd <= bound, "%" PRIu64 " changes: %" PRIu64 " node reads, bound %" PRIu64,
		      kk, rd, bound);
		print_message("  %" PRIu64 " changes of %" PRIu64 " keys, height %d: %" PRIu64
			      " node reads\n", kk, n, height, rd);
	}
	got_free(&got);

	/* another history with the same content: nothing in common, so the
	 * diff reads both trees whole, and finds no difference */
	rfs_tree d = {0, RFS_OWNER_USER};
	for (uint64_t i = n; i-- > 0;) {
		key_of(k, i * 2);
		OK(rfs_tree_put(c->pool, &d, k, 8, v, sizeof v, 0, RFS_PUT_INSERT));
	}
	OK(rfs_catalog_set(c->pool, 3, &d));
	tu_commit(c);
	memset(&got, 0, sizeof got);
	got.ordered = true;
	r0 = reads(c);
	OK(rfs_tree_diff(c->pool, &a, &d, collect, &got));
	uint64_t rd = reads(c) - r0;
	EQ_U64(got.n, 0);
	CHECK(rd >= n / 100, "%" PRIu64 " reads for two unrelated trees of %" PRIu64 " keys", rd, n);
	got_free(&got);
	OK(rfs_catalog_del(c->pool, 1));
	OK(rfs_catalog_del(c->pool, 2));
	OK(rfs_catalog_del(c->pool, 3));
	tu_commit(c);
	CHECK_CLEAN(c);
}

/* ---- callback control -------------------------------------------------------- */

static void test_stop_and_error(void **state)
{
	tu_pool *c = *state;
	uint8_t k[8], v[8] = {0};
	rfs_tree a = {0, RFS_OWNER_USER}, b = {0, RFS_OWNER_USER};

	for (uint64_t i = 0; i < 2000; i++) {
		key_of(k, i);
		OK(rfs_tree_put(c->pool, &a, k, 8, v, 8, 0, RFS_PUT_INSERT));
		if (i % 2)
			OK(rfs_tree_put(c->pool, &b, k, 8, v, 8, 0, RFS_PUT_INSERT));
	}
	got_t got = {.ordered = true, .stop_after = 5};
	RC(rfs_tree_diff(c->pool, &a, &b, collect, &got), 1);
	EQ_U64(got.n, 5);
	got_free(&got);
	got_t bad = {.fail_with = -EINTR};
	RC(rfs_tree_diff(c->pool, &a, &b, collect, &bad), -EINTR);
	got_free(&bad);
	/* no pinned block left behind: the trees can still be dropped */
	OK(rfs_tree_drop(c->pool, &a));
	OK(rfs_tree_drop(c->pool, &b));
	tu_commit(c);
	CHECK_CLEAN(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_random, tu_setup_open, tu_teardown),
		cmocka_unit_test_setup_teardown(test_cost, tu_setup_open, tu_teardown),
		cmocka_unit_test_setup_teardown(test_stop_and_error, tu_setup_open, tu_teardown),
	};
	return tu_exit(cmocka_run_group_tests(tests, NULL, NULL));
}
