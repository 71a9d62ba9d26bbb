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
 *
 * Inline data (volume format 4): a regular file whose whole content is at
 * most RFS_INLDATA_MAX bytes, written while it maps no block, keeps the
 * bytes in its record's tail (RFS_INODE_INLDATA) -- no data block, no
 * extent.  Reads, writes and truncates within the limit work on the tail;
 * anything that needs blocks (growth past the limit, fallocate, a hole
 * punch, a range clone onto it, an xattr) first moves the bytes into a
 * block of their own (inldata_spill), after which the file is an
 * ordinary one until a truncate brings it back within the limit
 * (inldata_return).  The record is stored by the same operation, so the
 * usual transaction rules cover it.
 */
#include "fs/op.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <stdlib.h>
#include <unistd.h>

#define BS RFS_BLOCK_SIZE
#define MAX_LBLK (RFS_FILE_MAX / BS)

int alloc_data(rfs_fs *fs, uint64_t want, uint64_t *start, uint64_t *got)
{
	/* Never commit here: the operation has shadowed its path but not
	 * stored it back, and a commit now would make the durable catalog
	 * point at blocks the new bitmap marks free.  op_begin commits
	 * when pending frees are needed, before anything is shadowed. */
	if (fs->inject_nospc) {
		fs->inject_nospc--;
		return -ENOSPC;
	}
	return rfs_alloc_data(fs->pool, want, start, got);
}

/* Read file blocks [b, b + n) of tree t into buf (holes and unwritten
 * extents read as zeros). */
/* Read file blocks [b, b + n) into buf.  With one set, *one receives the
 * extent that maps the whole range when a single written extent does
 * (else one->n is 0), for READ's extent copies. */
static int read_blocks_one(rfs_fs *fs, const struct emap *t, uint64_t b, uint64_t n,
			   uint8_t *buf, struct rfs_ext *one)
{
	/* On the stack (8.7 KiB): a malloc per read was a shared-arena
	 * round trip for every 4 KiB read of every FUSE worker. */
	struct rfs_ext ex[16];
	uint64_t pos = b, e = b + n;
	int ret = 0;
	/* Zeroes go only where no written extent puts data (holes,
	 * unwritten extents): zeroing the whole buffer first cost a
	 * memset per block read. */
	while (pos < e) {
		int cnt = ext_collect(fs, t, pos, e, ex, 16);
		if (cnt <= 0) {
			ret = cnt;
			break;
		}
		if (one && pos == b && cnt == 1 && ex[0].lblk <= b && ex[0].lblk + ex[0].n >= e &&
		    !(ex[0].flags & RFS_EXT_UNWRITTEN))
			*one = ex[0];
		for (int i = 0; i < cnt; i++) {
			struct rfs_ext *x = &ex[i];
			uint64_t lo = x->lblk > pos ? x->lblk : pos;
			uint64_t hi = x->lblk + x->n < e ? x->lblk + x->n : e;
			if (lo > pos)
				memset(buf + (pos - b) * BS, 0, (lo - pos) * BS);
			if (!(x->flags & RFS_EXT_UNWRITTEN)) {
				ret = rfs_data_read(fs->pool, x->start + (lo - x->lblk),
						    buf + (lo - b) * BS, (uint32_t)(hi - lo),
						    x->csum + (lo - x->lblk));
				if (ret) {
					memset(buf, 0, n * BS);
					return ret;
				}
			} else {
				memset(buf + (lo - b) * BS, 0, (hi - lo) * BS);
			}
			pos = hi;
		}
	}
	if (ret)
		memset(buf, 0, n * BS);
	else if (pos < e)
		memset(buf + (pos - b) * BS, 0, (e - pos) * BS);
	return ret;
}

static int read_blocks(rfs_fs *fs, const struct emap *t, uint64_t b, uint64_t n,
		       uint8_t *buf)
{
	return read_blocks_one(fs, t, b, n, buf, NULL);
}

/* ---- inline data ------------------------------------------------------------ */

static bool inldata(const struct rfs_irec *r)
{
	return r->i.flags & RFS_INODE_INLDATA;
}

/* The tail holds exactly the file's bytes. */
static int inldata_check(const struct rfs_irec *r)
{
	if (r->taillen == r->i.size && r->i.size && r->i.size <= RFS_INLDATA_MAX)
		return 0;
	rfs_log(RFS_LOG_ERR, "inode %llu: inline data of %zu bytes in a file of %llu bytes",
		(unsigned long long)r->i.ino, r->taillen, (unsigned long long)r->i.size);
	return -EUCLEAN;
}

/* May r's content, grown to size bytes, be kept in its record?  Inline
 * already, or mapping no block at all (no file tree, so no xattrs either;
 * no inline extents; no hidden clone tail): its bytes are then zeros. */
static bool inldata_fits(rfs_fs *fs, const struct rfs_irec *r, uint64_t size)
{
	if (!S_ISREG(r->i.mode) || size == 0 || size > RFS_INLDATA_MAX || !inline_data_ok(fs))
		return false;
	if (inldata(r))
		return true;
	return !r->i.subtree && !r->taillen &&
	       !(r->i.flags & (RFS_INODE_INLEXT | RFS_INODE_TAILCLONE));
}

/* Write size bytes at off into the tail (inldata_fits said yes). */
static void inldata_write(struct rfs_irec *r, const void *buf, size_t size, uint64_t off)
{
	uint64_t have = inldata(r) ? r->taillen : 0;
	uint64_t nsize = off + size > r->i.size ? off + size : r->i.size;
	if (nsize > have)
		memset(r->tail + have, 0, nsize - have);
	memcpy(r->tail + off, buf, size);
	r->taillen = nsize;
	r->i.size = nsize;
	r->i.flags |= RFS_INODE_INLDATA;
}

/* Truncate inline data to size (<= RFS_INLDATA_MAX); 0 leaves no tail. */
static void inldata_truncate(struct rfs_irec *r, uint64_t size)
{
	if (size > r->taillen)
		memset(r->tail + r->taillen, 0, size - r->taillen);
	r->taillen = size;
	r->i.size = size;
	if (!size)
		r->i.flags &= ~(uint32_t)RFS_INODE_INLDATA;
}

static int write_blocks(rfs_fs *fs, struct rfs_irec *r, struct emap *t, uint64_t pos,
			uint64_t n, const uint8_t *data, uint64_t *done, bool pause);

int inldata_spill(rfs_fs *fs, struct rfs_irec *r)
{
	if (!inldata(r))
		return 0;
	int ret = inldata_check(r);
	if (ret)
		return ret;
	uint8_t *blk = calloc(1, BS);
	if (!blk)
		return -ENOMEM;
	size_t len = r->taillen;
	memcpy(blk, r->tail, len);
	r->i.flags &= ~(uint32_t)RFS_INODE_INLDATA;
	r->taillen = 0;
	struct emap t;
	uint64_t done = 0;
	ret = emap_open(fs, r, &t);
	if (!ret) {
		ret = write_blocks(fs, r, &t, 0, 1, blk, &done, false);
		int sret = emap_store(fs, &t, r, false);
		emap_free(&t);
		if (!ret)
			ret = sret;
	}
	if (ret && !done) {
		/* Nothing mapped: back to inline, as it was. */
		r->i.flags |= RFS_INODE_INLDATA;
		r->i.subtree = 0;
		memcpy(r->tail, blk, len);
		r->taillen = len;
	}
	free(blk);
	return ret;
}

/* file_read_locked, with read_blocks_one's *one for whole-block reads. */
static int file_read_one(rfs_fs *fs, const struct rfs_irec *r, void *buf,
			 size_t size, uint64_t off, size_t *got, struct rfs_ext *one)
{
	*got = 0;
	if (off >= r->i.size || size == 0)
		return 0;
	if (size > r->i.size - off)
		size = (size_t)(r->i.size - off);
	if (r->i.flags & RFS_INODE_INLDATA) {
		int ret = inldata_check(r);
		if (!ret) {
			memcpy(buf, r->tail + off, size);
			*got = size;
		}
		return ret;
	}
	uint64_t b0 = off / BS, b1 = div_up(off + size, BS);
	struct emap t;
	int ret = emap_open(fs, r, &t);
	if (ret)
		return ret;
	if (off % BS == 0 && size % BS == 0) {
		ret = read_blocks_one(fs, &t, b0, b1 - b0, buf, one);
	} else {
		uint8_t *bounce = malloc((b1 - b0) * BS);
		if (!bounce) {
			emap_free(&t);
			return -ENOMEM;
		}
		ret = read_blocks_one(fs, &t, b0, b1 - b0, bounce, one);
		if (!ret)
			memcpy(buf, bounce + (off - b0 * BS), size);
		free(bounce);
	}
	emap_free(&t);
	if (!ret)
		*got = size;
	return ret;
}

int file_read_locked(rfs_fs *fs, const struct rfs_irec *r, void *buf,
		     size_t size, uint64_t off, size_t *got)
{
	return file_read_one(fs, r, buf, size, off, got, NULL);
}

/* A READ's data: from an extent copy of n when one maps the whole range
 * (rcache.c), else by the walk, keeping a copy of the extent that
 * mapped it. */
static int read_data(rfs_fs *fs, struct rfs_node *n, const struct rfs_irec *r,
		     void *buf, size_t size, uint64_t off, size_t *got)
{
	*got = 0;
	if (off >= r->i.size || size == 0)
		return 0;
	if (size > r->i.size - off)
		size = (size_t)(r->i.size - off);
	/* A file tree (an inline map is in the record), at most an
	 * extent's blocks.  A range that is not whole blocks is copied too,
	 * for the lock-free READ (rcache_read_nolock), which reads it
	 * through a bounce block; here it walks. */
	if (!r->i.subtree || (r->i.flags & RFS_INODE_INLDATA) ||
	    div_up(off + size, BS) - off / BS > RFS_EXTENT_MAX)
		return file_read_locked(fs, r, buf, size, off, got);
	uint64_t start;
	uint32_t csum[RFS_EXTENT_MAX];
	if (off % BS == 0 && size % BS == 0 && ecache_find(fs, n, off / BS, size / BS, &start, csum)) {
		int ret = rfs_data_read(fs->pool, start, buf, (uint32_t)(size / BS), csum);
		if (!ret)
			*got = size;
		return ret;
	}
	struct rfs_ext one;
	one.n = 0;
	int ret = file_read_one(fs, r, buf, size, off, got, &one);
	if (!ret && one.n)
		ecache_add(fs, n, &one);
	return ret;
}

void rfs_fs_set_data_hook(rfs_fs *fs, void (*fn)(void *arg), void *arg)
{
	fs->data_hook = fn;
	fs->data_arg = arg;
}

void rfs_fs_set_map_hook(rfs_fs *fs, void (*fn)(void *arg), void *arg)
{
	fs->map_hook = fn;
	fs->map_arg = arg;
}

/* Replace file blocks [pos, pos + n) with the contents of data (n whole
 * blocks), in new blocks.  *done receives the blocks written (maybe fewer
 * than n when the pool fills up).
 *
 * Three phases: allocate every block (write lock), copy the data into
 * them, then cut the old mapping and insert the new records (write lock).
 * With pause set -- nothing of the operation is changed yet, so every
 * tree is as readers may see it -- the copy runs with the write lock
 * paused (rfs_pool_write_pause): readers of other files, and of this one
 * (they see the old contents), go on meanwhile, while the writers' gate
 * keeps other writers and the commit out, so the blocks are still in the
 * running transaction when the records naming them go in. */
static int write_blocks(rfs_fs *fs, struct rfs_irec *r, struct emap *t, uint64_t pos,
			uint64_t n, const uint8_t *data, uint64_t *done, bool pause)
{
	struct run {
		uint64_t start, got;
	} *runs;
	struct rfs_ext *e;
	uint32_t *csum;
	size_t nruns = 0;
	uint64_t have = 0, removed;
	int ret = 0, wret = 0;
	*done = 0;
	/* One allocation: the runs (at most one per block), the checksums,
	 * the record being built. */
	void *mem = malloc(n * (sizeof(*runs) + sizeof(*csum)) + sizeof(*e));
	if (!mem)
		return -ENOMEM;
	e = mem;
	runs = (struct run *)(e + 1);
	csum = (uint32_t *)(runs + n);
	while (have < n) {
		uint64_t want = n - have, start, got;
		if (want > RFS_EXTENT_MAX)
			want = RFS_EXTENT_MAX;
		ret = alloc_data(fs, want, &start, &got);
		if (ret)
			break;
		runs[nruns].start = start;
		runs[nruns++].got = got;
		have += got;
	}
	if (pause)
		rfs_pool_write_pause(fs->pool);
	uint64_t wrote = 0;
	size_t ok = 0;
	for (; ok < nruns; ok++) {
		wret = rfs_data_write(fs->pool, runs[ok].start, data + wrote * BS,
				      (uint32_t)runs[ok].got, csum + wrote);
		if (wret)
			break;
		wrote += runs[ok].got;
	}
	if (fs->data_hook)
		fs->data_hook(fs->data_arg);
	if (pause)
		rfs_pool_write_resume(fs->pool);
	if (wret)
		ret = wret;
	for (size_t i = ok; i < nruns; i++)
		rfs_free_blocks(fs->pool, runs[i].start, runs[i].got);
	for (size_t i = 0; i < ok; i++) {
		uint64_t got = runs[i].got;
		e->lblk = pos + *done;
		e->start = runs[i].start;
		e->n = got;
		e->flags = 0;
		memcpy(e->csum, csum + *done, 4 * got);
		/* The punch and the insert are one change: the range's
		 * old blocks go only when its new ones come in. */
		uint64_t c0 = rfs_pool_changes(fs->pool);
		int mret = ext_punch(fs, t, e->lblk, got, &removed);
		if (mret && rfs_pool_changes(fs->pool) != c0)
			op_halfway(fs, mret);
		if (mret) {
			for (; i < ok; i++)
				rfs_free_blocks(fs->pool, runs[i].start, runs[i].got);
			ret = mret;
			break;
		}
		mret = ext_insert(fs, t, e);
		if (mret)
			op_halfway(fs, mret); /* after a punch */
		if (mret) {
			for (; i < ok; i++)
				rfs_free_blocks(fs->pool, runs[i].start, runs[i].got);
			r->i.blocks -= removed;
			ret = mret;
			break;
		}
		r->i.blocks += got - removed;
		*done += got;
	}
	free(mem);
	return ret;
}

int file_write_locked(rfs_fs *fs, struct rfs_irec *r, const void *buf,
		      size_t size, uint64_t off, size_t *done, bool pause)
{
	*done = 0;
	if (size == 0)
		return 0;
	if (off >= RFS_FILE_MAX || size > RFS_FILE_MAX - off)
		return -EFBIG;
	bool tail = r->i.flags & RFS_INODE_TAILCLONE;
	int ret = tail_fix(fs, r);
	if (ret)
		return ret;
	uint64_t end = off + size, b0 = off / BS, b1 = div_up(end, BS);
	if (inldata_fits(fs, r, end > r->i.size ? end : r->i.size)) {
		if (inldata(r) && (ret = inldata_check(r)) != 0)
			return ret;
		inldata_write(r, buf, size, off);
		*done = size;
		return 0;
	}
	if (inldata(r) && b0 == 0) {
		/* Growing past the limit from the first block: one write of the
		 * inline bytes and the new ones together. */
		if ((ret = inldata_check(r)) != 0)
			return ret;
		size_t len = end > r->taillen ? (size_t)end : r->taillen, got = 0;
		uint8_t *all = calloc(1, len);
		if (!all)
			return -ENOMEM;
		size_t have = r->taillen;
		memcpy(all, r->tail, have);
		memcpy(all + off, buf, size);
		r->i.flags &= ~(uint32_t)RFS_INODE_INLDATA;
		r->taillen = 0;
		ret = file_write_locked(fs, r, all, len, 0, &got, pause);
		if (got < have) {
			/* Nothing written (got is 0 or whole blocks, and have
			 * is less than one): still inline, as it was. */
			r->i.flags |= RFS_INODE_INLDATA;
			memcpy(r->tail, all, have);
			r->taillen = have;
		}
		free(all);
		*done = got > off ? (got - off < size ? got - off : size) : 0;
		return *done ? 0 : ret ? ret : -ENOSPC;
	}
	if (inldata(r)) {
		ret = inldata_spill(fs, r);
		if (ret)
			return ret;
		pause = false;
	}
	struct emap t;
	ret = emap_open(fs, r, &t);
	if (ret)
		return ret;
	const uint8_t *src = buf;
	/* Work in chunks of up to 1 MiB of blocks.  The bounce buffer is
	 * only needed for partial blocks, so whole-block writes (the common
	 * case) never allocate it. */
	uint64_t chunk_max = 256;
	uint8_t *chunk = NULL;
	uint64_t pos = b0;
	/* Nothing of the operation changed yet (unless tail_fix cut a
	 * hidden tail): the first chunk may copy its data with the write
	 * lock paused (write_blocks). */
	pause = pause && !tail;
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
		ret = write_blocks(fs, r, &t, pos, n, data, &wrote, pause);
		pause = false;
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
	int sret = emap_store(fs, &t, r, false);
	emap_free(&t);
	if (sret) {
		/* The extents of the bytes done are not stored: their
		 * blocks would be lost with a short write reported. */
		if (*done)
			op_halfway(fs, sret);
		return sret;
	}
	if (*done)
		return 0;
	return ret;
}

/* Zero bytes [from, to) inside one block that is within the file. */
int zero_partial(rfs_fs *fs, struct rfs_irec *r, struct emap *t, uint64_t from,
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
		ret = write_blocks(fs, r, t, b, 1, blk, &done, false);
	}
	free(blk);
	return ret;
}

int tail_fix(rfs_fs *fs, struct rfs_irec *r)
{
	if (!(r->i.flags & RFS_INODE_TAILCLONE))
		return 0;
	struct emap t;
	uint64_t size = r->i.size, nb = div_up(size, BS), removed = 0;
	int ret = emap_open(fs, r, &t);
	if (ret)
		return ret;
	if (size % BS)
		ret = zero_partial(fs, r, &t, size, (size / BS + 1) * BS);
	if (!ret)
		ret = ext_punch(fs, &t, nb, MAX_LBLK - nb, &removed);
	r->i.blocks -= removed;
	int sret = emap_store(fs, &t, r, true);
	emap_free(&t);
	if (!ret)
		ret = sret;
	if (!ret)
		r->i.flags &= ~(uint32_t)RFS_INODE_TAILCLONE;
	return ret;
}

/*
 * A file whose map, after a truncate, is inline (no file tree: no xattrs)
 * and whose size fits its record goes back to inline data: block 0's
 * first size bytes move into the tail and its extents are let go (the
 * block is freed, or only loses this file's reference when a clone or a
 * snapshot shares it).  Without it a file that once grew past the limit
 * kept a 4 KiB block for a few bytes for good.  The same operation
 * stores the record, so a crash leaves either form.  osize: the size
 * before the truncate (bytes past it read as zeros).
 */
static int inldata_return(rfs_fs *fs, struct rfs_irec *r, uint64_t size, uint64_t osize)
{
	if (!S_ISREG(r->i.mode) || size == 0 || size > RFS_INLDATA_MAX || !inline_data_ok(fs) ||
	    r->i.subtree || !r->i.blocks || !(r->i.flags & RFS_INODE_INLEXT) ||
	    (r->i.flags & RFS_INODE_TAILCLONE))
		return 0;
	/* Up to the punch nothing is changed: memory short or a block 0
	 * that cannot be read (its READs say so) keeps the block form.  An
	 * error would fail a truncate that has already changed the file,
	 * so the transaction would be discarded and the pool turn
	 * read-only, for what is only a saving of space. */
	uint8_t *blk = malloc(BS);
	if (!blk)
		return 0;
	struct emap t;
	uint64_t removed = 0;
	if (emap_open(fs, r, &t)) {
		free(blk);
		return 0;
	}
	if (read_blocks(fs, &t, 0, 1, blk)) {
		emap_free(&t);
		free(blk);
		return 0;
	}
	int ret = ext_punch(fs, &t, 0, MAX_LBLK, &removed);
	r->i.blocks -= removed;
	int sret = emap_store(fs, &t, r, false);
	emap_free(&t);
	if (!ret)
		ret = sret;
	/* Every extent went with the punch: an empty map, no tail. */
	if (!ret && (r->i.blocks || r->taillen || r->i.subtree))
		ret = -EUCLEAN;
	if (!ret) {
		if (size > osize)
			memset(blk + osize, 0, size - osize);
		memcpy(r->tail, blk, size);
		r->taillen = size;
		r->i.flags |= RFS_INODE_INLDATA;
	}
	free(blk);
	return ret;
}

int file_truncate_locked(rfs_fs *fs, struct rfs_irec *r, uint64_t size)
{
	uint64_t osize = r->i.size;
	int tret = tail_fix(fs, r);
	if (tret)
		return tret;
	if (inldata(r)) {
		if ((tret = inldata_check(r)) != 0)
			return tret;
		if (size <= RFS_INLDATA_MAX) {
			inldata_truncate(r, size);
			return 0;
		}
		if ((tret = inldata_spill(fs, r)) != 0)
			return tret;
	}
	struct emap t;
	int ret = emap_open(fs, r, &t);
	if (ret)
		return ret;
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
	int sret = emap_store(fs, &t, r, size < r->i.size);
	emap_free(&t);
	if (!ret)
		ret = sret;
	if (!ret)
		ret = inldata_return(fs, r, size, osize);
	if (!ret)
		r->i.size = size;
	return ret;
}

/* Preallocate unwritten extents over the holes of [b, e). */
static int prealloc(rfs_fs *fs, struct rfs_irec *r, struct emap *t, uint64_t b, uint64_t e)
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
	if (!ret)
		ret = inldata_spill(fs, r);
	if (ret)
		return ret;
	struct emap t;
	ret = emap_open(fs, r, &t);
	if (ret)
		return ret;
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
	int sret = emap_store(fs, &t, r, (mode & FALLOC_FL_PUNCH_HOLE) != 0);
	emap_free(&t);
	return ret ? ret : sret;
}

/* ---- public calls -------------------------------------------------------------- */

/* Is (as, an) later than (bs, bn)? */
static bool ts_after(int64_t as, uint32_t an, int64_t bs, uint32_t bn)
{
	return as > bs || (as == bs && an > bn);
}

static void maybe_touch_atime(rfs_fs *fs, struct rfs_node *n, const struct rfs_irec *r)
{
	/* relatime: update atime when it is not later than mtime or ctime,
	 * or a day old.  Whole timestamps: comparing seconds alone updated
	 * atime at every read in the same second as the last change (each
	 * update an operation under the write lock, stalling all readers). */
	int64_t now;
	uint32_t ns;
	now_ts(&now, &ns);
	const struct rfs_inode *i = &r->i;
	if (fs->rdonly || (ts_after(i->atime, i->atime_ns, i->mtime, i->mtime_ns) &&
			   ts_after(i->atime, i->atime_ns, i->ctime, i->ctime_ns) &&
			   now - i->atime < 86400))
		return;
	struct rfs_ipath p;
	struct rfs_op op = {0};
	/* It changes only n's record: other files' copies stay valid. */
	op_local(&op, n);
	/* Best effort: a full pool or a failed path load skips it, and so
	 * does a writer at work -- a read never waits for one; the next read
	 * tries again (atime is still not newer than mtime). */
	if (op_begin_try(fs, &op, "atime update", op_meta(op_depth(fs, n), 0), 0))
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
	struct rfs_node *n;
	/* With writes of this file queued (file_delay.c), the READ puts
	 * them over what the tree holds, from the index of queued writes;
	 * they stay queued (those queued while the index was off are
	 * mapped first, once: DM_UNINDEXED).  Not past the
	 * tree's size: a queued write may have grown the file, so the READ
	 * maps them first. */
	struct rfs_node *q = dm_queued(fs, id);
	int ret;
again:
	/* From the node's copies with no pool lock, when they answer and
	 * nothing changed the file meanwhile (rcache.c). */
	ret = rcache_read_nolock(fs, id, buf, size, off, q != NULL, &got, &n, &r);
	if (ret < 0)
		return ret;
	if (ret > 0) {
		maybe_touch_atime(fs, n, &r);
		return (ssize_t)got;
	}
	rfs_pool_rdlock(fs->pool);
	ret = rcache_read(fs, id, &n, &r);
	if (!ret && S_ISDIR(r.i.mode))
		ret = -EISDIR;
	else if (!ret && !S_ISREG(r.i.mode))
		ret = -EINVAL;
	if (!ret && q && dm_read_past(r.i.size, off, size)) {
		rfs_pool_unlock(fs->pool);
		dm_settle(fs, q);
		q = NULL;
		goto again;
	}
	if (!ret)
		ret = read_data(fs, n, &r, buf, size, off, &got);
	if (!ret && q && got)
		ret = dm_overlay(fs, q, buf, got, off, NULL);
	if (ret == DM_UNINDEXED) {
		/* Writes queued while no READ came: mapped once, and the
		 * index holds the file's next ones. */
		rfs_pool_unlock(fs->pool);
		dm_settle(fs, q);
		q = NULL;
		goto again;
	}
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
	/* Whole blocks: copied in before the operation, holding no lock. */
	int ret = file_write_claimed(fs, n, buf, size, off, &done);
	if (ret <= 0)
		return ret ? ret : (ssize_t)done;
	uint64_t b0 = off / BS, nb = div_up(off + size, BS) - b0;
	struct rfs_op op = {0};
	op_target(&op, n, RFS_PREMOD_WRITE);
	/* Changes only n's record and tree (rcache.c: other files' copies
	 * stay valid). */
	op_local(&op, n);
	do {
		/* The blocks written, an extent record per RFS_EXTENT_MAX
		 * blocks plus the pieces of split records.  When the pool has less, write
		 * what fits: a short write, as on any full filesystem. */
		uint64_t meta = op_meta(op_depth(fs, n), 4 + 2 * (unsigned)(nb / RFS_EXTENT_MAX));
		ret = op_begin_partial(fs, &op, "write", meta, nb);
		/* A write that may stay in the inode record (inline data)
		 * needs no data block: a data-full pool still takes it.  If
		 * the file cannot keep it inline, its block allocation
		 * fails as cleanly as this reservation did. */
		bool inl = false;
		if (ret == -ENOSPC && off + size <= RFS_INLDATA_MAX) {
			ret = op_begin(fs, &op, "write", meta, 0);
			inl = true;
		}
		if (ret)
			return ret;
		size_t len = size;
		if (!inl && op.data < nb)
			len = (size_t)((b0 + op.data) * BS - off);
		ret = write_op(fs, n, buf, len, off, &done);
	} while ((ret = op_end(&op, ret)) == OP_RETRY);
	/* An error with bytes done: the write stopped halfway through a
	 * change, and op_end discarded the transaction, those bytes too. */
	if (ret)
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
	if (fs->map_hook)
		fs->map_hook(fs->map_arg);
	if (!S_ISREG(r->i.mode)) {
		ret = S_ISDIR(r->i.mode) ? -EISDIR : -EINVAL;
	} else {
		ret = file_write_locked(fs, r, buf, size, off, done, true);
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
	fs_rdlock(fs);
	struct rfs_node *n = node_get(fs, id);
	int ret = n ? inode_read(fs, n, &r) : -ESTALE;
	if (ret)
		goto out;
	uint64_t size = r.i.size;
	if (off >= size) {
		ret = -ENXIO;
		goto out;
	}
	if (inldata(&r)) {
		/* All data, no hole before the end. */
		*out = whence == SEEK_DATA ? off : size;
		goto out;
	}
	struct emap t;
	ret = emap_open(fs, &r, &t);
	if (ret)
		goto out;
	uint64_t eb = div_up(size, BS), pos = off / BS;
	struct rfs_ext *ex = malloc(sizeof(*ex) * 16);
	if (!ex) {
		emap_free(&t);
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
	emap_free(&t);
out:
	rfs_pool_unlock(fs->pool);
	return ret;
}

ssize_t rfs_fs_inline_data(rfs_fs *fs, rfs_nodeid id, void *buf, size_t size)
{
	struct rfs_irec r;
	fs_rdlock(fs);
	struct rfs_node *n = node_get(fs, id);
	int ret = n ? inode_read(fs, n, &r) : -ESTALE;
	if (!ret && !inldata(&r))
		ret = -ENODATA;
	if (!ret)
		ret = inldata_check(&r);
	if (!ret && size > r.taillen)
		size = r.taillen;
	if (!ret)
		memcpy(buf, r.tail, size);
	rfs_pool_unlock(fs->pool);
	return ret ? ret : (ssize_t)size;
}

int rfs_fs_extents(rfs_fs *fs, rfs_nodeid id,
		   int (*fn)(void *arg, const struct rfs_extent_info *e), void *arg)
{
	struct rfs_irec r;
	struct rfs_ipath p;
	bool above_shared = false;
	fs_rdlock(fs);
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
	if (inldata(&r)) {
		/* As FIEMAP_EXTENT_DATA_INLINE: the bytes, in no block. */
		struct rfs_extent_info info = {.length = r.i.size, .inline_data = true};
		ret = inldata_check(&r);
		if (!ret)
			fn(arg, &info);
		goto out;
	}
	struct emap t;
	ret = emap_open(fs, &r, &t);
	if (ret)
		goto out;
	struct rfs_ext *ex = malloc(sizeof(*ex) * 16);
	if (!ex) {
		emap_free(&t);
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
			/* Inline: the record is the whole path, and above_shared
			 * covers the nodes above it. */
			if (!path_shared && (!t.inl || !t.x))
				ret = rfs_tree_path_shared(fs->pool, &t.t, key, kl, &path_shared);
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
	emap_free(&t);
out:
	rfs_pool_unlock(fs->pool);
	return ret;
}
