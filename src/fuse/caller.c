/*
 * What the kernel knows about a caller and FUSE does not send: its
 * supplementary groups and its capabilities.  Linux clears the set-gid
 * bit when an access ACL is set by a caller outside the file's group
 * without CAP_FSETID (posix_acl_update_mode), but for FUSE the kernel
 * leaves that to the daemon (fuse_set_acl passes FUSE_SETXATTR_ACL_KILL_SGID,
 * which libfuse 3.14 neither negotiates nor hands on), so the daemon reads
 * both from /proc, as fuse_req_getgroups does for the groups.
 */
#include "fuse/rfs_fuse.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define CAP_FSETID_BIT 4 /* linux/capability.h */

static_assert(sizeof(gid_t) == sizeof(uint32_t), "rfs_ctx groups are gid_t");

/* CAP_FSETID in the effective set of thread tid: 1, 0, or -1 when unknown. */
static int has_fsetid(pid_t tid)
{
	char path[64], line[256];
	int ret = -1;
	if (tid <= 0)
		return -1;
	snprintf(path, sizeof(path), "/proc/%d/status", (int)tid);
	FILE *f = fopen(path, "re");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		unsigned long long caps;
		if (sscanf(line, "CapEff: %llx", &caps) == 1) {
			ret = (caps >> CAP_FSETID_BIT) & 1;
			break;
		}
	}
	fclose(f);
	return ret;
}

int rfs_caller_fsetid(pid_t tid)
{
	return has_fsetid(tid);
}

gid_t *rfs_caller_creds(fuse_req_t req, struct rfs_ctx *c)
{
	gid_t *groups = NULL;
	int n = fuse_req_getgroups(req, 0, NULL); /* how many */
	for (int tries = 0; n > 0 && tries < 3; tries++) {
		gid_t *g = realloc(groups, (size_t)n * sizeof(*g));
		if (!g)
			break;
		groups = g;
		int got = fuse_req_getgroups(req, n, groups);
		if (got <= n) {
			c->groups = (const uint32_t *)groups;
			c->ngroups = got > 0 ? (uint32_t)got : 0;
			break;
		}
		n = got; /* groups changed in between */
	}
	int fsetid = has_fsetid(fuse_req_ctx(req)->pid);
	/* A caller /proc does not show (another pid namespace, or gone):
	 * root is taken to hold the capability, as it usually does. */
	c->cap_fsetid = fsetid < 0 ? c->uid == 0 : fsetid == 1;
	return groups;
}

int rfs_caller_holds_fd(const struct rfs_mount *m, pid_t pid, int64_t fd, uint64_t ino)
{
	char path[64];
	struct stat st;
	if (fd < 0 || fd > INT_MAX)
		return -EBADF;
	snprintf(path, sizeof(path), "/proc/%d/fd/%lld", (int)pid, (long long)fd);
	if (stat(path, &st))
		return -EBADF;
	if (m->dev && st.st_dev != m->dev)
		return -EXDEV;
	if (st.st_ino != ino)
		return -EBADF;
	snprintf(path, sizeof(path), "/proc/%d/fdinfo/%lld", (int)pid, (long long)fd);
	FILE *f = fopen(path, "re");
	if (!f)
		return -EBADF;
	char line[128];
	int flags = -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "flags: %o", &flags) == 1)
			break;
	fclose(f);
	/* O_PATH gives no right to read what it names */
	if (flags < 0 || (flags & O_ACCMODE) == O_WRONLY || (flags & O_PATH))
		return -EBADF;
	return 0;
}
