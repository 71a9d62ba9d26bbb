/*
 * reflinkfs mount [-f] [-o OPTIONS] POOL MOUNTPOINT, and the mount helper
 * (mount -t fuse.reflinkfs POOL MNT -o OPTIONS; /etc/fstab).
 */
#include "cli/cli.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuse/rfs_fuse.h"
#include "reflinkfs/journal.h"
#include "util/size.h"
#include "util/mountinfo.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: reflinkfs mount [-f] [-d] [-o OPTIONS] POOL MOUNTPOINT\n\n"
		   "Mount the reflinkfs pool POOL on MOUNTPOINT.  Runs in the background\n"
		   "unless -f.  Unmount with `reflinkfs umount MOUNTPOINT`.\n\n"
		   "  -f              stay in the foreground\n"
		   "  -d              debug: foreground, and print every FUSE request\n"
		   "  -o OPTIONS      comma-separated mount options:\n"
		   "       ro               read-only\n"
		   "       commit=SECONDS   background commit interval (default 5)\n"
		   "       threads=N        FUSE worker threads, 2 to 256 (default: for a pool\n"
		   "                        file on tmpfs 1 per CPU, 2 to 16; else 16); a\n"
		   "                        request a blocking watch holds gets a temporary\n"
		   "                        one in its place\n"
		   "       uring, nouring   take requests over io_uring (Linux 6.14+) when the\n"
		   "                        kernel allows it (the default; as root: echo Y >\n"
		   "                        /sys/module/fuse/parameters/enable_uring), or never\n"
		   "       writeback        kernel writeback cache: faster small writes, but\n"
		   "                        SEEK_DATA/SEEK_HOLE do not see data still cached\n"
		   "                        in the kernel (off by default)\n"
		   "       noacl            no POSIX ACLs (system.posix_acl_* are then plain xattrs)\n"
		   "       noreclaim        do not free deleted files' blocks in the background:\n"
		   "                        they stay allocated (queued on disk) until a mount\n"
		   "                        without it, or until an operation needs the space\n"
		   "       journal_size=SIZE  change journal retention, kept in the pool (default\n"
		   "                        1/64 of the pool; at least 64K); oldest changes go first\n"
		   "       nojournal        record no changes (to measure the journal's cost);\n"
		   "                        cursors of before get `journal reset` afterwards\n"
		   "       allow_other, allow_root, ... and the other FUSE options pass through\n"
		   "  -h, --help      show this help\n\n"
		   "Data is durable after fsync/fdatasync, and at the latest `commit` seconds\n"
		   "after it was written.  `mount -o remount,ro MOUNTPOINT` (and rw) works\n"
		   "through mount(8) and the helper mount.fuse.reflinkfs (make install).\n");
}

/* Split our own options off; the rest goes to libfuse. */
static int parse_opts(const char *in, struct rfs_mount_opts *o, char **rest)
{
	char *copy = strdup(in ? in : ""), *save = NULL;
	size_t cap = strlen(in ? in : "") + 1;
	char *out = calloc(1, cap + 1);
	if (!copy || !out) {
		free(copy);
		free(out);
		return -1;
	}
	for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		if (!strcmp(t, "ro")) {
			o->rdonly = true;
		} else if (!strcmp(t, "rw")) {
			o->rdonly = false;
		} else if (!strncmp(t, "commit=", 7)) {
			char *end;
			unsigned long v = strtoul(t + 7, &end, 10);
			if (*end || v == 0 || v > 3600) {
				fprintf(stderr, "reflinkfs mount: commit=%s: give seconds from 1 to 3600\n", t + 7);
				free(copy);
				free(out);
				return -1;
			}
			o->commit_secs = (unsigned)v;
		} else if (!strncmp(t, "threads=", 8)) {
			char *end;
			unsigned long v = strtoul(t + 8, &end, 10);
			if (!t[8] || *end || v < RFS_FUSE_THREADS_MIN || v > RFS_FUSE_THREADS_MAX) {
				fprintf(stderr, "reflinkfs mount: threads=%s: give a number of worker threads from %d to %d\n",
					t + 8, RFS_FUSE_THREADS_MIN, RFS_FUSE_THREADS_MAX);
				free(copy);
				free(out);
				return -1;
			}
			o->threads = (unsigned)v;
		} else if (!strcmp(t, "no_writeback")) {
			o->writeback = false;
		} else if (!strcmp(t, "writeback")) {
			o->writeback = true;
		} else if (!strcmp(t, "uring")) {
			o->uring = 1;
		} else if (!strcmp(t, "nouring")) {
			o->uring = 0;
		} else if (!strcmp(t, "nojournal")) {
			o->nojournal = true;
		} else if (!strncmp(t, "journal_size=", 13)) {
			const char *why = NULL;
			if (rfs_size_parse(t + 13, &o->journal_size, &why) ||
			    o->journal_size < RFS_JOURNAL_MIN_BYTES) {
				fprintf(stderr, "reflinkfs mount: journal_size=%s: %s (give a size of at least 64K, like 256M)\n",
					t + 13, why ? why : "too small");
				free(copy);
				free(out);
				return -1;
			}
		} else if (!strcmp(t, "noacl")) {
			o->acl = false;
		} else if (!strcmp(t, "acl")) {
			o->acl = true;
		} else if (!strcmp(t, "noreclaim")) {
			o->noreclaim = true;
		} else if (!strcmp(t, "reclaim")) {
			o->noreclaim = false;
		} else if (!strcmp(t, "debug")) {
			o->debug = true;
			o->foreground = true;
		} else if (!strcmp(t, "defaults") || !strcmp(t, "auto") || !strcmp(t, "noauto") ||
			   !strcmp(t, "user") || !strcmp(t, "users") || !strcmp(t, "nouser") ||
			   !strcmp(t, "nofail") || !strcmp(t, "_netdev") || !strncmp(t, "x-", 2) ||
			   !strncmp(t, "comment=", 8) || !strcmp(t, "owner") || !strcmp(t, "group")) {
			/* mount(8) / fstab options, not for us */
		} else {
			if (*out)
				strcat(out, ",");
			strcat(out, t);
		}
	}
	free(copy);
	*rest = out;
	return 0;
}

static int mnt_cb(void *arg, const struct rfs_mountinfo *m)
{
	return !strcmp(m->mnt, (const char *)arg);
}

static bool is_mountpoint(const char *path)
{
	return rfs_mountinfo_each(NULL, mnt_cb, (void *)path) > 0;
}

static int do_mount(const char *pool, const char *mnt, const char *opts, bool fg, bool debug)
{
	struct rfs_mount_opts o = {.foreground = fg || debug, .debug = debug, .writeback = false,
				   .acl = true, .uring = -1, .lock_fd = -1};
	char rpool[PATH_MAX], rmnt[PATH_MAX];
	struct stat st;
	char *rest = NULL;
	if (rfs_mountinfo_has_opt(opts, "remount"))
		return cli_remount(mnt, opts);
	if (parse_opts(opts, &o, &rest))
		return 2;
	if (!realpath(pool, rpool) || stat(rpool, &st)) {
		fprintf(stderr, "reflinkfs mount: cannot find the pool %s: %s\n", pool, strerror(errno));
		free(rest);
		return 1;
	}
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
		fprintf(stderr, "reflinkfs mount: %s is not a pool (neither a file nor a block device)\n", pool);
		free(rest);
		return 1;
	}
	if (stat(mnt, &st)) {
		if (errno == ENOTCONN)
			fprintf(stderr, "reflinkfs mount: %s is a dead mount (its daemon is gone); run `reflinkfs umount %s` first\n",
				mnt, mnt);
		else
			fprintf(stderr, "reflinkfs mount: mountpoint %s: %s (create the directory first)\n", mnt,
				strerror(errno));
		free(rest);
		return 1;
	}
	if (!S_ISDIR(st.st_mode)) {
		fprintf(stderr, "reflinkfs mount: mountpoint %s is not a directory\n", mnt);
		free(rest);
		return 1;
	}
	if (!realpath(mnt, rmnt)) {
		fprintf(stderr, "reflinkfs mount: mountpoint %s: %s\n", mnt, strerror(errno));
		free(rest);
		return 1;
	}
	if (is_mountpoint(rmnt)) {
		fprintf(stderr, "reflinkfs mount: %s is busy: something is already mounted there\n", rmnt);
		free(rest);
		return 1;
	}
	o.lock_fd = cli_lock_pool(rpool, !o.rdonly, "mount");
	if (o.lock_fd < 0) {
		free(rest);
		return 1;
	}
	if (cli_mark_daemon(o.lock_fd))
		fprintf(stderr, "reflinkfs mount: warning: cannot mark %s as held by this daemon (%s); a mount right after this one is unmounted may say it is in use\n",
			rpool, strerror(errno));
	o.pool = rpool;
	o.mountpoint = rmnt;
	o.fuse_opts = rest;
	int ret = rfs_fuse_main(&o);
	free(rest);
	return ret;
}

int cmd_mount(int argc, char **argv)
{
	static const struct option lo[] = {{"help", no_argument, 0, 'h'},
					   {"foreground", no_argument, 0, 'f'},
					   {0, 0, 0, 0}};
	bool fg = false, debug = false;
	char *opts = NULL;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "+fdo:h", lo, NULL)) != -1) {
		switch (c) {
		case 'f':
			fg = true;
			break;
		case 'd':
			debug = true;
			break;
		case 'o': {
			size_t l = (opts ? strlen(opts) + 1 : 0) + strlen(optarg) + 1;
			char *n = malloc(l);
			if (!n)
				return 1;
			snprintf(n, l, "%s%s%s", opts ? opts : "", opts ? "," : "", optarg);
			free(opts);
			opts = n;
			break;
		}
		case 'h':
			usage(stdout);
			free(opts);
			return 0;
		default:
			usage(stderr);
			free(opts);
			return 2;
		}
	}
	if (optind != argc - 2) {
		usage(stderr);
		free(opts);
		return 2;
	}
	int ret = do_mount(argv[optind], argv[optind + 1], opts, fg, debug);
	free(opts);
	return ret;
}

/*
 * mount.fuse.reflinkfs POOL MNT [-o opts] [-n] [-s] [-f] [-v] [-t type]:
 * what mount(8) runs for `mount -t fuse.reflinkfs`, /etc/fstab and
 * `mount -o remount`.  mount(8) leaves out options that are the kernel's
 * defaults, dev and suid among them, but FUSE mounts default to nodev and
 * nosuid: so, as libfuse's mount.fuse3 does, dev and suid are asked for
 * unless nodev or nosuid was given (mount(8) itself adds those for user
 * mounts).
 */
int cmd_mount_helper(int argc, char **argv)
{
	const char *pool = NULL, *mnt = NULL, *opts = NULL;
	bool fg = false;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-o") && i + 1 < argc)
			opts = argv[++i];
		else if (!strcmp(argv[i], "-t") && i + 1 < argc)
			i++; /* fuse.reflinkfs: we know */
		else if (!strcmp(argv[i], "-f"))
			fg = true;
		else if (!strcmp(argv[i], "-n") || !strcmp(argv[i], "-s") || !strcmp(argv[i], "-v"))
			continue;
		else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			usage(stdout);
			return 0;
		} else if (argv[i][0] == '-') {
			fprintf(stderr, "mount.fuse.reflinkfs: option %s is not supported\n", argv[i]);
			return 2;
		} else if (!pool)
			pool = argv[i];
		else if (!mnt)
			mnt = argv[i];
		else {
			fprintf(stderr, "mount.fuse.reflinkfs: unexpected argument '%s'\n", argv[i]);
			return 2;
		}
	}
	if (!pool || !mnt) {
		fprintf(stderr, "usage: mount.fuse.reflinkfs POOL MOUNTPOINT [-o OPTIONS]\n");
		return 2;
	}
	size_t len = (opts ? strlen(opts) : 0) + sizeof(",dev,suid");
	char *all = malloc(len);
	if (!all)
		return 1;
	snprintf(all, len, "%s%s%s", opts ? opts : "",
		 rfs_mountinfo_has_opt(opts, "nodev") ? "" : ",dev",
		 rfs_mountinfo_has_opt(opts, "nosuid") ? "" : ",suid");
	int ret = do_mount(pool, mnt, all[0] == ',' ? all + 1 : all, fg, false);
	free(all);
	return ret;
}
