/*
 * `reflinkfs diff` through ioctls on a directory of the mount
 * (RFS_IOC_DIFF_START, RFS_IOC_DIFF_REPORT; see fs.h), in the scrub's
 * style: the result belongs to the directory it was computed on and the
 * process that asked (fh_session.h), and is freed when that process is
 * gone, so an interrupted `reflinkfs diff` leaves nothing behind.
 */
#include "fuse/rfs_fuse.h"
#include "fuse/fh_session.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void diff_free(void *d)
{
	rfs_diff_end(d);
}

static struct fh_table g_diffs = FH_TABLE_INIT(diff_free);

void rfs_fuse_diff_release_all(void)
{
	fh_session_release_all(&g_diffs);
}

static int diff_start(rfs_fs *fs, const struct fh_key *key, rfs_nodeid a, rfs_nodeid b,
		      struct rfs_ioc_diff_start *out)
{
	int ret;
	struct fh_session *s = fh_session_get(&g_diffs, key, true, &ret);
	if (!s)
		return ret;
	rfs_diff_end(s->data); /* a new start replaces an earlier result */
	rfs_diff *d = NULL;
	ret = rfs_diff_begin(fs, a, b, &d);
	s->data = d;
	if (!ret)
		rfs_diff_get_stats(d, &out->st);
	fh_session_put(s);
	return ret;
}

static size_t cut(const char *p, uint8_t *flags)
{
	size_t n = p ? strlen(p) : 0;
	if (n > RFS_IOC_DIFF_PATH_MAX) {
		*flags |= RFS_IOC_DIFF_CUT;
		n = RFS_IOC_DIFF_PATH_MAX;
	}
	return n;
}

static int diff_report(const struct fh_key *key, struct rfs_ioc_diff_report *rep)
{
	int ret;
	struct fh_session *s = fh_session_get(&g_diffs, key, false, &ret);
	if (!s)
		return ret == -ENOENT ? -EINVAL : ret; /* no diff started by this caller here */
	rfs_diff *d = s->data;
	if (!d) {
		fh_session_put(s);
		return -EINVAL;
	}
	struct rfs_diff_record r;
	size_t used = 0;
	uint64_t i = rep->first;
	rep->count = 0;
	while (rfs_diff_record(d, i, &r) == 0) {
		struct rfs_ioc_diff_rec h = {.op = (uint8_t)r.op, .what = r.what, .mode = r.mode,
					     .ino = r.ino};
		h.pathlen = (uint32_t)cut(r.path, &h.flags);
		h.oldlen = (uint32_t)cut(r.old_path, &h.flags);
		size_t need = (sizeof(h) + h.pathlen + h.oldlen + 7) & ~(size_t)7;
		if (used + need > sizeof(rep->buf))
			break;
		memcpy(rep->buf + used, &h, sizeof(h));
		memcpy(rep->buf + used + sizeof(h), r.path, h.pathlen);
		if (h.oldlen)
			memcpy(rep->buf + used + sizeof(h) + h.pathlen, r.old_path, h.oldlen);
		used += need;
		rep->count++;
		i++;
	}
	fh_session_put(s);
	return 0;
}

int rfs_fuse_diff_ioctl(rfs_fs *fs, const struct fuse_ctx *ctx, const struct fh_key *key,
			unsigned cmd, rfs_nodeid a, rfs_nodeid b, const void *in, size_t in_size,
			void *out, size_t out_size)
{
	/* The result names files anywhere below A and B: root or the owner. */
	if (ctx->uid != 0 && ctx->uid != getuid())
		return -EPERM;
	if (cmd == RFS_IOC_DIFF_START) {
		if (out_size < sizeof(struct rfs_ioc_diff_start))
			return -EINVAL;
		memset(out, 0, sizeof(struct rfs_ioc_diff_start));
		return diff_start(fs, key, a, b, out);
	}
	if (in_size < sizeof(struct rfs_ioc_diff_report) ||
	    out_size < sizeof(struct rfs_ioc_diff_report))
		return -EINVAL;
	struct rfs_ioc_diff_report *rep = out;
	uint64_t first;
	memcpy(&first, in, sizeof(first));
	memset(rep, 0, sizeof(*rep));
	rep->first = first;
	return diff_report(key, rep);
}
