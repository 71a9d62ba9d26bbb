/*
 * Snapshots of any directory: O(1) in the size of the subtree.
 *
 * A snapshot of directory S is a new entry D (in any directory of the
 * mount) whose record is S's with the subtree shared (one refcount
 * increment on S's entries tree) and marked RFS_INODE_VOLROOT: D roots a
 * new volume W, with W's own inode namespace (the inode numbers below
 * are S's, st_ino = W << 48 | ino), link table and meta.  Copy-on-write
 * keeps both sides independent from then on.
 *
 * Two things below S are not shared as they are, and cost what they are:
 *   - hard-linked inodes live in S's volume's link table: W gets its own
 *     copies of the records that stubs below S name (O(hard links below);
 *     a whole volume's table is shared instead, O(1));
 *   - snapshot roots below S (nested volumes) get new volume ids in D's
 *     copy, each with a clone of its volume's catalog tree (O(nested
 *     volumes x depth)).
 * Directories count both below them (links_below, vols_below), so a
 * directory with neither snapshots in O(1).
 */
#include "fs/op.h"

#include <stdlib.h>

/* ---- hard links below the source ---------------------------------------- */

struct ino_count {
	uint64_t ino, n;
};

struct link_list {
	struct ino_count *v;
	size_t n, cap;
};

static int link_add(struct link_list *l, uint64_t ino)
{
	for (size_t i = 0; i < l->n; i++)
		if (l->v[i].ino == ino) {
			l->v[i].n++;
			return 0;
		}
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;
		struct ino_count *v = realloc(l->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n++] = (struct ino_count){ino, 1};
	return 0;
}

/* A directory's entries being read: the stubs are counted at once, the
 * directories to descend into collected (the recursion needs cursors of
 * its own). */
struct links_level {
	struct link_list *l;
	const struct dirloc *at;
	struct dirloc *sub;
	size_t nsub, capsub;
};

static int links_entry(void *arg, const char *name, size_t len, const struct rfs_irec *r)
{
	struct links_level *w = arg;
	(void)name;
	(void)len;
	if (r->i.flags & RFS_INODE_LINKED)
		return link_add(w->l, r->i.ino);
	if (!S_ISDIR(r->i.mode) || !r->i.links_below || (r->i.flags & RFS_INODE_VOLROOT))
		return 0;
	if (w->nsub == w->capsub) {
		size_t cap = w->capsub ? w->capsub * 2 : 8;
		struct dirloc *ns = realloc(w->sub, cap * sizeof(*ns));
		if (!ns)
			return -ENOMEM;
		w->sub = ns;
		w->capsub = cap;
	}
	dloc_of(&w->sub[w->nsub++], &r->i, &w->at->t);
	return 0;
}

/* Collect the link stubs below the directory whose entries are at loc
 * (same volume only), descending only into directories that have some. */
static int links_collect(rfs_fs *fs, const struct dirloc *loc, struct link_list *l,
			 int depth)
{
	if (depth > 4096)
		return -ELOOP;
	struct links_level w = {.l = l, .at = loc};
	int ret = dir_each(fs, loc, links_entry, &w);
	for (size_t i = 0; !ret && i < w.nsub; i++)
		ret = links_collect(fs, &w.sub[i], l, depth + 1);
	free(w.sub);
	return ret;
}

/* The link table of the new volume: a clone of the source volume's whole
 * table when the source is that volume's root, else copies of the
 * records that the stubs below the source name, with their counts. */
static int links_table(rfs_fs *fs, uint64_t svol, const struct rfs_irec *s,
		       const rfs_tree *sholder, bool whole, rfs_tree *tab)
{
	rfs_tree vt, st;
	struct rfs_irec trec;
	tab->root = 0;
	tab->owner = RFS_OWNER_LINKS;
	if (s->i.links_below == 0)
		return 0;
	int ret = rfs_catalog_get(fs->pool, svol, &vt);
	if (!ret)
		ret = rec_get(fs->pool, &vt, "T", 1, &trec, false);
	if (ret)
		return ret;
	st = FS_TREE(trec.i.subtree, RFS_OWNER_LINKS);
	if (whole)
		return st.root ? rfs_tree_clone(fs->pool, &st, tab) : 0;
	struct link_list l = {0};
	struct dirloc sloc;
	dloc_of(&sloc, &s->i, sholder);
	ret = links_collect(fs, &sloc, &l, 0);
	for (size_t i = 0; !ret && i < l.n; i++) {
		uint8_t key[16];
		size_t kl = table_key(key, l.v[i].ino);
		struct rfs_irec r;
		ret = rec_get(fs->pool, &st, key, kl, &r, false);
		if (ret) {
			if (ret == -ENOENT)
				ret = -EUCLEAN;
			break;
		}
		r.i.nlink = (uint32_t)l.v[i].n;
		/* The copy holds its own references (subtree, inline extents). */
		ret = rec_ref(fs, &r);
		if (ret)
			break;
		ret = rec_put(fs, tab, key, kl, &r, RFS_PUT_INSERT);
	}
	free(l.v);
	return ret;
}

/* ---- volumes ------------------------------------------------------------ */

static uint64_t vol_next_id(rfs_fs *fs)
{
	struct rfs_volmeta *m = &fs->top->m;
	if (m->next_vol <= RFS_TOP_VOLUME)
		m->next_vol = RFS_TOP_VOLUME + 1;
	fs->top->dirty = true;
	return m->next_vol++;
}

static void vol_meta_init(struct rfs_volmeta *m, uint64_t id, uint64_t parent,
			  uint64_t source, uint64_t next_ino, uint32_t flags)
{
	memset(m, 0, sizeof(*m));
	m->magic = RFS_VOL_MAGIC;
	m->version = RFS_VOL_VERSION;
	m->volid = id;
	m->next_ino = next_ino;
	m->parent = parent;
	m->source_vol = source;
	m->flags = flags | RFS_VOL_UNCOUNTED;
	uint32_t ns;
	now_ts(&m->created, &ns);
}

/* Write volume id's catalog tree: meta m and link table tab (whose
 * reference moves in), and register it. */
/* The path of directory node n relative to the mount ("" for the root),
 * from the node table's names (a snapshot's source, recorded with it).
 * NULL when out of memory or when n is reached by number only. */
static char *node_path(rfs_fs *fs, struct rfs_node *n)
{
	size_t len = 0;
	char *out = NULL;
	node_lock(fs);
	for (struct rfs_node *x = n; x->parent; x = x->parent)
		len += strlen(x->name) + (x == n ? 0 : 1);
	if (n->parent || n->id == RFS_ROOT_NODE)
		out = malloc(len + 1);
	if (out) {
		out[len] = 0;
		for (struct rfs_node *x = n; x->parent; x = x->parent) {
			size_t l = strlen(x->name);
			len -= l;
			memcpy(out + len, x->name, l);
			if (len)
				out[--len] = '/';
		}
	}
	node_unlock(fs);
	return out;
}

/* Item 'S' of a snapshot's volume tree: the source's path at creation
 * (relative to the mount, as text; absent when not known). */
static int vol_source_read(rfs_fs *fs, uint64_t id, char *buf, size_t size)
{
	rfs_tree vt;
	size_t vl = size - 1;
	int ret = rfs_catalog_get(fs->pool, id, &vt);
	if (!ret)
		ret = rfs_tree_lookup(fs->pool, &vt, "S", 1, buf, &vl, NULL);
	if (ret)
		return ret;
	buf[vl < size - 1 ? vl : size - 1] = 0;
	return 0;
}

static int vol_create(rfs_fs *fs, const struct rfs_volmeta *m, rfs_tree *tab,
		      const char *source)
{
	rfs_tree vt = FS_TREE(0, RFS_OWNER_VOLUME);
	struct rfs_irec trec;
	memset(&trec, 0, sizeof(trec));
	trec.i.subtree = tab->root;
	int ret = rec_put(fs, &vt, "T", 1, &trec, RFS_PUT_INSERT);
	if (ret) {
		rfs_tree_drop(fs->pool, tab);
		return ret;
	}
	ret = rfs_tree_put(fs->pool, &vt, "M", 1, m, sizeof(*m), 0, RFS_PUT_INSERT);
	size_t sl = source ? strlen(source) : 0;
	if (!ret && source && sl < RFS_VAL_MAX)
		ret = rfs_tree_put(fs->pool, &vt, "S", 1, source, sl, 0, RFS_PUT_INSERT);
	if (!ret)
		ret = rfs_catalog_set(fs->pool, m->volid, &vt);
	if (ret) {
		rfs_tree_drop(fs->pool, &vt);
		return ret;
	}
	return vol_add(fs, m->volid, m, NULL);
}

/* A copy of volume x (nested below a snapshot's source) for the new
 * snapshot: its catalog tree cloned, with its own id and meta. */
static int vol_copy(rfs_fs *fs, uint64_t x, uint64_t parent, bool rdonly, uint64_t *out)
{
	struct rfs_vol *xv = vol_get(fs, x);
	if (!xv)
		return -EUCLEAN;
	rfs_tree xt, vt;
	int ret = rfs_catalog_get(fs->pool, x, &xt);
	if (!ret)
		ret = rfs_tree_clone(fs->pool, &xt, &vt);
	if (ret)
		return ret;
	/* Read-only in its own right stays so; read-only only because the
	 * snapshot it sat in was follows the new snapshot. */
	bool own_ro = (xv->m.flags & RFS_VOL_RDONLY) && !(xv->m.flags & RFS_VOL_RDONLY_INHERITED);
	struct rfs_volmeta m;
	vol_meta_init(&m, vol_next_id(fs), parent, x, xv->m.next_ino,
		      own_ro   ? RFS_VOL_RDONLY
		      : rdonly ? RFS_VOL_RDONLY | RFS_VOL_RDONLY_INHERITED
			       : 0);
	ret = rfs_tree_put(fs->pool, &vt, "M", 1, &m, sizeof(m), 0, RFS_PUT_REPLACE);
	if (!ret)
		ret = rfs_catalog_set(fs->pool, m.volid, &vt);
	if (ret) {
		rfs_tree_drop(fs->pool, &vt);
		return ret;
	}
	*out = m.volid;
	return vol_add(fs, m.volid, &m, NULL);
}

/* Names of the entries of one directory to visit again once its cursor
 * is closed (the visit changes the tree, or needs cursors of its own). */
struct name_list {
	struct name_ent {
		size_t len;
		char name[RFS_NAME_MAX];
	} *v;
	size_t n, cap;
};

static int name_add(struct name_list *l, const char *name, size_t len)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 8;
		struct name_ent *nv = realloc(l->v, cap * sizeof(*nv));
		if (!nv)
			return -ENOMEM;
		l->v = nv;
		l->cap = cap;
	}
	l->v[l->n].len = len;
	memcpy(l->v[l->n++].name, name, len);
	return 0;
}

static int renest_entry(void *arg, const char *name, size_t len, const struct rfs_irec *r)
{
	if (!S_ISDIR(r->i.mode) || (!r->i.vols_below && !(r->i.flags & RFS_INODE_VOLROOT)))
		return 0;
	return name_add(arg, name, len);
}

/* In the entries at dl of a directory of volume vol (a fresh copy made
 * by a snapshot; dl->t's root moves as it is rewritten), give every
 * volume root below a volume of its own. */
static int renest(rfs_fs *fs, struct dirloc *dl, uint64_t vol, bool rdonly, int depth)
{
	if (depth > 4096)
		return -ELOOP;
	/* Names first: the tree changes as the entries are rewritten. */
	struct name_list l = {0};
	int ret = dir_each(fs, dl, renest_entry, &l);
	for (size_t i = 0; !ret && i < l.n; i++) {
		struct rfs_irec r;
		uint8_t key[RFS_KEY_MAX];
		size_t kl = dloc_key(dl, key, l.v[i].name, l.v[i].len);
		ret = rec_get(fs->pool, &dl->t, key, kl, &r, true);
		if (ret)
			break;
		uint64_t below = vol;
		if (r.i.flags & RFS_INODE_VOLROOT) {
			ret = vol_copy(fs, r.i.volume, vol, rdonly, &below);
			if (ret)
				break;
			r.i.volume = below;
		}
		if (r.i.vols_below) {
			struct dirloc sub;
			dloc_of(&sub, &r.i, &dl->t);
			ret = renest(fs, &sub, below, rdonly, depth + 1);
			if (is_embed(&r.i))
				dl->t = sub.t; /* its entries are in this tree */
			else
				r.i.subtree = sub.t.root;
		}
		int r2 = rec_put(fs, &dl->t, key, kl, &r, RFS_PUT_REPLACE | RFS_KEEP_REFS);
		if (!ret)
			ret = r2;
	}
	free(l.v);
	return ret;
}

/* vols_below contribution of a volume root entry. */
static int64_t entry_vols_of(const struct rfs_irec *e)
{
	return 1 + (int64_t)e->i.vols_below;
}

/* ---- the snapshot --------------------------------------------------------- */

static int snapshot_op(rfs_fs *fs, struct rfs_node *sn, struct rfs_node *dn,
		       const char *name, size_t len, unsigned flags, rfs_nodeid *out,
		       struct stat *st)
{
	struct rfs_irec s, d;
	struct rfs_ipath p;
	uint8_t key[RFS_KEY_MAX];
	size_t kl;
	int ret = vol_writable(fs, dn->vol);
	if (ret)
		return ret;
	ret = ip_load(fs, sn, false, &p);
	if (ret)
		return ret;
	s = *ip_rec(&p);
	rfs_tree sholder = p.lv[p.n - 1].parent; /* the tree holding s */
	ip_free(&p);
	if (!S_ISDIR(s.i.mode))
		return -ENOTDIR;

	ret = ip_load(fs, dn, false, &p);
	if (ret)
		return ret;
	d = *ip_rec(&p);
	struct dirloc dl;
	ip_dloc(&p, &dl);
	ip_free(&p);
	if (!S_ISDIR(d.i.mode))
		return -ENOTDIR;
	if (d.i.nlink == 0)
		return -ENOENT;
	rfs_tree dt = dl.t;
	kl = dloc_key(&dl, key, name, len);
	uint8_t tmp[8];
	size_t tl = sizeof(tmp);
	ret = dt.root ? rfs_tree_lookup(fs->pool, &dt, key, kl, tmp, &tl, NULL) : -ENOENT;
	if (ret != -ENOENT)
		return ret ? ret : -EEXIST;
	struct rfs_vol *sv = vol_get(fs, sn->vol);
	if (!sv)
		return -ESTALE;
	struct rfs_node *nn = node_prepare(fs, name, len);
	if (!nn)
		return -ENOMEM;

	/* Nothing has changed so far; from here on, every step is a change
	 * (a failure halfway discards the transaction, see op.h). */
	bool rdonly = flags & RFS_SNAP_RDONLY;
	bool whole = sn->id == RFS_ROOT_NODE || (s.i.flags & RFS_INODE_VOLROOT);
	rfs_tree tab;
	ret = links_table(fs, sn->vol, &s, &sholder, whole, &tab);
	if (ret)
		goto fail;
	struct rfs_volmeta m;
	vol_meta_init(&m, vol_next_id(fs), dn->vol, sn->vol, sv->m.next_ino,
		      rdonly ? RFS_VOL_RDONLY : 0);
	char *source = node_path(fs, sn);
	ret = vol_create(fs, &m, &tab, source);
	free(source);
	if (ret)
		goto fail;
	(void)op_step(fs);

	struct rfs_irec r = s;
	rfs_tree src = FS_TREE(s.i.subtree, RFS_OWNER_DIR), copy = FS_TREE(0, RFS_OWNER_DIR);
	if (is_embed(&s.i)) {
		/* Its entries are in the tree holding it: the snapshot gets a
		 * copy of them, O(RFS_EMBED_MAX); the source stays as it is. */
		ret = emb_copy(fs, sn, &r);
		if (ret)
			goto fail;
		copy.root = r.i.subtree;
	} else if (src.root) {
		ret = rfs_tree_clone(fs->pool, &src, &copy);
		if (ret)
			goto fail;
	}
	if (s.i.vols_below && copy.root) {
		struct dirloc cl;
		r.i.subtree = copy.root;
		dloc_of(&cl, &r.i, NULL);
		ret = renest(fs, &cl, m.volid, rdonly, 0);
		copy = cl.t;
		if (ret) {
			rfs_tree_drop(fs->pool, &copy);
			goto fail;
		}
	}
	r.i.subtree = copy.root;
	r.i.flags |= RFS_INODE_VOLROOT;
	r.i.volume = m.volid;
	touch_c(&r.i);

	ret = ip_load(fs, dn, true, &p);
	if (!ret)
		ret = ip_room(fs, dn, &p);
	if (ret) {
		rfs_tree_drop(fs->pool, &copy);
		goto fail;
	}
	kl = ip_dkey(&p, key, name, len);
	ret = rec_put(fs, ip_dtree(&p), key, kl, &r, RFS_PUT_INSERT);
	if (ret) {
		rfs_tree_drop(fs->pool, &copy);
		ret = ip_done(fs, &p, 0, ret);
		goto fail;
	}
	struct rfs_irec *pd = ip_rec(&p);
	pd->i.size++;
	p.emb_delta = 1;
	pd->i.nlink++;
	touch_mc(&pd->i);
	/* The snapshot's hard links are its volume's: nothing above counts
	 * them; its volume roots count everywhere above. */
	p.vols_delta = 1 + (int64_t)r.i.vols_below;
	ret = ip_done(fs, &p, 0, 0);
	if (ret)
		goto fail;
	*out = node_publish(fs, nn, dn, m.volid, r.i.ino);
	if (st)
		rec_to_stat(m.volid, &r, st);
	return 0;
fail:
	node_discard(nn);
	return ret;
}

int rfs_fs_snapshot(rfs_fs *fs, rfs_nodeid src, rfs_nodeid dstdir, const char *name,
		    unsigned flags, rfs_nodeid *out, struct stat *st)
{
	size_t len = strlen(name);
	if (len == 0)
		return -ENOENT;
	if (len > RFS_NAME_MAX)
		return -ENAMETOOLONG;
	if (memchr(name, '/', len))
		return -EINVAL;
	if (!strcmp(name, ".") || !strcmp(name, ".."))
		return -EEXIST;
	if (flags & ~(unsigned)RFS_SNAP_RDONLY)
		return -EINVAL;
	struct rfs_node *sn = node_get(fs, src), *dn = node_get(fs, dstdir);
	if (!sn || !dn)
		return -ESTALE;
	struct rfs_op op = {0};
	int ret;
	do {
		/* The new entry and the volume's tree; hard-link records and
		 * nested volumes below the source cost more, and are not
		 * known before they are found (running short then ends the
		 * operation: ENOSPC, or a discarded transaction). */
		ret = op_begin(fs, &op, "snapshot",
			       op_meta(op_depth(fs, dn), 8 + EMB_ITEMS) + op_meta(op_depth(fs, sn), 16 + EMB_ITEMS),
			       0);
		if (ret)
			return ret;
		ret = snapshot_op(fs, sn, dn, name, len, flags, out, st);
		if (!ret)
			op_rec_entry(fs, RFS_CHANGE_SNAPSHOT, dn, name, len,
				     st ? (uint64_t)st->st_ino : *out);
	} while ((ret = op_end(&op, ret)) == OP_RETRY);
	return ret;
}

/* ---- finding volume roots ----------------------------------------------- */

struct vol_found {
	uint64_t id;
	char *path;
};

struct vol_list {
	struct vol_found *v;
	size_t n, cap;
};

static void vol_list_free(struct vol_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i].path);
	free(l->v);
}

/* A directory's entries being read by vols_find: the directories with
 * volume roots at or below them, collected. */
struct vols_level {
	const struct dirloc *at;
	const char *path;
	bool want_paths;
	struct vols_sub {
		struct rfs_irec r;
		struct dirloc loc;
		char *path;
	} *sub;
	size_t nsub, capsub;
};

static int vols_entry(void *arg, const char *name, size_t len, const struct rfs_irec *r)
{
	struct vols_level *w = arg;
	if (!S_ISDIR(r->i.mode) || (r->i.flags & RFS_INODE_LINKED) ||
	    (!(r->i.flags & RFS_INODE_VOLROOT) && !r->i.vols_below))
		return 0;
	char *p = NULL;
	if (w->want_paths) {
		size_t pl = strlen(w->path);
		p = malloc(pl + len + 2);
		if (!p)
			return -ENOMEM;
		memcpy(p, w->path, pl);
		p[pl] = '/';
		memcpy(p + pl + 1, name, len);
		p[pl + 1 + len] = 0;
	}
	if (w->nsub == w->capsub) {
		size_t cap = w->capsub ? w->capsub * 2 : 8;
		struct vols_sub *ns = realloc(w->sub, cap * sizeof(*ns));
		if (!ns) {
			free(p);
			return -ENOMEM;
		}
		w->sub = ns;
		w->capsub = cap;
	}
	struct vols_sub *x = &w->sub[w->nsub++];
	x->r = *r;
	dloc_of(&x->loc, &r->i, &w->at->t);
	x->path = p;
	return 0;
}

/* Every volume root below directory record d (entries at loc; whose
 * path is path, "" for the root), descending only where vols_below says
 * there are some; paths are collected when want_paths. */
static int vols_find(rfs_fs *fs, const struct rfs_irec *d, const struct dirloc *loc,
		     const char *path, bool want_paths, struct vol_list *l, int depth)
{
	if (!loc->t.root || d->i.vols_below == 0)
		return 0;
	if (depth > 4096)
		return -ELOOP;
	struct vols_level w = {.at = loc, .path = path, .want_paths = want_paths};
	int ret = dir_each(fs, loc, vols_entry, &w);
	for (size_t i = 0; i < w.nsub; i++) {
		struct rfs_irec *r = &w.sub[i].r;
		if (!ret && (r->i.flags & RFS_INODE_VOLROOT)) {
			if (l->n == l->cap) {
				size_t cap = l->cap ? l->cap * 2 : 8;
				struct vol_found *nv = realloc(l->v, cap * sizeof(*nv));
				if (!nv)
					ret = -ENOMEM;
				else {
					l->v = nv;
					l->cap = cap;
				}
			}
			if (!ret) {
				l->v[l->n].id = r->i.volume;
				l->v[l->n++].path = want_paths ? strdup(w.sub[i].path) : NULL;
				if (want_paths && !l->v[l->n - 1].path)
					ret = -ENOMEM;
			}
		}
		if (!ret)
			ret = vols_find(fs, r, &w.sub[i].loc, w.sub[i].path ? w.sub[i].path : "",
					want_paths, l, depth + 1);
		free(w.sub[i].path);
	}
	free(w.sub);
	return ret;
}

/* ---- deleting a snapshot ---------------------------------------------------- */

/* Delete snapshot name of directory dn; *st_ino: its root's st_ino. */
static int snapdel_op(rfs_fs *fs, struct rfs_node *dn, const char *name, size_t len,
		      uint64_t *st_ino)
{
	struct rfs_ipath p;
	struct rfs_irec e;
	struct vol_list l = {0};
	int ret = vol_writable(fs, dn->vol);
	if (ret)
		return ret;
	ret = ip_load(fs, dn, true, &p);
	if (ret)
		return ret;
	struct rfs_irec *d = ip_rec(&p);
	uint8_t key[RFS_KEY_MAX];
	size_t kl = ip_dkey(&p, key, name, len);
	rfs_tree *t = ip_dtree(&p);
	ret = S_ISDIR(d->i.mode) ? rec_get(fs->pool, t, key, kl, &e, false) : -ENOTDIR;
	if (!ret && !(e.i.flags & RFS_INODE_VOLROOT))
		ret = -EINVAL;
	if (!ret) {
		struct dirloc el;
		dloc_of(&el, &e.i, t);
		*st_ino = e.i.volume << 48 | e.i.ino;
		ret = vols_find(fs, &e, &el, "", false, &l, 0);
	}
	if (ret) {
		vol_list_free(&l);
		return ip_done(fs, &p, 0, ret);
	}
	/* Detach: the entry goes, O(1); the references its record holds
	 * are released in the background when that is more (reclaim.c). */
	ret = rfs_tree_delete(fs->pool, t, key, kl, RFS_KEEP_REFS);
	if (!ret)
		ret = rec_release(fs, &e);
	if (!ret) {
		d->i.size--;
		p.emb_delta = -1;
		d->i.nlink--;
		touch_mc(&d->i);
		p.vols_delta = -entry_vols_of(&e);
	}
	ret = ip_done(fs, &p, 0, ret);
	if (!ret)
		ret = vol_delete(fs, e.i.volume);
	for (size_t i = 0; !ret && i < l.n; i++)
		ret = vol_delete(fs, l.v[i].id);
	/* What the kernel or open files still hold of those volumes reads
	 * as stale from now on. */
	node_lock(fs);
	for (size_t h = 0; h < fs->cap; h++)
		for (struct rfs_node *n = fs->by_id[h]; n; n = n->next_id)
			if (!vol_get(fs, n->vol))
				n->dead = true;
	node_unlock(fs);
	vol_list_free(&l);
	return ret;
}

int rfs_fs_snapshot_delete(rfs_fs *fs, rfs_nodeid dir, const char *name)
{
	size_t len = strlen(name);
	if (len == 0 || len > RFS_NAME_MAX || memchr(name, '/', len))
		return len > RFS_NAME_MAX ? -ENAMETOOLONG : -EINVAL;
	if (!strcmp(name, ".") || !strcmp(name, ".."))
		return -EINVAL;
	struct rfs_node *dn = node_get(fs, dir);
	if (!dn)
		return -ESTALE;
	struct rfs_op op = {0};
	/* A deletion: may use the reserve, never fails for space. */
	int ret = op_begin(fs, &op, "snapshot delete", 0, 0);
	if (ret)
		return ret;
	uint64_t st_ino = 0;
	ret = snapdel_op(fs, dn, name, len, &st_ino);
	if (!ret)
		op_rec_entry(fs, RFS_CHANGE_SNAPSHOT_DELETE, dn, name, len, st_ino);
	return op_end(&op, ret);
}

/* ---- the volume list ------------------------------------------------------ */

static int cmp_found(const void *a, const void *b)
{
	uint64_t x = ((const struct vol_found *)a)->id, y = ((const struct vol_found *)b)->id;
	return x < y ? -1 : x > y;
}

int rfs_fs_volumes(rfs_fs *fs, int (*fn)(void *arg, const struct rfs_volume_info *v),
		   void *arg)
{
	struct vol_list l = {0};
	struct rfs_irec root;
	fs_rdlock(fs);
	int ret = inode_read(fs, node_get(fs, RFS_ROOT_NODE), &root);
	if (!ret) {
		struct dirloc rl;
		dloc_of(&rl, &root.i, NULL); /* the volume root has a tree */
		ret = vols_find(fs, &root, &rl, "", true, &l, 0);
	}
	if (!ret && l.n)
		qsort(l.v, l.n, sizeof(*l.v), cmp_found);
	struct rfs_volume_info vi = {.id = RFS_TOP_VOLUME, .path = ""};
	vi.created = fs->top->m.created;
	bool stop = ret || fn(arg, &vi);
	for (size_t i = 0; !stop && i < l.n; i++) {
		struct rfs_vol *v = vol_get(fs, l.v[i].id);
		if (!v)
			continue;
		vi.id = v->id;
		vi.parent = v->m.parent;
		vi.source_vol = v->m.source_vol;
		vi.created = v->m.created;
		vi.rdonly = v->m.flags & RFS_VOL_RDONLY;
		vi.path = l.v[i].path + 1; /* without the leading '/' */
		char src[RFS_VAL_MAX];
		vi.source_path = vol_source_read(fs, v->id, src, sizeof(src)) ? NULL : src;
		stop = fn(arg, &vi);
	}
	rfs_pool_unlock(fs->pool);
	vol_list_free(&l);
	return ret;
}
