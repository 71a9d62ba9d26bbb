/*
 * Filesystem-level crash tests: what tests/crash/test_crash.c does for the
 * engine, through the fs API (include/reflinkfs/fs.h).
 *
 * Each workload (namespace changes; file data and clones; a full pool
 * with pending frees) runs once as the reference: after every commit the
 * durable state is dumped (tests/common/fsdump.h: every path, type, mode,
 * link count, inode number, size, data hash, extent map and xattrs) with
 * the device flush count at that moment.  A commit is an rfs_fs_sync, or
 * one the fs makes by itself inside an operation (space freed in the
 * running transaction is only reusable after a commit); the state such a
 * commit makes durable must be the one before that operation, since an
 * operation must never be split by a commit; the reference run checks
 * that too.
 *
 * Then, for every flush point k and every crash mode (drop all unflushed
 * writes; a random subset of them, a few seeds; a random subset with one
 * torn write), a fresh pool runs the workload with the crash armed at
 * flush k, stops at the first error, and is reopened: rfs_fs_fsck must be
 * clean (no leaked, doubly used or "in use but marked free" block, every
 * link count right), no superblock copy damaged, and the content must be
 * the state of the last commit that returned success (a sync that
 * returned success is durable), or of the commit in progress when its
 * superblock reached the disk (never with RFS_CRASH_DROP_ALL, which drops
 * every unflushed write).  The recovered fs must then accept changes and
 * sync.
 *
 * Knobs (environment):
 *   RFS_CRASH_SEEDS=<n>      seeds per random crash mode (default 3)
 *   RFS_CRASH_POINT=<k>      run flush point k only (replay a failure)
 *   RFS_CRASH_KEEP_GOING=1   report every failing crash point, not only
 *                            the first (and go on to the crash runs when
 *                            the reference run found an operation split
 *                            by a commit)
 * The first argument, when given, selects tests by name (cmocka's filter:
 * 'test_enospc_*').  A failure prints the workload, flush point, mode and
 * seed, and the command line that replays it.
 */
#include "../common/testutil.h"
#include "../common/fsdump.h"

#include <linux/falloc.h>
#include <sys/xattr.h>

#define MAXC 96 /* commits per workload */

static const struct rfs_ctx g_ctx = {.uid = 1000, .gid = 1000, .pid = 1, .umask = 022};

typedef struct wl wl;

struct workload {
	const char *name;
	uint64_t pool_size;
	int (*run)(wl *w);
	unsigned dump_flags; /* or-ed into every fsd_dump mode */
};

/* dump_flags of the workload running now (one at a time). */
static unsigned g_dump_flags;
#define DUMP(fs, mode, out) fsd_dump((fs), (enum fsd_mode)((mode) | g_dump_flags), (out))
#define DUMP_PATH(path, out) fsd_dump_path((path), g_dump_flags, (out))

/* The reference of one workload: the durable state after every commit. */
typedef struct {
	const struct workload *wk;
	int n;                           /* commits */
	tu_buf states[MAXC + 1];         /* states[c]: after commit c (0: mkfs) */
	uint64_t flush_after[MAXC + 1];  /* flush count when commit c returned */
	uint64_t meta_allocs;            /* metadata block allocations of the run */
	char made_by[MAXC + 1][96];      /* the operation that made commit c */
	bool ready;
} ref_t;

struct wl {
	rfs_fs *fs;
	const char *path;
	ref_t *ref;        /* reference run: record into it; NULL in crash runs */
	tu_buf live;       /* reference run: raw dump after the last operation */
	uint64_t commits;  /* pool commits after the last operation */
	uint64_t flushes;  /* device flushes after the last operation */
	uint64_t synced;   /* commits when the last successful sync returned */
	bool nospc_ok;     /* -ENOSPC (and short writes) are expected now */
	bool track;        /* failure runs: keep live, the state after the last op */
	long last_rc;      /* result of the last operation */
	int ops;
	rfs_nodeid tmp;    /* an O_TMPFILE inode held across operations */
	char step[96];     /* the current operation, for messages */
	char split[3072];  /* reference run: first operation split by a commit */
};

#define W(x)                                                                  \
	do {                                                                  \
		int _w = (int)(x);                                            \
		if (_w)                                                       \
			return _w;                                            \
	} while (0)

typedef struct {
	size_t n;
	char lines[8][256];
} fsck_lines;

static void fsck_cb(void *arg, const char *what)
{
	fsck_lines *f = arg;
	if (f->n < 8)
		snprintf(f->lines[f->n], sizeof f->lines[0], "%s", what);
	f->n++;
}

/* rfs_fs_fsck of path: the number of problems (-1 when it could not
 * run), with the first ones (or why it could not run) in msg. */
static long fsck_report(const char *path, char *msg, size_t len)
{
	static fsck_lines f;
	memset(&f, 0, sizeof f);
	long n = rfs_fs_fsck(path, fsck_cb, &f);
	size_t o = 0;
	msg[0] = 0;
	if (n < 0) {
		snprintf(msg, len, "\n    fsck could not run: %s (%s)", strerror((int)-n),
			 tu_log.n ? tu_log.lines[tu_log.n - 1] : "no log line");
		return -1;
	}
	if (!n)
		n = (long)f.n;
	if (n)
		o += (size_t)snprintf(msg, len, " %ld problem(s)", n);
	for (size_t i = 0; i < f.n && i < 8 && o < len; i++)
		o += (size_t)snprintf(msg + o, len - o, "\n    fsck: %s", f.lines[i]);
	return n;
}

static void ref_push(wl *w, const tu_buf *state, uint64_t flushes)
{
	ref_t *r = w->ref;
	CHECK(r->n < MAXC, "%s: more than %d commits", r->wk->name, MAXC);
	r->n++;
	tu_buf_free(&r->states[r->n]);
	tu_buf_add(&r->states[r->n], state->p, state->n);
	r->flush_after[r->n] = flushes;
	snprintf(r->made_by[r->n], sizeof r->made_by[0], "%s", w->step);
}

/* Reference run, after an operation: record the commits it made. */
static void record_op(wl *w, bool is_sync)
{
	struct rfs_pool_stats st;
	rfs_pool_stats(rfs_fs_pool(w->fs), &st);
	uint64_t nc = st.commits - w->commits;
	tu_buf disk = {0}, live = {0};
	if (nc) {
		int rc = DUMP_PATH(w->path, &disk);
		CHECK(rc == 0, "%s: dumping the durable state after op %d (%s) = %d", w->ref->wk->name,
		      w->ops, w->step, rc);
		char lines[2200];
		long n = fsck_report(w->path, lines, sizeof lines);
		CHECK(n == 0 || !is_sync, "%s: after op %d (%s), fsck:%s",
		      w->ref->wk->name, w->ops, w->step, lines);
		if (n && !w->split[0])
			snprintf(w->split, sizeof w->split,
				 "op %d (%s) made %" PRIu64 " commit(s) inside itself, and fsck of the durable state then finds:%s",
				 w->ops, w->step, nc, lines);
	}
	if (is_sync) {
		CHECK(nc == 1, "%s: sync made %" PRIu64 " commits", w->ref->wk->name, nc);
		/* what the sync made durable is exactly what the live fs shows */
		if (!fsd_equal(&disk, &w->live)) {
			fsd_print_diff((const char *)w->live.p, (const char *)disk.p, 10);
			CHECK(false, "%s: after op %d (%s) the durable state differs from the live fs",
			      w->ref->wk->name, w->ops, w->step);
		}
		ref_push(w, &disk, st.flushes);
	} else {
		/* Commits inside an operation: each must have made durable the
		 * state before the operation. */
		for (uint64_t i = 0; i < nc; i++)
			ref_push(w, &w->live, w->flushes + (st.flushes - w->flushes) * (i + 1) / nc);
		if (nc && !fsd_equal(&disk, &w->live) && !w->split[0]) {
			print_error("%s: op %d (%s) committed a state that is not an operation boundary:\n",
				    w->ref->wk->name, w->ops, w->step);
			fsd_print_diff((const char *)w->live.p, (const char *)disk.p, 10);
			snprintf(w->split, sizeof w->split,
				 "op %d (%s) made %" PRIu64 " commit(s) inside itself, and the durable state after it is not the state before it",
				 w->ops, w->step, nc);
		}
		int rc = DUMP(w->fs, FSD_RAW, &live);
		CHECK(rc == 0, "%s: live dump after op %d (%s) = %d", w->ref->wk->name, w->ops, w->step, rc);
		tu_buf_free(&w->live);
		w->live = live;
	}
	tu_buf_free(&disk);
	w->commits = st.commits;
	w->flushes = st.flushes;
}

/*
 * End of every operation: rc is its result, expect the one error it may
 * give besides success (0: none).  Returns 0 to go on, else the error that
 * stops the workload (-EIO once the simulated crash happened).
 */
static int end_op(wl *w, long rc, long expect, bool is_sync)
{
	w->ops++;
	w->last_rc = rc;
	if (rfs_pool_crashed(rfs_fs_pool(w->fs)))
		return -EIO;
	bool ok = rc >= 0 || rc == expect || (w->nospc_ok && rc == -ENOSPC);
	if (w->ref) {
		CHECK(ok, "reference run of %s: op %d (%s) = %ld (%s)", w->ref->wk->name, w->ops,
		      w->step, rc, strerror((int)-rc));
		record_op(w, is_sync);
	}
	if (!ok)
		return rc ? (int)rc : -EPROTO;
	if (w->track && rc >= 0) {
		tu_buf live = {0};
		int drc = DUMP(w->fs, FSD_RAW, &live);
		CHECK(drc == 0, "live dump after op %d (%s) = %d", w->ops, w->step, drc);
		tu_buf_free(&w->live);
		w->live = live;
	}
	return 0;
}

/* ---- operations by path ------------------------------------------------------ */

static int step(wl *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int step(wl *w, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(w->step, sizeof w->step, fmt, ap);
	va_end(ap);
	return 0;
}

/* Node of path, +1 lookup reference unless it is the root. */
static int node_of(wl *w, const char *path, rfs_nodeid *n)
{
	struct stat st;
	if (!*path) {
		*n = RFS_ROOT_NODE;
		return 0;
	}
	return rfs_fs_resolve(w->fs, path, n, &st);
}

static void put(wl *w, rfs_nodeid n)
{
	if (n != RFS_ROOT_NODE)
		rfs_fs_forget(w->fs, n, 1);
}

/* Parent directory of path (+1 reference unless the root) and last name. */
static int parent_of(wl *w, const char *path, rfs_nodeid *dir, const char **name)
{
	char p[512];
	snprintf(p, sizeof p, "%s", path);
	char *slash = strrchr(p, '/');
	*name = slash ? path + (slash - p) + 1 : path;
	if (!slash)
		p[0] = 0;
	else
		*slash = 0;
	return node_of(w, p, dir);
}

/* Resolution failing counts as the operation failing. */
#define RESOLVE(expr)                                                         \
	do {                                                                  \
		int _r = (expr);                                              \
		if (_r)                                                       \
			return end_op(w, _r, 0, false);                       \
	} while (0)

static int op_mknod(wl *w, const char *path, mode_t mode, long expect)
{
	rfs_nodeid d, n;
	const char *name;
	struct stat st;
	step(w, "mknod %s %o", path, (unsigned)mode);
	RESOLVE(parent_of(w, path, &d, &name));
	int rc;
	if (S_ISDIR(mode))
		rc = rfs_fs_mkdir(w->fs, &g_ctx, d, name, mode & 07777, &n, &st);
	else
		rc = rfs_fs_mknod(w->fs, &g_ctx, d, name, mode, 0, &n, &st);
	if (!rc)
		rfs_fs_forget(w->fs, n, 1);
	put(w, d);
	return end_op(w, rc, expect, false);
}

static int op_create(wl *w, const char *path)
{
	return op_mknod(w, path, S_IFREG | 0644, 0);
}

static int op_mkdir(wl *w, const char *path)
{
	return op_mknod(w, path, S_IFDIR | 0755, 0);
}

static int op_symlink(wl *w, const char *path, const char *target)
{
	rfs_nodeid d, n;
	const char *name;
	struct stat st;
	step(w, "symlink %s -> %s", path, target);
	RESOLVE(parent_of(w, path, &d, &name));
	int rc = rfs_fs_symlink(w->fs, &g_ctx, d, name, target, &n, &st);
	if (!rc)
		rfs_fs_forget(w->fs, n, 1);
	put(w, d);
	return end_op(w, rc, 0, false);
}

/* Deterministic content: byte i of a write with this seed. */
static void pattern(uint8_t *buf, size_t len, uint32_t seed)
{
	tu_rng r = {seed * 0x9e3779b97f4a7c15ull + 1};
	tu_fill(&r, buf, len);
}

static int op_write(wl *w, const char *path, uint64_t off, size_t len, uint32_t seed)
{
	rfs_nodeid n;
	step(w, "write %s %zu@%" PRIu64 " seed %u", path, len, off, seed);
	RESOLVE(node_of(w, path, &n));
	/* kept: a fresh 1 MiB buffer per write is mmapped afresh under ASan */
	static uint8_t *buf;
	static size_t cap;
	if (len > cap) {
		free(buf);
		buf = malloc(len);
		assert_non_null(buf);
		cap = len;
	}
	pattern(buf, len, seed);
	ssize_t rc = rfs_fs_write(w->fs, n, buf, len, off);
	put(w, n);
	/* short only when the pool filled up */
	if (rc >= 0 && (size_t)rc != len && !w->nospc_ok)
		rc = -EPROTO;
	return end_op(w, rc, 0, false);
}

static int op_setattr(wl *w, const char *path, int to_set, uint64_t size, mode_t mode,
		      uid_t uid, gid_t gid)
{
	rfs_nodeid n;
	step(w, "setattr %s %#x size %" PRIu64 " mode %o owner %u:%u", path, (unsigned)to_set, size,
	     (unsigned)mode, (unsigned)uid, (unsigned)gid);
	RESOLVE(node_of(w, path, &n));
	struct stat in;
	memset(&in, 0, sizeof in);
	in.st_size = (off_t)size;
	in.st_mode = mode;
	in.st_uid = uid;
	in.st_gid = gid;
	int rc = rfs_fs_setattr(w->fs, n, &in, to_set, NULL);
	put(w, n);
	return end_op(w, rc, 0, false);
}

static int op_truncate(wl *w, const char *path, uint64_t size)
{
	return op_setattr(w, path, RFS_SET_SIZE, size, 0, 0, 0);
}

static int op_falloc(wl *w, const char *path, int mode, uint64_t off, uint64_t len)
{
	rfs_nodeid n;
	step(w, "fallocate %s mode %#x %" PRIu64 "+%" PRIu64, path, (unsigned)mode, off, len);
	RESOLVE(node_of(w, path, &n));
	int rc = rfs_fs_fallocate(w->fs, n, mode, off, len);
	put(w, n);
	return end_op(w, rc, 0, false);
}

static int op_rename(wl *w, const char *from, const char *to, unsigned flags, long expect)
{
	rfs_nodeid d1, d2;
	const char *n1, *n2;
	step(w, "rename %s %s flags %u", from, to, flags);
	RESOLVE(parent_of(w, from, &d1, &n1));
	int rc = parent_of(w, to, &d2, &n2);
	if (rc) {
		put(w, d1);
		return end_op(w, rc, 0, false);
	}
	rc = rfs_fs_rename(w->fs, &g_ctx, d1, n1, d2, n2, flags);
	put(w, d1);
	put(w, d2);
	return end_op(w, rc, expect, false);
}

static int op_link(wl *w, const char *existing, const char *newpath)
{
	rfs_nodeid n, d;
	const char *name;
	struct stat st;
	step(w, "link %s %s", existing, newpath);
	RESOLVE(node_of(w, existing, &n));
	int rc = parent_of(w, newpath, &d, &name);
	if (rc) {
		put(w, n);
		return end_op(w, rc, 0, false);
	}
	rc = rfs_fs_link(w->fs, n, d, name, &st);
	if (!rc)
		rfs_fs_forget(w->fs, n, 1);
	put(w, n);
	put(w, d);
	return end_op(w, rc, 0, false);
}

static int op_unlink(wl *w, const char *path)
{
	rfs_nodeid d;
	const char *name;
	step(w, "unlink %s", path);
	RESOLVE(parent_of(w, path, &d, &name));
	int rc = rfs_fs_unlink(w->fs, d, name);
	put(w, d);
	return end_op(w, rc, 0, false);
}

/* O_TMPFILE in dir, written (nlink 0: an orphan if a crash comes now). */
static int op_tmpfile(wl *w, const char *dir, size_t len, uint32_t seed)
{
	rfs_nodeid d;
	struct stat st;
	uint8_t buf[8192];
	step(w, "tmpfile in %s, %zu bytes seed %u", dir, len, seed);
	CHECK(len <= sizeof buf, "tmpfile: %zu bytes", len);
	RESOLVE(node_of(w, dir, &d));
	int rc = rfs_fs_tmpfile(w->fs, &g_ctx, d, S_IFREG | 0640, &w->tmp, &st);
	put(w, d);
	if (!rc) {
		pattern(buf, len, seed);
		ssize_t got = rfs_fs_write(w->fs, w->tmp, buf, len, 0);
		rc = got < 0 ? (int)got : got != (ssize_t)len ? -EPROTO : 0;
	}
	return end_op(w, rc, 0, false);
}

/* Give the O_TMPFILE inode a name, and drop the reference on it. */
static int op_link_tmp(wl *w, const char *newpath)
{
	rfs_nodeid d;
	const char *name;
	struct stat st;
	step(w, "link the tmpfile as %s", newpath);
	RESOLVE(parent_of(w, newpath, &d, &name));
	int rc = rfs_fs_link(w->fs, w->tmp, d, name, &st);
	if (!rc)
		rfs_fs_forget(w->fs, w->tmp, 2);
	w->tmp = 0;
	put(w, d);
	return end_op(w, rc, 0, false);
}

static int op_rmdir(wl *w, const char *path)
{
	rfs_nodeid d;
	const char *name;
	step(w, "rmdir %s", path);
	RESOLVE(parent_of(w, path, &d, &name));
	int rc = rfs_fs_rmdir(w->fs, d, name);
	put(w, d);
	return end_op(w, rc, 0, false);
}

static int op_clone_file(wl *w, const char *src, const char *dst)
{
	rfs_nodeid s, d;
	step(w, "clone_file %s %s", src, dst);
	RESOLVE(node_of(w, src, &s));
	int rc = node_of(w, dst, &d);
	if (rc) {
		put(w, s);
		return end_op(w, rc, 0, false);
	}
	rc = rfs_fs_clone_file(w->fs, s, d);
	put(w, s);
	put(w, d);
	return end_op(w, rc, 0, false);
}

static int op_clone_range(wl *w, const char *src, uint64_t off_in, const char *dst,
			  uint64_t off_out, uint64_t len)
{
	rfs_nodeid s, d;
	step(w, "clone_range %s %" PRIu64 " %s %" PRIu64 " len %" PRIu64, src, off_in, dst, off_out,
	     len);
	RESOLVE(node_of(w, src, &s));
	int rc = node_of(w, dst, &d);
	if (rc) {
		put(w, s);
		return end_op(w, rc, 0, false);
	}
	ssize_t got = rfs_fs_clone_range(w->fs, s, off_in, d, off_out, len);
	put(w, s);
	put(w, d);
	if (got >= 0 && (uint64_t)got != len && !w->nospc_ok)
		got = -EPROTO;
	return end_op(w, got, 0, false);
}

static int op_setxattr(wl *w, const char *path, const char *name, size_t len, uint32_t seed,
		       int flags)
{
	rfs_nodeid n;
	step(w, "setxattr %s %s %zu seed %u flags %d", path, name, len, seed, flags);
	RESOLVE(node_of(w, path, &n));
	uint8_t *v = malloc(len ? len : 1);
	assert_non_null(v);
	pattern(v, len, seed);
	int rc = rfs_fs_setxattr(w->fs, &g_ctx, n, name, v, len, flags);
	free(v);
	put(w, n);
	return end_op(w, rc, 0, false);
}

static int op_removexattr(wl *w, const char *path, const char *name)
{
	rfs_nodeid n;
	step(w, "removexattr %s %s", path, name);
	RESOLVE(node_of(w, path, &n));
	int rc = rfs_fs_removexattr(w->fs, n, name);
	put(w, n);
	return end_op(w, rc, 0, false);
}

static int op_snapshot(wl *w, const char *src, const char *dst, unsigned flags)
{
	rfs_nodeid s, d, out;
	const char *name;
	struct stat st;
	step(w, "snapshot %s %s flags %u", src, dst, flags);
	RESOLVE(node_of(w, src, &s));
	int rc = parent_of(w, dst, &d, &name);
	if (rc) {
		put(w, s);
		return end_op(w, rc, 0, false);
	}
	rc = rfs_fs_snapshot(w->fs, s, d, name, flags, &out, &st);
	if (!rc)
		rfs_fs_forget(w->fs, out, 1);
	put(w, s);
	put(w, d);
	return end_op(w, rc, 0, false);
}

static int op_snapdel(wl *w, const char *path)
{
	rfs_nodeid d;
	const char *name;
	step(w, "snapshot delete %s", path);
	RESOLVE(parent_of(w, path, &d, &name));
	int rc = rfs_fs_snapshot_delete(w->fs, d, name);
	put(w, d);
	return end_op(w, rc, 0, false);
}

static int op_sync(wl *w)
{
	step(w, "sync");
	int rc = rfs_fs_sync(w->fs);
	if (rc == 0) {
		struct rfs_pool_stats st;
		rfs_pool_stats(rfs_fs_pool(w->fs), &st);
		w->synced = st.commits;
	}
	return end_op(w, rc, 0, true);
}

/* ---- workloads ------------------------------------------------------------------- */

/* Names: create, mkdir, symlink, fifo, rename (plain, replacing,
 * exchanging, leaving a whiteout, across directories, a directory holding
 * hard links), O_TMPFILE linked in, hard links, unlink, rmdir, xattrs,
 * chmod/chown. */
static int wl_names(wl *w)
{
	W(op_mkdir(w, "a"));
	W(op_mkdir(w, "b"));
	W(op_mkdir(w, "a/sub"));
	W(op_create(w, "a/f1"));
	W(op_write(w, "a/f1", 0, 100, 1));
	W(op_create(w, "b/f2"));
	W(op_write(w, "b/f2", 0, 5000, 2));
	W(op_symlink(w, "a/ln", "f1"));
	W(op_mknod(w, "b/fifo", S_IFIFO | 0600, 0));
	W(op_sync(w));
	/* plain renames: same directory, across directories, a directory */
	W(op_rename(w, "a/f1", "a/f1r", 0, 0));
	W(op_rename(w, "b/f2", "a/f2", 0, 0));
	W(op_rename(w, "a/sub", "b/sub", 0, 0));
	W(op_sync(w));
	/* rename replacing a file */
	W(op_create(w, "a/x"));
	W(op_write(w, "a/x", 0, 3000, 3));
	W(op_create(w, "a/y"));
	W(op_write(w, "a/y", 0, 9000, 4));
	W(op_sync(w));
	W(op_rename(w, "a/x", "a/y", 0, 0));
	W(op_rename(w, "b/fifo", "a/f1r", RFS_RENAME_NOREPLACE, -EEXIST));
	W(op_sync(w));
	/* rename leaving a whiteout (overlayfs) */
	W(op_create(w, "b/w"));
	W(op_rename(w, "b/w", "a/w", RFS_RENAME_WHITEOUT, 0));
	W(op_sync(w));
	/* O_TMPFILE: durable while nameless (a crash leaves an orphan,
	 * freed by the next mount), then linked */
	W(op_tmpfile(w, "b", 5000, 13));
	W(op_sync(w));
	W(op_link_tmp(w, "b/from-tmpfile"));
	W(op_sync(w));
	/* exchange: two files, then a file and a directory across directories */
	W(op_create(w, "b/p"));
	W(op_write(w, "b/p", 0, 4096, 5));
	W(op_rename(w, "b/p", "a/f2", RFS_RENAME_EXCHANGE, 0));
	W(op_rename(w, "a/f1r", "b/sub", RFS_RENAME_EXCHANGE, 0));
	W(op_sync(w));
	/* hard links, in the same and in other directories */
	W(op_link(w, "a/y", "b/y2"));
	W(op_link(w, "a/y", "a/f1r/y3")); /* a/f1r: the old a/sub */
	W(op_setxattr(w, "b/y2", "user.linked", 30, 6, 0));
	W(op_sync(w));
	W(op_unlink(w, "a/y"));
	W(op_write(w, "b/y2", 4096, 4096, 7));
	W(op_sync(w));
	W(op_rename(w, "b/y2", "a/y4", 0, 0));
	W(op_unlink(w, "a/f1r/y3"));
	W(op_sync(w));
	/* xattrs: small, near a block, on a directory, replaced, removed */
	W(op_setxattr(w, "a/y4", "user.a", 10, 8, XATTR_CREATE));
	W(op_setxattr(w, "a/y4", "user.big", 4000, 9, 0));
	W(op_setxattr(w, "a", "user.dir", 200, 10, 0));
	W(op_sync(w));
	W(op_setxattr(w, "a/y4", "user.a", 500, 11, XATTR_REPLACE));
	W(op_removexattr(w, "a/y4", "user.big"));
	W(op_setattr(w, "a/y4", RFS_SET_MODE, 0, 0600, 0, 0));
	W(op_setattr(w, "b/p", RFS_SET_UID | RFS_SET_GID, 0, 0, 2000, 3000));
	W(op_sync(w));
	/* a deeper tree with a hard link inside, moved as a whole */
	W(op_mkdir(w, "d"));
	W(op_mkdir(w, "d/e"));
	W(op_mkdir(w, "d/e/f"));
	W(op_create(w, "d/e/f/g"));
	W(op_write(w, "d/e/f/g", 0, 20000, 12));
	W(op_link(w, "d/e/f/g", "d/e/g2"));
	W(op_sync(w));
	W(op_rename(w, "d", "a/f1r/d", 0, 0));
	W(op_unlink(w, "a/ln"));
	W(op_sync(w));
	/* a directory big enough to split its tree, then half of it gone */
	W(op_mkdir(w, "many"));
	for (int i = 0; i < 120; i++) {
		char p[64];
		snprintf(p, sizeof p, "many/file-with-a-longer-name-%03d", i);
		W(op_create(w, p));
	}
	W(op_sync(w));
	for (int i = 0; i < 120; i += 2) {
		char p[64];
		snprintf(p, sizeof p, "many/file-with-a-longer-name-%03d", i);
		W(op_unlink(w, p));
	}
	W(op_rename(w, "many/file-with-a-longer-name-001", "many/renamed", 0, 0));
	W(op_sync(w));
	/* tear down a tree */
	W(op_unlink(w, "a/f1r/d/e/f/g"));
	W(op_rmdir(w, "a/f1r/d/e/f"));
	W(op_unlink(w, "a/f1r/d/e/g2"));
	W(op_rmdir(w, "a/f1r/d/e"));
	W(op_rmdir(w, "a/f1r/d"));
	W(op_sync(w));
	return 0;
}

#define KB 1024u
#define MB (1024u * 1024u)

/* Data: small and multi-extent writes, overwrite, append, sparse files,
 * truncate (shrink, grow), fallocate, punch, zero range, clones of whole
 * files and of ranges; tiny files with inline data. */
static int wl_data(wl *w)
{
	W(op_create(w, "f"));
	W(op_write(w, "f", 0, 100, 20));
	W(op_create(w, "g"));
	/* scattered writes: several extents */
	for (int i = 0; i < 6; i++)
		W(op_write(w, "g", (uint64_t)i * 512 * KB, 256 * KB + (size_t)i * 1000, 21 + (uint32_t)i));
	W(op_sync(w));
	/* overwrite in the middle (unaligned), append */
	W(op_write(w, "g", 5000, 10000, 30));
	W(op_write(w, "f", 100, 9000, 31));
	W(op_sync(w));
	/* tiny files, data inline in the record: overwritten, grown within
	 * the limit, cloned, cut, then moved into blocks (a write far past
	 * the limit, preallocation) */
	W(op_create(w, "t"));
	W(op_write(w, "t", 0, 300, 80));
	W(op_sync(w));
	W(op_write(w, "t", 10, 50, 81));
	W(op_write(w, "t", 300, 500, 82));
	W(op_create(w, "tc"));
	W(op_clone_file(w, "t", "tc"));
	W(op_truncate(w, "t", 20));
	W(op_sync(w));
	W(op_write(w, "tc", 8 * KB, 100, 83));
	W(op_falloc(w, "t", FALLOC_FL_KEEP_SIZE, 0, 8 * KB));
	W(op_sync(w));
	/* sparse: data far out, then grown by truncate */
	W(op_create(w, "s"));
	W(op_write(w, "s", 5 * MB + 123, 4096, 32));
	W(op_write(w, "s", 0, 10, 33));
	W(op_truncate(w, "s", 8 * MB));
	W(op_sync(w));
	/* shrink to a partial block, grow again: the cut bytes read as 0 */
	W(op_truncate(w, "g", MB + 123));
	W(op_truncate(w, "g", 2 * MB));
	W(op_sync(w));
	/* fallocate: extending, past EOF, then written in the middle */
	W(op_create(w, "p"));
	W(op_falloc(w, "p", 0, 0, MB));
	W(op_falloc(w, "p", FALLOC_FL_KEEP_SIZE, MB, 256 * KB));
	W(op_write(w, "p", 300 * KB + 7, 20000, 34));
	W(op_sync(w));
	/* punch and zero ranges */
	W(op_falloc(w, "g", FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 100 * KB + 5, 200 * KB));
	W(op_falloc(w, "p", FALLOC_FL_ZERO_RANGE, 290 * KB, 40 * KB + 3));
	W(op_sync(w));
	/* clones: whole file, range with partial head and tail */
	W(op_create(w, "gc"));
	W(op_clone_file(w, "g", "gc"));
	W(op_clone_range(w, "g", 8 * KB, "f", 12 * KB, 64 * KB));
	W(op_clone_range(w, "p", 1000, "f", 100 * KB + 77, 30000));
	W(op_sync(w));
	/* both sides diverge */
	W(op_write(w, "gc", 3 * KB, 8 * KB, 35));
	W(op_write(w, "g", 400 * KB, 100 * KB, 36));
	W(op_truncate(w, "gc", 700 * KB + 1));
	W(op_sync(w));
	/* sparse clone; the source of shared blocks goes away */
	W(op_create(w, "sc"));
	W(op_clone_file(w, "s", "sc"));
	W(op_unlink(w, "g"));
	W(op_sync(w));
	/* a short file cloned over a longer one, which then grows */
	W(op_create(w, "short"));
	W(op_write(w, "short", 0, 6000, 37));
	W(op_clone_file(w, "short", "sc"));
	W(op_truncate(w, "sc", 3 * MB));
	W(op_clone_range(w, "gc", 0, "short", 4096, 100 * KB));
	W(op_sync(w));
	W(op_unlink(w, "gc"));
	W(op_unlink(w, "s"));
	W(op_write(w, "p", 0, 2 * MB, 38));
	W(op_sync(w));
	return 0;
}

/*
 * A full pool with frees pending: fill the pool, sync, delete files and
 * overwrite blocks without syncing, then create and write more, so that
 * allocations need the blocks freed in the running transaction.
 */
static int wl_enospc(wl *w)
{
	char p[64];
	int files = 0;
	W(op_mkdir(w, "fill"));
	W(op_create(w, "keep"));
	W(op_write(w, "keep", 0, 64 * KB, 40));
	W(op_sync(w));
	w->nospc_ok = true;
	for (; files < 40; files++) {
		snprintf(p, sizeof p, "fill/f%02d", files);
		W(op_create(w, p));
		if (w->last_rc)
			break;
		W(op_write(w, p, 0, MB, 41 + (uint32_t)files));
		if (w->last_rc != MB) {
			files++;
			break;
		}
	}
	CHECK(!w->ref || files < 40, "the pool never filled up");
	W(op_sync(w));
	/* overwrites: shadowing frees metadata blocks, the data has no room */
	W(op_write(w, "fill/f01", 8 * KB, 4 * KB, 60));
	W(op_write(w, "keep", 0, 4 * KB, 61));
	W(op_sync(w));
	/* deletes, then new data needing the freed blocks */
	W(op_unlink(w, "fill/f00"));
	W(op_truncate(w, "fill/f02", 100 * KB));
	W(op_create(w, "new1"));
	W(op_write(w, "new1", 0, 768 * KB, 62));
	W(op_mkdir(w, "newdir"));
	W(op_create(w, "newdir/n"));
	W(op_write(w, "newdir/n", 0, 300 * KB, 63));
	W(op_sync(w));
	W(op_unlink(w, "fill/f03"));
	W(op_unlink(w, "fill/f04"));
	W(op_create(w, "new2"));
	W(op_clone_file(w, "fill/f05", "new2"));
	W(op_write(w, "new2", 100 * KB, 600 * KB, 64));
	W(op_falloc(w, "new1", 0, 768 * KB, MB));
	W(op_write(w, "keep", 4 * KB, 60 * KB, 65));
	W(op_sync(w));
	return 0;
}

/* Snapshots of directories: rw and ro, both sides written, hard links
 * and a snapshot below the source, a snapshot of the root, deletion of
 * snapshots with contents and rmdir of an empty one. */
static int wl_snapshots(wl *w)
{
	W(op_mkdir(w, "src"));
	W(op_mkdir(w, "src/d"));
	W(op_create(w, "src/f"));
	W(op_write(w, "src/f", 0, 100 * KB, 70));
	W(op_create(w, "src/d/g"));
	W(op_write(w, "src/d/g", 0, 20 * KB, 71));
	W(op_link(w, "src/f", "src/d/f2"));
	W(op_sync(w));
	W(op_snapshot(w, "src", "rw", 0));
	W(op_snapshot(w, "src", "ro", RFS_SNAP_RDONLY));
	W(op_sync(w));
	W(op_write(w, "rw/f", 4 * KB, 8 * KB, 72));
	W(op_write(w, "src/d/g", 0, 4 * KB, 73));
	W(op_create(w, "rw/new"));
	W(op_write(w, "rw/new", 0, 30 * KB, 74));
	W(op_unlink(w, "src/d/f2"));
	W(op_sync(w));
	/* a snapshot below the source, then a snapshot of all of it */
	W(op_snapshot(w, "src/d", "src/dsnap", 0));
	W(op_snapshot(w, "src", "all", 0));
	W(op_write(w, "all/dsnap/g", 0, 4 * KB, 75));
	W(op_sync(w));
	W(op_mkdir(w, "empty"));
	W(op_snapshot(w, "empty", "esnap", 0));
	W(op_snapdel(w, "rw"));
	W(op_snapdel(w, "all"));
	W(op_rmdir(w, "esnap"));
	W(op_sync(w));
	W(op_snapdel(w, "ro"));
	W(op_snapdel(w, "src/dsnap"));
	W(op_write(w, "src/f", 0, 4 * KB, 76));
	W(op_sync(w));
	return 0;
}

static const struct workload g_workloads[] = {
	{"names", 16ull << 20, wl_names, 0},
	{"data", 32ull << 20, wl_data, 0},
	{"enospc", 16ull << 20, wl_enospc, 0},
	{"snapshots", 16ull << 20, wl_snapshots, FSD_NOSHARED},
};
#define NWL (sizeof g_workloads / sizeof g_workloads[0])

/* ---- reference runs ----------------------------------------------------------------- */

static ref_t g_ref[NWL];
static tu_pool g_tmp; /* scratch directory, removed by group_teardown */

static void pool_path(char *out, size_t len, const char *name)
{
	snprintf(out, len, "%s/%s", g_tmp.dir, name);
}

/* A new filesystem of this size at path: a copy of one made by mkfs once
 * (mkfs flushes for real, which would dominate the runtime). */
static void fresh_fs(const char *path, uint64_t size)
{
	char tmpl[2200];
	snprintf(tmpl, sizeof tmpl, "%s/mkfs-%" PRIu64, g_tmp.dir, size);
	if (access(tmpl, F_OK) != 0)
		OK(rfs_fs_mkfs(tmpl, size, 0));
	OK(tu_copy_file(tmpl, path));
}

static ref_t *record_reference(size_t i)
{
	ref_t *r = &g_ref[i];
	g_dump_flags = g_workloads[i].dump_flags;
	if (r->ready)
		return r;
	r->wk = &g_workloads[i];
	r->n = 0;
	char path[2200];
	pool_path(path, sizeof path, "ref");
	fresh_fs(path, r->wk->pool_size);
	tu_buf_free(&r->states[0]);
	OK(DUMP_PATH(path, &r->states[0]));
	r->flush_after[0] = 0;
	snprintf(r->made_by[0], sizeof r->made_by[0], "mkfs");

	wl w;
	memset(&w, 0, sizeof w);
	w.path = path;
	w.ref = r;
	OK(rfs_fs_open(path, RFS_FS_CRASHSIM, &w.fs));
	OK(DUMP(w.fs, FSD_RAW, &w.live));
	CHECK(fsd_equal(&w.live, &r->states[0]), "%s: raw and read dumps of mkfs differ",
	      r->wk->name);
	OK(r->wk->run(&w));
	struct rfs_pool_stats st;
	rfs_pool_stats(rfs_fs_pool(w.fs), &st);
	r->meta_allocs = st.meta_allocs;
	rfs_fs_abandon(w.fs);
	tu_buf_free(&w.live);
	CHECK(r->n >= 4, "%s: only %d commits", r->wk->name, r->n);
	/* the states differ from each other (else the test proves little) */
	int same = 0;
	for (int c = 0; c < r->n; c++)
		same += fsd_equal(&r->states[c], &r->states[c + 1]);
	fprintf(stderr, "%s: %d ops, %d commits (%d repeat the state before), %" PRIu64 " flushes\n",
		r->wk->name, w.ops, r->n, same, r->flush_after[r->n]);
	for (int c = 1; c <= r->n; c++)
		if (strcmp(r->made_by[c], "sync"))
			fprintf(stderr, "%s: commit %d made inside: %s\n", r->wk->name, c, r->made_by[c]);
	/* An operation split by a commit is the bug this test is for:
	 * report it here, where it is plainest (unless asked to go on to
	 * the crash runs). */
	if (w.split[0] && getenv("RFS_CRASH_KEEP_GOING"))
		print_error("%s: %s\n", r->wk->name, w.split);
	else
		CHECK(!w.split[0], "%s: %s", r->wk->name, w.split);
	r->ready = true;
	return r;
}

/* ---- crash runs ----------------------------------------------------------------------- */

static int state_index(const ref_t *r, const tu_buf *b, int from, int to)
{
	for (int i = from; i <= to && i <= r->n; i++)
		if (fsd_equal(&r->states[i], b))
			return i;
	for (int i = 0; i <= r->n; i++)
		if (fsd_equal(&r->states[i], b))
			return i;
	return -1;
}

static const char *mode_name(enum rfs_crash_mode m)
{
	return m == RFS_CRASH_DROP_ALL ? "drop-all" : m == RFS_CRASH_DROP_RANDOM ? "drop-random" : "tear";
}

/* Create (or find) after-crash/f and write buf to it. */
static ssize_t write_after(rfs_fs *fs, const uint8_t *buf, size_t len)
{
	rfs_nodeid d, f;
	struct stat st;
	int rc = rfs_fs_resolve(fs, "after-crash", &d, &st);
	if (rc == -ENOENT)
		rc = rfs_fs_mkdir(fs, &g_ctx, RFS_ROOT_NODE, "after-crash", 0755, &d, &st);
	if (rc)
		return rc;
	rc = rfs_fs_lookup(fs, d, "f", &f, &st);
	if (rc == -ENOENT)
		rc = rfs_fs_create(fs, &g_ctx, d, "f", 0644, &f, &st);
	rfs_fs_forget(fs, d, 1);
	if (rc)
		return rc;
	ssize_t wr = rfs_fs_write(fs, f, buf, len, 0);
	rfs_fs_forget(fs, f, 1);
	return wr;
}

/* After recovery: the fs takes changes and syncs (on the full pool of the
 * enospc workload, after deleting what it filled the pool with). */
static int post_crash_changes(rfs_fs *fs, const char *path, char *msg, size_t len)
{
	rfs_nodeid f;
	struct stat st;
	uint8_t buf[16 * KB], rd[16 * KB];
	pattern(buf, sizeof buf, 99);
	ssize_t wr = write_after(fs, buf, sizeof buf);
	for (int i = 0; wr == -ENOSPC && i < 40; i++) {
		char n[16];
		rfs_nodeid fill;
		snprintf(n, sizeof n, "f%02d", i);
		if (rfs_fs_resolve(fs, "fill", &fill, &st) == 0) {
			rfs_fs_unlink(fs, fill, n);
			rfs_fs_forget(fs, fill, 1);
		}
		if (rfs_fs_sync(fs) == 0)
			wr = write_after(fs, buf, sizeof buf);
	}
	if (wr != (ssize_t)sizeof buf) {
		snprintf(msg, len, "after recovery: creating and writing a file = %zd", wr);
		rfs_fs_abandon(fs);
		return -1;
	}
	int rc;
	rc = rfs_fs_sync(fs);
	int rc2 = rfs_fs_close(fs);
	if (rc || rc2) {
		snprintf(msg, len, "after recovery: sync = %d, close = %d", rc, rc2);
		return -1;
	}
	char lines[2200];
	long n = fsck_report(path, lines, sizeof lines);
	if (n) {
		snprintf(msg, len, "after recovery and a sync, fsck:%s", lines);
		return -1;
	}
	rc = rfs_fs_open(path, RFS_FS_CRASHSIM, &fs);
	if (rc) {
		snprintf(msg, len, "after recovery and a sync: reopen = %d", rc);
		return -1;
	}
	rc = rfs_fs_resolve(fs, "after-crash/f", &f, &st);
	ssize_t got = rc ? rc : rfs_fs_read(fs, f, rd, sizeof rd, 0);
	if (!rc)
		rfs_fs_forget(fs, f, 1);
	rfs_fs_close(fs);
	if (got != (ssize_t)sizeof rd || memcmp(rd, buf, sizeof rd)) {
		snprintf(msg, len, "after recovery: the file written and synced reads back wrong (%zd)", got);
		return -1;
	}
	return 0;
}

/*
 * One crash run.  Returns true when everything held; else prints what
 * went wrong (and how to replay it) and returns false.
 */
static bool crash_run(const ref_t *r, uint64_t k, enum rfs_crash_mode mode, uint64_t seed)
{
	char path[2200], msg[4096] = "";
	pool_path(path, sizeof path, "crash");
	fresh_fs(path, r->wk->pool_size);
	tu_log_clear();

	/* c: the commit that flush k belongs to (c - 1 completed before) */
	int c = 1;
	while (c < r->n && r->flush_after[c] < k)
		c++;

	wl w;
	memset(&w, 0, sizeof w);
	w.path = path;
	OK(rfs_fs_open(path, RFS_FS_CRASHSIM, &w.fs));
	rfs_pool *pool = rfs_fs_pool(w.fs);
	if (seed & 1)
		rfs_pool_set_cache_limit(pool, 16);
	rfs_pool_crash_at_flush(pool, k, mode, seed);
	int rc = r->wk->run(&w);
	bool crashed = rfs_pool_crashed(pool);
	struct rfs_pool_stats st;
	rfs_pool_stats(pool, &st);
	rfs_fs_abandon(w.fs);
	tu_buf b = {0};
	rfs_fs *fs = NULL;
	if (!crashed) {
		snprintf(msg, sizeof msg, "no crash happened: the workload %s at op %d (%s)",
			 rc ? "failed" : "finished", w.ops, w.step);
		goto fail;
	}
	/* done: the commits that returned success.  Commit c succeeds when
	 * the crash comes after its durable point (its first superblock
	 * copy flushed), i.e. at the flush of its second copy. */
	int done = (int)st.commits;
	if (done != c - 1 && done != c) {
		snprintf(msg, sizeof msg, "%d commits returned success before the crash, expected %d or %d (the run diverged from the reference)",
			 done, c - 1, c);
		goto fail;
	}
	/* A crash leaves a valid copy in each superblock slot (the second
	 * copy is written once the first is durable): never a damaged copy
	 * (a torn write keeps whole sectors), never a lost commit. */
	struct rfs_super_report sr;
	rc = rfs_pool_super_inspect(path, &sr);
	if (rc || sr.damaged || sr.lost_newer) {
		snprintf(msg, sizeof msg, "superblocks after the crash: inspect = %d, %u damaged, lost a commit: %d",
			 rc, sr.damaged, sr.lost_newer);
		goto fail;
	}

	char lines[2200];
	long n = fsck_report(path, lines, sizeof lines);
	if (n) {
		snprintf(msg, sizeof msg, "fsck after the crash:%s", lines);
		goto fail;
	}
	/* CRASHSIM only spares the real fdatasync: each flush still
	 * writes everything to the file */
	rc = rfs_fs_open(path, RFS_FS_CRASHSIM, &fs);
	if (rc) {
		snprintf(msg, sizeof msg, "reopen after the crash = %d", rc);
		goto fail;
	}
	rc = DUMP(fs, FSD_READ, &b);
	if (rc) {
		snprintf(msg, sizeof msg, "reading the recovered fs = %d", rc);
		goto fail;
	}
	/* The last successful commit, or the one in progress (c) when its
	 * superblock reached the disk; DROP_ALL loses all that was not
	 * flushed, so exactly the last successful one. */
	int s = state_index(r, &b, done, c);
	if (s < 0) {
		print_error("  recovered content vs state %d (after %s):\n", done, r->made_by[done]);
		fsd_print_diff((const char *)r->states[done].p, (const char *)b.p, 12);
		snprintf(msg, sizeof msg, "the recovered content matches no committed state (expected %d or %d)", done, c);
		goto fail;
	}
	if (s < done || s > c) {
		snprintf(msg, sizeof msg, "recovered state %d (after %s), expected %d..%d", s, r->made_by[s], done, c);
		goto fail;
	}
	if ((uint64_t)s < w.synced) {
		snprintf(msg, sizeof msg, "a sync returned success at commit %" PRIu64 ", but state %d was recovered", w.synced, s);
		goto fail;
	}
	if (mode == RFS_CRASH_DROP_ALL && s != done) {
		snprintf(msg, sizeof msg, "recovered state %d, but %d commits returned success and every unflushed write was dropped", s, done);
		goto fail;
	}
	tu_buf_free(&b);
	rc = post_crash_changes(fs, path, msg, sizeof msg);
	fs = NULL;
	if (rc)
		goto fail;
	return true;
fail:
	if (fs)
		rfs_fs_abandon(fs);
	tu_buf_free(&b);
	print_error("FAIL %s: crash at flush %" PRIu64 " (mode %s, seed %" PRIu64 ", during commit %d: %s): %s\n",
		    r->wk->name, k, mode_name(mode), seed, c, r->made_by[c], msg);
	print_error("  replay: RFS_CRASH_POINT=%" PRIu64 " build/asan/tests/crash/test_fs_crash 'test_%s_%s'\n",
		    k, r->wk->name, mode == RFS_CRASH_DROP_ALL ? "drop_all" : mode == RFS_CRASH_DROP_RANDOM ? "drop_random" : "tear");
	tu_log_print_tail(6);
	return false;
}

static uint64_t env_u64(const char *name, uint64_t dflt)
{
	const char *e = getenv(name);
	return e && *e ? strtoull(e, NULL, 0) : dflt;
}

static void run_workload(size_t i, enum rfs_crash_mode mode)
{
	ref_t *r = record_reference(i);
	uint64_t seeds = mode == RFS_CRASH_DROP_ALL ? 1 : env_u64("RFS_CRASH_SEEDS", 3);
	uint64_t only = env_u64("RFS_CRASH_POINT", 0);
	bool keep_going = env_u64("RFS_CRASH_KEEP_GOING", 0) != 0;
	uint64_t nflush = r->flush_after[r->n];
	int failures = 0;
	for (uint64_t k = only ? only : 1; k <= (only ? only : nflush); k++)
		for (uint64_t s = 0; s < seeds; s++) {
			uint64_t seed = k * 1000003 + s * 7919 + (uint64_t)mode;
			if (!crash_run(r, k, mode, seed)) {
				failures++;
				CHECK(keep_going, "%s, mode %s: crash at flush %" PRIu64 " failed (see above)",
				      r->wk->name, mode_name(mode), k);
			}
		}
	tu_log_clear();
	CHECK(failures == 0, "%s, mode %s: %d crash runs failed", r->wk->name, mode_name(mode), failures);
}

/* ---- metadata allocation failures ---------------------------------------------------- */

/*
 * Every metadata block allocation after the first k fails with -ENOSPC,
 * as if the reserve operations count on had run out (it never should:
 * src/fs/op.c reserves before changing anything); or (eio) every write
 * to the pool after the first k fails with -EIO, as a failing device.
 * The operation or commit that meets it must fail cleanly: the pool,
 * closed and opened again, passes fsck and holds either the last commit
 * that succeeded or, when the failure left the transaction sound and the
 * close committed it, the state before the failing operation; never
 * half an operation.  *hit: the failure was met (the workload or the
 * close failed).
 */
static bool fault_run(const ref_t *r, uint64_t k, bool eio, bool *hit)
{
	char path[2200], msg[4096] = "";
	pool_path(path, sizeof path, "nospc");
	fresh_fs(path, r->wk->pool_size);
	tu_log_clear();

	wl w;
	memset(&w, 0, sizeof w);
	w.path = path;
	w.track = true;
	OK(rfs_fs_open(path, 0, &w.fs));
	OK(DUMP(w.fs, FSD_RAW, &w.live));
	if (eio)
		rfs_pool_fail_writes_after(rfs_fs_pool(w.fs), k);
	else
		rfs_pool_fail_meta_allocs_after(rfs_fs_pool(w.fs), k);
	int rc = r->wk->run(&w);
	struct rfs_pool_stats st;
	rfs_pool_stats(rfs_fs_pool(w.fs), &st);
	int done = (int)st.commits;
	int crc = rfs_fs_close(w.fs);
	if (hit)
		*hit = rc || crc;
	tu_buf b = {0};
	rfs_fs *fs = NULL;
	char lines[2200];
	long n = fsck_report(path, lines, sizeof lines);
	if (n) {
		snprintf(msg, sizeof msg, "fsck:%s", lines);
		goto fail;
	}
	int orc = rfs_fs_open(path, 0, &fs);
	if (orc) {
		snprintf(msg, sizeof msg, "reopen = %d", orc);
		goto fail;
	}
	orc = DUMP(fs, FSD_READ, &b);
	if (orc) {
		snprintf(msg, sizeof msg, "reading the reopened fs = %d", orc);
		goto fail;
	}
	bool last = done <= r->n && fsd_equal(&b, &r->states[done]);
	if (!last && !fsd_equal(&b, &w.live)) {
		print_error("  reopened content vs the state before the failing op:\n");
		fsd_print_diff((const char *)w.live.p, (const char *)b.p, 12);
		snprintf(msg, sizeof msg, "the content is neither commit %d nor the state before the failing op", done);
		goto fail;
	}
	OK(rfs_fs_close(fs));
	tu_buf_free(&b);
	tu_buf_free(&w.live);
	return true;
fail:
	if (fs)
		rfs_fs_abandon(fs);
	tu_buf_free(&b);
	tu_buf_free(&w.live);
	print_error("FAIL %s: %s fail after %" PRIu64 " (workload %s at op %d, %s: %d; %d commits; close = %d): %s\n",
		    r->wk->name, eio ? "pool writes" : "metadata allocations", k,
		    rc ? "stopped" : "finished", w.ops, w.step, (int)w.last_rc, done, crc, msg);
	if (!eio)
		print_error("  replay: RFS_NOSPC_POINT=%" PRIu64 " build/asan/tests/crash/test_fs_crash 'test_%s_meta_nospc'\n",
			    k, r->wk->name);
	tu_log_print_tail(6);
	return false;
}

/* Failure points: the first 8 allocations, then RFS_NOSPC_POINTS (48)
 * spread evenly over the rest of the workload's; RFS_NOSPC_POINT=k runs
 * only k. */
static void run_meta_nospc(size_t i)
{
	ref_t *r = record_reference(i);
	uint64_t only = env_u64("RFS_NOSPC_POINT", 0);
	uint64_t npts = env_u64("RFS_NOSPC_POINTS", 48);
	uint64_t total = r->meta_allocs;
	CHECK(total > 16, "%s: only %" PRIu64 " metadata allocations", r->wk->name, total);
	int failures = 0, runs = 0;
	for (uint64_t k = only ? only : 0; k < total; ) {
		runs++;
		if (!fault_run(r, k, false, NULL))
			failures++;
		if (only)
			break;
		k = k < 8 ? k + 1 : k + (total - 8) / (npts ? npts : 1) + 1;
	}
	tu_log_clear();
	CHECK(failures == 0, "%s: %d of %d metadata-allocation failure runs failed", r->wk->name,
	      failures, runs);
}

/* Pool writes fail after k = 0..8, then every 1.25x further, until a
 * run meets no failure; RFS_EIO_DENSE=1: every k (all pass: 142, 121,
 * 102 and 58 points in the four workloads). */
static void run_eio(size_t i)
{
	ref_t *r = record_reference(i);
	int failures = 0, runs = 0;
	bool hit = true;
	uint64_t dense = env_u64("RFS_EIO_DENSE", 0);
	for (uint64_t k = 0; hit && runs < 5000; k = k < 8 || dense ? k + 1 : k + k / 4) {
		runs++;
		if (!fault_run(r, k, true, &hit))
			failures++;
	}
	tu_log_clear();
	print_message("%s: %d write-failure points\n", r->wk->name, runs);
	CHECK(failures == 0, "%s: %d of %d write-failure runs failed", r->wk->name, failures, runs);
}
static void test_names_eio(void **s) { (void)s; run_eio(0); }
static void test_data_eio(void **s) { (void)s; run_eio(1); }
static void test_enospc_eio(void **s) { (void)s; run_eio(2); }
static void test_snapshots_eio(void **s) { (void)s; run_eio(3); }

static void test_names_meta_nospc(void **s) { (void)s; run_meta_nospc(0); }
static void test_data_meta_nospc(void **s) { (void)s; run_meta_nospc(1); }
static void test_enospc_meta_nospc(void **s) { (void)s; run_meta_nospc(2); }
static void test_snapshots_meta_nospc(void **s) { (void)s; run_meta_nospc(3); }

static void test_names_drop_all(void **s) { (void)s; run_workload(0, RFS_CRASH_DROP_ALL); }
static void test_names_drop_random(void **s) { (void)s; run_workload(0, RFS_CRASH_DROP_RANDOM); }
static void test_names_tear(void **s) { (void)s; run_workload(0, RFS_CRASH_TEAR); }
static void test_data_drop_all(void **s) { (void)s; run_workload(1, RFS_CRASH_DROP_ALL); }
static void test_data_drop_random(void **s) { (void)s; run_workload(1, RFS_CRASH_DROP_RANDOM); }
static void test_data_tear(void **s) { (void)s; run_workload(1, RFS_CRASH_TEAR); }
static void test_enospc_drop_all(void **s) { (void)s; run_workload(2, RFS_CRASH_DROP_ALL); }
static void test_enospc_drop_random(void **s) { (void)s; run_workload(2, RFS_CRASH_DROP_RANDOM); }
static void test_enospc_tear(void **s) { (void)s; run_workload(2, RFS_CRASH_TEAR); }
static void test_snapshots_drop_all(void **s) { (void)s; run_workload(3, RFS_CRASH_DROP_ALL); }
static void test_snapshots_drop_random(void **s) { (void)s; run_workload(3, RFS_CRASH_DROP_RANDOM); }
static void test_snapshots_tear(void **s) { (void)s; run_workload(3, RFS_CRASH_TEAR); }

/*
 * The plain repro of an operation split by a commit: a pool full of data,
 * synced; a 4 KiB overwrite shadows the file's path (freeing committed
 * blocks, reusable only after a commit) and finds no room for the data;
 * then a crash before any sync.  fsck must be clean, and the content the
 * synced state (or the one with the write, had the write been committed
 * whole).
 */
static void test_overwrite_full_pool_crash(void **state)
{
	(void)state;
	char path[2200];
	pool_path(path, sizeof path, "full");
	fresh_fs(path, 16ull << 20);
	wl w;
	memset(&w, 0, sizeof w);
	w.path = path;
	OK(rfs_fs_open(path, RFS_FS_CRASHSIM, &w.fs));
	w.nospc_ok = true;
	int files = 0;
	for (; files < 40; files++) {
		char p[32];
		snprintf(p, sizeof p, "f%02d", files);
		OK(op_create(&w, p));
		if (w.last_rc)
			break;
		OK(op_write(&w, p, 0, MB, (uint32_t)files));
		if (w.last_rc != MB)
			break;
	}
	CHECK(files < 40, "the pool never filled up");
	OK(op_sync(&w));
	tu_buf synced = {0}, after = {0}, got = {0};
	OK(DUMP_PATH(path, &synced));
	OK(op_write(&w, "f05", 8 * KB, 4 * KB, 1000));
	long wrc = w.last_rc;
	OK(DUMP(w.fs, FSD_RAW, &after));
	rfs_fs_crash(w.fs, RFS_CRASH_DROP_ALL, 1);

	char lines[2200];
	long n = fsck_report(path, lines, sizeof lines);
	CHECK(n == 0, "4 KiB overwrite on a full pool (write returned %ld), crash, fsck:%s",
	      wrc, lines);
	rfs_fs *fs;
	OK(rfs_fs_open(path, 0, &fs));
	OK(DUMP(fs, FSD_READ, &got));
	bool same = fsd_equal(&got, &synced) || fsd_equal(&got, &after);
	if (!same)
		fsd_print_diff((const char *)synced.p, (const char *)got.p, 10);
	rfs_fs_close(fs);
	tu_buf_free(&synced);
	tu_buf_free(&after);
	tu_buf_free(&got);
	CHECK(same, "after the crash the content is neither the synced state nor that plus the write");
}

static int group_setup(void **state)
{
	(void)state;
	tu_log_capture();
	tu_pool_init(&g_tmp);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	tu_pool_fini(&g_tmp);
	for (size_t i = 0; i < NWL; i++)
		for (int c = 0; c <= MAXC; c++)
			tu_buf_free(&g_ref[i].states[c]);
	tu_log_clear();
	return 0;
}

/* argv[1]: run only the tests whose name matches this pattern (cmocka's
 * test filter, e.g. "test_enospc_*"). */
int main(int argc, char **argv)
{
	if (argc > 1)
		cmocka_set_test_filter(argv[1]);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_overwrite_full_pool_crash),
		cmocka_unit_test(test_names_drop_all),
		cmocka_unit_test(test_names_drop_random),
		cmocka_unit_test(test_names_tear),
		cmocka_unit_test(test_data_drop_all),
		cmocka_unit_test(test_data_drop_random),
		cmocka_unit_test(test_data_tear),
		cmocka_unit_test(test_enospc_drop_all),
		cmocka_unit_test(test_enospc_drop_random),
		cmocka_unit_test(test_enospc_tear),
		cmocka_unit_test(test_snapshots_drop_all),
		cmocka_unit_test(test_snapshots_drop_random),
		cmocka_unit_test(test_snapshots_tear),
		cmocka_unit_test(test_names_meta_nospc),
		cmocka_unit_test(test_data_meta_nospc),
		cmocka_unit_test(test_enospc_meta_nospc),
		cmocka_unit_test(test_snapshots_meta_nospc),
		cmocka_unit_test(test_names_eio),
		cmocka_unit_test(test_data_eio),
		cmocka_unit_test(test_enospc_eio),
		cmocka_unit_test(test_snapshots_eio),
	};
	return tu_exit(cmocka_run_group_tests(tests, group_setup, group_teardown));
}
