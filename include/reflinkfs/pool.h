/*
 * reflinkfs pool: the pool file or block device, its superblocks, the
 * block cache, space allocation, deferred frees, data blocks and the
 * transaction commit.  Nothing here knows about trees or FUSE; the tree
 * layer (tree.h) builds on it.
 *
 * Conventions: functions return 0 or a negative errno.  Every error that
 * concerns a block is also logged (see log.h) with the block number.
 *
 * Locking model (see docs/ARCHITECTURE.md): one reader/writer lock per
 * pool.  Mutating calls (tree updates, allocation, commit) need the write
 * lock; lookups need at least the read lock.  The block cache has its own
 * internal mutex, so concurrent readers may load blocks.  rfs_pool_commit
 * takes the write lock itself.
 */
#ifndef REFLINKFS_POOL_H
#define REFLINKFS_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdatomic.h>

#define RFS_BLOCK_SIZE 4096u
#define RFS_BLOCK_SHIFT 12
/* 2: each superblock slot has a mirror copy (blocks 2 and 3); the
 * superblock checksum covers the whole block.  See docs/FORMAT.md. */
#define RFS_FORMAT_VERSION 2u

/* Number of root slots kept in the superblock. */
#define RFS_ROOT_SLOTS 8
/* Well-known root slots. */
enum rfs_root_slot {
	RFS_ROOT_CATALOG = 0,  /* catalog tree: id -> user tree root */
	RFS_ROOT_REFCOUNT = 1, /* shared-block refcount tree */
	RFS_ROOT_DROPQ = 2,    /* drop queue: trees being freed (tree.h) */
};

/* Block types, stored in every metadata block header. */
enum rfs_block_type {
	RFS_BT_SUPER = 1,
	RFS_BT_BITMAP = 2,
	RFS_BT_NODE = 3,
};

#define RFS_META_MAGIC 0x52464d42u /* "RFMB" */

/*
 * Header at offset 0 of every metadata block (tree nodes, bitmap pages).
 * The crc32c covers the whole block with the crc field taken as zero.
 * Little-endian on disk; the code asserts a little-endian host.
 */
struct rfs_block_header {
	uint32_t magic;
	uint32_t crc;
	uint64_t blocknr;    /* self-location */
	uint64_t generation; /* transaction that wrote it */
	uint64_t owner;      /* kind of tree that owns it (informational) */
	uint8_t type;        /* enum rfs_block_type */
	uint8_t level;       /* 0 = leaf */
	uint16_t reserved0;
	uint32_t reserved1;
};
#define RFS_BLOCK_HEADER_SIZE 40u

typedef struct rfs_pool rfs_pool;

/* Flags for rfs_pool_open / rfs_pool_create. */
enum {
	RFS_OPEN_RDONLY = 1u << 0,
	/* Keep every write not yet flushed in memory, so a crash can be
	 * simulated (rfs_pool_crash).  For tests. */
	RFS_OPEN_CRASHSIM = 1u << 1,
	/* mkfs: overwrite an existing pool or filesystem signature. */
	RFS_CREATE_FORCE = 1u << 2,
};

/* Smallest and largest pool, in bytes (a size is rounded down to whole
 * blocks).  The largest keeps every byte offset of a pool below 2^63, what
 * pread/pwrite take; memory is the limit in practice (rfs_pool_mem_bytes). */
#define RFS_POOL_MIN_BYTES (16ull << 20)
#define RFS_POOL_MAX_BYTES (1ull << 62)

/* Bytes of memory the allocator of a pool of size_bytes keeps while the
 * pool is open: three bitmaps of one bit per block, and a generation per
 * bitmap page (about 1/10900 of the pool size). */
uint64_t rfs_pool_mem_bytes(uint64_t size_bytes);

/*
 * Create a new, empty pool at path (a regular file, created sparse and
 * grown on demand up to size_bytes, or a block device whose size is used
 * when size_bytes is 0).  Refuses to overwrite an existing pool or a known
 * filesystem signature unless RFS_CREATE_FORCE.  Returns 0 or -errno, and
 * logs what went wrong: -EINVAL below RFS_POOL_MIN_BYTES or beyond a
 * block device, -EFBIG beyond RFS_POOL_MAX_BYTES or the largest file the
 * filesystem holding path (or the process's RLIMIT_FSIZE) allows, -ENOMEM
 * when the allocator's bitmaps do not fit in memory, -ENOSPC when the
 * fixed region (superblocks, bitmaps) does not fit on that filesystem.
 * A file larger than the free space of its filesystem is fine: it is
 * sparse.
 */
int rfs_pool_create(const char *path, uint64_t size_bytes, unsigned flags);

/*
 * Open the pool at path: reads the four superblock copies, picks the
 * newest generation of which any copy is valid, checks the format
 * version, loads the allocation bitmap.  A read-write open rewrites every
 * damaged or stale copy whose slot has a valid copy, and flushes.  What
 * it found and repaired is kept (rfs_pool_super_report) and logged: a
 * warning per damaged or stale copy, an error when a newer commit may
 * have been lost.  On error *out is NULL and a message naming the path
 * was logged.
 */
int rfs_pool_open(const char *path, unsigned flags, rfs_pool **out);

/*
 * Close the pool.  Does NOT commit: uncommitted changes are discarded,
 * exactly as a crash would.  Frees all memory.
 */
void rfs_pool_close(rfs_pool *pool);

/*
 * Commit the running transaction: write every dirty block to its (fresh)
 * location, flush, write copy 0 of the other superblock slot, flush,
 * write its copy 1, flush.  Blocks freed
 * in this transaction become reusable afterwards.  Takes the write lock.
 * On error the pool turns read-only (every later mutation fails -EROFS),
 * and the last committed state stays intact on disk.
 */
int rfs_pool_commit(rfs_pool *pool);

/* Same as rfs_pool_commit, for a caller already holding the write lock. */
int rfs_pool_commit_locked(rfs_pool *pool);

/*
 * A background commit (the mount's periodic one): as rfs_pool_commit,
 * but the runs of freed blocks it would punch out of the pool file stay
 * backed until the next commit or rfs_pool_punch_warm, which punch what
 * of them is still free then.  Copy-on-write sends the writes after a
 * commit to the blocks it freed; a punched block costs the backing
 * filesystem a page allocation (and zeroing) when it is written again.
 * Takes the write lock.
 */
int rfs_pool_commit_background(rfs_pool *pool);

/*
 * Punch out of the pool file the runs the last background commit left
 * backed, as far as they are still free (what was allocated since is
 * skipped).  For the committer when there is nothing to commit, so that
 * the space of deleted files goes back one interval later.  Takes the
 * writers' gate; does nothing on a read-only or failed pool.
 */
void rfs_pool_punch_warm(rfs_pool *pool);

/*
 * Register fn(arg) (NULL: none) to run at the start of every commit,
 * write lock and gate held, before anything is written: a user that
 * keeps changes in memory stores them there, in the transaction being
 * committed (the change journal's records, src/journal).  An error from
 * fn fails the commit (the pool turns read-only, the last commit stays
 * intact).  fn must not change a volume's trees: a commit does not move
 * rfs_pool_change_gen, so readers' copies of records and extents stay
 * valid across it.  Write lock held.
 */
void rfs_pool_set_precommit(rfs_pool *pool, int (*fn)(void *arg), void *arg);

/*
 * Discard the running transaction: an operation failed halfway and its
 * partial change must never be committed.  The pool turns read-only
 * (every later mutation and commit fails -EROFS; the last commit stays
 * intact on disk) and why is logged with the pool's path.  Write lock
 * held.
 */
void rfs_pool_abort(rfs_pool *pool, const char *why);

/*
 * 0 when the pool accepts changes; -EROFS when it was opened read-only or
 * a commit failed (the last commit stays intact on disk; reopen to go on),
 * -EIO after a simulated crash.  Every mutating call checks it.
 */
int rfs_pool_check_writable(const rfs_pool *pool);

/*
 * Freeze (frozen = true) or thaw the pool at runtime, for a mount
 * remounted read-only or read-write.  Freezing commits the running
 * transaction and then makes the pool refuse every change like a pool
 * opened read-only (-EROFS from rfs_pool_check_writable, commits too);
 * it returns the commit's error, if any (the pool is frozen anyway).
 * Thawing fails with -EROFS for a pool opened read-only or turned
 * read-only by a failed commit.  Takes the write lock.
 */
int rfs_pool_set_frozen(rfs_pool *pool, bool frozen);

/* Take / release the pool's reader-writer lock.  Writers are preferred
 * (a stream of readers cannot starve them), so a thread holding the lock
 * in either mode must not take it again: it could wait for itself. */
void rfs_pool_rdlock(rfs_pool *pool);
void rfs_pool_wrlock(rfs_pool *pool);
void rfs_pool_unlock(rfs_pool *pool);
/* rfs_pool_wrlock unless another writer (or a commit) holds the writers'
 * gate: then false at once, nothing held.  For best-effort changes a
 * reader makes (atime) that must not wait behind a writer. */
bool rfs_pool_trywrlock(rfs_pool *pool);
/*
 * rfs_pool_wrlock for an operation that changes only one regular file's
 * record and extent tree (a data write): instead of the pool-wide change
 * generation (rfs_pool_change_gen) it bumps *gen, the file's own, here and
 * at each rfs_pool_write_resume until the unlock.  Copies keyed to both
 * generations (a READ's copies of another file's record and extents)
 * stay valid across it.  A holder that does anything beyond its file
 * (commit, reclaim, journal flush) calls rfs_pool_bump_global first.
 */
void rfs_pool_wrlock_local(rfs_pool *pool, _Atomic uint64_t *gen);
/* rfs_pool_trywrlock, local as rfs_pool_wrlock_local (an atime update). */
bool rfs_pool_trywrlock_local(rfs_pool *pool, _Atomic uint64_t *gen);
/* Bump the pool-wide change generation (write lock held): the holder of a
 * local write lock is about to change more than its file. */
void rfs_pool_bump_global(rfs_pool *pool);
/*
 * For a writer (write lock held) about to write data blocks it allocated:
 * rfs_pool_write_pause turns the write lock into a read lock, so readers
 * run while the data moves, and keeps the writers' gate, so no other
 * writer and no commit runs (the blocks stay in the running transaction,
 * and nothing can commit before the extent records naming them are in).
 * The caller must leave every tree consistent for readers first: only
 * rfs_data_write, reads and rfs_pool_write_resume may follow.
 * rfs_pool_write_resume takes the write lock back.
 */
void rfs_pool_write_pause(rfs_pool *pool);
void rfs_pool_write_resume(rfs_pool *pool);
/*
 * The writers' gate and the read lock, released by rfs_pool_unlock: for
 * work that changes only what gate holders look at -- claims
 * (rfs_claim_data, rfs_claim_drop) -- so that it keeps other writers and
 * the commit out but never makes a reader wait, nor waits for readers
 * to leave (as taking the write lock would).  It never waits on the
 * read lock: only gate holders take the lock for writing.
 */
void rfs_pool_gate_lock(rfs_pool *pool);

/*
 * A number that changes at every acquisition of the pool's write lock
 * (rfs_pool_wrlock, rfs_pool_trywrlock, and a paused writer's resume),
 * and only then -- except for a local writer (rfs_pool_wrlock_local),
 * which bumps its file's generation instead, and for rfs_pool_commit,
 * which changes nothing a reader decoded from a file's trees (it writes
 * dirty blocks out from staging copies, records frees that writers made,
 * and runs the precommit hook, which must keep to trees no reader's
 * copies come from: the fs's flushes the change journal).  Every change
 * of a tree, a block or the catalog is made under the write lock, so two
 * readings taken with the lock held (either kind) that are equal mean
 * that nothing changed in between: what a reader decoded from the
 * volumes' trees under the first is still what they hold.  The caller
 * holds the lock.
 */
uint64_t rfs_pool_change_gen(const rfs_pool *pool);
/*
 * The same number read with no lock held (a sequentially consistent
 * load), for a reader that validates copies without the lock, seqlock
 * style: equal readings before and after its work, with every change it
 * depends on bumping the generation before it changes anything, mean
 * that nothing it depends on changed in between.
 */
uint64_t rfs_pool_change_gen_now(const rfs_pool *pool);

/* Does the calling thread hold the pool's lock (read or write), or its
 * write lock?  For assertions ("caller holds the lock"); cheap. */
bool rfs_pool_holds_lock(const rfs_pool *pool);
bool rfs_pool_holds_wrlock(const rfs_pool *pool);

/*
 * Lock waits, for diagnosis (what a reader waits for; bench/README.md,
 * "Reader wait during a clone").  Each thread sums the time it spent
 * blocked acquiring the pool's locks, per kind; an uncontended
 * acquisition adds nothing and reads no clock.
 */
enum rfs_lockw_kind {
	RFS_LOCKW_POOL = 0,  /* the pool's lock, read side (a writer holds or waits) */
	RFS_LOCKW_SHARD = 1, /* a block-cache shard's mutex */
	RFS_LOCKW_SLAB = 2,  /* the block cache's slab mutex */
	RFS_LOCKW_NODES = 3, /* the fs's node table mutex */
	RFS_LOCKW_KINDS = 4,
};
/* The calling thread's waits (ns per kind) since its last call; resets them. */
void rfs_pool_lockw_take(uint64_t ns[RFS_LOCKW_KINDS]);
/* Add ns of waiting of kind to the calling thread's sums (for locks of
 * upper layers). */
void rfs_pool_lockw_add(unsigned kind, uint64_t ns);
/* CLOCK_MONOTONIC in ns. */
uint64_t rfs_pool_lockw_now(void);

/*
 * Write-lock spans per holder's name: the pool records how long each
 * span of its write lock lasted (acquisition to release, or to a
 * downgrade), under the name the holding thread set last with
 * rfs_pool_lock_label (NULL or never: "other").  The last slot sums the
 * names that found no slot.  Protected by the write lock.
 */
#define RFS_WRHOLD_SLOTS 8
struct rfs_wrhold {
	char what[24];     /* "" : unused slot */
	uint64_t count;    /* spans */
	uint64_t total_ns; /* their sum */
	uint64_t max_ns;   /* the longest */
	uint64_t over_1ms; /* spans over 1 ms */
};
/* Name the calling thread's following write-lock spans (a string that
 * outlives them); returns the previous name. */
const char *rfs_pool_lock_label(const char *what);
/* Copy the span records (takes the write lock; the caller holds no lock
 * of the pool), and empty them when reset. */
void rfs_pool_wrhold_stats(rfs_pool *pool, struct rfs_wrhold out[RFS_WRHOLD_SLOTS],
			   bool reset);

/* The pool's uuid (random, set at create): names the pool in cursors. */
void rfs_pool_uuid(const rfs_pool *pool, uint8_t out[16]);

/* Generation of the last committed transaction. */
uint64_t rfs_pool_committed_gen(const rfs_pool *pool);
/* Generation of the running transaction (committed_gen + 1). */
uint64_t rfs_pool_txn_gen(const rfs_pool *pool);

/* Root slot accessors: the block number of a root tree node (0 = empty). */
uint64_t rfs_pool_root(const rfs_pool *pool, unsigned slot);
void rfs_pool_set_root(rfs_pool *pool, unsigned slot, uint64_t blocknr);

/* Path the pool was opened from (for messages). */
const char *rfs_pool_path(const rfs_pool *pool);

/* Space and cache figures; takes the read lock unless the calling thread
 * holds the pool's lock already. */
struct rfs_pool_stats {
	uint64_t total_blocks;   /* configured size, in blocks */
	uint64_t data_start;     /* first allocatable block */
	uint64_t used_blocks;    /* allocated blocks (state being built) */
	uint64_t pending_free;   /* freed, reusable after the next commit */
	uint64_t high_water;     /* highest block ever allocated + 1 */
	uint64_t cache_blocks;   /* blocks held in the cache */
	uint64_t dirty_blocks;   /* dirty blocks waiting for commit */
	uint64_t commits;        /* commits since open */
	uint64_t flushes;        /* device flushes since open */
	uint64_t block_reads;    /* metadata block reads since open, cache
				  * hits included (what a walk touched) */
	uint64_t meta_allocs;    /* metadata block allocations since open */
	uint64_t warm_blocks;    /* freed by the last background commit, still
				  * backed (rfs_pool_punch_warm gives them back) */
};
void rfs_pool_stats(rfs_pool *pool, struct rfs_pool_stats *st);

/* Blocks that metadata allocations could still take right now (the
 * reserve included; blocks freed in the running transaction excluded).
 * Caller holds the pool's lock (either kind). */
uint64_t rfs_pool_free_blocks(const rfs_pool *pool);

/* Blocks that data allocations (rfs_alloc_data) can get, counting the
 * blocks freed in the running transaction as free (they are reusable
 * after the next commit): free blocks minus the metadata reserve.  What
 * statfs advertises.  Needs the pool lock (read at least). */
uint64_t rfs_pool_data_avail(const rfs_pool *pool);

/* Blocks a data allocation could get right now: rfs_pool_free_blocks
 * less the reserve kept for metadata and deletions.  Pool lock held. */
uint64_t rfs_pool_data_free_blocks(const rfs_pool *pool);

/*
 * From now (on) until called with off: the metadata blocks allocated
 * count as taken from the reserve, so data allocations may go that far
 * into it (up to half of it).  An operation writing exactly the
 * advertised free space (statfs f_bavail) then does not fail for the
 * few metadata blocks it needs.  Write lock held.
 */
void rfs_pool_meta_from_reserve(rfs_pool *pool, bool on);

/* Blocks freed in the running transaction: reusable once it commits.
 * Pool lock held. */
uint64_t rfs_pool_pending_blocks(const rfs_pool *pool);

/* Limit of clean blocks kept in the cache (default 256 MiB worth).  Takes
 * the read lock unless the caller holds the pool's lock. */
void rfs_pool_set_cache_limit(rfs_pool *pool, uint64_t blocks);

/* ---- superblock copies: what open found ------------------------------- */

/*
 * The superblock of generation g is kept in slot g % 2, twice: copy 0 in
 * block slot, copy 1 in block slot + 2.  A commit writes copy 0, flushes,
 * writes copy 1, flushes, so one damaged or torn block never loses a
 * completed commit (docs/FORMAT.md lists the crash cases).
 */
#define RFS_SUPER_SLOTS 2
#define RFS_SUPER_COPIES 2

enum rfs_super_state {
	RFS_SUPER_OK = 0,      /* valid and as new as the other copy of its slot */
	RFS_SUPER_STALE = 1,   /* valid, but older than the other copy of its slot */
	RFS_SUPER_DAMAGED = 2, /* unusable: no magic, bad checksum, bad fields */
};

struct rfs_super_copy {
	uint64_t blocknr;
	enum rfs_super_state state;
	/* The generation the copy holds; for a damaged copy the one it
	 * claims when its magic survived and the claim is possible (at most
	 * the generation in use + 1), else 0. */
	uint64_t generation;
	bool claimed;     /* damaged, but magic and a possible generation readable */
	bool repaired;    /* rewritten from the valid copy of its slot at open */
	int repair_error; /* rewriting it failed with this -errno (0: no) */
	char why[96];     /* damaged: what was wrong */
};

struct rfs_super_report {
	uint64_t generation; /* the generation open uses */
	unsigned slot, copy; /* and where it read it */
	bool rdonly;         /* opened read-only: nothing was rewritten */
	struct rfs_super_copy copies[RFS_SUPER_SLOTS][RFS_SUPER_COPIES];
	unsigned damaged, stale, repaired; /* copies in that state */
	/*
	 * The other slot has no valid copy, so it may have held the
	 * generation after the one in use, lost_gen (= generation + 1):
	 * that commit is then lost, and open fell back to the one before.
	 * False (and lost_gen 0) when both damaged copies still claim an
	 * older generation: only the fallback state is gone.
	 */
	bool lost_newer;
	uint64_t lost_gen;
};

enum rfs_super_health {
	RFS_SUPER_CLEAN = 0,    /* all four copies valid and up to date */
	RFS_SUPER_DEGRADED = 1, /* a copy damaged or stale; nothing lost */
	RFS_SUPER_LOST = 2,     /* a newer commit may be lost (fell back) */
};

/* What open found in the superblock copies, and what it repaired.  Set
 * once by rfs_pool_open and never changed: no lock needed. */
const struct rfs_super_report *rfs_pool_super_report(const rfs_pool *pool);

/*
 * Read and judge the superblock copies of the pool at path without
 * opening it (read-only, changes nothing, logs nothing; for fsck).
 * Returns 0 and fills *r, or -errno when the file cannot be read or holds
 * no usable superblock (rfs_pool_open then says why).
 */
int rfs_pool_super_inspect(const char *path, struct rfs_super_report *r);

enum rfs_super_health rfs_super_health(const struct rfs_super_report *r);

/*
 * Describe r for a person: one call of line per sentence, with a level of
 * log.h: RFS_LOG_INFO for the superblock in use and for repairs,
 * RFS_LOG_WARN per damaged or stale copy, RFS_LOG_ERR for a lost commit.
 * Every line names the blocks concerned; none names the pool.
 */
void rfs_super_describe(const struct rfs_super_report *r,
			void (*line)(void *arg, int level, const char *text),
			void *arg);

/* ---- block cache ---------------------------------------------------- */

/* A cached metadata block.  data points to RFS_BLOCK_SIZE bytes. */
struct rfs_buf {
	uint64_t blocknr;
	uint8_t *data;
};

/*
 * Read metadata block blocknr through the cache, pinned.  Verifies magic,
 * crc32c, self-location, type, and generation: not newer than the running
 * transaction, and equal to expect_gen when expect_gen != 0.  Any mismatch
 * gives -EIO and a log line naming the block and what was wrong.
 */
int rfs_buf_read(rfs_pool *pool, uint64_t blocknr, uint8_t type,
		 uint64_t expect_gen, struct rfs_buf **out);

/*
 * Allocate a fresh block in the running transaction and return it pinned,
 * zeroed, dirty, with its header filled (type, level, owner, blocknr,
 * generation = txn gen).  -ENOSPC when the pool is full.
 */
int rfs_buf_new(rfs_pool *pool, uint8_t type, uint8_t level, uint64_t owner,
		struct rfs_buf **out);

/* True when buf was allocated in the running transaction (may be modified
 * in place); false when it belongs to committed state (must be shadowed). */
bool rfs_buf_is_dirty(const rfs_pool *pool, const struct rfs_buf *buf);

/*
 * Structural check for metadata blocks of one type, run on every block of
 * that type read from disk (after the checksum; not on cache hits).  It
 * returns NULL when the block is sane, else a short description: the read
 * then fails with -EIO and a log line naming the block.  Process-wide; the
 * tree layer registers its node check for RFS_BT_NODE.
 */
typedef const char *(*rfs_block_verify_fn)(const uint8_t *data);
void rfs_pool_set_verifier(uint8_t type, rfs_block_verify_fn fn);

/* Unpin a buffer obtained from rfs_buf_read / rfs_buf_new. */
void rfs_buf_put(rfs_pool *pool, struct rfs_buf *buf);

/* Generation stored in a block header. */
uint64_t rfs_buf_gen(const struct rfs_buf *buf);

/* ---- allocation ------------------------------------------------------ */

/*
 * Allocate a contiguous run of up to want blocks (at least 1) for data.
 * *start and *got receive the run.  -ENOSPC when nothing is free.
 * A reserve is kept so that deletions can always proceed on a full pool:
 * data allocations fail with -ENOSPC before metadata allocations do.
 */
int rfs_alloc_data(rfs_pool *pool, uint64_t want, uint64_t *start,
		   uint64_t *got);

/*
 * Free blocks [start, start+n).  Blocks allocated in the running
 * transaction become reusable at once; others only after the next commit
 * is durable.  Freeing a block that is not allocated logs and returns
 * -EUCLEAN without changing anything.
 */
int rfs_free_blocks(rfs_pool *pool, uint64_t start, uint64_t n);

/* True when block is allocated in the state being built. */
bool rfs_block_allocated(const rfs_pool *pool, uint64_t blocknr);

/*
 * Claims: data blocks a writer fills before it allocates them.  A writer
 * that needs nothing of the old contents claims its blocks (the gate and
 * the read lock, rfs_pool_gate_lock, briefly: readers go on), writes
 * them holding no lock (rfs_claim_write), and adopts
 * them into the running transaction when it maps them (write lock), so
 * other writers and the commit need not wait for its data copy
 * (src/fs/file_claim.c).  A claimed block is handed to no one else, but
 * it is not allocated in the state a commit writes: a commit made while
 * the data moves leaves it free on disk, where nothing refers to it.
 */
/* Claim a run of up to want blocks, as rfs_alloc_data would allocate it
 * (same reserve kept): *start, *got.  The gate and a lock held (the
 * write lock, or rfs_pool_gate_lock). */
int rfs_claim_data(rfs_pool *pool, uint64_t want, uint64_t *start, uint64_t *got);
/* Claimed blocks [start, start+n) become allocated in the running
 * transaction, as if rfs_alloc_data had just allocated them.  Write lock. */
void rfs_claim_adopt(rfs_pool *pool, uint64_t start, uint64_t n);
/* Give claimed blocks [start, start+n) back unused.  As rfs_claim_data. */
void rfs_claim_drop(rfs_pool *pool, uint64_t start, uint64_t n);

/* ---- data blocks ------------------------------------------------------ */

/*
 * Checksum of one data block: crc32c of the data, seeded with the block
 * number, so a misdirected write or read is caught like corruption.
 */
uint32_t rfs_data_csum(uint64_t blocknr, const void *data);

/*
 * Write nblocks data blocks starting at blocknr (which must be allocated
 * in the running transaction) and store each block's checksum in csums
 * (may be NULL).  Data becomes durable with the next commit.  The caller
 * holds the write lock, or is a paused writer (rfs_pool_write_pause).
 */
int rfs_data_write(rfs_pool *pool, uint64_t blocknr, const void *buf,
		   uint32_t nblocks, uint32_t *csums);
/* rfs_data_write into blocks the caller claimed (rfs_claim_data) and has
 * neither adopted nor dropped yet; needs no lock. */
int rfs_claim_write(rfs_pool *pool, uint64_t blocknr, const void *buf,
		    uint32_t nblocks, uint32_t *csums);

/*
 * Read nblocks data blocks starting at blocknr and verify each against
 * csums[i] (when csums is not NULL).  A mismatch gives -EIO and logs the
 * block number; buf contents are then unspecified and must not be used.
 */
int rfs_data_read(rfs_pool *pool, uint64_t blocknr, void *buf,
		  uint32_t nblocks, const uint32_t *csums);
/*
 * rfs_data_read with no lock held, for a reader that checks afterwards
 * that the blocks were still the file's (rfs_pool_change_gen_now): a
 * mismatch gives -EIO with the block in *bad and logs nothing (it may be
 * a block freed and reused meanwhile, not corruption);
 * rfs_data_log_mismatch logs it once the caller knows it is corruption.
 * The pool's geometry is fixed, so the range check needs no lock.
 */
int rfs_data_read_nolock(rfs_pool *pool, uint64_t blocknr, void *buf,
			 uint32_t nblocks, const uint32_t *csums, uint64_t *bad);
void rfs_data_log_mismatch(rfs_pool *pool, uint64_t blocknr);

/*
 * A writer about to change a block of the running transaction in place
 * (a tree node already shadowed in it) says so: with allocations and
 * frees, this moves rfs_pool_changes.  Write lock held.
 */
void rfs_pool_note_change(rfs_pool *pool);
/* A counter that moves with every change to the running transaction
 * (allocation, free, in-place change, root pointer): an operation that
 * fails compares it with its value at the start to know whether it left
 * the transaction halfway.  Write lock held. */
uint64_t rfs_pool_changes(const rfs_pool *pool);

/*
 * Item changes: a tree mutation about to change items (a put or delete
 * past its path copy, a refcount change) calls rfs_pool_note_item.
 * Copies of nodes alone (shadows) and storing new roots back up a path
 * are consistent once stored, so those callers put the counter back
 * (rfs_pool_items_set) after their own puts.  An operation that fails
 * after the counter moved left a change half made.  Write lock held.
 */
void rfs_pool_note_item(rfs_pool *pool);
uint64_t rfs_pool_items(const rfs_pool *pool);
void rfs_pool_items_set(rfs_pool *pool, uint64_t v);

/* ---- fault injection and crash simulation (tests) --------------------- */

enum rfs_crash_mode {
	RFS_CRASH_DROP_ALL = 0,   /* every unflushed write is lost */
	RFS_CRASH_DROP_RANDOM = 1, /* a random subset of them reaches disk */
	RFS_CRASH_TEAR = 2,       /* random subset, one of them torn */
};

/*
 * Pool opened with RFS_OPEN_CRASHSIM: apply the unflushed writes as mode
 * says (seeded), then close the pool without committing.  The file then
 * holds what a real crash could have left.
 */
void rfs_pool_crash(rfs_pool *pool, enum rfs_crash_mode mode, uint64_t seed);

/*
 * Pool opened with RFS_OPEN_CRASHSIM: when the n-th flush from now is
 * reached (n >= 1), crash there as rfs_pool_crash does, and make every
 * later I/O fail with -EIO; the caller then closes the pool.  n = 0
 * disarms.
 */
void rfs_pool_crash_at_flush(rfs_pool *pool, uint64_t n,
			     enum rfs_crash_mode mode, uint64_t seed);

/* True once a simulated crash happened (all I/O now fails). */
bool rfs_pool_crashed(const rfs_pool *pool);

/* Make every write after the next n writes fail with -EIO (n = UINT64_MAX
 * disarms).  For error-path tests. */
void rfs_pool_fail_writes_after(rfs_pool *pool, uint64_t n);

/* Let the next n metadata block allocations succeed, then fail every
 * one after with -ENOSPC, as if the reserve that operations count on
 * had run out (n = UINT64_MAX disarms).  For error-path tests: whatever
 * operation or commit meets it must fail cleanly and keep the last
 * commit intact.  Takes the write lock. */
void rfs_pool_fail_meta_allocs_after(rfs_pool *pool, uint64_t n);

#endif
