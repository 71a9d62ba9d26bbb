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
#include "fs/fs_internal.h"

#include <stdlib.h>

#define BS RFS_BLOCK_SIZE

/* Fixed vertices. */
enum {
	V_OUTSIDE = 0, /* pointers held outside PATH: never exclusive */
	V_PATH = 1,    /* PATH's record: exclusive unless a node above it is shared */
	V_OWNED = 2,   /* link records of inodes whose every name is below PATH */
	V_FIXED = 3,
};

struct vertex {
	uint64_t blocknr; /* 0 for the fixed ones */
	uint64_t count;   /* its refcount when met */
	uint64_t data;    /* data blocks of count 1 hanging below it */
	uint64_t meta;    /* nodes of count 1 below it, itself included */
	uint64_t got;     /* fixpoint: pointers from exclusive vertices */
	bool done;        /* its first (counting) visit is over */
	bool excl;
};

/* A pointer from vertex `from` to vertex `to`. */
struct edge {
	uint32_t from, to;
};

/* A run of data blocks with count >= 2 named by one extent. */
struct srun {
	uint64_t start, n, count;
	uint32_t from;
};

/* One tree level of the walk: PATH's tree, a directory or file below. */
struct dlevel {
	struct rfs_walk_pos pos;
	bool in_item; /* the item at pos (RFS_WALK_AT) has its subtree in progress */
	bool dir;     /* a directory's entries tree */
	uint64_t vol; /* dir: volume of the inodes it holds */
};

/* Names of a hard-linked inode met below PATH. */
struct dlink {
	uint64_t vol, ino, names;
};

/* What a tree node hangs below: a vertex, and whether this is a second
 * pass through it (nothing counted). */
struct ctx {
	uint32_t v;
	bool shadow;
};

enum { PH_NS, PH_LINKS, PH_DONE };

struct rfs_du {
	rfs_fs *fs;
	rfs_pool *pool;
	rfs_nodeid node;
	struct rfs_du_stats st;
	uint64_t ops0; /* fs->ops when the walk began */
	int phase;
	bool started;
	bool path_shared; /* a node above PATH's record is shared */
	int fatal;        /* -ENOMEM etc.: the walk cannot go on */
	int64_t budget;
	/* Fresh work was done in this step: only then may it pause (the
	 * resumed path alone can eat a small budget). */
	bool progressed;

	struct dlevel **lv;
	int nlv, cur;

	struct ctx *cs; /* stack of contexts, one per node entered */
	size_t ncs, capcs;

	struct vertex *v;
	size_t nv, capv;
	uint32_t *vidx; /* open addressing: blocknr -> index + 1 */
	size_t vidx_cap;
	struct edge *e;
	size_t ne, cape;
	struct srun *runs;
	size_t nruns, capruns;

	struct dlink *links; /* open addressing by (vol, ino); sorted for PH_LINKS */
	size_t links_cap, nlinks;
	bool links_sorted;
	size_t link_i;      /* PH_LINKS: the next link to walk */
	bool link_in_item;  /* its file tree is in progress... */
	uint32_t link_from; /* ...below this vertex */
	/* Records in a link-table leaf that volumes share: (leaf, ino)
	 * pairs whose file tree was walked (open addressing). */
	struct gkey {
		uint64_t leaf, ino;
	} *groups;
	size_t groups_cap, ngroups;
	bool opened; /* PATH held open (rfs_fs_open_node) */

	struct rfs_irec rec; /* scratch for decoding records */
};

static size_t hash64(uint64_t v, size_t cap)
{
	v ^= v >> 33;
	v *= 0xff51afd7ed558ccdull;
	v ^= v >> 33;
	return (size_t)(v & (cap - 1));
}

static int grow(void **p, size_t *cap, size_t n, size_t size)
{
	if (n < *cap)
		return 0;
	size_t c = *cap ? *cap * 2 : 64;
	void *q = realloc(*p, c * size);
	if (!q)
		return -ENOMEM;
	*p = q;
	*cap = c;
	return 0;
}

/* ---- vertices and edges ------------------------------------------------- */

static uint32_t vfind(const rfs_du *d, uint64_t blocknr)
{
	if (!d->vidx_cap)
		return 0;
	for (size_t h = hash64(blocknr, d->vidx_cap); d->vidx[h]; h = (h + 1) & (d->vidx_cap - 1))
		if (d->v[d->vidx[h] - 1].blocknr == blocknr)
			return d->vidx[h];
	return 0;
}

/* A new vertex; its index, or 0 with d->fatal set. */
static uint32_t vadd(rfs_du *d, uint64_t blocknr, uint64_t count)
{
	if (d->nv >= UINT32_MAX - 1 || grow((void **)&d->v, &d->capv, d->nv, sizeof(*d->v))) {
		d->fatal = -ENOMEM;
		return 0;
	}
	if ((d->nv + 1) * 2 > d->vidx_cap) {
		size_t cap = d->vidx_cap ? d->vidx_cap * 2 : 256;
		uint32_t *t = calloc(cap, sizeof(*t));
		if (!t) {
			d->fatal = -ENOMEM;
			return 0;
		}
		for (size_t i = V_FIXED; i < d->nv; i++) {
			size_t h = hash64(d->v[i].blocknr, cap);
			while (t[h])
				h = (h + 1) & (cap - 1);
			t[h] = (uint32_t)i + 1;
		}
		free(d->vidx);
		d->vidx = t;
		d->vidx_cap = cap;
	}
	uint32_t i = (uint32_t)d->nv++;
	d->v[i] = (struct vertex){.blocknr = blocknr, .count = count, .meta = blocknr ? 1 : 0};
	if (!blocknr)
		return i + 1; /* a fixed vertex: no node, never looked up */
	size_t h = hash64(blocknr, d->vidx_cap);
	while (d->vidx[h])
		h = (h + 1) & (d->vidx_cap - 1);
	d->vidx[h] = i + 1;
	return i + 1;
}

static void edge_add(rfs_du *d, uint32_t from, uint32_t to)
{
	if (grow((void **)&d->e, &d->cape, d->ne, sizeof(*d->e))) {
		d->fatal = -ENOMEM;
		return;
	}
	d->e[d->ne++] = (struct edge){from, to};
}

static void ctx_push(rfs_du *d, uint32_t v, bool shadow)
{
	if (grow((void **)&d->cs, &d->capcs, d->ncs, sizeof(*d->cs))) {
		d->fatal = -ENOMEM;
		return;
	}
	d->cs[d->ncs++] = (struct ctx){v, shadow};
}

static struct ctx ctx_top(const rfs_du *d)
{
	return d->ncs ? d->cs[d->ncs - 1] : (struct ctx){V_OUTSIDE, true};
}

/* Blocks [start, start + n) named by an extent below vertex v. */
static int count_extent(rfs_du *d, uint32_t v, uint64_t start, uint64_t n)
{
	while (n) {
		uint64_t count, run;
		int ret = rfs_ref_get_run(d->pool, start, n, &count, &run);
		if (ret)
			return ret;
		d->budget--;
		if (count <= 1) {
			d->v[v].data += run;
		} else {
			if (grow((void **)&d->runs, &d->capruns, d->nruns, sizeof(*d->runs)))
				return -ENOMEM;
			d->runs[d->nruns++] = (struct srun){start, run, count, v};
		}
		start += run;
		n -= run;
	}
	return 0;
}

/* ---- hard links ------------------------------------------------------------ */

static size_t link_hash(uint64_t vol, uint64_t ino, size_t cap)
{
	return hash64(ino * 0x9e3779b97f4a7c15ull ^ vol, cap);
}

/* One more name of hard-linked inode ino of volume vol below PATH. */
static int link_add(rfs_du *d, uint64_t vol, uint64_t ino)
{
	if ((d->nlinks + 1) * 2 > d->links_cap) {
		size_t cap = d->links_cap ? d->links_cap * 2 : 64;
		struct dlink *t = calloc(cap, sizeof(*t));
		if (!t)
			return -ENOMEM;
		for (size_t i = 0; i < d->links_cap; i++) {
			if (!d->links[i].ino)
				continue;
			size_t h = link_hash(d->links[i].vol, d->links[i].ino, cap);
			while (t[h].ino)
				h = (h + 1) & (cap - 1);
			t[h] = d->links[i];
		}
		free(d->links);
		d->links = t;
		d->links_cap = cap;
	}
	size_t h = link_hash(vol, ino, d->links_cap);
	while (d->links[h].ino && !(d->links[h].ino == ino && d->links[h].vol == vol))
		h = (h + 1) & (d->links_cap - 1);
	if (!d->links[h].ino) {
		d->links[h] = (struct dlink){vol, ino, 0};
		d->nlinks++;
	}
	d->links[h].names++;
	return 0;
}

static int link_cmp(const void *a, const void *b)
{
	const struct dlink *x = a, *y = b;
	if (x->vol != y->vol)
		return x->vol < y->vol ? -1 : 1;
	return x->ino < y->ino ? -1 : x->ino > y->ino;
}

/* ---- the walk ------------------------------------------------------------- */

static int walk_level(rfs_du *d, int l, uint64_t root, bool dir, uint64_t vol);

static bool should_pause(const rfs_du *d)
{
	return d->budget <= 0 && d->progressed;
}

static int du_enter(void *arg, const struct rfs_walk_node *n)
{
	rfs_du *d = arg;
	struct ctx top = ctx_top(d);
	bool dir = d->lv[d->cur]->dir;
	d->budget--;
	if (n->resumed) {
		/* Rebuild the context of a node entered by an earlier step. */
		if (n->refcount >= 2 && !top.shadow) {
			uint32_t w = vfind(d, n->blocknr);
			if (!w)
				w = vadd(d, n->blocknr, n->refcount); /* changed meanwhile */
			if (!w)
				return d->fatal;
			ctx_push(d, w - 1, d->v[w - 1].done);
		} else {
			ctx_push(d, top.v, top.shadow);
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
		ctx_push(d, top.v, true);
		return d->fatal;
	}
	if (n->refcount >= 2) {
		uint32_t w = vfind(d, n->blocknr);
		if (w) {
			/* Met before: one more pointer to it. */
			edge_add(d, top.v, w - 1);
			if (d->fatal)
				return d->fatal;
			if (!dir)
				return RFS_WALK_SKIP;
			ctx_push(d, w - 1, true);
			return d->fatal;
		}
		w = vadd(d, n->blocknr, n->refcount);
		if (!w)
			return d->fatal;
		edge_add(d, top.v, w - 1);
		ctx_push(d, w - 1, false);
		return d->fatal;
	}
	d->v[top.v].meta++;
	ctx_push(d, top.v, false);
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
	uint64_t vol = vol_below(lv->vol, i);
	if (!resumed) {
		lv->in_item = false;
		if (linked)
			return link_add(d, lv->vol, ino);
		if (isdir)
			d->st.dirs++;
		else
			d->st.files++;
		d->st.total += blocks * BS;
		if (l + 1 < d->nlv)
			d->lv[l + 1]->pos.mode = RFS_WALK_START;
	}
	if (linked || !subtree || (!isdir && top.shadow))
		return 0;
	ret = walk_level(d, l + 1, subtree, isdir, vol);
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
	struct ctx top = ctx_top(d);
	int ret = 0;
	d->budget--;
	if (d->lv[l]->dir && klen > 9 && k[0] == 'N') {
		ret = du_entry(d, l, k, klen, val, vlen, top);
	} else if ((flags & RFS_ITEM_EXTENT) && !top.shadow) {
		/* Any value's extent, as the tree counts it: after the nested
		 * root when there is one. */
		size_t off = (flags & RFS_ITEM_TREE) ? 8 : 0;
		uint64_t ext[2];
		if (vlen >= off + 16) {
			memcpy(ext, (const uint8_t *)val + off, 16);
			if (ext[0] && ext[1])
				ret = count_extent(d, top.v, ext[0], ext[1]);
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
static int walk_level(rfs_du *d, int l, uint64_t root, bool dir, uint64_t vol)
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
	lv->dir = dir;
	lv->vol = vol;
	d->cur = l;
	rfs_tree t = FS_TREE(root, dir ? RFS_OWNER_DIR : RFS_OWNER_FILE);
	int ret = rfs_tree_walk(d->pool, &t, &lv->pos, &du_ops, d);
	if (ret == 0)
		lv->pos.mode = RFS_WALK_START;
	return ret;
}

/* ---- steps ------------------------------------------------------------------ */

/* Is any node above the record at the end of p shared with another tree? */
static int path_shared(rfs_du *d, struct rfs_ipath *p, bool *shared)
{
	*shared = false;
	for (int i = 0; i < p->n && !*shared; i++) {
		int ret = rfs_tree_path_shared(d->pool, &p->lv[i].parent, p->lv[i].key,
					       p->lv[i].klen, shared);
		if (ret)
			return ret;
	}
	return 0;
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
		ret = path_shared(d, &p, &d->path_shared);
		if (ret)
			goto out;
		if (p.in_table) {
			/* A hard-linked file: walked with the link table's
			 * inodes, PATH being one of its names. */
			ret = link_add(d, vol, r->i.ino);
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
	ctx_push(d, V_PATH, false);
	ret = d->fatal;
	if (!ret && r->i.subtree) {
		bool dir = S_ISDIR(r->i.mode);
		ret = walk_level(d, 0, r->i.subtree, dir, vol_below(vol, &r->i));
	}
	if (ret == 0)
		d->phase = PH_LINKS;
out:
	ip_free(&p);
	return ret;
}

/* Was the file tree of the record of ino in link-table leaf `leaf` walked
 * already?  Marks it walked. */
static int group_seen(rfs_du *d, uint64_t leaf, uint64_t ino, bool *seen)
{
	if ((d->ngroups + 1) * 2 > d->groups_cap) {
		size_t cap = d->groups_cap ? d->groups_cap * 2 : 64;
		struct gkey *t = calloc(cap, sizeof(*t));
		if (!t)
			return -ENOMEM;
		for (size_t i = 0; i < d->groups_cap; i++) {
			if (!d->groups[i].leaf)
				continue;
			size_t h = link_hash(d->groups[i].leaf, d->groups[i].ino, cap);
			while (t[h].leaf)
				h = (h + 1) & (cap - 1);
			t[h] = d->groups[i];
		}
		free(d->groups);
		d->groups = t;
		d->groups_cap = cap;
	}
	size_t h = link_hash(leaf, ino, d->groups_cap);
	while (d->groups[h].leaf && !(d->groups[h].leaf == leaf && d->groups[h].ino == ino))
		h = (h + 1) & (d->groups_cap - 1);
	*seen = d->groups[h].leaf != 0;
	if (!*seen) {
		d->groups[h] = (struct gkey){leaf, ino};
		d->ngroups++;
	}
	return 0;
}

/* Names of (vol, ino) found below PATH (the list is sorted by now). */
static uint64_t names_of(const rfs_du *d, uint64_t vol, uint64_t ino)
{
	struct dlink k = {vol, ino, 0};
	const struct dlink *l = bsearch(&k, d->links, d->nlinks, sizeof(k), link_cmp);
	return l ? l->names : 0;
}

/* The leaf of the link table of volume vol holding key (0: none), and
 * whether a node above it, from the volume's tree down, is shared. */
static int table_leaf(rfs_du *d, uint64_t vol, const uint8_t *key, size_t kl, uint64_t *leaf,
		      bool *shared)
{
	rfs_tree vt;
	struct rfs_irec *t = &d->rec;
	bool s0 = false, s1 = false;
	uint64_t vleaf;
	*leaf = 0;
	*shared = false;
	int ret = rfs_catalog_get(d->pool, vol, &vt);
	if (!ret)
		ret = rfs_tree_leaf(d->pool, &vt, "T", 1, &vleaf, &s0);
	if (!ret)
		ret = rec_get(d->pool, &vt, "T", 1, t, false);
	if (ret)
		return ret == -ENOENT ? 0 : ret;
	rfs_tree tab = FS_TREE(t->i.subtree, RFS_OWNER_LINKS);
	uint8_t tmp[8];
	size_t tl = sizeof(tmp);
	ret = tab.root ? rfs_tree_lookup(d->pool, &tab, key, kl, tmp, &tl, NULL) : -ENOENT;
	if (ret)
		return ret == -ENOENT ? 0 : ret;
	ret = rfs_tree_leaf(d->pool, &tab, key, kl, leaf, &s1);
	*shared = s0 || s1;
	return ret;
}

/*
 * Whose is the pointer from the link-table record of (vol, ino) to the
 * inode's tree: PATH's (V_OWNED) when deleting PATH would drop it, that is
 * when every volume whose link table reaches that record has all the
 * inode's names below PATH; else V_OUTSIDE.  A record in a leaf no other
 * volume reaches (no shared node above it) has one holder; a shared one
 * (a snapshot of a volume's root shares the whole table) is looked up in
 * every volume.  *skip: the same record was walked for another volume.
 */
static int link_owner(rfs_du *d, const struct dlink *lk, uint32_t nlink, uint32_t *owner,
		      bool *skip)
{
	uint8_t key[16];
	size_t kl = table_key(key, lk->ino);
	uint64_t leaf;
	bool shared;
	*skip = false;
	int ret = table_leaf(d, lk->vol, key, kl, &leaf, &shared);
	if (ret)
		return ret;
	if (!shared) {
		*owner = lk->names >= nlink ? V_OWNED : V_OUTSIDE;
		return 0;
	}
	ret = group_seen(d, leaf, lk->ino, skip);
	if (ret || *skip)
		return ret;
	bool all = true;
	for (size_t i = 0; i < d->fs->nvols && all; i++) {
		struct rfs_vol *v = d->fs->vols[i];
		uint64_t l2;
		bool s2;
		if (v->gone)
			continue;
		ret = table_leaf(d, v->id, key, kl, &l2, &s2);
		if (ret)
			return ret;
		if (l2 == leaf && names_of(d, v->id, lk->ino) < nlink)
			all = false;
	}
	*owner = all ? V_OWNED : V_OUTSIDE;
	return 0;
}

/* The hard-linked inodes met: each (volume, inode) counted once, its tree
 * walked from the link table (once per record, when volumes share it). */
static int links_step(rfs_du *d)
{
	while (d->link_i < d->nlinks) {
		struct dlink *lk = &d->links[d->link_i];
		struct rfs_ipath p;
		int ret = ip_load_table(d->fs, lk->vol, lk->ino, false, &p);
		if (ret == -ESTALE) {
			d->link_i++; /* gone meanwhile */
			d->link_in_item = false;
			continue;
		}
		if (ret)
			return ret;
		struct rfs_inode i = ip_rec(&p)->i;
		ip_free(&p);
		bool skip = false;
		if (!d->link_in_item) {
			d->st.files++;
			d->st.total += i.blocks * BS;
			if (d->nlv)
				d->lv[0]->pos.mode = RFS_WALK_START;
			ret = link_owner(d, lk, i.nlink, &d->link_from, &skip);
			if (ret)
				return ret;
		}
		d->ncs = 0;
		ctx_push(d, d->link_from, false);
		ret = d->fatal;
		if (!ret && !skip && i.subtree && !S_ISDIR(i.mode))
			ret = walk_level(d, 0, i.subtree, false, lk->vol);
		if (ret < 0)
			return ret;
		if (ret == 1) {
			d->link_in_item = true;
			return 1;
		}
		d->link_in_item = false;
		d->link_i++;
		if (--d->budget <= 0)
			return 1;
	}
	d->phase = PH_DONE;
	return 0;
}

/* ---- the figures -------------------------------------------------------------- */

static int edge_cmp(const void *a, const void *b)
{
	const struct edge *x = a, *y = b;
	return x->from < y->from ? -1 : x->from > y->from;
}

struct ev {
	uint64_t at;
	int64_t all, excl, count; /* deltas */
};

static int ev_cmp(const void *a, const void *b)
{
	const struct ev *x = a, *y = b;
	return x->at < y->at ? -1 : x->at > y->at;
}

/* The fixpoint, then the sums. */
static int finish(rfs_du *d)
{
	d->v[V_OUTSIDE].excl = false;
	d->v[V_PATH].excl = !d->path_shared;
	d->v[V_OWNED].excl = true;
	if (d->ne)
		qsort(d->e, d->ne, sizeof(*d->e), edge_cmp);
	size_t *first = calloc(d->nv + 1, sizeof(*first));
	uint32_t *queue = malloc((d->nv ? d->nv : 1) * sizeof(*queue));
	if (!first || !queue) {
		free(first);
		free(queue);
		return -ENOMEM;
	}
	for (size_t i = 0; i < d->ne; i++)
		first[d->e[i].from + 1]++;
	for (size_t i = 0; i < d->nv; i++)
		first[i + 1] += first[i];
	size_t qh = 0, qt = 0;
	for (uint32_t i = 0; i < V_FIXED; i++)
		if (d->v[i].excl)
			queue[qt++] = i;
	while (qh < qt) {
		uint32_t u = queue[qh++];
		for (size_t k = first[u]; k < first[u + 1]; k++) {
			struct vertex *w = &d->v[d->e[k].to];
			if (w->excl || d->e[k].to < V_FIXED)
				continue;
			if (++w->got >= w->count) {
				w->excl = true;
				queue[qt++] = d->e[k].to;
			}
		}
	}
	free(first);
	free(queue);
	uint64_t set = 0, excl = 0, mset = 0, mexcl = 0;
	for (size_t i = 0; i < d->nv; i++) {
		set += d->v[i].data;
		mset += d->v[i].meta;
		if (d->v[i].excl) {
			excl += d->v[i].data;
			mexcl += d->v[i].meta;
		}
	}
	/* Blocks with count >= 2: exclusive where the runs from exclusive
	 * vertices covering a block are as many as its count. */
	struct ev *ev = malloc((d->nruns ? d->nruns : 1) * 2 * sizeof(*ev));
	if (!ev)
		return -ENOMEM;
	for (size_t i = 0; i < d->nruns; i++) {
		const struct srun *s = &d->runs[i];
		int64_t x = d->v[s->from].excl, c = (int64_t)s->count;
		ev[2 * i] = (struct ev){s->start, 1, x, c};
		ev[2 * i + 1] = (struct ev){s->start + s->n, -1, -x, -c};
	}
	size_t nev = d->nruns * 2;
	if (nev)
		qsort(ev, nev, sizeof(*ev), ev_cmp);
	int64_t all = 0, ex = 0, cnt = 0;
	for (size_t i = 0; i < nev; i++) {
		if (i && ev[i].at > ev[i - 1].at && all > 0) {
			uint64_t len = ev[i].at - ev[i - 1].at;
			set += len;
			/* Runs over one block agree on its count; ex >= count
			 * written without a division: ex * all >= sum of counts. */
			if (ex * all >= cnt)
				excl += len;
		}
		all += ev[i].all;
		ex += ev[i].excl;
		cnt += ev[i].count;
	}
	free(ev);
	d->st.set = set * BS;
	d->st.exclusive = excl * BS;
	d->st.shared = (set - excl) * BS;
	d->st.meta_set = mset * BS;
	d->st.meta_exclusive = mexcl * BS;
	return 0;
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
		if (!vadd(d, 0, 1)) {
			rfs_du_end(d);
			return -ENOMEM;
		}
	rfs_pool_rdlock(fs->pool);
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
			if (!d->links_sorted) {
				/* Compact the hash into a sorted list, once: no
				 * names are added from now on. */
				size_t k = 0;
				for (size_t i = 0; i < d->links_cap; i++)
					if (d->links[i].ino)
						d->links[k++] = d->links[i];
				if (k)
					qsort(d->links, k, sizeof(*d->links), link_cmp);
				d->links_sorted = true;
			}
			ret = links_step(d);
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
	ret = finish(d);
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
