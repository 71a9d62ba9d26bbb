/*
 * Every reflinkfs ioctl has its own number: two requests that differ only
 * in their direction or size bits are easy to mix up in strace output and
 * in the daemon's dispatch, so the numbers themselves stay unique.  A new
 * RFS_IOC_* in include/reflinkfs/ belongs in the list below.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <linux/ioctl.h>
#include <stdio.h>
#include <string.h>

#include "reflinkfs/fs.h"
#include "reflinkfs/journal.h"
#include "reflinkfs/watch.h"

static const struct {
	const char *name;
	unsigned long req;
} g_ioc[] = {
#define IOC(x) {#x, x}
	IOC(RFS_IOC_CLONE),         IOC(RFS_IOC_STAT),        IOC(RFS_IOC_EXTENTS),
	IOC(RFS_IOC_SYNC),          IOC(RFS_IOC_SCRUB_STEP),  IOC(RFS_IOC_SCRUB_REPORT),
	IOC(RFS_IOC_DIFF_START),    IOC(RFS_IOC_DIFF_REPORT), IOC(RFS_IOC_SNAPSHOT),
	IOC(RFS_IOC_SNAPSHOT_DELETE), IOC(RFS_IOC_VOLUMES),   IOC(RFS_IOC_MOUNT_STATE),
	IOC(RFS_IOC_RECLAIM),       IOC(RFS_IOC_DU_STEP),     IOC(RFS_IOC_CHANGES),
	IOC(RFS_IOC_REQ_STATS),     IOC(RFS_IOC_WATCH_ADDR),  IOC(RFS_IOC_WATCH_MARK),
	IOC(RFS_IOC_READ_WAITS),    IOC(RFS_IOC_REQ_TIMES),   IOC(RFS_IOC_JOURNAL_INFO),
#undef IOC
};

static void test_numbers_unique(void **state)
{
	(void)state;
	size_t n = sizeof(g_ioc) / sizeof(g_ioc[0]);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(_IOC_TYPE(g_ioc[i].req), 'R');
		for (size_t j = i + 1; j < n; j++) {
			if (_IOC_NR(g_ioc[i].req) == _IOC_NR(g_ioc[j].req))
				fail_msg("%s and %s share ioctl number %u", g_ioc[i].name,
					 g_ioc[j].name, _IOC_NR(g_ioc[i].req));
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_numbers_unique),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
