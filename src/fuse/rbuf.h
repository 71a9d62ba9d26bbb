/*
 * The buffer a worker thread reads a READ's data into before replying.
 */
#ifndef RFS_FUSE_RBUF_H
#define RFS_FUSE_RBUF_H

#include <stddef.h>

/* This thread's read buffer, at least size bytes, starting on a page;
 * kept for the thread's next READs (grown when one asks for more) and
 * freed when the thread ends.  NULL when it cannot be allocated. */
char *rfs_fuse_read_buf(size_t size);

#endif
