/*
 * Pre-modification events: the watch registry, marks, one-shot sets, the
 * event queue and the wait for acknowledgements (include/reflinkfs/fs.h,
 * docs/ARCHITECTURE.md "Pre-modification events (fs layer)").
 *
 * The one place a mutation meets the marks is watch_op_check, called by
 * op_begin before it takes the pool write lock (op.c): it resolves the
 * operation's target files, matches them against the armed marks, queues
 * the events and waits for the acks, holding no pool lock while it waits.
 *
 * Locks, in the order they nest (never the other way):
 *   pool lock -> fs->wlock (registry) -> w->lock (one watch) ; nlock alone
 * The pool lock is taken under neither wlock nor w->lock, and nlock is
 * never held together with them: watch_op_check walks the node table
 * first, then matches.  rfs_fs_watch_arm takes the pool write lock around
 * the arm so that a modification is either checked after it or finished
 * before it returns (op_begin compares the arm generation again under the
 * write lock).
 */
#include "fs/link_names.h"
#include "fs/op.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

/* ---- lock ownership, for assertions --------------------------------------- */

static _Thread_local const rfs_fs *wlock_owner;
static _Thread_local const struct rfs_watch *wl_owner;

static void reg_lock(rfs_fs *fs)
{
	RFS_ASSERT_LOCK(wlock_owner != fs && !node_lock_held(fs));
	pthread_mutex_lock(&fs->wlock);
	wlock_owner = fs;
}

static void reg_unlock(rfs_fs *fs)
{
	assert(wlock_owner == fs);
	wlock_owner = NULL;
	pthread_mutex_unlock(&fs->wlock);
}

/* ---- a set of node ids (the files a mark has reported) ---------------------- */

/* Open addressing, linear probing; 0 is the empty slot (no node id is 0). */
struct idset {
	uint64_t *v;
	size_t cap, n;
};

static size_t id_hash(uint64_t id, size_t cap)
{
	id ^= id >> 31;
	id *= 0x9e3779b97f4a7c15ull;
	return (size_t)(id >> 17) & (cap - 1);
}

static bool idset_has(const struct idset *s, uint64_t id)
{
	if (!s->n)
		return false;
	for (size_t i = id_hash(id, s->cap);; i = (i + 1) & (s->cap - 1)) {
		if (s->v[i] == id)
			return true;
		if (!s->v[i])
			return false;
	}
}

static int idset_add(struct idset *s, uint64_t id)
{
	if (2 * (s->n + 1) > s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 16;
		uint64_t *v = calloc(cap, sizeof(*v));
		if (!v)
			return -ENOMEM;
		for (size_t i = 0; i < s->cap; i++)
			if (s->v[i]) {
				size_t j = id_hash(s->v[i], cap);
				while (v[j])
					j = (j + 1) & (cap - 1);
				v[j] = s->v[i];
			}
		free(s->v);
		s->v = v;
		s->cap = cap;
	}
	size_t i = id_hash(id, s->cap);
	while (s->v[i] && s->v[i] != id)
		i = (i + 1) & (s->cap - 1);
	if (!s->v[i]) {
		s->v[i] = id;
		s->n++;
	}
	return 0;
}

static void idset_free(struct idset *s)
{
	free(s->v);
	memset(s, 0, sizeof(*s));
}

/* ---- the watch --------------------------------------------------------------- */

struct wmark {
	struct wmark *next;
	uint64_t id;
	rfs_nodeid node;
	bool dir;   /* subtree mark */
	bool armed;
	struct idset fired; /* files reported since the last arm */
};

struct wevent {
	struct wevent *next;
	uint64_t id, mark, ino;
	int kind;
	bool blocking;
	bool cut; /* path cut to fit the event (see path_fit) */
	char *path;
};

/* The ack of blocking event id that modifications of file fid wait for:
 * the one whose check queued the event, and any other that comes to
 * change the same file meanwhile (so no change of the file is stored
 * before the ack).  In w->waiting until acked, timed out or the watch is
 * freed; freed by the last of its refs (w->lock). */
struct waiter {
	struct waiter *next;
	uint64_t id;
	rfs_nodeid fid;
	struct timespec deadline;
	unsigned refs; /* operations waiting on it */
	bool listed;   /* in w->waiting */
	bool done;     /* acked, timed out, or the watch is gone: go on */
};

struct rfs_watch {
	rfs_fs *fs;                  /* fixed */
	struct rfs_watch *next;      /* fs->wlock */
	unsigned flags, timeout_ms;  /* fixed */
	struct rfs_ctx who;          /* fixed (who.groups = groups) */
	uint32_t *groups;            /* fixed */
	int efd;                     /* fixed */
	pthread_mutex_t lock;
	pthread_cond_t cond;         /* CLOCK_MONOTONIC; with lock */
	/* lock: */
	struct wmark *marks;
	uint64_t next_mark, next_event;
	struct wevent *qhead, **qtail;
	size_t queued, qmax; /* events in the queue; its bound */
	struct waiter *waiting;
	struct rfs_watch_stat st;
	unsigned refs; /* checks holding the watch outside wlock */
	bool dead;     /* rfs_fs_watch_free has begun */
};

static void w_lock(rfs_watch *w)
{
	RFS_ASSERT_LOCK(wl_owner == NULL && !node_lock_held(w->fs));
	pthread_mutex_lock(&w->lock);
	wl_owner = w;
}

static void w_unlock(rfs_watch *w)
{
	assert(wl_owner == w);
	wl_owner = NULL;
	pthread_mutex_unlock(&w->lock);
}

static bool w_locked(const rfs_watch *w)
{
	return wl_owner == w;
}

/* Give back a reference to waiter x (w->lock held). */
static void waiter_put(rfs_watch *w, struct waiter *x)
{
	RFS_ASSERT_LOCK(w_locked(w));
	assert(x->refs > 0);
	if (--x->refs == 0) {
		assert(!x->listed);
		free(x);
	}
}

static void w_unref(rfs_watch *w)
{
	w_lock(w);
	if (--w->refs == 0 && w->dead)
		pthread_cond_broadcast(&w->cond);
	w_unlock(w);
}

const char *rfs_premod_kind_name(int kind)
{
	static const char *const names[] = {
		[RFS_PREMOD_WRITE] = "write",   [RFS_PREMOD_TRUNCATE] = "truncate",
		[RFS_PREMOD_FALLOCATE] = "fallocate", [RFS_PREMOD_ATTR] = "attr",
		[RFS_PREMOD_XATTR] = "xattr",   [RFS_PREMOD_RENAME] = "rename",
		[RFS_PREMOD_UNLINK] = "unlink", [RFS_PREMOD_CLONE] = "clone",
		[RFS_PREMOD_OVERFLOW] = "overflow",
	};
	if (kind <= 0 || (size_t)kind >= sizeof(names) / sizeof(names[0]))
		return "unknown";
	return names[kind];
}

int rfs_fs_watch_new(rfs_fs *fs, const struct rfs_ctx *who, unsigned flags,
		     unsigned timeout_ms, rfs_watch **out)
{
	*out = NULL;
	if (flags & ~RFS_WATCH_BLOCKING)
		return -EINVAL;
	rfs_watch *w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->fs = fs;
	w->flags = flags;
	w->timeout_ms = timeout_ms ? timeout_ms : RFS_WATCH_TIMEOUT_DEFAULT_MS;
	w->who = *who;
	if (who->ngroups) {
		w->groups = malloc(sizeof(*w->groups) * who->ngroups);
		if (!w->groups) {
			free(w);
			return -ENOMEM;
		}
		memcpy(w->groups, who->groups, sizeof(*w->groups) * who->ngroups);
	}
	w->who.groups = w->groups;
	w->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK | EFD_SEMAPHORE);
	if (w->efd < 0) {
		int err = -errno;
		free(w->groups);
		free(w);
		return err;
	}
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&w->cond, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_init(&w->lock, NULL);
	w->qtail = &w->qhead;
	w->qmax = RFS_WATCH_QUEUE_DEFAULT;
	reg_lock(fs);
	w->next = fs->watches;
	fs->watches = w;
	reg_unlock(fs);
	*out = w;
	return 0;
}

void rfs_fs_watch_free(rfs_watch *w)
{
	if (!w)
		return;
	rfs_fs *fs = w->fs;
	/* Out of the registry first: no check can take a new reference. */
	reg_lock(fs);
	for (rfs_watch **pp = &fs->watches; *pp; pp = &(*pp)->next)
		if (*pp == w) {
			*pp = w->next;
			break;
		}
	reg_unlock(fs);
	w_lock(w);
	w->dead = true;
	uint64_t armed = 0;
	for (struct wmark *m = w->marks; m; m = m->next)
		armed += m->armed;
	atomic_fetch_sub_explicit(&fs->watch_state, armed, memory_order_relaxed);
	/* Every waiting modification goes on now. */
	for (struct waiter *x = w->waiting; x; x = x->next) {
		x->done = true;
		x->listed = false;
	}
	w->waiting = NULL;
	pthread_cond_broadcast(&w->cond);
	while (w->refs)
		pthread_cond_wait(&w->cond, &w->lock);
	w_unlock(w);
	while (w->marks) {
		struct wmark *m = w->marks;
		w->marks = m->next;
		idset_free(&m->fired);
		free(m);
	}
	while (w->qhead) {
		struct wevent *e = w->qhead;
		w->qhead = e->next;
		free(e->path);
		free(e);
	}
	close(w->efd);
	pthread_cond_destroy(&w->cond);
	pthread_mutex_destroy(&w->lock);
	free(w->groups);
	free(w);
}

/* ---- marks ---------------------------------------------------------------------- */

static struct wmark *mark_find(rfs_watch *w, uint64_t id)
{
	RFS_ASSERT_LOCK(w_locked(w));
	for (struct wmark *m = w->marks; m; m = m->next)
		if (m->id == id)
			return m;
	return NULL;
}

/* Is a node whose id is `anc` among n's strict ancestors?  nlock held. */
static bool below(rfs_fs *fs, struct rfs_node *n, rfs_nodeid anc)
{
	RFS_ASSERT_LOCK(node_lock_held(fs));
	for (struct rfs_node *x = n->parent; x; x = x->parent)
		if (x->id == anc)
			return true;
	return false;
}

/* The names of a hard-linked target (link_names.c). */
struct lnames {
	struct link_name *v;
	size_t n;
};

/* The first name in ln with directory node `dir` on its way: its index
 * in *which, the directory's depth in *k.  false when none. */
static bool name_below(rfs_fs *fs, const struct lnames *ln, rfs_nodeid dir, size_t *which,
		       size_t *k)
{
	for (size_t i = 0; i < ln->n; i++)
		for (size_t j = 0; j < ln->v[i].ndirs; j++)
			if (node_id_of(fs, ln->v[i].dirs[j].vol, ln->v[i].dirs[j].ino) == dir) {
				*which = i;
				*k = j;
				return true;
			}
	return false;
}

/* Append id to v (*n used, *cap room); false when out of memory. */
static bool ids_push(rfs_nodeid **v, size_t *n, size_t *cap, rfs_nodeid id)
{
	if (*n == *cap) {
		size_t c = *cap ? *cap * 2 : 16;
		rfs_nodeid *nv = realloc(*v, sizeof(**v) * c);
		if (!nv)
			return false;
		*v = nv;
		*cap = c;
	}
	(*v)[(*n)++] = id;
	return true;
}

/* Has the hard-linked inode (vol, ino) a name below directory node dir?
 * (link_names.c, under the pool read lock.) */
static bool linked_below(rfs_fs *fs, uint64_t vol, uint64_t ino, rfs_nodeid dir)
{
	struct link_name *v;
	size_t n, which, k;
	fs_rdlock(fs);
	int ret = link_names_copy(fs, vol, ino, &v, &n);
	rfs_pool_unlock(fs->pool);
	if (ret)
		return false;
	struct lnames ln = {v, n};
	bool below = name_below(fs, &ln, dir, &which, &k);
	link_names_release(v, n);
	return below;
}

/* The regular files covered by a mark on node (a directory when dir)
 * that the kernel may hold pages of: below it by their node chain, or
 * (hard-linked, with no chain) by one of their names. */
static int flush_list(rfs_fs *fs, rfs_nodeid node, bool dir, rfs_nodeid **out, size_t *nout)
{
	size_t n = 0, cap = 0, nl = 0, capl = 0;
	rfs_nodeid *v = NULL, *linked = NULL;
	int ret = 0;
	if (!dir) {
		v = malloc(sizeof(*v));
		if (!v)
			return -ENOMEM;
		v[n++] = node;
	} else {
		node_lock(fs);
		for (size_t i = 0; i < fs->cap && !ret; i++)
			for (struct rfs_node *x = fs->by_id[i]; x; x = x->next_id) {
				if (x->dead || !node_live(x))
					continue;
				if (x->in_table && !x->parent) {
					/* Its names are looked up below, without nlock. */
					if (!ids_push(&linked, &nl, &capl, x->id)) {
						ret = -ENOMEM;
						break;
					}
					continue;
				}
				if (!below(fs, x, node))
					continue;
				if (!ids_push(&v, &n, &cap, x->id)) {
					ret = -ENOMEM;
					break;
				}
			}
		node_unlock(fs);
	}
	for (size_t i = 0; i < nl && !ret; i++) {
		uint64_t vol, ino = node_id_ino(fs, linked[i], &vol);
		if (linked_below(fs, vol, ino, node) && !ids_push(&v, &n, &cap, linked[i]))
			ret = -ENOMEM;
	}
	free(linked);
	/* Keep the regular files (a node gone meanwhile needs no flush). */
	size_t k = 0;
	for (size_t i = 0; i < n && !ret; i++) {
		struct stat st;
		if (rfs_fs_getattr(fs, v[i], &st) == 0 && S_ISREG(st.st_mode))
			v[k++] = v[i];
	}
	if (ret || !k) {
		free(v);
		v = NULL;
		k = 0;
	}
	*out = v;
	*nout = k;
	return ret;
}

int rfs_fs_watch_mark(rfs_watch *w, const struct rfs_ctx *who, rfs_nodeid node,
		      uint64_t *mark, rfs_nodeid **flush, size_t *nflush)
{
	rfs_fs *fs = w->fs;
	struct stat st;
	*flush = NULL;
	*nflush = 0;
	int ret = rfs_fs_getattr(fs, node, &st);
	if (ret)
		return ret;
	/* The daemon is root: check what the kernel would for a write. */
	if (who->uid != 0 && (ret = rfs_fs_access(fs, who, node, 2)) != 0)
		return ret == -ESTALE ? ret : -EACCES;
	bool dir = S_ISDIR(st.st_mode);
	ret = flush_list(fs, node, dir, flush, nflush);
	if (ret)
		return ret;
	w_lock(w);
	struct wmark *m = w->marks;
	while (m && m->node != node)
		m = m->next;
	if (!m && (m = calloc(1, sizeof(*m))) != NULL) {
		m->id = ++w->next_mark;
		m->node = node;
		m->dir = dir;
		m->next = w->marks;
		w->marks = m;
		w->st.marks++;
	}
	if (m)
		*mark = m->id;
	w_unlock(w);
	if (!m) {
		free(*flush);
		*flush = NULL;
		*nflush = 0;
		return -ENOMEM;
	}
	return 0;
}

int rfs_fs_watch_arm(rfs_watch *w, uint64_t mark)
{
	rfs_fs *fs = w->fs;
	/* Under the write lock: a modification holding it now finishes
	 * before the arm; one that takes it later sees the new generation
	 * (op.c begin) and is checked against this mark. */
	fs_wrlock(fs);
	w_lock(w);
	struct wmark *m = mark_find(w, mark);
	uint64_t add = 0;
	if (m) {
		/* A new one-shot round; the set's memory is kept. */
		if (m->fired.v)
			memset(m->fired.v, 0, sizeof(*m->fired.v) * m->fired.cap);
		m->fired.n = 0;
		add = m->armed ? 0 : 1;
		m->armed = true;
	}
	w_unlock(w);
	if (m)
		atomic_fetch_add_explicit(&fs->watch_state, WATCH_GEN_ONE + add,
					  memory_order_release);
	rfs_pool_unlock(fs->pool);
	/* Writes queued before the mark was armed (file_delay.c; none is
	 * queued after) become visible before the arm returns, not after
	 * with no event. */
	dm_settle(fs, NULL);
	return m ? 0 : -ENOENT;
}

int rfs_fs_watch_unmark(rfs_watch *w, uint64_t mark)
{
	w_lock(w);
	struct wmark **pp = &w->marks;
	while (*pp && (*pp)->id != mark)
		pp = &(*pp)->next;
	struct wmark *m = *pp;
	if (m) {
		*pp = m->next;
		w->st.marks--;
		if (m->armed)
			atomic_fetch_sub_explicit(&w->fs->watch_state, 1, memory_order_relaxed);
	}
	w_unlock(w);
	if (!m)
		return -ENOENT;
	idset_free(&m->fired);
	free(m);
	return 0;
}

/* ---- the subscriber's side -------------------------------------------------- */

void rfs_fs_watch_limit(rfs_watch *w, size_t max_events)
{
	w_lock(w);
	w->qmax = max_events ? max_events : RFS_WATCH_QUEUE_DEFAULT;
	w_unlock(w);
}

int rfs_fs_watch_fd(rfs_watch *w)
{
	return w->efd;
}

int rfs_fs_watch_next(rfs_watch *w, struct rfs_watch_event *ev)
{
	w_lock(w);
	struct wevent *e = w->qhead;
	if (e) {
		w->qhead = e->next;
		if (!w->qhead)
			w->qtail = &w->qhead;
		w->queued--;
		uint64_t one;
		/* Semaphore mode: one count per queued event. */
		if (read(w->efd, &one, sizeof(one)) < 0)
			rfs_log(RFS_LOG_DEBUG, "watch: eventfd read: %s", strerror(errno));
	}
	w_unlock(w);
	if (!e)
		return -EAGAIN;
	memset(ev, 0, sizeof(*ev));
	ev->id = e->id;
	ev->mark = e->mark;
	ev->kind = e->kind;
	ev->ino = e->ino;
	ev->blocking = e->blocking;
	ev->cut = e->cut;
	snprintf(ev->path, sizeof(ev->path), "%s", e->path);
	free(e->path);
	free(e);
	return 0;
}

int rfs_fs_watch_ack(rfs_watch *w, uint64_t id)
{
	w_lock(w);
	struct waiter **pp = &w->waiting;
	while (*pp && (*pp)->id != id)
		pp = &(*pp)->next;
	struct waiter *x = *pp;
	if (x) {
		*pp = x->next;
		x->listed = false;
		x->done = true;
		w->st.acked++;
		pthread_cond_broadcast(&w->cond);
	}
	w_unlock(w);
	return x ? 0 : -ENOENT;
}

void rfs_fs_watch_stat(rfs_watch *w, struct rfs_watch_stat *st)
{
	w_lock(w);
	*st = w->st;
	w_unlock(w);
}

/* ---- the check (op_begin) ------------------------------------------------------ */

/* A node id list that grows (a chain of ancestors). */
struct idvec {
	rfs_nodeid *v;
	size_t n, cap;
	rfs_nodeid small[32];
};

static int idvec_push(struct idvec *c, rfs_nodeid id)
{
	if (c->n == c->cap) {
		size_t cap = c->cap * 2;
		rfs_nodeid *v = c->v == c->small ? malloc(sizeof(*v) * cap)
						 : realloc(c->v, sizeof(*v) * cap);
		if (!v)
			return -ENOMEM;
		if (c->v == c->small)
			memcpy(v, c->small, sizeof(c->small));
		c->v = v;
		c->cap = cap;
	}
	c->v[c->n++] = id;
	return 0;
}

static void idvec_init(struct idvec *c)
{
	c->v = c->small;
	c->n = 0;
	c->cap = sizeof(c->small) / sizeof(c->small[0]);
}

static void idvec_free(struct idvec *c)
{
	if (c->v != c->small)
		free(c->v);
}

/* A mark a target matched: which, and where in the chain its node is;
 * or (join) an unacknowledged event of the same file to wait for. */
struct cand {
	rfs_watch *w; /* a reference held */
	uint64_t mark;
	rfs_nodeid node;
	bool dir;
	struct waiter *join; /* a reference held */
};

/* An event whose modification waits for the ack. */
struct pend {
	rfs_watch *w;     /* a reference held */
	struct waiter *x; /* a reference held */
};

struct check {
	struct pend *p;
	size_t n, cap;
};

/* The path from directory `top` down to the target (the names of the
 * chain below it) in *out (malloc'd), and the directories between (top
 * first, the target's own directory last) in dirs.  0; 1 when top is not
 * above the target's name (moved meanwhile, or a hard link's other name);
 * -ENOMEM. */
static int path_below(rfs_fs *fs, const struct op_target *t, rfs_nodeid top, char **out,
		      struct idvec *dirs)
{
	const char *name0 = t->node ? t->node->name : t->name;
	struct idvec up;
	idvec_init(&up);
	*out = NULL;
	node_lock(fs);
	size_t len0 = t->node ? (name0 ? strlen(name0) : 0) : t->len;
	struct rfs_node *par0 = t->node ? t->node->parent : t->dir;
	/* First its length, and whether top is above at all. */
	size_t total = 0;
	bool found = false;
	const char *name = name0;
	size_t len = len0;
	for (struct rfs_node *par = par0; name && par; par = par->parent) {
		total += len;
		if (par->id == top) {
			found = true;
			break;
		}
		total++;
		name = par->name;
		len = name ? strlen(name) : 0;
	}
	char *buf = found ? malloc(total + 1) : NULL;
	int ret = !found ? 1 : buf ? 0 : -ENOMEM;
	if (!ret) {
		/* Then the names, back to front. */
		size_t pos = total;
		buf[pos] = 0;
		name = name0;
		len = len0;
		for (struct rfs_node *par = par0; !ret; par = par->parent) {
			pos -= len;
			memcpy(buf + pos, name, len);
			ret = idvec_push(&up, par->id);
			if (par->id == top)
				break;
			buf[--pos] = '/';
			name = par->name;
			len = strlen(name);
		}
	}
	node_unlock(fs);
	for (size_t i = up.n; !ret && i-- > 0;)
		ret = idvec_push(dirs, up.v[i]);
	idvec_free(&up);
	if (ret) {
		free(buf);
		return ret;
	}
	*out = buf;
	return 0;
}

/* Fit path into an event: a path too long for it is cut at the last '/'
 * that fits, leaving the directory below the mark that holds the file
 * (possibly "", the marked directory itself).  true when cut. */
static bool path_fit(char *path)
{
	size_t i = strlen(path);
	if (i < RFS_WATCH_PATH_MAX)
		return false;
	i = RFS_WATCH_PATH_MAX - 1;
	while (i > 0 && path[i] != '/')
		i--;
	path[i] = 0;
	return true;
}

/* The target's inode: *fid its node id (its st_ino, as it is no
 * directory), chain the ids of the directories above it, nearest first;
 * *linked set (and *lvol, *lino) when it is a link-table inode, whose
 * other names may lie anywhere.  1: no event (a directory entry, or the
 * name is not there: the operation reports that itself), 0, or -ENOMEM. */
static int resolve(rfs_fs *fs, const struct op_target *t, rfs_nodeid *fid,
		   struct idvec *chain, bool *linked, uint64_t *lvol, uint64_t *lino)
{
	struct rfs_node *x;
	if (t->node) {
		node_lock(fs);
		*fid = t->node->id;
		*linked = t->node->in_table;
		*lvol = t->node->vol;
		*lino = t->node->ino;
		x = t->node->parent;
	} else {
		struct rfs_ipath p;
		struct rfs_irec e;
		fs_rdlock(fs);
		int ret = ip_load(fs, t->dir, false, &p);
		if (!ret) {
			struct rfs_irec *d = ip_rec(&p);
			if (S_ISDIR(d->i.mode)) {
				uint8_t key[RFS_KEY_MAX];
				size_t kl = ip_dkey(&p, key, t->name, t->len);
				ret = rec_get(fs->pool, ip_dtree(&p), key, kl, &e, false);
			} else {
				ret = -ENOTDIR;
			}
			ip_free(&p);
		}
		rfs_pool_unlock(fs->pool);
		if (ret || S_ISDIR(e.i.mode))
			return 1;
		*lvol = vol_below(t->dir->vol, &e.i);
		*lino = e.i.ino;
		*linked = (e.i.flags & RFS_INODE_LINKED) != 0;
		*fid = node_id_of(fs, *lvol, *lino);
		node_lock(fs);
		x = t->dir;
	}
	int ret = 0;
	for (; x && !ret; x = x->parent)
		ret = idvec_push(chain, x->id);
	node_unlock(fs);
	return ret;
}

/* Is any armed subtree mark set?  (A hard-linked target's names are
 * looked up only then.) */
static bool any_subtree_mark(rfs_fs *fs)
{
	bool any = false;
	reg_lock(fs);
	for (rfs_watch *w = fs->watches; w && !any; w = w->next) {
		w_lock(w);
		for (struct wmark *m = w->marks; m && !any; m = m->next)
			any = m->armed && m->dir;
		w_unlock(w);
	}
	reg_unlock(fs);
	return any;
}

/* The armed marks that cover fid (chain: its directories; ln: a
 * hard-linked file's names) and have not reported it yet; a reference
 * on each candidate's watch. */
static int match(rfs_fs *fs, rfs_nodeid fid, const struct idvec *chain,
		 const struct lnames *ln, struct cand **out, size_t *nout)
{
	struct cand *c = NULL;
	size_t n = 0, cap = 0;
	int ret = 0;
	reg_lock(fs);
	for (rfs_watch *w = fs->watches; w && !ret; w = w->next) {
		w_lock(w);
		/* An event of this file still waits for its ack: wait too. */
		struct waiter *join = w->waiting;
		while (join && join->fid != fid)
			join = join->next;
		for (struct wmark *m = w->marks; m; m = m->next) {
			if (!m->armed)
				continue;
			bool fired = idset_has(&m->fired, fid);
			if (fired && !join)
				continue;
			bool hit = !m->dir && m->node == fid;
			for (size_t i = 0; m->dir && i < chain->n && !hit; i++)
				hit = chain->v[i] == m->node;
			size_t wi, k;
			if (m->dir && !hit)
				hit = name_below(fs, ln, m->node, &wi, &k);
			if (!hit)
				continue;
			if (n == cap) {
				cap = cap ? 2 * cap : 4;
				struct cand *nc = realloc(c, sizeof(*c) * cap);
				if (!nc) {
					ret = -ENOMEM;
					break;
				}
				c = nc;
			}
			w->refs++;
			c[n++] = (struct cand){w, m->id, m->node, m->dir, fired ? join : NULL};
			if (fired) {
				join->refs++;
				join = NULL; /* once per watch */
			}
		}
		w_unlock(w);
	}
	reg_unlock(fs);
	*out = c;
	*nout = n;
	return ret;
}

/* The path of a hard-linked target below directory `top` through its
 * first name there (*out malloc'd; dirs: top down to the name's own
 * directory).  0, 1 when no name is below top (any more), -ENOMEM. */
static int name_path(rfs_fs *fs, const struct lnames *ln, rfs_nodeid top, char **out,
		     struct idvec *dirs)
{
	size_t i, k;
	*out = NULL;
	if (!name_below(fs, ln, top, &i, &k))
		return 1;
	const struct link_name *nm = &ln->v[i];
	/* The path from the root has one name per directory on the way:
	 * skip the k above top. */
	const char *p = nm->path;
	for (size_t j = 0; j < k && p; j++)
		if ((p = strchr(p, '/')) != NULL)
			p++;
	if (!p)
		return 1;
	for (size_t j = k; j < nm->ndirs; j++)
		if (idvec_push(dirs, node_id_of(fs, nm->dirs[j].vol, nm->dirs[j].ino)))
			return -ENOMEM;
	return (*out = strdup(p)) ? 0 : -ENOMEM;
}

/* May the watch's subscriber list every directory in dirs (read and
 * search)?  No pool lock held. */
static bool listable(rfs_fs *fs, const rfs_watch *w, const struct idvec *dirs)
{
	if (w->who.uid == 0)
		return true;
	for (size_t i = 0; i < dirs->n; i++) {
		int r = rfs_fs_access(fs, &w->who, dirs->v[i], 4 | 1);
		if (r == -ESTALE) {
			/* A directory on the way to a hard link's other name
			 * that the kernel has not looked up: find it by its
			 * number (node id) for the check, then let it go. */
			rfs_nodeid got;
			struct stat st;
			if (rfs_fs_lookup(fs, dirs->v[i], ".", &got, &st) == 0) {
				r = got == dirs->v[i] ? rfs_fs_access(fs, &w->who, got, 4 | 1)
						      : -EACCES;
				rfs_fs_forget(fs, got, 1);
			}
		}
		if (r)
			return false;
	}
	return true;
}

/* Room for one more waiter in ck. */
static bool pend_room(struct check *ck)
{
	if (ck->n < ck->cap)
		return true;
	size_t cap = ck->cap ? 2 * ck->cap : 4;
	struct pend *np = realloc(ck->p, sizeof(*np) * cap);
	if (!np)
		return false;
	ck->p = np;
	ck->cap = cap;
	return true;
}

/* Append e to w's queue and count it on the eventfd (w->lock). */
static void enqueue(rfs_watch *w, struct wevent *e)
{
	RFS_ASSERT_LOCK(w_locked(w));
	*w->qtail = e;
	w->qtail = &e->next;
	w->queued++;
	uint64_t one = 1;
	if (write(w->efd, &one, sizeof(one)) < 0)
		rfs_log(RFS_LOG_ERR, "watch: eventfd write: %s", strerror(errno));
}

/* The queue is full: disarm every mark and queue one overflow event in
 * place of the event that did not fit (w->lock; ov preallocated, or NULL
 * when memory ran out: the marks are disarmed all the same, and the log
 * says so). */
static void overflow(rfs_watch *w, struct wevent *ov)
{
	RFS_ASSERT_LOCK(w_locked(w));
	uint64_t armed = 0;
	for (struct wmark *m = w->marks; m; m = m->next) {
		armed += m->armed;
		m->armed = false;
	}
	atomic_fetch_sub_explicit(&w->fs->watch_state, armed, memory_order_relaxed);
	w->st.overflows++;
	rfs_log(RFS_LOG_WARN, "%s: a watch's queue holds %zu unread events, its limit: its "
		"%llu marks are disarmed; the subscriber must arm them again and rescan",
		rfs_pool_path(w->fs->pool), w->queued, (unsigned long long)armed);
	if (!ov) {
		rfs_log(RFS_LOG_ERR, "%s: out of memory for a watch's overflow event",
			rfs_pool_path(w->fs->pool));
		return;
	}
	ov->id = ++w->next_event;
	ov->kind = RFS_PREMOD_OVERFLOW;
	enqueue(w, ov);
}

/* Queue the event of candidate c for file fid (path: relative to the
 * mark, cut: cut to fit; NULL: not revealed, count it as hidden).  A
 * blocking watch's waiter goes to ck (the reference moves with it);
 * otherwise the reference is given back. */
static void deliver(rfs_watch *w, const struct cand *c, rfs_nodeid fid, int kind,
		    const char *path, bool cut, struct check *ck)
{
	struct waiter *x = NULL;
	struct wevent *e = NULL, *ov = NULL;
	bool keep = false;
	if (path) {
		e = calloc(1, sizeof(*e));
		if (e && !(e->path = strdup(path))) {
			free(e);
			e = NULL;
		}
		if ((w->flags & RFS_WATCH_BLOCKING) && e) {
			x = calloc(1, sizeof(*x));
			if (x && !pend_room(ck)) {
				free(x);
				x = NULL;
			}
		}
		/* Made before the lock, used only if the queue is full. */
		if ((ov = calloc(1, sizeof(*ov))) != NULL && !(ov->path = strdup(""))) {
			free(ov);
			ov = NULL;
		}
	}
	w_lock(w);
	struct wmark *m = mark_find(w, c->mark);
	if (w->dead || !m || !m->armed || idset_has(&m->fired, fid)) {
		/* Unmarked, freed, overflowed or reported meanwhile. */
	} else if (!path) {
		w->st.hidden++;
	} else if (w->queued >= w->qmax) {
		overflow(w, ov);
		ov = NULL;
	} else if (!e) {
		rfs_log(RFS_LOG_ERR, "%s: out of memory: a pre-modification event of inode %llu "
			"(mark %llu) is lost", rfs_pool_path(w->fs->pool),
			(unsigned long long)fid, (unsigned long long)c->mark);
	} else {
		/* Out of memory for the set only repeats the event later. */
		(void)idset_add(&m->fired, fid);
		e->id = ++w->next_event;
		e->mark = c->mark;
		e->ino = fid;
		e->kind = kind;
		e->blocking = x != NULL;
		e->cut = cut;
		w->st.events++;
		w->st.cut += cut;
		enqueue(w, e);
		e = NULL;
		if (x) {
			x->id = w->next_event;
			x->fid = fid;
			x->refs = 1;
			x->listed = true;
			x->next = w->waiting;
			w->waiting = x;
			clock_gettime(CLOCK_MONOTONIC, &x->deadline);
			x->deadline.tv_sec += w->timeout_ms / 1000;
			x->deadline.tv_nsec += (long)(w->timeout_ms % 1000) * 1000000L;
			if (x->deadline.tv_nsec >= 1000000000L) {
				x->deadline.tv_sec++;
				x->deadline.tv_nsec -= 1000000000L;
			}
			ck->p[ck->n++] = (struct pend){w, x};
			x = NULL;
			keep = true;
		}
	}
	if (!keep && --w->refs == 0 && w->dead)
		pthread_cond_broadcast(&w->cond);
	w_unlock(w);
	free(x);
	for (int i = 0; i < 2; i++) {
		struct wevent *f = i ? ov : e;
		if (f) {
			free(f->path);
			free(f);
		}
	}
}

/* Check one target: queue its events (blocking ones into ck). */
static void check_target(rfs_fs *fs, const struct op_target *t, struct check *ck)
{
	struct idvec chain;
	rfs_nodeid fid = 0;
	struct cand *c = NULL;
	size_t nc = 0;
	bool linked = false;
	uint64_t lvol = 0, lino = 0;
	struct lnames ln = {0};
	idvec_init(&chain);
	int ret = resolve(fs, t, &fid, &chain, &linked, &lvol, &lino);
	if (!ret && linked && any_subtree_mark(fs)) {
		/* A hard-linked file: a subtree mark above any of its names
		 * covers it.  The names are cached until a name changes. */
		fs_rdlock(fs);
		ret = link_names_copy(fs, lvol, lino, &ln.v, &ln.n);
		rfs_pool_unlock(fs->pool);
		if (ret && ret != -ENOMEM)
			rfs_log(RFS_LOG_ERR, "%s: looking up the names of hard-linked inode %llu "
				"for the pre-modification marks: %s; no event under its other "
				"names", rfs_pool_path(fs->pool), (unsigned long long)lino,
				strerror(-ret));
		if (ret && ret != -ENOMEM)
			ret = 0;
	}
	if (!ret)
		ret = match(fs, fid, &chain, &ln, &c, &nc);
	idvec_free(&chain);
	if (nc && t->node) {
		/* Only now, when a mark covers it: is it a directory? */
		struct rfs_irec r;
		fs_rdlock(fs);
		int err = inode_read(fs, t->node, &r);
		rfs_pool_unlock(fs->pool);
		if (err || S_ISDIR(r.i.mode))
			ret = 1;
	}
	for (size_t i = 0; i < nc; i++) {
		rfs_watch *w = c[i].w;
		if (!ret && c[i].join && pend_room(ck)) {
			/* Reported already, not acknowledged yet: wait for that
			 * ack (the references move to ck). */
			ck->p[ck->n++] = (struct pend){w, c[i].join};
			continue;
		}
		if (c[i].join) {
			w_lock(w);
			waiter_put(w, c[i].join);
			w_unlock(w);
		}
		if (ret || c[i].join) {
			w_unref(w);
			continue;
		}
		bool show = true, cut = false;
		char *path = NULL;
		int err = 0;
		if (c[i].dir) {
			struct idvec dirs;
			idvec_init(&dirs);
			/* The name the operation goes through, else (a hard
			 * link) the first of its names below the mark. */
			err = path_below(fs, t, c[i].node, &path, &dirs);
			if (err == 1) {
				dirs.n = 0;
				err = name_path(fs, &ln, c[i].node, &path, &dirs);
			}
			if (!err) {
				show = listable(fs, w, &dirs);
				cut = path_fit(path);
			}
			idvec_free(&dirs);
		} else if (!(path = strdup(""))) {
			err = -ENOMEM;
		}
		if (err) {
			/* 1: moved out from under the mark meanwhile. */
			if (err < 0)
				ret = err;
			free(path);
			w_unref(w);
			continue;
		}
		deliver(w, &c[i], fid, t->kind, show ? path : NULL, cut, ck);
		free(path);
	}
	if (ret < 0)
		rfs_log(RFS_LOG_ERR, "%s: out of memory checking the pre-modification marks of "
			"inode %llu: no event", rfs_pool_path(fs->pool), (unsigned long long)fid);
	link_names_release(ln.v, ln.n);
	free(c);
}

void watch_release_waiters(rfs_fs *fs)
{
	reg_lock(fs);
	for (rfs_watch *w = fs->watches; w; w = w->next) {
		w_lock(w);
		/* As rfs_fs_watch_free: every waiting modification goes on;
		 * a late ack finds nothing. */
		for (struct waiter *x = w->waiting; x; x = x->next) {
			x->done = true;
			x->listed = false;
		}
		w->waiting = NULL;
		pthread_cond_broadcast(&w->cond);
		w_unlock(w);
	}
	reg_unlock(fs);
}

/* Take x off w's list of waiters, if it is there, and mark it done.
 * w->lock held. */
static void waiter_unlist(struct rfs_watch *w, struct waiter *x)
{
	struct waiter **pp = &w->waiting;
	while (*pp && *pp != x)
		pp = &(*pp)->next;
	if (*pp)
		*pp = x->next;
	x->listed = false;
	x->done = true;
}


void watch_op_check(rfs_fs *fs, struct rfs_op *op)
{
	struct check ck = {0};
	RFS_ASSERT_LOCK(!rfs_pool_holds_lock(fs->pool));
	for (unsigned i = 0; i < op->pm.ntgt; i++)
		check_target(fs, &op->pm.tgt[i], &ck);
	/* Wait for the acks, holding no pool lock: only this operation
	 * waits.  The deadlines were set at delivery.  The subscriber may
	 * need requests served meanwhile (it reads the file): the wait
	 * hooks let the caller stand another thread in for this one. */
	if (ck.n)
		fs_wait_begin(fs);
	for (size_t i = 0; i < ck.n; i++) {
		rfs_watch *w = ck.p[i].w;
		struct waiter *x = ck.p[i].x;
		w_lock(w);
		w->st.waiting++;
		/* Released (the daemon stops): watch_release_waiters sets
		 * the flag before it broadcasts under w->lock. */
		while (!x->done && !fs_waits_released(fs) &&
		       pthread_cond_timedwait(&w->cond, &w->lock, &x->deadline) != ETIMEDOUT)
			;
		w->st.waiting--;
		if (!x->done && fs_waits_released(fs)) {
			/* Delivered after the release: go on, no timeout. */
			waiter_unlist(w, x);
		}
		if (!x->done) {
			/* The first of its waiters to time out takes it off
			 * the list; the others share its deadline. */
			waiter_unlist(w, x);
			w->st.timed_out++;
			pthread_cond_broadcast(&w->cond);
			rfs_log(RFS_LOG_WARN, "%s: %s: event %llu not acknowledged within %u ms; "
				"the modification goes on", rfs_pool_path(fs->pool), op->what,
				(unsigned long long)x->id, w->timeout_ms);
		}
		waiter_put(w, x);
		if (--w->refs == 0 && w->dead)
			pthread_cond_broadcast(&w->cond);
		w_unlock(w);
	}
	if (ck.n)
		fs_wait_end(fs);
	free(ck.p);
}
