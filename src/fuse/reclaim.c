/*
 * The mount's background release of deleted files: a thread that works
 * through the pool's drop queue (rfs_fs_reclaim) in steps of
 * RFS_RECLAIM_STEP, each an fs operation of its own, so requests run in
 * between and the write lock is never held for longer than one step.  It
 * looks for work every RECLAIM_IDLE_MS when the queue is empty (under the
 * read lock only); the background commit makes the freed blocks reusable
 * as usual.  What is left at unmount stays queued on disk.
 */
#include "fuse/rfs_fuse.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "reflinkfs/log.h"

/* A deletion that queues a tree wakes the thread at once; the timeout
 * only catches what an earlier mount left. */
#define RECLAIM_IDLE_MS 1000

struct rfs_reclaimer {
	rfs_fs *fs;
	pthread_t th;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stop; /* lock */
	bool work; /* lock: a deletion queued a tree since the last look */
};

/* The fs's queued hook: wake the thread (called under the pool write
 * lock; takes only r->lock, which is never held around pool locks). */
static void wake(void *arg)
{
	struct rfs_reclaimer *r = arg;
	pthread_mutex_lock(&r->lock);
	r->work = true;
	pthread_cond_signal(&r->cond);
	pthread_mutex_unlock(&r->lock);
}

/* Wait ms milliseconds or until stopped; true when stopped. */
static bool nap(struct rfs_reclaimer *r, long ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&r->lock);
	if (!r->stop && !r->work)
		pthread_cond_timedwait(&r->cond, &r->lock, &ts);
	r->work = false;
	bool stop = r->stop;
	pthread_mutex_unlock(&r->lock);
	return stop;
}

static void *reclaim_thread(void *arg)
{
	struct rfs_reclaimer *r = arg;
	pthread_setname_np(pthread_self(), "rfs-reclaim");
	for (;;) {
		pthread_mutex_lock(&r->lock);
		bool stop = r->stop;
		pthread_mutex_unlock(&r->lock);
		if (stop)
			break;
		int64_t left = rfs_fs_reclaim(r->fs, RFS_RECLAIM_STEP);
		if (left == -EROFS) {
			/* Read-only for now (remount,ro freezes the pool, and
			 * remount,rw thaws it): look again later.  A pool that
			 * failed stays read-only; a try a second costs nothing. */
			if (nap(r, RECLAIM_IDLE_MS))
				break;
			continue;
		}
		if (left < 0) {
			/* rfs_fs_reclaim logged why (an unreadable block, a
			 * read-only pool): retrying would fail the same way. */
			rfs_log(RFS_LOG_ERR, "background release of deleted files stopped until the next mount");
			break;
		}
		if (left > 0)
			sched_yield(); /* let waiting requests take the lock */
		else if (nap(r, RECLAIM_IDLE_MS))
			break;
	}
	return NULL;
}

int rfs_reclaimer_start(rfs_fs *fs, struct rfs_reclaimer **out)
{
	struct rfs_reclaimer *r = calloc(1, sizeof(*r));
	*out = NULL;
	if (!r)
		return -ENOMEM;
	r->fs = fs;
	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->cond, NULL);
	rfs_fs_set_queued_hook(fs, wake, r);
	int ret = pthread_create(&r->th, NULL, reclaim_thread, r);
	if (ret) {
		rfs_fs_set_queued_hook(fs, NULL, NULL);
		pthread_cond_destroy(&r->cond);
		pthread_mutex_destroy(&r->lock);
		free(r);
		return -ret;
	}
	*out = r;
	return 0;
}

void rfs_reclaimer_stop(struct rfs_reclaimer *r)
{
	if (!r)
		return;
	pthread_mutex_lock(&r->lock);
	r->stop = true;
	pthread_cond_signal(&r->cond);
	pthread_mutex_unlock(&r->lock);
	pthread_join(r->th, NULL);
	rfs_fs_set_queued_hook(r->fs, NULL, NULL);
	pthread_cond_destroy(&r->cond);
	pthread_mutex_destroy(&r->lock);
	free(r);
}
