/*
 * Xattrs and POSIX ACLs through the fs API: which names and values are
 * refused and with which errno (the answers of ext4 on Linux 6.18, checked
 * with setxattr(2) on an ext4 mount: see the comments of each case).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "reflinkfs/fs.h"
#include "reflinkfs/log.h"
/* Only to plant xattrs that older versions accepted (test_legacy_names). */
#include "fs/fs_internal.h"

static char g_dir[4096];
static char g_pool[4200];
static const struct rfs_ctx g_ctx = {1000, 1000, 1, 0};

static void fsck_line(void *arg, const char *what)
{
	(void)arg;
	fprintf(stderr, "fsck: %s\n", what);
}

static int setup(void **state)
{
	(void)state;
	const char *base = getenv("RFS_TEST_DIR");
	snprintf(g_dir, sizeof(g_dir), "%s/fsxXXXXXX", base && *base ? base : "/tmp");
	if (!mkdtemp(g_dir))
		return -1;
	snprintf(g_pool, sizeof(g_pool), "%s/pool", g_dir);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	unlink(g_pool);
	rmdir(g_dir);
	return 0;
}

static rfs_fs *fresh(void)
{
	rfs_fs *fs;
	unlink(g_pool);
	assert_int_equal(rfs_fs_mkfs(g_pool, 64 << 20, 0), 0);
	assert_int_equal(rfs_fs_open(g_pool, 0, &fs), 0);
	return fs;
}

static rfs_fs *reopen(rfs_fs *fs)
{
	assert_int_equal(rfs_fs_close(fs), 0);
	assert_int_equal(rfs_fs_fsck(g_pool, fsck_line, NULL), 0);
	assert_int_equal(rfs_fs_open(g_pool, 0, &fs), 0);
	return fs;
}

static rfs_nodeid mkfile(rfs_fs *fs, const char *name)
{
	rfs_nodeid n;
	struct stat st;
	assert_int_equal(rfs_fs_create(fs, &g_ctx, RFS_ROOT_NODE, name, 0644, &n, &st), 0);
	return n;
}

static rfs_nodeid node_of(rfs_fs *fs, const char *path)
{
	rfs_nodeid n;
	struct stat st;
	assert_int_equal(rfs_fs_resolve(fs, path, &n, &st), 0);
	return n;
}

/* ---- names -------------------------------------------------------------- */

static void test_namespaces(void **state)
{
	(void)state;
	rfs_fs *fs = fresh();
	rfs_nodeid f = mkfile(fs, "f");
	static const struct {
		const char *name;
		int err;
	} cases[] = {
		/* ext4: no handler for the prefix -> EOPNOTSUPP */
		{"bogus.x", -EOPNOTSUPP},
		{"os2.x", -EOPNOTSUPP},
		{"xfsroot.x", -EOPNOTSUPP},
		{"system.foo", -EOPNOTSUPP},
		{"system.", -EOPNOTSUPP},
		{"system.data", -EOPNOTSUPP},
		{"system.nfs4_acl", -EOPNOTSUPP},
		{"system.posix_acl_accessX", -EOPNOTSUPP},
		{"user", -EOPNOTSUPP},
		{"User.x", -EOPNOTSUPP},
		/* ext4: a known prefix with nothing after it -> EINVAL */
		{"user.", -EINVAL},
		{"trusted.", -EINVAL},
		{"security.", -EINVAL},
		{"user.a", 0},
		{"trusted.a", 0},
		{"security.a", 0},
		{"user.with.dots", 0},
	};
	char list[256];
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int r = rfs_fs_setxattr(fs, f, cases[i].name, "v", 1, 0);
		if (r != cases[i].err)
			fail_msg("setxattr %s: %d, expected %d", cases[i].name, r, cases[i].err);
		if (cases[i].err) {
			/* nothing stored: get and remove answer like set */
			r = (int)rfs_fs_getxattr(fs, f, cases[i].name, list, sizeof(list));
			if (r != cases[i].err)
				fail_msg("getxattr %s: %d", cases[i].name, r);
			r = rfs_fs_removexattr(fs, f, cases[i].name);
			if (r != cases[i].err)
				fail_msg("removexattr %s: %d", cases[i].name, r);
		}
	}
	static const char want[] = "security.a\0trusted.a\0user.a\0user.with.dots";
	assert_int_equal(rfs_fs_listxattr(fs, f, list, sizeof(list)), sizeof(want));
	assert_memory_equal(list, want, sizeof(want));
	/* name lengths: empty or longer than 255 bytes is ERANGE (as the
	 * kernel's setxattr(2) answers before any filesystem sees it) */
	char lng[300];
	memset(lng, 'a', sizeof(lng));
	memcpy(lng, "user.", 5);
	lng[255] = 0;
	assert_int_equal(rfs_fs_setxattr(fs, f, lng, "v", 1, 0), 0);
	lng[255] = 'a';
	lng[256] = 0;
	assert_int_equal(rfs_fs_setxattr(fs, f, lng, "v", 1, 0), -ERANGE);
	assert_int_equal(rfs_fs_setxattr(fs, f, "", "v", 1, 0), -ERANGE);
	/* the value limit is checked before the namespace, as by the kernel */
	char *big = calloc(1, RFS_XATTR_MAX + 1);
	assert_non_null(big);
	assert_int_equal(rfs_fs_setxattr(fs, f, "user.big", big, RFS_XATTR_MAX + 1, 0), -E2BIG);
	assert_int_equal(rfs_fs_setxattr(fs, f, "bogus.big", big, RFS_XATTR_MAX + 1, 0), -E2BIG);
	assert_int_equal(rfs_fs_setxattr(fs, f, "user.big", big, RFS_XATTR_MAX, 0), 0);
	assert_int_equal(rfs_fs_getxattr(fs, f, "user.big", NULL, 0), RFS_XATTR_MAX);
	free(big);
	fs = reopen(fs);
	rfs_fs_close(fs);
}

/* Names an older version accepted stay readable and removable. */
static void test_legacy_names(void **state)
{
	(void)state;
	rfs_fs *fs = fresh();
	rfs_nodeid f = mkfile(fs, "f");
	/* plant the items the old setxattr wrote */
	rfs_pool_wrlock(fs->pool);
	struct rfs_ipath p;
	assert_int_equal(ip_load(fs, node_get(fs, f), true, &p), 0);
	int r = xattr_put_locked(fs, ip_tree(&p), "bogus.x", "old", 3);
	if (!r)
		r = xattr_put_locked(fs, ip_tree(&p), "user.", "e", 1);
	assert_int_equal(ip_done(fs, &p, 0, r), 0);
	rfs_pool_unlock(fs->pool);
	fs = reopen(fs);
	f = node_of(fs, "f");
	char v[16];
	assert_int_equal(rfs_fs_listxattr(fs, f, v, sizeof(v)), 14);
	assert_int_equal(rfs_fs_getxattr(fs, f, "bogus.x", v, sizeof(v)), 3);
	assert_memory_equal(v, "old", 3);
	assert_int_equal(rfs_fs_setxattr(fs, f, "bogus.x", "new", 3, 0), -EOPNOTSUPP);
	assert_int_equal(rfs_fs_removexattr(fs, f, "bogus.x"), 0);
	assert_int_equal(rfs_fs_removexattr(fs, f, "bogus.x"), -EOPNOTSUPP);
	assert_int_equal(rfs_fs_getxattr(fs, f, "user.", v, sizeof(v)), 1);
	assert_int_equal(rfs_fs_removexattr(fs, f, "user."), 0);
	assert_int_equal(rfs_fs_listxattr(fs, f, v, sizeof(v)), 0);
	fs = reopen(fs);
	rfs_fs_close(fs);
}

/* ---- POSIX ACL values ---------------------------------------------------- */

enum { UO = 1, U = 2, GO = 4, G = 8, M = 0x10, O = 0x20 };
#define NOID 0xffffffffu

struct acl_e {
	uint16_t tag, perm;
	uint32_t id;
};

static size_t mkacl(uint8_t *buf, uint32_t version, const struct acl_e *e, size_t n)
{
	memcpy(buf, &version, 4);
	memcpy(buf + 4, e, n * sizeof(*e));
	return 4 + n * sizeof(*e);
}

#define ACL(...) ((const struct acl_e[]){__VA_ARGS__}), \
	sizeof((const struct acl_e[]){__VA_ARGS__}) / sizeof(struct acl_e)

static void test_acl_values(void **state)
{
	(void)state;
	rfs_fs *fs = fresh();
	struct stat st;
	rfs_nodeid d;
	assert_int_equal(rfs_fs_mkdir(fs, &g_ctx, RFS_ROOT_NODE, "d", 0755, &d, &st), 0);
	/* Each case was set on an ext4 directory (Linux 6.18) as both the
	 * access and the default ACL; the errno is ext4's (the kernel's
	 * posix_acl_from_xattr and posix_acl_valid). */
	static const struct {
		const char *what;
		struct acl_e e[8];
		size_t n;
		int err;
	} cases[] = {
		{"minimal", {{UO, 7, NOID}, {GO, 5, NOID}, {O, 4, NOID}}, 3, 0},
		{"named user with mask",
		 {{UO, 7, NOID}, {U, 7, 1000}, {GO, 5, NOID}, {M, 7, NOID}, {O, 4, NOID}}, 5, 0},
		{"named users out of order (not checked by Linux)",
		 {{UO, 7, NOID}, {U, 7, 1001}, {U, 7, 1000}, {GO, 5, NOID}, {M, 7, NOID}, {O, 4, NOID}}, 6, 0},
		{"named user twice (not checked by Linux)",
		 {{UO, 7, NOID}, {U, 7, 1000}, {U, 6, 1000}, {GO, 5, NOID}, {M, 7, NOID}, {O, 4, NOID}}, 6, 0},
		{"ids of unnamed entries are ignored", {{UO, 7, 5}, {GO, 5, 6}, {O, 4, 7}}, 3, 0},
		{"mask without named entries", {{UO, 7, NOID}, {GO, 5, NOID}, {M, 7, NOID}, {O, 4, NOID}}, 4, 0},
		{"named group with mask",
		 {{UO, 7, NOID}, {GO, 5, NOID}, {G, 7, 10}, {M, 7, NOID}, {O, 4, NOID}}, 5, 0},
		{"perm bit 8", {{UO, 8, NOID}, {GO, 5, NOID}, {O, 4, NOID}}, 3, -EINVAL},
		{"unknown tag", {{UO, 7, NOID}, {GO, 5, NOID}, {0x40, 4, NOID}, {O, 4, NOID}}, 4, -EINVAL},
		{"no user_obj", {{GO, 5, NOID}, {O, 4, NOID}}, 2, -EINVAL},
		{"no group_obj", {{UO, 7, NOID}, {O, 4, NOID}}, 2, -EINVAL},
		{"no other", {{UO, 7, NOID}, {GO, 5, NOID}}, 2, -EINVAL},
		{"user_obj twice", {{UO, 7, NOID}, {UO, 7, NOID}, {GO, 5, NOID}, {O, 4, NOID}}, 4, -EINVAL},
		{"other twice", {{UO, 7, NOID}, {GO, 5, NOID}, {O, 4, NOID}, {O, 4, NOID}}, 4, -EINVAL},
		{"named user without mask", {{UO, 7, NOID}, {U, 7, 1000}, {GO, 5, NOID}, {O, 4, NOID}}, 4, -EINVAL},
		{"named group without mask", {{UO, 7, NOID}, {GO, 5, NOID}, {G, 7, 1}, {O, 4, NOID}}, 4, -EINVAL},
		{"group_obj before user_obj", {{GO, 5, NOID}, {UO, 7, NOID}, {O, 4, NOID}}, 3, -EINVAL},
		{"mask before group_obj",
		 {{UO, 7, NOID}, {U, 7, 1000}, {M, 7, NOID}, {GO, 5, NOID}, {O, 4, NOID}}, 5, -EINVAL},
		{"other before mask", {{UO, 7, NOID}, {GO, 5, NOID}, {O, 4, NOID}, {M, 7, NOID}}, 4, -EINVAL},
		{"mask twice",
		 {{UO, 7, NOID}, {U, 7, 1000}, {GO, 5, NOID}, {M, 7, NOID}, {M, 7, NOID}, {O, 4, NOID}}, 6, -EINVAL},
		{"named group before named user",
		 {{UO, 7, NOID}, {G, 7, 1000}, {U, 7, 1000}, {GO, 5, NOID}, {M, 7, NOID}, {O, 4, NOID}}, 6, -EINVAL},
		{"named group before group_obj",
		 {{UO, 7, NOID}, {G, 7, 1000}, {GO, 5, NOID}, {M, 7, NOID}, {O, 4, NOID}}, 5, -EINVAL},
		{"named user with id -1",
		 {{UO, 7, NOID}, {U, 7, NOID}, {GO, 5, NOID}, {M, 7, NOID}, {O, 4, NOID}}, 5, -EINVAL},
		{"named group with id -1",
		 {{UO, 7, NOID}, {GO, 5, NOID}, {G, 7, NOID}, {M, 7, NOID}, {O, 4, NOID}}, 5, -EINVAL},
	};
	static const char *const names[] = {"system.posix_acl_access", "system.posix_acl_default"};
	uint8_t acl[128], got[128];
	for (size_t k = 0; k < 2; k++) {
		for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
			size_t n = mkacl(acl, 2, cases[i].e, cases[i].n);
			int r = rfs_fs_setxattr(fs, d, names[k], acl, n, 0);
			if (r != cases[i].err)
				fail_msg("%s, %s: %d, expected %d", names[k], cases[i].what, r, cases[i].err);
		}
	}
	/* length and version */
	size_t n;
	for (size_t k = 0; k < 2; k++) {
		n = mkacl(acl, 2, ACL({UO, 7, NOID}, {GO, 5, NOID}, {O, 4, NOID}));
		assert_int_equal(rfs_fs_setxattr(fs, d, names[k], acl, n - 2, 0), -EINVAL);
		assert_int_equal(rfs_fs_setxattr(fs, d, names[k], acl, 2, 0), -EINVAL);
		/* ext4: posix_acl_from_xattr answers a wrong version with
		 * EOPNOTSUPP */
		size_t n1 = mkacl(acl, 1, ACL({UO, 7, NOID}, {GO, 5, NOID}, {O, 4, NOID}));
		assert_int_equal(rfs_fs_setxattr(fs, d, names[k], acl, n1, 0), -EOPNOTSUPP);
	}
	/* An empty value or a header without entries removes the ACL (the
	 * kernel turns both into a NULL ACL); removing an absent ACL is no
	 * error (ext4). */
	n = mkacl(acl, 2, ACL({UO, 7, NOID}, {U, 7, 1000}, {GO, 5, NOID}, {M, 7, NOID}, {O, 4, NOID}));
	for (size_t k = 0; k < 2; k++) {
		assert_int_equal(rfs_fs_setxattr(fs, d, names[k], acl, n, 0), 0);
		assert_int_equal(rfs_fs_getxattr(fs, d, names[k], got, sizeof(got)), (ssize_t)n);
		assert_int_equal(rfs_fs_setxattr(fs, d, names[k], acl, 4, 0), 0);
		assert_int_equal(rfs_fs_getxattr(fs, d, names[k], got, sizeof(got)), -ENODATA);
		assert_int_equal(rfs_fs_setxattr(fs, d, names[k], acl, 4, 0), 0);
		assert_int_equal(rfs_fs_removexattr(fs, d, names[k]), 0);
		assert_int_equal(rfs_fs_setxattr(fs, d, names[k], acl, n, 0), 0);
		assert_int_equal(rfs_fs_setxattr(fs, d, names[k], acl, 0, 0), 0);
		assert_int_equal(rfs_fs_getxattr(fs, d, names[k], got, sizeof(got)), -ENODATA);
	}
	/* a default ACL belongs to directories only (EACCES), but removing
	 * one from a file is fine */
	rfs_nodeid f = mkfile(fs, "f");
	assert_int_equal(rfs_fs_setxattr(fs, f, names[1], acl, n, 0), -EACCES);
	assert_int_equal(rfs_fs_setxattr(fs, f, names[1], acl, 4, 0), 0);
	assert_int_equal(rfs_fs_removexattr(fs, f, names[1]), 0);
	fs = reopen(fs);
	rfs_fs_close(fs);
}

int main(void)
{
	rfs_log_set_level(RFS_LOG_ERR);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_namespaces),
		cmocka_unit_test(test_legacy_names),
		cmocka_unit_test(test_acl_values),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
