/*
 * Block I/O on the pool file or device, with two test facilities:
 *
 * - crash simulation (RFS_OPEN_CRASHSIM): writes are kept in an in-memory
 *   overlay until the next flush, so a "crash" can decide which of them
 *   reach the file (none, a random subset, or a subset plus one torn
 *   block), like dm-log-writes replay does for kernel filesystems;
 * - fault injection: after n more writes every write fails with -EIO.
 *
 * All offsets and lengths are multiples of the block size.
 */
#include "pool/pool_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static uint64_t splitmix64(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

void rfs_io_init(struct rfs_io *io, int fd, const char *path, bool is_bdev,
		 bool crashsim, uint64_t file_size)
{
	memset(io, 0, sizeof(*io));
	io->fd = fd;
	io->path = path;
	io->is_bdev = is_bdev;
	io->crashsim = crashsim;
	io->file_size = file_size;
	io->fail_after = UINT64_MAX;
	pthread_mutex_init(&io->lock, NULL);
}

static void ovl_clear(struct rfs_io *io)
{
	for (size_t i = 0; i < io->ovl_n; i++)
		free(io->ovl[i].data);
	free(io->ovl);
	free(io->ovl_hash);
	io->ovl = NULL;
	io->ovl_hash = NULL;
	io->ovl_n = io->ovl_cap = io->ovl_hcap = 0;
}

void rfs_io_destroy(struct rfs_io *io)
{
	rfs_io_unmap(io);
	ovl_clear(io);
	pthread_mutex_destroy(&io->lock);
}

static size_t ovl_slot(const struct rfs_io *io, uint64_t blk)
{
	return (size_t)((blk * 0x9e3779b97f4a7c15ull) >> 32) & (io->ovl_hcap - 1);
}

static struct rfs_ovl_ent *ovl_find(const struct rfs_io *io, uint64_t blk)
{
	if (!io->ovl_hcap)
		return NULL;
	for (size_t s = ovl_slot(io, blk);; s = (s + 1) & (io->ovl_hcap - 1)) {
		int32_t i = io->ovl_hash[s];

		if (i < 0)
			return NULL;
		if (io->ovl[i].blk == blk)
			return &io->ovl[i];
	}
}

static void ovl_hash_insert(struct rfs_io *io, int32_t idx)
{
	size_t s = ovl_slot(io, io->ovl[idx].blk);

	while (io->ovl_hash[s] >= 0)
		s = (s + 1) & (io->ovl_hcap - 1);
	io->ovl_hash[s] = idx;
}

static int ovl_put(struct rfs_io *io, uint64_t blk, const uint8_t *data)
{
	struct rfs_ovl_ent *e = ovl_find(io, blk);

	if (e) {
		/* A later write to the same block supersedes the earlier. */
		memcpy(e->data, data, RFS_BLOCK_SIZE);
		return 0;
	}
	if (io->ovl_n == io->ovl_cap) {
		size_t cap = io->ovl_cap ? io->ovl_cap * 2 : 256;
		struct rfs_ovl_ent *n = realloc(io->ovl, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		io->ovl = n;
		io->ovl_cap = cap;
	}
	if ((io->ovl_n + 1) * 2 > io->ovl_hcap) {
		size_t hcap = io->ovl_hcap ? io->ovl_hcap * 2 : 1024;
		int32_t *h = malloc(hcap * sizeof(*h));

		if (!h)
			return -ENOMEM;
		free(io->ovl_hash);
		io->ovl_hash = h;
		io->ovl_hcap = hcap;
		memset(h, 0xff, hcap * sizeof(*h));
		for (size_t i = 0; i < io->ovl_n; i++)
			ovl_hash_insert(io, (int32_t)i);
	}
	e = &io->ovl[io->ovl_n];
	e->blk = blk;
	e->data = malloc(RFS_BLOCK_SIZE);
	if (!e->data)
		return -ENOMEM;
	memcpy(e->data, data, RFS_BLOCK_SIZE);
	io->ovl_n++;
	ovl_hash_insert(io, (int32_t)(io->ovl_n - 1));
	return 0;
}

static int pread_full(int fd, uint64_t off, uint8_t *buf, size_t len)
{
	while (len) {
		ssize_t r = pread(fd, buf, len, (off_t)off);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0) {
			/* Past the end of a file that grows on demand:
			 * never-written blocks read as zeros. */
			memset(buf, 0, len);
			return 0;
		}
		buf += r;
		off += (uint64_t)r;
		len -= (size_t)r;
	}
	return 0;
}

static int pwrite_full(int fd, uint64_t off, const uint8_t *buf, size_t len)
{
	while (len) {
		ssize_t r = pwrite(fd, buf, len, (off_t)off);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		buf += r;
		off += (uint64_t)r;
		len -= (size_t)r;
	}
	return 0;
}

/* The crash simulation's unflushed writes over what was read. */
static void ovl_apply(struct rfs_io *io, uint64_t off, void *buf, size_t len)
{
	if (!io->crashsim)
		return;
	pthread_mutex_lock(&io->lock);
	for (size_t i = 0; io->ovl_n && i < len; i += RFS_BLOCK_SIZE) {
		struct rfs_ovl_ent *e = ovl_find(io, (off + i) >> RFS_BLOCK_SHIFT);

		if (e)
			memcpy((uint8_t *)buf + i, e->data, RFS_BLOCK_SIZE);
	}
	pthread_mutex_unlock(&io->lock);
}

int rfs_io_read(struct rfs_io *io, uint64_t off, void *buf, size_t len)
{
	int ret;

	if (io->crashed)
		return -EIO;
	ret = pread_full(io->fd, off, buf, len);
	if (ret < 0) {
		rfs_log(RFS_LOG_ERR, "%s: read of %zu bytes at offset %llu failed: %s",
			io->path, len, (unsigned long long)off, strerror(-ret));
		return -EIO;
	}
	ovl_apply(io, off, buf, len);
	return 0;
}

int rfs_io_read_data(struct rfs_io *io, uint64_t off, void *buf, size_t len)
{
	if (io->crashed || !rfs_io_map_copy(io, off, buf, len))
		return rfs_io_read(io, off, buf, len);
	ovl_apply(io, off, buf, len);
	return 0;
}

int rfs_io_write(struct rfs_io *io, uint64_t off, const void *buf, size_t len)
{
	int ret = 0;

	if (io->crashed)
		return -EIO;
	for (uint64_t f = io->fail_after; f != UINT64_MAX;) {
		if (f == 0) {
			rfs_log(RFS_LOG_ERR, "%s: write at offset %llu failed: injected I/O error",
				io->path, (unsigned long long)off);
			return -EIO;
		}
		if (atomic_compare_exchange_weak(&io->fail_after, &f, f - 1))
			break;
	}
	if (io->crashsim) {
		pthread_mutex_lock(&io->lock);
		for (size_t i = 0; i < len && !ret; i += RFS_BLOCK_SIZE)
			ret = ovl_put(io, (off + i) >> RFS_BLOCK_SHIFT,
				      (const uint8_t *)buf + i);
		pthread_mutex_unlock(&io->lock);
		return ret;
	}
	ret = pwrite_full(io->fd, off, buf, len);
	if (ret < 0) {
		rfs_log(RFS_LOG_ERR, "%s: write of %zu bytes at offset %llu failed: %s",
			io->path, len, (unsigned long long)off, strerror(-ret));
		return ret == -ENOSPC ? -ENOSPC : -EIO;
	}
	/* Claimed data writes run concurrently: raise, never lower. */
	uint64_t end = off + len, cur = io->file_size;
	while (!io->is_bdev && end > cur &&
	       !atomic_compare_exchange_weak(&io->file_size, &cur, end))
		;
	return 0;
}

int rfs_io_extend(struct rfs_io *io, uint64_t size)
{
	struct stat st;

	if (io->crashed)
		return -EIO;
	if (io->is_bdev || io->file_size >= size)
		return 0;
	/* Never shrink: the known size may lag behind the real one. */
	if (fstat(io->fd, &st) == 0 && (uint64_t)st.st_size >= size) {
		io->file_size = (uint64_t)st.st_size;
		return 0;
	}
	if (ftruncate(io->fd, (off_t)size) < 0) {
		int err = errno;

		rfs_log(RFS_LOG_ERR, "%s: cannot extend the pool file to %llu bytes: %s",
			io->path, (unsigned long long)size, strerror(err));
		return err == ENOSPC ? -ENOSPC : -EIO;
	}
	io->file_size = size;
	return 0;
}

int rfs_io_punch(struct rfs_io *io, uint64_t off, uint64_t len)
{
	/* Only regular files; a crash simulation keeps its overlay exact. */
	if (io->crashed || io->crashsim || io->is_bdev || !len)
		return 0;
	if (fallocate(io->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		      (off_t)off, (off_t)len) < 0)
		return -errno;
	return 0;
}

/* Write block e torn: only a 512-byte-aligned prefix of it is new. */
static void write_torn(struct rfs_io *io, const struct rfs_ovl_ent *e, uint64_t *rng)
{
	uint8_t old[RFS_BLOCK_SIZE];
	size_t keep = 512 * (1 + splitmix64(rng) % 7);
	uint64_t off = e->blk << RFS_BLOCK_SHIFT;

	if (pread_full(io->fd, off, old, sizeof(old)) < 0)
		memset(old, 0, sizeof(old));
	memcpy(old, e->data, keep);
	if (pwrite_full(io->fd, off, old, sizeof(old)) < 0)
		rfs_log(RFS_LOG_WARN, "%s: crash simulation: torn write of block %llu failed",
			io->path, (unsigned long long)e->blk);
}

void rfs_io_crash(struct rfs_io *io, int mode, uint64_t seed)
{
	uint64_t rng = seed;
	size_t torn = SIZE_MAX;

	pthread_mutex_lock(&io->lock);
	if (mode != RFS_CRASH_DROP_ALL && io->ovl_n) {
		if (mode == RFS_CRASH_TEAR)
			torn = (size_t)(splitmix64(&rng) % io->ovl_n);
		for (size_t i = 0; i < io->ovl_n; i++) {
			const struct rfs_ovl_ent *e = &io->ovl[i];

			if (i == torn) {
				write_torn(io, e, &rng);
				continue;
			}
			if (!(splitmix64(&rng) & 1))
				continue;
			if (pwrite_full(io->fd, e->blk << RFS_BLOCK_SHIFT, e->data,
					RFS_BLOCK_SIZE) < 0)
				rfs_log(RFS_LOG_WARN, "%s: crash simulation: write of block %llu failed",
					io->path, (unsigned long long)e->blk);
		}
	}
	ovl_clear(io);
	io->crashed = true;
	pthread_mutex_unlock(&io->lock);
}

int rfs_io_flush(struct rfs_io *io)
{
	int ret = 0;

	if (io->crashed)
		return -EIO;
	io->flushes++;
	if (!io->crashsim) {
		if (fdatasync(io->fd) < 0) {
			int err = errno;

			rfs_log(RFS_LOG_ERR, "%s: flush failed: %s", io->path, strerror(err));
			return -EIO;
		}
		return 0;
	}
	if (io->crash_flush_n && --io->crash_flush_n == 0) {
		rfs_io_crash(io, io->crash_mode, io->crash_seed);
		rfs_log(RFS_LOG_INFO, "%s: simulated crash at flush", io->path);
		return -EIO;
	}
	/* The overlay reaches the file; no fdatasync, since only a
	 * simulated crash is expected and the tests want speed. */
	pthread_mutex_lock(&io->lock);
	for (size_t i = 0; i < io->ovl_n && !ret; i++) {
		const struct rfs_ovl_ent *e = &io->ovl[i];

		ret = pwrite_full(io->fd, e->blk << RFS_BLOCK_SHIFT, e->data, RFS_BLOCK_SIZE);
		if (!ret && !io->is_bdev && ((e->blk + 1) << RFS_BLOCK_SHIFT) > io->file_size)
			io->file_size = (e->blk + 1) << RFS_BLOCK_SHIFT;
	}
	ovl_clear(io);
	pthread_mutex_unlock(&io->lock);
	if (ret < 0) {
		rfs_log(RFS_LOG_ERR, "%s: flush failed: %s", io->path, strerror(-ret));
		return -EIO;
	}
	return 0;
}
