/*
 * Reading the change journal through the fs: a directory's node to the
 * (volume, inode) its index range is kept under, and cursors checked
 * against the pool and the journal (include/reflinkfs/journal.h).
 */
#include "fs/fs_internal.h"
#include "fs/op.h"
#include "journal/journal.h"

#include <stdlib.h>
#include <sys/stat.h>

const char *rfs_change_kind_name(int kind)
{
	static const char *const names[] = {
		[RFS_CHANGE_CREATE] = "create",     [RFS_CHANGE_MKDIR] = "mkdir",
		[RFS_CHANGE_SYMLINK] = "symlink",   [RFS_CHANGE_MKNOD] = "mknod",
		[RFS_CHANGE_MKFIFO] = "mkfifo",     [RFS_CHANGE_UNLINK] = "unlink",
		[RFS_CHANGE_RMDIR] = "rmdir",       [RFS_CHANGE_RENAME] = "rename",
		[RFS_CHANGE_LINK] = "link",         [RFS_CHANGE_DATA] = "data",
		[RFS_CHANGE_ATTR] = "attr",         [RFS_CHANGE_XATTR] = "xattr",
		[RFS_CHANGE_SNAPSHOT] = "snapshot", [RFS_CHANGE_SNAPSHOT_DELETE] = "snapshot_delete",
		[RFS_CHANGE_MOVE_IN] = "move_in",   [RFS_CHANGE_MOVE_OUT] = "move_out",
		[RFS_CHANGE_EXCHANGE] = "exchange",
	};
	if (kind <= 0 || (size_t)kind >= sizeof(names) / sizeof(names[0]) || !names[kind])
		return "?";
	return names[kind];
}

/* Where the read stands: the callback's stop leaves next_from. */
struct qarg {
	rfs_change_fn fn;
	void *arg;
	uint64_t stopped_at;
};

static int q_cb(void *arg, const struct rfs_change *c)
{
	struct qarg *q = arg;
	int ret = q->fn(q->arg, c);
	if (ret > 0)
		q->stopped_at = c->seq;
	return ret;
}

/* The seq cursor (NULL or "": every record kept) starts after, into
 * *since: 0, or -EXDEV (another pool), -ESTALE (a reset since), -EINVAL
 * (not a cursor, or a seq never delivered), -ERANGE (trimmed since). */
static int cursor_check(const struct jnl_info *ji, const char *cursor, uint64_t *since)
{
	if (!cursor || !*cursor)
		return 0;
	uint8_t uuid[16];
	uint64_t epoch;
	int ret = jnl_cursor_decode(cursor, uuid, &epoch, since);
	if (!ret && memcmp(uuid, ji->uuid, 16) != 0)
		ret = -EXDEV;
	else if (!ret && epoch != ji->epoch)
		ret = -ESTALE;
	else if (!ret && *since > ji->durable)
		ret = -EINVAL; /* a seq never delivered: not ours */
	else if (!ret && *since < ji->oldest)
		ret = -ERANGE;
	return ret;
}

int rfs_fs_changes(rfs_fs *fs, rfs_nodeid dir, const char *cursor,
		   struct rfs_changes_page *page, rfs_change_fn fn, void *arg)
{
	struct rfs_node *n = node_get(fs, dir);
	if (!n)
		return -ESTALE;
	fs_rdlock(fs);
	int ret = 0;
	struct jnl_info ji;
	struct rfs_irec r;
	if (!fs->jnl) {
		rfs_log(RFS_LOG_WARN, "%s: changes asked of a mount without change journal (-o nojournal)",
			rfs_pool_path(fs->pool));
		ret = -ENOTSUP;
		goto out;
	}
	ret = inode_read(fs, n, &r);
	if (!ret && !S_ISDIR(r.i.mode))
		ret = -ENOTDIR;
	if (ret)
		goto out;
	jnl_info(fs->jnl, &ji);
	uint64_t since = ji.oldest;
	ret = cursor_check(&ji, cursor, &since);
	if (ret)
		goto out;
	if (!page->upto)
		page->upto = ji.durable;
	uint64_t from = page->next_from > since ? page->next_from : since;
	struct qarg q = {fn, arg, 0};
	ret = n->id == RFS_ROOT_NODE ? jnl_query_all(fs->jnl, from, page->upto, q_cb, &q)
				     : jnl_query(fs->jnl, n->vol, n->ino, from, page->upto, q_cb, &q);
	if (ret > 0) {
		page->next_from = q.stopped_at;
		page->done = false;
		ret = 0;
	} else if (!ret) {
		page->next_from = page->upto;
		page->done = true;
		jnl_cursor_encode(ji.uuid, ji.epoch, page->upto, page->cursor);
	}
out:
	rfs_pool_unlock(fs->pool);
	return ret;
}

int rfs_fs_changes_cursor(rfs_fs *fs, char cursor[RFS_CURSOR_MAX])
{
	fs_rdlock(fs);
	int ret = fs->jnl ? 0 : -ENOTSUP;
	if (!ret) {
		struct jnl_info ji;
		jnl_info(fs->jnl, &ji);
		jnl_cursor_encode(ji.uuid, ji.epoch, ji.durable, cursor);
	}
	rfs_pool_unlock(fs->pool);
	return ret;
}

bool rfs_fs_changes_pending(rfs_fs *fs)
{
	fs_rdlock(fs);
	bool p = fs->jnl && jnl_pending(fs->jnl);
	rfs_pool_unlock(fs->pool);
	return p;
}

bool rfs_fs_changes_pending_below(rfs_fs *fs, rfs_nodeid dir)
{
	struct rfs_node *n = node_get(fs, dir);
	if (!n)
		return false;
	fs_rdlock(fs);
	bool p = false;
	if (fs->jnl && jnl_pending(fs->jnl))
		p = jnl_pending_below(fs->jnl, n->id == RFS_ROOT_NODE, n->vol, n->ino);
	rfs_pool_unlock(fs->pool);
	return p;
}

int rfs_fs_journal_stat(rfs_fs *fs, const char *since, struct rfs_journal_stat *st)
{
	fs_rdlock(fs);
	int ret = fs->jnl ? 0 : -ENOTSUP;
	if (!ret) {
		struct jnl_info ji;
		jnl_info(fs->jnl, &ji);
		st->oldest = ji.oldest;
		st->next = ji.next;
		st->durable = ji.durable;
		st->limit_bytes = ji.limit_bytes;
		st->bytes = ji.bytes;
		st->nrecords = ji.nrecords;
		st->epoch = ji.epoch;
		st->pending = ji.pending;
		jnl_cursor_encode(ji.uuid, ji.epoch, ji.oldest, st->oldest_cursor);
		jnl_cursor_encode(ji.uuid, ji.epoch, ji.durable, st->cursor);
		st->since_status = 0;
		st->since_behind = 0;
		if (since && *since) {
			uint64_t seq = 0;
			st->since_status = cursor_check(&ji, since, &seq);
			if (!st->since_status)
				st->since_behind = ji.durable - seq;
		}
	}
	rfs_pool_unlock(fs->pool);
	return ret;
}

int rfs_fs_journal_format1(rfs_fs *fs)
{
	fs_wrlock(fs);
	int ret = fs->jnl ? 0 : -ENOTSUP;
	if (!ret)
		jnl_write_format1(fs->jnl);
	rfs_pool_unlock(fs->pool);
	return ret;
}

int rfs_fs_journal_set_limit(rfs_fs *fs, uint64_t bytes)
{
	if (bytes < RFS_JOURNAL_MIN_BYTES)
		return -EINVAL;
	if (fs->rdonly)
		return -EROFS;
	fs_wrlock(fs);
	int ret = fs->jnl ? rfs_pool_check_writable(fs->pool) : -ENOTSUP;
	/* The records waiting for the commit first (the trim reads the
	 * tree), with the commit's handling of a failure: reset, never a
	 * silent gap. */
	if (!ret)
		ret = journal_flush(fs, "changing the journal's size");
	if (!ret)
		ret = jnl_set_limit(fs->jnl, bytes);
	rfs_pool_unlock(fs->pool);
	return ret;
}
