/*
 * Sessions of the long ioctls (scrub, diff, du) that belong to an open
 * directory of the mount: found by the directory's file handle
 * (rfs_fuse_dir_handle), one request at a time each, and freed by
 * releasedir (or at unmount), so an interrupted command leaves nothing
 * behind.
 */
#ifndef RFS_FUSE_FH_SESSION_H
#define RFS_FUSE_FH_SESSION_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

struct fh_session {
	uint64_t fh;
	void *data;           /* the command's state; its holder's (below) */
	pthread_mutex_t lock; /* held by the request using data */
	struct fh_session *next;
};

/* The sessions of one command.  lock protects the list; a session's data
 * belongs to whoever holds the session's lock, taken while the list's
 * lock is held, so releasedir cannot free it under a running request. */
struct fh_table {
	pthread_mutex_t lock;
	struct fh_session *head;
	void (*free_data)(void *data); /* must accept NULL */
};
#define FH_TABLE_INIT(free_fn) {PTHREAD_MUTEX_INITIALIZER, NULL, (free_fn)}

/*
 * The session of fh, locked: made with data NULL when there is none and
 * create is set.  NULL with *err: -ENOENT (none), -EBUSY (another request
 * of the caller uses it), -ENOMEM.  Give it back with fh_session_put.
 */
struct fh_session *fh_session_get(struct fh_table *t, uint64_t fh, bool create, int *err);
void fh_session_put(struct fh_session *s);
/* Free fh's session, after the request using it (releasedir). */
void fh_session_release(struct fh_table *t, uint64_t fh);
/* Free every session (unmount: no request runs any more). */
void fh_session_release_all(struct fh_table *t);

#endif
