/* See vreader.h. */
#include "vreader.h"

#include <stdint.h>
#include <stdlib.h>

void *fx_vreader_main(void *arg)
{
	struct fx_vreader *r = arg;
	uint8_t *b = malloc(r->len);
	int last = 0;
	if (!b) {
		r->bad = -1;
		return NULL;
	}
	while (!atomic_load(r->stop) || r->reads < 10) {
		ssize_t n = rfs_fs_read(r->fs, r->node, b, r->len, 0);
		r->reads++;
		if (n != (ssize_t)r->len) {
			r->bad = 1;
			break;
		}
		int v = b[0];
		for (size_t i = 1; i < r->len; i++)
			if (b[i] != v) {
				r->bad = 2;
				break;
			}
		if (r->bad)
			break;
		if (v < last) {
			r->bad = 3;
			break;
		}
		last = v;
	}
	free(b);
	return NULL;
}
