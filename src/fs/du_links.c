/*
 * du: hard-linked inodes.  Their records live in their volume's link
 * table, reached by names anywhere in the volume: the walk counts the
 * names it meets below PATH (du_link_add), then each inode met is walked
 * once from its record, below PATH's own vertex when deleting PATH would
 * drop the record's pointer (link_owner).
 */
#include "fs/du_internal.h"

#include <stdlib.h>

static size_t link_hash(uint64_t vol, uint64_t ino, size_t cap)
{
	return du_hash64(ino * 0x9e3779b97f4a7c15ull ^ vol, cap);
}

int du_link_add(rfs_du *d, uint64_t vol, uint64_t ino)
{
	if ((d->nlinks + 1) * 2 > d->links_cap) {
		size_t cap = d->links_cap ? d->links_cap * 2 : 64;
		struct dlink *t = calloc(cap, sizeof(*t));
		if (!t)
			return -ENOMEM;
		for (size_t i = 0; i < d->links_cap; i++) {
			if (!d->links[i].ino)
				continue;
			size_t h = link_hash(d->links[i].vol, d->links[i].ino, cap);
			while (t[h].ino)
				h = (h + 1) & (cap - 1);
			t[h] = d->links[i];
		}
		free(d->links);
		d->links = t;
		d->links_cap = cap;
	}
	size_t h = link_hash(vol, ino, d->links_cap);
	while (d->links[h].ino && !(d->links[h].ino == ino && d->links[h].vol == vol))
		h = (h + 1) & (d->links_cap - 1);
	if (!d->links[h].ino) {
		d->links[h] = (struct dlink){vol, ino, 0};
		d->nlinks++;
	}
	d->links[h].names++;
	return 0;
}

static int link_cmp(const void *a, const void *b)
{
	const struct dlink *x = a, *y = b;
	if (x->vol != y->vol)
		return x->vol < y->vol ? -1 : 1;
	return x->ino < y->ino ? -1 : x->ino > y->ino;
}

/* Was the file tree of the record of ino in link-table leaf `leaf` walked
 * already?  Marks it walked. */
static int group_seen(rfs_du *d, uint64_t leaf, uint64_t ino, bool *seen)
{
	if ((d->ngroups + 1) * 2 > d->groups_cap) {
		size_t cap = d->groups_cap ? d->groups_cap * 2 : 64;
		struct gkey *t = calloc(cap, sizeof(*t));
		if (!t)
			return -ENOMEM;
		for (size_t i = 0; i < d->groups_cap; i++) {
			if (!d->groups[i].leaf)
				continue;
			size_t h = link_hash(d->groups[i].leaf, d->groups[i].ino, cap);
			while (t[h].leaf)
				h = (h + 1) & (cap - 1);
			t[h] = d->groups[i];
		}
		free(d->groups);
		d->groups = t;
		d->groups_cap = cap;
	}
	size_t h = link_hash(leaf, ino, d->groups_cap);
	while (d->groups[h].leaf && !(d->groups[h].leaf == leaf && d->groups[h].ino == ino))
		h = (h + 1) & (d->groups_cap - 1);
	*seen = d->groups[h].leaf != 0;
	if (!*seen) {
		d->groups[h] = (struct gkey){leaf, ino};
		d->ngroups++;
	}
	return 0;
}

/* Names of (vol, ino) found below PATH (the list is sorted by now). */
static uint64_t names_of(const rfs_du *d, uint64_t vol, uint64_t ino)
{
	struct dlink k = {vol, ino, 0};
	const struct dlink *l = bsearch(&k, d->links, d->nlinks, sizeof(k), link_cmp);
	return l ? l->names : 0;
}

/* The leaf of the link table of volume vol holding key (0: none), and
 * whether a node above it, from the volume's tree down, is shared. */
static int table_leaf(rfs_du *d, uint64_t vol, const uint8_t *key, size_t kl, uint64_t *leaf,
		      bool *shared)
{
	rfs_tree vt;
	struct rfs_irec *t = &d->rec;
	bool s0 = false, s1 = false;
	uint64_t vleaf;
	*leaf = 0;
	*shared = false;
	int ret = rfs_catalog_get(d->pool, vol, &vt);
	if (!ret)
		ret = rfs_tree_leaf(d->pool, &vt, "T", 1, &vleaf, &s0);
	if (!ret)
		ret = rec_get(d->pool, &vt, "T", 1, t, false);
	if (ret)
		return ret == -ENOENT ? 0 : ret;
	rfs_tree tab = FS_TREE(t->i.subtree, RFS_OWNER_LINKS);
	uint8_t tmp[8];
	size_t tl = sizeof(tmp);
	ret = tab.root ? rfs_tree_lookup(d->pool, &tab, key, kl, tmp, &tl, NULL) : -ENOENT;
	if (ret)
		return ret == -ENOENT ? 0 : ret;
	ret = rfs_tree_leaf(d->pool, &tab, key, kl, leaf, &s1);
	*shared = s0 || s1;
	return ret;
}

/*
 * Whose is the pointer from the link-table record of (vol, ino) to the
 * inode's tree: PATH's (V_OWNED) when deleting PATH would drop it, that is
 * when every volume whose link table reaches that record has all the
 * inode's names below PATH; else V_OUTSIDE.  A record in a leaf no other
 * volume reaches (no shared node above it) has one holder; a shared one
 * (a snapshot of a volume's root shares the whole table) is looked up in
 * every volume.  *skip: the same record was walked for another volume.
 */
static int link_owner(rfs_du *d, const struct dlink *lk, uint32_t nlink, uint32_t *owner,
		      bool *skip)
{
	uint8_t key[16];
	size_t kl = table_key(key, lk->ino);
	uint64_t leaf;
	bool shared;
	*skip = false;
	int ret = table_leaf(d, lk->vol, key, kl, &leaf, &shared);
	if (ret)
		return ret;
	if (!shared) {
		*owner = lk->names >= nlink ? V_OWNED : V_OUTSIDE;
		return 0;
	}
	ret = group_seen(d, leaf, lk->ino, skip);
	if (ret || *skip)
		return ret;
	bool all = true;
	for (size_t i = 0; i < d->fs->nvols && all; i++) {
		struct rfs_vol *v = d->fs->vols[i];
		uint64_t l2;
		bool s2;
		if (v->gone)
			continue;
		ret = table_leaf(d, v->id, key, kl, &l2, &s2);
		if (ret)
			return ret;
		if (l2 == leaf && names_of(d, v->id, lk->ino) < nlink)
			all = false;
	}
	*owner = all ? V_OWNED : V_OUTSIDE;
	return 0;
}

/* The hard-linked inodes met: each (volume, inode) counted once, its tree
 * walked from the link table (once per record, when volumes share it). */
int du_links_step(rfs_du *d)
{
	if (!d->links_sorted) {
		/* Compact the hash into a sorted list, once: no names are added
		 * from now on. */
		size_t k = 0;
		for (size_t i = 0; i < d->links_cap; i++)
			if (d->links[i].ino)
				d->links[k++] = d->links[i];
		if (k)
			qsort(d->links, k, sizeof(*d->links), link_cmp);
		d->links_sorted = true;
	}
	while (d->link_i < d->nlinks) {
		struct dlink *lk = &d->links[d->link_i];
		struct rfs_ipath p;
		int ret = ip_load_table(d->fs, lk->vol, lk->ino, false, &p);
		if (ret == -ESTALE) {
			d->link_i++; /* gone meanwhile */
			d->link_in_item = false;
			continue;
		}
		if (ret)
			return ret;
		struct rfs_inode i = ip_rec(&p)->i;
		struct rfs_ext *inl = NULL;
		int ninl = 0;
		if ((i.flags & RFS_INODE_INLEXT) && !d->link_in_item) {
			inl = malloc(sizeof(*inl) * RFS_INLEXT_CAP);
			ninl = inl ? inl_decode(ip_rec(&p), inl, RFS_INLEXT_CAP) : -ENOMEM;
		}
		ip_free(&p);
		if (ninl < 0) {
			free(inl);
			return ninl;
		}
		bool skip = false;
		if (!d->link_in_item) {
			d->st.files++;
			d->st.total += i.blocks * DU_BS;
			if (d->nlv)
				d->lv[0]->pos.mode = RFS_WALK_START;
			ret = link_owner(d, lk, i.nlink, &d->link_from, &skip);
			if (ret)
				return ret;
		}
		d->ncs = 0;
		du_ctx_push(d, d->link_from, false);
		ret = d->fatal;
		/* Inline extents: held by the table's leaf, counted like the
		 * tree's. */
		for (int x = 0; !ret && !skip && x < ninl; x++)
			ret = du_count_extent(d, d->link_from, inl[x].start, inl[x].n);
		free(inl);
		if (!ret && !skip && i.subtree && !S_ISDIR(i.mode))
			ret = du_walk_level(d, 0, i.subtree, NULL, lk->vol);
		if (ret < 0)
			return ret;
		if (ret == 1) {
			d->link_in_item = true;
			return 1;
		}
		d->link_in_item = false;
		d->link_i++;
		if (--d->budget <= 0)
			return 1;
	}
	d->phase = PH_DONE;
	return 0;
}

