/*
 * The change journal through the fs API and the journal API
 * (include/reflinkfs/journal.h): every kind is recorded, seqs grow across
 * reopen, a crash keeps exactly the committed records, subtree queries
 * list only what is below, renames in and out show as such, data ranges
 * merge within a transaction, cursors of another pool / a reset journal /
 * a trimmed range get their own errors.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "reflinkfs/fs.h"
#include "reflinkfs/journal.h"
#include "reflinkfs/log.h"

#include "fs/link_names.h" /* link_names_walks */

#define JNL_TEST_RANGES 16 /* JNL_RANGES_MAX */

static char g_dir[4096];
static char g_pool[4200], g_pool2[4200];
static const struct rfs_ctx g_ctx = {.pid = 1, .umask = 022};

static int setup(void **state)
{
	(void)state;
	const char *base = getenv("RFS_TEST_DIR");
	snprintf(g_dir, sizeof(g_dir), "%s/jnlXXXXXX", base && *base ? base : "/tmp");
	if (!mkdtemp(g_dir))
		return -1;
	snprintf(g_pool, sizeof(g_pool), "%s/pool", g_dir);
	snprintf(g_pool2, sizeof(g_pool2), "%s/pool2", g_dir);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	unlink(g_pool);
	unlink(g_pool2);
	rmdir(g_dir);
	return 0;
}

static rfs_fs *fresh(unsigned flags)
{
	rfs_fs *fs;
	unlink(g_pool);
	assert_int_equal(rfs_fs_mkfs(g_pool, 64ull << 20, 0), 0);
	assert_int_equal(rfs_fs_open(g_pool, flags, &fs), 0);
	return fs;
}

/* What a read delivered: "kind path [old]" lines, and the seqs. */
struct got {
	char text[16384];
	uint64_t seqs[1024], inos[1024];
	unsigned n;
	struct rfs_change_range r0; /* ranges of the last data record */
	unsigned nranges;
};

static int collect(void *arg, const struct rfs_change *c)
{
	struct got *g = arg;
	size_t l = strlen(g->text);
	snprintf(g->text + l, sizeof(g->text) - l, "%s %s%s%s%s%s%s\n", rfs_change_kind_name(c->kind),
		 c->path ? c->path : "(null)", c->old_path ? " " : "",
		 c->old_path ? c->old_path : "",
		 (c->also & (1u << RFS_CHANGE_DATA)) ? "+data" : "",
		 (c->also & (1u << RFS_CHANGE_ATTR)) ? "+attr" : "",
		 (c->also & (1u << RFS_CHANGE_XATTR)) ? "+xattr" : "");
	if (g->n < 1024) {
		g->seqs[g->n] = c->seq;
		g->inos[g->n] = c->ino;
	}
	g->n++;
	if (c->kind == RFS_CHANGE_DATA || c->nranges) {
		g->nranges = c->nranges;
		g->r0 = c->ranges[0];
	}
	return 0;
}

/* Read everything below dir since cursor into g; next cursor in out. */
static int read_changes(rfs_fs *fs, rfs_nodeid dir, const char *cursor, struct got *g,
			char *out)
{
	memset(g, 0, sizeof(*g));
	struct rfs_changes_page page = {0};
	int ret = rfs_fs_changes(fs, dir, cursor, &page, collect, g);
	if (!ret) {
		assert_true(page.done);
		if (out)
			strcpy(out, page.cursor);
	}
	return ret;
}

static rfs_nodeid mkdir_(rfs_fs *fs, rfs_nodeid dir, const char *name)
{
	rfs_nodeid n;
	struct stat st;
	assert_int_equal(rfs_fs_mkdir(fs, &g_ctx, dir, name, 0755, &n, &st), 0);
	return n;
}

static rfs_nodeid mkfile(rfs_fs *fs, rfs_nodeid dir, const char *name)
{
	rfs_nodeid n;
	struct stat st;
	assert_int_equal(rfs_fs_create(fs, &g_ctx, dir, name, 0644, &n, &st), 0);
	return n;
}

static void write_at(rfs_fs *fs, rfs_nodeid n, uint64_t off, size_t len)
{
	char *buf = calloc(1, len);
	assert_non_null(buf);
	assert_int_equal(rfs_fs_write(fs, n, buf, len, off), (ssize_t)len);
	free(buf);
}

static void test_every_kind(void **state)
{
	(void)state;
	rfs_fs *fs = fresh(0);
	char c0[RFS_CURSOR_MAX], c1[RFS_CURSOR_MAX];
	struct got g;
	assert_int_equal(rfs_fs_changes_cursor(fs, c0), 0);
	rfs_nodeid d = mkdir_(fs, RFS_ROOT_NODE, "d");
	rfs_nodeid f = mkfile(fs, d, "f");
	rfs_nodeid s, x;
	struct stat st;
	assert_int_equal(rfs_fs_symlink(fs, &g_ctx, d, "s", "target", &s, &st), 0);
	assert_int_equal(rfs_fs_mknod(fs, &g_ctx, d, "p", S_IFIFO | 0644, 0, &x, &st), 0);
	write_at(fs, f, 0, 10000);
	struct stat in = {.st_mode = 0600};
	assert_int_equal(rfs_fs_setattr(fs, f, &in, RFS_SET_MODE, &st), 0);
	assert_int_equal(rfs_fs_setxattr(fs, &g_ctx, f, "user.a", "v", 1, 0), 0);
	assert_int_equal(rfs_fs_link(fs, f, d, "f2", &st), 0);
	assert_int_equal(rfs_fs_unlink(fs, d, "f2"), 0);
	assert_int_equal(rfs_fs_rename(fs, &g_ctx, d, "s", d, "s2", 0), 0);
	assert_int_equal(rfs_fs_unlink(fs, d, "p"), 0);
	rfs_nodeid e = mkdir_(fs, RFS_ROOT_NODE, "e");
	assert_int_equal(rfs_fs_rmdir(fs, RFS_ROOT_NODE, "e"), 0);
	rfs_nodeid snap;
	assert_int_equal(rfs_fs_snapshot(fs, d, RFS_ROOT_NODE, "snap", 0, &snap, &st), 0);
	assert_int_equal(rfs_fs_snapshot_delete(fs, RFS_ROOT_NODE, "snap"), 0);
	/* Nothing is delivered before the commit. */
	assert_int_equal(read_changes(fs, RFS_ROOT_NODE, c0, &g, c1), 0);
	assert_int_equal(g.n, 0);
	assert_true(rfs_fs_changes_pending(fs));
	assert_int_equal(rfs_fs_sync(fs), 0);
	assert_false(rfs_fs_changes_pending(fs));
	assert_int_equal(read_changes(fs, RFS_ROOT_NODE, c0, &g, c1), 0);
	/* The write, chmod and setxattr of the new file merge into its
	 * create: same inode, same path, same transaction. */
	const char *want = "mkdir d\n"
			   "create d/f+data+attr+xattr\n"
			   "symlink d/s\n"
			   "mkfifo d/p\n"
			   "link d/f2\n"
			   "unlink d/f2\n"
			   "rename d/s2 d/s\n"
			   "unlink d/p\n"
			   "mkdir e\n"
			   "rmdir e\n"
			   "snapshot snap\n"
			   "snapshot_delete snap\n";
	assert_string_equal(g.text, want);
	for (unsigned i = 1; i < g.n; i++)
		assert_true(g.seqs[i] > g.seqs[i - 1]);
	/* The snapshot's delete names its root's st_ino, as its creation. */
	assert_int_equal(g.n, 12);
	assert_int_not_equal(g.inos[10], 0);
	assert_int_equal(g.inos[11], g.inos[10]);
	assert_int_equal(g.nranges, 1); /* the write's range, on the create */
	assert_int_equal(g.r0.off, 0);
	assert_int_equal(g.r0.len, 10000);
	/* Below d: the same paths, relative to d; nothing of e or snap. */
	assert_int_equal(read_changes(fs, d, c0, &g, NULL), 0);
	assert_string_equal(g.text, "create f+data+attr+xattr\nsymlink s\nmkfifo p\n"
				    "link f2\nunlink f2\nrename s2 s\nunlink p\n");
	/* The new cursor: nothing new since. */
	assert_int_equal(read_changes(fs, RFS_ROOT_NODE, c1, &g, NULL), 0);
	assert_int_equal(g.n, 0);
	rfs_fs_forget(fs, d, 1);
	rfs_fs_forget(fs, f, 1);
	rfs_fs_forget(fs, s, 1);
	rfs_fs_forget(fs, x, 1);
	rfs_fs_forget(fs, e, 1);
	rfs_fs_forget(fs, snap, 1);
	assert_int_equal(rfs_fs_close(fs), 0);
}

static void test_data_merge(void **state)
{
	(void)state;
	rfs_fs *fs = fresh(0);
	char c0[RFS_CURSOR_MAX];
	struct got g;
	rfs_nodeid f = mkfile(fs, RFS_ROOT_NODE, "big");
	assert_int_equal(rfs_fs_sync(fs), 0);
	assert_int_equal(rfs_fs_changes_cursor(fs, c0), 0);
	/* 256 sequential writes in one transaction: one record. */
	for (unsigned i = 0; i < 256; i++)
		write_at(fs, f, (uint64_t)i * 4096, 4096);
	assert_int_equal(rfs_fs_sync(fs), 0);
	assert_int_equal(read_changes(fs, RFS_ROOT_NODE, c0, &g, c0), 0);
	assert_string_equal(g.text, "data big\n");
	assert_int_equal(g.nranges, 1);
	assert_int_equal(g.r0.off, 0);
	assert_int_equal(g.r0.len, 256 * 4096);
	/* A committed record is never changed: the next write is a new one. */
	write_at(fs, f, 0, 100);
	assert_int_equal(rfs_fs_sync(fs), 0);
	assert_int_equal(read_changes(fs, RFS_ROOT_NODE, c0, &g, NULL), 0);
	assert_int_equal(g.n, 1);
	assert_int_equal(g.r0.len, 100);
	rfs_fs_forget(fs, f, 1);
	assert_int_equal(rfs_fs_close(fs), 0);
}

/* Every range of every data record below the root, per file name. */
struct ranges_got {
	unsigned nrec;
	char name[512][16];
	unsigned nranges[512];
	struct rfs_change_range r[512][JNL_TEST_RANGES];
};

static int collect_ranges(void *arg, const struct rfs_change *c)
{
	struct ranges_got *g = arg;
	assert_true(g->nrec < 512 && c->path && strlen(c->path) < 16);
	assert_true(c->nranges <= JNL_TEST_RANGES);
	strcpy(g->name[g->nrec], c->path);
	g->nranges[g->nrec] = c->nranges;
	memcpy(g->r[g->nrec], c->ranges, sizeof(*c->ranges) * c->nranges);
	g->nrec++;
	return 0;
}

/* Whether record k holds [off, off + len) in one of its ranges. */
static bool has_range(const struct ranges_got *g, unsigned k, uint64_t off, uint64_t len)
{
	for (unsigned i = 0; i < g->nranges[k]; i++)
		if (g->r[k][i].off <= off && off + len <= g->r[k][i].off + g->r[k][i].len)
			return true;
	return false;
}

/* Merged records not stored yet are encoded once, when their slot is
 * taken or the commit stores them (journal.c, stale_encode); what is read
 * back is every merge.  Writes 1 byte at offsets whose numbers grow past
 * 1, 2 and 3 bytes (their encoded length changes), ranges that join,
 * 17 disjoint ones (a record holds 16), between writes to 300 other
 * files (more than the 256 slots: records are pushed out of them before
 * the commit). */
static void test_merge_deferred(void **state)
{
	(void)state;
	rfs_fs *fs = fresh(0);
	char c0[RFS_CURSOR_MAX];
	rfs_nodeid f = mkfile(fs, RFS_ROOT_NODE, "f"), d = mkdir_(fs, RFS_ROOT_NODE, "d");
	rfs_nodeid many[300];
	for (int i = 0; i < 300; i++) {
		char name[16];
		snprintf(name, sizeof(name), "m%d", i);
		many[i] = mkfile(fs, d, name);
	}
	assert_int_equal(rfs_fs_sync(fs), 0);
	assert_int_equal(rfs_fs_changes_cursor(fs, c0), 0);
	static const uint64_t offs[17] = {0,	  100,	   1000,    20000,   300000,  4000000,
					  50000000, 600000000, 7,	    130,     17000,   2100000,
					  90,	  999999,  5555,    77777777, 123456789};
	for (int i = 0; i < 17; i++) {
		write_at(fs, f, offs[i] * 2, 1);
		/* every file of d once between two writes of f */
		for (int k = i * 18; k < (i + 1) * 18 && k < 300; k++)
			write_at(fs, many[k], (uint64_t)k * 3, 2);
	}
	/* joins: 201..299, byte by byte */
	for (uint64_t o = 201; o < 300; o++)
		write_at(fs, f, o, 1);
	assert_int_equal(rfs_fs_sync(fs), 0);
	struct ranges_got *g = calloc(1, sizeof(*g));
	struct rfs_changes_page page = {0};
	assert_int_equal(rfs_fs_changes(fs, RFS_ROOT_NODE, c0, &page, collect_ranges, g), 0);
	(void)d;
	/* f: its records (a new one when one is full, or when a record of
	 * d's files took its slot) hold every byte written, the bytes
	 * after 200 joined in one range. */
	unsigned nf = 0, nm = 0, fr = 0;
	for (unsigned k = 0; k < g->nrec; k++) {
		if (!strcmp(g->name[k], "f")) {
			nf++;
			fr += g->nranges[k];
		} else {
			nm++;
			assert_int_equal(g->nranges[k], 1);
			int m = atoi(g->name[k] + 3); /* "d/mN" */
			assert_int_equal(g->r[k][0].off, (uint64_t)m * 3);
			assert_int_equal(g->r[k][0].len, 2);
		}
	}
	assert_int_equal(nm, 300);
	assert_true(nf >= 2);
	assert_int_equal(fr, 18);
	for (int i = 0; i < 18; i++) {
		uint64_t off = i < 17 ? offs[i] * 2 : 201, len = i < 17 ? 1 : 99;
		bool found = false;
		for (unsigned k = 0; k < g->nrec && !found; k++)
			found = !strcmp(g->name[k], "f") && has_range(g, k, off, len);
		assert_true(found);
	}
	free(g);
	rfs_fs_forget(fs, f, 1);
	assert_int_equal(rfs_fs_close(fs), 0);
}

/* An ACL that says no more than the mode bits is a chmod (cp -a sets one
 * on every file): recorded as attr; an ACL that is kept, as xattr. */
static void test_minimal_acl_is_attr(void **state)
{
	(void)state;
	rfs_fs *fs = fresh(0);
	char c0[RFS_CURSOR_MAX];
	struct got g;
	rfs_nodeid f = mkfile(fs, RFS_ROOT_NODE, "f");
	assert_int_equal(rfs_fs_sync(fs), 0);
	assert_int_equal(rfs_fs_changes_cursor(fs, c0), 0);
	/* POSIX ACL xattr: version 2, then {tag, perm, id} entries. */
	struct acl_e {
		uint16_t tag, perm;
		uint32_t id;
	};
	struct {
		uint32_t version;
		struct acl_e e[5];
	} acl = {2, {{0x01, 6, ~0u}, {0x04, 4, ~0u}, {0x20, 4, ~0u}}};
	assert_int_equal(rfs_fs_setxattr(fs, &g_ctx, f, "system.posix_acl_access", &acl,
					 4 + 3 * 8, 0), 0);
	assert_int_equal(rfs_fs_sync(fs), 0);
	assert_int_equal(read_changes(fs, RFS_ROOT_NODE, c0, &g, c0), 0);
	assert_string_equal(g.text, "attr f\n");
	acl.e[1] = (struct acl_e){0x02, 6, 1000};
	acl.e[2] = (struct acl_e){0x04, 4, ~0u};
	acl.e[3] = (struct acl_e){0x10, 6, ~0u};
	acl.e[4] = (struct acl_e){0x20, 4, ~0u};
	assert_int_equal(rfs_fs_setxattr(fs, &g_ctx, f, "system.posix_acl_access", &acl,
					 4 + 5 * 8, 0), 0);
	assert_int_equal(rfs_fs_sync(fs), 0);
	assert_int_equal(read_changes(fs, RFS_ROOT_NODE, c0, &g, NULL), 0);
	assert_string_equal(g.text, "xattr f\n");
	rfs_fs_forget(fs, f, 1);
	assert_int_equal(rfs_fs_close(fs), 0);
}

/* Data, attr and xattr changes merge into the last record of the same
 * file and path of the transaction; never across a rename, a link or an
 * unlink of it (the change would appear before them), nor across a
 * commit (a committed record may have been delivered). */
static void test_kinds_merge(void **state)
{
	(void)state;
	rfs_fs *fs = fresh(0);
	char c0[RFS_CURSOR_MAX];
	struct got g;
	struct stat st, in = {.st_mode = 0600};
	assert_int_equal(rfs_fs_changes_cursor(fs, c0), 0);
	rfs_nodeid f = mkfile(fs, RFS_ROOT_NODE, "f");
	write_at(fs, f, 0, 100);
	assert_int_equal(rfs_fs_setattr(fs, f, &in, RFS_SET_MODE, &st), 0);
	assert_int_equal(rfs_fs_rename(fs, &g_ctx, RFS_ROOT_NODE, "f", RFS_ROOT_NODE, "g", 0), 0);
	write_at(fs, f, 100, 50);
	assert_int_equal(rfs_fs_setxattr(fs, &g_ctx, f, "user.a", "v", 1, 0), 0);
	assert_int_equal(rfs_fs_link(fs, f, RFS_ROOT_NODE, "h", &st), 0);
	assert_int_equal(rfs_fs_setattr(fs, f, &in, RFS_SET_MODE, &st), 0);
	assert_int_equal(rfs_fs_sync(fs), 0);
	write_at(fs, f, 0, 10);
	assert_int_equal(rfs_fs_sync(fs), 0);
	assert_int_equal(read_changes(fs, RFS_ROOT_NODE, c0, &g, NULL), 0);
	assert_string_equal(g.text, "create f+data+attr\n"
				    "rename g f\n"
				    "data g+xattr\n"
				    "link h\n"
				    "attr g\n"
				    "attr h\n"
				    "data g\n"
				    "data h\n");
	for (unsigned i = 1; i < g.n; i++)
		assert_true(g.seqs[i] > g.seqs[i - 1]);
	rfs_fs_forget(fs, f, 1);
	assert_int_equal(rfs_fs_close(fs), 0);
}

static void test_subtree_and_moves(void **state)
{
	(void)state;
	rfs_fs *fs = fresh(0);
	char c0[RFS_CURSOR_MAX];
	struct got g;
	rfs_nodeid a = mkdir_(fs, RFS_ROOT_NODE, "a");
	rfs_nodeid b = mkdir_(fs, RFS_ROOT_NODE, "b");
	rfs_nodeid a1 = mkdir_(fs, a, "a1");
	rfs_nodeid x = mkfile(fs, b, "x");
	rfs_nodeid y = mkfile(fs, a1, "y");
	assert_int_equal(rfs_fs_sync(fs), 0);
	assert_int_equal(rfs_fs_changes_cursor(fs, c0), 0);
	write_at(fs, x, 0, 10); /* outside a */
	write_at(fs, y, 0, 10); /* inside a, two levels down */
	assert_int_equal(rfs_fs_rename(fs, &g_ctx, b, "x", a1, "x", 0), 0); /* into a */
	assert_int_equal(rfs_fs_rename(fs, &g_ctx, a1, "y", b, "y", 0), 0); /* out of a */
	assert_int_equal(rfs_fs_rename(fs, &g_ctx, a1, "x", a, "x", 0), 0); /* within a */
	rfs_nodeid z = mkfile(fs, b, "z"); /* outside */
	assert_int_equal(rfs_fs_sync(fs), 0);
	assert_int_equal(read_changes(fs, a, c0, &g, NULL), 0);
	assert_string_equal(g.text, "data a1/y\nmove_in a1/x\nmove_out a1/y\nrename x a1/x\n");
	assert_int_equal(read_changes(fs, b, c0, &g, NULL), 0);
	assert_string_equal(g.text, "data x\nmove_out x\nmove_in y\ncreate z\n");
	assert_int_equal(read_changes(fs, a1, c0, &g, NULL), 0);
	assert_string_equal(g.text, "data y\nmove_in x\nmove_out y\nmove_out x\n");
	assert_int_equal(read_changes(fs, RFS_ROOT_NODE, c0, &g, NULL), 0);
	assert_string_equal(g.text, "data b/x\ndata a/a1/y\nrename a/a1/x b/x\n"
				    "rename b/y a/a1/y\nrename a/x a/a1/x\ncreate b/z\n");
	/* A file is not a directory to read below. */
	assert_int_equal(read_changes(fs, z, c0, &g, NULL), -ENOTDIR);
	rfs_nodeid ns[] = {a, b, a1, x, y, z};
	for (unsigned i = 0; i < 6; i++)
		rfs_fs_forget(fs, ns[i], 1);
	assert_int_equal(rfs_fs_close(fs), 0);
}

/* Changes inside a snapshot below the queried directory are listed. */
static void test_snapshot_below(void **state)
{
	(void)state;
	rfs_fs *fs = fresh(0);
	char c0[RFS_CURSOR_MAX];
	struct got g;
	struct stat st;
	rfs_nodeid top = mkdir_(fs, RFS_ROOT_NODE, "top");
	rfs_nodeid src = mkdir_(fs, RFS_ROOT_NODE, "src");
	rfs_nodeid snap;
	assert_int_equal(rfs_fs_snapshot(fs, src, top, "s", 0, &snap, &st), 0);
	assert_int_equal(rfs_fs_sync(fs), 0);
	assert_int_equal(rfs_fs_changes_cursor(fs, c0), 0);
	rfs_nodeid f = mkfile(fs, snap, "in-snap");
	assert_int_equal(rfs_fs_sync(fs), 0);
	assert_int_equal(read_changes(fs, top, c0, &g, NULL), 0);
	assert_string_equal(g.text, "create s/in-snap\n");
	assert_int_equal(read_changes(fs, src, c0, &g, NULL), 0);
	assert_int_equal(g.n, 0);
	rfs_nodeid ns[] = {top, src, snap, f};
	for (unsigned i = 0; i < 4; i++)
		rfs_fs_forget(fs, ns[i], 1);
	assert_int_equal(rfs_fs_close(fs), 0);
}

/* Lines of g's text sorted, for answers whose order follows a walk. */
static void sorted(const struct got *g, char *out, size_t cap)
{
	char copy[16384], *lines[1024];
	size_t n = 0;
	strcpy(copy, g->text);
	for (char *save, *l = strtok_r(copy, "\n", &save); l && n < 1024;
	     l = strtok_r(NULL, "\n", &save))
		lines[n++] = l;
	for (size_t i = 1; i < n; i++)
		for (size_t k = i; k > 0 && strcmp(lines[k - 1], lines[k]) > 0; k--) {
			char *t = lines[k];
			lines[k] = lines[k - 1];
			lines[k - 1] = t;
		}
	out[0] = 0;
	for (size_t i = 0; i < n; i++) {
		strncat(out, lines[i], cap - strlen(out) - 2);
		strcat(out, "\n");
	}
}

/* A change through a hard-linked inode is listed under each of its
 * names' directories, with that name's path; renames of a directory
 * above a name and unlinks of a name are followed; each name's data
 * record (and the xattr change after it) merges on its own; names inside a snapshot are the snapshot's. */
static void test_hard_links(void **state)
{
	(void)state;
	rfs_fs *fs = fresh(0);
	char c0[RFS_CURSOR_MAX], c1[RFS_CURSOR_MAX], buf[16384];
	struct got g;
	struct stat st;
	rfs_nodeid a = mkdir_(fs, RFS_ROOT_NODE, "a");
	rfs_nodeid b = mkdir_(fs, RFS_ROOT_NODE, "b");
	rfs_nodeid bc = mkdir_(fs, b, "c");
	rfs_nodeid other = mkdir_(fs, RFS_ROOT_NODE, "other");
	rfs_nodeid f = mkfile(fs, a, "f");
	assert_int_equal(rfs_fs_link(fs, f, bc, "g", &st), 0);
	rfs_fs_forget(fs, f, 1); /* link's own lookup */
	assert_int_equal(rfs_fs_sync(fs), 0);
	assert_int_equal(rfs_fs_changes_cursor(fs, c0), 0);
	write_at(fs, f, 0, 4096);
	write_at(fs, f, 4096, 4096); /* same transaction: merged per name */
	assert_int_equal(rfs_fs_setxattr(fs, &g_ctx, f, "user.x", "1", 1, 0), 0);
	assert_int_equal(rfs_fs_sync(fs), 0);
	assert_int_equal(read_changes(fs, RFS_ROOT_NODE, c0, &g, c1), 0);
	sorted(&g, buf, sizeof(buf));
	assert_string_equal(buf, "data a/f+xattr\ndata b/c/g+xattr\n");
	assert_int_equal(g.nranges, 1);
	assert_int_equal(g.r0.off, 0);
	assert_int_equal(g.r0.len, 8192);
	assert_int_equal(read_changes(fs, a, c0, &g, NULL), 0);
	assert_string_equal(g.text, "data f+xattr\n");
	assert_int_equal(read_changes(fs, b, c0, &g, NULL), 0);
	assert_string_equal(g.text, "data c/g+xattr\n");
	assert_int_equal(read_changes(fs, bc, c0, &g, NULL), 0);
	assert_string_equal(g.text, "data g+xattr\n");
	assert_int_equal(read_changes(fs, other, c0, &g, NULL), 0);
	assert_int_equal(g.n, 0);

	/* A directory above a name renamed, the other name unlinked: the
	 * next change is listed under the surviving name's new path. */
	assert_int_equal(rfs_fs_rename(fs, &g_ctx, RFS_ROOT_NODE, "b", RFS_ROOT_NODE, "b2", 0), 0);
	assert_int_equal(rfs_fs_unlink(fs, a, "f"), 0);
	assert_int_equal(rfs_fs_sync(fs), 0);
	assert_int_equal(rfs_fs_changes_cursor(fs, c1), 0);
	struct stat in = {.st_mode = 0600};
	assert_int_equal(rfs_fs_setattr(fs, f, &in, RFS_SET_MODE, &st), 0);
	assert_int_equal(rfs_fs_sync(fs), 0);
	assert_int_equal(read_changes(fs, RFS_ROOT_NODE, c1, &g, NULL), 0);
	assert_string_equal(g.text, "attr b2/c/g\n");
	assert_int_equal(read_changes(fs, a, c1, &g, NULL), 0);
	assert_int_equal(g.n, 0);

	/* Two names inside a snapshot: a change through the snapshot's
	 * inode is listed under the snapshot's names only. */
	assert_int_equal(rfs_fs_link(fs, f, b, "h", &st), 0);
	rfs_fs_forget(fs, f, 1);
	rfs_nodeid snap, sc, sg;
	assert_int_equal(rfs_fs_snapshot(fs, b, RFS_ROOT_NODE, "snap", 0, &snap, &st), 0);
	assert_int_equal(rfs_fs_lookup(fs, snap, "c", &sc, &st), 0);
	assert_int_equal(rfs_fs_lookup(fs, sc, "g", &sg, &st), 0);
	assert_int_equal(rfs_fs_sync(fs), 0);
	assert_int_equal(rfs_fs_changes_cursor(fs, c1), 0);
	write_at(fs, sg, 0, 100);
	assert_int_equal(rfs_fs_sync(fs), 0);
	assert_int_equal(read_changes(fs, RFS_ROOT_NODE, c1, &g, NULL), 0);
	sorted(&g, buf, sizeof(buf));
	assert_string_equal(buf, "data snap/c/g\ndata snap/h\n");
	assert_int_equal(read_changes(fs, sc, c1, &g, NULL), 0);
	assert_string_equal(g.text, "data g\n");
	assert_int_equal(read_changes(fs, b, c1, &g, NULL), 0);
	assert_int_equal(g.n, 0);

	/* Changes to several hard-linked inodes between two name changes:
	 * their names come from one walk. */
	rfs_nodeid l1 = mkfile(fs, other, "l1"), l2 = mkfile(fs, other, "l2");
	assert_int_equal(rfs_fs_link(fs, l1, a, "l1b", &st), 0);
	assert_int_equal(rfs_fs_link(fs, l2, a, "l2b", &st), 0);
	rfs_fs_forget(fs, l1, 1);
	rfs_fs_forget(fs, l2, 1);
	assert_int_equal(rfs_fs_sync(fs), 0);
	assert_int_equal(rfs_fs_changes_cursor(fs, c1), 0);
	uint64_t walks = link_names_walks(fs);
	write_at(fs, l1, 0, 10);
	write_at(fs, l2, 0, 10);
	write_at(fs, f, 0, 10);
	assert_int_equal(link_names_walks(fs), walks + 1);
	assert_int_equal(rfs_fs_sync(fs), 0);
	assert_int_equal(read_changes(fs, a, c1, &g, NULL), 0);
	sorted(&g, buf, sizeof(buf));
	assert_string_equal(buf, "data l1b\ndata l2b\n");
	assert_int_equal(read_changes(fs, other, c1, &g, NULL), 0);
	sorted(&g, buf, sizeof(buf));
	assert_string_equal(buf, "data l1\ndata l2\n");
	rfs_fs_forget(fs, l1, 1);
	rfs_fs_forget(fs, l2, 1);

	rfs_nodeid ns[] = {a, b, bc, other, f, snap, sc, sg};
	for (unsigned i = 0; i < sizeof(ns) / sizeof(ns[0]); i++)
		rfs_fs_forget(fs, ns[i], 1);
	assert_int_equal(rfs_fs_close(fs), 0);
}

static void test_seq_across_reopen_and_crash(void **state)
{
	(void)state;
	rfs_fs *fs = fresh(RFS_FS_CRASHSIM);
	char c0[RFS_CURSOR_MAX], c1[RFS_CURSOR_MAX];
	struct got g;
	assert_int_equal(rfs_fs_changes_cursor(fs, c0), 0);
	rfs_nodeid f = mkfile(fs, RFS_ROOT_NODE, "kept");
	rfs_fs_forget(fs, f, 1);
	assert_int_equal(rfs_fs_sync(fs), 0);
	f = mkfile(fs, RFS_ROOT_NODE, "lost");
	rfs_fs_forget(fs, f, 1);
	rfs_fs_crash(fs, RFS_CRASH_DROP_ALL, 1);
	assert_int_equal(rfs_fs_open(g_pool, RFS_FS_CRASHSIM, &fs), 0);
	/* Exactly the committed change survived. */
	assert_int_equal(read_changes(fs, RFS_ROOT_NODE, c0, &g, c1), 0);
	assert_string_equal(g.text, "create kept\n");
	uint64_t last = g.seqs[0];
	f = mkfile(fs, RFS_ROOT_NODE, "after");
	rfs_fs_forget(fs, f, 1);
	assert_int_equal(rfs_fs_close(fs), 0);
	assert_int_equal(rfs_fs_open(g_pool, 0, &fs), 0);
	assert_int_equal(read_changes(fs, RFS_ROOT_NODE, c1, &g, NULL), 0);
	assert_string_equal(g.text, "create after\n");
	assert_true(g.seqs[0] > last);
	assert_int_equal(rfs_fs_close(fs), 0);
}

static void test_cursor_errors(void **state)
{
	(void)state;
	rfs_fs *fs = fresh(0);
	char c0[RFS_CURSOR_MAX], other[RFS_CURSOR_MAX];
	struct got g;
	assert_int_equal(rfs_fs_changes_cursor(fs, c0), 0);
	assert_int_equal(read_changes(fs, RFS_ROOT_NODE, "not a cursor", &g, NULL), -EINVAL);
	/* Another pool's cursor. */
	rfs_fs *fs2;
	assert_int_equal(rfs_fs_mkfs(g_pool2, 32ull << 20, 0), 0);
	assert_int_equal(rfs_fs_open(g_pool2, 0, &fs2), 0);
	assert_int_equal(rfs_fs_changes_cursor(fs2, other), 0);
	assert_int_equal(rfs_fs_close(fs2), 0);
	assert_int_equal(read_changes(fs, RFS_ROOT_NODE, other, &g, NULL), -EXDEV);
	/* Retention: a small limit trims the oldest records. */
	assert_int_equal(rfs_fs_journal_set_limit(fs, 1000), -EINVAL);
	assert_int_equal(rfs_fs_journal_set_limit(fs, RFS_JOURNAL_MIN_BYTES), 0);
	char name[64];
	for (unsigned i = 0; i < 2000; i++) {
		snprintf(name, sizeof(name), "file-with-a-long-name-%04u", i);
		rfs_fs_forget(fs, mkfile(fs, RFS_ROOT_NODE, name), 1);
	}
	assert_int_equal(rfs_fs_sync(fs), 0);
	struct rfs_journal_stat js;
	assert_int_equal(rfs_fs_journal_stat(fs, NULL, &js), 0);
	assert_true(js.bytes <= js.limit_bytes);
	assert_true(js.oldest > 1);
	assert_true(js.nrecords < 2000);
	assert_int_equal(read_changes(fs, RFS_ROOT_NODE, c0, &g, NULL), -ERANGE);
	/* Everything kept is still readable, in order, without gaps. */
	assert_int_equal(read_changes(fs, RFS_ROOT_NODE, NULL, &g, NULL), 0);
	assert_int_equal(g.n, js.nrecords);
	assert_int_equal(g.seqs[0], js.oldest);
	/* The journal's state says the same of each cursor as a read. */
	assert_int_equal(rfs_fs_journal_stat(fs, c0, &js), 0);
	assert_int_equal(js.since_status, -ERANGE);
	assert_int_equal(rfs_fs_journal_stat(fs, other, &js), 0);
	assert_int_equal(js.since_status, -EXDEV);
	assert_int_equal(rfs_fs_journal_stat(fs, "rfsj1:nonsense", &js), 0);
	assert_int_equal(js.since_status, -EINVAL);
	assert_int_equal(rfs_fs_journal_stat(fs, NULL, &js), 0);
	char oldest[RFS_CURSOR_MAX], now[RFS_CURSOR_MAX];
	memcpy(oldest, js.oldest_cursor, sizeof(oldest));
	memcpy(now, js.cursor, sizeof(now));
	assert_int_equal(rfs_fs_journal_stat(fs, oldest, &js), 0);
	assert_int_equal(js.since_status, 0);
	assert_int_equal(js.since_behind, js.nrecords);
	assert_int_equal(read_changes(fs, RFS_ROOT_NODE, oldest, &g, NULL), 0);
	assert_int_equal(g.n, js.nrecords);
	assert_int_equal(rfs_fs_journal_stat(fs, now, &js), 0);
	assert_int_equal(js.since_status, 0);
	assert_int_equal(js.since_behind, 0);
	/* A mount without journal resets it: old cursors get -ESTALE. */
	char c1[RFS_CURSOR_MAX];
	assert_int_equal(rfs_fs_changes_cursor(fs, c1), 0);
	assert_int_equal(rfs_fs_close(fs), 0);
	assert_int_equal(rfs_fs_open(g_pool, RFS_FS_NOJOURNAL, &fs), 0);
	assert_int_equal(read_changes(fs, RFS_ROOT_NODE, c1, &g, NULL), -ENOTSUP);
	rfs_fs_forget(fs, mkfile(fs, RFS_ROOT_NODE, "unrecorded"), 1);
	assert_int_equal(rfs_fs_close(fs), 0);
	assert_int_equal(rfs_fs_open(g_pool, 0, &fs), 0);
	assert_int_equal(read_changes(fs, RFS_ROOT_NODE, c1, &g, NULL), -ESTALE);
	/* Records of before the reset are never served again, not even to
	 * a read of everything kept. */
	rfs_fs_forget(fs, mkfile(fs, RFS_ROOT_NODE, "after-reset"), 1);
	assert_int_equal(rfs_fs_sync(fs), 0);
	assert_int_equal(read_changes(fs, RFS_ROOT_NODE, NULL, &g, NULL), 0);
	assert_string_equal(g.text, "create after-reset\n");
	assert_int_equal(rfs_fs_close(fs), 0);
}

/* A journal of format 1 (before compact records) is read as it is after
 * the upgrade, its records next to compact ones, and trimmed (the trim
 * reads a record to find its index items). */
static void test_format1_upgrade(void **state)
{
	(void)state;
	rfs_fs *fs = fresh(0);
	char c0[RFS_CURSOR_MAX];
	struct got g;
	assert_int_equal(rfs_fs_changes_cursor(fs, c0), 0);
	assert_int_equal(rfs_fs_journal_format1(fs), 0);
	rfs_nodeid d = mkdir_(fs, RFS_ROOT_NODE, "d");
	rfs_nodeid f = mkfile(fs, d, "old");
	write_at(fs, f, 4096, 100);
	assert_int_equal(rfs_fs_rename(fs, &g_ctx, d, "old", RFS_ROOT_NODE, "moved", 0), 0);
	assert_int_equal(rfs_fs_sync(fs), 0);
	rfs_fs_forget(fs, f, 1);
	assert_int_equal(rfs_fs_close(fs), 0);
	assert_int_equal(rfs_fs_open(g_pool, 0, &fs), 0);
	rfs_nodeid e = 0;
	struct stat st;
	assert_int_equal(rfs_fs_lookup(fs, RFS_ROOT_NODE, "d", &e, &st), 0);
	f = mkfile(fs, e, "new");
	write_at(fs, f, 0, 10);
	assert_int_equal(rfs_fs_sync(fs), 0);
	const char *all = "mkdir d\ncreate d/old+data\nrename moved d/old\ncreate d/new+data\n";
	assert_int_equal(read_changes(fs, RFS_ROOT_NODE, c0, &g, NULL), 0);
	assert_string_equal(g.text, all);
	assert_int_equal(g.nranges, 1); /* the compact record's range */
	assert_int_equal(g.r0.len, 10);
	assert_int_equal(read_changes(fs, e, c0, &g, NULL), 0);
	assert_string_equal(g.text, "create old+data\nmove_out old\ncreate new+data\n");
	/* Trim everything old: format 1 and compact records alike. */
	assert_int_equal(rfs_fs_journal_set_limit(fs, RFS_JOURNAL_MIN_BYTES), 0);
	char name[64];
	for (unsigned i = 0; i < 1500; i++) {
		snprintf(name, sizeof(name), "file-with-a-long-name-%04u", i);
		rfs_fs_forget(fs, mkfile(fs, e, name), 1);
	}
	assert_int_equal(rfs_fs_sync(fs), 0);
	struct rfs_journal_stat js;
	assert_int_equal(rfs_fs_journal_stat(fs, NULL, &js), 0);
	assert_int_equal(read_changes(fs, e, NULL, &g, NULL), 0);
	assert_int_equal(g.n, js.nrecords);
	assert_null(strstr(g.text, " old"));
	rfs_fs_forget(fs, f, 1);
	rfs_fs_forget(fs, e, 1);
	assert_int_equal(rfs_fs_close(fs), 0);
}

/* A stop in the callback leaves where to go on: pages cover everything once. */
static int stop_after_two(void *arg, const struct rfs_change *c)
{
	struct got *g = arg;
	if (g->n == 2)
		return 1;
	return collect(arg, c);
}

static void test_paging(void **state)
{
	(void)state;
	rfs_fs *fs = fresh(0);
	char name[32];
	for (unsigned i = 0; i < 5; i++) {
		snprintf(name, sizeof(name), "f%u", i);
		rfs_fs_forget(fs, mkfile(fs, RFS_ROOT_NODE, name), 1);
	}
	assert_int_equal(rfs_fs_sync(fs), 0);
	struct rfs_changes_page page = {0};
	struct got g, all;
	memset(&all, 0, sizeof(all));
	unsigned pages = 0;
	do {
		memset(&g, 0, sizeof(g));
		assert_int_equal(rfs_fs_changes(fs, RFS_ROOT_NODE, NULL, &page, stop_after_two, &g), 0);
		strcat(all.text, g.text);
		pages++;
	} while (!page.done);
	assert_int_equal(pages, 3);
	assert_string_equal(all.text, "create f0\ncreate f1\ncreate f2\ncreate f3\ncreate f4\n");
	assert_int_equal(rfs_fs_close(fs), 0);
}

int main(void)
{
	rfs_log_set_level(RFS_LOG_ERR);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_kind),
		cmocka_unit_test(test_data_merge),
		cmocka_unit_test(test_merge_deferred),
		cmocka_unit_test(test_minimal_acl_is_attr),
		cmocka_unit_test(test_kinds_merge),
		cmocka_unit_test(test_format1_upgrade),
		cmocka_unit_test(test_subtree_and_moves),
		cmocka_unit_test(test_snapshot_below),
		cmocka_unit_test(test_hard_links),
		cmocka_unit_test(test_seq_across_reopen_and_crash),
		cmocka_unit_test(test_cursor_errors),
		cmocka_unit_test(test_paging),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
