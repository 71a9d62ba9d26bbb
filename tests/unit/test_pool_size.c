/*
 * Pool sizes: the one parser of sizes given on the command line
 * (src/util/size.c), and what rfs_pool_create says about sizes it cannot
 * take (below the minimum, above the maximum, past the largest file the
 * backing filesystem or RLIMIT_FSIZE allows).
 */
#include "common/testutil.h"

#include <sys/resource.h>
#include <sys/statvfs.h>

#include "util/size.h"

static void test_parse(void **state)
{
	(void)state;
	static const struct {
		const char *s;
		uint64_t v;
	} good[] = {
		{"4096", 4096},
		{"16M", 16ull << 20},
		{"16m", 16ull << 20},
		{"10G", 10ull << 30},
		{"10GiB", 10ull << 30},
		{"10GB", 10ull << 30},
		{"3T", 3ull << 40},
		{"2P", 2ull << 50},
		{"15E", 15ull << 60},
		{"512K", 512ull << 10},
		{"100B", 100},
		{"0", 0},
		{"18446744073709551615", UINT64_MAX},
	};
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		uint64_t v = 1;
		const char *why = "unset";
		int r = rfs_size_parse(good[i].s, &v, &why);
		CHECK(r == 0 && v == good[i].v, "'%s': %d (%s), %" PRIu64, good[i].s, r,
		      why ? why : "", v);
	}
	static const struct {
		const char *s;
		int err;
		const char *says;
	} bad[] = {
		{"-5", -EINVAL, "negative"},
		{"-0", -EINVAL, "negative"},
		{"+5", -EINVAL, "not a number"},
		{" 5", -EINVAL, "not a number"},
		{"", -EINVAL, "empty"},
		{"abc", -EINVAL, "not a number"},
		{"1.5G", -EINVAL, "fractions"},
		{"1,5G", -EINVAL, "fractions"},
		{"10X", -EINVAL, "unknown unit"},
		{"10 G", -EINVAL, "unknown unit"},
		{"10GG", -EINVAL, "unknown unit"},
		{"1e9", -EINVAL, "unknown unit"},
		{"0x10", -EINVAL, "unknown unit"},
		{"5G ", -EINVAL, "unknown unit"},
		{"16E", -ERANGE, "16 EiB"},
		{"1000000000P", -ERANGE, "16 EiB"},
		{"18446744073709551616", -ERANGE, "16 EiB"},
		{"99999999999999999999999", -ERANGE, "16 EiB"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint64_t v = 7;
		const char *why = NULL;
		int r = rfs_size_parse(bad[i].s, &v, &why);
		CHECK(r == bad[i].err, "'%s': %d, expected %d", bad[i].s, r, bad[i].err);
		CHECK(v == 7, "'%s' changed the output", bad[i].s);
		CHECK(why && strstr(why, bad[i].says), "'%s': says '%s', expected '%s'", bad[i].s,
		      why ? why : "(nothing)", bad[i].says);
	}
}

static void test_size_str(void **state)
{
	(void)state;
	char b[RFS_SIZE_STR];
	assert_string_equal(rfs_size_str(0, b), "0 bytes");
	assert_string_equal(rfs_size_str(1023, b), "1023 bytes");
	assert_string_equal(rfs_size_str(16ull << 20, b), "16 MiB");
	assert_string_equal(rfs_size_str(1536ull << 20, b), "1536 MiB");
	assert_string_equal(rfs_size_str((16ull << 40) - 4096, b), "about 16.0 TiB");
	assert_string_equal(rfs_size_str(1ull << 62, b), "4 EiB");
	assert_string_equal(rfs_size_str(UINT64_MAX, b), "about 16.0 EiB");
}

static bool log_says(const char *what)
{
	for (size_t i = 0; i < tu_log.n; i++)
		if (strstr(tu_log.lines[i], what))
			return true;
	return false;
}

static void test_create_limits(void **state)
{
	(void)state;
	char dir[PATH_MAX], path[PATH_MAX + 16];
	struct stat st;
	tu_mkdtemp(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/pool", dir);
	tu_log_capture();

	tu_log_clear();
	RC(rfs_pool_create(path, RFS_POOL_MIN_BYTES - RFS_BLOCK_SIZE, 0), -EINVAL);
	CHECK(log_says("below the minimum of 16 MiB"), "no message");
	CHECK(stat(path, &st) < 0, "a pool file was left behind");

	tu_log_clear();
	RC(rfs_pool_create(path, RFS_POOL_MAX_BYTES + RFS_BLOCK_SIZE, 0), -EFBIG);
	CHECK(log_says("above the largest pool, 4 EiB"), "no message");
	CHECK(stat(path, &st) < 0, "a pool file was left behind");

	/* RLIMIT_FSIZE (ulimit -f) below the pool: EFBIG, named, nothing
	 * left behind */
	struct rlimit old, lim;
	OK(getrlimit(RLIMIT_FSIZE, &old));
	lim = old;
	lim.rlim_cur = 64ull << 20;
	OK(setrlimit(RLIMIT_FSIZE, &lim));
	tu_log_clear();
	int r = rfs_pool_create(path, 128ull << 20, 0);
	OK(setrlimit(RLIMIT_FSIZE, &old));
	RC(r, -EFBIG);
	CHECK(log_says("ulimit -f: 64 MiB"), "no message naming the limit");
	CHECK(stat(path, &st) < 0, "a pool file was left behind");

	/* a sparse pool far larger than the free space is fine, as long as
	 * the filesystem takes a file of that size */
	struct statvfs sv;
	OK(statvfs(dir, &sv));
	uint64_t big = ((uint64_t)sv.f_bavail * sv.f_frsize + (1ull << 30)) & ~((1ull << 20) - 1);
	tu_log_clear();
	r = rfs_pool_create(path, big, 0);
	if (r == -EFBIG) /* a filesystem with a small file size limit */
		CHECK(log_says("allows for one file"), "EFBIG without naming the limit");
	else
		OK(r);
	unlink(path);
	rfs_log_set_sink(NULL, NULL);
	tu_log_clear();
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_size_str),
		cmocka_unit_test(test_create_limits),
	};
	return tu_exit(cmocka_run_group_tests(tests, NULL, NULL));
}
