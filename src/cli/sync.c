/*
 * reflinkfs sync [PATH...]: commit the mounts holding PATH (default: the
 * current directory).  sync(1) and syncfs(2) cannot do it: the kernel
 * does not forward syncfs to a /dev/fuse daemon, so this asks the daemon
 * directly with an ioctl.
 */
#include "cli/cli.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "reflinkfs/fs.h"

static int sync_one(const char *path)
{
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "reflinkfs sync: %s: %s\n", path, strerror(errno));
		return 1;
	}
	int ret = ioctl(fd, RFS_IOC_SYNC);
	int err = errno;
	close(fd);
	if (ret) {
		if (err == ENOTTY || err == ENOSYS || err == EINVAL)
			fprintf(stderr, "reflinkfs sync: %s is not on a reflinkfs mount\n", path);
		else
			fprintf(stderr, "reflinkfs sync: %s: commit failed: %s; see the "
				"daemon's log (syslog) for the block involved\n", path,
				strerror(err));
		return 1;
	}
	return 0;
}

int cmd_sync(int argc, char **argv)
{
	int rc = 0;

	if (cli_wants_help(argc, argv)) {
		printf("usage: reflinkfs sync [PATH...]\n\n"
		       "Make everything written so far to the reflinkfs mount holding each\n"
		       "PATH (default: the current directory) durable: one commit.  Use it\n"
		       "where you would use sync(1) or syncfs(2), which the kernel does not\n"
		       "forward to FUSE filesystems.  fsync(2) on a file also commits.\n");
		return 0;
	}
	if (argc < 2)
		return sync_one(".");
	for (int i = 1; i < argc; i++)
		rc |= sync_one(argv[i]);
	return rc;
}
