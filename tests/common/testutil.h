/*
 * Shared helpers of the reflinkfs tests (header-only, static functions).
 *
 *  - CHECK / OK assertions with messages (cmocka fail() underneath), and a
 *    hook printing extra context (seed, step) on failure;
 *  - a seeded PRNG;
 *  - temporary directories and pool lifecycle (open takes the pool write
 *    lock and keeps it; commit uses rfs_pool_commit_locked; close/crash
 *    release it first);
 *  - capture of log lines, and "does a line name block N";
 *  - a simple sorted map used as the model of a tree;
 *  - data extents with deterministic content stored in RFS_ITEM_EXTENT
 *    values: {u64 start; u64 nblocks; u32 seed; u32 csum[nblocks]};
 *  - a canonical dump of trees (block numbers replaced by the content they
 *    lead to), for comparing pool states across crashes.
 */
#ifndef RFS_TESTUTIL_H
#define RFS_TESTUTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "reflinkfs/log.h"
#include "reflinkfs/pool.h"
#include "reflinkfs/tree.h"

#if defined(__GNUC__)
#define TU_UNUSED __attribute__((unused))
#else
#define TU_UNUSED
#endif

/* ---- failure reporting ------------------------------------------------ */

/* Called (when set) before a failing CHECK gives up: prints replay info. */
static void (*tu_fail_hook)(void) TU_UNUSED;
static void tu_log_print_tail(int n);

static TU_UNUSED void tu_failed(const char *file, int line, const char *expr,
				const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static TU_UNUSED void tu_failed(const char *file, int line, const char *expr,
				const char *fmt, ...)
{
	char msg[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	print_error("%s:%d: check failed: %s: %s\n", file, line, expr, msg);
	tu_log_print_tail(10);
	if (tu_fail_hook)
		tu_fail_hook();
}

#define CHECK(cond, ...)                                                      \
	do {                                                                  \
		if (!(cond)) {                                                \
			tu_failed(__FILE__, __LINE__, #cond, __VA_ARGS__);    \
			fail();                                               \
		}                                                             \
	} while (0)

/* expr must return 0 */
#define OK(expr)                                                              \
	do {                                                                  \
		long _tu_rc = (long)(expr);                                   \
		if (_tu_rc != 0) {                                            \
			tu_failed(__FILE__, __LINE__, #expr,                  \
				  "returned %ld (%s)", _tu_rc,                \
				  _tu_rc < 0 ? strerror((int)-_tu_rc) : "");  \
			fail();                                               \
		}                                                             \
	} while (0)

/* expr must return exactly want (e.g. -ENOENT) */
#define RC(expr, want)                                                        \
	do {                                                                  \
		long _tu_rc = (long)(expr);                                   \
		long _tu_want = (long)(want);                                 \
		if (_tu_rc != _tu_want) {                                     \
			tu_failed(__FILE__, __LINE__, #expr,                  \
				  "returned %ld, expected %ld", _tu_rc,       \
				  _tu_want);                                  \
			fail();                                               \
		}                                                             \
	} while (0)

#define EQ_U64(a, b)                                                          \
	do {                                                                  \
		uint64_t _tu_a = (uint64_t)(a), _tu_b = (uint64_t)(b);        \
		if (_tu_a != _tu_b) {                                         \
			tu_failed(__FILE__, __LINE__, #a " == " #b,           \
				  "%" PRIu64 " != %" PRIu64, _tu_a, _tu_b);   \
			fail();                                               \
		}                                                             \
	} while (0)

/*
 * End of main: with failures, leave through _exit so that LeakSanitizer
 * does not add reports about the models a failed test (left by longjmp)
 * could not free; the failures themselves are what matters then.
 */
static TU_UNUSED int tu_exit(int failures)
{
	fflush(stdout);
	fflush(stderr);
	if (failures)
		_exit(1);
	return 0;
}

/* ---- PRNG --------------------------------------------------------------- */

typedef struct {
	uint64_t s;
} tu_rng;

static TU_UNUSED uint64_t tu_splitmix(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static TU_UNUSED uint64_t tu_next(tu_rng *r)
{
	return tu_splitmix(&r->s);
}

/* uniform in [0, n) (n > 0) */
static TU_UNUSED uint64_t tu_below(tu_rng *r, uint64_t n)
{
	return n ? tu_next(r) % n : 0;
}

/* uniform in [lo, hi] */
static TU_UNUSED uint64_t tu_range(tu_rng *r, uint64_t lo, uint64_t hi)
{
	return lo + tu_below(r, hi - lo + 1);
}

static TU_UNUSED void tu_fill(tu_rng *r, void *p, size_t n)
{
	uint8_t *b = p;
	while (n) {
		uint64_t x = tu_next(r);
		size_t k = n < 8 ? n : 8;
		memcpy(b, &x, k);
		b += k;
		n -= k;
	}
}

/* ---- log capture -------------------------------------------------------- */

#define TU_LOG_MAX 4096
static struct {
	char *lines[TU_LOG_MAX];
	size_t n;
	size_t dropped;
	bool echo;
} tu_log;

static void tu_log_sink(void *arg, int level, const char *line)
{
	(void)arg;
	if (tu_log.echo)
		fprintf(stderr, "[log %d] %s\n", level, line);
	if (tu_log.n < TU_LOG_MAX) {
		tu_log.lines[tu_log.n++] = strdup(line);
	} else {
		/* keep the newest lines: drop the oldest */
		free(tu_log.lines[0]);
		memmove(&tu_log.lines[0], &tu_log.lines[1],
			(TU_LOG_MAX - 1) * sizeof(char *));
		tu_log.lines[TU_LOG_MAX - 1] = strdup(line);
		tu_log.dropped++;
	}
}

static TU_UNUSED void tu_log_clear(void)
{
	for (size_t i = 0; i < tu_log.n; i++)
		free(tu_log.lines[i]);
	tu_log.n = 0;
	tu_log.dropped = 0;
}

/* Capture every log line (env RFS_TEST_LOG=1 also echoes them). */
static TU_UNUSED void tu_log_capture(void)
{
	const char *e = getenv("RFS_TEST_LOG");
	tu_log.echo = e && *e && *e != '0';
	rfs_log_set_sink(tu_log_sink, NULL);
	rfs_log_set_level(RFS_LOG_DEBUG);
}

static void tu_log_print_tail(int n)
{
	size_t from = tu_log.n > (size_t)n ? tu_log.n - (size_t)n : 0;
	for (size_t i = from; i < tu_log.n; i++)
		print_error("  log: %s\n", tu_log.lines[i]);
}

/* Does s contain the number v as a token (decimal, or 0x-hex)? */
static TU_UNUSED bool tu_str_names_block(const char *s, uint64_t v)
{
	char dec[32], hex[32], hex2[32];
	snprintf(dec, sizeof dec, "%" PRIu64, v);
	snprintf(hex, sizeof hex, "0x%" PRIx64, v);
	snprintf(hex2, sizeof hex2, "%" PRIx64, v);
	const char *pats[3] = {dec, hex, hex2};
	for (int k = 0; k < 3; k++) {
		size_t pl = strlen(pats[k]);
		for (const char *p = strstr(s, pats[k]); p;
		     p = strstr(p + 1, pats[k])) {
			char before = p == s ? ' ' : p[-1];
			char after = p[pl];
			bool hexy = k > 0;
			bool isnum_b = (before >= '0' && before <= '9') ||
				       (hexy && ((before >= 'a' && before <= 'f') ||
						 before == 'x'));
			bool isnum_a = (after >= '0' && after <= '9') ||
				       (hexy && after >= 'a' && after <= 'f');
			if (k == 1) /* "0x..." token, before must not be alnum */
				isnum_b = (before >= '0' && before <= '9') ||
					  (before >= 'a' && before <= 'z');
			if (k == 2 && before == 'x')
				isnum_b = true; /* covered by pattern 1 */
			if (!isnum_b && !isnum_a)
				return true;
		}
	}
	return false;
}

static TU_UNUSED bool tu_log_names_block(uint64_t blocknr)
{
	for (size_t i = 0; i < tu_log.n; i++)
		if (tu_str_names_block(tu_log.lines[i], blocknr))
			return true;
	return false;
}

/* ---- temporary directories ------------------------------------------------ */

static int tu_rm_cb(const char *p, const struct stat *sb, int flag,
		    struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(p);
}

static TU_UNUSED void tu_rmrf(const char *dir)
{
	if (dir && *dir)
		nftw(dir, tu_rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static TU_UNUSED void tu_mkdtemp(char *out, size_t outlen)
{
	/* the scratch directory run-tests.sh gives each test, else $TMPDIR */
	const char *t = getenv("RFS_TEST_DIR");
	if (!t || !*t)
		t = getenv("TMPDIR");
	if (!t || !*t)
		t = "/tmp";
	snprintf(out, outlen, "%s/rfs-test-XXXXXX", t);
	CHECK(mkdtemp(out) != NULL, "mkdtemp %s: %s", out, strerror(errno));
}

/* ---- pool lifecycle ------------------------------------------------------- */

typedef struct {
	char dir[1024];
	char path[2048];
	rfs_pool *pool;
	bool locked;
} tu_pool;

#define TU_POOL_SIZE (256ull << 20)

static TU_UNUSED void tu_lock(tu_pool *c)
{
	if (c->pool && !c->locked) {
		rfs_pool_wrlock(c->pool);
		c->locked = true;
	}
}

static TU_UNUSED void tu_unlock(tu_pool *c)
{
	if (c->pool && c->locked) {
		rfs_pool_unlock(c->pool);
		c->locked = false;
	}
}

/* temp dir + path "<dir>/pool" (not created) */
static TU_UNUSED void tu_pool_init(tu_pool *c)
{
	memset(c, 0, sizeof(*c));
	tu_mkdtemp(c->dir, sizeof(c->dir));
	snprintf(c->path, sizeof(c->path), "%s/pool", c->dir);
}

static TU_UNUSED void tu_pool_create(tu_pool *c, uint64_t size)
{
	OK(rfs_pool_create(c->path, size ? size : TU_POOL_SIZE, 0));
}

static TU_UNUSED void tu_open(tu_pool *c, unsigned flags)
{
	CHECK(c->pool == NULL, "pool already open");
	rfs_pool *p = (rfs_pool *)(uintptr_t)1;
	int rc = rfs_pool_open(c->path, flags, &p);
	CHECK(rc == 0 && p != NULL, "rfs_pool_open(%s) = %d", c->path, rc);
	c->pool = p;
	c->locked = false;
	tu_lock(c);
}

static TU_UNUSED void tu_close(tu_pool *c)
{
	if (!c->pool)
		return;
	tu_unlock(c);
	rfs_pool_close(c->pool);
	c->pool = NULL;
}

static TU_UNUSED void tu_commit(tu_pool *c)
{
	OK(rfs_pool_commit_locked(c->pool));
}

static TU_UNUSED void tu_crash(tu_pool *c, enum rfs_crash_mode mode,
			       uint64_t seed)
{
	tu_unlock(c);
	rfs_pool_crash(c->pool, mode, seed);
	c->pool = NULL;
}

/* Runs run(c, k, mode, seed) at every flush point k (1..nflush) of a
 * workload, with one seed (RFS_CRASH_DROP_ALL: nothing random) or
 * $RFS_CRASH_SEEDS seeds (else dflt_seeds) per point; the seed of a run
 * depends only on k, the seed's number and mode, so a failure replays.
 * The log is cleared after each run. */
static TU_UNUSED void tu_crash_points(tu_pool *c, uint64_t nflush, enum rfs_crash_mode mode,
				      uint64_t dflt_seeds,
				      void (*run)(tu_pool *c, uint64_t k,
						  enum rfs_crash_mode mode, uint64_t seed))
{
	const char *e = getenv("RFS_CRASH_SEEDS");
	uint64_t seeds = mode == RFS_CRASH_DROP_ALL ? 1 : (e && *e ? strtoull(e, NULL, 0) : dflt_seeds);
	for (uint64_t k = 1; k <= nflush; k++)
		for (uint64_t s = 0; s < seeds; s++) {
			run(c, k, mode, k * 1000003 + s * 7919 + (uint64_t)mode);
			tu_log_clear();
		}
}

static TU_UNUSED void tu_reopen(tu_pool *c, unsigned flags)
{
	tu_close(c);
	tu_open(c, flags);
}

static TU_UNUSED void tu_pool_fini(tu_pool *c)
{
	tu_close(c);
	const char *keep = getenv("RFS_TEST_KEEP");
	if (keep && *keep && *keep != '0')
		fprintf(stderr, "keeping %s\n", c->dir);
	else
		tu_rmrf(c->dir);
	c->dir[0] = 0;
}

/* cmocka setup of the engine tests: *state becomes a tu_pool with its
 * own scratch directory and log capture, no pool made yet.  Returns 0, or
 * -1 when out of memory. */
static TU_UNUSED int tu_setup(void **state)
{
	tu_pool *c = calloc(1, sizeof(*c));
	if (!c)
		return -1;
	tu_log_capture();
	tu_log_clear();
	tu_pool_init(c);
	*state = c;
	return 0;
}

/* tu_setup, then a 1 GiB pool made and opened (write lock held). */
static TU_UNUSED int tu_setup_open(void **state)
{
	if (tu_setup(state))
		return -1;
	tu_pool_create(*state, 1ull << 30);
	tu_open(*state, 0);
	return 0;
}

/* cmocka teardown of tu_setup / tu_setup_open: closes the pool, removes
 * its directory (unless RFS_TEST_KEEP), frees the state.  Returns 0. */
static TU_UNUSED int tu_teardown(void **state)
{
	tu_pool *c = *state;
	tu_pool_fini(c);
	free(c);
	tu_log_clear();
	return 0;
}

static TU_UNUSED struct rfs_pool_stats tu_stats(tu_pool *c)
{
	struct rfs_pool_stats st;
	memset(&st, 0xa5, sizeof(st));
	rfs_pool_stats(c->pool, &st);
	return st;
}

/* ---- rfs_check with captured reports --------------------------------------- */

typedef struct {
	size_t n;
	uint64_t blocks[256];
	char what[256][160];
} tu_reports;

static void tu_report_cb(void *arg, uint64_t blocknr, const char *what)
{
	tu_reports *r = arg;
	if (r->n < 256) {
		r->blocks[r->n] = blocknr;
		snprintf(r->what[r->n], sizeof(r->what[0]), "%s",
			 what ? what : "(null)");
	}
	r->n++;
}

static TU_UNUSED bool tu_reports_name(const tu_reports *r, uint64_t blocknr)
{
	size_t n = r->n < 256 ? r->n : 256;
	for (size_t i = 0; i < n; i++)
		if (r->blocks[i] == blocknr ||
		    tu_str_names_block(r->what[i], blocknr))
			return true;
	return false;
}

static TU_UNUSED void tu_reports_print(const tu_reports *r, size_t max)
{
	size_t n = r->n < 256 ? r->n : 256;
	for (size_t i = 0; i < n && i < max; i++)
		print_error("  check: block %" PRIu64 ": %s\n", r->blocks[i],
			    r->what[i]);
}

static TU_UNUSED long tu_check(tu_pool *c, tu_reports *rep,
			       struct rfs_check_stats *st)
{
	struct rfs_check_stats s;
	memset(&s, 0, sizeof(s));
	memset(rep, 0, sizeof(*rep));
	long rc = rfs_check(c->pool, tu_report_cb, rep, st ? st : &s);
	return rc;
}

/* rfs_check must return 0 (and report nothing) */
#define CHECK_CLEAN(c)                                                        \
	do {                                                                  \
		static tu_reports _tu_rep;                                    \
		long _tu_n = tu_check((c), &_tu_rep, NULL);                   \
		if (_tu_n != 0 || _tu_rep.n != 0) {                           \
			tu_reports_print(&_tu_rep, 20);                       \
			tu_failed(__FILE__, __LINE__, "rfs_check == 0",       \
				  "rfs_check returned %ld, %zu reports",      \
				  _tu_n, _tu_rep.n);                          \
			fail();                                               \
		}                                                             \
	} while (0)

/* ---- raw file access --------------------------------------------------------- */

static TU_UNUSED int tu_pread_block(const char *path, uint64_t blocknr,
				    void *buf)
{
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return -errno;
	ssize_t n = pread(fd, buf, RFS_BLOCK_SIZE,
			  (off_t)(blocknr * RFS_BLOCK_SIZE));
	int err = n < 0 ? -errno : 0;
	close(fd);
	if (err)
		return err;
	if (n < (ssize_t)RFS_BLOCK_SIZE)
		memset((uint8_t *)buf + (n > 0 ? n : 0), 0,
		       RFS_BLOCK_SIZE - (size_t)(n > 0 ? n : 0));
	return n == (ssize_t)RFS_BLOCK_SIZE ? 0 : -ENODATA;
}

static TU_UNUSED int tu_pwrite_block(const char *path, uint64_t blocknr,
				     const void *buf)
{
	int fd = open(path, O_WRONLY);
	if (fd < 0)
		return -errno;
	ssize_t n = pwrite(fd, buf, RFS_BLOCK_SIZE,
			   (off_t)(blocknr * RFS_BLOCK_SIZE));
	int err = n < 0 ? -errno : 0;
	close(fd);
	return err ? err : (n == (ssize_t)RFS_BLOCK_SIZE ? 0 : -EIO);
}

/* flip bit `bit` (0..RFS_BLOCK_SIZE*8-1) of block blocknr in the file */
static TU_UNUSED void tu_flip_bit(const char *path, uint64_t blocknr,
				  unsigned bit)
{
	uint8_t b[RFS_BLOCK_SIZE];
	OK(tu_pread_block(path, blocknr, b));
	b[(bit / 8) % RFS_BLOCK_SIZE] ^= (uint8_t)(1u << (bit % 8));
	OK(tu_pwrite_block(path, blocknr, b));
}

static TU_UNUSED int tu_copy_file(const char *from, const char *to)
{
	int in = open(from, O_RDONLY);
	if (in < 0)
		return -errno;
	int out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (out < 0) {
		int e = -errno;
		close(in);
		return e;
	}
	static uint8_t buf[1 << 16];
	static const uint8_t zero[1 << 16];
	off_t off = 0;
	int err = 0;
	for (;;) {
		ssize_t n = read(in, buf, sizeof(buf));
		if (n < 0) {
			err = -errno;
			break;
		}
		if (n == 0)
			break;
		/* keep holes */
		if (memcmp(buf, zero, (size_t)n) != 0 &&
		    pwrite(out, buf, (size_t)n, off) != n) {
			err = -EIO;
			break;
		}
		off += n;
	}
	if (!err && ftruncate(out, off) != 0)
		err = -errno;
	close(in);
	close(out);
	return err;
}

static TU_UNUSED uint64_t tu_file_size(const char *path)
{
	struct stat st;
	if (stat(path, &st) != 0)
		return 0;
	return (uint64_t)st.st_size;
}

/* crc32c (Castagnoli), reflected, init ~0, final ~0 */
static TU_UNUSED uint32_t tu_crc32c(uint32_t crc, const void *data, size_t n)
{
	static uint32_t table[256];
	static bool init;
	if (!init) {
		for (uint32_t i = 0; i < 256; i++) {
			uint32_t c = i;
			for (int k = 0; k < 8; k++)
				c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
			table[i] = c;
		}
		init = true;
	}
	const uint8_t *p = data;
	crc = ~crc;
	while (n--)
		crc = table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return ~crc;
}

/* the pool's convention: isa-l crc32_iscsi(buf, len, ~0) = ~standard crc32c */
static TU_UNUSED uint32_t tu_rfs_crc(const void *data, size_t n)
{
	return ~tu_crc32c(0, data, n);
}

/* crc of a metadata block with its crc field (bytes 4..7) taken as zero */
static TU_UNUSED uint32_t tu_meta_crc(const uint8_t *block)
{
	uint8_t tmp[RFS_BLOCK_SIZE];
	memcpy(tmp, block, RFS_BLOCK_SIZE);
	memset(tmp + 4, 0, 4);
	return tu_rfs_crc(tmp, RFS_BLOCK_SIZE);
}

/* ---- keys ----------------------------------------------------------------------- */

static TU_UNUSED void tu_be64(uint8_t *out, uint64_t v)
{
	for (int i = 7; i >= 0; i--) {
		out[i] = (uint8_t)v;
		v >>= 8;
	}
}

/* memcmp order, shorter first on a tie */
static TU_UNUSED int tu_keycmp(const void *a, size_t al, const void *b,
			       size_t bl)
{
	size_t m = al < bl ? al : bl;
	int c = m ? memcmp(a, b, m) : 0;
	if (c)
		return c < 0 ? -1 : 1;
	return al < bl ? -1 : al > bl ? 1 : 0;
}

/* ---- model: sorted map ------------------------------------------------------------ */

typedef struct {
	uint8_t *key;
	uint8_t *val;
	uint16_t klen;
	uint16_t vlen;
	uint8_t flags;
} tu_item;

typedef struct {
	tu_item *v;
	size_t n, cap;
} tu_map;

/* index of key or of the insertion point; *found set */
static TU_UNUSED size_t tu_map_find(const tu_map *m, const void *key,
				    size_t klen, bool *found)
{
	size_t lo = 0, hi = m->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = tu_keycmp(m->v[mid].key, m->v[mid].klen, key, klen);
		if (c == 0) {
			*found = true;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = false;
	return lo;
}

static TU_UNUSED tu_item *tu_map_get(const tu_map *m, const void *key,
				     size_t klen)
{
	bool f;
	size_t i = tu_map_find(m, key, klen, &f);
	return f ? &m->v[i] : NULL;
}

static TU_UNUSED void tu_map_put(tu_map *m, const void *key, size_t klen,
				 const void *val, size_t vlen, uint8_t flags)
{
	bool f;
	size_t i = tu_map_find(m, key, klen, &f);
	uint8_t *nv = malloc(vlen ? vlen : 1);
	assert_non_null(nv);
	if (vlen)
		memcpy(nv, val, vlen);
	if (f) {
		free(m->v[i].val);
		m->v[i].val = nv;
		m->v[i].vlen = (uint16_t)vlen;
		m->v[i].flags = flags;
		return;
	}
	if (m->n == m->cap) {
		m->cap = m->cap ? m->cap * 2 : 64;
		m->v = realloc(m->v, m->cap * sizeof(tu_item));
		assert_non_null(m->v);
	}
	memmove(&m->v[i + 1], &m->v[i], (m->n - i) * sizeof(tu_item));
	m->v[i].key = malloc(klen);
	assert_non_null(m->v[i].key);
	memcpy(m->v[i].key, key, klen);
	m->v[i].klen = (uint16_t)klen;
	m->v[i].val = nv;
	m->v[i].vlen = (uint16_t)vlen;
	m->v[i].flags = flags;
	m->n++;
}

static TU_UNUSED bool tu_map_del(tu_map *m, const void *key, size_t klen)
{
	bool f;
	size_t i = tu_map_find(m, key, klen, &f);
	if (!f)
		return false;
	free(m->v[i].key);
	free(m->v[i].val);
	memmove(&m->v[i], &m->v[i + 1], (m->n - i - 1) * sizeof(tu_item));
	m->n--;
	return true;
}

static TU_UNUSED void tu_map_clear(tu_map *m)
{
	for (size_t i = 0; i < m->n; i++) {
		free(m->v[i].key);
		free(m->v[i].val);
	}
	free(m->v);
	memset(m, 0, sizeof(*m));
}

static TU_UNUSED void tu_map_copy(tu_map *dst, const tu_map *src)
{
	memset(dst, 0, sizeof(*dst));
	if (!src->n)
		return;
	dst->cap = src->n;
	dst->v = malloc(dst->cap * sizeof(tu_item));
	assert_non_null(dst->v);
	for (size_t i = 0; i < src->n; i++) {
		const tu_item *s = &src->v[i];
		tu_item *d = &dst->v[i];
		*d = *s;
		d->key = malloc(s->klen);
		d->val = malloc(s->vlen ? s->vlen : 1);
		assert_non_null(d->key);
		assert_non_null(d->val);
		memcpy(d->key, s->key, s->klen);
		if (s->vlen)
			memcpy(d->val, s->val, s->vlen);
	}
	dst->n = src->n;
}

/* ---- data extents in values ------------------------------------------------------- */

/* value layout of an extent item made by the tests (after an optional
 * 8-byte tree root when RFS_ITEM_TREE is also set) */
struct tu_ext_hdr {
	uint64_t start;
	uint64_t nblocks;
	uint32_t seed;
	/* uint32_t csum[nblocks] follows */
} __attribute__((packed));
#define TU_EXT_HDR 20u
#define TU_EXT_MAXBLOCKS 64u

/* deterministic content of block i of an extent with this seed */
static TU_UNUSED void tu_ext_pattern(uint32_t seed, uint64_t i, uint8_t *out)
{
	tu_rng r = {((uint64_t)seed << 32) ^ (i * 0x100000001b3ull) ^ 0x5eed};
	tu_fill(&r, out, RFS_BLOCK_SIZE);
	/* readable markers */
	memcpy(out, &seed, 4);
	memcpy(out + 4, &i, 8);
}

/*
 * Allocate (up to want blocks, one run), write pattern, build the value in
 * val (needs TU_EXT_HDR + 4 * nblocks bytes); returns the value length or a
 * negative errno.
 */
static TU_UNUSED long tu_ext_make(rfs_pool *pool, uint64_t want, uint32_t seed,
				  uint8_t *val)
{
	uint64_t start = 0, got = 0;
	if (want > TU_EXT_MAXBLOCKS)
		want = TU_EXT_MAXBLOCKS;
	int rc = rfs_alloc_data(pool, want, &start, &got);
	if (rc)
		return rc;
	if (got == 0 || got > want)
		return -EPROTO;
	uint8_t *buf = malloc(got * RFS_BLOCK_SIZE);
	uint32_t csums[TU_EXT_MAXBLOCKS];
	assert_non_null(buf);
	for (uint64_t i = 0; i < got; i++)
		tu_ext_pattern(seed, i, buf + i * RFS_BLOCK_SIZE);
	memset(csums, 0, sizeof(csums));
	rc = rfs_data_write(pool, start, buf, (uint32_t)got, csums);
	free(buf);
	if (rc)
		return rc;
	struct tu_ext_hdr h = {start, got, seed};
	memcpy(val, &h, TU_EXT_HDR);
	memcpy(val + TU_EXT_HDR, csums, got * 4);
	return (long)(TU_EXT_HDR + got * 4);
}

/* 0 = right content, -EIO etc = read error, 1 = WRONG data, 2 = bad value */
static TU_UNUSED int tu_ext_verify(rfs_pool *pool, const uint8_t *ext,
				   size_t len)
{
	struct tu_ext_hdr h;
	if (len < TU_EXT_HDR)
		return 2;
	memcpy(&h, ext, TU_EXT_HDR);
	if (h.nblocks == 0 || h.nblocks > TU_EXT_MAXBLOCKS ||
	    len < TU_EXT_HDR + h.nblocks * 4)
		return 2;
	uint32_t csums[TU_EXT_MAXBLOCKS];
	memcpy(csums, ext + TU_EXT_HDR, h.nblocks * 4);
	uint8_t *buf = malloc(h.nblocks * RFS_BLOCK_SIZE);
	uint8_t want[RFS_BLOCK_SIZE];
	assert_non_null(buf);
	int rc = rfs_data_read(pool, h.start, buf, (uint32_t)h.nblocks, csums);
	if (rc == 0) {
		for (uint64_t i = 0; i < h.nblocks; i++) {
			tu_ext_pattern(h.seed, i, want);
			if (memcmp(want, buf + i * RFS_BLOCK_SIZE,
				   RFS_BLOCK_SIZE) != 0) {
				rc = 1;
				break;
			}
		}
	}
	free(buf);
	return rc;
}

/* offset of the extent record in a value with these flags */
static TU_UNUSED size_t tu_ext_off(uint8_t flags)
{
	return (flags & RFS_ITEM_TREE) ? 8 : 0;
}

/* ---- growable buffer and canonical dumps --------------------------------------------- */

typedef struct {
	uint8_t *p;
	size_t n, cap;
} tu_buf;

static TU_UNUSED void tu_buf_add(tu_buf *b, const void *d, size_t n)
{
	if (b->n + n > b->cap) {
		size_t nc = b->cap ? b->cap : 4096;
		while (nc < b->n + n)
			nc *= 2;
		b->p = realloc(b->p, nc);
		assert_non_null(b->p);
		b->cap = nc;
	}
	if (n)
		memcpy(b->p + b->n, d, n);
	b->n += n;
}

static TU_UNUSED void tu_buf_u64(tu_buf *b, uint64_t v)
{
	tu_buf_add(b, &v, 8);
}

static TU_UNUSED void tu_buf_free(tu_buf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

static TU_UNUSED uint64_t tu_fnv(const void *d, size_t n)
{
	const uint8_t *p = d;
	uint64_t h = 0xcbf29ce484222325ull;
	while (n--)
		h = (h ^ *p++) * 0x100000001b3ull;
	return h;
}

/*
 * Append a canonical image of tree t to out: every item as (klen, key,
 * flags, vlen, value with block numbers zeroed); RFS_ITEM_TREE values are
 * followed by the image of the subtree, RFS_ITEM_EXTENT values (in the
 * tests' layout) by a hash of the data read back and verified.  Returns 0
 * or the first error (negative errno; 1 = wrong data read without error).
 */
static TU_UNUSED int tu_dump_tree(rfs_pool *pool, const rfs_tree *t,
				  tu_buf *out, int depth)
{
	rfs_cursor *c = NULL;
	int rc;
	if (depth > 8)
		return -ELOOP;
	tu_buf_add(out, "T{", 2);
	if (t->root == 0) {
		tu_buf_add(out, "}", 1);
		return 0;
	}
	rc = rfs_cursor_open(pool, t, &c);
	if (rc)
		return rc;
	rc = rfs_cursor_seek(c, NULL, 0, 1);
	while (rc == 0) {
		const void *k, *v;
		size_t kl, vl;
		uint8_t fl;
		rc = rfs_cursor_get(c, &k, &kl, &v, &vl, &fl);
		if (rc)
			break;
		uint8_t vcopy[RFS_VAL_MAX];
		if (vl > RFS_VAL_MAX || kl > RFS_KEY_MAX || kl == 0) {
			rc = 3;
			break;
		}
		memcpy(vcopy, v, vl);
		tu_buf_u64(out, kl);
		tu_buf_add(out, k, kl);
		tu_buf_u64(out, fl);
		tu_buf_u64(out, vl);
		uint8_t canon[RFS_VAL_MAX];
		memcpy(canon, vcopy, vl);
		if ((fl & RFS_ITEM_TREE) && vl >= 8)
			memset(canon, 0, 8);
		size_t eo = tu_ext_off(fl);
		if ((fl & RFS_ITEM_EXTENT) && vl >= eo + 8)
			memset(canon + eo, 0, 8);
		tu_buf_add(out, canon, vl);
		/* the cursor stays valid while we only read other trees */
		if ((fl & RFS_ITEM_TREE) && vl >= 8) {
			rfs_tree sub = {0, RFS_OWNER_USER};
			memcpy(&sub.root, vcopy, 8);
			rc = tu_dump_tree(pool, &sub, out, depth + 1);
			if (rc)
				break;
		}
		if ((fl & RFS_ITEM_EXTENT) && vl >= eo + TU_EXT_HDR) {
			struct tu_ext_hdr h;
			memcpy(&h, vcopy + eo, TU_EXT_HDR);
			if (h.start != 0 && h.nblocks != 0) {
				rc = tu_ext_verify(pool, vcopy + eo, vl - eo);
				if (rc)
					break;
				tu_buf_u64(out, h.seed);
			}
		}
		rc = rfs_cursor_step(c, 1);
	}
	rfs_cursor_close(c);
	if (rc == -ENOENT)
		rc = 0;
	tu_buf_add(out, "}", 1);
	return rc;
}

/* image of catalog ids [1, max_id]: absent ids are marked as such */
static TU_UNUSED int tu_dump_catalog(rfs_pool *pool, uint64_t max_id,
				     tu_buf *out)
{
	for (uint64_t id = 1; id <= max_id; id++) {
		rfs_tree t = {0, 0};
		int rc = rfs_catalog_get(pool, id, &t);
		tu_buf_u64(out, id);
		if (rc == -ENOENT) {
			tu_buf_add(out, "-", 1);
			continue;
		}
		if (rc)
			return rc;
		tu_buf_add(out, "+", 1);
		rc = tu_dump_tree(pool, &t, out, 0);
		if (rc)
			return rc;
	}
	return 0;
}

/* ---- tree vs model comparison ------------------------------------------------------ */

/* Full comparison of tree t with model m: forward and backward scans and
 * (when lookups) a lookup of every key.  Returns NULL or a static message. */
static TU_UNUSED const char *tu_tree_diff(rfs_pool *pool, const rfs_tree *t,
					  const tu_map *m, bool lookups)
{
	static char msg[512];
	rfs_cursor *c = NULL;
	int rc;

	if (t->root == 0) {
		if (m->n != 0) {
			snprintf(msg, sizeof msg, "tree empty (root 0), model has %zu items", m->n);
			return msg;
		}
		return NULL;
	}
	rc = rfs_cursor_open(pool, t, &c);
	if (rc) {
		snprintf(msg, sizeof msg, "rfs_cursor_open = %d", rc);
		return msg;
	}
	for (int dir = 1; dir >= -1; dir -= 2) {
		size_t i = 0;
		rc = rfs_cursor_seek(c, NULL, 0, dir);
		while (rc == 0) {
			const void *k, *v;
			size_t kl, vl;
			uint8_t fl;
			rc = rfs_cursor_get(c, &k, &kl, &v, &vl, &fl);
			if (rc) {
				snprintf(msg, sizeof msg, "cursor_get = %d (dir %d, item %zu)", rc, dir, i);
				goto out;
			}
			if (i >= m->n) {
				snprintf(msg, sizeof msg, "tree has more items than model (%zu), dir %d", m->n, dir);
				rc = 1;
				goto out;
			}
			const tu_item *e = &m->v[dir > 0 ? i : m->n - 1 - i];
			if (kl != e->klen || memcmp(k, e->key, kl) != 0) {
				snprintf(msg, sizeof msg,
					 "dir %d item %zu/%zu: key differs (tree klen %zu, model klen %u)",
					 dir, i, m->n, kl, e->klen);
				rc = 1;
				goto out;
			}
			if (vl != e->vlen || (vl && memcmp(v, e->val, vl) != 0) ||
			    fl != e->flags) {
				snprintf(msg, sizeof msg,
					 "dir %d item %zu/%zu: value differs (tree vlen %zu flags %u, model vlen %u flags %u)",
					 dir, i, m->n, vl, fl, e->vlen, e->flags);
				rc = 1;
				goto out;
			}
			i++;
			rc = rfs_cursor_step(c, dir);
		}
		if (rc != -ENOENT) {
			snprintf(msg, sizeof msg, "scan dir %d ended with %d after %zu items", dir, rc, i);
			rc = 1;
			goto out;
		}
		if (i != m->n) {
			snprintf(msg, sizeof msg, "scan dir %d: %zu items, model %zu", dir, i, m->n);
			rc = 1;
			goto out;
		}
	}
	rc = 0;
	if (lookups) {
		static uint8_t vb[RFS_VAL_MAX + 16];
		for (size_t i = 0; i < m->n; i++) {
			const tu_item *e = &m->v[i];
			size_t vl = sizeof(vb);
			uint8_t fl = 0xff;
			int r = rfs_tree_lookup(pool, t, e->key, e->klen, vb, &vl, &fl);
			if (r || vl != e->vlen || fl != e->flags ||
			    (vl && memcmp(vb, e->val, vl) != 0)) {
				snprintf(msg, sizeof msg,
					 "lookup of item %zu: rc %d vlen %zu/%u flags %u/%u",
					 i, r, vl, e->vlen, fl, e->flags);
				rc = 1;
				goto out;
			}
		}
	}
out:
	rfs_cursor_close(c);
	return rc ? msg : NULL;
}

#define CHECK_TREE(pool, t, m)                                                \
	do {                                                                  \
		const char *_tu_d = tu_tree_diff((pool), (t), (m), true);     \
		CHECK(_tu_d == NULL, "tree differs from model: %s", _tu_d);   \
	} while (0)

#endif
