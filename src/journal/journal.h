/*
 * The change journal's store (src/journal): what the fs layer hands it
 * and how it keeps it.  One tree in the catalog (RFS_JOURNAL_ID, an id
 * above the volume ids), written in the same transaction as the changes
 * it records; the layout is in docs/FORMAT.md, the reasons in
 * docs/ARCHITECTURE.md ("Change journal").
 *
 * The journal knows nothing of inodes or directories: a record carries
 * the path of what changed (from the mount root, at the time of the
 * change) and the list of the directories above it, as (volume, inode,
 * depth) triples; it is indexed under each of them, so that "what
 * changed below directory D since seq S" is one range scan of D's index
 * range, O(changes below D).
 *
 * Locking: every call needs the pool lock (write lock to append, trim,
 * reset or change the limit; read lock to query).  The in-memory state of
 * struct rfs_jnl is protected by the pool lock likewise.
 */
#ifndef RFS_JOURNAL_JOURNAL_H
#define RFS_JOURNAL_JOURNAL_H

#include "reflinkfs/journal.h"
#include "reflinkfs/pool.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Catalog id of the journal tree: ids >= 2^48 are not volumes. */
#define RFS_JOURNAL_ID ((1ull << 48) | 1u)
/* Byte ranges one data record holds before a new record starts. */
#define JNL_RANGES_MAX 16u
/* Kinds merged into a record of another kind (struct jnl_rec.also). */
enum { JNL_ALSO_DATA = 1, JNL_ALSO_ATTR = 2, JNL_ALSO_XATTR = 4 };
/* Side of a rename an ancestor is on (index value). */
#define JNL_DEPTH_NONE 0xffffu

/* A directory above the change: (vol, ino) and its depth (components of
 * its path from the mount root) above the new path / the old path
 * (JNL_DEPTH_NONE: not above that one). */
struct jnl_anc {
	uint64_t vol, ino;
	uint16_t depth_new, depth_old;
};

/* One change, as the fs layer builds it (owned by the caller). */
struct jnl_rec {
	uint8_t kind;     /* enum rfs_change_kind */
	uint8_t also;     /* JNL_ALSO_*: kinds merged into it (jnl_append) */
	uint8_t nranges;
	uint16_t nanc;
	int64_t sec;
	uint32_t nsec;
	uint64_t vol, ino;
	uint64_t parent, old_parent; /* directory inodes (0: unknown) */
	char *path;     /* from the mount root, no leading '/'; NULL: unknown */
	char *old_path; /* rename: the old path */
	struct jnl_anc *anc;
	struct rfs_change_range ranges[JNL_RANGES_MAX];
	uint64_t seq; /* set by jnl_append */
	/* path and anc are the caller's (not malloc'ed): jnl_append copies
	 * what it keeps, and takes neither.  They do not change while
	 * jnl_append runs, so records whose lent pointers are equal have the
	 * same path and directories (several records may share them). */
	bool lent;
};

struct rfs_jnl;

/*
 * Open the journal of the pool (read lock at least); a pool without one
 * gets a new empty journal with retention limit_bytes when writable
 * (write lock held), else -ENOENT.
 */
int jnl_open(rfs_pool *pool, bool writable, uint64_t limit_bytes, struct rfs_jnl **out);
void jnl_close(struct rfs_jnl *j);

/*
 * Append the records of one operation, in the running transaction
 * (write lock held): each gets its seq, and is kept in memory until the
 * next jnl_flush, which the owner must call before the transaction
 * commits (rfs_pool_set_precommit).  A data, attr or xattr record of an
 * inode whose last record was a create, data, attr or xattr record
 * written in the same transaction with the same path is merged into it
 * (its kind goes into that record's `also`, data ranges into its
 * ranges).  May take a record's `path` and `anc` (set to NULL) unless it is
 * `lent`.  On failure the
 * caller must reset the journal (jnl_reset) or not commit the change.
 */
int jnl_append(struct rfs_jnl *j, struct jnl_rec *recs, size_t n);

/*
 * Store the records appended since the last flush in the tree (chunks
 * in seq order, then index items sorted by key: consecutive puts land
 * in the same leaves), trim past the retention limit, store the header.
 * Write lock held.  On failure the records are dropped and the caller
 * must reset the journal (or not commit the transaction).
 */
int jnl_flush(struct rfs_jnl *j);
/* Upper bound of the metadata blocks the next jnl_flush may take (0
 * when nothing is pending).  Pool lock held. */
uint64_t jnl_flush_blocks(const struct rfs_jnl *j);
/* Whether enough waits for jnl_flush that it should run now rather
 * than at the commit (JNL_PEND_MAX records or JNL_PEND_BYTES of
 * encodings, merges included): bounds the memory and the time a flush
 * holds the write lock.  Pool lock held. */
bool jnl_flush_due(const struct rfs_jnl *j);
/* Whether a record past the last commit is indexed under directory
 * (vol, ino), or (all) exists at all.  Pool lock held. */
bool jnl_pending_below(struct rfs_jnl *j, bool all, uint64_t vol, uint64_t ino);

/* Start a new epoch (cursors of the old one get -ESTALE); write lock.
 * Used when records could not be kept (a full pool). */
int jnl_reset(struct rfs_jnl *j, const char *why);

/* Tests: write format 1 records from now on (as a journal made before
 * compact records), until the next jnl_open upgrades it.  Write lock. */
void jnl_write_format1(struct rfs_jnl *j);

/* Next seq after the last committed record: records below it are durable
 * and may be delivered.  Pool lock held. */
uint64_t jnl_durable_next(struct rfs_jnl *j);
/* Whether records past the last commit exist. */
bool jnl_pending(struct rfs_jnl *j);

struct jnl_info {
	uint8_t uuid[16];
	uint64_t epoch;
	uint64_t oldest;  /* seq of the oldest record kept */
	uint64_t durable; /* jnl_durable_next */
	uint64_t next;    /* next seq to hand out */
	uint64_t limit_bytes, bytes, nrecords;
	uint64_t pending; /* records appended but not yet stored in the tree */
};
void jnl_info(struct rfs_jnl *j, struct jnl_info *out);

/* Set the retention limit (write lock held); trims at once. */
int jnl_set_limit(struct rfs_jnl *j, uint64_t limit_bytes);

/*
 * Records indexed under directory (vol, ino) with from <= seq < upto,
 * in seq order; paths relative to that directory (NULL: outside it).
 * fn returns 0 to go on, > 0 to stop (returned), < 0 to fail.  Read
 * lock held.
 */
int jnl_query(struct rfs_jnl *j, uint64_t vol, uint64_t ino, uint64_t from,
	      uint64_t upto, rfs_change_fn fn, void *arg);

/* All records with from <= seq < upto, in seq order, paths from the
 * mount root: the query of the mount root, which records are not indexed
 * under (every record is below it).  Read lock held. */
int jnl_query_all(struct rfs_jnl *j, uint64_t from, uint64_t upto, rfs_change_fn fn,
		  void *arg);

/* Cursor text: "rfsj1:" uuid (32 hex) ":" epoch (16 hex) ":" seq (16 hex). */
void jnl_cursor_encode(const uint8_t uuid[16], uint64_t epoch, uint64_t seq,
		       char out[RFS_CURSOR_MAX]);
/* -EINVAL when text is not a cursor. */
int jnl_cursor_decode(const char *text, uint8_t uuid[16], uint64_t *epoch, uint64_t *seq);

#endif
