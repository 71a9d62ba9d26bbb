/*
 * rfs_fs_kill_priv: which privileges a change of a file takes away (as
 * Linux's file_remove_privs), that looking does not change anything, and
 * that other file types and unprivileged files are left alone.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fsfix.h"
#include "reflinkfs/fs.h"
#include "reflinkfs/log.h"

static const struct rfs_ctx g_ctx = {.uid = 1000, .gid = 1000, .pid = 1};
/* struct vfs_cap_data, revision 2: effective, permitted cap_net_raw */
static const uint8_t g_cap[20] = {1, 0, 0, 2, 0, 0x20};

static rfs_fs *fresh(void)
{
	return fx_fresh(64 << 20, 0);
}

/* A regular file name of this mode, with the capability xattr if cap. */
static rfs_nodeid mk(rfs_fs *fs, const char *name, mode_t mode, bool cap)
{
	rfs_nodeid n;
	struct stat st, in = {.st_mode = mode};
	assert_int_equal(rfs_fs_create(fs, &g_ctx, RFS_ROOT_NODE, name, 0644, &n, &st), 0);
	assert_int_equal(rfs_fs_setattr(fs, n, &in, RFS_SET_MODE, NULL), 0);
	assert_int_equal(rfs_fs_write(fs, n, "data", 4, 0), 4);
	if (cap)
		assert_int_equal(rfs_fs_setxattr(fs, NULL, n, "security.capability", g_cap,
						 sizeof(g_cap), 0), 0);
	return n;
}

static mode_t mode_of(rfs_fs *fs, rfs_nodeid n)
{
	struct stat st;
	assert_int_equal(rfs_fs_getattr(fs, n, &st), 0);
	return st.st_mode & 07777;
}

static bool has_cap(rfs_fs *fs, rfs_nodeid n)
{
	return rfs_fs_getxattr(fs, n, "security.capability", NULL, 0) >= 0;
}

static void test_clears(void **state)
{
	(void)state;
	rfs_fs *fs = fresh();
	bool found;
	rfs_nodeid su = mk(fs, "su", 04755, false);
	rfs_nodeid sgx = mk(fs, "sgx", 02755, false);
	rfs_nodeid both = mk(fs, "both", 06775, true);
	rfs_nodeid cap = mk(fs, "cap", 0755, true);

	/* looking changes nothing */
	assert_int_equal(rfs_fs_kill_priv(fs, both, false, &found), 0);
	assert_true(found);
	assert_int_equal(mode_of(fs, both), 06775);
	assert_true(has_cap(fs, both));

	assert_int_equal(rfs_fs_kill_priv(fs, su, true, &found), 0);
	assert_true(found);
	assert_int_equal(mode_of(fs, su), 0755);
	assert_int_equal(rfs_fs_kill_priv(fs, sgx, true, &found), 0);
	assert_true(found);
	assert_int_equal(mode_of(fs, sgx), 0755);
	assert_int_equal(rfs_fs_kill_priv(fs, both, true, &found), 0);
	assert_true(found);
	assert_int_equal(mode_of(fs, both), 0775);
	assert_false(has_cap(fs, both));
	assert_int_equal(rfs_fs_kill_priv(fs, cap, true, &found), 0);
	assert_true(found);
	assert_int_equal(mode_of(fs, cap), 0755);
	assert_false(has_cap(fs, cap));

	/* done: nothing left to find */
	assert_int_equal(rfs_fs_kill_priv(fs, both, true, &found), 0);
	assert_false(found);
	char buf[8];
	assert_int_equal(rfs_fs_read(fs, both, buf, sizeof(buf), 0), 4);
	assert_memory_equal(buf, "data", 4);
	assert_int_equal(rfs_fs_close(fs), 0);
}

static void test_leaves_alone(void **state)
{
	(void)state;
	rfs_fs *fs = fresh();
	bool found;
	/* set-group-ID without group execute marks mandatory locking */
	rfs_nodeid sg = mk(fs, "sg", 02644, false);
	rfs_nodeid plain = mk(fs, "plain", 0777, false);
	assert_int_equal(rfs_fs_kill_priv(fs, sg, true, &found), 0);
	assert_false(found);
	assert_int_equal(mode_of(fs, sg), 02644);
	assert_int_equal(rfs_fs_kill_priv(fs, plain, true, &found), 0);
	assert_false(found);
	assert_int_equal(mode_of(fs, plain), 0777);

	/* a set-gid directory keeps its bit (new entries inherit the group) */
	rfs_nodeid d;
	struct stat st;
	assert_int_equal(rfs_fs_mkdir(fs, &g_ctx, RFS_ROOT_NODE, "d", 02775, &d, &st), 0);
	st.st_mode = 02775;
	assert_int_equal(rfs_fs_setattr(fs, d, &st, RFS_SET_MODE, NULL), 0);
	assert_int_equal(rfs_fs_kill_priv(fs, d, true, &found), 0);
	assert_false(found);
	assert_int_equal(mode_of(fs, d), 02775);

	assert_int_equal(rfs_fs_kill_priv(fs, 999999, true, &found), -ESTALE);
	assert_int_equal(rfs_fs_close(fs), 0);
}

int main(void)
{
	rfs_log_set_level(RFS_LOG_ERR);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_clears),
		cmocka_unit_test(test_leaves_alone),
	};
	return cmocka_run_group_tests(tests, fx_setup, fx_teardown);
}
