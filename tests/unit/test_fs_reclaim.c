/*
 * Deleted files released in the background (src/fs/reclaim.c): removing
 * a big file only detaches it (the queue's counter shows it right after,
 * statfs still counts its blocks), rfs_fs_reclaim gives the space back in
 * bounded steps, a half-done queue survives close, crash and reopen with
 * fsck clean, small files are still freed at once, and every path that
 * deletes a file's data (unlink, rename over, the last close of an
 * unlinked file, orphans after a crash, a whole-file clone onto a file)
 * goes through it.  A thread releasing while others write leaves every
 * file intact.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fsfix.h"
#include "reflinkfs/fs.h"
#include "reflinkfs/log.h"

#define BS RFS_BLOCK_SIZE

static const struct rfs_ctx g_ctx = {.pid = 1, .umask = 022};

/* Without the change journal: the checks compare the free blocks with
 * an empty pool's, and the journal keeps records of the deletions. */
static rfs_fs *fresh(unsigned flags)
{
	return fx_fresh(512ull << 20, flags | RFS_FS_NOJOURNAL);
}

static rfs_fs *reopen(unsigned flags)
{
	rfs_fs *fs;
	assert_int_equal(rfs_fs_open(g_pool, flags | RFS_FS_NOJOURNAL, &fs), 0);
	return fs;
}

static void fsck_clean(void)
{
	assert_int_equal(rfs_fs_fsck(g_pool, fx_fsck_line, NULL), 0);
}

static rfs_nodeid mkfile(rfs_fs *fs, const char *name)
{
	return fx_create(fs, &g_ctx, RFS_ROOT_NODE, name);
}

/* A file of nblocks data blocks written one block in two (a sparse
 * file of many extents, so its tree is several leaves); the block at
 * 2*i holds the byte seed + i. */
static rfs_nodeid sparse_file(rfs_fs *fs, const char *name, uint64_t nblocks, uint8_t seed)
{
	rfs_nodeid n = mkfile(fs, name);
	uint8_t buf[BS];
	for (uint64_t i = 0; i < nblocks; i++) {
		memset(buf, (uint8_t)(seed + i), BS);
		assert_int_equal(rfs_fs_write(fs, n, buf, BS, 2 * i * BS), (ssize_t)BS);
	}
	return n;
}

static void check_sparse(rfs_fs *fs, rfs_nodeid n, uint64_t nblocks, uint8_t seed)
{
	uint8_t buf[BS];
	for (uint64_t i = 0; i < nblocks; i += 7) {
		assert_int_equal(rfs_fs_read(fs, n, buf, BS, 2 * i * BS), (ssize_t)BS);
		for (size_t k = 0; k < BS; k += 512)
			assert_int_equal(buf[k], (uint8_t)(seed + i));
	}
}

static uint64_t bfree(rfs_fs *fs)
{
	struct statvfs sv;
	assert_int_equal(rfs_fs_statfs(fs, &sv), 0);
	return sv.f_bfree;
}

static struct rfs_fs_reclaim_stat rstat(rfs_fs *fs)
{
	struct rfs_fs_reclaim_stat st;
	assert_int_equal(rfs_fs_reclaim_status(fs, &st), 0);
	return st;
}

/* rm of a big file is deferred; the space comes back step by step,
 * across close (half done: fsck clean) and reopen. */
static void test_unlink_big_deferred(void **state)
{
	(void)state;
	rfs_fs *fs = fresh(0);
	assert_int_equal(rfs_fs_sync(fs), 0);
	uint64_t free0 = bfree(fs);
	rfs_nodeid n = sparse_file(fs, "big", 6000, 1);
	rfs_fs_forget(fs, n, 1);
	assert_int_equal(rfs_fs_sync(fs), 0);
	uint64_t free1 = bfree(fs);
	assert_true(free0 - free1 >= 6000);

	assert_int_equal(rfs_fs_unlink(fs, RFS_ROOT_NODE, "big"), 0);
	struct rfs_fs_reclaim_stat st = rstat(fs);
	assert_int_equal(st.trees, 1);
	assert_true(st.blocks >= 6000);
	/* detached, not freed: statfs counts the blocks as used */
	assert_true(bfree(fs) + 4 >= free1 && bfree(fs) <= free1 + 4);
	struct stat sb;
	rfs_nodeid gone;
	assert_int_equal(rfs_fs_lookup(fs, RFS_ROOT_NODE, "big", &gone, &sb), -ENOENT);

	/* a few bounded steps, then close with the queue half done */
	uint64_t last = st.blocks;
	for (int i = 0; i < 3; i++) {
		int64_t left = rfs_fs_reclaim(fs, 500);
		assert_true(left > 0);
		assert_true((uint64_t)left < last);
		last = (uint64_t)left;
	}
	uint64_t free2 = bfree(fs);
	assert_true(free2 > free1 + 1000);
	assert_true(free2 < free0 - 1000);
	assert_int_equal(rfs_fs_close(fs), 0);
	fsck_clean();

	fs = reopen(0);
	st = rstat(fs);
	assert_int_equal(st.trees, 1);
	assert_int_equal(st.blocks, last);
	assert_int_equal(rfs_fs_reclaim(fs, 0), 0);
	st = rstat(fs);
	assert_int_equal(st.trees, 0);
	assert_int_equal(st.blocks, 0);
	assert_true(bfree(fs) + 4 >= free0 && bfree(fs) <= free0 + 4);
	assert_int_equal(rfs_fs_close(fs), 0);
	fsck_clean();
}

/* Small files (one leaf) are still freed at once: rm of many small files
 * queues nothing. */
static void test_small_files_inline(void **state)
{
	(void)state;
	rfs_fs *fs = fresh(0);
	char name[32];
	uint8_t buf[3 * BS];
	memset(buf, 7, sizeof(buf));
	for (int i = 0; i < 200; i++) {
		snprintf(name, sizeof(name), "f%d", i);
		rfs_nodeid n = mkfile(fs, name);
		assert_int_equal(rfs_fs_write(fs, n, buf, (size_t)(i % 3 + 1) * BS, 0),
				 (ssize_t)((i % 3 + 1) * BS));
		rfs_fs_forget(fs, n, 1);
	}
	assert_int_equal(rfs_fs_sync(fs), 0);
	uint64_t free1 = bfree(fs);
	for (int i = 0; i < 200; i++) {
		snprintf(name, sizeof(name), "f%d", i);
		assert_int_equal(rfs_fs_unlink(fs, RFS_ROOT_NODE, name), 0);
	}
	struct rfs_fs_reclaim_stat st = rstat(fs);
	assert_int_equal(st.trees, 0);
	assert_true(bfree(fs) >= free1 + 400);
	assert_int_equal(rfs_fs_close(fs), 0);
	fsck_clean();
}

/* Every path that drops a file's data: rename over it, the last close of
 * an unlinked open file, a whole-file clone onto it, an orphan left by
 * a crash. */
static void test_every_deletion_path(void **state)
{
	(void)state;
	rfs_fs *fs = fresh(RFS_FS_CRASHSIM);
	rfs_nodeid a = sparse_file(fs, "a", 3000, 10);
	rfs_nodeid b = sparse_file(fs, "b", 3000, 20);
	rfs_fs_forget(fs, b, 1); /* not in use: its data goes with its name */
	rfs_nodeid c = sparse_file(fs, "c", 3000, 30);
	rfs_nodeid s = sparse_file(fs, "s", 10, 40);
	assert_int_equal(rfs_fs_sync(fs), 0);

	/* rename a over b: b's data is released */
	assert_int_equal(rfs_fs_rename(fs, &g_ctx, RFS_ROOT_NODE, "a", RFS_ROOT_NODE, "b", 0), 0);
	assert_int_equal(rstat(fs).trees, 1);
	check_sparse(fs, a, 3000, 10);
	assert_int_equal(rfs_fs_reclaim(fs, 0), 0);
	check_sparse(fs, a, 3000, 10);

	/* a clone of s onto the file (now named b): a's old data goes */
	assert_int_equal(rfs_fs_clone_file(fs, s, a), 0);
	assert_int_equal(rstat(fs).trees, 1);
	assert_int_equal(rfs_fs_reclaim(fs, 0), 0);
	check_sparse(fs, a, 10, 40);
	check_sparse(fs, s, 10, 40);
	rfs_fs_forget(fs, a, 1);
	rfs_fs_forget(fs, s, 1);

	/* c unlinked while open: kept until its last close, then queued */
	assert_int_equal(rfs_fs_open_node(fs, c), 0);
	assert_int_equal(rfs_fs_unlink(fs, RFS_ROOT_NODE, "c"), 0);
	assert_int_equal(rstat(fs).trees, 0);
	check_sparse(fs, c, 3000, 30);
	rfs_fs_forget(fs, c, 1);
	assert_int_equal(rstat(fs).trees, 0);
	rfs_fs_release(fs, c);
	assert_int_equal(rstat(fs).trees, 1);
	assert_int_equal(rfs_fs_reclaim(fs, 0), 0);

	/* d unlinked while open, then a crash: the next open queues it */
	rfs_nodeid d = sparse_file(fs, "d", 3000, 50);
	assert_int_equal(rfs_fs_open_node(fs, d), 0);
	assert_int_equal(rfs_fs_unlink(fs, RFS_ROOT_NODE, "d"), 0);
	assert_int_equal(rfs_fs_sync(fs), 0);
	rfs_fs_crash(fs, RFS_CRASH_DROP_ALL, 1);
	fsck_clean();
	fs = reopen(0);
	assert_int_equal(rstat(fs).trees, 1);
	assert_int_equal(rfs_fs_close(fs), 0);
	fsck_clean(); /* the queue survives close */
	fs = reopen(0);
	assert_int_equal(rfs_fs_reclaim(fs, 0), 0);
	assert_int_equal(rfs_fs_close(fs), 0);
	fsck_clean();
}

/* A crash while the queue is half released: the next open resumes it
 * from the last commit, fsck clean before and after. */
static void test_crash_half_done(void **state)
{
	(void)state;
	rfs_fs *fs = fresh(RFS_FS_CRASHSIM);
	rfs_nodeid k = sparse_file(fs, "keep", 500, 60);
	rfs_fs_forget(fs, k, 1);
	assert_int_equal(rfs_fs_sync(fs), 0);
	uint64_t free0 = bfree(fs);
	for (int i = 0; i < 3; i++) {
		char name[8] = {'x', (char)('0' + i), 0};
		rfs_nodeid n = sparse_file(fs, name, 2000, (uint8_t)i);
		rfs_fs_forget(fs, n, 1);
	}
	assert_int_equal(rfs_fs_sync(fs), 0);
	for (int i = 0; i < 3; i++) {
		char name[8] = {'x', (char)('0' + i), 0};
		assert_int_equal(rfs_fs_unlink(fs, RFS_ROOT_NODE, name), 0);
	}
	assert_true(rfs_fs_reclaim(fs, 700) > 0);
	assert_int_equal(rfs_fs_sync(fs), 0);
	struct rfs_fs_reclaim_stat committed = rstat(fs);
	assert_int_equal(committed.trees, 3);
	assert_true(rfs_fs_reclaim(fs, 1500) > 0); /* lost with the crash */
	rfs_fs_crash(fs, RFS_CRASH_DROP_ALL, 2);
	fsck_clean();
	fs = reopen(0);
	struct rfs_fs_reclaim_stat st = rstat(fs);
	assert_int_equal(st.trees, committed.trees);
	assert_int_equal(st.blocks, committed.blocks);
	assert_int_equal(rfs_fs_reclaim(fs, 0), 0);
	assert_true(bfree(fs) + 4 >= free0 && bfree(fs) <= free0 + 4);
	rfs_nodeid got;
	struct stat sb;
	assert_int_equal(rfs_fs_lookup(fs, RFS_ROOT_NODE, "keep", &got, &sb), 0);
	check_sparse(fs, got, 500, 60);
	rfs_fs_forget(fs, got, 1);
	assert_int_equal(rfs_fs_close(fs), 0);
	fsck_clean();
}

/* A releasing thread and writers at the same time. */
struct worker {
	rfs_fs *fs;
	atomic_bool stop;
	long steps;
};

static void *reclaimer(void *arg)
{
	struct worker *w = arg;
	while (!atomic_load(&w->stop)) {
		int64_t left = rfs_fs_reclaim(w->fs, 64);
		assert_true(left >= 0);
		w->steps++;
	}
	return NULL;
}

static void test_concurrent(void **state)
{
	(void)state;
	rfs_fs *fs = fresh(0);
	struct worker w = {.fs = fs};
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, reclaimer, &w), 0);
	char name[16];
	for (int round = 0; round < 6; round++) {
		snprintf(name, sizeof(name), "r%d", round);
		rfs_nodeid n = sparse_file(fs, name, 1500, (uint8_t)round);
		if (round > 0) {
			char prev[16];
			snprintf(prev, sizeof(prev), "r%d", round - 1);
			assert_int_equal(rfs_fs_unlink(fs, RFS_ROOT_NODE, prev), 0);
		}
		check_sparse(fs, n, 1500, (uint8_t)round);
		rfs_fs_forget(fs, n, 1);
	}
	atomic_store(&w.stop, true);
	pthread_join(th, NULL);
	assert_true(w.steps > 0);
	assert_int_equal(rfs_fs_reclaim(fs, 0), 0);
	assert_int_equal(rfs_fs_close(fs), 0);
	fsck_clean();
}

static int g_errors;
static void count_errors(void *arg, int level, const char *line)
{
	(void)arg;
	if (level == RFS_LOG_ERR) {
		g_errors++;
		fprintf(stderr, "%s\n", line);
	}
}

/* A read-only open, or a pool frozen read-only, leaves the queue alone
 * and says so. */
static void test_readonly(void **state)
{
	(void)state;
	rfs_fs *fs = fresh(0);
	rfs_nodeid n = sparse_file(fs, "big", 3000, 3);
	rfs_fs_forget(fs, n, 1);
	assert_int_equal(rfs_fs_unlink(fs, RFS_ROOT_NODE, "big"), 0);
	assert_int_equal(rfs_fs_close(fs), 0);
	fs = reopen(RFS_FS_RDONLY);
	assert_int_equal(rstat(fs).trees, 1);
	assert_int_equal(rfs_fs_reclaim(fs, 100), -EROFS);
	assert_int_equal(rfs_fs_close(fs), 0);
	fsck_clean();
	/* a pool frozen by a remount read-only: the same, until thawed */
	fs = reopen(0);
	assert_int_equal(rfs_pool_set_frozen(rfs_fs_pool(fs), true), 0);
	g_errors = 0;
	rfs_log_set_sink(count_errors, NULL);
	assert_int_equal(rfs_fs_reclaim(fs, 100), -EROFS);
	rfs_log_set_sink(NULL, NULL);
	assert_int_equal(g_errors, 0); /* waiting for a thaw is no error */
	assert_int_equal(rstat(fs).trees, 1);
	assert_int_equal(rfs_pool_set_frozen(rfs_fs_pool(fs), false), 0);
	assert_int_equal(rfs_fs_reclaim(fs, 0), 0);
	assert_int_equal(rstat(fs).trees, 0);
	assert_int_equal(rfs_fs_close(fs), 0);
	fsck_clean();
}

int main(void)
{
	rfs_log_set_level(RFS_LOG_WARN);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_unlink_big_deferred),
		cmocka_unit_test(test_small_files_inline),
		cmocka_unit_test(test_every_deletion_path),
		cmocka_unit_test(test_crash_half_done),
		cmocka_unit_test(test_concurrent),
		cmocka_unit_test(test_readonly),
	};
	return cmocka_run_group_tests(tests, fx_setup, fx_teardown);
}
