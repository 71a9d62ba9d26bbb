/*
 * Reading a directory's entries in key order ('N' items of its entries
 * tree), for the walks that visit whole subtrees (the back-pointer index
 * build, the hard-link name walk).  One place knows the entry key's shape
 * and checks it, so a walk cannot forget the check, and a change of how
 * entries are stored (docs/ARCHITECTURE.md, the plan for small
 * directories) changes this file, not every walk.
 */
#include "fs/fs_internal.h"

int dir_each(rfs_fs *fs, uint64_t root, dir_each_fn fn, void *arg)
{
	rfs_tree t = FS_TREE(root, RFS_OWNER_DIR);
	rfs_cursor *c;
	if (!root)
		return 0;
	int ret = rfs_cursor_open(fs->pool, &t, &c);
	if (ret)
		return ret;
	for (ret = rfs_cursor_seek(c, "N", 1, 1); !ret; ret = rfs_cursor_step(c, 1)) {
		const uint8_t *k;
		const void *v;
		size_t kl, vl;
		struct rfs_irec r;
		rfs_cursor_get(c, (const void **)&k, &kl, &v, &vl, NULL);
		if (k[0] != 'N')
			break;
		/* 'N' be64(hash) name: a name of 1..RFS_NAME_MAX bytes */
		if (kl < 10 || kl - 9 > RFS_NAME_MAX || rec_decode(v, vl, &r)) {
			ret = -EUCLEAN;
			break;
		}
		ret = fn(arg, (const char *)k + 9, kl - 9, &r);
		if (ret)
			break;
	}
	rfs_cursor_close(c);
	return ret == -ENOENT ? 0 : ret;
}
