/*
 * The mount's watch server (pre-modification events, issue 8): an
 * abstract SOCK_SEQPACKET Unix socket on which subscribers open watches
 * (one rfs_watch of the fs per connection), get their events and
 * acknowledge them; and the two ioctls, RFS_IOC_WATCH_ADDR (the socket's
 * name) and RFS_IOC_WATCH_MARK (mark the file or directory the ioctl is
 * made on).  Protocol: include/reflinkfs/watch.h, docs/WATCH.md.
 *
 * One thread serves every connection: it polls the listening socket, the
 * connections, and each watch's event descriptor (rfs_fs_watch_fd).  The
 * fs delivers events and waits for acks outside its locks, so a slow
 * subscriber only stalls the operation on its marked file; this thread
 * never waits for a subscriber either (sends are non-blocking, and a
 * connection whose socket is full gets no more events until it drains).
 * Marks are made by the FUSE thread of the ioctl, which finds the
 * connection by its token.
 */
#include "fuse/watch_server.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "reflinkfs/log.h"
#include "reflinkfs/watch.h"

/* Connections at once (beyond that, new ones are closed at once). */
#define MAX_CONNS 1024
/* Messages waiting in one connection's outbox before the server gives up
 * on a client that sends requests but reads no answers. */
#define MAX_OUTBOX 1024
/* The longest timeout a subscriber may ask for: a writer waits at most
 * this long for a subscriber. */
#define MAX_TIMEOUT_MS (10u * 60u * 1000u)

/* The wire's event kinds are the fs layer's. */
#define SAME_KIND(k) static_assert((int)RFS_WK_##k == (int)RFS_PREMOD_##k, #k)
SAME_KIND(WRITE);
SAME_KIND(TRUNCATE);
SAME_KIND(FALLOCATE);
SAME_KIND(ATTR);
SAME_KIND(XATTR);
SAME_KIND(RENAME);
SAME_KIND(UNLINK);
SAME_KIND(CLONE);
SAME_KIND(OVERFLOW);

static_assert(RFS_WATCHER_PATH_MAX >= RFS_WATCH_PATH_MAX, "event paths fit the client's");

struct outmsg {
	struct outmsg *next;
	size_t len;
	uint8_t data[];
};

struct wconn {
	struct wconn *next; /* srv->conns; changed under srv->lock, by the thread only */
	int sock;
	uint8_t token[RFS_WATCH_TOKEN_LEN];
	/* The peer, from SO_PEERCRED and /proc (fixed after accept). */
	struct rfs_ctx who;
	gid_t *groups;
	/* Set once, by the thread under srv->lock, when HELLO made it. */
	rfs_watch *w;
	/* Holders: the list (until the connection ends) and each mark ioctl
	 * in progress.  srv->lock. */
	int refs;
	/* Owned by the server thread: */
	struct outmsg *out_head, *out_tail;
	unsigned nout;
};

struct rfs_watch_server {
	struct rfs_mount *m;
	int listen_fd;
	int wake[2]; /* stop -> thread */
	pthread_t thread;
	bool running;
	char name[RFS_WATCH_ADDR_MAX + 1]; /* abstract name, without the NUL */
	uint32_t namelen;
	pthread_mutex_t lock; /* the conns list and every refs */
	struct wconn *conns;
	unsigned nconns; /* the thread's */
};

/* ---- connections ---- */

static void conn_destroy(struct wconn *c)
{
	if (c->w)
		rfs_fs_watch_free(c->w); /* releases every operation waiting on it */
	while (c->out_head) {
		struct outmsg *o = c->out_head;
		c->out_head = o->next;
		free(o);
	}
	close(c->sock);
	free(c->groups);
	free(c);
}

static void conn_put(struct rfs_watch_server *s, struct wconn *c)
{
	pthread_mutex_lock(&s->lock);
	bool last = --c->refs == 0;
	pthread_mutex_unlock(&s->lock);
	if (last)
		conn_destroy(c);
}

/* The connection with this token that has a watch, with a reference
 * taken; NULL when none. */
static struct wconn *conn_get(struct rfs_watch_server *s, const uint8_t *token)
{
	pthread_mutex_lock(&s->lock);
	struct wconn *c = s->conns;
	for (; c; c = c->next)
		if (c->w && !memcmp(c->token, token, RFS_WATCH_TOKEN_LEN))
			break;
	if (c)
		c->refs++;
	pthread_mutex_unlock(&s->lock);
	return c;
}

/* The connection ends: out of the list, and its watch goes as soon as no
 * mark ioctl uses it any more. */
static void conn_drop(struct rfs_watch_server *s, struct wconn *c)
{
	pthread_mutex_lock(&s->lock);
	for (struct wconn **p = &s->conns; *p; p = &(*p)->next)
		if (*p == c) {
			*p = c->next;
			break;
		}
	pthread_mutex_unlock(&s->lock);
	s->nconns--;
	conn_put(s, c);
}

/* Supplementary groups of pid from /proc/PID/status ("Groups:"), as
 * libfuse does for requests; *groups for the caller to free. */
static void peer_groups(pid_t pid, struct rfs_ctx *who, gid_t **groups)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "re");
	char *line = NULL;
	size_t cap = 0;
	*groups = NULL;
	if (!f)
		return;
	while (getline(&line, &cap, f) > 0) {
		if (strncmp(line, "Groups:", 7))
			continue;
		size_t n = 0, max = 0;
		gid_t *g = NULL;
		char *p = line + 7, *end;
		for (;;) {
			unsigned long v = strtoul(p, &end, 10);
			if (end == p)
				break;
			if (n == max) {
				max = max ? 2 * max : 16;
				gid_t *ng = realloc(g, max * sizeof(*g));
				if (!ng)
					break;
				g = ng;
			}
			g[n++] = (gid_t)v;
			p = end;
		}
		*groups = g;
		who->groups = (const uint32_t *)g;
		who->ngroups = (uint32_t)n;
		break;
	}
	free(line);
	fclose(f);
}

static void conn_accept(struct rfs_watch_server *s)
{
	int fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (fd < 0)
		return;
	struct ucred cr;
	socklen_t l = sizeof(cr);
	struct wconn *c = NULL;
	if (s->nconns >= MAX_CONNS || getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &l) ||
	    !(c = calloc(1, sizeof(*c))) || getrandom(c->token, sizeof(c->token), 0) !=
						      (ssize_t)sizeof(c->token)) {
		if (s->nconns >= MAX_CONNS)
			rfs_log(RFS_LOG_WARN, "%s: watch server: %d connections already, one more refused",
				s->m->pool, MAX_CONNS);
		free(c);
		close(fd);
		return;
	}
	c->sock = fd;
	c->who.uid = cr.uid;
	c->who.gid = cr.gid;
	c->who.pid = (uint32_t)cr.pid;
	peer_groups(cr.pid, &c->who, &c->groups);
	c->refs = 1;
	pthread_mutex_lock(&s->lock);
	c->next = s->conns;
	s->conns = c;
	pthread_mutex_unlock(&s->lock);
	s->nconns++;
}

/* ---- sending ---- */

/* Send what waits in the outbox; then msg (len bytes), or queue it when
 * the socket is full.  0, or -1 when the connection must end. */
static int conn_send(struct wconn *c, const void *msg, size_t len)
{
	while (c->out_head) {
		struct outmsg *o = c->out_head;
		ssize_t n = send(c->sock, o->data, o->len, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n < 0)
			return -1;
		c->out_head = o->next;
		if (!c->out_head)
			c->out_tail = NULL;
		c->nout--;
		free(o);
	}
	if (!msg)
		return 0;
	if (!c->out_head) {
		for (;;) {
			ssize_t n = send(c->sock, msg, len, MSG_DONTWAIT | MSG_NOSIGNAL);
			if (n >= 0)
				return 0;
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				return -1;
			break;
		}
	}
	if (c->nout >= MAX_OUTBOX)
		return -1;
	struct outmsg *o = malloc(sizeof(*o) + len);
	if (!o)
		return -1;
	o->next = NULL;
	o->len = len;
	memcpy(o->data, msg, len);
	if (c->out_tail)
		c->out_tail->next = o;
	else
		c->out_head = o;
	c->out_tail = o;
	c->nout++;
	return 0;
}

/* Hand the watch's waiting events to the client until none wait or its
 * socket is full.  0, or -1 when the connection must end. */
static int conn_events(struct wconn *c)
{
	struct rfs_watch_event *ev = malloc(sizeof(*ev));
	uint8_t *buf = malloc(sizeof(struct rfs_wmsg_event) + RFS_WATCH_PATH_MAX);
	int ret = ev && buf ? 0 : -1;
	while (!ret && !c->out_head && rfs_fs_watch_next(c->w, ev) == 0) {
		struct rfs_wmsg_event m = {.type = RFS_WMSG_EVENT,
					   .kind = (uint32_t)ev->kind,
					   .id = ev->id,
					   .mark = ev->mark,
					   .ino = ev->ino,
					   .flags = (ev->blocking ? RFS_WEV_BLOCKING : 0) |
						    (ev->cut ? RFS_WEV_CUT : 0)};
		size_t pl = strnlen(ev->path, RFS_WATCH_PATH_MAX - 1);
		m.pathlen = (uint32_t)pl;
		memcpy(buf, &m, sizeof(m));
		memcpy(buf + sizeof(m), ev->path, pl);
		ret = conn_send(c, buf, sizeof(m) + pl);
	}
	free(buf);
	free(ev);
	return ret;
}

/* ---- receiving ---- */

static int conn_hello(struct rfs_watch_server *s, struct wconn *c, const struct rfs_wmsg_hello *h)
{
	struct rfs_wmsg_welcome wl = {.type = RFS_WMSG_WELCOME, .version = RFS_WATCH_PROTO_VERSION};
	unsigned t = h->timeout_ms ? h->timeout_ms : RFS_WATCH_TIMEOUT_DEFAULT_MS;
	if (t > MAX_TIMEOUT_MS)
		t = MAX_TIMEOUT_MS;
	rfs_watch *w = NULL;
	if (h->version != RFS_WATCH_PROTO_VERSION)
		wl.err = -EPROTO;
	else if (h->flags & ~RFS_WATCHER_BLOCKING)
		wl.err = -EINVAL;
	else
		wl.err = rfs_fs_watch_new(s->m->fs, &c->who,
					  h->flags & RFS_WATCHER_BLOCKING ? RFS_WATCH_BLOCKING : 0, t,
					  &w);
	if (!wl.err) {
		wl.timeout_ms = t;
		memcpy(wl.token, c->token, sizeof(wl.token));
		pthread_mutex_lock(&s->lock);
		c->w = w;
		pthread_mutex_unlock(&s->lock);
	}
	/* A refused HELLO ends the connection once the answer is out. */
	return conn_send(c, &wl, sizeof(wl)) || wl.err ? -1 : 0;
}

/* One message from the client.  0, or -1 when the connection must end
 * (EOF, error, or a message that breaks the protocol). */
static int conn_read(struct rfs_watch_server *s, struct wconn *c)
{
	union {
		struct rfs_wmsg_hello hello;
		struct rfs_wmsg_id id;
		uint8_t raw[64];
	} u;
	ssize_t n = recv(c->sock, &u, sizeof(u), MSG_DONTWAIT);
	if (n < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -1;
	if (n < (ssize_t)sizeof(uint32_t))
		return -1; /* EOF, or garbage */
	if (!c->w)
		return u.hello.type == RFS_WMSG_HELLO && n == (ssize_t)sizeof(u.hello)
			       ? conn_hello(s, c, &u.hello)
			       : -1;
	if ((u.id.type != RFS_WMSG_ACK && u.id.type != RFS_WMSG_UNMARK) ||
	    n != (ssize_t)sizeof(u.id))
		return -1;
	struct rfs_wmsg_result r = {.type = RFS_WMSG_RESULT, .what = u.id.type, .id = u.id.id};
	r.err = u.id.type == RFS_WMSG_ACK ? rfs_fs_watch_ack(c->w, u.id.id)
					 : rfs_fs_watch_unmark(c->w, u.id.id);
	return conn_send(c, &r, sizeof(r));
}

/* ---- the thread ---- */

static void *server_thread(void *arg)
{
	struct rfs_watch_server *s = arg;
	pthread_setname_np(pthread_self(), "rfs-watch");
	struct pollfd *p = NULL;
	struct wconn **who = NULL;
	size_t cap = 0;
	for (;;) {
		size_t need = 2 + 2 * (size_t)s->nconns;
		if (need > cap) {
			struct pollfd *np = realloc(p, need * sizeof(*p));
			struct wconn **nw = np ? realloc(who, need * sizeof(*who)) : NULL;
			if (np)
				p = np;
			if (nw)
				who = nw;
			if (!np || !nw) {
				rfs_log(RFS_LOG_ERR, "%s: watch server: out of memory; stopped (watches end, waiting writers go on)",
					s->m->pool);
				break;
			}
			cap = need;
		}
		size_t n = 0;
		p[n++] = (struct pollfd){.fd = s->wake[0], .events = POLLIN};
		p[n++] = (struct pollfd){.fd = s->listen_fd, .events = POLLIN};
		/* Only this thread changes the list: no lock to walk it. */
		for (struct wconn *c = s->conns; c; c = c->next) {
			who[n] = c;
			p[n++] = (struct pollfd){.fd = c->sock,
						 .events = POLLIN | (c->out_head ? POLLOUT : 0)};
			if (c->w && !c->out_head) {
				who[n] = c;
				p[n++] = (struct pollfd){.fd = rfs_fs_watch_fd(c->w), .events = POLLIN};
			}
		}
		if (poll(p, n, -1) < 0) {
			if (errno == EINTR)
				continue;
			rfs_log(RFS_LOG_ERR, "%s: watch server: poll: %s; stopped (watches end, waiting writers go on)",
				s->m->pool, strerror(errno));
			break;
		}
		if (p[0].revents)
			break;
		/* Connections first (a dropped one is skipped below), then new
		 * ones: the array indexes stay valid. */
		for (size_t i = 2; i < n; i++) {
			struct wconn *c = who[i];
			if (!p[i].revents)
				continue;
			int ret = 0;
			if (p[i].fd == c->sock) {
				if (p[i].revents & POLLOUT)
					ret = conn_send(c, NULL, 0);
				if (!ret && (p[i].revents & POLLIN))
					ret = conn_read(s, c);
				if (!ret && (p[i].revents & (POLLHUP | POLLERR | POLLNVAL)) &&
				    !(p[i].revents & POLLIN))
					ret = -1;
			} else {
				ret = conn_events(c);
			}
			if (ret) {
				/* Its other entry (if any) follows: skip it. */
				for (size_t j = i + 1; j < n; j++)
					if (who[j] == c)
						p[j].revents = 0;
				conn_drop(s, c);
			}
		}
		if (p[1].revents & POLLIN)
			conn_accept(s);
	}
	free(p);
	free(who);
	return NULL;
}

/* ---- start, stop ---- */

struct rfs_watch_server *rfs_watch_server_start(struct rfs_mount *m)
{
	struct rfs_watch_server *s = calloc(1, sizeof(*s));
	uint8_t rnd[8];
	if (!s)
		return NULL;
	s->m = m;
	s->listen_fd = -1;
	s->wake[0] = s->wake[1] = -1;
	pthread_mutex_init(&s->lock, NULL);
	/* Unique per mount: the daemon's pid and 64 random bits. */
	int ret = getrandom(rnd, sizeof(rnd), 0) == (ssize_t)sizeof(rnd) ? 0 : -1;
	int len = snprintf(s->name, sizeof(s->name), "reflinkfs-watch-%d-", (int)getpid());
	for (size_t i = 0; i < sizeof(rnd); i++)
		len += snprintf(s->name + len, sizeof(s->name) - (size_t)len, "%02x", rnd[i]);
	s->namelen = (uint32_t)len;
	struct sockaddr_un a;
	memset(&a, 0, sizeof(a));
	a.sun_family = AF_UNIX;
	memcpy(a.sun_path + 1, s->name, s->namelen);
	socklen_t alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + s->namelen);
	if (ret || (s->listen_fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) < 0 ||
	    bind(s->listen_fd, (struct sockaddr *)&a, alen) || listen(s->listen_fd, 64) ||
	    pipe2(s->wake, O_CLOEXEC) || pthread_create(&s->thread, NULL, server_thread, s)) {
		rfs_log(RFS_LOG_WARN, "%s: no watch server (%s): `reflinkfs watch` will not work on this mount",
			m->pool, strerror(ret ? EIO : errno));
		s->running = false;
		rfs_watch_server_stop(s);
		return NULL;
	}
	s->running = true;
	return s;
}

void rfs_watch_server_stop(struct rfs_watch_server *s)
{
	if (!s)
		return;
	if (s->running) {
		char c = 1;
		if (write(s->wake[1], &c, 1) != 1)
			rfs_log(RFS_LOG_ERR, "%s: watch server: cannot stop its thread: %s",
				s->m->pool, strerror(errno));
		pthread_join(s->thread, NULL);
	}
	/* The FUSE threads are gone: every connection holds one reference. */
	while (s->conns)
		conn_drop(s, s->conns);
	if (s->listen_fd >= 0)
		close(s->listen_fd);
	for (int i = 0; i < 2; i++)
		if (s->wake[i] >= 0)
			close(s->wake[i]);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

/* ---- ioctls ---- */

int rfs_watch_server_addr(struct rfs_watch_server *s, struct rfs_ioc_watch_addr *out)
{
	if (!s)
		return -ENOTSUP;
	memset(out, 0, sizeof(*out));
	out->len = s->namelen;
	out->version = RFS_WATCH_PROTO_VERSION;
	memcpy(out->name, s->name, s->namelen);
	return 0;
}

int rfs_watch_server_mark(struct rfs_watch_server *s, fuse_req_t req, fuse_ino_t ino,
			  struct rfs_ioc_watch_mark *io)
{
	if (!s)
		return -ENOTSUP;
	struct wconn *c = conn_get(s, io->token);
	if (!c)
		return -EXDEV;
	const struct fuse_ctx *fc = fuse_req_ctx(req);
	if (fc->uid != 0 && fc->uid != c->who.uid) {
		conn_put(s, c);
		return -EPERM;
	}
	struct rfs_ctx who = {.uid = fc->uid, .gid = fc->gid, .pid = (uint32_t)fc->pid};
	gid_t *groups = fc->uid == 0 ? NULL : rfs_caller_creds(req, &who);
	rfs_nodeid *flush = NULL;
	size_t nflush = 0;
	uint64_t mark = 0;
	int ret = rfs_fs_watch_mark(c->w, &who, ino, &mark, &flush, &nflush);
	if (!ret) {
		/* Make the kernel write back the dirty pages of the covered
		 * files (launder_folio of the invalidation): those WRITEs come
		 * to other daemon threads now, before the mark is armed, so
		 * they give no event.  No fs lock is held here: this waits for
		 * those WRITEs, so another worker stands in meanwhile (with
		 * every worker in such a wait, none would serve them). */
		io->nflushed = 0;
		if (nflush)
			rfs_fuse_wait_begin();
		for (size_t i = 0; i < nflush; i++)
			if (fuse_lowlevel_notify_inval_inode(s->m->se, flush[i], 0, 0) == 0)
				io->nflushed++;
		if (nflush)
			rfs_fuse_wait_end();
		ret = rfs_fs_watch_arm(c->w, mark);
		if (ret)
			rfs_fs_watch_unmark(c->w, mark);
	}
	io->mark = mark;
	free(flush);
	free(groups);
	conn_put(s, c);
	return ret;
}
