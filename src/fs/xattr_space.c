/*
 * How much xattr room an inode has.  Two limits, both refused with
 * -ENOSPC as ext4 does when an inode's xattr space is full:
 *
 *  - RFS_XATTR_LIST_MAX: the name list listxattr returns (each name and
 *    its NUL).  The kernel gives up on a list longer than XATTR_LIST_MAX
 *    (E2BIG), and tools that copy or strip xattrs (getfattr -d, cp -a,
 *    rsync -X, tar --xattrs) start from that list: past it a file's
 *    xattrs can no longer be listed or removed through the mount.
 *  - RFS_XATTR_TOTAL_MAX: names plus values, so that the copy a
 *    whole-file clone keeps in memory (xattr_save) stays small.
 *
 * Only growth is refused: replacing a value by one no longer, and every
 * removal, is allowed whatever the usage, so an inode over a limit (left
 * by an older version) can always be brought back under it.
 *
 * The usage is counted once per node by walking the inode's 'X' items and
 * then kept up to date by xattr_op (struct rfs_node: xknown, xlist,
 * xtotal; pool write lock).
 */
#include "fs/fs_internal.h"
#include "fs/op.h"

#include <stdint.h>

struct usage {
	uint64_t list, total;
};

/* xattr_each: count an item's value, and the name with its first chunk. */
static int count_item(void *arg, const char *name, size_t nl, uint16_t chunk, size_t vl)
{
	struct usage *u = arg;
	(void)name;
	if (chunk == 0) {
		u->list += nl + 1; /* name and its NUL */
		u->total += nl;
	}
	u->total += vl;
	return 0;
}

int xattr_usage_count(rfs_fs *fs, const rfs_tree *t, uint64_t *list, uint64_t *total)
{
	struct usage u = {0, 0};
	int ret = xattr_each(fs, t, count_item, &u);
	*list = u.list;
	*total = u.total;
	return ret;
}

static int usage_get(rfs_fs *fs, struct rfs_node *n, const rfs_tree *t)
{
	if (n->xknown)
		return 0;
	int ret = xattr_usage_count(fs, t, &n->xlist, &n->xtotal);
	n->xknown = !ret;
	return ret;
}

int xattr_space_check(rfs_fs *fs, struct rfs_node *n, const rfs_tree *t, size_t nl,
		      int64_t old, size_t size)
{
	int ret = usage_get(fs, n, t);
	if (ret)
		return ret;
	bool newname = old < 0;
	uint64_t was = newname ? 0 : (uint64_t)old;
	uint64_t add = (newname ? nl : 0) + size; /* bytes name + value take after */
	if ((newname && n->xlist + nl + 1 > RFS_XATTR_LIST_MAX) ||
	    (add > was && n->xtotal - was + add > RFS_XATTR_TOTAL_MAX)) {
		op_refuse(fs); /* no commit could make room for this */
		return -ENOSPC;
	}
	return 0;
}

void xattr_usage_update(struct rfs_node *n, size_t nl, int64_t old, int64_t now)
{
	if (!n->xknown)
		return;
	if (old >= 0) {
		if (n->xlist < nl + 1 || n->xtotal < nl + (uint64_t)old) {
			n->xknown = false; /* cannot happen; recount */
			return;
		}
		n->xlist -= nl + 1;
		n->xtotal -= nl + (uint64_t)old;
	}
	if (now >= 0) {
		n->xlist += nl + 1;
		n->xtotal += nl + (uint64_t)now;
	}
}
