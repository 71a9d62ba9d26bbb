/*
 * Directories: lookup, create (files, dirs, nodes, symlinks), link,
 * unlink, rmdir, rename, readdir, readlink.
 *
 * A directory's entries tree maps 'N' + be64(hash(name)) + name to the
 * entry's inode record.  The hash prefix gives readdir stable 63-bit
 * offsets (resume = seek past the hash), at the price of ordering
 * entries by hash rather than by name.
 */
#include "reflinkfs/log.h"
#include "fs/op.h"

#include <stdlib.h>

static int check_name(const char *name, size_t *len)
{
	size_t l = strlen(name);
	if (l == 0)
		return -ENOENT;
	if (l > RFS_NAME_MAX)
		return -ENAMETOOLONG;
	if (memchr(name, '/', l))
		return -EINVAL;
	*len = l;
	return 0;
}

static bool is_dot(const char *name)
{
	return !strcmp(name, ".") || !strcmp(name, "..");
}

/* links_below contribution of an entry (for the path's counters). */
static int64_t entry_links(const struct rfs_irec *r)
{
	/* A snapshot's hard links are its own volume's. */
	if (r->i.flags & RFS_INODE_VOLROOT)
		return 0;
	if (r->i.flags & RFS_INODE_LINKED)
		return 1;
	if (S_ISDIR(r->i.mode))
		return (int64_t)r->i.links_below;
	return 0;
}

/* vols_below contribution of an entry: itself when it roots a volume,
 * and the volume roots below it. */
static int64_t entry_vols(const struct rfs_irec *r)
{
	if (r->i.flags & RFS_INODE_LINKED || !S_ISDIR(r->i.mode))
		return 0;
	return ((r->i.flags & RFS_INODE_VOLROOT) ? 1 : 0) + (int64_t)r->i.vols_below;
}

/* Read a full record for an entry of a directory in volume vol
 * (following a link stub into that volume's link table). */
static int entry_full(rfs_fs *fs, uint64_t vol, const struct rfs_irec *e,
		      struct rfs_irec *out)
{
	if (!(e->i.flags & RFS_INODE_LINKED)) {
		*out = *e;
		return 0;
	}
	struct rfs_ipath p;
	int ret = ip_load_table(fs, vol, e->i.ino, false, &p);
	if (ret)
		return ret == -ESTALE ? -EUCLEAN : ret;
	*out = *ip_rec(&p);
	ip_free(&p);
	return 0;
}

/*
 * Load the path of directory node dn (mutable with mut) to look at or
 * change its entries: -ENOTDIR when dn is no directory and, with live,
 * -ENOENT when it has been removed (nlink 0).  On an error nothing stays
 * loaded: a mutable path is stored back (ip_done), as every failed
 * change of a directory stores it, a read-only one is freed.
 */
static int dir_load(rfs_fs *fs, struct rfs_node *dn, bool mut, bool live,
		    struct rfs_ipath *p)
{
	int ret = ip_load(fs, dn, mut, p);
	if (ret)
		return ret;
	const struct rfs_irec *d = ip_rec(p);
	if (!S_ISDIR(d->i.mode))
		ret = -ENOTDIR;
	else if (live && d->i.nlink == 0)
		ret = -ENOENT;
	if (ret && mut)
		return ip_done(fs, p, 0, ret);
	if (ret)
		ip_free(p);
	return ret;
}

static int dir_entry_read(rfs_fs *fs, struct rfs_node *dn, const char *name,
			  size_t len, struct rfs_irec *e)
{
	struct rfs_ipath p;
	int ret = dir_load(fs, dn, false, false, &p);
	if (ret)
		return ret;
	uint8_t key[RFS_KEY_MAX];
	size_t kl = ip_dkey(&p, key, name, len);
	ret = rec_get(fs->pool, ip_dtree(&p), key, kl, e, false);
	ip_free(&p);
	return ret;
}

/* LOOKUP(id, ".") or (id, "..") for a node id the node table does not
 * hold (file handles: the kernel's export operations).  Pool read lock
 * held. */
static int lookup_forgotten(rfs_fs *fs, rfs_nodeid id, bool dotdot, rfs_nodeid *out,
			    struct stat *st)
{
	struct rfs_node *n;
	struct rfs_irec r;
	uint64_t vol, ino = node_id_ino(fs, id, &vol);
	if (!ino)
		return -ESTALE;
	int ret = node_resolve(fs, vol, ino, &n, &r);
	if (ret)
		return ret;
	if (dotdot) {
		/* n's own reference keeps its parent; take one on the parent
		 * before giving n's back. */
		node_lock(fs);
		struct rfs_node *up = n->parent ? n->parent : n;
		up->nlookup++;
		node_unlock(fs);
		node_unref(fs, n->id);
		ret = inode_read(fs, up, &r);
		if (ret) {
			node_unref(fs, up->id);
			return ret;
		}
		n = up;
	}
	*out = n->id;
	if (st)
		rec_to_stat(n->vol, &r, st);
	return 0;
}

int rfs_fs_lookup(rfs_fs *fs, rfs_nodeid parent, const char *name,
		  rfs_nodeid *out, struct stat *st)
{
	size_t len;
	struct rfs_irec e, r;
	int ret = check_name(name, &len);
	if (ret)
		return ret;
	fs_rdlock(fs);
	struct rfs_node *dn = node_get(fs, parent);
	if (!dn && is_dot(name)) {
		/* A node id from a file handle, of an inode the node table
		 * forgot (or from before a remount): find it by number. */
		ret = lookup_forgotten(fs, parent, name[1] == '.', out, st);
		goto out;
	}
	if (!dn) {
		ret = -ESTALE;
		goto out;
	}
	if (!strcmp(name, ".") || !strcmp(name, "..")) {
		/* Take the reference first: under the read lock a lookup
		 * elsewhere may move dn and free its old parent's node. */
		node_lock(fs);
		struct rfs_node *t = name[1] == '.' && dn->parent ? dn->parent : dn;
		t->nlookup++;
		node_unlock(fs);
		ret = inode_read(fs, t, &r);
		if (ret) {
			node_unref(fs, t->id);
			goto out;
		}
		*out = t->id;
		if (st)
			rec_to_stat(t->vol, &r, st);
		goto out;
	}
	ret = dir_entry_read(fs, dn, name, len, &e);
	if (ret == -ESTALE && node_in_table(fs, dn))
		ret = -ENOENT;
	if (!ret)
		ret = entry_full(fs, dn->vol, &e, &r);
	if (ret)
		goto out;
	uint64_t cvol = vol_below(dn->vol, &e.i);
	struct rfs_node *n = node_ref(fs, dn, name, cvol, r.i.ino,
				      e.i.flags & RFS_INODE_LINKED);
	if (!n) {
		ret = -ENOMEM;
		goto out;
	}
	*out = n->id;
	if (st)
		rec_to_stat(cvol, &r, st);
out:
	rfs_pool_unlock(fs->pool);
	return ret;
}

int rfs_fs_resolve(rfs_fs *fs, const char *path, rfs_nodeid *out, struct stat *st)
{
	char *copy = strdup(path), *save = NULL;
	if (!copy)
		return -ENOMEM;
	rfs_nodeid cur = RFS_ROOT_NODE;
	int ret = 0;
	bool have = false;
	for (char *c = strtok_r(copy, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
		rfs_nodeid next;
		ret = rfs_fs_lookup(fs, cur, c, &next, st);
		if (have)
			rfs_fs_forget(fs, cur, 1);
		if (ret)
			break;
		cur = next;
		have = true;
	}
	free(copy);
	if (ret)
		return ret;
	if (!have && st) /* the root: it never goes away */
		ret = rfs_fs_getattr(fs, RFS_ROOT_NODE, st);
	*out = cur;
	return ret;
}

/* ---- create -------------------------------------------------------------------- */

/* Put record r into the link table of volume vol. */
static int table_insert(rfs_fs *fs, uint64_t vol, struct rfs_irec *r)
{
	int ret;
	struct rfs_ilevel *lv = calloc(1, sizeof(*lv));
	struct rfs_vol *v = vol_get(fs, vol);
	if (!lv || !v) {
		free(lv);
		return lv ? -ESTALE : -ENOMEM;
	}
	ret = rfs_catalog_get(fs->pool, vol, &lv->parent);
	if (ret)
		goto out;
	lv->parent.owner = RFS_OWNER_VOLUME;
	ret = rec_get(fs->pool, &lv->parent, "T", 1, &lv->rec, true);
	if (ret) {
		rfs_catalog_set(fs->pool, vol, &lv->parent);
		goto out;
	}
	rfs_tree tab = FS_TREE(lv->rec.i.subtree, RFS_OWNER_LINKS);
	uint8_t key[16];
	size_t kl = table_key(key, r->i.ino);
	ret = rec_put(fs, &tab, key, kl, r, RFS_PUT_INSERT);
	lv->rec.i.subtree = tab.root;
	int r2 = rec_put(fs, &lv->parent, "T", 1, &lv->rec,
			 RFS_PUT_REPLACE | RFS_KEEP_REFS);
	if (!r2 && v->dirty)
		r2 = meta_store(fs, v, &lv->parent);
	if (!r2)
		r2 = rfs_catalog_set(fs->pool, vol, &lv->parent);
	if (!ret)
		ret = r2;
out:
	free(lv);
	return ret;
}

static int long_symlink_store(rfs_fs *fs, struct rfs_irec *r, const char *target,
			      size_t len)
{
	rfs_tree t = FS_TREE(0, RFS_OWNER_FILE);
	int ret = 0;
	for (size_t off = 0, chunk = 0; off < len && !ret; off += RFS_VAL_MAX, chunk++) {
		uint8_t key[3] = {'L'};
		put_be16(key + 1, (uint16_t)chunk);
		size_t n = len - off > RFS_VAL_MAX ? RFS_VAL_MAX : len - off;
		ret = rfs_tree_put(fs->pool, &t, key, 3, target + off, n, 0, RFS_PUT_INSERT);
	}
	if (ret) {
		rfs_tree_drop(fs->pool, &t);
		return ret;
	}
	r->i.subtree = t.root;
	r->i.flags |= RFS_INODE_LONGLINK;
	return 0;
}

/* A new inode of mode made by ctx in directory d: owner, set-gid
 * inheritance, times.  The caller sets nlink, rdev and the contents. */
static void rec_init_new(struct rfs_irec *c, const struct rfs_ctx *ctx,
			 const struct rfs_irec *d, mode_t mode)
{
	c->i.mode = mode;
	c->i.uid = ctx ? ctx->uid : 0;
	c->i.gid = ctx ? ctx->gid : 0;
	if (d->i.mode & S_ISGID) {
		c->i.gid = d->i.gid;
		if (S_ISDIR(mode))
			c->i.mode |= S_ISGID;
	}
	touch_mc(&c->i);
	c->i.atime = c->i.btime = c->i.mtime;
	c->i.atime_ns = c->i.btime_ns = c->i.mtime_ns;
	c->i.generation = 1;
}

static int dir_create_op(rfs_fs *fs, const struct rfs_ctx *ctx, struct rfs_node *dn,
			 const char *name, size_t len, mode_t mode, dev_t rdev,
			 const char *target, size_t tlen, rfs_nodeid *out,
			 struct stat *st);

static int create_kind(mode_t mode)
{
	switch (mode & S_IFMT) {
	case S_IFDIR:
		return RFS_CHANGE_MKDIR;
	case S_IFLNK:
		return RFS_CHANGE_SYMLINK;
	case S_IFIFO:
		return RFS_CHANGE_MKFIFO;
	case S_IFREG:
		return RFS_CHANGE_CREATE;
	default:
		return RFS_CHANGE_MKNOD;
	}
}

static int dir_create(rfs_fs *fs, const struct rfs_ctx *ctx, rfs_nodeid parent,
		      const char *name, mode_t mode, dev_t rdev, const char *target,
		      rfs_nodeid *out, struct stat *st)
{
	size_t len;
	int ret = check_name(name, &len);
	if (ret)
		return ret;
	if (is_dot(name))
		return -EEXIST;
	if (fs->rdonly)
		return -EROFS;
	size_t tlen = target ? strlen(target) : 0;
	if (target && (tlen == 0 || tlen > RFS_SYMLINK_MAX))
		return tlen ? -ENAMETOOLONG : -ENOENT;
	struct rfs_node *dn = node_get(fs, parent);
	if (!dn)
		return -ESTALE;
	struct rfs_op op = {0};
	do {
		/* the entry, a long symlink's chunks, inherited ACLs, the
		 * back-pointer (index item and the volume's 'P') */
		ret = op_begin(fs, &op, S_ISDIR(mode) ? "mkdir" : "create",
			       op_meta(op_depth(fs, dn), 6 + EMB_ITEMS + (unsigned)(tlen / 1024)), 0);
		if (ret)
			return ret;
		ret = dir_create_op(fs, ctx, dn, name, len, mode, rdev, target, tlen,
				    out, st);
		if (!ret)
			op_rec_entry(fs, create_kind(mode), dn, name, len,
				     st ? (uint64_t)st->st_ino : *out);
	} while ((ret = op_end(&op, ret)) == OP_RETRY);
	return ret;
}

static int dir_create_op(rfs_fs *fs, const struct rfs_ctx *ctx, struct rfs_node *dn,
			 const char *name, size_t len, mode_t mode, dev_t rdev,
			 const char *target, size_t tlen, rfs_nodeid *out,
			 struct stat *st)
{
	struct rfs_ipath p;
	int ret = dir_load(fs, dn, true, true, &p);
	if (ret)
		return ret;
	ret = ip_room(fs, dn, &p);
	if (ret)
		return ret;
	struct rfs_irec *d = ip_rec(&p);
	uint8_t key[RFS_KEY_MAX];
	size_t kl = ip_dkey(&p, key, name, len);
	rfs_tree *t = ip_dtree(&p);
	uint8_t tmp[8];
	size_t tl = sizeof(tmp);
	ret = rfs_tree_lookup(fs->pool, t, key, kl, tmp, &tl, NULL);
	if (ret != -ENOENT) {
		ret = ret ? ret : -EEXIST;
		goto done;
	}
	struct rfs_irec *c = calloc(1, sizeof(*c));
	struct rfs_node *nn = node_prepare(fs, name, len);
	if (!c || !nn) {
		ret = -ENOMEM;
		goto free_rec;
	}
	rec_init_new(c, ctx, d, mode);
	c->i.nlink = S_ISDIR(mode) ? 2 : 1;
	c->i.rdev = (S_ISCHR(mode) || S_ISBLK(mode)) ? rdev : 0;
	if (target) {
		c->i.size = tlen;
		if (tlen <= RFS_INLINE_MAX) {
			memcpy(c->tail, target, tlen);
			c->taillen = tlen;
		} else {
			ret = long_symlink_store(fs, c, target, tlen);
			if (ret)
				goto free_rec;
		}
	}
	ret = acl_inherit(fs, d, c, ctx ? ctx->umask : 0);
	if (ret)
		goto drop_tree;
	c->i.ino = ino_alloc(fs, dn->vol);
	/* A new directory holds its entries in its parent's tree until it
	 * is materialized (dir_embed.c); one with a default ACL has a tree
	 * for it already. */
	if (S_ISDIR(mode) && !c->i.subtree && embed_ok(fs)) {
		c->i.flags |= RFS_INODE_EMBED;
		c->i.rdev = emb_stamp(fs);
	}
	rfs_tree *vol = bref_vol(fs, &p, dn->vol);
	ret = bref_put(fs, vol, c->i.ino, d->i.ino, name, len, RFS_PUT_INSERT);
	if (!ret) {
		ret = rec_put(fs, t, key, kl, c, RFS_PUT_INSERT);
		if (ret)
			bref_del(fs, vol, c->i.ino);
	}
	if (ret) {
		vol_count(fs, dn->vol, -1);
		goto drop_tree;
	}
	d->i.size++;
	p.emb_delta = 1;
	if (S_ISDIR(mode))
		d->i.nlink++;
	touch_mc(&d->i);
	ret = ip_done(fs, &p, 0, 0);
	if (!ret) {
		*out = node_publish(fs, nn, dn, dn->vol, c->i.ino);
		nn = NULL;
		if (st)
			rec_to_stat(dn->vol, c, st);
	}
	node_discard(nn);
	free(c);
	return ret;
drop_tree:
	/* The new record's own tree (its ACLs) goes with it. */
	if (c->i.subtree) {
		rfs_tree lt = FS_TREE(c->i.subtree, rec_owner(&c->i));
		rfs_tree_drop(fs->pool, &lt);
	}
free_rec:
	free(c);
	node_discard(nn);
done:
	return ip_done(fs, &p, 0, ret);
}

int rfs_fs_mknod(rfs_fs *fs, const struct rfs_ctx *ctx, rfs_nodeid parent,
		 const char *name, mode_t mode, dev_t rdev, rfs_nodeid *out,
		 struct stat *st)
{
	if ((mode & S_IFMT) == 0)
		mode |= S_IFREG;
	switch (mode & S_IFMT) {
	case S_IFREG:
	case S_IFIFO:
	case S_IFSOCK:
	case S_IFCHR:
	case S_IFBLK:
		break;
	default:
		return -EINVAL;
	}
	return dir_create(fs, ctx, parent, name, (mode & S_IFMT) | (mode & 07777),
			  rdev, NULL, out, st);
}

int rfs_fs_create(rfs_fs *fs, const struct rfs_ctx *ctx, rfs_nodeid parent,
		  const char *name, mode_t mode, rfs_nodeid *out, struct stat *st)
{
	return dir_create(fs, ctx, parent, name, S_IFREG | (mode & 07777), 0, NULL,
			  out, st);
}

int rfs_fs_mkdir(rfs_fs *fs, const struct rfs_ctx *ctx, rfs_nodeid parent,
		 const char *name, mode_t mode, rfs_nodeid *out, struct stat *st)
{
	return dir_create(fs, ctx, parent, name, S_IFDIR | (mode & 07777), 0, NULL,
			  out, st);
}

int rfs_fs_symlink(rfs_fs *fs, const struct rfs_ctx *ctx, rfs_nodeid parent,
		   const char *name, const char *target, rfs_nodeid *out,
		   struct stat *st)
{
	return dir_create(fs, ctx, parent, name, S_IFLNK | 0777, 0, target, out, st);
}

static int tmpfile_op(rfs_fs *fs, const struct rfs_ctx *ctx, struct rfs_node *dn,
		      mode_t mode, rfs_nodeid *out, struct stat *st)
{
	struct rfs_ipath p;
	struct rfs_irec *c = NULL;
	struct rfs_node *nn = NULL;
	int ret = dir_load(fs, dn, false, true, &p);
	if (ret)
		return ret;
	struct rfs_irec *d = ip_rec(&p);
	if (!(c = calloc(1, sizeof(*c))) || !(nn = node_prepare(fs, "", 0)))
		ret = -ENOMEM;
	if (ret)
		goto done;
	rec_init_new(c, ctx, d, S_IFREG | (mode & 07777));
	/* No name: an orphan of the link table (nlink 0), freed like an
	 * unlinked open file when its last user goes, unless link gives it
	 * a name first (RFS_INODE_TMPFILE allows that once). */
	c->i.nlink = 0;
	c->i.flags = RFS_INODE_TMPFILE;
	ret = acl_inherit(fs, d, c, ctx ? ctx->umask : 0);
	if (ret)
		goto done;
	c->i.ino = ino_alloc(fs, dn->vol);
	ret = table_insert(fs, dn->vol, c);
	if (ret) {
		vol_count(fs, dn->vol, -1);
		goto done;
	}
	c->i.subtree = 0; /* the table holds its references now */
	*out = node_publish(fs, nn, NULL, dn->vol, c->i.ino);
	nn = NULL;
	if (st)
		rec_to_stat(dn->vol, c, st);
done:
	if (ret && c && c->i.subtree) {
		rfs_tree lt = FS_TREE(c->i.subtree, RFS_OWNER_FILE);
		rfs_tree_drop(fs->pool, &lt);
	}
	node_discard(nn);
	free(c);
	ip_free(&p);
	return ret;
}

int rfs_fs_tmpfile(rfs_fs *fs, const struct rfs_ctx *ctx, rfs_nodeid parent,
		   mode_t mode, rfs_nodeid *out, struct stat *st)
{
	struct rfs_node *dn = node_get(fs, parent);
	if (!dn)
		return -ESTALE;
	struct rfs_op op = {0};
	int ret;
	do {
		/* the link-table record and inherited ACLs */
		ret = op_begin(fs, &op, "tmpfile", op_meta(1, 4), 0);
		if (ret)
			return ret;
		ret = tmpfile_op(fs, ctx, dn, mode, out, st);
	} while ((ret = op_end(&op, ret)) == OP_RETRY);
	return ret;
}

int rfs_fs_readlink(rfs_fs *fs, rfs_nodeid id, char *buf, size_t size)
{
	struct rfs_irec r;
	fs_rdlock(fs);
	struct rfs_node *n = node_get(fs, id);
	int ret = n ? inode_read(fs, n, &r) : -ESTALE;
	if (ret)
		goto out;
	if (!S_ISLNK(r.i.mode)) {
		ret = -EINVAL;
		goto out;
	}
	size_t len = r.i.size;
	if (!(r.i.flags & RFS_INODE_LONGLINK)) {
		if (size) {
			size_t c = len < size - 1 ? len : size - 1;
			memcpy(buf, r.tail, c);
			buf[c] = 0;
		}
	} else {
		rfs_tree t = FS_TREE(r.i.subtree, RFS_OWNER_FILE);
		size_t off = 0;
		for (uint16_t chunk = 0; off < len && off + 1 < size; chunk++) {
			uint8_t key[3] = {'L'}, val[RFS_VAL_MAX];
			size_t vl = sizeof(val);
			put_be16(key + 1, chunk);
			ret = rfs_tree_lookup(fs->pool, &t, key, 3, val, &vl, NULL);
			if (ret) {
				ret = ret == -ENOENT ? -EUCLEAN : ret;
				goto out;
			}
			size_t c = vl < size - 1 - off ? vl : size - 1 - off;
			memcpy(buf + off, val, c);
			off += c;
		}
		if (size)
			buf[off] = 0;
	}
	ret = (int)len;
out:
	rfs_pool_unlock(fs->pool);
	return ret;
}

/* ---- removal ------------------------------------------------------------------- */

/* Drop one name from a link-table inode of volume vol.  Pool write
 * lock held. */
static int table_unlink(rfs_fs *fs, uint64_t vol, uint64_t ino)
{
	struct rfs_ipath p;
	int ret = ip_load_table(fs, vol, ino, true, &p);
	if (ret)
		return ret == -ESTALE ? -EUCLEAN : ret;
	struct rfs_irec *r = ip_rec(&p);
	if (r->i.nlink > 0)
		r->i.nlink--;
	touch_c(&r->i);
	node_lock(fs);
	struct rfs_node *n = node_by_ino(fs, vol, ino);
	bool live = n && n->nopen > 0; /* see entry_remove */
	if (r->i.nlink == 0 && !live) {
		if (n)
			n->dead = true;
		node_unlock(fs);
		ret = rfs_tree_delete(fs->pool, &p.lv[1].parent, p.lv[1].key, p.lv[1].klen,
				      RFS_KEEP_REFS);
		if (!ret)
			ret = rec_release(fs, r);
		vol_count(fs, vol, -1);
		p.lv[0].rec.i.subtree = p.lv[1].parent.root;
		p.n = 1;
	} else {
		node_unlock(fs);
	}
	return ip_done(fs, &p, 0, ret);
}

/*
 * Remove entry name of directory node dn.  want: 1 = must be a directory
 * (rmdir), 0 = must not be (unlink), -1 = either (rename's victim).
 * Pool write lock held.
 */
static int entry_remove(rfs_fs *fs, struct rfs_node *dn, const char *name,
			size_t len, int want)
{
	struct rfs_ipath p;
	struct rfs_irec e;
	int ret = dir_load(fs, dn, true, false, &p);
	if (ret)
		return ret;
	struct rfs_irec *d = ip_rec(&p);
	uint8_t key[RFS_KEY_MAX];
	size_t kl = ip_dkey(&p, key, name, len);
	rfs_tree *t = ip_dtree(&p);
	ret = rec_get(fs->pool, t, key, kl, &e, true);
	if (ret)
		goto done;
	bool isdir = S_ISDIR(e.i.mode);
	if (want == 1 && !isdir) {
		ret = -ENOTDIR;
		goto done;
	}
	if (want == 0 && isdir) {
		ret = -EISDIR;
		goto done;
	}
	if (isdir && e.i.size != 0) {
		ret = -ENOTEMPTY;
		goto done;
	}
	int64_t delta = -entry_links(&e);
	bool linked = e.i.flags & RFS_INODE_LINKED;
	bool volroot = e.i.flags & RFS_INODE_VOLROOT;
	uint64_t cvol = vol_below(dn->vol, &e.i);
	node_lock(fs);
	struct rfs_node *cn = linked ? NULL : node_by_ino(fs, cvol, e.i.ino);
	/* Kept as an orphan only while open (or mapped: the mapping holds
	 * the open file): then reads and writes must go on, as POSIX says.
	 * The kernel's lookup references alone (a cached inode) do not keep
	 * it: nothing can reach an unlinked inode by name, so its space
	 * comes back now, not when the kernel gets round to FORGET.  (An
	 * empty directory holds no space: it stays while referenced, so a
	 * removed working directory answers ENOENT.)  A snapshot's root
	 * goes with its volume even when open. */
	bool keep = cn && !volroot && (isdir ? node_live(cn) : cn->nopen > 0);
	node_unlock(fs);

	/* The back-pointer first: deletions only fail on I/O errors. */
	if (!linked) {
		ret = bref_del(fs, bref_vol(fs, &p, cvol), e.i.ino);
		if (ret)
			goto done;
	}
	/* The record's reference on its subtree goes with it: moved to the
	 * link table (in use), kept by the table (a stub), or released --
	 * in the background when that is more than O(1) (reclaim.c). */
	ret = rfs_tree_delete(fs->pool, t, key, kl, RFS_KEEP_REFS);
	if (!ret && !linked && !keep)
		ret = rec_release(fs, &e);
	if (ret)
		goto done;
	d->i.size--;
	p.emb_delta = -1;
	if (isdir)
		d->i.nlink--;
	touch_mc(&d->i);
	if (!linked && !keep) {
		vol_count(fs, cvol, -1);
		if (cn) {
			node_lock(fs);
			cn->dead = true;
			node_unlock(fs);
		}
	}
	if (volroot) {
		p.vols_delta = -1;
		ret = vol_delete(fs, cvol);
		if (ret)
			goto done;
	}
	ret = ip_done(fs, &p, delta, 0);
	if (ret)
		return ret;
	if (linked)
		return table_unlink(fs, dn->vol, e.i.ino);
	if (keep) {
		/* Still in use: the inode lives on in the link table with no
		 * name until its last user goes (then orphan_reap frees it). */
		e.i.nlink = 0;
		touch_c(&e.i);
		/* An empty embedded directory is an empty one without a tree:
		 * the link table holds no embedded entries. */
		e.i.flags &= ~(uint32_t)RFS_INODE_EMBED;
		e.i.volume = 0;
		ret = table_insert(fs, cvol, &e);
		if (ret) {
			rfs_log(RFS_LOG_ERR, "%s: keeping unlinked inode %llu failed: %s",
				rfs_pool_path(fs->pool), (unsigned long long)e.i.ino,
				strerror(-ret));
			return ret;
		}
		node_lock(fs);
		node_move_to_table(fs, cn);
		node_unlock(fs);
	}
	return 0;
done:
	return ip_done(fs, &p, 0, ret);
}

static int remove_common(rfs_fs *fs, rfs_nodeid parent, const char *name, int want)
{
	size_t len;
	int ret = check_name(name, &len);
	if (ret)
		return ret;
	if (is_dot(name))
		return want ? (name[1] ? -ENOTEMPTY : -EINVAL) : -EISDIR;
	struct rfs_node *dn = node_get(fs, parent);
	if (!dn)
		return -ESTALE;
	struct rfs_op op = {0};
	if (!want)
		op_target_name(&op, dn, name, len, RFS_PREMOD_UNLINK);
	/* A deletion: it may use the reserve, so a full pool can free space. */
	ret = op_begin(fs, &op, want ? "rmdir" : "unlink", 0, 0);
	if (ret)
		return ret;
	struct rfs_irec e;
	uint64_t ino = fs->jnl && dir_entry_read(fs, dn, name, len, &e) == 0
			       ? vol_below(dn->vol, &e.i) << 48 | e.i.ino
			       : 0;
	ret = entry_remove(fs, dn, name, len, want);
	if (!ret)
		op_rec_entry(fs, want ? RFS_CHANGE_RMDIR : RFS_CHANGE_UNLINK, dn, name, len, ino);
	return op_end(&op, ret);
}

int rfs_fs_unlink(rfs_fs *fs, rfs_nodeid parent, const char *name)
{
	return remove_common(fs, parent, name, 0);
}

int rfs_fs_rmdir(rfs_fs *fs, rfs_nodeid parent, const char *name)
{
	return remove_common(fs, parent, name, 1);
}

/* ---- link ----------------------------------------------------------------------- */

/* Move node n's record from its entry into the link table, leaving a
 * stub.  Pool write lock held. */
static int move_to_table(rfs_fs *fs, struct rfs_node *n)
{
	struct rfs_ipath p;
	struct rfs_irec e;
	RFS_ASSERT_LOCK(rfs_pool_holds_wrlock(fs->pool)); /* reads n's place */
	int ret = ip_load(fs, n->parent, true, &p);
	if (ret)
		return ret;
	uint8_t key[RFS_KEY_MAX];
	size_t kl = ip_dkey(&p, key, n->name, strlen(n->name));
	rfs_tree *t = ip_dtree(&p);
	ret = rec_get(fs->pool, t, key, kl, &e, true);
	if (ret)
		return ip_done(fs, &p, 0, ret == -ENOENT ? -ESTALE : ret);
	struct rfs_irec stub;
	memset(&stub, 0, sizeof(stub));
	stub.i.ino = e.i.ino;
	stub.i.mode = e.i.mode & S_IFMT;
	stub.i.flags = RFS_INODE_LINKED;
	/* Insert into the table first (the record's references move with
	 * it), then replace the entry keeping them. */
	ret = ip_done(fs, &p, 0, 0);
	if (ret)
		return ret;
	ret = table_insert(fs, n->vol, &e);
	if (ret)
		return ret;
	ret = ip_load(fs, n->parent, true, &p);
	if (ret)
		return ret;
	kl = ip_dkey(&p, key, n->name, strlen(n->name));
	t = ip_dtree(&p);
	ret = rec_put(fs, t, key, kl, &stub, RFS_PUT_REPLACE | RFS_KEEP_REFS);
	int64_t dlinks = ret ? 0 : 1;
	if (!ret) /* found by number in the table from now on */
		ret = bref_del(fs, bref_vol(fs, &p, n->vol), e.i.ino);
	ret = ip_done(fs, &p, dlinks, ret);
	if (ret)
		return ret;
	node_lock(fs);
	node_move_to_table(fs, n);
	node_unlock(fs);
	return 0;
}

static int link_op(rfs_fs *fs, struct rfs_node *n, struct rfs_node *dn,
		   const char *newname, size_t len, struct stat *st);

int rfs_fs_link(rfs_fs *fs, rfs_nodeid id, rfs_nodeid newparent,
		const char *newname, struct stat *st)
{
	size_t len;
	int ret = check_name(newname, &len);
	if (ret)
		return ret;
	if (is_dot(newname))
		return -EEXIST;
	struct rfs_node *n = node_get(fs, id), *dn = node_get(fs, newparent);
	if (!n || !dn)
		return -ESTALE;
	struct rfs_op op = {0};
	do {
		/* the record into the link table (its old entry becomes a
		 * stub, its back-pointer goes), the new stub, the table
		 * record's count */
		ret = op_begin(fs, &op, "link",
			       op_meta(op_depth(fs, n), 5) + op_meta(op_depth(fs, dn), 2 + EMB_ITEMS), 0);
		if (ret)
			return ret;
		ret = link_op(fs, n, dn, newname, len, st);
		if (!ret)
			op_rec_entry(fs, RFS_CHANGE_LINK, dn, newname, len, n->vol << 48 | n->ino);
	} while ((ret = op_end(&op, ret)) == OP_RETRY);
	return ret;
}

static int link_op(rfs_fs *fs, struct rfs_node *n, struct rfs_node *dn,
		   const char *newname, size_t len, struct stat *st)
{
	struct rfs_ipath p;
	struct rfs_irec r;
	int ret = inode_read(fs, n, &r);
	if (ret)
		goto out;
	if (S_ISDIR(r.i.mode)) {
		ret = -EPERM;
		goto out;
	}
	if (n->vol != dn->vol) {
		ret = -EXDEV; /* each volume has its own link table */
		goto out;
	}
	if (r.i.nlink == 0 && !(r.i.flags & RFS_INODE_TMPFILE)) {
		ret = -ENOENT;
		goto out;
	}
	if (r.i.nlink >= 65000) {
		ret = -EMLINK;
		goto out;
	}
	/* The new name must be free before anything moves. */
	struct rfs_irec e;
	ret = dir_entry_read(fs, dn, newname, len, &e);
	if (ret != -ENOENT) {
		ret = ret ? ret : -EEXIST;
		goto out;
	}
	if (!n->in_table) {
		ret = move_to_table(fs, n);
		if (ret)
			goto out;
	}
	ret = dir_load(fs, dn, true, true, &p);
	if (ret)
		goto out;
	ret = ip_room(fs, dn, &p);
	if (ret)
		goto out;
	struct rfs_irec *d = ip_rec(&p);
	struct rfs_irec stub;
	memset(&stub, 0, sizeof(stub));
	stub.i.ino = r.i.ino;
	stub.i.mode = r.i.mode & S_IFMT;
	stub.i.flags = RFS_INODE_LINKED;
	uint8_t key[RFS_KEY_MAX];
	size_t kl = ip_dkey(&p, key, newname, len);
	ret = rec_put(fs, ip_dtree(&p), key, kl, &stub, RFS_PUT_INSERT);
	if (!ret) {
		d->i.size++;
		p.emb_delta = 1;
		touch_mc(&d->i);
	}
	ret = ip_done(fs, &p, ret ? 0 : 1, ret);
	if (ret)
		goto out;
	ret = ip_load_table(fs, n->vol, r.i.ino, true, &p);
	if (ret)
		goto out;
	ip_rec(&p)->i.nlink++;
	ip_rec(&p)->i.flags &= ~(uint32_t)RFS_INODE_TMPFILE;
	touch_c(&ip_rec(&p)->i);
	if (st)
		rec_to_stat(n->vol, ip_rec(&p), st);
	ret = ip_done(fs, &p, 0, 0);
	if (!ret) {
		node_lock(fs);
		n->nlookup++;
		node_unlock(fs);
	}
out:
	return ret;
}

/* ---- rename --------------------------------------------------------------------- */

/* True when dir node dn is node with ino `ino` or below it. */
static bool below(rfs_fs *fs, struct rfs_node *dn, uint64_t ino)
{
	RFS_ASSERT_LOCK(node_fields_readable(fs));
	for (struct rfs_node *x = dn; x; x = x->parent)
		if (x->ino == ino)
			return true;
	return false;
}

/* In directory dn: put rec at name (mode REPLACE or INSERT, with the
 * record's references already owned by the caller), adjusting the
 * directory's counts by dsize / dnlink / dlinks, and rec's back-pointer
 * (rename). */
static int entry_put(rfs_fs *fs, struct rfs_node *dn, const char *name, size_t len,
		     const struct rfs_irec *rec, int mode, int dsize, int dnlink,
		     int64_t dlinks, int64_t dvols)
{
	struct rfs_ipath p;
	int ret = ip_load(fs, dn, true, &p);
	if (ret)
		return ret;
	struct rfs_irec *d = ip_rec(&p);
	if (d->i.nlink == 0) {
		/* Removed while another thread still held it (an orphan
		 * directory): it takes no entry, else what it held would go
		 * with it uncounted when the orphan is freed. */
		return ip_done(fs, &p, 0, -ENOENT);
	}
	if (dsize > 0) {
		ret = ip_room(fs, dn, &p);
		if (ret)
			return ret;
		d = ip_rec(&p);
	}
	uint8_t key[RFS_KEY_MAX];
	size_t kl = ip_dkey(&p, key, name, len);
	ret = rec_put(fs, ip_dtree(&p), key, kl, rec, mode);
	if (!ret) {
		d->i.size += (uint64_t)(int64_t)dsize;
		p.emb_delta = dsize;
		d->i.nlink += (uint32_t)dnlink;
		touch_mc(&d->i);
	}
	int64_t dl = ret ? 0 : dlinks;
	p.vols_delta = ret ? 0 : dvols;
	if (!ret && !(rec->i.flags & RFS_INODE_LINKED))
		ret = bref_put(fs, bref_vol(fs, &p, vol_below(dn->vol, &rec->i)), rec->i.ino,
			       d->i.ino, name, len, RFS_PUT_REPLACE);
	return ip_done(fs, &p, dl, ret);
}

/*
 * Move the in-memory node of a renamed entry.  The rename itself is done
 * in the trees; if memory for the new name is short, the node keeps its
 * old place, so calls on that node id fail with ESTALE until the kernel
 * looks the name up again -- an error, never wrong data.  nlock held.
 */
static void renamed_node(rfs_fs *fs, struct rfs_node *n, struct rfs_node *parent,
			 const char *name, size_t len)
{
	if (node_rename(fs, n, parent, name, len))
		rfs_log(RFS_LOG_ERR, "rename: out of memory updating node %llu (\"%.*s\"); "
			"it reads as stale until looked up again",
			(unsigned long long)n->id, (int)len, name);
}

/* The whiteout RENAME_WHITEOUT leaves at the old name: a character
 * device 0/0 (what overlayfs and the kernel's own filesystems write). */
static void whiteout_rec(rfs_fs *fs, const struct rfs_ctx *ctx, uint64_t vol,
			 struct rfs_irec *w)
{
	memset(w, 0, sizeof(*w));
	w->i.mode = S_IFCHR;
	w->i.uid = ctx ? ctx->uid : 0;
	w->i.gid = ctx ? ctx->gid : 0;
	w->i.nlink = 1;
	touch_mc(&w->i);
	w->i.atime = w->i.btime = w->i.mtime;
	w->i.atime_ns = w->i.btime_ns = w->i.mtime_ns;
	w->i.generation = 1;
	w->i.ino = ino_alloc(fs, vol);
}

static int rename_op(rfs_fs *fs, const struct rfs_ctx *ctx, struct rfs_node *pn,
		     const char *name, size_t len, struct rfs_node *np,
		     const char *newname, size_t nlen, unsigned flags);

int rfs_fs_rename(rfs_fs *fs, const struct rfs_ctx *ctx, rfs_nodeid parent,
		  const char *name, rfs_nodeid newparent, const char *newname,
		  unsigned flags)
{
	size_t len, nlen;
	int ret = check_name(name, &len);
	if (!ret)
		ret = check_name(newname, &nlen);
	if (ret)
		return ret;
	if (flags & ~(unsigned)(RFS_RENAME_NOREPLACE | RFS_RENAME_EXCHANGE |
				RFS_RENAME_WHITEOUT))
		return -EINVAL;
	if ((flags & RFS_RENAME_EXCHANGE) &&
	    (flags & (RFS_RENAME_NOREPLACE | RFS_RENAME_WHITEOUT)))
		return -EINVAL;
	if (is_dot(name) || is_dot(newname))
		return -EBUSY;
	struct rfs_node *pn = node_get(fs, parent), *np = node_get(fs, newparent);
	if (!pn || !np)
		return -ESTALE;
	/* A volume boundary is like a mount's: mv falls back to a copy
	 * (which clones).  The volume of a node never changes. */
	if (pn->vol != np->vol)
		return -EXDEV;
	struct rfs_op op = {0};
	/* The moved file, and the one it replaces (or swaps with). */
	op_target_name(&op, pn, name, len, RFS_PREMOD_RENAME);
	if (!(flags & RFS_RENAME_NOREPLACE))
		op_target_name(&op, np, newname, nlen, RFS_PREMOD_RENAME);
	do {
		/* a replaced target's removal (and its link-table record),
		 * the new entry, the old entry's removal or a whiteout;
		 * the back-pointers of the moved, replaced and new inodes
		 * (two items each: index and the volume's 'P') */
		ret = op_begin(fs, &op, "rename",
			       op_meta(op_depth(fs, np), 7 + EMB_ITEMS) + op_meta(op_depth(fs, pn), 4 + EMB_ITEMS),
			       0);
		if (ret)
			return ret;
		ret = rename_op(fs, ctx, pn, name, len, np, newname, nlen, flags);
		if (!ret && fs->jnl) {
			struct rfs_irec e;
			uint64_t ino = dir_entry_read(fs, np, newname, nlen, &e) == 0
					       ? vol_below(np->vol, &e.i) << 48 | e.i.ino
					       : 0;
			op_rec_rename(fs,
				      (flags & RFS_RENAME_EXCHANGE) ? RFS_CHANGE_EXCHANGE
								    : RFS_CHANGE_RENAME,
				      pn, name, len, np, newname, nlen, ino);
		}
	} while ((ret = op_end(&op, ret)) == OP_RETRY);
	return ret;
}

static int rename_op(rfs_fs *fs, const struct rfs_ctx *ctx, struct rfs_node *pn,
		     const char *name, size_t len, struct rfs_node *np,
		     const char *newname, size_t nlen, unsigned flags)
{
	struct rfs_irec s, d;
	int ret = dir_entry_read(fs, pn, name, len, &s);
	if (ret)
		goto out;
	ret = dir_entry_read(fs, np, newname, nlen, &d);
	bool dexists = !ret;
	if (ret && ret != -ENOENT)
		goto out;
	ret = 0;
	if (pn == np && len == nlen && !memcmp(name, newname, len))
		goto out;
	if (dexists && (flags & RFS_RENAME_NOREPLACE)) {
		ret = -EEXIST;
		goto out;
	}
	if (!dexists && (flags & RFS_RENAME_EXCHANGE)) {
		ret = -ENOENT;
		goto out;
	}
	bool sdir = S_ISDIR(s.i.mode), ddir = dexists && S_ISDIR(d.i.mode);
	if (sdir && below(fs, np, s.i.ino)) {
		ret = -EINVAL;
		goto out;
	}
	if ((flags & RFS_RENAME_EXCHANGE) && ddir && below(fs, pn, d.i.ino)) {
		ret = -EINVAL;
		goto out;
	}
	/* An embedded directory moving to another directory gets a tree of
	 * its own first: its entries are in the tree holding its old
	 * parent, and the count of its embedded subtree goes with them. */
	if (pn != np && ((sdir && is_embed(&s.i)) ||
			 ((flags & RFS_RENAME_EXCHANGE) && ddir && is_embed(&d.i)))) {
		if (sdir && is_embed(&s.i))
			ret = entry_materialize(fs, pn, name, len);
		if (!ret && (flags & RFS_RENAME_EXCHANGE) && ddir && is_embed(&d.i))
			ret = entry_materialize(fs, np, newname, nlen);
		if (!ret)
			ret = dir_entry_read(fs, pn, name, len, &s);
		if (!ret && dexists)
			ret = dir_entry_read(fs, np, newname, nlen, &d);
		if (ret)
			goto out;
	}
	/* Re-read both entries mutably (their subtrees are then ours). */
	node_lock(fs);
	struct rfs_node *sn = (s.i.flags & RFS_INODE_LINKED)
				      ? NULL
				      : node_by_ino(fs, vol_below(pn->vol, &s.i), s.i.ino);
	struct rfs_node *dnode = (!dexists || (d.i.flags & RFS_INODE_LINKED)) ? NULL
						: node_by_ino(fs, vol_below(np->vol, &d.i), d.i.ino);
	node_unlock(fs);

	if (flags & RFS_RENAME_EXCHANGE) {
		int ds = sdir - ddir;
		/* d goes to pn/name, s goes to np/newname */
		ret = rec_ref(fs, &s);
		if (ret)
			goto out;
		ret = rec_ref(fs, &d);
		if (ret)
			goto out;
		if (!(s.i.flags & RFS_INODE_LINKED))
			touch_c(&s.i);
		if (!(d.i.flags & RFS_INODE_LINKED))
			touch_c(&d.i);
		ret = entry_put(fs, np, newname, nlen, &s, RFS_PUT_REPLACE, 0, ds,
				entry_links(&s) - entry_links(&d),
				entry_vols(&s) - entry_vols(&d));
		if (ret)
			goto out;
		ret = entry_put(fs, pn, name, len, &d, RFS_PUT_REPLACE, 0, -ds,
				entry_links(&d) - entry_links(&s),
				entry_vols(&d) - entry_vols(&s));
		if (ret)
			goto out;
		node_lock(fs);
		if (sn)
			renamed_node(fs, sn, np, newname, nlen);
		if (dnode)
			renamed_node(fs, dnode, pn, name, len);
		node_unlock(fs);
		goto out;
	}
	if (dexists) {
		if (d.i.ino == s.i.ino)
			goto out; /* two names of one inode: nothing to do */
		if (sdir && !ddir) {
			ret = -ENOTDIR;
			goto out;
		}
		if (!sdir && ddir) {
			ret = -EISDIR;
			goto out;
		}
		if (ddir && d.i.size) {
			ret = -ENOTEMPTY;
			goto out;
		}
		ret = entry_remove(fs, np, newname, nlen, -1);
		if (ret)
			goto out;
	}
	ret = rec_ref(fs, &s);
	if (ret)
		goto out;
	if (!(s.i.flags & RFS_INODE_LINKED))
		touch_c(&s.i);
	ret = entry_put(fs, np, newname, nlen, &s, RFS_PUT_INSERT, 1, sdir ? 1 : 0,
			entry_links(&s), entry_vols(&s));
	if (ret) {
		rec_unref(fs, &s);
		goto out;
	}
	/* Remove the old name (or put a whiteout in its place, in the same
	 * tree update); its reference on the subtree goes with it. */
	{
		struct rfs_ipath p;
		ret = ip_load(fs, pn, true, &p);
		if (ret)
			goto out;
		struct rfs_irec *pd = ip_rec(&p);
		uint8_t key[RFS_KEY_MAX];
		size_t kl = ip_dkey(&p, key, name, len);
		if (flags & RFS_RENAME_WHITEOUT) {
			struct rfs_irec w;
			rfs_tree *vol = bref_vol(fs, &p, pn->vol);
			whiteout_rec(fs, ctx, pn->vol, &w);
			ret = bref_put(fs, vol, w.i.ino, pd->i.ino, name, len, RFS_PUT_INSERT);
			if (!ret) {
				ret = rec_put(fs, ip_dtree(&p), key, kl, &w, RFS_PUT_REPLACE);
				if (ret)
					bref_del(fs, vol, w.i.ino);
			}
			if (ret)
				vol_count(fs, pn->vol, -1);
		} else {
			ret = rfs_tree_delete(fs->pool, ip_dtree(&p), key, kl, 0);
			if (!ret) {
				pd->i.size--;
				p.emb_delta = -1;
			}
		}
		if (!ret) {
			if (sdir)
				pd->i.nlink--;
			touch_mc(&pd->i);
		}
		if (!ret)
			p.vols_delta = -entry_vols(&s);
		ret = ip_done(fs, &p, ret ? 0 : -entry_links(&s), ret);
		if (ret)
			goto out;
	}
	if (sn) {
		node_lock(fs);
		renamed_node(fs, sn, np, newname, nlen);
		node_unlock(fs);
	}
out:
	return ret;
}

/* ---- readdir -------------------------------------------------------------------- */

int rfs_fs_readdir(rfs_fs *fs, rfs_nodeid id, uint64_t off, bool plus,
		   rfs_dir_fn fn, void *arg)
{
	struct rfs_ipath p;
	struct stat st;
	fs_rdlock(fs);
	struct rfs_node *dn = node_get(fs, id);
	int ret = dn ? ip_load(fs, dn, false, &p) : -ESTALE;
	if (ret)
		goto out;
	/* ".." is the level above in the same path (the node's parent may
	 * move meanwhile); the root, or a removed directory, is its own. */
	struct rfs_irec d = *ip_rec(&p), up = d;
	struct dirloc dl;
	ip_dloc(&p, &dl);
	uint64_t upvol = dn->vol;
	if (p.n >= 2 && !p.in_table) {
		upvol = p.vol;
		for (int k = 1; k < p.n - 1; k++)
			upvol = vol_below(upvol, &p.lv[k].rec.i);
		up = p.lv[p.n - 2].rec;
	}
	ip_free(&p);
	if (!S_ISDIR(d.i.mode)) {
		ret = -ENOTDIR;
		goto out;
	}
	if (off == 0) {
		rec_to_stat(dn->vol, &d, &st);
		if (fn(arg, ".", &st, 0, 1))
			goto out;
	}
	if (off <= 1) {
		rec_to_stat(upvol, &up, &st);
		if (fn(arg, "..", &st, 0, 2))
			goto out;
	}
	if (!dl.t.root)
		goto out;
	uint64_t from = off <= 2 ? 0 : off + 1;
	for (;;) {
		/* Each round reopens the cursor, because plus-mode lookups in
		 * the link table need the tree code too. */
		rfs_cursor *c;
		ret = rfs_cursor_open(fs->pool, &dl.t, &c);
		if (ret)
			goto out;
		ret = dloc_seek(&dl, c, from);
		struct rfs_irec e;
		char name[RFS_NAME_MAX + 1];
		uint64_t h = 0;
		if (!ret) {
			const uint8_t *k;
			const void *v;
			size_t kl, vl;
			const char *nm;
			size_t nl;
			rfs_cursor_get(c, (const void **)&k, &kl, &v, &vl, NULL);
			ret = dloc_entry(&dl, k, kl, &h, &nm, &nl);
			if (ret == 1) {
				memcpy(name, nm, nl);
				name[nl] = 0;
				ret = rec_decode(v, vl, &e);
			} else if (ret == 0) {
				ret = -ENOENT;
			}
		}
		rfs_cursor_close(c);
		if (ret == -ENOENT) {
			ret = 0;
			break;
		}
		if (ret)
			break;
		from = h + 1;
		struct rfs_irec full;
		rfs_nodeid nid = 0;
		if (plus) {
			ret = entry_full(fs, dn->vol, &e, &full);
			if (ret)
				break;
			uint64_t cvol = vol_below(dn->vol, &e.i);
			rec_to_stat(cvol, &full, &st);
			struct rfs_node *cn = node_ref(fs, dn, name, cvol, full.i.ino,
						       e.i.flags & RFS_INODE_LINKED);
			if (!cn) {
				ret = -ENOMEM;
				break;
			}
			nid = cn->id;
		} else {
			memset(&st, 0, sizeof(st));
			st.st_ino = (vol_below(dn->vol, &e.i) << 48) | e.i.ino;
			st.st_mode = e.i.mode;
		}
		if (fn(arg, name, &st, nid, h)) {
			if (nid)
				node_unref(fs, nid);
			break;
		}
	}
out:
	rfs_pool_unlock(fs->pool);
	return ret;
}
