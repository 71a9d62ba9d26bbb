/*
 * engine-demo: what the reflinkfs storage engine does today (`make demo`
 * until the mountable filesystem exists).
 *
 *   engine-demo [POOL]      (default ./demo.pool; removed at the end)
 *
 * Builds a 2,000,000-entry copy-on-write B+tree in a fresh pool, clones it
 * (one refcount increment, whatever the size), writes 1,000 entries into
 * the clone, shows what that cost in blocks, checks the pool with
 * rfs_check, and removes the pool.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "reflinkfs/log.h"
#include "reflinkfs/pool.h"
#include "reflinkfs/tree.h"

#define N_ENTRIES 2000000u
#define N_WRITES 1000u
#define KLEN 16
#define VLEN 16
#define POOL_SIZE (2ull << 30)
#define ID_ORIG 1
#define ID_CLONE 2

static const char *pool_path = "./demo.pool";
static rfs_pool *pool;

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

/* Key i: 16 pseudo-random bytes, a pure function of i. */
static void key_of(uint64_t i, uint8_t k[KLEN])
{
	uint64_t s = i * 2, a = sm_next(&s), b = sm_next(&s);
	memcpy(k, &a, 8);
	memcpy(k + 8, &b, 8);
}

static void val_of(uint64_t i, uint64_t version, uint8_t v[VLEN])
{
	memcpy(v, &i, 8);
	memcpy(v + 8, &version, 8);
}

static void fail(const char *what, int rc)
{
	fprintf(stderr, "engine-demo: %s failed: %s\n", what, strerror(-rc));
	if (pool)
		rfs_pool_close(pool);
	unlink(pool_path);
	exit(1);
}

static void ok(int rc, const char *what)
{
	if (rc < 0)
		fail(what, rc);
}

static uint64_t used_blocks(void)
{
	struct rfs_pool_stats st;
	rfs_pool_stats(pool, &st);
	return st.used_blocks;
}

static double mib(uint64_t blocks)
{
	return (double)blocks * RFS_BLOCK_SIZE / (1024.0 * 1024.0);
}

static void commit_both(rfs_tree *orig, rfs_tree *clone)
{
	rfs_pool_wrlock(pool);
	ok(rfs_catalog_set(pool, ID_ORIG, orig), "storing the tree root");
	if (clone)
		ok(rfs_catalog_set(pool, ID_CLONE, clone), "storing the clone root");
	ok(rfs_pool_commit_locked(pool), "commit");
	rfs_pool_unlock(pool);
}

static void report(void *arg, uint64_t blocknr, const char *what)
{
	(void)arg;
	fprintf(stderr, "  problem: block %" PRIu64 ": %s\n", blocknr, what);
}

int main(int argc, char **argv)
{
	if (argc > 2 || (argc == 2 && argv[1][0] == '-')) {
		fprintf(stderr, "usage: engine-demo [POOL]   (default ./demo.pool)\n");
		return 2;
	}
	if (argc == 2)
		pool_path = argv[1];
	struct stat sb;
	if (stat(pool_path, &sb) == 0) {
		fprintf(stderr, "engine-demo: %s already exists; remove it or "
			"give another path\n", pool_path);
		return 1;
	}
	rfs_log_set_level(RFS_LOG_WARN);

	printf("reflinkfs storage engine demo\n");
	int rc = rfs_pool_create(pool_path, POOL_SIZE, 0);
	if (rc < 0) {
		fprintf(stderr, "engine-demo: cannot create %s: %s\n",
			pool_path, strerror(-rc));
		return 1;
	}
	ok(rfs_pool_open(pool_path, 0, &pool), "opening the pool");
	rfs_pool_set_cache_limit(pool, 1u << 20);
	printf("  pool %s created (%.0f GiB, sparse)\n", pool_path,
	       (double)POOL_SIZE / (1 << 30));

	/* 1. Build a big tree. */
	rfs_tree orig = {0, RFS_OWNER_USER};
	uint8_t k[KLEN], v[VLEN];
	double t0 = now_s();
	for (uint64_t i = 0; i < N_ENTRIES; i++) {
		key_of(i, k);
		val_of(i, 0, v);
		rfs_pool_wrlock(pool);
		rc = rfs_tree_put(pool, &orig, k, KLEN, v, VLEN, 0, RFS_PUT_UPSERT);
		rfs_pool_unlock(pool);
		ok(rc, "insert");
		if ((i + 1) % 500000 == 0)
			commit_both(&orig, NULL);
	}
	commit_both(&orig, NULL);
	double tbuild = now_s() - t0;
	int height = 0;
	rfs_pool_rdlock(pool);
	ok(rfs_tree_height(pool, &orig, &height), "tree height");
	rfs_pool_unlock(pool);
	uint64_t u1 = used_blocks();
	struct rfs_check_stats st;
	memset(&st, 0, sizeof st);
	rfs_pool_rdlock(pool);
	long problems = rfs_check(pool, report, NULL, &st);
	rfs_pool_unlock(pool);
	if (problems < 0)
		fail("rfs_check", (int)problems);
	uint64_t nodes1 = st.nodes;
	printf("1. built a tree of %u entries in %.1f s (height %d), committed\n",
	       N_ENTRIES, tbuild, height);
	printf("   pool space used: %" PRIu64 " blocks (%.1f MiB): %" PRIu64
	       " tree nodes, the rest is pool metadata\n", u1, mib(u1), nodes1);

	/* 2. Clone it. */
	rfs_tree clone;
	rfs_pool_wrlock(pool);
	t0 = now_s();
	rc = rfs_tree_clone(pool, &orig, &clone);
	double tclone = now_s() - t0;
	rfs_pool_unlock(pool);
	ok(rc, "clone");
	commit_both(&orig, &clone);
	uint64_t u2 = used_blocks();
	printf("2. cloned it in %.1f microseconds, committed\n", tclone * 1e6);
	printf("   pool space used: %" PRIu64 " blocks (%+" PRId64
	       " blocks for a clone of %u entries)\n",
	       u2, (int64_t)(u2 - u1), N_ENTRIES);

	/* 3. Write into the clone. */
	uint64_t s = 42;
	for (unsigned j = 0; j < N_WRITES; j++) {
		uint64_t i = sm_next(&s) % N_ENTRIES;
		key_of(i, k);
		val_of(i, 1, v);
		rfs_pool_wrlock(pool);
		rc = rfs_tree_put(pool, &clone, k, KLEN, v, VLEN, 0,
				  RFS_PUT_REPLACE);
		rfs_pool_unlock(pool);
		ok(rc, "write into the clone");
	}
	commit_both(&orig, &clone);
	uint64_t u3 = used_blocks();
	uint64_t copied = u3 - u2;
	printf("3. overwrote %u random entries of the clone, committed\n", N_WRITES);
	printf("   blocks copied: %" PRIu64 " (%.1f MiB, refcount records "
	       "included); still shared with the original: about %" PRIu64
	       " of its %" PRIu64 " nodes\n", copied, mib(copied),
	       nodes1 > copied ? nodes1 - copied : 0, nodes1);

	/* The original still has the old values. */
	size_t vlen = sizeof v;
	uint8_t vo[VLEN], vc[VLEN];
	s = 42;
	uint64_t i0 = sm_next(&s) % N_ENTRIES;
	key_of(i0, k);
	rfs_pool_rdlock(pool);
	ok(rfs_tree_lookup(pool, &orig, k, KLEN, vo, &vlen, NULL), "lookup");
	vlen = sizeof vc;
	ok(rfs_tree_lookup(pool, &clone, k, KLEN, vc, &vlen, NULL), "lookup");
	rfs_pool_unlock(pool);
	uint64_t vero, verc;
	memcpy(&vero, vo + 8, 8);
	memcpy(&verc, vc + 8, 8);
	printf("   entry #%" PRIu64 ": version %" PRIu64 " in the original, "
	       "%" PRIu64 " in the clone%s\n", i0, vero, verc,
	       vero == 0 && verc == 1 ? " (independent, as it should be)"
				      : "  <-- WRONG");

	/* 4. Check. */
	memset(&st, 0, sizeof st);
	rfs_pool_rdlock(pool);
	t0 = now_s();
	problems = rfs_check(pool, report, NULL, &st);
	double tcheck = now_s() - t0;
	rfs_pool_unlock(pool);
	if (problems < 0)
		fail("rfs_check", (int)problems);
	printf("4. rfs_check: %s in %.1f s: %" PRIu64 " nodes, %" PRIu64
	       " items, %" PRIu64 " blocks with refcount >= 2\n",
	       problems == 0 ? "clean" : "PROBLEMS FOUND", tcheck, st.nodes,
	       st.items, st.shared_blocks);

	rfs_pool_close(pool);
	pool = NULL;
	unlink(pool_path);
	printf("   pool removed.\n");
	return problems == 0 && vero == 0 && verc == 1 ? 0 : 1;
}
