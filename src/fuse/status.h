/*
 * The daemon's status channel: an abstract unix socket named after the
 * pool (its device and inode numbers), on which `reflinkfs umount` hears
 * how the daemon's final commit went.  The client connects before it
 * unmounts; the daemon answers every connection with one line, after it
 * has closed the pool: "ok", or "error " and the reason.
 */
#ifndef RFS_FUSE_STATUS_H
#define RFS_FUSE_STATUS_H

#include <stddef.h>

struct rfs_status;

/* Daemon: listen on pool's status socket.  NULL when that fails (then
 * umount only waits for the pool's lock, without the daemon's verdict); a
 * warning says why. */
struct rfs_status *rfs_status_listen(const char *pool);

/* Daemon: start the thread that keeps the connections (threads do not
 * survive fork: call it after daemonizing).  0 or -errno. */
int rfs_status_start(struct rfs_status *st);

/* Daemon: take no more clients (those connected so far stay) and free
 * the socket's name, so that the next mount of the pool can bind it:
 * call it before the pool's lock is released.  NULL st is allowed. */
void rfs_status_stop_listening(struct rfs_status *st);

/* Daemon: send line to every client, close everything, free st.  NULL st
 * is allowed. */
void rfs_status_finish(struct rfs_status *st, const char *line);

/* Client: connect to the daemon holding pool; -1 when none listens. */
int rfs_status_connect(const char *pool);

/* Client: read the daemon's line (without the newline) into buf, which
 * holds *len bytes so far.  1 with a line, 0 when the daemon closed the
 * connection without one (killed), -EAGAIN when nothing came within
 * timeout_ms (call again), other -errno on error. */
int rfs_status_poll(int fd, char *buf, size_t size, size_t *len, int timeout_ms);

#endif
