/*
 * Unit tests of the counters sharded by CPU (src/util/pcount.h): no
 * addition is lost under concurrent adders, including a thread that
 * moves between CPUs; each CPU adds to its own cache line; reset.
 */
#include "../common/testutil.h"

#include <pthread.h>
#include <sched.h>
#include <stddef.h>

#include "util/pcount.h"

#define ADDS 100000

static struct rfs_pcount g_c;

static int ncpus(void)
{
	cpu_set_t set;
	if (sched_getaffinity(0, sizeof(set), &set))
		return 1;
	return CPU_COUNT(&set);
}

/* The i-th CPU this process may run on. */
static int nth_cpu(int i)
{
	cpu_set_t set;
	if (sched_getaffinity(0, sizeof(set), &set))
		return 0;
	int n = CPU_COUNT(&set);
	i %= n;
	for (int c = 0; c < CPU_SETSIZE; c++)
		if (CPU_ISSET(c, &set) && i-- == 0)
			return c;
	return 0;
}

static void pin(int cpu)
{
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

/* Adds 1 ADDS times, pinned to CPU (arg) or, for -1, moving across
 * every CPU every 1,000 additions. */
static void *adder(void *arg)
{
	long cpu = (long)arg;
	if (cpu >= 0)
		pin((int)cpu);
	for (int i = 0; i < ADDS; i++) {
		if (cpu < 0 && i % 1000 == 0)
			pin(nth_cpu(i / 1000));
		rfs_pcount_add(&g_c, 1);
	}
	return NULL;
}

static void test_layout(void **state)
{
	(void)state;
	/* Each shard in a cache line of its own: two CPUs never write the
	 * same line. */
	assert_int_equal(sizeof(struct rfs_pcount), RFS_PCOUNT_SHARDS * RFS_CACHE_LINE);
	assert_int_equal(_Alignof(struct rfs_pcount), RFS_CACHE_LINE);
	assert_true(rfs_pcount_shard() < RFS_PCOUNT_SHARDS);
}

static void test_concurrent_adds(void **state)
{
	(void)state;
	rfs_pcount_reset(&g_c);
	int n = ncpus() * 2;
	pthread_t th[2 * CPU_SETSIZE];
	for (int i = 0; i < n; i++)
		assert_int_equal(pthread_create(&th[i], NULL, adder,
						 (void *)(long)(i == n - 1 ? -1 : nth_cpu(i))),
				 0);
	for (int i = 0; i < n; i++)
		pthread_join(th[i], NULL);
	assert_int_equal(rfs_pcount_get(&g_c), (uint64_t)n * ADDS);
	rfs_pcount_reset(&g_c);
	assert_int_equal(rfs_pcount_get(&g_c), 0);
}

/* A thread on one CPU adds to that CPU's shard, not to another's. */
static void test_shard_per_cpu(void **state)
{
	(void)state;
	if (ncpus() < 2)
		skip();
	int a = nth_cpu(0), b = nth_cpu(1);
	rfs_pcount_reset(&g_c);
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, adder, (void *)(long)a), 0);
	pthread_join(th, NULL);
	assert_int_equal(pthread_create(&th, NULL, adder, (void *)(long)b), 0);
	pthread_join(th, NULL);
	unsigned sa = (unsigned)a % RFS_PCOUNT_SHARDS, sb = (unsigned)b % RFS_PCOUNT_SHARDS;
	assert_int_not_equal(sa, sb);
	assert_int_equal(atomic_load(&g_c.s[sa].v), ADDS);
	assert_int_equal(atomic_load(&g_c.s[sb].v), ADDS);
	assert_int_equal(rfs_pcount_get(&g_c), 2 * ADDS);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_layout),
		cmocka_unit_test(test_concurrent_adds),
		cmocka_unit_test(test_shard_per_cpu),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
