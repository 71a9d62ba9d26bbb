/*
 * A reader never waits for a writer's data copy (issue 9, "Parallel
 * I/O"): a writer of file A is held inside its data copy by the test hook
 * (rfs_fs_set_data_hook) while readers of file B, and of A itself, run
 * to completion -- they see B's data and A's old data -- and a getattr
 * of A answers.  Only then is the writer let go; its data is there
 * afterwards.  The order is what is checked, not a time: the writer
 * stays in the hook until the readers are done, so a reader that needed
 * the write lock would never finish (the wait for it gives up after
 * 60 s only so that a broken build fails instead of hanging).
 *
 * A write of whole blocks copies its data holding no lock at all
 * (src/fs/file_claim.c): while it is held in its copy, another writer
 * (of file B) and a commit run to their end, and a copy of the pool made
 * then -- what a crash would leave -- is fsck-clean, with A's old data
 * and B's new: the held write's claimed blocks are free on disk.  A
 * write with partial blocks reads the old contents, so it copies holding
 * the writers' gate: another writer and a commit wait for it, and both
 * finish once it is let go, leaving fsck clean.
 *
 * A claim does not wait for readers (nor make them wait): while the test
 * holds the pool's read lock, as a reader in the middle of a READ does,
 * a whole-block writer claims its blocks and reaches its data copy.
 * With the write lock for the claim it waited for the reader to leave,
 * and every READ that came meanwhile waited behind it.
 */
#include <errno.h>
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
#include "reflinkfs/fs.h"
#include "reflinkfs/log.h"
#include "reflinkfs/pool.h"

#define BS 4096
#define NBLK 64

static const struct rfs_ctx g_ctx = {.uid = 0, .gid = 0, .pid = 1, .umask = 022};

/* The hook's gate: the first writer to reach it says it is in, and
 * waits to be let go; later ones pass. */
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;
static bool g_in, g_go, g_done_read, g_done_other;

static void hook(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&g_mu);
	if (g_in) {
		pthread_mutex_unlock(&g_mu);
		return;
	}
	g_in = true;
	pthread_cond_broadcast(&g_cv);
	while (!g_go)
		pthread_cond_wait(&g_cv, &g_mu);
	pthread_mutex_unlock(&g_mu);
}

/* Wait until *flag is set; false after 60 s (the thing never happened). */
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

static bool flag(bool *f)
{
	pthread_mutex_lock(&g_mu);
	bool v = *f;
	pthread_mutex_unlock(&g_mu);
	return v;
}

struct job {
	rfs_fs *fs;
	rfs_nodeid a, b;
	uint8_t *newa; /* what the held writer writes into A */
	ssize_t wret;
	int rret, oret;
	uint8_t gota[NBLK * BS], gotb[NBLK * BS];
};

static void *writer_a(void *arg)
{
	struct job *j = arg;
	j->wret = rfs_fs_write(j->fs, j->a, j->newa, NBLK * BS, 0);
	return NULL;
}

static void *reader(void *arg)
{
	struct job *j = arg;
	struct stat st;
	ssize_t n = rfs_fs_read(j->fs, j->b, j->gotb, sizeof(j->gotb), 0);
	ssize_t m = rfs_fs_read(j->fs, j->a, j->gota, sizeof(j->gota), 0);
	int g = rfs_fs_getattr(j->fs, j->a, &st);
	j->rret = n == NBLK * BS && m == NBLK * BS && g == 0 ? 0 : -1;
	set_flag(&g_done_read);
	return NULL;
}

/* Another writer (of B), then a commit: both must wait for the held one. */
static void *other_writer(void *arg)
{
	struct job *j = arg;
	uint8_t blk[BS];
	memset(blk, 0x77, sizeof(blk));
	ssize_t n = rfs_fs_write(j->fs, j->b, blk, BS, 0);
	int c = rfs_fs_sync(j->fs);
	j->oret = n == BS && c == 0 ? 0 : -1;
	set_flag(&g_done_other);
	return NULL;
}

static void fill(uint8_t *p, size_t n, uint8_t seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(seed + i * 7 + i / BS);
}

static rfs_fs *make_fs(struct job *j, uint8_t *olda, uint8_t *oldb)
{
	rfs_fs *fs;
	struct stat st;
	unlink(g_pool); /* a failed case before may have left it */
	assert_int_equal(rfs_fs_mkfs(g_pool, 256ull << 20, 0), 0);
	assert_int_equal(rfs_fs_open(g_pool, RFS_FS_NOJOURNAL, &fs), 0);
	assert_int_equal(rfs_fs_create(fs, &g_ctx, RFS_ROOT_NODE, "a", 0644, &j->a, &st), 0);
	assert_int_equal(rfs_fs_create(fs, &g_ctx, RFS_ROOT_NODE, "b", 0644, &j->b, &st), 0);
	fill(olda, NBLK * BS, 1);
	fill(oldb, NBLK * BS, 2);
	assert_int_equal(rfs_fs_write(fs, j->a, olda, NBLK * BS, 0), NBLK * BS);
	assert_int_equal(rfs_fs_write(fs, j->b, oldb, NBLK * BS, 0), NBLK * BS);
	assert_int_equal(rfs_fs_sync(fs), 0);
	j->fs = fs;
	g_in = g_go = g_done_read = g_done_other = false;
	rfs_fs_set_data_hook(fs, hook, NULL);
	return fs;
}

static void close_fs(struct job *j)
{
	rfs_fs_set_data_hook(j->fs, NULL, NULL);
	rfs_fs_forget(j->fs, j->a, 1);
	rfs_fs_forget(j->fs, j->b, 1);
	assert_int_equal(rfs_fs_close(j->fs), 0);
	assert_int_equal(rfs_fs_fsck(g_pool, fx_fsck_line, NULL), 0);
	unlink(g_pool);
}

/* A job on a fresh pool (make_fs): A's and B's old contents in *olda
 * and *oldb, A's new contents filled from seed.  Freed by job_free. */
static struct job *job_new(uint8_t seed, uint8_t **olda, uint8_t **oldb)
{
	struct job *j = calloc(1, sizeof(*j));
	*olda = malloc(NBLK * BS);
	*oldb = malloc(NBLK * BS);
	assert_non_null(j && *olda && *oldb);
	j->newa = malloc(NBLK * BS);
	assert_non_null(j->newa);
	make_fs(j, *olda, *oldb);
	fill(j->newa, NBLK * BS, seed);
	return j;
}

static void job_free(struct job *j, uint8_t *olda, uint8_t *oldb)
{
	free(j->newa);
	free(j);
	free(olda);
	free(oldb);
}

static void test_reader_passes_held_writer(void **state)
{
	(void)state;
	uint8_t *olda, *oldb;
	struct job *j = job_new(9, &olda, &oldb);

	pthread_t w, r;
	assert_int_equal(pthread_create(&w, NULL, writer_a, j), 0);
	assert_true(wait_for(&g_in));
	/* The writer is inside its data copy now and stays there. */
	assert_int_equal(pthread_create(&r, NULL, reader, j), 0);
	bool read_done = wait_for(&g_done_read);
	bool still_in = !flag(&g_go);
	set_flag(&g_go); /* let the writer go in any case, then judge */
	pthread_join(r, NULL);
	pthread_join(w, NULL);
	assert_true(read_done && still_in);
	assert_int_equal(j->rret, 0);
	assert_memory_equal(j->gotb, oldb, NBLK * BS);
	assert_memory_equal(j->gota, olda, NBLK * BS); /* the old data */
	assert_int_equal(j->wret, NBLK * BS);
	assert_int_equal(rfs_fs_read(j->fs, j->a, j->gota, NBLK * BS, 0), NBLK * BS);
	assert_memory_equal(j->gota, j->newa, NBLK * BS);
	close_fs(j);
	job_free(j, olda, oldb);
}

static void *writer_a_unaligned(void *arg);

static void test_writers_and_commit_wait(void **state)
{
	(void)state;
	uint8_t *olda, *oldb;
	struct job *j = job_new(5, &olda, &oldb);

	pthread_t w, o;
	assert_int_equal(pthread_create(&w, NULL, writer_a_unaligned, j), 0);
	assert_true(wait_for(&g_in));
	/* The other writer's own data copy calls the hook too: it passes. */
	assert_int_equal(pthread_create(&o, NULL, other_writer, j), 0);
	/* Let a reader run to the end to show the pool is not stuck, then
	 * check the other writer did not get past the held one. */
	pthread_t r;
	assert_int_equal(pthread_create(&r, NULL, reader, j), 0);
	bool read_done = wait_for(&g_done_read);
	pthread_join(r, NULL);
	bool other_waited = !flag(&g_done_other);
	set_flag(&g_go);
	pthread_join(w, NULL);
	pthread_join(o, NULL);
	assert_true(read_done);
	assert_true(other_waited);
	assert_int_equal(j->wret, BS + 50);
	assert_int_equal(j->oret, 0);
	memcpy(olda + 100, j->newa + 100, BS + 50);
	assert_int_equal(rfs_fs_read(j->fs, j->a, j->gota, NBLK * BS, 0), NBLK * BS);
	assert_memory_equal(j->gota, olda, NBLK * BS);
	assert_int_equal(rfs_fs_read(j->fs, j->b, j->gotb, BS, 0), BS);
	for (int i = 0; i < BS; i++)
		assert_int_equal(j->gotb[i], 0x77);
	close_fs(j);
	job_free(j, olda, oldb);
}

/* An unaligned write: it reads the old partial blocks, so it copies its
 * data holding the writers' gate (file.c: write_blocks with pause). */
static void *writer_a_unaligned(void *arg)
{
	struct job *j = arg;
	j->wret = rfs_fs_write(j->fs, j->a, j->newa + 100, BS + 50, 100);
	return NULL;
}

/* RELEASE and FORGET of B, which free nothing (B keeps a reference). */
static void *releaser(void *arg)
{
	struct job *j = arg;
	rfs_nodeid id;
	struct stat st;
	int l = rfs_fs_lookup(j->fs, RFS_ROOT_NODE, "b", &id, &st);
	rfs_fs_forget(j->fs, j->b, 1);
	rfs_fs_release(j->fs, j->b);
	j->oret = l == 0 && id == j->b ? 0 : -1;
	set_flag(&g_done_other);
	return NULL;
}

/* A RELEASE or FORGET that frees nothing takes no write lock: it runs to
 * its end while a writer holds the writers' gate (held in its data
 * copy); before, it waited for the writer (op_begin). */
static void test_release_passes_held_writer(void **state)
{
	(void)state;
	uint8_t *olda, *oldb;
	struct job *j = job_new(3, &olda, &oldb);
	assert_int_equal(rfs_fs_open_node(j->fs, j->b), 0);

	pthread_t w, r;
	assert_int_equal(pthread_create(&w, NULL, writer_a_unaligned, j), 0);
	assert_true(wait_for(&g_in));
	assert_int_equal(pthread_create(&r, NULL, releaser, j), 0);
	bool done = wait_for(&g_done_other);
	bool still_in = !flag(&g_go);
	set_flag(&g_go);
	pthread_join(r, NULL);
	pthread_join(w, NULL);
	assert_true(done && still_in);
	assert_int_equal(j->oret, 0);
	assert_int_equal(j->wret, BS + 50);
	memcpy(olda + 100, j->newa + 100, BS + 50);
	assert_int_equal(rfs_fs_read(j->fs, j->a, j->gota, NBLK * BS, 0), NBLK * BS);
	assert_memory_equal(j->gota, olda, NBLK * BS);
	/* B still has the reference make_fs's create gave it. */
	struct stat st;
	assert_int_equal(rfs_fs_getattr(j->fs, j->b, &st), 0);
	close_fs(j);
	job_free(j, olda, oldb);
}

static void copy_file(const char *from, const char *to)
{
	FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
	assert_non_null(in);
	assert_non_null(out);
	static uint8_t buf[1 << 16];
	size_t n;
	while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
		assert_int_equal(fwrite(buf, 1, n, out), n);
	assert_int_equal(fclose(in), 0);
	assert_int_equal(fclose(out), 0);
}

/* A whole-block writer held in its copy holds no lock: another writer
 * and a commit pass it; the pool as that commit left it (a crash then)
 * is consistent and has neither A's new data nor its claimed blocks. */
static void test_claimed_writer_lets_others_pass(void **state)
{
	(void)state;
	uint8_t *olda, *oldb;
	struct job *j = job_new(6, &olda, &oldb);

	pthread_t w, o;
	assert_int_equal(pthread_create(&w, NULL, writer_a, j), 0);
	assert_true(wait_for(&g_in));
	assert_int_equal(pthread_create(&o, NULL, other_writer, j), 0);
	bool passed = wait_for(&g_done_other);
	bool still_in = !flag(&g_go);
	char img[4300];
	snprintf(img, sizeof(img), "%s.crash", g_pool);
	if (passed && still_in)
		copy_file(g_pool, img); /* nothing writes now: a crash image */
	set_flag(&g_go);
	pthread_join(o, NULL);
	pthread_join(w, NULL);
	assert_true(passed && still_in);
	assert_int_equal(j->oret, 0);
	assert_int_equal(j->wret, NBLK * BS);
	assert_int_equal(rfs_fs_read(j->fs, j->a, j->gota, NBLK * BS, 0), NBLK * BS);
	assert_memory_equal(j->gota, j->newa, NBLK * BS);
	close_fs(j);

	/* The crash image: fsck finds no leaked block (the claimed ones are
	 * free there), A holds its old data, B its new first block. */
	assert_int_equal(rfs_fs_fsck(img, fx_fsck_line, NULL), 0);
	rfs_fs *fs;
	rfs_nodeid a, b;
	struct stat st;
	assert_int_equal(rfs_fs_open(img, RFS_FS_NOJOURNAL, &fs), 0);
	assert_int_equal(rfs_fs_resolve(fs, "a", &a, &st), 0);
	assert_int_equal(rfs_fs_resolve(fs, "b", &b, &st), 0);
	assert_int_equal(rfs_fs_read(fs, a, j->gota, NBLK * BS, 0), NBLK * BS);
	assert_memory_equal(j->gota, olda, NBLK * BS);
	assert_int_equal(rfs_fs_read(fs, b, j->gotb, NBLK * BS, 0), NBLK * BS);
	memset(oldb, 0x77, BS);
	assert_memory_equal(j->gotb, oldb, NBLK * BS);
	rfs_fs_forget(fs, a, 1);
	rfs_fs_forget(fs, b, 1);
	assert_int_equal(rfs_fs_close(fs), 0);
	unlink(img);
	job_free(j, olda, oldb);
}

static void test_claim_passes_reader(void **state)
{
	(void)state;
	uint8_t *olda, *oldb;
	struct job *j = job_new(3, &olda, &oldb);

	rfs_pool_rdlock(rfs_fs_pool(j->fs)); /* a reader at work */
	pthread_t w;
	assert_int_equal(pthread_create(&w, NULL, writer_a, j), 0);
	/* The hook runs after the claim, in the data copy. */
	bool claimed = wait_for(&g_in);
	rfs_pool_unlock(rfs_fs_pool(j->fs));
	set_flag(&g_go);
	pthread_join(w, NULL);
	assert_true(claimed);
	assert_int_equal(j->wret, NBLK * BS);
	assert_int_equal(rfs_fs_read(j->fs, j->a, j->gota, NBLK * BS, 0), NBLK * BS);
	assert_memory_equal(j->gota, j->newa, NBLK * BS);
	close_fs(j);
	job_free(j, olda, oldb);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reader_passes_held_writer),
		cmocka_unit_test(test_writers_and_commit_wait),
		cmocka_unit_test(test_release_passes_held_writer),
		cmocka_unit_test(test_claimed_writer_lets_others_pass),
		cmocka_unit_test(test_claim_passes_reader),
	};
	return cmocka_run_group_tests(tests, fx_setup, fx_teardown);
}
