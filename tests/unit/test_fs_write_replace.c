/*
 * A whole-block write over blocks that lie within one extent record of a
 * file tree replaces that record in place, or splits it around the write
 * (ext_replace, used by the claimed write path of src/fs/file_claim.c;
 * issue 9): one walk to find it, then the puts, instead of the general
 * path's three walks (ext_punch, the neighbour lookup of ext_insert).
 * Checked here:
 *
 *  - random single-block overwrites of a file whose blocks are separate
 *    extents all replace a record (fs->ext_replaced counts them), read
 *    back what was written, keep st_blocks, and leave fsck clean;
 *  - writes at the head, the tail and in the middle of a longer extent,
 *    of a clone's shared extent and of an unwritten (fallocated) one
 *    split it (fs->ext_split), leaving the pieces around the write as
 *    they were;
 *  - writes that are neither -- two extents at once, a hole, a block
 *    that continues the extent before it in the pool (which must merge
 *    with it) -- take the general path with the same results;
 *  - a replacement in a clone lets go of shared blocks without touching
 *    the other file;
 *  - a split of a record that reaches past the next leaf's separator
 *    puts its tail in that leaf; random writes, many of them merging,
 *    over a file tree of several leaves read back as written.
 */
#include <linux/falloc.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fsfix.h"
#include "reflinkfs/fs.h"

#include "fs/fs_internal.h"

#define BS RFS_BLOCK_SIZE
#define NB 64u /* more extents than an inline map holds: a file tree */

static const struct rfs_ctx g_ctx = {.uid = 1000, .gid = 1000, .pid = 1};

/* Block contents: file tag, block, version, and a pattern from them. */
static void fill(uint8_t *p, unsigned tag, unsigned b, unsigned v)
{
	uint32_t x = tag * 2654435761u ^ b * 40503u ^ v * 2246822519u;
	for (size_t i = 0; i < BS; i += 4) {
		x = x * 1664525u + 1013904223u;
		memcpy(p + i, &x, 4);
	}
}

struct file {
	rfs_nodeid n;
	unsigned tag;
	unsigned ver[NB]; /* 0: a hole */
};

static void put(rfs_fs *fs, struct file *f, unsigned b, unsigned nblk)
{
	uint8_t *buf = malloc((size_t)nblk * BS);
	assert_non_null(buf);
	for (unsigned i = 0; i < nblk; i++) {
		f->ver[b + i]++;
		fill(buf + (size_t)i * BS, f->tag, b + i, f->ver[b + i]);
	}
	assert_int_equal(rfs_fs_write(fs, f->n, buf, (size_t)nblk * BS, (uint64_t)b * BS),
			 (ssize_t)nblk * BS);
	/* Mapped now: the tests read counters and leaves directly. */
	rfs_fs_settle(fs);
	free(buf);
}

/* Every block reads back as the model says; st_blocks counts the
 * mapped ones, and extra blocks allocated past them. */
static void verify_extra(rfs_fs *fs, const struct file *f, unsigned extra)
{
	uint8_t got[BS], want[BS];
	unsigned mapped = 0;
	for (unsigned b = 0; b < NB; b++) {
		assert_int_equal(rfs_fs_read(fs, f->n, got, BS, (uint64_t)b * BS), BS);
		if (f->ver[b]) {
			fill(want, f->tag, b, f->ver[b]);
			mapped++;
		} else {
			memset(want, 0, BS);
		}
		if (memcmp(got, want, BS))
			fail_msg("file %u block %u: not version %u", f->tag, b, f->ver[b]);
	}
	struct stat st;
	assert_int_equal(rfs_fs_getattr(fs, f->n, &st), 0);
	assert_int_equal((uint64_t)st.st_blocks, (uint64_t)(mapped + extra) * (BS / 512));
}

static void verify(rfs_fs *fs, const struct file *f)
{
	verify_extra(fs, f, 0);
}

/* A file of NB blocks written one at a time 37 blocks apart: every block
 * is an extent of its own (no two consecutive writes are neighbours). */
static void make(rfs_fs *fs, struct file *f, const char *name, unsigned tag)
{
	struct stat st;
	memset(f, 0, sizeof(*f));
	f->tag = tag;
	assert_int_equal(rfs_fs_create(fs, &g_ctx, RFS_ROOT_NODE, name, 0644, &f->n, &st), 0);
	for (unsigned i = 0; i < NB; i++)
		put(fs, f, i * 37 % NB, 1);
}

static rfs_fs *reopen(rfs_fs *fs, const char *name, rfs_nodeid *n)
{
	assert_int_equal(rfs_fs_close(fs), 0);
	assert_int_equal(fx_fsck(), 0);
	assert_int_equal(rfs_fs_open(g_pool, 0, &fs), 0);
	assert_int_equal(rfs_fs_resolve(fs, name, n, NULL), 0);
	return fs;
}

static void test_overwrites_replace(void **state)
{
	(void)state;
	rfs_fs *fs = fx_fresh(64 << 20, 0);
	struct file f;
	make(fs, &f, "f", 1);
	verify(fs, &f);
	/* Twice over, once in the transaction that wrote the blocks and once
	 * after a commit (the old blocks are then the commit's). */
	for (unsigned round = 0; round < 2; round++) {
		uint64_t before = fs->ext_replaced;
		for (unsigned i = 0; i < NB; i++)
			put(fs, &f, (i * 23 + 5) % NB, 1);
		assert_int_equal(fs->ext_replaced - before, NB);
		verify(fs, &f);
		assert_int_equal(rfs_fs_sync(fs), 0);
	}
	fs = reopen(fs, "f", &f.n);
	verify(fs, &f);
	assert_int_equal(rfs_fs_close(fs), 0);
	assert_int_equal(fx_fsck(), 0);
}

/* The extent holding file block b: its first block and length, in
 * blocks (length 0: a hole). */
struct find {
	uint64_t b, lblk, n, phys;
};

static int find_cb(void *arg, const struct rfs_extent_info *e)
{
	struct find *f = arg;
	if (e->logical / BS <= f->b && f->b < (e->logical + e->length) / BS) {
		f->lblk = e->logical / BS;
		f->n = e->length / BS;
		f->phys = e->physical / BS + (f->b - f->lblk);
		return 1;
	}
	return 0;
}

static struct find find(rfs_fs *fs, rfs_nodeid n, uint64_t b)
{
	struct find f = {.b = b};
	assert_int_equal(rfs_fs_extents(fs, n, find_cb, &f) >= 0, 1);
	return f;
}

static void test_other_writes_general(void **state)
{
	(void)state;
	rfs_fs *fs = fx_fresh(64 << 20, 0);
	struct file f;
	make(fs, &f, "f", 2);
	uint64_t before = fs->ext_replaced, split = fs->ext_split;
	put(fs, &f, 10, 2); /* two extents at once */
	assert_int_equal(fs->ext_replaced, before);
	assert_int_equal(fs->ext_split, split);
	/* A hole, then a write into it. */
	assert_int_equal(rfs_fs_fallocate(fs, f.n, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
					  30 * (uint64_t)BS, BS),
			 0);
	f.ver[30] = 0;
	verify(fs, &f);
	put(fs, &f, 30, 1);
	assert_int_equal(fs->ext_replaced, before);
	assert_int_equal(fs->ext_split, split);
	verify(fs, &f);
	/* Block 41 right after block 40 (both extents of their own): 40 is
	 * replaced; 41 continues 40's new extent when its block came next
	 * in the pool, and must then merge into it (the general path), else
	 * it is replaced too. */
	put(fs, &f, 40, 1);
	assert_int_equal(fs->ext_replaced, before + 1);
	put(fs, &f, 41, 1);
	struct find e40 = find(fs, f.n, 40), e41 = find(fs, f.n, 41);
	assert_int_equal(e40.n >= 1 && e41.n >= 1, 1);
	if (e41.phys == e40.phys + 1) {
		assert_int_equal(e41.lblk, 40);
		assert_int_equal(e41.n, 2);
		assert_int_equal(fs->ext_replaced, before + 1);
	} else {
		assert_int_equal(e41.lblk, 41);
		assert_int_equal(fs->ext_replaced, before + 2);
	}
	verify(fs, &f);
	fs = reopen(fs, "f", &f.n);
	verify(fs, &f);
	assert_int_equal(rfs_fs_close(fs), 0);
	assert_int_equal(fx_fsck(), 0);
}

static void test_clone_replace(void **state)
{
	(void)state;
	rfs_fs *fs = fx_fresh(64 << 20, 0);
	struct file a, b;
	struct stat st;
	make(fs, &a, "a", 3);
	assert_int_equal(rfs_fs_create(fs, &g_ctx, RFS_ROOT_NODE, "b", 0644, &b.n, &st), 0);
	assert_int_equal(rfs_fs_clone_file(fs, a.n, b.n), 0);
	b.tag = a.tag;
	memcpy(b.ver, a.ver, sizeof(b.ver));
	assert_int_equal(rfs_fs_sync(fs), 0);
	uint64_t before = fs->ext_replaced;
	for (unsigned i = 0; i < NB; i += 2)
		put(fs, &b, (i * 23 + 5) % NB, 1);
	assert_int_equal(fs->ext_replaced - before, NB / 2);
	verify(fs, &a);
	verify(fs, &b);
	fs = reopen(fs, "a", &a.n);
	assert_int_equal(rfs_fs_resolve(fs, "b", &b.n, NULL), 0);
	verify(fs, &a);
	verify(fs, &b);
	assert_int_equal(rfs_fs_close(fs), 0);
	assert_int_equal(fx_fsck(), 0);
}

/* Block b is an extent of its own now, and its neighbours inside
 * [lo, hi) are still mapped where the extent e (as found before the
 * write) put them. */
static void check_split(rfs_fs *fs, rfs_nodeid n, uint64_t b, uint64_t nb, struct find e)
{
	struct find w = find(fs, n, b);
	assert_int_equal(w.lblk, b);
	assert_int_equal(w.n, nb);
	for (uint64_t x = e.lblk; x < e.lblk + e.n; x++) {
		if (x >= b && x < b + nb)
			continue;
		struct find o = find(fs, n, x);
		assert_int_equal(o.phys, e.phys - (e.b - e.lblk) + (x - e.lblk));
		assert_int_equal(o.lblk + o.n <= b || o.lblk >= b + nb, 1);
	}
}

static void test_split(void **state)
{
	(void)state;
	rfs_fs *fs = fx_fresh(64 << 20, 0);
	struct file f, g;
	struct stat st;
	memset(&f, 0, sizeof(f));
	f.tag = 4;
	assert_int_equal(rfs_fs_create(fs, &g_ctx, RFS_ROOT_NODE, "f", 0644, &f.n, &st), 0);
	/* A file tree (more extents than an inline map holds) with one
	 * long extent at blocks 0-31: separate blocks from 32 on first. */
	for (unsigned i = 32; i < NB; i++)
		put(fs, &f, 32 + (i * 37 % (NB - 32)), 1);
	put(fs, &f, 0, 32);
	struct find e = find(fs, f.n, 0);
	assert_int_equal(e.lblk, 0);
	assert_int_equal(e.n, 32); /* the precondition of what follows */
	uint64_t before = fs->ext_replaced, split = fs->ext_split;
	/* Its head, its tail, its middle, two blocks in the middle. */
	static const unsigned at[][2] = {{0, 1}, {31, 1}, {15, 1}, {20, 2}};
	for (unsigned k = 0; k < 4; k++) {
		struct find cur = find(fs, f.n, at[k][0] == 0 ? 1 : at[k][0] - 1);
		put(fs, &f, at[k][0], at[k][1]);
		assert_int_equal(fs->ext_split, split + k + 1);
		check_split(fs, f.n, at[k][0], at[k][1], cur);
		verify(fs, &f);
	}
	assert_int_equal(fs->ext_replaced, before);
	assert_int_equal(rfs_fs_sync(fs), 0);

	/* A clone shares the pieces: a split in it leaves the original. */
	assert_int_equal(rfs_fs_create(fs, &g_ctx, RFS_ROOT_NODE, "g", 0644, &g.n, &st), 0);
	assert_int_equal(rfs_fs_clone_file(fs, f.n, g.n), 0);
	g.tag = f.tag;
	memcpy(g.ver, f.ver, sizeof(g.ver));
	put(fs, &g, 5, 1);
	assert_int_equal(fs->ext_split, split + 5);
	verify(fs, &f);
	verify(fs, &g);

	/* An unwritten (fallocated) extent beyond the end: a write into its
	 * middle keeps the rest unwritten (zeros, still allocated). */
	uint64_t u = 4 * (uint64_t)NB; /* past every block written */
	assert_int_equal(rfs_fs_fallocate(fs, f.n, 0, u * BS, 16 * BS), 0);
	struct find ue = find(fs, f.n, u);
	assert_int_equal(ue.n, 16);
	uint8_t blk[BS], got[BS];
	fill(blk, 9, 0, 1);
	assert_int_equal(rfs_fs_write(fs, f.n, blk, BS, (u + 7) * BS), BS);
	rfs_fs_settle(fs);
	assert_int_equal(fs->ext_split, split + 6);
	check_split(fs, f.n, u + 7, 1, ue);
	assert_int_equal(rfs_fs_read(fs, f.n, got, BS, (u + 7) * BS), BS);
	assert_memory_equal(got, blk, BS);
	memset(blk, 0, BS);
	assert_int_equal(rfs_fs_read(fs, f.n, got, BS, (u + 6) * BS), BS);
	assert_memory_equal(got, blk, BS);
	assert_int_equal(rfs_fs_read(fs, f.n, got, BS, (u + 8) * BS), BS);
	assert_memory_equal(got, blk, BS);
	assert_int_equal(rfs_fs_getattr(fs, f.n, &st), 0);
	assert_int_equal((uint64_t)st.st_size, (u + 16) * BS);
	verify_extra(fs, &f, 16);

	fs = reopen(fs, "f", &f.n);
	assert_int_equal(rfs_fs_resolve(fs, "g", &g.n, NULL), 0);
	verify_extra(fs, &f, 16);
	verify(fs, &g);
	fill(blk, 9, 0, 1);
	assert_int_equal(rfs_fs_read(fs, f.n, got, BS, (u + 7) * BS), BS);
	assert_memory_equal(got, blk, BS);
	check_split(fs, f.n, u + 7, 1, ue);
	assert_int_equal(rfs_fs_close(fs), 0);
	assert_int_equal(fx_fsck(), 0);
}

/* The leaf of the file tree of f that holds (or would hold) block b's
 * record. */
static uint64_t leaf_of(rfs_fs *fs, rfs_nodeid f, uint64_t b)
{
	struct rfs_irec r;
	fx_rec(fs, f, &r);
	assert_true(r.i.subtree != 0);
	rfs_tree t = FS_TREE(r.i.subtree, RFS_OWNER_FILE);
	uint8_t key[9];
	uint64_t leaf = 0;
	bool shared;
	ext_key(key, b);
	rfs_pool_rdlock(fs->pool);
	int ret = rfs_tree_leaf(fs->pool, &t, key, 9, &leaf, &shared);
	rfs_pool_unlock(fs->pool);
	assert_int_equal(ret, 0);
	return leaf;
}

#define NL 600u /* separate extents: a file tree of several leaves */

static void put_big(rfs_fs *fs, rfs_nodeid n, unsigned *ver, unsigned b, unsigned nblk)
{
	uint8_t *buf = malloc((size_t)nblk * BS);
	assert_non_null(buf);
	for (unsigned i = 0; i < nblk; i++)
		fill(buf + (size_t)i * BS, 7, b + i, ++ver[b + i]);
	assert_int_equal(rfs_fs_write(fs, n, buf, (size_t)nblk * BS, (uint64_t)b * BS),
			 (ssize_t)nblk * BS);
	/* Mapped now: the tests read counters and leaves directly. */
	rfs_fs_settle(fs);
	free(buf);
}

static void verify_big(rfs_fs *fs, rfs_nodeid n, const unsigned *ver)
{
	uint8_t got[BS], want[BS];
	for (unsigned b = 0; b < NL; b++) {
		assert_int_equal(rfs_fs_read(fs, n, got, BS, (uint64_t)b * BS), BS);
		if (ver[b])
			fill(want, 7, b, ver[b]);
		else
			memset(want, 0, BS);
		if (memcmp(got, want, BS))
			fail_msg("block %u: not version %u", b, ver[b]);
	}
}

/*
 * A fresh fs with a file "f" of NL blocks, each its own extent record
 * (written one at a time, 37 blocks after the one before, so that no
 * write continues its predecessor and merges with it): a file tree of
 * several leaves.  ver (NL entries) becomes the model, every block at
 * version 1.  *n: the file.
 */
static rfs_fs *big_file(unsigned *ver, rfs_nodeid *n)
{
	rfs_fs *fs = fx_fresh(64 << 20, 0);
	struct stat st;
	memset(ver, 0, NL * sizeof(*ver));
	assert_int_equal(rfs_fs_create(fs, &g_ctx, RFS_ROOT_NODE, "f", 0644, n, &st), 0);
	for (unsigned i = 0; i < NL; i++)
		put_big(fs, *n, ver, i * 37 % NL, 1);
	return fs;
}

/*
 * A record whose key lies in one leaf and whose blocks reach past the
 * next leaf's separator (the record at the separator went, and a write
 * that continued the record before it grew that one across): a split of
 * it puts the pieces past the separator in the next leaf, where lookups
 * go for them.  A write at the record's start leaves a tail keyed at
 * the separator; one past the separator is looked for in the next leaf.
 */
static void test_split_across_leaves(void **state)
{
	(void)state;
	static unsigned ver[NL];
	rfs_nodeid n;
	rfs_fs *fs = big_file(ver, &n);
	/* k: the first record of a leaf other than the first. */
	unsigned k = 0;
	for (unsigned b = 2; b + 4 < NL && !k; b++)
		if (leaf_of(fs, n, b) != leaf_of(fs, n, b - 1))
			k = b;
	assert_true(k != 0);
	uint64_t left = leaf_of(fs, n, k - 1);
	/* One write over k - 1 and k: both records go (the general path),
	 * the new one keyed k - 1, in the left leaf, reaching past k. */
	put_big(fs, n, ver, k - 1, 2);
	struct find e = find(fs, n, k - 1);
	assert_int_equal(e.lblk, k - 1);
	assert_int_equal(e.n, 2);
	assert_int_equal(leaf_of(fs, n, k - 1), left);
	assert_true(leaf_of(fs, n, k) != left);
	verify_big(fs, n, ver);
	/* Its first block: the tail is keyed k. */
	uint64_t split = fs->ext_split;
	put_big(fs, n, ver, k - 1, 1);
	assert_int_equal(fs->ext_split, split + 1);
	verify_big(fs, n, ver);
	e = find(fs, n, k);
	assert_int_equal(e.lblk, k);
	assert_int_equal(e.n, 1);
	/* Again across, then the block past the separator. */
	put_big(fs, n, ver, k - 1, 2);
	put_big(fs, n, ver, k, 1);
	verify_big(fs, n, ver);
	fs = reopen(fs, "f", &n);
	verify_big(fs, n, ver);
	assert_int_equal(rfs_fs_close(fs), 0);
	assert_int_equal(fx_fsck(), 0);
}

/*
 * Random writes of 1-4 blocks over a file of separate extents, a third
 * of them continuing the write before (their blocks come next in the
 * pool, so the records merge and grow across leaf boundaries), some
 * punching a hole: contents against a model, fsck at the end.
 */
static void test_random_writes(void **state)
{
	(void)state;
	static unsigned ver[NL];
	rfs_nodeid n;
	rfs_fs *fs = big_file(ver, &n);
	uint64_t x = 0x9e3779b97f4a7c15ull;
	unsigned next = 0;
	for (unsigned op = 0; op < 3000; op++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		unsigned nblk = 1 + (unsigned)(x >> 60) % 4;
		unsigned b = (x >> 8) % 3 == 0 ? next : (unsigned)((x >> 20) % NL);
		if (b + nblk > NL)
			b = NL - nblk;
		if ((x >> 40) % 16 == 0) {
			assert_int_equal(rfs_fs_fallocate(fs, n, FALLOC_FL_PUNCH_HOLE |
							  FALLOC_FL_KEEP_SIZE,
							  (uint64_t)b * BS, (uint64_t)nblk * BS), 0);
			for (unsigned i = 0; i < nblk; i++)
				ver[b + i] = 0;
		} else {
			put_big(fs, n, ver, b, nblk);
		}
		next = b + nblk;
		if (op % 1000 == 999)
			verify_big(fs, n, ver);
	}
	fs = reopen(fs, "f", &n);
	verify_big(fs, n, ver);
	assert_int_equal(rfs_fs_close(fs), 0);
	assert_int_equal(fx_fsck(), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_overwrites_replace, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_other_writes_general, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_clone_replace, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_split, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_split_across_leaves, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_random_writes, fx_setup, fx_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
