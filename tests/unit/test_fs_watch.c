/*
 * Pre-modification events at the fs API (src/fs/watch.c and the check in
 * op_begin): one event before the first modification of a marked file,
 * one-shot, file and subtree marks, every kind, blocking writers held
 * until the ack (and only they), timeouts, a watch freed while a writer
 * waits, permission refusal, and names the subscriber could not list.
 */
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/xattr.h>

#include "common/fsfix.h"
#include "common/testutil.h"
#include "reflinkfs/fs.h"
#include "reflinkfs/journal.h"

#ifndef FALLOC_FL_KEEP_SIZE
#define FALLOC_FL_KEEP_SIZE 0x01
#endif

static const struct rfs_ctx g_root = {.uid = 0, .gid = 0, .pid = 1, .umask = 022};
static const struct rfs_ctx g_user = {.uid = 1000, .gid = 1000, .pid = 2, .umask = 022};

static rfs_fs *fresh(void)
{
	return fx_fresh(64u << 20, 0);
}

static rfs_nodeid mkfile(rfs_fs *fs, rfs_nodeid dir, const char *name, const char *data)
{
	rfs_nodeid n;
	struct stat st;
	OK(rfs_fs_create(fs, &g_root, dir, name, 0644, &n, &st));
	if (data)
		RC(rfs_fs_write(fs, n, data, strlen(data), 0), (long)strlen(data));
	return n;
}

static rfs_nodeid mkdir_as(rfs_fs *fs, rfs_nodeid dir, const char *name, uint32_t uid,
			   mode_t mode)
{
	rfs_nodeid n;
	struct stat st, in = {.st_mode = mode, .st_uid = uid, .st_gid = uid};
	OK(rfs_fs_mkdir(fs, &g_root, dir, name, mode, &n, &st));
	OK(rfs_fs_setattr(fs, n, &in, RFS_SET_MODE | RFS_SET_UID | RFS_SET_GID, NULL));
	return n;
}

static uint64_t ino_of(rfs_fs *fs, rfs_nodeid n)
{
	struct stat st;
	OK(rfs_fs_getattr(fs, n, &st));
	return st.st_ino;
}

/* Mark node with who, check that the flush list holds `want` (0: none
 * expected), arm; returns the mark id. */
static uint64_t mark(rfs_watch *w, const struct rfs_ctx *who, rfs_nodeid node, rfs_nodeid want)
{
	uint64_t id = 0;
	rfs_nodeid *fl = NULL;
	size_t nfl = 0;
	OK(rfs_fs_watch_mark(w, who, node, &id, &fl, &nfl));
	bool found = false;
	for (size_t i = 0; i < nfl; i++)
		found |= fl[i] == want;
	CHECK(!want || found, "flush list (%zu ids) lacks node %" PRIu64, nfl, (uint64_t)want);
	free(fl);
	OK(rfs_fs_watch_arm(w, id));
	return id;
}

static bool readable(rfs_watch *w)
{
	struct pollfd p = {.fd = rfs_fs_watch_fd(w), .events = POLLIN};
	return poll(&p, 1, 0) == 1;
}

/* The next event, which must be there, with this kind and path. */
static struct rfs_watch_event *expect(rfs_watch *w, int kind, const char *path)
{
	static struct rfs_watch_event ev;
	CHECK(readable(w), "eventfd not readable, expected a %s event for \"%s\"",
	      rfs_premod_kind_name(kind), path);
	OK(rfs_fs_watch_next(w, &ev));
	CHECK(ev.kind == kind && strcmp(ev.path, path) == 0,
	      "got %s \"%s\", expected %s \"%s\"", rfs_premod_kind_name(ev.kind), ev.path,
	      rfs_premod_kind_name(kind), path);
	return &ev;
}

static void expect_none(rfs_watch *w)
{
	struct rfs_watch_event ev;
	CHECK(!readable(w), "eventfd readable with no event expected");
	int ret = rfs_fs_watch_next(w, &ev);
	CHECK(ret == -EAGAIN, "unexpected event %s \"%s\" (%d)", rfs_premod_kind_name(ev.kind),
	      ev.path, ret);
}

static void check_data(rfs_fs *fs, rfs_nodeid n, const char *want)
{
	char buf[64] = {0};
	RC(rfs_fs_read(fs, n, buf, sizeof(buf) - 1, 0), (long)strlen(want));
	CHECK(strcmp(buf, want) == 0, "content \"%s\", expected \"%s\"", buf, want);
}

/* ---- non-blocking ------------------------------------------------------------ */

static void test_file_mark_once(void **state)
{
	(void)state;
	rfs_fs *fs = fresh();
	rfs_nodeid f = mkfile(fs, RFS_ROOT_NODE, "f", "old");
	rfs_watch *w;
	OK(rfs_fs_watch_new(fs, &g_root, 0, 0, &w));
	uint64_t m = mark(w, &g_root, f, f);
	expect_none(w);
	RC(rfs_fs_write(fs, f, "new", 3, 0), 3);
	struct rfs_watch_event *ev = expect(w, RFS_PREMOD_WRITE, "");
	EQ_U64(ev->mark, m);
	EQ_U64(ev->ino, ino_of(fs, f));
	CHECK(!ev->blocking, "non-blocking watch gave a blocking event");
	RC(rfs_fs_watch_ack(w, ev->id), -ENOENT);
	/* One-shot: the next changes of the file say nothing. */
	RC(rfs_fs_write(fs, f, "xyz", 3, 0), 3);
	struct stat in = {.st_mode = 0600};
	OK(rfs_fs_setattr(fs, f, &in, RFS_SET_MODE, NULL));
	expect_none(w);
	/* Marked again: a new round, same mark. */
	uint64_t m2 = mark(w, &g_root, f, f);
	EQ_U64(m2, m);
	OK(rfs_fs_setattr(fs, f, &in, RFS_SET_MODE, NULL));
	expect(w, RFS_PREMOD_ATTR, "");
	struct rfs_watch_stat st;
	rfs_fs_watch_stat(w, &st);
	EQ_U64(st.events, 2);
	EQ_U64(st.marks, 1);
	OK(rfs_fs_watch_unmark(w, m));
	RC(rfs_fs_watch_unmark(w, m), -ENOENT);
	RC(rfs_fs_watch_arm(w, m), -ENOENT);
	OK(rfs_fs_watch_arm(w, mark(w, &g_root, f, f)));
	rfs_fs_watch_free(w);
	/* The watch is gone: writes go on without a check. */
	RC(rfs_fs_write(fs, f, "abc", 3, 0), 3);
	rfs_fs_forget(fs, f, 1);
	OK(rfs_fs_close(fs));
}

/* A file open before the mark (its lookup references gone, only the open
 * handle left) is listed for flushing and reported. */
static void test_open_before_mark(void **state)
{
	(void)state;
	rfs_fs *fs = fresh();
	rfs_nodeid d = mkdir_as(fs, RFS_ROOT_NODE, "d", 0, 0755);
	rfs_nodeid f = mkfile(fs, d, "f", "old");
	OK(rfs_fs_open_node(fs, f));
	rfs_fs_forget(fs, f, 1);
	rfs_watch *w;
	OK(rfs_fs_watch_new(fs, &g_root, 0, 0, &w));
	mark(w, &g_root, d, f);
	RC(rfs_fs_write(fs, f, "new", 3, 0), 3);
	struct rfs_watch_event *ev = expect(w, RFS_PREMOD_WRITE, "f");
	EQ_U64(ev->ino, ino_of(fs, f));
	rfs_fs_watch_free(w);
	rfs_fs_release(fs, f);
	rfs_fs_forget(fs, d, 1);
	OK(rfs_fs_close(fs));
}

static void test_subtree(void **state)
{
	(void)state;
	rfs_fs *fs = fresh();
	rfs_nodeid a = mkdir_as(fs, RFS_ROOT_NODE, "a", 0, 0755);
	rfs_nodeid b = mkdir_as(fs, a, "b", 0, 0755);
	rfs_nodeid c = mkdir_as(fs, b, "c", 0, 0755);
	rfs_nodeid f1 = mkfile(fs, c, "f1", "one");
	rfs_nodeid x = mkdir_as(fs, RFS_ROOT_NODE, "x", 0, 0755);
	rfs_nodeid out = mkfile(fs, x, "out", "o");
	rfs_watch *w;
	OK(rfs_fs_watch_new(fs, &g_root, 0, 0, &w));
	mark(w, &g_root, a, f1);
	/* Created after the mark: covered like any other file. */
	rfs_nodeid nf = mkfile(fs, b, "new", NULL);
	expect_none(w); /* creating is no modification of a file */
	RC(rfs_fs_write(fs, nf, "n", 1, 0), 1);
	expect(w, RFS_PREMOD_WRITE, "b/new");
	RC(rfs_fs_write(fs, f1, "1", 1, 0), 1);
	EQ_U64(expect(w, RFS_PREMOD_WRITE, "b/c/f1")->ino, ino_of(fs, f1));
	/* Outside the subtree, and directories themselves: nothing. */
	RC(rfs_fs_write(fs, out, "p", 1, 0), 1);
	struct stat in = {.st_mode = 0700};
	OK(rfs_fs_setattr(fs, c, &in, RFS_SET_MODE, NULL));
	expect_none(w);
	rfs_fs_watch_free(w);
	rfs_nodeid all[] = {a, b, c, f1, x, out, nf};
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		rfs_fs_forget(fs, all[i], 1);
	OK(rfs_fs_close(fs));
}

static void test_kinds(void **state)
{
	(void)state;
	rfs_fs *fs = fresh();
	rfs_nodeid d = mkdir_as(fs, RFS_ROOT_NODE, "d", 0, 0755);
	rfs_nodeid fw = mkfile(fs, d, "w", "w"), ft = mkfile(fs, d, "t", "tt"),
		   fa = mkfile(fs, d, "a", "a"), fx = mkfile(fs, d, "x", "x"),
		   ff = mkfile(fs, d, "fa", "f"), fr = mkfile(fs, d, "r", "r"),
		   fs1 = mkfile(fs, d, "s", "s"), fd = mkfile(fs, d, "dst", "d"),
		   fu = mkfile(fs, d, "u", "u"), fc = mkfile(fs, d, "c", "c"),
		   fk = mkfile(fs, d, "k", "k");
	rfs_nodeid src = mkfile(fs, RFS_ROOT_NODE, "src", "source data");
	rfs_watch *w;
	OK(rfs_fs_watch_new(fs, &g_root, 0, 0, &w));
	mark(w, &g_root, d, 0);

	RC(rfs_fs_write(fs, fw, "W", 1, 0), 1);
	expect(w, RFS_PREMOD_WRITE, "w");
	struct stat in = {.st_size = 1, .st_mode = 0600};
	OK(rfs_fs_setattr(fs, ft, &in, RFS_SET_SIZE, NULL));
	expect(w, RFS_PREMOD_TRUNCATE, "t");
	OK(rfs_fs_setattr(fs, fa, &in, RFS_SET_MODE, NULL));
	expect(w, RFS_PREMOD_ATTR, "a");
	OK(rfs_fs_setxattr(fs, &g_root, fx, "user.k", "v", 1, 0));
	expect(w, RFS_PREMOD_XATTR, "x");
	OK(rfs_fs_fallocate(fs, ff, FALLOC_FL_KEEP_SIZE, 0, 8192));
	expect(w, RFS_PREMOD_FALLOCATE, "fa");
	/* Renamed: reported under the name it had. */
	OK(rfs_fs_rename(fs, &g_root, d, "r", d, "r2", 0));
	EQ_U64(expect(w, RFS_PREMOD_RENAME, "r")->ino, ino_of(fs, fr));
	/* Replaced by a rename: the moved file and the replaced one. */
	uint64_t dst_ino = ino_of(fs, fd);
	OK(rfs_fs_rename(fs, &g_root, d, "s", d, "dst", 0));
	EQ_U64(expect(w, RFS_PREMOD_RENAME, "s")->ino, ino_of(fs, fs1));
	EQ_U64(expect(w, RFS_PREMOD_RENAME, "dst")->ino, dst_ino);
	uint64_t u_ino = ino_of(fs, fu);
	OK(rfs_fs_unlink(fs, d, "u"));
	EQ_U64(expect(w, RFS_PREMOD_UNLINK, "u")->ino, u_ino);
	/* Cloned onto: the destination only (src is outside anyway). */
	RC(rfs_fs_clone_range(fs, src, 0, fc, 0, 4), 4);
	expect(w, RFS_PREMOD_CLONE, "c");
	OK(rfs_fs_clone_file(fs, src, fk));
	expect(w, RFS_PREMOD_CLONE, "k");
	expect_none(w);
	/* Every one of them once only. */
	RC(rfs_fs_write(fs, fw, "W", 1, 0), 1);
	OK(rfs_fs_rename(fs, &g_root, d, "r2", d, "r3", 0));
	expect_none(w);
	struct rfs_watch_stat st;
	rfs_fs_watch_stat(w, &st);
	EQ_U64(st.events, 11);
	rfs_fs_watch_free(w);
	rfs_nodeid all[] = {d, fw, ft, fa, fx, ff, fr, fs1, fd, fu, fc, fk, src};
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		rfs_fs_forget(fs, all[i], 1);
	OK(rfs_fs_close(fs));
}

/* Hard-linked files: a file mark covers them through every name; a
 * subtree mark only through the name an unlink or rename uses. */
/* A hard-linked file (link table, no parent node) is covered by a subtree
 * mark when any of its names is below it, for every kind of modification;
 * the path is its name below that mark.  Names all outside: no event. */
static void test_hardlink(void **state)
{
	(void)state;
	rfs_fs *fs = fresh();
	rfs_nodeid a = mkdir_as(fs, RFS_ROOT_NODE, "a", 0, 0755);
	rfs_nodeid b = mkdir_as(fs, RFS_ROOT_NODE, "b", 0, 0755);
	rfs_nodeid s = mkdir_as(fs, a, "s", 0, 0755);
	rfs_nodeid x = mkdir_as(fs, RFS_ROOT_NODE, "x", 0, 0755);
	rfs_nodeid f = mkfile(fs, a, "f", "data"), l = f; /* one inode, one node id */
	rfs_nodeid g = mkfile(fs, x, "g", "gg");           /* x/g and a/s/g2 */
	rfs_nodeid o = mkfile(fs, x, "o", "oo");           /* x/o and b/o2 */
	struct stat st;
	OK(rfs_fs_link(fs, f, b, "l", &st));
	OK(rfs_fs_link(fs, g, s, "g2", &st));
	OK(rfs_fs_link(fs, o, b, "o2", &st));
	rfs_watch *w;
	OK(rfs_fs_watch_new(fs, &g_root, 0, 0, &w));
	uint64_t ma = mark(w, &g_root, a, 0);
	/* Written through its node (by number): its name a/f is below. */
	RC(rfs_fs_write(fs, f, "x", 1, 0), 1);
	struct rfs_watch_event *ev = expect(w, RFS_PREMOD_WRITE, "f");
	EQ_U64(ev->ino, ino_of(fs, f));
	EQ_U64(ev->mark, ma);
	CHECK(!ev->cut, "short path reported as cut");
	RC(rfs_fs_write(fs, f, "y", 1, 1), 1);
	expect_none(w); /* one-shot */
	/* Its only name below the mark is a/s/g2, two levels down. */
	OK(rfs_fs_setxattr(fs, &g_root, g, "user.k", "v", 1, 0));
	expect(w, RFS_PREMOD_XATTR, "s/g2");
	/* x/o and b/o2: no name below a. */
	RC(rfs_fs_write(fs, o, "p", 1, 0), 1);
	struct stat in = {.st_mode = 0600};
	OK(rfs_fs_setattr(fs, o, &in, RFS_SET_MODE, NULL));
	expect_none(w);
	/* A second mark, on b: the same file again, under its name there. */
	uint64_t mb = mark(w, &g_root, b, 0);
	OK(rfs_fs_setattr(fs, f, &in, RFS_SET_MODE, NULL));
	EQ_U64(expect(w, RFS_PREMOD_ATTR, "l")->mark, mb);
	RC(rfs_fs_write(fs, o, "q", 1, 0), 1);
	expect(w, RFS_PREMOD_WRITE, "o2");
	/* Its name below the mark removed: the cached names follow. */
	OK(rfs_fs_watch_arm(w, ma));
	OK(rfs_fs_unlink(fs, a, "f"));
	EQ_U64(expect(w, RFS_PREMOD_UNLINK, "f")->ino, ino_of(fs, l));
	OK(rfs_fs_watch_arm(w, ma));
	RC(rfs_fs_write(fs, l, "z", 1, 0), 1);
	expect_none(w); /* only b/l is left, and mark b has reported it */
	rfs_watch *w2;
	OK(rfs_fs_watch_new(fs, &g_root, 0, 0, &w2));
	mark(w2, &g_root, l, l);
	RC(rfs_fs_write(fs, l, "y", 1, 0), 1);
	expect(w2, RFS_PREMOD_WRITE, "");
	rfs_fs_watch_free(w2);
	rfs_fs_watch_free(w);
	rfs_fs_forget(fs, f, 2);
	rfs_fs_forget(fs, g, 2);
	rfs_fs_forget(fs, o, 2);
	rfs_nodeid dirs[] = {a, b, s, x};
	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++)
		rfs_fs_forget(fs, dirs[i], 1);
	OK(rfs_fs_close(fs));
}

/* A path longer than an event holds: the event comes, cut at a '/' to
 * the directory below the mark that holds the file, and says so. */
static void test_long_path(void **state)
{
	(void)state;
	rfs_fs *fs = fresh();
	rfs_nodeid d = mkdir_as(fs, RFS_ROOT_NODE, "d", 0, 0755);
	enum { LEVELS = 20, NAMELEN = 240 };
	rfs_nodeid dirs[LEVELS + 1];
	char full[LEVELS * (NAMELEN + 1) + 8] = "";
	dirs[0] = d;
	for (int i = 1; i <= LEVELS; i++) {
		char name[NAMELEN + 1];
		memset(name, 'a' + i % 26, NAMELEN);
		name[NAMELEN] = 0;
		dirs[i] = mkdir_as(fs, dirs[i - 1], name, 0, 0755);
		strcat(full, name);
		strcat(full, "/");
	}
	rfs_nodeid f = mkfile(fs, dirs[LEVELS], "f", "x");
	strcat(full, "f");
	CHECK(strlen(full) >= RFS_WATCH_PATH_MAX, "test path too short: %zu", strlen(full));
	rfs_watch *w;
	OK(rfs_fs_watch_new(fs, &g_root, 0, 0, &w));
	mark(w, &g_root, d, f);
	RC(rfs_fs_write(fs, f, "y", 1, 0), 1);
	struct rfs_watch_event ev;
	CHECK(readable(w), "no event for a file whose path is %zu bytes", strlen(full));
	OK(rfs_fs_watch_next(w, &ev));
	size_t pl = strlen(ev.path);
	CHECK(ev.cut, "a path of %zu bytes given as not cut", strlen(full));
	CHECK(ev.kind == RFS_PREMOD_WRITE && ev.ino == ino_of(fs, f), "kind %d", ev.kind);
	CHECK(pl > 0 && pl < RFS_WATCH_PATH_MAX && strncmp(full, ev.path, pl) == 0 &&
		      full[pl] == '/',
	      "cut path (%zu bytes) is no directory prefix of the path", pl);
	/* The longest such prefix that fits. */
	CHECK(pl + 1 + NAMELEN + 1 > RFS_WATCH_PATH_MAX, "cut too short: %zu", pl);
	struct rfs_watch_stat st;
	rfs_fs_watch_stat(w, &st);
	EQ_U64(st.cut, 1);
	expect_none(w);
	rfs_fs_watch_free(w);
	rfs_fs_forget(fs, f, 1);
	for (int i = 0; i <= LEVELS; i++)
		rfs_fs_forget(fs, dirs[i], 1);
	OK(rfs_fs_close(fs));
}

/* A subscriber that does not read: at the queue's limit the watch
 * disarms its marks and says so with one overflow event, never a silent
 * loss; arming again starts over. */
static void test_queue_overflow(void **state)
{
	(void)state;
	rfs_fs *fs = fresh();
	rfs_nodeid d = mkdir_as(fs, RFS_ROOT_NODE, "d", 0, 0755);
	rfs_nodeid f[4];
	for (int i = 0; i < 4; i++) {
		char name[16];
		snprintf(name, sizeof(name), "f%d", i);
		f[i] = mkfile(fs, d, name, "x");
	}
	rfs_nodeid solo = mkfile(fs, RFS_ROOT_NODE, "solo", "s");
	rfs_watch *w;
	OK(rfs_fs_watch_new(fs, &g_root, 0, 0, &w));
	rfs_fs_watch_limit(w, 2);
	uint64_t md = mark(w, &g_root, d, 0), ms = mark(w, &g_root, solo, solo);
	for (int i = 0; i < 4; i++)
		RC(rfs_fs_write(fs, f[i], "y", 1, 0), 1);
	RC(rfs_fs_write(fs, solo, "t", 1, 0), 1); /* its mark is disarmed too */
	struct rfs_watch_stat st;
	rfs_fs_watch_stat(w, &st);
	EQ_U64(st.events, 2);
	EQ_U64(st.overflows, 1);
	expect(w, RFS_PREMOD_WRITE, "f0");
	expect(w, RFS_PREMOD_WRITE, "f1");
	struct rfs_watch_event *ev = expect(w, RFS_PREMOD_OVERFLOW, "");
	EQ_U64(ev->mark, 0);
	EQ_U64(ev->ino, 0);
	CHECK(strcmp(rfs_premod_kind_name(RFS_PREMOD_OVERFLOW), "overflow") == 0, "kind name");
	expect_none(w);
	/* Armed again, after reading: every file reports afresh. */
	OK(rfs_fs_watch_arm(w, md));
	OK(rfs_fs_watch_arm(w, ms));
	RC(rfs_fs_write(fs, f[3], "z", 1, 0), 1);
	RC(rfs_fs_write(fs, solo, "u", 1, 0), 1);
	expect(w, RFS_PREMOD_WRITE, "f3");
	expect(w, RFS_PREMOD_WRITE, "");
	expect_none(w);
	rfs_fs_watch_free(w);
	for (int i = 0; i < 4; i++)
		rfs_fs_forget(fs, f[i], 1);
	rfs_fs_forget(fs, solo, 1);
	rfs_fs_forget(fs, d, 1);
	OK(rfs_fs_close(fs));
}

/* A non-root subscriber and a hard link whose name below the mark lies
 * in directories the kernel has not looked up: they are found by number
 * for the permission check; a name it may not list gives no event. */
static void test_hardlink_user(void **state)
{
	(void)state;
	rfs_fs *fs = fresh();
	rfs_nodeid a = mkdir_as(fs, RFS_ROOT_NODE, "a", 1000, 0755);
	rfs_nodeid s = mkdir_as(fs, a, "s", 0, 0755);
	rfs_nodeid p = mkdir_as(fs, a, "p", 0, 0700);
	rfs_nodeid x = mkdir_as(fs, RFS_ROOT_NODE, "x", 0, 0755);
	rfs_nodeid f1 = mkfile(fs, x, "f1", "1"), f2 = mkfile(fs, x, "f2", "2");
	struct stat st;
	OK(rfs_fs_link(fs, f1, s, "f1b", &st));
	OK(rfs_fs_link(fs, f2, p, "f2b", &st));
	/* The kernel forgets s and p. */
	rfs_fs_forget(fs, s, 1);
	rfs_fs_forget(fs, p, 1);
	CHECK(rfs_fs_getattr(fs, s, &st) == -ESTALE, "directory s still has a node");
	rfs_watch *w;
	OK(rfs_fs_watch_new(fs, &g_user, 0, 0, &w));
	mark(w, &g_user, a, 0);
	RC(rfs_fs_write(fs, f1, "x", 1, 0), 1);
	expect(w, RFS_PREMOD_WRITE, "s/f1b");
	RC(rfs_fs_write(fs, f2, "y", 1, 0), 1);
	expect_none(w);
	struct rfs_watch_stat ws;
	rfs_fs_watch_stat(w, &ws);
	EQ_U64(ws.hidden, 1);
	/* The lookups for the check were given back. */
	CHECK(rfs_fs_getattr(fs, s, &st) == -ESTALE, "directory s kept a node");
	rfs_fs_watch_free(w);
	rfs_fs_forget(fs, f1, 2);
	rfs_fs_forget(fs, f2, 2);
	rfs_fs_forget(fs, a, 1);
	rfs_fs_forget(fs, x, 1);
	OK(rfs_fs_close(fs));
}

/* An operation that op_end runs again after a commit made room
 * (OP_RETRY) gives its event once, whether the retry succeeds or fails. */
static void test_retry_one_event(void **state)
{
	(void)state;
	rfs_fs *fs = fresh();
	rfs_nodeid f = mkfile(fs, RFS_ROOT_NODE, "f", "old");
	rfs_nodeid h = mkfile(fs, RFS_ROOT_NODE, "h", "hhh");
	/* An xattr moves their inline data into a block: a write to them
	 * then allocates one (a write to inline data allocates nothing). */
	OK(rfs_fs_setxattr(fs, &g_root, f, "user.k", "v", 1, 0));
	OK(rfs_fs_setxattr(fs, &g_root, h, "user.k", "v", 1, 0));
	rfs_nodeid g = mkfile(fs, RFS_ROOT_NODE, "g", NULL);
	static char blk[64 << 10];
	memset(blk, 'g', sizeof(blk));
	RC(rfs_fs_write(fs, g, blk, sizeof(blk), 0), (long)sizeof(blk));
	OK(rfs_fs_sync(fs));
	/* Frees pending in the running transaction: what lets op_end
	 * commit and retry. */
	rfs_fs_forget(fs, g, 1);
	OK(rfs_fs_unlink(fs, RFS_ROOT_NODE, "g"));
	rfs_watch *w;
	OK(rfs_fs_watch_new(fs, &g_root, 0, 0, &w));
	mark(w, &g_root, f, f);
	mark(w, &g_root, h, h);
	/* The first attempt's data allocation fails, the retry's succeeds. */
	rfs_fs_inject_alloc_nospc(fs, 1);
	RC(rfs_fs_write(fs, f, "new", 3, 0), 3);
	expect(w, RFS_PREMOD_WRITE, "");
	expect_none(w);
	check_data(fs, f, "new");
	/* Both attempts fail: still one event, and the error. */
	rfs_fs_inject_alloc_nospc(fs, 2);
	RC(rfs_fs_write(fs, h, "HHH", 3, 0), -ENOSPC);
	rfs_fs_inject_alloc_nospc(fs, 0);
	expect(w, RFS_PREMOD_WRITE, "");
	expect_none(w);
	check_data(fs, h, "hhh");
	struct rfs_watch_stat st;
	rfs_fs_watch_stat(w, &st);
	EQ_U64(st.events, 2);
	rfs_fs_watch_free(w);
	rfs_fs_forget(fs, f, 1);
	rfs_fs_forget(fs, h, 1);
	OK(rfs_fs_close(fs));
}

struct arm_at {
	rfs_watch *w;
	uint64_t mark;
	int ret;
};

static void arm_now(void *arg)
{
	struct arm_at *a = arg;
	a->ret = rfs_fs_watch_arm(a->w, a->mark);
}

/* The race of an arm with an operation under way: the operation has read
 * the watch state (no armed mark) but not taken the write lock yet when
 * the mark is armed.  It must see the new generation under the lock and
 * be checked: the modification is reported. */
static void test_arm_race(void **state)
{
	(void)state;
	rfs_fs *fs = fresh();
	rfs_nodeid f = mkfile(fs, RFS_ROOT_NODE, "f", "old");
	rfs_watch *w;
	OK(rfs_fs_watch_new(fs, &g_root, 0, 0, &w));
	struct arm_at a = {w, 0, -1};
	rfs_nodeid *fl;
	size_t nfl;
	OK(rfs_fs_watch_mark(w, &g_root, f, &a.mark, &fl, &nfl));
	free(fl);
	rfs_fs_set_premod_hook(fs, arm_now, &a);
	RC(rfs_fs_write(fs, f, "new", 3, 0), 3);
	OK(a.ret);
	EQ_U64(expect(w, RFS_PREMOD_WRITE, "")->ino, ino_of(fs, f));
	expect_none(w);
	rfs_fs_watch_free(w);
	rfs_fs_forget(fs, f, 1);
	OK(rfs_fs_close(fs));
}

/* The flush list: the regular files below the mark that the kernel holds
 * (looked up or open), not directories, not files it forgot. */
static void test_flush_list(void **state)
{
	(void)state;
	rfs_fs *fs = fresh();
	rfs_nodeid d = mkdir_as(fs, RFS_ROOT_NODE, "d", 0, 0755);
	rfs_nodeid sub = mkdir_as(fs, d, "sub", 0, 0755);
	rfs_nodeid held = mkfile(fs, sub, "held", "h");
	rfs_nodeid open = mkfile(fs, d, "open", "o");
	rfs_nodeid gone = mkfile(fs, d, "gone", "g");
	rfs_nodeid outside = mkfile(fs, RFS_ROOT_NODE, "outside", "x");
	/* Hard-linked (no node chain): d/sub/hl and hl2 outside; ol and
	 * ol2 both outside. */
	rfs_nodeid hl = mkfile(fs, RFS_ROOT_NODE, "hl2", "l");
	rfs_nodeid ol = mkfile(fs, RFS_ROOT_NODE, "ol", "m");
	struct stat lst;
	OK(rfs_fs_link(fs, hl, sub, "hl", &lst));
	OK(rfs_fs_link(fs, ol, RFS_ROOT_NODE, "ol2", &lst));
	OK(rfs_fs_open_node(fs, open));
	rfs_fs_forget(fs, open, 1);
	rfs_fs_forget(fs, gone, 1);
	rfs_watch *w;
	OK(rfs_fs_watch_new(fs, &g_root, 0, 0, &w));
	uint64_t id;
	rfs_nodeid *fl;
	size_t nfl;
	OK(rfs_fs_watch_mark(w, &g_root, d, &id, &fl, &nfl));
	bool has_held = false, has_open = false, has_hl = false;
	for (size_t i = 0; i < nfl; i++) {
		has_held |= fl[i] == held;
		has_open |= fl[i] == open;
		has_hl |= fl[i] == hl;
		CHECK(fl[i] != gone && fl[i] != outside && fl[i] != sub && fl[i] != d &&
			      fl[i] != ol,
		      "flush list holds node %" PRIu64, (uint64_t)fl[i]);
	}
	CHECK(has_held && has_open && has_hl && nfl == 3,
	      "flush list: %zu ids, held %d open %d hard-linked %d", nfl, has_held, has_open,
	      has_hl);
	free(fl);
	/* Not armed yet: nothing is reported. */
	RC(rfs_fs_write(fs, held, "H", 1, 0), 1);
	expect_none(w);
	OK(rfs_fs_watch_arm(w, id));
	RC(rfs_fs_write(fs, held, "H", 1, 0), 1);
	expect(w, RFS_PREMOD_WRITE, "sub/held");
	rfs_fs_watch_free(w);
	rfs_fs_release(fs, open);
	rfs_nodeid all[] = {d, sub, held, outside};
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		rfs_fs_forget(fs, all[i], 1);
	rfs_fs_forget(fs, hl, 2);
	rfs_fs_forget(fs, ol, 2);
	OK(rfs_fs_close(fs));
}

/* A snapshot below a marked directory is covered: its files' node chain
 * runs through the snapshot's root. */
static void test_snapshot_below(void **state)
{
	(void)state;
	rfs_fs *fs = fresh();
	rfs_nodeid top = mkdir_as(fs, RFS_ROOT_NODE, "top", 0, 0755);
	rfs_nodeid src = mkdir_as(fs, top, "src", 0, 0755);
	rfs_nodeid f = mkfile(fs, src, "f", "orig");
	rfs_nodeid snap, sf;
	struct stat st;
	OK(rfs_fs_snapshot(fs, src, top, "snap", 0, &snap, &st));
	OK(rfs_fs_lookup(fs, snap, "f", &sf, &st));
	CHECK(sf != f, "the snapshot's file is another inode");
	rfs_watch *w;
	OK(rfs_fs_watch_new(fs, &g_root, 0, 0, &w));
	mark(w, &g_root, top, sf);
	RC(rfs_fs_write(fs, sf, "snap", 4, 0), 4);
	EQ_U64(expect(w, RFS_PREMOD_WRITE, "snap/f")->ino, st.st_ino);
	RC(rfs_fs_write(fs, f, "live", 4, 0), 4);
	expect(w, RFS_PREMOD_WRITE, "src/f");
	rfs_fs_watch_free(w);
	rfs_nodeid all[] = {top, src, f, snap, sf};
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		rfs_fs_forget(fs, all[i], 1);
	OK(rfs_fs_close(fs));
}

/* ---- permissions --------------------------------------------------------------- */

static void test_mark_permission(void **state)
{
	(void)state;
	rfs_fs *fs = fresh();
	rfs_nodeid mine = mkdir_as(fs, RFS_ROOT_NODE, "mine", 1000, 0755);
	rfs_nodeid theirs = mkdir_as(fs, RFS_ROOT_NODE, "theirs", 0, 0755);
	rfs_nodeid f = mkfile(fs, theirs, "f", "x");
	rfs_watch *w;
	OK(rfs_fs_watch_new(fs, &g_user, 0, 0, &w));
	uint64_t id;
	rfs_nodeid *fl;
	size_t nfl;
	RC(rfs_fs_watch_mark(w, &g_user, theirs, &id, &fl, &nfl), -EACCES);
	RC(rfs_fs_watch_mark(w, &g_user, f, &id, &fl, &nfl), -EACCES);
	CHECK(fl == NULL && nfl == 0, "refused mark left a flush list");
	/* Group write (supplementary group) is enough, as for a write. */
	struct stat in = {.st_mode = 0664, .st_gid = 77};
	OK(rfs_fs_setattr(fs, f, &in, RFS_SET_MODE | RFS_SET_GID, NULL));
	uint32_t groups[] = {77};
	struct rfs_ctx grp = g_user;
	grp.groups = groups;
	grp.ngroups = 1;
	mark(w, &grp, f, f);
	mark(w, &g_user, mine, 0);
	mark(w, &g_root, theirs, f);
	struct rfs_watch_stat st;
	rfs_fs_watch_stat(w, &st);
	EQ_U64(st.marks, 3);
	rfs_fs_watch_free(w);
	rfs_fs_forget(fs, f, 1);
	rfs_fs_forget(fs, mine, 1);
	rfs_fs_forget(fs, theirs, 1);
	OK(rfs_fs_close(fs));
}

/* A file below a directory the subscriber may not list gets no event;
 * its neighbours in listable directories do. */
static void test_unlisted_names(void **state)
{
	(void)state;
	rfs_fs *fs = fresh();
	rfs_nodeid p = mkdir_as(fs, RFS_ROOT_NODE, "p", 1000, 0755);
	rfs_nodeid sec = mkdir_as(fs, p, "secret", 0, 0711); /* search, no read */
	rfs_nodeid deep = mkdir_as(fs, sec, "deep", 0, 0755);
	rfs_nodeid op = mkdir_as(fs, p, "open", 0, 0755);
	rfs_nodeid hid = mkfile(fs, deep, "hidden-name", "h");
	rfs_nodeid vis = mkfile(fs, op, "f", "v");
	rfs_watch *w;
	OK(rfs_fs_watch_new(fs, &g_user, 0, 0, &w));
	mark(w, &g_user, p, vis);
	RC(rfs_fs_write(fs, hid, "H", 1, 0), 1);
	OK(rfs_fs_unlink(fs, deep, "hidden-name"));
	expect_none(w);
	RC(rfs_fs_write(fs, vis, "V", 1, 0), 1);
	expect(w, RFS_PREMOD_WRITE, "open/f");
	struct rfs_watch_stat st;
	rfs_fs_watch_stat(w, &st);
	EQ_U64(st.hidden, 2);
	EQ_U64(st.events, 1);
	/* Root's watch sees it. */
	rfs_watch *wr;
	OK(rfs_fs_watch_new(fs, &g_root, 0, 0, &wr));
	mark(wr, &g_root, p, 0);
	OK(rfs_fs_unlink(fs, op, "f"));
	expect(wr, RFS_PREMOD_UNLINK, "open/f");
	rfs_fs_watch_free(wr);
	rfs_fs_watch_free(w);
	rfs_nodeid all[] = {p, sec, deep, op, hid, vis};
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		rfs_fs_forget(fs, all[i], 1);
	OK(rfs_fs_close(fs));
}

/* ---- blocking ------------------------------------------------------------------ */

struct writer {
	rfs_fs *fs;
	rfs_nodeid node;
	const char *data;
	atomic_bool done;
	ssize_t ret;
};

static void *writer_main(void *arg)
{
	struct writer *wr = arg;
	wr->ret = rfs_fs_write(wr->fs, wr->node, wr->data, strlen(wr->data), 0);
	atomic_store(&wr->done, true);
	return NULL;
}

static void wait_event(rfs_watch *w, struct rfs_watch_event *ev)
{
	struct pollfd p = {.fd = rfs_fs_watch_fd(w), .events = POLLIN};
	/* Not a timing threshold: only keeps a broken check from hanging
	 * the test run (the event comes at once when it works). */
	CHECK(poll(&p, 1, 300000) == 1, "no event from a blocked writer");
	OK(rfs_fs_watch_next(w, ev));
}

/* Start writer wr in thread *t and wait for the event its write raises. */
static void start_writer(struct writer *wr, pthread_t *t, rfs_watch *w,
			 struct rfs_watch_event *ev)
{
	CHECK(pthread_create(t, NULL, writer_main, wr) == 0, "pthread_create");
	wait_event(w, ev);
}

/* A fresh pool with file f ("old") marked for a blocking watch *w of
 * root's that gives up waiting for an ack after timeout_ms. */
static rfs_fs *blocking_setup(uint32_t timeout_ms, rfs_nodeid *f, rfs_watch **w)
{
	rfs_fs *fs = fresh();
	*f = mkfile(fs, RFS_ROOT_NODE, "f", "old");
	OK(rfs_fs_watch_new(fs, &g_root, RFS_WATCH_BLOCKING, timeout_ms, w));
	mark(*w, &g_root, *f, *f);
	return fs;
}

static void test_blocking_ack(void **state)
{
	(void)state;
	rfs_fs *fs = fresh();
	rfs_nodeid f = mkfile(fs, RFS_ROOT_NODE, "f", "old");
	rfs_nodeid g = mkfile(fs, RFS_ROOT_NODE, "g", "g0");
	rfs_watch *w;
	/* Ten minutes: the ack, not the timeout, releases the writer. */
	OK(rfs_fs_watch_new(fs, &g_root, RFS_WATCH_BLOCKING, 600000, &w));
	mark(w, &g_root, f, f);
	struct writer wr = {.fs = fs, .node = f, .data = "new"};
	pthread_t t;
	struct rfs_watch_event ev;
	start_writer(&wr, &t, w, &ev);
	CHECK(ev.blocking && ev.kind == RFS_PREMOD_WRITE, "blocking write event expected");
	/* The writer waits holding no lock: another file is written, the
	 * pool commits, and the marked file still has its old content. */
	RC(rfs_fs_write(fs, g, "g1", 2, 0), 2);
	OK(rfs_fs_sync(fs));
	check_data(fs, f, "old");
	CHECK(!atomic_load(&wr.done), "the marked write finished before the ack");
	OK(rfs_fs_watch_ack(w, ev.id));
	RC(rfs_fs_watch_ack(w, ev.id), -ENOENT);
	CHECK(pthread_join(t, NULL) == 0, "pthread_join");
	EQ_U64(wr.ret, 3);
	check_data(fs, f, "new");
	struct rfs_watch_stat st;
	rfs_fs_watch_stat(w, &st);
	EQ_U64(st.acked, 1);
	EQ_U64(st.timed_out, 0);
	rfs_fs_watch_free(w);
	rfs_fs_forget(fs, f, 1);
	rfs_fs_forget(fs, g, 1);
	OK(rfs_fs_close(fs));
}

/* A second writer of a file whose event waits for its ack waits for the
 * same ack: nothing is stored before it. */
static void test_blocking_second_writer(void **state)
{
	(void)state;
	rfs_nodeid f;
	rfs_watch *w;
	rfs_fs *fs = blocking_setup(600000, &f, &w);
	struct writer a = {.fs = fs, .node = f, .data = "aaa"};
	struct writer b = {.fs = fs, .node = f, .data = "bbbbbb"};
	pthread_t ta, tb;
	struct rfs_watch_event ev;
	start_writer(&a, &ta, w, &ev);
	CHECK(pthread_create(&tb, NULL, writer_main, &b) == 0, "pthread_create");
	/* Both wait (no timing: the watch counts its waiting operations). */
	struct rfs_watch_stat st;
	do {
		sched_yield();
		rfs_fs_watch_stat(w, &st);
	} while (st.waiting < 2 && !atomic_load(&b.done));
	CHECK(!atomic_load(&b.done), "the second writer did not wait for the ack");
	check_data(fs, f, "old");
	expect_none(w); /* one event for the file */
	OK(rfs_fs_watch_ack(w, ev.id));
	CHECK(pthread_join(ta, NULL) == 0 && pthread_join(tb, NULL) == 0, "pthread_join");
	EQ_U64(a.ret, 3);
	EQ_U64(b.ret, 6);
	rfs_fs_watch_stat(w, &st);
	EQ_U64(st.waiting, 0);
	EQ_U64(st.acked, 1);
	EQ_U64(st.events, 1);
	rfs_fs_watch_free(w);
	rfs_fs_forget(fs, f, 1);
	OK(rfs_fs_close(fs));
}

/* rfs_fs_release_waits (the daemon stops: SIGTERM) lets a writer held
 * for a ten-minute ack go on at once, without counting a timeout, and
 * a later write to a marked file raises its event but does not wait. */
static void test_blocking_released(void **state)
{
	(void)state;
	rfs_nodeid f;
	rfs_watch *w;
	rfs_fs *fs = blocking_setup(600000, &f, &w);
	rfs_nodeid g = mkfile(fs, RFS_ROOT_NODE, "g", "g0");
	mark(w, &g_root, g, g);
	struct writer a = {.fs = fs, .node = f, .data = "aaa"};
	pthread_t ta;
	struct rfs_watch_event ev;
	start_writer(&a, &ta, w, &ev);
	struct rfs_watch_stat st;
	do {
		sched_yield();
		rfs_fs_watch_stat(w, &st);
	} while (st.waiting < 1);
	CHECK(!atomic_load(&a.done), "the writer did not wait for the ack");
	rfs_fs_release_waits(fs);
	CHECK(pthread_join(ta, NULL) == 0, "pthread_join");
	EQ_U64(a.ret, 3);
	check_data(fs, f, "aaa");
	/* After the release: the event still comes, the write goes on. */
	RC(rfs_fs_write(fs, g, "g1", 2, 0), 2);
	wait_event(w, &ev);
	CHECK(ev.blocking && ev.ino == g, "blocking event of g expected");
	check_data(fs, g, "g1");
	RC(rfs_fs_watch_ack(w, ev.id), -ENOENT);
	rfs_fs_watch_stat(w, &st);
	EQ_U64(st.waiting, 0);
	EQ_U64(st.timed_out, 0);
	rfs_fs_watch_free(w);
	rfs_fs_forget(fs, f, 1);
	rfs_fs_forget(fs, g, 1);
	OK(rfs_fs_close(fs));
}

struct cwaiter {
	rfs_fs *fs;
	int ret;
};

static void *cwaiter_main(void *arg)
{
	struct cwaiter *c = arg;
	/* Ten minutes and no change: only the release ends it. */
	c->ret = rfs_fs_changes_wait(c->fs, rfs_fs_changes_events(c->fs),
				     rfs_fs_changes_clock_ns() + 600ll * 1000000000ll, NULL, NULL);
	return NULL;
}

/* A RFS_IOC_CHANGES_WAIT in flight when the daemon stops ends as at its
 * deadline (whether it began before the release or after). */
static void test_changes_wait_released(void **state)
{
	(void)state;
	rfs_fs *fs = fresh();
	struct cwaiter c = {fs, 1};
	pthread_t t;
	CHECK(pthread_create(&t, NULL, cwaiter_main, &c) == 0, "pthread_create");
	rfs_fs_release_waits(fs);
	CHECK(pthread_join(t, NULL) == 0, "pthread_join");
	RC(c.ret, -ETIMEDOUT);
	OK(rfs_fs_close(fs));
}

static void test_blocking_timeout(void **state)
{
	(void)state;
	rfs_nodeid f;
	rfs_watch *w;
	rfs_fs *fs = blocking_setup(20, &f, &w);
	/* Nobody acknowledges: the write goes on after the timeout. */
	RC(rfs_fs_write(fs, f, "new", 3, 0), 3);
	check_data(fs, f, "new");
	struct rfs_watch_event ev;
	OK(rfs_fs_watch_next(w, &ev));
	CHECK(ev.blocking, "blocking event expected");
	RC(rfs_fs_watch_ack(w, ev.id), -ENOENT);
	struct rfs_watch_stat st;
	rfs_fs_watch_stat(w, &st);
	EQ_U64(st.timed_out, 1);
	EQ_U64(st.acked, 0);
	rfs_fs_watch_free(w);
	rfs_fs_forget(fs, f, 1);
	OK(rfs_fs_close(fs));
}

static void test_free_releases_writer(void **state)
{
	(void)state;
	rfs_nodeid f;
	rfs_watch *w;
	rfs_fs *fs = blocking_setup(600000, &f, &w);
	struct writer wr = {.fs = fs, .node = f, .data = "new"};
	pthread_t t;
	struct rfs_watch_event ev;
	start_writer(&wr, &t, w, &ev);
	CHECK(!atomic_load(&wr.done), "the marked write finished before the watch went");
	rfs_fs_watch_free(w); /* the subscriber dies */
	CHECK(pthread_join(t, NULL) == 0, "pthread_join");
	EQ_U64(wr.ret, 3);
	check_data(fs, f, "new");
	rfs_fs_forget(fs, f, 1);
	OK(rfs_fs_close(fs));
}

/* The wait hooks (rfs_fs_set_wait_hooks): a writer held for its ack
 * announces the wait on its own thread before it sleeps and its end
 * after, once; a write of an unmarked file announces nothing. */
struct hooks {
	atomic_int begins, ends;
	pthread_t begin_thread, end_thread; /* read after the writer's join */
};

static void hook_begin(void *arg)
{
	struct hooks *h = arg;
	h->begin_thread = pthread_self();
	atomic_fetch_add(&h->begins, 1);
}

static void hook_end(void *arg)
{
	struct hooks *h = arg;
	h->end_thread = pthread_self();
	atomic_fetch_add(&h->ends, 1);
}

static void test_blocking_wait_hooks(void **state)
{
	(void)state;
	rfs_nodeid f;
	rfs_watch *w;
	rfs_fs *fs = blocking_setup(600000, &f, &w);
	rfs_nodeid g = mkfile(fs, RFS_ROOT_NODE, "g", "g0");
	struct hooks h = {0};
	rfs_fs_set_wait_hooks(fs, hook_begin, hook_end, &h);
	RC(rfs_fs_write(fs, g, "g1", 2, 0), 2);
	EQ_U64(atomic_load(&h.begins), 0);
	EQ_U64(atomic_load(&h.ends), 0);
	struct writer wr = {.fs = fs, .node = f, .data = "new"};
	pthread_t t;
	struct rfs_watch_event ev;
	start_writer(&wr, &t, w, &ev);
	/* The event is out before the wait begins: no timing, the count. */
	while (atomic_load(&h.begins) == 0 && !atomic_load(&wr.done))
		sched_yield();
	CHECK(!atomic_load(&wr.done), "the marked write finished before the ack");
	EQ_U64(atomic_load(&h.begins), 1);
	EQ_U64(atomic_load(&h.ends), 0);
	OK(rfs_fs_watch_ack(w, ev.id));
	CHECK(pthread_join(t, NULL) == 0, "pthread_join");
	EQ_U64(wr.ret, 3);
	EQ_U64(atomic_load(&h.begins), 1);
	EQ_U64(atomic_load(&h.ends), 1);
	CHECK(pthread_equal(h.begin_thread, t) && pthread_equal(h.end_thread, t),
	      "a hook ran off the waiting writer's thread");
	rfs_fs_set_wait_hooks(fs, NULL, NULL, NULL);
	rfs_fs_watch_free(w);
	rfs_fs_forget(fs, f, 1);
	rfs_fs_forget(fs, g, 1);
	OK(rfs_fs_close(fs));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_file_mark_once, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_open_before_mark, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_subtree, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_kinds, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_hardlink, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_long_path, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_queue_overflow, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_hardlink_user, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_retry_one_event, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_arm_race, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_flush_list, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_below, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_mark_permission, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_unlisted_names, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_blocking_ack, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_blocking_second_writer, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_blocking_timeout, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_blocking_released, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_changes_wait_released, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_free_releases_writer, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_blocking_wait_hooks, fx_setup, fx_teardown),
	};
	return tu_exit(cmocka_run_group_tests(tests, NULL, NULL));
}
