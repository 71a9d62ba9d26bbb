/*
 * FUSE_HANDLE_KILLPRIV_V2 on libfuse 3.14.
 *
 * Linux asks a filesystem before every write whether the file has a
 * security.capability xattr to remove (file_remove_privs): for FUSE that
 * is a GETXATTR round trip per WRITE, because a FUSE superblock lacks
 * SB_NOSEC unless the daemon negotiates FUSE_HANDLE_KILLPRIV_V2.  With it
 * the kernel sets SB_NOSEC, marks an inode S_NOSEC once it found nothing
 * to remove (until the next attribute reply), and leaves the clearing of
 * set-user-ID and set-group-ID to the daemon, which it asks for with
 * FUSE_WRITE_KILL_SUIDGID on WRITE, FATTR_KILL_SUIDGID on SETATTR
 * (truncate by a caller without CAP_FSETID; chown of a non-directory,
 * always) and FUSE_OPEN_KILL_SUIDGID on OPEN/CREATE with O_TRUNC
 * (fs/fuse/file.c, dir.c; fuse_setattr drops ATTR_KILL_SUID/SGID).
 *
 * libfuse 3.14 knows neither the flag nor the per-request bits (it masks
 * them off), so both go through the raw request hook of tmpfile.c:
 * rfs_fuse_killpriv_note sees each request as it is read, and
 * rfs_fuse_killpriv_reply adds the flag to the INIT reply when the kernel
 * offered it.  libfuse handles a request on the thread that read it
 * (fuse_loop_mt's workers read, then process), so the request's bit is
 * kept in a thread-local variable that the operation takes.
 */
#include "fuse/rfs_fuse.h"

#include <linux/fuse.h>
#include <string.h>

#include "reflinkfs/log.h"

/* The kill bit of the last request this thread read (every read sets
 * it, so none outlives its request). */
static _Thread_local bool t_kill;

/* The INIT request whose reply gets the flag: its unique id and whether
 * the kernel offered FUSE_HANDLE_KILLPRIV_V2.  Written by the thread that
 * reads INIT, before libfuse replies to it on the same thread. */
static _Atomic uint64_t g_init_unique;
static _Atomic bool g_init_offers;
static _Atomic bool g_negotiated;

void rfs_fuse_killpriv_note(const void *buf, size_t n)
{
	const struct fuse_in_header *in = buf;
	const char *arg = (const char *)(in + 1);
	size_t len = n - sizeof(*in);
	uint32_t v;
	t_kill = false;
	switch (in->opcode) {
	case FUSE_INIT:
		if (len >= offsetof(struct fuse_init_in, flags) + sizeof(v)) {
			memcpy(&v, arg + offsetof(struct fuse_init_in, flags), sizeof(v));
			atomic_store(&g_init_offers, (v & FUSE_HANDLE_KILLPRIV_V2) != 0);
			atomic_store(&g_init_unique, in->unique);
		}
		break;
	case FUSE_WRITE:
		if (len >= offsetof(struct fuse_write_in, write_flags) + sizeof(v)) {
			memcpy(&v, arg + offsetof(struct fuse_write_in, write_flags), sizeof(v));
			t_kill = v & FUSE_WRITE_KILL_SUIDGID;
		}
		break;
	case FUSE_SETATTR:
		if (len >= sizeof(v)) {
			memcpy(&v, arg + offsetof(struct fuse_setattr_in, valid), sizeof(v));
			t_kill = v & FATTR_KILL_SUIDGID;
		}
		break;
	case FUSE_OPEN:
		if (len >= offsetof(struct fuse_open_in, open_flags) + sizeof(v)) {
			memcpy(&v, arg + offsetof(struct fuse_open_in, open_flags), sizeof(v));
			t_kill = v & FUSE_OPEN_KILL_SUIDGID;
		}
		break;
	case FUSE_CREATE:
		if (len >= offsetof(struct fuse_create_in, open_flags) + sizeof(v)) {
			memcpy(&v, arg + offsetof(struct fuse_create_in, open_flags), sizeof(v));
			t_kill = v & FUSE_OPEN_KILL_SUIDGID;
		}
		break;
	}
}

void rfs_fuse_killpriv_reply(struct iovec *iov, int count)
{
	if (count < 2 || iov[0].iov_len < sizeof(struct fuse_out_header))
		return;
	const struct fuse_out_header *out = iov[0].iov_base;
	uint64_t want = atomic_load(&g_init_unique);
	if (!want || out->unique != want || out->error)
		return;
	atomic_store(&g_init_unique, 0);
	size_t at = offsetof(struct fuse_init_out, flags);
	uint32_t flags;
	if (!atomic_load(&g_init_offers) || iov[1].iov_len < at + sizeof(flags))
		return;
	/* libfuse's own struct fuse_init_out, about to be written */
	memcpy(&flags, (char *)iov[1].iov_base + at, sizeof(flags));
	flags |= FUSE_HANDLE_KILLPRIV_V2;
	flags &= ~(uint32_t)FUSE_HANDLE_KILLPRIV; /* v1: op_init leaves it off */
	memcpy((char *)iov[1].iov_base + at, &flags, sizeof(flags));
	atomic_store(&g_negotiated, true);
}

bool rfs_fuse_killpriv_asked(void)
{
	bool k = t_kill;
	t_kill = false;
	return k;
}

bool rfs_fuse_killpriv_negotiated(void)
{
	return atomic_load(&g_negotiated);
}

int rfs_fuse_kill_priv(fuse_req_t req, fuse_ino_t ino, bool notify)
{
	struct rfs_mount *m = fuse_req_userdata(req);
	bool found;
	int ret = rfs_fs_kill_priv(m->fs, ino, true, &found);
	/* The kernel keeps the old mode until it asks again (a write
	 * refreshes size and times only): without this an exec of the file
	 * just written would still run set-user-ID. */
	if (!ret && found && notify)
		fuse_lowlevel_notify_inval_inode(m->se, ino, -1, 0);
	if (ret)
		rfs_log(RFS_LOG_ERR, "%s: inode %llu: cannot clear set-user-ID, set-group-ID "
			"or security.capability before changing the file (%s): the change is "
			"refused, the file is as it was", m->pool, (unsigned long long)ino,
			strerror(-ret));
	return ret;
}

int rfs_fuse_kill_priv_unless_fsetid(fuse_req_t req, fuse_ino_t ino)
{
	struct rfs_mount *m = fuse_req_userdata(req);
	bool found;
	int ret = rfs_fs_kill_priv(m->fs, ino, false, &found);
	if (ret || !found)
		return ret;
	/* Unknown (another pid namespace, or gone): clear, the safe side. */
	if (rfs_caller_fsetid(fuse_req_ctx(req)->pid) == 1)
		return 0;
	return rfs_fuse_kill_priv(req, ino, true);
}
