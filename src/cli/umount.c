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

#include "util/mountinfo.h"

int cmd_umount(int argc, char **argv)
{
	if (cli_wants_help(argc, argv)) {
		printf("usage: reflinkfs umount MOUNTPOINT\n\n"
		       "Unmount a reflinkfs mount; returns once the daemon has made its final\n"
		       "commit and released the pool.  `fusermount3 -u MOUNTPOINT` works too\n"
		       "(without waiting for the final commit).\n");
		return 0;
	}
	if (argc != 2) {
		fprintf(stderr, "usage: reflinkfs umount MOUNTPOINT\n");
		return 2;
	}
	char rmnt[PATH_MAX], pool[4096];
	if (!realpath(argv[1], rmnt)) {
		/* a dead mount cannot be resolved: use the name as given */
		snprintf(rmnt, sizeof(rmnt), "%s", argv[1]);
	}
	if (!rfs_mountinfo_find_mnt(rmnt, pool, sizeof(pool), NULL, NULL)) {
		fprintf(stderr, "reflinkfs umount: %s is not a reflinkfs mount\n", rmnt);
		return 1;
	}
	int lockfd = open(pool, O_RDONLY | O_CLOEXEC);
	int ret;
	if (geteuid() == 0) {
		ret = umount2(rmnt, 0);
		if (ret && errno == EBUSY) {
			fprintf(stderr, "reflinkfs umount: %s is busy (a process uses files or has its working directory there)\n",
				rmnt);
			if (lockfd >= 0)
				close(lockfd);
			return 1;
		}
		if (ret) {
			fprintf(stderr, "reflinkfs umount: cannot unmount %s: %s\n", rmnt, strerror(errno));
			if (lockfd >= 0)
				close(lockfd);
			return 1;
		}
	} else {
		pid_t pid = fork();
		if (pid == 0) {
			execlp("fusermount3", "fusermount3", "-u", rmnt, (char *)NULL);
			fprintf(stderr, "reflinkfs umount: cannot run fusermount3: %s\n", strerror(errno));
			_exit(127);
		}
		int status = 0;
		if (pid < 0 || waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) ||
		    WEXITSTATUS(status)) {
			fprintf(stderr, "reflinkfs umount: unmounting %s failed\n", rmnt);
			if (lockfd >= 0)
				close(lockfd);
			return 1;
		}
	}
	/* Wait for the daemon's final commit (it holds the pool's lock). */
	if (lockfd >= 0) {
		for (int i = 0; i < 1200; i++) {
			if (flock(lockfd, LOCK_EX | LOCK_NB) == 0)
				break;
			if (i == 1199)
				fprintf(stderr, "reflinkfs umount: %s unmounted, but the daemon still holds %s after 120 s\n",
					rmnt, pool);
			struct timespec ts = {0, 100 * 1000 * 1000};
			nanosleep(&ts, NULL);
		}
		close(lockfd);
	}
	return 0;
}
