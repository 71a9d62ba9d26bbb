/*
 * Snapshot ioctls (fs.h): RFS_IOC_SNAPSHOT and RFS_IOC_SNAPSHOT_DELETE on
 * the parent directory of the snapshot's root, RFS_IOC_VOLUMES on any
 * file or directory of the mount.
 *
 * Permissions.  The mount uses default_permissions, so the kernel checks
 * every ordinary request against the caller, but an ioctl reaches the
 * daemon unchecked: the checks the kernel would make for mkdir (write
 * and search on the parent) and for reading the source (read and search)
 * are made here with the caller's uid, gid and groups (rfs_fs_access).
 * Deleting a snapshot removes everything below its root in one step, so
 * it needs what rmdir of the root needs (rfs_fs_may_delete, sticky bit
 * included) and write and search permission on the root itself, as
 * btrfs asks of an unprivileged subvolume delete.
 *
 * Kernel caches.  A snapshot or a delete changes an entry of the parent
 * behind the kernel's back (a negative dentry of the new name may be
 * cached, so may the deleted root, the parent's link count and size, and
 * its listing, kept by FOPEN_CACHE_DIR), so the daemon invalidates them
 * before replying.  The parent inode is invalidated from offset 0, which
 * drops its cached listing too: an attribute-only invalidation (offset
 * -1) leaves it to an mtime check that a rewinddir never makes.  The
 * notifications are sent after the fs call returned, never with an fs
 * lock held: the kernel takes the parent's inode lock to invalidate, and
 * a thread holding it may be waiting for a request that needs an fs lock.
 */
#include "fuse/rfs_fuse.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "reflinkfs/log.h"

static struct rfs_mount *mnt(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

/* The caller as the fs sees it, with its supplementary groups (from
 * /proc); *groups is for the caller to free. */
static void caller(fuse_req_t req, struct rfs_ctx *c, gid_t **groups)
{
	const struct fuse_ctx *fc = fuse_req_ctx(req);
	memset(c, 0, sizeof(*c));
	c->uid = fc->uid;
	c->gid = fc->gid;
	c->pid = (uint32_t)fc->pid;
	c->umask = fc->umask;
	*groups = c->uid == 0 ? NULL : rfs_caller_creds(req, c);
}

/* A name field of an ioctl: NUL-terminated within its array. */
static int name_ok(const char *name, size_t size)
{
	size_t len = strnlen(name, size);
	if (len == size)
		return -ENAMETOOLONG;
	if (len == 0 || memchr(name, '/', len))
		return -EINVAL;
	return 0;
}

static void do_snapshot(fuse_req_t req, fuse_ino_t dir, const void *in, size_t in_size,
			size_t out_size)
{
	struct rfs_mount *m = mnt(req);
	struct rfs_ioc_snapshot s;
	struct rfs_ctx c;
	gid_t *groups = NULL;
	rfs_nodeid src = 0, out = 0;
	struct stat st;
	if (in_size < sizeof(s) || out_size < sizeof(s)) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	memcpy(&s, in, sizeof(s));
	int ret = name_ok(s.name, sizeof(s.name));
	if (!ret)
		ret = rfs_caller_holds_fd(m, fuse_req_ctx(req)->pid, s.src_fd, s.src_ino);
	if (!ret)
		ret = rfs_fs_find_ino(m->fs, s.src_ino, &src);
	if (ret == -ENOENT)
		ret = -EXDEV; /* open, yet not a node of this mount */
	if (!ret) {
		caller(req, &c, &groups);
		ret = rfs_fs_access(m->fs, &c, dir, 3); /* W_OK | X_OK */
		if (!ret)
			ret = rfs_fs_access(m->fs, &c, src, 5); /* R_OK | X_OK */
		free(groups);
	}
	if (!ret)
		ret = rfs_fs_snapshot(m->fs, src, dir, s.name, s.flags, &out, &st);
	if (ret) {
		fuse_reply_err(req, -ret);
		return;
	}
	/* The kernel does not know the new node (no lookup reply carried it). */
	rfs_fs_forget(m->fs, out, 1);
	/* The kernel takes the directory's lock for these: a request in
	 * flight on it (one a blocking watch holds) may keep it. */
	rfs_fuse_wait_begin();
	fuse_lowlevel_notify_inval_entry(m->se, dir, s.name, strlen(s.name));
	/* Offset 0: also the parent's cached listing (its page cache). */
	fuse_lowlevel_notify_inval_inode(m->se, dir, 0, 0);
	rfs_fuse_wait_end();
	s.out_ino = (uint64_t)st.st_ino;
	fuse_reply_ioctl(req, 0, &s, sizeof(s));
}

static void do_delete(fuse_req_t req, fuse_ino_t dir, const void *in, size_t in_size)
{
	struct rfs_mount *m = mnt(req);
	struct rfs_ioc_snapdel d;
	struct rfs_ctx c;
	gid_t *groups = NULL;
	rfs_nodeid root = 0;
	struct stat st;
	if (in_size < sizeof(d)) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	memcpy(&d, in, sizeof(d));
	int ret = name_ok(d.name, sizeof(d.name));
	if (!ret)
		ret = rfs_fs_lookup(m->fs, dir, d.name, &root, &st);
	if (ret) {
		fuse_reply_err(req, -ret);
		return;
	}
	caller(req, &c, &groups);
	ret = rfs_fs_may_delete(m->fs, &c, dir, root);
	if (!ret)
		ret = rfs_fs_access(m->fs, &c, root, 3);
	free(groups);
	if (!ret)
		ret = rfs_fs_snapshot_delete(m->fs, dir, d.name);
	rfs_fs_forget(m->fs, root, 1);
	if (ret) {
		fuse_reply_err(req, -ret);
		return;
	}
	/* The entry and the parent's link count and size; notify_delete also
	 * tells the kernel the root is gone if it still caches it (it fails
	 * harmlessly when it does not). */
	rfs_fuse_wait_begin(); /* the directory's lock, as above */
	if (fuse_lowlevel_notify_delete(m->se, dir, root, d.name, strlen(d.name)))
		fuse_lowlevel_notify_inval_entry(m->se, dir, d.name, strlen(d.name));
	fuse_lowlevel_notify_inval_inode(m->se, dir, 0, 0);
	rfs_fuse_wait_end();
	fuse_reply_ioctl(req, 0, NULL, 0);
}

struct vpage {
	struct rfs_ioc_volumes *v;
	uint64_t after;
};

static int vol_add(void *arg, const struct rfs_volume_info *vi)
{
	struct vpage *p = arg;
	if (vi->id <= p->after)
		return 0;
	if (p->v->count == RFS_IOC_VOLUMES_MAX)
		return 1;
	unsigned i = p->v->count++;
	p->v->v[i].id = vi->id;
	p->v->v[i].parent = vi->parent;
	p->v->v[i].source_vol = vi->source_vol;
	p->v->v[i].created = vi->created;
	p->v->v[i].flags = vi->rdonly ? RFS_SNAP_RDONLY : 0;
	/* a path longer than the field is cut short: the CLI says so */
	snprintf(p->v->v[i].path, sizeof(p->v->v[i].path), "%s", vi->path);
	snprintf(p->v->v[i].source_path, sizeof(p->v->v[i].source_path), "%s",
		 vi->source_path ? vi->source_path : "");
	return 0;
}

static void do_volumes(fuse_req_t req, const void *in, size_t in_size, size_t out_size)
{
	struct rfs_mount *m = mnt(req);
	const struct fuse_ctx *fc = fuse_req_ctx(req);
	if (in_size < sizeof(uint64_t) || out_size < sizeof(struct rfs_ioc_volumes)) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	/* The list names snapshots anywhere in the mount: root or the user
	 * who mounted, as for diff and scrub. */
	if (fc->uid != 0 && fc->uid != getuid()) {
		fuse_reply_err(req, EPERM);
		return;
	}
	struct rfs_ioc_volumes *v = calloc(1, sizeof(*v));
	if (!v) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	struct vpage p = {v, 0};
	memcpy(&p.after, in, sizeof(p.after));
	v->after = p.after;
	int ret = rfs_fs_volumes(m->fs, vol_add, &p);
	if (ret)
		fuse_reply_err(req, -ret);
	else
		fuse_reply_ioctl(req, 0, v, sizeof(*v));
	free(v);
}

void rfs_fuse_snapshot_ioctl(fuse_req_t req, fuse_ino_t ino, unsigned cmd, const void *in,
			     size_t in_size, size_t out_size)
{
	switch (cmd) {
	case RFS_IOC_SNAPSHOT:
		do_snapshot(req, ino, in, in_size, out_size);
		return;
	case RFS_IOC_SNAPSHOT_DELETE:
		do_delete(req, ino, in, in_size);
		return;
	case RFS_IOC_VOLUMES:
		do_volumes(req, in, in_size, out_size);
		return;
	}
	fuse_reply_err(req, ENOTTY);
}
