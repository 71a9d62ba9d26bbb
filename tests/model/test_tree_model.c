/*
 * Randomized model-based test of the tree layer (default 10000 steps): up to 8 live trees kept
 * under catalog ids, random inserts / replaces / deletes / lookups / range
 * scans / clones / drops (at once, or through the drop queue, released
 * in random budgets) / data extents / nested trees (clones stored in
 * values, modified through rfs_tree_lookup_mut) / commits / commits with
 * failing writes / simulated crashes / close+reopen, checked against an in-memory sorted map per tree.
 *
 *   RFS_SEED=<n> RFS_STEPS=<n> build/asan/tests/model/test_tree_model
 *   build/asan/tests/model/test_tree_model [seed [steps]]
 *
 * After every step the touched tree is compared with its model (full scans
 * in both directions while it has at most FULL_MAX items, else the window
 * around the touched key plus a full comparison every FULL_EVERY steps);
 * after every crash / reopen, every CHECK_EVERY steps and at the end all
 * trees are compared in full (with lookups and data extents verified) and
 * rfs_check must return 0.
 */
#include "../common/testutil.h"

#include <time.h>

#define NIDS 12      /* catalog ids 1..NIDS */
#define MAX_LIVE 8   /* live trees at most */
#define MAX_ITEMS 20000
#define FULL_MAX 3000
#define FULL_EVERY 25
#define CHECK_EVERY 1000

static struct {
	uint64_t seed;
	long steps;
	long step;
	const char *op;
	uint64_t op_id;
	tu_rng rng;
	tu_pool pool;
	tu_map cur[NIDS + 1];
	bool cur_live[NIDS + 1];
	tu_map com[NIDS + 1];
	bool com_live[NIDS + 1];
	uint64_t base_used;
	long counts[32];
	size_t max_total;
	int max_height;
	long rofs_violations, rofs_first_step;
	int rofs_first_rc;
} g;

/*
 * Nested trees: an item with RFS_ITEM_TREE holds {u64 root; u64 tag}; the
 * tag names an immutable snapshot of the expected content of that subtree
 * (a clone of another tree taken at insert time, or a modified copy made
 * through rfs_tree_lookup_mut).
 */
static struct {
	tu_map *v;
	size_t n, cap;
} snaps;

static uint64_t new_snap(const tu_map *from)
{
	if (snaps.n == snaps.cap) {
		snaps.cap = snaps.cap ? snaps.cap * 2 : 64;
		snaps.v = realloc(snaps.v, snaps.cap * sizeof(tu_map));
		assert_non_null(snaps.v);
	}
	tu_map_copy(&snaps.v[snaps.n], from);
	return snaps.n++;
}

static void free_snaps(void)
{
	for (size_t i = 0; i < snaps.n; i++)
		tu_map_clear(&snaps.v[i]);
	free(snaps.v);
	memset(&snaps, 0, sizeof snaps);
}

static void replay_hint(void)
{
	fprintf(stderr,
		"FAILED at step %ld (op %s on tree %" PRIu64 ")\n"
		"replay: RFS_SEED=%" PRIu64 " RFS_STEPS=%ld build/asan/tests/model/test_tree_model\n",
		g.step, g.op ? g.op : "-", g.op_id, g.seed, g.steps);
}

static size_t total_items(void)
{
	size_t n = 0;
	for (int i = 1; i <= NIDS; i++)
		if (g.cur_live[i])
			n += g.cur[i].n;
	return n;
}

static int nlive(void)
{
	int n = 0;
	for (int i = 1; i <= NIDS; i++)
		n += g.cur_live[i];
	return n;
}

static int pick_live(void)
{
	int n = nlive();
	if (!n)
		return 0;
	int k = (int)tu_below(&g.rng, (uint64_t)n);
	for (int i = 1; i <= NIDS; i++)
		if (g.cur_live[i] && k-- == 0)
			return i;
	return 0;
}

static int pick_free(void)
{
	int n = NIDS - nlive();
	if (!n)
		return 0;
	int k = (int)tu_below(&g.rng, (uint64_t)n);
	for (int i = 1; i <= NIDS; i++)
		if (!g.cur_live[i] && k-- == 0)
			return i;
	return 0;
}

static void snapshot_commit(void)
{
	for (int i = 1; i <= NIDS; i++) {
		tu_map_clear(&g.com[i]);
		tu_map_copy(&g.com[i], &g.cur[i]);
		g.com_live[i] = g.cur_live[i];
	}
}

static void restore_commit(void)
{
	for (int i = 1; i <= NIDS; i++) {
		tu_map_clear(&g.cur[i]);
		tu_map_copy(&g.cur[i], &g.com[i]);
		g.cur_live[i] = g.com_live[i];
	}
}

static rfs_tree load(int id)
{
	rfs_tree t = {0, 0};
	int rc = rfs_catalog_get(g.pool.pool, (uint64_t)id, &t);
	CHECK(rc == 0, "catalog_get(%d) = %d", id, rc);
	return t;
}

static void store(int id, const rfs_tree *t)
{
	OK(rfs_catalog_set(g.pool.pool, (uint64_t)id, t));
}

/* ---- keys and values ---------------------------------------------------------- */

static size_t gen_key(uint8_t *k)
{
	uint64_t p = tu_below(&g.rng, 1000);
	size_t kl;
	if (p < 700)
		kl = tu_range(&g.rng, 1, 10);
	else if (p < 960)
		kl = tu_range(&g.rng, 11, 64);
	else if (p < 995)
		kl = tu_range(&g.rng, 65, RFS_KEY_MAX);
	else
		kl = RFS_KEY_MAX;
	tu_fill(&g.rng, k, kl);
	/* small alphabet at the front: shared prefixes and near neighbours */
	k[0] = (uint8_t)tu_below(&g.rng, 16);
	return kl;
}

static size_t gen_val(uint8_t *v)
{
	uint64_t p = tu_below(&g.rng, 1000);
	size_t vl;
	if (p < 750)
		vl = tu_below(&g.rng, 33);
	else if (p < 960)
		vl = tu_range(&g.rng, 33, 200);
	else if (p < 995)
		vl = tu_range(&g.rng, 201, RFS_VAL_MAX);
	else
		vl = RFS_VAL_MAX;
	tu_fill(&g.rng, v, vl);
	return vl;
}

/* an existing key of tree id (most of the time) or a fresh one */
static size_t pick_key(int id, uint8_t *k, int existing_pct)
{
	tu_map *m = &g.cur[id];
	if (m->n && (int)tu_below(&g.rng, 100) < existing_pct) {
		const tu_item *e = &m->v[tu_below(&g.rng, m->n)];
		memcpy(k, e->key, e->klen);
		/* sometimes a neighbour that is probably absent */
		if (tu_below(&g.rng, 10) == 0 && e->klen < RFS_KEY_MAX) {
			k[e->klen] = (uint8_t)tu_below(&g.rng, 256);
			return e->klen + 1u;
		}
		return e->klen;
	}
	return gen_key(k);
}

/* ---- comparisons ---------------------------------------------------------------- */

/* data extents and nested trees referenced from the items of m */
static void verify_refs(const tu_map *m, int depth, int id)
{
	for (size_t i = 0; i < m->n; i++) {
		const tu_item *e = &m->v[i];
		if (e->flags & RFS_ITEM_EXTENT) {
			int rc = tu_ext_verify(g.pool.pool, e->val, e->vlen);
			CHECK(rc == 0, "tree %d (depth %d) item %zu: data extent read gives %d", id, depth, i, rc);
		}
		if (e->flags & RFS_ITEM_TREE) {
			rfs_tree in = {0, RFS_OWNER_USER};
			uint64_t tag;
			memcpy(&in.root, e->val, 8);
			memcpy(&tag, e->val + 8, 8);
			CHECK(tag < snaps.n, "bad tag");
			const char *d = tu_tree_diff(g.pool.pool, &in, &snaps.v[tag], false);
			CHECK(d == NULL, "tree %d (depth %d) item %zu: nested tree (snapshot %" PRIu64 ") differs: %s",
			      id, depth, i, tag, d);
			if (depth < 6)
				verify_refs(&snaps.v[tag], depth + 1, id);
		}
	}
}

static void verify_extents(int id)
{
	verify_refs(&g.cur[id], 0, id);
}

static void compare_full(int id, bool lookups)
{
	rfs_tree t = load(id);
	const char *d = tu_tree_diff(g.pool.pool, &t, &g.cur[id], lookups);
	CHECK(d == NULL, "tree %d differs from model: %s", id, d);
	if (lookups)
		verify_extents(id);
}

/* the items around key (both directions) equal the model's */
static void compare_window(int id, const uint8_t *k, size_t kl)
{
	rfs_tree t = load(id);
	tu_map *m = &g.cur[id];
	rfs_cursor *c = NULL;
	OK(rfs_cursor_open(g.pool.pool, &t, &c));
	for (int dir = 1; dir >= -1; dir -= 2) {
		bool f;
		size_t i = tu_map_find(m, k, kl, &f);
		long idx = dir > 0 ? (long)i : (f ? (long)i : (long)i - 1);
		int rc = rfs_cursor_seek(c, k, kl, dir);
		for (int n = 0; n < 6; n++) {
			if (idx < 0 || idx >= (long)m->n) {
				CHECK(rc == -ENOENT, "tree %d: window dir %d pos %d: cursor gives %d at the end", id, dir, n, rc);
				break;
			}
			CHECK(rc == 0, "tree %d: window dir %d pos %d: cursor %d, model has item %ld", id, dir, n, rc, idx);
			const void *ck, *cv;
			size_t ckl, cvl;
			uint8_t cf;
			OK(rfs_cursor_get(c, &ck, &ckl, &cv, &cvl, &cf));
			const tu_item *e = &m->v[idx];
			CHECK(ckl == e->klen && memcmp(ck, e->key, ckl) == 0,
			      "tree %d: window dir %d pos %d: key differs", id, dir, n);
			CHECK(cvl == e->vlen && cf == e->flags && (cvl == 0 || memcmp(cv, e->val, cvl) == 0),
			      "tree %d: window dir %d pos %d: value differs", id, dir, n);
			idx += dir;
			rc = rfs_cursor_step(c, dir);
		}
	}
	rfs_cursor_close(c);
}

static void compare_touched(int id, const uint8_t *k, size_t kl)
{
	if (!g.cur_live[id])
		return;
	if (g.cur[id].n <= FULL_MAX || g.step % FULL_EVERY == 0)
		compare_full(id, false);
	else if (k)
		compare_window(id, k, kl);
}

static void compare_all(bool check)
{
	for (int id = 1; id <= NIDS; id++) {
		if (g.cur_live[id]) {
			compare_full(id, true);
		} else {
			rfs_tree t;
			int rc = rfs_catalog_get(g.pool.pool, (uint64_t)id, &t);
			CHECK(rc == -ENOENT, "dropped tree %d still in the catalog (%d)", id, rc);
		}
	}
	if (check)
		CHECK_CLEAN(&g.pool);
}

/* ---- operations ------------------------------------------------------------------ */

static void op_put(int mode, int existing_pct, bool extent)
{
	int id = pick_live();
	g.op_id = (uint64_t)id;
	uint8_t k[RFS_KEY_MAX + 1], v[RFS_VAL_MAX];
	size_t kl = pick_key(id, k, existing_pct), vl;
	uint8_t fl = 0;
	if (extent) {
		long r = tu_ext_make(g.pool.pool, tu_range(&g.rng, 1, 4),
				     (uint32_t)tu_next(&g.rng), v);
		CHECK(r > 0, "tu_ext_make = %ld", r);
		vl = (size_t)r;
		fl = RFS_ITEM_EXTENT;
		mode = RFS_PUT_UPSERT;
	} else {
		vl = gen_val(v);
	}
	rfs_tree t = load(id);
	bool exists = tu_map_get(&g.cur[id], k, kl) != NULL;
	int rc = rfs_tree_put(g.pool.pool, &t, k, kl, v, vl, fl, mode);
	if (mode == RFS_PUT_INSERT && exists) {
		RC(rc, -EEXIST);
	} else if (mode == RFS_PUT_REPLACE && !exists) {
		RC(rc, -ENOENT);
	} else {
		CHECK(rc == 0, "put(mode %d, klen %zu, vlen %zu, exists %d) = %d", mode, kl, vl, exists, rc);
		tu_map_put(&g.cur[id], k, kl, v, vl, fl);
	}
	store(id, &t);
	compare_touched(id, k, kl);
	if (extent)
		CHECK(tu_ext_verify(g.pool.pool, v, vl) == 0, "fresh extent unreadable");
}

static void op_delete(void)
{
	int id = pick_live();
	g.op_id = (uint64_t)id;
	uint8_t k[RFS_KEY_MAX + 1];
	size_t kl = pick_key(id, k, 90);
	rfs_tree t = load(id);
	bool exists = tu_map_get(&g.cur[id], k, kl) != NULL;
	int rc = rfs_tree_delete(g.pool.pool, &t, k, kl, 0);
	if (exists) {
		CHECK(rc == 0, "delete (klen %zu) = %d", kl, rc);
		tu_map_del(&g.cur[id], k, kl);
	} else {
		RC(rc, -ENOENT);
	}
	store(id, &t);
	compare_touched(id, k, kl);
}

static void op_lookup(void)
{
	int id = pick_live();
	g.op_id = (uint64_t)id;
	uint8_t k[RFS_KEY_MAX + 1], v[RFS_VAL_MAX];
	size_t kl = pick_key(id, k, 70), vl = sizeof v;
	uint8_t fl = 0xee;
	rfs_tree t = load(id);
	int rc = rfs_tree_lookup(g.pool.pool, &t, k, kl, v, &vl, &fl);
	const tu_item *e = tu_map_get(&g.cur[id], k, kl);
	if (!e) {
		RC(rc, -ENOENT);
		return;
	}
	CHECK(rc == 0, "lookup of a present key = %d", rc);
	CHECK(vl == e->vlen && fl == e->flags && (vl == 0 || memcmp(v, e->val, vl) == 0),
	      "lookup: value differs (vlen %zu/%u flags %u/%u)", vl, e->vlen, fl, e->flags);
	/* lookup_mut gives the same and leaves the content unchanged */
	if (tu_below(&g.rng, 4) == 0) {
		vl = sizeof v;
		OK(rfs_tree_lookup_mut(g.pool.pool, &t, k, kl, v, &vl, &fl));
		CHECK(vl == e->vlen && fl == e->flags && (vl == 0 || memcmp(v, e->val, vl) == 0),
		      "lookup_mut: value differs");
		store(id, &t);
		compare_touched(id, k, kl);
	}
}

static void op_scan(void)
{
	int id = pick_live();
	g.op_id = (uint64_t)id;
	uint8_t k[RFS_KEY_MAX + 1];
	size_t kl = pick_key(id, k, 50);
	int dir = tu_below(&g.rng, 2) ? 1 : -1;
	bool from_end = tu_below(&g.rng, 10) == 0;
	rfs_tree t = load(id);
	tu_map *m = &g.cur[id];
	rfs_cursor *c = NULL;
	OK(rfs_cursor_open(g.pool.pool, &t, &c));
	long idx;
	int rc;
	if (from_end) {
		idx = dir > 0 ? 0 : (long)m->n - 1;
		rc = rfs_cursor_seek(c, NULL, 0, dir);
	} else {
		bool f;
		size_t i = tu_map_find(m, k, kl, &f);
		idx = dir > 0 ? (long)i : (f ? (long)i : (long)i - 1);
		rc = rfs_cursor_seek(c, k, kl, dir);
	}
	long len = (long)tu_range(&g.rng, 1, 200);
	for (long n = 0; n < len; n++) {
		if (idx < 0 || idx >= (long)m->n) {
			CHECK(rc == -ENOENT, "scan tree %d dir %d: %d after %ld items, model ends", id, dir, rc, n);
			break;
		}
		CHECK(rc == 0, "scan tree %d dir %d: %d after %ld items, model has more", id, dir, rc, n);
		const void *ck, *cv;
		size_t ckl, cvl;
		uint8_t cf;
		OK(rfs_cursor_get(c, &ck, &ckl, &cv, &cvl, &cf));
		const tu_item *e = &m->v[idx];
		CHECK(ckl == e->klen && memcmp(ck, e->key, ckl) == 0, "scan tree %d dir %d item %ld: key differs", id, dir, n);
		CHECK(cvl == e->vlen && cf == e->flags && (cvl == 0 || memcmp(cv, e->val, cvl) == 0),
		      "scan tree %d dir %d item %ld: value differs", id, dir, n);
		idx += dir;
		rc = rfs_cursor_step(c, dir);
	}
	rfs_cursor_close(c);
}

/* put a clone of a (small) live tree as a nested tree into a live tree */
static void op_nest(void)
{
	int src = pick_live(), dst = pick_live();
	g.op_id = (uint64_t)dst;
	if (g.cur[src].n > 400)
		return;
	rfs_tree t = load(src), cl = {0, 0};
	OK(rfs_tree_clone(g.pool.pool, &t, &cl));
	uint64_t tag = new_snap(&g.cur[src]);
	uint8_t v[16], k[RFS_KEY_MAX + 1];
	memcpy(v, &cl.root, 8);
	memcpy(v + 8, &tag, 8);
	size_t kl = pick_key(dst, k, 20);
	rfs_tree d = load(dst);
	OK(rfs_tree_put(g.pool.pool, &d, k, kl, v, 16, RFS_ITEM_TREE, RFS_PUT_UPSERT));
	tu_map_put(&g.cur[dst], k, kl, v, 16, RFS_ITEM_TREE);
	store(dst, &d);
	compare_touched(dst, k, kl);
}

/* modify a nested tree through rfs_tree_lookup_mut */
static void op_nest_modify(void)
{
	int id = pick_live();
	g.op_id = (uint64_t)id;
	tu_map *m = &g.cur[id];
	size_t cand = SIZE_MAX, seen = 0;
	for (size_t i = 0; i < m->n; i++)
		if ((m->v[i].flags & RFS_ITEM_TREE) && tu_below(&g.rng, ++seen) == 0)
			cand = i;
	if (cand == SIZE_MAX)
		return;
	uint8_t k[RFS_KEY_MAX], v[RFS_VAL_MAX];
	size_t kl = m->v[cand].klen, vl = sizeof v;
	memcpy(k, m->v[cand].key, kl);
	uint8_t fl = 0;
	rfs_tree t = load(id);
	OK(rfs_tree_lookup_mut(g.pool.pool, &t, k, kl, v, &vl, &fl));
	CHECK(vl == 16 && fl == RFS_ITEM_TREE && memcmp(v, m->v[cand].val, 16) == 0,
	      "lookup_mut of a nested item: value differs");
	uint64_t tag;
	memcpy(&tag, v + 8, 8);
	rfs_tree in = {0, RFS_OWNER_USER};
	memcpy(&in.root, v, 8);
	tu_map nm;
	tu_map_copy(&nm, &snaps.v[tag]);
	int n = (int)tu_range(&g.rng, 1, 20);
	for (int i = 0; i < n; i++) {
		uint8_t ik[RFS_KEY_MAX + 1], iv[RFS_VAL_MAX];
		size_t ikl, ivl;
		if (nm.n && tu_below(&g.rng, 3) == 0) {
			const tu_item *e = &nm.v[tu_below(&g.rng, nm.n)];
			ikl = e->klen;
			memcpy(ik, e->key, ikl);
			OK(rfs_tree_delete(g.pool.pool, &in, ik, ikl, 0));
			tu_map_del(&nm, ik, ikl);
		} else {
			ikl = gen_key(ik);
			ivl = gen_val(iv);
			OK(rfs_tree_put(g.pool.pool, &in, ik, ikl, iv, ivl, 0, RFS_PUT_UPSERT));
			tu_map_put(&nm, ik, ikl, iv, ivl, 0);
		}
	}
	const char *d = tu_tree_diff(g.pool.pool, &in, &nm, false);
	CHECK(d == NULL, "modified nested tree differs: %s", d);
	tag = new_snap(&nm);
	tu_map_clear(&nm);
	memcpy(v, &in.root, 8);
	memcpy(v + 8, &tag, 8);
	OK(rfs_tree_put(g.pool.pool, &t, k, kl, v, 16, RFS_ITEM_TREE, RFS_PUT_REPLACE | RFS_KEEP_REFS));
	tu_map_put(m, k, kl, v, 16, RFS_ITEM_TREE);
	store(id, &t);
	compare_touched(id, k, kl);
}

static void op_clone(void)
{
	int src = pick_live(), dst = pick_free();
	g.op_id = (uint64_t)dst;
	rfs_tree t = load(src), d = {0, 0};
	OK(rfs_tree_clone(g.pool.pool, &t, &d));
	EQ_U64(d.root, t.root);
	store(dst, &d);
	tu_map_clear(&g.cur[dst]);
	tu_map_copy(&g.cur[dst], &g.cur[src]);
	g.cur_live[dst] = true;
	compare_touched(dst, NULL, 0);
}

static void op_create(void)
{
	int id = pick_free();
	g.op_id = (uint64_t)id;
	rfs_tree t = {0, RFS_OWNER_USER + (uint64_t)id};
	store(id, &t);
	tu_map_clear(&g.cur[id]);
	g.cur_live[id] = true;
}

static void op_drop(void)
{
	int id = pick_live();
	g.op_id = (uint64_t)id;
	OK(rfs_catalog_del(g.pool.pool, (uint64_t)id));
	tu_map_clear(&g.cur[id]);
	g.cur_live[id] = false;
	rfs_tree t;
	RC(rfs_catalog_get(g.pool.pool, (uint64_t)id, &t), -ENOENT);
}

static void op_qdrop_id(int id)
{
	rfs_tree t;
	OK(rfs_catalog_take(g.pool.pool, (uint64_t)id, &t));
	OK(rfs_dropq_add(g.pool.pool, &t, 0));
}

/* drop via the queue: the tree leaves the catalog at once (O(1)); its
 * blocks come back as op_qwork runs */
static void op_qdrop(void)
{
	int id = pick_live();
	g.op_id = (uint64_t)id;
	rfs_tree t;
	OK(rfs_catalog_take(g.pool.pool, (uint64_t)id, &t));
	OK(rfs_dropq_add(g.pool.pool, &t, tu_below(&g.rng, 100)));
	EQ_U64(t.root, 0);
	tu_map_clear(&g.cur[id]);
	g.cur_live[id] = false;
	RC(rfs_catalog_get(g.pool.pool, (uint64_t)id, &t), -ENOENT);
}

/* release queued trees, a random budget at a time */
static void op_qwork(void)
{
	uint64_t budget = tu_below(&g.rng, 4) ? tu_range(&g.rng, 1, 40) : tu_range(&g.rng, 100, 3000);
	uint64_t freed, left;
	g.op_id = budget;
	OK(rfs_dropq_work(g.pool.pool, budget, &freed, &left));
	struct rfs_dropq_stat st;
	OK(rfs_dropq_stat(g.pool.pool, &st));
	EQ_U64(left, st.blocks);
	CHECK((left == 0) == (rfs_pool_root(g.pool.pool, RFS_ROOT_DROPQ) == 0),
	      "left %" PRIu64 " but queue root %" PRIu64, left,
	      rfs_pool_root(g.pool.pool, RFS_ROOT_DROPQ));
}

/* open with a random cache limit: small caches force evictions and
 * re-reads of committed blocks */
static void open_pool(void)
{
	tu_open(&g.pool, RFS_OPEN_CRASHSIM);
	static const uint64_t limits[] = {0, 8, 32, 200};
	uint64_t l = limits[tu_below(&g.rng, 4)];
	if (l)
		rfs_pool_set_cache_limit(g.pool.pool, l);
}

static void op_commit(void)
{
	tu_commit(&g.pool);
	snapshot_commit();
}

static void op_crash(void)
{
	enum rfs_crash_mode mode = (enum rfs_crash_mode)tu_below(&g.rng, 3);
	g.op_id = mode;
	tu_crash(&g.pool, mode, tu_next(&g.rng));
	open_pool();
	restore_commit();
	compare_all(true);
}

/* a commit whose writes fail part-way: the pool turns read-only and the
 * last commit survives (or, when enough writes were allowed, it worked) */
static void op_failcommit(void)
{
	uint64_t n = tu_below(&g.rng, 60);
	g.op_id = n;
	rfs_pool_fail_writes_after(g.pool.pool, n);
	int rc = rfs_pool_commit_locked(g.pool.pool);
	rfs_pool_fail_writes_after(g.pool.pool, UINT64_MAX);
	if (rc == 0) {
		snapshot_commit();
		/* Only the write of the superblock's second copy failed, after
		 * the commit was durable: the pool turned read-only. */
		if (rfs_pool_check_writable(g.pool.pool) == -EROFS) {
			tu_close(&g.pool);
			open_pool();
			restore_commit();
			compare_all(true);
		}
		return;
	}
	CHECK(rc == -EIO, "commit with failing writes = %d", rc);
	/* every later mutation fails with -EROFS (pool.h); a violation is
	 * counted and reported at the end, so the run goes on */
	int id = pick_live();
	if (id) {
		rfs_tree t = load(id);
		rc = rfs_tree_put(g.pool.pool, &t, "ro", 2, "", 0, 0, RFS_PUT_UPSERT);
		if (rc != -EROFS && g.rofs_violations++ == 0)
			g.rofs_first_step = g.step, g.rofs_first_rc = rc;
	}
	RC(rfs_pool_commit_locked(g.pool.pool), -EROFS);
	tu_close(&g.pool);
	open_pool();
	restore_commit();
	compare_all(true);
}

static void op_reopen(void)
{
	if (tu_below(&g.rng, 2))
		op_commit();
	tu_close(&g.pool);
	open_pool();
	restore_commit();
	compare_all(true);
}

/* ---- the run --------------------------------------------------------------------- */

enum { OP_INSERT, OP_UPSERT, OP_REPLACE, OP_DELETE, OP_LOOKUP, OP_SCAN, OP_EXTENT,
       OP_CLONE, OP_CREATE, OP_DROP, OP_COMMIT, OP_CRASH, OP_REOPEN, OP_NEST, OP_NEST_MODIFY,
       OP_FAILCOMMIT, OP_QDROP, OP_QWORK, OP_N };
static const char *op_names[OP_N] = {"insert", "upsert", "replace", "delete", "lookup", "scan", "extent",
				     "clone", "create", "drop", "commit", "crash", "reopen", "nest", "nest-modify",
				     "failcommit", "qdrop", "qwork"};
/* weights in 1/1000 */
static const int op_weight[OP_N] = {250, 130, 90, 170, 100, 60, 15, 12, 6, 8, 40, 6, 6, 6, 12, 3, 8, 30};

static int pick_op(void)
{
	int total = 0;
	for (int i = 0; i < OP_N; i++)
		total += op_weight[i];
	int x = (int)tu_below(&g.rng, (uint64_t)total);
	for (int i = 0; i < OP_N; i++) {
		if (x < op_weight[i])
			return i;
		x -= op_weight[i];
	}
	return OP_LOOKUP;
}

static void test_model(void **state)
{
	(void)state;
	tu_log_capture();
	tu_fail_hook = replay_hint;
	g.rng.s = g.seed;
	tu_pool_init(&g.pool);
	tu_pool_create(&g.pool, 4ull << 30);
	tu_open(&g.pool, RFS_OPEN_CRASHSIM);
	g.base_used = tu_stats(&g.pool).used_blocks;
	for (int id = 1; id <= 3; id++) {
		rfs_tree t = {0, RFS_OWNER_USER + (uint64_t)id};
		store(id, &t);
		g.cur_live[id] = true;
	}
	op_commit();
	time_t t0 = time(NULL);

	for (g.step = 1; g.step <= g.steps; g.step++) {
		int op = pick_op();
		int live = nlive();
		size_t total = total_items();
		if (live == 0)
			op = OP_CREATE;
		if ((op == OP_CLONE || op == OP_CREATE) && live >= MAX_LIVE)
			op = OP_DROP;
		if ((op == OP_DROP || op == OP_QDROP) && live <= 1)
			op = OP_CREATE;
		if (op == OP_CLONE && total > MAX_ITEMS * 3 / 4)
			op = OP_DROP;
		if ((op == OP_INSERT || op == OP_UPSERT || op == OP_EXTENT || op == OP_NEST) && total >= MAX_ITEMS)
			op = OP_DELETE;
		/* grow faster at the start: bursts of inserts */
		if (op == OP_INSERT && total < MAX_ITEMS / 2 && tu_below(&g.rng, 4) == 0) {
			g.op = "insert-burst";
			int n = (int)tu_range(&g.rng, 10, 100);
			for (int i = 0; i < n; i++)
				op_put(RFS_PUT_INSERT, 0, false);
			g.counts[op]++;
			continue;
		}
		g.op = op_names[op];
		g.op_id = 0;
		g.counts[op]++;
		switch (op) {
		case OP_INSERT: op_put(RFS_PUT_INSERT, 5, false); break;
		case OP_UPSERT: op_put(RFS_PUT_UPSERT, 60, false); break;
		case OP_REPLACE: op_put(RFS_PUT_REPLACE, 85, false); break;
		case OP_DELETE: op_delete(); break;
		case OP_LOOKUP: op_lookup(); break;
		case OP_SCAN: op_scan(); break;
		case OP_EXTENT: op_put(RFS_PUT_UPSERT, 30, true); break;
		case OP_CLONE: op_clone(); break;
		case OP_CREATE: op_create(); break;
		case OP_DROP: op_drop(); break;
		case OP_COMMIT: op_commit(); break;
		case OP_CRASH: op_crash(); break;
		case OP_REOPEN: op_reopen(); break;
		case OP_NEST: op_nest(); break;
		case OP_NEST_MODIFY: op_nest_modify(); break;
		case OP_FAILCOMMIT: op_failcommit(); break;
		case OP_QDROP: op_qdrop(); break;
		case OP_QWORK: op_qwork(); break;
		}
		if (g.step % CHECK_EVERY == 0)
			compare_all(true);
		if (total > g.max_total)
			g.max_total = total;
		if (g.step % 100 == 0 && op != OP_CRASH) {
			int id = pick_live();
			if (id) {
				rfs_tree t = load(id);
				int h = 0;
				OK(rfs_tree_height(g.pool.pool, &t, &h));
				if (h > g.max_height)
					g.max_height = h;
			}
		}
	}
	g.op = "final";
	compare_all(true);
	op_commit();
	tu_close(&g.pool);
	tu_open(&g.pool, 0);
	compare_all(true);
	/* drop everything (half through the queue) and finish the queue:
	 * the pool is back to its empty size */
	for (int id = 1; id <= NIDS; id++)
		if (g.cur_live[id]) {
			if (id % 2)
				OK(rfs_catalog_del(g.pool.pool, (uint64_t)id));
			else
				op_qdrop_id(id);
			g.cur_live[id] = false;
			tu_map_clear(&g.cur[id]);
		}
	uint64_t freed, left;
	do
		OK(rfs_dropq_work(g.pool.pool, 1000, &freed, &left));
	while (left);
	tu_commit(&g.pool);
	CHECK_CLEAN(&g.pool);
	EQ_U64(tu_stats(&g.pool).used_blocks, g.base_used);

	CHECK(g.rofs_violations == 0,
	      "%ld times a tree mutation after a failed commit did not give -EROFS (first at step %ld: %d)",
	      g.rofs_violations, g.rofs_first_step, g.rofs_first_rc);
	fprintf(stderr, "model: %ld steps in %lds, up to %zu items, height up to %d;", g.steps,
		(long)(time(NULL) - t0), g.max_total, g.max_height);
	for (int i = 0; i < OP_N; i++)
		fprintf(stderr, " %s %ld", op_names[i], g.counts[i]);
	fprintf(stderr, "\n");
	tu_pool_fini(&g.pool);
	for (int i = 0; i <= NIDS; i++) {
		tu_map_clear(&g.cur[i]);
		tu_map_clear(&g.com[i]);
	}
	free_snaps();
	tu_log_clear();
}

static int teardown(void **state)
{
	(void)state;
	tu_pool_fini(&g.pool);
	for (int i = 0; i <= NIDS; i++) {
		tu_map_clear(&g.cur[i]);
		tu_map_clear(&g.com[i]);
	}
	free_snaps();
	tu_log_clear();
	return 0;
}

int main(int argc, char **argv)
{
	const char *s = argc > 1 ? argv[1] : getenv("RFS_SEED");
	const char *n = argc > 2 ? argv[2] : getenv("RFS_STEPS");
	if (s && *s)
		g.seed = strtoull(s, NULL, 0);
	else
		g.seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20);
	g.steps = n && *n ? strtol(n, NULL, 0) : 10000;
	fprintf(stderr, "test_tree_model: seed %" PRIu64 ", %ld steps\n"
		"replay: RFS_SEED=%" PRIu64 " RFS_STEPS=%ld build/asan/tests/model/test_tree_model\n",
		g.seed, g.steps, g.seed, g.steps);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_model, teardown),
	};
	return tu_exit(cmocka_run_group_tests(tests, NULL, NULL));
}
