/*
 * JSON strings for the --json outputs of every subcommand.  File names are
 * bytes, not text: valid UTF-8 is written as it is, and each byte that is
 * not part of a valid UTF-8 sequence (or is a control character) as
 * \u00XX, so every line is valid JSON.  Such a byte reads back as the
 * code point of the same value (U+0080..U+00FF), not as the byte: scripts
 * that need the exact bytes of such (rare) names use the text output.
 */
#include "cli/cli.h"

#include <stdbool.h>
#include <string.h>

/* Length of the UTF-8 sequence starting at s[i] (n bytes in all), or 0
 * when it is not a valid one. */
static int utf8_len(const char *s, size_t i, size_t n)
{
	unsigned char c = (unsigned char)s[i];
	int len = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3
		  : (c & 0xf8) == 0xf0 ? 4 : 0;
	if (len == 0 || i + (size_t)len > n)
		return 0;
	for (int k = 1; k < len; k++)
		if (((unsigned char)s[i + (size_t)k] & 0xc0) != 0x80)
			return 0;
	return len;
}

void cli_json_strn(FILE *f, const char *s, size_t n)
{
	fputc('"', f);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		int len = utf8_len(s, i, n);
		if (len == 0 || c < 0x20 || c == 0x7f) {
			fprintf(f, "\\u%04x", c);
		} else if (len > 1) {
			fwrite(s + i, 1, (size_t)len, f);
			i += (size_t)len - 1;
		} else if (c == '"' || c == '\\') {
			fprintf(f, "\\%c", c);
		} else {
			fputc(c, f);
		}
	}
	fputc('"', f);
}

void cli_json_str(FILE *f, const char *s)
{
	cli_json_strn(f, s, strlen(s));
}
