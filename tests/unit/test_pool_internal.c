/*
 * White-box tests of the pool layer: the two bitmap copies across many
 * commits, reopens and simulated crashes (checked against a model of the
 * allocation state), cache eviction and concurrent readers, frees of
 * cached and pinned buffers, the write lock's holder using the cache
 * without its shard mutexes.  The black-box tests are in test_pool.c.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pool/pool_internal.h"

struct ctx {
	char dir[64];
	char path[128];
};

static int setup(void **state)
{
	struct ctx *c = calloc(1, sizeof(*c));

	snprintf(c->dir, sizeof(c->dir), "/tmp/rfs-pooli-XXXXXX");
	assert_non_null(mkdtemp(c->dir));
	snprintf(c->path, sizeof(c->path), "%s/pool", c->dir);
	*state = c;
	return 0;
}

static int teardown(void **state)
{
	struct ctx *c = *state;

	unlink(c->path);
	rmdir(c->dir);
	free(c);
	return 0;
}

static uint64_t rng_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void quiet(void *arg, int level, const char *line)
{
	(void)arg;
	(void)level;
	(void)line;
}

/* Open a pool and take its write lock, as every mutating call needs. */
static rfs_pool *open_pool(const char *path, unsigned flags)
{
	rfs_pool *p = NULL;

	assert_int_equal(rfs_pool_open(path, flags, &p), 0);
	rfs_pool_wrlock(p);
	return p;
}

static void close_pool(rfs_pool *p)
{
	if (rfs_pool_holds_lock(p))
		rfs_pool_unlock(p);
	rfs_pool_close(p);
}

/* The pool's persist bitmap equals the model (one byte per block). */
static void expect_model(rfs_pool *p, const uint8_t *model)
{
	for (uint64_t b = p->data_start; b < p->total_blocks; b++)
		if (rfs_block_allocated(p, b) != (model[b] != 0)) {
			fail_msg("block %llu: allocated %d, model %d", (unsigned long long)b,
				 rfs_block_allocated(p, b), model[b]);
		}
}

/*
 * Random allocations and frees over a pool whose bitmap spans several
 * pages, with commits, reopens and crashes at random flushes.  After every
 * reopen the allocation state must be exactly the one of the last
 * committed transaction (or the crashed one, if its superblock landed).
 */
static void test_bitmap_copies_random(void **state)
{
	struct ctx *c = *state;
	uint64_t total = (640ull << 20) / RFS_BLOCK_SIZE; /* 5+ bitmap pages */
	uint8_t *committed = calloc(total, 1), *cur = calloc(total, 1);
	uint64_t seed = 42;
	rfs_pool *p;

	rfs_log_set_sink(quiet, NULL);
	assert_int_equal(rfs_pool_create(c->path, total * RFS_BLOCK_SIZE, RFS_CREATE_FORCE), 0);
	p = open_pool(c->path, RFS_OPEN_CRASHSIM);
	assert_true(p->bitmap_blocks >= 5);

	for (int round = 0; round < 120; round++) {
		int nops = 1 + (int)(rng_next(&seed) % 40);
		uint64_t action = rng_next(&seed) % 10;

		for (int i = 0; i < nops; i++) {
			uint64_t s, got;

			if (rng_next(&seed) % 3) {
				uint64_t want = 1 + rng_next(&seed) % 3000;

				if (rfs_alloc_data(p, want, &s, &got) == 0)
					memset(cur + s, 1, got);
			} else {
				/* free a random allocated run */
				uint64_t b = p->data_start +
					     rng_next(&seed) % (total - p->data_start);
				uint64_t n = 0;

				while (b < total && !cur[b])
					b++;
				while (b + n < total && cur[b + n] && n < 2000)
					n++;
				if (n) {
					assert_int_equal(rfs_free_blocks(p, b, n), 0);
					memset(cur + b, 0, n);
				}
			}
		}
		expect_model(p, cur);

		if (action < 6) {
			assert_int_equal(rfs_pool_commit_locked(p), 0);
			memcpy(committed, cur, total);
		} else if (action < 8) {
			/* crash in the middle of the commit */
			uint64_t k = 1 + rng_next(&seed) % 2;
			uint64_t g = rfs_pool_committed_gen(p);

			rfs_pool_crash_at_flush(p, k, (enum rfs_crash_mode)(rng_next(&seed) % 3),
						rng_next(&seed));
			assert_int_not_equal(rfs_pool_commit_locked(p), 0);
			assert_true(rfs_pool_crashed(p));
			close_pool(p);
			p = open_pool(c->path, RFS_OPEN_CRASHSIM);
			if (rfs_pool_committed_gen(p) == g + 1)
				memcpy(committed, cur, total);
			else
				assert_int_equal(rfs_pool_committed_gen(p), g);
			memcpy(cur, committed, total);
			expect_model(p, cur);
		} else if (action < 9) {
			/* crash without commit */
			rfs_pool_unlock(p);
			rfs_pool_crash(p, (enum rfs_crash_mode)(rng_next(&seed) % 3), rng_next(&seed));
			p = open_pool(c->path, RFS_OPEN_CRASHSIM);
			memcpy(cur, committed, total);
			expect_model(p, cur);
		} else {
			assert_int_equal(rfs_pool_commit_locked(p), 0);
			memcpy(committed, cur, total);
			close_pool(p);
			p = open_pool(c->path, RFS_OPEN_CRASHSIM);
			expect_model(p, cur);
		}
	}
	close_pool(p);
	rfs_log_set_sink(NULL, NULL);
	free(committed);
	free(cur);
}

/* A block freed in its own transaction is reusable at once, and its dirty
 * buffer disappears; a committed one waits for the commit. */
static void test_free_fresh_and_pinned(void **state)
{
	struct ctx *c = *state;
	struct rfs_pool_stats st;
	struct rfs_buf *b, *b2;
	uint64_t nr;
	rfs_pool *p;

	assert_int_equal(rfs_pool_create(c->path, 32ull << 20, RFS_CREATE_FORCE), 0);
	p = open_pool(c->path, 0);
	assert_int_equal(rfs_buf_new(p, RFS_BT_NODE, 0, 16, &b), 0);
	nr = b->blocknr;
	assert_true(rfs_buf_is_dirty(p, b));
	assert_int_equal(rfs_buf_gen(b), rfs_pool_txn_gen(p));
	rfs_buf_put(p, b);
	rfs_pool_stats(p, &st);
	assert_int_equal(st.dirty_blocks, 1);
	assert_int_equal(rfs_free_blocks(p, nr, 1), 0);
	rfs_pool_stats(p, &st);
	assert_int_equal(st.dirty_blocks, 0);
	assert_int_equal(st.cache_blocks, 0);
	assert_int_equal(st.pending_free, 0);
	assert_int_equal(rfs_buf_new(p, RFS_BT_NODE, 0, 16, &b), 0);
	assert_int_equal(b->blocknr, nr);

	/* freed while pinned: the buffer stays valid until put */
	assert_int_equal(rfs_free_blocks(p, nr, 1), 0);
	memset(b->data + RFS_BLOCK_HEADER_SIZE, 0x77, 100);
	rfs_buf_put(p, b);

	/* committed block, pinned, freed: pending until commit */
	assert_int_equal(rfs_buf_new(p, RFS_BT_NODE, 1, 16, &b), 0);
	nr = b->blocknr;
	rfs_buf_put(p, b);
	assert_int_equal(rfs_pool_commit_locked(p), 0);
	assert_int_equal(rfs_buf_read(p, nr, RFS_BT_NODE, rfs_pool_committed_gen(p), &b), 0);
	assert_false(rfs_buf_is_dirty(p, b));
	assert_int_equal(rfs_free_blocks(p, nr, 1), 0);
	assert_int_equal(rfs_free_blocks(p, nr, 1), -EUCLEAN);
	rfs_pool_stats(p, &st);
	assert_int_equal(st.pending_free, 1);
	assert_int_equal(rfs_buf_new(p, RFS_BT_NODE, 0, 16, &b2), 0);
	assert_int_not_equal(b2->blocknr, nr);
	rfs_buf_put(p, b2);
	rfs_buf_put(p, b);
	assert_int_equal(rfs_pool_commit_locked(p), 0);
	rfs_pool_stats(p, &st);
	assert_int_equal(st.pending_free, 0);
	assert_int_equal(rfs_buf_new(p, RFS_BT_NODE, 0, 16, &b2), 0);
	assert_int_equal(b2->blocknr, nr);
	rfs_buf_put(p, b2);
	close_pool(p);
}

struct reader_arg {
	rfs_pool *p;
	uint64_t *blocks;
	size_t n;
	uint64_t gen;
	int errors;
	unsigned seed;
};

static void *reader(void *arg)
{
	struct reader_arg *a = arg;
	uint64_t s = a->seed;

	for (int i = 0; i < 20000; i++) {
		struct rfs_buf *b;
		uint64_t nr = a->blocks[rng_next(&s) % a->n];

		rfs_pool_rdlock(a->p);
		if (rfs_buf_read(a->p, nr, RFS_BT_NODE, a->gen, &b) != 0 ||
		    b->data[RFS_BLOCK_HEADER_SIZE] != (uint8_t)nr)
			a->errors++;
		else
			rfs_buf_put(a->p, b);
		rfs_pool_unlock(a->p);
	}
	return NULL;
}

/* Eviction keeps the cache at its limit; concurrent readers are safe. */
static void test_cache_limit_and_readers(void **state)
{
	struct ctx *c = *state;
	enum { N = 600 };
	uint64_t blocks[N];
	struct rfs_pool_stats st;
	struct reader_arg args[4];
	pthread_t th[4];
	rfs_pool *p;

	assert_int_equal(rfs_pool_create(c->path, 32ull << 20, RFS_CREATE_FORCE), 0);
	p = open_pool(c->path, 0);
	rfs_pool_set_cache_limit(p, 50);
	for (int i = 0; i < N; i++) {
		struct rfs_buf *b;

		assert_int_equal(rfs_buf_new(p, RFS_BT_NODE, 0, 16, &b), 0);
		blocks[i] = b->blocknr;
		b->data[RFS_BLOCK_HEADER_SIZE] = (uint8_t)b->blocknr;
		rfs_buf_put(p, b);
	}
	rfs_pool_stats(p, &st);
	assert_int_equal(st.dirty_blocks, N); /* dirty blocks stay */
	assert_int_equal(rfs_pool_commit_locked(p), 0);
	rfs_pool_stats(p, &st);
	assert_true(st.cache_blocks <= 50);

	rfs_pool_unlock(p); /* the readers take the read lock */
	for (int t = 0; t < 4; t++) {
		args[t] = (struct reader_arg){ p, blocks, N, rfs_pool_committed_gen(p), 0,
					       (unsigned)t + 1 };
		pthread_create(&th[t], NULL, reader, &args[t]);
	}
	for (int t = 0; t < 4; t++) {
		pthread_join(th[t], NULL);
		assert_int_equal(args[t].errors, 0);
	}
	rfs_pool_stats(p, &st);
	assert_true(st.cache_blocks <= 50);
	close_pool(p);
}

static uint64_t shard_locks(rfs_pool *p)
{
	uint64_t n = 0;

	for (unsigned i = 0; i < RFS_CACHE_SHARDS; i++)
		n += p->cache.shard[i].locked;
	return n;
}

/* The write lock's holder is the cache's only user: its lookups and
 * releases take no shard mutex; a reader's do. */
static void test_cache_writer_no_shard_lock(void **state)
{
	struct ctx *c = *state;
	struct rfs_buf *b;
	uint64_t nr, n0;
	rfs_pool *p;

	assert_int_equal(rfs_pool_create(c->path, 32ull << 20, RFS_CREATE_FORCE), 0);
	p = open_pool(c->path, 0); /* write lock held */
	n0 = shard_locks(p);
	assert_int_equal(rfs_buf_new(p, RFS_BT_NODE, 0, 16, &b), 0);
	nr = b->blocknr;
	rfs_buf_put(p, b);
	assert_int_equal(rfs_pool_commit_locked(p), 0);
	uint64_t gen = rfs_pool_committed_gen(p);
	for (int i = 0; i < 100; i++) {
		assert_int_equal(rfs_buf_read(p, nr, RFS_BT_NODE, gen, &b), 0);
		rfs_buf_put(p, b);
	}
	assert_int_equal(shard_locks(p), n0);
	rfs_pool_unlock(p);

	rfs_pool_rdlock(p);
	assert_int_equal(rfs_buf_read(p, nr, RFS_BT_NODE, gen, &b), 0);
	rfs_buf_put(p, b);
	assert_int_equal(shard_locks(p), n0 + 2);
	rfs_pool_unlock(p);

	/* Downgraded (a paused writer): readers may be in, so it locks. */
	rfs_pool_wrlock(p);
	rfs_pool_lock_downgrade(p);
	assert_int_equal(rfs_buf_read(p, nr, RFS_BT_NODE, gen, &b), 0);
	rfs_buf_put(p, b);
	assert_int_equal(shard_locks(p), n0 + 4);
	rfs_pool_unlock(p);
	close_pool(p);
}

/* A data block allocated but never written still leaves the pool file
 * long enough to reopen; high_water and used_blocks survive. */
static void test_high_water_file_length(void **state)
{
	struct ctx *c = *state;
	struct rfs_pool_stats st, st2;
	uint64_t s, got;
	rfs_pool *p;

	assert_int_equal(rfs_pool_create(c->path, 64ull << 20, RFS_CREATE_FORCE), 0);
	p = open_pool(c->path, 0);
	assert_int_equal(rfs_alloc_data(p, 1000, &s, &got), 0);
	assert_int_equal(got, 1000);
	assert_int_equal(rfs_pool_commit_locked(p), 0);
	rfs_pool_stats(p, &st);
	close_pool(p);
	p = open_pool(c->path, 0);
	rfs_pool_stats(p, &st2);
	assert_int_equal(st.high_water, st2.high_water);
	assert_int_equal(st.used_blocks, st2.used_blocks);
	/* data write to a committed block is refused */
	{
		uint8_t blk[RFS_BLOCK_SIZE] = { 0 };

		rfs_log_set_sink(quiet, NULL);
		assert_int_equal(rfs_data_write(p, s, blk, 1, NULL), -EINVAL);
		rfs_log_set_sink(NULL, NULL);
	}
	close_pool(p);
}

/* Small data reads come from the pool's mapping from their second read
 * on (the first is a pread, the second maps the blocks), and see every
 * later write of the same blocks, as pread would; long ones never do. */
static void test_map_reads_data(void **state)
{
	struct ctx *c = *state;
	enum { N = 8, M = RFS_MAP_MAX_BLOCKS };
	static uint8_t blk[N * RFS_BLOCK_SIZE], back[N * RFS_BLOCK_SIZE];
	uint32_t cs[N];
	uint64_t s, got, bad = 0;
	rfs_pool *p;

	assert_true(M < N);
	assert_int_equal(rfs_pool_create(c->path, 64ull << 20, RFS_CREATE_FORCE), 0);
	p = open_pool(c->path, 0);
	assert_non_null(p->io.map);
	assert_int_equal(p->io.map_len, p->total_blocks * RFS_BLOCK_SIZE);
	assert_int_equal(rfs_alloc_data(p, N, &s, &got), 0);
	assert_int_equal(got, N);
	uint64_t off = s << RFS_BLOCK_SHIFT;
	for (int round = 0; round < 3; round++) {
		for (size_t i = 0; i < sizeof(blk); i++)
			blk[i] = (uint8_t)(i * 7 + round * 13 + i / RFS_BLOCK_SIZE);
		assert_int_equal(rfs_data_write(p, s, blk, N, cs), 0);
		/* the first M blocks: first read noted, second mapped (then
		 * always); the next block, read once, is not mapped */
		if (round == 0) {
			assert_false(rfs_io_map_copy(&p->io, off, back, M * RFS_BLOCK_SIZE));
			assert_false(rfs_io_map_copy(&p->io, off + M * RFS_BLOCK_SIZE, back,
						     RFS_BLOCK_SIZE));
		}
		for (int k = 0; k < 2; k++) {
			memset(back, 0, sizeof(back));
			assert_true(rfs_io_map_copy(&p->io, off, back, M * RFS_BLOCK_SIZE));
			assert_memory_equal(back, blk, M * RFS_BLOCK_SIZE);
		}
		/* one block of the mapped ones, and through the data calls */
		memset(back, 0, sizeof(back));
		assert_true(rfs_io_map_copy(&p->io, off + RFS_BLOCK_SIZE, back, RFS_BLOCK_SIZE));
		assert_memory_equal(back, blk + RFS_BLOCK_SIZE, RFS_BLOCK_SIZE);
		memset(back, 0, sizeof(back));
		assert_int_equal(rfs_data_read(p, s, back, M, cs), 0);
		assert_memory_equal(back, blk, M * RFS_BLOCK_SIZE);
		memset(back, 0, sizeof(back));
		assert_int_equal(rfs_data_read_nolock(p, s + 1, back, M - 1, cs + 1, &bad), 0);
		assert_memory_equal(back, blk + RFS_BLOCK_SIZE, (M - 1) * RFS_BLOCK_SIZE);
		/* longer than RFS_MAP_MAX_BLOCKS: never from the map, right all the same */
		assert_false(rfs_io_map_copy(&p->io, off, back, N * RFS_BLOCK_SIZE));
		assert_false(rfs_io_map_copy(&p->io, off, back, N * RFS_BLOCK_SIZE));
		memset(back, 0, sizeof(back));
		assert_int_equal(rfs_data_read(p, s, back, N, cs), 0);
		assert_memory_equal(back, blk, sizeof(blk));
	}
	/* past the end of the mapping, or of the file: not from the map */
	assert_false(rfs_io_map_copy(&p->io, p->io.map_len - RFS_BLOCK_SIZE, back, 2 * RFS_BLOCK_SIZE));
	for (int k = 0; k < 3; k++)
		assert_false(rfs_io_map_copy(&p->io, p->io.file_size, back, RFS_BLOCK_SIZE));
	assert_int_equal(p->io.map_faults, 0);
	close_pool(p);
}

/* The pool file cut short behind the pool's back: the mapped copy
 * faults (SIGBUS), which is caught, counted and answered by pread,
 * whose zeros then fail the checksum: -EIO, and the process lives. */
static void test_map_fault_falls_back(void **state)
{
	struct ctx *c = *state;
	static uint8_t blk[RFS_BLOCK_SIZE], back[RFS_BLOCK_SIZE];
	uint32_t cs;
	uint64_t s, got, bad = 0;
	rfs_pool *p;

#ifdef __SANITIZE_THREAD__
	/* TSan copies in its own memcpy interceptor and ends the process
	 * on a fault inside its runtime: the ASan build runs this. */
	skip();
#endif
	assert_int_equal(rfs_pool_create(c->path, 64ull << 20, RFS_CREATE_FORCE), 0);
	/* opened here, not in setup: cmocka puts its own SIGBUS handler
	 * back after a setup, and the guard is installed at open */
	p = open_pool(c->path, 0);
	assert_int_equal(rfs_alloc_data(p, 1, &s, &got), 0);
	memset(blk, 0xa5, sizeof(blk));
	assert_int_equal(rfs_data_write(p, s, blk, 1, &cs), 0);
	for (int k = 0; k < 2; k++) /* read, then mapped */
		assert_int_equal(rfs_data_read(p, s, back, 1, &cs), 0);
	assert_true(rfs_io_map_copy(&p->io, s << RFS_BLOCK_SHIFT, back, RFS_BLOCK_SIZE));
	assert_int_equal(p->io.map_faults, 0);
	assert_int_equal(truncate(c->path, (off_t)(s << RFS_BLOCK_SHIFT)), 0);
	rfs_log_set_sink(quiet, NULL);
	assert_int_equal(rfs_data_read_nolock(p, s, back, 1, &cs, &bad), -EIO);
	assert_int_equal(bad, s);
	assert_int_equal(p->io.map_faults, 1);
	assert_int_equal(rfs_data_read(p, s, back, 1, &cs), -EIO);
	assert_int_equal(p->io.map_faults, 2);
	rfs_log_set_sink(NULL, NULL);
	/* written again, the block reads back, from the map */
	assert_int_equal(rfs_data_write(p, s, blk, 1, &cs), 0);
	memset(back, 0, sizeof(back));
	assert_true(rfs_io_map_copy(&p->io, s << RFS_BLOCK_SHIFT, back, RFS_BLOCK_SIZE));
	assert_memory_equal(back, blk, sizeof(blk));
	assert_int_equal(rfs_data_read(p, s, back, 1, &cs), 0);
	assert_int_equal(p->io.map_faults, 2);
	close_pool(p);
}

static sigjmp_buf other_env;
static volatile sig_atomic_t other_hits;

static void other_bus(int sig)
{
	(void)sig;
	other_hits++;
	siglongjmp(other_env, 1);
}

/* A SIGBUS that is not a guarded copy's goes to the handler that was
 * there before the pool was opened; with none, it ends the process as
 * it would have without the guard. */
static void test_map_guard_passes_others_on(void **state)
{
	struct ctx *c = *state;
	struct sigaction sa = {.sa_handler = other_bus, .sa_flags = SA_NODEFER}, old;
	rfs_pool *p;

	assert_int_equal(rfs_pool_create(c->path, 64ull << 20, RFS_CREATE_FORCE), 0);
	sigemptyset(&sa.sa_mask);
	assert_int_equal(sigaction(SIGBUS, &sa, &old), 0);
	p = open_pool(c->path, 0);
	assert_non_null(p->io.map);
	other_hits = 0;
	if (!sigsetjmp(other_env, 0))
		raise(SIGBUS);
	assert_int_equal(other_hits, 1);
	close_pool(p);
	assert_int_equal(sigaction(SIGBUS, &old, NULL), 0);

	/* A real fault outside any copy, with the default action before
	 * (set plainly, and with SA_SIGINFO, which leaves the handler
	 * SIG_DFL all the same). */
	for (int flags = 0; flags < 2; flags++) {
		pid_t pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			struct sigaction dfl = {.sa_handler = SIG_DFL,
						.sa_flags = flags ? SA_SIGINFO : 0};
			sigemptyset(&dfl.sa_mask);
			sigaction(SIGBUS, &dfl, NULL);
			p = NULL;
			if (rfs_pool_open(c->path, 0, &p))
				_exit(2);
			char f[160];
			snprintf(f, sizeof(f), "%s/short", c->dir);
			int fd = open(f, O_RDWR | O_CREAT | O_TRUNC, 0600);
			if (fd < 0 || ftruncate(fd, 4096))
				_exit(3);
			volatile const char *m = mmap(NULL, 8192, PROT_READ, MAP_SHARED, fd, 0);
			if (m == MAP_FAILED)
				_exit(4);
			unlink(f);
			(void)m[4096]; /* past the end of the file */
			_exit(5);
		}
		int st;
		assert_int_equal(waitpid(pid, &st, 0), pid);
		assert_true(WIFSIGNALED(st));
		assert_int_equal(WTERMSIG(st), SIGBUS);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_bitmap_copies_random, setup, teardown),
		cmocka_unit_test_setup_teardown(test_free_fresh_and_pinned, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cache_limit_and_readers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cache_writer_no_shard_lock, setup, teardown),
		cmocka_unit_test_setup_teardown(test_high_water_file_length, setup, teardown),
		cmocka_unit_test_setup_teardown(test_map_reads_data, setup, teardown),
		cmocka_unit_test_setup_teardown(test_map_fault_falls_back, setup, teardown),
		cmocka_unit_test_setup_teardown(test_map_guard_passes_others_on, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
