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
int cmd_scrub(int argc, char **argv);

/* fsck --data: read and verify every data block of the (unmounted) pool,
 * printing each damaged block with its files and a summary.  Returns the
 * number of problems found (0 = clean) or a negative errno (printed). */
long cli_fsck_data(const char *pool);

/* Mount helper mode (argv[0] is mount.fuse.reflinkfs): POOL MNT [-o opts]. */
int cmd_mount_helper(int argc, char **argv);

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

/* Count what keeps the mount (ID and device from mountinfo) busy:
 * processes with files, mappings or their working or root directory on it,
 * and mounts inside it; print one line each to out (unless NULL). */
int cli_mount_holders(int mnt_id, unsigned major, unsigned minor, FILE *out);

#endif
