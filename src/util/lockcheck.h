/*
 * Lock-ownership assertions, in the style of SQLite's
 * assert(sqlite3BtreeHoldsMutex(p)): a function that needs a lock says so
 * with RFS_ASSERT_LOCK(rfs_pool_holds_wrlock(pool)) at its top.  Checked
 * in debug builds (RFS_DEBUG: the ASan, TSan and valgrind test builds);
 * release builds compile them out, so hot paths pay nothing.
 */
#ifndef RFS_LOCKCHECK_H
#define RFS_LOCKCHECK_H

#include <assert.h>

#ifdef RFS_DEBUG
#define RFS_ASSERT_LOCK(cond) assert(cond)
#else
/* Not evaluated; keeps the variables it names "used". */
#define RFS_ASSERT_LOCK(cond) ((void)sizeof(cond))
#endif

#endif
