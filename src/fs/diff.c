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
 * never paired, only compared by name.  Inode numbers mean the same inode
 * only within one volume (and, later, in a snapshot and its source), so
 * pairing is on only when A and B are in the same volume.
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

/* One side: its volume's link table and index, and its root directory. */
struct side {
	rfs_tree links;     /* link table */
	rfs_tree index;     /* back-pointer index (root 0: none) */
	bool has_index;
	uint64_t root_ino;  /* inode number of the directory compared */
};

/* An entry waiting for its rename partner. */
struct waiter {
	uint64_t ino;
	bool used[2];
	char *path[2];
	struct rfs_irec *rec[2];
};

struct rfs_diff {
	rfs_fs *fs;
	rfs_pool *pool;
	struct side s[2];
	/* The volume A and B are in: the top one until snapshots make more
	 * (then each side's own, and pairing across a snapshot and its
	 * source). */
	uint64_t vol;
	bool pair_by_ino;
	int err;

	struct rfs_diff_record *res;
	size_t nres, cap;

	struct waiter *w; /* open addressing by ino; ino 0 = free */
	size_t wcap, wn;

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

static int emit(struct rfs_diff *d, char op, uint32_t what, const struct rfs_irec *r,
		const char *path, const char *old)
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
	x->ino = (d->vol << 48) | r->i.ino;
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

/* The full record of an entry (a hard-link stub is followed into the side's
 * link table). */
static int resolve(struct rfs_diff *d, int side, const struct rfs_irec *e, struct rfs_irec *out)
{
	if (!(e->i.flags & RFS_INODE_LINKED)) {
		*out = *e;
		return 0;
	}
	uint8_t key[16];
	size_t kl = table_key(key, e->i.ino);
	int ret = rec_get(d->pool, &d->s[side].links, key, kl, out, false);
	if (ret == -ENOENT) {
		rfs_log(RFS_LOG_ERR, "%s: inode %llu: hard link with no link table record",
			rfs_pool_path(d->pool), (unsigned long long)e->i.ino);
		ret = -EUCLEAN;
	}
	return ret;
}

/* Whether inode ino is below (or is) side's directory: its back-pointers
 * lead up to it.  False without an index, for hard-linked inodes (no
 * back-pointer) and for anything else outside. */
static bool below(struct rfs_diff *d, int side, uint64_t ino)
{
	struct side *s = &d->s[side];
	char name[RFS_NAME_MAX + 1];
	size_t len;

	if (!s->has_index)
		return false;
	for (int i = 0; i < CHAIN_MAX; i++) {
		if (ino == s->root_ino)
			return true;
		uint64_t parent;
		if (bref_read(d->fs, &s->index, ino, &parent, name, &len))
			return false;
		ino = parent;
	}
	return false;
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
static int block_map(struct rfs_diff *d, const rfs_tree *t, uint64_t b, uint64_t end,
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
static int range_differs(struct rfs_diff *d, const rfs_tree *ta, const rfs_tree *tb,
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

/* What differs between two non-directories' contents (data, xattrs). */
static int file_diff(struct rfs_diff *d, const struct rfs_irec *a, const struct rfs_irec *b,
		     uint32_t *what)
{
	struct file_cmp fc = {.d = d};
	int ret = 0;

	d->st.files_compared++;
	if (a->taillen != b->taillen || memcmp(a->tail, b->tail, a->taillen))
		*what |= RFS_DIFF_DATA; /* inline symlink target */
	if (S_ISREG(a->i.mode) && a->i.size != b->i.size)
		*what |= RFS_DIFF_DATA;
	if (a->i.subtree == b->i.subtree)
		return 0;
	rfs_tree ta = FS_TREE(a->i.subtree, RFS_OWNER_FILE);
	rfs_tree tb = FS_TREE(b->i.subtree, RFS_OWNER_FILE);
	ret = rfs_tree_diff(d->pool, &ta, &tb, file_cb, &fc);
	*what |= fc.what;
	if (!ret && !(*what & RFS_DIFF_DATA)) {
		for (size_t i = 0; i < fc.rg.n && !ret; i++)
			ret = range_differs(d, &ta, &tb, fc.rg.v[i][0], fc.rg.v[i][1], a->i.size);
		if (ret == 1) {
			*what |= RFS_DIFF_DATA;
			ret = 0;
		}
	}
	free(fc.rg.v);
	return ret;
}

/* ---- the walk ---------------------------------------------------------------- */

static int compare(struct rfs_diff *d, const struct rfs_irec *a, const struct rfs_irec *b,
		   const char *pa, const char *pb, char op);
static int candidate(struct rfs_diff *d, int side, const struct rfs_irec *e, const char *path);

struct dir_walk {
	struct rfs_diff *d;
	const char *pa, *pb;
	uint32_t what; /* the directory's own changes: RFS_DIFF_XATTR */
};

static int entry_decode(const void *val, size_t vlen, struct rfs_irec *r)
{
	return rec_decode(val, vlen, r);
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
	if (k[0] != 'N' || it->klen < 10)
		return 0; /* nothing else lives in an entry tree */
	const char *name = (const char *)k + 9;
	size_t len = it->klen - 9;
	ea = it->aval ? malloc(sizeof(*ea) * 2) : NULL;
	eb = it->bval ? malloc(sizeof(*eb) * 2) : NULL;
	if ((it->aval && !ea) || (it->bval && !eb)) {
		ret = -ENOMEM;
		goto out;
	}
	if (ea) {
		fa = ea + 1;
		pa = path_join(w->pa, name, len);
		ret = pa ? entry_decode(it->aval, it->avlen, ea) : -ENOMEM;
	}
	if (!ret && eb) {
		fb = eb + 1;
		pb = path_join(w->pb, name, len);
		ret = pb ? entry_decode(it->bval, it->bvlen, eb) : -ENOMEM;
	}
	if (ret)
		goto out;
	if (ea && eb) {
		bool same_ino = ea->i.ino == eb->i.ino;
		bool same_type = (ea->i.mode & S_IFMT) == (eb->i.mode & S_IFMT);
		/* Another inode under the same name is the same file changed,
		 * unless either inode lives elsewhere on the other side. */
		bool split = !same_type ||
			     (!same_ino && d->pair_by_ino &&
			      ((!(ea->i.flags & RFS_INODE_LINKED) && below(d, SIDE_B, ea->i.ino)) ||
			       (!(eb->i.flags & RFS_INODE_LINKED) && below(d, SIDE_A, eb->i.ino))));
		if (!split) {
			ret = resolve(d, SIDE_A, ea, fa);
			if (!ret)
				ret = resolve(d, SIDE_B, eb, fb);
			if (!ret)
				ret = compare(d, fa, fb, pa, pb, RFS_DIFF_MODIFIED);
			goto out;
		}
	}
	if (ea)
		ret = candidate(d, SIDE_A, ea, pa);
	if (!ret && eb)
		ret = candidate(d, SIDE_B, eb, pb);
out:
	free(ea);
	free(eb);
	free(pa);
	free(pb);
	return ret;
}

/*
 * a and b (full records, same file type) are the same file: report what
 * differs, as op (M, or R for a rename, reported even when nothing else
 * differs), comparing directories' entries recursively.
 */
static int compare(struct rfs_diff *d, const struct rfs_irec *a, const struct rfs_irec *b,
		   const char *pa, const char *pb, char op)
{
	uint32_t what = attr_diff(&a->i, &b->i);
	int ret = 0;

	if (S_ISDIR(a->i.mode)) {
		if (a->i.subtree != b->i.subtree) {
			struct dir_walk w = {d, pa, pb, 0};
			rfs_tree ta = FS_TREE(a->i.subtree, RFS_OWNER_DIR);
			rfs_tree tb = FS_TREE(b->i.subtree, RFS_OWNER_DIR);
			d->st.dirs_compared++;
			ret = rfs_tree_diff(d->pool, &ta, &tb, dir_cb, &w);
			what |= w.what;
		}
	} else {
		ret = file_diff(d, a, b, &what);
	}
	if (ret)
		return ret;
	if (op == RFS_DIFF_RENAMED)
		return emit(d, op, what, b, pb, pa);
	return what ? emit(d, op, what, b, pb, NULL) : 0;
}

/* Report a removed (side A) or added (side B) entry and everything below
 * it, each child going through candidate() (it may have moved). */
static int gone(struct rfs_diff *d, int side, const struct rfs_irec *r, const char *path)
{
	int ret = emit(d, side == SIDE_A ? RFS_DIFF_REMOVED : RFS_DIFF_ADDED, 0, r, path, NULL);
	if (ret || !S_ISDIR(r->i.mode) || !r->i.subtree)
		return ret;

	rfs_tree t = FS_TREE(r->i.subtree, RFS_OWNER_DIR);
	rfs_cursor *c;
	struct rfs_irec *e = malloc(sizeof(*e));
	if (!e)
		return -ENOMEM;
	ret = rfs_cursor_open(d->pool, &t, &c);
	if (ret) {
		free(e);
		return ret;
	}
	d->st.dirs_listed++;
	ret = rfs_cursor_seek(c, "N", 1, 1);
	while (!ret) {
		const uint8_t *k;
		const void *v;
		size_t kl, vl;
		ret = rfs_cursor_get(c, (const void **)&k, &kl, &v, &vl, NULL);
		if (ret || k[0] != 'N')
			break;
		if (kl < 10) {
			ret = -EUCLEAN;
			break;
		}
		char *p = path_join(path, (const char *)k + 9, kl - 9);
		ret = p ? entry_decode(v, vl, e) : -ENOMEM;
		if (!ret)
			ret = candidate(d, side, e, p);
		free(p);
		if (!ret)
			ret = rfs_cursor_step(c, 1);
	}
	rfs_cursor_close(c);
	free(e);
	return ret == -ENOENT ? 0 : ret;
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

/* Remove slot i, moving later entries of its cluster back (linear probing). */
static void wremove(struct rfs_diff *d, size_t i)
{
	size_t m = d->wcap - 1;
	waiter_clear(&d->w[i]);
	d->wn--;
	for (size_t j = (i + 1) & m; d->w[j].ino; j = (j + 1) & m) {
		struct waiter x = d->w[j];
		memset(&d->w[j], 0, sizeof(d->w[j]));
		d->w[wslot(d, x.ino)] = x;
	}
}

/*
 * An entry present on one side only (e, a record or a stub, at path):
 * when its inode is below the other side it was moved, so it waits for
 * its partner (and the pair is compared, as a rename); else it was
 * removed or added, with everything below it.
 */
static int candidate(struct rfs_diff *d, int side, const struct rfs_irec *e, const char *path)
{
	struct rfs_irec *full = malloc(sizeof(*full));
	int ret;

	if (!full)
		return -ENOMEM;
	ret = resolve(d, side, e, full);
	if (ret)
		goto out;
	if (!d->pair_by_ino || (e->i.flags & RFS_INODE_LINKED) || !below(d, !side, e->i.ino)) {
		ret = gone(d, side, full, path);
		goto out;
	}
	if (d->wn * 2 >= d->wcap && (ret = wgrow(d)))
		goto out;
	size_t i = wslot(d, e->i.ino);
	struct waiter *w = &d->w[i];
	if (w->ino && w->used[!side] && !w->used[side] &&
	    (w->rec[!side]->i.mode & S_IFMT) == (full->i.mode & S_IFMT)) {
		/* the partner is here: a rename */
		struct rfs_irec *other = w->rec[!side];
		char *opath = w->path[!side];
		w->rec[!side] = NULL;
		w->path[!side] = NULL;
		wremove(d, i);
		if (side == SIDE_A)
			ret = compare(d, full, other, path, opath, RFS_DIFF_RENAMED);
		else
			ret = compare(d, other, full, opath, path, RFS_DIFF_RENAMED);
		free(other);
		free(opath);
		goto out;
	}
	if (w->ino && w->used[side]) {
		/* the same inode twice on one side (A holds B): no pairing */
		ret = gone(d, side, full, path);
		goto out;
	}
	char *p = strdup(path);
	if (!p) {
		ret = -ENOMEM;
		goto out;
	}
	if (!w->ino)
		d->wn++;
	w->ino = e->i.ino;
	w->used[side] = true;
	w->path[side] = p;
	w->rec[side] = full;
	return 0;
out:
	free(full);
	return ret;
}

/* Entries still waiting for a partner that never came (the index and the
 * tree disagree, or a type changed): plain removals and additions. */
static int flush_waiters(struct rfs_diff *d)
{
	while (d->wn) {
		size_t i = 0;
		while (!d->w[i].ino)
			i++;
		struct waiter w = d->w[i];
		memset(&d->w[i], 0, sizeof(d->w[i])); /* now owned by w */
		wremove(d, i);
		int ret = 0;
		for (int s = 0; s < 2 && !ret; s++)
			if (w.used[s])
				ret = gone(d, s, w.rec[s], w.path[s]);
		waiter_clear(&w);
		if (ret)
			return ret;
	}
	return 0;
}

/* ---- entry points ------------------------------------------------------------- */

/* The side's link table and index.  Today every directory is in the
 * fs's one volume. */
static int side_init(struct rfs_diff *d, int side, const struct rfs_irec *root)
{
	rfs_tree vol;
	struct rfs_irec t;
	struct side *s = &d->s[side];
	int ret = rfs_catalog_get(d->pool, d->vol, &vol);
	if (ret)
		return ret;
	ret = rec_get(d->pool, &vol, "T", 1, &t, false);
	if (ret)
		return ret == -ENOENT ? -EUCLEAN : ret;
	s->links = FS_TREE(t.i.subtree, RFS_OWNER_LINKS);
	s->has_index = has_index(d->fs) && bref_index(d->fs, &s->index) == 0;
	s->root_ino = root->i.ino;
	return 0;
}

/* Diff directories ra and rb (full records).  Read lock held. */
static int diff_run(struct rfs_diff *d, const struct rfs_irec *ra, const struct rfs_irec *rb)
{
	int ret = 0;

	if (!S_ISDIR(ra->i.mode) || !S_ISDIR(rb->i.mode))
		return -ENOTDIR;
	ret = side_init(d, SIDE_A, ra);
	if (!ret)
		ret = side_init(d, SIDE_B, rb);
	if (ret)
		return ret;
	/*
	 * Inode numbers name the same inode only where a and b share them:
	 * inside one volume that is when one directory holds the other (or
	 * both are the same inode); two disjoint directories of a volume have
	 * no inode in common, so the index would never find a partner there.
	 * (A snapshot and its source share them too, across volumes.)
	 */
	d->pair_by_ino = d->s[SIDE_A].has_index && d->s[SIDE_B].has_index &&
			 (below(d, SIDE_A, rb->i.ino) || below(d, SIDE_B, ra->i.ino));
	ret = compare(d, ra, rb, "", "", RFS_DIFF_MODIFIED);
	if (!ret)
		ret = flush_waiters(d);
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

/* The records of a and b: from the nodes (na, nb), or given. */
static int diff_start(rfs_fs *fs, rfs_nodeid na, rfs_nodeid nb, const struct rfs_irec *ga,
		      const struct rfs_irec *gb, rfs_diff **out)
{
	struct rfs_diff *d = calloc(1, sizeof(*d));
	struct rfs_irec *ra = malloc(2 * sizeof(*ra)), *rb = ra + 1;
	struct rfs_pool_stats ps;
	int ret = 0;

	*out = NULL;
	if (!d || !ra) {
		free(d);
		free(ra);
		return -ENOMEM;
	}
	d->fs = fs;
	d->pool = rfs_fs_pool(fs);
	d->vol = RFS_TOP_VOLUME;
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
			ret = inode_read(fs, a, ra);
		if (!ret)
			ret = inode_read(fs, b, rb);
	}
	if (!ret)
		ret = diff_run(d, ra, rb);
	rfs_pool_stats(d->pool, &ps);
	d->st.node_reads = ps.block_reads - d->st.node_reads;
	rfs_pool_unlock(d->pool);
	free(ra);
	for (size_t i = 0; i < d->wcap; i++)
		waiter_clear(&d->w[i]);
	free(d->w);
	d->w = NULL;
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
	return diff_start(fs, a, b, NULL, NULL, out);
}

int diff_begin_recs(rfs_fs *fs, const struct rfs_irec *a, const struct rfs_irec *b,
		    rfs_diff **out)
{
	return diff_start(fs, 0, 0, a, b, out);
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
