/*
 * Per-opcode count of the FUSE requests this daemon received, and the
 * time it spent on them, for the benchmarks (how many requests a warm
 * `find` still costs, which requests a `cp -a` spends its time on) and
 * for diagnosis.  Counted where every request is read and every reply
 * written (tmpfile.c's hooks), with relaxed atomic additions to
 * counters sharded by CPU (util/pcount.h): no lock, and no cache line
 * that the workers on both cores write in turn.  Read with
 * RFS_IOC_REQ_STATS and RFS_IOC_REQ_TIMES.
 */
#include "fuse/rfs_fuse.h"

#include "util/pcount.h"

#include <linux/fuse.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

/* No lock: each counter is atomic on its own; a reader may see a
 * snapshot in which counters were taken a few requests apart. */
static struct rfs_pcount g_count[RFS_REQ_OPCODES];
static struct rfs_pcount g_ns[RFS_REQ_OPCODES];
/* The worker that read the last request (its t_unique's address: one
 * per thread), and the switches from one worker to another.  Written
 * only on a switch: a worker that reads request after request finds
 * the line unchanged and keeps it shared.  Two workers switching at
 * once may both count the switch (a load and a store, not an
 * exchange): a statistic. */
static _Atomic(const void *) g_last_worker;
static struct rfs_pcount g_switches;

/* The request this thread read last and is handling (libfuse 3.14
 * handles a request on the thread that read it): its id, slot and when
 * the read returned.  t_unique is 0 once its reply was timed. */
static _Thread_local uint64_t t_unique;
static _Thread_local uint32_t t_slot;
static _Thread_local uint64_t t_start;

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void rfs_fuse_reqstats_count(uint32_t opcode, uint64_t unique)
{
	if (opcode >= RFS_REQ_OPCODES)
		opcode = RFS_REQ_OPCODES - 1;
	rfs_pcount_add(&g_count[opcode], 1);
	if (atomic_load_explicit(&g_last_worker, memory_order_relaxed) != &t_unique) {
		atomic_store_explicit(&g_last_worker, (const void *)&t_unique,
				      memory_order_relaxed);
		rfs_pcount_add(&g_switches, 1);
	}
	t_unique = unique;
	t_slot = opcode;
	t_start = now_ns();
}

void rfs_fuse_reqstats_reply(const struct iovec *iov, int count)
{
	if (count < 1 || iov[0].iov_len < sizeof(struct fuse_out_header) || !t_unique)
		return;
	const struct fuse_out_header *out = iov[0].iov_base;
	if (out->unique != t_unique)
		return;
	rfs_pcount_add(&g_ns[t_slot], now_ns() - t_start);
	t_unique = 0;
}

void rfs_fuse_reqstats_get(struct rfs_ioc_req_stats *out)
{
	memset(out, 0, sizeof(*out));
	for (unsigned i = 0; i < RFS_REQ_OPCODES; i++)
		out->count[i] = rfs_pcount_get(&g_count[i]);
}

void rfs_fuse_reqstats_times(struct rfs_ioc_req_times *out)
{
	memset(out, 0, sizeof(*out));
	for (unsigned i = 0; i < RFS_REQ_OPCODES; i++)
		out->ns[i] = rfs_pcount_get(&g_ns[i]);
	out->switches = rfs_pcount_get(&g_switches);
}
