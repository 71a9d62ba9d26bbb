/*
 * Scrub: read every data block in use, verify it against the crc32c its
 * extent record carries, and name every file that uses a damaged block.
 * One walker serves `reflinkfs scrub` (a mounted filesystem, through an
 * ioctl) and `reflinkfs fsck --data` (a pool opened read-only).
 *
 * The walk goes over every volume of the catalog: first the namespace
 * from the root directory (depth first), then the link table, whose
 * hard-linked inodes are named by the stubs the namespace walk met.
 *
 * Locking.  A step holds the pool's read lock for a bounded amount of
 * work and releases it; between steps writers run.  Nothing read under
 * the lock is kept across steps except keys: the position is the volume
 * id, the entry key of every directory entered, the key of the current
 * entry and the key of the last item done in the current file.  Each
 * step resolves that path again from the catalog, so it never follows a
 * block that a writer may have freed (a freed block is reused after a
 * commit; a block written in the running transaction even at once).
 * Every block is verified against the record that references it under
 * the same read lock, so concurrent writes never look like damage.
 *
 * Each block is read once (a bitmap of blocks seen): a block shared by
 * clones is verified at its first use; later uses only add their file to
 * the report when the block was found damaged and the record carries the
 * same checksum (a block freed and reused meanwhile holds other data).
 */
#include "fs/fs_internal.h"

#include <stdio.h>
#include <stdlib.h>

#define BS RFS_BLOCK_SIZE

enum { PH_NEXTVOL, PH_NS, PH_TABLE, PH_DONE };

/* One directory entered below the volume root: its entry key. */
struct lvl {
	size_t klen;
	uint8_t key[RFS_KEY_MAX];
};

/* Names of one hard-linked inode (stubs met in the namespace). */
struct lnames {
	uint64_t ino; /* 0 = free slot */
	size_t n, cap;
	char **names;
};

/* A damaged block: its number, the checksum its record expects, and the
 * error (-EBADMSG or the read error). */
struct bad {
	uint64_t blocknr;
	uint32_t csum;
	int err;
};

struct rec {
	uint32_t kind;
	int err;
	uint64_t blocknr, volume, ino, offset;
	char *path; /* NULL: no name known */
};

struct rfs_scrub {
	rfs_fs *fs;
	rfs_pool *pool;
	struct rfs_scrub_stats st;

	/* ---- position (keys only; see the header comment) ---- */
	int phase;
	uint64_t vol;
	struct lvl *stack; /* directories entered, depth of them */
	int depth, stack_cap;
	bool cur_valid;    /* resume in the current container at cur... */
	bool cur_incl;     /* ...inclusive (an entry in progress) or after it */
	size_t curlen;
	uint8_t cur[RFS_KEY_MAX];
	bool in_file;      /* the entry at cur is a file in progress */
	bool fpos_valid;   /* resume in its tree after fpos */
	size_t fposlen;
	uint8_t fpos[RFS_KEY_MAX];

	/* ---- what was found ---- */
	uint64_t nbits; /* blocks covered by the bitmaps */
	uint64_t *seen, *badmap;
	struct bad *bad;
	size_t nbad, badcap;
	size_t *badidx; /* open addressing: blocknr -> index + 1 in bad */
	size_t badidx_cap;
	struct rec *recs;
	size_t nrecs, reccap;
	struct lnames *links; /* open addressing by ino, per volume */
	size_t links_cap, nlinks;

	uint8_t *buf; /* RFS_EXTENT_MAX blocks */
	struct rfs_ext ext;
	int64_t budget;
	int fatal; /* -ENOMEM: the scrub cannot go on */
};

/* ---- small helpers -------------------------------------------------------- */

static bool bit_get(const uint64_t *m, uint64_t nbits, uint64_t b)
{
	return b < nbits && (m[b >> 6] >> (b & 63)) & 1;
}

static void bit_set(uint64_t *m, uint64_t nbits, uint64_t b)
{
	if (b < nbits)
		m[b >> 6] |= 1ull << (b & 63);
}

static size_t hash64(uint64_t v, size_t cap)
{
	v ^= v >> 33;
	v *= 0xff51afd7ed558ccdull;
	v ^= v >> 33;
	return (size_t)(v & (cap - 1));
}

static void set_key(uint8_t *dst, size_t *dlen, const void *key, size_t klen)
{
	memcpy(dst, key, klen);
	*dlen = klen;
}

/* Seek to key (inclusive) or to the first item after it. */
static int seek_from(rfs_cursor *c, const uint8_t *key, size_t klen, bool incl)
{
	int ret = rfs_cursor_seek(c, key, klen, 1);
	if (ret || incl)
		return ret;
	const void *k;
	size_t kl;
	rfs_cursor_get(c, &k, &kl, NULL, NULL, NULL);
	if (kl == klen && !memcmp(k, key, klen))
		ret = rfs_cursor_step(c, 1);
	return ret;
}

/* "/a/b" of the directories entered (first n levels), plus name when
 * given.  NULL when out of memory. */
static char *ns_path(const struct rfs_scrub *s, int n, const uint8_t *name, size_t nlen)
{
	size_t len = 1;
	for (int i = 0; i < n; i++)
		len += 1 + s->stack[i].klen - 9;
	if (name)
		len += 1 + nlen;
	char *p = malloc(len + 1), *q = p;
	if (!p)
		return NULL;
	for (int i = 0; i < n; i++) {
		*q++ = '/';
		memcpy(q, s->stack[i].key + 9, s->stack[i].klen - 9);
		q += s->stack[i].klen - 9;
	}
	if (name) {
		*q++ = '/';
		memcpy(q, name, nlen);
		q += nlen;
	}
	if (q == p)
		*q++ = '/';
	*q = 0;
	return p;
}

static void nomem(struct rfs_scrub *s)
{
	s->fatal = -ENOMEM;
}

/* Append a report entry; path is taken over (may be NULL). */
static void rec_add(struct rfs_scrub *s, uint32_t kind, int err, uint64_t blocknr,
		    uint64_t ino, uint64_t offset, char *path)
{
	if (s->nrecs == s->reccap) {
		size_t cap = s->reccap ? s->reccap * 2 : 64;
		struct rec *r = realloc(s->recs, cap * sizeof(*r));
		if (!r) {
			free(path);
			nomem(s);
			return;
		}
		s->recs = r;
		s->reccap = cap;
	}
	s->recs[s->nrecs++] = (struct rec){kind, err, blocknr, s->vol, ino, offset, path};
}

/* A tree that could not be read: report it, with the errno. */
static void meta_error(struct rfs_scrub *s, char *path, uint64_t ino, int err)
{
	s->st.meta_errors++;
	rec_add(s, RFS_SCRUB_META, err, 0, ino, 0, path ? path : strdup(""));
}

/* ---- hard-link names ------------------------------------------------------- */

static void links_clear(struct rfs_scrub *s)
{
	for (size_t i = 0; i < s->links_cap; i++) {
		for (size_t j = 0; j < s->links[i].n; j++)
			free(s->links[i].names[j]);
		free(s->links[i].names);
	}
	free(s->links);
	s->links = NULL;
	s->links_cap = s->nlinks = 0;
}

static struct lnames *links_find(struct rfs_scrub *s, uint64_t ino, bool add)
{
	if (add && (s->nlinks + 1) * 2 > s->links_cap) {
		size_t cap = s->links_cap ? s->links_cap * 2 : 64;
		struct lnames *t = calloc(cap, sizeof(*t));
		if (!t)
			return NULL;
		for (size_t i = 0; i < s->links_cap; i++) {
			if (!s->links[i].ino)
				continue;
			size_t h = hash64(s->links[i].ino, cap);
			while (t[h].ino)
				h = (h + 1) & (cap - 1);
			t[h] = s->links[i];
		}
		free(s->links);
		s->links = t;
		s->links_cap = cap;
	}
	if (!s->links_cap)
		return NULL;
	size_t h = hash64(ino, s->links_cap);
	while (s->links[h].ino && s->links[h].ino != ino)
		h = (h + 1) & (s->links_cap - 1);
	if (s->links[h].ino == ino)
		return &s->links[h];
	if (!add)
		return NULL;
	s->links[h].ino = ino;
	s->nlinks++;
	return &s->links[h];
}

/* Remember that the namespace names hard-linked inode ino as path. */
static void links_add(struct rfs_scrub *s, uint64_t ino, char *path)
{
	struct lnames *l = path ? links_find(s, ino, true) : NULL;
	if (l && l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 2;
		char **n = realloc(l->names, cap * sizeof(*n));
		if (n) {
			l->names = n;
			l->cap = cap;
		}
	}
	if (!l || l->n == l->cap) {
		free(path);
		nomem(s);
		return;
	}
	l->names[l->n++] = path;
}

/* ---- damaged blocks ------------------------------------------------------------ */

/* The damage entry of (blocknr, csum), or NULL. */
static const struct bad *bad_find(const struct rfs_scrub *s, uint64_t blocknr, uint32_t csum)
{
	if (!s->badidx_cap)
		return NULL;
	for (size_t h = hash64(blocknr, s->badidx_cap); s->badidx[h];
	     h = (h + 1) & (s->badidx_cap - 1)) {
		const struct bad *b = &s->bad[s->badidx[h] - 1];
		if (b->blocknr == blocknr && b->csum == csum)
			return b;
	}
	return NULL;
}

static const struct bad *bad_add(struct rfs_scrub *s, uint64_t blocknr, uint32_t csum, int err)
{
	if (s->nbad == s->badcap) {
		size_t cap = s->badcap ? s->badcap * 2 : 64;
		struct bad *b = realloc(s->bad, cap * sizeof(*b));
		if (!b)
			return NULL;
		s->bad = b;
		s->badcap = cap;
	}
	if ((s->nbad + 1) * 2 > s->badidx_cap) {
		size_t cap = s->badidx_cap ? s->badidx_cap * 2 : 128;
		size_t *t = calloc(cap, sizeof(*t));
		if (!t)
			return NULL;
		for (size_t i = 0; i < s->nbad; i++) {
			size_t h = hash64(s->bad[i].blocknr, cap);
			while (t[h])
				h = (h + 1) & (cap - 1);
			t[h] = i + 1;
		}
		free(s->badidx);
		s->badidx = t;
		s->badidx_cap = cap;
	}
	s->bad[s->nbad] = (struct bad){blocknr, csum, err};
	size_t h = hash64(blocknr, s->badidx_cap);
	while (s->badidx[h])
		h = (h + 1) & (s->badidx_cap - 1);
	s->badidx[h] = ++s->nbad;
	bit_set(s->badmap, s->nbits, blocknr);
	s->st.damaged_blocks++;
	return &s->bad[s->nbad - 1];
}

/* ---- files ----------------------------------------------------------------------- */

/* The file being walked, for naming it in the report. */
struct fctx {
	uint64_t ino;
	bool in_table;        /* named by its hard-link stubs */
	const uint8_t *name;  /* else: entry name below the stack */
	size_t nlen;
};

/* Add one report entry per name of the file for a damaged block. */
static void users_add(struct rfs_scrub *s, const struct fctx *f, const struct bad *b,
		      uint64_t offset)
{
	if (!f->in_table) {
		char *p = ns_path(s, s->depth, f->name, f->nlen);
		if (!p) {
			nomem(s);
			return;
		}
		rec_add(s, RFS_SCRUB_DATA, b->err, b->blocknr, f->ino, offset, p);
		return;
	}
	struct lnames *l = links_find(s, f->ino, false);
	if (!l || !l->n) {
		rec_add(s, RFS_SCRUB_DATA, b->err, b->blocknr, f->ino, offset, NULL);
		return;
	}
	for (size_t i = 0; i < l->n && !s->fatal; i++) {
		char *p = strdup(l->names[i]);
		if (!p) {
			nomem(s);
			return;
		}
		rec_add(s, RFS_SCRUB_DATA, b->err, b->blocknr, f->ino, offset, p);
	}
}

/* A block failed (checksum or read error): record it and this user. */
static void block_bad(struct rfs_scrub *s, const struct fctx *f, uint64_t blocknr,
		      uint32_t csum, int err, uint64_t offset)
{
	const struct bad *b = bad_add(s, blocknr, csum, err);
	if (!b) {
		nomem(s);
		return;
	}
	users_add(s, f, b, offset);
}

/* Verify blocks [i, j) of extent e, none seen before. */
static void verify_run(struct rfs_scrub *s, const struct fctx *f, const struct rfs_ext *e,
		       uint64_t i, uint64_t j)
{
	uint64_t start = e->start + i;
	uint32_t n = (uint32_t)(j - i);
	/* Read without the pool's verification: it stops at the first bad
	 * block and logs; the scrub wants every bad block, in its report. */
	int ret = rfs_data_read(s->pool, start, s->buf, n, NULL);
	for (uint32_t k = 0; k < n && !s->fatal; k++) {
		uint64_t b = start + k;
		uint32_t want = e->csum[i + k];
		uint64_t off = (e->lblk + i + k) * BS;
		int err = 0;
		bit_set(s->seen, s->nbits, b);
		s->st.data_blocks++;
		if (ret) /* which block of the run fails? */
			err = rfs_data_read(s->pool, b, s->buf + (size_t)k * BS, 1, NULL);
		if (!err && rfs_data_csum(b, s->buf + (size_t)k * BS) != want)
			err = -EBADMSG;
		if (err)
			block_bad(s, f, b, want, err, off);
	}
	s->budget -= n;
}

static void verify_extent(struct rfs_scrub *s, const struct fctx *f, const struct rfs_ext *e)
{
	uint64_t i = 0;
	while (i < e->n && !s->fatal) {
		uint64_t b = e->start + i;
		if (bit_get(s->seen, s->nbits, b)) {
			/* Verified at an earlier use: only name this user. */
			if (bit_get(s->badmap, s->nbits, b)) {
				const struct bad *bd = bad_find(s, b, e->csum[i]);
				if (bd)
					users_add(s, f, bd, (e->lblk + i) * BS);
			}
			i++;
			continue;
		}
		uint64_t j = i + 1;
		while (j < e->n && !bit_get(s->seen, s->nbits, e->start + j))
			j++;
		verify_run(s, f, e, i, j);
		i = j;
	}
}

/*
 * Walk the items of a file tree from the saved position, verifying every
 * written extent.  Returns 1 when the budget ran out (position saved),
 * 0 when the file is done.  A tree that cannot be read is reported and
 * the rest of the file skipped.
 */
static int scrub_file(struct rfs_scrub *s, const struct rfs_irec *r, const struct fctx *f)
{
	rfs_tree t = FS_TREE(r->i.subtree, RFS_OWNER_FILE);
	rfs_cursor *c;
	int ret = rfs_cursor_open(s->pool, &t, &c);
	if (ret)
		goto fail;
	ret = s->fpos_valid ? seek_from(c, s->fpos, s->fposlen, false) : rfs_cursor_seek(c, NULL, 0, 1);
	for (; !ret && !s->fatal; ret = rfs_cursor_step(c, 1)) {
		const uint8_t *k;
		const void *v;
		size_t kl, vl;
		rfs_cursor_get(c, (const void **)&k, &kl, &v, &vl, NULL);
		s->budget--;
		if (kl && k[0] == 'E') {
			if (ext_decode(k, kl, v, vl, &s->ext)) {
				rfs_cursor_close(c);
				ret = -EUCLEAN;
				goto fail;
			}
			if (!(s->ext.flags & RFS_EXT_UNWRITTEN))
				verify_extent(s, f, &s->ext);
		}
		set_key(s->fpos, &s->fposlen, k, kl);
		s->fpos_valid = true;
		if (s->budget <= 0) {
			rfs_cursor_close(c);
			return 1;
		}
	}
	rfs_cursor_close(c);
	if (ret == -ENOENT || s->fatal)
		return 0;
fail:
	if (f->in_table) {
		struct lnames *l = links_find(s, f->ino, false);
		meta_error(s, l && l->n ? strdup(l->names[0]) : NULL, f->ino, ret);
	} else {
		meta_error(s, ns_path(s, s->depth, f->name, f->nlen), f->ino, ret);
	}
	return 0;
}

/* ---- namespace and link table ------------------------------------------------------- */

/* Leave the current directory: resume in its parent after its entry. */
static void pop_dir(struct rfs_scrub *s)
{
	s->depth--;
	set_key(s->cur, &s->curlen, s->stack[s->depth].key, s->stack[s->depth].klen);
	s->cur_valid = true;
	s->cur_incl = false;
	s->in_file = false;
}

static int push_dir(struct rfs_scrub *s, const uint8_t *k, size_t kl)
{
	if (s->depth == s->stack_cap) {
		int cap = s->stack_cap ? s->stack_cap * 2 : 16;
		struct lvl *n = realloc(s->stack, (size_t)cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		s->stack = n;
		s->stack_cap = cap;
	}
	set_key(s->stack[s->depth].key, &s->stack[s->depth].klen, k, kl);
	s->depth++;
	s->cur_valid = false;
	s->in_file = false;
	return 0;
}

/*
 * Resolve the directory the position is in: from the volume root down
 * the entry keys of the stack.  A directory gone meanwhile (removed,
 * renamed, replaced) ends there: the walk goes on after its entry in
 * its parent.  Returns 1 when the volume itself is gone or unreadable.
 */
static int resolve_dir(struct rfs_scrub *s, struct rfs_irec *dir)
{
	rfs_tree vol;
	int ret = rfs_catalog_get(s->pool, s->vol, &vol);
	if (!ret)
		ret = rec_get(s->pool, &vol, "R", 1, dir, false);
	if (ret) {
		if (ret != -ENOENT)
			meta_error(s, strdup(""), 0, ret);
		return 1;
	}
	for (int i = 0; i < s->depth; i++) {
		struct rfs_irec r;
		rfs_tree t = FS_TREE(dir->i.subtree, RFS_OWNER_DIR);
		ret = rec_get(s->pool, &t, s->stack[i].key, s->stack[i].klen, &r, false);
		if (ret && ret != -ENOENT)
			meta_error(s, ns_path(s, i + 1, NULL, 0), 0, ret);
		if (ret || !S_ISDIR(r.i.mode) || (r.i.flags & RFS_INODE_LINKED)) {
			while (s->depth > i + 1)
				s->depth--;
			pop_dir(s);
			return 0;
		}
		*dir = r;
	}
	return 0;
}

/* Walk the namespace of the volume from the position until the budget
 * runs out (returns 1) or the namespace is done (phase -> PH_TABLE). */
static int ns_step(struct rfs_scrub *s)
{
	struct rfs_irec dir, r;
	int ret;
	if (resolve_dir(s, &dir)) {
		s->phase = PH_TABLE;
		s->cur_valid = s->in_file = false;
		return 0;
	}
	s->budget--;
next_dir:;
	rfs_tree t = FS_TREE(dir.i.subtree, RFS_OWNER_DIR);
	rfs_cursor *c = NULL;
	ret = t.root ? rfs_cursor_open(s->pool, &t, &c) : -ENOENT;
	if (!ret)
		ret = s->cur_valid ? seek_from(c, s->cur, s->curlen, s->cur_incl)
				   : rfs_cursor_seek(c, NULL, 0, 1);
	for (; !ret && !s->fatal; ret = rfs_cursor_step(c, 1)) {
		const uint8_t *k;
		const void *v;
		size_t kl, vl;
		rfs_cursor_get(c, (const void **)&k, &kl, &v, &vl, NULL);
		s->budget--;
		bool resumed = s->in_file && s->cur_valid && s->cur_incl && kl == s->curlen &&
			       !memcmp(k, s->cur, kl);
		set_key(s->cur, &s->curlen, k, kl);
		s->cur_valid = true;
		s->cur_incl = false;
		s->in_file = false;
		if (kl < 10 || k[0] != 'N')
			continue; /* the directory's own xattrs */
		if (rec_decode(v, vl, &r)) {
			meta_error(s, ns_path(s, s->depth, k + 9, kl - 9), 0, -EUCLEAN);
			continue;
		}
		if (r.i.flags & RFS_INODE_LINKED) {
			char *p = ns_path(s, s->depth, k + 9, kl - 9);
			if (!p)
				nomem(s);
			else
				links_add(s, r.i.ino, p);
			continue;
		}
		if (S_ISDIR(r.i.mode)) {
			s->st.dirs++;
			rfs_cursor_close(c);
			if (push_dir(s, k, kl)) {
				nomem(s);
				return 0;
			}
			dir = r;
			goto next_dir;
		}
		if (!resumed) {
			s->st.files++;
			s->fpos_valid = false;
		}
		if (!r.i.subtree)
			continue;
		struct fctx f = {r.i.ino, false, k + 9, kl - 9};
		/* The name points into the cursor's leaf: valid while it stays. */
		s->in_file = true;
		s->cur_incl = true;
		if (scrub_file(s, &r, &f)) {
			rfs_cursor_close(c);
			return 1;
		}
		s->in_file = false;
		s->cur_incl = false;
		if (s->budget <= 0) {
			rfs_cursor_close(c);
			return 1;
		}
	}
	rfs_cursor_close(c);
	if (s->fatal)
		return 0;
	if (ret != -ENOENT)
		meta_error(s, ns_path(s, s->depth, NULL, 0), dir.i.ino, ret);
	if (s->depth == 0) {
		s->phase = PH_TABLE;
		s->cur_valid = s->in_file = false;
		return 0;
	}
	pop_dir(s);
	return s->budget <= 0 ? 1 : 0; /* the caller resolves the parent again */
}

/* Walk the volume's link table from the position; 1 when the budget runs
 * out, 0 when done (phase -> PH_NEXTVOL). */
static int table_step(struct rfs_scrub *s)
{
	rfs_tree vol;
	struct rfs_irec tab, r;
	rfs_cursor *c = NULL;
	int ret = rfs_catalog_get(s->pool, s->vol, &vol);
	if (!ret)
		ret = rec_get(s->pool, &vol, "T", 1, &tab, false);
	rfs_tree t = FS_TREE(ret ? 0 : tab.i.subtree, RFS_OWNER_LINKS);
	if (ret && ret != -ENOENT) {
		meta_error(s, strdup(""), 0, ret);
		goto done;
	}
	ret = t.root ? rfs_cursor_open(s->pool, &t, &c) : -ENOENT;
	if (!ret)
		ret = s->cur_valid ? seek_from(c, s->cur, s->curlen, s->cur_incl)
				   : rfs_cursor_seek(c, NULL, 0, 1);
	for (; !ret && !s->fatal; ret = rfs_cursor_step(c, 1)) {
		const uint8_t *k;
		const void *v;
		size_t kl, vl;
		rfs_cursor_get(c, (const void **)&k, &kl, &v, &vl, NULL);
		s->budget--;
		bool resumed = s->in_file && s->cur_valid && s->cur_incl && kl == s->curlen &&
			       !memcmp(k, s->cur, kl);
		set_key(s->cur, &s->curlen, k, kl);
		s->cur_valid = true;
		s->cur_incl = false;
		s->in_file = false;
		if (rec_decode(v, vl, &r)) {
			meta_error(s, NULL, kl == 9 ? get_be64(k + 1) : 0, -EUCLEAN);
			continue;
		}
		if (!resumed) {
			s->st.files++;
			s->fpos_valid = false;
		}
		if (!r.i.subtree || S_ISDIR(r.i.mode))
			continue;
		struct fctx f = {r.i.ino, true, NULL, 0};
		s->in_file = true;
		s->cur_incl = true;
		if (scrub_file(s, &r, &f)) {
			rfs_cursor_close(c);
			return 1;
		}
		s->in_file = false;
		s->cur_incl = false;
		if (s->budget <= 0) {
			rfs_cursor_close(c);
			return 1;
		}
	}
	rfs_cursor_close(c);
	if (ret != -ENOENT && !s->fatal)
		meta_error(s, strdup("(link table)"), 0, ret);
done:
	s->phase = s->vol == UINT64_MAX ? PH_DONE : PH_NEXTVOL;
	s->vol++;
	s->cur_valid = s->in_file = false;
	links_clear(s);
	return 0;
}

/* Move to the next volume of the catalog at or after s->vol. */
static void next_volume(struct rfs_scrub *s)
{
	for (;;) {
		uint64_t id;
		rfs_tree t;
		struct rfs_volmeta m;
		size_t ml = sizeof(m);
		int ret = rfs_catalog_next(s->pool, s->vol, &id, &t);
		s->budget--;
		if (ret == -ENOENT) {
			s->phase = PH_DONE;
			return;
		}
		if (ret) {
			/* The catalog itself is unreadable: nothing more to walk. */
			meta_error(s, strdup("(catalog)"), 0, ret);
			s->phase = PH_DONE;
			return;
		}
		s->vol = id;
		ret = rfs_tree_lookup(s->pool, &t, "M", 1, &m, &ml, NULL);
		if (!ret && ml == sizeof(m) && m.magic == RFS_VOL_MAGIC)
			break;
		if (ret && ret != -ENOENT)
			meta_error(s, strdup(""), 0, ret);
		if (id == UINT64_MAX) {
			s->phase = PH_DONE;
			return;
		}
		s->vol = id + 1; /* not a volume */
	}
	s->st.volumes++;
	s->phase = PH_NS;
	s->depth = 0;
	s->cur_valid = s->in_file = s->fpos_valid = false;
}

/* ---- report ---------------------------------------------------------------------------- */

static int strcmp_null(const char *a, const char *b)
{
	if (!a || !b)
		return (a != NULL) - (b != NULL);
	return strcmp(a, b);
}

static int rec_cmp(const void *x, const void *y)
{
	const struct rec *a = x, *b = y;
#define CMP(f) if (a->f != b->f) return a->f < b->f ? -1 : 1
	CMP(kind);
	CMP(blocknr);
	CMP(volume);
	int c = strcmp_null(a->path, b->path);
	if (c)
		return c;
	CMP(offset);
	CMP(ino);
#undef CMP
	return 0;
}

static int ino_cmp(const void *x, const void *y)
{
	const uint64_t *a = x, *b = y;
	if (a[0] != b[0])
		return a[0] < b[0] ? -1 : 1;
	return a[1] < b[1] ? -1 : a[1] > b[1];
}

/* Sort, drop duplicates (a name met twice while files moved), count the
 * files affected. */
static void finish(struct rfs_scrub *s)
{
	if (s->nrecs)
		qsort(s->recs, s->nrecs, sizeof(*s->recs), rec_cmp);
	size_t n = 0;
	for (size_t i = 0; i < s->nrecs; i++) {
		if (n && !rec_cmp(&s->recs[n - 1], &s->recs[i]) &&
		    s->recs[n - 1].err == s->recs[i].err) {
			free(s->recs[i].path);
			continue;
		}
		s->recs[n++] = s->recs[i];
	}
	s->nrecs = n;
	s->st.records = n;
	uint64_t (*ids)[2] = malloc((n ? n : 1) * sizeof(*ids));
	if (!ids) {
		nomem(s);
		return;
	}
	size_t m = 0;
	for (size_t i = 0; i < n; i++)
		if (s->recs[i].kind == RFS_SCRUB_DATA) {
			ids[m][0] = s->recs[i].volume;
			ids[m][1] = s->recs[i].ino;
			m++;
		}
	if (m)
		qsort(ids, m, sizeof(*ids), ino_cmp);
	s->st.files_affected = 0;
	for (size_t i = 0; i < m; i++)
		if (!i || ino_cmp(ids[i - 1], ids[i]))
			s->st.files_affected++;
	free(ids);
}

/* ---- public calls ------------------------------------------------------------------------- */

int rfs_scrub_begin(rfs_fs *fs, rfs_scrub **out)
{
	struct rfs_pool_stats ps;
	*out = NULL;
	rfs_scrub *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->fs = fs;
	s->pool = fs->pool;
	rfs_pool_rdlock(s->pool);
	rfs_pool_stats(s->pool, &ps);
	rfs_pool_unlock(s->pool);
	/* The pool never grows past total_blocks: the bitmaps cover every
	 * block (1 bit each; calloc'd pages stay untouched until used). */
	s->nbits = ps.total_blocks;
	s->seen = calloc((s->nbits + 63) / 64, 8);
	s->badmap = calloc((s->nbits + 63) / 64, 8);
	s->buf = malloc((size_t)RFS_EXTENT_MAX * BS);
	if (!s->seen || !s->badmap || !s->buf) {
		rfs_scrub_end(s);
		return -ENOMEM;
	}
	s->st.used_blocks = ps.used_blocks - ps.data_start;
	s->phase = PH_NEXTVOL;
	s->vol = 0;
	*out = s;
	return 0;
}

int rfs_scrub_step(rfs_scrub *s, uint64_t budget)
{
	if (s->fatal)
		return s->fatal;
	if (s->phase == PH_DONE)
		return 0;
	/* A writer waiting for the lock goes first: it holds the writers'
	 * gate while it waits, so taking the gate here queues behind it.
	 * (Back-to-back read locks could otherwise starve writers.) */
	rfs_pool_wrlock(s->pool);
	rfs_pool_unlock(s->pool);
	rfs_pool_rdlock(s->pool);
	s->budget = budget > INT64_MAX ? INT64_MAX : (int64_t)budget;
	while (s->budget > 0 && s->phase != PH_DONE && !s->fatal) {
		switch (s->phase) {
		case PH_NEXTVOL:
			next_volume(s);
			break;
		case PH_NS:
			ns_step(s);
			break;
		case PH_TABLE:
			table_step(s);
			break;
		}
	}
	rfs_pool_unlock(s->pool);
	if (s->fatal)
		return s->fatal;
	if (s->phase != PH_DONE)
		return 1;
	finish(s);
	s->st.done = 1;
	return s->fatal ? s->fatal : 0;
}

void rfs_scrub_get_stats(rfs_scrub *s, struct rfs_scrub_stats *st)
{
	*st = s->st;
}

int rfs_scrub_record(rfs_scrub *s, uint64_t i, struct rfs_scrub_record *out)
{
	if (!s->st.done)
		return -EBUSY;
	if (i >= s->nrecs)
		return -ENOENT;
	const struct rec *r = &s->recs[i];
	*out = (struct rfs_scrub_record){r->kind, r->err, r->blocknr, r->volume,
					 r->ino, r->offset, r->path};
	return 0;
}

void rfs_scrub_end(rfs_scrub *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->nrecs; i++)
		free(s->recs[i].path);
	free(s->recs);
	links_clear(s);
	free(s->stack);
	free(s->seen);
	free(s->badmap);
	free(s->bad);
	free(s->badidx);
	free(s->buf);
	free(s);
}
