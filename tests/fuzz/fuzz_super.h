/*
 * Fuzzing of the superblock read at open.  A fuzz input is laid over the
 * newest superblock of one slot of a valid small pool, in both its copies
 * or in copy 0 only (magic, copy number and checksum fixed up, so it
 * reaches the geometry and root checks); the pool is then opened and,
 * when that succeeds, checked, changed and committed.  Whatever the bytes,
 * open must fail with an error or give a pool that works.
 *
 * Input: byte 0 bit 0 = slot, bit 1 = copy 0 only; then the superblock.
 */
#ifndef RFS_FUZZ_SUPER_H
#define RFS_FUZZ_SUPER_H

#include "fuzz_node.h"

struct fzs {
	char path[256];
	char work[300];
	uint8_t image_super[2][RFS_BLOCK_SIZE];
};

static int fzs_setup(struct fzs *f, const char *dir)
{
	struct fz base;
	int ret = fz_setup(&base, dir);
	int fd;

	if (ret)
		return ret;
	snprintf(f->path, sizeof(f->path), "%s", base.path);
	snprintf(f->work, sizeof(f->work), "%s.work", base.path);
	fd = open(f->path, O_RDONLY);
	if (fd < 0)
		return -errno;
	for (int i = 0; i < 2; i++)
		if (pread(fd, f->image_super[i], RFS_BLOCK_SIZE, (off_t)i * RFS_BLOCK_SIZE) !=
		    RFS_BLOCK_SIZE)
			ret = -EIO;
	close(fd);
	return ret;
}

static void fzs_teardown(struct fzs *f)
{
	unlink(f->path);
	unlink(f->work);
	rfs_log_set_sink(NULL, NULL);
}

static int fzs_copy(const char *from, const char *to)
{
	char buf[1 << 16];
	int in = open(from, O_RDONLY), out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ssize_t n;
	int ret = 0;

	if (in < 0 || out < 0)
		ret = -1;
	while (!ret && (n = read(in, buf, sizeof(buf))) > 0)
		if (write(out, buf, (size_t)n) != n)
			ret = -1;
	if (in >= 0)
		close(in);
	if (out >= 0)
		close(out);
	return ret;
}

static int fzs_run(struct fzs *f, const uint8_t *data, size_t size)
{
	struct rfs_super_disk sb;
	uint8_t block[RFS_BLOCK_SIZE];
	rfs_pool *p;
	int fd, ok = 0;
	unsigned slot, copies;

	if (size < 1 || fzs_copy(f->path, f->work))
		return 0;
	/* Which slot to damage; the other keeps its valid (older or newer)
	 * superblock, as after a torn superblock write. */
	slot = data[0] & 1;
	copies = data[0] & 2 ? 1 : RFS_SUPER_COPIES;
	data++;
	size--;
	memcpy(&sb, f->image_super[slot], sizeof(sb));
	memcpy(&sb, data, size < sizeof(sb) ? size : sizeof(sb));
	memcpy(sb.magic, RFS_SUPER_MAGIC, 8);
	fd = open(f->work, O_WRONLY);
	if (fd < 0)
		return 0;
	for (unsigned c = 0; c < copies; c++) {
		/* The fields as given, only the crc and copy made right. */
		sb.copy = c;
		sb.crc = 0;
		memset(block, 0, sizeof(block));
		memcpy(block, &sb, sizeof(sb));
		sb.crc = rfs_super_csum(block);
		memcpy(block, &sb, sizeof(sb));
		if (pwrite(fd, block, sizeof(block), (off_t)(slot + RFS_SUPER_SLOTS * c) * RFS_BLOCK_SIZE) !=
		    (ssize_t)sizeof(block)) {
			close(fd);
			return 0;
		}
	}
	close(fd);
	if (rfs_pool_open(f->work, 0, &p))
		return 0;
	rfs_pool_wrlock(p);
	ok++;
	rfs_tree t;
	ok += rfs_check(p, NULL, NULL, NULL) == 0;
	if (rfs_catalog_get(p, 1, &t) == 0) {
		ok += rfs_tree_put(p, &t, "x", 1, "y", 1, 0, RFS_PUT_UPSERT) == 0;
		ok += rfs_catalog_set(p, 1, &t) == 0;
	}
	uint64_t start, got;
	if (rfs_alloc_data(p, 4, &start, &got) == 0)
		ok += rfs_free_blocks(p, start, got) == 0;
	ok += rfs_pool_commit_locked(p) == 0;
	rfs_pool_unlock(p);
	rfs_pool_close(p);
	return ok;
}

#endif
