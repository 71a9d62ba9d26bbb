/*
 * The FUSE workers: the mount's own loop in place of libfuse's
 * fuse_session_loop_mt, on libfuse's public fuse_session_receive_buf /
 * fuse_session_process_buf and the generic pool of src/util/workpool.c.
 *
 * As with libfuse's loop, `threads` standing workers all wait in read(2)
 * on /dev/fuse and the kernel hands each request to one of them.  What
 * libfuse cannot do is tell a worker that is busy from one that sleeps
 * for somebody else: a request a blocking watch holds (until its
 * subscriber answers, at most the watch's timeout), a watch mark waiting
 * for WRITEs other workers serve, RFS_IOC_CHANGES_WAIT.  With N workers,
 * N such requests stalled every request on the mount, the subscriber's
 * own included.  Here such a wait announces itself (rfs_fs_set_wait_hooks
 * for the fs layer's waits, rfs_fuse_wait_begin/_end for the fuse
 * layer's) and the pool starts a temporary worker in its place, which
 * ends once the waits are over (docs/ARCHITECTURE.md, "FUSE workers").
 */
#include "fuse/rfs_fuse.h"

#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>
#include <linux/magic.h>

#include "reflinkfs/log.h"
#include "util/workpool.h"

static int fw_receive(void *arg, void *slot)
{
	struct fuse_session *se = arg;
	/* 0 when the session has exited (unmounted: ENODEV), -EINTR or
	 * -EAGAIN when the read was interrupted (libfuse retries ENOENT, a
	 * request interrupted before it was read, itself), -ENOMEM when
	 * the worker's 1 MiB request buffer could not be allocated (the
	 * pool backs off and retries: libfuse's own loop ends the mount),
	 * else a negative errno, on which libfuse's own loop ends too. */
	int res = fuse_session_receive_buf(se, slot);
	if (res < 0 && res != -EINTR && res != -EAGAIN && res != -ENOMEM)
		fuse_session_exit(se);
	return res > 0 ? 1 : res;
}

static void fw_process(void *arg, void *slot)
{
	fuse_session_process_buf(arg, slot);
}

static void fw_slot_free(void *arg, void *slot)
{
	(void)arg;
	struct fuse_buf *b = slot;
	free(b->mem);
	b->mem = NULL;
}

/* A stop signal (signals.c), or the session ended otherwise. */
static bool fw_ended(void *arg)
{
	return rfs_fuse_stop_requested() || fuse_session_exited(arg) != 0;
}

void rfs_fuse_wait_begin(void)
{
	/* A ring thread's request holds its ring entry; a /dev/fuse
	 * worker's, its worker. */
	if (!rfs_fuse_uring_begin_blocking())
		rfs_workpool_begin_blocking();
}

void rfs_fuse_wait_end(void)
{
	if (!rfs_fuse_uring_end_blocking())
		rfs_workpool_end_blocking();
}

static void fs_wait_begin(void *arg)
{
	(void)arg;
	rfs_fuse_wait_begin();
}

static void fs_wait_end(void *arg)
{
	(void)arg;
	rfs_fuse_wait_end();
}

int rfs_fuse_workers_run(struct rfs_mount *m, unsigned threads)
{
	struct rfs_workpool_cfg cfg = {
		.standing = threads,
		.max_temp = RFS_FUSE_TEMP_WORKERS_MAX,
		.slot_size = sizeof(struct fuse_buf),
		.receive = fw_receive,
		.process = fw_process,
		.slot_free = fw_slot_free,
		.ended = fw_ended,
		.arg = m->se,
		.name = m->pool,
		.thread_name = "rfs-fuse",
	};
	struct rfs_workpool *p;
	if (m->uring) {
		int uret = rfs_fuse_uring_prepare(m, true, threads);
		/* The /dev/fuse workers stay as many: they carry INIT, FORGET
		 * and INTERRUPT, and everything if the kernel refuses the
		 * rings; idle in read(2), they cost their buffers only. */
		if (uret)
			rfs_log(RFS_LOG_WARN, "%s: io_uring not offered (%s): requests go through /dev/fuse",
				m->pool, strerror(-uret));
	}
	rfs_fs_set_wait_hooks(m->fs, fs_wait_begin, fs_wait_end, NULL);
	int ret = rfs_workpool_start(&cfg, &p);
	if (ret) {
		rfs_log(RFS_LOG_ERR, "%s: cannot start the FUSE worker threads: %s", m->pool,
			strerror(-ret));
		rfs_fs_set_wait_hooks(m->fs, NULL, NULL, NULL);
		rfs_fuse_uring_stop();
		return ret;
	}
	ret = rfs_workpool_wait(p);
	/* The workers are joined next: a request a blocking watch holds
	 * (up to its timeout) or a RFS_IOC_CHANGES_WAIT (up to the
	 * caller's) would hold the exit, the final commit with it. */
	rfs_fs_release_waits(m->fs);
	/* The ring threads end first (they too serve on while a request of
	 * theirs waits for others: uring.c). */
	rfs_fuse_uring_stop();
	/* The workers go on serving while a request waits for others (a
	 * notify_inval_inode for the WRITEs of dirty pages): stopped at
	 * once, nobody read those WRITEs and the notify never returned. */
	rfs_workpool_destroy(p);
	rfs_fs_set_wait_hooks(m->fs, NULL, NULL, NULL);
	/* As fuse_session_loop_mt leaves it: a session that can be looped
	 * again (and whose exit flag no longer stands for this loop). */
	fuse_session_reset(m->se);
	return ret;
}

/* CPUs this process may run on (its affinity mask), else online CPUs. */
static unsigned cpus(void)
{
	cpu_set_t set;
	if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
		return (unsigned)CPU_COUNT(&set);
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (unsigned)n : 1;
}

/* The pool is a file in memory (tmpfs, ramfs): its preads never wait
 * for a device.  A block device's path is on devtmpfs: not memory. */
static bool pool_in_memory(const char *pool)
{
	struct stat st;
	struct statfs fs;
	if (stat(pool, &st) || !S_ISREG(st.st_mode) || statfs(pool, &fs))
		return false;
	return fs.f_type == TMPFS_MAGIC || fs.f_type == RAMFS_MAGIC;
}

unsigned rfs_fuse_default_threads(const char *pool)
{
	if (!pool_in_memory(pool))
		return RFS_FUSE_THREADS;
	unsigned n = cpus();
	if (n < RFS_FUSE_THREADS_MIN)
		n = RFS_FUSE_THREADS_MIN;
	return n < RFS_FUSE_THREADS ? n : RFS_FUSE_THREADS;
}
