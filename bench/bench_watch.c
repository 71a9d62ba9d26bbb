/*
 * bench_watch: what a pre-modification mark adds to a write, at the fs
 * API (src/fs/watch.c; the end-to-end figure through FUSE and the socket
 * is watchio's).
 *
 *   bench_watch [N]   N files (default 2000) of 4 KiB in each of four
 *                     directories; the first 4 KiB write at offset 0 of
 *                     each file is timed:
 *     watch_write_nowatch        no watch at all
 *     watch_write_unmarked       a watch with an armed mark on another
 *                                directory (the check runs, nothing matches)
 *     watch_write_marked         a subtree mark, non-blocking watch (the
 *                                event is queued; a thread drains them)
 *     watch_write_marked_ack     a subtree mark, blocking watch, a
 *                                subscriber thread that acknowledges at
 *                                once (poll, next, ack)
 *   Each as median and p99 in microseconds, and the ratio of the medians
 *   to the no-watch case.
 *
 * The pool is a temporary file under $RFS_BENCH_TMPDIR (else $TMPDIR,
 * else /tmp), removed at the end.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "reflinkfs/fs.h"
#include "reflinkfs/log.h"

static const struct rfs_ctx g_ctx = {.uid = 0, .gid = 0, .pid = 1, .umask = 022};

static double now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec * 1e-3;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static void die(const char *what, int err)
{
	fprintf(stderr, "bench_watch: %s: %s\n", what, strerror(err < 0 ? -err : err));
	exit(1);
}

#define OK(expr)                                                                        \
	do {                                                                            \
		int ret_ = (expr);                                                      \
		if (ret_)                                                               \
			die(#expr, ret_);                                               \
	} while (0)

static char g_block[4096];

/* Directory name with n files of 4 KiB; their node ids in *files. */
static rfs_nodeid make_dir(rfs_fs *fs, const char *name, unsigned long n, rfs_nodeid **files)
{
	rfs_nodeid d, *v = malloc(sizeof(*v) * n);
	struct stat st;
	if (!v)
		die("malloc", ENOMEM);
	OK(rfs_fs_mkdir(fs, &g_ctx, RFS_ROOT_NODE, name, 0755, &d, &st));
	for (unsigned long i = 0; i < n; i++) {
		char fn[32];
		snprintf(fn, sizeof(fn), "f%lu", i);
		OK(rfs_fs_create(fs, &g_ctx, d, fn, 0644, &v[i], &st));
		if (rfs_fs_write(fs, v[i], g_block, sizeof(g_block), 0) != (ssize_t)sizeof(g_block))
			die("write", EIO);
	}
	OK(rfs_fs_sync(fs));
	*files = v;
	return d;
}

/* Time the first rewrite of each file; prints median and p99, returns
 * the median. */
static double time_writes(rfs_fs *fs, const char *label, rfs_nodeid *files, unsigned long n)
{
	double *lat = malloc(sizeof(*lat) * n);
	if (!lat)
		die("malloc", ENOMEM);
	memset(g_block, 0x5a, sizeof(g_block));
	for (unsigned long i = 0; i < n; i++) {
		double t0 = now_us();
		ssize_t r = rfs_fs_write(fs, files[i], g_block, sizeof(g_block), 0);
		lat[i] = now_us() - t0;
		if (r != (ssize_t)sizeof(g_block))
			die("write", r < 0 ? (int)r : EIO);
	}
	qsort(lat, n, sizeof(*lat), cmp_double);
	double med = n % 2 ? lat[n / 2] : (lat[n / 2 - 1] + lat[n / 2]) / 2;
	double p99 = lat[(size_t)((double)(n - 1) * 0.99)];
	printf("%s_median: %.2f us\n", label, med);
	printf("%s_p99: %.2f us\n", label, p99);
	free(lat);
	return med;
}

struct sub {
	rfs_watch *w;
	bool ack;
	atomic_bool stop;
	unsigned long seen;
};

/* The subscriber: take every event, acknowledge it at once. */
static void *sub_main(void *arg)
{
	struct sub *s = arg;
	struct pollfd p = {.fd = rfs_fs_watch_fd(s->w), .events = POLLIN};
	while (!atomic_load(&s->stop)) {
		if (poll(&p, 1, 50) <= 0)
			continue;
		struct rfs_watch_event ev;
		while (rfs_fs_watch_next(s->w, &ev) == 0) {
			s->seen++;
			if (s->ack && ev.blocking)
				rfs_fs_watch_ack(s->w, ev.id);
		}
	}
	return NULL;
}

static void mark_dir(rfs_watch *w, rfs_nodeid d)
{
	uint64_t m;
	rfs_nodeid *fl;
	size_t nfl;
	OK(rfs_fs_watch_mark(w, &g_ctx, d, &m, &fl, &nfl));
	free(fl);
	OK(rfs_fs_watch_arm(w, m));
}

static double marked_run(rfs_fs *fs, const char *label, rfs_nodeid d, rfs_nodeid *files,
			 unsigned long n, bool blocking)
{
	struct sub s = {.ack = blocking};
	OK(rfs_fs_watch_new(fs, &g_ctx, blocking ? RFS_WATCH_BLOCKING : 0, 60000, &s.w));
	mark_dir(s.w, d);
	pthread_t t;
	if (pthread_create(&t, NULL, sub_main, &s))
		die("pthread_create", EAGAIN);
	double med = time_writes(fs, label, files, n);
	atomic_store(&s.stop, true);
	pthread_join(t, NULL);
	struct rfs_watch_stat st;
	rfs_fs_watch_stat(s.w, &st);
	if (st.events != n || (blocking && st.acked != n))
		fprintf(stderr, "bench_watch: %s: %llu events, %llu acked for %lu files\n", label,
			(unsigned long long)st.events, (unsigned long long)st.acked, n);
	rfs_fs_watch_free(s.w);
	return med;
}

int main(int argc, char **argv)
{
	unsigned long n = argc > 1 ? strtoul(argv[1], NULL, 10) : 2000;
	if (n == 0)
		die("N", EINVAL);
	const char *base = getenv("RFS_BENCH_TMPDIR");
	if (!base || !*base)
		base = getenv("TMPDIR");
	char dir[4096], pool[4200];
	snprintf(dir, sizeof(dir), "%s/rfs-bench-watch-XXXXXX", base && *base ? base : "/tmp");
	if (!mkdtemp(dir))
		die("mkdtemp", errno);
	snprintf(pool, sizeof(pool), "%s/pool", dir);
	rfs_log_set_level(RFS_LOG_ERR);
	OK(rfs_fs_mkfs(pool, (uint64_t)(64 + n / 16) << 20, 0));
	rfs_fs *fs;
	OK(rfs_fs_open(pool, 0, &fs));
	rfs_nodeid *a, *b, *c, *e;
	fprintf(stderr, "bench_watch: %lu files per directory\n", n);
	make_dir(fs, "a", n, &a);
	make_dir(fs, "b", n, &b);
	rfs_nodeid dc = make_dir(fs, "c", n, &c);
	rfs_nodeid de = make_dir(fs, "e", n, &e);
	double base_med = time_writes(fs, "watch_write_nowatch", a, n);

	rfs_watch *other;
	OK(rfs_fs_watch_new(fs, &g_ctx, 0, 0, &other));
	mark_dir(other, de);
	double um = time_writes(fs, "watch_write_unmarked", b, n);
	double mm = marked_run(fs, "watch_write_marked", dc, c, n, false);
	rfs_fs_watch_free(other);
	double am = marked_run(fs, "watch_write_marked_ack", de, e, n, true);
	printf("watch_write_unmarked_ratio: %.2f x\n", um / base_med);
	printf("watch_write_marked_ratio: %.2f x\n", mm / base_med);
	printf("watch_write_marked_ack_ratio: %.2f x\n", am / base_med);
	OK(rfs_fs_close(fs));
	unlink(pool);
	rmdir(dir);
	free(a);
	free(b);
	free(c);
	free(e);
	return 0;
}
