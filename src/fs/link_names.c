/*
 * The names of a hard-linked inode, for the change journal: a change
 * made through an inode of the link table (write, setattr, xattr) is
 * recorded once under each of its names (docs/ARCHITECTURE.md, "Change
 * journal", hard links).
 *
 * A link-table record does not know its names: its stubs are directory
 * entries anywhere in its volume.  They are found by one walk from the
 * mount root that descends only into directories whose links_below
 * count says that hard-linked names lie below (and, for an inode of a
 * snapshot volume, into directories with volume roots below, to reach
 * that volume).  That walk visits the same directories whatever inode
 * is wanted, so it collects the names of every hard-linked inode of the
 * volume at once, into a map kept until a name may change (link, unlink,
 * rename, snapshot: link_names_changed): changes to any number of
 * hard-linked files between two such operations cost one walk.
 *
 * Locking: the pool lock, and ln_mutex around the cache.  The journal
 * asks under the write lock (its records are built inside the running
 * operation) and uses the answer in place; the pre-modification check
 * (watch.c) asks under the read lock, which several threads may hold at
 * once, so it gets a copy made under ln_mutex.  link_names_changed runs
 * under the write lock, when no reader is inside.
 */
#include "fs/fs_internal.h"
#include "fs/link_names.h"

#include <pthread.h>
#include <stdlib.h>
#include <sys/stat.h>

#define LN_VOLS 8 /* volumes whose maps are kept */
#define LN_DEPTH_MAX 4096
#define LN_PATH_MAX 16384 /* longer paths are not listed (record path: u16) */

/* Protects every fs's lnames cache (one mutex for all: it is taken only
 * to look up hard-linked names, never held while waiting for anything). */
static pthread_mutex_t ln_mutex = PTHREAD_MUTEX_INITIALIZER;

/* The names of one inode. */
struct ln_ent {
	uint64_t ino; /* 0: free slot */
	struct link_name *names;
	size_t n, cap;
};

/* The names of every hard-linked inode of a volume (open addressing). */
struct ln_map {
	bool valid;
	uint64_t vol, gen;
	struct ln_ent *ents;
	size_t cap, used;
};

struct link_names {
	uint64_t gen; /* bumped by link_names_changed */
	uint64_t walks; /* walks made (tests) */
	unsigned next; /* map to reuse next */
	struct ln_map map[LN_VOLS];
};

static void names_free(struct link_name *names, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(names[i].path);
		free(names[i].dirs);
	}
	free(names);
}

static void map_clear(struct ln_map *m)
{
	for (size_t i = 0; i < m->cap; i++)
		names_free(m->ents[i].names, m->ents[i].n);
	free(m->ents);
	memset(m, 0, sizeof(*m));
}

static size_t slot_of(uint64_t ino, size_t cap)
{
	return (size_t)((ino * 0x9e3779b97f4a7c15ull) >> 20) & (cap - 1);
}

/* The entry of ino (add: make one); NULL when absent or out of memory. */
static struct ln_ent *map_ent(struct ln_map *m, uint64_t ino, bool add)
{
	if (add && (m->used + 1) * 2 > m->cap) {
		size_t cap = m->cap ? m->cap * 2 : 64;
		struct ln_ent *e = calloc(cap, sizeof(*e));
		if (!e)
			return NULL;
		for (size_t i = 0; i < m->cap; i++) {
			if (!m->ents[i].ino)
				continue;
			size_t h = slot_of(m->ents[i].ino, cap);
			while (e[h].ino)
				h = (h + 1) & (cap - 1);
			e[h] = m->ents[i];
		}
		free(m->ents);
		m->ents = e;
		m->cap = cap;
	}
	if (!m->cap)
		return NULL;
	size_t h = slot_of(ino, m->cap);
	while (m->ents[h].ino && m->ents[h].ino != ino)
		h = (h + 1) & (m->cap - 1);
	if (!m->ents[h].ino) {
		if (!add)
			return NULL;
		m->ents[h].ino = ino;
		m->used++;
	}
	return &m->ents[h];
}

void link_names_free(rfs_fs *fs)
{
	struct link_names *ln = fs->lnames;
	if (!ln)
		return;
	for (int i = 0; i < LN_VOLS; i++)
		map_clear(&ln->map[i]);
	free(ln);
	fs->lnames = NULL;
}

void link_names_changed(rfs_fs *fs)
{
	if (fs->lnames)
		fs->lnames->gen++;
}

/* The walk: the stack of directories from the root (dirs[0]) to the one
 * being read, and the path to it. */
struct walk {
	rfs_fs *fs;
	uint64_t vol; /* the volume whose hard-linked names are wanted */
	struct ln_map *m;
	struct link_dir dirs[LN_DEPTH_MAX];
	char path[LN_PATH_MAX];
	size_t plen;
};

/* A stub of inode ino named name in directory dirs[depth]. */
static int found(struct walk *w, unsigned depth, uint64_t ino, const char *name, size_t len)
{
	if (w->plen + 1 + len >= sizeof(w->path))
		return 0; /* a path too long to record: not listed under it */
	struct ln_ent *e = map_ent(w->m, ino, true);
	if (!e)
		return -ENOMEM;
	if (e->n == e->cap) {
		size_t cap = e->cap ? e->cap * 2 : 2;
		struct link_name *o = realloc(e->names, cap * sizeof(*o));
		if (!o)
			return -ENOMEM;
		e->names = o;
		e->cap = cap;
	}
	struct link_name *x = &e->names[e->n];
	x->path = malloc(w->plen + len + 2);
	x->dirs = malloc(sizeof(*x->dirs) * (depth + 1));
	if (!x->path || !x->dirs) {
		free(x->path);
		free(x->dirs);
		return -ENOMEM;
	}
	size_t l = w->plen;
	memcpy(x->path, w->path, l);
	if (l)
		x->path[l++] = '/';
	memcpy(x->path + l, name, len);
	x->path[l + len] = 0;
	memcpy(x->dirs, w->dirs, sizeof(*x->dirs) * (depth + 1));
	x->ndirs = depth + 1;
	e->n++;
	return 0;
}

struct ent {
	struct dirloc loc; /* its entries */
	uint64_t vol, ino;
	size_t len;
	char name[RFS_NAME_MAX + 1];
};

/* One directory's entries being read: the hard-link stubs are reported
 * at once, the directories to descend into are collected (the recursion
 * needs cursors of its own). */
struct walk_level {
	struct walk *w;
	unsigned depth;
	uint64_t vol;
	const struct dirloc *at; /* the directory read */
	struct ent *ents;
	size_t n, cap;
};

static int walk_entry(void *arg, const char *name, size_t len, const struct rfs_irec *r)
{
	struct walk_level *l = arg;
	struct walk *w = l->w;
	if (r->i.flags & RFS_INODE_LINKED)
		return l->vol == w->vol ? found(w, l->depth, r->i.ino, name, len) : 0;
	if (!S_ISDIR(r->i.mode))
		return 0;
	uint64_t nv = vol_below(l->vol, &r->i);
	/* Descend where names of the inode may be: its volume's hard
	 * links below, or (an inode of a snapshot) volume roots below,
	 * on the way to its volume. */
	bool want = nv == w->vol ? r->i.links_below > 0
				 : w->vol != RFS_TOP_VOLUME && r->i.vols_below > 0;
	if (!want)
		return 0;
	if (l->n == l->cap) {
		size_t ncap = l->cap ? l->cap * 2 : 16;
		struct ent *ne = realloc(l->ents, ncap * sizeof(*ne));
		if (!ne)
			return -ENOMEM;
		l->ents = ne;
		l->cap = ncap;
	}
	l->ents[l->n] = (struct ent){.vol = nv, .ino = r->i.ino, .len = len};
	dloc_of(&l->ents[l->n].loc, &r->i, &l->at->t);
	memcpy(l->ents[l->n].name, name, len);
	l->n++;
	return 0;
}

/* Read directory w->dirs[depth] (entries at loc) and go on below. */
static int walk_dir(struct walk *w, unsigned depth, const struct dirloc *loc)
{
	struct walk_level l = {.w = w, .depth = depth, .vol = w->dirs[depth].vol, .at = loc};
	if (!loc->t.root)
		return 0;
	if (depth + 1 >= LN_DEPTH_MAX)
		return -ELOOP;
	int ret = dir_each(w->fs, loc, walk_entry, &l);
	struct ent *ents = l.ents;
	size_t n = l.n;
	/* Recurse after the cursor is closed (each level opens its own). */
	for (size_t i = 0; i < n && !ret; i++) {
		size_t save = w->plen;
		if (w->plen + 1 + ents[i].len >= sizeof(w->path))
			continue;
		if (w->plen)
			w->path[w->plen++] = '/';
		memcpy(w->path + w->plen, ents[i].name, ents[i].len);
		w->plen += ents[i].len;
		w->dirs[depth + 1] = (struct link_dir){ents[i].vol, ents[i].ino};
		ret = walk_dir(w, depth + 1, &ents[i].loc);
		w->plen = save;
	}
	free(ents);
	return ret;
}

/* Fill map m with the names of every hard-linked inode of volume vol. */
static int walk(rfs_fs *fs, uint64_t vol, struct ln_map *m)
{
	struct walk *w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->fs = fs;
	w->vol = vol;
	w->m = m;
	rfs_tree vt;
	struct rfs_irec root;
	int ret = rfs_catalog_get(fs->pool, (uint64_t)RFS_TOP_VOLUME, &vt);
	if (!ret) {
		vt.owner = RFS_OWNER_VOLUME;
		ret = rec_get(fs->pool, &vt, "R", 1, &root, false);
	}
	if (!ret) {
		struct dirloc loc;
		dloc_of(&loc, &root.i, &vt);
		w->dirs[0] = (struct link_dir){RFS_TOP_VOLUME, root.i.ino};
		ret = walk_dir(w, 0, &loc);
	}
	free(w);
	return ret;
}

/* link_names_get with ln_mutex held. */
static int get_locked(rfs_fs *fs, uint64_t vol, uint64_t ino, const struct link_name **out,
		      size_t *n)
{
	if (!fs->lnames && !(fs->lnames = calloc(1, sizeof(*fs->lnames))))
		return -ENOMEM;
	struct link_names *ln = fs->lnames;
	struct ln_map *m = NULL;
	for (int i = 0; i < LN_VOLS && !m; i++)
		if (ln->map[i].valid && ln->map[i].vol == vol)
			m = &ln->map[i];
	if (m && m->gen != ln->gen)
		map_clear(m);
	else if (!m) {
		m = &ln->map[ln->next];
		ln->next = (ln->next + 1) % LN_VOLS;
		map_clear(m);
	}
	if (!m->valid) {
		ln->walks++;
		int ret = walk(fs, vol, m);
		if (ret) {
			map_clear(m);
			return ret;
		}
		m->valid = true;
		m->vol = vol;
		m->gen = ln->gen;
	}
	struct ln_ent *e = map_ent(m, ino, false);
	*out = e ? e->names : NULL;
	*n = e ? e->n : 0;
	return 0;
}

int link_names_get(rfs_fs *fs, uint64_t vol, uint64_t ino, const struct link_name **out,
		   size_t *n)
{
	RFS_ASSERT_LOCK(rfs_pool_holds_wrlock(fs->pool));
	pthread_mutex_lock(&ln_mutex);
	int ret = get_locked(fs, vol, ino, out, n);
	pthread_mutex_unlock(&ln_mutex);
	return ret;
}

int link_names_copy(rfs_fs *fs, uint64_t vol, uint64_t ino, struct link_name **out,
		    size_t *n)
{
	RFS_ASSERT_LOCK(rfs_pool_holds_lock(fs->pool));
	const struct link_name *v;
	size_t cnt;
	*out = NULL;
	*n = 0;
	pthread_mutex_lock(&ln_mutex);
	int ret = get_locked(fs, vol, ino, &v, &cnt);
	struct link_name *c = NULL;
	size_t k = 0;
	if (!ret && cnt && !(c = calloc(cnt, sizeof(*c))))
		ret = -ENOMEM;
	for (; !ret && k < cnt; k++) {
		c[k].path = strdup(v[k].path);
		c[k].dirs = malloc(sizeof(*c[k].dirs) * v[k].ndirs);
		c[k].ndirs = v[k].ndirs;
		if (!c[k].path || !c[k].dirs) {
			k++;
			ret = -ENOMEM;
			break;
		}
		memcpy(c[k].dirs, v[k].dirs, sizeof(*c[k].dirs) * v[k].ndirs);
	}
	pthread_mutex_unlock(&ln_mutex);
	if (ret) {
		names_free(c, k);
		return ret;
	}
	*out = c;
	*n = cnt;
	return 0;
}

void link_names_release(struct link_name *names, size_t n)
{
	names_free(names, n);
}

uint64_t link_names_walks(rfs_fs *fs)
{
	pthread_mutex_lock(&ln_mutex);
	uint64_t n = fs->lnames ? fs->lnames->walks : 0;
	pthread_mutex_unlock(&ln_mutex);
	return n;
}
