/*
 * Whole-block writes copy their data with no lock held (src/fs/file_claim.c,
 * issue 9): writers of two files, and two writers of each file, run at
 * once with commits in between, then the pool crashes.
 *
 *  - exact: every writer finishes, a last commit, more writes that no
 *    commit covers, a crash dropping every unflushed write: after reopen
 *    each block holds exactly what was written to it before that commit,
 *    and fsck is clean (claimed blocks that commits saw while their data
 *    moved are neither leaked nor lost);
 *  - torn: the crash happens at a flush of some commit while the writers
 *    and the committer run; after reopen fsck is clean and every block
 *    holds one of the versions written to it -- never another block's or
 *    another file's data, never garbage.
 *
 * Every block carries its file, block number and version, and a body
 * derived from them, so any misplaced or stale block is caught.
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
#include <unistd.h>

#include <cmocka.h>

#include "common/fsfix.h"
#include "reflinkfs/fs.h"
#include "reflinkfs/pool.h"

#define BS 4096
#define NFILES 2
#define PER_FILE 2 /* writers per file: even and odd blocks */
#define NBLK 24
#define ROUNDS 6

static const struct rfs_ctx g_ctx = {.uid = 0, .gid = 0, .pid = 1, .umask = 022};

static uint64_t mix(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Block b of file f at version v. */
static void stamp(uint8_t *p, unsigned f, unsigned b, unsigned v)
{
	uint64_t tag = (uint64_t)f << 40 | (uint64_t)b << 20 | v, x = tag;
	memcpy(p, &tag, 8);
	for (size_t i = 8; i < BS; i += 8) {
		uint64_t w = mix(&x);
		memcpy(p + i, &w, 8);
	}
}

/* The version block b of file f holds, or -1 when it is not one of
 * that block's stamps. */
static int version_of(const uint8_t *p, unsigned f, unsigned b)
{
	uint64_t tag;
	uint8_t want[BS];
	memcpy(&tag, p, 8);
	unsigned v = tag & 0xfffff;
	if (tag >> 40 != f || ((tag >> 20) & 0xfffff) != b || v > ROUNDS + 1)
		return -1;
	stamp(want, f, b, v);
	return memcmp(p, want, BS) ? -1 : (int)v;
}

struct world {
	rfs_fs *fs;
	rfs_nodeid id[NFILES];
	atomic_int writers_left;
	atomic_bool failed; /* some call failed (expected after a crash) */
};

struct writer {
	struct world *w;
	unsigned f, parity, rounds;
	uint64_t seed;
};

/* Rounds 1..rounds: every block of the writer's parity, in a random
 * order, sometimes two at once (one write of two whole blocks would
 * touch the other writer's block: write them separately then). */
static void *writer(void *arg)
{
	struct writer *wr = arg;
	struct world *w = wr->w;
	uint8_t *buf = malloc(BS);
	unsigned order[NBLK / PER_FILE];
	for (unsigned v = 1; v <= wr->rounds && buf; v++) {
		unsigned n = 0;
		for (unsigned b = wr->parity; b < NBLK; b += PER_FILE)
			order[n++] = b;
		for (unsigned i = n; i > 1; i--) {
			unsigned j = (unsigned)(mix(&wr->seed) % i), t = order[i - 1];
			order[i - 1] = order[j];
			order[j] = t;
		}
		for (unsigned i = 0; i < n; i++) {
			stamp(buf, wr->f, order[i], v);
			if (rfs_fs_write(w->fs, w->id[wr->f], buf, BS, (uint64_t)order[i] * BS) != BS) {
				atomic_store(&w->failed, true);
				goto out;
			}
		}
	}
out:
	free(buf);
	atomic_fetch_sub(&w->writers_left, 1);
	return NULL;
}

static void *committer(void *arg)
{
	struct world *w = arg;
	while (atomic_load(&w->writers_left) > 0)
		if (rfs_fs_sync(w->fs)) {
			atomic_store(&w->failed, true);
			break;
		}
	return NULL;
}

static void setup_world(struct world *w)
{
	struct stat st;
	uint8_t *buf = malloc(BS * NBLK);
	assert_non_null(buf);
	unlink(g_pool);
	assert_int_equal(rfs_fs_mkfs(g_pool, 256ull << 20, 0), 0);
	assert_int_equal(rfs_fs_open(g_pool, RFS_FS_CRASHSIM, &w->fs), 0);
	for (unsigned f = 0; f < NFILES; f++) {
		char name[8];
		snprintf(name, sizeof(name), "f%u", f);
		assert_int_equal(rfs_fs_create(w->fs, &g_ctx, RFS_ROOT_NODE, name, 0644,
					       &w->id[f], &st), 0);
		for (unsigned b = 0; b < NBLK; b++)
			stamp(buf + (size_t)b * BS, f, b, 0);
		assert_int_equal(rfs_fs_write(w->fs, w->id[f], buf, BS * NBLK, 0), BS * NBLK);
	}
	assert_int_equal(rfs_fs_sync(w->fs), 0);
	free(buf);
	atomic_init(&w->writers_left, NFILES * PER_FILE);
	atomic_init(&w->failed, false);
}

static void run(struct world *w, unsigned rounds, uint64_t seed)
{
	pthread_t th[NFILES * PER_FILE], c;
	struct writer wr[NFILES * PER_FILE];
	atomic_store(&w->writers_left, NFILES * PER_FILE);
	for (unsigned i = 0; i < NFILES * PER_FILE; i++) {
		wr[i] = (struct writer){.w = w, .f = i / PER_FILE, .parity = i % PER_FILE,
					.rounds = rounds, .seed = seed * 31 + i};
		assert_int_equal(pthread_create(&th[i], NULL, writer, &wr[i]), 0);
	}
	assert_int_equal(pthread_create(&c, NULL, committer, w), 0);
	for (unsigned i = 0; i < NFILES * PER_FILE; i++)
		pthread_join(th[i], NULL);
	pthread_join(c, NULL);
}

/* Reopen after the crash: fsck clean; each block's version, checked
 * against want (or any valid version when want < 0). */
static void check_after_crash(int want)
{
	rfs_fs *fs;
	uint8_t *buf = malloc(BS * NBLK);
	assert_non_null(buf);
	assert_int_equal(rfs_fs_fsck(g_pool, fx_fsck_line, NULL), 0);
	assert_int_equal(rfs_fs_open(g_pool, 0, &fs), 0);
	for (unsigned f = 0; f < NFILES; f++) {
		char path[16];
		rfs_nodeid id;
		struct stat st;
		snprintf(path, sizeof(path), "f%u", f);
		assert_int_equal(rfs_fs_resolve(fs, path, &id, &st), 0);
		assert_int_equal(st.st_size, BS * NBLK);
		assert_int_equal(rfs_fs_read(fs, id, buf, BS * NBLK, 0), BS * NBLK);
		for (unsigned b = 0; b < NBLK; b++) {
			int v = version_of(buf + (size_t)b * BS, f, b);
			if (v < 0 || (want >= 0 && v != want))
				fprintf(stderr, "file f%u block %u: version %d, want %d\n", f, b, v, want);
			assert_true(v >= 0);
			if (want >= 0)
				assert_int_equal(v, want);
		}
		rfs_fs_forget(fs, id, 1);
	}
	assert_int_equal(rfs_fs_close(fs), 0);
	free(buf);
}

static void test_exact_after_last_commit(void **state)
{
	(void)state;
	struct world w;
	setup_world(&w);
	run(&w, ROUNDS, 1);
	assert_false(atomic_load(&w.failed));
	assert_int_equal(rfs_fs_sync(w.fs), 0);
	/* Round ROUNDS + 1 of every block, which no commit covers. */
	uint8_t *buf = malloc(BS);
	assert_non_null(buf);
	for (unsigned f = 0; f < NFILES; f++)
		for (unsigned b = 0; b < NBLK; b++) {
			stamp(buf, f, b, ROUNDS + 1);
			assert_int_equal(rfs_fs_write(w.fs, w.id[f], buf, BS, (uint64_t)b * BS), BS);
		}
	free(buf);
	rfs_fs_crash(w.fs, RFS_CRASH_DROP_ALL, 7);
	check_after_crash(ROUNDS);
	unlink(g_pool);
}

static void test_crash_during_writes(void **state)
{
	(void)state;
	static const enum rfs_crash_mode modes[] = {RFS_CRASH_DROP_ALL, RFS_CRASH_DROP_RANDOM,
						    RFS_CRASH_TEAR};
	for (unsigned k = 0; k < 6; k++) {
		struct world w;
		setup_world(&w);
		/* A flush of the 1st to 3rd commit from now (three flushes
		 * per commit): the writers are at it then. */
		rfs_pool_crash_at_flush(rfs_fs_pool(w.fs), 1 + k % 3 * 3 + k % 2, modes[k % 3], k);
		run(&w, ROUNDS, 100 + k);
		/* The writers may have been quicker than the commits. */
		for (int i = 0; i < 10 && !rfs_pool_crashed(rfs_fs_pool(w.fs)); i++)
			rfs_fs_sync(w.fs);
		assert_true(rfs_pool_crashed(rfs_fs_pool(w.fs)));
		rfs_fs_crash(w.fs, modes[k % 3], k);
		check_after_crash(-1);
		unlink(g_pool);
	}
}

/* Whole-block writes into a file whose bytes are inline in its record
 * (tiny files): past the inline bytes, and over them. */
static void test_whole_blocks_over_inline_data(void **state)
{
	(void)state;
	rfs_fs *fs;
	rfs_nodeid id[2];
	struct stat st;
	uint8_t small[100], blk[BS], got[3 * BS], want[3 * BS];
	memset(small, 0x5a, sizeof(small));
	stamp(blk, 9, 1, 1);
	unlink(g_pool);
	assert_int_equal(rfs_fs_mkfs(g_pool, 64ull << 20, 0), 0);
	assert_int_equal(rfs_fs_open(g_pool, 0, &fs), 0);
	for (int k = 0; k < 2; k++) {
		const char *name = k ? "t1" : "t0";
		assert_int_equal(rfs_fs_create(fs, &g_ctx, RFS_ROOT_NODE, name, 0644, &id[k], &st), 0);
		assert_int_equal(rfs_fs_write(fs, id[k], small, sizeof(small), 0), sizeof(small));
	}
	/* t0: a block at 4096 -- the inline bytes stay, zeros between. */
	assert_int_equal(rfs_fs_write(fs, id[0], blk, BS, BS), BS);
	memset(want, 0, sizeof(want));
	memcpy(want, small, sizeof(small));
	memcpy(want + BS, blk, BS);
	assert_int_equal(rfs_fs_read(fs, id[0], got, sizeof(got), 0), 2 * BS);
	assert_memory_equal(got, want, 2 * BS);
	/* t1: a block at 0 replaces them. */
	assert_int_equal(rfs_fs_write(fs, id[1], blk, BS, 0), BS);
	assert_int_equal(rfs_fs_read(fs, id[1], got, sizeof(got), 0), BS);
	assert_memory_equal(got, blk, BS);
	assert_int_equal(rfs_fs_getattr(fs, id[1], &st), 0);
	assert_int_equal(st.st_size, BS);
	rfs_fs_forget(fs, id[0], 1);
	rfs_fs_forget(fs, id[1], 1);
	assert_int_equal(rfs_fs_close(fs), 0);
	assert_int_equal(rfs_fs_fsck(g_pool, fx_fsck_line, NULL), 0);
	unlink(g_pool);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_exact_after_last_commit),
		cmocka_unit_test(test_crash_during_writes),
		cmocka_unit_test(test_whole_blocks_over_inline_data),
	};
	return cmocka_run_group_tests(tests, fx_setup, fx_teardown);
}
