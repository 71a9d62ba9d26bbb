/*
 * reflinkfs changes [--since CURSOR] [--json] [--follow] PATH: what
 * changed below directory PATH of a mount since CURSOR, from the change
 * journal (rfs_changes_read / rfs_changes_follow, the client API of
 * include/reflinkfs/journal.h), then the cursor to pass next time.
 * With --info: the journal's state (rfs_changes_info), and whether
 * CURSOR can still be read from.
 */
#include "cli/cli.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "reflinkfs/fs.h"
#include "reflinkfs/journal.h"
#include "util/size.h"

enum { CH_OK = 0, CH_TROUBLE = 2, CH_EXPIRED = 3, CH_RESET = 4 };
/* --follow: how often to look for new changes. */
#define FOLLOW_MS RFS_CHANGES_FOLLOW_MS

static void changes_usage(FILE *f)
{
	fprintf(f,
		"usage: reflinkfs changes [--since CURSOR] [--json] [--follow] PATH\n"
		"       reflinkfs changes --info [--since CURSOR] [--json] PATH\n\n"
		"Print what changed below directory PATH of a reflinkfs mount (its whole\n"
		"subtree, snapshots below it included; the mount point for everything)\n"
		"since CURSOR, oldest first, from the change journal, then a new cursor\n"
		"to pass next time.  Without --since: every change the journal keeps.\n"
		"Only committed changes are printed: a crash never takes one back.\n"
		"The time is O(changes below PATH): nothing is walked.\n\n"
		"One line per change: SEQ KIND PATH, paths relative to PATH:\n"
		"  create mkdir symlink mknod mkfifo unlink rmdir link  a name\n"
		"  rename OLD -> NEW   both names below PATH\n"
		"  move_in PATH        arrived from outside PATH (a subtree: rescan it)\n"
		"  move_out PATH       went outside PATH\n"
		"  exchange A <-> B    RENAME_EXCHANGE\n"
		"  data PATH [OFF+LEN ...]   bytes written, truncated, allocated, cloned\n"
		"                      (merged per file per commit)\n"
		"  attr xattr          mode, owner, times, size; extended attributes\n"
		"A data, attr or xattr change of a file created or changed earlier in the\n"
		"same commit is merged into that line: `12 create f +data +attr 0+4096`\n"
		"(JSON: \"also\":[\"data\",\"attr\"] and its ranges).\n"
		"  snapshot snapshot_delete   a snapshot made or deleted at PATH\n"
		"A change through a file with several hard links is listed under each of\n"
		"its names; one to a file with no name left (unlinked, still open) shows\n"
		"as `(inode N)`, only for the mount point.  Access times are not\n"
		"recorded.  The last line is `cursor: C`.\n\n"
		"  --since CURSOR  start after the changes CURSOR was given for\n"
		"  --json          one JSON object per change: seq, time, kind, path,\n"
		"                  old_path (rename, exchange), ino, parent, volume,\n"
		"                  also (kinds merged in), ranges ([offset, length]\n"
		"                  pairs); last line\n"
		"                  {\"cursor\": \"...\"}\n"
		"  --follow        keep printing changes as they are committed: the daemon\n"
		"                  waits for a change below PATH and commits it at once\n"
		"                  (commits for followers at least %d ms apart), so a change\n"
		"                  shows up within about one commit; with more than %d\n"
		"                  followers waiting, checks every %d ms instead; a cursor\n"
		"                  line follows each batch\n"
		"  --info          print the journal's state instead of changes: records\n"
		"                  and bytes kept against the retention limit, the oldest\n"
		"                  cursor still readable, the cursor of now, records\n"
		"                  waiting for the next commit; with --since, whether\n"
		"                  that cursor can still be read from (exit status as\n"
		"                  below) and how many changes were committed after it\n\n"
		"Root or the user who mounted may read the journal.  The journal keeps a\n"
		"bounded amount (mkfs --journal-size SIZE, mount option journal_size=SIZE;\n"
		"default 1/64 of the pool).  Tools: the C API rfs_changes_read and\n"
		"rfs_changes_follow in <reflinkfs/journal.h> (libreflinkfs).\n"
		"Exit status: 0 done, 2 trouble (a path is missing or not a directory,\n"
		"not on a reflinkfs mount, no permission, not a cursor, a mount with\n"
		"-o nojournal), 3 cursor expired: the changes since it were trimmed, rescan\n"
		"PATH, 4 the cursor is of another pool or of a journal reset since (after\n"
		"a mount with -o nojournal, or a full pool): rescan PATH.\n",
		RFS_CHANGES_COMMIT_GAP_MS, RFS_CHANGES_WAITERS_MAX, FOLLOW_MS);
}

/* A path for a human line: "." for PATH itself. */
static void text_path(const char *s, size_t n)
{
	if (n == 0)
		fputs(".", stdout);
	else
		fwrite(s, 1, n, stdout);
}

static int print_one(void *arg, const struct rfs_change *c)
{
	bool json = *(const bool *)arg;
	const char *kind = rfs_change_kind_name(c->kind);
	size_t pl = c->path ? strlen(c->path) : 0, ol = c->old_path ? strlen(c->old_path) : 0;
	if (json) {
		printf("{\"seq\":%" PRIu64 ",\"time\":%" PRId64 ".%09u,\"kind\":\"%s\",\"path\":",
		       c->seq, c->sec, c->nsec, kind);
		if (!c->path)
			fputs("null", stdout);
		else
			cli_json_strn(stdout, c->path, pl);
		if (c->old_path) {
			fputs(",\"old_path\":", stdout);
			cli_json_strn(stdout, c->old_path, ol);
		}
		printf(",\"ino\":%" PRIu64 ",\"parent\":%" PRIu64 ",\"volume\":%" PRIu64, c->ino,
		       c->parent, c->volume);
		if (c->also) {
			const char *sep = "";
			fputs(",\"also\":[", stdout);
			for (int k = 1; k < 32; k++)
				if (c->also & (1u << k)) {
					printf("%s\"%s\"", sep, rfs_change_kind_name(k));
					sep = ",";
				}
			putchar(']');
		}
		if (c->kind == RFS_CHANGE_DATA || c->nranges) {
			fputs(",\"ranges\":[", stdout);
			for (unsigned i = 0; i < c->nranges; i++)
				printf("%s[%" PRIu64 ",%" PRIu64 "]", i ? "," : "", c->ranges[i].off,
				       c->ranges[i].len);
			putchar(']');
		}
		if (c->cut)
			fputs(",\"cut\":true", stdout);
		puts("}");
		return 0;
	}
	printf("%" PRIu64 " %s ", c->seq, kind);
	if (!c->path) {
		printf("(inode %" PRIu64 ")", c->ino);
	} else if (c->old_path && c->kind == RFS_CHANGE_RENAME) {
		text_path(c->old_path, ol);
		fputs(" -> ", stdout);
		text_path(c->path, pl);
	} else if (c->old_path && c->kind == RFS_CHANGE_EXCHANGE) {
		text_path(c->old_path, ol);
		fputs(" <-> ", stdout);
		text_path(c->path, pl);
	} else {
		text_path(c->path, pl);
	}
	for (int k = 1; k < 32; k++)
		if (c->also & (1u << k))
			printf(" +%s", rfs_change_kind_name(k));
	for (unsigned i = 0; i < c->nranges; i++)
		printf(" %" PRIu64 "+%" PRIu64, c->ranges[i].off, c->ranges[i].len);
	putchar('\n');
	return 0;
}

static int report_error(const char *path, int e)
{
	if (e == ENOTDIR || e == ENOENT || e == EACCES) {
		fprintf(stderr, "reflinkfs changes: %s: %s%s\n", path, strerror(e),
			e == ENOTDIR ? " (give a directory of the mount)" : "");
	} else if (e == ENOTTY || e == ENOSYS) {
		fprintf(stderr, "reflinkfs changes: %s is not on a reflinkfs mount\n", path);
	} else if (e == ENOTSUP) { /* == EOPNOTSUPP: only reflinkfs answers this */
		fprintf(stderr, "reflinkfs changes: %s: the mount records no changes (mounted with "
			"-o nojournal); remount without it\n", path);
	} else if (e == EPERM) {
		fprintf(stderr, "reflinkfs changes: %s: only root or the user who mounted it may "
			"read its changes\n", path);
	} else if (e == ERANGE) {
		fprintf(stderr, "reflinkfs changes: cursor expired: rescan needed (the changes "
			"since it were trimmed from the journal; rescan %s, then use the cursor "
			"`reflinkfs changes` prints without --since)\n", path);
		return CH_EXPIRED;
	} else if (e == EXDEV) {
		fprintf(stderr, "reflinkfs changes: the cursor belongs to another pool: rescan "
			"%s, then use a cursor of this one\n", path);
		return CH_RESET;
	} else if (e == ESTALE) {
		fprintf(stderr, "reflinkfs changes: the journal was reset since the cursor "
			"(a mount with -o nojournal, or changes that could not be recorded): "
			"rescan needed for %s\n", path);
		return CH_RESET;
	} else if (e == EINVAL) {
		fprintf(stderr, "reflinkfs changes: not a cursor of this journal (give the "
			"string a previous `reflinkfs changes` printed after `cursor:`)\n");
	} else if (e == EIO || e == EUCLEAN) {
		fprintf(stderr, "reflinkfs changes: %s: %s (damaged metadata: the daemon's log "
			"names the block; run `reflinkfs fsck` on the unmounted pool)\n", path,
			strerror(e));
	} else {
		fprintf(stderr, "reflinkfs changes: %s: %s\n", path, strerror(e));
	}
	return CH_TROUBLE;
}

static void print_cursor(const char *c, bool json)
{
	if (json)
		printf("{\"cursor\":\"%s\"}\n", c);
	else
		printf("cursor: %s\n", c);
	fflush(stdout);
}

/* The message and exit status for a cursor rfs_changes_info found
 * unusable (status: its -errno), as a read from it would fail. */
static const char *since_word(int status)
{
	switch (status) {
	case 0: return "readable";
	case -ERANGE: return "expired";
	case -ESTALE: return "reset";
	case -EXDEV: return "other-pool";
	default: return "not-a-cursor";
	}
}

static int print_info(const char *path, const char *since, bool json)
{
	struct rfs_journal_stat st;
	int ret = rfs_changes_info(path, since, &st);
	if (ret)
		return report_error(path, -ret);
	bool asked = since && *since;
	if (json) {
		printf("{\"records\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"limit_bytes\":%" PRIu64
		       ",\"pending\":%" PRIu64 ",\"oldest_seq\":%" PRIu64 ",\"next_seq\":%" PRIu64
		       ",\"oldest_cursor\":\"%s\",\"cursor\":\"%s\"",
		       st.nrecords, st.bytes, st.limit_bytes, st.pending, st.oldest, st.durable,
		       st.oldest_cursor, st.cursor);
		if (asked) {
			printf(",\"since\":\"%s\"", since_word(st.since_status));
			if (!st.since_status)
				printf(",\"since_behind\":%" PRIu64, st.since_behind);
		}
		puts("}");
	} else {
		char b[RFS_SIZE_STR], l[RFS_SIZE_STR];
		printf("records kept:    %" PRIu64 " (%s of the %s retention limit)\n", st.nrecords,
		       rfs_size_str(st.bytes, b), rfs_size_str(st.limit_bytes, l));
		printf("waiting:         %" PRIu64 " records (stored at the next commit)\n",
		       st.pending);
		printf("oldest cursor:   %s\n", st.oldest_cursor);
		printf("current cursor:  %s\n", st.cursor);
		if (asked && !st.since_status)
			printf("given cursor:    readable, %" PRIu64 " changes committed after it "
			       "(in the whole mount)\n", st.since_behind);
	}
	fflush(stdout);
	if (!asked || !st.since_status)
		return CH_OK;
	if (!json)
		printf("given cursor:    %s\n", since_word(st.since_status));
	fflush(stdout);
	return report_error(path, -st.since_status);
}

int cmd_changes(int argc, char **argv)
{
	if (cli_wants_help(argc, argv)) {
		changes_usage(stdout);
		return CH_OK;
	}
	bool json = false, follow = false, info = false;
	const char *since = "", *path = NULL;
	static const struct option longopts[] = {{"json", no_argument, NULL, 'j'},
						 {"follow", no_argument, NULL, 'f'},
						 {"info", no_argument, NULL, 'i'},
						 {"since", required_argument, NULL, 's'},
						 {0}};
	optind = 0;
	for (int c; (c = cli_getopt(argc, argv, "changes", "", longopts)) != -1;) {
		if (c == 'j')
			json = true;
		else if (c == 'f')
			follow = true;
		else if (c == 'i')
			info = true;
		else if (c == 's')
			since = optarg;
		else
			return CH_TROUBLE;
	}
	if (optind + 1 < argc) {
		fprintf(stderr, "reflinkfs changes: too many arguments\n");
		changes_usage(stderr);
		return CH_TROUBLE;
	}
	if (optind < argc)
		path = argv[optind];
	if (!path) {
		changes_usage(stderr);
		return CH_TROUBLE;
	}
	if (strlen(since) >= RFS_CURSOR_MAX) {
		fprintf(stderr, "reflinkfs changes: not a cursor (too long): give the string a "
			"previous `reflinkfs changes` printed after `cursor:`\n");
		return CH_TROUBLE;
	}
	if (info && follow) {
		fprintf(stderr, "reflinkfs changes: --info and --follow do not go together: "
			"give one of them\n");
		return CH_TROUBLE;
	}
	if (info)
		return print_info(path, since, json);
	char cursor[RFS_CURSOR_MAX];
	int ret = rfs_changes_read(path, since, print_one, &json, cursor);
	while (!ret || ret == -ETIMEDOUT || ret == -EINTR) {
		if (!ret)
			print_cursor(cursor, json);
		if (!follow)
			break;
		ret = rfs_changes_follow(path, cursor, -1, print_one, &json, cursor);
	}
	return ret && ret != -ETIMEDOUT && ret != -EINTR ? report_error(path, -ret) : CH_OK;
}
