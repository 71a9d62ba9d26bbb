/*
 * The fs operation object (src/fs/op.c): no commit splits an operation,
 * space freed in the running transaction is usable at once, and an
 * operation that fails halfway never gets committed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fsfix.h"
#include "reflinkfs/fs.h"
#include "reflinkfs/log.h"

static const struct rfs_ctx g_ctx = {.pid = 1, .umask = 022};

static rfs_nodeid mkfile(rfs_fs *fs, rfs_nodeid dir, const char *name)
{
	return fx_create(fs, &g_ctx, dir, name);
}

/* Write 1 MiB chunks of pattern into n until the pool refuses; returns
 * the bytes written. */
static uint64_t fill_file(rfs_fs *fs, rfs_nodeid n, uint8_t pattern)
{
	size_t chunk = 1u << 20;
	uint8_t *buf = malloc(chunk);
	uint64_t off = 0;
	memset(buf, pattern, chunk);
	for (;;) {
		ssize_t w = rfs_fs_write(fs, n, buf, chunk, off);
		if (w <= 0) {
			assert_int_equal(w, -ENOSPC);
			break;
		}
		off += (uint64_t)w;
	}
	free(buf);
	return off;
}

/*
 * The issue's repro: a full pool, blocks freed in the running
 * transaction, then a write that needs them.  The old alloc_data
 * committed in the middle of the write, after the write had shadowed
 * its path and before it stored it back: the durable catalog then
 * pointed at blocks the new bitmap marked free, and fsck after a crash
 * reported them "in use but marked free".
 */
static void test_full_pool_write_then_crash(void **state)
{
	(void)state;
	rfs_fs *fs = fx_fresh(16u << 20, RFS_FS_CRASHSIM);
	rfs_nodeid a = mkfile(fs, RFS_ROOT_NODE, "a");
	rfs_nodeid b = mkfile(fs, RFS_ROOT_NODE, "b");
	uint8_t blk[4096];
	memset(blk, 7, sizeof(blk));
	for (uint64_t off = 0; off < (1u << 20); off += sizeof(blk))
		assert_int_equal(rfs_fs_write(fs, b, blk, sizeof(blk), off), sizeof(blk));
	assert_true(fill_file(fs, a, 1) > 0);
	assert_int_equal(rfs_fs_sync(fs), 0);
	/* Frees pending in the running transaction (b is not open, so its
	 * blocks go at once). */
	rfs_fs_forget(fs, b, 1);
	assert_int_equal(rfs_fs_unlink(fs, RFS_ROOT_NODE, "b"), 0);
	memset(blk, 9, sizeof(blk));
	assert_int_equal(rfs_fs_write(fs, a, blk, sizeof(blk), 0), sizeof(blk));
	rfs_fs_crash(fs, RFS_CRASH_DROP_ALL, 1);
	assert_int_equal(fx_fsck(), 0);

	/* Whatever the crash kept is a state some commit made, and the
	 * pool takes changes again. */
	assert_int_equal(rfs_fs_open(g_pool, 0, &fs), 0);
	rfs_nodeid n;
	struct stat st;
	assert_int_equal(rfs_fs_lookup(fs, RFS_ROOT_NODE, "a", &n, &st), 0);
	assert_int_equal(rfs_fs_read(fs, n, blk, sizeof(blk), 0), sizeof(blk));
	assert_true(blk[0] == 1 || blk[0] == 9);
	assert_int_equal(rfs_fs_unlink(fs, RFS_ROOT_NODE, "a"), 0);
	rfs_fs_forget(fs, n, 1);
	assert_int_equal(rfs_fs_close(fs), 0);
	assert_int_equal(fx_fsck(), 0);
}

/*
 * The issue's repro exactly: fill, commit, overwrite 4 KiB, crash.  The
 * overwrite shadows its path (freeing committed blocks: pending frees),
 * then finds no data block; the old alloc_data committed right there.
 */
static void test_issue_repro(void **state)
{
	(void)state;
	rfs_fs *fs = fx_fresh(16u << 20, RFS_FS_CRASHSIM);
	rfs_nodeid a = mkfile(fs, RFS_ROOT_NODE, "a");
	assert_true(fill_file(fs, a, 1) > 0);
	assert_int_equal(rfs_fs_sync(fs), 0);
	uint8_t blk[4096];
	memset(blk, 9, sizeof(blk));
	ssize_t w = rfs_fs_write(fs, a, blk, sizeof(blk), 0);
	assert_true(w == (ssize_t)sizeof(blk) || w == -ENOSPC);
	rfs_fs_crash(fs, RFS_CRASH_DROP_ALL, 1);
	assert_int_equal(fx_fsck(), 0);
}

/*
 * A pool full of data and of metadata: deleting a big file makes its
 * space usable by the very next create, mkdir and write, not only after
 * the background commit.
 */
static void test_rm_space_usable_at_once(void **state)
{
	(void)state;
	rfs_fs *fs = fx_fresh(32u << 20, 0);
	rfs_nodeid big = mkfile(fs, RFS_ROOT_NODE, "big");
	rfs_nodeid rest = mkfile(fs, RFS_ROOT_NODE, "rest");
	size_t chunk = 8u << 20;
	uint8_t *buf = malloc(chunk);
	memset(buf, 3, chunk);
	assert_int_equal(rfs_fs_write(fs, big, buf, chunk, 0), (ssize_t)chunk);
	free(buf);
	assert_true(fill_file(fs, rest, 4) > 0);
	/* Then metadata until that is refused too. */
	char name[64];
	int files = 0;
	for (;; files++) {
		rfs_nodeid n;
		struct stat st;
		snprintf(name, sizeof(name), "f%06d", files);
		int ret = rfs_fs_create(fs, &g_ctx, RFS_ROOT_NODE, name, 0644, &n, &st);
		if (ret) {
			assert_int_equal(ret, -ENOSPC);
			break;
		}
		rfs_fs_forget(fs, n, 1);
	}
	assert_true(files > 0);
	assert_int_equal(rfs_fs_sync(fs), 0);
	rfs_nodeid n;
	struct stat st;
	assert_int_equal(rfs_fs_mkdir(fs, &g_ctx, RFS_ROOT_NODE, "d", 0755, &n, &st), -ENOSPC);

	assert_int_equal(rfs_fs_unlink(fs, RFS_ROOT_NODE, "big"), 0);
	rfs_fs_forget(fs, big, 1);
	/* No sync, no background commit: usable at once. */
	assert_int_equal(rfs_fs_mkdir(fs, &g_ctx, RFS_ROOT_NODE, "d", 0755, &n, &st), 0);
	rfs_nodeid c = mkfile(fs, n, "c");
	buf = malloc(1u << 20);
	memset(buf, 5, 1u << 20);
	assert_int_equal(rfs_fs_write(fs, c, buf, 1u << 20, 0), 1 << 20);
	free(buf);
	rfs_fs_forget(fs, c, 1);
	rfs_fs_forget(fs, n, 1);
	rfs_fs_forget(fs, rest, 1);
	assert_int_equal(rfs_fs_close(fs), 0);
	assert_int_equal(fx_fsck(), 0);
}

/* A write on a full pool is short or ENOSPC, and leaves the pool
 * consistent: everything written reads back after a remount. */
static void test_full_pool_short_write(void **state)
{
	(void)state;
	rfs_fs *fs = fx_fresh(16u << 20, 0);
	rfs_nodeid a = mkfile(fs, RFS_ROOT_NODE, "a");
	uint64_t size = fill_file(fs, a, 6);
	struct stat st;
	assert_int_equal(rfs_fs_getattr(fs, a, &st), 0);
	assert_int_equal((uint64_t)st.st_size, size);
	rfs_fs_forget(fs, a, 1);
	assert_int_equal(rfs_fs_close(fs), 0);
	assert_int_equal(fx_fsck(), 0);
	assert_int_equal(rfs_fs_open(g_pool, 0, &fs), 0);
	assert_int_equal(rfs_fs_lookup(fs, RFS_ROOT_NODE, "a", &a, &st), 0);
	assert_int_equal((uint64_t)st.st_size, size);
	uint8_t blk[4096];
	assert_int_equal(rfs_fs_read(fs, a, blk, sizeof(blk), size - sizeof(blk)),
			 sizeof(blk));
	assert_int_equal(blk[0], 6);
	assert_int_equal(blk[4095], 6);
	rfs_fs_forget(fs, a, 1);
	assert_int_equal(rfs_fs_close(fs), 0);
}

/*
 * An operation that fails for lack of a resource after storing part of
 * its change (link: the inode moves into the link table, then the new
 * name fails) is never committed: the pool turns read-only, and after a
 * remount the pool is in the state of the last commit, consistent.
 */
static void test_failure_halfway_discards_transaction(void **state)
{
	(void)state;
	rfs_fs *fs = fx_fresh(16u << 20, 0);
	rfs_nodeid a = mkfile(fs, RFS_ROOT_NODE, "a");
	rfs_nodeid d, n;
	struct stat st;
	assert_int_equal(rfs_fs_mkdir(fs, &g_ctx, RFS_ROOT_NODE, "d", 0755, &d, &st), 0);
	assert_int_equal(rfs_fs_sync(fs), 0);
	rfs_nodeid before = mkfile(fs, RFS_ROOT_NODE, "uncommitted");

	rfs_log_set_level(-1); /* the abort logs an error: expected */
	rfs_fs_inject_op_failure(fs, 1, -EIO);
	assert_int_equal(rfs_fs_link(fs, a, d, "b", &st), -EIO);
	/* Discarded: nothing more can change, and no commit happens. */
	assert_int_equal(rfs_fs_create(fs, &g_ctx, RFS_ROOT_NODE, "x", 0644, &n, &st), -EROFS);
	assert_int_equal(rfs_fs_sync(fs), -EROFS);
	rfs_fs_forget(fs, a, 1);
	rfs_fs_forget(fs, d, 1);
	rfs_fs_forget(fs, before, 1);
	assert_int_equal(rfs_fs_close(fs), -EROFS);
	rfs_log_set_level(RFS_LOG_INFO);
	assert_int_equal(fx_fsck(), 0);

	assert_int_equal(rfs_fs_open(g_pool, 0, &fs), 0);
	assert_int_equal(rfs_fs_lookup(fs, RFS_ROOT_NODE, "a", &a, &st), 0);
	assert_int_equal(st.st_nlink, 1);
	assert_int_equal(rfs_fs_lookup(fs, RFS_ROOT_NODE, "uncommitted", &n, &st), -ENOENT);
	assert_int_equal(rfs_fs_lookup(fs, RFS_ROOT_NODE, "d", &d, &st), 0);
	assert_int_equal(rfs_fs_lookup(fs, d, "b", &n, &st), -ENOENT);
	/* And the same link works now. */
	assert_int_equal(rfs_fs_link(fs, a, d, "b", &st), 0);
	assert_int_equal(st.st_nlink, 2);
	rfs_fs_forget(fs, a, 2);
	rfs_fs_forget(fs, d, 1);
	assert_int_equal(rfs_fs_close(fs), 0);
	assert_int_equal(fx_fsck(), 0);
}

/* A refusal decided before anything changed (EEXIST) is only an error:
 * the pool goes on. */
static void test_refusal_keeps_pool_writable(void **state)
{
	(void)state;
	rfs_fs *fs = fx_fresh(16u << 20, 0);
	rfs_nodeid a = mkfile(fs, RFS_ROOT_NODE, "a"), n;
	struct stat st;
	assert_int_equal(rfs_fs_create(fs, &g_ctx, RFS_ROOT_NODE, "a", 0644, &n, &st), -EEXIST);
	assert_int_equal(rfs_fs_link(fs, a, RFS_ROOT_NODE, "a", &st), -EEXIST);
	assert_int_equal(rfs_fs_rmdir(fs, RFS_ROOT_NODE, "a"), -ENOTDIR);
	rfs_nodeid b = mkfile(fs, RFS_ROOT_NODE, "b");
	assert_int_equal(rfs_fs_sync(fs), 0);
	rfs_fs_forget(fs, a, 1);
	rfs_fs_forget(fs, b, 1);
	assert_int_equal(rfs_fs_close(fs), 0);
	assert_int_equal(fx_fsck(), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_issue_repro, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_full_pool_write_then_crash, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_rm_space_usable_at_once, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_full_pool_short_write, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_failure_halfway_discards_transaction, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_refusal_keeps_pool_writable, fx_setup, fx_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
