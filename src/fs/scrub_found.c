/*
 * What a scrub found: the names of hard-linked inodes (from the stubs
 * the namespace walk meets, used when the link table is walked), the set
 * of damaged blocks, and the report, sorted when the walk is done.
 */
#include "fs/scrub_internal.h"

#include <stdlib.h>

static size_t hash64(uint64_t v, size_t cap)
{
	v ^= v >> 33;
	v *= 0xff51afd7ed558ccdull;
	v ^= v >> 33;
	return (size_t)(v & (cap - 1));
}

void scrub_nomem(struct rfs_scrub *s)
{
	s->fatal = -ENOMEM;
}

/* Append a report entry; path is taken over (may be NULL). */
void scrub_rec_add(struct rfs_scrub *s, uint32_t kind, int err, uint64_t blocknr,
		   uint64_t ino, uint64_t offset, char *path)
{
	if (s->nrecs == s->reccap) {
		size_t cap = s->reccap ? s->reccap * 2 : 64;
		struct rec *r = realloc(s->recs, cap * sizeof(*r));
		if (!r) {
			free(path);
			scrub_nomem(s);
			return;
		}
		s->recs = r;
		s->reccap = cap;
	}
	s->recs[s->nrecs++] = (struct rec){kind, err, blocknr, s->vol, ino, offset, path};
}

/* A tree that could not be read: report it, with the errno. */
void scrub_meta_error(struct rfs_scrub *s, char *path, uint64_t ino, int err)
{
	s->st.meta_errors++;
	scrub_rec_add(s, RFS_SCRUB_META, err, 0, ino, 0, path ? path : strdup(""));
}

/* ---- hard-link names ------------------------------------------------------- */

void scrub_links_clear(struct rfs_scrub *s)
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

struct lnames *scrub_links_find(struct rfs_scrub *s, uint64_t ino, bool add)
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
void scrub_links_add(struct rfs_scrub *s, uint64_t ino, char *path)
{
	struct lnames *l = path ? scrub_links_find(s, ino, true) : NULL;
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
		scrub_nomem(s);
		return;
	}
	l->names[l->n++] = path;
}

/* ---- damaged blocks ------------------------------------------------------------ */

/* The damage entry of (blocknr, csum), or NULL. */
const struct bad *scrub_bad_find(const struct rfs_scrub *s, uint64_t blocknr, uint32_t csum)
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

const struct bad *scrub_bad_add(struct rfs_scrub *s, uint64_t blocknr, uint32_t csum, int err)
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
void scrub_finish(struct rfs_scrub *s)
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
		scrub_nomem(s);
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


void scrub_found_free(struct rfs_scrub *s)
{
	for (size_t i = 0; i < s->nrecs; i++)
		free(s->recs[i].path);
	free(s->recs);
	s->recs = NULL;
	s->nrecs = 0;
	scrub_links_clear(s);
	free(s->bad);
	free(s->badidx);
}
