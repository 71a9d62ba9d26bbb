/*
 * Reading the change journal through a mount (include/reflinkfs/journal.h,
 * "client side"): RFS_IOC_CHANGES pages on an open directory of the
 * mount, unpacked into struct rfs_change for a callback, so tools need
 * neither the ioctl layout nor the CLI's output.
 */
#include "reflinkfs/journal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

/* Deliver the records of one page; > 0 / < 0 from fn stops. */
static int deliver_page(const struct rfs_ioc_changes *p, rfs_change_fn fn, void *arg,
			char *path, char *old, unsigned long *n)
{
	const uint8_t *b = p->buf, *end = p->buf + p->used;
	for (uint32_t i = 0; i < p->count; i++) {
		struct rfs_ioc_change h;
		if ((size_t)(end - b) < sizeof(h))
			return -EPROTO;
		memcpy(&h, b, sizeof(h));
		size_t rl = h.nranges * sizeof(struct rfs_change_range);
		size_t len = (sizeof(h) + rl + h.pathlen + h.oldlen + 7) & ~(size_t)7;
		if (h.pathlen > RFS_IOC_CHANGES_PATH_MAX || h.oldlen > RFS_IOC_CHANGES_PATH_MAX ||
		    sizeof(h) + rl + h.pathlen + h.oldlen > (size_t)(end - b))
			return -EPROTO;
		struct rfs_change_range ranges[256];
		memcpy(ranges, b + sizeof(h), rl);
		const char *ps = (const char *)(b + sizeof(h) + rl);
		memcpy(path, ps, h.pathlen);
		path[h.pathlen] = 0;
		memcpy(old, ps + h.pathlen, h.oldlen);
		old[h.oldlen] = 0;
		struct rfs_change c = {.seq = h.seq,
				       .sec = h.sec,
				       .nsec = h.nsec,
				       .kind = h.kind,
				       .volume = h.volume,
				       .ino = h.ino,
				       .parent = h.parent,
				       .also = h.also,
				       .path = (h.flags & RFS_IOC_CHANGE_NOPATH) ? NULL : path,
				       .old_path = h.oldlen ? old : NULL,
				       .nranges = h.nranges,
				       .ranges = ranges,
				       .cut = (h.flags & RFS_IOC_CHANGE_CUT) != 0};
		int ret = fn(arg, &c);
		if (ret)
			return ret;
		(*n)++;
		b += len;
	}
	return 0;
}

/* One whole read on fd since cursor; *n: changes delivered.  wait_ms:
 * when nothing is new, let the daemon wait that long for a change;
 * *waited: it could (else the caller polls). */
static int read_fd(int fd, const char *cursor, bool commit, unsigned wait_ms, rfs_change_fn fn,
		   void *arg, char next[RFS_CURSOR_MAX], unsigned long *n, bool *waited)
{
	struct rfs_ioc_changes *p = calloc(1, sizeof(*p));
	char *path = malloc(2 * (RFS_IOC_CHANGES_PATH_MAX + 1));
	int ret = 0;
	*n = 0;
	if (!p || !path) {
		ret = -ENOMEM;
		goto out;
	}
	uint32_t flags = (commit ? RFS_IOC_CHANGES_COMMIT : 0) | (wait_ms ? RFS_IOC_CHANGES_WAIT : 0);
	p->wait_ms = (uint16_t)(wait_ms > UINT16_MAX ? UINT16_MAX : wait_ms);
	for (bool first = true;; first = false) {
		snprintf(p->cursor, sizeof(p->cursor), "%s", cursor);
		p->flags = flags;
		if (ioctl(fd, RFS_IOC_CHANGES, p)) {
			ret = -errno;
			break;
		}
		if (first && waited)
			*waited = p->flags & RFS_IOC_CHANGES_WAITED;
		ret = deliver_page(p, fn, arg, path, path + RFS_IOC_CHANGES_PATH_MAX + 1, n);
		if (ret || p->done)
			break;
	}
	if (!ret)
		snprintf(next, RFS_CURSOR_MAX, "%s", p->cursor);
out:
	free(path);
	free(p);
	return ret;
}

/* Open directory path for a call given cursor *cursor (NULL: "", from
 * the start, stored back): the descriptor, -EINVAL for a cursor longer
 * than any this library makes, or -errno. */
static int open_dir(const char *path, const char **cursor)
{
	if (!*cursor)
		*cursor = "";
	if (strlen(*cursor) >= RFS_CURSOR_MAX)
		return -EINVAL;
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

/* An ioctl the filesystem does not know: not a reflinkfs mount. */
static int fix_errno(int ret)
{
	return ret == -ENOTTY || ret == -ENOSYS ? -ENOTTY : ret;
}

int rfs_changes_read(const char *path, const char *cursor, rfs_change_fn fn, void *arg,
		     char next[RFS_CURSOR_MAX])
{
	int fd = open_dir(path, &cursor);
	if (fd < 0)
		return fd;
	unsigned long n;
	char tmp[RFS_CURSOR_MAX];
	int ret = read_fd(fd, cursor, false, 0, fn, arg, tmp, &n, NULL);
	close(fd);
	if (!ret)
		memcpy(next, tmp, RFS_CURSOR_MAX);
	return fix_errno(ret);
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int rfs_changes_follow(const char *path, const char *cursor, int timeout_ms, rfs_change_fn fn,
		       void *arg, char next[RFS_CURSOR_MAX])
{
	int fd = open_dir(path, &cursor);
	if (fd < 0)
		return fd;
	int64_t end = timeout_ms < 0 ? INT64_MAX : now_ms() + timeout_ms;
	char cur[RFS_CURSOR_MAX], tmp[RFS_CURSOR_MAX];
	snprintf(cur, sizeof(cur), "%s", cursor);
	unsigned long n = 0;
	int ret;
	for (;;) {
		/* The daemon waits for a change (up to what wait_ms holds;
		 * then we ask again). */
		int64_t left = end - now_ms();
		unsigned w = left <= 0 ? 0 : left > UINT16_MAX ? UINT16_MAX : (unsigned)left;
		bool waited = false;
		ret = read_fd(fd, cur, true, w, fn, arg, tmp, &n, &waited);
		if (ret)
			break;
		memcpy(cur, tmp, sizeof(cur));
		left = end - now_ms();
		if (n)
			break;
		if (left <= 0) {
			ret = -ETIMEDOUT;
			break;
		}
		if (waited)
			continue;
		/* Too many followers wait in the daemon (or it cannot wait):
		 * look again later. */
		int64_t ms = left < RFS_CHANGES_FOLLOW_MS ? left : RFS_CHANGES_FOLLOW_MS;
		struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
		nanosleep(&ts, NULL);
	}
	close(fd);
	if (!ret || ret == -ETIMEDOUT || ret == -EINTR)
		memcpy(next, cur, RFS_CURSOR_MAX);
	return fix_errno(ret);
}

int rfs_changes_info(const char *path, const char *since, struct rfs_journal_stat *out)
{
	int fd = open_dir(path, &since);
	if (fd < 0)
		return fd;
	struct rfs_journal_stat st;
	memset(&st, 0, sizeof(st));
	/* The cursor to check travels in oldest_cursor's place. */
	snprintf(st.oldest_cursor, sizeof(st.oldest_cursor), "%s", since);
	int ret = ioctl(fd, RFS_IOC_JOURNAL_INFO, &st) ? -errno : 0;
	close(fd);
	if (!ret)
		*out = st;
	return fix_errno(ret);
}
