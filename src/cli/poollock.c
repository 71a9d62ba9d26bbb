/*
 * The pool's "in use" lock.  Whoever opens a pool (a mount's daemon, fsck,
 * mkfs) holds a flock on it: exclusive to change it, shared to read it.
 * A mount's daemon also holds an OFD read lock on the pool's first byte,
 * the daemon mark, for as long as it has the pool open.
 *
 * After `fusermount3 -u` or umount(8), which do not wait for the daemon,
 * the pool stays locked until the daemon has made its final commit: the
 * flock is held, the mark is held, and no mount of the pool is in the
 * mount table.  That state, and only that one, is waited for (bounded).
 */
#include "cli/cli.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "util/mountinfo.h"

/* How long to wait for the daemon of a mount that is gone. */
#define EXIT_WAIT_MS 10000
#define MARK_START 0

static struct flock mark_range(short type)
{
	struct flock fl;
	memset(&fl, 0, sizeof(fl)); /* l_pid must be 0 for OFD locks */
	fl.l_type = type;
	fl.l_whence = SEEK_SET;
	fl.l_start = MARK_START;
	fl.l_len = 1;
	return fl;
}

/* Does some open file of the pool carry the daemon mark? */
static bool daemon_marked(int fd)
{
	struct flock fl = mark_range(F_WRLCK);
	return !fcntl(fd, F_OFD_GETLK, &fl) && fl.l_type != F_UNLCK;
}

int cli_mark_daemon(int fd)
{
	struct flock fl = mark_range(F_RDLCK);
	return fcntl(fd, F_OFD_SETLK, &fl) ? -errno : 0;
}

static void in_use(const char *cmd, const char *pool)
{
	fprintf(stderr, "reflinkfs %s: %s is in use (mounted?); unmount it first with `reflinkfs umount MOUNTPOINT`\n",
		cmd, pool);
}

int cli_lock_pool(const char *pool, bool exclusive, const char *cmd)
{
	int fd = open(pool, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "reflinkfs %s: cannot open %s: %s\n", cmd, pool, strerror(errno));
		return -1;
	}
	char real[PATH_MAX];
	if (!realpath(pool, real)) /* mountinfo holds the mounts' real paths */
		snprintf(real, sizeof(real), "%s", pool);
	bool waiting = false;
	for (unsigned waited = 0;; waited += 50) {
		if (!flock(fd, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB))
			return fd;
		if (errno != EWOULDBLOCK) {
			fprintf(stderr, "reflinkfs %s: cannot lock %s: %s\n", cmd, pool, strerror(errno));
			break;
		}
		/* Mounted, or held by another command: in use.  Held by a
		 * daemon whose mount is gone: it is exiting. */
		if (!daemon_marked(fd) || rfs_mountinfo_pool_mounted(real)) {
			in_use(cmd, pool);
			break;
		}
		if (waited >= EXIT_WAIT_MS) {
			fprintf(stderr, "reflinkfs %s: %s is still in use after %u s: the daemon of a mount of it that is no longer in the mount table has not exited (mounted in another mount namespace, or detached with umount -l while files are open?)\n",
				cmd, pool, EXIT_WAIT_MS / 1000);
			break;
		}
		if (!waiting) {
			fprintf(stderr, "reflinkfs %s: %s was unmounted but its daemon is still making its final commit; waiting for it to exit (up to %u s)\n",
				cmd, pool, EXIT_WAIT_MS / 1000);
			waiting = true;
		}
		struct timespec ts = {0, 50 * 1000000L};
		nanosleep(&ts, NULL);
	}
	close(fd);
	return -1;
}
