/*
 * Unit tests of the filesystem model through include/reflinkfs/fs.h,
 * without mounting anything.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "common/fsfix.h"
#include "reflinkfs/fs.h"
#include "reflinkfs/log.h"
#include "reflinkfs/tree.h"

static const struct rfs_ctx g_ctx = {.uid = 1000, .gid = 1000, .pid = 1};

static rfs_fs *fresh(uint64_t size)
{
	return fx_fresh(size, 0);
}

static rfs_fs *reopen(rfs_fs *fs)
{
	return fx_reopen(fs, 0);
}

static rfs_nodeid mkfile(rfs_fs *fs, rfs_nodeid dir, const char *name)
{
	rfs_nodeid n;
	struct stat st;
	assert_int_equal(rfs_fs_create(fs, &g_ctx, dir, name, 0644, &n, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	return n;
}

static void fill(uint8_t *b, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		b[i] = (uint8_t)(seed * 131 + i * 7 + (i >> 12));
}

static void test_mkfs_root(void **state)
{
	(void)state;
	rfs_fs *fs = fresh(64 << 20);
	struct stat st;
	assert_int_equal(rfs_fs_getattr(fs, RFS_ROOT_NODE, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(st.st_nlink, 2);
	assert_int_equal(st.st_ino, (1ull << 48) | 1);
	/* mkfs refuses to overwrite */
	assert_int_not_equal(rfs_fs_mkfs(g_pool, 64 << 20, 0), 0);
	fs = reopen(fs);
	assert_int_equal(rfs_fs_getattr(fs, RFS_ROOT_NODE, &st), 0);
	rfs_fs_close(fs);
	/* a filesystem of a newer format version is refused, untouched */
	rfs_pool *pool;
	assert_int_equal(rfs_pool_open(g_pool, 0, &pool), 0);
	rfs_pool_wrlock(pool);
	rfs_tree vol;
	uint8_t meta[256];
	size_t ml = sizeof(meta);
	assert_int_equal(rfs_catalog_get(pool, RFS_TOP_VOLUME, &vol), 0);
	assert_int_equal(rfs_tree_lookup(pool, &vol, "M", 1, meta, &ml, NULL), 0);
	meta[8] = 99; /* version field */
	assert_int_equal(rfs_tree_put(pool, &vol, "M", 1, meta, ml, 0, RFS_PUT_REPLACE), 0);
	assert_int_equal(rfs_catalog_set(pool, RFS_TOP_VOLUME, &vol), 0);
	assert_int_equal(rfs_pool_commit_locked(pool), 0);
	rfs_pool_unlock(pool);
	rfs_pool_close(pool);
	rfs_log_set_level(RFS_LOG_ERR - 1);
	assert_int_equal(rfs_fs_open(g_pool, 0, &fs), -EPROTONOSUPPORT);
	rfs_log_set_level(RFS_LOG_INFO);
	/* a pool without a filesystem is refused */
	unlink(g_pool);
	assert_int_equal(rfs_pool_create(g_pool, 64 << 20, 0), 0);
	rfs_log_set_level(RFS_LOG_ERR - 1);
	assert_int_equal(rfs_fs_open(g_pool, 0, &fs), -EINVAL);
	rfs_log_set_level(RFS_LOG_INFO);
}

static void test_write_read_persist(void **state)
{
	(void)state;
	rfs_fs *fs = fresh(64 << 20);
	rfs_nodeid f = mkfile(fs, RFS_ROOT_NODE, "a");
	size_t n = 3 * 1024 * 1024 + 123;
	uint8_t *buf = malloc(n), *rd = malloc(n);
	fill(buf, n, 1);
	assert_int_equal(rfs_fs_write(fs, f, buf, n, 0), (ssize_t)n);
	/* unaligned overwrite in the middle */
	memset(buf + 5000, 0xab, 10000);
	assert_int_equal(rfs_fs_write(fs, f, buf + 5000, 10000, 5000), 10000);
	assert_int_equal(rfs_fs_read(fs, f, rd, n, 0), (ssize_t)n);
	assert_memory_equal(buf, rd, n);
	struct stat st;
	assert_int_equal(rfs_fs_getattr(fs, f, &st), 0);
	assert_int_equal(st.st_size, n);
	assert_int_equal(st.st_blocks, (n + 4095) / 4096 * 8);
	fs = reopen(fs);
	rfs_nodeid g;
	assert_int_equal(rfs_fs_lookup(fs, RFS_ROOT_NODE, "a", &g, &st), 0);
	assert_int_equal(st.st_size, n);
	memset(rd, 0, n);
	assert_int_equal(rfs_fs_read(fs, g, rd, n, 0), (ssize_t)n);
	assert_memory_equal(buf, rd, n);
	/* read past EOF */
	assert_int_equal(rfs_fs_read(fs, g, rd, 100, n), 0);
	assert_int_equal(rfs_fs_read(fs, g, rd, 100, n - 10), 10);
	rfs_fs_close(fs);
	free(buf);
	free(rd);
}

static int count_fn(void *arg, const char *name, const struct stat *st, rfs_nodeid node,
		    uint64_t next)
{
	(void)name;
	(void)st;
	(void)node;
	(void)next;
	(*(int *)arg)++;
	return 0;
}

struct stopper {
	int seen, stop_after;
	uint64_t last;
};

static int stop_fn(void *arg, const char *name, const struct stat *st, rfs_nodeid node,
		   uint64_t next)
{
	(void)name;
	(void)st;
	(void)node;
	struct stopper *s = arg;
	if (s->seen == s->stop_after)
		return 1;
	s->seen++;
	s->last = next;
	return 0;
}

static void test_dirs(void **state)
{
	(void)state;
	rfs_fs *fs = fresh(64 << 20);
	rfs_nodeid d, e, x;
	struct stat st;
	assert_int_equal(rfs_fs_mkdir(fs, &g_ctx, RFS_ROOT_NODE, "d", 0755, &d, &st), 0);
	assert_int_equal(st.st_uid, 1000);
	assert_int_equal(rfs_fs_mkdir(fs, &g_ctx, d, "e", 0700, &e, &st), 0);
	assert_int_equal(rfs_fs_mkdir(fs, &g_ctx, d, "e", 0700, &x, &st), -EEXIST);
	for (int i = 0; i < 2000; i++) {
		char name[64];
		snprintf(name, sizeof(name), "file-%05d", i);
		rfs_nodeid f = mkfile(fs, e, name);
		rfs_fs_forget(fs, f, 1);
	}
	int cnt = 0;
	assert_int_equal(rfs_fs_readdir(fs, e, 0, false, count_fn, &cnt), 0);
	assert_int_equal(cnt, 2002);
	/* resume from an offset: nothing lost, nothing twice */
	struct stopper s1 = {0, 700, 0};
	assert_int_equal(rfs_fs_readdir(fs, e, 0, false, stop_fn, &s1), 0);
	struct stopper s2 = {0, 1 << 30, 0};
	assert_int_equal(rfs_fs_readdir(fs, e, s1.last, false, stop_fn, &s2), 0);
	assert_int_equal(s1.seen + s2.seen, 2002);
	/* readdirplus hands out references */
	cnt = 0;
	assert_int_equal(rfs_fs_readdir(fs, d, 0, true, count_fn, &cnt), 0);
	assert_int_equal(cnt, 3);
	assert_int_equal(rfs_fs_getattr(fs, d, &st), 0);
	assert_int_equal(st.st_nlink, 3);
	assert_int_equal(rfs_fs_rmdir(fs, d, "e"), -ENOTEMPTY);
	assert_int_equal(rfs_fs_unlink(fs, d, "e"), -EISDIR);
	assert_int_equal(rfs_fs_unlink(fs, e, "nope"), -ENOENT);
	fs = reopen(fs);
	assert_int_equal(rfs_fs_resolve(fs, "d/e/file-01999", &x, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	rfs_fs_forget(fs, x, 1);
	assert_int_equal(rfs_fs_resolve(fs, "d/e", &e, &st), 0);
	assert_int_equal(st.st_size, 2000);
	for (int i = 0; i < 2000; i++) {
		char name[64];
		snprintf(name, sizeof(name), "file-%05d", i);
		assert_int_equal(rfs_fs_unlink(fs, e, name), 0);
	}
	assert_int_equal(rfs_fs_resolve(fs, "d", &d, &st), 0);
	assert_int_equal(rfs_fs_rmdir(fs, d, "e"), 0);
	assert_int_equal(rfs_fs_getattr(fs, d, &st), 0);
	assert_int_equal(st.st_nlink, 2);
	/* long names */
	char longname[300];
	memset(longname, 'n', 255);
	longname[255] = 0;
	x = mkfile(fs, d, longname);
	longname[255] = 'n';
	longname[256] = 0;
	assert_int_equal(rfs_fs_create(fs, &g_ctx, d, longname, 0644, &x, &st), -ENAMETOOLONG);
	fs = reopen(fs);
	rfs_fs_close(fs);
}

static int ext_count(void *arg, const struct rfs_extent_info *e)
{
	uint64_t *a = arg;
	a[0]++;
	a[1] += e->shared;
	a[2] += e->length / 4096;
	return 0;
}

static void test_clone(void **state)
{
	(void)state;
	rfs_fs *fs = fresh(128 << 20);
	rfs_nodeid a = mkfile(fs, RFS_ROOT_NODE, "a");
	size_t n = 2 * 1024 * 1024 + 77;
	uint8_t *buf = malloc(n), *rd = malloc(n);
	fill(buf, n, 3);
	/* many extents: write every other block first */
	for (size_t off = 0; off < n; off += 8192)
		assert_true(rfs_fs_write(fs, a, buf + off, off + 4096 <= n ? 4096 : n - off, off) > 0);
	for (size_t off = 4096; off < n; off += 8192)
		assert_true(rfs_fs_write(fs, a, buf + off, off + 4096 <= n ? 4096 : n - off, off) > 0);
	rfs_nodeid b = mkfile(fs, RFS_ROOT_NODE, "b");
	struct rfs_pool_stats before, after;
	assert_int_equal(rfs_fs_sync(fs), 0);
	rfs_pool_stats(rfs_fs_pool(fs), &before);
	assert_int_equal(rfs_fs_clone_range(fs, a, 0, b, 0, 1ull << 40), (ssize_t)n);
	rfs_pool_stats(rfs_fs_pool(fs), &after);
	assert_true(after.used_blocks - before.used_blocks < 16);
	assert_int_equal(rfs_fs_read(fs, b, rd, n, 0), (ssize_t)n);
	assert_memory_equal(buf, rd, n);
	uint64_t cnt[3] = {0};
	assert_int_equal(rfs_fs_extents(fs, b, ext_count, cnt), 0);
	assert_int_equal(cnt[1], cnt[2]); /* every block shared */
	assert_int_equal(cnt[2], (n + 4095) / 4096);
	/* independence: write to the clone, source unchanged */
	memset(rd, 0x5a, 10000);
	assert_int_equal(rfs_fs_write(fs, b, rd, 10000, 3000), 10000);
	assert_int_equal(rfs_fs_read(fs, a, rd, n, 0), (ssize_t)n);
	assert_memory_equal(buf, rd, n);
	/* write to the source, clone unchanged there */
	uint8_t z[4096];
	memset(z, 0x11, sizeof(z));
	assert_int_equal(rfs_fs_write(fs, a, z, 4096, 1 << 20), 4096);
	assert_int_equal(rfs_fs_read(fs, b, rd, 4096, 1 << 20), 4096);
	assert_memory_equal(buf + (1 << 20), rd, 4096);
	/* range clone, aligned and not */
	rfs_nodeid c = mkfile(fs, RFS_ROOT_NODE, "c");
	assert_int_equal(rfs_fs_clone_range(fs, b, 8192, c, 4096, 65536), 65536);
	assert_int_equal(rfs_fs_clone_range(fs, b, 100, c, 200000, 50000), 50000);
	assert_int_equal(rfs_fs_read(fs, c, rd, 65536, 4096), 65536);
	uint8_t *exp = malloc(n);
	assert_int_equal(rfs_fs_read(fs, b, exp, n, 0), (ssize_t)n);
	assert_memory_equal(exp + 8192, rd, 65536);
	assert_int_equal(rfs_fs_read(fs, c, rd, 50000, 200000), 50000);
	assert_memory_equal(exp + 100, rd, 50000);
	/* overlapping same-file clone is refused */
	assert_int_equal(rfs_fs_clone_range(fs, b, 0, b, 4096, 8192), -EINVAL);
	/* whole-file clone call */
	rfs_nodeid d = mkfile(fs, RFS_ROOT_NODE, "d");
	assert_int_equal(rfs_fs_write(fs, d, "junk", 4, 0), 4);
	assert_int_equal(rfs_fs_setxattr(fs, &g_ctx, b, "user.src", "s", 1, 0), 0);
	assert_int_equal(rfs_fs_setxattr(fs, &g_ctx, d, "user.dst", "d", 1, 0), 0);
	assert_int_equal(rfs_fs_clone_file(fs, b, d), 0);
	assert_int_equal(rfs_fs_read(fs, d, rd, n, 0), (ssize_t)n);
	assert_memory_equal(exp, rd, n);
	char v[8];
	assert_int_equal(rfs_fs_getxattr(fs, d, "user.src", v, sizeof(v)), -ENODATA);
	assert_int_equal(rfs_fs_getxattr(fs, d, "user.dst", v, sizeof(v)), 1);
	assert_int_equal(rfs_fs_getxattr(fs, b, "user.src", v, sizeof(v)), 1);
	fs = reopen(fs);
	assert_int_equal(rfs_fs_resolve(fs, "b", &b, NULL), 0);
	assert_int_equal(rfs_fs_read(fs, b, rd, n, 0), (ssize_t)n);
	assert_memory_equal(exp, rd, n);
	/* delete source and clones: fsck clean, space back */
	assert_int_equal(rfs_fs_unlink(fs, RFS_ROOT_NODE, "a"), 0);
	assert_int_equal(rfs_fs_unlink(fs, RFS_ROOT_NODE, "c"), 0);
	assert_int_equal(rfs_fs_unlink(fs, RFS_ROOT_NODE, "d"), 0);
	assert_int_equal(rfs_fs_read(fs, b, rd, n, 0), (ssize_t)n);
	assert_memory_equal(exp, rd, n);
	rfs_fs_forget(fs, b, 1);
	assert_int_equal(rfs_fs_unlink(fs, RFS_ROOT_NODE, "b"), 0);
	fs = reopen(fs);
	rfs_fs_close(fs);
	free(buf);
	free(rd);
	free(exp);
}

/* copy_file_range in several calls at equal offsets, as cp does for big
 * and sparse files: O(1) continuations, and correct fallbacks. */
static void test_clone_multicall(void **state)
{
	(void)state;
	rfs_fs *fs = fresh(64 << 20);
	size_t n = 200 * 1024;
	uint8_t *src = calloc(1, n), *rd = malloc(n), *exp = malloc(n);
	fill(src, 40 * 1024, 5);
	fill(src + 100 * 1024, 40 * 1024, 6);
	rfs_nodeid a = mkfile(fs, RFS_ROOT_NODE, "a");
	assert_int_equal(rfs_fs_write(fs, a, src, 40 * 1024, 0), 40 * 1024);
	assert_int_equal(rfs_fs_write(fs, a, src + 100 * 1024, 40 * 1024, 100 * 1024), 40 * 1024);
	struct stat st = {0};
	st.st_size = (off_t)n;
	assert_int_equal(rfs_fs_setattr(fs, a, &st, RFS_SET_SIZE, NULL), 0);
	/* cp of a sparse file: one call per data region, then ftruncate */
	rfs_nodeid b = mkfile(fs, RFS_ROOT_NODE, "b");
	assert_int_equal(rfs_fs_clone_range(fs, a, 0, b, 0, 40 * 1024), 40 * 1024);
	assert_int_equal(rfs_fs_getattr(fs, b, &st), 0);
	assert_int_equal(st.st_size, 40 * 1024);
	assert_int_equal(rfs_fs_read(fs, b, rd, n, 0), 40 * 1024);
	assert_memory_equal(rd, src, 40 * 1024);
	uint64_t o;
	assert_int_equal(rfs_fs_lseek(fs, b, 0, SEEK_HOLE, &o), 0);
	assert_int_equal(o, 40 * 1024);
	assert_int_equal(rfs_fs_clone_range(fs, a, 100 * 1024, b, 100 * 1024, 40 * 1024), 40 * 1024);
	st.st_size = (off_t)n;
	assert_int_equal(rfs_fs_setattr(fs, b, &st, RFS_SET_SIZE, NULL), 0);
	assert_int_equal(rfs_fs_read(fs, b, rd, n, 0), (ssize_t)n);
	assert_memory_equal(rd, src, n);
	uint64_t cnt[3] = {0};
	assert_int_equal(rfs_fs_extents(fs, b, ext_count, cnt), 0);
	assert_int_equal(cnt[1], cnt[2]); /* all shared: the O(1) path was taken */
	/* the source changes between calls: the later call copies its new data */
	rfs_nodeid c = mkfile(fs, RFS_ROOT_NODE, "c");
	assert_int_equal(rfs_fs_clone_range(fs, a, 0, c, 0, 16 * 1024), 16 * 1024);
	uint8_t z[100];
	memset(z, 0xee, sizeof(z));
	assert_int_equal(rfs_fs_write(fs, a, z, 100, 30 * 1024), 100);
	assert_int_equal(rfs_fs_write(fs, a, z, 100, 1000), 100); /* before the first cut */
	assert_int_equal(rfs_fs_clone_range(fs, a, 16 * 1024, c, 16 * 1024, n), (ssize_t)(n - 16 * 1024));
	memcpy(exp, src, n);
	memcpy(exp + 30 * 1024, z, 100); /* new data after the cut is copied */
	assert_int_equal(rfs_fs_read(fs, c, rd, n, 0), (ssize_t)n);
	assert_memory_equal(rd, exp, n);
	/* a skipped gap that is not a hole in the source reads as zeros */
	rfs_nodeid d = mkfile(fs, RFS_ROOT_NODE, "d");
	assert_int_equal(rfs_fs_clone_range(fs, a, 0, d, 0, 10 * 1024), 10 * 1024);
	assert_int_equal(rfs_fs_clone_range(fs, a, 20 * 1024, d, 20 * 1024, 10 * 1024), 10 * 1024);
	assert_int_equal(rfs_fs_read(fs, a, exp, n, 0), (ssize_t)n);
	assert_int_equal(rfs_fs_read(fs, d, rd, n, 0), 30 * 1024);
	assert_memory_equal(rd, exp, 10 * 1024);
	for (int i = 10 * 1024; i < 20 * 1024; i++)
		assert_int_equal(rd[i], 0);
	assert_memory_equal(rd + 20 * 1024, exp + 20 * 1024, 10 * 1024);
	/* growing the destination otherwise never shows the hidden tail */
	rfs_nodeid e = mkfile(fs, RFS_ROOT_NODE, "e");
	assert_int_equal(rfs_fs_clone_range(fs, a, 0, e, 0, 5000), 5000);
	st.st_size = (off_t)n;
	assert_int_equal(rfs_fs_setattr(fs, e, &st, RFS_SET_SIZE, NULL), 0);
	assert_int_equal(rfs_fs_read(fs, e, rd, n, 0), (ssize_t)n);
	assert_memory_equal(rd, exp, 5000);
	for (size_t i = 5000; i < n; i++)
		assert_int_equal(rd[i], 0);
	rfs_nodeid f = mkfile(fs, RFS_ROOT_NODE, "f");
	assert_int_equal(rfs_fs_clone_range(fs, a, 0, f, 0, 5000), 5000);
	assert_int_equal(rfs_fs_write(fs, f, "x", 1, 50000), 1);
	assert_int_equal(rfs_fs_read(fs, f, rd, n, 0), 50001);
	for (size_t i = 5000; i < 50000; i++)
		assert_int_equal(rd[i], 0);
	fs = reopen(fs);
	rfs_fs_close(fs);
	free(src);
	free(rd);
	free(exp);
}

/*
 * A file whose size was set by a first copy_file_range onto an empty file
 * hides the source's extents past its EOF (RFS_INODE_TAILCLONE).  Cloning
 * it, whole or by range, must not hand those hidden bytes to a file that
 * does not know it has them: growing the clone must read zeros.  (Found by
 * the integration model test, seed 1044.)
 */
static void test_clone_hidden_tail(void **state)
{
	(void)state;
	rfs_fs *fs = fresh(64 << 20);
	size_t n = 300000, mid_off = 57575, mid_len = 114026, end = mid_off + mid_len;
	uint8_t *src = malloc(n), *rd = malloc(n), *zero = calloc(1, n);
	fill(src, n, 9);
	/* A leading hole up to the first whole block after mid_off, so that
	 * the O(1) path (no source extents before the range) is taken. */
	size_t data_off = (mid_off / RFS_BLOCK_SIZE + 1) * RFS_BLOCK_SIZE;
	memset(src, 0, data_off);
	rfs_nodeid a = mkfile(fs, RFS_ROOT_NODE, "a");
	assert_int_equal(rfs_fs_write(fs, a, src + data_off, n - data_off, data_off),
			 (ssize_t)(n - data_off));
	rfs_nodeid b = mkfile(fs, RFS_ROOT_NODE, "b");
	assert_int_equal(rfs_fs_clone_range(fs, a, mid_off, b, mid_off, mid_len),
			 (ssize_t)mid_len);
	struct stat st;
	assert_int_equal(rfs_fs_getattr(fs, b, &st), 0);
	assert_int_equal(st.st_size, end);

	/* whole-file clone of b, then grow the clone */
	rfs_nodeid c = mkfile(fs, RFS_ROOT_NODE, "c");
	assert_int_equal(rfs_fs_clone_range(fs, b, 0, c, 0, end), (ssize_t)end);
	memset(&st, 0, sizeof(st));
	st.st_size = (off_t)n;
	assert_int_equal(rfs_fs_setattr(fs, c, &st, RFS_SET_SIZE, NULL), 0);
	assert_int_equal(rfs_fs_read(fs, c, rd, n, 0), (ssize_t)n);
	assert_memory_equal(rd, src, end);
	assert_memory_equal(rd + end, zero, n - end);

	/* range clone of b's last partial block into a file ending there */
	rfs_nodeid e = mkfile(fs, RFS_ROOT_NODE, "e");
	uint64_t from = end / RFS_BLOCK_SIZE * RFS_BLOCK_SIZE - RFS_BLOCK_SIZE;
	assert_int_equal(rfs_fs_clone_range(fs, b, from, e, from, end - from),
			 (ssize_t)(end - from));
	assert_int_equal(rfs_fs_setattr(fs, e, &st, RFS_SET_SIZE, NULL), 0);
	assert_int_equal(rfs_fs_read(fs, e, rd, n, 0), (ssize_t)n);
	assert_memory_equal(rd + from, src + from, end - from);
	assert_memory_equal(rd + end, zero, n - end);

	/* b itself, grown, reads zeros too */
	assert_int_equal(rfs_fs_setattr(fs, b, &st, RFS_SET_SIZE, NULL), 0);
	assert_int_equal(rfs_fs_read(fs, b, rd, n, 0), (ssize_t)n);
	assert_memory_equal(rd + end, zero, n - end);
	rfs_fs_forget(fs, a, 1);
	rfs_fs_forget(fs, b, 1);
	rfs_fs_forget(fs, c, 1);
	rfs_fs_forget(fs, e, 1);
	fs = reopen(fs);
	assert_int_equal(rfs_fs_close(fs), 0);
	free(src);
	free(rd);
	free(zero);
}

static void test_sparse_seek_punch(void **state)
{
	(void)state;
	rfs_fs *fs = fresh(64 << 20);
	rfs_nodeid f = mkfile(fs, RFS_ROOT_NODE, "s");
	uint8_t b[8192];
	memset(b, 7, sizeof(b));
	assert_int_equal(rfs_fs_write(fs, f, b, 8192, 1 << 20), 8192);
	assert_int_equal(rfs_fs_write(fs, f, b, 100, 4 << 20), 100);
	uint64_t o;
	assert_int_equal(rfs_fs_lseek(fs, f, 0, SEEK_DATA, &o), 0);
	assert_int_equal(o, 1 << 20);
	assert_int_equal(rfs_fs_lseek(fs, f, 0, SEEK_HOLE, &o), 0);
	assert_int_equal(o, 0);
	assert_int_equal(rfs_fs_lseek(fs, f, (1 << 20) + 5, SEEK_HOLE, &o), 0);
	assert_int_equal(o, (1 << 20) + 8192);
	assert_int_equal(rfs_fs_lseek(fs, f, (1 << 20) + 8192, SEEK_DATA, &o), 0);
	assert_int_equal(o, 4 << 20);
	assert_int_equal(rfs_fs_lseek(fs, f, (4 << 20) + 1, SEEK_HOLE, &o), 0);
	assert_int_equal(o, (4 << 20) + 100);
	assert_int_equal(rfs_fs_lseek(fs, f, (4 << 20) + 100, SEEK_DATA, &o), -ENXIO);
	/* punch the first block of the first region */
	assert_int_equal(rfs_fs_fallocate(fs, f, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
					  1 << 20, 4096), 0);
	assert_int_equal(rfs_fs_lseek(fs, f, 0, SEEK_DATA, &o), 0);
	assert_int_equal(o, (1 << 20) + 4096);
	/* clone and punch the clone: the source keeps its data */
	rfs_nodeid g = mkfile(fs, RFS_ROOT_NODE, "g");
	assert_int_equal(rfs_fs_clone_range(fs, f, 0, g, 0, 5 << 20), (4 << 20) + 100);
	assert_int_equal(rfs_fs_fallocate(fs, g, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
					  (1 << 20) + 4096, 4096 + 50), 0);
	assert_int_equal(rfs_fs_lseek(fs, g, 0, SEEK_DATA, &o), 0);
	assert_int_equal(o, 4 << 20);
	assert_int_equal(rfs_fs_lseek(fs, f, 0, SEEK_DATA, &o), 0);
	assert_int_equal(o, (1 << 20) + 4096);
	uint8_t r[100];
	assert_int_equal(rfs_fs_read(fs, g, r, 100, 4 << 20), 100);
	assert_memory_equal(r, b, 100);
	/* partial punch zeroes bytes */
	assert_int_equal(rfs_fs_fallocate(fs, g, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
					  (4 << 20) + 10, 20), 0);
	assert_int_equal(rfs_fs_read(fs, g, r, 100, 4 << 20), 100);
	for (int i = 0; i < 100; i++)
		assert_int_equal(r[i], i >= 10 && i < 30 ? 0 : 7);
	/* truncate down and up: the tail reads zero */
	struct stat st = {0};
	st.st_size = (4 << 20) + 5;
	assert_int_equal(rfs_fs_setattr(fs, g, &st, RFS_SET_SIZE, NULL), 0);
	st.st_size = (4 << 20) + 100;
	assert_int_equal(rfs_fs_setattr(fs, g, &st, RFS_SET_SIZE, NULL), 0);
	assert_int_equal(rfs_fs_read(fs, g, r, 100, 4 << 20), 100);
	for (int i = 0; i < 100; i++)
		assert_int_equal(r[i], i < 5 ? 7 : 0);
	/* fallocate: size and unwritten zeros */
	rfs_nodeid h = mkfile(fs, RFS_ROOT_NODE, "h");
	assert_int_equal(rfs_fs_fallocate(fs, h, 0, 0, 1 << 20), 0);
	assert_int_equal(rfs_fs_getattr(fs, h, &st), 0);
	assert_int_equal(st.st_size, 1 << 20);
	assert_int_equal(st.st_blocks, 2048);
	assert_int_equal(rfs_fs_read(fs, h, r, 100, 5000), 100);
	for (int i = 0; i < 100; i++)
		assert_int_equal(r[i], 0);
	assert_int_equal(rfs_fs_fallocate(fs, h, FALLOC_FL_KEEP_SIZE, 1 << 20, 1 << 20), 0);
	assert_int_equal(rfs_fs_getattr(fs, h, &st), 0);
	assert_int_equal(st.st_size, 1 << 20);
	assert_int_equal(rfs_fs_fallocate(fs, h, FALLOC_FL_ZERO_RANGE, 100, 10000), 0);
	assert_int_equal(rfs_fs_fallocate(fs, h, 0x40, 0, 1), -EOPNOTSUPP);
	fs = reopen(fs);
	rfs_fs_close(fs);
}

static void test_links_orphans(void **state)
{
	(void)state;
	rfs_fs *fs = fresh(64 << 20);
	rfs_nodeid d, f;
	struct stat st;
	assert_int_equal(rfs_fs_mkdir(fs, &g_ctx, RFS_ROOT_NODE, "d", 0755, &d, &st), 0);
	f = mkfile(fs, d, "f");
	assert_int_equal(rfs_fs_write(fs, f, "hello", 5, 0), 5);
	assert_int_equal(rfs_fs_link(fs, f, RFS_ROOT_NODE, "g", &st), 0);
	assert_int_equal(st.st_nlink, 2);
	assert_int_equal(rfs_fs_link(fs, f, d, "f", &st), -EEXIST);
	assert_int_equal(rfs_fs_link(fs, d, RFS_ROOT_NODE, "dd", &st), -EPERM);
	rfs_nodeid g;
	struct stat st2;
	assert_int_equal(rfs_fs_lookup(fs, RFS_ROOT_NODE, "g", &g, &st2), 0);
	assert_int_equal(g, f); /* same inode, same node */
	assert_int_equal(st2.st_ino, st.st_ino);
	fs = reopen(fs);
	assert_int_equal(rfs_fs_resolve(fs, "d/f", &f, &st), 0);
	assert_int_equal(st.st_nlink, 2);
	assert_int_equal(rfs_fs_unlink(fs, RFS_ROOT_NODE, "g"), 0);
	assert_int_equal(rfs_fs_getattr(fs, f, &st), 0);
	assert_int_equal(st.st_nlink, 1);
	char buf[16];
	assert_int_equal(rfs_fs_read(fs, f, buf, 16, 0), 5);
	/* rename a dir holding a linked name, then fsck */
	assert_int_equal(rfs_fs_resolve(fs, "d", &d, &st), 0);
	assert_int_equal(rfs_fs_link(fs, f, d, "f2", &st), 0);
	assert_int_equal(rfs_fs_rename(fs, &g_ctx, RFS_ROOT_NODE, "d", RFS_ROOT_NODE, "e", 0), 0);
	fs = reopen(fs);
	/* orphan: open, unlink, still readable, then gone */
	assert_int_equal(rfs_fs_resolve(fs, "e/f", &f, &st), 0);
	assert_int_equal(rfs_fs_open_node(fs, f), 0);
	rfs_nodeid e;
	assert_int_equal(rfs_fs_resolve(fs, "e", &e, &st), 0);
	assert_int_equal(rfs_fs_unlink(fs, e, "f"), 0);
	assert_int_equal(rfs_fs_unlink(fs, e, "f2"), 0);
	assert_int_equal(rfs_fs_getattr(fs, f, &st), 0);
	assert_int_equal(st.st_nlink, 0);
	assert_int_equal(rfs_fs_read(fs, f, buf, 16, 0), 5);
	assert_int_equal(rfs_fs_write(fs, f, "world", 5, 5), 5);
	/* a crash now leaves an orphan that the next mount frees */
	assert_int_equal(rfs_fs_sync(fs), 0);
	rfs_fs_abandon(fs);
	assert_int_equal(fx_fsck(), 0);
	assert_int_equal(rfs_fs_open(g_pool, 0, &fs), 0);
	fs = reopen(fs);
	/* and the ordinary way */
	assert_int_equal(rfs_fs_resolve(fs, "e", &e, &st), 0);
	f = mkfile(fs, e, "o");
	assert_int_equal(rfs_fs_open_node(fs, f), 0);
	assert_int_equal(rfs_fs_unlink(fs, e, "o"), 0);
	assert_int_equal(rfs_fs_write(fs, f, "x", 1, 0), 1);
	rfs_fs_release(fs, f);
	rfs_fs_forget(fs, f, 1);
	assert_int_equal(rfs_fs_getattr(fs, f, &st), -ESTALE);
	fs = reopen(fs);
	rfs_fs_close(fs);
}

static void test_rename(void **state)
{
	(void)state;
	rfs_fs *fs = fresh(64 << 20);
	rfs_nodeid a, b, d1, d2, x;
	struct stat st;
	assert_int_equal(rfs_fs_mkdir(fs, &g_ctx, RFS_ROOT_NODE, "d1", 0755, &d1, &st), 0);
	assert_int_equal(rfs_fs_mkdir(fs, &g_ctx, d1, "d2", 0755, &d2, &st), 0);
	a = mkfile(fs, RFS_ROOT_NODE, "a");
	b = mkfile(fs, RFS_ROOT_NODE, "b");
	assert_int_equal(rfs_fs_write(fs, a, "AAAA", 4, 0), 4);
	/* Open: an inode whose last name goes lives on while it is open. */
	assert_int_equal(rfs_fs_open_node(fs, a), 0);
	assert_int_equal(rfs_fs_write(fs, b, "BB", 2, 0), 2);
	assert_int_equal(rfs_fs_rename(fs, &g_ctx, RFS_ROOT_NODE, "a", RFS_ROOT_NODE, "b",
				       RFS_RENAME_NOREPLACE), -EEXIST);
	assert_int_equal(rfs_fs_rename(fs, &g_ctx, RFS_ROOT_NODE, "a", RFS_ROOT_NODE, "b",
				       RFS_RENAME_EXCHANGE), 0);
	char buf[8];
	assert_int_equal(rfs_fs_read(fs, a, buf, 8, 0), 4); /* node a follows its inode */
	assert_int_equal(rfs_fs_resolve(fs, "b", &x, &st), 0);
	assert_int_equal(st.st_size, 4);
	assert_int_equal(rfs_fs_rename(fs, &g_ctx, RFS_ROOT_NODE, "d1", d2, "z", 0), -EINVAL);
	assert_int_equal(rfs_fs_rename(fs, &g_ctx, RFS_ROOT_NODE, "b", d2, "moved", 0), 0);
	assert_int_equal(rfs_fs_rename(fs, &g_ctx, RFS_ROOT_NODE, "a", d2, "moved", 0), 0);
	/* node a is inode A ("AAAA"), replaced but still referenced */
	assert_int_equal(rfs_fs_read(fs, a, buf, 8, 0), 4);
	assert_int_equal(rfs_fs_read(fs, b, buf, 8, 0), 2);
	assert_int_equal(rfs_fs_rename(fs, &g_ctx, d1, "d2", RFS_ROOT_NODE, "top", 0), 0);
	assert_int_equal(rfs_fs_getattr(fs, d1, &st), 0);
	assert_int_equal(st.st_nlink, 2);
	assert_int_equal(rfs_fs_resolve(fs, "top/moved", &x, &st), 0);
	assert_int_equal(st.st_size, 2);
	assert_int_equal(rfs_fs_rename(fs, &g_ctx, RFS_ROOT_NODE, "d1", RFS_ROOT_NODE, "top", 0), -ENOTEMPTY);
	assert_int_equal(rfs_fs_rename(fs, &g_ctx, RFS_ROOT_NODE, "d1", RFS_ROOT_NODE, "top",
				       RFS_RENAME_EXCHANGE), 0);
	assert_int_equal(rfs_fs_resolve(fs, "d1/moved", &x, &st), 0);
	rfs_fs_release(fs, a);
	/* Only looked up, not open: replaced means gone (its space comes
	 * back at once, not when the kernel forgets it). */
	rfs_nodeid c = mkfile(fs, RFS_ROOT_NODE, "c"), e = mkfile(fs, RFS_ROOT_NODE, "e");
	assert_int_equal(rfs_fs_write(fs, c, "CC", 2, 0), 2);
	assert_int_equal(rfs_fs_rename(fs, &g_ctx, RFS_ROOT_NODE, "e", RFS_ROOT_NODE, "c", 0), 0);
	assert_int_equal(rfs_fs_read(fs, c, buf, 8, 0), -ESTALE);
	assert_int_equal(rfs_fs_read(fs, e, buf, 8, 0), 0);
	rfs_fs_forget(fs, c, 1);
	rfs_fs_forget(fs, e, 1);
	fs = reopen(fs);
	rfs_fs_close(fs);
}

/* RENAME_WHITEOUT (overlayfs's upper layer): the old name becomes a
 * character device 0/0 in the same step. */
static void test_rename_whiteout(void **state)
{
	(void)state;
	rfs_fs *fs = fresh(64 << 20);
	rfs_nodeid a, d, sub, x;
	struct stat st, dst;
	char buf[8];
	assert_int_equal(rfs_fs_mkdir(fs, &g_ctx, RFS_ROOT_NODE, "d", 0755, &d, &st), 0);
	assert_int_equal(rfs_fs_mkdir(fs, &g_ctx, d, "sub", 0755, &sub, &st), 0);
	a = mkfile(fs, d, "a");
	assert_int_equal(rfs_fs_write(fs, a, "AAAA", 4, 0), 4);
	(void)mkfile(fs, d, "b");
	struct stat ast;
	assert_int_equal(rfs_fs_getattr(fs, a, &ast), 0);
	const unsigned wo = RFS_RENAME_WHITEOUT;
	/* not with EXCHANGE; NOREPLACE still refuses an existing target */
	assert_int_equal(rfs_fs_rename(fs, &g_ctx, d, "a", d, "b", wo | RFS_RENAME_EXCHANGE), -EINVAL);
	assert_int_equal(rfs_fs_rename(fs, &g_ctx, d, "a", d, "b", wo | RFS_RENAME_NOREPLACE), -EEXIST);
	assert_int_equal(rfs_fs_resolve(fs, "d/a", &x, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	rfs_fs_forget(fs, x, 1);
	/* onto a new name, and over an existing file */
	assert_int_equal(rfs_fs_rename(fs, &g_ctx, d, "a", RFS_ROOT_NODE, "moved", wo), 0);
	assert_int_equal(rfs_fs_resolve(fs, "d/a", &x, &st), 0);
	assert_true(S_ISCHR(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0);
	assert_int_equal(st.st_rdev, 0);
	assert_int_equal(st.st_nlink, 1);
	assert_int_equal(st.st_uid, g_ctx.uid);
	assert_int_equal(st.st_gid, g_ctx.gid);
	assert_int_not_equal(st.st_ino, ast.st_ino); /* a new inode, not a's */
	rfs_fs_forget(fs, x, 1);
	assert_int_equal(rfs_fs_read(fs, a, buf, 8, 0), 4); /* the node follows */
	assert_int_equal(rfs_fs_rename(fs, &g_ctx, RFS_ROOT_NODE, "moved", d, "b", wo), 0);
	assert_int_equal(rfs_fs_resolve(fs, "d/b", &x, &st), 0);
	assert_int_equal(st.st_size, 4);
	rfs_fs_forget(fs, x, 1);
	assert_int_equal(rfs_fs_resolve(fs, "moved", &x, &st), 0);
	assert_true(S_ISCHR(st.st_mode));
	rfs_fs_forget(fs, x, 1);
	/* a directory: the parent loses a subdirectory link, keeps the entry */
	assert_int_equal(rfs_fs_getattr(fs, d, &dst), 0);
	assert_int_equal(dst.st_nlink, 3);
	assert_int_equal(dst.st_size, 3); /* a (whiteout), b, sub */
	assert_int_equal(rfs_fs_rename(fs, &g_ctx, d, "sub", RFS_ROOT_NODE, "sub2", wo), 0);
	assert_int_equal(rfs_fs_getattr(fs, d, &dst), 0);
	assert_int_equal(dst.st_nlink, 2);
	assert_int_equal(dst.st_size, 3);
	assert_int_equal(rfs_fs_resolve(fs, "d/sub", &x, &st), 0);
	assert_true(S_ISCHR(st.st_mode));
	rfs_fs_forget(fs, x, 1);
	assert_int_equal(rfs_fs_getattr(fs, sub, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	/* inode counts and link counts hold (fsck in reopen) */
	fs = reopen(fs);
	assert_int_equal(rfs_fs_resolve(fs, "d", &d, &st), 0);
	assert_int_equal(rfs_fs_unlink(fs, d, "a"), 0);
	assert_int_equal(rfs_fs_unlink(fs, d, "sub"), 0);
	assert_int_equal(rfs_fs_unlink(fs, RFS_ROOT_NODE, "moved"), 0);
	fs = reopen(fs);
	rfs_fs_close(fs);
}

/* O_TMPFILE: an inode with no name, which link may name once. */
static void test_tmpfile(void **state)
{
	(void)state;
	rfs_fs *fs = fresh(64 << 20);
	rfs_nodeid d, t, x, f;
	struct stat st, dst, dst2;
	char buf[16];
	const struct rfs_ctx ctx = {.uid = 1000, .gid = 1000, .pid = 1, .umask = 022};
	assert_int_equal(rfs_fs_mkdir(fs, &g_ctx, RFS_ROOT_NODE, "d", 02775, &d, &st), 0);
	assert_int_equal(rfs_fs_setattr(fs, d, &(struct stat){.st_gid = 77}, RFS_SET_GID, &dst), 0);
	assert_int_equal(rfs_fs_tmpfile(fs, &ctx, d, 0666, &t, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0644); /* umask applied */
	assert_int_equal(st.st_nlink, 0);
	assert_int_equal(st.st_uid, 1000);
	assert_int_equal(st.st_gid, 77); /* set-gid directory */
	assert_int_equal(rfs_fs_getattr(fs, d, &dst2), 0);
	assert_int_equal(dst2.st_size, 0); /* no entry */
	assert_int_equal(rfs_fs_open_node(fs, t), 0);
	assert_int_equal(rfs_fs_write(fs, t, "tmpdata", 7, 0), 7);
	assert_int_equal(rfs_fs_read(fs, t, buf, 16, 0), 7);
	/* a name, once */
	assert_int_equal(rfs_fs_link(fs, t, d, "named", &st), 0);
	assert_int_equal(st.st_nlink, 1);
	assert_int_equal(rfs_fs_resolve(fs, "d/named", &x, &dst2), 0);
	assert_int_equal(x, t);
	assert_int_equal(dst2.st_ino, st.st_ino);
	rfs_fs_forget(fs, x, 1);
	assert_int_equal(rfs_fs_unlink(fs, d, "named"), 0);
	assert_int_equal(rfs_fs_link(fs, t, d, "again", &st), -ENOENT);
	assert_int_equal(rfs_fs_link(fs, t, d, "named", &st), -ENOENT);
	assert_int_equal(rfs_fs_read(fs, t, buf, 16, 0), 7);
	rfs_fs_release(fs, t);
	rfs_fs_forget(fs, t, 2); /* tmpfile's and link's references */
	assert_int_equal(rfs_fs_getattr(fs, t, &st), -ESTALE);
	/* named and kept across a remount */
	assert_int_equal(rfs_fs_tmpfile(fs, &ctx, d, 0600, &t, &st), 0);
	assert_int_equal(rfs_fs_write(fs, t, "kept", 4, 0), 4);
	assert_int_equal(rfs_fs_link(fs, t, RFS_ROOT_NODE, "kept", &st), 0);
	rfs_fs_forget(fs, t, 2);
	/* never named: gone when the last reference goes */
	assert_int_equal(rfs_fs_tmpfile(fs, &ctx, d, 0600, &t, &st), 0);
	assert_int_equal(rfs_fs_write(fs, t, "gone", 4, 0), 4);
	rfs_fs_forget(fs, t, 1);
	assert_int_equal(rfs_fs_getattr(fs, t, &st), -ESTALE);
	fs = reopen(fs);
	assert_int_equal(rfs_fs_resolve(fs, "kept", &f, &st), 0);
	assert_int_equal(st.st_nlink, 1);
	assert_int_equal(rfs_fs_read(fs, f, buf, 16, 0), 4);
	assert_memory_equal(buf, "kept", 4);
	/* held open at a crash: freed by the next mount */
	struct statvfs sv1, sv2;
	assert_int_equal(rfs_fs_statfs(fs, &sv1), 0);
	assert_int_equal(rfs_fs_resolve(fs, "d", &d, &st), 0);
	assert_int_equal(rfs_fs_tmpfile(fs, &ctx, d, 0600, &t, &st), 0);
	assert_int_equal(rfs_fs_write(fs, t, "crash", 5, 0), 5);
	assert_int_equal(rfs_fs_sync(fs), 0);
	rfs_fs_abandon(fs);
	assert_int_equal(fx_fsck(), 0);
	assert_int_equal(rfs_fs_open(g_pool, 0, &fs), 0);
	assert_int_equal(rfs_fs_statfs(fs, &sv2), 0);
	assert_int_equal(sv2.f_files - sv2.f_ffree, sv1.f_files - sv1.f_ffree);
	/* errors */
	assert_int_equal(rfs_fs_resolve(fs, "kept", &f, &st), 0);
	assert_int_equal(rfs_fs_tmpfile(fs, &ctx, f, 0600, &t, &st), -ENOTDIR);
	assert_int_equal(rfs_fs_mkdir(fs, &g_ctx, RFS_ROOT_NODE, "e", 0755, &d, &st), 0);
	assert_int_equal(rfs_fs_rmdir(fs, RFS_ROOT_NODE, "e"), 0);
	assert_int_equal(rfs_fs_tmpfile(fs, &ctx, d, 0600, &t, &st), -ENOENT);
	fs = reopen(fs);
	rfs_fs_close(fs);
}

static void test_xattr_symlink_nodes(void **state)
{
	(void)state;
	rfs_fs *fs = fresh(64 << 20);
	rfs_nodeid f = mkfile(fs, RFS_ROOT_NODE, "f"), l, l2, n, d;
	struct stat st;
	char big[5000];
	memset(big, 'v', sizeof(big));
	assert_int_equal(rfs_fs_setxattr(fs, &g_ctx, f, "user.a", "1", 1, 0), 0);
	assert_int_equal(rfs_fs_setxattr(fs, &g_ctx, f, "user.a", "2", 1, XATTR_CREATE), -EEXIST);
	assert_int_equal(rfs_fs_setxattr(fs, &g_ctx, f, "user.b", "2", 1, XATTR_REPLACE), -ENODATA);
	assert_int_equal(rfs_fs_setxattr(fs, &g_ctx, f, "user.big", big, sizeof(big), 0), 0);
	assert_int_equal(rfs_fs_setxattr(fs, &g_ctx, f, "user.k", big, 2048, 0), 0);
	assert_int_equal(rfs_fs_setxattr(fs, &g_ctx, RFS_ROOT_NODE, "user.dir", "x", 1, 0), 0);
	char v[6000];
	assert_int_equal(rfs_fs_getxattr(fs, f, "user.big", v, sizeof(v)), sizeof(big));
	assert_memory_equal(v, big, sizeof(big));
	assert_int_equal(rfs_fs_getxattr(fs, f, "user.k", NULL, 0), 2048);
	assert_int_equal(rfs_fs_getxattr(fs, f, "user.big", v, 10), -ERANGE);
	char list[256];
	ssize_t ll = rfs_fs_listxattr(fs, f, list, sizeof(list));
	assert_int_equal(ll, strlen("user.a") + strlen("user.big") + strlen("user.k") + 3);
	assert_int_equal(rfs_fs_removexattr(fs, f, "user.big"), 0);
	assert_int_equal(rfs_fs_removexattr(fs, f, "user.big"), -ENODATA);
	assert_int_equal(rfs_fs_symlink(fs, &g_ctx, RFS_ROOT_NODE, "l", "target/path", &l, &st), 0);
	assert_true(S_ISLNK(st.st_mode));
	char lt[5000];
	memset(lt, 'x', 4095);
	lt[4095] = 0;
	assert_int_equal(rfs_fs_symlink(fs, &g_ctx, RFS_ROOT_NODE, "l2", lt, &l2, &st), 0);
	assert_int_equal(rfs_fs_mknod(fs, &g_ctx, RFS_ROOT_NODE, "fifo", S_IFIFO | 0600, 0, &n, &st), 0);
	assert_true(S_ISFIFO(st.st_mode));
	assert_int_equal(rfs_fs_mknod(fs, &g_ctx, RFS_ROOT_NODE, "chr", S_IFCHR | 0600, makedev(1, 3), &n, &st), 0);
	assert_int_equal(st.st_rdev, makedev(1, 3));
	/* set-gid directories pass their group on */
	assert_int_equal(rfs_fs_mkdir(fs, &g_ctx, RFS_ROOT_NODE, "sg", 02775, &d, &st), 0);
	struct stat in = {0};
	in.st_gid = 4242;
	assert_int_equal(rfs_fs_setattr(fs, d, &in, RFS_SET_GID, NULL), 0);
	rfs_nodeid c;
	assert_int_equal(rfs_fs_mkdir(fs, &g_ctx, d, "sub", 0755, &c, &st), 0);
	assert_int_equal(st.st_gid, 4242);
	assert_true(st.st_mode & S_ISGID);
	fs = reopen(fs);
	assert_int_equal(rfs_fs_resolve(fs, "l", &l, &st), 0);
	char t[5000];
	assert_int_equal(rfs_fs_readlink(fs, l, t, sizeof(t)), 11);
	assert_string_equal(t, "target/path");
	assert_int_equal(rfs_fs_resolve(fs, "l2", &l2, &st), 0);
	assert_int_equal(rfs_fs_readlink(fs, l2, t, sizeof(t)), 4095);
	assert_string_equal(t, lt);
	assert_int_equal(rfs_fs_resolve(fs, "f", &f, &st), 0);
	assert_int_equal(rfs_fs_getxattr(fs, f, "user.k", v, sizeof(v)), 2048);
	assert_int_equal(rfs_fs_getxattr(fs, RFS_ROOT_NODE, "user.dir", v, sizeof(v)), 1);
	assert_int_equal(rfs_fs_unlink(fs, RFS_ROOT_NODE, "l2"), 0);
	fs = reopen(fs);
	rfs_fs_close(fs);
}

struct acl_e {
	uint16_t tag, perm;
	uint32_t id;
};

static size_t mkacl(uint8_t *buf, const struct acl_e *e, size_t n)
{
	uint32_t v = 2;
	memcpy(buf, &v, 4);
	memcpy(buf + 4, e, n * sizeof(*e));
	return 4 + n * sizeof(*e);
}

static void test_acl(void **state)
{
	(void)state;
	rfs_fs *fs = fresh(64 << 20);
	const struct rfs_ctx ctx = {.uid = 1000, .gid = 1000, .pid = 1, .umask = 022};
	rfs_nodeid d, f, g;
	struct stat st;
	uint8_t acl[256], got[256];
	assert_int_equal(rfs_fs_mkdir(fs, &ctx, RFS_ROOT_NODE, "d", 0777, &d, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0755); /* umask, no default ACL */
	const struct acl_e def[] = {{1, 7, 0}, {2, 6, 4321}, {4, 5, 0}, {0x10, 7, 0}, {0x20, 5, 0}};
	size_t n = mkacl(acl, def, 5);
	assert_int_equal(rfs_fs_setxattr(fs, &g_ctx, d, "system.posix_acl_default", acl, n, 0), 0);
	assert_int_equal(rfs_fs_setxattr(fs, &g_ctx, d, "system.posix_acl_default", acl, 7, 0), -EINVAL);
	/* inherited: mode masked by the ACL, not by the umask */
	assert_int_equal(rfs_fs_create(fs, &ctx, d, "f", 0666, &f, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0664);
	assert_int_equal(rfs_fs_getxattr(fs, f, "system.posix_acl_access", got, sizeof(got)), (ssize_t)n);
	assert_int_equal(rfs_fs_getxattr(fs, f, "system.posix_acl_default", got, sizeof(got)), -ENODATA);
	rfs_nodeid sub;
	assert_int_equal(rfs_fs_mkdir(fs, &ctx, d, "sub", 0777, &sub, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0775);
	assert_int_equal(rfs_fs_getxattr(fs, sub, "system.posix_acl_default", got, sizeof(got)), (ssize_t)n);
	/* chmod updates the mask entry */
	struct stat in = {0};
	in.st_mode = 0640;
	assert_int_equal(rfs_fs_setattr(fs, f, &in, RFS_SET_MODE, NULL), 0);
	assert_int_equal(rfs_fs_getxattr(fs, f, "system.posix_acl_access", got, sizeof(got)), (ssize_t)n);
	struct acl_e e[5];
	memcpy(e, got + 4, sizeof(e));
	assert_int_equal(e[0].perm, 6);
	assert_int_equal(e[3].perm, 4); /* mask */
	assert_int_equal(e[4].perm, 0);
	/* setting an access ACL sets the mode; a minimal one is not stored */
	const struct acl_e min[] = {{1, 7, 0}, {4, 1, 0}, {0x20, 4, 0}};
	n = mkacl(acl, min, 3);
	g = mkfile(fs, RFS_ROOT_NODE, "g");
	assert_int_equal(rfs_fs_setxattr(fs, &g_ctx, g, "system.posix_acl_access", acl, n, 0), 0);
	assert_int_equal(rfs_fs_getattr(fs, g, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0714);
	assert_int_equal(rfs_fs_getxattr(fs, g, "system.posix_acl_access", got, sizeof(got)), -ENODATA);
	assert_int_equal(rfs_fs_setxattr(fs, &g_ctx, g, "system.posix_acl_default", acl, n, 0), -EACCES);
	fs = reopen(fs);
	rfs_fs_close(fs);
}

static void test_enospc(void **state)
{
	(void)state;
	rfs_log_set_level(RFS_LOG_ERR - 1);
	rfs_fs *fs = fresh(24 << 20);
	uint8_t *buf = malloc(1 << 20);
	fill(buf, 1 << 20, 9);
	int files = 0;
	ssize_t r = 0;
	for (; files < 100; files++) {
		char name[32];
		snprintf(name, sizeof(name), "f%d", files);
		rfs_nodeid f;
		struct stat st;
		int ret = rfs_fs_create(fs, &g_ctx, RFS_ROOT_NODE, name, 0644, &f, &st);
		if (ret) {
			assert_int_equal(ret, -ENOSPC);
			break;
		}
		r = rfs_fs_write(fs, f, buf, 1 << 20, 0);
		rfs_fs_forget(fs, f, 1);
		if (r != 1 << 20)
			break;
	}
	assert_true(files < 100);
	assert_true(r == -ENOSPC || (r >= 0 && r < (1 << 20)));
	assert_int_equal(rfs_fs_sync(fs), 0);
	/* deletion still works, and space comes back */
	for (int i = 0; i <= files; i++) {
		char name[32];
		snprintf(name, sizeof(name), "f%d", i);
		int ret = rfs_fs_unlink(fs, RFS_ROOT_NODE, name);
		assert_true(ret == 0 || ret == -ENOENT);
	}
	assert_int_equal(rfs_fs_sync(fs), 0);
	rfs_nodeid f = mkfile(fs, RFS_ROOT_NODE, "again");
	assert_int_equal(rfs_fs_write(fs, f, buf, 1 << 20, 0), 1 << 20);
	fs = reopen(fs);
	rfs_fs_close(fs);
	free(buf);
	rfs_log_set_level(RFS_LOG_INFO);
}

static void test_crash_durability(void **state)
{
	(void)state;
	rfs_fs *fs = fresh(64 << 20);
	assert_int_equal(rfs_fs_close(fs), 0);
	assert_int_equal(rfs_fs_open(g_pool, RFS_FS_CRASHSIM, &fs), 0);
	rfs_nodeid a = mkfile(fs, RFS_ROOT_NODE, "synced");
	assert_int_equal(rfs_fs_write(fs, a, "durable", 7, 0), 7);
	assert_int_equal(rfs_fs_sync(fs), 0);
	rfs_nodeid b = mkfile(fs, RFS_ROOT_NODE, "lost");
	assert_int_equal(rfs_fs_write(fs, b, "gone", 4, 0), 4);
	rfs_fs_crash(fs, RFS_CRASH_DROP_RANDOM, 42);
	assert_int_equal(fx_fsck(), 0);
	assert_int_equal(rfs_fs_open(g_pool, 0, &fs), 0);
	struct stat st;
	rfs_nodeid x;
	assert_int_equal(rfs_fs_resolve(fs, "synced", &x, &st), 0);
	char buf[16];
	assert_int_equal(rfs_fs_read(fs, x, buf, 16, 0), 7);
	assert_memory_equal(buf, "durable", 7);
	assert_int_equal(rfs_fs_resolve(fs, "lost", &x, &st), -ENOENT);
	rfs_fs_close(fs);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mkfs_root),
		cmocka_unit_test(test_write_read_persist),
		cmocka_unit_test(test_dirs),
		cmocka_unit_test(test_clone),
		cmocka_unit_test(test_clone_multicall),
		cmocka_unit_test(test_sparse_seek_punch),
		cmocka_unit_test(test_links_orphans),
		cmocka_unit_test(test_rename),
		cmocka_unit_test(test_rename_whiteout),
		cmocka_unit_test(test_tmpfile),
		cmocka_unit_test(test_xattr_symlink_nodes),
		cmocka_unit_test(test_clone_hidden_tail),
		cmocka_unit_test(test_acl),
		cmocka_unit_test(test_enospc),
		cmocka_unit_test(test_crash_durability),
	};
	return cmocka_run_group_tests(tests, fx_setup, fx_teardown);
}
