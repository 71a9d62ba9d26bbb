/*
 * rfs_fs_access and rfs_fs_may_delete (src/fs/access.c): the checks the
 * daemon makes for ioctls that bypass the kernel's default_permissions
 * (snapshot, snapshot delete), against what Linux's generic_permission
 * and may_delete answer: owner, group (also supplementary), other, root,
 * access ACLs with named users and groups and a mask, the sticky bit;
 * and rfs_fs_writable (open for writing) in read-only snapshots.
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

static const struct rfs_ctx g_root = {.uid = 0, .gid = 0, .pid = 1, .umask = 022};

static rfs_fs *fresh(void)
{
	return fx_fresh(64u << 20, 0);
}

/* A directory name in the root with this owner, group and mode. */
static rfs_nodeid dir_as(rfs_fs *fs, const char *name, uint32_t uid, uint32_t gid, mode_t mode)
{
	rfs_nodeid n;
	struct stat st, in;
	assert_int_equal(rfs_fs_mkdir(fs, &g_root, RFS_ROOT_NODE, name, 0755, &n, &st), 0);
	memset(&in, 0, sizeof(in));
	in.st_uid = uid;
	in.st_gid = gid;
	in.st_mode = S_IFDIR | mode;
	assert_int_equal(rfs_fs_setattr(fs, n, &in, RFS_SET_UID | RFS_SET_GID, NULL), 0);
	assert_int_equal(rfs_fs_setattr(fs, n, &in, RFS_SET_MODE, NULL), 0);
	return n;
}

static struct rfs_ctx user(uint32_t uid, uint32_t gid, const uint32_t *groups, uint32_t n)
{
	return (struct rfs_ctx){.uid = uid, .gid = gid, .pid = 1, .groups = groups, .ngroups = n};
}

static void test_mode_bits(void **state)
{
	(void)state;
	rfs_fs *fs = fresh();
	rfs_nodeid d = dir_as(fs, "d", 1000, 100, 0750);
	uint32_t g100[] = {100};
	struct rfs_ctx owner = user(1000, 1000, NULL, 0), member = user(2000, 2000, g100, 1),
		       primary = user(2001, 100, NULL, 0), other = user(3000, 3000, NULL, 0);
	assert_int_equal(rfs_fs_access(fs, &owner, d, 7), 0);
	assert_int_equal(rfs_fs_access(fs, &member, d, 5), 0);
	assert_int_equal(rfs_fs_access(fs, &primary, d, 5), 0);
	assert_int_equal(rfs_fs_access(fs, &member, d, 2), -EACCES);
	assert_int_equal(rfs_fs_access(fs, &other, d, 4), -EACCES);
	assert_int_equal(rfs_fs_access(fs, &other, d, 1), -EACCES);
	assert_int_equal(rfs_fs_access(fs, &g_root, d, 7), 0);
	/* the owner class decides alone: an owner without bits is refused
	 * even where others may */
	struct stat in = {.st_mode = S_IFDIR | 0077};
	assert_int_equal(rfs_fs_setattr(fs, d, &in, RFS_SET_MODE, NULL), 0);
	assert_int_equal(rfs_fs_access(fs, &owner, d, 4), -EACCES);
	assert_int_equal(rfs_fs_access(fs, &other, d, 7), 0);
	/* root may not execute a file without execute bits */
	rfs_nodeid f;
	struct stat st;
	assert_int_equal(rfs_fs_create(fs, &g_root, RFS_ROOT_NODE, "f", 0644, &f, &st), 0);
	assert_int_equal(rfs_fs_access(fs, &g_root, f, 1), -EACCES);
	assert_int_equal(rfs_fs_access(fs, &g_root, f, 6), 0);
	rfs_fs_forget(fs, f, 1);
	rfs_fs_forget(fs, d, 1);
	assert_int_equal(rfs_fs_close(fs), 0);
}

/* An ACL xattr value: entries {tag, perm, id}. */
static size_t acl(uint8_t *buf, const uint16_t (*e)[2], const uint32_t *ids, size_t n)
{
	uint32_t ver = 2;
	memcpy(buf, &ver, 4);
	for (size_t i = 0; i < n; i++) {
		memcpy(buf + 4 + 8 * i, &e[i][0], 2);
		memcpy(buf + 6 + 8 * i, &e[i][1], 2);
		memcpy(buf + 8 + 8 * i, &ids[i], 4);
	}
	return 4 + 8 * n;
}

static void test_acl(void **state)
{
	(void)state;
	rfs_fs *fs = fresh();
	rfs_nodeid d = dir_as(fs, "d", 1000, 100, 0700);
	/* user::rwx user:2000:rwx group::r-x group:300:-wx mask::rwx other::--- */
	const uint16_t e[][2] = {{0x01, 7}, {0x02, 7}, {0x04, 5}, {0x08, 3}, {0x10, 7}, {0x20, 0}};
	const uint32_t ids[] = {~0u, 2000, ~0u, 300, ~0u, ~0u};
	uint8_t val[64];
	size_t len = acl(val, e, ids, 6);
	assert_int_equal(rfs_fs_setxattr(fs, &g_root, d, "system.posix_acl_access", val, len, 0), 0);
	uint32_t g100[] = {100}, g300[] = {300}, both[] = {100, 300};
	struct rfs_ctx named = user(2000, 2000, NULL, 0), m100 = user(2500, 2500, g100, 1),
		       m300 = user(2600, 2600, g300, 1), mboth = user(2700, 2700, both, 2),
		       other = user(3000, 3000, NULL, 0);
	assert_int_equal(rfs_fs_access(fs, &named, d, 7), 0);
	assert_int_equal(rfs_fs_access(fs, &m100, d, 5), 0);
	assert_int_equal(rfs_fs_access(fs, &m100, d, 2), -EACCES);
	assert_int_equal(rfs_fs_access(fs, &m300, d, 3), 0);
	assert_int_equal(rfs_fs_access(fs, &m300, d, 4), -EACCES);
	/* any one matching group entry that grants all of it is enough */
	assert_int_equal(rfs_fs_access(fs, &mboth, d, 3), 0);
	assert_int_equal(rfs_fs_access(fs, &mboth, d, 7), -EACCES);
	assert_int_equal(rfs_fs_access(fs, &other, d, 1), -EACCES);
	/* the mask (the mode's group bits) limits named entries */
	struct stat in = {.st_mode = S_IFDIR | 0750};
	assert_int_equal(rfs_fs_setattr(fs, d, &in, RFS_SET_MODE, NULL), 0);
	assert_int_equal(rfs_fs_access(fs, &named, d, 5), 0);
	assert_int_equal(rfs_fs_access(fs, &named, d, 2), -EACCES);
	assert_int_equal(rfs_fs_access(fs, &m300, d, 1), 0);
	assert_int_equal(rfs_fs_access(fs, &m300, d, 2), -EACCES);
	rfs_fs_forget(fs, d, 1);
	assert_int_equal(rfs_fs_close(fs), 0);
}

static void test_may_delete(void **state)
{
	(void)state;
	rfs_fs *fs = fresh();
	rfs_nodeid d = dir_as(fs, "tmp", 0, 0, 01777), c, e;
	struct stat st, in;
	assert_int_equal(rfs_fs_mkdir(fs, &g_root, d, "c", 0755, &c, &st), 0);
	in.st_uid = 1000;
	in.st_gid = 1000;
	assert_int_equal(rfs_fs_setattr(fs, c, &in, RFS_SET_UID | RFS_SET_GID, NULL), 0);
	struct rfs_ctx owner = user(1000, 1000, NULL, 0), other = user(2000, 2000, NULL, 0);
	assert_int_equal(rfs_fs_may_delete(fs, &owner, d, c), 0);
	assert_int_equal(rfs_fs_may_delete(fs, &other, d, c), -EPERM);
	assert_int_equal(rfs_fs_may_delete(fs, &g_root, d, c), 0);
	/* without the sticky bit, write permission on the directory is all */
	in.st_mode = S_IFDIR | 0777;
	assert_int_equal(rfs_fs_setattr(fs, d, &in, RFS_SET_MODE, NULL), 0);
	assert_int_equal(rfs_fs_may_delete(fs, &other, d, c), 0);
	in.st_mode = S_IFDIR | 0755;
	assert_int_equal(rfs_fs_setattr(fs, d, &in, RFS_SET_MODE, NULL), 0);
	assert_int_equal(rfs_fs_may_delete(fs, &owner, d, c), -EACCES);
	assert_int_equal(rfs_fs_mkdir(fs, &g_root, c, "e", 0755, &e, &st), 0);
	assert_int_equal(rfs_fs_may_delete(fs, &owner, c, e), 0);
	rfs_fs_forget(fs, e, 1);
	rfs_fs_forget(fs, c, 1);
	rfs_fs_forget(fs, d, 1);
	assert_int_equal(rfs_fs_close(fs), 0);
}

static void test_writable(void **state)
{
	(void)state;
	rfs_fs *fs = fresh();
	rfs_nodeid a, f, ro, rw, rof;
	struct stat st;
	assert_int_equal(rfs_fs_mkdir(fs, &g_root, RFS_ROOT_NODE, "a", 0755, &a, &st), 0);
	assert_int_equal(rfs_fs_create(fs, &g_root, a, "f", 0644, &f, &st), 0);
	assert_int_equal(rfs_fs_snapshot(fs, a, RFS_ROOT_NODE, "ro", RFS_SNAP_RDONLY, &ro, &st), 0);
	assert_int_equal(rfs_fs_snapshot(fs, a, RFS_ROOT_NODE, "rw", 0, &rw, &st), 0);
	assert_int_equal(rfs_fs_lookup(fs, ro, "f", &rof, &st), 0);
	assert_int_equal(rfs_fs_writable(fs, a), 0);
	assert_int_equal(rfs_fs_writable(fs, f), 0);
	assert_int_equal(rfs_fs_writable(fs, rw), 0);
	assert_int_equal(rfs_fs_writable(fs, ro), -EROFS);
	assert_int_equal(rfs_fs_writable(fs, rof), -EROFS);
	assert_int_equal(rfs_fs_writable(fs, 12345), -ESTALE);
	rfs_fs_forget(fs, rof, 1);
	rfs_fs_forget(fs, ro, 1);
	rfs_fs_forget(fs, rw, 1);
	rfs_fs_forget(fs, f, 1);
	rfs_fs_forget(fs, a, 1);
	assert_int_equal(rfs_fs_close(fs), 0);
	assert_int_equal(rfs_fs_open(g_pool, RFS_FS_RDONLY, &fs), 0);
	assert_int_equal(rfs_fs_writable(fs, RFS_ROOT_NODE), -EROFS);
	assert_int_equal(rfs_fs_close(fs), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_mode_bits, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_acl, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_may_delete, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_writable, fx_setup, fx_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
