/*
 * Tiny files keep their data inline in the inode record
 * (RFS_INODE_INLDATA, src/fs/file.c, volume format 4): no data block.
 * Every transition -- create, append within and past the limit, writes
 * past it, overwrite, truncate down and up, hole punch, fallocate, clones
 * to and from, xattrs, snapshots and diff, du, reopen, a crash at each
 * commit -- reads back what a normal file would hold, and fsck is clean
 * after each step.
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
#include "common/testutil.h"
#include "reflinkfs/fs.h"
#include "reflinkfs/log.h"

#include "fs/fs_internal.h"

#define BS RFS_BLOCK_SIZE
#define MAXI RFS_INLDATA_MAX

static const struct rfs_ctx g_ctx = {.uid = 1000, .gid = 1000, .pid = 1};

static rfs_fs *fresh(unsigned flags)
{
	return fx_fresh(64 << 20, flags);
}

static void fsck_clean(void)
{
	assert_int_equal(fx_fsck(), 0);
}

/* Close, fsck clean, reopen; n (if given) is looked up again by name. */
static rfs_fs *reopen(rfs_fs *fs, const char *name, rfs_nodeid *n)
{
	fs = fx_reopen(fs, 0);
	if (n)
		assert_int_equal(rfs_fs_resolve(fs, name, n, NULL), 0);
	return fs;
}

static rfs_nodeid mkfile(rfs_fs *fs, const char *name)
{
	return fx_create(fs, &g_ctx, RFS_ROOT_NODE, name);
}

static struct rfs_irec rec_of(rfs_fs *fs, rfs_nodeid id)
{
	struct rfs_irec r;
	fx_rec(fs, id, &r);
	return r;
}

/* Data inline: in the record, no block, no tree. */
static bool inl(rfs_fs *fs, rfs_nodeid id)
{
	struct rfs_irec r = rec_of(fs, id);
	return (r.i.flags & RFS_INODE_INLDATA) && !r.i.subtree && r.i.blocks == 0 &&
	       r.taillen == r.i.size;
}

static uint64_t blocks_of(rfs_fs *fs, rfs_nodeid id)
{
	return rec_of(fs, id).i.blocks;
}

static void fill(uint8_t *b, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		b[i] = (uint8_t)(seed * 131 + i * 7 + 1);
}

/* n reads back exactly want (len bytes), and nothing past it. */
static void expect(rfs_fs *fs, rfs_nodeid n, const uint8_t *want, size_t len)
{
	uint8_t *rd = malloc(len + 100);
	assert_non_null(rd);
	assert_int_equal(rfs_fs_read(fs, n, rd, len + 100, 0), (ssize_t)len);
	assert_memory_equal(rd, want, len);
	/* and in pieces at odd offsets */
	for (size_t off = 0; off < len; off += 333) {
		size_t k = len - off < 77 ? len - off : 77;
		assert_int_equal(rfs_fs_read(fs, n, rd, k, off), (ssize_t)k);
		assert_memory_equal(rd, want + off, k);
	}
	free(rd);
	struct stat st;
	assert_int_equal(rfs_fs_getattr(fs, n, &st), 0);
	assert_int_equal(st.st_size, len);
}

static uint64_t used(rfs_fs *fs)
{
	struct rfs_pool_stats st;
	rfs_pool_stats(rfs_fs_pool(fs), &st);
	return st.used_blocks;
}

struct exts {
	int n;
	struct rfs_extent_info e[8];
};

static int ext_cb(void *arg, const struct rfs_extent_info *e)
{
	struct exts *x = arg;
	if (x->n < 8)
		x->e[x->n] = *e;
	x->n++;
	return 0;
}

static struct exts extents(rfs_fs *fs, rfs_nodeid n)
{
	struct exts x = {0};
	assert_int_equal(rfs_fs_extents(fs, n, ext_cb, &x), 0);
	return x;
}

static void set_size(rfs_fs *fs, rfs_nodeid n, uint64_t size)
{
	struct stat st = {.st_size = (off_t)size};
	assert_int_equal(rfs_fs_setattr(fs, n, &st, RFS_SET_SIZE, NULL), 0);
}

/* Create, write, append within the limit and one byte past it; stat,
 * extents, SEEK_DATA / SEEK_HOLE, reopen. */
static void test_create_append(void **state)
{
	(void)state;
	rfs_fs *fs = fresh(0);
	uint8_t buf[2 * BS], exp[2 * BS];
	fill(buf, sizeof buf, 1);
	rfs_nodeid a = mkfile(fs, "a");
	assert_int_equal(rfs_fs_sync(fs), 0);
	uint64_t u0 = used(fs);
	assert_int_equal(rfs_fs_write(fs, a, buf, 100, 0), 100);
	assert_true(inl(fs, a));
	expect(fs, a, buf, 100);
	struct stat st;
	assert_int_equal(rfs_fs_getattr(fs, a, &st), 0);
	assert_int_equal(st.st_blocks, 1); /* its bytes, not 0: not sparse */
	struct exts x = extents(fs, a);
	assert_int_equal(x.n, 1);
	assert_true(x.e[0].inline_data);
	assert_int_equal(x.e[0].length, 100);
	assert_int_equal(x.e[0].physical, 0);
	uint8_t raw[BS];
	assert_int_equal(rfs_fs_inline_data(fs, a, raw, sizeof raw), 100);
	assert_memory_equal(raw, buf, 100);
	uint64_t off;
	assert_int_equal(rfs_fs_lseek(fs, a, 10, SEEK_DATA, &off), 0);
	assert_int_equal(off, 10);
	assert_int_equal(rfs_fs_lseek(fs, a, 10, SEEK_HOLE, &off), 0);
	assert_int_equal(off, 100);
	assert_int_equal(rfs_fs_lseek(fs, a, 100, SEEK_DATA, &off), -ENXIO);
	/* appends up to the limit exactly */
	size_t at = 100;
	while (at < MAXI) {
		size_t k = MAXI - at < 97 ? MAXI - at : 97;
		assert_int_equal(rfs_fs_write(fs, a, buf + at, k, at), (ssize_t)k);
		at += k;
		assert_true(inl(fs, a));
	}
	expect(fs, a, buf, MAXI);
	assert_int_equal(rfs_fs_sync(fs), 0);
	/* no data block: at most the nodes the commit shadowed */
	assert_true(used(fs) - u0 < 8);
	fs = reopen(fs, "a", &a);
	assert_true(inl(fs, a));
	expect(fs, a, buf, MAXI);
	/* one byte more: the data moves into a block of its own */
	assert_int_equal(rfs_fs_write(fs, a, buf + MAXI, 1, MAXI), 1);
	assert_false(inl(fs, a));
	assert_int_equal(blocks_of(fs, a), 1);
	expect(fs, a, buf, MAXI + 1);
	x = extents(fs, a);
	assert_int_equal(x.n, 1);
	assert_false(x.e[0].inline_data);
	assert_int_equal(x.e[0].length, BS);
	assert_int_equal(rfs_fs_inline_data(fs, a, raw, sizeof raw), -ENODATA);
	/* and goes back inline when it shrinks again (its block freed) */
	set_size(fs, a, 10);
	assert_true(inl(fs, a));
	expect(fs, a, buf, 10);
	fs = reopen(fs, "a", &a);
	expect(fs, a, buf, 10);

	/* growing past the limit from block 0 in one write */
	rfs_nodeid b = mkfile(fs, "b");
	assert_int_equal(rfs_fs_write(fs, b, buf, 500, 0), 500);
	assert_true(inl(fs, b));
	assert_int_equal(rfs_fs_write(fs, b, buf + 300, 1500, 300), 1500);
	assert_false(inl(fs, b));
	expect(fs, b, buf, 1800);
	/* a write far past it: block 0 keeps the bytes, a hole between */
	rfs_nodeid c = mkfile(fs, "c");
	assert_int_equal(rfs_fs_write(fs, c, buf, 200, 0), 200);
	assert_true(inl(fs, c));
	assert_int_equal(rfs_fs_write(fs, c, buf, 50, 5 * BS + 3), 50);
	assert_false(inl(fs, c));
	assert_int_equal(blocks_of(fs, c), 2);
	memset(exp, 0, sizeof exp);
	uint8_t *big = calloc(1, 6 * BS);
	memcpy(big, buf, 200);
	memcpy(big + 5 * BS + 3, buf, 50);
	expect(fs, c, big, 5 * BS + 53);
	assert_int_equal(rfs_fs_lseek(fs, c, 200, SEEK_HOLE, &off), 0);
	assert_int_equal(off, BS);
	assert_int_equal(rfs_fs_lseek(fs, c, BS, SEEK_DATA, &off), 0);
	assert_int_equal(off, 5 * BS);
	/* a write at an offset past the limit of an empty file: never inline */
	rfs_nodeid d = mkfile(fs, "d");
	assert_int_equal(rfs_fs_write(fs, d, buf, 10, MAXI), 10);
	assert_false(inl(fs, d));
	fs = reopen(fs, "c", &c);
	expect(fs, c, big, 5 * BS + 53);
	free(big);
	rfs_fs_close(fs);
	fsck_clean();
}

/* Overwrite, truncate down and up within the limit and past it, to 0;
 * a file truncated up (sparse, no block) then written becomes inline. */
static void test_overwrite_truncate(void **state)
{
	(void)state;
	rfs_fs *fs = fresh(0);
	uint8_t buf[BS], exp[2 * BS];
	fill(buf, sizeof buf, 2);
	rfs_nodeid a = mkfile(fs, "a");
	assert_int_equal(rfs_fs_write(fs, a, buf, 600, 0), 600);
	memcpy(exp, buf, 600);
	assert_int_equal(rfs_fs_write(fs, a, "hello", 5, 123), 5);
	memcpy(exp + 123, "hello", 5);
	assert_true(inl(fs, a));
	expect(fs, a, exp, 600);
	/* down: the cut bytes read as zeros when it grows back */
	set_size(fs, a, 200);
	assert_true(inl(fs, a));
	expect(fs, a, exp, 200);
	set_size(fs, a, 700);
	assert_true(inl(fs, a));
	memset(exp + 200, 0, 500);
	expect(fs, a, exp, 700);
	fs = reopen(fs, "a", &a);
	expect(fs, a, exp, 700);
	/* up past the limit: an ordinary (sparse) file */
	set_size(fs, a, 3 * BS);
	assert_false(inl(fs, a));
	assert_int_equal(blocks_of(fs, a), 1);
	uint8_t *big = calloc(1, 3 * BS);
	memcpy(big, exp, 700);
	expect(fs, a, big, 3 * BS);
	free(big);
	/* to zero: nothing inline any more */
	rfs_nodeid b = mkfile(fs, "b");
	assert_int_equal(rfs_fs_write(fs, b, buf, 50, 0), 50);
	set_size(fs, b, 0);
	struct rfs_irec r = rec_of(fs, b);
	assert_int_equal(r.i.flags & RFS_INODE_INLDATA, 0);
	assert_int_equal(r.taillen, 0);
	assert_int_equal(r.i.size, 0);
	/* sparse within the limit, then a few bytes written: zeros around */
	set_size(fs, b, 400);
	assert_false(inl(fs, b));
	assert_int_equal(rfs_fs_write(fs, b, "xyz", 3, 100), 3);
	assert_true(inl(fs, b));
	memset(exp, 0, 400);
	memcpy(exp + 100, "xyz", 3);
	expect(fs, b, exp, 400);
	fs = reopen(fs, "b", &b);
	expect(fs, b, exp, 400);
	rfs_fs_close(fs);
	fsck_clean();
}

/* Hole punch, zero range and preallocation move the data into a block
 * first and then behave as on any file. */
static void test_punch_fallocate(void **state)
{
	(void)state;
	rfs_fs *fs = fresh(0);
	uint8_t buf[BS], exp[4 * BS];
	fill(buf, sizeof buf, 3);
	rfs_nodeid a = mkfile(fs, "a");
	assert_int_equal(rfs_fs_write(fs, a, buf, 800, 0), 800);
	assert_int_equal(rfs_fs_fallocate(fs, a, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 100,
					  50), 0);
	assert_false(inl(fs, a));
	memcpy(exp, buf, 800);
	memset(exp + 100, 0, 50);
	expect(fs, a, exp, 800);
	/* the whole block punched: a hole of 800 bytes, no block */
	assert_int_equal(rfs_fs_fallocate(fs, a, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0,
					  BS), 0);
	assert_int_equal(blocks_of(fs, a), 0);
	memset(exp, 0, 800);
	expect(fs, a, exp, 800);
	uint64_t off;
	assert_int_equal(rfs_fs_lseek(fs, a, 0, SEEK_DATA, &off), -ENXIO);

	rfs_nodeid b = mkfile(fs, "b");
	assert_int_equal(rfs_fs_write(fs, b, buf, 300, 0), 300);
	assert_int_equal(rfs_fs_fallocate(fs, b, 0, 0, 3 * BS), 0);
	assert_false(inl(fs, b));
	assert_int_equal(blocks_of(fs, b), 3);
	memset(exp, 0, sizeof exp);
	memcpy(exp, buf, 300);
	expect(fs, b, exp, 3 * BS);

	rfs_nodeid c = mkfile(fs, "c");
	assert_int_equal(rfs_fs_write(fs, c, buf, 300, 0), 300);
	assert_int_equal(rfs_fs_fallocate(fs, c, FALLOC_FL_KEEP_SIZE, BS, BS), 0);
	assert_false(inl(fs, c));
	expect(fs, c, buf, 300);
	rfs_nodeid d = mkfile(fs, "d");
	assert_int_equal(rfs_fs_write(fs, d, buf, 300, 0), 300);
	assert_int_equal(rfs_fs_fallocate(fs, d, FALLOC_FL_ZERO_RANGE, 10, 20), 0);
	memcpy(exp, buf, 300);
	memset(exp + 10, 0, 20);
	expect(fs, d, exp, 300);
	fs = reopen(fs, "d", &d);
	expect(fs, d, exp, 300);
	rfs_fs_close(fs);
	fsck_clean();
}

/* A clone of an inline file copies one record (no block); range clones
 * to and from inline files; writes to either side stay apart. */
static void test_clone(void **state)
{
	(void)state;
	rfs_fs *fs = fresh(0);
	uint8_t buf[4 * BS], exp[4 * BS];
	fill(buf, sizeof buf, 4);
	rfs_nodeid a = mkfile(fs, "a"), b = mkfile(fs, "b");
	assert_int_equal(rfs_fs_write(fs, a, buf, 700, 0), 700);
	assert_int_equal(rfs_fs_sync(fs), 0);
	uint64_t u0 = used(fs);
	assert_int_equal(rfs_fs_clone_file(fs, a, b), 0);
	assert_true(inl(fs, b));
	expect(fs, b, buf, 700);
	assert_int_equal(rfs_fs_sync(fs), 0);
	assert_true(used(fs) - u0 < 8); /* shadowed nodes only, no data */
	/* copy_file_range of the whole file: the same */
	rfs_nodeid c = mkfile(fs, "c");
	assert_int_equal(rfs_fs_clone_range(fs, a, 0, c, 0, 700), 700);
	assert_true(inl(fs, c));
	expect(fs, c, buf, 700);
	/* the sides diverge */
	assert_int_equal(rfs_fs_write(fs, b, "B", 1, 5), 1);
	assert_int_equal(rfs_fs_write(fs, a, "A", 1, 6), 1);
	memcpy(exp, buf, 700);
	exp[6] = 'A';
	expect(fs, a, exp, 700);
	memcpy(exp, buf, 700);
	exp[5] = 'B';
	expect(fs, b, exp, 700);
	expect(fs, c, buf, 700);
	/* a range of an inline file into the middle of another one */
	assert_int_equal(rfs_fs_clone_range(fs, c, 100, b, 600, 200), 200);
	assert_true(inl(fs, b));
	memcpy(exp + 600, buf + 100, 200);
	expect(fs, b, exp, 800);
	/* within one inline file */
	assert_int_equal(rfs_fs_clone_range(fs, c, 0, c, 500, 100), 100);
	memcpy(exp, buf, 700);
	memcpy(exp + 500, buf, 100);
	expect(fs, c, exp, 700);
	/* an inline range into a big file, at a block boundary */
	rfs_nodeid d = mkfile(fs, "d");
	assert_int_equal(rfs_fs_write(fs, d, buf, 4 * BS, 0), (ssize_t)(4 * BS));
	assert_int_equal(rfs_fs_clone_range(fs, a, 0, d, BS, 700), 700);
	memcpy(exp, buf, 4 * BS);
	memcpy(exp + BS, buf, 700);
	exp[BS + 6] = 'A';
	expect(fs, d, exp, 4 * BS);
	/* whole blocks of a big file onto an inline one: it moves into a
	 * block first, then shares */
	rfs_nodeid e = mkfile(fs, "e");
	assert_int_equal(rfs_fs_write(fs, e, buf, 300, 0), 300);
	assert_int_equal(rfs_fs_clone_range(fs, d, 2 * BS, e, BS, 2 * BS), (ssize_t)(2 * BS));
	assert_false(inl(fs, e));
	memset(exp, 0, sizeof exp);
	memcpy(exp, buf, 300);
	memcpy(exp + BS, buf + 2 * BS, 2 * BS);
	expect(fs, e, exp, 3 * BS);
	/* a big file cloned over an inline one */
	rfs_nodeid f = mkfile(fs, "f");
	assert_int_equal(rfs_fs_write(fs, f, buf, 10, 0), 10);
	assert_int_equal(rfs_fs_clone_file(fs, d, f), 0);
	assert_false(inl(fs, f));
	struct rfs_irec r = rec_of(fs, f);
	assert_int_equal(r.i.flags & (RFS_INODE_INLDATA | RFS_INODE_INLEXT), RFS_INODE_INLEXT);
	memcpy(exp, buf, 4 * BS);
	memcpy(exp + BS, buf, 700);
	exp[BS + 6] = 'A';
	expect(fs, f, exp, 4 * BS);
	/* an inline file cloned over a big one that has an xattr: the
	 * destination keeps the xattr, its data goes into a block */
	assert_int_equal(rfs_fs_setxattr(fs, &g_ctx, d, "user.k", "v", 1, 0), 0);
	assert_int_equal(rfs_fs_clone_file(fs, c, d), 0);
	memcpy(exp, buf, 700);
	memcpy(exp + 500, buf, 100);
	expect(fs, d, exp, 700);
	char v[4];
	assert_int_equal(rfs_fs_getxattr(fs, d, "user.k", v, sizeof v), 1);
	assert_int_equal(blocks_of(fs, d), 1);
	fs = reopen(fs, "d", &d);
	expect(fs, d, exp, 700);
	const char *names[] = {"a", "b", "c", "d", "e", "f"};
	for (size_t i = 0; i < 6; i++)
		assert_int_equal(rfs_fs_unlink(fs, RFS_ROOT_NODE, names[i]), 0);
	fs = reopen(fs, NULL, NULL);
	rfs_fs_close(fs);
}

/* An xattr moves the data into a block and the file into a tree;
 * hard links keep the inline record in the link table. */
static void test_xattr_link(void **state)
{
	(void)state;
	rfs_fs *fs = fresh(0);
	uint8_t buf[BS];
	fill(buf, sizeof buf, 5);
	rfs_nodeid a = mkfile(fs, "a");
	assert_int_equal(rfs_fs_write(fs, a, buf, 400, 0), 400);
	assert_int_equal(rfs_fs_setxattr(fs, &g_ctx, a, "user.x", "yz", 2, 0), 0);
	struct rfs_irec r = rec_of(fs, a);
	assert_true(r.i.subtree != 0);
	assert_int_equal(r.i.flags & (RFS_INODE_INLDATA | RFS_INODE_INLEXT), 0);
	expect(fs, a, buf, 400);
	rfs_nodeid b = mkfile(fs, "b");
	assert_int_equal(rfs_fs_write(fs, b, buf, 222, 0), 222);
	struct stat st;
	assert_int_equal(rfs_fs_link(fs, b, RFS_ROOT_NODE, "b2", &st), 0);
	assert_true(inl(fs, b));
	assert_int_equal(rfs_fs_write(fs, b, "Q", 1, 0), 1);
	rfs_nodeid b2;
	fs = reopen(fs, "b2", &b2);
	uint8_t exp[BS];
	memcpy(exp, buf, 222);
	exp[0] = 'Q';
	expect(fs, b2, exp, 222);
	assert_true(inl(fs, b2));
	rfs_fs_close(fs);
	fsck_clean();
}

struct diffrec {
	char op;
	uint32_t what;
	char path[64];
};

static int diff_all(rfs_fs *fs, rfs_nodeid x, rfs_nodeid y, struct diffrec *out, int max)
{
	rfs_diff *d;
	struct rfs_diff_stats st;
	assert_int_equal(rfs_diff_begin(fs, x, y, &d), 0);
	rfs_diff_get_stats(d, &st);
	int n = 0;
	for (uint64_t i = 0; i < st.records && n < max; i++) {
		struct rfs_diff_record rec;
		assert_int_equal(rfs_diff_record(d, i, &rec), 0);
		out[n].op = rec.op;
		out[n].what = rec.what;
		snprintf(out[n].path, sizeof out[n].path, "%s", rec.path);
		n++;
	}
	rfs_diff_end(d);
	return n;
}

/* A snapshot shares the records; a diff sees a changed byte of an inline
 * file, and none in a file whose form changed but not its bytes. */
static void test_snapshot_diff(void **state)
{
	(void)state;
	rfs_fs *fs = fresh(0);
	rfs_nodeid dir, f;
	struct stat st;
	uint8_t buf[BS];
	fill(buf, sizeof buf, 6);
	assert_int_equal(rfs_fs_mkdir(fs, &g_ctx, RFS_ROOT_NODE, "d", 0755, &dir, &st), 0);
	const char *names[] = {"same", "changed", "spilled", "grown"};
	for (int i = 0; i < 4; i++) {
		assert_int_equal(rfs_fs_create(fs, &g_ctx, dir, names[i], 0644, &f, &st), 0);
		assert_int_equal(rfs_fs_write(fs, f, buf, 300, 0), 300);
	}
	/* a hard-linked inline file: the snapshot gets its own copy */
	rfs_nodeid hl;
	assert_int_equal(rfs_fs_create(fs, &g_ctx, dir, "hl", 0644, &hl, &st), 0);
	assert_int_equal(rfs_fs_write(fs, hl, buf, 77, 0), 77);
	assert_int_equal(rfs_fs_link(fs, hl, dir, "hl2", &st), 0);
	rfs_nodeid snap;
	assert_int_equal(rfs_fs_snapshot(fs, dir, RFS_ROOT_NODE, "s", 0, &snap, &st), 0);
	assert_int_equal(rfs_fs_write(fs, hl, "H", 1, 0), 1);
	rfs_nodeid shl;
	assert_int_equal(rfs_fs_resolve(fs, "s/hl2", &shl, NULL), 0);
	expect(fs, shl, buf, 77);
	assert_int_equal(rfs_fs_resolve(fs, "d/changed", &f, NULL), 0);
	assert_int_equal(rfs_fs_write(fs, f, "!", 1, 299), 1);
	/* same bytes in a block now (preallocation past EOF) */
	assert_int_equal(rfs_fs_resolve(fs, "d/spilled", &f, NULL), 0);
	assert_int_equal(rfs_fs_fallocate(fs, f, FALLOC_FL_KEEP_SIZE, BS, BS), 0);
	assert_false(inl(fs, f));
	assert_int_equal(rfs_fs_resolve(fs, "d/grown", &f, NULL), 0);
	assert_int_equal(rfs_fs_write(fs, f, buf, 2, 300), 2);
	rfs_nodeid s0;
	assert_int_equal(rfs_fs_resolve(fs, "s/changed", &s0, NULL), 0);
	assert_true(inl(fs, s0));
	expect(fs, s0, buf, 300);
	struct diffrec dr[16];
	assert_int_equal(rfs_fs_resolve(fs, "s", &snap, NULL), 0);
	int n = diff_all(fs, snap, dir, dr, 16);
	bool changed = false, grown = false;
	for (int i = 0; i < n; i++) {
		if (!strcmp(dr[i].path, "changed")) {
			changed = true;
			assert_true(dr[i].what & RFS_DIFF_DATA);
		} else if (!strcmp(dr[i].path, "grown")) {
			grown = true;
			assert_true(dr[i].what & RFS_DIFF_DATA);
		} else if (!strcmp(dr[i].path, "hl") || !strcmp(dr[i].path, "hl2")) {
			assert_true(dr[i].what & RFS_DIFF_DATA);
		} else if (!strcmp(dr[i].path, "spilled")) {
			assert_false(dr[i].what & RFS_DIFF_DATA);
		} else {
			assert_string_equal(dr[i].path, "."); /* the directory's times */
		}
	}
	assert_true(changed && grown);
	fs = reopen(fs, "s/same", &s0);
	expect(fs, s0, buf, 300);
	rfs_fs_close(fs);
	fsck_clean();
}

/* du: an inline file holds no data block; its bytes are in its
 * directory's entries (metadata). */
static void test_du(void **state)
{
	(void)state;
	rfs_fs *fs = fresh(0);
	uint8_t buf[BS];
	fill(buf, sizeof buf, 7);
	rfs_nodeid a = mkfile(fs, "a"), b = mkfile(fs, "b");
	assert_int_equal(rfs_fs_write(fs, a, buf, 500, 0), 500);
	assert_int_equal(rfs_fs_write(fs, b, buf, BS, 0), (ssize_t)BS);
	struct rfs_du_stats st[2];
	rfs_nodeid n[2] = {a, b};
	for (int i = 0; i < 2; i++) {
		rfs_du *d;
		assert_int_equal(rfs_du_begin(fs, n[i], &d), 0);
		int ret;
		while ((ret = rfs_du_step(d, 1000)) == 1)
			;
		assert_int_equal(ret, 0);
		rfs_du_get_stats(d, &st[i]);
		rfs_du_end(d);
	}
	assert_int_equal(st[0].total, 0);
	assert_int_equal(st[0].exclusive, 0);
	assert_int_equal(st[0].files, 1);
	assert_int_equal(st[1].total, BS);
	assert_int_equal(st[1].exclusive, BS);
	rfs_fs_close(fs);
	fsck_clean();
}

/* A crash at a commit point: the pool holds the last synced inline bytes,
 * whether the lost change was an overwrite, a growth past the limit or a
 * clone; fsck is clean. */
static void test_crash(void **state)
{
	(void)state;
	uint8_t buf[2 * BS];
	fill(buf, sizeof buf, 8);
	for (int step = 0; step < 3; step++) {
		for (int mode = 0; mode < 3; mode++) {
			rfs_fs *fs = fresh(0);
			assert_int_equal(rfs_fs_close(fs), 0);
			assert_int_equal(rfs_fs_open(g_pool, RFS_FS_CRASHSIM, &fs), 0);
			rfs_nodeid a = mkfile(fs, "a"), b = mkfile(fs, "b");
			assert_int_equal(rfs_fs_write(fs, a, buf, 640, 0), 640);
			assert_int_equal(rfs_fs_sync(fs), 0);
			if (step == 0)
				assert_int_equal(rfs_fs_write(fs, a, "zzz", 3, 10), 3);
			else if (step == 1)
				assert_int_equal(rfs_fs_write(fs, a, buf, 2 * BS, 100),
						 (ssize_t)(2 * BS));
			else
				assert_int_equal(rfs_fs_clone_file(fs, a, b), 0);
			rfs_fs_crash(fs, (enum rfs_crash_mode)mode, 7 + (uint64_t)step);
			fsck_clean();
			assert_int_equal(rfs_fs_open(g_pool, 0, &fs), 0);
			assert_int_equal(rfs_fs_resolve(fs, "a", &a, NULL), 0);
			assert_true(inl(fs, a));
			expect(fs, a, buf, 640);
			assert_int_equal(rfs_fs_resolve(fs, "b", &b, NULL), 0);
			struct stat st;
			assert_int_equal(rfs_fs_getattr(fs, b, &st), 0);
			assert_int_equal(st.st_size, 0);
			/* and it goes on working */
			assert_int_equal(rfs_fs_write(fs, a, "x", 1, 640), 1);
			fs = reopen(fs, NULL, NULL);
			rfs_fs_close(fs);
		}
	}
}

/* ---- back inline after a shrink ------------------------------------------ */

/* A file of nb whole blocks of fill(seed) named name. */
static rfs_nodeid blocks_file(rfs_fs *fs, const char *name, uint64_t nb, unsigned seed,
			      uint8_t *buf)
{
	rfs_nodeid n = mkfile(fs, name);
	fill(buf, nb * BS, seed);
	assert_int_equal(rfs_fs_write(fs, n, buf, nb * BS, 0), (ssize_t)(nb * BS));
	assert_false(inl(fs, n));
	return n;
}

static uint64_t st_blocks(rfs_fs *fs, rfs_nodeid n)
{
	struct stat st;
	assert_int_equal(rfs_fs_getattr(fs, n, &st), 0);
	return (uint64_t)st.st_blocks;
}

/* Truncating a file of blocks to a size that fits its record makes it
 * inline again: its blocks go back to the pool, st_blocks and the extent
 * listing say inline, and it reads the same.  Also from a file tree of
 * several leaves, and to 0 and back. */
static void test_shrink_back_inline(void **state)
{
	(void)state;
	rfs_fs *fs = fresh(0);
	uint8_t *buf = malloc(400 * BS), exp[BS], exps[MAXI];
	assert_non_null(buf);
	assert_int_equal(rfs_fs_sync(fs), 0);
	uint64_t u0 = used(fs);
	rfs_nodeid a = blocks_file(fs, "a", 3, 11, buf);
	memcpy(exp, buf, BS);
	set_size(fs, a, 500);
	assert_true(inl(fs, a));
	expect(fs, a, exp, 500);
	assert_int_equal(st_blocks(fs, a), 1); /* 500 bytes: one sector */
	struct exts x = extents(fs, a);
	assert_int_equal(x.n, 1);
	assert_true(x.e[0].inline_data);
	assert_int_equal(x.e[0].length, 500);
	assert_int_equal(rfs_fs_sync(fs), 0);
	assert_true(used(fs) - u0 < 3); /* no data block left (a node or two) */
	/* grows back as an inline file does: zeros past the cut */
	set_size(fs, a, 800);
	assert_true(inl(fs, a));
	memset(exp + 500, 0, 300);
	expect(fs, a, exp, 800);

	/* A file tree of several leaves (a sparse file of 400 extents). */
	rfs_nodeid s = mkfile(fs, "s");
	fill(buf, BS, 12);
	for (uint64_t i = 0; i < 400; i++)
		assert_int_equal(rfs_fs_write(fs, s, buf, BS, 2 * i * BS), (ssize_t)BS);
	assert_true(rec_of(fs, s).i.subtree != 0);
	set_size(fs, s, MAXI);
	assert_true(inl(fs, s));
	memcpy(exps, buf, MAXI);
	expect(fs, s, exps, MAXI);
	/* One byte over the limit: a block, as before. */
	rfs_nodeid o = blocks_file(fs, "o", 2, 13, buf);
	set_size(fs, o, MAXI + 1);
	assert_false(inl(fs, o));
	assert_int_equal(blocks_of(fs, o), 1);
	expect(fs, o, buf, MAXI + 1);
	/* To 0: no tree, no block; the next small write is inline. */
	rfs_nodeid z = blocks_file(fs, "z", 300, 14, buf);
	set_size(fs, z, 0);
	struct rfs_irec r = rec_of(fs, z);
	assert_int_equal(r.i.subtree, 0);
	assert_int_equal(r.i.blocks, 0);
	assert_int_equal(r.taillen, 0);
	assert_int_equal(rfs_fs_write(fs, z, "tiny", 4, 0), 4);
	assert_true(inl(fs, z));
	fs = reopen(fs, "a", &a);
	expect(fs, a, exp, 800);
	assert_int_equal(rfs_fs_resolve(fs, "s", &s, NULL), 0);
	expect(fs, s, exps, MAXI);
	free(buf);
	rfs_fs_close(fs);
	fsck_clean();
}

/* A shrink of a file whose blocks or tree a clone or a snapshot shares:
 * the file goes inline, the other keeps every byte and block, and once
 * the other is gone too the pool holds no block of either. */
static void test_shrink_shared(void **state)
{
	(void)state;
	rfs_fs *fs = fresh(0);
	uint8_t *buf = malloc(400 * BS);
	assert_non_null(buf);
	struct stat st;
	rfs_nodeid d;
	assert_int_equal(rfs_fs_mkdir(fs, &g_ctx, RFS_ROOT_NODE, "d", 0755, &d, &st), 0);
	assert_int_equal(rfs_fs_sync(fs), 0);
	uint64_t u0 = used(fs);
	/* a: inline extent map, cloned whole; t: a file tree, cloned whole */
	rfs_nodeid a = blocks_file(fs, "a", 2, 21, buf), ca = mkfile(fs, "ca");
	assert_int_equal(rfs_fs_clone_file(fs, a, ca), 0);
	set_size(fs, a, 100);
	assert_true(inl(fs, a));
	expect(fs, a, buf, 100);
	expect(fs, ca, buf, 2 * BS);
	assert_int_equal(blocks_of(fs, ca), 2);
	rfs_nodeid t = mkfile(fs, "t"), ct = mkfile(fs, "ct");
	fill(buf, 400 * BS, 22);
	assert_int_equal(rfs_fs_write(fs, t, buf, 400 * BS, 0), (ssize_t)(400 * BS));
	for (uint64_t i = 0; i < 300; i += 2) /* many extents: a tree */
		assert_int_equal(rfs_fs_write(fs, t, buf + i * BS, BS, i * BS), (ssize_t)BS);
	assert_true(rec_of(fs, t).i.subtree != 0);
	assert_int_equal(rfs_fs_clone_file(fs, t, ct), 0);
	set_size(fs, ct, 700);
	assert_true(inl(fs, ct));
	expect(fs, ct, buf, 700);
	expect(fs, t, buf, 400 * BS);
	/* a file of a snapshot's source, shrunk after the snapshot */
	rfs_nodeid f, sf, snap;
	assert_int_equal(rfs_fs_create(fs, &g_ctx, d, "f", 0644, &f, &st), 0);
	fill(buf, 3 * BS, 23);
	assert_int_equal(rfs_fs_write(fs, f, buf, 3 * BS, 0), (ssize_t)(3 * BS));
	assert_int_equal(rfs_fs_snapshot(fs, d, RFS_ROOT_NODE, "s", 0, &snap, &st), 0);
	set_size(fs, f, 10);
	assert_true(inl(fs, f));
	expect(fs, f, buf, 10);
	assert_int_equal(rfs_fs_resolve(fs, "s/f", &sf, NULL), 0);
	expect(fs, sf, buf, 3 * BS);
	assert_int_equal(blocks_of(fs, sf), 3);
	fs = reopen(fs, NULL, NULL);
	/* Everything but the inline files removed: no data block left. */
	assert_int_equal(rfs_fs_snapshot_delete(fs, RFS_ROOT_NODE, "s"), 0);
	assert_int_equal(rfs_fs_unlink(fs, RFS_ROOT_NODE, "ca"), 0);
	assert_int_equal(rfs_fs_unlink(fs, RFS_ROOT_NODE, "t"), 0);
	assert_true(rfs_fs_reclaim(fs, 0) >= 0);
	assert_int_equal(rfs_fs_sync(fs), 0);
	assert_true(used(fs) - u0 < 8);
	free(buf);
	rfs_fs_close(fs);
	fsck_clean();
}

/* What keeps a shrunk file out of its record: an xattr (a record with
 * inline data has no file tree to keep it in). */
static void test_shrink_xattr_stays(void **state)
{
	(void)state;
	rfs_fs *fs = fresh(0);
	uint8_t buf[2 * BS];
	rfs_nodeid a = blocks_file(fs, "a", 2, 31, buf);
	assert_int_equal(rfs_fs_setxattr(fs, &g_ctx, a, "user.k", "v", 1, 0), 0);
	set_size(fs, a, 100);
	assert_false(inl(fs, a));
	assert_int_equal(blocks_of(fs, a), 1);
	expect(fs, a, buf, 100);
	/* without it, the next shrink goes inline */
	assert_int_equal(rfs_fs_removexattr(fs, a, "user.k"), 0);
	set_size(fs, a, 50);
	assert_true(inl(fs, a));
	expect(fs, a, buf, 50);
	rfs_fs_close(fs);
	fsck_clean();
}

/* du: a file shrunk back inline counts no data block. */
static void test_shrink_du(void **state)
{
	(void)state;
	rfs_fs *fs = fresh(0);
	uint8_t buf[4 * BS];
	rfs_nodeid a = blocks_file(fs, "a", 4, 41, buf);
	set_size(fs, a, 300);
	rfs_du *d;
	assert_int_equal(rfs_du_begin(fs, a, &d), 0);
	int ret;
	while ((ret = rfs_du_step(d, 1000)) == 1)
		;
	assert_int_equal(ret, 0);
	struct rfs_du_stats st;
	rfs_du_get_stats(d, &st);
	rfs_du_end(d);
	assert_int_equal(st.total, 0);
	assert_int_equal(st.exclusive, 0);
	rfs_fs_close(fs);
	fsck_clean();
}

/* A crash at every flush of the shrink's commit (three per commit), in
 * every mode: the file is whole as before (its blocks, its size) or
 * inline as after, its clone is intact, and fsck is clean (no block
 * leaked or freed twice). */
static void shrink_crash_run(tu_pool *unused, uint64_t k, enum rfs_crash_mode mode,
			     uint64_t seed)
{
	(void)unused;
	uint8_t buf[2 * BS];
	rfs_fs *fs = fresh(0);
	assert_int_equal(rfs_fs_close(fs), 0);
	assert_int_equal(rfs_fs_open(g_pool, RFS_FS_CRASHSIM, &fs), 0);
	rfs_nodeid a = blocks_file(fs, "a", 2, 51, buf), c = mkfile(fs, "c");
	assert_int_equal(rfs_fs_clone_file(fs, a, c), 0);
	assert_int_equal(rfs_fs_sync(fs), 0);
	rfs_pool_crash_at_flush(rfs_fs_pool(fs), k, mode, seed);
	set_size(fs, a, 333);
	for (int i = 0; i < 5 && !rfs_pool_crashed(rfs_fs_pool(fs)); i++)
		rfs_fs_sync(fs);
	rfs_fs_crash(fs, mode, seed);
	fsck_clean();
	assert_int_equal(rfs_fs_open(g_pool, 0, &fs), 0);
	assert_int_equal(rfs_fs_resolve(fs, "a", &a, NULL), 0);
	assert_int_equal(rfs_fs_resolve(fs, "c", &c, NULL), 0);
	struct stat st;
	assert_int_equal(rfs_fs_getattr(fs, a, &st), 0);
	if (st.st_size == 333)
		assert_true(inl(fs, a));
	else
		assert_int_equal(st.st_size, 2 * BS);
	expect(fs, a, buf, (size_t)st.st_size);
	expect(fs, c, buf, 2 * BS);
	rfs_fs_close(fs);
	fsck_clean();
}

static void test_shrink_crash(void **state)
{
	(void)state;
	for (int mode = 0; mode < 3; mode++)
		tu_crash_points(NULL, 3, (enum rfs_crash_mode)mode, 2, shrink_crash_run);
}

static void count_line(void *arg, const char *what)
{
	(void)what;
	++*(int *)arg;
}

/* Volume format: new pools are version 4; a version 3 volume keeps
 * working and is upgraded by a read-write mount, not by a read-only one,
 * which writes nothing inline. */
/* A file of a few bytes kept in a block (a fallocate past its end
 * moved it there) whose block 0 cannot be read (a bad checksum),
 * truncated up within the limit: the truncate succeeds and the block
 * stays, as before files went back inline; the pool stays writable (an
 * -EIO from reading the block for the record would discard the
 * transaction and turn the pool read-only) and READs still report the
 * damage. */
static void test_grow_bad_block(void **state)
{
	(void)state;
	rfs_fs *fs = fresh(0);
	uint8_t buf[2 * BS];
	fill(buf, sizeof buf, 9);
	rfs_nodeid a = mkfile(fs, "a");
	assert_int_equal(rfs_fs_write(fs, a, buf, 100, 0), 100);
	assert_true(inl(fs, a));
	assert_int_equal(rfs_fs_fallocate(fs, a, FALLOC_FL_KEEP_SIZE, 0, BS), 0);
	assert_false(inl(fs, a));
	assert_int_equal(rec_of(fs, a).i.subtree, 0);
	struct exts x = extents(fs, a);
	assert_int_equal(x.n, 1);
	uint64_t blk0 = x.e[0].physical / BS;
	assert_true(blk0 != 0);
	rfs_fs_forget(fs, a, 1);
	assert_int_equal(rfs_fs_close(fs), 0);
	tu_flip_bit(g_pool, blk0, 8 * 50 + 3);
	assert_int_equal(rfs_fs_open(g_pool, 0, &fs), 0);
	assert_int_equal(rfs_fs_resolve(fs, "/a", &a, NULL), 0);
	uint8_t rd[600];
	assert_int_equal(rfs_fs_read(fs, a, rd, sizeof rd, 0), -EIO);
	set_size(fs, a, 500);
	assert_false(inl(fs, a));
	assert_int_equal(blocks_of(fs, a), 1);
	assert_int_equal(rfs_fs_read(fs, a, rd, sizeof rd, 0), -EIO);
	/* Still writable, and the commit keeps the truncate. */
	rfs_nodeid b = mkfile(fs, "b");
	assert_int_equal(rfs_fs_write(fs, b, "b", 1, 0), 1);
	assert_int_equal(rfs_fs_sync(fs), 0);
	rfs_fs_forget(fs, b, 1);
	rfs_fs_forget(fs, a, 1);
	assert_int_equal(rfs_fs_close(fs), 0);
	assert_int_equal(rfs_fs_open(g_pool, 0, &fs), 0);
	assert_int_equal(rfs_fs_resolve(fs, "/a", &a, NULL), 0);
	struct stat st;
	assert_int_equal(rfs_fs_getattr(fs, a, &st), 0);
	assert_int_equal(st.st_size, 500);
	/* Truncated to 0, the damaged block goes. */
	set_size(fs, a, 0);
	assert_int_equal(blocks_of(fs, a), 0);
	rfs_fs_forget(fs, a, 1);
	fs = reopen(fs, NULL, NULL);
	assert_int_equal(rfs_fs_close(fs), 0);
}

static void test_format(void **state)
{
	(void)state;
	rfs_fs *fs = fresh(0);
	uint8_t buf[BS];
	fill(buf, sizeof buf, 9);
	assert_int_equal(fs->top->m.version, RFS_VOL_VERSION);
	assert_true(RFS_VOL_VERSION >= 4); /* 5: embedded directories, 6: compact records */
	/* written as a format 3 volume would be (fixed records) */
	fs->top->m.version = 3;
	rfs_nodeid a = mkfile(fs, "a");
	assert_int_equal(rfs_fs_write(fs, a, buf, 1000, 0), 1000); /* inline extents */
	assert_int_equal(rfs_fs_close(fs), 0);
	/* a version 3 volume: valid as it is */
	fx_set_vol_version(3);
	fsck_clean();
	/* read-only: readable, nothing inline written (writes refused) */
	assert_int_equal(rfs_fs_open(g_pool, RFS_FS_RDONLY, &fs), 0);
	assert_int_equal(rfs_fs_resolve(fs, "a", &a, NULL), 0);
	expect(fs, a, buf, 1000);
	assert_int_equal(rfs_fs_close(fs), 0);
	assert_int_equal(fx_vol_version(), 3);
	/* read-write: upgraded, and tiny files go inline from then on */
	assert_int_equal(rfs_fs_open(g_pool, 0, &fs), 0);
	assert_int_equal(rfs_fs_resolve(fs, "a", &a, NULL), 0);
	expect(fs, a, buf, 1000);
	rfs_nodeid b = mkfile(fs, "b");
	assert_int_equal(rfs_fs_write(fs, b, buf, 10, 0), 10);
	assert_true(inl(fs, b));
	assert_int_equal(rfs_fs_close(fs), 0);
	assert_int_equal(fx_vol_version(), RFS_VOL_VERSION);
	fsck_clean();
	/* a volume newer than this program: refused */
	fx_set_vol_version(RFS_VOL_VERSION + 1);
	assert_int_equal(rfs_fs_open(g_pool, 0, &fs), -EPROTONOSUPPORT);
	fx_set_vol_version(RFS_VOL_VERSION);
	/* inline data in a version 3 volume is malformed: fsck says so */
	fx_set_vol_version(3);
	int lines = 0;
	assert_true(rfs_fs_fsck(g_pool, count_line, &lines) > 0);
	assert_true(lines > 0);
}

int main(void)
{
	rfs_log_set_level(RFS_LOG_WARN);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_create_append, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_overwrite_truncate, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_punch_fallocate, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_clone, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_xattr_link, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_diff, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_du, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_crash, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_shrink_back_inline, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_shrink_shared, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_shrink_xattr_stays, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_shrink_du, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_shrink_crash, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_grow_bad_block, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_format, fx_setup, fx_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
