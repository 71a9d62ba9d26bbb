/*
 * Unit tests of a worker's READ buffer (src/fuse/rbuf.h): it starts on
 * a page (a 4 KiB reply then covers one page, not two), is kept for the
 * thread's next READs, grows for a larger one, and each thread has its
 * own.
 *
 * src/fuse is not part of libreflinkfs (it needs libfuse); this file of
 * it needs only libc, so the test compiles it in.
 */
#include "../common/testutil.h"

#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "fuse/rbuf.c"

static size_t page(void)
{
	return (size_t)sysconf(_SC_PAGESIZE);
}

static void test_page_aligned_and_kept(void **state)
{
	(void)state;
	char *a = rfs_fuse_read_buf(4096);
	assert_non_null(a);
	assert_int_equal((uintptr_t)a % page(), 0);
	memset(a, 0xa5, 4096);
	/* Kept: the next READ, smaller or up to the capacity, gets it. */
	assert_ptr_equal(rfs_fuse_read_buf(512), a);
	assert_ptr_equal(rfs_fuse_read_buf(128u << 10), a);
	/* A larger one: a new buffer, aligned too. */
	char *b = rfs_fuse_read_buf((1u << 20) + 1);
	assert_non_null(b);
	assert_int_equal((uintptr_t)b % page(), 0);
	memset(b, 0x5a, (1u << 20) + 1);
	assert_ptr_equal(rfs_fuse_read_buf(4096), b);
}

static void *other_thread(void *arg)
{
	char *mine = rfs_fuse_read_buf(4096);
	memset(mine, 1, 4096); /* freed at the thread's end (ASan: no leak) */
	return mine == arg ? NULL : mine;
}

static void test_per_thread(void **state)
{
	(void)state;
	char *mine = rfs_fuse_read_buf(4096);
	pthread_t th;
	void *theirs;
	assert_int_equal(pthread_create(&th, NULL, other_thread, mine), 0);
	pthread_join(th, &theirs);
	assert_non_null(theirs); /* not this thread's buffer */
	assert_ptr_equal(rfs_fuse_read_buf(4096), mine);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_page_aligned_and_kept),
		cmocka_unit_test(test_per_thread),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
