/*
 * Sessions of the long ioctls (scrub, diff, du) on a directory of the
 * mount.  The daemon answers OPENDIR with ENOSYS (so a warm walk costs
 * no OPENDIR/RELEASEDIR round trip), hence a directory descriptor has no
 * handle of its own: a session is found by its key, the directory and
 * the calling process (pid and the process's start time, so a reused
 * pid is another caller), one request at a time each.  Sessions whose
 * process is gone are freed at the next session request of any command
 * (fh_session_get sweeps them) or at unmount, so an interrupted command
 * leaves nothing behind for long.
 */
#ifndef RFS_FUSE_FH_SESSION_H
#define RFS_FUSE_FH_SESSION_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* Whose session: the directory it runs on and the calling process.  pid
 * 0 (the caller is outside the daemon's pid namespace) is an unknown
 * caller: its sessions are freed after FH_SESSION_IDLE_SECS unused. */
struct fh_key {
	uint64_t dir;
	pid_t pid;
	uint64_t start; /* the process's start time (/proc/PID/stat, field 22) */
};
#define FH_SESSION_IDLE_SECS 600

struct fh_session {
	struct fh_key key;
	int64_t used;         /* CLOCK_MONOTONIC seconds of the last request; table lock */
	void *data;           /* the command's state; its holder's (below) */
	pthread_mutex_t lock; /* held by the request using data */
	struct fh_session *next;
};

/* The sessions of one command.  lock protects the list; a session's data
 * belongs to whoever holds the session's lock, taken while the list's
 * lock is held, so a sweep cannot free it under a running request. */
struct fh_table {
	pthread_mutex_t lock;
	struct fh_session *head;
	void (*free_data)(void *data); /* must accept NULL */
};
#define FH_TABLE_INIT(free_fn) {PTHREAD_MUTEX_INITIALIZER, NULL, (free_fn)}

/* The key of a request from process pid on directory dir. */
void fh_key_of(uint64_t dir, pid_t pid, struct fh_key *key);

/*
 * The session of key, locked: made with data NULL when there is none and
 * create is set.  First frees the sessions of processes that are gone.
 * NULL with *err: -ENOENT (none), -EBUSY (another request of the caller
 * uses it), -ENOMEM.  Give it back with fh_session_put.
 */
struct fh_session *fh_session_get(struct fh_table *t, const struct fh_key *key, bool create,
				  int *err);
void fh_session_put(struct fh_session *s);
/* Free key's session, after the request using it (a finished du). */
void fh_session_release(struct fh_table *t, const struct fh_key *key);
/* Free every session (unmount: no request runs any more). */
void fh_session_release_all(struct fh_table *t);

#endif
