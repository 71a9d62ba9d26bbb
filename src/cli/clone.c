/*
 * reflinkfs clone SRC DST: one ioctl on the mount, O(1) and atomic for a
 * file of any size.
 */
#include "cli/cli.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "reflinkfs/fs.h"

/* Makes the missing directories on the way to path (not path itself),
 * like mkdir -p of its dirname.  Returns 0, or -1 with a message naming
 * the directory that could not be made. */
static int make_parents(const char *path)
{
	char buf[PATH_MAX];
	snprintf(buf, sizeof(buf), "%s", path);
	for (char *p = buf + 1; (p = strchr(p, '/')) != NULL; p++) {
		*p = 0;
		if (mkdir(buf, 0777) && errno != EEXIST) {
			fprintf(stderr,
				"reflinkfs clone: cannot create directory %s: %s (DST's parents are "
				"created as needed; check the path and permissions)\n",
				buf, strerror(errno));
			return -1;
		}
		*p = '/';
		while (p[1] == '/')
			p++;
	}
	return 0;
}

int cmd_clone(int argc, char **argv)
{
	if (cli_wants_help(argc, argv)) {
		printf("usage: reflinkfs clone SRC DST\n\n"
		       "Make DST a clone of the regular file SRC, both on the same reflinkfs\n"
		       "mount: the clone shares all of SRC's blocks, costs the same for any size\n"
		       "or number of extents, is a point-in-time image of SRC, and is independent\n"
		       "afterwards.  DST is created (or replaced); a directory DST gets SRC's name.\n"
		       "(`cp` also clones through copy_file_range, but `cp --reflink=always`\n"
		       "fails on FUSE; and for files over 4 GiB or sparse files `cp` needs many\n"
		       "calls, while this is one atomic request.)\n\n"
		       "When SRC is a directory, DST becomes a snapshot of it, exactly as with\n"
		       "`reflinkfs snapshot SRC DST` (DST must not exist; exit statuses as\n"
		       "there).\n\n"
		       "Missing directories on the way to DST are created (as mkdir -p does),\n"
		       "so a per-file recipe such as `reflinkfs watch --exec 'reflinkfs clone {}\n"
		       "/m/versions/{rel}'` needs no mkdir.  When the\n"
		       "environment variable REFLINKFS_WATCH_INO is SRC's inode number (as\n"
		       "`reflinkfs watch --exec` sets it for the event's file), SRC's dirty mmap\n"
		       "pages are not written back first: what is stored is cloned.\n");
		return 0;
	}
	if (argc != 3) {
		fprintf(stderr, "usage: reflinkfs clone SRC DST\n");
		return 2;
	}
	const char *src = argv[1];
	char dst[PATH_MAX];
	struct stat sst, dst_st;
	snprintf(dst, sizeof(dst), "%s", argv[2]);
	int sfd = open(src, O_RDONLY | O_CLOEXEC);
	if (sfd < 0) {
		fprintf(stderr, "reflinkfs clone: cannot open %s: %s\n", src, strerror(errno));
		return 1;
	}
	if (make_parents(argv[2])) {
		close(sfd);
		return 1;
	}
	if (fstat(sfd, &sst) == 0 && S_ISDIR(sst.st_mode)) {
		/* A directory: a snapshot (O(1) as well). */
		close(sfd);
		return cli_snapshot_create("clone", src, argv[2], false, false);
	}
	if (fstat(sfd, &sst) || !S_ISREG(sst.st_mode)) {
		fprintf(stderr, "reflinkfs clone: %s is not a regular file\n", src);
		close(sfd);
		return 1;
	}
	if (stat(dst, &dst_st) == 0 && S_ISDIR(dst_st.st_mode)) {
		char *c = strdup(src);
		snprintf(dst, sizeof(dst), "%s/%s", argv[2], c ? basename(c) : src);
		free(c);
	}
	int dfd = open(dst, O_WRONLY | O_CREAT | O_CLOEXEC, sst.st_mode & 07777);
	if (dfd < 0) {
		fprintf(stderr, "reflinkfs clone: cannot create %s: %s\n", dst, strerror(errno));
		close(sfd);
		return 1;
	}
	/* Pages still dirty in the kernel (writeback cache, mmap) must reach
	 * the daemon first: the source's to be cloned, the destination's so
	 * that they do not land on top of the clone later.  Except for the
	 * file of the event a `reflinkfs watch --exec` runs for (it sets
	 * REFLINKFS_WATCH_INO): its page write-back may be what waits for
	 * this command, and what is stored is what is wanted there, the
	 * content before the change (docs/WATCH.md). */
	const char *ev_ino = getenv("REFLINKFS_WATCH_INO");
	if (!ev_ino || strtoull(ev_ino, NULL, 10) != (unsigned long long)sst.st_ino)
		sync_file_range(sfd, 0, 0, SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
					       SYNC_FILE_RANGE_WAIT_AFTER);
	sync_file_range(dfd, 0, 0, SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
				       SYNC_FILE_RANGE_WAIT_AFTER);
	struct rfs_ioc_clone c = {.src_fd = sfd, .src_ino = sst.st_ino};
	int ret = ioctl(dfd, RFS_IOC_CLONE, &c);
	int err = errno;
	/* With the writeback cache the kernel keeps its own idea of the size
	 * of a file; setting it (to what the clone already has) updates it. */
	if (!ret && ftruncate(dfd, sst.st_size)) {
		ret = -1;
		err = errno;
	}
	close(dfd);
	close(sfd);
	if (ret) {
		if (err == ENOTTY || err == EOPNOTSUPP || err == ENOSYS || err == EINVAL)
			fprintf(stderr, "reflinkfs clone: %s is not on a reflinkfs mount (or the daemon is too old)\n", dst);
		else if (err == EXDEV)
			fprintf(stderr, "reflinkfs clone: %s and %s are not on the same reflinkfs mount\n", src, dst);
		else
			fprintf(stderr, "reflinkfs clone: cloning %s to %s failed: %s\n", src, dst, strerror(err));
		return 1;
	}
	return 0;
}
