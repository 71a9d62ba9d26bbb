/*
 * The `reflinkfs` command: one binary, git-like subcommands.  Each
 * subcommand lives in its own file and has the signature of main().
 */
#ifndef RFS_CLI_H
#define RFS_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

int cmd_mkfs(int argc, char **argv);
int cmd_mount(int argc, char **argv);
int cmd_umount(int argc, char **argv);
int cmd_clone(int argc, char **argv);
int cmd_stat(int argc, char **argv);
int cmd_fsck(int argc, char **argv);
int cmd_sync(int argc, char **argv);
int cmd_diff(int argc, char **argv);
int cmd_du(int argc, char **argv);
int cmd_changes(int argc, char **argv);
int cmd_scrub(int argc, char **argv);
int cmd_snapshot(int argc, char **argv);
int cmd_watch(int argc, char **argv);

/* reflinkfs snapshot SRC DST (also `reflinkfs clone` of a directory; cmd
 * names the command in messages).  Returns the exit status. */
int cli_snapshot_create(const char *cmd, const char *src, const char *dst, bool rdonly,
			bool json);
/* reflinkfs snapshot list (src/cli/snapshot_list.c). */
int cli_snapshot_list(int argc, char **argv);

/* Exit statuses of the snapshot commands (and of clone of a directory). */
enum {
	SNAP_OK = 0,
	SNAP_FAILED = 1,  /* refused or failed: no space, read-only, permission, I/O */
	SNAP_USAGE = 2,   /* bad command line */
	SNAP_BADPATH = 3, /* a path is missing, not a directory, exists already, or
			   * is not a snapshot's root */
	SNAP_NOTRFS = 4,  /* not on a reflinkfs mount, or on two different mounts */
};

/* Write s (n bytes; or up to its NUL) to f as a JSON string, quotes
 * included: valid UTF-8 as it is, other bytes and control characters as
 * \u00XX (src/cli/json.c). */
void cli_json_strn(FILE *f, const char *s, size_t n);
void cli_json_str(FILE *f, const char *s);

/* The mount an open file is on (src/cli/fdmount.c). */
struct cli_mount {
	int id;          /* mount ID */
	bool reflinkfs;  /* type fuse.reflinkfs */
	bool rdonly;     /* mounted read-only */
	char mnt[4096];  /* mount point */
	char root[4096]; /* directory of the filesystem mounted there ("/") */
};
/* 0 with *out filled, or -errno. */
int cli_fd_mount(int fd, struct cli_mount *out);

/* fsck --data: read and verify every data block of the (unmounted) pool,
 * printing each damaged block with its files and a summary.  Returns the
 * number of problems found (0 = clean) or a negative errno (printed). */
long cli_fsck_data(const char *pool);

/* Mount helper mode (argv[0] is mount.fuse.reflinkfs): POOL MNT [-o opts]. */
int cmd_mount_helper(int argc, char **argv);

struct option;
/* getopt_long for a subcommand (src/cli/opts.c): set optind = 0 before
 * the first call.  Returns the option (as getopt_long), -1 after the last
 * one (the operands are argv[optind..argc-1]), '?' for an unknown option
 * and ':' for a missing value, both after a message naming the option,
 * the command and its --help. */
int cli_getopt(int argc, char **argv, const char *cmd, const char *shortopts,
	       const struct option *longopts);

/* True when argv holds -h or --help. */
bool cli_wants_help(int argc, char **argv);

/* Take an exclusive (or shared) lock on the pool file (src/cli/poollock.c);
 * -1 and a message when the pool is in use.  When the pool is held only by
 * the daemon of a mount that is gone (unmounted by fusermount3 -u or
 * umount(8), final commit running), waits up to 10 s for it, saying so.
 * The fd is returned (kept open: closing it releases the lock). */
int cli_lock_pool(const char *pool, bool exclusive, const char *cmd);

/* Mark the pool as held by a mount's daemon (fd from cli_lock_pool, kept
 * by the daemon).  0 or -errno. */
int cli_mark_daemon(int fd);

/* mount -o remount,OPTIONS of the reflinkfs mount at mnt (src/cli/remount.c):
 * the kernel's flags, then the daemon is told.  Returns an exit status. */
int cli_remount(const char *mnt, const char *opts);

/* Count what keeps the mount (ID and device from mountinfo) busy:
 * processes with files, mappings or their working or root directory on it,
 * and mounts inside it; print one line each to out (unless NULL). */
int cli_mount_holders(int mnt_id, unsigned major, unsigned minor, FILE *out);

#endif
