/*
 * Online scrub through ioctls on a directory of the mount
 * (RFS_IOC_SCRUB_STEP, RFS_IOC_SCRUB_REPORT; see fs.h).  A scrub belongs
 * to the directory and the process that started it (fh_session.h); it
 * ends when that process is gone, so a `reflinkfs scrub` that is
 * interrupted or killed leaves nothing behind.
 *
 * Each step works for about STEP_NS, in pieces of PIECE units under the
 * pool's read lock (rfs_scrub_step), so one FUSE worker is busy at most
 * that long and writers wait at most one piece.
 */
#include "fuse/rfs_fuse.h"
#include "fuse/fh_session.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "reflinkfs/log.h"

#define STEP_NS 200000000ll /* 0.2 s of work per ioctl */
#define PIECE 256           /* units per read-lock hold (about 1 MiB) */
#define LOG_MAX 100         /* damage lines logged per scrub */

static void scrub_free(void *sc)
{
	rfs_scrub_end(sc);
}

static struct fh_table g_scrubs = FH_TABLE_INIT(scrub_free);

void rfs_fuse_scrub_release_all(void)
{
	fh_session_release_all(&g_scrubs);
}

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

/* The scrub just finished: leave its outcome in the daemon's log. */
static void log_outcome(rfs_scrub *sc, const struct rfs_scrub_stats *st)
{
	struct rfs_scrub_record r;
	int level = st->damaged_blocks || st->meta_errors ? RFS_LOG_ERR : RFS_LOG_INFO;
	rfs_log(level, "scrub: %llu data blocks checked, %llu damaged (%llu files affected), %llu unreadable trees",
		(unsigned long long)st->data_blocks, (unsigned long long)st->damaged_blocks,
		(unsigned long long)st->files_affected, (unsigned long long)st->meta_errors);
	for (uint64_t i = 0; i < LOG_MAX && rfs_scrub_record(sc, i, &r) == 0; i++) {
		if (r.kind == RFS_SCRUB_DATA)
			rfs_log(RFS_LOG_ERR, "scrub: volume %llu: data block %llu: %s: %s at offset %llu",
				(unsigned long long)r.volume, (unsigned long long)r.blocknr,
				r.err == -EBADMSG ? "checksum mismatch" : strerror(-r.err),
				r.path ? r.path : "(unnamed inode)", (unsigned long long)r.offset);
		else
			rfs_log(RFS_LOG_ERR, "scrub: volume %llu: tree of %s unreadable: %s",
				(unsigned long long)r.volume, r.path && *r.path ? r.path : "(volume)",
				strerror(-r.err));
	}
}

static int scrub_step(rfs_fs *fs, const struct fh_key *key, struct rfs_ioc_scrub_step *out)
{
	int ret;
	struct fh_session *s = fh_session_get(&g_scrubs, key, true, &ret);
	if (!s)
		return ret;
	if (!s->data) { /* the first step starts it */
		rfs_scrub *sc = NULL;
		ret = rfs_scrub_begin(fs, &sc);
		s->data = sc;
		if (ret) {
			fh_session_put(s);
			return ret;
		}
	}
	rfs_scrub *sc = s->data;
	int64_t start = now_ns();
	bool was_done;
	rfs_scrub_get_stats(sc, &out->st);
	was_done = out->st.done;
	do
		ret = rfs_scrub_step(sc, PIECE);
	while (ret == 1 && now_ns() - start < STEP_NS);
	rfs_scrub_get_stats(sc, &out->st);
	if (ret >= 0 && out->st.done && !was_done)
		log_outcome(sc, &out->st);
	fh_session_put(s);
	return ret < 0 ? ret : 0;
}

static int scrub_report(const struct fh_key *key, struct rfs_ioc_scrub_report *rep)
{
	int ret;
	struct fh_session *s = fh_session_get(&g_scrubs, key, false, &ret);
	if (!s)
		return ret == -ENOENT ? -EINVAL : ret; /* no scrub started by this caller here */
	rfs_scrub *sc = s->data;
	if (!sc) {
		fh_session_put(s);
		return -EINVAL;
	}
	struct rfs_scrub_record r;
	size_t used = 0;
	uint64_t i = rep->first;
	rep->count = 0;
	while ((ret = rfs_scrub_record(sc, i, &r)) == 0) {
		size_t plen = r.path ? strlen(r.path) : 0;
		if (plen > RFS_IOC_SCRUB_PATH_MAX)
			plen = RFS_IOC_SCRUB_PATH_MAX;
		size_t need = (sizeof(struct rfs_ioc_scrub_rec) + plen + 7) & ~(size_t)7;
		if (used + need > sizeof(rep->buf))
			break;
		struct rfs_ioc_scrub_rec h = {
			.kind = r.kind, .err = r.err, .blocknr = r.blocknr, .volume = r.volume,
			.ino = r.ino, .offset = r.offset, .pathlen = (uint32_t)plen,
			.flags = r.path ? 0 : 1,
		};
		memcpy(rep->buf + used, &h, sizeof(h));
		memcpy(rep->buf + used + sizeof(h), r.path ? r.path : "", plen);
		used += need;
		rep->count++;
		i++;
	}
	fh_session_put(s);
	return ret == -EBUSY ? -EBUSY : 0; /* -EBUSY: the walk is not done */
}

int rfs_fuse_scrub_ioctl(rfs_fs *fs, const struct fuse_ctx *ctx, const struct fh_key *key,
			 unsigned cmd, const void *in, size_t in_size, void *out, size_t out_size)
{
	/* The report names every file of the mount: root or the owner. */
	if (ctx->uid != 0 && ctx->uid != getuid())
		return -EPERM;
	if (cmd == RFS_IOC_SCRUB_STEP) {
		if (out_size < sizeof(struct rfs_ioc_scrub_step))
			return -EINVAL;
		memset(out, 0, sizeof(struct rfs_ioc_scrub_step));
		return scrub_step(fs, key, out);
	}
	if (in_size < sizeof(struct rfs_ioc_scrub_report) ||
	    out_size < sizeof(struct rfs_ioc_scrub_report))
		return -EINVAL;
	struct rfs_ioc_scrub_report *rep = out;
	uint64_t first;
	memcpy(&first, in, sizeof(first));
	memset(rep, 0, sizeof(*rep));
	rep->first = first;
	return scrub_report(key, rep);
}
