/*
 * Snapshots of any directory through the fs API (src/fs/snapshot.c):
 * independence both ways, st_ino per volume, read-only snapshots, EXDEV
 * at volume boundaries, hard links below the source, nested snapshots, a
 * snapshot inside its own source, deletion giving every block back, and
 * all of it across a remount with fsck clean.
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

static const struct rfs_ctx g_ctx = {.uid = 0, .gid = 0, .pid = 1, .umask = 022};

static rfs_fs *fresh(void)
{
	return fx_fresh(64u << 20, 0);
}

static rfs_fs *reopen(rfs_fs *fs)
{
	return fx_reopen(fs, 0);
}

/* Resolve a path; the lookup reference is given back at once (the node
 * stays known while its parent chain is). */
static rfs_nodeid at(rfs_fs *fs, const char *path, struct stat *st)
{
	rfs_nodeid n;
	struct stat s;
	int ret = rfs_fs_resolve(fs, path, &n, st ? st : &s);
	if (ret)
		return 0;
	return n;
}

static void put(rfs_fs *fs, const char *path, rfs_nodeid n)
{
	if (n && n != RFS_ROOT_NODE)
		rfs_fs_forget(fs, n, 1);
	(void)path;
}

static void mkdir_p(rfs_fs *fs, rfs_nodeid dir, const char *name, rfs_nodeid *out)
{
	struct stat st;
	assert_int_equal(rfs_fs_mkdir(fs, &g_ctx, dir, name, 0755, out, &st), 0);
}

static void write_file(rfs_fs *fs, rfs_nodeid dir, const char *name, const char *text)
{
	rfs_nodeid n;
	struct stat st;
	assert_int_equal(rfs_fs_create(fs, &g_ctx, dir, name, 0644, &n, &st), 0);
	size_t len = strlen(text);
	assert_int_equal(rfs_fs_write(fs, n, text, len, 0), (ssize_t)len);
	rfs_fs_forget(fs, n, 1);
}

static void expect_text(rfs_fs *fs, const char *path, const char *text)
{
	char buf[256];
	rfs_nodeid n = at(fs, path, NULL);
	assert_true(n != 0);
	ssize_t got = rfs_fs_read(fs, n, buf, sizeof(buf) - 1, 0);
	assert_true(got >= 0);
	buf[got] = 0;
	assert_string_equal(buf, text);
	put(fs, path, n);
}

/* a/{f, d/g}; returns a's node (one reference). */
static rfs_nodeid make_tree(rfs_fs *fs)
{
	rfs_nodeid a, d;
	mkdir_p(fs, RFS_ROOT_NODE, "a", &a);
	write_file(fs, a, "f", "one");
	mkdir_p(fs, a, "d", &d);
	write_file(fs, d, "g", "two");
	rfs_fs_forget(fs, d, 1);
	return a;
}

static void test_snapshot_independent(void **state)
{
	(void)state;
	rfs_fs *fs = fresh();
	rfs_nodeid a = make_tree(fs), s;
	struct stat st, sa, ss;
	assert_int_equal(rfs_fs_snapshot(fs, a, RFS_ROOT_NODE, "snap", 0, &s, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	expect_text(fs, "snap/f", "one");
	expect_text(fs, "snap/d/g", "two");
	/* st_ino differs between the two sides, for the same inode number. */
	rfs_nodeid x = at(fs, "a/f", &sa), y = at(fs, "snap/f", &ss);
	assert_true(sa.st_ino != ss.st_ino);
	assert_int_equal(sa.st_ino & ((1ull << 48) - 1), ss.st_ino & ((1ull << 48) - 1));
	/* Writes to either side stay on that side. */
	assert_int_equal(rfs_fs_write(fs, x, "ONE", 3, 0), 3);
	assert_int_equal(rfs_fs_write(fs, y, "uno", 3, 0), 3);
	put(fs, "", x);
	put(fs, "", y);
	expect_text(fs, "a/f", "ONE");
	expect_text(fs, "snap/f", "uno");
	rfs_nodeid d = at(fs, "snap/d", NULL);
	write_file(fs, d, "new", "three");
	assert_int_equal(at(fs, "a/d/new", NULL), 0);
	assert_int_equal(rfs_fs_unlink(fs, a, "f"), 0);
	expect_text(fs, "snap/f", "uno");
	/* Volume boundaries: EXDEV for rename and link. */
	assert_int_equal(rfs_fs_rename(fs, &g_ctx, s, "new", a, "x", 0), -EXDEV);
	assert_int_equal(rfs_fs_rename(fs, &g_ctx, d, "new", a, "x", 0), -EXDEV);
	put(fs, "", d);
	rfs_nodeid g = at(fs, "snap/d/g", NULL);
	assert_int_equal(rfs_fs_link(fs, g, a, "g2", &st), -EXDEV);
	put(fs, "", g);
	/* The snapshot root itself can be renamed within its parent. */
	assert_int_equal(rfs_fs_rename(fs, &g_ctx, RFS_ROOT_NODE, "snap", RFS_ROOT_NODE, "snap2", 0), 0);
	rfs_fs_forget(fs, a, 1);
	rfs_fs_forget(fs, s, 1);
	fs = reopen(fs);
	expect_text(fs, "snap2/f", "uno");
	expect_text(fs, "snap2/d/new", "three");
	expect_text(fs, "a/d/g", "two");
	assert_int_equal(rfs_fs_close(fs), 0);
	assert_int_equal(fx_fsck(), 0);
}

static int count_shared(void *arg, const struct rfs_extent_info *e)
{
	uint64_t *c = arg;
	c[0] += e->length / 4096;
	c[1] += e->shared;
	return 0;
}

/* A file below a snapshotted directory shares its blocks with its twin on
 * the other side (through the shared directory nodes above it), and
 * rfs_fs_extents says so on both sides; a write makes the written block
 * exclusive again. */
static void test_snapshot_extents_shared(void **state)
{
	(void)state;
	rfs_fs *fs = fresh();
	rfs_nodeid a, s;
	struct stat st;
	mkdir_p(fs, RFS_ROOT_NODE, "a", &a);
	static char big[3 * 4096];
	memset(big, 'x', sizeof(big));
	rfs_nodeid f;
	assert_int_equal(rfs_fs_create(fs, &g_ctx, a, "f", 0644, &f, &st), 0);
	assert_int_equal(rfs_fs_write(fs, f, big, sizeof(big), 0), (ssize_t)sizeof(big));
	uint64_t c[2] = {0};
	assert_int_equal(rfs_fs_extents(fs, f, count_shared, c), 0);
	assert_int_equal(c[0], 3);
	assert_int_equal(c[1], 0);
	assert_int_equal(rfs_fs_snapshot(fs, a, RFS_ROOT_NODE, "snap", 0, &s, &st), 0);
	rfs_nodeid g = at(fs, "snap/f", NULL);
	assert_true(g != 0);
	memset(c, 0, sizeof(c));
	assert_int_equal(rfs_fs_extents(fs, g, count_shared, c), 0);
	assert_int_equal(c[1], 3);
	memset(c, 0, sizeof(c));
	assert_int_equal(rfs_fs_extents(fs, f, count_shared, c), 0);
	assert_int_equal(c[1], 3);
	/* Overwrite one block in the snapshot: that one is its own now. */
	assert_int_equal(rfs_fs_write(fs, g, "y", 1, 4096), 1);
	memset(c, 0, sizeof(c));
	assert_int_equal(rfs_fs_extents(fs, g, count_shared, c), 0);
	assert_int_equal(c[0], 3);
	assert_int_equal(c[1], 2);
	memset(c, 0, sizeof(c));
	assert_int_equal(rfs_fs_extents(fs, f, count_shared, c), 0);
	assert_int_equal(c[1], 2);
	put(fs, "", g);
	rfs_fs_forget(fs, f, 1);
	rfs_fs_forget(fs, a, 1);
	rfs_fs_forget(fs, s, 1);
	assert_int_equal(rfs_fs_close(fs), 0);
	assert_int_equal(fx_fsck(), 0);
}

static void test_snapshot_readonly(void **state)
{
	(void)state;
	rfs_fs *fs = fresh();
	rfs_nodeid a = make_tree(fs), s, n;
	struct stat st;
	assert_int_equal(rfs_fs_snapshot(fs, a, RFS_ROOT_NODE, "ro", RFS_SNAP_RDONLY, &s, &st), 0);
	rfs_nodeid f = at(fs, "ro/f", NULL), d = at(fs, "ro/d", NULL);
	assert_int_equal(rfs_fs_write(fs, f, "x", 1, 0), -EROFS);
	struct stat in = {0};
	in.st_mode = 0600;
	assert_int_equal(rfs_fs_setattr(fs, f, &in, RFS_SET_MODE, NULL), -EROFS);
	assert_int_equal(rfs_fs_setattr(fs, s, &in, RFS_SET_MODE, NULL), -EROFS);
	in.st_size = 0;
	assert_int_equal(rfs_fs_setattr(fs, f, &in, RFS_SET_SIZE, NULL), -EROFS);
	assert_int_equal(rfs_fs_setxattr(fs, &g_ctx, f, "user.x", "1", 1, 0), -EROFS);
	assert_int_equal(rfs_fs_unlink(fs, s, "f"), -EROFS);
	assert_int_equal(rfs_fs_rmdir(fs, d, "nothing"), -EROFS);
	assert_int_equal(rfs_fs_create(fs, &g_ctx, d, "new", 0644, &n, &st), -EROFS);
	assert_int_equal(rfs_fs_snapshot(fs, a, d, "inner", 0, &n, &st), -EROFS);
	/* Reading works; the source stays writable. */
	expect_text(fs, "ro/d/g", "two");
	rfs_nodeid af = at(fs, "a/f", NULL);
	assert_int_equal(rfs_fs_write(fs, af, "ONE", 3, 0), 3);
	put(fs, "", af);
	expect_text(fs, "ro/f", "one");
	put(fs, "", f);
	put(fs, "", d);
	rfs_fs_forget(fs, s, 1);
	rfs_fs_forget(fs, a, 1);
	fs = reopen(fs);
	f = at(fs, "ro/f", NULL);
	assert_int_equal(rfs_fs_write(fs, f, "x", 1, 0), -EROFS);
	put(fs, "", f);
	/* Deleting a read-only snapshot works (its parent is writable). */
	assert_int_equal(rfs_fs_snapshot_delete(fs, RFS_ROOT_NODE, "ro"), 0);
	assert_int_equal(at(fs, "ro", NULL), 0);
	assert_int_equal(rfs_fs_close(fs), 0);
	assert_int_equal(fx_fsck(), 0);
}

static void test_snapshot_hard_links(void **state)
{
	(void)state;
	rfs_fs *fs = fresh();
	rfs_nodeid a = make_tree(fs), s, d;
	struct stat st;
	rfs_nodeid f = at(fs, "a/f", NULL);
	d = at(fs, "a/d", NULL);
	assert_int_equal(rfs_fs_link(fs, f, d, "f2", &st), 0);
	assert_int_equal(st.st_nlink, 2);
	/* A third name outside the source: the snapshot's copy counts 2. */
	assert_int_equal(rfs_fs_link(fs, f, RFS_ROOT_NODE, "f3", &st), 0);
	assert_int_equal(st.st_nlink, 3);
	rfs_fs_forget(fs, f, 2);
	put(fs, "", f);
	put(fs, "", d);
	assert_int_equal(rfs_fs_snapshot(fs, a, RFS_ROOT_NODE, "snap", 0, &s, &st), 0);
	rfs_nodeid sf = at(fs, "snap/f", &st);
	assert_int_equal(st.st_nlink, 2);
	rfs_nodeid sf2 = at(fs, "snap/d/f2", &st);
	assert_int_equal(sf, sf2); /* one inode, two names, in the snapshot */
	assert_int_equal(rfs_fs_write(fs, sf, "UNO", 3, 0), 3);
	put(fs, "", sf);
	put(fs, "", sf2);
	expect_text(fs, "snap/d/f2", "UNO");
	expect_text(fs, "a/d/f2", "one");
	expect_text(fs, "f3", "one");
	rfs_fs_forget(fs, s, 1);
	rfs_fs_forget(fs, a, 1);
	fs = reopen(fs);
	assert_int_equal(rfs_fs_close(fs), 0);
}

static void test_snapshot_nested_and_self(void **state)
{
	(void)state;
	rfs_fs *fs = fresh();
	rfs_nodeid a = make_tree(fs), s1, s2, s3, s4;
	struct stat st, x, y;
	/* A snapshot inside its own source holds the state before it. */
	assert_int_equal(rfs_fs_snapshot(fs, a, a, "self", 0, &s1, &st), 0);
	expect_text(fs, "a/self/f", "one");
	assert_int_equal(at(fs, "a/self/self", NULL), 0);
	/* Snapshot of a directory holding a snapshot: the nested one is a
	 * volume of its own in the copy. */
	assert_int_equal(rfs_fs_snapshot(fs, a, RFS_ROOT_NODE, "b", 0, &s2, &st), 0);
	rfs_nodeid p = at(fs, "a/self/f", &x), q = at(fs, "b/self/f", &y);
	assert_true(x.st_ino != y.st_ino);
	assert_int_equal(rfs_fs_write(fs, q, "bee", 3, 0), 3);
	put(fs, "", p);
	put(fs, "", q);
	expect_text(fs, "a/self/f", "one");
	expect_text(fs, "b/self/f", "bee");
	/* Snapshot of a snapshot, and of the whole mount. */
	assert_int_equal(rfs_fs_snapshot(fs, s2, RFS_ROOT_NODE, "c", 0, &s3, &st), 0);
	expect_text(fs, "c/self/f", "bee");
	assert_int_equal(rfs_fs_snapshot(fs, RFS_ROOT_NODE, RFS_ROOT_NODE, "all", 0, &s4, &st), 0);
	expect_text(fs, "all/c/self/f", "bee");
	expect_text(fs, "all/a/d/g", "two");
	/* Every volume is listed once. */
	rfs_fs_forget(fs, s1, 1);
	rfs_fs_forget(fs, s2, 1);
	rfs_fs_forget(fs, s3, 1);
	rfs_fs_forget(fs, s4, 1);
	rfs_fs_forget(fs, a, 1);
	fs = reopen(fs);
	expect_text(fs, "all/b/self/f", "bee");
	assert_int_equal(rfs_fs_close(fs), 0);
}

struct count {
	int n, ro;
	char paths[512];
};

static int count_vol(void *arg, const struct rfs_volume_info *v)
{
	struct count *c = arg;
	c->n++;
	c->ro += v->rdonly;
	if (v->id != 1) {
		/* recorded at creation: both come from directory "a" */
		assert_non_null(v->source_path);
		assert_string_equal(v->source_path, "a");
	} else {
		assert_null(v->source_path);
	}
	size_t l = strlen(c->paths);
	snprintf(c->paths + l, sizeof(c->paths) - l, "%s%s", l ? "," : "", v->path);
	return 0;
}

static void test_snapshot_list_delete_space(void **state)
{
	(void)state;
	rfs_fs *fs = fresh();
	struct rfs_pool_stats empty, after;
	assert_int_equal(rfs_fs_sync(fs), 0);
	rfs_pool_stats(rfs_fs_pool(fs), &empty);
	rfs_nodeid a = make_tree(fs), s1, s2;
	struct stat st;
	uint8_t buf[65536];
	memset(buf, 7, sizeof(buf));
	rfs_nodeid f = at(fs, "a/f", NULL);
	assert_int_equal(rfs_fs_write(fs, f, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
	put(fs, "", f);
	assert_int_equal(rfs_fs_snapshot(fs, a, RFS_ROOT_NODE, "s1", 0, &s1, &st), 0);
	assert_int_equal(rfs_fs_snapshot(fs, a, a, "s2", RFS_SNAP_RDONLY, &s2, &st), 0);
	struct count c = {0};
	assert_int_equal(rfs_fs_volumes(fs, count_vol, &c), 0);
	assert_int_equal(c.n, 3);
	assert_int_equal(c.ro, 1);
	assert_non_null(strstr(c.paths, "s1"));
	assert_non_null(strstr(c.paths, "a/s2"));
	/* Not a snapshot: EINVAL; rmdir of a non-empty snapshot: ENOTEMPTY. */
	assert_int_equal(rfs_fs_snapshot_delete(fs, RFS_ROOT_NODE, "a"), -EINVAL);
	assert_int_equal(rfs_fs_rmdir(fs, RFS_ROOT_NODE, "s1"), -ENOTEMPTY);
	/* Change the snapshot, then delete everything: every block back. */
	f = at(fs, "s1/f", NULL);
	assert_int_equal(rfs_fs_write(fs, f, buf, 4096, 8192), 4096);
	put(fs, "", f);
	rfs_fs_forget(fs, s1, 1);
	rfs_fs_forget(fs, s2, 1);
	assert_int_equal(rfs_fs_snapshot_delete(fs, RFS_ROOT_NODE, "s1"), 0);
	assert_int_equal(rfs_fs_snapshot_delete(fs, a, "s2"), 0);
	/* detached at once; their trees wait in the drop queue */
	struct rfs_fs_reclaim_stat rs;
	assert_int_equal(rfs_fs_reclaim_status(fs, &rs), 0);
	assert_true(rs.trees >= 2);
	assert_int_equal(at(fs, "s1", NULL), 0);
	memset(&c, 0, sizeof(c));
	assert_int_equal(rfs_fs_volumes(fs, count_vol, &c), 0);
	assert_int_equal(c.n, 1);
	fs = reopen(fs);
	/* An empty snapshot goes with rmdir too. */
	a = at(fs, "a", NULL);
	rfs_nodeid e, t;
	mkdir_p(fs, RFS_ROOT_NODE, "empty", &e);
	assert_int_equal(rfs_fs_snapshot(fs, e, RFS_ROOT_NODE, "esnap", 0, &t, &st), 0);
	rfs_fs_forget(fs, t, 1);
	rfs_fs_forget(fs, e, 1);
	assert_int_equal(rfs_fs_rmdir(fs, RFS_ROOT_NODE, "esnap"), 0);
	assert_int_equal(rfs_fs_rmdir(fs, RFS_ROOT_NODE, "empty"), 0);
	assert_int_equal(rfs_fs_unlink(fs, a, "f"), 0);
	rfs_nodeid d = at(fs, "a/d", NULL);
	assert_int_equal(rfs_fs_unlink(fs, d, "g"), 0);
	put(fs, "", d);
	assert_int_equal(rfs_fs_rmdir(fs, a, "d"), 0);
	put(fs, "", a);
	assert_int_equal(rfs_fs_rmdir(fs, RFS_ROOT_NODE, "a"), 0);
	assert_int_equal(rfs_fs_reclaim(fs, 0), 0); /* what the mount does in the background */
	assert_int_equal(rfs_fs_sync(fs), 0);
	assert_int_equal(rfs_fs_sync(fs), 0);
	rfs_pool_stats(rfs_fs_pool(fs), &after);
	assert_int_equal(after.used_blocks, empty.used_blocks);
	assert_int_equal(rfs_fs_close(fs), 0);
	assert_int_equal(fx_fsck(), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_snapshot_independent, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_extents_shared, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_readonly, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_hard_links, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_nested_and_self, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_list_delete_space, fx_setup, fx_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
