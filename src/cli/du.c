/*
 * reflinkfs du [-h] [--json] [--meta] PATH...: total, distinct, exclusive
 * and shared space below each PATH of a reflinkfs mount (what deleting it
 * would free, what clones and snapshots elsewhere share).  The daemon
 * walks in steps (RFS_IOC_DU_STEP on a directory, the scrub's protocol);
 * a status line goes to stderr on a terminal while a big tree is walked.
 */
#include "cli/cli.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "reflinkfs/fs.h"

enum { DU_OK = 0, DU_FAILED = 1, DU_USAGE = 2 };

struct opts {
	bool human, json, meta;
};

static void du_usage(FILE *f)
{
	fprintf(f,
		"usage: reflinkfs du [-h] [--json] [--meta] PATH...\n\n"
		"Show the space each PATH (a file or directory of a reflinkfs mount, with\n"
		"everything below it) takes, in bytes:\n"
		"  Total      the data blocks of every file below PATH, summed file by file\n"
		"             as du does (a block two of them share counts twice; a file\n"
		"             and its copy in a snapshot are two files)\n"
		"  Set        the distinct data blocks those files use (shared blocks once)\n"
		"  Exclusive  the part of Set that nothing outside PATH uses: deleting PATH\n"
		"             would free it (clones and snapshots inside PATH do not make a\n"
		"             block shared)\n"
		"  Shared     Set - Exclusive: blocks that a clone, snapshot or hard link\n"
		"             outside PATH also uses\n"
		"Data blocks only (4 KiB each, preallocated ones included); --meta adds the\n"
		"tree nodes below PATH.  A hard-linked file belongs to PATH only when all\n"
		"its names are below PATH.  A symlink given as PATH is not followed.\n\n"
		"  -h, --human-readable  sizes in powers of 1024 (4.0K, 12M, 1.5G) as du -h\n"
		"  --meta                two more columns: tree nodes (Set and Exclusive)\n"
		"  --json                one JSON array, an object per PATH with total, set,\n"
		"                        exclusive, shared, meta_set, meta_exclusive (bytes),\n"
		"                        files, dirs, changes, exact; or path and error\n"
		"  --help                this text\n\n"
		"The mount keeps serving meanwhile: the walk holds the pool's read lock only\n"
		"in short pieces.  If anything on the mount changes during the walk the\n"
		"figures are approximate, and a note says so.  On a terminal a status line\n"
		"(files, directories, bytes so far) shows while a big tree is walked.\n"
		"Root or the user who mounted may run it.\n"
		"Exit status: 0 all PATHs done, 1 some PATH failed (missing, not on a\n"
		"reflinkfs mount, no permission, an I/O error), 2 usage error.\n");
}

/* ---- output --------------------------------------------------------------- */

/* du -h style: powers of 1024, one decimal below 10, rounded up. */
static void human(char *buf, size_t len, uint64_t bytes)
{
	static const char units[] = "KMGTPE";
	if (bytes < 1024) {
		snprintf(buf, len, "%llu", (unsigned long long)bytes);
		return;
	}
	double v = (double)bytes;
	int u = -1;
	do {
		v /= 1024;
		u++;
	} while (v >= 1024 && u < 5);
	for (;;) {
		if (v < 10) {
			uint64_t t = (uint64_t)(v * 10);
			if ((double)t < v * 10)
				t++;
			if (t < 100) {
				snprintf(buf, len, "%llu.%llu%c", (unsigned long long)(t / 10),
					 (unsigned long long)(t % 10), units[u]);
				return;
			}
			v = 10;
		}
		uint64_t t = (uint64_t)v;
		if ((double)t < v)
			t++;
		if (t < 1024 || u == 5) {
			snprintf(buf, len, "%llu%c", (unsigned long long)t, units[u]);
			return;
		}
		v = 1; /* 1024 of a unit is 1 of the next */
		u++;
	}
}

static void size_col(const struct opts *o, uint64_t bytes)
{
	char buf[32];
	if (o->human)
		human(buf, sizeof(buf), bytes);
	else
		snprintf(buf, sizeof(buf), "%llu", (unsigned long long)bytes);
	printf("%*s  ", o->human ? 9 : 14, buf);
}

static void header(const struct opts *o)
{
	int w = o->human ? 9 : 14;
	printf("%*s  %*s  %*s  %*s  ", w, "Total", w, "Set", w, "Exclusive", w, "Shared");
	if (o->meta)
		printf("%*s  %*s  ", w, "Meta set", w, "Meta excl");
	printf("Path\n");
}

/* ---- one PATH ---------------------------------------------------------------- */

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void progress(const char *path, const struct rfs_du_stats *st, double secs, bool last)
{
	static const char spin[] = "|/-\\";
	fprintf(stderr, "\r%c %s: %llu files, %llu directories, %.1f MiB so far, %.0f s\033[K",
		spin[(int)(secs * 5) % 4], path, (unsigned long long)st->files,
		(unsigned long long)st->dirs, st->total / 1048576.0, secs);
	if (last)
		fprintf(stderr, "\r\033[K");
	fflush(stderr);
}

/* Why a step failed, as the user should read it. */
static void explain(const char *path, int err, char *msg, size_t len)
{
	switch (err) {
	case ENOTTY:
	case ENOSYS:
	case EOPNOTSUPP:
		snprintf(msg, len, "%s is not on a reflinkfs mount", path);
		break;
	case EPERM:
		snprintf(msg, len, "%s: only root or the user who mounted the filesystem may run du",
			 path);
		break;
	case ESTALE:
	case ENOENT:
		snprintf(msg, len, "%s was removed or replaced while it was being walked", path);
		break;
	case EIO:
	case EUCLEAN:
		snprintf(msg, len, "%s: part of the tree cannot be read (%s): the mount's log names "
			 "the block; run `reflinkfs scrub` on the mount, or `reflinkfs fsck` on the "
			 "unmounted pool", path, strerror(err));
		break;
	default:
		snprintf(msg, len, "%s: %s", path, strerror(err));
	}
}

/* Deleted files and snapshots share their blocks until the daemon's
 * background release gets to them: wait for it a while (it usually takes
 * milliseconds), so that Exclusive counts those blocks; say so when it
 * does not finish (a mount with -o noreclaim, or a huge deletion). */
static void wait_reclaim(int fd, const char *path)
{
	struct rfs_ioc_reclaim r;
	double t0 = now_s(), moved = t0;
	uint64_t last = UINT64_MAX;
	while (!ioctl(fd, RFS_IOC_RECLAIM, &r) && r.trees) {
		double t = now_s();
		if (r.blocks < last) {
			last = r.blocks;
			moved = t;
		}
		if (t - t0 > 10 || t - moved > 1) {
			fprintf(stderr, "reflinkfs du: note: the blocks of deleted files or snapshots "
				"(about %llu) are still being freed on the mount of %s: blocks they share "
				"count as Shared until then\n", (unsigned long long)r.blocks, path);
			return;
		}
		usleep(20000);
	}
}

/* Run the du of path; 0 with *st filled, or -1 with msg set. */
static int du_path(const char *path, struct rfs_du_stats *st, char *msg, size_t len)
{
	struct stat sb;
	struct rfs_ioc_du_step s;
	memset(&s, 0, sizeof(s));
	/* A symlink given as PATH is not followed, as du does. */
	if (lstat(path, &sb)) {
		snprintf(msg, len, "cannot access %s: %s", path, strerror(errno));
		return -1;
	}
	int dfd;
	if (S_ISDIR(sb.st_mode)) {
		dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	} else {
		/* The ioctl goes to the directory holding PATH, which names
		 * it: a file need not be readable, nor a FIFO opened. */
		char *c1 = strdup(path), *c2 = strdup(path);
		dfd = -1;
		errno = ENOMEM;
		if (c1 && c2 && strlen(basename(c2)) < sizeof(s.name)) {
			snprintf(s.name, sizeof(s.name), "%s", basename(c2));
			dfd = open(dirname(c1), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		} else if (c1 && c2) {
			errno = ENAMETOOLONG;
		}
		free(c1);
		free(c2);
	}
	if (dfd < 0) {
		snprintf(msg, len, "cannot open %s%s: %s", S_ISDIR(sb.st_mode) ? "" : "the directory of ",
			 path, strerror(errno));
		return -1;
	}
	s.ino = sb.st_ino;
	wait_reclaim(dfd, path);
	bool tty = isatty(2);
	double t0 = now_s(), last = 0;
	int ret = 0;
	do {
		memset(&s.st, 0, sizeof(s.st));
		if (ioctl(dfd, RFS_IOC_DU_STEP, &s)) {
			ret = errno;
			break;
		}
		double t = now_s();
		/* Only big trees get a status line: after the first half second. */
		if (tty && !s.st.done && t - t0 >= 0.5 && t - last >= 0.2) {
			progress(path, &s.st, t - t0, false);
			last = t;
		}
	} while (!s.st.done);
	if (tty && last > 0)
		progress(path, &s.st, now_s() - t0, true);
	close(dfd);
	if (ret) {
		explain(path, ret, msg, len);
		return -1;
	}
	*st = s.st;
	return 0;
}

int cmd_du(int argc, char **argv)
{
	struct opts o = {0};
	int ret = DU_OK, npaths = 0;
	char **paths = calloc((size_t)argc, sizeof(*paths));
	if (!paths)
		return DU_FAILED;
	/* Options anywhere before "--", as du takes them; -h is du's
	 * --human-readable, so help is only --help. */
	static const struct option longopts[] = {{"help", no_argument, NULL, 'H'},
						 {"human-readable", no_argument, NULL, 'h'},
						 {"json", no_argument, NULL, 'j'},
						 {"meta", no_argument, NULL, 'm'},
						 {0}};
	optind = 0;
	for (int c; (c = cli_getopt(argc, argv, "du", "h", longopts)) != -1;) {
		if (c == 'H') {
			du_usage(stdout);
			free(paths);
			return DU_OK;
		} else if (c == 'h') {
			o.human = true;
		} else if (c == 'j') {
			o.json = true;
		} else if (c == 'm') {
			o.meta = true;
		} else {
			free(paths);
			return DU_USAGE;
		}
	}
	for (int i = optind; i < argc; i++)
		paths[npaths++] = argv[i];
	if (!npaths) {
		fprintf(stderr, "reflinkfs du: no PATH given\n");
		du_usage(stderr);
		free(paths);
		return DU_USAGE;
	}
	if (o.json)
		printf("[");
	else
		header(&o);
	bool any = false;
	for (int i = 0; i < npaths; i++) {
		const char *p = paths[i];
		struct rfs_du_stats st;
		char msg[4096 + 512];
		if (du_path(p, &st, msg, sizeof(msg))) {
			fflush(stdout);
			fprintf(stderr, "reflinkfs du: %s\n", msg);
			ret = DU_FAILED;
			if (o.json) {
				printf("%s{\"path\":", any ? "," : "");
				cli_json_str(stdout, p);
				printf(",\"error\":");
				cli_json_str(stdout, msg);
				printf("}");
				any = true;
			}
			continue;
		}
		if (st.changes)
			fprintf(stderr, "reflinkfs du: note: %s changed while it was walked (%llu "
				"operations on the mount): the figures are approximate\n", p,
				(unsigned long long)st.changes);
		if (o.json) {
			printf("%s{\"path\":", any ? "," : "");
			cli_json_str(stdout, p);
			printf(",\"total\":%llu,\"set\":%llu,\"exclusive\":%llu,\"shared\":%llu,"
			       "\"meta_set\":%llu,\"meta_exclusive\":%llu,\"files\":%llu,\"dirs\":%llu,"
			       "\"changes\":%llu,\"exact\":%s}",
			       (unsigned long long)st.total, (unsigned long long)st.set,
			       (unsigned long long)st.exclusive, (unsigned long long)st.shared,
			       (unsigned long long)st.meta_set, (unsigned long long)st.meta_exclusive,
			       (unsigned long long)st.files, (unsigned long long)st.dirs,
			       (unsigned long long)st.changes, st.changes ? "false" : "true");
			any = true;
		} else {
			size_col(&o, st.total);
			size_col(&o, st.set);
			size_col(&o, st.exclusive);
			size_col(&o, st.shared);
			if (o.meta) {
				size_col(&o, st.meta_set);
				size_col(&o, st.meta_exclusive);
			}
			printf("%s\n", p);
		}
		fflush(stdout);
	}
	if (o.json)
		printf("]\n");
	free(paths);
	return ret;
}
