/*
 * Unit tests of the mountinfo reader (src/util/mountinfo.h): escapes,
 * optional fields, option lists, malformed lines.
 */
#include "../common/testutil.h"

#include "util/mountinfo.h"

static void test_parse_escapes(void **state)
{
	(void)state;
	char line[] = "42 27 0:39 / /tmp/a\\040b/m\\134x rw,nosuid,nodev,relatime shared:5 master:2 - "
		      "fuse.reflinkfs /tmp/a\\040b/p\\011q rw,user_id=0,group_id=0\n";
	struct rfs_mountinfo m;
	CHECK(rfs_mountinfo_parse(line, &m), "a valid line must parse");
	assert_int_equal(m.id, 42);
	assert_int_equal(m.parent, 27);
	assert_int_equal(m.major, 0);
	assert_int_equal(m.minor, 39);
	assert_string_equal(m.root, "/");
	assert_string_equal(m.mnt, "/tmp/a b/m\\x");
	assert_string_equal(m.mnt_opts, "rw,nosuid,nodev,relatime");
	assert_string_equal(m.type, "fuse.reflinkfs");
	assert_string_equal(m.source, "/tmp/a b/p\tq");
	assert_string_equal(m.super_opts, "rw,user_id=0,group_id=0");
}

static void test_parse_malformed(void **state)
{
	(void)state;
	char no_sep[] = "42 27 0:39 / /m rw shared:5 fuse.x src rw\n";
	char short_line[] = "42 27 0:39 /\n";
	char bad_dev[] = "42 27 zz / /m rw - ext4 /dev/x rw\n";
	char no_super[] = "42 27 0:1 / /m rw - ext4 /dev/x\n";
	struct rfs_mountinfo m;
	CHECK(!rfs_mountinfo_parse(no_sep, &m), "a line without the separator is malformed");
	CHECK(!rfs_mountinfo_parse(short_line, &m), "a short line is malformed");
	CHECK(!rfs_mountinfo_parse(bad_dev, &m), "a bad device number is malformed");
	CHECK(!rfs_mountinfo_parse(no_super, &m), "a line without super options is malformed");
}

static void test_has_opt(void **state)
{
	(void)state;
	CHECK(rfs_mountinfo_has_opt("ro,nosuid", "ro"), "first option");
	CHECK(rfs_mountinfo_has_opt("rw,nosuid", "nosuid"), "last option");
	CHECK(!rfs_mountinfo_has_opt("rw,nosuidx", "nosuid"), "no prefix match");
	CHECK(!rfs_mountinfo_has_opt("rw,xro", "ro"), "no suffix match");
	CHECK(!rfs_mountinfo_has_opt("", "ro"), "empty list");
}

static int count_cb(void *arg, const struct rfs_mountinfo *m)
{
	(void)m;
	return ++*(int *)arg == 2 ? 7 : 0;
}

static void test_each_stops(void **state)
{
	(void)state;
	char dir[] = "/tmp/rfs-mountinfoXXXXXX", path[64];
	CHECK(mkdtemp(dir), "mkdtemp");
	snprintf(path, sizeof(path), "%s/mi", dir);
	FILE *f = fopen(path, "w");
	CHECK(f, "fopen");
	fputs("1 0 8:1 / / rw - ext4 /dev/sda1 rw\n"
	      "garbage\n"
	      "2 1 0:5 / /proc rw - proc proc rw\n"
	      "3 1 0:6 / /sys rw - sysfs sysfs rw\n",
	      f);
	fclose(f);
	int n = 0;
	assert_int_equal(rfs_mountinfo_each(path, count_cb, &n), 7);
	assert_int_equal(n, 2); /* the garbage line is skipped, the callback stops it */
	assert_int_equal(rfs_mountinfo_each("/nonexistent/mountinfo", count_cb, &n), -ENOENT);
	unlink(path);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_escapes),
		cmocka_unit_test(test_parse_malformed),
		cmocka_unit_test(test_has_opt),
		cmocka_unit_test(test_each_stops),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
