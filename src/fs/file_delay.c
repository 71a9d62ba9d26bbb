/*
 * Delayed mapping of small whole-block writes (issue 9, "Parallel I/O").
 *
 * A whole-block WRITE copies its data into claimed blocks with no lock
 * held (file_claim.c); what is left is the operation that maps them into
 * the file, and on this machine that operation is most of a random
 * write's cost (docs/ARCHITECTURE.md, "The mapping is the whole write
 * gap").  So a small one (one run, at most DM_RUN_MAX blocks) is not
 * mapped at once: it is queued here and the WRITE is answered.  The
 * queue holds up to DM_QUEUE writes (DM_BLOCKS blocks).  The write that
 * fills it takes it as the batch to map and maps its first operation;
 * each write queued after maps one more (dm_pace), so the batch's few
 * milliseconds of work are spread over a hundred-odd writes instead of
 * stalling the ones in flight behind one.  The rest of the batch, and
 * the queue, are mapped at once by anything that could see a file's
 * state:
 *
 *   - every operation (op.c begin), except the best-effort atime update
 *     of a READ that already settled its file;
 *   - every reader that takes a pool lock through fs_rdlock / fs_wrlock;
 *     GETATTR (and RELEASE / FORGET) settle only their own file
 *     (dm_settle_id), so a reader of one file never maps another's;
 *   - not READ: it puts the file's queued writes over what the tree
 *     holds (dm_overlay, from the index of queued blocks,
 *     file_delay_index.c), unless it reaches past the file's mapped
 *     size, which a queued write may have grown, or some of them are
 *     not in the index: then it maps the file's writes first;
 *   - sync, fsync, the background commit (so a write is durable within
 *     the commit interval, as before), freezing, arming a watch mark, a
 *     follower of the change journal starting to wait (and nothing is
 *     queued while one waits: its wake-up is the journal record).
 *
 * How a batch is mapped: its writes are cut into blocks and sorted by
 * (file, block, queue position) (a radix sort: radix.h).  Of a block
 * written twice only the later write is kept, and the earlier one's
 * block goes back unused, under the pool write lock (a READ may have
 * found it in the index before the later write replaced its entry).
 * The blocks left are joined into runs where both the file's and the
 * pool's blocks follow on, and mapped in file order, DM_BATCH runs per
 * operation, the batch's files in any order (each file's group on its
 * own).  A big batch is what makes this cheap: thousands of random
 * writes over a file's few hundred extent leaves edit each leaf many
 * times in a row, resuming the last descent (claim_map's finger), where
 * one write at a time, or 64, found every leaf cold.  The pool write
 * lock is held one operation at a time, so a reader waits for at most
 * DM_BATCH runs' edits, never for the whole batch.  Each operation
 * also removes its blocks from the index before it lets go of the write
 * lock, so a READ finds every block either there or in the tree.
 *
 * The index only while READs come: a random write's index entry is a
 * cache miss (about 3 % of the daemon's time with fio randwrite), paid
 * for READs that may never come.  So writes go into it only while
 * dmx_on, which the first READ that looks there sets; a batch of all
 * files taken with no READ since turns it off and takes the entries of
 * the writes it takes (all the index holds then) out of it.  A node
 * counts its queued writes not in the index (dm_unidx); a READ that
 * finds any maps the file's writes first, once (DM_UNINDEXED), and its
 * later writes are in the index.  All under dm_lock, checked at each
 * of the READ's holds of it, so a READ never misses a queued block.
 *
 * Order: a later write to a block wins over an earlier one, and any
 * change that does not come through this queue first settles it, so
 * every write is applied after those answered before it.  The change
 * journal gets a record per mapped run; together they cover exactly
 * the ranges the writes did.
 *
 * Space: each queued write reserves dm_room(meta) blocks (fs dm_resv,
 * twice what its share of a batch operation asks for), and a write is
 * delayed only when the pool's free data blocks cover every reservation
 * besides its own blocks; a claim that is not delayed must leave the
 * reservations free too (file_claim.c take).  So a batch's operations do
 * not fail for space after their WRITEs were answered.  If one fails
 * all the same (an I/O error, a pool turned read-only), the error is
 * logged with the inode, kept on the file and returned by its next
 * fsync, as a kernel filesystem reports a failed write-back.
 *
 * Pre-modification events: a write is delayed only while no watch mark
 * is armed (checked under dm_lock); arming a mark settles the queue
 * after it is armed, so every write answered before the arm returns is
 * visible by then, and every later one is checked as before.
 *
 * A batch is taken only when the last one is mapped: a queue that fills
 * again first maps the rest of the last batch (dm_fill), and a
 * settle maps it before the queue.  A settle of one file (GETATTR)
 * maps that file's group of the batch, and, if writes of the file are
 * queued too, the rest of the batch (their sort needs its scratch).
 *
 * Locks: dm_apply (held by whoever takes writes off the queue or maps
 * an operation of the batch; it guards the batch, dm_scr, whose
 * groups left are also read with no lock as a hint) before dm_lock (the
 * queue, a leaf), before any pool lock.  Callers of dm_settle hold no
 * pool lock and no nlock.
 */
#include "fs/file_claim.h"
#include "fs/op.h"
#include "util/radix.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>

#define BS RFS_BLOCK_SIZE

/* A sort key: the file block in the high bits, the write's queue
 * position in the low DM_POS_BITS, so a later write to a block sorts
 * after an earlier one.  File blocks are below 2^50 (RFS_FILE_MAX). */
#define DM_POS_BITS 13u
_Static_assert(DM_QUEUE <= 1u << DM_POS_BITS, "a queue position fits its key bits");
_Static_assert(RFS_FILE_MAX / RFS_BLOCK_SIZE <= 1ull << (64 - DM_POS_BITS),
	       "a file block fits its key bits");

struct dm_ent {
	struct rfs_node *n;
	struct claim_run run;
	uint64_t off;
	uint64_t resv; /* blocks it holds of fs dm_resv */
	uint32_t csum[DM_RUN_MAX];
	bool idx; /* its blocks are in the index */
};

/* A file's writes in the batch being mapped: ord[from..to) (queue order),
 * its blocks' segment of key/tmp/runs/rblk/csum from b0 (as many as
 * its writes' blocks), its reservations.  Once ready: nr runs and nd
 * replaced blocks (in tmp) in the segment, r runs mapped, c checksums
 * used. */
struct dm_grp {
	struct rfs_node *n;
	uint32_t from, to, b0, nr, nd, r, c;
	uint32_t unidx; /* its writes not in the index */
	enum { GRP_NEW, GRP_READY, GRP_DONE } state;
	uint64_t resv;
};

/* The batch being mapped and its scratch (dm_apply): the writes taken
 * off the queue, their order by file, a node-to-group table (slot,
 * cap entries, kept for the batch's life), the groups, the sort keys
 * and their scratch, and the runs to map with their checksums.  left:
 * the groups not mapped yet, also read with no lock (dm_queue's hint). */
struct dm_scr {
	struct dm_ent take[DM_QUEUE];
	uint16_t ord[DM_QUEUE];
	struct dm_slot {
		struct rfs_node *n;
		uint32_t grp;
	} slot[2 * DM_QUEUE];
	size_t cap;
	uint32_t gcnt[DM_QUEUE + 1];
	struct dm_grp grp[DM_QUEUE];
	uint32_t ng, next;
	_Atomic uint32_t left;
	uint64_t key[DM_BLOCKS], tmp[DM_BLOCKS];
	struct claim_run runs[DM_BLOCKS];
	uint64_t rblk[DM_BLOCKS]; /* each run's first file block */
	uint32_t csum[DM_BLOCKS];
};

uint64_t dm_room(uint64_t meta)
{
	/* Its share of a batch operation (op_meta of 4 items per run,
	 * claim_map), with a run's blocks, twice: a margin for what else
	 * runs meanwhile. */
	return 2 * (meta + DM_RUN_MAX);
}

uint64_t dm_reserved(rfs_fs *fs)
{
	return atomic_load_explicit(&fs->dm_resv, memory_order_relaxed);
}

/* The fs whose dm_apply this thread holds (debug checks: it does not
 * nest, and a thread holds at most one fs's). */
static _Thread_local const rfs_fs *apply_owner;

static void apply_lock(rfs_fs *fs)
{
	RFS_ASSERT_LOCK(apply_owner != fs);
	pthread_mutex_lock(&fs->dm_apply);
	apply_owner = fs;
}

/* True when it took dm_apply. */
static bool apply_trylock(rfs_fs *fs)
{
	RFS_ASSERT_LOCK(apply_owner != fs);
	if (pthread_mutex_trylock(&fs->dm_apply))
		return false;
	apply_owner = fs;
	return true;
}

static void apply_unlock(rfs_fs *fs)
{
	assert(apply_owner == fs);
	apply_owner = NULL;
	pthread_mutex_unlock(&fs->dm_apply);
}

/* The queue, the batch's scratch and the index (any of them NULL). */
static void free_bufs(rfs_fs *fs)
{
	free(fs->dm_q);
	free(fs->dm_scr);
	dmx_free(fs->dm_idx);
	fs->dm_q = NULL;
	fs->dm_scr = NULL;
	fs->dm_idx = NULL;
}

int dm_init(rfs_fs *fs)
{
	fs->dm_q = calloc(DM_QUEUE, sizeof(*fs->dm_q));
	fs->dm_scr = malloc(sizeof(*fs->dm_scr));
	fs->dm_idx = dmx_new();
	if (!fs->dm_q || !fs->dm_scr || !fs->dm_idx) {
		free_bufs(fs);
		return -ENOMEM;
	}
	pthread_mutex_init(&fs->dm_apply, NULL);
	pthread_mutex_init(&fs->dm_lock, NULL);
	pthread_mutex_init(&fs->cr_lock, NULL);
	return 0;
}

void dm_fini(rfs_fs *fs)
{
	if (!fs->dm_q)
		return;
	/* Writes still queued (an abandoned or crashed fs): their claims
	 * went with the pool. */
	free_bufs(fs);
	pthread_mutex_destroy(&fs->dm_apply);
	pthread_mutex_destroy(&fs->dm_lock);
	pthread_mutex_destroy(&fs->cr_lock);
}

/* The first error of n's delayed writes, kept for its next fsync. */
static void note_err(rfs_fs *fs, struct rfs_node *n, int err, size_t k)
{
	rfs_log(RFS_LOG_ERR,
		"%s: %zu run(s) of writes to inode %llu of volume %llu were answered but could not be mapped (%s): their data is lost; the file's next fsync returns the error",
		rfs_pool_path(fs->pool), k, (unsigned long long)n->ino,
		(unsigned long long)n->vol, strerror(-err));
	pthread_mutex_lock(&fs->dm_lock);
	if (!n->dm_err)
		n->dm_err = err;
	pthread_mutex_unlock(&fs->dm_lock);
}

/* The taken write a sort key names, and (*j) which of its blocks. */
static const struct dm_ent *key_ent(const struct dm_ent *take, uint64_t key, uint64_t *j)
{
	const struct dm_ent *e = &take[key & ((1u << DM_POS_BITS) - 1)];
	*j = (key >> DM_POS_BITS) - e->off / BS;
	return e;
}

/* Give back the blocks of the writes a later write to the same block
 * replaced: keys x[0..m), each naming one block of a taken write.  The
 * write lock held: a READ that found one in the index before the later
 * write replaced its entry may be reading it still. */
static void drop_replaced(rfs_fs *fs, const struct dm_ent *take, const uint64_t *x, size_t m)
{
	for (size_t i = 0; i < m; i++) {
		uint64_t j;
		const struct dm_ent *e = key_ent(take, x[i], &j);
		rfs_claim_drop(fs->pool, e->run.start + j, 1);
	}
}

/* The index entries of runs w[0..k) of n go: mapped, or given back
 * (write lock held, so no READ is between the index and the tree). */
static void unindex(rfs_fs *fs, struct rfs_node *n, const struct claim_wr *w, size_t k,
		    const struct claim_run *runs)
{
	pthread_mutex_lock(&fs->dm_lock);
	/* Empty while no READ comes: nothing to look up. */
	for (size_t i = 0; i < k && dmx_count(fs->dm_idx); i++)
		for (uint64_t j = 0; j < runs[i].n; j++)
			dmx_del(fs->dm_idx, n, w[i].off / BS + j, runs[i].start + j);
	pthread_mutex_unlock(&fs->dm_lock);
}

/* Map k runs of n, in file order and not overlapping, in one operation
 * (dm_apply held), first giving back the nd replaced blocks drops names.
 * No pool lock. */
static void map_runs_op(rfs_fs *fs, struct rfs_node *n, struct claim_wr *w, size_t k,
			const uint64_t *drops, size_t nd)
{
	RFS_ASSERT_LOCK(apply_owner == fs);
	assert(k > 0 && k <= DM_BATCH);
	/* The runs as queued: claim_map empties w's as it maps them. */
	struct claim_run runs[DM_BATCH];
	for (size_t i = 0; i < k; i++)
		runs[i] = w[i].runs[0];
	struct rfs_op op = {0};
	op_local(&op, n);
	uint64_t meta = op_meta(op_depth(fs, n), 4 * (unsigned)k);
	int ret = op_begin_queued(fs, &op, "write (delayed mapping)", meta);
	if (ret) {
		/* The write lock all the same, for the index and the READs
		 * that may read these blocks. */
		rfs_pool_wrlock_local(fs->pool, &n->fgen);
		drop_replaced(fs, fs->dm_scr->take, drops, nd);
		unindex(fs, n, w, k, runs);
		for (size_t i = 0; i < k; i++)
			rfs_claim_drop(fs->pool, runs[i].start, runs[i].n);
		rfs_pool_unlock(fs->pool);
	} else {
		/* The gate is ours for the operation: the claims of the
		 * WRITEs meanwhile come from the reserve. */
		claim_reserve_refill(fs);
		drop_replaced(fs, fs->dm_scr->take, drops, nd);
		ret = claim_map(fs, n, w, k);
		unindex(fs, n, w, k, runs);
		ret = op_end(&op, ret);
		if (ret == OP_RETRY)
			ret = -ENOSPC; /* nothing changed: the runs went back */
	}
	/* ESTALE: the file was deleted (and not open) after its write was
	 * queued; nobody can read what it held. */
	if (ret && ret != -ESTALE)
		note_err(fs, n, ret, k);
}

/* Ready group g to map: its blocks sorted by (file block, queue
 * position); of a block written twice the later write kept and the
 * earlier ones' blocks noted (in tmp) to give back; the rest joined into
 * runs where both the file's and the pool's blocks follow on. */
static void grp_ready(struct dm_scr *s, struct dm_grp *g)
{
	uint64_t *key = s->key + g->b0, *tmp = s->tmp + g->b0, *rblk = s->rblk + g->b0;
	struct claim_run *runs = s->runs + g->b0;
	uint32_t *csum = s->csum + g->b0;
	size_t m = 0;
	for (size_t i = g->from; i < g->to; i++) {
		const struct dm_ent *e = &s->take[s->ord[i]];
		for (uint64_t j = 0; j < e->run.n; j++)
			key[m++] = (e->off / BS + j) << DM_POS_BITS | s->ord[i];
	}
	radix_sort_u64(key, tmp, m);
	/* The last key of each block wins; the others go to tmp (free
	 * after the sort, and never longer than the keys). */
	size_t nd = 0, nr = 0, nc = 0;
	uint64_t prev_b = 0, prev_p = 0;
	for (size_t i = 0; i < m; i++) {
		uint64_t b = key[i] >> DM_POS_BITS;
		if (i + 1 < m && key[i + 1] >> DM_POS_BITS == b) {
			tmp[nd++] = key[i];
			continue;
		}
		uint64_t j;
		const struct dm_ent *e = key_ent(s->take, key[i], &j);
		uint64_t p = e->run.start + j;
		if (nr && b == prev_b + 1 && p == prev_p + 1 && runs[nr - 1].n < RFS_EXTENT_MAX)
			runs[nr - 1].n++;
		else {
			rblk[nr] = b;
			runs[nr++] = (struct claim_run){p, 1};
		}
		csum[nc++] = e->csum[j];
		prev_b = b;
		prev_p = p;
	}
	g->nr = (uint32_t)nr;
	g->nd = (uint32_t)nd;
	g->r = g->c = 0;
	g->state = GRP_READY;
}

/* Group g is mapped: its writes leave the counters. */
static void grp_done(rfs_fs *fs, struct dm_grp *g)
{
	RFS_ASSERT_LOCK(apply_owner == fs);
	uint32_t k = g->to - g->from;
	if (g->unidx) {
		pthread_mutex_lock(&fs->dm_lock);
		assert(g->n->dm_unidx >= g->unidx);
		g->n->dm_unidx -= g->unidx;
		pthread_mutex_unlock(&fs->dm_lock);
	}
	g->state = GRP_DONE;
	atomic_fetch_sub_explicit(&fs->dm_scr->left, 1, memory_order_relaxed);
	atomic_fetch_sub_explicit(&fs->dm_resv, g->resv, memory_order_relaxed);
	atomic_fetch_sub_explicit(&g->n->dm_count, k, memory_order_release);
	atomic_fetch_sub_explicit(&fs->dm_count, k, memory_order_release);
}

/* One operation of group g: its next DM_BATCH runs, in file order (the
 * first also gives back the replaced blocks).  dm_apply held. */
static void grp_step(rfs_fs *fs, struct dm_grp *g)
{
	RFS_ASSERT_LOCK(apply_owner == fs);
	struct dm_scr *s = fs->dm_scr;
	if (g->state == GRP_NEW)
		grp_ready(s, g);
	assert(g->state == GRP_READY);
	struct claim_run *runs = s->runs + g->b0;
	struct claim_wr w[DM_BATCH];
	size_t q = 0;
	for (; q < DM_BATCH && g->r < g->nr; q++, g->r++) {
		w[q] = (struct claim_wr){&runs[g->r], 1, s->csum + g->b0 + g->c,
					 s->rblk[g->b0 + g->r] * BS, (size_t)runs[g->r].n * BS, 0};
		g->c += runs[g->r].n;
	}
	map_runs_op(fs, g->n, w, q, s->tmp + g->b0, g->nd);
	g->nd = 0;
	if (g->r == g->nr)
		grp_done(fs, g);
}

/* One operation of the batch, of the first group not mapped yet.
 * dm_apply held, a group left. */
static void batch_step(rfs_fs *fs)
{
	RFS_ASSERT_LOCK(apply_owner == fs);
	struct dm_scr *s = fs->dm_scr;
	while (s->grp[s->next].state == GRP_DONE)
		s->next++;
	assert(s->next < s->ng);
	grp_step(fs, &s->grp[s->next]);
}

/* The rest of the batch.  dm_apply held. */
static void batch_finish(rfs_fs *fs)
{
	RFS_ASSERT_LOCK(apply_owner == fs);
	while (atomic_load_explicit(&fs->dm_scr->left, memory_order_relaxed))
		batch_step(fs);
}

/* The slot of n in the batch's node table: n's, or the empty one where
 * it would go. */
static size_t slot_of(const struct dm_scr *s, const struct rfs_node *n)
{
	uintptr_t h = (uintptr_t)n;
	size_t at = (size_t)((h >> 4) * 0x9e3779b97f4a7c15ull >> 40) & (s->cap - 1);
	while (s->slot[at].n && s->slot[at].n != n)
		at = (at + 1) & (s->cap - 1);
	return at;
}

/* Take the queued writes of only (NULL: all) off the queue as the batch
 * to map, grouped by file, in queue order within each group.  dm_apply
 * held, no group of the last batch left.  Returns how many. */
static size_t batch_take(rfs_fs *fs, struct rfs_node *only)
{
	RFS_ASSERT_LOCK(apply_owner == fs);
	struct dm_scr *s = fs->dm_scr;
	assert(!atomic_load_explicit(&s->left, memory_order_relaxed));
	size_t k = 0, keep = 0, blocks = 0;
	pthread_mutex_lock(&fs->dm_lock);
	/* No READ looked in the index since the last batch of all files
	 * was taken: it goes off, and the entries of the writes taken now
	 * (all it holds: the last batch is mapped) go with it.  An empty
	 * queue (a settle with nothing queued) is no batch. */
	bool off = false;
	if (!only && fs->dm_n) {
		off = fs->dmx_on && !fs->dmx_used;
		fs->dmx_on = fs->dmx_used;
		fs->dmx_used = false;
	}
	for (size_t i = 0; i < fs->dm_n; i++) {
		struct dm_ent *e = &fs->dm_q[i];
		if (only && e->n != only) {
			fs->dm_q[keep++] = *e;
			continue;
		}
		if (off && e->idx) {
			for (uint64_t j = 0; j < e->run.n; j++)
				dmx_del(fs->dm_idx, e->n, e->off / BS + j, e->run.start + j);
			e->idx = false;
			e->n->dm_unidx++;
		}
		s->take[k++] = *e;
		blocks += e->run.n;
	}
	assert(!off || !dmx_count(fs->dm_idx));
	fs->dm_n = keep;
	fs->dm_blocks -= blocks;
	pthread_mutex_unlock(&fs->dm_lock);
	s->ng = s->next = 0;
	if (!k)
		return 0;
	/* The files seen (open addressing, a power of two at least twice
	 * k), then a counting sort by group. */
	s->cap = 2;
	while (s->cap < 2 * k)
		s->cap *= 2;
	memset(s->slot, 0, s->cap * sizeof(*s->slot));
	uint32_t ng = 0;
	for (size_t i = 0; i < k; i++) {
		size_t at = slot_of(s, s->take[i].n);
		if (!s->slot[at].n)
			s->slot[at] = (struct dm_slot){s->take[i].n, ng++};
		s->ord[i] = (uint16_t)s->slot[at].grp; /* for now: the group */
	}
	memset(s->gcnt, 0, (ng + 1) * sizeof(*s->gcnt));
	for (size_t i = 0; i < k; i++)
		s->gcnt[s->ord[i] + 1]++;
	for (uint32_t g = 0; g < ng; g++)
		s->gcnt[g + 1] += s->gcnt[g];
	/* tmp as the positions by group (the keys are built later). */
	uint16_t *pos = (uint16_t *)s->tmp;
	for (size_t i = 0; i < k; i++)
		pos[s->gcnt[s->ord[i]]++] = (uint16_t)i;
	memcpy(s->ord, pos, k * sizeof(*s->ord));
	/* gcnt[g] is now the end of group g. */
	uint32_t from = 0, b0 = 0;
	for (uint32_t g = 0; g < ng; g++) {
		struct dm_grp *gp = &s->grp[g];
		*gp = (struct dm_grp){.n = s->take[s->ord[from]].n, .from = from,
				      .to = s->gcnt[g], .b0 = b0, .state = GRP_NEW};
		for (uint32_t i = from; i < gp->to; i++) {
			gp->resv += s->take[s->ord[i]].resv;
			gp->unidx += !s->take[s->ord[i]].idx;
			b0 += (uint32_t)s->take[s->ord[i]].run.n;
		}
		from = gp->to;
	}
	assert(b0 == blocks && blocks <= DM_BLOCKS);
	s->ng = ng;
	atomic_store_explicit(&s->left, ng, memory_order_relaxed);
	return k;
}

void dm_settle_slow(rfs_fs *fs, struct rfs_node *only)
{
	if (!fs->dm_q)
		return; /* read-only: nothing is ever queued */
	apply_lock(fs);
	struct dm_scr *s = fs->dm_scr;
	if (atomic_load_explicit(&s->left, memory_order_relaxed)) {
		if (only) {
			/* Only's group of the batch being mapped; then, if
			 * writes of it are queued still, the rest of the
			 * batch, whose scratch they need. */
			struct dm_slot *sl = &s->slot[slot_of(s, only)];
			if (sl->n) {
				struct dm_grp *g = &s->grp[sl->grp];
				while (g->state != GRP_DONE)
					grp_step(fs, g);
			}
			if (!atomic_load_explicit(&only->dm_count, memory_order_acquire))
				goto out;
		}
		batch_finish(fs);
	}
	if (batch_take(fs, only))
		batch_finish(fs);
out:
	apply_unlock(fs);
	if (!only)
		claim_reserve_drop(fs);
}

/* The queue is full: whoever comes first maps what is left of the last
 * batch (its writes since did not) and takes the queue as the next
 * batch, mapping its first operation; the next writes map the rest. */
static void dm_fill(rfs_fs *fs)
{
	apply_lock(fs);
	pthread_mutex_lock(&fs->dm_lock);
	bool full = fs->dm_n == DM_QUEUE || fs->dm_blocks + DM_RUN_MAX > DM_BLOCKS;
	pthread_mutex_unlock(&fs->dm_lock);
	if (full) {
		batch_finish(fs);
		if (batch_take(fs, NULL))
			batch_step(fs);
	}
	apply_unlock(fs);
}

/* A write was queued: one operation of the batch being mapped, if there
 * is one and nobody else is at it. */
static void dm_pace(rfs_fs *fs)
{
	struct dm_scr *s = fs->dm_scr;
	if (!atomic_load_explicit(&s->left, memory_order_relaxed) || !apply_trylock(fs))
		return;
	if (atomic_load_explicit(&s->left, memory_order_relaxed))
		batch_step(fs);
	apply_unlock(fs);
}

bool dm_pacing(rfs_fs *fs)
{
	return fs->dm_scr && atomic_load_explicit(&fs->dm_scr->left, memory_order_relaxed);
}

void dm_settle_id(rfs_fs *fs, rfs_nodeid id)
{
	if (!atomic_load_explicit(&fs->dm_count, memory_order_acquire))
		return;
	struct rfs_node *n = node_get(fs, id);
	if (n)
		dm_settle(fs, n);
}

struct rfs_node *dm_queued(rfs_fs *fs, rfs_nodeid id)
{
	if (!atomic_load_explicit(&fs->dm_count, memory_order_acquire))
		return NULL;
	/* A dead node has nothing queued: its deletion mapped the queue,
	 * and writes to it are not delayed (file_claim.c take). */
	struct rfs_node *n = rcache_node(fs, id);
	return n && atomic_load_explicit(&n->dm_count, memory_order_acquire) ? n : NULL;
}

/* One block of a queued write, under the read lock or (bad) with none. */
static int overlay_read(rfs_fs *fs, uint64_t pb, void *dst, const uint32_t *cs, uint64_t *bad)
{
	return bad ? rfs_data_read_nolock(fs->pool, pb, dst, 1, cs, bad)
		   : rfs_data_read(fs->pool, pb, dst, 1, cs);
}

int dm_overlay(rfs_fs *fs, struct rfs_node *n, uint8_t *buf, size_t len, uint64_t off,
	       uint64_t *bad)
{
	RFS_ASSERT_LOCK(bad || rfs_pool_holds_lock(fs->pool));
	uint64_t b = off / BS, b1 = (off + len + BS - 1) / BS;
	while (b < b1) {
		/* Up to 64 blocks looked up per hold of dm_lock. */
		uint64_t pb[64], at[64];
		uint32_t cs[64];
		size_t h = 0;
		pthread_mutex_lock(&fs->dm_lock);
		/* READs come: the writes queued from now on go into the
		 * index (fs dmx_on).  Checked for each hold: a batch taken
		 * since the last one may have turned it off. */
		if (!fs->dmx_used)
			fs->dmx_used = fs->dmx_on = true;
		if (n->dm_unidx) {
			pthread_mutex_unlock(&fs->dm_lock);
			return DM_UNINDEXED;
		}
		for (uint64_t end = b + 64 < b1 ? b + 64 : b1; b < end; b++)
			if (dmx_get(fs->dm_idx, n, b, &pb[h], &cs[h]))
				at[h++] = b;
		pthread_mutex_unlock(&fs->dm_lock);
		for (size_t i = 0; i < h; i++) {
			uint64_t lo = at[i] * BS, s = lo > off ? lo : off;
			uint64_t e = lo + BS < off + len ? lo + BS : off + len;
			int ret;
			if (s == lo && e == lo + BS) {
				ret = overlay_read(fs, pb[i], buf + (lo - off), &cs[i], bad);
			} else {
				uint8_t blk[BS];
				ret = overlay_read(fs, pb[i], blk, &cs[i], bad);
				if (!ret)
					memcpy(buf + (s - off), blk + (s - lo), e - s);
			}
			if (ret)
				return ret;
		}
	}
	return 0;
}

bool dm_queue(rfs_fs *fs, struct rfs_node *n, const struct claim_wr *w, uint64_t meta,
	      uint64_t room, uint64_t pre)
{
	/* A map hook (tests) holds the writer in its mapping: such a test
	 * means the write's own operation. */
	if (w->nruns != 1 || w->runs[0].n > DM_RUN_MAX || !fs->dm_q || fs->map_hook)
		return false;
	bool full, filled = false;
	uint64_t resv = pre ? pre : dm_room(meta);
again:
	pthread_mutex_lock(&fs->dm_lock);
	/* Under dm_lock: an arm that set its bit before this sees the write
	 * queued when it settles (rfs_fs_watch_arm).  Not while a follower
	 * of the change journal waits: it is woken by the journal record,
	 * which only the mapping writes (rfs_fs_changes_wait).  The room
	 * is checked here, against the reservations queued before. */
	if (!filled && (fs->dm_n == DM_QUEUE || fs->dm_blocks + w->runs[0].n > DM_BLOCKS)) {
		/* Full, its filler not yet at taking it: as the filler. */
		pthread_mutex_unlock(&fs->dm_lock);
		dm_fill(fs);
		filled = true;
		goto again;
	}
	if (fs->dm_n == DM_QUEUE || fs->dm_blocks + w->runs[0].n > DM_BLOCKS ||
	    (!pre && room < dm_reserved(fs) + resv) ||
	    (atomic_load(&fs->watch_state) & WATCH_ARMED_MASK) ||
	    atomic_load(&fs->cw_waiters)) {
		pthread_mutex_unlock(&fs->dm_lock);
		return false;
	}
	struct dm_ent *e = &fs->dm_q[fs->dm_n++];
	e->n = n;
	e->run = w->runs[0];
	e->off = w->off;
	e->resv = resv;
	memcpy(e->csum, w->csum, 4 * w->runs[0].n);
	/* Into the index only while READs come (dm_overlay): a random
	 * write's entry is a cache miss, most of what queueing it costs. */
	e->idx = fs->dmx_on;
	if (e->idx)
		for (uint64_t j = 0; j < w->runs[0].n; j++)
			dmx_put(fs->dm_idx, n, w->off / BS + j, w->runs[0].start + j,
				w->csum[j]);
	else
		n->dm_unidx++;
	fs->dm_blocks += w->runs[0].n;
	if (!pre)
		atomic_fetch_add_explicit(&fs->dm_resv, resv, memory_order_relaxed);
	atomic_fetch_add_explicit(&n->dm_count, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&fs->dm_count, 1, memory_order_relaxed);
	full = fs->dm_n == DM_QUEUE || fs->dm_blocks + DM_RUN_MAX > DM_BLOCKS;
	pthread_mutex_unlock(&fs->dm_lock);
	if (full)
		dm_fill(fs);
	else
		dm_pace(fs);
	return true;
}

int dm_take_err(rfs_fs *fs, struct rfs_node *n)
{
	pthread_mutex_lock(&fs->dm_lock);
	int err = n->dm_err;
	n->dm_err = 0;
	pthread_mutex_unlock(&fs->dm_lock);
	return err;
}

/* ---- the public side --------------------------------------------------------- */

void rfs_fs_settle(rfs_fs *fs)
{
	dm_settle(fs, NULL);
}

int rfs_fs_fsync(rfs_fs *fs, rfs_nodeid id)
{
	struct rfs_node *n = node_get(fs, id);
	if (n)
		dm_settle(fs, n);
	int err = n ? dm_take_err(fs, n) : 0;
	int ret = rfs_fs_sync(fs);
	return err ? err : ret;
}
