/*
 * A reader thread for the tests that run READs beside writers of
 * versions: every version of a file is len bytes of one value, written
 * in increasing order, so a READ must return one whole version, never a
 * mix of two and never one older than the same reader saw before.
 */
#ifndef RFS_VREADER_H
#define RFS_VREADER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "reflinkfs/fs.h"

struct fx_vreader {
	rfs_fs *fs;
	rfs_nodeid node;
	size_t len;           /* bytes read from offset 0 each time */
	_Atomic bool *stop;   /* set by the test; at least 10 READs anyway */
	int bad;              /* 0 = every READ was one whole version, never
			       * going back; -1 out of memory, 1 a short or
			       * failed READ, 2 a mix of versions, 3 an older
			       * version than before */
	unsigned reads;       /* READs made */
};

/* pthread start routine: arg is a struct fx_vreader.  Reads until
 * *stop (and 10 READs), or until a READ is bad.  Returns NULL. */
void *fx_vreader_main(void *arg);

#endif
