/*
 * Embedded directories (volume format RFS_VOL_EMBED; docs/ARCHITECTURE.md,
 * "Cost of a tree clone, and small directories").
 *
 * A new directory has no tree of its own: its entries are items
 * 'e' be64(ino) be64(hash) name of the tree holding its record, the
 * entries tree of its nearest ancestor that is not embedded (embedded
 * directories nest).  The top of such an embedded subtree (its parent is
 * not embedded) counts the entries of the whole subtree in its `volume`
 * field (ip_store adds the path's emb_delta).  Past RFS_EMBED_MAX
 * entries, before an xattr, a snapshot of it, or its move to another
 * directory, a directory is materialized: its items move into a tree of
 * its own, O(RFS_EMBED_MAX), once (never back).
 */
#include "fs/op.h"

#include <stdlib.h>

/* One item moved out of the holder tree. */
struct emb_item {
	size_t klen, vlen;
	uint8_t flags;
	uint8_t key[RFS_KEY_MAX];
	uint8_t val[RFS_VAL_MAX];
};

struct emb_list {
	struct emb_item *v;
	size_t n, cap;
};

/* Take every item of prefix 'e' ino out of h (their references with
 * them) into l; copy: leave them in h. */
static int emb_take(rfs_fs *fs, rfs_tree *h, uint64_t ino, bool copy, struct emb_list *l)
{
	uint8_t pfx[9] = {'e'};
	put_be64(pfx + 1, ino);
	size_t first = l->n;
	rfs_cursor *c;
	int ret = rfs_cursor_open(fs->pool, h, &c);
	if (ret)
		return ret;
	for (ret = rfs_cursor_seek(c, pfx, sizeof(pfx), 1); !ret; ret = rfs_cursor_step(c, 1)) {
		const void *k, *v;
		size_t kl, vl;
		uint8_t f;
		rfs_cursor_get(c, &k, &kl, &v, &vl, &f);
		if (kl < sizeof(pfx) || memcmp(k, pfx, sizeof(pfx)))
			break;
		if (l->n == l->cap) {
			size_t cap = l->cap ? l->cap * 2 : 16;
			struct emb_item *nv = realloc(l->v, cap * sizeof(*nv));
			if (!nv) {
				ret = -ENOMEM;
				break;
			}
			l->v = nv;
			l->cap = cap;
		}
		struct emb_item *it = &l->v[l->n++];
		it->klen = kl;
		it->vlen = vl;
		it->flags = f;
		memcpy(it->key, k, kl);
		memcpy(it->val, v, vl);
	}
	rfs_cursor_close(c);
	if (ret && ret != -ENOENT)
		return ret;
	for (size_t i = first; i < l->n && !copy; i++) {
		ret = rfs_tree_delete(fs->pool, h, l->v[i].key, l->v[i].klen, RFS_KEEP_REFS);
		if (ret)
			return ret;
	}
	return 0;
}

/* Move (copy: copy, with references of their own) the entries of embedded directory ino, and recursively of the
 * embedded directories among them, from h into nt.  top: ino is the
 * directory being materialized, whose entries become 'N' items and whose
 * embedded children become tops (with their counts).  *count: entries
 * moved. */
static int emb_move(rfs_fs *fs, rfs_tree *h, rfs_tree *nt, uint64_t ino, bool top,
		    bool copy, uint64_t *count, int depth)
{
	struct emb_list l = {0};
	if (depth > 4096)
		return -ELOOP;
	int ret = emb_take(fs, h, ino, copy, &l);
	for (size_t i = 0; !ret && i < l.n; i++) {
		struct emb_item *it = &l.v[i];
		struct rfs_irec r;
		ret = rec_decode(it->val, it->vlen, &r);
		if (ret)
			break;
		uint64_t below = 0;
		if (is_embed(&r.i))
			ret = emb_move(fs, h, nt, r.i.ino, false, copy, &below, depth + 1);
		if (!ret && copy)
			ret = rec_ref(fs, &r);
		if (ret)
			break;
		*count += 1 + below;
		if (top && is_embed(&r.i)) {
			r.i.volume = below;
			it->vlen = rec_encode(&r, it->val, compact_ok(fs));
		}
		if (top) {
			/* 'e' be64(ino) be64(hash) name -> 'N' be64(hash) name */
			memmove(it->key + 1, it->key + 9, it->klen - 9);
			it->key[0] = 'N';
			it->klen -= 8;
		}
		ret = rfs_tree_put(fs->pool, nt, it->key, it->klen, it->val, it->vlen, it->flags,
				   RFS_PUT_INSERT);
	}
	free(l.v);
	return ret;
}

static int emb_tree(rfs_fs *fs, rfs_tree *h, struct rfs_irec *x, bool copy, uint64_t *moved)
{
	rfs_tree nt = FS_TREE(0, RFS_OWNER_DIR);
	*moved = 0;
	if (!is_embed(&x->i))
		return 0;
	int ret = emb_move(fs, h, &nt, x->i.ino, true, copy, moved, 0);
	if (ret) {
		/* the operation fails: its transaction is discarded (op.h) */
		rfs_tree_drop(fs->pool, &nt);
		return ret;
	}
	x->i.flags &= ~(uint32_t)RFS_INODE_EMBED;
	x->i.subtree = nt.root;
	x->i.volume = 0;
	x->i.rdev = 0;
	return 0;
}

uint64_t emb_stamp(rfs_fs *fs)
{
	uint64_t gen = rfs_pool_txn_gen(fs->pool);
	if (gen != fs->stamp_gen) {
		fs->stamp_gen = gen;
		fs->stamp_n = 0;
	}
	/* 2^24 stores per transaction are far more than one runs */
	return gen << 24 | (++fs->stamp_n & 0xffffff);
}

int emb_materialize(rfs_fs *fs, rfs_tree *h, struct rfs_irec *x, uint64_t *moved)
{
	return emb_tree(fs, h, x, false, moved);
}

int emb_copy(rfs_fs *fs, struct rfs_node *n, struct rfs_irec *x)
{
	struct rfs_ipath p;
	uint64_t moved;
	int ret = ip_load(fs, n, false, &p);
	if (ret)
		return ret;
	rfs_tree h = p.lv[p.n - 1].parent;
	if (p.in_table || p.lv[p.n - 1].rec.i.ino != x->i.ino)
		ret = -ESTALE;
	else
		ret = emb_tree(fs, &h, x, true, &moved);
	ip_free(&p);
	return ret;
}

/* Materialize level k of mutable path p (an embedded directory); the
 * count of the top above it drops by what moved.  The levels below k
 * named the old tree: the path ends at k afterwards. */
static int ip_materialize_at(rfs_fs *fs, struct rfs_ipath *p, int k)
{
	uint64_t moved;
	int ret = emb_materialize(fs, &p->lv[k].parent, &p->lv[k].rec, &moved);
	if (ret)
		return ret;
	int t = k;
	while (t > 0 && is_embed(&p->lv[t - 1].rec.i))
		t--;
	if (t < k)
		p->lv[t].rec.i.volume -= moved;
	p->n = k + 1;
	p->target_tree_valid = false;
	return 0;
}

int ip_materialize(rfs_fs *fs, struct rfs_ipath *p)
{
	if (p->in_table || !is_embed(&ip_rec(p)->i))
		return 0;
	return ip_materialize_at(fs, p, p->n - 1);
}

int ip_room(rfs_fs *fs, struct rfs_node *dn, struct rfs_ipath *p)
{
	int n = p->n, t = n - 1;
	if (p->in_table || !is_embed(&p->lv[t].rec.i))
		return 0;
	while (t > 0 && is_embed(&p->lv[t - 1].rec.i))
		t--;
	if (p->lv[t].rec.i.volume + 1 <= RFS_EMBED_MAX)
		return 0;
	int ret = ip_materialize_at(fs, p, t);
	ret = ip_done(fs, p, 0, ret);
	if (ret)
		return ret;
	return ip_load(fs, dn, true, p);
}

int entry_materialize(rfs_fs *fs, struct rfs_node *dn, const char *name, size_t len)
{
	struct rfs_ipath p;
	struct rfs_irec e;
	int ret = ip_load(fs, dn, true, &p);
	if (ret)
		return ret;
	uint8_t key[RFS_KEY_MAX];
	size_t kl = ip_dkey(&p, key, name, len);
	rfs_tree *t = ip_dtree(&p);
	ret = rec_get(fs->pool, t, key, kl, &e, true);
	if (ret || !is_embed(&e.i))
		return ip_done(fs, &p, 0, ret);
	uint64_t moved;
	ret = emb_materialize(fs, t, &e, &moved);
	if (!ret)
		ret = rec_put(fs, t, key, kl, &e, RFS_PUT_REPLACE | RFS_KEEP_REFS);
	if (!ret)
		p.emb_delta = -(int64_t)moved; /* the parent's top counted them */
	return ip_done(fs, &p, 0, ret);
}
