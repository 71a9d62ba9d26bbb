/*
 * reflinkfs scrub [--json] MOUNTPOINT: read and verify every data block
 * of a mounted filesystem (ioctls on the mount point, in steps), and the
 * data part of `reflinkfs fsck --data POOL` (the same walker on the pool
 * opened read-only).  Both print one line per damaged block and file
 * using it, then a summary; a progress bar goes to stderr when it is a
 * terminal.
 */
#include "cli/cli.h"

#include <errno.h>
#include <getopt.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "reflinkfs/fs.h"

/* Where a scrub comes from: the library (offline) or the mount (ioctls). */
struct source {
	/* Work a while; 1 while more remains, 0 when done, < 0 -errno. */
	int (*step)(void *arg, struct rfs_scrub_stats *st);
	/* Entry i of the report; -ENOENT past the end.  r->path stays valid
	 * until the next call. */
	int (*record)(void *arg, uint64_t i, struct rfs_scrub_record *r);
	void *arg;
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void progress(const struct rfs_scrub_stats *st, double secs, bool last)
{
	double total = st->used_blocks ? (double)st->used_blocks : 1;
	double frac = st->done ? 1 : st->data_blocks / total;
	if (frac > 0.99 && !st->done)
		frac = 0.99; /* used blocks include metadata: an estimate */
	int w = 30, fill = (int)(frac * w);
	char bar[32];
	for (int i = 0; i < w; i++)
		bar[i] = i < fill ? '#' : '.';
	bar[w] = 0;
	double mib = st->data_blocks * (double)RFS_BLOCK_SIZE / (1 << 20);
	fprintf(stderr, "\r[%s] %3.0f%%  %.1f MiB checked  %.1f MiB/s  %llu damaged\033[K",
		bar, frac * 100, mib, secs > 0 ? mib / secs : 0,
		(unsigned long long)st->damaged_blocks);
	if (last)
		fprintf(stderr, "\r\033[K");
	fflush(stderr);
}

static const char *err_text(int err)
{
	return err == -EBADMSG ? "checksum mismatch" : strerror(-err);
}

/* The path as the user sees it: below prefix for the top volume. */
static void print_path(FILE *f, const char *prefix, const struct rfs_scrub_record *r)
{
	if (!r->path) {
		fprintf(f, "(inode %llu, no name: unlinked while open)", (unsigned long long)r->ino);
		return;
	}
	if (r->volume != RFS_TOP_VOLUME)
		fprintf(f, "volume %llu:%s", (unsigned long long)r->volume, r->path);
	else if (prefix && *prefix)
		fprintf(f, "%s%s", prefix, strcmp(r->path, "/") ? r->path : "");
	else
		fputs(*r->path ? r->path : "/", f);
}

static void json_path(FILE *f, const char *prefix, const struct rfs_scrub_record *r)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&buf, &len);
	if (!m) {
		fputs("null", f);
		return;
	}
	print_path(m, prefix, r);
	fclose(m);
	if (r->path)
		cli_json_str(f, buf);
	else
		fputs("null", f);
	free(buf);
}

/*
 * Run a scrub to its end and print it (label starts each text line).
 * Returns the number of problems (damaged blocks and unreadable trees;
 * 0 = clean) or a negative errno with a message printed.
 */
static long run(const char *cmd, const char *label, const char *prefix, const struct source *src,
		bool json)
{
	struct rfs_scrub_stats st;
	bool tty = isatty(2);
	double t0 = now_s(), last = 0;
	int ret;
	while ((ret = src->step(src->arg, &st)) == 1) {
		double t = now_s();
		if (tty && t - last >= 0.2) {
			progress(&st, t - t0, false);
			last = t;
		}
	}
	double secs = now_s() - t0;
	if (tty && last > 0)
		progress(&st, secs, true);
	if (ret < 0) {
		fprintf(stderr, "reflinkfs %s: %s: the scrub stopped: %s\n", cmd, label, strerror(-ret));
		return ret;
	}
	struct rfs_scrub_record r;
	uint64_t i;
	if (json) {
		printf("{\"blocks_checked\":%llu,\"bytes_checked\":%llu,\"damaged_blocks\":%llu,"
		       "\"files_affected\":%llu,\"unreadable_trees\":%llu,\"volumes\":%llu,"
		       "\"directories\":%llu,\"files\":%llu,\"seconds\":%.3f,\"damage\":[",
		       (unsigned long long)st.data_blocks,
		       (unsigned long long)st.data_blocks * RFS_BLOCK_SIZE,
		       (unsigned long long)st.damaged_blocks, (unsigned long long)st.files_affected,
		       (unsigned long long)st.meta_errors, (unsigned long long)st.volumes,
		       (unsigned long long)st.dirs, (unsigned long long)st.files, secs);
		for (i = 0; (ret = src->record(src->arg, i, &r)) == 0; i++) {
			printf("%s{\"kind\":\"%s\",\"error\":", i ? "," : "",
			       r.kind == RFS_SCRUB_DATA ? "data" : "metadata");
			cli_json_str(stdout, err_text(r.err));
			printf(",\"block\":%llu,\"volume\":%llu,\"inode\":%llu,\"offset\":%llu,\"path\":",
			       (unsigned long long)r.blocknr, (unsigned long long)r.volume,
			       (unsigned long long)r.ino, (unsigned long long)r.offset);
			json_path(stdout, prefix, &r);
			printf("}");
		}
		printf("]}\n");
	} else {
		for (i = 0; (ret = src->record(src->arg, i, &r)) == 0; i++) {
			printf("%s: ", label);
			if (r.kind == RFS_SCRUB_DATA) {
				printf("data block %llu: %s: ", (unsigned long long)r.blocknr,
				       err_text(r.err));
				print_path(stdout, prefix, &r);
				printf(" at offset %llu\n", (unsigned long long)r.offset);
			} else {
				printf("cannot read the tree of ");
				print_path(stdout, prefix, &r);
				printf(": %s (damaged metadata: the log names the block; run "
				       "`reflinkfs fsck` on the unmounted pool)\n", strerror(-r.err));
			}
		}
		printf("%s: %llu data blocks (%.1f MiB) checked in %.1f s: %llu damaged, "
		       "%llu file%s affected, %llu unreadable tree%s\n",
		       label, (unsigned long long)st.data_blocks,
		       st.data_blocks * (double)RFS_BLOCK_SIZE / (1 << 20), secs,
		       (unsigned long long)st.damaged_blocks, (unsigned long long)st.files_affected,
		       st.files_affected == 1 ? "" : "s", (unsigned long long)st.meta_errors,
		       st.meta_errors == 1 ? "" : "s");
		if (st.damaged_blocks)
			printf("%s: reading a damaged block gives EIO; restore the files named above "
			       "from a backup\n", label);
	}
	fflush(stdout);
	if (ret != -ENOENT) {
		fprintf(stderr, "reflinkfs %s: %s: cannot fetch the report: %s\n", cmd, label,
			strerror(-ret));
		return ret;
	}
	return (long)(st.damaged_blocks + st.meta_errors);
}

/* ---- offline: fsck --data ------------------------------------------------ */

struct lib_src {
	rfs_scrub *s;
};

static int lib_step(void *arg, struct rfs_scrub_stats *st)
{
	struct lib_src *l = arg;
	int ret = 1;
	/* Nobody else uses the pool: big pieces, a progress update each. */
	for (int i = 0; i < 16 && ret == 1; i++)
		ret = rfs_scrub_step(l->s, 4096);
	rfs_scrub_get_stats(l->s, st);
	return ret;
}

static int lib_record(void *arg, uint64_t i, struct rfs_scrub_record *r)
{
	struct lib_src *l = arg;
	return rfs_scrub_record(l->s, i, r);
}

long cli_fsck_data(const char *pool)
{
	rfs_fs *fs;
	int ret = rfs_fs_open(pool, RFS_FS_RDONLY, &fs);
	if (ret) {
		fprintf(stderr, "reflinkfs fsck: cannot open %s to check its data: %s\n", pool,
			strerror(-ret));
		return ret;
	}
	struct lib_src l;
	ret = rfs_scrub_begin(fs, &l.s);
	if (ret) {
		fprintf(stderr, "reflinkfs fsck: %s: cannot start the data check: %s\n", pool,
			strerror(-ret));
		rfs_fs_close(fs);
		return ret;
	}
	struct source src = {lib_step, lib_record, &l};
	long n = run("fsck", pool, NULL, &src, false);
	rfs_scrub_end(l.s);
	rfs_fs_close(fs);
	return n;
}

/* ---- online: reflinkfs scrub ----------------------------------------------- */

/* Exit statuses: the same values as fsck's (src/cli/fsck.c). */
enum { SCRUB_CLEAN = 0, SCRUB_DAMAGE = 4, SCRUB_FAILED = 8, SCRUB_USAGE = 16 };

struct ioc_src {
	int fd;
	struct rfs_ioc_scrub_report rep; /* the page last fetched */
	uint64_t first;
	uint32_t off, idx;
	char path[RFS_IOC_SCRUB_PATH_MAX + 1];
};

static int ioc_step(void *arg, struct rfs_ioc_scrub_step *s)
{
	struct ioc_src *c = arg;
	return ioctl(c->fd, RFS_IOC_SCRUB_STEP, s) ? -errno : 0;
}

static int ioc_step_src(void *arg, struct rfs_scrub_stats *st)
{
	struct rfs_ioc_scrub_step s;
	int ret = ioc_step(arg, &s);
	if (ret)
		return ret;
	*st = s.st;
	return s.st.done ? 0 : 1;
}

static int ioc_record(void *arg, uint64_t i, struct rfs_scrub_record *r)
{
	struct ioc_src *c = arg;
	/* Fetch the page holding i (the report is read in order). */
	if (i < c->first || i >= c->first + c->rep.count || c->rep.count == 0) {
		memset(&c->rep, 0, sizeof(c->rep));
		c->rep.first = i;
		if (ioctl(c->fd, RFS_IOC_SCRUB_REPORT, &c->rep))
			return -errno;
		c->first = i;
		c->off = 0;
		c->idx = 0;
		if (c->rep.count == 0)
			return -ENOENT;
	}
	while (c->first + c->idx < i) { /* skip to i */
		struct rfs_ioc_scrub_rec h;
		memcpy(&h, c->rep.buf + c->off, sizeof(h));
		c->off += (uint32_t)((sizeof(h) + h.pathlen + 7) & ~(size_t)7);
		c->idx++;
	}
	struct rfs_ioc_scrub_rec h;
	if (c->off + sizeof(h) > sizeof(c->rep.buf))
		return -EPROTO;
	memcpy(&h, c->rep.buf + c->off, sizeof(h));
	if (h.pathlen > RFS_IOC_SCRUB_PATH_MAX || c->off + sizeof(h) + h.pathlen > sizeof(c->rep.buf))
		return -EPROTO;
	memcpy(c->path, c->rep.buf + c->off + sizeof(h), h.pathlen);
	c->path[h.pathlen] = 0;
	*r = (struct rfs_scrub_record){h.kind, h.err, h.blocknr, h.volume, h.ino, h.offset,
				       (h.flags & 1) ? NULL : c->path};
	return 0;
}

static void scrub_usage(FILE *f)
{
	fprintf(f,
		"usage: reflinkfs scrub [--json] MOUNTPOINT\n\n"
		"Read every data block in use on the mounted reflinkfs at MOUNTPOINT, in\n"
		"every volume, and verify its checksum; the tree nodes read on the way\n"
		"are verified too.  The filesystem keeps serving meanwhile (the scrub\n"
		"holds the pool's read lock only in short pieces).  Prints one line per\n"
		"damaged block and file using it (a cloned block: every clone; a\n"
		"hard-linked file: every name), then a summary; a progress bar goes to\n"
		"stderr when it is a terminal.  Interrupting it stops the scrub.\n\n"
		"  --json   print the summary and the damage as one JSON object\n\n"
		"Root or the user who mounted may scrub.  Exit status (as fsck's):\n"
		"  0   clean\n"
		"  4   damaged data blocks or unreadable metadata found\n"
		"  8   the scrub could not run (not a reflinkfs mount, no permission,\n"
		"      an I/O error, interrupted)\n"
		"  16  usage error\n"
		"To check an unmounted pool use `reflinkfs fsck --data POOL`.\n");
}

int cmd_scrub(int argc, char **argv)
{
	bool json = false;
	const char *mnt = NULL;
	if (cli_wants_help(argc, argv)) {
		scrub_usage(stdout);
		return 0;
	}
	static const struct option longopts[] = {{"json", no_argument, NULL, 'j'}, {0}};
	optind = 0;
	for (int c; (c = cli_getopt(argc, argv, "scrub", "", longopts)) != -1;) {
		if (c != 'j')
			return SCRUB_USAGE;
		json = true;
	}
	if (optind + 1 < argc) {
		fprintf(stderr, "reflinkfs scrub: one MOUNT only\n");
		scrub_usage(stderr);
		return SCRUB_USAGE;
	}
	if (optind < argc)
		mnt = argv[optind];
	if (!mnt) {
		scrub_usage(stderr);
		return SCRUB_USAGE;
	}
	static struct ioc_src c;
	c.fd = open(mnt, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (c.fd < 0) {
		fprintf(stderr, "reflinkfs scrub: cannot open %s: %s%s\n", mnt, strerror(errno),
			errno == ENOTDIR ? " (give the mount point)" : "");
		return SCRUB_FAILED;
	}
	/* The first step tells whether this is a reflinkfs mount at all. */
	struct rfs_ioc_scrub_step first;
	int ret = ioc_step(&c, &first);
	if (ret) {
		if (ret == -ENOTTY || ret == -ENOSYS || ret == -EINVAL || ret == -EOPNOTSUPP)
			fprintf(stderr, "reflinkfs scrub: %s is not on a reflinkfs mount\n", mnt);
		else if (ret == -EPERM)
			fprintf(stderr, "reflinkfs scrub: %s: only root or the user who mounted it may scrub\n",
				mnt);
		else
			fprintf(stderr, "reflinkfs scrub: %s: %s\n", mnt, strerror(-ret));
		close(c.fd);
		return SCRUB_FAILED;
	}
	/* Paths print below the mount point as given (without a trailing /). */
	char *prefix = strdup(mnt);
	if (!prefix) {
		close(c.fd);
		return SCRUB_FAILED;
	}
	for (size_t n = strlen(prefix); n > 1 && prefix[n - 1] == '/'; n--)
		prefix[n - 1] = 0;
	if (!strcmp(prefix, "/"))
		prefix[0] = 0;
	struct source src = {ioc_step_src, ioc_record, &c};
	long n = run("scrub", mnt, prefix, &src, json);
	free(prefix);
	close(c.fd);
	return n < 0 ? SCRUB_FAILED : n > 0 ? SCRUB_DAMAGE : SCRUB_CLEAN;
}
