/*
 * Sizes given by users (mkfs --size) and sizes in messages.  One parser
 * for every size the command line takes, so that all of them accept and
 * refuse the same things.
 */
#ifndef RFS_UTIL_SIZE_H
#define RFS_UTIL_SIZE_H

#include <stdint.h>

/*
 * Parse a size: decimal digits, optionally followed by a unit K, M, G, T,
 * P or E (either case; powers of 1024) and an optional "iB" or "B", or a
 * lone "B" (bytes).  Nothing else: no sign, spaces, fraction or exponent.
 * Returns 0 and *out; -EINVAL with *why saying what is wrong; -ERANGE
 * when the size is 2^64 bytes or more (*why says so too).
 */
int rfs_size_parse(const char *s, uint64_t *out, const char **why);

/* Room for rfs_size_str's text. */
#define RFS_SIZE_STR 48

/* bytes as text for a message: "16 MiB", "1536 MiB", "4095 bytes",
 * "about 16.0 TiB" (one decimal when no unit gives a whole number under
 * 100000).  Returns buf. */
const char *rfs_size_str(uint64_t bytes, char buf[RFS_SIZE_STR]);

#endif
