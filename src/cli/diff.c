/*
 * reflinkfs diff [--json] A B: what changed between two directories of a
 * reflinkfs mount.  The daemon computes the diff (RFS_IOC_DIFF_START on A
 * with a descriptor of B) and the CLI fetches it in pages
 * (RFS_IOC_DIFF_REPORT), like `reflinkfs scrub`.  Exit status as diff(1):
 * 0 identical, 1 different, 2 trouble.
 */
#include "cli/cli.h"

#include <errno.h>
#include <getopt.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "reflinkfs/fs.h"

enum { DIFF_SAME = 0, DIFF_DIFFERENT = 1, DIFF_TROUBLE = 2 };

static void diff_usage(FILE *f)
{
	fprintf(f,
		"usage: reflinkfs diff [--json] A B\n\n"
		"Print what changed from directory A to directory B, both on one reflinkfs\n"
		"mount (typically a snapshot and its source, or two snapshots), one line\n"
		"per path, relative to A and B:\n"
		"  A path          only in B (added; everything below a new directory too)\n"
		"  D path          only in A (removed; everything below it too)\n"
		"  M path          in both, changed: contents, xattrs or attributes (mode,\n"
		"                  owner, group, size, mtime); `M .` is B itself\n"
		"  R old -> new    the same file or directory under another name (followed\n"
		"                  by `M new` when it changed too)\n"
		"Only what differs is read: files and directories that A and B share\n"
		"unchanged (as a snapshot shares everything it has not changed) cost\n"
		"nothing, so the time depends on the changes, not on the size of the tree.\n"
		"Renames are found by inode number, where A and B share them (a snapshot\n"
		"and its source); two copies made by cp -a have their own inode numbers,\n"
		"and a rename between them shows as D and A.  atime, ctime and the link\n"
		"count are not compared.  Lines come sorted by path; unusual characters in\n"
		"names are quoted as C strings (\"a\\nb\").\n\n"
		"  --json   one JSON object: counts and a list of changes, each with op,\n"
		"           path (old too for R), type, and for M and R what changed:\n"
		"           \"changes\" among data, meta, xattr, and the \"meta\" fields\n\n"
		"Root or the user who mounted may diff.  The daemon holds the pool's read\n"
		"lock while it computes the diff (readers go on, writers wait).\n"
		"Exit status: 0 A and B are the same, 1 they differ, 2 trouble (a path is\n"
		"missing or not a directory, not on a reflinkfs mount, A and B on\n"
		"different mounts, no permission, an I/O error).\n");
}

/* ---- output --------------------------------------------------------------- */

static bool plain(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c == 0x7f || c == '"' || c == '\\')
			return false;
	}
	/* " -> " inside a name would make an R line ambiguous */
	return !memmem(s, n, " -> ", 4) && (n == 0 || (s[0] != ' ' && s[n - 1] != ' '));
}

/* A path as text: as is, or C-quoted when it holds anything unusual. */
static void put_path(const char *s, size_t n)
{
	if (plain(s, n)) {
		fwrite(s, 1, n, stdout);
		return;
	}
	putchar('"');
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		switch (c) {
		case '\n':
			fputs("\\n", stdout);
			break;
		case '\t':
			fputs("\\t", stdout);
			break;
		case '"':
		case '\\':
			printf("\\%c", c);
			break;
		default:
			if (c < 0x20 || c == 0x7f)
				printf("\\%03o", c);
			else
				putchar(c);
		}
	}
	putchar('"');
}

static const char *type_name(uint32_t mode)
{
	switch (mode & S_IFMT) {
	case S_IFREG:
		return "file";
	case S_IFDIR:
		return "dir";
	case S_IFLNK:
		return "symlink";
	case S_IFIFO:
		return "fifo";
	case S_IFSOCK:
		return "socket";
	case S_IFCHR:
		return "chardev";
	case S_IFBLK:
		return "blockdev";
	}
	return "unknown";
}

static void json_changes(uint32_t what)
{
	static const struct {
		uint32_t bit;
		const char *name;
	} meta[] = {{RFS_DIFF_MODE, "mode"},   {RFS_DIFF_UID, "uid"},	  {RFS_DIFF_GID, "gid"},
		    {RFS_DIFF_SIZE, "size"},   {RFS_DIFF_MTIME, "mtime"}, {RFS_DIFF_RDEV, "rdev"}};
	bool first = true;
	printf(",\"changes\":[");
	if (what & RFS_DIFF_DATA) {
		printf("\"data\"");
		first = false;
	}
	if (what & RFS_DIFF_META) {
		printf("%s\"meta\"", first ? "" : ",");
		first = false;
	}
	if (what & RFS_DIFF_XATTR)
		printf("%s\"xattr\"", first ? "" : ",");
	printf("],\"meta\":[");
	first = true;
	for (size_t i = 0; i < sizeof(meta) / sizeof(meta[0]); i++)
		if (what & meta[i].bit) {
			printf("%s\"%s\"", first ? "" : ",", meta[i].name);
			first = false;
		}
	printf("]");
}

/* ---- the diff ---------------------------------------------------------------- */

static int open_dir(const char *path, struct stat *st)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		if (e == ENOTDIR)
			fprintf(stderr, "reflinkfs diff: %s is not a directory (diff compares two "
				"directories)\n", path);
		else
			fprintf(stderr, "reflinkfs diff: cannot open %s: %s\n", path, strerror(e));
		return -1;
	}
	if (fstat(fd, st)) {
		fprintf(stderr, "reflinkfs diff: %s: %s\n", path, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

/* Print the records page by page; returns their number or -1 (message
 * printed). */
static long print_records(int fd, const char *a, bool json, bool *cut)
{
	static struct rfs_ioc_diff_report rep;
	uint64_t n = 0;
	for (;;) {
		memset(&rep, 0, sizeof(rep));
		rep.first = n;
		if (ioctl(fd, RFS_IOC_DIFF_REPORT, &rep)) {
			fprintf(stderr, "\nreflinkfs diff: %s: cannot fetch the result: %s\n", a,
				strerror(errno));
			return -1;
		}
		if (rep.count == 0)
			return (long)n;
		size_t off = 0;
		for (uint32_t k = 0; k < rep.count; k++, n++) {
			struct rfs_ioc_diff_rec h;
			if (off + sizeof(h) > sizeof(rep.buf))
				goto bad;
			memcpy(&h, rep.buf + off, sizeof(h));
			size_t need = (sizeof(h) + h.pathlen + h.oldlen + 7) & ~(size_t)7;
			if (h.pathlen > RFS_IOC_DIFF_PATH_MAX || h.oldlen > RFS_IOC_DIFF_PATH_MAX ||
			    off + need > sizeof(rep.buf))
				goto bad;
			const char *path = (const char *)rep.buf + off + sizeof(h);
			const char *old = path + h.pathlen;
			if (h.flags & RFS_IOC_DIFF_CUT)
				*cut = true;
			if (json) {
				printf("%s\n{\"op\":\"%c\",\"path\":", n ? "," : "", h.op);
				cli_json_strn(stdout, path, h.pathlen);
				if (h.op == RFS_DIFF_RENAMED) {
					printf(",\"old\":");
					cli_json_strn(stdout, old, h.oldlen);
				}
				printf(",\"type\":\"%s\",\"ino\":%llu", type_name(h.mode),
				       (unsigned long long)h.ino);
				if (h.op == RFS_DIFF_MODIFIED || h.op == RFS_DIFF_RENAMED)
					json_changes(h.what);
				printf("}");
			} else if (h.op == RFS_DIFF_RENAMED) {
				printf("R ");
				put_path(old, h.oldlen);
				printf(" -> ");
				put_path(path, h.pathlen);
				putchar('\n');
				if (h.what) {
					printf("M ");
					put_path(path, h.pathlen);
					putchar('\n');
				}
			} else {
				printf("%c ", h.op);
				put_path(path, h.pathlen);
				putchar('\n');
			}
			off += need;
		}
	}
bad:
	fprintf(stderr, "\nreflinkfs diff: %s: malformed result page from the daemon\n", a);
	return -1;
}

int cmd_diff(int argc, char **argv)
{
	bool json = false;
	const char *path[2] = {NULL, NULL};
	int np = 0;

	if (cli_wants_help(argc, argv)) {
		diff_usage(stdout);
		return 0;
	}
	static const struct option longopts[] = {{"json", no_argument, NULL, 'j'}, {0}};
	optind = 0;
	for (int c; (c = cli_getopt(argc, argv, "diff", "", longopts)) != -1;) {
		if (c != 'j')
			return DIFF_TROUBLE;
		json = true;
	}
	for (int i = optind; i < argc; i++) {
		if (np == 2) {
			fprintf(stderr, "reflinkfs diff: too many arguments\n");
			diff_usage(stderr);
			return DIFF_TROUBLE;
		}
		path[np++] = argv[i];
	}
	if (np != 2) {
		diff_usage(stderr);
		return DIFF_TROUBLE;
	}

	struct stat sa, sb;
	int fa = open_dir(path[0], &sa);
	if (fa < 0)
		return DIFF_TROUBLE;
	int fb = open_dir(path[1], &sb);
	if (fb < 0) {
		close(fa);
		return DIFF_TROUBLE;
	}
	int rc = DIFF_TROUBLE;
	if (sa.st_dev != sb.st_dev) {
		fprintf(stderr, "reflinkfs diff: %s and %s are on different mounts (diff compares "
			"two directories of one reflinkfs mount)\n", path[0], path[1]);
		goto out;
	}
	struct rfs_ioc_diff_start st = {.b_fd = fb, .b_ino = sb.st_ino};
	if (ioctl(fa, RFS_IOC_DIFF_START, &st)) {
		int e = errno;
		if (e == ENOTTY || e == ENOSYS || e == EINVAL || e == EOPNOTSUPP)
			fprintf(stderr, "reflinkfs diff: %s is not on a reflinkfs mount\n", path[0]);
		else if (e == EPERM)
			fprintf(stderr, "reflinkfs diff: %s: only root or the user who mounted it may "
				"diff\n", path[0]);
		else if (e == EXDEV)
			fprintf(stderr, "reflinkfs diff: %s is not on the same reflinkfs mount as %s\n",
				path[1], path[0]);
		else if (e == EIO || e == EUCLEAN)
			fprintf(stderr, "reflinkfs diff: %s %s: %s (damaged metadata: the daemon's log "
				"names the block; run `reflinkfs fsck` on the unmounted pool)\n",
				path[0], path[1], strerror(e));
		else
			fprintf(stderr, "reflinkfs diff: %s %s: %s\n", path[0], path[1], strerror(e));
		goto out;
	}
	if (json) {
		printf("{\"a\":");
		cli_json_strn(stdout, path[0], strlen(path[0]));
		printf(",\"b\":");
		cli_json_strn(stdout, path[1], strlen(path[1]));
		printf(",\"identical\":%s,\"added\":%llu,\"removed\":%llu,\"modified\":%llu,"
		       "\"renamed\":%llu,\"nodes_read\":%llu,\"entries\":[",
		       st.st.records ? "false" : "true", (unsigned long long)st.st.added,
		       (unsigned long long)st.st.removed, (unsigned long long)st.st.modified,
		       (unsigned long long)st.st.renamed, (unsigned long long)st.st.node_reads);
	}
	bool cut = false;
	long n = print_records(fa, path[0], json, &cut);
	if (json)
		printf("%s]}\n", n > 0 ? "\n" : "");
	fflush(stdout);
	if (n < 0)
		goto out;
	if ((uint64_t)n != st.st.records) {
		fprintf(stderr, "reflinkfs diff: %s: got %ld of %llu records from the daemon\n",
			path[0], n, (unsigned long long)st.st.records);
		goto out;
	}
	if (cut) {
		fprintf(stderr, "reflinkfs diff: some paths are longer than %d bytes and were cut "
			"short\n", RFS_IOC_DIFF_PATH_MAX);
		goto out;
	}
	rc = n ? DIFF_DIFFERENT : DIFF_SAME;
out:
	close(fa);
	close(fb);
	return rc;
}
