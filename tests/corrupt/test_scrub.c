/*
 * Scrub (rfs_scrub_*, behind `reflinkfs scrub` and `fsck --data`): damage
 * chosen data blocks of a filesystem (a plain file, a block shared by a
 * whole-file clone, one shared by a range clone, a hard-linked inode, a
 * sparse file) and check that the scrub reports exactly those blocks,
 * each with every path that uses it, whatever the step budget; that a
 * clean pool gives an empty report; that an unreadable file tree is
 * reported by path; and that writers changing the filesystem between
 * steps (and from another thread) never show up as damage.
 */
#include "common/fsfix.h"
#include "common/testutil.h"

#include <linux/falloc.h>
#include <pthread.h>

#include "fs/fs_internal.h"
#include "reflinkfs/fs.h"

#define BS RFS_BLOCK_SIZE

static const struct rfs_ctx g_ctx = {.pid = 1, .umask = 022};

static rfs_nodeid resolve(rfs_fs *fs, const char *path)
{
	rfs_nodeid n;
	struct stat st;
	OK(rfs_fs_resolve(fs, path, &n, &st));
	return n;
}

static rfs_nodeid mk(rfs_fs *fs, rfs_nodeid dir, const char *name, bool isdir)
{
	rfs_nodeid n;
	struct stat st;
	if (isdir)
		OK(rfs_fs_mkdir(fs, &g_ctx, dir, name, 0755, &n, &st));
	else
		OK(rfs_fs_create(fs, &g_ctx, dir, name, 0644, &n, &st));
	return n;
}

static void put_data(rfs_fs *fs, rfs_nodeid n, uint64_t lblk, uint64_t nblocks, uint32_t seed)
{
	uint8_t *buf = malloc(nblocks * BS);
	assert_non_null(buf);
	tu_rng r = {seed};
	tu_fill(&r, buf, nblocks * BS);
	RC(rfs_fs_write(fs, n, buf, nblocks * BS, lblk * BS), (long)(nblocks * BS));
	free(buf);
}

struct phys_arg {
	uint64_t lblk, block;
};

static int phys_cb(void *arg, const struct rfs_extent_info *e)
{
	struct phys_arg *a = arg;
	uint64_t l = e->logical / BS, n = e->length / BS;
	if (a->lblk >= l && a->lblk < l + n)
		a->block = e->physical / BS + (a->lblk - l);
	return 0;
}

/* Pool block holding file block lblk of path. */
static uint64_t phys(rfs_fs *fs, const char *path, uint64_t lblk)
{
	rfs_nodeid n = resolve(fs, path);
	struct phys_arg a = {lblk, 0};
	OK(rfs_fs_extents(fs, n, phys_cb, &a));
	rfs_fs_forget(fs, n, 1);
	CHECK(a.block != 0, "%s block %" PRIu64 " not mapped", path, lblk);
	return a.block;
}

/*
 * The fixture:
 *   /a 24 blocks; /c = range clone of /a blocks 8..15; /d/b 6 blocks and
 *   its whole-file clone /d/sub/b.clone; /h1 = /d/h2 (hard link) 5
 *   blocks; /sp 4 unwritten blocks then one written at block 10; an
 *   empty file, a symlink, a fifo.  36 distinct written blocks.
 */
#define FIXTURE_BLOCKS 36
static void build(void)
{
	rfs_fs *fs;
	fs = fx_fresh(64 << 20, 0);
	rfs_nodeid a = mk(fs, RFS_ROOT_NODE, "a", false);
	put_data(fs, a, 0, 24, 1);
	/* An xattr gives /a a file tree (small files keep their extents
	 * inline otherwise): test_meta damages that tree. */
	OK(rfs_fs_setxattr(fs, &g_ctx, a, "user.t", "1", 1, 0));
	rfs_nodeid c = mk(fs, RFS_ROOT_NODE, "c", false);
	RC(rfs_fs_clone_range(fs, a, 8 * BS, c, 0, 8 * BS), 8 * BS);
	rfs_nodeid d = mk(fs, RFS_ROOT_NODE, "d", true);
	rfs_nodeid sub = mk(fs, d, "sub", true);
	rfs_nodeid b = mk(fs, d, "b", false);
	put_data(fs, b, 0, 6, 2);
	rfs_nodeid bc = mk(fs, sub, "b.clone", false);
	OK(rfs_fs_clone_file(fs, b, bc));
	rfs_nodeid h = mk(fs, RFS_ROOT_NODE, "h1", false);
	put_data(fs, h, 0, 5, 3);
	struct stat st;
	OK(rfs_fs_link(fs, h, d, "h2", &st));
	rfs_nodeid sp = mk(fs, RFS_ROOT_NODE, "sp", false);
	OK(rfs_fs_fallocate(fs, sp, 0, 0, 4 * BS));
	put_data(fs, sp, 10, 1, 4);
	rfs_nodeid e = mk(fs, RFS_ROOT_NODE, "empty", false), l, fifo;
	OK(rfs_fs_symlink(fs, &g_ctx, RFS_ROOT_NODE, "sym", "a", &l, &st));
	OK(rfs_fs_mknod(fs, &g_ctx, RFS_ROOT_NODE, "fifo", S_IFIFO | 0644, 0, &fifo, &st));
	rfs_nodeid all[] = {a, c, d, sub, b, bc, h, h, sp, e, l, fifo};
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		rfs_fs_forget(fs, all[i], 1);
	OK(rfs_fs_close(fs));
	RC(rfs_fs_fsck(g_pool, fx_fsck_line, NULL), 0);
}

/* A scrub report, as text lines "kind err block vol path offset". */
struct report {
	struct rfs_scrub_stats st;
	size_t n;
	char lines[64][256];
};

static void scrub_fs(rfs_fs *fs, uint64_t budget, struct report *rep)
{
	rfs_scrub *s;
	int ret;
	OK(rfs_scrub_begin(fs, &s));
	long steps = 0;
	while ((ret = rfs_scrub_step(s, budget)) == 1)
		steps++;
	RC(ret, 0);
	rfs_scrub_get_stats(s, &rep->st);
	CHECK(rep->st.done == 1, "not done");
	/* A small budget makes the walk resume many times (an extent is
	 * verified whole: up to 128 blocks over the budget). */
	CHECK(budget > 1000 ? steps == 0 : steps >= 3, "budget %" PRIu64 " took %ld steps",
	      budget, steps);
	rep->n = 0;
	struct rfs_scrub_record r;
	for (uint64_t i = 0; (ret = rfs_scrub_record(s, i, &r)) == 0; i++) {
		CHECK(rep->n < 64, "too many records");
		snprintf(rep->lines[rep->n++], sizeof(rep->lines[0]), "%s %d %" PRIu64 " %" PRIu64 " %s %" PRIu64,
			 r.kind == RFS_SCRUB_DATA ? "data" : "meta", r.err, r.blocknr, r.volume,
			 r.path ? r.path : "(none)", r.offset);
	}
	RC(ret, -ENOENT);
	EQ_U64(rep->n, rep->st.records);
	rfs_scrub_end(s);
}

static void scrub_pool(uint64_t budget, struct report *rep)
{
	rfs_fs *fs;
	OK(rfs_fs_open(g_pool, RFS_FS_RDONLY, &fs));
	scrub_fs(fs, budget, rep);
	OK(rfs_fs_close(fs));
}

static void print_report(const struct report *rep)
{
	for (size_t i = 0; i < rep->n; i++)
		fprintf(stderr, "  report: %s\n", rep->lines[i]);
}

static void expect(const struct report *rep, const char *const *want, size_t n)
{
	bool same = rep->n == n;
	for (size_t i = 0; same && i < n; i++)
		same = !strcmp(rep->lines[i], want[i]);
	if (!same) {
		print_report(rep);
		for (size_t i = 0; i < n; i++)
			fprintf(stderr, "  wanted: %s\n", want[i]);
	}
	CHECK(same, "report differs (%zu lines, %zu wanted)", rep->n, n);
}

static void test_clean(void **state)
{
	(void)state;
	build();
	static struct report rep;
	uint64_t budgets[] = {1, 7, 1u << 30};
	for (size_t i = 0; i < 3; i++) {
		scrub_pool(budgets[i], &rep);
		expect(&rep, NULL, 0);
		EQ_U64(rep.st.data_blocks, FIXTURE_BLOCKS);
		EQ_U64(rep.st.damaged_blocks, 0);
		EQ_U64(rep.st.files_affected, 0);
		EQ_U64(rep.st.meta_errors, 0);
		EQ_U64(rep.st.volumes, 1);
		EQ_U64(rep.st.dirs, 2);
		/* a c b b.clone h(table) sp empty sym fifo */
		EQ_U64(rep.st.files, 9);
	}
}

static void test_damaged(void **state)
{
	(void)state;
	build();
	rfs_fs *fs;
	OK(rfs_fs_open(g_pool, RFS_FS_RDONLY, &fs));
	uint64_t x1 = phys(fs, "a", 3), x2 = phys(fs, "a", 9), x3 = phys(fs, "d/b", 2);
	uint64_t x4 = phys(fs, "h1", 4), x5 = phys(fs, "sp", 10);
	EQ_U64(phys(fs, "c", 1), x2);
	EQ_U64(phys(fs, "d/sub/b.clone", 2), x3);
	EQ_U64(phys(fs, "d/h2", 4), x4);
	OK(rfs_fs_close(fs));
	uint64_t xs[] = {x1, x2, x3, x4, x5};
	for (int i = 0; i < 5; i++)
		tu_flip_bit(g_pool, xs[i], 1000u * (unsigned)i + 3);
	/* What fsck checks without --data: the metadata, still clean. */
	RC(rfs_fs_fsck(g_pool, fx_fsck_line, NULL), 0);

	char want[9][256];
	const char *wp[9];
	int k = 0;
#define W(blk, path, off) snprintf(want[k], sizeof(want[k]), "data %d %" PRIu64 " 1 %s %d", -EBADMSG, (uint64_t)(blk), path, (off) * (int)BS), k++
	/* sorted by block, then path (the blocks were allocated in this
	 * order: a, b, h, sp) */
	W(x1, "/a", 3);
	W(x2, "/a", 9);
	W(x2, "/c", 1);
	W(x3, "/d/b", 2);
	W(x3, "/d/sub/b.clone", 2);
	W(x4, "/d/h2", 4);
	W(x4, "/h1", 4);
	W(x5, "/sp", 10);
#undef W
	for (int i = 0; i < k; i++)
		wp[i] = want[i];
	CHECK(x1 < x2 && x2 < x3 && x3 < x4 && x4 < x5, "allocation order changed");
	static struct report rep;
	uint64_t budgets[] = {1, 5, 1u << 30};
	for (size_t i = 0; i < 3; i++) {
		scrub_pool(budgets[i], &rep);
		expect(&rep, wp, (size_t)k);
		EQ_U64(rep.st.data_blocks, FIXTURE_BLOCKS);
		EQ_U64(rep.st.damaged_blocks, 5);
		/* a, c, b, b.clone, h, sp */
		EQ_U64(rep.st.files_affected, 6);
		EQ_U64(rep.st.meta_errors, 0);
	}
}

/* An unreadable file tree: reported with the file's path; the walk goes
 * on, and blocks it shares with a clone are still verified there. */
static void test_meta(void **state)
{
	(void)state;
	build();
	rfs_fs *fs;
	OK(rfs_fs_open(g_pool, RFS_FS_RDONLY, &fs));
	rfs_pool *pool = rfs_fs_pool(fs);
	rfs_tree vol;
	struct rfs_irec root, a;
	uint8_t key[RFS_KEY_MAX];
	rfs_pool_rdlock(pool);
	OK(rfs_catalog_get(pool, RFS_TOP_VOLUME, &vol));
	OK(rec_get(pool, &vol, "R", 1, &root, false));
	rfs_tree dir = FS_TREE(root.i.subtree, RFS_OWNER_DIR);
	size_t kl = dent_key(key, "a", 1);
	OK(rec_get(pool, &dir, key, kl, &a, false));
	rfs_pool_unlock(pool);
	OK(rfs_fs_close(fs));
	tu_flip_bit(g_pool, a.i.subtree, 8 * 200);
	tu_log_capture();
	static struct report rep;
	scrub_pool(3, &rep);
	char want[256];
	snprintf(want, sizeof(want), "meta %d 0 1 /a 0", -EIO);
	const char *wp[] = {want};
	expect(&rep, wp, 1);
	EQ_U64(rep.st.meta_errors, 1);
	EQ_U64(rep.st.damaged_blocks, 0);
	/* /a's 16 blocks outside /c's range were not reachable */
	EQ_U64(rep.st.data_blocks, FIXTURE_BLOCKS - 16);
	CHECK(tu_log_names_block(a.i.subtree), "no log line names block %" PRIu64, a.i.subtree);
	rfs_log_set_sink(NULL, NULL);
	tu_log_clear();
}

/* ---- writers between steps and in parallel ---------------------------------------- */

/* One mutation of the tree (never of /keep). */
static void mutate(rfs_fs *fs, tu_rng *r, int i)
{
	char name[64], name2[64];
	rfs_nodeid n;
	struct stat st;
	snprintf(name, sizeof(name), "w/f%d", (int)tu_below(r, 12));
	switch (tu_below(r, 7)) {
	case 0: /* create or overwrite (frees the old blocks) */
	case 1: {
		rfs_nodeid w = resolve(fs, "w");
		int ret = rfs_fs_lookup(fs, w, name + 2, &n, &st);
		if (ret == -ENOENT)
			ret = rfs_fs_create(fs, &g_ctx, w, name + 2, 0644, &n, &st);
		OK(ret);
		put_data(fs, n, tu_below(r, 8), 1 + tu_below(r, 6), (uint32_t)i);
		rfs_fs_forget(fs, n, 1);
		rfs_fs_forget(fs, w, 1);
		break;
	}
	case 2: { /* unlink */
		rfs_nodeid w = resolve(fs, "w");
		rfs_fs_unlink(fs, w, name + 2);
		rfs_fs_forget(fs, w, 1);
		break;
	}
	case 3: { /* rename a directory the walk may be inside */
		rfs_nodeid w = resolve(fs, "w");
		snprintf(name2, sizeof(name2), "sub%d", (int)tu_below(r, 3));
		rfs_fs_mkdir(fs, &g_ctx, w, "sub", 0755, &n, &st) == 0 ? rfs_fs_forget(fs, n, 1) : (void)0;
		rfs_fs_rename(fs, &g_ctx, w, "sub", w, name2, 0);
		rfs_fs_rename(fs, &g_ctx, w, name2, RFS_ROOT_NODE, "wsub", 0);
		rfs_fs_rename(fs, &g_ctx, RFS_ROOT_NODE, "wsub", w, "sub", 0);
		rfs_fs_forget(fs, w, 1);
		break;
	}
	case 4: { /* clone a file */
		rfs_nodeid w = resolve(fs, "w");
		snprintf(name2, sizeof(name2), "c%d", (int)tu_below(r, 4));
		if (rfs_fs_lookup(fs, w, name + 2, &n, &st) == 0) {
			rfs_nodeid c;
			int ret = rfs_fs_lookup(fs, w, name2, &c, &st);
			if (ret == -ENOENT)
				ret = rfs_fs_create(fs, &g_ctx, w, name2, 0644, &c, &st);
			OK(ret);
			OK(rfs_fs_clone_file(fs, n, c));
			rfs_fs_forget(fs, c, 1);
			rfs_fs_forget(fs, n, 1);
		}
		rfs_fs_forget(fs, w, 1);
		break;
	}
	case 5: { /* hard link and unlink again */
		rfs_nodeid w = resolve(fs, "w");
		if (rfs_fs_lookup(fs, w, name + 2, &n, &st) == 0) {
			if (rfs_fs_link(fs, n, RFS_ROOT_NODE, "wl", &st) == 0)
				rfs_fs_forget(fs, n, 1);
			rfs_fs_forget(fs, n, 1);
			rfs_fs_unlink(fs, w, name + 2);
		}
		rfs_fs_unlink(fs, RFS_ROOT_NODE, "wl");
		rfs_fs_forget(fs, w, 1);
		break;
	}
	case 6: /* commit: blocks freed so far become reusable */
		OK(rfs_fs_sync(fs));
		break;
	}
}

/* A pool with /keep (damaged at one block), the fixture's files, and a
 * directory /w the writers play in. */
static uint64_t build_busy(void)
{
	build();
	rfs_fs *fs;
	OK(rfs_fs_open(g_pool, 0, &fs));
	rfs_nodeid k = mk(fs, RFS_ROOT_NODE, "keep", false);
	put_data(fs, k, 0, 40, 9);
	rfs_fs_forget(fs, k, 1);
	rfs_nodeid w = mk(fs, RFS_ROOT_NODE, "w", true);
	tu_rng r = {77};
	for (int i = 0; i < 30; i++)
		mutate(fs, &r, i);
	rfs_fs_forget(fs, w, 1);
	OK(rfs_fs_sync(fs));
	uint64_t x = phys(fs, "keep", 17);
	OK(rfs_fs_close(fs));
	tu_flip_bit(g_pool, x, 77);
	return x;
}

static void expect_keep_only(const struct report *rep, uint64_t x)
{
	char want[256];
	snprintf(want, sizeof(want), "data %d %" PRIu64 " 1 /keep %d", -EBADMSG, x, 17 * (int)BS);
	const char *wp[] = {want};
	expect(rep, wp, 1);
	EQ_U64(rep->st.damaged_blocks, 1);
	EQ_U64(rep->st.meta_errors, 0);
}

static void test_writers_between_steps(void **state)
{
	(void)state;
	uint64_t x = build_busy();
	rfs_fs *fs;
	OK(rfs_fs_open(g_pool, 0, &fs));
	rfs_scrub *s;
	OK(rfs_scrub_begin(fs, &s));
	tu_rng r = {4242};
	int ret, i = 0;
	/* Budget 1: small files keep their extents inline, so the walk has
	 * fewer items than it had; still many steps to write between. */
	while ((ret = rfs_scrub_step(s, 1)) == 1)
		mutate(fs, &r, 1000 + i++);
	RC(ret, 0);
	CHECK(i > 20, "only %d steps", i);
	static struct report rep;
	rfs_scrub_get_stats(s, &rep.st);
	rep.n = 0;
	struct rfs_scrub_record rec;
	for (uint64_t j = 0; rfs_scrub_record(s, j, &rec) == 0 && rep.n < 64; j++)
		snprintf(rep.lines[rep.n++], sizeof(rep.lines[0]), "%s %d %" PRIu64 " %" PRIu64 " %s %" PRIu64,
			 rec.kind == RFS_SCRUB_DATA ? "data" : "meta", rec.err, rec.blocknr, rec.volume,
			 rec.path ? rec.path : "(none)", rec.offset);
	rfs_scrub_end(s);
	expect_keep_only(&rep, x);
	OK(rfs_fs_close(fs));
	RC(rfs_fs_fsck(g_pool, fx_fsck_line, NULL), 0);
}

struct writer {
	rfs_fs *fs;
	int stop;
	int ops;
};

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	tu_rng r = {999};
	for (int i = 0; !__atomic_load_n(&w->stop, __ATOMIC_ACQUIRE); i++) {
		mutate(w->fs, &r, 5000 + i);
		__atomic_store_n(&w->ops, i + 1, __ATOMIC_RELAXED);
	}
	return NULL;
}

static void test_writer_thread(void **state)
{
	(void)state;
	uint64_t x = build_busy();
	static struct writer w;
	OK(rfs_fs_open(g_pool, 0, &w.fs));
	w.stop = 0;
	w.ops = 0;
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, writer_main, &w), 0);
	static struct report rep;
	/* Scrub again and again until the writer has done 300 operations,
	 * so they overlap (no timing involved). */
	int rounds = 0;
	do {
		scrub_fs(w.fs, 3, &rep);
		expect_keep_only(&rep, x);
		rounds++;
	} while (__atomic_load_n(&w.ops, __ATOMIC_RELAXED) < 300);
	__atomic_store_n(&w.stop, 1, __ATOMIC_RELEASE);
	print_message("%d scrubs while the writer ran\n", rounds);
	pthread_join(th, NULL);
	OK(rfs_fs_close(w.fs));
	RC(rfs_fs_fsck(g_pool, fx_fsck_line, NULL), 0);
}

static int setup(void **state)
{
	(void)state;
	fx_setup(state);
	rfs_log_set_level(RFS_LOG_WARN);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_clean),
		cmocka_unit_test(test_damaged),
		cmocka_unit_test(test_meta),
		cmocka_unit_test(test_writers_between_steps),
		cmocka_unit_test(test_writer_thread),
	};
	return tu_exit(cmocka_run_group_tests(tests, setup, fx_teardown));
}
