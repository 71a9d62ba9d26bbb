/*
 * Deterministic replay of the inode record fuzzer (fuzz_irec.h) under
 * ASan/UBSan: real records in both forms, mutated (bit flips, random
 * bytes, cut short, presence bits set), each given to fz_irec in a buffer
 * of its exact size; then the inputs `make fuzz` saved in
 * tests/fuzz/corpus-irec/.  RFS_STEPS overrides the number of inputs.
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <sys/stat.h>

#include "fuzz_irec.h"

static uint64_t rng_state = 9;

static uint64_t rnd(void)
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static int run_exact(const uint8_t *v, size_t n)
{
	uint8_t *exact = malloc(n ? n : 1); /* exact size: ASan sees overreads */
	assert_non_null(exact);
	memcpy(exact, v, n);
	int ok = fz_irec(exact, n);
	free(exact);
	return ok;
}

static void test_irec_replay(void **state)
{
	(void)state;
	const char *st = getenv("RFS_STEPS");
	unsigned steps = st ? (unsigned)strtoul(st, NULL, 0) * 4 : 20000;
	uint8_t v[RFS_VAL_MAX];
	static struct rfs_irec r;
	int decoded = 0, refused = 0;
	for (unsigned i = 0; i < steps; i++) {
		memset(&r, 0, sizeof(r));
		r.i.ino = rnd() % 3 ? rnd() % 100000 : rnd() >> 16;
		r.i.mode = (uint32_t)(rnd() % 2 ? S_IFREG | 0644 : rnd());
		r.i.nlink = (uint32_t)(rnd() % 3);
		r.i.size = rnd() >> (rnd() % 64);
		r.i.mtime = (int64_t)(rnd() >> (rnd() % 64));
		r.i.ctime = rnd() % 2 ? r.i.mtime : (int64_t)rnd();
		r.i.atime_ns = (uint32_t)(rnd() % 1000000000);
		r.i.flags = (uint32_t)(rnd() % 256);
		r.i.generation = (uint32_t)(rnd() % 3);
		r.i.volume = rnd() % 4 ? 0 : rnd();
		r.taillen = (size_t)(rnd() % 64);
		memset(r.tail, (int)i, r.taillen);
		size_t n = rec_encode(&r, v, rnd() % 4 != 0);
		unsigned edits = 1 + (unsigned)(rnd() % 4);
		for (unsigned e = 0; e < edits; e++) {
			switch (rnd() % 4) {
			case 0: v[rnd() % n] ^= (uint8_t)(1u << (rnd() % 8)); break;
			case 1: v[rnd() % n] = (uint8_t)rnd(); break;
			case 2: n = 1 + (size_t)(rnd() % n); break;
			default:
				if (n > 15)
					v[14 + rnd() % 2] |= (uint8_t)(1u << (rnd() % 8));
				break;
			}
		}
		if (run_exact(v, n))
			decoded++;
		else
			refused++;
	}
	/* both outcomes are exercised */
	assert_true(decoded > 0);
	assert_true(refused > 0);
	DIR *d = opendir("tests/fuzz/corpus-irec");
	struct dirent *e;
	while (d && (e = readdir(d))) {
		char p[512];
		if (e->d_name[0] == '.')
			continue;
		snprintf(p, sizeof(p), "tests/fuzz/corpus-irec/%s", e->d_name);
		FILE *fp = fopen(p, "rb");
		if (!fp)
			continue;
		size_t n = fread(v, 1, sizeof(v), fp);
		fclose(fp);
		run_exact(v, n);
	}
	if (d)
		closedir(d);
}

int main(void)
{
	rfs_log_set_level(-1); /* every refused value logs a line */
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_irec_replay),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
