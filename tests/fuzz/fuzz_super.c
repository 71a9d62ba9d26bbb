/* libFuzzer target for the superblock (see fuzz_super.h); `make fuzz`. */
#include "fuzz_super.h"

static struct fzs fzs;
static int ready;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!ready) {
		const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
		if (fzs_setup(&fzs, dir))
			abort();
		ready = 1;
	}
	fzs_run(&fzs, data, size);
	return 0;
}
