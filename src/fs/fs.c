/*
 * The filesystem object: open/close/mkfs of a pool holding a filesystem,
 * the in-memory node table (FUSE node ids), attributes, statfs, sync.
 */
#include "fs/link_names.h"
#include "fs/op.h"
#include "journal/journal.h"

#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

/* ---- node table ------------------------------------------------------------ */

/* The fs whose nlock this thread holds (nlock does not nest, and a thread
 * holds at most one fs's). */
static _Thread_local const rfs_fs *nlock_owner;

void node_lock(rfs_fs *fs)
{
	/* nlock does not nest: the second lock would wait for itself. */
	RFS_ASSERT_LOCK(nlock_owner != fs);
	if (pthread_mutex_trylock(&fs->nlock)) {
		uint64_t t0 = rfs_pool_lockw_now();
		pthread_mutex_lock(&fs->nlock);
		rfs_pool_lockw_add(RFS_LOCKW_NODES, rfs_pool_lockw_now() - t0);
	}
	nlock_owner = fs;
}

void node_unlock(rfs_fs *fs)
{
	assert(nlock_owner == fs);
	nlock_owner = NULL;
	pthread_mutex_unlock(&fs->nlock);
}

bool node_lock_held(const rfs_fs *fs)
{
	return nlock_owner == fs;
}

/* Bumped before any node's memory is freed, in any fs, and when an fs
 * goes: rcache_read_nolock's per-thread memory of a node pointer is
 * still good while it has not moved (node_free_stamp). */
static _Atomic uint64_t node_frees;

uint64_t node_free_stamp(void)
{
	return atomic_load(&node_frees);
}

struct rfs_node *node_alloc(void)
{
	struct rfs_node *n = calloc(1, sizeof(*n));
	if (n)
		pthread_rwlock_init(&n->clock, NULL);
	return n;
}

/* Free n's memory and copies (nothing else refers to it). */
static void node_free_mem(rfs_fs *fs, struct rfs_node *n)
{
	atomic_fetch_add(&node_frees, 1);
	free(n->name);
	rcache_free(n);
	if (fs)
		ecache_free(fs, n);
	pthread_rwlock_destroy(&n->clock);
	free(n);
}

static size_t hash64(uint64_t v, size_t cap)
{
	v ^= v >> 33;
	v *= 0xff51afd7ed558ccdull;
	v ^= v >> 33;
	return (size_t)(v & (cap - 1));
}

/* The ino hash is keyed by st_ino: (vol << 48) | ino. */
static uint64_t ino_key(uint64_t vol, uint64_t ino)
{
	return (vol << 48) | ino;
}

static int table_grow(rfs_fs *fs)
{
	RFS_ASSERT_LOCK(node_lock_held(fs));
	size_t ncap = fs->cap ? fs->cap * 2 : 1024;
	struct rfs_node **bid = calloc(ncap, sizeof(*bid));
	struct rfs_node **bino = calloc(ncap, sizeof(*bino));
	if (!bid || !bino) {
		free(bid);
		free(bino);
		return -ENOMEM;
	}
	for (size_t i = 0; i < fs->cap; i++) {
		struct rfs_node *n = fs->by_id[i], *next;
		for (; n; n = next) {
			next = n->next_id;
			size_t h = hash64(n->id, ncap);
			n->next_id = bid[h];
			bid[h] = n;
		}
		for (n = fs->by_ino[i]; n; n = next) {
			next = n->next_ino;
			size_t h = hash64(ino_key(n->vol, n->ino), ncap);
			n->next_ino = bino[h];
			bino[h] = n;
		}
	}
	free(fs->by_id);
	free(fs->by_ino);
	fs->by_id = bid;
	fs->by_ino = bino;
	fs->cap = ncap;
	return 0;
}

rfs_nodeid node_id_of(const rfs_fs *fs, uint64_t vol, uint64_t ino)
{
	if (vol == RFS_TOP_VOLUME && ino == fs->root_ino)
		return RFS_ROOT_NODE;
	return ino_key(vol, ino);
}

uint64_t node_id_ino(const rfs_fs *fs, rfs_nodeid id, uint64_t *vol)
{
	if (id == RFS_ROOT_NODE) {
		*vol = RFS_TOP_VOLUME;
		return fs->root_ino;
	}
	*vol = id >> 48;
	return id & ((1ull << 48) - 1);
}

struct rfs_node *node_get_locked(rfs_fs *fs, rfs_nodeid id)
{
	RFS_ASSERT_LOCK(node_lock_held(fs));
	for (struct rfs_node *n = fs->by_id[hash64(id, fs->cap)]; n; n = n->next_id)
		if (n->id == id)
			return n;
	return NULL;
}

struct rfs_node *node_get(rfs_fs *fs, rfs_nodeid id)
{
	node_lock(fs);
	struct rfs_node *n = node_get_locked(fs, id);
	node_unlock(fs);
	return n;
}

struct rfs_node *node_by_ino(rfs_fs *fs, uint64_t vol, uint64_t ino)
{
	RFS_ASSERT_LOCK(node_lock_held(fs));
	for (struct rfs_node *n = fs->by_ino[hash64(ino_key(vol, ino), fs->cap)]; n;
	     n = n->next_ino)
		if (n->ino == ino && n->vol == vol && !n->dead)
			return n;
	return NULL;
}

bool node_live(struct rfs_node *n)
{
	return n->nlookup > 0 || n->nopen > 0;
}

bool node_in_table(rfs_fs *fs, struct rfs_node *n)
{
	node_lock(fs);
	bool t = n->in_table;
	node_unlock(fs);
	return t;
}

/* Put n (id, vol and ino set) at the head of both hash chains and count
 * it.  nlock held. */
static void link_hash(rfs_fs *fs, struct rfs_node *n)
{
	size_t h = hash64(n->id, fs->cap);
	n->next_id = fs->by_id[h];
	fs->by_id[h] = n;
	h = hash64(ino_key(n->vol, n->ino), fs->cap);
	n->next_ino = fs->by_ino[h];
	fs->by_ino[h] = n;
	fs->nnodes++;
}

static void unlink_hash(rfs_fs *fs, struct rfs_node *n)
{
	struct rfs_node **pp = &fs->by_id[hash64(n->id, fs->cap)];
	while (*pp && *pp != n)
		pp = &(*pp)->next_id;
	if (*pp)
		*pp = n->next_id;
	pp = &fs->by_ino[hash64(ino_key(n->vol, n->ino), fs->cap)];
	while (*pp && *pp != n)
		pp = &(*pp)->next_ino;
	if (*pp)
		*pp = n->next_ino;
}

/* Free n (and, in cascade, parents) when nothing refers to it.  nlock held. */
static void node_maybe_free(rfs_fs *fs, struct rfs_node *n)
{
	RFS_ASSERT_LOCK(node_lock_held(fs) && rfs_pool_holds_lock(fs->pool));
	/* Delayed writes hold their node (node_drop_refs settles them). */
	assert(!n || !atomic_load(&n->dm_count));
	while (n && n->id != RFS_ROOT_NODE && !node_live(n) && n->nchild == 0) {
		struct rfs_node *parent = n->parent;
		unlink_hash(fs, n);
		fs->nnodes--;
		node_free_mem(fs, n);
		if (parent)
			parent->nchild--;
		n = parent;
	}
}

int node_set_parent(rfs_fs *fs, struct rfs_node *n, struct rfs_node *parent,
		    const char *name, size_t len)
{
	char *nm = NULL;
	RFS_ASSERT_LOCK(node_lock_held(fs) && rfs_pool_holds_lock(fs->pool));
	if (parent) {
		/* Out of memory: the node keeps its old place; the caller
		 * reports it (never abort the daemon). */
		nm = malloc(len + 1);
		if (!nm)
			return -ENOMEM;
		memcpy(nm, name, len);
		nm[len] = 0;
		parent->nchild++;
	}
	struct rfs_node *old = n->parent;
	free(n->name);
	n->name = nm;
	n->parent = parent;
	if (old) {
		old->nchild--;
		node_maybe_free(fs, old);
	}
	return 0;
}

int node_rename(rfs_fs *fs, struct rfs_node *n, struct rfs_node *parent,
		const char *name, size_t len)
{
	RFS_ASSERT_LOCK(node_lock_held(fs) && rfs_pool_holds_wrlock(fs->pool));
	if (fs->rename_fail_every && ++fs->rename_updates % fs->rename_fail_every == 0)
		return -ENOMEM;
	return node_set_parent(fs, n, parent, name, len);
}

void rfs_fs_fail_rename_nodes(rfs_fs *fs, unsigned every)
{
	node_lock(fs);
	fs->rename_fail_every = every;
	fs->rename_updates = 0;
	node_unlock(fs);
}

void node_move_to_table(rfs_fs *fs, struct rfs_node *n)
{
	RFS_ASSERT_LOCK(node_lock_held(fs) && rfs_pool_holds_lock(fs->pool));
	n->in_table = true;
	node_set_parent(fs, n, NULL, NULL, 0);
}

struct rfs_node *node_ref(rfs_fs *fs, struct rfs_node *parent,
			  const char *name, uint64_t vol, uint64_t ino, bool in_table)
{
	/* Called under the read lock too (lookup, readdir): moving a node
	 * here is why readers of node places take nlock. */
	RFS_ASSERT_LOCK(rfs_pool_holds_lock(fs->pool));
	node_lock(fs);
	struct rfs_node *n = node_by_ino(fs, vol, ino);
	if (n) {
		n->nlookup++;
		if (in_table && !n->in_table)
			node_move_to_table(fs, n);
		else if (!in_table && !n->in_table && n->id != RFS_ROOT_NODE &&
			 (n->parent != parent || strcmp(n->name, name)) &&
			 node_set_parent(fs, n, parent, name, strlen(name))) {
			n->nlookup--;
			n = NULL;
		}
		node_unlock(fs);
		return n;
	}
	if (fs->nnodes + 1 > fs->cap && table_grow(fs)) {
		node_unlock(fs);
		return NULL;
	}
	if (node_get_locked(fs, node_id_of(fs, vol, ino))) {
		/* A node of this inode whose record is gone (dead): inode
		 * numbers are never reused, so this is a damaged tree. */
		rfs_log(RFS_LOG_ERR, "%s: inode %llu was deleted but is reachable again",
			rfs_pool_path(fs->pool), (unsigned long long)ino);
		node_unlock(fs);
		return NULL;
	}
	n = node_alloc();
	if (!n) {
		node_unlock(fs);
		return NULL;
	}
	n->id = node_id_of(fs, vol, ino);
	n->ino = ino;
	n->vol = vol;
	n->nlookup = 1;
	n->in_table = in_table;
	if (!in_table && node_set_parent(fs, n, parent, name, strlen(name))) {
		node_free_mem(NULL, n);
		node_unlock(fs);
		return NULL;
	}
	link_hash(fs, n);
	node_unlock(fs);
	return n;
}

struct rfs_node *node_prepare(rfs_fs *fs, const char *name, size_t len)
{
	struct rfs_node *n = node_alloc();
	char *nm = malloc(len + 1);
	if (!n || !nm)
		goto fail;
	memcpy(nm, name, len);
	nm[len] = 0;
	n->name = nm;
	node_lock(fs);
	int ret = fs->nnodes + 1 > fs->cap ? table_grow(fs) : 0;
	node_unlock(fs);
	if (!ret)
		return n;
fail:
	free(nm);
	if (n)
		node_free_mem(NULL, n);
	return NULL;
}

rfs_nodeid node_publish(rfs_fs *fs, struct rfs_node *n, struct rfs_node *parent,
			uint64_t vol, uint64_t ino)
{
	RFS_ASSERT_LOCK(rfs_pool_holds_wrlock(fs->pool));
	node_lock(fs);
	/* Room was made by node_prepare; another thread may have used it
	 * since, and a table over its load factor still works (chains
	 * grow), so a failed grow here costs speed, never correctness. */
	if (fs->nnodes + 1 > fs->cap)
		(void)table_grow(fs);
	n->id = node_id_of(fs, vol, ino); /* a new inode: no node has this id */
	n->ino = ino;
	n->vol = vol;
	n->nlookup = 1;
	if (parent) {
		n->parent = parent;
		parent->nchild++;
	} else {
		/* reached by inode number only: a link-table inode */
		free(n->name);
		n->name = NULL;
		n->in_table = true;
	}
	link_hash(fs, n);
	rfs_nodeid id = n->id;
	node_unlock(fs);
	return id;
}

void node_discard(struct rfs_node *n)
{
	if (n)
		node_free_mem(NULL, n);
}

void node_unref(rfs_fs *fs, rfs_nodeid id)
{
	RFS_ASSERT_LOCK(rfs_pool_holds_lock(fs->pool)); /* it may free nodes */
	node_lock(fs);
	struct rfs_node *n = node_get_locked(fs, id);
	if (n && n->nlookup) {
		n->nlookup--;
		if (!n->in_table)
			node_maybe_free(fs, n);
	}
	node_unlock(fs);
}

int rfs_fs_find_ino(rfs_fs *fs, uint64_t st_ino, rfs_nodeid *out)
{
	node_lock(fs);
	struct rfs_node *n = node_by_ino(fs, st_ino >> 48, st_ino & ((1ull << 48) - 1));
	if (n)
		*out = n->id;
	node_unlock(fs);
	return n ? 0 : -ENOENT;
}

size_t rfs_fs_node_count(rfs_fs *fs)
{
	node_lock(fs);
	size_t n = fs->nnodes;
	node_unlock(fs);
	return n;
}

/* An orphan (in the link table with nlink 0) that nobody uses any more:
 * delete its record, which releases its data.  Pool write lock held. */
/* Free n's record and file when it has no name left.  0, or the error
 * that stopped it halfway: the caller's op_end then discards the
 * transaction (nothing half done is stored). */
static int orphan_reap(rfs_fs *fs, struct rfs_node *n)
{
	struct rfs_ipath p;
	RFS_ASSERT_LOCK(node_lock_held(fs) && rfs_pool_holds_wrlock(fs->pool));
	if (fs->rdonly || !n->in_table || n->dead)
		return 0;
	if (!vol_get(fs, n->vol))
		return 0;
	/* Not there, or not writable here (a read-only volume): nothing
	 * to free.  A walk that could not store back what it shadowed has
	 * marked the operation halfway (ip_store). */
	if (ip_load_table(fs, n->vol, n->ino, true, &p))
		return 0;
	if (ip_rec(&p)->i.nlink == 0) {
		rfs_tree *t = &p.lv[1].parent;
		int ret = rfs_tree_delete(fs->pool, t, p.lv[1].key, p.lv[1].klen,
					  RFS_KEEP_REFS);
		if (!ret)
			ret = rec_release(fs, ip_rec(&p));
		if (ret) {
			rfs_log(RFS_LOG_ERR, "%s: freeing unlinked inode %llu: %s",
				rfs_pool_path(fs->pool), (unsigned long long)n->ino,
				strerror(-ret));
			ip_free(&p);
			return ret;
		}
		vol_count(fs, n->vol, -1);
		n->dead = true;
		p.n = 1; /* store the table root and the volume */
		p.lv[0].rec.i.subtree = t->root;
	}
	return ip_done(fs, &p, 0, 0);
}

/*
 * The common case of node_drop_refs: nothing to delete.  Under the read
 * lock (freeing nodes changes places: nlock and the pool lock, see
 * node_maybe_free), like node_unref, so a RELEASE or FORGET never waits
 * for a writer or a commit.  False, with nothing changed, when the drop
 * would leave an orphan of the link table unused: its record must be
 * deleted, which takes an operation.
 */
static bool drop_refs_read(rfs_fs *fs, rfs_nodeid id, uint64_t nlookup, uint32_t nopen)
{
	bool done = true;
	rfs_pool_rdlock(fs->pool);
	node_lock(fs);
	struct rfs_node *n = node_get_locked(fs, id);
	if (n && id != RFS_ROOT_NODE) {
		uint64_t l = nlookup > n->nlookup ? 0 : n->nlookup - nlookup;
		uint32_t o = nopen > n->nopen ? 0 : n->nopen - nopen;
		if (l == 0 && o == 0 && n->in_table && !n->dead && !fs->rdonly) {
			done = false;
		} else {
			n->nlookup = l;
			n->nopen = o;
			if (!node_live(n))
				node_maybe_free(fs, n);
		}
	}
	node_unlock(fs);
	rfs_pool_unlock(fs->pool);
	return done;
}

static void node_drop_refs(rfs_fs *fs, rfs_nodeid id, uint64_t nlookup,
			   uint32_t nopen)
{
	/* Its delayed writes are mapped before the node may go. */
	dm_settle_id(fs, id);
	if (drop_refs_read(fs, id, nlookup, nopen))
		return;
	struct rfs_op op = {0};
	/* A deletion (the orphan's record), so it never fails for space; a
	 * read-only fs or pool only drops the references. */
	bool writable = op_begin(fs, &op, "freeing an unlinked inode", 0, 0) == 0;
	int ret = 0;
	if (!writable)
		rfs_pool_wrlock(fs->pool);
	node_lock(fs);
	struct rfs_node *n = node_get_locked(fs, id);
	if (n && id != RFS_ROOT_NODE) {
		n->nlookup = nlookup > n->nlookup ? 0 : n->nlookup - nlookup;
		n->nopen = nopen > n->nopen ? 0 : n->nopen - nopen;
		if (!node_live(n)) {
			if (n->in_table && writable)
				ret = orphan_reap(fs, n);
			node_maybe_free(fs, n);
		}
	}
	node_unlock(fs);
	if (writable)
		op_end(&op, ret);
	else
		rfs_pool_unlock(fs->pool);
}

void rfs_fs_forget(rfs_fs *fs, rfs_nodeid node, uint64_t n)
{
	node_drop_refs(fs, node, n, 0);
}

int rfs_fs_open_node(rfs_fs *fs, rfs_nodeid node)
{
	node_lock(fs);
	struct rfs_node *n = node_get_locked(fs, node);
	if (n)
		n->nopen++;
	node_unlock(fs);
	return n ? 0 : -ESTALE;
}

void rfs_fs_release(rfs_fs *fs, rfs_nodeid node)
{
	node_drop_refs(fs, node, 0, 1);
}

/* ---- open / close / mkfs ---------------------------------------------------- */

int rfs_fs_mkfs(const char *path, uint64_t size_bytes, unsigned flags)
{
	rfs_pool *pool;
	int ret = rfs_pool_create(path, size_bytes, flags);
	if (ret)
		return ret;
	ret = rfs_pool_open(path, 0, &pool);
	if (ret)
		return ret;
	rfs_pool_wrlock(pool);
	rfs_tree vol = {0, RFS_OWNER_VOLUME};
	struct rfs_volmeta m = {.magic = RFS_VOL_MAGIC,
				.version = RFS_VOL_VERSION,
				.volid = RFS_TOP_VOLUME,
				.next_vol = RFS_TOP_VOLUME + 1,
				.next_ino = 2,
				.ninodes = 1};
	struct rfs_irec root;
	memset(&root, 0, sizeof(root));
	root.i.ino = 1;
	root.i.mode = S_IFDIR | 0755;
	root.i.nlink = 2;
	touch_mc(&root.i);
	root.i.atime = root.i.btime = root.i.mtime;
	root.i.atime_ns = root.i.btime_ns = root.i.mtime_ns;
	struct rfs_irec tab;
	memset(&tab, 0, sizeof(tab));
	ret = rfs_tree_put(pool, &vol, "M", 1, &m, sizeof(m), 0, RFS_PUT_INSERT);
	if (!ret)
		ret = rec_put_pool(pool, &vol, "R", 1, &root, RFS_PUT_INSERT, true);
	if (!ret)
		ret = rec_put_pool(pool, &vol, "T", 1, &tab, RFS_PUT_INSERT, true);
	uint64_t index_root = 0; /* the back-pointer index, empty */
	if (!ret)
		ret = rfs_tree_put(pool, &vol, "P", 1, &index_root, sizeof(index_root),
				   RFS_ITEM_TREE, RFS_PUT_INSERT);
	if (!ret)
		ret = rfs_catalog_set(pool, RFS_TOP_VOLUME, &vol);
	if (!ret)
		ret = rfs_pool_commit_locked(pool);
	rfs_pool_unlock(pool);
	rfs_pool_close(pool);
	if (ret)
		rfs_log(RFS_LOG_ERR, "%s: creating the filesystem failed: %s", path,
			strerror(-ret));
	return ret;
}

/* Remove orphans a crash left in the link table of volume vid. */
static int orphans_clean_vol(rfs_fs *fs, uint64_t vid)
{
	rfs_tree vol, tab;
	struct rfs_irec t;
	int ret = rfs_catalog_get(fs->pool, vid, &vol);
	if (ret)
		return ret;
	ret = rec_get(fs->pool, &vol, "T", 1, &t, false);
	if (ret)
		return ret;
	tab = FS_TREE(t.i.subtree, RFS_OWNER_LINKS);
	for (;;) {
		uint64_t found = 0;
		rfs_cursor *c;
		if (!tab.root)
			return 0;
		ret = rfs_cursor_open(fs->pool, &tab, &c);
		if (ret)
			return ret;
		for (ret = rfs_cursor_seek(c, NULL, 0, 1); !ret; ret = rfs_cursor_step(c, 1)) {
			const void *k, *v;
			size_t kl, vl;
			struct rfs_irec r;
			rfs_cursor_get(c, &k, &kl, &v, &vl, NULL);
			if (rec_decode(v, vl, &r) == 0 && r.i.nlink == 0) {
				found = r.i.ino;
				break;
			}
		}
		rfs_cursor_close(c);
		if (ret && ret != -ENOENT)
			return ret;
		if (!found)
			return 0;
		struct rfs_ipath p;
		ret = ip_load_table(fs, vid, found, true, &p);
		if (ret)
			return ret;
		ret = rfs_tree_delete(fs->pool, &p.lv[1].parent, p.lv[1].key,
				      p.lv[1].klen, RFS_KEEP_REFS);
		if (!ret)
			ret = rec_release(fs, ip_rec(&p));
		vol_count(fs, vid, -1);
		p.lv[0].rec.i.subtree = p.lv[1].parent.root;
		p.n = 1;
		ret = ip_done(fs, &p, 0, ret);
		if (ret)
			return ret;
		rfs_log(RFS_LOG_INFO, "%s: freed inode %llu, unlinked while open before a crash",
			rfs_pool_path(fs->pool), (unsigned long long)found);
		tab.root = 0;
		ret = rfs_catalog_get(fs->pool, vid, &vol);
		if (!ret)
			ret = rec_get(fs->pool, &vol, "T", 1, &t, false);
		if (ret)
			return ret;
		tab.root = t.i.subtree;
	}
}

static int orphans_clean(rfs_fs *fs)
{
	for (size_t i = 0; i < fs->nvols; i++) {
		int ret = fs->vols[i]->gone ? 0 : orphans_clean_vol(fs, fs->vols[i]->id);
		if (ret)
			return ret;
	}
	return 0;
}

/* Every commit stores the journal's records kept in memory first, in
 * the transaction being committed (journal_hook.c). */
static int fs_precommit(void *arg)
{
	rfs_fs *fs = arg;
	return fs->jnl ? journal_flush(fs, "commit") : 0;
}

/* Open the change journal (a pool without one gets one).  Without the
 * journal (RFS_FS_NOJOURNAL), a writable mount resets it: the changes it
 * makes are not recorded, and a cursor must not read past them silently.
 * Pool write lock held. */
static int journal_open(rfs_fs *fs, unsigned flags)
{
	struct rfs_pool_stats ps;
	rfs_pool_stats(fs->pool, &ps);
	uint64_t limit = ps.total_blocks * RFS_BLOCK_SIZE / RFS_JOURNAL_SHARE;
	if (limit < RFS_JOURNAL_MIN_BYTES)
		limit = RFS_JOURNAL_MIN_BYTES;
	int ret = jnl_open(fs->pool, !fs->rdonly, limit, &fs->jnl);
	if (ret == -ENOENT && fs->rdonly)
		return 0; /* a read-only mount of a pool never mounted since */
	if (ret) {
		rfs_log(RFS_LOG_ERR, "%s: the change journal cannot be opened: %s",
			rfs_pool_path(fs->pool), strerror(-ret));
		return ret;
	}
	if (flags & RFS_FS_NOJOURNAL) {
		ret = fs->rdonly ? 0 : jnl_reset(fs->jnl, "mounted with -o nojournal");
		jnl_close(fs->jnl);
		fs->jnl = NULL;
	} else if (!fs->rdonly) {
		rfs_pool_set_precommit(fs->pool, fs_precommit, fs);
	}
	return ret;
}

/* An older format -> RFS_VOL_VERSION at a read-write open: from now on
 * small files may keep their extent maps inline (3), tiny files their
 * data (4), directories their entries in an ancestor's tree (5), and
 * records are written compact (6); what was written before keeps its
 * form until rewritten.  A reflinkfs that knows
 * only an older format then refuses the pool rather than misreading it.
 * Pool write lock held. */
static int vol_upgrade(rfs_fs *fs, const char *path)
{
	rfs_tree vol;
	unsigned from = fs->top->m.version;
	int ret = rfs_catalog_get(fs->pool, RFS_TOP_VOLUME, &vol);
	if (ret)
		return ret;
	vol.owner = RFS_OWNER_VOLUME;
	fs->top->m.version = RFS_VOL_VERSION;
	ret = meta_store(fs, fs->top, &vol);
	int r2 = rfs_catalog_set(fs->pool, RFS_TOP_VOLUME, &vol);
	if (!ret)
		ret = r2;
	if (ret) {
		fs->top->m.version = from;
		rfs_log(RFS_LOG_ERR, "%s: updating the filesystem format %u -> %u failed: %s",
			path, from, RFS_VOL_VERSION, strerror(-ret));
	} else {
		rfs_log(RFS_LOG_INFO, "%s: filesystem format %u -> %u (small files keep their extent maps, tiny files their data, inline; embedded directories; compact inode records)",
			path, from, RFS_VOL_VERSION);
	}
	return ret;
}

int rfs_fs_open(const char *path, unsigned flags, rfs_fs **out)
{
	*out = NULL;
	/* Aligned: its counters sharded by CPU keep each shard in a cache
	 * line of its own (util/pcount.h). */
	rfs_fs *fs = aligned_alloc(_Alignof(rfs_fs), sizeof(*fs));
	if (!fs)
		return -ENOMEM;
	memset(fs, 0, sizeof(*fs));
	unsigned pflags = 0;
	if (flags & RFS_FS_RDONLY)
		pflags |= RFS_OPEN_RDONLY;
	if (flags & RFS_FS_CRASHSIM)
		pflags |= RFS_OPEN_CRASHSIM;
	int ret = rfs_pool_open(path, pflags, &fs->pool);
	if (ret) {
		free(fs);
		return ret;
	}
	fs->rdonly = flags & RFS_FS_RDONLY;
	pthread_mutex_init(&fs->nlock, NULL);
	fs->ec_budget = RFS_ECACHE_BUDGET;
	pthread_mutex_init(&fs->wlock, NULL);
	changes_wait_init(fs);
	if (!fs->rdonly && (ret = dm_init(fs)) != 0)
		goto fail;
	node_lock(fs);
	ret = table_grow(fs);
	node_unlock(fs);
	if (ret)
		goto fail;

	rfs_pool_wrlock(fs->pool);
	rfs_tree vol;
	struct rfs_volmeta m;
	size_t ml = sizeof(m);
	ret = rfs_catalog_get(fs->pool, RFS_TOP_VOLUME, &vol);
	if (!ret && !vol.root)
		ret = -ENOENT;
	if (!ret)
		ret = rfs_tree_lookup(fs->pool, &vol, "M", 1, &m, &ml, NULL);
	if (ret == -ENOENT || (!ret && (ml != sizeof(m) || m.magic != RFS_VOL_MAGIC))) {
		rfs_log(RFS_LOG_ERR, "%s: the pool holds no reflinkfs filesystem (run `reflinkfs mkfs` to make one)",
			path);
		ret = -EINVAL;
	} else if (!ret && m.version > RFS_VOL_VERSION) {
		rfs_log(RFS_LOG_ERR, "%s: filesystem format version %u is newer than this program supports (%u); use a newer reflinkfs",
			path, m.version, RFS_VOL_VERSION);
		ret = -EPROTONOSUPPORT;
	}
	if (!ret)
		ret = vols_load(fs);
	struct rfs_irec root;
	if (!ret)
		ret = rec_get(fs->pool, &vol, "R", 1, &root, false);
	if (!ret && !has_index(fs)) {
		if (fs->rdonly) {
			rfs_log(RFS_LOG_WARN, "%s: filesystem format %u has no inode index: file handles (NFS, open_by_handle_at) of inodes the kernel no longer caches give ESTALE until one read-write mount builds it",
				path, fs->top->m.version);
		} else {
			rfs_log(RFS_LOG_INFO, "%s: filesystem format %u: building the inode index (one walk of the whole tree, done once)",
				path, fs->top->m.version);
			ret = bref_build(fs);
			if (ret)
				rfs_log(RFS_LOG_ERR, "%s: building the inode index failed: %s; nothing was changed (mount read-only to use the pool as it is)",
					path, strerror(-ret));
		}
	}
	if (!ret && !fs->rdonly && fs->top->m.version < RFS_VOL_VERSION)
		ret = vol_upgrade(fs, path);
	if (!ret)
		ret = journal_open(fs, flags);
	rfs_pool_unlock(fs->pool);
	if (!ret && !fs->rdonly) {
		struct rfs_op op = {0};
		ret = op_begin(fs, &op, "freeing inodes unlinked before a crash", 0, 0);
		if (!ret)
			ret = op_end(&op, orphans_clean(fs));
	}
	if (ret)
		goto fail;

	struct rfs_node *rn = node_alloc();
	if (!rn) {
		ret = -ENOMEM;
		goto fail;
	}
	fs->root_ino = root.i.ino;
	rn->id = RFS_ROOT_NODE;
	rn->ino = root.i.ino;
	rn->vol = RFS_TOP_VOLUME;
	rn->nlookup = 1;
	node_lock(fs);
	fs->by_id[hash64(rn->id, fs->cap)] = rn;
	fs->by_ino[hash64(ino_key(rn->vol, rn->ino), fs->cap)] = rn;
	fs->nnodes = 1;
	node_unlock(fs);
	*out = fs;
	return 0;
fail:
	jnl_close(fs->jnl);
	dm_fini(fs);
	rfs_pool_close(fs->pool);
	vols_free(fs);
	free(fs->by_id);
	free(fs->by_ino);
	pthread_mutex_destroy(&fs->nlock);
	free(fs);
	return ret;
}

static void fs_free(rfs_fs *fs)
{
	for (size_t i = 0; i < fs->cap; i++) {
		struct rfs_node *n = fs->by_id[i], *next;
		for (; n; n = next) {
			next = n->next_id;
			node_free_mem(fs, n);
		}
	}
	free(fs->by_id);
	free(fs->by_ino);
	vols_free(fs);
	jnl_close(fs->jnl);
	link_names_free(fs);
	pthread_mutex_destroy(&fs->nlock);
	/* A watch points at its fs: the daemon frees them first. */
	assert(!fs->watches);
	pthread_mutex_destroy(&fs->wlock);
	changes_wait_fini(fs);
	dm_fini(fs);
	free(fs);
}

int rfs_fs_close(rfs_fs *fs)
{
	int ret = 0;
	if (!fs)
		return 0;
	struct rfs_op op = {0};
	if (!fs->rdonly &&
	    (ret = op_begin(fs, &op, "freeing unlinked inodes at close", 0, 0)) == 0) {
		/* Orphans still held open die with the mount. */
		node_lock(fs);
		for (size_t i = 0; i < fs->cap && !ret; i++)
			for (struct rfs_node *n = fs->by_id[i]; n && !ret; n = n->next_id)
				if (n->in_table && !n->dead)
					ret = orphan_reap(fs, n);
		node_unlock(fs);
		if (!ret && fs->top->dirty) {
			rfs_tree vol;
			ret = rfs_catalog_get(fs->pool, RFS_TOP_VOLUME, &vol);
			if (!ret)
				ret = meta_store(fs, fs->top, &vol);
			if (!ret)
				ret = rfs_catalog_set(fs->pool, RFS_TOP_VOLUME, &vol);
		}
		if (!ret)
			ret = vols_store(fs);
		/* Failed halfway: op_end discards the transaction (the pool
		 * keeps its last commit) rather than commit half of it. */
		op_end(&op, ret);
		if (!ret)
			ret = rfs_pool_commit(fs->pool);
	}
	rfs_pool_close(fs->pool);
	fs_free(fs);
	return ret;
}

void rfs_fs_abandon(rfs_fs *fs)
{
	rfs_pool_close(fs->pool);
	fs_free(fs);
}

void rfs_fs_crash(rfs_fs *fs, enum rfs_crash_mode mode, uint64_t seed)
{
	rfs_pool_crash(fs->pool, mode, seed);
	fs_free(fs);
}

rfs_pool *rfs_fs_pool(rfs_fs *fs)
{
	return fs->pool;
}

bool rfs_fs_rdonly(const rfs_fs *fs)
{
	return fs->rdonly;
}

int rfs_fs_sync(rfs_fs *fs)
{
	if (fs->rdonly)
		return 0;
	dm_settle(fs, NULL);
	return rfs_pool_commit(fs->pool);
}

int rfs_fs_commit_background(rfs_fs *fs)
{
	if (fs->rdonly)
		return 0;
	dm_settle(fs, NULL);
	return rfs_pool_commit_background(fs->pool);
}

void rfs_fs_punch_warm(rfs_fs *fs)
{
	if (!fs->rdonly)
		rfs_pool_punch_warm(fs->pool);
}

/* ---- attributes ------------------------------------------------------------- */

int rfs_fs_getattr(rfs_fs *fs, rfs_nodeid id, struct stat *st)
{
	struct rfs_irec r;
	dm_settle_id(fs, id); /* its size and times (file_delay.c) */
	rfs_pool_rdlock(fs->pool);
	struct rfs_node *n = node_get(fs, id);
	int ret = n ? inode_read(fs, n, &r) : -ESTALE;
	rfs_pool_unlock(fs->pool);
	if (!ret)
		rec_to_stat(n->vol, &r, st);
	return ret;
}

static int setattr_op(rfs_fs *fs, struct rfs_node *n, const struct stat *in,
		      int to_set, struct stat *out);

int rfs_fs_setattr(rfs_fs *fs, rfs_nodeid id, const struct stat *in,
		   int to_set, struct stat *out)
{
	struct rfs_node *n = node_get(fs, id);
	if (!n)
		return -ESTALE;
	/* Shrinking is a deletion of extents, but the partial last block is
	 * rewritten: one data block and the extent changes.  A size on a
	 * block boundary rewrites no block (but for a shared or inline tail,
	 * whose copy then fails for space before anything changed), so on a
	 * full pool it goes on without one: a truncate is how space is
	 * freed, and the kernel truncates a file back after a short direct
	 * write. */
	struct rfs_op op = {0};
	op_target(&op, n, (to_set & RFS_SET_SIZE) ? RFS_PREMOD_TRUNCATE : RFS_PREMOD_ATTR);
	int ret;
	uint64_t data = (to_set & RFS_SET_SIZE) ? 1 : 0;
	do {
		uint64_t meta = op_meta(op_depth(fs, n), 4);
		ret = op_begin(fs, &op, "setattr", meta, data);
		if (ret == -ENOSPC && data && in->st_size % RFS_BLOCK_SIZE == 0)
			ret = op_begin(fs, &op, "setattr", meta, data = 0);
		if (ret)
			return ret;
		ret = setattr_op(fs, n, in, to_set, out);
	} while ((ret = op_end(&op, ret)) == OP_RETRY);
	return ret;
}

static int setattr_op(rfs_fs *fs, struct rfs_node *n, const struct stat *in,
		      int to_set, struct stat *out)
{
	struct rfs_ipath p;
	int ret = ip_load(fs, n, true, &p);
	if (ret)
		return ret;
	struct rfs_inode *i = &ip_rec(&p)->i;
	uint64_t osize = i->size;
	if ((to_set & RFS_SET_SIZE) && !S_ISREG(i->mode)) {
		ret = S_ISDIR(i->mode) ? -EISDIR : -EINVAL;
		goto done;
	}
	if ((to_set & RFS_SET_SIZE) && (uint64_t)in->st_size > RFS_FILE_MAX) {
		ret = -EFBIG;
		goto done;
	}
	if (to_set & RFS_SET_SIZE) {
		ret = file_truncate_locked(fs, ip_rec(&p), (uint64_t)in->st_size);
		if (ret)
			goto done;
		touch_mc(i);
	}
	if (to_set & RFS_SET_MODE) {
		i->mode = (i->mode & S_IFMT) | (in->st_mode & 07777);
		if (!S_ISLNK(i->mode)) {
			ret = acl_update_on_chmod(fs, ip_tree(&p), i->mode);
			if (ret)
				goto done;
		}
	}
	if (to_set & RFS_SET_UID)
		i->uid = in->st_uid;
	if (to_set & RFS_SET_GID)
		i->gid = in->st_gid;
	if (to_set & RFS_SET_ATIME_NOW) {
		now_ts(&i->atime, &i->atime_ns);
	} else if (to_set & RFS_SET_ATIME) {
		i->atime = in->st_atim.tv_sec;
		i->atime_ns = (uint32_t)in->st_atim.tv_nsec;
	}
	if (to_set & RFS_SET_MTIME_NOW) {
		now_ts(&i->mtime, &i->mtime_ns);
	} else if (to_set & RFS_SET_MTIME) {
		i->mtime = in->st_mtim.tv_sec;
		i->mtime_ns = (uint32_t)in->st_mtim.tv_nsec;
	}
	touch_c(i);
	if (to_set & RFS_SET_CTIME) {
		i->ctime = in->st_ctim.tv_sec;
		i->ctime_ns = (uint32_t)in->st_ctim.tv_nsec;
	}
	if (out)
		rec_to_stat(n->vol, ip_rec(&p), out);
done:
	ret = ip_done(fs, &p, 0, ret);
	if (!ret && (to_set & RFS_SET_SIZE)) {
		uint64_t ns = (uint64_t)in->st_size, lo = ns < osize ? ns : osize;
		op_rec_node(fs, RFS_CHANGE_DATA, n, lo, (ns > osize ? ns : osize) - lo);
	}
	if (!ret && (to_set & ~RFS_SET_SIZE))
		op_rec_node(fs, RFS_CHANGE_ATTR, n, 0, 0);
	return ret;
}

/* ---- statfs ------------------------------------------------------------------ */

int rfs_fs_statfs(rfs_fs *fs, struct statvfs *st)
{
	struct rfs_pool_stats ps;
	memset(st, 0, sizeof(*st));
	fs_rdlock(fs);
	rfs_pool_stats(fs->pool, &ps);
	/* Blocks freed in the running transaction count as free: used_blocks
	 * no longer holds them, and a data allocation that runs short
	 * commits to reuse them.  f_bavail leaves out the metadata reserve
	 * (deletions on a full pool need it), so an fallocate of what it
	 * advertises succeeds (fstests generic/103). */
	uint64_t avail = rfs_pool_data_avail(fs->pool);
	/* Blocks of deleted files still in the drop queue are allocated,
	 * so they count as used here until the background release frees
	 * them (reclaim.c): f_bfree and f_bavail rise as it runs. */
	uint64_t ninodes = 0;
	for (size_t i = 0; i < fs->nvols; i++)
		if (!fs->vols[i]->gone)
			ninodes += fs->vols[i]->m.ninodes;
	rfs_pool_unlock(fs->pool);
	uint64_t total = ps.total_blocks - ps.data_start;
	uint64_t used = ps.used_blocks - ps.data_start;
	uint64_t freeb = total > used ? total - used : 0;
	st->f_bsize = RFS_BLOCK_SIZE;
	st->f_frsize = RFS_BLOCK_SIZE;
	st->f_blocks = total;
	st->f_bfree = freeb;
	st->f_bavail = avail < freeb ? avail : freeb;
	/* Inodes are tree records: roughly one per free block. */
	st->f_files = ninodes + freeb;
	st->f_ffree = freeb;
	st->f_favail = st->f_bavail;
	st->f_namemax = RFS_NAME_MAX;
	st->f_fsid = RFS_TOP_VOLUME;
	if (fs->rdonly)
		st->f_flag |= ST_RDONLY;
	return 0;
}

/* ---- fsck --------------------------------------------------------------------- */

struct fsck_ctx {
	void (*report)(void *arg, const char *what);
	void *arg;
	long problems;
	/* back-pointer index (format 2): the index, and the inode numbers
	 * whose back-pointer the walk found right */
	bool has_index;
	rfs_tree idx;
	uint64_t *named;
	size_t nnamed, capnamed;
};

static void fsck_engine_report(void *arg, uint64_t blocknr, const char *what)
{
	struct fsck_ctx *c = arg;
	char line[512];
	/* The engine's lines mostly name their block already. */
	if (blocknr && strncmp(what, "block ", 6))
		snprintf(line, sizeof(line), "block %llu: %s", (unsigned long long)blocknr, what);
	else
		snprintf(line, sizeof(line), "%s", what);
	c->report(c->arg, line);
}

static void fsck_problem(struct fsck_ctx *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void fsck_problem(struct fsck_ctx *c, const char *fmt, ...)
{
	char line[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	c->problems++;
	c->report(c->arg, line);
}

/* Inline data (RFS_INODE_INLDATA): only on a regular file without a file
 * tree or inline extents, in a format 4 volume, its tail exactly the
 * file's 1..RFS_INLDATA_MAX bytes, no data block counted. */
static void fsck_inldata(rfs_fs *fs, struct fsck_ctx *c, const struct rfs_irec *r,
			 const char *path, const char *name)
{
	if (!S_ISREG(r->i.mode) || r->i.subtree || (r->i.flags & (RFS_INODE_LINKED | RFS_INODE_INLEXT))) {
		fsck_problem(c, "%s/%s: inline data on a record that cannot have it", path, name);
		return;
	}
	if (!inline_data_ok(fs))
		fsck_problem(c, "%s/%s: inline data in a format %u volume", path, name,
			     fs->top->m.version);
	if (r->taillen != r->i.size || r->i.size == 0 || r->i.size > RFS_INLDATA_MAX)
		fsck_problem(c, "%s/%s: %zu bytes of inline data in a file of %llu bytes (at most %u)",
			     path, name, r->taillen, (unsigned long long)r->i.size,
			     (unsigned)RFS_INLDATA_MAX);
	if (r->i.blocks)
		fsck_problem(c, "%s/%s: %llu blocks recorded for a file with inline data", path,
			     name, (unsigned long long)r->i.blocks);
}

/* A compact record (irec.c) only in a volume of format RFS_VOL_COMPACT
 * or later: an older reflinkfs would misread it. */
static void fsck_compact(rfs_fs *fs, struct fsck_ctx *c, const void *v, size_t vl,
			 const char *path, const char *name)
{
	if (rec_is_compact(v, vl) && !compact_ok(fs))
		fsck_problem(c, "%s/%s: compact inode record in a format %u volume", path, name,
			     fs->top->m.version);
}

/* The record's form: an inline extent map (RFS_INODE_INLEXT) only on a
 * regular file without a file tree, in a format 3 volume, with the item's
 * RFS_ITEM_EXTLIST, decoding to sorted extents whose blocks add up to the
 * record's block count; inline data as fsck_inldata says. */
static void fsck_form(rfs_fs *fs, struct fsck_ctx *c, const struct rfs_irec *r, uint8_t iflags,
		      const char *path, const char *name)
{
	bool inl = r->i.flags & RFS_INODE_INLEXT;
	if (r->i.flags & RFS_INODE_INLDATA) {
		if (iflags & RFS_ITEM_EXTLIST)
			fsck_problem(c, "%s/%s: inline data and item flags disagree", path, name);
		fsck_inldata(fs, c, r, path, name);
		return;
	}
	if (inl != !!(iflags & RFS_ITEM_EXTLIST)) {
		fsck_problem(c, "%s/%s: inline extent flag and item flags disagree", path, name);
		return;
	}
	if (!inl)
		return;
	if (!S_ISREG(r->i.mode) || r->i.subtree || (r->i.flags & RFS_INODE_LINKED)) {
		fsck_problem(c, "%s/%s: inline extent map on a record that cannot have one", path,
			     name);
		return;
	}
	if (!inline_ok(fs))
		fsck_problem(c, "%s/%s: inline extent map in a format %u volume", path, name,
			     fs->top->m.version);
	if (r->taillen > RFS_INLEXT_MAX)
		fsck_problem(c, "%s/%s: inline extent map of %zu bytes (at most %u)", path, name,
			     r->taillen, RFS_INLEXT_MAX);
	struct rfs_ext *x = malloc(sizeof(*x) * RFS_INLEXT_CAP);
	if (!x) {
		c->problems++;
		return;
	}
	int n = inl_decode(r, x, RFS_INLEXT_CAP);
	if (n < 0) {
		fsck_problem(c, "%s/%s: corrupt inline extent map", path, name);
	} else {
		uint64_t blocks = 0;
		for (int i = 0; i < n; i++)
			blocks += x[i].n;
		if (blocks != r->i.blocks)
			fsck_problem(c, "%s/%s: %llu blocks recorded, its inline extents map %llu",
				     path, name, (unsigned long long)r->i.blocks,
				     (unsigned long long)blocks);
	}
	free(x);
}

/* The back-pointer of an inode named name in directory dir_ino. */
static int fsck_bref(rfs_fs *fs, struct fsck_ctx *c, uint64_t dir_ino, uint64_t ino,
		     const char *path, const char *name, size_t nl)
{
	uint64_t parent;
	char bname[RFS_NAME_MAX + 1];
	size_t blen;
	if (!c->has_index)
		return 0;
	int ret = bref_read(fs, &c->idx, ino, &parent, bname, &blen);
	if (ret == -ENOENT || ret == -EUCLEAN) {
		fsck_problem(c, "%s/%s: inode %llu is missing from the inode index", path, name,
			     (unsigned long long)ino);
		return 0;
	}
	if (ret)
		return ret;
	if (parent != dir_ino || blen != nl || memcmp(bname, name, nl)) {
		fsck_problem(c, "%s/%s: the inode index names inode %llu \"%s\" in directory inode %llu",
			     path, name, (unsigned long long)ino, bname, (unsigned long long)parent);
		return 0;
	}
	if (c->nnamed == c->capnamed) {
		size_t ncap = c->capnamed ? c->capnamed * 2 : 1024;
		uint64_t *nn = realloc(c->named, ncap * sizeof(*nn));
		if (!nn)
			return -ENOMEM;
		c->named = nn;
		c->capnamed = ncap;
	}
	c->named[c->nnamed++] = ino;
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Every item of the index must be one the walk found (no stale ones). */
static int fsck_index_extra(rfs_fs *fs, struct fsck_ctx *c)
{
	rfs_cursor *cur;
	int ret;
	if (!c->has_index || !c->idx.root)
		return 0;
	qsort(c->named, c->nnamed, sizeof(*c->named), cmp_u64);
	ret = rfs_cursor_open(fs->pool, &c->idx, &cur);
	if (ret)
		return ret;
	for (ret = rfs_cursor_seek(cur, NULL, 0, 1); !ret; ret = rfs_cursor_step(cur, 1)) {
		const uint8_t *k;
		const uint8_t *v;
		size_t kl, vl;
		rfs_cursor_get(cur, (const void **)&k, &kl, (const void **)&v, &vl, NULL);
		if (kl != 9 || k[0] != 'B' || vl < 9 || vl > 8 + RFS_NAME_MAX) {
			fsck_problem(c, "inode index: malformed item (key of %zu bytes, value of %zu)",
				     kl, vl);
			continue;
		}
		uint64_t ino = get_be64(k + 1), parent;
		memcpy(&parent, v, 8);
		if (!bsearch(&ino, c->named, c->nnamed, sizeof(*c->named), cmp_u64))
			fsck_problem(c, "inode index: inode %llu (\"%.*s\" in directory inode %llu) is not reached by that name",
				     (unsigned long long)ino, (int)(vl - 8), (const char *)v + 8,
				     (unsigned long long)parent);
	}
	rfs_cursor_close(cur);
	return ret == -ENOENT ? 0 : ret;
}

/* What fsck counts per volume (same order as fs->vols). */
struct fsck_vol {
	uint64_t links;   /* stubs naming link-table records */
	uint64_t ninodes; /* inodes found */
	uint64_t roots;   /* entries rooting it (exactly 1 for a snapshot) */
};

/* Items of embedded directories in the directory tree t ('e' keys). */
static int fsck_emb_items(rfs_fs *fs, rfs_tree t, uint64_t *n)
{
	rfs_cursor *cur;
	*n = 0;
	if (!t.root)
		return 0;
	int ret = rfs_cursor_open(fs->pool, &t, &cur);
	if (ret)
		return ret;
	for (ret = rfs_cursor_seek(cur, "e", 1, 1); !ret; ret = rfs_cursor_step(cur, 1)) {
		const uint8_t *k;
		size_t kl;
		rfs_cursor_get(cur, (const void **)&k, &kl, NULL, NULL, NULL);
		if (k[0] != 'e')
			break;
		(*n)++;
	}
	rfs_cursor_close(cur);
	return ret == -ENOENT ? 0 : ret;
}

/* Check one directory's entries (recursively), in volume vi: counts
 * linked names, inodes and volume roots.  *vols_found: volume roots in
 * its subtree; *emb_found: when dir is embedded, the entries of its
 * embedded subtree (its own and those of the embedded directories below
 * it, all in the tree holding it). */
static int fsck_dir(rfs_fs *fs, struct fsck_ctx *c, struct fsck_vol *fv, size_t vi,
		    const struct rfs_irec *dir, const struct dirloc *loc, const char *path,
		    int depth, uint64_t *vols_found, uint64_t *emb_found)
{
	rfs_tree t = loc->t;
	rfs_cursor *cur;
	uint64_t entries = 0, subdirs = 0, below = 0, vols = 0, emb = 0, held = 0;
	bool embedded = is_embed(&dir->i);
	int ret;
	if (!t.root)
		goto counts;
	if (depth > 4096) {
		fsck_problem(c, "%s: directory nesting too deep", path);
		return 0;
	}
	ret = rfs_cursor_open(fs->pool, &t, &cur);
	if (ret)
		return ret;
	/* Collect children first (recursion needs its own cursors). */
	for (ret = dloc_seek(loc, cur, 0); !ret; ret = rfs_cursor_step(cur, 1)) {
		const uint8_t *k;
		const void *v;
		size_t kl, vl, nl;
		struct rfs_irec r;
		uint8_t iflags;
		const char *nm;
		uint64_t h;
		rfs_cursor_get(cur, (const void **)&k, &kl, &v, &vl, &iflags);
		int e = dloc_entry(loc, k, kl, &h, &nm, &nl);
		if (e == 0) {
			ret = -ENOENT; /* past its entries */
			break;
		}
		entries++;
		if (e < 0) {
			fsck_problem(c, "%s: an entry key of %zu bytes is malformed", path, kl);
			continue;
		}
		char name[RFS_NAME_MAX + 1];
		memcpy(name, nm, nl);
		name[nl] = 0;
		if (h != name_hash(nm, nl))
			fsck_problem(c, "%s/%s: entry key does not match its name", path, name);
		if (rec_decode(v, vl, &r)) {
			fsck_problem(c, "%s/%s: bad inode record", path, name);
			continue;
		}
		fsck_compact(fs, c, v, vl, path, name);
		fsck_form(fs, c, &r, iflags, path, name);
		if (r.i.flags & RFS_INODE_LINKED) {
			fv[vi].links++;
			below++;
			continue;
		}
		size_t ci = vi;
		if (r.i.flags & RFS_INODE_VOLROOT) {
			struct rfs_vol *w = S_ISDIR(r.i.mode) ? vol_get(fs, r.i.volume) : NULL;
			if (!w) {
				fsck_problem(c, "%s/%s: root of volume %llu, which does not exist",
					     path, name, (unsigned long long)r.i.volume);
				continue;
			}
			for (ci = 0; fs->vols[ci] != w; ci++)
				;
			fv[ci].roots++;
			vols++;
		}
		fv[ci].ninodes++;
		/* The inode index covers the top volume (snapshots have none
		 * yet: docs/ARCHITECTURE.md). */
		if (fs->vols[ci] == fs->top) {
			ret = fsck_bref(fs, c, dir->i.ino, r.i.ino, path, name, nl);
			if (ret) {
				rfs_cursor_close(cur);
				return ret;
			}
		}
		if (S_ISDIR(r.i.mode)) {
			subdirs++;
			char *sub = malloc(strlen(path) + nl + 2);
			if (!sub) {
				rfs_cursor_close(cur);
				return -ENOMEM;
			}
			sprintf(sub, "%s/%s", path, name);
			/* The cursor stays valid: nothing mutates during fsck. */
			uint64_t sv = 0, se = 0;
			struct dirloc sl;
			dloc_of(&sl, &r.i, &t);
			if (is_embed(&r.i)) {
				if (r.i.subtree || (r.i.flags & RFS_INODE_VOLROOT))
					fsck_problem(c, "%s: embedded directory with a tree of its "
						     "own, or a volume root", sub);
			}
			ret = fsck_dir(fs, c, fv, ci, &r, &sl, sub, depth + 1, &sv, &se);
			if (!ret && is_embed(&r.i)) {
				/* a top counts its embedded subtree, others 0 */
				uint64_t want = embedded ? 0 : se;
				if (r.i.volume != want)
					fsck_problem(c, "%s: embedded entries counted %llu, found %llu",
						     sub, (unsigned long long)r.i.volume,
						     (unsigned long long)want);
				emb += se;
				held += se;
			}
			free(sub);
			if (ret) {
				rfs_cursor_close(cur);
				return ret;
			}
			/* A volume's hard links stay inside it. */
			if (ci == vi)
				below += r.i.links_below;
			vols += sv;
		} else if (r.i.nlink != 1) {
			fsck_problem(c, "%s/%s: link count %u, expected 1", path, name, r.i.nlink);
		}
	}
	rfs_cursor_close(cur);
	if (ret != -ENOENT)
		return ret;
	if (!embedded && dir->i.subtree) {
		/* every item of an embedded directory in this tree belongs to
		 * one found below */
		uint64_t items;
		ret = fsck_emb_items(fs, t, &items);
		if (ret)
			return ret;
		if (items != held)
			fsck_problem(c, "%s: %llu entries of embedded directories in its tree, "
				     "%llu belong to its embedded directories", *path ? path : "/",
				     (unsigned long long)items, (unsigned long long)held);
	}
counts:
	if (dir->i.size != entries)
		fsck_problem(c, "%s: entry count %llu, found %llu", path,
			     (unsigned long long)dir->i.size, (unsigned long long)entries);
	if (dir->i.nlink != 2 + subdirs)
		fsck_problem(c, "%s: link count %u, expected %llu", path, dir->i.nlink,
			     (unsigned long long)(2 + subdirs));
	if (dir->i.links_below != below)
		fsck_problem(c, "%s: hard-link names below %llu, found %llu", path,
			     (unsigned long long)dir->i.links_below, (unsigned long long)below);
	if (dir->i.vols_below != vols)
		fsck_problem(c, "%s: volume roots below %llu, found %llu", path,
			     (unsigned long long)dir->i.vols_below, (unsigned long long)vols);
	*vols_found = vols;
	*emb_found = embedded ? entries + emb : 0;
	return 0;
}

/* One volume's link table: every record's nlink equals the stubs naming
 * it, and the inode count adds up. */
static int fsck_vol(rfs_fs *fs, struct fsck_ctx *c, struct rfs_vol *v, struct fsck_vol *f)
{
	rfs_tree vt;
	struct rfs_irec tab;
	int ret = rfs_catalog_get(fs->pool, v->id, &vt);
	if (!ret)
		ret = rec_get(fs->pool, &vt, "T", 1, &tab, false);
	if (ret) {
		fsck_problem(c, "volume %llu: cannot read its link table: %s",
			     (unsigned long long)v->id, strerror(-ret));
		return 0;
	}
	if (v != fs->top && f->roots != 1)
		fsck_problem(c, "volume %llu: %llu directory entries are its root, expected 1",
			     (unsigned long long)v->id, (unsigned long long)f->roots);
	uint64_t tlinks = 0;
	rfs_tree tt = FS_TREE(tab.i.subtree, RFS_OWNER_LINKS);
	if (tt.root) {
		rfs_cursor *cur;
		ret = rfs_cursor_open(fs->pool, &tt, &cur);
		if (ret)
			return ret;
		for (ret = rfs_cursor_seek(cur, NULL, 0, 1); !ret; ret = rfs_cursor_step(cur, 1)) {
			const void *k, *val;
			size_t kl, vl;
			struct rfs_irec r;
			uint8_t iflags;
			rfs_cursor_get(cur, &k, &kl, &val, &vl, &iflags);
			if (rec_decode(val, vl, &r)) {
				fsck_problem(c, "volume %llu: link table: bad inode record",
					     (unsigned long long)v->id);
				continue;
			}
			fsck_compact(fs, c, val, vl, "link table", "");
			fsck_form(fs, c, &r, iflags, "link table", "");
			tlinks += r.i.nlink;
			f->ninodes++;
			/* nlink 0: an orphan a crash left behind (unlinked
			 * while open); the next read-write mount frees it. */
		}
		rfs_cursor_close(cur);
		if (ret != -ENOENT)
			return ret;
	}
	if (tlinks != f->links)
		fsck_problem(c, "volume %llu: hard links: %llu names, link counts add up to %llu",
			     (unsigned long long)v->id, (unsigned long long)f->links,
			     (unsigned long long)tlinks);
	if (!(v->m.flags & RFS_VOL_UNCOUNTED) && f->ninodes != v->m.ninodes)
		fsck_problem(c, "volume %llu: inode count %llu, found %llu",
			     (unsigned long long)v->id, (unsigned long long)v->m.ninodes,
			     (unsigned long long)f->ninodes);
	return 0;
}

long rfs_fs_fsck(const char *path, void (*report)(void *arg, const char *what),
		 void *arg)
{
	struct fsck_ctx c = {report, arg, 0, false, {0, 0}, NULL, 0, 0};
	rfs_fs *fs;
	int ret = rfs_fs_open(path, RFS_FS_RDONLY, &fs);
	if (ret)
		return ret;
	rfs_pool_rdlock(fs->pool);
	struct rfs_check_stats cs;
	long n = rfs_check(fs->pool, fsck_engine_report, &c, &cs);
	if (n < 0) {
		ret = (int)n;
		goto out;
	}
	c.problems += n;
	rfs_tree vol;
	struct rfs_irec root;
	struct fsck_vol *fv = calloc(fs->nvols, sizeof(*fv));
	if (!fv) {
		ret = -ENOMEM;
		goto out;
	}
	ret = rfs_catalog_get(fs->pool, RFS_TOP_VOLUME, &vol);
	if (!ret)
		ret = rec_get(fs->pool, &vol, "R", 1, &root, false);
	if (ret) {
		fsck_problem(&c, "the top volume: cannot read its root directory: %s",
			     strerror(-ret));
		free(fv);
		ret = 0;
		goto out;
	}
	c.has_index = has_index(fs);
	if (c.has_index && (ret = bref_index(fs, &c.idx))) {
		fsck_problem(&c, "the top volume: cannot read its inode index: %s",
			     strerror(-ret));
		c.has_index = false;
	}
	size_t top = 0;
	while (fs->vols[top] != fs->top)
		top++;
	fv[top].ninodes = 1; /* the root */
	uint64_t vols = 0;
	struct dirloc rl;
	dloc_of(&rl, &root.i, &vol);
	uint64_t emb;
	if (is_embed(&root.i))
		fsck_problem(&c, "the root directory is marked embedded");
	ret = fsck_dir(fs, &c, fv, top, &root, &rl, "", 0, &vols, &emb);
	if (!ret)
		ret = fsck_index_extra(fs, &c);
	for (size_t i = 0; !ret && i < fs->nvols; i++)
		ret = fsck_vol(fs, &c, fs->vols[i], &fv[i]);
	free(fv);
out:
	rfs_pool_unlock(fs->pool);
	rfs_fs_close(fs);
	free(c.named);
	return ret < 0 ? ret : c.problems;
}
