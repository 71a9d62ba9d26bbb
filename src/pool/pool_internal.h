/*
 * Internal state of the pool layer, shared by the files of src/pool/.
 * Nothing outside src/pool/ (except the pool's own internal tests) may
 * include this header.
 */
#ifndef RFS_POOL_INTERNAL_H
#define RFS_POOL_INTERNAL_H

#include "reflinkfs/log.h"
#include "reflinkfs/pool.h"

#include <assert.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
	      "reflinkfs writes its on-disk structures in host order and assumes little-endian");
static_assert(sizeof(struct rfs_block_header) == RFS_BLOCK_HEADER_SIZE,
	      "block header layout");

#define RFS_SUPER_MAGIC "RFLNKFS" /* 8 bytes with the NUL */
/* Slot s, copy c of the superblock (pool.h) is block s + 2 * c. */
#define RFS_SUPER_BLOCKS (RFS_SUPER_SLOTS * RFS_SUPER_COPIES)
#define RFS_BITMAP_START RFS_SUPER_BLOCKS
/* Bits of allocation state held by one bitmap page (after its header). */
#define RFS_BITS_PER_PAGE ((RFS_BLOCK_SIZE - RFS_BLOCK_HEADER_SIZE) * 8u)
#define RFS_WORDS_PER_PAGE (RFS_BITS_PER_PAGE / 64u)
static_assert(RFS_BITS_PER_PAGE % 64 == 0, "bitmap pages hold whole words");

#define RFS_MIN_BLOCKS 4096u /* RFS_POOL_MIN_BYTES */
static_assert(RFS_MIN_BLOCKS * (uint64_t)RFS_BLOCK_SIZE == RFS_POOL_MIN_BYTES,
	      "RFS_MIN_BLOCKS is RFS_POOL_MIN_BYTES in blocks");
#define RFS_DEFAULT_CACHE_LIMIT 65536u

/*
 * Superblock, at offset 0 of blocks 0 to 3 (slot s, copy c in block
 * s + 2 * c); the rest of the block is zero.  Not a metadata block header:
 * the magic comes first so that tools like blkid can recognise a pool by
 * its first bytes.
 */
struct rfs_super_disk {
	char magic[8]; /* RFS_SUPER_MAGIC */
	uint32_t version;
	uint32_t block_size;
	uint64_t generation;
	uint64_t total_blocks;
	uint64_t bitmap_start;
	uint64_t bitmap_blocks; /* per copy */
	uint64_t data_start;
	uint64_t roots[RFS_ROOT_SLOTS];
	uint64_t used_blocks;
	uint64_t high_water;
	uint8_t uuid[16];
	uint64_t created; /* seconds since the epoch */
	uint32_t crc;     /* rfs_super_csum: the whole block, crc taken as 0 */
	uint32_t copy;    /* 0 or 1: which copy of its slot (self-location) */
};
static_assert(sizeof(struct rfs_super_disk) == 168, "superblock layout");

/*
 * Locking of the pool's state, field by field.  Words used below:
 *   fixed   set by open/create, never changed while the pool is in use;
 *   W       changed only with the pool's write lock held, read with the
 *           pool's lock held (either kind); the commit's write-out reads
 *           them under the read lock with the gate held (no writer runs);
 *   gate    changed and read only by holders of the writers' gate: the
 *           writers and the commit (one at a time), while readers may run;
 *   tests   fault injection and crash simulation, driven by one thread.
 * See docs/ARCHITECTURE.md, "Locking model".
 */

/* ---- I/O layer (io.c) ------------------------------------------------ */

struct rfs_ovl_ent {
	uint64_t blk;
	uint8_t *data;
};

struct rfs_io {
	int fd;           /* fixed */
	const char *path; /* fixed */
	bool is_bdev;     /* fixed */
	bool crashsim;    /* fixed */
	/* Simulated crash happened: all I/O fails.  tests: set by a flush
	 * (the commit) or rfs_io_crash, read by every I/O (claimed data
	 * writes too, which hold no lock: atomic). */
	_Atomic bool crashed;
	/* Length of a regular file, as last known.  Raised by every write,
	 * claimed data writes included (no lock held): atomic. */
	_Atomic uint64_t file_size;

	/* Crash simulation overlay: unflushed block writes, in order.  All
	 * under lock (readers look blocks up while the commit writes). */
	pthread_mutex_t lock;
	struct rfs_ovl_ent *ovl;
	size_t ovl_n, ovl_cap;
	int32_t *ovl_hash; /* open addressing: index into ovl or -1 */
	size_t ovl_hcap;   /* power of two */

	/* tests: writes still allowed (UINT64_MAX = no limit); counted
	 * down by every write, claimed ones included: atomic. */
	_Atomic uint64_t fail_after;
	uint64_t crash_flush_n; /* gate (tests), like crash_mode and crash_seed */
	int crash_mode;
	uint64_t crash_seed;
	/* Changed by the commit's flushes (gate + read lock) while
	 * rfs_pool_stats may read it under the read lock: atomic. */
	_Atomic uint64_t flushes;

	/* The pool mapped read-only (map.c), NULL when it could not be:
	 * set at open, before any other thread runs, and unmapped at
	 * close.  map_faults: copies a SIGBUS cut short (tests), counted
	 * by any reader: atomic. */
	const uint8_t *map;
	uint64_t map_len;
	_Atomic uint64_t map_faults;
	/* Two bits per block (map.c): read before, and mapped.
	 * seen_leaves pointers, fixed while mapped, to leaves allocated on
	 * first use (published by compare-and-swap) whose words any
	 * reader sets: atomic. */
	_Atomic(uint64_t *) *seen;
	size_t seen_leaves;
};

void rfs_io_init(struct rfs_io *io, int fd, const char *path, bool is_bdev,
		 bool crashsim, uint64_t file_size);
void rfs_io_destroy(struct rfs_io *io);
int rfs_io_read(struct rfs_io *io, uint64_t off, void *buf, size_t len);
/* As rfs_io_read, from the pool's mapping when it covers the range
 * (data blocks: no system call), else, or when the copy faults, with
 * pread(2). */
int rfs_io_read_data(struct rfs_io *io, uint64_t off, void *buf, size_t len);
int rfs_io_write(struct rfs_io *io, uint64_t off, const void *buf, size_t len);
int rfs_io_flush(struct rfs_io *io);
int rfs_io_extend(struct rfs_io *io, uint64_t size);
/* Give [off, off+len) of a pool file back to the backing filesystem
 * (PUNCH_HOLE, size kept).  No-op for devices and crash simulation. */
int rfs_io_punch(struct rfs_io *io, uint64_t off, uint64_t len);
void rfs_io_crash(struct rfs_io *io, int mode, uint64_t seed);

/* ---- the read-only mapping (map.c) ------------------------------------- */

/* The longest range read from the map, in blocks.  A longer one saves
 * one system call among many pages: mapping its pages costs more than
 * that until it has been read some 25 times (a 128 KiB read, in this
 * guest: bench/README.md, "Session 15"). */
#define RFS_MAP_MAX_BLOCKS 4

/* Map [0, len) of the pool read-only for rfs_io_read_data, and make the
 * SIGBUS guard the process's SIGBUS handler (again, if another took its
 * place since).  Where either cannot be had, logs
 * why at debug level and leaves io->map NULL: reads use pread(2). */
void rfs_io_map(struct rfs_io *io, uint64_t len);
/* Undo rfs_io_map (a no-op when nothing is mapped). */
void rfs_io_unmap(struct rfs_io *io);
/* Copy [off, off + len) of the pool from the mapping into buf.  Returns
 * false, buf's contents undefined, when nothing is mapped, when the
 * range is longer than RFS_MAP_MAX_BLOCKS or not below the file's known
 * length, when it is the first read of one of its blocks (noted: the
 * next maps them), or when the copy faulted (SIGBUS: logged, counted in
 * io->map_faults): read it with pread(2). */
bool rfs_io_map_copy(struct rfs_io *io, uint64_t off, void *buf, size_t len);

/* ---- block cache (cache.c) ------------------------------------------- */

/*
 * A cached block.  buf.blocknr is set before the entry is inserted and
 * does not change while it is in the table.  buf.data: a clean block's
 * bytes never change (filled before insertion); a dirty block's change
 * only under the pool's write lock (readers and the commit's write-out
 * read them under the read lock).
 */
struct rfs_cent {
	struct rfs_buf buf; /* first member: what callers see */
	struct rfs_cent *hnext; /* shard lock (slab_lock while on the free list) */
	/* On the LRU list when clean and unpinned, on the dirty list when
	 * dirty, on no list when clean and pinned.  The lock of the shard
	 * the block number hashes to ("shard lock"). */
	struct rfs_cent *prev, *next;
	uint32_t pins; /* shard lock */
	/* Changed with the shard lock and the writers' gate held (writers,
	 * and the commit once its generation is durable), so either one is
	 * enough to read it (rfs_buf_is_dirty: writers only). */
	bool dirty;
	bool orphan; /* shard lock: dropped from the table while pinned */
};

struct rfs_clist {
	struct rfs_cent *head, *tail;
	size_t n;
};

/* Cache entries and their 4 KiB buffers come from slabs of
 * RFS_SLAB_BLOCKS, so a cached block costs 4 KiB plus its entry: one
 * aligned_alloc per block cost about 11 KiB of resident memory each. */
#define RFS_SLAB_BLOCKS 256
struct rfs_slab {
	struct rfs_slab *next;
	uint8_t *mem;
	struct rfs_cent ents[RFS_SLAB_BLOCKS];
};

/*
 * One shard of the cache: the blocks whose number hashes to it, with their
 * own table, lists and mutex.  Every tree level a reader walks is a
 * lookup and a release in the block's shard, so readers of different
 * blocks rarely meet on a lock (one mutex for the whole cache made every
 * FUSE worker queue on it at every level).
 */
struct rfs_cshard {
	pthread_mutex_t lock;
	/* All of the following: lock. */
	struct rfs_cent **buckets;
	size_t nbuckets; /* power of two */
	unsigned shift;  /* 64 - log2(nbuckets) */
	size_t count;    /* entries in the table */
	struct rfs_clist lru;
	struct rfs_clist dirty;
	uint64_t limit; /* clean blocks kept: this shard's share of the cache's */
	uint64_t reads; /* rfs_buf_read calls, hits and misses */
	uint64_t locked; /* times shard_lock took the mutex (tests) */
} __attribute__((aligned(64)));

#define RFS_CACHE_SHARD_BITS 4
#define RFS_CACHE_SHARDS (1u << RFS_CACHE_SHARD_BITS)

/* The cache has its own mutexes (one per shard), so readers holding only
 * the pool's read lock can load and evict blocks concurrently. */
struct rfs_cache {
	pthread_mutex_t slab_lock; /* taken after a shard's lock, never before */
	struct rfs_slab *slabs;     /* slab_lock */
	struct rfs_cent *free_ents; /* slab_lock; chained through hnext */
	struct rfs_cshard shard[RFS_CACHE_SHARDS];
};

/* The pool whose write lock the calling thread holds (the last one it
 * took, when it holds several; NULL when none): never one it does not
 * hold.  Set and cleared by lock.c; read by the cache, which skips its
 * shard mutexes for the write lock's holder (cache.c, shard_lock). */
extern _Thread_local const rfs_pool *rfs_t_wrpool;

int rfs_cache_init(struct rfs_cache *c);
void rfs_cache_destroy(struct rfs_cache *c);
/* Forget the cached copy of blocknr (it was freed). */
void rfs_cache_drop(struct rfs_pool *pool, uint64_t blocknr);
/* Called by commit once every dirty block is durable (gate held). */
void rfs_cache_mark_clean(struct rfs_pool *pool);
/* The dirty blocks, in a malloc'ed array (*v, *n; NULL and 0 when there
 * are none): -ENOMEM.  Gate held (no new dirty block meanwhile). */
int rfs_cache_dirty(struct rfs_pool *pool, struct rfs_cent ***v, size_t *n);
/* Cached, dirty blocks and rfs_buf_read calls, summed over the shards. */
void rfs_cache_counts(struct rfs_cache *c, uint64_t *cached, uint64_t *dirty,
		      uint64_t *reads);

/* ---- allocation (alloc.c) -------------------------------------------- */

struct rfs_extent {
	uint64_t start, n;
};

int rfs_alloc_init(rfs_pool *pool);
void rfs_alloc_destroy(rfs_pool *pool);
/* New pool: only the fixed region below data_start is allocated. */
void rfs_alloc_format(rfs_pool *pool);
/* persist was loaded from disk (high_water set): check it, derive the rest. */
int rfs_alloc_loaded(rfs_pool *pool, uint64_t sb_used);
/* Allocate one block for metadata (may use the reserve). */
int rfs_alloc_meta(rfs_pool *pool, uint64_t *blocknr);
/* The commit made its generation durable: give runs of freed blocks
 * (16 or more) back to the backing filesystem (hole punch), or keep
 * them warm for a background commit (defer_punch); first punch what is
 * still free of the warm runs of the commit before.  Gate held, before
 * rfs_alloc_durable makes this commit's frees usable. */
void rfs_alloc_punch_freed(rfs_pool *pool);
/* Punch what is still free of the warm runs and forget them.  Gate. */
void rfs_alloc_punch_warm(rfs_pool *pool);
/* Generation gen is durable (gate and read lock held): fresh blocks
 * become committed, pending frees allocatable. */
void rfs_alloc_durable(rfs_pool *pool, uint64_t gen);
/* Then, under the write lock: the pending list and its count (which
 * readers see in statfs) are emptied. */
void rfs_alloc_committed(rfs_pool *pool);
/* Fill one on-disk bitmap page (header and bits) for copy/page of gen. */
void rfs_bitmap_page_fill(rfs_pool *pool, uint64_t page, unsigned copy,
			  uint64_t gen, uint8_t *block);
uint64_t rfs_bitmap_pages_used(const rfs_pool *pool);
/* Load page from a verified on-disk bitmap block. */
void rfs_bitmap_page_load(rfs_pool *pool, uint64_t page, const uint8_t *block);

static inline bool rfs_bit_test(const uint64_t *map, uint64_t bit)
{
	return (map[bit >> 6] >> (bit & 63)) & 1;
}

/* ---- checksums (crc.c) ------------------------------------------------ */

/* isa-l's crc32_iscsi(buf, len, seed): for seed ~0 the result is the
 * bitwise NOT of the standard crc32c.  Chains: pass the last result. */
uint32_t rfs_crc32c(const void *buf, size_t len, uint32_t seed);
#define RFS_CRC_SEED 0xffffffffu
/* crc32c of a metadata block with its crc field taken as zero. */
uint32_t rfs_meta_csum(const uint8_t *block);
/* crc32c of a whole superblock block with its crc field taken as zero. */
uint32_t rfs_super_csum(const uint8_t *block);

/* Verify a metadata block read from disk; logs and returns -EIO. */
int rfs_meta_verify(const rfs_pool *pool, uint64_t blocknr, const uint8_t *block,
		    uint8_t type, uint64_t expect_gen, uint64_t max_gen);

/* ---- locks (lock.c) ---------------------------------------------------- */

/* Initialise the pool's lock and gate (open). */
void rfs_pool_lock_init(rfs_pool *pool);
/* Does the calling thread hold the writers' gate? */
bool rfs_pool_holds_gate(const rfs_pool *pool);
/* The commit's write-out: write lock -> read lock and back, the gate
 * held throughout (the per-thread lock record follows). */
void rfs_pool_lock_downgrade(rfs_pool *pool);
void rfs_pool_lock_upgrade(rfs_pool *pool);
/* Lock-wait accounting (lockwait.c): take m, adding the time blocked to
 * the calling thread's waits of kind; a write-lock span begins / ends
 * (write lock held). */
void rfs_lockw_mutex(pthread_mutex_t *m, unsigned kind);
void rfs_lockw_span_begin(rfs_pool *pool);
void rfs_lockw_span_end(rfs_pool *pool);

/* ---- the pool --------------------------------------------------------- */

struct rfs_pool {
	char *path;     /* fixed */
	unsigned flags; /* fixed */
	bool rdonly;    /* W: opened read-only, or frozen (freeze.c) */
	bool failed;    /* W: a commit failed: read-only from now on */
	struct rfs_io io;
	pthread_rwlock_t lock;
	/* Writers' gate: held by every writer (with the write lock) and by
	 * a commit for its whole length, so a commit can write out under the
	 * read lock -- readers go on, writers wait -- and no writer slips in
	 * between its phases.  See rfs_pool_commit.  Taken before lock. */
	pthread_mutex_t gate;
	/* Bumped at every acquisition of the write lock (rfs_pool_wrlock,
	 * _trywrlock, _lock_upgrade, a global writer's resume), with it
	 * held; read with the lock held (rfs_pool_change_gen) or with none
	 * (rfs_pool_change_gen_now): atomic. */
	_Atomic uint64_t change_gen;
	/* The file generation a local writer bumps instead
	 * (rfs_pool_wrlock_local), NULL otherwise.  Gate. */
	_Atomic uint64_t *local_gen;
	/* What rfs_pool_commit's write-lock acquisitions bump instead of
	 * change_gen: a commit changes no tree and no block a reader sees
	 * (see rfs_pool_commit), so READ's copies stay valid across it.
	 * Atomic; nobody reads it. */
	_Atomic uint64_t commit_gen;
	/* Write-lock spans (lockwait.c): when the current one began, and
	 * the records per holder's name.  Both: write lock. */
	uint64_t wr_since;
	struct rfs_wrhold wrhold[RFS_WRHOLD_SLOTS];

	/* Geometry, fixed at create (and fixed while open). */
	uint64_t total_blocks;
	uint64_t bitmap_start;
	uint64_t bitmap_blocks;
	uint64_t data_start;
	uint8_t uuid[16];
	uint64_t created;

	uint64_t committed_gen;         /* W */
	uint64_t roots[RFS_ROOT_SLOTS]; /* W */

	/* Allocation state (alloc.c), all W.  persist: what the next commit
	 * writes; avail: what may not be handed out (persist, plus blocks
	 * freed in a transaction not yet durable, plus claimed blocks);
	 * fresh: allocated in the running transaction.  Claims change avail,
	 * avail_used, page_gen, high_water, hint and claimed_blocks holding
	 * only the gate and the read lock (rfs_pool_gate_lock): of those,
	 * readers without the gate read only high_water (rfs_pool_stats),
	 * hence atomic. */
	uint64_t nwords; /* fixed */
	uint64_t *persist, *avail, *fresh;
	uint64_t *page_gen; /* per bitmap page: gen of its last change */
	bool full_bitmap_write; /* first commit after open: write all pages */
	uint64_t used_blocks;   /* popcount(persist) */
	uint64_t avail_used;    /* popcount(avail) */
	_Atomic uint64_t high_water;
	uint64_t hint; /* no clear bit in avail below this */
	uint64_t reserve;
	/* rfs_pool_meta_from_reserve; write lock.  meta_allocs counts
	 * metadata block allocations; credit_base is its value when the
	 * running operation began. */
	bool credit_on;
	uint64_t meta_allocs, credit_base;
	/* Tests (rfs_pool_fail_meta_allocs_after): metadata allocations
	 * that may still succeed before each one fails with -ENOSPC;
	 * UINT64_MAX: never.  Write lock. */
	uint64_t meta_fail_after;
	/* Changes to the running transaction: block allocations, frees,
	 * tree nodes changed in place (rfs_pool_note_change).  An
	 * operation compares it to decide whether a failure left it
	 * halfway.  Write lock. */
	uint64_t changes;
	/* Items changed in the running transaction (rfs_pool_note_item):
	 * what makes a failed operation halfway once its shadows are
	 * stored back.  Write lock. */
	uint64_t items;
	struct rfs_extent *pending;
	size_t npending, pending_cap;
	uint64_t pending_blocks;
	/* Claimed blocks (rfs_claim_data): in avail, not in persist. */
	uint64_t claimed_blocks;
	/* Runs (of PUNCH_MIN_BLOCKS or more) the last background commit
	 * freed and did not punch (alloc.c, rfs_alloc_punch_freed), and
	 * their length in blocks.  Gate; warm_blocks is also read by
	 * rfs_pool_stats under the read lock alone: atomic. */
	struct rfs_extent *warm;
	size_t nwarm, warm_cap;
	_Atomic uint64_t warm_blocks;
	/* The commit in progress is a background one: its freed runs
	 * stay warm.  Gate. */
	bool defer_punch;

	struct rfs_cache cache; /* its own locks, see struct rfs_cache */
	uint64_t commits;       /* W */
	/* rfs_pool_set_precommit; W */
	int (*precommit)(void *arg);
	void *precommit_arg;

	/* What open found in the superblock copies; set by open, constant
	 * afterwards (no lock). */
	struct rfs_super_report super;
};

/* bitmap_blocks and data_start of a pool of total blocks (super.c). */
void rfs_geometry(uint64_t total, uint64_t *bitmap_blocks, uint64_t *data_start);

/* ---- the filesystem holding a pool file (backing.c) ---- */
/* Can that filesystem (and RLIMIT_FSIZE) take a file of size bytes?
 * Extends fd to size (the caller truncates it again); 0, or -EFBIG (or
 * another -errno) with a log line naming the limit. */
int rfs_backing_check(const char *path, int fd, uint64_t size);
/* Log why writing the fixed region of fixed_bytes ran out of space. */
void rfs_backing_explain_enospc(const char *path, int fd, uint64_t fixed_bytes);
/* Superblock image of generation gen, copy copy (super.c). */
void rfs_super_fill(const rfs_pool *pool, uint64_t gen, unsigned copy, uint8_t *block);
/* Block image of sb as copy copy: crc and copy field set, tail zeroed. */
void rfs_super_encode(const struct rfs_super_disk *sb, unsigned copy, uint8_t *block);

/* ---- superblock copies (super_copies.c) -------------------------------- */

/*
 * Judge the RFS_SUPER_BLOCKS blocks in raw (read from offset 0 of path)
 * and choose the superblock to use: fills *r and *sb.  Returns 0;
 * -EPROTONOSUPPORT when a copy is of a newer format, or no copy is valid
 * and one is of an older format; -EINVAL when no copy is valid.  Logs
 * why it fails only when log is set.
 */
int rfs_super_pick(const char *path, const uint8_t *raw, bool log,
		   struct rfs_super_report *r, struct rfs_super_disk *sb);
/* Read-write open: rewrite each damaged or stale copy whose slot has a
 * valid copy, then flush; records the outcome in pool->super. */
void rfs_super_repair(rfs_pool *pool, const uint8_t *raw);


#endif
