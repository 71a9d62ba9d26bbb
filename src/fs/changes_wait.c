/*
 * Followers of the change journal waiting in the daemon
 * (RFS_IOC_CHANGES with RFS_IOC_CHANGES_WAIT, rfs_changes_follow): a
 * count of journal appends they sleep on, and the commit a waiting
 * follower asks for, at most one every RFS_CHANGES_COMMIT_GAP_MS.
 * docs/ARCHITECTURE.md, "Change journal" ("Delivered means committed").
 */
#include "fs/fs_internal.h"
#include "reflinkfs/journal.h"

#include <errno.h>
#include <time.h>

static int64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t rfs_fs_changes_clock_ns(void)
{
	return mono_ns();
}

void changes_wait_init(rfs_fs *fs)
{
	pthread_condattr_t a;
	pthread_condattr_init(&a);
	pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
	pthread_cond_init(&fs->cw_cond, &a);
	pthread_condattr_destroy(&a);
	pthread_mutex_init(&fs->cw_lock, NULL);
}

void changes_wait_fini(rfs_fs *fs)
{
	pthread_cond_destroy(&fs->cw_cond);
	pthread_mutex_destroy(&fs->cw_lock);
}

/* The waiter counts itself before it reads cw_events, the notifier
 * bumps cw_events before it reads cw_waiters (both sequentially
 * consistent): one of them sees the other, so no wake-up is lost, and
 * an append with nobody waiting takes no lock. */
void changes_notify(rfs_fs *fs)
{
	atomic_fetch_add(&fs->cw_events, 1);
	if (atomic_load(&fs->cw_waiters))
		rfs_fs_changes_wake(fs);
}

uint64_t rfs_fs_changes_events(rfs_fs *fs)
{
	/* Counting the answered writes still queued (file_delay.c). */
	dm_settle(fs, NULL);
	return atomic_load(&fs->cw_events);
}

void rfs_fs_changes_wake(rfs_fs *fs)
{
	pthread_mutex_lock(&fs->cw_lock);
	pthread_cond_broadcast(&fs->cw_cond);
	pthread_mutex_unlock(&fs->cw_lock);
}

int rfs_fs_changes_wait(rfs_fs *fs, uint64_t seen, int64_t deadline_ns,
			bool (*stopped)(void *arg), void *arg)
{
	pthread_mutex_lock(&fs->cw_lock);
	if (atomic_load(&fs->cw_waiters) >= RFS_CHANGES_WAITERS_MAX) {
		pthread_mutex_unlock(&fs->cw_lock);
		return -EBUSY;
	}
	atomic_fetch_add(&fs->cw_waiters, 1);
	pthread_mutex_unlock(&fs->cw_lock);
	/* Writes queued before it are journaled now; no write is queued
	 * while a follower waits (file_delay.c), so none waits with it.
	 * Unconditional: dm_lock orders this against dm_queue's check. */
	dm_settle_slow(fs, NULL);
	/* Up to the caller's deadline, for a change some other request
	 * makes: let the caller stand a thread in for this one. */
	fs_wait_begin(fs);
	pthread_mutex_lock(&fs->cw_lock);
	struct timespec ts = {(time_t)(deadline_ns / 1000000000), (long)(deadline_ns % 1000000000)};
	int ret;
	for (;;) {
		if (atomic_load(&fs->cw_events) != seen) {
			ret = 0;
			break;
		}
		if (stopped && stopped(arg)) {
			ret = -EINTR;
			break;
		}
		/* The daemon stops (rfs_fs_release_waits): as at the deadline. */
		if (fs_waits_released(fs)) {
			ret = -ETIMEDOUT;
			break;
		}
		if (pthread_cond_timedwait(&fs->cw_cond, &fs->cw_lock, &ts) == ETIMEDOUT) {
			ret = atomic_load(&fs->cw_events) != seen ? 0 : -ETIMEDOUT;
			break;
		}
	}
	atomic_fetch_sub(&fs->cw_waiters, 1);
	pthread_mutex_unlock(&fs->cw_lock);
	fs_wait_end(fs);
	return ret;
}

int rfs_fs_changes_commit(rfs_fs *fs, rfs_nodeid dir)
{
	/* Only for changes the follower waits for: a busy writer elsewhere
	 * keeps its commit interval. */
	if (!rfs_fs_changes_pending_below(fs, dir))
		return 0;
	/* Many followers, or one and a busy writer: commits no closer than
	 * the gap, each taking whatever waits. */
	pthread_mutex_lock(&fs->cw_lock);
	int64_t wait = fs->cw_last_commit_ns + RFS_CHANGES_COMMIT_GAP_MS * 1000000ll - mono_ns();
	pthread_mutex_unlock(&fs->cw_lock);
	if (wait > 0) {
		struct timespec ts = {0, (long)wait};
		nanosleep(&ts, NULL);
		if (!rfs_fs_changes_pending_below(fs, dir))
			return 0; /* another commit took them */
	}
	int ret = rfs_fs_sync(fs);
	pthread_mutex_lock(&fs->cw_lock);
	fs->cw_last_commit_ns = mono_ns();
	pthread_mutex_unlock(&fs->cw_lock);
	return ret;
}
