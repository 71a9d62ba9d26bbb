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
 * that volume).  The answer is cached per inode until a name changes
 * (link, unlink, rename, snapshot: link_names_changed), so a file
 * written many times costs one walk, not one per write.
 *
 * Locking: pool write lock (the journal's records are built inside the
 * running operation).
 */
#include "fs/fs_internal.h"
#include "fs/link_names.h"

#include <stdlib.h>
#include <sys/stat.h>

#define LN_SLOTS 16
#define LN_DEPTH_MAX 4096
#define LN_PATH_MAX 16384 /* longer paths are not listed (record path: u16) */

struct ln_slot {
	bool valid;
	uint64_t vol, ino, gen;
	struct link_name *names;
	size_t n;
};

struct link_names {
	uint64_t gen; /* bumped by link_names_changed */
	struct ln_slot slot[LN_SLOTS];
};

static void names_free(struct link_name *names, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(names[i].path);
		free(names[i].dirs);
	}
	free(names);
}

void link_names_free(rfs_fs *fs)
{
	struct link_names *ln = fs->lnames;
	if (!ln)
		return;
	for (int i = 0; i < LN_SLOTS; i++)
		names_free(ln->slot[i].names, ln->slot[i].n);
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
	uint64_t vol, ino; /* the inode whose names are wanted */
	struct link_dir dirs[LN_DEPTH_MAX];
	char path[LN_PATH_MAX];
	size_t plen;
	struct link_name *out;
	size_t n, cap;
};

static int found(struct walk *w, unsigned depth, const char *name, size_t len)
{
	if (w->plen + 1 + len >= sizeof(w->path))
		return 0; /* a path too long to record: not listed under it */
	if (w->n == w->cap) {
		size_t cap = w->cap ? w->cap * 2 : 4;
		struct link_name *o = realloc(w->out, cap * sizeof(*o));
		if (!o)
			return -ENOMEM;
		w->out = o;
		w->cap = cap;
	}
	struct link_name *x = &w->out[w->n];
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
	w->n++;
	return 0;
}

struct ent {
	uint64_t subtree, vol, ino;
	size_t len;
	char name[RFS_NAME_MAX + 1];
};

/* Read directory w->dirs[depth] (entries tree root) and go on below. */
static int walk_dir(struct walk *w, unsigned depth, uint64_t root)
{
	rfs_tree t = FS_TREE(root, RFS_OWNER_DIR);
	uint64_t vol = w->dirs[depth].vol;
	struct ent *ents = NULL;
	size_t n = 0, cap = 0;
	rfs_cursor *c;
	if (!root)
		return 0;
	if (depth + 1 >= LN_DEPTH_MAX)
		return -ELOOP;
	int ret = rfs_cursor_open(w->fs->pool, &t, &c);
	if (ret)
		return ret;
	for (ret = rfs_cursor_seek(c, "N", 1, 1); !ret; ret = rfs_cursor_step(c, 1)) {
		const uint8_t *k;
		const void *v;
		size_t kl, vl;
		struct rfs_irec r;
		rfs_cursor_get(c, (const void **)&k, &kl, &v, &vl, NULL);
		if (k[0] != 'N')
			break;
		if (kl < 10 || kl - 9 > RFS_NAME_MAX || rec_decode(v, vl, &r)) {
			ret = -EUCLEAN;
			break;
		}
		const char *name = (const char *)k + 9;
		size_t len = kl - 9;
		if (r.i.flags & RFS_INODE_LINKED) {
			if (vol == w->vol && r.i.ino == w->ino && (ret = found(w, depth, name, len)))
				break;
			continue;
		}
		if (!S_ISDIR(r.i.mode))
			continue;
		uint64_t nv = vol_below(vol, &r.i);
		/* Descend where names of the inode may be: its volume's hard
		 * links below, or (an inode of a snapshot) volume roots below,
		 * on the way to its volume. */
		bool want = nv == w->vol ? r.i.links_below > 0
					 : w->vol != RFS_TOP_VOLUME && r.i.vols_below > 0;
		if (!want)
			continue;
		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 16;
			struct ent *ne = realloc(ents, ncap * sizeof(*ents));
			if (!ne) {
				ret = -ENOMEM;
				break;
			}
			ents = ne;
			cap = ncap;
		}
		ents[n] = (struct ent){r.i.subtree, nv, r.i.ino, len, {0}};
		memcpy(ents[n].name, name, len);
		n++;
	}
	rfs_cursor_close(c);
	if (ret == -ENOENT)
		ret = 0;
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
		ret = walk_dir(w, depth + 1, ents[i].subtree);
		w->plen = save;
	}
	free(ents);
	return ret;
}

static int walk(rfs_fs *fs, uint64_t vol, uint64_t ino, struct link_name **out, size_t *n)
{
	struct walk *w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->fs = fs;
	w->vol = vol;
	w->ino = ino;
	rfs_tree vt;
	struct rfs_irec root;
	int ret = rfs_catalog_get(fs->pool, (uint64_t)RFS_TOP_VOLUME, &vt);
	if (!ret) {
		vt.owner = RFS_OWNER_VOLUME;
		ret = rec_get(fs->pool, &vt, "R", 1, &root, false);
	}
	if (!ret) {
		w->dirs[0] = (struct link_dir){RFS_TOP_VOLUME, root.i.ino};
		ret = walk_dir(w, 0, root.i.subtree);
	}
	if (ret) {
		names_free(w->out, w->n);
	} else {
		*out = w->out;
		*n = w->n;
	}
	free(w);
	return ret;
}

int link_names_get(rfs_fs *fs, uint64_t vol, uint64_t ino, const struct link_name **out,
		   size_t *n)
{
	RFS_ASSERT_LOCK(rfs_pool_holds_wrlock(fs->pool));
	if (!fs->lnames && !(fs->lnames = calloc(1, sizeof(*fs->lnames))))
		return -ENOMEM;
	struct link_names *ln = fs->lnames;
	struct ln_slot *s = &ln->slot[(ino * 0x9e3779b97f4a7c15ull ^ vol) % LN_SLOTS];
	if (!s->valid || s->vol != vol || s->ino != ino || s->gen != ln->gen) {
		struct link_name *names = NULL;
		size_t cnt = 0;
		int ret = walk(fs, vol, ino, &names, &cnt);
		if (ret)
			return ret;
		names_free(s->names, s->n);
		*s = (struct ln_slot){true, vol, ino, ln->gen, names, cnt};
	}
	*out = s->names;
	*n = s->n;
	return 0;
}
