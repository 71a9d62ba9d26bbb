/*
 * Embedded directories (RFS_INODE_EMBED, src/fs/dir_embed.c): a new
 * directory keeps its entries in the tree holding its record, nested
 * ones too, until its embedded subtree passes RFS_EMBED_MAX entries, it
 * gets an xattr, or it moves to another directory.  Every form and
 * transition below is followed by a reopen and a clean fsck
 * (fx_reopen), and checked through the record's flags.
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

#include "fs/fs_internal.h"

#define BS RFS_BLOCK_SIZE

static const struct rfs_ctx g_ctx = {.uid = 1000, .gid = 1000, .pid = 1};

static rfs_fs *reopen(rfs_fs *fs)
{
	return fx_reopen(fs, 0);
}

static rfs_nodeid at(rfs_fs *fs, const char *path)
{
	rfs_nodeid n;
	assert_int_equal(rfs_fs_resolve(fs, path, &n, NULL), 0);
	return n;
}

static rfs_nodeid mkd(rfs_fs *fs, const char *parent, const char *name)
{
	rfs_nodeid n;
	struct stat st;
	assert_int_equal(rfs_fs_mkdir(fs, &g_ctx, at(fs, parent), name, 0755, &n, &st), 0);
	return n;
}

static rfs_nodeid mkf(rfs_fs *fs, const char *parent, const char *name, size_t bytes)
{
	rfs_nodeid n;
	struct stat st;
	assert_int_equal(rfs_fs_create(fs, &g_ctx, at(fs, parent), name, 0644, &n, &st), 0);
	if (bytes) {
		char *b = malloc(bytes);
		assert_non_null(b);
		for (size_t i = 0; i < bytes; i++)
			b[i] = (char)(i * 7 + bytes);
		assert_int_equal(rfs_fs_write(fs, n, b, bytes, 0), (ssize_t)bytes);
		free(b);
	}
	return n;
}

/* The record of path as stored. */
static struct rfs_irec rec_of(rfs_fs *fs, const char *path)
{
	struct rfs_irec r;
	rfs_nodeid id = at(fs, path);
	rfs_pool_rdlock(fs->pool);
	struct rfs_node *n = node_get(fs, id);
	assert_non_null(n);
	assert_int_equal(inode_read(fs, n, &r), 0);
	rfs_pool_unlock(fs->pool);
	return r;
}

static bool embedded(rfs_fs *fs, const char *path)
{
	struct rfs_irec r = rec_of(fs, path);
	return is_embed(&r.i);
}

/* Names of directory path, sorted, joined with ','. */
struct names {
	char buf[8192];
	size_t len;
	unsigned n;
};

static int add_name(void *arg, const char *name, const struct stat *st, rfs_nodeid id,
		    uint64_t off)
{
	struct names *l = arg;
	(void)st;
	(void)off;
	(void)id;
	if (!strcmp(name, ".") || !strcmp(name, ".."))
		return 0;
	size_t n = strlen(name);
	assert_true(l->len + n + 2 < sizeof(l->buf));
	memcpy(l->buf + l->len, name, n);
	l->len += n;
	l->buf[l->len++] = '\n';
	l->buf[l->len] = 0;
	l->n++;
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static char *list(rfs_fs *fs, const char *path)
{
	static struct names l;
	memset(&l, 0, sizeof(l));
	assert_int_equal(rfs_fs_readdir(fs, at(fs, path), 0, false, add_name, &l), 0);
	char *v[512];
	unsigned n = 0;
	for (char *s = l.buf, *e; *s; s = e + 1) {
		e = strchr(s, '\n');
		*e = 0;
		v[n++] = s;
	}
	qsort(v, n, sizeof(*v), cmp_str);
	static char out[8192];
	out[0] = 0;
	for (unsigned i = 0; i < n; i++) {
		strcat(out, v[i]);
		if (i + 1 < n)
			strcat(out, ",");
	}
	return out;
}

static void test_nested_forms_and_clone(void **state)
{
	(void)state;
	rfs_fs *fs = fx_fresh(64 << 20, 0);
	mkd(fs, "/", "a");
	mkd(fs, "/a", "b");
	rfs_nodeid f = mkf(fs, "/a/b", "f", 3 * BS);
	rfs_nodeid g = mkf(fs, "/a/b", "g", 0);
	assert_true(embedded(fs, "/a"));
	assert_true(embedded(fs, "/a/b"));
	assert_int_equal(rec_of(fs, "/a").i.volume, 3); /* b, f, g */
	assert_int_equal(rfs_fs_clone_range(fs, f, BS, g, 0, BS), (ssize_t)BS);
	fs = reopen(fs);
	assert_string_equal(list(fs, "/a/b"), "f,g");
	assert_int_equal(rec_of(fs, "/a").i.volume, 3);
	assert_int_equal(rfs_fs_close(fs), 0);
}

static rfs_nodeid lookup(rfs_fs *fs, const char *dir, const char *name)
{
	rfs_nodeid n;
	int ret = rfs_fs_lookup(fs, at(fs, dir), name, &n, NULL);
	return ret ? 0 : n;
}

/* One entry per readdir call. */
struct one {
	uint64_t next;
	bool got;
};

static int take_one(void *arg, const char *name, const struct stat *st, rfs_nodeid id,
		    uint64_t next)
{
	struct one *o = arg;
	(void)name;
	(void)st;
	(void)id;
	o->next = next;
	o->got = true;
	return 1;
}

/* Entries of path read one per call, each call resuming at the offset
 * the one before gave. */
static unsigned count_resumed(rfs_fs *fs, const char *path)
{
	uint64_t off = 0;
	unsigned n = 0;
	for (;;) {
		struct one o = {0, false};
		assert_int_equal(rfs_fs_readdir(fs, at(fs, path), off, false, take_one, &o), 0);
		if (!o.got)
			return n;
		n++;
		off = o.next;
	}
}

static void test_entries(void **state)
{
	(void)state;
	rfs_fs *fs = fx_fresh(64 << 20, 0);
	mkd(fs, "/", "a");
	assert_true(embedded(fs, "/a"));
	for (int i = 0; i < 10; i++) {
		char nm[16];
		snprintf(nm, sizeof(nm), "f%d", i);
		mkf(fs, "/a", nm, (size_t)i * 1000);
	}
	fs = reopen(fs);
	assert_string_equal(list(fs, "/a"), "f0,f1,f2,f3,f4,f5,f6,f7,f8,f9");
	assert_int_equal(count_resumed(fs, "/a"), 12); /* with . and .. */
	assert_int_equal(rec_of(fs, "/a").i.volume, 10);
	/* data of a file in it */
	char b[16];
	assert_int_equal(rfs_fs_read(fs, at(fs, "/a/f3"), b, 4, 0), 4);
	/* unlink, link, rename within it and across, over an existing name */
	assert_int_equal(rfs_fs_unlink(fs, at(fs, "/a"), "f0"), 0);
	struct stat st;
	assert_int_equal(rfs_fs_link(fs, at(fs, "/a/f1"), at(fs, "/a"), "l1", &st), 0);
	assert_int_equal(rfs_fs_rename(fs, &g_ctx, at(fs, "/a"), "f2", at(fs, "/a"), "g2", 0), 0);
	mkd(fs, "/", "b");
	assert_int_equal(rfs_fs_rename(fs, &g_ctx, at(fs, "/a"), "f3", at(fs, "/b"), "f3", 0), 0);
	assert_int_equal(rfs_fs_rename(fs, &g_ctx, at(fs, "/a"), "f4", at(fs, "/a"), "f5", 0), 0);
	fs = reopen(fs);
	assert_string_equal(list(fs, "/a"), "f1,f5,f6,f7,f8,f9,g2,l1");
	assert_string_equal(list(fs, "/b"), "f3");
	assert_int_equal(rec_of(fs, "/a").i.volume, 8);
	assert_int_equal(rec_of(fs, "/b").i.volume, 1);
	assert_int_equal(rfs_fs_read(fs, at(fs, "/b/f3"), b, 4, 0), 4);
	/* rmdir: not while it has entries, then empty */
	assert_int_equal(rfs_fs_rmdir(fs, RFS_ROOT_NODE, "b"), -ENOTEMPTY);
	assert_int_equal(rfs_fs_unlink(fs, at(fs, "/b"), "f3"), 0);
	assert_int_equal(rfs_fs_rmdir(fs, RFS_ROOT_NODE, "b"), 0);
	fs = reopen(fs);
	assert_int_equal(lookup(fs, "/", "b"), 0);
	assert_int_equal(rfs_fs_close(fs), 0);
}

static void test_nesting_and_moves(void **state)
{
	(void)state;
	rfs_fs *fs = fx_fresh(64 << 20, 0);
	mkd(fs, "/", "a");
	mkd(fs, "/a", "b");
	mkd(fs, "/a/b", "c");
	mkf(fs, "/a/b/c", "x", 100);
	mkf(fs, "/a/b", "y", 5000);
	assert_true(embedded(fs, "/a/b/c"));
	assert_int_equal(rec_of(fs, "/a").i.volume, 4); /* b, c, x, y */
	assert_int_equal(rec_of(fs, "/a/b").i.volume, 0);
	fs = reopen(fs);
	/* renamed within its directory: still embedded, the same entries */
	assert_int_equal(rfs_fs_rename(fs, &g_ctx, at(fs, "/a"), "b", at(fs, "/a"), "b2", 0), 0);
	assert_true(embedded(fs, "/a/b2"));
	fs = reopen(fs);
	assert_string_equal(list(fs, "/a/b2/c"), "x");
	/* moved to another directory: it gets a tree of its own first, and
	 * its embedded child becomes a top with its own count */
	mkd(fs, "/", "d");
	assert_int_equal(rfs_fs_rename(fs, &g_ctx, at(fs, "/a"), "b2", at(fs, "/d"), "b", 0), 0);
	assert_false(embedded(fs, "/d/b"));
	assert_true(embedded(fs, "/d/b/c"));
	assert_int_equal(rec_of(fs, "/d/b/c").i.volume, 1);
	assert_int_equal(rec_of(fs, "/a").i.volume, 0);
	assert_int_equal(rec_of(fs, "/d").i.volume, 1);
	fs = reopen(fs);
	assert_string_equal(list(fs, "/d/b"), "c,y");
	assert_string_equal(list(fs, "/d/b/c"), "x");
	/* rename over an existing empty embedded directory, and exchange */
	mkd(fs, "/a", "e");
	mkd(fs, "/a", "e2");
	mkf(fs, "/a/e2", "z", 10);
	assert_int_equal(rfs_fs_rename(fs, &g_ctx, at(fs, "/a"), "e2", at(fs, "/a"), "e", 0), 0);
	assert_int_equal(rfs_fs_rename(fs, &g_ctx, at(fs, "/a"), "e", at(fs, "/d/b"), "c",
				       RFS_RENAME_EXCHANGE), 0);
	fs = reopen(fs);
	assert_string_equal(list(fs, "/a"), "e");
	assert_string_equal(list(fs, "/a/e"), "x");
	assert_string_equal(list(fs, "/d/b/c"), "z");
	assert_int_equal(rfs_fs_close(fs), 0);
}

static void test_materialize(void **state)
{
	(void)state;
	rfs_fs *fs = fx_fresh(64 << 20, 0);
	mkd(fs, "/", "a");
	mkd(fs, "/a", "s");
	/* RFS_EMBED_MAX entries in the embedded subtree of /a: s, then the
	 * rest in s */
	char nm[32];
	for (unsigned i = 0; i + 1 < RFS_EMBED_MAX; i++) {
		snprintf(nm, sizeof(nm), "f%03u", i);
		mkf(fs, "/a/s", nm, 0);
	}
	assert_true(embedded(fs, "/a"));
	assert_int_equal(rec_of(fs, "/a").i.volume, RFS_EMBED_MAX);
	fs = reopen(fs);
	/* one more: /a gets a tree of its own, /a/s is the top of its own */
	mkf(fs, "/a", "over", 0);
	assert_false(embedded(fs, "/a"));
	assert_true(embedded(fs, "/a/s"));
	assert_int_equal(rec_of(fs, "/a/s").i.volume, RFS_EMBED_MAX - 1);
	fs = reopen(fs);
	assert_int_equal(count_resumed(fs, "/a/s"), RFS_EMBED_MAX + 1);
	/* an xattr: a tree of its own first */
	mkd(fs, "/", "x");
	mkf(fs, "/x", "f", 0);
	assert_true(embedded(fs, "/x"));
	assert_int_equal(rfs_fs_setxattr(fs, &g_ctx, at(fs, "/x"), "user.k", "v", 1, 0), 0);
	assert_false(embedded(fs, "/x"));
	fs = reopen(fs);
	char v[4];
	assert_int_equal(rfs_fs_getxattr(fs, at(fs, "/x"), "user.k", v, sizeof(v)), 1);
	assert_string_equal(list(fs, "/x"), "f");
	/* a default ACL on the parent: the new directory has one too, so a
	 * tree of its own from the start */
	static const uint8_t acl[] = {
		2, 0, 0, 0,                                 /* version */
		1, 0, 7, 0, 0xff, 0xff, 0xff, 0xff,         /* user:: rwx */
		4, 0, 5, 0, 0xff, 0xff, 0xff, 0xff,         /* group:: r-x */
		0x20, 0, 5, 0, 0xff, 0xff, 0xff, 0xff,      /* other:: r-x */
	};
	assert_int_equal(rfs_fs_setxattr(fs, &g_ctx, at(fs, "/x"), "system.posix_acl_default",
					 acl, sizeof(acl), 0),
			 0);
	mkd(fs, "/x", "inherit");
	assert_false(embedded(fs, "/x/inherit"));
	fs = reopen(fs);
	assert_int_equal(rfs_fs_close(fs), 0);
}

/* Changes of a diff, one line each ("op path"), joined. */
static int diff_line(void *arg, const struct rfs_diff_record *r)
{
	char *out = arg;
	char line[512];
	snprintf(line, sizeof(line), "%c %s;", r->op, r->path);
	strcat(out, line);
	return 0;
}

static void test_snapshots_and_tools(void **state)
{
	(void)state;
	rfs_fs *fs = fx_fresh(64 << 20, 0);
	mkd(fs, "/", "p");
	mkd(fs, "/p", "e");
	mkd(fs, "/p/e", "n");
	rfs_nodeid f = mkf(fs, "/p/e/n", "f", 2 * BS);
	mkf(fs, "/p/e", "g", 10);
	/* a snapshot of the parent shares its tree: the embedded items too */
	rfs_nodeid s;
	struct stat st;
	assert_int_equal(rfs_fs_snapshot(fs, at(fs, "/p"), RFS_ROOT_NODE, "s1", 0, &s, &st), 0);
	assert_true(embedded(fs, "/p/e"));
	assert_true(embedded(fs, "/s1/e"));
	/* a snapshot of an embedded directory copies its few entries; the
	 * source stays as it is */
	assert_int_equal(rfs_fs_snapshot(fs, at(fs, "/p/e"), RFS_ROOT_NODE, "s2", 0, &s, &st), 0);
	assert_true(embedded(fs, "/p/e"));
	assert_false(embedded(fs, "/s2"));
	assert_true(embedded(fs, "/s2/n"));
	fs = reopen(fs);
	assert_string_equal(list(fs, "/s2"), "g,n");
	assert_string_equal(list(fs, "/s2/n"), "f");
	/* a change deep in an embedded directory: the diff finds it */
	f = at(fs, "/p/e/n/f");
	assert_int_equal(rfs_fs_write(fs, f, "zz", 2, 0), 2);
	mkf(fs, "/p/e", "h", 0);
	rfs_diff *d;
	assert_int_equal(rfs_diff_begin(fs, at(fs, "/s1"), at(fs, "/p"), &d), 0);
	static char out[4096];
	out[0] = 0;
	struct rfs_diff_record r;
	for (uint64_t i = 0; rfs_diff_record(d, i, &r) == 0; i++)
		diff_line(out, &r);
	rfs_diff_end(d);
	assert_non_null(strstr(out, "M e/n/f;"));
	assert_non_null(strstr(out, "A e/h;"));
	/* du of an embedded directory counts what is below it */
	rfs_du *du;
	struct rfs_du_stats ds;
	assert_int_equal(rfs_du_begin(fs, at(fs, "/p/e"), &du), 0);
	int ret;
	while ((ret = rfs_du_step(du, 1000)) == 1)
		;
	assert_int_equal(ret, 0);
	rfs_du_get_stats(du, &ds);
	rfs_du_end(du);
	assert_int_equal(ds.files, 3);
	assert_int_equal(ds.dirs, 2);
	assert_true(ds.total >= 2 * BS);
	fs = reopen(fs);
	assert_int_equal(rfs_fs_close(fs), 0);
}

static void test_format(void **state)
{
	(void)state;
	/* A pool made by the format before: its directories have trees */
	rfs_fs *fs = fx_fresh(64 << 20, 0);
	fs->top->m.version = RFS_VOL_EMBED - 1;
	mkd(fs, "/", "old");
	mkf(fs, "/old", "f", 10);
	assert_false(embedded(fs, "/old"));
	assert_int_equal(rfs_fs_close(fs), 0);
	fx_set_vol_version(RFS_VOL_EMBED - 1);
	/* read-only: works, writes nothing, stays at its format */
	assert_int_equal(rfs_fs_open(g_pool, RFS_FS_RDONLY, &fs), 0);
	assert_int_equal(fs->top->m.version, RFS_VOL_EMBED - 1);
	assert_string_equal(list(fs, "/old"), "f");
	assert_int_equal(rfs_fs_close(fs), 0);
	assert_int_equal(fx_fsck(), 0);
	/* read-write: the format moves on, new directories are embedded,
	 * old ones keep their trees; both forms side by side */
	assert_int_equal(rfs_fs_open(g_pool, 0, &fs), 0);
	assert_int_equal(fs->top->m.version, RFS_VOL_VERSION);
	mkd(fs, "/old", "new");
	mkf(fs, "/old/new", "g", 10);
	assert_true(embedded(fs, "/old/new"));
	assert_false(embedded(fs, "/old"));
	fs = reopen(fs);
	assert_string_equal(list(fs, "/old"), "f,new");
	assert_int_equal(rfs_fs_close(fs), 0);
	/* a newer format is refused */
	fx_set_vol_version(RFS_VOL_VERSION + 1);
	assert_int_equal(rfs_fs_open(g_pool, RFS_FS_RDONLY, &fs), -EPROTONOSUPPORT);
}

/* Rewrite the record of /name (a directory of the root) in the closed
 * pool with fn. */
static void patch_root_entry(const char *name, void (*fn)(struct rfs_irec *r))
{
	rfs_pool *pool;
	rfs_tree vol;
	struct rfs_irec root, r;
	assert_int_equal(rfs_pool_open(g_pool, 0, &pool), 0);
	rfs_pool_wrlock(pool);
	assert_int_equal(rfs_catalog_get(pool, RFS_TOP_VOLUME, &vol), 0);
	vol.owner = RFS_OWNER_VOLUME;
	assert_int_equal(rec_get(pool, &vol, "R", 1, &root, true), 0);
	rfs_tree t = FS_TREE(root.i.subtree, RFS_OWNER_DIR);
	uint8_t key[RFS_KEY_MAX];
	size_t kl = dent_key(key, name, strlen(name));
	assert_int_equal(rec_get(pool, &t, key, kl, &r, true), 0);
	fn(&r);
	assert_int_equal(rec_put_pool(pool, &t, key, kl, &r, RFS_PUT_REPLACE | RFS_KEEP_REFS, true), 0);
	root.i.subtree = t.root;
	assert_int_equal(rec_put_pool(pool, &vol, "R", 1, &root, RFS_PUT_REPLACE | RFS_KEEP_REFS, true), 0);
	assert_int_equal(rfs_catalog_set(pool, RFS_TOP_VOLUME, &vol), 0);
	assert_int_equal(rfs_pool_commit_locked(pool), 0);
	rfs_pool_unlock(pool);
	rfs_pool_close(pool);
}

static void miscount(struct rfs_irec *r)
{
	r->i.volume += 1;
}

static void unembed(struct rfs_irec *r)
{
	r->i.flags &= ~(uint32_t)RFS_INODE_EMBED;
	r->i.volume = 0;
}

/* fsck understands the form: it finds a wrong count, and entries of
 * embedded directories that no embedded directory owns. */
static void test_fsck_sees(void **state)
{
	(void)state;
	rfs_fs *fs = fx_fresh(64 << 20, 0);
	mkd(fs, "/", "a");
	mkd(fs, "/a", "b");
	mkf(fs, "/a/b", "f", 10);
	assert_int_equal(rfs_fs_close(fs), 0);
	assert_int_equal(fx_fsck(), 0);
	patch_root_entry("a", miscount);
	assert_true(fx_fsck() > 0);
	patch_root_entry("a", unembed);
	/* /a now reads as an empty directory with a tree of none: its items
	 * (b, and b's f) belong to nobody, its count says 1 entry */
	assert_true(fx_fsck() >= 2);
}

int main(void)
{
	rfs_log_set_level(RFS_LOG_WARN);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_nested_forms_and_clone, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_entries, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_nesting_and_moves, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_materialize, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_snapshots_and_tools, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_format, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_fsck_sees, fx_setup, fx_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
