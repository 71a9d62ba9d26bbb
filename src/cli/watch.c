/*
 * reflinkfs watch [--blocking] [--timeout MS] [--json] [--exec CMD]
 * [--count N] PATH...: one event per file before its first modification
 * after the mark (pre-modification events, include/reflinkfs/watch.h).
 */
#include "cli/cli.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "reflinkfs/watch.h"

enum { WX_OK = 0, WX_FAILED = 1, WX_USAGE = 2, WX_OVERFLOW = 3 };

/* One watched PATH: its own connection (PATHs may be on several mounts). */
struct watched {
	const char *arg;   /* as given */
	char abs[PATH_MAX]; /* absolute, symlinks resolved */
	bool dir;
	rfs_watcher *w;
};

struct opts {
	bool blocking, json;
	const char *exec;
	unsigned timeout_ms;
	unsigned long count; /* 0: no limit */
};

static void watch_usage(FILE *f)
{
	fprintf(f,
		"usage: reflinkfs watch [--blocking] [--timeout MS] [--json] [--exec CMD]\n"
		"                       [--count N] PATH...\n\n"
		"Mark each PATH of a reflinkfs mount (a regular file, or a directory: every\n"
		"regular file below it, at any depth, also files created later) and print\n"
		"one line per file BEFORE its first modification after the mark: a write\n"
		"(also a dirty page of a shared mmap being written back), truncate,\n"
		"fallocate, attribute or xattr change, rename or unlink of it, clone onto\n"
		"it.  One-shot: a file is reported once (until watched again).  Files\n"
		"already open are covered.  Before a mark is set, the covered files'\n"
		"dirty pages (mmap stores too) are written back, unreported (best\n"
		"effort, see docs/WATCH.md, \"mmap\").\n\n"
		"  --blocking    the modification waits until the event is handled: until\n"
		"                CMD exits (--exec); without --exec it is acknowledged as\n"
		"                soon as it is read, then printed\n"
		"  --timeout MS  a modification waits at most MS ms (default 30000, at most\n"
		"                600000); after that it goes on and the event is reported\n"
		"                as timed out\n"
		"  --exec CMD    run CMD through /bin/sh for each event; {} is replaced by\n"
		"                the file's absolute path and {rel} by its path relative to\n"
		"                the watched PATH (a watched file: its name), both quoted\n"
		"                for the shell (do not quote them again).  CMD also gets\n"
		"                REFLINKFS_WATCH_PATH, _REL, _KIND and _INO in its\n"
		"                environment.  Events are handled one at a time.\n"
		"  --json        one JSON object per line: path (absolute; null when the\n"
		"                name is hidden from you), rel, watched, ino, kind, blocking,\n"
		"                status (\"acked\", \"timed_out\" or \"not_blocking\") and,\n"
		"                with --exec, exit (CMD's exit status); cut: true when\n"
		"                the path was too long and names a directory of it\n"
		"  --count N     exit after N events\n\n"
		"Lines: KIND PATH [acked|timed-out] [exit N].  KIND: write truncate fallocate\n"
		"attr xattr rename unlink clone.  `ready` on stderr says every mark is armed.\n\n"
		"Lazy snapshot (the content every file had before its first change):\n"
		"  reflinkfs watch --blocking --exec 'reflinkfs clone {} /m/versions/{rel}' /m/project\n"
		"(keep the versions directory outside the watched one).  Inside --exec,\n"
		"`reflinkfs clone` of the event's own file clones what is stored: it does not\n"
		"wait for the kernel's dirty pages of it, which wait for this event.  While a\n"
		"rename or unlink waits, its directories are locked by the kernel: CMD may\n"
		"open the file by the name it gets, but must not create, rename or delete\n"
		"names in those directories (that waits for the timeout).\n\n"
		"Only root or a user who may write PATH can mark it; a file below a\n"
		"directory you may not read and search gives no event (its name stays\n"
		"hidden).  While a write waits, a read of the pages it writes waits too:\n"
		"clone the file to see its stored content.  Protocol: docs/WATCH.md.\n"
		"Exit status: 0 after --count events, 1 a mark was refused or the mount\n"
		"went away (unmounted), 2 bad command line or PATH not on a reflinkfs mount,\n"
		"3 events were not read fast enough and the marks were dropped (overflow):\n"
		"rescan and watch again.\n");
}

/* A growing string. */
struct sbuf {
	char *s;
	size_t len, cap;
	bool oom;
};

static void put(struct sbuf *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t nc = b->cap ? b->cap : 256;
		while (nc < b->len + n + 1)
			nc *= 2;
		char *ns = realloc(b->s, nc);
		if (!ns) {
			b->oom = true;
			return;
		}
		b->s = ns;
		b->cap = nc;
	}
	memcpy(b->s + b->len, s, n);
	b->len += n;
	b->s[b->len] = '\0';
}

/* s quoted for /bin/sh: '...', each ' as '\''. */
static void put_quoted(struct sbuf *b, const char *s)
{
	put(b, "'", 1);
	for (; *s; s++) {
		if (*s == '\'')
			put(b, "'\\''", 4);
		else
			put(b, s, 1);
	}
	put(b, "'", 1);
}

/* CMD with {} and {rel} replaced (malloc'd), NULL when out of memory. */
static char *expand(const char *cmd, const char *abs, const char *rel)
{
	struct sbuf b = {0};
	put(&b, "", 0);
	for (const char *p = cmd; *p;) {
		if (!strncmp(p, "{}", 2)) {
			put_quoted(&b, abs);
			p += 2;
		} else if (!strncmp(p, "{rel}", 5)) {
			put_quoted(&b, rel);
			p += 5;
		} else {
			put(&b, p++, 1);
		}
	}
	if (b.oom) {
		free(b.s);
		return NULL;
	}
	return b.s;
}

/* Run CMD for one event; its exit status (128+N for signal N, 127 when
 * it could not be started). */
static int run_exec(const char *cmd, const char *abs, const char *rel,
		    const struct rfs_watcher_event *ev)
{
	char *line = expand(cmd, abs, rel);
	if (!line) {
		fprintf(stderr, "reflinkfs watch: out of memory expanding --exec\n");
		return 127;
	}
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		char ino[32];
		snprintf(ino, sizeof(ino), "%" PRIu64, ev->ino);
		setenv("REFLINKFS_WATCH_PATH", abs, 1);
		setenv("REFLINKFS_WATCH_REL", rel, 1);
		setenv("REFLINKFS_WATCH_KIND", rfs_watcher_kind_name(ev->kind), 1);
		setenv("REFLINKFS_WATCH_INO", ino, 1);
		execl("/bin/sh", "sh", "-c", line, (char *)NULL);
		fprintf(stderr, "reflinkfs watch: cannot run /bin/sh: %s\n", strerror(errno));
		_exit(127);
	}
	free(line);
	if (pid < 0) {
		fprintf(stderr, "reflinkfs watch: cannot start --exec for %s: %s\n", abs,
			strerror(errno));
		return 127;
	}
	int st;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return 127;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Handle one event of watched x: --exec, ack, print.  WX_OK, WX_FAILED,
 * or WX_OVERFLOW (the watch's marks are gone). */
static int handle(struct watched *x, const struct rfs_watcher_event *ev, const struct opts *o)
{
	char abs[PATH_MAX + RFS_WATCHER_PATH_MAX + 2];
	const char *rel;
	if (ev->kind == RFS_WK_OVERFLOW) {
		/* The daemon disarmed every mark of this watch: what changes
		 * from now on is not reported, so stop rather than go on
		 * silently. */
		if (o->json) {
			fputs("{\"path\":null,\"watched\":", stdout);
			cli_json_str(stdout, x->abs);
			puts(",\"kind\":\"overflow\"}");
		}
		fflush(stdout);
		fprintf(stderr,
			"reflinkfs watch: %s: too many events waited unread, so the daemon "
			"dropped the marks; changes after this point were not reported: "
			"rescan %s and watch it again\n",
			x->abs, x->abs);
		return WX_OVERFLOW;
	}
	/* "" below a marked directory: a name the subscriber may not list. */
	bool hidden = x->dir && !ev->path[0];
	if (!x->dir) {
		snprintf(abs, sizeof(abs), "%s", x->abs);
		rel = strrchr(x->abs, '/') ? strrchr(x->abs, '/') + 1 : x->abs;
	} else {
		snprintf(abs, sizeof(abs), "%s%s%s", x->abs, strcmp(x->abs, "/") ? "/" : "",
			 ev->path);
		rel = ev->path;
	}
	int xst = -1;
	if (o->exec && !hidden)
		xst = run_exec(o->exec, abs, rel, ev);
	const char *status = "not_blocking";
	if (ev->blocking) {
		int r = rfs_watcher_ack(x->w, ev->id);
		if (r == -ETIMEDOUT) {
			status = "timed_out";
		} else if (r) {
			fprintf(stderr, "reflinkfs watch: acknowledging the event of %s: %s\n",
				hidden ? "(hidden name)" : abs, strerror(-r));
			return WX_FAILED;
		} else {
			status = "acked";
		}
	}
	if (o->json) {
		fputs("{\"path\":", stdout);
		if (hidden)
			fputs("null", stdout);
		else
			cli_json_str(stdout, abs);
		fputs(",\"rel\":", stdout);
		if (hidden)
			fputs("null", stdout);
		else
			cli_json_str(stdout, rel);
		fputs(",\"watched\":", stdout);
		cli_json_str(stdout, x->abs);
		printf(",\"ino\":%" PRIu64 ",\"kind\":\"%s\",\"blocking\":%s,\"status\":\"%s\"",
		       ev->ino, rfs_watcher_kind_name(ev->kind), ev->blocking ? "true" : "false",
		       status);
		if (xst >= 0)
			printf(",\"exit\":%d", xst);
		if (ev->cut)
			fputs(",\"cut\":true", stdout);
		puts("}");
	} else {
		printf("%s ", rfs_watcher_kind_name(ev->kind));
		if (hidden)
			printf("(inode %" PRIu64 " below %s)", ev->ino, x->abs);
		else
			fputs(abs, stdout);
		if (ev->blocking)
			printf(" %s", !strcmp(status, "acked") ? "acked" : "timed-out");
		if (xst >= 0)
			printf(" exit %d", xst);
		if (ev->cut)
			fputs(" (path cut: too long)", stdout);
		putchar('\n');
	}
	fflush(stdout);
	return WX_OK;
}

static int open_error(const char *path, int e)
{
	switch (e) {
	case ENOTTY:
		fprintf(stderr, "reflinkfs watch: %s is not on a reflinkfs mount (or its daemon is "
			"older than `watch`: remount it with this reflinkfs)\n", path);
		return WX_USAGE;
	case ENOTSUP:
		fprintf(stderr, "reflinkfs watch: the daemon of the mount of %s runs no watch "
			"server (its log says why); remount it\n", path);
		return WX_FAILED;
	case EPROTO:
		fprintf(stderr, "reflinkfs watch: the daemon of the mount of %s speaks another "
			"watch protocol version: use the reflinkfs that mounted it\n", path);
		return WX_FAILED;
	default:
		fprintf(stderr, "reflinkfs watch: %s: cannot open a watch: %s\n", path,
			strerror(e));
		return WX_FAILED;
	}
}

static int mark_error(const char *path, int e)
{
	switch (e) {
	case EACCES:
		fprintf(stderr, "reflinkfs watch: %s: permission denied: only root or a user "
			"who may write it can watch it\n", path);
		break;
	case EPERM:
		fprintf(stderr, "reflinkfs watch: %s: the watch belongs to another user\n", path);
		break;
	case EINVAL:
		fprintf(stderr, "reflinkfs watch: %s is neither a regular file nor a directory "
			"(only those can be watched)\n", path);
		break;
	case EROFS:
		fprintf(stderr, "reflinkfs watch: %s is on a read-only mount: nothing there can "
			"change\n", path);
		break;
	case EXDEV:
		fprintf(stderr, "reflinkfs watch: %s is not on the mount the watch was opened on "
			"(or that connection ended)\n", path);
		break;
	default:
		fprintf(stderr, "reflinkfs watch: cannot watch %s: %s\n", path, strerror(e));
	}
	return WX_FAILED;
}

static int parse_uint(const char *s, unsigned long max, unsigned long *out)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (!*s || *end || errno || v > max || *s == '-')
		return -1;
	*out = v;
	return 0;
}

static int watch_loop(struct watched *ws, int n, const struct opts *o)
{
	struct pollfd *p = calloc((size_t)n, sizeof(*p));
	if (!p) {
		fprintf(stderr, "reflinkfs watch: out of memory\n");
		return WX_FAILED;
	}
	unsigned long seen = 0;
	int rc = WX_OK;
	while (rc == WX_OK && (!o->count || seen < o->count)) {
		for (int i = 0; i < n; i++)
			p[i] = (struct pollfd){.fd = rfs_watcher_fd(ws[i].w), .events = POLLIN};
		if (poll(p, (nfds_t)n, -1) < 0) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, "reflinkfs watch: poll: %s\n", strerror(errno));
			rc = WX_FAILED;
			break;
		}
		for (int i = 0; i < n && rc == WX_OK; i++) {
			if (!p[i].revents)
				continue;
			/* Until none is left: an ack may have queued more. */
			while (rc == WX_OK && (!o->count || seen < o->count)) {
				struct rfs_watcher_event ev;
				int r = rfs_watcher_read(ws[i].w, &ev, 0);
				if (r == -EAGAIN)
					break;
				if (r == -ENOTCONN) {
					fprintf(stderr, "reflinkfs watch: the mount of %s went away "
						"(unmounted, or its daemon stopped): its marks are gone\n",
						ws[i].arg);
					rc = WX_FAILED;
				} else if (r) {
					fprintf(stderr, "reflinkfs watch: reading events of %s: %s\n",
						ws[i].arg, strerror(-r));
					rc = WX_FAILED;
				} else {
					rc = handle(&ws[i], &ev, o);
					seen++;
				}
			}
		}
	}
	free(p);
	return rc;
}

int cmd_watch(int argc, char **argv)
{
	if (cli_wants_help(argc, argv)) {
		watch_usage(stdout);
		return WX_OK;
	}
	struct opts o = {0};
	int npaths = 0;
	const char **paths = calloc((size_t)argc, sizeof(*paths));
	if (!paths) {
		fprintf(stderr, "reflinkfs watch: out of memory\n");
		return WX_FAILED;
	}
	static const struct option longopts[] = {{"blocking", no_argument, NULL, 'b'},
						 {"json", no_argument, NULL, 'j'},
						 {"exec", required_argument, NULL, 'x'},
						 {"timeout", required_argument, NULL, 't'},
						 {"count", required_argument, NULL, 'n'},
						 {0}};
	optind = 0;
	for (int c; (c = cli_getopt(argc, argv, "watch", "", longopts)) != -1;) {
		unsigned long v;
		bool t = c == 't';
		switch (c) {
		case 'b':
			o.blocking = true;
			break;
		case 'j':
			o.json = true;
			break;
		case 'x':
			o.exec = optarg;
			break;
		case 't':
		case 'n':
			if (parse_uint(optarg, t ? 600000 : ULONG_MAX, &v) || (t && v == 0)) {
				fprintf(stderr, "reflinkfs watch: --%s wants a number%s, not '%s'\n",
					t ? "timeout" : "count",
					t ? " of milliseconds from 1 to 600000" : "", optarg);
				free(paths);
				return WX_USAGE;
			}
			if (t)
				o.timeout_ms = (unsigned)v;
			else
				o.count = v;
			break;
		default:
			free(paths);
			return WX_USAGE;
		}
	}
	for (int i = optind; i < argc; i++)
		paths[npaths++] = argv[i];
	if (!npaths) {
		watch_usage(stderr);
		free(paths);
		return WX_USAGE;
	}
	if (o.timeout_ms && !o.blocking)
		fprintf(stderr, "reflinkfs watch: --timeout has no effect without --blocking\n");
	struct watched *ws = calloc((size_t)npaths, sizeof(*ws));
	int rc = ws ? WX_OK : WX_FAILED;
	int opened = 0;
	for (int i = 0; rc == WX_OK && i < npaths; i++) {
		struct watched *x = &ws[i];
		struct stat st;
		x->arg = paths[i];
		if (!realpath(paths[i], x->abs) || stat(x->abs, &st)) {
			fprintf(stderr, "reflinkfs watch: %s: %s\n", paths[i], strerror(errno));
			rc = WX_FAILED;
			break;
		}
		x->dir = S_ISDIR(st.st_mode);
		int r = rfs_watcher_open(x->abs, o.blocking ? RFS_WATCHER_BLOCKING : 0,
					 o.timeout_ms, &x->w);
		if (r) {
			rc = open_error(paths[i], -r);
			break;
		}
		opened++;
		uint64_t mark;
		r = rfs_watcher_mark(x->w, x->abs, &mark);
		if (r)
			rc = mark_error(paths[i], -r);
	}
	if (rc == WX_OK) {
		fprintf(stderr, "reflinkfs watch: ready: %d path%s marked%s\n", npaths,
			npaths == 1 ? "" : "s",
			o.blocking ? "; modifications wait for each event" : "");
		rc = watch_loop(ws, npaths, &o);
	}
	for (int i = 0; i < opened; i++)
		rfs_watcher_close(ws[i].w);
	free(ws);
	free(paths);
	return rc;
}
