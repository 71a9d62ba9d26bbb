/*
 * The index of queued writes (file_delay.c): for each block of a file
 * that a queued write holds, the pool block its data is in and its
 * checksum -- the latest write's, as a later write to a block replaces
 * the entry.  READ looks here (dm_overlay) instead of mapping its file's
 * queued writes first, so a file read and written at random keeps its
 * writes queued, in big batches, while its reads go on.
 *
 * An open-addressing table with linear probing and backward-shift
 * deletion (no tombstones), keyed by (node, file block).  At most
 * 2 * DM_BLOCKS entries live: the queue's and the batch being mapped
 * (file_delay.c dm_settle_slow takes them off the queue before mapping
 * them), so 4 * DM_BLOCKS slots keep it at most half full.
 *
 * Only writes queued while READs come are here (file_delay.c, "The
 * index only while READs come"): a READ of a file with writes queued
 * that are not maps them first.
 *
 * Entries are added by dm_queue and removed by the operation that maps
 * their blocks, with the pool write lock held, so a READ holding the
 * read lock sees each block either in the index or in the file's tree,
 * and the blocks it finds here are neither mapped nor given back while
 * it reads them.  A READ with no lock (rcache_read_nolock) checks
 * afterwards that the file's generation did not move: every write-lock
 * hold that maps or gives back a queued block moves it.  All of the
 * index under fs dm_lock.
 */
#include "fs/file_claim.h"

#include <stdlib.h>

#define DMX_SLOTS (4 * DM_BLOCKS)
_Static_assert((DMX_SLOTS & (DMX_SLOTS - 1)) == 0, "a power of two");

struct dmx_slot {
	struct rfs_node *n; /* NULL: empty */
	uint64_t lblk, pblk;
	uint32_t csum;
};

struct dm_index {
	size_t live; /* entries held */
	struct dmx_slot s[DMX_SLOTS];
};

static size_t home(const struct rfs_node *n, uint64_t lblk)
{
	uint64_t h = ((uint64_t)(uintptr_t)n >> 4) * 0x9e3779b97f4a7c15ull ^ lblk;
	h *= 0xff51afd7ed558ccdull;
	return (size_t)(h >> 32) & (DMX_SLOTS - 1);
}

struct dm_index *dmx_new(void)
{
	return calloc(1, sizeof(struct dm_index));
}

void dmx_free(struct dm_index *x)
{
	free(x);
}

/* The slot of (n, lblk), or the empty slot where it would go. */
static size_t find(const struct dm_index *x, const struct rfs_node *n, uint64_t lblk)
{
	size_t i = home(n, lblk);
	while (x->s[i].n && (x->s[i].n != n || x->s[i].lblk != lblk))
		i = (i + 1) & (DMX_SLOTS - 1);
	return i;
}

void dmx_put(struct dm_index *x, struct rfs_node *n, uint64_t lblk, uint64_t pblk,
	     uint32_t csum)
{
	size_t i = find(x, n, lblk);
	x->live += !x->s[i].n;
	x->s[i] = (struct dmx_slot){n, lblk, pblk, csum};
}

size_t dmx_count(const struct dm_index *x)
{
	return x->live;
}

bool dmx_get(const struct dm_index *x, const struct rfs_node *n, uint64_t lblk,
	     uint64_t *pblk, uint32_t *csum)
{
	size_t i = find(x, n, lblk);
	if (!x->s[i].n)
		return false;
	*pblk = x->s[i].pblk;
	*csum = x->s[i].csum;
	return true;
}

void dmx_del(struct dm_index *x, const struct rfs_node *n, uint64_t lblk, uint64_t pblk)
{
	size_t i = find(x, n, lblk);
	/* A later write's entry (not mapped yet) stays. */
	if (!x->s[i].n || x->s[i].pblk != pblk)
		return;
	/* Backward shift: move up every later entry of the probe run
	 * whose home does not lie cyclically in (i, j]. */
	size_t j = i;
	x->live--;
	for (;;) {
		x->s[i].n = NULL;
		for (;;) {
			j = (j + 1) & (DMX_SLOTS - 1);
			if (!x->s[j].n)
				return;
			size_t h = home(x->s[j].n, x->s[j].lblk);
			bool stays = i <= j ? (i < h && h <= j) : (i < h || h <= j);
			if (!stays)
				break;
		}
		x->s[i] = x->s[j];
		i = j;
	}
}
