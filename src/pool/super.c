/*
 * Superblocks and the pool's life cycle: create (mkfs), open, close,
 * the format version check, accessors, statistics and the crash
 * simulation entry points.
 */
#include "pool/pool_internal.h"
#include "util/size.h"
#include "util/lockcheck.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Bytes read to look for filesystem signatures (btrfs sits at 64 KiB). */
#define SIG_PROBE_BYTES (68u * 1024u)

static int raw_pread(int fd, uint64_t off, void *buf, size_t len)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t r = pread(fd, p, len, (off_t)off);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0) {
			memset(p, 0, len);
			break;
		}
		p += r;
		off += (uint64_t)r;
		len -= (size_t)r;
	}
	return 0;
}

static int raw_pwrite(int fd, uint64_t off, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t r = pwrite(fd, p, len, (off_t)off);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += r;
		off += (uint64_t)r;
		len -= (size_t)r;
	}
	return 0;
}

static int bdev_size(int fd, const char *path, uint64_t *size)
{
	if (ioctl(fd, BLKGETSIZE64, size) < 0) {
		int err = errno;

		rfs_log(RFS_LOG_ERR, "%s: cannot get the device size: %s", path, strerror(err));
		return -err;
	}
	return 0;
}

void rfs_geometry(uint64_t total, uint64_t *bitmap_blocks, uint64_t *data_start)
{
	*bitmap_blocks = (total + RFS_BITS_PER_PAGE - 1) / RFS_BITS_PER_PAGE;
	*data_start = RFS_BITMAP_START + 2 * *bitmap_blocks;
}

void rfs_super_encode(const struct rfs_super_disk *sb, unsigned copy, uint8_t *block)
{
	struct rfs_super_disk tmp = *sb;

	tmp.copy = copy;
	tmp.crc = 0;
	memset(block, 0, RFS_BLOCK_SIZE);
	memcpy(block, &tmp, sizeof(tmp));
	tmp.crc = rfs_super_csum(block);
	memcpy(block, &tmp, sizeof(tmp));
}

void rfs_super_fill(const rfs_pool *pool, uint64_t gen, unsigned copy, uint8_t *block)
{
	struct rfs_super_disk sb = {
		.magic = RFS_SUPER_MAGIC,
		.version = RFS_FORMAT_VERSION,
		.block_size = RFS_BLOCK_SIZE,
		.generation = gen,
		.total_blocks = pool->total_blocks,
		.bitmap_start = pool->bitmap_start,
		.bitmap_blocks = pool->bitmap_blocks,
		.data_start = pool->data_start,
		.used_blocks = pool->used_blocks,
		.high_water = pool->high_water,
		.created = pool->created,
	};

	memcpy(sb.roots, pool->roots, sizeof(sb.roots));
	memcpy(sb.uuid, pool->uuid, sizeof(sb.uuid));
	rfs_super_encode(&sb, copy, block);
}

/* Name of a known signature found in the first bytes of path, or NULL. */
static const char *find_signature(const uint8_t *buf)
{
	uint16_t ext_magic;

	for (unsigned i = 0; i < RFS_SUPER_BLOCKS; i++)
		if (!memcmp(buf + i * RFS_BLOCK_SIZE, RFS_SUPER_MAGIC, 8))
			return "a reflinkfs pool";
	memcpy(&ext_magic, buf + 1080, 2);
	if (ext_magic == 0xEF53)
		return "an ext2/ext3/ext4 filesystem";
	if (!memcmp(buf, "XFSB", 4))
		return "an XFS filesystem";
	if (!memcmp(buf + 65600, "_BHRfS_M", 8))
		return "a btrfs filesystem";
	return NULL;
}

/* Write superblocks and bitmaps of an empty pool through fd. */
static int format(rfs_pool *pool, int fd)
{
	uint8_t *block = aligned_alloc(RFS_BLOCK_SIZE, RFS_BLOCK_SIZE);
	int ret = 0;

	if (!block)
		return -ENOMEM;
	/* Generation 0 in slot 0 with bitmap copy 0, generation 1 in slot 1
	 * with copy 1, each superblock in both its copies: all valid, so the
	 * first commit (generation 2, slot 0) can tear without losing the
	 * pool. */
	for (unsigned copy = 0; copy < 2 && !ret; copy++) {
		for (uint64_t p = 0; p < rfs_bitmap_pages_used(pool) && !ret; p++) {
			rfs_bitmap_page_fill(pool, p, copy, copy, block);
			ret = raw_pwrite(fd, (pool->bitmap_start + copy * pool->bitmap_blocks + p)
						     << RFS_BLOCK_SHIFT,
					 block, RFS_BLOCK_SIZE);
		}
	}
	for (unsigned i = 0; i < RFS_SUPER_BLOCKS && !ret; i++) {
		rfs_super_fill(pool, i % RFS_SUPER_SLOTS, i / RFS_SUPER_SLOTS, block);
		ret = raw_pwrite(fd, (uint64_t)i << RFS_BLOCK_SHIFT, block, RFS_BLOCK_SIZE);
	}
	if (!ret && fsync(fd) < 0)
		ret = -errno;
	free(block);
	return ret;
}

static int create_fd(const char *path, int fd, bool is_bdev, uint64_t size_bytes,
		     uint64_t file_len, unsigned flags)
{
	uint8_t *probe;
	const char *sig;
	rfs_pool *pool;
	int ret;

	if (size_bytes / RFS_BLOCK_SIZE < RFS_MIN_BLOCKS) {
		char a[RFS_SIZE_STR], b[RFS_SIZE_STR];
		rfs_log(RFS_LOG_ERR, "%s: a pool of %s is below the minimum of %s", path,
			rfs_size_str(size_bytes, a), rfs_size_str(RFS_POOL_MIN_BYTES, b));
		return -EINVAL;
	}
	probe = calloc(1, SIG_PROBE_BYTES);
	if (!probe)
		return -ENOMEM;
	ret = raw_pread(fd, 0, probe, SIG_PROBE_BYTES);
	if (ret < 0) {
		rfs_log(RFS_LOG_ERR, "%s: cannot read: %s", path, strerror(-ret));
		free(probe);
		return ret;
	}
	sig = find_signature(probe);
	free(probe);
	if (!(flags & RFS_CREATE_FORCE)) {
		if (sig) {
			rfs_log(RFS_LOG_ERR, "%s: holds %s; use --force to overwrite", path, sig);
			return -EEXIST;
		}
		if (!is_bdev && file_len > 0) {
			rfs_log(RFS_LOG_ERR, "%s: file is not empty (%llu bytes); use --force to overwrite",
				path, (unsigned long long)file_len);
			return -EEXIST;
		}
	}

	pool = calloc(1, sizeof(*pool));
	if (!pool)
		return -ENOMEM;
	pool->path = (char *)path;
	pool->total_blocks = size_bytes / RFS_BLOCK_SIZE;
	pool->bitmap_start = RFS_BITMAP_START;
	rfs_geometry(pool->total_blocks, &pool->bitmap_blocks, &pool->data_start);
	pool->created = (uint64_t)time(NULL);
	if (getrandom(pool->uuid, sizeof(pool->uuid), 0) != (ssize_t)sizeof(pool->uuid)) {
		/* Not fatal: the uuid only names the pool. */
		uint64_t t = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);

		memcpy(pool->uuid, &t, sizeof(t));
	}
	ret = rfs_alloc_init(pool);
	if (ret == -ENOMEM) {
		char a[RFS_SIZE_STR], b[RFS_SIZE_STR];
		rfs_log(RFS_LOG_ERR, "%s: a pool of %s needs %s of memory for its allocation bitmaps, "
			"which could not be allocated; give a smaller --size", path,
			rfs_size_str(size_bytes, a), rfs_size_str(rfs_pool_mem_bytes(size_bytes), b));
	}
	if (!ret) {
		rfs_alloc_format(pool);
		if (is_bdev) {
			/* Also wipe a btrfs signature, which sits past our
			 * superblocks. */
			static const uint8_t zero[RFS_BLOCK_SIZE];

			ret = raw_pwrite(fd, 16 << RFS_BLOCK_SHIFT, zero, sizeof(zero));
		} else if ((ret = rfs_backing_check(path, fd, size_bytes)) == 0 &&
			   (ftruncate(fd, 0) < 0 ||
			    ftruncate(fd, (off_t)(pool->data_start << RFS_BLOCK_SHIFT)) < 0)) {
			ret = -errno;
		}
	}
	if (!ret)
		ret = format(pool, fd);
	if (ret < 0 && ret != -ENOMEM && ret != -EFBIG)
		rfs_log(RFS_LOG_ERR, "%s: cannot write the new pool: %s", path, strerror(-ret));
	if (ret == -ENOSPC)
		rfs_backing_explain_enospc(path, fd, pool->data_start << RFS_BLOCK_SHIFT);
	rfs_alloc_destroy(pool);
	free(pool);
	return ret;
}

int rfs_pool_create(const char *path, uint64_t size_bytes, unsigned flags)
{
	struct stat st;
	bool exists, is_bdev = false;
	uint64_t file_len = 0;
	int fd, ret;

	exists = stat(path, &st) == 0;
	if (!exists && errno != ENOENT) {
		ret = -errno;
		rfs_log(RFS_LOG_ERR, "%s: %s", path, strerror(-ret));
		return ret;
	}
	if (exists) {
		is_bdev = S_ISBLK(st.st_mode);
		if (!is_bdev && !S_ISREG(st.st_mode)) {
			rfs_log(RFS_LOG_ERR, "%s: not a regular file or block device", path);
			return -EINVAL;
		}
		file_len = (uint64_t)st.st_size;
	}
	if (size_bytes > RFS_POOL_MAX_BYTES) {
		char a[RFS_SIZE_STR], b[RFS_SIZE_STR];
		rfs_log(RFS_LOG_ERR, "%s: pool size %s is above the largest pool, %s", path,
			rfs_size_str(size_bytes, a), rfs_size_str(RFS_POOL_MAX_BYTES, b));
		return -EFBIG;
	}
	if (!is_bdev && size_bytes == 0) {
		rfs_log(RFS_LOG_ERR, "%s: a pool file needs a size", path);
		return -EINVAL;
	}
	if (!is_bdev && size_bytes / RFS_BLOCK_SIZE < RFS_MIN_BLOCKS) {
		/* Checked before creating anything. */
		return create_fd(path, -1, false, size_bytes, 0, flags);
	}
	fd = open(path, O_RDWR | O_CLOEXEC | (exists ? 0 : O_CREAT | O_EXCL), 0644);
	if (fd < 0) {
		ret = -errno;
		rfs_log(RFS_LOG_ERR, "%s: cannot open: %s", path, strerror(-ret));
		return ret;
	}
	if (is_bdev) {
		uint64_t dev;

		ret = bdev_size(fd, path, &dev);
		if (ret) {
			close(fd);
			return ret;
		}
		if (size_bytes == 0) {
			size_bytes = dev;
		} else if (size_bytes > dev) {
			char a[RFS_SIZE_STR], b[RFS_SIZE_STR];
			rfs_log(RFS_LOG_ERR, "%s: a pool of %s is larger than the device (%llu bytes, %s); "
				"give a smaller --size, or none for the whole device",
				path, rfs_size_str(size_bytes, a), (unsigned long long)dev,
				rfs_size_str(dev, b));
			close(fd);
			return -EINVAL;
		}
	}
	ret = create_fd(path, fd, is_bdev, size_bytes, file_len, flags);
	close(fd);
	if (ret && !exists)
		unlink(path);
	return ret;
}

static int load_bitmap(rfs_pool *pool, uint64_t gen, const struct rfs_super_disk *sb)
{
	uint8_t *block = aligned_alloc(RFS_BLOCK_SIZE, RFS_BLOCK_SIZE);
	unsigned copy = gen % 2;
	int ret = 0;

	if (!block)
		return -ENOMEM;
	/* Pages past high_water hold no allocation: left all free. */
	for (uint64_t p = 0; p < rfs_bitmap_pages_used(pool) && !ret; p++) {
		uint64_t nr = pool->bitmap_start + copy * pool->bitmap_blocks + p;

		ret = rfs_io_read(&pool->io, nr << RFS_BLOCK_SHIFT, block, RFS_BLOCK_SIZE);
		if (!ret)
			ret = rfs_meta_verify(pool, nr, block, RFS_BT_BITMAP, 0, gen);
		if (!ret)
			rfs_bitmap_page_load(pool, p, block);
	}
	free(block);
	if (ret)
		return ret;
	return rfs_alloc_loaded(pool, sb->used_blocks);
}

/* Open logs what is wrong with the superblock copies, not the summary of
 * a clean pool (the mount logs that). */
static void log_super_line(void *arg, int level, const char *text)
{
	const rfs_pool *pool = arg;

	if (rfs_super_health(&pool->super) != RFS_SUPER_CLEAN)
		rfs_log(level, "%s: %s", pool->path, text);
}

int rfs_pool_open(const char *path, unsigned flags, rfs_pool **out)
{
	struct rfs_super_report report;
	struct rfs_super_disk sbuf, *sb = &sbuf;
	uint8_t *raw = NULL;
	uint64_t size, gen;
	struct stat st;
	rfs_pool *pool = NULL;
	bool is_bdev;
	int fd, ret;

	*out = NULL;
	fd = open(path, ((flags & RFS_OPEN_RDONLY) ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		rfs_log(RFS_LOG_ERR, "%s: cannot open: %s", path, strerror(-ret));
		return ret;
	}
	if (fstat(fd, &st) < 0) {
		ret = -errno;
		rfs_log(RFS_LOG_ERR, "%s: cannot stat: %s", path, strerror(-ret));
		goto fail;
	}
	is_bdev = S_ISBLK(st.st_mode);
	if (!is_bdev && !S_ISREG(st.st_mode)) {
		rfs_log(RFS_LOG_ERR, "%s: not a regular file or block device", path);
		ret = -EINVAL;
		goto fail;
	}
	size = (uint64_t)st.st_size;
	if (is_bdev && (ret = bdev_size(fd, path, &size)))
		goto fail;

	raw = malloc(RFS_SUPER_BLOCKS * RFS_BLOCK_SIZE);
	if (!raw) {
		ret = -ENOMEM;
		goto fail;
	}
	ret = raw_pread(fd, 0, raw, RFS_SUPER_BLOCKS * RFS_BLOCK_SIZE);
	if (ret < 0) {
		rfs_log(RFS_LOG_ERR, "%s: cannot read the superblocks: %s", path, strerror(-ret));
		goto fail;
	}
	ret = rfs_super_pick(path, raw, true, &report, sb);
	if (ret)
		goto fail;
	report.rdonly = flags & RFS_OPEN_RDONLY;
	gen = sb->generation;
	if (size < (sb->data_start << RFS_BLOCK_SHIFT) ||
	    size < (sb->high_water << RFS_BLOCK_SHIFT) ||
	    (is_bdev && size < (sb->total_blocks << RFS_BLOCK_SHIFT))) {
		uint64_t need = (is_bdev ? sb->total_blocks : sb->high_water) << RFS_BLOCK_SHIFT;

		rfs_log(RFS_LOG_ERR, "%s: truncated pool: %llu bytes, but the pool needs at least %llu",
			path, (unsigned long long)size, (unsigned long long)need);
		ret = -EINVAL;
		goto fail;
	}

	pool = calloc(1, sizeof(*pool));
	if (!pool || !(pool->path = strdup(path))) {
		ret = -ENOMEM;
		goto fail;
	}
	pool->flags = flags;
	pool->rdonly = flags & RFS_OPEN_RDONLY;
	rfs_pool_lock_init(pool);
	rfs_io_init(&pool->io, fd, pool->path, is_bdev, flags & RFS_OPEN_CRASHSIM, size);
	fd = -1;
	ret = rfs_cache_init(&pool->cache);
	if (ret)
		goto fail;
	pool->total_blocks = sb->total_blocks;
	rfs_io_map(&pool->io, sb->total_blocks << RFS_BLOCK_SHIFT);
	pool->bitmap_start = sb->bitmap_start;
	pool->bitmap_blocks = sb->bitmap_blocks;
	pool->data_start = sb->data_start;
	pool->high_water = sb->high_water;
	pool->created = sb->created;
	memcpy(pool->uuid, sb->uuid, sizeof(pool->uuid));
	memcpy(pool->roots, sb->roots, sizeof(pool->roots));
	pool->committed_gen = gen;
	ret = rfs_alloc_init(pool);
	if (!ret)
		ret = load_bitmap(pool, gen, sb);
	if (ret) {
		rfs_log(RFS_LOG_ERR, "%s: cannot load the allocation bitmap", path);
		goto fail;
	}
	/* The other bitmap copy may hold a crashed commit's garbage. */
	pool->full_bitmap_write = true;
	pool->super = report;
	if (!pool->rdonly)
		rfs_super_repair(pool, raw);
	rfs_super_describe(&pool->super, log_super_line, pool);
	free(raw);
	*out = pool;
	return 0;

fail:
	free(raw);
	if (pool)
		rfs_pool_close(pool);
	if (fd >= 0)
		close(fd);
	return ret;
}

void rfs_pool_close(rfs_pool *pool)
{
	if (!pool)
		return;
	/* No commit: uncommitted changes vanish as in a crash.  The crash
	 * simulation overlay (unflushed writes) is discarded likewise. */
	rfs_cache_destroy(&pool->cache);
	rfs_alloc_destroy(pool);
	if (pool->path) {
		if (pool->io.fd >= 0)
			close(pool->io.fd);
		rfs_io_destroy(&pool->io);
		pthread_rwlock_destroy(&pool->lock);
		pthread_mutex_destroy(&pool->gate);
	}
	free(pool->path);
	free(pool);
}

int rfs_pool_check_writable(const rfs_pool *pool)
{
	if (pool->io.crashed)
		return -EIO;
	if (pool->rdonly || pool->failed)
		return -EROFS;
	return 0;
}

const struct rfs_super_report *rfs_pool_super_report(const rfs_pool *pool)
{
	return &pool->super;
}

int rfs_pool_super_inspect(const char *path, struct rfs_super_report *r)
{
	struct rfs_super_disk sb;
	uint8_t *raw = malloc(RFS_SUPER_BLOCKS * RFS_BLOCK_SIZE);
	int fd, ret;

	memset(r, 0, sizeof(*r));
	if (!raw)
		return -ENOMEM;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
	} else {
		ret = raw_pread(fd, 0, raw, RFS_SUPER_BLOCKS * RFS_BLOCK_SIZE);
		close(fd);
	}
	if (!ret)
		ret = rfs_super_pick(path, raw, false, r, &sb);
	if (!ret)
		r->rdonly = true;
	free(raw);
	return ret;
}

uint64_t rfs_pool_committed_gen(const rfs_pool *pool)
{
	return pool->committed_gen;
}

uint64_t rfs_pool_txn_gen(const rfs_pool *pool)
{
	return pool->committed_gen + 1;
}

uint64_t rfs_pool_root(const rfs_pool *pool, unsigned slot)
{
	RFS_ASSERT_LOCK(rfs_pool_holds_lock(pool));
	return slot < RFS_ROOT_SLOTS ? pool->roots[slot] : 0;
}

void rfs_pool_set_root(rfs_pool *pool, unsigned slot, uint64_t blocknr)
{
	RFS_ASSERT_LOCK(rfs_pool_holds_wrlock(pool));
	if (slot < RFS_ROOT_SLOTS && pool->roots[slot] != blocknr) {
		pool->roots[slot] = blocknr;
		pool->changes++;
	}
}

const char *rfs_pool_path(const rfs_pool *pool)
{
	return pool->path;
}

uint64_t rfs_pool_free_blocks(const rfs_pool *pool)
{
	RFS_ASSERT_LOCK(rfs_pool_holds_lock(pool));
	/* used_blocks includes the fixed region below data_start; claimed
	 * blocks are taken although no commit counts them yet. */
	uint64_t used = pool->used_blocks + pool->pending_blocks + pool->claimed_blocks;

	return pool->total_blocks > used ? pool->total_blocks - used : 0;
}

uint64_t rfs_pool_data_free_blocks(const rfs_pool *pool)
{
	RFS_ASSERT_LOCK(rfs_pool_holds_lock(pool));
	uint64_t f = rfs_pool_free_blocks(pool);

	return f > pool->reserve ? f - pool->reserve : 0;
}

uint64_t rfs_pool_pending_blocks(const rfs_pool *pool)
{
	RFS_ASSERT_LOCK(rfs_pool_holds_lock(pool));
	return pool->pending_blocks;
}

void rfs_pool_stats(rfs_pool *pool, struct rfs_pool_stats *st)
{
	/* The counters are W: a writer may be changing them. */
	bool lock = !rfs_pool_holds_lock(pool);
	uint64_t cached, dirty, reads;

	if (lock)
		rfs_pool_rdlock(pool);
	memset(st, 0, sizeof(*st));
	st->total_blocks = pool->total_blocks;
	st->data_start = pool->data_start;
	st->used_blocks = pool->used_blocks;
	st->pending_free = pool->pending_blocks;
	st->high_water = pool->high_water;
	rfs_cache_counts(&pool->cache, &cached, &dirty, &reads);
	st->cache_blocks = cached;
	st->dirty_blocks = dirty;
	st->block_reads = reads;
	st->commits = pool->commits;
	st->flushes = pool->io.flushes;
	st->meta_allocs = pool->meta_allocs;
	st->warm_blocks = atomic_load(&pool->warm_blocks);
	if (lock)
		rfs_pool_unlock(pool);
}

void rfs_pool_crash(rfs_pool *pool, enum rfs_crash_mode mode, uint64_t seed)
{
	if (!pool->io.crashsim)
		rfs_log(RFS_LOG_WARN, "%s: crash simulation needs RFS_OPEN_CRASHSIM; closing",
			pool->path);
	else if (!pool->io.crashed)
		rfs_io_crash(&pool->io, mode, seed);
	rfs_pool_close(pool);
}

void rfs_pool_crash_at_flush(rfs_pool *pool, uint64_t n, enum rfs_crash_mode mode, uint64_t seed)
{
	if (!pool->io.crashsim) {
		rfs_log(RFS_LOG_WARN, "%s: crash simulation needs RFS_OPEN_CRASHSIM", pool->path);
		return;
	}
	pool->io.crash_flush_n = n;
	pool->io.crash_mode = mode;
	pool->io.crash_seed = seed;
}

bool rfs_pool_crashed(const rfs_pool *pool)
{
	return pool->io.crashed;
}

void rfs_pool_fail_writes_after(rfs_pool *pool, uint64_t n)
{
	pool->io.fail_after = n;
}

void rfs_pool_uuid(const rfs_pool *pool, uint8_t out[16])
{
	memcpy(out, pool->uuid, sizeof(pool->uuid));
}
