/*
 * The journal records of a delayed batch (src/fs/file_delay.c maps the
 * queued writes of one file in one operation; journal_hook.c builds
 * their records from one walk of the file's chain, sharing one path and
 * one list of directories): every write's range is listed, under the
 * right path, parent and directories, as records made one write at a
 * time would be -- one file, a hard-linked file with two names, two
 * files interleaved, and a path too long for the per-thread buffers.
 *
 * White-box: fs->dm_count says the writes were queued (so that they are
 * mapped in one batch), which no API shows.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/fsfix.h"
#include "reflinkfs/fs.h"
#include "reflinkfs/journal.h"

#include "fs/fs_internal.h"
#include "journal/journal.h" /* JNL_RANGES_MAX */

#define BS RFS_BLOCK_SIZE
#define MAXREC 64

static const struct rfs_ctx g_ctx = {.uid = 0, .gid = 0, .pid = 1, .umask = 022};

/* What a query delivered, in seq order. */
struct rec {
	int kind;
	char path[600];
	uint64_t ino, parent, seq;
	unsigned nranges;
	struct rfs_change_range r[JNL_RANGES_MAX];
};
struct got {
	struct rec rec[MAXREC];
	unsigned n;
};

static int collect(void *arg, const struct rfs_change *c)
{
	struct got *g = arg;
	assert_true(g->n < MAXREC);
	struct rec *r = &g->rec[g->n++];
	r->kind = c->kind;
	r->ino = c->ino;
	r->parent = c->parent;
	r->seq = c->seq;
	assert_non_null(c->path);
	assert_true(strlen(c->path) < sizeof(r->path));
	strcpy(r->path, c->path);
	assert_true(c->nranges <= JNL_RANGES_MAX);
	r->nranges = c->nranges;
	memcpy(r->r, c->ranges, sizeof(*c->ranges) * c->nranges);
	return 0;
}

/* Everything below dir committed since cursor c0. */
static struct got *query(rfs_fs *fs, rfs_nodeid dir, const char *c0)
{
	struct got *g = calloc(1, sizeof(*g));
	assert_non_null(g);
	struct rfs_changes_page page = {0};
	assert_int_equal(rfs_fs_changes(fs, dir, c0, &page, collect, g), 0);
	assert_true(page.done);
	return g;
}

static rfs_nodeid mkdir_(rfs_fs *fs, rfs_nodeid dir, const char *name, uint64_t *st_ino)
{
	rfs_nodeid n;
	struct stat st;
	assert_int_equal(rfs_fs_mkdir(fs, &g_ctx, dir, name, 0755, &n, &st), 0);
	*st_ino = st.st_ino;
	return n;
}

static uint64_t st_ino_of(rfs_fs *fs, rfs_nodeid n)
{
	struct stat st;
	assert_int_equal(rfs_fs_getattr(fs, n, &st), 0);
	return st.st_ino;
}

/* The i-th write of a batch: block 4 * a permutation of 0..499 (never
 * adjacent to another write: their ranges stay apart), 2 blocks every
 * fifth. */
static uint64_t w_off(unsigned i)
{
	return 4ull * ((i * 101u + 7u) % 500u) * BS;
}
static uint64_t w_len(unsigned i)
{
	return (i % 5 == 4 ? 2u : 1u) * BS;
}

static void wr(rfs_fs *fs, rfs_nodeid n, unsigned i)
{
	static uint8_t buf[2 * BS];
	memset(buf, (int)(i + 1), sizeof(buf));
	size_t len = (size_t)w_len(i);
	assert_int_equal(rfs_fs_write(fs, n, buf, len, w_off(i)), (ssize_t)len);
}

/*
 * The records of g with path `path` are data records of inode ino in
 * directory parent, in ceil(k / JNL_RANGES_MAX) records (16 ranges each
 * but the last: the merge behaviour of one write at a time), and list
 * exactly the ranges of writes i = first, first + step, ... (k of them).
 */
static void expect_file(const struct got *g, const char *path, uint64_t ino, uint64_t parent,
			unsigned first, unsigned step, unsigned k)
{
	unsigned nrec = 0, nranges = 0;
	for (unsigned j = 0; j < g->n; j++) {
		const struct rec *r = &g->rec[j];
		if (strcmp(r->path, path))
			continue;
		nrec++;
		assert_int_equal(r->kind, RFS_CHANGE_DATA);
		assert_int_equal(r->ino, ino);
		assert_int_equal(r->parent, parent);
		nranges += r->nranges;
		assert_int_equal(r->nranges, nrec * JNL_RANGES_MAX <= k ? JNL_RANGES_MAX
									 : k % JNL_RANGES_MAX);
	}
	assert_int_equal(nrec, (k + JNL_RANGES_MAX - 1) / JNL_RANGES_MAX);
	assert_int_equal(nranges, k);
	for (unsigned w = 0; w < k; w++) {
		unsigned i = first + w * step;
		bool found = false;
		for (unsigned j = 0; j < g->n && !found; j++) {
			const struct rec *r = &g->rec[j];
			for (unsigned x = 0; x < r->nranges && !strcmp(r->path, path); x++)
				found |= r->r[x].off == w_off(i) && r->r[x].len == w_len(i);
		}
		if (!found)
			fail_msg("write %u (%llu+%llu) missing under %s", i,
				 (unsigned long long)w_off(i), (unsigned long long)w_len(i), path);
	}
}

/* Every record of g has one of the paths given (NULL-terminated). */
static void only_paths(const struct got *g, const char *const *paths)
{
	for (unsigned j = 0; j < g->n; j++) {
		bool ok = false;
		for (const char *const *p = paths; *p && !ok; p++)
			ok = !strcmp(g->rec[j].path, *p);
		if (!ok)
			fail_msg("unexpected record of %s", g->rec[j].path);
	}
}

/* A batch of 40 writes to d/e/f, one operation: 3 records (16, 16, 8
 * ranges) under the mount root, d and e, with paths relative to each,
 * and nothing under the sibling s. */
static void test_one_file(void **state)
{
	(void)state;
	rfs_fs *fs = fx_fresh(256ull << 20, 0);
	uint64_t di, ei, si;
	rfs_nodeid d = mkdir_(fs, RFS_ROOT_NODE, "d", &di);
	rfs_nodeid e = mkdir_(fs, d, "e", &ei);
	rfs_nodeid s = mkdir_(fs, RFS_ROOT_NODE, "s", &si);
	rfs_nodeid f = fx_create(fs, &g_ctx, e, "f");
	uint64_t fi = st_ino_of(fs, f);
	assert_int_equal(rfs_fs_sync(fs), 0);
	char c0[RFS_CURSOR_MAX];
	assert_int_equal(rfs_fs_changes_cursor(fs, c0), 0);
	for (unsigned i = 0; i < 40; i++)
		wr(fs, f, i);
	assert_int_equal(atomic_load(&fs->dm_count), 40); /* one batch */
	assert_int_equal(rfs_fs_sync(fs), 0);

	struct got *g = query(fs, RFS_ROOT_NODE, c0);
	assert_int_equal(g->n, 3);
	expect_file(g, "d/e/f", fi, ei, 0, 1, 40);
	free(g);
	g = query(fs, d, c0);
	assert_int_equal(g->n, 3);
	expect_file(g, "e/f", fi, ei, 0, 1, 40);
	free(g);
	g = query(fs, e, c0);
	assert_int_equal(g->n, 3);
	expect_file(g, "f", fi, ei, 0, 1, 40);
	free(g);
	g = query(fs, s, c0);
	assert_int_equal(g->n, 0);
	free(g);
	(void)di;
	(void)si;
	rfs_fs_forget(fs, f, 1);
	assert_int_equal(rfs_fs_close(fs), 0);
	assert_int_equal(fx_fsck(), 0);
}

/* A file with two names, d/e/h and d/x/h2: each write is recorded once
 * per name (range after range, as one write at a time), each name's
 * records under its own directories with its own parent. */
static void test_hard_link(void **state)
{
	(void)state;
	rfs_fs *fs = fx_fresh(256ull << 20, 0);
	uint64_t di, ei, xi;
	rfs_nodeid d = mkdir_(fs, RFS_ROOT_NODE, "d", &di);
	rfs_nodeid e = mkdir_(fs, d, "e", &ei);
	rfs_nodeid x = mkdir_(fs, d, "x", &xi);
	rfs_nodeid h = fx_create(fs, &g_ctx, e, "h");
	struct stat st;
	assert_int_equal(rfs_fs_link(fs, h, x, "h2", &st), 0);
	uint64_t hi = st.st_ino;
	assert_int_equal(rfs_fs_sync(fs), 0);
	char c0[RFS_CURSOR_MAX];
	assert_int_equal(rfs_fs_changes_cursor(fs, c0), 0);
	for (unsigned i = 0; i < 20; i++)
		wr(fs, h, i);
	assert_int_equal(atomic_load(&fs->dm_count), 20);
	assert_int_equal(rfs_fs_sync(fs), 0);

	struct got *g = query(fs, RFS_ROOT_NODE, c0);
	assert_int_equal(g->n, 4);
	expect_file(g, "d/e/h", hi, ei, 0, 1, 20);
	expect_file(g, "d/x/h2", hi, xi, 0, 1, 20);
	/* The first write's record of each name, then the 17th's. */
	assert_string_equal(g->rec[0].path, "d/e/h");
	assert_string_equal(g->rec[1].path, "d/x/h2");
	assert_string_equal(g->rec[2].path, "d/e/h");
	assert_string_equal(g->rec[3].path, "d/x/h2");
	free(g);
	g = query(fs, d, c0);
	assert_int_equal(g->n, 4);
	expect_file(g, "e/h", hi, ei, 0, 1, 20);
	expect_file(g, "x/h2", hi, xi, 0, 1, 20);
	free(g);
	g = query(fs, e, c0);
	assert_int_equal(g->n, 2);
	expect_file(g, "h", hi, ei, 0, 1, 20);
	free(g);
	g = query(fs, x, c0);
	assert_int_equal(g->n, 2);
	expect_file(g, "h2", hi, xi, 0, 1, 20);
	free(g);
	(void)di;
	rfs_fs_forget(fs, h, 1);
	assert_int_equal(rfs_fs_close(fs), 0);
	assert_int_equal(fx_fsck(), 0);
}

/* Two files written alternately in one batch (two operations of one
 * settle): each file's records hold its writes only, under its own
 * directories; and a file whose path does not fit the per-thread buffer
 * (a 250-byte directory name), whose records share a block of their
 * own. */
static void test_two_files_long_path(void **state)
{
	(void)state;
	rfs_fs *fs = fx_fresh(256ull << 20, 0);
	char longname[251];
	memset(longname, 'L', 250);
	longname[250] = 0;
	uint64_t di, ei, li;
	rfs_nodeid d = mkdir_(fs, RFS_ROOT_NODE, "d", &di);
	rfs_nodeid e = mkdir_(fs, d, "e", &ei);
	rfs_nodeid l = mkdir_(fs, RFS_ROOT_NODE, longname, &li);
	rfs_nodeid f = fx_create(fs, &g_ctx, e, "f");
	rfs_nodeid g2 = fx_create(fs, &g_ctx, l, "some-long-file-name");
	uint64_t fi = st_ino_of(fs, f), gi = st_ino_of(fs, g2);
	assert_int_equal(rfs_fs_sync(fs), 0);
	char c0[RFS_CURSOR_MAX];
	assert_int_equal(rfs_fs_changes_cursor(fs, c0), 0);
	/* write i to f when even, to g2 when odd */
	for (unsigned i = 0; i < 60; i++)
		wr(fs, i % 2 ? g2 : f, i);
	assert_int_equal(atomic_load(&fs->dm_count), 60);
	assert_int_equal(rfs_fs_sync(fs), 0);

	char gpath[300], gname[300];
	snprintf(gpath, sizeof(gpath), "%s/some-long-file-name", longname);
	snprintf(gname, sizeof(gname), "some-long-file-name");
	struct got *g = query(fs, RFS_ROOT_NODE, c0);
	assert_int_equal(g->n, 4);
	expect_file(g, "d/e/f", fi, ei, 0, 2, 30);
	expect_file(g, gpath, gi, li, 1, 2, 30);
	free(g);
	g = query(fs, e, c0);
	assert_int_equal(g->n, 2);
	expect_file(g, "f", fi, ei, 0, 2, 30);
	only_paths(g, (const char *const[]){"f", NULL});
	free(g);
	g = query(fs, l, c0);
	assert_int_equal(g->n, 2);
	expect_file(g, gname, gi, li, 1, 2, 30);
	only_paths(g, (const char *const[]){gname, NULL});
	free(g);
	(void)di;
	rfs_fs_forget(fs, f, 1);
	rfs_fs_forget(fs, g2, 1);
	assert_int_equal(rfs_fs_close(fs), 0);
	assert_int_equal(fx_fsck(), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_one_file, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_hard_link, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_two_files_long_path, fx_setup, fx_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
