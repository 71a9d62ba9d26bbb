/*
 * What the filesystem holding a pool file allows.  A pool file is sparse
 * and grows on demand, so a pool larger than the free space is fine (it
 * fills up later, with ENOSPC then), but not one larger than the largest
 * file the filesystem takes (ext4 with 4 KiB blocks: 16 TiB - 4 KiB), or
 * than the process's file size limit (ulimit -f): the writes near its end
 * would fail with EFBIG.  mkfs finds out by extending the new file to the
 * full size once, and on failure names the limit it found.
 */
#include "pool/pool_internal.h"
#include "util/size.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <unistd.h>

static const char *fs_name(int fd, char *buf, size_t len)
{
	static const struct {
		unsigned long magic;
		const char *name;
	} known[] = {
		{0xEF53, "ext4"},     {0x58465342, "xfs"},  {0x9123683E, "btrfs"},
		{0x01021994, "tmpfs"}, {0x65735546, "fuse"}, {0x794C7630, "overlayfs"},
		{0x2FC12FC1, "zfs"},  {0x6969, "nfs"},      {0x4d44, "vfat"},
	};
	struct statfs sf;
	if (fstatfs(fd, &sf) < 0)
		return "the filesystem";
	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if ((unsigned long)sf.f_type == known[i].magic) {
			snprintf(buf, len, "its %s filesystem", known[i].name);
			return buf;
		}
	snprintf(buf, len, "its filesystem (type 0x%lx)", (unsigned long)sf.f_type);
	return buf;
}

/* Largest length in [lo, hi) that ftruncate accepts, to 4 KiB (lo does). */
static uint64_t largest_length(int fd, uint64_t lo, uint64_t hi)
{
	while (hi - lo > RFS_BLOCK_SIZE) {
		uint64_t mid = (lo + (hi - lo) / 2) & ~(uint64_t)(RFS_BLOCK_SIZE - 1);
		if (mid <= lo)
			break;
		if (ftruncate(fd, (off_t)mid) == 0)
			lo = mid;
		else
			hi = mid;
	}
	return lo;
}

int rfs_backing_check(const char *path, int fd, uint64_t size)
{
	char a[RFS_SIZE_STR], b[RFS_SIZE_STR], name[64];
	struct rlimit rl;
	if (getrlimit(RLIMIT_FSIZE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
	    (uint64_t)rl.rlim_cur < size) {
		rfs_log(RFS_LOG_ERR,
			"%s: a pool of %s is larger than this process may write a file (ulimit -f: %s); "
			"raise the limit or give a smaller --size",
			path, rfs_size_str(size, a), rfs_size_str((uint64_t)rl.rlim_cur, b));
		return -EFBIG;
	}
	/* Past the largest file size, ftruncate gives EFBIG (and SIGXFSZ,
	 * which would kill the process). */
	struct sigaction ign = {.sa_handler = SIG_IGN}, old;
	sigaction(SIGXFSZ, &ign, &old);
	int ret = 0;
	if (ftruncate(fd, (off_t)size) < 0) {
		ret = -errno;
		if (ret == -EFBIG || ret == -EINVAL) {
			uint64_t max = largest_length(fd, 0, size);
			rfs_log(RFS_LOG_ERR,
				"%s: a pool of %s is larger than %s allows for one file (at most %llu bytes, %s); "
				"give a smaller --size, or put the pool on another filesystem",
				path, rfs_size_str(size, a), fs_name(fd, name, sizeof(name)),
				(unsigned long long)max, rfs_size_str(max, b));
			ret = -EFBIG;
		} else {
			rfs_log(RFS_LOG_ERR, "%s: cannot size the pool file: %s", path, strerror(-ret));
		}
	}
	sigaction(SIGXFSZ, &old, NULL);
	return ret;
}

void rfs_backing_explain_enospc(const char *path, int fd, uint64_t fixed_bytes)
{
	char a[RFS_SIZE_STR], b[RFS_SIZE_STR], name[64];
	struct statvfs sv;
	if (fstatvfs(fd, &sv) < 0)
		return;
	rfs_log(RFS_LOG_ERR,
		"%s: the pool's fixed region (superblocks and allocation bitmaps) takes %s, and %s "
		"has %s free; free space there or give a smaller --size",
		path, rfs_size_str(fixed_bytes, a), fs_name(fd, name, sizeof(name)),
		rfs_size_str((uint64_t)sv.f_bavail * sv.f_frsize, b));
}
