/* LSD radix sort of 64-bit keys (radix.h). */
#include "util/radix.h"

#include <string.h>

/* Below this many keys an insertion sort is cheaper than the passes'
 * 256-entry counts (a READ that maps its file's few queued writes). */
#define RADIX_MIN 48

void radix_sort_u64(uint64_t *a, uint64_t *tmp, size_t n)
{
	if (n < RADIX_MIN) {
		for (size_t i = 1; i < n; i++) {
			uint64_t v = a[i];
			size_t j = i;
			for (; j > 0 && a[j - 1] > v; j--)
				a[j] = a[j - 1];
			a[j] = v;
		}
		return;
	}
	/* Bits that differ somewhere: a byte where none does needs no pass. */
	uint64_t all_or = 0, all_and = ~0ull;
	for (size_t i = 0; i < n; i++) {
		all_or |= a[i];
		all_and &= a[i];
	}
	uint64_t diff = all_or ^ all_and;
	uint64_t *src = a, *dst = tmp;
	for (unsigned shift = 0; shift < 64; shift += 8) {
		if (!((diff >> shift) & 0xff))
			continue;
		size_t cnt[256] = {0};
		for (size_t i = 0; i < n; i++)
			cnt[(src[i] >> shift) & 0xff]++;
		size_t sum = 0;
		for (unsigned d = 0; d < 256; d++) {
			size_t c = cnt[d];
			cnt[d] = sum;
			sum += c;
		}
		for (size_t i = 0; i < n; i++)
			dst[cnt[(src[i] >> shift) & 0xff]++] = src[i];
		uint64_t *t = src;
		src = dst;
		dst = t;
	}
	if (src != a)
		memcpy(a, src, n * sizeof(*a));
}
