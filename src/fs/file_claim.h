/*
 * Whole-block writes whose data is copied into claimed blocks before
 * anything maps them (file_claim.c), and the delayed mapping of small
 * ones (file_delay.c).  Internal to the fs layer.
 */
#ifndef RFS_FS_FILE_CLAIM_H
#define RFS_FS_FILE_CLAIM_H

#include "fs/fs_internal.h"

/* Blocks claimed in one piece (rfs_claim_data). */
struct claim_run {
	uint64_t start, n;
};

/* One write to map: its claimed runs (their blocks hold the data) and
 * the blocks' checksums, in file order from byte off (block-aligned). */
struct claim_wr {
	struct claim_run *runs;
	size_t nruns;             /* 0 once mapped or given back */
	const uint32_t *csum;     /* one per block of the runs */
	uint64_t off;
	size_t size;              /* bytes (whole blocks) */
	size_t done;              /* out: bytes mapped */
};

/*
 * The body of the operation that maps the k writes w[0..k) into file n
 * (a WRITE's own, or the runs a delayed batch was merged into), given in
 * file order and not overlapping (asserted in debug builds): one inode
 * load and store, an extent edit per run, the size and times, a journal
 * range per write.  Pool write lock held (op_begin_claimed or the
 * delayed batch's operation).
 * Returns 0 or -errno; every run not mapped is given back (nruns 0).
 * With k 1, a short mapping returns 0 with done below size.  k is at
 * most DM_BATCH.
 */
int claim_map(rfs_fs *fs, struct rfs_node *n, struct claim_wr *w, size_t k);

/* Give back the runs still held by w[0..k) (takes the gate; no pool
 * lock held). */
void claim_drop(rfs_fs *fs, struct claim_wr *w, size_t k);

/* Data blocks a queued write reserves for its mapping, given one write's
 * metadata estimate meta: the delayed batch's operations must never fail
 * for space after the WRITEs were answered (file_delay.c). */
uint64_t dm_room(uint64_t meta);

/* The blocks the queued writes reserve (the sum of their dm_room): a
 * claim leaves them free.  No lock needed (an atomic load). */
uint64_t dm_reserved(rfs_fs *fs);

/*
 * Queue the mapping of w (one run, whole blocks, data in place) on file
 * n, to be done with others: true when queued (the caller answers the
 * write as done), false when it must be mapped now (a watch mark is
 * armed, the run is too long, the queue was full again after it was
 * taken, or room -- the free data blocks besides w's own, when it
 * claimed them -- does not cover the queued reservations and
 * dm_room(meta) more; pre, when not 0, is a reservation w's block
 * already holds in fs dm_resv (the claim reserve's), checked then: no
 * room check, and the queued write keeps it; when the write is not
 * queued the caller still holds it).  A full queue is taken as the
 * batch to map (the last batch mapped first), by the write that filled
 * it or the next one to find it full; a queued write then maps one
 * operation of the batch, unless another thread is at it.  No pool lock
 * held.
 */
bool dm_queue(rfs_fs *fs, struct rfs_node *n, const struct claim_wr *w, uint64_t meta,
	      uint64_t room, uint64_t pre);

/* Give the claim reserve's blocks and their reservations back
 * (file_claim.c, "Claim reserve"): a settle of all files.  No pool lock
 * held. */
void claim_reserve_drop(rfs_fs *fs);
/* Fill the claim reserve up to CR_MAX blocks when it is below half and
 * the pool has room for them and their reservations.  The gate held (a
 * claim, or a batch operation's write lock). */
void claim_reserve_refill(rfs_fs *fs);
/* The deepest file whose WRITEs take blocks from the claim reserve: its
 * blocks' reservations are a queued write's dm_room at this depth. */
#define CR_DEPTH 8u

/* True while a batch is being mapped at the writers' pace (its
 * operations hold the gate now and then).  No lock: a hint. */
bool dm_pacing(rfs_fs *fs);

/* ---- the index of queued writes (file_delay_index.c), fs dm_lock held ---- */

struct dm_index;
/* A new, empty index (NULL: out of memory), and its end. */
struct dm_index *dmx_new(void);
void dmx_free(struct dm_index *x);
/* Block lblk of file n is in pool block pblk, with checksum csum: a new
 * entry, or the one of an earlier write replaced. */
void dmx_put(struct dm_index *x, struct rfs_node *n, uint64_t lblk, uint64_t pblk,
	     uint32_t csum);
/* True, with *pblk and *csum, when a queued write holds block lblk of n. */
bool dmx_get(const struct dm_index *x, const struct rfs_node *n, uint64_t lblk,
	     uint64_t *pblk, uint32_t *csum);
/* Block lblk of n was mapped from pblk, or given back: its entry goes,
 * unless a later write's replaced it. */
void dmx_del(struct dm_index *x, const struct rfs_node *n, uint64_t lblk, uint64_t pblk);
/* How many entries the index holds. */
size_t dmx_count(const struct dm_index *x);

#endif
