/*
 * On-disk records of the drop queue (docs/FORMAT.md, "Drop queue"),
 * shared by dropq.c and check.c.
 *
 * The queue is a tree in root slot RFS_ROOT_DROPQ (owner RFS_OWNER_DROPQ,
 * never cloned, so its nodes carry no refcounts).  Keys are be64: 0 is
 * the header, n >= 1 the tree queued n-th.  Values carry no reference
 * flags: the references a queued tree holds are counted by check.c
 * through the progress key, not by the generic walk.
 */
#ifndef RFS_TREE_DROPQ_H
#define RFS_TREE_DROPQ_H

#include "tree/tree_internal.h"

#define DQ_MAGIC 0x51504f5244534652ull /* "RFSDROPQ" */
#define DQ_VERSION 1u

/* Value of key be64(0). */
struct dq_head {
	uint64_t magic;
	uint32_t version;
	uint32_t pad;
	uint64_t next_seq; /* key of the next tree queued */
	uint64_t entries;  /* trees queued now */
	uint64_t blocks;   /* running estimate of blocks still to release */
	uint64_t reserved[3];
};

/* Value of key be64(seq), seq >= 1: this fixed part, then plen bytes of
 * progress key. */
struct dq_ent_hdr {
	uint64_t root;  /* root block of the queued tree */
	uint64_t owner; /* its owner kind (informational) */
	uint64_t gen;   /* transaction that queued it (informational) */
	uint16_t plen;  /* 0: nothing released yet; else every item and
			 * subtree with keys < the progress key is released */
	uint16_t flags; /* 0 */
	uint32_t pad;
};
#define DQ_ENT_HDR sizeof(struct dq_ent_hdr)

/* A queued tree as held in memory. */
struct dq_ent {
	uint64_t seq;
	struct dq_ent_hdr h;
	uint8_t pkey[RFS_KEY_MAX];
};

/* Decode a header value; -EUCLEAN when malformed or of another version. */
int dq_head_decode(const void *val, size_t vlen, struct dq_head *h);

/* Decode an entry (key and value); -EUCLEAN when malformed. */
int dq_ent_decode(const void *key, size_t klen, const void *val, size_t vlen,
		  struct dq_ent *e);

#endif
