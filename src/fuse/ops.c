/*
 * FUSE low-level operations: each one unpacks the request, calls the
 * matching rfs_fs_* function and replies.  No filesystem logic here.
 */
#include "fuse/rfs_fuse.h"
#include "fuse/rbuf.h"
#include "fuse/fh_session.h"
#include "fuse/watch_server.h"

#include <pthread.h>

#include "reflinkfs/journal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "reflinkfs/log.h"

static struct rfs_mount *M(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static rfs_fs *FS(fuse_req_t req)
{
	return M(req)->fs;
}

static void ctx_of(fuse_req_t req, struct rfs_ctx *c)
{
	const struct fuse_ctx *fc = fuse_req_ctx(req);
	c->uid = fc->uid;
	c->gid = fc->gid;
	c->pid = (uint32_t)fc->pid;
	c->umask = fc->umask;
	c->groups = NULL;
	c->ngroups = 0;
	c->cap_fsetid = false;
}

/* What the kernel keeps in file handles next to the node id; the root's
 * is 0 (the kernel made its inode with 0 at mount, and a reply with
 * another one would mark it stale). */
static uint64_t generation_of(rfs_nodeid n)
{
	return n == RFS_ROOT_NODE ? 0 : RFS_GENERATION;
}

static void reply_entry(fuse_req_t req, int ret, rfs_nodeid n, const struct stat *st)
{
	if (ret) {
		fuse_reply_err(req, -ret);
		return;
	}
	struct fuse_entry_param e;
	memset(&e, 0, sizeof(e));
	e.ino = n;
	e.generation = generation_of(n);
	e.attr = *st;
	e.attr_timeout = M(req)->timeout;
	e.entry_timeout = M(req)->timeout;
	if (fuse_reply_entry(req, &e) == -ENOENT) /* interrupted: undo */
		rfs_fs_forget(FS(req), n, 1);
}

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	struct rfs_mount *m = userdata;
	if (m->writeback && (conn->capable & FUSE_CAP_WRITEBACK_CACHE))
		conn->want |= FUSE_CAP_WRITEBACK_CACHE;
	else
		conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
	/* v1 would have the daemon clear set-user-ID on every write by any
	 * caller; v2 (negotiated past libfuse 3.14 in killpriv.c) says when. */
	conn->want &= ~(unsigned)FUSE_CAP_HANDLE_KILLPRIV;
	conn->want &= ~(unsigned)FUSE_CAP_ATOMIC_O_TRUNC;
	/* Requests are read with read(2) through the hook that answers
	 * FUSE_TMPFILE (tmpfile.c), never spliced past it. */
	conn->want &= ~(unsigned)FUSE_CAP_SPLICE_READ;
	/* Replies go through the same hook (a request that came through an
	 * io_uring ring is answered in its ring entry: uring.c), never
	 * spliced to /dev/fuse past it. */
	conn->want &= ~(unsigned)(FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE);
	/* Only this mount changes the data, and every change that bypasses
	 * the kernel's page cache (clone ioctl) invalidates explicitly, so
	 * the kernel must not drop a file's cached pages whenever it sees a
	 * new mtime: with auto_inval_data the first stat after writing a
	 * 4 GiB file spent 150 ms dropping 1M pages, and cp stats first. */
	conn->want &= ~(unsigned)FUSE_CAP_AUTO_INVAL_DATA;
	/* POSIX ACLs: the kernel enforces them; we inherit default ACLs and
	 * apply the umask ourselves (DONT_MASK) when there is none. */
	if (m->acl && (conn->capable & FUSE_CAP_POSIX_ACL) && (conn->capable & FUSE_CAP_DONT_MASK))
		conn->want |= FUSE_CAP_POSIX_ACL | FUSE_CAP_DONT_MASK;
	/* File handles (open_by_handle_at, NFS) survive the kernel
	 * forgetting the inode: it then asks LOOKUP(node id, "."), which
	 * the fs answers by inode number. */
	if (conn->capable & FUSE_CAP_EXPORT_SUPPORT)
		conn->want |= FUSE_CAP_EXPORT_SUPPORT;
	if (conn->capable & FUSE_CAP_IOCTL_DIR)
		conn->want |= FUSE_CAP_IOCTL_DIR;
	if (conn->capable & FUSE_CAP_PARALLEL_DIROPS)
		conn->want |= FUSE_CAP_PARALLEL_DIROPS;
	/* A symlink's target never changes (a new one is a new inode), so
	 * the kernel may keep it in the page cache: no READLINK when warm. */
	if (conn->capable & FUSE_CAP_CACHE_SYMLINKS)
		conn->want |= FUSE_CAP_CACHE_SYMLINKS;
	/* Every readdir is a READDIRPLUS, not only the first of a listing
	 * (READDIRPLUS_AUTO): past the first reply (~190 entries for a
	 * 32 KiB getdents) the kernel otherwise sends plain READDIR, and a
	 * caller that then stats each entry whose attributes it had dropped
	 * (any ACL set does) costs a GETATTR per entry: 1,008 of them in
	 * `cp -a` inside the mount of bench/fs/meta.sh's tree, whose top
	 * directory has 1,200 entries (docs/ARCHITECTURE.md, "Where the
	 * daemon's time goes for `cp -a`"). */
	if (conn->capable & FUSE_CAP_READDIRPLUS) {
		conn->want |= FUSE_CAP_READDIRPLUS;
		conn->want &= ~(unsigned)FUSE_CAP_READDIRPLUS_AUTO;
	}
	conn->max_write = 1u << 20;
	conn->max_readahead = 1u << 20;
	conn->time_gran = 1;
	/* Asynchronous requests (libaio O_DIRECT I/O, readahead) the kernel
	 * lets through at once.  Its default, 12, is below one fio job's
	 * queue depth of 16: the submitter then slept in io_submit until a
	 * reply woke it, a wake-up and a context switch per WRITE (issue 9,
	 * docs/ARCHITECTURE.md "Locking model").  The kernel caps what an
	 * unprivileged mount may ask (max_user_bgreq). */
	conn->max_background = RFS_FUSE_MAX_BACKGROUND;
	conn->congestion_threshold = RFS_FUSE_MAX_BACKGROUND * 3 / 4;
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	rfs_nodeid n;
	struct stat st;
	int ret = rfs_fs_lookup(FS(req), parent, name, &n, &st);
	if (ret == -ENOENT) {
		/* negative entry, cached for the entry timeout */
		struct fuse_entry_param e;
		memset(&e, 0, sizeof(e));
		e.entry_timeout = M(req)->timeout;
		fuse_reply_entry(req, &e);
		return;
	}
	reply_entry(req, ret, n, &st);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	rfs_fs_forget(FS(req), ino, nlookup);
	fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *f)
{
	for (size_t i = 0; i < count; i++)
		rfs_fs_forget(FS(req), f[i].ino, f[i].nlookup);
	fuse_reply_none(req);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)fi;
	struct stat st;
	int ret = rfs_fs_getattr(FS(req), ino, &st);
	if (ret)
		fuse_reply_err(req, -ret);
	else
		fuse_reply_attr(req, &st, M(req)->timeout);
}

_Static_assert(RFS_SET_MODE == FUSE_SET_ATTR_MODE && RFS_SET_UID == FUSE_SET_ATTR_UID &&
		       RFS_SET_GID == FUSE_SET_ATTR_GID && RFS_SET_SIZE == FUSE_SET_ATTR_SIZE &&
		       RFS_SET_ATIME == FUSE_SET_ATTR_ATIME &&
		       RFS_SET_MTIME == FUSE_SET_ATTR_MTIME &&
		       RFS_SET_ATIME_NOW == FUSE_SET_ATTR_ATIME_NOW &&
		       RFS_SET_MTIME_NOW == FUSE_SET_ATTR_MTIME_NOW &&
		       RFS_SET_CTIME == FUSE_SET_ATTR_CTIME,
	       "fs setattr bits are FUSE's");

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		       struct fuse_file_info *fi)
{
	(void)fi;
	struct stat st;
	/* Truncate by a caller without CAP_FSETID, chown of a file
	 * (FATTR_KILL_SUIDGID, killpriv.c); the reply carries the result. */
	bool kill = rfs_fuse_killpriv_asked();
	/* The fs's RFS_SET_* bits are FUSE's own (checked below), so the
	 * request's bits pass through, masked to the ones the fs knows. */
	int set = to_set & (RFS_SET_MODE | RFS_SET_UID | RFS_SET_GID | RFS_SET_SIZE |
			    RFS_SET_ATIME | RFS_SET_MTIME | RFS_SET_ATIME_NOW |
			    RFS_SET_MTIME_NOW | RFS_SET_CTIME);
	int ret = rfs_fs_setattr(FS(req), ino, attr, set, &st);
	if (!ret && kill && !(ret = rfs_fuse_kill_priv(req, ino, false)))
		ret = rfs_fs_getattr(FS(req), ino, &st);
	if (ret)
		fuse_reply_err(req, -ret);
	else
		fuse_reply_attr(req, &st, M(req)->timeout);
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	char buf[RFS_SYMLINK_MAX + 1];
	int ret = rfs_fs_readlink(FS(req), ino, buf, sizeof(buf));
	if (ret < 0)
		fuse_reply_err(req, -ret);
	else
		fuse_reply_readlink(req, buf);
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		     dev_t rdev)
{
	struct rfs_ctx c;
	rfs_nodeid n;
	struct stat st;
	ctx_of(req, &c);
	int ret = rfs_fs_mknod(FS(req), &c, parent, name, mode, rdev, &n, &st);
	reply_entry(req, ret, n, &st);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	struct rfs_ctx c;
	rfs_nodeid n;
	struct stat st;
	ctx_of(req, &c);
	int ret = rfs_fs_mkdir(FS(req), &c, parent, name, mode, &n, &st);
	reply_entry(req, ret, n, &st);
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent,
		       const char *name)
{
	struct rfs_ctx c;
	rfs_nodeid n;
	struct stat st;
	ctx_of(req, &c);
	int ret = rfs_fs_symlink(FS(req), &c, parent, name, link, &n, &st);
	reply_entry(req, ret, n, &st);
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	fuse_reply_err(req, -rfs_fs_unlink(FS(req), parent, name));
}

static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	fuse_reply_err(req, -rfs_fs_rmdir(FS(req), parent, name));
}

_Static_assert(RFS_RENAME_NOREPLACE == RENAME_NOREPLACE &&
		       RFS_RENAME_EXCHANGE == RENAME_EXCHANGE &&
		       RFS_RENAME_WHITEOUT == RENAME_WHITEOUT,
	       "fs rename flags are renameat2's");

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
		      fuse_ino_t newparent, const char *newname, unsigned int flags)
{
	struct rfs_ctx c;
	ctx_of(req, &c);
	fuse_reply_err(req, -rfs_fs_rename(FS(req), &c, parent, name, newparent, newname, flags));
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent,
		    const char *newname)
{
	struct stat st;
	int ret = rfs_fs_link(FS(req), ino, newparent, newname, &st);
	reply_entry(req, ret, ino, &st);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	bool kill = rfs_fuse_killpriv_asked(); /* O_TRUNC by a caller without CAP_FSETID */
	/* As on a read-only mount: EROFS at open, not at the first write or
	 * at a shared mapping's write-back (the kernel checks only the
	 * mount's own read-only flag). */
	int ret = (fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)
			  ? rfs_fs_writable(FS(req), ino)
			  : 0;
	if (!ret)
		ret = rfs_fs_open_node(FS(req), ino);
	if (!ret && (fi->flags & O_TRUNC)) {
		struct stat st = {0};
		ret = rfs_fs_setattr(FS(req), ino, &st, RFS_SET_SIZE, NULL);
		if (!ret && kill)
			ret = rfs_fuse_kill_priv(req, ino, true);
		if (ret)
			rfs_fs_release(FS(req), ino);
	}
	if (ret) {
		fuse_reply_err(req, -ret);
		return;
	}
	/* Only this mount changes the data, so the page cache stays valid. */
	fi->keep_cache = 1;
	/* FOPEN_NOFLUSH for read-only descriptors: their close() then does
	 * not write back the file's dirty pages (nor take its inode lock),
	 * which could wait for a page write-back that itself waits for a
	 * blocking watch's ack, e.g. in the `reflinkfs clone` of the file
	 * that a `reflinkfs watch --exec` runs (docs/WATCH.md).  Closing a
	 * read-only descriptor promises nothing about other writers' pages. */
	if ((fi->flags & O_ACCMODE) == O_RDONLY)
		fi->noflush = 1;
	fi->fh = (uint64_t)fi->flags; /* ioctls get fh, not the open flags */
	if (fuse_reply_open(req, fi) == -ENOENT)
		rfs_fs_release(FS(req), ino);
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		      struct fuse_file_info *fi)
{
	struct rfs_ctx c;
	rfs_nodeid n;
	struct stat st;
	ctx_of(req, &c);
	/* CREATE's FUSE_OPEN_KILL_SUIDGID (O_TRUNC on a name another client
	 * made meanwhile) has nothing to clear: the file is new, or EEXIST. */
	int ret = rfs_fs_create(FS(req), &c, parent, name, mode, &n, &st);
	if (ret) {
		fuse_reply_err(req, -ret);
		return;
	}
	rfs_fs_open_node(FS(req), n);
	struct fuse_entry_param e;
	memset(&e, 0, sizeof(e));
	e.ino = n;
	e.generation = generation_of(n);
	e.attr = st;
	e.attr_timeout = M(req)->timeout;
	e.entry_timeout = M(req)->timeout;
	fi->keep_cache = 1;
	fi->fh = (uint64_t)fi->flags;
	if (fuse_reply_create(req, &e, fi) == -ENOENT) {
		rfs_fs_release(FS(req), n);
		rfs_fs_forget(FS(req), n, 1);
	}
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	(void)fi;
	uint64_t t0[2];
	rfs_fuse_readwaits_start(t0);
	char *buf = rfs_fuse_read_buf(size);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	ssize_t n = rfs_fs_read(FS(req), ino, buf, size, (uint64_t)off);
	/* Before the reply: a thread preempted after it counts no time the
	 * reader waited. */
	rfs_fuse_readwaits_note(t0);
	if (n < 0)
		fuse_reply_err(req, (int)-n);
	else
		fuse_reply_buf(req, buf, (size_t)n);
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size,
		     off_t off, struct fuse_file_info *fi)
{
	(void)fi;
	/* A writer without CAP_FSETID (FUSE_WRITE_KILL_SUIDGID): clear
	 * before the data changes, as file_remove_privs does. */
	if (rfs_fuse_killpriv_asked()) {
		int ret = rfs_fuse_kill_priv(req, ino, true);
		if (ret) {
			fuse_reply_err(req, -ret);
			return;
		}
	}
	ssize_t n = rfs_fs_write(FS(req), ino, buf, size, (uint64_t)off);
	if (n < 0)
		fuse_reply_err(req, (int)-n);
	else
		fuse_reply_write(req, (size_t)n);
}

/* Nothing to do at close: POSIX locks are the kernel's, data went out
 * with each write (the kernel writes dirty pages back before it would
 * send FLUSH, also after ENOSYS).  ENOSYS makes the kernel stop sending
 * FLUSH for good: one round trip less per close(). */
static void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	(void)fi;
	fuse_reply_err(req, ENOSYS);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)fi;
	rfs_fs_release(FS(req), ino);
	fuse_reply_err(req, 0);
}

/* Commit for fsync and `reflinkfs sync`.  A frozen pool (remounted
 * read-only) was committed when it froze: nothing to do. */
static int sync_pool(fuse_req_t req)
{
	if (atomic_load(&M(req)->frozen))
		return 0;
	return rfs_fs_sync(FS(req));
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	(void)datasync;
	(void)fi;
	/* Frozen: nothing is queued (settled when it froze). */
	int ret = atomic_load(&M(req)->frozen) ? 0 : rfs_fs_fsync(FS(req), ino);
	fuse_reply_err(req, -ret);
}

/* A directory needs nothing at open or close: ENOSYS makes the kernel
 * stop sending OPENDIR and RELEASEDIR for good (two round trips less per
 * directory a walk opens) and open every directory as if the answer had
 * been FOPEN_CACHE_DIR | FOPEN_KEEP_CACHE: the kernel keeps the listing in
 * the directory's page cache and answers later readdirs from it.  It
 * drops it itself when it changes the directory (create, unlink, rename:
 * the directory's version moves); changes it does not see invalidate the
 * directory inode.  The ioctls that keep state between requests (scrub,
 * diff, du) find it by directory and calling process (fh_session.h). */
static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	(void)fi;
	fuse_reply_err(req, ENOSYS);
}

struct dirbuf {
	fuse_req_t req;
	char *buf;
	size_t size, pos;
	bool plus;
};

static int dir_add(void *arg, const char *name, const struct stat *st, rfs_nodeid node,
		   uint64_t next)
{
	struct dirbuf *d = arg;
	size_t need;
	if (d->plus) {
		struct fuse_entry_param e;
		memset(&e, 0, sizeof(e));
		e.ino = node;
		e.generation = generation_of(node);
		e.attr = *st;
		e.attr_timeout = M(d->req)->timeout;
		e.entry_timeout = M(d->req)->timeout;
		need = fuse_add_direntry_plus(d->req, d->buf + d->pos, d->size - d->pos, name,
					      &e, (off_t)next);
	} else {
		need = fuse_add_direntry(d->req, d->buf + d->pos, d->size - d->pos, name, st,
					 (off_t)next);
	}
	if (need > d->size - d->pos)
		return 1;
	d->pos += need;
	return 0;
}

static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, bool plus)
{
	struct dirbuf d = {req, malloc(size), size, 0, plus};
	if (!d.buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	int ret = rfs_fs_readdir(FS(req), ino, (uint64_t)off, plus, dir_add, &d);
	if (ret && d.pos == 0)
		fuse_reply_err(req, -ret);
	else
		fuse_reply_buf(req, d.buf, d.pos);
	free(d.buf);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	(void)fi;
	do_readdir(req, ino, size, off, false);
}

static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			   struct fuse_file_info *fi)
{
	(void)fi;
	do_readdir(req, ino, size, off, true);
}

static void op_destroy(void *userdata)
{
	(void)userdata;
	rfs_fuse_scrub_release_all();
	rfs_fuse_diff_release_all();
	rfs_fuse_du_release_all();
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	(void)ino;
	struct statvfs st;
	int ret = rfs_fs_statfs(FS(req), &st);
	if (ret)
		fuse_reply_err(req, -ret);
	else
		fuse_reply_statfs(req, &st);
}

static void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
			size_t size, int flags)
{
	struct rfs_ctx c;
	gid_t *groups = NULL;
	ctx_of(req, &c);
	/* Only an access ACL looks at groups and capabilities (the set-gid
	 * rule), and only for a set-gid file of a group other than the
	 * caller's: finding them costs two reads of /proc (~35 us each,
	 * for every file `cp -a` copies, which sets the ACL to carry the
	 * mode).  Should a chmod g+s race in between, the fs sees no groups
	 * and no CAP_FSETID and clears the bit: the safe side. */
	struct stat st;
	if (!strcmp(name, "system.posix_acl_access") && !rfs_fs_getattr(FS(req), ino, &st) &&
	    (st.st_mode & S_ISGID) && st.st_gid != c.gid)
		groups = rfs_caller_creds(req, &c);
	int ret = rfs_fs_setxattr(FS(req), &c, ino, name, value, size, flags);
	free(groups);
	fuse_reply_err(req, -ret);
}

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	char *buf = size ? malloc(size) : NULL;
	if (size && !buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	ssize_t n = rfs_fs_getxattr(FS(req), ino, name, buf, size);
	/* ls -l asks every file for its SELinux label (lgetfilecon), one
	 * round trip each, the kernel caching no xattr answer; on "not
	 * supported" it stops asking for the whole device (coreutils'
	 * getfilecon_cache).  With no SELinux on the host no label means
	 * anything to the kernel, so an absent one is "not supported";
	 * labels that were set are still stored and returned. */
	if (n == -ENODATA && M(req)->no_selinux && !strcmp(name, "security.selinux"))
		n = -EOPNOTSUPP;
	if (n < 0)
		fuse_reply_err(req, (int)-n);
	else if (size == 0)
		fuse_reply_xattr(req, (size_t)n);
	else
		fuse_reply_buf(req, buf, (size_t)n);
	free(buf);
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	char *buf = size ? malloc(size) : NULL;
	if (size && !buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	ssize_t n = rfs_fs_listxattr(FS(req), ino, buf, size);
	if (n < 0)
		fuse_reply_err(req, (int)-n);
	else if (size == 0)
		fuse_reply_xattr(req, (size_t)n);
	else
		fuse_reply_buf(req, buf, (size_t)n);
	free(buf);
}

static void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	fuse_reply_err(req, -rfs_fs_removexattr(FS(req), ino, name));
}

static void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
			 struct fuse_file_info *fi)
{
	(void)fi;
	if (off < 0 || len <= 0) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	/* The kernel sends no kill bit with FALLOCATE and, with
	 * FUSE_HANDLE_KILLPRIV_V2, no longer clears the bits itself. */
	int ret = rfs_fuse_kill_priv_unless_fsetid(req, ino);
	if (!ret)
		ret = rfs_fs_fallocate(FS(req), ino, mode, (uint64_t)off, (uint64_t)len);
	fuse_reply_err(req, -ret);
}

static void op_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence,
		     struct fuse_file_info *fi)
{
	(void)fi;
	uint64_t out;
	if (off < 0) {
		fuse_reply_err(req, ENXIO);
		return;
	}
	int ret = rfs_fs_lseek(FS(req), ino, (uint64_t)off, whence, &out);
	if (ret)
		fuse_reply_err(req, -ret);
	else
		fuse_reply_lseek(req, (off_t)out);
}

static void op_copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in,
			       struct fuse_file_info *fi_in, fuse_ino_t ino_out,
			       off_t off_out, struct fuse_file_info *fi_out, size_t len,
			       int flags)
{
	(void)fi_in;
	(void)fi_out;
	if (flags) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	/* The kernel's reply carries a 32-bit count. */
	if (len > 0xfffff000u)
		len = 0xfffff000u;
	/* As for fallocate: no kill bit comes with COPY_FILE_RANGE. */
	ssize_t n = rfs_fuse_kill_priv_unless_fsetid(req, ino_out);
	if (!n)
		n = rfs_fs_clone_range(FS(req), ino_in, (uint64_t)off_in, ino_out,
				       (uint64_t)off_out, len);
	if (n < 0)
		fuse_reply_err(req, (int)-n);
	else
		fuse_reply_write(req, (size_t)n);
}

/* ---- ioctls ----------------------------------------------------------------- */

struct stat_acc {
	struct rfs_ioc_stat *s;
	struct rfs_ioc_extents *x;
};

static int stat_ext(void *arg, const struct rfs_extent_info *e)
{
	struct stat_acc *a = arg;
	if (a->s) {
		a->s->extents++;
		a->s->blocks += e->length / RFS_BLOCK_SIZE;
		a->s->shared_blocks += e->shared;
		if (e->unwritten)
			a->s->unwritten_blocks += e->length / RFS_BLOCK_SIZE;
		return 0;
	}
	if (e->logical + e->length <= a->x->from)
		return 0;
	if (a->x->count == RFS_IOC_EXTENTS_MAX)
		return 1;
	unsigned i = a->x->count++;
	a->x->e[i].logical = e->logical;
	a->x->e[i].physical = e->physical;
	a->x->e[i].length = e->length;
	a->x->e[i].shared = e->shared;
	a->x->e[i].flags = (e->unwritten ? 1 : 0) | (e->inline_data ? 2 : 0);
	return 0;
}

static mode_t ino_mode(fuse_req_t req, fuse_ino_t ino)
{
	struct stat st;
	return rfs_fs_getattr(FS(req), ino, &st) ? 0 : st.st_mode;
}

/* Answer an ioctl: the error when ret (a negative errno), else the size
 * bytes at out. */
static void reply_ioctl(fuse_req_t req, int ret, const void *out, size_t size)
{
	if (ret)
		fuse_reply_err(req, -ret);
	else
		fuse_reply_ioctl(req, 0, out, size);
}

/* Answer an ioctl whose reply was built in out (malloc'ed, size bytes):
 * out on success, else the error; out is freed. */
static void reply_out(fuse_req_t req, int ret, void *out, size_t size)
{
	reply_ioctl(req, ret, out, size);
	free(out);
}

static void op_ioctl(fuse_req_t req, fuse_ino_t ino, unsigned int cmd, void *arg,
		     struct fuse_file_info *fi, unsigned flags, const void *in_buf,
		     size_t in_bufsz, size_t out_bufsz)
{
	(void)arg;
	if (flags & FUSE_IOCTL_COMPAT) {
		fuse_reply_err(req, ENOSYS);
		return;
	}
	switch (cmd) {
	case RFS_IOC_CLONE: {
		struct rfs_ioc_clone c;
		rfs_nodeid src;
		if (in_bufsz < sizeof(c)) {
			fuse_reply_err(req, EINVAL);
			return;
		}
		if (!fi || (fi->fh & O_ACCMODE) == O_RDONLY) {
			fuse_reply_err(req, EBADF);
			return;
		}
		memcpy(&c, in_buf, sizeof(c));
		int ret = rfs_caller_holds_fd(M(req), fuse_req_ctx(req)->pid, c.src_fd, c.src_ino);
		if (!ret)
			ret = rfs_fs_find_ino(FS(req), c.src_ino, &src);
		if (ret == -ENOENT)
			ret = -EXDEV;
		/* New content: clear what a write would (the kernel does
		 * nothing of the kind for an ioctl). */
		if (!ret)
			ret = rfs_fuse_kill_priv_unless_fsetid(req, ino);
		/* The kernel writes the file's dirty pages (writeback
		 * cache) back when it drops them: before the clone, or they
		 * would land on the new content.  Those WRITEs are served by
		 * other workers while this one waits.  So may the second
		 * invalidation (pages a writer dirtied meanwhile): one wait
		 * around both, or a stop (workers.c) would not know of it. */
		if (!ret) {
			rfs_fuse_wait_begin();
			fuse_lowlevel_notify_inval_inode(M(req)->se, ino, 0, 0);
			ret = rfs_fs_clone_file(FS(req), src, ino);
			if (!ret)
				fuse_lowlevel_notify_inval_inode(M(req)->se, ino, 0, 0);
			rfs_fuse_wait_end();
		}
		reply_ioctl(req, ret, NULL, 0);
		return;
	}
	case RFS_IOC_STAT: {
		struct rfs_ioc_stat s;
		struct stat st;
		struct stat_acc a = {&s, NULL};
		memset(&s, 0, sizeof(s));
		if (out_bufsz < sizeof(s)) {
			fuse_reply_err(req, EINVAL);
			return;
		}
		int ret = rfs_fs_getattr(FS(req), ino, &st);
		s.size = (uint64_t)st.st_size;
		if (!ret)
			ret = rfs_fs_extents(FS(req), ino, stat_ext, &a);
		reply_ioctl(req, ret, &s, sizeof(s));
		return;
	}
	case RFS_IOC_EXTENTS: {
		struct rfs_ioc_extents *x = calloc(1, sizeof(*x));
		struct stat_acc a = {NULL, x};
		if (!x || in_bufsz < sizeof(*x) || out_bufsz < sizeof(*x)) {
			free(x);
			fuse_reply_err(req, x ? EINVAL : ENOMEM);
			return;
		}
		memcpy(x, in_buf, sizeof(*x));
		x->count = 0;
		int ret = rfs_fs_extents(FS(req), ino, stat_ext, &a);
		reply_out(req, ret, x, sizeof(*x));
		return;
	}
	case RFS_IOC_SCRUB_STEP:
	case RFS_IOC_SCRUB_REPORT: {
		/* On a directory only. */
		void *out = out_bufsz ? calloc(1, out_bufsz) : NULL;
		int ret = !S_ISDIR(ino_mode(req, ino)) ? -ENOTDIR : out ? 0 : -ENOMEM;
		struct fh_key key;
		fh_key_of(ino, fuse_req_ctx(req)->pid, &key);
		if (!ret)
			ret = rfs_fuse_scrub_ioctl(FS(req), fuse_req_ctx(req), &key, cmd, in_buf,
						   in_bufsz, out, out_bufsz);
		reply_out(req, ret, out, out_bufsz);
		return;
	}
	case RFS_IOC_CHANGES: {
		void *out = out_bufsz ? calloc(1, out_bufsz) : NULL;
		int ret = !S_ISDIR(ino_mode(req, ino)) ? -ENOTDIR : out ? 0 : -ENOMEM;
		if (!ret)
			ret = rfs_fuse_changes_ioctl(req, FS(req), fuse_req_ctx(req), ino, in_buf,
						     in_bufsz, out, out_bufsz);
		reply_out(req, ret, out, out_bufsz);
		return;
	}
	case RFS_IOC_JOURNAL_INFO: {
		void *out = out_bufsz ? calloc(1, out_bufsz) : NULL;
		int ret = out ? rfs_fuse_journal_info_ioctl(FS(req), fuse_req_ctx(req), in_buf,
							    in_bufsz, out, out_bufsz)
			      : -ENOMEM;
		reply_out(req, ret, out, out_bufsz);
		return;
	}
	case RFS_IOC_DIFF_START:
	case RFS_IOC_DIFF_REPORT: {
		/* On a directory only (A); B comes as a descriptor of the
		 * caller, checked like the clone source. */
		void *out = out_bufsz ? calloc(1, out_bufsz) : NULL;
		int ret = !S_ISDIR(ino_mode(req, ino)) ? -ENOTDIR : out ? 0 : -ENOMEM;
		struct fh_key key;
		fh_key_of(ino, fuse_req_ctx(req)->pid, &key);
		rfs_nodeid b = 0;
		if (!ret && cmd == RFS_IOC_DIFF_START) {
			struct rfs_ioc_diff_start s;
			if (in_bufsz < sizeof(s)) {
				ret = -EINVAL;
			} else {
				memcpy(&s, in_buf, sizeof(s));
				ret = rfs_caller_holds_fd(M(req), fuse_req_ctx(req)->pid, s.b_fd, s.b_ino);
				if (!ret)
					ret = rfs_fs_find_ino(FS(req), s.b_ino, &b);
				if (ret == -ENOENT)
					ret = -EXDEV;
			}
		}
		if (!ret)
			ret = rfs_fuse_diff_ioctl(FS(req), fuse_req_ctx(req), &key, cmd, ino, b,
						  in_buf, in_bufsz, out, out_bufsz);
		reply_out(req, ret, out, out_bufsz);
		return;
	}
	case RFS_IOC_MOUNT_STATE: {
		int ret = rfs_fuse_follow_mount_state(M(req));
		reply_ioctl(req, ret, NULL, 0);
		return;
	}
	case RFS_IOC_DU_STEP: {
		/* On a directory only: PATH is the directory or an entry of
		 * it (src/fuse/du.c). */
		struct rfs_ioc_du_step s;
		int ret = !S_ISDIR(ino_mode(req, ino)) ? -ENOTDIR : 0;
		struct fh_key key;
		fh_key_of(ino, fuse_req_ctx(req)->pid, &key);
		if (!ret && (in_bufsz < sizeof(s) || out_bufsz < sizeof(s)))
			ret = -EINVAL;
		if (!ret) {
			memcpy(&s, in_buf, sizeof(s));
			ret = rfs_fuse_du_ioctl(FS(req), fuse_req_ctx(req), &key, ino, &s);
		}
		reply_ioctl(req, ret, &s, sizeof(s));
		return;
	}
	case RFS_IOC_SYNC: {
		int ret = sync_pool(req);
		reply_ioctl(req, ret, NULL, 0);
		return;
	}
	case RFS_IOC_SNAPSHOT:
	case RFS_IOC_SNAPSHOT_DELETE:
	case RFS_IOC_VOLUMES:
		rfs_fuse_snapshot_ioctl(req, ino, cmd, in_buf, in_bufsz, out_bufsz);
		return;
	case RFS_IOC_RECLAIM: {
		struct rfs_ioc_reclaim r;
		struct rfs_fs_reclaim_stat rs;
		struct statvfs sv;
		memset(&r, 0, sizeof(r));
		int ret = out_bufsz < sizeof(r) ? -EINVAL : rfs_fs_reclaim_status(FS(req), &rs);
		if (!ret)
			ret = rfs_fs_statfs(FS(req), &sv);
		if (!ret) {
			r.blocks = rs.blocks;
			r.trees = rs.trees;
			r.free_blocks = sv.f_bfree;
		}
		reply_ioctl(req, ret, &r, sizeof(r));
		return;
	}
	case RFS_IOC_WATCH_ADDR: {
		struct rfs_ioc_watch_addr a;
		int ret = out_bufsz < sizeof(a) ? -EINVAL : rfs_watch_server_addr(M(req)->watch_srv, &a);
		reply_ioctl(req, ret, &a, sizeof(a));
		return;
	}
	case RFS_IOC_WATCH_MARK: {
		/* On a descriptor of the node to mark (watch_server.c). */
		struct rfs_ioc_watch_mark w;
		int ret = in_bufsz < sizeof(w) || out_bufsz < sizeof(w) ? -EINVAL : 0;
		if (!ret) {
			memcpy(&w, in_buf, sizeof(w));
			ret = rfs_watch_server_mark(M(req)->watch_srv, req, ino, &w);
		}
		reply_ioctl(req, ret, &w, sizeof(w));
		return;
	}
	case RFS_IOC_REQ_STATS: {
		struct rfs_ioc_req_stats s;
		int ret = out_bufsz < sizeof(s) ? -EINVAL : 0;
		if (!ret)
			rfs_fuse_reqstats_get(&s);
		reply_ioctl(req, ret, &s, sizeof(s));
		return;
	}
	case RFS_IOC_REQ_TIMES: {
		struct rfs_ioc_req_times s;
		int ret = out_bufsz < sizeof(s) ? -EINVAL : 0;
		if (!ret)
			rfs_fuse_reqstats_times(&s);
		reply_ioctl(req, ret, &s, sizeof(s));
		return;
	}
	case RFS_IOC_READ_WAITS: {
		struct rfs_ioc_read_waits s;
		int ret = in_bufsz < sizeof(uint32_t) || out_bufsz < sizeof(s) ? -EINVAL : 0;
		if (!ret) {
			uint32_t flags;
			memcpy(&flags, in_buf, sizeof(flags));
			rfs_fuse_readwaits_get(FS(req), &s, flags);
		}
		reply_ioctl(req, ret, &s, sizeof(s));
		return;
	}
	default:
		fuse_reply_err(req, ENOTTY);
	}
}

const struct fuse_lowlevel_ops rfs_fuse_ops = {
	.init = op_init,
	.destroy = op_destroy,
	.lookup = op_lookup,
	.forget = op_forget,
	.forget_multi = op_forget_multi,
	.getattr = op_getattr,
	.setattr = op_setattr,
	.readlink = op_readlink,
	.mknod = op_mknod,
	.mkdir = op_mkdir,
	.unlink = op_unlink,
	.rmdir = op_rmdir,
	.symlink = op_symlink,
	.rename = op_rename,
	.link = op_link,
	.open = op_open,
	.read = op_read,
	.write = op_write,
	.flush = op_flush,
	.release = op_release,
	.fsync = op_fsync,
	.opendir = op_opendir,
	.readdir = op_readdir,
	.readdirplus = op_readdirplus,
	.fsyncdir = op_fsync,
	.statfs = op_statfs,
	.setxattr = op_setxattr,
	.getxattr = op_getxattr,
	.listxattr = op_listxattr,
	.removexattr = op_removexattr,
	.create = op_create,
	.fallocate = op_fallocate,
	.lseek = op_lseek,
	.copy_file_range = op_copy_file_range,
	.ioctl = op_ioctl,
};
