/*
 * The change journal stores an operation's records at the commit, not
 * in the operation (src/journal/journal.c, jnl_flush; docs/ARCHITECTURE.md,
 * "Change journal", "Records wait for the commit"): an operation reads
 * no journal block, the commit stores every record of the transaction,
 * a change merges into a record stored by an earlier flush of the same
 * transaction, and a follower's "anything pending below D" sees records
 * that are only in memory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fsfix.h"
#include "reflinkfs/fs.h"
#include "reflinkfs/journal.h"
#include "reflinkfs/pool.h"

static const struct rfs_ctx g_ctx = {.pid = 1, .umask = 022};

static rfs_fs *fresh(unsigned flags)
{
	rfs_fs *fs;
	unlink(g_pool);
	assert_int_equal(rfs_fs_mkfs(g_pool, 1ull << 30, 0), 0);
	assert_int_equal(rfs_fs_open(g_pool, flags, &fs), 0);
	return fs;
}

static uint64_t block_reads(rfs_fs *fs)
{
	struct rfs_pool_stats st;
	rfs_pool_stats(rfs_fs_pool(fs), &st);
	return st.block_reads;
}

struct got {
	char text[8192];
	unsigned n;
	struct rfs_change_range r0;
	unsigned nranges;
};

static int collect(void *arg, const struct rfs_change *c)
{
	struct got *g = arg;
	size_t l = strlen(g->text);
	snprintf(g->text + l, sizeof(g->text) - l, "%s %s%s\n", rfs_change_kind_name(c->kind),
		 c->path ? c->path : "(null)",
		 (c->also & (1u << RFS_CHANGE_DATA)) ? "+data" : "");
	g->n++;
	if (c->nranges) {
		g->nranges = c->nranges;
		g->r0 = c->ranges[0];
	}
	return 0;
}

static void read_changes(rfs_fs *fs, rfs_nodeid dir, const char *cursor, struct got *g)
{
	memset(g, 0, sizeof(*g));
	struct rfs_changes_page page = {0};
	assert_int_equal(rfs_fs_changes(fs, dir, cursor, &page, collect, g), 0);
	assert_true(page.done);
}

#define NDIRS 10
#define NFILES 600

/* Metadata block reads of NFILES creates spread over NDIRS directories
 * (the operations alone, and with the commit that follows). */
static void creates(unsigned flags, uint64_t *ops, uint64_t *with_commit, char *cursor)
{
	rfs_fs *fs = fresh(flags);
	rfs_nodeid d[NDIRS], f;
	struct stat st;
	char name[32];
	for (unsigned i = 0; i < NDIRS; i++) {
		snprintf(name, sizeof(name), "d%u", i);
		assert_int_equal(rfs_fs_mkdir(fs, &g_ctx, RFS_ROOT_NODE, name, 0755, &d[i], &st), 0);
	}
	assert_int_equal(rfs_fs_sync(fs), 0);
	if (cursor)
		assert_int_equal(rfs_fs_changes_cursor(fs, cursor), 0);
	uint64_t r0 = block_reads(fs);
	for (unsigned i = 0; i < NFILES; i++) {
		snprintf(name, sizeof(name), "f%u", i);
		assert_int_equal(rfs_fs_create(fs, &g_ctx, d[i % NDIRS], name, 0644, &f, &st), 0);
		rfs_fs_forget(fs, f, 1);
	}
	*ops = block_reads(fs) - r0;
	assert_int_equal(rfs_fs_sync(fs), 0);
	*with_commit = block_reads(fs) - r0;
	if (cursor) {
		/* Every create is recorded, under its own directory too. */
		struct got g;
		read_changes(fs, RFS_ROOT_NODE, cursor, &g);
		assert_int_equal(g.n, NFILES);
		read_changes(fs, d[3], cursor, &g);
		assert_int_equal(g.n, NFILES / NDIRS);
		assert_true(strncmp(g.text, "create f3\ncreate f13\n", 21) == 0);
	}
	for (unsigned i = 0; i < NDIRS; i++)
		rfs_fs_forget(fs, d[i], 1);
	assert_int_equal(rfs_fs_close(fs), 0);
}

/* The journal adds no tree walk to an operation: its records wait in
 * memory and the commit stores them all, consecutive keys together.
 * Before, each create also walked the journal tree about 14 times (the
 * record, an index item per directory, the header, the catalog twice). */
static void test_ops_read_no_journal_block(void **state)
{
	(void)state;
	char cursor[RFS_CURSOR_MAX];
	uint64_t jops, jall, nops, nall;
	creates(0, &jops, &jall, cursor);
	creates(RFS_FS_NOJOURNAL, &nops, &nall, NULL);
	print_message("block reads: journal %llu (%llu with the commit), nojournal %llu (%llu)\n",
		      (unsigned long long)jops, (unsigned long long)jall,
		      (unsigned long long)nops, (unsigned long long)nall);
	assert_int_equal(jops, nops);
	/* The commit's store: 3 puts per record (its chunk, 2 index
	 * items), each a walk of about 3 levels, and one header and
	 * catalog update per commit. */
	assert_true(jall - nall <= (uint64_t)NFILES * 10);
}

/* A write merges into its file's record of the same transaction also
 * when an earlier flush (here the one of a limit change) stored it. */
static void test_merge_after_flush(void **state)
{
	(void)state;
	rfs_fs *fs = fresh(0);
	char c0[RFS_CURSOR_MAX];
	struct got g;
	rfs_nodeid f;
	struct stat st;
	char buf[4096] = {0};
	assert_int_equal(rfs_fs_changes_cursor(fs, c0), 0);
	assert_int_equal(rfs_fs_create(fs, &g_ctx, RFS_ROOT_NODE, "f", 0644, &f, &st), 0);
	assert_int_equal(rfs_fs_write(fs, f, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
	struct rfs_journal_stat js;
	assert_int_equal(rfs_fs_journal_stat(fs, &js), 0);
	assert_int_equal(rfs_fs_journal_set_limit(fs, js.limit_bytes), 0); /* flushes */
	assert_int_equal(rfs_fs_write(fs, f, buf, sizeof(buf), 4096), (ssize_t)sizeof(buf));
	assert_int_equal(rfs_fs_sync(fs), 0);
	read_changes(fs, RFS_ROOT_NODE, c0, &g);
	assert_string_equal(g.text, "create f+data\n");
	assert_int_equal(g.nranges, 1);
	assert_int_equal(g.r0.off, 0);
	assert_int_equal(g.r0.len, 8192);
	rfs_fs_forget(fs, f, 1);
	assert_int_equal(rfs_fs_close(fs), 0);
}

/* What a follower asks before it commits: records only in memory count,
 * below their directories and no others; so do records stored by a
 * flush but not committed yet. */
static void test_pending_below(void **state)
{
	(void)state;
	rfs_fs *fs = fresh(0);
	rfs_nodeid a, b, f;
	struct stat st;
	assert_int_equal(rfs_fs_mkdir(fs, &g_ctx, RFS_ROOT_NODE, "a", 0755, &a, &st), 0);
	assert_int_equal(rfs_fs_mkdir(fs, &g_ctx, RFS_ROOT_NODE, "b", 0755, &b, &st), 0);
	assert_int_equal(rfs_fs_sync(fs), 0);
	assert_false(rfs_fs_changes_pending_below(fs, RFS_ROOT_NODE));
	assert_int_equal(rfs_fs_create(fs, &g_ctx, a, "f", 0644, &f, &st), 0);
	assert_true(rfs_fs_changes_pending_below(fs, a));
	assert_false(rfs_fs_changes_pending_below(fs, b));
	assert_true(rfs_fs_changes_pending_below(fs, RFS_ROOT_NODE));
	struct rfs_journal_stat js;
	assert_int_equal(rfs_fs_journal_stat(fs, &js), 0);
	assert_int_equal(rfs_fs_journal_set_limit(fs, js.limit_bytes), 0); /* flushes */
	assert_true(rfs_fs_changes_pending_below(fs, a));
	assert_false(rfs_fs_changes_pending_below(fs, b));
	assert_true(rfs_fs_changes_pending_below(fs, RFS_ROOT_NODE));
	assert_int_equal(rfs_fs_sync(fs), 0);
	assert_false(rfs_fs_changes_pending_below(fs, a));
	assert_false(rfs_fs_changes_pending_below(fs, RFS_ROOT_NODE));
	rfs_fs_forget(fs, f, 1);
	rfs_fs_forget(fs, a, 1);
	rfs_fs_forget(fs, b, 1);
	assert_int_equal(rfs_fs_close(fs), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ops_read_no_journal_block),
		cmocka_unit_test(test_merge_after_flush),
		cmocka_unit_test(test_pending_below),
	};
	return cmocka_run_group_tests(tests, fx_setup, fx_teardown);
}
