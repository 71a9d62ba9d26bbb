/* Fixture of the fs-level unit tests (see fsfix.h). */
#include "fsfix.h"

#include "testutil.h"

#include "fs/fs_internal.h"
#include "reflinkfs/pool.h"
#include "reflinkfs/tree.h"

char g_dir[PATH_MAX];
char g_pool[PATH_MAX + 16];

int fx_setup(void **state)
{
	(void)state;
	tu_mkdtemp(g_dir, PATH_MAX);
	snprintf(g_pool, PATH_MAX + 16, "%s/pool", g_dir);
	return 0;
}

int fx_teardown(void **state)
{
	(void)state;
	tu_rmrf(g_dir);
	g_dir[0] = 0;
	return 0;
}

void fx_fsck_line(void *arg, const char *what)
{
	(void)arg;
	fprintf(stderr, "fsck: %s\n", what);
}

long fx_fsck(void)
{
	return rfs_fs_fsck(g_pool, fx_fsck_line, NULL);
}

rfs_fs *fx_fresh(uint64_t size, unsigned open_flags)
{
	rfs_fs *fs = NULL;

	unlink(g_pool);
	OK(rfs_fs_mkfs(g_pool, size, 0));
	OK(rfs_fs_open(g_pool, open_flags, &fs));
	return fs;
}

rfs_fs *fx_reopen(rfs_fs *fs, unsigned open_flags)
{
	OK(rfs_fs_close(fs));
	long probs = fx_fsck();
	CHECK(probs == 0, "fsck of %s after close: %ld problems", g_pool, probs);
	OK(rfs_fs_open(g_pool, open_flags, &fs));
	return fs;
}

rfs_nodeid fx_create(rfs_fs *fs, const struct rfs_ctx *ctx, rfs_nodeid dir, const char *name)
{
	rfs_nodeid n;
	struct stat st;
	OK(rfs_fs_create(fs, ctx, dir, name, 0644, &n, &st));
	return n;
}

void fx_rec(rfs_fs *fs, rfs_nodeid id, struct rfs_irec *r)
{
	fs_rdlock(fs); /* delayed writes mapped first */
	struct rfs_node *n = node_get(fs, id);
	assert_non_null(n);
	OK(inode_read(fs, n, r));
	rfs_pool_unlock(fs->pool);
}

/* The top volume's 'M' item of g_pool, changed by fn when it is set. */
static uint32_t vol_meta(void (*fn)(struct rfs_volmeta *m, uint32_t v), uint32_t v)
{
	rfs_pool *pool;
	rfs_tree vol;
	struct rfs_volmeta m;
	size_t ml = sizeof(m);
	assert_int_equal(rfs_pool_open(g_pool, fn ? 0 : RFS_OPEN_RDONLY, &pool), 0);
	if (fn)
		rfs_pool_wrlock(pool);
	else
		rfs_pool_rdlock(pool);
	assert_int_equal(rfs_catalog_get(pool, RFS_TOP_VOLUME, &vol), 0);
	assert_int_equal(rfs_tree_lookup(pool, &vol, "M", 1, &m, &ml, NULL), 0);
	if (fn) {
		fn(&m, v);
		assert_int_equal(rfs_tree_put(pool, &vol, "M", 1, &m, ml, 0, RFS_PUT_REPLACE), 0);
		assert_int_equal(rfs_catalog_set(pool, RFS_TOP_VOLUME, &vol), 0);
		assert_int_equal(rfs_pool_commit_locked(pool), 0);
	}
	rfs_pool_unlock(pool);
	rfs_pool_close(pool);
	return m.version;
}

static void set_version(struct rfs_volmeta *m, uint32_t v)
{
	m->version = v;
}

uint32_t fx_vol_version(void)
{
	return vol_meta(NULL, 0);
}

void fx_set_vol_version(uint32_t v)
{
	vol_meta(set_version, v);
}
