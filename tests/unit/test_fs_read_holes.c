/*
 * A READ zeroes exactly what no written extent fills (src/fs/file.c,
 * read_blocks).  The buffer is no longer cleared first (a memset per
 * block read, issue 9), so each gap must be zeroed where it is: holes
 * before, between and after extents, unwritten (preallocated) extents,
 * and the blocks of a range that ends past the last extent.  The FUSE
 * daemon reuses one buffer per thread, so a miss would hand out the
 * bytes of an earlier READ: the test reads into a buffer full of 0xee.
 * Also: a READ that ends inside an extent and one that starts inside
 * one (the extent walk stops at the extent that reaches the end of the
 * range).
 */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "common/fsfix.h"
#include "reflinkfs/fs.h"

#define BS 4096

static const struct rfs_ctx g_ctx = {.uid = 0, .gid = 0, .pid = 1, .umask = 022};

/* Blocks of the file: 0 and 1 of every 4 data ('A' + block % 26), 2 a
 * hole, 3 unwritten (preallocated); then `tail` blocks past the last
 * extent (the size extended by truncate). */
enum { DATA, HOLE, UNWRITTEN };
static int kind_of(int i, int nb, int tail)
{
	if (i >= nb - tail)
		return HOLE;
	return i % 4 < 2 ? DATA : i % 4 == 2 ? HOLE : UNWRITTEN;
}

static int want_of(int i, int nb, int tail)
{
	return kind_of(i, nb, tail) == DATA ? 'A' + i % 26 : 0;
}

static void check_range(rfs_fs *fs, rfs_nodeid f, int nbf, int tail, int b0, int nb)
{
	uint8_t *buf = malloc((size_t)nb * BS);
	assert_non_null(buf);
	memset(buf, 0xee, (size_t)nb * BS);
	assert_int_equal(rfs_fs_read(fs, f, buf, (size_t)nb * BS, (uint64_t)b0 * BS),
			 nb * BS);
	for (int i = 0; i < nb; i++)
		for (int k = 0; k < BS; k++)
			if (buf[i * BS + k] != want_of(b0 + i, nbf, tail))
				fail_msg("read of blocks %d+%d: block %d byte %d is %d, expected %d",
					 b0, nb, b0 + i, k, buf[i * BS + k],
					 want_of(b0 + i, nbf, tail));
	free(buf);
}

/* A file of nbf blocks in the pattern above, every range of up to
 * maxlen blocks read into a dirty buffer. */
static void run(int nbf, int tail, int maxlen)
{
	rfs_fs *fs = fx_fresh(64u << 20, 0);
	rfs_nodeid f;
	struct stat st;
	assert_int_equal(rfs_fs_create(fs, &g_ctx, RFS_ROOT_NODE, "f", 0644, &f, &st), 0);
	uint8_t blk[BS];
	for (int i = 0; i < nbf - tail; i++) {
		if (kind_of(i, nbf, tail) == DATA) {
			memset(blk, want_of(i, nbf, tail), BS);
			assert_int_equal(rfs_fs_write(fs, f, blk, BS, (uint64_t)i * BS), BS);
		} else if (kind_of(i, nbf, tail) == UNWRITTEN) {
			assert_int_equal(rfs_fs_fallocate(fs, f, FALLOC_FL_KEEP_SIZE,
							  (uint64_t)i * BS, BS),
					 0);
		}
	}
	st.st_size = (off_t)nbf * BS;
	assert_int_equal(rfs_fs_setattr(fs, f, &st, RFS_SET_SIZE, NULL), 0);
	for (int b0 = 0; b0 < nbf; b0++)
		for (int nb = 1; nb <= maxlen && b0 + nb <= nbf; nb++)
			check_range(fs, f, nbf, tail, b0, nb);
	rfs_fs_forget(fs, f, 1);
	assert_int_equal(rfs_fs_close(fx_reopen(fs, 0)), 0);
}

/* Few extents: the map inline in the record. */
static void test_small_file(void **state)
{
	(void)state;
	run(11, 3, 11);
}

/* Hundreds of extents: the map in a tree of several leaves, so ranges
 * start and end on both sides of leaf boundaries. */
static void test_extent_tree(void **state)
{
	(void)state;
	run(1200, 5, 6);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_small_file, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_extent_tree, fx_setup, fx_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
