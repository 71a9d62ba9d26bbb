/*
 * Lock-wait accounting, to show what a reader waits for independently of
 * the machine's load (bench/README.md, "Reader wait during a clone"):
 *
 * - each thread sums the time it spent blocked acquiring the pool's
 *   locks, per kind (enum rfs_lockw_kind); a lock taken without
 *   contention costs one try-lock and no clock read;
 * - the pool keeps its longest write-lock spans per holder's name (the
 *   operation's name, "commit", ...): two clock reads per span.
 */
#include "pool/pool_internal.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

/* The calling thread's waits since its last rfs_pool_lockw_take. */
static _Thread_local uint64_t t_wait[RFS_LOCKW_KINDS];
/* The name the calling thread's next write-lock spans are counted under. */
static _Thread_local const char *t_label;

uint64_t rfs_pool_lockw_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void rfs_pool_lockw_add(unsigned kind, uint64_t ns)
{
	if (kind < RFS_LOCKW_KINDS)
		t_wait[kind] += ns;
}

void rfs_lockw_mutex(pthread_mutex_t *m, unsigned kind)
{
	if (pthread_mutex_trylock(m) == 0)
		return;
	uint64_t t0 = rfs_pool_lockw_now();
	pthread_mutex_lock(m);
	t_wait[kind] += rfs_pool_lockw_now() - t0;
}

void rfs_pool_lockw_take(uint64_t ns[RFS_LOCKW_KINDS])
{
	memcpy(ns, t_wait, sizeof(t_wait));
	memset(t_wait, 0, sizeof(t_wait));
}

const char *rfs_pool_lock_label(const char *what)
{
	const char *prev = t_label;
	t_label = what;
	return prev;
}

void rfs_lockw_span_begin(rfs_pool *pool)
{
	pool->wr_since = rfs_pool_lockw_now();
}

void rfs_lockw_span_end(rfs_pool *pool)
{
	uint64_t d = rfs_pool_lockw_now() - pool->wr_since;
	const char *what = t_label ? t_label : "other";
	struct rfs_wrhold *h = NULL;
	/* The last slot takes every name that finds no slot of its own. */
	for (unsigned i = 0; i < RFS_WRHOLD_SLOTS && !h; i++)
		if (i == RFS_WRHOLD_SLOTS - 1 || !pool->wrhold[i].what[0] ||
		    !strncmp(pool->wrhold[i].what, what, sizeof(pool->wrhold[i].what) - 1))
			h = &pool->wrhold[i];
	if (!h->what[0])
		snprintf(h->what, sizeof(h->what), "%s",
			 h == &pool->wrhold[RFS_WRHOLD_SLOTS - 1] ? "(others)" : what);
	h->count++;
	h->total_ns += d;
	if (d > h->max_ns)
		h->max_ns = d;
	if (d > 1000000)
		h->over_1ms++;
}

void rfs_pool_wrhold_stats(rfs_pool *pool, struct rfs_wrhold out[RFS_WRHOLD_SLOTS],
			   bool reset)
{
	const char *prev = rfs_pool_lock_label("lock stats");
	rfs_pool_wrlock(pool);
	memcpy(out, pool->wrhold, sizeof(pool->wrhold));
	if (reset)
		memset(pool->wrhold, 0, sizeof(pool->wrhold));
	rfs_pool_unlock(pool);
	rfs_pool_lock_label(prev);
}
