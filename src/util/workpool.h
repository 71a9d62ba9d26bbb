/*
 * A pool of worker threads that all wait for jobs from one source (the
 * FUSE device: src/fuse/workers.c), with compensation for blocking waits.
 *
 * `standing` workers run from start to end, each in a loop of receive
 * (wait for the next job; the source decides who gets it) and process.
 * A job that must sleep for something other than CPU or I/O -- a
 * subscriber's answer, another job served by another worker -- says so
 * (rfs_workpool_begin_blocking / _end_blocking, on the worker's own
 * thread).  When that leaves fewer than `standing` workers that are not
 * blocked, the pool starts a temporary worker at once, so that the jobs
 * the blocked one waits for (and every other job) are still received.
 * A worker that finishes a job while more than `standing` workers are
 * not blocked ends (it is surplus), so the pool shrinks back as soon as
 * the blocked jobs are over; temporaries never start for plain load.
 * At most `max_temp` temporaries run at once; reaching the cap is logged.
 */
#ifndef RFS_UTIL_WORKPOOL_H
#define RFS_UTIL_WORKPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rfs_workpool_cfg {
	unsigned standing; /* workers kept from start to end, at least 1 */
	unsigned max_temp; /* temporaries at once, at most */
	/* Per-worker state (a receive buffer): slot_size bytes, zeroed at the
	 * worker's start, handed to slot_free at its end. */
	size_t slot_size;
	/* Wait for the next job into slot: 1 a job, 0 the source has ended
	 * (the pool ends), -EINTR or -EAGAIN nothing (receive again),
	 * -ENOMEM no memory to receive into (this worker backs off, 1 ms
	 * doubling up to RFS_WORKPOOL_NOMEM_MAX_MS, and receives again; the
	 * others go on; logged once, again only after a worker that backed
	 * off received a job), any other
	 * negative errno a failure (the pool ends with it).  The only
	 * place a worker may be cancelled (rfs_workpool_destroy): it runs
	 * with cancellation enabled, everything else with it disabled. */
	int (*receive)(void *arg, void *slot);
	/* Serve the job received into slot. */
	void (*process)(void *arg, void *slot);
	/* Free what slot holds (not slot itself); may be NULL. */
	void (*slot_free)(void *arg, void *slot);
	/* Whether the source has ended by other means (a signal handler):
	 * checked by rfs_workpool_wait when a signal wakes it.  May be NULL. */
	bool (*ended)(void *arg);
	void *arg;
	const char *name; /* for log lines */
	/* The workers' thread name (ps -L, top -H, perf), at most 15
	 * characters; NULL leaves the name the process's. */
	const char *thread_name;
};

/* The longest back-off of a worker whose receive found no memory. */
#define RFS_WORKPOOL_NOMEM_MAX_MS 1000u

struct rfs_workpool;

/* Start cfg->standing workers (cfg is copied).  0, or a negative errno
 * with nothing started. */
int rfs_workpool_start(const struct rfs_workpool_cfg *cfg, struct rfs_workpool **out);

/* Sleep until the pool has ended: a receive gave 0 or a failure, or
 * cfg->ended holds (checked whenever a signal interrupts the wait).
 * Returns 0 or the failure's negative errno. */
int rfs_workpool_wait(struct rfs_workpool *p);

/* Stop: while any worker is in a blocking wait (begin_blocking to
 * end_blocking) the workers go on receiving and serving jobs, a
 * stand-in starting as before when none is left to receive -- the wait
 * may be for a job only another worker can receive.  Once no wait is
 * left, cancel the workers waiting in receive; wait for every worker to
 * end (one in the middle of a job finishes it first) and free the pool.
 * Callers end the waits they can (rfs_fs_release_waits) before. */
void rfs_workpool_destroy(struct rfs_workpool *p);

/* The calling thread is about to sleep for something other than CPU or
 * I/O, and end_blocking when it is back.  They nest (only the outermost
 * pair counts) and do nothing on a thread that is not a pool worker. */
void rfs_workpool_begin_blocking(void);
void rfs_workpool_end_blocking(void);

struct rfs_workpool_stats {
	unsigned workers;    /* running now, temporaries included */
	unsigned blocked;    /* of them, between begin and end blocking */
	unsigned peak;       /* most workers at once so far */
	uint64_t temps;      /* temporaries started so far */
	uint64_t cap_hits;   /* blocking waits that found max_temp reached */
	bool stopping;       /* rfs_workpool_destroy has begun */
	uint64_t nomem;      /* receives that found no memory (-ENOMEM) */
};
void rfs_workpool_stats(struct rfs_workpool *p, struct rfs_workpool_stats *st);

#endif
