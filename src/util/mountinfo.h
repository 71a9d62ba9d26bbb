/*
 * Reading /proc/self/mountinfo (proc(5)): the mount table as the kernel
 * sees it, with the octal escapes (\040 for a space, ...) undone, so paths
 * with spaces compare equal to what realpath(3) gives.
 */
#ifndef RFS_UTIL_MOUNTINFO_H
#define RFS_UTIL_MOUNTINFO_H

#include <stdbool.h>
#include <stddef.h>

/* One line.  The strings point into a buffer that is valid only during
 * the callback. */
struct rfs_mountinfo {
	int id;                 /* mount ID (also in /proc/PID/fdinfo's mnt_id) */
	int parent;             /* mount ID of the parent mount */
	unsigned major, minor;  /* st_dev of files on this mount */
	const char *root;       /* root of the mount within its filesystem */
	const char *mnt;        /* mount point */
	const char *mnt_opts;   /* per-mount options (rw/ro, nosuid, ...) */
	const char *type;       /* filesystem type, e.g. "fuse.reflinkfs" */
	const char *source;     /* e.g. the pool path of a reflinkfs mount */
	const char *super_opts; /* per-superblock options (rw/ro, ...) */
};

/* Calls fn for every mount of the calling process's namespace, in table
 * order (a later line is mounted on top of an earlier one).  Stops when fn
 * returns non-zero and returns that value; 0 after the last line; -errno
 * when the table cannot be read. */
int rfs_mountinfo_each(const char *path, int (*fn)(void *arg, const struct rfs_mountinfo *m),
		       void *arg);

/* Parse one mountinfo line in place (escapes undone, fields split).
 * false when the line is malformed. */
bool rfs_mountinfo_parse(char *line, struct rfs_mountinfo *m);

/* True when the comma-separated list opts holds exactly opt. */
bool rfs_mountinfo_has_opt(const char *opts, const char *opt);

/* The reflinkfs mount (type fuse.reflinkfs) on top of mount point mnt;
 * copies its pool into pool (size bytes) when pool is not NULL.  Returns
 * its mount ID, or 0 when there is none. */
int rfs_mountinfo_find_mnt(const char *mnt, char *pool, size_t size, unsigned *major,
			   unsigned *minor);

/* Whether a reflinkfs mount of the pool (its path as realpath gives it) is
 * in the mount table. */
bool rfs_mountinfo_pool_mounted(const char *pool);

#endif
