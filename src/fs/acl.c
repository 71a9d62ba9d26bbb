/*
 * POSIX ACLs.  They are the xattrs system.posix_acl_access and
 * system.posix_acl_default, stored like any other xattr; the kernel
 * enforces them (FUSE_CAP_POSIX_ACL).  The filesystem's part, as for any
 * Linux filesystem: inherit a directory's default ACL into new inodes
 * (instead of applying the umask), keep the mode bits and the access ACL
 * in sync on chmod and on setting an ACL.
 *
 * Xattr representation (linux/posix_acl_xattr.h): u32 version 2, then
 * entries {u16 tag, u16 perm, u32 id}.
 */
#include "fs/fs_internal.h"

#include <stdint.h>
#include <stdlib.h>

#define ACL_VERSION 2
enum {
	TAG_USER_OBJ = 0x01,
	TAG_USER = 0x02,
	TAG_GROUP_OBJ = 0x04,
	TAG_GROUP = 0x08,
	TAG_MASK = 0x10,
	TAG_OTHER = 0x20,
};

struct acl_ent {
	uint16_t tag;
	uint16_t perm;
	uint32_t id;
};

const char RFS_ACL_ACCESS[] = "system.posix_acl_access";
const char RFS_ACL_DEFAULT[] = "system.posix_acl_default";

/*
 * Validate an ACL xattr value as the kernel does (posix_acl_from_xattr,
 * then posix_acl_valid): the version must be 2 (else -EOPNOTSUPP), the
 * length a header plus whole entries; entries come in the order
 * user_obj, named users, group_obj, named groups, mask, other, with one
 * each of user_obj, group_obj and other, at most one mask, and a mask
 * when there are named entries; named entries carry a valid id (not -1).
 * Like Linux, the order and uniqueness of named entries among themselves
 * is not checked.  An empty value or a header alone is an empty ACL
 * (returns 0: the caller removes the ACL, as the kernel does with a NULL
 * ACL).  Returns the number of entries, or -EINVAL / -EOPNOTSUPP.
 */
int acl_valid(const void *val, size_t size)
{
	uint32_t ver;
	if (size == 0)
		return 0;
	if (size < 4)
		return -EINVAL;
	memcpy(&ver, val, 4);
	if (ver != ACL_VERSION)
		return -EOPNOTSUPP;
	if ((size - 4) % sizeof(struct acl_ent))
		return -EINVAL;
	size_t n = (size - 4) / sizeof(struct acl_ent);
	/* state: the tag expected next (posix_acl_valid's state machine) */
	int state = TAG_USER_OBJ;
	bool needs_mask = false;
	for (size_t i = 0; i < n; i++) {
		struct acl_ent e;
		memcpy(&e, (const uint8_t *)val + 4 + i * sizeof(e), sizeof(e));
		if (e.perm & ~7u)
			return -EINVAL;
		switch (e.tag) {
		case TAG_USER_OBJ:
			if (state != TAG_USER_OBJ)
				return -EINVAL;
			state = TAG_USER;
			break;
		case TAG_USER:
			if (state != TAG_USER || e.id == UINT32_MAX)
				return -EINVAL;
			needs_mask = true;
			break;
		case TAG_GROUP_OBJ:
			if (state != TAG_USER)
				return -EINVAL;
			state = TAG_GROUP;
			break;
		case TAG_GROUP:
			if (state != TAG_GROUP || e.id == UINT32_MAX)
				return -EINVAL;
			needs_mask = true;
			break;
		case TAG_MASK:
			if (state != TAG_GROUP)
				return -EINVAL;
			state = TAG_OTHER;
			break;
		case TAG_OTHER:
			if (state != TAG_OTHER && (state != TAG_GROUP || needs_mask))
				return -EINVAL;
			state = 0;
			break;
		default:
			return -EINVAL;
		}
	}
	if (n && state != 0)
		return -EINVAL;
	return (int)n;
}

static struct acl_ent *ent(void *val, size_t i)
{
	return (struct acl_ent *)((uint8_t *)val + 4 + i * sizeof(struct acl_ent));
}

/* The mode bits an access ACL stands for. */
uint32_t acl_to_mode(const void *val, size_t size, uint32_t mode)
{
	size_t n = (size - 4) / sizeof(struct acl_ent);
	int grp = -1;
	mode &= ~0777u;
	for (size_t i = 0; i < n; i++) {
		struct acl_ent e;
		memcpy(&e, (const uint8_t *)val + 4 + i * sizeof(e), sizeof(e));
		if (e.tag == TAG_USER_OBJ)
			mode |= (uint32_t)e.perm << 6;
		else if (e.tag == TAG_OTHER)
			mode |= e.perm;
		else if (e.tag == TAG_MASK)
			grp = e.perm;
		else if (e.tag == TAG_GROUP_OBJ && grp < 0)
			grp = e.perm | 0x100;
	}
	if (grp >= 0)
		mode |= (uint32_t)(grp & 7) << 3;
	return mode;
}

/* True when the ACL says no more than the mode bits (3 entries). */
bool acl_is_minimal(const void *val, size_t size)
{
	(void)val; /* a valid ACL of 3 entries is user::, group::, other:: */
	return size == 4 + 3 * sizeof(struct acl_ent);
}

/* posix_acl_chmod: set the owner, group (mask) and other entries. */
void acl_chmod(void *val, size_t size, uint32_t mode)
{
	size_t n = (size - 4) / sizeof(struct acl_ent);
	struct acl_ent *grp = NULL, *mask = NULL;
	for (size_t i = 0; i < n; i++) {
		struct acl_ent *e = ent(val, i), x;
		memcpy(&x, e, sizeof(x));
		if (x.tag == TAG_USER_OBJ)
			x.perm = (mode >> 6) & 7;
		else if (x.tag == TAG_OTHER)
			x.perm = mode & 7;
		else if (x.tag == TAG_GROUP_OBJ)
			grp = e;
		else if (x.tag == TAG_MASK)
			mask = e;
		memcpy(e, &x, sizeof(x));
	}
	struct acl_ent *g = mask ? mask : grp;
	if (g) {
		struct acl_ent x;
		memcpy(&x, g, sizeof(x));
		x.perm = (mode >> 3) & 7;
		memcpy(g, &x, sizeof(x));
	}
}

/* posix_acl_create: turn a copy of the default ACL into the new inode's
 * access ACL, masking with mode; *mode is masked with the ACL. */
void acl_create(void *val, size_t size, uint32_t *mode)
{
	size_t n = (size - 4) / sizeof(struct acl_ent);
	struct acl_ent *grp = NULL, *mask = NULL;
	uint32_t m = *mode;
	for (size_t i = 0; i < n; i++) {
		struct acl_ent *e = ent(val, i), x;
		memcpy(&x, e, sizeof(x));
		switch (x.tag) {
		case TAG_USER_OBJ:
			x.perm &= (m >> 6) & 7;
			m &= ((uint32_t)x.perm << 6) | ~0700u;
			break;
		case TAG_OTHER:
			x.perm &= m & 7;
			m &= x.perm | ~07u;
			break;
		case TAG_GROUP_OBJ:
			grp = e;
			break;
		case TAG_MASK:
			mask = e;
			break;
		}
		memcpy(e, &x, sizeof(x));
	}
	struct acl_ent *g = mask ? mask : grp;
	if (g) {
		struct acl_ent x;
		memcpy(&x, g, sizeof(x));
		x.perm &= (m >> 3) & 7;
		m &= ((uint32_t)x.perm << 3) | ~070u;
		memcpy(g, &x, sizeof(x));
	}
	*mode = m;
}

/* Read a whole xattr from tree t into a malloc'd buffer (NULL when absent). */
static int xattr_read(rfs_fs *fs, const rfs_tree *t, const char *name, uint8_t **out,
		      size_t *size)
{
	size_t nl = strlen(name), total = 0;
	uint8_t *buf = NULL;
	*out = NULL;
	*size = 0;
	if (!t->root)
		return 0;
	for (uint16_t c = 0;; c++) {
		uint8_t key[RFS_KEY_MAX];
		key[0] = 'X';
		memcpy(key + 1, name, nl);
		key[1 + nl] = 0;
		put_be16(key + 2 + nl, c);
		uint8_t *nb = realloc(buf, total + RFS_VAL_MAX);
		if (!nb) {
			free(buf);
			return -ENOMEM;
		}
		buf = nb;
		size_t vl = RFS_VAL_MAX;
		int ret = rfs_tree_lookup(fs->pool, t, key, nl + 4, buf + total, &vl, NULL);
		if (ret == -ENOENT) {
			if (c == 0) {
				free(buf);
				return 0;
			}
			break;
		}
		if (ret) {
			free(buf);
			return ret;
		}
		total += vl;
		if (vl < RFS_VAL_MAX)
			break;
	}
	*out = buf;
	*size = total;
	return 0;
}

int acl_inherit(rfs_fs *fs, const struct rfs_irec *dir, struct rfs_irec *child,
		uint32_t umask)
{
	rfs_tree dt = FS_TREE(dir->i.subtree, RFS_OWNER_DIR);
	uint8_t *def;
	size_t size;
	uint32_t mode = child->i.mode;
	if (S_ISLNK(mode))
		return 0;
	int ret = xattr_read(fs, &dt, RFS_ACL_DEFAULT, &def, &size);
	if (ret)
		return ret;
	if (!def || acl_valid(def, size) <= 0) {
		child->i.mode &= ~(umask & 0777);
		free(def);
		return 0;
	}
	rfs_tree ct = FS_TREE(child->i.subtree, rec_owner(&child->i));
	if (S_ISDIR(mode))
		ret = xattr_put_locked(fs, &ct, RFS_ACL_DEFAULT, def, size);
	uint32_t perm = mode & 07777;
	acl_create(def, size, &perm);
	child->i.mode = (mode & S_IFMT) | perm;
	if (!ret && !acl_is_minimal(def, size))
		ret = xattr_put_locked(fs, &ct, RFS_ACL_ACCESS, def, size);
	child->i.subtree = ct.root;
	free(def);
	return ret;
}

int acl_update_on_chmod(rfs_fs *fs, rfs_tree *t, uint32_t mode)
{
	uint8_t *acl;
	size_t size;
	int ret = xattr_read(fs, t, RFS_ACL_ACCESS, &acl, &size);
	if (ret || !acl)
		return ret;
	if (acl_valid(acl, size) > 0) {
		acl_chmod(acl, size, mode);
		ret = xattr_put_locked(fs, t, RFS_ACL_ACCESS, acl, size);
	}
	free(acl);
	return ret;
}

/* Linux's posix_acl_permission: may the caller (uid, groups as in ctx)
 * do want (bits 4 read, 2 write, 1 execute) on an inode of owner uid /
 * gid with this access ACL?  0 or -EACCES. */
int acl_permission(const void *val, size_t size, const struct rfs_ctx *ctx, uint32_t uid,
		   uint32_t gid, unsigned want)
{
	size_t n = size >= 4 ? (size - 4) / sizeof(struct acl_ent) : 0;
	struct acl_ent e, pa = {0};
	bool found = false, have = false;
	size_t i;
	for (i = 0; i < n && !have; i++) {
		memcpy(&e, (const uint8_t *)val + 4 + i * sizeof(e), sizeof(e));
		switch (e.tag) {
		case TAG_USER_OBJ:
			if (ctx->uid == uid)
				return (e.perm & want) == want ? 0 : -EACCES;
			break;
		case TAG_USER:
			if (ctx->uid == e.id) {
				pa = e;
				have = true;
			}
			break;
		case TAG_GROUP_OBJ:
		case TAG_GROUP:
			if (ctx_in_group(ctx, e.tag == TAG_GROUP_OBJ ? gid : e.id)) {
				found = true;
				if ((e.perm & want) == want) {
					pa = e;
					have = true;
				}
			}
			break;
		case TAG_OTHER:
			if (found)
				return -EACCES;
			return (e.perm & want) == want ? 0 : -EACCES;
		}
	}
	if (!have)
		return -EACCES;
	/* a named or group entry: masked by the mask entry, when there is one */
	for (; i < n; i++) {
		memcpy(&e, (const uint8_t *)val + 4 + i * sizeof(e), sizeof(e));
		if (e.tag == TAG_MASK)
			return (pa.perm & e.perm & want) == want ? 0 : -EACCES;
	}
	return (pa.perm & want) == want ? 0 : -EACCES;
}
