/*
 * reflinkfs stat [-e] FILE...: a file's extents and how many of its
 * blocks are shared; for a directory, the pool's free space and what
 * deleted files still hold while they are freed in the background.
 */
#include "cli/cli.h"

#include <errno.h>
#include <getopt.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "reflinkfs/fs.h"

/* A directory: the mount's space figures and what deleted files still
 * hold while they are freed in the background. */
static int stat_dir(const char *path, int fd)
{
	struct rfs_ioc_reclaim r;
	if (ioctl(fd, RFS_IOC_RECLAIM, &r)) {
		int err = errno;
		if (err == ENOTTY || err == EOPNOTSUPP || err == ENOSYS)
			fprintf(stderr, "reflinkfs stat: %s is not on a reflinkfs mount\n", path);
		else
			fprintf(stderr, "reflinkfs stat: %s: %s\n", path, strerror(err));
		return 1;
	}
	printf("%s (directory)\n", path);
	printf("  pool free:  %llu blocks (%llu MiB)\n", (unsigned long long)r.free_blocks,
	       (unsigned long long)r.free_blocks / 256);
	if (r.blocks)
		printf("  reclaiming: about %llu blocks (%llu MiB) of deleted files in %llu trees,\n"
		       "              being freed in the background\n",
		       (unsigned long long)r.blocks, (unsigned long long)r.blocks / 256,
		       (unsigned long long)r.trees);
	else
		printf("  reclaiming: nothing\n");
	return 0;
}

static int stat_one(const char *path, bool extents)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "reflinkfs stat: cannot open %s: %s\n", path, strerror(errno));
		return 1;
	}
	struct stat st;
	if (!fstat(fd, &st) && S_ISDIR(st.st_mode)) {
		int ret = stat_dir(path, fd);
		close(fd);
		return ret;
	}
	struct rfs_ioc_stat s;
	if (ioctl(fd, RFS_IOC_STAT, &s)) {
		int err = errno;
		if (err == ENOTTY || err == EOPNOTSUPP || err == ENOSYS)
			fprintf(stderr, "reflinkfs stat: %s is not on a reflinkfs mount\n", path);
		else if (err == EINVAL)
			fprintf(stderr, "reflinkfs stat: %s is not a regular file\n", path);
		else
			fprintf(stderr, "reflinkfs stat: %s: %s\n", path, strerror(err));
		close(fd);
		return 1;
	}
	printf("%s\n", path);
	printf("  size:     %llu bytes\n", (unsigned long long)s.size);
	printf("  blocks:   %llu (%llu KiB)\n", (unsigned long long)s.blocks,
	       (unsigned long long)s.blocks * 4);
	printf("  extents:  %llu\n", (unsigned long long)s.extents);
	printf("  shared:   %llu blocks\n", (unsigned long long)s.shared_blocks);
	printf("  exclusive: %llu blocks\n", (unsigned long long)(s.blocks - s.shared_blocks));
	if (s.unwritten_blocks)
		printf("  unwritten: %llu blocks (preallocated)\n", (unsigned long long)s.unwritten_blocks);
	if (extents) {
		struct rfs_ioc_extents *x = calloc(1, sizeof(*x));
		if (!x) {
			close(fd);
			return 1;
		}
		printf("  %-16s %-16s %-12s %-8s\n", "logical", "physical", "length", "shared");
		uint64_t from = 0;
		for (;;) {
			memset(x, 0, sizeof(*x));
			x->from = from;
			if (ioctl(fd, RFS_IOC_EXTENTS, x)) {
				fprintf(stderr, "reflinkfs stat: %s: %s\n", path, strerror(errno));
				break;
			}
			for (unsigned i = 0; i < x->count; i++) {
				printf("  %-16llu %-16llu %-12llu %-8llu%s\n",
				       (unsigned long long)x->e[i].logical,
				       (unsigned long long)x->e[i].physical,
				       (unsigned long long)x->e[i].length,
				       (unsigned long long)x->e[i].shared,
				       x->e[i].flags & 1   ? " unwritten"
				       : x->e[i].flags & 2 ? " inline"
							   : "");
				from = x->e[i].logical + x->e[i].length;
			}
			if (x->count < RFS_IOC_EXTENTS_MAX)
				break;
		}
		free(x);
	}
	close(fd);
	return 0;
}

int cmd_stat(int argc, char **argv)
{
	bool extents = false;
	int first = 1, ret = 0;
	if (cli_wants_help(argc, argv)) {
		printf("usage: reflinkfs stat [-e|--extents] FILE...\n\n"
		       "Show a file's size, blocks and extents, and how many of its blocks are\n"
		       "shared with clones (lazily shared blocks under a shared tree are counted\n"
		       "when the whole extent map is shared).  -e lists every extent; a tiny\n"
		       "file's data kept in its inode record shows as one \"inline\" extent\n"
		       "in no block (physical 0, 0 blocks).\n"
		       "For a directory: the pool's free blocks, and the blocks of deleted files\n"
		       "still being freed in the background (\"reclaiming\"; they count as used\n"
		       "in df until then).\n");
		return 0;
	}
	static const struct option longopts[] = {{"extents", no_argument, NULL, 'e'}, {0}};
	optind = 0;
	for (int c; (c = cli_getopt(argc, argv, "stat", "e", longopts)) != -1;) {
		if (c != 'e')
			return 2;
		extents = true;
	}
	first = optind;
	if (first >= argc) {
		fprintf(stderr, "usage: reflinkfs stat [-e] FILE...\n");
		return 2;
	}
	for (int i = first; i < argc; i++)
		ret |= stat_one(argv[i], extents);
	return ret;
}
