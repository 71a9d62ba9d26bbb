/*
 * bench_ops: the daemon's own work per file of `cp -a` into the mount and
 * of `cp -a` inside it, through the fs API with the calls the FUSE layer
 * makes for each request of those commands (issue 9).  No FUSE, so run
 * under valgrind's callgrind the figures are instructions per call of each
 * rfs_fs_* entry point, which do not depend on the machine's load.
 *
 *   bench_ops cpa POOL N [SIZE]
 *       a fresh pool at POOL, 100 directories, then for N files of SIZE
 *       bytes (default 24576, the mean of /usr/share/doc) the requests of
 *       `cp -a SRC mnt/a` (LOOKUP of the absent name, CREATE, WRITE,
 *       SETATTR of the times, SETXATTR of the minimal ACL, RELEASE), a
 *       commit, then those of `cp -a mnt/a mnt/b` (OPEN of the source,
 *       LISTXATTR twice, GETXATTR of its ACL, LOOKUP, CREATE,
 *       COPY_FILE_RANGE, SETATTR, SETXATTR, RELEASE twice), then a
 *       commit.  Prints the thread CPU per file of each half (load
 *       dependent) and removes the pool.
 *
 *   bench_ops randwrite POOL N MIB, bench_ops randread POOL N MIB
 *       N 4 KiB writes, or reads, at random blocks of a file of MIB MiB
 *       written first (fio randwrite's and randread's requests, one job);
 *       only randwrite_loop / randread_loop are the measured part.
 *
 *   valgrind --tool=callgrind --callgrind-out-file=OUT \
 *       build/bench/bench_ops cpa /dev/shm/ops.pool 2000
 *   callgrind_annotate --inclusive=yes OUT | grep rfs_fs_
 *   gives each entry point's instructions; divide by N (its calls).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "reflinkfs/fs.h"

#define NDIRS 100u

static const struct rfs_ctx g_ctx = {.uid = 0, .gid = 0, .pid = 1, .umask = 022};

/* The access ACL `cp -a` sets on each copy (mode 0644 as an ACL). */
static const unsigned char g_acl[] = {
	2, 0, 0, 0, 1, 0, 6, 0, 0xff, 0xff, 0xff, 0xff, 4, 0, 4, 0,
	0xff, 0xff, 0xff, 0xff, 0x20, 0, 4, 0, 0xff, 0xff, 0xff, 0xff,
};

static void die(const char *what, long ret)
{
	fprintf(stderr, "bench_ops: %s: %s\n", what, strerror((int)-ret));
	exit(1);
}

static double cpu_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void mkdirs(rfs_fs *fs, const char *top, rfs_nodeid *dirs)
{
	struct stat st;
	rfs_nodeid t;
	char name[32];
	int ret = rfs_fs_mkdir(fs, &g_ctx, RFS_ROOT_NODE, top, 0755, &t, &st);
	if (ret)
		die("mkdir", ret);
	for (unsigned i = 0; i < NDIRS; i++) {
		snprintf(name, sizeof(name), "d%u", i);
		if ((ret = rfs_fs_mkdir(fs, &g_ctx, t, name, 0755, &dirs[i], &st)))
			die("mkdir", ret);
	}
	rfs_fs_forget(fs, t, 1);
}

/* The destination side, common to both halves: a new file gets its times
 * and ACL, then is closed. */
static rfs_nodeid dst_create(rfs_fs *fs, rfs_nodeid dir, const char *name)
{
	struct stat st;
	rfs_nodeid f;
	int ret = rfs_fs_lookup(fs, dir, name, &f, &st);
	if (ret != -ENOENT)
		die("lookup of an absent name", ret ? ret : -EEXIST);
	if ((ret = rfs_fs_create(fs, &g_ctx, dir, name, 0600, &f, &st)))
		die("create", ret);
	return f;
}

static void dst_finish(rfs_fs *fs, rfs_nodeid f)
{
	struct stat in = {0};
	in.st_atim.tv_sec = in.st_mtim.tv_sec = 1700000000;
	int ret = rfs_fs_setattr(fs, f, &in, RFS_SET_ATIME | RFS_SET_MTIME, NULL);
	if (ret)
		die("setattr", ret);
	if ((ret = rfs_fs_setxattr(fs, &g_ctx, f, "system.posix_acl_access", g_acl,
				   sizeof(g_acl), 0)))
		die("setxattr", ret);
	rfs_fs_release(fs, f);
}

static void cpa(const char *pool, unsigned long n, size_t size)
{
	int ret = rfs_fs_mkfs(pool, 8ull << 30, RFS_CREATE_FORCE);
	rfs_fs *fs;
	if (ret || (ret = rfs_fs_open(pool, 0, &fs)))
		die("mkfs/open", ret);
	rfs_nodeid a[NDIRS], b[NDIRS];
	mkdirs(fs, "a", a);
	mkdirs(fs, "b", b);
	char *data = malloc(size ? size : 1);
	if (!data)
		die("malloc", -ENOMEM);
	for (size_t i = 0; i < size; i++)
		data[i] = (char)(i * 7 + 1);
	if ((ret = rfs_fs_sync(fs)))
		die("sync", ret);

	char name[32];
	double t0 = cpu_s();
	for (unsigned long i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "f%lu", i);
		rfs_nodeid f = dst_create(fs, a[i % NDIRS], name);
		ssize_t w = size ? rfs_fs_write(fs, f, data, size, 0) : 0;
		if (w != (ssize_t)size)
			die("write", w < 0 ? w : -EIO);
		dst_finish(fs, f);
		rfs_fs_forget(fs, f, 2); /* the lookup and the create */
	}
	if ((ret = rfs_fs_sync(fs)))
		die("sync", ret);
	double t1 = cpu_s();
	char list[256], acl[132];
	for (unsigned long i = 0; i < n; i++) {
		struct stat st;
		rfs_nodeid s;
		snprintf(name, sizeof(name), "f%lu", i);
		if ((ret = rfs_fs_lookup(fs, a[i % NDIRS], name, &s, &st)))
			die("lookup", ret);
		if ((ret = rfs_fs_open_node(fs, s)))
			die("open", ret);
		ssize_t l = rfs_fs_listxattr(fs, s, NULL, 0);
		if (l < 0 || (l = rfs_fs_listxattr(fs, s, list, sizeof(list))) < 0)
			die("listxattr", l);
		l = rfs_fs_getxattr(fs, s, "system.posix_acl_access", acl, sizeof(acl));
		if (l != -ENODATA)
			die("getxattr of a minimal ACL", l < 0 ? l : -EEXIST);
		rfs_nodeid f = dst_create(fs, b[i % NDIRS], name);
		ssize_t c = rfs_fs_clone_range(fs, s, 0, f, 0, (uint64_t)1 << 62);
		if (c != (ssize_t)size)
			die("clone_range", c < 0 ? c : -EIO);
		dst_finish(fs, f);
		rfs_fs_release(fs, s);
		rfs_fs_forget(fs, f, 2);
		rfs_fs_forget(fs, s, 1);
	}
	if ((ret = rfs_fs_sync(fs)))
		die("sync", ret);
	double t2 = cpu_s();
	printf("ops_cpa_in_cpu_per_file: %.2f us\n", (t1 - t0) * 1e6 / (double)n);
	printf("ops_cpa_inside_cpu_per_file: %.2f us\n", (t2 - t1) * 1e6 / (double)n);
	for (unsigned i = 0; i < NDIRS; i++) {
		rfs_fs_forget(fs, a[i], 1);
		rfs_fs_forget(fs, b[i], 1);
	}
	free(data);
	if ((ret = rfs_fs_close(fs)))
		die("close", ret);
	unlink(pool);
}

/* A fresh pool at POOL holding one file of MIB MiB written in writes of
 * bufsize bytes (FUSE's size) from buf, committed: *fs and *f. */
static void filled_file(const char *pool, unsigned long mib, char *buf, size_t bufsize,
			rfs_fs **fs, rfs_nodeid *f)
{
	int ret = rfs_fs_mkfs(pool, 8ull << 30, RFS_CREATE_FORCE);
	if (ret || (ret = rfs_fs_open(pool, 0, fs)))
		die("mkfs/open", ret);
	struct stat st;
	if ((ret = rfs_fs_create(*fs, &g_ctx, RFS_ROOT_NODE, "f", 0644, f, &st)))
		die("create", ret);
	memset(buf, 0x5a, bufsize);
	for (uint64_t off = 0; off < (uint64_t)mib << 20; off += bufsize)
		if (rfs_fs_write(*fs, *f, buf, bufsize, off) != (ssize_t)bufsize)
			die("write", -EIO);
	if ((ret = rfs_fs_sync(*fs)))
		die("sync", ret);
}

/* Close what filled_file made and remove the pool. */
static void drop_file(const char *pool, rfs_fs *fs, rfs_nodeid f)
{
	rfs_fs_release(fs, f);
	rfs_fs_forget(fs, f, 1);
	int ret = rfs_fs_close(fs);
	if (ret)
		die("close", ret);
	unlink(pool);
}

/* The measured part of randwrite (ops_instr.sh has callgrind count only
 * this function): n writes, then the commit. */
static __attribute__((noinline)) void randwrite_loop(rfs_fs *fs, rfs_nodeid f,
						      const char *buf, unsigned long n,
						      uint64_t blocks)
{
	uint64_t x = 88172645463325252ull;
	for (unsigned long i = 0; i < n; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17; /* xorshift64 */
		if (rfs_fs_write(fs, f, buf, 4096, (x % blocks) * 4096) != 4096)
			die("write", -EIO);
	}
	int ret = rfs_fs_sync(fs);
	if (ret)
		die("sync", ret);
}

/* N 4 KiB writes at random block offsets of one file of MIB MiB written
 * first (fio randwrite's requests, one job). */
static void randwrite(const char *pool, unsigned long n, unsigned long mib)
{
	rfs_fs *fs;
	rfs_nodeid f;
	static char buf[131072];
	filled_file(pool, mib, buf, sizeof(buf), &fs, &f);
	double t0 = cpu_s();
	randwrite_loop(fs, f, buf, n, (uint64_t)mib << 8);
	printf("ops_randwrite_cpu_per_write: %.2f us\n", (cpu_s() - t0) * 1e6 / (double)n);
	drop_file(pool, fs, f);
}

/* The measured part of randread (callgrind counts only this function):
 * n reads of 4 KiB at random blocks. */
static __attribute__((noinline)) void randread_loop(rfs_fs *fs, rfs_nodeid f, char *buf,
						     unsigned long n, uint64_t blocks)
{
	uint64_t x = 88172645463325252ull;
	for (unsigned long i = 0; i < n; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17; /* xorshift64 */
		if (rfs_fs_read(fs, f, buf, 4096, (x % blocks) * 4096) != 4096)
			die("read", -EIO);
	}
}

/* N 4 KiB reads at random block offsets of one file of MIB MiB written
 * first in 128 KiB writes and committed (fio randread's requests, one
 * job). */
static void randread(const char *pool, unsigned long n, unsigned long mib)
{
	rfs_fs *fs;
	rfs_nodeid f;
	static char buf[131072];
	filled_file(pool, mib, buf, sizeof(buf), &fs, &f);
	/* The first read updates atime (relatime): not what is measured. */
	if (rfs_fs_read(fs, f, buf, 4096, 0) != 4096)
		die("read", -EIO);
	double t0 = cpu_s();
	randread_loop(fs, f, buf, n, (uint64_t)mib << 8);
	printf("ops_randread_cpu_per_read: %.2f us\n", (cpu_s() - t0) * 1e6 / (double)n);
	drop_file(pool, fs, f);
}

int main(int argc, char **argv)
{
	if (argc == 5 && !strcmp(argv[1], "randread")) {
		randread(argv[2], strtoul(argv[3], NULL, 10), strtoul(argv[4], NULL, 10));
		return 0;
	}
	if (argc == 5 && !strcmp(argv[1], "randwrite")) {
		randwrite(argv[2], strtoul(argv[3], NULL, 10), strtoul(argv[4], NULL, 10));
		return 0;
	}
	if ((argc == 4 || argc == 5) && !strcmp(argv[1], "cpa")) {
		unsigned long n = strtoul(argv[3], NULL, 10);
		size_t size = argc == 5 ? strtoul(argv[4], NULL, 10) : 24576;
		if (!n)
			die("N must be at least 1", -EINVAL);
		cpa(argv[2], n, size);
		return 0;
	}
	fprintf(stderr, "usage: bench_ops cpa POOL N [SIZE] | bench_ops randwrite POOL N MIB | "
			"bench_ops randread POOL N MIB\n");
	return 2;
}
