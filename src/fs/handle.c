/*
 * Finding an inode by its number, for file handles: open_by_handle_at and
 * NFS hand the kernel a node id (= the inode's identity, see node_id_of)
 * that the kernel may have forgotten long ago, or that comes from before
 * a remount.  The kernel then asks LOOKUP(node id, ".").
 *
 * The node is found in the node table, else in the link table (hard-linked
 * and nameless inodes), else through the back-pointer index (backref.c):
 * up the back-pointers to the root or to an ancestor the node table
 * knows, then down the names, checking at every step that the entry found
 * holds the inode number expected.  Whatever does not check out is ESTALE,
 * never another inode.
 */
#include "fs/fs_internal.h"

#include <stdlib.h>

/* Deeper chains than this are a damaged index (a loop). */
#define CHAIN_MAX 4096

struct hop {
	uint64_t ino;
	size_t len;
	char name[RFS_NAME_MAX + 1];
};

/* The node of ino reached as name in directory node dn, checked against
 * the entry; +1 lookup.  Pool read lock held. */
static int hop_down(rfs_fs *fs, struct rfs_node *dn, const struct hop *h,
		    struct rfs_node **out, struct rfs_irec *rec)
{
	struct rfs_ipath p;
	int ret = ip_load(fs, dn, false, &p);
	if (ret)
		return ret;
	struct rfs_irec *d = ip_rec(&p);
	uint8_t key[RFS_KEY_MAX];
	size_t kl = ip_dkey(&p, key, h->name, h->len);
	ret = S_ISDIR(d->i.mode) ? rec_get(fs->pool, ip_dtree(&p), key, kl, rec, false)
				 : -ENOENT;
	ip_free(&p);
	if (ret == -ENOENT || (!ret && (rec->i.ino != h->ino ||
					(rec->i.flags & RFS_INODE_LINKED))))
		return -ESTALE; /* the index is behind the tree: never guess */
	if (ret)
		return ret;
	*out = node_ref(fs, dn, h->name, dn->vol, h->ino, false);
	return *out ? 0 : -ENOMEM;
}

int node_resolve(rfs_fs *fs, uint64_t vol, uint64_t ino, struct rfs_node **out,
		 struct rfs_irec *rec)
{
	struct rfs_node *n;
	if (!vol_get(fs, vol))
		return -ESTALE;
	/* A node the table has: +1 lookup at once, under nlock (with only
	 * the read lock held, nothing else keeps it from being freed). */
	node_lock(fs);
	n = node_by_ino(fs, vol, ino);
	if (n)
		n->nlookup++;
	node_unlock(fs);
	if (n) {
		int ret = inode_read(fs, n, rec);
		if (ret)
			node_unref(fs, n->id);
		else
			*out = n;
		return ret;
	}

	/* Hard-linked or nameless: in the link table by number. */
	struct rfs_ipath p;
	int ret = ip_load_table(fs, vol, ino, false, &p);
	if (!ret) {
		*rec = *ip_rec(&p);
		ip_free(&p);
		if (rec->i.nlink == 0)
			return -ESTALE; /* its last user is gone: being freed */
		*out = node_ref(fs, NULL, NULL, vol, ino, true);
		return *out ? 0 : -ENOMEM;
	}
	if (ret != -ESTALE)
		return ret;
	/* Only the top volume has the index (snapshots: not yet). */
	if (!has_index(fs) || vol != RFS_TOP_VOLUME)
		return -ESTALE;

	/* Up the back-pointers to the root or to a known ancestor. */
	rfs_tree idx;
	ret = bref_index(fs, &idx);
	if (ret)
		return ret;
	struct hop *chain = NULL;
	size_t nh = 0, cap = 0;
	struct rfs_node *top = NULL;
	uint64_t cur = ino;
	while (!top) {
		if (nh == CHAIN_MAX) {
			ret = -ESTALE;
			goto out;
		}
		if (nh == cap) {
			size_t ncap = cap ? cap * 2 : 16;
			struct hop *nc = realloc(chain, ncap * sizeof(*chain));
			if (!nc) {
				ret = -ENOMEM;
				goto out;
			}
			chain = nc;
			cap = ncap;
		}
		struct hop *h = &chain[nh++];
		uint64_t parent;
		h->ino = cur;
		ret = bref_read(fs, &idx, cur, &parent, h->name, &h->len);
		if (ret == -ENOENT)
			ret = -ESTALE;
		if (ret)
			goto out;
		node_lock(fs);
		top = node_by_ino(fs, vol, parent);
		if (top)
			top->nlookup++; /* held while we walk down */
		node_unlock(fs);
		cur = parent;
	}
	/* Down the names, checking each step. */
	struct rfs_node *at = top;
	for (size_t i = nh; i-- > 0;) {
		ret = hop_down(fs, at, &chain[i], &n, rec);
		node_unref(fs, at->id);
		if (ret)
			goto out;
		at = n;
	}
	*out = at;
out:
	free(chain);
	return ret;
}

int rfs_fs_lookup_ino(rfs_fs *fs, uint64_t st_ino, uint32_t generation,
		      rfs_nodeid *out, struct stat *st)
{
	struct rfs_node *n;
	struct rfs_irec rec;
	uint64_t vol = st_ino >> 48, ino = st_ino & ((1ull << 48) - 1);
	fs_rdlock(fs);
	int ret = node_resolve(fs, vol, ino, &n, &rec);
	if (!ret && rec.i.generation != generation) {
		node_unref(fs, n->id);
		ret = -ESTALE;
	}
	if (!ret) {
		*out = n->id;
		if (st)
			rec_to_stat(vol, &rec, st);
	}
	rfs_pool_unlock(fs->pool);
	return ret;
}
