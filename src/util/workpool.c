/*
 * Worker threads with compensation for blocking waits (workpool.h).
 *
 * Every worker is alike: the pool counts them, it does not tell standing
 * ones from temporaries.  Whichever worker finishes a job while more than
 * `standing` workers are not blocked ends, so after a burst of blocking
 * waits the pool is back to `standing` as soon as those jobs end.
 *
 * Stopping (rfs_workpool_destroy) waits for the blocking waits first:
 * such a wait may be for a job only another worker can receive (a FUSE
 * notify in the kernel until the WRITEs that write back dirty pages are
 * answered), so while any lasts the workers go on receiving, a stand-in
 * starts as before when no worker is left to receive, and only when
 * none is left are the workers in receive cancelled.  A worker
 * cancelled with a job in hand (its receive had returned) finishes the
 * job; should it begin a blocking wait, that starts a stand-in, since
 * every other worker may be cancelled by then.
 *
 * p->lock protects workers, total, blocked, peak, temps, cap_hits,
 * cap_logged, nomem, nomem_logged, stopping, ended, may_leave and err,
 * and each worker's done, blocking, cancelled and next.  ended is also
 * read without the lock (atomic) by workers and the waiter, may_leave
 * by workers after each job.  p->changed is broadcast when a worker is
 * done and when blocked drops to 0 (destroy waits on it).
 *
 * The per-job path takes no lock and writes no shared line: a worker
 * that finished a job reads may_leave (written only when the count of
 * workers, of blocked ones or stopping changes) and takes p->lock only
 * when it is set.  Taking the lock after every job, as before, moved
 * the lock's cache line between the cores at every request, and the
 * line also held the fields every loop reads (cfg, ended); they now sit
 * in lines of their own (docs/ARCHITECTURE.md, "FUSE workers").
 */
#include "util/workpool.h"

#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "reflinkfs/log.h"
#include "util/pcount.h"

struct worker {
	struct rfs_workpool *p;
	pthread_t th;
	void *slot;
	bool done;      /* out of its loop: to be joined */
	bool blocking;  /* between its outermost begin and end blocking */
	bool cancelled; /* destroy cancelled it: it receives no more */
	struct worker *next;
};

struct rfs_workpool {
	/* Read by every worker in every loop, written at start and end
	 * (ended) or when the pool's make-up changes (may_leave): a line
	 * the workers keep shared, apart from the lock's. */
	struct rfs_workpool_cfg cfg;
	atomic_bool ended;
	/* A worker that finishes a job now would leave (see leave_now). */
	atomic_bool may_leave;
	_Alignas(RFS_CACHE_LINE) pthread_mutex_t lock;
	struct worker *workers; /* started and not joined yet */
	int total;              /* workers not done */
	int blocked;            /* of them, between begin and end blocking */
	int peak;
	uint64_t temps, cap_hits;
	bool cap_logged; /* the cap was logged since blocked was last 0 */
	uint64_t nomem;
	bool nomem_logged; /* since a worker that backed off got a job */
	/* rfs_workpool_destroy runs: workers end once nothing is blocked,
	 * stand-ins start only where no worker is left to receive */
	bool stopping;
	int err;
	sem_t finish; /* posted when ended is set */
	pthread_cond_t changed; /* a worker done, blocked back to 0 */
};

static _Thread_local struct worker *t_self;
static _Thread_local unsigned t_depth;

/* Stopping, and no job waits for another: workers in receive are
 * cancelled (destroy), one backing off has nothing left to serve.
 * p->lock held. */
static bool stop_now(const struct rfs_workpool *p)
{
	return p->stopping && p->blocked == 0;
}

/* A worker that finished a job leaves: stopping, once no blocking wait
 * is left (one may wait for a job that only a receiving worker can
 * get); else when it is surplus.  p->lock held. */
static bool leave_now(const struct rfs_workpool *p)
{
	return p->stopping ? p->blocked == 0 : p->total - p->blocked > (int)p->cfg.standing;
}

/* After a change of total, blocked or stopping.  p->lock held. */
static void made_up(struct rfs_workpool *p)
{
	atomic_store_explicit(&p->may_leave, leave_now(p), memory_order_release);
}

/* Sleep backoff_ms before the next receive, uncancellable; a stop with
 * no job waiting for another (destroy and the last end_blocking
 * broadcast p->changed) ends it early, and then it returns false.  A
 * stop while a job waits does not: that job may wait for the very
 * request this worker is to receive (a stand-in started for a held
 * notify, whose first receive could not allocate its buffer), so it
 * backs off and receives again.
 * Not a cancellation point: a cancel that unwound out of the sleep made
 * ThreadSanitizer lose the cleanup handler's lock and report a race in
 * worker_done (1 run in 3 of test_workpool). */
static bool back_off(struct rfs_workpool *p, unsigned backoff_ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += backoff_ms / 1000;
	ts.tv_nsec += (long)(backoff_ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&p->lock);
	while (!stop_now(p) && pthread_cond_timedwait(&p->changed, &p->lock, &ts) == 0)
		;
	bool go_on = !stop_now(p);
	pthread_mutex_unlock(&p->lock);
	return go_on;
}

static void *worker_main(void *arg);

/* Start one worker.  p->lock held.  0 or a negative errno. */
static int spawn(struct rfs_workpool *p)
{
	struct worker *w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->p = p;
	w->slot = calloc(1, p->cfg.slot_size ? p->cfg.slot_size : 1);
	if (!w->slot) {
		free(w);
		return -ENOMEM;
	}
	/* Signals go to the thread in rfs_workpool_wait (libfuse's own
	 * loop does the same): a handler that ends the session wakes it. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	int ret = pthread_create(&w->th, NULL, worker_main, w);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (ret) {
		free(w->slot);
		free(w);
		return -ret;
	}
	w->next = p->workers;
	p->workers = w;
	if (++p->total > p->peak)
		p->peak = p->total;
	made_up(p);
	return 0;
}

/* Join and free the workers that have ended.  p->lock held; each such
 * worker has left its loop and needs the lock no more. */
static void reap(struct rfs_workpool *p)
{
	for (struct worker **pp = &p->workers; *pp;) {
		struct worker *w = *pp;
		if (!w->done) {
			pp = &w->next;
			continue;
		}
		*pp = w->next;
		pthread_join(w->th, NULL);
		if (p->cfg.slot_free)
			p->cfg.slot_free(p->cfg.arg, w->slot);
		free(w->slot);
		free(w);
	}
}

static void end_pool(struct rfs_workpool *p, int err)
{
	pthread_mutex_lock(&p->lock);
	if (!atomic_load(&p->ended)) {
		p->err = err;
		atomic_store(&p->ended, true);
		sem_post(&p->finish);
	}
	pthread_mutex_unlock(&p->lock);
}

static bool pool_ended(struct rfs_workpool *p)
{
	return atomic_load(&p->ended) || (p->cfg.ended && p->cfg.ended(p->cfg.arg));
}

/* w leaves its loop.  p->lock held. */
static void worker_done(struct worker *w)
{
	w->done = true;
	w->p->total--;
	made_up(w->p);
	pthread_cond_broadcast(&w->p->changed);
}

/* Cleanup handler: w was cancelled in receive (rfs_workpool_destroy). */
static void cancelled_in_receive(void *arg)
{
	struct worker *w = arg;
	pthread_mutex_lock(&w->p->lock);
	worker_done(w);
	pthread_mutex_unlock(&w->p->lock);
}

/* w's receive found no memory (-ENOMEM: libfuse could not allocate the
 * worker's request buffer).  Ending the pool for it, as libfuse's own
 * loop does, ended the mount for one failed allocation; the worker
 * backs off instead.  Returns its next back-off in ms. */
static unsigned no_memory(struct rfs_workpool *p, unsigned backoff_ms)
{
	backoff_ms = backoff_ms ? backoff_ms * 2 : 1;
	if (backoff_ms > RFS_WORKPOOL_NOMEM_MAX_MS)
		backoff_ms = RFS_WORKPOOL_NOMEM_MAX_MS;
	pthread_mutex_lock(&p->lock);
	p->nomem++;
	if (!p->nomem_logged)
		rfs_log(RFS_LOG_WARN,
			"%s: out of memory for a worker's next request (its receive buffer): it "
			"tries again in %u ms, backing off to %u ms, while the other workers "
			"serve; if they all run short, requests wait in the kernel until memory "
			"is freed on this machine",
			p->cfg.name, backoff_ms, RFS_WORKPOOL_NOMEM_MAX_MS);
	p->nomem_logged = true;
	pthread_mutex_unlock(&p->lock);
	return backoff_ms;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct rfs_workpool *p = w->p;
	t_self = w;
	if (p->cfg.thread_name)
		pthread_setname_np(pthread_self(), p->cfg.thread_name);
	t_depth = 0;
	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
	unsigned backoff_ms = 0; /* after receives that found no memory */
	for (;;) {
		if (atomic_load(&p->ended))
			break;
		/* Cancellable only here: a job is never left halfway (it may
		 * hold the fs's locks). */
		int r;
		pthread_cleanup_push(cancelled_in_receive, w);
		pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, NULL);
		r = p->cfg.receive(p->cfg.arg, w->slot);
		pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
		pthread_cleanup_pop(0);
		if (r == -ENOMEM) {
			backoff_ms = no_memory(p, backoff_ms);
			if (!back_off(p, backoff_ms))
				break; /* stopping, nothing waits: nothing to serve */
			continue;
		}
		if (r > 0 && backoff_ms) {
			backoff_ms = 0;
			pthread_mutex_lock(&p->lock);
			p->nomem_logged = false;
			pthread_mutex_unlock(&p->lock);
		}
		if (r == -EINTR || r == -EAGAIN)
			continue;
		if (r <= 0) {
			end_pool(p, r);
			break;
		}
		p->cfg.process(p->cfg.arg, w->slot);
		/* may_leave is leave_now() as of the pool's last change: a
		 * change after this load is as if it came after the job. */
		if (!atomic_load_explicit(&p->may_leave, memory_order_acquire))
			continue;
		pthread_mutex_lock(&p->lock);
		bool leave = leave_now(p);
		if (leave)
			worker_done(w);
		pthread_mutex_unlock(&p->lock);
		if (leave)
			return NULL;
	}
	pthread_mutex_lock(&p->lock);
	worker_done(w);
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

/* Workers that will receive another job: not done, not cancelled, not
 * in a blocking wait.  p->lock held. */
static int receivers(struct rfs_workpool *p)
{
	int n = 0;
	for (struct worker *w = p->workers; w; w = w->next)
		n += !w->done && !w->cancelled && !w->blocking;
	return n;
}

void rfs_workpool_begin_blocking(void)
{
	struct worker *w = t_self;
	if (!w || t_depth++)
		return;
	struct rfs_workpool *p = w->p;
	pthread_mutex_lock(&p->lock);
	p->blocked++;
	made_up(p);
	w->blocking = true;
	reap(p);
	/* Stopping, one receiver is enough, but there must be one: those in
	 * receive may all be cancelled already. */
	bool need = p->stopping ? receivers(p) == 0
				: p->total - p->blocked < (int)p->cfg.standing;
	if (need) {
		int temps = p->total - (int)p->cfg.standing;
		if (temps >= (int)p->cfg.max_temp) {
			p->cap_hits++;
			if (!p->cap_logged)
				rfs_log(RFS_LOG_WARN,
					"%s: %d requests wait for something outside the daemon (blocking "
					"watches' subscribers, other requests) and %d extra workers run, "
					"the limit: new requests queue in the kernel until one of them "
					"ends (acknowledge the events, or stop the blocking watches)",
					p->cfg.name, p->blocked, temps);
			p->cap_logged = true;
		} else {
			int ret = spawn(p);
			if (ret)
				rfs_log(RFS_LOG_WARN,
					"%s: cannot start a worker in place of one that waits (%s): "
					"requests may queue until it is back",
					p->cfg.name, strerror(-ret));
			else
				p->temps++;
		}
	}
	pthread_mutex_unlock(&p->lock);
}

void rfs_workpool_end_blocking(void)
{
	struct worker *w = t_self;
	if (!w || !t_depth || --t_depth)
		return;
	struct rfs_workpool *p = w->p;
	pthread_mutex_lock(&p->lock);
	w->blocking = false;
	p->blocked--;
	made_up(p);
	if (p->blocked == 0) {
		p->cap_logged = false;
		pthread_cond_broadcast(&p->changed);
	}
	pthread_mutex_unlock(&p->lock);
}

static void destroy(struct rfs_workpool *p)
{
	pthread_mutex_lock(&p->lock);
	p->stopping = true;
	made_up(p);
	pthread_cond_broadcast(&p->changed); /* workers backing off */
	for (;;) {
		/* Once no worker waits for somebody else, those in receive
		 * end now; one serving a job ends after it (or, should the
		 * job begin a blocking wait, after the wait and the job). */
		if (p->blocked == 0)
			for (struct worker *w = p->workers; w; w = w->next)
				if (!w->done && !w->cancelled) {
					w->cancelled = true;
					pthread_cancel(w->th);
				}
		reap(p);
		if (!p->workers)
			break;
		pthread_cond_wait(&p->changed, &p->lock);
	}
	pthread_mutex_unlock(&p->lock);
	pthread_cond_destroy(&p->changed);
	sem_destroy(&p->finish);
	pthread_mutex_destroy(&p->lock);
	free(p);
}

int rfs_workpool_start(const struct rfs_workpool_cfg *cfg, struct rfs_workpool **out)
{
	if (!cfg->standing || !cfg->receive || !cfg->process)
		return -EINVAL;
	/* Aligned: the lock's line apart from cfg's (see the struct). */
	struct rfs_workpool *p = aligned_alloc(_Alignof(struct rfs_workpool), sizeof(*p));
	if (!p)
		return -ENOMEM;
	memset(p, 0, sizeof(*p));
	p->cfg = *cfg;
	if (!p->cfg.name)
		p->cfg.name = "workers";
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->changed, NULL);
	sem_init(&p->finish, 0, 0);
	int ret = 0;
	/* All under the lock: no worker counts blocking waits before every
	 * standing one is there. */
	pthread_mutex_lock(&p->lock);
	for (unsigned i = 0; i < cfg->standing && !ret; i++)
		ret = spawn(p);
	pthread_mutex_unlock(&p->lock);
	if (ret) {
		destroy(p);
		return ret;
	}
	*out = p;
	return 0;
}

int rfs_workpool_wait(struct rfs_workpool *p)
{
	/* sem_timedwait returns early (EINTR) when this thread handles a
	 * signal; the timeout covers a handler run by another thread. */
	while (!pool_ended(p)) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 1;
		sem_timedwait(&p->finish, &ts);
	}
	pthread_mutex_lock(&p->lock);
	int err = p->err;
	pthread_mutex_unlock(&p->lock);
	return err;
}

void rfs_workpool_destroy(struct rfs_workpool *p)
{
	if (p)
		destroy(p);
}

void rfs_workpool_stats(struct rfs_workpool *p, struct rfs_workpool_stats *st)
{
	pthread_mutex_lock(&p->lock);
	st->workers = (unsigned)p->total;
	st->blocked = (unsigned)p->blocked;
	st->peak = (unsigned)p->peak;
	st->temps = p->temps;
	st->cap_hits = p->cap_hits;
	st->stopping = p->stopping;
	st->nomem = p->nomem;
	pthread_mutex_unlock(&p->lock);
}
