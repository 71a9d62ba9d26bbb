/*
 * Deleting a snapshot detaches it in O(1) and frees what only it holds
 * through the drop queue (reclaim.c): right after rfs_fs_snapshot_delete
 * the queue holds its trees and statfs still counts their blocks; the
 * background release (rfs_fs_reclaim) gives every block back, also when
 * the pool was closed with the queue half done; fsck clean all along.  A
 * snapshot that still shares everything with its source costs nothing to
 * release.
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
#include <sys/statvfs.h>
#include <unistd.h>

#include "common/fsfix.h"
#include "reflinkfs/fs.h"

static const struct rfs_ctx g_ctx = {.uid = 0, .gid = 0, .pid = 1, .umask = 022};

static uint64_t free_blocks(rfs_fs *fs)
{
	struct statvfs sv;
	assert_int_equal(rfs_fs_statfs(fs, &sv), 0);
	return sv.f_bfree;
}

static struct rfs_fs_reclaim_stat queue(rfs_fs *fs)
{
	struct rfs_fs_reclaim_stat st;
	assert_int_equal(rfs_fs_reclaim_status(fs, &st), 0);
	return st;
}

/* d/{f (many extents), g (small), sub/h} */
static void make_tree(rfs_fs *fs, rfs_nodeid d)
{
	rfs_nodeid f, s, h;
	struct stat st;
	char buf[4096];
	assert_int_equal(rfs_fs_create(fs, &g_ctx, d, "f", 0644, &f, &st), 0);
	for (int i = 0; i < 3000; i++) {
		memset(buf, i, sizeof(buf));
		assert_int_equal(rfs_fs_write(fs, f, buf, sizeof(buf), (uint64_t)i * 8192),
				 (ssize_t)sizeof(buf));
	}
	rfs_fs_forget(fs, f, 1);
	assert_int_equal(rfs_fs_create(fs, &g_ctx, d, "g", 0644, &f, &st), 0);
	assert_int_equal(rfs_fs_write(fs, f, "g", 1, 0), 1);
	rfs_fs_forget(fs, f, 1);
	assert_int_equal(rfs_fs_mkdir(fs, &g_ctx, d, "sub", 0755, &s, &st), 0);
	assert_int_equal(rfs_fs_create(fs, &g_ctx, s, "h", 0644, &h, &st), 0);
	rfs_fs_forget(fs, h, 1);
	rfs_fs_forget(fs, s, 1);
}

static void test_delete_queued(void **state)
{
	(void)state;
	rfs_fs *fs;
	rfs_nodeid a, snap, keep;
	struct stat st;
	unlink(g_pool);
	/* nojournal: the journal would keep records of the deletions whose
	 * space is checked below. */
	assert_int_equal(rfs_fs_mkfs(g_pool, 256u << 20, 0), 0);
	assert_int_equal(rfs_fs_open(g_pool, RFS_FS_NOJOURNAL, &fs), 0);
	assert_int_equal(rfs_fs_sync(fs), 0);
	uint64_t free0 = free_blocks(fs);

	assert_int_equal(rfs_fs_mkdir(fs, &g_ctx, RFS_ROOT_NODE, "a", 0755, &a, &st), 0);
	make_tree(fs, a);
	assert_int_equal(rfs_fs_snapshot(fs, a, RFS_ROOT_NODE, "keep", 0, &keep, &st), 0);
	assert_int_equal(rfs_fs_snapshot(fs, a, RFS_ROOT_NODE, "s", 0, &snap, &st), 0);
	rfs_fs_forget(fs, keep, 1);
	rfs_fs_forget(fs, snap, 1);
	rfs_fs_forget(fs, a, 1);
	assert_int_equal(rfs_fs_sync(fs), 0);

	/* A snapshot sharing everything: its release is one decrement. */
	assert_int_equal(rfs_fs_snapshot_delete(fs, RFS_ROOT_NODE, "s"), 0);
	assert_int_equal(rfs_fs_reclaim(fs, 0), 0);
	assert_int_equal(queue(fs).trees, 0);

	/* Delete the source (its trees are shared with keep: freed at once,
	 * by a decrement), then keep, the last copy: detached, queued. */
	rfs_nodeid an;
	assert_int_equal(rfs_fs_lookup(fs, RFS_ROOT_NODE, "a", &an, &st), 0);
	rfs_nodeid sub;
	assert_int_equal(rfs_fs_lookup(fs, an, "sub", &sub, &st), 0);
	assert_int_equal(rfs_fs_unlink(fs, sub, "h"), 0);
	rfs_fs_forget(fs, sub, 1);
	assert_int_equal(rfs_fs_rmdir(fs, an, "sub"), 0);
	assert_int_equal(rfs_fs_unlink(fs, an, "f"), 0);
	assert_int_equal(rfs_fs_unlink(fs, an, "g"), 0);
	rfs_fs_forget(fs, an, 1);
	assert_int_equal(rfs_fs_rmdir(fs, RFS_ROOT_NODE, "a"), 0);
	assert_int_equal(rfs_fs_reclaim(fs, 0), 0);
	assert_int_equal(rfs_fs_sync(fs), 0);
	uint64_t free1 = free_blocks(fs);
	assert_true(free1 + 3000 < free0);

	assert_int_equal(rfs_fs_snapshot_delete(fs, RFS_ROOT_NODE, "keep"), 0);
	struct rfs_fs_reclaim_stat q = queue(fs);
	assert_true(q.trees >= 1);
	assert_true(q.blocks >= q.trees);
	assert_int_equal(rfs_fs_sync(fs), 0);
	/* nothing freed yet: the blocks wait in the queue */
	assert_true(free_blocks(fs) < free1 + 100);
	assert_int_equal(rfs_fs_lookup(fs, RFS_ROOT_NODE, "keep", &an, &st), -ENOENT);

	/* Closed with the queue half done: fsck clean, and the next open
	 * goes on from there. */
	assert_true(rfs_fs_reclaim(fs, 64) > 0);
	assert_int_equal(rfs_fs_close(fs), 0);
	assert_int_equal(rfs_fs_fsck(g_pool, fx_fsck_line, NULL), 0);
	assert_int_equal(rfs_fs_open(g_pool, RFS_FS_NOJOURNAL, &fs), 0);
	assert_true(queue(fs).trees >= 1);
	assert_int_equal(rfs_fs_reclaim(fs, 0), 0);
	q = queue(fs);
	assert_int_equal(q.trees, 0);
	assert_int_equal(q.blocks, 0);
	assert_int_equal(rfs_fs_sync(fs), 0);
	/* every block back, as on the fresh pool (allowing the root's and the
	 * top volume's own nodes, which changed) */
	assert_true(free_blocks(fs) + 8 >= free0);
	assert_int_equal(rfs_fs_close(fs), 0);
	assert_int_equal(rfs_fs_fsck(g_pool, fx_fsck_line, NULL), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_delete_queued, fx_setup, fx_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
