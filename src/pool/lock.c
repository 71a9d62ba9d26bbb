/*
 * The pool's lock: a reader/writer lock plus the writers' gate (see
 * struct rfs_pool and rfs_pool_commit), and a record, per thread, of what
 * the thread holds.  The record lets code assert that its caller holds a
 * lock (rfs_pool_holds_lock / rfs_pool_holds_wrlock, see
 * src/util/lockcheck.h), lets unlock know which kind it releases, and
 * lets rfs_pool_stats take the read lock only when its caller holds none.
 * Keeping it costs a few thread-local stores per lock operation.
 */
#include "pool/pool_internal.h"
#include "util/lockcheck.h"

/* A thread holds the locks of at most a few pools at once (tests that
 * compare two pools; the fs holds one). */
#define HELD_MAX 4

struct held {
	const rfs_pool *pool; /* NULL: free slot */
	unsigned rd;          /* read holds: 0 or 1 (readers do not nest) */
	bool wr;              /* the write lock */
	bool gate;            /* the writers' gate */
};

static _Thread_local struct held held[HELD_MAX];

_Thread_local const rfs_pool *rfs_t_wrpool;

static struct held *held_find(const rfs_pool *pool)
{
	for (int i = 0; i < HELD_MAX; i++)
		if (held[i].pool == pool)
			return &held[i];
	return NULL;
}

/* The calling thread's record for pool, made if need be. */
static struct held *held_get(const rfs_pool *pool)
{
	struct held *h = held_find(pool);

	if (!h) {
		h = held_find(NULL);
		/* More pools locked at once than recorded: a bug. */
		assert(h);
		h->pool = pool;
	}
	return h;
}

static void held_put(struct held *h)
{
	if (!h->rd && !h->wr && !h->gate)
		h->pool = NULL;
}

void rfs_pool_lock_init(rfs_pool *pool)
{
	pthread_rwlockattr_t a;

	/* Writers first: glibc's default lets a steady stream of readers
	 * (FUSE worker threads reading) hold off a writer, and the commit,
	 * for ever.  The price: readers must not nest (a nested read lock
	 * waits behind a waiting writer, who waits for the first). */
	pthread_rwlockattr_init(&a);
	pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&pool->lock, &a);
	pthread_rwlockattr_destroy(&a);
	/* The gate is held a few microseconds at a time (a claim, a write's
	 * mapping), twice per WRITE: a writer that finds it held spins a
	 * little (glibc's adaptive mutex) before it sleeps, which saves a
	 * futex wait and wake-up when the holder runs on the other core
	 * (issue 9, docs/ARCHITECTURE.md "Locking model"). */
	pthread_mutexattr_t m;
	pthread_mutexattr_init(&m);
	pthread_mutexattr_settype(&m, PTHREAD_MUTEX_ADAPTIVE_NP);
	pthread_mutex_init(&pool->gate, &m);
	pthread_mutexattr_destroy(&m);
}

bool rfs_pool_holds_lock(const rfs_pool *pool)
{
	const struct held *h = held_find(pool);

	return h && (h->rd || h->wr);
}

bool rfs_pool_holds_wrlock(const rfs_pool *pool)
{
	const struct held *h = held_find(pool);

	return h && h->wr;
}

bool rfs_pool_holds_gate(const rfs_pool *pool)
{
	const struct held *h = held_find(pool);

	return h && h->gate;
}

void rfs_pool_rdlock(rfs_pool *pool)
{
	/* Readers do not nest (see rfs_pool_lock_init), and a reader that
	 * holds the write lock would wait for itself. */
	RFS_ASSERT_LOCK(!rfs_pool_holds_lock(pool));
	/* The try fails while a writer holds the lock or waits for it
	 * (writers first): only then is the wait timed. */
	if (pthread_rwlock_tryrdlock(&pool->lock)) {
		uint64_t t0 = rfs_pool_lockw_now();
		pthread_rwlock_rdlock(&pool->lock);
		rfs_pool_lockw_add(RFS_LOCKW_POOL, rfs_pool_lockw_now() - t0);
	}
	held_get(pool)->rd++;
}

/* The write lock was just taken: bump the generation its holder's
 * changes invalidate (the local writer's file's, else the pool's).
 * Sequentially consistent, before any change: a reader that validates
 * its copies with no lock (rfs_pool_change_gen_now) sees the bump before
 * it can see anything the holder changes or frees. */
static void bump(rfs_pool *pool)
{
	_Atomic uint64_t *g = atomic_load_explicit(&pool->local_gen, memory_order_relaxed);
	atomic_fetch_add(g ? g : &pool->change_gen, 1);
}

static void wrlock(rfs_pool *pool, _Atomic uint64_t *local)
{
	/* Taking the write lock while holding either would deadlock. */
	RFS_ASSERT_LOCK(!rfs_pool_holds_lock(pool) && !rfs_pool_holds_gate(pool));
	pthread_mutex_lock(&pool->gate);
	pthread_rwlock_wrlock(&pool->lock);
	atomic_store_explicit(&pool->local_gen, local, memory_order_relaxed);
	bump(pool);
	rfs_lockw_span_begin(pool);
	struct held *h = held_get(pool);
	h->gate = true;
	h->wr = true;
	rfs_t_wrpool = pool;
}

void rfs_pool_wrlock(rfs_pool *pool)
{
	wrlock(pool, NULL);
}

void rfs_pool_wrlock_local(rfs_pool *pool, _Atomic uint64_t *gen)
{
	assert(gen);
	wrlock(pool, gen);
}

void rfs_pool_bump_global(rfs_pool *pool)
{
	RFS_ASSERT_LOCK(rfs_pool_holds_wrlock(pool));
	atomic_fetch_add(&pool->change_gen, 1);
}

static bool trywrlock(rfs_pool *pool, _Atomic uint64_t *local)
{
	RFS_ASSERT_LOCK(!rfs_pool_holds_lock(pool) && !rfs_pool_holds_gate(pool));
	if (pthread_mutex_trylock(&pool->gate))
		return false;
	/* Only readers can be in: they leave without waiting for anyone. */
	pthread_rwlock_wrlock(&pool->lock);
	atomic_store_explicit(&pool->local_gen, local, memory_order_relaxed);
	bump(pool);
	rfs_lockw_span_begin(pool);
	struct held *h = held_get(pool);
	h->gate = true;
	h->wr = true;
	rfs_t_wrpool = pool;
	return true;
}

bool rfs_pool_trywrlock(rfs_pool *pool)
{
	return trywrlock(pool, NULL);
}

bool rfs_pool_trywrlock_local(rfs_pool *pool, _Atomic uint64_t *gen)
{
	assert(gen);
	return trywrlock(pool, gen);
}

void rfs_pool_gate_lock(rfs_pool *pool)
{
	RFS_ASSERT_LOCK(!rfs_pool_holds_lock(pool) && !rfs_pool_holds_gate(pool));
	pthread_mutex_lock(&pool->gate);
	/* Only gate holders take the lock for writing, so no writer holds
	 * it or waits for it now: this read lock is granted at once. */
	pthread_rwlock_rdlock(&pool->lock);
	struct held *h = held_get(pool);
	h->gate = true;
	h->rd++;
}

void rfs_pool_unlock(rfs_pool *pool)
{
	struct held *h = held_find(pool);

	/* Unlocking what this thread does not hold: a bug. */
	assert(h && (h->rd || h->wr));
	if (h->wr) {
		h->wr = false;
		if (rfs_t_wrpool == pool)
			rfs_t_wrpool = NULL;
		rfs_lockw_span_end(pool);
		pthread_rwlock_unlock(&pool->lock);
		if (h->gate) {
			atomic_store_explicit(&pool->local_gen, NULL, memory_order_relaxed);
			h->gate = false;
			pthread_mutex_unlock(&pool->gate);
		}
	} else {
		h->rd--;
		pthread_rwlock_unlock(&pool->lock);
		/* rfs_pool_gate_lock (a paused writer or a commit's write-out
		 * upgrades before it unlocks). */
		if (h->gate) {
			atomic_store_explicit(&pool->local_gen, NULL, memory_order_relaxed);
			h->gate = false;
			pthread_mutex_unlock(&pool->gate);
		}
	}
	held_put(h);
}

void rfs_pool_lock_downgrade(rfs_pool *pool)
{
	struct held *h = held_find(pool);

	assert(h && h->wr && h->gate);
	rfs_lockw_span_end(pool);
	pthread_rwlock_unlock(&pool->lock);
	pthread_rwlock_rdlock(&pool->lock);
	h->wr = false;
	if (rfs_t_wrpool == pool)
		rfs_t_wrpool = NULL;
	h->rd++;
}

/* Read lock -> write lock, the gate held; global: bump the pool's
 * generation (the commit's write-out), else whichever bump() picks (a
 * paused writer's resume). */
static void upgrade(rfs_pool *pool, bool global)
{
	struct held *h = held_find(pool);

	assert(h && h->rd == 1 && !h->wr && h->gate);
	pthread_rwlock_unlock(&pool->lock);
	pthread_rwlock_wrlock(&pool->lock);
	if (global)
		atomic_fetch_add(&pool->change_gen, 1);
	else
		bump(pool);
	rfs_lockw_span_begin(pool);
	h->rd = 0;
	h->wr = true;
	rfs_t_wrpool = pool;
}

void rfs_pool_lock_upgrade(rfs_pool *pool)
{
	/* Only the commit upgrades: whatever the holder's write lock bumped
	 * (rfs_pool_commit's commit_gen, an operation's own generation). */
	upgrade(pool, false);
}

uint64_t rfs_pool_change_gen(const rfs_pool *pool)
{
	RFS_ASSERT_LOCK(rfs_pool_holds_lock(pool));
	return atomic_load_explicit(&pool->change_gen, memory_order_relaxed);
}

uint64_t rfs_pool_change_gen_now(const rfs_pool *pool)
{
	return atomic_load(&pool->change_gen);
}

void rfs_pool_write_pause(rfs_pool *pool)
{
	RFS_ASSERT_LOCK(rfs_pool_holds_wrlock(pool) && rfs_pool_holds_gate(pool));
	rfs_pool_lock_downgrade(pool);
}

void rfs_pool_write_resume(rfs_pool *pool)
{
	upgrade(pool, false);
}
