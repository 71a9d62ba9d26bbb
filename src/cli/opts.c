/*
 * One option parser for every subcommand: getopt_long with the messages
 * of this tool, so options go anywhere before "--", short options
 * combine (-re), long ones take --opt=value, and a mistake names the
 * option and the command's --help.
 */
#include "cli/cli.h"

#include <getopt.h>
#include <string.h>

int cli_getopt(int argc, char **argv, const char *cmd, const char *shortopts,
	       const struct option *longopts)
{
	char so[64];
	snprintf(so, sizeof(so), ":%s", shortopts); /* ':' reports a missing value */
	opterr = 0;
	int c = getopt_long(argc, argv, so, longopts, NULL);
	const char *arg = optind > 0 && optind <= argc ? argv[optind - 1] : "";
	if (c == '?') {
		if (optopt && strncmp(arg, "--", 2))
			fprintf(stderr, "reflinkfs %s: unknown option '-%c'", cmd, optopt);
		else
			fprintf(stderr, "reflinkfs %s: unknown option '%s'", cmd, arg);
		fprintf(stderr, " (see `reflinkfs %s --help`)\n", cmd);
	} else if (c == ':') {
		fprintf(stderr, "reflinkfs %s: option '%s' needs a value (see `reflinkfs %s --help`)\n",
			cmd, arg, cmd);
	}
	return c;
}
