/*
 * Data blocks: written straight to the pool (no cache), durable with the
 * next commit's first flush, verified on read against the checksums the
 * caller keeps in its extent records.
 */
#include "pool/pool_internal.h"
#include "util/lockcheck.h"

#include <errno.h>

/* Write, then checksum: the part of a data write that needs no lock. */
static int write_sum(rfs_pool *pool, uint64_t blocknr, const void *buf, uint32_t nblocks,
		     uint32_t *csums)
{
	int ret = rfs_io_write(&pool->io, blocknr << RFS_BLOCK_SHIFT, buf,
			       (size_t)nblocks * RFS_BLOCK_SIZE);
	if (ret)
		return ret;
	if (csums)
		for (uint32_t i = 0; i < nblocks; i++)
			csums[i] = rfs_data_csum(blocknr + i,
						 (const uint8_t *)buf + (size_t)i * RFS_BLOCK_SIZE);
	return 0;
}

static int check_range(const rfs_pool *pool, uint64_t blocknr, uint32_t nblocks)
{
	if (blocknr < pool->data_start || blocknr >= pool->total_blocks ||
	    nblocks > pool->total_blocks - blocknr) {
		rfs_log(RFS_LOG_ERR, "%s: data write to blocks %llu+%u outside the data area",
			pool->path, (unsigned long long)blocknr, nblocks);
		return -EINVAL;
	}
	return 0;
}

int rfs_claim_write(rfs_pool *pool, uint64_t blocknr, const void *buf, uint32_t nblocks,
		    uint32_t *csums)
{
	/* No lock: the geometry is fixed, and the blocks are the caller's
	 * (claimed): nobody else writes, frees or commits them. */
	if (nblocks == 0)
		return 0;
	int ret = check_range(pool, blocknr, nblocks);
	return ret ? ret : write_sum(pool, blocknr, buf, nblocks, csums);
}

int rfs_data_write(rfs_pool *pool, uint64_t blocknr, const void *buf, uint32_t nblocks,
		   uint32_t *csums)
{
	int ret;

	/* The write lock, or a paused writer's read lock and gate: either
	 * way no one else allocates, frees or commits meanwhile. */
	RFS_ASSERT_LOCK(rfs_pool_holds_gate(pool) && rfs_pool_holds_lock(pool));
	ret = rfs_pool_check_writable(pool);
	if (ret)
		return ret;
	if (nblocks == 0)
		return 0;
	ret = check_range(pool, blocknr, nblocks);
	if (ret)
		return ret;
	/* Overwriting a block of committed state would break the last
	 * commit: only blocks of the running transaction may be written. */
	for (uint32_t i = 0; i < nblocks; i++) {
		if (!rfs_bit_test(pool->fresh, blocknr + i)) {
			rfs_log(RFS_LOG_ERR, "%s: data write to block %llu, which was not allocated in the running transaction",
				pool->path, (unsigned long long)(blocknr + i));
			return -EINVAL;
		}
	}
	return write_sum(pool, blocknr, buf, nblocks, csums);
}

int rfs_data_read_nolock(rfs_pool *pool, uint64_t blocknr, void *buf, uint32_t nblocks,
			 const uint32_t *csums, uint64_t *bad)
{
	if (nblocks == 0)
		return 0;
	if (blocknr < pool->data_start || blocknr >= pool->total_blocks ||
	    nblocks > pool->total_blocks - blocknr)
		return -EIO; /* the caller's copy is stale, or the lock path says */
	int ret = rfs_io_read_data(&pool->io, blocknr << RFS_BLOCK_SHIFT, buf,
			      (size_t)nblocks * RFS_BLOCK_SIZE);
	if (ret)
		return ret;
	for (uint32_t i = 0; i < nblocks; i++) {
		const uint8_t *p = (const uint8_t *)buf + (size_t)i * RFS_BLOCK_SIZE;

		if (rfs_data_csum(blocknr + i, p) != csums[i]) {
			*bad = blocknr + i;
			return -EIO;
		}
	}
	return 0;
}

void rfs_data_log_mismatch(rfs_pool *pool, uint64_t blocknr)
{
	rfs_log(RFS_LOG_ERR, "%s: data block %llu: checksum mismatch", pool->path,
		(unsigned long long)blocknr);
}

int rfs_data_read(rfs_pool *pool, uint64_t blocknr, void *buf, uint32_t nblocks,
		  const uint32_t *csums)
{
	int ret;

	RFS_ASSERT_LOCK(rfs_pool_holds_lock(pool));
	if (nblocks == 0)
		return 0;
	if (blocknr < pool->data_start || blocknr >= pool->total_blocks ||
	    nblocks > pool->total_blocks - blocknr) {
		rfs_log(RFS_LOG_ERR, "%s: data read of blocks %llu+%u outside the data area",
			pool->path, (unsigned long long)blocknr, nblocks);
		return -EIO;
	}
	ret = rfs_io_read_data(&pool->io, blocknr << RFS_BLOCK_SHIFT, buf,
			  (size_t)nblocks * RFS_BLOCK_SIZE);
	if (ret)
		return ret;
	if (!csums)
		return 0;
	for (uint32_t i = 0; i < nblocks; i++) {
		const uint8_t *p = (const uint8_t *)buf + (size_t)i * RFS_BLOCK_SIZE;

		if (rfs_data_csum(blocknr + i, p) != csums[i]) {
			rfs_log(RFS_LOG_ERR, "%s: data block %llu: checksum mismatch", pool->path,
				(unsigned long long)(blocknr + i));
			return -EIO;
		}
	}
	return 0;
}
