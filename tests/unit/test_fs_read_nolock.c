/*
 * A reader of one file never waits for a writer of another (issue 9,
 * "Parallel I/O"; src/fs/rcache.c, "READ with no pool lock").
 *
 * A data write changes only its file (op_local): it bumps the file's own
 * generation (fgen), not the pool's, so the copies other files' READs
 * keep stay valid, and a READ their copies answer takes no pool lock.
 *
 *  - A READ of file A with warm copies completes while a writer of file
 *    B is held inside its mapping with the pool's write lock held (the
 *    map hook), for a whole-block (claimed) and a partial write.  Checked
 *    by order, not time: the writer stays held until the READ is done (the
 *    wait gives up after 60 s so that a build whose READ needs the lock
 *    fails instead of hanging).
 *  - A write of B makes B's next READ take the lock and return the new
 *    data, and leaves A's copies valid -- also when B shares A's blocks
 *    (a clone of A, a snapshot's copy of A's directory) or is hard-linked.
 *  - Every change of A that is not its data write invalidates A's copies
 *    (clone onto A, truncate, hole punch, rename over its name, unlink,
 *    a write through another name of A), and so does its data write.
 *  - The seqlock check: a test hook changes A between the copies and the
 *    data read (stage 0: A's old block is freed, committed and punched
 *    or reused) or between the data read and the check (stage 1); the
 *    READ returns A's new data whole, never EIO or a mix (a build that
 *    skips the check after the data read fails here with EIO).
 *  - Inline data is served from the record copy likewise; so is a file
 *    whose extent map is in its record (inline, or none), holes and
 *    unwritten extents included, and a range that is not whole blocks
 *    (1 KiB, a last partial block) one extent copy or the inline map
 *    covers: beside the held writer too, and with the same check (the
 *    change cases, for these paths).  A hole of a file tree takes the
 *    lock (the copies cannot prove it).
 *  - Nor on the node table's mutex: a READ its copies answer finishes
 *    while the test holds nlock (the thread's READs found that node
 *    before, and no node was freed since).
 *  - Threads (TSan in `make test`): readers of A and B beside a writer
 *    of B and a thread cloning new versions onto A; every READ sees one
 *    whole version, never an older one than before.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/fsfix.h"
#include "common/vreader.h"
#include "fs/fs_internal.h"
#include "reflinkfs/fs.h"

#define BS 4096
#define NBLK 8   /* blocks read and written at the start of each file */
#define FAR 40   /* one-block extents far past them: a file tree */

static const struct rfs_ctx g_ctx = {.uid = 0, .gid = 0, .pid = 1, .umask = 022};

/* A file of NBLK blocks of byte, plus FAR one-block extents from block
 * 100 on (so its map is a tree and READs use extent copies). */
static rfs_nodeid mkfile(rfs_fs *fs, rfs_nodeid dir, const char *name, int byte)
{
	rfs_nodeid f;
	struct stat st;
	assert_int_equal(rfs_fs_create(fs, &g_ctx, dir, name, 0644, &f, &st), 0);
	uint8_t *b = malloc(NBLK * BS);
	assert_non_null(b);
	memset(b, byte, NBLK * BS);
	assert_int_equal(rfs_fs_write(fs, f, b, NBLK * BS, 0), NBLK * BS);
	memset(b, 9, BS);
	for (uint64_t k = 0; k < FAR; k++)
		assert_int_equal(rfs_fs_write(fs, f, b, BS, (100 + 2 * k) * BS), BS);
	free(b);
	/* Mapped now: while writes of a file are queued its READs take
	 * the lock (they put the writes over the tree, file_delay.c). */
	rfs_fs_settle(fs);
	return f;
}

static uint64_t g_served, g_retried;

/* READs served without the lock, and retried, since the last call. */
static void nl(rfs_fs *fs, uint64_t *served, uint64_t *retried)
{
	uint64_t s, r;
	rfs_fs_nolock_stats(fs, &s, &r);
	*served = s - g_served;
	if (retried)
		*retried = r - g_retried;
	g_served = s;
	g_retried = r;
}

/* Read blocks [0, NBLK) of f and check every byte is byte; returns
 * whether the READ was served without the pool lock. */
static int g_line;
#define read_is(...) (g_line = __LINE__, read_is_(__VA_ARGS__))
static bool read_is_(rfs_fs *fs, rfs_nodeid f, int byte)
{
	static uint8_t b[NBLK * BS];
	uint64_t s;
	nl(fs, &s, NULL);
	memset(b, 0xee, sizeof(b));
	ssize_t n = rfs_fs_read(fs, f, b, sizeof(b), 0);
	if (n != (ssize_t)sizeof(b))
		fail_msg("line %d: node %llu: read %zd", g_line, (unsigned long long)f, n);
	for (size_t i = 0; i < sizeof(b); i++)
		if (b[i] != byte)
			fail_msg("line %d: byte %zu: %d, expected %d", g_line, i, b[i], byte);
	nl(fs, &s, NULL);
	return s == 1;
}

/* Read f until a READ is served without the lock (the first READs walk
 * and may update atime, a change): at most three. */
#define settle(fs, f, byte) (g_line = __LINE__, settle_(fs, f, byte))
static void settle_(rfs_fs *fs, rfs_nodeid f, int byte)
{
	int line = g_line;
	for (int i = 0; i < 3; i++)
		if (read_is_(fs, f, byte))
			return;
	fail_msg("line %d: node %llu: no READ served from the copies", line,
		 (unsigned long long)f);
}

static void write_blocks(rfs_fs *fs, rfs_nodeid f, int byte)
{
	uint8_t *b = malloc(NBLK * BS);
	assert_non_null(b);
	memset(b, byte, NBLK * BS);
	assert_int_equal(rfs_fs_write(fs, f, b, NBLK * BS, 0), NBLK * BS);
	free(b);
	rfs_fs_settle(fs); /* as mkfile */
}

/* ---- a READ beside a writer held with the write lock -------------------- */

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;
static bool g_in, g_go, g_read_done;

/* The map hook: the first writer says it is in and waits to be let go. */
static void hold_writer(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&g_mu);
	if (!g_in) {
		g_in = true;
		pthread_cond_broadcast(&g_cv);
		while (!g_go)
			pthread_cond_wait(&g_cv, &g_mu);
	}
	pthread_mutex_unlock(&g_mu);
}

/* Wait until *flag is set; false after 60 s (it never happened). */
static bool wait_for(bool *flag)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 60;
	pthread_mutex_lock(&g_mu);
	int r = 0;
	while (!*flag && r != ETIMEDOUT)
		r = pthread_cond_timedwait(&g_cv, &g_mu, &ts);
	bool ok = *flag;
	pthread_mutex_unlock(&g_mu);
	return ok;
}

static void set_flag(bool *flag)
{
	pthread_mutex_lock(&g_mu);
	*flag = true;
	pthread_cond_broadcast(&g_cv);
	pthread_mutex_unlock(&g_mu);
}

struct job {
	rfs_fs *fs;
	rfs_nodeid a, b;
	bool partial; /* the held write: 100 bytes (else NBLK whole blocks) */
	ssize_t wret, rret;
	uint8_t got[NBLK * BS];
};

static void *writer_b(void *arg)
{
	struct job *j = arg;
	static uint8_t buf[NBLK * BS];
	memset(buf, 'w', sizeof(buf));
	j->wret = rfs_fs_write(j->fs, j->b, buf, j->partial ? 100 : sizeof(buf), 0);
	return NULL;
}

static void *reader_a(void *arg)
{
	struct job *j = arg;
	j->rret = rfs_fs_read(j->fs, j->a, j->got, sizeof(j->got), 0);
	set_flag(&g_read_done);
	return NULL;
}

static void held_writer_case(rfs_fs *fs, rfs_nodeid a, rfs_nodeid b, bool partial)
{
	struct job j = {.fs = fs, .a = a, .b = b, .partial = partial};
	g_in = g_go = g_read_done = false;
	settle(fs, a, 'a');
	uint64_t s;
	nl(fs, &s, NULL);
	rfs_fs_set_map_hook(fs, hold_writer, NULL);
	pthread_t w, r;
	assert_int_equal(pthread_create(&w, NULL, writer_b, &j), 0);
	assert_true(wait_for(&g_in)); /* the writer holds the write lock */
	assert_int_equal(pthread_create(&r, NULL, reader_a, &j), 0);
	bool read_done = wait_for(&g_read_done);
	/* Let the writer go whatever happened, so that nothing hangs. */
	set_flag(&g_go);
	assert_int_equal(pthread_join(r, NULL), 0);
	assert_int_equal(pthread_join(w, NULL), 0);
	rfs_fs_set_map_hook(fs, NULL, NULL);
	if (!read_done)
		fail_msg("the READ of A waited for the writer of B (%s write)",
			 partial ? "partial" : "whole-block");
	assert_int_equal(j.rret, NBLK * BS);
	for (size_t i = 0; i < sizeof(j.got); i++)
		if (j.got[i] != 'a')
			fail_msg("byte %zu of A: %d", i, j.got[i]);
	nl(fs, &s, NULL);
	assert_int_equal(s, 1);
	assert_int_equal(j.wret, partial ? 100 : NBLK * BS);
}

static void test_read_beside_held_writer(void **state)
{
	(void)state;
	rfs_fs *fs = fx_fresh(256u << 20, 0);
	rfs_nodeid a = mkfile(fs, RFS_ROOT_NODE, "a", 'a');
	rfs_nodeid b = mkfile(fs, RFS_ROOT_NODE, "b", 'b');
	assert_int_equal(rfs_fs_open_node(fs, a), 0);
	assert_int_equal(rfs_fs_open_node(fs, b), 0);
	held_writer_case(fs, a, b, false);
	held_writer_case(fs, a, b, true);
	/* B has both writes. */
	uint8_t buf[BS];
	assert_int_equal(rfs_fs_read(fs, b, buf, BS, 0), BS);
	assert_int_equal(buf[0], 'w');
	assert_int_equal(buf[BS - 1], 'w');
	rfs_fs_release(fs, a);
	rfs_fs_release(fs, b);
	rfs_fs_forget(fs, a, 1);
	rfs_fs_forget(fs, b, 1);
	assert_int_equal(rfs_fs_close(fx_reopen(fs, 0)), 0);
}

/* ---- a READ beside a held node table ------------------------------------- */

static bool g_warm, g_go_read;

struct nl_job {
	rfs_fs *fs;
	rfs_nodeid a;
	ssize_t rret;
	bool served;
	uint8_t got[NBLK * BS];
};

static void *warm_reader(void *arg)
{
	struct nl_job *j = arg;
	/* This thread's READs find the node first (its memory of it is
	 * per thread). */
	settle(j->fs, j->a, 'a');
	set_flag(&g_warm);
	wait_for(&g_go_read);
	uint64_t s0, s1, r;
	rfs_fs_nolock_stats(j->fs, &s0, &r);
	j->rret = rfs_fs_read(j->fs, j->a, j->got, sizeof(j->got), 0);
	rfs_fs_nolock_stats(j->fs, &s1, &r);
	j->served = s1 == s0 + 1;
	set_flag(&g_read_done);
	return NULL;
}

static void test_read_beside_held_nlock(void **state)
{
	(void)state;
	rfs_fs *fs = fx_fresh(256u << 20, 0);
	rfs_nodeid a = mkfile(fs, RFS_ROOT_NODE, "a", 'a');
	struct nl_job j = {.fs = fs, .a = a};
	g_warm = g_go_read = g_read_done = false;
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, warm_reader, &j), 0);
	assert_true(wait_for(&g_warm));
	node_lock(fs);
	set_flag(&g_go_read);
	bool done = wait_for(&g_read_done);
	node_unlock(fs);
	assert_int_equal(pthread_join(t, NULL), 0);
	if (!done)
		fail_msg("the READ waited for the node table's mutex");
	assert_int_equal(j.rret, NBLK * BS);
	assert_true(j.served);
	for (size_t i = 0; i < sizeof(j.got); i++)
		if (j.got[i] != 'a')
			fail_msg("byte %zu: %d", i, j.got[i]);
	rfs_fs_forget(fs, a, 1);
	assert_int_equal(rfs_fs_close(fx_reopen(fs, 0)), 0);
}

/* ---- what a local write invalidates -------------------------------------- */

static void test_local_write_keeps_other_copies(void **state)
{
	(void)state;
	rfs_fs *fs = fx_fresh(256u << 20, 0);
	g_served = g_retried = 0;
	rfs_nodeid a = mkfile(fs, RFS_ROOT_NODE, "a", 'a');
	rfs_nodeid b = mkfile(fs, RFS_ROOT_NODE, "b", 'b');
	settle(fs, a, 'a');
	settle(fs, b, 'b');

	/* Whole blocks (claimed) and a partial write of B: B's next READ
	 * walks and sees it, A's is still served from its copies. */
	write_blocks(fs, b, 'c');
	assert_true(read_is(fs, a, 'a'));
	assert_false(read_is(fs, b, 'c'));
	settle(fs, b, 'c');
	uint8_t *buf = malloc(NBLK * BS);
	assert_non_null(buf);
	memset(buf, 'd', NBLK * BS);
	assert_int_equal(rfs_fs_write(fs, b, buf, NBLK * BS - 1, 1), NBLK * BS - 1);
	assert_int_equal(rfs_fs_write(fs, b, "d", 1, 0), 1);
	assert_true(read_is(fs, a, 'a'));
	assert_false(read_is(fs, b, 'd'));

	/* C, a clone of A, shares A's tree and blocks: writing C copies what
	 * it changes, A's copies stay valid and right. */
	rfs_nodeid c = fx_create(fs, &g_ctx, RFS_ROOT_NODE, "c");
	assert_int_equal(rfs_fs_clone_file(fs, a, c), 0);
	settle(fs, a, 'a');
	settle(fs, c, 'a');
	write_blocks(fs, c, 'e');
	assert_true(read_is(fs, a, 'a'));
	assert_false(read_is(fs, c, 'e'));
	memset(buf, 'f', BS);
	assert_int_equal(rfs_fs_write(fs, c, buf, 10, 5), 10); /* partial */
	assert_true(read_is(fs, a, 'a'));

	/* A snapshot shares the directory holding X: a write of the
	 * snapshot's X leaves X's copies valid and right, and back. */
	rfs_nodeid d, s, x, sx;
	struct stat st;
	assert_int_equal(rfs_fs_mkdir(fs, &g_ctx, RFS_ROOT_NODE, "d", 0755, &d, &st), 0);
	x = mkfile(fs, d, "x", 'x');
	assert_int_equal(rfs_fs_snapshot(fs, d, RFS_ROOT_NODE, "snap", 0, &s, &st), 0);
	assert_int_equal(rfs_fs_lookup(fs, s, "x", &sx, &st), 0);
	settle(fs, x, 'x');
	settle(fs, sx, 'x');
	write_blocks(fs, sx, 'y');
	assert_true(read_is(fs, x, 'x'));
	assert_false(read_is(fs, sx, 'y'));
	settle(fs, sx, 'y');
	write_blocks(fs, x, 'z');
	assert_true(read_is(fs, sx, 'y'));
	assert_false(read_is(fs, x, 'z'));

	/* A hard-linked B (its record in the link table): the same. */
	assert_int_equal(rfs_fs_link(fs, b, d, "b2", &st), 0);
	settle(fs, a, 'a');
	write_blocks(fs, b, 'g');
	assert_true(read_is(fs, a, 'a'));
	assert_false(read_is(fs, b, 'g'));

	free(buf);
	rfs_nodeid all[] = {a, b, c, d, s, x, sx};
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		rfs_fs_forget(fs, all[i], 1);
	rfs_fs_forget(fs, b, 1); /* the link's lookup */
	assert_int_equal(rfs_fs_close(fx_reopen(fs, 0)), 0);
}

/* ---- every change of A invalidates A's copies ----------------------------- */

static void test_changes_of_a_invalidate(void **state)
{
	(void)state;
	rfs_fs *fs = fx_fresh(256u << 20, 0);
	g_served = g_retried = 0;
	rfs_nodeid a = mkfile(fs, RFS_ROOT_NODE, "a", 'a');
	rfs_nodeid g = mkfile(fs, RFS_ROOT_NODE, "g", 'g');
	assert_int_equal(rfs_fs_open_node(fs, a), 0);
	struct stat st;

	/* Its own data write. */
	settle(fs, a, 'a');
	write_blocks(fs, a, 'b');
	assert_false(read_is(fs, a, 'b'));

	/* A clone of G onto A. */
	settle(fs, a, 'b');
	assert_int_equal(rfs_fs_clone_file(fs, g, a), 0);
	assert_false(read_is(fs, a, 'g'));

	/* A write through another name of A (a hard link). */
	settle(fs, a, 'g');
	rfs_nodeid a2;
	assert_int_equal(rfs_fs_link(fs, a, RFS_ROOT_NODE, "a2", &st), 0);
	assert_int_equal(rfs_fs_lookup(fs, RFS_ROOT_NODE, "a2", &a2, &st), 0);
	settle(fs, a, 'g');
	write_blocks(fs, a2, 'h');
	assert_false(read_is(fs, a, 'h'));
	rfs_fs_forget(fs, a2, 1);
	rfs_fs_forget(fs, a, 1); /* link's */
	assert_int_equal(rfs_fs_unlink(fs, RFS_ROOT_NODE, "a2"), 0);

	/* A hole punch at block 0: zeros there. */
	settle(fs, a, 'h');
	assert_int_equal(rfs_fs_fallocate(fs, a, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
					  0, NBLK * BS),
			 0);
	assert_false(read_is(fs, a, 0));
	write_blocks(fs, a, 'i');

	/* Truncate: shorter, then longer again (a hole where data was). */
	settle(fs, a, 'i');
	struct stat sz = {.st_size = 0};
	assert_int_equal(rfs_fs_setattr(fs, a, &sz, RFS_SET_SIZE, NULL), 0);
	sz.st_size = NBLK * BS;
	assert_int_equal(rfs_fs_setattr(fs, a, &sz, RFS_SET_SIZE, NULL), 0);
	assert_false(read_is(fs, a, 0));
	rfs_fs_release(fs, a);
	rfs_fs_forget(fs, a, 1);
	a = mkfile(fs, RFS_ROOT_NODE, "a3", 'j');
	assert_int_equal(rfs_fs_open_node(fs, a), 0);

	/* Rename over A's name, then unlink of the name: A (open) keeps
	 * its data; each change makes the next READ walk. */
	rfs_nodeid h = mkfile(fs, RFS_ROOT_NODE, "h", 'k');
	settle(fs, a, 'j');
	assert_int_equal(rfs_fs_rename(fs, &g_ctx, RFS_ROOT_NODE, "h", RFS_ROOT_NODE, "a3", 0),
			 0);
	assert_false(read_is(fs, a, 'j'));
	settle(fs, h, 'k');
	assert_int_equal(rfs_fs_open_node(fs, h), 0);
	assert_int_equal(rfs_fs_unlink(fs, RFS_ROOT_NODE, "a3"), 0);
	assert_false(read_is(fs, h, 'k'));
	/* The orphan's data write: its own generation, as any file's. */
	settle(fs, h, 'k');
	write_blocks(fs, h, 'l');
	assert_false(read_is(fs, h, 'l'));
	rfs_fs_release(fs, h);
	rfs_fs_forget(fs, h, 1);

	rfs_fs_release(fs, a);
	rfs_fs_forget(fs, a, 1);
	rfs_fs_forget(fs, g, 1);
	assert_int_equal(rfs_fs_close(fx_reopen(fs, 0)), 0);
}

/* ---- the check after the data read ---------------------------------------- */

struct change {
	rfs_fs *fs;
	rfs_nodeid a, c;
	int stage; /* the hook stage that changes A */
	int calls; /* hook calls at that stage */
};

/* Overwrite A, commit (A's old blocks are freed, punched out of the pool
 * file and allocatable), and write C over as many blocks as A had, which
 * may take them: A's copies name blocks that are no longer A's. */
static void change_a(void *arg, int stage)
{
	struct change *ch = arg;
	if (stage != ch->stage || ch->calls++)
		return;
	write_blocks(ch->fs, ch->a, 'n');
	assert_int_equal(rfs_fs_sync(ch->fs), 0);
	write_blocks(ch->fs, ch->c, 'z');
	assert_int_equal(rfs_fs_sync(ch->fs), 0);
}

static void test_change_during_nolock_read(void **state)
{
	(void)state;
	rfs_fs *fs = fx_fresh(256u << 20, 0);
	g_served = g_retried = 0;
	for (int stage = 0; stage < 2; stage++) {
		char name[16];
		snprintf(name, sizeof(name), "a%d", stage);
		rfs_nodeid a = mkfile(fs, RFS_ROOT_NODE, name, 'a');
		name[0] = 'c';
		rfs_nodeid c = fx_create(fs, &g_ctx, RFS_ROOT_NODE, name);
		assert_int_equal(rfs_fs_sync(fs), 0); /* A's blocks committed */
		settle(fs, a, 'a');
		struct change ch = {.fs = fs, .a = a, .c = c, .stage = stage};
		rfs_fs_set_read_hook(fs, change_a, &ch);
		/* Whole: the new data (done again under the lock), never
		 * EIO nor a mix. */
		uint64_t s, r;
		bool served = read_is(fs, a, 'n');
		rfs_fs_set_read_hook(fs, NULL, NULL);
		nl(fs, &s, &r);
		assert_int_equal(ch.calls, 1);
		assert_false(served);
		/* settle/read_is take their own counts: the retry was one. */
		rfs_fs_nolock_stats(fs, &s, &r);
		assert_int_equal(r, (uint64_t)stage + 1);
		settle(fs, a, 'n');
		rfs_fs_forget(fs, a, 1);
		rfs_fs_forget(fs, c, 1);
	}
	/* A hook that changes nothing: served without the lock. */
	rfs_nodeid a = mkfile(fs, RFS_ROOT_NODE, "q", 'q');
	settle(fs, a, 'q');
	struct change none = {.fs = fs, .a = a, .stage = -1};
	rfs_fs_set_read_hook(fs, change_a, &none);
	assert_true(read_is(fs, a, 'q'));
	rfs_fs_set_read_hook(fs, NULL, NULL);
	rfs_fs_forget(fs, a, 1);
	assert_int_equal(rfs_fs_close(fx_reopen(fs, 0)), 0);
}

/* ---- inline data ------------------------------------------------------------ */

/* A file small enough to keep its bytes in its record: READs of it are
 * served from the record copy with no pool lock, a write of it (it stays
 * inline) makes the next READ walk and see it, and a write of another
 * file leaves its copy valid. */
static void read_small(rfs_fs *fs, rfs_nodeid f, size_t len, int byte, bool want_served,
		       int line)
{
	char b[256];
	uint64_t s;
	nl(fs, &s, NULL);
	memset(b, 0xee, sizeof(b));
	ssize_t n = rfs_fs_read(fs, f, b, sizeof(b), 0);
	if (n != (ssize_t)len)
		fail_msg("line %d: read %zd, expected %zu", line, n, len);
	for (size_t i = 0; i < len; i++)
		if (b[i] != byte)
			fail_msg("line %d: byte %zu: %d, expected %d", line, i, b[i], byte);
	nl(fs, &s, NULL);
	if ((s == 1) != want_served)
		fail_msg("line %d: served without the lock: %d, expected %d", line, s == 1,
			 want_served);
}

static void test_inline_data(void **state)
{
	(void)state;
	rfs_fs *fs = fx_fresh(256u << 20, 0);
	g_served = g_retried = 0;
	rfs_nodeid s = fx_create(fs, &g_ctx, RFS_ROOT_NODE, "s");
	rfs_nodeid b = mkfile(fs, RFS_ROOT_NODE, "b", 'b');
	char buf[100];
	memset(buf, 's', sizeof(buf));
	assert_int_equal(rfs_fs_write(fs, s, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
	ssize_t got = rfs_fs_inline_data(fs, s, buf, sizeof(buf));
	assert_int_equal(got, (ssize_t)sizeof(buf)); /* inline indeed */
	/* The first READs walk (and update atime), then the copy serves. */
	for (int i = 0; i < 3; i++)
		(void)rfs_fs_read(fs, s, buf, sizeof(buf), 0);
	read_small(fs, s, sizeof(buf), 's', true, __LINE__);
	write_blocks(fs, b, 'c');
	read_small(fs, s, sizeof(buf), 's', true, __LINE__);
	memset(buf, 't', sizeof(buf));
	assert_int_equal(rfs_fs_write(fs, s, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
	read_small(fs, s, sizeof(buf), 't', false, __LINE__);
	rfs_fs_forget(fs, s, 1);
	rfs_fs_forget(fs, b, 1);
	assert_int_equal(rfs_fs_close(fx_reopen(fs, 0)), 0);
}

/* ---- inline maps, partial ranges, holes ------------------------------------ */

/* A file of NBLK blocks of byte written at once: one extent, which a
 * file this small keeps inline in its record (no file tree). */
static rfs_nodeid mksmall(rfs_fs *fs, const char *name, int byte)
{
	rfs_nodeid f = fx_create(fs, &g_ctx, RFS_ROOT_NODE, name);
	write_blocks(fs, f, byte);
	return f;
}

/* Read [off, off + len) of f, clipped at the file's size sz, and check
 * every byte is byte (0 at the blocks hole_lo <= b < hole_hi); returns
 * whether the READ was served without the pool lock. */
#define range_is(...) (g_line = __LINE__, range_is_(__VA_ARGS__))
static bool range_is_(rfs_fs *fs, rfs_nodeid f, uint64_t off, size_t len, uint64_t sz,
		      int byte, uint64_t hole_lo, uint64_t hole_hi)
{
	static uint8_t b[(NBLK + 1) * BS];
	assert_true(len <= sizeof(b));
	uint64_t s;
	nl(fs, &s, NULL);
	memset(b, 0xee, sizeof(b));
	ssize_t n = rfs_fs_read(fs, f, b, len, off);
	size_t want = off >= sz ? 0 : (sz - off < len ? (size_t)(sz - off) : len);
	if (n != (ssize_t)want)
		fail_msg("line %d: node %llu: read %zd, expected %zu", g_line,
			 (unsigned long long)f, n, want);
	for (size_t i = 0; i < want; i++) {
		uint64_t blk = (off + i) / BS;
		int w = blk >= hole_lo && blk < hole_hi ? 0 : byte;
		if (b[i] != w)
			fail_msg("line %d: byte %llu: %d, expected %d", g_line,
				 (unsigned long long)(off + i), b[i], w);
	}
	if (b[want] != 0xee)
		fail_msg("line %d: READ wrote past its %zu bytes", g_line, want);
	nl(fs, &s, NULL);
	return s == 1;
}

/* A READ of A the copies now answer -- its inline map, or a range that
 * is not whole blocks -- completes while a writer of B is held in its
 * mapping with the write lock. */
struct rjob {
	rfs_fs *fs;
	rfs_nodeid a;
	uint64_t off;
	size_t len;
	ssize_t rret;
	uint8_t got[NBLK * BS];
};

static void *range_reader(void *arg)
{
	struct rjob *j = arg;
	j->rret = rfs_fs_read(j->fs, j->a, j->got, j->len, j->off);
	set_flag(&g_read_done);
	return NULL;
}

static void held_range_case(rfs_fs *fs, rfs_nodeid a, rfs_nodeid b, uint64_t off,
			    size_t len, int byte, int line)
{
	struct job w = {.fs = fs, .b = b};
	struct rjob j = {.fs = fs, .a = a, .off = off, .len = len};
	g_in = g_go = g_read_done = false;
	/* Warm: the first READs walk (and update atime). */
	int tries = 0;
	while (!range_is_(fs, a, off, len, UINT64_MAX, byte, 0, 0))
		if (++tries == 3)
			fail_msg("line %d: no READ served from the copies", line);
	uint64_t s;
	nl(fs, &s, NULL);
	rfs_fs_set_map_hook(fs, hold_writer, NULL);
	pthread_t wt, rt;
	assert_int_equal(pthread_create(&wt, NULL, writer_b, &w), 0);
	assert_true(wait_for(&g_in));
	assert_int_equal(pthread_create(&rt, NULL, range_reader, &j), 0);
	bool read_done = wait_for(&g_read_done);
	set_flag(&g_go);
	assert_int_equal(pthread_join(rt, NULL), 0);
	assert_int_equal(pthread_join(wt, NULL), 0);
	rfs_fs_set_map_hook(fs, NULL, NULL);
	if (!read_done)
		fail_msg("line %d: the READ of A [%llu, +%zu) waited for the writer of B", line,
			 (unsigned long long)off, len);
	assert_int_equal(j.rret, (ssize_t)len);
	for (size_t i = 0; i < len; i++)
		if (j.got[i] != byte)
			fail_msg("line %d: byte %zu of A: %d", line, i, j.got[i]);
	nl(fs, &s, NULL);
	assert_int_equal(s, 1);
	assert_int_equal(w.wret, NBLK * BS);
}

static void test_inline_map_partial_beside_held_writer(void **state)
{
	(void)state;
	rfs_fs *fs = fx_fresh(256u << 20, 0);
	g_served = g_retried = 0;
	rfs_nodeid m = mksmall(fs, "m", 'm');
	rfs_nodeid a = mkfile(fs, RFS_ROOT_NODE, "a", 'a');
	rfs_nodeid b = mkfile(fs, RFS_ROOT_NODE, "b", 'b');
	/* The inline map: whole blocks, then 1 KiB inside a block. */
	held_range_case(fs, m, b, 0, NBLK * BS, 'm', __LINE__);
	held_range_case(fs, m, b, 1000, 1024, 'm', __LINE__);
	/* A file tree: partial at both ends of the one extent copy, and
	 * 1 KiB inside a block. */
	held_range_case(fs, a, b, 100, NBLK * BS - 200, 'a', __LINE__);
	held_range_case(fs, a, b, 3 * BS + 5, 1024, 'a', __LINE__);
	rfs_fs_forget(fs, m, 1);
	rfs_fs_forget(fs, a, 1);
	rfs_fs_forget(fs, b, 1);
	assert_int_equal(rfs_fs_close(fx_reopen(fs, 0)), 0);
}

/* Holes and a last partial block: served from the copies when they prove
 * the bytes, and right. */
static void test_holes_and_tails(void **state)
{
	(void)state;
	rfs_fs *fs = fx_fresh(256u << 20, 0);
	g_served = g_retried = 0;
	uint8_t buf[BS];
	memset(buf, 'h', sizeof(buf));

	/* Inline map with a hole: blocks [0, 2) and [5, NBLK) written, a
	 * last block of 100 bytes. */
	rfs_nodeid h = fx_create(fs, &g_ctx, RFS_ROOT_NODE, "h");
	uint64_t hsz = NBLK * BS + 100;
	for (uint64_t k = 0; k < NBLK + 1; k++)
		if (k < 2 || k >= 5)
			assert_int_equal(rfs_fs_write(fs, h, buf, k == NBLK ? 100 : BS, k * BS),
					 k == NBLK ? 100 : BS);
	for (int i = 0; i < 3; i++)
		(void)range_is(fs, h, 0, (NBLK + 1) * BS, hsz, 'h', 2, 5);
	assert_true(range_is(fs, h, 0, (NBLK + 1) * BS, hsz, 'h', 2, 5));
	assert_true(range_is(fs, h, 2 * BS, 3 * BS, hsz, 'h', 2, 5)); /* hole only */
	assert_true(range_is(fs, h, BS + 7, 3 * BS, hsz, 'h', 2, 5));   /* data, hole, data */
	assert_true(range_is(fs, h, NBLK * BS, BS, hsz, 'h', 2, 5));   /* the last 100 */
	assert_true(range_is(fs, h, NBLK * BS - 10, 50, hsz, 'h', 2, 5));
	assert_true(range_is(fs, h, hsz, BS, hsz, 'h', 2, 5));          /* at EOF: 0 */

	/* No block at all (a truncate up), and unwritten extents
	 * (fallocate): zeros, from the record copy. */
	rfs_nodeid z = fx_create(fs, &g_ctx, RFS_ROOT_NODE, "z");
	struct stat sz = {.st_size = NBLK * BS};
	assert_int_equal(rfs_fs_setattr(fs, z, &sz, RFS_SET_SIZE, NULL), 0);
	for (int i = 0; i < 3; i++)
		(void)range_is(fs, z, 0, NBLK * BS, NBLK * BS, 0, 0, 0);
	assert_true(range_is(fs, z, 0, NBLK * BS, NBLK * BS, 0, 0, 0));
	assert_true(range_is(fs, z, 10, 1000, NBLK * BS, 0, 0, 0));
	rfs_nodeid u = fx_create(fs, &g_ctx, RFS_ROOT_NODE, "u");
	assert_int_equal(rfs_fs_fallocate(fs, u, 0, 0, NBLK * BS), 0);
	assert_int_equal(rfs_fs_write(fs, u, buf, BS, 0), BS);
	/* Queued: READs put it over the tree; then mapped. */
	(void)range_is(fs, u, 0, NBLK * BS, NBLK * BS, 'h', 1, NBLK);
	rfs_fs_settle(fs);
	for (int i = 0; i < 3; i++)
		(void)range_is(fs, u, 0, NBLK * BS, NBLK * BS, 'h', 1, NBLK);
	assert_true(range_is(fs, u, 0, NBLK * BS, NBLK * BS, 'h', 1, NBLK));
	assert_true(range_is(fs, u, BS - 1, 2, NBLK * BS, 'h', 1, NBLK));

	/* A file tree whose last block is partial: a READ of it is served
	 * once its extent is copied (the first READ walks and copies it). */
	rfs_nodeid t = mkfile(fs, RFS_ROOT_NODE, "t", 't');
	uint64_t last = 100 + 2 * FAR, tsz = last * BS + 100;
	memset(buf, 't', sizeof(buf));
	assert_int_equal(rfs_fs_write(fs, t, buf, 100, last * BS), 100);
	for (int i = 0; i < 3; i++)
		(void)range_is(fs, t, last * BS, BS, tsz, 't', 0, 0);
	assert_true(range_is(fs, t, last * BS, BS, tsz, 't', 0, 0));
	assert_true(range_is(fs, t, last * BS + 50, 1000, tsz, 't', 0, 0));
	/* A hole of a file tree takes the lock (the copies cannot prove
	 * it), and reads as zeros. */
	assert_false(range_is(fs, t, 101 * BS, BS, tsz, 't', 0, last));

	rfs_nodeid all[] = {h, z, u, t};
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		rfs_fs_forget(fs, all[i], 1);
	assert_int_equal(rfs_fs_close(fx_reopen(fs, 0)), 0);
}

/* The seqlock check on the new paths: A changed between the copies and
 * the data read (stage 0) or after it (stage 1) -- its old blocks freed,
 * committed and reused -- and the READ returns A's new data whole. */
static void test_change_during_range_read(void **state)
{
	(void)state;
	rfs_fs *fs = fx_fresh(256u << 20, 0);
	g_served = g_retried = 0;
	uint64_t retries = 0;
	/* kind 0: inline map, whole blocks; 1: inline map, partial;
	 * 2: file tree, partial. */
	for (int kind = 0; kind < 3; kind++)
		for (int stage = 0; stage < 2; stage++) {
			char name[32];
			snprintf(name, sizeof(name), "a%d%d", kind & 3, stage & 1);
			rfs_nodeid a = kind < 2 ? mksmall(fs, name, 'a')
						: mkfile(fs, RFS_ROOT_NODE, name, 'a');
			name[0] = 'c';
			rfs_nodeid c = fx_create(fs, &g_ctx, RFS_ROOT_NODE, name);
			assert_int_equal(rfs_fs_sync(fs), 0);
			uint64_t off = kind ? 300 : 0, len = kind ? NBLK * BS - 600 : NBLK * BS;
			uint64_t sz = kind < 2 ? NBLK * BS : UINT64_MAX;
			for (int i = 0; i < 3; i++)
				(void)range_is(fs, a, off, len, sz, 'a', 0, 0);
			assert_true(range_is(fs, a, off, len, sz, 'a', 0, 0));
			struct change ch = {.fs = fs, .a = a, .c = c, .stage = stage};
			rfs_fs_set_read_hook(fs, change_a, &ch);
			bool served = range_is(fs, a, off, len, sz, 'n', 0, 0);
			rfs_fs_set_read_hook(fs, NULL, NULL);
			assert_int_equal(ch.calls, 1);
			assert_false(served);
			uint64_t s, r;
			rfs_fs_nolock_stats(fs, &s, &r);
			assert_int_equal(r, ++retries);
			for (int i = 0; i < 3; i++)
				(void)range_is(fs, a, off, len, sz, 'n', 0, 0);
			assert_true(range_is(fs, a, off, len, sz, 'n', 0, 0));
			rfs_fs_forget(fs, a, 1);
			rfs_fs_forget(fs, c, 1);
		}
	assert_int_equal(rfs_fs_close(fx_reopen(fs, 0)), 0);
}

/* ---- threads -------------------------------------------------------------- */

#define VERSIONS 120

struct writer {
	rfs_fs *fs;
	rfs_nodeid b;
	int bad;
};

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	uint8_t *buf = malloc(NBLK * BS);
	if (!buf) {
		w->bad = -1;
		return NULL;
	}
	for (int v = 2; v <= VERSIONS && !w->bad; v++) {
		memset(buf, v, NBLK * BS);
		if (rfs_fs_write(w->fs, w->b, buf, NBLK * BS, 0) != NBLK * BS)
			w->bad = 1;
	}
	free(buf);
	return NULL;
}

static void test_threads(void **state)
{
	(void)state;
	rfs_fs *fs = fx_fresh(256u << 20, 0);
	rfs_nodeid a = mkfile(fs, RFS_ROOT_NODE, "a", 1);
	rfs_nodeid b = mkfile(fs, RFS_ROOT_NODE, "b", 1);
	rfs_nodeid g = mkfile(fs, RFS_ROOT_NODE, "g", 1);
	_Atomic bool stop = false;
	struct fx_vreader rd[3] = {
		{.fs = fs, .node = a, .len = NBLK * BS, .stop = &stop},
		{.fs = fs, .node = a, .len = NBLK * BS, .stop = &stop},
		{.fs = fs, .node = b, .len = NBLK * BS, .stop = &stop},
	};
	struct writer wr = {.fs = fs, .b = b};
	pthread_t th[4];
	for (int i = 0; i < 3; i++)
		assert_int_equal(pthread_create(&th[i], NULL, fx_vreader_main, &rd[i]), 0);
	assert_int_equal(pthread_create(&th[3], NULL, writer_main, &wr), 0);
	/* New versions of A: G written (a local write of G), then cloned
	 * onto A whole. */
	uint8_t *buf = malloc(NBLK * BS);
	assert_non_null(buf);
	for (int v = 2; v <= VERSIONS; v++) {
		memset(buf, v, NBLK * BS);
		assert_int_equal(rfs_fs_write(fs, g, buf, NBLK * BS, 0), NBLK * BS);
		assert_int_equal(rfs_fs_clone_file(fs, g, a), 0);
		if (v % 40 == 0)
			assert_int_equal(rfs_fs_sync(fs), 0);
	}
	assert_int_equal(pthread_join(th[3], NULL), 0);
	atomic_store(&stop, true);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(pthread_join(th[i], NULL), 0);
		if (rd[i].bad)
			fail_msg("reader %d: failure %d after %u reads", i, rd[i].bad, rd[i].reads);
	}
	assert_int_equal(wr.bad, 0);
	g_served = g_retried = 0;
	rfs_fs_nolock_stats(fs, &g_served, &g_retried);
	settle(fs, a, VERSIONS);
	settle(fs, b, VERSIONS);
	free(buf);
	rfs_fs_forget(fs, a, 1);
	rfs_fs_forget(fs, b, 1);
	rfs_fs_forget(fs, g, 1);
	assert_int_equal(rfs_fs_close(fx_reopen(fs, 0)), 0);
}

/* Writes of a file queued (file_delay.c): its READs inside the mapped
 * size are still served from the copies, with the queued blocks put over
 * them (the index of queued writes), and leave them queued; a write
 * queued or mapped between two READs is seen by the second; a READ past
 * the mapped size maps them first. */
static void test_queued_writes_served(void **state)
{
	(void)state;
	rfs_fs *fs = fx_fresh(256u << 20, 0);
	g_served = g_retried = 0;
	rfs_nodeid f = mkfile(fs, RFS_ROOT_NODE, "f", 'a');
	settle(fs, f, 'a');
	static uint8_t b[NBLK * BS], blk[BS];
	uint64_t s;
	/* The index of queued writes is off until a READ looks there: the
	 * first READ (of g) maps the write queued before it, once. */
	rfs_nodeid g = mkfile(fs, RFS_ROOT_NODE, "g", 'g');
	memset(blk, 'p', BS);
	assert_int_equal(rfs_fs_write(fs, g, blk, BS, BS), BS);
	assert_int_equal(atomic_load(&node_get(fs, g)->dm_count), 1);
	assert_int_equal(rfs_fs_read(fs, g, b, BS, BS), BS);
	assert_memory_equal(b, blk, BS);
	assert_int_equal(atomic_load(&node_get(fs, g)->dm_count), 0);
	for (unsigned round = 0; round < 3; round++) {
		memset(blk, 'q' + round, BS);
		assert_int_equal(rfs_fs_write(fs, f, blk, BS, (2 + round) * BS), BS);
		assert_int_equal(atomic_load(&node_get(fs, f)->dm_count), round + 1);
		/* The first READ after a write may walk (none did: the
		 * queue changed no tree); at most two. */
		nl(fs, &s, NULL);
		for (int i = 0; i < 2; i++) {
			memset(b, 0xee, sizeof(b));
			assert_int_equal(rfs_fs_read(fs, f, b, sizeof(b), 0), (ssize_t)sizeof(b));
			for (size_t k = 0; k < sizeof(b); k++) {
				unsigned blkno = (unsigned)(k / BS);
				int want = blkno >= 2 && blkno <= 2 + round ? 'q' + (int)(blkno - 2) : 'a';
				if (b[k] != want)
					fail_msg("round %u byte %zu: %d, expected %d", round, k, b[k], want);
			}
		}
		nl(fs, &s, NULL);
		assert_true(s >= 1);
	}
	assert_int_equal(atomic_load(&node_get(fs, f)->dm_count), 3);
	/* Past the mapped size (the file ends with block 100 + 2 * FAR -
	 * 2): mapped first, the bytes there as before. */
	uint64_t end = (100 + 2 * (uint64_t)FAR - 1) * BS;
	assert_int_equal(rfs_fs_read(fs, f, b, 2 * BS, end - BS), BS);
	assert_int_equal(atomic_load(&node_get(fs, f)->dm_count), 0);
	assert_int_equal(rfs_fs_close(fs), 0);
	assert_int_equal(fx_fsck(), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_read_beside_held_writer, fx_setup,
						fx_teardown),
		cmocka_unit_test_setup_teardown(test_read_beside_held_nlock, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_local_write_keeps_other_copies, fx_setup,
						fx_teardown),
		cmocka_unit_test_setup_teardown(test_changes_of_a_invalidate, fx_setup,
						fx_teardown),
		cmocka_unit_test_setup_teardown(test_change_during_nolock_read, fx_setup,
						fx_teardown),
		cmocka_unit_test_setup_teardown(test_inline_data, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_inline_map_partial_beside_held_writer,
						fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_holes_and_tails, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_queued_writes_served, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_change_during_range_read, fx_setup,
						fx_teardown),
		cmocka_unit_test_setup_teardown(test_threads, fx_setup, fx_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
