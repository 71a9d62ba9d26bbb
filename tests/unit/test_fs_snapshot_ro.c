/*
 * Read-only flags of snapshots nested in a snapshot's source: a volume
 * that is read-only only because it sits in a read-only snapshot becomes
 * writable in a writable snapshot of that snapshot (what `reflinkfs
 * snapshot restore` of a read-only backup makes), while a volume that is
 * read-only in its own right stays read-only in every copy; across a
 * remount too.
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

static const struct rfs_ctx g_ctx = {.uid = 0, .gid = 0, .pid = 1, .umask = 022};

static rfs_nodeid at(rfs_fs *fs, const char *path)
{
	rfs_nodeid n;
	struct stat st;
	assert_int_equal(rfs_fs_resolve(fs, path, &n, &st), 0);
	return n;
}

static void snap(rfs_fs *fs, const char *src, const char *dstdir, const char *name, unsigned fl)
{
	rfs_nodeid s = at(fs, src), d = at(fs, dstdir), out;
	struct stat st;
	assert_int_equal(rfs_fs_snapshot(fs, s, d, name, fl, &out, &st), 0);
	rfs_fs_forget(fs, out, 1);
	rfs_fs_forget(fs, s, 1);
	rfs_fs_forget(fs, d, 1);
}

/* 0 when a file can be created in dir, else the error. */
static int can_create(rfs_fs *fs, const char *dir)
{
	rfs_nodeid d = at(fs, dir), f;
	struct stat st;
	int ret = rfs_fs_create(fs, &g_ctx, d, "probe", 0644, &f, &st);
	if (!ret) {
		rfs_fs_forget(fs, f, 1);
		assert_int_equal(rfs_fs_unlink(fs, d, "probe"), 0);
	}
	int w = rfs_fs_writable(fs, d);
	assert_int_equal(w, ret == -EROFS ? -EROFS : 0);
	rfs_fs_forget(fs, d, 1);
	return ret;
}

static void test_nested_ro(void **state)
{
	(void)state;
	rfs_fs *fs;
	rfs_nodeid n;
	struct stat st;
	unlink(g_pool);
	assert_int_equal(rfs_fs_mkfs(g_pool, 64u << 20, 0), 0);
	assert_int_equal(rfs_fs_open(g_pool, 0, &fs), 0);
	assert_int_equal(rfs_fs_mkdir(fs, &g_ctx, RFS_ROOT_NODE, "a", 0755, &n, &st), 0);
	rfs_fs_forget(fs, n, 1);
	assert_int_equal(rfs_fs_mkdir(fs, &g_ctx, RFS_ROOT_NODE, "x", 0755, &n, &st), 0);
	rfs_fs_forget(fs, n, 1);
	snap(fs, "x", "a", "rw", 0);		   /* a/rw: writable volume */
	snap(fs, "x", "a", "own", RFS_SNAP_RDONLY); /* a/own: read-only itself */
	snap(fs, "a", "", "R", RFS_SNAP_RDONLY);    /* R: all of it read-only */
	assert_int_equal(can_create(fs, "a/rw"), 0);
	assert_int_equal(can_create(fs, "a/own"), -EROFS);
	assert_int_equal(can_create(fs, "R"), -EROFS);
	assert_int_equal(can_create(fs, "R/rw"), -EROFS);
	assert_int_equal(can_create(fs, "R/own"), -EROFS);
	for (int round = 0; round < 2; round++) {
		if (round == 0) {
			snap(fs, "R", "", "W", 0); /* a writable copy of R */
			snap(fs, "R", "", "R2", RFS_SNAP_RDONLY);
		} else {
			assert_int_equal(rfs_fs_close(fs), 0);
			assert_int_equal(rfs_fs_fsck(g_pool, NULL, NULL), 0);
			assert_int_equal(rfs_fs_open(g_pool, 0, &fs), 0);
		}
		assert_int_equal(can_create(fs, "W"), 0);
		assert_int_equal(can_create(fs, "W/rw"), 0);
		assert_int_equal(can_create(fs, "W/own"), -EROFS);
		assert_int_equal(can_create(fs, "R2/rw"), -EROFS);
		assert_int_equal(can_create(fs, "R2/own"), -EROFS);
	}
	/* and a writable copy of that writable copy keeps it so */
	snap(fs, "W", "", "W3", 0);
	assert_int_equal(can_create(fs, "W3/rw"), 0);
	assert_int_equal(can_create(fs, "W3/own"), -EROFS);
	assert_int_equal(rfs_fs_close(fs), 0);
	assert_int_equal(rfs_fs_fsck(g_pool, NULL, NULL), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_nested_ro, fx_setup, fx_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
