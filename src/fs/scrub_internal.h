/*
 * Internal state of a scrub, shared by scrub.c (the walk) and
 * scrub_found.c (what it found: hard-link names, damaged blocks, the
 * report).  A scrub is used by one thread at a time (see fs.h), so its
 * fields need no lock; the pool's read lock is held while the walk reads
 * trees and blocks.
 */
#ifndef RFS_SCRUB_INTERNAL_H
#define RFS_SCRUB_INTERNAL_H

#include "fs/fs_internal.h"

/* Walk phases of a volume. */
enum { PH_NEXTVOL, PH_NS, PH_TABLE, PH_DONE };

/* One directory entered below the volume root: its entry key. */
struct lvl {
	size_t klen;
	size_t noff; /* where the entry's name starts in key */
	uint8_t key[RFS_KEY_MAX];
};

/* Names of one hard-linked inode (stubs met in the namespace). */
struct lnames {
	uint64_t ino; /* 0 = free slot */
	size_t n, cap;
	char **names;
};

/* A damaged block: its number, the checksum its record expects, and the
 * error (-EBADMSG or the read error). */
struct bad {
	uint64_t blocknr;
	uint32_t csum;
	int err;
};

struct rec {
	uint32_t kind;
	int err;
	uint64_t blocknr, volume, ino, offset;
	char *path; /* NULL: no name known */
};

struct rfs_scrub {
	rfs_fs *fs;
	rfs_pool *pool;
	struct rfs_scrub_stats st;

	/* ---- position (keys only; see the header comment) ---- */
	int phase;
	uint64_t vol;
	struct lvl *stack; /* directories entered, depth of them */
	int depth, stack_cap;
	bool cur_valid;    /* resume in the current container at cur... */
	bool cur_incl;     /* ...inclusive (an entry in progress) or after it */
	size_t curlen;
	uint8_t cur[RFS_KEY_MAX];
	bool in_file;      /* the entry at cur is a file in progress */
	bool fpos_valid;   /* resume in its tree after fpos */
	size_t fposlen;
	uint8_t fpos[RFS_KEY_MAX];

	/* ---- what was found ---- */
	uint64_t nbits; /* blocks covered by the bitmaps */
	uint64_t *seen, *badmap;
	struct bad *bad;
	size_t nbad, badcap;
	size_t *badidx; /* open addressing: blocknr -> index + 1 in bad */
	size_t badidx_cap;
	struct rec *recs;
	size_t nrecs, reccap;
	struct lnames *links; /* open addressing by ino, per volume */
	size_t links_cap, nlinks;

	uint8_t *buf; /* RFS_EXTENT_MAX blocks */
	struct rfs_ext ext;
	int64_t budget;
	int fatal; /* -ENOMEM: the scrub cannot go on */
};

static inline bool bit_get(const uint64_t *m, uint64_t nbits, uint64_t b)
{
	return b < nbits && (m[b >> 6] >> (b & 63)) & 1;
}

static inline void bit_set(uint64_t *m, uint64_t nbits, uint64_t b)
{
	if (b < nbits)
		m[b >> 6] |= 1ull << (b & 63);
}

/* ---- scrub_found.c ---- */
/* Out of memory: the scrub stops with -ENOMEM. */
void scrub_nomem(struct rfs_scrub *s);
/* Append a report entry of the current volume; path is taken over (may
 * be NULL: no name known). */
void scrub_rec_add(struct rfs_scrub *s, uint32_t kind, int err, uint64_t blocknr,
		   uint64_t ino, uint64_t offset, char *path);
/* A tree that could not be read: report it (path taken over). */
void scrub_meta_error(struct rfs_scrub *s, char *path, uint64_t ino, int err);
/* Names of hard-linked inodes met in the current volume's namespace. */
void scrub_links_clear(struct rfs_scrub *s);
struct lnames *scrub_links_find(struct rfs_scrub *s, uint64_t ino, bool add);
void scrub_links_add(struct rfs_scrub *s, uint64_t ino, char *path);
/* Damaged blocks, by block and the checksum their records expect. */
const struct bad *scrub_bad_find(const struct rfs_scrub *s, uint64_t blocknr, uint32_t csum);
const struct bad *scrub_bad_add(struct rfs_scrub *s, uint64_t blocknr, uint32_t csum, int err);
/* The walk is done: sort the report, drop duplicates, count files. */
void scrub_finish(struct rfs_scrub *s);
/* Free what was found. */
void scrub_found_free(struct rfs_scrub *s);

#endif
