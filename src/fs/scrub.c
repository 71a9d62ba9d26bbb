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
#include "fs/scrub_internal.h"

#include <stdio.h>
#include <stdlib.h>

#define BS RFS_BLOCK_SIZE

/* ---- small helpers -------------------------------------------------------- */

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
		len += 1 + s->stack[i].klen - s->stack[i].noff;
	if (name)
		len += 1 + nlen;
	char *p = malloc(len + 1), *q = p;
	if (!p)
		return NULL;
	for (int i = 0; i < n; i++) {
		*q++ = '/';
		memcpy(q, s->stack[i].key + s->stack[i].noff, s->stack[i].klen - s->stack[i].noff);
		q += s->stack[i].klen - s->stack[i].noff;
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
			scrub_nomem(s);
			return;
		}
		scrub_rec_add(s, RFS_SCRUB_DATA, b->err, b->blocknr, f->ino, offset, p);
		return;
	}
	struct lnames *l = scrub_links_find(s, f->ino, false);
	if (!l || !l->n) {
		scrub_rec_add(s, RFS_SCRUB_DATA, b->err, b->blocknr, f->ino, offset, NULL);
		return;
	}
	for (size_t i = 0; i < l->n && !s->fatal; i++) {
		char *p = strdup(l->names[i]);
		if (!p) {
			scrub_nomem(s);
			return;
		}
		scrub_rec_add(s, RFS_SCRUB_DATA, b->err, b->blocknr, f->ino, offset, p);
	}
}

/* A block failed (checksum or read error): record it and this user. */
static void block_bad(struct rfs_scrub *s, const struct fctx *f, uint64_t blocknr,
		      uint32_t csum, int err, uint64_t offset)
{
	const struct bad *b = scrub_bad_add(s, blocknr, csum, err);
	if (!b) {
		scrub_nomem(s);
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
				const struct bad *bd = scrub_bad_find(s, b, e->csum[i]);
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
	int ret;
	if (r->i.flags & RFS_INODE_INLEXT) {
		/* An inline extent map: a few extents, verified in one go
		 * (blocks seen before are not read again). */
		struct rfs_ext *x = malloc(sizeof(*x) * RFS_INLEXT_CAP);
		int n = x ? inl_decode(r, x, RFS_INLEXT_CAP) : -ENOMEM;
		for (int i = 0; i < n && !s->fatal; i++) {
			s->budget--; /* as for an 'E' item of a tree */
			if (!(x[i].flags & RFS_EXT_UNWRITTEN))
				verify_extent(s, f, &x[i]);
		}
		free(x);
		ret = n < 0 ? n : 0;
		if (!ret)
			return 0;
		goto fail;
	}
	ret = rfs_cursor_open(s->pool, &t, &c);
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
		struct lnames *l = scrub_links_find(s, f->ino, false);
		scrub_meta_error(s, l && l->n ? strdup(l->names[0]) : NULL, f->ino, ret);
	} else {
		scrub_meta_error(s, ns_path(s, s->depth, f->name, f->nlen), f->ino, ret);
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

static int push_dir(struct rfs_scrub *s, const uint8_t *k, size_t kl, size_t noff)
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
	s->stack[s->depth].noff = noff;
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
static int resolve_dir(struct rfs_scrub *s, struct rfs_irec *dir, struct dirloc *loc)
{
	rfs_tree vol;
	int ret = rfs_catalog_get(s->pool, s->vol, &vol);
	if (!ret)
		ret = rec_get(s->pool, &vol, "R", 1, dir, false);
	if (ret) {
		if (ret != -ENOENT)
			scrub_meta_error(s, strdup(""), 0, ret);
		return 1;
	}
	dloc_of(loc, &dir->i, &vol);
	for (int i = 0; i < s->depth; i++) {
		struct rfs_irec r;
		ret = rec_get(s->pool, &loc->t, s->stack[i].key, s->stack[i].klen, &r, false);
		if (ret && ret != -ENOENT)
			scrub_meta_error(s, ns_path(s, i + 1, NULL, 0), 0, ret);
		if (ret || !S_ISDIR(r.i.mode) || (r.i.flags & RFS_INODE_LINKED)) {
			while (s->depth > i + 1)
				s->depth--;
			pop_dir(s);
			return 0;
		}
		*dir = r;
		dloc_of(loc, &dir->i, &loc->t);
	}
	return 0;
}

/* The cursor of a namespace or link-table walk is at key k: make it the
 * position.  True when it is the item whose file the last step stopped
 * in (in_file, with the position on it): that file's scrub resumes at
 * fpos rather than starting again. */
static bool pos_set(struct rfs_scrub *s, const uint8_t *k, size_t kl)
{
	bool resumed = s->in_file && s->cur_valid && s->cur_incl && kl == s->curlen &&
		       !memcmp(k, s->cur, kl);
	set_key(s->cur, &s->curlen, k, kl);
	s->cur_valid = true;
	s->cur_incl = false;
	s->in_file = false;
	return resumed;
}

/* Scrub file r, the item at the position (which includes it meanwhile,
 * so that a step stopping inside it comes back to it).  True when the
 * budget ran out, in it or with it. */
static bool scrub_at(struct rfs_scrub *s, const struct rfs_irec *r, const struct fctx *f)
{
	s->in_file = true;
	s->cur_incl = true;
	if (scrub_file(s, r, f))
		return true;
	s->in_file = false;
	s->cur_incl = false;
	return s->budget <= 0;
}

/* Walk the namespace of the volume from the position until the budget
 * runs out (returns 1) or the namespace is done (phase -> PH_TABLE). */
static int ns_step(struct rfs_scrub *s)
{
	struct rfs_irec dir, r;
	struct dirloc loc;
	int ret;
	if (resolve_dir(s, &dir, &loc)) {
		s->phase = PH_TABLE;
		s->cur_valid = s->in_file = false;
		return 0;
	}
	s->budget--;
next_dir:;
	rfs_cursor *c = NULL;
	ret = loc.t.root ? rfs_cursor_open(s->pool, &loc.t, &c) : -ENOENT;
	if (!ret)
		ret = s->cur_valid ? seek_from(c, s->cur, s->curlen, s->cur_incl)
				   : dloc_seek(&loc, c, 0);
	for (; !ret && !s->fatal; ret = rfs_cursor_step(c, 1)) {
		const uint8_t *k, *name;
		const void *v;
		size_t kl, vl, nl;
		rfs_cursor_get(c, (const void **)&k, &kl, &v, &vl, NULL);
		int e = dloc_entry(&loc, k, kl, NULL, (const char **)&name, &nl);
		if (e == 0) {
			ret = -ENOENT; /* past the directory's entries */
			break;
		}
		s->budget--;
		bool resumed = pos_set(s, k, kl);
		if (e < 0) {
			scrub_meta_error(s, ns_path(s, s->depth, NULL, 0), dir.i.ino, e);
			continue;
		}
		if (rec_decode(v, vl, &r)) {
			scrub_meta_error(s, ns_path(s, s->depth, name, nl), 0, -EUCLEAN);
			continue;
		}
		if (r.i.flags & RFS_INODE_LINKED) {
			char *p = ns_path(s, s->depth, name, nl);
			if (!p)
				scrub_nomem(s);
			else
				scrub_links_add(s, r.i.ino, p);
			continue;
		}
		if (S_ISDIR(r.i.mode)) {
			s->st.dirs++;
			rfs_cursor_close(c);
			if (push_dir(s, k, kl, (size_t)(name - k))) {
				scrub_nomem(s);
				return 0;
			}
			dir = r;
			dloc_of(&loc, &dir.i, &loc.t);
			goto next_dir;
		}
		if (!resumed) {
			s->st.files++;
			s->fpos_valid = false;
		}
		if (!r.i.subtree && !(r.i.flags & RFS_INODE_INLEXT))
			continue;
		struct fctx f = {r.i.ino, false, name, nl};
		/* The name points into the cursor's leaf: valid while it stays. */
		if (scrub_at(s, &r, &f)) {
			rfs_cursor_close(c);
			return 1;
		}
	}
	rfs_cursor_close(c);
	if (s->fatal)
		return 0;
	if (ret != -ENOENT)
		scrub_meta_error(s, ns_path(s, s->depth, NULL, 0), dir.i.ino, ret);
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
		scrub_meta_error(s, strdup(""), 0, ret);
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
		bool resumed = pos_set(s, k, kl);
		if (rec_decode(v, vl, &r)) {
			scrub_meta_error(s, NULL, kl == 9 ? get_be64(k + 1) : 0, -EUCLEAN);
			continue;
		}
		if (!resumed) {
			s->st.files++;
			s->fpos_valid = false;
		}
		if ((!r.i.subtree && !(r.i.flags & RFS_INODE_INLEXT)) || S_ISDIR(r.i.mode))
			continue;
		struct fctx f = {r.i.ino, true, NULL, 0};
		if (scrub_at(s, &r, &f)) {
			rfs_cursor_close(c);
			return 1;
		}
	}
	rfs_cursor_close(c);
	if (ret != -ENOENT && !s->fatal)
		scrub_meta_error(s, strdup("(link table)"), 0, ret);
done:
	s->phase = s->vol == UINT64_MAX ? PH_DONE : PH_NEXTVOL;
	s->vol++;
	s->cur_valid = s->in_file = false;
	scrub_links_clear(s);
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
			scrub_meta_error(s, strdup("(catalog)"), 0, ret);
			s->phase = PH_DONE;
			return;
		}
		s->vol = id;
		ret = rfs_tree_lookup(s->pool, &t, "M", 1, &m, &ml, NULL);
		if (!ret && ml == sizeof(m) && m.magic == RFS_VOL_MAGIC)
			break;
		if (ret && ret != -ENOENT)
			scrub_meta_error(s, strdup(""), 0, ret);
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
	fs_rdlock(fs); /* writes answered before it mapped (file_delay.c) */
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
	scrub_finish(s);
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
	scrub_found_free(s);
	free(s->stack);
	free(s->seen);
	free(s->badmap);
	free(s->buf);
	free(s);
}
