/*
 * Corruption tests: build a pool with several trees (a clone sharing nodes
 * through the refcount tree, data extents, a nested tree), commit, close.
 * Then, round after round, copy the pool file, flip random bits in one
 * live block (a tree node, a bitmap page of the live copy, or a data
 * block), open the copy and read everything.  Every operation must either
 * succeed with exactly the right data or fail with -EIO (or open fails
 * with a logged error); never wrong data, never a crash (ASan clean).
 * Corruption of a tree node must be reported by rfs_check naming the
 * block, and every -EIO must come with a log line naming the block.
 *
 *   RFS_CORRUPT_ROUNDS=<n> (default 300)  RFS_SEED=<n> (default fixed)
 */
#include "../common/testutil.h"

#include <time.h>

#include "tree/node.h"

enum { T_NODE, T_BITMAP, T_DATA };
static const char *tnames[] = {"node", "bitmap", "data"};

static struct {
	tu_pool c;
	tu_map m[4];   /* trees 1..3 */
	tu_map nested; /* the tree under key "nested" in tree 3 */
	uint64_t roots[4];
	uint64_t *nodes, *bitmaps, *data;
	size_t nnodes, nbitmaps, ndata;
	uint64_t high_water, data_start, gen;
	uint64_t seed;
	long rounds;
	/* current round, for messages */
	long round;
	int target;
	uint64_t block;
	unsigned bits[4];
	int nbits;
	char work[2048];
	long stats_open_fail, stats_detected, stats_undetected_read, stats_check_named;
} g;

static void replay_hint(void)
{
	fprintf(stderr, "FAILED in round %ld: %s block %" PRIu64 ", bits", g.round, tnames[g.target], g.block);
	for (int i = 0; i < g.nbits; i++)
		fprintf(stderr, " %u", g.bits[i]);
	fprintf(stderr, "\nreplay: RFS_SEED=%" PRIu64 " RFS_CORRUPT_ROUNDS=%ld build/asan/tests/corrupt/test_corrupt\n",
		g.seed, g.rounds);
}

/* ---- building the pool ----------------------------------------------------- */

static void put_m(rfs_tree *t, tu_map *m, const void *k, size_t kl, const void *v, size_t vl, uint8_t fl)
{
	OK(rfs_tree_put(g.c.pool, t, k, kl, v, vl, fl, RFS_PUT_UPSERT));
	tu_map_put(m, k, kl, v, vl, fl);
}

static void build(void)
{
	tu_rng r = {12345};
	rfs_pool *p = g.c.pool;
	uint8_t k[64], v[RFS_VAL_MAX];

	/* tree 1: many small items (height >= 2) */
	rfs_tree t1 = {0, RFS_OWNER_USER};
	for (int i = 0; i < 2500; i++) {
		size_t kl = tu_range(&r, 1, 24), vl = tu_range(&r, 0, 100);
		tu_fill(&r, k, kl);
		tu_fill(&r, v, vl);
		put_m(&t1, &g.m[1], k, kl, v, vl, 0);
	}
	OK(rfs_catalog_set(p, 1, &t1));
	tu_commit(&g.c);
	/* tree 2: clone of 1, partly modified (shared nodes, refcount tree) */
	rfs_tree t2;
	OK(rfs_tree_clone(p, &t1, &t2));
	tu_map_copy(&g.m[2], &g.m[1]);
	for (int i = 0; i < 40; i++) {
		size_t kl = tu_range(&r, 1, 24), vl = tu_range(&r, 0, 100);
		tu_fill(&r, k, kl);
		tu_fill(&r, v, vl);
		put_m(&t2, &g.m[2], k, kl, v, vl, 0);
	}
	OK(rfs_catalog_set(p, 2, &t2));
	/* tree 3: data extents, plain items, a nested tree */
	rfs_tree t3 = {0, RFS_OWNER_USER};
	for (int i = 0; i < 24; i++) {
		snprintf((char *)k, sizeof k, "ext-%02d", i);
		long vl = tu_ext_make(p, 1 + (uint64_t)i % 4, 500 + (uint32_t)i, v);
		CHECK(vl > 0, "tu_ext_make = %ld", vl);
		put_m(&t3, &g.m[3], k, strlen((char *)k), v, (size_t)vl, RFS_ITEM_EXTENT);
	}
	for (int i = 0; i < 300; i++) {
		size_t kl = tu_range(&r, 1, 40), vl = tu_range(&r, 0, 300);
		tu_fill(&r, k, kl);
		k[0] = 'p';
		tu_fill(&r, v, vl);
		put_m(&t3, &g.m[3], k, kl, v, vl, 0);
	}
	rfs_tree in = {0, RFS_OWNER_USER};
	for (int i = 0; i < 400; i++) {
		tu_be64(k, (uint64_t)i * 3);
		size_t vl = tu_range(&r, 0, 60);
		tu_fill(&r, v, vl);
		put_m(&in, &g.nested, k, 8, v, vl, 0);
	}
	memcpy(v, &in.root, 8);
	memcpy(v + 8, "nestnest", 8);
	put_m(&t3, &g.m[3], "nested", 6, v, 16, RFS_ITEM_TREE);
	OK(rfs_catalog_set(p, 3, &t3));
	tu_commit(&g.c);
	/* one more commit touching tree 2 only, so generations differ */
	t2.root = 0;
	OK(rfs_catalog_get(p, 2, &t2));
	put_m(&t2, &g.m[2], "late", 4, "x", 1, 0);
	OK(rfs_catalog_set(p, 2, &t2));
	tu_commit(&g.c);
	CHECK_CLEAN(&g.c);

	for (uint64_t id = 1; id <= 3; id++) {
		rfs_tree t;
		OK(rfs_catalog_get(p, id, &t));
		g.roots[id] = t.root;
		CHECK_TREE(p, &t, &g.m[id]);
	}
	struct rfs_pool_stats st = tu_stats(&g.c);
	g.high_water = st.high_water;
	g.data_start = st.data_start;
	g.gen = rfs_pool_committed_gen(p);

	/* data blocks */
	g.data = calloc(1024, sizeof(uint64_t));
	assert_non_null(g.data);
	for (size_t i = 0; i < g.m[3].n; i++) {
		const tu_item *e = &g.m[3].v[i];
		if (!(e->flags & RFS_ITEM_EXTENT))
			continue;
		struct tu_ext_hdr h;
		memcpy(&h, e->val, TU_EXT_HDR);
		for (uint64_t b = 0; b < h.nblocks; b++)
			g.data[g.ndata++] = h.start + b;
	}
	/* live blocks below high_water, for the metadata scan after close */
	bool *alloc = calloc(g.high_water, sizeof(bool));
	assert_non_null(alloc);
	for (uint64_t b = 0; b < g.high_water; b++)
		alloc[b] = rfs_block_allocated(p, b);
	tu_close(&g.c);

	g.nodes = calloc(g.high_water, sizeof(uint64_t));
	g.bitmaps = calloc(g.high_water, sizeof(uint64_t));
	assert_non_null(g.nodes);
	assert_non_null(g.bitmaps);
	/* Bitmap pages live in [2, data_start) as two copies; the copy of
	 * generation gen is gen % 2 (layout of src/pool). */
	uint64_t bb = (g.data_start - 2) / 2;
	uint64_t live_lo = 2 + (g.gen % 2) * bb, live_hi = live_lo + bb;
	uint8_t blk[RFS_BLOCK_SIZE];
	for (uint64_t b = 0; b < g.high_water; b++) {
		if (tu_pread_block(g.c.path, b, blk) != 0)
			continue;
		struct rfs_block_header h;
		memcpy(&h, blk, sizeof h);
		if (h.magic != RFS_META_MAGIC || h.blocknr != b || h.crc != tu_meta_crc(blk))
			continue;
		if (h.type == RFS_BT_NODE && alloc[b] && b >= g.data_start)
			g.nodes[g.nnodes++] = b;
		else if (h.type == RFS_BT_BITMAP && b >= live_lo && b < live_hi)
			g.bitmaps[g.nbitmaps++] = b;
	}
	free(alloc);
	CHECK(g.nnodes >= 20, "only %zu live nodes found", g.nnodes);
	CHECK(g.nbitmaps >= 1, "no live bitmap page found");
	CHECK(g.ndata >= 24, "only %zu data blocks", g.ndata);
	fprintf(stderr, "corrupt: %zu nodes, %zu bitmap pages, %zu data blocks, high water %" PRIu64 "\n",
		g.nnodes, g.nbitmaps, g.ndata, g.high_water);
}

/* ---- reading everything, tolerating -EIO --------------------------------------- */

static bool eio_seen;

/* rc must be 0 (then the caller checks the data) or -EIO */
static bool ok_or_eio(int rc, const char *what)
{
	if (rc == 0)
		return true;
	CHECK(rc == -EIO, "%s: %d, expected 0 or -EIO", what, rc);
	eio_seen = true;
	return false;
}

static void scan_tolerant(rfs_pool *p, const rfs_tree *t, const tu_map *m, int dir, const char *name)
{
	rfs_cursor *c = NULL;
	if (!ok_or_eio(rfs_cursor_open(p, t, &c), "cursor_open"))
		return;
	int rc = rfs_cursor_seek(c, NULL, 0, dir);
	size_t i = 0;
	while (rc == 0) {
		const void *k, *v;
		size_t kl, vl;
		uint8_t fl;
		if (!ok_or_eio(rfs_cursor_get(c, &k, &kl, &v, &vl, &fl), "cursor_get"))
			break;
		CHECK(i < m->n, "%s: scan dir %d returned more items than exist", name, dir);
		const tu_item *e = &m->v[dir > 0 ? i : m->n - 1 - i];
		CHECK(kl == e->klen && memcmp(k, e->key, kl) == 0, "%s: scan dir %d item %zu: WRONG key", name, dir, i);
		CHECK(vl == e->vlen && fl == e->flags && (vl == 0 || memcmp(v, e->val, vl) == 0),
		      "%s: scan dir %d item %zu: WRONG value", name, dir, i);
		i++;
		rc = rfs_cursor_step(c, dir);
	}
	if (rc == -ENOENT)
		CHECK(i == m->n, "%s: scan dir %d ended after %zu of %zu items without an error", name, dir, i, m->n);
	else if (rc != 0)
		ok_or_eio(rc, "cursor seek/step");
	rfs_cursor_close(c);
}

static void lookups_tolerant(rfs_pool *p, const rfs_tree *t, const tu_map *m, const char *name)
{
	static uint8_t v[RFS_VAL_MAX];
	for (size_t i = 0; i < m->n; i++) {
		const tu_item *e = &m->v[i];
		size_t vl = sizeof v;
		uint8_t fl = 0xee;
		int rc = rfs_tree_lookup(p, t, e->key, e->klen, v, &vl, &fl);
		if (!ok_or_eio(rc, "lookup"))
			continue;
		CHECK(vl == e->vlen && fl == e->flags && (vl == 0 || memcmp(v, e->val, vl) == 0),
		      "%s: lookup of item %zu: WRONG value", name, i);
		if (e->flags & RFS_ITEM_EXTENT) {
			int r = tu_ext_verify(p, v, vl);
			CHECK(r != 1, "%s: item %zu: WRONG data read without an error", name, i);
			if (r != 0)
				ok_or_eio(r, "data read");
		}
		if (e->flags & RFS_ITEM_TREE) {
			rfs_tree in = {0, RFS_OWNER_USER};
			memcpy(&in.root, v, 8);
			scan_tolerant(p, &in, &g.nested, 1, "nested");
			scan_tolerant(p, &in, &g.nested, -1, "nested");
			lookups_tolerant(p, &in, &g.nested, "nested");
		}
	}
}

static void read_everything(rfs_pool *p)
{
	for (uint64_t id = 1; id <= 3; id++) {
		rfs_tree t = {0, 0};
		int rc = rfs_catalog_get(p, id, &t);
		if (!ok_or_eio(rc, "catalog_get"))
			continue;
		EQ_U64(t.root, g.roots[id]);
		char name[16];
		snprintf(name, sizeof name, "tree %" PRIu64, id);
		scan_tolerant(p, &t, &g.m[id], 1, name);
		scan_tolerant(p, &t, &g.m[id], -1, name);
		lookups_tolerant(p, &t, &g.m[id], name);
	}
	/* refcounts of a few blocks: 0 or -EIO, never a crash */
	for (size_t i = 0; i < g.nnodes; i += 7) {
		uint64_t cnt;
		int rc = rfs_ref_get(p, g.nodes[i], &cnt);
		if (ok_or_eio(rc, "ref_get"))
			CHECK(cnt >= 1 && cnt <= 3, "refcount of node %" PRIu64 " = %" PRIu64, g.nodes[i], cnt);
	}
}

/* ---- rounds ------------------------------------------------------------------------ */

static void one_round(tu_rng *r)
{
	uint64_t x = tu_below(r, 100);
	g.target = x < 50 ? T_NODE : x < 60 ? T_BITMAP : T_DATA;
	if (g.target == T_NODE)
		g.block = g.nodes[tu_below(r, g.nnodes)];
	else if (g.target == T_BITMAP)
		g.block = g.bitmaps[tu_below(r, g.nbitmaps)];
	else
		g.block = g.data[tu_below(r, g.ndata)];
	g.nbits = (int)tu_range(r, 1, 4);
	for (int i = 0; i < g.nbits; i++) {
		/* half of the flips in the first 256 bytes (headers, key area) */
		g.bits[i] = (unsigned)(tu_below(r, 2) ? tu_below(r, 256 * 8) : tu_below(r, RFS_BLOCK_SIZE * 8));
		for (int j = 0; j < i; j++)
			if (g.bits[j] == g.bits[i])
				g.bits[i] = (g.bits[i] + 1) % (RFS_BLOCK_SIZE * 8);
	}
	OK(tu_copy_file(g.c.path, g.work));
	for (int i = 0; i < g.nbits; i++)
		tu_flip_bit(g.work, g.block, g.bits[i]);

	tu_log_clear();
	eio_seen = false;
	rfs_pool *p = (rfs_pool *)(uintptr_t)1;
	int rc = rfs_pool_open(g.work, 0, &p);
	if (rc != 0) {
		CHECK(p == NULL, "*out not NULL after a failed open");
		CHECK(rc < 0, "open = %d", rc);
		CHECK(tu_log.n > 0, "open failed (%d) without a log line", rc);
		CHECK(g.target != T_DATA, "a flipped data block made open fail (%d)", rc);
		g.stats_open_fail++;
		return;
	}
	rfs_pool_wrlock(p);
	read_everything(p);
	if (eio_seen) {
		g.stats_detected++;
		CHECK(tu_log_names_block(g.block), "-EIO seen but no log line names block %" PRIu64, g.block);
	} else {
		g.stats_undetected_read++;
	}
	if (g.target == T_DATA)
		CHECK(eio_seen, "flipped data block %" PRIu64 " read without an error", g.block);

	static tu_reports rep;
	memset(&rep, 0, sizeof rep);
	struct rfs_check_stats st;
	memset(&st, 0, sizeof st);
	long n = rfs_check(p, tu_report_cb, &rep, &st);
	if (g.target == T_NODE || g.target == T_BITMAP) {
		if (!(n > 0 && tu_reports_name(&rep, g.block))) {
			tu_reports_print(&rep, 10);
			CHECK(false, "rfs_check = %ld (%zu reports) does not name the corrupted %s block %" PRIu64,
			      n, rep.n, tnames[g.target], g.block);
		}
		g.stats_check_named++;
	} else {
		CHECK(n >= 0, "rfs_check = %ld with a corrupted data block", n);
	}
	/* a mutation on the damaged pool: success or -EIO, never a crash */
	rfs_tree t;
	rc = rfs_catalog_get(p, 1, &t);
	if (rc == 0) {
		rc = rfs_tree_put(p, &t, "new-key", 7, "v", 1, 0, RFS_PUT_UPSERT);
		CHECK(rc == 0 || rc == -EIO, "put on a damaged pool = %d", rc);
		if (rc == 0) {
			rc = rfs_catalog_set(p, 1, &t);
			CHECK(rc == 0 || rc == -EIO, "catalog_set on a damaged pool = %d", rc);
		}
	}
	rfs_pool_unlock(p);
	rfs_pool_close(p);
}

/*
 * ---- corruption with a valid checksum (a bug, or a crafted image) ----
 *
 * The crc is recomputed after the flips, so only the structural checks of
 * the reader stand between the damage and the code: any result is
 * acceptable (right data, wrong data, any error), but no crash, no
 * sanitizer report and no endless loop.
 */
static long lenient_scan(rfs_pool *p, const rfs_tree *t, int dir, size_t expect)
{
	rfs_cursor *c = NULL;
	long n = 0;
	if (rfs_cursor_open(p, t, &c) != 0)
		return -1;
	int rc = rfs_cursor_seek(c, NULL, 0, dir);
	while (rc == 0) {
		const void *k, *v;
		size_t kl, vl;
		uint8_t fl;
		if (rfs_cursor_get(c, &k, &kl, &v, &vl, &fl) != 0)
			break;
		CHECK(kl >= 1 && kl <= RFS_KEY_MAX && vl <= RFS_VAL_MAX, "cursor returned klen %zu vlen %zu", kl, vl);
		/* touch every byte (ASan checks the pointers) */
		volatile uint8_t sum = 0;
		for (size_t i = 0; i < kl; i++)
			sum ^= ((const uint8_t *)k)[i];
		for (size_t i = 0; i < vl; i++)
			sum ^= ((const uint8_t *)v)[i];
		(void)sum;
		n++;
		CHECK((size_t)n <= 4 * expect + 1000, "runaway scan: %ld items, %zu expected", n, expect);
		rc = rfs_cursor_step(c, dir);
	}
	rfs_cursor_close(c);
	return n;
}

static void lenient_round(tu_rng *r)
{
	g.target = T_NODE;
	g.block = g.nodes[tu_below(r, g.nnodes)];
	g.nbits = (int)tu_range(r, 1, 3);
	OK(tu_copy_file(g.c.path, g.work));
	uint8_t blk[RFS_BLOCK_SIZE];
	OK(tu_pread_block(g.work, g.block, blk));
	for (int i = 0; i < g.nbits; i++) {
		/* mostly the header and the first bytes after it (counts,
		 * offsets), never the crc field itself */
		unsigned bit;
		do
			bit = (unsigned)(tu_below(r, 4) ? tu_below(r, 128 * 8) : tu_below(r, RFS_BLOCK_SIZE * 8));
		while (bit / 8 >= 4 && bit / 8 < 8);
		g.bits[i] = bit;
		blk[bit / 8] ^= (uint8_t)(1u << (bit % 8));
	}
	uint32_t crc = tu_meta_crc(blk);
	memcpy(blk + 4, &crc, 4);
	OK(tu_pwrite_block(g.work, g.block, blk));

	rfs_pool *p = NULL;
	tu_log_clear();
	if (rfs_pool_open(g.work, 0, &p) != 0)
		return;
	rfs_pool_wrlock(p);
	for (uint64_t id = 1; id <= 3; id++) {
		rfs_tree t;
		if (rfs_catalog_get(p, id, &t) != 0)
			continue;
		lenient_scan(p, &t, 1, g.m[id].n);
		lenient_scan(p, &t, -1, g.m[id].n);
		for (size_t i = 0; i < g.m[id].n; i += 3) {
			static uint8_t v[RFS_VAL_MAX];
			size_t vl = sizeof v;
			int rc = rfs_tree_lookup(p, &t, g.m[id].v[i].key, g.m[id].v[i].klen, v, &vl, NULL);
			CHECK(rc <= 0, "lookup = %d", rc);
			if (rc == 0)
				CHECK(vl <= RFS_VAL_MAX, "lookup vlen %zu", vl);
		}
	}
	static tu_reports rep;
	memset(&rep, 0, sizeof rep);
	(void)rfs_check(p, tu_report_cb, &rep, NULL);
	/* mutations, and dropping a tree with a damaged node */
	rfs_tree t;
	if (rfs_catalog_get(p, 2, &t) == 0 && rfs_tree_put(p, &t, "zz", 2, "v", 1, 0, RFS_PUT_UPSERT) == 0)
		(void)rfs_catalog_set(p, 2, &t);
	(void)rfs_catalog_del(p, 1);
	(void)rfs_catalog_del(p, 3);
	(void)rfs_check(p, tu_report_cb, &rep, NULL);
	rfs_pool_unlock(p);
	rfs_pool_close(p);
}

static void test_corrupt(void **state)
{
	(void)state;
	tu_log_capture();
	tu_fail_hook = replay_hint;
	tu_pool_init(&g.c);
	snprintf(g.work, sizeof g.work, "%s/work", g.c.dir);
	tu_pool_create(&g.c, 256ull << 20);
	tu_open(&g.c, 0);
	build();
	tu_rng r = {g.seed};
	time_t t0 = time(NULL);
	for (g.round = 1; g.round <= g.rounds; g.round++)
		one_round(&r);
	/* the same with valid checksums */
	for (g.round = 1; g.round <= g.rounds; g.round++) {
		alarm(120); /* an endless loop fails the test instead of hanging */
		lenient_round(&r);
	}
	alarm(0);
	fprintf(stderr,
		"corrupt: 2 x %ld rounds in %lds: open failed %ld, -EIO seen %ld, reads clean %ld, rfs_check named the block %ld\n",
		g.rounds, (long)(time(NULL) - t0), g.stats_open_fail, g.stats_detected, g.stats_undetected_read,
		g.stats_check_named);
	/* the original is untouched and clean */
	tu_open(&g.c, 0);
	CHECK_CLEAN(&g.c);
	tu_close(&g.c);
}

static int teardown(void **state)
{
	(void)state;
	tu_pool_fini(&g.c);
	for (int i = 0; i < 4; i++)
		tu_map_clear(&g.m[i]);
	tu_map_clear(&g.nested);
	free(g.nodes);
	free(g.bitmaps);
	free(g.data);
	tu_log_clear();
	return 0;
}

/* Targeted cases: the catalog root, the refcount-tree root and a nested
 * tree root, each corrupted alone. */
static tu_pool roots_pool;

static int roots_teardown(void **state)
{
	(void)state;
	tu_pool_fini(&roots_pool);
	return 0;
}

static void test_corrupt_roots(void **state)
{
	(void)state;
	tu_pool c;
	tu_pool_init(&roots_pool);
	c = roots_pool;
	tu_pool_create(&c, 64ull << 20);
	tu_open(&c, 0);
	rfs_tree t = {0, RFS_OWNER_USER}, t2;
	for (uint64_t i = 0; i < 500; i++) {
		uint8_t k[8];
		tu_be64(k, i);
		OK(rfs_tree_put(c.pool, &t, k, 8, k, 8, 0, RFS_PUT_INSERT));
	}
	OK(rfs_catalog_set(c.pool, 1, &t));
	tu_commit(&c);
	OK(rfs_tree_clone(c.pool, &t, &t2));
	OK(rfs_catalog_set(c.pool, 2, &t2));
	tu_commit(&c);
	uint64_t targets[2] = {rfs_pool_root(c.pool, RFS_ROOT_CATALOG), rfs_pool_root(c.pool, RFS_ROOT_REFCOUNT)};
	CHECK(targets[0] && targets[1], "catalog root %" PRIu64 ", refcount root %" PRIu64, targets[0], targets[1]);
	tu_close(&c);
	char work[2100];
	snprintf(work, sizeof work, "%s/work", c.dir);
	for (int i = 0; i < 2; i++) {
		OK(tu_copy_file(c.path, work));
		tu_flip_bit(work, targets[i], 8 * 200 + 5);
		rfs_pool *p = NULL;
		tu_log_clear();
		int rc = rfs_pool_open(work, 0, &p);
		if (rc)
			continue;
		rfs_pool_wrlock(p);
		rfs_tree x;
		rc = rfs_catalog_get(p, 1, &x);
		if (i == 0) {
			RC(rc, -EIO);
			CHECK(tu_log_names_block(targets[0]), "no log line names the catalog root %" PRIu64, targets[0]);
		} else {
			OK(rc);
			uint64_t cnt = 0;
			RC(rfs_ref_get(p, t.root, &cnt), -EIO);
			/* dropping a tree needs the refcounts: must fail cleanly */
			rc = rfs_catalog_del(p, 2);
			CHECK(rc == -EIO, "catalog_del with a corrupted refcount tree = %d", rc);
		}
		static tu_reports rep;
		memset(&rep, 0, sizeof rep);
		long n = rfs_check(p, tu_report_cb, &rep, NULL);
		CHECK(n > 0 && tu_reports_name(&rep, targets[i]), "rfs_check = %ld does not name block %" PRIu64, n, targets[i]);
		rfs_pool_unlock(p);
		rfs_pool_close(p);
	}
	tu_pool_fini(&c);
}

/* An interior node whose child pointer leads back to itself (a crafted
 * image, valid checksum): dropping the tree must stop at once with
 * -EUCLEAN and a message naming the block, not walk the loop until the
 * depth limit (fan-out to the power of that limit: forever). */
static void test_drop_self_loop(void **state)
{
	(void)state;
	tu_pool c;
	tu_pool_init(&roots_pool);
	c = roots_pool;
	tu_pool_create(&c, 64ull << 20);
	tu_open(&c, 0);
	rfs_tree t = {0, RFS_OWNER_USER};
	uint8_t v[200] = {0};
	for (uint64_t i = 0; i < 200; i++) {
		uint8_t k[8];
		tu_be64(k, i);
		OK(rfs_tree_put(c.pool, &t, k, 8, v, sizeof v, 0, RFS_PUT_INSERT));
	}
	OK(rfs_catalog_set(c.pool, 1, &t));
	tu_commit(&c);
	uint64_t root = t.root;
	tu_close(&c);

	uint8_t blk[RFS_BLOCK_SIZE];
	OK(tu_pread_block(c.path, root, blk));
	CHECK(node_level(blk) == 1 && node_n(blk) >= 3, "root level %u with %u items: want an "
	      "interior node over leaves", node_level(blk), node_n(blk));
	uint64_t gen = ((const struct rfs_block_header *)blk)->generation;
	node_set_child(blk, 1, root, gen);
	uint32_t crc = tu_meta_crc(blk);
	memcpy(blk + 4, &crc, 4);
	OK(tu_pwrite_block(c.path, root, blk));

	rfs_pool *p = NULL;
	tu_log_clear();
	OK(rfs_pool_open(c.path, 0, &p));
	rfs_pool_wrlock(p);
	rfs_tree x;
	OK(rfs_catalog_get(p, 1, &x));
	alarm(120); /* the loop this guards against fails the test, not hangs it */
	RC(rfs_tree_drop(p, &x), -EUCLEAN);
	alarm(0);
	CHECK(tu_log_names_block(root), "no log line names the looping block %" PRIu64, root);
	/* Stopped at the loop itself, not by the depth limit 4096 levels on. */
	bool at_loop = false, at_limit = false;
	for (size_t i = 0; i < tu_log.n; i++) {
		at_loop |= strstr(tu_log.lines[i], "where its parent expects") != NULL;
		at_limit |= strstr(tu_log.lines[i], "nested more than") != NULL;
	}
	CHECK(at_loop && !at_limit, "the drop was not stopped at the looping child "
	      "(level check: %d, depth limit reached: %d)", at_loop, at_limit);
	rfs_pool_unlock(p);
	rfs_pool_close(p);
}

int main(int argc, char **argv)
{
	const char *s = argc > 1 ? argv[1] : getenv("RFS_SEED");
	const char *n = argc > 2 ? argv[2] : getenv("RFS_CORRUPT_ROUNDS");
	g.seed = s && *s ? strtoull(s, NULL, 0) : 20240601;
	g.rounds = n && *n ? strtol(n, NULL, 0) : 300;
	fprintf(stderr, "test_corrupt: seed %" PRIu64 ", %ld rounds\n", g.seed, g.rounds);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_corrupt, teardown),
		cmocka_unit_test_teardown(test_corrupt_roots, roots_teardown),
		cmocka_unit_test_teardown(test_drop_self_loop, roots_teardown),
	};
	return tu_exit(cmocka_run_group_tests(tests, NULL, NULL));
}
