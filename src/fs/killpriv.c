/*
 * Removing the privileges a file grants when it is changed: what Linux
 * does on write, truncate and chown (file_remove_privs, notify_change).
 * With FUSE_HANDLE_KILLPRIV_V2 the kernel leaves it to the filesystem
 * (src/fuse/killpriv.c says when it is asked for), so that it need not
 * ask for security.capability before every write.
 */
#include "fs/op.h"

#define CAP_XATTR "security.capability"

/* The mode bits a change clears: set-user-ID always, set-group-ID when
 * the group may execute (without it the bit marks mandatory locking, not
 * a privilege, and Linux keeps it too). */
static uint32_t priv_bits(uint32_t mode)
{
	uint32_t kill = mode & S_ISUID;
	if ((mode & (S_ISGID | S_IXGRP)) == (S_ISGID | S_IXGRP))
		kill |= S_ISGID;
	return S_ISREG(mode) ? kill : 0;
}

int rfs_fs_kill_priv(rfs_fs *fs, rfs_nodeid id, bool apply, bool *found)
{
	struct rfs_irec r;
	*found = false;
	fs_rdlock(fs);
	struct rfs_node *n = node_get(fs, id);
	int ret = n ? inode_read(fs, n, &r) : -ESTALE;
	int64_t cap = -ENODATA;
	if (!ret && S_ISREG(r.i.mode)) {
		rfs_tree t = FS_TREE(r.i.subtree, rec_owner(&r.i));
		cap = xattr_size(fs, &t, CAP_XATTR);
		if (cap < 0 && cap != -ENODATA)
			ret = (int)cap;
	}
	rfs_pool_unlock(fs->pool);
	if (ret)
		return ret;
	uint32_t kill = priv_bits(r.i.mode);
	*found = kill || cap >= 0;
	if (!apply || !*found)
		return 0;
	/* Two operations, not one: the kernel holds the inode's lock across
	 * the request that asks for this (write, truncate, chown), so no
	 * chmod through the mount comes in between. */
	if (kill) {
		struct stat in = {.st_mode = (mode_t)(r.i.mode & ~kill)};
		ret = rfs_fs_setattr(fs, id, &in, RFS_SET_MODE, NULL);
	}
	if (!ret && cap >= 0) {
		ret = rfs_fs_removexattr(fs, id, CAP_XATTR);
		if (ret == -ENODATA) /* gone meanwhile */
			ret = 0;
	}
	return ret;
}
