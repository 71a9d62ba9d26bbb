/*
 * Where a directory's entries are (struct dirloc), and reading them in
 * key order.  Today every directory's entries are the 'N' items of its
 * own entries tree; the plan for small directories (docs/ARCHITECTURE.md,
 * issue 9) keeps some in the tree holding the directory's record under
 * another prefix.  Every user of a directory's entries (lookups, creates,
 * removals, readdir, the subtree walks, diff, du, scrub, fsck) builds its
 * keys and checks the ones it reads here, so that a change of how entries
 * are stored changes this file, not every user.
 */
#include "fs/fs_internal.h"

#include <stdlib.h>

void dloc_of(struct dirloc *l, const struct rfs_inode *d, const rfs_tree *holder)
{
	if (is_embed(d)) {
		/* holder may be &l->t: read it first */
		assert(holder);
		l->t = *holder;
		l->pfx[0] = 'e';
		put_be64(l->pfx + 1, d->ino);
		l->plen = 9;
		return;
	}
	l->t = FS_TREE(d->subtree, RFS_OWNER_DIR);
	l->pfx[0] = 'N';
	l->plen = 1;
}

int dtree_entry(const uint8_t *k, size_t kl, uint64_t *dir, const char **name, size_t *len)
{
	size_t pl = kl && k[0] == 'N' ? 1 : kl && k[0] == 'e' ? 9 : 0;
	if (!pl)
		return 0;
	if (kl < pl + 9 || kl - pl - 8 > RFS_NAME_MAX)
		return -EUCLEAN;
	*dir = pl == 9 ? get_be64(k + 1) : 0;
	*name = (const char *)k + pl + 8;
	*len = kl - pl - 8;
	return 1;
}

size_t dloc_key(const struct dirloc *l, uint8_t *key, const char *name, size_t len)
{
	memcpy(key, l->pfx, l->plen);
	put_be64(key + l->plen, name_hash(name, len));
	memcpy(key + l->plen + 8, name, len);
	return l->plen + 8 + len;
}

int dloc_entry(const struct dirloc *l, const uint8_t *k, size_t kl, uint64_t *hash,
	       const char **name, size_t *len)
{
	if (kl < l->plen || memcmp(k, l->pfx, l->plen))
		return 0;
	/* prefix be64(hash) name: a name of 1..RFS_NAME_MAX bytes */
	if (kl < l->plen + 9 || kl - l->plen - 8 > RFS_NAME_MAX)
		return -EUCLEAN;
	if (hash)
		*hash = get_be64(k + l->plen);
	*name = (const char *)k + l->plen + 8;
	*len = kl - l->plen - 8;
	return 1;
}

int dloc_seek(const struct dirloc *l, rfs_cursor *c, uint64_t hash)
{
	uint8_t key[sizeof(l->pfx) + 8];
	memcpy(key, l->pfx, l->plen);
	put_be64(key + l->plen, hash);
	return rfs_cursor_seek(c, key, l->plen + 8, 1);
}

int dir_each(rfs_fs *fs, const struct dirloc *l, dir_each_fn fn, void *arg)
{
	rfs_tree t = l->t;
	rfs_cursor *c;
	if (!t.root)
		return 0;
	/* On the heap: walks recurse through fn (diff), a record is 1 KiB. */
	struct rfs_irec *r = malloc(sizeof(*r));
	if (!r)
		return -ENOMEM;
	int ret = rfs_cursor_open(fs->pool, &t, &c);
	if (ret) {
		free(r);
		return ret;
	}
	for (ret = dloc_seek(l, c, 0); !ret; ret = rfs_cursor_step(c, 1)) {
		const uint8_t *k;
		const void *v;
		size_t kl, vl, len;
		const char *name;
		rfs_cursor_get(c, (const void **)&k, &kl, &v, &vl, NULL);
		int e = dloc_entry(l, k, kl, NULL, &name, &len);
		if (e <= 0) {
			ret = e ? e : -ENOENT;
			break;
		}
		if (rec_decode(v, vl, r)) {
			ret = -EUCLEAN;
			break;
		}
		ret = fn(arg, name, len, r);
		if (ret)
			break;
	}
	rfs_cursor_close(c);
	free(r);
	return ret == -ENOENT ? 0 : ret;
}

rfs_tree *ip_dtree(struct rfs_ipath *p)
{
	struct rfs_ilevel *lv = &p->lv[p->n - 1];
	/* An embedded directory's entries are in the tree holding it: the
	 * path stores that tree's new root upward (ip_store). */
	return is_embed(&lv->rec.i) ? &lv->parent : ip_tree(p);
}

void ip_dloc(struct rfs_ipath *p, struct dirloc *l)
{
	int n = p->n;
	dloc_of(l, &p->lv[n - 1].rec.i, &p->lv[n - 1].parent);
	if (p->target_tree_valid && !is_embed(&p->lv[n - 1].rec.i))
		l->t = p->target_tree;
}

size_t ip_dkey(struct rfs_ipath *p, uint8_t *key, const char *name, size_t len)
{
	struct dirloc l;
	ip_dloc(p, &l);
	return dloc_key(&l, key, name, len);
}
