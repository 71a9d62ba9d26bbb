/*
 * Delayed mapping of small whole-block writes (issue 9, "Parallel I/O").
 *
 * A whole-block WRITE copies its data into claimed blocks with no lock
 * held (file_claim.c); what is left is the operation that maps them into
 * the file, and on this machine that operation is most of a random
 * write's cost (docs/ARCHITECTURE.md, "The mapping is the whole write
 * gap").  So a small one (one run, at most DM_RUN_MAX blocks) is not
 * mapped at once: it is queued here and the WRITE is answered.  The
 * queue is mapped in one operation per file when it holds DM_BATCH
 * writes, and, before that, by anything that could see the file's
 * state:
 *
 *   - every operation (op.c begin), except the best-effort atime update
 *     of a READ that already settled its file;
 *   - every reader that takes a pool lock through fs_rdlock / fs_wrlock;
 *     READ and GETATTR (and RELEASE / FORGET) settle only their own file
 *     (dm_settle_id), so a reader of one file never maps another's;
 *   - sync, fsync, the background commit (so a write is durable within
 *     the commit interval, as before), freezing, arming a watch mark, a
 *     follower of the change journal starting to wait (and nothing is
 *     queued while one waits: its wake-up is the journal record).
 *
 * Order: writes are queued in the order their WRITEs were answered and
 * mapped in that order, and any change that does not come through this
 * queue first settles it, so every write is applied after those
 * answered before it.
 *
 * Space: a write is delayed only when the pool has room for the whole
 * batch's metadata besides (dm_room), so the batch's operation does not
 * fail for space after its WRITEs were answered.  If it fails all the
 * same (an I/O error, a pool turned read-only), the error is logged with
 * the inode, kept on the file and returned by its next fsync, as a
 * kernel filesystem reports a failed write-back.
 *
 * Pre-modification events: a write is delayed only while no watch mark
 * is armed (checked under dm_lock); arming a mark settles the queue
 * after it is armed, so every write answered before the arm returns is
 * visible by then, and every later one is checked as before.
 *
 * Locks: dm_apply (held from taking writes off the queue until their
 * operation ended) before dm_lock (the queue, a leaf), before any pool
 * lock.  Callers of dm_settle hold no pool lock and no nlock.
 */
#include "fs/file_claim.h"
#include "fs/op.h"

#include <stdio.h>
#include <stdlib.h>

#define BS RFS_BLOCK_SIZE

struct dm_ent {
	struct rfs_node *n;
	struct claim_run run;
	uint64_t off;
	uint32_t csum[DM_RUN_MAX];
};

uint64_t dm_room(uint64_t meta)
{
	/* A batch of DM_BATCH writes, each with a write's metadata, and as
	 * much again as margin for what else runs meanwhile. */
	return 2 * (uint64_t)DM_BATCH * (meta + DM_RUN_MAX);
}

int dm_init(rfs_fs *fs)
{
	fs->dm_q = calloc(DM_BATCH, sizeof(*fs->dm_q));
	if (!fs->dm_q)
		return -ENOMEM;
	pthread_mutex_init(&fs->dm_apply, NULL);
	pthread_mutex_init(&fs->dm_lock, NULL);
	return 0;
}

void dm_fini(rfs_fs *fs)
{
	if (!fs->dm_q)
		return;
	/* Writes still queued (an abandoned or crashed fs): their claims
	 * went with the pool. */
	free(fs->dm_q);
	fs->dm_q = NULL;
	pthread_mutex_destroy(&fs->dm_apply);
	pthread_mutex_destroy(&fs->dm_lock);
}

/* The first error of n's delayed writes, kept for its next fsync. */
static void note_err(rfs_fs *fs, struct rfs_node *n, int err, size_t k)
{
	rfs_log(RFS_LOG_ERR,
		"%s: %zu write(s) to inode %llu of volume %llu were answered but could not be mapped (%s): their data is lost; the file's next fsync returns the error",
		rfs_pool_path(fs->pool), k, (unsigned long long)n->ino,
		(unsigned long long)n->vol, strerror(-err));
	pthread_mutex_lock(&fs->dm_lock);
	if (!n->dm_err)
		n->dm_err = err;
	pthread_mutex_unlock(&fs->dm_lock);
}

/* Map k writes of n in one operation (dm_apply held).  No pool lock. */
static void map_file(rfs_fs *fs, struct rfs_node *n, struct dm_ent **e, size_t k)
{
	struct claim_wr w[DM_BATCH];
	for (size_t i = 0; i < k; i++)
		w[i] = (struct claim_wr){&e[i]->run, 1, e[i]->csum, e[i]->off,
					 (size_t)e[i]->run.n * BS, 0};
	struct rfs_op op = {0};
	op_local(&op, n);
	uint64_t meta = op_meta(op_depth(fs, n), 4 * (unsigned)k);
	int ret = op_begin_queued(fs, &op, "write (delayed mapping)", meta);
	if (ret) {
		claim_drop(fs, w, k);
	} else {
		ret = claim_map(fs, n, w, k);
		ret = op_end(&op, ret);
		if (ret == OP_RETRY)
			ret = -ENOSPC; /* nothing changed: the runs went back */
	}
	/* ESTALE: the file was deleted (and not open) after its write was
	 * queued; nobody can read what it held. */
	if (ret && ret != -ESTALE)
		note_err(fs, n, ret, k);
}

void dm_settle_slow(rfs_fs *fs, struct rfs_node *only)
{
	struct dm_ent take[DM_BATCH];
	size_t k = 0;
	pthread_mutex_lock(&fs->dm_apply);
	pthread_mutex_lock(&fs->dm_lock);
	size_t keep = 0;
	for (size_t i = 0; i < fs->dm_n; i++) {
		if (!only || fs->dm_q[i].n == only)
			take[k++] = fs->dm_q[i];
		else
			fs->dm_q[keep++] = fs->dm_q[i];
	}
	fs->dm_n = keep;
	pthread_mutex_unlock(&fs->dm_lock);
	/* One operation per file, its writes in queue order. */
	bool done[DM_BATCH] = {false};
	for (size_t i = 0; i < k; i++) {
		if (done[i])
			continue;
		struct rfs_node *n = take[i].n;
		struct dm_ent *mine[DM_BATCH];
		size_t m = 0;
		for (size_t j = i; j < k; j++)
			if (!done[j] && take[j].n == n) {
				mine[m++] = &take[j];
				done[j] = true;
			}
		map_file(fs, n, mine, m);
		atomic_fetch_sub_explicit(&n->dm_count, (uint32_t)m, memory_order_release);
	}
	atomic_fetch_sub_explicit(&fs->dm_count, (uint32_t)k, memory_order_release);
	pthread_mutex_unlock(&fs->dm_apply);
}

void dm_settle_id(rfs_fs *fs, rfs_nodeid id)
{
	if (!atomic_load_explicit(&fs->dm_count, memory_order_acquire))
		return;
	struct rfs_node *n = node_get(fs, id);
	if (n)
		dm_settle(fs, n);
}

bool dm_queue(rfs_fs *fs, struct rfs_node *n, const struct claim_wr *w)
{
	/* A map hook (tests) holds the writer in its mapping: such a test
	 * means the write's own operation. */
	if (w->nruns != 1 || w->runs[0].n > DM_RUN_MAX || !fs->dm_q || fs->map_hook)
		return false;
	bool full;
	pthread_mutex_lock(&fs->dm_lock);
	/* Under dm_lock: an arm that set its bit before this sees the write
	 * queued when it settles (rfs_fs_watch_arm).  Not while a follower
	 * of the change journal waits: it is woken by the journal record,
	 * which only the mapping writes (rfs_fs_changes_wait). */
	if (fs->dm_n == DM_BATCH ||
	    (atomic_load(&fs->watch_state) & WATCH_ARMED_MASK) ||
	    atomic_load(&fs->cw_waiters)) {
		pthread_mutex_unlock(&fs->dm_lock);
		return false;
	}
	struct dm_ent *e = &fs->dm_q[fs->dm_n++];
	e->n = n;
	e->run = w->runs[0];
	e->off = w->off;
	memcpy(e->csum, w->csum, 4 * w->runs[0].n);
	atomic_fetch_add_explicit(&n->dm_count, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&fs->dm_count, 1, memory_order_relaxed);
	full = fs->dm_n == DM_BATCH;
	pthread_mutex_unlock(&fs->dm_lock);
	if (full)
		dm_settle(fs, NULL);
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
