/*
 * Statistics counters sharded by CPU.
 *
 * A counter that every request adds to (requests per opcode, READs
 * answered from the copies) was one 64-bit atomic that the workers on
 * both cores wrote in turn: each addition found the cache line on the
 * other core and waited for it (~80 ns in a PVM guest: the lock add on
 * reqstats' g_count took 90 % of that function's samples during fio
 * randread; docs/ARCHITECTURE.md, "FUSE workers").  Here each CPU adds
 * to a shard of its own, in a cache line of its own, so an addition is
 * a relaxed atomic add on a line this core already holds; a reader sums
 * the shards.  The shard is the CPU the thread runs on (sched_getcpu:
 * glibc reads it from the rseq area, ~2 ns); a thread moved to another
 * CPU between the look-up and the add only adds to a shard shared with
 * that CPU, still atomically, so no addition is ever lost.
 *
 * No lock: each shard's value is atomic on its own; a sum taken while
 * others add may miss the additions running meanwhile (as reading one
 * atomic counter would).
 */
#ifndef RFS_UTIL_PCOUNT_H
#define RFS_UTIL_PCOUNT_H

#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>

/* Shards: CPUs beyond this share them (cpu % RFS_PCOUNT_SHARDS). */
#define RFS_PCOUNT_SHARDS 16
#define RFS_CACHE_LINE 64

struct rfs_pcount {
	struct {
		_Alignas(RFS_CACHE_LINE) _Atomic uint64_t v;
	} s[RFS_PCOUNT_SHARDS];
};

/* The shard of the CPU this thread runs on (0 if it cannot be told). */
static inline unsigned rfs_pcount_shard(void)
{
	int cpu = sched_getcpu();
	return cpu < 0 ? 0 : (unsigned)cpu % RFS_PCOUNT_SHARDS;
}

/* Add n to c (relaxed: a statistic orders nothing). */
static inline void rfs_pcount_add(struct rfs_pcount *c, uint64_t n)
{
	atomic_fetch_add_explicit(&c->s[rfs_pcount_shard()].v, n, memory_order_relaxed);
}

/* The sum of c's shards. */
static inline uint64_t rfs_pcount_get(const struct rfs_pcount *c)
{
	uint64_t sum = 0;
	for (unsigned i = 0; i < RFS_PCOUNT_SHARDS; i++)
		sum += atomic_load_explicit(&c->s[i].v, memory_order_relaxed);
	return sum;
}

/* Set c to 0 (shards added to meanwhile may keep those additions). */
static inline void rfs_pcount_reset(struct rfs_pcount *c)
{
	for (unsigned i = 0; i < RFS_PCOUNT_SHARDS; i++)
		atomic_store_explicit(&c->s[i].v, 0, memory_order_relaxed);
}

#endif
