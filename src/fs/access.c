/*
 * Permission checks for the control operations (snapshot, snapshot
 * delete) that reach the daemon as ioctls.  The mount uses
 * default_permissions, so the kernel checks every ordinary operation
 * against the caller; an ioctl bypasses that, so the daemon checks what
 * the kernel would have (generic_permission, may_delete).
 */
#include "fs/fs_internal.h"

#include <stdlib.h>

bool ctx_in_group(const struct rfs_ctx *ctx, uint32_t gid)
{
	if (ctx->gid == gid)
		return true;
	for (uint32_t i = 0; i < ctx->ngroups; i++)
		if (ctx->groups[i] == gid)
			return true;
	return false;
}

int rfs_fs_access(rfs_fs *fs, const struct rfs_ctx *ctx, rfs_nodeid node, int mask)
{
	struct stat st;
	unsigned want = (unsigned)mask & 7;
	int ret = rfs_fs_getattr(fs, node, &st);
	if (ret)
		return ret;
	/* Root (CAP_DAC_OVERRIDE): anything, but executing a file needs
	 * some execute bit, as in the kernel. */
	if (ctx->uid == 0)
		return !(want & 1) || S_ISDIR(st.st_mode) || (st.st_mode & 0111) ? 0 : -EACCES;
	if (ctx->uid == st.st_uid)
		return (((unsigned)st.st_mode >> 6) & want) == want ? 0 : -EACCES;
	/* The access ACL counts only when the group bits (its mask) allow
	 * something, as in acl_permission_check. */
	if (st.st_mode & 070) {
		char small[256];
		ssize_t n = rfs_fs_getxattr(fs, node, RFS_ACL_ACCESS, small, sizeof(small));
		char *buf = small;
		if (n == -ERANGE) {
			n = rfs_fs_getxattr(fs, node, RFS_ACL_ACCESS, NULL, 0);
			buf = n > 0 ? malloc((size_t)n) : NULL;
			if (n > 0 && !buf)
				return -ENOMEM;
			if (buf)
				n = rfs_fs_getxattr(fs, node, RFS_ACL_ACCESS, buf, (size_t)n);
		}
		if (n > 0) {
			ret = acl_permission(buf, (size_t)n, ctx, st.st_uid, st.st_gid, want);
			if (buf != small)
				free(buf);
			return ret;
		}
		if (buf != small)
			free(buf);
		if (n < 0 && n != -ENODATA)
			return (int)n;
	}
	unsigned bits = ctx_in_group(ctx, st.st_gid) ? ((unsigned)st.st_mode >> 3) : (unsigned)st.st_mode;
	return (bits & want) == want ? 0 : -EACCES;
}

int rfs_fs_may_delete(rfs_fs *fs, const struct rfs_ctx *ctx, rfs_nodeid dir, rfs_nodeid child)
{
	struct stat ds, cs;
	int ret = rfs_fs_access(fs, ctx, dir, 3); /* write and search */
	if (ret)
		return ret;
	ret = rfs_fs_getattr(fs, dir, &ds);
	if (!ret)
		ret = rfs_fs_getattr(fs, child, &cs);
	if (ret)
		return ret;
	/* The sticky bit: only the owner of the entry or of the directory
	 * (or root) may remove it. */
	if ((ds.st_mode & S_ISVTX) && ctx->uid != 0 && ctx->uid != ds.st_uid &&
	    ctx->uid != cs.st_uid)
		return -EPERM;
	return 0;
}

int rfs_fs_writable(rfs_fs *fs, rfs_nodeid node)
{
	if (rfs_fs_rdonly(fs))
		return -EROFS;
	fs_rdlock(fs);
	struct rfs_node *n = node_get(fs, node);
	int ret = n ? vol_writable(fs, n->vol) : -ESTALE;
	rfs_pool_unlock(fs->pool);
	return ret;
}
