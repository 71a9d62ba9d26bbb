/*
 * Volumes: the top volume (the mount's root) and snapshot volumes.
 *
 * A volume is a catalog tree (id = volume id, below 2^48: catalog ids
 * from 2^48 up are for trees that are not volumes) holding its meta 'M'
 * and its link table 'T'; the top volume also holds the root directory
 * 'R'.  A snapshot volume's root directory is an RFS_INODE_VOLROOT entry
 * in a directory of its parent volume, so its whole tree hangs below the
 * top volume's root like any directory and a snapshot is O(1): one new
 * entry sharing the source's subtree.  Every inode number is a volume's:
 * st_ino = volume << 48 | ino.
 */
#include "fs/fs_internal.h"

#include <stdlib.h>

static int vol_cmp(const void *a, const void *b)
{
	uint64_t x = (*(struct rfs_vol *const *)a)->id, y = (*(struct rfs_vol *const *)b)->id;
	return x < y ? -1 : x > y;
}

struct rfs_vol *vol_get(rfs_fs *fs, uint64_t id)
{
	size_t lo = 0, hi = fs->nvols;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		struct rfs_vol *v = fs->vols[mid];
		if (v->id == id)
			return v->gone ? NULL : v;
		if (v->id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

int vol_add(rfs_fs *fs, uint64_t id, const struct rfs_volmeta *m, struct rfs_vol **out)
{
	struct rfs_vol *v = calloc(1, sizeof(*v));
	struct rfs_vol **nv = realloc(fs->vols, (fs->nvols + 1) * sizeof(*nv));
	if (!v || !nv) {
		free(v);
		if (nv)
			fs->vols = nv;
		return -ENOMEM;
	}
	fs->vols = nv;
	v->id = id;
	v->m = *m;
	fs->vols[fs->nvols++] = v;
	qsort(fs->vols, fs->nvols, sizeof(*fs->vols), vol_cmp);
	if (out)
		*out = v;
	return 0;
}

static int vol_read(rfs_fs *fs, uint64_t id, struct rfs_volmeta *m)
{
	rfs_tree vt;
	size_t ml = sizeof(*m);
	int ret = rfs_catalog_get(fs->pool, id, &vt);
	if (!ret && !vt.root)
		ret = -ENOENT;
	if (!ret)
		ret = rfs_tree_lookup(fs->pool, &vt, "M", 1, m, &ml, NULL);
	if (!ret && (ml != sizeof(*m) || m->magic != RFS_VOL_MAGIC || m->volid != id))
		ret = -EUCLEAN;
	return ret;
}

int vols_load(rfs_fs *fs)
{
	struct rfs_volmeta m;
	int ret = vol_read(fs, RFS_TOP_VOLUME, &m);
	if (ret)
		return ret;
	ret = vol_add(fs, RFS_TOP_VOLUME, &m, &fs->top);
	if (ret)
		return ret;
	/* Volume ids are handed out in order and never reused: the ones
	 * below next_vol that still have a catalog tree are the volumes. */
	uint64_t next = fs->top->m.next_vol;
	for (uint64_t id = RFS_TOP_VOLUME + 1; id < next; id++) {
		ret = vol_read(fs, id, &m);
		if (ret == -ENOENT)
			continue;
		if (ret) {
			rfs_log(RFS_LOG_ERR, "%s: volume %llu: its metadata cannot be read (%s); run reflinkfs fsck",
				rfs_pool_path(fs->pool), (unsigned long long)id, strerror(-ret));
			return ret;
		}
		ret = vol_add(fs, id, &m, NULL);
		if (ret)
			return ret;
	}
	return 0;
}

void vols_free(rfs_fs *fs)
{
	for (size_t i = 0; i < fs->nvols; i++)
		free(fs->vols[i]);
	free(fs->vols);
	fs->vols = NULL;
	fs->nvols = 0;
	fs->top = NULL;
}

int vol_writable(rfs_fs *fs, uint64_t vol)
{
	struct rfs_vol *v = vol_get(fs, vol);
	if (!v)
		return -ESTALE;
	return (v->m.flags & RFS_VOL_RDONLY) ? -EROFS : 0;
}

int vol_delete(rfs_fs *fs, uint64_t vol)
{
	struct rfs_vol *v = vol_get(fs, vol);
	if (!v || v == fs->top)
		return -EINVAL;
	rfs_tree vt;
	int ret = rfs_catalog_take(fs->pool, vol, &vt);
	if (!ret)
		ret = tree_release(fs, &vt, 0);
	if (ret)
		return ret;
	v->gone = true;
	return 0;
}
