/*
 * Unit tests of rfs_pool_set_frozen (src/pool/freeze.c): freezing commits
 * and then refuses every change; thawing makes the pool writable again,
 * except a pool opened read-only.
 */
#include "../common/testutil.h"

#define POOL_SIZE (16ull << 20)

static void put(rfs_pool *pool, rfs_tree *t, const char *key, int expect)
{
	rfs_pool_wrlock(pool);
	int ret = rfs_tree_put(pool, t, key, strlen(key), "v", 1, 0, RFS_PUT_UPSERT);
	rfs_pool_unlock(pool);
	CHECK(ret == expect, "put %s: got %d, expected %d", key, ret, expect);
}

static void test_freeze_thaw(void **state)
{
	(void)state;
	char dir[1024], path[1100];
	tu_mkdtemp(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/pool", dir);
	OK(rfs_pool_create(path, POOL_SIZE, 0));
	rfs_pool *pool;
	OK(rfs_pool_open(path, 0, &pool));
	rfs_tree t = {0, 100};
	put(pool, &t, "a", 0);
	uint64_t gen = rfs_pool_committed_gen(pool);

	OK(rfs_pool_set_frozen(pool, true));
	EQ_U64(rfs_pool_committed_gen(pool), gen + 1); /* it committed first */
	assert_int_equal(rfs_pool_check_writable(pool), -EROFS);
	put(pool, &t, "b", -EROFS);
	rfs_pool_wrlock(pool);
	assert_int_equal(rfs_pool_commit_locked(pool), -EROFS);
	rfs_pool_unlock(pool);
	OK(rfs_pool_set_frozen(pool, true)); /* again: nothing to do */
	EQ_U64(rfs_pool_committed_gen(pool), gen + 1);

	OK(rfs_pool_set_frozen(pool, false));
	OK(rfs_pool_check_writable(pool));
	put(pool, &t, "b", 0);
	OK(rfs_pool_commit(pool));
	EQ_U64(rfs_pool_committed_gen(pool), gen + 2);
	rfs_pool_close(pool);

	/* opened read-only: freezing is a no-op, thawing is refused */
	OK(rfs_pool_open(path, RFS_OPEN_RDONLY, &pool));
	OK(rfs_pool_set_frozen(pool, true));
	assert_int_equal(rfs_pool_set_frozen(pool, false), -EROFS);
	assert_int_equal(rfs_pool_check_writable(pool), -EROFS);
	rfs_pool_close(pool);
	tu_rmrf(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_freeze_thaw),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
