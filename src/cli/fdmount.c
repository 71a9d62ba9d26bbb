/*
 * Which mount an open file is on: its mount ID from /proc/self/fdinfo
 * (mnt_id), then that line of mountinfo.  Used by the snapshot commands
 * to tell "not on a reflinkfs mount" apart from other errors before
 * asking the daemon, and to print paths below the mount point.
 */
#include "cli/cli.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "util/mountinfo.h"

struct want {
	int id;
	struct cli_mount *out;
	bool found;
};

static int match(void *arg, const struct rfs_mountinfo *m)
{
	struct want *w = arg;
	if (m->id != w->id)
		return 0;
	w->found = true;
	w->out->reflinkfs = !strcmp(m->type, "fuse.reflinkfs");
	w->out->rdonly = rfs_mountinfo_has_opt(m->mnt_opts, "ro") ||
			 rfs_mountinfo_has_opt(m->super_opts, "ro");
	snprintf(w->out->mnt, sizeof(w->out->mnt), "%s", m->mnt);
	snprintf(w->out->root, sizeof(w->out->root), "%s", m->root);
	return 1;
}

int cli_fd_mount(int fd, struct cli_mount *out)
{
	char path[64], line[256];
	int id = -1;
	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	FILE *f = fopen(path, "re");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "mnt_id: %d", &id) == 1)
			break;
	fclose(f);
	if (id < 0)
		return -ENOENT;
	memset(out, 0, sizeof(*out));
	out->id = id;
	struct want w = {id, out, false};
	int ret = rfs_mountinfo_each(NULL, match, &w);
	if (ret < 0)
		return ret;
	return w.found ? 0 : -ENOENT;
}
