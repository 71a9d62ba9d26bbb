/*
 * reflinkfs tree: one copy-on-write B+tree with lazily refcounted,
 * shareable nodes (Rodeh, "B-trees, Shadowing, and Clones", ACM TOS 2008),
 * the block refcount map built on it, and the catalog of named roots.
 *
 * Keys are byte strings compared with memcmp (shorter first on a tie);
 * callers encode integers big-endian so that byte order is numeric order.
 *
 * Ownership.  An rfs_tree handle is one reference to its root node.  A
 * mutation may move the handle to a new root (shadowing); the caller must
 * store the new root back wherever the tree hangs (a catalog slot, or a
 * value in a parent tree) before the next commit.
 *
 * References inside values.  A leaf item may carry references that the
 * tree counts like child pointers, so that shadowing a shared leaf
 * increments them and dropping the last copy releases them:
 *   RFS_ITEM_TREE:   value bytes 0..7 are the root block of a subtree
 *                    (0 = empty subtree);
 *   RFS_ITEM_EXTENT: the next 16 bytes (after the tree root, if any) are a
 *                    data extent {u64 start; u64 nblocks} (nblocks = 0 or
 *                    start = 0: no extent);
 *   RFS_ITEM_EXTLIST: the value ends with a list of data extents: its last
 *                    2 bytes are a little-endian u16 count n, preceded by
 *                    n x {u64 start; u64 nblocks} (little-endian; start =
 *                    0 or nblocks = 0: no extent), after the tree root if
 *                    any.  Not together with RFS_ITEM_EXTENT.  It lets a
 *                    record keep a small extent map inline (docs/FORMAT.md).
 * Inserting an item moves its references into the tree.  Replacing or
 * deleting an item releases the old item's references unless the caller
 * says it keeps them (RFS_KEEP_REFS).
 *
 * Before mutating a subtree whose root was read from a value, the caller
 * must have read the value with rfs_tree_lookup_mut (which shadows the
 * path), else the change could show through another clone.
 *
 * All calls need the pool lock: the write lock to mutate, the read lock
 * (at least) to read.
 */
#ifndef REFLINKFS_TREE_H
#define REFLINKFS_TREE_H

#include <stdbool.h>

#include "reflinkfs/pool.h"

#define RFS_KEY_MAX 512u
#define RFS_VAL_MAX 1024u

enum rfs_item_flags {
	RFS_ITEM_TREE = 1u << 0,
	RFS_ITEM_EXTENT = 1u << 1,
	RFS_ITEM_EXTLIST = 1u << 2,
};

/* Bytes an RFS_ITEM_EXTLIST list of n extents takes at the end of a value. */
#define RFS_EXTLIST_BYTES(n) (16u * (unsigned)(n) + 2u)

/*
 * The extent list of an RFS_ITEM_EXTLIST value of vlen bytes: its count,
 * and in *list (may be NULL) where its n x 16 bytes start.  -1 when the
 * value is too short for the count it claims (off: bytes before the list
 * that the list may not overlap, 8 when the value also has a tree root).
 */
int rfs_value_extlist(const void *val, size_t vlen, size_t off, const uint8_t **list);


/* Tree owner kinds (block header owner field; informational). */
enum rfs_tree_owner {
	RFS_OWNER_CATALOG = 1,
	RFS_OWNER_REFCOUNT = 2,
	RFS_OWNER_DROPQ = 3,
	RFS_OWNER_USER = 16,
};

typedef struct rfs_tree {
	uint64_t root;  /* block of the root node, 0 = empty tree */
	uint64_t owner; /* enum rfs_tree_owner or any caller value >= 16 */
} rfs_tree;

/* put modes */
enum rfs_put_mode {
	RFS_PUT_UPSERT = 0,  /* insert or replace */
	RFS_PUT_INSERT = 1,  /* -EEXIST if the key exists */
	RFS_PUT_REPLACE = 2, /* -ENOENT if the key does not exist */
};
/* Or-able with a put mode or given to rfs_tree_delete: the old item's
 * references are not released (the caller moved or already consumed them). */
#define RFS_KEEP_REFS 0x100
/* Or-able with a put mode: a hint that the key is appended, i.e. no key
 * will be put between it and the next key present (the largest key of a
 * range that only grows, like a log's sequence numbers).  A full node
 * then splits at the new key instead of in the middle, so nodes filled by
 * appends stay full instead of half empty.  Any key is still correct. */
#define RFS_PUT_APPEND 0x200

/*
 * Look up key.  On success copies the value into val (up to *vlen bytes;
 * *vlen receives the full length) and its flags into *flags (may be
 * NULL).  -ENOENT when absent.
 */
int rfs_tree_lookup(rfs_pool *pool, const rfs_tree *t, const void *key,
		    size_t klen, void *val, size_t *vlen, uint8_t *flags);

/*
 * Like rfs_tree_lookup, but first shadows the path to the key so that the
 * references in the value are owned by this tree alone for the rest of
 * the transaction.  Needs the write lock; may move t->root.
 */
int rfs_tree_lookup_mut(rfs_pool *pool, rfs_tree *t, const void *key,
			size_t klen, void *val, size_t *vlen, uint8_t *flags);

/*
 * Insert or replace key -> val with item flags (mode: enum rfs_put_mode,
 * optionally | RFS_KEEP_REFS | RFS_PUT_APPEND).  klen in 1..RFS_KEY_MAX, vlen in
 * 0..RFS_VAL_MAX (-EINVAL otherwise).  -ENOSPC leaves the tree unchanged.
 * RFS_PUT_REPLACE, like rfs_tree_delete, may use the pool's metadata
 * reserve, so that a caller can record the new root of a nested tree after
 * deleting from it on a full pool.
 */
int rfs_tree_put(rfs_pool *pool, rfs_tree *t, const void *key, size_t klen,
		 const void *val, size_t vlen, uint8_t flags, int mode);

/*
 * Delete key (-ENOENT if absent).  mode 0 releases the item's references;
 * RFS_KEEP_REFS hands them to the caller.
 */
int rfs_tree_delete(rfs_pool *pool, rfs_tree *t, const void *key,
		    size_t klen, int mode);

/* ---- editing one leaf --------------------------------------------------- */

/* Deepest tree (tree/node.h's NODE_MAX_HEIGHT). */
#define RFS_TREE_MAX_HEIGHT 24

/*
 * A leaf opened for editing: the path from the root to the leaf where a
 * key belongs, shadowed once (as rfs_tree_lookup_mut does), so that a
 * caller can read the items around the key and replace some of them in
 * the same descent, instead of a read walk plus one put (one descent from
 * the root) per changed item.  The fields are the tree's.  Write lock held
 * from open to close; the tree may not be changed otherwise in between.
 */
/* The shadowed nodes from the root down (b[0] the root, b[h - 1] the
 * leaf) and the child slot taken at each. */
struct rfs_tree_path {
	int h;
	struct rfs_buf *b[RFS_TREE_MAX_HEIGHT];
	unsigned s[RFS_TREE_MAX_HEIGHT];
};
struct rfs_tree_edit {
	rfs_pool *pool;
	rfs_tree *t;
	struct rfs_tree_path p;
	bool reshaped; /* a splice split the leaf: p is stale above it */
};

/* One item to store (rfs_tree_edit_splice). */
struct rfs_tree_item {
	const void *key;
	size_t klen;
	const void *val;
	size_t vlen;
	uint8_t flags;
};

/*
 * Shadow the path to the leaf where key belongs and open it: *idx is the
 * index of its first item with key >= key (the leaf's item count when
 * none), *exact whether that item has key.  May move t->root (like
 * rfs_tree_lookup_mut; no item changes).  -ENOENT for an empty tree.
 * Close it with rfs_tree_edit_close whatever happens after.
 */
int rfs_tree_edit_open(rfs_pool *pool, rfs_tree *t, const void *key, size_t klen,
		       struct rfs_tree_edit *e, unsigned *idx, bool *exact);

/* Items in the open leaf. */
unsigned rfs_tree_edit_n(const struct rfs_tree_edit *e);

/* Item i of the open leaf (pointers valid until the next splice or the
 * close); -ENOENT when i is past its last. */
int rfs_tree_edit_get(const struct rfs_tree_edit *e, unsigned i, const void **key,
		      size_t *klen, const void **val, size_t *vlen, uint8_t *flags);

/*
 * Replace the leaf's items [i, i + nremove) by items[0..nins): 1 when
 * done, -EINVAL when the new keys are not strictly increasing, would not
 * lie between the items kept on either side, or an item is malformed
 * (nins >= 1 and nremove <= 16).  mode 0 releases the references of the
 * removed items, RFS_KEEP_REFS hands them to the caller; the new items'
 * references become the tree's, as with a put.  When the result does not
 * fit the leaf, the leaf splits in two balanced halves (a new block:
 * -ENOSPC before any change, as rfs_tree_put).  0, nothing changed, when
 * a new key lies outside the key range this leaf serves (it belongs to a
 * neighbour leaf) or even a split cannot hold the result: do it with
 * rfs_tree_put / rfs_tree_delete, which route each key.  Within the leaf it needs no
 * block and cannot fail half done; a split can, like a put.  A leaf it
 * shrinks is not merged with a neighbour.  After a splice, only
 * rfs_tree_edit_move or rfs_tree_edit_close.
 */
int rfs_tree_edit_splice(struct rfs_tree_edit *e, unsigned i, unsigned nremove,
			 const struct rfs_tree_item *items, unsigned nins, int mode);

void rfs_tree_edit_close(struct rfs_tree_edit *e);

/*
 * Move an open edit to the leaf where key belongs, as rfs_tree_edit_open
 * would open it (*idx, *exact the same), but keeping the part of the
 * path that leads there too: only the nodes below the lowest one whose
 * subtree holds key are read and shadowed.  The caller made no change to
 * the tree since the open but this edit's splices (a put or a delete
 * moves what the path knows: close and open again after one).  After a
 * splice that split the leaf it descends from the root.  On failure the
 * edit is closed (rfs_tree_edit_close is still allowed).
 */
int rfs_tree_edit_move(struct rfs_tree_edit *e, const void *key, size_t klen,
		       unsigned *idx, bool *exact);

/*
 * Clone: *dst becomes a second reference to src's root.  O(1) whatever the
 * size of the tree: one refcount increment.  Both trees stay independently
 * writable.
 */
int rfs_tree_clone(rfs_pool *pool, const rfs_tree *src, rfs_tree *dst);

/*
 * Drop the reference t holds; frees every node (and every value
 * reference) that no other tree still shares.  t becomes empty.
 */
int rfs_tree_drop(rfs_pool *pool, rfs_tree *t);

/*
 * Whether the item key lives in a node shared with another tree: true when
 * any node on the path from the root to the leaf holding key has a
 * refcount >= 2.  (Sharing is lazy: the blocks and nodes below a shared
 * node keep a count of 1, so their own counts do not show it.)
 */
int rfs_tree_path_shared(rfs_pool *pool, const rfs_tree *t, const void *key,
			 size_t klen, bool *shared);

/*
 * The block of the leaf that holds key (or would), in *leaf (0 for an
 * empty tree), and in *shared whether any node from the root down to it
 * has a refcount >= 2.  Two trees that reach the same leaf share the item
 * (rfs_tree_path_shared says only that some other tree does).
 */
int rfs_tree_leaf(rfs_pool *pool, const rfs_tree *t, const void *key, size_t klen,
		  uint64_t *leaf, bool *shared);

/* Height of the tree (0 = empty, 1 = a single leaf). */
int rfs_tree_height(rfs_pool *pool, const rfs_tree *t, int *height);

/* ---- cursors ----------------------------------------------------------- */

typedef struct rfs_cursor rfs_cursor;

/* Open a cursor on t (not positioned).  Valid while the caller holds the
 * lock and nobody mutates t. */
int rfs_cursor_open(rfs_pool *pool, const rfs_tree *t, rfs_cursor **out);
void rfs_cursor_close(rfs_cursor *c);

/* Position on the first item with key >= key (dir > 0) or the last item
 * with key <= key (dir < 0).  key = NULL means the first / last item.
 * -ENOENT when there is no such item. */
int rfs_cursor_seek(rfs_cursor *c, const void *key, size_t klen, int dir);

/* Step to the next (dir > 0) or previous (dir < 0) item; -ENOENT at the
 * end. */
int rfs_cursor_step(rfs_cursor *c, int dir);

/* The current item; pointers stay valid until the cursor moves. */
int rfs_cursor_get(rfs_cursor *c, const void **key, size_t *klen,
		   const void **val, size_t *vlen, uint8_t *flags);

/* ---- node walk ---------------------------------------------------------- */

/*
 * rfs_tree_walk visits every node of a tree in pre-order (enter, then its
 * children or items, then leave) with its block number and refcount, and
 * every leaf item in key order: what a space accounting needs, which must
 * know where the tree is shared (a node's count >= 2) and what hangs
 * below.  It reads only the tree's own nodes: nested trees and extents
 * named by values are the caller's to follow.
 *
 * It stops when a callback asks for a pause and resumes from a key (the
 * position), so that a caller can hold the pool's read lock in short
 * pieces.  Between two calls the tree may change: the walk goes down from
 * the root again, and a node that holds keys before the position (one on
 * the path to it, entered by an earlier call) is reported again with
 * `resumed` set and is always descended into; subtrees that lie wholly
 * before the position are not entered.  Without changes in between, the
 * calls together enter each node once (resumed entries aside) and deliver
 * each item once.
 */

/* Where a paused walk resumes (rfs_walk_pos.mode). */
enum {
	RFS_WALK_START = 0,  /* from the beginning (set this to start) */
	RFS_WALK_AFTER = 1,  /* after item key */
	RFS_WALK_AT = 2,     /* at item key (it is delivered again) */
	RFS_WALK_BEFORE = 3, /* before the node whose keys start at key */
};

struct rfs_walk_pos {
	int mode;
	size_t klen;
	uint8_t key[RFS_KEY_MAX];
};

/* A node met by the walk. */
struct rfs_walk_node {
	uint64_t blocknr;
	uint64_t refcount; /* rfs_ref_get of the node (1 in unshared trees) */
	unsigned level;    /* 0 = leaf */
	bool resumed;      /* entered by an earlier call: on the path to the position */
	bool can_pause;    /* enter may answer RFS_WALK_PAUSE */
};

/* Answers of the callbacks besides 0 (go on / descend) and -errno. */
enum {
	RFS_WALK_SKIP = 1,     /* enter: do not descend (ignored for resumed nodes) */
	RFS_WALK_PAUSE = 2,    /* enter: stop before this node (when can_pause);
				* item: stop after this item */
	RFS_WALK_PAUSE_AT = 3, /* item: stop, and deliver this item again on resume */
};

struct rfs_walk_ops {
	int (*enter)(void *arg, const struct rfs_walk_node *n);
	/* A leaf item; key and val are valid during the call.  The callback
	 * may read other trees of the pool (nodes on the walk's path stay
	 * pinned), not change one. */
	int (*item)(void *arg, const void *key, size_t klen, const void *val, size_t vlen,
		    uint8_t flags);
	/* The node's subtree or items are done (not called on a pause; may be
	 * NULL). */
	void (*leave)(void *arg, const struct rfs_walk_node *n);
};

/*
 * Walk t from *pos (mode RFS_WALK_START for the beginning).  Returns 0
 * when the walk reached the end, 1 when a callback paused it (*pos then
 * says where to resume), or a negative errno (a callback's, or -EIO /
 * -EUCLEAN for a node that could not be read).  Needs at least the read
 * lock; the tree must not change during one call.
 */
int rfs_tree_walk(rfs_pool *pool, const rfs_tree *t, struct rfs_walk_pos *pos,
		  const struct rfs_walk_ops *ops, void *arg);

/* ---- diff ------------------------------------------------------------- */

/* One difference between two trees, given to an rfs_tree_diff_fn.  aval
 * is NULL when the key is only in b, bval NULL when it is only in a; both
 * are set when the key is in both with a different value or flags.  The
 * pointers are valid during the call only. */
struct rfs_tree_diff_item {
	const void *key;
	size_t klen;
	const void *aval;
	size_t avlen;
	uint8_t aflags;
	const void *bval;
	size_t bvlen;
	uint8_t bflags;
};

/* Return 0 to go on, > 0 to stop (rfs_tree_diff returns that value), < 0
 * to fail with that errno.  The callback may read any tree of the pool
 * (the diff's nodes stay pinned), not change one. */
typedef int (*rfs_tree_diff_fn)(void *arg, const struct rfs_tree_diff_item *d);

/*
 * Report, in key order, every key that is only in a, only in b, or in
 * both with a different value or flags.  Only where the trees differ is
 * walked: a subtree that both reach through the same block number (a
 * node shared since a clone) is identical and skipped without being
 * read; nodes of different histories are compared by key ranges (each
 * child's lower bound is its separator).  For two clones of one tree
 * that differ in k keys it reads O(k * height) nodes.  Values are
 * compared byte for byte (a nested tree's root block is part of the
 * value: the caller decides whether to compare the subtrees).  Needs at
 * least the read lock.  Returns 0, the callback's positive stop value,
 * or a negative errno (-EIO, -EUCLEAN: a node could not be read).
 */
int rfs_tree_diff(rfs_pool *pool, const rfs_tree *a, const rfs_tree *b,
		  rfs_tree_diff_fn fn, void *arg);

/* ---- block refcounts ---------------------------------------------------- */

/*
 * Refcount of an allocated block: implicitly 1 unless recorded in the
 * refcount tree (root slot RFS_ROOT_REFCOUNT), which holds only counts >= 2,
 * as disjoint block ranges.
 */
int rfs_ref_get(rfs_pool *pool, uint64_t blocknr, uint64_t *count);
/* The refcount of block start in *count, and in *run how many blocks from
 * start on (1..max) have that same count (a run may end where a range of
 * the same count is recorded separately): one refcount-tree lookup for a
 * whole extent of equal counts. */
int rfs_ref_get_run(rfs_pool *pool, uint64_t start, uint64_t max, uint64_t *count,
		    uint64_t *run);
/* Add one reference to each block of [start, start+n). */
int rfs_ref_inc(rfs_pool *pool, uint64_t start, uint64_t n);
/* Remove one reference from each block of [start, start+n); blocks whose
 * count drops to zero are freed (rfs_free_blocks). */
int rfs_ref_dec(rfs_pool *pool, uint64_t start, uint64_t n);

/* ---- catalog ------------------------------------------------------------- */

/*
 * The catalog (root slot RFS_ROOT_CATALOG) maps 64-bit ids to tree roots,
 * so trees survive commits.  rfs_catalog_get returns the catalog's own
 * reference (mutate it, then rfs_catalog_set the new root);
 * rfs_catalog_set stores t's reference under id, releasing nothing;
 * rfs_catalog_del removes the id and drops its tree.
 */
int rfs_catalog_get(rfs_pool *pool, uint64_t id, rfs_tree *t);
int rfs_catalog_set(rfs_pool *pool, uint64_t id, const rfs_tree *t);
int rfs_catalog_del(rfs_pool *pool, uint64_t id);
/* The first catalog entry with an id >= from: *id and *t receive it
 * (t as rfs_catalog_get gives it).  -ENOENT when there is none.  For
 * walks over every tree (scrub); needs at least the read lock. */
int rfs_catalog_next(rfs_pool *pool, uint64_t from, uint64_t *id, rfs_tree *t);

/*
 * rfs_catalog_take removes id from the catalog and hands its reference to
 * the caller in *t (to queue it with rfs_dropq_add, say).  -ENOENT when
 * absent.
 */
int rfs_catalog_take(rfs_pool *pool, uint64_t id, rfs_tree *t);

/* ---- drop queue: freeing big trees in the background --------------------- */

/*
 * The drop queue (root slot RFS_ROOT_DROPQ, format in docs/FORMAT.md)
 * holds tree references that their owner gave up, keyed by a sequence
 * number (FIFO).  Queueing is O(1); rfs_dropq_work then releases the
 * queued trees in bounded steps, Rodeh's drop: a node shared with another
 * tree (refcount > 1) loses one reference and is left alone, an exclusive
 * one releases its children (or, in a leaf, its value references: a
 * nested tree is released at once when that is O(1), as in
 * rfs_dropq_release, else queued in turn; an extent is rfs_ref_dec'ed)
 * and is freed.  Each queued tree keeps a progress key (btrfs's
 * drop_progress): everything left of it is released, nothing right of it
 * is.  Progress and frees change in the same transaction, so a crash at
 * any point resumes at the last commit's progress, without a leak, a
 * double free or a free of a block still in use.  rfs_check counts what
 * the queue still references.
 *
 * Blocks of queued trees stay allocated (and count as used in every space
 * figure) until a work step frees them.  The queue keeps a running
 * estimate of the blocks still to release (the callers' estimates, less
 * the work done), for progress reports.
 *
 * All calls need the pool write lock, rfs_dropq_stat the read lock.
 */

/* Queue t's reference, in the running transaction; t becomes empty.
 * est_blocks: the caller's estimate of what t holds (0: unknown), added
 * to the queue's running estimate.  An empty t is a no-op; -EINVAL for
 * the refcount tree or the queue itself.  O(1). */
int rfs_dropq_add(rfs_pool *pool, rfs_tree *t, uint64_t est_blocks);

/* Give up t's reference the cheapest way: at once when that is O(1) (a
 * shared root only loses one reference; a tree that is one leaf without
 * nested trees is freed now), else through rfs_dropq_add.  t becomes
 * empty.  Returns 0 when released at once, 1 when queued, or -errno. */
int rfs_dropq_release(rfs_pool *pool, rfs_tree *t, uint64_t est_blocks);

/*
 * Release queued trees, oldest first, until about budget block
 * references were released (each node and each extent block counts one;
 * a step finishes the leaf it is in, so it may go past budget by one
 * leaf's worth) or the queue is empty.  *freed: blocks the pool got back
 * (net of the blocks the queue's own bookkeeping took), *left: the
 * estimate of blocks still queued, 0 exactly when the queue is empty.
 * On an error after a step changed something the running transaction is
 * discarded (rfs_pool_abort: a half-released leaf must never be
 * committed); an error before (an unreadable node) keeps everything done
 * so far and the queue as it is.
 */
int rfs_dropq_work(rfs_pool *pool, uint64_t budget, uint64_t *freed,
		   uint64_t *left);

struct rfs_dropq_stat {
	uint64_t trees;  /* trees queued (nested trees join as they are met) */
	uint64_t blocks; /* estimate of blocks still to release; >= trees */
	uint64_t queued; /* trees ever queued (the next sequence number - 1) */
};
/* The queue's figures, from its header record: O(1). */
int rfs_dropq_stat(rfs_pool *pool, struct rfs_dropq_stat *st);

/* ---- consistency check (core of fsck) ------------------------------------ */

/* Called once per problem found, with the block involved (0 if none). */
typedef void (*rfs_check_report_fn)(void *arg, uint64_t blocknr,
				    const char *what);

struct rfs_check_stats {
	uint64_t nodes;         /* distinct tree nodes visited */
	uint64_t items;         /* leaf items visited */
	uint64_t data_blocks;   /* distinct data blocks referenced */
	uint64_t shared_blocks; /* blocks with refcount >= 2 */
	uint64_t problems;
};

/*
 * Walk the catalog, every tree reachable from it (through internal nodes
 * and RFS_ITEM_TREE values), the part of every queued tree that the drop
 * queue has not released yet, the refcount tree and the allocation bitmap.
 * Verifies node checksums, key order, levels, every block's refcount
 * against the number of its referrers, and that exactly the referenced
 * blocks are allocated (no leak, no block used twice or free while used).
 * Returns the number of problems (0 = clean) or a negative errno when the
 * check itself could not run.  Needs at least the read lock.
 */
long rfs_check(rfs_pool *pool, rfs_check_report_fn report, void *arg,
	       struct rfs_check_stats *st);

#endif
