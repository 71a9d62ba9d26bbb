/*
 * Deterministic replay of the node fuzzer (fuzz_node.h) under ASan/UBSan:
 * real leaf and internal nodes taken from a built tree are mutated (bit
 * flips, slot fields set to edge values, random bytes) and fed to fz_run.
 * Every call must come back with a result or an error.  Inputs saved by
 * `make fuzz` in tests/fuzz/corpus/ are replayed too.
 * RFS_SEED and RFS_STEPS override the seed and the number of inputs.
 */
#include <dirent.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fuzz_super.h"

static uint64_t rng_state;

static uint64_t rnd(void)
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Collect node images from a real tree: build one, commit, read the node
 * blocks from the pool file. */
static size_t collect_seeds(const char *dir, uint8_t seeds[][RFS_BLOCK_SIZE], size_t max)
{
	char path[300];
	rfs_pool *p;
	rfs_tree t = { 0, RFS_OWNER_USER };
	size_t n = 0;

	snprintf(path, sizeof(path), "%s/seed.pool", dir);
	unlink(path);
	assert_int_equal(rfs_pool_create(path, 64ull << 20, 0), 0);
	assert_int_equal(rfs_pool_open(path, 0, &p), 0);
	rfs_pool_wrlock(p);
	for (unsigned i = 0; i < 3000; i++) {
		uint8_t k[24], v[40];
		size_t kl = 1 + i % 23, vl = i % 40;
		memset(k, 'a' + i % 26, kl);
		memcpy(k, &i, sizeof(i) < kl ? sizeof(i) : kl);
		memset(v, (int)i, vl);
		uint8_t fl = 0;
		if (vl >= 8 && i % 7 == 0) {
			memset(v, 0, 8); /* an empty nested tree reference */
			fl = RFS_ITEM_TREE;
		}
		assert_int_equal(rfs_tree_put(p, &t, k, kl, v, vl, fl, RFS_PUT_UPSERT), 0);
	}
	assert_int_equal(rfs_catalog_set(p, 1, &t), 0);
	assert_int_equal(rfs_pool_commit_locked(p), 0);
	struct rfs_pool_stats st;
	rfs_pool_stats(p, &st);
	rfs_pool_unlock(p);
	rfs_pool_close(p);

	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	for (uint64_t b = st.data_start; b < st.high_water && n < max; b++) {
		struct rfs_block_header h;
		if (pread(fd, seeds[n], RFS_BLOCK_SIZE, (off_t)(b * RFS_BLOCK_SIZE)) !=
		    RFS_BLOCK_SIZE)
			break;
		memcpy(&h, seeds[n], sizeof(h));
		if (h.magic == RFS_META_MAGIC && h.type == RFS_BT_NODE)
			n++;
	}
	close(fd);
	unlink(path);
	return n;
}

static void mutate(uint8_t *in, size_t len)
{
	unsigned n = 1 + (unsigned)(rnd() % 8);

	for (unsigned i = 0; i < n; i++) {
		size_t at = 1 + (size_t)(rnd() % (len - 1));
		switch (rnd() % 5) {
		case 0: /* bit flip */
			in[at] ^= (uint8_t)(1u << (rnd() % 8));
			break;
		case 1: /* random byte */
			in[at] = (uint8_t)rnd();
			break;
		case 2: { /* a slot or header u16 set to an edge value */
			static const uint16_t edge[] = { 0, 1, 8, 48, 512, 513, 1024,
							 1025, 4088, 4095, 4096, 0xffff };
			size_t off = 1 + (size_t)(rnd() % 64) * 2; /* header + slots */
			uint16_t v = edge[rnd() % (sizeof(edge) / sizeof(edge[0]))];
			if (off + 2 <= len)
				memcpy(in + off, &v, 2);
			break;
		}
		case 3: /* item flags */
			in[1 + 8 + (size_t)(rnd() % 32) * 8 + 6] = (uint8_t)(rnd() % 4);
			break;
		default: /* the level byte */
			in[0] = (uint8_t)rnd();
			break;
		}
	}
}

static void test_replay(void **state)
{
	(void)state;
	const char *dir = getenv("RFS_TEST_DIR") ? getenv("RFS_TEST_DIR") : "/tmp";
	const char *s = getenv("RFS_SEED");
	const char *st = getenv("RFS_STEPS");
	uint64_t seed = s ? strtoull(s, NULL, 0) : 20261122;
	unsigned steps = st ? (unsigned)strtoul(st, NULL, 0) : 5000;
	static uint8_t seeds[64][RFS_BLOCK_SIZE];
	uint8_t in[1 + RFS_BLOCK_SIZE - RFS_BLOCK_HEADER_SIZE];
	struct fz f;
	size_t nseeds;
	int ok_total = 0;

	printf("fuzz replay: RFS_SEED=%" PRIu64 " RFS_STEPS=%u\n", seed, steps);
	rng_state = seed;
	nseeds = collect_seeds(dir, seeds, 64);
	assert_true(nseeds >= 3); /* leaves and at least one internal node */
	assert_int_equal(fz_setup(&f, dir), 0);

	/* Unmutated leaves must mostly work: this checks the harness itself
	 * (a catalog leaf's nested references point nowhere in this pool). */
	int seed_ok = 0, leaves = 0;
	for (size_t i = 0; i < nseeds; i++) {
		struct rfs_block_header h;
		memcpy(&h, seeds[i], sizeof(h));
		in[0] = h.level;
		memcpy(in + 1, seeds[i] + RFS_BLOCK_HEADER_SIZE, sizeof(in) - 1);
		if (h.level == 0) {
			leaves++;
			seed_ok += fz_run(&f, in, sizeof(in));
		}
	}
	assert_true(leaves > 0);
	assert_true(seed_ok > 10 * leaves);
	for (unsigned i = 0; i < steps; i++) {
		const uint8_t *sd = seeds[rnd() % nseeds];
		struct rfs_block_header h;
		memcpy(&h, sd, sizeof(h));
		in[0] = h.level;
		memcpy(in + 1, sd + RFS_BLOCK_HEADER_SIZE, sizeof(in) - 1);
		mutate(in, sizeof(in));
		ok_total += fz_run(&f, in, (size_t)(rnd() % sizeof(in)) + 1);
	}
	/* Saved crashers and interesting inputs from `make fuzz`. */
	DIR *d = opendir("tests/fuzz/corpus");
	struct dirent *e;
	while (d && (e = readdir(d))) {
		char p[512];
		uint8_t buf[sizeof(in)];
		if (e->d_name[0] == '.')
			continue;
		snprintf(p, sizeof(p), "tests/fuzz/corpus/%s", e->d_name);
		FILE *fp = fopen(p, "rb");
		if (!fp)
			continue;
		size_t n = fread(buf, 1, sizeof(buf), fp);
		fclose(fp);
		fz_run(&f, buf, n);
	}
	if (d)
		closedir(d);
	fz_teardown(&f);
	/* Mutations of valid nodes still often leave readable trees. */
	assert_true(ok_total > 0);
}

/* Superblock fields set to edge values (the fields are u64/u32 words). */
static void test_super_replay(void **state)
{
	(void)state;
	const char *dir = getenv("RFS_TEST_DIR") ? getenv("RFS_TEST_DIR") : "/tmp";
	const char *st = getenv("RFS_STEPS");
	unsigned steps = st ? (unsigned)strtoul(st, NULL, 0) / 10 : 500;
	uint8_t in[1 + sizeof(struct rfs_super_disk)];
	struct fzs f;
	int opened = 0;

	rng_state = 77;
	assert_int_equal(fzs_setup(&f, dir), 0);
	/* The unchanged superblock must open and work (in[0] bit 1: copy 0
	 * only). */
	for (unsigned mode = 0; mode < 4; mode++) {
		in[0] = (uint8_t)mode;
		memcpy(in + 1, f.image_super[mode & 1], sizeof(in) - 1);
		assert_true(fzs_run(&f, in, sizeof(in)) >= 5);
	}
	for (unsigned i = 0; i < steps; i++) {
		static const uint64_t edge[] = { 0, 1, 2, 3, 4095, 4096, 4097, 65536,
						 UINT32_MAX, UINT64_MAX, UINT64_MAX >> 12,
						 1ull << 40 };
		unsigned slot = (unsigned)(rnd() % 2);
		/* Mostly both copies (the fields are then used), sometimes
		 * copy 0 only (open then has the valid copy 1). */
		in[0] = (uint8_t)(slot | (rnd() % 4 == 0 ? 2 : 0));
		memcpy(in + 1, f.image_super[slot], sizeof(in) - 1);
		unsigned n = 1 + (unsigned)(rnd() % 3);
		for (unsigned k = 0; k < n; k++) {
			size_t word = 1 + (size_t)(rnd() % ((sizeof(in) - 1) / 8));
			uint64_t v = rnd() % 3 ? edge[rnd() % 12] : rnd();
			size_t off = 1 + (word - 1) * 8;
			memcpy(in + off, &v, 8);
		}
		opened += fzs_run(&f, in, sizeof(in)) > 0;
	}
	fzs_teardown(&f);
	/* The other slot stays valid, so most damaged pools still open. */
	assert_true(opened > 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_replay),
		cmocka_unit_test(test_super_replay),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
