/*
 * Changes to an inode whose last name went while it was looked up but
 * not open (through the fs API; FUSE opens before it writes).  Two cases,
 * as docs/ARCHITECTURE.md ("Deleting: detach now, free in the
 * background", the link table) says:
 *
 *  - unlinked while not open: the inode is gone at once (its record and
 *    data freed), so every change through a node still looked up -- write
 *    (small, whole blocks: the claimed path, and several chunks),
 *    truncate, chmod, fallocate, punch, setxattr, a clone onto it or from
 *    it -- fails with -ESTALE before anything is written: no block is
 *    taken, and reads say -ESTALE too, never bytes accepted and then lost;
 *  - unlinked while open, then closed while still looked up: an orphan
 *    of the link table (nlink 0) that lives until its last lookup goes,
 *    so the same changes succeed and read back, and forgetting it frees
 *    everything (fsck clean).
 * The same for the last name of a hard-linked inode (link table).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include "common/fsfix.h"
#include "reflinkfs/fs.h"

#define BS RFS_BLOCK_SIZE

static const struct rfs_ctx g_ctx = {.pid = 1, .umask = 022};

static uint64_t free_blocks(rfs_fs *fs)
{
	struct statvfs sv;
	assert_int_equal(rfs_fs_statfs(fs, &sv), 0);
	return sv.f_bfree;
}

/* Every change of the kinds above on node n (other: a live file).
 * Returns how many of them succeeded; with gone, each must fail with
 * -ESTALE. */
static int change_all(rfs_fs *fs, rfs_nodeid n, rfs_nodeid other, bool gone)
{
	static uint8_t buf[300 * BS]; /* more than one 1 MiB chunk */
	memset(buf, 'w', sizeof(buf));
	struct stat st = {0};
	long r[10];
	int k = 0;
	r[k++] = rfs_fs_write(fs, n, buf, 10, 0);
	r[k++] = rfs_fs_write(fs, n, buf, 4 * BS, 4 * BS);
	r[k++] = rfs_fs_write(fs, n, buf, sizeof(buf), 8 * BS);
	st.st_size = 3 * BS;
	r[k++] = rfs_fs_setattr(fs, n, &st, RFS_SET_SIZE, NULL);
	st.st_mode = 0600;
	r[k++] = rfs_fs_setattr(fs, n, &st, RFS_SET_MODE, NULL);
	r[k++] = rfs_fs_fallocate(fs, n, 0, 0, 6 * BS);
	r[k++] = rfs_fs_fallocate(fs, n, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, BS, BS);
	r[k++] = rfs_fs_setxattr(fs, &g_ctx, n, "user.x", "v", 1, 0);
	r[k++] = rfs_fs_clone_range(fs, other, 0, n, 4 * BS, BS);
	r[k++] = rfs_fs_clone_file(fs, other, n);
	int ok = 0;
	for (int i = 0; i < k; i++) {
		if (gone && r[i] != -ESTALE)
			fail_msg("change %d of an unlinked, unopened inode: %ld, not -ESTALE", i, r[i]);
		ok += r[i] >= 0;
	}
	if (gone) {
		/* Nor may it be the source of a clone. */
		assert_int_equal(rfs_fs_clone_range(fs, n, 0, other, 0, BS), -ESTALE);
		assert_int_equal(rfs_fs_clone_file(fs, n, other), -ESTALE);
	}
	return ok;
}

/* f: 100 bytes (inline) or 8 blocks; the other file: 2 blocks of 'o'. */
static void files(rfs_fs *fs, bool big, rfs_nodeid *f, rfs_nodeid *o)
{
	static uint8_t buf[8 * BS];
	memset(buf, 'a', sizeof(buf));
	*f = fx_create(fs, &g_ctx, RFS_ROOT_NODE, "f");
	*o = fx_create(fs, &g_ctx, RFS_ROOT_NODE, "o");
	size_t n = big ? sizeof(buf) : 100;
	assert_int_equal(rfs_fs_write(fs, *f, buf, n, 0), (ssize_t)n);
	memset(buf, 'o', 2 * BS);
	assert_int_equal(rfs_fs_write(fs, *o, buf, 2 * BS, 0), 2 * BS);
	assert_int_equal(rfs_fs_read(fs, *f, buf, 1, 0), 1); /* READ's copies made */
}

static void check_gone(rfs_fs *fs, rfs_nodeid f, rfs_nodeid o)
{
	uint64_t before = free_blocks(fs);
	assert_int_equal(change_all(fs, f, o, true), 0);
	assert_int_equal(free_blocks(fs), before);
	char c;
	struct stat st;
	assert_int_equal(rfs_fs_read(fs, f, &c, 1, 0), -ESTALE);
	assert_int_equal(rfs_fs_getattr(fs, f, &st), -ESTALE);
	/* The other file is untouched. */
	uint8_t buf[2 * BS];
	assert_int_equal(rfs_fs_read(fs, o, buf, sizeof(buf), 0), 2 * BS);
	for (size_t i = 0; i < sizeof(buf); i += 512)
		assert_int_equal(buf[i], 'o');
}

static void unlinked_not_open(void **state)
{
	(void)state;
	for (int big = 0; big < 2; big++) {
		rfs_fs *fs = fx_fresh(256ull << 20, 0);
		rfs_nodeid f, o;
		files(fs, big, &f, &o);
		assert_int_equal(rfs_fs_unlink(fs, RFS_ROOT_NODE, "f"), 0);
		check_gone(fs, f, o);
		rfs_fs_forget(fs, f, 1);
		rfs_fs_forget(fs, o, 1);
		assert_int_equal(rfs_fs_close(fx_reopen(fs, 0)), 0);
	}
}

/* The last of two names of a hard-linked inode (link table). */
static void last_link_not_open(void **state)
{
	(void)state;
	rfs_fs *fs = fx_fresh(256ull << 20, 0);
	rfs_nodeid f, o;
	struct stat st;
	files(fs, true, &f, &o);
	assert_int_equal(rfs_fs_link(fs, f, RFS_ROOT_NODE, "g", &st), 0);
	rfs_fs_forget(fs, f, 1);
	assert_int_equal(rfs_fs_unlink(fs, RFS_ROOT_NODE, "f"), 0);
	assert_int_equal(rfs_fs_unlink(fs, RFS_ROOT_NODE, "g"), 0);
	check_gone(fs, f, o);
	rfs_fs_forget(fs, f, 1);
	rfs_fs_forget(fs, o, 1);
	assert_int_equal(rfs_fs_close(fx_reopen(fs, 0)), 0);
}

/* Closed after the unlink, still looked up: an orphan that lives on, so
 * what is written to it reads back, and its space returns at FORGET. */
static void orphan_closed_looked_up(void **state)
{
	(void)state;
	rfs_fs *fs = fx_fresh(256ull << 20, 0);
	uint64_t empty = free_blocks(fs);
	rfs_nodeid f, o;
	files(fs, true, &f, &o);
	assert_int_equal(rfs_fs_open_node(fs, f), 0);
	assert_int_equal(rfs_fs_unlink(fs, RFS_ROOT_NODE, "f"), 0);
	rfs_fs_release(fs, f);
	assert_int_equal(change_all(fs, f, o, false), 10);
	/* The last change cloned o onto it: o's bytes, o's size. */
	struct stat st;
	assert_int_equal(rfs_fs_getattr(fs, f, &st), 0);
	assert_int_equal(st.st_nlink, 0);
	assert_int_equal(st.st_size, 2 * BS);
	uint8_t buf[2 * BS];
	assert_int_equal(rfs_fs_read(fs, f, buf, sizeof(buf), 0), 2 * BS);
	for (size_t i = 0; i < sizeof(buf); i += 512)
		assert_int_equal(buf[i], 'o');
	uint8_t w[BS];
	memset(w, 'z', BS);
	assert_int_equal(rfs_fs_write(fs, f, w, BS, BS), BS);
	assert_int_equal(rfs_fs_read(fs, f, buf, sizeof(buf), 0), 2 * BS);
	assert_int_equal(buf[0], 'o');
	assert_int_equal(buf[BS], 'z');
	rfs_fs_forget(fs, f, 1);
	assert_int_equal(rfs_fs_unlink(fs, RFS_ROOT_NODE, "o"), 0);
	rfs_fs_forget(fs, o, 1);
	assert_int_equal(rfs_fs_reclaim(fs, 0), 0);
	assert_int_equal(rfs_fs_sync(fs), 0);
	assert_int_equal(free_blocks(fs), empty);
	assert_int_equal(rfs_fs_close(fx_reopen(fs, 0)), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(unlinked_not_open, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(last_link_not_open, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(orphan_closed_looked_up, fx_setup, fx_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
