/*
 * A directory of many entries, through the fs API: create N files in one
 * directory (committing as a mount would), look random names up, list the
 * directory across resumed readdir calls, remount, remove them all, fsck.
 * RFS_BIGDIR_N sets N (default 100000 under `make test`; the figure for
 * millions is in docs/ARCHITECTURE.md, measured with RFS_BIGDIR_N=2000000).
 */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "reflinkfs/fs.h"
#include "reflinkfs/log.h"
#include "reflinkfs/tree.h"

static char pool_path[512];

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct count {
	uint64_t n, next;
	unsigned char *seen;
	uint64_t max;
	int dup;
	unsigned batch;
};

static int count_fn(void *arg, const char *name, const struct stat *st,
		    rfs_nodeid node, uint64_t next_off)
{
	struct count *c = arg;
	(void)st;
	(void)node;
	/* Stop after every 4096 names to exercise resumed listings; the
	 * entry we stop at is not consumed and comes again next time. */
	if (c->batch == 4096) {
		c->batch = 0;
		return 1;
	}
	c->next = next_off;
	if (name[0] == 'f') {
		uint64_t i = strtoull(name + 1, NULL, 10);
		if (i < c->max) {
			if (c->seen[i])
				c->dup++;
			c->seen[i] = 1;
		}
		c->n++;
		c->batch++;
	}
	return 0;
}

static void test_bigdir(void **state)
{
	(void)state;
	const char *e = getenv("RFS_BIGDIR_N");
	uint64_t n = e ? strtoull(e, NULL, 10) : 100000;
	struct rfs_ctx ctx = {.umask = 022};
	rfs_fs *fs;
	rfs_nodeid dir, f;
	struct stat st;
	char name[64];
	double t0;

	assert_int_equal(rfs_fs_mkfs(pool_path, 4ull << 30, RFS_CREATE_FORCE), 0);
	/* Without the change journal: the end checks that deleting every
	 * entry leaves (almost) no items, and the journal keeps records of
	 * the deletions (its scale is measured by bench/journal.sh). */
	assert_int_equal(rfs_fs_open(pool_path, RFS_FS_NOJOURNAL, &fs), 0);
	assert_int_equal(rfs_fs_mkdir(fs, &ctx, RFS_ROOT_NODE, "big", 0755, &dir, &st), 0);

	t0 = now();
	for (uint64_t i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "f%07" PRIu64 "-some-longer-name", i);
		assert_int_equal(rfs_fs_create(fs, &ctx, dir, name, 0644, &f, &st), 0);
		rfs_fs_forget(fs, f, 1);
		if (i % 50000 == 49999)
			assert_int_equal(rfs_fs_sync(fs), 0);
	}
	assert_int_equal(rfs_fs_sync(fs), 0);
	fprintf(stderr, "bigdir: %" PRIu64 " creates in %.2f s\n", n, now() - t0);
	assert_int_equal(rfs_fs_getattr(fs, dir, &st), 0);

	/* The directory survives a remount. */
	rfs_fs_forget(fs, dir, 1);
	assert_int_equal(rfs_fs_close(fs), 0);
	assert_int_equal(rfs_fs_open(pool_path, RFS_FS_NOJOURNAL, &fs), 0);
	assert_int_equal(rfs_fs_lookup(fs, RFS_ROOT_NODE, "big", &dir, &st), 0);

	t0 = now();
	srand(7);
	for (int k = 0; k < 10000; k++) {
		uint64_t i = (uint64_t)rand() % n;
		snprintf(name, sizeof(name), "f%07" PRIu64 "-some-longer-name", i);
		assert_int_equal(rfs_fs_lookup(fs, dir, name, &f, &st), 0);
		assert_true(S_ISREG(st.st_mode));
		rfs_fs_forget(fs, f, 1);
	}
	snprintf(name, sizeof(name), "f%07" PRIu64 "-some-longer-name", n);
	assert_int_equal(rfs_fs_lookup(fs, dir, name, &f, &st), -ENOENT);
	fprintf(stderr, "bigdir: 10000 random lookups in %.2f s\n", now() - t0);

	struct count c = { 0, 0, calloc(n, 1), n, 0, 0 };
	assert_non_null(c.seen);
	t0 = now();
	for (int rounds = 0;; rounds++) {
		uint64_t before = c.n;
		assert_int_equal(rfs_fs_readdir(fs, dir, c.next, false, count_fn, &c), 0);
		if (c.n == before)
			break;
		assert_true(rounds < 10000000);
	}
	fprintf(stderr, "bigdir: listed %" PRIu64 " entries in %.2f s\n", c.n, now() - t0);
	assert_int_equal(c.dup, 0);
	assert_int_equal(c.n, n);
	for (uint64_t i = 0; i < n; i++)
		assert_true(c.seen[i]);
	free(c.seen);

	t0 = now();
	for (uint64_t i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "f%07" PRIu64 "-some-longer-name", i);
		assert_int_equal(rfs_fs_unlink(fs, dir, name), 0);
		if (i % 50000 == 49999)
			assert_int_equal(rfs_fs_sync(fs), 0);
	}
	fprintf(stderr, "bigdir: %" PRIu64 " unlinks in %.2f s\n", n, now() - t0);
	rfs_fs_forget(fs, dir, 1);
	assert_int_equal(rfs_fs_rmdir(fs, RFS_ROOT_NODE, "big"), 0);
	assert_int_equal(rfs_fs_close(fs), 0);

	/* Everything is gone and the pool is consistent. */
	rfs_pool *pool;
	assert_int_equal(rfs_pool_open(pool_path, RFS_OPEN_RDONLY, &pool), 0);
	rfs_pool_rdlock(pool);
	struct rfs_check_stats cs;
	assert_int_equal(rfs_check(pool, NULL, NULL, &cs), 0);
	rfs_pool_unlock(pool);
	rfs_pool_close(pool);
	assert_true(cs.items < 100);
}

int main(void)
{
	const char *dir = getenv("RFS_TEST_DIR") ? getenv("RFS_TEST_DIR") : "/tmp";
	snprintf(pool_path, sizeof(pool_path), "%s/bigdir-%d.pool", dir, (int)getpid());
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bigdir),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	unlink(pool_path);
	return rc;
}
