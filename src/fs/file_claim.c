/*
 * Whole-block writes that copy their data before the operation (issue 9,
 * "Parallel I/O").  A write of whole blocks needs nothing of the file's
 * old contents, so it takes its blocks as a claim (rfs_claim_data: a
 * short hold of the writers' gate with the read lock, so readers go
 * on), copies its data into them and computes
 * their checksums holding no lock at all, and only then runs the
 * operation that maps them into the file (op_begin ... op_end).  Writers
 * of different files, the commit and readers all go on during the copy;
 * what is serialized is the mapping, as for every change of the trees.
 *
 * A commit that runs while the data moves does not wait for it: claimed
 * blocks are not in the bitmap it writes (pool.h, "Claims"), so on disk
 * they are free, and nothing committed refers to them.  The operation
 * adopts them into the running transaction as it maps them; whatever it
 * does not map goes back (rfs_claim_drop).
 *
 * Anything else -- partial blocks (they start from the old contents),
 * more than one chunk, a pool short of space, injected faults -- takes
 * the ordinary path (file.c), which has the same result.
 */
#include "fs/file_claim.h"
#include "fs/op.h"

#define BS RFS_BLOCK_SIZE
/* At most one chunk of file.c's write path: 1 MiB, the FUSE max_write. */
#define CLAIM_MAX 256u

struct claim {
	struct claim_run runs[CLAIM_MAX];
	size_t nruns;
	uint32_t csum[CLAIM_MAX];
};

/* Give back runs [from, nruns) of w.  The gate and a lock held. */
static void drop_runs(rfs_fs *fs, struct claim_wr *w, size_t from)
{
	for (size_t i = from; i < w->nruns; i++)
		rfs_claim_drop(fs->pool, w->runs[i].start, w->runs[i].n);
	w->nruns = from;
}

void claim_drop(rfs_fs *fs, struct claim_wr *w, size_t k)
{
	rfs_pool_gate_lock(fs->pool);
	for (size_t i = 0; i < k; i++)
		drop_runs(fs, &w[i], 0);
	rfs_pool_unlock(fs->pool);
}

/*
 * Claim reserve.  A claim takes the writers' gate, and a delayed batch's
 * operation holds it (with the write lock) for its 64 runs, about 40 us:
 * a WRITE that came meanwhile slept on the gate with its request in hand
 * (2,562 times in 2 s of fio randwrite, bench/README.md, "Session 19").
 * So while WRITEs stream in (a batch is being mapped at their pace, or
 * CR_MAX of them are queued), whoever holds the gate anyway -- a claim,
 * or a batch operation -- also claims up to CR_MAX single blocks ahead
 * into the reserve, and a WRITE of one block takes one from there under
 * cr_lock alone.
 *
 * Each reserved block holds cr_room() of fs dm_resv, checked at refill as
 * dm_queue checks a queued write's (for a file at most CR_DEPTH deep), so
 * a WRITE from the reserve (which keeps its own depth's dm_room of it
 * and lets the rest go) is queued with no space check of its own, and
 * the batch's operations still cannot fail for space.  Only the queue's
 * checks count dm_resv, and every operation that is not the queue's
 * settles the queue first: a settle of all files (dm_settle(fs, NULL))
 * gives the reserve back (claim_reserve_drop), so an operation never runs
 * with blocks or reservations held here.  Refills check what take()
 * checks (a read-only or failed pool, injected faults) under the gate; a
 * pool that fails afterwards is seen by the next settle, at the latest
 * the background commit's, and until then a WRITE from the reserve fails
 * as any queued one whose operation fails (the error kept for fsync).
 */
/* The dm_resv each reserved block holds: a queued write's dm_room for a
 * file CR_DEPTH deep. */
static uint64_t cr_room(void)
{
	return dm_room(op_meta(CR_DEPTH, 4));
}

/* Whether nb blocks may be claimed for a write whose metadata estimate
 * is meta: the pool writable, no injected fault, and op.c avail() for
 * the blocks and the metadata, with the same margin op_begin will ask
 * for the metadata alone, the queued writes' reservations left free.
 * *d: the free data blocks.  The gate held. */
static bool claim_fits(rfs_fs *fs, uint64_t nb, uint64_t meta, uint64_t *d)
{
	if (fs->rdonly || fs->inject_nospc || rfs_pool_check_writable(fs->pool))
		return false;
	uint64_t f = rfs_pool_free_blocks(fs->pool);
	*d = rfs_pool_data_free_blocks(fs->pool);
	uint64_t r = (f - *d) / 2;
	return *d + (meta < r ? meta : r) >= meta + nb + dm_reserved(fs);
}

void claim_reserve_refill(rfs_fs *fs)
{
	/* The gate: rfs_claim_data asserts it (pool internals). */
	RFS_ASSERT_LOCK(rfs_pool_holds_lock(fs->pool));
	/* Only while WRITEs stream in: a batch is being mapped at their
	 * pace, or a reserve's worth of them is queued.  A file copy's
	 * WRITE between two creates (each settles the queue) would fill a
	 * reserve its next create gives back: work for nothing (cp -a
	 * 5-20 % slower when every claim filled it). */
	if (!fs->dm_q || atomic_load_explicit(&fs->cr_n, memory_order_relaxed) >= CR_MAX / 2 ||
	    (!dm_pacing(fs) && atomic_load_explicit(&fs->dm_count, memory_order_relaxed) < CR_MAX) ||
	    fs->map_hook)
		return;
	pthread_mutex_lock(&fs->cr_lock);
	uint32_t have = atomic_load_explicit(&fs->cr_n, memory_order_relaxed);
	/* What is left first, in claim order: the new ones go after it. */
	memmove(fs->cr_blk, fs->cr_blk + fs->cr_head, have * sizeof(*fs->cr_blk));
	fs->cr_head = 0;
	uint64_t k = CR_MAX - have, room = cr_room(), meta = op_meta(CR_DEPTH, 4);
	/* take()'s check for k blocks and k dm_queue checks: the queued
	 * writes' reservations and k more stay free besides the k. */
	uint64_t d;
	if (claim_fits(fs, k, meta, &d) && d >= k + dm_reserved(fs) + k * room) {
		/* One block at a time, the lowest free first, as the
		 * claims would have taken them: a run of k would send the
		 * allocator past the blocks a commit freed (warm pages) to
		 * a free run that long, far up the pool. */
		while (have < CR_MAX) {
			uint64_t start, got;
			if (rfs_claim_data(fs->pool, 1, &start, &got))
				break;
			fs->cr_blk[have++] = start;
		}
		uint64_t added = have - atomic_load_explicit(&fs->cr_n, memory_order_relaxed);
		atomic_fetch_add_explicit(&fs->dm_resv, added * room, memory_order_relaxed);
		atomic_store_explicit(&fs->cr_n, have, memory_order_relaxed);
	}
	pthread_mutex_unlock(&fs->cr_lock);
}

/* One block from the reserve, with its cr_room() of dm_resv: true, or
 * false when it is empty.  No pool lock needed. */
static bool cr_pop(rfs_fs *fs, uint64_t *blk)
{
	if (!atomic_load_explicit(&fs->cr_n, memory_order_relaxed))
		return false;
	bool ok = false;
	pthread_mutex_lock(&fs->cr_lock);
	uint32_t have = atomic_load_explicit(&fs->cr_n, memory_order_relaxed);
	if (have) {
		/* The lowest first, as claims come (a run of WRITEs to
		 * adjacent blocks gets adjacent blocks, as without). */
		*blk = fs->cr_blk[fs->cr_head++];
		atomic_store_explicit(&fs->cr_n, have - 1, memory_order_relaxed);
		ok = true;
	}
	pthread_mutex_unlock(&fs->cr_lock);
	return ok;
}

void claim_reserve_drop(rfs_fs *fs)
{
	if (!fs->dm_q || !atomic_load_explicit(&fs->cr_n, memory_order_relaxed))
		return;
	rfs_pool_gate_lock(fs->pool);
	pthread_mutex_lock(&fs->cr_lock);
	uint32_t have = atomic_load_explicit(&fs->cr_n, memory_order_relaxed);
	for (uint32_t i = 0; i < have; i++)
		rfs_claim_drop(fs->pool, fs->cr_blk[fs->cr_head + i], 1);
	fs->cr_head = 0;
	atomic_fetch_sub_explicit(&fs->dm_resv, have * cr_room(), memory_order_relaxed);
	atomic_store_explicit(&fs->cr_n, 0, memory_order_relaxed);
	pthread_mutex_unlock(&fs->cr_lock);
	rfs_pool_unlock(fs->pool);
}

/* Claim nb blocks, all or none: 1 taken, 0 when the ordinary path should
 * write (too little space to be sure, a read-only or failed pool, an
 * injected fault: that path says what is wrong).  The blocks queued
 * writes reserve (dm_reserved) stay free.  *room: the free data blocks
 * besides these nb, for the delayed mapping to check its reservation
 * (file_delay.c); 0 when n is a deleted file (whose write must fail:
 * read under the gate, as deletions set it holding the write lock). */
static int take(rfs_fs *fs, struct rfs_node *n, struct claim *c, uint64_t nb, uint64_t meta,
		uint64_t *room)
{
	int ok = 0;
	c->nruns = 0;
	*room = 0;
	/* The gate, not the write lock: a claim changes only allocation
	 * state that gate holders look at, so readers go on (and need not
	 * leave first, as for the write lock). */
	rfs_pool_gate_lock(fs->pool);
	uint64_t d;
	if (!claim_fits(fs, nb, meta, &d))
		goto out;
	if (!n->dead)
		*room = d - nb;
	uint64_t have = 0;
	while (have < nb) {
		uint64_t start, got, want = nb - have;
		if (want > RFS_EXTENT_MAX)
			want = RFS_EXTENT_MAX; /* one extent record per run */
		if (rfs_claim_data(fs->pool, want, &start, &got)) {
			struct claim_wr w = {c->runs, c->nruns, c->csum, 0, 0, 0};
			drop_runs(fs, &w, 0);
			c->nruns = 0;
			goto out;
		}
		c->runs[c->nruns].start = start;
		c->runs[c->nruns++].n = got;
		have += got;
	}
	ok = 1;
	claim_reserve_refill(fs); /* the gate is held now: the next WRITEs need not */
out:
	rfs_pool_unlock(fs->pool);
	return ok;
}

/* Map w's claimed runs at file block pos (write lock, in the operation):
 * the ordinary path's write_blocks, second half.  e: scratch; fin: the
 * batch's finger (ext_replace). */
static int map_runs(rfs_fs *fs, struct rfs_irec *r, struct emap *t, uint64_t pos,
		    struct claim_wr *w, struct rfs_ext *e, struct rfs_tree_edit *fin,
		    uint64_t *done)
{
	uint64_t removed;
	*done = 0;
	for (size_t i = 0; i < w->nruns; i++) {
		uint64_t got = w->runs[i].n;
		e->lblk = pos + *done;
		e->start = w->runs[i].start;
		e->n = got;
		e->flags = 0;
		memcpy(e->csum, w->csum + *done, 4 * got);
		bool adopted = false;
		struct rfs_ext old;
		int ret = ext_replace(fs, t, e, &old, fin);
		if (ret > 0) {
			/* e is in the old blocks' place: its blocks are the
			 * file's now, the old ones are let go. */
			rfs_claim_adopt(fs->pool, e->start, got);
			adopted = true;
			removed = got;
			if (ret == 1)
				fs->ext_replaced++;
			else
				fs->ext_split++;
			ret = rfs_ref_dec(fs->pool, old.start, got);
			if (ret)
				op_halfway(fs, ret);
		} else if (ret == 0 && !(ret = ext_punch(fs, t, e->lblk, got, &removed))) {
			rfs_claim_adopt(fs->pool, e->start, got);
			adopted = true;
			ret = ext_insert(fs, t, e);
			if (ret) {
				op_halfway(fs, ret); /* the punch went through */
				rfs_free_blocks(fs->pool, e->start, got);
				r->i.blocks -= removed;
			}
		}
		if (ret) {
			/* Run i was adopted (and freed again, or mapped by
			 * a replace whose old blocks were not let go: halfway)
			 * or is still claimed; the rest are claimed. */
			drop_runs(fs, w, adopted ? i + 1 : i);
			return ret;
		}
		r->i.blocks += got - removed;
		*done += got;
	}
	w->nruns = 0;
	return 0;
}

int claim_map(rfs_fs *fs, struct rfs_node *n, struct claim_wr *w, size_t k)
{
	/* A write's own (1) or a delayed batch's runs of one file, in file
	 * order (file_delay.c sorts them), so that each extent edit resumes
	 * the last one's descent (ext_replace's finger) where the two share
	 * the path: the ranges of its journal records below fit one array. */
	assert(k <= DM_BATCH);
#ifndef NDEBUG
	for (size_t j = 1; j < k; j++)
		assert(w[j - 1].off + w[j - 1].size <= w[j].off);
#endif
	struct rfs_ipath p;
	size_t i = 0;
	int ret = ip_load(fs, n, true, &p);
	if (ret)
		goto drop;
	struct rfs_irec *r = ip_rec(&p);
	struct emap t;
	if (fs->map_hook)
		fs->map_hook(fs->map_arg);
	/* Whole blocks never fit inline: inline data (fewer bytes than a
	 * block) moves to block 0 first, as on the ordinary path. */
	if (!S_ISREG(r->i.mode))
		ret = S_ISDIR(r->i.mode) ? -EISDIR : -EINVAL;
	else if (!(ret = tail_fix(fs, r)) && !(ret = inldata_spill(fs, r)))
		ret = emap_open(fs, r, &t);
	if (ret) {
		ret = ip_done(fs, &p, 0, ret);
		goto drop;
	}
	struct rfs_ext e; /* scratch for map_runs: 540 bytes */
	struct rfs_tree_edit fin = {.p.h = 0};
	bool any = false;
	for (; i < k && !ret; i++) {
		struct claim_wr *x = &w[i];
		uint64_t mapped;
		ret = map_runs(fs, r, &t, x->off / BS, x, &e, &fin, &mapped);
		if (mapped) {
			x->done = (size_t)(mapped * BS < x->size ? mapped * BS : x->size);
			if (x->off + x->done > r->i.size)
				r->i.size = x->off + x->done;
			any = true;
		}
	}
	rfs_tree_edit_close(&fin);
	if (any)
		touch_mc(&r->i);
	int sret = emap_store(fs, &t, r, false);
	emap_free(&t);
	if (sret)
		ret = sret;
	else if (k == 1 && w[0].done)
		ret = 0; /* a short write is a complete change of its own */
	ret = ip_done(fs, &p, 0, ret);
	if (!ret) {
		/* A range per write (per run of a delayed batch), the
		 * records built from one walk of n's chain
		 * (journal_hook.c). */
		struct rfs_change_range rg[DM_BATCH];
		size_t m = 0;
		for (size_t j = 0; j < k; j++)
			if (w[j].done)
				rg[m++] = (struct rfs_change_range){w[j].off, w[j].done};
		op_rec_node_ranges(fs, RFS_CHANGE_DATA, n, rg, m);
	}
drop:
	/* The writes not reached keep their claims: give them back (the
	 * write lock includes the gate). */
	for (; i < k; i++)
		drop_runs(fs, &w[i], 0);
	return ret;
}

int file_write_claimed(rfs_fs *fs, struct rfs_node *n, const void *buf, size_t size,
		       uint64_t off, size_t *done)
{
	uint64_t nb = size / BS;
	*done = 0;
	if (off % BS || size % BS || nb == 0 || nb > CLAIM_MAX)
		return 1;
	/* On the stack (3.1 KiB, as ext_punch's 8.6): no malloc per WRITE. */
	struct claim cl, *c = &cl;
	bool dead;
	unsigned depth = op_depth_dead(fs, n, &dead);
	uint64_t meta = op_meta(depth, 4);
	uint64_t room, pre = 0; /* pre: dm_resv held by a block from the reserve */
	int res = 1;
	uint64_t blk;
	if (nb == 1 && depth <= CR_DEPTH && !dead && cr_pop(fs, &blk)) {
		c->runs[0] = (struct claim_run){blk, 1};
		c->nruns = 1;
		/* It keeps what a queued write of its depth reserves, as
		 * one that took the gate would: the queue holds as many. */
		pre = dm_room(meta);
		atomic_fetch_sub_explicit(&fs->dm_resv, cr_room() - pre, memory_order_relaxed);
		room = 1; /* checked at refill */
	} else if (!take(fs, n, c, nb, meta, &room)) {
		goto out;
	}
	/* The copy: no lock held.  The blocks are ours alone, and no commit
	 * names them (pool.h, "Claims"). */
	uint64_t k = 0;
	int ret = 0;
	for (size_t i = 0; i < c->nruns && !ret; i++) {
		ret = rfs_claim_write(fs->pool, c->runs[i].start, (const uint8_t *)buf + k * BS,
				      (uint32_t)c->runs[i].n, c->csum + k);
		k += c->runs[i].n;
	}
	if (fs->data_hook)
		fs->data_hook(fs->data_arg);
	struct claim_wr w = {c->runs, c->nruns, c->csum, off, size, 0};
	if (ret) {
		claim_drop(fs, &w, 1);
		res = ret;
		goto out;
	}
	/* Mapped later with others (file_delay.c), when the pool has room
	 * and the write is small: the data is in place and checksummed. */
	if (room && c->nruns == 1 && dm_queue(fs, n, &w, meta, room, pre)) {
		*done = size;
		res = 0;
		pre = 0; /* the queued write holds it now */
		goto out;
	}
	struct rfs_op op = {0};
	op_target(&op, n, RFS_PREMOD_WRITE);
	op_local(&op, n); /* as rfs_fs_write's operation */
	ret = op_begin_claimed(fs, &op, "write", meta);
	if (ret) {
		claim_drop(fs, &w, 1);
		/* Short of space for the metadata: the ordinary path
		 * reclaims and commits as far as it can, or says ENOSPC. */
		res = ret == -ENOSPC ? 1 : ret;
		goto out;
	}
	ret = claim_map(fs, n, &w, 1);
	*done = w.done;
	ret = op_end(&op, ret);
	/* OP_RETRY: nothing changed, the runs went back; the ordinary path
	 * is the retry. */
	if (ret == OP_RETRY)
		res = 1;
	else if ((res = ret) < 0)
		*done = 0;
out:
	if (pre) /* not queued: its own operation checks its space */
		atomic_fetch_sub_explicit(&fs->dm_resv, pre, memory_order_relaxed);
	return res;
}
