/*
 * Delayed mapping of small whole-block writes (src/fs/file_delay.c): when
 * a write is queued rather than mapped, when the queue is mapped, and
 * what a failure to map an answered write does.  What readers see of
 * queued writes is tests/unit/test_fs_write_seen.c's subject.
 *
 * White-box: the queue's counters (fs->dm_count, node dm_count) say
 * whether a write was queued, which no API shows.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

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

static uint32_t queued_on(rfs_fs *fs, rfs_nodeid id)
{
	return atomic_load(&node_get(fs, id)->dm_count);
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

	/* A READ of a maps a's writes only. */
	wr(fs, a, 4, 0, 1);
	wr(fs, b, 5, 5, 1);
	check(fs, a, 4, 0);
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

	/* DM_BATCH writes fill the queue: the last one maps them all. */
	for (unsigned i = 0; i < DM_BATCH - 1; i++)
		wr(fs, i % 2 ? a : b, 7, 1000 + i, 1);
	assert_int_equal(queued(fs), DM_BATCH - 1);
	wr(fs, a, 7, 1000 + DM_BATCH - 1, 1);
	assert_int_equal(queued(fs), 0);
	for (unsigned i = 0; i < DM_BATCH; i++)
		check(fs, i % 2 || i == DM_BATCH - 1 ? a : b, 7, 1000 + i);
	/* The same block twice in one batch: the later write wins. */
	wr(fs, a, 8, 2000, 1);
	wr(fs, a, 9, 2000, 1);
	assert_int_equal(queued(fs), 2);
	check(fs, a, 9, 2000);
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

/* Nothing is queued while the pool is short of room for a batch's
 * metadata (the batch's operation must not fail for space after its
 * writes were answered), nor on a read-only fs's queue-less path. */
static void test_no_delay_when_short(void **state)
{
	(void)state;
	rfs_fs *fs = fx_fresh(20ull << 20, 0);
	rfs_nodeid a = fx_create(fs, &g_ctx, RFS_ROOT_NODE, "a");
	struct statvfs sv;
	assert_int_equal(rfs_fs_statfs(fs, &sv), 0);
	uint64_t need = dm_room(op_meta(op_depth(fs, node_get(fs, a)), 4));
	assert_true(sv.f_bfree < need); /* the precondition */
	wr(fs, a, 1, 0, 1);
	assert_int_equal(queued(fs), 0);
	check(fs, a, 1, 0);
	assert_int_equal(rfs_fs_close(fs), 0);
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_queue_and_batch, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_close_maps, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_no_delay_when_short, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_failure_reaches_fsync, fx_setup, fx_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
