/*
 * Unit tests of rfs_diff_* (src/fs/diff.c): what changed between two
 * directories, through the fs API.
 *
 *  - copies made like `cp -a` (files cloned, attributes and xattrs
 *    copied), then changes of every kind on one side: the diff is exactly
 *    the expected set, both ways round, and an unchanged copy diffs empty;
 *  - data compared by content: rewriting the same bytes, holes against
 *    written zeros, preallocated blocks, a change in the partial last
 *    block;
 *  - renames, against a stand-in for a snapshot in the same volume (a
 *    clone of a directory's entry tree held by the test, with the
 *    directory's inode number, answering like a side without an index;
 *    it came before snapshots and stays as a second, smaller case): moves
 *    within and across directories, a renamed directory with and without
 *    changes inside (O(1) when unchanged: counted), moves into new and
 *    out of removed directories, a rename over an existing name;
 *  - real snapshots (rfs_fs_snapshot): a read-only snapshot against its
 *    changed source and two snapshots against each other (no index on
 *    either side), with every kind of move, hard links changed in the
 *    source, an editor's save-by-rename, inodes born apart with equal
 *    numbers;
 *  - random trees and random changes on both sides of a copy, against a
 *    slow diff that reads both trees whole through the API
 *    (RFS_SEED=<n> replays one seed, RFS_ROUNDS=<n> sets how many);
 *  - errors: not a directory, unknown node.
 */
#include "common/fsfix.h"
#include "../common/testutil.h"

#include <linux/falloc.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>

#include "fs/fs_internal.h"

static const struct rfs_ctx g_ctx = {.uid = 1000, .gid = 1000, .pid = 1};
static rfs_fs *g_fs;

static int setup(void **state)
{
	(void)state;
	fx_setup(state);
	if (rfs_fs_mkfs(g_pool, 512ull << 20, 0) || rfs_fs_open(g_pool, 0, &g_fs))
		return -1;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	int ret = rfs_fs_close(g_fs);
	long probs = ret ? -1 : fx_fsck();
	fx_teardown(state);
	return ret || probs ? -1 : 0;
}

/* ---- building trees by path ------------------------------------------------ */

static rfs_nodeid node(const char *path)
{
	rfs_nodeid n;
	struct stat st;
	if (!*path)
		return RFS_ROOT_NODE;
	int rc = rfs_fs_resolve(g_fs, path, &n, &st);
	CHECK(rc == 0, "resolve %s: %d", path, rc);
	return n;
}

/* parent node and last name of path */
static rfs_nodeid parent_of(const char *path, const char **name)
{
	char buf[1024];
	const char *slash = strrchr(path, '/');
	if (!slash) {
		*name = path;
		return RFS_ROOT_NODE;
	}
	snprintf(buf, sizeof buf, "%.*s", (int)(slash - path), path);
	*name = slash + 1;
	return node(buf);
}

static void mkd(const char *path)
{
	const char *name;
	rfs_nodeid p = parent_of(path, &name), n;
	struct stat st;
	OK(rfs_fs_mkdir(g_fs, &g_ctx, p, name, 0755, &n, &st));
}

static void wr(const char *path, uint64_t off, const void *buf, size_t len)
{
	const char *name;
	rfs_nodeid p = parent_of(path, &name), n;
	struct stat st;
	int rc = rfs_fs_lookup(g_fs, p, name, &n, &st);
	if (rc == -ENOENT)
		rc = rfs_fs_create(g_fs, &g_ctx, p, name, 0644, &n, &st);
	OK(rc);
	if (len)
		CHECK(rfs_fs_write(g_fs, n, buf, len, off) == (ssize_t)len, "write %s", path);
}

static void mkf(const char *path, size_t len, unsigned seed)
{
	uint8_t *b = malloc(len + 1);
	tu_rng r = {seed};
	tu_fill(&r, b, len);
	wr(path, 0, b, len);
	free(b);
}

static void set_mtime(const char *path, int64_t sec)
{
	struct stat in = {0};
	in.st_mtim.tv_sec = sec;
	OK(rfs_fs_setattr(g_fs, node(path), &in, RFS_SET_MTIME, NULL));
}

static void chmod_p(const char *path, mode_t mode)
{
	struct stat in = {0};
	in.st_mode = mode;
	OK(rfs_fs_setattr(g_fs, node(path), &in, RFS_SET_MODE, NULL));
}

static void truncate_p(const char *path, uint64_t size)
{
	struct stat in = {0};
	in.st_size = (off_t)size;
	OK(rfs_fs_setattr(g_fs, node(path), &in, RFS_SET_SIZE, NULL));
}

static void setx(const char *path, const char *name, const char *val)
{
	OK(rfs_fs_setxattr(g_fs, &g_ctx, node(path), name, val, strlen(val), 0));
}

static void mv(const char *from, const char *to)
{
	const char *fn, *tn;
	rfs_nodeid fp = parent_of(from, &fn), tp = parent_of(to, &tn);
	OK(rfs_fs_rename(g_fs, &g_ctx, fp, fn, tp, tn, 0));
}

static void ln_s(const char *target, const char *path)
{
	const char *name;
	rfs_nodeid p = parent_of(path, &name), n;
	struct stat st;
	OK(rfs_fs_symlink(g_fs, &g_ctx, p, name, target, &n, &st));
}

static void ln(const char *from, const char *to)
{
	const char *tn;
	rfs_nodeid tp = parent_of(to, &tn);
	struct stat st;
	OK(rfs_fs_link(g_fs, node(from), tp, tn, &st));
}

struct names {
	char **v;
	size_t n;
};

static int names_fn(void *arg, const char *name, const struct stat *st, rfs_nodeid node,
		    uint64_t next)
{
	(void)st;
	(void)node;
	(void)next;
	struct names *ns = arg;
	if (!strcmp(name, ".") || !strcmp(name, ".."))
		return 0;
	ns->v = realloc(ns->v, (ns->n + 1) * sizeof(char *));
	assert_non_null(ns->v);
	ns->v[ns->n++] = strdup(name);
	return 0;
}

static int strp_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static struct names list_dir(rfs_nodeid dir)
{
	struct names ns = {0};
	OK(rfs_fs_readdir(g_fs, dir, 0, false, names_fn, &ns));
	if (ns.n)
		qsort(ns.v, ns.n, sizeof(char *), strp_cmp);
	return ns;
}

static void names_free(struct names *ns)
{
	for (size_t i = 0; i < ns->n; i++)
		free(ns->v[i]);
	free(ns->v);
}

static void rm_r(rfs_nodeid parent, const char *name)
{
	rfs_nodeid n;
	struct stat st;
	OK(rfs_fs_lookup(g_fs, parent, name, &n, &st));
	if (!S_ISDIR(st.st_mode)) {
		OK(rfs_fs_unlink(g_fs, parent, name));
		return;
	}
	struct names ns = list_dir(n);
	for (size_t i = 0; i < ns.n; i++)
		rm_r(n, ns.v[i]);
	names_free(&ns);
	OK(rfs_fs_rmdir(g_fs, parent, name));
}

static void rm_path(const char *path)
{
	const char *name;
	rfs_nodeid p = parent_of(path, &name);
	rm_r(p, name);
}

static void copy_xattrs(rfs_nodeid from, rfs_nodeid to)
{
	char list[65536];
	ssize_t n = rfs_fs_listxattr(g_fs, from, list, sizeof list);
	CHECK(n >= 0, "listxattr %zd", n);
	static char val[65536];
	for (char *p = list; p < list + n; p += strlen(p) + 1) {
		ssize_t vl = rfs_fs_getxattr(g_fs, from, p, val, sizeof val);
		CHECK(vl >= 0, "getxattr %s", p);
		OK(rfs_fs_setxattr(g_fs, &g_ctx, to, p, val, (size_t)vl, 0));
	}
}

/* Hard links already copied: source st_ino -> copy's node. */
static struct {
	uint64_t ino[256];
	rfs_nodeid node[256];
	int n;
} g_links;

/* `cp -a` of node from (called name, in dir to): clones files, copies
 * modes, times and xattrs, keeps hard links. */
static void copy_node(rfs_nodeid from, rfs_nodeid to, const char *name)
{
	struct stat st, nst;
	rfs_nodeid n;
	OK(rfs_fs_getattr(g_fs, from, &st));
	if (S_ISREG(st.st_mode) && st.st_nlink > 1) {
		for (int i = 0; i < g_links.n; i++)
			if (g_links.ino[i] == st.st_ino) {
				OK(rfs_fs_link(g_fs, g_links.node[i], to, name, &nst));
				return;
			}
	}
	if (S_ISDIR(st.st_mode)) {
		OK(rfs_fs_mkdir(g_fs, &g_ctx, to, name, st.st_mode & 07777, &n, &nst));
		struct names ns = list_dir(from);
		for (size_t i = 0; i < ns.n; i++) {
			rfs_nodeid c;
			struct stat cst;
			OK(rfs_fs_lookup(g_fs, from, ns.v[i], &c, &cst));
			copy_node(c, n, ns.v[i]);
		}
		names_free(&ns);
	} else if (S_ISREG(st.st_mode)) {
		OK(rfs_fs_create(g_fs, &g_ctx, to, name, st.st_mode & 07777, &n, &nst));
		OK(rfs_fs_clone_file(g_fs, from, n));
		if (st.st_nlink > 1 && g_links.n < 256) {
			g_links.ino[g_links.n] = st.st_ino;
			g_links.node[g_links.n++] = n;
		}
	} else if (S_ISLNK(st.st_mode)) {
		char target[RFS_SYMLINK_MAX + 1];
		CHECK(rfs_fs_readlink(g_fs, from, target, sizeof target) >= 0, "readlink");
		OK(rfs_fs_symlink(g_fs, &g_ctx, to, name, target, &n, &nst));
	} else {
		OK(rfs_fs_mknod(g_fs, &g_ctx, to, name, st.st_mode, st.st_rdev, &n, &nst));
	}
	copy_xattrs(from, n);
	struct stat in = st;
	OK(rfs_fs_setattr(g_fs, n, &in,
			  (S_ISLNK(st.st_mode) ? 0 : RFS_SET_MODE) | RFS_SET_MTIME | RFS_SET_ATIME,
			  NULL));
}

static void cp_a(const char *from, const char *to)
{
	const char *name;
	rfs_nodeid p = parent_of(to, &name);
	g_links.n = 0;
	copy_node(node(from), p, name);
}

/* ---- what rfs_diff reports, as text ------------------------------------------ */

static const char *what_names[] = {"data", "xattr", "mode", "uid", "gid", "size", "mtime", "rdev"};

static void fmt_what(char *out, size_t n, uint32_t what)
{
	out[0] = 0;
	for (unsigned i = 0; i < 8; i++)
		if (what & (1u << i))
			snprintf(out + strlen(out), n - strlen(out), "%s%s", out[0] ? "," : " ",
				 what_names[i]);
}

struct lines {
	char **v;
	size_t n;
};

static void lines_add(struct lines *l, const char *s)
{
	l->v = realloc(l->v, (l->n + 1) * sizeof(char *));
	assert_non_null(l->v);
	l->v[l->n++] = strdup(s);
}

static void lines_free(struct lines *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	memset(l, 0, sizeof(*l));
}

static void fmt_rec(char *out, size_t n, char op, const char *path, const char *old,
		    uint32_t what)
{
	char w[128];
	fmt_what(w, sizeof w, what);
	if (old)
		snprintf(out, n, "%c %s -> %s%s", op, old, path, w);
	else
		snprintf(out, n, "%c %s%s", op, path, w);
}

static struct rfs_diff_stats g_last;

static uint64_t g_snap_next_ino; /* of the stand-in snapshot */

static struct lines run_diff_recs(const struct rfs_irec *ra, const struct rfs_irec *rb,
				  rfs_nodeid a, rfs_nodeid b)
{
	rfs_diff *d;
	struct lines l = {0};
	int rc = ra ? diff_begin_recs(g_fs, ra, rb, g_snap_next_ino, &d)
		    : rfs_diff_begin(g_fs, a, b, &d);
	CHECK(rc == 0, "rfs_diff_begin: %d", rc);
	rfs_diff_get_stats(d, &g_last);
	struct rfs_diff_record r;
	char prev[4096] = "";
	for (uint64_t i = 0; rfs_diff_record(d, i, &r) == 0; i++) {
		char s[8192];
		fmt_rec(s, sizeof s, r.op, r.path, r.old_path, r.what);
		CHECK(strcmp(prev, r.path) <= 0, "records not sorted: %s after %s", r.path, prev);
		snprintf(prev, sizeof prev, "%s", r.path);
		lines_add(&l, s);
	}
	EQ_U64(l.n, g_last.records);
	EQ_U64(g_last.added + g_last.removed + g_last.modified + g_last.renamed, l.n);
	rfs_diff_end(d);
	return l;
}

static struct lines run_diff(const char *a, const char *b)
{
	return run_diff_recs(NULL, NULL, node(a), node(b));
}

static void expect_lines(struct lines *got, const char *const *want, const char *what)
{
	size_t nw = 0;
	while (want[nw])
		nw++;
	char **w = malloc((nw + 1) * sizeof(char *));
	if (nw)
		memcpy(w, want, nw * sizeof(char *));
	qsort(w, nw, sizeof(char *), strp_cmp);
	char **g = malloc((got->n + 1) * sizeof(char *));
	if (got->n)
		memcpy(g, got->v, got->n * sizeof(char *));
	qsort(g, got->n, sizeof(char *), strp_cmp);
	bool same = nw == got->n;
	for (size_t i = 0; same && i < nw; i++)
		same = !strcmp(w[i], g[i]);
	if (!same) {
		print_error("%s: diff differs from what was expected\n  got:\n", what);
		for (size_t i = 0; i < got->n; i++)
			print_error("    %s\n", g[i]);
		print_error("  expected:\n");
		for (size_t i = 0; i < nw; i++)
			print_error("    %s\n", w[i]);
	}
	free(w);
	free(g);
	CHECK(same, "%s", what);
	lines_free(got);
}

/* ---- copies with changes ----------------------------------------------------- */

static void build_sample(const char *top)
{
	char p[256];
#define P(s) (snprintf(p, sizeof p, "%s/%s", top, s), p)
	mkd(top);
	mkf(P("f1"), 100, 1);
	mkf(P("f4"), 5000, 4);
	mkf(P("f5"), 10, 5);
	mkf(P("f6"), 20000, 6);
	mkf(P("f7"), 4096, 7);
	mkf(P("h1"), 300, 8);
	{
		char h2[256];
		snprintf(h2, sizeof h2, "%s/h2", top);
		ln(P("h1"), h2);
	}
	ln_s("f1", P("link"));
	mkd(P("d1"));
	mkf(P("d1/f2"), 3 * 4096 + 17, 2);
	mkf(P("d1/f3"), 9000, 3);
	mkd(P("d2"));
	mkf(P("d2/x"), 10, 9);
	mkd(P("d2/sub"));
	mkf(P("d2/sub/y"), 10, 10);
	mkd(P("d3"));
	mkf(P("d3/z"), 10, 11);
	setx(P("f5"), "user.k", "v0");
	{
		const char *name;
		rfs_nodeid par = parent_of(P("dev"), &name), n;
		struct stat st;
		OK(rfs_fs_mknod(g_fs, &g_ctx, par, name, S_IFCHR | 0600, makedev(1, 3), &n, &st));
	}
	/* times far from now, so that a change shows */
	const char *all[] = {"", "f1", "f4", "f5", "f6", "f7", "h1", "d1", "d1/f2", "d1/f3",
			     "d2", "d2/x", "d2/sub", "d2/sub/y", "d3", "d3/z", "dev", NULL};
	for (int i = 0; all[i]; i++)
		set_mtime(*all[i] ? P(all[i]) : top, 1000000 + i);
#undef P
}

static void test_copy_changes(void **state)
{
	(void)state;
	build_sample("a");
	cp_a("a", "b");
	/* a fresh copy: nothing differs (and a directory against itself) */
	struct lines l = run_diff("a", "b");
	static const char *none[] = {NULL};
	expect_lines(&l, none, "fresh cp -a copy");
	CHECK(g_last.node_reads > 0, "reads counted");
	l = run_diff("a", "a");
	expect_lines(&l, none, "a directory against itself");
	EQ_U64(g_last.dirs_compared, 0);

	/* every kind of change, in b */
	mkf("b/new.txt", 5, 20);                  /* add */
	rm_path("b/f1");                          /* delete */
	uint8_t z[10] = {0};
	wr("b/d1/f2", 5000, "changed", 7);        /* data, middle */
	set_mtime("b/d1/f2", 1000000 + 8);        /* (mtime as before) */
	uint8_t same[9000];
	CHECK(rfs_fs_read(g_fs, node("b/d1/f3"), same, 9000, 0) == 9000, "read");
	wr("b/d1/f3", 0, same, 9000);             /* the same bytes again */
	set_mtime("b/d1/f3", 1000000 + 9);
	chmod_p("b/f4", 0600);                    /* mode */
	setx("b/f5", "user.k", "v1");             /* xattr */
	mv("b/f6", "b/f6b");                      /* rename */
	truncate_p("b/f7", 8000);                 /* size (grown by zeros) */
	set_mtime("b/f7", 1000000 + 5);
	wr("b/h1", 0, z, 10);                     /* a hard-linked file */
	rm_path("b/link");                        /* symlink retargeted */
	ln_s("f4", "b/link");
	mv("b/d2", "b/d2x");                      /* rename a directory */
	rm_path("b/d3");                          /* rm -r */
	mkd("b/d4");
	mkf("b/d4/y", 1, 21);                     /* new directory */
	setx("b/d1", "user.dir", "1");            /* xattr of a directory */
	static const char *want[] = {
		"M . mtime",
		"A new.txt",
		"D f1",
		"M d1 xattr",
		"M d1/f2 data",
		"M f4 mode",
		"M f5 xattr",
		"D f6",
		"A f6b",
		"M f7 data,size",
		"M h1 data,mtime",
		"M h2 data,mtime",
		"M link data,mtime",
		"D d2",
		"D d2/x",
		"D d2/sub",
		"D d2/sub/y",
		"A d2x",
		"A d2x/x",
		"A d2x/sub",
		"A d2x/sub/y",
		"D d3",
		"D d3/z",
		"A d4",
		"A d4/y",
		NULL,
	};
	l = run_diff("a", "b");
	expect_lines(&l, want, "cp -a copy with changes");
	/* and the other way round: A and D swap */
	static const char *back[] = {
		"M . mtime", "D new.txt", "A f1", "M d1 xattr", "M d1/f2 data", "M f4 mode",
		"M f5 xattr", "A f6", "D f6b", "M f7 data,size", "M h1 data,mtime",
		"M h2 data,mtime", "M link data,mtime", "A d2", "A d2/x", "A d2/sub",
		"A d2/sub/y", "D d2x", "D d2x/x", "D d2x/sub", "D d2x/sub/y", "A d3", "A d3/z",
		"D d4", "D d4/y", NULL,
	};
	l = run_diff("b", "a");
	expect_lines(&l, back, "the same, b against a");
	rm_path("a");
	rm_path("b");
}

/* ---- data compared by content -------------------------------------------------- */

static void test_data(void **state)
{
	(void)state;
	uint8_t buf[3 * 4096 + 100], zero[8192] = {0};
	tu_rng r = {7};
	tu_fill(&r, buf, sizeof buf);
	mkd("p");
	mkd("q");
	/* the same bytes written separately: different blocks, same content */
	wr("p/same", 0, buf, sizeof buf);
	wr("q/same", 0, buf, sizeof buf);
	/* a hole against written zeros, and against preallocated blocks */
	wr("p/holes", 0, buf, 100);
	wr("q/holes", 0, buf, 100);
	truncate_p("p/holes", 5 * 4096);
	wr("q/holes", 4096, zero, 8192);
	truncate_p("q/holes", 5 * 4096);
	OK(rfs_fs_fallocate(g_fs, node("p/holes"), FALLOC_FL_KEEP_SIZE, 3 * 4096, 4096));
	/* one byte changed in the partial last block */
	wr("p/tail", 0, buf, sizeof buf);
	wr("q/tail", 0, buf, sizeof buf);
	uint8_t flipped = buf[sizeof buf - 1] ^ 0xff;
	wr("q/tail", sizeof buf - 1, &flipped, 1);
	/* a clone with one block rewritten, and a clone left alone */
	wr("p/big", 0, buf, sizeof buf);
	OK(rfs_fs_create(g_fs, &g_ctx, node("q"), "big", 0644, &(rfs_nodeid){0}, &(struct stat){0}));
	OK(rfs_fs_clone_file(g_fs, node("p/big"), node("q/big")));
	wr("p/cl", 0, buf, sizeof buf);
	OK(rfs_fs_create(g_fs, &g_ctx, node("q"), "cl", 0644, &(rfs_nodeid){0}, &(struct stat){0}));
	OK(rfs_fs_clone_file(g_fs, node("p/cl"), node("q/cl")));
	wr("q/big", 4096, "x", 1);
	const char *all[] = {"p", "q", "p/same", "q/same", "p/holes", "q/holes", "p/tail",
			     "q/tail", "p/big", "q/big", "p/cl", "q/cl", NULL};
	for (int i = 0; all[i]; i++)
		set_mtime(all[i], 5000);
	static const char *want[] = {"M tail data", "M big data", NULL};
	struct lines l = run_diff("p", "q");
	expect_lines(&l, want, "data by content");
	rm_path("p");
	rm_path("q");
}

/* ---- renames against a stand-in snapshot ------------------------------------------ */

/* The record of directory path with a clone of its entry tree: what a
 * snapshot of it holds, kept by the test (snap_drop gives it back).  Like
 * a snapshot it has no back-pointer index of its own: the diff is told
 * the volume's next inode number at that time. */
static void snap_take(const char *path, struct rfs_irec *snap)
{
	rfs_pool *p = rfs_fs_pool(g_fs);
	rfs_nodeid n = node(path);
	rfs_pool_wrlock(p);
	struct rfs_node *nd = node_get(g_fs, n);
	int rc = nd ? inode_read(g_fs, nd, snap) : -ESTALE;
	rfs_tree src = FS_TREE(snap->i.subtree, RFS_OWNER_DIR), dst;
	if (!rc)
		rc = rfs_tree_clone(p, &src, &dst);
	if (!rc)
		snap->i.subtree = dst.root;
	g_snap_next_ino = g_fs->top->m.next_ino;
	rfs_pool_unlock(p);
	OK(rc);
}

static void snap_drop(struct rfs_irec *snap)
{
	rfs_pool *p = rfs_fs_pool(g_fs);
	rfs_tree t = FS_TREE(snap->i.subtree, RFS_OWNER_DIR);
	rfs_pool_wrlock(p);
	int rc = rfs_tree_drop(p, &t);
	rfs_pool_unlock(p);
	OK(rc);
}

static void cur_rec(const char *path, struct rfs_irec *r)
{
	rfs_pool *p = rfs_fs_pool(g_fs);
	rfs_nodeid n = node(path);
	rfs_pool_rdlock(p);
	struct rfs_node *nd = node_get(g_fs, n);
	int rc = nd ? inode_read(g_fs, nd, r) : -ESTALE;
	rfs_pool_unlock(p);
	OK(rc);
}

static struct lines diff_snap(struct rfs_irec *snap, const char *path)
{
	struct rfs_irec *cur = malloc(sizeof(*cur));
	cur_rec(path, cur);
	struct lines l = run_diff_recs(snap, cur, 0, 0);
	free(cur);
	return l;
}

static void test_renames(void **state)
{
	(void)state;
	struct rfs_irec *snap = malloc(sizeof(*snap));
	char p[64];

	mkd("s");
	for (int d = 0; d < 10; d++) {
		snprintf(p, sizeof p, "s/d%d", d);
		mkd(p);
		for (int f = 0; f < 100; f++) {
			snprintf(p, sizeof p, "s/d%d/f%03d", d, f);
			mkf(p, 50, (unsigned)(d * 1000 + f));
		}
	}
	mkf("s/top", 10, 1);
	mkf("s/x", 10, 2);
	mkf("s/y", 10, 3);
	set_mtime("s", 100);
	for (int d = 0; d < 10; d++) {
		snprintf(p, sizeof p, "s/d%d", d);
		set_mtime(p, 100);
	}

	/* unchanged: nothing, and nothing read below the root */
	snap_take("s", snap);
	struct lines l = diff_snap(snap, "s");
	static const char *none[] = {NULL};
	expect_lines(&l, none, "snapshot against its unchanged source");

	/* a directory of 100 files renamed: O(1) */
	mv("s/d1", "s/d1x");
	set_mtime("s", 100);
	static const char *w1[] = {"R d1 -> d1x", NULL};
	l = diff_snap(snap, "s");
	expect_lines(&l, w1, "renamed directory");
	EQ_U64(g_last.dirs_compared, 1);
	EQ_U64(g_last.dirs_listed, 0);
	CHECK(g_last.node_reads < 40, "%" PRIu64 " node reads for one rename", g_last.node_reads);

	/* moves within and across directories, a change inside a renamed
	 * directory, a move into a new directory, a move out of a removed one,
	 * a rename over an existing name */
	mv("s/d2/f005", "s/d2/g005");
	mv("s/d3/f007", "s/d4/f007");
	wr("s/d1x/f010", 0, "new", 3);
	set_mtime("s/d1x/f010", 7);
	mkd("s/new");
	mv("s/d5", "s/new/d5");
	mv("s/d6/f001", "s/kept");
	rm_path("s/d6");
	mv("s/y", "s/x");
	mv("s/top", "s/top2");
	wr("s/top2", 0, "T", 1);
	static const char *w2[] = {
		"M . mtime",
		"R d1 -> d1x",
		"M d1x/f010 data,mtime",
		"M d2 mtime",
		"R d2/f005 -> d2/g005",
		"M d3 mtime",
		"M d4 mtime",
		"R d3/f007 -> d4/f007",
		"D d4/f007", /* the name it took */
		"A new",
		"R d5 -> new/d5",
		"R d6/f001 -> kept",
		"D d6",
		"D x",
		"R y -> x",
		"R top -> top2 data,mtime",
		NULL,
	};
	/* d6's other 99 files are gone */
	const char *wfull[256];
	char gone[99][32];
	int nw = 0;
	for (; w2[nw]; nw++)
		wfull[nw] = w2[nw];
	for (int f = 0, k = 0; f < 100; f++) {
		if (f == 1)
			continue;
		snprintf(gone[k], sizeof gone[k], "D d6/f%03d", f);
		wfull[nw++] = gone[k++];
	}
	wfull[nw] = NULL;
	l = diff_snap(snap, "s");
	expect_lines(&l, wfull, "renames");
	/* "M . mtime" etc. aside, the untouched directories were not opened */
	CHECK(g_last.dirs_compared <= 6, "%" PRIu64 " directories compared", g_last.dirs_compared);
	EQ_U64(g_last.dirs_listed, 2); /* d6 and new */

	snap_drop(snap);
	free(snap);
	rm_path("s");
}

/* ---- random changes against a slow diff --------------------------------------------- */

/* The slow diff: both trees read whole through the API, compared by name. */
static void slow_list(rfs_nodeid n, const char *path, char op, struct lines *out);

static uint32_t slow_attrs(const struct stat *a, const struct stat *b)
{
	uint32_t w = 0;
	if (a->st_mode != b->st_mode)
		w |= RFS_DIFF_MODE;
	if (a->st_uid != b->st_uid)
		w |= RFS_DIFF_UID;
	if (a->st_gid != b->st_gid)
		w |= RFS_DIFF_GID;
	if (!S_ISDIR(a->st_mode) && a->st_size != b->st_size)
		w |= RFS_DIFF_SIZE;
	if (a->st_mtim.tv_sec != b->st_mtim.tv_sec || a->st_mtim.tv_nsec != b->st_mtim.tv_nsec)
		w |= RFS_DIFF_MTIME;
	if ((S_ISCHR(a->st_mode) || S_ISBLK(a->st_mode)) && a->st_rdev != b->st_rdev)
		w |= RFS_DIFF_RDEV;
	return w;
}

static bool slow_xattrs_differ(rfs_nodeid a, rfs_nodeid b)
{
	static char la[65536], lb[65536], va[65536], vb[65536];
	ssize_t na = rfs_fs_listxattr(g_fs, a, la, sizeof la);
	ssize_t nb = rfs_fs_listxattr(g_fs, b, lb, sizeof lb);
	CHECK(na >= 0 && nb >= 0, "listxattr");
	int ca = 0, cb = 0;
	for (char *p = la; p < la + na; p += strlen(p) + 1)
		ca++;
	for (char *p = lb; p < lb + nb; p += strlen(p) + 1)
		cb++;
	if (ca != cb)
		return true;
	for (char *p = la; p < la + na; p += strlen(p) + 1) {
		ssize_t x = rfs_fs_getxattr(g_fs, a, p, va, sizeof va);
		ssize_t y = rfs_fs_getxattr(g_fs, b, p, vb, sizeof vb);
		if (x != y || (x > 0 && memcmp(va, vb, (size_t)x)))
			return true;
	}
	return false;
}

static bool slow_data_differ(rfs_nodeid a, rfs_nodeid b, const struct stat *sa,
			     const struct stat *sb)
{
	if (S_ISLNK(sa->st_mode)) {
		char ta[RFS_SYMLINK_MAX + 1], tb[RFS_SYMLINK_MAX + 1];
		CHECK(rfs_fs_readlink(g_fs, a, ta, sizeof ta) >= 0, "readlink");
		CHECK(rfs_fs_readlink(g_fs, b, tb, sizeof tb) >= 0, "readlink");
		return strcmp(ta, tb) != 0;
	}
	if (!S_ISREG(sa->st_mode))
		return false;
	if (sa->st_size != sb->st_size)
		return true;
	size_t n = (size_t)sa->st_size;
	uint8_t *x = malloc(n + 1), *y = malloc(n + 1);
	CHECK(rfs_fs_read(g_fs, a, x, n, 0) == (ssize_t)n, "read");
	CHECK(rfs_fs_read(g_fs, b, y, n, 0) == (ssize_t)n, "read");
	bool d = memcmp(x, y, n) != 0;
	free(x);
	free(y);
	return d;
}

static void slow_cmp(rfs_nodeid a, rfs_nodeid b, const char *path, struct lines *out)
{
	struct stat sa, sb;
	OK(rfs_fs_getattr(g_fs, a, &sa));
	OK(rfs_fs_getattr(g_fs, b, &sb));
	uint32_t w = slow_attrs(&sa, &sb);
	if (slow_xattrs_differ(a, b))
		w |= RFS_DIFF_XATTR;
	if (slow_data_differ(a, b, &sa, &sb))
		w |= RFS_DIFF_DATA;
	if (w) {
		char s[4200];
		fmt_rec(s, sizeof s, 'M', *path ? path : ".", NULL, w);
		lines_add(out, s);
	}
	if (!S_ISDIR(sa.st_mode))
		return;
	struct names na = list_dir(a), nb = list_dir(b);
	size_t i = 0, j = 0;
	while (i < na.n || j < nb.n) {
		int c = i == na.n ? 1 : j == nb.n ? -1 : strcmp(na.v[i], nb.v[j]);
		const char *name = c <= 0 ? na.v[i] : nb.v[j];
		char *cp = malloc(strlen(path) + strlen(name) + 2);
		sprintf(cp, "%s%s%s", path, *path ? "/" : "", name);
		rfs_nodeid x = 0, y = 0;
		struct stat xs, ys;
		if (c <= 0)
			OK(rfs_fs_lookup(g_fs, a, name, &x, &xs));
		if (c >= 0)
			OK(rfs_fs_lookup(g_fs, b, name, &y, &ys));
		if (c == 0 && (xs.st_mode & S_IFMT) == (ys.st_mode & S_IFMT)) {
			slow_cmp(x, y, cp, out);
		} else {
			if (x)
				slow_list(x, cp, 'D', out);
			if (y)
				slow_list(y, cp, 'A', out);
		}
		free(cp);
		i += c <= 0;
		j += c >= 0;
	}
	names_free(&na);
	names_free(&nb);
}

static void slow_list(rfs_nodeid n, const char *path, char op, struct lines *out)
{
	struct stat st;
	char s[4200];
	OK(rfs_fs_getattr(g_fs, n, &st));
	snprintf(s, sizeof s, "%c %s", op, path);
	lines_add(out, s);
	if (!S_ISDIR(st.st_mode))
		return;
	struct names ns = list_dir(n);
	for (size_t i = 0; i < ns.n; i++) {
		rfs_nodeid c;
		struct stat cs;
		OK(rfs_fs_lookup(g_fs, n, ns.v[i], &c, &cs));
		char *cp = malloc(strlen(path) + strlen(ns.v[i]) + 2);
		sprintf(cp, "%s/%s", path, ns.v[i]);
		slow_list(c, cp, op, out);
		free(cp);
	}
	names_free(&ns);
}

/* Every path below top (relative to the fs root), directories included. */
static void all_paths(const char *top, struct lines *out)
{
	struct names ns = list_dir(node(top));
	for (size_t i = 0; i < ns.n; i++) {
		char p[1024];
		struct stat st;
		rfs_nodeid c;
		snprintf(p, sizeof p, "%s/%s", top, ns.v[i]);
		lines_add(out, p);
		OK(rfs_fs_resolve(g_fs, p, &c, &st));
		if (S_ISDIR(st.st_mode))
			all_paths(p, out);
	}
	names_free(&ns);
}

static bool is_dir(const char *p)
{
	rfs_nodeid n;
	struct stat st;
	return rfs_fs_resolve(g_fs, p, &n, &st) == 0 && S_ISDIR(st.st_mode);
}

static void random_change(tu_rng *r, const char *top)
{
	struct lines ps = {0};
	char p[1024], q[1024];
	all_paths(top, &ps);
	const char *any = ps.n ? ps.v[tu_below(r, ps.n)] : top;
	/* a directory to put new things in */
	const char *dir = top;
	for (int t = 0; t < 4 && ps.n; t++) {
		const char *c = ps.v[tu_below(r, ps.n)];
		if (is_dir(c)) {
			dir = c;
			break;
		}
	}
	snprintf(p, sizeof p, "%s/n%" PRIu64, dir, tu_below(r, 1000));
	rfs_nodeid x;
	struct stat st;
	bool exists = rfs_fs_resolve(g_fs, p, &x, &st) == 0;
	switch (tu_below(r, 13)) {
	case 0:
		if (!exists)
			mkf(p, (size_t)tu_below(r, 3 * 4096 + 50), (unsigned)tu_next(r));
		break;
	case 1:
		if (!exists)
			mkd(p);
		break;
	case 2:
		if (ps.n)
			rm_path(any);
		break;
	case 3:
	case 4:
		if (ps.n && !is_dir(any) && rfs_fs_resolve(g_fs, any, &x, &st) == 0 &&
		    S_ISREG(st.st_mode)) {
			uint8_t b[600];
			tu_fill(r, b, sizeof b);
			wr(any, tu_below(r, 3 * 4096), b, (size_t)tu_range(r, 1, sizeof b));
		}
		break;
	case 5:
		/* the same bytes again: new blocks, same content and mtime */
		if (ps.n && rfs_fs_resolve(g_fs, any, &x, &st) == 0 && S_ISREG(st.st_mode) &&
		    st.st_size > 0) {
			uint8_t *b = malloc((size_t)st.st_size);
			CHECK(rfs_fs_read(g_fs, x, b, (size_t)st.st_size, 0) == st.st_size, "read");
			wr(any, 0, b, (size_t)st.st_size);
			free(b);
			struct stat in = st;
			OK(rfs_fs_setattr(g_fs, x, &in, RFS_SET_MTIME, NULL));
		}
		break;
	case 6:
		if (ps.n && rfs_fs_resolve(g_fs, any, &x, &st) == 0 && S_ISREG(st.st_mode))
			truncate_p(any, tu_below(r, 4 * 4096));
		break;
	case 7:
		if (ps.n && rfs_fs_resolve(g_fs, any, &x, &st) == 0 && !S_ISLNK(st.st_mode))
			chmod_p(any, (mode_t)(0600 | tu_below(r, 0100)));
		break;
	case 8:
		if (ps.n && rfs_fs_resolve(g_fs, any, &x, &st) == 0 && !S_ISLNK(st.st_mode)) {
			char v[8];
			snprintf(v, sizeof v, "%d", (int)tu_below(r, 3));
			setx(any, tu_below(r, 2) ? "user.a" : "user.b", v);
		}
		break;
	case 9:
		if (ps.n && !exists) {
			/* not a directory into itself */
			size_t al = strlen(any);
			if (!(strncmp(p, any, al) == 0 && p[al] == '/'))
				mv(any, p);
		}
		break;
	case 10:
		if (!exists)
			ln_s(tu_below(r, 2) ? "t1" : "t2", p);
		break;
	case 11:
		if (ps.n)
			set_mtime(any, 1000 + (int64_t)tu_below(r, 2));
		break;
	case 12:
		if (ps.n && rfs_fs_resolve(g_fs, any, &x, &st) == 0 && S_ISREG(st.st_mode)) {
			snprintf(q, sizeof q, "%s/l%" PRIu64, dir, tu_below(r, 1000));
			if (rfs_fs_resolve(g_fs, q, &x, &st) == -ENOENT)
				ln(any, q);
		}
		break;
	}
	lines_free(&ps);
}

static uint64_t g_seed;
static uint64_t g_random_records; /* records compared, all rounds */

static void seed_hint(void)
{
	fprintf(stderr, "replay: RFS_SEED=%" PRIu64 " build/asan/tests/unit/test_fs_diff\n",
		g_seed);
}

static void random_round(uint64_t seed)
{
	tu_rng r = {seed};
	g_seed = seed;
	tu_fail_hook = seed_hint;
	mkd("ra");
	long n = (long)tu_range(&r, 5, 60);
	for (long i = 0; i < n; i++)
		random_change(&r, "ra");
	cp_a("ra", "rb");
	for (int phase = 0; phase < 3; phase++) {
		long ka = (long)tu_below(&r, 6), kb = (long)tu_below(&r, 12);
		for (long i = 0; i < ka; i++)
			random_change(&r, "ra");
		for (long i = 0; i < kb; i++)
			random_change(&r, "rb");
		if (tu_below(&r, 2))
			OK(rfs_fs_sync(g_fs));
		for (int way = 0; way < 2; way++) {
			const char *x = way ? "rb" : "ra", *y = way ? "ra" : "rb";
			struct lines want = {0};
			slow_cmp(node(x), node(y), "", &want);
			struct lines got = run_diff(x, y);
			g_random_records += got.n;
			/* NULL-terminated for expect_lines */
			want.v = realloc(want.v, (want.n + 1) * sizeof(char *));
			assert_non_null(want.v);
			want.v[want.n] = NULL;
			char msg[64];
			snprintf(msg, sizeof msg, "seed %" PRIu64 " phase %d way %d", seed, phase, way);
			expect_lines(&got, (const char *const *)want.v, msg);
			lines_free(&want);
		}
	}
	rm_path("ra");
	rm_path("rb");
	tu_fail_hook = NULL;
}

static void test_random(void **state)
{
	(void)state;
	const char *s = getenv("RFS_SEED");
	const char *rn = getenv("RFS_ROUNDS");
	long rounds = rn && *rn ? atol(rn) : 30;
	if (s && *s) {
		random_round(strtoull(s, NULL, 0));
		return;
	}
	for (long i = 0; i < rounds; i++)
		random_round(500 + (uint64_t)i);
	print_message("  %ld rounds, %" PRIu64 " diff records checked\n", rounds, g_random_records);
	CHECK(g_random_records > (uint64_t)rounds * 6, "the changes made too few differences");
}

/* ---- real snapshots ------------------------------------------------------------------ */

static void snapshot(const char *src, const char *dst, unsigned flags)
{
	const char *name;
	rfs_nodeid p = parent_of(dst, &name), n;
	struct stat st;
	OK(rfs_fs_snapshot(g_fs, node(src), p, name, flags, &n, &st));
}

static void test_snapshots(void **state)
{
	(void)state;
	char p[64];

	mkd("v");
	for (int d = 0; d < 10; d++) {
		snprintf(p, sizeof p, "v/d%d", d);
		mkd(p);
		for (int f = 0; f < 50; f++) {
			snprintf(p, sizeof p, "v/d%d/f%02d", d, f);
			mkf(p, 30, (unsigned)(d * 100 + f));
		}
	}
	mkf("v/x", 10, 1);
	mkf("v/y", 10, 2);
	mkf("v/doc", 100, 3);
	mkf("v/h1", 100, 4);
	ln("v/h1", "v/d0/h2");
	ln("v/h1", "v/d1/h5"); /* d1 is renamed below */
	mkf("v/h3", 100, 5);
	ln("v/h3", "v/h4");
	set_mtime("v", 100);
	for (int d = 0; d < 10; d++) {
		snprintf(p, sizeof p, "v/d%d", d);
		set_mtime(p, 100);
	}
	snapshot("v", "s1", RFS_SNAP_RDONLY);

	/* a snapshot against its unchanged source: nothing, nothing walked */
	struct lines l = run_diff("s1", "v");
	static const char *none[] = {NULL};
	expect_lines(&l, none, "snapshot against its unchanged source");
	EQ_U64(g_last.dirs_compared, 0);

	mv("v/d1", "v/d1x");                 /* a renamed directory, unchanged */
	mv("v/d2/f05", "v/d2/g05");          /* within a directory */
	mv("v/d3/f07", "v/d4/f07");          /* across, over an existing name */
	wr("v/d1x/f10", 0, "new", 3);        /* a change inside a renamed one */
	set_mtime("v/d1x/f10", 7);
	mkd("v/new");
	mv("v/d5", "v/new/d5");              /* into a new directory */
	mv("v/d6/f01", "v/kept");            /* out of a removed directory */
	rm_path("v/d6");
	mv("v/y", "v/x");                    /* over an existing name */
	mkf("v/doc.tmp", 100, 33);           /* an editor's save: new inode */
	mv("v/doc.tmp", "v/doc");
	wr("v/h1", 0, "H", 1);               /* a hard-linked file, both names */
	set_mtime("v/h1", 9);
	chmod_p("v/d7/f00", 0600);
	setx("v/d8/f00", "user.k", "1");
	set_mtime("v", 100);
	const char *want[256];
	char gone[50][32];
	int nw = 0;
	static const char *fixed[] = {
		"R d1 -> d1x",
		"M d1x/f10 data,mtime",
		"M d2 mtime",
		"R d2/f05 -> d2/g05",
		"M d3 mtime",
		"M d4 mtime",
		"R d3/f07 -> d4/f07",
		"D d4/f07",
		"A new",
		"R d5 -> new/d5",
		"R d6/f01 -> kept",
		"D d6",
		"D x",
		"R y -> x",
		"M doc data,mtime",
		"M h1 data,mtime",
		"M d0/h2 data,mtime",
		"M d1x/h5 data,mtime", /* under a renamed directory */
		"M d7/f00 mode",
		"M d8/f00 xattr",
		NULL,
	};
	for (; fixed[nw]; nw++)
		want[nw] = fixed[nw];
	for (int f = 0, k = 0; f < 50; f++) {
		if (f == 1)
			continue;
		snprintf(gone[k], sizeof gone[k], "D d6/f%02d", f);
		want[nw++] = gone[k++];
	}
	want[nw] = NULL;
	l = run_diff("s1", "v");
	expect_lines(&l, want, "snapshot against its changed source");
	/* the directories not touched were not opened */
	/* ., d1x, d2, d3, d4, d7, d8, and new/d5: an embedded directory
	 * gets a tree of its own when it moves to another directory, so its
	 * (at most RFS_EMBED_MAX) entries are listed and compared */
	EQ_U64(g_last.dirs_compared, 8);

	/* two snapshots (no back-pointer index on either side) */
	snapshot("v", "s2", 0);
	l = run_diff("s1", "s2");
	expect_lines(&l, want, "two snapshots");
	l = run_diff("s2", "v");
	expect_lines(&l, none, "a fresh snapshot against its source");

	/* new inodes on both sides after a snapshot may get equal numbers:
	 * never a rename */
	mkf("s2/born-in-s2", 5, 40);
	mkf("v/born-in-v", 5, 41);
	static const char *w2[] = {"M . mtime", "D born-in-s2", "A born-in-v", NULL};
	l = run_diff("s2", "v");
	expect_lines(&l, w2, "inodes born apart");

	OK(rfs_fs_snapshot_delete(g_fs, RFS_ROOT_NODE, "s1"));
	OK(rfs_fs_snapshot_delete(g_fs, RFS_ROOT_NODE, "s2"));
	rm_path("v");
}

/* ---- errors ------------------------------------------------------------------------ */

static void test_errors(void **state)
{
	(void)state;
	rfs_diff *d = (rfs_diff *)1;
	mkd("e");
	mkf("e/file", 3, 1);
	RC(rfs_diff_begin(g_fs, node("e"), node("e/file"), &d), -ENOTDIR);
	CHECK(d == NULL, "no diff handle on error");
	RC(rfs_diff_begin(g_fs, node("e/file"), node("e"), &d), -ENOTDIR);
	RC(rfs_diff_begin(g_fs, node("e"), 999999, &d), -ESTALE);
	rm_path("e");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_copy_changes),
		cmocka_unit_test(test_data),
		cmocka_unit_test(test_renames),
		cmocka_unit_test(test_random),
		cmocka_unit_test(test_snapshots),
		cmocka_unit_test(test_errors),
	};
	tu_log_capture();
	return tu_exit(cmocka_run_group_tests(tests, setup, teardown));
}
