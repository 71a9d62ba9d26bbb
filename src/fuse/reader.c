/*
 * Which worker reads the next request from /dev/fuse.
 *
 * libfuse's workers all block in read(2) on /dev/fuse, and the kernel
 * hands a new request to the worker that has waited longest (its wait
 * queue is FIFO for exclusive waiters).  A process that sends one request
 * after the other (cp, find, tar) therefore has each request served by a
 * worker that slept through the previous one and must be woken, while the
 * worker that just replied, still running and cache-warm, goes to sleep.
 * Measured (docs/ARCHITECTURE.md, "Where the daemon's time goes for
 * `cp -a`"): with a single worker the daemon used ~30 % less CPU for
 * `cp -a` and the round trip of a GETXATTR dropped from 21-31 us to
 * 10-15 us.
 *
 * So at most one worker at a time is *the reader*, blocked in read(2);
 * the other idle workers wait here, the most recent first.  A worker that
 * got a quick metadata request, or a READ or WRITE of up to 128 KiB
 * while no other request is queued, gives the role up without waking
 * anybody: it comes back after replying and reads the next request
 * itself, which for a sequential client is then already there or about
 * to be.  For any other request (larger data, ioctls, fsync: anything
 * that may take long, or data requests arriving in parallel) it wakes
 * the most recent waiter to read in its place, so that such requests
 * still run in parallel.  A quick request that must wait for the pool's lock
 * hands the role on before it sleeps (rfs_fuse_reader_will_block, the
 * pool's wait hook), and a watchdog hands it on when it stayed free for
 * a whole tick (1 ms) while the same request ran: nothing the daemon
 * does while serving a request can keep the others from being read for
 * longer than that.
 *
 * r_lock protects every r_ and wd_ field.
 */
#include "fuse/rfs_fuse.h"

#include <errno.h>
#include <linux/fuse.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>

#include "reflinkfs/log.h"

#define WATCHDOG_TICK_NS 1000000L

struct waiter {
	pthread_cond_t cv;
	bool go; /* made the reader by whoever woke it */
	struct waiter *next;
};

static pthread_mutex_t r_lock = PTHREAD_MUTEX_INITIALIZER;
/* A worker is the reader (in read(2), or woken to become it). */
static bool r_taken;
/* Idle workers waiting for the role, most recent first. */
static struct waiter *r_top;
/* Counts the times the role was left free for a quick request: the
 * watchdog hands on when it did not move during a tick. */
static uint64_t r_vacated;
/* Requests read: the watchdog sleeps untimed while none come. */
static uint64_t r_reads;
static bool wd_running, wd_stop, wd_idle;
static pthread_cond_t wd_cv;
static pthread_t wd_thread;
/* This worker left the role free for its current request. */
static _Thread_local bool t_vacated;

/* Cancellation (fuse_loop_mt cancels its workers at unmount) while
 * waiting: unlink, and unlock the mutex pthread_cond_wait re-took. */
static void waiter_cancelled(void *arg)
{
	struct waiter *w = arg;
	for (struct waiter **p = &r_top; *p; p = &(*p)->next)
		if (*p == w) {
			*p = w->next;
			break;
		}
	pthread_mutex_unlock(&r_lock);
}

void rfs_fuse_reader_enter(void)
{
	t_vacated = false;
	pthread_mutex_lock(&r_lock);
	if (!r_taken) {
		r_taken = true;
		pthread_mutex_unlock(&r_lock);
		return;
	}
	struct waiter w = {.go = false, .next = r_top};
	pthread_cond_init(&w.cv, NULL);
	r_top = &w;
	pthread_cleanup_push(waiter_cancelled, &w);
	while (!w.go)
		pthread_cond_wait(&w.cv, &r_lock);
	pthread_cleanup_pop(0);
	pthread_mutex_unlock(&r_lock);
	pthread_cond_destroy(&w.cv);
}

/* Under r_lock, the role being free or the caller's: wake the most
 * recent waiter as the new reader, or leave the role free when nobody
 * waits (the next worker back takes it; libfuse starts a new worker when
 * all are busy). */
static void hand_on(void)
{
	struct waiter *w = r_top;
	if (w) {
		r_top = w->next;
		r_taken = true;
		w->go = true;
		pthread_cond_signal(&w->cv);
	} else {
		r_taken = false;
	}
}

/* Requests that do metadata work in memory and reply at once.  Those
 * that wait for the pool's lock hand on then; so does the watchdog. */
static bool quick(uint32_t opcode)
{
	switch (opcode) {
	case FUSE_LOOKUP: case FUSE_FORGET: case FUSE_BATCH_FORGET:
	case FUSE_GETATTR: case FUSE_SETATTR: case FUSE_READLINK:
	case FUSE_SYMLINK: case FUSE_MKNOD: case FUSE_MKDIR:
	case FUSE_UNLINK: case FUSE_RMDIR: case FUSE_RENAME: case FUSE_RENAME2:
	case FUSE_LINK: case FUSE_OPEN: case FUSE_RELEASE: case FUSE_FLUSH:
	case FUSE_STATFS: case FUSE_SETXATTR: case FUSE_GETXATTR:
	case FUSE_LISTXATTR: case FUSE_REMOVEXATTR: case FUSE_OPENDIR:
	case FUSE_READDIR: case FUSE_READDIRPLUS: case FUSE_RELEASEDIR:
	case FUSE_ACCESS: case FUSE_CREATE: case FUSE_INTERRUPT:
	case FUSE_COPY_FILE_RANGE: /* op_copy_file_range hands on for large files */
		return true;
	default:
		return false;
	}
}

/* A READ or WRITE of up to this many bytes is copied in memory in tens
 * of microseconds (page cache, block cache). */
#define SMALL_DATA_BYTES (128u << 10)

static bool small_data(const struct fuse_in_header *in, size_t n)
{
	/* fuse_read_in and fuse_write_in: fh, offset, then the size */
	size_t at = sizeof(*in) + 2 * sizeof(uint64_t);
	uint32_t size;
	if ((in->opcode != FUSE_READ && in->opcode != FUSE_WRITE) || n < at + sizeof(size))
		return false;
	memcpy(&size, (const char *)in + at, sizeof(size));
	return size <= SMALL_DATA_BYTES;
}

/* Another request is queued on /dev/fuse already. */
static bool pending(int fd)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	return poll(&p, 1, 0) != 0;
}

void rfs_fuse_reader_leave(int fd, ssize_t n, const void *buf)
{
	const struct fuse_in_header *in = buf;
	bool whole = n >= (ssize_t)sizeof(*in);
	/* A small READ or WRITE stays too, unless others wait already (a
	 * program with many in flight, fio, gets them read in parallel):
	 * for one sequential reader or writer a hand-on per request cost
	 * a second wake-up each (4 KiB O_DIRECT reads: 61-74 us against
	 * 34-78 us). */
	bool vacate = whole && (quick(in->opcode) || (small_data(in, (size_t)n) && !pending(fd)));
	pthread_mutex_lock(&r_lock);
	r_reads++;
	if (!wd_running) /* nothing would hand on a stuck request */
		vacate = false;
	if (vacate) {
		r_taken = false;
		r_vacated++;
		if (wd_idle) {
			wd_idle = false;
			pthread_cond_signal(&wd_cv);
		}
	} else {
		hand_on();
	}
	pthread_mutex_unlock(&r_lock);
	t_vacated = vacate;
}

void rfs_fuse_reader_will_block(void)
{
	if (!t_vacated)
		return;
	t_vacated = false;
	pthread_mutex_lock(&r_lock);
	if (!r_taken) /* else a worker that came back reads already */
		hand_on();
	pthread_mutex_unlock(&r_lock);
}

static void *watchdog(void *arg)
{
	(void)arg;
	uint64_t seen_vacated = 0, seen_reads = 0;
	pthread_mutex_lock(&r_lock);
	while (!wd_stop) {
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_nsec += WATCHDOG_TICK_NS;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&wd_cv, &r_lock, &ts);
		/* Free since the last tick, for the same request. */
		if (!r_taken && r_vacated == seen_vacated && r_top)
			hand_on();
		seen_vacated = r_vacated;
		if (r_reads == seen_reads && r_taken) {
			/* Nothing read for a tick and a reader in place:
			 * sleep until a request leaves the role free. */
			wd_idle = true;
			while (wd_idle && !wd_stop)
				pthread_cond_wait(&wd_cv, &r_lock);
			seen_vacated = r_vacated - 1; /* not a whole tick yet */
		}
		seen_reads = r_reads;
	}
	pthread_mutex_unlock(&r_lock);
	return NULL;
}

int rfs_fuse_reader_start(void)
{
	pthread_condattr_t a;
	pthread_condattr_init(&a);
	pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
	pthread_cond_init(&wd_cv, &a);
	pthread_condattr_destroy(&a);
	wd_stop = false;
	int ret = pthread_create(&wd_thread, NULL, watchdog, NULL);
	if (ret)
		return -ret;
	pthread_mutex_lock(&r_lock);
	wd_running = true;
	pthread_mutex_unlock(&r_lock);
	rfs_pool_set_wait_hook(rfs_fuse_reader_will_block);
	return 0;
}

void rfs_fuse_reader_stop(void)
{
	rfs_pool_set_wait_hook(NULL);
	if (!wd_running)
		return;
	pthread_mutex_lock(&r_lock);
	wd_stop = true;
	wd_running = false;
	/* A request left alone now: its worker reads next, or a waiter. */
	if (!r_taken)
		hand_on();
	pthread_cond_signal(&wd_cv);
	pthread_mutex_unlock(&r_lock);
	pthread_join(wd_thread, NULL);
	pthread_cond_destroy(&wd_cv);
}
