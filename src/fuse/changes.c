/*
 * `reflinkfs changes` through RFS_IOC_CHANGES on an open directory of the
 * mount (include/reflinkfs/journal.h): each request reads one page of
 * the journal below that directory.  Stateless: the page's upto and
 * next_from travel with the request, so an interrupted reader leaves
 * nothing behind.
 */
#include "fuse/rfs_fuse.h"

#include "reflinkfs/journal.h"

#include <errno.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

struct fill {
	struct rfs_ioc_changes *p;
};

static int put(void *arg, const struct rfs_change *c)
{
	struct fill *f = arg;
	struct rfs_ioc_changes *p = f->p;
	struct rfs_ioc_change h = {.seq = c->seq,
				   .sec = c->sec,
				   .nsec = c->nsec,
				   .kind = (uint16_t)c->kind,
				   .nranges = (uint8_t)c->nranges,
				   .volume = c->volume,
				   .ino = c->ino,
				   .parent = c->parent,
				   .also = c->also};
	size_t pl = c->path ? strlen(c->path) : 0, ol = c->old_path ? strlen(c->old_path) : 0;
	if (!c->path)
		h.flags |= RFS_IOC_CHANGE_NOPATH;
	if (pl > RFS_IOC_CHANGES_PATH_MAX || ol > RFS_IOC_CHANGES_PATH_MAX) {
		h.flags |= RFS_IOC_CHANGE_CUT;
		pl = pl > RFS_IOC_CHANGES_PATH_MAX ? RFS_IOC_CHANGES_PATH_MAX : pl;
		ol = ol > RFS_IOC_CHANGES_PATH_MAX ? RFS_IOC_CHANGES_PATH_MAX : ol;
	}
	h.pathlen = (uint16_t)pl;
	h.oldlen = (uint16_t)ol;
	size_t rl = c->nranges * sizeof(struct rfs_change_range);
	size_t need = (sizeof(h) + rl + pl + ol + 7) & ~(size_t)7;
	if (p->used + need > sizeof(p->buf))
		return 1; /* page full: the reader asks again from here */
	uint8_t *w = p->buf + p->used;
	memcpy(w, &h, sizeof(h));
	if (rl)
		memcpy(w + sizeof(h), c->ranges, rl);
	if (pl)
		memcpy(w + sizeof(h) + rl, c->path, pl);
	if (ol)
		memcpy(w + sizeof(h) + rl + pl, c->old_path, ol);
	p->used += (uint32_t)need;
	p->count++;
	return 0;
}

/* One page since cursor into p (p's upto and next_from say where). */
static int one_page(rfs_fs *fs, rfs_nodeid dir, const char *cursor, struct rfs_ioc_changes *p)
{
	struct rfs_changes_page page = {.upto = p->upto, .next_from = p->next_from};
	p->count = p->used = 0;
	p->done = 0;
	memset(p->buf, 0, sizeof(p->buf));
	struct fill f = {p};
	int ret = rfs_fs_changes(fs, dir, cursor, &page, put, &f);
	if (ret)
		return ret;
	p->upto = page.upto;
	p->next_from = page.next_from;
	p->done = page.done;
	if (page.done)
		memcpy(p->cursor, page.cursor, sizeof(p->cursor));
	return 0;
}

/* A FUSE interrupt of a waiting request (the follower got a signal or
 * was killed): wake the waiters; ours sees hit and answers EINTR.
 * Called by another libfuse thread while the request is pending. */
struct intr {
	atomic_bool hit;
	rfs_fs *fs;
};

static void on_interrupt(fuse_req_t req, void *data)
{
	(void)req;
	struct intr *x = data;
	atomic_store(&x->hit, true);
	rfs_fs_changes_wake(x->fs);
}

static bool interrupted(void *arg)
{
	return atomic_load(&((struct intr *)arg)->hit);
}

int rfs_fuse_changes_ioctl(fuse_req_t req, rfs_fs *fs, const struct fuse_ctx *ctx,
			   rfs_nodeid dir, const void *in, size_t in_size, void *out,
			   size_t out_size)
{
	/* Changes name files anywhere below: root or the owner of the mount. */
	if (ctx->uid != 0 && ctx->uid != getuid())
		return -EPERM;
	if (in_size < sizeof(struct rfs_ioc_changes) || out_size < sizeof(struct rfs_ioc_changes))
		return -EINVAL;
	struct rfs_ioc_changes *p = out;
	memcpy(p, in, sizeof(*p));
	p->cursor[RFS_CURSOR_MAX - 1] = 0;
	char cursor[RFS_CURSOR_MAX];
	memcpy(cursor, p->cursor, sizeof(cursor));
	bool first = p->upto == 0, commit = p->flags & RFS_IOC_CHANGES_COMMIT;
	bool wait = first && (p->flags & RFS_IOC_CHANGES_WAIT) && p->wait_ms;
	p->flags &= ~(uint32_t)RFS_IOC_CHANGES_WAITED;
	int64_t deadline = rfs_fs_changes_clock_ns() + (int64_t)p->wait_ms * 1000000;
	struct intr x = {false, fs};
	bool registered = wait, waited = wait;
	if (registered)
		fuse_req_interrupt_func(req, on_interrupt, &x);
	int ret;
	for (;;) {
		uint64_t seen = rfs_fs_changes_events(fs);
		ret = first && commit ? rfs_fs_changes_commit(fs, dir) : 0;
		if (!ret)
			ret = one_page(fs, dir, cursor, p);
		if (ret || !wait || p->count || !p->done)
			break;
		/* Nothing below dir yet: sleep until something is recorded
		 * anywhere, then commit it and look again. */
		p->upto = p->next_from = 0;
		ret = rfs_fs_changes_wait(fs, seen, deadline, interrupted, &x);
		if (ret == -EBUSY) {
			ret = one_page(fs, dir, cursor, p); /* the client polls */
			waited = false;
			break;
		}
		if (ret == -ETIMEDOUT) {
			ret = one_page(fs, dir, cursor, p);
			break;
		}
		if (ret)
			break; /* -EINTR */
	}
	/* x dies with this frame: no callback may use it after. */
	if (registered)
		fuse_req_interrupt_func(req, NULL, NULL);
	if (waited && !ret)
		p->flags |= RFS_IOC_CHANGES_WAITED;
	return ret;
}

int rfs_fuse_journal_info_ioctl(rfs_fs *fs, const struct fuse_ctx *ctx, const void *in,
				size_t in_size, void *out, size_t out_size)
{
	/* As the changes themselves: the cursors lead to them. */
	if (ctx->uid != 0 && ctx->uid != getuid())
		return -EPERM;
	if (in_size < sizeof(struct rfs_journal_stat) || out_size < sizeof(struct rfs_journal_stat))
		return -EINVAL;
	char since[RFS_CURSOR_MAX];
	memcpy(since, ((const struct rfs_journal_stat *)in)->oldest_cursor, sizeof(since));
	since[RFS_CURSOR_MAX - 1] = 0;
	struct rfs_journal_stat *st = out;
	memset(st, 0, sizeof(*st));
	return rfs_fs_journal_stat(fs, since, st);
}
