/*
 * Unit tests of the drop queue (tree.h: rfs_dropq_*): queued trees are
 * released in bounded steps, resumably across commits, reopens and
 * discarded transactions, with nested trees and data extents in their
 * values, while the live trees that share their nodes keep changing
 * (writes, clones, more drops) between the steps.  rfs_check is clean
 * at every point, the live trees keep exactly their content (data read
 * back and verified), and every block comes back at the end.
 */
#include "../common/testutil.h"

#define NNEST 6
#define INNER_ITEMS 150

/* ---- a test tree: plain items, extents, nested trees ------------------------- */

/*
 * Outer keys: 'p' be64 plain values, 'e' be64 data extents, 'n' be64
 * nested trees (value: root, tag).  Each nested tree holds 'i' be64
 * plain items and one extent under "x".  The model keeps the exact
 * values (extent values include their block numbers, nested values
 * their current root).
 */
typedef struct {
	tu_map outer;
	tu_map inner[NNEST];
	uint32_t seed; /* next extent seed */
	uint64_t nplain;
} model;

static size_t okey(uint8_t *k, char kind, uint64_t i)
{
	k[0] = (uint8_t)kind;
	tu_be64(k + 1, i);
	return 9;
}

static void model_free(model *m)
{
	tu_map_clear(&m->outer);
	for (int j = 0; j < NNEST; j++)
		tu_map_clear(&m->inner[j]);
}

static void model_copy(model *dst, const model *src)
{
	tu_map_copy(&dst->outer, &src->outer);
	for (int j = 0; j < NNEST; j++)
		tu_map_copy(&dst->inner[j], &src->inner[j]);
	dst->seed = src->seed + 100000;
	dst->nplain = src->nplain;
}

static uint64_t used(tu_pool *c)
{
	return tu_stats(c).used_blocks;
}

static void put(tu_pool *c, rfs_tree *t, tu_map *m, const uint8_t *k, size_t kl,
		const void *v, size_t vl, uint8_t fl)
{
	OK(rfs_tree_put(c->pool, t, k, kl, v, vl, fl, RFS_PUT_UPSERT));
	tu_map_put(m, k, kl, v, vl, fl);
}

static void put_plain(tu_pool *c, rfs_tree *t, tu_map *m, tu_rng *r, const uint8_t *k,
		      size_t kl)
{
	uint8_t v[256];
	size_t vl = (size_t)tu_range(r, 20, 200);
	tu_fill(r, v, vl);
	put(c, t, m, k, kl, v, vl, 0);
}

static void put_extent(tu_pool *c, rfs_tree *t, tu_map *m, model *mm, tu_rng *r,
		       const uint8_t *k, size_t kl)
{
	uint8_t v[RFS_VAL_MAX];
	long vl = tu_ext_make(c->pool, tu_range(r, 1, 8), mm->seed++, v);
	CHECK(vl > 0, "tu_ext_make = %ld", vl);
	put(c, t, m, k, kl, v, (size_t)vl, RFS_ITEM_EXTENT);
}

/* Build a tree of nplain plain items, next extents and NNEST nested
 * trees (several levels high). */
static void build(tu_pool *c, rfs_tree *t, model *m, tu_rng *r, uint64_t nplain,
		  uint64_t next)
{
	uint8_t k[16];
	memset(m, 0, sizeof(*m));
	m->seed = 1;
	m->nplain = nplain;
	for (uint64_t i = 0; i < nplain; i++)
		put_plain(c, t, &m->outer, r, k, okey(k, 'p', i));
	for (uint64_t i = 0; i < next; i++)
		put_extent(c, t, &m->outer, m, r, k, okey(k, 'e', i));
	for (int j = 0; j < NNEST; j++) {
		rfs_tree in = {0, RFS_OWNER_USER};
		for (uint64_t i = 0; i < INNER_ITEMS; i++)
			put_plain(c, &in, &m->inner[j], r, k, okey(k, 'i', i));
		put_extent(c, &in, &m->inner[j], m, r, (const uint8_t *)"x", 1);
		uint8_t v[16];
		memcpy(v, &in.root, 8);
		memcpy(v + 8, "nestedtr", 8);
		put(c, t, &m->outer, k, okey(k, 'n', (uint64_t)j), v, 16, RFS_ITEM_TREE);
	}
}

static void verify_map(tu_pool *c, const rfs_tree *t, const tu_map *m, const char *what)
{
	const char *d = tu_tree_diff(c->pool, t, m, false);
	CHECK(d == NULL, "%s differs from its model: %s", what, d);
	for (size_t i = 0; i < m->n; i++) {
		const tu_item *e = &m->v[i];
		if (e->flags & RFS_ITEM_EXTENT) {
			int rc = tu_ext_verify(c->pool, e->val, e->vlen);
			CHECK(rc == 0, "%s: extent %zu reads back wrong (%d)", what, i, rc);
		}
	}
}

/* The tree holds exactly the model, data included. */
static void verify(tu_pool *c, const rfs_tree *t, const model *m)
{
	uint8_t k[16];
	verify_map(c, t, &m->outer, "outer tree");
	for (int j = 0; j < NNEST; j++) {
		const tu_item *e = tu_map_get(&m->outer, k, okey(k, 'n', (uint64_t)j));
		if (!e)
			continue;
		rfs_tree in = {0, RFS_OWNER_USER};
		memcpy(&in.root, e->val, 8);
		verify_map(c, &in, &m->inner[j], "nested tree");
	}
}

/* n random changes: plain puts and deletes, extents rewritten, nested
 * trees changed (read with lookup_mut first, as tree.h requires). */
static void mutate(tu_pool *c, rfs_tree *t, model *m, tu_rng *r, int n)
{
	uint8_t k[16];
	for (int op = 0; op < n; op++) {
		uint64_t p = tu_below(r, 100);
		if (p < 40) {
			put_plain(c, t, &m->outer, r, k, okey(k, 'p', tu_below(r, m->nplain * 2)));
		} else if (p < 55) {
			size_t kl = okey(k, 'p', tu_below(r, m->nplain * 2));
			if (tu_map_del(&m->outer, k, kl))
				OK(rfs_tree_delete(c->pool, t, k, kl, 0));
		} else if (p < 70) {
			put_extent(c, t, &m->outer, m, r, k, okey(k, 'e', tu_below(r, 50)));
		} else {
			int j = (int)tu_below(r, NNEST);
			size_t kl = okey(k, 'n', (uint64_t)j);
			uint8_t v[16];
			size_t vl = sizeof(v);
			uint8_t fl;
			if (!tu_map_get(&m->outer, k, kl))
				continue;
			OK(rfs_tree_lookup_mut(c->pool, t, k, kl, v, &vl, &fl));
			rfs_tree in = {0, RFS_OWNER_USER};
			memcpy(&in.root, v, 8);
			uint8_t ik[16];
			for (int s = 0; s < 4; s++)
				put_plain(c, &in, &m->inner[j], r, ik,
					  okey(ik, 'i', tu_below(r, INNER_ITEMS * 2)));
			if (tu_below(r, 3) == 0)
				put_extent(c, &in, &m->inner[j], m, r, (const uint8_t *)"x", 1);
			memcpy(v, &in.root, 8);
			OK(rfs_tree_put(c->pool, t, k, kl, v, vl, fl,
					RFS_PUT_REPLACE | RFS_KEEP_REFS));
			tu_map_put(&m->outer, k, kl, v, vl, fl);
		}
	}
}

static void store(tu_pool *c, uint64_t id, const rfs_tree *t)
{
	OK(rfs_catalog_set(c->pool, id, t));
}

static rfs_tree load(tu_pool *c, uint64_t id)
{
	rfs_tree t = {0, 0};
	OK(rfs_catalog_get(c->pool, id, &t));
	return t;
}

static struct rfs_dropq_stat qstat(tu_pool *c)
{
	struct rfs_dropq_stat st;
	memset(&st, 0xa5, sizeof(st));
	OK(rfs_dropq_stat(c->pool, &st));
	return st;
}

/* ---- tests ---------------------------------------------------------------------- */

/* An unshared tree (nested trees, extents, several levels) released in
 * small steps with commits, reopens and checks in between. */
static void test_unshared_resumable(void **state)
{
	tu_pool *c = *state;
	tu_rng r = {11};
	model m;
	tu_commit(c);
	uint64_t u0 = used(c);
	rfs_tree t = {0, RFS_OWNER_USER};
	build(c, &t, &m, &r, 3000, 40);
	int h;
	OK(rfs_tree_height(c->pool, &t, &h));
	CHECK(h >= 2, "test tree is only %d level(s) high", h);
	store(c, 1, &t);
	tu_commit(c);
	verify(c, &t, &m);
	uint64_t u1 = used(c);

	rfs_tree q;
	OK(rfs_catalog_take(c->pool, 1, &q));
	EQ_U64(q.root, t.root);
	RC(rfs_catalog_get(c->pool, 1, &t), -ENOENT);
	OK(rfs_dropq_add(c->pool, &q, u1 - u0));
	EQ_U64(q.root, 0);
	struct rfs_dropq_stat st = qstat(c);
	EQ_U64(st.trees, 1);
	EQ_U64(st.queued, 1);
	CHECK(st.blocks >= u1 - u0, "estimate %" PRIu64 " < %" PRIu64, st.blocks, u1 - u0);
	CHECK(rfs_pool_root(c->pool, RFS_ROOT_DROPQ) != 0, "queue root not set");
	/* queued, nothing released yet: every block still counted */
	CHECK_CLEAN(c);
	tu_commit(c);
	CHECK_CLEAN(c);
	CHECK(used(c) >= u1, "queueing freed blocks");

	uint64_t steps = 0, freed_sum = 0, left = 0, max_trees = 0, last_blocks = st.blocks;
	do {
		uint64_t freed;
		OK(rfs_dropq_work(c->pool, 5, &freed, &left));
		steps++;
		freed_sum += freed;
		if (left) {
			st = qstat(c);
			EQ_U64(left, st.blocks);
			CHECK(st.blocks <= last_blocks, "estimate grew: %" PRIu64 " -> %" PRIu64,
			      last_blocks, st.blocks);
			last_blocks = st.blocks;
			if (st.trees > max_trees)
				max_trees = st.trees;
		}
		CHECK_CLEAN(c);
		if (steps % 3 == 0)
			tu_commit(c);
		if (steps % 7 == 0) {
			tu_commit(c);
			tu_reopen(c, 0);
			CHECK_CLEAN(c);
		}
	} while (left);
	CHECK(steps > 20, "released in %" PRIu64 " steps of budget 5", steps);
	CHECK(max_trees >= 2, "nested trees were never queued (max %" PRIu64 ")", max_trees);
	CHECK(freed_sum + 8 >= u1 - u0, "freed %" PRIu64 " of %" PRIu64, freed_sum, u1 - u0);
	EQ_U64(rfs_pool_root(c->pool, RFS_ROOT_DROPQ), 0);
	st = qstat(c);
	EQ_U64(st.trees, 0);
	EQ_U64(st.blocks, 0);
	tu_commit(c);
	EQ_U64(used(c), u0);
	CHECK_CLEAN(c);
	model_free(&m);
}

/* The queued tree shares nodes, nested trees and extents with a live
 * clone that keeps changing (and is cloned and queued itself) between
 * the steps. */
static void test_shared_interleaved(void **state)
{
	tu_pool *c = *state;
	tu_rng r = {12};
	model mt, ms, ms2;
	tu_commit(c);
	uint64_t u0 = used(c);
	rfs_tree t = {0, RFS_OWNER_USER}, s;
	build(c, &t, &mt, &r, 2500, 40);
	store(c, 1, &t);
	OK(rfs_tree_clone(c->pool, &t, &s));
	model_copy(&ms, &mt);
	mutate(c, &s, &ms, &r, 30);
	store(c, 2, &s);
	tu_commit(c);
	verify(c, &t, &mt);
	verify(c, &s, &ms);

	rfs_tree q;
	OK(rfs_catalog_take(c->pool, 1, &q));
	OK(rfs_dropq_add(c->pool, &q, 100));
	uint64_t left = 1, iter = 0;
	while (left) {
		uint64_t freed;
		/* small steps: many of them, each between changes of the clone */
		OK(rfs_dropq_work(c->pool, 15, &freed, &left));
		iter++;
		s = load(c, 2);
		mutate(c, &s, &ms, &r, 5);
		store(c, 2, &s);
		verify(c, &s, &ms);
		if (iter % 4 == 0 && iter <= 24) {
			/* a clone of the live sharer, changed, then queued too */
			rfs_tree s2;
			OK(rfs_tree_clone(c->pool, &s, &s2));
			model_copy(&ms2, &ms);
			mutate(c, &s2, &ms2, &r, 5);
			verify(c, &s2, &ms2);
			store(c, 3, &s2);
			tu_commit(c);
			rfs_tree q2;
			OK(rfs_catalog_take(c->pool, 3, &q2));
			OK(rfs_dropq_add(c->pool, &q2, 0));
			model_free(&ms2);
			left = 1;
		}
		if (iter % 5 == 0) {
			tu_commit(c);
			CHECK_CLEAN(c);
		}
		CHECK(iter < 100000, "the queue never empties");
	}
	CHECK(iter > 10, "released in %" PRIu64 " steps", iter);
	CHECK_CLEAN(c);
	s = load(c, 2);
	verify(c, &s, &ms);
	tu_commit(c);
	tu_reopen(c, 0);
	s = load(c, 2);
	verify(c, &s, &ms);

	/* the last sharer goes too: everything comes back */
	OK(rfs_catalog_take(c->pool, 2, &q));
	OK(rfs_dropq_add(c->pool, &q, 0));
	do {
		uint64_t freed;
		OK(rfs_dropq_work(c->pool, 1000, &freed, &left));
	} while (left);
	tu_commit(c);
	EQ_U64(used(c), u0);
	CHECK_CLEAN(c);
	model_free(&mt);
	model_free(&ms);
}

/* rfs_dropq_release: O(1) cases at once, the rest queued. */
static void test_release(void **state)
{
	tu_pool *c = *state;
	tu_rng r = {13};
	model m;
	uint8_t k[16];
	tu_commit(c);
	uint64_t u0 = used(c);

	/* one leaf with extents and no nested tree: freed now */
	rfs_tree t = {0, RFS_OWNER_USER};
	tu_map small = {0};
	model dummy = {.seed = 5};
	for (uint64_t i = 0; i < 5; i++)
		put_plain(c, &t, &small, &r, k, okey(k, 'p', i));
	put_extent(c, &t, &small, &dummy, &r, k, okey(k, 'e', 0));
	store(c, 1, &t);
	tu_commit(c);
	OK(rfs_catalog_take(c->pool, 1, &t));
	OK(rfs_dropq_release(c->pool, &t, 9));
	EQ_U64(t.root, 0);
	EQ_U64(qstat(c).trees, 0);
	EQ_U64(rfs_pool_root(c->pool, RFS_ROOT_DROPQ), 0);
	tu_commit(c);
	EQ_U64(used(c), u0);
	CHECK_CLEAN(c);
	tu_map_clear(&small);

	/* a big tree: queued; its clone released first only loses a count */
	t.root = 0;
	build(c, &t, &m, &r, 2000, 10);
	store(c, 1, &t);
	rfs_tree cl;
	OK(rfs_tree_clone(c->pool, &t, &cl));
	tu_commit(c);
	uint64_t u1 = used(c);
	OK(rfs_dropq_release(c->pool, &cl, 0));
	EQ_U64(cl.root, 0);
	EQ_U64(qstat(c).trees, 0);
	CHECK_CLEAN(c);
	verify(c, &t, &m);
	OK(rfs_catalog_take(c->pool, 1, &t));
	RC(rfs_dropq_release(c->pool, &t, 0), 1);
	EQ_U64(t.root, 0);
	EQ_U64(qstat(c).trees, 1);
	CHECK_CLEAN(c);
	tu_commit(c);
	/* queued, not freed: only bookkeeping blocks changed (the catalog
	 * and refcount trees emptied, the queue's leaf appeared) */
	CHECK(used(c) + 2 >= u1 && used(c) <= u1 + 1, "used %" PRIu64 " -> %" PRIu64, u1, used(c));

	/* one leaf holding a nested tree: queued (the nested one may be big) */
	rfs_tree outer = {0, RFS_OWNER_USER}, in = {0, RFS_OWNER_USER};
	tu_map mi = {0}, mo = {0};
	for (uint64_t i = 0; i < 1000; i++)
		put_plain(c, &in, &mi, &r, k, okey(k, 'i', i));
	uint8_t v[16] = {0};
	memcpy(v, &in.root, 8);
	put(c, &outer, &mo, (const uint8_t *)"n", 1, v, 16, RFS_ITEM_TREE);
	RC(rfs_dropq_release(c->pool, &outer, 0), 1);
	EQ_U64(qstat(c).trees, 2);
	CHECK_CLEAN(c);
	uint64_t freed, left;
	do
		OK(rfs_dropq_work(c->pool, 0 /* one step at least */, &freed, &left));
	while (left);
	tu_commit(c);
	EQ_U64(used(c), u0);
	CHECK_CLEAN(c);
	tu_map_clear(&mi);
	tu_map_clear(&mo);
	model_free(&m);
}

/* A directory of small files, as the fs makes them: the nested trees
 * that are one leaf are released at once while their parent's leaf is,
 * shared ones only lose a count; the queue does not grow. */
static void test_small_nested_inline(void **state)
{
	tu_pool *c = *state;
	tu_rng r = {17};
	uint8_t k[16];
	tu_commit(c);
	uint64_t u0 = used(c);
	rfs_tree dir = {0, RFS_OWNER_USER};
	tu_map md = {0};
	model dummy = {.seed = 9};
	rfs_tree kept[4];
	tu_map mk[4];
	memset(mk, 0, sizeof(mk));
	for (uint64_t i = 0; i < 400; i++) {
		rfs_tree f = {0, RFS_OWNER_USER};
		tu_map mf = {0};
		put_plain(c, &f, &mf, &r, k, okey(k, 'p', 0));
		put_extent(c, &f, &mf, &dummy, &r, k, okey(k, 'e', 0));
		if (i < 4) {
			/* four files are shared with trees that stay */
			OK(rfs_tree_clone(c->pool, &f, &kept[i]));
			tu_map_copy(&mk[i], &mf);
			store(c, 10 + i, &kept[i]);
		}
		uint8_t v[16] = {0};
		memcpy(v, &f.root, 8);
		put(c, &dir, &md, k, okey(k, 'n', i), v, 16, RFS_ITEM_TREE);
		tu_map_clear(&mf);
	}
	store(c, 1, &dir);
	tu_commit(c);
	rfs_tree q;
	OK(rfs_catalog_take(c->pool, 1, &q));
	OK(rfs_dropq_add(c->pool, &q, 0));
	uint64_t freed, left, max_trees = 0;
	do {
		OK(rfs_dropq_work(c->pool, 50, &freed, &left));
		struct rfs_dropq_stat st = qstat(c);
		if (st.trees > max_trees)
			max_trees = st.trees;
		CHECK_CLEAN(c);
	} while (left);
	EQ_U64(max_trees, 1);
	for (int i = 0; i < 4; i++) {
		rfs_tree t = load(c, 10 + (uint64_t)i);
		verify_map(c, &t, &mk[i], "kept file");
		OK(rfs_catalog_del(c->pool, 10 + (uint64_t)i));
		tu_map_clear(&mk[i]);
	}
	tu_commit(c);
	EQ_U64(used(c), u0);
	CHECK_CLEAN(c);
	tu_map_clear(&md);
}

/* Work that is never committed is lost with the transaction: the queue
 * is back where the last commit left it, and finishing it from there
 * frees everything exactly once. */
static void test_discarded_work(void **state)
{
	tu_pool *c = *state;
	tu_rng r = {14};
	model m;
	tu_commit(c);
	uint64_t u0 = used(c);
	rfs_tree t = {0, RFS_OWNER_USER};
	build(c, &t, &m, &r, 3000, 30);
	store(c, 1, &t);
	tu_commit(c);
	OK(rfs_catalog_take(c->pool, 1, &t));
	OK(rfs_dropq_add(c->pool, &t, 0));
	uint64_t freed, left;
	OK(rfs_dropq_work(c->pool, 200, &freed, &left));
	CHECK(freed > 0 && left > 0, "freed %" PRIu64 ", left %" PRIu64, freed, left);
	tu_commit(c);
	struct rfs_dropq_stat committed = qstat(c);
	uint64_t ucommitted = used(c);
	for (int i = 0; i < 5; i++)
		OK(rfs_dropq_work(c->pool, 200, &freed, &left));
	CHECK(used(c) < ucommitted, "work freed nothing");
	tu_reopen(c, 0); /* discards the running transaction */
	struct rfs_dropq_stat st = qstat(c);
	EQ_U64(st.trees, committed.trees);
	EQ_U64(st.blocks, committed.blocks);
	EQ_U64(used(c), ucommitted);
	CHECK_CLEAN(c);
	do
		OK(rfs_dropq_work(c->pool, 500, &freed, &left));
	while (left);
	tu_commit(c);
	EQ_U64(used(c), u0);
	CHECK_CLEAN(c);
	model_free(&m);
}

/* A queued tree whose root cannot be read: the step fails before it
 * changes anything, the pool stays writable, the queue keeps the tree,
 * and the check names the block. */
static void test_unreadable_node(void **state)
{
	tu_pool *c = *state;
	tu_rng r = {15};
	model m;
	rfs_tree t = {0, RFS_OWNER_USER};
	build(c, &t, &m, &r, 2000, 5);
	store(c, 1, &t);
	tu_commit(c);
	uint64_t root = t.root;
	OK(rfs_catalog_take(c->pool, 1, &t));
	OK(rfs_dropq_add(c->pool, &t, 0));
	tu_commit(c);
	tu_close(c);
	tu_flip_bit(c->path, root, 8 * 200 + 3);
	tu_open(c, 0);
	tu_log_clear();
	uint64_t freed, left;
	int rc = rfs_dropq_work(c->pool, 100, &freed, &left);
	CHECK(rc == -EIO || rc == -EUCLEAN, "work on a damaged tree = %d", rc);
	EQ_U64(freed, 0);
	OK(rfs_pool_check_writable(c->pool));
	EQ_U64(qstat(c).trees, 1);
	CHECK(tu_log_names_block(root), "no log line names block %" PRIu64, root);
	static tu_reports rep;
	CHECK(tu_check(c, &rep, NULL) > 0, "check finds nothing wrong");
	CHECK(tu_reports_name(&rep, root), "check does not name block %" PRIu64, root);
	model_free(&m);
}

/* rfs_check counts what the queue references: an entry removed behind
 * the queue's back shows up as leaked blocks and a wrong count. */
static void test_check_sees_queue(void **state)
{
	tu_pool *c = *state;
	tu_rng r = {16};
	model m;
	rfs_tree t = {0, RFS_OWNER_USER};
	/* More than one step's 100 blocks, with full leaves. */
	build(c, &t, &m, &r, 6000, 5);
	store(c, 1, &t);
	OK(rfs_catalog_take(c->pool, 1, &t));
	uint64_t root = t.root;
	OK(rfs_dropq_add(c->pool, &t, 0));
	uint64_t freed, left;
	OK(rfs_dropq_work(c->pool, 100, &freed, &left));
	CHECK(left > 0, "the tree went in one step");
	CHECK_CLEAN(c);
	rfs_tree qt = {rfs_pool_root(c->pool, RFS_ROOT_DROPQ), RFS_OWNER_DROPQ};
	uint8_t key[8];
	tu_be64(key, 1);
	OK(rfs_tree_delete(c->pool, &qt, key, 8, 0));
	rfs_pool_set_root(c->pool, RFS_ROOT_DROPQ, qt.root);
	static tu_reports rep;
	CHECK(tu_check(c, &rep, NULL) > 0, "a lost queue entry goes unnoticed");
	CHECK(tu_reports_name(&rep, root), "the leaked root %" PRIu64 " is not reported", root);
	model_free(&m);
}

/* Edges: an empty queue, an empty tree, the trees that cannot be
 * queued, catalog_take of an absent id, a read-only pool. */
static void test_edges(void **state)
{
	tu_pool *c = *state;
	uint64_t freed = 7, left = 7;
	OK(rfs_dropq_work(c->pool, 100, &freed, &left));
	EQ_U64(freed, 0);
	EQ_U64(left, 0);
	struct rfs_dropq_stat st = qstat(c);
	EQ_U64(st.trees, 0);
	EQ_U64(st.blocks, 0);
	rfs_tree t = {0, RFS_OWNER_USER};
	OK(rfs_dropq_add(c->pool, &t, 5));
	EQ_U64(qstat(c).trees, 0);
	EQ_U64(rfs_pool_root(c->pool, RFS_ROOT_DROPQ), 0);
	RC(rfs_catalog_take(c->pool, 42, &t), -ENOENT);
	OK(rfs_tree_put(c->pool, &t, "k", 1, "v", 1, 0, RFS_PUT_INSERT));
	rfs_tree bad = {t.root, RFS_OWNER_REFCOUNT};
	RC(rfs_dropq_add(c->pool, &bad, 0), -EINVAL);
	bad.owner = RFS_OWNER_DROPQ;
	RC(rfs_dropq_release(c->pool, &bad, 0), -EINVAL);
	/* budget 0 still makes progress */
	store(c, 1, &t);
	tu_commit(c);
	OK(rfs_catalog_take(c->pool, 1, &t));
	OK(rfs_dropq_add(c->pool, &t, 0));
	EQ_U64(qstat(c).trees, 1);
	OK(rfs_dropq_work(c->pool, 0, &freed, &left));
	EQ_U64(left, 0);
	EQ_U64(qstat(c).trees, 0);
	tu_commit(c);
	CHECK_CLEAN(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_unshared_resumable, tu_setup_open, tu_teardown),
		cmocka_unit_test_setup_teardown(test_shared_interleaved, tu_setup_open, tu_teardown),
		cmocka_unit_test_setup_teardown(test_release, tu_setup_open, tu_teardown),
		cmocka_unit_test_setup_teardown(test_small_nested_inline, tu_setup_open, tu_teardown),
		cmocka_unit_test_setup_teardown(test_discarded_work, tu_setup_open, tu_teardown),
		cmocka_unit_test_setup_teardown(test_unreadable_node, tu_setup_open, tu_teardown),
		cmocka_unit_test_setup_teardown(test_check_sees_queue, tu_setup_open, tu_teardown),
		cmocka_unit_test_setup_teardown(test_edges, tu_setup_open, tu_teardown),
	};
	return tu_exit(cmocka_run_group_tests(tests, NULL, NULL));
}
