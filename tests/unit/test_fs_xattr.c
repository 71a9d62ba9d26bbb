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

#include "common/fsfix.h"
#include "reflinkfs/fs.h"
#include "reflinkfs/log.h"
/* Only to plant xattrs that older versions accepted (test_legacy_names). */
#include "fs/fs_internal.h"

static const struct rfs_ctx g_ctx = {.uid = 1000, .gid = 1000, .pid = 1};

static rfs_fs *fresh(void)
{
	return fx_fresh(64 << 20, 0);
}

static rfs_fs *reopen(rfs_fs *fs)
{
	return fx_reopen(fs, 0);
}

static rfs_nodeid mkfile(rfs_fs *fs, const char *name)
{
	return fx_create(fs, &g_ctx, RFS_ROOT_NODE, name);
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
		int r = rfs_fs_setxattr(fs, &g_ctx, f, cases[i].name, "v", 1, 0);
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
	assert_int_equal(rfs_fs_setxattr(fs, &g_ctx, f, lng, "v", 1, 0), 0);
	lng[255] = 'a';
	lng[256] = 0;
	assert_int_equal(rfs_fs_setxattr(fs, &g_ctx, f, lng, "v", 1, 0), -ERANGE);
	assert_int_equal(rfs_fs_setxattr(fs, &g_ctx, f, "", "v", 1, 0), -ERANGE);
	/* the value limit is checked before the namespace, as by the kernel */
	char *big = calloc(1, RFS_XATTR_MAX + 1);
	assert_non_null(big);
	assert_int_equal(rfs_fs_setxattr(fs, &g_ctx, f, "user.big", big, RFS_XATTR_MAX + 1, 0), -E2BIG);
	assert_int_equal(rfs_fs_setxattr(fs, &g_ctx, f, "bogus.big", big, RFS_XATTR_MAX + 1, 0), -E2BIG);
	assert_int_equal(rfs_fs_setxattr(fs, &g_ctx, f, "user.big", big, RFS_XATTR_MAX, 0), 0);
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
	assert_int_equal(rfs_fs_setxattr(fs, &g_ctx, f, "bogus.x", "new", 3, 0), -EOPNOTSUPP);
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
			int r = rfs_fs_setxattr(fs, &g_ctx, d, names[k], acl, n, 0);
			if (r != cases[i].err)
				fail_msg("%s, %s: %d, expected %d", names[k], cases[i].what, r, cases[i].err);
		}
	}
	/* length and version */
	size_t n;
	for (size_t k = 0; k < 2; k++) {
		n = mkacl(acl, 2, ACL({UO, 7, NOID}, {GO, 5, NOID}, {O, 4, NOID}));
		assert_int_equal(rfs_fs_setxattr(fs, &g_ctx, d, names[k], acl, n - 2, 0), -EINVAL);
		assert_int_equal(rfs_fs_setxattr(fs, &g_ctx, d, names[k], acl, 2, 0), -EINVAL);
		/* ext4: posix_acl_from_xattr answers a wrong version with
		 * EOPNOTSUPP */
		size_t n1 = mkacl(acl, 1, ACL({UO, 7, NOID}, {GO, 5, NOID}, {O, 4, NOID}));
		assert_int_equal(rfs_fs_setxattr(fs, &g_ctx, d, names[k], acl, n1, 0), -EOPNOTSUPP);
	}
	/* An empty value or a header without entries removes the ACL (the
	 * kernel turns both into a NULL ACL); removing an absent ACL is no
	 * error (ext4). */
	n = mkacl(acl, 2, ACL({UO, 7, NOID}, {U, 7, 1000}, {GO, 5, NOID}, {M, 7, NOID}, {O, 4, NOID}));
	for (size_t k = 0; k < 2; k++) {
		assert_int_equal(rfs_fs_setxattr(fs, &g_ctx, d, names[k], acl, n, 0), 0);
		assert_int_equal(rfs_fs_getxattr(fs, d, names[k], got, sizeof(got)), (ssize_t)n);
		assert_int_equal(rfs_fs_setxattr(fs, &g_ctx, d, names[k], acl, 4, 0), 0);
		assert_int_equal(rfs_fs_getxattr(fs, d, names[k], got, sizeof(got)), -ENODATA);
		assert_int_equal(rfs_fs_setxattr(fs, &g_ctx, d, names[k], acl, 4, 0), 0);
		assert_int_equal(rfs_fs_removexattr(fs, d, names[k]), 0);
		assert_int_equal(rfs_fs_setxattr(fs, &g_ctx, d, names[k], acl, n, 0), 0);
		assert_int_equal(rfs_fs_setxattr(fs, &g_ctx, d, names[k], acl, 0, 0), 0);
		assert_int_equal(rfs_fs_getxattr(fs, d, names[k], got, sizeof(got)), -ENODATA);
	}
	/* a default ACL belongs to directories only (EACCES), but removing
	 * one from a file is fine */
	rfs_nodeid f = mkfile(fs, "f");
	assert_int_equal(rfs_fs_setxattr(fs, &g_ctx, f, names[1], acl, n, 0), -EACCES);
	assert_int_equal(rfs_fs_setxattr(fs, &g_ctx, f, names[1], acl, 4, 0), 0);
	assert_int_equal(rfs_fs_removexattr(fs, f, names[1]), 0);
	fs = reopen(fs);
	rfs_fs_close(fs);
}

/* ---- space --------------------------------------------------------------- */

/* Set name (value empty); returns the setxattr result. */
static int setname(rfs_fs *fs, rfs_nodeid f, const char *fmt, int i)
{
	char name[64];
	snprintf(name, sizeof(name), fmt, i);
	return rfs_fs_setxattr(fs, &g_ctx, f, name, "", 0, 0);
}

/* Remove every xattr of f, from its list. */
static void remove_all(rfs_fs *fs, rfs_nodeid f)
{
	ssize_t len = rfs_fs_listxattr(fs, f, NULL, 0);
	assert_true(len >= 0);
	char *list = malloc((size_t)len + 1);
	assert_non_null(list);
	assert_int_equal(rfs_fs_listxattr(fs, f, list, (size_t)len), len);
	for (ssize_t o = 0; o < len; o += (ssize_t)strlen(list + o) + 1)
		assert_int_equal(rfs_fs_removexattr(fs, f, list + o), 0);
	free(list);
	assert_int_equal(rfs_fs_listxattr(fs, f, NULL, 0), 0);
}

/* The name list stops at the kernel's 64 KiB (XATTR_LIST_MAX), so that
 * listxattr through the kernel never fails with E2BIG; every state stays
 * listable and removable, across remounts. */
static void test_name_list_limit(void **state)
{
	(void)state;
	rfs_fs *fs = fresh();
	rfs_nodeid f = mkfile(fs, "f");
	const int each = 16; /* "user.%010d" and its NUL */
	int i = 0, r;
	while ((r = setname(fs, f, "user.%010d", i)) == 0)
		i++;
	assert_int_equal(r, -ENOSPC);
	assert_int_equal(i, RFS_XATTR_LIST_MAX / each);
	assert_int_equal(rfs_fs_listxattr(fs, f, NULL, 0), i * each);
	/* fill it to the byte: free one name, add one a byte longer */
	assert_int_equal(rfs_fs_removexattr(fs, f, "user.0000000000"), 0);
	int room = RFS_XATTR_LIST_MAX - (i - 1) * each;
	char name[64];
	memset(name, 'n', sizeof(name));
	memcpy(name, "user.", 5);
	name[room - 1] = 0;
	assert_int_equal(rfs_fs_setxattr(fs, &g_ctx, f, name, "x", 1, 0), 0);
	assert_int_equal(rfs_fs_listxattr(fs, f, NULL, 0), RFS_XATTR_LIST_MAX);
	assert_int_equal(rfs_fs_setxattr(fs, &g_ctx, f, "user.b", "", 0, 0), -ENOSPC);
	/* an access ACL that does not fit leaves the mode alone */
	uint8_t acl[64];
	struct stat st;
	size_t an = mkacl(acl, 2, ACL({UO, 7, NOID}, {U, 7, 1000}, {GO, 5, NOID}, {M, 0, NOID}, {O, 0, NOID}));
	assert_int_equal(rfs_fs_setxattr(fs, &g_ctx, f, "system.posix_acl_access", acl, an, 0), -ENOSPC);
	assert_int_equal(rfs_fs_getattr(fs, f, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0644);
	/* a full list still takes new values for its names */
	assert_int_equal(rfs_fs_setxattr(fs, &g_ctx, f, "user.0000000001", "value", 5, 0), 0);
	assert_int_equal(rfs_fs_setxattr(fs, &g_ctx, f, name, "", 0, XATTR_REPLACE), 0);
	assert_int_equal(rfs_fs_setxattr(fs, &g_ctx, f, name, "", 0, XATTR_CREATE), -EEXIST);
	char *list = malloc(RFS_XATTR_LIST_MAX);
	assert_non_null(list);
	assert_int_equal(rfs_fs_listxattr(fs, f, list, RFS_XATTR_LIST_MAX), RFS_XATTR_LIST_MAX);
	free(list);
	/* the limit holds after a remount (the usage is counted again) */
	fs = reopen(fs);
	f = node_of(fs, "f");
	assert_int_equal(rfs_fs_setxattr(fs, &g_ctx, f, "user.b", "", 0, 0), -ENOSPC);
	assert_int_equal(rfs_fs_removexattr(fs, f, "user.0000000002"), 0);
	assert_int_equal(rfs_fs_setxattr(fs, &g_ctx, f, "user.b", "", 0, 0), 0);
	remove_all(fs, f);
	assert_int_equal(setname(fs, f, "user.%010d", 1), 0);
	fs = reopen(fs);
	rfs_fs_close(fs);
}

/* Names and values of one inode stop at RFS_XATTR_TOTAL_MAX; only growth
 * is refused. */
static void test_total_limit(void **state)
{
	(void)state;
	rfs_fs *fs = fresh();
	rfs_nodeid d;
	struct stat st;
	assert_int_equal(rfs_fs_mkdir(fs, &g_ctx, RFS_ROOT_NODE, "d", 0755, &d, &st), 0);
	char *big = malloc(RFS_XATTR_MAX);
	assert_non_null(big);
	memset(big, 'b', RFS_XATTR_MAX);
	const size_t each = strlen("user.v00") + RFS_XATTR_MAX;
	char name[32];
	int i, r;
	for (i = 0;; i++) {
		snprintf(name, sizeof(name), "user.v%02d", i);
		r = rfs_fs_setxattr(fs, &g_ctx, d, name, big, RFS_XATTR_MAX, 0);
		if (r)
			break;
	}
	assert_int_equal(r, -ENOSPC);
	assert_int_equal(i, RFS_XATTR_TOTAL_MAX / each);
	assert_int_equal(rfs_fs_getxattr(fs, d, name, NULL, 0), -ENODATA);
	/* what is left is less than a full value; a small one still fits */
	size_t left = RFS_XATTR_TOTAL_MAX - (size_t)i * each - strlen(name);
	assert_true(left < RFS_XATTR_MAX);
	assert_int_equal(rfs_fs_setxattr(fs, &g_ctx, d, name, big, left + 1, 0), -ENOSPC);
	assert_int_equal(rfs_fs_setxattr(fs, &g_ctx, d, name, big, left, 0), 0);
	assert_int_equal(rfs_fs_setxattr(fs, &g_ctx, d, "user.x", "", 0, 0), -ENOSPC);
	/* shrink a value, and the room comes back; grow it again: refused */
	assert_int_equal(rfs_fs_setxattr(fs, &g_ctx, d, "user.v00", "s", 1, 0), 0);
	assert_int_equal(rfs_fs_setxattr(fs, &g_ctx, d, "user.x", big, 1000, 0), 0);
	/* A refusal by the limits is not a shortage of space: no commit to
	 * make room, even though frees are pending. */
	struct rfs_pool_stats before, after;
	rfs_pool_stats(rfs_fs_pool(fs), &before);
	assert_true(before.pending_free > 0);
	assert_int_equal(rfs_fs_setxattr(fs, &g_ctx, d, "user.v00", big, RFS_XATTR_MAX, 0), -ENOSPC);
	rfs_pool_stats(rfs_fs_pool(fs), &after);
	assert_int_equal(after.commits, before.commits);
	assert_int_equal(rfs_fs_getxattr(fs, d, "user.v00", NULL, 0), 1);
	fs = reopen(fs);
	d = node_of(fs, "d");
	assert_int_equal(rfs_fs_setxattr(fs, &g_ctx, d, "user.v00", big, RFS_XATTR_MAX, 0), -ENOSPC);
	assert_int_equal(rfs_fs_getxattr(fs, d, "user.v01", NULL, 0), RFS_XATTR_MAX);
	remove_all(fs, d);
	free(big);
	fs = reopen(fs);
	rfs_fs_close(fs);
}

/* An inode over the limits (an older version set no limit) can always be
 * brought back under them. */
static void test_legacy_over_limit(void **state)
{
	(void)state;
	rfs_fs *fs = fresh();
	rfs_nodeid f = mkfile(fs, "f");
	const int n = 4500; /* 4500 * 16 bytes: over 64 KiB */
	rfs_pool_wrlock(fs->pool);
	struct rfs_ipath p;
	assert_int_equal(ip_load(fs, node_get(fs, f), true, &p), 0);
	int r = 0;
	for (int i = 0; i < n && !r; i++) {
		char name[32];
		snprintf(name, sizeof(name), "user.%010d", i);
		r = xattr_put_locked(fs, ip_tree(&p), name, "", 0);
	}
	assert_int_equal(ip_done(fs, &p, 0, r), 0);
	rfs_pool_unlock(fs->pool);
	fs = reopen(fs);
	f = node_of(fs, "f");
	assert_int_equal(rfs_fs_listxattr(fs, f, NULL, 0), n * 16);
	assert_int_equal(rfs_fs_setxattr(fs, &g_ctx, f, "user.new", "", 0, 0), -ENOSPC);
	assert_int_equal(rfs_fs_setxattr(fs, &g_ctx, f, "user.0000000005", "v", 1, 0), 0);
	assert_int_equal(rfs_fs_removexattr(fs, f, "user.0000000007"), 0);
	assert_int_equal(rfs_fs_setxattr(fs, &g_ctx, f, "user.new", "", 0, 0), -ENOSPC);
	remove_all(fs, f);
	assert_int_equal(rfs_fs_setxattr(fs, &g_ctx, f, "user.new", "", 0, 0), 0);
	fs = reopen(fs);
	rfs_fs_close(fs);
}

/* The usage counts xattrs set other than by setxattr: an inherited ACL,
 * and a whole-file clone keeps the destination's own. */
static void test_usage_counts_everything(void **state)
{
	(void)state;
	rfs_fs *fs = fresh();
	rfs_nodeid d, f, g;
	struct stat st;
	uint8_t acl[64];
	assert_int_equal(rfs_fs_mkdir(fs, &g_ctx, RFS_ROOT_NODE, "d", 0755, &d, &st), 0);
	size_t n = mkacl(acl, 2, ACL({UO, 7, NOID}, {U, 7, 1000}, {GO, 5, NOID}, {M, 7, NOID}, {O, 4, NOID}));
	assert_int_equal(rfs_fs_setxattr(fs, &g_ctx, d, "system.posix_acl_default", acl, n, 0), 0);
	assert_int_equal(rfs_fs_create(fs, &g_ctx, d, "f", 0644, &f, &st), 0);
	const int acl_name = sizeof("system.posix_acl_access");
	assert_int_equal(rfs_fs_listxattr(fs, f, NULL, 0), acl_name);
	int i = 0;
	while (setname(fs, f, "user.%010d", i) == 0)
		i++;
	assert_int_equal(i, (RFS_XATTR_LIST_MAX - acl_name) / 16);
	/* clone f's data onto g: g keeps its own two names, and its room */
	g = mkfile(fs, "g");
	assert_int_equal(rfs_fs_write(fs, f, "data", 4, 0), 4);
	assert_int_equal(setname(fs, g, "user.g%d", 1), 0);
	assert_int_equal(setname(fs, g, "user.g%d", 2), 0);
	assert_int_equal(rfs_fs_clone_file(fs, f, g), 0);
	assert_int_equal(rfs_fs_listxattr(fs, g, NULL, 0), 2 * 8);
	int j = 0;
	while (setname(fs, g, "user.%010d", j) == 0)
		j++;
	assert_int_equal(j, (RFS_XATTR_LIST_MAX - 2 * 8) / 16);
	assert_int_equal(setname(fs, f, "user.%010d", i), -ENOSPC);
	fs = reopen(fs);
	rfs_fs_close(fs);
}

/* ---- the set-gid bit (fstests generic/375) ------------------------------- */

/* Setting an access ACL clears the set-gid bit when the caller is not in
 * the file's group and lacks CAP_FSETID (Linux's posix_acl_update_mode). */
static void test_acl_clears_sgid(void **state)
{
	(void)state;
	rfs_fs *fs = fresh();
	uint8_t full[64], min[64];
	size_t fn = mkacl(full, 2, ACL({UO, 7, NOID}, {U, 7, 2000}, {GO, 7, NOID}, {M, 7, NOID}, {O, 5, NOID}));
	size_t mn = mkacl(min, 2, ACL({UO, 6, NOID}, {GO, 7, NOID}, {O, 5, NOID}));
	const uint32_t other_groups[] = {1, 2, 3};
	const uint32_t with_file_group[] = {1, 4242, 3};
	const struct rfs_ctx outsider = {.uid = 1000, .gid = 1000, .groups = other_groups, .ngroups = 3};
	const struct rfs_ctx by_gid = {.uid = 1000, .gid = 4242};
	const struct rfs_ctx by_groups = {.uid = 1000, .gid = 1000, .groups = with_file_group, .ngroups = 3};
	const struct rfs_ctx fsetid = {.uid = 1000, .gid = 1000, .cap_fsetid = true};
	const struct {
		const char *what;
		const struct rfs_ctx *ctx;
		bool minimal;
		bool keeps;
	} cases[] = {
		{"outsider, ACL with a named user", &outsider, false, false},
		{"outsider, ACL equal to the mode", &outsider, true, false},
		{"caller's gid is the file's", &by_gid, false, true},
		{"file's group among the caller's groups", &by_groups, true, true},
		{"caller holds CAP_FSETID", &fsetid, false, true},
		{"no caller (trusted)", NULL, false, true},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char name[16];
		snprintf(name, sizeof(name), "f%zu", i);
		rfs_nodeid f = mkfile(fs, name);
		struct stat in = {0}, st;
		in.st_gid = 4242;
		in.st_mode = 02775;
		assert_int_equal(rfs_fs_setattr(fs, f, &in, RFS_SET_GID | RFS_SET_MODE, NULL), 0);
		const uint8_t *acl = cases[i].minimal ? min : full;
		size_t n = cases[i].minimal ? mn : fn;
		assert_int_equal(rfs_fs_setxattr(fs, cases[i].ctx, f, "system.posix_acl_access", acl, n, 0), 0);
		assert_int_equal(rfs_fs_getattr(fs, f, &st), 0);
		uint32_t want = (cases[i].minimal ? 0675 : 0775) | (cases[i].keeps ? S_ISGID : 0);
		if ((st.st_mode & 07777) != want)
			fail_msg("%s: mode %o, expected %o", cases[i].what, st.st_mode & 07777, want);
	}
	/* a default ACL, or removing the ACL, does not touch the mode */
	rfs_nodeid d;
	struct stat in = {0}, st;
	assert_int_equal(rfs_fs_mkdir(fs, &g_ctx, RFS_ROOT_NODE, "d", 0755, &d, &st), 0);
	in.st_gid = 4242;
	in.st_mode = 02775;
	assert_int_equal(rfs_fs_setattr(fs, d, &in, RFS_SET_GID | RFS_SET_MODE, NULL), 0);
	assert_int_equal(rfs_fs_setxattr(fs, &outsider, d, "system.posix_acl_default", full, fn, 0), 0);
	assert_int_equal(rfs_fs_removexattr(fs, d, "system.posix_acl_access"), 0);
	assert_int_equal(rfs_fs_getattr(fs, d, &st), 0);
	assert_int_equal(st.st_mode & 07777, 02775);
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
		cmocka_unit_test(test_name_list_limit),
		cmocka_unit_test(test_total_limit),
		cmocka_unit_test(test_legacy_over_limit),
		cmocka_unit_test(test_usage_counts_everything),
		cmocka_unit_test(test_acl_clears_sgid),
	};
	return cmocka_run_group_tests(tests, fx_setup, fx_teardown);
}
