/*
 * Block cache for metadata blocks: a chained hash table keyed by block
 * number, an LRU list of clean unpinned blocks (the only ones that may be
 * evicted) and a list of dirty blocks waiting for the commit -- all of it
 * split into RFS_CACHE_SHARDS shards by block number, each with its own
 * mutex, so that readers walking different blocks do not queue on one
 * lock.
 *
 * Readers holding only the pool's read lock load blocks concurrently;
 * the disk read itself happens outside the shard's mutex.
 */
#include "pool/pool_internal.h"
#include "util/lockcheck.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define CACHE_INIT_SHIFT 8

static inline struct rfs_cent *to_cent(const struct rfs_buf *buf)
{
	return (struct rfs_cent *)buf;
}

static inline size_t hslot(const struct rfs_cshard *c, uint64_t nr)
{
	return (size_t)((nr * 0x9e3779b97f4a7c15ull) >> c->shift);
}

/* A different multiplier from hslot's, so that a shard's blocks spread
 * over all of its buckets. */
static inline struct rfs_cshard *shard_of(struct rfs_cache *c, uint64_t nr)
{
	return &c->shard[(nr * 0xff51afd7ed558ccdull) >> (64 - RFS_CACHE_SHARD_BITS)];
}

/*
 * A shard's mutex keeps readers (who hold the pool's read lock, several
 * at once) apart.  The holder of the pool's write lock is alone: every
 * use of the cache happens under the pool's lock (read or write, asserted
 * at each entry point), and the write lock excludes every other holder.
 * So it takes no shard mutex -- a WRITE's mapping does some 17 lookups
 * and as many releases, each a mutex round trip otherwise -- and the
 * pool's rwlock orders its accesses with the readers' before and after.
 * Returns whether the caller must unlock.
 */
static inline bool shard_lock(const rfs_pool *pool, struct rfs_cshard *sh)
{
	if (rfs_t_wrpool == pool) {
		RFS_ASSERT_LOCK(rfs_pool_holds_wrlock(pool));
		return false;
	}
	rfs_lockw_mutex(&sh->lock, RFS_LOCKW_SHARD);
	sh->locked++;
	return true;
}

static inline void shard_unlock(struct rfs_cshard *sh, bool locked)
{
	if (locked)
		pthread_mutex_unlock(&sh->lock);
}

/* Shard i's share of limit blocks: the shares add up to limit. */
static uint64_t share(uint64_t limit, unsigned i)
{
	return limit / RFS_CACHE_SHARDS + (i < limit % RFS_CACHE_SHARDS);
}

static void list_add_tail(struct rfs_clist *l, struct rfs_cent *e)
{
	e->next = NULL;
	e->prev = l->tail;
	if (l->tail)
		l->tail->next = e;
	else
		l->head = e;
	l->tail = e;
	l->n++;
}

static void list_del(struct rfs_clist *l, struct rfs_cent *e)
{
	if (e->prev)
		e->prev->next = e->next;
	else
		l->head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		l->tail = e->prev;
	e->prev = e->next = NULL;
	l->n--;
}

int rfs_cache_init(struct rfs_cache *c)
{
	memset(c, 0, sizeof(*c));
	for (unsigned i = 0; i < RFS_CACHE_SHARDS; i++) {
		struct rfs_cshard *sh = &c->shard[i];

		sh->nbuckets = (size_t)1 << CACHE_INIT_SHIFT;
		sh->shift = 64 - CACHE_INIT_SHIFT;
		sh->buckets = calloc(sh->nbuckets, sizeof(*sh->buckets));
		if (!sh->buckets) {
			while (i--)
				free(c->shard[i].buckets);
			c->shard[0].buckets = NULL;
			return -ENOMEM;
		}
		sh->limit = share(RFS_DEFAULT_CACHE_LIMIT, i);
		pthread_mutex_init(&sh->lock, NULL);
	}
	pthread_mutex_init(&c->slab_lock, NULL);
	return 0;
}

/* A fresh zeroed entry with its buffer (contents undefined), or NULL. */
static struct rfs_cent *ent_alloc(struct rfs_cache *c)
{
	struct rfs_cent *e;
	uint8_t *data;

	rfs_lockw_mutex(&c->slab_lock, RFS_LOCKW_SLAB);
	if (!c->free_ents) {
		struct rfs_slab *sl = malloc(sizeof(*sl));
		uint8_t *mem = aligned_alloc(RFS_BLOCK_SIZE,
					     (size_t)RFS_SLAB_BLOCKS * RFS_BLOCK_SIZE);
		if (!sl || !mem) {
			free(sl);
			free(mem);
			pthread_mutex_unlock(&c->slab_lock);
			return NULL;
		}
		sl->mem = mem;
		sl->next = c->slabs;
		c->slabs = sl;
		for (unsigned i = 0; i < RFS_SLAB_BLOCKS; i++) {
			sl->ents[i].buf.data = mem + (size_t)i * RFS_BLOCK_SIZE;
			sl->ents[i].hnext = c->free_ents;
			c->free_ents = &sl->ents[i];
		}
	}
	e = c->free_ents;
	c->free_ents = e->hnext;
	pthread_mutex_unlock(&c->slab_lock);
	data = e->buf.data;
	memset(e, 0, sizeof(*e));
	e->buf.data = data;
	return e;
}

static void free_ent(struct rfs_cache *c, struct rfs_cent *e)
{
	rfs_lockw_mutex(&c->slab_lock, RFS_LOCKW_SLAB);
	e->hnext = c->free_ents;
	c->free_ents = e;
	pthread_mutex_unlock(&c->slab_lock);
}

void rfs_cache_destroy(struct rfs_cache *c)
{
	if (!c->shard[0].buckets)
		return;
	while (c->slabs) {
		struct rfs_slab *sl = c->slabs;
		c->slabs = sl->next;
		free(sl->mem);
		free(sl);
	}
	c->free_ents = NULL;
	for (unsigned i = 0; i < RFS_CACHE_SHARDS; i++) {
		free(c->shard[i].buckets);
		c->shard[i].buckets = NULL;
		pthread_mutex_destroy(&c->shard[i].lock);
	}
	pthread_mutex_destroy(&c->slab_lock);
}

static struct rfs_cent *lookup(const struct rfs_cshard *c, uint64_t nr)
{
	struct rfs_cent *e = c->buckets[hslot(c, nr)];

	while (e && e->buf.blocknr != nr)
		e = e->hnext;
	return e;
}

static void grow(struct rfs_cshard *c)
{
	size_t n = c->nbuckets * 2;
	struct rfs_cent **b = calloc(n, sizeof(*b));
	struct rfs_cshard tmp = { .nbuckets = n, .shift = c->shift - 1 };

	if (!b)
		return; /* longer chains, still correct */
	for (size_t i = 0; i < c->nbuckets; i++) {
		struct rfs_cent *e = c->buckets[i], *next;

		for (; e; e = next) {
			size_t s = hslot(&tmp, e->buf.blocknr);

			next = e->hnext;
			e->hnext = b[s];
			b[s] = e;
		}
	}
	free(c->buckets);
	c->buckets = b;
	c->nbuckets = n;
	c->shift--;
}

static void insert(struct rfs_cshard *c, struct rfs_cent *e)
{
	size_t s;

	if (c->count >= c->nbuckets)
		grow(c);
	s = hslot(c, e->buf.blocknr);
	e->hnext = c->buckets[s];
	c->buckets[s] = e;
	c->count++;
}

static void unhash(struct rfs_cshard *c, struct rfs_cent *e)
{
	struct rfs_cent **pp = &c->buckets[hslot(c, e->buf.blocknr)];

	while (*pp != e)
		pp = &(*pp)->hnext;
	*pp = e->hnext;
	c->count--;
}

static void pin(struct rfs_cshard *c, struct rfs_cent *e)
{
	if (e->pins++ == 0 && !e->dirty)
		list_del(&c->lru, e);
}

/* Evict clean unpinned blocks of shard sh beyond its share; sh->lock held. */
static void evict(struct rfs_cache *c, struct rfs_cshard *sh)
{
	while (sh->count - sh->dirty.n > sh->limit && sh->lru.head) {
		struct rfs_cent *e = sh->lru.head;

		list_del(&sh->lru, e);
		unhash(sh, e);
		free_ent(c, e);
	}
}

void rfs_cache_drop(rfs_pool *pool, uint64_t blocknr)
{
	struct rfs_cache *c = &pool->cache;
	struct rfs_cshard *sh = shard_of(c, blocknr);
	struct rfs_cent *e;

	RFS_ASSERT_LOCK(rfs_pool_holds_wrlock(pool));
	bool locked = shard_lock(pool, sh);
	e = sh->count ? lookup(sh, blocknr) : NULL;
	if (e) {
		unhash(sh, e);
		if (e->dirty)
			list_del(&sh->dirty, e);
		else if (!e->pins)
			list_del(&sh->lru, e);
		e->dirty = false;
		if (e->pins)
			e->orphan = true; /* freed by the last rfs_buf_put */
		else
			free_ent(c, e);
	}
	shard_unlock(sh, locked);
}

void rfs_cache_mark_clean(rfs_pool *pool)
{
	struct rfs_cache *c = &pool->cache;

	/* Gate held: only gate holders ask whether a block is dirty. */
	RFS_ASSERT_LOCK(rfs_pool_holds_gate(pool));

	for (unsigned i = 0; i < RFS_CACHE_SHARDS; i++) {
		struct rfs_cshard *sh = &c->shard[i];

		rfs_lockw_mutex(&sh->lock, RFS_LOCKW_SHARD);
		while (sh->dirty.head) {
			struct rfs_cent *e = sh->dirty.head;

			list_del(&sh->dirty, e);
			e->dirty = false;
			if (!e->pins)
				list_add_tail(&sh->lru, e);
		}
		evict(c, sh);
		pthread_mutex_unlock(&sh->lock);
	}
}

int rfs_cache_dirty(rfs_pool *pool, struct rfs_cent ***out, size_t *nout)
{
	struct rfs_cache *c = &pool->cache;
	struct rfs_cent **v;
	uint64_t ndirty = 0;
	size_t n = 0;

	RFS_ASSERT_LOCK(rfs_pool_holds_gate(pool));
	*out = NULL;
	*nout = 0;
	rfs_cache_counts(c, NULL, &ndirty, NULL);
	if (!ndirty)
		return 0;
	/* Only gate holders make blocks dirty or clean, so the count holds. */
	v = malloc(ndirty * sizeof(*v));
	if (!v)
		return -ENOMEM;
	for (unsigned i = 0; i < RFS_CACHE_SHARDS; i++) {
		struct rfs_cshard *sh = &c->shard[i];

		rfs_lockw_mutex(&sh->lock, RFS_LOCKW_SHARD);
		for (struct rfs_cent *e = sh->dirty.head; e && n < ndirty; e = e->next)
			v[n++] = e;
		pthread_mutex_unlock(&sh->lock);
	}
	*out = v;
	*nout = n;
	return 0;
}

void rfs_cache_counts(struct rfs_cache *c, uint64_t *cached, uint64_t *dirty, uint64_t *reads)
{
	uint64_t cn = 0, dn = 0, rn = 0;

	for (unsigned i = 0; i < RFS_CACHE_SHARDS; i++) {
		struct rfs_cshard *sh = &c->shard[i];

		rfs_lockw_mutex(&sh->lock, RFS_LOCKW_SHARD);
		cn += sh->count;
		dn += sh->dirty.n;
		rn += sh->reads;
		pthread_mutex_unlock(&sh->lock);
	}
	if (cached)
		*cached = cn;
	if (dirty)
		*dirty = dn;
	if (reads)
		*reads = rn;
}

void rfs_pool_set_cache_limit(rfs_pool *pool, uint64_t blocks)
{
	struct rfs_cache *c = &pool->cache;
	/* The cache is used under the pool's lock only (shard_lock). */
	bool lock = !rfs_pool_holds_lock(pool);

	if (lock)
		rfs_pool_rdlock(pool);
	for (unsigned i = 0; i < RFS_CACHE_SHARDS; i++) {
		struct rfs_cshard *sh = &c->shard[i];

		rfs_lockw_mutex(&sh->lock, RFS_LOCKW_SHARD);
		sh->limit = share(blocks, i);
		evict(c, sh);
		pthread_mutex_unlock(&sh->lock);
	}
	if (lock)
		rfs_pool_unlock(pool);
}

/* Checks that also apply to a cached block: the caller's expectations. */
static int check_cached(const rfs_pool *pool, const struct rfs_cent *e, uint8_t type,
			uint64_t expect_gen)
{
	struct rfs_block_header h;

	memcpy(&h, e->buf.data, sizeof(h));
	if (h.type != type) {
		rfs_log(RFS_LOG_ERR, "%s: block %llu: wrong type %u, expected %u", pool->path,
			(unsigned long long)e->buf.blocknr, h.type, type);
		return -EIO;
	}
	if (expect_gen && h.generation != expect_gen) {
		rfs_log(RFS_LOG_ERR, "%s: block %llu: generation %llu, expected %llu", pool->path,
			(unsigned long long)e->buf.blocknr, (unsigned long long)h.generation,
			(unsigned long long)expect_gen);
		return -EIO;
	}
	return 0;
}

/* rfs_buf_read but for the write-lock holder's hit: a block outside the
 * data area, a reader's look-up (under its shard's mutex), a miss, a
 * cached block that is not what the caller expects. */
static __attribute__((noinline)) int buf_read_slow(rfs_pool *pool, uint64_t blocknr,
						   uint8_t type, uint64_t expect_gen,
						   struct rfs_buf **out)
{
	struct rfs_cache *c = &pool->cache;
	struct rfs_cshard *sh;
	struct rfs_cent *e, *other;
	int ret;

	if (blocknr < pool->data_start || blocknr >= pool->total_blocks) {
		rfs_log(RFS_LOG_ERR, "%s: block %llu: outside the data area (%llu..%llu)",
			pool->path, (unsigned long long)blocknr,
			(unsigned long long)pool->data_start,
			(unsigned long long)pool->total_blocks - 1);
		return -EIO;
	}
	sh = shard_of(c, blocknr);
	bool locked = shard_lock(pool, sh);
	sh->reads++;
	e = lookup(sh, blocknr);
	if (e)
		pin(sh, e);
	shard_unlock(sh, locked);
	if (e)
		goto check;

	e = ent_alloc(c);
	if (!e)
		return -ENOMEM;
	e->buf.blocknr = blocknr;
	ret = rfs_io_read(&pool->io, blocknr << RFS_BLOCK_SHIFT, e->buf.data, RFS_BLOCK_SIZE);
	if (!ret)
		ret = rfs_meta_verify(pool, blocknr, e->buf.data, type, expect_gen,
				      rfs_pool_txn_gen(pool));
	if (ret) {
		/* Never cache what failed: a retry reads the disk again. */
		free_ent(c, e);
		return ret;
	}
	locked = shard_lock(pool, sh);
	other = lookup(sh, blocknr);
	if (other) {
		/* Another reader loaded it meanwhile; use theirs. */
		free_ent(c, e);
		e = other;
		pin(sh, e);
	} else {
		e->pins = 1;
		insert(sh, e);
		evict(c, sh);
	}
	shard_unlock(sh, locked);
	if (!other) {
		*out = &e->buf;
		return 0;
	}
check:
	ret = check_cached(pool, e, type, expect_gen);
	if (ret) {
		rfs_buf_put(pool, &e->buf);
		return ret;
	}
	*out = &e->buf;
	return 0;
}

/*
 * The write-lock holder's hit, which is most reads (a 4 KiB WRITE walks
 * some 12 cached blocks): no shard mutex (shard_lock), and none of the
 * miss path's state in registers.  Anything else, and a cached block of
 * another type or generation (the slow path says what is wrong), goes
 * to buf_read_slow.
 */
int rfs_buf_read(rfs_pool *pool, uint64_t blocknr, uint8_t type, uint64_t expect_gen,
		 struct rfs_buf **out)
{
	*out = NULL;
	RFS_ASSERT_LOCK(rfs_pool_holds_lock(pool));
	if (rfs_t_wrpool == pool && blocknr >= pool->data_start &&
	    blocknr < pool->total_blocks) {
		RFS_ASSERT_LOCK(rfs_pool_holds_wrlock(pool));
		struct rfs_cshard *sh = shard_of(&pool->cache, blocknr);
		struct rfs_cent *e = lookup(sh, blocknr);
		if (e) {
			const uint8_t *d = e->buf.data;
			uint64_t gen;
			memcpy(&gen, d + offsetof(struct rfs_block_header, generation), 8);
			if (d[offsetof(struct rfs_block_header, type)] == type &&
			    (!expect_gen || gen == expect_gen)) {
				sh->reads++;
				pin(sh, e);
				*out = &e->buf;
				return 0;
			}
		}
	}
	return buf_read_slow(pool, blocknr, type, expect_gen, out);
}

int rfs_buf_new(rfs_pool *pool, uint8_t type, uint8_t level, uint64_t owner,
		struct rfs_buf **out)
{
	struct rfs_cache *c = &pool->cache;
	struct rfs_block_header h = {
		.magic = RFS_META_MAGIC,
		.generation = rfs_pool_txn_gen(pool),
		.owner = owner,
		.type = type,
		.level = level,
	};
	struct rfs_cent *e;
	uint64_t nr;
	int ret;

	*out = NULL;
	RFS_ASSERT_LOCK(rfs_pool_holds_wrlock(pool));
	ret = rfs_pool_check_writable(pool);
	if (ret)
		return ret;
	/* Memory first, so a failure leaves the allocation untouched. */
	e = ent_alloc(c);
	if (!e)
		return -ENOMEM;
	ret = rfs_alloc_meta(pool, &nr);
	if (ret) {
		free_ent(c, e);
		if (ret == -ENOSPC)
			rfs_log(RFS_LOG_ERR, "%s: no space left for a metadata block", pool->path);
		return ret;
	}
	/* A stale copy from the block's previous life must not linger. */
	rfs_cache_drop(pool, nr);

	h.blocknr = nr;
	e->buf.blocknr = nr;
	memset(e->buf.data, 0, RFS_BLOCK_SIZE);
	memcpy(e->buf.data, &h, sizeof(h));
	e->pins = 1;
	e->dirty = true;

	struct rfs_cshard *sh = shard_of(c, nr);
	bool locked = shard_lock(pool, sh);
	insert(sh, e);
	list_add_tail(&sh->dirty, e);
	shard_unlock(sh, locked);
	*out = &e->buf;
	return 0;
}

bool rfs_buf_is_dirty(const rfs_pool *pool, const struct rfs_buf *buf)
{
	/* Only rfs_buf_new makes dirty buffers, and only the commit (under
	 * the write lock) cleans them, so no shard lock is needed.  A pool
	 * that refuses changes has no buffer that may be changed in place. */
	RFS_ASSERT_LOCK(rfs_pool_holds_lock(pool));
	return to_cent(buf)->dirty && rfs_pool_check_writable(pool) == 0;
}

static __attribute__((noinline)) void buf_put_slow(rfs_pool *pool, struct rfs_cent *e)
{
	struct rfs_cache *c = &pool->cache;

	/* blocknr does not change while the block is pinned, orphan or not. */
	struct rfs_cshard *sh = shard_of(c, e->buf.blocknr);
	bool locked = shard_lock(pool, sh);
	if (--e->pins == 0) {
		if (e->orphan) {
			free_ent(c, e);
		} else if (!e->dirty) {
			list_add_tail(&sh->lru, e);
			evict(c, sh);
		}
	}
	shard_unlock(sh, locked);
}

void rfs_buf_put(rfs_pool *pool, struct rfs_buf *buf)
{
	if (!buf)
		return;
	/* A pin is dropped under the lock it was taken under (shard_lock). */
	RFS_ASSERT_LOCK(rfs_pool_holds_lock(pool));
	struct rfs_cent *e = to_cent(buf);
	/* The write-lock holder's release of a block that stays off the
	 * LRU list (pinned still, or dirty): a count, no shard mutex. */
	if (rfs_t_wrpool == pool && (e->pins > 1 || (e->dirty && !e->orphan))) {
		RFS_ASSERT_LOCK(rfs_pool_holds_wrlock(pool));
		e->pins--;
		return;
	}
	buf_put_slow(pool, e);
}

uint64_t rfs_buf_gen(const struct rfs_buf *buf)
{
	struct rfs_block_header h;

	memcpy(&h, buf->data, sizeof(h));
	return h.generation;
}
