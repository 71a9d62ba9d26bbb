/*
 * du: how much space a directory or file takes, and how much of it is its
 * own (rfs_du_*, `reflinkfs du`).  Definitions and costs: fs.h and
 * docs/ARCHITECTURE.md ("du: exclusive and shared space").
 *
 * Exclusive means "deleting PATH would free it".  Sharing is lazy (Rodeh):
 * a node or data block has one count per pointer to it, and what hangs
 * below a shared node keeps a count of 1, so whether a block is PATH's
 * own depends on every node above it.  The walk therefore records a small
 * graph: its vertices are the nodes and data blocks with a count >= 2
 * that it meets (plus three fixed ones: PATH's own record, hard-linked
 * inodes all of whose names are below PATH, and "outside"); everything
 * with a count of 1 belongs to the nearest such vertex above it, which
 * sums its nodes and data blocks; each pointer to a shared node or block
 * met below PATH is an edge from the vertex holding the pointer.  At the
 * end a vertex is exclusive when as many of its pointers come from
 * exclusive vertices as its count says (a fixpoint from PATH's record:
 * the drop of PATH simulated on counts, Kahn's algorithm), and a data
 * block with count >= 2 likewise, from the runs of such blocks the
 * extents named (a sweep over the runs sorted by block).
 *
 * A shared node is read once: met again, only the edge is added (for a
 * file tree), or its directory entries are walked again without counting
 * any node or block ("shadow" pass) so that the inodes below it are
 * counted once per name path, as du counts the files of a snapshot.
 *
 * Hard-linked inodes hang below their volume's link table, not below
 * PATH: their names are counted during the walk, and each one met is then
 * walked from its record.  The record's pointer to the inode's tree is
 * PATH's when deleting PATH would drop it: when every volume whose link
 * table reaches that record (one, unless a snapshot of a volume's root
 * shares the table) has all the inode's names below PATH.
 *
 * Locking: as the scrub, a step holds the pool's read lock for a bounded
 * amount of work and keeps only keys across steps: the position is a
 * key per tree level (rfs_tree_walk resumes from it), resolved again from
 * PATH's record at every step.  Block numbers kept across steps (the
 * vertices) are only compared, never read, so a concurrent change can
 * make the figures approximate (the count of operations that ran during
 * the walk says so) but never makes the walk read a block a writer freed.
 */
#include "fs/du_internal.h"

#include <stdlib.h>

#define BS DU_BS

/* ---- the walk ------------------------------------------------------------- */

static bool should_pause(const rfs_du *d)
{
	return d->budget <= 0 && d->progressed;
}

static int du_enter(void *arg, const struct rfs_walk_node *n)
{
	rfs_du *d = arg;
	struct ctx top = du_ctx_top(d);
	bool dir = d->lv[d->cur]->dir;
	d->budget--;
	if (n->resumed) {
		/* Rebuild the context of a node entered by an earlier step. */
		if (n->refcount >= 2 && !top.shadow) {
			uint32_t w = du_vfind(d, n->blocknr);
			if (!w)
				w = du_vadd(d, n->blocknr, n->refcount); /* changed meanwhile */
			if (!w)
				return d->fatal;
			du_ctx_push(d, w - 1, d->v[w - 1].done);
		} else {
			du_ctx_push(d, top.v, top.shadow);
		}
		return d->fatal;
	}
	if (n->can_pause && should_pause(d))
		return RFS_WALK_PAUSE;
	d->progressed = true;
	d->st.nodes++;
	if (top.shadow) {
		/* A second pass: directories only, nothing counted. */
		if (!dir)
			return RFS_WALK_SKIP;
		du_ctx_push(d, top.v, true);
		return d->fatal;
	}
	if (n->refcount >= 2) {
		uint32_t w = du_vfind(d, n->blocknr);
		if (w) {
			/* Met before: one more pointer to it. */
			du_edge_add(d, top.v, w - 1);
			if (d->fatal)
				return d->fatal;
			if (!dir)
				return RFS_WALK_SKIP;
			du_ctx_push(d, w - 1, true);
			return d->fatal;
		}
		w = du_vadd(d, n->blocknr, n->refcount);
		if (!w)
			return d->fatal;
		du_edge_add(d, top.v, w - 1);
		du_ctx_push(d, w - 1, false);
		return d->fatal;
	}
	d->v[top.v].meta++;
	du_ctx_push(d, top.v, false);
	return d->fatal;
}

static void du_leave(void *arg, const struct rfs_walk_node *n)
{
	rfs_du *d = arg;
	if (!d->ncs)
		return;
	struct ctx c = d->cs[--d->ncs];
	/* A shared node's first visit ends here (pushed as its own vertex). */
	if (!c.shadow && c.v >= V_FIXED && d->v[c.v].blocknr == n->blocknr)
		d->v[c.v].done = true;
}

/* A directory entry of level l: count the inode, go below it. */
static int du_entry(rfs_du *d, int l, const uint8_t *k, size_t kl, const void *val, size_t vl,
		    struct ctx top)
{
	struct dlevel *lv = d->lv[l];
	bool resumed = lv->in_item && lv->pos.mode == RFS_WALK_AT && lv->pos.klen == kl &&
		       !memcmp(lv->pos.key, k, kl);
	int ret = rec_decode(val, vl, &d->rec);
	if (ret)
		return ret;
	/* Only what is needed below: the recursion keeps it on the stack. */
	const struct rfs_inode *i = &d->rec.i;
	uint64_t subtree = i->subtree, blocks = i->blocks, ino = i->ino;
	bool isdir = S_ISDIR(i->mode), linked = i->flags & RFS_INODE_LINKED;
	struct dirloc sub;
	if (isdir)
		dloc_of(&sub, i, &lv->loc.t);
	uint64_t vol = vol_below(lv->vol, i);
	if (!resumed) {
		lv->in_item = false;
		if (linked)
			return du_link_add(d, lv->vol, ino);
		if (isdir)
			d->st.dirs++;
		else
			d->st.files++;
		d->st.total += blocks * BS;
		if (l + 1 < d->nlv)
			d->lv[l + 1]->pos.mode = RFS_WALK_START;
	}
	if (!resumed && !linked && !top.shadow && (i->flags & RFS_INODE_INLEXT)) {
		/* An inline extent map: the entry's leaf holds the references,
		 * as it would for any value's extents. */
		const uint8_t *list;
		int n = rfs_value_extlist(val, vl, vl - d->rec.taillen, &list);
		if (n < 0)
			return -EUCLEAN;
		for (int x = 0; x < n && !ret; x++) {
			uint64_t ext[2];
			memcpy(ext, list + 16 * x, 16);
			if (ext[0] && ext[1])
				ret = du_count_extent(d, top.v, ext[0], ext[1]);
		}
		if (ret)
			return ret;
	}
	if (linked || !subtree || (!isdir && top.shadow))
		return 0;
	ret = du_walk_level(d, l + 1, subtree, isdir ? &sub : NULL, vol);
	d->cur = l;
	if (ret < 0)
		return ret;
	if (ret == 1) {
		lv->in_item = true;
		return RFS_WALK_PAUSE_AT;
	}
	lv->in_item = false;
	return 0;
}

static int du_item(void *arg, const void *key, size_t klen, const void *val, size_t vlen,
		   uint8_t flags)
{
	rfs_du *d = arg;
	int l = d->cur;
	const uint8_t *k = key;
	struct ctx top = du_ctx_top(d);
	int ret = 0;
	d->budget--;
	const char *name;
	size_t nl;
	uint64_t in;
	/* A directory's tree holds its entries and those of the embedded
	 * directories below it: all are inodes below PATH. */
	if (d->lv[l]->dir && dtree_entry(k, klen, &in, &name, &nl) == 1) {
		ret = du_entry(d, l, k, klen, val, vlen, top);
	} else if ((flags & RFS_ITEM_EXTENT) && !top.shadow) {
		/* Any value's extent, as the tree counts it: after the nested
		 * root when there is one. */
		size_t off = (flags & RFS_ITEM_TREE) ? 8 : 0;
		uint64_t ext[2];
		if (vlen >= off + 16) {
			memcpy(ext, (const uint8_t *)val + off, 16);
			if (ext[0] && ext[1])
				ret = du_count_extent(d, top.v, ext[0], ext[1]);
		}
	}
	if (ret)
		return ret;
	if (d->fatal)
		return d->fatal;
	d->progressed = true;
	return should_pause(d) ? RFS_WALK_PAUSE : 0;
}

static const struct rfs_walk_ops du_ops = {du_enter, du_item, du_leave};

/* Walk the tree at root as level l (its position kept in d->lv[l]). */
int du_walk_level(rfs_du *d, int l, uint64_t root, const struct dirloc *dir, uint64_t vol)
{
	if (l >= d->nlv) {
		if (l > 8192)
			return -ELOOP;
		struct dlevel **nl = realloc(d->lv, (size_t)(l + 1) * sizeof(*nl));
		if (!nl)
			return -ENOMEM;
		d->lv = nl;
		while (d->nlv <= l) {
			/* Each level apart: a walk keeps a pointer to its position. */
			d->lv[d->nlv] = calloc(1, sizeof(**d->lv));
			if (!d->lv[d->nlv])
				return -ENOMEM;
			d->nlv++;
		}
	}
	struct dlevel *lv = d->lv[l];
	lv->dir = dir != NULL;
	if (dir)
		lv->loc = *dir;
	lv->vol = vol;
	d->cur = l;
	rfs_tree t = FS_TREE(root, dir ? RFS_OWNER_DIR : RFS_OWNER_FILE);
	int ret = rfs_tree_walk(d->pool, &t, &lv->pos, &du_ops, d);
	if (ret == 0)
		lv->pos.mode = RFS_WALK_START;
	return ret;
}

/* ---- steps ------------------------------------------------------------------ */

/* The entries of an embedded directory and of those below it, listed. */
struct emb_ents {
	struct emb_ent {
		size_t klen, vlen;
		uint8_t *kv;
		struct dirloc sub; /* an embedded directory's entries */
		bool emb;
	} *v;
	size_t n, cap;
	const struct dirloc *at;
};

static int emb_ent_add(void *arg, const char *name, size_t len, const struct rfs_irec *r)
{
	struct emb_ents *l = arg;
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;
		struct emb_ent *nv = realloc(l->v, cap * sizeof(*nv));
		if (!nv)
			return -ENOMEM;
		l->v = nv;
		l->cap = cap;
	}
	uint8_t *kv = malloc(RFS_KEY_MAX + RFS_VAL_MAX);
	if (!kv)
		return -ENOMEM;
	struct emb_ent *e = &l->v[l->n++];
	e->kv = kv;
	e->klen = dloc_key(l->at, kv, name, len);
	e->vlen = rec_encode(r, kv + e->klen, true); /* in memory only */
	e->emb = is_embed(&r->i);
	if (e->emb)
		dloc_of(&e->sub, &r->i, &l->at->t);
	return 0;
}

/* PATH is an embedded directory (entries at loc): no tree of its own;
 * its entries, and those of the embedded directories below it, are
 * items of the tree holding it, at most RFS_EMBED_MAX: counted in this
 * one step.  above: a node above that tree is shared. */
static int du_embedded(rfs_du *d, const struct dirloc *loc, uint64_t vol, bool above)
{
	struct emb_ents l = {0};
	int ret = du_walk_level(d, 0, 0, loc, vol); /* level 0: no tree to walk */
	l.at = loc;
	if (!ret)
		ret = dir_each(d->fs, loc, emb_ent_add, &l);
	for (size_t i = 0; !ret && i < l.n; i++) {
		if (!l.v[i].emb)
			continue;
		struct dirloc sub = l.v[i].sub; /* l.v moves as it grows */
		l.at = &sub;
		ret = dir_each(d->fs, &sub, emb_ent_add, &l);
	}
	int64_t budget = d->budget;
	d->budget = INT64_MAX; /* du_entry must not pause: nothing resumes here */
	for (size_t i = 0; !ret && i < l.n; i++) {
		/* Whose the entry's pointers are: its leaf's.  That is not
		 * always the record's leaf (the entries sit under a prefix of
		 * their own), so a snapshot may still share it when it no
		 * longer shares the record's leaf, or the other way round:
		 * PATH's own (dropped by deleting PATH) when nothing on the
		 * way to it is shared, else held outside too. */
		bool sh = above;
		if (!sh)
			ret = rfs_tree_path_shared(d->pool, &loc->t, l.v[i].kv, l.v[i].klen, &sh);
		if (ret)
			break;
		struct ctx top = {sh ? V_OUTSIDE : V_OWNED, false};
		d->lv[0]->in_item = false;
		ret = du_entry(d, 0, l.v[i].kv, l.v[i].klen, l.v[i].kv + l.v[i].klen, l.v[i].vlen,
			       top);
	}
	d->budget = budget - (int64_t)l.n;
	d->cur = 0;
	for (size_t i = 0; i < l.n; i++)
		free(l.v[i].kv);
	free(l.v);
	return ret;
}

/* PATH's own tree (and PATH itself, at the first step). */
static int ns_step(rfs_du *d)
{
	struct rfs_node *n = node_get(d->fs, d->node);
	struct rfs_ipath p;
	int ret = n ? ip_load(d->fs, n, false, &p) : -ESTALE;
	if (ret)
		return ret;
	struct rfs_irec *r = ip_rec(&p);
	uint64_t vol = n->vol;
	if (!d->started) {
		d->started = true;
		ret = ip_shared(d->fs, &p, &d->path_shared);
		if (ret)
			goto out;
		if (p.in_table) {
			/* A hard-linked file: walked with the link table's
			 * inodes, PATH being one of its names. */
			ret = du_link_add(d, vol, r->i.ino);
			d->phase = PH_LINKS;
			goto out;
		}
		if (S_ISDIR(r->i.mode))
			d->st.dirs++;
		else
			d->st.files++;
		d->st.total += r->i.blocks * BS;
	}
	d->ncs = 0;
	du_ctx_push(d, V_PATH, false);
	ret = d->fatal;
	if (!ret && (r->i.flags & RFS_INODE_INLEXT)) {
		/* PATH's own inline extents (a file): PATH holds them.  A
		 * file is walked in one step, so this runs once. */
		struct rfs_ext *x = malloc(sizeof(*x) * RFS_INLEXT_CAP);
		int nx = x ? inl_decode(r, x, RFS_INLEXT_CAP) : -ENOMEM;
		ret = nx < 0 ? nx : 0;
		for (int i = 0; i < nx && !ret; i++)
			ret = du_count_extent(d, V_PATH, x[i].start, x[i].n);
		free(x);
	}
	if (!ret && is_embed(&r->i)) {
		struct dirloc loc;
		ip_dloc(&p, &loc);
		/* Shared above the tree holding PATH's entries: the levels
		 * of the path in other trees. */
		bool above = false;
		for (int i = 0; i < p.n && !ret && !above; i++)
			if (p.lv[i].parent.root != loc.t.root)
				ret = rfs_tree_path_shared(d->pool, &p.lv[i].parent, p.lv[i].key,
							   p.lv[i].klen, &above);
		if (!ret)
			ret = du_embedded(d, &loc, vol_below(vol, &r->i), above);
	} else if (!ret && r->i.subtree) {
		struct dirloc loc;
		if (S_ISDIR(r->i.mode))
			ip_dloc(&p, &loc);
		ret = du_walk_level(d, 0, r->i.subtree, S_ISDIR(r->i.mode) ? &loc : NULL,
				    vol_below(vol, &r->i));
	}
	if (ret == 0)
		d->phase = PH_LINKS;
out:
	ip_free(&p);
	return ret;
}

/* ---- public calls --------------------------------------------------------------- */

int rfs_du_begin(rfs_fs *fs, rfs_nodeid node, rfs_du **out)
{
	*out = NULL;
	rfs_du *d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->fs = fs;
	d->pool = fs->pool;
	d->node = node;
	for (int i = 0; i < V_FIXED; i++)
		if (!du_vadd(d, 0, 1)) {
			rfs_du_end(d);
			return -ENOMEM;
		}
	fs_rdlock(fs);
	d->ops0 = fs->ops;
	rfs_pool_unlock(fs->pool);
	/* Held open, so that the inode stays while the walk runs. */
	int ret = rfs_fs_open_node(fs, node);
	if (ret) {
		rfs_du_end(d);
		return ret;
	}
	d->opened = true;
	*out = d;
	return 0;
}

int rfs_du_step(rfs_du *d, uint64_t budget)
{
	if (d->fatal)
		return d->fatal;
	if (d->phase == PH_DONE)
		return 0;
	/* A writer waiting for the lock goes first (see rfs_scrub_step). */
	rfs_pool_wrlock(d->pool);
	rfs_pool_unlock(d->pool);
	rfs_pool_rdlock(d->pool);
	d->budget = budget > INT64_MAX ? INT64_MAX : (int64_t)budget;
	d->progressed = false;
	int ret = 0;
	while (!ret && d->budget > 0 && d->phase != PH_DONE) {
		if (d->phase == PH_NS) {
			ret = ns_step(d);
		} else if (d->phase == PH_LINKS) {
			ret = du_links_step(d);
		}
	}
	d->st.changes = d->fs->ops - d->ops0;
	rfs_pool_unlock(d->pool);
	if (ret < 0) {
		d->fatal = ret;
		return ret;
	}
	if (d->phase != PH_DONE)
		return 1;
	ret = du_finish(d);
	if (ret) {
		d->fatal = ret;
		return ret;
	}
	d->st.done = 1;
	return 0;
}

void rfs_du_get_stats(rfs_du *d, struct rfs_du_stats *st)
{
	*st = d->st;
}

void rfs_du_end(rfs_du *d)
{
	if (!d)
		return;
	if (d->opened)
		rfs_fs_release(d->fs, d->node);
	for (int i = 0; i < d->nlv; i++)
		free(d->lv[i]);
	free(d->lv);
	free(d->cs);
	free(d->v);
	free(d->vidx);
	free(d->e);
	free(d->runs);
	free(d->links);
	free(d->groups);
	free(d);
}
