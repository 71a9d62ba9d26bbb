/*
 * Extended attributes.  They live in the inode's own subtree (a
 * directory's entries tree, a file's extent tree) under
 * 'X' + name + 0 + be16(chunk); values longer than RFS_VAL_MAX are split
 * into chunks.  POSIX ACLs are the system.posix_acl_access / _default
 * xattrs, stored like any other (the kernel enforces them).
 */
#include "fs/op.h"

#include <stdlib.h>
#include <sys/xattr.h>

#define XCHUNK RFS_VAL_MAX

static size_t xkey(uint8_t *key, const char *name, size_t nl, uint16_t chunk)
{
	key[0] = 'X';
	memcpy(key + 1, name, nl);
	key[1 + nl] = 0;
	put_be16(key + 2 + nl, chunk);
	return nl + 4;
}

/* Delete every chunk of name; -ENODATA when there was none. */
static int xdel(rfs_fs *fs, rfs_tree *t, const char *name, size_t nl)
{
	uint8_t key[RFS_KEY_MAX];
	int ret = 0;
	uint16_t c;
	for (c = 0;; c++) {
		size_t kl = xkey(key, name, nl, c);
		ret = rfs_tree_delete(fs->pool, t, key, kl, 0);
		if (ret)
			break;
	}
	if (ret == -ENOENT)
		ret = c ? 0 : -ENODATA;
	return ret;
}

/* Length of name's value in t (the sum of its chunks), or -ENODATA. */
static int64_t xsize(rfs_fs *fs, const rfs_tree *t, const char *name, size_t nl)
{
	uint8_t key[RFS_KEY_MAX];
	int64_t total = 0;
	if (!t->root)
		return -ENODATA;
	for (uint16_t c = 0;; c++) {
		size_t vl = 0;
		int ret = rfs_tree_lookup(fs->pool, t, key, xkey(key, name, nl, c), NULL, &vl, NULL);
		if (ret == -ENOENT)
			return c ? total : -ENODATA;
		if (ret)
			return ret;
		total += (int64_t)vl;
		if (vl < XCHUNK)
			return total;
	}
}

int64_t xattr_size(rfs_fs *fs, const rfs_tree *t, const char *name)
{
	return xsize(fs, t, name, strlen(name));
}

int xattr_put_locked(rfs_fs *fs, rfs_tree *t, const char *name, const void *val,
		     size_t size)
{
	uint8_t key[RFS_KEY_MAX];
	size_t nl = strlen(name);
	int ret = 0;
	uint16_t c = 0;
	size_t off = 0;
	do {
		size_t n = size - off > XCHUNK ? XCHUNK : size - off;
		size_t kl = xkey(key, name, nl, c);
		ret = rfs_tree_put(fs->pool, t, key, kl, (const uint8_t *)val + off, n, 0,
				   RFS_PUT_UPSERT);
		off += n;
		c++;
	} while (!ret && off < size);
	return ret;
}

/* Linux's in_group_or_capable: may ctx keep the set-gid bit of a file
 * of group gid when it changes the file's mode? */
static bool keeps_sgid(const struct rfs_ctx *ctx, uint32_t gid)
{
	if (!ctx || ctx->cap_fsetid || ctx->gid == gid)
		return true;
	for (uint32_t i = 0; i < ctx->ngroups; i++)
		if (ctx->groups[i] == gid)
			return true;
	return false;
}

static int xattr_op_locked(rfs_fs *fs, const struct rfs_ctx *ctx, struct rfs_node *n,
			   const char *name, size_t nl, int nameerr, const void *val,
			   size_t size, int flags, bool remove, bool *only_mode);

static int xattr_op(rfs_fs *fs, const struct rfs_ctx *ctx, rfs_nodeid id, const char *name,
		    const void *val, size_t size, int flags, bool remove)
{
	size_t nl = 0;
	/* A name outside the namespaces may still be stored by an older
	 * version: removing it is allowed (nameerr is the answer when
	 * there is none). */
	int nameerr = xattr_name_check(name, &nl), ret = 0;
	if (nameerr == -ERANGE)
		return nameerr;
	if (!remove && size > RFS_XATTR_MAX)
		return -E2BIG;
	if (!remove && nameerr)
		return nameerr;
	struct rfs_node *n = node_get(fs, id);
	if (!n)
		return -ESTALE;
	struct rfs_op op = {0};
	op_target(&op, n, RFS_PREMOD_XATTR);
	do {
		/* A removal only deletes; a value takes one record per chunk
		 * (the old chunks are deleted first). */
		ret = op_begin(fs, &op, remove ? "removexattr" : "setxattr",
			       remove ? 0 : op_meta(op_depth(fs, n), 4 + EMB_ITEMS + (unsigned)(size / 1024)),
			       0);
		if (ret)
			return ret;
		bool only_mode = false;
		ret = xattr_op_locked(fs, ctx, n, name, nl, nameerr, val, size, flags, remove,
				      &only_mode);
		/* A minimal ACL (cp -a sets one on every file) is a chmod:
		 * no xattr is stored, so the journal says attr. */
		if (!ret)
			op_rec_node(fs, only_mode ? RFS_CHANGE_ATTR : RFS_CHANGE_XATTR, n, 0, 0);
	} while ((ret = op_end(&op, ret)) == OP_RETRY);
	return ret;
}

static int xattr_op_locked(rfs_fs *fs, const struct rfs_ctx *ctx, struct rfs_node *n,
			   const char *name, size_t nl, int nameerr, const void *val,
			   size_t size, int flags, bool remove, bool *only_mode)
{
	struct rfs_ipath p;
	int ret = ip_load(fs, n, true, &p);
	if (ret)
		return ret;
	rfs_tree *t = ip_tree(&p);
	struct rfs_inode *ino = &ip_rec(&p)->i;
	bool acc = !strcmp(name, RFS_ACL_ACCESS), def = !strcmp(name, RFS_ACL_DEFAULT);
	bool absent_ok = false;
	uint32_t mode = ino->mode;
	if (acc || def) {
		/* An empty ACL removes the ACL, as the kernel's NULL ACL;
		 * removing an absent ACL is no error (ext4). */
		int cnt = remove ? 0 : acl_valid(val, size);
		if (cnt < 0) {
			ret = cnt;
			goto done;
		}
		if (def && !S_ISDIR(ino->mode) && cnt > 0) {
			ret = -EACCES;
			goto done;
		}
		if (acc && cnt > 0) {
			/* The mode follows the ACL; an ACL saying no more than
			 * the mode bits is not kept (as ext4 does). */
			mode = acl_to_mode(val, size, mode);
			if (!keeps_sgid(ctx, ino->gid))
				mode &= ~(uint32_t)S_ISGID;
			if (acl_is_minimal(val, size))
				cnt = 0;
		}
		if (cnt == 0)
			remove = absent_ok = true;
	}
	int64_t old = xsize(fs, t, name, nl);
	if (old < 0 && old != -ENODATA) {
		ret = (int)old;
	} else if (remove) {
		if (old >= 0)
			ret = xdel(fs, t, name, nl);
		else
			ret = absent_ok ? 0 : nameerr ? nameerr : -ENODATA;
	} else if ((flags & XATTR_CREATE) && old >= 0) {
		ret = -EEXIST;
	} else if ((flags & XATTR_REPLACE) && old < 0) {
		ret = -ENODATA;
	} else {
		/* Xattrs live in the file tree: an inline extent map moves
		 * there first (not for a minimal ACL, which is not kept: cp -a
		 * sets one on every file). */
		if (ip_rec(&p)->i.flags & (RFS_INODE_INLEXT | RFS_INODE_INLDATA)) {
			ret = inldata_spill(fs, ip_rec(&p));
			if (!ret)
				ret = rec_spill(fs, ip_rec(&p));
			t->root = ip_rec(&p)->i.subtree;
		}
		/* An embedded directory gets a tree of its own first. */
		if (!ret && is_embed(&ip_rec(&p)->i)) {
			ret = ip_materialize(fs, &p);
			t = ip_tree(&p);
			ino = &ip_rec(&p)->i;
		}
		if (!ret)
			ret = xattr_space_check(fs, n, t, nl, old, size);
		if (!ret && old >= 0)
			ret = xdel(fs, t, name, nl);
		if (!ret)
			ret = xattr_put_locked(fs, t, name, val, size);
	}
	if (!ret) {
		*only_mode = remove && old < 0; /* no xattr was or is stored */
		ino->mode = mode;
		touch_c(ino);
		xattr_usage_update(n, nl, old, remove ? -1 : (int64_t)size);
	}
done:
	ret = ip_done(fs, &p, 0, ret);
	if (ret)
		n->xknown = false; /* count again: the failed op may have changed items */
	return ret;
}

int rfs_fs_setxattr(rfs_fs *fs, const struct rfs_ctx *ctx, rfs_nodeid node, const char *name,
		    const void *val, size_t size, int flags)
{
	return xattr_op(fs, ctx, node, name, val, size, flags, false);
}

int rfs_fs_removexattr(rfs_fs *fs, rfs_nodeid node, const char *name)
{
	return xattr_op(fs, NULL, node, name, NULL, 0, 0, true);
}

ssize_t rfs_fs_getxattr(rfs_fs *fs, rfs_nodeid id, const char *name, void *val,
			size_t size)
{
	size_t nl = 0;
	struct rfs_irec r;
	/* as in xattr_op: a name an older version stored can be read */
	int nameerr = xattr_name_check(name, &nl), ret;
	if (nameerr == -ERANGE)
		return nameerr;
	fs_rdlock(fs);
	struct rfs_node *n = node_get(fs, id);
	ret = n ? inode_read(fs, n, &r) : -ESTALE;
	if (ret)
		goto out;
	rfs_tree t = FS_TREE(r.i.subtree, rec_owner(&r.i));
	uint8_t *buf = malloc(RFS_XATTR_MAX + XCHUNK);
	if (!buf) {
		ret = -ENOMEM;
		goto out;
	}
	size_t total = 0;
	ret = t.root ? 0 : -ENODATA;
	for (uint16_t c = 0; !ret; c++) {
		uint8_t key[RFS_KEY_MAX];
		size_t kl = xkey(key, name, nl, c), vl = XCHUNK;
		if (total > RFS_XATTR_MAX) {
			ret = -EUCLEAN;
			break;
		}
		ret = rfs_tree_lookup(fs->pool, &t, key, kl, buf + total, &vl, NULL);
		if (ret == -ENOENT) {
			/* no chunk 0: absent; no chunk k > 0: the value was a
			 * multiple of the chunk size */
			ret = c ? 0 : -ENODATA;
			break;
		}
		if (ret)
			break;
		total += vl;
		if (vl < XCHUNK)
			break;
	}
	if (!ret) {
		if (size && total > size)
			ret = -ERANGE;
		else if (size)
			memcpy(val, buf, total);
		if (!ret)
			ret = (int)total;
	}
	free(buf);
out:
	rfs_pool_unlock(fs->pool);
	return ret == -ENODATA && nameerr ? nameerr : ret;
}

int xattr_each(rfs_fs *fs, const rfs_tree *t, xattr_item_fn fn, void *arg)
{
	if (!t->root)
		return 0;
	rfs_cursor *c;
	int ret = rfs_cursor_open(fs->pool, t, &c);
	if (ret)
		return ret;
	uint8_t start[1] = {'X'};
	for (ret = rfs_cursor_seek(c, start, 1, 1); !ret; ret = rfs_cursor_step(c, 1)) {
		const uint8_t *k;
		const void *v;
		size_t kl, vl;
		rfs_cursor_get(c, (const void **)&k, &kl, &v, &vl, NULL);
		if (k[0] != 'X')
			break;
		if (kl < 4 || k[kl - 3] != 0)
			continue;
		ret = fn(arg, (const char *)k + 1, kl - 4, get_be16(k + kl - 2), vl);
		if (ret)
			break;
	}
	rfs_cursor_close(c);
	return ret == -ENOENT ? 0 : ret;
}

struct name_list {
	char *list;
	size_t size, total;
};

/* xattr_each: the name of each first chunk, with its NUL, into the list
 * (only counted when size is 0). */
static int list_name(void *arg, const char *name, size_t nl, uint16_t chunk, size_t vl)
{
	struct name_list *l = arg;
	(void)vl;
	if (chunk != 0)
		return 0;
	if (l->size) {
		if (l->total + nl + 1 > l->size)
			return -ERANGE;
		memcpy(l->list + l->total, name, nl);
		l->list[l->total + nl] = 0;
	}
	l->total += nl + 1;
	return 0;
}

ssize_t rfs_fs_listxattr(rfs_fs *fs, rfs_nodeid id, char *list, size_t size)
{
	struct rfs_irec r;
	struct name_list l = {list, size, 0};
	fs_rdlock(fs);
	struct rfs_node *n = node_get(fs, id);
	int ret = n ? inode_read(fs, n, &r) : -ESTALE;
	if (!ret) {
		rfs_tree t = FS_TREE(r.i.subtree, rec_owner(&r.i));
		ret = xattr_each(fs, &t, list_name, &l);
	}
	rfs_pool_unlock(fs->pool);
	return ret ? ret : (ssize_t)l.total;
}

/* ---- keeping a file's xattrs across a whole-file clone ---------------------- */

struct rfs_xsave {
	size_t n, cap;
	struct xitem {
		size_t kl, vl;
		uint8_t *kv;
	} *items;
};

void xattr_save_free(struct rfs_xsave *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n; i++)
		free(s->items[i].kv);
	free(s->items);
	free(s);
}

static int collect_x(rfs_fs *fs, const rfs_tree *t, struct rfs_xsave *s, bool keys_only)
{
	rfs_cursor *c;
	if (!t->root)
		return 0;
	int ret = rfs_cursor_open(fs->pool, t, &c);
	if (ret)
		return ret;
	uint8_t start[1] = {'L'};
	for (ret = rfs_cursor_seek(c, start, 1, 1); !ret; ret = rfs_cursor_step(c, 1)) {
		const uint8_t *k;
		const void *v;
		size_t kl, vl;
		rfs_cursor_get(c, (const void **)&k, &kl, &v, &vl, NULL);
		if (k[0] != 'X' && k[0] != 'L')
			break;
		if (s->n == s->cap) {
			size_t nc = s->cap ? s->cap * 2 : 8;
			struct xitem *ni = realloc(s->items, nc * sizeof(*ni));
			if (!ni) {
				ret = -ENOMEM;
				break;
			}
			s->items = ni;
			s->cap = nc;
		}
		struct xitem *it = &s->items[s->n];
		it->kl = kl;
		it->vl = keys_only ? 0 : vl;
		it->kv = malloc(kl + it->vl + 1);
		if (!it->kv) {
			ret = -ENOMEM;
			break;
		}
		memcpy(it->kv, k, kl);
		if (!keys_only)
			memcpy(it->kv + kl, v, vl);
		s->n++;
	}
	rfs_cursor_close(c);
	return ret == -ENOENT ? 0 : ret;
}

int xattr_save(rfs_fs *fs, const rfs_tree *t, struct rfs_xsave **out)
{
	struct rfs_xsave *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	int ret = collect_x(fs, t, s, false);
	if (ret) {
		xattr_save_free(s);
		return ret;
	}
	*out = s;
	return 0;
}

int xattr_strip(rfs_fs *fs, rfs_tree *t)
{
	struct rfs_xsave s = {0};
	int ret = collect_x(fs, t, &s, true);
	for (size_t i = 0; !ret && i < s.n; i++)
		ret = rfs_tree_delete(fs->pool, t, s.items[i].kv, s.items[i].kl, 0);
	for (size_t i = 0; i < s.n; i++)
		free(s.items[i].kv);
	free(s.items);
	return ret;
}

int xattr_restore(rfs_fs *fs, rfs_tree *t, struct rfs_xsave *s)
{
	int ret = 0;
	for (size_t i = 0; !ret && i < s->n; i++)
		ret = rfs_tree_put(fs->pool, t, s->items[i].kv, s->items[i].kl,
				   s->items[i].kv + s->items[i].kl, s->items[i].vl, 0,
				   RFS_PUT_UPSERT);
	return ret;
}
