/*
 * The libfuse3 low-level adapter: FUSE requests -> rfs_fs_* calls, and
 * the mount loop (session, background commit thread).
 */
#ifndef RFS_FUSE_H
#define RFS_FUSE_H

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "reflinkfs/fs.h"

struct rfs_mount_opts {
	const char *pool;       /* pool path */
	const char *mountpoint;
	const char *fuse_opts;  /* comma-separated options for libfuse/kernel */
	bool foreground;
	bool rdonly;
	bool debug;
	bool writeback;         /* kernel writeback cache (default off) */
	bool acl;               /* POSIX ACLs (default on) */
	unsigned commit_secs;   /* background commit interval (default 5) */
	unsigned threads;       /* -o threads=: FUSE workers (0: rfs_fuse_default_threads) */
	int uring;              /* -o uring / nouring: 1, 0; -1 when the kernel allows it */
	bool noreclaim;         /* no background release of deleted files */
	bool nojournal;         /* -o nojournal: record no changes */
	uint64_t journal_size;  /* -o journal_size=: retention (0: keep) */
	int lock_fd;            /* held flock on the pool, kept by the daemon */
};

/* FUSE worker threads by default (rfs_fuse_default_threads), and the
 * range -o threads= takes.  A request that waits for something outside
 * the daemon (a blocking watch's hold, a watch mark's flush) gets a
 * temporary worker in its place (workers.c); a read from a disk keeps
 * its worker, hence the most for a pool on a disk. */
#define RFS_FUSE_THREADS 16
#define RFS_FUSE_THREADS_MIN 2
#define RFS_FUSE_THREADS_MAX 256
/* Temporary workers at once, at most: each stands in for a worker that
 * waits for something outside the daemon (src/fuse/workers.c). */
#define RFS_FUSE_TEMP_WORKERS_MAX 256

/* The operations table. */
extern const struct fuse_lowlevel_ops rfs_fuse_ops;

/* Per-mount state handed to every request (fuse_req_userdata). */
struct rfs_mount {
	rfs_fs *fs;
	struct fuse_session *se;
	bool writeback;
	bool acl;
	/* The host runs no SELinux (no /sys/fs/selinux/enforce at mount):
	 * an absent security.selinux is "not supported" (op_getxattr). */
	bool no_selinux;
	double timeout;         /* entry and attribute timeout, seconds */
	/* st_dev of the mount's files (0: unknown), to tell a descriptor of
	 * this mount from one elsewhere with the same inode number. */
	dev_t dev;
	const char *pool; /* for log lines */
	/* The kernel made the mount read-only and the pool is frozen
	 * (remount.c): fsync and `reflinkfs sync` have nothing to commit.
	 * Written under state_lock; read anywhere. */
	_Atomic bool frozen;
	pthread_mutex_t state_lock;
	/* The watch server (pre-modification events, watch_server.c); NULL
	 * when it did not start.  Set before the FUSE loop starts, cleared
	 * after it ended. */
	struct rfs_watch_server *watch_srv;
	/* Serve requests over io_uring when the kernel agrees (uring.c). */
	bool uring;
	/* libfuse logs every request (-d): none is answered past it
	 * (fastpath.c). */
	bool debug;
	const char *mountpoint; /* as given to mount */
};

/* The entry and attribute timeout of the mount (one day: libfuse and
 * the kernel take any value, and a day is as good as forever). */
#define RFS_FUSE_CACHE_SECS 86400.0

/* Asynchronous requests the kernel sends at once (op_init): four fio
 * jobs at queue depth 16, where the kernel's default is 12. */
#define RFS_FUSE_MAX_BACKGROUND 64

/* ---- following remounts (remount.c) ---- */
/* Freeze the pool when the kernel says the mount is read-only, thaw it
 * when it is read-write again.  0, or -EROFS when it is read-write but
 * the pool cannot be written, or the error of the freezing commit. */
int rfs_fuse_follow_mount_state(struct rfs_mount *m);
/* A thread that calls rfs_fuse_follow_mount_state on every change of the
 * mount table (remounts that bypass the helper).  NULL when it cannot. */
struct rfs_mountwatch *rfs_fuse_mountwatch_start(struct rfs_mount *m);
void rfs_fuse_mountwatch_stop(struct rfs_mountwatch *w);

/* Have the session answer FUSE_TMPFILE (O_TMPFILE), which libfuse 3.14
 * cannot dispatch (src/fuse/tmpfile.c).  Call after fuse_session_mount;
 * returns 0 or a negative errno (O_TMPFILE then fails with EOPNOTSUPP). */
int rfs_fuse_tmpfile_setup(struct fuse_session *se);

/* ---- FUSE_HANDLE_KILLPRIV_V2 (killpriv.c) ---- */
/* The raw request hook shows each request read (buf, n bytes; at least a
 * header) to note its kill bit, and each reply written (iov, count) to
 * add the flag to the INIT reply when the kernel offered it. */
void rfs_fuse_killpriv_note(const void *buf, size_t n);
void rfs_fuse_killpriv_reply(struct iovec *iov, int count);
/* Whether the request this thread is handling asked the daemon to clear
 * set-user-ID/set-group-ID (FUSE_WRITE_KILL_SUIDGID, FATTR_KILL_SUIDGID,
 * FUSE_OPEN_KILL_SUIDGID); reading it clears it. */
bool rfs_fuse_killpriv_asked(void);
/* Whether the INIT reply carried FUSE_HANDLE_KILLPRIV_V2. */
bool rfs_fuse_killpriv_negotiated(void);
/* Clear the privileges of ino (rfs_fs_kill_priv); with notify, tell the
 * kernel its cached mode is stale when something was cleared (for a
 * reply that carries no attributes).  0 or a negative errno (logged). */
int rfs_fuse_kill_priv(fuse_req_t req, fuse_ino_t ino, bool notify);
/* The same, for a change the kernel sends no kill bit with (fallocate,
 * copy_file_range, the clone ioctl): only when the caller lacks
 * CAP_FSETID, or /proc does not tell. */
int rfs_fuse_kill_priv_unless_fsetid(fuse_req_t req, fuse_ino_t ino);

/* ---- online scrub (scrub.c) ---- */
/* Scrub, diff and du keep a session per directory and calling process
 * (struct fh_key, src/fuse/fh_session.h). */
struct fh_key;
/* RFS_IOC_SCRUB_STEP / RFS_IOC_SCRUB_REPORT in the session key: 0 with
 * out filled, or a negative errno. */
int rfs_fuse_scrub_ioctl(rfs_fs *fs, const struct fuse_ctx *ctx, const struct fh_key *key,
			 unsigned cmd, const void *in, size_t in_size, void *out, size_t out_size);
/* End every scrub (the session is going away). */
void rfs_fuse_scrub_release_all(void);

/* Complete c (uid, gid, pid already set from the request) with the
 * caller's supplementary groups and whether it holds CAP_FSETID, read
 * from /proc (src/fuse/caller.c).  Returns the array c->groups points
 * to, for the caller to free (NULL when there are none). */
gid_t *rfs_caller_creds(fuse_req_t req, struct rfs_ctx *c);

/* Whether thread tid holds CAP_FSETID (its effective set in /proc): 1,
 * 0, or -1 when /proc does not show it (another pid namespace, gone). */
int rfs_caller_fsetid(pid_t tid);

/* Check that process pid holds fd open on the inode of st_ino ino of
 * this mount (m->dev), for reading: an ioctl names another file by a
 * descriptor of the caller (clone source, diff's B, snapshot source).
 * 0, -EBADF (not such a descriptor) or -EXDEV (a file of another
 * filesystem). */
int rfs_caller_holds_fd(const struct rfs_mount *m, pid_t pid, int64_t fd, uint64_t ino);

/* ---- snapshots (snapshot.c) ---- */
/* RFS_IOC_SNAPSHOT, RFS_IOC_SNAPSHOT_DELETE (on the parent directory
 * ino) and RFS_IOC_VOLUMES: checks the caller's permissions, calls the
 * fs, invalidates what the kernel caches of the changed names, and
 * replies. */
void rfs_fuse_snapshot_ioctl(fuse_req_t req, fuse_ino_t ino, unsigned cmd, const void *in,
			     size_t in_size, size_t out_size);

/* ---- diff (diff.c) ---- */
/* RFS_IOC_DIFF_START (directories a and b) / RFS_IOC_DIFF_REPORT in the
 * session key (on a): 0 with out filled, or a negative errno. */
int rfs_fuse_diff_ioctl(rfs_fs *fs, const struct fuse_ctx *ctx, const struct fh_key *key,
			unsigned cmd, rfs_nodeid a, rfs_nodeid b, const void *in, size_t in_size,
			void *out, size_t out_size);
/* Free every diff (the session is going away). */
void rfs_fuse_diff_release_all(void);

/* The background release of deleted files (src/fuse/reclaim.c): a
 * thread working through the drop queue until stopped.  start returns 0
 * or a negative errno (deleted files then wait for the next mount). */
struct rfs_reclaimer;
int rfs_reclaimer_start(rfs_fs *fs, struct rfs_reclaimer **out);
void rfs_reclaimer_stop(struct rfs_reclaimer *r);

/* ---- request counts (reqstats.c) ---- */
/* Count one request of this FUSE opcode; any thread, lock-free.  Also
 * notes the time and the request's unique id for rfs_fuse_reqstats_reply
 * (libfuse replies on the thread that read the request). */
void rfs_fuse_reqstats_count(uint32_t opcode, uint64_t unique);
/* The counts so far. */
void rfs_fuse_reqstats_get(struct rfs_ioc_req_stats *out);
/* The reply to the request this thread read last is being written (iov
 * as given to writev): add the time since that read to its opcode.
 * Notifications (unique 0) and other requests' replies are ignored. */
void rfs_fuse_reqstats_reply(const struct iovec *iov, int count);
/* The time per opcode so far. */
void rfs_fuse_reqstats_times(struct rfs_ioc_req_times *out);

/* ---- what READs waited for (readwaits.c, RFS_IOC_READ_WAITS) ---- */
/* At a READ handler's start: when counting is on, forget the thread's
 * earlier lock waits and fill t (else t[0] = 0); at its end (before the
 * reply): count the READ. */
void rfs_fuse_readwaits_start(uint64_t t[2]);
void rfs_fuse_readwaits_note(const uint64_t t[2]);
/* Copy the counts (and the pool's write-lock spans), then apply flags
 * (RFS_READ_WAITS_*). */
void rfs_fuse_readwaits_get(rfs_fs *fs, struct rfs_ioc_read_waits *out, uint32_t flags);

/* ---- du (du.c) ---- */
/* RFS_IOC_DU_STEP in the session key of directory dir (request in io,
 * figures out in io->st): 0 or a negative errno.  The session ends with
 * the step that finishes the du. */
int rfs_fuse_du_ioctl(rfs_fs *fs, const struct fuse_ctx *ctx, const struct fh_key *key,
		      rfs_nodeid dir, struct rfs_ioc_du_step *io);
/* End every du (the session is going away). */
void rfs_fuse_du_release_all(void);

/* ---- changes (changes.c) ---- */
/* RFS_IOC_CHANGES on directory dir: 0 with out filled, or a negative
 * errno.  With RFS_IOC_CHANGES_WAIT it may hold this libfuse thread up
 * to wait_ms (req: to hear an interrupt, -EINTR). */
int rfs_fuse_changes_ioctl(fuse_req_t req, rfs_fs *fs, const struct fuse_ctx *ctx,
			   rfs_nodeid dir, const void *in, size_t in_size, void *out,
			   size_t out_size);
/* RFS_IOC_JOURNAL_INFO: 0 with out filled (struct rfs_journal_stat),
 * or a negative errno. */
int rfs_fuse_journal_info_ioctl(rfs_fs *fs, const struct fuse_ctx *ctx, const void *in,
				size_t in_size, void *out, size_t out_size);

/* ---- the FUSE workers (workers.c) ---- */
/* Serve m->se with `threads` standing workers, plus a temporary one for
 * each worker that waits for something outside the daemon (a blocking
 * watch's subscriber, requests of other workers), until the session
 * ends.  Registers the fs's wait hooks for the time.  0 or a negative
 * errno (the session failed, or the workers could not start). */
int rfs_fuse_workers_run(struct rfs_mount *m, unsigned threads);
/* Standing workers when -o threads= is not given: for a pool file in
 * memory (tmpfs, ramfs) one per CPU the daemon may run on, at least
 * RFS_FUSE_THREADS_MIN and at most RFS_FUSE_THREADS (a worker there
 * waits for nothing but requests, so one more than the CPUs only adds
 * wake-ups and switches); for a pool on a disk RFS_FUSE_THREADS (its
 * reads keep their workers).  Measured: bench/README.md, "FUSE worker
 * count". */
unsigned rfs_fuse_default_threads(const char *pool);
/* The calling FUSE worker is about to wait for something other than CPU
 * or the pool's I/O (another request, a client), and is back: with
 * fewer free workers than the standing count, one is started in its
 * place.  Nest; no effect outside a worker. */
void rfs_fuse_wait_begin(void);
void rfs_fuse_wait_end(void);

/* ---- stopping on a signal (signals.c) ---- */
/* Have SIGTERM, SIGINT and SIGHUP request a stop (rfs_fuse_stop_requested)
 * and ignore SIGPIPE, each where its disposition is the default, in
 * place of libfuse's fuse_set_signal_handlers (whose handler makes the
 * session drop every request read after it).  0, or -1 with errno. */
int rfs_fuse_signals_set(void);
/* Put the default back where rfs_fuse_signals_set's disposition is. */
void rfs_fuse_signals_remove(void);
/* Whether a stop signal came: the workers end (rfs_fuse_workers_run). */
bool rfs_fuse_stop_requested(void);

/* ---- FUSE over io_uring (uring.c) ---- */
/* Ring entries (threads) at most, standing and started for waits. */
#define RFS_FUSE_URING_ENTRIES_MAX 256
/* Standing ring entries at most (each queue gets `threads`, within this,
 * and one at least): each has a 1 MiB buffer and a thread. */
#define RFS_FUSE_URING_STANDING_MAX 64
/* Whether the kernel lets FUSE servers use io_uring
 * (/sys/module/fuse/parameters/enable_uring is Y). */
bool rfs_fuse_uring_kernel_allows(void);
/* Before the session's first request: offer io_uring at INIT when want,
 * with about `threads` ring threads (spread over the CPUs' queues).
 * 0, or a negative errno (then /dev/fuse only). */
int rfs_fuse_uring_prepare(struct rfs_mount *m, bool want, unsigned threads);
/* The request hook: note whether INIT offers io_uring (buf: the request,
 * n bytes). */
void rfs_fuse_uring_note_init(const void *buf, size_t n);
/* The reply hook, before the reply is written: when both sides want
 * io_uring, start the ring threads (they register once the kernel has
 * processed the reply) and, if every CPU's queue got one, add
 * FUSE_OVER_IO_URING to the INIT reply.  True when it did. */
bool rfs_fuse_uring_init_reply(struct iovec *iov, int count);
/* The reply hook: when iov (fuse_out_header, then the reply) answers a
 * request that came through a ring, put it in its ring entry and return
 * its length; -1 when it is for /dev/fuse (notifications, requests read
 * there). */
ssize_t rfs_fuse_uring_reply(const struct iovec *iov, int count);
/* The wait hooks for a ring thread's request (see rfs_fuse_wait_begin):
 * false when the caller is no ring thread. */
bool rfs_fuse_uring_begin_blocking(void);
bool rfs_fuse_uring_end_blocking(void);
/* Stop and join every ring thread (a request in hand is answered
 * first); free what prepare took.  Once the /dev/fuse workers' wait
 * returned and before they are destroyed (rfs_fuse_workers_run): it
 * first waits until no ring request waits for others, whose requests
 * may come through the rings, and the /dev/fuse workers go on serving
 * meanwhile. */
void rfs_fuse_uring_stop(void);
/* Handle one request as read from the kernel (buf: n bytes): the
 * request hooks, then FUSE_TMPFILE here, READ and WRITE in fastpath.c,
 * the rest in libfuse (tmpfile.c). */
void rfs_fuse_request_in(struct rfs_mount *m, void *buf, size_t n);
/* Send a reply (iov[0] a complete fuse_out_header) as libfuse's replies
 * go: through the reply hooks, into its ring entry when the request came
 * through a ring, else to /dev/fuse (fd).  0, or a negative errno
 * (-ENOENT: the request was interrupted). */
int rfs_fuse_reply_out(int fd, struct iovec *iov, int count);

/* ---- READ and WRITE past libfuse (fastpath.c) ---- */
/* Whether the request in buf (n bytes, at least a header, the request
 * hooks run) is a READ or WRITE that rfs_fuse_fast_serve answers: well
 * formed, no set-user-ID bits to clear, m not in debug mode. */
bool rfs_fuse_fast_wants(const struct rfs_mount *m, const void *buf, size_t n);
/* Answer a request rfs_fuse_fast_wants took, replying through
 * rfs_fuse_reply_out; not cancellable (it may hold the fs's locks). */
void rfs_fuse_fast_serve(struct rfs_mount *m, int fd, const void *buf);

/* Mount and serve until unmounted.  Returns a process exit code; prints
 * errors to stderr (before daemonizing) or the log. */
int rfs_fuse_main(struct rfs_mount_opts *o);

#endif
