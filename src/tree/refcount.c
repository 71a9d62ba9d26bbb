/*
 * Block refcounts (lazy, as in Rodeh): an allocated block has count 1
 * unless the refcount tree records more.  The refcount tree maps
 * big-endian u64 start block -> {u64 nblocks, u64 count} for disjoint
 * ranges whose count is >= 2.  Its own nodes are never shared, so updating
 * it never needs refcounts itself (no recursion).
 */
#include <errno.h>
#include <stdlib.h>

#include "reflinkfs/log.h"
#include "tree/tree_internal.h"
#include "util/lockcheck.h"

struct rc_rec {
	uint64_t len;
	uint64_t count;
};

struct rc_range {
	uint64_t start, len, count;
};

static rfs_tree rc_tree(rfs_pool *pool)
{
	rfs_tree t = { rfs_pool_root(pool, RFS_ROOT_REFCOUNT), RFS_OWNER_REFCOUNT };
	return t;
}

static int cur_range(struct rfs_cursor *c, struct rc_range *r)
{
	const void *k, *v;
	size_t kl, vl;
	int ret = rfs_cursor_get(c, &k, &kl, &v, &vl, NULL);

	if (ret)
		return ret;
	if (kl != 8 || vl != sizeof(struct rc_rec))
		return -EUCLEAN;
	struct rc_rec rec;
	memcpy(&rec, v, sizeof(rec));
	r->start = be64_get(k);
	r->len = rec.len;
	r->count = rec.count;
	return 0;
}

int rfs_ref_get(rfs_pool *pool, uint64_t blocknr, uint64_t *count)
{
	RFS_ASSERT_LOCK(rfs_pool_holds_lock(pool));
	struct rfs_cursor c;
	struct rc_range r;
	uint8_t key[8];
	int ret;

	*count = 1;
	if (!rfs_pool_root(pool, RFS_ROOT_REFCOUNT))
		return 0;
	be64_put(key, blocknr);
	tree_cursor_init(&c, pool, rfs_pool_root(pool, RFS_ROOT_REFCOUNT));
	ret = rfs_cursor_seek(&c, key, 8, -1);
	if (ret == 0) {
		ret = cur_range(&c, &r);
		if (!ret && r.start <= blocknr && blocknr - r.start < r.len)
			*count = r.count;
	} else if (ret == -ENOENT) {
		ret = 0;
	}
	tree_cursor_fini(&c);
	return ret;
}

int rfs_ref_get_run(rfs_pool *pool, uint64_t start, uint64_t max, uint64_t *count,
		    uint64_t *run)
{
	struct rfs_cursor c;
	struct rc_range r;
	uint8_t key[8];
	int ret;

	*count = 1;
	*run = max ? max : 1;
	if (!rfs_pool_root(pool, RFS_ROOT_REFCOUNT) || !max)
		return 0;
	be64_put(key, start);
	tree_cursor_init(&c, pool, rfs_pool_root(pool, RFS_ROOT_REFCOUNT));
	/* The last record starting at or before start covers it, or the
	 * next one bounds the run of count 1. */
	ret = rfs_cursor_seek(&c, key, 8, -1);
	if (ret == 0) {
		ret = cur_range(&c, &r);
		if (!ret && r.start <= start && start - r.start < r.len) {
			*count = r.count;
			if (r.len - (start - r.start) < max)
				*run = r.len - (start - r.start);
			goto out;
		}
		if (!ret)
			ret = rfs_cursor_step(&c, +1);
	} else if (ret == -ENOENT) {
		ret = rfs_cursor_seek(&c, NULL, 0, +1);
	}
	if (ret == 0) {
		ret = cur_range(&c, &r);
		if (!ret && r.start > start && r.start - start < max)
			*run = r.start - start;
	}
out:
	tree_cursor_fini(&c);
	return ret == -ENOENT ? 0 : ret;
}

/* Records overlapping [start, end), in order. */
static int collect(rfs_pool *pool, uint64_t start, uint64_t end,
		   struct rc_range **out, size_t *n)
{
	struct rfs_cursor c;
	struct rc_range r, *v = NULL;
	size_t cnt = 0, cap = 0;
	uint8_t key[8];
	int ret;

	*out = NULL;
	*n = 0;
	if (!rfs_pool_root(pool, RFS_ROOT_REFCOUNT))
		return 0;
	tree_cursor_init(&c, pool, rfs_pool_root(pool, RFS_ROOT_REFCOUNT));
	be64_put(key, start);
	/* Start at the last record beginning at or before start: it may
	 * cover start. */
	ret = rfs_cursor_seek(&c, key, 8, -1);
	if (ret == -ENOENT)
		ret = rfs_cursor_seek(&c, NULL, 0, +1);
	while (ret == 0) {
		ret = cur_range(&c, &r);
		if (ret)
			break;
		if (r.start >= end)
			break;
		if (r.start + r.len > start) {
			if (cnt == cap) {
				cap = cap ? cap * 2 : 8;
				struct rc_range *nv = realloc(v, cap * sizeof(*v));
				if (!nv) {
					ret = -ENOMEM;
					break;
				}
				v = nv;
			}
			v[cnt++] = r;
		}
		ret = rfs_cursor_step(&c, +1);
	}
	tree_cursor_fini(&c);
	if (ret && ret != -ENOENT) {
		free(v);
		return ret;
	}
	*out = v;
	*n = cnt;
	return 0;
}

static int put_piece(rfs_pool *pool, rfs_tree *t, uint64_t start,
		     uint64_t len, uint64_t count)
{
	uint8_t key[8];
	struct rc_rec rec = { len, count };

	if (!len || count == 1)
		return 0;
	if (count == 0)
		return rfs_free_blocks(pool, start, len);
	be64_put(key, start);
	return rfs_tree_put(pool, t, key, 8, &rec, sizeof(rec), 0, RFS_PUT_INSERT);
}

/* Add delta (+1 or -1) to the count of every block of [start, start+n). */
static int ref_modify(rfs_pool *pool, uint64_t start, uint64_t n, int delta)
{
	struct rc_range *v;
	size_t cnt;
	uint64_t end = start + n, pos = start;
	rfs_tree t = rc_tree(pool);
	int ret;

	if (!n)
		return 0;
	ret = rfs_pool_check_writable(pool);
	if (ret)
		return ret;
	if (!start || end < start) {
		rfs_log(RFS_LOG_ERR, "refcount: bad block range %llu+%llu",
			(unsigned long long)start, (unsigned long long)n);
		return -EUCLEAN;
	}
	ret = collect(pool, start, end, &v, &cnt);
	if (ret)
		return ret;
	for (size_t i = 0; i < cnt && !ret; i++) {
		uint8_t key[8];
		be64_put(key, v[i].start);
		ret = rfs_tree_delete(pool, &t, key, 8, 0);
	}
	for (size_t i = 0; i < cnt && !ret; i++) {
		struct rc_range *r = &v[i];
		uint64_t rend = r->start + r->len;
		uint64_t ostart = r->start > start ? r->start : start;
		uint64_t oend = rend < end ? rend : end;

		if (r->start < start)
			ret = put_piece(pool, &t, r->start, start - r->start, r->count);
		if (!ret && ostart > pos)
			ret = put_piece(pool, &t, pos, ostart - pos, (uint64_t)(1 + delta));
		if (!ret)
			ret = put_piece(pool, &t, ostart, oend - ostart,
					(uint64_t)((int64_t)r->count + delta));
		pos = oend;
		if (!ret && rend > end)
			ret = put_piece(pool, &t, end, rend - end, r->count);
	}
	if (!ret && pos < end)
		ret = put_piece(pool, &t, pos, end - pos, (uint64_t)(1 + delta));
	free(v);
	rfs_pool_set_root(pool, RFS_ROOT_REFCOUNT, t.root);
	return ret;
}

int rfs_ref_inc(rfs_pool *pool, uint64_t start, uint64_t n)
{
	RFS_ASSERT_LOCK(rfs_pool_holds_wrlock(pool));
	return ref_modify(pool, start, n, +1);
}

int rfs_ref_dec(rfs_pool *pool, uint64_t start, uint64_t n)
{
	RFS_ASSERT_LOCK(rfs_pool_holds_wrlock(pool));
	return ref_modify(pool, start, n, -1);
}
