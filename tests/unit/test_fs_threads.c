/*
 * Many threads on one filesystem at once, through include/reflinkfs/fs.h:
 * lookups ("." and ".." too), getattr, readdir (plain and plus), renames
 * of files and of directories (also RENAME_EXCHANGE), writes, reads,
 * truncates, unlinks, links, clones, mkdir/rmdir, xattrs, open-unlinked
 * files, find_ino, statfs and commits, all in the same few directories.
 * `make test` runs it under ASan, `make tsan` under ThreadSanitizer.
 *
 * Namespace: /d0../d3 (only ever exchanged with each other); below them
 * directory names s0..s3 (made in every d; renamed between the d's, over
 * each other when empty) and e0, e1 (made and removed); file names f0..f5
 * in the d and s/e directories.  Every thread also owns a private file
 * p<t>, made in d<k>/s<k> (k = t % 4), whose directory wanders; the
 * thread writes and verifies its content against a model throughout.
 *
 * Afterwards: every private file holds what its thread wrote, every name
 * listed can be looked up, every node reference is given back (the node
 * table is down to the root), and fsck finds the pool clean.
 *
 * The second case makes every 3rd rename leave the moved entry's node at
 * its old place (a test hook, as when memory runs out), so lookups move
 * nodes under the pool's read lock, concurrently with the path walks of
 * other readers: the interleaving of issue 6 ("Threads").  The third
 * does only that, as fast as it can: one thread renames a directory back
 * and forth, others look it up (moving its node, freeing its old name and
 * its old parent's node) and others walk the path of a file inside it.
 *
 *   RFS_STEPS=<n>    operations per thread (default 1000)
 *   RFS_SEED=<n>     seed (default fixed); printed on failure for replay
 *   RFS_THREADS=<n>  threads, 1..8 (default 8; 1 replays a seed exactly)
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/fsfix.h"
#include "reflinkfs/fs.h"
#include "reflinkfs/log.h"

#define NTHREADS 8
#define NDIRS 4
#define NSUB 4 /* s0..s3: hold private files */
#define NEMPTY 2 /* e0, e1: made and removed */
#define NDNAMES (NSUB + NEMPTY)
#define NFILES 6
#define PRIV_MAX (64 * 1024)
#define SHARED_MAX (256 * 1024)
#define WRITE_MAX (16 * 1024)

static const char *dnames[NDNAMES] = {"s0", "s1", "s2", "s3", "e0", "e1"};
static const struct rfs_ctx g_ctx = {.uid = 1000, .gid = 1000, .pid = 1, .umask = 022};

struct shared {
	rfs_fs *fs;
	bool injecting; /* renames leave stale nodes now and then */
	uint64_t seed;
	long steps;
	atomic_int failed;
	pthread_mutex_t emu;
	char first_error[512];
	atomic_long ops, errs_expected;
	atomic_long done[20]; /* per kind of operation: the ones that succeeded */
};

struct worker {
	struct shared *sh;
	int id;
	uint64_t rng;
	rfs_nodeid priv; /* private file, one lookup reference held */
	bool ok;         /* the current operation's last step succeeded */
	uint8_t model[PRIV_MAX];
	uint64_t priv_size;
	uint8_t buf[SHARED_MAX];
};

static uint64_t rnd(struct worker *w)
{
	/* xorshift64* */
	w->rng ^= w->rng >> 12;
	w->rng ^= w->rng << 25;
	w->rng ^= w->rng >> 27;
	return w->rng * 0x2545f4914f6cdd1dull;
}

static unsigned below_n(struct worker *w, unsigned n)
{
	return (unsigned)(rnd(w) % n);
}

static void report(struct worker *w, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void report(struct worker *w, const char *fmt, ...)
{
	struct shared *sh = w->sh;
	if (atomic_fetch_add(&sh->failed, 1) == 0) {
		va_list ap;
		pthread_mutex_lock(&sh->emu);
		int n = snprintf(sh->first_error, sizeof(sh->first_error), "thread %d: ", w->id);
		va_start(ap, fmt);
		vsnprintf(sh->first_error + n, sizeof(sh->first_error) - (size_t)n, fmt, ap);
		va_end(ap);
		pthread_mutex_unlock(&sh->emu);
	}
}

/*
 * Errors that concurrency explains: the name went away or appeared, a
 * directory is not empty, the object changed kind under the path, or a
 * node went stale (its file was unlinked by another thread while not
 * open, or, with the rename hook, its place is stale).  Anything else
 * (-EIO, -EUCLEAN, -ENOSPC, ...) is a failure.  The private files are
 * held to stricter rules (op_priv).
 */
static bool expected(struct worker *w, int ret)
{
	switch (ret) {
	case 0:
		w->ok = true;
		return true;
	case -ENOENT:
	case -EEXIST:
	case -ENOTEMPTY:
	case -ENOTDIR:
	case -EISDIR:
	case -ESTALE:
		atomic_fetch_add(&w->sh->errs_expected, 1);
		return true;
	default:
		return false;
	}
}

#define EXPECT(w, ret, what, path)                                                      \
	do {                                                                            \
		int r_ = (int)(ret);                                                    \
		if (!expected((w), r_))                                                 \
			report((w), "%s %s: %s (%d)", (what), (path), strerror(-r_), r_); \
	} while (0)

/* "dX" or "dX/<dname>" */
static void rand_dir(struct worker *w, char *out, size_t size)
{
	if (below_n(w, 2))
		snprintf(out, size, "d%u", below_n(w, NDIRS));
	else
		snprintf(out, size, "d%u/%s", below_n(w, NDIRS), dnames[below_n(w, NDNAMES)]);
}

/* A file path: "<dir>/fJ" */
static void rand_file(struct worker *w, char *dir, size_t dsize, const char **leaf)
{
	static const char *fn[NFILES] = {"f0", "f1", "f2", "f3", "f4", "f5"};
	rand_dir(w, dir, dsize);
	*leaf = fn[below_n(w, NFILES)];
}

static void pattern(uint8_t *b, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		b[i] = (uint8_t)(seed * 151 + i * 13 + (i >> 9));
}

/* Resolve dir/leaf to a node (+1 reference). */
static int resolve2(rfs_fs *fs, const char *dir, const char *leaf, rfs_nodeid *out,
		    struct stat *st)
{
	char path[128];
	if (leaf)
		snprintf(path, sizeof(path), "%s/%s", dir, leaf);
	else
		snprintf(path, sizeof(path), "%s", dir);
	return rfs_fs_resolve(fs, path, out, st);
}

/* resolve2 in worker w's pool, the error reported unless expected. */
static int resolve_w(struct worker *w, const char *dir, const char *leaf, rfs_nodeid *out,
		     struct stat *st)
{
	int ret = resolve2(w->sh->fs, dir, leaf, out, st);
	EXPECT(w, ret, "resolve", dir);
	return ret;
}

/* ---- the private file ------------------------------------------------------------ */

/* Find the private file again after its path went stale (only with the
 * name-allocation hook): looking its directory up by its new name moves
 * the stale nodes.  The node found must be the one held. */
static bool priv_relocate(struct worker *w)
{
	rfs_fs *fs = w->sh->fs;
	char leaf[16];
	snprintf(leaf, sizeof(leaf), "p%d", w->id);
	for (int tries = 0; tries < 200; tries++) {
		for (int d = 0; d < NDIRS; d++)
			for (int k = 0; k < NDNAMES; k++) {
				char dir[32];
				rfs_nodeid n;
				snprintf(dir, sizeof(dir), "d%d/%s", d, dnames[k]);
				int ret = resolve2(fs, dir, leaf, &n, NULL);
				if (ret)
					continue;
				rfs_fs_forget(fs, n, 1);
				if (n != w->priv) {
					report(w, "private file found as node %" PRIu64 ", held as %" PRIu64,
					     n, w->priv);
					return false;
				}
				return true;
			}
	}
	report(w, "private file p%d not found in any directory", w->id);
	return false;
}

static void op_priv(struct worker *w)
{
	rfs_fs *fs = w->sh->fs;
	uint64_t off = below_n(w, PRIV_MAX - 1);
	size_t len = 1 + below_n(w, (unsigned)(PRIV_MAX - off < WRITE_MAX ? PRIV_MAX - off : WRITE_MAX));
	uint8_t *data = w->buf;
	pattern(data, len, (unsigned)rnd(w));
	ssize_t got = -ESTALE;
	for (int tries = 0; tries < 20 && got == -ESTALE; tries++) {
		got = rfs_fs_write(fs, w->priv, data, len, off);
		if (got == -ESTALE && (!w->sh->injecting || !priv_relocate(w)))
			break;
	}
	if (got != (ssize_t)len) {
		report(w, "write of private file: %zd, expected %zu", got, len);
		return;
	}
	memcpy(w->model + off, data, len);
	if (off + len > w->priv_size)
		w->priv_size = off + len;

	/* Read it all back. */
	got = -ESTALE;
	for (int tries = 0; tries < 20 && got == -ESTALE; tries++) {
		got = rfs_fs_read(fs, w->priv, data, PRIV_MAX, 0);
		if (got == -ESTALE && (!w->sh->injecting || !priv_relocate(w)))
			break;
	}
	if (got != (ssize_t)w->priv_size)
		report(w, "read of private file: %zd, expected %" PRIu64, got, w->priv_size);
	else if (memcmp(data, w->model, w->priv_size))
		report(w, "private file content differs from what was written");
	else
		w->ok = true;
}

/* ---- shared operations ----------------------------------------------------------- */

struct dirlist {
	rfs_nodeid nodes[64];
	int n;
	struct worker *w;
	const char *path;
};

static bool name_known(const char *name)
{
	if (!strcmp(name, ".") || !strcmp(name, ".."))
		return true;
	if ((name[0] == 'p' || name[0] == 'o') && name[1] >= '0' && name[1] < '0' + NTHREADS && !name[2])
		return true;
	if (name[0] == 'f' && name[1] >= '0' && name[1] < '0' + NFILES && !name[2])
		return true;
	if (name[0] == 'd' && name[1] >= '0' && name[1] < '0' + NDIRS && !name[2])
		return true;
	for (int k = 0; k < NDNAMES; k++)
		if (!strcmp(name, dnames[k]))
			return true;
	return false;
}

static int list_fn(void *arg, const char *name, const struct stat *st, rfs_nodeid node,
		   uint64_t next_off)
{
	struct dirlist *l = arg;
	(void)next_off;
	if (!name_known(name))
		report(l->w, "readdir %s: unknown name \"%s\"", l->path, name);
	if (!S_ISDIR(st->st_mode) && !S_ISREG(st->st_mode))
		report(l->w, "readdir %s: %s has mode %o", l->path, name, st->st_mode);
	if (node) {
		if (l->n == (int)(sizeof(l->nodes) / sizeof(l->nodes[0]))) {
			report(l->w, "readdir %s: more entries than names", l->path);
			rfs_fs_forget(l->w->sh->fs, node, 1);
		} else {
			l->nodes[l->n++] = node;
		}
	}
	return 0;
}

static void op_readdir(struct worker *w)
{
	rfs_fs *fs = w->sh->fs;
	char dir[32];
	rfs_nodeid dn;
	rand_dir(w, dir, sizeof(dir));
	int ret = resolve_w(w, dir, NULL, &dn, NULL);
	if (ret)
		return;
	struct dirlist l = {.w = w, .path = dir};
	ret = rfs_fs_readdir(fs, dn, 0, below_n(w, 2), list_fn, &l);
	EXPECT(w, ret, "readdir", dir);
	for (int i = 0; i < l.n; i++)
		rfs_fs_forget(fs, l.nodes[i], 1);
	rfs_fs_forget(fs, dn, 1);
}

static void op_stat(struct worker *w)
{
	rfs_fs *fs = w->sh->fs;
	char dir[32];
	const char *leaf;
	rfs_nodeid n, found;
	struct stat st, st2;
	rand_file(w, dir, sizeof(dir), &leaf);
	int ret = resolve_w(w, dir, below_n(w, 3) ? leaf : NULL, &n, &st);
	if (ret)
		return;
	ret = rfs_fs_getattr(fs, n, &st2);
	EXPECT(w, ret, "getattr", dir);
	if (!ret && st2.st_ino != st.st_ino)
		report(w, "getattr %s/%s: st_ino changed from %llu to %llu", dir, leaf,
		     (unsigned long long)st.st_ino, (unsigned long long)st2.st_ino);
	/* We hold a reference, so the node is known by its inode number,
	 * unless another thread unlinked the file meanwhile (its node is
	 * then stale for good). */
	ret = rfs_fs_find_ino(fs, st.st_ino, &found);
	if (ret == -ENOENT && rfs_fs_getattr(fs, n, &st2) == -ESTALE)
		ret = 0, found = n;
	if (ret)
		report(w, "find_ino %s: %s", dir, strerror(-ret));
	else if (found != n)
		report(w, "find_ino %s: node %" PRIu64 ", looked up as %" PRIu64, dir, found, n);
	rfs_fs_forget(fs, n, 1);
}

static void op_dots(struct worker *w)
{
	rfs_fs *fs = w->sh->fs;
	char dir[32];
	rfs_nodeid dn, up;
	struct stat st;
	rand_dir(w, dir, sizeof(dir));
	int ret = resolve_w(w, dir, NULL, &dn, NULL);
	if (ret)
		return;
	const char *name = below_n(w, 4) ? ".." : ".";
	ret = rfs_fs_lookup(fs, dn, name, &up, &st);
	EXPECT(w, ret, "lookup ..", dir);
	if (!ret) {
		if (!S_ISDIR(st.st_mode))
			report(w, "%s/%s is not a directory", dir, name);
		rfs_fs_forget(fs, up, 1);
	}
	rfs_fs_forget(fs, dn, 1);
}

static void op_write(struct worker *w)
{
	rfs_fs *fs = w->sh->fs;
	char dir[32];
	const char *leaf;
	rfs_nodeid n;
	rand_file(w, dir, sizeof(dir), &leaf);
	int ret = resolve_w(w, dir, leaf, &n, NULL);
	if (ret)
		return;
	ret = rfs_fs_open_node(fs, n);
	EXPECT(w, ret, "open", dir);
	if (!ret) {
		uint64_t off = below_n(w, SHARED_MAX - WRITE_MAX);
		size_t len = 1 + below_n(w, WRITE_MAX);
		pattern(w->buf, len, (unsigned)rnd(w));
		ssize_t got;
		if (below_n(w, 2))
			got = rfs_fs_write(fs, n, w->buf, len, off);
		else
			got = rfs_fs_read(fs, n, w->buf, WRITE_MAX, off);
		if (got < 0)
			EXPECT(w, got, "write/read", dir);
		else if (got > (ssize_t)WRITE_MAX)
			report(w, "read/write %s/%s: %zd bytes", dir, leaf, got);
		rfs_fs_release(fs, n);
	}
	rfs_fs_forget(fs, n, 1);
}

static void op_truncate(struct worker *w)
{
	rfs_fs *fs = w->sh->fs;
	char dir[32];
	const char *leaf;
	rfs_nodeid n;
	rand_file(w, dir, sizeof(dir), &leaf);
	int ret = resolve_w(w, dir, leaf, &n, NULL);
	if (ret)
		return;
	struct stat in = {0}, out;
	in.st_size = (off_t)below_n(w, SHARED_MAX);
	ret = rfs_fs_setattr(fs, n, &in, RFS_SET_SIZE, &out);
	EXPECT(w, ret, "truncate", dir);
	if (!ret && out.st_size != in.st_size)
		report(w, "truncate %s/%s: size %lld", dir, leaf, (long long)out.st_size);
	rfs_fs_forget(fs, n, 1);
}

static void op_create(struct worker *w)
{
	rfs_fs *fs = w->sh->fs;
	char dir[32];
	const char *leaf;
	rfs_nodeid dn, n;
	struct stat st;
	rand_file(w, dir, sizeof(dir), &leaf);
	int ret = resolve_w(w, dir, NULL, &dn, NULL);
	if (ret)
		return;
	ret = rfs_fs_create(fs, &g_ctx, dn, leaf, 0644, &n, &st);
	EXPECT(w, ret, "create", dir);
	if (!ret)
		rfs_fs_forget(fs, n, 1);
	rfs_fs_forget(fs, dn, 1);
}

static void op_unlink(struct worker *w)
{
	rfs_fs *fs = w->sh->fs;
	char dir[32];
	const char *leaf;
	rfs_nodeid dn;
	rand_file(w, dir, sizeof(dir), &leaf);
	int ret = resolve_w(w, dir, NULL, &dn, NULL);
	if (ret)
		return;
	ret = rfs_fs_unlink(fs, dn, leaf);
	EXPECT(w, ret, "unlink", dir);
	rfs_fs_forget(fs, dn, 1);
}

static void op_link(struct worker *w)
{
	rfs_fs *fs = w->sh->fs;
	char dir[32], ndir[32];
	const char *leaf, *nleaf;
	rfs_nodeid n, ndn;
	struct stat st;
	rand_file(w, dir, sizeof(dir), &leaf);
	rand_file(w, ndir, sizeof(ndir), &nleaf);
	int ret = resolve_w(w, dir, leaf, &n, NULL);
	if (ret)
		return;
	ret = resolve_w(w, ndir, NULL, &ndn, NULL);
	if (!ret) {
		ret = rfs_fs_link(fs, n, ndn, nleaf, &st);
		EXPECT(w, ret, "link", ndir);
		if (!ret) {
			if (st.st_nlink < 2)
				report(w, "link %s/%s: nlink %lu", ndir, nleaf,
				     (unsigned long)st.st_nlink);
			rfs_fs_forget(fs, n, 1); /* link's reference */
		}
		rfs_fs_forget(fs, ndn, 1);
	}
	rfs_fs_forget(fs, n, 1);
}

static void op_clone(struct worker *w)
{
	rfs_fs *fs = w->sh->fs;
	char sdir[32], ddir[32];
	const char *sleaf, *dleaf;
	rfs_nodeid s, d;
	rand_file(w, sdir, sizeof(sdir), &sleaf);
	rand_file(w, ddir, sizeof(ddir), &dleaf);
	int ret = resolve_w(w, sdir, sleaf, &s, NULL);
	if (ret)
		return;
	ret = resolve_w(w, ddir, dleaf, &d, NULL);
	if (!ret) {
		if (below_n(w, 2)) {
			ret = rfs_fs_clone_file(fs, s, d);
		} else {
			uint64_t off = below_n(w, SHARED_MAX / 2), len = below_n(w, SHARED_MAX / 2);
			ssize_t got = rfs_fs_clone_range(fs, s, off, d, below_n(w, SHARED_MAX / 2), len);
			ret = got < 0 ? (int)got : 0;
		}
		/* the same file twice (two links), overlapping: -EINVAL */
		if (ret != -EINVAL)
			EXPECT(w, ret, "clone", ddir);
		rfs_fs_forget(fs, d, 1);
	}
	rfs_fs_forget(fs, s, 1);
}

static void op_rename(struct worker *w)
{
	rfs_fs *fs = w->sh->fs;
	char sdir[32], ddir[32];
	const char *sleaf, *dleaf;
	static const unsigned flags[] = {0, 0, RFS_RENAME_NOREPLACE, RFS_RENAME_EXCHANGE};
	unsigned fl = flags[below_n(w, 4)];
	switch (below_n(w, 4)) {
	case 0: /* a directory of the s/e names, between the d directories */
	case 1:
		snprintf(sdir, sizeof(sdir), "d%u", below_n(w, NDIRS));
		snprintf(ddir, sizeof(ddir), "d%u", below_n(w, NDIRS));
		sleaf = dnames[below_n(w, NDNAMES)];
		dleaf = dnames[below_n(w, NDNAMES)];
		break;
	case 2: /* two top directories swap */
		snprintf(sdir, sizeof(sdir), ".");
		snprintf(ddir, sizeof(ddir), ".");
		sleaf = below_n(w, 2) ? "d0" : "d1";
		dleaf = below_n(w, 2) ? "d2" : "d3";
		fl = RFS_RENAME_EXCHANGE;
		break;
	default: /* files */
		rand_file(w, sdir, sizeof(sdir), &sleaf);
		rand_file(w, ddir, sizeof(ddir), &dleaf);
		break;
	}
	rfs_nodeid sp, dp;
	int ret = strcmp(sdir, ".") ? resolve2(fs, sdir, NULL, &sp, NULL)
				    : rfs_fs_lookup(fs, RFS_ROOT_NODE, ".", &sp, NULL);
	EXPECT(w, ret, "resolve", sdir);
	if (ret)
		return;
	ret = strcmp(ddir, ".") ? resolve2(fs, ddir, NULL, &dp, NULL)
				: rfs_fs_lookup(fs, RFS_ROOT_NODE, ".", &dp, NULL);
	EXPECT(w, ret, "resolve", ddir);
	if (!ret) {
		ret = rfs_fs_rename(fs, &g_ctx, sp, sleaf, dp, dleaf, fl);
		EXPECT(w, ret, "rename", sdir);
		rfs_fs_forget(fs, dp, 1);
	}
	rfs_fs_forget(fs, sp, 1);
}

static void op_mkdir_rmdir(struct worker *w)
{
	rfs_fs *fs = w->sh->fs;
	char dir[32];
	rfs_nodeid dn, n;
	struct stat st;
	snprintf(dir, sizeof(dir), "d%u", below_n(w, NDIRS));
	const char *name = dnames[NSUB + below_n(w, NEMPTY)];
	int ret = resolve_w(w, dir, NULL, &dn, NULL);
	if (ret)
		return;
	if (below_n(w, 2)) {
		ret = rfs_fs_mkdir(fs, &g_ctx, dn, name, 0755, &n, &st);
		EXPECT(w, ret, "mkdir", dir);
		if (!ret)
			rfs_fs_forget(fs, n, 1);
	} else {
		ret = rfs_fs_rmdir(fs, dn, name);
		EXPECT(w, ret, "rmdir", dir);
	}
	rfs_fs_forget(fs, dn, 1);
}

static void op_xattr(struct worker *w)
{
	rfs_fs *fs = w->sh->fs;
	char dir[32], val[32];
	const char *leaf;
	rfs_nodeid n;
	rand_file(w, dir, sizeof(dir), &leaf);
	int ret = resolve_w(w, dir, below_n(w, 2) ? leaf : NULL, &n, NULL);
	if (ret)
		return;
	int len = snprintf(val, sizeof(val), "thread %d", w->id);
	ret = rfs_fs_setxattr(fs, &g_ctx, n, "user.t", val, (size_t)len, 0);
	EXPECT(w, ret, "setxattr", dir);
	ssize_t got = rfs_fs_getxattr(fs, n, "user.t", val, sizeof(val));
	if (got < 0 && got != -ENODATA)
		EXPECT(w, got, "getxattr", dir);
	if (got >= 0 && (got < 8 || memcmp(val, "thread ", 7)))
		report(w, "getxattr %s: \"%.*s\"", dir, (int)got, val);
	rfs_fs_forget(fs, n, 1);
}

/* A file unlinked while open lives on as an orphan, private to us. */
static void op_orphan(struct worker *w)
{
	rfs_fs *fs = w->sh->fs;
	char dir[32], leaf[16];
	rfs_nodeid dn, n;
	struct stat st;
	rand_dir(w, dir, sizeof(dir));
	snprintf(leaf, sizeof(leaf), "o%d", w->id); /* no other thread uses it */
	int ret = resolve_w(w, dir, NULL, &dn, NULL);
	if (ret)
		return;
	ret = rfs_fs_create(fs, &g_ctx, dn, leaf, 0600, &n, &st);
	EXPECT(w, ret, "create", dir);
	if (ret) {
		rfs_fs_forget(fs, dn, 1);
		return;
	}
	ret = rfs_fs_open_node(fs, n);
	EXPECT(w, ret, "open", dir);
	int uret = rfs_fs_unlink(fs, dn, leaf);
	/* The directory may have moved: its node is still the one we hold
	 * (but its place may be stale under the rename hook: -ESTALE). */
	EXPECT(w, uret, "unlink", dir);
	if (!ret && uret) {
		rfs_fs_release(fs, n);
	} else if (!ret) {
		size_t len = 1 + below_n(w, WRITE_MAX);
		pattern(w->buf, len, 77);
		ssize_t got = rfs_fs_write(fs, n, w->buf, len, 0);
		if (got != (ssize_t)len)
			EXPECT(w, got < 0 ? got : -EIO, "orphan write", dir);
		got = rfs_fs_read(fs, n, w->buf + WRITE_MAX, len, 0);
		if (got != (ssize_t)len || memcmp(w->buf, w->buf + WRITE_MAX, len))
			report(w, "orphan read in %s: %zd bytes, or wrong data", dir, got);
		rfs_fs_release(fs, n);
	}
	rfs_fs_forget(fs, n, 1);
	rfs_fs_forget(fs, dn, 1);
}

static void op_statfs(struct worker *w)
{
	struct statvfs sv;
	int ret = rfs_fs_statfs(w->sh->fs, &sv);
	if (ret || sv.f_bfree > sv.f_blocks || sv.f_files < 1)
		report(w, "statfs: %d, %llu of %llu blocks free", ret,
		     (unsigned long long)sv.f_bfree, (unsigned long long)sv.f_blocks);
	else
		w->ok = true;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	rfs_fs *fs = w->sh->fs;
	for (long i = 0; i < w->sh->steps && !atomic_load(&w->sh->failed); i++) {
		unsigned kind = below_n(w, 20);
		atomic_fetch_add(&w->sh->ops, 1);
		w->ok = false;
		switch (kind) {
		case 0:
		case 1:
			op_stat(w);
			break;
		case 2:
			op_readdir(w);
			break;
		case 3:
			op_dots(w);
			break;
		case 4:
		case 5:
		case 6:
			op_rename(w);
			break;
		case 7:
		case 8:
			op_write(w);
			break;
		case 9:
			op_truncate(w);
			break;
		case 10:
		case 11:
			op_create(w);
			break;
		case 12:
			op_unlink(w);
			break;
		case 13:
			op_link(w);
			break;
		case 14:
			op_clone(w);
			break;
		case 15:
			op_mkdir_rmdir(w);
			break;
		case 16:
			op_xattr(w);
			break;
		case 17:
			op_orphan(w);
			break;
		case 18:
			op_priv(w);
			break;
		default:
			if (below_n(w, 4) == 0) {
				int ret = rfs_fs_sync(fs);
				if (ret)
					report(w, "sync: %s", strerror(-ret));
				else
					w->ok = true;
			} else {
				op_statfs(w);
			}
			break;
		}
		if (w->ok)
			atomic_fetch_add(&w->sh->done[kind], 1);
	}
	return NULL;
}

/* ---- setup and checks -------------------------------------------------------------- */

/* Every name listed below dir can be looked up, with the st_ino and kind
 * the listing gave; a directory's link count is 2 + its subdirectories.
 * (Lookups happen after the listing: readdir holds the pool lock while it
 * calls back.) */
struct listing {
	int n;
	struct {
		char name[16];
		ino_t ino;
		mode_t mode;
	} e[64];
};

static int collect_fn(void *arg, const char *name, const struct stat *st, rfs_nodeid node,
		      uint64_t next_off)
{
	struct listing *l = arg;
	(void)node;
	(void)next_off;
	if (!strcmp(name, ".") || !strcmp(name, "..") || l->n == 64 || strlen(name) > 15)
		return 0;
	snprintf(l->e[l->n].name, sizeof(l->e[l->n].name), "%s", name);
	l->e[l->n].ino = st->st_ino;
	l->e[l->n].mode = st->st_mode;
	l->n++;
	return 0;
}

static int walk_dir(rfs_fs *fs, rfs_nodeid dir, const char *path)
{
	struct listing *l = calloc(1, sizeof(*l));
	struct stat st;
	int problems = 0, subdirs = 0;
	assert_non_null(l);
	assert_int_equal(rfs_fs_readdir(fs, dir, 0, false, collect_fn, l), 0);
	for (int i = 0; i < l->n; i++) {
		rfs_nodeid n;
		struct stat st2;
		char sub[512];
		snprintf(sub, sizeof(sub), "%s/%s", path, l->e[i].name);
		int ret = rfs_fs_lookup(fs, dir, l->e[i].name, &n, &st2);
		if (ret || st2.st_ino != l->e[i].ino ||
		    (st2.st_mode & S_IFMT) != (l->e[i].mode & S_IFMT)) {
			fprintf(stderr, "%s: listed as ino %llu mode %o, lookup %d ino %llu mode %o\n",
				sub, (unsigned long long)l->e[i].ino, l->e[i].mode, ret,
				(unsigned long long)st2.st_ino, st2.st_mode);
			problems++;
			if (!ret)
				rfs_fs_forget(fs, n, 1);
			continue;
		}
		if (S_ISDIR(st2.st_mode)) {
			subdirs++;
			problems += walk_dir(fs, n, sub);
		}
		rfs_fs_forget(fs, n, 1);
	}
	assert_int_equal(rfs_fs_getattr(fs, dir, &st), 0);
	if (st.st_nlink != (nlink_t)(2 + subdirs)) {
		fprintf(stderr, "%s/: link count %lu, %d subdirectories\n", path,
			(unsigned long)st.st_nlink, subdirs);
		problems++;
	}
	free(l);
	return problems;
}

static void run(unsigned fail_renames_every)
{
	static struct shared sh;
	static struct worker ws[NTHREADS];
	rfs_fs *fs;
	const char *e = getenv("RFS_STEPS");
	const char *s = getenv("RFS_SEED");

	memset(&sh, 0, sizeof(sh));
	pthread_mutex_init(&sh.emu, NULL);
	sh.steps = e && *e ? strtol(e, NULL, 10) : 1000;
	sh.seed = s && *s ? strtoull(s, NULL, 10) : 20260 + fail_renames_every;
	const char *th_env = getenv("RFS_THREADS");
	int nthreads = th_env && *th_env ? atoi(th_env) : NTHREADS;
	if (nthreads < 1 || nthreads > NTHREADS)
		nthreads = NTHREADS;
	unlink(g_pool);
	assert_int_equal(rfs_fs_mkfs(g_pool, 512ull << 20, 0), 0);
	assert_int_equal(rfs_fs_open(g_pool, 0, &fs), 0);
	sh.fs = fs;

	/* d0..d3, and each thread's private file in d<k>/s<k>, k = t % NSUB. */
	rfs_nodeid d[NDIRS], sd[NSUB];
	struct stat st;
	for (int i = 0; i < NDIRS; i++) {
		char name[16];
		snprintf(name, sizeof(name), "d%d", i);
		assert_int_equal(rfs_fs_mkdir(fs, &g_ctx, RFS_ROOT_NODE, name, 0755, &d[i], &st), 0);
	}
	/* Every d holds s0..s3, and every d and s files f0..f2 (so most
	 * paths exist). */
	for (int i = 0; i < NDIRS; i++)
		for (int k = -1; k < NSUB; k++) {
			rfs_nodeid n = d[i];
			if (k >= 0)
				assert_int_equal(rfs_fs_mkdir(fs, &g_ctx, d[i], dnames[k], 0755, &n, &st), 0);
			for (int f = 0; f < 3; f++) {
				char name[16];
				rfs_nodeid fn;
				snprintf(name, sizeof(name), "f%d", f);
				assert_int_equal(rfs_fs_create(fs, &g_ctx, n, name, 0644, &fn, &st), 0);
				rfs_fs_forget(fs, fn, 1);
			}
			if (k >= 0 && i == k)
				sd[k] = n;
			else if (k >= 0)
				rfs_fs_forget(fs, n, 1);
		}
	for (int t = 0; t < NTHREADS; t++) {
		char name[16];
		struct worker *w = &ws[t];
		memset(w, 0, sizeof(*w));
		w->sh = &sh;
		w->id = t;
		w->rng = sh.seed * 0x9e3779b97f4a7c15ull + (uint64_t)t * 0x632be59bd9b4e019ull + 1;
		snprintf(name, sizeof(name), "p%d", t);
		assert_int_equal(rfs_fs_create(fs, &g_ctx, sd[t % NSUB], name, 0644, &w->priv, &st), 0);
	}
	for (int i = 0; i < NDIRS; i++)
		rfs_fs_forget(fs, d[i], 1);
	for (int k = 0; k < NSUB; k++)
		rfs_fs_forget(fs, sd[k], 1);
	assert_int_equal(rfs_fs_sync(fs), 0);

	if (fail_renames_every) {
		sh.injecting = true;
		rfs_log_set_level(RFS_LOG_ERR - 1); /* renames log the failed node update */
		rfs_fs_fail_rename_nodes(fs, fail_renames_every);
	}
	pthread_t th[NTHREADS];
	for (int t = 0; t < nthreads; t++)
		assert_int_equal(pthread_create(&th[t], NULL, worker_main, &ws[t]), 0);
	for (int t = 0; t < nthreads; t++)
		pthread_join(th[t], NULL);
	if (fail_renames_every) {
		rfs_fs_fail_rename_nodes(fs, 0);
		rfs_log_set_level(RFS_LOG_INFO);
	}
	fprintf(stderr, "threads: %ld operations, %ld steps failed as concurrency explains; done by kind:",
		atomic_load(&sh.ops), atomic_load(&sh.errs_expected));
	for (int k = 0; k < 20; k++)
		fprintf(stderr, " %ld", atomic_load(&sh.done[k]));
	fprintf(stderr, "\n");
	if (atomic_load(&sh.failed)) {
		fprintf(stderr, "FAILED: %s\nreplay: RFS_SEED=%" PRIu64 " RFS_STEPS=%ld RFS_THREADS=%d\n",
			sh.first_error, sh.seed, sh.steps, nthreads);
		fail_msg("%s", sh.first_error);
	}
	/* Each kind of operation succeeded sometimes (the test tests). */
	for (int k = 0; k < 20 && sh.steps >= 200; k++)
		if (!atomic_load(&sh.done[k]))
			fail_msg("no operation of kind %d succeeded", k);

	/* Private files hold what their threads wrote (the path may have to
	 * be looked up again after the hook left stale nodes). */
	uint8_t *buf = malloc(PRIV_MAX);
	assert_non_null(buf);
	for (int t = 0; t < NTHREADS; t++) {
		struct worker *w = &ws[t];
		ssize_t got = rfs_fs_read(fs, w->priv, buf, PRIV_MAX, 0);
		if (got == -ESTALE && fail_renames_every) {
			assert_true(priv_relocate(w));
			got = rfs_fs_read(fs, w->priv, buf, PRIV_MAX, 0);
		}
		assert_int_equal(got, (ssize_t)w->priv_size);
		assert_memory_equal(buf, w->model, w->priv_size);
		rfs_fs_forget(fs, w->priv, 1);
	}
	free(buf);

	assert_int_equal(walk_dir(fs, RFS_ROOT_NODE, ""), 0);
	/* Every reference taken was given back: only the root is left. */
	assert_int_equal(rfs_fs_node_count(fs), 1);
	assert_int_equal(rfs_fs_close(fs), 0);
	assert_int_equal(rfs_fs_fsck(g_pool, fx_fsck_line, NULL), 0);
	pthread_mutex_destroy(&sh.emu);
}

static void test_threads(void **state)
{
	(void)state;
	run(0);
}

static void test_threads_stale_nodes(void **state)
{
	(void)state;
	run(3);
}

/* ---- stale nodes moved while other readers walk through them ---------------------- */

struct race {
	rfs_fs *fs;
	rfs_nodeid leaf; /* a/x/m/f, one reference held */
	long rounds;
	atomic_bool stop;
	atomic_long walks, moves;
	atomic_int failed;
	char err[256];
	pthread_mutex_t emu;
};

static void race_fail(struct race *r, const char *what, int ret)
{
	if (atomic_fetch_add(&r->failed, 1) == 0) {
		pthread_mutex_lock(&r->emu);
		snprintf(r->err, sizeof(r->err), "%s: %s (%d)", what, strerror(-ret), ret);
		pthread_mutex_unlock(&r->emu);
	}
	atomic_store(&r->stop, true);
}

/* Move m between a/x and b/y; every node update fails (stale nodes). */
static void *race_renamer(void *arg)
{
	struct race *r = arg;
	for (long i = 0; i < r->rounds && !atomic_load(&r->stop); i++) {
		rfs_nodeid from, to;
		const char *fp = i % 2 ? "b/y" : "a/x", *tp = i % 2 ? "a/x" : "b/y";
		int ret = rfs_fs_resolve(r->fs, fp, &from, NULL);
		if (ret) {
			race_fail(r, "resolve (renamer)", ret);
			break;
		}
		ret = rfs_fs_resolve(r->fs, tp, &to, NULL);
		if (!ret) {
			ret = rfs_fs_rename(r->fs, &g_ctx, from, "m", to, "m", 0);
			if (ret)
				race_fail(r, "rename", ret);
			/* The parents' nodes are now held by nothing but their
			 * children's nodes: moving those frees them. */
			rfs_fs_forget(r->fs, to, 1);
		} else {
			race_fail(r, "resolve (renamer)", ret);
		}
		rfs_fs_forget(r->fs, from, 1);
	}
	atomic_store(&r->stop, true);
	return NULL;
}

/* Look m up by its current name: moves its stale node under the read lock. */
static void *race_lookup(void *arg)
{
	struct race *r = arg;
	while (!atomic_load(&r->stop)) {
		rfs_nodeid n;
		int ret = rfs_fs_resolve(r->fs, "a/x/m", &n, NULL);
		if (ret == -ENOENT)
			ret = rfs_fs_resolve(r->fs, "b/y/m", &n, NULL);
		if (ret == -ENOENT)
			continue; /* renamed meanwhile */
		if (ret) {
			race_fail(r, "resolve m", ret);
			break;
		}
		atomic_fetch_add(&r->moves, 1);
		rfs_fs_forget(r->fs, n, 1);
	}
	return NULL;
}

/* Walk the path of f (through m and its parent) again and again. */
static void *race_walker(void *arg)
{
	struct race *r = arg;
	while (!atomic_load(&r->stop)) {
		struct stat st;
		int ret = rfs_fs_getattr(r->fs, r->leaf, &st);
		if (ret && ret != -ESTALE) { /* stale until m is looked up */
			race_fail(r, "getattr f", ret);
			break;
		}
		atomic_fetch_add(&r->walks, 1);
	}
	return NULL;
}

static void test_reparent_race(void **state)
{
	(void)state;
	static struct race r;
	rfs_fs *fs;
	rfs_nodeid a, b, x, y, m;
	struct stat st;
	const char *e = getenv("RFS_STEPS");

	memset(&r, 0, sizeof(r));
	pthread_mutex_init(&r.emu, NULL);
	r.rounds = 4 * (e && *e ? strtol(e, NULL, 10) : 1000);
	unlink(g_pool);
	assert_int_equal(rfs_fs_mkfs(g_pool, 64ull << 20, 0), 0);
	assert_int_equal(rfs_fs_open(g_pool, 0, &fs), 0);
	r.fs = fs;
	assert_int_equal(rfs_fs_mkdir(fs, &g_ctx, RFS_ROOT_NODE, "a", 0755, &a, &st), 0);
	assert_int_equal(rfs_fs_mkdir(fs, &g_ctx, RFS_ROOT_NODE, "b", 0755, &b, &st), 0);
	assert_int_equal(rfs_fs_mkdir(fs, &g_ctx, a, "x", 0755, &x, &st), 0);
	assert_int_equal(rfs_fs_mkdir(fs, &g_ctx, b, "y", 0755, &y, &st), 0);
	assert_int_equal(rfs_fs_mkdir(fs, &g_ctx, x, "m", 0755, &m, &st), 0);
	assert_int_equal(rfs_fs_create(fs, &g_ctx, m, "f", 0644, &r.leaf, &st), 0);
	rfs_fs_forget(fs, a, 1);
	rfs_fs_forget(fs, b, 1);
	rfs_fs_forget(fs, x, 1);
	rfs_fs_forget(fs, y, 1);
	rfs_fs_forget(fs, m, 1);

	rfs_log_set_level(RFS_LOG_ERR - 1); /* each rename logs its failed node update */
	rfs_fs_fail_rename_nodes(fs, 1);
	pthread_t th[6];
	assert_int_equal(pthread_create(&th[0], NULL, race_renamer, &r), 0);
	for (int i = 1; i < 3; i++)
		assert_int_equal(pthread_create(&th[i], NULL, race_lookup, &r), 0);
	for (int i = 3; i < 6; i++)
		assert_int_equal(pthread_create(&th[i], NULL, race_walker, &r), 0);
	for (int i = 0; i < 6; i++)
		pthread_join(th[i], NULL);
	rfs_fs_fail_rename_nodes(fs, 0);
	rfs_log_set_level(RFS_LOG_INFO);
	fprintf(stderr, "reparent race: %ld renames, %ld lookups, %ld path walks\n", r.rounds,
		atomic_load(&r.moves), atomic_load(&r.walks));
	if (atomic_load(&r.failed))
		fail_msg("%s", r.err);

	/* m ends where the last rename put it; looking it up there makes
	 * f's path good again. */
	rfs_nodeid n;
	const char *where = r.rounds % 2 ? "b/y/m/f" : "a/x/m/f";
	assert_int_equal(rfs_fs_resolve(fs, where, &n, &st), 0);
	assert_int_equal(n, r.leaf);
	rfs_fs_forget(fs, n, 1);
	assert_int_equal(rfs_fs_getattr(fs, r.leaf, &st), 0);
	rfs_fs_forget(fs, r.leaf, 1);
	assert_int_equal(rfs_fs_node_count(fs), 1);
	assert_int_equal(rfs_fs_close(fs), 0);
	assert_int_equal(rfs_fs_fsck(g_pool, fx_fsck_line, NULL), 0);
	pthread_mutex_destroy(&r.emu);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_threads),
		cmocka_unit_test(test_threads_stale_nodes),
		cmocka_unit_test(test_reparent_race),
	};
	return cmocka_run_group_tests(tests, fx_setup, fx_teardown);
}
