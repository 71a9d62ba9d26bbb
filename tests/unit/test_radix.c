/*
 * Unit tests of the 64-bit radix sort (src/util/radix.h): random keys of
 * every width, runs of equal keys, keys sharing all but one byte, and
 * the trivial sizes, each checked against qsort of the same keys.
 */
#include "../common/testutil.h"

#include <stdlib.h>

#include "util/radix.h"

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static tu_rng g_rng = {0x2545f4914f6cdd1dull}; /* testutil.h */

static uint64_t rnd(void)
{
	return tu_next(&g_rng);
}

/* Sort n keys made by gen with radix_sort_u64 and qsort: equal. */
static void check_sort(size_t n, uint64_t (*gen)(size_t i, unsigned arg), unsigned arg)
{
	uint64_t *a = malloc((n + 1) * sizeof(*a)), *b = malloc((n + 1) * sizeof(*b));
	uint64_t *tmp = malloc((n + 1) * sizeof(*tmp));
	assert_non_null(a);
	assert_non_null(b);
	assert_non_null(tmp);
	for (size_t i = 0; i < n; i++)
		a[i] = b[i] = gen(i, arg);
	radix_sort_u64(a, tmp, n);
	qsort(b, n, sizeof(*b), cmp_u64);
	for (size_t i = 0; i < n; i++)
		if (a[i] != b[i])
			fail_msg("n %zu arg %u: key %zu is %#llx, want %#llx", n, arg, i,
				 (unsigned long long)a[i], (unsigned long long)b[i]);
	free(a);
	free(b);
	free(tmp);
}

/* Random keys of arg bits. */
static uint64_t gen_bits(size_t i, unsigned bits)
{
	(void)i;
	return bits == 64 ? rnd() : rnd() & ((1ull << bits) - 1);
}

/* Few distinct keys: long runs of equal ones. */
static uint64_t gen_few(size_t i, unsigned arg)
{
	(void)i;
	return (rnd() % 5) << arg;
}

/* Keys that differ only in byte arg, over a shared random value. */
static uint64_t gen_one_byte(size_t i, unsigned byte)
{
	(void)i;
	return 0x1234567890abcdefull ^ ((rnd() & 0xff) << (8 * byte));
}

/* Descending keys. */
static uint64_t gen_desc(size_t i, unsigned arg)
{
	(void)arg;
	return ~(uint64_t)i;
}

static void test_random_widths(void **state)
{
	(void)state;
	for (unsigned bits = 1; bits <= 64; bits += 7)
		check_sort(5000, gen_bits, bits);
	check_sort(20000, gen_bits, 64);
}

static void test_shapes(void **state)
{
	(void)state;
	for (unsigned s = 0; s < 64; s += 13)
		check_sort(3000, gen_few, s);
	for (unsigned byte = 0; byte < 8; byte++)
		check_sort(3000, gen_one_byte, byte);
	check_sort(4096, gen_desc, 0);
	/* Around the switch to insertion sort for a few keys. */
	for (size_t n = 3; n < 100; n += 6)
		check_sort(n, gen_bits, 40);
	check_sort(0, gen_bits, 64);
	check_sort(1, gen_bits, 64);
	check_sort(2, gen_desc, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_random_widths),
		cmocka_unit_test(test_shapes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
