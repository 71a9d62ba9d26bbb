/*
 * reflinkfs filesystem model: volumes, directories, inodes, extent maps,
 * xattrs, hard links and clones, built on the copy-on-write trees of
 * tree.h.  This is the whole filesystem without FUSE: the FUSE adapter
 * (src/fuse) is a thin translation of kernel requests into these calls,
 * and tests drive the same calls directly.
 *
 * Addressing.  Inodes are addressed by node ids, exactly like FUSE
 * low-level node ids: RFS_ROOT_NODE is the root directory, any other
 * inode's node id is its st_ino (see rfs_fs_lookup_ino); every call that
 * returns a node id (lookup, create, mkdir, mknod, symlink, link) adds one
 * lookup reference to it, which the caller gives back with
 * rfs_fs_forget().  A node id stays valid while it has lookup references
 * or open handles.  After the last name of a file is removed, the inode
 * lives on (as an orphan, until the last handle goes) only while it is
 * open (rfs_fs_open_node), as POSIX wants for unlinked open files; a
 * node with lookup references only then reads as stale (-ESTALE), and
 * the space comes back at once.  A removed directory's node stays valid
 * while referenced.
 *
 * st_ino as reported in struct stat is (volume id << 48) | inode number,
 * stable across remounts.
 *
 * Conventions: functions return 0 (or a byte count) on success and a
 * negative errno on failure.  All functions are thread-safe: mutations
 * take the pool's write lock, reads its read lock.  Nothing is durable
 * before rfs_fs_sync() (or the background commit of a mounted fs).
 */
#ifndef REFLINKFS_FS_H
#define REFLINKFS_FS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>

#include "reflinkfs/pool.h"

typedef struct rfs_fs rfs_fs;
typedef uint64_t rfs_nodeid;

#define RFS_ROOT_NODE 1u
/* Id of the top volume in the catalog. */
#define RFS_TOP_VOLUME 1u
/* Longest name of a directory entry, in bytes. */
#define RFS_NAME_MAX 255u
/* Longest symlink target, in bytes. */
#define RFS_SYMLINK_MAX 4095u
/* Longest xattr name, in bytes (the kernel's XATTR_NAME_MAX). */
#define RFS_XATTR_NAME_MAX 255u
/* Longest xattr value, in bytes (the kernel's XATTR_SIZE_MAX): -E2BIG. */
#define RFS_XATTR_MAX 65536u
/* Longest xattr name list of one inode (each name and its NUL), in bytes:
 * the kernel's XATTR_LIST_MAX, past which listxattr fails (-ENOSPC). */
#define RFS_XATTR_LIST_MAX 65536u
/* Most bytes of xattr names plus values one inode holds (-ENOSPC). */
#define RFS_XATTR_TOTAL_MAX (1u << 20)
/* Largest file size (8 TiB and far beyond: 2^62 bytes). */
#define RFS_FILE_MAX (1ull << 62)
/* Longest extent record, in blocks (keeps a record under RFS_VAL_MAX). */
#define RFS_EXTENT_MAX 128u

/* Who is asking (for ownership of new inodes, and the set-gid rule of
 * rfs_fs_setxattr). */
struct rfs_ctx {
	uint32_t uid;
	uint32_t gid; /* the caller's filesystem gid */
	uint32_t pid;
	/* Applied to the mode of new inodes unless the parent directory has
	 * a default ACL (which is inherited instead). */
	uint32_t umask;
	/* Supplementary groups (ngroups entries; NULL when 0). */
	const uint32_t *groups;
	uint32_t ngroups;
	/* The caller holds CAP_FSETID. */
	bool cap_fsetid;
};

/* Flags of rfs_fs_open. */
enum {
	RFS_FS_RDONLY = 1u << 0,   /* open the pool read-only */
	RFS_FS_CRASHSIM = 1u << 1, /* pool opened with RFS_OPEN_CRASHSIM (tests) */
	/* Record no changes (to measure the journal's cost): the journal is
	 * reset, so cursors taken before get -ESTALE, never a silent gap. */
	RFS_FS_NOJOURNAL = 1u << 2,
};

/*
 * Create a new pool at path (see rfs_pool_create: size_bytes, and
 * RFS_CREATE_FORCE in flags) holding an empty filesystem: the top volume
 * with an empty root directory owned by root, mode 0755.  Committed
 * before returning.
 */
int rfs_fs_mkfs(const char *path, uint64_t size_bytes, unsigned flags);

/*
 * Open the filesystem in the pool at path.  Removes orphans left by a
 * crash (inodes unlinked while open).  On error *out is NULL and a
 * message naming the path was logged.
 */
int rfs_fs_open(const char *path, unsigned flags, rfs_fs **out);

/*
 * Commit (unless read-only) and close.  Returns the commit's result; the
 * fs is freed in every case.  Deleted files still waiting in the drop
 * queue stay queued (the next read-write open goes on with them); call
 * rfs_fs_reclaim(fs, 0) first to finish them.
 */
int rfs_fs_close(rfs_fs *fs);

/* Close without committing (what a crash would leave).  For tests. */
void rfs_fs_abandon(rfs_fs *fs);

/* fs opened with RFS_FS_CRASHSIM: simulate a crash (rfs_pool_crash with
 * mode and seed) and free the fs.  For tests. */
void rfs_fs_crash(rfs_fs *fs, enum rfs_crash_mode mode, uint64_t seed);

/*
 * Fault injection for tests: the operation running when after_steps more
 * inode paths have been stored fails there with err (a negative errno),
 * as if the next step had failed after the earlier ones took effect.
 * after_steps 0 disarms.  An operation failing like this halfway for lack
 * of a resource discards the running transaction: the pool turns
 * read-only and the last commit stays intact (see src/fs/op.h).
 */
void rfs_fs_inject_op_failure(rfs_fs *fs, unsigned after_steps, int err);

/* Fault injection for tests: the next n data block allocations fail
 * with -ENOSPC, as on a full pool (0 disarms).  An operation failing so
 * before it stored anything is retried once after a commit when frees
 * are pending (OP_RETRY, src/fs/op.h). */
void rfs_fs_inject_alloc_nospc(rfs_fs *fs, unsigned n);

/* Test hook: fn(arg) is called once, by the next operation that names a
 * file for the pre-modification check, after it has read the watch
 * state and before it takes the pool write lock -- so a test can arm a
 * mark exactly there (the race rfs_fs_watch_arm must win).  Then it is
 * disarmed.  Set it while no operation runs. */
void rfs_fs_set_premod_hook(rfs_fs *fs, void (*fn)(void *arg), void *arg);

/*
 * Wait hooks: begin(arg) is called by the thread of an fs call just before
 * it sleeps for something other than CPU, locks or the pool's I/O -- a
 * blocking watch's subscriber (the pre-modification check), a change to
 * follow (rfs_fs_changes_wait) -- and end(arg) when it is back, holding
 * no lock of the fs in either.  A caller that serves requests with a
 * fixed set of threads uses them to stand another thread in for the one
 * that waits (src/fuse/workers.c): the wait may be for a request that
 * only another thread can serve.  NULLs remove them.  Set them while no
 * call of the fs runs.
 */
void rfs_fs_set_wait_hooks(rfs_fs *fs, void (*begin)(void *arg), void (*end)(void *arg),
			   void *arg);

/*
 * The caller stops serving requests (a SIGTERM, an aborted connection)
 * and must wait for the calls in flight: end their waits for others now.
 * An operation waiting for a blocking watch's ack goes on as if it timed
 * out (without counting a timeout), rfs_fs_changes_wait returns
 * -ETIMEDOUT, and from then on neither waits at all.  For good: call it
 * only when the fs serves no more requests after those in flight.
 */
void rfs_fs_release_waits(rfs_fs *fs);

/*
 * Test hook: fn(arg) is called by every file write while it copies its
 * data into the blocks it allocated: holding no lock when the write
 * covers whole blocks (they are claimed, see rfs_claim_data), else with
 * the pool's write lock paused (rfs_pool_write_pause) when the write is
 * the first change of its operation -- so a test can hold a writer there
 * and check that readers, other writers and commits go on.  NULL
 * disarms.  Set it while no write runs.
 */
void rfs_fs_set_data_hook(rfs_fs *fs, void (*fn)(void *arg), void *arg);

/*
 * Test hook: fn(arg) is called by every file write's operation once it
 * holds the pool's write lock and has loaded the file's record, before
 * it changes the file's mapping -- so a test can hold a writer there,
 * the write lock held, and check what goes on meanwhile.  NULL disarms.
 * Set it while no write runs.
 */
void rfs_fs_set_map_hook(rfs_fs *fs, void (*fn)(void *arg), void *arg);

/*
 * Test hook: fn(arg, stage) is called by a READ served from its node's
 * copies without the pool lock (rfs_fs_read): stage 0 after it took the
 * copies and before it reads the data, stage 1 after the data read and
 * before it checks that nothing changed meanwhile -- so a test can
 * change or free the file's blocks there.  NULL disarms.  Set it while
 * no READ runs.
 */
void rfs_fs_set_read_hook(rfs_fs *fs, void (*fn)(void *arg, int stage), void *arg);

/* READs served without the pool lock, and those that found their copies
 * changed after reading and were done again under the lock, since open
 * (rfs_fs_read; tests). */
void rfs_fs_nolock_stats(rfs_fs *fs, uint64_t *served, uint64_t *retried);

/* The pool below the fs (for stats and crash simulation in tests). */
rfs_pool *rfs_fs_pool(rfs_fs *fs);

/* True when the fs was opened read-only. */
bool rfs_fs_rdonly(const rfs_fs *fs);

/* Make everything done so far durable (one pool commit). */
int rfs_fs_sync(rfs_fs *fs);

/*
 * Map every small write whose mapping was delayed (whole-block writes of
 * up to 16 blocks are answered before they are mapped, and mapped in
 * batches: docs/ARCHITECTURE.md, "Delayed mapping").  Every other call
 * of this API does that first where it could see them; the mount calls
 * it before a background commit and before freezing.  A failure is kept
 * for the file's rfs_fs_fsync.
 */
void rfs_fs_settle(rfs_fs *fs);

/*
 * fsync of file node: its delayed writes mapped, then rfs_fs_sync.
 * Returns the first error that mapping one of its answered writes met
 * since the last rfs_fs_fsync of the file (that data is lost, and the
 * error was logged), else what rfs_fs_sync returns.
 */
int rfs_fs_fsync(rfs_fs *fs, rfs_nodeid node);

/* The mount's periodic commit: as rfs_fs_sync, but the space it frees
 * goes back to the backing filesystem only at the next commit or
 * rfs_fs_punch_warm, so that the writes after it reuse it in place
 * (rfs_pool_commit_background). */
int rfs_fs_commit_background(rfs_fs *fs);

/* Give back the space the last periodic commit freed, as far as it is
 * still free (rfs_pool_punch_warm); for when there is nothing to commit. */
void rfs_fs_punch_warm(rfs_fs *fs);

/* ---- background release of deleted files --------------------------------- */

/*
 * Deleting a file whose tree is more than one leaf (or a subtree holding
 * nested trees) detaches it in O(1) and queues its tree in the pool's
 * drop queue (tree.h); its blocks come back when the queue is worked
 * through, in the background of a mount, resumably across unmount, crash
 * and remount.  Until then they count as used in statfs (f_bfree and
 * f_bavail rise as they are freed).  An operation short of space releases
 * queued trees first, so deleting on a full pool still makes room at
 * once.
 */

/* Blocks of work one background step does: about 0.15-0.2 ms of write
 * lock (4096 took 0.6-0.7 ms, and readers of other files waited for it). */
#define RFS_RECLAIM_STEP 1024u

/*
 * Release queued trees: about budget block references in one operation
 * (taking and dropping the pool write lock around it), or, with budget 0,
 * everything, in operations of RFS_RECLAIM_STEP.  Returns the estimate of
 * blocks still queued (0 exactly when the queue is empty) or -errno
 * (-EROFS on a read-only fs with a non-empty queue).
 */
int64_t rfs_fs_reclaim(rfs_fs *fs, uint64_t budget);

/* fn(arg) is called whenever a deletion queued a tree, with the pool
 * write lock held: it must only wake whoever calls rfs_fs_reclaim.  Set
 * it before serving requests. */
void rfs_fs_set_queued_hook(rfs_fs *fs, void (*fn)(void *arg), void *arg);

struct rfs_fs_reclaim_stat {
	uint64_t blocks; /* estimate of blocks still to free; >= trees */
	uint64_t trees;  /* trees queued */
};
/* What is still queued, O(1) under the read lock. */
int rfs_fs_reclaim_status(rfs_fs *fs, struct rfs_fs_reclaim_stat *st);

/* ---- names --------------------------------------------------------------- */

/* Look name up in directory parent; +1 lookup reference on *out. */
int rfs_fs_lookup(rfs_fs *fs, rfs_nodeid parent, const char *name,
		  rfs_nodeid *out, struct stat *st);

/* Resolve a slash-separated path from the root (tests and tools).  Does
 * not follow symlinks.  +1 lookup reference on *out. */
int rfs_fs_resolve(rfs_fs *fs, const char *path, rfs_nodeid *out,
		   struct stat *st);

/* Drop n lookup references. */
void rfs_fs_forget(rfs_fs *fs, rfs_nodeid node, uint64_t n);

/* Number of nodes currently known (tests: leak checks). */
size_t rfs_fs_node_count(rfs_fs *fs);

/* ---- attributes ---------------------------------------------------------- */

int rfs_fs_getattr(rfs_fs *fs, rfs_nodeid node, struct stat *st);

/* Bits of rfs_fs_setattr's to_set (same values as FUSE_SET_ATTR_*). */
enum {
	RFS_SET_MODE = 1 << 0,
	RFS_SET_UID = 1 << 1,
	RFS_SET_GID = 1 << 2,
	RFS_SET_SIZE = 1 << 3,
	RFS_SET_ATIME = 1 << 4,
	RFS_SET_MTIME = 1 << 5,
	RFS_SET_ATIME_NOW = 1 << 7,
	RFS_SET_MTIME_NOW = 1 << 8,
	RFS_SET_CTIME = 1 << 10,
};

/*
 * Change the attributes named by to_set, taking the values from in
 * (st_mode permission bits, st_uid, st_gid, st_size, st_atim, st_mtim,
 * st_ctim).  ctime is set to now for every change.  Changing the size
 * of a directory gives -EISDIR.  *out (may be NULL) receives the result.
 * Permission rules (who may chown) are the caller's business (the FUSE
 * mount uses default_permissions, so the kernel enforces them).
 */
int rfs_fs_setattr(rfs_fs *fs, rfs_nodeid node, const struct stat *in,
		   int to_set, struct stat *out);

/*
 * The privileges a change of a regular file takes away, as Linux's
 * file_remove_privs: the set-user-ID bit, the set-group-ID bit when the
 * group may execute, and the security.capability xattr.  *found says
 * whether node has any of them (false for other file types); with apply
 * they are removed (ctime changes), else only looked for (a read: cheap
 * enough for every write).  Whether the caller may keep them
 * (CAP_FSETID) is the caller's business.  0 or a negative errno.
 */
int rfs_fs_kill_priv(rfs_fs *fs, rfs_nodeid node, bool apply, bool *found);

/* ---- creating and removing --------------------------------------------- */

/*
 * Create name in parent: a regular file, fifo, socket, character or block
 * device, per the S_IFMT bits of mode (0 means a regular file).  Owner
 * is ctx's uid; group is ctx's gid, or parent's when parent is set-gid.
 * A default ACL of parent is inherited (POSIX.1e rules: it becomes the
 * new inode's access ACL, masked by mode, and a new directory's default
 * ACL); without one, ctx->umask is applied to mode.
 * -EEXIST when the name exists, -ENAMETOOLONG over RFS_NAME_MAX.
 */
int rfs_fs_mknod(rfs_fs *fs, const struct rfs_ctx *ctx, rfs_nodeid parent,
		 const char *name, mode_t mode, dev_t rdev, rfs_nodeid *out,
		 struct stat *st);

/* Same as rfs_fs_mknod for a regular file. */
int rfs_fs_create(rfs_fs *fs, const struct rfs_ctx *ctx, rfs_nodeid parent,
		  const char *name, mode_t mode, rfs_nodeid *out,
		  struct stat *st);

/* Create a directory (inherits set-gid from parent). */
int rfs_fs_mkdir(rfs_fs *fs, const struct rfs_ctx *ctx, rfs_nodeid parent,
		 const char *name, mode_t mode, rfs_nodeid *out,
		 struct stat *st);

/* Create a symlink to target (1..RFS_SYMLINK_MAX bytes). */
int rfs_fs_symlink(rfs_fs *fs, const struct rfs_ctx *ctx, rfs_nodeid parent,
		   const char *name, const char *target, rfs_nodeid *out,
		   struct stat *st);

/*
 * O_TMPFILE: a new regular file with no name (nlink 0), made by ctx as if
 * in directory parent (owner, set-gid group and default ACL as for
 * rfs_fs_create; the directory itself does not change).  +1 lookup
 * reference on *out; the inode lives while that or an open handle does
 * (it is freed at the next mount after a crash), unless rfs_fs_link gives
 * it a name first, which is allowed once.
 */
int rfs_fs_tmpfile(rfs_fs *fs, const struct rfs_ctx *ctx, rfs_nodeid parent,
		   mode_t mode, rfs_nodeid *out, struct stat *st);

/* Read a symlink's target into buf (NUL-terminated, truncated to size);
 * returns the target's full length. */
int rfs_fs_readlink(rfs_fs *fs, rfs_nodeid node, char *buf, size_t size);

/* New name newname in newparent for node (not a directory: -EPERM; an
 * inode whose last name is gone: -ENOENT, except once for one made by
 * rfs_fs_tmpfile).  +1 lookup reference on node. */
int rfs_fs_link(rfs_fs *fs, rfs_nodeid node, rfs_nodeid newparent,
		const char *newname, struct stat *st);

/* Remove a non-directory name. */
int rfs_fs_unlink(rfs_fs *fs, rfs_nodeid parent, const char *name);

/* Remove an empty directory (-ENOTEMPTY otherwise). */
int rfs_fs_rmdir(rfs_fs *fs, rfs_nodeid parent, const char *name);

/* rename flags (same values as RENAME_NOREPLACE / RENAME_EXCHANGE /
 * RENAME_WHITEOUT of renameat2). */
enum {
	RFS_RENAME_NOREPLACE = 1,
	RFS_RENAME_EXCHANGE = 2,
	RFS_RENAME_WHITEOUT = 4,
};

/*
 * Rename, POSIX rules: replaces an existing target of the same kind
 * (an empty directory for a directory), -EINVAL when moving a directory
 * below itself, -EEXIST with RFS_RENAME_NOREPLACE, swaps both with
 * RFS_RENAME_EXCHANGE (-ENOENT when either is missing).
 * RFS_RENAME_WHITEOUT (what overlayfs uses on its upper layer) leaves a
 * whiteout at the old name in the same atomic step: a new character
 * device 0/0, mode 0, owned by ctx's uid/gid (root when ctx is NULL).  It
 * combines with RFS_RENAME_NOREPLACE, not with RFS_RENAME_EXCHANGE
 * (-EINVAL).  The caller checks the privilege (Linux wants CAP_MKNOD).
 */
int rfs_fs_rename(rfs_fs *fs, const struct rfs_ctx *ctx, rfs_nodeid parent,
		  const char *name, rfs_nodeid newparent, const char *newname,
		  unsigned flags);

/*
 * Directory listing from offset off (0 = start).  Calls fn for ".", ".."
 * and every entry, with st filled with st_ino and st_mode (and, when
 * plus is true, all attributes and a new lookup reference on *node,
 * which the callback keeps or the caller forgets).  next_off resumes
 * after that entry; offsets stay valid across changes to the directory.
 * fn returns non-zero to stop (the entry it was given then counts as not
 * consumed and gets no lookup reference).
 */
typedef int (*rfs_dir_fn)(void *arg, const char *name, const struct stat *st,
			  rfs_nodeid node, uint64_t next_off);
int rfs_fs_readdir(rfs_fs *fs, rfs_nodeid dir, uint64_t off, bool plus,
		   rfs_dir_fn fn, void *arg);

/* ---- open files and data ----------------------------------------------- */

/* Count an open handle on node (keeps an unlinked inode alive). */
int rfs_fs_open_node(rfs_fs *fs, rfs_nodeid node);
/* Drop an open handle. */
void rfs_fs_release(rfs_fs *fs, rfs_nodeid node);

/* Read up to size bytes at off; returns bytes read (0 at or past EOF).
 * Every block is verified against its checksum: -EIO on a mismatch. */
ssize_t rfs_fs_read(rfs_fs *fs, rfs_nodeid node, void *buf, size_t size,
		    uint64_t off);

/* Write size bytes at off (copy-on-write: the blocks written are new);
 * returns bytes written, short only when the pool filled up midway
 * (-ENOSPC when nothing could be written). */
ssize_t rfs_fs_write(rfs_fs *fs, rfs_nodeid node, const void *buf,
		     size_t size, uint64_t off);

/* fallocate modes: 0, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE |
 * FALLOC_FL_KEEP_SIZE, FALLOC_FL_ZERO_RANGE [| KEEP_SIZE]; others give
 * -EOPNOTSUPP. */
int rfs_fs_fallocate(rfs_fs *fs, rfs_nodeid node, int mode, uint64_t off,
		     uint64_t len);

/* SEEK_DATA / SEEK_HOLE from off; *out receives the offset.  -ENXIO when
 * off is at or past EOF (or no data follows, for SEEK_DATA). */
int rfs_fs_lseek(rfs_fs *fs, rfs_nodeid node, uint64_t off, int whence,
		 uint64_t *out);

/*
 * copy_file_range: make len bytes of dst at off_out equal to src at
 * off_in, sharing whole blocks (copy-on-write afterwards) and copying
 * only partial head and tail blocks.  Returns the bytes copied (short at
 * src EOF, 0 at or past it).  Cloning a whole file onto an empty or
 * shorter destination is O(1) whatever the number of extents.
 * Overlapping ranges of the same file give -EINVAL.
 */
ssize_t rfs_fs_clone_range(rfs_fs *fs, rfs_nodeid src, uint64_t off_in,
			   rfs_nodeid dst, uint64_t off_out, uint64_t len);

/* Make dst (a regular file) a clone of the whole of src: same data and
 * size, O(1), atomic.  dst keeps its own attributes and xattrs. */
int rfs_fs_clone_file(rfs_fs *fs, rfs_nodeid src, rfs_nodeid dst);

/* One extent of a file, for rfs_fs_extents. */
struct rfs_extent_info {
	uint64_t logical;  /* file offset, bytes */
	uint64_t physical; /* pool offset, bytes */
	uint64_t length;   /* bytes */
	uint64_t shared;   /* blocks of it with a reference count >= 2 */
	bool unwritten;    /* preallocated, reads as zeros */
	/* The file's data is kept in its inode record (a tiny file): the
	 * only extent, length = the file size, physical 0, in no block. */
	bool inline_data;
};
/* Calls fn for every extent of a regular file, in order (fn returns
 * non-zero to stop). */
int rfs_fs_extents(rfs_fs *fs, rfs_nodeid node,
		   int (*fn)(void *arg, const struct rfs_extent_info *e),
		   void *arg);
/* The bytes of a file whose data is inline (rfs_fs_extents reports one
 * extent with inline_data), up to size of them, read with no side effect
 * (no atime update, unlike rfs_fs_read): their number, -ENODATA when the
 * file's data is not inline, -ESTALE for an unknown node. */
ssize_t rfs_fs_inline_data(rfs_fs *fs, rfs_nodeid node, void *buf, size_t size);

/* ---- xattrs ------------------------------------------------------------- */

/*
 * Names (as ext4 answers): user., trusted. and security. followed by at
 * least one byte, system.posix_acl_access and system.posix_acl_default;
 * -ERANGE for an empty name or one over RFS_XATTR_NAME_MAX bytes, -EINVAL
 * for a prefix alone ("user."), -EOPNOTSUPP for any other namespace
 * (getxattr and removexattr still reach such a name stored by an older
 * version).  Who may use trusted./security. is checked by the kernel.
 */

/* flags: XATTR_CREATE / XATTR_REPLACE or 0.  -E2BIG for a value over
 * RFS_XATTR_MAX.  The ACL names take the kernel's ACL format, checked as
 * the kernel does (-EINVAL when malformed, -EOPNOTSUPP for a version
 * other than 2; an empty value or an ACL without entries removes the
 * ACL; a default ACL on a non-directory is -EACCES).  Setting the access
 * ACL sets the mode bits it implies (an ACL saying no more than the mode
 * bits is not stored), and clears the set-gid bit when ctx is neither in
 * the file's group (gid or groups) nor holds CAP_FSETID, as Linux's
 * posix_acl_update_mode (ctx NULL: a caller with CAP_FSETID); chmod
 * updates the access ACL. */
int rfs_fs_setxattr(rfs_fs *fs, const struct rfs_ctx *ctx, rfs_nodeid node,
		    const char *name, const void *val, size_t size, int flags);
/* Returns the value's length; copies it when size is large enough (else
 * -ERANGE); size 0 only asks for the length.  -ENODATA when absent. */
ssize_t rfs_fs_getxattr(rfs_fs *fs, rfs_nodeid node, const char *name,
			void *val, size_t size);
/* NUL-separated names; same size rules as rfs_fs_getxattr. */
ssize_t rfs_fs_listxattr(rfs_fs *fs, rfs_nodeid node, char *list,
			 size_t size);
/* -ENODATA when absent, except for the ACL names (removing an absent ACL
 * succeeds, as on ext4). */
int rfs_fs_removexattr(rfs_fs *fs, rfs_nodeid node, const char *name);

/*
 * Find the node of an inode by its st_ino, when the node is known (it is
 * while some process holds the file open or the kernel caches it).  No
 * lookup reference is added.  -ENOENT when unknown.
 */
int rfs_fs_find_ino(rfs_fs *fs, uint64_t st_ino, rfs_nodeid *out);

/* ---- scrub: read and verify every data block in use ---------------------- */

/*
 * A scrub walks every volume listed in the catalog (the namespace from
 * the root, then the volume's link table of hard-linked inodes), reads
 * every data block the files use and verifies it against the crc32c its
 * extent record carries, and records every damaged block with every file
 * that uses it (a cloned block: each clone; a hard-linked inode: each of
 * its names).  Tree nodes are verified as the walk reads them.
 *
 * It runs in steps: each rfs_scrub_step holds the pool's read lock for a
 * bounded amount of work and releases it, so a mounted filesystem keeps
 * serving.  The position between steps is a path of keys (volume id,
 * directory entry keys, file key), re-resolved from the volume root at
 * every step, so writers may change anything in between: a directory
 * removed meanwhile is skipped, and a file renamed across the position
 * may be visited twice or not at all (blocks written while the scrub
 * runs were checksummed as they were written).  Every block is verified
 * against the record that references it at that moment, so concurrent
 * changes never show up as damage.
 *
 * One rfs_scrub must not be stepped from two threads at once.
 */
typedef struct rfs_scrub rfs_scrub;

/* Progress and summary (all counts since rfs_scrub_begin). */
struct rfs_scrub_stats {
	uint64_t data_blocks;    /* distinct data blocks read and verified */
	uint64_t damaged_blocks; /* of them: unreadable or failing their checksum */
	uint64_t files_affected; /* distinct inodes using a damaged block */
	uint64_t meta_errors;    /* trees (volume, directory, file) not readable */
	uint64_t volumes;        /* volumes walked */
	uint64_t dirs;           /* directories walked */
	uint64_t files;          /* files, symlinks and other inodes visited */
	uint64_t used_blocks;    /* blocks in use when the scrub began (progress) */
	uint64_t records;        /* entries of the report (rfs_scrub_record) */
	uint32_t done;           /* 1 once every volume was walked */
	uint32_t pad;
};

/* Kinds of report entries. */
enum {
	RFS_SCRUB_DATA = 1, /* a damaged data block and one file using it */
	RFS_SCRUB_META = 2, /* a tree that could not be read (the log names the block) */
};

/* One entry of the report: a damaged block and one of its users (a block
 * with several users has one entry each), or a tree that could not be
 * read.  Entries come sorted by kind, block, volume and path. */
struct rfs_scrub_record {
	uint32_t kind;    /* RFS_SCRUB_DATA or RFS_SCRUB_META */
	int32_t err;      /* -EBADMSG: checksum mismatch; -EIO etc.: read error */
	uint64_t blocknr; /* DATA: the pool block; META: 0 */
	uint64_t volume;  /* catalog id of the volume */
	uint64_t ino;     /* inode number in the volume (0: not known) */
	uint64_t offset;  /* DATA: byte offset of the block in the file */
	const char *path; /* "/dir/name" inside the volume; "" for the volume
			   * itself; NULL for an inode without a name found
			   * (e.g. unlinked while open).  Valid until
			   * rfs_scrub_end. */
};

/* Start a scrub of fs (mounted or opened read-only). */
int rfs_scrub_begin(rfs_fs *fs, rfs_scrub **out);

/*
 * Do up to about budget units of work (one unit per data block read or
 * item visited) under the pool's read lock, then release it.  Before
 * taking the read lock it lets a writer that is waiting go first.
 * Returns 1 while work remains, 0 once the walk is done, or a negative
 * errno when the scrub cannot go on (-ENOMEM; damage is never an error).
 */
int rfs_scrub_step(rfs_scrub *s, uint64_t budget);

/* Progress and summary so far. */
void rfs_scrub_get_stats(rfs_scrub *s, struct rfs_scrub_stats *st);

/* Report entry i (0 <= i < records) of a finished scrub; -ENOENT past
 * the end, -EBUSY while the walk is not done. */
int rfs_scrub_record(rfs_scrub *s, uint64_t i, struct rfs_scrub_record *out);

/* Free the scrub. */
void rfs_scrub_end(rfs_scrub *s);
/* Generation of every inode but the root (0): inode numbers are never
 * reused within a volume. */
#define RFS_GENERATION 1u

/*
 * Find an inode by its st_ino and generation, whether or not a node of it
 * is known (what a file handle needs: open_by_handle_at, NFS): through the
 * node table, the link table, or the volume's back-pointer index.  +1
 * lookup reference on *out.  -ESTALE when the inode is gone, its
 * generation differs, or st_ino is not of this volume.
 *
 * The same happens when rfs_fs_lookup is asked for "." or ".." of a node
 * id it does not know: node ids are (volume << 48) | inode number (the
 * st_ino; RFS_ROOT_NODE for the root), stable across remounts, so a node
 * id the kernel kept in a file handle still names its inode.
 */
int rfs_fs_lookup_ino(rfs_fs *fs, uint64_t st_ino, uint32_t generation,
		      rfs_nodeid *out, struct stat *st);

/* ---- diff: what changed between two directories --------------------------- */

/*
 * The paths added, removed, modified or renamed between directory a and
 * directory b (`reflinkfs diff A B`), relative to them.  Only what differs
 * is walked: entry trees are compared with rfs_tree_diff, so a directory
 * or file whose record and subtree are the same on both sides (as
 * everything a snapshot has not changed since) costs nothing, and the
 * cost is O(what changed).  Below a removed or added directory every path
 * is reported.
 *
 * A file or directory is the same on both sides when it has the same name
 * (whatever its inode number: two copies made by cp -a compare by
 * content), or the same inode, born at the same time, under another
 * name: a rename (R).  Inode numbers are shared by a snapshot and its
 * source, two snapshots of one source, and a directory and one inside it;
 * two disjoint directories of one volume share none, so between them a
 * rename shows as D and A.  Renames are found through the volume's
 * back-pointer index (where a volume has none yet, as snapshots, by
 * waiting for the partner).  Hard-linked inodes are paired by name only;
 * a change to one shows at each of its names.
 * Compared: file type and permission bits, owner, group, size (not of
 * directories), mtime, device number, xattrs (ACLs included), and the
 * data, byte for byte where the extent maps differ (blocks shared by both
 * are equal without reading them); a symlink's target counts as its data.
 * Not compared: atime, ctime, birth time, link count.
 *
 * The diff is computed at rfs_diff_begin, under the pool's read lock
 * (readers go on; writers wait for it), so it is one consistent state.
 */
typedef struct rfs_diff rfs_diff;

/* rfs_diff_record.op */
enum {
	RFS_DIFF_ADDED = 'A',    /* path is only in b */
	RFS_DIFF_REMOVED = 'D',  /* path is only in a */
	RFS_DIFF_MODIFIED = 'M', /* path is in both; what says what differs */
	RFS_DIFF_RENAMED = 'R',  /* old_path in a is path in b; what may be set */
};

/* rfs_diff_record.what */
enum {
	RFS_DIFF_DATA = 1u << 0,  /* contents (a symlink's target) */
	RFS_DIFF_XATTR = 1u << 1, /* extended attributes, ACLs included */
	RFS_DIFF_MODE = 1u << 2,  /* permission bits */
	RFS_DIFF_UID = 1u << 3,
	RFS_DIFF_GID = 1u << 4,
	RFS_DIFF_SIZE = 1u << 5,
	RFS_DIFF_MTIME = 1u << 6,
	RFS_DIFF_RDEV = 1u << 7,  /* device number of a device node */
};
#define RFS_DIFF_META (RFS_DIFF_MODE | RFS_DIFF_UID | RFS_DIFF_GID | RFS_DIFF_SIZE | \
		       RFS_DIFF_MTIME | RFS_DIFF_RDEV)

/* One change.  Records come sorted by path (bytewise). */
struct rfs_diff_record {
	char op;              /* RFS_DIFF_ADDED ... */
	uint32_t what;        /* M, R: RFS_DIFF_* bits (R: 0 = only moved) */
	uint32_t mode;        /* st_mode: in b (A, M, R), in a (D) */
	uint64_t ino;         /* st_ino on the same side */
	const char *path;     /* relative to b (A, M, R) or a (D); "." is the
			       * directory itself */
	const char *old_path; /* R: relative to a; else NULL */
};

/* Summary of a diff. */
struct rfs_diff_stats {
	uint64_t records;       /* rfs_diff_record entries */
	uint64_t added, removed, modified, renamed;
	uint64_t dirs_compared; /* directory pairs whose entries were diffed */
	uint64_t dirs_listed;   /* removed or added directories listed */
	uint64_t files_compared;
	uint64_t node_reads;    /* tree nodes read (rfs_pool_stats.block_reads) */
};

/* Diff directory a against directory b: -ENOTDIR when either is not a
 * directory, -ESTALE for an unknown node, -EIO/-EUCLEAN when a tree could
 * not be read (logged with the block). */
int rfs_diff_begin(rfs_fs *fs, rfs_nodeid a, rfs_nodeid b, rfs_diff **out);
void rfs_diff_get_stats(rfs_diff *d, struct rfs_diff_stats *st);
/* Record i (0 <= i < records); -ENOENT past the end.  The strings stay
 * valid until rfs_diff_end. */
int rfs_diff_record(rfs_diff *d, uint64_t i, struct rfs_diff_record *out);
void rfs_diff_end(rfs_diff *d);

/* ---- du: the space below a path ------------------------------------------- */

/*
 * How much space a directory or file takes, and how much of it is its own
 * (`reflinkfs du`), in the sense of `btrfs filesystem du` and compsize but
 * with exclusive meaning "freed if PATH were deleted":
 *
 *   total      the data blocks of every inode below PATH (PATH included),
 *              summed per inode as st_blocks does: a block two files share
 *              counts twice.  Each inode counts once (hard links), but the
 *              same file in a directory and in a snapshot of it are two
 *              inodes and count twice, as du counts them.
 *   set        the distinct data blocks those inodes reference: a block
 *              shared by two files below PATH counts once.
 *   exclusive  the part of `set` that nothing outside PATH references: no
 *              clone, range clone, snapshot, hard link or snapshot being
 *              deleted in the background outside PATH shares it, so
 *              deleting PATH would free it.  Sharing inside PATH (a file
 *              and its clone both below PATH) keeps a block exclusive.
 *   shared     set - exclusive: distinct blocks below PATH that something
 *              outside PATH also references.
 *   meta_set, meta_exclusive
 *              the same two figures for the tree nodes below PATH (entry
 *              trees of its directories, extent/xattr trees of its files,
 *              hard-linked inodes' trees); not counted: the node of PATH's
 *              parent holding its entry, the link-table and index nodes
 *              holding records, volume catalog trees.
 *
 * Blocks are RFS_BLOCK_SIZE bytes; preallocated (unwritten) blocks count,
 * holes do not, and neither does a tiny file's data kept in its record
 * (rfs_extent_info.inline_data): it is in no data block but in its
 * directory's entries tree (meta_*), though its st_blocks counts its
 * bytes.  A hard-linked inode belongs to PATH only when every name
 * it has is below PATH; inodes without a name (unlinked while open) are
 * not counted.  A block is shared with the outside when its refcount
 * exceeds the pointers to it from PATH's own part, where a pointer held
 * in a node that is itself shared (any node on the path from the volume
 * root down to it with a count >= 2, as sharing is lazy) is not PATH's
 * own: the graph of shared nodes met is solved at the end (see
 * ARCHITECTURE.md).  Cost: every directory entry below PATH once per name
 * path (a snapshot's entries are walked again, not its files' extent
 * trees), every tree node and extent record below PATH once, one
 * refcount lookup per node and per run of equal counts in an extent;
 * memory O(directory depth + shared nodes and shared extent pieces met +
 * hard-linked inodes).
 *
 * It runs in steps like the scrub: each rfs_du_step holds the pool's read
 * lock for a bounded amount of work, and the position between steps is a
 * path of keys resolved again from PATH at every step.  Changes made
 * between steps may be counted or not, so figures of a tree that changed
 * meanwhile are approximate: `changes` says how many operations ran
 * during the walk (0: the figures are exact for one state).  One rfs_du
 * must not be stepped from two threads at once.
 */
typedef struct rfs_du rfs_du;

struct rfs_du_stats {
	uint64_t total;          /* bytes, see above */
	uint64_t set;            /* bytes (known when done) */
	uint64_t exclusive;      /* bytes (known when done) */
	uint64_t shared;         /* bytes: set - exclusive (known when done) */
	uint64_t meta_set;       /* bytes of tree nodes (known when done) */
	uint64_t meta_exclusive; /* bytes of tree nodes (known when done) */
	uint64_t files;          /* inodes that are not directories */
	uint64_t dirs;           /* directories, PATH included */
	uint64_t nodes;          /* tree nodes read so far (progress) */
	uint64_t changes;        /* fs operations that ran during the walk */
	uint32_t done;           /* 1 once the figures are final */
	uint32_t pad;
};

/* Start a du of node (a directory or any other inode; PATH).  The node is
 * held open until rfs_du_end.  -ESTALE for an unknown node. */
int rfs_du_begin(rfs_fs *fs, rfs_nodeid node, rfs_du **out);

/*
 * Do about budget units of work (a tree node or item visited, a run of an
 * extent) under the pool's read lock, letting a waiting writer go first.
 * Returns 1 while work remains, 0 once the figures are final, or a
 * negative errno: -ESTALE when PATH was removed, -ENOMEM, -EIO/-EUCLEAN
 * for a tree that could not be read (logged with the block).
 */
int rfs_du_step(rfs_du *d, uint64_t budget);

/* Figures so far (total, files, dirs, nodes grow as the walk goes; the
 * others are set when done). */
void rfs_du_get_stats(rfs_du *d, struct rfs_du_stats *st);

/* Free the du. */
void rfs_du_end(rfs_du *d);

/* ---- ioctls on files of a mounted reflinkfs ------------------------------ */

#include <linux/ioctl.h>

/* Issued on the destination (open for writing): make it a clone of the
 * source, which the caller holds open for reading as src_fd (its st_ino
 * in src_ino, checked against the fd).  O(1), atomic. */
struct rfs_ioc_clone {
	int64_t src_fd;
	uint64_t src_ino;
};
#define RFS_IOC_CLONE _IOW('R', 1, struct rfs_ioc_clone)

/* Sharing summary of a file. */
struct rfs_ioc_stat {
	uint64_t size;           /* bytes */
	uint64_t blocks;         /* data blocks referenced */
	uint64_t extents;        /* extent records */
	uint64_t shared_blocks;  /* blocks shared with another file or clone */
	uint64_t unwritten_blocks;
};
#define RFS_IOC_STAT _IOR('R', 2, struct rfs_ioc_stat)

/* A page of a file's extents, from file offset `from`. */
#define RFS_IOC_EXTENTS_MAX 64
struct rfs_ioc_extents {
	uint64_t from;  /* in: first file offset wanted */
	uint32_t count; /* out: entries filled (fewer than MAX: the end) */
	uint32_t pad;
	struct {
		uint64_t logical, physical, length, shared;
		uint32_t flags; /* 1 = unwritten, 2 = inline data (in no block) */
		uint32_t pad;
	} e[RFS_IOC_EXTENTS_MAX];
};
#define RFS_IOC_EXTENTS _IOWR('R', 3, struct rfs_ioc_extents)

/* Issued on the destination's parent directory: snapshot the directory
 * the caller holds open as src_fd (its st_ino in src_ino) as entry name
 * (NUL-terminated).  Out: st_ino of the new root. */
struct rfs_ioc_snapshot {
	int64_t src_fd;
	uint64_t src_ino;
	uint32_t flags; /* RFS_SNAP_RDONLY */
	uint32_t pad;
	uint64_t out_ino;
	char name[256];
};
#define RFS_IOC_SNAPSHOT _IOWR('R', 11, struct rfs_ioc_snapshot)

/* Issued on the parent directory: delete the snapshot rooted at entry
 * name (NUL-terminated). */
struct rfs_ioc_snapdel {
	char name[256];
};
#define RFS_IOC_SNAPSHOT_DELETE _IOW('R', 12, struct rfs_ioc_snapdel)

/* A page of the volume list: volumes with id > after, in id order (the
 * top volume is id 1).  count < RFS_IOC_VOLUMES_MAX: the end. */
#define RFS_IOC_VOLUMES_MAX 1
struct rfs_ioc_volumes {
	uint64_t after;
	uint32_t count;
	uint32_t pad;
	struct {
		uint64_t id, parent, source_vol;
		int64_t created;
		uint32_t flags; /* RFS_SNAP_RDONLY */
		uint32_t pad;
		char path[4096]; /* relative to the mount, NUL-terminated */
		/* the source's path at creation, relative to the mount;
		 * empty when not known */
		char source_path[4096];
	} v[RFS_IOC_VOLUMES_MAX];
};
#define RFS_IOC_VOLUMES _IOWR('R', 13, struct rfs_ioc_volumes)

/* Commit: everything done on the mount so far becomes durable (what
 * syncfs would do; the kernel does not forward syncfs to a /dev/fuse
 * daemon).  On any file or directory of the mount. */
#define RFS_IOC_SYNC _IO('R', 4)
/* Follow the kernel's read-only state of the mount now (the mount helper
 * sends it after `mount -o remount,ro|rw`): read-only commits and freezes
 * the pool, read-write thaws it.  EROFS when the mount is read-write but
 * the pool cannot be written (mounted read-only, or a commit failed). */
#define RFS_IOC_MOUNT_STATE _IO('R', 20)

/* Requests the daemon received since it started, per FUSE opcode
 * (count[op] for op < RFS_REQ_OPCODES - 1; the last slot sums every
 * larger opcode).  The request that asks counts itself.  On any file or
 * directory of the mount.  For benchmarks and diagnosis. */
#define RFS_REQ_OPCODES 64
struct rfs_ioc_req_stats {
	uint64_t count[RFS_REQ_OPCODES];
};
#define RFS_IOC_REQ_STATS _IOR('R', 40, struct rfs_ioc_req_stats)

/* Time the daemon spent on requests since it started, per FUSE opcode
 * (same slots as rfs_ioc_req_stats): from the end of the read that
 * brought the request to the start of the write of its reply, in
 * nanoseconds; requests without a reply (FORGET) count nothing.  The
 * round trip through the kernel and the wake-ups are not in it.  On any
 * file or directory of the mount.  For benchmarks and diagnosis. */
struct rfs_ioc_req_times {
	uint64_t ns[RFS_REQ_OPCODES];
	/* Requests read by another worker thread than the request before
	 * (each such switch woke a sleeping worker; src/fuse/reader.c). */
	uint64_t switches;
};
#define RFS_IOC_REQ_TIMES _IOR('R', 41, struct rfs_ioc_req_times)

/*
 * Where READ requests waited inside the daemon, while counting is on
 * (RFS_READ_WAITS_ON; off by default) since the last reset: for the
 * clone reader-wait benchmark (bench/README.md), so that what a slow read
 * waited for shows whatever the machine's load.  Times in ns; lock waits
 * per enum rfs_lockw_kind (pool.h: time spent blocked acquiring a lock
 * someone else held).  A READ's time runs from the handler's start to
 * its reply (sending excluded); its time on the CPU is the thread's CPU
 * clock.  wr: the pool's write-lock spans per holder's name (struct
 * rfs_wrhold, always recorded) since the last reset.  On any file or
 * directory of the mount.
 */
#define RFS_READ_WAITS_RESET 1u /* empty the counts after the copy */
#define RFS_READ_WAITS_ON 2u    /* start counting READs */
#define RFS_READ_WAITS_OFF 4u   /* stop (the default: no clock read per READ) */
struct rfs_ioc_read_waits {
	uint32_t flags; /* in: RFS_READ_WAITS_* */
	uint32_t on;    /* out: READs are being counted */
	uint64_t reads;       /* READ requests counted */
	uint64_t over_1ms;    /* READs that took over 1 ms in the daemon */
	uint64_t waited_1ms;  /* READs whose lock waits summed over 1 ms */
	uint64_t offcpu_1ms;  /* READs off the CPU over 1 ms, lock waits not
			       * counted (preempted, or waiting for I/O) */
	uint64_t max_ns;      /* the longest READ */
	uint64_t max_cpu_ns;  /* ... its time on the CPU */
	uint64_t max_read_wait_ns[RFS_LOCKW_KINDS]; /* ... its lock waits */
	uint64_t max_wait_ns[RFS_LOCKW_KINDS];      /* the longest of each kind */
	uint64_t sum_wait_ns[RFS_LOCKW_KINDS];      /* all READs' */
	struct rfs_wrhold wr[RFS_WRHOLD_SLOTS];
};
#define RFS_IOC_READ_WAITS _IOWR('R', 44, struct rfs_ioc_read_waits)

/*
 * Scrub the whole mount (`reflinkfs scrub`), in steps.  Issued on a
 * directory of the mount (the mount point) that the caller opened: the
 * scrub belongs to that open directory, the first step starts it, and
 * closing the directory ends it (also when the caller dies).  Each step
 * works for a bounded time (about 0.2 s), holding the pool's read lock
 * only in short pieces, and returns the progress; repeat until st.done,
 * then fetch the report with RFS_IOC_SCRUB_REPORT.  Only root and the
 * user who mounted may scrub (the report names every file): -EPERM.
 */
struct rfs_ioc_scrub_step {
	struct rfs_scrub_stats st; /* out */
};
#define RFS_IOC_SCRUB_STEP _IOR('R', 5, struct rfs_ioc_scrub_step)

/* A page of the report of a finished scrub, from entry `first`: count
 * entries packed in buf, each a struct rfs_ioc_scrub_rec followed by
 * pathlen bytes of path (no NUL), the whole padded to 8 bytes.  count 0:
 * past the end.  Paths longer than RFS_IOC_SCRUB_PATH_MAX are cut. */
#define RFS_IOC_SCRUB_PAGE 12288
#define RFS_IOC_SCRUB_PATH_MAX 4096
struct rfs_ioc_scrub_rec {
	uint32_t kind;    /* RFS_SCRUB_DATA / RFS_SCRUB_META */
	int32_t err;      /* as in struct rfs_scrub_record */
	uint64_t blocknr;
	uint64_t volume;
	uint64_t ino;
	uint64_t offset;
	uint32_t pathlen; /* bytes of path following */
	uint32_t flags;   /* 1: no name known (path empty) */
};
struct rfs_ioc_scrub_report {
	uint64_t first; /* in: first entry wanted */
	uint32_t count; /* out: entries in buf */
	uint32_t pad;
	uint8_t buf[RFS_IOC_SCRUB_PAGE];
};
#define RFS_IOC_SCRUB_REPORT _IOWR('R', 6, struct rfs_ioc_scrub_report)

/*
 * Diff two directories of the mount (`reflinkfs diff A B`), in the style
 * of the scrub ioctls.  Issued on directory A, opened by the caller: the
 * diff belongs to that open directory, and closing it frees the result.
 * RFS_IOC_DIFF_START names B by a descriptor the caller holds open for
 * reading (its st_ino in b_ino, checked against the descriptor, as for
 * RFS_IOC_CLONE; -EXDEV when B is not on this mount), computes the whole
 * diff (rfs_diff_begin: one consistent state) and returns its summary;
 * RFS_IOC_DIFF_REPORT then returns its records in pages, from record
 * `first` (an index: fetching every page costs O(records) in all).  Only
 * root and the user who mounted may diff (the result names files in
 * directories the caller may not be allowed to read): -EPERM.
 */
struct rfs_ioc_diff_start {
	int64_t b_fd;             /* in */
	uint64_t b_ino;           /* in */
	struct rfs_diff_stats st; /* out */
};
#define RFS_IOC_DIFF_START _IOWR('R', 7, struct rfs_ioc_diff_start)

/* A page of the records: count records packed in buf, each a struct
 * rfs_ioc_diff_rec followed by pathlen bytes of path and oldlen bytes of
 * old path (no NULs), the whole padded to 8 bytes.  count 0: past the
 * end.  A path longer than RFS_IOC_DIFF_PATH_MAX bytes is cut there and
 * flagged. */
#define RFS_IOC_DIFF_PAGE 12288
#define RFS_IOC_DIFF_PATH_MAX 4096
enum {
	RFS_IOC_DIFF_CUT = 1, /* path or old path was cut */
};
struct rfs_ioc_diff_rec {
	uint8_t op;     /* as rfs_diff_record.op */
	uint8_t flags;  /* RFS_IOC_DIFF_CUT */
	uint16_t pad;
	uint32_t what;
	uint32_t mode;
	uint32_t pathlen;
	uint32_t oldlen; /* 0 unless op is 'R' */
	uint32_t pad2;
	uint64_t ino;
};
struct rfs_ioc_diff_report {
	uint64_t first; /* in: first record wanted */
	uint32_t count; /* out: records in buf */
	uint32_t pad;
	uint8_t buf[RFS_IOC_DIFF_PAGE];
};
#define RFS_IOC_DIFF_REPORT _IOWR('R', 8, struct rfs_ioc_diff_report)

/*
 * du of a file or directory of the mount (`reflinkfs du`), in steps like
 * the scrub.  Issued on a directory the caller opened: PATH is that
 * directory (name empty) or its entry `name` (any kind of file; the
 * caller need not be able to open it).  ino is PATH's st_ino as the
 * caller saw it: a PATH that is another inode now gives -ESTALE.  The du
 * belongs to the open directory: the first step starts it, later steps
 * must name the same PATH (-EINVAL), and closing the directory ends it.
 * Each step works for a bounded time (about 0.2 s), holding the pool's
 * read lock only in short pieces, and returns the figures so far; repeat
 * until st.done.  Only root and the user who mounted may run it (the walk
 * reads directories the caller may not be allowed to read): -EPERM.
 */
struct rfs_ioc_du_step {
	uint64_t ino;           /* in */
	char name[256];         /* in: NUL-terminated, no '/' ("" = the directory) */
	struct rfs_du_stats st; /* out */
};
#define RFS_IOC_DU_STEP _IOWR('R', 24, struct rfs_ioc_du_step)

/* ---- snapshots (volumes) ------------------------------------------------ */

/* rfs_fs_snapshot flags. */
enum { RFS_SNAP_RDONLY = 1u << 0 };

/*
 * Snapshot directory src as a new entry name in directory dstdir: O(1)
 * whatever the size and depth of src's subtree (plus O(hard-linked
 * names) below src when src is not a volume's root, and O(snapshots
 * nested below src)).  Atomic: a point-in-time image with respect to
 * every other call.  The snapshot is a new volume: its inodes keep their
 * numbers within it, st_ino differs (volume << 48 | ino).  With
 * RFS_SNAP_RDONLY nothing below its root can change (-EROFS); the root
 * entry itself can still be renamed or deleted in its parent.  +1 lookup
 * reference on *out (the snapshot's root).  -ENOTDIR when src is not a
 * directory, -EEXIST when name exists, -EROFS when dstdir is in a
 * read-only snapshot.
 */
int rfs_fs_snapshot(rfs_fs *fs, rfs_nodeid src, rfs_nodeid dstdir, const char *name,
		    unsigned flags, rfs_nodeid *out, struct stat *st);

/*
 * Delete the snapshot rooted at entry name of directory dir, whatever it
 * holds: the entry goes at once, with its volume and every snapshot
 * nested below it.  -EINVAL when the entry is not a snapshot's root.
 * Nodes of the deleted volumes read as stale from then on.
 */
int rfs_fs_snapshot_delete(rfs_fs *fs, rfs_nodeid dir, const char *name);

/*
 * Whether caller ctx may access node for mask (R_OK 4, W_OK 2, X_OK 1)
 * as the kernel's generic_permission decides: owner, access ACL (when
 * the group bits allow anything), group (ctx's gid and groups), other;
 * uid 0 may do anything but execute a file without execute bits.  0, or
 * -EACCES.  For operations that bypass the kernel's checks (ioctls).
 */
int rfs_fs_access(rfs_fs *fs, const struct rfs_ctx *ctx, rfs_nodeid node, int mask);

/*
 * Whether caller ctx may remove entry child from directory dir, as the
 * kernel's may_delete: write and search permission on dir (-EACCES), and
 * with dir's sticky bit set, ctx owns dir or child or is root (-EPERM).
 */
int rfs_fs_may_delete(rfs_fs *fs, const struct rfs_ctx *ctx, rfs_nodeid dir,
		      rfs_nodeid child);

/*
 * -EROFS when node is in a read-only snapshot (or the fs is read-only),
 * else 0: what open for writing answers there, as on a read-only mount,
 * rather than failing the writes (or a shared mapping's write-back)
 * later.  -ESTALE for an unknown node.
 */
int rfs_fs_writable(rfs_fs *fs, rfs_nodeid node);

/* One volume, for rfs_fs_volumes. */
struct rfs_volume_info {
	uint64_t id;         /* 1: the top volume (the mount's root) */
	uint64_t parent;     /* volume holding its root entry (0: top) */
	uint64_t source_vol; /* volume its source directory was in */
	int64_t created;     /* seconds since the epoch */
	bool rdonly;
	const char *path;    /* of its root, relative to the mount ("" = root) */
	/* of its source directory when it was made, relative to the mount;
	 * NULL when not known (the top volume, a copy of a nested one, a
	 * source path over 1023 bytes) */
	const char *source_path;
};

/* Calls fn for every volume, the top one first, then in id order
 * (fn returns non-zero to stop). */
int rfs_fs_volumes(rfs_fs *fs, int (*fn)(void *arg, const struct rfs_volume_info *v),
		   void *arg);

/* Blocks of deleted files and snapshots still being freed in the
 * background (rfs_fs_reclaim_status), on any file or directory of the
 * mount.  blocks is 0 exactly when nothing is left. */
struct rfs_ioc_reclaim {
	uint64_t blocks;      /* estimate of blocks still to free */
	uint64_t trees;       /* trees queued */
	uint64_t free_blocks; /* statfs f_bfree now */
	uint64_t reserved[5];
};
/* Number 21: 20 is RFS_IOC_MOUNT_STATE's (numbers stay unique, whatever
 * the direction bits). */
#define RFS_IOC_RECLAIM _IOR('R', 21, struct rfs_ioc_reclaim)

/* ---- whole filesystem --------------------------------------------------- */

/* Space and inode figures, in RFS_BLOCK_SIZE blocks. */
int rfs_fs_statfs(rfs_fs *fs, struct statvfs *st);

/*
 * Check the pool at path (not mounted): the engine's check (every tree,
 * refcount and allocation) plus the filesystem's invariants (records,
 * link counts, extents).  Calls report once per problem; returns the
 * number of problems (0 = clean) or a negative errno when the check
 * could not run.
 */
long rfs_fs_fsck(const char *path,
		 void (*report)(void *arg, const char *what), void *arg);

/*
 * Fault injection (tests): from now on every `every`-th update of the
 * in-memory node of a renamed entry fails as if memory had run out (0:
 * none fails).  The rename itself is done; the node stays at its old
 * place, so calls on it (and below it) give -ESTALE until its new name is
 * looked up again, which moves the node.
 */
void rfs_fs_fail_rename_nodes(rfs_fs *fs, unsigned every);

/* ---- pre-modification events (src/fs/watch.c) ---------------------------- */

/*
 * A watch: a subscriber's marks on files and directory subtrees, and the
 * events they produce.  An event is given BEFORE the first modification
 * of a covered file after its mark was armed, one per file per mark
 * (one-shot: a file is not reported again until marked again).  With
 * RFS_WATCH_BLOCKING the modification waits for rfs_fs_watch_ack (at most
 * the watch's timeout), outside every pool lock: a slow subscriber stalls
 * only the operations on the files it is told about.  Only non-directory
 * inodes get events (a directory's own attribute changes do not).
 * What a subtree mark covers for hard links and snapshots: see
 * docs/ARCHITECTURE.md, "Pre-modification events (fs layer)".
 * All calls are thread-safe; a watch is used by one subscriber.
 */
typedef struct rfs_watch rfs_watch;

enum rfs_premod_kind {           /* what is about to happen to the file */
	RFS_PREMOD_WRITE = 1,    /* write (also a dirty mmap page written back) */
	RFS_PREMOD_TRUNCATE = 2, /* size change by setattr */
	RFS_PREMOD_FALLOCATE = 3,/* fallocate, punch, zero range */
	RFS_PREMOD_ATTR = 4,     /* mode, owner, times */
	RFS_PREMOD_XATTR = 5,    /* set or remove an xattr */
	RFS_PREMOD_RENAME = 6,   /* it is renamed, or replaced by a rename */
	RFS_PREMOD_UNLINK = 7,   /* one of its names is removed */
	RFS_PREMOD_CLONE = 8,    /* a clone / copy_file_range onto it */
	/* Not a file's event: the queue reached its limit
	 * (rfs_fs_watch_limit) and every mark of the watch was disarmed;
	 * modifications from then on were not reported.  Arm the marks
	 * again and rescan what they cover.  mark and ino are 0. */
	RFS_PREMOD_OVERFLOW = 9,
};
/* "write", "truncate", "fallocate", "attr", "xattr", "rename", "unlink",
 * "clone", "overflow"; "unknown" for any other value. */
const char *rfs_premod_kind_name(int kind);

#define RFS_WATCH_BLOCKING 1u /* the modification waits for the ack */
#define RFS_WATCH_PATH_MAX 4096
/* Timeout of a blocked modification when rfs_fs_watch_new gets 0. */
#define RFS_WATCH_TIMEOUT_DEFAULT_MS 30000u
/* Unread events a watch queues before it overflows (rfs_fs_watch_limit). */
#define RFS_WATCH_QUEUE_DEFAULT 65536u

struct rfs_watch_event {
	uint64_t id;   /* this watch's event number: pass to rfs_fs_watch_ack */
	uint64_t mark; /* the mark it came from */
	int kind;      /* enum rfs_premod_kind */
	uint64_t ino;  /* st_ino of the file */
	bool blocking; /* an operation waits for the ack */
	/* path was too long for the event (RFS_WATCH_PATH_MAX with its
	 * NUL) and is cut at a '/': it names the directory below the mark
	 * that holds the file ("" for the marked directory itself). */
	bool cut;
	/* Relative to the marked directory ("a/b/f"); "" when the marked
	 * file itself.  For a hard-linked file (several names), the first
	 * of its names below the mark.  Never a name the subscriber could not list: a file
	 * below a directory it may not read and search gets no event at
	 * all (counted in rfs_watch_stat.hidden). */
	char path[RFS_WATCH_PATH_MAX];
};

/*
 * A new watch for subscriber `who` (its uid, gid and groups are copied,
 * for the permission checks of marks and event paths).  flags: 0 or
 * RFS_WATCH_BLOCKING.  timeout_ms: how long a blocked modification waits
 * for the ack (0: RFS_WATCH_TIMEOUT_DEFAULT_MS).  -EINVAL for unknown
 * flags, -ENOMEM, or the error of eventfd(2).
 */
int rfs_fs_watch_new(rfs_fs *fs, const struct rfs_ctx *who, unsigned flags,
		     unsigned timeout_ms, rfs_watch **out);

/*
 * Mark node: a directory (every non-directory inode below it, at any
 * depth, including files created later and snapshots nested below) or
 * any other inode (that inode).  -EACCES unless `who` is root or may
 * write node (rfs_fs_access); -ESTALE for an unknown node.  The mark is
 * not armed yet: *flush (malloc'd, caller frees; NULL when *nflush is 0)
 * lists the node ids of regular files covered by it that the kernel may
 * hold pages of (looked up or open), so that the caller can make the
 * kernel write their dirty pages back (fuse_lowlevel_notify_inval_inode)
 * before arming; those writes are not reported.  *mark: the mark's id.
 * Marking a node this watch has marked already gives the same mark id
 * (rfs_fs_watch_arm then starts its one-shot round again).
 */
int rfs_fs_watch_mark(rfs_watch *w, const struct rfs_ctx *who, rfs_nodeid node,
		      uint64_t *mark, rfs_nodeid **flush, size_t *nflush);
/* Arm mark: from now on the first modification of each covered file
 * gives one event (one-shot per file until marked and armed again).  A
 * modification running when this returns has either been reported or has
 * finished before it returned.  -ENOENT for an unknown mark. */
int rfs_fs_watch_arm(rfs_watch *w, uint64_t mark);
/* Remove mark (its waiting events stay queued).  -ENOENT when unknown. */
int rfs_fs_watch_unmark(rfs_watch *w, uint64_t mark);

/* The most unread events w queues (0: RFS_WATCH_QUEUE_DEFAULT).  When a
 * modification finds the queue holding that many, it gets no event;
 * instead one RFS_PREMOD_OVERFLOW event is queued and every mark of the
 * watch is disarmed, so no change goes unreported without the subscriber
 * knowing: it must arm its marks again and rescan.  Memory per queued
 * event: about 60 bytes plus the path. */
void rfs_fs_watch_limit(rfs_watch *w, size_t max_events);

/* A descriptor (an eventfd in semaphore mode, owned by the watch) that
 * is readable while events wait.  Poll it; do not read it (next does). */
int rfs_fs_watch_fd(rfs_watch *w);
/* Take the next waiting event, oldest first: 0, or -EAGAIN when none. */
int rfs_fs_watch_next(rfs_watch *w, struct rfs_watch_event *ev);
/* Acknowledge a blocking event: its operation goes on, and so do the
 * other modifications of the same file that came while it waited (they
 * wait for the same ack, so nothing changes the file before it).
 * -ENOENT when unknown, not blocking, already acknowledged, or already
 * timed out. */
int rfs_fs_watch_ack(rfs_watch *w, uint64_t id);

struct rfs_watch_stat {
	uint64_t events;    /* events given */
	uint64_t acked;     /* blocking events acknowledged in time */
	uint64_t timed_out; /* blocking events whose operation went on unacked */
	uint64_t marks;     /* marks now */
	uint64_t hidden;    /* modifications not reported: a directory between
			     * the mark and the file was not listable */
	uint64_t waiting;   /* operations waiting for an ack now */
	uint64_t cut;       /* events whose path was cut (event.cut) */
	uint64_t overflows; /* times the queue reached its limit */
};
void rfs_fs_watch_stat(rfs_watch *w, struct rfs_watch_stat *st);

/* Drop the watch (NULL: nothing): its marks go, its waiting events are
 * discarded, and every operation waiting on it goes on at once.  Free
 * every watch before rfs_fs_close. */
void rfs_fs_watch_free(rfs_watch *w);

#endif
