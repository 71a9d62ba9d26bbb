/*
 * What changed between two directories (rfs_diff_*, `reflinkfs diff`).
 *
 * The walk compares the two directories' entry trees with rfs_tree_diff,
 * so an entry whose record is the same bytes on both sides (same inode,
 * same attributes, same subtree root) costs nothing, and a directory whose
 * subtree root is the same block on both sides is never opened: for a
 * snapshot and its source, or two snapshots, the cost is O(what changed).
 * For each entry the tree diff reports:
 *
 *   - in both, same inode number: compare the records (mode, owner, group,
 *     size, mtime, device number), and below them the subtrees: a
 *     directory's entry tree (recursion; its 'X' items are its xattrs), a
 *     file's tree (its 'E' extents -> data, compared block by block where
 *     the extent records differ; 'X' -> xattrs; 'L' -> symlink target);
 *   - in both with different inode numbers (a name reused, or two copies
 *     made by cp -a, whose inode numbers all differ): compared as above
 *     when neither inode is found elsewhere on the other side, else split
 *     into a removal and an addition (which the rename pairing below may
 *     then match);
 *   - on one side only: a removal (A) or an addition (B).
 *
 * Renames.  A removed entry whose inode number is still below B (and an
 * added one whose number was below A) was moved: the volume's back-pointer
 * index (backref.c) answers "is inode k below directory X" by walking k's
 * parents up, without walking the tree.  Such an entry waits for its
 * partner, which the walk is bound to meet (every directory on the way to
 * it is either compared as a pair or listed as added/removed); the pair is
 * reported as R and compared like a same-name pair (a renamed directory
 * whose subtree is unchanged costs O(1)).  Only removed and added entries
 * not found on the other side are listed with everything below them.
 * Hard-linked inodes (link table stubs) have no back-pointer: they are
 * never paired, only compared by name.
 *
 * Volumes.  Every inode number is a volume's; a snapshot's root entry
 * (RFS_INODE_VOLROOT) starts another volume below it, with its own link
 * table.  The walk keeps each side's current volume.  Inode numbers of A
 * and B name the same inode only when their volumes are related (the same
 * volume, or snapshots with a common source: a snapshot keeps its
 * source's numbers) and both entries were born at the same time (numbers
 * handed out after a snapshot on both sides may meet).  Where a side's
 * volume has no back-pointer index (snapshots have none yet), an entry
 * whose partner may be there waits for it anyway; what is still waiting
 * at the end is listed as removed or added, directories first.
 *
 * The whole diff is computed under the pool's read lock (one consistent
 * state; readers go on, writers wait for it), then sorted by path.
 */
#include "fs/fs_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#define CHAIN_MAX 4096 /* back-pointer steps before giving up (a loop) */

enum { SIDE_A = 0, SIDE_B = 1 };

/* A volume met by the walk: its link table and back-pointer index. */
struct dvol {
	uint64_t id;
	rfs_tree links;
	rfs_tree index;
	bool has_index;
};

/* One side: the directory compared. */
struct side {
	uint64_t vol;      /* its volume (its entries' too) */
	uint64_t root_ino; /* its inode number */
};

/* Answers of below(). */
enum { NO = 0, YES = 1, MAYBE = 2 };

/* A same-name pair of different inodes, decided later. */
struct twin {
	struct rfs_irec *rec[2]; /* as found (records or stubs) */
	uint64_t vol[2];
	char *path[2];
	rfs_tree holder[2];
};

/* An entry waiting for its rename partner. */
struct waiter {
	uint64_t ino;
	bool used[2];
	bool sure[2]; /* the other side's index says the partner is there */
	uint64_t vol[2];
	char *path[2];
	rfs_tree holder[2];
	struct rfs_irec *rec[2];
};

struct rfs_diff {
	rfs_fs *fs;
	rfs_pool *pool;
	struct side s[2];
	struct dvol *vols;
	size_t nvols;
	bool pair_by_ino;
	/* diff_begin_recs: A stands for a snapshot taken when the volume's
	 * next inode number was this (0: a real directory). */
	uint64_t a_next_ino;
	int err;

	struct rfs_diff_record *res;
	size_t nres, cap;

	struct waiter *w; /* open addressing by ino; ino 0 = free */
	size_t wcap, wn;

	/* Same-name pairs of different inodes that could not be told apart
	 * when met (a side without an index): decided after the walk. */
	struct twin *tw;
	size_t ntw, twcap;

	/* Root records (for the hard-link pass). */
	struct rfs_irec *root[2];
	rfs_tree root_holder[2]; /* the trees holding them */

	struct rfs_diff_stats st;
};

/* ---- results -------------------------------------------------------------- */

static char *path_join(const char *dir, const char *name, size_t len)
{
	size_t dl = strlen(dir);
	char *p = malloc(dl + len + 2);
	if (!p)
		return NULL;
	if (dl) {
		memcpy(p, dir, dl);
		p[dl++] = '/';
	}
	memcpy(p + dl, name, len);
	p[dl + len] = 0;
	return p;
}

static int emit(struct rfs_diff *d, char op, uint32_t what, uint64_t vol,
		const struct rfs_irec *r, const char *path, const char *old)
{
	if (d->nres == d->cap) {
		size_t nc = d->cap ? d->cap * 2 : 64;
		struct rfs_diff_record *n = realloc(d->res, nc * sizeof(*n));
		if (!n)
			return -ENOMEM;
		d->res = n;
		d->cap = nc;
	}
	struct rfs_diff_record *x = &d->res[d->nres];
	memset(x, 0, sizeof(*x));
	x->op = op;
	x->what = what;
	x->mode = r->i.mode;
	x->ino = (vol << 48) | r->i.ino;
	x->path = strdup(*path ? path : ".");
	x->old_path = old ? strdup(*old ? old : ".") : NULL;
	if (!x->path || (old && !x->old_path)) {
		free((char *)x->path);
		free((char *)x->old_path);
		return -ENOMEM;
	}
	d->nres++;
	switch (op) {
	case RFS_DIFF_ADDED:
		d->st.added++;
		break;
	case RFS_DIFF_REMOVED:
		d->st.removed++;
		break;
	case RFS_DIFF_RENAMED:
		d->st.renamed++;
		break;
	default:
		d->st.modified++;
	}
	return 0;
}

/* ---- records and sides ----------------------------------------------------- */

/* Volume id's link table and index, loaded on first use. */
static int dvol_get(struct rfs_diff *d, uint64_t id, struct dvol **out)
{
	for (size_t i = 0; i < d->nvols; i++)
		if (d->vols[i].id == id) {
			*out = &d->vols[i];
			return 0;
		}
	struct dvol *n = realloc(d->vols, (d->nvols + 1) * sizeof(*n));
	if (!n)
		return -ENOMEM;
	d->vols = n;
	struct dvol *v = &d->vols[d->nvols];
	rfs_tree vt;
	struct rfs_irec *t = malloc(sizeof(*t));
	uint64_t root;
	size_t rl = sizeof(root);
	int ret = t ? rfs_catalog_get(d->pool, id, &vt) : -ENOMEM;
	if (!ret)
		ret = rec_get(d->pool, &vt, "T", 1, t, false);
	if (ret == -ENOENT) {
		rfs_log(RFS_LOG_ERR, "%s: volume %llu: no link table", rfs_pool_path(d->pool),
			(unsigned long long)id);
		ret = -EUCLEAN;
	}
	if (!ret) {
		memset(v, 0, sizeof(*v));
		v->id = id;
		v->links = FS_TREE(t->i.subtree, RFS_OWNER_LINKS);
		/* The index (format 2): the top volume's; snapshots have none
		 * yet. */
		v->has_index = has_index(d->fs) &&
			       rfs_tree_lookup(d->pool, &vt, "P", 1, &root, &rl, NULL) == 0 &&
			       rl == sizeof(root);
		v->index = FS_TREE(v->has_index ? root : 0, RFS_OWNER_INDEX);
		d->nvols++;
		*out = v;
	}
	free(t);
	return ret;
}

/* The full record of an entry of volume vol (a hard-link stub is followed
 * into the volume's link table). */
static int resolve(struct rfs_diff *d, uint64_t vol, const struct rfs_irec *e,
		   struct rfs_irec *out)
{
	struct dvol *v;
	if (!(e->i.flags & RFS_INODE_LINKED)) {
		*out = *e;
		return 0;
	}
	int ret = dvol_get(d, vol, &v);
	if (ret)
		return ret;
	uint8_t key[16];
	size_t kl = table_key(key, e->i.ino);
	ret = rec_get(d->pool, &v->links, key, kl, out, false);
	if (ret == -ENOENT) {
		rfs_log(RFS_LOG_ERR, "%s: volume %llu: inode %llu: hard link with no link table record",
			rfs_pool_path(d->pool), (unsigned long long)vol,
			(unsigned long long)e->i.ino);
		ret = -EUCLEAN;
	}
	return ret;
}

/*
 * Whether inode ino (born at btime, seconds) is below (or is) side's
 * directory: YES when its back-pointers lead up to it, NO when they lead
 * elsewhere or nowhere, or when the inode came after that side's volume
 * was made (a snapshot shares only what existed when it was taken);
 * MAYBE when the side's volume has no index to ask.
 */
static int below(struct rfs_diff *d, int side, uint64_t ino, int64_t btime)
{
	struct side *s = &d->s[side];
	char name[RFS_NAME_MAX + 1];
	size_t len;
	struct dvol *v;

	if (side == SIDE_A && d->a_next_ino) /* a stand-in snapshot (tests) */
		return ino >= d->a_next_ino ? NO : MAYBE;
	if (dvol_get(d, s->vol, &v))
		return NO;
	if (!v->has_index) {
		/* Numbers are handed out in order, and a snapshot starts from
		 * its source's next one: a number the volume never reached,
		 * or an inode born after it was made, is not in it. */
		struct rfs_vol *rv = vol_get(d->fs, s->vol);
		if (rv && (ino >= rv->m.next_ino || (rv->m.created && btime > rv->m.created)))
			return NO;
		return MAYBE;
	}
	for (int i = 0; i < CHAIN_MAX; i++) {
		if (ino == s->root_ino)
			return YES;
		uint64_t parent;
		if (bref_read(d->fs, &v->index, ino, &parent, name, &len))
			return NO;
		ino = parent;
	}
	return NO;
}

/* ---- attributes and file trees --------------------------------------------- */

static uint32_t attr_diff(const struct rfs_inode *a, const struct rfs_inode *b)
{
	uint32_t w = 0;
	if (a->mode != b->mode)
		w |= RFS_DIFF_MODE;
	if (a->uid != b->uid)
		w |= RFS_DIFF_UID;
	if (a->gid != b->gid)
		w |= RFS_DIFF_GID;
	if (!S_ISDIR(a->mode) && a->size != b->size)
		w |= RFS_DIFF_SIZE;
	if (a->mtime != b->mtime || a->mtime_ns != b->mtime_ns)
		w |= RFS_DIFF_MTIME;
	if ((S_ISCHR(a->mode) || S_ISBLK(a->mode)) && a->rdev != b->rdev)
		w |= RFS_DIFF_RDEV;
	return w;
}

/* Logical block ranges where the extent maps differ. */
struct ranges {
	uint64_t (*v)[2];
	size_t n, cap;
};

struct file_cmp {
	struct rfs_diff *d;
	uint32_t what;
	struct ranges rg;
};

static int range_add(struct ranges *rg, uint64_t lo, uint64_t hi)
{
	if (rg->n && rg->v[rg->n - 1][1] >= lo) {
		/* the diff reports keys in order, so ranges come sorted by start */
		if (hi > rg->v[rg->n - 1][1])
			rg->v[rg->n - 1][1] = hi;
		return 0;
	}
	if (rg->n == rg->cap) {
		size_t nc = rg->cap ? rg->cap * 2 : 16;
		void *n = realloc(rg->v, nc * sizeof(*rg->v));
		if (!n)
			return -ENOMEM;
		rg->v = n;
		rg->cap = nc;
	}
	rg->v[rg->n][0] = lo;
	rg->v[rg->n][1] = hi;
	rg->n++;
	return 0;
}

static int file_cb(void *arg, const struct rfs_tree_diff_item *it)
{
	struct file_cmp *fc = arg;
	const uint8_t *k = it->key;

	if (k[0] == 'X') {
		fc->what |= RFS_DIFF_XATTR;
		return 0;
	}
	if (k[0] != 'E' || it->klen != 9) {
		fc->what |= RFS_DIFF_DATA; /* 'L': symlink target */
		return 0;
	}
	/* The blocks either side's record covers may read differently. */
	uint64_t lblk = get_be64(k + 1), n = 0;
	const struct rfs_extent *e;
	for (int s = 0; s < 2; s++) {
		const void *v = s ? it->bval : it->aval;
		size_t vl = s ? it->bvlen : it->avlen;
		struct rfs_extent h;
		if (!v)
			continue;
		if (vl < RFS_EXT_HDR)
			return -EUCLEAN;
		e = memcpy(&h, v, RFS_EXT_HDR);
		if (e->nblocks > n)
			n = e->nblocks;
	}
	return range_add(&fc->rg, lblk, lblk + n);
}

/* Where logical block b lies in file tree t: *kind 0 = hole or unwritten
 * (reads as zeros), 1 = written at *pblk (x: its extent, with the
 * checksums); *run = how many blocks from b (up to end) stay in that
 * state contiguously. */
static int block_map(struct rfs_diff *d, const struct emap *t, uint64_t b, uint64_t end,
		     struct rfs_ext *x, int *kind, uint64_t *pblk, uint64_t *run)
{
	int n = ext_collect(d->fs, t, b, end, x, 1);
	if (n < 0)
		return n;
	if (n == 0 || x->lblk > b) {
		*kind = 0;
		*run = (n == 0 ? end : x->lblk) - b;
		return 0;
	}
	uint64_t stop = x->lblk + x->n < end ? x->lblk + x->n : end;
	*run = stop - b;
	if (x->flags & RFS_EXT_UNWRITTEN) {
		*kind = 0;
		return 0;
	}
	*kind = 1;
	*pblk = x->start + (b - x->lblk);
	return 0;
}

/* Do blocks [lo, hi) of two files of `size` bytes read the same?  Returns
 * 1 when they differ, 0 when not, or a negative errno. */
static int range_differs(struct rfs_diff *d, const struct emap *ta, const struct emap *tb,
			 uint64_t lo, uint64_t hi, uint64_t size)
{
	uint64_t nblk = div_up(size, RFS_BLOCK_SIZE);
	size_t tail = (size_t)(size % RFS_BLOCK_SIZE);
	struct rfs_ext *x = malloc(2 * sizeof(*x));
	uint8_t *buf = malloc(2 * RFS_BLOCK_SIZE);
	int ret = 0;

	if (!x || !buf) {
		ret = -ENOMEM;
		goto out;
	}
	if (hi > nblk)
		hi = nblk; /* past the size: hidden (clone tails) or nothing */
	for (uint64_t b = lo; b < hi && !ret;) {
		int ka, kb;
		uint64_t pa = 0, pb = 0, ra, rb;
		ret = block_map(d, ta, b, hi, &x[0], &ka, &pa, &ra);
		if (!ret)
			ret = block_map(d, tb, b, hi, &x[1], &kb, &pb, &rb);
		if (ret)
			break;
		uint64_t run = ra < rb ? ra : rb;
		if (!ka && !kb) {
			b += run;
			continue;
		}
		/* Block by block: written blocks at the same place are the same;
		 * others are read (checksums are seeded with the block number,
		 * so they cannot tell equal contents apart); in the last block
		 * only the bytes below the size count. */
		for (uint64_t i = 0; i < run && !ret; i++, b++) {
			bool last = b == nblk - 1 && tail;
			if (ka && kb && pa == pb)
				continue;
			size_t cmp = last ? tail : RFS_BLOCK_SIZE;
			memset(buf, 0, 2 * RFS_BLOCK_SIZE);
			if (ka)
				ret = rfs_data_read(d->pool, pa + i, buf, 1, &x[0].csum[b - x[0].lblk]);
			if (!ret && kb)
				ret = rfs_data_read(d->pool, pb + i, buf + RFS_BLOCK_SIZE, 1,
						    &x[1].csum[b - x[1].lblk]);
			if (!ret && memcmp(buf, buf + RFS_BLOCK_SIZE, cmp))
				ret = 1;
		}
	}
out:
	free(x);
	free(buf);
	return ret;
}

/* Whether two files of the same size, one of them with inline data (so
 * at most RFS_INLDATA_MAX bytes), hold different bytes: 1, 0, or an
 * error. */
static int inldata_differs(struct rfs_diff *d, const struct rfs_irec *a,
			   const struct rfs_irec *b)
{
	uint8_t ba[RFS_INLDATA_MAX], bb[RFS_INLDATA_MAX];
	size_t ga = 0, gb = 0, n = (size_t)a->i.size;
	if (n > RFS_INLDATA_MAX)
		return 1;
	int ret = file_read_locked(d->fs, a, ba, n, 0, &ga);
	if (!ret)
		ret = file_read_locked(d->fs, b, bb, n, 0, &gb);
	if (ret)
		return ret;
	return ga != gb || memcmp(ba, bb, ga) != 0;
}

/* file_diff when a side keeps its extent map or its data inline (no file
 * tree, no xattrs): the maps are a few extents, so compare the whole
 * file; the other side's xattrs, if it has any, are a difference. */
static int inline_diff(struct rfs_diff *d, const struct rfs_irec *a, const struct rfs_irec *b,
		       uint32_t *what)
{
	struct emap ma, mb;
	int ret = 0;
	for (int s = 0; s < 2 && !ret; s++) {
		const struct rfs_irec *r = s ? b : a;
		uint64_t list = 0, total = 0;
		if (!r->i.subtree)
			continue;
		rfs_tree t = FS_TREE(r->i.subtree, RFS_OWNER_FILE);
		ret = xattr_usage_count(d->fs, &t, &list, &total);
		if (!ret && list)
			*what |= RFS_DIFF_XATTR;
	}
	if (ret || (*what & RFS_DIFF_DATA))
		return ret;
	if ((a->i.flags | b->i.flags) & RFS_INODE_INLDATA) {
		ret = inldata_differs(d, a, b);
		if (ret == 1) {
			*what |= RFS_DIFF_DATA;
			ret = 0;
		}
		return ret;
	}
	ret = emap_open(d->fs, a, &ma);
	if (ret)
		return ret;
	ret = emap_open(d->fs, b, &mb);
	if (!ret) {
		ret = range_differs(d, &ma, &mb, 0, div_up(a->i.size, RFS_BLOCK_SIZE), a->i.size);
		if (ret == 1) {
			*what |= RFS_DIFF_DATA;
			ret = 0;
		}
		emap_free(&mb);
	}
	emap_free(&ma);
	return ret;
}

/* What differs between two non-directories' contents (data, xattrs). */
static int file_diff(struct rfs_diff *d, const struct rfs_irec *a, const struct rfs_irec *b,
		     uint32_t *what)
{
	struct file_cmp fc = {.d = d};
	int ret = 0;

	d->st.files_compared++;
	/* Inline extent maps or inline data (regular files only). */
	bool ia = a->i.flags & (RFS_INODE_INLEXT | RFS_INODE_INLDATA);
	bool ib = b->i.flags & (RFS_INODE_INLEXT | RFS_INODE_INLDATA);
	bool same_tail = a->taillen == b->taillen && !memcmp(a->tail, b->tail, a->taillen);
	if (!same_tail && !ia && !ib)
		*what |= RFS_DIFF_DATA; /* inline symlink target */
	if (S_ISREG(a->i.mode) && a->i.size != b->i.size)
		*what |= RFS_DIFF_DATA;
	if (a->i.subtree == b->i.subtree && (same_tail || (!ia && !ib)))
		return 0;
	if (ia || ib)
		return inline_diff(d, a, b, what);
	rfs_tree ta = FS_TREE(a->i.subtree, RFS_OWNER_FILE);
	rfs_tree tb = FS_TREE(b->i.subtree, RFS_OWNER_FILE);
	ret = rfs_tree_diff(d->pool, &ta, &tb, file_cb, &fc);
	*what |= fc.what;
	if (!ret && !(*what & RFS_DIFF_DATA)) {
		struct emap ma = {.t = ta}, mb = {.t = tb};
		for (size_t i = 0; i < fc.rg.n && !ret; i++)
			ret = range_differs(d, &ma, &mb, fc.rg.v[i][0], fc.rg.v[i][1], a->i.size);
		if (ret == 1) {
			*what |= RFS_DIFF_DATA;
			ret = 0;
		}
	}
	free(fc.rg.v);
	return ret;
}

/* ---- the walk ---------------------------------------------------------------- */

/* Where an entry stands: its side's volume and its path, and the tree
 * holding its record (where an embedded directory's entries are). */
struct at {
	uint64_t vol;
	const char *path;
	rfs_tree holder;
};

static int compare(struct rfs_diff *d, const struct rfs_irec *a, const struct rfs_irec *b,
		   struct at pa, struct at pb, char op);
static int candidate(struct rfs_diff *d, int side, const struct rfs_irec *e, struct at at);
static int twin_defer(struct rfs_diff *d, const struct rfs_irec *a, struct at pa,
		      const struct rfs_irec *b, struct at pb);

struct dir_walk {
	struct rfs_diff *d;
	struct dirloc la; /* the keys of the entries compared */
	rfs_tree ha, hb;  /* the trees holding them */
	struct at pa, pb; /* the directories' entries: volume and path */
	uint32_t what;    /* the directory's own changes: RFS_DIFF_XATTR */
};

/* May a and b (two entries, one per side, at the sides' own volumes) be
 * the same inode under two names? */
static bool same_inode(struct rfs_diff *d, const struct rfs_irec *a, uint64_t va,
		       const struct rfs_irec *b, uint64_t vb)
{
	return d->pair_by_ino && va == d->s[SIDE_A].vol && vb == d->s[SIDE_B].vol &&
	       a->i.ino == b->i.ino && (a->i.mode & S_IFMT) == (b->i.mode & S_IFMT) &&
	       a->i.btime == b->i.btime && a->i.btime_ns == b->i.btime_ns;
}

static int dir_cb(void *arg, const struct rfs_tree_diff_item *it)
{
	struct dir_walk *w = arg;
	struct rfs_diff *d = w->d;
	const uint8_t *k = it->key;
	struct rfs_irec *ea = NULL, *eb = NULL, *fa = NULL, *fb = NULL;
	char *pa = NULL, *pb = NULL;
	int ret = 0;

	if (k[0] == 'X') {
		w->what |= RFS_DIFF_XATTR;
		return 0;
	}
	const char *name;
	size_t len;
	ret = dloc_entry(&w->la, k, it->klen, NULL, &name, &len);
	if (ret <= 0)
		return ret; /* nothing else lives in an entry tree */
	ret = 0;
	ea = it->aval ? malloc(sizeof(*ea) * 2) : NULL;
	eb = it->bval ? malloc(sizeof(*eb) * 2) : NULL;
	if ((it->aval && !ea) || (it->bval && !eb)) {
		ret = -ENOMEM;
		goto out;
	}
	if (ea) {
		fa = ea + 1;
		pa = path_join(w->pa.path, name, len);
		ret = pa ? rec_decode(it->aval, it->avlen, ea) : -ENOMEM;
	}
	if (!ret && eb) {
		fb = eb + 1;
		pb = path_join(w->pb.path, name, len);
		ret = pb ? rec_decode(it->bval, it->bvlen, eb) : -ENOMEM;
	}
	if (ret)
		goto out;
	struct at ata = {w->pa.vol, pa, w->ha}, atb = {w->pb.vol, pb, w->hb};
	if (ea && eb) {
		/* The same name: compared as one file, unless the types differ
		 * or either inode lives elsewhere on the other side (then they
		 * are a removal and an addition the pairing may match).  When a
		 * side cannot be asked, the pair waits for the end of the walk. */
		bool split = (ea->i.mode & S_IFMT) != (eb->i.mode & S_IFMT);
		int ia = NO, ib = NO;
		if (!split && ea->i.ino != eb->i.ino && d->pair_by_ino) {
			if (!(ea->i.flags & RFS_INODE_LINKED) && w->pa.vol == d->s[SIDE_A].vol)
				ia = below(d, SIDE_B, ea->i.ino, ea->i.btime);
			if (!(eb->i.flags & RFS_INODE_LINKED) && w->pb.vol == d->s[SIDE_B].vol)
				ib = below(d, SIDE_A, eb->i.ino, eb->i.btime);
			split = ia == YES || ib == YES;
		}
		if (!split && (ia == MAYBE || ib == MAYBE)) {
			ret = twin_defer(d, ea, ata, eb, atb);
			goto out;
		}
		if (!split) {
			ret = resolve(d, w->pa.vol, ea, fa);
			if (!ret)
				ret = resolve(d, w->pb.vol, eb, fb);
			if (!ret)
				ret = compare(d, fa, fb, ata, atb, RFS_DIFF_MODIFIED);
			goto out;
		}
	}
	if (ea)
		ret = candidate(d, SIDE_A, ea, ata);
	if (!ret && eb)
		ret = candidate(d, SIDE_B, eb, atb);
out:
	free(ea);
	free(eb);
	free(pa);
	free(pb);
	return ret;
}

/* The entries of one directory, listed (an embedded directory's, or the
 * other side's of one): 'N'-form keys and encoded records, sorted. */
struct ent_list {
	struct lent {
		size_t klen, vlen;
		uint8_t *kv; /* key, then value */
	} *v;
	size_t n, cap;
};

static int lent_add(void *arg, const char *name, size_t len, const struct rfs_irec *r)
{
	struct ent_list *l = arg;
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;
		struct lent *nv = realloc(l->v, cap * sizeof(*nv));
		if (!nv)
			return -ENOMEM;
		l->v = nv;
		l->cap = cap;
	}
	uint8_t *kv = malloc(9 + len + RFS_VAL_MAX);
	if (!kv)
		return -ENOMEM;
	struct lent *e = &l->v[l->n++];
	e->kv = kv;
	e->klen = dent_key(kv, name, len);
	e->vlen = rec_encode(r, kv + e->klen, true); /* in memory only */
	return 0;
}

static int lent_cmp(const void *x, const void *y)
{
	const struct lent *a = x, *b = y;
	size_t m = a->klen < b->klen ? a->klen : b->klen;
	int c = memcmp(a->kv, b->kv, m);
	return c ? c : (a->klen > b->klen) - (a->klen < b->klen);
}

static void ent_list_free(struct ent_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i].kv);
	free(l->v);
}

/* Whether the directory whose own tree is t has xattrs. */
static int has_xattrs(struct rfs_diff *d, rfs_tree t)
{
	rfs_cursor *c;
	if (!t.root)
		return 0;
	int ret = rfs_cursor_open(d->pool, &t, &c);
	if (ret)
		return ret;
	ret = rfs_cursor_seek(c, "X", 1, 1);
	if (!ret) {
		const uint8_t *k;
		size_t kl;
		rfs_cursor_get(c, (const void **)&k, &kl, NULL, NULL, NULL);
		ret = kl && k[0] == 'X';
	}
	rfs_cursor_close(c);
	return ret == -ENOENT ? 0 : ret;
}

/* Entries of directories a and b when either is embedded: both listed
 * (an embedded one has at most RFS_EMBED_MAX) and paired by key, as a
 * tree diff would. */
static int list_diff(struct rfs_diff *d, const struct rfs_irec *a, const struct rfs_irec *b,
		     struct at pa, struct at pb, uint32_t *what)
{
	struct dirloc la, lb;
	struct ent_list ea = {0}, eb = {0};
	dloc_of(&la, &a->i, &pa.holder);
	dloc_of(&lb, &b->i, &pb.holder);
	struct dir_walk w = {.d = d, .ha = la.t, .hb = lb.t, .pa = pa, .pb = pb};
	dloc_of(&w.la, &(struct rfs_inode){.mode = S_IFDIR}, NULL); /* 'N' keys */
	d->st.dirs_compared++;
	int ret = dir_each(d->fs, &la, lent_add, &ea);
	if (!ret)
		ret = dir_each(d->fs, &lb, lent_add, &eb);
	if (!ret && ea.n)
		qsort(ea.v, ea.n, sizeof(*ea.v), lent_cmp);
	if (!ret && eb.n)
		qsort(eb.v, eb.n, sizeof(*eb.v), lent_cmp);
	size_t i = 0, j = 0;
	while (!ret && (i < ea.n || j < eb.n)) {
		int c = i == ea.n ? 1 : j == eb.n ? -1 : lent_cmp(&ea.v[i], &eb.v[j]);
		struct lent *x = c <= 0 ? &ea.v[i] : NULL, *y = c >= 0 ? &eb.v[j] : NULL;
		i += x != NULL;
		j += y != NULL;
		if (x && y && x->vlen == y->vlen && !memcmp(x->kv + x->klen, y->kv + y->klen, x->vlen))
			continue;
		struct rfs_tree_diff_item it = {.key = x ? x->kv : y->kv, .klen = x ? x->klen : y->klen};
		if (x) {
			it.aval = x->kv + x->klen;
			it.avlen = x->vlen;
		}
		if (y) {
			it.bval = y->kv + y->klen;
			it.bvlen = y->vlen;
		}
		ret = dir_cb(&w, &it);
	}
	ent_list_free(&ea);
	ent_list_free(&eb);
	/* an embedded directory has no xattrs; the other side may have */
	for (int s = 0; !ret && s < 2; s++) {
		const struct rfs_irec *r = s ? b : a;
		int x = is_embed(&r->i) ? 0 : has_xattrs(d, FS_TREE(r->i.subtree, RFS_OWNER_DIR));
		if (x < 0)
			ret = x;
		else if (x)
			w.what |= RFS_DIFF_XATTR;
	}
	*what |= w.what;
	return ret;
}

/*
 * a and b (full records, same file type; pa and pb: the volumes and paths
 * of the entries) are the same file: report what differs, as op (M, or R
 * for a rename, reported even when nothing else differs), comparing
 * directories' entries recursively.
 */
static int compare(struct rfs_diff *d, const struct rfs_irec *a, const struct rfs_irec *b,
		   struct at pa, struct at pb, char op)
{
	uint32_t what = attr_diff(&a->i, &b->i);
	int ret = 0;
	/* A snapshot's root starts its volume: the record and what is below
	 * it are that volume's. */
	pa.vol = vol_below(pa.vol, &a->i);
	pb.vol = vol_below(pb.vol, &b->i);

	if (S_ISDIR(a->i.mode)) {
		if (is_embed(&a->i) && is_embed(&b->i) && a->i.rdev == b->i.rdev) {
			/* the same stamp: the same entries (emb_stamp) */
		} else if (is_embed(&a->i) || is_embed(&b->i)) {
			ret = list_diff(d, a, b, pa, pb, &what);
		} else if (a->i.subtree != b->i.subtree) {
			struct dir_walk w = {.d = d, .pa = pa, .pb = pb};
			struct dirloc lb;
			dloc_of(&w.la, &a->i, NULL);
			dloc_of(&lb, &b->i, NULL);
			w.ha = w.la.t;
			w.hb = lb.t;
			d->st.dirs_compared++;
			ret = rfs_tree_diff(d->pool, &w.la.t, &lb.t, dir_cb, &w);
			what |= w.what;
		}
	} else {
		ret = file_diff(d, a, b, &what);
	}
	if (ret)
		return ret;
	if (op == RFS_DIFF_RENAMED)
		return emit(d, op, what, pb.vol, b, pb.path, pa.path);
	return what ? emit(d, op, what, pb.vol, b, pb.path, NULL) : 0;
}

/* One directory of gone(): its side and place. */
struct gone_level {
	struct rfs_diff *d;
	int side;
	struct at at;
	rfs_tree holder; /* of the entries listed */
};

static int gone_entry(void *arg, const char *name, size_t len, const struct rfs_irec *r)
{
	struct gone_level *g = arg;
	char *p = path_join(g->at.path, name, len);
	if (!p)
		return -ENOMEM;
	int ret = candidate(g->d, g->side, r, (struct at){g->at.vol, p, g->holder});
	free(p);
	return ret;
}

/* Report a removed (side A) or added (side B) entry r (a full record) and
 * everything below it, each child going through candidate() (it may have
 * moved). */
static int gone(struct rfs_diff *d, int side, const struct rfs_irec *r, struct at at)
{
	at.vol = vol_below(at.vol, &r->i);
	int ret = emit(d, side == SIDE_A ? RFS_DIFF_REMOVED : RFS_DIFF_ADDED, 0, at.vol, r,
		       at.path, NULL);
	if (ret || !S_ISDIR(r->i.mode) || (!r->i.subtree && !is_embed(&r->i)))
		return ret;
	struct dirloc loc;
	dloc_of(&loc, &r->i, &at.holder);
	struct gone_level g = {d, side, at, loc.t};
	d->st.dirs_listed++;
	return dir_each(d->fs, &loc, gone_entry, &g);
}

/* ---- rename pairing ---------------------------------------------------------- */

static size_t wslot(struct rfs_diff *d, uint64_t ino)
{
	size_t m = d->wcap - 1, i = (size_t)(ino * 0x9e3779b97f4a7c15ull) & m;
	while (d->w[i].ino && d->w[i].ino != ino)
		i = (i + 1) & m;
	return i;
}

static int wgrow(struct rfs_diff *d)
{
	size_t oc = d->wcap, nc = oc ? oc * 2 : 64;
	struct waiter *old = d->w, *nw = calloc(nc, sizeof(*nw));
	if (!nw)
		return -ENOMEM;
	d->w = nw;
	d->wcap = nc;
	for (size_t i = 0; i < oc; i++)
		if (old[i].ino)
			d->w[wslot(d, old[i].ino)] = old[i];
	free(old);
	return 0;
}

static void waiter_clear(struct waiter *w)
{
	for (int s = 0; s < 2; s++) {
		free(w->path[s]);
		free(w->rec[s]);
	}
	memset(w, 0, sizeof(*w));
}

/* Empty slot i (its contents already moved out or freed), moving later
 * entries of its cluster back (linear probing). */
static void wremove(struct rfs_diff *d, size_t i)
{
	size_t m = d->wcap - 1;
	memset(&d->w[i], 0, sizeof(d->w[i]));
	d->wn--;
	for (size_t j = (i + 1) & m; d->w[j].ino; j = (j + 1) & m) {
		struct waiter x = d->w[j];
		memset(&d->w[j], 0, sizeof(d->w[j]));
		d->w[wslot(d, x.ino)] = x;
	}
}

/*
 * An entry present on one side only (e, a record or a stub, at at): when
 * its inode may be below the other side it was moved, so it waits for its
 * partner (and the pair is compared, as a rename); else it was removed or
 * added, with everything below it.
 */
static int candidate(struct rfs_diff *d, int side, const struct rfs_irec *e, struct at at)
{
	struct rfs_irec *full = malloc(sizeof(*full));
	int ret;

	if (!full)
		return -ENOMEM;
	ret = resolve(d, at.vol, e, full);
	if (ret)
		goto out;
	int where = NO;
	if (d->pair_by_ino && !(e->i.flags & RFS_INODE_LINKED) && at.vol == d->s[side].vol)
		where = below(d, !side, e->i.ino, full->i.btime);
	if (where == NO) {
		ret = gone(d, side, full, at);
		goto out;
	}
	if (d->wn * 2 >= d->wcap && (ret = wgrow(d)))
		goto out;
	size_t i = wslot(d, e->i.ino);
	struct waiter *w = &d->w[i];
	if (w->ino && w->used[!side] && !w->used[side]) {
		struct rfs_irec *other = w->rec[!side];
		char *opath = w->path[!side];
		uint64_t ovol = w->vol[!side];
		rfs_tree oh = w->holder[!side];
		bool pair = side == SIDE_A ? same_inode(d, full, at.vol, other, ovol)
					   : same_inode(d, other, ovol, full, at.vol);
		if (!pair) {
			/* the same number, another inode (born apart): both
			 * are plain removals and additions */
			w->rec[!side] = NULL;
			w->path[!side] = NULL;
			wremove(d, i);
			ret = gone(d, !side, other, (struct at){ovol, opath, oh});
			if (!ret)
				ret = gone(d, side, full, at);
			free(other);
			free(opath);
			goto out;
		}
		/* the partner is here: a rename */
		w->rec[!side] = NULL;
		w->path[!side] = NULL;
		wremove(d, i);
		struct at o = {ovol, opath, oh};
		if (side == SIDE_A)
			ret = compare(d, full, other, at, o, RFS_DIFF_RENAMED);
		else
			ret = compare(d, other, full, o, at, RFS_DIFF_RENAMED);
		free(other);
		free(opath);
		goto out;
	}
	if (w->ino && w->used[side]) {
		/* the same inode twice on one side (A holds B): no pairing */
		ret = gone(d, side, full, at);
		goto out;
	}
	char *p = strdup(at.path);
	if (!p) {
		ret = -ENOMEM;
		goto out;
	}
	if (!w->ino)
		d->wn++;
	w->ino = e->i.ino;
	w->used[side] = true;
	w->sure[side] = where == YES;
	w->vol[side] = at.vol;
	w->holder[side] = at.holder;
	w->path[side] = p;
	w->rec[side] = full;
	return 0;
out:
	free(full);
	return ret;
}

static int twin_defer(struct rfs_diff *d, const struct rfs_irec *a, struct at pa,
		      const struct rfs_irec *b, struct at pb)
{
	if (d->ntw == d->twcap) {
		size_t nc = d->twcap ? d->twcap * 2 : 16;
		struct twin *n = realloc(d->tw, nc * sizeof(*n));
		if (!n)
			return -ENOMEM;
		d->tw = n;
		d->twcap = nc;
	}
	struct twin *t = &d->tw[d->ntw];
	memset(t, 0, sizeof(*t));
	const struct rfs_irec *r[2] = {a, b};
	struct at at[2] = {pa, pb};
	for (int s = 0; s < 2; s++) {
		t->rec[s] = malloc(sizeof(*t->rec[s]));
		t->path[s] = strdup(at[s].path);
		t->vol[s] = at[s].vol;
		t->holder[s] = at[s].holder;
		if (!t->rec[s] || !t->path[s]) {
			for (int k = 0; k <= s; k++) {
				free(t->rec[k]);
				free(t->path[k]);
			}
			return -ENOMEM;
		}
		*t->rec[s] = *r[s];
	}
	d->ntw++;
	return 0;
}

static void twin_clear(struct twin *t)
{
	for (int s = 0; s < 2; s++) {
		free(t->rec[s]);
		free(t->path[s]);
	}
}

/* Is an entry of inode ino born at btime waiting on side? */
static bool waiting(struct rfs_diff *d, int side, uint64_t ino, const struct rfs_inode *i)
{
	if (!d->wcap)
		return false;
	struct waiter *w = &d->w[wslot(d, ino)];
	return w->ino == ino && w->used[side] && w->rec[side]->i.btime == i->btime &&
	       w->rec[side]->i.btime_ns == i->btime_ns;
}

/* Decide the deferred same-name pairs: a removal and an addition when
 * either inode waits on the other side, else one file compared. */
static int twins_decide(struct rfs_diff *d)
{
	while (d->ntw) {
		struct twin t = d->tw[--d->ntw];
		struct at pa = {t.vol[SIDE_A], t.path[SIDE_A], t.holder[SIDE_A]},
			  pb = {t.vol[SIDE_B], t.path[SIDE_B], t.holder[SIDE_B]};
		int ret;
		if (waiting(d, SIDE_B, t.rec[SIDE_A]->i.ino, &t.rec[SIDE_A]->i) ||
		    waiting(d, SIDE_A, t.rec[SIDE_B]->i.ino, &t.rec[SIDE_B]->i)) {
			ret = candidate(d, SIDE_A, t.rec[SIDE_A], pa);
			if (!ret)
				ret = candidate(d, SIDE_B, t.rec[SIDE_B], pb);
		} else {
			struct rfs_irec *f = malloc(2 * sizeof(*f));
			ret = f ? resolve(d, pa.vol, t.rec[SIDE_A], f) : -ENOMEM;
			if (!ret)
				ret = resolve(d, pb.vol, t.rec[SIDE_B], f + 1);
			if (!ret)
				ret = compare(d, f, f + 1, pa, pb, RFS_DIFF_MODIFIED);
			free(f);
		}
		twin_clear(&t);
		if (ret)
			return ret;
	}
	return 0;
}

static int path_depth(const char *p)
{
	int n = 0;
	for (; *p; p++)
		n += *p == '/';
	return n;
}

/*
 * What is still waiting at the end has no partner: plain removals and
 * additions.  Listing a waiting directory may bring the partner of
 * another entry, so the order matters: first the entries whose partner
 * was only possible (a side without an index), directories before files,
 * the shallowest first, removals before additions (an entry moved out of
 * a removed directory waits for that directory's listing); last those
 * the index vouched for (the index and the tree disagree).
 */
static int flush_one(struct rfs_diff *d)
{
	size_t best = d->wcap;
	int64_t bd = 0;
	for (size_t i = 0; i < d->wcap; i++) {
		struct waiter *w = &d->w[i];
		if (!w->ino)
			continue;
		int s = w->used[SIDE_A] ? SIDE_A : SIDE_B;
		int64_t key = ((int64_t)w->sure[s] << 40) +
			      ((int64_t)!S_ISDIR(w->rec[s]->i.mode) << 39) +
			      ((int64_t)path_depth(w->path[s]) << 1) + s;
		if (best == d->wcap || key < bd) {
			best = i;
			bd = key;
		}
	}
	struct waiter w = d->w[best];
	wremove(d, best);
	int ret = 0;
	for (int s = 0; s < 2 && !ret; s++)
		if (w.used[s])
			ret = gone(d, s, w.rec[s], (struct at){w.vol[s], w.path[s], w.holder[s]});
	waiter_clear(&w);
	return ret;
}

static int settle(struct rfs_diff *d)
{
	int ret = 0;
	while (!ret && (d->ntw || d->wn))
		ret = d->ntw ? twins_decide(d) : flush_one(d);
	return ret;
}

/* ---- hard-linked inodes across volumes ----------------------------------------- */

/*
 * In two volumes, the same stub {ino, LINKED} in both names two link
 * table records, one per volume, which may differ while every directory
 * on the way is shared: the walk never sees them.  So the link tables are
 * diffed too, and for each inode whose record changed, the stubs naming
 * it in B (found below the directories that hold hard links, through
 * links_below) that are also in A at the same path are reported.
 */
/* Paths of B the walk already reported as added or modified, sorted
 * (the strings, not the records: emitting moves the records). */
struct seen_path {
	const char *path;
	char op;
};

struct seen {
	struct seen_path *v;
	size_t n;
};

static int seen_cmp(const void *x, const void *y)
{
	return strcmp(((const struct seen_path *)x)->path, ((const struct seen_path *)y)->path);
}

static const struct seen_path *seen_find(const struct seen *sn, const char *path)
{
	size_t lo = 0, hi = sn->n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int c = strcmp(sn->v[mid].path, path);
		if (!c)
			return &sn->v[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* Whether the walk already covered path p of B: reported as added or
 * modified, or below a directory reported as added. */
static bool covered(const struct seen *sn, const char *p)
{
	if (seen_find(sn, p))
		return true;
	char *q = strdup(p);
	bool hit = false;
	for (char *c = q ? strrchr(q, '/') : NULL; c && !hit; c = strrchr(q, '/')) {
		*c = 0;
		const struct seen_path *r = seen_find(sn, q);
		hit = r && r->op == RFS_DIFF_ADDED;
	}
	free(q);
	return hit;
}

struct lchange {
	uint64_t ino;
	uint32_t what;
};

struct lpass {
	struct rfs_diff *d;
	struct lchange *v;
	size_t n, cap;
	struct seen seen;
};

static int links_cb(void *arg, const struct rfs_tree_diff_item *it)
{
	struct lpass *lp = arg;
	const uint8_t *k = it->key;
	if (!it->aval || !it->bval || it->klen != 9 || k[0] != 'I')
		return 0; /* an inode on one side only shows in the walk */
	struct rfs_irec *r = malloc(2 * sizeof(*r));
	int ret = r ? rec_decode(it->aval, it->avlen, r) : -ENOMEM;
	if (!ret)
		ret = rec_decode(it->bval, it->bvlen, r + 1);
	uint32_t what = ret ? 0 : attr_diff(&r[0].i, &r[1].i);
	if (!ret && (r[0].i.mode & S_IFMT) == (r[1].i.mode & S_IFMT) && !S_ISDIR(r[0].i.mode))
		ret = file_diff(lp->d, r, r + 1, &what);
	free(r);
	if (ret || !what)
		return ret;
	if (lp->n == lp->cap) {
		size_t nc = lp->cap ? lp->cap * 2 : 16;
		struct lchange *n = realloc(lp->v, nc * sizeof(*n));
		if (!n)
			return -ENOMEM;
		lp->v = n;
		lp->cap = nc;
	}
	lp->v[lp->n++] = (struct lchange){get_be64(k + 1), what};
	return 0;
}

/* One directory of links_walk: its entries, path and depth. */
struct lwalk_level {
	struct lpass *lp;
	const struct dirloc *at;
	const char *path;
	int depth;
};

static int links_walk(struct lpass *lp, const struct rfs_irec *dir, const struct dirloc *loc,
		      const char *path, int depth);

static int links_entry(void *arg, const char *name, size_t len, const struct rfs_irec *e)
{
	struct lwalk_level *w = arg;
	struct lpass *lp = w->lp;
	struct rfs_diff *d = lp->d;
	bool dir_below = S_ISDIR(e->i.mode) && e->i.links_below &&
			 !(e->i.flags & RFS_INODE_VOLROOT);
	if (!(e->i.flags & RFS_INODE_LINKED) && !dir_below)
		return 0;
	char *p = path_join(w->path, name, len);
	if (!p)
		return -ENOMEM;
	int ret = 0;
	if (dir_below) {
		struct dirloc sub;
		dloc_of(&sub, &e->i, &w->at->t);
		ret = links_walk(lp, e, &sub, p, w->depth + 1);
	} else {
		for (size_t i = 0; i < lp->n; i++) {
			if (lp->v[i].ino != e->i.ino)
				continue;
			/* reported at every name in B the walk did not cover
			 * (the directory may have been renamed since) */
			int r = 0;
			if (!covered(&lp->seen, p)) {
				struct rfs_irec *full = malloc(sizeof(*full));
				r = full ? resolve(d, d->s[SIDE_B].vol, e, full) : -ENOMEM;
				if (!r)
					r = emit(d, RFS_DIFF_MODIFIED, lp->v[i].what,
						 d->s[SIDE_B].vol, full, p, NULL);
				free(full);
			}
			if (r != -ENOENT)
				ret = r;
			break;
		}
	}
	free(p);
	return ret;
}

/* The hard-linked names below directory record dir (entries at loc). */
static int links_walk(struct lpass *lp, const struct rfs_irec *dir, const struct dirloc *loc,
		      const char *path, int depth)
{
	if (!loc->t.root || !dir->i.links_below)
		return 0;
	if (depth > CHAIN_MAX)
		return -ELOOP;
	struct lwalk_level w = {lp, loc, path, depth};
	return dir_each(lp->d->fs, loc, links_entry, &w);
}

static int links_pass(struct rfs_diff *d)
{
	struct dvol *va, *vb;
	struct lpass lp = {d, NULL, 0, 0, {NULL, 0}};
	if (d->s[SIDE_A].vol == d->s[SIDE_B].vol)
		return 0; /* one table: the same stub is the same inode */
	rfs_tree la, lb;
	/* (copied out: loading a volume may move the others) */
	int ret = dvol_get(d, d->s[SIDE_A].vol, &va);
	if (!ret) {
		la = va->links;
		ret = dvol_get(d, d->s[SIDE_B].vol, &vb);
	}
	if (!ret) {
		lb = vb->links;
		ret = rfs_tree_diff(d->pool, &la, &lb, links_cb, &lp);
	}
	if (!ret && lp.n) {
		lp.seen.v = malloc((d->nres + 1) * sizeof(*lp.seen.v));
		if (!lp.seen.v)
			ret = -ENOMEM;
		for (size_t i = 0; !ret && i < d->nres; i++)
			if (d->res[i].op == RFS_DIFF_ADDED || d->res[i].op == RFS_DIFF_MODIFIED)
				lp.seen.v[lp.seen.n++] = (struct seen_path){d->res[i].path, d->res[i].op};
		if (!ret) {
			qsort(lp.seen.v, lp.seen.n, sizeof(*lp.seen.v), seen_cmp);
			struct dirloc rl;
			dloc_of(&rl, &d->root[SIDE_B]->i, &d->root_holder[SIDE_B]);
			ret = links_walk(&lp, d->root[SIDE_B], &rl, "", 0);
		}
		free(lp.seen.v);
	}
	free(lp.v);
	return ret;
}

/* ---- entry points ------------------------------------------------------------- */

/* Source volumes of vol, nearest first: a snapshot's numbers are its
 * source's.  n of them fit in out; returns how many. */
static int lineage(struct rfs_diff *d, uint64_t vol, uint64_t *out, int n)
{
	int k = 0;
	while (vol && k < n) {
		out[k++] = vol;
		struct rfs_vol *v = vol_get(d->fs, vol);
		if (!v)
			break;
		vol = v->m.source_vol;
	}
	return k;
}

/* Whether inode numbers of volumes a and b can name the same inode. */
static bool related(struct rfs_diff *d, uint64_t a, uint64_t b)
{
	uint64_t la[64], lb[64];
	int na = lineage(d, a, la, 64), nb = lineage(d, b, lb, 64);
	for (int i = 0; i < na; i++)
		for (int j = 0; j < nb; j++)
			if (la[i] == lb[j])
				return true;
	return false;
}

/* Diff directories ra and rb (full records) of volumes va and vb.  Read
 * lock held. */
static int diff_run(struct rfs_diff *d, const struct rfs_irec *ra, uint64_t va, rfs_tree ha,
		    const struct rfs_irec *rb, uint64_t vb, rfs_tree hb)
{
	if (!S_ISDIR(ra->i.mode) || !S_ISDIR(rb->i.mode))
		return -ENOTDIR;
	d->s[SIDE_A] = (struct side){vol_below(va, &ra->i), ra->i.ino};
	d->s[SIDE_B] = (struct side){vol_below(vb, &rb->i), rb->i.ino};
	/*
	 * Inode numbers name the same inode only where a and b share them.
	 * Inside one volume that is when one directory holds the other (or
	 * both are the same): two disjoint directories of a volume have no
	 * inode in common, and pairing would only cost lookups.  Across
	 * volumes, when they are snapshots of a common source.
	 */
	if (d->s[SIDE_A].vol == d->s[SIDE_B].vol)
		d->pair_by_ino = below(d, SIDE_A, rb->i.ino, rb->i.btime) == YES ||
				 below(d, SIDE_B, ra->i.ino, ra->i.btime) == YES;
	else
		d->pair_by_ino = related(d, d->s[SIDE_A].vol, d->s[SIDE_B].vol);
	/* The roots are compared as one directory whatever their numbers. */
	d->root[SIDE_A] = (struct rfs_irec *)ra;
	d->root[SIDE_B] = (struct rfs_irec *)rb;
	d->root_holder[SIDE_A] = ha;
	d->root_holder[SIDE_B] = hb;
	int ret = compare(d, ra, rb, (struct at){va, "", ha}, (struct at){vb, "", hb},
			  RFS_DIFF_MODIFIED);
	if (!ret)
		ret = settle(d);
	if (!ret)
		ret = links_pass(d);
	return ret;
}

static int cmp_rec(const void *x, const void *y)
{
	const struct rfs_diff_record *a = x, *b = y;
	int c = strcmp(a->path, b->path);
	if (c)
		return c;
	return a->op - b->op;
}

/* Node n's record and the tree holding it (an embedded directory's
 * entries are there). */
static int read_held(rfs_fs *fs, struct rfs_node *n, struct rfs_irec *r, rfs_tree *holder)
{
	struct rfs_ipath p;
	int ret = ip_load(fs, n, false, &p);
	if (ret)
		return ret;
	*r = *ip_rec(&p);
	*holder = p.lv[p.n - 1].parent;
	ip_free(&p);
	return 0;
}

/* The records of a and b: from the nodes (na, nb), or given (ga, gb, in
 * the top volume; not embedded directories). */
static int diff_start(rfs_fs *fs, rfs_nodeid na, rfs_nodeid nb, const struct rfs_irec *ga,
		      const struct rfs_irec *gb, uint64_t a_next_ino, rfs_diff **out)
{
	struct rfs_diff *d = calloc(1, sizeof(*d));
	struct rfs_irec *ra = malloc(2 * sizeof(*ra)), *rb = ra + 1;
	struct rfs_pool_stats ps;
	uint64_t va = RFS_TOP_VOLUME, vb = RFS_TOP_VOLUME;
	rfs_tree ha = {0}, hb = {0}; /* the trees holding them */
	int ret = 0;

	*out = NULL;
	if (!d || !ra) {
		free(d);
		free(ra);
		return -ENOMEM;
	}
	d->fs = fs;
	d->pool = rfs_fs_pool(fs);
	d->a_next_ino = a_next_ino;
	/* A writer waiting for the lock goes first (as in scrub). */
	rfs_pool_wrlock(d->pool);
	rfs_pool_unlock(d->pool);
	rfs_pool_rdlock(d->pool);
	rfs_pool_stats(d->pool, &ps);
	d->st.node_reads = ps.block_reads;
	if (ga) {
		*ra = *ga;
		*rb = *gb;
	} else {
		struct rfs_node *a = node_get(fs, na), *b = node_get(fs, nb);
		ret = a && b ? 0 : -ESTALE;
		if (!ret)
			ret = read_held(fs, a, ra, &ha);
		if (!ret)
			ret = read_held(fs, b, rb, &hb);
		/* The volume the node's record is in: a snapshot root's
		 * record is its own volume's (vol_below keeps it). */
		if (!ret) {
			va = a->vol;
			vb = b->vol;
		}
	}
	if (!ret)
		ret = diff_run(d, ra, va, ha, rb, vb, hb);
	rfs_pool_stats(d->pool, &ps);
	d->st.node_reads = ps.block_reads - d->st.node_reads;
	rfs_pool_unlock(d->pool);
	free(ra);
	for (size_t i = 0; i < d->wcap; i++)
		waiter_clear(&d->w[i]);
	free(d->w);
	d->w = NULL;
	for (size_t i = 0; i < d->ntw; i++)
		twin_clear(&d->tw[i]);
	free(d->tw);
	d->tw = NULL;
	free(d->vols);
	d->vols = NULL;
	if (ret) {
		if (ret != -ENOTDIR && ret != -ESTALE && ret != -ENOMEM)
			rfs_log(RFS_LOG_ERR, "%s: diff failed: %s", rfs_pool_path(d->pool),
				strerror(-ret));
		rfs_diff_end(d);
		return ret;
	}
	if (d->nres)
		qsort(d->res, d->nres, sizeof(*d->res), cmp_rec);
	d->st.records = d->nres;
	*out = d;
	return 0;
}

int rfs_diff_begin(rfs_fs *fs, rfs_nodeid a, rfs_nodeid b, rfs_diff **out)
{
	dm_settle(fs, NULL); /* writes answered before it (file_delay.c) */
	return diff_start(fs, a, b, NULL, NULL, 0, out);
}

int diff_begin_recs(rfs_fs *fs, const struct rfs_irec *a, const struct rfs_irec *b,
		    uint64_t a_next_ino, rfs_diff **out)
{
	return diff_start(fs, 0, 0, a, b, a_next_ino, out);
}

void rfs_diff_get_stats(rfs_diff *d, struct rfs_diff_stats *st)
{
	*st = d->st;
}

int rfs_diff_record(rfs_diff *d, uint64_t i, struct rfs_diff_record *out)
{
	if (i >= d->nres)
		return -ENOENT;
	*out = d->res[i];
	return 0;
}

void rfs_diff_end(rfs_diff *d)
{
	if (!d)
		return;
	for (size_t i = 0; i < d->nres; i++) {
		free((char *)d->res[i].path);
		free((char *)d->res[i].old_path);
	}
	free(d->res);
	free(d);
}
