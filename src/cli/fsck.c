/*
 * reflinkfs fsck POOL
 *
 * Exit status, bits or-ed together as e2fsck's: see usage below and
 * docs/reflinkfs.1.
 */
#include "cli/cli.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "reflinkfs/fs.h"
#include "reflinkfs/log.h"
#include "reflinkfs/pool.h"

enum {
	FSCK_CLEAN = 0,
	FSCK_DEGRADED = 1, /* a superblock copy damaged or stale; nothing lost */
	FSCK_PROBLEMS = 4, /* inconsistencies, or a commit lost */
	FSCK_FAILED = 8,   /* the check could not run */
	FSCK_USAGE = 16,
};

static void usage(FILE *f)
{
	fprintf(f, "usage: reflinkfs fsck [--data] POOL\n\n"
		   "Check an unmounted pool, read-only: the four superblock copies, every\n"
		   "tree, checksum, reference count and allocation, and the filesystem's\n"
		   "records and link counts.  Prints the superblock in use and one line per\n"
		   "problem.  fsck changes nothing; a read-write mount rewrites damaged or\n"
		   "stale superblock copies (and logs it).  File data is not read unless:\n\n"
		   "  --data  also read every data block in use and verify its checksum,\n"
		   "          naming every file that uses a damaged block, each damaged\n"
		   "          block one problem (what `reflinkfs scrub` does on a mount)\n\n"
		   "Exit status (added together when several apply):\n"
		   "  0   clean\n"
		   "  1   a superblock copy is damaged or out of date; nothing is lost and\n"
		   "      the filesystem is consistent; the next read-write mount rewrites it\n"
		   "  4   problems left: inconsistencies were found, or the newest commit may\n"
		   "      be lost (both copies of its superblock damaged: the pool fell back\n"
		   "      to the commit before)\n"
		   "  8   the check could not run (no such pool, not a pool, in use, I/O error)\n"
		   "  16  usage error\n");
}

static void report(void *arg, const char *what)
{
	const char *pool = arg;
	printf("%s: %s\n", pool, what);
}

static void super_line(void *arg, int level, const char *text)
{
	(void)level;
	report(arg, text);
}

int cmd_fsck(int argc, char **argv)
{
	if (cli_wants_help(argc, argv)) {
		usage(stdout);
		return 0;
	}
	bool data = false;
	const char *pool = NULL;
	static const struct option longopts[] = {{"data", no_argument, NULL, 'd'}, {0}};
	optind = 0;
	for (int c; (c = cli_getopt(argc, argv, "fsck", "", longopts)) != -1;) {
		if (c != 'd')
			return FSCK_USAGE;
		data = true;
	}
	if (optind + 1 == argc)
		pool = argv[optind];
	if (!pool) {
		usage(stderr);
		return FSCK_USAGE;
	}
	int fd = cli_lock_pool(pool, false, "fsck");
	if (fd < 0)
		return FSCK_FAILED;
	int status = FSCK_CLEAN;
	struct rfs_super_report sr;
	/* When this fails, the open below says why. */
	bool have_super = rfs_pool_super_inspect(pool, &sr) == 0;
	if (have_super)
		rfs_super_describe(&sr, super_line, (void *)pool);
	/* The open below would log the same findings again on stderr. */
	if (have_super)
		rfs_log_set_level(RFS_LOG_ERR);
	long n = rfs_fs_fsck(pool, report, (void *)pool);
	if (n >= 0 && data) {
		long d = cli_fsck_data(pool);
		n = d < 0 ? d : n + d;
	}
	close(fd);
	if (n < 0) {
		fprintf(stderr, "reflinkfs fsck: cannot check %s: %s\n", pool, strerror((int)-n));
		return FSCK_FAILED;
	}
	if (have_super && rfs_super_health(&sr) == RFS_SUPER_LOST) {
		printf("%s: the newest commit may be lost: the pool fell back to generation %llu\n",
		       pool, (unsigned long long)sr.generation);
		status |= FSCK_PROBLEMS;
	} else if (have_super && rfs_super_health(&sr) == RFS_SUPER_DEGRADED) {
		printf("%s: superblock copies: %u damaged, %u out of date; nothing is lost; a read-write mount rewrites what it can\n",
		       pool, sr.damaged, sr.stale);
		status |= FSCK_DEGRADED;
	}
	if (n) {
		printf("%s: %ld problem%s found\n", pool, n, n == 1 ? "" : "s");
		status |= FSCK_PROBLEMS;
	}
	if (status == FSCK_CLEAN)
		printf("%s: clean\n", pool);
	return status;
}
