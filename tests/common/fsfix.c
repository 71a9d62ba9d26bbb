/* Fixture of the fs-level unit tests (see fsfix.h). */
#include "fsfix.h"

#include "testutil.h"

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
