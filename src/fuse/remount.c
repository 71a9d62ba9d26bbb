/*
 * Following the kernel's read-only state of the mount.  `mount -o
 * remount,ro` changes the superblock's flags in the kernel without a word
 * to the daemon (FUSE has no remount request).  The kernel then refuses
 * every write system call itself, but the daemon would still change the
 * pool on its own: atime updates on reads, freeing unlinked files when
 * the kernel forgets them, and their commits.  So the daemon watches
 * /proc/self/mountinfo (poll(2) reports every change of the mount table)
 * and freezes the pool -- one commit, then every change refused with
 * EROFS -- while the superblock is read-only, and thaws it when it is
 * read-write again.  The mount helper asks for the same step
 * synchronously (RFS_IOC_MOUNT_STATE) so that `mount -o remount,ro`
 * returns with the pool committed and frozen.
 */
#include "fuse/rfs_fuse.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "reflinkfs/log.h"
#include "util/mountinfo.h"

struct sbq {
	unsigned major, minor;
	bool found, ro;
};

static int sb_cb(void *arg, const struct rfs_mountinfo *mi)
{
	struct sbq *q = arg;
	if (mi->major != q->major || mi->minor != q->minor)
		return 0;
	q->found = true;
	q->ro = rfs_mountinfo_has_opt(mi->super_opts, "ro");
	return 1;
}

int rfs_fuse_follow_mount_state(struct rfs_mount *m)
{
	struct sbq q = {major(m->dev), minor(m->dev), false, false};
	if (!m->dev)
		return 0; /* device unknown: nothing to follow */
	if (rfs_mountinfo_each(NULL, sb_cb, &q) < 0 || !q.found)
		return 0; /* being unmounted */
	int ret = 0;
	pthread_mutex_lock(&m->state_lock);
	if (rfs_fs_rdonly(m->fs)) {
		/* opened read-only: nothing to freeze, and it cannot thaw */
		ret = q.ro ? 0 : -EROFS;
	} else if (q.ro != atomic_load(&m->frozen)) {
		if (q.ro)
			rfs_fs_settle(m->fs); /* delayed writes go in the commit */
		ret = rfs_pool_set_frozen(rfs_fs_pool(m->fs), q.ro);
		if (q.ro || !ret)
			atomic_store(&m->frozen, q.ro);
		if (q.ro)
			rfs_log(ret ? RFS_LOG_ERR : RFS_LOG_INFO,
				"%s: remounted read-only: %s", m->pool,
				ret ? strerror(-ret) : "committed, no more changes");
		else if (!ret)
			rfs_log(RFS_LOG_INFO, "%s: remounted read-write", m->pool);
	}
	if (ret == -EROFS && !q.ro)
		rfs_log(RFS_LOG_WARN, "%s: the mount was made read-write, but the pool was opened read-only (or a commit failed): writes fail with EROFS; unmount and mount it read-write",
			m->pool);
	pthread_mutex_unlock(&m->state_lock);
	return ret;
}

struct rfs_mountwatch {
	struct rfs_mount *m;
	int fd;       /* /proc/self/mountinfo */
	int stop[2];  /* stop -> thread */
	pthread_t thread;
};

static void *watch_thread(void *arg)
{
	struct rfs_mountwatch *w = arg;
	pthread_setname_np(pthread_self(), "rfs-mountwatch");
	for (;;) {
		struct pollfd p[2] = {{.fd = w->stop[0], .events = POLLIN},
				      {.fd = w->fd, .events = POLLPRI}};
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			rfs_log(RFS_LOG_WARN, "%s: watching the mount table: %s; a remount without the mount helper is no longer followed",
				w->m->pool, strerror(errno));
			break;
		}
		if (p[0].revents)
			break;
		if (p[1].revents & (POLLPRI | POLLERR))
			rfs_fuse_follow_mount_state(w->m);
	}
	return NULL;
}

struct rfs_mountwatch *rfs_fuse_mountwatch_start(struct rfs_mount *m)
{
	struct rfs_mountwatch *w = calloc(1, sizeof(*w));
	if (!w)
		return NULL;
	w->m = m;
	w->stop[0] = w->stop[1] = -1;
	w->fd = open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC);
	if (w->fd < 0 || pipe2(w->stop, O_CLOEXEC) ||
	    pthread_create(&w->thread, NULL, watch_thread, w)) {
		rfs_log(RFS_LOG_WARN, "%s: cannot watch the mount table (%s): a remount without the mount helper is not followed",
			m->pool, strerror(errno));
		if (w->fd >= 0)
			close(w->fd);
		for (int i = 0; i < 2; i++)
			if (w->stop[i] >= 0)
				close(w->stop[i]);
		free(w);
		return NULL;
	}
	return w;
}

void rfs_fuse_mountwatch_stop(struct rfs_mountwatch *w)
{
	if (!w)
		return;
	char c = 1;
	if (write(w->stop[1], &c, 1) == 1)
		pthread_join(w->thread, NULL);
	else
		pthread_detach(w->thread);
	close(w->fd);
	close(w->stop[0]);
	close(w->stop[1]);
	free(w);
}
