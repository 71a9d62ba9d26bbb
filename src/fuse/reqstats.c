/*
 * Per-opcode count of the FUSE requests this daemon received, for the
 * benchmarks (how many requests a warm `find` still costs) and for
 * diagnosis.  Counted where every request is read (tmpfile.c's read hook),
 * with relaxed atomic increments: one uncontended cache line per opcode
 * family, no lock.  Read with RFS_IOC_REQ_STATS.
 */
#include "fuse/rfs_fuse.h"

#include <stdatomic.h>
#include <string.h>

/* No lock: each counter is atomic on its own; a reader may see a
 * snapshot in which counters were taken a few requests apart. */
static _Atomic uint64_t g_count[RFS_REQ_OPCODES];

void rfs_fuse_reqstats_count(uint32_t opcode)
{
	if (opcode >= RFS_REQ_OPCODES)
		opcode = RFS_REQ_OPCODES - 1;
	atomic_fetch_add_explicit(&g_count[opcode], 1, memory_order_relaxed);
}

void rfs_fuse_reqstats_get(struct rfs_ioc_req_stats *out)
{
	memset(out, 0, sizeof(*out));
	for (unsigned i = 0; i < RFS_REQ_OPCODES; i++)
		out->count[i] = atomic_load_explicit(&g_count[i], memory_order_relaxed);
}
