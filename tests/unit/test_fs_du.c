/*
 * du (rfs_du_*, behind `reflinkfs du`) through the fs API:
 *
 *  - exact figures in chosen cases: plain files; a whole-file clone below
 *    and outside PATH; a range clone outside PATH; hard links with all
 *    names below PATH and with one outside; a snapshot of a directory
 *    (everything shared until written), then writes on one side: the
 *    exclusive bytes of each side grow by exactly the blocks written;
 *    PATH below a snapshotted directory (shared through a node above it);
 *  - the same figures whatever the step budget;
 *  - a randomized test against oracles that share no code with the
 *    walker: exclusive = the data blocks that deleting PATH frees (on a
 *    copy of the pool, counted by rfs_check), set = the data blocks left
 *    after deleting everything but PATH, total = the sum of st_blocks of
 *    the distinct inodes below PATH; RFS_SEED=<n> replays a seed;
 *  - writers between steps: no crash, `changes` counts them; PATH removed
 *    meanwhile gives -ESTALE.
 */
#include "common/fsfix.h"
#include "common/testutil.h"

#include <linux/falloc.h>

#include "reflinkfs/fs.h"

#define BS RFS_BLOCK_SIZE

static char g_copy[PATH_MAX + 16];
static const struct rfs_ctx g_ctx = {.pid = 1, .umask = 022};

static int setup(void **state)
{
	(void)state;
	fx_setup(state);
	snprintf(g_copy, sizeof(g_copy), "%s/copy", g_dir);
	tu_log_capture();
	return 0;
}

static rfs_fs *fresh(void)
{
	return fx_fresh(256u << 20, 0);
}

/* Resolve path; 0 when it does not exist.  The lookup reference stays
 * (the tests are short; rfs_fs_close frees the table). */
static rfs_nodeid at(rfs_fs *fs, const char *path)
{
	rfs_nodeid n;
	struct stat st;
	if (!strcmp(path, "/") || !*path)
		return RFS_ROOT_NODE;
	return rfs_fs_resolve(fs, path, &n, &st) ? 0 : n;
}

static rfs_nodeid mkdir_at(rfs_fs *fs, const char *parent, const char *name)
{
	rfs_nodeid n;
	struct stat st;
	OK(rfs_fs_mkdir(fs, &g_ctx, at(fs, parent), name, 0755, &n, &st));
	return n;
}

static void write_blocks(rfs_fs *fs, rfs_nodeid n, uint64_t lblk, uint64_t nblocks, uint32_t seed)
{
	uint8_t *buf = malloc(nblocks * BS);
	assert_non_null(buf);
	tu_rng r = {seed};
	tu_fill(&r, buf, nblocks * BS);
	RC(rfs_fs_write(fs, n, buf, nblocks * BS, lblk * BS), (long)(nblocks * BS));
	free(buf);
}

static rfs_nodeid file_at(rfs_fs *fs, const char *parent, const char *name, uint64_t nblocks,
			  uint32_t seed)
{
	rfs_nodeid n;
	struct stat st;
	OK(rfs_fs_create(fs, &g_ctx, at(fs, parent), name, 0644, &n, &st));
	if (nblocks)
		write_blocks(fs, n, 0, nblocks, seed);
	return n;
}

/* du of node with steps of budget units (0: one big step). */
static int du_run(rfs_fs *fs, rfs_nodeid node, uint64_t budget, struct rfs_du_stats *st)
{
	rfs_du *d;
	int ret = rfs_du_begin(fs, node, &d);
	if (ret)
		return ret;
	unsigned steps = 0;
	do {
		ret = rfs_du_step(d, budget ? budget : UINT64_MAX);
		steps++;
		CHECK(steps < 10000000, "du does not end");
	} while (ret == 1);
	rfs_du_get_stats(d, st);
	rfs_du_end(d);
	if (!ret)
		CHECK(st->done == 1, "done not set");
	return ret;
}

static struct rfs_du_stats du_path(rfs_fs *fs, const char *path)
{
	struct rfs_du_stats st, st2;
	rfs_nodeid n = at(fs, path);
	CHECK(n, "%s missing", path);
	OK(du_run(fs, n, 0, &st));
	/* Small steps give the same figures (nothing changes in between). */
	static const uint64_t budgets[] = {1, 2, 3, 5, 17, 100};
	for (size_t i = 0; i < sizeof(budgets) / sizeof(*budgets); i++) {
		OK(du_run(fs, n, budgets[i], &st2));
		st2.nodes = st.nodes;
		CHECK(!memcmp(&st, &st2, sizeof(st)),
		      "%s with budget %" PRIu64 ": total %" PRIu64 "/%" PRIu64 " set %" PRIu64
		      "/%" PRIu64 " excl %" PRIu64 "/%" PRIu64 " meta %" PRIu64 "/%" PRIu64
		      " files %" PRIu64 "/%" PRIu64,
		      path, budgets[i], st.total, st2.total, st.set, st2.set, st.exclusive,
		      st2.exclusive, st.meta_exclusive, st2.meta_exclusive, st.files, st2.files);
	}
	EQ_U64(st.changes, 0);
	EQ_U64(st.shared, st.set - st.exclusive);
	CHECK(st.meta_exclusive <= st.meta_set, "meta");
	CHECK(st.exclusive <= st.set, "exclusive > set");
	return st;
}

#define EXPECT(st, tot, s, ex)                                                          \
	do {                                                                            \
		EQ_U64((st).total, (uint64_t)(tot) * BS);                               \
		EQ_U64((st).set, (uint64_t)(s) * BS);                                   \
		EQ_U64((st).exclusive, (uint64_t)(ex) * BS);                            \
	} while (0)

/* ---- chosen cases ------------------------------------------------------------- */

static void test_files_and_clones(void **state)
{
	(void)state;
	rfs_fs *fs = fresh();
	mkdir_at(fs, "/", "d");
	mkdir_at(fs, "/", "e");
	rfs_nodeid a = file_at(fs, "/d", "a", 10, 1);
	file_at(fs, "/d", "b", 3, 2);
	mkdir_at(fs, "/d", "sub");
	file_at(fs, "/d/sub", "c", 5, 3);
	struct rfs_du_stats st = du_path(fs, "/d");
	EXPECT(st, 18, 18, 18);
	EQ_U64(st.files, 3);
	EQ_U64(st.dirs, 2);
	/* /d is embedded (its entries are items of the root's tree): it has
	 * no tree node of its own, and what it has is its own. */
	CHECK(st.meta_set == 0 && st.meta_exclusive == st.meta_set, "meta %" PRIu64 "/%" PRIu64,
	      st.meta_exclusive, st.meta_set);

	/* A whole-file clone below PATH: counted twice in total, once in set,
	 * and still PATH's own. */
	rfs_nodeid a2 = file_at(fs, "/d", "a2", 0, 0);
	OK(rfs_fs_clone_file(fs, a, a2));
	st = du_path(fs, "/d");
	EXPECT(st, 28, 18, 18);
	st = du_path(fs, "/d/a");
	EXPECT(st, 10, 10, 0);
	OK(rfs_fs_sync(fs));
	st = du_path(fs, "/d");
	EXPECT(st, 28, 18, 18);

	/* A clone outside PATH shares a's blocks. */
	rfs_nodeid x = file_at(fs, "/e", "x", 0, 0);
	OK(rfs_fs_clone_file(fs, a, x));
	st = du_path(fs, "/d");
	EXPECT(st, 28, 18, 8);
	EQ_U64(st.shared, 10 * BS);
	st = du_path(fs, "/e");
	EXPECT(st, 10, 10, 0);
	st = du_path(fs, "/");
	EXPECT(st, 38, 18, 18);

	/* Writing 2 blocks of the clone outside: they are its own, and the
	 * old ones still shared by a and a2 only. */
	write_blocks(fs, x, 4, 2, 99);
	st = du_path(fs, "/e");
	EXPECT(st, 10, 10, 2);
	st = du_path(fs, "/d");
	EXPECT(st, 28, 18, 10);

	/* A range clone outside PATH: blocks 1..3 of b. */
	rfs_nodeid y = file_at(fs, "/e", "y", 0, 0);
	RC(rfs_fs_clone_range(fs, at(fs, "/d/b"), BS, y, 0, 2 * BS), 2 * BS);
	st = du_path(fs, "/d");
	EXPECT(st, 28, 18, 8);
	st = du_path(fs, "/d/b");
	EXPECT(st, 3, 3, 1);
	/* A range clone inside PATH, of c into b's tail. */
	RC(rfs_fs_clone_range(fs, at(fs, "/d/sub/c"), 0, at(fs, "/d/b"), 3 * BS, 4 * BS), 4 * BS);
	st = du_path(fs, "/d");
	EXPECT(st, 32, 18, 8);
	st = du_path(fs, "/d/sub");
	EXPECT(st, 5, 5, 1);

	/* A deleted clone whose tree is still queued for release shares the
	 * blocks until the release gets to it. */
	rfs_nodeid big = file_at(fs, "/d", "big", 2000, 11);
	rfs_nodeid bc = file_at(fs, "/e", "bigclone", 0, 0);
	OK(rfs_fs_clone_file(fs, big, bc));
	st = du_path(fs, "/d");
	EXPECT(st, 2032, 2018, 8);
	/* Written once, the clone has a root of its own over shared nodes:
	 * deleting it queues that root. */
	write_blocks(fs, bc, 1000, 1, 12);
	st = du_path(fs, "/d");
	EXPECT(st, 2032, 2018, 9);
	OK(rfs_fs_unlink(fs, at(fs, "/e"), "bigclone"));
	struct rfs_fs_reclaim_stat rs;
	OK(rfs_fs_reclaim_status(fs, &rs));
	CHECK(rs.trees > 0, "the deleted clone's tree is not queued: the test needs a bigger file");
	st = du_path(fs, "/d");
	EXPECT(st, 2032, 2018, 9);
	RC(rfs_fs_reclaim(fs, 0), 0);
	st = du_path(fs, "/d");
	EXPECT(st, 2032, 2018, 2008);

	/* Preallocated blocks count. */
	rfs_nodeid z = file_at(fs, "/d", "z", 0, 0);
	OK(rfs_fs_fallocate(fs, z, 0, 0, 7 * BS));
	(void)big;
	st = du_path(fs, "/d/z");
	EXPECT(st, 7, 7, 7);
	(void)a2;
	OK(rfs_fs_close(fs));
}

static void test_hard_links(void **state)
{
	(void)state;
	rfs_fs *fs = fresh();
	mkdir_at(fs, "/", "d");
	mkdir_at(fs, "/d", "in");
	mkdir_at(fs, "/", "e");
	rfs_nodeid h = file_at(fs, "/d", "h", 6, 5);
	file_at(fs, "/d", "plain", 2, 6);
	struct stat st0;
	OK(rfs_fs_link(fs, h, at(fs, "/d/in"), "h2", &st0));
	/* Both names below /d: one inode, PATH's own. */
	struct rfs_du_stats st = du_path(fs, "/d");
	EXPECT(st, 8, 8, 8);
	EQ_U64(st.files, 2);
	/* /d/in holds one name of two: counted, not its own. */
	st = du_path(fs, "/d/in");
	EXPECT(st, 6, 6, 0);
	st = du_path(fs, "/d/h");
	EXPECT(st, 6, 6, 0);
	/* A third name outside /d. */
	OK(rfs_fs_link(fs, h, at(fs, "/e"), "h3", &st0));
	st = du_path(fs, "/d");
	EXPECT(st, 8, 8, 2);
	OK(rfs_fs_unlink(fs, at(fs, "/e"), "h3"));
	OK(rfs_fs_sync(fs));
	st = du_path(fs, "/d");
	EXPECT(st, 8, 8, 8);
	OK(rfs_fs_close(fs));
}

static void test_snapshot(void **state)
{
	(void)state;
	rfs_fs *fs = fresh();
	mkdir_at(fs, "/", "d");
	mkdir_at(fs, "/d", "sub");
	rfs_nodeid f = file_at(fs, "/d", "f", 20, 7);
	file_at(fs, "/d/sub", "g", 4, 8);
	rfs_nodeid h = file_at(fs, "/d/sub", "h", 3, 9);
	struct stat st0;
	OK(rfs_fs_link(fs, h, at(fs, "/d"), "h2", &st0));
	/* Many entries, so the entry trees have more than one node. */
	for (int i = 0; i < 300; i++) {
		char name[64];
		snprintf(name, sizeof(name), "empty-file-with-a-long-name-%03d", i);
		file_at(fs, "/d/sub", name, i % 50 == 0 ? 1 : 0, (uint32_t)i);
	}
	OK(rfs_fs_sync(fs));
	struct rfs_du_stats before = du_path(fs, "/d");
	uint64_t nd = 20 + 4 + 3 + 6;
	EXPECT(before, nd, nd, nd);

	rfs_nodeid s;
	OK(rfs_fs_snapshot(fs, at(fs, "/d"), RFS_ROOT_NODE, "s", 0, &s, &st0));
	/* Every block shared until written, both ways. */
	struct rfs_du_stats sd = du_path(fs, "/d"), ss = du_path(fs, "/s");
	EXPECT(sd, nd, nd, 0);
	EXPECT(ss, nd, nd, 0);
	EQ_U64(sd.files, before.files);
	EQ_U64(ss.files, before.files);
	EQ_U64(sd.meta_exclusive, 0);
	/* Below the snapshotted directory too: shared through a node above. */
	struct rfs_du_stats sub = du_path(fs, "/d/sub");
	EXPECT(sub, 4 + 3 + 6, 4 + 3 + 6, 0);
	/* Both below PATH: everything PATH's own, each inode counted. */
	struct rfs_du_stats all = du_path(fs, "/");
	EXPECT(all, 2 * nd, nd, nd);
	EQ_U64(all.files, 2 * before.files);
	EQ_U64(all.dirs, 2 * before.dirs + 1);

	/* Overwrite 3 blocks of /d/f: each side gets exactly 3 of its own. */
	write_blocks(fs, f, 5, 3, 77);
	sd = du_path(fs, "/d");
	ss = du_path(fs, "/s");
	EXPECT(sd, nd, nd, 3);
	EXPECT(ss, nd, nd, 3);
	CHECK(sd.meta_exclusive > 0, "the copied path is /d's own");
	all = du_path(fs, "/");
	EXPECT(all, 2 * nd, nd + 3, nd + 3);
	OK(rfs_fs_sync(fs));
	sd = du_path(fs, "/d");
	EXPECT(sd, nd, nd, 3);

	/* Append 4 blocks to the snapshot's copy of g: its own, nothing
	 * changes for /d. */
	write_blocks(fs, at(fs, "/s/sub/g"), 4, 4, 78);
	ss = du_path(fs, "/s");
	EXPECT(ss, nd + 4, nd + 4, 3 + 4);
	sd = du_path(fs, "/d");
	EXPECT(sd, nd, nd, 3);
	sub = du_path(fs, "/d/sub");
	EXPECT(sub, 13, 13, 0);

	/* The hard-linked inode: each volume has its own record; writing it
	 * through one side makes those blocks that side's own. */
	write_blocks(fs, at(fs, "/d/h2"), 0, 2, 79);
	sd = du_path(fs, "/d");
	EXPECT(sd, nd, nd, 3 + 2);
	ss = du_path(fs, "/s");
	EXPECT(ss, nd + 4, nd + 4, 3 + 4 + 2);

	/* A snapshot inside PATH. */
	rfs_nodeid in;
	OK(rfs_fs_snapshot(fs, at(fs, "/d/sub"), at(fs, "/d"), "snapsub", 0, &in, &st0));
	sd = du_path(fs, "/d");
	EXPECT(sd, nd + 13, nd, 3 + 2);
	OK(rfs_fs_close(fs));
}

/* ---- randomized, against oracles --------------------------------------------- */

struct names {
	char **v;
	size_t n, cap;
};

static void names_add(struct names *l, const char *s)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 64;
		l->v = realloc(l->v, l->cap * sizeof(*l->v));
		assert_non_null(l->v);
	}
	l->v[l->n] = strdup(s);
	assert_non_null(l->v[l->n]);
	l->n++;
}

static void names_free(struct names *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	memset(l, 0, sizeof(*l));
}

struct entry_list {
	struct names names;
	struct stat st[4096];
};

static int list_cb(void *arg, const char *name, const struct stat *st, rfs_nodeid node,
		   uint64_t next)
{
	struct entry_list *l = arg;
	(void)node;
	(void)next;
	if (!strcmp(name, ".") || !strcmp(name, ".."))
		return 0;
	CHECK(l->names.n < 4096, "directory too big for the test");
	l->st[l->names.n] = *st;
	names_add(&l->names, name);
	return 0;
}

static void list_dir(rfs_fs *fs, rfs_nodeid dir, struct entry_list *l)
{
	memset(l, 0, sizeof(*l));
	OK(rfs_fs_readdir(fs, dir, 0, false, list_cb, l));
}

/* Every path below path (directories in dirs, the rest in files). */
static void walk_paths(rfs_fs *fs, const char *path, struct names *dirs, struct names *files)
{
	struct entry_list *l = malloc(sizeof(*l));
	assert_non_null(l);
	list_dir(fs, at(fs, path), l);
	for (size_t i = 0; i < l->names.n; i++) {
		char p[4096];
		snprintf(p, sizeof(p), "%s/%s", strcmp(path, "/") ? path : "", l->names.v[i]);
		if (S_ISDIR(l->st[i].st_mode)) {
			names_add(dirs, p);
			walk_paths(fs, p, dirs, files);
		} else {
			names_add(files, p);
		}
	}
	names_free(&l->names);
	free(l);
}

/* Oracle of total: st_blocks of the distinct inodes below path. */
static uint64_t total_of(rfs_fs *fs, const char *path)
{
	struct names dirs = {0}, files = {0};
	struct stat st;
	rfs_nodeid n = at(fs, path);
	OK(rfs_fs_getattr(fs, n, &st));
	uint64_t sum = (uint64_t)st.st_blocks * 512;
	if (S_ISDIR(st.st_mode))
		walk_paths(fs, path, &dirs, &files);
	uint64_t *inos = calloc(files.n + 1, sizeof(*inos));
	assert_non_null(inos);
	size_t ni = 0;
	for (size_t i = 0; i < files.n; i++) {
		OK(rfs_fs_getattr(fs, at(fs, files.v[i]), &st));
		bool seen = false;
		for (size_t k = 0; k < ni && !seen; k++)
			seen = inos[k] == st.st_ino;
		if (!seen) {
			inos[ni++] = st.st_ino;
			sum += (uint64_t)st.st_blocks * 512;
		}
	}
	free(inos);
	names_free(&dirs);
	names_free(&files);
	return sum;
}

/* Remove path, whatever it is, with everything below it. */
static void rm_rf(rfs_fs *fs, const char *path)
{
	char parent[4096], *slash;
	snprintf(parent, sizeof(parent), "%s", path);
	slash = strrchr(parent, '/');
	assert_non_null(slash);
	const char *name = path + (slash - parent) + 1;
	*slash = 0;
	rfs_nodeid pn = at(fs, *parent ? parent : "/");
	struct stat st;
	int ret = rfs_fs_getattr(fs, at(fs, path), &st);
	CHECK(ret == 0, "rm -r %s: %d", path, ret);
	if (!S_ISDIR(st.st_mode)) {
		OK(rfs_fs_unlink(fs, pn, name));
		return;
	}
	if (rfs_fs_snapshot_delete(fs, pn, name) == 0)
		return;
	struct entry_list *l = malloc(sizeof(*l));
	assert_non_null(l);
	list_dir(fs, at(fs, path), l);
	for (size_t i = 0; i < l->names.n; i++) {
		char p[4096];
		snprintf(p, sizeof(p), "%s/%s", path, l->names.v[i]);
		rm_rf(fs, p);
	}
	names_free(&l->names);
	free(l);
	OK(rfs_fs_rmdir(fs, pn, name));
}

/* Data blocks in use in the pool of fs (the engine's check counts them),
 * after releasing whatever the drop queue holds. */
static uint64_t data_in_use(rfs_fs *fs)
{
	rfs_pool *pool = rfs_fs_pool(fs);
	struct rfs_dropq_stat q;
	rfs_pool_wrlock(pool);
	OK(rfs_dropq_stat(pool, &q));
	while (q.trees) {
		uint64_t freed, left;
		OK(rfs_dropq_work(pool, 1u << 20, &freed, &left));
		OK(rfs_dropq_stat(pool, &q));
	}
	struct rfs_check_stats cs;
	long problems = rfs_check(pool, NULL, NULL, &cs);
	rfs_pool_unlock(pool);
	EQ_U64(problems, 0);
	return cs.data_blocks;
}

/* rm_rf keeps lookup references on what it removes (at()), which makes
 * orphans of files: a reopen frees them, as a remount would. */
static rfs_fs *reopen_copy(rfs_fs *fs)
{
	OK(rfs_fs_close(fs));
	OK(rfs_fs_open(g_copy, 0, &fs));
	return fs;
}

/* On a copy of the pool: data blocks freed by deleting path (the
 * oracle of exclusive), and left when everything else is deleted (of
 * set). */
static void oracles(const char *path, uint64_t *freed, uint64_t *kept)
{
	rfs_fs *fs;
	OK(tu_copy_file(g_pool, g_copy));
	OK(rfs_fs_open(g_copy, 0, &fs));
	uint64_t all = data_in_use(fs);
	if (strcmp(path, "/")) {
		rm_rf(fs, path);
		fs = reopen_copy(fs);
		*freed = all - data_in_use(fs);
	} else {
		*freed = all;
	}
	rfs_fs_abandon(fs);
	if (!strcmp(path, "/")) {
		*kept = all;
		unlink(g_copy);
		return;
	}
	OK(tu_copy_file(g_pool, g_copy));
	OK(rfs_fs_open(g_copy, 0, &fs));
	/* Delete every entry not on the way to path. */
	char done[4096] = "";
	const char *p = path;
	for (;;) {
		struct entry_list *l = malloc(sizeof(*l));
		assert_non_null(l);
		list_dir(fs, at(fs, *done ? done : "/"), l);
		while (*p == '/')
			p++;
		const char *end = strchr(p, '/');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		for (size_t i = 0; i < l->names.n; i++) {
			if (len && strlen(l->names.v[i]) == len && !memcmp(l->names.v[i], p, len))
				continue;
			char q[8300];
			snprintf(q, sizeof(q), "%s/%s", done, l->names.v[i]);
			rm_rf(fs, q);
		}
		names_free(&l->names);
		free(l);
		if (!len)
			break;
		struct stat st;
		size_t dl = strlen(done);
		snprintf(done + dl, sizeof(done) - dl, "/%.*s", (int)len, p);
		OK(rfs_fs_getattr(fs, at(fs, done), &st));
		p += len;
		if (!S_ISDIR(st.st_mode) || !*p)
			break;
	}
	fs = reopen_copy(fs);
	*kept = data_in_use(fs);
	rfs_fs_abandon(fs);
	unlink(g_copy);
}

static const char *pick(tu_rng *r, const struct names *l)
{
	return l->n ? l->v[tu_below(r, l->n)] : NULL;
}

/* One random change; errors that the fs gives for the random choice
 * (EXDEV across volumes, EEXIST...) are fine. */
static void random_op(rfs_fs *fs, tu_rng *r, struct names *dirs, struct names *files,
		      unsigned *serial)
{
	char name[64], p[4096];
	struct stat st;
	const char *dir = tu_below(r, 5) ? pick(r, dirs) : "/";
	const char *f = pick(r, files);
	rfs_nodeid n;
	if (!dir)
		dir = "/";
	snprintf(name, sizeof(name), "n%u", (*serial)++);
	switch (tu_below(r, 12)) {
	case 0:
	case 1: /* a new file */
		file_at(fs, dir, name, tu_below(r, 24), (uint32_t)tu_next(r));
		break;
	case 2: /* a new directory */
		mkdir_at(fs, dir, name);
		break;
	case 3: /* overwrite or extend some blocks */
		if (f && (n = at(fs, f)) && !rfs_fs_getattr(fs, n, &st) && S_ISREG(st.st_mode))
			write_blocks(fs, n, tu_below(r, 20), tu_range(r, 1, 6), (uint32_t)tu_next(r));
		break;
	case 4: /* whole-file clone */
		if (f && (n = at(fs, f)) && !rfs_fs_getattr(fs, n, &st) && S_ISREG(st.st_mode)) {
			rfs_nodeid c = file_at(fs, dir, name, 0, 0);
			OK(rfs_fs_clone_file(fs, n, c));
		}
		break;
	case 5: /* range clone, blocks or bytes */
		if (f && (n = at(fs, f)) && !rfs_fs_getattr(fs, n, &st) && S_ISREG(st.st_mode)) {
			const char *g = pick(r, files);
			rfs_nodeid m = g ? at(fs, g) : 0;
			struct stat sm;
			if (!m || m == n || rfs_fs_getattr(fs, m, &sm) || !S_ISREG(sm.st_mode))
				m = file_at(fs, dir, name, 0, 0);
			uint64_t unit = tu_below(r, 3) ? BS : 1000;
			ssize_t got = rfs_fs_clone_range(fs, n, tu_below(r, 8) * unit, m,
							  tu_below(r, 8) * unit, tu_range(r, 1, 12) * unit);
			CHECK(got >= 0, "clone_range = %zd", got);
		}
		break;
	case 6: /* hard link */
		if (f && (n = at(fs, f))) {
			int ret = rfs_fs_link(fs, n, at(fs, dir), name, &st);
			CHECK(ret == 0 || ret == -EXDEV || ret == -EPERM, "link = %d", ret);
		}
		break;
	case 7: /* remove a name */
		if (f && tu_below(r, 2) && at(fs, f)) {
			snprintf(p, sizeof(p), "%s", f);
			rm_rf(fs, p);
		}
		break;
	case 8: /* snapshot a directory */
	case 9: {
		const char *src = tu_below(r, 4) ? pick(r, dirs) : "/";
		rfs_nodeid s;
		/* Snapshots of snapshots double the tree: keep it small. */
		if (!src || dirs->n + files->n > 150)
			break;
		int ret = rfs_fs_snapshot(fs, at(fs, src), at(fs, dir), name, 0, &s, &st);
		CHECK(ret == 0 || ret == -ELOOP || ret == -EINVAL || ret == -EXDEV,
		      "snapshot %s -> %s/%s = %d", src, dir, name, ret);
		break;
	}
	case 10: /* truncate */
		if (f && (n = at(fs, f)) && !rfs_fs_getattr(fs, n, &st) && S_ISREG(st.st_mode)) {
			struct stat in = {.st_size = (off_t)(tu_below(r, 30) * 1000)};
			OK(rfs_fs_setattr(fs, n, &in, RFS_SET_SIZE, NULL));
		}
		break;
	case 11: /* preallocate */
		if (f && (n = at(fs, f)) && !rfs_fs_getattr(fs, n, &st) && S_ISREG(st.st_mode))
			OK(rfs_fs_fallocate(fs, n, FALLOC_FL_KEEP_SIZE, tu_below(r, 20) * BS,
					    tu_range(r, 1, 8) * BS));
		break;
	}
}

static uint64_t seed_of(void)
{
	const char *s = getenv("RFS_SEED");
	return s && *s ? strtoull(s, NULL, 0) : 0;
}

static uint64_t g_seed;

static void print_seed(void)
{
	print_error("replay with RFS_SEED=%" PRIu64 "\n", g_seed);
}

static void test_random(void **state)
{
	(void)state;
	uint64_t one = seed_of();
	unsigned rounds = one ? 1 : 6;
	tu_fail_hook = print_seed;
	for (unsigned round = 0; round < rounds; round++) {
		g_seed = one ? one : 1000 + round;
		tu_rng r = {g_seed};
		rfs_fs *fs = fresh();
		unsigned serial = 0;
		mkdir_at(fs, "/", "a");
		mkdir_at(fs, "/", "b");
		for (unsigned step = 0; step < 8; step++) {
			struct names dirs = {0}, files = {0};
			walk_paths(fs, "/", &dirs, &files);
			for (int k = 0; k < 12; k++)
				random_op(fs, &r, &dirs, &files, &serial);
			if (tu_below(&r, 2))
				OK(rfs_fs_sync(fs));
			names_free(&dirs);
			names_free(&files);
		}
		/* Reopen: inodes unlinked while the test held lookup references
		 * on them are orphans until then, which the copies the oracles
		 * work on would not have. */
		OK(rfs_fs_close(fs));
		OK(rfs_fs_open(g_pool, 0, &fs));
		/* Deleted files still queued share blocks until released; the
		 * oracles count after releasing them. */
		RC(rfs_fs_reclaim(fs, 0), 0);
		struct names dirs = {0}, files = {0};
		walk_paths(fs, "/", &dirs, &files);
		/* The paths to check: the root, some directories and files. */
		struct names check = {0};
		names_add(&check, "/");
		for (int k = 0; k < 5; k++)
			if (dirs.n)
				names_add(&check, pick(&r, &dirs));
		for (int k = 0; k < 3; k++)
			if (files.n)
				names_add(&check, pick(&r, &files));
		struct rfs_du_stats *got = calloc(check.n, sizeof(*got));
		uint64_t *tot = calloc(check.n, sizeof(*tot));
		assert_non_null(got);
		assert_non_null(tot);
		for (size_t i = 0; i < check.n; i++) {
			got[i] = du_path(fs, check.v[i]);
			tot[i] = total_of(fs, check.v[i]);
		}
		OK(rfs_fs_close(fs));
		for (size_t i = 0; i < check.n; i++) {
			uint64_t freed, kept;
			oracles(check.v[i], &freed, &kept);
			CHECK(got[i].exclusive == freed * BS && got[i].set == kept * BS &&
				      got[i].total == tot[i],
			      "seed %" PRIu64 " %s: exclusive %" PRIu64 " (deleting frees %" PRIu64
			      "), set %" PRIu64 " (%" PRIu64 " left), total %" PRIu64 " (%" PRIu64 ")",
			      g_seed, check.v[i], got[i].exclusive / BS, freed, got[i].set / BS,
			      kept, got[i].total / BS, tot[i] / BS);
		}
		free(got);
		free(tot);
		names_free(&check);
		names_free(&dirs);
		names_free(&files);
		EQ_U64(rfs_fs_fsck(g_pool, fx_fsck_line, NULL), 0);
	}
	tu_fail_hook = NULL;
}

/* du of path against the deletion oracles (fs closed for them, then
 * opened again): exclusive is what deleting path frees, set what is left
 * when everything else goes.  Returns the exclusive blocks. */
static uint64_t du_vs_oracles(rfs_fs **fs, const char *path)
{
	struct rfs_du_stats st = du_path(*fs, path);
	OK(rfs_fs_close(*fs));
	uint64_t freed, kept;
	oracles(path, &freed, &kept);
	CHECK(st.exclusive == freed * BS && st.set == kept * BS,
	      "%s: exclusive %" PRIu64 " (deleting frees %" PRIu64 "), set %" PRIu64
	      " (%" PRIu64 " left)",
	      path, st.exclusive / BS, freed, st.set / BS, kept);
	OK(rfs_fs_open(g_pool, 0, fs));
	return freed;
}

/* An embedded directory's entries live in a leaf of the tree that holds
 * its record, not always the record's own leaf.  After a snapshot of the
 * holder, a change to the record's leaf alone (a chmod of the directory)
 * gives the record a leaf of its own while the entries' leaf is still
 * the snapshot's too: deleting the directory frees none of its files'
 * blocks, so none is exclusive (du counted them all as its own).  Then
 * changes that give the entries' leaf, not the record's, a copy of its
 * own (a second snapshot, files written in a sibling embedded directory
 * whose entries sit next to them): du still agrees with the oracles. */
static void test_embedded_shared_leaf(void **state)
{
	(void)state;
	rfs_fs *fs = fresh();
	mkdir_at(fs, "/", "p");
	/* Enough long names that p has a tree of several leaves. */
	for (int i = 0; i < 200; i++) {
		char name[80];
		snprintf(name, sizeof(name), "entry-of-p-with-a-rather-long-name-%03d", i);
		file_at(fs, "/p", name, 0, 0);
	}
	mkdir_at(fs, "/p", "e");
	mkdir_at(fs, "/p", "e2");
	for (int i = 0; i < 4; i++) {
		char name[16];
		snprintf(name, sizeof(name), "f%d", i);
		file_at(fs, "/p/e", name, 2, (uint32_t)(40 + i));
	}
	struct rfs_du_stats st = du_path(fs, "/p/e");
	EXPECT(st, 8, 8, 8);
	rfs_nodeid s;
	struct stat st0;
	OK(rfs_fs_snapshot(fs, at(fs, "/p"), RFS_ROOT_NODE, "s", 0, &s, &st0));
	st = du_path(fs, "/p/e");
	EXPECT(st, 8, 8, 0);
	/* The record's leaf alone. */
	struct stat mode = {.st_mode = 0700};
	OK(rfs_fs_setattr(fs, at(fs, "/p/e"), &mode, RFS_SET_MODE, NULL));
	EQ_U64(du_vs_oracles(&fs, "/p/e"), 0);
	/* New files below e are its own; then a second snapshot, and the
	 * entries' neighbours change. */
	file_at(fs, "/p/e", "new", 3, 50);
	EQ_U64(du_vs_oracles(&fs, "/p/e"), 3);
	OK(rfs_fs_snapshot(fs, at(fs, "/p"), RFS_ROOT_NODE, "s2", 0, &s, &st0));
	file_at(fs, "/p/e2", "g", 1, 51);
	du_vs_oracles(&fs, "/p/e");
	du_vs_oracles(&fs, "/p/e2");
	du_vs_oracles(&fs, "/p");
	OK(rfs_fs_close(fs));
}

/* ---- changes between steps ------------------------------------------------------ */

static void test_changes(void **state)
{
	(void)state;
	rfs_fs *fs = fresh();
	mkdir_at(fs, "/", "d");
	for (int i = 0; i < 50; i++) {
		char name[16];
		snprintf(name, sizeof(name), "f%d", i);
		file_at(fs, "/d", name, 2, (uint32_t)i);
	}
	rfs_nodeid d = at(fs, "/d");
	rfs_du *du;
	OK(rfs_du_begin(fs, d, &du));
	int ret, steps = 0;
	tu_rng r = {7};
	while ((ret = rfs_du_step(du, 3)) == 1) {
		/* Writers between steps: new files, removals, writes. */
		char name[16];
		snprintf(name, sizeof(name), "g%d", steps);
		file_at(fs, "/d", name, 1, (uint32_t)steps);
		snprintf(name, sizeof(name), "f%d", (int)tu_below(&r, 50));
		rfs_fs_unlink(fs, d, name);
		steps++;
		CHECK(steps < 100000, "no end");
	}
	OK(ret);
	struct rfs_du_stats st;
	rfs_du_get_stats(du, &st);
	rfs_du_end(du);
	CHECK(st.changes >= (uint64_t)steps, "changes %" PRIu64 " < %d", st.changes, steps);
	CHECK(st.exclusive <= st.set && st.set > 0, "figures");

	/* PATH removed between steps. */
	rfs_nodeid e = mkdir_at(fs, "/", "e");
	file_at(fs, "/e", "x", 3, 1);
	OK(rfs_du_begin(fs, e, &du));
	OK(rfs_fs_unlink(fs, e, "x"));
	OK(rfs_fs_rmdir(fs, RFS_ROOT_NODE, "e"));
	ret = rfs_du_step(du, 1000);
	CHECK(ret == -ESTALE || ret == 0, "du of a removed directory = %d", ret);
	rfs_du_end(du);
	OK(rfs_fs_close(fs));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_files_and_clones, setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_hard_links, setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_snapshot, setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_embedded_shared_leaf, setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_random, setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_changes, setup, fx_teardown),
	};
	return tu_exit(cmocka_run_group_tests(tests, NULL, NULL));
}
