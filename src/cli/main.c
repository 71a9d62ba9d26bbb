/*
 * reflinkfs: entry point and subcommand dispatch.
 */
#include "cli/cli.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

static const struct {
	const char *name;
	int (*fn)(int, char **);
	const char *what;
} cmds[] = {
	{"mkfs", cmd_mkfs, "create a pool holding an empty filesystem"},
	{"mount", cmd_mount, "mount a pool"},
	{"umount", cmd_umount, "commit and unmount"},
	{"clone", cmd_clone, "clone a file or snapshot a directory (O(1), atomic)"},
	{"snapshot", cmd_snapshot, "snapshot a directory; list, delete, restore snapshots"},
	{"stat", cmd_stat, "show a file's extents and how many blocks are shared"},
	{"sync", cmd_sync, "make everything written to a mount durable"},
	{"fsck", cmd_fsck, "check an unmounted pool"},
	{"scrub", cmd_scrub, "read and verify every data block of a mount"},
	{"diff", cmd_diff, "what changed between two directories of a mount"},
	{"du", cmd_du, "space used below a path: total, exclusive, shared"},
	{"changes", cmd_changes, "what changed below a directory since a cursor"},
	{"watch", cmd_watch, "an event before each file's first change (can hold it)"},
};

static void usage(FILE *f)
{
	fprintf(f, "usage: reflinkfs <command> [options] [args]\n\n"
		   "A copy-on-write filesystem in userspace where copying a file is a clone.\n\n"
		   "commands:\n");
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		fprintf(f, "  %-8s %s\n", cmds[i].name, cmds[i].what);
	fprintf(f, "\nRun `reflinkfs <command> --help` for the options of a command.\n");
}

bool cli_wants_help(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--"))
			break;
		if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help"))
			return true;
	}
	return false;
}

int main(int argc, char **argv)
{
	char *a0 = strdup(argv[0]);
	const char *base = a0 ? basename(a0) : argv[0];
	if (!strncmp(base, "mount.", 6)) {
		free(a0);
		return cmd_mount_helper(argc, argv);
	}
	free(a0);
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "--version")) {
		printf("reflinkfs 0.1\n");
		return 0;
	}
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (!strcmp(argv[1], cmds[i].name))
			return cmds[i].fn(argc - 1, argv + 1);
	if (!strcmp(argv[1], "unmount"))
		return cmd_umount(argc - 1, argv + 1);
	fprintf(stderr, "reflinkfs: '%s' is not a command (see `reflinkfs --help`)\n", argv[1]);
	return 2;
}
