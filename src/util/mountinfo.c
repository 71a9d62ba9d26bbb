/* Reading /proc/self/mountinfo (see mountinfo.h). */
#include "util/mountinfo.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Undo the kernel's octal escapes of ' ', '\t', '\n' and '\\' in place. */
static void unescape(char *s)
{
	char *out = s;
	while (*s) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
		    s[3] >= '0' && s[3] <= '7') {
			*out++ = (char)((s[1] - '0') << 6 | (s[2] - '0') << 3 | (s[3] - '0'));
			s += 4;
		} else {
			*out++ = *s++;
		}
	}
	*out = 0;
}

/* Next space-separated field of *p, NUL-terminated; NULL at the end. */
static char *field(char **p)
{
	char *s = *p;
	while (*s == ' ')
		s++;
	if (!*s)
		return NULL;
	char *e = s;
	while (*e && *e != ' ')
		e++;
	if (*e)
		*e++ = 0;
	*p = e;
	return s;
}

bool rfs_mountinfo_parse(char *line, struct rfs_mountinfo *m)
{
	char *p = line, *f[6];
	line[strcspn(line, "\n")] = 0;
	for (int i = 0; i < 6; i++)
		if (!(f[i] = field(&p)))
			return false;
	/* optional fields up to the "-" separator */
	char *sep;
	do {
		sep = field(&p);
	} while (sep && strcmp(sep, "-"));
	char *type = sep ? field(&p) : NULL;
	char *source = type ? field(&p) : NULL;
	char *super = source ? field(&p) : NULL;
	if (!super)
		return false;
	char *end;
	m->id = (int)strtol(f[0], &end, 10);
	if (*end)
		return false;
	m->parent = (int)strtol(f[1], &end, 10);
	if (*end || sscanf(f[2], "%u:%u", &m->major, &m->minor) != 2)
		return false;
	char *strs[] = {f[3], f[4], f[5], type, source, super};
	for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
		unescape(strs[i]);
	m->root = f[3];
	m->mnt = f[4];
	m->mnt_opts = f[5];
	m->type = type;
	m->source = source;
	m->super_opts = super;
	return true;
}

int rfs_mountinfo_each(const char *path, int (*fn)(void *arg, const struct rfs_mountinfo *m),
		       void *arg)
{
	FILE *f = fopen(path ? path : "/proc/self/mountinfo", "re");
	char *line = NULL;
	size_t cap = 0;
	int ret = 0;
	if (!f)
		return -errno;
	while (!ret && getline(&line, &cap, f) > 0) {
		struct rfs_mountinfo m;
		if (rfs_mountinfo_parse(line, &m))
			ret = fn(arg, &m);
	}
	free(line);
	fclose(f);
	return ret;
}

bool rfs_mountinfo_has_opt(const char *opts, const char *opt)
{
	size_t n = strlen(opt);
	for (const char *p = opts; p && *p;) {
		const char *c = strchr(p, ',');
		size_t len = c ? (size_t)(c - p) : strlen(p);
		if (len == n && !memcmp(p, opt, n))
			return true;
		p = c ? c + 1 : NULL;
	}
	return false;
}

struct find_mnt {
	const char *mnt;
	char *pool;
	size_t size;
	unsigned major, minor;
	int id;
};

static int find_mnt_cb(void *arg, const struct rfs_mountinfo *m)
{
	struct find_mnt *a = arg;
	if (strcmp(m->mnt, a->mnt))
		return 0;
	/* the last mount on a mount point is the one on top */
	a->id = strcmp(m->type, "fuse.reflinkfs") ? 0 : m->id;
	if (a->id) {
		a->major = m->major;
		a->minor = m->minor;
		if (a->pool)
			snprintf(a->pool, a->size, "%s", m->source);
	}
	return 0;
}

int rfs_mountinfo_find_mnt(const char *mnt, char *pool, size_t size, unsigned *major,
			   unsigned *minor)
{
	struct find_mnt a = {.mnt = mnt, .pool = pool, .size = size};
	if (rfs_mountinfo_each(NULL, find_mnt_cb, &a) < 0)
		return 0;
	if (a.id && major)
		*major = a.major;
	if (a.id && minor)
		*minor = a.minor;
	return a.id;
}

static int pool_cb(void *arg, const struct rfs_mountinfo *m)
{
	return !strcmp(m->type, "fuse.reflinkfs") && !strcmp(m->source, (const char *)arg);
}

bool rfs_mountinfo_pool_mounted(const char *pool)
{
	return rfs_mountinfo_each(NULL, pool_cb, (void *)pool) > 0;
}
