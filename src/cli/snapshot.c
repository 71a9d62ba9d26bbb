/*
 * reflinkfs snapshot [--readonly] SRC DST, snapshot delete, snapshot
 * restore (and `snapshot list`, in snapshot_list.c): ioctls on the
 * parent directory of the snapshot's root (fs.h).  The daemon does the
 * work in O(1) and checks the caller's permissions; this side finds the
 * directories, pushes dirty pages to the daemon first, and turns errors
 * into messages that name the path.
 */
#include "cli/cli.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "reflinkfs/fs.h"

static void snapshot_usage(FILE *f)
{
	fprintf(f,
		"usage: reflinkfs snapshot [--readonly] [--json] SRC DST\n"
		"       reflinkfs snapshot list [--json] [PATH]\n"
		"       reflinkfs snapshot delete [--wait] [--json] PATH\n"
		"       reflinkfs snapshot restore [--json] SNAP DIR\n\n"
		"Snapshot directory SRC, anywhere in a reflinkfs mount (its root too), as\n"
		"the new directory DST in the same mount: DST then holds exactly what SRC\n"
		"held, and both change independently afterwards.  It costs the same for a\n"
		"directory of ten files and of ten million (plus a little per hard-linked\n"
		"file below SRC and per snapshot nested below it), and it is atomic: every\n"
		"write that returned before the snapshot is in it, none that started after\n"
		"(dirty pages of shared mmaps are written back first).  Each snapshot is a\n"
		"volume of its own: mv and ln across its root fail with EXDEV (mv then\n"
		"copies, and a copy inside reflinkfs clones).\n\n"
		"  --readonly  every change below DST fails with EROFS (DST itself can\n"
		"              still be renamed or deleted)\n"
		"  --json      print what was done as one JSON object\n\n"
		"Subcommands (`reflinkfs snapshot SUBCOMMAND --help` for each):\n"
		"  list     every snapshot of the mount: id, path, creation time, source\n"
		"           volume, read-only\n"
		"  delete   delete a snapshot and everything in it, in one step\n"
		"  restore  make DIR a writable snapshot of SNAP atomically, keeping DIR's\n"
		"           old content next to it\n\n"
		"Permissions: writing DST's directory and reading SRC, as for mkdir and a\n"
		"copy.  `reflinkfs clone SRC DST` with a directory SRC does the same as\n"
		"`reflinkfs snapshot SRC DST`.\n\n"
		"Exit status:\n"
		"  0  done\n"
		"  1  refused or failed: no space, read-only snapshot or mount, no\n"
		"     permission, an I/O error\n"
		"  2  usage error\n"
		"  3  a path is missing or not a directory, DST exists, or (delete) PATH\n"
		"     is not a snapshot's root\n"
		"  4  not on a reflinkfs mount, or SRC and DST on different mounts\n");
}

static void delete_usage(FILE *f)
{
	fprintf(f,
		"usage: reflinkfs snapshot delete [--wait] [--json] PATH\n\n"
		"Delete the snapshot whose root is PATH, with everything in it and every\n"
		"snapshot nested below it: the path disappears at once, in one step\n"
		"whatever the snapshot holds, and the blocks only it held come back in\n"
		"the background, resumably across unmount and crashes (`reflinkfs stat\n"
		"MOUNTPOINT` shows what is left; statfs counts it as used until then).\n"
		"(`rm -rf PATH` also works, file by file; `rmdir` of an empty snapshot\n"
		"root too.)  Deleting a snapshot never changes its source, nor the\n"
		"other way round.\n\n"
		"  --wait   then wait until the mount has freed every deleted block (those\n"
		"           of other deletions still queued too), showing on a terminal\n"
		"           how much came back and how many trees are still queued (how\n"
		"           much a deleted tree holds is not known in advance); gives up,\n"
		"           exit 1, when nothing moves for 30 s (a mount with -o noreclaim\n"
		"           frees nothing)\n"
		"  --json   print what was deleted as one JSON object\n\n"
		"Permissions: as rmdir of PATH (write on its directory, the sticky bit\n"
		"respected) and write permission on PATH itself.\n"
		"Exit status: as `reflinkfs snapshot` (3: PATH is not a snapshot's root;\n"
		"use rm -r for an ordinary directory).\n");
}

static void restore_usage(FILE *f)
{
	fprintf(f,
		"usage: reflinkfs snapshot restore [--json] SNAP DIR\n\n"
		"Make DIR a writable snapshot of SNAP, atomically: SNAP is snapshotted as\n"
		"DIR.pre-restore-YYYYMMDD-HHMMSS next to DIR, then that name and DIR swap\n"
		"places in one rename (renameat2 RENAME_EXCHANGE).  Every process sees\n"
		"either the old DIR or the restored one, never a mix.  DIR's old content\n"
		"is kept: it is the old directory itself, now under the name\n"
		"DIR.pre-restore-... (printed), which you delete when you no longer need\n"
		"it (`reflinkfs snapshot delete` if DIR was a snapshot, else rm -r).\n"
		"Processes with files open in the old DIR keep using the old content.\n\n"
		"  --json   print the paths as one JSON object\n\n"
		"SNAP is any directory of the mount (usually a read-only snapshot); DIR\n"
		"must exist, be a directory of the same mount and not its root.\n"
		"Exit status: as `reflinkfs snapshot`.\n");
}

/* ---- paths -------------------------------------------------------------- */

/* Split path into its directory and last name (trailing slashes
 * dropped).  false for "/", ".", ".." or an empty last name. */
static bool split(const char *path, char *dir, size_t dsz, char *name, size_t nsz)
{
	char buf[PATH_MAX];
	if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf))
		return false;
	size_t n = strlen(buf);
	while (n > 1 && buf[n - 1] == '/')
		buf[--n] = 0;
	char *slash = strrchr(buf, '/');
	const char *base = slash ? slash + 1 : buf;
	if (!*base || !strcmp(base, ".") || !strcmp(base, ".."))
		return false;
	if (snprintf(name, nsz, "%s", base) >= (int)nsz)
		return false;
	if (!slash)
		snprintf(dir, dsz, ".");
	else if (slash == buf)
		snprintf(dir, dsz, "/");
	else {
		*slash = 0;
		snprintf(dir, dsz, "%s", buf);
	}
	return true;
}

/* Open a directory of a reflinkfs mount.  Returns the fd, or -(exit
 * status) with a message printed. */
static int open_rfs_dir(const char *cmd, const char *path, const char *role, struct stat *st,
			struct cli_mount *m)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		if (e == ENOTDIR)
			fprintf(stderr, "reflinkfs %s: %s is not a directory%s\n", cmd, path, role);
		else
			fprintf(stderr, "reflinkfs %s: cannot open %s: %s\n", cmd, path, strerror(e));
		return e == ENOTDIR || e == ENOENT || e == ELOOP ? -SNAP_BADPATH : -SNAP_FAILED;
	}
	int ret = fstat(fd, st) ? -errno : cli_fd_mount(fd, m);
	if (ret) {
		fprintf(stderr, "reflinkfs %s: %s: cannot tell which mount it is on: %s\n", cmd,
			path, strerror(-ret));
		close(fd);
		return -SNAP_FAILED;
	}
	if (!m->reflinkfs) {
		fprintf(stderr, "reflinkfs %s: %s is not on a reflinkfs mount\n", cmd, path);
		close(fd);
		return -SNAP_NOTRFS;
	}
	return fd;
}

/* Message and exit status for a failed snapshot ioctl (the path that
 * names the new or deleted entry is path, its directory's fd dfd). */
static int ioctl_error(const char *cmd, int e, const char *what, const char *src,
		       const char *path, int dfd)
{
	struct statvfs sv;
	switch (e) {
	case EEXIST:
		fprintf(stderr, "reflinkfs %s: %s already exists (give a new name)\n", cmd, path);
		return SNAP_BADPATH;
	case ENOENT:
		fprintf(stderr, "reflinkfs %s: %s: a directory on the way was removed meanwhile\n",
			cmd, path);
		return SNAP_BADPATH;
	case ENOTDIR:
		fprintf(stderr, "reflinkfs %s: %s is not a directory\n", cmd, src ? src : path);
		return SNAP_BADPATH;
	case EINVAL:
		if (!src) {
			fprintf(stderr, "reflinkfs %s: %s is not a snapshot's root (use rm -r for an "
				"ordinary directory)\n", cmd, path);
			return SNAP_BADPATH;
		}
		break;
	case ENAMETOOLONG:
		fprintf(stderr, "reflinkfs %s: %s: the name is too long (at most %u bytes)\n", cmd,
			path, RFS_NAME_MAX);
		return SNAP_BADPATH;
	case EXDEV:
		fprintf(stderr, "reflinkfs %s: %s and %s are not on the same reflinkfs mount\n", cmd,
			src, path);
		return SNAP_NOTRFS;
	case ENOTTY:
	case ENOSYS:
	case EOPNOTSUPP:
		fprintf(stderr, "reflinkfs %s: %s is not on a reflinkfs mount (or its daemon is too "
			"old for snapshots)\n", cmd, path);
		return SNAP_NOTRFS;
	case EROFS:
		if (!fstatvfs(dfd, &sv) && (sv.f_flag & ST_RDONLY))
			fprintf(stderr, "reflinkfs %s: %s: the mount is read-only\n", cmd, path);
		else
			fprintf(stderr, "reflinkfs %s: %s is inside a read-only snapshot: nothing can "
				"change there (snapshot it without --readonly to get a writable copy)\n",
				cmd, path);
		return SNAP_FAILED;
	case ENOSPC:
		fprintf(stderr, "reflinkfs %s: %s: no space left in the pool (delete snapshots or "
			"files to make room; deleting always works on a full pool)\n", cmd, path);
		return SNAP_FAILED;
	case EACCES:
	case EPERM:
		if (src)
			fprintf(stderr, "reflinkfs %s: %s: permission denied (you need write permission "
				"on its directory and read permission on %s)\n", cmd, path, src);
		else
			fprintf(stderr, "reflinkfs %s: %s: permission denied (you need write permission "
				"on it and on its directory)\n", cmd, path);
		return SNAP_FAILED;
	case EIO:
	case EUCLEAN:
		fprintf(stderr, "reflinkfs %s: %s: %s (damaged metadata: the daemon's log names the "
			"block; run `reflinkfs fsck` on the unmounted pool)\n", cmd, path, strerror(e));
		return SNAP_FAILED;
	}
	fprintf(stderr, "reflinkfs %s: %s %s failed: %s\n", cmd, what, path, strerror(e));
	return SNAP_FAILED;
}

/* ---- create ------------------------------------------------------------- */

/* Snapshot the directory open as sfd (SRC, stat sst) as name in the
 * directory open as dfd.  0 or an errno. */
static int snap_ioctl(int sfd, const struct stat *sst, int dfd, const char *name, bool rdonly,
		      uint64_t *out_ino)
{
	struct rfs_ioc_snapshot s;
	memset(&s, 0, sizeof(s));
	s.src_fd = sfd;
	s.src_ino = sst->st_ino;
	s.flags = rdonly ? RFS_SNAP_RDONLY : 0;
	snprintf(s.name, sizeof(s.name), "%s", name);
	/* Every write that returned must be in the snapshot: pages dirtied
	 * through shared mmaps (and the writeback cache) are still in the
	 * kernel; syncfs writes them back to the daemon (it does not reach
	 * the daemon as a request, but the write-back does). */
	syncfs(sfd);
	if (ioctl(dfd, RFS_IOC_SNAPSHOT, &s))
		return errno;
	if (out_ino)
		*out_ino = s.out_ino;
	return 0;
}

int cli_snapshot_create(const char *cmd, const char *src, const char *dst, bool rdonly,
			bool json)
{
	char dir[PATH_MAX], name[NAME_MAX + 1];
	struct stat sst, dst_st, lst;
	struct cli_mount sm, dm;
	if (!split(dst, dir, sizeof(dir), name, sizeof(name))) {
		fprintf(stderr, "reflinkfs %s: %s cannot be the new snapshot's path (give a new "
			"name in a directory of the mount)\n", cmd, dst);
		return SNAP_BADPATH;
	}
	int sfd = open_rfs_dir(cmd, src, " (reflinkfs clone clones files, reflinkfs snapshot "
			       "directories)", &sst, &sm);
	if (sfd < 0)
		return -sfd;
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0 && !fstat(dfd, &dst_st) && sst.st_dev != dst_st.st_dev) {
		fprintf(stderr, "reflinkfs %s: %s and %s are on different mounts (a snapshot is "
			"made in its source's reflinkfs mount)\n", cmd, src, dst);
		close(dfd);
		close(sfd);
		return SNAP_NOTRFS;
	}
	if (dfd >= 0)
		close(dfd);
	dfd = open_rfs_dir(cmd, dir, "", &dst_st, &dm);
	if (dfd < 0) {
		close(sfd);
		return -dfd;
	}
	int rc;
	if (fstatat(dfd, name, &lst, AT_SYMLINK_NOFOLLOW) == 0) {
		fprintf(stderr, "reflinkfs %s: %s already exists (give a new name)\n", cmd, dst);
		rc = SNAP_BADPATH;
	} else {
		uint64_t ino = 0;
		int e = snap_ioctl(sfd, &sst, dfd, name, rdonly, &ino);
		rc = e ? ioctl_error(cmd, e, "snapshot to", src, dst, dfd) : SNAP_OK;
		if (!e && json) {
			printf("{\"source\":");
			cli_json_str(stdout, src);
			printf(",\"path\":");
			cli_json_str(stdout, dst);
			printf(",\"volume\":%llu,\"ino\":%llu,\"readonly\":%s}\n",
			       (unsigned long long)(ino >> 48), (unsigned long long)ino,
			       rdonly ? "true" : "false");
		}
	}
	close(dfd);
	close(sfd);
	return rc;
}

/* ---- delete ------------------------------------------------------------- */

static double mono_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Wait until the mount holding fd has no deleted blocks left to free
 * (RFS_IOC_RECLAIM), a progress line on a terminal.  0, or an exit
 * status with a message printed. */
static int wait_reclaim(const char *cmd, int fd, const char *path, uint64_t *freed)
{
	struct rfs_ioc_reclaim r, last;
	bool tty = isatty(2), shown = false;
	double start = mono_s(), moved = start;
	uint64_t free0 = 0;
	memset(&last, 0, sizeof(last));
	*freed = 0;
	for (int i = 0;; i++) {
		memset(&r, 0, sizeof(r));
		if (ioctl(fd, RFS_IOC_RECLAIM, &r)) {
			int e = errno;
			if (e == ENOTTY || e == ENOSYS || e == EINVAL)
				return SNAP_OK; /* a daemon that frees at once */
			fprintf(stderr, "%sreflinkfs %s: %s: cannot ask how much is left to free: "
				"%s\n", shown ? "\n" : "", cmd, path, strerror(e));
			return SNAP_FAILED;
		}
		if (i == 0)
			free0 = r.free_blocks;
		*freed = r.free_blocks > free0 ? r.free_blocks - free0 : 0;
		if (r.blocks == 0)
			break;
		double now = mono_s();
		if (i == 0 || r.blocks != last.blocks || r.trees != last.trees ||
		    r.free_blocks != last.free_blocks)
			moved = now;
		else if (now - moved > 30) {
			fprintf(stderr, "%sreflinkfs %s: %s is deleted, but its mount has freed "
				"nothing for 30 s (%llu blocks left; mounted with -o noreclaim?); the "
				"blocks stay queued and are freed by a mount without it\n",
				shown ? "\n" : "", cmd, path, (unsigned long long)r.blocks);
			return SNAP_FAILED;
		}
		last = r;
		if (tty && now - start >= 0.3) {
			/* No bar: how much a deleted directory holds is not known
			 * in advance (the queue's estimate counts file data only,
			 * and grows as nested trees are found), so this shows what
			 * came back and what is still queued. */
			static const char spin[] = "|/-\\";
			fprintf(stderr, "\r%c reclaiming: %.1f MiB freed in %.1f s, %llu trees "
				"queued (about %.1f MiB of file data)\033[K", spin[i % 4],
				*freed * (double)RFS_BLOCK_SIZE / (1 << 20), now - start,
				(unsigned long long)r.trees,
				r.blocks * (double)RFS_BLOCK_SIZE / (1 << 20));
			fflush(stderr);
			shown = true;
		}
		struct timespec nap = {0, 100 * 1000 * 1000};
		nanosleep(&nap, NULL);
	}
	if (shown)
		fprintf(stderr, "\r\033[K");
	return SNAP_OK;
}

static int cmd_delete(int argc, char **argv)
{
	bool json = false, wait = false;
	const char *path = NULL;
	if (cli_wants_help(argc, argv)) {
		delete_usage(stdout);
		return SNAP_OK;
	}
	static const struct option longopts[] = {
		{"json", no_argument, NULL, 'j'}, {"wait", no_argument, NULL, 'w'}, {0}};
	optind = 0;
	for (int c; (c = cli_getopt(argc, argv, "snapshot delete", "", longopts)) != -1;) {
		if (c == 'j')
			json = true;
		else if (c == 'w')
			wait = true;
		else
			return SNAP_USAGE;
	}
	for (int i = optind; i < argc; i++) {
		if (path) {
			delete_usage(stderr);
			return SNAP_USAGE;
		}
		path = argv[i];
	}
	if (!path) {
		delete_usage(stderr);
		return SNAP_USAGE;
	}
	const char *cmd = "snapshot delete";
	char dir[PATH_MAX], name[NAME_MAX + 1];
	struct stat st, dst;
	struct cli_mount m, dm;
	if (!split(path, dir, sizeof(dir), name, sizeof(name))) {
		fprintf(stderr, "reflinkfs %s: %s is not a snapshot's root\n", cmd, path);
		return SNAP_BADPATH;
	}
	int fd = open_rfs_dir(cmd, path, " (a snapshot's root is a directory)", &st, &m);
	if (fd < 0)
		return -fd;
	close(fd);
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0 || fstat(dfd, &dst) || cli_fd_mount(dfd, &dm) || dm.id != m.id) {
		fprintf(stderr, "reflinkfs %s: %s is the root of the mount, not a snapshot\n", cmd,
			path);
		if (dfd >= 0)
			close(dfd);
		return SNAP_BADPATH;
	}
	struct rfs_ioc_snapdel d;
	memset(&d, 0, sizeof(d));
	snprintf(d.name, sizeof(d.name), "%s", name);
	int rc = SNAP_OK;
	uint64_t freed = 0;
	double t0 = mono_s();
	if (ioctl(dfd, RFS_IOC_SNAPSHOT_DELETE, &d))
		rc = ioctl_error(cmd, errno, "deleting", NULL, path, dfd);
	else if (wait)
		rc = wait_reclaim(cmd, dfd, path, &freed);
	if (!rc && json) {
		printf("{\"deleted\":");
		cli_json_str(stdout, path);
		printf(",\"volume\":%llu", (unsigned long long)(st.st_ino >> 48));
		if (wait)
			printf(",\"waited_seconds\":%.3f,\"freed_bytes\":%llu",
			       mono_s() - t0, (unsigned long long)freed * RFS_BLOCK_SIZE);
		printf("}\n");
	}
	close(dfd);
	return rc;
}

/* ---- restore ------------------------------------------------------------ */

static int cmd_restore(int argc, char **argv)
{
	bool json = false;
	const char *path[2] = {NULL, NULL};
	int np = 0;
	if (cli_wants_help(argc, argv)) {
		restore_usage(stdout);
		return SNAP_OK;
	}
	static const struct option longopts[] = {{"json", no_argument, NULL, 'j'}, {0}};
	optind = 0;
	for (int c; (c = cli_getopt(argc, argv, "snapshot restore", "", longopts)) != -1;) {
		if (c != 'j')
			return SNAP_USAGE;
		json = true;
	}
	for (int i = optind; i < argc; i++) {
		if (np == 2) {
			restore_usage(stderr);
			return SNAP_USAGE;
		}
		path[np++] = argv[i];
	}
	if (np != 2) {
		restore_usage(stderr);
		return SNAP_USAGE;
	}
	const char *cmd = "snapshot restore", *snap = path[0], *target = path[1];
	char dir[PATH_MAX], name[NAME_MAX + 1], old[NAME_MAX + 1], oldpath[PATH_MAX + NAME_MAX + 1];
	struct stat sst, tst, dst;
	struct cli_mount sm, tm, dm;
	if (!split(target, dir, sizeof(dir), name, sizeof(name))) {
		fprintf(stderr, "reflinkfs %s: %s cannot be restored (give a directory below the "
			"mount's root)\n", cmd, target);
		return SNAP_BADPATH;
	}
	int sfd = open_rfs_dir(cmd, snap, "", &sst, &sm);
	if (sfd < 0)
		return -sfd;
	int rc = SNAP_FAILED, tfd = open_rfs_dir(cmd, target, "", &tst, &tm), dfd = -1;
	if (tfd < 0) {
		rc = -tfd;
		goto out;
	}
	close(tfd);
	if (sst.st_dev != tst.st_dev) {
		fprintf(stderr, "reflinkfs %s: %s and %s are on different mounts\n", cmd, snap,
			target);
		rc = SNAP_NOTRFS;
		goto out;
	}
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0 || fstat(dfd, &dst) || cli_fd_mount(dfd, &dm) || dm.id != tm.id) {
		fprintf(stderr, "reflinkfs %s: %s is the root of the mount: it cannot be swapped "
			"(restore into a directory below it)\n", cmd, target);
		rc = SNAP_BADPATH;
		goto out;
	}
	/* The name that will keep the old content: DIR.pre-restore-TIME. */
	time_t now = time(NULL);
	struct tm tmv;
	char stamp[32];
	localtime_r(&now, &tmv);
	strftime(stamp, sizeof(stamp), "%Y%m%d-%H%M%S", &tmv);
	struct stat ign;
	int e = EEXIST;
	for (int k = 1; k < 100 && e == EEXIST; k++) {
		int n = k == 1 ? snprintf(old, sizeof(old), "%s.pre-restore-%s", name, stamp)
			       : snprintf(old, sizeof(old), "%s.pre-restore-%s-%d", name, stamp, k);
		if (n > (int)RFS_NAME_MAX) {
			fprintf(stderr, "reflinkfs %s: %s: the name is too long to add "
				"\".pre-restore-%s\" for the old content\n", cmd, target, stamp);
			rc = SNAP_BADPATH;
			goto out;
		}
		if (fstatat(dfd, old, &ign, AT_SYMLINK_NOFOLLOW) == 0)
			continue;
		/* The new content appears under that name first, then swaps
		 * with DIR: one atomic rename, through the kernel so that its
		 * caches stay right. */
		e = snap_ioctl(sfd, &sst, dfd, old, false, NULL);
	}
	if (!strchr(target, '/'))
		snprintf(oldpath, sizeof(oldpath), "%s", old);
	else
		snprintf(oldpath, sizeof(oldpath), "%s/%s", strcmp(dir, "/") ? dir : "", old);
	if (e) {
		rc = ioctl_error(cmd, e, "snapshot to", snap, oldpath, dfd);
		goto out;
	}
	if (renameat2(dfd, old, dfd, name, RENAME_EXCHANGE)) {
		e = errno;
		fprintf(stderr, "reflinkfs %s: cannot swap %s with the restored copy: %s; %s is "
			"unchanged\n", cmd, target, strerror(e), target);
		struct rfs_ioc_snapdel d;
		memset(&d, 0, sizeof(d));
		snprintf(d.name, sizeof(d.name), "%s", old);
		if (ioctl(dfd, RFS_IOC_SNAPSHOT_DELETE, &d))
			fprintf(stderr, "reflinkfs %s: the restored copy is left at %s: %s\n", cmd,
				oldpath, strerror(errno));
		rc = SNAP_FAILED;
		goto out;
	}
	rc = SNAP_OK;
	if (json) {
		printf("{\"restored\":");
		cli_json_str(stdout, target);
		printf(",\"from\":");
		cli_json_str(stdout, snap);
		printf(",\"previous\":");
		cli_json_str(stdout, oldpath);
		printf("}\n");
	} else {
		printf("%s now holds a writable copy of %s; its previous content is in %s\n",
		       target, snap, oldpath);
	}
out:
	if (dfd >= 0)
		close(dfd);
	close(sfd);
	return rc;
}

/* ---- dispatch ----------------------------------------------------------- */

int cmd_snapshot(int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "list"))
		return cli_snapshot_list(argc - 1, argv + 1);
	if (argc >= 2 && !strcmp(argv[1], "delete"))
		return cmd_delete(argc - 1, argv + 1);
	if (argc >= 2 && !strcmp(argv[1], "restore"))
		return cmd_restore(argc - 1, argv + 1);
	if (cli_wants_help(argc, argv)) {
		snapshot_usage(stdout);
		return SNAP_OK;
	}
	bool rdonly = false, json = false;
	const char *path[2] = {NULL, NULL};
	int np = 0;
	static const struct option longopts[] = {
		{"json", no_argument, NULL, 'j'}, {"readonly", no_argument, NULL, 'r'}, {0}};
	optind = 0;
	for (int c; (c = cli_getopt(argc, argv, "snapshot", "r", longopts)) != -1;) {
		if (c == 'j')
			json = true;
		else if (c == 'r')
			rdonly = true;
		else
			return SNAP_USAGE;
	}
	for (int i = optind; i < argc; i++) {
		if (np == 2) {
			fprintf(stderr, "reflinkfs snapshot: too many arguments\n");
			snapshot_usage(stderr);
			return SNAP_USAGE;
		}
		path[np++] = argv[i];
	}
	if (np != 2) {
		snapshot_usage(stderr);
		return SNAP_USAGE;
	}
	return cli_snapshot_create("snapshot", path[0], path[1], rdonly, json);
}
