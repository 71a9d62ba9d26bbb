/*
 * The catalog: a tree in root slot RFS_ROOT_CATALOG mapping big-endian u64
 * ids to tree roots (RFS_ITEM_TREE values), so that trees survive commits.
 */
#include <errno.h>
#include <string.h>

#include "tree/tree_internal.h"
#include "util/lockcheck.h"

struct cat_val {
	uint64_t root;
	uint64_t owner;
};

static rfs_tree cat_tree(rfs_pool *pool)
{
	rfs_tree t = { rfs_pool_root(pool, RFS_ROOT_CATALOG), RFS_OWNER_CATALOG };
	return t;
}

int rfs_catalog_get(rfs_pool *pool, uint64_t id, rfs_tree *t)
{
	RFS_ASSERT_LOCK(rfs_pool_holds_lock(pool));
	rfs_tree cat = cat_tree(pool);
	struct cat_val v;
	size_t vlen = sizeof(v);
	uint8_t key[8];
	int ret;

	be64_put(key, id);
	ret = rfs_tree_lookup(pool, &cat, key, 8, &v, &vlen, NULL);
	if (ret)
		return ret;
	if (vlen != sizeof(v))
		return -EUCLEAN;
	t->root = v.root;
	t->owner = v.owner;
	return 0;
}

int rfs_catalog_set(rfs_pool *pool, uint64_t id, const rfs_tree *t)
{
	RFS_ASSERT_LOCK(rfs_pool_holds_wrlock(pool));
	rfs_tree cat = cat_tree(pool);
	struct cat_val v = { t->root, t->owner };
	uint8_t key[8];
	int ret;

	be64_put(key, id);
	/* Replace first: it works on a full pool (see rfs_tree_put). */
	ret = rfs_tree_put(pool, &cat, key, 8, &v, sizeof(v), RFS_ITEM_TREE,
			   RFS_PUT_REPLACE | RFS_KEEP_REFS);
	if (ret == -ENOENT)
		ret = rfs_tree_put(pool, &cat, key, 8, &v, sizeof(v), RFS_ITEM_TREE,
				   RFS_PUT_INSERT);
	rfs_pool_set_root(pool, RFS_ROOT_CATALOG, cat.root);
	return ret;
}

int rfs_catalog_del(rfs_pool *pool, uint64_t id)
{
	RFS_ASSERT_LOCK(rfs_pool_holds_wrlock(pool));
	rfs_tree cat = cat_tree(pool);
	uint8_t key[8];
	int ret;

	be64_put(key, id);
	ret = rfs_tree_delete(pool, &cat, key, 8, 0);
	rfs_pool_set_root(pool, RFS_ROOT_CATALOG, cat.root);
	return ret;
}

int rfs_catalog_next(rfs_pool *pool, uint64_t from, uint64_t *id, rfs_tree *t)
{
	rfs_tree cat = cat_tree(pool);
	rfs_cursor *c;
	const void *k, *v;
	size_t klen, vlen;
	struct cat_val cv;
	uint8_t key[8];
	int ret;

	if (!cat.root)
		return -ENOENT;
	ret = rfs_cursor_open(pool, &cat, &c);
	if (ret)
		return ret;
	be64_put(key, from);
	ret = rfs_cursor_seek(c, key, 8, 1);
	if (!ret)
		ret = rfs_cursor_get(c, &k, &klen, &v, &vlen, NULL);
	if (!ret && (klen != 8 || vlen != sizeof(cv)))
		ret = -EUCLEAN;
	if (!ret) {
		memcpy(&cv, v, sizeof(cv));
		*id = be64_get(k);
		t->root = cv.root;
		t->owner = cv.owner;
	}
	rfs_cursor_close(c);
	return ret;
}

int rfs_catalog_take(rfs_pool *pool, uint64_t id, rfs_tree *t)
{
	rfs_tree cat = cat_tree(pool);
	uint8_t key[8];
	int ret;

	ret = rfs_catalog_get(pool, id, t);
	if (ret)
		return ret;
	be64_put(key, id);
	ret = rfs_tree_delete(pool, &cat, key, 8, RFS_KEEP_REFS);
	rfs_pool_set_root(pool, RFS_ROOT_CATALOG, cat.root);
	if (ret)
		t->root = 0; /* the catalog still holds it */
	return ret;
}
