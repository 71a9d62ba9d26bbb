/* Internal interfaces shared by the files of src/tree. */
#ifndef RFS_TREE_INTERNAL_H
#define RFS_TREE_INTERNAL_H

#include "reflinkfs/tree.h"
#include "tree/node.h"

/* Cursor state; embeddable on the stack (tree_cursor_init/fini). */
struct rfs_cursor {
	rfs_pool *pool;
	uint64_t root;
	int h;          /* levels on the path, 0 = not positioned */
	struct rfs_buf *b[NODE_MAX_HEIGHT];
	unsigned s[NODE_MAX_HEIGHT];
};

void tree_cursor_init(struct rfs_cursor *c, rfs_pool *pool, uint64_t root);
void tree_cursor_fini(struct rfs_cursor *c);

/* Whether t's nodes carry refcounts.  The refcount tree and the drop
 * queue are never cloned: their nodes always have one owner, so they
 * need no refcount lookups, and updating them needs no admission check
 * (a deletion on a full pool goes through both). */
static inline bool tree_refcounted(const rfs_tree *t)
{
	return t->owner != RFS_OWNER_REFCOUNT && t->owner != RFS_OWNER_DROPQ;
}

/* Read a tree node (verified; gen 0 = any generation).  Registers the
 * node verifier on first use. */
int tree_read(rfs_pool *pool, uint64_t blocknr, uint64_t gen, struct rfs_buf **out);

/* One level down from internal node *b (depth levels below the root)
 * towards key (tree.c): *b becomes the child, the node it was is put.
 * -EUCLEAN for an empty node, a path deeper than NODE_MAX_HEIGHT, or a
 * child whose level is not one below (*b is the child then); a read
 * error leaves *b as it was.  Pool lock held. */
int tree_step_down(rfs_pool *pool, struct rfs_buf **b, int depth, const void *key,
		   size_t klen);

/* Drop one reference to the subtree rooted at blocknr: decrement a shared
 * node, or free an exclusive one after dropping everything below it. */
int tree_drop_node(rfs_pool *pool, uint64_t blocknr, uint64_t gen, bool refcounted);

/* Add (delta = +1) or release (delta = -1) the references carried by a
 * leaf item's value. */
int tree_value_refs(rfs_pool *pool, const uint8_t *val, size_t vlen,
		    uint8_t flags, int delta);

/* Check that a value's size suits its reference flags. */
bool tree_value_refs_valid(const uint8_t *val, size_t vlen, uint8_t flags);

/* The references of a value (checked by tree_value_refs_valid): a nested
 * root (0: none) and n data extents. */
struct tree_vrefs {
	uint64_t root;
	unsigned n;
	const uint8_t *ext; /* n x {u64 start, u64 nblocks}, little-endian */
};
void tree_value_decode(const uint8_t *val, size_t vlen, uint8_t flags,
		       struct tree_vrefs *r);

/* Extent i of r; *len = 0 when the slot holds no extent. */
static inline void tree_vrefs_ext(const struct tree_vrefs *r, unsigned i, uint64_t *start,
				  uint64_t *len)
{
	memcpy(start, r->ext + 16 * (size_t)i, 8);
	memcpy(len, r->ext + 16 * (size_t)i + 8, 8);
	if (!*start)
		*len = 0;
}

/* Big-endian u64 key helpers. */
static inline void be64_put(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--) {
		p[i] = (uint8_t)v;
		v >>= 8;
	}
}

static inline uint64_t be64_get(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = (v << 8) | p[i];
	return v;
}

#endif
