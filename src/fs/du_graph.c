/*
 * du: the graph of shared nodes and blocks a walk met, and the figures
 * it gives (the fixpoint: see du.c and docs/ARCHITECTURE.md).
 */
#include "fs/du_internal.h"

#include <stdlib.h>

size_t du_hash64(uint64_t v, size_t cap)
{
	v ^= v >> 33;
	v *= 0xff51afd7ed558ccdull;
	v ^= v >> 33;
	return (size_t)(v & (cap - 1));
}

int du_grow(void **p, size_t *cap, size_t n, size_t size)
{
	if (n < *cap)
		return 0;
	size_t c = *cap ? *cap * 2 : 64;
	void *q = realloc(*p, c * size);
	if (!q)
		return -ENOMEM;
	*p = q;
	*cap = c;
	return 0;
}

/* ---- vertices and edges ------------------------------------------------- */

uint32_t du_vfind(const rfs_du *d, uint64_t blocknr)
{
	if (!d->vidx_cap)
		return 0;
	for (size_t h = du_hash64(blocknr, d->vidx_cap); d->vidx[h]; h = (h + 1) & (d->vidx_cap - 1))
		if (d->v[d->vidx[h] - 1].blocknr == blocknr)
			return d->vidx[h];
	return 0;
}

uint32_t du_vadd(rfs_du *d, uint64_t blocknr, uint64_t count)
{
	if (d->nv >= UINT32_MAX - 1 || du_grow((void **)&d->v, &d->capv, d->nv, sizeof(*d->v))) {
		d->fatal = -ENOMEM;
		return 0;
	}
	if ((d->nv + 1) * 2 > d->vidx_cap) {
		size_t cap = d->vidx_cap ? d->vidx_cap * 2 : 256;
		uint32_t *t = calloc(cap, sizeof(*t));
		if (!t) {
			d->fatal = -ENOMEM;
			return 0;
		}
		for (size_t i = V_FIXED; i < d->nv; i++) {
			size_t h = du_hash64(d->v[i].blocknr, cap);
			while (t[h])
				h = (h + 1) & (cap - 1);
			t[h] = (uint32_t)i + 1;
		}
		free(d->vidx);
		d->vidx = t;
		d->vidx_cap = cap;
	}
	uint32_t i = (uint32_t)d->nv++;
	d->v[i] = (struct vertex){.blocknr = blocknr, .count = count, .meta = blocknr ? 1 : 0};
	if (!blocknr)
		return i + 1; /* a fixed vertex: no node, never looked up */
	size_t h = du_hash64(blocknr, d->vidx_cap);
	while (d->vidx[h])
		h = (h + 1) & (d->vidx_cap - 1);
	d->vidx[h] = i + 1;
	return i + 1;
}

void du_edge_add(rfs_du *d, uint32_t from, uint32_t to)
{
	if (du_grow((void **)&d->e, &d->cape, d->ne, sizeof(*d->e))) {
		d->fatal = -ENOMEM;
		return;
	}
	d->e[d->ne++] = (struct edge){from, to};
}

void du_ctx_push(rfs_du *d, uint32_t v, bool shadow)
{
	if (du_grow((void **)&d->cs, &d->capcs, d->ncs, sizeof(*d->cs))) {
		d->fatal = -ENOMEM;
		return;
	}
	d->cs[d->ncs++] = (struct ctx){v, shadow};
}

struct ctx du_ctx_top(const rfs_du *d)
{
	return d->ncs ? d->cs[d->ncs - 1] : (struct ctx){V_OUTSIDE, true};
}

int du_count_extent(rfs_du *d, uint32_t v, uint64_t start, uint64_t n)
{
	while (n) {
		uint64_t count, run;
		int ret = rfs_ref_get_run(d->pool, start, n, &count, &run);
		if (ret)
			return ret;
		d->budget--;
		if (count <= 1) {
			d->v[v].data += run;
		} else {
			if (du_grow((void **)&d->runs, &d->capruns, d->nruns, sizeof(*d->runs)))
				return -ENOMEM;
			d->runs[d->nruns++] = (struct srun){start, run, count, v};
		}
		start += run;
		n -= run;
	}
	return 0;
}

static int edge_cmp(const void *a, const void *b)
{
	const struct edge *x = a, *y = b;
	return x->from < y->from ? -1 : x->from > y->from;
}

struct ev {
	uint64_t at;
	int64_t all, excl, count; /* deltas */
};

static int ev_cmp(const void *a, const void *b)
{
	const struct ev *x = a, *y = b;
	return x->at < y->at ? -1 : x->at > y->at;
}

/* The fixpoint, then the sums. */
int du_finish(rfs_du *d)
{
	d->v[V_OUTSIDE].excl = false;
	d->v[V_PATH].excl = !d->path_shared;
	d->v[V_OWNED].excl = true;
	if (d->ne)
		qsort(d->e, d->ne, sizeof(*d->e), edge_cmp);
	size_t *first = calloc(d->nv + 1, sizeof(*first));
	uint32_t *queue = malloc((d->nv ? d->nv : 1) * sizeof(*queue));
	if (!first || !queue) {
		free(first);
		free(queue);
		return -ENOMEM;
	}
	for (size_t i = 0; i < d->ne; i++)
		first[d->e[i].from + 1]++;
	for (size_t i = 0; i < d->nv; i++)
		first[i + 1] += first[i];
	size_t qh = 0, qt = 0;
	for (uint32_t i = 0; i < V_FIXED; i++)
		if (d->v[i].excl)
			queue[qt++] = i;
	while (qh < qt) {
		uint32_t u = queue[qh++];
		for (size_t k = first[u]; k < first[u + 1]; k++) {
			struct vertex *w = &d->v[d->e[k].to];
			if (w->excl || d->e[k].to < V_FIXED)
				continue;
			if (++w->got >= w->count) {
				w->excl = true;
				queue[qt++] = d->e[k].to;
			}
		}
	}
	free(first);
	free(queue);
	uint64_t set = 0, excl = 0, mset = 0, mexcl = 0;
	for (size_t i = 0; i < d->nv; i++) {
		set += d->v[i].data;
		mset += d->v[i].meta;
		if (d->v[i].excl) {
			excl += d->v[i].data;
			mexcl += d->v[i].meta;
		}
	}
	/* Blocks with count >= 2: exclusive where the runs from exclusive
	 * vertices covering a block are as many as its count. */
	struct ev *ev = malloc((d->nruns ? d->nruns : 1) * 2 * sizeof(*ev));
	if (!ev)
		return -ENOMEM;
	for (size_t i = 0; i < d->nruns; i++) {
		const struct srun *s = &d->runs[i];
		int64_t x = d->v[s->from].excl, c = (int64_t)s->count;
		ev[2 * i] = (struct ev){s->start, 1, x, c};
		ev[2 * i + 1] = (struct ev){s->start + s->n, -1, -x, -c};
	}
	size_t nev = d->nruns * 2;
	if (nev)
		qsort(ev, nev, sizeof(*ev), ev_cmp);
	int64_t all = 0, ex = 0, cnt = 0;
	for (size_t i = 0; i < nev; i++) {
		if (i && ev[i].at > ev[i - 1].at && all > 0) {
			uint64_t len = ev[i].at - ev[i - 1].at;
			set += len;
			/* Runs over one block agree on its count; ex >= count
			 * written without a division: ex * all >= sum of counts. */
			if (ex * all >= cnt)
				excl += len;
		}
		all += ev[i].all;
		ex += ev[i].excl;
		cnt += ev[i].count;
	}
	free(ev);
	d->st.set = set * DU_BS;
	d->st.exclusive = excl * DU_BS;
	d->st.shared = (set - excl) * DU_BS;
	d->st.meta_set = mset * DU_BS;
	d->st.meta_exclusive = mexcl * DU_BS;
	return 0;
}

