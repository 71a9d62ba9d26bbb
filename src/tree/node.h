/*
 * On-disk layout of one B+tree node (see docs/FORMAT.md, "Tree nodes").
 *
 *   0    struct rfs_block_header (40 bytes, type RFS_BT_NODE, level)
 *   40   u16 nitems
 *   42   u16 data_start   lowest byte used by item data (4096 when empty)
 *   44   u16 frag         bytes of dead item data below 4096 (reclaimable)
 *   46   u16 reserved
 *   48   struct node_slot[nitems], sorted by key
 *   ...  free space
 *   data_start..4095: item data, key bytes then value bytes, per item
 *
 * Leaves (level 0) hold the items.  Internal nodes hold one item per child:
 * key = separator (the child holds keys >= it; the separator of slot 0 is
 * ignored by searches and may be stale: it stands for "minus infinity") and value = struct
 * node_child {blocknr, generation} so a read verifies the child's
 * generation.
 */
#ifndef RFS_TREE_NODE_H
#define RFS_TREE_NODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "reflinkfs/pool.h"

#define NODE_HDR_SIZE 48u
#define NODE_SLOT_SIZE 8u
#define NODE_SPACE (RFS_BLOCK_SIZE - NODE_HDR_SIZE)
#define NODE_MAX_HEIGHT 24

struct node_hdr {
	struct rfs_block_header h;
	uint16_t nitems;
	uint16_t data_start;
	uint16_t frag;
	uint16_t reserved;
};

struct node_slot {
	uint16_t off;
	uint16_t klen;
	uint16_t vlen;
	uint8_t flags;
	uint8_t pad;
};

struct node_child {
	uint64_t blocknr;
	uint64_t gen;
};

static inline struct node_hdr *node_hdr(uint8_t *d)
{
	return (struct node_hdr *)d;
}

static inline unsigned node_n(const uint8_t *d)
{
	return ((const struct node_hdr *)d)->nitems;
}

static inline unsigned node_level(const uint8_t *d)
{
	return ((const struct node_hdr *)d)->h.level;
}

static inline struct node_slot *node_slot(uint8_t *d, unsigned i)
{
	return (struct node_slot *)(d + NODE_HDR_SIZE + i * NODE_SLOT_SIZE);
}

static inline const struct node_slot *node_cslot(const uint8_t *d, unsigned i)
{
	return (const struct node_slot *)(d + NODE_HDR_SIZE + i * NODE_SLOT_SIZE);
}

static inline const uint8_t *node_key(const uint8_t *d, unsigned i, size_t *klen)
{
	const struct node_slot *s = node_cslot(d, i);
	*klen = s->klen;
	return d + s->off;
}

static inline uint8_t *node_val(uint8_t *d, unsigned i, size_t *vlen)
{
	struct node_slot *s = node_slot(d, i);
	*vlen = s->vlen;
	return d + s->off + s->klen;
}

static inline uint8_t node_flags(const uint8_t *d, unsigned i)
{
	return node_cslot(d, i)->flags;
}

/* Child pointer of internal node slot i. */
static inline struct node_child node_get_child(const uint8_t *d, unsigned i)
{
	struct node_child c;
	const struct node_slot *s = node_cslot(d, i);
	memcpy(&c, d + s->off + s->klen, sizeof(c));
	return c;
}

static inline void node_set_child(uint8_t *d, unsigned i, uint64_t blocknr,
				  uint64_t gen)
{
	struct node_child c = { blocknr, gen };
	struct node_slot *s = node_slot(d, i);
	memcpy(d + s->off + s->klen, &c, sizeof(c));
}

/* memcmp order, shorter key first on a common prefix.  Inlined with
 * 8-byte words: libc memcmp's call overhead dominated short-key searches. */
static inline int key_cmp(const void *a, size_t alen, const void *b, size_t blen)
{
	const uint8_t *x = a, *y = b;
	size_t n = alen < blen ? alen : blen;

	while (n >= 8) {
		uint64_t u, v;
		memcpy(&u, x, 8);
		memcpy(&v, y, 8);
		if (u != v) {
			u = __builtin_bswap64(u);
			v = __builtin_bswap64(v);
			return u < v ? -1 : 1;
		}
		x += 8;
		y += 8;
		n -= 8;
	}
	for (; n; n--, x++, y++)
		if (*x != *y)
			return *x < *y ? -1 : 1;
	return alen < blen ? -1 : alen > blen ? 1 : 0;
}

/* Bytes an item occupies, slot included. */
static inline size_t item_size(size_t klen, size_t vlen)
{
	return NODE_SLOT_SIZE + klen + vlen;
}

/* Used bytes (slots + live data). */
static inline size_t node_used(const uint8_t *d)
{
	const struct node_hdr *h = (const struct node_hdr *)d;
	return (size_t)h->nitems * NODE_SLOT_SIZE +
	       (RFS_BLOCK_SIZE - h->data_start - h->frag);
}

static inline size_t node_free(const uint8_t *d)
{
	return NODE_SPACE - node_used(d);
}

/* Initialise the body of a fresh node (header fields by the pool). */
void node_init(uint8_t *d);

/* Index of the first item with key >= key; *exact tells equality. */
unsigned node_search(const uint8_t *d, const void *key, size_t klen, bool *exact);

/* Child slot to descend into for key in an internal node. */
unsigned node_child_slot(const uint8_t *d, const void *key, size_t klen);

/* Insert an item at index i; the caller checked node_free() >= item_size. */
void node_insert(uint8_t *d, unsigned i, const void *key, size_t klen,
		 const void *val, size_t vlen, uint8_t flags);

/* Remove item i (its data becomes fragmentation). */
void node_remove(uint8_t *d, unsigned i);

/* Move items [from, n) of src to the end of dst (dst must have room). */
void node_move_tail(uint8_t *dst, uint8_t *src, unsigned from);

/* Rewrite the data area contiguously. */
void node_compact(uint8_t *d);

/* Index at which to split a node so both halves fit; items [i, n) go right.
 * extra_at/extra_size describe an item about to be inserted at extra_at
 * (extra_size 0: none) so the split balances the result. */
unsigned node_split_point(const uint8_t *d, unsigned extra_at, size_t extra_size);

/* Structural sanity of a node read from disk (slots inside the block,
 * non-overlapping data, sorted keys, sizes in range).  Returns NULL when
 * sane, else a static description of the first problem. */
const char *node_validate(const uint8_t *d);

#endif
