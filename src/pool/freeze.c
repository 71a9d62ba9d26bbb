/*
 * Freezing a pool at runtime: the mount above it was remounted read-only
 * (see rfs_pool_set_frozen in include/reflinkfs/pool.h).
 */
#include "pool/pool_internal.h"

#include <errno.h>
#include <fcntl.h>

int rfs_pool_set_frozen(rfs_pool *pool, bool frozen)
{
	int ret = 0;
	rfs_pool_wrlock(pool);
	if (frozen && !pool->rdonly) {
		/* Commit under the same lock: nothing can change between the
		 * last commit and the freeze. */
		ret = pool->failed ? 0 : rfs_pool_commit_locked(pool);
		pool->rdonly = true;
	} else if (!frozen && pool->rdonly) {
		/* Only a pool opened for writing, and not failed, can thaw. */
		int fl = pool->io.fd >= 0 ? fcntl(pool->io.fd, F_GETFL) : -1;
		if (pool->failed || fl < 0 || (fl & O_ACCMODE) != O_RDWR)
			ret = -EROFS;
		else
			pool->rdonly = false;
	}
	rfs_pool_unlock(pool);
	return ret;
}
