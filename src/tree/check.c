/*
 * Consistency check (the core of fsck).  Walks every tree reachable from
 * the superblock roots, counting the references each block receives
 * (pointers from distinct nodes, value references, superblock roots), then
 * compares them with the refcount tree and the allocation bitmap.  Under
 * lazy refcounting a node's count is the number of distinct nodes that
 * point at it, so a node reached twice is walked only once.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "reflinkfs/log.h"
#include "tree/dropq.h"
#include "util/lockcheck.h"

enum { K_NONE = 0, K_NODE = 1, K_DATA = 2 };

struct chk {
	rfs_pool *pool;
	rfs_check_report_fn report;
	void *arg;
	struct rfs_check_stats *st;
	uint64_t start, end; /* blocks [start, end) may be referenced */
	uint32_t *refs;
	uint32_t *rc;
	uint8_t *kind;
	int depth;
};

static void problem(struct chk *c, uint64_t blk, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void problem(struct chk *c, uint64_t blk, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	c->st->problems++;
	if (c->report)
		c->report(c->arg, blk, msg);
}

static bool in_pool(struct chk *c, uint64_t blk, uint64_t from, const char *what)
{
	if (blk >= c->start && blk < c->end)
		return true;
	problem(c, from, "block %llu: %s points outside the allocated area "
		"(block %llu)", (unsigned long long)from, what,
		(unsigned long long)blk);
	return false;
}

static void walk_node(struct chk *c, uint64_t blk, uint64_t gen, int level,
		      uint64_t from, const uint8_t *pk, size_t pl);

static void walk_extent(struct chk *c, uint64_t leafblk, uint64_t start, uint64_t len)
{
	if (start + len < start || !in_pool(c, start, leafblk, "extent") ||
	    !in_pool(c, start + len - 1, leafblk, "extent end"))
		return;
	for (uint64_t b = start; b < start + len; b++) {
		uint64_t i = b - c->start;
		if (c->kind[i] == K_NODE) {
			problem(c, b, "block %llu: used as data by node %llu and "
				"as a tree node", (unsigned long long)b,
				(unsigned long long)leafblk);
			continue;
		}
		if (c->kind[i] == K_NONE)
			c->st->data_blocks++;
		c->kind[i] = K_DATA;
		c->refs[i]++;
	}
}

static void walk_value(struct chk *c, uint64_t leafblk, const uint8_t *val,
		       size_t vlen, uint8_t flags)
{
	struct tree_vrefs v;

	if (!tree_value_refs_valid(val, vlen, flags)) {
		problem(c, leafblk, "block %llu: item flags 0x%x do not fit a "
			"%zu-byte value", (unsigned long long)leafblk, flags, vlen);
		return;
	}
	tree_value_decode(val, vlen, flags, &v);
	if (v.root && in_pool(c, v.root, leafblk, "subtree reference"))
		walk_node(c, v.root, 0, -1, leafblk, NULL, 0);
	for (unsigned i = 0; i < v.n; i++) {
		uint64_t start, len;
		tree_vrefs_ext(&v, i, &start, &len);
		if (len)
			walk_extent(c, leafblk, start, len);
	}
}

/*
 * Count the references of the subtree at blk.  With a progress key pk (a
 * tree the drop queue has partly released), only what is at or right of
 * pk: subtrees and items left of it are released already.
 */
static void walk_node(struct chk *c, uint64_t blk, uint64_t gen, int level,
		      uint64_t from, const uint8_t *pk, size_t pl)
{
	struct rfs_buf *b;
	uint64_t i = blk - c->start;
	int ret;

	if (c->kind[i] == K_DATA) {
		problem(c, blk, "block %llu: used as a tree node (from %llu) and "
			"as data", (unsigned long long)blk, (unsigned long long)from);
		return;
	}
	c->refs[i]++;
	if (c->kind[i] == K_NODE)
		return;
	c->kind[i] = K_NODE;
	c->st->nodes++;
	if (c->depth > 4096) {
		problem(c, blk, "block %llu: trees nested too deeply",
			(unsigned long long)blk);
		return;
	}
	ret = tree_read(c->pool, blk, gen, &b);
	if (ret) {
		problem(c, blk, "block %llu: unreadable tree node (%s), referenced "
			"from %llu", (unsigned long long)blk, strerror(-ret),
			(unsigned long long)from);
		return;
	}
	uint8_t *d = b->data;
	const char *bad = node_validate(d);
	if (bad) {
		problem(c, blk, "block %llu: %s", (unsigned long long)blk, bad);
		rfs_buf_put(c->pool, b);
		return;
	}
	if (level >= 0 && (int)node_level(d) != level)
		problem(c, blk, "block %llu: level %u, expected %d",
			(unsigned long long)blk, node_level(d), level);
	if (node_n(d) == 0 && node_level(d) > 0)
		problem(c, blk, "block %llu: empty internal node",
			(unsigned long long)blk);
	c->depth++;
	unsigned first = 0;
	if (pk && node_level(d) > 0 && node_n(d) > 0) {
		first = node_child_slot(d, pk, pl);
	} else if (pk) {
		bool exact;
		first = node_search(d, pk, pl, &exact);
	}
	for (unsigned k = first; k < node_n(d); k++) {
		if (node_level(d) > 0) {
			struct node_child ch = node_get_child(d, k);
			/* Only the child holding pk is partly released. */
			bool partial = pk && k == first;
			if (in_pool(c, ch.blocknr, blk, "child pointer"))
				walk_node(c, ch.blocknr, ch.gen,
					  (int)node_level(d) - 1, blk,
					  partial ? pk : NULL, partial ? pl : 0);
		} else {
			size_t vlen;
			uint8_t *v = node_val(d, k, &vlen);
			c->st->items++;
			walk_value(c, blk, v, vlen, node_flags(d, k));
		}
	}
	c->depth--;
	rfs_buf_put(c->pool, b);
}

/*
 * The drop queue: its own nodes were walked with the superblock roots
 * (its items carry no reference flags); here each queued tree's
 * references are counted from its progress key on, and the header's
 * figures are checked.
 */
static void walk_dropq(struct chk *c, uint64_t qroot)
{
	struct rfs_cursor cur;
	struct dq_head head;
	bool have_head = false;
	uint64_t n = 0, last = 0;
	int ret;

	tree_cursor_init(&cur, c->pool, qroot);
	ret = rfs_cursor_seek(&cur, NULL, 0, +1);
	while (ret == 0) {
		const void *k, *v;
		size_t kl, vl;
		struct dq_ent *e = malloc(sizeof(*e));

		if (!e) {
			problem(c, qroot, "drop queue: out of memory while checking it");
			break;
		}
		ret = rfs_cursor_get(&cur, &k, &kl, &v, &vl, NULL);
		if (ret) {
			free(e);
			break;
		}
		if (kl == 8 && be64_get(k) == 0) {
			have_head = dq_head_decode(v, vl, &head) == 0;
			if (!have_head)
				problem(c, qroot, "block %llu: drop queue header malformed or "
					"of an unknown version", (unsigned long long)qroot);
		} else if (dq_ent_decode(k, kl, v, vl, e)) {
			problem(c, qroot, "block %llu: malformed drop queue entry",
				(unsigned long long)qroot);
		} else {
			n++;
			last = e->seq;
			if (in_pool(c, e->h.root, qroot, "queued tree"))
				walk_node(c, e->h.root, 0, -1, qroot,
					  e->h.plen ? e->pkey : NULL, e->h.plen);
		}
		free(e);
		ret = rfs_cursor_step(&cur, +1);
	}
	if (ret && ret != -ENOENT)
		problem(c, qroot, "drop queue: unreadable (%s)", strerror(-ret));
	tree_cursor_fini(&cur);
	if (!have_head)
		return;
	if (head.entries != n)
		problem(c, qroot, "drop queue: header counts %llu queued trees, %llu found",
			(unsigned long long)head.entries, (unsigned long long)n);
	if (n && head.next_seq <= last)
		problem(c, qroot, "drop queue: next sequence number %llu not above "
			"entry %llu", (unsigned long long)head.next_seq,
			(unsigned long long)last);
	if (!n)
		problem(c, qroot, "drop queue: empty but not removed");
}

static void load_refcounts(struct chk *c)
{
	struct rfs_cursor cur;
	int ret;

	tree_cursor_init(&cur, c->pool, rfs_pool_root(c->pool, RFS_ROOT_REFCOUNT));
	ret = rfs_cursor_seek(&cur, NULL, 0, +1);
	while (ret == 0) {
		const void *k, *v;
		size_t kl, vl;
		uint64_t rec[2];

		ret = rfs_cursor_get(&cur, &k, &kl, &v, &vl, NULL);
		if (ret)
			break;
		if (kl != 8 || vl != sizeof(rec)) {
			problem(c, 0, "refcount tree: malformed record");
			ret = rfs_cursor_step(&cur, +1);
			continue;
		}
		memcpy(rec, v, sizeof(rec));
		uint64_t start = be64_get(k), len = rec[0], count = rec[1];
		if (count < 2 || count > UINT32_MAX)
			problem(c, start, "block %llu: refcount record with count %llu",
				(unsigned long long)start, (unsigned long long)count);
		if (!len || start + len < start || start < c->start ||
		    start + len > c->end) {
			problem(c, start, "block %llu: refcount record for %llu blocks "
				"outside the allocated area", (unsigned long long)start,
				(unsigned long long)len);
		} else {
			for (uint64_t b = start; b < start + len; b++) {
				if (c->rc[b - c->start])
					problem(c, b, "block %llu: overlapping refcount "
						"records", (unsigned long long)b);
				c->rc[b - c->start] = (uint32_t)count;
			}
		}
		ret = rfs_cursor_step(&cur, +1);
	}
	if (ret && ret != -ENOENT)
		problem(c, 0, "refcount tree: unreadable (%s)", strerror(-ret));
	tree_cursor_fini(&cur);
}

long rfs_check(rfs_pool *pool, rfs_check_report_fn report, void *arg,
	       struct rfs_check_stats *stp)
{
	RFS_ASSERT_LOCK(rfs_pool_holds_lock(pool));
	struct rfs_check_stats local;
	struct rfs_pool_stats ps;
	struct chk c = { 0 };

	if (!stp)
		stp = &local;
	memset(stp, 0, sizeof(*stp));
	rfs_pool_stats(pool, &ps);
	c.pool = pool;
	c.report = report;
	c.arg = arg;
	c.st = stp;
	c.start = ps.data_start;
	c.end = ps.high_water > ps.data_start ? ps.high_water : ps.data_start;
	size_t n = (size_t)(c.end - c.start) + 1;
	c.refs = calloc(n, sizeof(*c.refs));
	c.rc = calloc(n, sizeof(*c.rc));
	c.kind = calloc(n, 1);
	if (!c.refs || !c.rc || !c.kind) {
		free(c.refs);
		free(c.rc);
		free(c.kind);
		return -ENOMEM;
	}
	for (unsigned slot = 0; slot < RFS_ROOT_SLOTS; slot++) {
		uint64_t root = rfs_pool_root(pool, slot);
		if (!root)
			continue;
		if (slot > RFS_ROOT_DROPQ)
			problem(&c, root, "superblock: unknown root slot %u set", slot);
		else if (root < c.start || root >= c.end)
			problem(&c, root, "superblock: root slot %u points outside the "
				"allocated area (block %llu)", slot,
				(unsigned long long)root);
		else
			walk_node(&c, root, 0, -1, 0, NULL, 0);
	}
	uint64_t qroot = rfs_pool_root(pool, RFS_ROOT_DROPQ);
	if (qroot >= c.start && qroot < c.end)
		walk_dropq(&c, qroot);
	load_refcounts(&c);
	for (uint64_t b = c.start; b < c.end; b++) {
		uint64_t i = b - c.start;
		bool alloc = rfs_block_allocated(pool, b);
		uint64_t stored = c.rc[i] ? c.rc[i] : 1;

		if (c.refs[i] >= 2)
			stp->shared_blocks++;
		if (c.refs[i] && !alloc)
			problem(&c, b, "block %llu: in use (%u references) but marked "
				"free", (unsigned long long)b, c.refs[i]);
		else if (!c.refs[i] && alloc)
			problem(&c, b, "block %llu: allocated but not referenced (leak)",
				(unsigned long long)b);
		else if (c.refs[i] && stored != c.refs[i])
			problem(&c, b, "block %llu: refcount %llu but %u references",
				(unsigned long long)b, (unsigned long long)stored,
				c.refs[i]);
		else if (!c.refs[i] && c.rc[i])
			problem(&c, b, "block %llu: refcount record for a free block",
				(unsigned long long)b);
	}
	free(c.refs);
	free(c.rc);
	free(c.kind);
	return (long)stp->problems;
}
