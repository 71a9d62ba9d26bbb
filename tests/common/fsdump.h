/*
 * Canonical text image of a whole reflinkfs filesystem, for tests that
 * compare filesystem states across crashes and reopens (header-only,
 * static functions; include after testutil.h).
 *
 * One line per inode reachable from the root, in path order (names
 * sorted): path, type, mode, owner, link count, st_ino, size, st_blocks,
 * and by type the data (hash of every non-zero block, and the extent map:
 * logical range, unwritten, shared blocks), the symlink target, the
 * xattrs (sorted names, value length and hash).  Times are left out (two
 * runs of one workload differ in them).
 *
 * Two ways to read file data:
 *  - FSD_READ: through rfs_fs_read, skipping holes with SEEK_DATA /
 *    SEEK_HOLE: every block verified against its checksum.  On a
 *    read-write fs this updates atimes (relatime), a change to the state.
 *  - FSD_RAW: from the extent map (rfs_fs_extents) and rfs_data_read of
 *    the physical blocks (rfs_fs_inline_data for a tiny file's bytes kept
 *    in its record): no change to the fs at all, so a test can dump a
 *    live fs in the middle of a workload without perturbing it.
 * Both give the same image of the same state (tests check that).
 */
#ifndef RFS_FSDUMP_H
#define RFS_FSDUMP_H

#include <isa-l/crc64.h>
#include <stdarg.h>

#include "reflinkfs/fs.h"

/* FSD_NOSHARED (or-ed in): leave out which extents are shared.  Sharing
 * is lazy: a snapshot shares a directory's tree at its root, and the
 * nodes below show it only once a change (even an atime update by a
 * read) copies the path, so it depends on what ran, not on the state. */
enum fsd_mode { FSD_READ = 0, FSD_RAW = 1, FSD_NOSHARED = 2 };

/* Append printf-style text to b (without the NUL). */
static TU_UNUSED void fsd_printf(tu_buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static TU_UNUSED void fsd_printf(tu_buf *b, const char *fmt, ...)
{
	char *s = NULL;
	va_list ap;
	va_start(ap, fmt);
	int n = vasprintf(&s, fmt, ap);
	va_end(ap);
	assert_true(n >= 0);
	tu_buf_add(b, s, (size_t)n);
	free(s);
}

/* ---- names of a directory ---------------------------------------------- */

typedef struct {
	char **v;
	size_t n, cap;
} fsd_names;

static int fsd_name_cb(void *arg, const char *name, const struct stat *st,
		       rfs_nodeid node, uint64_t next_off)
{
	(void)st;
	(void)node;
	(void)next_off;
	fsd_names *nm = arg;
	if (!strcmp(name, ".") || !strcmp(name, ".."))
		return 0;
	if (nm->n == nm->cap) {
		nm->cap = nm->cap ? nm->cap * 2 : 16;
		nm->v = realloc(nm->v, nm->cap * sizeof(char *));
		assert_non_null(nm->v);
	}
	nm->v[nm->n] = strdup(name);
	assert_non_null(nm->v[nm->n]);
	nm->n++;
	return 0;
}

static int fsd_strcmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void fsd_names_free(fsd_names *nm)
{
	for (size_t i = 0; i < nm->n; i++)
		free(nm->v[i]);
	free(nm->v);
	memset(nm, 0, sizeof(*nm));
}

/* ---- file data ---------------------------------------------------------- */

typedef struct {
	struct rfs_extent_info *v;
	size_t n, cap;
} fsd_exts;

static int fsd_ext_cb(void *arg, const struct rfs_extent_info *e)
{
	fsd_exts *x = arg;
	if (x->n == x->cap) {
		x->cap = x->cap ? x->cap * 2 : 16;
		x->v = realloc(x->v, x->cap * sizeof(*x->v));
		assert_non_null(x->v);
	}
	x->v[x->n++] = *e;
	return 0;
}

/* Fold block number blk (its bytes past size zeroed) into h unless it is
 * all zeros: holes, unwritten and written zeros hash alike. */
static uint64_t fsd_hash_block(uint64_t h, uint64_t blk, uint8_t *b,
			       uint64_t size)
{
	uint64_t off = blk * RFS_BLOCK_SIZE;
	if (off + RFS_BLOCK_SIZE > size)
		memset(b + (size - off), 0, RFS_BLOCK_SIZE - (size - off));
	static const uint8_t zero[RFS_BLOCK_SIZE];
	if (!memcmp(b, zero, RFS_BLOCK_SIZE))
		return h;
	h = crc64_ecma_refl(h, (const unsigned char *)&blk, sizeof blk);
	return crc64_ecma_refl(h, b, RFS_BLOCK_SIZE);
}

/* blocks per read: small enough for ASan's primary allocator (larger
 * buffers are mmapped and faulted in on every call) */
#define FSD_CHUNK 16u

static int fsd_data_read(rfs_fs *fs, rfs_nodeid node, uint64_t size,
			 uint64_t *hash)
{
	uint8_t *buf = malloc((size_t)FSD_CHUNK * RFS_BLOCK_SIZE);
	assert_non_null(buf);
	uint64_t h = 0, pos = 0;
	int ret = 0;
	while (pos < size) {
		uint64_t d, e;
		ret = rfs_fs_lseek(fs, node, pos, SEEK_DATA, &d);
		if (ret == -ENXIO) {
			ret = 0;
			break;
		}
		if (ret)
			break;
		ret = rfs_fs_lseek(fs, node, d, SEEK_HOLE, &e);
		if (ret)
			break;
		if (e > size)
			e = size;
		/* whole blocks: a data region may start mid-block */
		for (uint64_t b = d / RFS_BLOCK_SIZE; b * RFS_BLOCK_SIZE < e;) {
			uint64_t n = (e - b * RFS_BLOCK_SIZE + RFS_BLOCK_SIZE - 1) / RFS_BLOCK_SIZE;
			if (n > FSD_CHUNK)
				n = FSD_CHUNK;
			memset(buf, 0, (size_t)n * RFS_BLOCK_SIZE);
			ssize_t got = rfs_fs_read(fs, node, buf, (size_t)n * RFS_BLOCK_SIZE,
						  b * RFS_BLOCK_SIZE);
			if (got < 0) {
				ret = (int)got;
				goto out;
			}
			for (uint64_t i = 0; i < n && (b + i) * RFS_BLOCK_SIZE < size; i++)
				h = fsd_hash_block(h, b + i, buf + i * RFS_BLOCK_SIZE, size);
			b += n;
		}
		if (e <= pos)
			break; /* no progress: lseek is broken; the hash will tell */
		pos = (e + RFS_BLOCK_SIZE - 1) / RFS_BLOCK_SIZE * RFS_BLOCK_SIZE;
	}
out:
	free(buf);
	*hash = h;
	return ret;
}

static int fsd_data_raw(rfs_fs *fs, rfs_nodeid node, const fsd_exts *x, uint64_t size,
			uint64_t *hash)
{
	rfs_pool *pool = rfs_fs_pool(fs);
	uint8_t *buf = malloc((size_t)FSD_CHUNK * RFS_BLOCK_SIZE);
	assert_non_null(buf);
	uint64_t h = 0;
	int ret = 0;
	for (size_t i = 0; i < x->n && !ret; i++) {
		const struct rfs_extent_info *e = &x->v[i];
		if (e->unwritten)
			continue;
		if (e->inline_data) {
			/* the bytes in the record: block 0, the only one */
			memset(buf, 0, RFS_BLOCK_SIZE);
			ssize_t got = rfs_fs_inline_data(fs, node, buf, RFS_BLOCK_SIZE);
			if (got < 0)
				ret = (int)got;
			else
				h = fsd_hash_block(h, 0, buf, size);
			continue;
		}
		uint64_t b0 = e->logical / RFS_BLOCK_SIZE;
		uint64_t nb = e->length / RFS_BLOCK_SIZE;
		uint64_t p0 = e->physical / RFS_BLOCK_SIZE;
		for (uint64_t j = 0; j < nb && (b0 + j) * RFS_BLOCK_SIZE < size && !ret;) {
			uint64_t n = nb - j < FSD_CHUNK ? nb - j : FSD_CHUNK;
			rfs_pool_rdlock(pool);
			ret = rfs_data_read(pool, p0 + j, buf, (uint32_t)n, NULL);
			rfs_pool_unlock(pool);
			for (uint64_t k = 0; k < n && !ret && (b0 + j + k) * RFS_BLOCK_SIZE < size; k++)
				h = fsd_hash_block(h, b0 + j + k, buf + k * RFS_BLOCK_SIZE, size);
			j += n;
		}
	}
	free(buf);
	*hash = h;
	return ret;
}

/* ---- one inode ------------------------------------------------------------ */

static int fsd_xattrs(rfs_fs *fs, rfs_nodeid node, tu_buf *out)
{
	ssize_t len = rfs_fs_listxattr(fs, node, NULL, 0);
	if (len <= 0)
		return (int)len;
	char *list = malloc((size_t)len);
	assert_non_null(list);
	ssize_t got = rfs_fs_listxattr(fs, node, list, (size_t)len);
	int ret = got < 0 ? (int)got : 0;
	fsd_names nm = {0};
	for (ssize_t p = 0; !ret && p < got; p += (ssize_t)strlen(list + p) + 1)
		fsd_name_cb(&nm, list + p, NULL, 0, 0);
	if (nm.n)
		qsort(nm.v, nm.n, sizeof(char *), fsd_strcmp);
	uint8_t *val = malloc(RFS_XATTR_MAX);
	assert_non_null(val);
	for (size_t i = 0; i < nm.n && !ret; i++) {
		ssize_t vl = rfs_fs_getxattr(fs, node, nm.v[i], val, RFS_XATTR_MAX);
		if (vl < 0) {
			ret = (int)vl;
			break;
		}
		fsd_printf(out, " x:%s=%zd:%016" PRIx64, nm.v[i], vl,
			   crc64_ecma_refl(0, val, (uint64_t)vl));
	}
	free(val);
	fsd_names_free(&nm);
	free(list);
	return ret;
}

static int fsd_inode(rfs_fs *fs, rfs_nodeid node, const struct stat *st,
		     enum fsd_mode mode, tu_buf *out)
{
	int ret = 0;
	char type = S_ISDIR(st->st_mode)   ? 'd'
		    : S_ISREG(st->st_mode) ? 'f'
		    : S_ISLNK(st->st_mode) ? 'l'
		    : S_ISFIFO(st->st_mode) ? 'p'
		    : S_ISSOCK(st->st_mode) ? 's'
		    : S_ISCHR(st->st_mode)  ? 'c'
		    : S_ISBLK(st->st_mode)  ? 'b'
					    : '?';
	fsd_printf(out, " %c mode=%o uid=%u gid=%u nlink=%lu ino=%" PRIx64 " size=%lld blocks=%lld",
		   type, (unsigned)st->st_mode, (unsigned)st->st_uid, (unsigned)st->st_gid,
		   (unsigned long)st->st_nlink, (uint64_t)st->st_ino, (long long)st->st_size,
		   (long long)st->st_blocks);
	if (S_ISREG(st->st_mode)) {
		fsd_exts x = {0};
		uint64_t h = 0;
		ret = rfs_fs_extents(fs, node, fsd_ext_cb, &x);
		if (!ret)
			ret = (mode & FSD_RAW) ? fsd_data_raw(fs, node, &x, (uint64_t)st->st_size, &h)
					      : fsd_data_read(fs, node, (uint64_t)st->st_size, &h);
		fsd_printf(out, " data=%016" PRIx64 " ext=", h);
		for (size_t i = 0; i < x.n; i++)
			fsd_printf(out, "%s%" PRIu64 "+%" PRIu64 "%s%s%s", i ? "," : "",
				   x.v[i].logical / RFS_BLOCK_SIZE, x.v[i].length / RFS_BLOCK_SIZE,
				   x.v[i].unwritten ? "u" : "", x.v[i].inline_data ? "i" : "",
				   x.v[i].shared && !(mode & FSD_NOSHARED) ? "s" : "");
		free(x.v);
	} else if (S_ISLNK(st->st_mode)) {
		char target[RFS_SYMLINK_MAX + 1];
		int n = rfs_fs_readlink(fs, node, target, sizeof target);
		if (n < 0)
			ret = n;
		else
			fsd_printf(out, " -> %s", target);
	} else if (S_ISCHR(st->st_mode) || S_ISBLK(st->st_mode)) {
		fsd_printf(out, " rdev=%lx", (unsigned long)st->st_rdev);
	}
	if (!ret)
		ret = fsd_xattrs(fs, node, out);
	fsd_printf(out, "\n");
	return ret;
}

static int fsd_dir(rfs_fs *fs, rfs_nodeid dir, const char *path,
		   enum fsd_mode mode, tu_buf *out, int depth)
{
	fsd_names nm = {0};
	if (depth > 64)
		return -ELOOP;
	int ret = rfs_fs_readdir(fs, dir, 0, false, fsd_name_cb, &nm);
	if (!ret && nm.n)
		qsort(nm.v, nm.n, sizeof(char *), fsd_strcmp);
	for (size_t i = 0; i < nm.n && !ret; i++) {
		rfs_nodeid node;
		struct stat st;
		ret = rfs_fs_lookup(fs, dir, nm.v[i], &node, &st);
		if (ret)
			break;
		char *sub = malloc(strlen(path) + strlen(nm.v[i]) + 2);
		assert_non_null(sub);
		sprintf(sub, "%s/%s", path, nm.v[i]);
		fsd_printf(out, "%s", sub);
		ret = fsd_inode(fs, node, &st, mode, out);
		if (!ret && S_ISDIR(st.st_mode))
			ret = fsd_dir(fs, node, sub, mode, out, depth + 1);
		free(sub);
		rfs_fs_forget(fs, node, 1);
	}
	fsd_names_free(&nm);
	return ret;
}

/*
 * Image of the whole filesystem into out (appended; NUL-terminated, so
 * out->p is a string).  Returns 0 or the first error (negative errno).
 */
static TU_UNUSED int fsd_dump(rfs_fs *fs, enum fsd_mode mode, tu_buf *out)
{
	struct stat st;
	int ret = rfs_fs_getattr(fs, RFS_ROOT_NODE, &st);
	if (!ret) {
		fsd_printf(out, "/");
		ret = fsd_inode(fs, RFS_ROOT_NODE, &st, mode, out);
	}
	if (!ret)
		ret = fsd_dir(fs, RFS_ROOT_NODE, "", mode, out, 0);
	tu_buf_add(out, "", 1);
	return ret;
}

/* Open the pool at path read-only (what is durable now) and dump it
 * (flags: FSD_NOSHARED or 0). */
static TU_UNUSED int fsd_dump_path(const char *path, unsigned flags, tu_buf *out)
{
	rfs_fs *fs;
	int ret = rfs_fs_open(path, RFS_FS_RDONLY, &fs);
	if (ret)
		return ret;
	ret = fsd_dump(fs, (enum fsd_mode)(FSD_READ | flags), out);
	rfs_fs_close(fs);
	return ret;
}

static TU_UNUSED bool fsd_equal(const tu_buf *a, const tu_buf *b)
{
	return a->n == b->n && !memcmp(a->p, b->p, a->n);
}

/* Print up to max lines that differ between two dumps ("-" want, "+" got). */
static TU_UNUSED void fsd_print_diff(const char *want, const char *got, int max)
{
	const char *a = want, *b = got;
	int shown = 0;
	while ((*a || *b) && shown < max) {
		const char *ae = strchr(a, '\n'), *be = strchr(b, '\n');
		size_t al = ae ? (size_t)(ae - a) : strlen(a);
		size_t bl = be ? (size_t)(be - b) : strlen(b);
		if (al != bl || memcmp(a, b, al)) {
			if (al)
				print_error("  - %.*s\n", (int)al, a);
			if (bl)
				print_error("  + %.*s\n", (int)bl, b);
			shown++;
		}
		a += al + (ae ? 1 : 0);
		b += bl + (be ? 1 : 0);
	}
}

#endif
