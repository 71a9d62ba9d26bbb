/*
 * A whole-block write that returned is seen by every later reader.
 *
 * Whole-block writes take the claimed path (src/fs/file_claim.c): the data
 * goes into claimed blocks with no lock held, then an operation maps them.
 * If that mapping is ever deferred (delayed mapping: a queue of mappings
 * on the file's node, applied in batches), every reader of the file's
 * state must apply or consult the queue first.  Each test here makes a
 * fresh fs and a file, does a few (five, well under any batch size; the
 * threads test 24 per file, each read back before the next) 4 KiB-aligned
 * whole-block writes at scattered offsets -- some
 * extending the file, some over earlier data, one over a block written
 * earlier in the same test -- and then asks ONE kind of reader, checking
 * its exact answer against a byte model of the file:
 *
 *   read (locked and lock-free), getattr / lookup / readdirplus, lseek,
 *   extents (and the pool bytes they point at), clone_file, clone_range
 *   (from and onto the file), snapshot, diff (against a snapshot and a
 *   reference file), du, scrub, the change journal (events, pending, the
 *   follower's commit, the records), truncate, punch, a partial write
 *   into a written block, setattr, rename (and a rename over the file),
 *   unlink while open, sync + crash, background commit + crash, close +
 *   reopen, a failed mapping (reported by the write or the next sync), a
 *   pre-modification watch, and threads (a reader checking each write
 *   after it returned).  Changes made after the writes (truncate, punch,
 *   clone onto the file, ...) are checked again after a commit: a mapping
 *   applied late must not bring back what they replaced.
 *
 * Checked to fail (temporary builds, not kept): with the mapping dropped
 * (every test but the journal's fails), with the last whole-block write
 * held back until the next write, sync or close (all but the partial
 * write, sync + crash and background-commit tests fail: those apply it
 * first, as they should),
 * and with the write not invalidating the node's READ copies (the
 * lock-free READ test and four others fail).
 *
 * Every block carries (file, block, generation) in its first bytes and a
 * body derived from them, so a stale, misplaced or missing block is named.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/falloc.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/fsfix.h"
#include "fs/fs_internal.h" /* struct rfs_irec: is the map a tree */
#include "reflinkfs/fs.h"
#include "reflinkfs/journal.h"

#define BS 4096u
#define MAXB 160u /* blocks a model holds: files stay below this */

static const struct rfs_ctx g_ctx = {.uid = 0, .gid = 0, .pid = 1, .umask = 022};

/* ---- blocks and the model --------------------------------------------------- */

static uint64_t mix(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Block blk of file `file` at generation gen (gen 0: the base data). */
static void stamp(uint8_t *p, unsigned file, unsigned blk, unsigned gen)
{
	uint64_t tag = 0x5eedull << 48 | (uint64_t)file << 32 | (uint64_t)blk << 16 | gen;
	uint64_t x = tag;
	memcpy(p, &tag, 8);
	for (size_t i = 8; i < BS; i += 8) {
		uint64_t w = mix(&x);
		memcpy(p + i, &w, 8);
	}
}

/* What a block holds, for messages: "f1 b3 g2", "zeros", "other". */
static const char *describe(const uint8_t *p, char *out, size_t n)
{
	uint64_t tag;
	memcpy(&tag, p, 8);
	bool zero = true;
	for (size_t i = 0; i < BS && zero; i++)
		zero = p[i] == 0;
	if (zero)
		snprintf(out, n, "zeros");
	else if (tag >> 48 == 0x5eed)
		snprintf(out, n, "f%u b%u g%u%s", (unsigned)(tag >> 32 & 0xffff),
			 (unsigned)(tag >> 16 & 0xffff), (unsigned)(tag & 0xffff),
			 p[BS - 1] == 0 ? " (tail zeroed?)" : "");
	else
		snprintf(out, n, "other bytes");
	return out;
}

/* The file as it must read: its bytes, size and allocated blocks. */
struct model {
	unsigned file; /* the tag stamped into its blocks */
	uint64_t size;
	uint8_t img[MAXB * BS];
	bool alloc[MAXB];
	struct {
		uint64_t off, len;
	} w[8]; /* the whole-block writes of the scenario */
	unsigned nw;
};

static struct model *model_new(unsigned file)
{
	struct model *m = calloc(1, sizeof(*m));
	assert_non_null(m);
	m->file = file;
	return m;
}

static unsigned nalloc(const struct model *m)
{
	unsigned k = 0;
	for (unsigned b = 0; b < MAXB; b++)
		k += m->alloc[b];
	return k;
}

/* The model of a truncate to size (zeros past it; blocks wholly past it
 * go). */
static void model_truncate(struct model *m, uint64_t size)
{
	if (size < m->size)
		memset(m->img + size, 0, m->size - size);
	for (unsigned b = 0; b < MAXB; b++)
		if ((uint64_t)b * BS >= size)
			m->alloc[b] = false;
	m->size = size;
}

/* Model a write of n whole blocks from blk at generation gen. */
static void model_blk(struct model *m, unsigned blk, unsigned n, unsigned gen)
{
	assert_true(blk + n <= MAXB);
	for (unsigned i = 0; i < n; i++) {
		stamp(m->img + (size_t)(blk + i) * BS, m->file, blk + i, gen);
		m->alloc[blk + i] = true;
	}
	if ((uint64_t)(blk + n) * BS > m->size)
		m->size = (uint64_t)(blk + n) * BS;
	if (m->nw < 8) {
		m->w[m->nw].off = (uint64_t)blk * BS;
		m->w[m->nw++].len = (uint64_t)n * BS;
	}
}

/* Write n whole blocks from blk at generation gen, and model it. */
static void wblk(rfs_fs *fs, rfs_nodeid f, struct model *m, unsigned blk, unsigned n, unsigned gen)
{
	assert_true(blk + n <= MAXB);
	uint8_t *buf = malloc((size_t)n * BS);
	assert_non_null(buf);
	for (unsigned i = 0; i < n; i++)
		stamp(buf + (size_t)i * BS, m->file, blk + i, gen);
	ssize_t got = rfs_fs_write(fs, f, buf, (size_t)n * BS, (uint64_t)blk * BS);
	if (got != (ssize_t)(n * BS))
		fail_msg("write of blocks %u..%u (gen %u): %zd", blk, blk + n - 1, gen, got);
	free(buf);
	model_blk(m, blk, n, gen);
}

/* Write len bytes of buf at off (any alignment), and model it. */
static void wraw(rfs_fs *fs, rfs_nodeid f, struct model *m, const void *buf, size_t len,
		 uint64_t off)
{
	assert_true(off + len <= (uint64_t)MAXB * BS);
	ssize_t got = rfs_fs_write(fs, f, buf, len, off);
	if (got != (ssize_t)len)
		fail_msg("write of %zu bytes at %" PRIu64 ": %zd", len, off, got);
	memcpy(m->img + off, buf, len);
	for (uint64_t b = off / BS; b * BS < off + len; b++)
		m->alloc[b] = true;
	if (off + len > m->size)
		m->size = off + len;
}

/* Close fs; the pool must be clean. */
static void finish(rfs_fs *fs)
{
	assert_int_equal(rfs_fs_close(fs), 0);
	assert_int_equal(fx_fsck(), 0);
}

/* The base: blocks 0..7 and 100 bytes of block 8 at generation 0, one
 * write that is not whole blocks (the ordinary path, mapped at once). */
#define BASE_SIZE (8 * BS + 100)
static void base(rfs_fs *fs, rfs_nodeid f, struct model *m)
{
	uint8_t *buf = calloc(9, BS);
	assert_non_null(buf);
	for (unsigned b = 0; b < 9; b++)
		stamp(buf + (size_t)b * BS, m->file, b, 0);
	assert_int_equal(rfs_fs_write(fs, f, buf, BASE_SIZE, 0), BASE_SIZE);
	memcpy(m->img, buf, BASE_SIZE);
	for (unsigned b = 0; b < 9; b++)
		m->alloc[b] = true;
	m->size = BASE_SIZE;
	free(buf);
}

/*
 * The five whole-block writes every test makes (after base(), or on an
 * empty file):
 *   W1 blocks 2-3 gen 1    over base data (2 blocks; extends an empty file)
 *   W2 block 12 gen 1      extends, past a hole 9-11
 *   W3 block 10 gen 1      into that hole
 *   W4 block 3 gen 2       over W1's second block
 *   W5 blocks 20-21 gen 1  extends, past a hole 13-19
 * Final size 22 blocks.
 */
#define FINAL_SIZE (22 * BS)
static void scenario(rfs_fs *fs, rfs_nodeid f, struct model *m)
{
	wblk(fs, f, m, 2, 2, 1);
	wblk(fs, f, m, 12, 1, 1);
	wblk(fs, f, m, 10, 1, 1);
	wblk(fs, f, m, 3, 1, 2);
	wblk(fs, f, m, 20, 2, 1);
	assert_int_equal(m->size, FINAL_SIZE);
}

/* Fail naming the first block of [off, off+len) that differs. */
static void compare(const char *what, const uint8_t *got, const struct model *m, uint64_t off,
		    uint64_t len)
{
	if (memcmp(got, m->img + off, len) == 0)
		return;
	uint64_t i = 0;
	while (got[i] == m->img[off + i])
		i++;
	uint64_t b = (off + i) / BS;
	char g[64], w[64];
	uint8_t gb[BS], wb[BS];
	/* The whole block as read (where the read covered it) and wanted. */
	memset(gb, 0, BS);
	uint64_t bs = b * BS, lo = bs > off ? bs : off, hi = bs + BS < off + len ? bs + BS : off + len;
	memcpy(gb + (lo - bs), got + (lo - off), hi - lo);
	memcpy(wb, m->img + bs, BS);
	fail_msg("%s: byte %" PRIu64 " (block %" PRIu64 ") differs: read %s, expected %s", what,
		 off + i, b, describe(gb, g, sizeof(g)), describe(wb, w, sizeof(w)));
}

/* Read the whole file (asking for a block more) and compare. */
static void check_read(rfs_fs *fs, rfs_nodeid f, const struct model *m, const char *what)
{
	size_t want = (size_t)m->size;
	uint8_t *buf = malloc(want + BS);
	assert_non_null(buf);
	memset(buf, 0xee, want + BS);
	ssize_t n = rfs_fs_read(fs, f, buf, want + BS, 0);
	if (n != (ssize_t)want)
		fail_msg("%s: read returned %zd, file size is %zu", what, n, want);
	compare(what, buf, m, 0, want);
	free(buf);
}

static void check_attr(const struct stat *st, const struct model *m, const char *what)
{
	if ((uint64_t)st->st_size != m->size)
		fail_msg("%s: st_size %lld, expected %" PRIu64, what, (long long)st->st_size, m->size);
	if ((uint64_t)st->st_blocks != (uint64_t)nalloc(m) * (BS / 512))
		fail_msg("%s: st_blocks %lld, expected %u (%u blocks of 4 KiB)", what,
			 (long long)st->st_blocks, nalloc(m) * (BS / 512), nalloc(m));
}

/* After a change that followed the writes: a commit (which must not
 * bring back anything the change replaced), then read and getattr. */
static void check_after_sync(rfs_fs *fs, rfs_nodeid f, const struct model *m, const char *what)
{
	struct stat st;
	assert_int_equal(rfs_fs_sync(fs), 0);
	assert_int_equal(rfs_fs_getattr(fs, f, &st), 0);
	check_attr(&st, m, what);
	check_read(fs, f, m, what);
}

/* File "f" in dir with the base contents (ordinary path), and its model. */
static struct model *based_file(rfs_fs *fs, rfs_nodeid dir, rfs_nodeid *f)
{
	struct model *m = model_new(1);
	*f = fx_create(fs, &g_ctx, dir, "f");
	base(fs, *f, m);
	return m;
}

static rfs_fs *fresh(unsigned flags)
{
	return fx_fresh(64ull << 20, flags);
}

static rfs_nodeid mkdir_(rfs_fs *fs, rfs_nodeid dir, const char *name)
{
	rfs_nodeid d;
	struct stat st;
	assert_int_equal(rfs_fs_mkdir(fs, &g_ctx, dir, name, 0755, &d, &st), 0);
	return d;
}

/* Look path up from the root: +1 lookup reference. */
static rfs_nodeid resolve(rfs_fs *fs, const char *path, struct stat *st)
{
	rfs_nodeid n;
	struct stat tmp;
	int ret = rfs_fs_resolve(fs, path, &n, st ? st : &tmp);
	if (ret)
		fail_msg("resolve %s: %d", path, ret);
	return n;
}

/* ---- read ------------------------------------------------------------------ */

/* rfs_fs_read after the writes: the whole file, each block, and ranges
 * across written blocks, holes, the old tail and EOF; on a file with base
 * data and on an empty one. */
static void test_read(void **state)
{
	(void)state;
	for (int variant = 0; variant < 2; variant++) {
		rfs_fs *fs = fresh(0);
		rfs_nodeid f = fx_create(fs, &g_ctx, RFS_ROOT_NODE, "f");
		struct model *m = model_new(1);
		if (variant == 0)
			base(fs, f, m);
		scenario(fs, f, m);
		check_read(fs, f, m, variant ? "empty file: whole" : "whole");
		uint8_t buf[4 * BS];
		for (unsigned b = 0; b < 22; b++) {
			assert_int_equal(rfs_fs_read(fs, f, buf, BS, (uint64_t)b * BS), BS);
			compare("one block", buf, m, (uint64_t)b * BS, BS);
		}
		/* Unaligned spans: hole 9 .. written 10 .. hole 11 .. written
		 * 12 .. hole 13; the old tail (block 8) into the hole; the
		 * overwritten pair 2-3 with base blocks either side. */
		static const uint64_t spans[][2] = {
			{9 * BS + 1000, 3 * BS + 2000},
			{8 * BS + 50, 2 * BS},
			{1 * BS + 4000, 3 * BS + 200},
			{19 * BS + 17, 2 * BS + 100},
		};
		for (size_t i = 0; i < sizeof(spans) / sizeof(spans[0]); i++) {
			memset(buf, 0xee, sizeof(buf));
			assert_true(spans[i][1] <= sizeof(buf));
			assert_int_equal(rfs_fs_read(fs, f, buf, spans[i][1], spans[i][0]),
					 (ssize_t)spans[i][1]);
			compare("span", buf, m, spans[i][0], spans[i][1]);
		}
		/* Across EOF: short; at and past EOF: nothing. */
		assert_int_equal(rfs_fs_read(fs, f, buf, 2 * BS, 21 * BS + 100), BS - 100);
		compare("across EOF", buf, m, 21 * BS + 100, BS - 100);
		assert_int_equal(rfs_fs_read(fs, f, buf, BS, FINAL_SIZE), 0);
		assert_int_equal(rfs_fs_read(fs, f, buf, BS, FINAL_SIZE + 5 * BS), 0);
		rfs_fs_forget(fs, f, 1);
		finish(fs);
		free(m);
	}
}

/* READs served from the node's copies without the pool lock
 * (src/fs/rcache.c, test_fs_read_nolock.c): the copies are warm before
 * each write, and the READs after it must not answer from them with the
 * old mapping.  The file's map is in its record in one variant, a tree
 * (one-block extents far out) in the other. */
static uint64_t g_served;
/* Each of the first 24 blocks alone (one extent copy can answer a block
 * of a file tree), then the whole file; true when some READ was served
 * without the lock. */
static bool read_nolock(rfs_fs *fs, rfs_nodeid f, const struct model *m, const char *what)
{
	uint64_t s0, s1, r;
	uint8_t buf[BS];
	rfs_fs_nolock_stats(fs, &s0, &r);
	for (uint64_t b = 0; b < 24 && b * BS < m->size; b++) {
		uint64_t len = m->size - b * BS < BS ? m->size - b * BS : BS;
		memset(buf, 0xee, BS);
		ssize_t n = rfs_fs_read(fs, f, buf, BS, b * BS);
		if (n != (ssize_t)len)
			fail_msg("%s: read of block %" PRIu64 ": %zd, expected %" PRIu64, what, b, n,
				 len);
		compare(what, buf, m, b * BS, len);
	}
	check_read(fs, f, m, what);
	rfs_fs_nolock_stats(fs, &s1, &r);
	g_served += s1 - s0;
	return s1 > s0;
}

static void test_read_nolock(void **state)
{
	(void)state;
	for (int tree = 0; tree < 2; tree++) {
		rfs_fs *fs = fresh(0);
		rfs_nodeid f;
		struct model *m = based_file(fs, RFS_ROOT_NODE, &f);
		if (tree) {
			/* 30 one-block extents from block 100 on, written by
			 * the ordinary path (not whole blocks): too many for
			 * the record, so the map is a tree and READs use
			 * extent copies. */
			uint8_t b[BS];
			for (unsigned k = 0; k < 30; k++) {
				stamp(b, m->file, 100 + 2 * k, 0);
				wraw(fs, f, m, b, BS - 1, (uint64_t)(100 + 2 * k) * BS);
			}
		}
		struct rfs_irec rec;
		fx_rec(fs, f, &rec);
		assert_int_equal(rec.i.subtree != 0, tree);
		g_served = 0;
		/* Warm the copies: a READ answered without the lock. */
		bool warm = false;
		for (int i = 0; i < 3 && !warm; i++)
			warm = read_nolock(fs, f, m, "warm-up");
		assert_true(warm);
		static const struct {
			unsigned blk, n, gen;
		} w[] = {{2, 2, 1}, {12, 1, 1}, {10, 1, 1}, {3, 1, 2}, {20, 2, 1}};
		for (size_t i = 0; i < sizeof(w) / sizeof(w[0]); i++) {
			char what[64];
			snprintf(what, sizeof(what), "READ after write %zu", i + 1);
			wblk(fs, f, m, w[i].blk, w[i].n, w[i].gen);
			read_nolock(fs, f, m, what);
			/* Again, now maybe from fresh copies. */
			for (int k = 0; k < 2; k++)
				read_nolock(fs, f, m, what);
		}
		assert_true(g_served > 0);
		rfs_fs_forget(fs, f, 1);
		finish(fs);
		free(m);
	}
}

/* ---- attributes -------------------------------------------------------------- */

/* Base data, then mtime and ctime set far in the past, so that "changed"
 * needs no clock resolution: the writes must move both to now. */
static rfs_nodeid file_with_old_times(rfs_fs *fs, rfs_nodeid dir, struct model *m, bool with_base)
{
	rfs_nodeid f = fx_create(fs, &g_ctx, dir, "f");
	if (with_base)
		base(fs, f, m);
	struct stat in = {0};
	in.st_mtim.tv_sec = 1000;
	in.st_ctim.tv_sec = 1000;
	in.st_atim.tv_sec = 1000;
	assert_int_equal(rfs_fs_setattr(fs, f, &in, RFS_SET_MTIME | RFS_SET_CTIME | RFS_SET_ATIME,
					NULL),
			 0);
	struct stat st;
	assert_int_equal(rfs_fs_getattr(fs, f, &st), 0);
	assert_int_equal(st.st_mtim.tv_sec, 1000);
	assert_int_equal(st.st_ctim.tv_sec, 1000);
	return f;
}

static void check_times(const struct stat *st, time_t t0, const char *what)
{
	if (st->st_mtim.tv_sec < t0)
		fail_msg("%s: mtime %lld not changed by the writes (>= %lld expected)", what,
			 (long long)st->st_mtim.tv_sec, (long long)t0);
	if (st->st_ctim.tv_sec < t0)
		fail_msg("%s: ctime %lld not changed by the writes (>= %lld expected)", what,
			 (long long)st->st_ctim.tv_sec, (long long)t0);
}

/* getattr after each write: size and blocks; after the first, mtime and
 * ctime are now. */
static void test_getattr(void **state)
{
	(void)state;
	for (int variant = 0; variant < 2; variant++) {
		rfs_fs *fs = fresh(0);
		struct model *m = model_new(1);
		rfs_nodeid f = file_with_old_times(fs, RFS_ROOT_NODE, m, variant == 0);
		time_t t0 = time(NULL);
		static const struct {
			unsigned blk, n, gen;
		} w[] = {{2, 2, 1}, {12, 1, 1}, {10, 1, 1}, {3, 1, 2}, {20, 2, 1}};
		for (size_t i = 0; i < sizeof(w) / sizeof(w[0]); i++) {
			char what[64];
			snprintf(what, sizeof(what), "%sgetattr after write %zu",
				 variant ? "empty file: " : "", i + 1);
			wblk(fs, f, m, w[i].blk, w[i].n, w[i].gen);
			struct stat st;
			assert_int_equal(rfs_fs_getattr(fs, f, &st), 0);
			check_attr(&st, m, what);
			check_times(&st, t0, what);
		}
		rfs_fs_forget(fs, f, 1);
		finish(fs);
		free(m);
	}
}

/* The attributes a LOOKUP answers (a name looked up after the writes). */
static void test_lookup_attr(void **state)
{
	(void)state;
	rfs_fs *fs = fresh(0);
	struct model *m = model_new(1);
	rfs_nodeid d = mkdir_(fs, RFS_ROOT_NODE, "d");
	rfs_nodeid f = file_with_old_times(fs, d, m, true);
	time_t t0 = time(NULL);
	scenario(fs, f, m);
	rfs_nodeid g;
	struct stat st;
	assert_int_equal(rfs_fs_lookup(fs, d, "f", &g, &st), 0);
	assert_int_equal(g, f);
	check_attr(&st, m, "lookup");
	check_times(&st, t0, "lookup");
	rfs_fs_forget(fs, g, 1);
	/* And through the path, from the root. */
	g = resolve(fs, "d/f", &st);
	check_attr(&st, m, "resolve");
	rfs_fs_forget(fs, g, 1);
	rfs_fs_forget(fs, f, 1);
	rfs_fs_forget(fs, d, 1);
	finish(fs);
	free(m);
}

struct plus {
	struct stat st;
	bool found;
	rfs_nodeid nodes[8];
	unsigned nnodes;
};

static int plus_fn(void *arg, const char *name, const struct stat *st, rfs_nodeid node,
		   uint64_t next_off)
{
	(void)next_off;
	struct plus *p = arg;
	if (!strcmp(name, "f")) {
		p->st = *st;
		p->found = true;
	}
	/* Its lookup reference: forgotten after the listing (the callback
	 * runs under the pool's lock). */
	if (node && p->nnodes < 8)
		p->nodes[p->nnodes++] = node;
	return 0;
}

/* The attributes READDIRPLUS hands out for the file. */
static void test_readdirplus_attr(void **state)
{
	(void)state;
	rfs_fs *fs = fresh(0);
	struct model *m = model_new(1);
	rfs_nodeid d = mkdir_(fs, RFS_ROOT_NODE, "d");
	rfs_nodeid f = file_with_old_times(fs, d, m, true);
	time_t t0 = time(NULL);
	scenario(fs, f, m);
	struct plus p = {0};
	assert_int_equal(rfs_fs_readdir(fs, d, 0, true, plus_fn, &p), 0);
	for (unsigned i = 0; i < p.nnodes; i++)
		rfs_fs_forget(fs, p.nodes[i], 1);
	assert_true(p.found);
	check_attr(&p.st, m, "readdirplus");
	check_times(&p.st, t0, "readdirplus");
	rfs_fs_forget(fs, f, 1);
	rfs_fs_forget(fs, d, 1);
	finish(fs);
	free(m);
}

/* ---- map readers: lseek, extents ------------------------------------------- */

/* SEEK_DATA and SEEK_HOLE from every block (and inside blocks) against the
 * model's allocation. */
static void test_lseek(void **state)
{
	(void)state;
	rfs_fs *fs = fresh(0);
	rfs_nodeid f;
	struct model *m = based_file(fs, RFS_ROOT_NODE, &f);
	scenario(fs, f, m);
	unsigned nb = (unsigned)((m->size + BS - 1) / BS);
	for (unsigned b = 0; b < nb; b++)
		for (uint64_t in = 0; in < BS; in += 3000) {
			uint64_t off = (uint64_t)b * BS + in, out = 0;
			/* Expected: the first data at or after off, -ENXIO
			 * when none; the first hole at or after off, or EOF. */
			unsigned d = b;
			while (d < nb && !m->alloc[d])
				d++;
			int ret = rfs_fs_lseek(fs, f, off, SEEK_DATA, &out);
			if (d == nb) {
				if (ret != -ENXIO)
					fail_msg("SEEK_DATA from %" PRIu64 ": %d/%" PRIu64
						 ", expected -ENXIO",
						 off, ret, out);
			} else {
				uint64_t want = d == b ? off : (uint64_t)d * BS;
				if (ret || out != want)
					fail_msg("SEEK_DATA from %" PRIu64 " (block %u): %d, %" PRIu64
						 ", expected %" PRIu64,
						 off, b, ret, out, want);
			}
			unsigned h = b;
			while (h < nb && m->alloc[h])
				h++;
			uint64_t wanth = h == nb ? m->size : h == b ? off : (uint64_t)h * BS;
			ret = rfs_fs_lseek(fs, f, off, SEEK_HOLE, &out);
			if (ret || out != wanth)
				fail_msg("SEEK_HOLE from %" PRIu64 " (block %u): %d, %" PRIu64
					 ", expected %" PRIu64,
					 off, b, ret, out, wanth);
		}
	uint64_t out;
	assert_int_equal(rfs_fs_lseek(fs, f, m->size, SEEK_DATA, &out), -ENXIO);
	assert_int_equal(rfs_fs_lseek(fs, f, m->size, SEEK_HOLE, &out), -ENXIO);
	rfs_fs_forget(fs, f, 1);
	finish(fs);
	free(m);
}

struct exts {
	struct rfs_extent_info e[64];
	unsigned n;
};

static int ext_fn(void *arg, const struct rfs_extent_info *e)
{
	struct exts *x = arg;
	if (x->n < 64)
		x->e[x->n] = *e;
	x->n++;
	return 0;
}

/* rfs_fs_extents covers exactly the allocated blocks, none unwritten or
 * shared, and the pool bytes each extent points at are the model's. */
static void test_extents(void **state)
{
	(void)state;
	rfs_fs *fs = fresh(0);
	rfs_nodeid f;
	struct model *m = based_file(fs, RFS_ROOT_NODE, &f);
	scenario(fs, f, m);
	struct exts x = {0};
	assert_int_equal(rfs_fs_extents(fs, f, ext_fn, &x), 0);
	assert_true(x.n <= 64);
	bool seen[MAXB] = {0};
	int pfd = open(g_pool, O_RDONLY);
	assert_true(pfd >= 0);
	uint8_t blk[BS];
	uint64_t last = 0;
	for (unsigned i = 0; i < x.n; i++) {
		const struct rfs_extent_info *e = &x.e[i];
		assert_false(e->unwritten);
		assert_false(e->inline_data);
		assert_int_equal(e->shared, 0);
		assert_int_equal(e->logical % BS, 0);
		assert_int_equal(e->length % BS, 0);
		assert_true(e->logical >= last); /* in order */
		last = e->logical + e->length;
		for (uint64_t o = 0; o < e->length; o += BS) {
			uint64_t b = (e->logical + o) / BS;
			assert_true(b < MAXB);
			if (!m->alloc[b])
				fail_msg("extent %u maps block %" PRIu64 ", a hole", i, b);
			seen[b] = true;
			/* The bytes in the pool at the physical place. */
			assert_int_equal(pread(pfd, blk, BS, (off_t)(e->physical + o)), BS);
			uint64_t len = m->size - b * BS < BS ? m->size - b * BS : BS;
			compare("pool bytes at the extent", blk, m, b * BS, len);
		}
	}
	close(pfd);
	for (unsigned b = 0; b < MAXB; b++)
		if (m->alloc[b] && !seen[b])
			fail_msg("block %u was written but no extent maps it", b);
	rfs_fs_forget(fs, f, 1);
	finish(fs);
	free(m);
}

/* ---- clones ------------------------------------------------------------------ */

/* A copy of the model (what a clone must keep). */
static struct model *model_copy(const struct model *m)
{
	struct model *c = model_new(m->file);
	memcpy(c, m, sizeof(*c));
	return c;
}

/* rfs_fs_clone_file of the written file: the clone reads as the file did;
 * writes to the source after the clone do not show in it (nor the
 * clone's in the source). */
static void test_clone_file(void **state)
{
	(void)state;
	rfs_fs *fs = fresh(0);
	rfs_nodeid f = fx_create(fs, &g_ctx, RFS_ROOT_NODE, "f");
	rfs_nodeid c = fx_create(fs, &g_ctx, RFS_ROOT_NODE, "c");
	struct model *m = model_new(1);
	base(fs, f, m);
	scenario(fs, f, m);
	assert_int_equal(rfs_fs_clone_file(fs, f, c), 0);
	struct model *cm = model_copy(m);
	check_read(fs, c, cm, "clone");
	struct stat st;
	assert_int_equal(rfs_fs_getattr(fs, c, &st), 0);
	check_attr(&st, cm, "clone getattr");
	/* The source goes on: over a cloned block, over one written just
	 * before the clone, and past the end. */
	wblk(fs, f, m, 0, 1, 3);
	wblk(fs, f, m, 3, 1, 3);
	wblk(fs, f, m, 25, 1, 3);
	check_read(fs, c, cm, "clone after source writes");
	assert_int_equal(rfs_fs_getattr(fs, c, &st), 0);
	check_attr(&st, cm, "clone getattr after source writes");
	/* And the clone's own write stays its own. */
	cm->file = 1;
	wblk(fs, c, cm, 12, 1, 4);
	check_read(fs, f, m, "source after clone writes");
	check_read(fs, c, cm, "clone after its write");
	rfs_fs_forget(fs, f, 1);
	rfs_fs_forget(fs, c, 1);
	finish(fs);
	free(m);
	free(cm);
}

/* clone_range (copy_file_range) of the whole file, and of an unaligned
 * piece (partial head and tail copied, whole blocks shared). */
static void test_clone_range(void **state)
{
	(void)state;
	rfs_fs *fs = fresh(0);
	rfs_nodeid f = fx_create(fs, &g_ctx, RFS_ROOT_NODE, "f");
	rfs_nodeid c = fx_create(fs, &g_ctx, RFS_ROOT_NODE, "c");
	rfs_nodeid p = fx_create(fs, &g_ctx, RFS_ROOT_NODE, "p");
	struct model *m = model_new(1);
	base(fs, f, m);
	scenario(fs, f, m);
	assert_int_equal(rfs_fs_clone_range(fs, f, 0, c, 0, m->size + 10 * BS), (ssize_t)m->size);
	struct model *cm = model_copy(m);
	check_read(fs, c, cm, "whole-file clone_range");
	/* A piece: from inside block 1 to inside block 13, to offset 100 of
	 * another file (same block alignment: the middle is shared). */
	uint64_t in = BS + 100, len = 12 * BS + 50;
	assert_int_equal(rfs_fs_clone_range(fs, f, in, p, 100, len), (ssize_t)len);
	struct model *pm = model_new(1);
	memcpy(pm->img + 100, m->img + in, len);
	pm->size = 100 + len;
	uint8_t *buf = malloc(pm->size);
	assert_non_null(buf);
	assert_int_equal(rfs_fs_read(fs, p, buf, pm->size, 0), (ssize_t)pm->size);
	compare("clone_range piece", buf, pm, 0, pm->size);
	/* Source writes after the clones show in neither. */
	wblk(fs, f, m, 2, 1, 5);
	wblk(fs, f, m, 10, 1, 5);
	check_read(fs, c, cm, "clone after source writes");
	assert_int_equal(rfs_fs_read(fs, p, buf, pm->size, 0), (ssize_t)pm->size);
	compare("piece after source writes", buf, pm, 0, pm->size);
	check_read(fs, f, m, "source");
	free(buf);
	rfs_fs_forget(fs, f, 1);
	rfs_fs_forget(fs, c, 1);
	rfs_fs_forget(fs, p, 1);
	finish(fs);
	free(m);
	free(cm);
	free(pm);
}

/* A clone ONTO a file just written: the cloned range replaces what the
 * writes put there (a write applied after the clone would bring them
 * back), and writes outside it stay. */
static void test_clone_onto_written(void **state)
{
	(void)state;
	rfs_fs *fs = fresh(0);
	rfs_nodeid s = fx_create(fs, &g_ctx, RFS_ROOT_NODE, "s");
	rfs_nodeid f = fx_create(fs, &g_ctx, RFS_ROOT_NODE, "f");
	struct model *sm = model_new(2), *m = model_new(1);
	/* The source: blocks 0..15, ordinary path, mapped at once. */
	uint8_t *buf = malloc(16 * BS);
	assert_non_null(buf);
	for (unsigned b = 0; b < 16; b++)
		stamp(buf + (size_t)b * BS, 2, b, 0);
	wraw(fs, s, sm, buf, 16 * BS - 1, 0);
	base(fs, f, m);
	scenario(fs, f, m);
	/* Blocks 2..5 of f from s's 8..11: over W1 and W4's blocks. */
	assert_int_equal(rfs_fs_clone_range(fs, s, 8 * BS, f, 2 * BS, 4 * BS), 4 * BS);
	memcpy(m->img + 2 * BS, sm->img + 8 * BS, 4 * BS);
	check_read(fs, f, m, "after clone_range onto written blocks");
	check_after_sync(fs, f, m, "clone_range onto written blocks, then sync");
	/* The whole file replaced by s. */
	assert_int_equal(rfs_fs_clone_file(fs, s, f), 0);
	check_read(fs, f, sm, "after clone_file onto the written file");
	struct stat st;
	assert_int_equal(rfs_fs_getattr(fs, f, &st), 0);
	check_attr(&st, sm, "getattr after clone_file");
	check_after_sync(fs, f, sm, "clone_file onto the written file, then sync");
	free(buf);
	rfs_fs_forget(fs, s, 1);
	rfs_fs_forget(fs, f, 1);
	finish(fs);
	free(m);
	free(sm);
}

/* ---- snapshot, diff, du, scrub ---------------------------------------------- */

/* A snapshot of the directory right after the writes holds them; writes
 * after it do not show in it. */
static void test_snapshot(void **state)
{
	(void)state;
	for (int ro = 0; ro < 2; ro++) {
		rfs_fs *fs = fresh(0);
		rfs_nodeid d = mkdir_(fs, RFS_ROOT_NODE, "d");
		rfs_nodeid f;
		struct model *m = based_file(fs, d, &f);
		scenario(fs, f, m);
		rfs_nodeid s;
		struct stat st;
		assert_int_equal(rfs_fs_snapshot(fs, d, RFS_ROOT_NODE, "snap", ro ? RFS_SNAP_RDONLY : 0,
						 &s, &st),
				 0);
		struct model *sm = model_copy(m);
		rfs_nodeid sf = resolve(fs, "snap/f", &st);
		check_attr(&st, sm, "snapshot's file");
		check_read(fs, sf, sm, "snapshot's file");
		wblk(fs, f, m, 3, 1, 6);
		wblk(fs, f, m, 30, 1, 6);
		check_read(fs, sf, sm, "snapshot's file after writes to the source");
		assert_int_equal(rfs_fs_getattr(fs, sf, &st), 0);
		check_attr(&st, sm, "snapshot's file after writes to the source");
		check_read(fs, f, m, "source after the snapshot");
		rfs_fs_forget(fs, sf, 1);
		rfs_fs_forget(fs, s, 1);
		rfs_fs_forget(fs, f, 1);
		rfs_fs_forget(fs, d, 1);
		finish(fs);
		free(m);
		free(sm);
	}
}

/* The model's allocated blocks written into a new file by the ordinary
 * path (each block in two unaligned pieces): the same bytes and size. */
static void write_reference(rfs_fs *fs, rfs_nodeid r, const struct model *m)
{
	for (unsigned b = 0; b < MAXB; b++)
		if (m->alloc[b]) {
			const uint8_t *p = m->img + (size_t)b * BS;
			assert_int_equal(rfs_fs_write(fs, r, p, 100, (uint64_t)b * BS), 100);
			assert_int_equal(rfs_fs_write(fs, r, p + 100, BS - 100, (uint64_t)b * BS + 100),
					 BS - 100);
		}
	struct stat st;
	assert_int_equal(rfs_fs_getattr(fs, r, &st), 0);
	assert_int_equal(st.st_size, m->size);
}

/* Diff records of a against b, as "op path what" lines. */
static void diff_text(rfs_fs *fs, rfs_nodeid a, rfs_nodeid b, char *out, size_t n)
{
	rfs_diff *df;
	struct rfs_diff_stats ds;
	struct rfs_diff_record r;
	assert_int_equal(rfs_diff_begin(fs, a, b, &df), 0);
	rfs_diff_get_stats(df, &ds);
	out[0] = 0;
	for (uint64_t i = 0; i < ds.records; i++) {
		assert_int_equal(rfs_diff_record(df, i, &r), 0);
		size_t l = strlen(out);
		snprintf(out + l, n - l, "%c %s 0x%x;", r.op, r.path, r.what);
	}
	rfs_diff_end(df);
}

/*
 * diff after the writes:
 *  - against a directory holding a reference file with the same bytes
 *    written by the ordinary path: no data or size difference (mtime
 *    differs, and the directories' own times);
 *  - against a snapshot taken before them: f's data, size and mtime;
 *  - against a snapshot taken right after them: nothing at all, and a
 *    write after it shows (the diff can fail).
 */
static void test_diff(void **state)
{
	(void)state;
	rfs_fs *fs = fresh(0);
	rfs_nodeid d = mkdir_(fs, RFS_ROOT_NODE, "d");
	rfs_nodeid f;
	struct model *m = based_file(fs, d, &f);
	/* mtime set to 1000 s first, so the writes' "now" differs from it
	 * whatever the clock's resolution. */
	struct stat in = {0}, st;
	in.st_mtim.tv_sec = 1000;
	assert_int_equal(rfs_fs_setattr(fs, f, &in, RFS_SET_MTIME, NULL), 0);
	rfs_nodeid s0, s1;
	assert_int_equal(rfs_fs_snapshot(fs, d, RFS_ROOT_NODE, "s0", RFS_SNAP_RDONLY, &s0, &st), 0);
	/* The reference first (no other write between the scenario's and
	 * the diff), from the model of the scenario. */
	struct model *rm = model_copy(m);
	model_blk(rm, 2, 2, 1);
	model_blk(rm, 12, 1, 1);
	model_blk(rm, 10, 1, 1);
	model_blk(rm, 3, 1, 2);
	model_blk(rm, 20, 2, 1);
	rfs_nodeid rd = mkdir_(fs, RFS_ROOT_NODE, "ref");
	rfs_nodeid rf = fx_create(fs, &g_ctx, rd, "f");
	write_reference(fs, rf, rm);
	scenario(fs, f, m);
	assert_memory_equal(rm->img, m->img, sizeof(m->img));
	free(rm);
	char txt[1024];
	rfs_diff *df;
	struct rfs_diff_stats ds;
	struct rfs_diff_record r;
	assert_int_equal(rfs_diff_begin(fs, rd, d, &df), 0);
	rfs_diff_get_stats(df, &ds);
	diff_text(fs, rd, d, txt, sizeof(txt));
	for (uint64_t i = 0; i < ds.records; i++) {
		assert_int_equal(rfs_diff_record(df, i, &r), 0);
		if (r.op != RFS_DIFF_MODIFIED || (r.what & ~(uint32_t)RFS_DIFF_MTIME))
			fail_msg("written file vs reference: %s", txt);
	}
	rfs_diff_end(df);
	/* Before the writes vs now. */
	diff_text(fs, s0, d, txt, sizeof(txt));
	char want[64];
	snprintf(want, sizeof(want), "M f 0x%x;", RFS_DIFF_DATA | RFS_DIFF_SIZE | RFS_DIFF_MTIME);
	if (strcmp(txt, want))
		fail_msg("before vs after the writes: \"%s\", expected \"%s\"", txt, want);
	/* Right after the writes vs now: the same. */
	assert_int_equal(rfs_fs_snapshot(fs, d, RFS_ROOT_NODE, "s1", RFS_SNAP_RDONLY, &s1, &st), 0);
	diff_text(fs, s1, d, txt, sizeof(txt));
	if (txt[0])
		fail_msg("snapshot right after the writes differs: %s", txt);
	assert_int_equal(rfs_fs_sync(fs), 0);
	diff_text(fs, s1, d, txt, sizeof(txt));
	if (txt[0])
		fail_msg("snapshot right after the writes differs after a sync: %s", txt);
	/* And a write after s1 shows against it. */
	wblk(fs, f, m, 10, 1, 7);
	diff_text(fs, s1, d, txt, sizeof(txt));
	if (strncmp(txt, "M f ", 4) != 0)
		fail_msg("a write after the snapshot: \"%s\"", txt);
	rfs_nodeid all[] = {s0, s1, rf, rd, f, d};
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		rfs_fs_forget(fs, all[i], 1);
	finish(fs);
	free(m);
}

static void du_of(rfs_fs *fs, rfs_nodeid n, struct rfs_du_stats *st)
{
	rfs_du *d;
	assert_int_equal(rfs_du_begin(fs, n, &d), 0);
	int ret;
	while ((ret = rfs_du_step(d, 1000)) == 1)
		;
	assert_int_equal(ret, 0);
	rfs_du_get_stats(d, st);
	assert_int_equal(st->done, 1);
	rfs_du_end(d);
}

/* du of the file and of its directory: every written block, exclusive. */
static void test_du(void **state)
{
	(void)state;
	rfs_fs *fs = fresh(0);
	rfs_nodeid d = mkdir_(fs, RFS_ROOT_NODE, "d");
	rfs_nodeid f;
	struct model *m = based_file(fs, d, &f);
	scenario(fs, f, m);
	uint64_t want = (uint64_t)nalloc(m) * BS;
	struct rfs_du_stats st;
	du_of(fs, f, &st);
	assert_int_equal(st.total, want);
	assert_int_equal(st.set, want);
	assert_int_equal(st.exclusive, want);
	assert_int_equal(st.changes, 0);
	du_of(fs, d, &st);
	assert_int_equal(st.total, want);
	assert_int_equal(st.exclusive, want);
	assert_int_equal(st.files, 1);
	rfs_fs_forget(fs, f, 1);
	rfs_fs_forget(fs, d, 1);
	finish(fs);
	free(m);
}

/* A scrub reads and verifies every block in use: exactly the file's. */
static void test_scrub(void **state)
{
	(void)state;
	rfs_fs *fs = fresh(0);
	rfs_nodeid f;
	struct model *m = based_file(fs, RFS_ROOT_NODE, &f);
	scenario(fs, f, m);
	rfs_scrub *s;
	assert_int_equal(rfs_scrub_begin(fs, &s), 0);
	int ret;
	while ((ret = rfs_scrub_step(s, 1000)) == 1)
		;
	assert_int_equal(ret, 0);
	struct rfs_scrub_stats st;
	rfs_scrub_get_stats(s, &st);
	rfs_scrub_end(s);
	assert_int_equal(st.done, 1);
	assert_int_equal(st.damaged_blocks, 0);
	assert_int_equal(st.meta_errors, 0);
	assert_int_equal(st.data_blocks, nalloc(m));
	rfs_fs_forget(fs, f, 1);
	finish(fs);
	free(m);
}

/* ---- the change journal ------------------------------------------------------ */

struct jgot {
	uint64_t ino;
	unsigned data; /* DATA records (or merged DATA) of the file */
	bool covered[MAXB];
	char other[256];
};

static int jcollect(void *arg, const struct rfs_change *c)
{
	struct jgot *g = arg;
	bool data = c->kind == RFS_CHANGE_DATA || (c->also & (1u << RFS_CHANGE_DATA));
	if (c->ino == g->ino && data) {
		g->data++;
		for (unsigned i = 0; i < c->nranges; i++)
			for (uint64_t o = c->ranges[i].off / BS * BS;
			     o < c->ranges[i].off + c->ranges[i].len && o / BS < MAXB; o += BS)
				g->covered[o / BS] = true;
	} else if (strlen(g->other) < 200) {
		size_t l = strlen(g->other);
		snprintf(g->other + l, sizeof(g->other) - l, "%s %s; ",
			 rfs_change_kind_name(c->kind), c->path ? c->path : "(null)");
	}
	return 0;
}

/* A follower (rfs_changes_follow's path in the daemon): the writes are
 * announced (events move on, changes pending below the directory), the
 * follower's commit takes them, and a read from the cursor taken before
 * them delivers the file's DATA changes covering every block written --
 * and nothing else. */
static void test_journal(void **state)
{
	(void)state;
	rfs_fs *fs = fresh(0);
	rfs_nodeid d = mkdir_(fs, RFS_ROOT_NODE, "d");
	rfs_nodeid f;
	struct model *m = based_file(fs, d, &f);
	assert_int_equal(rfs_fs_sync(fs), 0);
	char cur[RFS_CURSOR_MAX];
	assert_int_equal(rfs_fs_changes_cursor(fs, cur), 0);
	assert_false(rfs_fs_changes_pending_below(fs, d));
	uint64_t seen = rfs_fs_changes_events(fs);
	wblk(fs, f, m, 2, 2, 1);
	/* A follower waiting since before the write wakes now (the deadline
	 * is now: it must not have to wait at all). */
	uint64_t ev = rfs_fs_changes_events(fs);
	if (ev == seen)
		fail_msg("the first write returned without a journal append");
	assert_int_equal(rfs_fs_changes_wait(fs, seen, rfs_fs_changes_clock_ns(), NULL, NULL), 0);
	assert_true(rfs_fs_changes_pending_below(fs, d));
	wblk(fs, f, m, 12, 1, 1);
	wblk(fs, f, m, 10, 1, 1);
	wblk(fs, f, m, 3, 1, 2);
	wblk(fs, f, m, 20, 2, 1);
	assert_true(rfs_fs_changes_events(fs) > ev);
	assert_true(rfs_fs_changes_pending_below(fs, d));
	assert_true(rfs_fs_changes_pending(fs));
	assert_int_equal(rfs_fs_changes_commit(fs, d), 0);
	assert_false(rfs_fs_changes_pending_below(fs, d));
	struct jgot g = {0};
	struct stat st;
	assert_int_equal(rfs_fs_getattr(fs, f, &st), 0);
	g.ino = st.st_ino;
	struct rfs_changes_page page = {0};
	assert_int_equal(rfs_fs_changes(fs, d, cur, &page, jcollect, &g), 0);
	assert_true(page.done);
	if (g.other[0])
		fail_msg("changes other than the file's data: %s", g.other);
	assert_true(g.data >= 1);
	for (unsigned i = 0; i < m->nw; i++)
		for (uint64_t o = m->w[i].off; o < m->w[i].off + m->w[i].len; o += BS)
			if (!g.covered[o / BS])
				fail_msg("block %" PRIu64 " (write %u) is in no DATA range", o / BS,
					 i + 1);
	rfs_fs_forget(fs, f, 1);
	rfs_fs_forget(fs, d, 1);
	finish(fs);
	free(m);
}

/* ---- changes after the writes ------------------------------------------------ */

/* Truncate below written blocks, then grow past where they were: they do
 * not come back, the tail reads as zeros, st_blocks counts what is left. */
static void test_truncate(void **state)
{
	(void)state;
	rfs_fs *fs = fresh(0);
	rfs_nodeid f;
	struct model *m = based_file(fs, RFS_ROOT_NODE, &f);
	scenario(fs, f, m);
	struct stat in = {0}, st;
	/* Into W3's block 10: 12, 20 and 21 go, 10 is cut. */
	in.st_size = 10 * BS + 300;
	assert_int_equal(rfs_fs_setattr(fs, f, &in, RFS_SET_SIZE, &st), 0);
	model_truncate(m, (uint64_t)in.st_size);
	check_attr(&st, m, "setattr's answer to the shrink");
	assert_int_equal(rfs_fs_getattr(fs, f, &st), 0);
	check_attr(&st, m, "getattr after the shrink");
	check_read(fs, f, m, "read after the shrink");
	in.st_size = 30 * BS;
	assert_int_equal(rfs_fs_setattr(fs, f, &in, RFS_SET_SIZE, &st), 0);
	model_truncate(m, (uint64_t)in.st_size);
	assert_int_equal(rfs_fs_getattr(fs, f, &st), 0);
	check_attr(&st, m, "getattr after the grow");
	check_read(fs, f, m, "read after the grow");
	/* Shrink below the base's end too (W1/W4's blocks 2-3 cut at 2.5). */
	in.st_size = 2 * BS + 2048;
	assert_int_equal(rfs_fs_setattr(fs, f, &in, RFS_SET_SIZE, &st), 0);
	model_truncate(m, (uint64_t)in.st_size);
	in.st_size = 5 * BS;
	assert_int_equal(rfs_fs_setattr(fs, f, &in, RFS_SET_SIZE, &st), 0);
	model_truncate(m, (uint64_t)in.st_size);
	assert_int_equal(rfs_fs_getattr(fs, f, &st), 0);
	check_attr(&st, m, "getattr after shrink and grow");
	check_read(fs, f, m, "read after shrink and grow");
	check_after_sync(fs, f, m, "truncates, then sync");
	rfs_fs_forget(fs, f, 1);
	finish(fs);
	free(m);
}

/* A hole punched over written blocks reads as zeros and frees them. */
static void test_punch(void **state)
{
	(void)state;
	rfs_fs *fs = fresh(0);
	rfs_nodeid f;
	struct model *m = based_file(fs, RFS_ROOT_NODE, &f);
	scenario(fs, f, m);
	/* Blocks 3..12: W4's, base, W3's and W2's. */
	assert_int_equal(rfs_fs_fallocate(fs, f, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
					  3 * BS, 10 * BS),
			 0);
	memset(m->img + 3 * BS, 0, 10 * BS);
	for (unsigned b = 3; b < 13; b++)
		m->alloc[b] = false;
	struct stat st;
	assert_int_equal(rfs_fs_getattr(fs, f, &st), 0);
	check_attr(&st, m, "getattr after the punch");
	check_read(fs, f, m, "read after the punch");
	check_after_sync(fs, f, m, "punch, then sync");
	rfs_fs_forget(fs, f, 1);
	finish(fs);
	free(m);
}

/* A partial write into a block just written starts from its new bytes
 * (read-modify-write of the block), before and after another whole-block
 * write of it. */
static void test_partial_write_over(void **state)
{
	(void)state;
	rfs_fs *fs = fresh(0);
	rfs_nodeid f;
	struct model *m = based_file(fs, RFS_ROOT_NODE, &f);
	scenario(fs, f, m);
	uint8_t x[300];
	memset(x, 0xab, sizeof(x));
	wraw(fs, f, m, x, sizeof(x), 3 * BS + 1000);  /* in W4's block */
	wraw(fs, f, m, x, sizeof(x), 12 * BS + 4000); /* W2's block into the hole 13 */
	wraw(fs, f, m, x, 100, 21 * BS + 10);        /* W5's last block */
	check_read(fs, f, m, "after partial writes over written blocks");
	wblk(fs, f, m, 3, 1, 3);
	wraw(fs, f, m, x, 10, 3 * BS);
	check_read(fs, f, m, "after whole, then partial");
	check_after_sync(fs, f, m, "partial writes, then sync");
	rfs_fs_forget(fs, f, 1);
	finish(fs);
	free(m);
}

/* setattr after the writes: explicit times and mode stay as set (a
 * mapping applied later must not touch them), size and data are the
 * writes'. */
static void test_setattr(void **state)
{
	(void)state;
	rfs_fs *fs = fresh(0);
	rfs_nodeid f;
	struct model *m = based_file(fs, RFS_ROOT_NODE, &f);
	scenario(fs, f, m);
	struct stat in = {0}, st;
	in.st_mode = 0600;
	in.st_mtim.tv_sec = 12345;
	in.st_mtim.tv_nsec = 678;
	in.st_atim.tv_sec = 2222;
	assert_int_equal(
		rfs_fs_setattr(fs, f, &in, RFS_SET_MODE | RFS_SET_MTIME | RFS_SET_ATIME, &st), 0);
	check_attr(&st, m, "setattr's answer");
	for (int i = 0; i < 2; i++) {
		assert_int_equal(rfs_fs_getattr(fs, f, &st), 0);
		check_attr(&st, m, "getattr after setattr");
		assert_int_equal(st.st_mode & 07777, 0600);
		assert_int_equal(st.st_mtim.tv_sec, 12345);
		assert_int_equal(st.st_mtim.tv_nsec, 678);
		/* Read (which may set atime) and commit only after the
		 * first look. */
		if (i == 0) {
			check_read(fs, f, m, "read after setattr");
			assert_int_equal(rfs_fs_sync(fs), 0);
		}
	}
	/* And through a commit and a reopen. */
	rfs_fs_forget(fs, f, 1);
	fs = fx_reopen(fs, 0);
	f = resolve(fs, "f", &st);
	check_attr(&st, m, "after reopen");
	assert_int_equal(st.st_mtim.tv_sec, 12345);
	assert_int_equal(st.st_mtim.tv_nsec, 678);
	rfs_fs_forget(fs, f, 1);
	finish(fs);
	free(m);
}

/* Rename of the written file (to another directory), and a rename of
 * another file over it: the new name reads the writes; the replaced
 * file's blocks are let go cleanly (fsck). */
static void test_rename(void **state)
{
	(void)state;
	rfs_fs *fs = fresh(0);
	rfs_nodeid d = mkdir_(fs, RFS_ROOT_NODE, "d");
	rfs_nodeid f;
	struct model *m = based_file(fs, RFS_ROOT_NODE, &f);
	scenario(fs, f, m);
	assert_int_equal(rfs_fs_rename(fs, &g_ctx, RFS_ROOT_NODE, "f", d, "g", 0), 0);
	struct stat st;
	rfs_nodeid g = resolve(fs, "d/g", &st);
	check_attr(&st, m, "renamed file");
	check_read(fs, g, m, "renamed file, new lookup");
	check_read(fs, f, m, "renamed file, old node");
	check_after_sync(fs, g, m, "renamed file, then sync");
	rfs_fs_forget(fs, g, 1);
	rfs_fs_forget(fs, f, 1);
	/* A file written and then replaced by a rename over its name. */
	rfs_nodeid v = fx_create(fs, &g_ctx, d, "victim");
	struct model *vm = model_new(3);
	base(fs, v, vm);
	scenario(fs, v, vm);
	rfs_fs_forget(fs, v, 1);
	assert_int_equal(rfs_fs_rename(fs, &g_ctx, d, "g", d, "victim", 0), 0);
	rfs_nodeid n = resolve(fs, "d/victim", &st);
	check_attr(&st, m, "the file renamed over the written one");
	check_read(fs, n, m, "the file renamed over the written one");
	rfs_fs_forget(fs, n, 1);
	rfs_fs_forget(fs, d, 1);
	fs = fx_reopen(fs, 0); /* fsck: nothing of the victim leaked */
	n = resolve(fs, "d/victim", &st);
	check_read(fs, n, m, "after reopen");
	rfs_fs_forget(fs, n, 1);
	finish(fs);
	free(m);
	free(vm);
}

/* Unlinked while open: the open node still reads the writes and has
 * their attributes; the space goes at the release, cleanly. */
static void test_unlink_open(void **state)
{
	(void)state;
	rfs_fs *fs = fresh(0);
	rfs_nodeid f = fx_create(fs, &g_ctx, RFS_ROOT_NODE, "f");
	struct model *m = model_new(1);
	assert_int_equal(rfs_fs_open_node(fs, f), 0);
	base(fs, f, m);
	scenario(fs, f, m);
	assert_int_equal(rfs_fs_unlink(fs, RFS_ROOT_NODE, "f"), 0);
	struct stat st;
	assert_int_equal(rfs_fs_getattr(fs, f, &st), 0);
	check_attr(&st, m, "unlinked open file");
	assert_int_equal(st.st_nlink, 0);
	check_read(fs, f, m, "unlinked open file");
	check_after_sync(fs, f, m, "unlinked open file, then sync");
	/* Written again after the unlink, then read. */
	wblk(fs, f, m, 5, 1, 3);
	check_read(fs, f, m, "unlinked open file, written again");
	rfs_fs_release(fs, f);
	rfs_fs_forget(fs, f, 1);
	/* And a file unlinked right after its writes, never open. */
	rfs_nodeid g = fx_create(fs, &g_ctx, RFS_ROOT_NODE, "g");
	struct model *gm = model_new(2);
	scenario(fs, g, gm);
	rfs_fs_forget(fs, g, 1);
	assert_int_equal(rfs_fs_unlink(fs, RFS_ROOT_NODE, "g"), 0);
	finish(fs);
	free(m);
	free(gm);
}

/* ---- durability ---------------------------------------------------------------- */

/* rfs_fs_sync (what fsync does), then a crash dropping every write not
 * committed: after reopen the file is exactly as written; writes after
 * the sync may be lost, but only whole, never half. */
static void test_sync_crash(void **state)
{
	(void)state;
	static const enum rfs_crash_mode modes[] = {RFS_CRASH_DROP_ALL, RFS_CRASH_DROP_RANDOM,
						    RFS_CRASH_TEAR};
	for (int k = 0; k < 3; k++) {
		rfs_fs *fs = fresh(RFS_FS_CRASHSIM);
		rfs_nodeid f;
		struct model *m = based_file(fs, RFS_ROOT_NODE, &f);
		scenario(fs, f, m);
		assert_int_equal(rfs_fs_sync(fs), 0);
		struct model *synced = model_copy(m);
		/* After the sync: lost by the crash or kept, nothing else. */
		wblk(fs, f, m, 3, 1, 9);
		rfs_fs_forget(fs, f, 1);
		rfs_fs_crash(fs, modes[k], 11 + k);
		assert_int_equal(fx_fsck(), 0);
		assert_int_equal(rfs_fs_open(g_pool, 0, &fs), 0);
		struct stat st;
		f = resolve(fs, "f", &st);
		check_attr(&st, synced, "after sync and crash");
		size_t n = (size_t)synced->size;
		uint8_t *buf = malloc(n);
		assert_non_null(buf);
		assert_int_equal(rfs_fs_read(fs, f, buf, n, 0), (ssize_t)n);
		/* Block 3: the synced or the later version, whole. */
		if (memcmp(buf + 3 * BS, m->img + 3 * BS, BS) == 0)
			memcpy(buf + 3 * BS, synced->img + 3 * BS, BS);
		compare("after sync and crash", buf, synced, 0, n);
		free(buf);
		rfs_fs_forget(fs, f, 1);
		finish(fs);
		free(m);
		free(synced);
	}
}

/* The mount's background commit makes the writes durable as well. */
static void test_background_commit_crash(void **state)
{
	(void)state;
	rfs_fs *fs = fresh(RFS_FS_CRASHSIM);
	rfs_nodeid f;
	struct model *m = based_file(fs, RFS_ROOT_NODE, &f);
	scenario(fs, f, m);
	assert_int_equal(rfs_fs_commit_background(fs), 0);
	rfs_fs_forget(fs, f, 1);
	rfs_fs_crash(fs, RFS_CRASH_DROP_ALL, 5);
	assert_int_equal(fx_fsck(), 0);
	assert_int_equal(rfs_fs_open(g_pool, 0, &fs), 0);
	struct stat st;
	f = resolve(fs, "f", &st);
	check_attr(&st, m, "after background commit and crash");
	check_read(fs, f, m, "after background commit and crash");
	rfs_fs_forget(fs, f, 1);
	finish(fs);
	free(m);
}

/* Close (commits) and open again, and close without a sync of our own
 * after a sync: the data is there either way. */
static void test_close_reopen(void **state)
{
	(void)state;
	rfs_fs *fs = fresh(0);
	rfs_nodeid f;
	struct model *m = based_file(fs, RFS_ROOT_NODE, &f);
	scenario(fs, f, m);
	/* The node still referenced at close, as a mount's would be. */
	fs = fx_reopen(fs, 0);
	struct stat st;
	f = resolve(fs, "f", &st);
	check_attr(&st, m, "after close and reopen");
	check_read(fs, f, m, "after close and reopen");
	/* A sync, one more write, then close and reopen read-only. */
	assert_int_equal(rfs_fs_sync(fs), 0);
	wblk(fs, f, m, 14, 1, 4);
	rfs_fs_forget(fs, f, 1);
	fs = fx_reopen(fs, RFS_FS_RDONLY);
	f = resolve(fs, "f", &st);
	check_attr(&st, m, "read-only reopen");
	check_read(fs, f, m, "read-only reopen");
	rfs_fs_forget(fs, f, 1);
	finish(fs);
	free(m);
}

/* A mapping that fails (an injected fault halfway through the write's
 * operation: the pool turns read-only, src/fs/op.h) is reported by the
 * write or by the next sync -- never both succeed -- and the pool still
 * holds its last commit: the base data. */
static void test_failure_reported(void **state)
{
	(void)state;
	rfs_fs *fs = fresh(0);
	rfs_nodeid f;
	struct model *m = based_file(fs, RFS_ROOT_NODE, &f);
	assert_int_equal(rfs_fs_sync(fs), 0);
	struct model *committed = model_copy(m);
	uint8_t buf[2 * BS];
	stamp(buf, 1, 2, 1);
	stamp(buf + BS, 1, 3, 1);
	rfs_fs_inject_op_failure(fs, 1, -EIO);
	ssize_t w = rfs_fs_write(fs, f, buf, 2 * BS, 2 * BS);
	int s = rfs_fs_sync(fs);
	if (w >= 0 && s == 0)
		fail_msg("a write whose mapping failed: write %zd and sync 0", w);
	rfs_fs_inject_op_failure(fs, 0, 0);
	rfs_fs_forget(fs, f, 1);
	rfs_fs_close(fs); /* may fail: the pool is read-only */
	assert_int_equal(fx_fsck(), 0);
	assert_int_equal(rfs_fs_open(g_pool, 0, &fs), 0);
	struct stat st;
	f = resolve(fs, "f", &st);
	check_attr(&st, committed, "after the failed mapping");
	check_read(fs, f, committed, "after the failed mapping");
	rfs_fs_forget(fs, f, 1);
	finish(fs);
	free(m);
	free(committed);
}

/* ---- pre-modification watch -------------------------------------------------- */

struct wwriter {
	rfs_fs *fs;
	rfs_nodeid f;
	struct model *m;
	atomic_bool done;
};

static void *wwriter_main(void *arg)
{
	struct wwriter *w = arg;
	/* wblk's cmocka checks are not for threads: write by hand. */
	static const struct {
		unsigned blk, n, gen;
	} ws[] = {{2, 2, 1}, {12, 1, 1}, {10, 1, 1}, {3, 1, 2}, {20, 2, 1}};
	uint8_t *buf = malloc(2 * BS);
	for (size_t i = 0; i < sizeof(ws) / sizeof(ws[0]) && buf; i++) {
		for (unsigned k = 0; k < ws[i].n; k++)
			stamp(buf + (size_t)k * BS, w->m->file, ws[i].blk + k, ws[i].gen);
		if (rfs_fs_write(w->fs, w->f, buf, (size_t)ws[i].n * BS, (uint64_t)ws[i].blk * BS) !=
		    (ssize_t)(ws[i].n * BS))
			break;
	}
	free(buf);
	atomic_store(&w->done, true);
	return NULL;
}

static void wait_event(rfs_watch *w, struct rfs_watch_event *ev)
{
	struct pollfd p = {.fd = rfs_fs_watch_fd(w), .events = POLLIN};
	/* Not a timing threshold: keeps a broken check from hanging the run
	 * (the event comes at once when it works). */
	assert_int_equal(poll(&p, 1, 300000), 1);
	assert_int_equal(rfs_fs_watch_next(w, ev), 0);
}

static void watch_mark(rfs_watch *w, rfs_nodeid f)
{
	uint64_t id;
	rfs_nodeid *fl = NULL;
	size_t nfl = 0;
	assert_int_equal(rfs_fs_watch_mark(w, &g_ctx, f, &id, &fl, &nfl), 0);
	free(fl);
	assert_int_equal(rfs_fs_watch_arm(w, id), 0);
}

/* A blocking watch armed on the file: the first whole-block write gives
 * its event and waits for the ack before anything of the file changed
 * (data, size, blocks, mtime as before); after the ack every write is
 * seen.  Then a non-blocking round: the event is queued by the time the
 * write returns. */
static void test_watch(void **state)
{
	(void)state;
	rfs_fs *fs = fresh(0);
	struct model *m = model_new(1);
	rfs_nodeid f = file_with_old_times(fs, RFS_ROOT_NODE, m, true);
	struct stat before;
	assert_int_equal(rfs_fs_getattr(fs, f, &before), 0);
	struct model *old = model_copy(m);
	uint64_t seen = rfs_fs_changes_events(fs);
	rfs_watch *w;
	assert_int_equal(rfs_fs_watch_new(fs, &g_ctx, RFS_WATCH_BLOCKING, 600000, &w), 0);
	watch_mark(w, f);
	struct wwriter wr = {.fs = fs, .f = f, .m = m};
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, wwriter_main, &wr), 0);
	struct rfs_watch_event ev;
	wait_event(w, &ev);
	assert_int_equal(ev.kind, RFS_PREMOD_WRITE);
	assert_true(ev.blocking);
	assert_int_equal(ev.ino, before.st_ino);
	/* Held: nothing changed yet. */
	assert_false(atomic_load(&wr.done));
	struct stat st;
	assert_int_equal(rfs_fs_getattr(fs, f, &st), 0);
	check_attr(&st, old, "while the first write waits for the ack");
	assert_int_equal(st.st_mtim.tv_sec, 1000);
	check_read(fs, f, old, "while the first write waits for the ack");
	assert_int_equal(rfs_fs_changes_events(fs), seen); /* nor journaled */
	assert_int_equal(rfs_fs_watch_ack(w, ev.id), 0);
	assert_int_equal(pthread_join(t, NULL), 0);
	/* The model of what the thread wrote (the writes are its alone). */
	model_blk(m, 2, 2, 1);
	model_blk(m, 12, 1, 1);
	model_blk(m, 10, 1, 1);
	model_blk(m, 3, 1, 2);
	model_blk(m, 20, 2, 1);
	assert_int_equal(m->size, FINAL_SIZE);
	check_read(fs, f, m, "after the ack");
	/* One-shot: no second event. */
	assert_int_equal(rfs_fs_watch_next(w, &ev), -EAGAIN);
	rfs_fs_watch_free(w);
	/* Non-blocking: marked again, the next whole-block write's event
	 * is there when it returns. */
	assert_int_equal(rfs_fs_watch_new(fs, &g_ctx, 0, 0, &w), 0);
	watch_mark(w, f);
	assert_int_equal(rfs_fs_watch_next(w, &ev), -EAGAIN);
	wblk(fs, f, m, 6, 1, 3);
	assert_int_equal(rfs_fs_watch_next(w, &ev), 0);
	assert_int_equal(ev.kind, RFS_PREMOD_WRITE);
	assert_int_equal(ev.ino, before.st_ino);
	wblk(fs, f, m, 7, 1, 3);
	assert_int_equal(rfs_fs_watch_next(w, &ev), -EAGAIN);
	check_read(fs, f, m, "after the non-blocking round");
	rfs_fs_watch_free(w);
	rfs_fs_forget(fs, f, 1);
	finish(fs);
	free(m);
	free(old);
}

/* ---- threads ------------------------------------------------------------------ */

/*
 * Two writers, each of its own file, and a reader.  After each write
 * returns, its writer posts (block, generation) and waits until the
 * reader has read the whole file and checked it against its own model
 * of that file (size, st_blocks, every byte) -- so each check is of a
 * file nobody writes meanwhile, while the other writer goes on with its
 * file.  A handshake, no sleeps.  Each file gets 24 writes (8 scattered
 * blocks, 3 generations: extending, into holes, over earlier blocks).
 */
#define TW 2
#define TBLK 8
#define TGEN 3

static const unsigned g_tblk[TBLK] = {0, 9, 3, 14, 6, 1, 11, 5};

struct tworld {
	rfs_fs *fs;
	rfs_nodeid f[TW];
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct {
		bool full;
		unsigned blk, gen;
	} slot[TW];
	int writers_left;
	unsigned checks;
	char err[512]; /* the first failure */
};

static void tfail(struct tworld *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void tfail(struct tworld *w, const char *fmt, ...)
{
	pthread_mutex_lock(&w->mu);
	if (!w->err[0]) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(w->err, sizeof(w->err), fmt, ap);
		va_end(ap);
	}
	pthread_mutex_unlock(&w->mu);
}

struct twriter {
	struct tworld *w;
	unsigned i;
};

static void *twriter_main(void *arg)
{
	struct twriter *tw = arg;
	struct tworld *w = tw->w;
	uint8_t *buf = malloc(BS);
	uint64_t seed = 77 + tw->i;
	for (unsigned gen = 1; gen <= TGEN && buf; gen++) {
		unsigned order[TBLK];
		memcpy(order, g_tblk, sizeof(order));
		for (unsigned k = TBLK; k > 1; k--) {
			unsigned j = (unsigned)(mix(&seed) % k), t = order[k - 1];
			order[k - 1] = order[j];
			order[j] = t;
		}
		for (unsigned k = 0; k < TBLK; k++) {
			stamp(buf, 10 + tw->i, order[k], gen);
			ssize_t n = rfs_fs_write(w->fs, w->f[tw->i], buf, BS, (uint64_t)order[k] * BS);
			if (n != BS) {
				tfail(w, "writer %u: write of block %u: %zd", tw->i, order[k], n);
				goto out;
			}
			pthread_mutex_lock(&w->mu);
			w->slot[tw->i].blk = order[k];
			w->slot[tw->i].gen = gen;
			w->slot[tw->i].full = true;
			pthread_cond_broadcast(&w->cv);
			while (w->slot[tw->i].full)
				pthread_cond_wait(&w->cv, &w->mu);
			pthread_mutex_unlock(&w->mu);
		}
	}
out:
	free(buf);
	pthread_mutex_lock(&w->mu);
	w->writers_left--;
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

static void *treader_main(void *arg)
{
	struct tworld *w = arg;
	struct model *m[TW];
	uint8_t *buf = malloc((size_t)MAXB * BS);
	for (unsigned i = 0; i < TW; i++)
		m[i] = calloc(1, sizeof(struct model));
	unsigned next = 0;
	for (;;) {
		pthread_mutex_lock(&w->mu);
		int i = -1;
		for (;;) {
			for (unsigned k = 0; k < TW && i < 0; k++)
				if (w->slot[(next + k) % TW].full)
					i = (int)((next + k) % TW);
			if (i >= 0 || w->writers_left == 0)
				break;
			pthread_cond_wait(&w->cv, &w->mu);
		}
		unsigned blk = i >= 0 ? w->slot[i].blk : 0, gen = i >= 0 ? w->slot[i].gen : 0;
		pthread_mutex_unlock(&w->mu);
		if (i < 0)
			break;
		next = (unsigned)i + 1;
		struct model *fm = m[i];
		if (buf && fm) {
			/* The model, by hand (no cmocka in threads). */
			stamp(fm->img + (size_t)blk * BS, 10 + (unsigned)i, blk, gen);
			fm->alloc[blk] = true;
			if ((uint64_t)(blk + 1) * BS > fm->size)
				fm->size = (uint64_t)(blk + 1) * BS;
			struct stat st;
			ssize_t n = rfs_fs_read(w->fs, w->f[i], buf, (size_t)MAXB * BS, 0);
			int ret = rfs_fs_getattr(w->fs, w->f[i], &st);
			if (n != (ssize_t)fm->size)
				tfail(w, "file %d after block %u gen %u: read %zd, size %" PRIu64, i, blk,
				      gen, n, fm->size);
			else if (memcmp(buf, fm->img, fm->size) != 0) {
				uint64_t b = 0;
				while (memcmp(buf + b * BS, fm->img + b * BS, BS) == 0)
					b++;
				char g[64], e[64];
				tfail(w, "file %d after block %u gen %u: block %" PRIu64 " reads %s, expected %s",
				      i, blk, gen, b, describe(buf + b * BS, g, sizeof(g)),
				      describe(fm->img + b * BS, e, sizeof(e)));
			} else if (ret || (uint64_t)st.st_size != fm->size ||
				   (uint64_t)st.st_blocks != (uint64_t)nalloc(fm) * (BS / 512))
				tfail(w, "file %d after block %u gen %u: getattr %d size %lld blocks %lld, "
				      "expected %" PRIu64 " and %u",
				      i, blk, gen, ret, (long long)st.st_size, (long long)st.st_blocks,
				      fm->size, nalloc(fm) * (BS / 512));
		} else {
			tfail(w, "reader: out of memory");
		}
		pthread_mutex_lock(&w->mu);
		w->checks++;
		w->slot[i].full = false;
		pthread_cond_broadcast(&w->cv);
		pthread_mutex_unlock(&w->mu);
	}
	free(buf);
	for (unsigned i = 0; i < TW; i++)
		free(m[i]);
	return NULL;
}

static void test_threads(void **state)
{
	(void)state;
	struct tworld *w = calloc(1, sizeof(*w));
	assert_non_null(w);
	w->fs = fresh(0);
	for (unsigned i = 0; i < TW; i++) {
		char name[8];
		snprintf(name, sizeof(name), "t%u", i);
		w->f[i] = fx_create(w->fs, &g_ctx, RFS_ROOT_NODE, name);
	}
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cv, NULL);
	w->writers_left = TW;
	pthread_t r, t[TW];
	struct twriter tw[TW];
	assert_int_equal(pthread_create(&r, NULL, treader_main, w), 0);
	for (unsigned i = 0; i < TW; i++) {
		tw[i] = (struct twriter){w, i};
		assert_int_equal(pthread_create(&t[i], NULL, twriter_main, &tw[i]), 0);
	}
	for (unsigned i = 0; i < TW; i++)
		assert_int_equal(pthread_join(t[i], NULL), 0);
	assert_int_equal(pthread_join(r, NULL), 0);
	if (w->err[0])
		fail_msg("%s", w->err);
	assert_int_equal(w->checks, TW * TBLK * TGEN);
	for (unsigned i = 0; i < TW; i++)
		rfs_fs_forget(w->fs, w->f[i], 1);
	finish(w->fs);
	pthread_cond_destroy(&w->cv);
	pthread_mutex_destroy(&w->mu);
	free(w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_read),
		cmocka_unit_test(test_read_nolock),
		cmocka_unit_test(test_getattr),
		cmocka_unit_test(test_lookup_attr),
		cmocka_unit_test(test_readdirplus_attr),
		cmocka_unit_test(test_lseek),
		cmocka_unit_test(test_extents),
		cmocka_unit_test(test_clone_file),
		cmocka_unit_test(test_clone_range),
		cmocka_unit_test(test_clone_onto_written),
		cmocka_unit_test(test_snapshot),
		cmocka_unit_test(test_diff),
		cmocka_unit_test(test_du),
		cmocka_unit_test(test_scrub),
		cmocka_unit_test(test_journal),
		cmocka_unit_test(test_truncate),
		cmocka_unit_test(test_punch),
		cmocka_unit_test(test_partial_write_over),
		cmocka_unit_test(test_setattr),
		cmocka_unit_test(test_rename),
		cmocka_unit_test(test_unlink_open),
		cmocka_unit_test(test_sync_crash),
		cmocka_unit_test(test_background_commit_crash),
		cmocka_unit_test(test_close_reopen),
		cmocka_unit_test(test_failure_reported),
		cmocka_unit_test(test_watch),
		cmocka_unit_test(test_threads),
	};
	int failed = cmocka_run_group_tests(tests, fx_setup, fx_teardown);
	/* A failed test leaves its models behind (cmocka longjmps out):
	 * leave without LeakSanitizer's report of them. */
	if (failed) {
		fflush(stdout);
		fflush(stderr);
		_exit(1);
	}
	return 0;
}
