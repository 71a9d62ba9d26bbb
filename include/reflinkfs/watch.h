/*
 * Pre-modification events, subscriber side (issue 8): the wire protocol
 * between a reflinkfs mount's daemon and its subscribers, and a small C
 * API over it (src/client/watch.c, in libreflinkfs.a).  docs/WATCH.md
 * describes the protocol and what is guaranteed.
 *
 * A subscriber opens a watch on a mount, marks files or directories, and
 * gets one event per file before the first modification of that file
 * after the mark (one-shot per file until it is marked again).  With
 * RFS_WATCHER_BLOCKING the modification waits until the subscriber
 * acknowledges the event, or until the watch's timeout passes.
 *
 *   rfs_watcher *w;
 *   rfs_watcher_open("/m/project", RFS_WATCHER_BLOCKING, 0, &w);
 *   rfs_watcher_mark(w, "/m/project", &mark);
 *   for (;;) {
 *           struct rfs_watcher_event ev;
 *           int r = rfs_watcher_read(w, &ev, -1);   // wait for one
 *           ... act on ev.path (relative to the marked directory) ...
 *           if (ev.blocking)
 *                   rfs_watcher_ack(w, ev.id);      // the write goes on
 *   }
 *
 * Thread safety: one rfs_watcher is used by one thread at a time.
 */
#ifndef REFLINKFS_WATCH_H
#define REFLINKFS_WATCH_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/ioctl.h>

/* ---- ioctls on any open file or directory of a mount ---- */

#define RFS_WATCH_PROTO_VERSION 1
#define RFS_WATCH_TOKEN_LEN 16
/* Longest abstract socket name (sun_path minus the leading NUL). */
#define RFS_WATCH_ADDR_MAX 107

/* RFS_IOC_WATCH_ADDR: the name of the mount's watch server, an abstract
 * Unix socket (SOCK_SEQPACKET; connect to "\0" followed by name[0..len)).
 * ENOTSUP: the daemon runs no watch server (its log says why). */
struct rfs_ioc_watch_addr {
	uint32_t len;
	uint32_t version; /* RFS_WATCH_PROTO_VERSION of the daemon */
	char name[RFS_WATCH_ADDR_MAX + 1];
};
#define RFS_IOC_WATCH_ADDR _IOR('R', 50, struct rfs_ioc_watch_addr)

/* RFS_IOC_WATCH_MARK on an open descriptor of the file or directory to
 * mark (a directory: every file below it, at any depth, also files
 * created later; directories themselves get no events), with the token
 * the server gave the
 * connection.  The daemon makes the kernel write back the file's dirty
 * pages (shared writable mmap) first, arms the mark, and answers with its
 * id.  Errors: EXDEV no connection of this mount has that token (another
 * mount, or the connection is closed); EPERM the caller is neither root
 * nor the connection's user; EACCES the caller may not write the path. */
struct rfs_ioc_watch_mark {
	uint8_t token[RFS_WATCH_TOKEN_LEN];
	uint64_t mark;     /* out: the mark's id */
	uint32_t nflushed; /* out: files whose kernel pages were written back */
	uint32_t pad;
};
#define RFS_IOC_WATCH_MARK _IOWR('R', 51, struct rfs_ioc_watch_mark)

/* ---- messages on the socket (one message per SEQPACKET datagram) ---- */

enum rfs_wmsg_type {
	/* client -> server */
	RFS_WMSG_HELLO = 1,  /* first message: struct rfs_wmsg_hello */
	RFS_WMSG_ACK = 2,    /* struct rfs_wmsg_id: acknowledge event id */
	RFS_WMSG_UNMARK = 3, /* struct rfs_wmsg_id: drop mark id */
	/* server -> client */
	RFS_WMSG_WELCOME = 64, /* answer to HELLO: struct rfs_wmsg_welcome */
	RFS_WMSG_EVENT = 65,   /* struct rfs_wmsg_event + path bytes */
	RFS_WMSG_RESULT = 66,  /* answer to ACK / UNMARK: struct rfs_wmsg_result */
};

/* Flags of the watch (HELLO) */
#define RFS_WATCHER_BLOCKING 1u /* modifications wait for the ack */

struct rfs_wmsg_hello {
	uint32_t type;    /* RFS_WMSG_HELLO */
	uint32_t version; /* RFS_WATCH_PROTO_VERSION */
	uint32_t flags;   /* RFS_WATCHER_* */
	uint32_t timeout_ms; /* 0: the daemon's default (30000) */
};

struct rfs_wmsg_id {
	uint32_t type; /* RFS_WMSG_ACK or RFS_WMSG_UNMARK */
	uint32_t pad;
	uint64_t id;   /* event id (ACK) or mark id (UNMARK) */
};

struct rfs_wmsg_welcome {
	uint32_t type;    /* RFS_WMSG_WELCOME */
	int32_t err;      /* 0, or a negative errno: no watch (then EOF) */
	uint32_t version; /* RFS_WATCH_PROTO_VERSION */
	uint32_t timeout_ms; /* the timeout in force */
	uint8_t token[RFS_WATCH_TOKEN_LEN]; /* for RFS_IOC_WATCH_MARK */
};

/* Event flags */
#define RFS_WEV_BLOCKING 1u /* an operation waits for the ACK */
#define RFS_WEV_CUT 2u      /* path too long: cut at a '/', it names a
			     * directory holding the file */

struct rfs_wmsg_event {
	uint32_t type;    /* RFS_WMSG_EVENT */
	uint32_t kind;    /* enum rfs_watcher_kind */
	uint64_t id;      /* event id, for ACK */
	uint64_t mark;    /* the mark it came from */
	uint64_t ino;     /* st_ino of the file */
	uint32_t flags;   /* RFS_WEV_* */
	uint32_t pathlen; /* bytes of path that follow (no NUL) */
	/* path: relative to the marked directory, "" for the marked file
	 * itself.  A file below a directory the subscriber may not read and
	 * search gets no event at all. */
};

struct rfs_wmsg_result {
	uint32_t type;  /* RFS_WMSG_RESULT */
	uint32_t what;  /* RFS_WMSG_ACK or RFS_WMSG_UNMARK */
	uint64_t id;    /* as sent */
	int32_t err;    /* 0, or -ENOENT: unknown id, or the event timed out */
	uint32_t pad;
};

/* ---- what is about to happen (same values as the fs layer's
 * enum rfs_premod_kind) ---- */
enum rfs_watcher_kind {
	RFS_WK_WRITE = 1,     /* write (also a dirty mmap page written back) */
	RFS_WK_TRUNCATE = 2,  /* size change by truncate / setattr */
	RFS_WK_FALLOCATE = 3, /* fallocate, punch hole, zero range */
	RFS_WK_ATTR = 4,      /* mode, owner, times */
	RFS_WK_XATTR = 5,     /* set or remove an extended attribute */
	RFS_WK_RENAME = 6,    /* renamed, or replaced by a rename */
	RFS_WK_UNLINK = 7,    /* one of its names is removed */
	RFS_WK_CLONE = 8,     /* a clone or copy_file_range onto it */
	/* Not a file's event: the subscriber let too many events wait
	 * unread, so the daemon disarmed every mark of this watch (mark and
	 * ino 0).  Changes after it are not reported: mark again and rescan. */
	RFS_WK_OVERFLOW = 9,
};

/* "write", "truncate", ...; "unknown" for any other value. */
const char *rfs_watcher_kind_name(int kind);

/* ---- the C API ---- */

typedef struct rfs_watcher rfs_watcher;

#define RFS_WATCHER_PATH_MAX 4096

struct rfs_watcher_event {
	uint64_t id;   /* pass to rfs_watcher_ack */
	uint64_t mark; /* the mark (rfs_watcher_mark) it came from */
	uint64_t ino;  /* st_ino of the file */
	int kind;      /* enum rfs_watcher_kind */
	bool blocking; /* the modification waits for rfs_watcher_ack */
	bool cut;      /* path too long: cut at a '/', it names a directory
			* holding the file (RFS_WEV_CUT) */
	/* Relative to the marked directory; "" for a marked file itself. */
	char path[RFS_WATCHER_PATH_MAX];
};

/* Open a watch on the reflinkfs mount that path (any file or directory
 * of it) is on.  flags: RFS_WATCHER_BLOCKING or 0; timeout_ms: how long
 * a modification waits for the ack before it goes on (0: the daemon's
 * default, 30 s).  0 with *out set, or a negative errno: -ENOTTY not a
 * reflinkfs mount (or a daemon without watches), -ENOTSUP the daemon has
 * no watch server, -EPROTO the daemon speaks another protocol version,
 * other errors of open/connect. */
int rfs_watcher_open(const char *path, unsigned flags, unsigned timeout_ms, rfs_watcher **out);

/* The timeout in force (the daemon's answer), ms. */
unsigned rfs_watcher_timeout(const rfs_watcher *w);

/* Mark path (a file, or a directory: every file below it, at any depth;
 * marking it again re-arms it with the same id).  It must be on the mount
 * the watch was opened on.  The kernel's
 * dirty pages of the covered files, mmap stores included, are written
 * back before the mark is armed (those writes give no event): this call
 * writes them back and waits (sync_file_range of a file; syncfs of the
 * mount for a directory), then the daemon invalidates them again.  Best
 * effort: docs/WATCH.md, "mmap", says what can still be missed.  When this returns 0 the mark is
 * armed and *mark (may be NULL) holds its id.  Errors: -EXDEV path is on
 * another mount, -EACCES the caller may not write path, -EPERM the caller
 * is neither root nor the watch's user, -EINVAL neither a regular file
 * nor a directory (a FIFO's or device's ioctls do not reach the
 * filesystem), errors of open. */
int rfs_watcher_mark(rfs_watcher *w, const char *path, uint64_t *mark);

/* The same for an open descriptor (any access mode but O_PATH). */
int rfs_watcher_mark_fd(rfs_watcher *w, int fd, uint64_t *mark);

/* Drop a mark: its files give no more events.  0 or -ENOENT. */
int rfs_watcher_unmark(rfs_watcher *w, uint64_t mark);

/* A descriptor that polls readable (POLLIN) when an event may be waiting.
 * rfs_watcher_ack and rfs_watcher_unmark may read events off the socket
 * and keep them: call rfs_watcher_read(w, ev, 0) until -EAGAIN before
 * polling again. */
int rfs_watcher_fd(const rfs_watcher *w);

/* Take the next event, waiting up to timeout_ms (-1: no limit, 0: do not
 * wait).  0, -EAGAIN nothing came in time, -ENOTCONN the daemon closed the
 * connection (unmounted), -EPROTO a malformed message, other -errno. */
int rfs_watcher_read(rfs_watcher *w, struct rfs_watcher_event *ev, int timeout_ms);

/* Acknowledge blocking event id: the modification goes on now.  0, or
 * -ETIMEDOUT: the event had timed out and the modification already went
 * on (or id is unknown), -ENOTCONN, other -errno. */
int rfs_watcher_ack(rfs_watcher *w, uint64_t id);

/* Close the connection: the daemon drops every mark of the watch and
 * releases every modification waiting for it.  NULL is allowed. */
void rfs_watcher_close(rfs_watcher *w);

#endif
