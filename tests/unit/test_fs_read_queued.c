/*
 * READs of a file whose writes are queued (src/fs/file_delay.c), racing
 * the mapping: one thread writes single blocks at random (queued), and
 * every so often maps them (settle, fsync) or commits; or two threads
 * write and never settle, so that full batches are mapped a write at a
 * time by either of them; two threads READ
 * at random, locked and lock-free alike, and check each block they get
 * against what was answered before the READ began.  What could go
 * wrong: a block read from the index after its entry should have gone
 * (mapped, or replaced and given back, then claimed again by a later
 * write: another version, or a checksum error), a block found in
 * neither the index nor the tree (an older version), a lock-free READ
 * that raced a mapping and was not done again.  With READs now and then
 * only, the index of queued writes goes off and on again (file_delay.c,
 * "The index only while READs come"): a READ must then find the writes
 * queued while it was off too.
 *
 * Each block holds (block, version) in its first bytes and a body
 * derived from them: a READ must return a whole version of the right
 * block, at least as new as the last write to it that returned before
 * the READ started.  Runs under TSan too (make test).
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/fsfix.h"
#include "reflinkfs/fs.h"

#define BS RFS_BLOCK_SIZE
#define NB 512u       /* blocks of the file */
#define WRITES 40000u /* by the writer */

static const struct rfs_ctx g_ctx = {.uid = 1000, .gid = 1000, .pid = 1};

static rfs_fs *g_fs;
static rfs_nodeid g_f;
/* The newest version of each block whose WRITE returned. */
static _Atomic uint32_t g_done[NB];
static _Atomic bool g_stop;
static unsigned g_pause_us; /* readers sleep up to twice this between READs */
static _Atomic unsigned g_bad; /* reader failures (reported by the main thread) */
static char g_why[256];

static void fill(uint8_t *p, uint32_t b, uint32_t v)
{
	memcpy(p, &b, 4);
	memcpy(p + 4, &v, 4);
	for (size_t i = 8; i < BS; i++)
		p[i] = (uint8_t)(b * 31u + v * 7u + i);
}

static uint64_t step(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

/* A writer: blocks b with b % nw == me, settling every so often or
 * never (the queue then fills and its batches are mapped a write at a
 * time, dm_pace, by both writers). */
struct wcfg {
	uint32_t me, nw;
	bool settle;
};
static _Atomic unsigned g_writers; /* still writing */

static void *writer(void *arg)
{
	const struct wcfg *c = arg;
	uint8_t blk[BS];
	uint64_t x = 0x9e3779b97f4a7c15ull + c->me;
	for (uint32_t v = 1; v <= WRITES / c->nw; v++) {
		uint32_t b = (uint32_t)(step(&x) % (NB / c->nw)) * c->nw + c->me;
		fill(blk, b, v);
		if (rfs_fs_write(g_fs, g_f, blk, BS, (uint64_t)b * BS) != BS) {
			snprintf(g_why, sizeof(g_why), "write of block %u version %u failed", b, v);
			atomic_fetch_add(&g_bad, 1);
			break;
		}
		atomic_store(&g_done[b], v);
		if (!c->settle)
			continue;
		if (v % 700 == 0)
			rfs_fs_settle(g_fs);
		else if (v % 1900 == 0)
			(void)rfs_fs_fsync(g_fs, g_f);
		else if (v % 4100 == 0)
			(void)rfs_fs_sync(g_fs);
	}
	if (atomic_fetch_sub(&g_writers, 1) == 1)
		atomic_store(&g_stop, true);
	return NULL;
}

static void *reader(void *arg)
{
	uint64_t x = 0x2545f4914f6cdd1dull + (uintptr_t)arg;
	enum { RUN = 4 };
	static _Thread_local uint8_t buf[RUN * BS];
	uint32_t low[RUN];
	while (!atomic_load(&g_stop) && !atomic_load(&g_bad)) {
		if (g_pause_us) {
			uint64_t us = step(&x) % (2 * g_pause_us);
			nanosleep(&(struct timespec){(time_t)(us / 1000000), (long)(us % 1000000) * 1000},
				  NULL);
		}
		uint32_t n = step(&x) % 2 ? 1 : RUN;
		uint32_t b0 = (uint32_t)(step(&x) % (NB - n + 1));
		for (uint32_t i = 0; i < n; i++)
			low[i] = atomic_load(&g_done[b0 + i]);
		ssize_t got = rfs_fs_read(g_fs, g_f, buf, (size_t)n * BS, (uint64_t)b0 * BS);
		if (got != (ssize_t)n * BS) {
			snprintf(g_why, sizeof(g_why), "READ of blocks %u+%u: %zd", b0, n, got);
			atomic_fetch_add(&g_bad, 1);
			break;
		}
		for (uint32_t i = 0; i < n; i++) {
			uint32_t b, v;
			memcpy(&b, buf + (size_t)i * BS, 4);
			memcpy(&v, buf + (size_t)i * BS + 4, 4);
			uint8_t want[BS];
			fill(want, b0 + i, v);
			if (b != b0 + i || v < low[i] || memcmp(want, buf + (size_t)i * BS, BS)) {
				snprintf(g_why, sizeof(g_why),
					 "block %u: read block %u version %u, at least version %u expected%s",
					 b0 + i, b, v, low[i],
					 b == b0 + i && v >= low[i] ? " (body torn)" : "");
				atomic_fetch_add(&g_bad, 1);
				break;
			}
		}
	}
	return NULL;
}

static void race(uint64_t pool, uint32_t nw, bool settle, unsigned pause_us)
{
	g_pause_us = pause_us;
	g_fs = fx_fresh(pool, 0);
	atomic_store(&g_stop, false);
	for (uint32_t b = 0; b < NB; b++)
		atomic_store(&g_done[b], 0);
	g_f = fx_create(g_fs, &g_ctx, RFS_ROOT_NODE, "f");
	/* Version 0 of every block, mapped and committed. */
	uint8_t *all = malloc((size_t)NB * BS);
	assert_non_null(all);
	for (uint32_t b = 0; b < NB; b++)
		fill(all + (size_t)b * BS, b, 0);
	assert_int_equal(rfs_fs_write(g_fs, g_f, all, (size_t)NB * BS, 0), (ssize_t)NB * BS);
	free(all);
	assert_int_equal(rfs_fs_sync(g_fs), 0);
	pthread_t w[2], r[2];
	struct wcfg cfg[2] = {{0, nw, settle}, {1, nw, settle}};
	atomic_store(&g_writers, nw);
	for (uint32_t i = 0; i < nw; i++)
		assert_int_equal(pthread_create(&w[i], NULL, writer, &cfg[i]), 0);
	for (uintptr_t i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&r[i], NULL, reader, (void *)i), 0);
	for (uint32_t i = 0; i < nw; i++)
		pthread_join(w[i], NULL);
	for (int i = 0; i < 2; i++)
		pthread_join(r[i], NULL);
	if (atomic_load(&g_bad))
		fail_msg("%s", g_why);
	/* Afterwards, mapped or not: every block's last version. */
	uint8_t blk[BS], want[BS];
	for (uint32_t b = 0; b < NB; b++) {
		assert_int_equal(rfs_fs_read(g_fs, g_f, blk, BS, (uint64_t)b * BS), BS);
		fill(want, b, atomic_load(&g_done[b]));
		assert_memory_equal(blk, want, BS);
	}
	assert_int_equal(rfs_fs_close(g_fs), 0);
	assert_int_equal(fx_fsck(), 0);
}

/* One writer that maps, fsyncs and commits every so often, on a pool
 * too small to queue a full batch. */
static void test_read_while_mapping(void **state)
{
	(void)state;
	race(1ull << 30, 1, true, 0);
}

/* Two writers that never settle, on a pool with room for full batches
 * (sparse): batches mapped an operation per write, by either writer,
 * with blocks written many times in each batch and again in the queue
 * behind it. */
static void test_read_while_paced(void **state)
{
	(void)state;
	race(8ull << 30, 2, false, 0);
}

/* As test_read_while_mapping, READs now and then: the writer's settles
 * take batches with no READ since, and the index goes off and on. */
static void test_read_now_and_then(void **state)
{
	(void)state;
	race(1ull << 30, 1, true, 3000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_read_while_mapping, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_read_while_paced, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_read_now_and_then, fx_setup, fx_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
