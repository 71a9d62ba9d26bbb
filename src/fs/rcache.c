/*
 * READ's copy of an inode record, kept in the inode's node (issue 9).
 *
 * A READ needs the file's record (size, mode, flags, the root of its
 * extent tree or its inline map).  Finding it walks from the volume's
 * root through every directory on the file's path (ip_load: nlock to copy
 * the path, a catalog lookup, a tree search per level with a cache-shard
 * mutex per block, a heap-allocated path): about a fifth of the daemon's
 * own CPU per 4 KiB random read.  Nothing in the record changes unless
 * some operation takes the pool's write lock, and every such acquisition
 * bumps a generation: the file's own (n->fgen) for an operation declared
 * to change nothing but that file (op_local: a data write, an atime
 * update), the pool's (rfs_pool_change_gen) for every other one.  So the
 * node keeps a copy of the record stamped with both generations as they
 * were when it was made, and a READ that finds both the same uses the
 * copy.  Every other change -- truncate, clone onto the file, snapshot
 * restore, rename over it, unlink -- bumps the pool's generation (a
 * commit changes nothing a copy holds and bumps neither), so no path can forget to invalidate the copy (only paths
 * declared local skip it); the price is that such a change of any file
 * invalidates every copy (a READ after it walks once more), while a data
 * write of another file leaves them valid.
 *
 * The copies are protected by the node's clock (a reader/writer lock):
 * READs that use them share it, those that refresh them take it alone.
 * A hit costs a node lookup and a read acquisition of clock instead of
 * the walk.  A READ the copies answer
 * takes no pool lock at all (rcache_read_nolock, "READ with no pool
 * lock" below), so it never waits for a writer of another file.
 */
#include "fs/fs_internal.h"

#include <stdlib.h>
#include <string.h>

struct rfs_rcache {
	uint64_t gen;  /* rfs_pool_change_gen when copied */
	uint64_t fgen; /* the node's fgen then */
	size_t cap;   /* bytes tail[] holds */
	struct rfs_inode i;
	size_t taillen;
	char tail[];
};

static void copy_out(const struct rfs_rcache *c, struct rfs_irec *r)
{
	r->i = c->i;
	r->taillen = c->taillen;
	memcpy(r->tail, c->tail, c->taillen);
}

static void copy_in(struct rfs_rcache *c, uint64_t gen, uint64_t fgen,
		    const struct rfs_irec *r)
{
	c->gen = gen;
	c->fgen = fgen;
	c->i = r->i;
	c->taillen = r->taillen;
	memcpy(c->tail, r->tail, r->taillen);
}

/* Take n's clock to read the copies; a wait (a READ refreshing them)
 * counts as one for the node table (rfs_pool_lockw_*). */
static void clock_rd(struct rfs_node *n)
{
	if (pthread_rwlock_tryrdlock(&n->clock)) {
		uint64_t t0 = rfs_pool_lockw_now();
		pthread_rwlock_rdlock(&n->clock);
		rfs_pool_lockw_add(RFS_LOCKW_NODES, rfs_pool_lockw_now() - t0);
	}
}

int rcache_read(rfs_fs *fs, rfs_nodeid id, struct rfs_node **np, struct rfs_irec *r)
{
	RFS_ASSERT_LOCK(rfs_pool_holds_lock(fs->pool));
	/* Fixed while this thread holds the lock. */
	uint64_t gen = rfs_pool_change_gen(fs->pool);
	node_lock(fs);
	struct rfs_node *n = node_get_locked(fs, id);
	*np = n;
	if (!n) {
		node_unlock(fs);
		return -ESTALE;
	}
	bool dead = n->dead;
	node_unlock(fs);
	/* Fixed too: only write-lock holders bump it. */
	uint64_t fgen = atomic_load(&n->fgen);
	clock_rd(n);
	struct rfs_rcache *c = n->rc;
	if (c && c->gen == gen && c->fgen == fgen && !dead) {
		copy_out(c, r);
		pthread_rwlock_unlock(&n->clock);
		rfs_pcount_add(&fs->rc_hits, 1);
		return 0;
	}
	size_t cap = c ? c->cap : 0;
	pthread_rwlock_unlock(&n->clock);
	rfs_pcount_add(&fs->rc_misses, 1);
	int ret = inode_read(fs, n, r);
	if (ret)
		return ret;
	/* Memory outside nlock; without it the READ goes on uncached. */
	struct rfs_rcache *nc = NULL;
	if (r->taillen > cap || !c) {
		nc = malloc(sizeof(*nc) + r->taillen);
		if (!nc)
			return 0;
		nc->cap = r->taillen;
	}
	pthread_rwlock_wrlock(&n->clock);
	struct rfs_rcache *old = NULL;
	/* Another READ may have replaced the copy meanwhile: the newest
	 * allocation wins, any of them holds a record of this generation. */
	if (nc) {
		old = n->rc;
		n->rc = nc;
	}
	c = n->rc;
	if (c->cap >= r->taillen)
		copy_in(c, gen, fgen, r);
	else
		c->gen = gen - 1; /* too small for this record: not valid */
	pthread_rwlock_unlock(&n->clock);
	free(old);
	return 0;
}

void rcache_free(struct rfs_node *n)
{
	free(n->rc);
	n->rc = NULL;
}

void rfs_fs_rcache_stats(rfs_fs *fs, uint64_t *hits, uint64_t *misses)
{
	*hits = rfs_pcount_get(&fs->rc_hits);
	*misses = rfs_pcount_get(&fs->rc_misses);
}

/* ---- extents ----------------------------------------------------------- */

/*
 * With the record copied, the rest of a 4 KiB READ's own work is the
 * walk of the file's extent tree (a cache-shard lookup and a node search
 * per level, the extent's decoding): about 60 % of the daemon's time in
 * its own code.  The node keeps the extents its READs found, sorted by
 * file block, for one change generation as the record: a READ of blocks
 * that one of them maps in full (whole blocks or not) takes the pool
 * block and the checksums from it.  Only extents of a file tree (an inline map is in the record
 * already), only written ones, and at most fs->ec_budget entries over
 * all nodes (each holds an extent's 128 checksums: 536 bytes), so that
 * reading many large files costs bounded memory; past it a READ walks.
 */

struct ecent {
	uint64_t start; /* pool block of the extent's first block */
	uint64_t n;     /* blocks */
	uint32_t csum[RFS_EXTENT_MAX];
};

/* Entries of one node's copies at most: their slot fits a key's low
 * bits. */
#define EC_SLOT_BITS 13u
#define EC_NODE_MAX (1u << EC_SLOT_BITS)

struct rfs_ecache {
	uint64_t gen;    /* rfs_pool_change_gen the copies are of */
	uint64_t fgen;   /* and the node's fgen */
	uint32_t n, cap; /* entries used, allocated */
	/* Each entry's file block above EC_SLOT_BITS and its slot in x
	 * below, ascending: an insertion moves 8 bytes per later entry,
	 * not an entry's 536 (a 2 MiB memmove per READ of a file of
	 * thousands of small extents, once its copies outlived a
	 * batch of delayed writes). */
	uint64_t *key;
	struct ecent *x; /* in the order they were added */
};

static uint64_t ec_lblk(const struct rfs_ecache *c, uint32_t i)
{
	return c->key[i] >> EC_SLOT_BITS;
}

static const struct ecent *ec_ent(const struct rfs_ecache *c, uint32_t i)
{
	return &c->x[c->key[i] & (EC_NODE_MAX - 1)];
}

/* Index of the first entry whose file block is above b. */
static uint32_t upper(const struct rfs_ecache *c, uint64_t b)
{
	uint32_t lo = 0, hi = c->n;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (ec_lblk(c, mid) <= b)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

bool ecache_find(rfs_fs *fs, struct rfs_node *n, uint64_t b, uint64_t nb,
		 uint64_t *start, uint32_t *csum)
{
	RFS_ASSERT_LOCK(rfs_pool_holds_lock(fs->pool));
	uint64_t gen = rfs_pool_change_gen(fs->pool), fgen = atomic_load(&n->fgen);
	bool hit = false;
	/* A node's death is a change of the pool's generation. */
	clock_rd(n);
	struct rfs_ecache *c = n->ec;
	if (c && c->gen == gen && c->fgen == fgen) {
		uint32_t i = upper(c, b);
		if (i > 0) {
			const struct ecent *e = ec_ent(c, i - 1);
			uint64_t from = b - ec_lblk(c, i - 1);
			if (from + nb <= e->n) {
				*start = e->start + from;
				memcpy(csum, e->csum + from, 4 * nb);
				hit = true;
			}
		}
	}
	pthread_rwlock_unlock(&n->clock);
	rfs_pcount_add(hit ? &fs->ec_hits : &fs->ec_misses, 1);
	return hit;
}

/* Room for one more entry in c (nlock and the node's clock held): false
 * past the budget or out of memory. */
static bool ec_room(rfs_fs *fs, struct rfs_ecache *c)
{
	if (c->n < c->cap)
		return true;
	uint32_t ncap = c->cap ? 2 * c->cap : 16;
	if (ncap > EC_NODE_MAX || fs->ec_alloc + (ncap - c->cap) > fs->ec_budget)
		return false;
	uint64_t *l = realloc(c->key, sizeof(*l) * ncap);
	if (!l)
		return false;
	c->key = l;
	struct ecent *x = realloc(c->x, sizeof(*x) * ncap);
	if (!x)
		return false;
	c->x = x;
	fs->ec_alloc += ncap - c->cap;
	c->cap = ncap;
	return true;
}

void ecache_add(rfs_fs *fs, struct rfs_node *n, const struct rfs_ext *x)
{
	RFS_ASSERT_LOCK(rfs_pool_holds_lock(fs->pool));
	if ((x->flags & RFS_EXT_UNWRITTEN) || !x->n || x->n > RFS_EXTENT_MAX)
		return;
	uint64_t gen = rfs_pool_change_gen(fs->pool), fgen = atomic_load(&n->fgen);
	/* nlock for the budget (fs->ec_alloc), then clock for the copies. */
	node_lock(fs);
	pthread_rwlock_wrlock(&n->clock);
	struct rfs_ecache *c = n->ec;
	if (!c && !n->dead && (c = calloc(1, sizeof(*c))) != NULL)
		n->ec = c;
	if (!c || n->dead)
		goto out;
	if (c->gen != gen || c->fgen != fgen) {
		/* Copies of another generation: none may be used. */
		c->n = 0;
		c->gen = gen;
		c->fgen = fgen;
	}
	uint32_t i = upper(c, x->lblk);
	/* Extents of one generation do not overlap: the one starting at
	 * x->lblk is x. */
	if ((i > 0 && ec_lblk(c, i - 1) == x->lblk) || !ec_room(fs, c))
		goto out;
	memmove(c->key + i + 1, c->key + i, sizeof(*c->key) * (c->n - i));
	c->key[i] = x->lblk << EC_SLOT_BITS | c->n;
	c->x[c->n].start = x->start;
	c->x[c->n].n = x->n;
	memcpy(c->x[c->n].csum, x->csum, 4 * x->n);
	c->n++;
out:
	pthread_rwlock_unlock(&n->clock);
	node_unlock(fs);
}

void ecache_free(rfs_fs *fs, struct rfs_node *n)
{
	struct rfs_ecache *c = n->ec;
	if (!c)
		return;
	fs->ec_alloc -= c->cap;
	free(c->key);
	free(c->x);
	free(c);
	n->ec = NULL;
}

void rfs_fs_set_ecache_budget(rfs_fs *fs, size_t entries)
{
	node_lock(fs);
	fs->ec_budget = entries;
	node_unlock(fs);
}

void rfs_fs_ecache_stats(rfs_fs *fs, uint64_t *hits, uint64_t *misses, size_t *alloc)
{
	*hits = rfs_pcount_get(&fs->ec_hits);
	*misses = rfs_pcount_get(&fs->ec_misses);
	node_lock(fs);
	*alloc = fs->ec_alloc;
	node_unlock(fs);
}

/* ---- READ with no pool lock --------------------------------------------- */

/*
 * A READ whose range the node's copies answer reads with no pool lock
 * at all: inline data from the record copy; a file whose extent map is
 * in the record (inline, or none: no file tree), whose copy holds every
 * extent and so proves the holes (zeros, as are unwritten extents); and
 * a range of a file tree one extent copy maps in full.  A range that is
 * not whole blocks reads its first and last block whole into a bounce
 * block on the stack, checks them, and copies the part out.  What still
 * takes the lock: a range of a file tree no single extent copy maps
 * (a hole -- the copies cannot prove one -- two extents, more than
 * RFS_EXTENT_MAX blocks, an extent not read since the last change),
 * and a READ whose copies are stale.  Seqlock style: it takes both generations (the pool's
 * change_gen and the node's fgen) before it takes the copies under nlock
 * and checks that the copies are of them, reads and verifies the data,
 * then takes both generations again.  Unchanged, nothing that could
 * change the file ran in between: every operation that changes this
 * file bumps one of them under the write lock before it changes or
 * frees anything (a block of the file is freed only by an operation on
 * the file -- a clone sharing it holds its own reference, and a shared
 * tree is copied before it is written), so the blocks read were still
 * the file's and the data is what a READ under the lock would have
 * returned at the start.  Changed, the READ is done again under the
 * lock (which refreshes the copies), whatever it read: a block freed and
 * reused meanwhile fails its checksum, which is a retry then, not an
 * error.  A mismatch with both unchanged is corruption: -EIO, as the
 * READ under the lock says.  What a writer of another file changes
 * bumps neither (op_local), so such a READ does not wait for it.
 */
/* The node a thread's READs found last (most READs of a thread are of
 * one file): still that id's node while node_free_stamp reads the same,
 * since nodes leave the table only to be freed and an id has one node. */
static _Thread_local struct {
	const rfs_fs *fs;
	rfs_nodeid id;
	struct rfs_node *n;
	uint64_t stamp;
} last;

struct rfs_node *rcache_node(rfs_fs *fs, rfs_nodeid id)
{
	if (last.fs == fs && last.id == id && last.n && last.stamp == node_free_stamp())
		return last.n;
	node_lock(fs);
	/* Read under nlock, which every free holds: no free between it and
	 * the lookup. */
	uint64_t stamp = node_free_stamp();
	struct rfs_node *n = node_get_locked(fs, id);
	if (n && n->dead)
		n = NULL;
	node_unlock(fs);
	last.fs = fs;
	last.id = id;
	last.n = n;
	last.stamp = stamp;
	return n;
}

/* Bytes [off, off + len) of the file into buf, from the extents x[0..cnt)
 * (file order; the file's every extent meeting the range): zeros where
 * none or an unwritten one maps a block.  A block the range covers only
 * in part is read whole into a bounce block, checked, and the part
 * copied out.  *bad: the pool block of a checksum mismatch. */
static int read_range(rfs_fs *fs, const struct rfs_ext *x, int cnt, uint8_t *buf,
		      uint64_t off, size_t len, uint64_t *bad)
{
	const uint64_t BS = RFS_BLOCK_SIZE;
	uint8_t bounce[RFS_BLOCK_SIZE];
	uint64_t end = off + len, pos = off;
	for (int i = 0; i < cnt; i++) {
		const struct rfs_ext *e = &x[i];
		uint64_t lo = e->lblk * BS > pos ? e->lblk * BS : pos;
		uint64_t hi = (e->lblk + e->n) * BS < end ? (e->lblk + e->n) * BS : end;
		if (lo >= hi)
			continue;
		if (lo > pos)
			memset(buf + (pos - off), 0, lo - pos);
		pos = hi;
		if (e->flags & RFS_EXT_UNWRITTEN) {
			memset(buf + (lo - off), 0, hi - lo);
			continue;
		}
		while (lo < hi) {
			uint64_t fb = lo / BS, nb = hi / BS - fb;
			const uint32_t *cs = e->csum + (fb - e->lblk);
			int ret;
			if (lo % BS || nb == 0) {
				/* A block in part: the head or the tail. */
				uint64_t stop = (fb + 1) * BS < hi ? (fb + 1) * BS : hi;
				ret = rfs_data_read_nolock(fs->pool, e->start + (fb - e->lblk), bounce,
							   1, cs, bad);
				if (!ret)
					memcpy(buf + (lo - off), bounce + lo % BS, stop - lo);
				lo = stop;
			} else {
				ret = rfs_data_read_nolock(fs->pool, e->start + (fb - e->lblk),
							   buf + (lo - off), (uint32_t)nb, cs, bad);
				lo += nb * BS;
			}
			if (ret)
				return ret;
		}
	}
	if (pos < end)
		memset(buf + (pos - off), 0, end - pos);
	return 0;
}

int rcache_read_nolock(rfs_fs *fs, rfs_nodeid id, void *buf, size_t size, uint64_t off,
		       bool queued, size_t *got, struct rfs_node **np, struct rfs_irec *r)
{
	const uint64_t BS = RFS_BLOCK_SIZE;
	uint64_t gen = rfs_pool_change_gen_now(fs->pool), fgen;
	/* The extents meeting the range (8 KiB on the stack: a malloc per
	 * READ is what the locked path's emap_open costs). */
	struct rfs_ext x[RFS_INLEXT_CAP];
	int cnt = 0;
	bool ext = false; /* from an extent copy */
	size_t len = 0;
	struct rfs_node *n = rcache_node(fs, id);
	if (!n)
		return 0;
	fgen = atomic_load(&n->fgen);
	clock_rd(n);
	const struct rfs_rcache *c = n->rc;
	/* Anything but a regular file's READ: the locked path says what. */
	if (!c || c->gen != gen || c->fgen != fgen || !S_ISREG(c->i.mode))
		goto miss;
	/* With writes queued, only inside the mapped size (one may have
	 * grown the file) and not inline data (one may replace it). */
	if (queued && (dm_read_past(c->i.size, off, size) || (c->i.flags & RFS_INODE_INLDATA)))
		goto miss;
	if (off < c->i.size && size)
		len = size < c->i.size - off ? size : (size_t)(c->i.size - off);
	uint64_t b0 = off / BS, b1 = len ? (off + len + BS - 1) / BS : 0;
	if (len && (c->i.flags & RFS_INODE_INLDATA)) {
		/* The bytes are in the copy (a malformed tail: the locked
		 * path reports it). */
		if (c->taillen != c->i.size || c->i.size > RFS_INLDATA_MAX)
			goto miss;
		memcpy(buf, c->tail + off, len);
	} else if (len && !c->i.subtree) {
		/* The whole map is in the record copy (inline, or none: a
		 * file of holes), so it proves holes too.  A malformed map:
		 * the locked path reports it. */
		cnt = inl_range(&c->i, c->tail, c->taillen, b0, b1, x, RFS_INLEXT_CAP);
		if (cnt < 0)
			goto miss;
	} else if (len) {
		/* A file tree: blocks one extent copy maps in full (holes
		 * between the copies are not known to be holes). */
		const struct rfs_ecache *e = n->ec;
		if (b1 - b0 > RFS_EXTENT_MAX || !e || e->gen != gen || e->fgen != fgen)
			goto miss;
		uint32_t i = upper(e, b0);
		if (i == 0 || b0 - ec_lblk(e, i - 1) + (b1 - b0) > ec_ent(e, i - 1)->n)
			goto miss;
		uint64_t from = b0 - ec_lblk(e, i - 1);
		x[0].lblk = b0;
		x[0].start = ec_ent(e, i - 1)->start + from;
		x[0].n = b1 - b0;
		x[0].flags = 0;
		memcpy(x[0].csum, ec_ent(e, i - 1)->csum + from, 4 * (b1 - b0));
		cnt = 1;
		ext = true;
	}
	r->i = c->i;
	r->taillen = 0;
	pthread_rwlock_unlock(&n->clock);
	int ret = 0;
	uint64_t bad = 0;
	if (fs->read_hook)
		fs->read_hook(fs->read_arg, 0);
	if (len && !(r->i.flags & RFS_INODE_INLDATA))
		ret = read_range(fs, x, cnt, buf, off, len, &bad);
	/* The queued writes over it: their blocks are given back or
	 * mapped only under the file's write lock, which moves fgen, so
	 * the check below covers them too (file_delay_index.c). */
	if (!ret && queued && len)
		ret = dm_overlay(fs, n, buf, len, off, &bad);
	if (fs->read_hook)
		fs->read_hook(fs->read_arg, 1);
	if (ret == DM_UNINDEXED)
		return 0; /* the locked path maps them */
	/* The data read is done before the generations are read again
	 * (a fence: the loads below are not made early). */
	atomic_thread_fence(memory_order_seq_cst);
	if (rfs_pool_change_gen_now(fs->pool) != gen || atomic_load(&n->fgen) != fgen) {
		rfs_pcount_add(&fs->nl_retried, 1);
		return 0;
	}
	if (ret) {
		if (bad)
			rfs_data_log_mismatch(fs->pool, bad);
		return ret;
	}
	rfs_pcount_add(&fs->nl_served, 1);
	rfs_pcount_add(&fs->rc_hits, 1);
	if (ext)
		rfs_pcount_add(&fs->ec_hits, 1);
	*np = n;
	*got = len;
	return 1;
miss:
	pthread_rwlock_unlock(&n->clock);
	return 0;
}

void rfs_fs_set_read_hook(rfs_fs *fs, void (*fn)(void *arg, int stage), void *arg)
{
	fs->read_hook = fn;
	fs->read_arg = arg;
}

void rfs_fs_nolock_stats(rfs_fs *fs, uint64_t *served, uint64_t *retried)
{
	*served = rfs_pcount_get(&fs->nl_served);
	*retried = rfs_pcount_get(&fs->nl_retried);
}
