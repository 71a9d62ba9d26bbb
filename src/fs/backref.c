/*
 * The volume's back-pointer index: inode number -> {parent directory's
 * inode number, name}, for every inode reached by a name that is not in
 * the link table (hard-linked and nameless inodes are found in the link
 * table by number already).  With it an inode is found by its number
 * alone -- walk the back-pointers up to the root, then the names down --
 * which is what file handles (open_by_handle_at, NFS) need once the
 * kernel has forgotten the inode.  See docs/ARCHITECTURE.md, "Finding an
 * inode by number".
 *
 * The index hangs from the volume tree under 'P' (an RFS_ITEM_TREE value
 * holding only the root).  Every mutation that adds, removes or moves a
 * name updates it through the volume level of the inode path it already
 * holds, so the index is stored with that path: one operation, one
 * catalog update.
 */
#include "fs/fs_internal.h"

#include <stdlib.h>

static size_t bref_key(uint8_t *key, uint64_t ino)
{
	key[0] = 'B';
	put_be64(key + 1, ino);
	return 9;
}

/* Read the index tree handle from the volume tree vol (mut: shadowing the
 * path, so the index is this volume's own to change). */
static int index_get(rfs_fs *fs, rfs_tree *vol, rfs_tree *idx, bool mut)
{
	uint64_t root;
	size_t vl = sizeof(root);
	int ret = mut ? rfs_tree_lookup_mut(fs->pool, vol, "P", 1, &root, &vl, NULL)
		      : rfs_tree_lookup(fs->pool, vol, "P", 1, &root, &vl, NULL);
	if (ret == -ENOENT)
		return -EUCLEAN; /* format 2 volumes always have one */
	if (!ret && vl != sizeof(root))
		ret = -EUCLEAN;
	*idx = FS_TREE(ret ? 0 : root, RFS_OWNER_INDEX);
	return ret;
}

/*
 * One change of the index: op(idx) on the index of volume tree vol, which
 * the caller holds mutably (the volume level of an inode path, so that
 * the change is stored with the path, in the same operation).  Pool write
 * lock held.
 */
static int index_change(rfs_fs *fs, rfs_tree *vol,
			int (*op)(rfs_fs *fs, rfs_tree *idx, void *arg), void *arg)
{
	rfs_tree idx;
	if (!has_index(fs) || !vol)
		return 0;
	int ret = index_get(fs, vol, &idx, true);
	if (ret)
		return ret;
	ret = op(fs, &idx, arg);
	uint64_t root = idx.root;
	int r2 = rfs_tree_put(fs->pool, vol, "P", 1, &root, sizeof(root), RFS_ITEM_TREE,
			      RFS_PUT_REPLACE | RFS_KEEP_REFS);
	return ret ? ret : r2;
}

struct bref_arg {
	uint64_t ino, parent;
	const char *name;
	size_t len;
	int mode;
};

static int op_put(rfs_fs *fs, rfs_tree *idx, void *arg)
{
	struct bref_arg *a = arg;
	uint8_t key[16], val[8 + RFS_NAME_MAX];
	size_t kl = bref_key(key, a->ino);
	if (a->len > RFS_NAME_MAX)
		return -ENAMETOOLONG;
	memcpy(val, &a->parent, 8);
	memcpy(val + 8, a->name, a->len);
	return rfs_tree_put(fs->pool, idx, key, kl, val, 8 + a->len, 0, a->mode);
}

static int op_del(rfs_fs *fs, rfs_tree *idx, void *arg)
{
	struct bref_arg *a = arg;
	uint8_t key[16];
	size_t kl = bref_key(key, a->ino);
	return rfs_tree_delete(fs->pool, idx, key, kl, 0);
}

int bref_put(rfs_fs *fs, rfs_tree *vol, uint64_t ino, uint64_t parent,
	     const char *name, size_t len, int mode)
{
	struct bref_arg a = {ino, parent, name, len, mode};
	int ret = index_change(fs, vol, op_put, &a);
	if (ret)
		rfs_log(RFS_LOG_ERR, "%s: recording the name of inode %llu in the inode index: %s",
			rfs_pool_path(fs->pool), (unsigned long long)ino, strerror(-ret));
	return ret;
}

int bref_del(rfs_fs *fs, rfs_tree *vol, uint64_t ino)
{
	struct bref_arg a = {.ino = ino};
	int ret = index_change(fs, vol, op_del, &a);
	if (ret)
		rfs_log(RFS_LOG_ERR, "%s: removing inode %llu from the inode index: %s",
			rfs_pool_path(fs->pool), (unsigned long long)ino, strerror(-ret));
	return ret;
}

int bref_read(rfs_fs *fs, const rfs_tree *idx, uint64_t ino, uint64_t *parent,
	      char *name, size_t *len)
{
	uint8_t key[16], val[RFS_VAL_MAX];
	size_t kl = bref_key(key, ino), vl = sizeof(val);
	int ret = rfs_tree_lookup(fs->pool, idx, key, kl, val, &vl, NULL);
	if (ret)
		return ret;
	if (vl < 9 || vl > 8 + RFS_NAME_MAX)
		return -EUCLEAN;
	memcpy(parent, val, 8);
	*len = vl - 8;
	memcpy(name, val + 8, *len);
	name[*len] = 0;
	return 0;
}

int bref_index(rfs_fs *fs, rfs_tree *idx)
{
	rfs_tree vol;
	int ret = rfs_catalog_get(fs->pool, (uint64_t)RFS_TOP_VOLUME, &vol);
	if (!ret)
		ret = index_get(fs, &vol, idx, false);
	return ret;
}

int bref_get(rfs_fs *fs, uint64_t ino, uint64_t *parent, char *name, size_t *len)
{
	rfs_tree idx;
	int ret = bref_index(fs, &idx);
	if (!ret)
		ret = bref_read(fs, &idx, ino, parent, name, len);
	return ret;
}

/* ---- building the index of a format-1 volume -------------------------------- */

struct build_ent {
	uint64_t ino;
	struct dirloc loc; /* a directory's entries */
	bool dir;
	size_t len;
	char name[RFS_NAME_MAX + 1];
};

/* The entries of one directory, collected (the recursion needs cursors
 * of its own). */
struct build_list {
	const struct dirloc *at; /* the directory read */
	struct build_ent *ents;
	size_t n, cap;
};

static int build_collect(void *arg, const char *name, size_t len, const struct rfs_irec *r)
{
	struct build_list *l = arg;
	if (r->i.flags & RFS_INODE_LINKED)
		return 0;
	if (l->n == l->cap) {
		size_t ncap = l->cap ? l->cap * 2 : 64;
		struct build_ent *ne = realloc(l->ents, ncap * sizeof(*ne));
		if (!ne)
			return -ENOMEM;
		l->ents = ne;
		l->cap = ncap;
	}
	struct build_ent *e = &l->ents[l->n++];
	e->ino = r->i.ino;
	e->dir = S_ISDIR(r->i.mode);
	if (e->dir)
		dloc_of(&e->loc, &r->i, &l->at->t);
	e->len = len;
	memcpy(e->name, name, len);
	return 0;
}

/* Add every named inode below directory dir (inode ino, entries at
 * loc) to idx. */
static int build_dir(rfs_fs *fs, rfs_tree *idx, uint64_t ino, const struct dirloc *loc,
		     uint64_t *count, int depth)
{
	struct build_list l = {.at = loc};
	if (depth > 4096)
		return -ELOOP;
	int ret = dir_each(fs, loc, build_collect, &l);
	struct build_ent *ents = l.ents;
	size_t n = l.n;
	for (size_t i = 0; i < n && !ret; i++) {
		struct bref_arg a = {ents[i].ino, ino, ents[i].name, ents[i].len,
				     RFS_PUT_INSERT};
		ret = op_put(fs, idx, &a);
		if (!ret)
			(*count)++;
		if (!ret && ents[i].dir)
			ret = build_dir(fs, idx, ents[i].ino, &ents[i].loc, count, depth + 1);
	}
	free(ents);
	return ret;
}

int bref_build(rfs_fs *fs)
{
	rfs_tree vol, idx = FS_TREE(0, RFS_OWNER_INDEX);
	struct rfs_irec root;
	uint64_t count = 0;
	int ret = rfs_catalog_get(fs->pool, (uint64_t)RFS_TOP_VOLUME, &vol);
	if (!ret) {
		vol.owner = RFS_OWNER_VOLUME;
		ret = rec_get(fs->pool, &vol, "R", 1, &root, false);
	}
	if (!ret) {
		struct dirloc loc;
		dloc_of(&loc, &root.i, &vol);
		ret = build_dir(fs, &idx, root.i.ino, &loc, &count, 0);
	}
	if (!ret) {
		uint64_t r = idx.root;
		ret = rfs_tree_put(fs->pool, &vol, "P", 1, &r, sizeof(r), RFS_ITEM_TREE,
				   RFS_PUT_INSERT);
	}
	if (ret) {
		rfs_tree_drop(fs->pool, &idx);
		return ret;
	}
	fs->top->m.version = RFS_VOL_VERSION;
	ret = meta_store(fs, fs->top, &vol);
	/* The volume tree moved: store it back whatever happened. */
	int r2 = rfs_catalog_set(fs->pool, (uint64_t)RFS_TOP_VOLUME, &vol);
	if (!ret)
		ret = r2;
	if (!ret)
		rfs_log(RFS_LOG_INFO, "%s: built the inode index of volume %llu (format %u -> %u): %llu names",
			rfs_pool_path(fs->pool), (unsigned long long)(uint64_t)RFS_TOP_VOLUME, 1u,
			RFS_VOL_VERSION, (unsigned long long)count);
	return ret;
}
