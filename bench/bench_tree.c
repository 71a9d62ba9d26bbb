/*
 * bench_tree: storage-engine benchmarks of the copy-on-write B+tree.
 *
 *   bench_tree clone [N]   clone cost of an N-entry tree vs a 1,000-entry
 *                          tree, tree height, first write into each side of
 *                          a clone.  N defaults to 10,000,000.
 *   bench_tree ops [N]     insert / lookup / ordered scan throughput of N
 *                          random 16-byte keys with 16-byte values, against
 *                          LMDB doing the same work in the same process.
 *
 * Every figure is one stdout line "name: value unit"; everything else
 * (progress, errors) goes to stderr.  Each subcommand ends with
 * "<name>_peak_rss: N MiB" (getrusage ru_maxrss), which is why bench/run.sh
 * runs them as separate processes.
 *
 * Environment: RFS_BENCH_TMPDIR = parent of the temporary directory holding the
 * pool file and the LMDB environment (default $TMPDIR or /tmp).
 *
 * Choices (also in bench/README.md):
 *  - Keys: 16 random bytes from splitmix64 (fixed seed), values: 16 bytes
 *    derived from the key index.  Same key sequence for both engines.
 *  - Pool: a sparse file of 8 GiB (16 GiB when N > 10M), cache limit
 *    4M blocks (16 GiB) so the whole tree stays in memory: we measure CPU
 *    work, not the disk.
 *  - Locking: as tree.h says, every rfs_tree_put takes the pool write lock
 *    (rfs_pool_wrlock/unlock around each call), every lookup the read lock;
 *    the scan holds the read lock for the whole walk.
 *  - Commits: ours every 1,000,000 inserts and at the end (catalog slot
 *    updated first); LMDB commits its write transaction at the same
 *    interval.  LMDB runs with MDB_NOSYNC and otherwise default flags
 *    (no MDB_WRITEMAP), so its commits write pages into the page cache but
 *    do not fsync; our commits do flush the pool file.  Commit time is
 *    reported separately, and ratios are given with and without it.
 *  - LMDB lookups run in one read transaction (LMDB's best case); ours pay
 *    one rdlock/unlock per lookup.
 *  - Every ratio is OUR_TIME / LMDB_TIME: lower is better, < 1 = faster.
 */
#include <errno.h>
#include <inttypes.h>
#include <lmdb.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "reflinkfs/log.h"
#include "reflinkfs/pool.h"
#include "reflinkfs/tree.h"

#define KLEN 16
#define VLEN 16
#define COMMIT_EVERY 1000000u
#define CACHE_LIMIT_BLOCKS (4ull << 20) /* 4M blocks = 16 GiB */
#define SMALL_N 1000u
#define CLONE_REPS 1001u
#define CAT_BIG 1
#define CAT_SMALL 2
#define CAT_CLONE 3

/* ---- helpers ------------------------------------------------------------ */

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t sm_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void die(const char *what, int rc)
{
	fprintf(stderr, "bench_tree: %s: %s (%d)\n", what,
		rc < 0 ? strerror(-rc) : "failed", rc);
	exit(1);
}

static void check(int rc, const char *what)
{
	if (rc < 0)
		die(what, rc);
}

static void mdb_check(int rc, const char *what)
{
	if (rc != 0) {
		fprintf(stderr, "bench_tree: lmdb %s: %s\n", what,
			mdb_strerror(rc));
		exit(1);
	}
}

/* N random 16-byte keys, one after another. */
static uint8_t *gen_keys(size_t n, uint64_t seed)
{
	uint8_t *k = malloc(n * KLEN);
	if (!k)
		die("malloc keys", -ENOMEM);
	uint64_t s = seed;
	for (size_t i = 0; i < n; i++) {
		uint64_t a = sm_next(&s), b = sm_next(&s);
		memcpy(k + i * KLEN, &a, 8);
		memcpy(k + i * KLEN + 8, &b, 8);
	}
	return k;
}

/* Value of key i: the index, then a hash of it. */
static void make_val(size_t i, uint8_t v[VLEN])
{
	uint64_t a = i, s = i ^ 0x5bd1e995u;
	uint64_t b = sm_next(&s);
	memcpy(v, &a, 8);
	memcpy(v + 8, &b, 8);
}

/* A random permutation of 0..n-1 (Fisher-Yates, seeded). */
static uint32_t *gen_perm(size_t n, uint64_t seed)
{
	uint32_t *p = malloc(n * sizeof *p);
	if (!p)
		die("malloc perm", -ENOMEM);
	for (size_t i = 0; i < n; i++)
		p[i] = (uint32_t)i;
	uint64_t s = seed;
	for (size_t i = n - 1; i > 0; i--) {
		size_t j = (size_t)(((unsigned __int128)sm_next(&s) * (i + 1)) >> 64);
		uint32_t t = p[i];
		p[i] = p[j];
		p[j] = t;
	}
	return p;
}

static long peak_rss_mib(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (long)(ru.ru_maxrss / 1024); /* KiB on Linux */
}

/* "10m", "1m", "1k", "250k", or the plain number. */
static void size_label(size_t n, char *buf, size_t len)
{
	if (n >= 1000000 && n % 1000000 == 0)
		snprintf(buf, len, "%zum", n / 1000000);
	else if (n >= 1000 && n % 1000 == 0)
		snprintf(buf, len, "%zuk", n / 1000);
	else
		snprintf(buf, len, "%zu", n);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static double median(double *v, size_t n)
{
	qsort(v, n, sizeof *v, cmp_double);
	return v[n / 2];
}

/* ---- temp dir and pool --------------------------------------------------- */

static char tmpdir[4096];
static char pool_path[4200];
static char lmdb_path[4200];

static void make_tmpdir(void)
{
	const char *base = getenv("RFS_BENCH_TMPDIR");
	if (!base || !*base)
		base = getenv("TMPDIR");
	if (!base || !*base)
		base = "/tmp";
	snprintf(tmpdir, sizeof tmpdir, "%s/rfsbench.XXXXXX", base);
	if (!mkdtemp(tmpdir))
		die("mkdtemp", -errno);
	snprintf(pool_path, sizeof pool_path, "%s/bench.pool", tmpdir);
	snprintf(lmdb_path, sizeof lmdb_path, "%s/lmdb", tmpdir);
}

static void remove_tmpdir(void)
{
	char p[4300];
	unlink(pool_path);
	snprintf(p, sizeof p, "%s/data.mdb", lmdb_path);
	unlink(p);
	snprintf(p, sizeof p, "%s/lock.mdb", lmdb_path);
	unlink(p);
	rmdir(lmdb_path);
	rmdir(tmpdir);
}

static rfs_pool *open_pool(size_t n)
{
	uint64_t size = (n > 10000000 ? 16ull : 8ull) << 30;
	check(rfs_pool_create(pool_path, size, 0), "rfs_pool_create");
	rfs_pool *pool = NULL;
	check(rfs_pool_open(pool_path, 0, &pool), "rfs_pool_open");
	rfs_pool_set_cache_limit(pool, CACHE_LIMIT_BLOCKS);
	return pool;
}

static void commit_tree(rfs_pool *pool, uint64_t id, const rfs_tree *t)
{
	rfs_pool_wrlock(pool);
	check(rfs_catalog_set(pool, id, t), "rfs_catalog_set");
	check(rfs_pool_commit_locked(pool), "rfs_pool_commit_locked");
	rfs_pool_unlock(pool);
}

/*
 * Insert keys[0..n) into t, wrlock around each put, committing every
 * COMMIT_EVERY inserts and at the end.  Returns the total time; *commit_s
 * receives the part spent in commits.
 */
static double tree_insert_all(rfs_pool *pool, rfs_tree *t, uint64_t cat_id,
			      const uint8_t *keys, size_t n, double *commit_s)
{
	uint8_t v[VLEN];
	double csum = 0;
	double t0 = now_s();
	for (size_t i = 0; i < n; i++) {
		make_val(i, v);
		rfs_pool_wrlock(pool);
		int rc = rfs_tree_put(pool, t, keys + i * KLEN, KLEN, v, VLEN,
				      0, RFS_PUT_UPSERT);
		rfs_pool_unlock(pool);
		if (rc < 0) {
			fprintf(stderr, "bench_tree: insert #%zu\n", i);
			die("rfs_tree_put", rc);
		}
		if ((i + 1) % COMMIT_EVERY == 0 || i + 1 == n) {
			double c0 = now_s();
			commit_tree(pool, cat_id, t);
			csum += now_s() - c0;
		}
	}
	double total = now_s() - t0;
	if (commit_s)
		*commit_s = csum;
	return total;
}

/* ---- clone ------------------------------------------------------------------ */

static int run_clone(size_t n)
{
	char lbl[32];
	size_label(n, lbl, sizeof lbl);
	make_tmpdir();
	rfs_pool *pool = open_pool(n);

	uint8_t *keys = gen_keys(n, 0x1234567ull);
	uint8_t *skeys = gen_keys(SMALL_N, 0xabcdefull);
	rfs_tree big = {0, RFS_OWNER_USER}, small = {0, RFS_OWNER_USER};

	fprintf(stderr, "clone: building %zu-entry tree...\n", n);
	double c;
	double tb = tree_insert_all(pool, &big, CAT_BIG, keys, n, &c);
	fprintf(stderr, "clone: built in %.1f s (%.1f s in commits)\n", tb, c);
	tree_insert_all(pool, &small, CAT_SMALL, skeys, SMALL_N, NULL);

	/* Interleave the two sizes so that drift affects both alike. */
	double *tbig = malloc(CLONE_REPS * sizeof *tbig);
	double *tsmall = malloc(CLONE_REPS * sizeof *tsmall);
	if (!tbig || !tsmall)
		die("malloc", -ENOMEM);
	for (unsigned r = 0; r < CLONE_REPS; r++) {
		for (int which = 0; which < 2; which++) {
			rfs_tree *src = which ? &small : &big;
			rfs_tree cl;
			rfs_pool_wrlock(pool);
			double t0 = now_s();
			int rc = rfs_tree_clone(pool, src, &cl);
			double t1 = now_s();
			check(rc, "rfs_tree_clone");
			check(rfs_tree_drop(pool, &cl), "rfs_tree_drop");
			rfs_pool_unlock(pool);
			(which ? tsmall : tbig)[r] = (t1 - t0) * 1e6;
		}
	}
	double mbig = median(tbig, CLONE_REPS);
	double msmall = median(tsmall, CLONE_REPS);
	fprintf(stderr, "clone: %s min %.3f max %.3f us; 1k min %.3f max %.3f us\n",
		lbl, tbig[0], tbig[CLONE_REPS - 1], tsmall[0],
		tsmall[CLONE_REPS - 1]);
	printf("tree_clone_%s: %.3f us\n", lbl, mbig);
	printf("tree_clone_1k: %.3f us\n", msmall);
	printf("tree_clone_ratio: %.3f\n", msmall > 0 ? mbig / msmall : 0.0);
	fflush(stdout);

	/* Tree height. */
	int h = 0;
	rfs_pool_rdlock(pool);
	check(rfs_tree_height(pool, &big, &h), "rfs_tree_height");
	rfs_pool_unlock(pool);
	printf("tree_height_%s: %d levels\n", lbl, h);
	fflush(stdout);

	/* First write into each side of a committed clone. */
	rfs_tree cl;
	rfs_pool_wrlock(pool);
	check(rfs_tree_clone(pool, &big, &cl), "rfs_tree_clone");
	check(rfs_catalog_set(pool, CAT_CLONE, &cl), "rfs_catalog_set");
	check(rfs_catalog_set(pool, CAT_BIG, &big), "rfs_catalog_set");
	check(rfs_pool_commit_locked(pool), "rfs_pool_commit");
	rfs_pool_unlock(pool);

	uint8_t nk[2][KLEN], v[VLEN];
	uint64_t s = 0x77777ull;
	for (int i = 0; i < 2; i++) {
		uint64_t a = sm_next(&s), b = sm_next(&s);
		memcpy(nk[i], &a, 8);
		memcpy(nk[i] + 8, &b, 8);
	}
	make_val(n, v);
	struct rfs_pool_stats st0, st1, st2;
	rfs_pool_stats(pool, &st0);
	rfs_pool_wrlock(pool);
	double t0 = now_s();
	int rc = rfs_tree_put(pool, &cl, nk[0], KLEN, v, VLEN, 0, RFS_PUT_UPSERT);
	double t1 = now_s();
	rfs_pool_unlock(pool);
	check(rc, "rfs_tree_put (clone)");
	rfs_pool_stats(pool, &st1);
	rfs_pool_wrlock(pool);
	double t2 = now_s();
	rc = rfs_tree_put(pool, &big, nk[1], KLEN, v, VLEN, 0, RFS_PUT_UPSERT);
	double t3 = now_s();
	rfs_pool_unlock(pool);
	check(rc, "rfs_tree_put (original)");
	rfs_pool_stats(pool, &st2);
	fprintf(stderr, "clone: first write allocated %" PRIu64
		" blocks (clone side), %" PRIu64 " (original side)\n",
		st1.used_blocks - st0.used_blocks,
		st2.used_blocks - st1.used_blocks);
	printf("tree_first_write_clone: %.3f us\n", (t1 - t0) * 1e6);
	printf("tree_first_write_orig: %.3f us\n", (t3 - t2) * 1e6);

	/* Store both roots and commit, so a failing commit path shows up. */
	rfs_pool_wrlock(pool);
	check(rfs_catalog_set(pool, CAT_CLONE, &cl), "rfs_catalog_set");
	check(rfs_catalog_set(pool, CAT_BIG, &big), "rfs_catalog_set");
	check(rfs_pool_commit_locked(pool), "rfs_pool_commit");
	rfs_pool_unlock(pool);

	rfs_pool_close(pool);
	remove_tmpdir();
	free(keys);
	free(skeys);
	free(tbig);
	free(tsmall);
	printf("clone_peak_rss: %ld MiB\n", peak_rss_mib());
	return 0;
}

/* ---- ops: ours vs LMDB ------------------------------------------------------ */

struct ops_times {
	double insert, commit, lookup, scan;
};

static void run_ops_tree(size_t n, const uint8_t *keys, const uint32_t *perm,
			 struct ops_times *out)
{
	rfs_pool *pool = open_pool(n);
	rfs_tree t = {0, RFS_OWNER_USER};

	fprintf(stderr, "ops: tree insert %zu...\n", n);
	out->insert = tree_insert_all(pool, &t, CAT_BIG, keys, n, &out->commit);

	fprintf(stderr, "ops: tree lookup...\n");
	uint8_t v[VLEN], want[VLEN];
	size_t bad = 0;
	double t0 = now_s();
	for (size_t j = 0; j < n; j++) {
		uint32_t i = perm[j];
		size_t vlen = sizeof v;
		rfs_pool_rdlock(pool);
		int rc = rfs_tree_lookup(pool, &t, keys + (size_t)i * KLEN,
					 KLEN, v, &vlen, NULL);
		rfs_pool_unlock(pool);
		make_val(i, want);
		if (rc < 0 || vlen != VLEN || memcmp(v, want, VLEN) != 0) {
			if (bad++ < 5)
				fprintf(stderr, "ops: tree lookup #%u: rc %d "
					"vlen %zu\n", i, rc, vlen);
		}
	}
	out->lookup = now_s() - t0;
	if (bad) {
		fprintf(stderr, "ops: tree: %zu lookups wrong\n", bad);
		exit(1);
	}

	fprintf(stderr, "ops: tree scan...\n");
	size_t count = 0, unordered = 0;
	uint8_t prev[KLEN];
	uint64_t xsum = 0;
	t0 = now_s();
	rfs_pool_rdlock(pool);
	rfs_cursor *c;
	check(rfs_cursor_open(pool, &t, &c), "rfs_cursor_open");
	int rc = rfs_cursor_seek(c, NULL, 0, 1);
	while (rc == 0) {
		const void *k, *val;
		size_t kl, vl;
		uint8_t fl;
		check(rfs_cursor_get(c, &k, &kl, &val, &vl, &fl),
		      "rfs_cursor_get");
		if (kl != KLEN || vl != VLEN) {
			fprintf(stderr, "ops: tree scan: bad item sizes\n");
			exit(1);
		}
		if (count && memcmp(prev, k, KLEN) >= 0)
			unordered++;
		memcpy(prev, k, KLEN);
		uint64_t x;
		memcpy(&x, val, 8);
		xsum += x;
		count++;
		rc = rfs_cursor_step(c, 1);
	}
	rfs_cursor_close(c);
	rfs_pool_unlock(pool);
	out->scan = now_s() - t0;
	if (rc != -ENOENT)
		die("rfs_cursor_seek/step", rc);
	if (count != n || unordered ||
	    xsum != (uint64_t)n * (uint64_t)(n - 1) / 2) {
		fprintf(stderr, "ops: tree scan: %zu items (want %zu), %zu out "
			"of order, value sum %s\n", count, n, unordered,
			xsum == (uint64_t)n * (n - 1) / 2 ? "ok" : "WRONG");
		exit(1);
	}

	struct rfs_pool_stats st;
	rfs_pool_stats(pool, &st);
	fprintf(stderr, "ops: tree: %" PRIu64 " blocks used, %" PRIu64
		" cached, %" PRIu64 " commits\n", st.used_blocks,
		st.cache_blocks, st.commits);
	rfs_pool_close(pool);
	unlink(pool_path);
}

static void run_ops_lmdb(size_t n, const uint8_t *keys, const uint32_t *perm,
			 struct ops_times *out)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	if (mkdir(lmdb_path, 0700) < 0)
		die("mkdir lmdb dir", -errno);
	mdb_check(mdb_env_create(&env), "env_create");
	size_t mapsize = (size_t)n * 200 + (256u << 20); /* generous */
	mdb_check(mdb_env_set_mapsize(env, mapsize), "set_mapsize");
	/* MDB_NOSYNC only: default flags otherwise (no MDB_WRITEMAP). */
	mdb_check(mdb_env_open(env, lmdb_path, MDB_NOSYNC, 0600), "env_open");

	fprintf(stderr, "ops: lmdb insert %zu...\n", n);
	uint8_t v[VLEN], want[VLEN];
	double csum = 0;
	double t0 = now_s();
	mdb_check(mdb_txn_begin(env, NULL, 0, &txn), "txn_begin");
	mdb_check(mdb_dbi_open(txn, NULL, 0, &dbi), "dbi_open");
	for (size_t i = 0; i < n; i++) {
		make_val(i, v);
		MDB_val k = {KLEN, (void *)(keys + i * KLEN)};
		MDB_val d = {VLEN, v};
		mdb_check(mdb_put(txn, dbi, &k, &d, 0), "put");
		if ((i + 1) % COMMIT_EVERY == 0 || i + 1 == n) {
			double c0 = now_s();
			mdb_check(mdb_txn_commit(txn), "txn_commit");
			if (i + 1 < n)
				mdb_check(mdb_txn_begin(env, NULL, 0, &txn),
					  "txn_begin");
			csum += now_s() - c0;
		}
	}
	out->insert = now_s() - t0;
	out->commit = csum;

	fprintf(stderr, "ops: lmdb lookup...\n");
	size_t bad = 0;
	t0 = now_s();
	mdb_check(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), "txn_begin ro");
	for (size_t j = 0; j < n; j++) {
		uint32_t i = perm[j];
		MDB_val k = {KLEN, (void *)(keys + (size_t)i * KLEN)}, d;
		int rc = mdb_get(txn, dbi, &k, &d);
		make_val(i, want);
		if (rc != 0 || d.mv_size != VLEN ||
		    memcmp(d.mv_data, want, VLEN) != 0)
			bad++;
	}
	mdb_txn_abort(txn);
	out->lookup = now_s() - t0;
	if (bad) {
		fprintf(stderr, "ops: lmdb: %zu lookups wrong\n", bad);
		exit(1);
	}

	fprintf(stderr, "ops: lmdb scan...\n");
	size_t count = 0, unordered = 0;
	uint8_t prev[KLEN];
	uint64_t xsum = 0;
	t0 = now_s();
	MDB_cursor *cur;
	mdb_check(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), "txn_begin ro");
	mdb_check(mdb_cursor_open(txn, dbi, &cur), "cursor_open");
	MDB_val k, d;
	int rc = mdb_cursor_get(cur, &k, &d, MDB_FIRST);
	while (rc == 0) {
		if (k.mv_size != KLEN || d.mv_size != VLEN) {
			fprintf(stderr, "ops: lmdb scan: bad item sizes\n");
			exit(1);
		}
		if (count && memcmp(prev, k.mv_data, KLEN) >= 0)
			unordered++;
		memcpy(prev, k.mv_data, KLEN);
		uint64_t x;
		memcpy(&x, d.mv_data, 8);
		xsum += x;
		count++;
		rc = mdb_cursor_get(cur, &k, &d, MDB_NEXT);
	}
	mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	out->scan = now_s() - t0;
	if (rc != MDB_NOTFOUND)
		mdb_check(rc, "cursor_get");
	if (count != n || unordered ||
	    xsum != (uint64_t)n * (uint64_t)(n - 1) / 2) {
		fprintf(stderr, "ops: lmdb scan: %zu items, %zu unordered\n",
			count, unordered);
		exit(1);
	}
	mdb_env_close(env);
}

static int run_ops(size_t n)
{
	make_tmpdir();
	fprintf(stderr, "ops: generating %zu keys...\n", n);
	uint8_t *keys = gen_keys(n, 0x1234567ull);
	uint32_t *perm = gen_perm(n, 0x9876543ull);

	struct ops_times ours, lm;
	run_ops_tree(n, keys, perm, &ours);
	long rss_tree = peak_rss_mib();
	run_ops_lmdb(n, keys, perm, &lm);

	double mn = (double)n / 1e6;
	printf("tree_insert: %.3f Mops/s\n", mn / ours.insert);
	printf("lmdb_insert: %.3f Mops/s\n", mn / lm.insert);
	printf("tree_insert_commit_time: %.1f ms\n", ours.commit * 1e3);
	printf("lmdb_insert_commit_time: %.1f ms\n", lm.commit * 1e3);
	printf("tree_insert_time_ratio: %.3f\n", ours.insert / lm.insert);
	printf("tree_insert_nocommit_time_ratio: %.3f\n",
	       (ours.insert - ours.commit) / (lm.insert - lm.commit));
	printf("tree_lookup: %.3f Mops/s\n", mn / ours.lookup);
	printf("lmdb_lookup: %.3f Mops/s\n", mn / lm.lookup);
	printf("tree_lookup_time_ratio: %.3f\n", ours.lookup / lm.lookup);
	printf("tree_scan: %.3f Mitems/s\n", mn / ours.scan);
	printf("lmdb_scan: %.3f Mitems/s\n", mn / lm.scan);
	printf("tree_scan_time_ratio: %.3f\n", ours.scan / lm.scan);
	printf("ops_tree_phase_peak_rss: %ld MiB\n", rss_tree);

	remove_tmpdir();
	free(keys);
	free(perm);
	printf("ops_peak_rss: %ld MiB\n", peak_rss_mib());
	return 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: bench_tree clone|ops [N]\n"
		"  clone  clone cost of an N-entry vs a 1000-entry tree, height,\n"
		"         first write into each side of a clone\n"
		"  ops    insert/lookup/scan of N entries, ours vs LMDB\n"
		"  N      number of entries (default 10000000)\n");
}

int main(int argc, char **argv)
{
	if (argc < 2 || argc > 3) {
		usage();
		return 2;
	}
	size_t n = 10000000;
	if (argc == 3) {
		char *end;
		unsigned long long v = strtoull(argv[2], &end, 10);
		if (*end || v < 2 || v > 0xffffffffull) {
			usage();
			return 2;
		}
		n = (size_t)v;
	}
	rfs_log_set_level(RFS_LOG_WARN);
	if (strcmp(argv[1], "clone") == 0)
		return run_clone(n);
	if (strcmp(argv[1], "ops") == 0)
		return run_ops(n);
	usage();
	return 2;
}
