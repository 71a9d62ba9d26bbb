/*
 * Compact inode records (src/fs/irec.c, volume format 6): every
 * combination of fields that leave their usual value round-trips through
 * the compact and the fixed form; malformed compact values are refused,
 * never misread; a filesystem of every kind of inode reads back the same
 * after a reopen and after a crash, with fsck clean; a format 5 volume
 * reads as it is, is upgraded by a read-write mount and keeps its fixed
 * records until they are rewritten; fsck finds a corrupt compact record
 * and a compact record in a volume older than format 6.  Mutable loads
 * find the records they decoded or stored before by their bytes, and
 * never another inode's.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "common/fsfix.h"
#include "reflinkfs/fs.h"
#include "reflinkfs/log.h"

#include "fs/fs_internal.h"

static const struct rfs_ctx g_ctx = {.uid = 1000, .gid = 1000, .pid = 1};

static uint64_t rng = 42;
static uint64_t rnd(void)
{
	uint64_t z = (rng += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Some value of a 64-bit field: small, large or an extreme. */
static uint64_t val64(void)
{
	switch (rnd() % 5) {
	case 0: return 1 + rnd() % 100;
	case 1: return rnd();
	case 2: return UINT64_MAX;
	case 3: return 1ull << 63;
	default: return rnd() >> (rnd() % 64);
	}
}

static uint32_t val32(void)
{
	return (uint32_t)(rnd() % 3 ? rnd() : (rnd() % 2 ? UINT32_MAX : 2));
}

/* The 13 ways a record's field can differ from its usual value. */
enum { F_MNS, F_CT, F_CNS, F_AT, F_ANS, F_BT, F_BNS, F_NLINK, F_BLOCKS, F_RDEV,
       F_FLAGS, F_GEN, F_DIRX, F_N };

static void make_rec(struct rfs_irec *r, unsigned mask)
{
	memset(r, 0, sizeof(*r));
	struct rfs_inode *i = &r->i;
	i->subtree = rnd() % 2 ? 0 : rnd() >> 16;
	i->ino = rnd() % 2 ? 2 + rnd() % 1000 : (rnd() >> 16) & ((1ull << 48) - 1);
	i->mode = rnd() % 2 ? (S_IFREG | 0644) : val32();
	i->uid = rnd() % 2 ? 0 : val32();
	i->gid = rnd() % 2 ? 0 : val32();
	i->size = rnd() % 2 ? rnd() % 900 : val64();
	i->mtime = rnd() % 2 ? 1700000000 + (int64_t)(rnd() % 1000) : (int64_t)val64();
	i->ctime = i->atime = i->mtime;
	i->btime = i->ctime;
	i->nlink = 1;
	i->generation = 1;
	if (mask & (1u << F_MNS))
		i->mtime_ns = 1 + (uint32_t)(rnd() % 999999999);
	if (mask & (1u << F_CT))
		i->ctime = rnd() % 2 ? (int64_t)((uint64_t)i->mtime + 1) : (int64_t)val64();
	if (mask & (1u << F_CNS))
		i->ctime_ns = (uint32_t)(rnd() % 2 ? 999999999 : 1 + rnd() % 1000);
	if (mask & (1u << F_AT))
		i->atime = rnd() % 2 ? (int64_t)((uint64_t)i->mtime - 1) : (int64_t)val64();
	if (mask & (1u << F_ANS))
		i->atime_ns = 1 + (uint32_t)(rnd() % 999999999);
	/* btime follows ctime unless told otherwise */
	i->btime = i->ctime;
	if (mask & (1u << F_BT))
		i->btime = rnd() % 2 ? (int64_t)((uint64_t)i->ctime - 3) : (int64_t)val64();
	if (i->btime == i->ctime && (mask & (1u << F_BT)))
		i->btime ^= 1;
	if (mask & (1u << F_BNS))
		i->btime_ns = 1 + (uint32_t)(rnd() % 999999999);
	if (mask & (1u << F_NLINK))
		i->nlink = rnd() % 2 ? 0 : 2 + (uint32_t)(rnd() % 10);
	if (mask & (1u << F_BLOCKS))
		i->blocks = val64();
	if (mask & (1u << F_RDEV))
		i->rdev = val64();
	if (mask & (1u << F_FLAGS))
		i->flags = val32() | 1;
	if (mask & (1u << F_GEN))
		i->generation = rnd() % 2 ? 0 : val32() | 2;
	if (mask & (1u << F_DIRX)) {
		unsigned w = 1 + (unsigned)(rnd() % 7);
		i->links_below = (w & 1) ? val64() : 0;
		i->volume = (w & 2) ? val64() : 0;
		i->vols_below = (w & 4) ? val64() : 0;
	}
	r->taillen = rnd() % 4 ? rnd() % 40 : rnd() % (RFS_INLINE_MAX + 1);
	for (size_t k = 0; k < r->taillen; k++)
		r->tail[k] = (char)rnd();
}

static void same_rec(const struct rfs_irec *a, const struct rfs_irec *b)
{
	assert_memory_equal(&a->i, &b->i, sizeof(a->i));
	assert_int_equal(a->taillen, b->taillen);
	assert_memory_equal(a->tail, b->tail, a->taillen);
}

/* Every combination of the 13 optional fields, several values each,
 * through both forms. */
static void test_roundtrip(void **state)
{
	(void)state;
	uint8_t v[RFS_VAL_MAX];
	static struct rfs_irec a, b;
	unsigned compact = 0;
	for (unsigned mask = 0; mask < (1u << F_N); mask++) {
		for (int rep = 0; rep < 4; rep++) {
			make_rec(&a, mask);
			size_t n = rec_encode(&a, v, true);
			assert_true(n <= RFS_VAL_MAX);
			assert_true(n <= RFS_INODE_SIZE + a.taillen);
			if (rec_is_compact(v, n)) {
				compact++;
				assert_true(n < RFS_INODE_SIZE + a.taillen);
			} else {
				assert_int_equal(n, RFS_INODE_SIZE + a.taillen);
			}
			memset(&b, 0xa5, sizeof(b));
			assert_int_equal(rec_decode(v, n, &b), 0);
			same_rec(&a, &b);
			/* the fixed form, as formats 1-5 write it */
			n = rec_encode(&a, v, false);
			assert_int_equal(n, RFS_INODE_SIZE + a.taillen);
			assert_false(rec_is_compact(v, n));
			memset(&b, 0x5a, sizeof(b));
			assert_int_equal(rec_decode(v, n, &b), 0);
			same_rec(&a, &b);
		}
	}
	/* most records are compact; all of them with few fields set */
	assert_true(compact > (4u << F_N) / 2);
	/* a plain small file's record: well under half the fixed form */
	memset(&a, 0, sizeof(a));
	a.i.ino = 123456;
	a.i.mode = S_IFREG | 0644;
	a.i.nlink = 1;
	a.i.generation = 1;
	a.i.size = 4000;
	a.i.blocks = 1;
	a.i.flags = RFS_INODE_INLEXT;
	a.i.mtime = 1600000000;
	a.i.mtime_ns = 123456789;
	a.i.atime = 1650000000;
	a.i.atime_ns = 23456789;
	a.i.ctime = a.i.btime = 1760000000;
	a.i.ctime_ns = 3456789;
	a.i.btime_ns = 456789;
	size_t n = rec_encode(&a, v, true);
	assert_true(rec_is_compact(v, n));
	assert_true(n <= 56);
	/* an inode number past 48 bits keeps the fixed form */
	a.i.ino = 1ull << 48;
	n = rec_encode(&a, v, true);
	assert_false(rec_is_compact(v, n));
}

/* Malformed compact values: refused (-EUCLEAN), never read past their
 * end; whatever decodes re-encodes to the same record. */
static void test_malformed(void **state)
{
	(void)state;
	uint8_t v[RFS_VAL_MAX], w[RFS_VAL_MAX];
	static struct rfs_irec a, b, c;
	make_rec(&a, (1u << F_N) - 1);
	a.i.ino = 77;
	a.taillen = 0;
	size_t n = rec_encode(&a, v, true);
	assert_true(rec_is_compact(v, n));
	/* cut short anywhere: every field is needed */
	for (size_t k = 0; k < n; k++) {
		uint8_t *cut = malloc(k ? k : 1); /* exact size: ASan sees overreads */
		memcpy(cut, v, k);
		assert_int_equal(rec_decode(cut, k, &b), -EUCLEAN);
		free(cut);
	}
	/* a reserved presence bit */
	for (int bit = 13; bit < 15; bit++) {
		memcpy(w, v, n);
		w[14 + bit / 8] |= (uint8_t)(1u << (bit % 8));
		assert_int_equal(rec_decode(w, n, &b), -EUCLEAN);
	}
	/* a number longer than 64 bits, and a 32-bit field past 32 bits */
	memcpy(w, v, 16);
	memset(w + 16, 0xff, 10);
	w[26] = 0x01;
	assert_int_equal(rec_decode(w, 27, &b), -EUCLEAN);
	w[25] = 0x7f; /* 10 bytes, value past 2^64 */
	assert_int_equal(rec_decode(w, 26, &b), -EUCLEAN);
	memcpy(w, v, 16);
	w[14] = w[15] = 0;
	w[15] = 0x80;
	size_t m = 16;
	w[m++] = 0x80; w[m++] = 0x80; w[m++] = 0x80; w[m++] = 0x80; w[m++] = 0x10; /* 2^32 */
	assert_int_equal(rec_decode(w, m + 8, &b), -EUCLEAN);
	/* random damage: refused, or a record that encodes back to itself */
	for (int t = 0; t < 20000; t++) {
		make_rec(&a, (unsigned)rnd() & ((1u << F_N) - 1));
		n = rec_encode(&a, v, true);
		if (!rec_is_compact(v, n))
			continue;
		size_t len = n;
		int edits = 1 + (int)(rnd() % 4);
		for (int e = 0; e < edits; e++) {
			switch (rnd() % 3) {
			case 0: v[rnd() % len] ^= (uint8_t)(1u << (rnd() % 8)); break;
			case 1: if (len > 16) v[16 + rnd() % (len - 16)] = (uint8_t)rnd(); break;
			default: len = 16 + rnd() % (len - 15); break;
			}
		}
		uint8_t *exact = malloc(len);
		memcpy(exact, v, len);
		if (rec_decode(exact, len, &b) == 0) {
			size_t n2 = rec_encode(&b, w, true);
			assert_int_equal(rec_decode(w, n2, &c), 0);
			same_rec(&b, &c);
		}
		free(exact);
	}
}

/* ---- the filesystem ---- */

static rfs_nodeid mk(rfs_fs *fs, const char *name, mode_t mode, dev_t rdev)
{
	rfs_nodeid n;
	rfs_nodeid root;
	assert_int_equal(rfs_fs_resolve(fs, "", &root, NULL), 0);
	if (S_ISDIR(mode))
		assert_int_equal(rfs_fs_mkdir(fs, &g_ctx, root, name, mode, &n, NULL), 0);
	else
		assert_int_equal(rfs_fs_mknod(fs, &g_ctx, root, name, mode, rdev, &n, NULL), 0);
	return n;
}

static rfs_nodeid node(rfs_fs *fs, const char *path)
{
	rfs_nodeid n;
	assert_int_equal(rfs_fs_resolve(fs, path, &n, NULL), 0);
	return n;
}

static void set_times(rfs_fs *fs, rfs_nodeid n, int64_t a, long ans, int64_t m, long mns)
{
	struct stat in = {0};
	in.st_atim.tv_sec = a;
	in.st_atim.tv_nsec = ans;
	in.st_mtim.tv_sec = m;
	in.st_mtim.tv_nsec = mns;
	assert_int_equal(rfs_fs_setattr(fs, n, &in, RFS_SET_ATIME | RFS_SET_MTIME, NULL), 0);
}

static const char *const NAMES[] = {"tiny", "big", "dir", "dir/sub", "dir/sub/f", "sym",
				    "longsym", "chr", "fifo", "hard1", "hard2", "old", "owned"};
#define NNAMES (sizeof(NAMES) / sizeof(NAMES[0]))

/* Every kind of inode, with times before 1970, nanoseconds, large ids. */
static void populate(rfs_fs *fs)
{
	uint8_t buf[3 * RFS_BLOCK_SIZE];
	memset(buf, 'q', sizeof(buf));
	rfs_nodeid root = node(fs, "");
	rfs_nodeid n = mk(fs, "tiny", S_IFREG | 0600, 0);
	assert_int_equal(rfs_fs_write(fs, n, "hello", 5, 0), 5);
	n = mk(fs, "big", S_IFREG | 0644, 0);
	assert_int_equal(rfs_fs_write(fs, n, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
	rfs_nodeid d = mk(fs, "dir", S_IFDIR | 0755, 0), s;
	assert_int_equal(rfs_fs_mkdir(fs, &g_ctx, d, "sub", 0700, &s, NULL), 0);
	assert_int_equal(rfs_fs_create(fs, &g_ctx, s, "f", 0644, &n, NULL), 0);
	assert_int_equal(rfs_fs_write(fs, n, buf, 100, 0), 100);
	assert_int_equal(rfs_fs_symlink(fs, &g_ctx, root, "sym", "tiny", &n, NULL), 0);
	char target[600];
	memset(target, 'x', sizeof(target) - 1);
	target[sizeof(target) - 1] = 0;
	assert_int_equal(rfs_fs_symlink(fs, &g_ctx, root, "longsym", target, &n, NULL), 0);
	mk(fs, "chr", S_IFCHR | 0600, makedev(4000, 123456));
	mk(fs, "fifo", S_IFIFO | 0640, 0);
	n = mk(fs, "hard1", S_IFREG | 0644, 0);
	assert_int_equal(rfs_fs_write(fs, n, "ab", 2, 0), 2);
	assert_int_equal(rfs_fs_link(fs, n, root, "hard2", NULL), 0);
	n = mk(fs, "old", S_IFREG | 0644, 0);
	set_times(fs, n, -86400 * 365, 999999999, -1, 1);
	n = mk(fs, "owned", S_IFREG | 04755, 0);
	struct stat in = {0};
	in.st_uid = 4000000000u;
	in.st_gid = 65534;
	assert_int_equal(rfs_fs_setattr(fs, n, &in, RFS_SET_UID | RFS_SET_GID, NULL), 0);
	assert_int_equal(rfs_fs_setxattr(fs, &g_ctx, n, "user.k", "v", 1, 0), 0);
}

static void stat_all(rfs_fs *fs, struct stat *st)
{
	for (size_t k = 0; k < NNAMES; k++) {
		rfs_nodeid n;
		assert_int_equal(rfs_fs_resolve(fs, NAMES[k], &n, NULL), 0);
		assert_int_equal(rfs_fs_getattr(fs, n, &st[k]), 0);
	}
}

static void same_stats(const struct stat *a, const struct stat *b)
{
	for (size_t k = 0; k < NNAMES; k++) {
		assert_int_equal(a[k].st_ino, b[k].st_ino);
		assert_int_equal(a[k].st_mode, b[k].st_mode);
		assert_int_equal(a[k].st_nlink, b[k].st_nlink);
		assert_int_equal(a[k].st_uid, b[k].st_uid);
		assert_int_equal(a[k].st_gid, b[k].st_gid);
		assert_int_equal(a[k].st_rdev, b[k].st_rdev);
		assert_int_equal(a[k].st_size, b[k].st_size);
		assert_int_equal(a[k].st_blocks, b[k].st_blocks);
		assert_memory_equal(&a[k].st_atim, &b[k].st_atim, sizeof(a[k].st_atim));
		assert_memory_equal(&a[k].st_mtim, &b[k].st_mtim, sizeof(a[k].st_mtim));
		assert_memory_equal(&a[k].st_ctim, &b[k].st_ctim, sizeof(a[k].st_ctim));
	}
}

/* The raw value of root entry name in the closed pool; its length. */
static size_t raw_entry(const char *name, uint8_t *v)
{
	rfs_pool *pool;
	rfs_tree vol;
	struct rfs_irec root;
	assert_int_equal(rfs_pool_open(g_pool, RFS_OPEN_RDONLY, &pool), 0);
	rfs_pool_rdlock(pool);
	assert_int_equal(rfs_catalog_get(pool, RFS_TOP_VOLUME, &vol), 0);
	assert_int_equal(rec_get(pool, &vol, "R", 1, &root, false), 0);
	rfs_tree t = FS_TREE(root.i.subtree, RFS_OWNER_DIR);
	uint8_t key[RFS_KEY_MAX];
	size_t kl = dent_key(key, name, strlen(name)), vl = RFS_VAL_MAX;
	assert_int_equal(rfs_tree_lookup(pool, &t, key, kl, v, &vl, NULL), 0);
	rfs_pool_unlock(pool);
	rfs_pool_close(pool);
	return vl;
}

static bool compact_on_disk(const char *name)
{
	uint8_t v[RFS_VAL_MAX];
	size_t vl = raw_entry(name, v);
	return rec_is_compact(v, vl);
}

/* Replace the raw value of root entry name in the closed pool with fn's
 * change of it. */
static void patch_raw(const char *name, size_t (*fn)(uint8_t *v, size_t vl))
{
	rfs_pool *pool;
	rfs_tree vol;
	struct rfs_irec root;
	uint8_t v[RFS_VAL_MAX];
	assert_int_equal(rfs_pool_open(g_pool, 0, &pool), 0);
	rfs_pool_wrlock(pool);
	assert_int_equal(rfs_catalog_get(pool, RFS_TOP_VOLUME, &vol), 0);
	vol.owner = RFS_OWNER_VOLUME;
	assert_int_equal(rec_get(pool, &vol, "R", 1, &root, true), 0);
	rfs_tree t = FS_TREE(root.i.subtree, RFS_OWNER_DIR);
	uint8_t key[RFS_KEY_MAX];
	size_t kl = dent_key(key, name, strlen(name)), vl = RFS_VAL_MAX;
	uint8_t fl;
	assert_int_equal(rfs_tree_lookup_mut(pool, &t, key, kl, v, &vl, &fl), 0);
	vl = fn(v, vl);
	assert_int_equal(rfs_tree_put(pool, &t, key, kl, v, vl, fl, RFS_PUT_REPLACE | RFS_KEEP_REFS), 0);
	root.i.subtree = t.root;
	assert_int_equal(rec_put_pool(pool, &vol, "R", 1, &root, RFS_PUT_REPLACE | RFS_KEEP_REFS, true), 0);
	assert_int_equal(rfs_catalog_set(pool, RFS_TOP_VOLUME, &vol), 0);
	assert_int_equal(rfs_pool_commit_locked(pool), 0);
	rfs_pool_unlock(pool);
	rfs_pool_close(pool);
}

static void expect_content(rfs_fs *fs)
{
	char b[16] = {0}, t[700];
	assert_int_equal(rfs_fs_read(fs, node(fs, "tiny"), b, sizeof(b), 0), 5);
	assert_string_equal(b, "hello");
	assert_int_equal(rfs_fs_readlink(fs, node(fs, "longsym"), t, sizeof(t)), 599);
	assert_int_equal(rfs_fs_getxattr(fs, node(fs, "owned"), "user.k", b, sizeof(b)), 1);
}

/* Every kind of inode reads back the same after a reopen, in the compact
 * form, with fsck clean. */
static void test_reopen(void **state)
{
	(void)state;
	struct stat a[NNAMES], b[NNAMES];
	rfs_fs *fs = fx_fresh(64 << 20, 0);
	populate(fs);
	stat_all(fs, a);
	fs = fx_reopen(fs, 0);
	stat_all(fs, b);
	same_stats(a, b);
	expect_content(fs);
	assert_int_equal(rfs_fs_close(fs), 0);
	const char *const roots[] = {"tiny", "big", "dir", "sym", "longsym", "chr", "fifo",
				     "hard1", "old", "owned"};
	for (size_t k = 0; k < sizeof(roots) / sizeof(roots[0]); k++)
		assert_true(compact_on_disk(roots[k]));
}

/* A crash at any point leaves a pool fsck finds clean, holding what the
 * last sync made durable. */
static void test_crash(void **state)
{
	(void)state;
	struct stat a[NNAMES], b[NNAMES];
	for (int mode = 0; mode < 3; mode++) {
		rfs_fs *fs = fx_fresh(64 << 20, 0);
		assert_int_equal(rfs_fs_close(fs), 0);
		assert_int_equal(rfs_fs_open(g_pool, RFS_FS_CRASHSIM, &fs), 0);
		populate(fs);
		assert_int_equal(rfs_fs_sync(fs), 0);
		stat_all(fs, a);
		/* changes after the sync: lost by the crash */
		set_times(fs, node(fs, "tiny"), 5, 5, 6, 6);
		assert_int_equal(rfs_fs_unlink(fs, node(fs, ""), "hard2"), 0);
		rfs_fs_crash(fs, (enum rfs_crash_mode)mode, 11 + (uint64_t)mode);
		assert_int_equal(fx_fsck(), 0);
		assert_int_equal(rfs_fs_open(g_pool, 0, &fs), 0);
		stat_all(fs, b);
		same_stats(a, b);
		expect_content(fs);
		fs = fx_reopen(fs, 0);
		assert_int_equal(rfs_fs_close(fs), 0);
	}
}

/* A format 5 volume: read as it is; a read-only mount leaves it at 5;
 * a read-write mount makes it 6 and leaves old records fixed until they
 * are written; fsck is clean all along. */
static void test_upgrade(void **state)
{
	(void)state;
	struct stat a[NNAMES], b[NNAMES];
	rfs_fs *fs = fx_fresh(64 << 20, 0);
	fs->top->m.version = RFS_VOL_COMPACT - 1; /* written as format 5 would */
	populate(fs);
	stat_all(fs, a);
	assert_int_equal(rfs_fs_close(fs), 0);
	fx_set_vol_version(RFS_VOL_COMPACT - 1);
	assert_false(compact_on_disk("tiny"));
	assert_false(compact_on_disk("owned"));
	assert_int_equal(fx_fsck(), 0);
	assert_int_equal(rfs_fs_open(g_pool, RFS_FS_RDONLY, &fs), 0);
	assert_int_equal(fs->top->m.version, RFS_VOL_COMPACT - 1);
	stat_all(fs, b);
	same_stats(a, b);
	expect_content(fs);
	assert_int_equal(rfs_fs_close(fs), 0);
	/* read-write: upgraded; one record rewritten, one new */
	assert_int_equal(rfs_fs_open(g_pool, 0, &fs), 0);
	assert_int_equal(fs->top->m.version, RFS_VOL_VERSION);
	stat_all(fs, b);
	same_stats(a, b);
	set_times(fs, node(fs, "tiny"), 7, 8, 9, 10);
	mk(fs, "new", S_IFREG | 0644, 0);
	stat_all(fs, a);
	fs = fx_reopen(fs, 0);
	stat_all(fs, b);
	same_stats(a, b);
	expect_content(fs);
	assert_int_equal(rfs_fs_close(fs), 0);
	assert_true(compact_on_disk("tiny"));
	assert_true(compact_on_disk("new"));
	assert_false(compact_on_disk("owned"));
	assert_int_equal(fx_fsck(), 0);
	/* compact records in a volume that says format 5: fsck objects */
	fx_set_vol_version(RFS_VOL_COMPACT - 1);
	assert_true(fx_fsck() > 0);
	/* and a format newer than this program is refused */
	fx_set_vol_version(RFS_VOL_VERSION + 1);
	assert_int_equal(rfs_fs_open(g_pool, RFS_FS_RDONLY, &fs), -EPROTONOSUPPORT);
}

static size_t set_reserved(uint8_t *v, size_t vl)
{
	assert_true(rec_is_compact(v, vl));
	v[15] |= 0x40;
	return vl;
}

static size_t cut_fields(uint8_t *v, size_t vl)
{
	assert_true(rec_is_compact(v, vl));
	(void)v;
	return 17; /* the header and one byte of the numbers */
}

/* fsck finds a damaged compact record; the filesystem gives an error for
 * it, not a wrong inode. */
static void test_fsck_corrupt(void **state)
{
	(void)state;
	size_t (*damage[])(uint8_t *, size_t) = {set_reserved, cut_fields};
	for (size_t k = 0; k < 2; k++) {
		rfs_fs *fs = fx_fresh(64 << 20, 0);
		mk(fs, "f", S_IFREG | 0644, 0);
		mk(fs, "g", S_IFREG | 0644, 0);
		assert_int_equal(rfs_fs_close(fs), 0);
		assert_int_equal(fx_fsck(), 0);
		patch_raw("f", damage[k]);
		assert_true(fx_fsck() > 0);
		assert_int_equal(rfs_fs_open(g_pool, RFS_FS_RDONLY, &fs), 0);
		rfs_nodeid n;
		assert_int_equal(rfs_fs_resolve(fs, "f", &n, NULL), -EUCLEAN);
		assert_int_equal(rfs_fs_resolve(fs, "g", &n, NULL), 0);
		assert_int_equal(rfs_fs_close(fs), 0);
	}
}

/* Decoded records (inode.c, fs->irc): mutable loads find the records
 * the last store kept, by their bytes, for every inode that shares a
 * slot with others -- 40 files in 8 slots, written in turn, each change
 * landing on the right inode -- and what they store is what a reader
 * decodes from the tree, also after a reopen, with fsck clean. */
#define IRC_FILES 40
static void test_decoded_copies(void **state)
{
	(void)state;
	rfs_fs *fs = fx_fresh(64 << 20, 0);
	rfs_nodeid d = mk(fs, "d", S_IFDIR | 0755, 0), f[IRC_FILES];
	uint8_t buf[RFS_BLOCK_SIZE];
	for (int i = 0; i < IRC_FILES; i++) {
		char name[16];
		snprintf(name, sizeof(name), "f%d", i);
		assert_int_equal(rfs_fs_create(fs, &g_ctx, d, name, 0644, &f[i], NULL), 0);
	}
	uint64_t hits0 = fs->irc_hits;
	/* Round r writes block i + r of file i: its size grows by a block
	 * per round, and its own block count with it. */
	for (int r = 0; r < 4; r++)
		for (int i = 0; i < IRC_FILES; i++) {
			memset(buf, 'a' + (i + r) % 26, sizeof(buf));
			assert_int_equal(rfs_fs_write(fs, f[i], buf, sizeof(buf),
						      (uint64_t)(i + r) * RFS_BLOCK_SIZE),
					 (ssize_t)sizeof(buf));
			/* Mapped now, by an operation of its own (a
			 * delayed batch would load each file once). */
			rfs_fs_settle(fs);
		}
	/* Every write found the root's and d's records (2 per write) and,
	 * past the first round, mostly its file's. */
	assert_true(fs->irc_hits - hits0 >= 3 * 2 * IRC_FILES);
	assert_true(fs->irc_misses > 0);
	for (int pass = 0; pass < 2; pass++) {
		for (int i = 0; i < IRC_FILES; i++) {
			char name[16];
			snprintf(name, sizeof(name), "d/f%d", i);
			struct stat st;
			assert_int_equal(rfs_fs_getattr(fs, node(fs, name), &st), 0);
			assert_int_equal(st.st_size, (i + 4) * RFS_BLOCK_SIZE);
			assert_int_equal(st.st_blocks, 4 * (RFS_BLOCK_SIZE / 512));
			char c;
			assert_int_equal(rfs_fs_read(fs, node(fs, name), &c, 1,
						     (uint64_t)(i + 3) * RFS_BLOCK_SIZE),
					 1);
			assert_int_equal(c, 'a' + (i + 3) % 26);
		}
		struct stat st;
		assert_int_equal(rfs_fs_getattr(fs, node(fs, "d"), &st), 0);
		assert_int_equal(st.st_size, IRC_FILES);
		if (!pass)
			fs = fx_reopen(fs, 0);
	}
	assert_int_equal(rfs_fs_close(fs), 0);
	assert_int_equal(fx_fsck(), 0);
}

int main(void)
{
	rfs_log_set_level(-1); /* the malformed records would log thousands of lines */
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test_setup_teardown(test_reopen, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_crash, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_upgrade, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_fsck_corrupt, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_decoded_copies, fx_setup, fx_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
