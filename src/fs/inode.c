/*
 * Inode records and paths.  An inode record lives in its directory entry
 * (or in the volume's link table when hard-linked); it is reached by
 * walking from the volume root down the in-memory path of the node.  To
 * modify it, the walk uses rfs_tree_lookup_mut at every level (so nested
 * roots are exclusively owned, whatever was cloned), and ip_store writes
 * each new subtree root back upward, up to the catalog.
 */
#include "fs/op.h"

#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>

void put_be16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

uint16_t get_be16(const uint8_t *p)
{
	return (uint16_t)((p[0] << 8) | p[1]);
}

void now_ts(int64_t *sec, uint32_t *nsec)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	*sec = ts.tv_sec;
	*nsec = (uint32_t)ts.tv_nsec;
}

void touch_c(struct rfs_inode *i)
{
	now_ts(&i->ctime, &i->ctime_ns);
}

void touch_mc(struct rfs_inode *i)
{
	now_ts(&i->mtime, &i->mtime_ns);
	i->ctime = i->mtime;
	i->ctime_ns = i->mtime_ns;
}

/* 63-bit FNV-1a of the name, at least 16 (readdir offsets 0..15 are
 * reserved for "." and ".."). */
uint64_t name_hash(const char *name, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (size_t i = 0; i < len; i++) {
		h ^= (uint8_t)name[i];
		h *= 0x100000001b3ull;
	}
	h >>= 1;
	if (h < 16)
		h += 16;
	return h;
}

size_t dent_key(uint8_t *key, const char *name, size_t len)
{
	key[0] = 'N';
	put_be64(key + 1, name_hash(name, len));
	memcpy(key + 9, name, len);
	return 9 + len;
}

size_t table_key(uint8_t *key, uint64_t ino)
{
	key[0] = 'I';
	put_be64(key + 1, ino);
	return 9;
}

int rec_put_pool(rfs_pool *pool, rfs_tree *t, const void *key, size_t klen,
		 const struct rfs_irec *r, int mode, bool compact)
{
	uint8_t val[RFS_VAL_MAX];
	size_t vlen = rec_encode(r, val, compact);
	return rfs_tree_put(pool, t, key, klen, val, vlen, rec_item_flags(r), mode);
}

int rec_put(rfs_fs *fs, rfs_tree *t, const void *key, size_t klen,
	    const struct rfs_irec *r, int mode)
{
	return rec_put_pool(fs->pool, t, key, klen, r, mode, compact_ok(fs));
}

int rec_get(rfs_pool *pool, rfs_tree *t, const void *key, size_t klen,
	    struct rfs_irec *r, bool mut)
{
	uint8_t val[RFS_VAL_MAX];
	size_t vlen = sizeof(val);
	int ret = mut ? rfs_tree_lookup_mut(pool, t, key, klen, val, &vlen, NULL)
		      : rfs_tree_lookup(pool, t, key, klen, val, &vlen, NULL);
	if (ret)
		return ret;
	return rec_decode(val, vlen, r);
}

/*
 * Decoded records (session 10).  Every WRITE loads the same records --
 * the volume root's and the file's -- and decoding them was a third of
 * the load (two records, 1,300 instructions per WRITE), though the
 * root's bytes had not changed and the file's were the ones the last
 * WRITE stored.  rec_decode is a function of the bytes alone, so a
 * decoded copy serves any bytes equal to the ones it came from: no
 * generation, nothing to invalidate.  Mutable loads (pool write lock:
 * one holder at a time, whichever worker thread it is) look the bytes
 * up in fs->irc and keep what they decode there; ip_store keeps what it
 * encodes (decode(encode(r)) is r: every field of struct rfs_inode is
 * in both forms).  Debug builds decode again on every hit and compare.
 */
static uint64_t irc_ino(const uint8_t *enc)
{
	/* Bytes 8..13 hold the inode number in both forms (irec.c), not
	 * the presence bits of bytes 14 and 15, which change with the
	 * record's times. */
	uint64_t x;
	memcpy(&x, enc + 8, 8);
	return x & ((1ull << 48) - 1);
}

/* The set of 2 slots for the record of that inode. */
static struct irc_ent *irc_set(rfs_fs *fs, uint64_t ino)
{
	return &fs->irc[((ino * 0x9e3779b97f4a7c15ull) >> (64 - IRC_BITS)) * IRC_WAYS];
}

/* rec_decode(enc, len) gives back r: what irc_get and irc_put rely on. */
static void assert_decodes_to(const uint8_t *enc, size_t len, const struct rfs_irec *r)
{
#ifdef RFS_DEBUG
	static _Thread_local struct rfs_irec d;
	int ret = rec_decode(enc, len, &d);
	assert(ret == 0 && !memcmp(&d.i, &r->i, sizeof(d.i)) && d.taillen == r->taillen &&
	       !memcmp(d.tail, r->tail, d.taillen));
	(void)ret;
#else
	(void)enc;
	(void)len;
	(void)r;
#endif
}

/* r from the copy decoded from the same bytes: true, or false when none
 * is kept.  Pool write lock. */
static bool irc_get(rfs_fs *fs, const uint8_t *enc, size_t len, struct rfs_irec *r)
{
	RFS_ASSERT_LOCK(rfs_pool_holds_wrlock(fs->pool));
	if (len < 16 || len > IRC_ENC_MAX)
		return false;
	const struct irc_ent *e = irc_set(fs, irc_ino(enc));
	if (e->len != len || memcmp(e->enc, enc, len)) {
		e++;
		if (e->len != len || memcmp(e->enc, enc, len))
			return false;
	}
	memcpy(&r->i, &e->i, sizeof(r->i));
	r->taillen = e->taillen;
	memcpy(r->tail, enc + len - e->taillen, e->taillen);
	assert_decodes_to(enc, len, r);
	return true;
}

/* Keep r as the decoding of enc[0..len).  Pool write lock. */
static void irc_put(rfs_fs *fs, const uint8_t *enc, size_t len, const struct rfs_irec *r)
{
	RFS_ASSERT_LOCK(rfs_pool_holds_wrlock(fs->pool));
	if (len < 16 || len > IRC_ENC_MAX || r->taillen > len)
		return;
	assert_decodes_to(enc, len, r);
	/* The slot of the same inode's older record, else the older slot
	 * of the set: the last two inodes of the set stay. */
	uint64_t ino = irc_ino(enc);
	struct irc_ent *e = irc_set(fs, ino);
	if (e[1].len && irc_ino(e[1].enc) == ino)
		e++;
	else if (e[0].len && irc_ino(e[0].enc) != ino)
		e[1] = e[0];
	e->len = (uint16_t)len;
	e->taillen = (uint16_t)r->taillen;
	memcpy(e->enc, enc, len);
	memcpy(&e->i, &r->i, sizeof(e->i));
}

/* Load level lv's record (lv->key in lv->parent) to change it: lv keeps
 * its bytes and what they decode to for ip_store_items. */
static int lv_get_mut(rfs_fs *fs, struct rfs_ilevel *lv)
{
	size_t vlen = sizeof(lv->enc);
	int ret = rfs_tree_lookup_mut(fs->pool, &lv->parent, lv->key, lv->klen, lv->enc, &vlen,
				      NULL);
	lv->have_enc = false;
	if (ret)
		return ret;
	if (irc_get(fs, lv->enc, vlen, &lv->rec)) {
		fs->irc_hits++;
	} else {
		ret = rec_decode(lv->enc, vlen, &lv->rec);
		if (ret)
			return ret;
		fs->irc_misses++;
		irc_put(fs, lv->enc, vlen, &lv->rec);
	}
	lv->enc_len = (uint16_t)vlen;
	lv->have_enc = true;
	lv->orig = lv->rec.i;
	lv->orig_taillen = (uint16_t)lv->rec.taillen;
	return 0;
}

/* Load level lv's record (lv->key in lv->parent), to read or change it. */
static inline int lv_get(rfs_fs *fs, struct rfs_ilevel *lv, bool mut)
{
	if (mut)
		return lv_get_mut(fs, lv);
	size_t vlen = sizeof(lv->enc);
	int ret = rfs_tree_lookup(fs->pool, &lv->parent, lv->key, lv->klen, lv->enc, &vlen, NULL);
	lv->have_enc = false;
	return ret ? ret : rec_decode(lv->enc, vlen, &lv->rec);
}

void rec_to_stat(uint64_t vol, const struct rfs_irec *r, struct stat *st)
{
	const struct rfs_inode *i = &r->i;
	memset(st, 0, sizeof(*st));
	st->st_ino = (vol << 48) | i->ino;
	st->st_mode = i->mode;
	st->st_nlink = i->nlink;
	st->st_uid = i->uid;
	st->st_gid = i->gid;
	st->st_rdev = S_ISDIR(i->mode) ? 0 : i->rdev; /* see RFS_INODE_EMBED */
	st->st_size = (off_t)i->size;
	st->st_blksize = RFS_BLOCK_SIZE;
	st->st_blocks = (blkcnt_t)(i->blocks * (RFS_BLOCK_SIZE / 512));
	/* Inline data takes no block, but a file of data must not look
	 * sparse (st_blocks 0) to cp, tar and du: its bytes, in sectors. */
	if (i->flags & RFS_INODE_INLDATA)
		st->st_blocks = (blkcnt_t)div_up(i->size, 512);
	st->st_atim.tv_sec = i->atime;
	st->st_atim.tv_nsec = i->atime_ns;
	st->st_mtim.tv_sec = i->mtime;
	st->st_mtim.tv_nsec = i->mtime_ns;
	st->st_ctim.tv_sec = i->ctime;
	st->st_ctim.tv_nsec = i->ctime_ns;
}

uint64_t ino_alloc(rfs_fs *fs, uint64_t vol)
{
	RFS_ASSERT_LOCK(rfs_pool_holds_wrlock(fs->pool));
	struct rfs_vol *v = vol_get(fs, vol);
	assert(v);
	v->dirty = true;
	v->m.ninodes++;
	return v->m.next_ino++;
}

void vol_count(rfs_fs *fs, uint64_t vol, int delta)
{
	RFS_ASSERT_LOCK(rfs_pool_holds_wrlock(fs->pool));
	struct rfs_vol *v = vol_get(fs, vol);
	if (v) {
		v->m.ninodes += (uint64_t)(int64_t)delta;
		v->dirty = true;
	}
}

int meta_store(rfs_fs *fs, struct rfs_vol *v, rfs_tree *vt)
{
	RFS_ASSERT_LOCK(rfs_pool_holds_wrlock(fs->pool));
	int ret = rfs_tree_put(fs->pool, vt, "M", 1, &v->m, sizeof(v->m), 0,
			       RFS_PUT_UPSERT);
	if (!ret)
		v->dirty = false;
	return ret;
}

int vols_store(rfs_fs *fs)
{
	for (size_t i = 0; i < fs->nvols; i++) {
		struct rfs_vol *v = fs->vols[i];
		if (!v->dirty || v == fs->top || v->gone)
			continue;
		rfs_tree vt;
		int ret = rfs_catalog_get(fs->pool, v->id, &vt);
		if (!ret)
			ret = meta_store(fs, v, &vt);
		if (!ret)
			ret = rfs_catalog_set(fs->pool, v->id, &vt);
		if (ret)
			return ret;
	}
	return 0;
}

/* ---- paths ---------------------------------------------------------------- */

/*
 * Path levels come from a per-thread spare (one WRITE, one path: a
 * calloc of some 3 KiB per WRITE before, zeroing the name buffers and
 * record tails that the walk overwrites), else from malloc.  A level's
 * header and inode are zeroed; its key and tail bytes past klen and
 * taillen are never read.  The spare is freed when its thread exits.
 */
#define IP_SPARE_LEVELS 8
static _Thread_local struct rfs_ilevel *t_spare;
static _Thread_local bool t_spare_key_set; /* spare_key set in this thread */
static pthread_key_t spare_key;
static pthread_once_t spare_once = PTHREAD_ONCE_INIT;

static void spare_free(void *unused)
{
	(void)unused;
	free(t_spare);
	t_spare = NULL;
	t_spare_key_set = false;
}

static void spare_key_init(void)
{
	if (pthread_key_create(&spare_key, spare_free))
		abort(); /* out of keys at startup: nothing else would work either */
}

static int ip_alloc(struct rfs_ipath *p, int n, bool mut)
{
	memset(p, 0, sizeof(*p));
	if (n <= IP_SPARE_LEVELS && t_spare) {
		p->lv = t_spare;
		t_spare = NULL;
	} else {
		p->lv = malloc((size_t)(n > IP_SPARE_LEVELS ? n : IP_SPARE_LEVELS) * sizeof(*p->lv));
		if (!p->lv)
			return -ENOMEM;
	}
	for (int i = 0; i < n; i++) {
		memset(&p->lv[i], 0, offsetof(struct rfs_ilevel, key));
		memset(&p->lv[i].rec, 0, offsetof(struct rfs_irec, tail));
	}
	p->n = n;
	p->cap = n > IP_SPARE_LEVELS ? n : IP_SPARE_LEVELS;
	p->mut = mut;
	return 0;
}

int ip_shared(rfs_fs *fs, const struct rfs_ipath *p, bool *shared)
{
	*shared = false;
	for (int i = 0; i < p->n && !*shared; i++) {
		int ret = rfs_tree_path_shared(fs->pool, &p->lv[i].parent, p->lv[i].key,
					       p->lv[i].klen, shared);
		if (ret)
			return ret;
	}
	return 0;
}

void ip_free(struct rfs_ipath *p)
{
	if (p->lv && p->cap == IP_SPARE_LEVELS && !t_spare) {
		if (!t_spare_key_set) {
			pthread_once(&spare_once, spare_key_init);
			/* Any non-NULL value: the key's destructor frees
			 * t_spare when the thread exits. */
			t_spare_key_set = pthread_setspecific(spare_key, &spare_key) == 0;
		}
		if (t_spare_key_set) {
			t_spare = p->lv;
			p->lv = NULL;
		}
	}
	free(p->lv);
	p->lv = NULL;
	p->n = 0;
}

/*
 * A mutable walk failed at level k: the levels above may already have
 * been shadowed (their roots moved), so store them back, else the
 * catalog would keep pointing at freed nodes.
 */
static void ip_unwind(rfs_fs *fs, struct rfs_ipath *p, int k)
{
	int n = p->n;
	if (k > 0 && is_embed(&p->lv[k - 1].rec.i))
		p->lv[k - 1].parent.root = p->lv[k].parent.root; /* the same tree */
	else if (k > 0)
		p->lv[k - 1].rec.i.subtree = p->lv[k].parent.root;
	if (k == 0) {
		rfs_catalog_set(fs->pool, p->vol, &p->lv[0].parent);
		return;
	}
	p->n = k;
	ip_store(fs, p, 0);
	p->n = n;
}

int ip_load_table(rfs_fs *fs, uint64_t vol, uint64_t ino, bool mut,
		  struct rfs_ipath *p)
{
	RFS_ASSERT_LOCK(mut ? rfs_pool_holds_wrlock(fs->pool) : rfs_pool_holds_lock(fs->pool));
	int ret = mut ? vol_writable(fs, vol) : 0;
	if (ret)
		return ret;
	ret = ip_alloc(p, 2, mut);
	if (ret)
		return ret;
	p->in_table = true;
	p->vol = p->tvol = vol;
	ret = rfs_catalog_get(fs->pool, vol, &p->lv[0].parent);
	if (ret)
		goto fail;
	p->cat = p->lv[0].parent;
	p->cat_known = true;
	p->lv[0].parent.owner = RFS_OWNER_VOLUME;
	p->lv[0].key[0] = 'T';
	p->lv[0].klen = 1;
	ret = lv_get(fs, &p->lv[0], mut);
	if (ret) {
		if (mut)
			ip_unwind(fs, p, 0);
		goto fail;
	}
	p->lv[1].parent = FS_TREE(p->lv[0].rec.i.subtree, RFS_OWNER_LINKS);
	p->lv[1].klen = table_key(p->lv[1].key, ino);
	ret = lv_get(fs, &p->lv[1], mut);
	if (ret) {
		if (mut)
			ip_unwind(fs, p, 1);
		goto fail;
	}
	return 0;
fail:
	if (ret == -ENOENT)
		ret = -ESTALE;
	ip_free(p);
	return ret;
}

int ip_load(rfs_fs *fs, struct rfs_node *node, bool mut, struct rfs_ipath *p)
{
	RFS_ASSERT_LOCK(mut ? rfs_pool_holds_wrlock(fs->pool) : rfs_pool_holds_lock(fs->pool));
	/* Nothing below a read-only snapshot's root changes (its root
	 * entry itself can still be renamed or removed in its parent). */
	int wr = mut ? vol_writable(fs, node->vol) : 0;
	if (wr)
		return wr;
	/*
	 * Copy the path (every level's entry key, and the inode it must
	 * hold) under nlock.  With only the read lock held, a lookup in
	 * another thread may move a node of the chain (node_ref), freeing
	 * its name and perhaps its old parent's node.  The trees cannot
	 * change while the pool lock is held, so the copied path is walked
	 * without nlock.
	 */
	node_lock(fs);
	if (node->dead) {
		node_unlock(fs);
		return -ESTALE;
	}
	if (node->in_table) {
		node_unlock(fs);
		return ip_load_table(fs, node->vol, node->ino, mut, p);
	}
	int n = 1;
	for (struct rfs_node *x = node; x->parent; x = x->parent)
		n++;
	int ret = ip_alloc(p, n, mut);
	if (ret) {
		node_unlock(fs);
		return ret;
	}
	int k = n - 1;
	struct rfs_node *x = node;
	for (; x->parent; x = x->parent, k--) {
		/* the name for now; the walk makes it the entry's key */
		p->lv[k].klen = strlen(x->name);
		memcpy(p->lv[k].key, x->name, p->lv[k].klen);
		p->lv[k].rec.i.ino = x->ino; /* what the walk must find there */
	}
	uint64_t top = x->ino; /* the root's, unless the path is stale */
	node_unlock(fs);

	p->vol = RFS_TOP_VOLUME;
	p->tvol = node->vol;
	ret = rfs_catalog_get(fs->pool, RFS_TOP_VOLUME, &p->lv[0].parent);
	if (ret) {
		mut = false;
		goto out;
	}
	p->cat = p->lv[0].parent;
	p->cat_known = true;
	p->lv[0].parent.owner = RFS_OWNER_VOLUME;
	p->lv[0].key[0] = 'R';
	p->lv[0].klen = 1;
	k = 0;
	ret = lv_get(fs, &p->lv[0], mut);
	if (ret)
		goto out;
	if (p->lv[0].rec.i.ino != top) {
		ret = -ESTALE;
		goto out;
	}
	for (k = 1; k < n; k++) {
		struct rfs_ilevel *up = &p->lv[k - 1], *lv = &p->lv[k];
		if (!S_ISDIR(up->rec.i.mode)) {
			ret = -ENOTDIR;
			goto out;
		}
		struct dirloc dl;
		uint8_t name[RFS_NAME_MAX];
		dloc_of(&dl, &up->rec.i, &up->parent);
		lv->parent = dl.t;
		memcpy(name, lv->key, lv->klen);
		lv->klen = dloc_key(&dl, lv->key, (const char *)name, lv->klen);
		uint64_t want = lv->rec.i.ino;
		ret = lv_get(fs, lv, mut);
		if (ret)
			goto out;
		if ((lv->rec.i.flags & RFS_INODE_LINKED) || lv->rec.i.ino != want) {
			/* The in-memory path went stale (a node whose update
			 * after a rename failed): another inode has the name
			 * now, or a linked inode must be addressed through the
			 * table.  Never hand out (or change) the wrong one. */
			ret = -ESTALE;
			goto out;
		}
	}
out:
	if (ret) {
		if (mut)
			ip_unwind(fs, p, k);
		if (ret == -ENOENT)
			ret = -ESTALE;
		ip_free(p);
	}
	return ret;
}

static int ip_store_items(rfs_fs *fs, struct rfs_ipath *p, int64_t links_delta);

/* Storing new roots back up the path is no item change of the
 * operation's (rfs_pool_note_item): it completes the shadows. */
int ip_store(rfs_fs *fs, struct rfs_ipath *p, int64_t links_delta)
{
	uint64_t items = rfs_pool_items(fs->pool);
	int ret = ip_store_items(fs, p, links_delta);
	rfs_pool_items_set(fs->pool, items);
	return ret;
}

/* Debug builds check what ip_store_items relies on when it skips a level:
 * nothing else changed the record in its tree since it was loaded or
 * stored. */
static void assert_level_stored(rfs_fs *fs, struct rfs_ilevel *lv)
{
#ifdef RFS_DEBUG
	uint8_t cur[RFS_VAL_MAX];
	size_t clen = sizeof(cur);
	int r = rfs_tree_lookup(fs->pool, &lv->parent, lv->key, lv->klen, cur, &clen, NULL);
	assert(r == 0 && clen == lv->enc_len && !memcmp(cur, lv->enc, clen));
	(void)r;
#else
	(void)fs;
	(void)lv;
#endif
}

/* Debug builds check the same for the catalog entry of p's volume. */
static void assert_catalog_holds(rfs_fs *fs, const struct rfs_ipath *p)
{
#ifdef RFS_DEBUG
	rfs_tree t = { 0, 0 };
	int r = rfs_catalog_get(fs->pool, p->vol, &t);
	assert(r == 0 && t.root == p->cat.root && t.owner == p->cat.owner);
	(void)r;
#else
	(void)fs;
	(void)p;
#endif
}

/*
 * Level lv's record is what its tree holds (lv->enc) unchanged, and
 * encoding it would give lv->enc again: rec.i and the tail are what enc
 * decodes to (orig), and enc is in the form rec_encode chooses in this
 * volume.  A compact record stays compact and a fixed one in a volume of
 * fixed records stays fixed; a fixed record where compact ones may be
 * written is encoded (it may become compact).  Debug builds check that
 * the bytes decode to the record (and assert_level_stored that the tree
 * holds them).
 */
static bool lv_unchanged(rfs_fs *fs, const struct rfs_ilevel *lv)
{
	if (!lv->have_enc || lv->rec.taillen != lv->orig_taillen ||
	    memcmp(&lv->rec.i, &lv->orig, sizeof(lv->orig)) ||
	    memcmp(lv->rec.tail, lv->enc + lv->enc_len - lv->orig_taillen, lv->orig_taillen) ||
	    rec_is_compact(lv->enc, lv->enc_len) != compact_ok(fs))
		return false;
	assert_decodes_to(lv->enc, lv->enc_len, &lv->rec);
	return true;
}

static int ip_store_items(rfs_fs *fs, struct rfs_ipath *p, int64_t links_delta)
{
	int ret = 0;
	RFS_ASSERT_LOCK(rfs_pool_holds_wrlock(fs->pool));
	assert(p->mut);
	if (p->emb_delta && !p->in_table && is_embed(&p->lv[p->n - 1].rec.i)) {
		/* the top of the target's embedded subtree keeps the count */
		int t = p->n - 1;
		while (t > 0 && is_embed(&p->lv[t - 1].rec.i))
			t--;
		p->lv[t].rec.i.volume += (uint64_t)p->emb_delta;
	}
	p->emb_delta = 0;
	for (int k = p->n - 1; k >= 0; k--) {
		struct rfs_ilevel *lv = &p->lv[k];
		if (links_delta && !p->in_table && S_ISDIR(lv->rec.i.mode))
			lv->rec.i.links_below += (uint64_t)links_delta;
		/* Hard links stay inside their volume: the directories above
		 * a volume's root do not count the names below it. */
		if (lv->rec.i.flags & RFS_INODE_VOLROOT)
			links_delta = 0;
		if (p->vols_delta && !p->in_table && S_ISDIR(lv->rec.i.mode))
			lv->rec.i.vols_below += (uint64_t)p->vols_delta;
		if (is_embed(&lv->rec.i)) {
			/* What is below is stored in the tree holding this
			 * record; rdev changes so that a diff of the trees
			 * holding it sees that something below it did. */
			if (k < p->n - 1)
				lv->parent.root = p->lv[k + 1].parent.root;
			lv->rec.i.rdev = emb_stamp(fs);
		} else if (k < p->n - 1) {
			lv->rec.i.subtree = p->lv[k + 1].parent.root;
		} else if (p->target_tree_valid) {
			lv->rec.i.subtree = p->target_tree.root;
		}
		/* A level whose bytes did not change (a directory above a
		 * written file, once its path is shadowed in this transaction)
		 * is not put again: a put would walk and compare its tree for
		 * nothing.  One whose record is still what its bytes decode
		 * to is not even encoded. */
		if (lv_unchanged(fs, lv)) {
			assert_level_stored(fs, lv);
			continue;
		}
		uint8_t val[RFS_VAL_MAX];
		size_t vlen = rec_encode(&lv->rec, val, compact_ok(fs));
		if (lv->have_enc && vlen == lv->enc_len && !memcmp(val, lv->enc, vlen)) {
			assert_level_stored(fs, lv);
			lv->orig = lv->rec.i;
			lv->orig_taillen = (uint16_t)lv->rec.taillen;
			continue;
		}
		ret = rfs_tree_put(fs->pool, &lv->parent, lv->key, lv->klen, val, vlen,
				   rec_item_flags(&lv->rec), RFS_PUT_REPLACE | RFS_KEEP_REFS);
		if (ret)
			goto fail;
		memcpy(lv->enc, val, vlen);
		lv->enc_len = (uint16_t)vlen;
		lv->have_enc = true;
		lv->orig = lv->rec.i;
		lv->orig_taillen = (uint16_t)lv->rec.taillen;
		irc_put(fs, val, vlen, &lv->rec);
	}
	struct rfs_vol *v = vol_get(fs, p->vol);
	if (v && v->dirty) {
		ret = meta_store(fs, v, &p->lv[0].parent);
		if (ret)
			goto fail;
	}
	/* Nothing moved the volume's root (every level above was already
	 * shadowed in this transaction): its catalog entry stands. */
	if (p->cat_known && p->cat.root == p->lv[0].parent.root &&
	    p->cat.owner == p->lv[0].parent.owner) {
		assert_catalog_holds(fs, p);
	} else {
		ret = rfs_catalog_set(fs->pool, p->vol, &p->lv[0].parent);
		p->cat = p->lv[0].parent;
		p->cat_known = !ret;
	}
	if (!ret)
		ret = vols_store(fs);
	if (ret)
		goto fail;
	return 0;
fail:
	rfs_log(RFS_LOG_ERR, "%s: storing an inode path failed: %s",
		rfs_pool_path(fs->pool), strerror(-ret));
	/* Roots shadowed below are not stored above: the transaction
	 * holds nodes nothing points to, and points to freed ones. */
	op_halfway(fs, ret);
	return ret;
}

int ip_done(rfs_fs *fs, struct rfs_ipath *p, int64_t links_delta, int ret)
{
	int r = ip_store(fs, p, links_delta);
	ip_free(p);
	if (!ret && !r)
		r = op_step(fs);
	return ret ? ret : r;
}

int inode_read(rfs_fs *fs, struct rfs_node *node, struct rfs_irec *r)
{
	struct rfs_ipath p;
	int ret = ip_load(fs, node, false, &p);
	if (ret)
		return ret;
	*r = *ip_rec(&p);
	ip_free(&p);
	return 0;
}
