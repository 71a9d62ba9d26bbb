/*
 * Fuzzing of tree nodes read from disk.  A fuzz input becomes the body of
 * the root node of a committed tree, written to the pool file with a valid
 * checksum (so it gets past the crc and reaches the node parser), then the
 * pool is reopened and every tree operation runs on it: lookups, scans
 * both ways, put, delete, drop, and the checker.  Whatever the bytes, each
 * call must return a value or an error; ASan/UBSan catch anything else.
 *
 * Used by the libFuzzer target (fuzz_node.c, `make fuzz`) and by the
 * deterministic replay test run by `make test` (test_fuzz_replay.c).
 */
#ifndef RFS_FUZZ_NODE_H
#define RFS_FUZZ_NODE_H

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pool/pool_internal.h"
#include "reflinkfs/log.h"
#include "reflinkfs/pool.h"
#include "reflinkfs/tree.h"

struct fz {
	char path[256];
	uint64_t root;
	uint64_t gen;
};

static void fz_quiet(void *arg, int level, const char *line)
{
	(void)arg;
	(void)level;
	(void)line;
}

/* Make a pool whose catalog holds tree id 1 with a one-leaf root. */
static int fz_setup(struct fz *f, const char *dir)
{
	rfs_pool *p;
	rfs_tree t = { 0, RFS_OWNER_USER };
	int ret;

	rfs_log_set_sink(fz_quiet, NULL);
	snprintf(f->path, sizeof(f->path), "%s/fuzz-%d.pool", dir, (int)getpid());
	unlink(f->path);
	ret = rfs_pool_create(f->path, 64ull << 20, 0);
	if (!ret)
		ret = rfs_pool_open(f->path, 0, &p);
	if (ret)
		return ret;
	rfs_pool_wrlock(p);
	ret = rfs_tree_put(p, &t, "k", 1, "v", 1, 0, RFS_PUT_INSERT);
	if (!ret)
		ret = rfs_catalog_set(p, 1, &t);
	if (!ret)
		ret = rfs_pool_commit_locked(p);
	f->root = t.root;
	f->gen = rfs_pool_committed_gen(p);
	rfs_pool_unlock(p);
	rfs_pool_close(p);
	return ret;
}

static void fz_teardown(struct fz *f)
{
	unlink(f->path);
	rfs_log_set_sink(NULL, NULL);
}

/* Run one input; returns the number of calls that succeeded (unused by
 * the fuzzer, handy for the replay test's sanity checks). */
static int fz_run(struct fz *f, const uint8_t *data, size_t size)
{
	uint8_t block[RFS_BLOCK_SIZE] = { 0 };
	struct rfs_block_header h = { 0 };
	rfs_pool *p;
	rfs_tree t;
	int fd, ok = 0;

	if (size < 1)
		return 0;
	h.magic = RFS_META_MAGIC;
	h.blocknr = f->root;
	h.generation = f->gen;
	h.owner = RFS_OWNER_USER;
	h.type = RFS_BT_NODE;
	h.level = data[0] % 3;
	data++;
	size--;
	if (size > RFS_BLOCK_SIZE - RFS_BLOCK_HEADER_SIZE)
		size = RFS_BLOCK_SIZE - RFS_BLOCK_HEADER_SIZE;
	memcpy(block, &h, sizeof(h));
	memcpy(block + RFS_BLOCK_HEADER_SIZE, data, size);
	h.crc = rfs_meta_csum(block);
	memcpy(block, &h, sizeof(h));
	fd = open(f->path, O_WRONLY);
	if (fd < 0)
		return 0;
	if (pwrite(fd, block, sizeof(block), (off_t)(f->root * RFS_BLOCK_SIZE)) !=
	    (ssize_t)sizeof(block)) {
		close(fd);
		return 0;
	}
	close(fd);

	if (rfs_pool_open(f->path, 0, &p))
		return 0;
	rfs_pool_wrlock(p);
	if (rfs_catalog_get(p, 1, &t) == 0) {
		uint8_t val[RFS_VAL_MAX];
		size_t vlen = sizeof(val);
		rfs_cursor *c;

		ok += rfs_tree_lookup(p, &t, "k", 1, val, &vlen, NULL) == 0;
		vlen = sizeof(val);
		ok += rfs_tree_lookup(p, &t, data, size > 16 ? 16 : size ? size : 1,
				      val, &vlen, NULL) == 0;
		for (int dir = -1; dir <= 1; dir += 2) {
			if (rfs_cursor_open(p, &t, &c))
				continue;
			int steps = 0;
			int r = rfs_cursor_seek(c, NULL, 0, dir);
			while (r == 0 && steps++ < 10000) {
				const void *k, *v;
				size_t kl, vl;
				uint8_t fl;
				if (rfs_cursor_get(c, &k, &kl, &v, &vl, &fl) == 0)
					ok++;
				r = rfs_cursor_step(c, dir);
			}
			rfs_cursor_close(c);
		}
		ok += rfs_check(p, NULL, NULL, NULL) == 0;
		ok += rfs_tree_put(p, &t, "zz", 2, "new", 3, 0, RFS_PUT_UPSERT) == 0;
		ok += rfs_tree_delete(p, &t, "k", 1, 0) == 0;
		ok += rfs_tree_drop(p, &t) == 0;
	}
	/* Never committed: the pool file keeps the fuzzed block only. */
	rfs_pool_unlock(p);
	rfs_pool_close(p);
	return ok;
}

#endif
