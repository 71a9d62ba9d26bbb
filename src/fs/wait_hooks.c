/*
 * Wait hooks (include/reflinkfs/fs.h, rfs_fs_set_wait_hooks): the fs
 * tells its caller that a thread is about to sleep for somebody else
 * (a watch's subscriber, a change to follow), so that a caller serving
 * requests with a fixed set of threads can stand another one in.  The
 * fs knows nothing of those threads: data flows fuse -> fs only.
 */
#include "fs/fs_internal.h"
#include "reflinkfs/journal.h"

void rfs_fs_set_wait_hooks(rfs_fs *fs, void (*begin)(void *arg), void (*end)(void *arg),
			   void *arg)
{
	fs->wait_begin = begin;
	fs->wait_end = end;
	fs->wait_arg = arg;
}

void fs_wait_begin(rfs_fs *fs)
{
	if (fs->wait_begin)
		fs->wait_begin(fs->wait_arg);
}

void fs_wait_end(rfs_fs *fs)
{
	if (fs->wait_end)
		fs->wait_end(fs->wait_arg);
}

bool fs_waits_released(rfs_fs *fs)
{
	return atomic_load(&fs->waits_released);
}

void rfs_fs_release_waits(rfs_fs *fs)
{
	/* The flag first: a wait that begins after the wake-ups below sees
	 * it (each wait checks it under the lock its wake-up takes). */
	atomic_store(&fs->waits_released, true);
	watch_release_waiters(fs);
	rfs_fs_changes_wake(fs);
}
