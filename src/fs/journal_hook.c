/*
 * What the fs layer tells the change journal: one record per change,
 * built at the mutation site from the node table (the path of the change
 * and the directories above it, whose index ranges will list it), kept
 * in the running operation and appended by op_end in the same
 * transaction (docs/ARCHITECTURE.md, "Change journal").  A change of a
 * hard-linked inode is recorded once under each of its names
 * (link_names.c).
 */
#include "fs/link_names.h"
#include "fs/op.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* Nodes chain_of keeps on the caller's stack (deeper chains: malloc). */
#define CHAIN_STACK 32

/*
 * The path and directories of the running operation's first node record
 * when they fit, lent to the journal (struct jnl_rec.lent): a WRITE's
 * record merges into the file's last one, so the malloc and free of
 * both per WRITE were for nothing.  Per thread, not in struct rfs_op,
 * which callers zero whole: an operation runs on one thread from
 * op_begin to op_end, and a thread runs one operation at a time (the
 * pool write lock; fs->cur_op).
 */
#define REC_PATH 256
#define REC_ANC 16
static _Thread_local char t_rec_path[REC_PATH];
static _Thread_local struct jnl_anc t_rec_anc[REC_ANC];

/*
 * A path and directories that several records of the running operation
 * borrow (`lent`: op_rec_node_ranges' records of one node) when the
 * per-thread buffers are taken or too small: one block, the directories
 * then the path, freed with the records (recs_free), after jnl_append
 * copied what it keeps.  Never changed once filled, so records whose
 * lent pointers are equal have the same strings (jnl_append relies on
 * it).
 */
struct rec_shared {
	struct rec_shared *next;
	struct jnl_anc anc[]; /* then the path */
};

/* A block for nanc directories and a path of plen bytes (*path), freed
 * with op's records; NULL without memory. */
static struct rec_shared *shared_new(struct rfs_op *op, size_t nanc, size_t plen, char **path)
{
	struct rec_shared *s = malloc(sizeof(*s) + sizeof(s->anc[0]) * nanc + plen);
	if (!s)
		return NULL;
	s->next = op->rec_shared;
	op->rec_shared = s;
	*path = (char *)(s->anc + nanc);
	return s;
}

/* The chain from the mount root down to n (n last), in buf when it fits
 * (CHAIN_STACK entries), else malloc'ed (chain_free); NULL when n is not
 * reached from the root (a link-table inode).  nlock held (node_lock). */
static struct rfs_node **chain_of(struct rfs_node *n, size_t *count, struct rfs_node **buf)
{
	size_t k = 0;
	struct rfs_node *x = n;
	for (; x->parent; x = x->parent)
		k++;
	if (x->id != RFS_ROOT_NODE)
		return NULL;
	struct rfs_node **c = k < CHAIN_STACK ? buf : malloc(sizeof(*c) * (k + 1));
	if (!c)
		return NULL;
	*count = k + 1;
	for (x = n; x; x = x->parent)
		c[k--] = x;
	return c;
}

static void chain_free(struct rfs_node **c, struct rfs_node **buf)
{
	if (c != buf)
		free(c);
}

/* Bytes path_put writes for chain c[1..n) and a name of len bytes (at
 * most: its NUL included). */
static size_t path_len(struct rfs_node **c, size_t n, size_t len)
{
	size_t total = 1 + len;
	for (size_t i = 1; i < n; i++)
		total += strlen(c[i]->name) + 1;
	return total;
}

/* "a/b/c" of chain c[1..n) plus name (optional) into p (path_len
 * bytes); returns p. */
static char *path_put(struct rfs_node **c, size_t n, const char *name, size_t len, char *p)
{
	char *w = p;
	for (size_t i = 1; i < n; i++) {
		size_t l = strlen(c[i]->name);
		if (w != p)
			*w++ = '/';
		memcpy(w, c[i]->name, l);
		w += l;
	}
	if (name) {
		if (w != p)
			*w++ = '/';
		memcpy(w, name, len);
		w += len;
	}
	*w = 0;
	return p;
}

/* The same, malloc'ed. */
static char *path_of(struct rfs_node **c, size_t n, const char *name, size_t len)
{
	char *p = malloc(path_len(c, n, len));
	return p ? path_put(c, n, name, len, p) : NULL;
}

static uint64_t st_ino_of(rfs_fs *fs, struct rfs_node *n)
{
	(void)fs;
	return n->vol << 48 | n->ino;
}

/* Add the directories of chain c (depth = index) to r's ancestors, on
 * the new side or the old one.  Not c[0], the mount root: every record
 * is below it, so its query reads the records themselves (jnl_query_all)
 * and an index item per record would only cost space. */
static int anc_add(struct jnl_rec *r, struct rfs_node **c, size_t n, bool old)
{
	/* A lent record's array (t_rec_anc) has room for them. */
	struct jnl_anc *a = r->lent ? r->anc : realloc(r->anc, sizeof(*a) * (r->nanc + n));
	if (!a)
		return -ENOMEM;
	r->anc = a;
	for (size_t i = 1; i < n; i++) {
		struct jnl_anc *x = NULL;
		for (unsigned k = 0; k < r->nanc; k++)
			if (a[k].vol == c[i]->vol && a[k].ino == c[i]->ino)
				x = &a[k];
		if (!x) {
			x = &a[r->nanc++];
			x->vol = c[i]->vol;
			x->ino = c[i]->ino;
			x->depth_new = x->depth_old = JNL_DEPTH_NONE;
		}
		if (old)
			x->depth_old = (uint16_t)i;
		else
			x->depth_new = (uint16_t)i;
	}
	return 0;
}

/* Room for m more records in op (one growth for a batch's records);
 * false, and the gap made explicit (jfail), without memory. */
static bool recs_reserve(struct rfs_op *op, size_t m)
{
	if (!op->caprecs) {
		op->recs = op->recs_inline;
		op->caprecs = OP_RECS_INLINE;
	}
	if (op->nrecs + m <= op->caprecs)
		return true;
	size_t cap = op->caprecs * 2;
	while (cap < op->nrecs + m)
		cap *= 2;
	struct jnl_rec *r = op->recs == op->recs_inline ? malloc(sizeof(*r) * cap)
						    : realloc(op->recs, sizeof(*r) * cap);
	if (!r) {
		op->jfail = true;
		return false;
	}
	if (op->recs == op->recs_inline)
		memcpy(r, op->recs_inline, sizeof(op->recs_inline));
	op->recs = r;
	op->caprecs = cap;
	return true;
}

static struct jnl_rec *rec_new(rfs_fs *fs, int kind)
{
	struct rfs_op *op = fs->cur_op;
	if (!fs->jnl || !op || !recs_reserve(op, 1))
		return NULL;
	struct jnl_rec *r = &op->recs[op->nrecs++];
	memset(r, 0, sizeof(*r));
	r->kind = (uint8_t)kind;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	r->sec = ts.tv_sec;
	r->nsec = (uint32_t)ts.tv_nsec;
	return r;
}

/* r's path, old path and directories, unless lent (t_rec_path,
 * struct rec_shared). */
static void rec_strings_free(struct jnl_rec *r)
{
	if (!r->lent) {
		free(r->path);
		free(r->anc);
	}
	free(r->old_path);
}

/* r could not be completed: drop it, and make the gap explicit. */
static void rec_fail(rfs_fs *fs, struct jnl_rec *r)
{
	rec_strings_free(r);
	fs->cur_op->nrecs--;
	fs->cur_op->jfail = true;
}

/* kinds that may change a name of a hard-linked inode, or the path to
 * one */
static bool names_change(int kind)
{
	return kind == RFS_CHANGE_LINK || kind == RFS_CHANGE_UNLINK ||
	       kind == RFS_CHANGE_RENAME || kind == RFS_CHANGE_EXCHANGE ||
	       kind == RFS_CHANGE_SNAPSHOT || kind == RFS_CHANGE_SNAPSHOT_DELETE;
}

void op_rec_entry(rfs_fs *fs, int kind, struct rfs_node *dir, const char *name,
		  size_t len, uint64_t st_ino)
{
	if (names_change(kind))
		link_names_changed(fs);
	struct jnl_rec *r = rec_new(fs, kind);
	if (!r)
		return;
	r->vol = dir->vol;
	r->ino = st_ino;
	r->parent = st_ino_of(fs, dir);
	node_lock(fs);
	size_t n = 0;
	struct rfs_node *buf[CHAIN_STACK];
	struct rfs_node **c = chain_of(dir, &n, buf);
	int ret = -ENOMEM;
	if (c && (r->path = path_of(c, n, name, len)) != NULL)
		ret = anc_add(r, c, n, false);
	node_unlock(fs);
	chain_free(c, buf);
	if (ret)
		rec_fail(fs, r);
}

/* A new record of a change of node n (NULL: none, see rec_new); a data
 * change covers the byte range *rg (NULL: none). */
static struct jnl_rec *rec_new_node(rfs_fs *fs, int kind, struct rfs_node *n,
				    const struct rfs_change_range *rg)
{
	struct jnl_rec *r = rec_new(fs, kind);
	if (!r)
		return NULL;
	r->vol = n->vol;
	r->ino = st_ino_of(fs, n);
	if (rg) {
		r->nranges = 1;
		r->ranges[0] = *rg;
	}
	return r;
}

/* The records of ranges rg[1..k) after the first range's, recs[base ..
 * base + per): copies of those (their strings shared: lent) with the
 * range changed, range after range as k calls would make them. */
static void rec_copies(struct rfs_op *op, size_t base, size_t per,
		       const struct rfs_change_range *rg, size_t k)
{
	for (size_t i = 1; i < k; i++)
		for (size_t j = 0; j < per; j++) {
			struct jnl_rec *x = &op->recs[op->nrecs++];
			assert(op->nrecs <= op->caprecs);
			*x = op->recs[base + j];
			x->ranges[0] = rg[i];
		}
}

/* A change of hard-linked inode n: one record per name, under that
 * name's directories; an inode without a name (an open orphan) is
 * listed, without path, under the mount root only.  rg, k: as
 * rec_node. */
static void rec_linked(rfs_fs *fs, int kind, struct rfs_node *n,
		       const struct rfs_change_range *rg, size_t k)
{
	struct rfs_op *op = fs->cur_op;
	const struct link_name *names = NULL;
	size_t cnt = 0;
	if (link_names_get(fs, n->vol, n->ino, &names, &cnt)) {
		op->jfail = true;
		return;
	}
	size_t per = cnt ? cnt : 1, base = op->nrecs;
	if (!recs_reserve(op, per * k))
		return;
	for (size_t i = 0; i < per; i++) {
		struct jnl_rec *r = rec_new_node(fs, kind, n, rg);
		if (!r)
			return;
		if (!cnt)
			continue; /* no directory: listed under the mount root only */
		const struct link_name *x = &names[i];
		size_t plen = strlen(x->path) + 1, nd = x->ndirs - 1;
		r->parent = x->dirs[x->ndirs - 1].vol << 48 | x->dirs[x->ndirs - 1].ino;
		if (k == 1) {
			/* Its own: jnl_append may keep them without a copy. */
			r->path = malloc(plen);
			r->anc = malloc(sizeof(*r->anc) * x->ndirs);
		} else {
			struct rec_shared *sh = shared_new(op, nd, plen, &r->path);
			if (sh) {
				r->anc = sh->anc;
				r->lent = true;
			} else {
				r->path = NULL;
			}
		}
		if (!r->path || !r->anc) {
			rec_fail(fs, r);
			return;
		}
		memcpy(r->path, x->path, plen);
		/* dirs[0] is the mount root: not indexed (anc_add). */
		for (size_t d = 1; d < x->ndirs; d++)
			r->anc[d - 1] = (struct jnl_anc){x->dirs[d].vol, x->dirs[d].ino, (uint16_t)d,
							 JNL_DEPTH_NONE};
		r->nanc = (uint16_t)nd;
	}
	rec_copies(op, base, per, rg, k);
}

/* k records of kind of node n, the i-th with range rg[i] (rg NULL: no
 * range, k 1), from one walk of n's chain: the first record's path and
 * directories, which the others share (lent). */
static void rec_node(rfs_fs *fs, int kind, struct rfs_node *n,
		     const struct rfs_change_range *rg, size_t k)
{
	struct rfs_op *op = fs->cur_op;
	if (!fs->jnl || !op || !k)
		return;
	node_lock(fs);
	if (n->in_table) {
		node_unlock(fs);
		rec_linked(fs, kind, n, rg, k);
		return;
	}
	struct jnl_rec *r = recs_reserve(op, k) ? rec_new_node(fs, kind, n, rg) : NULL;
	if (!r) {
		node_unlock(fs);
		return;
	}
	size_t base = op->nrecs - 1;
	int ret = -ENOMEM;
	size_t cn = 0;
	struct rfs_node *buf[CHAIN_STACK];
	struct rfs_node **c = chain_of(n, &cn, buf);
	/* n's own directories: the root's change is listed under the root
	 * itself. */
	size_t na = cn > 1 ? cn - 1 : 1;
	if (c) {
		size_t plen = path_len(c, cn, 0);
		char *p = NULL;
		if (r == &op->recs[0] && na - 1 <= REC_ANC && plen <= REC_PATH) {
			/* The operation's first records (a WRITE's only one,
			 * a delayed batch's of its file). */
			p = t_rec_path;
			r->anc = t_rec_anc;
			r->lent = true;
		} else if (k == 1) {
			p = malloc(plen); /* its own: jnl_append may keep it */
		} else if (shared_new(op, na - 1, plen, &p)) {
			r->anc = op->rec_shared->anc;
			r->lent = true;
		}
		if (p) {
			r->path = path_put(c, cn, NULL, 0, p);
			if (cn > 1)
				r->parent = st_ino_of(fs, c[cn - 2]);
			ret = anc_add(r, c, na, false);
		}
	}
	chain_free(c, buf);
	node_unlock(fs);
	if (ret) {
		rec_fail(fs, r);
		return;
	}
	assert(k == 1 || r->lent);
	rec_copies(op, base, 1, rg, k);
}

void op_rec_node(rfs_fs *fs, int kind, struct rfs_node *n, uint64_t off, uint64_t len)
{
	struct rfs_change_range rg = {off, len};
	rec_node(fs, kind, n, kind == RFS_CHANGE_DATA ? &rg : NULL, 1);
}

void op_rec_node_ranges(rfs_fs *fs, int kind, struct rfs_node *n,
			const struct rfs_change_range *rg, size_t k)
{
	rec_node(fs, kind, n, rg, k);
}

void op_rec_rename(rfs_fs *fs, int kind, struct rfs_node *odir, const char *oname,
		   size_t olen, struct rfs_node *ndir, const char *nname, size_t nlen,
		   uint64_t st_ino)
{
	link_names_changed(fs);
	struct jnl_rec *r = rec_new(fs, kind);
	if (!r)
		return;
	r->vol = ndir->vol;
	r->ino = st_ino;
	r->parent = st_ino_of(fs, ndir);
	r->old_parent = st_ino_of(fs, odir);
	node_lock(fs);
	size_t on = 0, nn = 0;
	struct rfs_node *obuf[CHAIN_STACK], *nbuf[CHAIN_STACK];
	struct rfs_node **oc = chain_of(odir, &on, obuf), **nc = chain_of(ndir, &nn, nbuf);
	int ret = -ENOMEM;
	if (oc && nc && (r->path = path_of(nc, nn, nname, nlen)) != NULL &&
	    (r->old_path = path_of(oc, on, oname, olen)) != NULL) {
		ret = anc_add(r, nc, nn, false);
		if (!ret)
			ret = anc_add(r, oc, on, true);
	}
	node_unlock(fs);
	chain_free(oc, obuf);
	chain_free(nc, nbuf);
	if (ret)
		rec_fail(fs, r);
}

static void recs_free(struct rfs_op *op)
{
	for (size_t i = 0; i < op->nrecs; i++)
		rec_strings_free(&op->recs[i]);
	if (op->recs != op->recs_inline)
		free(op->recs);
	op->recs = NULL;
	op->nrecs = op->caprecs = 0;
	while (op->rec_shared) {
		struct rec_shared *s = op->rec_shared;
		op->rec_shared = s->next;
		free(s);
	}
}

static bool is_resource(int ret)
{
	return ret == -ENOSPC || ret == -ENOMEM || ret == -EIO || ret == -EUCLEAN;
}

int journal_flush(rfs_fs *fs, const char *what)
{
	uint64_t c0 = rfs_pool_changes(fs->pool);
	int ret = jnl_flush(fs->jnl);
	if (ret && is_resource(ret) && rfs_pool_changes(fs->pool) == c0) {
		/* Nothing of the journal's tree changed: drop the records
		 * and start a new epoch.  A flush that failed halfway left
		 * a tree change half done (a node shadowed, its parent not
		 * yet pointing to it), which no commit may write: below. */
		char why[160];
		snprintf(why, sizeof(why), "the changes of %s could not be stored: %s", what,
			 strerror(-ret));
		ret = jnl_reset(fs->jnl, why);
	}
	if (ret) {
		char why[160];
		snprintf(why, sizeof(why), "%s: the change journal could not be written (%s)", what,
			 strerror(-ret));
		rfs_pool_abort(fs->pool, why);
	}
	return ret;
}

void op_journal(struct rfs_op *op, bool aborted)
{
	rfs_fs *fs = op->fs;
	if (!fs->jnl || aborted || (!op->nrecs && !op->jfail)) {
		recs_free(op);
		return;
	}
	int ret = op->jfail ? -ENOMEM : jnl_append(fs->jnl, op->recs, op->nrecs);
	if (ret && is_resource(ret)) {
		/* The change is made and cannot be undone here: rather than
		 * commit it unrecorded, start a new epoch (cursors get an
		 * explicit "journal reset", never a silent gap). */
		char why[160];
		snprintf(why, sizeof(why), "%s could not be recorded: %s", op->what,
			 strerror(-ret));
		ret = jnl_reset(fs->jnl, why);
	}
	if (ret) {
		char why[160];
		snprintf(why, sizeof(why), "%s: the change journal could not be written (%s)",
			 op->what, strerror(-ret));
		rfs_pool_abort(fs->pool, why);
	} else {
		/* The records wait for the commit (fs_precommit), stored
		 * together; sooner when they are many, or when the space
		 * storing them may take is short (then as an operation's
		 * own records always were, within its reservation). */
		uint64_t need = jnl_flush_blocks(fs->jnl);
		if (jnl_flush_due(fs->jnl) ||
		    rfs_pool_free_blocks(fs->pool) < 2 * need)
			ret = journal_flush(fs, op->what);
		if (!ret)
			changes_notify(fs);
	}
	recs_free(op);
}
