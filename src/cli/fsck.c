/*
 * reflinkfs fsck POOL
 */
#include "cli/cli.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "reflinkfs/fs.h"

static void report(void *arg, const char *what)
{
	const char *pool = arg;
	printf("%s: %s\n", pool, what);
}

int cmd_fsck(int argc, char **argv)
{
	if (cli_wants_help(argc, argv)) {
		printf("usage: reflinkfs fsck POOL\n\n"
		       "Check an unmounted pool: every tree, checksum, reference count and\n"
		       "allocation, and the filesystem's records and link counts.  Exit status\n"
		       "0 when clean; otherwise 1, with one line per problem.\n");
		return 0;
	}
	if (argc != 2) {
		fprintf(stderr, "usage: reflinkfs fsck POOL\n");
		return 2;
	}
	const char *pool = argv[1];
	int fd = cli_lock_pool(pool, false, "fsck");
	if (fd < 0)
		return 4;
	long n = rfs_fs_fsck(pool, report, (void *)pool);
	close(fd);
	if (n < 0) {
		fprintf(stderr, "reflinkfs fsck: cannot check %s: %s\n", pool, strerror((int)-n));
		return 4;
	}
	if (n) {
		printf("%s: %ld problem%s found\n", pool, n, n == 1 ? "" : "s");
		return 1;
	}
	printf("%s: clean\n", pool);
	return 0;
}
