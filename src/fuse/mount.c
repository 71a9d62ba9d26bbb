/*
 * Mount loop: open the fs, create the FUSE session, mount, daemonize,
 * serve with the multi-threaded loop, commit in the background every few
 * seconds, release deleted files in the background (reclaim.c), and
 * commit a last time at unmount.
 */
#include <limits.h>
#include <stdbool.h>
#include "fuse/rfs_fuse.h"
#include "fuse/watch_server.h"

#include "reflinkfs/journal.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "reflinkfs/log.h"
#include "fuse/status.h"
#include "util/mountinfo.h"

struct committer {
	struct rfs_mount *m;
	rfs_fs *fs;
	unsigned secs;
	bool stop;
	pthread_mutex_t lock;
	pthread_cond_t cond;
};

static void *commit_thread(void *arg)
{
	struct committer *c = arg;
	pthread_setname_np(pthread_self(), "rfs-commit");
	pthread_mutex_lock(&c->lock);
	while (!c->stop) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += c->secs;
		pthread_cond_timedwait(&c->cond, &c->lock, &ts);
		if (c->stop)
			break;
		pthread_mutex_unlock(&c->lock);
		/* Delayed writes are mapped by now at the latest, so they
		 * are durable within the commit interval as before. */
		if (!atomic_load(&c->m->frozen))
			rfs_fs_settle(c->fs);
		struct rfs_pool_stats st;
		rfs_pool_stats(rfs_fs_pool(c->fs), &st);
		/* frozen (remounted read-only): committed when it froze */
		if (atomic_load(&c->m->frozen))
			;
		else if (st.dirty_blocks || st.pending_free) {
			int ret = rfs_fs_commit_background(c->fs);
			if (ret)
				rfs_log(RFS_LOG_ERR, "background commit failed: %s (the pool is now read-only)",
					strerror(-ret));
		} else if (st.warm_blocks) {
			/* Nothing to commit: what the last commit freed and
			 * nobody reused goes back to the backing filesystem. */
			rfs_fs_punch_warm(c->fs);
		}
		pthread_mutex_lock(&c->lock);
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

static bool g_syslog;
/* The first error this daemon logged: with a failed final commit it is
 * the cause (a background commit that failed first left the pool
 * read-only, and the final commit then only says EROFS).  Written by the
 * sink, which runs under the log's lock; read once every thread is gone. */
static char g_first_err[512];

static void log_sink(void *arg, int level, const char *line)
{
	(void)arg;
	if (level == RFS_LOG_ERR && !g_first_err[0])
		snprintf(g_first_err, sizeof(g_first_err), "%s", line);
	if (g_syslog) {
		int pri = level == RFS_LOG_ERR ? LOG_ERR : level == RFS_LOG_WARN ? LOG_WARNING
										 : LOG_INFO;
		syslog(pri, "%s", line);
	} else {
		fprintf(stderr, "reflinkfs: %s\n", line);
	}
}

/*
 * The kernel caps a FUSE mount's readahead at the block-device default
 * (128 KiB) whatever max_readahead says, so sequential reads arrive as
 * 128 KiB requests.  Raise the mount's bdi readahead to 1 MiB (root only;
 * best effort).  The device number comes from mountinfo: a stat of the
 * mount point would be a request to this very daemon, not serving yet.
 */
static void set_readahead(const char *mnt)
{
	char real[PATH_MAX], path[128];
	unsigned maj, min;

	if (!realpath(mnt, real) || !rfs_mountinfo_find_mnt(real, NULL, 0, &maj, &min))
		return;
	snprintf(path, sizeof(path), "/sys/class/bdi/%u:%u/read_ahead_kb", maj, min);
	FILE *f = fopen(path, "w");
	if (f) {
		fputs("1024\n", f);
		fclose(f);
	}
}

/* The mount's device number (st_dev of its files), from mountinfo for
 * the same reason; 0 when it cannot be found. */
static dev_t mount_dev(const char *mnt)
{
	char real[PATH_MAX];
	unsigned maj, min;

	if (!realpath(mnt, real) || !rfs_mountinfo_find_mnt(real, NULL, 0, &maj, &min))
		return 0;
	return makedev(maj, min);
}

/* A value inside a libfuse -o list: ',' and '\\' need a backslash (a pool
 * path may hold them). */
static char *opt_escape(const char *s)
{
	char *out = malloc(2 * strlen(s) + 1), *d = out;
	if (!out)
		return NULL;
	for (; *s; s++) {
		if (*s == ',' || *s == '\\')
			*d++ = '\\';
		*d++ = *s;
	}
	*d = 0;
	return out;
}

static void log_super_line(void *arg, int level, const char *line)
{
	rfs_log(level, "%s: %s", (const char *)arg, line);
}

/*
 * Log which superblock the mount uses and what open found and repaired
 * in the superblock copies.  Open already logged any finding to stderr;
 * a daemon repeats it all for syslog.
 */
static void log_super(rfs_fs *fs, const char *pool, bool foreground)
{
	const struct rfs_super_report *r = rfs_pool_super_report(rfs_fs_pool(fs));

	if (!foreground || rfs_super_health(r) == RFS_SUPER_CLEAN)
		rfs_super_describe(r, log_super_line, (void *)pool);
}

/* The line `reflinkfs umount` gets (src/fuse/status.h). */
static void send_verdict(struct rfs_status *st, const char *pool, int cret)
{
	char line[1024];
	if (!cret)
		snprintf(line, sizeof(line), "ok");
	else
		snprintf(line, sizeof(line), "error the final commit of %s failed (%s)%s%s", pool,
			 strerror(-cret), g_first_err[0] ? "; the first error of this mount: " : "",
			 g_first_err);
	rfs_status_finish(st, line);
}

int rfs_fuse_main(struct rfs_mount_opts *o)
{
	struct rfs_mount m = {0};
	struct fuse_session *se = NULL;
	struct rfs_status *status = NULL;
	char *optstr = NULL, *fsname = NULL;
	rfs_fs *fs;

	rfs_log_set_sink(log_sink, NULL);
	int ret = rfs_fs_open(o->pool,
			      (o->rdonly ? RFS_FS_RDONLY : 0) | (o->nojournal ? RFS_FS_NOJOURNAL : 0),
			      &fs);
	if (ret) {
		fprintf(stderr, "reflinkfs mount: cannot open the pool %s: %s\n", o->pool,
			strerror(-ret));
		return 1;
	}
	if (o->journal_size && !o->nojournal) {
		ret = rfs_fs_journal_set_limit(fs, o->journal_size);
		if (ret) {
			fprintf(stderr, "reflinkfs mount: journal_size: %s%s\n", strerror(-ret),
				ret == -EROFS ? " (a read-only mount cannot change it)" : "");
			rfs_fs_close(fs);
			return 1;
		}
	}
	m.fs = fs;
	m.writeback = o->writeback && !o->rdonly;
	m.acl = o->acl;
	m.no_selinux = access("/sys/fs/selinux/enforce", F_OK) != 0;
	/* Only this daemon changes the tree, and it invalidates whatever it
	 * changes that the kernel did not change itself (clone and snapshot
	 * ioctls; docs/ARCHITECTURE.md), so names, attributes and listings
	 * may stay cached for good: warm metadata then costs no request. */
	m.timeout = RFS_FUSE_CACHE_SECS;
	m.pool = o->pool;
	m.mountpoint = o->mountpoint;
	pthread_mutex_init(&m.state_lock, NULL);

	fsname = opt_escape(o->pool);
	if (!fsname ||
	    asprintf(&optstr, "fsname=%s,subtype=reflinkfs,default_permissions%s%s%s",
		     fsname, o->rdonly ? ",ro" : "", o->fuse_opts && *o->fuse_opts ? "," : "",
		     o->fuse_opts ? o->fuse_opts : "") < 0) {
		optstr = NULL;
		goto fail;
	}
	char *argv[5] = {"reflinkfs", "-o", optstr, NULL, NULL};
	int argc = 3;
	if (o->debug)
		argv[argc++] = "-d";
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	se = fuse_session_new(&args, &rfs_fuse_ops, sizeof(rfs_fuse_ops), &m);
	/* The session keeps copies of what it parsed; the arguments libfuse
	 * added (fuse_opt_add_arg) would leak otherwise. */
	fuse_opt_free_args(&args);
	if (!se) {
		fprintf(stderr, "reflinkfs mount: bad mount options '%s' (see reflinkfs mount --help)\n",
			o->fuse_opts ? o->fuse_opts : "");
		goto fail;
	}
	m.se = se;
	m.debug = o->debug;
	if (rfs_fuse_signals_set()) {
		fprintf(stderr, "reflinkfs mount: cannot set the signal handlers: %s\n",
			strerror(errno));
		goto fail;
	}
	/* Before the mount shows up: an umount may connect right after. */
	status = rfs_status_listen(o->pool);
	if (fuse_session_mount(se, o->mountpoint)) {
		fprintf(stderr, "reflinkfs mount: cannot mount on %s (see the message above; is it a directory you may mount on?)\n",
			o->mountpoint);
		rfs_fuse_signals_remove();
		goto fail;
	}
	int tret = rfs_fuse_tmpfile_setup(se);
	if (tret)
		fprintf(stderr, "reflinkfs mount: %s: O_TMPFILE will fail with EOPNOTSUPP on this mount (installing the request hook failed: %s); everything else works\n",
			o->mountpoint, strerror(-tret));
	set_readahead(o->mountpoint);
	m.dev = mount_dev(o->mountpoint);
	if (!o->foreground) {
		g_syslog = true;
		openlog("reflinkfs", LOG_PID, LOG_DAEMON);
	}
	fuse_daemonize(o->foreground);
	if (rfs_status_start(status))
		rfs_log(RFS_LOG_WARN, "%s: status socket thread not started: umount may not hear how the final commit went",
			o->pool);
	log_super(fs, o->pool, o->foreground);
	struct rfs_mountwatch *mwatch = rfs_fuse_mountwatch_start(&m);
	m.watch_srv = rfs_watch_server_start(&m);

	struct committer c = {.m = &m, .fs = fs, .secs = o->commit_secs ? o->commit_secs : 5};
	pthread_mutex_init(&c.lock, NULL);
	pthread_cond_init(&c.cond, NULL);
	pthread_t th;
	bool have_thread = !o->rdonly && pthread_create(&th, NULL, commit_thread, &c) == 0;
	struct rfs_reclaimer *rec = NULL;
	int rret = o->rdonly || o->noreclaim ? 0 : rfs_reclaimer_start(fs, &rec);
	if (rret)
		rfs_log(RFS_LOG_WARN, "%s: no background release of deleted files (%s): their blocks stay allocated until the next mount",
			o->pool, strerror(-rret));

	/* Every standing worker is kept: with 4 idle ones kept by libfuse's
	 * loop, a burst of requests (fio at queue depth 16) started and ended
	 * 300-450 threads a second, each with its 1 MiB request buffer. */
	unsigned threads = o->threads ? o->threads : rfs_fuse_default_threads(o->pool);
	m.uring = o->uring != 0 && rfs_fuse_uring_kernel_allows();
	if (o->uring == 1 && !m.uring)
		rfs_log(RFS_LOG_WARN, "%s: -o uring: the kernel does not let FUSE use io_uring (/sys/module/fuse/parameters/enable_uring is not Y; as root: echo Y > /sys/module/fuse/parameters/enable_uring, then mount again); requests go through /dev/fuse",
			o->pool);
	ret = rfs_fuse_workers_run(&m, threads);
	/* Unmounted: whoever waits for the verdict has connected already,
	 * and the next mount of the pool will need the socket's name. */
	rfs_status_stop_listening(status);
	rfs_fuse_mountwatch_stop(mwatch);
	/* No request runs any more: end every watch (operations waiting on
	 * one have ended with the session) before the pool closes. */
	rfs_watch_server_stop(m.watch_srv);
	m.watch_srv = NULL;
	/* The final commit runs to its end: a SIGTERM (kill, systemd) or a
	 * Ctrl-C now would lose everything since the last commit (SIGKILL
	 * still stops it).  Set before the stop handlers go: the defaults
	 * come back only where those are still in place. */
	struct sigaction ign = {.sa_handler = SIG_IGN};
	sigaction(SIGTERM, &ign, NULL);
	sigaction(SIGINT, &ign, NULL);
	sigaction(SIGHUP, &ign, NULL);

	rfs_reclaimer_stop(rec); /* what is left stays queued on disk */
	if (have_thread) {
		pthread_mutex_lock(&c.lock);
		c.stop = true;
		pthread_cond_signal(&c.cond);
		pthread_mutex_unlock(&c.lock);
		pthread_join(th, NULL);
	}
	fuse_session_unmount(se);
	rfs_fuse_signals_remove();
	fuse_session_destroy(se);
	/* A frozen pool (remounted read-only) holds everything since it
	 * froze: closing it without a commit changes nothing on disk, as a
	 * read-only mount should; files unlinked while open are freed at the
	 * next read-write mount. */
	int cret = 0;
	if (atomic_load(&m.frozen))
		rfs_fs_abandon(fs);
	else
		cret = rfs_fs_close(fs);
	pthread_mutex_destroy(&m.state_lock);
	if (cret)
		rfs_log(RFS_LOG_ERR, "%s: final commit failed: %s", o->pool, strerror(-cret));
	free(optstr);
	free(fsname);
	/* The pool is released before the verdict goes out: an umount that
	 * has it may mount again at once. */
	if (o->lock_fd >= 0)
		close(o->lock_fd);
	send_verdict(status, o->pool, cret);
	return ret || cret ? 1 : 0;

fail:
	if (se)
		fuse_session_destroy(se);
	rfs_status_finish(status, NULL);
	free(optstr);
	free(fsname);
	rfs_fs_close(fs);
	pthread_mutex_destroy(&m.state_lock);
	return 1;
}
