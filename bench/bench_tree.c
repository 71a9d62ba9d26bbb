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
 *  - Both engines are loaded at the same time and each phase alternates
 *    between them in chunks of 100,000 operations (see run_phase), so
 *    that a noisy shared machine disturbs both alike.
 *  - LMDB lookups run in one read transaction per chunk (LMDB's cheapest
 *    way); ours pay one rdlock/unlock per lookup.
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
#define FW_ROUNDS 7u
#define CLONE_COLD_REPS 101u
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

static void check_report(void *arg, uint64_t blocknr, const char *what)
{
	(void)arg;
	fprintf(stderr, "bench_tree: rfs_check: block %" PRIu64 ": %s\n",
		blocknr, what);
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

	/*
	 * First write into each side of a committed clone, FW_ROUNDS times:
	 * clone, commit (everything clean, every node shared), time one put of
	 * a new key into the clone, then one into the original; store the
	 * roots, commit, delete the clone (rfs_catalog_del drops it; not after
	 * the last round), commit.
	 * The figures are the medians over the rounds.
	 */
	double fwc[FW_ROUNDS], fwo[FW_ROUNDS];
	uint64_t s = 0x77777ull;
	for (unsigned r = 0; r < FW_ROUNDS; r++) {
		rfs_tree cl;
		uint8_t nk[2][KLEN], v[VLEN];
		for (int i = 0; i < 2; i++) {
			uint64_t a = sm_next(&s), b = sm_next(&s);
			memcpy(nk[i], &a, 8);
			memcpy(nk[i] + 8, &b, 8);
		}
		make_val(n + r, v);
		rfs_pool_wrlock(pool);
		check(rfs_tree_clone(pool, &big, &cl), "rfs_tree_clone");
		check(rfs_catalog_set(pool, CAT_CLONE, &cl), "rfs_catalog_set");
		check(rfs_catalog_set(pool, CAT_BIG, &big), "rfs_catalog_set");
		check(rfs_pool_commit_locked(pool), "rfs_pool_commit");
		rfs_pool_unlock(pool);

		struct rfs_pool_stats st0, st1, st2;
		rfs_pool_stats(pool, &st0);
		rfs_pool_wrlock(pool);
		double t0 = now_s();
		int rc = rfs_tree_put(pool, &cl, nk[0], KLEN, v, VLEN, 0,
				      RFS_PUT_UPSERT);
		double t1 = now_s();
		rfs_pool_unlock(pool);
		check(rc, "rfs_tree_put (clone)");
		rfs_pool_stats(pool, &st1);
		rfs_pool_wrlock(pool);
		double t2 = now_s();
		rc = rfs_tree_put(pool, &big, nk[1], KLEN, v, VLEN, 0,
				  RFS_PUT_UPSERT);
		double t3 = now_s();
		rfs_pool_unlock(pool);
		check(rc, "rfs_tree_put (original)");
		rfs_pool_stats(pool, &st2);
		fwc[r] = (t1 - t0) * 1e6;
		fwo[r] = (t3 - t2) * 1e6;
		fprintf(stderr, "clone: round %u: first write %.1f us (clone, %"
			PRIu64 " blocks allocated), %.1f us (original, %" PRIu64
			" blocks)\n", r, fwc[r], st1.used_blocks - st0.used_blocks,
			fwo[r], st2.used_blocks - st1.used_blocks);

		rfs_pool_wrlock(pool);
		check(rfs_catalog_set(pool, CAT_CLONE, &cl), "rfs_catalog_set");
		check(rfs_catalog_set(pool, CAT_BIG, &big), "rfs_catalog_set");
		check(rfs_pool_commit_locked(pool), "rfs_pool_commit");
		if (r + 1 < FW_ROUNDS) {
			check(rfs_catalog_del(pool, CAT_CLONE), "rfs_catalog_del");
			check(rfs_pool_commit_locked(pool), "rfs_pool_commit");
		}
		rfs_pool_unlock(pool);
	}
	printf("tree_first_write_clone: %.3f us\n", median(fwc, FW_ROUNDS));
	printf("tree_first_write_orig: %.3f us\n", median(fwo, FW_ROUNDS));
	fflush(stdout);

	/*
	 * Clone again, but every clone is the first one of its transaction
	 * (a commit before each): the clone then also shadows the path of the
	 * refcount tree, which is what a lone clone or snapshot pays.  Runs
	 * after the first-write rounds, whose last clone is kept so that the
	 * refcount tree is not empty.
	 */
	rfs_tree rct = {rfs_pool_root(pool, RFS_ROOT_REFCOUNT), RFS_OWNER_REFCOUNT};
	int rch = 0;
	rfs_pool_rdlock(pool);
	if (rct.root)
		check(rfs_tree_height(pool, &rct, &rch), "rfs_tree_height");
	rfs_pool_unlock(pool);
	fprintf(stderr, "clone: refcount tree height %d\n", rch);
	for (unsigned r = 0; r < CLONE_COLD_REPS; r++) {
		for (int which = 0; which < 2; which++) {
			rfs_tree *src = which ? &small : &big;
			rfs_tree cl;
			rfs_pool_wrlock(pool);
			check(rfs_pool_commit_locked(pool), "rfs_pool_commit");
			double t0 = now_s();
			int rc = rfs_tree_clone(pool, src, &cl);
			double t1 = now_s();
			check(rc, "rfs_tree_clone");
			check(rfs_tree_drop(pool, &cl), "rfs_tree_drop");
			rfs_pool_unlock(pool);
			(which ? tsmall : tbig)[r] = (t1 - t0) * 1e6;
		}
	}
	mbig = median(tbig, CLONE_COLD_REPS);
	msmall = median(tsmall, CLONE_COLD_REPS);
	printf("tree_clone_cold_%s: %.3f us\n", lbl, mbig);
	printf("tree_clone_cold_1k: %.3f us\n", msmall);
	printf("tree_clone_cold_ratio: %.3f\n", msmall > 0 ? mbig / msmall : 0.0);
	fflush(stdout);


	/* Sanity: the pool must check clean after all this (not timed). */
	struct rfs_check_stats cst;
	rfs_pool_rdlock(pool);
	double tc = now_s();
	long problems = rfs_check(pool, check_report, NULL, &cst);
	tc = now_s() - tc;
	rfs_pool_unlock(pool);
	fprintf(stderr, "clone: rfs_check: %ld problems, %" PRIu64 " nodes, %"
		PRIu64 " items, %.1f s\n", problems, cst.nodes, cst.items, tc);
	if (problems != 0) {
		fprintf(stderr, "bench_tree: rfs_check failed\n");
		exit(1);
	}

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

/*
 * Both engines live in the same process at the same time, and every phase
 * runs in chunks of CHUNK (100,000) operations that alternate between them (ABBA:
 * ours first in even chunks, LMDB first in odd ones), so that load from
 * other processes on a shared machine hits both alike.  Each chunk is
 * timed alone; a phase's time is the sum of its chunks.  CPU time of the
 * thread is also summed, and the CPU share (cpu / wall) goes to stderr: well
 * below 1 means the run was disturbed (or, for inserts, waited on flushes).
 */
#define CHUNK 100000u /* divides COMMIT_EVERY */

struct phase {
	double wall, cpu, commit;
};

static double cpu_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

struct ops_ctx {
	size_t n;
	const uint8_t *keys;
	const uint32_t *perm;
	/* ours */
	rfs_pool *pool;
	rfs_tree t;
	rfs_cursor *cur;
	size_t t_count, t_unordered;
	uint64_t t_xsum;
	uint8_t t_prev[KLEN];
	int t_rc;
	/* LMDB */
	MDB_env *env;
	MDB_dbi dbi;
	MDB_txn *wtxn, *rtxn;
	MDB_cursor *mcur;
	size_t m_count, m_unordered;
	uint64_t m_xsum;
	uint8_t m_prev[KLEN];
	int m_rc;
	MDB_val mk, md;
};

/* One chunk [lo, hi) of a phase for one engine.  Returns its commit time. */
typedef double (*chunk_fn)(struct ops_ctx *x, size_t lo, size_t hi);

static double tree_insert_chunk(struct ops_ctx *x, size_t lo, size_t hi)
{
	uint8_t v[VLEN];
	for (size_t i = lo; i < hi; i++) {
		make_val(i, v);
		rfs_pool_wrlock(x->pool);
		int rc = rfs_tree_put(x->pool, &x->t, x->keys + i * KLEN, KLEN,
				      v, VLEN, 0, RFS_PUT_UPSERT);
		rfs_pool_unlock(x->pool);
		if (rc < 0) {
			fprintf(stderr, "bench_tree: insert #%zu\n", i);
			die("rfs_tree_put", rc);
		}
	}
	if (hi % COMMIT_EVERY != 0 && hi != x->n)
		return 0;
	double c0 = now_s();
	commit_tree(x->pool, CAT_BIG, &x->t);
	return now_s() - c0;
}

static double lmdb_insert_chunk(struct ops_ctx *x, size_t lo, size_t hi)
{
	uint8_t v[VLEN];
	/* The write transaction spans chunks up to the commit interval. */
	if (!x->wtxn)
		mdb_check(mdb_txn_begin(x->env, NULL, 0, &x->wtxn), "txn_begin");
	for (size_t i = lo; i < hi; i++) {
		make_val(i, v);
		MDB_val k = {KLEN, (void *)(x->keys + i * KLEN)};
		MDB_val d = {VLEN, v};
		mdb_check(mdb_put(x->wtxn, x->dbi, &k, &d, 0), "put");
	}
	if (hi % COMMIT_EVERY != 0 && hi != x->n)
		return 0;
	double c0 = now_s();
	mdb_check(mdb_txn_commit(x->wtxn), "txn_commit");
	x->wtxn = NULL;
	return now_s() - c0;
}

static double tree_lookup_chunk(struct ops_ctx *x, size_t lo, size_t hi)
{
	uint8_t v[VLEN], want[VLEN];
	for (size_t j = lo; j < hi; j++) {
		uint32_t i = x->perm[j];
		size_t vlen = sizeof v;
		rfs_pool_rdlock(x->pool);
		int rc = rfs_tree_lookup(x->pool, &x->t, x->keys + (size_t)i * KLEN,
					 KLEN, v, &vlen, NULL);
		rfs_pool_unlock(x->pool);
		make_val(i, want);
		if (rc < 0 || vlen != VLEN || memcmp(v, want, VLEN) != 0) {
			fprintf(stderr, "bench_tree: tree lookup of key #%u: rc %d, "
				"vlen %zu%s\n", i, rc, vlen,
				rc == 0 ? ", wrong value" : "");
			exit(1);
		}
	}
	return 0;
}

static double lmdb_lookup_chunk(struct ops_ctx *x, size_t lo, size_t hi)
{
	/* One read transaction per chunk: LMDB's cheapest way. */
	MDB_txn *txn;
	uint8_t want[VLEN];
	mdb_check(mdb_txn_begin(x->env, NULL, MDB_RDONLY, &txn), "txn_begin ro");
	for (size_t j = lo; j < hi; j++) {
		uint32_t i = x->perm[j];
		MDB_val k = {KLEN, (void *)(x->keys + (size_t)i * KLEN)}, d;
		int rc = mdb_get(txn, x->dbi, &k, &d);
		make_val(i, want);
		if (rc != 0 || d.mv_size != VLEN ||
		    memcmp(d.mv_data, want, VLEN) != 0) {
			fprintf(stderr, "bench_tree: lmdb lookup of key #%u: %s\n",
				i, rc ? mdb_strerror(rc) : "wrong value");
			exit(1);
		}
	}
	mdb_txn_abort(txn);
	return 0;
}

/* Scans: the cursors stay open (and our read lock held) across chunks;
 * each chunk visits up to hi - lo items. */
static double tree_scan_chunk(struct ops_ctx *x, size_t lo, size_t hi)
{
	for (size_t j = lo; j < hi && x->t_rc == 0; j++) {
		const void *k, *val;
		size_t kl, vl;
		uint8_t fl;
		check(rfs_cursor_get(x->cur, &k, &kl, &val, &vl, &fl),
		      "rfs_cursor_get");
		if (kl != KLEN || vl != VLEN) {
			fprintf(stderr, "bench_tree: tree scan: item #%zu has "
				"key %zu / value %zu bytes\n", x->t_count, kl, vl);
			exit(1);
		}
		if (x->t_count && memcmp(x->t_prev, k, KLEN) >= 0)
			x->t_unordered++;
		memcpy(x->t_prev, k, KLEN);
		uint64_t i;
		memcpy(&i, val, 8);
		x->t_xsum += i;
		x->t_count++;
		x->t_rc = rfs_cursor_step(x->cur, 1);
	}
	return 0;
}

static double lmdb_scan_chunk(struct ops_ctx *x, size_t lo, size_t hi)
{
	for (size_t j = lo; j < hi && x->m_rc == 0; j++) {
		if (x->mk.mv_size != KLEN || x->md.mv_size != VLEN) {
			fprintf(stderr, "bench_tree: lmdb scan: bad item sizes\n");
			exit(1);
		}
		if (x->m_count && memcmp(x->m_prev, x->mk.mv_data, KLEN) >= 0)
			x->m_unordered++;
		memcpy(x->m_prev, x->mk.mv_data, KLEN);
		uint64_t i;
		memcpy(&i, x->md.mv_data, 8);
		x->m_xsum += i;
		x->m_count++;
		x->m_rc = mdb_cursor_get(x->mcur, &x->mk, &x->md, MDB_NEXT);
	}
	return 0;
}

/* Run one phase over [0, n) in alternating chunks. */
static void run_phase(struct ops_ctx *x, const char *name, chunk_fn ours,
		      chunk_fn theirs, struct phase *po, struct phase *pl)
{
	memset(po, 0, sizeof *po);
	memset(pl, 0, sizeof *pl);
	fprintf(stderr, "ops: %s...\n", name);
	for (size_t lo = 0, c = 0; lo < x->n; lo += CHUNK, c++) {
		size_t hi = lo + CHUNK < x->n ? lo + CHUNK : x->n;
		for (int k = 0; k < 2; k++) {
			bool do_ours = (k == 0) == (c % 2 == 0);
			struct phase *p = do_ours ? po : pl;
			double w0 = now_s(), c0 = cpu_s();
			p->commit += (do_ours ? ours : theirs)(x, lo, hi);
			p->cpu += cpu_s() - c0;
			p->wall += now_s() - w0;
		}
	}
	fprintf(stderr, "ops: %s: ours %.2f s (cpu share %.2f), lmdb %.2f s "
		"(cpu share %.2f)\n", name, po->wall, po->cpu / po->wall,
		pl->wall, pl->cpu / pl->wall);
}

static int run_ops(size_t n)
{
	make_tmpdir();
	fprintf(stderr, "ops: generating %zu keys...\n", n);
	struct ops_ctx x;
	memset(&x, 0, sizeof x);
	x.n = n;
	uint8_t *keys = gen_keys(n, 0x1234567ull);
	uint32_t *perm = gen_perm(n, 0x9876543ull);
	x.keys = keys;
	x.perm = perm;

	x.pool = open_pool(n);
	x.t = (rfs_tree){0, RFS_OWNER_USER};

	if (mkdir(lmdb_path, 0700) < 0)
		die("mkdir lmdb dir", -errno);
	mdb_check(mdb_env_create(&x.env), "env_create");
	size_t mapsize = (size_t)n * 200 + (256u << 20); /* generous */
	mdb_check(mdb_env_set_mapsize(x.env, mapsize), "set_mapsize");
	/* MDB_NOSYNC only: default flags otherwise (no MDB_WRITEMAP). */
	mdb_check(mdb_env_open(x.env, lmdb_path, MDB_NOSYNC, 0600), "env_open");
	MDB_txn *txn;
	mdb_check(mdb_txn_begin(x.env, NULL, 0, &txn), "txn_begin");
	mdb_check(mdb_dbi_open(txn, NULL, 0, &x.dbi), "dbi_open");
	mdb_check(mdb_txn_commit(txn), "txn_commit");

	struct phase io, il, lo, ll, so, sl;
	run_phase(&x, "insert", tree_insert_chunk, lmdb_insert_chunk, &io, &il);
	run_phase(&x, "lookup", tree_lookup_chunk, lmdb_lookup_chunk, &lo, &ll);

	/* Scan: open both cursors, position on the first item (untimed). */
	rfs_pool_rdlock(x.pool);
	check(rfs_cursor_open(x.pool, &x.t, &x.cur), "rfs_cursor_open");
	x.t_rc = rfs_cursor_seek(x.cur, NULL, 0, 1);
	mdb_check(mdb_txn_begin(x.env, NULL, MDB_RDONLY, &x.rtxn), "txn_begin ro");
	mdb_check(mdb_cursor_open(x.rtxn, x.dbi, &x.mcur), "cursor_open");
	x.m_rc = mdb_cursor_get(x.mcur, &x.mk, &x.md, MDB_FIRST);
	run_phase(&x, "scan", tree_scan_chunk, lmdb_scan_chunk, &so, &sl);
	/* Both must be at the end now. */
	if (x.t_rc == 0)
		x.t_rc = rfs_cursor_step(x.cur, 1) == -ENOENT ? -ENOENT : 0;
	if (x.m_rc == 0)
		x.m_rc = mdb_cursor_get(x.mcur, &x.mk, &x.md, MDB_NEXT);
	rfs_cursor_close(x.cur);
	rfs_pool_unlock(x.pool);
	mdb_cursor_close(x.mcur);
	mdb_txn_abort(x.rtxn);

	uint64_t want_sum = (uint64_t)n * (uint64_t)(n - 1) / 2;
	bool bad = false;
	if (x.t_rc != -ENOENT || x.t_count != n || x.t_unordered ||
	    x.t_xsum != want_sum) {
		fprintf(stderr, "bench_tree: tree scan: %zu items (want %zu), %zu "
			"out of order, value sum %s, last rc %d\n", x.t_count, n,
			x.t_unordered, x.t_xsum == want_sum ? "ok" : "WRONG",
			x.t_rc);
		bad = true;
	}
	if (x.m_rc != MDB_NOTFOUND || x.m_count != n || x.m_unordered ||
	    x.m_xsum != want_sum) {
		fprintf(stderr, "bench_tree: lmdb scan: %zu items (want %zu), %zu "
			"out of order\n", x.m_count, n, x.m_unordered);
		bad = true;
	}
	if (bad)
		exit(1);

	struct rfs_pool_stats st;
	rfs_pool_stats(x.pool, &st);
	fprintf(stderr, "ops: tree: %" PRIu64 " blocks used, %" PRIu64
		" cached, %" PRIu64 " commits\n", st.used_blocks,
		st.cache_blocks, st.commits);
	MDB_stat ms;
	MDB_envinfo mi;
	mdb_env_stat(x.env, &ms);
	mdb_env_info(x.env, &mi);
	fprintf(stderr, "ops: lmdb: depth %u, %zu leaf pages, %zu branch "
		"pages, last page %zu\n", ms.ms_depth, ms.ms_leaf_pages,
		ms.ms_branch_pages, mi.me_last_pgno);

	double mn = (double)n / 1e6;
	printf("tree_insert: %.3f Mops/s\n", mn / io.wall);
	printf("lmdb_insert: %.3f Mops/s\n", mn / il.wall);
	printf("tree_insert_commit_time: %.1f ms\n", io.commit * 1e3);
	printf("lmdb_insert_commit_time: %.1f ms\n", il.commit * 1e3);
	printf("tree_insert_time_ratio: %.3f\n", io.wall / il.wall);
	printf("tree_insert_nocommit_time_ratio: %.3f\n",
	       (io.wall - io.commit) / (il.wall - il.commit));
	printf("tree_lookup: %.3f Mops/s\n", mn / lo.wall);
	printf("lmdb_lookup: %.3f Mops/s\n", mn / ll.wall);
	printf("tree_lookup_time_ratio: %.3f\n", lo.wall / ll.wall);
	printf("tree_scan: %.3f Mitems/s\n", mn / so.wall);
	printf("lmdb_scan: %.3f Mitems/s\n", mn / sl.wall);
	printf("tree_scan_time_ratio: %.3f\n", so.wall / sl.wall);
	printf("tree_cache: %.0f MiB\n",
	       (double)st.cache_blocks * RFS_BLOCK_SIZE / (1 << 20));
	fflush(stdout);

	rfs_pool_close(x.pool);
	mdb_env_close(x.env);
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
