/*
 * Fuzzing of inode record values (src/fs/irec.c): a fuzz input is the
 * value of a directory entry as read from a leaf.  rec_decode must refuse
 * it (-EUCLEAN) or decode it; a decoded record must encode (in the form
 * the decoder chose) and decode again to the same record, so nothing a
 * damaged value says can make the filesystem write something it then
 * reads differently.  ASan/UBSan catch reads past the value.
 *
 * Used by the libFuzzer target (fuzz_irec.c, `make fuzz`) and by the
 * deterministic replay test run by `make test` (test_fuzz_replay.c).
 */
#ifndef RFS_FUZZ_IREC_H
#define RFS_FUZZ_IREC_H

#include <stdlib.h>
#include <string.h>

#include "fs/fs_internal.h"

/* 1 when the input decoded, 0 when it was refused; aborts when a decoded
 * record does not survive its own encoding. */
static int fz_irec(const uint8_t *data, size_t size)
{
	static struct rfs_irec a, b;
	static uint8_t v[RFS_VAL_MAX];
	if (rec_decode(data, size, &a))
		return 0;
	size_t n = rec_encode(&a, v, rec_is_compact(data, size));
	if (n > RFS_VAL_MAX || rec_decode(v, n, &b) || memcmp(&a.i, &b.i, sizeof(a.i)) ||
	    a.taillen != b.taillen || memcmp(a.tail, b.tail, a.taillen))
		abort();
	return 1;
}

#endif
