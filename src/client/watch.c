/*
 * Pre-modification events, subscriber side (include/reflinkfs/watch.h):
 * the socket of the mount's watch server, and the mark ioctl.
 */
#include "reflinkfs/watch.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* Events read off the socket while waiting for an ACK / UNMARK answer,
 * handed out by rfs_watcher_read first. */
struct queued {
	struct queued *next;
	struct rfs_watcher_event ev;
};

struct rfs_watcher {
	int sock;
	unsigned timeout_ms;
	uint8_t token[RFS_WATCH_TOKEN_LEN];
	struct queued *head, *tail;
};

/* The longest message: an event with the longest path. */
#define MSG_MAX (sizeof(struct rfs_wmsg_event) + RFS_WATCHER_PATH_MAX)

const char *rfs_watcher_kind_name(int kind)
{
	static const char *const names[] = {
		[RFS_WK_WRITE] = "write",   [RFS_WK_TRUNCATE] = "truncate",
		[RFS_WK_FALLOCATE] = "fallocate", [RFS_WK_ATTR] = "attr",
		[RFS_WK_XATTR] = "xattr",   [RFS_WK_RENAME] = "rename",
		[RFS_WK_UNLINK] = "unlink", [RFS_WK_CLONE] = "clone",
		[RFS_WK_OVERFLOW] = "overflow",
	};
	if (kind <= 0 || (size_t)kind >= sizeof(names) / sizeof(names[0]) || !names[kind])
		return "unknown";
	return names[kind];
}

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait until sock is readable: 0, -EAGAIN (timeout), -errno. */
static int wait_readable(int sock, int timeout_ms)
{
	long long end = timeout_ms > 0 ? now_ms() + timeout_ms : 0;
	for (;;) {
		struct pollfd p = {.fd = sock, .events = POLLIN};
		int left = timeout_ms;
		if (timeout_ms > 0) {
			long long l = end - now_ms();
			left = l > 0 ? (int)l : 0;
		}
		int n = poll(&p, 1, left);
		if (n > 0)
			return 0;
		if (n == 0)
			return -EAGAIN;
		if (errno != EINTR)
			return -errno;
	}
}

/* One message into buf: its length, 0 at EOF, -EAGAIN, -errno. */
static ssize_t recv_msg(int sock, void *buf, size_t size)
{
	for (;;) {
		ssize_t n = recv(sock, buf, size, MSG_DONTWAIT);
		if (n >= 0)
			return n;
		if (errno == EINTR)
			continue;
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	}
}

static int send_msg(int sock, const void *msg, size_t len)
{
	for (;;) {
		ssize_t n = send(sock, msg, len, MSG_NOSIGNAL);
		if (n == (ssize_t)len)
			return 0;
		if (n >= 0)
			return -EPROTO;
		if (errno == EINTR)
			continue;
		return errno == EPIPE || errno == ECONNRESET ? -ENOTCONN : -errno;
	}
}

static int parse_event(const uint8_t *buf, size_t n, struct rfs_watcher_event *ev)
{
	struct rfs_wmsg_event m;
	if (n < sizeof(m))
		return -EPROTO;
	memcpy(&m, buf, sizeof(m));
	if (m.pathlen != n - sizeof(m) || m.pathlen >= RFS_WATCHER_PATH_MAX)
		return -EPROTO;
	ev->id = m.id;
	ev->mark = m.mark;
	ev->ino = m.ino;
	ev->kind = (int)m.kind;
	ev->blocking = m.flags & RFS_WEV_BLOCKING;
	ev->cut = m.flags & RFS_WEV_CUT;
	memcpy(ev->path, buf + sizeof(m), m.pathlen);
	ev->path[m.pathlen] = '\0';
	return 0;
}

int rfs_watcher_open(const char *path, unsigned flags, unsigned timeout_ms, rfs_watcher **out)
{
	*out = NULL;
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct rfs_ioc_watch_addr a;
	memset(&a, 0, sizeof(a));
	int ret = ioctl(fd, RFS_IOC_WATCH_ADDR, &a) ? -errno : 0;
	close(fd);
	if (ret == -ENOSYS || ret == -EINVAL)
		ret = -ENOTTY; /* what other filesystems answer an unknown ioctl */
	if (ret)
		return ret;
	if (a.version != RFS_WATCH_PROTO_VERSION)
		return -EPROTO;
	if (a.len == 0 || a.len > RFS_WATCH_ADDR_MAX)
		return -EPROTO;
	struct sockaddr_un sa;
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path + 1, a.name, a.len);
	socklen_t salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + a.len);

	rfs_watcher *w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->sock = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (w->sock < 0 || connect(w->sock, (struct sockaddr *)&sa, salen)) {
		ret = -errno;
		goto fail;
	}
	struct rfs_wmsg_hello h = {.type = RFS_WMSG_HELLO,
				   .version = RFS_WATCH_PROTO_VERSION,
				   .flags = flags,
				   .timeout_ms = timeout_ms};
	ret = send_msg(w->sock, &h, sizeof(h));
	if (ret)
		goto fail;
	struct rfs_wmsg_welcome wl;
	ssize_t n;
	do {
		ret = wait_readable(w->sock, -1);
		n = ret ? ret : recv_msg(w->sock, &wl, sizeof(wl));
	} while (n == -EAGAIN);
	if (n < 0) {
		ret = (int)n;
		goto fail;
	}
	if (n == 0) {
		ret = -ECONNRESET;
		goto fail;
	}
	if ((size_t)n != sizeof(wl) || wl.type != RFS_WMSG_WELCOME) {
		ret = -EPROTO;
		goto fail;
	}
	if (wl.err) {
		ret = wl.err < 0 ? wl.err : -EPROTO;
		goto fail;
	}
	w->timeout_ms = wl.timeout_ms;
	memcpy(w->token, wl.token, sizeof(w->token));
	*out = w;
	return 0;
fail:
	if (w->sock >= 0)
		close(w->sock);
	free(w);
	return ret;
}

unsigned rfs_watcher_timeout(const rfs_watcher *w)
{
	return w->timeout_ms;
}

int rfs_watcher_fd(const rfs_watcher *w)
{
	return w->sock;
}

/*
 * Write back the kernel's dirty pages of what fd names (a file: its pages;
 * a directory: every file of the mount) and wait for them to be stored.
 * Not needed for the guarantee (docs/WATCH.md, "mmap"): the daemon makes
 * the kernel write back and wait for every covered file's pages before it
 * arms the mark.  Kept so that most of that work is done before the
 * ioctl, through the kernel's own path.  An error here is not the mark's.
 */
static void write_back(int fd)
{
	struct stat st;
	if (fstat(fd, &st))
		return;
	if (S_ISREG(st.st_mode))
		(void)sync_file_range(fd, 0, 0,
				      SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
					      SYNC_FILE_RANGE_WAIT_AFTER);
	else if (S_ISDIR(st.st_mode))
		(void)syncfs(fd);
}

int rfs_watcher_mark_fd(rfs_watcher *w, int fd, uint64_t *mark)
{
	struct rfs_ioc_watch_mark m;
	write_back(fd);
	memset(&m, 0, sizeof(m));
	memcpy(m.token, w->token, sizeof(m.token));
	if (ioctl(fd, RFS_IOC_WATCH_MARK, &m)) {
		int e = errno;
		return e == ENOSYS ? -ENOTTY : -e;
	}
	if (mark)
		*mark = m.mark;
	return 0;
}

int rfs_watcher_mark(rfs_watcher *w, const char *path, uint64_t *mark)
{
	/* Read access is not needed to mark, write access is: a file the
	 * caller may write but not read is opened for writing (which
	 * changes nothing).  O_NONBLOCK: a FIFO must not block the open. */
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd < 0 && errno == EACCES)
		fd = open(path, O_WRONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct stat st;
	int ret = fstat(fd, &st) ? -errno : 0;
	if (!ret && !S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode))
		ret = -EINVAL;
	if (!ret)
		ret = rfs_watcher_mark_fd(w, fd, mark);
	close(fd);
	return ret;
}

static int enqueue(rfs_watcher *w, const struct rfs_watcher_event *ev)
{
	struct queued *q = malloc(sizeof(*q));
	if (!q)
		return -ENOMEM;
	q->next = NULL;
	q->ev = *ev;
	if (w->tail)
		w->tail->next = q;
	else
		w->head = q;
	w->tail = q;
	return 0;
}

/* Send ACK / UNMARK of id and wait for its RESULT, queueing the events
 * that come first. */
static int request(rfs_watcher *w, uint32_t type, uint64_t id)
{
	struct rfs_wmsg_id m = {.type = type, .id = id};
	int ret = send_msg(w->sock, &m, sizeof(m));
	if (ret)
		return ret;
	uint8_t *buf = malloc(MSG_MAX);
	if (!buf)
		return -ENOMEM;
	struct rfs_watcher_event *ev = malloc(sizeof(*ev));
	for (ret = ev ? 1 : -ENOMEM; ret == 1;) {
		ret = wait_readable(w->sock, -1);
		ssize_t n = ret ? ret : recv_msg(w->sock, buf, MSG_MAX);
		if (n == -EAGAIN) {
			ret = 1;
			continue;
		}
		if (n <= 0) {
			ret = n == 0 ? -ENOTCONN : (int)n;
			break;
		}
		uint32_t t;
		if ((size_t)n < sizeof(t)) {
			ret = -EPROTO;
			break;
		}
		memcpy(&t, buf, sizeof(t));
		if (t == RFS_WMSG_EVENT) {
			ret = parse_event(buf, (size_t)n, ev);
			ret = ret ? ret : enqueue(w, ev);
			ret = ret ? ret : 1;
		} else if (t == RFS_WMSG_RESULT && (size_t)n == sizeof(struct rfs_wmsg_result)) {
			struct rfs_wmsg_result r;
			memcpy(&r, buf, sizeof(r));
			if (r.what != type || r.id != id)
				ret = -EPROTO;
			else
				ret = r.err > 0 ? -EPROTO : r.err;
		} else {
			ret = -EPROTO;
		}
	}
	free(ev);
	free(buf);
	return ret;
}

int rfs_watcher_ack(rfs_watcher *w, uint64_t id)
{
	int ret = request(w, RFS_WMSG_ACK, id);
	return ret == -ENOENT ? -ETIMEDOUT : ret;
}

int rfs_watcher_unmark(rfs_watcher *w, uint64_t mark)
{
	return request(w, RFS_WMSG_UNMARK, mark);
}

int rfs_watcher_read(rfs_watcher *w, struct rfs_watcher_event *ev, int timeout_ms)
{
	if (w->head) {
		struct queued *q = w->head;
		w->head = q->next;
		if (!w->head)
			w->tail = NULL;
		*ev = q->ev;
		free(q);
		return 0;
	}
	uint8_t *buf = malloc(MSG_MAX);
	if (!buf)
		return -ENOMEM;
	int ret;
	for (;;) {
		ssize_t n = recv_msg(w->sock, buf, MSG_MAX);
		if (n == -EAGAIN && timeout_ms != 0) {
			ret = wait_readable(w->sock, timeout_ms);
			if (ret)
				break;
			continue;
		}
		if (n < 0) {
			ret = (int)n;
			break;
		}
		if (n == 0) {
			ret = -ENOTCONN;
			break;
		}
		uint32_t t = 0;
		if ((size_t)n >= sizeof(t))
			memcpy(&t, buf, sizeof(t));
		/* Only events come unasked. */
		ret = t == RFS_WMSG_EVENT ? parse_event(buf, (size_t)n, ev) : -EPROTO;
		break;
	}
	free(buf);
	return ret;
}

void rfs_watcher_close(rfs_watcher *w)
{
	if (!w)
		return;
	while (w->head) {
		struct queued *q = w->head;
		w->head = q->next;
		free(q);
	}
	close(w->sock);
	free(w);
}
