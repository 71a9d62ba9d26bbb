/*
 * The names of a hard-linked inode (link_names.c), for the change
 * journal and the pre-modification check.  Pool write lock held for
 * every call but link_names_copy (read lock enough) and
 * link_names_release (no lock).
 */
#ifndef RFS_FS_LINK_NAMES_H
#define RFS_FS_LINK_NAMES_H

#include "fs/fs_internal.h"

/* A directory on the way to a name: its volume and inode number. */
struct link_dir {
	uint64_t vol, ino;
};

/* One name: its path from the mount root, and the directories from the
 * root (dirs[0]) to the one holding it (dirs[ndirs - 1]). */
struct link_name {
	char *path;
	struct link_dir *dirs;
	size_t ndirs;
};

/*
 * The names of inode ino of volume vol (a link-table inode) in *out, n
 * of them (0 for an orphan).  Valid until the next call or
 * link_names_changed.  One walk of the directories holding hard links
 * finds the names of every hard-linked inode of the volume, kept until a
 * name changes.
 */
int link_names_get(rfs_fs *fs, uint64_t vol, uint64_t ino, const struct link_name **out,
		   size_t *n);
/* The same as link_names_get, with the pool's read or write lock held:
 * a copy of the names (caller frees it with link_names_release), as a
 * reader's answer may be evicted by another reader's lookup. */
int link_names_copy(rfs_fs *fs, uint64_t vol, uint64_t ino, struct link_name **out,
		    size_t *n);
void link_names_release(struct link_name *names, size_t n);
/* A name of a hard-linked inode may have changed (link, unlink, rename,
 * snapshot made or deleted): forget the cached answers. */
void link_names_changed(rfs_fs *fs);
/* Walks made since open (tests: changes to many hard-linked inodes
 * between two name changes cost one). */
uint64_t link_names_walks(rfs_fs *fs);
/* At close. */
void link_names_free(rfs_fs *fs);

#endif
