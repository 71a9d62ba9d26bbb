/*
 * bench_journal: the change journal's subtree query at scale, through
 * the fs API (issue 8).
 *
 *   bench_journal POOL N   make a pool at POOL holding N files (100 per
 *                          directory, 100 directories per directory above:
 *                          t/dNN/eNN/fNN), take a cursor C0, then make N
 *                          changes (a chmod of each file: no data blocks) of which
 *                          exactly 10 are below t/d00/e00 (its 10 files;
 *                          the other 90 files of e00 are moved to e01
 *                          first); then time rfs_fs_changes since C0 of
 *                          t/d00/e00 (10 changes), of t/d00 (about N/100)
 *                          and of the root (N + ...).  Prints the cursor
 *                          ("cursor: C0") for the mount-level part
 *                          (bench/journal.sh), and keeps the pool.
 *
 *   bench_journal overhead POOL N MIB
 *                          the journal's own cost, without FUSE: N creates
 *                          (100 directories) then a sync, and MIB MiB
 *                          written in 128 KiB calls (FUSE's size) then a
 *                          sync, on a fresh pool opened with the journal
 *                          and with RFS_FS_NOJOURNAL; 5 pairs, order
 *                          alternated, medians and ratios.
 *
 *   bench_journal counts POOL N [journal|nojournal]
 *                          what the journal adds to N creates in 100
 *                          directories below c/ (the mount benchmark's
 *                          tree), in figures that do not depend on the
 *                          machine's load: metadata block reads per create
 *                          in the operations and with the commits (one
 *                          every 30,000 creates, as the daemon's timer
 *                          would), bytes the commits write per create
 *                          (wchar of /proc/self/io), and thread CPU per
 *                          create (that one does depend on load); one side
 *                          only when named (to run each under
 *                          valgrind --tool=cachegrind for instructions).
 *
 * Figures: stdout "name: value unit"; progress on stderr.  Why through
 * the API: creating 1,000,000 files through FUSE takes minutes on the
 * 2-core machine; the tree and the journal are the same once mounted.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "reflinkfs/fs.h"
#include "reflinkfs/journal.h"
#include "reflinkfs/log.h"

#define PER_DIR 100u
#define QUERY_FILES 10u
#define REPS 5

static const struct rfs_ctx g_ctx = {.uid = 0, .gid = 0, .pid = 1, .umask = 022};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die(const char *what, int ret)
{
	fprintf(stderr, "bench_journal: %s: %s\n", what, strerror(-ret));
	exit(1);
}

static int count_cb(void *arg, const struct rfs_change *c)
{
	(void)c;
	(*(uint64_t *)arg)++;
	return 0;
}

/* Best of REPS reads below dir since cursor: ms; *n changes. */
static double query_ms(rfs_fs *fs, rfs_nodeid dir, const char *cursor, uint64_t *n)
{
	double best = 1e30;
	for (int r = 0; r < REPS; r++) {
		struct rfs_changes_page page = {0};
		*n = 0;
		double t0 = now_s();
		int ret = rfs_fs_changes(fs, dir, cursor, &page, count_cb, n);
		double t = (now_s() - t0) * 1000;
		if (ret)
			die("rfs_fs_changes", ret);
		if (t < best)
			best = t;
	}
	return best;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* One run: seconds for n creates + sync, and for mib MiB written. */
static void overhead_run(const char *pool, bool journal, uint64_t n, uint64_t mib,
			 double *tc, double *tw)
{
	int ret = rfs_fs_mkfs(pool, (8ull << 30), RFS_CREATE_FORCE);
	rfs_fs *fs;
	if (ret || (ret = rfs_fs_open(pool, journal ? 0 : RFS_FS_NOJOURNAL, &fs)))
		die("mkfs/open", ret);
	struct stat st;
	rfs_nodeid dirs[100], f;
	char name[64];
	double t0 = now_s();
	for (int i = 0; i < 100; i++) {
		snprintf(name, sizeof(name), "d%d", i);
		if ((ret = rfs_fs_mkdir(fs, &g_ctx, RFS_ROOT_NODE, name, 0755, &dirs[i], &st)))
			die("mkdir", ret);
	}
	for (uint64_t i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "f%llu", (unsigned long long)i);
		if ((ret = rfs_fs_create(fs, &g_ctx, dirs[i % 100], name, 0644, &f, &st)))
			die("create", ret);
		rfs_fs_forget(fs, f, 1);
	}
	if ((ret = rfs_fs_sync(fs)))
		die("sync", ret);
	*tc = now_s() - t0;
	static char buf[128 << 10];
	memset(buf, 0x5a, sizeof(buf));
	if ((ret = rfs_fs_create(fs, &g_ctx, RFS_ROOT_NODE, "big", 0644, &f, &st)))
		die("create", ret);
	t0 = now_s();
	for (uint64_t off = 0; off < (mib << 20); off += sizeof(buf))
		if (rfs_fs_write(fs, f, buf, sizeof(buf), off) != (ssize_t)sizeof(buf))
			die("write", -EIO);
	if ((ret = rfs_fs_sync(fs)))
		die("sync", ret);
	*tw = now_s() - t0;
	rfs_fs_forget(fs, f, 1);
	for (int i = 0; i < 100; i++)
		rfs_fs_forget(fs, dirs[i], 1);
	if ((ret = rfs_fs_close(fs)))
		die("close", ret);
	unlink(pool);
}

static int overhead(const char *pool, uint64_t n, uint64_t mib)
{
	enum { PAIRS = 5 };
	double cj[PAIRS], cn[PAIRS], wj[PAIRS], wn[PAIRS];
	for (int r = 0; r < PAIRS; r++) {
		bool jfirst = r % 2 == 0;
		for (int k = 0; k < 2; k++) {
			bool j = (k == 0) == jfirst;
			overhead_run(pool, j, n, mib, j ? &cj[r] : &cn[r], j ? &wj[r] : &wn[r]);
			fprintf(stderr, "bench_journal: run %d %s: creates %.3f s, write %.3f s\n", r,
				j ? "journal" : "nojournal", j ? cj[r] : cn[r], j ? wj[r] : wn[r]);
		}
	}
	double mcj = median(cj, PAIRS), mcn = median(cn, PAIRS);
	double mwj = median(wj, PAIRS), mwn = median(wn, PAIRS);
	printf("journal_api_create_s: %.3f s\n", mcj);
	printf("nojournal_api_create_s: %.3f s\n", mcn);
	printf("journal_api_create_ratio: %.3f x\n", mcj / mcn);
	printf("journal_api_write_s: %.3f s\n", mwj);
	printf("nojournal_api_write_s: %.3f s\n", mwn);
	printf("journal_api_write_ratio: %.3f x\n", mwj / mwn);
	return 0;
}

static uint64_t wchar(void)
{
	FILE *f = fopen("/proc/self/io", "r");
	char l[128];
	uint64_t v = 0;
	while (f && fgets(l, sizeof(l), f))
		if (!strncmp(l, "wchar:", 6))
			v = strtoull(l + 6, NULL, 10);
	if (f)
		fclose(f);
	return v;
}

static double cpu_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t reads(rfs_fs *fs)
{
	struct rfs_pool_stats st;
	rfs_pool_stats(rfs_fs_pool(fs), &st);
	return st.block_reads;
}

static void counts_run(const char *pool, bool journal, uint64_t n)
{
	const char *side = journal ? "journal" : "nojournal";
	int ret = rfs_fs_mkfs(pool, (8ull << 30), RFS_CREATE_FORCE);
	rfs_fs *fs;
	if (ret || (ret = rfs_fs_open(pool, journal ? 0 : RFS_FS_NOJOURNAL, &fs)))
		die("mkfs/open", ret);
	struct stat st;
	rfs_nodeid c, dirs[100], f;
	char name[64];
	if ((ret = rfs_fs_mkdir(fs, &g_ctx, RFS_ROOT_NODE, "c", 0755, &c, &st)))
		die("mkdir", ret);
	for (int i = 0; i < 100; i++) {
		snprintf(name, sizeof(name), "d%d", i);
		if ((ret = rfs_fs_mkdir(fs, &g_ctx, c, name, 0755, &dirs[i], &st)))
			die("mkdir", ret);
	}
	if ((ret = rfs_fs_sync(fs)))
		die("sync", ret);
	uint64_t r0 = reads(fs), w0 = wchar(), rops = 0;
	double t0 = cpu_s();
	for (uint64_t i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "f%llu", (unsigned long long)i);
		uint64_t r = reads(fs);
		if ((ret = rfs_fs_create(fs, &g_ctx, dirs[i % 100], name, 0644, &f, &st)))
			die("create", ret);
		rops += reads(fs) - r;
		rfs_fs_forget(fs, f, 1);
		if (i % 30000 == 29999 && (ret = rfs_fs_sync(fs)))
			die("sync", ret);
	}
	if ((ret = rfs_fs_sync(fs)))
		die("sync", ret);
	double cpu = cpu_s() - t0;
	uint64_t rall = reads(fs) - r0, w = wchar() - w0;
	printf("%s_create_block_reads: %.2f blocks\n", side, (double)rops / (double)n);
	printf("%s_create_block_reads_with_commits: %.2f blocks\n", side, (double)rall / (double)n);
	printf("%s_create_commit_bytes: %.0f bytes\n", side, (double)w / (double)n);
	printf("%s_create_cpu_us: %.2f us\n", side, cpu * 1e6 / (double)n);
	for (int i = 0; i < 100; i++)
		rfs_fs_forget(fs, dirs[i], 1);
	rfs_fs_forget(fs, c, 1);
	if ((ret = rfs_fs_close(fs)))
		die("close", ret);
	unlink(pool);
}

int main(int argc, char **argv)
{
	if ((argc == 4 || argc == 5) && !strcmp(argv[1], "counts")) {
		rfs_log_set_level(RFS_LOG_WARN);
		uint64_t n = strtoull(argv[3], NULL, 10);
		const char *side = argc == 5 ? argv[4] : NULL;
		if (!side || !strcmp(side, "journal"))
			counts_run(argv[2], true, n);
		if (!side || !strcmp(side, "nojournal"))
			counts_run(argv[2], false, n);
		return 0;
	}
	if (argc == 5 && !strcmp(argv[1], "overhead")) {
		rfs_log_set_level(RFS_LOG_WARN);
		return overhead(argv[2], strtoull(argv[3], NULL, 10), strtoull(argv[4], NULL, 10));
	}
	if (argc != 3) {
		fprintf(stderr, "usage: bench_journal POOL N | bench_journal overhead POOL N MIB | bench_journal counts POOL N [journal|nojournal]\n");
		return 2;
	}
	const char *pool = argv[1];
	uint64_t n = strtoull(argv[2], NULL, 10);
	uint64_t ndirs = (n + PER_DIR - 1) / PER_DIR, nd = (ndirs + PER_DIR - 1) / PER_DIR;
	rfs_log_set_level(RFS_LOG_WARN);
	/* Metadata of N files and about 250 bytes per journal record. */
	uint64_t size = (4ull << 30) + n * 2048;
	int ret = rfs_fs_mkfs(pool, size, RFS_CREATE_FORCE);
	rfs_fs *fs;
	if (ret || (ret = rfs_fs_open(pool, 0, &fs)))
		die("mkfs/open", ret);
	if ((ret = rfs_fs_journal_set_limit(fs, n * 600 + (64ull << 20))))
		die("journal limit", ret);
	struct stat st;
	rfs_nodeid t, *files = malloc(sizeof(*files) * n);
	rfs_nodeid q = 0, q2 = 0, d0 = 0;
	if (!files)
		die("memory", -ENOMEM);
	if ((ret = rfs_fs_mkdir(fs, &g_ctx, RFS_ROOT_NODE, "t", 0755, &t, &st)))
		die("mkdir", ret);
	double t0 = now_s();
	char name[64];
	uint64_t made = 0;
	for (uint64_t i = 0; i < nd && made < n; i++) {
		rfs_nodeid d;
		snprintf(name, sizeof(name), "d%02llu", (unsigned long long)i);
		if ((ret = rfs_fs_mkdir(fs, &g_ctx, t, name, 0755, &d, &st)))
			die("mkdir", ret);
		for (uint64_t k = 0; k < PER_DIR && made < n; k++) {
			rfs_nodeid e;
			snprintf(name, sizeof(name), "e%02llu", (unsigned long long)k);
			if ((ret = rfs_fs_mkdir(fs, &g_ctx, d, name, 0755, &e, &st)))
				die("mkdir", ret);
			for (uint64_t f = 0; f < PER_DIR && made < n; f++) {
				snprintf(name, sizeof(name), "f%02llu", (unsigned long long)f);
				if ((ret = rfs_fs_create(fs, &g_ctx, e, name, 0644, &files[made], &st)))
					die("create", ret);
				made++;
			}
			if (i == 0 && k == 0)
				q = e;
			else if (i == 0 && k == 1)
				q2 = e;
			else
				rfs_fs_forget(fs, e, 1);
		}
		if (i == 0)
			d0 = d;
		else
			rfs_fs_forget(fs, d, 1);
		if ((ret = rfs_fs_sync(fs)))
			die("sync", ret);
	}
	double tc = now_s() - t0;
	fprintf(stderr, "bench_journal: %llu files in %.1f s\n", (unsigned long long)made, tc);
	/* t/d00/e00 keeps QUERY_FILES files: the others move to e01. */
	for (uint64_t f = QUERY_FILES; q2 && f < PER_DIR && f < made; f++) {
		char to[64];
		snprintf(name, sizeof(name), "f%02llu", (unsigned long long)f);
		snprintf(to, sizeof(to), "g%02llu", (unsigned long long)f);
		if ((ret = rfs_fs_rename(fs, &g_ctx, q, name, q2, to, 0)))
			die("rename", ret);
	}
	if ((ret = rfs_fs_sync(fs)))
		die("sync", ret);
	char c0[RFS_CURSOR_MAX];
	if ((ret = rfs_fs_changes_cursor(fs, c0)))
		die("cursor", ret);
	t0 = now_s();
	for (uint64_t i = 0; i < made; i++) {
		struct stat in = {.st_mode = 0600};
		if ((ret = rfs_fs_setattr(fs, files[i], &in, RFS_SET_MODE, &st)))
			die("chmod", ret);
		rfs_fs_forget(fs, files[i], 1);
		if (i % 10000 == 9999 && (ret = rfs_fs_sync(fs)))
			die("sync", ret);
	}
	if ((ret = rfs_fs_sync(fs)))
		die("sync", ret);
	double tw = now_s() - t0;
	fprintf(stderr, "bench_journal: %llu changes in %.1f s\n", (unsigned long long)made, tw);
	uint64_t nq, nd0, nall;
	double ms_q = query_ms(fs, q, c0, &nq);
	double ms_d0 = query_ms(fs, d0, c0, &nd0);
	double ms_all = query_ms(fs, RFS_ROOT_NODE, c0, &nall);
	struct rfs_journal_stat js;
	if ((ret = rfs_fs_journal_stat(fs, NULL, &js)))
		die("journal stat", ret);
	printf("journal_api_files: %llu files\n", (unsigned long long)made);
	printf("journal_api_changes: %llu changes\n", (unsigned long long)nall);
	printf("journal_api_query_subtree_ms: %.3f ms (%llu changes)\n", ms_q,
	       (unsigned long long)nq);
	printf("journal_api_query_dir_ms: %.3f ms (%llu changes)\n", ms_d0,
	       (unsigned long long)nd0);
	printf("journal_api_query_mount_ms: %.3f ms (%llu changes)\n", ms_all,
	       (unsigned long long)nall);
	printf("journal_bytes: %llu bytes (%llu records)\n", (unsigned long long)js.bytes,
	       (unsigned long long)js.nrecords);
	printf("cursor: %s\n", c0);
	rfs_fs_forget(fs, q, 1);
	rfs_fs_forget(fs, q2, 1);
	rfs_fs_forget(fs, d0, 1);
	rfs_fs_forget(fs, t, 1);
	free(files);
	if ((ret = rfs_fs_close(fs)))
		die("close", ret);
	return nq == QUERY_FILES ? 0 : 1;
}
