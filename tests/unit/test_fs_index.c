/*
 * The back-pointer index (inode number -> parent and name) through the fs
 * API: built for a format 1 pool at its first read-write mount, kept by
 * every mutation (fsck checks it against the tree), its damage reported
 * by fsck; and what it is for: finding an inode by number (file handles)
 * after every node was forgotten, across remounts, renames and deletes.
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
#include "fs/fs_internal.h" /* volume layout: 'M', 'P', index keys */
#include "reflinkfs/fs.h"
#include "reflinkfs/log.h"
#include "reflinkfs/tree.h"

static const struct rfs_ctx g_ctx = {.uid = 1000, .gid = 1000, .pid = 1};

static char g_lines[64][512];
static int g_nlines;

static void fsck_line(void *arg, const char *what)
{
	(void)arg;
	fprintf(stderr, "fsck: %s\n", what);
	if (g_nlines < 64)
		snprintf(g_lines[g_nlines++], sizeof(g_lines[0]), "%s", what);
}

static long fsck_pool(void)
{
	g_nlines = 0;
	return rfs_fs_fsck(g_pool, fsck_line, NULL);
}

static bool fsck_said(const char *what)
{
	for (int i = 0; i < g_nlines; i++)
		if (strstr(g_lines[i], what))
			return true;
	return false;
}

static char g_log[8192];

static void log_sink(void *arg, int level, const char *line)
{
	(void)arg;
	(void)level;
	fprintf(stderr, "%s\n", line);
	strncat(g_log, line, sizeof(g_log) - strlen(g_log) - 2);
	strcat(g_log, "\n");
}

static int setup(void **state)
{
	(void)state;
	fx_setup(state);
	rfs_log_set_sink(log_sink, NULL);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	rfs_log_set_sink(NULL, NULL);
	return fx_teardown(state);
}

static rfs_fs *fresh(void)
{
	return fx_fresh(64 << 20, 0);
}

/* A tree with every kind of name: nested dirs, files, a symlink, hard
 * links, renamed and exchanged entries, a whiteout, removed ones. */
static void populate(rfs_fs *fs)
{
	rfs_nodeid a, b, c, f, g, x;
	struct stat st;
	assert_int_equal(rfs_fs_mkdir(fs, &g_ctx, RFS_ROOT_NODE, "a", 0755, &a, &st), 0);
	assert_int_equal(rfs_fs_mkdir(fs, &g_ctx, a, "b", 0755, &b, &st), 0);
	assert_int_equal(rfs_fs_mkdir(fs, &g_ctx, b, "c", 0755, &c, &st), 0);
	assert_int_equal(rfs_fs_create(fs, &g_ctx, c, "f", 0644, &f, &st), 0);
	assert_int_equal(rfs_fs_create(fs, &g_ctx, a, "g", 0644, &g, &st), 0);
	assert_int_equal(rfs_fs_symlink(fs, &g_ctx, b, "s", "../g", &x, &st), 0);
	assert_int_equal(rfs_fs_mknod(fs, &g_ctx, RFS_ROOT_NODE, "fifo", S_IFIFO | 0644, 0, &x, &st), 0);
	assert_int_equal(rfs_fs_link(fs, g, c, "g2", &st), 0);
	assert_int_equal(rfs_fs_rename(fs, &g_ctx, a, "b", RFS_ROOT_NODE, "b2", 0), 0);
	assert_int_equal(rfs_fs_rename(fs, &g_ctx, c, "f", RFS_ROOT_NODE, "fifo", 0), 0);
	assert_int_equal(rfs_fs_create(fs, &g_ctx, RFS_ROOT_NODE, "h", 0644, &x, &st), 0);
	assert_int_equal(rfs_fs_rename(fs, &g_ctx, RFS_ROOT_NODE, "h", c, "h",
				       RFS_RENAME_WHITEOUT), 0);
	assert_int_equal(rfs_fs_mkdir(fs, &g_ctx, RFS_ROOT_NODE, "e", 0755, &x, &st), 0);
	assert_int_equal(rfs_fs_rename(fs, &g_ctx, RFS_ROOT_NODE, "e", c, "h",
				       RFS_RENAME_EXCHANGE), 0);
	assert_int_equal(rfs_fs_mkdir(fs, &g_ctx, RFS_ROOT_NODE, "gone", 0755, &x, &st), 0);
	assert_int_equal(rfs_fs_rmdir(fs, RFS_ROOT_NODE, "gone"), 0);
	assert_int_equal(rfs_fs_create(fs, &g_ctx, RFS_ROOT_NODE, "gone", 0644, &x, &st), 0);
	assert_int_equal(rfs_fs_unlink(fs, RFS_ROOT_NODE, "gone"), 0);
}

/* Run fn on the volume tree of a closed pool, and commit. */
static void with_volume(void (*fn)(rfs_pool *pool, rfs_tree *vol))
{
	rfs_pool *pool;
	rfs_tree vol;
	assert_int_equal(rfs_pool_open(g_pool, 0, &pool), 0);
	rfs_pool_wrlock(pool);
	assert_int_equal(rfs_catalog_get(pool, RFS_TOP_VOLUME, &vol), 0);
	fn(pool, &vol);
	assert_int_equal(rfs_catalog_set(pool, RFS_TOP_VOLUME, &vol), 0);
	assert_int_equal(rfs_pool_commit_locked(pool), 0);
	rfs_pool_unlock(pool);
	rfs_pool_close(pool);
}

/* What a pool of format 1 looks like: no 'P', version 1. */
static void downgrade(rfs_pool *pool, rfs_tree *vol)
{
	struct rfs_volmeta m;
	size_t ml = sizeof(m);
	assert_int_equal(rfs_tree_delete(pool, vol, "P", 1, 0), 0);
	assert_int_equal(rfs_tree_lookup(pool, vol, "M", 1, &m, &ml, NULL), 0);
	m.version = 1;
	assert_int_equal(rfs_tree_put(pool, vol, "M", 1, &m, ml, 0, RFS_PUT_REPLACE), 0);
}

static void test_index_kept_and_built(void **state)
{
	(void)state;
	rfs_fs *fs = fresh();
	assert_int_equal(fs->top->m.version, RFS_VOL_VERSION);
	/* fixed records, which format 1 also has (downgrade below) */
	fs->top->m.version = RFS_VOL_COMPACT - 1;
	populate(fs);
	assert_int_equal(rfs_fs_close(fs), 0);
	/* every mutation above kept the index exact */
	assert_int_equal(fsck_pool(), 0);

	with_volume(downgrade);
	assert_int_equal(fx_vol_version(), 1);
	assert_int_equal(fsck_pool(), 0); /* format 1 is valid as it is */
	/* read-only: usable, says what is missing, changes nothing */
	g_log[0] = 0;
	assert_int_equal(rfs_fs_open(g_pool, RFS_FS_RDONLY, &fs), 0);
	assert_non_null(strstr(g_log, "no inode index"));
	rfs_nodeid x;
	struct stat st;
	assert_int_equal(rfs_fs_resolve(fs, "fifo", &x, &st), 0);
	assert_int_equal(rfs_fs_close(fs), 0);
	assert_int_equal(fx_vol_version(), 1);
	/* read-write: the index is built once, logged */
	g_log[0] = 0;
	assert_int_equal(rfs_fs_open(g_pool, 0, &fs), 0);
	/* a/g (now linked: in the table, not indexed), a, b2, c, fifo, h, s,
	 * c/h's whiteout and the exchanged directory: 8 names */
	char want[96];
	snprintf(want, sizeof want, "built the inode index of volume 1 (format 1 -> %u): 8 names",
		 RFS_VOL_VERSION);
	assert_non_null(strstr(g_log, want));
	assert_int_equal(rfs_fs_close(fs), 0);
	assert_int_equal(fx_vol_version(), RFS_VOL_VERSION);
	assert_int_equal(fsck_pool(), 0);
	g_log[0] = 0;
	assert_int_equal(rfs_fs_open(g_pool, 0, &fs), 0);
	assert_null(strstr(g_log, "inode index")); /* only once */
	/* and kept from then on */
	assert_int_equal(rfs_fs_resolve(fs, "b2/c", &x, &st), 0);
	rfs_nodeid y;
	assert_int_equal(rfs_fs_create(fs, &g_ctx, x, "new", 0644, &y, &st), 0);
	assert_int_equal(rfs_fs_rename(fs, &g_ctx, x, "new", RFS_ROOT_NODE, "new2", 0), 0);
	assert_int_equal(rfs_fs_unlink(fs, RFS_ROOT_NODE, "fifo"), 0);
	assert_int_equal(rfs_fs_close(fs), 0);
	assert_int_equal(fsck_pool(), 0);
}

static uint64_t g_victim;

static void drop_backref(rfs_pool *pool, rfs_tree *vol)
{
	uint64_t root;
	size_t vl = sizeof(root);
	uint8_t key[9] = {'B'};
	assert_int_equal(rfs_tree_lookup_mut(pool, vol, "P", 1, &root, &vl, NULL), 0);
	rfs_tree idx = {root, RFS_OWNER_INDEX};
	for (int i = 0; i < 8; i++)
		key[1 + i] = (uint8_t)(g_victim >> (56 - 8 * i));
	assert_int_equal(rfs_tree_delete(pool, &idx, key, 9, 0), 0);
	root = idx.root;
	assert_int_equal(rfs_tree_put(pool, vol, "P", 1, &root, sizeof(root), RFS_ITEM_TREE,
				      RFS_PUT_REPLACE | RFS_KEEP_REFS), 0);
}

static void put_backref(rfs_pool *pool, rfs_tree *vol, uint64_t ino, uint64_t parent,
			const char *name)
{
	uint64_t root;
	size_t vl = sizeof(root);
	uint8_t key[9] = {'B'}, val[64];
	assert_int_equal(rfs_tree_lookup_mut(pool, vol, "P", 1, &root, &vl, NULL), 0);
	rfs_tree idx = {root, RFS_OWNER_INDEX};
	for (int i = 0; i < 8; i++)
		key[1 + i] = (uint8_t)(ino >> (56 - 8 * i));
	memcpy(val, &parent, 8);
	memcpy(val + 8, name, strlen(name));
	assert_int_equal(rfs_tree_put(pool, &idx, key, 9, val, 8 + strlen(name), 0,
				      RFS_PUT_UPSERT), 0);
	root = idx.root;
	assert_int_equal(rfs_tree_put(pool, vol, "P", 1, &root, sizeof(root), RFS_ITEM_TREE,
				      RFS_PUT_REPLACE | RFS_KEEP_REFS), 0);
}

static void stray_backref(rfs_pool *pool, rfs_tree *vol)
{
	put_backref(pool, vol, 999999, 1, "nowhere");
}

static void wrong_backref(rfs_pool *pool, rfs_tree *vol)
{
	put_backref(pool, vol, g_victim, 1, "elsewhere");
}

static void test_index_fsck(void **state)
{
	(void)state;
	rfs_fs *fs = fresh();
	rfs_nodeid d, f;
	struct stat st;
	assert_int_equal(rfs_fs_mkdir(fs, &g_ctx, RFS_ROOT_NODE, "d", 0755, &d, &st), 0);
	assert_int_equal(rfs_fs_create(fs, &g_ctx, d, "f", 0644, &f, &st), 0);
	g_victim = st.st_ino & ((1ull << 48) - 1);
	assert_int_equal(rfs_fs_close(fs), 0);
	assert_int_equal(fsck_pool(), 0);

	with_volume(drop_backref);
	assert_int_equal(fsck_pool(), 1);
	assert_true(fsck_said("/d/f: inode"));
	assert_true(fsck_said("is missing from the inode index"));

	with_volume(wrong_backref);
	assert_int_equal(fsck_pool(), 2); /* a wrong pointer, and nothing reached by it */
	assert_true(fsck_said("the inode index names inode"));
	assert_true(fsck_said("is not reached by that name"));

	with_volume(drop_backref);
	with_volume(stray_backref);
	assert_int_equal(fsck_pool(), 2);
	assert_true(fsck_said("inode 999999 (\"nowhere\" in directory inode 1) is not reached"));
}

static uint64_t ino_of(const struct stat *st)
{
	return (uint64_t)st->st_ino;
}

static void forget_all(rfs_fs *fs, rfs_nodeid *ids, int n)
{
	for (int i = 0; i < n; i++)
		rfs_fs_forget(fs, ids[i], 1);
	assert_int_equal(rfs_fs_node_count(fs), 1); /* the root only */
}

static void test_lookup_by_number(void **state)
{
	(void)state;
	rfs_fs *fs = fresh();
	rfs_nodeid a, b, c, f, l, x, ids[8];
	struct stat st, fst, bst, lst, rst;
	char buf[16];
	assert_int_equal(rfs_fs_mkdir(fs, &g_ctx, RFS_ROOT_NODE, "a", 0755, &a, &st), 0);
	assert_int_equal(rfs_fs_mkdir(fs, &g_ctx, a, "b", 0755, &b, &bst), 0);
	assert_int_equal(rfs_fs_mkdir(fs, &g_ctx, b, "c", 0755, &c, &st), 0);
	assert_int_equal(rfs_fs_create(fs, &g_ctx, c, "f", 0644, &f, &fst), 0);
	assert_int_equal(rfs_fs_write(fs, f, "deep", 4, 0), 4);
	assert_int_equal(rfs_fs_create(fs, &g_ctx, a, "l", 0644, &l, &lst), 0);
	assert_int_equal(rfs_fs_link(fs, l, RFS_ROOT_NODE, "l2", &lst), 0);
	assert_int_equal(rfs_fs_getattr(fs, RFS_ROOT_NODE, &rst), 0);
	/* node ids are the inodes' identity */
	assert_int_equal(f, ino_of(&fst));
	assert_int_equal(b, ino_of(&bst));
	ids[0] = a, ids[1] = b, ids[2] = c, ids[3] = f, ids[4] = l, ids[5] = l;
	forget_all(fs, ids, 6);
	assert_int_equal(rfs_fs_getattr(fs, f, &st), -ESTALE); /* forgotten */

	/* by number: up the index, down the names */
	assert_int_equal(rfs_fs_lookup_ino(fs, ino_of(&fst), RFS_GENERATION, &x, &st), 0);
	assert_int_equal(x, f);
	assert_int_equal(st.st_ino, fst.st_ino);
	assert_int_equal(rfs_fs_read(fs, x, buf, sizeof(buf), 0), 4);
	assert_memory_equal(buf, "deep", 4);
	assert_int_equal(rfs_fs_node_count(fs), 5); /* root, a, b, c, f */
	rfs_nodeid y;
	assert_int_equal(rfs_fs_lookup(fs, c, "..", &y, &st), 0); /* parents known */
	assert_int_equal(y, b);
	rfs_fs_forget(fs, y, 1);
	rfs_fs_forget(fs, x, 1);
	assert_int_equal(rfs_fs_node_count(fs), 1); /* the chain went with it */
	/* the kernel's way: LOOKUP(node id, ".") and (node id, "..") */
	assert_int_equal(rfs_fs_lookup(fs, f, ".", &x, &st), 0);
	assert_int_equal(x, f);
	assert_int_equal(st.st_size, 4);
	rfs_fs_forget(fs, x, 1);
	assert_int_equal(rfs_fs_lookup(fs, b, "..", &x, &st), 0);
	assert_int_equal(x, a);
	assert_true(S_ISDIR(st.st_mode));
	rfs_fs_forget(fs, x, 1);
	assert_int_equal(rfs_fs_node_count(fs), 1);
	/* hard-linked: through the link table; the root; wrong ones */
	assert_int_equal(rfs_fs_lookup_ino(fs, ino_of(&lst), RFS_GENERATION, &x, &st), 0);
	assert_int_equal(x, l);
	assert_int_equal(st.st_nlink, 2);
	rfs_fs_forget(fs, x, 1);
	assert_int_equal(rfs_fs_lookup_ino(fs, ino_of(&rst), 0, &x, &st), 0);
	assert_int_equal(x, RFS_ROOT_NODE);
	rfs_fs_forget(fs, x, 1);
	assert_int_equal(rfs_fs_lookup_ino(fs, ino_of(&fst), RFS_GENERATION + 1, &x, &st), -ESTALE);
	assert_int_equal(rfs_fs_lookup_ino(fs, ino_of(&fst) + (1ull << 48), RFS_GENERATION, &x, &st),
			 -ESTALE); /* another volume */
	assert_int_equal(rfs_fs_lookup_ino(fs, ino_of(&fst) + 1000, RFS_GENERATION, &x, &st),
			 -ESTALE); /* never existed */
	assert_int_equal(rfs_fs_lookup(fs, f + 1000, ".", &x, &st), -ESTALE);
	assert_int_equal(rfs_fs_node_count(fs), 1);

	/* across a remount */
	assert_int_equal(rfs_fs_close(fs), 0);
	assert_int_equal(fsck_pool(), 0);
	assert_int_equal(rfs_fs_open(g_pool, 0, &fs), 0);
	assert_int_equal(rfs_fs_lookup(fs, f, ".", &x, &st), 0);
	assert_int_equal(x, f);
	assert_int_equal(rfs_fs_read(fs, x, buf, sizeof(buf), 0), 4);
	rfs_fs_forget(fs, x, 1);

	/* after renames along the chain, and moving it into another dir */
	assert_int_equal(rfs_fs_resolve(fs, "a", &a, &st), 0);
	assert_int_equal(rfs_fs_rename(fs, &g_ctx, a, "b", RFS_ROOT_NODE, "b2", 0), 0);
	assert_int_equal(rfs_fs_mkdir(fs, &g_ctx, RFS_ROOT_NODE, "z", 0755, &x, &st), 0);
	rfs_fs_forget(fs, x, 1);
	assert_int_equal(rfs_fs_resolve(fs, "b2/c", &c, &st), 0);
	assert_int_equal(rfs_fs_resolve(fs, "z", &x, &st), 0);
	assert_int_equal(rfs_fs_rename(fs, &g_ctx, c, "f", x, "moved", 0), 0);
	ids[0] = a, ids[1] = c, ids[2] = x;
	forget_all(fs, ids, 3);
	assert_int_equal(rfs_fs_lookup_ino(fs, ino_of(&fst), RFS_GENERATION, &x, &st), 0);
	assert_int_equal(x, f);
	rfs_fs_forget(fs, x, 1);
	assert_int_equal(rfs_fs_resolve(fs, "z/moved", &x, &st), 0);
	assert_int_equal(x, f);
	rfs_fs_forget(fs, x, 1);
	/* deleted: ESTALE, also for the kernel's LOOKUP "." */
	assert_int_equal(rfs_fs_resolve(fs, "z", &x, &st), 0);
	assert_int_equal(rfs_fs_unlink(fs, x, "moved"), 0);
	rfs_fs_forget(fs, x, 1);
	assert_int_equal(rfs_fs_lookup_ino(fs, ino_of(&fst), RFS_GENERATION, &y, &st), -ESTALE);
	assert_int_equal(rfs_fs_lookup(fs, f, ".", &y, &st), -ESTALE);
	assert_int_equal(rfs_fs_node_count(fs), 1);
	assert_int_equal(rfs_fs_close(fs), 0);
	assert_int_equal(fsck_pool(), 0);
}

/* A back-pointer the tree does not confirm gives ESTALE, never another
 * inode; a format 1 pool mounted read-only finds only known nodes. */
static void test_lookup_by_number_damaged(void **state)
{
	(void)state;
	rfs_fs *fs = fresh();
	rfs_nodeid d, f, x;
	struct stat st, fst;
	assert_int_equal(rfs_fs_mkdir(fs, &g_ctx, RFS_ROOT_NODE, "d", 0755, &d, &st), 0);
	assert_int_equal(rfs_fs_create(fs, &g_ctx, d, "f", 0644, &f, &fst), 0);
	assert_int_equal(rfs_fs_create(fs, &g_ctx, RFS_ROOT_NODE, "elsewhere", 0644, &x, &st), 0);
	g_victim = ino_of(&fst) & ((1ull << 48) - 1);
	assert_int_equal(rfs_fs_close(fs), 0);
	with_volume(wrong_backref); /* f's back-pointer names /elsewhere */
	assert_int_equal(rfs_fs_open(g_pool, 0, &fs), 0);
	assert_int_equal(rfs_fs_lookup_ino(fs, ino_of(&fst), RFS_GENERATION, &x, &st), -ESTALE);
	assert_int_equal(rfs_fs_node_count(fs), 1);
	assert_int_equal(rfs_fs_resolve(fs, "d/f", &x, &st), 0); /* by name: fine */
	rfs_fs_forget(fs, x, 1);
	assert_int_equal(rfs_fs_close(fs), 0);
	with_volume(drop_backref);
	with_volume(downgrade);
	assert_int_equal(rfs_fs_open(g_pool, RFS_FS_RDONLY, &fs), 0);
	assert_int_equal(rfs_fs_lookup_ino(fs, ino_of(&fst), RFS_GENERATION, &x, &st), -ESTALE);
	assert_int_equal(rfs_fs_resolve(fs, "d/f", &f, &st), 0);
	assert_int_equal(rfs_fs_lookup_ino(fs, ino_of(&fst), RFS_GENERATION, &x, &st), 0);
	assert_int_equal(x, f);
	rfs_fs_forget(fs, x, 1);
	rfs_fs_forget(fs, f, 1);
	assert_int_equal(rfs_fs_close(fs), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_index_kept_and_built),
		cmocka_unit_test(test_index_fsck),
		cmocka_unit_test(test_lookup_by_number),
		cmocka_unit_test(test_lookup_by_number_damaged),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
