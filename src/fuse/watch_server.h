/*
 * The mount's watch server for pre-modification events (watch_server.c;
 * protocol in include/reflinkfs/watch.h and docs/WATCH.md).
 */
#ifndef RFS_FUSE_WATCH_SERVER_H
#define RFS_FUSE_WATCH_SERVER_H

#include "fuse/rfs_fuse.h"
#include "reflinkfs/watch.h"

struct rfs_watch_server;

/* Listen on a new abstract socket and start the thread that serves it
 * (call after daemonizing: threads do not survive fork).  NULL when that
 * fails (a warning in the log says why; the ioctls then answer ENOTSUP). */
struct rfs_watch_server *rfs_watch_server_start(struct rfs_mount *m);

/* Stop the thread and end every connection (their watches go, waiting
 * operations go on).  Call after the FUSE loop has ended, before the fs is
 * closed.  NULL is allowed. */
void rfs_watch_server_stop(struct rfs_watch_server *s);

/* RFS_IOC_WATCH_ADDR: 0 with out filled, -ENOTSUP when s is NULL. */
int rfs_watch_server_addr(struct rfs_watch_server *s, struct rfs_ioc_watch_addr *out);

/* RFS_IOC_WATCH_MARK of node ino by the caller of req: finds the
 * connection by io->token, checks the caller is root or the connection's
 * user, marks, makes the kernel write back the covered files' dirty pages,
 * arms; io->mark and io->nflushed filled.  0 or a negative errno (see
 * watch.h).  Called from a FUSE thread; takes no fs lock across the
 * kernel notifications. */
int rfs_watch_server_mark(struct rfs_watch_server *s, fuse_req_t req, fuse_ino_t ino,
			  struct rfs_ioc_watch_mark *io);

#endif
