/*
 * reflinkfs mkfs [--size SIZE] [--journal-size SIZE] [--force] POOL
 */
#include "cli/cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "reflinkfs/fs.h"
#include "reflinkfs/journal.h"
#include "reflinkfs/pool.h"
#include "util/size.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: reflinkfs mkfs [--size SIZE] [--journal-size SIZE] [--force] POOL\n\n"
		   "Create a pool holding an empty reflinkfs filesystem.  POOL is a file\n"
		   "(created sparse, growing on demand up to SIZE) or a block device (its\n"
		   "whole size unless --size).\n\n"
		   "  -s, --size SIZE  size of the pool: a whole number with a unit K, M, G,\n"
		   "                   T, P or E (powers of 1024), e.g. 10G, 512M; at least\n"
		   "                   16M, and at most what the device, the filesystem\n"
		   "                   holding POOL, and this machine's memory allow\n"
		   "  -j, --journal-size SIZE\n"
		   "                   retention of the change journal (`reflinkfs changes`):\n"
		   "                   the oldest records are trimmed past SIZE; at least 64K,\n"
		   "                   at most the pool's size (default: 1/64 of the pool);\n"
		   "                   change it later with mount -o journal_size=SIZE\n"
		   "  -f, --force      overwrite an existing pool or filesystem signature\n"
		   "  -h, --help       show this help\n");
}

/* Parse --size and check it against the pool's limits and this machine's
 * memory, saying what is wrong. */
static bool size_ok(const char *arg, uint64_t *size)
{
	const char *why;
	char a[RFS_SIZE_STR], b[RFS_SIZE_STR];
	int ret = rfs_size_parse(arg, size, &why);
	if (ret == -ERANGE) {
		fprintf(stderr, "reflinkfs mkfs: --size %s is too large: the largest pool is %s\n", arg,
			rfs_size_str(RFS_POOL_MAX_BYTES, a));
		return false;
	}
	if (ret) {
		fprintf(stderr, "reflinkfs mkfs: --size '%s' is not a size: %s\n", arg, why);
		return false;
	}
	if (*size < RFS_POOL_MIN_BYTES) {
		fprintf(stderr, "reflinkfs mkfs: --size %s is too small: a pool needs at least %s\n", arg,
			rfs_size_str(RFS_POOL_MIN_BYTES, a));
		return false;
	}
	if (*size > RFS_POOL_MAX_BYTES) {
		fprintf(stderr, "reflinkfs mkfs: --size %s is too large: the largest pool is %s\n", arg,
			rfs_size_str(RFS_POOL_MAX_BYTES, a));
		return false;
	}
	/* The allocator keeps its bitmaps in memory while the pool is
	 * mounted: a pool this machine cannot hold is a typo, not a plan. */
	long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
	uint64_t need = rfs_pool_mem_bytes(*size);
	if (pages > 0 && psize > 0 && need > (uint64_t)pages * (uint64_t)psize) {
		char c[RFS_SIZE_STR];
		fprintf(stderr,
			"reflinkfs mkfs: --size %s is too large for this machine: a pool of %s needs %s of "
			"memory while mounted (allocation bitmaps, 3 bits per 4 KiB block), and this "
			"machine has %s\n",
			arg, rfs_size_str(*size, a), rfs_size_str(need, b),
			rfs_size_str((uint64_t)pages * (uint64_t)psize, c));
		return false;
	}
	return true;
}

/* A pool file is sparse: more than the free space is fine, but say so. */
static void note_free_space(const char *pool, uint64_t size)
{
	char dir[4096], a[RFS_SIZE_STR], b[RFS_SIZE_STR];
	struct statvfs sv;
	snprintf(dir, sizeof(dir), "%s", pool);
	char *slash = strrchr(dir, '/');
	if (!slash)
		snprintf(dir, sizeof(dir), ".");
	else if (slash == dir)
		dir[1] = 0;
	else
		*slash = 0;
	if (statvfs(dir, &sv) < 0)
		return;
	uint64_t avail = (uint64_t)sv.f_bavail * sv.f_frsize;
	if (size > avail)
		fprintf(stderr,
			"reflinkfs mkfs: note: the filesystem holding %s has %s free, less than the pool's "
			"%s; the pool file grows as data is written, and writes will fail with \"No space "
			"left on device\" once that filesystem is full\n",
			pool, rfs_size_str(avail, a), rfs_size_str(size, b));
}

/* Create the change journal of the new filesystem with its retention
 * (kept in the pool; mount -o journal_size changes it later). */
static int set_journal_size(const char *pool, uint64_t bytes)
{
	rfs_fs *fs;
	int ret = rfs_fs_open(pool, 0, &fs);
	if (!ret) {
		ret = rfs_fs_journal_set_limit(fs, bytes);
		int r2 = rfs_fs_close(fs);
		ret = ret ? ret : r2;
	}
	if (ret)
		fprintf(stderr, "reflinkfs mkfs: %s: setting the change journal's size failed: %s "
			"(the filesystem was created; mount it with -o journal_size=SIZE to set it)\n",
			pool, strerror(-ret));
	return ret;
}

int cmd_mkfs(int argc, char **argv)
{
	static const struct option lo[] = {{"size", required_argument, 0, 's'},
					   {"journal-size", required_argument, 0, 'j'},
					   {"force", no_argument, 0, 'f'},
					   {"help", no_argument, 0, 'h'},
					   {0, 0, 0, 0}};
	uint64_t size = 0, jsize = 0;
	const char *jarg = NULL;
	bool force = false;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "s:j:fh", lo, NULL)) != -1) {
		switch (c) {
		case 's':
			if (!size_ok(optarg, &size))
				return 2;
			break;
		case 'j': {
			const char *why;
			jarg = optarg;
			if (rfs_size_parse(optarg, &jsize, &why)) {
				fprintf(stderr, "reflinkfs mkfs: --journal-size '%s' is not a size: %s\n",
					optarg, why);
				return 2;
			}
			if (jsize < RFS_JOURNAL_MIN_BYTES) {
				fprintf(stderr, "reflinkfs mkfs: --journal-size %s is too small: give at least 64K\n",
					optarg);
				return 2;
			}
			break;
		}
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
	if (exists && S_ISREG(st.st_mode) && size == 0) {
		size = (uint64_t)st.st_size;
		if (size < RFS_POOL_MIN_BYTES) {
			fprintf(stderr, "reflinkfs mkfs: %s is a file of %llu bytes; give the pool's size with "
				"--size (e.g. --size 10G)\n", pool, (unsigned long long)size);
			return 2;
		}
	}
	if (jsize && size && jsize > size) {
		char a[RFS_SIZE_STR];
		fprintf(stderr, "reflinkfs mkfs: --journal-size %s is larger than the pool (%s): give at most the pool's size\n",
			jarg, rfs_size_str(size, a));
		return 2;
	}
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
	if (jsize && (ret = set_journal_size(pool, jsize)) != 0)
		return 1;
	char a[RFS_SIZE_STR];
	printf("created reflinkfs pool %s", pool);
	if (size)
		printf(" (%s)", rfs_size_str(size, a));
	printf("\nmount it with: reflinkfs mount %s MOUNTPOINT\n", pool);
	fflush(stdout);
	if (!exists || S_ISREG(st.st_mode))
		note_free_space(pool, size);
	return 0;
}
