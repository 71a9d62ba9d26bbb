/*
 * Crash tests: a scripted workload (trees, clones, deletes, drops, nested
 * trees, data extents, commits) runs once to record the pool state after
 * every commit and the number of device flushes.  Then, for every flush
 * point k and every crash mode, a fresh pool runs the workload with
 * rfs_pool_crash_at_flush(k) armed, stops at the first error, and is
 * reopened: rfs_check must be clean and the content must be exactly the
 * state of the last commit that completed before the crash, or of the
 * commit in progress when its superblock reached the disk.  A commit that
 * returned success must be durable; with RFS_CRASH_DROP_ALL the commit in
 * progress must be lost, unless the crash hit its last flush (its first
 * superblock copy was flushed before).  The recovered pool must accept a
 * new commit.
 *
 * RFS_CRASH_SEEDS=<n> sets the seeds per random crash mode (default 4).
 */
#include "../common/testutil.h"

#define MAXC 16
#define MAX_ID 8 /* catalog ids dumped: 1..MAX_ID */

typedef struct {
	tu_pool *c;
	bool record;
	int commits_ok;
	tu_buf states[MAXC + 1];      /* states[i]: after commit i (0 = empty) */
	uint64_t flush_after[MAXC + 1]; /* flush count when commit i returned */
	int ncommits;
	int stop_after; /* > 0: return 1 once this many commits are done */
	bool commit_failed;
} wl_t;

#define W(x)                                                                  \
	do {                                                                  \
		int _w = (int)(x);                                            \
		if (_w)                                                       \
			return _w;                                            \
	} while (0)

static int wl_commit(wl_t *w)
{
	int rc = rfs_pool_commit_locked(w->c->pool);
	if (rc) {
		w->commit_failed = true;
		return rc;
	}
	w->commits_ok++;
	if (w->stop_after && w->commits_ok == w->stop_after)
		return 1;
	if (w->record) {
		CHECK(w->commits_ok <= MAXC, "too many commits");
		tu_buf *b = &w->states[w->commits_ok];
		b->n = 0;
		OK(tu_dump_catalog(w->c->pool, MAX_ID, b));
		w->flush_after[w->commits_ok] = tu_stats(w->c).flushes;
		w->ncommits = w->commits_ok;
		CHECK_CLEAN(w->c);
	}
	return 0;
}

static void vpattern(uint64_t i, uint32_t salt, uint8_t *v, size_t *vl, size_t maxl)
{
	tu_rng r = {i * 1000003 + salt};
	*vl = (size_t)tu_below(&r, maxl + 1);
	tu_fill(&r, v, *vl);
}

/* put keys [from, to) (step) into catalog tree id */
static int wl_puts(wl_t *w, uint64_t id, uint64_t from, uint64_t to, uint64_t step,
		   uint32_t salt, size_t maxl, int mode)
{
	rfs_tree t = {0, RFS_OWNER_USER};
	int rc = rfs_catalog_get(w->c->pool, id, &t);
	if (rc && rc != -ENOENT)
		return rc;
	for (uint64_t i = from; i < to; i += step) {
		uint8_t k[8], v[RFS_VAL_MAX];
		size_t vl;
		tu_be64(k, i);
		vpattern(i, salt, v, &vl, maxl);
		W(rfs_tree_put(w->c->pool, &t, k, 8, v, vl, 0, mode));
	}
	return rfs_catalog_set(w->c->pool, id, &t);
}

static int wl_dels(wl_t *w, uint64_t id, uint64_t from, uint64_t to, uint64_t step)
{
	rfs_tree t;
	W(rfs_catalog_get(w->c->pool, id, &t));
	for (uint64_t i = from; i < to; i += step) {
		uint8_t k[8];
		tu_be64(k, i);
		W(rfs_tree_delete(w->c->pool, &t, k, 8, 0));
	}
	return rfs_catalog_set(w->c->pool, id, &t);
}

static int wl_clone(wl_t *w, uint64_t src, uint64_t dst)
{
	rfs_tree t, d;
	W(rfs_catalog_get(w->c->pool, src, &t));
	W(rfs_tree_clone(w->c->pool, &t, &d));
	return rfs_catalog_set(w->c->pool, dst, &d);
}

static int wl_extent(wl_t *w, uint64_t id, const char *key, uint64_t nblocks, uint32_t seed)
{
	rfs_tree t;
	uint8_t v[RFS_VAL_MAX];
	W(rfs_catalog_get(w->c->pool, id, &t));
	long vl = tu_ext_make(w->c->pool, nblocks, seed, v);
	if (vl < 0)
		return (int)vl;
	W(rfs_tree_put(w->c->pool, &t, key, strlen(key), v, (size_t)vl, RFS_ITEM_EXTENT, RFS_PUT_UPSERT));
	return rfs_catalog_set(w->c->pool, id, &t);
}

static int wl_del_key(wl_t *w, uint64_t id, const char *key)
{
	rfs_tree t;
	W(rfs_catalog_get(w->c->pool, id, &t));
	W(rfs_tree_delete(w->c->pool, &t, key, strlen(key), 0));
	return rfs_catalog_set(w->c->pool, id, &t);
}

/* a nested tree of n items under key in tree id */
static int wl_nested_new(wl_t *w, uint64_t id, const char *key, uint64_t n)
{
	rfs_tree t, in = {0, RFS_OWNER_USER};
	W(rfs_catalog_get(w->c->pool, id, &t));
	for (uint64_t i = 0; i < n; i++) {
		uint8_t k[8], v[RFS_VAL_MAX];
		size_t vl;
		tu_be64(k, i);
		vpattern(i, 77, v, &vl, 60);
		W(rfs_tree_put(w->c->pool, &in, k, 8, v, vl, 0, RFS_PUT_INSERT));
	}
	uint8_t val[24];
	memcpy(val, &in.root, 8);
	memcpy(val + 8, "nested-tree-val!", 16);
	W(rfs_tree_put(w->c->pool, &t, key, strlen(key), val, sizeof val, RFS_ITEM_TREE, RFS_PUT_INSERT));
	return rfs_catalog_set(w->c->pool, id, &t);
}

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
		if (i % 3 == 0) {
			int rc = rfs_tree_delete(w->c->pool, &in, k, 8, 0);
			if (rc && rc != -ENOENT)
				return rc;
		} else
			W(rfs_tree_put(w->c->pool, &in, k, 8, v, l, 0, RFS_PUT_UPSERT));
	}
	memcpy(val, &in.root, 8);
	W(rfs_tree_put(w->c->pool, &t, key, strlen(key), val, vl, fl, RFS_PUT_REPLACE | RFS_KEEP_REFS));
	return rfs_catalog_set(w->c->pool, id, &t);
}

/* The workload.  Returns 0 or the first error. */
static int workload(wl_t *w)
{
	rfs_pool *p = w->c->pool;
	(void)p;
	/* 1: two trees */
	W(wl_puts(w, 1, 0, 400, 1, 1, 100, RFS_PUT_INSERT));
	W(wl_puts(w, 2, 0, 60, 1, 2, 400, RFS_PUT_INSERT));
	W(wl_commit(w));
	/* 2: clone, diverge */
	W(wl_clone(w, 1, 3));
	W(wl_dels(w, 1, 0, 300, 2));
	W(wl_puts(w, 3, 0, 400, 5, 3, 200, RFS_PUT_REPLACE));
	W(wl_puts(w, 2, 1000, 1300, 1, 4, 60, RFS_PUT_INSERT));
	W(wl_commit(w));
	/* 3: data extents and a nested tree */
	for (int i = 0; i < 6; i++) {
		char key[16];
		snprintf(key, sizeof key, "ext-%d", i);
		W(wl_extent(w, 3, key, 1 + (uint64_t)i, 100 + (uint32_t)i));
	}
	W(wl_nested_new(w, 2, "nested", 150));
	W(wl_commit(w));
	/* 4: clone with extents, diverge; modify the nested tree */
	W(wl_clone(w, 3, 4));
	W(wl_del_key(w, 3, "ext-0"));
	W(wl_del_key(w, 3, "ext-1"));
	W(wl_del_key(w, 3, "ext-2"));
	W(wl_extent(w, 4, "ext-3", 5, 203));
	W(wl_extent(w, 3, "ext-4", 2, 304));
	W(wl_nested_modify(w, 2, "nested", 50, 400));
	W(wl_commit(w));
	/* 5: drop the first tree */
	W(rfs_catalog_del(p, 1));
	W(wl_commit(w));
	/* 6: drop a clone, grow another a lot, clone the tree with the nested one */
	W(rfs_catalog_del(p, 3));
	W(wl_puts(w, 4, 5000, 8000, 1, 5, 120, RFS_PUT_INSERT));
	W(wl_clone(w, 2, 5));
	W(wl_nested_modify(w, 5, "nested", 0, 100));
	W(wl_commit(w));
	/* 7: shrink, delete the nested tree on one side */
	W(wl_dels(w, 4, 5000, 7500, 1));
	W(wl_del_key(w, 5, "nested"));
	W(wl_extent(w, 5, "ext-new", 8, 999));
	W(wl_commit(w));
	/* 8: drop almost everything, new small tree */
	W(rfs_catalog_del(p, 4));
	W(rfs_catalog_del(p, 2));
	W(wl_puts(w, 6, 0, 10, 1, 6, 30, RFS_PUT_INSERT));
	W(wl_commit(w));
	return 0;
}

/* ---- runs --------------------------------------------------------------------- */

static wl_t ref;
static bool ref_ready;
static tu_pool ref_pool; /* removed by group_teardown even after a failure */

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
	OK(tu_dump_catalog(c->pool, MAX_ID, &ref.states[0]));
	ref.flush_after[0] = tu_stats(c).flushes;
	OK(workload(&ref));
	CHECK(ref.ncommits >= 8, "workload made %d commits", ref.ncommits);
	/* the states differ from each other (else the test proves little) */
	for (int i = 0; i < ref.ncommits; i++)
		CHECK(ref.states[i].n != ref.states[i + 1].n ||
		      memcmp(ref.states[i].p, ref.states[i + 1].p, ref.states[i].n) != 0,
		      "states %d and %d are equal", i, i + 1);
	/* reopen: the last state persisted */
	tu_reopen(c, 0);
	tu_buf b = {0};
	OK(tu_dump_catalog(c->pool, MAX_ID, &b));
	CHECK(b.n == ref.states[ref.ncommits].n && memcmp(b.p, ref.states[ref.ncommits].p, b.n) == 0,
	      "state after reopen differs from the last commit");
	tu_buf_free(&b);
	CHECK_CLEAN(c);
	tu_pool_fini(c);
	ref.c = NULL;
	ref_ready = true;
	fprintf(stderr, "crash: workload has %d commits and %" PRIu64 " flushes\n", ref.ncommits,
		ref.flush_after[ref.ncommits]);
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
	CHECK(rfs_pool_crashed(c->pool), "k=%" PRIu64 " mode %d: no crash happened (workload rc %d)", k, mode, rc);
	/* A crash at a commit's last flush (its second superblock copy)
	 * comes after the commit is durable: the commit succeeds. */
	CHECK(rc != 0 || k == ref.flush_after[ref.ncommits],
	      "k=%" PRIu64 " mode %d: the workload finished after the crash", k, mode);
	tu_close(c);

	/* m: commits whose every flush came before flush k */
	int m = 0;
	while (m < ref.ncommits && ref.flush_after[m + 1] < k)
		m++;
	CHECK(w.commits_ok == m || w.commits_ok == m + 1,
	      "k=%" PRIu64 " mode %d: %d commits returned success, expected %d (or %d)", k, mode, w.commits_ok, m, m + 1);

	tu_log_clear();
	rfs_pool *p = NULL;
	rc = rfs_pool_open(c->path, 0, &p);
	CHECK(rc == 0, "k=%" PRIu64 " mode %d seed %" PRIu64 ": reopen after the crash = %d", k, mode, seed, rc);
	c->pool = p;
	/* A crash leaves a valid copy in each superblock slot (the second
	 * copy is written once the first is durable): never a lost commit,
	 * never a damaged copy (a torn write here keeps whole sectors). */
	const struct rfs_super_report *sr = rfs_pool_super_report(p);
	CHECK(!sr->lost_newer && sr->damaged == 0,
	      "k=%" PRIu64 " mode %d seed %" PRIu64 ": superblocks after the crash: %u damaged, lost %d",
	      k, mode, seed, sr->damaged, sr->lost_newer);
	tu_lock(c);
	static tu_reports rep;
	long n = tu_check(c, &rep, NULL);
	if (n != 0) {
		tu_reports_print(&rep, 10);
		CHECK(false, "k=%" PRIu64 " mode %d seed %" PRIu64 ": rfs_check = %ld after the crash", k, mode, seed, n);
	}
	tu_buf b = {0};
	rc = tu_dump_catalog(c->pool, MAX_ID, &b);
	CHECK(rc == 0, "k=%" PRIu64 " mode %d seed %" PRIu64 ": reading the recovered pool = %d", k, mode, seed, rc);
	int s = state_index(&b);
	tu_buf_free(&b);
	CHECK(s >= 0, "k=%" PRIu64 " mode %d seed %" PRIu64 ": recovered content matches no commit state (expected %d or %d)",
	      k, mode, seed, m, m + 1);
	CHECK(s == m || s == m + 1, "k=%" PRIu64 " mode %d seed %" PRIu64 ": recovered state %d, expected %d or %d",
	      k, mode, seed, s, m, m + 1);
	CHECK(s >= w.commits_ok, "k=%" PRIu64 " mode %d seed %" PRIu64 ": commit %d returned success but state %d was recovered",
	      k, mode, seed, w.commits_ok, s);
	/* A commit's last flush makes its superblock's second copy durable;
	 * the first copy was flushed before it, so a crash at that flush
	 * still recovers the commit; at any earlier flush it is lost. */
	if (mode == RFS_CRASH_DROP_ALL)
		CHECK(s == (m < ref.ncommits && ref.flush_after[m + 1] == k ? m + 1 : m),
		      "k=%" PRIu64 " DROP_ALL: recovered state %d, %d commits had all their flushes", k, s, m);

	/* the recovered pool is writable */
	rfs_tree t = {0, RFS_OWNER_USER};
	OK(rfs_tree_put(c->pool, &t, "after", 5, "crash", 5, 0, RFS_PUT_INSERT));
	OK(rfs_catalog_set(c->pool, 7, &t));
	tu_commit(c);
	CHECK_CLEAN(c);
	tu_reopen(c, 0);
	OK(rfs_catalog_get(c->pool, 7, &t));
	uint8_t v[8];
	size_t vl = sizeof v;
	OK(rfs_tree_lookup(c->pool, &t, "after", 5, v, &vl, NULL));
	CHECK(vl == 5 && memcmp(v, "crash", 5) == 0, "post-crash write lost");
	tu_close(c);
}

static void run_mode(void **state, enum rfs_crash_mode mode)
{
	record_reference();
	tu_crash_points(*state, ref.flush_after[ref.ncommits], mode, 4, crash_run);
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

/* rfs_pool_crash (no flush armed) after commit `stop` with a transaction
 * in progress: exactly state `stop` comes back */
static void test_crash_between_commits(void **state)
{
	tu_pool *c = *state;
	record_reference();
	for (int mode = 0; mode < 3; mode++) {
		for (int stop = 1; stop < ref.ncommits; stop++) {
			OK(rfs_pool_create(c->path, 256ull << 20, RFS_CREATE_FORCE));
			tu_open(c, RFS_OPEN_CRASHSIM);
			rfs_pool_set_cache_limit(c->pool, 16);
			wl_t w;
			memset(&w, 0, sizeof w);
			w.c = c;
			w.stop_after = stop;
			RC(workload(&w), 1);
			/* a transaction in progress: new tree, changes, data */
			OK(wl_puts(&w, 8, 0, 2000, 1, 9, 200, RFS_PUT_INSERT));
			OK(wl_extent(&w, 8, "pending", 4, 4242));
			for (uint64_t id = 1; id <= 6; id++) {
				rfs_tree t;
				if (rfs_catalog_get(c->pool, id, &t) == 0)
					OK(wl_puts(&w, id, 100000, 100050, 1, 10, 50, RFS_PUT_UPSERT));
			}
			tu_crash(c, (enum rfs_crash_mode)mode, (uint64_t)(stop * 31 + mode));
			tu_open(c, 0);
			CHECK_CLEAN(c);
			tu_buf b = {0};
			OK(tu_dump_catalog(c->pool, MAX_ID, &b));
			int s = state_index(&b);
			tu_buf_free(&b);
			CHECK(s == stop, "crash after commit %d (mode %d): recovered state %d", stop, mode, s);
			tu_close(c);
		}
	}
}

/* Write errors (rfs_pool_fail_writes_after) at every point of the
 * workload: the failing commit reports an error, the pool turns read-only
 * (-EROFS), and after reopen exactly the last successful commit is there. */
static void test_write_errors(void **state)
{
	tu_pool *c = *state;
	record_reference();
	uint64_t step = 1;
	for (uint64_t n = 0;; n += step) {
		OK(rfs_pool_create(c->path, 256ull << 20, RFS_CREATE_FORCE));
		tu_open(c, 0);
		wl_t w;
		memset(&w, 0, sizeof w);
		w.c = c;
		rfs_pool_fail_writes_after(c->pool, n);
		int rc = workload(&w);
		if (rc == 0) {
			/* more writes allowed than the workload makes: done */
			EQ_U64(w.commits_ok, ref.ncommits);
			tu_close(c);
			CHECK(n > 20, "the workload made only %" PRIu64 " writes", n);
			break;
		}
		CHECK(rc == -EIO || rc == -EROFS, "n=%" PRIu64 ": workload error %d", n, rc);
		if (w.commit_failed) {
			/* a failed commit turns the pool read-only */
			uint64_t s, got;
			RC(rfs_alloc_data(c->pool, 1, &s, &got), -EROFS);
			rfs_tree t = {0, RFS_OWNER_USER};
			RC(rfs_tree_put(c->pool, &t, "x", 1, "", 0, 0, 0), -EROFS);
			RC(rfs_pool_commit_locked(c->pool), -EROFS);
		}
		tu_close(c);
		tu_open(c, 0);
		CHECK_CLEAN(c);
		tu_buf b = {0};
		OK(tu_dump_catalog(c->pool, MAX_ID, &b));
		int st = state_index(&b);
		tu_buf_free(&b);
		CHECK(st == w.commits_ok, "writes fail after %" PRIu64 ": recovered state %d, last successful commit %d",
		      n, st, w.commits_ok);
		tu_close(c);
		if (n >= 64)
			step = n / 16;
	}
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
		cmocka_unit_test_setup_teardown(test_crash_between_commits, tu_setup, tu_teardown),
		cmocka_unit_test_setup_teardown(test_write_errors, tu_setup, tu_teardown),
	};
	int rc = cmocka_run_group_tests(tests, NULL, group_teardown);
	for (int i = 0; i <= MAXC; i++)
		tu_buf_free(&ref.states[i]);
	return tu_exit(rc);
}
