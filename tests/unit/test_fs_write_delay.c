/*
 * Delayed mapping of small whole-block writes (src/fs/file_delay.c): when
 * a write is queued rather than mapped, when the queue is mapped, what
 * a failure to map an answered write does, and that a batch mapped in
 * file order (src/fs/file_claim.c claim_map) reads back as written.
 * What readers see of queued writes is tests/unit/test_fs_write_seen.c's
 * subject.
 *
 * White-box: the queue's counters (fs->dm_count, node dm_count) say
 * whether a write was queued, which no API shows; the replace counters
 * (fs->ext_replaced, ext_split) and the file tree's height and leaves
 * that a batch took the path it was meant to.
 */
#include <errno.h>
#include <linux/falloc.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include "common/fsfix.h"
#include "reflinkfs/fs.h"

#include "fs/file_claim.h"
#include "fs/fs_internal.h"
#include "fs/op.h"

#define BS RFS_BLOCK_SIZE

static const struct rfs_ctx g_ctx = {.uid = 1000, .gid = 1000, .pid = 1};

static void fill(uint8_t *p, unsigned tag, unsigned b)
{
	for (size_t i = 0; i < BS; i++)
		p[i] = (uint8_t)(tag * 31u + b * 7u + i / 512u);
}

static void wr(rfs_fs *fs, rfs_nodeid n, unsigned tag, unsigned b, unsigned nblk)
{
	uint8_t *buf = malloc((size_t)nblk * BS);
	assert_non_null(buf);
	for (unsigned i = 0; i < nblk; i++)
		fill(buf + (size_t)i * BS, tag, b + i);
	assert_int_equal(rfs_fs_write(fs, n, buf, (size_t)nblk * BS, (uint64_t)b * BS),
			 (ssize_t)nblk * BS);
	free(buf);
}

static void check(rfs_fs *fs, rfs_nodeid n, unsigned tag, unsigned b)
{
	uint8_t want[BS], got[BS];
	fill(want, tag, b);
	assert_int_equal(rfs_fs_read(fs, n, got, BS, (uint64_t)b * BS), BS);
	assert_memory_equal(got, want, BS);
}

static uint32_t queued(rfs_fs *fs)
{
	return atomic_load(&fs->dm_count);
}

/* The pool's free data blocks (claimed ones are not). */
static uint64_t data_free(rfs_fs *fs)
{
	rfs_pool_gate_lock(fs->pool);
	uint64_t d = rfs_pool_data_free_blocks(fs->pool);
	rfs_pool_unlock(fs->pool);
	return d;
}

static uint32_t queued_on(rfs_fs *fs, rfs_nodeid id)
{
	return atomic_load(&node_get(fs, id)->dm_count);
}

/* Read back every tagged block of the two files named[0..2)
 * (tag[f * stride + blk], 0: not written), then again after a reopen;
 * close fs and check the pool. */
static void check_all_twice(rfs_fs *fs, const char *const named[2], const unsigned *tag,
			    unsigned stride)
{
	for (unsigned pass = 0; pass < 2; pass++) {
		if (pass == 1)
			fs = fx_reopen(fs, 0);
		for (unsigned f = 0; f < 2; f++) {
			rfs_nodeid id;
			struct stat st;
			assert_int_equal(rfs_fs_lookup(fs, RFS_ROOT_NODE, named[f], &id, &st), 0);
			for (unsigned blk = 0; blk < stride; blk++)
				if (tag[f * stride + blk])
					check(fs, id, tag[f * stride + blk], blk);
		}
	}
	assert_int_equal(rfs_fs_close(fs), 0);
	assert_int_equal(fx_fsck(), 0);
}

/* Small writes are queued, one file's read maps only that file's, and a
 * full queue maps itself. */
static void test_queue_and_batch(void **state)
{
	(void)state;
	rfs_fs *fs = fx_fresh(256ull << 20, 0);
	rfs_nodeid a = fx_create(fs, &g_ctx, RFS_ROOT_NODE, "a");
	rfs_nodeid b = fx_create(fs, &g_ctx, RFS_ROOT_NODE, "b");
	wr(fs, a, 1, 0, 1);
	wr(fs, b, 2, 5, 3);
	wr(fs, a, 1, 9, DM_RUN_MAX);
	assert_int_equal(queued(fs), 3);
	assert_int_equal(queued_on(fs, a), 2);
	assert_int_equal(queued_on(fs, b), 1);
	/* A write longer than DM_RUN_MAX is mapped at once, after the
	 * queued ones (an operation settles the queue first). */
	wr(fs, b, 3, 100, DM_RUN_MAX + 1);
	assert_int_equal(queued(fs), 0);
	check(fs, a, 1, 0);
	check(fs, b, 2, 7);
	check(fs, b, 3, 100 + DM_RUN_MAX);

	/* No READ looked for queued writes yet: the index is off, and
	 * the first READ of a maps a's writes (only), turning it on; a's
	 * next write is in the index, and a READ of a leaves it queued.
	 * One that reaches past a's mapped size maps a's writes only. */
	wr(fs, a, 4, 0, 1);
	wr(fs, b, 5, 5, 1);
	assert_false(fs->dmx_on);
	check(fs, a, 4, 0);
	assert_true(fs->dmx_on);
	assert_int_equal(queued_on(fs, a), 0);
	assert_int_equal(queued_on(fs, b), 1);
	wr(fs, a, 4, 1, 1);
	check(fs, a, 4, 1);
	assert_int_equal(queued_on(fs, a), 1);
	uint8_t blk[BS];
	assert_int_equal(rfs_fs_read(fs, a, blk, 2 * BS, 24 * BS), BS);
	assert_int_equal(queued_on(fs, a), 0);
	assert_int_equal(queued_on(fs, b), 1);
	/* GETATTR likewise: b's size grows only when it is mapped. */
	wr(fs, b, 6, 300, 1);
	struct stat st;
	assert_int_equal(rfs_fs_getattr(fs, a, &st), 0);
	assert_int_equal(queued_on(fs, b), 2);
	assert_int_equal(rfs_fs_getattr(fs, b, &st), 0);
	assert_int_equal(st.st_size, 301 * (off_t)BS);
	assert_int_equal(queued(fs), 0);

	/* Writes queue while the pool has room for their reservations
	 * (dm_room each); the first that would go beyond is mapped at
	 * once, after all those queued (its operation settles them). */
	unsigned q = 0;
	while (queued(fs) == q) {
		wr(fs, q % 2 ? a : b, 7, 1000 + q, 1);
		q++;
		assert_true(q < DM_QUEUE);
	}
	assert_int_equal(queued(fs), 0);
	assert_true(q > DM_BATCH); /* 256 MiB hold more than a batch */
	for (unsigned i = 0; i < q; i++)
		check(fs, i % 2 ? a : b, 7, 1000 + i);
	/* The same block twice in one batch: the later write wins. */
	wr(fs, a, 8, 2000, 1);
	wr(fs, a, 9, 2000, 1);
	assert_int_equal(queued(fs), 2);
	check(fs, a, 9, 2000);
	/* A block written again and again in one batch is mapped once:
	 * the replaced writes' blocks go back, none is left claimed. */
	assert_int_equal(rfs_fs_sync(fs), 0);
	uint64_t free0 = data_free(fs);
	for (unsigned i = 0; i < 50; i++)
		wr(fs, a, 20 + i, 3000, 1);
	assert_int_equal(queued(fs), 50);
	assert_true(free0 - data_free(fs) >= 50); /* 50 claims held */
	assert_int_equal(rfs_fs_sync(fs), 0);
	check(fs, a, 69, 3000);
	assert_true(free0 - data_free(fs) < 16);
	assert_int_equal(rfs_fs_close(fs), 0);
	assert_int_equal(fx_fsck(), 0);
}

static uint32_t unidx(rfs_fs *fs, rfs_nodeid id)
{
	pthread_mutex_lock(&fs->dm_lock);
	uint32_t u = node_get(fs, id)->dm_unidx;
	pthread_mutex_unlock(&fs->dm_lock);
	return u;
}

static size_t indexed(rfs_fs *fs)
{
	pthread_mutex_lock(&fs->dm_lock);
	size_t k = dmx_count(fs->dm_idx);
	pthread_mutex_unlock(&fs->dm_lock);
	return k;
}

/* The index of queued writes holds them only while READs come: off at
 * mount, on from the first READ that looks there (which maps its file's
 * writes queued before, once), off again when a batch of all files is
 * taken with no READ since (its entries go), and every READ, in each
 * state, returns the last write of each block. */
static void test_index_on_reads(void **state)
{
	(void)state;
	rfs_fs *fs = fx_fresh(256ull << 20, 0);
	rfs_nodeid a = fx_create(fs, &g_ctx, RFS_ROOT_NODE, "a");
	rfs_nodeid b = fx_create(fs, &g_ctx, RFS_ROOT_NODE, "b");
	wr(fs, a, 1, 0, 4);
	wr(fs, b, 1, 0, 4);
	assert_int_equal(rfs_fs_sync(fs), 0);
	/* Off: queued, not indexed. */
	wr(fs, a, 2, 1, 1);
	wr(fs, b, 2, 1, 2);
	assert_false(fs->dmx_on);
	assert_int_equal(indexed(fs), 0);
	assert_int_equal(unidx(fs, a), 1);
	assert_int_equal(unidx(fs, b), 1);
	/* A READ of a maps a's write, not b's, and turns the index on. */
	check(fs, a, 2, 1);
	check(fs, a, 1, 0);
	assert_true(fs->dmx_on && fs->dmx_used);
	assert_int_equal(queued_on(fs, a), 0);
	assert_int_equal(unidx(fs, a), 0);
	assert_int_equal(queued_on(fs, b), 1);
	/* On: a's and b's new writes are indexed, a block written twice
	 * has one entry; READs of a leave a's queued. */
	wr(fs, a, 3, 2, 1);
	wr(fs, a, 4, 2, 1);
	wr(fs, a, 3, 3, 1);
	wr(fs, b, 3, 3, 1);
	assert_int_equal(indexed(fs), 3);
	check(fs, a, 4, 2);
	check(fs, a, 3, 3);
	assert_int_equal(queued_on(fs, a), 3);
	/* b has one write outside the index and one in: its READ maps
	 * both (after which the index holds a's only). */
	check(fs, b, 3, 3);
	check(fs, b, 2, 2);
	assert_int_equal(queued_on(fs, b), 0);
	assert_int_equal(unidx(fs, b), 0);
	assert_int_equal(indexed(fs), 2);
	/* A batch of all files taken after READs keeps it on... */
	assert_int_equal(rfs_fs_sync(fs), 0);
	assert_int_equal(indexed(fs), 0);
	assert_true(fs->dmx_on);
	assert_false(fs->dmx_used);
	/* ...and one taken with no READ since turns it off: the entries
	 * of the writes it takes go, and they still map right. */
	wr(fs, a, 5, 0, 1);
	wr(fs, b, 5, 0, 3);
	assert_int_equal(indexed(fs), 4);
	assert_int_equal(unidx(fs, a), 0);
	assert_int_equal(rfs_fs_sync(fs), 0);
	assert_false(fs->dmx_on);
	assert_int_equal(indexed(fs), 0);
	assert_int_equal(unidx(fs, a), 0);
	assert_int_equal(unidx(fs, b), 0);
	wr(fs, a, 6, 3, 1);
	assert_int_equal(indexed(fs), 0);
	const unsigned tag_a[4] = {5, 2, 4, 6}, tag_b[4] = {5, 5, 5, 3};
	for (unsigned k = 0; k < 4; k++) {
		check(fs, a, tag_a[k], k);
		check(fs, b, tag_b[k], k);
	}
	assert_int_equal(queued(fs), 0);
	assert_true(fs->dmx_on);
	const char *const named[2] = {"a", "b"};
	const unsigned tag[8] = {5, 2, 4, 6, 5, 5, 5, 3};
	check_all_twice(fs, named, tag, 4);
}

/* Single-block WRITEs take their blocks from the claim reserve, which a
 * claim (or a batch operation) fills while it holds the gate once WRITEs
 * stream in; every reserved block holds a queued write's reservation, so
 * the space accounting stays exact; a settle of all files gives
 * everything back, and an injected ENOSPC is seen at once, not after the
 * reserve. */
static void test_claim_reserve(void **state)
{
	(void)state;
	rfs_fs *fs = fx_fresh(8ull << 30, 0);
	rfs_nodeid a = fx_create(fs, &g_ctx, RFS_ROOT_NODE, "a");
	assert_int_equal(rfs_fs_sync(fs), 0);
	const uint64_t room = dm_room(op_meta(CR_DEPTH, 4));
	const uint64_t own = dm_room(op_meta(op_depth(fs, node_get(fs, a)), 4));
	assert_true(room > own);
	/* A few queued WRITEs (a file copy's, between creates) fill no
	 * reserve: a claim each. */
	for (unsigned i = 0; i < CR_MAX; i++)
		wr(fs, a, 1, i * 7, 1);
	assert_int_equal(queued(fs), CR_MAX);
	assert_int_equal(atomic_load(&fs->cr_n), 0);
	assert_int_equal(dm_reserved(fs), CR_MAX * own);
	/* With CR_MAX queued, the next claim fills it. */
	uint64_t free1 = data_free(fs);
	wr(fs, a, 1, CR_MAX * 7, 1);
	assert_int_equal(atomic_load(&fs->cr_n), CR_MAX);
	assert_int_equal(free1 - data_free(fs), CR_MAX + 1);
	assert_int_equal(dm_reserved(fs), (CR_MAX + 1) * own + CR_MAX * room);
	/* The next ones take theirs from it: no claim, and each keeps a
	 * queued write's reservation of the reserved block's. */
	for (unsigned i = CR_MAX + 1; i < CR_MAX + 10; i++)
		wr(fs, a, 1, i * 7, 1);
	assert_int_equal(queued(fs), CR_MAX + 10);
	assert_int_equal(atomic_load(&fs->cr_n), CR_MAX - 9);
	assert_int_equal(free1 - data_free(fs), CR_MAX + 1);
	assert_int_equal(dm_reserved(fs), (CR_MAX + 10) * own + (CR_MAX - 9) * room);
	/* A write of two blocks claims under the gate, and a reserve below
	 * half is filled up again then. */
	for (unsigned i = CR_MAX + 10; atomic_load(&fs->cr_n) >= CR_MAX / 2; i++)
		wr(fs, a, 1, i * 7, 1);
	uint32_t below = atomic_load(&fs->cr_n);
	wr(fs, a, 2, 5000, 2);
	assert_int_equal(atomic_load(&fs->cr_n), CR_MAX);
	assert_true(below < CR_MAX / 2);
	/* A settle of all files maps the queue and gives the reserve back. */
	uint64_t free0 = data_free(fs); /* before the settle */
	rfs_fs_settle(fs);
	assert_int_equal(queued(fs), 0);
	assert_int_equal(atomic_load(&fs->cr_n), 0);
	assert_int_equal(dm_reserved(fs), 0);
	assert_true(data_free(fs) >= free0 + CR_MAX - 16); /* the reserve's blocks are back */
	check(fs, a, 2, 5001);
	for (unsigned i = 0; i < CR_MAX + 10; i += 9)
		check(fs, a, 1, i * 7);
	/* An injected ENOSPC gives it back too, and the next write goes
	 * the way that sees it (an allocation that fails once, which that
	 * path retries). */
	for (unsigned i = 0; i <= CR_MAX; i++)
		wr(fs, a, 3, 6000 + i, 1);
	assert_true(atomic_load(&fs->cr_n) > 0);
	rfs_fs_inject_alloc_nospc(fs, 1);
	assert_int_equal(atomic_load(&fs->cr_n), 0);
	assert_int_equal(dm_reserved(fs), 0);
	wr(fs, a, 4, 7000, 1);
	assert_int_equal(fs->inject_nospc, 0);
	assert_int_equal(atomic_load(&fs->cr_n), 0);
	check(fs, a, 3, 6000 + CR_MAX);
	check(fs, a, 4, 7000);
	/* Writes answered from the reserve are there after a reopen. */
	fs = fx_reopen(fs, 0);
	struct stat st;
	assert_int_equal(rfs_fs_lookup(fs, RFS_ROOT_NODE, "a", &a, &st), 0);
	check(fs, a, 3, 6000 + CR_MAX);
	check(fs, a, 4, 7000);
	check(fs, a, 1, (CR_MAX + 5) * 7);
	check(fs, a, 2, 5000);
	assert_int_equal(rfs_fs_close(fs), 0);
	assert_int_equal(fx_fsck(), 0);
}

/* Writes queued at close are mapped and committed by it. */
static void test_close_maps(void **state)
{
	(void)state;
	rfs_fs *fs = fx_fresh(256ull << 20, 0);
	rfs_nodeid a = fx_create(fs, &g_ctx, RFS_ROOT_NODE, "a");
	assert_int_equal(rfs_fs_sync(fs), 0);
	wr(fs, a, 1, 3, 2);
	assert_int_equal(queued(fs), 1);
	fs = fx_reopen(fs, 0);
	rfs_nodeid id;
	struct stat st;
	assert_int_equal(rfs_fs_lookup(fs, RFS_ROOT_NODE, "a", &id, &st), 0);
	assert_int_equal(st.st_size, 5 * (off_t)BS);
	check(fs, id, 1, 3);
	check(fs, id, 1, 4);
	assert_int_equal(rfs_fs_close(fs), 0);
	assert_int_equal(fx_fsck(), 0);
}

/* Nothing is queued while the pool is short of room for a write's
 * reservation (the batch's operations must not fail for space after its
 * writes were answered): such a write is mapped at once. */
static void test_no_delay_when_short(void **state)
{
	(void)state;
	rfs_fs *fs = fx_fresh(20ull << 20, 0);
	rfs_nodeid a = fx_create(fs, &g_ctx, RFS_ROOT_NODE, "a");
	rfs_nodeid b = fx_create(fs, &g_ctx, RFS_ROOT_NODE, "b");
	struct statvfs sv;
	uint64_t need = dm_room(op_meta(op_depth(fs, node_get(fs, a)), 4));
	/* Fill the pool with b (writes too long to be queued) until less
	 * than one reservation is free, or it is full (the reserve is in
	 * f_bfree, not in what data may take): then give 8 blocks back,
	 * for a's write. */
	const unsigned nblk = DM_RUN_MAX + 1;
	uint8_t *buf = calloc(nblk, BS);
	assert_non_null(buf);
	uint64_t size = 0;
	for (;;) {
		assert_int_equal(rfs_fs_statfs(fs, &sv), 0);
		if (sv.f_bfree < need)
			break;
		ssize_t got = rfs_fs_write(fs, b, buf, (size_t)nblk * BS, size);
		assert_int_equal(queued(fs), 0);
		if (got > 0)
			size += (uint64_t)got;
		if (got < (ssize_t)nblk * BS) {
			struct stat st = {.st_size = (off_t)(size - 8 * BS)};
			assert_int_equal(rfs_fs_setattr(fs, b, &st, RFS_SET_SIZE, NULL), 0);
			break;
		}
	}
	free(buf);
	assert_int_equal(rfs_fs_sync(fs), 0);
	wr(fs, a, 1, 0, 1);
	assert_int_equal(queued(fs), 0);
	check(fs, a, 1, 0);
	assert_int_equal(rfs_fs_close(fs), 0);
	assert_int_equal(fx_fsck(), 0);
}

/* A queue that fills, by its writes (DM_QUEUE) or by their blocks
 * (DM_BLOCKS), is taken as a batch by the write that filled it, and the
 * writes after it map the batch, an operation each; every write reads
 * back, also after a reopen. */
static void test_queue_full(void **state)
{
	(void)state;
	/* Room for DM_QUEUE reservations: a sparse pool of 8 GiB. */
	rfs_fs *fs = fx_fresh(8ull << 30, 0);
	rfs_nodeid a = fx_create(fs, &g_ctx, RFS_ROOT_NODE, "a");
	rfs_nodeid b = fx_create(fs, &g_ctx, RFS_ROOT_NODE, "b");
	/* Single blocks, random over 3 * DM_QUEUE blocks of two files:
	 * some written twice, the later winning. */
	unsigned span = 3 * DM_QUEUE, stride = span + DM_BLOCKS;
	unsigned *tag = calloc(2 * stride, sizeof(*tag));
	assert_non_null(tag);
	uint64_t x = 0x9e3779b97f4a7c15ull;
	for (unsigned i = 0; i < DM_QUEUE; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		unsigned f = (unsigned)(x >> 60) & 1, blk = (unsigned)(x % span);
		assert_int_equal(queued(fs), i);
		wr(fs, f ? a : b, 10 + i % 200, blk, 1);
		tag[f * stride + blk] = 10 + i % 200;
	}
	/* Taken off the queue, being mapped: one operation of DM_BATCH
	 * runs so far, which ended neither file's group. */
	assert_int_equal(fs->dm_n, 0);
	assert_int_equal(queued(fs), DM_QUEUE);
	/* DM_BLOCKS / DM_RUN_MAX writes of DM_RUN_MAX blocks fill it by
	 * blocks.  The batch has at most DM_QUEUE runs, in two groups:
	 * DM_QUEUE / DM_BATCH + 2 writes after the fill mapped it. */
	for (unsigned i = 0; i < DM_BLOCKS / DM_RUN_MAX; i++) {
		assert_int_equal(fs->dm_n, i);
		if (i == DM_QUEUE / DM_BATCH + 2)
			assert_int_equal(queued(fs), i);
		unsigned blk = span + (i * 7919u) % (DM_BLOCKS / DM_RUN_MAX) * DM_RUN_MAX;
		wr(fs, a, 3, blk, DM_RUN_MAX);
		for (unsigned j = 0; j < DM_RUN_MAX; j++)
			tag[stride + blk + j] = 3;
	}
	assert_int_equal(fs->dm_n, 0);
	assert_true(queued(fs) > 0);
	rfs_fs_settle(fs);
	assert_int_equal(queued(fs), 0);
	check_all_twice(fs, (const char *const[]){"b", "a"}, tag, stride);
	free(tag);
}

/* A batch being mapped an operation per write: READ sees its writes,
 * and later writes over them; a later write to a block of the batch
 * wins, also after a reopen; GETATTR of one file maps that file's
 * group and leaves the other's. */
static void test_batch_paced(void **state)
{
	(void)state;
	rfs_fs *fs = fx_fresh(8ull << 30, 0);
	rfs_nodeid id[2] = {fx_create(fs, &g_ctx, RFS_ROOT_NODE, "a"),
			    fx_create(fs, &g_ctx, RFS_ROOT_NODE, "b")};
	/* The index on (a READ with a write queued), so that the READs
	 * below read beside the batch rather than map it. */
	rfs_nodeid p = fx_create(fs, &g_ctx, RFS_ROOT_NODE, "p");
	wr(fs, p, 1, 0, 2);
	assert_int_equal(rfs_fs_fsync(fs, p), 0);
	wr(fs, p, 2, 0, 1);
	check(fs, p, 2, 0);
	assert_true(fs->dmx_on);
	/* Blocks 7 apart mod span: few runs join, so each file's group
	 * takes many operations. */
	unsigned span = 2 * DM_QUEUE, top[2] = {0, 0};
	unsigned *tag = calloc(2 * span, sizeof(*tag));
	assert_non_null(tag);
	for (unsigned i = 0; i < DM_QUEUE; i++) {
		unsigned f = i & 1, blk = (i * 7u) % span;
		wr(fs, id[f], 20 + i % 100, blk, 1);
		tag[f * span + blk] = 20 + i % 100;
		if (blk + 1 > top[f])
			top[f] = blk + 1;
	}
	assert_int_equal(fs->dm_n, 0);
	assert_int_equal(queued_on(fs, id[0]), DM_QUEUE / 2);
	assert_int_equal(queued_on(fs, id[1]), DM_QUEUE / 2);
	/* Later writes to a's blocks of the batch: queued behind it. */
	unsigned later[3] = {0, 14, 28};
	for (unsigned i = 0; i < 3; i++) {
		assert_int_not_equal(tag[later[i]], 0);
		wr(fs, id[0], 7, later[i], 1);
		tag[later[i]] = 7;
	}
	assert_int_equal(fs->dm_n, 3);
	for (unsigned i = 0; i < 3; i++)
		check(fs, id[0], 7, later[i]);
	check(fs, id[0], tag[42], 42);
	check(fs, id[1], tag[span + 7], 7);
	assert_int_equal(queued_on(fs, id[0]), DM_QUEUE / 2 + 3);
	/* GETATTR of b: b's group, nothing of a's. */
	struct stat st;
	assert_int_equal(rfs_fs_getattr(fs, id[1], &st), 0);
	assert_int_equal(st.st_size, (off_t)top[1] * BS);
	assert_int_equal(queued_on(fs, id[1]), 0);
	assert_int_equal(queued_on(fs, id[0]), DM_QUEUE / 2 + 3);
	/* GETATTR of a: the rest. */
	assert_int_equal(rfs_fs_getattr(fs, id[0], &st), 0);
	assert_int_equal(st.st_size, (off_t)top[0] * BS);
	assert_int_equal(queued(fs), 0);
	check_all_twice(fs, (const char *const[]){"a", "b"}, tag, span);
	free(tag);
}

/* A crash while a batch is being mapped: what an fsync returned for is
 * there, every other block is a whole version that was written (the
 * last committed or a later one), and the pool checks clean (the
 * claimed blocks of writes not mapped were never in a commit). */
static void test_batch_paced_crash(void **state)
{
	(void)state;
	rfs_fs *fs = fx_fresh(8ull << 30, 0);
	rfs_nodeid a = fx_create(fs, &g_ctx, RFS_ROOT_NODE, "a");
	rfs_nodeid b = fx_create(fs, &g_ctx, RFS_ROOT_NODE, "b");
	unsigned span = 2 * DM_QUEUE;
	unsigned *tag = calloc(span, sizeof(*tag)), *later = calloc(span, sizeof(*later));
	assert_non_null(tag);
	assert_non_null(later);
	/* A batch over a and b, being mapped; writes to a behind it. */
	for (unsigned i = 0; i < DM_QUEUE; i++) {
		unsigned blk = (i * 7u) % span;
		wr(fs, i & 1 ? b : a, 20 + i % 100, blk, 1);
		if (!(i & 1))
			tag[blk] = 20 + i % 100;
	}
	assert_int_equal(fs->dm_n, 0);
	assert_int_equal(queued_on(fs, a), DM_QUEUE / 2);
	wr(fs, a, 9, 0, 1);
	tag[0] = 9;
	assert_int_equal(rfs_fs_fsync(fs, a), 0);
	assert_int_equal(queued_on(fs, a), 0);
	/* A second batch, over a only, taken and partly mapped (a write
	 * maps one operation of 64 runs of its thousands). */
	for (unsigned i = 0; i < DM_QUEUE + 8; i++) {
		unsigned blk = (i * 11u + 3) % span;
		wr(fs, a, 120 + i % 100, blk, 1);
		later[blk] = 120 + i % 100;
	}
	assert_int_equal(fs->dm_n, 8);
	assert_true(queued_on(fs, a) > 8);
	rfs_fs_abandon(fs);
	assert_int_equal(rfs_fs_open(g_pool, 0, &fs), 0);
	struct stat st;
	assert_int_equal(rfs_fs_lookup(fs, RFS_ROOT_NODE, "a", &a, &st), 0);
	uint8_t got[BS], want[BS];
	for (unsigned blk = 0; blk < span; blk++) {
		if (!tag[blk] && !later[blk])
			continue;
		if (blk * (uint64_t)BS >= (uint64_t)st.st_size) {
			assert_int_equal(tag[blk], 0); /* only a later write had it */
			continue;
		}
		assert_int_equal(rfs_fs_read(fs, a, got, BS, (uint64_t)blk * BS), BS);
		bool ok = false;
		if (tag[blk]) {
			fill(want, tag[blk], blk);
			ok = !memcmp(got, want, BS);
		} else {
			memset(want, 0, BS); /* a hole before the crash */
			ok = !memcmp(got, want, BS);
		}
		if (!ok && later[blk]) {
			fill(want, later[blk], blk);
			ok = !memcmp(got, want, BS);
		}
		if (!ok)
			fail_msg("block %u of a: neither its fsynced version (%u) nor its later one (%u)",
				 blk, tag[blk], later[blk]);
	}
	free(tag);
	free(later);
	assert_int_equal(rfs_fs_close(fs), 0);
	assert_int_equal(fx_fsck(), 0);
}

/* An answered write whose mapping fails: the pool turns read-only (the
 * last commit intact), the error is kept for the file's fsync, once. */
static void test_failure_reaches_fsync(void **state)
{
	(void)state;
	rfs_fs *fs = fx_fresh(256ull << 20, 0);
	rfs_nodeid a = fx_create(fs, &g_ctx, RFS_ROOT_NODE, "a");
	rfs_nodeid b = fx_create(fs, &g_ctx, RFS_ROOT_NODE, "b");
	wr(fs, a, 1, 0, 1);
	assert_int_equal(rfs_fs_fsync(fs, a), 0);
	wr(fs, a, 2, 1, 1);
	assert_int_equal(queued_on(fs, a), 1);
	rfs_fs_inject_op_failure(fs, 1, -EIO);
	assert_int_equal(rfs_fs_fsync(fs, b), -EROFS); /* b's own: the pool's state */
	assert_int_equal(queued(fs), 0);
	assert_int_equal(rfs_fs_fsync(fs, a), -EIO);
	assert_int_equal(rfs_fs_fsync(fs, a), -EROFS); /* reported once */
	rfs_fs_abandon(fs);
	/* The last commit holds the first write. */
	fs = rfs_fs_open(g_pool, 0, &fs) == 0 ? fs : NULL;
	assert_non_null(fs);
	rfs_nodeid id;
	struct stat st;
	assert_int_equal(rfs_fs_lookup(fs, RFS_ROOT_NODE, "a", &id, &st), 0);
	assert_int_equal(st.st_size, BS);
	check(fs, id, 1, 0);
	assert_int_equal(rfs_fs_close(fs), 0);
	assert_int_equal(fx_fsck(), 0);
}

/* ---- a batch mapped in file order -----------------------------------------
 *
 * A batch of one file's writes is sorted by offset, a block written twice
 * keeping the later write (file_delay.c), and claim_map maps the runs
 * in that order, each extent edit resuming the last one's descent (a
 * finger: ext_replace, rfs_tree_edit_move).
 * What could go wrong: an edit made in the wrong leaf (a move that
 * misjudges which node's subtree holds the key: writes spread over a
 * tall tree make the finger climb to every level; one in a wrong leaf
 * usually falls back to the general path, which the replace counters
 * show), a finger kept over a leaf that split mid-batch or over the
 * general path's puts, writes issued out of file order or overlapping
 * applied in the wrong order, the size taken from the last write
 * mapped, a cloned tree's shared nodes changed in place.  Each batch is
 * checked against a model of the whole file (contents, size), the pool
 * by fsck at the end.
 */

#define MB_MAX 16384u /* blocks a model follows */

/* Versions are unique across all files (g_gen), and each block holds
 * its tag, block and version in its first bytes: a mismatch says which
 * write was read instead. */
static unsigned g_gen;

struct mfile {
	rfs_nodeid n;
	const char *name; /* in the root directory */
	unsigned tag;
	uint64_t size; /* bytes */
	unsigned *ver; /* MB_MAX versions, 0: a hole (zeros) */
};

struct wreq {
	unsigned b, nblk;
};

static uint64_t rnd(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x >> 11;
}

static void mfill(uint8_t *p, unsigned tag, unsigned b, unsigned v)
{
	uint32_t h[3] = {tag, b, v}, x = tag * 2654435761u ^ b * 40503u ^ v * 2246822519u;
	memcpy(p, h, sizeof(h));
	for (size_t i = sizeof(h); i < BS; i += 4) {
		x = x * 1664525u + 1013904223u;
		memcpy(p + i, &x, 4);
	}
}

/* Create file name, empty, and its model. */
static void mopen(rfs_fs *fs, struct mfile *m, const char *name, unsigned tag)
{
	m->n = fx_create(fs, &g_ctx, RFS_ROOT_NODE, name);
	m->name = name;
	m->tag = tag;
	m->size = 0;
	m->ver = calloc(MB_MAX, sizeof(*m->ver));
	assert_non_null(m->ver);
}

/* Find m's file again (a reopened fs). */
static void mfind(rfs_fs *fs, struct mfile *m)
{
	assert_int_equal(rfs_fs_resolve(fs, m->name, &m->n, NULL), 0);
}

static void mfree(struct mfile *m)
{
	free(m->ver);
	m->ver = NULL;
}

/* Write blocks [b, b + nblk) of m, new versions; not mapped here. */
static void mwrite(rfs_fs *fs, struct mfile *m, unsigned b, unsigned nblk)
{
	assert_true(b + nblk <= MB_MAX);
	uint8_t *buf = malloc((size_t)nblk * BS);
	assert_non_null(buf);
	for (unsigned i = 0; i < nblk; i++) {
		m->ver[b + i] = ++g_gen;
		mfill(buf + (size_t)i * BS, m->tag, b + i, m->ver[b + i]);
	}
	assert_int_equal(rfs_fs_write(fs, m->n, buf, (size_t)nblk * BS, (uint64_t)b * BS),
			 (ssize_t)nblk * BS);
	if ((uint64_t)(b + nblk) * BS > m->size)
		m->size = (uint64_t)(b + nblk) * BS;
	free(buf);
}

/* The whole file reads back as the model says, and has its size. */
/* Every whole block of m reads as the model says, by READs only. */
static void mread_all(rfs_fs *fs, const struct mfile *m, const char *what)
{
	enum { CH = 64 };
	uint64_t nb = m->size / BS;
	uint8_t *buf = malloc((size_t)CH * BS), want[BS];
	assert_non_null(buf);
	for (uint64_t b = 0; b < nb; b += CH) {
		size_t k = nb - b < CH ? (size_t)(nb - b) : CH;
		assert_int_equal(rfs_fs_read(fs, m->n, buf, k * BS, b * BS), (ssize_t)(k * BS));
		for (size_t i = 0; i < k; i++) {
			const uint8_t *got = buf + i * BS;
			unsigned v = m->ver[b + i];
			if (v)
				mfill(want, m->tag, (unsigned)(b + i), v);
			else
				memset(want, 0, BS);
			if (memcmp(got, want, BS)) {
				uint32_t h[3];
				memcpy(h, got, sizeof(h));
				fail_msg("%s: file tag %u block %llu: want version %u, read tag %u "
					 "block %u version %u",
					 what, m->tag, (unsigned long long)(b + i), v, h[0], h[1],
					 h[2]);
			}
		}
	}
	free(buf);
}

/* m's size and every whole block are as the model says (GETATTR maps
 * m's queued writes first). */
static void mverify(rfs_fs *fs, const struct mfile *m, const char *what)
{
	struct stat st;
	assert_int_equal(rfs_fs_getattr(fs, m->n, &st), 0);
	if ((uint64_t)st.st_size != m->size)
		fail_msg("%s: file tag %u: size %llu, want %llu", what, m->tag,
			 (unsigned long long)st.st_size, (unsigned long long)m->size);
	mread_all(fs, m, what);
}

/* The end of a test of one file: the pool reopened, the file found
 * again and read back against its model, closed, fsck clean. */
static void mfinish(rfs_fs *fs, struct mfile *m)
{
	fs = fx_reopen(fs, 0);
	mfind(fs, m);
	mverify(fs, m, "reopened");
	mfree(m);
	assert_int_equal(rfs_fs_close(fs), 0);
	assert_int_equal(fx_fsck(), 0);
}

/* Issue the k writes of w to m in that order, all queued (the queue is
 * empty before): DM_BATCH of them are mapped here as one batch (the
 * queue's settle, as when it fills), fewer are left queued for the
 * caller to map. */
static void mbatch(rfs_fs *fs, struct mfile *m, const struct wreq *w, unsigned k)
{
	assert_int_equal(queued(fs), 0);
	for (unsigned i = 0; i < k; i++) {
		mwrite(fs, m, w[i].b, w[i].nblk);
		assert_int_equal(queued(fs), i + 1);
	}
	if (k == DM_BATCH) {
		rfs_fs_settle(fs);
		assert_int_equal(queued(fs), 0);
	}
}

/* Map what is queued of m by one of the ways a reader or fsync does. */
static void mforce(rfs_fs *fs, const struct mfile *m, unsigned how)
{
	uint8_t b[BS];
	struct stat st;
	if (how % 4 == 3) {
		/* First every block read with the writes still queued:
		 * READs put them over the tree (the index), until one
		 * reaches past the mapped size and maps them. */
		mread_all(fs, m, "read with writes queued");
	}
	if (how % 4 == 0 || how % 4 == 3)
		assert_int_equal(rfs_fs_fsync(fs, m->n), 0);
	else if (how % 4 == 1) /* a READ at the end maps them */
		assert_true(rfs_fs_read(fs, m->n, b, BS, m->size) >= 0);
	else
		assert_int_equal(rfs_fs_getattr(fs, m->n, &st), 0);
	assert_int_equal(queued_on(fs, m->n), 0);
}

/* Writes of len blocks over blocks [base, base + nb) of m (len | nb,
 * nb / len not a multiple of 37), 37 records apart in turn: each a
 * record of its own (none continues the one before it in the pool). */
static void mspread(rfs_fs *fs, struct mfile *m, unsigned base, unsigned nb, unsigned len)
{
	unsigned ne = nb / len;
	assert_true(ne * len == nb && ne % 37 != 0);
	for (unsigned i = 0; i < ne; i++)
		mwrite(fs, m, base + i * 37 % ne * len, len);
	rfs_fs_settle(fs);
}

static rfs_tree mtree(rfs_fs *fs, rfs_nodeid n)
{
	struct rfs_irec r;
	rfs_fs_settle(fs);
	fx_rec(fs, n, &r);
	assert_true(r.i.subtree != 0);
	return FS_TREE(r.i.subtree, RFS_OWNER_FILE);
}

static int mheight(rfs_fs *fs, rfs_nodeid n)
{
	rfs_tree t = mtree(fs, n);
	int h;
	rfs_pool_rdlock(fs->pool);
	assert_int_equal(rfs_tree_height(fs->pool, &t, &h), 0);
	rfs_pool_unlock(fs->pool);
	return h;
}

/* Leaves holding the records of blocks [lo, hi). */
static unsigned mleaves(rfs_fs *fs, rfs_nodeid n, uint64_t lo, uint64_t hi)
{
	rfs_tree t = mtree(fs, n);
	unsigned cnt = 0;
	uint64_t last = 0;
	rfs_pool_rdlock(fs->pool);
	for (uint64_t b = lo; b < hi; b++) {
		uint8_t key[9];
		uint64_t leaf;
		bool shared;
		ext_key(key, b);
		assert_int_equal(rfs_tree_leaf(fs->pool, &t, key, 9, &leaf, &shared), 0);
		cnt += leaf != last;
		last = leaf;
	}
	rfs_pool_unlock(fs->pool);
	return cnt;
}

static uint64_t replaces(rfs_fs *fs)
{
	return fs->ext_replaced + fs->ext_split;
}

/* Seeds of the randomized tests; RFS_SEED runs that one alone. */
static unsigned seeds(uint64_t *out)
{
	static const uint64_t fixed[] = {0x9e3779b97f4a7c15ull, 12345, 0xdeadbeefcafeull};
	const char *s = getenv("RFS_SEED");
	if (s && *s) {
		out[0] = strtoull(s, NULL, 0) | 1;
		return 1;
	}
	memcpy(out, fixed, sizeof(fixed));
	return sizeof(fixed) / sizeof(*fixed);
}

/* A batch of DM_BATCH single blocks in [lo, hi) (hi - lo >= 2 * DM_BATCH),
 * issued in an order other than the file's: kind 0 consecutive blocks
 * descending (one or two leaves: the finger stays low), 1 spread evenly
 * over the range descending (it climbs high between most), 2 random
 * blocks (none twice), 3 one in each DM_BATCH-th of the range; 2 and 3
 * in random order. */
static void order_batch(uint64_t *x, unsigned kind, unsigned lo, unsigned hi, struct wreq *w)
{
	unsigned span = hi - lo, stride = span / DM_BATCH;
	static uint8_t used[MB_MAX];
	if (kind == 0) {
		unsigned s = lo + (unsigned)(rnd(x) % (span - DM_BATCH));
		for (unsigned i = 0; i < DM_BATCH; i++)
			w[i] = (struct wreq){s + DM_BATCH - 1 - i, 1};
		return;
	}
	if (kind == 1) {
		unsigned o = lo + (unsigned)(rnd(x) % stride);
		for (unsigned i = 0; i < DM_BATCH; i++)
			w[i] = (struct wreq){o + (DM_BATCH - 1 - i) * stride, 1};
		return;
	}
	for (unsigned i = 0; i < DM_BATCH; i++) {
		unsigned b;
		do
			b = kind == 2 ? lo + (unsigned)(rnd(x) % span)
				      : lo + i * stride + (unsigned)(rnd(x) % stride);
		while (used[b]);
		used[b] = 1;
		w[i] = (struct wreq){b, 1};
	}
	for (unsigned i = 0; i < DM_BATCH; i++)
		used[w[i].b] = 0;
	/* Fisher-Yates: the order given is random. */
	for (unsigned i = DM_BATCH - 1; i > 0; i--) {
		unsigned j = (unsigned)(rnd(x) % (i + 1));
		struct wreq t = w[i];
		w[i] = w[j];
		w[j] = t;
	}
}

#define NB_TALL 12288u /* single-block records: a file tree of height 3 */

/*
 * A file tree of height >= 3 whose blocks are records of their own;
 * batches of single-block overwrites in descending and random order:
 * each replaces its record (the counters), and the file reads back as
 * written after each batch, after a commit and after a reopen.
 */
static void test_batch_order_tall(void **state)
{
	(void)state;
	uint64_t sd[4];
	unsigned ns = seeds(sd);
	rfs_fs *fs = fx_fresh(1ull << 30, 0);
	struct mfile m;
	mopen(fs, &m, "f", 1);
	mspread(fs, &m, 0, NB_TALL, 1);
	int h = mheight(fs, m.n);
	if (h < 3)
		fail_msg("file tree of height %d: the test needs 3", h);
	mverify(fs, &m, "made");
	for (unsigned s = 0; s < ns; s++) {
		uint64_t x = sd[s];
		for (unsigned r = 0; r < 8; r++) {
			struct wreq w[DM_BATCH];
			order_batch(&x, r % 4, 0, NB_TALL, w);
			uint64_t before = replaces(fs);
			mbatch(fs, &m, w, DM_BATCH);
			/* The replace path (a record or a split of one) for
			 * nearly all: only a write whose block comes right
			 * after its neighbour's in the pool merges. */
			uint64_t got = replaces(fs) - before;
			if (got < DM_BATCH * 3 / 4)
				fail_msg("seed %#llx round %u: %llu of %u replaced",
					 (unsigned long long)sd[s], r, (unsigned long long)got,
					 DM_BATCH);
			char what[64];
			snprintf(what, sizeof(what), "seed %#llx round %u kind %u",
				 (unsigned long long)sd[s], r, r % 4);
			mverify(fs, &m, what);
		}
		/* The next seed's batches replace committed blocks. */
		assert_int_equal(rfs_fs_sync(fs), 0);
	}
	mfinish(fs, &m);
}

/*
 * Single-block writes inside longer records split them, two records
 * more each: DM_BATCH of them over consecutive records split the leaves
 * holding those in the middle of the batch (the leaves over the range
 * grow), and every edit after a split must find its leaf again.
 * Records of 3 and of 4 blocks in a file tree of height 2, and 4-block
 * records after NB_TALL - 3072 single-block ones in one of height 3.
 */
static void test_batch_splits_leaves(void **state)
{
	(void)state;
	/* Single-block records [0, base), then records of len blocks up to
	 * base + nb. */
	static const unsigned size[][3] = {{0, 3, 3000}, {0, 4, 4000}, {NB_TALL - 3072, 4, 3072}};
	uint64_t sd[4];
	unsigned ns = seeds(sd);
	for (unsigned z = 0; z < 3; z++) {
		unsigned base = size[z][0], len = size[z][1], nb = size[z][2], ne = nb / len;
		unsigned grew = 0;
		rfs_fs *fs = fx_fresh(1ull << 30, 0);
		struct mfile m;
		mopen(fs, &m, "f", 2);
		if (base)
			mspread(fs, &m, 0, base, 1);
		mspread(fs, &m, base, nb, len);
		int h = mheight(fs, m.n);
		if (h < (base ? 3 : 2))
			fail_msg("file tree of height %d", h);
		for (unsigned s = 0; s < ns; s++) {
			uint64_t x = sd[s];
			for (unsigned r = 0; r < 6; r++) {
				struct wreq w[DM_BATCH];
				unsigned kind = r % 3, e0 = 0, stride = ne / DM_BATCH;
				if (kind == 0)
					e0 = (unsigned)(rnd(&x) % (ne - DM_BATCH));
				else if (kind == 2)
					e0 = (unsigned)(rnd(&x) % stride);
				for (unsigned i = 0; i < DM_BATCH; i++) {
					/* 0: consecutive records, descending;
					 * 1: records at random, in random order
					 * (either end or inside); 2: spread,
					 * descending. */
					unsigned e = kind == 0 ? e0 + DM_BATCH - 1 - i
						   : kind == 2 ? e0 + (DM_BATCH - 1 - i) * stride
							       : i * stride +
									 (unsigned)(rnd(&x) % stride);
					unsigned in = kind == 1 ? (unsigned)(rnd(&x) % len)
								: 1 + (unsigned)(rnd(&x) % (len - 1));
					w[i] = (struct wreq){base + e * len + in, 1};
				}
				if (kind == 1)
					for (unsigned i = DM_BATCH - 1; i > 0; i--) {
						unsigned j = (unsigned)(rnd(&x) % (i + 1));
						struct wreq t = w[i];
						w[i] = w[j];
						w[j] = t;
					}
				unsigned lo = base + e0 * len, hi = base + (e0 + DM_BATCH) * len;
				unsigned lv = kind == 0 ? mleaves(fs, m.n, lo, hi) : 0;
				uint64_t before = replaces(fs);
				mbatch(fs, &m, w, DM_BATCH);
				char what[96];
				snprintf(what, sizeof(what), "base %u len %u seed %#llx round %u kind %u",
					 base, len, (unsigned long long)sd[s], r, kind);
				if (replaces(fs) - before < DM_BATCH / 2)
					fail_msg("%s: %llu of %u replaced or split", what,
						 (unsigned long long)(replaces(fs) - before),
						 DM_BATCH);
				if (kind == 0)
					grew += mleaves(fs, m.n, lo, hi) > lv;
				mverify(fs, &m, what);
			}
			assert_int_equal(rfs_fs_sync(fs), 0);
		}
		mfinish(fs, &m);
		/* Most such batches split leaves (one over untouched records
		 * adds 128 records where about 2 leaves held 64). */
		if (grew < ns)
			fail_msg("base %u len %u: leaves split in %u batches of %u", base, len,
				 grew, 2 * ns);
	}
}

/*
 * Overlapping writes in one batch are mapped in the order given: the
 * later one wins, whether it starts before the earlier (Z then
 * [Z-1, Z]: offset order would put it first), after it ([Y, Y+1] then
 * Y+1) or at the same block (X three times).  Then random batches of
 * 1-3 blocks in a small window, most of them overlapping.
 */
static void test_batch_overlap_later_wins(void **state)
{
	(void)state;
	enum { NB = 4000, X = 1001, Y = 2001, Z = 3001 };
	rfs_fs *fs = fx_fresh(512ull << 20, 0);
	struct mfile m;
	mopen(fs, &m, "f", 3);
	/* Records of 2 blocks: X, Z inside one (a split), [Y, Y+1] over
	 * two (the general path), Y+1 a record's head. */
	mspread(fs, &m, 0, NB, 2);
	struct wreq w[DM_BATCH];
	unsigned k = 0, b = NB - 10;
	for (; k < DM_BATCH; b -= 61) {
		if (b + 3 > X && b < X + 3)
			continue;
		if ((b + 3 > Y && b < Y + 4) || (b + 3 > Z && b < Z + 3))
			continue;
		w[k++] = (struct wreq){b, 1};
	}
	w[0] = (struct wreq){X, 1};
	w[1] = (struct wreq){Y, 2};
	w[2] = (struct wreq){Z, 1};
	w[30] = (struct wreq){X, 1};
	w[61] = (struct wreq){X, 1};
	w[62] = (struct wreq){Y + 1, 1};
	w[63] = (struct wreq){Z - 1, 2};
	mbatch(fs, &m, w, DM_BATCH);
	mverify(fs, &m, "fixed batch");
	/* Only the first and last overlap, the rest descending; fewer than
	 * DM_BATCH, mapped by an fsync. */
	for (unsigned i = 0; i < 20; i++)
		w[i] = (struct wreq){3900 - 40 * i, 1};
	w[0] = (struct wreq){10, 2};
	w[19] = (struct wreq){9, 2};
	mbatch(fs, &m, w, 20);
	mforce(fs, &m, 0);
	mverify(fs, &m, "first and last overlap");

	uint64_t sd[4];
	unsigned ns = seeds(sd);
	for (unsigned s = 0; s < ns; s++) {
		uint64_t x = sd[s];
		for (unsigned r = 0; r < 6; r++) {
			unsigned lo = (unsigned)(rnd(&x) % (NB - 200)), n = r % 2 ? DM_BATCH : 50;
			for (unsigned i = 0; i < n; i++)
				w[i] = (struct wreq){lo + (unsigned)(rnd(&x) % 150),
						     1 + (unsigned)(rnd(&x) % 3)};
			mbatch(fs, &m, w, n);
			if (n < DM_BATCH)
				mforce(fs, &m, r);
			char what[64];
			snprintf(what, sizeof(what), "seed %#llx round %u",
				 (unsigned long long)sd[s], r);
			mverify(fs, &m, what);
		}
	}
	mfinish(fs, &m);
}

/* One batch of k writes to m, none overlapping another, in random
 * order: overwrites of mapped blocks, writes into holes, past the end
 * (up to 48 blocks past it: a hole between), and 2 blocks over a
 * mapped block and a hole.  The general path runs between the finger's
 * edits. */
static void mixed_batch(uint64_t *x, const struct mfile *m, struct wreq *w, unsigned k)
{
	static uint8_t used[MB_MAX];
	unsigned eof = (unsigned)(m->size / BS);
	for (unsigned i = 0; i < k; i++) {
		unsigned b, nblk;
		for (;;) {
			unsigned type = (unsigned)(rnd(x) % 4);
			nblk = 1;
			b = eof ? (unsigned)(rnd(x) % eof) : 0;
			if (type == 0 && !m->ver[b])
				continue; /* an overwrite */
			if (type == 1) {
				if (m->ver[b])
					continue; /* into a hole */
				nblk = 1 + (b + 1 < eof && !m->ver[b + 1]);
			}
			if (type == 2) {
				b = eof + (unsigned)(rnd(x) % 48); /* past the end */
				nblk = 1 + (unsigned)(rnd(x) % 2);
			}
			if (type == 3) {
				if (!m->ver[b] || b + 1 >= eof || m->ver[b + 1])
					continue; /* half mapped, half hole */
				nblk = 2;
			}
			if (!used[b] && !used[b + nblk - 1])
				break;
		}
		assert_true(b + nblk <= MB_MAX);
		for (unsigned j = 0; j < nblk; j++)
			used[b + j] = 1;
		w[i] = (struct wreq){b, nblk};
	}
	for (unsigned i = 0; i < k; i++)
		for (unsigned j = 0; j < w[i].nblk; j++)
			used[w[i].b + j] = 0;
	for (unsigned i = k - 1; i > 0; i--) {
		unsigned j = (unsigned)(rnd(x) % (i + 1));
		struct wreq t = w[i];
		w[i] = w[j];
		w[j] = t;
	}
}

/*
 * Batches mixing overwrites, writes into holes, writes past the end and
 * writes half over a hole, in random order: on a sparse file (a record
 * every third block, then fallocated blocks, and more past the end),
 * and on a file of 4 blocks (an inline map that becomes a tree in the
 * middle of the batch).  Contents and size.
 */
static void test_batch_holes_and_eof(void **state)
{
	(void)state;
	uint64_t sd[4];
	unsigned ns = seeds(sd);
	for (unsigned s = 0; s < ns; s++) {
		uint64_t x = sd[s];
		rfs_fs *fs = fx_fresh(512ull << 20, 0);
		struct mfile m, g;
		mopen(fs, &m, "f", 4);
		mopen(fs, &g, "g", 5);
		for (unsigned i = 0; i < 1000; i++)
			mwrite(fs, &m, i * 37 % 1000 * 3, 1);
		for (unsigned i = 0; i < 4; i++)
			mwrite(fs, &g, i * 3, 1);
		rfs_fs_settle(fs);
		/* Unwritten (fallocated) records, inside the size and past
		 * it: the writes into them split them. */
		assert_int_equal(rfs_fs_fallocate(fs, m.n, 0, 3000ull * BS, 600ull * BS), 0);
		m.size = 3600ull * BS;
		assert_int_equal(rfs_fs_fallocate(fs, m.n, FALLOC_FL_KEEP_SIZE, 3610ull * BS,
						  90ull * BS),
				 0);
		struct rfs_irec rec;
		fx_rec(fs, g.n, &rec);
		assert_int_equal(rec.i.subtree, 0); /* g's map: inline */
		for (unsigned r = 0; r < 10; r++) {
			struct mfile *f = r < 2 ? &g : &m;
			struct wreq w[DM_BATCH];
			unsigned k = r % 2 ? DM_BATCH : 40;
			mixed_batch(&x, f, w, k);
			mbatch(fs, f, w, k);
			if (k < DM_BATCH)
				mforce(fs, f, r / 2);
			char what[64];
			snprintf(what, sizeof(what), "seed %#llx round %u", (unsigned long long)sd[s],
				 r);
			mverify(fs, f, what);
			if (r == 0)
				(void)mtree(fs, g.n); /* a tree now */
			if (r < 2)
				mverify(fs, &m, what);
		}
		fs = fx_reopen(fs, 0);
		mfind(fs, &m);
		mfind(fs, &g);
		mverify(fs, &m, "reopened");
		mverify(fs, &g, "reopened");
		mfree(&m);
		mfree(&g);
		assert_int_equal(rfs_fs_close(fs), 0);
		assert_int_equal(fx_fsck(), 0);
	}
}

/*
 * The general path between the finger's edits: 16-block writes over
 * single-block records (each punches 16 records and puts one) empty
 * the leaves that held them, which merge with a neighbour or go,
 * between single-block replaces before and after them in the same
 * batch.  A finger kept over those puts would edit a leaf that is no
 * longer in the tree.
 */
static void test_batch_general_between(void **state)
{
	(void)state;
	enum { NB = 3000 };
	uint64_t sd[4];
	unsigned ns = seeds(sd), shrank = 0;
	rfs_fs *fs = fx_fresh(512ull << 20, 0);
	struct mfile m;
	mopen(fs, &m, "f", 7);
	mspread(fs, &m, 0, NB, 1);
	for (unsigned s = 0; s < ns; s++) {
		uint64_t x = sd[s];
		for (unsigned r = 0; r < 4; r++) {
			struct wreq w[DM_BATCH];
			unsigned lo = 2 + (unsigned)(rnd(&x) % (NB - 260)), k = 0;
			/* Issued in descending order, or at random. */
			for (unsigned j = 55; j-- > 0;)
				w[k++] = (struct wreq){lo + 130 + 2 * j, 1};
			for (unsigned j = 8; j-- > 0;)
				w[k++] = (struct wreq){lo + 16 * j, 16};
			w[k++] = (struct wreq){lo - 2, 1};
			if (r % 2)
				for (unsigned i = DM_BATCH - 1; i > 0; i--) {
					unsigned j = (unsigned)(rnd(&x) % (i + 1));
					struct wreq t = w[i];
					w[i] = w[j];
					w[j] = t;
				}
			unsigned lv = mleaves(fs, m.n, lo - 2, lo + 240);
			uint64_t before = replaces(fs);
			mbatch(fs, &m, w, DM_BATCH);
			char what[64];
			snprintf(what, sizeof(what), "seed %#llx round %u", (unsigned long long)sd[s],
				 r);
			if (replaces(fs) - before < DM_BATCH / 2)
				fail_msg("%s: %llu of %u replaced", what,
					 (unsigned long long)(replaces(fs) - before), DM_BATCH);
			shrank += mleaves(fs, m.n, lo - 2, lo + 240) < lv;
			mverify(fs, &m, what);
		}
	}
	mfinish(fs, &m);
	/* The precondition: leaves went in the middle of some batch. */
	if (shrank == 0)
		fail_msg("no batch merged or emptied a leaf");
}

/*
 * Batches on a file whose tree a clone shares (committed, or cloned in
 * the same transaction): the file reads its new data and the clone its
 * old, then the other way round, then both files' writes in one queue.
 * A tree of height 3: the finger shadows shared nodes at every level.
 */
static void test_batch_on_clone(void **state)
{
	(void)state;
	for (unsigned v = 0; v < 2; v++) {
		rfs_fs *fs = fx_fresh(1ull << 30, 0);
		struct mfile a, b;
		mopen(fs, &a, "a", 6);
		mopen(fs, &b, "b", 6);
		mspread(fs, &a, 0, NB_TALL, 1);
		assert_true(mheight(fs, a.n) >= 3);
		if (v == 0)
			assert_int_equal(rfs_fs_sync(fs), 0);
		assert_int_equal(rfs_fs_clone_file(fs, a.n, b.n), 0);
		memcpy(b.ver, a.ver, MB_MAX * sizeof(*a.ver));
		b.size = a.size;
		if (v == 0)
			assert_int_equal(rfs_fs_sync(fs), 0);
		uint64_t x = 0x2545f4914f6cdd1dull + v;
		for (unsigned r = 0; r < 6; r++) {
			struct wreq w[DM_BATCH], u[DM_BATCH];
			char what[64];
			snprintf(what, sizeof(what), "variant %u round %u", v, r);
			order_batch(&x, r % 4, 0, NB_TALL, w);
			if (r < 4) {
				struct mfile *f = r % 2 ? &b : &a;
				mbatch(fs, f, w, DM_BATCH);
			} else {
				/* Both files' writes interleaved in one queue:
				 * each file's half is mapped in one operation. */
				order_batch(&x, (r + 1) % 4, 0, NB_TALL, u);
				for (unsigned i = 0; i < DM_BATCH / 2; i++) {
					mwrite(fs, &a, w[i].b, 1);
					mwrite(fs, &b, u[i].b, 1);
				}
				assert_int_equal(queued(fs), DM_BATCH);
				rfs_fs_settle(fs);
				assert_int_equal(queued(fs), 0);
			}
			mverify(fs, &a, what);
			mverify(fs, &b, what);
		}
		fs = fx_reopen(fs, 0);
		mfind(fs, &a);
		mfind(fs, &b);
		mverify(fs, &a, "reopened");
		mverify(fs, &b, "reopened");
		mfree(&a);
		mfree(&b);
		assert_int_equal(rfs_fs_close(fs), 0);
		assert_int_equal(fx_fsck(), 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_queue_and_batch, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_claim_reserve, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_index_on_reads, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_close_maps, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_no_delay_when_short, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_queue_full, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_batch_paced, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_batch_paced_crash, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_failure_reaches_fsync, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_batch_order_tall, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_batch_splits_leaves, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_batch_overlap_later_wins, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_batch_holes_and_eof, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_batch_general_between, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_batch_on_clone, fx_setup, fx_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
