#include "util/size.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>

static const char units[] = "KMGTPE";

int rfs_size_parse(const char *s, uint64_t *out, const char **why)
{
	const char *p = s;
	uint64_t v = 0;
	*why = NULL;
	if (*p == '-') {
		*why = "a size cannot be negative";
		return -EINVAL;
	}
	if (*p < '0' || *p > '9') {
		*why = *p ? "not a number (examples: 10G, 512M, 4096)" : "empty";
		return -EINVAL;
	}
	bool big = false;
	for (; *p >= '0' && *p <= '9'; p++) {
		unsigned d = (unsigned)(*p - '0');
		if (v > (UINT64_MAX - d) / 10)
			big = true;
		else
			v = v * 10 + d;
	}
	if (*p == '.' || *p == ',') {
		*why = "no fractions: give whole numbers of a smaller unit (1536M, not 1.5G)";
		return -EINVAL;
	}
	unsigned shift = 0;
	if (*p) {
		char c = *p >= 'a' && *p <= 'z' ? (char)(*p - 'a' + 'A') : *p;
		const char *u = NULL;
		for (const char *x = units; *x; x++)
			if (*x == c)
				u = x;
		if (u) {
			shift = 10u * (unsigned)(u - units + 1);
			p++;
			if (p[0] == 'i' && p[1] == 'B')
				p += 2;
			else if (*p == 'B' || *p == 'b')
				p++;
		} else if (c == 'B') {
			p++;
		}
		if (*p) {
			*why = "unknown unit: use K, M, G, T, P or E (powers of 1024), or none for bytes";
			return -EINVAL;
		}
	}
	if (big || (shift && v > (UINT64_MAX >> shift))) {
		*why = "more than 16 EiB (2^64 bytes)";
		return -ERANGE;
	}
	*out = v << shift;
	return 0;
}

const char *rfs_size_str(uint64_t bytes, char buf[RFS_SIZE_STR])
{
	unsigned top = 0;
	while (top < sizeof(units) - 1 && bytes >> (10 * (top + 1)))
		top++;
	/* exact in the largest unit that gives a short number (1536 MiB) */
	for (unsigned i = top; i > 0; i--) {
		uint64_t whole = bytes >> (10 * i);
		if (whole << (10 * i) == bytes && whole < 100000) {
			snprintf(buf, RFS_SIZE_STR, "%llu %ciB", (unsigned long long)whole, units[i - 1]);
			return buf;
		}
	}
	if (top == 0)
		snprintf(buf, RFS_SIZE_STR, "%llu bytes", (unsigned long long)bytes);
	else
		snprintf(buf, RFS_SIZE_STR, "about %.1f %ciB",
			 (double)bytes / (double)(1ull << (10 * top)), units[top - 1]);
	return buf;
}
