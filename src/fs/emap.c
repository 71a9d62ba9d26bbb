/*
 * Extent maps of regular files: 'E' + be64(file block) -> extent {start,
 * nblocks, flags, crc32c per block} items in the file tree, or -- for a
 * small file without xattrs (volume format 3) -- the same extents kept
 * inline in the inode record (RFS_INODE_INLEXT), so that a small file
 * costs one record instead of a 4 KiB tree node of its own and a clone of
 * it copies that record.
 *
 * Inline form, the record's tail (docs/FORMAT.md):
 *     crc32c of every block of the written extents, in extent order
 *     n x {u64 file block, u32 flags, u32 pad}
 *     n x {u64 start, u64 nblocks}     } the value's RFS_ITEM_EXTLIST list:
 *     u16 n                             } the tree counts these references
 * An operation decodes the map (emap_open), changes it in memory with the
 * same reference rules as the tree form, and stores it back (emap_store):
 * a map that no longer fits RFS_INLEXT_MAX bytes or RFS_INLEXT_CAP
 * extents moves into a file tree (its references move with the items);
 * a file tree that shrank back to fit (truncate, hole punch) moves
 * inline again when the caller asks.
 */
#include "fs/op.h"

#include <stdlib.h>

#define BS RFS_BLOCK_SIZE

/* put_be64 / get_be64 inline: a random write builds and decodes a few
 * keys, and the out-of-line byte loops cost 50 instructions each. */
static inline void key_be64(uint8_t *p, uint64_t v)
{
	v = __builtin_bswap64(v);
	memcpy(p, &v, 8);
}

static inline uint64_t key_get_be64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return __builtin_bswap64(v);
}

size_t ext_key(uint8_t *key, uint64_t lblk)
{
	key[0] = 'E';
	key_be64(key + 1, lblk);
	return 9;
}

/* ext_decode without the checksums (checked, not copied). */
static int ext_decode_hdr(const uint8_t *key, size_t kl, const void *val, size_t vl,
			  struct rfs_ext *e)
{
	struct rfs_extent h;
	if (kl != 9 || key[0] != 'E' || vl < RFS_EXT_HDR)
		return -EUCLEAN;
	memcpy(&h, val, RFS_EXT_HDR);
	e->lblk = key_get_be64(key + 1);
	e->start = h.start;
	e->n = h.nblocks;
	e->flags = h.flags;
	if (e->n == 0 || !e->start)
		return -EUCLEAN;
	if (!(e->flags & RFS_EXT_UNWRITTEN)) {
		if (e->n > RFS_EXTENT_MAX || vl != RFS_EXT_HDR + 4 * e->n)
			return -EUCLEAN;
	} else if (e->n > RFS_UNWRITTEN_MAX) {
		return -EUCLEAN;
	}
	return 0;
}

int ext_decode(const uint8_t *key, size_t kl, const void *val, size_t vl,
	       struct rfs_ext *e)
{
	int ret = ext_decode_hdr(key, kl, val, vl, e);
	if (!ret && !(e->flags & RFS_EXT_UNWRITTEN))
		memcpy(e->csum, (const uint8_t *)val + RFS_EXT_HDR, 4 * e->n);
	return ret;
}

/* Encode the sub-range [from, from + n) (relative to e) of e. */
static size_t ext_encode(const struct rfs_ext *e, uint64_t from, uint64_t n,
			 uint8_t *val)
{
	struct rfs_extent h = {.start = e->start + from, .nblocks = n, .flags = e->flags};
	memcpy(val, &h, RFS_EXT_HDR);
	if (e->flags & RFS_EXT_UNWRITTEN)
		return RFS_EXT_HDR;
	memcpy(val + RFS_EXT_HDR, e->csum + from, 4 * n);
	return RFS_EXT_HDR + 4 * n;
}

static int ext_put(rfs_fs *fs, rfs_tree *t, uint64_t lblk, const struct rfs_ext *e,
		   uint64_t from, uint64_t n, int mode)
{
	uint8_t key[9], val[RFS_VAL_MAX];
	size_t vl = ext_encode(e, from, n, val);
	ext_key(key, lblk);
	return rfs_tree_put(fs->pool, t, key, 9, val, vl, RFS_ITEM_EXTENT, mode);
}

static uint64_t ext_cap(uint32_t flags)
{
	return (flags & RFS_EXT_UNWRITTEN) ? RFS_UNWRITTEN_MAX : RFS_EXTENT_MAX;
}

/* ---- inline form ---------------------------------------------------------- */

static size_t csum_bytes(const struct rfs_ext *e)
{
	return (e->flags & RFS_EXT_UNWRITTEN) ? 0 : 4 * (size_t)e->n;
}

/* Tail bytes of an inline map of x[0..n). */
static size_t inl_size(const struct rfs_ext *x, int n)
{
	size_t sz = 32 * (size_t)n + 2;
	for (int i = 0; i < n; i++)
		sz += csum_bytes(&x[i]);
	return sz;
}

int inl_range(const struct rfs_inode *ino, const void *tail, size_t tl, uint64_t b,
	      uint64_t e, struct rfs_ext *x, int max)
{
	const uint8_t *t = tail;
	uint16_t n;
	if (!(ino->flags & RFS_INODE_INLEXT))
		return 0;
	if (tl < 2)
		return -EUCLEAN;
	memcpy(&n, t + tl - 2, 2);
	if (n > max || tl < 32 * (size_t)n + 2)
		return -EUCLEAN;
	const uint8_t *info = t + tl - 2 - 32 * (size_t)n, *list = info + 16 * (size_t)n;
	size_t cs = 0, csall = tl - 2 - 32 * (size_t)n;
	uint64_t next = 0;
	int k = 0;
	for (int i = 0; i < n; i++) {
		struct rfs_ext h;
		memcpy(&h.lblk, info + 16 * i, 8);
		memcpy(&h.flags, info + 16 * i + 8, 4);
		memcpy(&h.start, list + 16 * i, 8);
		memcpy(&h.n, list + 16 * i + 8, 8);
		if (!h.start || !h.n || h.n > ext_cap(h.flags) || h.lblk < next ||
		    (h.flags & ~(uint32_t)RFS_EXT_UNWRITTEN) ||
		    h.lblk + h.n > RFS_FILE_MAX / BS)
			return -EUCLEAN;
		next = h.lblk + h.n;
		size_t c = csum_bytes(&h);
		if (cs + c > csall)
			return -EUCLEAN;
		/* Only the extents meeting [b, e) are copied (a READ's
		 * range): the checksums are most of the bytes. */
		if (h.lblk < e && h.lblk + h.n > b) {
			struct rfs_ext *o = &x[k++];
			o->lblk = h.lblk;
			o->flags = h.flags;
			o->start = h.start;
			o->n = h.n;
			memcpy(o->csum, t + cs, c);
		}
		cs += c;
	}
	if (cs != csall)
		return -EUCLEAN;
	return k;
}

int inl_decode(const struct rfs_irec *r, struct rfs_ext *x, int max)
{
	int n = inl_range(&r->i, r->tail, r->taillen, 0, UINT64_MAX, x, max);
	if (n < 0)
		rfs_log(RFS_LOG_ERR, "inode %llu: corrupt inline extent map (%zu bytes)",
			(unsigned long long)r->i.ino, r->taillen);
	return n;
}

/* Write x[0..n) into r's tail (n = 0: no inline map). */
static void inl_encode(struct rfs_irec *r, const struct rfs_ext *x, int n)
{
	uint8_t *t = (uint8_t *)r->tail;
	size_t cs = 0;
	if (n == 0) {
		r->taillen = 0;
		r->i.flags &= ~(uint32_t)RFS_INODE_INLEXT;
		return;
	}
	for (int i = 0; i < n; i++) {
		size_t c = csum_bytes(&x[i]);
		memcpy(t + cs, x[i].csum, c);
		cs += c;
	}
	uint8_t *info = t + cs, *list = info + 16 * (size_t)n;
	for (int i = 0; i < n; i++) {
		uint32_t pad = 0;
		memcpy(info + 16 * i, &x[i].lblk, 8);
		memcpy(info + 16 * i + 8, &x[i].flags, 4);
		memcpy(info + 16 * i + 12, &pad, 4);
		memcpy(list + 16 * i, &x[i].start, 8);
		memcpy(list + 16 * i + 8, &x[i].n, 8);
	}
	uint16_t nn = (uint16_t)n;
	memcpy(list + 16 * (size_t)n, &nn, 2);
	r->taillen = cs + 32 * (size_t)n + 2;
	r->i.flags |= RFS_INODE_INLEXT;
}

int inl_refs(rfs_fs *fs, const struct rfs_irec *r, int delta)
{
	if (!(r->i.flags & RFS_INODE_INLEXT))
		return 0;
	/* Only the {start, nblocks} list is needed: the tree's view. */
	const uint8_t *list;
	int n = rfs_value_extlist(r->tail, r->taillen, 0, &list);
	if (n < 0)
		return -EUCLEAN;
	for (int i = 0; i < n; i++) {
		uint64_t start, len;
		memcpy(&start, list + 16 * i, 8);
		memcpy(&len, list + 16 * i + 8, 8);
		if (!start || !len)
			continue;
		int ret = delta > 0 ? rfs_ref_inc(fs->pool, start, len)
				    : rfs_ref_dec(fs->pool, start, len);
		if (ret)
			return ret;
	}
	return 0;
}

int rec_ref(rfs_fs *fs, const struct rfs_irec *r)
{
	if (r->i.subtree) {
		rfs_tree src = FS_TREE(r->i.subtree, rec_owner(&r->i)), dst;
		int ret = rfs_tree_clone(fs->pool, &src, &dst);
		if (ret)
			return ret;
	}
	return inl_refs(fs, r, +1);
}

int rec_unref(rfs_fs *fs, const struct rfs_irec *r)
{
	int ret = 0;
	if (r->i.subtree) {
		rfs_tree t = FS_TREE(r->i.subtree, rec_owner(&r->i));
		ret = rfs_tree_drop(fs->pool, &t);
	}
	int r2 = inl_refs(fs, r, -1);
	return ret ? ret : r2;
}

int emap_open(rfs_fs *fs, const struct rfs_irec *r, struct emap *m)
{
	(void)fs;
	m->t = FS_TREE(r->i.subtree, RFS_OWNER_FILE);
	m->n = 0;
	m->x = NULL;
	/* A file without a tree is inline (an empty map when it has no
	 * RFS_INODE_INLEXT). */
	m->inl = !r->i.subtree;
	if (r->i.flags & RFS_INODE_INLDATA) {
		/* Its callers move inline data into a block first
		 * (inldata_spill); an empty map here would drop the bytes. */
		rfs_log(RFS_LOG_ERR, "inode %llu: inline data where an extent map was expected",
			(unsigned long long)r->i.ino);
		return -EUCLEAN;
	}
	if (!m->inl)
		return 0;
	if (!(r->i.flags & RFS_INODE_INLEXT) && !inline_ok(fs)) {
		m->inl = false; /* format 2: tree only */
		return 0;
	}
	m->x = malloc(sizeof(*m->x) * (RFS_INLEXT_CAP + 1));
	if (!m->x)
		return -ENOMEM;
	int n = inl_decode(r, m->x, RFS_INLEXT_CAP);
	if (n < 0) {
		emap_free(m);
		return n;
	}
	m->n = n;
	return 0;
}

void emap_free(struct emap *m)
{
	free(m->x);
	m->x = NULL;
	m->n = 0;
}

int emap_spill(rfs_fs *fs, struct emap *m)
{
	if (!m->inl || !m->x) {
		m->inl = false;
		return 0;
	}
	rfs_tree t = FS_TREE(0, RFS_OWNER_FILE);
	int ret = 0, i;
	/* The items take over the references the inline list held. */
	for (i = 0; i < m->n && !ret; i++)
		ret = ext_put(fs, &t, m->x[i].lblk, &m->x[i], 0, m->x[i].n, RFS_PUT_INSERT);
	if (ret) {
		/* Give the moved references back to the list: drop the tree
		 * keeping them (its items are deleted one by one). */
		for (int k = 0; k < i - 1; k++) {
			uint8_t key[9];
			ext_key(key, m->x[k].lblk);
			rfs_tree_delete(fs->pool, &t, key, 9, RFS_KEEP_REFS);
		}
		rfs_tree_drop(fs->pool, &t);
		return ret;
	}
	m->t = t;
	m->inl = false;
	emap_free(m);
	return 0;
}

/* A file tree of one leaf holding only a few 'E' items that fit the
 * record: move them inline (each extent gains the list's reference, the
 * tree's go with it). */
static int emap_shrink(rfs_fs *fs, struct emap *m)
{
	int h = 0;
	if (!m->t.root || !inline_ok(fs))
		return 0;
	int ret = rfs_tree_height(fs->pool, &m->t, &h);
	if (ret || h != 1)
		return ret;
	rfs_cursor *c;
	size_t items = 0;
	ret = rfs_cursor_open(fs->pool, &m->t, &c);
	if (ret)
		return ret;
	for (ret = rfs_cursor_seek(c, NULL, 0, 1); !ret && items <= RFS_INLEXT_CAP;
	     ret = rfs_cursor_step(c, 1))
		items++;
	rfs_cursor_close(c);
	if (ret && ret != -ENOENT)
		return ret;
	ret = 0;
	if (items > RFS_INLEXT_CAP)
		return 0;
	struct rfs_ext *x = malloc(sizeof(*x) * (RFS_INLEXT_CAP + 1));
	if (!x)
		return -ENOMEM;
	int n = tree_ext_collect(fs, &m->t, 0, RFS_FILE_MAX / BS, x, RFS_INLEXT_CAP + 1);
	if (n < 0 || (size_t)n != items || inl_size(x, n) > RFS_INLEXT_MAX) {
		free(x);
		return n < 0 ? n : 0; /* xattrs or too big: stays a tree */
	}
	for (int i = 0; i < n && !ret; i++)
		ret = rfs_ref_inc(fs->pool, x[i].start, x[i].n);
	if (!ret)
		ret = rfs_tree_drop(fs->pool, &m->t);
	if (ret) {
		free(x);
		return ret;
	}
	emap_free(m);
	m->x = x;
	m->n = n;
	m->inl = true;
	return 0;
}

int emap_store(rfs_fs *fs, struct emap *m, struct rfs_irec *r, bool shrink)
{
	int ret = 0;
	if (m->inl && m->x && inl_size(m->x, m->n) > RFS_INLEXT_MAX)
		ret = emap_spill(fs, m);
	if (!ret && !m->inl && shrink)
		ret = emap_shrink(fs, m);
	if (ret)
		return ret;
	if (m->inl && m->x) {
		inl_encode(r, m->x, m->n);
		r->i.subtree = 0;
	} else {
		if (r->i.flags & RFS_INODE_INLEXT) {
			r->taillen = 0;
			r->i.flags &= ~(uint32_t)RFS_INODE_INLEXT;
		}
		r->i.subtree = m->t.root;
	}
	return 0;
}

/* ---- both forms ---------------------------------------------------------- */

int tree_ext_collect(rfs_fs *fs, const rfs_tree *t, uint64_t b, uint64_t end,
		     struct rfs_ext *out, int max)
{
	rfs_cursor *c;
	uint8_t key[9];
	int n = 0, ret;
	if (!t->root || b >= end)
		return 0;
	ret = rfs_cursor_open(fs->pool, t, &c);
	if (ret)
		return ret;
	ext_key(key, b);
	ret = rfs_cursor_seek(c, key, 9, -1);
	if (ret == -ENOENT)
		ret = rfs_cursor_seek(c, NULL, 0, 1);
	for (; !ret && n < max; ret = rfs_cursor_step(c, 1)) {
		const uint8_t *k;
		const void *v;
		size_t kl, vl;
		rfs_cursor_get(c, (const void **)&k, &kl, &v, &vl, NULL);
		if (k[0] < 'E')
			continue;
		if (k[0] > 'E')
			break;
		ret = ext_decode(k, kl, v, vl, &out[n]);
		if (ret) {
			rfs_log(RFS_LOG_ERR, "%s: corrupt extent record", rfs_pool_path(fs->pool));
			break;
		}
		if (out[n].lblk >= end)
			break;
		if (out[n].lblk + out[n].n > b) {
			bool last = out[n].lblk + out[n].n >= end;
			n++;
			/* Reaching end: the next item starts past it, so do
			 * not step to it (a READ of one block decoded two
			 * extents, and the step may load the next leaf). */
			if (last)
				break;
		}
	}
	rfs_cursor_close(c);
	if (ret && ret != -ENOENT)
		return ret;
	return n;
}

int ext_collect(rfs_fs *fs, const struct emap *m, uint64_t b, uint64_t end,
		struct rfs_ext *out, int max)
{
	if (!m->inl || !m->x)
		return tree_ext_collect(fs, &m->t, b, end, out, max);
	int n = 0;
	for (int i = 0; i < m->n && n < max; i++) {
		const struct rfs_ext *e = &m->x[i];
		if (e->lblk >= end)
			break;
		if (e->lblk + e->n > b)
			out[n++] = *e;
	}
	return n;
}

/* Inline: the slice [from, from + n) of e as an extent at file block lblk. */
static void slice(struct rfs_ext *out, const struct rfs_ext *e, uint64_t from, uint64_t n)
{
	out->lblk = e->lblk + from;
	out->start = e->start + from;
	out->n = n;
	out->flags = e->flags;
	if (!(e->flags & RFS_EXT_UNWRITTEN))
		memmove(out->csum, e->csum + from, 4 * n);
}

static int inl_punch(rfs_fs *fs, struct emap *m, uint64_t b, uint64_t n, uint64_t *removed)
{
	uint64_t e = b + n;
	for (int i = 0; i < m->n; i++) {
		struct rfs_ext *r = &m->x[i];
		if (r->lblk >= e || r->lblk + r->n <= b)
			continue;
		uint64_t lo = r->lblk > b ? r->lblk : b;
		uint64_t hi = r->lblk + r->n < e ? r->lblk + r->n : e;
		uint64_t head = lo - r->lblk, tail = r->lblk + r->n - hi;
		int ret = rfs_ref_dec(fs->pool, r->start + head, hi - lo);
		if (ret)
			return ret;
		if (removed)
			*removed += hi - lo;
		if (head && tail) {
			/* Split: the slot after i takes the tail (the array has
			 * one spare slot; emap_store spills when it overflows). */
			if (m->n > RFS_INLEXT_CAP)
				return -EUCLEAN; /* not reached: callers spill first */
			memmove(&m->x[i + 2], &m->x[i + 1], sizeof(*m->x) * (size_t)(m->n - i - 1));
			slice(&m->x[i + 1], r, hi - r->lblk, tail);
			r->n = head;
			m->n++;
			i++;
		} else if (head) {
			r->n = head;
		} else if (tail) {
			slice(r, r, hi - r->lblk, tail);
		} else {
			memmove(r, r + 1, sizeof(*m->x) * (size_t)(m->n - i - 1));
			m->n--;
			i--;
		}
	}
	return 0;
}

int ext_punch(rfs_fs *fs, struct emap *m, uint64_t b, uint64_t n, uint64_t *removed)
{
	if (removed)
		*removed = 0;
	if (m->inl && m->x) {
		/* A split needs a spare slot: move to a tree when full. */
		if (m->n >= RFS_INLEXT_CAP) {
			int ret = emap_spill(fs, m);
			if (ret)
				return ret;
		} else {
			return inl_punch(fs, m, b, n, removed);
		}
	}
	rfs_tree *t = &m->t;
	uint64_t e = b + n;
	/* On the stack (8.6 KiB), as read_blocks: no malloc per write. */
	struct rfs_ext ex[16];
	int ret = 0;
	for (;;) {
		int cnt = tree_ext_collect(fs, t, b, e, ex, 16);
		if (cnt <= 0) {
			ret = cnt;
			break;
		}
		for (int i = 0; i < cnt && !ret; i++) {
			struct rfs_ext *r = &ex[i];
			uint64_t lo = r->lblk > b ? r->lblk : b;
			uint64_t hi = r->lblk + r->n < e ? r->lblk + r->n : e;
			uint64_t head = lo - r->lblk, tail = r->lblk + r->n - hi;
			uint8_t key[9];
			ext_key(key, r->lblk);
			if (head)
				ret = ext_put(fs, t, r->lblk, r, 0, head,
					      RFS_PUT_REPLACE | RFS_KEEP_REFS);
			else
				ret = rfs_tree_delete(fs->pool, t, key, 9, RFS_KEEP_REFS);
			if (!ret && tail)
				ret = ext_put(fs, t, hi, r, hi - r->lblk, tail, RFS_PUT_INSERT);
			if (!ret)
				ret = rfs_ref_dec(fs->pool, r->start + head, hi - lo);
			if (!ret && removed)
				*removed += hi - lo;
		}
		/* Fewer than asked for: that was every extent in the range
		 * (no second walk of the tree to find none; a random write
		 * over one extent punches with one walk). */
		if (ret || cnt < 16)
			break;
	}
	return ret;
}

static bool mergeable(const struct rfs_ext *p, const struct rfs_ext *e)
{
	return p->lblk + p->n == e->lblk && p->start + p->n == e->start &&
	       p->flags == e->flags && p->n + e->n <= ext_cap(e->flags);
}

static int inl_insert(struct emap *m, const struct rfs_ext *e)
{
	int i = 0;
	while (i < m->n && m->x[i].lblk < e->lblk)
		i++;
	if (i > 0 && mergeable(&m->x[i - 1], e)) {
		struct rfs_ext *p = &m->x[i - 1];
		if (!(e->flags & RFS_EXT_UNWRITTEN))
			memcpy(p->csum + p->n, e->csum, 4 * e->n);
		p->n += e->n;
		return 0;
	}
	if (i < m->n && m->x[i].lblk < e->lblk + e->n)
		return -EUCLEAN; /* overlaps: callers punch first */
	memmove(&m->x[i + 1], &m->x[i], sizeof(*m->x) * (size_t)(m->n - i));
	m->x[i] = *e;
	m->n++;
	return 0;
}

int ext_insert(rfs_fs *fs, struct emap *m, const struct rfs_ext *e)
{
	if (m->inl && m->x) {
		if (m->n < RFS_INLEXT_CAP)
			return inl_insert(m, e);
		int ret = emap_spill(fs, m);
		if (ret)
			return ret;
	}
	rfs_tree *t = &m->t;
	if (e->lblk > 0 && t->root) {
		struct rfs_ext p;
		int cnt = tree_ext_collect(fs, t, e->lblk - 1, e->lblk, &p, 1);
		if (cnt == 1 && mergeable(&p, e)) {
			if (!(e->flags & RFS_EXT_UNWRITTEN))
				memcpy(p.csum + p.n, e->csum, 4 * e->n);
			uint64_t total = p.n + e->n;
			return ext_put(fs, t, p.lblk, &p, 0, total,
				       RFS_PUT_REPLACE | RFS_KEEP_REFS);
		}
		if (cnt < 0)
			return cnt;
	}
	return ext_put(fs, t, e->lblk, e, 0, e->n, RFS_PUT_INSERT);
}

/* Item i of an open leaf as an extent: 1, or 0 when it is not one
 * (another kind of item, or i outside the leaf), -EUCLEAN when corrupt;
 * without csum, x gets no checksums. */
static int edit_ext(rfs_fs *fs, const struct rfs_tree_edit *ed, unsigned i,
		    struct rfs_ext *x, bool csum)
{
	const void *k, *v;
	size_t kl, vl;
	if (rfs_tree_edit_get(ed, i, &k, &kl, &v, &vl, NULL))
		return 0;
	if (kl != 9 || ((const uint8_t *)k)[0] != 'E')
		return 0;
	if ((csum ? ext_decode : ext_decode_hdr)(k, kl, v, vl, x)) {
		rfs_log(RFS_LOG_ERR, "%s: corrupt extent record", rfs_pool_path(fs->pool));
		return -EUCLEAN;
	}
	return 1;
}

/*
 * ext_replace in one descent: the path to b's leaf shadowed once, the
 * extent holding the range found in that leaf, and its records replaced
 * there (rfs_tree_edit_splice, which splits the leaf when they do not
 * fit).  1 or 2 as ext_replace, 0 for the general path (the map has no
 * single extent holding the range, e would continue the extent before
 * it), -1 when this leaf cannot tell or hold it (the extent, the one
 * before it, or a piece's key in another leaf): ext_replace_walk then.
 */
static int ext_replace_leaf(rfs_fs *fs, rfs_tree *t, const struct rfs_ext *e,
			    struct rfs_ext *old, struct rfs_tree_edit *fin)
{
	uint64_t b = e->lblk, end = b + e->n;
	struct rfs_tree_edit own, *ed = fin ? fin : &own;
	uint8_t key[9];
	unsigned idx;
	bool exact;
	struct rfs_ext r, p;
	ext_key(key, b);
	int ret = fin && fin->p.h ? rfs_tree_edit_move(fin, key, 9, &idx, &exact)
				  : rfs_tree_edit_open(fs->pool, t, key, 9, ed, &idx, &exact);
	if (ret)
		goto out;
	/* r: the extent with the last key <= b. */
	unsigned ri = exact ? idx : idx - 1;
	if (!exact && idx == 0) {
		ret = -1;
		goto out;
	}
	ret = edit_ext(fs, ed, ri, &r, true);
	if (ret <= 0)
		goto out; /* no extent at or before b: the general path */
	if (r.lblk + r.n < end) {
		ret = 0;
		goto out;
	}
	if (exact) {
		/* e might continue the extent that ends at b. */
		if (ri == 0) {
			ret = -1;
			goto out;
		}
		ret = edit_ext(fs, ed, ri - 1, &p, false); /* mergeable: no checksums */
		if (ret < 0)
			goto out;
		if (ret && p.lblk + p.n == b && mergeable(&p, e)) {
			ret = 0;
			goto out;
		}
	}
	uint64_t head = b - r.lblk, tail = r.lblk + r.n - end;
	uint8_t v[3][RFS_VAL_MAX], k[3][9];
	struct rfs_tree_item it[3];
	unsigned n = 0;
	/* As ext_replace_walk: the head keeps r's key, e and the tail are
	 * new records (e never continues the head: see there). */
	if (head) {
		it[n].vlen = ext_encode(&r, 0, head, v[n]);
		it[n].klen = ext_key(k[n], r.lblk);
		n++;
	}
	it[n].vlen = ext_encode(e, 0, e->n, v[n]);
	it[n].klen = ext_key(k[n], b);
	n++;
	if (tail) {
		it[n].vlen = ext_encode(&r, head + e->n, tail, v[n]);
		it[n].klen = ext_key(k[n], end);
		n++;
	}
	for (unsigned j = 0; j < n; j++) {
		it[j].key = k[j];
		it[j].val = v[j];
		it[j].flags = RFS_ITEM_EXTENT;
	}
	uint64_t items = rfs_pool_items(fs->pool);
	ret = rfs_tree_edit_splice(ed, ri, 1, it, n, RFS_KEEP_REFS);
	if (ret == 0) {
		/* A piece's key belongs to the next leaf (r grew across its
		 * separator by a merge): the puts route each piece. */
		ret = -1;
		goto out;
	}
	if (ret < 0) {
		/* A split that failed after it began: the transaction
		 * cannot be kept (op_end aborts it). */
		if (rfs_pool_items(fs->pool) != items)
			op_halfway(fs, ret);
		goto out;
	}
	if (!head && !tail) {
		*old = r;
		ret = 1;
	} else {
		old->lblk = b;
		old->start = r.start + head;
		old->n = e->n;
		old->flags = r.flags;
		ret = 2;
	}
out:
	/* A finger stays open only over a change the splice made: whatever
	 * the caller does instead (puts) would leave its path stale. */
	if (!fin || ret <= 0)
		rfs_tree_edit_close(ed);
	return ret;
}

/* ext_replace by a walk that collects the extents and one put per
 * changed record: what the leaf cannot do. */
static int ext_replace_walk(rfs_fs *fs, rfs_tree *t, const struct rfs_ext *e,
			    struct rfs_ext *old)
{
	uint64_t b = e->lblk, end = b + e->n;
	/* The extent that ends at b (if any) and what overlaps the range:
	 * one walk. */
	struct rfs_ext x[2];
	int cnt = tree_ext_collect(fs, t, b ? b - 1 : 0, end, x, 2);
	if (cnt < 0)
		return cnt;
	int i = 0;
	if (cnt > 0 && x[0].lblk < b && x[0].lblk + x[0].n <= b) {
		/* It ends at b: e would continue it (ext_insert would merge
		 * the two): the general path. */
		if (mergeable(&x[0], e))
			return 0;
		i = 1;
	}
	/* One extent holds the whole range. */
	if (cnt - i != 1 || x[i].lblk > b || x[i].lblk + x[i].n < end)
		return 0;
	const struct rfs_ext *r = &x[i];
	uint64_t head = b - r->lblk, tail = r->lblk + r->n - end;
	int ret;
	if (!head && !tail) {
		ret = ext_put(fs, t, b, e, 0, e->n, RFS_PUT_REPLACE | RFS_KEEP_REFS);
		if (ret)
			return ret;
		*old = *r;
		return 1;
	}
	/* Inside a longer extent: its head keeps its key (or e takes it),
	 * e and the tail are new records.  e never continues the head: its
	 * blocks were free, the head's next block is r's, still mapped. */
	if (head)
		ret = ext_put(fs, t, r->lblk, r, 0, head, RFS_PUT_REPLACE | RFS_KEEP_REFS);
	else
		ret = ext_put(fs, t, b, e, 0, e->n, RFS_PUT_REPLACE | RFS_KEEP_REFS);
	if (ret)
		return ret; /* nothing changed (rfs_tree_put) */
	if (head)
		ret = ext_put(fs, t, b, e, 0, e->n, RFS_PUT_INSERT);
	if (!ret && tail)
		ret = ext_put(fs, t, end, r, head + e->n, tail, RFS_PUT_INSERT);
	if (ret) {
		/* The tree holds part of the change: the transaction cannot
		 * be kept (op_end aborts it). */
		op_halfway(fs, ret);
		return ret;
	}
	old->lblk = b;
	old->start = r->start + head;
	old->n = e->n;
	old->flags = r->flags;
	return 2;
}

int ext_replace(rfs_fs *fs, struct emap *m, const struct rfs_ext *e, struct rfs_ext *old,
		struct rfs_tree_edit *fin)
{
	if ((m->inl && m->x) || !m->t.root)
		return 0; /* an inline map costs no walk */
	assert(!fin || !fin->p.h || fin->t == &m->t);
	int ret = ext_replace_leaf(fs, &m->t, e, old, fin);
	return ret == -1 ? ext_replace_walk(fs, &m->t, e, old) : ret;
}

int rec_spill(rfs_fs *fs, struct rfs_irec *r)
{
	struct emap m;
	int ret = emap_open(fs, r, &m);
	if (!ret)
		ret = emap_spill(fs, &m);
	if (!ret)
		ret = emap_store(fs, &m, r, false);
	emap_free(&m);
	return ret;
}
