/*
 * Fixture of the fs-level unit tests: one scratch directory per test
 * (under $RFS_TEST_DIR, which the test runner gives each program, else
 * $TMPDIR or /tmp) holding one pool file, and the ways a test makes,
 * reopens and checks that pool.  Use fx_setup/fx_teardown as the cmocka
 * setup/teardown of each test (or call them from a file's own).
 */
#ifndef RFS_FSFIX_H
#define RFS_FSFIX_H

#include <stdint.h>

#include "reflinkfs/fs.h"

extern char g_dir[];  /* scratch directory of the running test */
extern char g_pool[]; /* the pool file: g_dir "/pool" */

/* cmocka setup: makes g_dir and names g_pool.  Returns 0 (a failure to
 * make the directory fails the test). */
int fx_setup(void **state);

/* cmocka teardown: removes g_dir with everything in it.  Returns 0. */
int fx_teardown(void **state);

/* fsck line sink: prints each problem to stderr as "fsck: what". */
void fx_fsck_line(void *arg, const char *what);

/* rfs_fs_fsck of g_pool (which must be closed), problems to stderr.
 * Returns the number of problems (0 = clean) or a negative errno. */
long fx_fsck(void);

/* Makes a new pool of size bytes at g_pool (replacing any) and opens it
 * with open_flags (RFS_FS_*).  Fails the test if either step fails. */
rfs_fs *fx_fresh(uint64_t size, unsigned open_flags);

/* Closes fs, fails the test unless fsck finds the pool clean, and opens
 * g_pool again with open_flags.  Returns the new handle. */
rfs_fs *fx_reopen(rfs_fs *fs, unsigned open_flags);

/* Creates regular file name (mode 0644) in directory dir as ctx and
 * returns its node; fails the test if the create fails. */
rfs_nodeid fx_create(rfs_fs *fs, const struct rfs_ctx *ctx, rfs_nodeid dir, const char *name);

/* Reads the inode record of node id into *r (src/fs/fs_internal.h)
 * under the pool's read lock; fails the test if the node is unknown or
 * the read fails. */
struct rfs_irec;
void fx_rec(rfs_fs *fs, rfs_nodeid id, struct rfs_irec *r);

/* Format version of the top volume of g_pool (closed), read without
 * changing the pool. */
uint32_t fx_vol_version(void);

/* Set the top volume's format version of g_pool (closed) to v, as a
 * pool of that format would have it (format tests: upgrades, refusals).
 * Fails the test if the pool cannot be changed. */
void fx_set_vol_version(uint32_t v);

#endif
