/*
 * READ's copy of the inode record (src/fs/rcache.c, issue 9): a READ
 * uses the node's copy of the file's record while no write lock was
 * taken since the copy was made, and walks to the record again after
 * any change.
 *
 * Checked by outcome and by the fs's hit/miss counters: a second READ
 * with nothing changed in between is answered from the copy (a hit);
 * after each kind of change of the file -- write, extending write,
 * truncate, hole punch, a clone of another file onto it (whole and
 * range), rename over its name, unlink, deletion of the snapshot holding
 * it, and changes of *other* files other than their data writes (which
 * leave the copy valid: op_local) -- the next READ walks (a miss) and
 * returns the new contents, never the old.  A thread test runs readers
 * of two files while a writer rewrites one of them version after
 * version: every READ sees one whole version, never an older one than
 * the reader saw before (TSan checks the copy's locking).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/fsfix.h"
#include "common/vreader.h"
#include "fs/fs_internal.h"
#include "reflinkfs/fs.h"

#define BS 4096

static const struct rfs_ctx g_ctx = {.uid = 0, .gid = 0, .pid = 1, .umask = 022};

static uint64_t g_hits, g_misses;

/* Hits and misses since the last call. */
static void counts(rfs_fs *fs, uint64_t *hits, uint64_t *misses)
{
	uint64_t h, m;
	rfs_fs_rcache_stats(fs, &h, &m);
	*hits = h - g_hits;
	*misses = m - g_misses;
	g_hits = h;
	g_misses = m;
}

static rfs_nodeid mkfile(rfs_fs *fs, rfs_nodeid dir, const char *name, int byte, size_t len)
{
	rfs_nodeid f;
	struct stat st;
	assert_int_equal(rfs_fs_create(fs, &g_ctx, dir, name, 0644, &f, &st), 0);
	uint8_t *b = malloc(len ? len : 1);
	assert_non_null(b);
	memset(b, byte, len);
	if (len)
		assert_int_equal(rfs_fs_write(fs, f, b, len, 0), (ssize_t)len);
	free(b);
	/* Mapped now: a queued write makes the first READ past the end
	 * map it, a change between its two looks at the copy. */
	rfs_fs_settle(fs);
	return f;
}

/* Read all of f (up to max bytes) and check it is len bytes, every one
 * byte (0 for a hole where hole_lo <= offset < hole_hi); then that a
 * second READ is a hit and the first was what want_miss says. */
static int g_line;
#define expect(...) (g_line = __LINE__, expect_(__VA_ARGS__))
static void expect_(rfs_fs *fs, rfs_nodeid f, size_t len, int byte, size_t hole_lo,
		   size_t hole_hi, bool want_miss)
{
	size_t max = 64 * BS;
	uint8_t *b = malloc(max);
	assert_non_null(b);
	uint64_t h, m;
	counts(fs, &h, &m);
	for (int pass = 0; pass < 2; pass++) {
		memset(b, 0xee, max);
		ssize_t n = rfs_fs_read(fs, f, b, max, 0);
		if (n != (ssize_t)len)
			fail_msg("line %d: node %llu: read %zd, expected %zu", g_line, (unsigned long long)f, n, len);
		for (size_t i = 0; i < len; i++) {
			int want = i >= hole_lo && i < hole_hi ? 0 : byte;
			if (b[i] != want)
				fail_msg("line %d: byte %zu: %d, expected %d", g_line, i, b[i], want);
		}
		counts(fs, &h, &m);
		if (pass == 0 && want_miss && m != 1)
			fail_msg("line %d: the first READ counted %llu misses, expected 1", g_line,
				 (unsigned long long)m);
		if (pass == 1) {
			/* Nothing changed between the two READs, except maybe
			 * the first one's atime update (a change: a miss). */
			if (m == 0)
				assert_int_equal(h, 1);
			else
				assert_int_equal(m, 1);
		}
	}
	/* Settled: now a hit for sure (atime is later than mtime). */
	assert_int_equal(rfs_fs_read(fs, f, b, max, 0), (ssize_t)len);
	counts(fs, &h, &m);
	assert_int_equal(h, 1);
	assert_int_equal(m, 0);
	free(b);
}

/* One block of f reads as byte, from the copies (a hit, no miss). */
static void expect_hit(rfs_fs *fs, rfs_nodeid f, int byte)
{
	uint8_t one[BS];
	uint64_t h, m;
	counts(fs, &h, &m);
	assert_int_equal(rfs_fs_read(fs, f, one, BS, 0), BS);
	assert_int_equal(one[0], byte);
	counts(fs, &h, &m);
	assert_true(h == 1 && m == 0);
}

static void test_copy_follows_every_change(void **state)
{
	(void)state;
	rfs_fs *fs = fx_fresh(256u << 20, 0);
	g_hits = g_misses = 0;
	rfs_nodeid f = mkfile(fs, RFS_ROOT_NODE, "f", 'a', 8 * BS);
	rfs_nodeid g = mkfile(fs, RFS_ROOT_NODE, "g", 'b', 4 * BS);
	assert_int_equal(rfs_fs_open_node(fs, f), 0);
	expect(fs, f, 8 * BS, 'a', 0, 0, true);

	/* A data write of another file changes only that file (op_local):
	 * f's copy stays valid, the next READ is a hit. */
	assert_int_equal(rfs_fs_write(fs, g, "bbbb", 4, 0), 4);
	expect_hit(fs, f, 'a');
	/* A commit changes nothing a copy holds: still a hit after it. */
	assert_int_equal(rfs_fs_sync(fs), 0);
	expect_hit(fs, f, 'a');
	/* Any other change of another file invalidates (one generation for
	 * all but data writes). */
	struct stat gsz = {.st_size = 4 * BS};
	assert_int_equal(rfs_fs_setattr(fs, g, &gsz, RFS_SET_SIZE, NULL), 0);
	expect(fs, f, 8 * BS, 'a', 0, 0, true);

	/* Overwrite in place, whole blocks (the claimed path). */
	uint8_t *blk = malloc(8 * BS);
	assert_non_null(blk);
	memset(blk, 'c', 8 * BS);
	assert_int_equal(rfs_fs_write(fs, f, blk, 8 * BS, 0), 8 * BS);
	/* Queued (file_delay.c): the tree, and so the copy, is unchanged,
	 * and a READ inside the file puts the write over it; mapped, the
	 * copy is old. */
	uint8_t *rd = malloc(8 * BS);
	assert_non_null(rd);
	assert_int_equal(rfs_fs_read(fs, f, rd, 8 * BS, 0), 8 * BS);
	assert_memory_equal(rd, blk, 8 * BS);
	free(rd);
	rfs_fs_settle(fs);
	expect(fs, f, 8 * BS, 'c', 0, 0, true);

	/* An extending, partial-block write: size and contents. */
	memset(blk, 'c', 8 * BS);
	assert_int_equal(rfs_fs_write(fs, f, blk, 100, 8 * BS), 100);
	expect(fs, f, 8 * BS + 100, 'c', 0, 0, true);

	/* Truncate. */
	struct stat st = {.st_size = 3 * BS};
	assert_int_equal(rfs_fs_setattr(fs, f, &st, RFS_SET_SIZE, NULL), 0);
	expect(fs, f, 3 * BS, 'c', 0, 0, true);

	/* Hole punch keeps the size, zeroes block 1. */
	assert_int_equal(rfs_fs_fallocate(fs, f, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
					  BS, BS),
			 0);
	expect(fs, f, 3 * BS, 'c', BS, 2 * BS, true);

	/* A clone of g onto f: g's size and data. */
	memset(blk, 'd', 4 * BS);
	assert_int_equal(rfs_fs_write(fs, g, blk, 4 * BS, 0), 4 * BS);
	assert_int_equal(rfs_fs_clone_file(fs, g, f), 0);
	expect(fs, f, 4 * BS, 'd', 0, 0, true);

	/* A range clone onto f, past its end. */
	memset(blk, 'e', 4 * BS);
	assert_int_equal(rfs_fs_write(fs, g, blk, 4 * BS, 0), 4 * BS);
	assert_int_equal(rfs_fs_clone_range(fs, g, 0, f, 0, 6 * BS), 4 * BS);
	expect(fs, f, 4 * BS, 'e', 0, 0, true);

	/* Rename over f's name: f (open) keeps its data, the name reads g's. */
	rfs_nodeid h = mkfile(fs, RFS_ROOT_NODE, "h", 'h', 2 * BS);
	expect(fs, h, 2 * BS, 'h', 0, 0, true);
	assert_int_equal(rfs_fs_rename(fs, &g_ctx, RFS_ROOT_NODE, "h", RFS_ROOT_NODE, "f", 0),
			 0);
	expect(fs, f, 4 * BS, 'e', 0, 0, true);
	rfs_nodeid f2;
	assert_int_equal(rfs_fs_lookup(fs, RFS_ROOT_NODE, "f", &f2, &st), 0);
	assert_true(f2 == h);
	expect(fs, f2, 2 * BS, 'h', 0, 0, true);
	rfs_fs_forget(fs, f2, 1);

	/* Unlinked while open: still its data; a write to it shows. */
	assert_int_equal(rfs_fs_open_node(fs, h), 0);
	assert_int_equal(rfs_fs_unlink(fs, RFS_ROOT_NODE, "f"), 0);
	expect(fs, h, 2 * BS, 'h', 0, 0, true);
	assert_int_equal(rfs_fs_write(fs, h, "hhhh", 4, 2 * BS), 4);
	expect(fs, h, 2 * BS + 4, 'h', 0, 0, true);
	rfs_fs_release(fs, h);
	rfs_fs_forget(fs, h, 1);

	/* A file of a snapshot: read through its node, then the snapshot
	 * goes; the node reads as stale, not as the old record. */
	rfs_nodeid d, s, sf;
	assert_int_equal(rfs_fs_mkdir(fs, &g_ctx, RFS_ROOT_NODE, "d", 0755, &d, &st), 0);
	rfs_fs_forget(fs, mkfile(fs, d, "x", 'x', BS), 1);
	assert_int_equal(rfs_fs_snapshot(fs, d, RFS_ROOT_NODE, "snap", 0, &s, &st), 0);
	assert_int_equal(rfs_fs_lookup(fs, s, "x", &sf, &st), 0);
	expect(fs, sf, BS, 'x', 0, 0, true);
	assert_int_equal(rfs_fs_snapshot_delete(fs, RFS_ROOT_NODE, "snap"), 0);
	char c;
	assert_int_equal(rfs_fs_read(fs, sf, &c, 1, 0), -ESTALE);
	rfs_fs_forget(fs, sf, 1);
	rfs_fs_forget(fs, s, 1);
	rfs_fs_forget(fs, d, 1);

	free(blk);
	rfs_fs_release(fs, f);
	rfs_fs_forget(fs, f, 1);
	rfs_fs_forget(fs, g, 1);
	assert_int_equal(rfs_fs_close(fx_reopen(fs, 0)), 0);
}

/* ---- extent copies ------------------------------------------------------ */

static uint64_t g_ehits, g_emisses;

/* Extent-copy hits and misses since the last call; entries allocated. */
static size_t ecounts(rfs_fs *fs, uint64_t *hits, uint64_t *misses)
{
	uint64_t h, m;
	size_t alloc;
	rfs_fs_ecache_stats(fs, &h, &m, &alloc);
	*hits = h - g_ehits;
	*misses = m - g_emisses;
	g_ehits = h;
	g_emisses = m;
	return alloc;
}

#define EBLK 400 /* file blocks; every other one written: 200 extents */

static int g_ver[EBLK]; /* version of each block, -1 for a hole */
static uint64_t g_size; /* the file's size */

static int eb_want(uint64_t b)
{
	return g_ver[b] < 0 ? 0 : (int)('A' + (b / 2 + (unsigned)g_ver[b]) % 26);
}

static void eb_read(rfs_fs *fs, rfs_nodeid f, uint64_t b, int nb)
{
	uint8_t buf[4 * BS];
	memset(buf, 0xee, sizeof(buf));
	uint64_t end = (b + (uint64_t)nb) * BS < g_size ? (b + (uint64_t)nb) * BS : g_size;
	ssize_t want = b * BS >= g_size ? 0 : (ssize_t)(end - b * BS);
	ssize_t n = rfs_fs_read(fs, f, buf, (size_t)nb * BS, b * BS);
	if (n != want)
		fail_msg("read of block %llu+%d: %zd bytes, expected %zd", (unsigned long long)b, nb,
			 n, want);
	for (ssize_t i = 0; i < n; i++)
		if (buf[i] != eb_want(b + (uint64_t)i / BS))
			fail_msg("block %llu byte %zd: %d, expected %d",
				 (unsigned long long)(b + (uint64_t)i / BS), i % BS, buf[i],
				 eb_want(b + (uint64_t)i / BS));
}

static void eb_write(rfs_fs *fs, rfs_nodeid f, uint64_t b, int v)
{
	uint8_t blk[BS];
	g_ver[b] = v;
	memset(blk, eb_want(b), BS);
	assert_int_equal(rfs_fs_write(fs, f, blk, BS, b * BS), BS);
	if ((b + 1) * BS > g_size)
		g_size = (b + 1) * BS;
}

/* Read b until a READ is answered from a copy (the first may update
 * atime, a change): at most three READs. */
static void eb_settle(rfs_fs *fs, rfs_nodeid f, uint64_t b)
{
	uint64_t h = 0, m;
	for (int i = 0; i < 3 && !h; i++) {
		eb_read(fs, f, b, 1);
		ecounts(fs, &h, &m);
	}
	assert_int_equal(h, 1);
}

static void test_extent_copies(void **state)
{
	(void)state;
	rfs_fs *fs = fx_fresh(256u << 20, 0);
	g_ehits = g_emisses = 0;
	g_size = 0;
	rfs_nodeid f, g;
	struct stat st;
	assert_int_equal(rfs_fs_create(fs, &g_ctx, RFS_ROOT_NODE, "f", 0644, &f, &st), 0);
	assert_int_equal(rfs_fs_open_node(fs, f), 0);
	/* 200 extents of one block, holes between: a file tree. */
	for (uint64_t b = 0; b < EBLK; b++)
		g_ver[b] = -1;
	for (uint64_t b = 0; b < EBLK; b += 2)
		eb_write(fs, f, b, 0);
	g_size = EBLK * BS;
	struct stat sz = {.st_size = (off_t)g_size};
	assert_int_equal(rfs_fs_setattr(fs, f, &sz, RFS_SET_SIZE, NULL), 0);
	uint64_t h, m;
	/* A READ walks and keeps the extent; the same READ again is
	 * answered from the copy. */
	eb_settle(fs, f, 0);
	eb_read(fs, f, 100, 1);
	ecounts(fs, &h, &m);
	assert_true(h == 0 && m == 1);
	eb_read(fs, f, 100, 1);
	ecounts(fs, &h, &m);
	assert_true(h == 1 && m == 0);
	/* A hole beside a copied extent, and ranges across extent and hole:
	 * no copy maps them, they walk (and read zeroes in the hole). */
	eb_read(fs, f, 300, 1);
	eb_read(fs, f, 300, 1);
	eb_read(fs, f, 301, 1);
	eb_read(fs, f, 300, 2);
	eb_read(fs, f, 299, 2);
	ecounts(fs, &h, &m);
	assert_true(h == 1 && m == 4);

	/* Overwrite block 100: queued, the READ puts it over the copy
	 * (eb_read checks the bytes); mapped, the copy is of an older
	 * generation. */
	eb_write(fs, f, 100, 1);
	eb_read(fs, f, 100, 1);
	rfs_fs_settle(fs);
	ecounts(fs, &h, &m);
	eb_read(fs, f, 100, 1);
	ecounts(fs, &h, &m);
	assert_true(h == 0 && m == 1);
	eb_settle(fs, f, 100);
	eb_settle(fs, f, 300);

	/* Truncate below the copied extents and extend again: holes. */
	sz.st_size = 50 * BS;
	assert_int_equal(rfs_fs_setattr(fs, f, &sz, RFS_SET_SIZE, NULL), 0);
	sz.st_size = (off_t)g_size;
	assert_int_equal(rfs_fs_setattr(fs, f, &sz, RFS_SET_SIZE, NULL), 0);
	for (uint64_t b = 50; b < EBLK; b++)
		g_ver[b] = -1;
	eb_read(fs, f, 300, 1);
	eb_read(fs, f, 100, 1);
	ecounts(fs, &h, &m);
	assert_int_equal(h, 0);

	/* A clone of another file onto f: its extents. */
	assert_int_equal(rfs_fs_create(fs, &g_ctx, RFS_ROOT_NODE, "g", 0644, &g, &st), 0);
	eb_settle(fs, f, 0);
	for (uint64_t b = 0; b < EBLK; b += 2)
		eb_write(fs, g, b, 2);
	assert_int_equal(rfs_fs_clone_file(fs, g, f), 0);
	eb_read(fs, f, 0, 1);
	eb_read(fs, f, 300, 1);
	ecounts(fs, &h, &m);
	assert_int_equal(h, 0);
	eb_settle(fs, f, 300);

	/* The budget: at most that many entries over all nodes; READs past
	 * it walk and are right. */
	rfs_fs_set_ecache_budget(fs, 16);
	eb_write(fs, f, 0, 3); /* a change: every copy is of the past */
	size_t alloc = 0;
	for (int pass = 0; pass < 2; pass++)
		for (uint64_t b = 0; b < EBLK; b += 2) {
			eb_read(fs, f, b, 1);
			alloc = ecounts(fs, &h, &m);
			assert_true(alloc <= 32); /* what was allocated before, or 16 */
		}
	rfs_fs_set_ecache_budget(fs, RFS_ECACHE_BUDGET);

	rfs_fs_release(fs, f);
	rfs_fs_forget(fs, f, 1);
	rfs_fs_forget(fs, g, 1);
	assert_int_equal(rfs_fs_close(fx_reopen(fs, 0)), 0);
}

/* ---- threads ------------------------------------------------------------ */

#define VBLK 8
#define VERSIONS 200

static void test_readers_beside_a_writer(void **state)
{
	(void)state;
	rfs_fs *fs = fx_fresh(256u << 20, 0);
	rfs_nodeid a = mkfile(fs, RFS_ROOT_NODE, "a", 1, VBLK * BS);
	rfs_nodeid b = mkfile(fs, RFS_ROOT_NODE, "b", 7, VBLK * BS);
	/* Blocks far past what is read, one extent each: a's map is a
	 * tree, so READs of it use extent copies too. */
	uint8_t far[BS];
	memset(far, 9, BS);
	for (uint64_t k = 0; k < 40; k++)
		assert_int_equal(rfs_fs_write(fs, a, far, BS, (100 + 2 * k) * BS), BS);
	_Atomic bool stop = false;
	struct fx_vreader rd[3] = {
		{.fs = fs, .node = a, .len = VBLK * BS, .stop = &stop},
		{.fs = fs, .node = a, .len = VBLK * BS, .stop = &stop},
		{.fs = fs, .node = b, .len = VBLK * BS, .stop = &stop},
	};
	pthread_t th[3];
	for (int i = 0; i < 3; i++)
		assert_int_equal(pthread_create(&th[i], NULL, fx_vreader_main, &rd[i]), 0);
	uint8_t *buf = malloc(VBLK * BS);
	assert_non_null(buf);
	for (int v = 2; v <= VERSIONS; v++) {
		memset(buf, v, VBLK * BS);
		/* Whole blocks, one operation: readers see all or nothing. */
		assert_int_equal(rfs_fs_write(fs, a, buf, VBLK * BS, 0), VBLK * BS);
		if (v % 50 == 0)
			assert_int_equal(rfs_fs_sync(fs), 0);
	}
	atomic_store(&stop, true);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(pthread_join(th[i], NULL), 0);
		if (rd[i].bad)
			fail_msg("reader %d: failure %d after %u reads", i, rd[i].bad, rd[i].reads);
	}
	/* Settled: the last version; the first READ may update atime (a
	 * change), the second walks again then, the third is a hit. */
	uint64_t h0, m0, h1, m1;
	for (int i = 0; i < 2; i++) {
		assert_int_equal(rfs_fs_read(fs, a, buf, VBLK * BS, 0), VBLK * BS);
		assert_int_equal(buf[0], VERSIONS);
		assert_int_equal(buf[VBLK * BS - 1], VERSIONS);
	}
	rfs_fs_rcache_stats(fs, &h0, &m0);
	assert_int_equal(rfs_fs_read(fs, a, buf, VBLK * BS, 0), VBLK * BS);
	rfs_fs_rcache_stats(fs, &h1, &m1);
	assert_int_equal(buf[0], VERSIONS);
	assert_true(h1 == h0 + 1 && m1 == m0);
	free(buf);
	rfs_fs_forget(fs, a, 1);
	rfs_fs_forget(fs, b, 1);
	assert_int_equal(rfs_fs_close(fx_reopen(fs, 0)), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_copy_follows_every_change, fx_setup,
						fx_teardown),
		cmocka_unit_test_setup_teardown(test_extent_copies, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_readers_beside_a_writer, fx_setup,
						fx_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
