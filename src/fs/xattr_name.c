/*
 * Which xattr names exist.  FUSE passes every name through to the daemon
 * (the kernel's fuse xattr handler has an empty prefix), so the rules a
 * Linux filesystem gets from its xattr handlers are applied here, with
 * ext4's answers: user., trusted. and security. followed by at least one
 * byte, and the two POSIX ACL names of system.; any other name (bogus.x,
 * os2.x, system.foo, ...) is EOPNOTSUPP, a known prefix alone is EINVAL.
 * Who may use trusted. and security. is the kernel's business (it checks
 * before sending the request).
 */
#include "fs/fs_internal.h"

static const char *const prefixes[] = {"user.", "trusted.", "security."};

int xattr_name_check(const char *name, size_t *nl)
{
	size_t l = strnlen(name, RFS_XATTR_NAME_MAX + 1);
	if (l == 0 || l > RFS_XATTR_NAME_MAX)
		return -ERANGE;
	*nl = l;
	for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
		size_t pl = strlen(prefixes[i]);
		if (!strncmp(name, prefixes[i], pl))
			return l > pl ? 0 : -EINVAL;
	}
	if (!strcmp(name, RFS_ACL_ACCESS) || !strcmp(name, RFS_ACL_DEFAULT))
		return 0;
	return -EOPNOTSUPP;
}
