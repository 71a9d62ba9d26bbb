/*
 * The worker pool behind the FUSE loop (src/util/workpool.c): a fake job
 * source in place of /dev/fuse.  Plain load never starts a temporary
 * worker; jobs that block (as a request a blocking watch holds) get a
 * stand-in each, so a plain job queued behind more blocked jobs than
 * there are standing workers is still served; nested announcements count
 * once, announcements off a worker not at all; the pool shrinks back to
 * its standing workers when the blocked jobs end; the cap on
 * temporaries holds; the end of the source and a receive failure end
 * the pool; destroy cancels workers waiting in receive (the pool starts
 * them with pthread_create: `make test` runs this under TSan too), but
 * only once no job waits: a job blocked on another job that is queued
 * after destroy began is still served, also when the job began its
 * wait after destroy had cancelled every worker (a FUSE notify waiting
 * for WRITEs at a SIGTERM: the daemon hung in destroy); receives that
 * find no memory (the fault injected as the source's -ENOMEM, as
 * libfuse returns when a worker's request buffer cannot be allocated)
 * make the worker back off and retry, logged, while the pool goes on
 * (it ended, and the mount with it), also during a stop while a job
 * waits for another (the worker ended, and destroy hung).  No
 * timing: the waits are on the state, with a generous watchdog against
 * a hang.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "reflinkfs/log.h"
#include "util/workpool.h"

enum { PLAIN = 1, BLOCK, FAIL, WAITS, LATE, NOMEM };

struct src {
	pthread_mutex_t lock;
	pthread_cond_t cond; /* any change below */
	int q[256];
	size_t head, tail;
	bool closed;
	bool released; /* BLOCK jobs may end */
	int served;    /* PLAIN jobs done */
	int in_block;  /* BLOCK jobs sleeping now */
	int blocked_done;
	/* WAITS and LATE: block until `served` reaches wait_served */
	int wait_served;
	int in_late; /* LATE jobs begun (before their blocking wait) */
	bool late_go; /* LATE jobs may begin their blocking wait */
};

static struct src S;

static void src_init(void)
{
	memset(&S, 0, sizeof(S));
	pthread_mutex_init(&S.lock, NULL);
	pthread_cond_init(&S.cond, NULL);
}

static void src_fini(void)
{
	pthread_cond_destroy(&S.cond);
	pthread_mutex_destroy(&S.lock);
}

static void push(int job, int n)
{
	pthread_mutex_lock(&S.lock);
	for (int i = 0; i < n; i++) {
		assert_true(S.tail < sizeof(S.q) / sizeof(S.q[0]));
		S.q[S.tail++] = job;
	}
	pthread_cond_broadcast(&S.cond);
	pthread_mutex_unlock(&S.lock);
}

static void unlock_cb(void *arg)
{
	pthread_mutex_unlock(arg);
}

static int f_receive(void *arg, void *slot)
{
	(void)arg;
	int r;
	pthread_mutex_lock(&S.lock);
	/* Cancelled in the wait (destroy): the mutex is held again. */
	pthread_cleanup_push(unlock_cb, &S.lock);
	while (S.head == S.tail && !S.closed)
		pthread_cond_wait(&S.cond, &S.lock);
	if (S.head == S.tail) {
		r = 0;
	} else {
		int job = S.q[S.head++];
		*(int *)slot = job;
		r = job == FAIL ? -EIO : job == NOMEM ? -ENOMEM : 1;
	}
	pthread_cleanup_pop(1);
	return r;
}

/* A job that waits for plain jobs another worker must receive (as a
 * FUSE notify waits for the WRITEs of dirty pages). */
static void wait_for_served(void)
{
	rfs_workpool_begin_blocking();
	pthread_mutex_lock(&S.lock);
	S.in_block++;
	pthread_cond_broadcast(&S.cond);
	while (S.served < S.wait_served)
		pthread_cond_wait(&S.cond, &S.lock);
	S.in_block--;
	S.blocked_done++;
	pthread_cond_broadcast(&S.cond);
	pthread_mutex_unlock(&S.lock);
	rfs_workpool_end_blocking();
}

static void f_process(void *arg, void *slot)
{
	(void)arg;
	int job = *(int *)slot;
	if (job == WAITS) {
		wait_for_served();
		return;
	}
	if (job == LATE) {
		/* Busy (not blocked) until told, then the wait. */
		pthread_mutex_lock(&S.lock);
		S.in_late++;
		pthread_cond_broadcast(&S.cond);
		while (!S.late_go)
			pthread_cond_wait(&S.cond, &S.lock);
		pthread_mutex_unlock(&S.lock);
		wait_for_served();
		return;
	}
	if (job == BLOCK) {
		/* Nested: only the outer pair may count. */
		rfs_workpool_begin_blocking();
		rfs_workpool_begin_blocking();
		pthread_mutex_lock(&S.lock);
		S.in_block++;
		pthread_cond_broadcast(&S.cond);
		while (!S.released)
			pthread_cond_wait(&S.cond, &S.lock);
		S.in_block--;
		pthread_mutex_unlock(&S.lock);
		rfs_workpool_end_blocking();
		pthread_mutex_lock(&S.lock);
		S.blocked_done++;
		pthread_cond_broadcast(&S.cond);
		pthread_mutex_unlock(&S.lock);
		rfs_workpool_end_blocking();
		return;
	}
	pthread_mutex_lock(&S.lock);
	S.served++;
	pthread_cond_broadcast(&S.cond);
	pthread_mutex_unlock(&S.lock);
}

/* Wait until *v >= want (watchdog: 120 s, only a hang gets near it). */
static void wait_at_least(int *v, int want)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 120;
	pthread_mutex_lock(&S.lock);
	int ret = 0;
	while (*v < want && ret != ETIMEDOUT)
		ret = pthread_cond_timedwait(&S.cond, &S.lock, &ts);
	int got = *v;
	pthread_mutex_unlock(&S.lock);
	assert_int_equal(got, want);
}

/* Wait until the pool runs `want` workers (watchdog 120 s). */
static void wait_workers(struct rfs_workpool *p, unsigned want)
{
	struct rfs_workpool_stats st;
	for (int i = 0; i < 120000; i++) {
		rfs_workpool_stats(p, &st);
		if (st.workers == want)
			return;
		struct timespec ts = {0, 1000000};
		nanosleep(&ts, NULL);
	}
	assert_int_equal(st.workers, want);
}

static void release(void)
{
	pthread_mutex_lock(&S.lock);
	S.released = true;
	pthread_cond_broadcast(&S.cond);
	pthread_mutex_unlock(&S.lock);
}

/* The source ends: the pool ends without error and is destroyed. */
static void close_and_destroy(struct rfs_workpool *p)
{
	pthread_mutex_lock(&S.lock);
	S.closed = true;
	pthread_cond_broadcast(&S.cond);
	pthread_mutex_unlock(&S.lock);
	assert_int_equal(rfs_workpool_wait(p), 0);
	rfs_workpool_destroy(p);
}

static struct rfs_workpool *start(unsigned standing, unsigned max_temp)
{
	struct rfs_workpool_cfg cfg = {
		.standing = standing,
		.max_temp = max_temp,
		.slot_size = sizeof(int),
		.receive = f_receive,
		.process = f_process,
		.name = "test",
	};
	struct rfs_workpool *p = NULL;
	assert_int_equal(rfs_workpool_start(&cfg, &p), 0);
	return p;
}

static void test_plain_load_starts_nobody(void **state)
{
	(void)state;
	src_init();
	struct rfs_workpool *p = start(2, 256);
	push(PLAIN, 200);
	wait_at_least(&S.served, 200);
	/* Off a worker, the announcements do nothing. */
	rfs_workpool_begin_blocking();
	struct rfs_workpool_stats st;
	rfs_workpool_stats(p, &st);
	rfs_workpool_end_blocking();
	assert_int_equal(st.workers, 2);
	assert_int_equal(st.blocked, 0);
	assert_int_equal(st.peak, 2);
	assert_int_equal(st.temps, 0);
	close_and_destroy(p);
	src_fini();
}

static void test_blocked_jobs_get_standins(void **state)
{
	(void)state;
	src_init();
	struct rfs_workpool *p = start(2, 256);
	/* More blocked jobs than workers, then a plain one behind them. */
	push(BLOCK, 4);
	wait_at_least(&S.in_block, 4);
	push(PLAIN, 1);
	wait_at_least(&S.served, 1);
	struct rfs_workpool_stats st;
	rfs_workpool_stats(p, &st);
	assert_int_equal(st.blocked, 4); /* nested pairs counted once */
	assert_int_equal(st.workers, 6);
	assert_int_equal(st.temps, 4);
	assert_int_equal(st.cap_hits, 0);
	release();
	wait_at_least(&S.blocked_done, 4);
	/* Each blocked job's worker is surplus when it ends. */
	wait_workers(p, 2);
	rfs_workpool_stats(p, &st);
	assert_int_equal(st.blocked, 0);
	/* Plain load afterwards: still two, nobody started. */
	push(PLAIN, 50);
	wait_at_least(&S.served, 51);
	rfs_workpool_stats(p, &st);
	assert_int_equal(st.workers, 2);
	assert_int_equal(st.temps, 4);
	close_and_destroy(p);
	src_fini();
}

static void test_cap_on_temporaries(void **state)
{
	(void)state;
	src_init();
	struct rfs_workpool *p = start(1, 2);
	push(BLOCK, 4);
	/* One standing worker and two temporaries hold three; the fourth
	 * job waits in the queue, and reaching the cap is counted. */
	wait_at_least(&S.in_block, 3);
	struct rfs_workpool_stats st;
	rfs_workpool_stats(p, &st);
	assert_int_equal(st.workers, 3);
	assert_int_equal(st.temps, 2);
	assert_true(st.cap_hits >= 1);
	pthread_mutex_lock(&S.lock);
	size_t queued = S.tail - S.head;
	pthread_mutex_unlock(&S.lock);
	assert_int_equal(queued, 1);
	release();
	wait_at_least(&S.blocked_done, 4);
	wait_workers(p, 1);
	close_and_destroy(p);
	src_fini();
}

static void test_failure_ends_pool(void **state)
{
	(void)state;
	src_init();
	struct rfs_workpool *p = start(3, 4);
	push(PLAIN, 5);
	push(FAIL, 1);
	assert_int_equal(rfs_workpool_wait(p), -EIO);
	wait_at_least(&S.served, 5);
	/* The other workers still wait in receive: cancelled. */
	rfs_workpool_destroy(p);
	src_fini();
}

static void test_destroy_cancels_receivers(void **state)
{
	(void)state;
	src_init();
	struct rfs_workpool *p = start(4, 4);
	push(PLAIN, 3);
	wait_at_least(&S.served, 3);
	rfs_workpool_destroy(p); /* every worker in receive */
	src_fini();
}

static void *destroy_thread(void *arg)
{
	rfs_workpool_destroy(arg);
	return NULL;
}

/* Wait until destroy has begun: it set stopping and, with no job
 * blocked, cancelled the workers, all under the pool's lock.  p stays
 * valid: destroy cannot end while a job of the test waits. */
static void wait_stopping(struct rfs_workpool *p)
{
	struct rfs_workpool_stats st;
	for (int i = 0; i < 120000; i++) {
		rfs_workpool_stats(p, &st);
		if (st.stopping)
			return;
		struct timespec ts = {0, 1000000};
		nanosleep(&ts, NULL);
	}
	assert_true(st.stopping);
}

/* Join the destroying thread (watchdog 120 s: a hang fails). */
static void join_destroy(pthread_t th)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 120;
	assert_int_equal(pthread_timedjoin_np(th, NULL, &ts), 0);
}

static void test_destroy_serves_while_a_job_waits(void **state)
{
	(void)state;
	src_init();
	S.wait_served = 1;
	struct rfs_workpool *p = start(2, 4);
	push(WAITS, 1);
	wait_at_least(&S.in_block, 1);
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, destroy_thread, p), 0);
	wait_stopping(p);
	/* Queued only now: the waiting job's worker needs a receiver. */
	push(PLAIN, 1);
	wait_at_least(&S.blocked_done, 1);
	join_destroy(th);
	assert_int_equal(S.served, 1);
	src_fini();
}

static void test_destroy_standin_for_a_late_wait(void **state)
{
	(void)state;
	src_init();
	S.wait_served = 1;
	struct rfs_workpool *p = start(2, 4);
	push(LATE, 1);
	wait_at_least(&S.in_late, 1);
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, destroy_thread, p), 0);
	/* No job blocked: every worker is cancelled, the LATE one's cancel
	 * pending until its next receive. */
	wait_stopping(p);
	pthread_mutex_lock(&S.lock);
	S.late_go = true;
	pthread_cond_broadcast(&S.cond);
	pthread_mutex_unlock(&S.lock);
	wait_at_least(&S.in_block, 1);
	push(PLAIN, 1); /* for the stand-in its wait started */
	wait_at_least(&S.blocked_done, 1);
	join_destroy(th);
	assert_int_equal(S.served, 1);
	src_fini();
}

static int g_nomem_lines;
static void count_nomem(void *arg, int level, const char *line)
{
	(void)arg;
	if (level == RFS_LOG_WARN && strstr(line, "out of memory for a worker's next request"))
		__atomic_fetch_add(&g_nomem_lines, 1, __ATOMIC_RELAXED);
}

/* One worker: every receive is its own, so the log's episodes are. */
static void test_nomem_backs_off_and_logs_once(void **state)
{
	(void)state;
	src_init();
	rfs_log_set_level(RFS_LOG_WARN);
	rfs_log_set_sink(count_nomem, NULL);
	struct rfs_workpool *p = start(1, 4);
	push(NOMEM, 6);
	push(PLAIN, 2);
	wait_at_least(&S.served, 2);
	struct rfs_workpool_stats st;
	rfs_workpool_stats(p, &st);
	assert_int_equal(st.nomem, 6);
	assert_int_equal(st.workers, 1);
	/* Once per episode, not once per failed receive... */
	assert_int_equal(__atomic_load_n(&g_nomem_lines, __ATOMIC_RELAXED), 1);
	/* ...and the next one, after a job was received, is one again. */
	push(NOMEM, 1);
	push(PLAIN, 1);
	wait_at_least(&S.served, 3);
	assert_int_equal(__atomic_load_n(&g_nomem_lines, __ATOMIC_RELAXED), 2);
	close_and_destroy(p);
	rfs_log_set_sink(NULL, NULL);
	rfs_log_set_level(RFS_LOG_ERR);
	src_fini();
}

/* Both workers run short, several times each, and still serve. */
static void test_nomem_every_worker(void **state)
{
	(void)state;
	src_init();
	struct rfs_workpool *p = start(2, 4);
	push(NOMEM, 8);
	push(PLAIN, 5);
	wait_at_least(&S.served, 5);
	struct rfs_workpool_stats st;
	rfs_workpool_stats(p, &st);
	assert_int_equal(st.nomem, 8);
	assert_int_equal(st.workers, 2);
	close_and_destroy(p);
	src_fini();
}

/* A stop while a job waits for another: the workers that could receive
 * what it waits for find no memory (as a stand-in started for a held
 * FUSE notify whose first receive cannot allocate its buffer).  They
 * must back off and receive again, not end: they ended, nobody received
 * the plain job, and destroy waited for the blocked one for good. */
static void test_destroy_nomem_while_a_job_waits(void **state)
{
	(void)state;
	src_init();
	S.wait_served = 1;
	struct rfs_workpool *p = start(2, 4);
	push(WAITS, 1);
	wait_at_least(&S.in_block, 1);
	wait_workers(p, 3); /* the waiting job's stand-in */
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, destroy_thread, p), 0);
	wait_stopping(p);
	/* One for each worker that receives, then what the job waits for. */
	push(NOMEM, 2);
	push(PLAIN, 1);
	wait_at_least(&S.blocked_done, 1);
	join_destroy(th);
	assert_int_equal(S.served, 1);
	src_fini();
}

int main(void)
{
	rfs_log_set_level(RFS_LOG_ERR); /* the cap's warning is expected */
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain_load_starts_nobody),
		cmocka_unit_test(test_blocked_jobs_get_standins),
		cmocka_unit_test(test_cap_on_temporaries),
		cmocka_unit_test(test_failure_ends_pool),
		cmocka_unit_test(test_destroy_cancels_receivers),
		cmocka_unit_test(test_destroy_serves_while_a_job_waits),
		cmocka_unit_test(test_destroy_standin_for_a_late_wait),
		cmocka_unit_test(test_nomem_backs_off_and_logs_once),
		cmocka_unit_test(test_nomem_every_worker),
		cmocka_unit_test(test_destroy_nomem_while_a_job_waits),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
