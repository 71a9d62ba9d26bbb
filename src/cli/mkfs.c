/*
 * reflinkfs mkfs [--size SIZE] [--force] POOL
 */
#include "cli/cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "reflinkfs/fs.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: reflinkfs mkfs [--size SIZE] [--force] POOL\n\n"
		   "Create a pool holding an empty reflinkfs filesystem.  POOL is a file\n"
		   "(created sparse, growing on demand up to SIZE) or a block device (its\n"
		   "whole size unless --size).\n\n"
		   "  -s, --size SIZE  size of the pool, e.g. 10G, 512M (suffixes K M G T)\n"
		   "  -f, --force      overwrite an existing pool or filesystem signature\n"
		   "  -h, --help       show this help\n");
}

int cmd_mkfs(int argc, char **argv)
{
	static const struct option lo[] = {{"size", required_argument, 0, 's'},
					   {"force", no_argument, 0, 'f'},
					   {"help", no_argument, 0, 'h'},
					   {0, 0, 0, 0}};
	uint64_t size = 0;
	bool force = false;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "s:fh", lo, NULL)) != -1) {
		switch (c) {
		case 's':
			if (!cli_parse_size(optarg, &size) || size == 0) {
				fprintf(stderr, "reflinkfs mkfs: '%s' is not a size (examples: 10G, 512M)\n", optarg);
				return 2;
			}
			break;
		case 'f':
			force = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc - 1) {
		usage(stderr);
		return 2;
	}
	const char *pool = argv[optind];
	struct stat st;
	bool exists = stat(pool, &st) == 0;
	if (!exists && size == 0) {
		fprintf(stderr, "reflinkfs mkfs: %s does not exist; give its size with --size (e.g. --size 10G)\n", pool);
		return 2;
	}
	if (exists && S_ISREG(st.st_mode) && size == 0)
		size = (uint64_t)st.st_size;
	if (exists) {
		int fd = cli_lock_pool(pool, true, "mkfs");
		if (fd < 0)
			return 1;
		close(fd);
	}
	int ret = rfs_fs_mkfs(pool, size, force ? RFS_CREATE_FORCE : 0);
	if (ret) {
		fprintf(stderr, "reflinkfs mkfs: cannot create a pool at %s: %s%s\n", pool, strerror(-ret),
			ret == -EEXIST ? " (it holds a pool or a filesystem; use --force to overwrite)" : "");
		return 1;
	}
	printf("created reflinkfs pool %s", pool);
	if (size)
		printf(" (%llu MiB)", (unsigned long long)(size >> 20));
	printf("\nmount it with: reflinkfs mount %s MOUNTPOINT\n", pool);
	return 0;
}
