/*
 * Checksums: crc32c (isa-l's crc32_iscsi) over metadata blocks, the
 * superblock and data blocks, and the verification of a metadata block
 * read from disk.
 */
#include <stdatomic.h>
#include "pool/pool_internal.h"

#include <errno.h>
#include <isa-l/crc.h>
#include <stddef.h>
#include <string.h>

uint32_t rfs_crc32c(const void *buf, size_t len, uint32_t seed)
{
	/* isa-l takes a non-const pointer but does not write through it. */
	return crc32_iscsi((unsigned char *)buf, (int)len, seed);
}

uint32_t rfs_meta_csum(const uint8_t *block)
{
	static const uint8_t zero[4];
	size_t off = offsetof(struct rfs_block_header, crc);
	uint32_t crc;

	/* Chained so the block need not be copied to zero the crc field. */
	crc = rfs_crc32c(block, off, RFS_CRC_SEED);
	crc = rfs_crc32c(zero, sizeof(zero), crc);
	return rfs_crc32c(block + off + 4, RFS_BLOCK_SIZE - off - 4, crc);
}

uint32_t rfs_super_csum(const uint8_t *block)
{
	static const uint8_t zero[4];
	size_t off = offsetof(struct rfs_super_disk, crc);
	uint32_t crc;

	/* The whole block, so that damage in the zero tail is seen too. */
	crc = rfs_crc32c(block, off, RFS_CRC_SEED);
	crc = rfs_crc32c(zero, sizeof(zero), crc);
	return rfs_crc32c(block + off + 4, RFS_BLOCK_SIZE - off - 4, crc);
}

uint32_t rfs_data_csum(uint64_t blocknr, const void *data)
{
	/* Seeded with the location so that a block read from or written to
	 * the wrong place fails like corruption does. */
	uint32_t seed = (uint32_t)(blocknr ^ (blocknr >> 32)) ^ 0x5246u;

	return rfs_crc32c(data, RFS_BLOCK_SIZE, seed);
}

/* Structural checks registered by upper layers (see rfs_pool_set_verifier),
 * indexed by block type. */
static _Atomic(rfs_block_verify_fn) verifiers[256];

int rfs_meta_verify(const rfs_pool *pool, uint64_t blocknr, const uint8_t *block,
		    uint8_t type, uint64_t expect_gen, uint64_t max_gen)
{
	struct rfs_block_header h;
	unsigned long long nr = (unsigned long long)blocknr;

	memcpy(&h, block, sizeof(h));
	if (h.magic != RFS_META_MAGIC) {
		rfs_log(RFS_LOG_ERR, "%s: block %llu: bad magic", pool->path, nr);
		return -EIO;
	}
	if (h.crc != rfs_meta_csum(block)) {
		rfs_log(RFS_LOG_ERR, "%s: block %llu: checksum mismatch", pool->path, nr);
		return -EIO;
	}
	if (h.blocknr != blocknr) {
		rfs_log(RFS_LOG_ERR, "%s: block %llu: wrong location (holds block %llu)",
			pool->path, nr, (unsigned long long)h.blocknr);
		return -EIO;
	}
	if (h.type != type) {
		rfs_log(RFS_LOG_ERR, "%s: block %llu: wrong type %u, expected %u",
			pool->path, nr, h.type, type);
		return -EIO;
	}
	if (expect_gen && h.generation != expect_gen) {
		rfs_log(RFS_LOG_ERR, "%s: block %llu: generation %llu, expected %llu",
			pool->path, nr, (unsigned long long)h.generation,
			(unsigned long long)expect_gen);
		return -EIO;
	}
	if (h.generation > max_gen) {
		rfs_log(RFS_LOG_ERR, "%s: block %llu: generation %llu, expected at most %llu",
			pool->path, nr, (unsigned long long)h.generation,
			(unsigned long long)max_gen);
		return -EIO;
	}
	rfs_block_verify_fn fn = atomic_load(&verifiers[type]);
	if (fn) {
		const char *bad = fn(block);
		if (bad) {
			rfs_log(RFS_LOG_ERR, "%s: block %llu: %s", pool->path, nr, bad);
			return -EIO;
		}
	}
	return 0;
}

void rfs_pool_set_verifier(uint8_t type, rfs_block_verify_fn fn)
{
	atomic_store(&verifiers[type], fn);
}
