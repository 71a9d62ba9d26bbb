/*
 * reflinkfs umount MOUNTPOINT: unmount, then wait until the daemon has
 * made its final commit and let go of the pool.
 */
#include "cli/cli.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fuse/status.h"
#include "util/mountinfo.h"

/* How long a busy mount that no process holds is retried. */
#define BUSY_RETRY_MS 10000

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

/* fusermount3 -u (unprivileged unmount).  Its message goes to err; the
 * return value is an errno (EBUSY when the mount was busy). */
static int fusermount_u(const char *mnt, char *err, size_t size)
{
	int pfd[2];
	err[0] = 0;
	if (pipe2(pfd, O_CLOEXEC))
		return errno;
	pid_t pid = fork();
	if (pid == 0) {
		dup2(pfd[1], 2);
		setenv("LC_ALL", "C", 1); /* so that "busy" can be recognized */
		execlp("fusermount3", "fusermount3", "-u", mnt, (char *)NULL);
		fprintf(stderr, "cannot run fusermount3: %s\n", strerror(errno));
		_exit(127);
	}
	close(pfd[1]);
	size_t n = 0;
	ssize_t r;
	while (pid > 0 && n < size - 1 && (r = read(pfd[0], err + n, size - 1 - n)) > 0)
		n += (size_t)r;
	err[n] = 0;
	close(pfd[0]);
	int status = 0;
	if (pid < 0 || waitpid(pid, &status, 0) < 0)
		return EIO;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	return strstr(err, "busy") ? EBUSY : EIO;
}

static int unmount_once(const char *mnt, char *err, size_t size)
{
	if (geteuid() != 0)
		return fusermount_u(mnt, err, size);
	err[0] = 0;
	return umount2(mnt, 0) ? errno : 0;
}

/*
 * Unmount; on EBUSY, name the processes that hold the mount and fail at
 * once.  When no process holds anything on it, the busy state is the
 * kernel still letting go of files their processes have closed already:
 * io_uring drops a ring's registered files in a kernel worker after the
 * process has exited (fio --ioengine=io_uring --registerfiles=1 makes the
 * next umount(2) fail with EBUSY most of the time, on tmpfs as here), and
 * AIO completions and delayed fput do the same.  That lasts milliseconds,
 * so it is retried, for BUSY_RETRY_MS at most.
 */
static int unmount_retrying(const char *mnt, int mnt_id, unsigned major, unsigned minor)
{
	char err[1024];
	unsigned waited = 0, step = 5;
	for (;;) {
		int e = unmount_once(mnt, err, sizeof(err));
		if (!e)
			return 0;
		if (e == EBUSY && rfs_mountinfo_find_mnt(mnt, NULL, 0, NULL, NULL) != mnt_id)
			return 0; /* someone else unmounted it meanwhile */
		if (e != EBUSY) {
			fprintf(stderr, "%sreflinkfs umount: cannot unmount %s: %s\n", err, mnt,
				err[0] ? "see the message above" : strerror(e));
			return 1;
		}
		if (cli_mount_holders(mnt_id, major, minor, NULL) > 0) {
			fprintf(stderr, "reflinkfs umount: %s is busy; close these files or leave these directories first:\n",
				mnt);
			cli_mount_holders(mnt_id, major, minor, stderr);
			return 1;
		}
		if (waited >= BUSY_RETRY_MS) {
			fprintf(stderr, "%sreflinkfs umount: %s is still busy after %u s although no process has files, mappings or its working directory there (a live process may hold files registered with io_uring); try again, or detach it with `umount -l %s`\n",
				err, mnt, BUSY_RETRY_MS / 1000, mnt);
			return 1;
		}
		sleep_ms(step);
		waited += step;
		if (step < 200)
			step *= 2;
	}
}

/* Is the filesystem (its device number) still mounted somewhere in
 * this namespace, e.g. through a bind mount? */
struct devq {
	unsigned major, minor;
	const char *pool;
	char mnt[4096];
};

/* Same device number, and the same pool: another mount of this very
 * filesystem (a new mount elsewhere may get the freed device number). */
static int dev_cb(void *arg, const struct rfs_mountinfo *m)
{
	struct devq *q = arg;
	if (m->major != q->major || m->minor != q->minor || strcmp(m->type, "fuse.reflinkfs") ||
	    strcmp(m->source, q->pool))
		return 0;
	snprintf(q->mnt, sizeof(q->mnt), "%s", m->mnt);
	return 1;
}

/*
 * After the unmount: wait until the daemon has made its final commit and
 * released the pool, and report a commit that failed.  The daemon's
 * verdict comes on the status socket; without one (no socket: another
 * network namespace, an older daemon), the pool's lock tells when it is
 * done, but not how it went.
 */
static int wait_for_daemon(const char *mnt, const char *pool, int sfd, int lockfd,
			   unsigned major, unsigned minor)
{
	char line[1100];
	size_t len = 0;
	int got = sfd >= 0 ? -EAGAIN : -ENOTCONN;
	bool noted = false;
	for (unsigned ms = 0;; ms += 100) {
		if (got == -EAGAIN)
			got = rfs_status_poll(sfd, line, sizeof(line), &len, 100);
		else if (lockfd < 0 || !flock(lockfd, LOCK_EX | LOCK_NB))
			break;
		else
			sleep_ms(100);
		if (ms % 1000 == 0) {
			struct devq q = {major, minor, pool, ""};
			if (rfs_mountinfo_each(NULL, dev_cb, &q) > 0) {
				fprintf(stderr, "reflinkfs umount: %s is unmounted, but the same filesystem is still mounted at %s (a bind mount?): its daemon goes on serving it and keeps %s; unmount that too\n",
					mnt, q.mnt, pool);
				return 1;
			}
		}
		if (ms >= 10000 && !noted) {
			fprintf(stderr, "reflinkfs umount: %s is unmounted; waiting for its daemon to finish the final commit of %s (if the filesystem is also mounted in another mount namespace, the daemon serves it there and this waits until that is unmounted)\n",
				mnt, pool);
			noted = true;
		}
	}
	if (got == 1 && !strcmp(line, "ok"))
		return 0;
	if (got == 1 && !strncmp(line, "error ", 6)) {
		fprintf(stderr, "reflinkfs umount: %s is unmounted, but %s.\n"
				"Changes made after the last commit that succeeded are lost; the pool holds that commit (`reflinkfs fsck %s` checks it).\n",
			mnt, line + 6, pool);
		return 1;
	}
	if (got == 0) {
		fprintf(stderr, "reflinkfs umount: %s is unmounted, but its daemon exited without saying how its final commit went (was it killed?); changes after its last commit may be lost: check the pool with `reflinkfs fsck %s`\n",
			mnt, pool);
		return 1;
	}
	if (got == 1 || got == -EOVERFLOW) {
		fprintf(stderr, "reflinkfs umount: %s: unexpected answer from the daemon: %s\n", mnt, line);
		return 1;
	}
	return 0; /* no status socket: the released lock is all we know */
}

int cmd_umount(int argc, char **argv)
{
	if (cli_wants_help(argc, argv)) {
		printf("usage: reflinkfs umount MOUNTPOINT\n\n"
		       "Unmount a reflinkfs mount; returns once the daemon has made its final\n"
		       "commit and released the pool.  A mount that processes still use is not\n"
		       "unmounted: they are listed.  `fusermount3 -u MOUNTPOINT` works too\n"
		       "(without waiting for the final commit).\n");
		return 0;
	}
	if (argc != 2) {
		fprintf(stderr, "usage: reflinkfs umount MOUNTPOINT\n");
		return 2;
	}
	char rmnt[PATH_MAX], pool[4096];
	unsigned major = 0, minor = 0;
	if (!realpath(argv[1], rmnt)) {
		/* a dead mount cannot be resolved: use the name as given */
		snprintf(rmnt, sizeof(rmnt), "%s", argv[1]);
	}
	int mnt_id = rfs_mountinfo_find_mnt(rmnt, pool, sizeof(pool), &major, &minor);
	if (!mnt_id) {
		fprintf(stderr, "reflinkfs umount: %s is not a reflinkfs mount\n", rmnt);
		return 1;
	}
	/* Connected before unmounting: the daemon answers once it has closed
	 * the pool (src/fuse/status.h). */
	int sfd = rfs_status_connect(pool);
	int lockfd = open(pool, O_RDONLY | O_CLOEXEC);
	int ret = unmount_retrying(rmnt, mnt_id, major, minor);
	if (!ret)
		ret = wait_for_daemon(rmnt, pool, sfd, lockfd, major, minor);
	if (sfd >= 0)
		close(sfd);
	if (lockfd >= 0)
		close(lockfd);
	return ret;
}
