/*
 * Lock-wait accounting (pool.h, "Lock waits"; issue 9): a reader that
 * blocks on the pool's lock while a writer holds it gets that time in its
 * thread's sums, an uncontended one gets none, and the writer's span is
 * recorded under the name it set.  The order is arranged, not timed: the
 * writer lets go only once the reader thread sleeps (its state in
 * /proc), which it can only do inside the read lock's wait.
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
#include <sys/syscall.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/fsfix.h"
#include "reflinkfs/pool.h"

struct rd {
	rfs_pool *pool;
	atomic_int tid;       /* the reader's thread id, once it is about to lock */
	uint64_t waits[RFS_LOCKW_KINDS];
};

static void *reader(void *arg)
{
	struct rd *r = arg;
	uint64_t drop[RFS_LOCKW_KINDS];
	rfs_pool_lockw_take(drop);
	atomic_store(&r->tid, (int)syscall(SYS_gettid));
	rfs_pool_rdlock(r->pool);
	rfs_pool_unlock(r->pool);
	rfs_pool_lockw_take(r->waits);
	return NULL;
}

/* Is thread tid asleep ('S' in its /proc stat)?  Polled, 60 s at most:
 * a reader that never blocks fails the test instead of hanging it. */
static bool wait_asleep(int tid)
{
	char path[64], buf[256];
	snprintf(path, sizeof(path), "/proc/self/task/%d/stat", tid);
	for (int i = 0; i < 600000; i++) {
		FILE *f = fopen(path, "r");
		if (f) {
			size_t n = fread(buf, 1, sizeof(buf) - 1, f);
			fclose(f);
			buf[n] = '\0';
			const char *p = strrchr(buf, ')');
			if (p && p[1] == ' ' && p[2] == 'S')
				return true;
		}
		usleep(100);
	}
	return false;
}

static const struct rfs_wrhold *find(const struct rfs_wrhold *h, const char *what)
{
	for (unsigned i = 0; i < RFS_WRHOLD_SLOTS; i++)
		if (!strcmp(h[i].what, what))
			return &h[i];
	return NULL;
}

static void test_reader_wait_counted(void **state)
{
	(void)state;
	rfs_pool *pool;
	struct rfs_wrhold h[RFS_WRHOLD_SLOTS];
	assert_int_equal(rfs_pool_create(g_pool, 64ull << 20, 0), 0);
	assert_int_equal(rfs_pool_open(g_pool, 0, &pool), 0);
	rfs_pool_wrhold_stats(pool, h, true);

	/* Uncontended: nothing is counted. */
	uint64_t w[RFS_LOCKW_KINDS];
	rfs_pool_lockw_take(w);
	rfs_pool_rdlock(pool);
	rfs_pool_unlock(pool);
	rfs_pool_lockw_take(w);
	assert_int_equal(w[RFS_LOCKW_POOL], 0);

	/* A reader blocked by a writer: its wait is counted. */
	struct rd r = {.pool = pool};
	pthread_t t;
	const char *prev = rfs_pool_lock_label("test writer");
	rfs_pool_wrlock(pool);
	assert_int_equal(pthread_create(&t, NULL, reader, &r), 0);
	while (!atomic_load(&r.tid))
		usleep(100);
	bool asleep = wait_asleep(atomic_load(&r.tid));
	rfs_pool_unlock(pool);
	rfs_pool_lock_label(prev);
	pthread_join(t, NULL);
	assert_true(asleep);
	assert_true(r.waits[RFS_LOCKW_POOL] > 0);

	/* The writer's span is recorded under its name. */
	rfs_pool_wrhold_stats(pool, h, true);
	const struct rfs_wrhold *x = find(h, "test writer");
	assert_non_null(x);
	assert_int_equal(x->count, 1);
	assert_true(x->max_ns > 0 && x->total_ns == x->max_ns);
	/* Reset: the next read-out holds only its own span. */
	rfs_pool_wrhold_stats(pool, h, false);
	assert_null(find(h, "test writer"));

	rfs_pool_close(pool);
	unlink(g_pool);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reader_wait_counted),
	};
	return cmocka_run_group_tests(tests, fx_setup, fx_teardown);
}
