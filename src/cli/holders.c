/*
 * Who keeps a mount busy: processes with open files, mapped files, a
 * working or root directory on it, and mounts on top of its directories,
 * as fuser -m and lsof would show them.  Used by `reflinkfs umount` to
 * tell a mount that is really in use (say who uses it, fail at once) from
 * one the kernel is still letting go of (retry).
 */
#include "cli/cli.h"

#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "util/mountinfo.h"

struct scan {
	int mnt_id;
	dev_t dev;
	FILE *out;
	int found;
};

static void report(struct scan *s, const char *pid, const char *what)
{
	char path[64], comm[64] = "?";
	snprintf(path, sizeof(path), "/proc/%s/comm", pid);
	FILE *f = fopen(path, "re");
	if (f) {
		if (fgets(comm, sizeof(comm), f))
			comm[strcspn(comm, "\n")] = 0;
		fclose(f);
	}
	if (s->out && s->found < 20)
		fprintf(s->out, "  process %s (%s): %s\n", pid, comm, what);
	s->found++;
}

/* A directory link of /proc/PID (cwd, root) on the mount?  statx follows
 * the magic link to the directory itself; AT_STATX_DONT_SYNC keeps it from
 * asking the filesystem (a hung FUSE daemon elsewhere must not hang us). */
static bool dir_on(struct scan *s, const char *pid, const char *link)
{
	char path[64];
	struct statx st;
	snprintf(path, sizeof(path), "/proc/%s/%s", pid, link);
	return !statx(AT_FDCWD, path, AT_STATX_DONT_SYNC, 0, &st) &&
	       makedev(st.stx_dev_major, st.stx_dev_minor) == s->dev;
}

/* Open files: fdinfo's mnt_id names the mount without a request to the
 * filesystem (which may be dead). */
static bool fds_on(struct scan *s, const char *pid)
{
	char path[64], line[128];
	snprintf(path, sizeof(path), "/proc/%s/fdinfo", pid);
	DIR *d = opendir(path);
	bool on = false;
	if (!d)
		return false;
	for (struct dirent *e; !on && (e = readdir(d));) {
		if (!isdigit((unsigned char)e->d_name[0]))
			continue;
		char p[300];
		snprintf(p, sizeof(p), "/proc/%s/fdinfo/%s", pid, e->d_name);
		FILE *f = fopen(p, "re");
		if (!f)
			continue;
		int id;
		while (fgets(line, sizeof(line), f))
			if (sscanf(line, "mnt_id: %d", &id) == 1) {
				on = id == s->mnt_id;
				break;
			}
		fclose(f);
	}
	closedir(d);
	return on;
}

/* Mapped files (an executable, a library, mmap). */
static bool maps_on(struct scan *s, const char *pid)
{
	char path[64], line[512];
	snprintf(path, sizeof(path), "/proc/%s/maps", pid);
	FILE *f = fopen(path, "re");
	bool on = false;
	if (!f)
		return false;
	while (!on && fgets(line, sizeof(line), f)) {
		unsigned maj, min;
		unsigned long ino;
		if (sscanf(line, "%*s %*s %*s %x:%x %lu", &maj, &min, &ino) == 3 && ino &&
		    makedev(maj, min) == s->dev)
			on = true;
	}
	fclose(f);
	return on;
}

static int nested_cb(void *arg, const struct rfs_mountinfo *m)
{
	struct scan *s = arg;
	if (m->parent == s->mnt_id) {
		if (s->out && s->found < 20)
			fprintf(s->out, "  %s is mounted inside it\n", m->mnt);
		s->found++;
	}
	return 0;
}

int cli_mount_holders(int mnt_id, unsigned major, unsigned minor, FILE *out)
{
	struct scan s = {.mnt_id = mnt_id, .dev = makedev(major, minor), .out = out};
	rfs_mountinfo_each(NULL, nested_cb, &s);
	DIR *d = opendir("/proc");
	if (!d)
		return s.found;
	pid_t self = getpid();
	for (struct dirent *e; (e = readdir(d));) {
		const char *pid = e->d_name;
		if (!isdigit((unsigned char)pid[0]) || atoi(pid) == self)
			continue;
		if (dir_on(&s, pid, "cwd"))
			report(&s, pid, "working directory");
		else if (dir_on(&s, pid, "root"))
			report(&s, pid, "root directory");
		else if (fds_on(&s, pid))
			report(&s, pid, "open files");
		else if (maps_on(&s, pid))
			report(&s, pid, "mapped files");
	}
	closedir(d);
	if (out && s.found > 20)
		fprintf(out, "  ... and %d more\n", s.found - 20);
	return s.found;
}
