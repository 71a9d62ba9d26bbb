/*
 * Regular file data: the extent map ('E' + be64(file block) -> extent
 * {start, nblocks, flags, crc32c per block}), reads with checksum
 * verification, copy-on-write writes, truncate, fallocate, SEEK_DATA /
 * SEEK_HOLE, and the extent listing behind `reflinkfs stat`.
 *
 * Reference counting: an extent record holds one reference on every block
 * it covers.  A fresh allocation's implicit count of 1 moves into the
 * tree with the record; splitting a record keeps the old item's
 * references (RFS_KEEP_REFS) for the pieces that remain and releases the
 * cut-out blocks with rfs_ref_dec.  Writes never modify a block in place:
 * the blocks written are new, so a clone sharing the old ones never sees
 * the change, and a crash leaves the last committed state intact.
 */
#include "fs/op.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <stdlib.h>
#include <unistd.h>

#define BS RFS_BLOCK_SIZE
#define MAX_LBLK (RFS_FILE_MAX / BS)

size_t ext_key(uint8_t *key, uint64_t lblk)
{
	key[0] = 'E';
	put_be64(key + 1, lblk);
	return 9;
}

int ext_decode(const uint8_t *key, size_t kl, const void *val, size_t vl,
	       struct rfs_ext *e)
{
	struct rfs_extent h;
	if (kl != 9 || key[0] != 'E' || vl < RFS_EXT_HDR)
		return -EUCLEAN;
	memcpy(&h, val, RFS_EXT_HDR);
	e->lblk = get_be64(key + 1);
	e->start = h.start;
	e->n = h.nblocks;
	e->flags = h.flags;
	if (e->n == 0 || !e->start)
		return -EUCLEAN;
	if (!(e->flags & RFS_EXT_UNWRITTEN)) {
		if (e->n > RFS_EXTENT_MAX || vl != RFS_EXT_HDR + 4 * e->n)
			return -EUCLEAN;
		memcpy(e->csum, (const uint8_t *)val + RFS_EXT_HDR, 4 * e->n);
	} else if (e->n > RFS_UNWRITTEN_MAX) {
		return -EUCLEAN;
	}
	return 0;
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

int ext_collect(rfs_fs *fs, const rfs_tree *t, uint64_t b, uint64_t end,
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
		if (out[n].lblk + out[n].n > b)
			n++;
	}
	rfs_cursor_close(c);
	if (ret && ret != -ENOENT)
		return ret;
	return n;
}

int ext_punch(rfs_fs *fs, rfs_tree *t, uint64_t b, uint64_t n, uint64_t *removed)
{
	uint64_t e = b + n;
	struct rfs_ext *ex = malloc(sizeof(*ex) * 16);
	int ret = 0;
	if (!ex)
		return -ENOMEM;
	if (removed)
		*removed = 0;
	for (;;) {
		int cnt = ext_collect(fs, t, b, e, ex, 16);
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
		if (ret)
			break;
	}
	free(ex);
	return ret;
}

static uint64_t ext_cap(uint32_t flags)
{
	return (flags & RFS_EXT_UNWRITTEN) ? RFS_UNWRITTEN_MAX : RFS_EXTENT_MAX;
}

int ext_insert(rfs_fs *fs, rfs_tree *t, const struct rfs_ext *e)
{
	if (e->lblk > 0 && t->root) {
		struct rfs_ext *p = malloc(sizeof(*p));
		if (!p)
			return -ENOMEM;
		int cnt = ext_collect(fs, t, e->lblk - 1, e->lblk, p, 1);
		if (cnt == 1 && p->lblk + p->n == e->lblk && p->start + p->n == e->start &&
		    p->flags == e->flags && p->n + e->n <= ext_cap(e->flags)) {
			if (!(e->flags & RFS_EXT_UNWRITTEN))
				memcpy(p->csum + p->n, e->csum, 4 * e->n);
			uint64_t total = p->n + e->n;
			int ret = ext_put(fs, t, p->lblk, p, 0, total,
					  RFS_PUT_REPLACE | RFS_KEEP_REFS);
			free(p);
			return ret;
		}
		free(p);
		if (cnt < 0)
			return cnt;
	}
	return ext_put(fs, t, e->lblk, e, 0, e->n, RFS_PUT_INSERT);
}

int alloc_data(rfs_fs *fs, uint64_t want, uint64_t *start, uint64_t *got)
{
	/* Never commit here: the operation has shadowed its path but not
	 * stored it back, and a commit now would make the durable catalog
	 * point at blocks the new bitmap marks free.  op_begin commits
	 * when pending frees are needed, before anything is shadowed. */
	return rfs_alloc_data(fs->pool, want, start, got);
}

/* Read file blocks [b, b + n) of tree t into buf (holes and unwritten
 * extents read as zeros). */
static int read_blocks(rfs_fs *fs, const rfs_tree *t, uint64_t b, uint64_t n,
		       uint8_t *buf)
{
	struct rfs_ext *ex = malloc(sizeof(*ex) * 16);
	uint64_t pos = b, e = b + n;
	int ret = 0;
	if (!ex)
		return -ENOMEM;
	memset(buf, 0, n * BS);
	while (pos < e) {
		int cnt = ext_collect(fs, t, pos, e, ex, 16);
		if (cnt <= 0) {
			ret = cnt;
			break;
		}
		for (int i = 0; i < cnt; i++) {
			struct rfs_ext *x = &ex[i];
			uint64_t lo = x->lblk > pos ? x->lblk : pos;
			uint64_t hi = x->lblk + x->n < e ? x->lblk + x->n : e;
			if (!(x->flags & RFS_EXT_UNWRITTEN)) {
				ret = rfs_data_read(fs->pool, x->start + (lo - x->lblk),
						    buf + (lo - b) * BS, (uint32_t)(hi - lo),
						    x->csum + (lo - x->lblk));
				if (ret) {
					memset(buf, 0, n * BS);
					goto out;
				}
			}
			pos = hi;
		}
	}
out:
	free(ex);
	return ret;
}

int file_read_locked(rfs_fs *fs, const struct rfs_irec *r, void *buf,
		     size_t size, uint64_t off, size_t *got)
{
	*got = 0;
	if (off >= r->i.size || size == 0)
		return 0;
	if (size > r->i.size - off)
		size = (size_t)(r->i.size - off);
	uint64_t b0 = off / BS, b1 = div_up(off + size, BS);
	rfs_tree t = FS_TREE(r->i.subtree, RFS_OWNER_FILE);
	int ret;
	if (off % BS == 0 && size % BS == 0) {
		ret = read_blocks(fs, &t, b0, b1 - b0, buf);
	} else {
		uint8_t *bounce = malloc((b1 - b0) * BS);
		if (!bounce)
			return -ENOMEM;
		ret = read_blocks(fs, &t, b0, b1 - b0, bounce);
		if (!ret)
			memcpy(buf, bounce + (off - b0 * BS), size);
		free(bounce);
	}
	if (!ret)
		*got = size;
	return ret;
}

/* Replace file blocks [pos, pos + n) with the contents of data (n whole
 * blocks), in new blocks.  *done receives the blocks written (maybe fewer
 * than n when the pool fills up). */
static int write_blocks(rfs_fs *fs, struct rfs_irec *r, rfs_tree *t, uint64_t pos,
			uint64_t n, const uint8_t *data, uint64_t *done)
{
	struct rfs_ext *e = malloc(sizeof(*e));
	int ret = 0;
	*done = 0;
	if (!e)
		return -ENOMEM;
	while (*done < n) {
		uint64_t want = n - *done, start, got, removed;
		if (want > RFS_EXTENT_MAX)
			want = RFS_EXTENT_MAX;
		ret = alloc_data(fs, want, &start, &got);
		if (ret)
			break;
		e->lblk = pos + *done;
		e->start = start;
		e->n = got;
		e->flags = 0;
		ret = rfs_data_write(fs->pool, start, data + *done * BS, (uint32_t)got, e->csum);
		if (!ret)
			ret = ext_punch(fs, t, e->lblk, got, &removed);
		if (ret) {
			rfs_free_blocks(fs->pool, start, got);
			break;
		}
		ret = ext_insert(fs, t, e);
		if (ret) {
			rfs_free_blocks(fs->pool, start, got);
			r->i.blocks -= removed;
			break;
		}
		r->i.blocks += got - removed;
		*done += got;
	}
	free(e);
	return ret;
}

int file_write_locked(rfs_fs *fs, struct rfs_irec *r, const void *buf,
		      size_t size, uint64_t off, size_t *done)
{
	*done = 0;
	if (size == 0)
		return 0;
	if (off >= RFS_FILE_MAX || size > RFS_FILE_MAX - off)
		return -EFBIG;
	int ret = tail_fix(fs, r);
	if (ret)
		return ret;
	uint64_t end = off + size, b0 = off / BS, b1 = div_up(end, BS);
	rfs_tree t = FS_TREE(r->i.subtree, RFS_OWNER_FILE);
	const uint8_t *src = buf;
	/* Work in chunks of up to 1 MiB of blocks.  The bounce buffer is
	 * only needed for partial blocks, so whole-block writes (the common
	 * case) never allocate it. */
	uint64_t chunk_max = 256;
	uint8_t *chunk = NULL;
	uint64_t pos = b0;
	while (pos < b1) {
		uint64_t n = b1 - pos < chunk_max ? b1 - pos : chunk_max;
		uint64_t cstart = pos * BS, cend = (pos + n) * BS;
		uint64_t dlo = off > cstart ? off : cstart;
		uint64_t dhi = end < cend ? end : cend;
		const uint8_t *data;
		if (dlo == cstart && dhi == cend) {
			/* Whole blocks: write straight from the caller's buffer
			 * (no bounce copy of every byte). */
			data = src + (cstart - off);
			goto write;
		}
		if (!chunk && !(chunk = malloc(chunk_max * BS))) {
			ret = -ENOMEM;
			break;
		}
		data = chunk;
		/* Partial first / last block: start from the old contents. */
		if (dlo % BS && dlo / BS * BS < r->i.size) {
			ret = read_blocks(fs, &t, dlo / BS, 1, chunk + (dlo / BS - pos) * BS);
			if (ret)
				break;
		} else if (dlo % BS) {
			memset(chunk + (dlo / BS - pos) * BS, 0, BS);
		}
		if (dhi % BS && (dhi / BS != dlo / BS || !(dlo % BS))) {
			if (dhi / BS * BS < r->i.size) {
				ret = read_blocks(fs, &t, dhi / BS, 1, chunk + (dhi / BS - pos) * BS);
				if (ret)
					break;
			} else {
				memset(chunk + (dhi / BS - pos) * BS, 0, BS);
			}
		}
		memcpy(chunk + (dlo - cstart), src + (dlo - off), dhi - dlo);
write:;
		uint64_t wrote;
		ret = write_blocks(fs, r, &t, pos, n, data, &wrote);
		if (wrote) {
			uint64_t upto = (pos + wrote) * BS < end ? (pos + wrote) * BS : end;
			*done = (size_t)(upto - off);
			if (upto > r->i.size)
				r->i.size = upto;
		}
		if (ret)
			break;
		pos += n;
	}
	free(chunk);
	r->i.subtree = t.root;
	if (*done)
		return 0;
	return ret;
}

/* Zero bytes [from, to) inside one block that is within the file. */
int zero_partial(rfs_fs *fs, struct rfs_irec *r, rfs_tree *t, uint64_t from,
			uint64_t to)
{
	struct rfs_ext e;
	uint64_t b = from / BS;
	if (from >= to)
		return 0;
	int cnt = ext_collect(fs, t, b, b + 1, &e, 1);
	if (cnt <= 0)
		return cnt; /* a hole already reads as zeros */
	if (e.flags & RFS_EXT_UNWRITTEN)
		return 0;
	uint8_t *blk = malloc(BS);
	if (!blk)
		return -ENOMEM;
	int ret = read_blocks(fs, t, b, 1, blk);
	if (!ret) {
		uint64_t done;
		memset(blk + from % BS, 0, to - from);
		ret = write_blocks(fs, r, t, b, 1, blk, &done);
	}
	free(blk);
	return ret;
}

int tail_fix(rfs_fs *fs, struct rfs_irec *r)
{
	if (!(r->i.flags & RFS_INODE_TAILCLONE))
		return 0;
	rfs_tree t = FS_TREE(r->i.subtree, RFS_OWNER_FILE);
	uint64_t size = r->i.size, nb = div_up(size, BS), removed = 0;
	int ret = 0;
	if (size % BS)
		ret = zero_partial(fs, r, &t, size, (size / BS + 1) * BS);
	if (!ret)
		ret = ext_punch(fs, &t, nb, MAX_LBLK - nb, &removed);
	r->i.blocks -= removed;
	r->i.subtree = t.root;
	if (!ret)
		r->i.flags &= ~(uint32_t)RFS_INODE_TAILCLONE;
	return ret;
}

int file_truncate_locked(rfs_fs *fs, struct rfs_irec *r, uint64_t size)
{
	int tret = tail_fix(fs, r);
	if (tret)
		return tret;
	rfs_tree t = FS_TREE(r->i.subtree, RFS_OWNER_FILE);
	int ret = 0;
	if (size < r->i.size) {
		uint64_t removed = 0, nb = div_up(size, BS);
		if (size % BS) {
			uint64_t bend = (size / BS + 1) * BS;
			ret = zero_partial(fs, r, &t, size, bend);
		}
		if (!ret)
			ret = ext_punch(fs, &t, nb, MAX_LBLK - nb, &removed);
		r->i.blocks -= removed;
	}
	r->i.subtree = t.root;
	if (!ret)
		r->i.size = size;
	return ret;
}

/* Preallocate unwritten extents over the holes of [b, e). */
static int prealloc(rfs_fs *fs, struct rfs_irec *r, rfs_tree *t, uint64_t b, uint64_t e)
{
	struct rfs_ext *ex = malloc(sizeof(*ex) * 17);
	uint64_t pos = b;
	int ret = 0;
	if (!ex)
		return -ENOMEM;
	while (pos < e && !ret) {
		int cnt = ext_collect(fs, t, pos, e, ex, 16);
		if (cnt < 0) {
			ret = cnt;
			break;
		}
		uint64_t gap_end = cnt ? ex[0].lblk : e;
		if (gap_end <= pos) {
			pos = ex[0].lblk + ex[0].n;
			continue;
		}
		/* Fill [pos, gap_end). */
		while (pos < gap_end) {
			uint64_t want = gap_end - pos, start, got;
			if (want > RFS_UNWRITTEN_MAX)
				want = RFS_UNWRITTEN_MAX;
			ret = alloc_data(fs, want, &start, &got);
			if (ret)
				break;
			struct rfs_ext *n = &ex[16];
			n->lblk = pos;
			n->start = start;
			n->n = got;
			n->flags = RFS_EXT_UNWRITTEN;
			ret = ext_insert(fs, t, n);
			if (ret) {
				rfs_free_blocks(fs->pool, start, got);
				break;
			}
			r->i.blocks += got;
			pos += got;
		}
	}
	free(ex);
	return ret;
}

static int falloc_locked(rfs_fs *fs, struct rfs_irec *r, int mode, uint64_t off,
			 uint64_t len)
{
	uint64_t end = off + len;
	int ret = tail_fix(fs, r);
	if (ret)
		return ret;
	rfs_tree t = FS_TREE(r->i.subtree, RFS_OWNER_FILE);
	bool keep = mode & FALLOC_FL_KEEP_SIZE;
	if (mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)) {
		uint64_t lo = div_up(off, BS), hi = end / BS, removed = 0;
		uint64_t isz = r->i.size;
		if (lo > hi) { /* inside one block */
			if (off < isz)
				ret = zero_partial(fs, r, &t, off, end < isz ? end : isz);
		} else {
			if (off % BS && off < isz)
				ret = zero_partial(fs, r, &t, off, lo * BS < isz ? lo * BS : isz);
			if (!ret && end % BS && hi * BS < isz)
				ret = zero_partial(fs, r, &t, hi * BS, end < isz ? end : isz);
			if (!ret && hi > lo)
				ret = ext_punch(fs, &t, lo, hi - lo, &removed);
			r->i.blocks -= removed;
			if (!ret && (mode & FALLOC_FL_ZERO_RANGE) && hi > lo)
				ret = prealloc(fs, r, &t, lo, hi);
		}
		if (!ret && (mode & FALLOC_FL_ZERO_RANGE) && !keep && end > r->i.size)
			r->i.size = end;
	} else {
		ret = prealloc(fs, r, &t, off / BS, div_up(end, BS));
		if (!ret && !keep && end > r->i.size)
			r->i.size = end;
	}
	r->i.subtree = t.root;
	return ret;
}

/* ---- public calls -------------------------------------------------------------- */

static void maybe_touch_atime(rfs_fs *fs, struct rfs_node *n, const struct rfs_irec *r)
{
	/* relatime: update atime when it is not newer than mtime/ctime or
	 * older than a day. */
	int64_t now;
	uint32_t ns;
	now_ts(&now, &ns);
	const struct rfs_inode *i = &r->i;
	if (fs->rdonly || (i->atime > i->mtime && i->atime > i->ctime && now - i->atime < 86400))
		return;
	struct rfs_ipath p;
	struct rfs_op op = {0};
	/* Best effort: a full pool or a failed path load skips it. */
	if (op_begin(fs, &op, "atime update", op_meta(op_depth(fs, n), 0), 0))
		return;
	int ret = 0;
	if (!n->dead && (ret = ip_load(fs, n, true, &p)) == 0) {
		now_ts(&ip_rec(&p)->i.atime, &ip_rec(&p)->i.atime_ns);
		ret = ip_done(fs, &p, 0, 0);
	}
	op_end(&op, ret);
}

ssize_t rfs_fs_read(rfs_fs *fs, rfs_nodeid id, void *buf, size_t size, uint64_t off)
{
	struct rfs_irec r;
	size_t got = 0;
	rfs_pool_rdlock(fs->pool);
	struct rfs_node *n = node_get(fs, id);
	int ret = n ? inode_read(fs, n, &r) : -ESTALE;
	if (!ret && S_ISDIR(r.i.mode))
		ret = -EISDIR;
	else if (!ret && !S_ISREG(r.i.mode))
		ret = -EINVAL;
	if (!ret)
		ret = file_read_locked(fs, &r, buf, size, off, &got);
	rfs_pool_unlock(fs->pool);
	if (ret)
		return ret;
	maybe_touch_atime(fs, n, &r);
	return (ssize_t)got;
}

static int write_op(rfs_fs *fs, struct rfs_node *n, const void *buf, size_t size,
		    uint64_t off, size_t *done);

ssize_t rfs_fs_write(rfs_fs *fs, rfs_nodeid id, const void *buf, size_t size,
		     uint64_t off)
{
	size_t done = 0;
	if (size == 0)
		return 0;
	if (off >= RFS_FILE_MAX || size > RFS_FILE_MAX - off)
		return -EFBIG;
	struct rfs_node *n = node_get(fs, id);
	if (!n)
		return -ESTALE;
	uint64_t b0 = off / BS, nb = div_up(off + size, BS) - b0;
	struct rfs_op op = {0};
	op_target(&op, n, RFS_PREMOD_WRITE);
	int ret;
	do {
		/* The blocks written, an extent record per RFS_EXTENT_MAX
		 * blocks plus the pieces of split records.  When the pool has less, write
		 * what fits: a short write, as on any full filesystem. */
		ret = op_begin_partial(fs, &op, "write",
				       op_meta(op_depth(fs, n),
					       4 + 2 * (unsigned)(nb / RFS_EXTENT_MAX)),
				       nb);
		if (ret)
			return ret;
		size_t len = size;
		if (op.data < nb)
			len = (size_t)((b0 + op.data) * BS - off);
		ret = write_op(fs, n, buf, len, off, &done);
	} while ((ret = op_end(&op, ret)) == OP_RETRY);
	if (ret && !done)
		return ret;
	return (ssize_t)done;
}

static int write_op(rfs_fs *fs, struct rfs_node *n, const void *buf, size_t size,
		    uint64_t off, size_t *done)
{
	struct rfs_ipath p;
	*done = 0;
	int ret = ip_load(fs, n, true, &p);
	if (ret)
		return ret;
	struct rfs_irec *r = ip_rec(&p);
	if (!S_ISREG(r->i.mode)) {
		ret = S_ISDIR(r->i.mode) ? -EISDIR : -EINVAL;
	} else {
		ret = file_write_locked(fs, r, buf, size, off, done);
		if (*done)
			touch_mc(&r->i);
	}
	ret = ip_done(fs, &p, 0, ret);
	if (*done)
		op_rec_node(fs, RFS_CHANGE_DATA, n, off, *done);
	/* A short write is a complete change of its own. */
	return *done ? 0 : ret;
}

int rfs_fs_fallocate(rfs_fs *fs, rfs_nodeid id, int mode, uint64_t off, uint64_t len)
{
	if (mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE))
		return -EOPNOTSUPP;
	if ((mode & FALLOC_FL_PUNCH_HOLE) &&
	    (!(mode & FALLOC_FL_KEEP_SIZE) || (mode & FALLOC_FL_ZERO_RANGE)))
		return -EOPNOTSUPP;
	if (len == 0)
		return -EINVAL;
	if (off >= RFS_FILE_MAX || len > RFS_FILE_MAX - off)
		return -EFBIG;
	struct rfs_node *n = node_get(fs, id);
	if (!n)
		return -ESTALE;
	/* A block-aligned hole punch only deletes: it may use the reserve.
	 * Otherwise: the partial blocks at both ends, and for preallocation
	 * every block of the range. */
	uint64_t meta = 0, data = 0, nb = div_up(off + len, BS) - off / BS;
	bool aligned = off % BS == 0 && len % BS == 0;
	bool zero = mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE);
	if (!(mode & FALLOC_FL_PUNCH_HOLE) || !aligned) {
		data = (zero && !aligned ? 2 : 0) +
		       ((mode & FALLOC_FL_PUNCH_HOLE) ? 0 : nb);
		meta = op_meta(op_depth(fs, n), 6 + 2 * (unsigned)(nb / RFS_UNWRITTEN_MAX));
	}
	struct rfs_op op = {0};
	op_target(&op, n, RFS_PREMOD_FALLOCATE);
	int ret;
	do {
		ret = op_begin(fs, &op, "fallocate", meta, data);
		if (ret)
			return ret;
		struct rfs_ipath p;
		ret = ip_load(fs, n, true, &p);
		if (ret)
			continue;
		struct rfs_irec *r = ip_rec(&p);
		if (!S_ISREG(r->i.mode)) {
			ret = S_ISDIR(r->i.mode) ? -EISDIR : -ENODEV;
		} else {
			uint64_t osize = r->i.size;
			ret = falloc_locked(fs, r, mode, off, len);
			if (mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE) || r->i.size != osize)
				touch_mc(&r->i);
		}
		ret = ip_done(fs, &p, 0, ret);
		if (!ret)
			op_rec_node(fs, RFS_CHANGE_DATA, n, off, len);
	} while ((ret = op_end(&op, ret)) == OP_RETRY);
	return ret;
}

int rfs_fs_lseek(rfs_fs *fs, rfs_nodeid id, uint64_t off, int whence, uint64_t *out)
{
	struct rfs_irec r;
	if (whence != SEEK_DATA && whence != SEEK_HOLE)
		return -EINVAL;
	rfs_pool_rdlock(fs->pool);
	struct rfs_node *n = node_get(fs, id);
	int ret = n ? inode_read(fs, n, &r) : -ESTALE;
	if (ret)
		goto out;
	uint64_t size = r.i.size;
	if (off >= size) {
		ret = -ENXIO;
		goto out;
	}
	rfs_tree t = FS_TREE(r.i.subtree, RFS_OWNER_FILE);
	uint64_t eb = div_up(size, BS), pos = off / BS;
	struct rfs_ext *ex = malloc(sizeof(*ex) * 16);
	if (!ex) {
		ret = -ENOMEM;
		goto out;
	}
	if (whence == SEEK_DATA) {
		int cnt = ext_collect(fs, &t, pos, eb, ex, 1);
		if (cnt < 0) {
			ret = cnt;
		} else if (cnt == 0) {
			ret = -ENXIO;
		} else {
			uint64_t at = ex[0].lblk * BS;
			*out = at > off ? at : off;
			if (*out >= size)
				ret = -ENXIO;
		}
	} else {
		for (;;) {
			int cnt = ext_collect(fs, &t, pos, eb, ex, 16);
			if (cnt < 0) {
				ret = cnt;
				break;
			}
			int i;
			for (i = 0; i < cnt; i++) {
				if (ex[i].lblk > pos)
					break;
				pos = ex[i].lblk + ex[i].n;
			}
			if (i < cnt || cnt < 16 || pos >= eb)
				break;
		}
		if (!ret) {
			uint64_t at = pos * BS;
			if (at > size)
				at = size;
			*out = at > off ? at : off;
		}
	}
	free(ex);
out:
	rfs_pool_unlock(fs->pool);
	return ret;
}

int rfs_fs_extents(rfs_fs *fs, rfs_nodeid id,
		   int (*fn)(void *arg, const struct rfs_extent_info *e), void *arg)
{
	struct rfs_irec r;
	struct rfs_ipath p;
	bool above_shared = false;
	rfs_pool_rdlock(fs->pool);
	struct rfs_node *n = node_get(fs, id);
	int ret = n ? ip_load(fs, n, false, &p) : -ESTALE;
	if (ret)
		goto out;
	r = *ip_rec(&p);
	ret = ip_shared(fs, &p, &above_shared);
	ip_free(&p);
	if (ret)
		goto out;
	if (!S_ISREG(r.i.mode)) {
		ret = -EINVAL;
		goto out;
	}
	rfs_tree t = FS_TREE(r.i.subtree, RFS_OWNER_FILE);
	struct rfs_ext *ex = malloc(sizeof(*ex) * 16);
	if (!ex) {
		ret = -ENOMEM;
		goto out;
	}
	uint64_t pos = 0;
	bool stop = false;
	/* Sharing is lazy: blocks below a shared tree node keep a count of 1,
	 * so a block is shared when its own count is >= 2 or the path to its
	 * extent record passes through a shared node: in the file tree, or
	 * above the file's record (a snapshot or cloned directory). */
	while (!stop) {
		int cnt = ext_collect(fs, &t, pos, MAX_LBLK, ex, 16);
		if (cnt <= 0) {
			ret = cnt;
			break;
		}
		for (int i = 0; i < cnt && !stop; i++) {
			if ((r.i.flags & RFS_INODE_TAILCLONE) && ex[i].lblk * BS >= r.i.size) {
				stop = true;
				break;
			}
			struct rfs_extent_info info = {
				.logical = ex[i].lblk * BS,
				.physical = ex[i].start * BS,
				.length = ex[i].n * BS,
				.unwritten = ex[i].flags & RFS_EXT_UNWRITTEN,
			};
			uint8_t key[16];
			bool path_shared = above_shared;
			size_t kl = ext_key(key, ex[i].lblk);
			if (!path_shared)
				ret = rfs_tree_path_shared(fs->pool, &t, key, kl, &path_shared);
			for (uint64_t b = 0; !ret && b < ex[i].n; b++) {
				uint64_t c = 1;
				ret = rfs_ref_get(fs->pool, ex[i].start + b, &c);
				if (!ret && (c >= 2 || path_shared))
					info.shared++;
			}
			if (ret)
				break;
			pos = ex[i].lblk + ex[i].n;
			if (fn(arg, &info))
				stop = true;
		}
		if (ret)
			break;
	}
	free(ex);
out:
	rfs_pool_unlock(fs->pool);
	return ret;
}
