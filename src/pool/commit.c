/*
 * Transaction commit.  Order of writes for generation g:
 *
 *   1. every dirty metadata block, at its own (fresh) location;
 *   2. the bitmap pages of copy g % 2 that changed in generation g or
 *      g - 1 (copy g % 2 was last brought up to date by g - 2), or all of
 *      them for the first commit after open;
 *   3. flush: data blocks (written directly earlier) and all of the above
 *      are durable;
 *   4. copy 0 of superblock slot g % 2 (block g % 2) naming generation g;
 *   5. flush: generation g is committed;
 *   6. copy 1 of that slot (block g % 2 + 2), the same superblock;
 *   7. flush: generation g survives the loss of either copy.
 *
 * Nothing the live superblock (slot (g - 1) % 2, bitmap copy (g - 1) % 2,
 * blocks of committed trees) refers to is written, so a crash anywhere
 * leaves the last commit intact.  Copy 1 is written only once copy 0 is
 * durable, so a crash leaves at least one valid copy in the slot being
 * written (the new generation in copy 0, or the old one in copy 1); see
 * super_copies.c for how open reads that.
 */
#include "pool/pool_internal.h"
#include "util/lockcheck.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Blocks gathered into one write when their numbers are contiguous. */
#define STAGE_BLOCKS 64

struct stager {
	rfs_pool *pool;
	uint8_t *buf;
	uint64_t first; /* block number of buf[0] */
	unsigned n;
};

static int stage_flush(struct stager *s)
{
	int ret = 0;

	if (s->n)
		ret = rfs_io_write(&s->pool->io, s->first << RFS_BLOCK_SHIFT, s->buf,
				   (size_t)s->n * RFS_BLOCK_SIZE);
	s->n = 0;
	return ret;
}

/* Slot for block nr in the staging buffer, writing out what is there if
 * nr does not extend it. */
static int stage_slot(struct stager *s, uint64_t nr, uint8_t **slot)
{
	int ret;

	if (s->n && (s->n == STAGE_BLOCKS || s->first + s->n != nr)) {
		ret = stage_flush(s);
		if (ret)
			return ret;
	}
	if (!s->n)
		s->first = nr;
	*slot = s->buf + (size_t)s->n++ * RFS_BLOCK_SIZE;
	return 0;
}

static int cmp_cent(const void *a, const void *b)
{
	uint64_t x = (*(struct rfs_cent *const *)a)->buf.blocknr;
	uint64_t y = (*(struct rfs_cent *const *)b)->buf.blocknr;

	return x < y ? -1 : x > y;
}

static int write_dirty(rfs_pool *pool, struct stager *s, uint64_t gen)
{
	struct rfs_cent **v = NULL;
	size_t n = 0;
	int ret = 0;

	ret = rfs_cache_dirty(pool, &v, &n);
	if (ret)
		return ret;
	if (n)
		qsort(v, n, sizeof(*v), cmp_cent);
	for (size_t i = 0; i < n && !ret; i++) {
		struct rfs_block_header h;
		uint8_t *slot;

		/* Location and generation are restamped in the staged copy
		 * (readers may be looking at the cached buffer meanwhile), so
		 * that a caller who copied a whole old block over a new one
		 * cannot write a block that fails verification. */
		ret = stage_slot(s, v[i]->buf.blocknr, &slot);
		if (ret)
			break;
		memcpy(slot, v[i]->buf.data, RFS_BLOCK_SIZE);
		memcpy(&h, slot, sizeof(h));
		h.magic = RFS_META_MAGIC;
		h.blocknr = v[i]->buf.blocknr;
		h.generation = gen;
		h.crc = 0;
		memcpy(slot, &h, sizeof(h));
		h.crc = rfs_meta_csum(slot);
		memcpy(slot, &h, sizeof(h));
	}
	free(v);
	return ret;
}

static int write_bitmap(rfs_pool *pool, struct stager *s, uint64_t gen)
{
	unsigned copy = gen % 2;
	uint64_t pages = rfs_bitmap_pages_used(pool);
	int ret = 0;

	for (uint64_t p = 0; p < pages && !ret; p++) {
		uint8_t *slot;

		if (!pool->full_bitmap_write && pool->page_gen[p] + 1 < gen)
			continue;
		ret = stage_slot(s, pool->bitmap_start + copy * pool->bitmap_blocks + p, &slot);
		if (!ret)
			rfs_bitmap_page_fill(pool, p, copy, gen, slot);
	}
	return ret;
}

/* Write superblock copy c of generation gen and flush it. */
static int write_super(rfs_pool *pool, uint64_t gen, unsigned c, uint8_t *buf)
{
	uint64_t nr = gen % RFS_SUPER_SLOTS + (uint64_t)RFS_SUPER_SLOTS * c;
	int ret;

	rfs_super_fill(pool, gen, c, buf);
	ret = rfs_io_write(&pool->io, nr << RFS_BLOCK_SHIFT, buf, RFS_BLOCK_SIZE);
	return ret ? ret : rfs_io_flush(&pool->io);
}

/*
 * Write out generation gen: everything but the final state change.  Runs
 * under the read lock with the writers' gate held: nothing mutates the
 * pool meanwhile, and readers go on.  Once gen is durable its dirty
 * blocks are marked clean, the blocks it freed punched out of the pool
 * file and made allocatable, its fresh blocks committed -- here too, as
 * only gate holders look at any of that.  Returns an error when generation
 * gen is not durable; *mirror_err is the error of the second superblock
 * copy, written once the first made gen durable.
 */
static int write_out(rfs_pool *pool, uint64_t gen, int *mirror_err)
{
	struct stager s = { .pool = pool };
	int ret;

	*mirror_err = 0;
	s.buf = aligned_alloc(RFS_BLOCK_SIZE, (size_t)STAGE_BLOCKS * RFS_BLOCK_SIZE);
	if (!s.buf)
		return -ENOMEM;
	ret = write_dirty(pool, &s, gen);
	if (!ret)
		ret = stage_flush(&s);
	if (!ret)
		ret = write_bitmap(pool, &s, gen);
	if (!ret)
		ret = stage_flush(&s);
	/* A file pool must cover high_water even if its last blocks were
	 * never written, else the next open reports it truncated. */
	if (!ret)
		ret = rfs_io_extend(&pool->io, pool->high_water << RFS_BLOCK_SHIFT);
	if (!ret)
		ret = rfs_io_flush(&pool->io);
	if (!ret)
		ret = write_super(pool, gen, 0, s.buf);
	if (!ret) {
		/* gen is durable.  What follows used to run under the write
		 * lock, O(dirty blocks) and a hole punch per freed run: the
		 * gate keeps writers (the only ones who look at dirtiness or
		 * allocate) out, so readers need not wait for it. */
		rfs_cache_mark_clean(pool);
		rfs_alloc_punch_freed(pool);
		rfs_alloc_durable(pool, gen);
		*mirror_err = write_super(pool, gen, 1, s.buf);
	}
	free(s.buf);
	return ret;
}

/* Caller holds the gate and the write lock; returns holding both. */
int rfs_pool_commit_locked(rfs_pool *pool)
{
	uint64_t gen = pool->committed_gen + 1;
	int ret, mirror_err;

	RFS_ASSERT_LOCK(rfs_pool_holds_wrlock(pool) && rfs_pool_holds_gate(pool));
	ret = rfs_pool_check_writable(pool);
	if (ret)
		return ret;
	if (pool->precommit && (ret = pool->precommit(pool->precommit_arg)) != 0) {
		/* Part of the transaction could not be stored: it must not
		 * be committed without it. */
		pool->failed = true;
		if (!pool->io.crashed)
			rfs_log(RFS_LOG_ERR, "%s: commit of generation %llu failed (%s); the pool is read-only now, the last commit (generation %llu) is intact",
				pool->path, (unsigned long long)gen, strerror(-ret),
				(unsigned long long)pool->committed_gen);
		return ret;
	}
	/* Downgrade for the write-out: the gate keeps writers out, so the
	 * state cannot change between the two phases. */
	rfs_pool_lock_downgrade(pool);
	ret = write_out(pool, gen, &mirror_err);
	rfs_pool_lock_upgrade(pool);
	if (ret == -ENOMEM && !pool->io.crashed)
		return ret; /* nothing was written: the pool stays usable */
	if (ret) {
		pool->failed = true;
		if (!pool->io.crashed)
			rfs_log(RFS_LOG_ERR, "%s: commit of generation %llu failed (%s); the pool is read-only now, the last commit (generation %llu) is intact",
				pool->path, (unsigned long long)gen, strerror(-ret),
				(unsigned long long)pool->committed_gen);
		return ret;
	}

	pool->committed_gen = gen;
	rfs_alloc_committed(pool);
	pool->commits++;
	if (mirror_err) {
		/* Generation gen is durable (its first copy was flushed), so
		 * the commit succeeded; a device failing writes is not trusted
		 * with more of them. */
		pool->failed = true;
		if (!pool->io.crashed)
			rfs_log(RFS_LOG_ERR, "%s: generation %llu is committed, but writing the second copy of its superblock (block %llu) failed (%s); the pool is read-only now; the next read-write open rewrites that copy",
				pool->path, (unsigned long long)gen,
				(unsigned long long)(gen % RFS_SUPER_SLOTS + RFS_SUPER_SLOTS),
				strerror(-mirror_err));
	}
	return 0;
}

void rfs_pool_set_precommit(rfs_pool *pool, int (*fn)(void *arg), void *arg)
{
	RFS_ASSERT_LOCK(rfs_pool_holds_wrlock(pool));
	pool->precommit = fn;
	pool->precommit_arg = arg;
}

void rfs_pool_abort(rfs_pool *pool, const char *why)
{
	if (pool->failed || pool->io.crashed)
		return;
	pool->failed = true;
	rfs_log(RFS_LOG_ERR, "%s: %s; the changes since the last commit (generation %llu) are discarded and the pool is read-only now: unmount and mount it again to go on",
		pool->path, why, (unsigned long long)pool->committed_gen);
}

int rfs_pool_commit(rfs_pool *pool)
{
	int ret;

	const char *prev = rfs_pool_lock_label("commit");
	/* Not a change for READ's copies of records and extents (the
	 * pool's change generation stays): the commit writes dirty blocks
	 * out from staging copies (the cached buffers keep their bytes),
	 * records the frees that writers made -- each of which bumped a
	 * generation when it freed -- and its precommit hook flushes the
	 * change journal, which no file's record or extent names.  Every
	 * block a copy names stays where it is, with the same contents. */
	rfs_pool_wrlock_local(pool, &pool->commit_gen);
	ret = rfs_pool_commit_locked(pool);
	rfs_pool_unlock(pool);
	rfs_pool_lock_label(prev);
	return ret;
}

int rfs_pool_commit_background(rfs_pool *pool)
{
	int ret;

	const char *prev = rfs_pool_lock_label("commit");
	rfs_pool_wrlock_local(pool, &pool->commit_gen); /* as rfs_pool_commit */
	pool->defer_punch = true;
	ret = rfs_pool_commit_locked(pool);
	pool->defer_punch = false;
	rfs_pool_unlock(pool);
	rfs_pool_lock_label(prev);
	return ret;
}

void rfs_pool_punch_warm(rfs_pool *pool)
{
	rfs_pool_gate_lock(pool);
	/* Free blocks only (alloc.c): nothing a reader or the committed
	 * state names, so the gate and the read lock do. */
	if (!rfs_pool_check_writable(pool))
		rfs_alloc_punch_warm(pool);
	rfs_pool_unlock(pool);
}
