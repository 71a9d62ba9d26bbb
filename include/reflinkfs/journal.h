/*
 * reflinkfs change journal: read what changed below a directory since a
 * cursor, without walking the tree and without losing anything to a
 * crash or a queue overflow.
 *
 * Every change is recorded in the same transaction as the change itself,
 * so after a crash the journal lists exactly the changes that survived.
 * Records carry a sequence number (strictly increasing; a number is never
 * handed out twice to a change that was delivered), the time, the kind,
 * the volume and inode, the parent directory and the path.  Only
 * committed records are delivered: a delivered change is never taken
 * back by a crash.
 *
 * A cursor is an opaque string (at most RFS_CURSOR_MAX bytes with its
 * NUL) naming the pool (its uuid), the journal's epoch (changed when the
 * journal is reset) and a sequence number.  Reading with a cursor of
 * another pool gives -EXDEV, of a reset journal -ESTALE, and one older
 * than the oldest record kept (trimmed by retention) -ERANGE: "cursor
 * expired: rescan needed".  Never a silent gap.
 *
 * Hard links: a change made through a hard-linked inode (write,
 * setattr, xattr) is recorded once under each of its names, with that
 * name's path, so a query of any directory holding a name lists it (the
 * mount root lists it once per name).  Only an inode without any name
 * (open after its last unlink) is reported with path NULL, in queries
 * of the mount root.  Access-time updates are not recorded
 * (docs/ARCHITECTURE.md, "Change journal").
 */
#ifndef REFLINKFS_JOURNAL_H
#define REFLINKFS_JOURNAL_H

#include <stdbool.h>
#include <stdint.h>

typedef struct rfs_fs rfs_fs;
typedef uint64_t rfs_nodeid;

/* Longest cursor string, with its NUL. */
#define RFS_CURSOR_MAX 80

enum rfs_change_kind {
	RFS_CHANGE_CREATE = 1,  /* regular file */
	RFS_CHANGE_MKDIR = 2,
	RFS_CHANGE_SYMLINK = 3,
	RFS_CHANGE_MKNOD = 4,   /* device or socket */
	RFS_CHANGE_MKFIFO = 5,
	RFS_CHANGE_UNLINK = 6,
	RFS_CHANGE_RMDIR = 7,
	RFS_CHANGE_RENAME = 8,  /* path (new) and old_path */
	RFS_CHANGE_LINK = 9,    /* a new name of an existing inode */
	RFS_CHANGE_DATA = 10,   /* write, truncate, fallocate, punch, clone */
	RFS_CHANGE_ATTR = 11,   /* mode, owner, times, size */
	RFS_CHANGE_XATTR = 12,
	RFS_CHANGE_SNAPSHOT = 13,        /* a snapshot made at path */
	RFS_CHANGE_SNAPSHOT_DELETE = 14, /* the snapshot at path deleted (ino:
					  * its root's st_ino, as at creation) */
	/* Query answers only: a rename seen from a directory that holds
	 * only one of the two names. */
	RFS_CHANGE_MOVE_IN = 15,  /* path: where it arrived; from outside */
	RFS_CHANGE_MOVE_OUT = 16, /* path: where it was; went outside */
	RFS_CHANGE_EXCHANGE = 17, /* RENAME_EXCHANGE of path and old_path */
};

/* Name of a kind ("create", "rename", ...); "?" for an unknown one. */
const char *rfs_change_kind_name(int kind);

struct rfs_change_range {
	uint64_t off, len; /* bytes */
};

/* One change, as delivered.  Pointers are valid during the callback. */
struct rfs_change {
	uint64_t seq;
	int64_t sec;
	uint32_t nsec;
	int kind;           /* enum rfs_change_kind */
	uint64_t volume;    /* volume id */
	uint64_t ino;       /* st_ino of the inode (volume << 48 | number) */
	uint64_t parent;    /* st_ino of its directory (0: unknown) */
	unsigned also;      /* other kinds merged into this change, as bits
			     * 1u << RFS_CHANGE_DATA / _ATTR / _XATTR: a data,
			     * attr or xattr change of a file whose created /
			     * data / attr / xattr record of the same commit
			     * came first is merged into that record */
	const char *path;     /* relative to the queried directory; NULL:
			       * an inode without a name (unlinked, open) */
	const char *old_path; /* RENAME / EXCHANGE: the other path */
	unsigned nranges;     /* DATA (or also DATA): byte ranges changed (merged) */
	const struct rfs_change_range *ranges;
	bool cut; /* read through a mount: path or old_path was cut at
		   * RFS_IOC_CHANGES_PATH_MAX bytes */
};

/* Return 0 to go on, > 0 to stop early (returned), < 0 to fail. */
typedef int (*rfs_change_fn)(void *arg, const struct rfs_change *c);

/* Where a read stopped: pass next_from back to continue the same read. */
struct rfs_changes_page {
	uint64_t upto;      /* the read covers seq < upto (0: choose now) */
	uint64_t next_from; /* first seq not delivered yet */
	bool done;          /* everything below upto was delivered */
	char cursor[RFS_CURSOR_MAX]; /* cursor to pass next time (when done) */
};

/*
 * Deliver to fn the committed changes below directory dir (its whole
 * subtree, snapshots below it included) since cursor (NULL or "": every
 * record kept), in seq order, then fill page->cursor.  page->upto 0
 * fixes the end of the read at the last commit; a callback that stops
 * early leaves page->next_from where to go on (call again with the same
 * page).  Errors: -EXDEV (cursor of another pool), -ESTALE (journal
 * reset since), -ERANGE (cursor expired: rescan needed), -EINVAL (not a
 * cursor), -ENOTSUP (mounted without journal), -ENOTDIR.
 */
int rfs_fs_changes(rfs_fs *fs, rfs_nodeid dir, const char *cursor,
		   struct rfs_changes_page *page, rfs_change_fn fn, void *arg);

/* The cursor of "now" (the last commit), without reading anything. */
int rfs_fs_changes_cursor(rfs_fs *fs, char cursor[RFS_CURSOR_MAX]);

/* Whether changes are recorded but not yet committed (a follower may
 * then commit sooner with rfs_fs_sync). */
bool rfs_fs_changes_pending(rfs_fs *fs);

/* ---- followers waiting in the daemon (RFS_IOC_CHANGES_WAIT) ---- */

/* Commits asked for by waiting followers are at least this far apart. */
#define RFS_CHANGES_COMMIT_GAP_MS 10
/* Followers that may wait at once: each holds one of the daemon's
 * threads (a temporary one stands in, src/fuse/workers.c); more are told
 * to poll (rfs_fs_changes_wait: -EBUSY). */
#define RFS_CHANGES_WAITERS_MAX 8

/* Journal appends so far, below any directory: what a waiter saw. */
uint64_t rfs_fs_changes_events(rfs_fs *fs);
/* The clock of rfs_fs_changes_wait's deadline (CLOCK_MONOTONIC, ns). */
int64_t rfs_fs_changes_clock_ns(void);
/*
 * Sleep until a journal append after `seen` (rfs_fs_changes_events)
 * (0), until deadline_ns (-ETIMEDOUT), or until stopped(arg) is true
 * when woken by rfs_fs_changes_wake (-EINTR: a FUSE interrupt).  -EBUSY
 * at once when RFS_CHANGES_WAITERS_MAX already wait.  No lock held.
 */
int rfs_fs_changes_wait(rfs_fs *fs, uint64_t seen, int64_t deadline_ns,
			bool (*stopped)(void *arg), void *arg);
/* Wake every waiter to look at its stopped() (an interrupt arrived). */
void rfs_fs_changes_wake(rfs_fs *fs);
/* Whether changes below directory dir are recorded but not committed. */
bool rfs_fs_changes_pending_below(rfs_fs *fs, rfs_nodeid dir);
/* Commit when changes below dir wait to be committed, no sooner than
 * RFS_CHANGES_COMMIT_GAP_MS after the last commit made this way. */
int rfs_fs_changes_commit(rfs_fs *fs, rfs_nodeid dir);

/* The journal's state: what `reflinkfs changes --info` prints, through
 * RFS_IOC_JOURNAL_INFO, whose layout this is (fixed size). */
struct rfs_journal_stat {
	uint64_t oldest, next, durable; /* seqs */
	uint64_t limit_bytes, bytes, nrecords;
	uint64_t epoch;
	/* Records that wait in memory for the commit (or an early flush)
	 * to store them in the journal's tree; counted in nrecords. */
	uint64_t pending;
	/* A cursor from which every record kept is delivered, and the
	 * cursor of now (after the last committed record). */
	char oldest_cursor[RFS_CURSOR_MAX];
	char cursor[RFS_CURSOR_MAX];
	/* The cursor asked about (since): 0 when it is usable, else the
	 * error rfs_fs_changes would give for it (-ERANGE expired,
	 * -ESTALE reset since, -EXDEV another pool, -EINVAL not a
	 * cursor); and how many records were committed after it
	 * (anywhere in the mount; 0 unless usable). */
	int32_t since_status;
	uint32_t pad;
	uint64_t since_behind;
};
/* Fill st; since (NULL or "": none) is a cursor to check.  0, or
 * -ENOTSUP on a pool opened without journal. */
int rfs_fs_journal_stat(rfs_fs *fs, const char *since, struct rfs_journal_stat *st);

/* Set the retention limit in bytes (kept in the pool); trims the oldest
 * records past it at once.  -EINVAL below RFS_JOURNAL_MIN_BYTES. */
#define RFS_JOURNAL_MIN_BYTES (64u << 10)
int rfs_fs_journal_set_limit(rfs_fs *fs, uint64_t bytes);

/* Tests: the journal writes format 1 records (as before compact records)
 * until the fs is opened again, which upgrades it; -ENOTSUP without one. */
int rfs_fs_journal_format1(rfs_fs *fs);

/* Default retention: this share of the pool (1/RFS_JOURNAL_SHARE),
 * at least RFS_JOURNAL_MIN_BYTES. */
#define RFS_JOURNAL_SHARE 64u

/* ---- client side: reading through a mount (libreflinkfs) ---- */

/*
 * Deliver to fn, in seq order, the committed changes below directory
 * path of a reflinkfs mount (its whole subtree, snapshots below it
 * included; the mount point for everything) since cursor (NULL or "":
 * every record kept), then store the cursor to pass next time in next.
 * Paths in the changes are relative to path; pointers are valid during
 * the callback only.  fn returns 0 to go on; > 0 stops the read, which
 * returns that value without touching next (read again from the same
 * cursor; the changes delivered come again); < 0 fails it likewise.
 * Errors: -EXDEV (cursor of another pool), -ESTALE (journal reset
 * since: rescan), -ERANGE (cursor expired: rescan needed), -EINVAL (not
 * a cursor), -ENOTSUP (mounted with -o nojournal), -ENOTTY (not on a
 * reflinkfs mount), -EPERM (only root or the user who mounted may read
 * it), -ENOTDIR / -ENOENT / ... (opening path).
 */
int rfs_changes_read(const char *path, const char *cursor, rfs_change_fn fn, void *arg,
		     char next[RFS_CURSOR_MAX]);

/* How often rfs_changes_follow looks for new changes when the daemon
 * cannot wait for it (RFS_CHANGES_WAITERS_MAX followers wait already). */
#define RFS_CHANGES_FOLLOW_MS 200

/*
 * As rfs_changes_read, but when nothing has changed since cursor, wait
 * for changes: the daemon holds the request until a change is recorded,
 * then commits (only committed changes are delivered; such commits are
 * at least RFS_CHANGES_COMMIT_GAP_MS apart) and answers, so a change
 * arrives within about one commit (docs/ARCHITECTURE.md gives measured
 * figures).  When RFS_CHANGES_WAITERS_MAX followers wait already, it
 * checks every RFS_CHANGES_FOLLOW_MS ms instead.  Returns 0 once
 * at least one change was delivered, -ETIMEDOUT when none came within
 * timeout_ms (< 0: wait forever), -EINTR when a signal interrupted the
 * wait; next is filled in these three cases.  Call
 * it again with next to keep following.
 */
int rfs_changes_follow(const char *path, const char *cursor, int timeout_ms, rfs_change_fn fn,
		       void *arg, char next[RFS_CURSOR_MAX]);

/*
 * The journal's state, seen through directory path of a reflinkfs
 * mount, into out (struct rfs_journal_stat above): records and bytes
 * kept against the retention limit, the oldest usable cursor, the
 * cursor of now, records waiting for the commit; and, when since is
 * not NULL or "", whether that cursor can still be read from
 * (since_status) and how many records were committed after it.
 * Errors as rfs_changes_read.
 */
int rfs_changes_info(const char *path, const char *since, struct rfs_journal_stat *out);

/* ---- the ioctl under it (`reflinkfs changes`, rfs_changes_*) ---- */
#include <linux/ioctl.h>

/*
 * RFS_IOC_CHANGES on an open directory of the mount: one page of the
 * changes below it (rfs_fs_changes).  in: the cursor ("" for every record
 * kept), upto and next_from of the previous page (0 on the first), flags.
 * out: the same struct, with count records in buf and, when done, the
 * next cursor.  Each record is a struct rfs_ioc_change followed by
 * nranges struct rfs_change_range, then pathlen bytes of path and oldlen
 * of old path (no NULs); records are 8-byte aligned.  A path longer than
 * RFS_IOC_CHANGES_PATH_MAX is cut (RFS_IOC_CHANGE_CUT).  Errors as
 * rfs_fs_changes; -EPERM unless root or the user who mounted.
 */
#define RFS_IOC_CHANGES_PAGE 12288
#define RFS_IOC_CHANGES_PATH_MAX 4096
enum {
	RFS_IOC_CHANGES_COMMIT = 1, /* commit first when records wait */
	/* Nothing new below the directory: wait up to wait_ms in the
	 * daemon for a change there (commit it, with COMMIT), then answer;
	 * a signal interrupts the wait (EINTR). */
	RFS_IOC_CHANGES_WAIT = 2,
	RFS_IOC_CHANGES_WAITED = 4, /* out: the daemon could wait (else poll) */
};
enum {
	RFS_IOC_CHANGE_NOPATH = 1, /* no path (an inode without a name) */
	RFS_IOC_CHANGE_CUT = 2,    /* path or old path cut */
};
struct rfs_ioc_change {
	uint64_t seq;
	int64_t sec;
	uint32_t nsec;
	uint16_t kind;
	uint8_t nranges;
	uint8_t flags; /* RFS_IOC_CHANGE_* */
	uint64_t volume, ino, parent;
	uint16_t pathlen, oldlen;
	uint32_t also; /* struct rfs_change.also */
};
struct rfs_ioc_changes {
	char cursor[RFS_CURSOR_MAX]; /* in: since; out: next (when done) */
	uint64_t upto, next_from;
	uint32_t flags;
	uint32_t count; /* out: records in buf */
	uint32_t used;  /* out: bytes of buf used */
	uint8_t done;   /* out: the read is complete */
	uint8_t pad;
	uint16_t wait_ms; /* in: RFS_IOC_CHANGES_WAIT's longest wait */
	uint8_t buf[RFS_IOC_CHANGES_PAGE];
};
#define RFS_IOC_CHANGES _IOWR('R', 30, struct rfs_ioc_changes)

/*
 * RFS_IOC_JOURNAL_INFO on an open directory of the mount: the journal's
 * state (rfs_fs_journal_stat).  in: since, a cursor to check ("" for
 * none), in the first RFS_CURSOR_MAX bytes (oldest_cursor's place);
 * out: the whole struct.  -ENOTSUP with -o nojournal; -EPERM unless
 * root or the user who mounted.
 */
#define RFS_IOC_JOURNAL_INFO _IOWR('R', 31, struct rfs_journal_stat)

#endif
