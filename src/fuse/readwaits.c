/*
 * What READ requests waited for inside the daemon (RFS_IOC_READ_WAITS),
 * while counting is on (off by default: then a READ costs one atomic
 * load here): per READ, its time from the handler's start to its reply
 * (sending excluded), its time on the CPU (the thread's CPU clock) and
 * the time it spent blocked on each kind of lock (the pool's per-thread
 * sums, pool.h "Lock waits").  For the clone reader-wait benchmark: a
 * READ that took long but waited for no lock was off the CPU --
 * preempted by other work on the machine, or waiting for the disk --
 * not held up by the filesystem's locks.
 *
 * Counters are relaxed atomics, maxima kept with compare-and-swap; the
 * breakdown of the longest READ is under g_max_lock, taken only when a
 * READ beats the maximum.
 */
#include "fuse/rfs_fuse.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#define NK RFS_LOCKW_KINDS

static atomic_bool g_on;
static _Atomic uint64_t g_reads, g_over_1ms, g_waited_1ms, g_offcpu_1ms;
static _Atomic uint64_t g_max_wait[NK], g_sum_wait[NK];
static pthread_mutex_t g_max_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic uint64_t g_max_ns;
static uint64_t g_max_cpu_ns;       /* g_max_lock */
static uint64_t g_max_read_wait[NK]; /* g_max_lock */

static uint64_t cpu_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void atomic_max(_Atomic uint64_t *a, uint64_t v)
{
	uint64_t cur = atomic_load_explicit(a, memory_order_relaxed);
	while (v > cur &&
	       !atomic_compare_exchange_weak_explicit(a, &cur, v, memory_order_relaxed,
						      memory_order_relaxed))
		;
}

void rfs_fuse_readwaits_start(uint64_t t[2])
{
	t[0] = 0;
	if (!atomic_load_explicit(&g_on, memory_order_relaxed))
		return;
	uint64_t drop[NK];
	rfs_pool_lockw_take(drop); /* waits of the thread's earlier requests */
	t[1] = cpu_now();
	t[0] = rfs_pool_lockw_now();
}

void rfs_fuse_readwaits_note(const uint64_t t[2])
{
	if (!t[0])
		return;
	uint64_t d = rfs_pool_lockw_now() - t[0], cpu = cpu_now() - t[1], w[NK], wsum = 0;
	rfs_pool_lockw_take(w);
	atomic_fetch_add_explicit(&g_reads, 1, memory_order_relaxed);
	for (unsigned k = 0; k < NK; k++) {
		wsum += w[k];
		if (w[k]) {
			atomic_fetch_add_explicit(&g_sum_wait[k], w[k], memory_order_relaxed);
			atomic_max(&g_max_wait[k], w[k]);
		}
	}
	if (d > 1000000)
		atomic_fetch_add_explicit(&g_over_1ms, 1, memory_order_relaxed);
	if (wsum > 1000000)
		atomic_fetch_add_explicit(&g_waited_1ms, 1, memory_order_relaxed);
	if (d > cpu + wsum + 1000000)
		atomic_fetch_add_explicit(&g_offcpu_1ms, 1, memory_order_relaxed);
	if (d > atomic_load_explicit(&g_max_ns, memory_order_relaxed)) {
		pthread_mutex_lock(&g_max_lock);
		if (d > atomic_load_explicit(&g_max_ns, memory_order_relaxed)) {
			atomic_store_explicit(&g_max_ns, d, memory_order_relaxed);
			g_max_cpu_ns = cpu;
			memcpy(g_max_read_wait, w, sizeof(w));
		}
		pthread_mutex_unlock(&g_max_lock);
	}
}

static void reset(void)
{
	/* READs running meanwhile may land on either side. */
	atomic_store_explicit(&g_reads, 0, memory_order_relaxed);
	atomic_store_explicit(&g_over_1ms, 0, memory_order_relaxed);
	atomic_store_explicit(&g_waited_1ms, 0, memory_order_relaxed);
	atomic_store_explicit(&g_offcpu_1ms, 0, memory_order_relaxed);
	for (unsigned k = 0; k < NK; k++) {
		atomic_store_explicit(&g_max_wait[k], 0, memory_order_relaxed);
		atomic_store_explicit(&g_sum_wait[k], 0, memory_order_relaxed);
	}
	atomic_store_explicit(&g_max_ns, 0, memory_order_relaxed);
	g_max_cpu_ns = 0;
	memset(g_max_read_wait, 0, sizeof(g_max_read_wait));
}

void rfs_fuse_readwaits_get(rfs_fs *fs, struct rfs_ioc_read_waits *out, uint32_t flags)
{
	memset(out, 0, sizeof(*out));
	out->reads = atomic_load_explicit(&g_reads, memory_order_relaxed);
	out->over_1ms = atomic_load_explicit(&g_over_1ms, memory_order_relaxed);
	out->waited_1ms = atomic_load_explicit(&g_waited_1ms, memory_order_relaxed);
	out->offcpu_1ms = atomic_load_explicit(&g_offcpu_1ms, memory_order_relaxed);
	for (unsigned k = 0; k < NK; k++) {
		out->max_wait_ns[k] = atomic_load_explicit(&g_max_wait[k], memory_order_relaxed);
		out->sum_wait_ns[k] = atomic_load_explicit(&g_sum_wait[k], memory_order_relaxed);
	}
	pthread_mutex_lock(&g_max_lock);
	out->max_ns = atomic_load_explicit(&g_max_ns, memory_order_relaxed);
	out->max_cpu_ns = g_max_cpu_ns;
	memcpy(out->max_read_wait_ns, g_max_read_wait, sizeof(g_max_read_wait));
	if (flags & RFS_READ_WAITS_RESET)
		reset();
	pthread_mutex_unlock(&g_max_lock);
	rfs_pool_wrhold_stats(rfs_fs_pool(fs), out->wr, flags & RFS_READ_WAITS_RESET);
	if (flags & RFS_READ_WAITS_ON)
		atomic_store(&g_on, true);
	if (flags & RFS_READ_WAITS_OFF)
		atomic_store(&g_on, false);
	out->on = atomic_load(&g_on);
}
