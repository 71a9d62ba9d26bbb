/*
 * bench_snapshot: snapshot benchmarks through the fs API, and the trees
 * the mount-level benchmark (bench/snapshot/run.sh) needs.
 *
 *   bench_snapshot api POOL N   make a pool at POOL holding vol/big (N
 *                               empty files, 1,000 per directory, plus a
 *                               4 KiB file first in each of the first 101
 *                               directories) and vol/small (10 files),
 *                               vol being a snapshot's root; then time
 *                               rfs_fs_snapshot of big against small, the
 *                               delete of a snapshot of big, and the
 *                               first 4 KiB write into a file of a fresh
 *                               snapshot against the same write before
 *                               the snapshot.  The pool is kept for the
 *                               mount-level part.
 *   bench_snapshot gen DIR N    the same tree (big, small) with plain
 *                               syscalls, for XFS and btrfs
 *   bench_snapshot pwrite FILE  time one 4 KiB pwrite at offset 0 (the file
 *                               opened before the clock starts); prints us
 *
 * Figures: one stdout line "name: value unit" each; progress on stderr.
 * Why through the API: creating 1,000,000 files through FUSE takes
 * minutes (about 14,000 creates/s, bench/README.md), the API does it in
 * seconds, and the tree is the same once mounted.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "reflinkfs/fs.h"
#include "reflinkfs/log.h"
#include "reflinkfs/pool.h"

#define PER_DIR 1000u
#define PROBES 101u
#define SNAP_REPS 21u
#define SMALL_N 10u

static const struct rfs_ctx g_ctx = {.uid = 0, .gid = 0, .pid = 1, .umask = 022};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double median(double *v, size_t n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void die(const char *what, int err)
{
	fprintf(stderr, "bench_snapshot: %s: %s\n", what, strerror(err < 0 ? -err : err));
	exit(1);
}

#define OK(expr)                                                                        \
	do {                                                                            \
		int ret_ = (expr);                                                      \
		if (ret_)                                                               \
			die(#expr, ret_);                                               \
	} while (0)

/* ---- the tree through the API --------------------------------------------- */

static rfs_nodeid mkdir_in(rfs_fs *fs, rfs_nodeid parent, const char *name)
{
	rfs_nodeid n;
	struct stat st;
	OK(rfs_fs_mkdir(fs, &g_ctx, parent, name, 0755, &n, &st));
	return n;
}

static void file_in(rfs_fs *fs, rfs_nodeid dir, const char *name, bool data)
{
	rfs_nodeid n;
	struct stat st;
	static char block[4096];
	OK(rfs_fs_create(fs, &g_ctx, dir, name, 0644, &n, &st));
	if (data && rfs_fs_write(fs, n, block, sizeof(block), 0) != (ssize_t)sizeof(block))
		die("write", EIO);
	rfs_fs_forget(fs, n, 1);
}

static rfs_nodeid at(rfs_fs *fs, const char *path)
{
	rfs_nodeid n;
	struct stat st;
	int ret = rfs_fs_resolve(fs, path, &n, &st);
	if (ret)
		die(path, ret);
	return n;
}

static void build(rfs_fs *fs, unsigned long n)
{
	rfs_nodeid root = RFS_ROOT_NODE, e = mkdir_in(fs, root, "empty"), vol, big, small, s;
	struct stat st;
	/* vol: a snapshot's root, so that deleting it and a snapshot of big
	 * leaves that snapshot the only holder of the tree (the last-copy
	 * delete of the mount part). */
	OK(rfs_fs_snapshot(fs, e, root, "vol", 0, &vol, &st));
	rfs_fs_forget(fs, e, 1);
	OK(rfs_fs_rmdir(fs, root, "empty"));
	rfs_fs_forget(fs, mkdir_in(fs, root, "snaps"), 1);
	big = mkdir_in(fs, vol, "big");
	small = mkdir_in(fs, vol, "small");
	double t0 = now_s();
	char name[32];
	rfs_nodeid d = 0;
	for (unsigned long i = 0; i < n; i++) {
		if (i % PER_DIR == 0) {
			if (d)
				rfs_fs_forget(fs, d, 1);
			snprintf(name, sizeof(name), "d%04lu", i / PER_DIR);
			d = mkdir_in(fs, big, name);
		}
		snprintf(name, sizeof(name), "f%07lu", i);
		file_in(fs, d, name, i % PER_DIR == 0 && i / PER_DIR < PROBES);
		if ((i + 1) % 200000 == 0) {
			OK(rfs_fs_sync(fs));
			fprintf(stderr, "bench_snapshot: %lu files (%.1f s)\n", i + 1, now_s() - t0);
		}
	}
	if (d)
		rfs_fs_forget(fs, d, 1);
	for (unsigned i = 0; i < SMALL_N; i++) {
		snprintf(name, sizeof(name), "f%u", i);
		file_in(fs, small, name, false);
	}
	OK(rfs_fs_sync(fs));
	fprintf(stderr, "bench_snapshot: tree of %lu files made in %.1f s\n", n, now_s() - t0);
	rfs_fs_forget(fs, big, 1);
	rfs_fs_forget(fs, small, 1);
	(void)s;
	rfs_fs_forget(fs, vol, 1);
}

/* Time one snapshot of path src as snaps/name, after a commit (so that
 * it is the first change of its transaction, as a lone snapshot is). */
static double snap_timed(rfs_fs *fs, const char *src, const char *name)
{
	rfs_nodeid s = at(fs, src), d = at(fs, "snaps"), out;
	struct stat st;
	OK(rfs_fs_sync(fs));
	double t0 = now_s();
	OK(rfs_fs_snapshot(fs, s, d, name, 0, &out, &st));
	double t = now_s() - t0;
	rfs_fs_forget(fs, out, 1);
	rfs_fs_forget(fs, s, 1);
	rfs_fs_forget(fs, d, 1);
	return t;
}

static void snap_delete(rfs_fs *fs, const char *name)
{
	rfs_nodeid d = at(fs, "snaps");
	OK(rfs_fs_snapshot_delete(fs, d, name));
	rfs_fs_forget(fs, d, 1);
}

/* One 4 KiB write at offset 0 of path, timed (the node looked up first). */
static double write_timed(rfs_fs *fs, const char *path, char fill)
{
	char buf[4096];
	memset(buf, fill, sizeof(buf));
	rfs_nodeid n = at(fs, path);
	double t0 = now_s();
	if (rfs_fs_write(fs, n, buf, sizeof(buf), 0) != (ssize_t)sizeof(buf))
		die("write", EIO);
	double t = now_s() - t0;
	rfs_fs_forget(fs, n, 1);
	return t;
}

static int cmd_api(const char *pool, unsigned long n)
{
	rfs_fs *fs;
	unlink(pool);
	OK(rfs_fs_mkfs(pool, 64ull << 30, 0));
	OK(rfs_fs_open(pool, 0, &fs));
	rfs_pool_set_cache_limit(rfs_fs_pool(fs), 4ull << 20);
	build(fs, n);
	const char *tag = n >= 1000000 ? "1m" : n >= 100000 ? "100k" : "n";

	/* snapshot of big vs small, interleaved, each after a commit */
	double tb[SNAP_REPS], ts[SNAP_REPS];
	for (unsigned r = 0; r < SNAP_REPS; r++) {
		if (r % 2) {
			tb[r] = snap_timed(fs, "vol/big", "b");
			ts[r] = snap_timed(fs, "vol/small", "s");
		} else {
			ts[r] = snap_timed(fs, "vol/small", "s");
			tb[r] = snap_timed(fs, "vol/big", "b");
		}
		snap_delete(fs, "b");
		snap_delete(fs, "s");
	}
	double mb = median(tb, SNAP_REPS), ms = median(ts, SNAP_REPS);
	printf("snapshot_api_%s: %.1f us\n", tag, mb * 1e6);
	printf("snapshot_api_10: %.1f us\n", ms * 1e6);
	printf("snapshot_api_size_ratio: %.3f\n", mb / ms);

	/* delete of a snapshot of big (it shares everything with big) */
	double td[SNAP_REPS];
	for (unsigned r = 0; r < SNAP_REPS; r++) {
		snap_timed(fs, "vol/big", "d");
		OK(rfs_fs_sync(fs));
		rfs_nodeid d = at(fs, "snaps");
		double t0 = now_s();
		OK(rfs_fs_snapshot_delete(fs, d, "d"));
		td[r] = now_s() - t0;
		rfs_fs_forget(fs, d, 1);
	}
	printf("snapshot_delete_api_%s: %.1f us\n", tag, median(td, SNAP_REPS) * 1e6);

	/* first write: into a probe file of the source after a commit (its
	 * path is clean and exclusive: the path copy every first write after
	 * a commit pays), then into the same file of a fresh snapshot (the
	 * path is shared: each copied node also adds a reference to each of
	 * its children), then into the source again (its path now shares
	 * nodes with the snapshot's). */
	double w0[PROBES], w1[PROBES], w2[PROBES];
	char p[64], q[64];
	unsigned np = n / PER_DIR < PROBES ? (unsigned)(n / PER_DIR) : PROBES;
	if (np == 0)
		die("first write: fewer files than one directory holds", EINVAL);
	for (unsigned i = 0; i < np; i++) {
		snprintf(p, sizeof(p), "vol/big/d%04u/f%07u", i, i * PER_DIR);
		snprintf(q, sizeof(q), "snaps/fw/big/d%04u/f%07u", i, i * PER_DIR);
		OK(rfs_fs_sync(fs));
		w0[i] = write_timed(fs, p, 'a');
		snap_timed(fs, "vol", "fw");
		OK(rfs_fs_sync(fs));
		w1[i] = write_timed(fs, q, 'b');
		w2[i] = write_timed(fs, p, 'c');
		snap_delete(fs, "fw");
	}
	double m0 = median(w0, np), m1 = median(w1, np), m2 = median(w2, np);
	printf("first_write_before_snapshot: %.1f us\n", m0 * 1e6);
	printf("first_write_snapshot: %.1f us\n", m1 * 1e6);
	printf("first_write_source_after: %.1f us\n", m2 * 1e6);
	printf("first_write_ratio: %.2f\n", m1 / m0);
	OK(rfs_fs_close(fs));
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	printf("snapshot_api_peak_rss: %ld MiB\n", ru.ru_maxrss / 1024);
	return 0;
}

/* ---- the tree with syscalls -------------------------------------------------- */

static void xmkdir(const char *path)
{
	if (mkdir(path, 0755) && errno != EEXIST)
		die(path, errno);
}

static void xcreate(const char *path, bool data)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
	static char block[4096];
	if (fd < 0)
		die(path, errno);
	if (data && write(fd, block, sizeof(block)) != (ssize_t)sizeof(block))
		die(path, errno);
	close(fd);
}

static int cmd_gen(const char *dir, unsigned long n)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/big", dir);
	xmkdir(path);
	snprintf(path, sizeof(path), "%s/small", dir);
	xmkdir(path);
	for (unsigned long i = 0; i < n; i++) {
		if (i % PER_DIR == 0) {
			snprintf(path, sizeof(path), "%s/big/d%04lu", dir, i / PER_DIR);
			xmkdir(path);
		}
		snprintf(path, sizeof(path), "%s/big/d%04lu/f%07lu", dir, i / PER_DIR, i);
		xcreate(path, i % PER_DIR == 0 && i / PER_DIR < PROBES);
	}
	for (unsigned i = 0; i < SMALL_N; i++) {
		snprintf(path, sizeof(path), "%s/small/f%u", dir, i);
		xcreate(path, false);
	}
	return 0;
}

static int cmd_pwrite(const char *path)
{
	char buf[4096];
	memset(buf, 'w', sizeof(buf));
	int fd = open(path, O_WRONLY);
	if (fd < 0)
		die(path, errno);
	double t0 = now_s();
	if (pwrite(fd, buf, sizeof(buf), 0) != (ssize_t)sizeof(buf))
		die(path, errno);
	double t = now_s() - t0;
	close(fd);
	printf("%.1f\n", t * 1e6);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 4 && !strcmp(argv[1], "api"))
		return cmd_api(argv[2], strtoul(argv[3], NULL, 10));
	if (argc == 4 && !strcmp(argv[1], "gen"))
		return cmd_gen(argv[2], strtoul(argv[3], NULL, 10));
	if (argc == 3 && !strcmp(argv[1], "pwrite"))
		return cmd_pwrite(argv[2]);
	fprintf(stderr, "usage: bench_snapshot api POOL N | gen DIR N | pwrite FILE\n");
	return 2;
}
