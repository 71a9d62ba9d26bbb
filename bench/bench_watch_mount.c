/*
 * bench_watch_mount: latency a pre-modification watch adds to the first
 * write of a marked file (issue 8), on a mounted reflinkfs: through FUSE,
 * the watch socket and the C API of include/reflinkfs/watch.h (bench_watch
 * measures the same at the fs API).
 *
 *   bench_watch_mount DIR N  in DIR (a directory of a reflinkfs mount) make
 *                       N files in DIR/plain and N in DIR/marked; mark
 *                       DIR/marked with a blocking watch whose subscriber
 *                       (a thread of this process) acknowledges each event
 *                       at once; then time one 4 KiB pwrite at offset 0
 *                       into each file (opened before the clock starts),
 *                       plain and marked alternating.  Prints the median
 *                       and p99 of each, and of a non-blocking watch.
 *
 * Figures: one stdout line "name: value unit" each; progress on stderr.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "reflinkfs/watch.h"

static atomic_bool stop;

static void *subscriber(void *arg)
{
	rfs_watcher *w = arg;
	struct rfs_watcher_event ev;
	while (!atomic_load(&stop)) {
		int r = rfs_watcher_read(w, &ev, 100);
		if (r == -EAGAIN)
			continue;
		if (r) {
			fprintf(stderr, "bench_watch_mount: reading events: %s\n", strerror(-r));
			break;
		}
		if (ev.blocking && (r = rfs_watcher_ack(w, ev.id))) {
			fprintf(stderr, "bench_watch_mount: ack: %s\n", strerror(-r));
			break;
		}
	}
	return NULL;
}

static double now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static void figures(const char *name, double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_d);
	int p99 = (int)((double)n * 0.99);
	if (p99 >= n)
		p99 = n - 1;
	printf("mount_watch_first_write_%s_median: %.1f us\n", name, v[n / 2]);
	printf("mount_watch_first_write_%s_p99: %.1f us\n", name, v[p99]);
}

static int make_files(const char *dir, const char *sub, int n, int *fds)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", dir, sub);
	if (mkdir(path, 0755) && errno != EEXIST)
		return -1;
	for (int i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "%s/%s/f%d", dir, sub, i);
		fds[i] = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
		if (fds[i] < 0)
			return -1;
	}
	return 0;
}

static double one_write(int fd)
{
	static char buf[4096];
	memset(buf, 'x', sizeof(buf));
	double t0 = now_us();
	if (pwrite(fd, buf, sizeof(buf), 0) != (ssize_t)sizeof(buf)) {
		perror("bench_watch_mount: pwrite");
		exit(1);
	}
	return now_us() - t0;
}

/* One round: n files plain, n marked by a watch with these flags. */
static int round_(const char *dir, int n, unsigned flags, const char *tag, double *plain,
		  double *marked)
{
	char pd[64], md[64], path[4096];
	snprintf(pd, sizeof(pd), "plain_%s", tag);
	snprintf(md, sizeof(md), "marked_%s", tag);
	int *pf = calloc((size_t)n, sizeof(int)), *mf = calloc((size_t)n, sizeof(int));
	if (!pf || !mf || make_files(dir, pd, n, pf) || make_files(dir, md, n, mf)) {
		fprintf(stderr, "bench_watch_mount: cannot create files in %s: %s\n", dir, strerror(errno));
		return -1;
	}
	rfs_watcher *w;
	int r = rfs_watcher_open(dir, flags, 60000, &w);
	snprintf(path, sizeof(path), "%s/%s", dir, md);
	if (!r)
		r = rfs_watcher_mark(w, path, NULL);
	if (r) {
		fprintf(stderr, "bench_watch_mount: cannot watch %s: %s\n", path, strerror(-r));
		return -1;
	}
	pthread_t th;
	atomic_store(&stop, false);
	pthread_create(&th, NULL, subscriber, w);
	for (int i = 0; i < n; i++) {
		plain[i] = one_write(pf[i]);
		marked[i] = one_write(mf[i]);
	}
	atomic_store(&stop, true);
	pthread_join(th, NULL);
	rfs_watcher_close(w);
	for (int i = 0; i < n; i++) {
		close(pf[i]);
		close(mf[i]);
	}
	free(pf);
	free(mf);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 3 || atoi(argv[2]) <= 0) {
		fprintf(stderr, "usage: bench_watch_mount DIR N\n");
		return 2;
	}
	const char *dir = argv[1];
	int n = atoi(argv[2]);
	double *plain = calloc((size_t)n, sizeof(double)), *marked = calloc((size_t)n, sizeof(double));
	if (!plain || !marked)
		return 1;
	fprintf(stderr, "bench_watch_mount: %d first writes, blocking watch acked at once\n", n);
	if (round_(dir, n, RFS_WATCHER_BLOCKING, "b", plain, marked))
		return 1;
	figures("unmarked", plain, n);
	figures("marked_blocking", marked, n);
	fprintf(stderr, "bench_watch_mount: %d first writes, non-blocking watch\n", n);
	if (round_(dir, n, 0, "n", plain, marked))
		return 1;
	figures("marked_nonblocking", marked, n);
	free(plain);
	free(marked);
	return 0;
}
