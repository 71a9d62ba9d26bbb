/* The daemon's status channel (see status.h). */
#include "fuse/status.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stddef.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "reflinkfs/log.h"

/* Clients waiting for the final line; more are refused (they then only
 * wait for the pool's lock). */
#define MAX_CLIENTS 64

struct rfs_status {
	int listen_fd;
	int wake[2];            /* finish -> thread: stop */
	pthread_t thread;
	bool running;
	int clients[MAX_CLIENTS]; /* owned by the thread while it runs, then by finish */
	int nclients;
};

/* "\0reflinkfs-status-DEV-INO": abstract, so nothing is left behind in
 * the filesystem, and any user's daemon can bind it. */
static int status_addr(const char *pool, struct sockaddr_un *a, socklen_t *len)
{
	struct stat st;
	if (stat(pool, &st))
		return -errno;
	memset(a, 0, sizeof(*a));
	a->sun_family = AF_UNIX;
	int n = snprintf(a->sun_path + 1, sizeof(a->sun_path) - 1, "reflinkfs-status-%llx-%llx",
			 (unsigned long long)st.st_dev, (unsigned long long)st.st_ino);
	*len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
	return 0;
}

struct rfs_status *rfs_status_listen(const char *pool)
{
	struct sockaddr_un a;
	socklen_t len;
	int ret = status_addr(pool, &a, &len);
	struct rfs_status *st = calloc(1, sizeof(*st));
	if (ret || !st) {
		free(st);
		rfs_log(RFS_LOG_WARN, "%s: no status socket (%s): umount will not hear how the final commit went",
			pool, strerror(ret ? -ret : ENOMEM));
		return NULL;
	}
	st->wake[0] = st->wake[1] = -1;
	st->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (st->listen_fd < 0 || bind(st->listen_fd, (struct sockaddr *)&a, len) ||
	    listen(st->listen_fd, MAX_CLIENTS) || pipe2(st->wake, O_CLOEXEC)) {
		rfs_log(RFS_LOG_WARN, "%s: no status socket (%s): umount will not hear how the final commit went",
			pool, strerror(errno));
		rfs_status_finish(st, NULL);
		return NULL;
	}
	return st;
}

/* Only root and the daemon's own user hear the verdict. */
static bool peer_allowed(int fd)
{
	struct ucred cr;
	socklen_t l = sizeof(cr);
	return !getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &l) &&
	       (cr.uid == 0 || cr.uid == geteuid());
}

static void accept_all(struct rfs_status *st)
{
	int fd;
	while ((fd = accept4(st->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK)) >= 0) {
		if (st->nclients < MAX_CLIENTS && peer_allowed(fd))
			st->clients[st->nclients++] = fd;
		else
			close(fd);
	}
}

/* Accept clients as they come, and drop those that went away (an umount
 * that failed, busy), so that the backlog never fills up. */
static void *status_thread(void *arg)
{
	struct rfs_status *st = arg;
	pthread_setname_np(pthread_self(), "rfs-status");
	struct pollfd p[2 + MAX_CLIENTS];
	for (;;) {
		p[0] = (struct pollfd){.fd = st->wake[0], .events = POLLIN};
		p[1] = (struct pollfd){.fd = st->listen_fd, .events = POLLIN};
		for (int i = 0; i < st->nclients; i++)
			p[2 + i] = (struct pollfd){.fd = st->clients[i], .events = POLLIN};
		if (poll(p, 2 + (nfds_t)st->nclients, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[0].revents)
			break;
		for (int i = st->nclients - 1; i >= 0; i--) {
			char c;
			if (!p[2 + i].revents)
				continue;
			ssize_t r = recv(st->clients[i], &c, 1, MSG_DONTWAIT);
			if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
				close(st->clients[i]);
				st->clients[i] = st->clients[--st->nclients];
			}
		}
		if (p[1].revents)
			accept_all(st);
	}
	return NULL;
}

int rfs_status_start(struct rfs_status *st)
{
	if (!st)
		return 0;
	int ret = pthread_create(&st->thread, NULL, status_thread, st);
	st->running = ret == 0;
	return -ret;
}

void rfs_status_stop_listening(struct rfs_status *st)
{
	if (!st || st->listen_fd < 0)
		return;
	if (st->running) {
		char c = 1;
		if (write(st->wake[1], &c, 1) != 1)
			rfs_log(RFS_LOG_WARN, "status socket: cannot stop its thread: %s", strerror(errno));
		pthread_join(st->thread, NULL);
		st->running = false;
	}
	accept_all(st);
	close(st->listen_fd);
	st->listen_fd = -1;
}

void rfs_status_finish(struct rfs_status *st, const char *line)
{
	if (!st)
		return;
	rfs_status_stop_listening(st);
	for (int i = 0; i < st->nclients; i++) {
		if (line) {
			char buf[1100];
			int n = snprintf(buf, sizeof(buf), "%s\n", line);
			if (send(st->clients[i], buf, (size_t)n, MSG_NOSIGNAL) != n)
				rfs_log(RFS_LOG_INFO, "status socket: a client left before the verdict");
		}
		close(st->clients[i]);
	}
	for (int i = 0; i < 2; i++)
		if (st->wake[i] >= 0)
			close(st->wake[i]);
	free(st);
}

int rfs_status_connect(const char *pool)
{
	struct sockaddr_un a;
	socklen_t len;
	if (status_addr(pool, &a, &len))
		return -1;
	/* Non-blocking: a full backlog must not stall the unmount. */
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&a, len)) {
		close(fd);
		return -1;
	}
	struct ucred cr;
	socklen_t l = sizeof(cr);
	/* the daemon of a pool runs as root or as the user unmounting it */
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &l) ||
	    (cr.uid != 0 && cr.uid != geteuid())) {
		close(fd);
		return -1;
	}
	return fd;
}

int rfs_status_poll(int fd, char *buf, size_t size, size_t *len, int timeout_ms)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	int r = poll(&p, 1, timeout_ms);
	if (r < 0)
		return errno == EINTR ? -EAGAIN : -errno;
	if (r == 0)
		return -EAGAIN;
	ssize_t got = recv(fd, buf + *len, size - 1 - *len, 0);
	if (got < 0)
		return errno == EAGAIN || errno == EINTR ? -EAGAIN : errno == ECONNRESET ? 0 : -errno;
	if (got == 0)
		return 0;
	*len += (size_t)got;
	buf[*len] = 0;
	char *nl = strchr(buf, '\n');
	if (nl) {
		*nl = 0;
		return 1;
	}
	return *len == size - 1 ? -EOVERFLOW : -EAGAIN;
}
