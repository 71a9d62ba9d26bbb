/* libFuzzer entry for inode record values (fuzz_irec.h). */
#include "fuzz_irec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int quiet;
	if (!quiet) {
		rfs_log_set_level(-1);
		quiet = 1;
	}
	if (size <= RFS_VAL_MAX)
		fz_irec(data, size);
	return 0;
}
