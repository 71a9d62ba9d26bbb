/*
 * A whole-block write over blocks that are exactly one extent record of a
 * file tree replaces that record in place (ext_replace_exact, used by the
 * claimed write path of src/fs/file_claim.c; issue 9): one walk to find
 * it and one to replace it instead of a delete, a neighbour lookup and an
 * insert.  Checked here:
 *
 *  - random single-block overwrites of a file whose blocks are separate
 *    extents all take that path (fs->ext_replaced counts them), read
 *    back what was written, keep st_blocks, and leave fsck clean;
 *  - writes that are not such a replacement -- two extents at once, the
 *    middle of a longer extent, a hole, a block that continues the
 *    extent before it in the pool (which must merge with it) -- take the
 *    general path with the same results;
 *  - a replacement in a clone lets go of shared blocks without touching
 *    the other file.
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
	free(buf);
}

/* Every block reads back as the model says; st_blocks counts the
 * mapped ones. */
static void verify(rfs_fs *fs, const struct file *f)
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
	assert_int_equal((uint64_t)st.st_blocks, (uint64_t)mapped * (BS / 512));
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
	uint64_t before = fs->ext_replaced;
	put(fs, &f, 10, 2); /* two extents at once */
	put(fs, &f, 20, 4); /* one extent of four ... */
	put(fs, &f, 21, 1); /* ... and a block in its middle */
	assert_int_equal(fs->ext_replaced, before);
	/* A hole, then a write into it. */
	assert_int_equal(rfs_fs_fallocate(fs, f.n, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
					  30 * (uint64_t)BS, BS),
			 0);
	f.ver[30] = 0;
	verify(fs, &f);
	put(fs, &f, 30, 1);
	assert_int_equal(fs->ext_replaced, before);
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_overwrites_replace, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_other_writes_general, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_clone_replace, fx_setup, fx_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
