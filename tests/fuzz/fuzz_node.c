/* libFuzzer target for tree nodes read from disk (see fuzz_node.h).
 * Built and run by `make fuzz` (needs clang). */
#include "fuzz_node.h"

static struct fz fz;
static int ready;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!ready) {
		const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
		if (fz_setup(&fz, dir))
			abort();
		ready = 1;
	}
	fz_run(&fz, data, size);
	return 0;
}
