/*
 * Crash tests of the drop queue: a scripted workload queues big trees
 * (nested trees, data extents, nodes shared with live clones that keep
 * changing) and releases them in small budgets over many commits.  It
 * runs once to record, after every commit, the live trees, the queue's
 * figures and the blocks in use.  Then, for every flush point and every
 * crash mode, a fresh pool runs it with a crash armed there and is
 * reopened: rfs_check must be clean (what the queue holds is counted),
 * the state must be the one of the last commit that completed (or of the
 * commit whose superblock reached the disk), and after finishing the
 * queue from there rfs_check must still be clean -- no leak, no double
 * free, nothing in use freed -- with the live trees' content (data read
 * back) untouched.
 *
 * RFS_CRASH_SEEDS=<n> sets the seeds per random crash mode (default 2).
 */
#include "../common/testutil.h"

#define MAXC 16
#define MAX_ID 8

typedef struct {
	tu_pool *c;
	bool record;
	int commits_ok;
	tu_buf states[MAXC + 1];
	tu_buf live[MAXC + 1];          /* live trees only, per state */
	uint64_t flush_after[MAXC + 1];
	int ncommits;
} wl_t;

#define W(x)                                                                  \
	do {                                                                  \
		int _w = (int)(x);                                            \
		if (_w)                                                       \
			return _w;                                            \
	} while (0)

/* Live trees, then the queue's figures and the blocks in use. */
static int dump_state(rfs_pool *pool, tu_buf *live, tu_buf *all)
{
	struct rfs_dropq_stat st;
	struct rfs_pool_stats ps;
	live->n = 0;
	W(tu_dump_catalog(pool, MAX_ID, live));
	W(rfs_dropq_stat(pool, &st));
	rfs_pool_stats(pool, &ps);
	all->n = 0;
	tu_buf_add(all, live->p, live->n);
	tu_buf_u64(all, st.trees);
	tu_buf_u64(all, st.blocks);
	tu_buf_u64(all, st.queued);
	tu_buf_u64(all, ps.used_blocks);
	return 0;
}

static int wl_commit(wl_t *w)
{
	W(rfs_pool_commit_locked(w->c->pool));
	w->commits_ok++;
	if (w->record) {
		CHECK(w->commits_ok <= MAXC, "too many commits");
		OK(dump_state(w->c->pool, &w->live[w->commits_ok], &w->states[w->commits_ok]));
		w->flush_after[w->commits_ok] = tu_stats(w->c).flushes;
		w->ncommits = w->commits_ok;
		CHECK_CLEAN(w->c);
		if (getenv("DQDEBUG")) {
			struct rfs_dropq_stat st;
			OK(rfs_dropq_stat(w->c->pool, &st));
			fprintf(stderr, "commit %d: %" PRIu64 " trees, %" PRIu64 " blocks, used %" PRIu64 "\n",
				w->commits_ok, st.trees, st.blocks, tu_stats(w->c).used_blocks);
		}
	}
	return 0;
}

static void vpattern(uint64_t i, uint32_t salt, uint8_t *v, size_t *vl, size_t maxl)
{
	tu_rng r = {i * 1000003 + salt};
	*vl = (size_t)tu_range(&r, 8, maxl);
	tu_fill(&r, v, *vl);
}

static int wl_puts(wl_t *w, uint64_t id, uint64_t from, uint64_t to, uint32_t salt,
		   size_t maxl)
{
	rfs_tree t = {0, RFS_OWNER_USER};
	int rc = rfs_catalog_get(w->c->pool, id, &t);
	if (rc && rc != -ENOENT)
		return rc;
	for (uint64_t i = from; i < to; i++) {
		uint8_t k[8], v[RFS_VAL_MAX];
		size_t vl;
		tu_be64(k, i);
		vpattern(i, salt, v, &vl, maxl);
		W(rfs_tree_put(w->c->pool, &t, k, 8, v, vl, 0, RFS_PUT_UPSERT));
	}
	return rfs_catalog_set(w->c->pool, id, &t);
}

static int wl_extents(wl_t *w, uint64_t id, const char *prefix, int n, uint32_t seed)
{
	rfs_tree t;
	W(rfs_catalog_get(w->c->pool, id, &t));
	for (int i = 0; i < n; i++) {
		char key[32];
		uint8_t v[RFS_VAL_MAX];
		snprintf(key, sizeof key, "%s-%d", prefix, i);
		long vl = tu_ext_make(w->c->pool, 1 + (uint64_t)(i % 6), seed + (uint32_t)i, v);
		if (vl < 0)
			return (int)vl;
		W(rfs_tree_put(w->c->pool, &t, key, strlen(key), v, (size_t)vl,
			       RFS_ITEM_EXTENT, RFS_PUT_UPSERT));
	}
	return rfs_catalog_set(w->c->pool, id, &t);
}

/* a nested tree of n items (one with an extent) under key in tree id */
static int wl_nested(wl_t *w, uint64_t id, const char *key, uint64_t n, uint32_t seed)
{
	rfs_tree t, in = {0, RFS_OWNER_USER};
	W(rfs_catalog_get(w->c->pool, id, &t));
	for (uint64_t i = 0; i < n; i++) {
		uint8_t k[8], v[RFS_VAL_MAX];
		size_t vl;
		tu_be64(k, i);
		vpattern(i, seed, v, &vl, 60);
		W(rfs_tree_put(w->c->pool, &in, k, 8, v, vl, 0, RFS_PUT_INSERT));
	}
	uint8_t ev[RFS_VAL_MAX];
	long el = tu_ext_make(w->c->pool, 3, seed, ev);
	if (el < 0)
		return (int)el;
	W(rfs_tree_put(w->c->pool, &in, "ext", 3, ev, (size_t)el, RFS_ITEM_EXTENT, RFS_PUT_INSERT));
	uint8_t val[16];
	memcpy(val, &in.root, 8);
	memcpy(val + 8, "nestedtr", 8);
	W(rfs_tree_put(w->c->pool, &t, key, strlen(key), val, sizeof val, RFS_ITEM_TREE,
		       RFS_PUT_UPSERT));
	return rfs_catalog_set(w->c->pool, id, &t);
}

/* change nested tree key of tree id (through lookup_mut) */
static int wl_nested_modify(wl_t *w, uint64_t id, const char *key, uint64_t from, uint64_t to)
{
	rfs_tree t, in = {0, RFS_OWNER_USER};
	uint8_t val[64];
	size_t vl = sizeof val;
	uint8_t fl;
	W(rfs_catalog_get(w->c->pool, id, &t));
	W(rfs_tree_lookup_mut(w->c->pool, &t, key, strlen(key), val, &vl, &fl));
	memcpy(&in.root, val, 8);
	for (uint64_t i = from; i < to; i++) {
		uint8_t k[8], v[RFS_VAL_MAX];
		size_t l;
		tu_be64(k, i);
		vpattern(i, 78, v, &l, 300);
		W(rfs_tree_put(w->c->pool, &in, k, 8, v, l, 0, RFS_PUT_UPSERT));
	}
	memcpy(val, &in.root, 8);
	W(rfs_tree_put(w->c->pool, &t, key, strlen(key), val, vl, fl,
		       RFS_PUT_REPLACE | RFS_KEEP_REFS));
	return rfs_catalog_set(w->c->pool, id, &t);
}

static int wl_clone(wl_t *w, uint64_t src, uint64_t dst)
{
	rfs_tree t, d;
	W(rfs_catalog_get(w->c->pool, src, &t));
	W(rfs_tree_clone(w->c->pool, &t, &d));
	return rfs_catalog_set(w->c->pool, dst, &d);
}

static int wl_queue(wl_t *w, uint64_t id)
{
	rfs_tree t;
	W(rfs_catalog_take(w->c->pool, id, &t));
	return rfs_dropq_add(w->c->pool, &t, 50);
}

static int wl_work(wl_t *w, uint64_t budget)
{
	uint64_t freed, left;
	return rfs_dropq_work(w->c->pool, budget, &freed, &left);
}

/* The workload.  Returns 0 or the first error. */
static int workload(wl_t *w)
{
	/* 1: a big tree with extents and nested trees, a second one */
	W(wl_puts(w, 1, 0, 1200, 1, 120));
	W(wl_extents(w, 1, "ext", 12, 100));
	W(wl_nested(w, 1, "nest-a", 300, 11));
	W(wl_nested(w, 1, "nest-b", 200, 12));
	W(wl_puts(w, 2, 0, 400, 2, 200));
	W(wl_nested(w, 2, "nest-c", 250, 13));
	for (int i = 0; i < 6; i++) {
		/* small nested trees (one leaf): released with their parent's leaf */
		char key[32];
		snprintf(key, sizeof key, "small-%d", i);
		W(wl_nested(w, i % 2 ? 1 : 2, key, 4, 20 + (uint32_t)i));
	}
	W(wl_commit(w));
	/* 2: a clone of the big tree that diverges */
	W(wl_clone(w, 1, 3));
	W(wl_puts(w, 3, 100, 160, 3, 150));
	W(wl_extents(w, 3, "ext", 3, 300));
	W(wl_nested_modify(w, 3, "nest-a", 0, 40));
	W(wl_commit(w));
	/* 3: queue the big tree, release a little */
	W(wl_queue(w, 1));
	W(wl_work(w, 6));
	W(wl_commit(w));
	/* 4: more; the live sharer changes and is cloned */
	W(wl_work(w, 9));
	W(wl_puts(w, 3, 900, 1000, 4, 100));
	W(wl_nested_modify(w, 3, "nest-b", 10, 30));
	W(wl_clone(w, 3, 4));
	W(wl_commit(w));
	/* 5: queue the second tree */
	W(wl_queue(w, 2));
	W(wl_work(w, 12));
	W(wl_commit(w));
	/* 6: queue the clone of the sharer after changing it */
	W(wl_puts(w, 4, 0, 50, 5, 90));
	W(wl_work(w, 10));
	W(wl_queue(w, 4));
	W(wl_commit(w));
	/* 7..: release in small budgets, one commit each */
	for (int i = 0; i < 7; i++) {
		W(wl_work(w, 3 + (uint64_t)i));
		if (i == 3)
			W(wl_puts(w, 5, 0, 30, 6, 40));
		W(wl_commit(w));
	}
	/* last: finish */
	W(wl_work(w, 100000));
	W(wl_commit(w));
	return 0;
}

/* ---- runs --------------------------------------------------------------------- */

static wl_t ref;
static bool ref_ready;
static tu_pool ref_pool;

static void record_reference(void)
{
	if (ref_ready)
		return;
	tu_pool *c = &ref_pool;
	tu_pool_init(c);
	tu_pool_create(c, 256ull << 20);
	tu_open(c, RFS_OPEN_CRASHSIM);
	memset(&ref, 0, sizeof ref);
	ref.c = c;
	ref.record = true;
	OK(dump_state(c->pool, &ref.live[0], &ref.states[0]));
	ref.flush_after[0] = tu_stats(c).flushes;
	OK(workload(&ref));
	CHECK(ref.ncommits >= 12, "workload made %d commits", ref.ncommits);
	for (int i = 0; i < ref.ncommits; i++)
		CHECK(ref.states[i].n != ref.states[i + 1].n ||
			      memcmp(ref.states[i].p, ref.states[i + 1].p, ref.states[i].n) != 0,
		      "states %d and %d are equal", i, i + 1);
	/* the queue was busy over several commits, and empty at the end */
	struct rfs_dropq_stat st;
	OK(rfs_dropq_stat(c->pool, &st));
	EQ_U64(st.trees, 0);
	CHECK(st.queued == 0, "queue not removed at the end");
	tu_reopen(c, 0);
	CHECK_CLEAN(c);
	tu_pool_fini(c);
	ref.c = NULL;
	ref_ready = true;
	fprintf(stderr, "crash_dropq: workload has %d commits and %" PRIu64 " flushes\n",
		ref.ncommits, ref.flush_after[ref.ncommits]);
}

static int state_index(const tu_buf *b)
{
	for (int i = 0; i <= ref.ncommits; i++)
		if (ref.states[i].n == b->n && memcmp(ref.states[i].p, b->p, b->n) == 0)
			return i;
	return -1;
}

static void crash_run(tu_pool *c, uint64_t k, enum rfs_crash_mode mode, uint64_t seed)
{
	OK(rfs_pool_create(c->path, 256ull << 20, RFS_CREATE_FORCE));
	tu_open(c, RFS_OPEN_CRASHSIM);
	wl_t w;
	memset(&w, 0, sizeof w);
	w.c = c;
	if (seed & 1)
		rfs_pool_set_cache_limit(c->pool, 16);
	rfs_pool_crash_at_flush(c->pool, k, mode, seed);
	int rc = workload(&w);
	CHECK(rfs_pool_crashed(c->pool), "k=%" PRIu64 ": no crash happened (rc %d)", k, rc);
	tu_close(c);

	int m = 0;
	while (m < ref.ncommits && ref.flush_after[m + 1] < k)
		m++;
	rfs_pool *p = NULL;
	rc = rfs_pool_open(c->path, 0, &p);
	CHECK(rc == 0, "k=%" PRIu64 " mode %d seed %" PRIu64 ": reopen = %d", k, mode, seed, rc);
	c->pool = p;
	tu_lock(c);
	static tu_reports rep;
	long n = tu_check(c, &rep, NULL);
	if (n != 0) {
		tu_reports_print(&rep, 10);
		CHECK(false, "k=%" PRIu64 " mode %d seed %" PRIu64 ": rfs_check = %ld after the crash",
		      k, mode, seed, n);
	}
	tu_buf live = {0}, all = {0};
	OK(dump_state(c->pool, &live, &all));
	int s = state_index(&all);
	CHECK(s == m || s == m + 1, "k=%" PRIu64 " mode %d seed %" PRIu64 ": recovered state %d, expected %d or %d",
	      k, mode, seed, s, m, m + 1);
	CHECK(s >= w.commits_ok, "k=%" PRIu64 ": commit %d returned success but state %d came back",
	      k, w.commits_ok, s);

	/* finish the queue from there, with a commit and a reopen halfway */
	uint64_t freed, left, steps = 0;
	do {
		OK(rfs_dropq_work(c->pool, 40, &freed, &left));
		if (++steps == 3) {
			tu_commit(c);
			tu_reopen(c, 0);
		}
	} while (left);
	tu_commit(c);
	n = tu_check(c, &rep, NULL);
	if (n != 0) {
		tu_reports_print(&rep, 10);
		CHECK(false, "k=%" PRIu64 " mode %d seed %" PRIu64 ": rfs_check = %ld after finishing the queue from state %d",
		      k, mode, seed, n, s);
	}
	EQ_U64(rfs_pool_root(c->pool, RFS_ROOT_DROPQ), 0);
	tu_buf live2 = {0};
	OK(tu_dump_catalog(c->pool, MAX_ID, &live2));
	CHECK(live2.n == live.n && memcmp(live2.p, live.p, live.n) == 0,
	      "k=%" PRIu64 " mode %d: live trees changed while finishing the queue from state %d", k, mode, s);
	tu_buf_free(&live);
	tu_buf_free(&live2);
	tu_buf_free(&all);
	tu_close(c);
}

static void run_mode(void **state, enum rfs_crash_mode mode)
{
	record_reference();
	tu_crash_points(*state, ref.flush_after[ref.ncommits], mode, 2, crash_run);
}

static void test_crash_drop_all(void **state)
{
	run_mode(state, RFS_CRASH_DROP_ALL);
}

static void test_crash_drop_random(void **state)
{
	run_mode(state, RFS_CRASH_DROP_RANDOM);
}

static void test_crash_tear(void **state)
{
	run_mode(state, RFS_CRASH_TEAR);
}

static int group_teardown(void **state)
{
	(void)state;
	tu_pool_fini(&ref_pool);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_crash_drop_all, tu_setup, tu_teardown),
		cmocka_unit_test_setup_teardown(test_crash_drop_random, tu_setup, tu_teardown),
		cmocka_unit_test_setup_teardown(test_crash_tear, tu_setup, tu_teardown),
	};
	int rc = cmocka_run_group_tests(tests, NULL, group_teardown);
	for (int i = 0; i <= MAXC; i++) {
		tu_buf_free(&ref.states[i]);
		tu_buf_free(&ref.live[i]);
	}
	return tu_exit(rc);
}
