/*
 * Internal state of the filesystem layer, shared by the files of src/fs/.
 *
 * On-disk model (see docs/ARCHITECTURE.md, "Filesystem model"):
 *   catalog id V  -> volume tree:
 *       'M'            volume meta (struct rfs_volmeta)
 *       'R'            root directory's inode record (RFS_ITEM_TREE)
 *       'T'            link table pseudo-record (RFS_ITEM_TREE -> table)
 *       'P'            u64 root of the back-pointer index (RFS_ITEM_TREE;
 *                      format 2): 'B' be64(ino) -> u64 parent ino, name
 *   directory entries tree (the subtree of a directory's record):
 *       'N' be64(hash(name)) name -> inode record of that entry
 *       'X' name 0 be16(chunk)    -> the directory's xattr value chunk
 *   a regular file with RFS_INODE_INLEXT keeps its extent map in its
 *   record instead (emap.c; the value carries RFS_ITEM_EXTLIST) and has
 *   no file tree.
 *   file tree (the subtree of a regular file's or symlink's record):
 *       'E' be64(file block)      -> extent (RFS_ITEM_EXTENT)
 *       'L' be16(chunk)           -> long symlink target chunk
 *       'X' name 0 be16(chunk)    -> xattr value chunk
 *   link table: 'I' be64(ino) -> inode record of a hard-linked inode
 *       (nlink >= 2, or an orphan with nlink 0 that is still open).
 */
#ifndef RFS_FS_INTERNAL_H
#define RFS_FS_INTERNAL_H

#include "reflinkfs/fs.h"
#include "reflinkfs/log.h"
#include "reflinkfs/pool.h"
#include "reflinkfs/tree.h"
#include "util/lockcheck.h"
#include "util/pcount.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* Tree owner kinds (informational, in node headers). */
enum {
	RFS_OWNER_VOLUME = 17,
	RFS_OWNER_DIR = 18,
	RFS_OWNER_FILE = 19,
	RFS_OWNER_LINKS = 20,
	RFS_OWNER_INDEX = 21,
};

#define RFS_VOL_MAGIC 0x4c4f5646534652ull /* "RFSFVOL" */
/* 2: the volume has the back-pointer index 'P' (format 1 pools get it
 * at their first read-write mount).  3: records may keep a small file's
 * extent map inline (RFS_INODE_INLEXT); a format 2 pool becomes 3 at its
 * first read-write mount (its files keep their trees until rewritten).
 * 4: records may keep a tiny file's data inline (RFS_INODE_INLDATA); an
 * older volume becomes 4 at its first read-write mount likewise.
 * 5: directories may be embedded in their parent's tree (RFS_INODE_EMBED);
 * an older volume becomes 5 likewise (its directories keep their trees).
 * 6: inode records may be in the compact form (irec.c); an older volume
 * becomes 6 likewise (its records keep the fixed form until rewritten). */
#define RFS_VOL_VERSION 6u
/* The first format with compact inode records. */
#define RFS_VOL_COMPACT 6u
/* The first format with embedded directories (RFS_INODE_EMBED). */
#define RFS_VOL_EMBED 5u
/* Entries an embedded subtree holds at most (counted in its top's
 * record): one more materializes it, O(this) (dir_embed.c). */
#define RFS_EMBED_MAX 64u
/* What an operation that may materialize one reserves for it, in
 * op_meta items (16 blocks each): the new tree's leaves (at most
 * RFS_EMBED_MAX records of up to 1 KiB: 17 blocks, about 3 for small
 * files' records) and the holder's leaves it leaves, shadowed once. */
#define EMB_ITEMS 2u

/* Volume meta, key 'M' of the volume tree. */
struct rfs_volmeta {
	uint64_t magic;
	uint32_t version;
	uint32_t pad;
	uint64_t volid;
	uint64_t next_ino;
	uint64_t ninodes;
	/* A snapshot volume: the volume holding its root entry (0 for the
	 * top volume), RFS_VOL_* flags, creation time, the volume its
	 * source directory was in.  The top volume's volid field of the
	 * next volume made is next_vol. */
	uint64_t parent;
	uint32_t flags;
	uint32_t pad2;
	int64_t created;
	uint64_t source_vol;
	uint64_t next_vol; /* top volume: next volume id to hand out */
	uint64_t reserved[3];
};
enum {
	RFS_VOL_RDONLY = 1u << 0,
	/* ninodes is not the volume's inode count (a snapshot starts with
	 * its source's inodes uncounted, to stay O(1)): fsck skips it. */
	RFS_VOL_UNCOUNTED = 1u << 1,
	/* With RFS_VOL_RDONLY: read-only only because the snapshot it was
	 * copied into was (a volume nested in a read-only snapshot), not
	 * in its own right, so a writable snapshot of that one gets it
	 * writable.  A read-only volume without it stays read-only in every
	 * copy. */
	RFS_VOL_RDONLY_INHERITED = 1u << 2,
};

/* Inode record flags. */
enum {
	RFS_INODE_LINKED = 1u << 0, /* entry stub: the record is in the link table */
	RFS_INODE_LONGLINK = 1u << 1, /* symlink target in the file tree ('L') */
	/* File tree is a clone whose extents past the size are the clone
	 * source's, still hidden (a copy_file_range in progress, see clone.c);
	 * they are cut (tail_fix) before the size can grow otherwise. */
	RFS_INODE_TAILCLONE = 1u << 2,
	/* Made by rfs_fs_tmpfile (O_TMPFILE): an orphan (nlink 0) that
	 * link may still give a name; cleared by that link. */
	RFS_INODE_TMPFILE = 1u << 3,
	/* A directory entry that is the root of a snapshot volume: the
	 * inodes below belong to volume `volume` (their numbers are that
	 * volume's); the record itself is that volume's root directory. */
	RFS_INODE_VOLROOT = 1u << 4,
	/* Regular file whose extent map is inline: the record's tail holds
	 * it (emap.c, docs/FORMAT.md), the item carries RFS_ITEM_EXTLIST and
	 * subtree is 0 (no file tree, hence no xattrs). */
	RFS_INODE_INLEXT = 1u << 5,
	/* Regular file whose whole content is in the record's tail (tail
	 * length = size, 1..RFS_INLDATA_MAX bytes): no data block, no file
	 * tree (subtree 0, blocks 0), a plain RFS_ITEM_TREE item (file.c
	 * "inline data", docs/FORMAT.md; volume format 4). */
	RFS_INODE_INLDATA = 1u << 6,
	/* Embedded directory (volume format RFS_VOL_EMBED): no tree of its
	 * own (subtree 0); its entries are items 'e' be64(ino) be64(hash)
	 * name of the tree holding its record (dir_each.c, dir_embed.c).
	 * Its `volume` field counts the entries of its whole embedded
	 * subtree when its parent is not embedded (a top), else is 0; its
	 * `rdev` is a stamp (emb_stamp) renewed at every change below it, so
	 * that a tree diff sees its record change (diff.c). */
	RFS_INODE_EMBED = 1u << 7,
};

/*
 * Inode record: the value of a directory entry, of 'R', and of a link
 * table item; RFS_ITEM_TREE (bytes 0..7 = subtree root).  Followed by the
 * inline symlink target, if any.  Host (little-endian) order.  This is
 * the in-memory form and the fixed on-disk form; a format 6 volume
 * stores most records in a compact form (irec.c) that decodes to it.
 * ino is below 2^48: byte 15 of a fixed record is 0 (irec.c).
 */
struct rfs_inode {
	uint64_t subtree; /* dir: entries tree; file/symlink: file tree */
	uint64_t ino;
	uint32_t mode;
	uint32_t uid;
	uint32_t gid;
	uint32_t nlink;
	uint64_t size;   /* file: bytes; dir: number of entries */
	uint64_t blocks; /* data blocks referenced (RFS_BLOCK_SIZE) */
	int64_t atime, mtime, ctime, btime;
	uint32_t atime_ns, mtime_ns, ctime_ns, btime_ns;
	uint64_t rdev;
	uint32_t flags;
	uint32_t generation;
	uint64_t links_below; /* dir: hard-linked names in its subtree */
	uint64_t volume;      /* RFS_INODE_VOLROOT: the volume it roots */
	uint64_t vols_below;  /* dir: volume roots in its subtree */
};
#define RFS_INODE_SIZE sizeof(struct rfs_inode)
#define RFS_INLINE_MAX (RFS_VAL_MAX - RFS_INODE_SIZE)

/* An inode record with its inline tail. */
struct rfs_irec {
	struct rfs_inode i;
	size_t taillen;
	char tail[RFS_INLINE_MAX];
};

/* Extent value, key 'E' + be64(file block); RFS_ITEM_EXTENT. */
struct rfs_extent {
	uint64_t start;   /* first pool block */
	uint64_t nblocks; /* blocks */
	uint32_t flags;   /* RFS_EXT_* */
	uint32_t pad;
	/* followed by nblocks crc32c (written extents only) */
};
enum { RFS_EXT_UNWRITTEN = 1u << 0 };
#define RFS_EXT_HDR sizeof(struct rfs_extent)
#define RFS_UNWRITTEN_MAX 32768u

/* An extent as held in memory. */
struct rfs_ext {
	uint64_t lblk; /* file block */
	uint64_t start;
	uint64_t n;
	uint32_t flags;
	uint32_t csum[RFS_EXTENT_MAX];
};

/* A volume: the top one (RFS_TOP_VOLUME, the mount's root) or a
 * snapshot.  Its catalog tree holds 'M' (struct rfs_volmeta), 'T' (link
 * table) and, for the top volume, 'R' (root directory); a snapshot's
 * root directory is an RFS_INODE_VOLROOT entry in a directory of its
 * parent volume.  Loaded at open, added by snapshots; pool lock (read
 * to read, write to change). */
struct rfs_vol {
	uint64_t id;
	struct rfs_volmeta m;
	bool dirty; /* m changed: stored by the running operation */
	bool gone;  /* deleted: its catalog tree is dropped */
};

/*
 * In-memory inode of the node table (FUSE node id).
 *
 * Locking.  The "place" fields change only with nlock and the pool's
 * lock (either kind) held, and a node is freed only then; so reading them
 * needs nlock, or the pool's write lock (which excludes all who change
 * them).  Lookups change them under the read lock (node_ref moves a node
 * whose place went stale, freeing its old name and perhaps its old
 * parent's node): a reader holding only the read lock must take nlock,
 * as ip_load does to copy the path.  A node pointer from node_get stays
 * valid after nlock is dropped only while a lookup reference or open
 * handle the caller holds pins it; its ancestors are pinned by nothing
 * the caller holds.
 */
struct rfs_node {
	rfs_nodeid id; /* fixed once in the table */
	uint64_t ino;  /* fixed */
	uint64_t vol;  /* fixed: volume of the inode (st_ino = vol << 48 | ino) */
	/* The place (nlock + pool lock to change, see above): */
	struct rfs_node *parent; /* NULL for the root and link-table inodes */
	char *name;              /* NULL likewise */
	bool in_table;           /* record lives in the link table */
	bool dead;               /* last name gone and record dropped */
	uint32_t nchild;         /* nodes whose parent is this one */
	/* nlock (rfs_fs_open_node counts a handle without the pool lock): */
	uint64_t nlookup;
	uint32_t nopen;
	/* Xattr usage of the inode, valid when xknown: bytes of the name
	 * list, and of names plus values (xattr_space.c).  Pool write lock.
	 * Counted on first use; code that changes an inode's 'X' items
	 * other than through xattr_op must clear xknown. */
	bool xknown;
	uint64_t xlist, xtotal;
	struct rfs_node *next_id, *next_ino; /* nlock: hash chains */
	/* The file's own change generation: bumped instead of the pool's
	 * by operations that change only this file (op_local: data
	 * writes), at each of their write-lock acquisitions, with the lock
	 * held; read under a pool lock or, by the lock-free READ, with
	 * none.  Atomic. */
	_Atomic uint64_t fgen;
	/* Protects rc and ec (and what they point to): READs that use the
	 * copies take it for reading, those that refresh them for writing
	 * (nested inside nlock when taken with it).  Not nlock, so that the
	 * READs the copies answer do not queue on the node table's mutex
	 * (rcache_read_nolock). */
	pthread_rwlock_t clock;
	/* READ's copy of the inode record (rcache.c), valid while the
	 * pool's change generation and fgen are the ones it was copied at;
	 * NULL until the first READ.  clock. */
	struct rfs_rcache *rc;
	/* READ's copies of extents of the file's tree (rcache.c), valid
	 * for one change generation likewise.  clock. */
	struct rfs_ecache *ec;
	/* Delayed writes of this file queued or being mapped (file_delay.c;
	 * atomic, read with no lock), and the first error mapping one after
	 * its WRITE was answered, for the next fsync (fs dm_lock). */
	_Atomic uint32_t dm_count;
	int dm_err;
	/* Of those, the writes whose blocks are not in the index of queued
	 * writes (queued while it was off, file_delay.c "The index only
	 * while READs come"): a READ of the file maps them first.
	 * fs dm_lock. */
	uint32_t dm_unidx;
};

/* A decoded inode record and the bytes it decodes from (inode.c,
 * "Decoded records"): rec_decode of enc[0..len) gives i, and a tail of
 * the last taillen bytes of enc. */
#define IRC_BITS 3u /* sets, by inode number */
#define IRC_WAYS 2u
#define IRC_SLOTS ((1u << IRC_BITS) * IRC_WAYS)
#define IRC_ENC_MAX 256u
struct irc_ent {
	uint16_t len; /* 0: empty */
	uint16_t taillen;
	uint8_t enc[IRC_ENC_MAX];
	struct rfs_inode i;
};

/* Blocks the claim reserve holds at most (file_claim.c). */
#define CR_MAX 128u

struct rfs_fs {
	rfs_pool *pool; /* fixed after open */
	bool rdonly;    /* fixed */
	/* Volumes by id (sorted), top = the mount's root volume; pool
	 * lock (read to read, write to change). */
	struct rfs_vol **vols;
	size_t nvols;
	struct rfs_vol *top;

	/* Called when a deletion queued a tree (rfs_fs_set_queued_hook);
	 * set before requests are served, read-only afterwards. */
	void (*queued_hook)(void *arg);
	void *queued_arg;

	/* The change journal (src/journal); NULL when mounted without one.
	 * Pool lock (read to read, write to change). */
	struct rfs_jnl *jnl;
	/* Followers waiting for changes (changes_wait.c): appends so far
	 * and waiters (atomics; waiters changed under cw_lock), the last
	 * commit a follower asked for (cw_lock). */
	pthread_mutex_t cw_lock;
	pthread_cond_t cw_cond;
	_Atomic uint64_t cw_events;
	_Atomic unsigned cw_waiters;
	int64_t cw_last_commit_ns;
	/* Names of hard-linked inodes, cached for the journal and the
	 * watches (link_names.c); a pool lock and that file's ln_mutex. */
	struct link_names *lnames;

	/* Pre-modification watches (watch.c).  wlock (after the pool lock,
	 * before a watch's own lock; never with nlock) protects the list. */
	pthread_mutex_t wlock;
	struct rfs_watch *watches;
	/* Armed marks of all watches (low 32 bits) and the arm generation
	 * (high 32 bits, WATCH_GEN_ONE per arm, added with the pool write
	 * lock held): op_begin reads it without a lock, and again under the
	 * write lock (op.c). */
	_Atomic uint64_t watch_state;

	/* The operation running now (op.h); pool write lock. */
	struct rfs_op *cur_op;
	/* rfs_fs_set_data_hook (tests); set while no write runs. */
	void (*data_hook)(void *arg);
	void *data_arg;
	/* rfs_fs_set_map_hook, rfs_fs_set_read_hook (tests); set while no
	 * write, or no READ, runs. */
	void (*map_hook)(void *arg);
	void *map_arg;
	void (*read_hook)(void *arg, int stage);
	void *read_arg;
	/* rfs_fs_inject_op_failure (tests); pool write lock. */
	unsigned inject_after;
	int inject_err;
	/* rfs_fs_inject_alloc_nospc (tests); pool write lock (claims read
	 * it holding the gate, which the write lock includes). */
	unsigned inject_nospc;
	/* rfs_fs_set_premod_hook (tests); set while no operation runs,
	 * taken (cleared) by the operation that calls it. */
	void (*premod_hook)(void *arg);
	void *premod_arg;
	/* rfs_fs_set_wait_hooks: set while no operation runs (before the
	 * FUSE workers start, after they end); read without a lock. */
	void (*wait_begin)(void *arg);
	void (*wait_end)(void *arg);
	void *wait_arg;
	/* rfs_fs_release_waits has run: no operation waits for a watch's
	 * subscriber or a change any more (atomic; set once). */
	atomic_bool waits_released;

	/* The node table: taken after the pool lock, never before; does
	 * not nest.  Take it with node_lock() (node_lock_held() asserts). */
	pthread_mutex_t nlock;
	/* nlock: */
	struct rfs_node **by_id, **by_ino;
	size_t cap, nnodes;
	unsigned rename_fail_every; /* rfs_fs_fail_rename_nodes */
	uint64_t rename_updates;
	uint64_t root_ino; /* fixed: the volume root's inode number, set at open */
	/* Operations that changed something (stored an inode path, or
	 * released queued trees) since open: rfs_du tells from it that the
	 * tree changed during its walk.  Pool write lock to change. */
	uint64_t ops;
	/* Change stamps of embedded directories (emb_stamp): the running
	 * transaction and stamps handed out in it.  Pool write lock. */
	uint64_t stamp_gen, stamp_n;
	/* READs answered from a node's record copy, and READs that walked
	 * to the record (rcache.c; tests).  Sharded by CPU (util/pcount.h):
	 * every READ adds to them, from workers on every core. */
	struct rfs_pcount rc_hits, rc_misses;
	/* Extent copies of all nodes: entries allocated, and the most
	 * there may be (rcache.c).  nlock. */
	size_t ec_alloc, ec_budget;
	/* READs answered from an extent copy, READs that walked the file's
	 * tree although they could have been (tests).  Sharded by CPU. */
	struct rfs_pcount ec_hits, ec_misses;
	/* READs served with no pool lock, and those redone under it
	 * because a generation moved (rcache_read_nolock; tests).
	 * Sharded by CPU. */
	struct rfs_pcount nl_served, nl_retried;
	/* Claimed writes mapped by replacing one extent record in place,
	 * and by splitting one around them (ext_replace), for the tests.
	 * Pool write lock. */
	uint64_t ext_replaced, ext_split;
	/* Inode records decoded by mutable loads and stored by ip_store,
	 * found again by their bytes (inode.c, "Decoded records"), and the
	 * loads that found theirs / decoded (tests).  Pool write lock. */
	struct irc_ent irc[IRC_SLOTS];
	uint64_t irc_hits, irc_misses;
	/* Delayed mapping of small writes (file_delay.c).  dm_apply: held
	 * by whoever takes writes off the queue or maps an operation of
	 * the batch; taken before dm_lock and any pool lock; it guards
	 * dm_scr, the batch being mapped.  dm_lock (a leaf):
	 * dm_q (DM_QUEUE entries, NULL on a read-only fs), dm_n and
	 * dm_blocks (their blocks).  dm_count: writes queued or in the
	 * batch being mapped; dm_resv: the blocks their mapping may need
	 * (dm_room each).
	 * Both atomic, read with no lock (dm_settle, file_claim.c take);
	 * dm_resv is added to under dm_lock and taken from under dm_apply. */
	pthread_mutex_t dm_apply, dm_lock;
	struct dm_ent *dm_q;
	struct dm_scr *dm_scr;
	/* The queued writes' blocks by (node, file block), for READ
	 * (file_delay_index.c).  dm_lock; entries leave with the pool write
	 * lock held too. */
	struct dm_index *dm_idx;
	/* dmx_on: new queued writes go into the index; dmx_used: a READ
	 * looked there since the last batch was taken (dmx_used implies
	 * dmx_on).  A batch taken with no READ since turns it off.
	 * dm_lock. */
	bool dmx_on, dmx_used;
	size_t dm_n, dm_blocks;
	_Atomic uint32_t dm_count;
	_Atomic uint64_t dm_resv;
	/* Blocks claimed ahead for 1-block WRITEs (file_claim.c, "Claim
	 * reserve"), each holding cr_room() of dm_resv: cr_blk[cr_head ..
	 * cr_head + cr_n), handed out in claim order, under cr_lock (a
	 * leaf, taken after the gate when both are held).  cr_n is also
	 * read with no lock, as a hint (dm_settle, cr_pop). */
	pthread_mutex_t cr_lock;
	uint64_t cr_blk[CR_MAX];
	uint32_t cr_head;
	_Atomic uint32_t cr_n;
};

/* One level of a path from the volume root to an inode record. */
struct rfs_ilevel {
	rfs_tree parent; /* tree holding the record */
	size_t klen;
	/* enc holds the record's bytes as its tree holds them when have_enc
	 * (a mutable load or a store set it; ip_alloc clears it): ip_store
	 * puts only the levels whose encoding changed.  orig is rec.i as
	 * decoded from enc: a level whose rec.i and tail still equal it
	 * (and enc) is not even encoded again (inode.c, lv_unchanged). */
	bool have_enc;
	uint16_t enc_len;
	uint16_t orig_taillen; /* of rec as decoded from enc */
	uint8_t key[RFS_KEY_MAX];
	struct rfs_irec rec;
	uint8_t enc[RFS_VAL_MAX];
	struct rfs_inode orig; /* set with have_enc (not zeroed by ip_alloc) */
};

struct rfs_ipath {
	int n; /* levels; lv[n-1] is the target */
	bool in_table;
	uint64_t vol;  /* catalog id of lv[0].parent: top, or the table's */
	uint64_t tvol; /* volume of the target inode */
	/* Added by ip_store to vols_below of every directory on the path
	 * (a volume root made or removed below the target). */
	int64_t vols_delta;
	/* Entries added to (or, negative, removed from) the target when it
	 * is an embedded directory: ip_store adds it to the count of the
	 * top of its embedded subtree. */
	int64_t emb_delta;
	bool mut;
	/* When set, ip_store stores target_tree.root as the target's
	 * subtree (the caller mutated the target's own tree). */
	bool target_tree_valid;
	rfs_tree target_tree;
	/* The catalog's entry for vol as ip_load read it or ip_store last
	 * wrote it (valid when cat_known): ip_store sets the catalog only
	 * when lv[0].parent differs from it. */
	bool cat_known;
	rfs_tree cat;
	struct rfs_ilevel *lv;
	int cap; /* levels lv has room for (inode.c, ip_alloc) */
};

/* The target's subtree as a tree handle, to mutate; ip_store writes the
 * new root back. */
static inline rfs_tree *ip_tree(struct rfs_ipath *p)
{
	if (!p->target_tree_valid) {
		struct rfs_irec *r = &p->lv[p->n - 1].rec;
		p->target_tree.root = r->i.subtree;
		p->target_tree.owner = S_ISDIR(r->i.mode) ? RFS_OWNER_DIR : RFS_OWNER_FILE;
		p->target_tree_valid = true;
	}
	return &p->target_tree;
}

static inline struct rfs_irec *ip_rec(struct rfs_ipath *p)
{
	return &p->lv[p->n - 1].rec;
}

/* Directory record whose entries live in its holder's tree. */
static inline bool is_embed(const struct rfs_inode *i)
{
	return S_ISDIR(i->mode) && (i->flags & RFS_INODE_EMBED);
}

/* ---- util (inode.c) ---- */
/* Big-endian 64-bit numbers (keys sort by their bytes).  Inline: every
 * key of every tree walk goes through them, and the out-of-line byte
 * loops cost about 50 instructions a call. */
static inline void put_be64(uint8_t *p, uint64_t v)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	v = __builtin_bswap64(v);
#endif
	memcpy(p, &v, 8);
}

static inline uint64_t get_be64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	v = __builtin_bswap64(v);
#endif
	return v;
}
void put_be16(uint8_t *p, uint16_t v);
uint16_t get_be16(const uint8_t *p);
void now_ts(int64_t *sec, uint32_t *nsec);
void touch_mc(struct rfs_inode *i);  /* mtime = ctime = now */
void touch_c(struct rfs_inode *i);   /* ctime = now */
uint64_t name_hash(const char *name, size_t len);
size_t dent_key(uint8_t *key, const char *name, size_t len);
/* ---- inode record forms (irec.c) ---- */
/* Either form into r; -EUCLEAN (logged) for a malformed value. */
int rec_decode(const void *val, size_t vlen, struct rfs_irec *r);
/* r into val (RFS_VAL_MAX bytes): the compact form when compact and it
 * is shorter, else the fixed one.  Its length. */
size_t rec_encode(const struct rfs_irec *r, uint8_t *val, bool compact);
/* val is in the compact form. */
bool rec_is_compact(const void *val, size_t vlen);
/* Records may be written compact (volume format RFS_VOL_COMPACT). */
static inline bool compact_ok(const rfs_fs *fs)
{
	return fs->top->m.version >= RFS_VOL_COMPACT;
}
int rec_put(rfs_fs *fs, rfs_tree *t, const void *key, size_t klen,
	    const struct rfs_irec *r, int mode);
int rec_put_pool(rfs_pool *pool, rfs_tree *t, const void *key, size_t klen,
		 const struct rfs_irec *r, int mode, bool compact);
int rec_get(rfs_pool *pool, rfs_tree *t, const void *key, size_t klen,
	    struct rfs_irec *r, bool mut);
/* st of record r of an inode of volume vol. */
void rec_to_stat(uint64_t vol, const struct rfs_irec *r, struct stat *st);
size_t table_key(uint8_t *key, uint64_t ino);

/* ---- where a directory's entries are (dir_each.c) ---- */
/* The entries of one directory: the tree holding them and the prefix of
 * their keys (prefix be64(hash(name)) name -> the entry's inode record).
 * Today {its own entries tree, "N"}.  A value: copy it freely; a
 * mutation goes through ip_dtree, not through t. */
struct dirloc {
	rfs_tree t;
	uint8_t pfx[9];
	size_t plen;
};
/* The entries of directory record d, whose record is held by tree
 * holder (the tree of the entry, 'R' or link table item it was read
 * from). */
void dloc_of(struct dirloc *l, const struct rfs_inode *d, const rfs_tree *holder);
/* The key of entry name (len bytes) of l; RFS_KEY_MAX bytes suffice. */
size_t dloc_key(const struct dirloc *l, uint8_t *key, const char *name, size_t len);
/* Key k read from l->t: 1 when it is an entry of l (its hash and name,
 * not NUL-terminated, pointing into k), 0 when it is not one of l's keys
 * (past them in a scan), -EUCLEAN when it has l's prefix but not an
 * entry key's shape. */
int dloc_entry(const struct dirloc *l, const uint8_t *k, size_t kl, uint64_t *hash,
	       const char **name, size_t *len);
/* Seek cursor c of l->t to l's first entry whose hash is >= hash. */
int dloc_seek(const struct dirloc *l, rfs_cursor *c, uint64_t hash);
/* Called per entry: name (len bytes, no NUL) and its decoded record.
 * Return 0 to go on; anything else stops the walk and is returned. */
typedef int (*dir_each_fn)(void *arg, const char *name, size_t len,
			   const struct rfs_irec *r);
/* Every entry of l, in key order.  The cursor is held during the calls:
 * fn must not change any tree (collect, then change); it may read, also
 * with cursors of its own (walks recurse through fn).  0, fn's value,
 * -EUCLEAN for a malformed entry, -ENOMEM, or a read error. */
int dir_each(rfs_fs *fs, const struct dirloc *l, dir_each_fn fn, void *arg);
/* For a path whose target is a directory: the tree holding its entries,
 * to read or mutate (ip_store writes the new root back where it
 * belongs), the location of its entries as they are now, and the key of
 * entry name. */
rfs_tree *ip_dtree(struct rfs_ipath *p);
void ip_dloc(struct rfs_ipath *p, struct dirloc *l);
size_t ip_dkey(struct rfs_ipath *p, uint8_t *key, const char *name, size_t len);
/* Any entry key of a directory's own tree: its own entries (*dir 0) or
 * those of an embedded directory it holds (*dir its inode number).  1
 * and the name (pointing into k), 0 for another key (xattrs), -EUCLEAN
 * for a malformed entry key. */
int dtree_entry(const uint8_t *k, size_t kl, uint64_t *dir, const char **name, size_t *len);

/* ---- embedded directories (dir_embed.c) ---- */
/* New directories may be embedded (volume format RFS_VOL_EMBED). */
static inline bool embed_ok(const rfs_fs *fs)
{
	return !fs->rdonly && fs->top->m.version >= RFS_VOL_EMBED;
}
/* Move embedded directory record x's entries, and everything embedded
 * below it, from the tree h holding x into a tree of x's own: x loses
 * RFS_INODE_EMBED, gets the tree as subtree and count 0; its embedded
 * children become tops with their counts.  *moved: the entries moved.
 * The caller stores x back.  O(RFS_EMBED_MAX).  Pool write lock. */
int emb_materialize(rfs_fs *fs, rfs_tree *h, struct rfs_irec *x, uint64_t *moved);
/* A change stamp no other store of this pool ever had (transaction
 * generation and a count within it): an embedded directory's rdev, set
 * by every store below it.  Two records with the same stamp have the
 * same entries.  Pool write lock. */
uint64_t emb_stamp(rfs_fs *fs);
/* x, the record of embedded directory node n as read now, becomes a
 * directory with a tree of its own holding copies of its embedded
 * subtree (with references of their own); the tree holding x is not
 * changed (a snapshot of it, also in a read-only volume).
 * O(RFS_EMBED_MAX).  Pool write lock. */
int emb_copy(rfs_fs *fs, struct rfs_node *n, struct rfs_irec *x);
/* Materialize the target of mutable path p when it is an embedded
 * directory (before it gets xattrs).  The count of its top drops. */
int ip_materialize(rfs_fs *fs, struct rfs_ipath *p);
/* Before an entry is added to the directory of mutable path p (node
 * dn): when it is embedded and its embedded subtree is full, materialize
 * the top of that subtree; p is then stored and loaded again. */
int ip_room(rfs_fs *fs, struct rfs_node *dn, struct rfs_ipath *p);
/* Materialize entry name of directory dn when it is an embedded
 * directory (before a snapshot of it, or its move to another
 * directory).  Pool write lock. */
int entry_materialize(rfs_fs *fs, struct rfs_node *dn, const char *name, size_t len);

/* ---- paths (inode.c) ---- */
int ip_load(rfs_fs *fs, struct rfs_node *node, bool mut, struct rfs_ipath *p);
int ip_load_table(rfs_fs *fs, uint64_t vol, uint64_t ino, bool mut,
		  struct rfs_ipath *p);
int ip_store(rfs_fs *fs, struct rfs_ipath *p, int64_t links_delta);
/* ip_store + ip_free; returns ret when non-zero, else the store's result. */
int ip_done(rfs_fs *fs, struct rfs_ipath *p, int64_t links_delta, int ret);
void ip_free(struct rfs_ipath *p);
/* Whether a tree node above the target's record (in its volume's or
 * directories' trees) is shared with another tree: a snapshot or a cloned
 * directory shares everything below it lazily, so such a target's blocks
 * are shared even where their own counts are 1.  0 or a read error. */
int ip_shared(rfs_fs *fs, const struct rfs_ipath *p, bool *shared);
int inode_read(rfs_fs *fs, struct rfs_node *node, struct rfs_irec *r);
/*
 * The node of id and its inode record, for a READ (rcache.c): from the
 * node's copy of the record when no write lock was taken since it was
 * made (rfs_pool_change_gen), else by inode_read, keeping a copy.  Pool
 * lock held (either kind), not nlock.  -ESTALE for an unknown node id.
 */
int rcache_read(rfs_fs *fs, rfs_nodeid id, struct rfs_node **np, struct rfs_irec *r);
/*
 * A READ of size bytes at off of node id served from the node's copies
 * with no pool lock (rcache.c): 1 when served (*got bytes in buf, *np the
 * node, r->i its inode; r's tail is not filled), 0 when the caller must
 * READ under the lock (no valid copy maps the range, or something
 * changed meanwhile), or a negative error (a checksum mismatch with
 * nothing changed: corruption).  queued: writes of the node are queued
 * (dm_queued), to be put over the copies' data, and only a range inside
 * the mapped size is served.  No lock held; the node is pinned by the
 * caller's handle.
 */
int rcache_read_nolock(rfs_fs *fs, rfs_nodeid id, void *buf, size_t size, uint64_t off,
		       bool queued, size_t *got, struct rfs_node **np, struct rfs_irec *r);
/* Free n's record copy (node freed; nlock held or n unreachable). */
void rcache_free(struct rfs_node *n);
/* id's node for a READ (rcache.c), without nlock when this thread found
 * it last and no node was freed since; NULL for an unknown or dead one
 * (the locked path says what).  The caller's handle pins the node. */
struct rfs_node *rcache_node(rfs_fs *fs, rfs_nodeid id);
/* READs answered from copies and READs that walked, since open (tests). */
void rfs_fs_rcache_stats(rfs_fs *fs, uint64_t *hits, uint64_t *misses);
/*
 * READ's copies of the extents of n's file tree (rcache.c), valid while
 * the pool's change generation is the one they were made at.  Pool lock
 * held (either kind), not nlock.
 * ecache_find: if one copy maps all of file blocks [b, b + nb), its pool
 * block for b in *start and the crc32c of the nb blocks in csum; false
 * when none does.
 * ecache_add: keep a copy of x (a written extent of n's tree, found
 * under the held lock), within the fs's budget of entries.
 */
bool ecache_find(rfs_fs *fs, struct rfs_node *n, uint64_t b, uint64_t nb,
		 uint64_t *start, uint32_t *csum);
void ecache_add(rfs_fs *fs, struct rfs_node *n, const struct rfs_ext *x);
/* Free n's extent copies (nlock held, or fs going away). */
void ecache_free(rfs_fs *fs, struct rfs_node *n);
/* The most extent copies all nodes may hold together (tests; default
 * RFS_ECACHE_BUDGET), and the READs answered from them and those that
 * walked although they could have been, and entries allocated now. */
#define RFS_ECACHE_BUDGET 8192u
void rfs_fs_set_ecache_budget(rfs_fs *fs, size_t entries);
void rfs_fs_ecache_stats(rfs_fs *fs, uint64_t *hits, uint64_t *misses, size_t *alloc);
uint64_t ino_alloc(rfs_fs *fs, uint64_t vol);
/* One inode more (+1) or fewer (-1) in volume vol. */
void vol_count(rfs_fs *fs, uint64_t vol, int delta);
int meta_store(rfs_fs *fs, struct rfs_vol *v, rfs_tree *vt);
/* Store the metadata of every changed volume but the top one (whose
 * tree ip_store writes anyway).  Pool write lock. */
int vols_store(rfs_fs *fs);

/* ---- volumes (volume.c) ---- */
/* The volume with this id, NULL when there is none.  Pool lock. */
struct rfs_vol *vol_get(rfs_fs *fs, uint64_t id);
/* Register volume id with meta m (pool write lock). */
int vol_add(rfs_fs *fs, uint64_t id, const struct rfs_volmeta *m,
	    struct rfs_vol **out);
/* Load every volume of the catalog (open).  Pool lock. */
int vols_load(rfs_fs *fs);
void vols_free(rfs_fs *fs);
/* Remove volume vol (its root entry is being deleted): take its catalog
 * tree (meta, link table) out, released in the background when big
 * (reclaim.c), and forget it.  Pool write lock. */
int vol_delete(rfs_fs *fs, uint64_t vol);
/* -EROFS when volume vol is a read-only snapshot. */
int vol_writable(rfs_fs *fs, uint64_t vol);
/* The volume of the inodes below directory record d of volume vol. */
static inline uint64_t vol_below(uint64_t vol, const struct rfs_inode *d)
{
	return (d->flags & RFS_INODE_VOLROOT) ? d->volume : vol;
}

/* ---- back-pointer index (backref.c) ---- */
/* Whether the volume has its index (format 2; a read-only mount of a
 * format 1 pool has none). */
static inline bool has_index(const rfs_fs *fs)
{
	return fs->top->m.version >= 2;
}
/* The volume tree whose index records names of inodes of volume vol
 * changed through path p: the top volume's (lv[0] of a path from the
 * root), or NULL: snapshot volumes have no index yet (file handles of
 * their inodes go stale once the kernel forgets them). */
static inline rfs_tree *bref_vol(rfs_fs *fs, struct rfs_ipath *p, uint64_t vol)
{
	(void)fs;
	return vol == RFS_TOP_VOLUME && p->vol == RFS_TOP_VOLUME ? &p->lv[0].parent : NULL;
}
/* Record that ino is reached as parent/name (mode: RFS_PUT_INSERT for a
 * new inode, RFS_PUT_REPLACE for a move), in the index of volume tree vol
 * (NULL: a volume without index, nothing to do):
 * the volume level (lv[0].parent) of a mutable inode path, which ip_store
 * then stores.  Pool write lock held.  No-op without an index. */
int bref_put(rfs_fs *fs, rfs_tree *vol, uint64_t ino, uint64_t parent,
	     const char *name, size_t len, int mode);
/* ino is no longer reached by a name outside the link table. */
int bref_del(rfs_fs *fs, rfs_tree *vol, uint64_t ino);
/* The index tree (read lock at least). */
int bref_index(rfs_fs *fs, rfs_tree *idx);
/* ino's back-pointer: parent's inode number and the name (NUL-terminated,
 * RFS_NAME_MAX + 1 bytes).  -ENOENT when ino has none. */
int bref_read(rfs_fs *fs, const rfs_tree *idx, uint64_t ino, uint64_t *parent,
	      char *name, size_t *len);
int bref_get(rfs_fs *fs, uint64_t ino, uint64_t *parent, char *name, size_t *len);
/* Build the index of a format 1 volume (one walk of the tree), and mark
 * the volume format 2.  Pool write lock held. */
int bref_build(rfs_fs *fs);

/* ---- finding an inode by number (handle.c) ---- */
/* The node of inode ino, found in the node table, the link table or
 * through the back-pointer index; +1 lookup on *out, its record in rec.
 * -ESTALE when no such inode is reachable.  Pool read lock held. */
int node_resolve(rfs_fs *fs, uint64_t vol, uint64_t ino, struct rfs_node **out,
		 struct rfs_irec *rec);

/* ---- diff (diff.c) ---- */
/* rfs_diff_begin on two directory records of the top volume (full
 * records, not stubs) rather than nodes, for tests: a stands for a
 * snapshot without an index, taken when the volume's next inode number
 * was a_next_ino (0: a is a real directory). */
int diff_begin_recs(rfs_fs *fs, const struct rfs_irec *a, const struct rfs_irec *b,
		    uint64_t a_next_ino, rfs_diff **out);

/* ---- node table (fs.c) ---- */
/*
 * Node ids are the inode's identity, not a counter: (volume << 48) | ino,
 * which is also its st_ino, and RFS_ROOT_NODE for the volume root.  So a
 * node id the kernel kept in a file handle names the same inode after the
 * node was forgotten and across remounts (inode numbers are never reused).
 */
rfs_nodeid node_id_of(const rfs_fs *fs, uint64_t vol, uint64_t ino);
/* Take / drop nlock, recording the owner for node_lock_held(). */
void node_lock(rfs_fs *fs);
void node_unlock(rfs_fs *fs);
/* Does the calling thread hold nlock?  (Assertions.) */
bool node_lock_held(const rfs_fs *fs);
/* May the calling thread read the place fields of nodes? */
static inline bool node_fields_readable(const rfs_fs *fs)
{
	return node_lock_held(fs) || rfs_pool_holds_wrlock(fs->pool);
}
/* The inode number a node id stands for, and its volume in *vol; 0 when
 * it is none. */
uint64_t node_id_ino(const rfs_fs *fs, rfs_nodeid id, uint64_t *vol);
struct rfs_node *node_get(rfs_fs *fs, rfs_nodeid id);  /* NULL if unknown */
struct rfs_node *node_get_locked(rfs_fs *fs, rfs_nodeid id); /* the same, nlock held */
/* A zeroed node with its clock initialized; NULL out of memory. */
struct rfs_node *node_alloc(void);
/* A number bumped before any node of any fs is freed (and so when an fs
 * goes): a node pointer found for an id while it read s is still that
 * id's node while it still reads s. */
uint64_t node_free_stamp(void);
struct rfs_node *node_by_ino(rfs_fs *fs, uint64_t vol, uint64_t ino); /* nlock held */
/* Find or make the node for inode ino of volume vol reached as
 * parent/name; +1 lookup. */
struct rfs_node *node_ref(rfs_fs *fs, struct rfs_node *parent,
			  const char *name, uint64_t vol, uint64_t ino,
			  bool in_table);
/* A node for a new inode, made in two halves so that the only step that
 * can fail (memory) comes before the operation changes anything:
 * node_prepare allocates (NULL: out of memory), node_publish enters it
 * for (parent, ino) with one lookup reference and returns its id (parent
 * NULL: an inode of the link table, reached by number only), and
 * node_discard frees a prepared node that was not published. */
struct rfs_node *node_prepare(rfs_fs *fs, const char *name, size_t len);
rfs_nodeid node_publish(rfs_fs *fs, struct rfs_node *n, struct rfs_node *parent,
			uint64_t vol, uint64_t ino);
void node_discard(struct rfs_node *n);
bool node_live(struct rfs_node *n); /* nlock held */
/* n->in_table, read under nlock. */
bool node_in_table(rfs_fs *fs, struct rfs_node *n);
/* Give back one lookup reference of a node that is not an orphan. */
void node_unref(rfs_fs *fs, rfs_nodeid id);
/* Record that n is now reached as parent/name (parent NULL: by inode
 * number only).  -ENOMEM leaves n where it was.  nlock held. */
int node_set_parent(rfs_fs *fs, struct rfs_node *n, struct rfs_node *parent,
		    const char *name, size_t len);
void node_move_to_table(rfs_fs *fs, struct rfs_node *n); /* nlock held */
/* node_set_parent for the node of a renamed entry (with the fault
 * injection of rfs_fs_fail_rename_nodes).  nlock and write lock held. */
int node_rename(rfs_fs *fs, struct rfs_node *n, struct rfs_node *parent,
		const char *name, size_t len);

/* ---- pre-modification watches (watch.c) ---- */
#define WATCH_ARMED_MASK 0xffffffffull
#define WATCH_GEN_ONE (1ull << 32)

/* ---- deleted trees (reclaim.c) ---- */
/* Give up the reference a removed record holds on its subtree: freed at
 * once when that is O(1), else queued for the background release.  Pool
 * write lock held. */
int rec_release(rfs_fs *fs, const struct rfs_irec *r);
/* The same for any tree reference (a volume's tree); est: blocks it may
 * hold (0: unknown), for progress reports.  t becomes empty. */
int tree_release(rfs_fs *fs, rfs_tree *t, uint64_t est);

struct emap;

/* ---- files (file.c) ---- */
int file_read_locked(rfs_fs *fs, const struct rfs_irec *r, void *buf,
		     size_t size, uint64_t off, size_t *got);
/* Write size bytes at off into r's tree (r's size, blocks and subtree
 * updated; the caller stores r).  pause: nothing of the running
 * operation has changed any tree yet (only a mutable ip_load), so the
 * data may be copied with the write lock paused (file.c write_blocks). */
int file_write_locked(rfs_fs *fs, struct rfs_irec *r, const void *buf,
		      size_t size, uint64_t off, size_t *done, bool pause);
int file_truncate_locked(rfs_fs *fs, struct rfs_irec *r, uint64_t size);
/* A file whose data is inline (RFS_INODE_INLDATA) gets it in a data
 * block of its own, mapped by an inline extent map, before an operation
 * that needs blocks (fallocate, hole punch, range clone, xattrs, growth
 * past RFS_INLDATA_MAX).  No-op for other records; on failure r is as it
 * was.  Pool write lock held; one data block. */
int inldata_spill(rfs_fs *fs, struct rfs_irec *r);
/* rfs_fs_write of whole blocks whose data is copied before the operation,
 * with no lock held (file_claim.c).  1: not this path's kind of write,
 * or the pool is short of space -- use the ordinary one (nothing done);
 * else 0 with *done bytes written, or -errno. */
int file_write_claimed(rfs_fs *fs, struct rfs_node *n, const void *buf, size_t size,
		       uint64_t off, size_t *done);
/* Cut hidden clone extents past the size (RFS_INODE_TAILCLONE). */
int tail_fix(rfs_fs *fs, struct rfs_irec *r);
/* Zero bytes [from, to) of one block inside the file (copy-on-write). */
int zero_partial(rfs_fs *fs, struct rfs_irec *r, struct emap *m, uint64_t from, uint64_t to);
/* Cut file blocks [b, b + n) out of the map (their references released);
 * *removed: blocks that were mapped. */
int ext_punch(rfs_fs *fs, struct emap *m, uint64_t b, uint64_t n,
	      uint64_t *removed);
/* Add extent e (its references move into the map), merged with the one
 * before when contiguous. */
int ext_insert(rfs_fs *fs, struct emap *m, const struct rfs_ext *e);
/* A write that maps e over file blocks that lie within one extent
 * record of a file tree, e not continuing the extent before it (the
 * common random overwrite), with one walk to find that record where
 * ext_punch and ext_insert take two more (ext_punch's, and the search
 * for a neighbour to merge with).  1: e replaced the record exactly (one
 * put); 2: the record was longer, and its head and tail around e are
 * records of their own (two or three puts).  Either way *old is the
 * piece e replaced (start, n), whose references the caller still holds
 * (rfs_ref_dec them).  0: not that case, nothing changed (use ext_punch
 * and ext_insert).  <0: error; nothing changed but what rfs_tree_put
 * leaves, or, when part of the change was stored, op_halfway called.
 * fin: NULL, or a finger kept between calls on m (one batch's writes,
 * in file order): zeroed (fin->p.h == 0) before the first, it stays
 * open after a 1 or 2, and the next call resumes its descent from the
 * lowest node the two keys share (rfs_tree_edit_move); after anything
 * else it is closed.  While it is open the caller changes m by no other
 * call, and closes it (rfs_tree_edit_close) before emap_store. */
int ext_replace(rfs_fs *fs, struct emap *m, const struct rfs_ext *e, struct rfs_ext *old,
		struct rfs_tree_edit *fin);
/* Read up to max extents overlapping [b, end) into out; returns count. */
int ext_collect(rfs_fs *fs, const struct emap *m, uint64_t b, uint64_t end,
		struct rfs_ext *out, int max);
/* The same on a file tree. */
int tree_ext_collect(rfs_fs *fs, const rfs_tree *t, uint64_t b, uint64_t end,
		     struct rfs_ext *out, int max);
int alloc_data(rfs_fs *fs, uint64_t want, uint64_t *start, uint64_t *got);
size_t ext_key(uint8_t *key, uint64_t lblk);
/* Decode an 'E' item into e; -EUCLEAN when malformed. */
int ext_decode(const uint8_t *key, size_t kl, const void *val, size_t vl,
	       struct rfs_ext *e);

/* ---- extent maps (emap.c) ---- */
/* Tail bytes an inline extent map may take: a map that does not fit moves
 * to a file tree.  Kept well below RFS_INLINE_MAX so that a directory
 * leaf still holds several records. */
#define RFS_INLEXT_MAX 512u
/* Inline extents at most (each takes 32 bytes plus its checksums). */
#define RFS_INLEXT_CAP 15

/*
 * A regular file's extent map while an operation works on it: the file
 * tree, or the extents kept inline in the record.  emap_open decodes it,
 * the ext_* calls read and change it, emap_store writes it back into the
 * record (moving it to a file tree when it outgrew the record), and
 * emap_free frees it.  Reference counting is the same in both forms: a
 * listed extent holds one reference on each of its blocks.
 */
struct emap {
	rfs_tree t;          /* the file tree, when !inl */
	bool inl;            /* inline: x[0..n) sorted by file block */
	int n;
	struct rfs_ext *x;   /* RFS_INLEXT_CAP + 1 slots, inline only */
};
/* Inline forms may be written (volume format 3). */
static inline bool inline_ok(const rfs_fs *fs)
{
	return fs->top->m.version >= 3;
}
/* Largest file whose data stays in its record: all a record's tail can
 * hold (the tree's value limit, RFS_VAL_MAX, less the inode), so that a
 * directory leaf still holds three such records. */
#define RFS_INLDATA_MAX RFS_INLINE_MAX
/* Tiny files' data may be written inline (volume format 4). */
static inline bool inline_data_ok(const rfs_fs *fs)
{
	return fs->top->m.version >= 4;
}
int emap_open(rfs_fs *fs, const struct rfs_irec *r, struct emap *m);
/* Write m back into r.  shrink: a file tree that now fits the record
 * moves inline (after truncate / hole punch). */
int emap_store(rfs_fs *fs, struct emap *m, struct rfs_irec *r, bool shrink);
void emap_free(struct emap *m);
/* Move an inline map into a file tree of its own (before xattrs go in). */
int emap_spill(rfs_fs *fs, struct emap *m);
/* The same on record r (emap_open, emap_spill, emap_store). */
int rec_spill(rfs_fs *fs, struct rfs_irec *r);
/* Decode r's inline extent map into x (max slots): count, or -EUCLEAN. */
int inl_decode(const struct rfs_irec *r, struct rfs_ext *x, int max);
/* inl_decode's checks of the inline map in tail (tl bytes) of the record
 * ino, without its log (a lock-free READ leaves the report to the locked
 * path): the count of the extents meeting file blocks [b, e), decoded
 * into x in file order, or -EUCLEAN.  No pool access. */
int inl_range(const struct rfs_inode *ino, const void *tail, size_t tl, uint64_t b,
	      uint64_t e, struct rfs_ext *x, int max);
/* Add (+1) or release (-1) one reference on every inline extent of r. */
int inl_refs(rfs_fs *fs, const struct rfs_irec *r, int delta);
/* Item flags of record r's value. */
static inline uint8_t rec_item_flags(const struct rfs_irec *r)
{
	return (r->i.flags & RFS_INODE_INLEXT) ? RFS_ITEM_TREE | RFS_ITEM_EXTLIST : RFS_ITEM_TREE;
}
/* One more holder of r's references (subtree and inline extents), for a
 * copy of the record; rec_unref gives them back. */
int rec_ref(rfs_fs *fs, const struct rfs_irec *r);
int rec_unref(rfs_fs *fs, const struct rfs_irec *r);

/* ---- xattrs (xattr.c) ---- */
/* Copy all 'X' items of src into memory / back (clone keeps dst's). */
struct rfs_xsave;
int xattr_save(rfs_fs *fs, const rfs_tree *t, struct rfs_xsave **out);
int xattr_strip(rfs_fs *fs, rfs_tree *t);
int xattr_restore(rfs_fs *fs, rfs_tree *t, struct rfs_xsave *s);
void xattr_save_free(struct rfs_xsave *s);
int xattr_put_locked(rfs_fs *fs, rfs_tree *t, const char *name,
		     const void *val, size_t size);
/* Call fn for every xattr item of t (an inode's subtree) in key order:
 * name (nl bytes, not NUL-terminated; valid during the call), chunk
 * number and the chunk's value length.  Malformed keys are passed over.
 * Stops at fn's first non-zero return and returns it; else 0, or a read
 * error.  Pool lock held (read or write). */
typedef int (*xattr_item_fn)(void *arg, const char *name, size_t nl, uint16_t chunk,
			     size_t vl);
int xattr_each(rfs_fs *fs, const rfs_tree *t, xattr_item_fn fn, void *arg);

/* Namespace rules (xattr_name.c): 0 for a name setxattr accepts, else
 * -ERANGE (empty, or longer than RFS_XATTR_NAME_MAX), -EINVAL (a known
 * prefix alone) or -EOPNOTSUPP (unknown namespace).  Sets *nl. */
int xattr_name_check(const char *name, size_t *nl);
/* Length of xattr name's value in t (an inode's subtree), -ENODATA when
 * absent; no buffer (a cheap test whether it is there).  Pool lock held
 * (read or write). */
int64_t xattr_size(rfs_fs *fs, const rfs_tree *t, const char *name);

/* ---- xattr space (xattr_space.c) ---- */
/* Walk t's 'X' items: bytes of the name list and of names plus values. */
int xattr_usage_count(rfs_fs *fs, const rfs_tree *t, uint64_t *list, uint64_t *total);
/* May name (nl bytes) go from a value of old bytes (-1: absent) to one of
 * size bytes in node n, whose tree is t?  -ENOSPC when that grows the
 * usage past RFS_XATTR_LIST_MAX or RFS_XATTR_TOTAL_MAX. */
int xattr_space_check(rfs_fs *fs, struct rfs_node *n, const rfs_tree *t, size_t nl,
		      int64_t old, size_t size);
/* After a change that succeeded: name went from old to now bytes (-1:
 * absent). */
void xattr_usage_update(struct rfs_node *n, size_t nl, int64_t old, int64_t now);

/* ---- POSIX ACLs (acl.c) ---- */
extern const char RFS_ACL_ACCESS[];
extern const char RFS_ACL_DEFAULT[];
int acl_valid(const void *val, size_t size);
uint32_t acl_to_mode(const void *val, size_t size, uint32_t mode);
bool acl_is_minimal(const void *val, size_t size);
/* New inode child in dir: inherit dir's default ACL (into child's
 * subtree, masking child's mode), or apply umask when there is none. */
int acl_inherit(rfs_fs *fs, const struct rfs_irec *dir, struct rfs_irec *child,
		uint32_t umask);
/* chmod: keep the access ACL in t (if any) in sync with mode. */
int acl_update_on_chmod(rfs_fs *fs, rfs_tree *t, uint32_t mode);
/* Whether ctx may do want (4 read, 2 write, 1 execute) on an inode of
 * owner uid and group gid that has this access ACL (Linux's
 * posix_acl_permission): 0 or -EACCES. */
int acl_permission(const void *val, size_t size, const struct rfs_ctx *ctx, uint32_t uid,
		   uint32_t gid, unsigned want);
/* ctx's filesystem gid or one of its supplementary groups is gid. */
bool ctx_in_group(const struct rfs_ctx *ctx, uint32_t gid);

static inline uint64_t div_up(uint64_t a, uint64_t b)
{
	return (a + b - 1) / b;
}

#define FS_TREE(root, owner) ((rfs_tree){(root), (owner)})

static inline uint64_t rec_owner(const struct rfs_inode *i)
{
	return S_ISDIR(i->mode) ? RFS_OWNER_DIR : RFS_OWNER_FILE;
}

/* changes_wait.c: followers of the journal waiting in the daemon. */
void changes_wait_init(rfs_fs *fs);
void changes_wait_fini(rfs_fs *fs);
/* Records were appended (or the journal reset): wake waiting followers. */
void changes_notify(rfs_fs *fs);

/* The caller is about to sleep for something outside the fs's own work
 * (a watch's subscriber, a change to follow), and is back: the hooks of
 * rfs_fs_set_wait_hooks (wait_hooks.c).  No lock of the fs held. */
void fs_wait_begin(rfs_fs *fs);
void fs_wait_end(rfs_fs *fs);
/* Whether rfs_fs_release_waits has run (wait_hooks.c). */
bool fs_waits_released(rfs_fs *fs);
/* Let every operation waiting for a blocking watch's ack go on
 * (watch.c); the waits after it check fs_waits_released. */
void watch_release_waiters(rfs_fs *fs);


/* ---- delayed mapping (file_delay.c) ---------------------------------------- */

/* Runs mapped by one operation, the longest write that is delayed, and
 * the most writes and blocks the queue holds (file_delay.c). */
#define DM_BATCH 64u
#define DM_RUN_MAX 16u
#define DM_QUEUE 8192u
#define DM_BLOCKS 16384u

/* The queue, at open (-ENOMEM) and at free. */
int dm_init(rfs_fs *fs);
void dm_fini(rfs_fs *fs);
/* Map every write queued before the call: of file n, or (n NULL) of all
 * files.  Errors stay on each file for its fsync.  No pool lock or nlock
 * held. */
void dm_settle_slow(rfs_fs *fs, struct rfs_node *n);
static inline void dm_settle(rfs_fs *fs, struct rfs_node *n)
{
	/* A settle of all files also gives back the claim reserve, whose
	 * reservations only the queue's space checks count. */
	if (atomic_load_explicit(n ? &n->dm_count : &fs->dm_count, memory_order_acquire) ||
	    (!n && atomic_load_explicit(&fs->cr_n, memory_order_relaxed)))
		dm_settle_slow(fs, n);
}
/* dm_settle of the node with id, if it is known. */
void dm_settle_id(rfs_fs *fs, rfs_nodeid id);
/* True when a READ of size bytes at off reaches past a file of isize
 * bytes: with writes of the file queued, one of them may have grown it,
 * so that READ maps them first rather than reading beside them. */
static inline bool dm_read_past(uint64_t isize, uint64_t off, size_t size)
{
	return size > isize - (off < isize ? off : isize);
}
/* The node with id when writes of it are queued, else NULL (one atomic
 * load when nothing is queued). */
struct rfs_node *dm_queued(rfs_fs *fs, rfs_nodeid id);
/* dm_overlay's answer when some of n's queued writes are not in the
 * index: the caller lets go of its locks, maps n's writes (dm_settle)
 * and reads again, with no overlay. */
#define DM_UNINDEXED 1
/* Put the data of n's queued writes over buf, which holds file bytes
 * [off, off + len) as n's tree has them: what READ returns.  Returns 0,
 * DM_UNINDEXED (nothing put: a write of n is queued that the index does
 * not hold) or -errno (a block that does not match its checksum).  It
 * also turns the index on for the writes queued after.  With bad NULL,
 * the pool read lock is held (the blocks it reads are not given back
 * meanwhile); else no lock is held, and the caller checks afterwards
 * that n's generation did not move (rcache_read_nolock): a mismatch is
 * -EIO with the block in *bad, not logged. */
int dm_overlay(rfs_fs *fs, struct rfs_node *n, uint8_t *buf, size_t len, uint64_t off,
	       uint64_t *bad);
/* n's first delayed-mapping error since the last call (0: none). */
int dm_take_err(rfs_fs *fs, struct rfs_node *n);

/* The pool's read or write lock, for a reader or changer of the state
 * that is not an operation (op_begin settles itself): queued writes are
 * mapped first, so it sees every write answered before. */
static inline void fs_rdlock(rfs_fs *fs)
{
	dm_settle(fs, NULL);
	rfs_pool_rdlock(fs->pool);
}
static inline void fs_wrlock(rfs_fs *fs)
{
	dm_settle(fs, NULL);
	rfs_pool_wrlock(fs->pool);
}

#endif
