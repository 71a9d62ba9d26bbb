/*
 * FUSE over io_uring (Linux 6.14+, protocol 7.42) on libfuse 3.14.
 *
 * With /dev/fuse, each request costs the daemon a read(2) and a
 * writev(2), and the kernel wakes whichever worker sleeps in read.  Over
 * io_uring each ring entry is a pair of buffers the kernel fills with a
 * request; the daemon answers in the same buffers and one io_uring_enter
 * both commits the answer and waits for the next request
 * (FUSE_IO_URING_CMD_COMMIT_AND_FETCH).  Requests are queued per CPU
 * (the queue of the CPU the caller runs on) and no queue takes another's
 * requests (Linux 6.18), so one busy CPU's requests are served only by
 * its queue's entries: each queue has as many as the mount has /dev/fuse
 * workers, and their threads run on any CPU (docs/ARCHITECTURE.md, "FUSE
 * over io_uring", has the measurements).  The kernel only uses the rings
 * once every queue has an entry,
 * and keeps sending FORGET and INTERRUPT, and taking notifications,
 * through /dev/fuse: the /dev/fuse workers (workers.c) keep running.
 * libfuse must never splice a reply past the session's writev hook:
 * op_init leaves FUSE_CAP_SPLICE_WRITE off.
 *
 * libfuse 3.14 knows nothing of this.  Each ring thread owns one entry
 * and one io_uring.  It rebuilds the request the way read(2) would have
 * given it (fuse_in_header, the opcode's argument, the rest) in place
 * in its buffer and hands it to fuse_session_process_buf; libfuse's
 * reply comes back through the session's custom writev (tmpfile.c),
 * which gives it to rfs_fuse_uring_reply: the reply is copied into the
 * entry, and the thread commits it.
 *
 * An entry cannot be taken back from the kernel while the connection
 * lives, so ring threads never end before the mount does (one that ends
 * on an error leaves its entry behind: requests from its CPU then fail
 * or wait, and the log asks for a remount; ring_main).  A request
 * that waits for something outside the daemon (workers.c's wait hooks)
 * holds its entry; when that leaves its queue no free entry, a new ring
 * thread with a new entry is started for that queue (at most
 * RFS_FUSE_URING_ENTRIES_MAX in all), as the /dev/fuse pool starts a
 * temporary worker.
 *
 * The new entry takes only requests that come after it; those the queue
 * took before wait for a commit, so a request is sent from the queue's
 * CPU (kick_queue).  A daemon that may not run on some CPU (a cpuset)
 * could not do that and is not offered io_uring (rings_start).
 *
 * Enabled by -o uring (and by default) when the kernel allows it:
 * /sys/module/fuse/parameters/enable_uring is Y (docs/ARCHITECTURE.md,
 * "FUSE over io_uring").
 */
#include "fuse/rfs_fuse.h"

#include <errno.h>
#include <linux/fuse.h>
#include <liburing.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/xattr.h>
#include <time.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include "fuse/uring_req.h"
#include "reflinkfs/log.h"

/* The protocol 7.42 parts <linux/fuse.h> of Debian 12 (7.38) lacks. */
#ifndef FUSE_OVER_IO_URING
#define FUSE_OVER_IO_URING (1ULL << 41)
#endif
#define UR_CMD_REGISTER 1u
#define UR_CMD_COMMIT_AND_FETCH 2u

/* In the 80-byte command area of a 128-byte SQE. */
struct ur_cmd_req {
	uint64_t flags;
	uint64_t commit_id;
	uint16_t qid;
	uint8_t padding[6];
};

_Static_assert(sizeof(struct ur_cmd_req) <= 80, "the SQE128 command area holds 80 bytes");

/* Payload buffer per entry: the kernel wants at least its largest
 * request or reply (max_write, max_pages: 1 MiB here, ops.c op_init). */
#define UR_PAYLOAD ((size_t)(1u << 20) + 4096)
#define UR_STOP_TAG 1u /* user_data of the stop eventfd's poll */

/* qid, th, mem, hdr, payload and iov are set by ent_start under g.lock
 * and constant until ent_free; ring is the owner thread's alone.  The
 * buffers are written by the kernel, the owner thread, and the thread
 * that replies for it (rfs_fuse_uring_reply, under g.lock, while the
 * owner waits for replied). */
struct ur_ent {
	unsigned qid;
	pthread_t th;
	struct io_uring ring;
	char *mem; /* header, then the payload right after it */
	struct rfs_uring_req_header *hdr;
	char *payload;
	struct iovec iov[2];
	/* The request in hand, 0 none: written by the owner thread, read by
	 * rfs_fuse_uring_reply on others (under g.lock). */
	_Atomic uint64_t unique;
	_Atomic bool replied; /* its reply is in the buffers */
	bool registered;      /* the kernel has the entry; g.lock */
	bool blocked;         /* counted in g.blocked[qid]; g.lock */
	/* Nesting of begin/end_blocking (owner thread only): a clone's
	 * wait around its invalidations holds a watch's wait inside. */
	unsigned depth;
};

static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond; /* a reply from another thread, a thread's start */
	/* Held through ents_end: rings_start's (a queue without a thread)
	 * and the stop's (a SIGTERM during INIT) may run at once, and a
	 * thread must be joined once. */
	pthread_mutex_t end_lock;
	/* m, nq, per_queue and stop_fd: set by rfs_fuse_uring_prepare before
	 * the session's first request, constant until rfs_fuse_uring_stop
	 * has joined every ring thread. */
	struct rfs_mount *m;
	unsigned nq;        /* queues: CPUs the kernel may run callers on */
	unsigned per_queue; /* standing entries per queue */
	int stop_fd;        /* eventfd: written once to end every thread */
	/* -o uring and the kernel allows it: read by every request's hook
	 * (rfs_fuse_uring_note_init), on the /dev/fuse workers too, while
	 * rfs_fuse_uring_stop clears it. */
	_Atomic bool wanted;
	/* INIT took io_uring and ring threads are listed in ents[]: set
	 * and cleared under lock, read without it by rfs_fuse_uring_reply
	 * (which then takes the lock to look at ents[]). */
	_Atomic bool negotiated;
	/* The unique of the INIT that offered io_uring, 0 none: set by the
	 * request hook, taken by the reply hook (either thread). */
	_Atomic uint64_t init_unique;
	/* The rest under lock. */
	struct ur_ent *ents[RFS_FUSE_URING_ENTRIES_MAX];
	unsigned nents;
	unsigned *entries; /* per queue */
	unsigned *blocked; /* per queue: entries whose request waits */
	bool started, stopping;
} g = {.lock = PTHREAD_MUTEX_INITIALIZER,
       .cond = PTHREAD_COND_INITIALIZER,
       .end_lock = PTHREAD_MUTEX_INITIALIZER,
       .stop_fd = -1};

/* The entry whose request this thread serves, NULL on other threads. */
static _Thread_local struct ur_ent *t_ent;

bool rfs_fuse_uring_kernel_allows(void)
{
	FILE *f = fopen("/sys/module/fuse/parameters/enable_uring", "r");
	if (!f)
		return false;
	int c = fgetc(f);
	fclose(f);
	return c == 'Y' || c == 'y' || c == '1';
}

static void sqe_cmd(struct io_uring_sqe *sqe, struct ur_ent *e, uint32_t op, uint64_t commit)
{
	memset(sqe, 0, 2 * sizeof(*sqe)); /* SQE128: the command area too */
	sqe->opcode = IORING_OP_URING_CMD;
	sqe->fd = fuse_session_fd(g.m->se);
	sqe->cmd_op = op;
	io_uring_sqe_set_data(sqe, e);
	if (op == UR_CMD_REGISTER) {
		sqe->addr = (uint64_t)(uintptr_t)e->iov;
		sqe->len = 2;
	}
	struct ur_cmd_req *r = (struct ur_cmd_req *)sqe->cmd;
	r->qid = (uint16_t)e->qid;
	r->commit_id = commit;
}

/* Queue the entry's next command: its registration, or the commit of
 * the reply in its buffers and the fetch of the next request.  There is
 * always a free SQE: one command per ring is in flight at most. */
static int queue_cmd(struct ur_ent *e, uint32_t op, uint64_t commit)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&e->ring);
	if (!sqe)
		return -EBUSY;
	sqe_cmd(sqe, e, op, commit);
	return 0;
}

/* Serve the request the kernel put in e's buffers. */
static void serve(struct ur_ent *e)
{
	struct fuse_in_header in;
	memcpy(&in, e->hdr->in_out, sizeof(in));
	e->unique = in.unique;
	atomic_store_explicit(&e->replied, false, memory_order_relaxed);
	char *start;
	ssize_t n = rfs_uring_req_rebuild(e->mem, UR_PAYLOAD, &start);
	if (n < 0) {
		rfs_log(RFS_LOG_ERR, "%s: io_uring request %llu (opcode %u) has sizes that do not add up (len %u, payload %u): answered EIO",
			g.m->pool, (unsigned long long)in.unique, in.opcode, in.len, e->hdr->ent.payload_sz);
		struct fuse_out_header out = {.len = sizeof(out), .error = -EIO, .unique = in.unique};
		struct iovec iov = {&out, sizeof(out)};
		rfs_fuse_uring_reply(&iov, 1);
		return;
	}
	t_ent = e;
	rfs_fuse_request_in(g.m, start, (size_t)n);
	t_ent = NULL;
	if (in.opcode == FUSE_FORGET || in.opcode == FUSE_BATCH_FORGET)
		return; /* no reply (the kernel sends these through /dev/fuse) */
	if (!atomic_load_explicit(&e->replied, memory_order_acquire)) {
		/* answered later by another thread */
		pthread_mutex_lock(&g.lock);
		while (!atomic_load_explicit(&e->replied, memory_order_acquire))
			pthread_cond_wait(&g.cond, &g.lock);
		pthread_mutex_unlock(&g.lock);
	}
}

ssize_t rfs_fuse_uring_reply(const struct iovec *iov, int count)
{
	if (count < 1 || iov[0].iov_len < sizeof(struct fuse_out_header))
		return -1;
	const struct fuse_out_header *out = iov[0].iov_base;
	if (!out->unique)
		return -1; /* a notification: /dev/fuse */
	struct ur_ent *e = t_ent;
	bool other = !(e && e->unique == out->unique);
	if (other) {
		if (!atomic_load_explicit(&g.negotiated, memory_order_relaxed))
			return -1;
		pthread_mutex_lock(&g.lock);
		e = NULL;
		for (unsigned i = 0; i < g.nents && !e; i++)
			if (g.ents[i]->unique == out->unique &&
			    !atomic_load_explicit(&g.ents[i]->replied, memory_order_relaxed))
				e = g.ents[i];
		if (!e) {
			pthread_mutex_unlock(&g.lock);
			return -1; /* read from /dev/fuse: answered there */
		}
	}
	ssize_t r = rfs_uring_reply_pack(e->mem, UR_PAYLOAD, iov, count);
	if (r == -EMSGSIZE) {
		size_t len = 0;
		for (int i = 1; i < count; i++)
			len += iov[i].iov_len;
		rfs_log(RFS_LOG_ERR, "%s: reply to request %llu is %zu bytes, more than the io_uring buffer: answered EIO",
			g.m->pool, (unsigned long long)out->unique, len);
		r = (ssize_t)sizeof(struct fuse_out_header);
	}
	atomic_store_explicit(&e->replied, true, memory_order_release);
	if (other) {
		pthread_cond_broadcast(&g.cond);
		pthread_mutex_unlock(&g.lock);
	}
	return r;
}


static void ent_free(struct ur_ent *e)
{
	if (e->ring.ring_fd > 0)
		io_uring_queue_exit(&e->ring);
	free(e->mem);
	free(e);
}

static void *ring_main(void *arg)
{
	struct ur_ent *e = arg;
	char name[16];
	snprintf(name, sizeof(name), "rfs-ring%u", e->qid);
	pthread_setname_np(pthread_self(), name);
	bool stop = false, registered = false;
	int err = 0;
	struct io_uring_sqe *sqe = io_uring_get_sqe(&e->ring);
	io_uring_prep_poll_add(sqe, g.stop_fd, POLLIN);
	io_uring_sqe_set_data64(sqe, UR_STOP_TAG);
	queue_cmd(e, UR_CMD_REGISTER, 0);
	/* The kernel registers the entry as the SQE is submitted. */
	int sr = io_uring_submit(&e->ring);
	pthread_mutex_lock(&g.lock);
	e->registered = true;
	pthread_cond_broadcast(&g.cond);
	pthread_mutex_unlock(&g.lock);
	if (sr < 0)
		err = sr, stop = true;
	while (!stop) {
		int r = io_uring_submit_and_wait(&e->ring, 1);
		if (r < 0 && r != -EINTR) {
			err = r;
			break;
		}
		struct io_uring_cqe *cqe;
		unsigned head, n = 0;
		bool have = false;
		io_uring_for_each_cqe(&e->ring, head, cqe) {
			n++;
			if (cqe->user_data == UR_STOP_TAG) {
				stop = true;
			} else if (cqe->res == -EINTR || cqe->res == -EAGAIN) {
				/* not taken: ask again (EAGAIN at registration:
				 * the INIT reply is still being processed) */
				if (cqe->res == -EAGAIN)
					usleep(1000);
				queue_cmd(e, registered ? UR_CMD_COMMIT_AND_FETCH : UR_CMD_REGISTER,
					  registered ? e->unique : 0);
			} else if (cqe->res < 0) {
				err = cqe->res; /* ENOTCONN: unmounted */
				stop = true;
			} else {
				registered = true;
				have = true;
			}
		}
		io_uring_cq_advance(&e->ring, n);
		if (!registered && !stop && err == 0)
			continue;
		if (have) {
			serve(e);
			queue_cmd(e, UR_CMD_COMMIT_AND_FETCH, e->unique);
			if (stop) /* hand the reply over; take nothing more */
				io_uring_submit(&e->ring);
		}
	}
	if (err && err != -ENOTCONN && err != -ECONNABORTED) {
		pthread_mutex_lock(&g.lock);
		bool quiet = g.stopping;
		pthread_mutex_unlock(&g.lock);
		/* The entry's command outlives the thread (its exit cancels
		 * only tracked requests; the io_uring stays open until
		 * ents_end): the entry stays on the kernel's free list, a
		 * request handed to it fails, and then it is set aside
		 * (docs/ARCHITECTURE.md, "A ring thread that ends on an
		 * error"). */
		if (!quiet)
			rfs_log(RFS_LOG_ERR, "%s: io_uring queue %u: %s; this ring thread ends, but its ring entry stays with the kernel: one request from CPU %u that the kernel hands it fails with ECANCELED, later ones go to the queue's other ring threads, and when none is left they wait until the daemon ends. Remount to get the queue back: unmount (should that say busy, send the daemon SIGTERM) and mount again, with -o nouring should this repeat",
				g.m->pool, e->qid, strerror(-err), e->qid);
	}
	return NULL;
}

/* Start one ring thread with its entry on queue qid.  Under g.lock. */
static int ent_start(unsigned qid)
{
	if (g.nents >= RFS_FUSE_URING_ENTRIES_MAX)
		return -EMFILE;
	struct ur_ent *e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->qid = qid;
	e->ring.ring_fd = -1;
	size_t hsz = sizeof(struct rfs_uring_req_header);
	/* Page-aligned: the kernel pins these pages. */
	if (posix_memalign((void **)&e->mem, 4096, hsz + UR_PAYLOAD)) {
		free(e);
		return -ENOMEM;
	}
	e->hdr = (struct rfs_uring_req_header *)e->mem;
	e->payload = e->mem + hsz;
	e->iov[0] = (struct iovec){e->hdr, hsz};
	e->iov[1] = (struct iovec){e->payload, UR_PAYLOAD};
	struct io_uring_params p = {.flags = IORING_SETUP_SQE128};
	int ret = io_uring_queue_init_params(4, &e->ring, &p);
	if (ret) {
		e->ring.ring_fd = -1;
		ent_free(e);
		return ret;
	}
	ret = -pthread_create(&e->th, NULL, ring_main, e);
	if (ret) {
		ent_free(e);
		return ret;
	}
	g.ents[g.nents++] = e;
	g.entries[qid]++;
	return 0;
}

/* Join and free every ring thread; g.stopping is set and the stop
 * eventfd written.  The entries leave ents[] under the lock before they
 * are freed: rfs_fuse_uring_reply looks them up under it on any thread,
 * and the /dev/fuse workers still serve (and reply) during the stop. */
static void ents_end(void)
{
	pthread_mutex_lock(&g.end_lock);
	pthread_mutex_lock(&g.lock);
	unsigned n = g.nents;
	pthread_mutex_unlock(&g.lock);
	/* ents[0..n) stay: ents[] only grows, and no longer once stopping
	 * is set.  A thread may still wait for a reply another thread finds
	 * through ents[] (serve). */
	for (unsigned i = 0; i < n; i++)
		pthread_join(g.ents[i]->th, NULL);
	struct ur_ent *gone[RFS_FUSE_URING_ENTRIES_MAX];
	pthread_mutex_lock(&g.lock);
	memcpy(gone, g.ents, n * sizeof(gone[0]));
	memset(g.ents, 0, n * sizeof(g.ents[0]));
	g.nents = 0;
	for (unsigned q = 0; q < g.nq; q++)
		g.entries[q] = 0;
	atomic_store(&g.negotiated, false);
	pthread_mutex_unlock(&g.lock);
	for (unsigned i = 0; i < n; i++)
		ent_free(gone[i]);
	pthread_mutex_unlock(&g.end_lock);
}

int rfs_fuse_uring_prepare(struct rfs_mount *m, bool want, unsigned threads)
{
	g.m = m;
	g.wanted = want;
	if (!want)
		return 0;
	int nq = get_nprocs_conf();
	g.nq = nq > 0 ? (unsigned)nq : 1;
	/* Every queue as many entries as /dev/fuse would have workers: one
	 * CPU's callers (one fio job) may bring all the load, and only its
	 * queue's entries take their requests.  At most
	 * RFS_FUSE_URING_STANDING_MAX in all, but one per queue at least. */
	g.per_queue = threads;
	if (g.per_queue > RFS_FUSE_URING_STANDING_MAX / g.nq)
		g.per_queue = RFS_FUSE_URING_STANDING_MAX / g.nq;
	if (g.per_queue < 1)
		g.per_queue = 1;
	g.entries = calloc(g.nq, sizeof(*g.entries));
	g.blocked = calloc(g.nq, sizeof(*g.blocked));
	g.stop_fd = eventfd(0, EFD_CLOEXEC);
	if (!g.entries || !g.blocked || g.stop_fd < 0) {
		free(g.entries);
		free(g.blocked);
		g.entries = g.blocked = NULL;
		if (g.stop_fd >= 0)
			close(g.stop_fd);
		g.stop_fd = -1;
		g.wanted = false;
		return -ENOMEM;
	}
	return 0;
}

void rfs_fuse_uring_note_init(const void *buf, size_t n)
{
	const struct fuse_in_header *in = buf;
	if (!g.wanted || in->opcode != FUSE_INIT ||
	    n < sizeof(*in) + offsetof(struct fuse_init_in, flags2) + sizeof(uint32_t))
		return;
	const struct fuse_init_in *a = (const void *)(in + 1);
	uint64_t flags = a->flags;
	if (flags & FUSE_INIT_EXT)
		flags |= (uint64_t)a->flags2 << 32;
	if (flags & FUSE_OVER_IO_URING)
		atomic_store(&g.init_unique, in->unique);
}

/* The first queue whose CPU this thread may not move to, g.nq when it
 * may move to each: kick_queue sends its request from the queue's CPU,
 * and a cpuset that leaves the CPU out refuses the move (EINVAL; an
 * affinity set by taskset does not: a thread may widen its own).
 * Offline CPUs are left out: nobody calls from them. */
static unsigned unreachable_queue(void)
{
	cpu_set_t old, set;
	if (pthread_getaffinity_np(pthread_self(), sizeof(old), &old))
		return g.nq; /* cannot tell: the kick says so if it misses */
	unsigned far = g.nq;
	for (unsigned q = 0; q < g.nq && q < CPU_SETSIZE && far == g.nq; q++) {
		char path[64];
		snprintf(path, sizeof(path), "/sys/devices/system/cpu/cpu%u/online", q);
		FILE *f = fopen(path, "r");
		int on = f ? fgetc(f) : '1';
		if (f)
			fclose(f);
		if (on == '0')
			continue;
		CPU_ZERO(&set);
		CPU_SET(q, &set);
		if (pthread_setaffinity_np(pthread_self(), sizeof(set), &set) == EINVAL)
			far = q;
	}
	(void)pthread_setaffinity_np(pthread_self(), sizeof(old), &old);
	return far;
}

/* Start every standing ring thread, before the INIT reply that offers
 * io_uring is written: once the kernel took that offer it answers no
 * request until every CPU's queue has a registered entry
 * (fs/fuse/dev_uring.c: fuse_block_alloc waits for is_ring_ready), so
 * a queue left without a thread hung the whole mount.  The threads
 * register as soon as the reply is processed (EAGAIN until then).
 * True when every queue has a thread; else they end and io_uring is
 * not offered. */
static bool rings_start(void)
{
	unsigned far = unreachable_queue();
	pthread_mutex_lock(&g.lock);
	if (g.started || g.stopping) {
		pthread_mutex_unlock(&g.lock);
		return false;
	}
	g.started = true;
	if (far < g.nq) {
		g.stopping = true; /* for good: no second INIT */
		pthread_mutex_unlock(&g.lock);
		rfs_log(RFS_LOG_WARN, "%s: io_uring not offered: this daemon may not run on CPU %u (its cpuset leaves that CPU out), and only a request sent from CPU %u makes the kernel hand that queue's waiting requests to a new ring entry, so a request held by a blocking watch or a clone could leave them waiting for good; requests go through /dev/fuse (allow the daemon every CPU, or mount with -o nouring to skip the attempt)",
			g.m->pool, far, far);
		return false;
	}
	int ret = 0;
	for (unsigned i = 0; i < g.per_queue && !ret; i++)
		for (unsigned q = 0; q < g.nq && !ret; q++)
			ret = ent_start(q);
	unsigned n = g.nents, bare = 0;
	for (unsigned q = 0; q < g.nq; q++)
		bare += g.entries[q] == 0;
	if (bare)
		g.stopping = true; /* for good: no second INIT */
	else
		atomic_store(&g.negotiated, true);
	pthread_mutex_unlock(&g.lock);
	if (bare) {
		uint64_t one = 1;
		if (write(g.stop_fd, &one, sizeof(one)) == sizeof(one))
			ents_end();
		rfs_log(RFS_LOG_WARN, "%s: io_uring not offered: %u of the %u CPU queues got no ring thread (%s), and the kernel answers no request until each has one; requests go through /dev/fuse (-o nouring skips the attempt)",
			g.m->pool, bare, g.nq, strerror(-ret));
		return false;
	}
	if (ret)
		rfs_log(RFS_LOG_WARN, "%s: FUSE over io_uring with %u of %u ring threads (%s): each CPU's queue has one, fewer requests are served at once",
			g.m->pool, n, g.per_queue * g.nq, strerror(-ret));
	else
		rfs_log(RFS_LOG_INFO, "%s: FUSE over io_uring: %u queues, %u ring threads each",
			g.m->pool, g.nq, g.per_queue);
	return true;
}

bool rfs_fuse_uring_init_reply(struct iovec *iov, int count)
{
	if (count < 2 || iov[0].iov_len < sizeof(struct fuse_out_header))
		return false;
	const struct fuse_out_header *out = iov[0].iov_base;
	uint64_t want = atomic_load(&g.init_unique);
	if (!want || out->unique != want || out->error ||
	    iov[1].iov_len < offsetof(struct fuse_init_out, flags2) + sizeof(uint32_t))
		return false;
	atomic_store(&g.init_unique, 0);
	if (!rings_start())
		return false;
	struct fuse_init_out *o = iov[1].iov_base; /* libfuse's, about to be written */
	o->flags |= FUSE_INIT_EXT;
	o->flags2 |= (uint32_t)(FUSE_OVER_IO_URING >> 32);
	return true;
}

/* Send a request that goes to queue qid, whose answer does not matter:
 * from CPU qid, where the kernel queues it (the thread moves there for
 * the call, then back to the CPUs it may run on). */
static void kick_queue(unsigned qid)
{
	cpu_set_t old, set;
	int ret = pthread_getaffinity_np(pthread_self(), sizeof(old), &old);
	if (!ret) {
		CPU_ZERO(&set);
		CPU_SET(qid, &set);
		ret = pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
	}
	if (ret)
		rfs_log(RFS_LOG_ERR, "%s: io_uring queue %u: this daemon cannot move to CPU %u (%s): requests the queue took while it had no free entry wait until one of its entries commits (did its cpuset change after the mount?  mount with -o nouring)",
			g.m->pool, qid, qid, strerror(ret));
	(void)getxattr(g.m->mountpoint, "user.reflinkfs.uring-kick", NULL, 0);
	if (!ret)
		(void)pthread_setaffinity_np(pthread_self(), sizeof(old), &old);
}

bool rfs_fuse_uring_begin_blocking(void)
{
	struct ur_ent *e = t_ent;
	if (!e)
		return false;
	if (e->depth++)
		return true; /* only the outermost pair counts */
	bool kick = false;
	pthread_mutex_lock(&g.lock);
	if (!e->blocked) {
		e->blocked = true;
		g.blocked[e->qid]++;
		/* Keep a free entry on this queue: the callers its held
		 * request waits for may run on its CPU. */
		if (g.entries[e->qid] <= g.blocked[e->qid] && !g.stopping) {
			int ret = ent_start(e->qid);
			if (ret) {
				rfs_log(RFS_LOG_WARN, "%s: io_uring queue %u: every entry waits and no new one could start (%s): requests from CPU %u wait",
					g.m->pool, e->qid, strerror(-ret), e->qid);
			} else {
				struct ur_ent *n = g.ents[g.nents - 1];
				while (!n->registered)
					pthread_cond_wait(&g.cond, &g.lock);
				kick = true;
			}
		}
	}
	pthread_mutex_unlock(&g.lock);
	/* A new entry takes the requests that come after it, not those the
	 * queue took while it had no free entry: only a commit fetches
	 * them (fs/fuse/dev_uring.c).  Those may be the very requests the
	 * held one waits for (the WRITEs of a clone's dirty pages), so one
	 * more request, from the queue's CPU, goes to the new entry, whose commit
	 * then fetches the rest.  Any request will do: the answer does not
	 * matter. */
	if (kick && g.m->mountpoint)
		kick_queue(e->qid);
	return true;
}

bool rfs_fuse_uring_end_blocking(void)
{
	struct ur_ent *e = t_ent;
	if (!e)
		return false;
	if (!e->depth || --e->depth)
		return true;
	pthread_mutex_lock(&g.lock);
	if (e->blocked) {
		e->blocked = false;
		g.blocked[e->qid]--;
		pthread_cond_broadcast(&g.cond); /* rfs_fuse_uring_stop */
	}
	pthread_mutex_unlock(&g.lock);
	return true;
}

void rfs_fuse_uring_stop(void)
{
	if (!g.wanted)
		return;
	pthread_mutex_lock(&g.lock);
	/* A request that waits for others (a notify_inval_inode waiting
	 * for the WRITEs of dirty pages, which come through the rings)
	 * ends only if the rings go on serving: wait for those first.
	 * Held watches were released before (rfs_fs_release_waits). */
	for (int tenths = 0;; tenths++) {
		unsigned b = 0;
		for (unsigned q = 0; q < g.nq; q++)
			b += g.blocked[q];
		if (!b)
			break;
		if (tenths == 100)
			rfs_log(RFS_LOG_WARN, "%s: io_uring: %u requests still wait for others 10 s after the stop; waiting on",
				g.m->pool, b);
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 100000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&g.cond, &g.lock, &ts);
	}
	g.stopping = true;
	pthread_mutex_unlock(&g.lock);
	uint64_t one = 1;
	if (write(g.stop_fd, &one, sizeof(one)) != sizeof(one))
		rfs_log(RFS_LOG_WARN, "%s: io_uring: cannot wake the ring threads to stop (%s)",
			g.m->pool, strerror(errno));
	ents_end();
	pthread_mutex_lock(&g.lock);
	g.started = false;
	pthread_mutex_unlock(&g.lock);
	free(g.entries);
	free(g.blocked);
	g.entries = g.blocked = NULL;
	close(g.stop_fd);
	g.stop_fd = -1;
	g.wanted = false;
}
