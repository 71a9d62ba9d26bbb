/*
 * Clones of files and file ranges (copy_file_range, `reflinkfs clone`).
 *
 * A whole-file clone is rfs_tree_clone of the source's file tree: one
 * refcount increment, whatever the number of extents.  A source whose
 * extent map is inline in its record (emap.c) has no tree: its few
 * extents are copied into the destination's map, one refcount increment
 * each.  The destination
 * keeps its own xattrs (they live in the same tree, so they are taken
 * out of the clone and put back, O(number of xattrs)).  A range clone
 * shares the source's extent records over the whole blocks of the range
 * (rfs_ref_inc on each piece) and copies partial head and tail blocks.
 * A tiny source whose data is in its record (RFS_INODE_INLDATA) has no
 * block to share: a whole-file clone copies the record's bytes (one
 * record, as for an inline extent map), a range is copied through
 * memory; a destination with inline data gets it into a block before
 * blocks are shared into it (inldata_spill).
 */
#include "fs/op.h"

#include <stdlib.h>

#define BS RFS_BLOCK_SIZE

/* D's data becomes S's inline extents (S has no file tree): each extent
 * gains a reference.  D's old data is released as for a tree clone (a
 * big tree in the background); D keeps its xattrs, in a new tree. */
static int clone_inline(rfs_fs *fs, const struct rfs_irec *s, struct rfs_irec *d)
{
	struct emap sm, dm;
	rfs_tree old = FS_TREE(d->i.subtree, RFS_OWNER_FILE), nt = FS_TREE(0, RFS_OWNER_FILE);
	struct rfs_xsave *save = NULL;
	int ret = xattr_save(fs, &old, &save);
	if (ret)
		return ret;
	ret = xattr_restore(fs, &nt, save);
	xattr_save_free(save);
	if (!ret)
		ret = rec_release(fs, d);
	if (ret) {
		rfs_tree_drop(fs->pool, &nt);
		return ret;
	}
	d->i.subtree = nt.root;
	d->i.flags &= ~(uint32_t)(RFS_INODE_INLEXT | RFS_INODE_INLDATA | RFS_INODE_TAILCLONE);
	d->taillen = 0;
	d->i.size = 0;
	d->i.blocks = 0;
	if (s->i.flags & RFS_INODE_INLDATA) {
		/* The bytes themselves: into d's record, or into a block when
		 * d keeps xattrs (a file tree). */
		size_t done = 0;
		ret = file_write_locked(fs, d, s->tail, s->taillen, 0, &done, false);
		if (!ret && done < s->taillen)
			ret = -ENOSPC;
		return ret;
	}
	ret = emap_open(fs, s, &sm);
	if (ret)
		return ret;
	ret = emap_open(fs, d, &dm);
	if (ret) {
		emap_free(&sm);
		return ret;
	}
	for (int i = 0; !ret && sm.x && i < sm.n; i++) {
		ret = rfs_ref_inc(fs->pool, sm.x[i].start, sm.x[i].n);
		if (!ret)
			ret = ext_insert(fs, &dm, &sm.x[i]);
	}
	int r2 = emap_store(fs, &dm, d, false);
	emap_free(&sm);
	emap_free(&dm);
	if (!ret)
		ret = r2;
	if (ret)
		return ret;
	d->i.size = s->i.size;
	d->i.blocks = s->i.blocks;
	return 0;
}

/* Make D's data an O(1) clone of S's (tree clone); D keeps its xattrs. */
static int clone_whole(rfs_fs *fs, const struct rfs_irec *s, struct rfs_irec *d)
{
	if (!s->i.subtree)
		return clone_inline(fs, s, d); /* inline extents or data */
	rfs_tree src = FS_TREE(s->i.subtree, RFS_OWNER_FILE), nt;
	rfs_tree old = FS_TREE(d->i.subtree, RFS_OWNER_FILE);
	struct rfs_xsave *save = NULL;
	int ret = xattr_save(fs, &old, &save);
	if (ret)
		return ret;
	ret = rfs_tree_clone(fs->pool, &src, &nt);
	if (ret)
		goto out;
	nt.owner = RFS_OWNER_FILE;
	ret = xattr_strip(fs, &nt);
	if (!ret)
		ret = xattr_restore(fs, &nt, save);
	if (ret) {
		rfs_tree_drop(fs->pool, &nt);
		goto out;
	}
	/* The destination's old data: released in the background when it
	 * is big (reclaim.c); its inline extents, if any, at once. */
	ret = rec_release(fs, d);
	d->i.subtree = nt.root;
	d->i.flags &= ~(uint32_t)(RFS_INODE_INLEXT | RFS_INODE_INLDATA);
	d->taillen = 0;
	d->i.size = s->i.size;
	d->i.blocks = s->i.blocks;
	/* A source with a hidden tail (RFS_INODE_TAILCLONE) hands the same
	 * tree, hidden tail included, to the destination: the flag goes with
	 * it, so that growing the destination cuts that tail first. */
	d->i.flags = (d->i.flags & ~(uint32_t)RFS_INODE_TAILCLONE) |
		     (s->i.flags & RFS_INODE_TAILCLONE);
out:
	xattr_save_free(save);
	return ret;
}

/* Copy bytes through memory (partial blocks, misaligned ranges). */
static int copy_bytes(rfs_fs *fs, const struct rfs_irec *s, struct rfs_irec *d,
		      uint64_t off_in, uint64_t off_out, uint64_t len)
{
	size_t chunk = 1u << 20;
	uint8_t *buf = malloc(chunk);
	int ret = 0;
	if (!buf)
		return -ENOMEM;
	while (len && !ret) {
		size_t n = len < chunk ? (size_t)len : chunk, got, done;
		ret = file_read_locked(fs, s == d ? d : s, buf, n, off_in, &got);
		if (ret)
			break;
		if (got < n)
			memset(buf + got, 0, n - got);
		ret = file_write_locked(fs, d, buf, n, off_out, &done, false);
		if (!ret && done < n)
			ret = -ENOSPC;
		off_in += n;
		off_out += n;
		len -= n;
	}
	free(buf);
	return ret;
}

/* Share source blocks [sb, sb + nb) at destination block db. */
static int share_blocks(rfs_fs *fs, const struct rfs_irec *s, struct rfs_irec *d,
			uint64_t sb, uint64_t db, uint64_t nb)
{
	struct emap dt, sm;
	uint64_t removed = 0;
	bool same = s == d;
	int ret = emap_open(fs, d, &dt);
	if (ret)
		return ret;
	if (!same && (ret = emap_open(fs, s, &sm)) != 0) {
		emap_free(&dt);
		return ret;
	}
	ret = ext_punch(fs, &dt, db, nb, &removed);
	d->i.blocks -= removed;
	struct rfs_ext *ex = ret ? NULL : malloc(sizeof(*ex) * 16);
	if (!ret && !ex)
		ret = -ENOMEM;
	uint64_t pos = sb, end = sb + nb;
	while (!ret && pos < end) {
		/* The same file: read the live map (it moves as we insert). */
		int cnt = ext_collect(fs, same ? &dt : &sm, pos, end, ex, 16);
		if (cnt <= 0) {
			ret = cnt;
			break;
		}
		for (int i = 0; i < cnt && !ret; i++) {
			struct rfs_ext *x = &ex[i];
			uint64_t lo = x->lblk > pos ? x->lblk : pos;
			uint64_t hi = x->lblk + x->n < end ? x->lblk + x->n : end;
			struct rfs_ext piece = *x;
			uint64_t from = lo - x->lblk;
			piece.lblk = db + (lo - sb);
			piece.start = x->start + from;
			piece.n = hi - lo;
			if (!(x->flags & RFS_EXT_UNWRITTEN))
				memmove(piece.csum, x->csum + from, 4 * piece.n);
			ret = rfs_ref_inc(fs->pool, piece.start, piece.n);
			if (ret)
				break;
			ret = ext_insert(fs, &dt, &piece);
			if (ret) {
				rfs_ref_dec(fs->pool, piece.start, piece.n);
				break;
			}
			d->i.blocks += piece.n;
			pos = hi;
		}
	}
	free(ex);
	int r2 = emap_store(fs, &dt, d, false);
	emap_free(&dt);
	if (!same)
		emap_free(&sm);
	return ret ? ret : r2;
}

/* True when src has no extent in file blocks [b, e). */
static int no_extents(rfs_fs *fs, const struct rfs_irec *s, uint64_t b, uint64_t e)
{
	struct rfs_ext x;
	rfs_tree t = FS_TREE(s->i.subtree, RFS_OWNER_FILE);
	int cnt = tree_ext_collect(fs, &t, b, e, &x, 1);
	return cnt < 0 ? cnt : cnt == 0;
}

static int clone_range_locked(rfs_fs *fs, struct rfs_irec *s, struct rfs_irec *d,
			      bool same, uint64_t off_in, uint64_t off_out, uint64_t len)
{
	uint64_t ssize = s->i.size;
	int ret;
	/* O(1): the whole source onto an empty or shorter destination. */
	if (!same && off_in == 0 && off_out == 0 && len == ssize && d->i.size <= len)
		return clone_whole(fs, s, d);
	/* Inline data: no block to share, a few hundred bytes to copy. */
	if (s->i.flags & RFS_INODE_INLDATA) {
		ret = tail_fix(fs, d);
		return ret ? ret : copy_bytes(fs, s, d, off_in, off_out, len);
	}
	/*
	 * `cp` of a file over 4 GiB (the kernel caps each call at 4 GiB) or of
	 * a sparse file (one call per data region) arrives as several calls
	 * at equal offsets.  The first one, onto an empty file, clones the
	 * whole tree and keeps the extents past the new size hidden
	 * (RFS_INODE_TAILCLONE).  While neither tree changed, both have the
	 * same root block, so every later call only moves the size: O(1),
	 * plus one extent lookup to check that a skipped gap is a hole in the
	 * source too.
	 */
	if (!same && off_in == off_out && s->i.subtree) {
		if (d->i.size == 0 && d->i.blocks == 0 && !d->i.subtree &&
		    !(d->i.flags & RFS_INODE_INLEXT)) {
			ret = no_extents(fs, s, 0, div_up(off_in, BS));
			if (ret < 0)
				return ret;
			if (ret) {
				uint64_t end = off_in + len;
				ret = clone_whole(fs, s, d);
				if (ret)
					return ret;
				if (end < ssize) {
					d->i.size = end;
					d->i.flags |= RFS_INODE_TAILCLONE;
				}
				return 0;
			}
		} else if ((d->i.flags & RFS_INODE_TAILCLONE) && d->i.subtree == s->i.subtree) {
			ret = off_in <= d->i.size ? 1
						  : no_extents(fs, s, d->i.size / BS, div_up(off_in, BS));
			if (ret < 0)
				return ret;
			if (ret) {
				uint64_t end = off_in + len;
				if (end > d->i.size)
					d->i.size = end;
				if (d->i.size >= ssize &&
				    !(s->i.flags & RFS_INODE_TAILCLONE))
					d->i.flags &= ~(uint32_t)RFS_INODE_TAILCLONE;
				return 0;
			}
		}
	}
	ret = tail_fix(fs, d);
	if (ret)
		return ret;
	if ((off_in % BS) != (off_out % BS))
		return copy_bytes(fs, same ? d : s, d, off_in, off_out, len);
	uint64_t head = (BS - off_in % BS) % BS;
	if (head > len)
		head = len;
	if (head) {
		ret = copy_bytes(fs, same ? d : s, d, off_in, off_out, head);
		if (ret)
			return ret;
	}
	uint64_t rest = len - head, nb = rest / BS, tail = rest % BS;
	/* A partial last block at the source's EOF can be shared when the
	 * destination ends there too (the bytes past EOF are zeros) -- not
	 * when the source hides a tail past its EOF (RFS_INODE_TAILCLONE):
	 * those bytes are not zeros. */
	if (tail && off_in + len == ssize && off_out + len >= d->i.size &&
	    !((same ? d : s)->i.flags & RFS_INODE_TAILCLONE)) {
		nb++;
		tail = 0;
	}
	if (nb) {
		ret = inldata_spill(fs, d);
		if (!ret)
			ret = share_blocks(fs, same ? d : s, d, (off_in + head) / BS,
					   (off_out + head) / BS, nb);
		if (ret)
			return ret;
	}
	if (tail) {
		uint64_t o = head + (rest - tail);
		ret = copy_bytes(fs, same ? d : s, d, off_in + o, off_out + o, tail);
		if (ret)
			return ret;
	}
	if (off_out + len > d->i.size)
		d->i.size = off_out + len;
	return 0;
}

static int clone_range_op(rfs_fs *fs, struct rfs_node *sn, uint64_t off_in,
			  struct rfs_node *dn, uint64_t off_out, uint64_t *lenp);

ssize_t rfs_fs_clone_range(rfs_fs *fs, rfs_nodeid src, uint64_t off_in,
			   rfs_nodeid dst, uint64_t off_out, uint64_t len)
{
	struct rfs_node *sn = node_get(fs, src), *dn = node_get(fs, dst);
	if (!sn || !dn)
		return -ESTALE;
	/* Shared whole blocks cost extent records and refcount records,
	 * never data; the partial head and tail blocks are copied.  A
	 * range of many extents is shared in O(1) by cloning subtrees
	 * (clone.c): the records touched are bounded by the tree height. */
	uint64_t nb = div_up(len, BS);
	uint64_t data = off_in % BS != off_out % BS ? nb + 2 : 3;
	/* Records to split or insert are not known before the extents are
	 * read; a range of many extents may still run out midway, which
	 * ends the call cleanly with -ENOSPC (and a retry after a commit). */
	uint64_t recs = nb / RFS_EXTENT_MAX;
	unsigned items = 24 + 2 * (unsigned)(recs < 64 ? recs : 64);
	struct rfs_op op = {0};
	op_target(&op, dn, RFS_PREMOD_CLONE);
	int ret;
	do {
		ret = op_begin(fs, &op, "clone", op_meta(op_depth(fs, dn), items), data);
		if (ret)
			return ret;
		ret = clone_range_op(fs, sn, off_in, dn, off_out, &len);
		if (!ret && len)
			op_rec_node(fs, RFS_CHANGE_DATA, dn, off_out, len);
	} while ((ret = op_end(&op, ret)) == OP_RETRY);
	return ret ? ret : (ssize_t)len;
}

/* 0 for a regular file's mode; else what a clone of or into it answers:
 * -EISDIR for a directory, -EINVAL for anything else. */
static int reg_only(uint32_t mode)
{
	return S_ISREG(mode) ? 0 : S_ISDIR(mode) ? -EISDIR : -EINVAL;
}

static int clone_range_op(rfs_fs *fs, struct rfs_node *sn, uint64_t off_in,
			  struct rfs_node *dn, uint64_t off_out, uint64_t *lenp)
{
	struct rfs_irec s;
	struct rfs_ipath p;
	uint64_t len = *lenp;
	int ret = inode_read(fs, sn, &s);
	if (ret)
		goto out;
	ret = reg_only(s.i.mode);
	if (ret)
		goto out;
	if (off_in >= s.i.size || len == 0) {
		len = 0;
		ret = 0;
		goto out;
	}
	if (len > s.i.size - off_in)
		len = s.i.size - off_in;
	if (off_out >= RFS_FILE_MAX || len > RFS_FILE_MAX - off_out) {
		ret = -EFBIG;
		goto out;
	}
	bool same = sn == dn;
	if (same && off_in < off_out + len && off_out < off_in + len) {
		ret = -EINVAL;
		goto out;
	}
	ret = ip_load(fs, dn, true, &p);
	if (ret)
		goto out;
	struct rfs_irec *d = ip_rec(&p);
	ret = reg_only(d->i.mode);
	if (!ret) {
		ret = clone_range_locked(fs, same ? d : &s, d, same, off_in, off_out, len);
		touch_mc(&d->i);
	}
	ret = ip_done(fs, &p, 0, ret);
out:
	*lenp = len;
	return ret;
}

static int clone_file_op(rfs_fs *fs, struct rfs_node *sn, struct rfs_node *dn);

int rfs_fs_clone_file(rfs_fs *fs, rfs_nodeid src, rfs_nodeid dst)
{
	struct rfs_node *sn = node_get(fs, src), *dn = node_get(fs, dst);
	if (!sn || !dn)
		return -ESTALE;
	struct rfs_op op = {0};
	op_target(&op, dn, RFS_PREMOD_CLONE);
	int ret;
	do {
		/* one clone of the source's file tree, dst's old tree dropped */
		ret = op_begin(fs, &op, "clone", op_meta(op_depth(fs, dn), 8), 1);
		if (ret)
			return ret;
		ret = clone_file_op(fs, sn, dn);
		struct rfs_irec r;
		if (!ret && fs->jnl && inode_read(fs, dn, &r) == 0)
			op_rec_node(fs, RFS_CHANGE_DATA, dn, 0, r.i.size);
	} while ((ret = op_end(&op, ret)) == OP_RETRY);
	return ret;
}

static int clone_file_op(rfs_fs *fs, struct rfs_node *sn, struct rfs_node *dn)
{
	struct rfs_irec s;
	struct rfs_ipath p;
	int ret = inode_read(fs, sn, &s);
	if (ret)
		goto out;
	ret = reg_only(s.i.mode);
	if (ret)
		goto out;
	if (sn == dn)
		goto out;
	ret = ip_load(fs, dn, true, &p);
	if (ret)
		goto out;
	struct rfs_irec *d = ip_rec(&p);
	ret = reg_only(d->i.mode);
	if (!ret) {
		ret = clone_whole(fs, &s, d);
		touch_mc(&d->i);
	}
	ret = ip_done(fs, &p, 0, ret);
out:
	return ret;
}
