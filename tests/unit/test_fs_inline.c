/*
 * Small files keep their extent map inline in the inode record
 * (RFS_INODE_INLEXT, src/fs/emap.c): no file tree of their own.  Writes,
 * growth past the record into a tree and back by truncate, hole punch,
 * clones of an inline file written on either side, xattrs moving the map
 * to a tree, snapshots, and fsck clean after each step.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <linux/falloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fsfix.h"
#include "reflinkfs/fs.h"
#include "reflinkfs/log.h"

#include "fs/fs_internal.h"

#define BS RFS_BLOCK_SIZE

static const struct rfs_ctx g_ctx = {.uid = 1000, .gid = 1000, .pid = 1};

static rfs_fs *fresh(void)
{
	return fx_fresh(64 << 20, 0);
}

/* Close, fsck clean, reopen. */
static rfs_fs *reopen(rfs_fs *fs)
{
	return fx_reopen(fs, 0);
}

static rfs_nodeid mkfile(rfs_fs *fs, const char *name)
{
	return fx_create(fs, &g_ctx, RFS_ROOT_NODE, name);
}

/* The record of node n. */
static struct rfs_irec rec_of(rfs_fs *fs, rfs_nodeid id)
{
	struct rfs_irec r;
	fx_rec(fs, id, &r);
	return r;
}

static bool is_inline(rfs_fs *fs, rfs_nodeid id)
{
	struct rfs_irec r = rec_of(fs, id);
	return (r.i.flags & RFS_INODE_INLEXT) && !r.i.subtree;
}

static bool has_tree(rfs_fs *fs, rfs_nodeid id)
{
	struct rfs_irec r = rec_of(fs, id);
	return r.i.subtree && !(r.i.flags & RFS_INODE_INLEXT);
}

static void fill(uint8_t *b, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		b[i] = (uint8_t)(seed * 131 + i * 7 + (i >> 12));
}

static void expect_data(rfs_fs *fs, rfs_nodeid n, const uint8_t *want, size_t len)
{
	uint8_t *rd = malloc(len + 1);
	assert_int_equal(rfs_fs_read(fs, n, rd, len + 1, 0), (ssize_t)len);
	assert_memory_equal(rd, want, len);
	free(rd);
}

static uint64_t used(rfs_fs *fs)
{
	struct rfs_pool_stats st;
	rfs_pool_stats(rfs_fs_pool(fs), &st);
	return st.used_blocks;
}

/* Write, grow into a tree, shrink back by truncate, punch. */
static void test_grow_shrink(void **state)
{
	(void)state;
	rfs_fs *fs = fresh();
	rfs_nodeid a = mkfile(fs, "a");
	assert_false(is_inline(fs, a)); /* empty: no map at all */
	size_t n = 40 * BS;
	uint8_t *buf = malloc(n);
	fill(buf, n, 1);
	assert_int_equal(rfs_fs_write(fs, a, buf, 1000, 0), 1000);
	assert_true(is_inline(fs, a));
	expect_data(fs, a, buf, 1000);
	/* a few extents, still inline: write every other block */
	for (size_t b = 2; b < 12; b += 2)
		assert_int_equal(rfs_fs_write(fs, a, buf + b * BS, BS, b * BS), (ssize_t)BS);
	assert_true(is_inline(fs, a));
	fs = reopen(fs);
	assert_int_equal(rfs_fs_resolve(fs, "a", &a, NULL), 0);
	assert_true(is_inline(fs, a));
	/* many extents: moves into a file tree */
	for (size_t b = 12; b < 40; b += 2)
		assert_int_equal(rfs_fs_write(fs, a, buf + b * BS, BS, b * BS), (ssize_t)BS);
	assert_true(has_tree(fs, a));
	for (size_t b = 0; b < 40; b++)
		if (b % 2 || b < 2)
			assert_int_equal(rfs_fs_write(fs, a, buf + b * BS, BS, b * BS), (ssize_t)BS);
	expect_data(fs, a, buf, n);
	fs = reopen(fs);
	assert_int_equal(rfs_fs_resolve(fs, "a", &a, NULL), 0);
	/* back to a few blocks by truncate: inline again */
	struct stat st = {.st_size = 3 * BS + 5};
	assert_int_equal(rfs_fs_setattr(fs, a, &st, RFS_SET_SIZE, NULL), 0);
	assert_true(is_inline(fs, a));
	uint8_t *exp = calloc(1, n);
	memcpy(exp, buf, 3 * BS + 5);
	expect_data(fs, a, exp, 3 * BS + 5);
	assert_int_equal(rfs_fs_getattr(fs, a, &st), 0);
	assert_int_equal(st.st_blocks, 4 * (BS / 512));
	/* hole punch and growth by truncate */
	assert_int_equal(rfs_fs_fallocate(fs, a, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, BS,
					  BS), 0);
	memset(exp + BS, 0, BS);
	expect_data(fs, a, exp, 3 * BS + 5);
	st.st_size = 9 * BS;
	assert_int_equal(rfs_fs_setattr(fs, a, &st, RFS_SET_SIZE, NULL), 0);
	expect_data(fs, a, exp, 9 * BS);
	assert_true(is_inline(fs, a));
	/* preallocation inline */
	assert_int_equal(rfs_fs_fallocate(fs, a, 0, 20 * BS, 4 * BS), 0);
	assert_true(is_inline(fs, a));
	expect_data(fs, a, exp, 24 * BS);
	fs = reopen(fs);
	assert_int_equal(rfs_fs_resolve(fs, "a", &a, NULL), 0);
	/* to zero: no map, no tree */
	st.st_size = 0;
	assert_int_equal(rfs_fs_setattr(fs, a, &st, RFS_SET_SIZE, NULL), 0);
	struct rfs_irec r = rec_of(fs, a);
	assert_int_equal(r.i.subtree, 0);
	assert_int_equal(r.taillen, 0);
	assert_int_equal(r.i.blocks, 0);
	fs = reopen(fs);
	rfs_fs_close(fs);
	free(buf);
	free(exp);
}

/* A clone of an inline file copies the record (a reference per extent,
 * no new tree node); writes to either side stay apart. */
static void test_clone_inline(void **state)
{
	(void)state;
	rfs_fs *fs = fresh();
	rfs_nodeid a = mkfile(fs, "a");
	size_t n = 5 * BS + 300;
	uint8_t *buf = malloc(n), *w = malloc(BS);
	fill(buf, n, 2);
	assert_int_equal(rfs_fs_write(fs, a, buf, n, 0), (ssize_t)n);
	assert_true(is_inline(fs, a));
	rfs_nodeid b = mkfile(fs, "b");
	assert_int_equal(rfs_fs_sync(fs), 0);
	uint64_t u0 = used(fs);
	assert_int_equal(rfs_fs_clone_range(fs, a, 0, b, 0, n), (ssize_t)n);
	assert_int_equal(rfs_fs_sync(fs), 0);
	/* No data copied, no file tree: at most the shadowed directory leaf
	 * and refcount/catalog nodes of the commit, never 6 data blocks. */
	assert_true(used(fs) - u0 < 6);
	assert_true(is_inline(fs, b));
	expect_data(fs, b, buf, n);
	/* write to the clone: the source keeps its data */
	fill(w, BS, 9);
	assert_int_equal(rfs_fs_write(fs, b, w, 100, BS + 7), 100);
	expect_data(fs, a, buf, n);
	uint8_t *exp = malloc(n);
	memcpy(exp, buf, n);
	memcpy(exp + BS + 7, w, 100);
	expect_data(fs, b, exp, n);
	/* write to the source: the clone keeps its data */
	assert_int_equal(rfs_fs_write(fs, a, w, BS, 0), (ssize_t)BS);
	expect_data(fs, b, exp, n);
	fs = reopen(fs);
	assert_int_equal(rfs_fs_resolve(fs, "a", &a, NULL), 0);
	assert_int_equal(rfs_fs_resolve(fs, "b", &b, NULL), 0);
	expect_data(fs, b, exp, n);
	/* clone onto a destination with an xattr (a tree): it keeps it */
	rfs_nodeid c = mkfile(fs, "c");
	assert_int_equal(rfs_fs_setxattr(fs, &g_ctx, c, "user.k", "v", 1, 0), 0);
	assert_int_equal(rfs_fs_clone_file(fs, b, c), 0);
	expect_data(fs, c, exp, n);
	char v[4];
	assert_int_equal(rfs_fs_getxattr(fs, c, "user.k", v, sizeof v), 1);
	/* a minimal access ACL (what cp -a sets on every file) is not kept:
	 * the map stays inline */
	static const uint8_t minacl[28] = {2, 0, 0, 0, 1, 0, 6, 0, 0xff, 0xff, 0xff, 0xff,
					   4, 0, 4, 0, 0xff, 0xff, 0xff, 0xff,
					   0x20, 0, 4, 0, 0xff, 0xff, 0xff, 0xff};
	assert_int_equal(rfs_fs_setxattr(fs, &g_ctx, a, "system.posix_acl_access", minacl,
					 sizeof minacl, 0), 0);
	assert_true(is_inline(fs, a));
	/* an xattr on an inline file moves its map into a tree */
	assert_int_equal(rfs_fs_setxattr(fs, &g_ctx, b, "user.x", "y", 1, 0), 0);
	assert_true(has_tree(fs, b));
	expect_data(fs, b, exp, n);
	/* a tree source cloned onto an inline destination */
	rfs_nodeid d = mkfile(fs, "d");
	/* past RFS_INLDATA_MAX, so an inline extent map, not inline data */
	assert_int_equal(rfs_fs_write(fs, d, buf, 1000, 0), 1000);
	assert_true(is_inline(fs, d));
	assert_int_equal(rfs_fs_clone_file(fs, b, d), 0);
	expect_data(fs, d, exp, n);
	/* range clones within and across inline files */
	rfs_nodeid e = mkfile(fs, "e");
	assert_int_equal(rfs_fs_clone_range(fs, a, BS, e, 2 * BS, 2 * BS), (ssize_t)(2 * BS));
	assert_true(is_inline(fs, e));
	uint8_t *rd = malloc(2 * BS);
	assert_int_equal(rfs_fs_read(fs, e, rd, 2 * BS, 2 * BS), (ssize_t)(2 * BS));
	assert_memory_equal(rd, buf + BS, 2 * BS);
	fs = reopen(fs);
	/* unlink everything: space back, fsck clean */
	const char *names[] = {"a", "b", "c", "d", "e"};
	for (size_t i = 0; i < 5; i++)
		assert_int_equal(rfs_fs_unlink(fs, RFS_ROOT_NODE, names[i]), 0);
	fs = reopen(fs);
	rfs_fs_close(fs);
	free(buf);
	free(w);
	free(exp);
	free(rd);
}

/* A snapshot shares the directory leaf holding inline records; writes on
 * either side after it stay apart, and deleting both frees everything. */
static void test_snapshot_inline(void **state)
{
	(void)state;
	rfs_fs *fs = fresh();
	rfs_nodeid dir;
	struct stat st;
	assert_int_equal(rfs_fs_mkdir(fs, &g_ctx, RFS_ROOT_NODE, "d", 0755, &dir, &st), 0);
	uint8_t buf[3000];
	fill(buf, sizeof buf, 5);
	char name[16];
	for (int i = 0; i < 20; i++) {
		rfs_nodeid f;
		snprintf(name, sizeof name, "f%d", i);
		assert_int_equal(rfs_fs_create(fs, &g_ctx, dir, name, 0644, &f, &st), 0);
		assert_int_equal(rfs_fs_write(fs, f, buf, sizeof buf, 0), (ssize_t)sizeof buf);
	}
	fs = reopen(fs);
	assert_int_equal(rfs_fs_resolve(fs, "d", &dir, NULL), 0);
	rfs_nodeid snap;
	assert_int_equal(rfs_fs_snapshot(fs, dir, RFS_ROOT_NODE, "s", 0, &snap, &st), 0);
	rfs_nodeid f0;
	assert_int_equal(rfs_fs_resolve(fs, "d/f0", &f0, NULL), 0);
	assert_int_equal(rfs_fs_write(fs, f0, "XY", 2, 0), 2);
	rfs_nodeid s0;
	assert_int_equal(rfs_fs_resolve(fs, "s/f0", &s0, NULL), 0);
	expect_data(fs, s0, buf, sizeof buf);
	fs = reopen(fs);
	assert_int_equal(rfs_fs_resolve(fs, "s/f1", &s0, NULL), 0);
	expect_data(fs, s0, buf, sizeof buf);
	rfs_fs_close(fs);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_grow_shrink, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_clone_inline, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_inline, fx_setup, fx_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
