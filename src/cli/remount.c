/*
 * mount -o remount,... of a reflinkfs mount (mount(8) runs the helper
 * with the merged options: "ro,nosuid,nodev,relatime,remount,user_id=0,
 * ...").  The kernel changes the mount's flags (mount(2) MS_REMOUNT; FUSE
 * ignores remount data); the daemon, which the kernel does not tell, is
 * then asked to follow at once (RFS_IOC_MOUNT_STATE: commit and freeze
 * for read-only, thaw for read-write).
 */
#include "cli/cli.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <unistd.h>

#include "reflinkfs/fs.h"
#include "util/mountinfo.h"

static const struct {
	const char *name;
	unsigned long flag;
	bool set;
} flags[] = {
	{"ro", MS_RDONLY, true},	 {"rw", MS_RDONLY, false},
	{"nosuid", MS_NOSUID, true},	 {"suid", MS_NOSUID, false},
	{"nodev", MS_NODEV, true},	 {"dev", MS_NODEV, false},
	{"noexec", MS_NOEXEC, true},	 {"exec", MS_NOEXEC, false},
	{"sync", MS_SYNCHRONOUS, true},	 {"async", MS_SYNCHRONOUS, false},
	{"dirsync", MS_DIRSYNC, true},	 {"noatime", MS_NOATIME, true},
	{"atime", MS_NOATIME, false},	 {"nodiratime", MS_NODIRATIME, true},
	{"diratime", MS_NODIRATIME, false}, {"relatime", MS_RELATIME, true},
	{"norelatime", MS_RELATIME, false}, {"strictatime", MS_STRICTATIME, true},
	{"lazytime", MS_LAZYTIME, true},	 {"nolazytime", MS_LAZYTIME, false},
};

static unsigned long parse_flags(const char *opts)
{
	unsigned long f = 0;
	char *copy = strdup(opts ? opts : ""), *save = NULL;
	for (char *t = copy ? strtok_r(copy, ",", &save) : NULL; t; t = strtok_r(NULL, ",", &save))
		for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++)
			if (!strcmp(t, flags[i].name))
				f = flags[i].set ? f | flags[i].flag : f & ~flags[i].flag;
	free(copy);
	return f;
}

/* Ask the daemon to follow the kernel's state now.  0 or an errno. */
static int tell_daemon(const char *mnt)
{
	int fd = open(mnt, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return errno;
	int ret = ioctl(fd, RFS_IOC_MOUNT_STATE) ? errno : 0;
	close(fd);
	return ret;
}

int cli_remount(const char *mnt, const char *opts)
{
	char rmnt[PATH_MAX];
	if (!realpath(mnt, rmnt)) {
		fprintf(stderr, "reflinkfs mount: remount: %s: %s\n", mnt, strerror(errno));
		return 1;
	}
	if (!rfs_mountinfo_find_mnt(rmnt, NULL, 0, NULL, NULL)) {
		fprintf(stderr, "reflinkfs mount: remount: %s is not a reflinkfs mount\n", rmnt);
		return 1;
	}
	unsigned long f = parse_flags(opts);
	if (mount(NULL, rmnt, NULL, MS_REMOUNT | f, NULL)) {
		int e = errno;
		if (e == EBUSY && (f & MS_RDONLY))
			fprintf(stderr, "reflinkfs mount: cannot remount %s read-only: files are open for writing there\n",
				rmnt);
		else
			fprintf(stderr, "reflinkfs mount: cannot remount %s: %s\n", rmnt, strerror(e));
		return 1;
	}
	int e = tell_daemon(rmnt);
	if (!e)
		return 0;
	if (e == EROFS && !(f & MS_RDONLY)) {
		/* Back to what the daemon can serve. */
		if (mount(NULL, rmnt, NULL, MS_REMOUNT | f | MS_RDONLY, NULL) == 0)
			tell_daemon(rmnt);
		fprintf(stderr, "reflinkfs mount: cannot remount %s read-write: its pool was mounted read-only (or a commit failed; see the log); unmount it and mount it read-write\n",
			rmnt);
		return 1;
	}
	if (f & MS_RDONLY)
		fprintf(stderr, "reflinkfs mount: %s is read-only now, but the daemon's last commit failed: %s (see its log); changes since the commit before are lost\n",
			rmnt, strerror(e));
	else
		fprintf(stderr, "reflinkfs mount: %s was remounted, but the daemon did not follow: %s\n", rmnt,
			strerror(e));
	return 1;
}
