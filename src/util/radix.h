/*
 * Sorting 64-bit keys: an LSD radix sort, for the delayed mapping's
 * thousands of (block, write) keys per batch (src/fs/file_delay.c),
 * where qsort's comparator calls cost more than the mapping saves.
 */
#ifndef RFS_UTIL_RADIX_H
#define RFS_UTIL_RADIX_H

#include <stddef.h>
#include <stdint.h>

/*
 * Sort a[0..n) ascending, using tmp[0..n) as scratch.  O(n) per byte
 * that differs between the keys: bytes every key shares are skipped, so
 * keys with few significant bits take few passes; a few keys are sorted
 * by insertion.  The result is in a.
 */
void radix_sort_u64(uint64_t *a, uint64_t *tmp, size_t n);

#endif
