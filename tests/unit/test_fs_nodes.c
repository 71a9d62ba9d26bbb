/*
 * The node table when a node's place goes stale: a rename whose node
 * update fails (out of memory; rfs_fs_fail_rename_nodes simulates it)
 * leaves the node at its old place, where another inode may live now.
 * Calls on the node must then fail with -ESTALE, never read or change
 * the other inode, until a lookup of the new name moves the node.
 * Likewise a directory removed while a node of it is still held (another
 * thread looked it up) takes no new entry, by any call.
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

static const struct rfs_ctx g_ctx = {.uid = 1000, .gid = 1000, .pid = 1, .umask = 022};

static rfs_fs *fresh(void)
{
	return fx_fresh(64 << 20, 0);
}

static rfs_nodeid mkfile(rfs_fs *fs, rfs_nodeid dir, const char *name, const char *data)
{
	rfs_nodeid n;
	struct stat st;
	assert_int_equal(rfs_fs_create(fs, &g_ctx, dir, name, 0644, &n, &st), 0);
	assert_int_equal(rfs_fs_write(fs, n, data, strlen(data), 0), (ssize_t)strlen(data));
	return n;
}

/* a/x and b/y swap places; the nodes keep the old ones. */
static void test_exchange_stale_files(void **state)
{
	(void)state;
	rfs_fs *fs = fresh();
	rfs_nodeid a, b, x, y, n;
	struct stat st, sx, sy;
	char buf[16];
	assert_int_equal(rfs_fs_mkdir(fs, &g_ctx, RFS_ROOT_NODE, "a", 0755, &a, &st), 0);
	assert_int_equal(rfs_fs_mkdir(fs, &g_ctx, RFS_ROOT_NODE, "b", 0755, &b, &st), 0);
	x = mkfile(fs, a, "x", "xxxx");
	y = mkfile(fs, b, "y", "yyyyyy");
	assert_int_equal(rfs_fs_getattr(fs, x, &sx), 0);
	assert_int_equal(rfs_fs_getattr(fs, y, &sy), 0);

	rfs_log_set_level(RFS_LOG_ERR - 1);
	rfs_fs_fail_rename_nodes(fs, 1);
	assert_int_equal(rfs_fs_rename(fs, &g_ctx, a, "x", b, "y", RFS_RENAME_EXCHANGE), 0);
	rfs_fs_fail_rename_nodes(fs, 0);
	rfs_log_set_level(RFS_LOG_INFO);

	/* x's node still says a/x, where y lives now: no attributes, data
	 * or changes of y through x's node. */
	assert_int_equal(rfs_fs_getattr(fs, x, &st), -ESTALE);
	assert_int_equal(rfs_fs_read(fs, x, buf, sizeof(buf), 0), -ESTALE);
	assert_int_equal(rfs_fs_write(fs, x, "ZZ", 2, 0), -ESTALE);
	assert_int_equal(rfs_fs_setxattr(fs, &g_ctx, x, "user.k", "v", 1, 0), -ESTALE);
	assert_int_equal(rfs_fs_getattr(fs, y, &st), -ESTALE);

	/* Looking the new names up moves the nodes back in place. */
	assert_int_equal(rfs_fs_lookup(fs, b, "y", &n, &st), 0);
	assert_int_equal(n, x);
	assert_int_equal(st.st_ino, sx.st_ino);
	rfs_fs_forget(fs, n, 1);
	assert_int_equal(rfs_fs_lookup(fs, a, "x", &n, &st), 0);
	assert_int_equal(n, y);
	rfs_fs_forget(fs, n, 1);
	assert_int_equal(rfs_fs_getattr(fs, x, &st), 0);
	assert_int_equal(st.st_ino, sx.st_ino);
	assert_int_equal(rfs_fs_read(fs, x, buf, sizeof(buf), 0), 4);
	assert_memory_equal(buf, "xxxx", 4);
	assert_int_equal(rfs_fs_read(fs, y, buf, sizeof(buf), 0), 6);
	assert_memory_equal(buf, "yyyyyy", 6);

	rfs_fs_forget(fs, x, 1);
	rfs_fs_forget(fs, y, 1);
	rfs_fs_forget(fs, a, 1);
	rfs_fs_forget(fs, b, 1);
	assert_int_equal(rfs_fs_node_count(fs), 1);
	assert_int_equal(rfs_fs_close(fs), 0);
	assert_int_equal(rfs_fs_fsck(g_pool, fx_fsck_line, NULL), 0);
}

/* A directory moves away and a new one takes its name: the files below
 * the stale directory node must not be looked for in the new one. */
static void test_stale_directory(void **state)
{
	(void)state;
	rfs_fs *fs = fresh();
	rfs_nodeid d, f, d2, f2, n;
	struct stat st, sf;
	char buf[16];
	assert_int_equal(rfs_fs_mkdir(fs, &g_ctx, RFS_ROOT_NODE, "d", 0755, &d, &st), 0);
	f = mkfile(fs, d, "f", "old");
	assert_int_equal(rfs_fs_getattr(fs, f, &sf), 0);

	rfs_log_set_level(RFS_LOG_ERR - 1);
	rfs_fs_fail_rename_nodes(fs, 1);
	assert_int_equal(rfs_fs_rename(fs, &g_ctx, RFS_ROOT_NODE, "d", RFS_ROOT_NODE, "moved", 0), 0);
	rfs_fs_fail_rename_nodes(fs, 0);
	rfs_log_set_level(RFS_LOG_INFO);
	assert_int_equal(rfs_fs_mkdir(fs, &g_ctx, RFS_ROOT_NODE, "d", 0755, &d2, &st), 0);
	f2 = mkfile(fs, d2, "f", "new!");

	/* d's node says /d, which is d2 now; f's path /d/f names f2. */
	assert_int_equal(rfs_fs_getattr(fs, f, &st), -ESTALE);
	assert_int_equal(rfs_fs_write(fs, f, "ZZ", 2, 0), -ESTALE);
	assert_int_equal(rfs_fs_read(fs, f2, buf, sizeof(buf), 0), 4);
	assert_memory_equal(buf, "new!", 4);

	assert_int_equal(rfs_fs_resolve(fs, "moved/f", &n, &st), 0);
	assert_int_equal(n, f);
	rfs_fs_forget(fs, n, 1);
	assert_int_equal(rfs_fs_read(fs, f, buf, sizeof(buf), 0), 3);
	assert_memory_equal(buf, "old", 3);

	rfs_fs_forget(fs, f, 1);
	rfs_fs_forget(fs, f2, 1);
	rfs_fs_forget(fs, d, 1);
	rfs_fs_forget(fs, d2, 1);
	assert_int_equal(rfs_fs_node_count(fs), 1);
	assert_int_equal(rfs_fs_close(fs), 0);
	assert_int_equal(rfs_fs_fsck(g_pool, fx_fsck_line, NULL), 0);
}

/* A directory removed while held lives on as an orphan until its node
 * goes; nothing may be put into it, or that would be freed with it
 * (uncounted, still indexed). */
static void test_removed_directory(void **state)
{
	(void)state;
	rfs_fs *fs = fresh();
	rfs_nodeid d, f, g, n;
	struct stat st;
	assert_int_equal(rfs_fs_mkdir(fs, &g_ctx, RFS_ROOT_NODE, "d", 0755, &d, &st), 0);
	f = mkfile(fs, RFS_ROOT_NODE, "f", "data");
	g = mkfile(fs, RFS_ROOT_NODE, "g", "more");
	assert_int_equal(rfs_fs_link(fs, g, RFS_ROOT_NODE, "g2", &st), 0);
	rfs_fs_forget(fs, g, 1); /* link's reference */
	assert_int_equal(rfs_fs_rmdir(fs, RFS_ROOT_NODE, "d"), 0);

	assert_int_equal(rfs_fs_rename(fs, &g_ctx, RFS_ROOT_NODE, "f", d, "f", 0), -ENOENT);
	assert_int_equal(rfs_fs_rename(fs, &g_ctx, RFS_ROOT_NODE, "g2", d, "g2", 0), -ENOENT);
	assert_int_equal(rfs_fs_rename(fs, &g_ctx, RFS_ROOT_NODE, "f", d, "f",
				       RFS_RENAME_NOREPLACE), -ENOENT);
	assert_int_equal(rfs_fs_link(fs, f, d, "f3", &st), -ENOENT);
	assert_int_equal(rfs_fs_create(fs, &g_ctx, d, "new", 0644, &n, &st), -ENOENT);
	assert_int_equal(rfs_fs_mkdir(fs, &g_ctx, d, "sub", 0755, &n, &st), -ENOENT);
	assert_int_equal(rfs_fs_symlink(fs, &g_ctx, d, "sl", "f", &n, &st), -ENOENT);

	/* Everything is still where it was. */
	assert_int_equal(rfs_fs_resolve(fs, "f", &n, &st), 0);
	assert_int_equal(n, f);
	rfs_fs_forget(fs, n, 1);
	assert_int_equal(rfs_fs_resolve(fs, "g2", &n, &st), 0);
	assert_int_equal(st.st_nlink, 2);
	rfs_fs_forget(fs, n, 1);

	rfs_fs_forget(fs, d, 1); /* the orphan directory is freed now */
	rfs_fs_forget(fs, f, 1);
	rfs_fs_forget(fs, g, 1);
	assert_int_equal(rfs_fs_node_count(fs), 1);
	assert_int_equal(rfs_fs_close(fs), 0);
	assert_int_equal(rfs_fs_fsck(g_pool, fx_fsck_line, NULL), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_exchange_stale_files),
		cmocka_unit_test(test_stale_directory),
		cmocka_unit_test(test_removed_directory),
	};
	return cmocka_run_group_tests(tests, fx_setup, fx_teardown);
}
