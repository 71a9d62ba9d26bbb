/*
 * reflinkfs snapshot list [--json] [PATH]: the volumes of the mount
 * holding PATH (RFS_IOC_VOLUMES, a few per ioctl, in id order), with
 * their paths below the mount point.
 */
#include "cli/cli.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "reflinkfs/fs.h"

static void list_usage(FILE *f)
{
	fprintf(f,
		"usage: reflinkfs snapshot list [--json] [PATH]\n\n"
		"List the volumes of the reflinkfs mount holding PATH (any file or\n"
		"directory of it; default: the current directory): first the mount's\n"
		"own (id 1), then every snapshot, nested ones included, in the order\n"
		"they were made.  Columns:\n"
		"  ID       the volume id (st_ino of its files is ID << 48 | inode)\n"
		"  CREATED  when the snapshot was taken (local time; - for the mount's\n"
		"           own volume)\n"
		"  RO       ro for a read-only snapshot\n"
		"  SOURCE   the volume the snapshotted directory was in\n"
		"  PATH     where its root is now\n\n"
		"  --json   one JSON object: the mount point and a list of volumes with\n"
		"           id, path, parent (volume holding the root), source_volume,\n"
		"           created (seconds since the epoch and ISO 8601 UTC; null for\n"
		"           the mount's own), readonly\n\n"
		"Root or the user who mounted may list (the list names directories\n"
		"anywhere in the mount).\n"
		"Exit status: 0 listed, 1 failed (no permission, an I/O error),\n"
		"2 usage error, 3 PATH is missing, 4 PATH is not on a reflinkfs mount.\n");
}

/* A volume's root as the user sees it: below the mount point, taking a
 * bind mount of a subdirectory (root other than "/") into account.
 * false when the root is outside what the mount shows. */
static bool user_path(const struct cli_mount *m, const char *rel, char *out, size_t size)
{
	const char *root = strcmp(m->root, "/") ? m->root + 1 : "";
	size_t rl = strlen(root);
	const char *mnt = strcmp(m->mnt, "/") ? m->mnt : "";
	if (rl && (strncmp(rel, root, rl) || (rel[rl] && rel[rl] != '/'))) {
		snprintf(out, size, "(outside %s) /%s", m->mnt, rel);
		return false;
	}
	rel += rl;
	while (*rel == '/')
		rel++;
	if (!*rel)
		snprintf(out, size, "%s", *mnt ? mnt : "/");
	else
		snprintf(out, size, "%s/%s", mnt, rel);
	return true;
}

int cli_snapshot_list(int argc, char **argv)
{
	bool json = false;
	const char *path = NULL;
	if (cli_wants_help(argc, argv)) {
		list_usage(stdout);
		return SNAP_OK;
	}
	static const struct option longopts[] = {{"json", no_argument, NULL, 'j'}, {0}};
	optind = 0;
	for (int c; (c = cli_getopt(argc, argv, "snapshot list", "", longopts)) != -1;) {
		if (c != 'j')
			return SNAP_USAGE;
		json = true;
	}
	for (int i = optind; i < argc; i++) {
		if (path) {
			list_usage(stderr);
			return SNAP_USAGE;
		}
		path = argv[i];
	}
	if (!path)
		path = ".";
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		fprintf(stderr, "reflinkfs snapshot list: cannot open %s: %s\n", path, strerror(e));
		return e == ENOENT || e == ENOTDIR ? SNAP_BADPATH : SNAP_FAILED;
	}
	static struct cli_mount m;
	int ret = cli_fd_mount(fd, &m);
	if (ret || !m.reflinkfs) {
		if (ret)
			fprintf(stderr, "reflinkfs snapshot list: %s: cannot tell which mount it is on: "
				"%s\n", path, strerror(-ret));
		else
			fprintf(stderr, "reflinkfs snapshot list: %s is not on a reflinkfs mount\n",
				path);
		close(fd);
		return ret ? SNAP_FAILED : SNAP_NOTRFS;
	}
	static struct rfs_ioc_volumes v;
	static char where[8192];
	uint64_t after = 0, n = 0;
	int rc = SNAP_OK;
	for (;;) {
		memset(&v, 0, sizeof(v));
		v.after = after;
		if (ioctl(fd, RFS_IOC_VOLUMES, &v)) {
			int e = errno;
			if (json && after)
				printf("]}\n");
			fflush(stdout);
			if (e == ENOTTY || e == ENOSYS || e == EOPNOTSUPP)
				fprintf(stderr, "reflinkfs snapshot list: %s: the daemon of this mount is "
					"too old for snapshots\n", path);
			else if (e == EPERM)
				fprintf(stderr, "reflinkfs snapshot list: %s: only root or the user who "
					"mounted it may list its snapshots\n", path);
			else
				fprintf(stderr, "reflinkfs snapshot list: %s: %s\n", path, strerror(e));
			rc = SNAP_FAILED;
			break;
		}
		if (v.count > RFS_IOC_VOLUMES_MAX) {
			fprintf(stderr, "reflinkfs snapshot list: %s: malformed answer from the daemon\n",
				path);
			rc = SNAP_FAILED;
			break;
		}
		if (after == 0) { /* the first page came: the header */
			if (json) {
				printf("{\"mount\":");
				cli_json_str(stdout, m.mnt);
				printf(",\"volumes\":[");
			} else {
				printf("%-6s %-19s %-2s %-6s %s\n", "ID", "CREATED", "RO", "SOURCE",
				       "PATH");
			}
		}
		for (uint32_t i = 0; i < v.count; i++, n++) {
			v.v[i].path[sizeof(v.v[i].path) - 1] = 0;
			user_path(&m, v.v[i].path, where, sizeof(where));
			time_t t = (time_t)v.v[i].created;
			struct tm tmv;
			char when[40];
			bool ro = v.v[i].flags & RFS_SNAP_RDONLY;
			if (json) {
				gmtime_r(&t, &tmv);
				strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tmv);
				printf("%s\n{\"id\":%llu,\"path\":", n ? "," : "",
				       (unsigned long long)v.v[i].id);
				cli_json_str(stdout, where);
				printf(",\"relative_path\":");
				cli_json_str(stdout, v.v[i].path);
				printf(",\"parent\":%llu,\"source_volume\":%llu,",
				       (unsigned long long)v.v[i].parent,
				       (unsigned long long)v.v[i].source_vol);
				v.v[i].source_path[sizeof(v.v[i].source_path) - 1] = 0;
				/* the source's path when it was made: absolute (by
				 * this mount) and relative to the mount */
				printf("\"source_path\":");
				if (v.v[i].source_path[0]) {
					char of[sizeof(where)];
					user_path(&m, v.v[i].source_path, of, sizeof(of));
					cli_json_str(stdout, of);
					printf(",\"source_relative_path\":");
					cli_json_str(stdout, v.v[i].source_path);
				} else {
					printf("null,\"source_relative_path\":null");
				}
				printf(",");
				if (v.v[i].created)
					printf("\"created\":%lld,\"created_utc\":\"%s\"",
					       (long long)v.v[i].created, when);
				else
					printf("\"created\":null,\"created_utc\":null");
				printf(",\"readonly\":%s}", ro ? "true" : "false");
			} else {
				localtime_r(&t, &tmv);
				if (v.v[i].created)
					strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tmv);
				else
					snprintf(when, sizeof(when), "-"); /* the top volume, mkfs */
				char src[24] = "-";
				if (v.v[i].id != RFS_TOP_VOLUME)
					snprintf(src, sizeof(src), "%llu",
						 (unsigned long long)v.v[i].source_vol);
				v.v[i].source_path[sizeof(v.v[i].source_path) - 1] = 0;
				/* the source as it was named then, from the mount */
				bool from = v.v[i].source_path[0];
				char of[sizeof(where)];
				if (from)
					user_path(&m, v.v[i].source_path, of, sizeof(of));
				printf("%-6llu %-19s %-2s %-6s %s%s%s%s%s\n", (unsigned long long)v.v[i].id,
				       when, ro ? "ro" : "-", src, where,
				       v.v[i].id == RFS_TOP_VOLUME ? " (the mount)" : "",
				       from ? " (of " : "", from ? of : "", from ? ")" : "");
			}
			after = v.v[i].id;
		}
		if (v.count < RFS_IOC_VOLUMES_MAX) {
			if (json)
				printf("%s]}\n", n ? "\n" : "");
			break;
		}
	}
	close(fd);
	return rc;
}
