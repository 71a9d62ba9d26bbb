/*
 * The change journal's tree: header, records in chunks, the per-directory
 * index, retention and queries.  See journal.h and docs/FORMAT.md.
 */
#include "journal/journal.h"

#include "reflinkfs/log.h"
#include "reflinkfs/tree.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define JNL_MAGIC 0x4c4e524a534652ull /* "RFSJRNL" */
#define JNL_VERSION 3u /* 2: compact records; 3: packed index items */
#define JNL_OWNER 22 /* node owner, informational */
#define JNL_CACHE 256 /* last mergeable record per (inode, path) slot */
#define JNL_RESET_GAP 4096u /* seqs skipped by a reset */
/* Blocks a flush may take on top of its records' (rec_blocks): the
 * header's and the catalog's paths. */
#define JNL_FLUSH_BLOCKS 32u
/* Pending records (about 100 bytes each here, plus their encodings)
 * and bytes of encodings (a merge appends a new one) that make a flush
 * due (jnl_flush_due). */
#define JNL_PEND_MAX 16384u
#define JNL_PEND_BYTES (8u << 20)

/* Header, key 'H'. */
struct jhdr {
	uint64_t magic;
	uint32_t version;
	uint32_t pad;
	uint64_t epoch;
	uint64_t next;   /* next seq to hand out */
	uint64_t oldest; /* seq of the oldest record kept (next when none) */
	uint64_t limit;  /* retention, bytes */
	uint64_t bytes;  /* bytes of records and index items kept */
	uint64_t nrecords;
	uint64_t compact_from; /* version 2: records from this seq on are
				* compact (encode); v1 wrote 0 here */
	uint64_t packed_from; /* version 3: index items keyed from this seq
			       * on are packed (pack_*); 0 before */
	uint64_t reserved[2];
};

/* Record head, first bytes of the record's byte string (chunks 'S'). */
struct jdisk {
	int64_t sec;
	uint32_t nsec;
	uint8_t kind, nranges;
	uint16_t nanc;
	uint64_t vol, ino, parent, old_parent;
	uint16_t pathlen, oldlen;
	uint8_t flags; /* JD_PATH, JD_OLD */
	uint8_t also;  /* JNL_ALSO_*; 0 in records written before it existed */
	uint8_t pad[2];
};
enum { JD_PATH = 1, JD_OLD = 2 };
_Static_assert(sizeof(struct jdisk) == 56, "journal record layout");

#define SKEY_LEN 11 /* 'S' be64(seq) be16(chunk) */
#define DKEY_LEN 25 /* 'D' be64(vol) be64(ino) be64(seq) */
#define DVAL_LEN 4  /* u16 depth above the new path, u16 above the old */
/* What the retention counts per entry of a packed index item: its
 * numbers (about 3 bytes) and its share of the item's key and slot. */
#define DPACK_COST 8

struct jcache {
	bool valid;
	/* rec was merged into since its encoding in pbytes was made: that
	 * encoding is out of date (its pend entry has the current length),
	 * and is made again before the slot is reused and before the flush
	 * stores it (stale_encode). */
	bool stale;
	uint64_t vol, ino, seq, gen;
	struct jnl_rec rec; /* a deep copy (path, anc) */
	size_t len;         /* its encoded length */
};

/* A record appended but not yet in the tree (jnl_flush): its encoded
 * bytes and the directories it is indexed under. */
struct jpend {
	uint64_t seq;
	size_t off, len;  /* in pbytes */
	size_t aoff;      /* in panc */
	uint16_t nanc;
};

/* An index item to store, sorted by key at the flush. */
struct jitem {
	uint64_t vol, ino, seq;
	uint16_t dn, dold;
};

struct rfs_jnl {
	rfs_pool *pool;
	struct jhdr h; /* as it will be stored by the next flush */
	bool hdr_dirty; /* h changed since it was last stored */
	/* Records of the running transaction not in the tree yet, seqs
	 * pend_first.. in order (contiguous: a reset drops them all);
	 * pend_blocks: an upper bound of the blocks storing them takes. */
	struct jpend *pend;
	size_t npend, cappend;
	/* Their encoded bytes and their directories, one buffer each for
	 * all of them (no allocation per record). */
	uint8_t *pbytes;
	size_t nbytes, capbytes;
	struct jnl_anc *panc;
	size_t nanc, capanc;
	uint64_t pend_first, pend_blocks;
	uint8_t uuid[16];
	/* Durability: next seq at the end of the running transaction (cur)
	 * and of the one before (prev); base: at open (committed). */
	uint64_t cur_gen, cur_next, prev_gen, prev_next, base_next;
	struct jcache cache[JNL_CACHE];
	unsigned nstale; /* slots with stale set */
	/* Records with seq >= compact are compact (UINT64_MAX: none, a
	 * format 1 journal opened read-only); index items keyed from
	 * packed on are packed (UINT64_MAX: none).  Pool lock. */
	uint64_t compact, packed;
};

static void be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

static size_t skey(uint8_t *k, uint64_t seq, uint16_t chunk)
{
	k[0] = 'S';
	be64(k + 1, seq);
	k[9] = (uint8_t)(chunk >> 8);
	k[10] = (uint8_t)chunk;
	return SKEY_LEN;
}

static size_t dkey(uint8_t *k, uint64_t vol, uint64_t ino, uint64_t seq)
{
	k[0] = 'D';
	be64(k + 1, vol);
	be64(k + 9, ino);
	be64(k + 17, seq);
	return DKEY_LEN;
}

static uint64_t random64(void)
{
	uint64_t v;
	if (getrandom(&v, sizeof(v), 0) != (ssize_t)sizeof(v)) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		v = (uint64_t)ts.tv_sec * 1000000007ull ^ (uint64_t)ts.tv_nsec;
	}
	return v ? v : 1;
}

/* ---- the tree ----------------------------------------------------------------- */

static int jtree(struct rfs_jnl *j, rfs_tree *t)
{
	int ret = rfs_catalog_get(j->pool, RFS_JOURNAL_ID, t);
	t->owner = JNL_OWNER;
	return ret;
}

/* The journal's tree and a cursor on it to read records; *c is NULL
 * when there is no tree yet (nothing to read). */
static int jtree_cursor(struct rfs_jnl *j, rfs_tree *t, rfs_cursor **c)
{
	*c = NULL;
	int ret = jtree(j, t);
	if (ret || !t->root)
		return ret;
	return rfs_cursor_open(j->pool, t, c);
}

static int hdr_put(struct rfs_jnl *j, rfs_tree *t, int mode)
{
	return rfs_tree_put(j->pool, t, "H", 1, &j->h, sizeof(j->h), 0, mode);
}

int jnl_open(rfs_pool *pool, bool writable, uint64_t limit_bytes, struct rfs_jnl **out)
{
	*out = NULL;
	struct rfs_jnl *j = calloc(1, sizeof(*j));
	if (!j)
		return -ENOMEM;
	j->pool = pool;
	rfs_pool_uuid(pool, j->uuid);
	rfs_tree t;
	int ret = jtree(j, &t);
	size_t hl = sizeof(j->h);
	if (!ret && t.root)
		ret = rfs_tree_lookup(pool, &t, "H", 1, &j->h, &hl, NULL);
	else if (!ret)
		ret = -ENOENT;
	if (!ret && (hl != sizeof(j->h) || j->h.magic != JNL_MAGIC)) {
		rfs_log(RFS_LOG_ERR, "%s: the change journal's header is damaged; run reflinkfs fsck",
			rfs_pool_path(pool));
		ret = -EUCLEAN;
	} else if (!ret && j->h.version > JNL_VERSION) {
		rfs_log(RFS_LOG_ERR, "%s: change journal format %u is newer than this program supports (%u); use a newer reflinkfs",
			rfs_pool_path(pool), j->h.version, JNL_VERSION);
		ret = -EPROTONOSUPPORT;
	}
	if (ret == -ENOENT && writable) {
		memset(&j->h, 0, sizeof(j->h));
		j->h.magic = JNL_MAGIC;
		j->h.version = JNL_VERSION;
		j->h.epoch = random64();
		j->h.next = j->h.oldest = j->h.compact_from = j->h.packed_from = 1;
		j->h.limit = limit_bytes;
		t.root = 0;
		ret = hdr_put(j, &t, RFS_PUT_INSERT);
		if (!ret)
			ret = rfs_catalog_set(pool, RFS_JOURNAL_ID, &t);
	}
	if (ret) {
		free(j);
		return ret;
	}
	if (j->h.version < 3 && writable) {
		/* Format 1 or 2: its records and index items stay as they
		 * are; new records are compact and new index items packed
		 * (the header says from where at the next flush, in the
		 * same transaction as the first of them). */
		if (j->h.version < 2)
			j->h.compact_from = j->h.next;
		j->h.packed_from = j->h.next;
		j->h.version = JNL_VERSION;
	}
	j->compact = j->h.version >= 2 ? j->h.compact_from : UINT64_MAX;
	j->packed = j->h.version >= 3 ? j->h.packed_from : UINT64_MAX;
	j->base_next = j->h.next;
	*out = j;
	return 0;
}

static void rec_free(struct jnl_rec *r)
{
	free(r->path);
	free(r->old_path);
	free(r->anc);
	memset(r, 0, sizeof(*r));
}

static void pend_drop(struct rfs_jnl *j)
{
	j->npend = j->nbytes = j->nanc = 0;
	j->pend_blocks = 0;
	for (int i = 0; j->nstale && i < JNL_CACHE; i++)
		if (j->cache[i].stale) {
			j->cache[i].stale = false;
			j->nstale--;
		}
}

/* Room for n more bytes in pbytes: their offset, or SIZE_MAX. */
static size_t bytes_room(struct rfs_jnl *j, size_t n)
{
	if (j->nbytes + n > j->capbytes) {
		size_t cap = j->capbytes ? j->capbytes : 16384;
		while (cap < j->nbytes + n)
			cap *= 2;
		uint8_t *b = realloc(j->pbytes, cap);
		if (!b)
			return SIZE_MAX;
		j->pbytes = b;
		j->capbytes = cap;
	}
	return j->nbytes;
}

void jnl_close(struct rfs_jnl *j)
{
	if (!j)
		return;
	pend_drop(j);
	free(j->pend);
	free(j->pbytes);
	free(j->panc);
	for (int i = 0; i < JNL_CACHE; i++)
		rec_free(&j->cache[i].rec);
	free(j);
}

/* ---- encoding ---------------------------------------------------------------- */

/*
 * A record's byte string.  Format 1 (seqs below j->compact): struct
 * jdisk, ranges, ancestors (u64 vol, u64 ino), path, old path.  Compact
 * (format 2): u8 kind, also, flags, nranges; then LEB128 numbers: sec,
 * nsec, vol, ino, parent, old_parent (an st_ino x as x ? (x ^ vol << 48)
 * + 1 : 0, small for an inode of the record's volume), nanc, per
 * ancestor vol and ino, per range off and len, path length and path (with
 * JD_PATH), old path length and old path (JD_OLD).  A typical record
 * takes about half of format 1's bytes (docs/FORMAT.md).
 */
#define ENC_MAX(r)                                                                      \
	(4 + 10 * (7 + 2 * (size_t)(r)->nanc + 2 * (size_t)(r)->nranges + 2) +           \
	 ((r)->path ? strlen((r)->path) : 0) + ((r)->old_path ? strlen((r)->old_path) : 0))

static uint8_t *put_var(uint8_t *p, uint64_t v)
{
	while (v >= 0x80) {
		*p++ = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	*p++ = (uint8_t)v;
	return p;
}

/* Bytes put_var takes for v: 7 bits a byte (one count, no loop: a
 * merge asks it for each range and time it changes). */
static unsigned var_len(uint64_t v)
{
	unsigned bits = 64u - (unsigned)__builtin_clzll(v | 1);
	return (bits + 6) / 7;
}

static int get_var(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
	*v = 0;
	for (int shift = 0; shift < 64; shift += 7) {
		if (*p >= end)
			return -EUCLEAN;
		uint8_t b = *(*p)++;
		*v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80))
			return 0;
	}
	return -EUCLEAN;
}

static uint64_t st_enc(uint64_t x, uint64_t vol)
{
	return x ? (x ^ vol << 48) + 1 : 0;
}

static uint64_t st_dec(uint64_t v, uint64_t vol)
{
	return v ? (v - 1) ^ vol << 48 : 0;
}

/* Format 1: only to test reading it (jnl_write_format1). */
static size_t enc_len(const struct jnl_rec *r)
{
	return sizeof(struct jdisk) + r->nranges * sizeof(struct rfs_change_range) +
	       r->nanc * 16u + (r->path ? strlen(r->path) : 0) +
	       (r->old_path ? strlen(r->old_path) : 0);
}

static uint8_t *encode_v1(const struct jnl_rec *r, size_t *len)
{
	*len = enc_len(r);
	uint8_t *b = malloc(*len), *p = b;
	if (!b)
		return NULL;
	struct jdisk d = {.sec = r->sec,
			  .nsec = r->nsec,
			  .kind = r->kind,
			  .also = r->also,
			  .nranges = r->nranges,
			  .nanc = r->nanc,
			  .vol = r->vol,
			  .ino = r->ino,
			  .parent = r->parent,
			  .old_parent = r->old_parent};
	if (r->path) {
		d.flags |= JD_PATH;
		d.pathlen = (uint16_t)strlen(r->path);
	}
	if (r->old_path) {
		d.flags |= JD_OLD;
		d.oldlen = (uint16_t)strlen(r->old_path);
	}
	memcpy(p, &d, sizeof(d));
	p += sizeof(d);
	if (r->nranges)
		memcpy(p, r->ranges, r->nranges * sizeof(struct rfs_change_range));
	p += r->nranges * sizeof(struct rfs_change_range);
	for (unsigned i = 0; i < r->nanc; i++) {
		memcpy(p, &r->anc[i].vol, 8);
		memcpy(p + 8, &r->anc[i].ino, 8);
		p += 16;
	}
	if (d.pathlen)
		memcpy(p, r->path, d.pathlen);
	p += d.pathlen;
	if (d.oldlen)
		memcpy(p, r->old_path, d.oldlen);
	return b;
}

/* Compact encoding of r into b (ENC_MAX(r) bytes); its length. */
static size_t encode_to(const struct jnl_rec *r, uint8_t *b)
{
	uint8_t *p = b;
	size_t pl = r->path ? strlen(r->path) : 0, ol = r->old_path ? strlen(r->old_path) : 0;
	*p++ = r->kind;
	*p++ = r->also;
	*p++ = (uint8_t)((r->path ? JD_PATH : 0) | (r->old_path ? JD_OLD : 0));
	*p++ = r->nranges;
	p = put_var(p, (uint64_t)r->sec);
	p = put_var(p, r->nsec);
	p = put_var(p, r->vol);
	p = put_var(p, st_enc(r->ino, r->vol));
	p = put_var(p, st_enc(r->parent, r->vol));
	p = put_var(p, st_enc(r->old_parent, r->vol));
	p = put_var(p, r->nanc);
	for (unsigned i = 0; i < r->nanc; i++) {
		p = put_var(p, r->anc[i].vol);
		p = put_var(p, r->anc[i].ino);
	}
	for (unsigned i = 0; i < r->nranges; i++) {
		p = put_var(p, r->ranges[i].off);
		p = put_var(p, r->ranges[i].len);
	}
	if (r->path) {
		p = put_var(p, pl);
		memcpy(p, r->path, pl);
		p += pl;
	}
	if (r->old_path) {
		p = put_var(p, ol);
		memcpy(p, r->old_path, ol);
		p += ol;
	}
	return (size_t)(p - b);
}

static uint8_t *encode(const struct jnl_rec *r, size_t *len, bool compact)
{
	if (!compact)
		return encode_v1(r, len);
	uint8_t *b = malloc(ENC_MAX(r));
	if (b)
		*len = encode_to(r, b);
	return b;
}

/* r's encoding appended to pbytes: 0 and its place, or -ENOMEM. */
static int encode_pend(struct rfs_jnl *j, const struct jnl_rec *r, bool compact, size_t *off,
		       size_t *len)
{
	if (!compact) { /* format 1: tests only */
		uint8_t *b = encode_v1(r, len);
		if (!b || (*off = bytes_room(j, *len)) == SIZE_MAX) {
			free(b);
			return -ENOMEM;
		}
		memcpy(j->pbytes + *off, b, *len);
		free(b);
	} else {
		if ((*off = bytes_room(j, ENC_MAX(r))) == SIZE_MAX)
			return -ENOMEM;
		*len = encode_to(r, j->pbytes + *off);
	}
	j->nbytes += *len;
	return 0;
}

/* A decoded record: head, and pointers into buf (or into rbuf / abuf
 * for a compact one). */
struct jview {
	struct jdisk d;
	const struct rfs_change_range *ranges;
	const uint8_t *anc; /* nanc * (u64 vol, u64 ino) */
	const char *path, *old;
	uint8_t *buf;
	size_t len, nchunks;
	struct rfs_change_range rbuf[JNL_RANGES_MAX];
	uint8_t *abuf;
};

static void view_free(struct jview *v)
{
	free(v->buf);
	free(v->abuf);
	v->buf = v->abuf = NULL;
}

static int decode_v1(struct jview *v)
{
	if (v->len < sizeof(v->d))
		return -EUCLEAN;
	memcpy(&v->d, v->buf, sizeof(v->d));
	size_t want = sizeof(v->d) + v->d.nranges * sizeof(struct rfs_change_range) +
		      v->d.nanc * 16u + v->d.pathlen + v->d.oldlen;
	if (want != v->len || v->d.nranges > JNL_RANGES_MAX)
		return -EUCLEAN;
	const uint8_t *p = v->buf + sizeof(v->d);
	v->ranges = (const void *)p;
	p += v->d.nranges * sizeof(struct rfs_change_range);
	v->anc = p;
	p += v->d.nanc * 16u;
	v->path = (const char *)p;
	v->old = v->path + v->d.pathlen;
	return 0;
}

static int decode_compact(struct jview *v)
{
	const uint8_t *p = v->buf, *end = v->buf + v->len;
	uint64_t x[7];
	if (v->len < 4)
		return -EUCLEAN;
	memset(&v->d, 0, sizeof(v->d));
	v->d.kind = p[0];
	v->d.also = p[1];
	v->d.flags = p[2];
	v->d.nranges = p[3];
	p += 4;
	if (v->d.nranges > JNL_RANGES_MAX)
		return -EUCLEAN;
	for (int i = 0; i < 7; i++)
		if (get_var(&p, end, &x[i]))
			return -EUCLEAN;
	if (x[6] > UINT16_MAX)
		return -EUCLEAN;
	v->d.sec = (int64_t)x[0];
	v->d.nsec = (uint32_t)x[1];
	v->d.vol = x[2];
	v->d.ino = st_dec(x[3], x[2]);
	v->d.parent = st_dec(x[4], x[2]);
	v->d.old_parent = st_dec(x[5], x[2]);
	v->d.nanc = (uint16_t)x[6];
	v->abuf = malloc(16u * (v->d.nanc ? v->d.nanc : 1));
	if (!v->abuf)
		return -ENOMEM;
	for (unsigned i = 0; i < v->d.nanc; i++) {
		uint64_t a[2];
		if (get_var(&p, end, &a[0]) || get_var(&p, end, &a[1]))
			return -EUCLEAN;
		memcpy(v->abuf + 16 * i, a, 16);
	}
	v->anc = v->abuf;
	for (unsigned i = 0; i < v->d.nranges; i++)
		if (get_var(&p, end, &v->rbuf[i].off) || get_var(&p, end, &v->rbuf[i].len))
			return -EUCLEAN;
	v->ranges = v->rbuf;
	uint64_t l = 0;
	if ((v->d.flags & JD_PATH) && (get_var(&p, end, &l) || l > UINT16_MAX ||
				       l > (uint64_t)(end - p)))
		return -EUCLEAN;
	v->d.pathlen = (uint16_t)l;
	v->path = (const char *)p;
	p += l;
	l = 0;
	if ((v->d.flags & JD_OLD) && (get_var(&p, end, &l) || l > UINT16_MAX ||
				      l > (uint64_t)(end - p)))
		return -EUCLEAN;
	v->d.oldlen = (uint16_t)l;
	v->old = (const char *)p;
	p += l;
	return p == end ? 0 : -EUCLEAN;
}

/* Read record seq's chunks into v (v->buf malloc'ed; free it). */
static int rec_read(struct rfs_jnl *j, const rfs_tree *t, uint64_t seq, struct jview *v)
{
	memset(v, 0, sizeof(*v));
	rfs_cursor *c;
	int ret = rfs_cursor_open(j->pool, t, &c);
	if (ret)
		return ret;
	uint8_t k[SKEY_LEN];
	skey(k, seq, 0);
	size_t cap = 0;
	for (ret = rfs_cursor_seek(c, k, SKEY_LEN, 1); !ret; ret = rfs_cursor_step(c, 1)) {
		const void *key, *val;
		size_t kl, vl;
		rfs_cursor_get(c, &key, &kl, &val, &vl, NULL);
		if (kl != SKEY_LEN || memcmp(key, k, 9) != 0)
			break;
		if (v->len + vl > cap) {
			cap = (v->len + vl) * 2;
			uint8_t *nb = realloc(v->buf, cap);
			if (!nb) {
				ret = -ENOMEM;
				break;
			}
			v->buf = nb;
		}
		memcpy(v->buf + v->len, val, vl);
		v->len += vl;
		v->nchunks++;
	}
	rfs_cursor_close(c);
	if (ret == -ENOENT)
		ret = 0;
	if (!ret && v->nchunks == 0)
		ret = -ENOENT;
	if (!ret)
		ret = seq >= j->compact ? decode_compact(v) : decode_v1(v);
	if (ret)
		view_free(v);
	return ret;
}

/* Bytes the retention counts for record seq of encoded length len with
 * nanc index entries. */
static uint64_t cost(const struct rfs_jnl *j, uint64_t seq, size_t len, unsigned nanc)
{
	size_t chunks = (len + RFS_VAL_MAX - 1) / RFS_VAL_MAX;
	return len + chunks * SKEY_LEN +
	       (uint64_t)nanc * (seq >= j->packed ? DPACK_COST : DKEY_LEN + DVAL_LEN);
}

/* Store the record's chunks (upsert; old_chunks: chunks to remove past
 * the new end). */
static int chunks_put(struct rfs_jnl *j, rfs_tree *t, uint64_t seq, const uint8_t *b,
		      size_t len, size_t old_chunks, int mode)
{
	uint8_t k[SKEY_LEN];
	size_t n = 0;
	for (size_t off = 0; off < len; off += RFS_VAL_MAX, n++) {
		size_t cl = len - off < RFS_VAL_MAX ? len - off : RFS_VAL_MAX;
		int ret = rfs_tree_put(j->pool, t, k, skey(k, seq, (uint16_t)n), b + off, cl, 0,
				       mode);
		if (ret)
			return ret;
	}
	for (; n < old_chunks; n++) {
		int ret = rfs_tree_delete(j->pool, t, k, skey(k, seq, (uint16_t)n), 0);
		if (ret)
			return ret;
	}
	return 0;
}

/* ---- appending ---------------------------------------------------------------- */

/* The slot of the last mergeable record of (vol, ino) under path: a
 * hard-linked inode has one record per name (fs/link_names.c), each
 * merged on its own. */
static struct jcache *cache_slot(struct rfs_jnl *j, uint64_t vol, uint64_t ino,
				 const char *path)
{
	uint64_t h = ino * 0x9e3779b97f4a7c15ull ^ vol;
	for (const char *p = path; p && *p; p++)
		h = (h ^ (uint8_t)*p) * 0x100000001b3ull;
	return &j->cache[h % JNL_CACHE];
}

static bool same_str(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* Kinds merged into an earlier record of the same inode and path in the
 * same transaction, and the bit each leaves in `also`. */
static uint8_t also_bit(int kind)
{
	return kind == RFS_CHANGE_DATA	  ? JNL_ALSO_DATA
	       : kind == RFS_CHANGE_ATTR  ? JNL_ALSO_ATTR
	       : kind == RFS_CHANGE_XATTR ? JNL_ALSO_XATTR
					  : 0;
}

/* Kinds a later change may merge into: a creation (a consumer reads the
 * new file whole anyway) or a change of content or attributes.  Not a
 * rename, link or unlink: the change would appear before it. */
static bool merge_target(int kind)
{
	switch (kind) {
	case RFS_CHANGE_CREATE:
	case RFS_CHANGE_MKDIR:
	case RFS_CHANGE_SYMLINK:
	case RFS_CHANGE_MKNOD:
	case RFS_CHANGE_MKFIFO:
	case RFS_CHANGE_DATA:
	case RFS_CHANGE_ATTR:
	case RFS_CHANGE_XATTR:
		return true;
	default:
		return false;
	}
}

/* b borrows the same strings as a, of the same inode: lent strings
 * are not changed while jnl_append runs (struct jnl_rec.lent), so equal
 * pointers mean equal paths and directories. */
static bool same_lent(const struct jnl_rec *a, const struct jnl_rec *b)
{
	return a->lent && b->lent && a->path == b->path && a->anc == b->anc &&
	       a->nanc == b->nanc && a->vol == b->vol && a->ino == b->ino;
}

static bool same_anc(const struct jnl_rec *a, const struct jnl_rec *b)
{
	if (a->nanc != b->nanc)
		return false;
	for (unsigned i = 0; i < a->nanc; i++)
		if (a->anc[i].vol != b->anc[i].vol || a->anc[i].ino != b->anc[i].ino ||
		    a->anc[i].depth_new != b->anc[i].depth_new ||
		    a->anc[i].depth_old != b->anc[i].depth_old)
			return false;
	return true;
}

/* Bytes the compact encoding of a range takes (encode_to). */
static long range_len(const struct rfs_change_range *x)
{
	return (long)(var_len(x->off) + var_len(x->len));
}

/* Add the ranges of r to c's record; false when they do not fit (c
 * unchanged).  *dlen: what that adds to its compact encoding. */
static bool ranges_merge(struct jnl_rec *c, const struct jnl_rec *r, long *dlen)
{
	*dlen = 0;
	if (r->nranges == 1) {
		/* A data record's one range (rec_new_node), in place. */
		uint64_t a = r->ranges[0].off, e = a + r->ranges[0].len;
		for (unsigned k = 0; k < c->nranges; k++) {
			struct rfs_change_range *x = &c->ranges[k];
			uint64_t ka = x->off, ke = ka + x->len;
			if (a <= ke && ka <= e) { /* overlapping or adjacent */
				uint64_t na = a < ka ? a : ka, ne = e > ke ? e : ke;
				*dlen -= range_len(x);
				x->off = na;
				x->len = ne - na;
				*dlen += range_len(x);
				return true;
			}
		}
		if (c->nranges == JNL_RANGES_MAX)
			return false;
		c->ranges[c->nranges] = r->ranges[0];
		*dlen += range_len(&c->ranges[c->nranges++]);
		return true;
	}
	struct rfs_change_range t[JNL_RANGES_MAX];
	unsigned n = c->nranges;
	memcpy(t, c->ranges, sizeof(t));
	for (unsigned i = 0; i < r->nranges; i++) {
		uint64_t a = r->ranges[i].off, e = a + r->ranges[i].len;
		unsigned k;
		for (k = 0; k < n; k++) {
			uint64_t ka = t[k].off, ke = ka + t[k].len;
			if (a <= ke && ka <= e) { /* overlapping or adjacent */
				uint64_t na = a < ka ? a : ka, ne = e > ke ? e : ke;
				t[k].off = na;
				t[k].len = ne - na;
				break;
			}
		}
		if (k == n) {
			if (n == JNL_RANGES_MAX)
				return false;
			t[n++] = r->ranges[i];
		}
	}
	for (unsigned k = 0; k < c->nranges; k++)
		*dlen -= range_len(&c->ranges[k]);
	for (unsigned k = 0; k < n; k++)
		*dlen += range_len(&t[k]);
	memcpy(c->ranges, t, sizeof(t));
	c->nranges = (uint8_t)n;
	return true;
}

/* Debug builds: len is what the compact encoding of r takes. */
static void assert_enc_len(const struct jnl_rec *r, size_t len)
{
#ifdef RFS_DEBUG
	uint8_t *b = malloc(ENC_MAX(r));
	assert(!b || encode_to(r, b) == len);
	free(b);
#else
	(void)r;
	(void)len;
#endif
}

/* Make the encoding of stale slot c's record again (its pend entry
 * points to it; the old bytes stay unused in pbytes until the flush). */
static int stale_encode(struct rfs_jnl *j, struct jcache *c)
{
	assert(c->stale && j->npend && c->seq >= j->pend_first &&
	       c->seq - j->pend_first < j->npend);
	struct jpend *p = &j->pend[c->seq - j->pend_first];
	size_t off, len;
	if (encode_pend(j, &c->rec, true, &off, &len))
		return -ENOMEM;
	assert(len == p->len);
	p->off = off;
	c->stale = false;
	j->nstale--;
	return 0;
}

/* Merge data, attr or xattr record r into the last record of the same
 * inode and path of this transaction: one record per file per commit
 * for a file that is created, written and given its attributes (cp -a),
 * instead of four, each with its index items.  Records of a transaction
 * become readable together at its commit, so no reader ever saw the
 * record before the merge.  A record not stored yet (the usual case) is
 * not encoded again at each merge: its encoded length is kept up to
 * date, and its bytes are made once, when the flush stores it or its
 * slot is taken (stale_encode).  c: r's slot (cache_slot); known: its
 * record, if it is r's inode's, has r's path and directories (jnl_append). */
static int try_merge(struct rfs_jnl *j, struct jnl_rec *r, struct jcache *c, bool known,
		     bool *merged)
{
	*merged = false;
	if (!c->valid || c->vol != r->vol || c->ino != r->ino ||
	    c->gen != rfs_pool_txn_gen(j->pool) || c->seq < j->h.oldest)
		return 0;
#ifdef RFS_DEBUG
	assert(!known || (same_str(c->rec.path, r->path) && same_anc(&c->rec, r)));
#endif
	if (!known && (!same_str(c->rec.path, r->path) || !same_anc(&c->rec, r)))
		return 0;
	size_t len;
	int ret = 0;
	if (j->npend && c->seq >= j->pend_first && c->seq >= j->compact) {
		/* Not in the tree yet: only its bytes change, later. */
		long d = 0;
		if (r->nranges && !ranges_merge(&c->rec, r, &d))
			return 0;
		if (r->kind != c->rec.kind)
			c->rec.also |= also_bit(r->kind);
		/* The records of one batch share their time (journal_hook.c). */
		if (r->sec != c->rec.sec || r->nsec != c->rec.nsec) {
			d += (long)var_len((uint64_t)r->sec) - (long)var_len((uint64_t)c->rec.sec) +
			     (long)var_len(r->nsec) - (long)var_len(c->rec.nsec);
			c->rec.sec = r->sec;
			c->rec.nsec = r->nsec;
		}
		len = (size_t)((long)c->len + d);
		assert_enc_len(&c->rec, len);
		j->pend[c->seq - j->pend_first].len = len;
		if (!c->stale) {
			c->stale = true;
			j->nstale++;
		}
	} else {
		struct jnl_rec save = c->rec;
		long d;
		if (r->nranges && !ranges_merge(&c->rec, r, &d))
			return 0;
		if (r->kind != c->rec.kind)
			c->rec.also |= also_bit(r->kind);
		c->rec.sec = r->sec;
		c->rec.nsec = r->nsec;
		if (j->npend && c->seq >= j->pend_first) {
			/* A format 1 record (tests): encoded at once. */
			size_t off;
			if (encode_pend(j, &c->rec, false, &off, &len)) {
				c->rec = save;
				return -ENOMEM;
			}
			struct jpend *p = &j->pend[c->seq - j->pend_first];
			p->off = off;
			p->len = len;
		} else {
			uint8_t *b = encode(&c->rec, &len, c->seq >= j->compact);
			if (!b) {
				c->rec = save;
				return -ENOMEM;
			}
			/* Stored by a flush earlier in this transaction. */
			rfs_tree t;
			size_t oldc = (c->len + RFS_VAL_MAX - 1) / RFS_VAL_MAX;
			ret = jtree(j, &t);
			if (!ret) {
				ret = chunks_put(j, &t, c->seq, b, len, oldc, RFS_PUT_UPSERT);
				/* Also after an error: the root may have moved. */
				int r2 = rfs_catalog_set(j->pool, RFS_JOURNAL_ID, &t);
				if (!ret)
					ret = r2;
			}
			free(b);
		}
	}
	if (ret) {
		c->valid = false;
		return ret;
	}
	j->hdr_dirty = true;
	j->h.bytes += cost(j, c->seq, len, c->rec.nanc) - cost(j, c->seq, c->len, c->rec.nanc);
	c->len = len;
	r->seq = c->seq;
	*merged = true;
	return 0;
}

/* Remember r as its inode's last mergeable record; takes r's path and
 * directories (no copy: the caller is done with them), or copies them
 * when they are lent (without memory for the copies, r is not kept: a
 * later change starts a record of its own).  c: r's slot. */
static int cache_put(struct rfs_jnl *j, struct jnl_rec *r, struct jcache *c, size_t len)
{
	if (c->stale && stale_encode(j, c))
		return -ENOMEM;
	rec_free(&c->rec);
	c->valid = false;
	char *path = r->path;
	struct jnl_anc *anc = r->anc;
	if (r->lent) {
		path = path ? strdup(path) : NULL;
		anc = r->nanc ? malloc(sizeof(*anc) * r->nanc) : NULL;
		if ((r->path && !path) || (r->nanc && !anc)) {
			free(path);
			free(anc);
			return 0;
		}
		if (r->nanc)
			memcpy(anc, r->anc, sizeof(*anc) * r->nanc);
	} else {
		r->path = NULL;
		r->anc = NULL;
	}
	c->rec = *r;
	c->rec.path = path;
	c->rec.anc = anc;
	c->rec.lent = false;
	c->rec.old_path = NULL;
	c->vol = r->vol;
	c->ino = r->ino;
	c->seq = r->seq;
	c->gen = rfs_pool_txn_gen(j->pool);
	c->len = len;
	c->valid = true;
	return 0;
}

/* A rename, link or unlink of (vol, ino): later changes must come after
 * it, so nothing merges into the inode's records before it. */
static void cache_forget(struct rfs_jnl *j, const struct jnl_rec *r)
{
	for (int i = 0; i < JNL_CACHE; i++)
		if (j->cache[i].vol == r->vol && j->cache[i].ino == r->ino)
			j->cache[i].valid = false;
}

/* Blocks that storing a record of len bytes with nanc index items may
 * take at most: per item, a fresh leaf, its split and a deletion's
 * shadow when trimming. */
static uint64_t rec_blocks(size_t len, unsigned nanc)
{
	return 4 * ((len + RFS_VAL_MAX - 1) / RFS_VAL_MAX + nanc);
}

/* Keep r for the next flush (seq: the next one), its encoding in
 * pbytes, its directories in panc. */
static int pend_add(struct rfs_jnl *j, const struct jnl_rec *r, size_t *len)
{
	if (j->npend == j->cappend) {
		size_t cap = j->cappend ? j->cappend * 2 : 256;
		struct jpend *np = realloc(j->pend, sizeof(*np) * cap);
		if (!np)
			return -ENOMEM;
		j->pend = np;
		j->cappend = cap;
	}
	if (j->nanc + r->nanc > j->capanc) {
		size_t cap = j->capanc ? j->capanc : 1024;
		while (cap < j->nanc + r->nanc)
			cap *= 2;
		struct jnl_anc *na = realloc(j->panc, sizeof(*na) * cap);
		if (!na)
			return -ENOMEM;
		j->panc = na;
		j->capanc = cap;
	}
	size_t off;
	if (encode_pend(j, r, j->h.next >= j->compact, &off, len))
		return -ENOMEM;
	if (r->nanc)
		memcpy(j->panc + j->nanc, r->anc, sizeof(*r->anc) * r->nanc);
	if (!j->npend)
		j->pend_first = j->h.next;
	j->pend[j->npend++] = (struct jpend){j->h.next, off, *len, j->nanc, r->nanc};
	j->nanc += r->nanc;
	j->pend_blocks += rec_blocks(*len, r->nanc);
	return 0;
}

/* Append r; c: its slot (cache_slot), known: as try_merge. */
static int put_one(struct rfs_jnl *j, struct jnl_rec *r, struct jcache *c, bool known)
{
	if (also_bit(r->kind)) {
		bool merged;
		int ret = try_merge(j, r, c, known, &merged);
		if (ret || merged)
			return ret;
	}
	size_t len;
	int ret = pend_add(j, r, &len);
	if (ret)
		return ret;
	r->seq = j->h.next;
	j->h.next++;
	j->h.nrecords++;
	j->h.bytes += cost(j, r->seq, len, r->nanc);
	j->hdr_dirty = true;
	/* Last: cache_put takes r's path and directories. */
	if (merge_target(r->kind))
		return cache_put(j, r, c, len);
	cache_forget(j, r);
	return 0;
}

static int item_put(struct rfs_jnl *j, rfs_tree *t, uint64_t vol, uint64_t ino, uint64_t seq,
		    uint16_t dn, uint16_t dold)
{
	uint8_t k[DKEY_LEN];
	uint16_t dv[2] = {dn, dold};
	return rfs_tree_put(j->pool, t, k, dkey(k, vol, ino, seq), dv, sizeof(dv), 0,
			    RFS_PUT_INSERT | RFS_PUT_APPEND);
}

/* ---- packed index items ---------------------------------------------------------
 * One item per directory and run of seqs (version 3, keys from packed_from
 * on; docs/FORMAT.md): key 'D' vol ino first seq; value LEB128 numbers:
 * last seq - first seq, then per entry its seq - the previous one (the
 * first: 0), the depth above the new path + 1 and above the old path + 1
 * (0: not above it).  A flush stores the entries of one directory in as
 * few items as fit (RFS_VAL_MAX bytes each, about 300 entries). */

/* Most entries one item holds (3 bytes each at least). */
#define PACK_MAX (RFS_VAL_MAX / 3 + 1)

static uint64_t depth_enc(uint16_t d)
{
	return d == JNL_DEPTH_NONE ? 0 : (uint64_t)d + 1;
}

static int depth_dec(uint64_t v, uint16_t *d)
{
	if (v > JNL_DEPTH_NONE)
		return -EUCLEAN;
	*d = v ? (uint16_t)(v - 1) : JNL_DEPTH_NONE;
	return 0;
}

static unsigned entry_len(uint64_t delta, const struct jitem *e)
{
	return var_len(delta) + var_len(depth_enc(e->dn)) + var_len(depth_enc(e->dold));
}

/* Store v[0..n) (one directory, seqs ascending) as packed items; *used:
 * how many the first item took (the caller loops). */
static int pack_put(struct rfs_jnl *j, rfs_tree *t, const struct jitem *v, size_t n,
		    size_t *used)
{
	size_t body = 0, k = 0;
	for (; k < n; k++) {
		size_t es = entry_len(k ? v[k].seq - v[k - 1].seq : 0, &v[k]);
		if (k && body + es + var_len(v[k].seq - v[0].seq) > RFS_VAL_MAX)
			break;
		body += es;
	}
	uint8_t b[RFS_VAL_MAX + 16], *p = put_var(b, v[k - 1].seq - v[0].seq);
	for (size_t i = 0; i < k; i++) {
		p = put_var(p, i ? v[i].seq - v[i - 1].seq : 0);
		p = put_var(p, depth_enc(v[i].dn));
		p = put_var(p, depth_enc(v[i].dold));
	}
	*used = k;
	uint8_t key[DKEY_LEN];
	return rfs_tree_put(j->pool, t, key, dkey(key, v[0].vol, v[0].ino, v[0].seq), b,
			    (size_t)(p - b), 0, RFS_PUT_INSERT | RFS_PUT_APPEND);
}

/* Decode a packed item keyed seq0 (vol and ino not set): up to PACK_MAX
 * entries into e, their number in *n, the last seq in *last. */
static int pack_decode(uint64_t seq0, const uint8_t *p, size_t len, struct jitem *e,
		       size_t *n, uint64_t *last)
{
	const uint8_t *end = p + len;
	uint64_t span, seq = seq0;
	*n = 0;
	if (get_var(&p, end, &span))
		return -EUCLEAN;
	*last = seq0 + span;
	while (p < end) {
		uint64_t d, a, b;
		if (*n == PACK_MAX || get_var(&p, end, &d) || get_var(&p, end, &a) ||
		    get_var(&p, end, &b))
			return -EUCLEAN;
		seq += d;
		e[*n].seq = seq;
		if (depth_dec(a, &e[*n].dn) || depth_dec(b, &e[*n].dold))
			return -EUCLEAN;
		(*n)++;
	}
	return *n && seq == *last ? 0 : -EUCLEAN;
}

/* The pending index items grouped by directory, each group in seq
 * order (as the records are): *out (malloc'ed) holds n items.  A hash of
 * the directories gives each its group; a counting pass places them.
 * -ENOMEM when memory is short. */
static int pend_items(struct rfs_jnl *j, size_t n, struct jitem **out)
{
	size_t hs = 16;
	while (hs < 2 * n)
		hs *= 2;
	struct jitem *v = malloc(sizeof(*v) * n);
	uint32_t *slot = calloc(hs, sizeof(*slot)); /* group + 1, 0: free */
	uint32_t *grp = malloc(sizeof(*grp) * n);   /* per item */
	size_t *start = calloc(n + 1, sizeof(*start));
	struct jnl_anc *key = malloc(sizeof(*key) * n);
	int ret = v && slot && grp && start && key ? 0 : -ENOMEM;
	size_t ng = 0, k = 0;
	for (size_t i = 0; !ret && i < j->npend; i++)
		for (unsigned x = 0; x < j->pend[i].nanc; x++, k++) {
			const struct jnl_anc *a = &j->panc[j->pend[i].aoff + x];
			size_t h = (size_t)((a->ino * 0x9e3779b97f4a7c15ull ^ a->vol) >> 20) & (hs - 1);
			while (slot[h] && (key[slot[h] - 1].vol != a->vol ||
					   key[slot[h] - 1].ino != a->ino))
				h = (h + 1) & (hs - 1);
			if (!slot[h]) {
				key[ng] = *a;
				slot[h] = (uint32_t)++ng;
			}
			grp[k] = slot[h] - 1;
			start[grp[k] + 1]++;
		}
	for (size_t g = 0; !ret && g < ng; g++)
		start[g + 1] += start[g];
	k = 0;
	for (size_t i = 0; !ret && i < j->npend; i++)
		for (unsigned x = 0; x < j->pend[i].nanc; x++, k++) {
			const struct jnl_anc *a = &j->panc[j->pend[i].aoff + x];
			v[start[grp[k]]++] = (struct jitem){a->vol, a->ino, j->pend[i].seq,
							    a->depth_new, a->depth_old};
		}
	free(slot);
	free(grp);
	free(start);
	free(key);
	if (ret) {
		free(v);
		return ret;
	}
	*out = v;
	return 0;
}

/* Store the pending records: their chunks in seq order, then their index
 * items directory by directory, so that consecutive puts land in the
 * same leaf (one directory's range only grows at its end). */
static int pend_store(struct rfs_jnl *j, rfs_tree *t)
{
	int ret = 0;
	size_t nitems = 0;
	for (int i = 0; j->nstale && i < JNL_CACHE; i++)
		if (j->cache[i].stale && stale_encode(j, &j->cache[i]))
			return -ENOMEM;
	for (size_t i = 0; !ret && i < j->npend; i++) {
		struct jpend *p = &j->pend[i];
		ret = chunks_put(j, t, p->seq, j->pbytes + p->off, p->len, 0,
				 RFS_PUT_INSERT | RFS_PUT_APPEND);
		nitems += p->nanc;
	}
	if (ret || !nitems)
		return ret;
	struct jitem *v;
	if (pend_items(j, nitems, &v)) {
		/* In record order then: the same items, less locality. */
		for (size_t i = 0; !ret && i < j->npend; i++)
			for (unsigned k = 0; !ret && k < j->pend[i].nanc; k++) {
				const struct jnl_anc *a = &j->panc[j->pend[i].aoff + k];
				ret = item_put(j, t, a->vol, a->ino, j->pend[i].seq, a->depth_new,
					       a->depth_old);
			}
		return ret;
	}
	for (size_t i = 0; !ret && i < nitems;) {
		if (v[i].seq < j->packed) { /* a format 1 or 2 journal (tests) */
			ret = item_put(j, t, v[i].vol, v[i].ino, v[i].seq, v[i].dn, v[i].dold);
			i++;
			continue;
		}
		size_t e = i + 1, used = 0;
		while (e < nitems && v[e].vol == v[i].vol && v[e].ino == v[i].ino)
			e++;
		ret = pack_put(j, t, v + i, e - i, &used);
		i += used;
	}
	free(v);
	return ret;
}

/* Record seq, the oldest kept, is trimmed: the packed item of (vol, ino)
 * holding it goes when seq is its last entry (every earlier one is
 * trimmed already); until then queries skip the entries below the
 * oldest seq. */
static int pack_trim(struct rfs_jnl *j, rfs_tree *t, uint64_t vol, uint64_t ino, uint64_t seq)
{
	rfs_cursor *c;
	uint8_t k[DKEY_LEN];
	int ret = rfs_cursor_open(j->pool, t, &c);
	if (ret)
		return ret;
	bool drop = false;
	uint64_t seq0 = 0;
	dkey(k, vol, ino, seq);
	ret = rfs_cursor_seek(c, k, DKEY_LEN, -1);
	if (!ret) {
		const void *key, *val;
		size_t kl, vl;
		rfs_cursor_get(c, &key, &kl, &val, &vl, NULL);
		const uint8_t *p = val, *end = p + vl;
		uint64_t span;
		if (kl == DKEY_LEN && memcmp(key, k, 17) == 0 &&
		    (seq0 = get64((const uint8_t *)key + 17)) >= j->packed) {
			ret = get_var(&p, end, &span);
			drop = !ret && seq0 + span <= seq;
		}
	}
	rfs_cursor_close(c);
	if (ret || !drop)
		return ret;
	return rfs_tree_delete(j->pool, t, k, dkey(k, vol, ino, seq0), 0);
}

/* Drop the oldest record. */
static int trim_one(struct rfs_jnl *j, rfs_tree *t)
{
	rfs_cursor *c;
	uint8_t k[DKEY_LEN];
	int ret = rfs_cursor_open(j->pool, t, &c);
	if (ret)
		return ret;
	k[0] = 'S';
	uint64_t seq = 0;
	ret = rfs_cursor_seek(c, k, 1, 1);
	if (!ret) {
		const void *key, *val;
		size_t kl, vl;
		rfs_cursor_get(c, &key, &kl, &val, &vl, NULL);
		if (kl == SKEY_LEN && ((const uint8_t *)key)[0] == 'S')
			seq = get64((const uint8_t *)key + 1);
		else
			ret = -ENOENT;
	}
	rfs_cursor_close(c);
	if (ret)
		return ret;
	struct jview v;
	ret = rec_read(j, t, seq, &v);
	if (ret == -EUCLEAN) {
		/* Half written before a reset: its chunks go; its index items
		 * (if any) point below the oldest seq and are skipped. */
		uint8_t sk[SKEY_LEN];
		for (uint16_t n = 0; rfs_tree_delete(j->pool, t, sk, skey(sk, seq, n), 0) == 0; n++)
			;
		if (j->h.oldest < seq + 1)
			j->h.oldest = seq + 1;
		return 0;
	}
	if (ret)
		return ret;
	for (unsigned i = 0; !ret && i < v.d.nanc; i++) {
		uint64_t vol, ino;
		memcpy(&vol, v.anc + 16 * i, 8);
		memcpy(&ino, v.anc + 16 * i + 8, 8);
		ret = seq < j->packed ? rfs_tree_delete(j->pool, t, k, dkey(k, vol, ino, seq), 0)
				      : pack_trim(j, t, vol, ino, seq);
		if (ret == -ENOENT) /* the same directory on both sides: once */
			ret = 0;
	}
	if (!ret)
		ret = chunks_put(j, t, seq, NULL, 0, v.nchunks, 0);
	if (!ret) {
		uint64_t c2 = cost(j, seq, v.len, v.d.nanc);
		j->h.bytes = j->h.bytes > c2 ? j->h.bytes - c2 : 0;
		j->h.nrecords--;
		/* Never back: a record kept past a reset is below oldest
		 * already, and the ones after it must stay unreadable. */
		if (j->h.oldest < seq + 1)
			j->h.oldest = seq + 1;
	}
	view_free(&v);
	return ret;
}

static int trim(struct rfs_jnl *j, rfs_tree *t)
{
	int ret = 0;
	while (!ret && j->h.bytes > j->h.limit && j->h.nrecords > 0)
		ret = trim_one(j, t);
	if (j->h.nrecords == 0)
		j->h.oldest = j->h.next;
	return ret;
}

static void note_txn(struct rfs_jnl *j)
{
	uint64_t g = rfs_pool_txn_gen(j->pool);
	if (g != j->cur_gen) {
		j->prev_gen = j->cur_gen;
		j->prev_next = j->cur_next;
		j->cur_gen = g;
	}
	j->cur_next = j->h.next;
}

int jnl_append(struct rfs_jnl *j, struct jnl_rec *recs, size_t n)
{
	if (n == 0)
		return 0;
	int ret = 0;
	struct jcache *c = NULL;
	for (size_t i = 0; !ret && i < n; i++) {
		/* A record that shares the one before's strings (the records
		 * of one node that fs/journal_hook.c builds from one path:
		 * a delayed batch's writes of a file) has its slot, and after
		 * put_one of that one the slot is either not its inode's or
		 * holds its path and directories (merged into, or put there):
		 * no hash of the path and no compare of the strings again. */
		bool known = i && same_lent(&recs[i - 1], &recs[i]);
		if (!known)
			c = cache_slot(j, recs[i].vol, recs[i].ino, recs[i].path);
#ifdef RFS_DEBUG
		assert(c == cache_slot(j, recs[i].vol, recs[i].ino, recs[i].path));
#endif
		ret = put_one(j, &recs[i], c, known);
	}
	if (ret) {
		/* The caller resets the journal, which drops what is pending
		 * and skips the seqs handed out. */
		for (int i = 0; i < JNL_CACHE; i++)
			j->cache[i].valid = false;
		return ret;
	}
	note_txn(j);
	return 0;
}

int jnl_flush(struct rfs_jnl *j)
{
	if (!j->npend && !j->hdr_dirty)
		return 0;
	rfs_tree t;
	int ret = jtree(j, &t);
	if (!ret)
		ret = pend_store(j, &t);
	if (!ret)
		ret = trim(j, &t);
	if (!ret)
		ret = hdr_put(j, &t, RFS_PUT_REPLACE);
	/* Also after an error: the tree may be half changed and its root
	 * moved (the caller resets the journal, which skips the seqs of the
	 * records half written). */
	int r2 = rfs_catalog_set(j->pool, RFS_JOURNAL_ID, &t);
	if (!ret)
		ret = r2;
	pend_drop(j);
	if (!ret)
		j->hdr_dirty = false;
	else
		for (int i = 0; i < JNL_CACHE; i++)
			j->cache[i].valid = false;
	return ret;
}

uint64_t jnl_flush_blocks(const struct rfs_jnl *j)
{
	return j->npend ? j->pend_blocks + JNL_FLUSH_BLOCKS : 0;
}

bool jnl_flush_due(const struct rfs_jnl *j)
{
	return j->npend >= JNL_PEND_MAX || j->nbytes >= JNL_PEND_BYTES;
}

int jnl_reset(struct rfs_jnl *j, const char *why)
{
	rfs_tree t;
	int ret = jtree(j, &t);
	if (ret)
		return ret;
	j->h.epoch = random64();
	/* Old records stay until trimmed; no cursor of the old epoch can
	 * read them any more.  Seqs a failed append may have half written
	 * are skipped. */
	j->h.next += JNL_RESET_GAP;
	j->h.oldest = j->h.next;
	for (int i = 0; i < JNL_CACHE; i++)
		j->cache[i].valid = false;
	pend_drop(j);
	ret = hdr_put(j, &t, RFS_PUT_REPLACE);
	if (!ret)
		j->hdr_dirty = false;
	if (!ret)
		ret = rfs_catalog_set(j->pool, RFS_JOURNAL_ID, &t);
	if (!ret) {
		note_txn(j);
		rfs_log(RFS_LOG_WARN, "%s: change journal reset (%s): readers must rescan",
			rfs_pool_path(j->pool), why);
	}
	return ret;
}

void jnl_write_format1(struct rfs_jnl *j)
{
	j->h.version = 1;
	j->h.compact_from = j->h.packed_from = 0;
	j->compact = j->packed = UINT64_MAX;
}

uint64_t jnl_durable_next(struct rfs_jnl *j)
{
	uint64_t c = rfs_pool_committed_gen(j->pool);
	if (j->cur_gen && j->cur_gen <= c)
		return j->cur_next;
	if (j->prev_gen && j->prev_gen <= c)
		return j->prev_next;
	return j->base_next;
}

bool jnl_pending(struct rfs_jnl *j)
{
	return jnl_durable_next(j) != j->h.next;
}

void jnl_info(struct rfs_jnl *j, struct jnl_info *out)
{
	memcpy(out->uuid, j->uuid, 16);
	out->epoch = j->h.epoch;
	out->oldest = j->h.oldest;
	out->durable = jnl_durable_next(j);
	out->next = j->h.next;
	out->limit_bytes = j->h.limit;
	out->bytes = j->h.bytes;
	out->nrecords = j->h.nrecords;
	out->pending = j->npend;
}

int jnl_set_limit(struct rfs_jnl *j, uint64_t limit_bytes)
{
	rfs_tree t;
	int ret = jnl_flush(j);
	if (ret)
		return ret;
	struct jhdr save = j->h;
	ret = jtree(j, &t);
	j->h.limit = limit_bytes;
	if (!ret)
		ret = trim(j, &t);
	if (!ret)
		ret = hdr_put(j, &t, RFS_PUT_REPLACE);
	if (!ret)
		ret = rfs_catalog_set(j->pool, RFS_JOURNAL_ID, &t);
	if (ret)
		j->h = save;
	else
		note_txn(j);
	return ret;
}

static int any_rec(void *arg, const struct rfs_change *c)
{
	(void)arg;
	(void)c;
	return 1;
}

bool jnl_pending_below(struct rfs_jnl *j, bool all, uint64_t vol, uint64_t ino)
{
	for (size_t i = 0; i < j->npend; i++) {
		if (all)
			return true;
		for (unsigned k = 0; k < j->pend[i].nanc; k++)
			if (j->panc[j->pend[i].aoff + k].vol == vol &&
			    j->panc[j->pend[i].aoff + k].ino == ino)
				return true;
	}
	/* Flushed earlier in this transaction: the index range past the
	 * last commit, O(changes). */
	uint64_t from = jnl_durable_next(j), upto = j->npend ? j->pend_first : j->h.next;
	if (from >= upto)
		return false;
	return (all ? jnl_query_all(j, from, upto, any_rec, NULL)
		    : jnl_query(j, vol, ino, from, upto, any_rec, NULL)) > 0;
}

/* ---- queries ------------------------------------------------------------------ */

/* path without its first depth components ("" for exactly depth). */
static const char *strip(const char *p, size_t len, unsigned depth, size_t *outlen)
{
	const char *e = p + len;
	for (unsigned i = 0; i < depth && p < e; i++) {
		const char *s = memchr(p, '/', (size_t)(e - p));
		p = s ? s + 1 : e;
	}
	*outlen = (size_t)(e - p);
	return p;
}

static int deliver(struct jview *v, uint64_t seq, uint16_t dn, uint16_t dold,
		   rfs_change_fn fn, void *arg)
{
	struct rfs_change ch = {.seq = seq,
				.sec = v->d.sec,
				.nsec = v->d.nsec,
				.kind = v->d.kind,
				.volume = v->d.vol,
				.ino = v->d.ino,
				.parent = v->d.parent,
				.also = ((v->d.also & JNL_ALSO_DATA) ? 1u << RFS_CHANGE_DATA : 0) |
					((v->d.also & JNL_ALSO_ATTR) ? 1u << RFS_CHANGE_ATTR : 0) |
					((v->d.also & JNL_ALSO_XATTR) ? 1u << RFS_CHANGE_XATTR : 0),
				.nranges = v->d.nranges,
				.ranges = v->ranges};
	char *np = NULL, *op = NULL;
	size_t l;
	const char *s;
	if ((v->d.flags & JD_PATH) && dn != JNL_DEPTH_NONE) {
		s = strip(v->path, v->d.pathlen, dn, &l);
		np = strndup(s, l);
		if (!np)
			return -ENOMEM;
	}
	if ((v->d.flags & JD_OLD) && dold != JNL_DEPTH_NONE) {
		s = strip(v->old, v->d.oldlen, dold, &l);
		op = strndup(s, l);
		if (!op) {
			free(np);
			return -ENOMEM;
		}
	}
	if (ch.kind == RFS_CHANGE_RENAME && np && !op && (v->d.flags & JD_OLD))
		ch.kind = RFS_CHANGE_MOVE_IN;
	else if (ch.kind == RFS_CHANGE_RENAME && !np && op) {
		ch.kind = RFS_CHANGE_MOVE_OUT;
		ch.parent = v->d.old_parent;
		np = op;
		op = NULL;
	} else if (ch.kind == RFS_CHANGE_EXCHANGE && !np && op) {
		np = op;
		op = NULL;
	}
	ch.path = np;
	ch.old_path = op;
	int ret = fn(arg, &ch);
	free(np);
	free(op);
	return ret;
}

/* Read record seq and deliver it with those depths. */
static int deliver_seq(struct rfs_jnl *j, const rfs_tree *t, uint64_t seq, uint16_t dn,
		       uint16_t dold, rfs_change_fn fn, void *arg)
{
	struct jview v;
	int ret = rec_read(j, t, seq, &v);
	if (ret) {
		rfs_log(RFS_LOG_ERR, "%s: change journal record %" PRIu64 " cannot be read: %s",
			rfs_pool_path(j->pool), seq, strerror(-ret));
		return ret;
	}
	ret = deliver(&v, seq, dn, dold, fn, arg);
	view_free(&v);
	return ret;
}

int jnl_query(struct rfs_jnl *j, uint64_t vol, uint64_t ino, uint64_t from,
	      uint64_t upto, rfs_change_fn fn, void *arg)
{
	rfs_tree t;
	rfs_cursor *c;
	int ret = jtree_cursor(j, &t, &c);
	if (ret || !c)
		return ret;
	uint8_t k[DKEY_LEN];
	dkey(k, vol, ino, from);
	/* A packed item keyed below from may hold seqs from on. */
	ret = rfs_cursor_seek(c, k, DKEY_LEN, -1);
	if (!ret) {
		const void *key;
		size_t kl;
		rfs_cursor_get(c, &key, &kl, NULL, NULL, NULL);
		if (kl != DKEY_LEN || memcmp(key, k, 17) != 0 ||
		    get64((const uint8_t *)key + 17) < j->packed)
			ret = -ENOENT;
	}
	if (ret == -ENOENT)
		ret = rfs_cursor_seek(c, k, DKEY_LEN, 1);
	struct jitem *e = NULL;
	for (; !ret; ret = rfs_cursor_step(c, 1)) {
		const void *key, *val;
		size_t kl, vl, n = 1;
		rfs_cursor_get(c, &key, &kl, &val, &vl, NULL);
		if (kl != DKEY_LEN || memcmp(key, k, 17) != 0)
			break;
		uint64_t seq = get64((const uint8_t *)key + 17), last;
		if (seq >= upto)
			break;
		if (seq >= j->packed) {
			if (!e && !(e = malloc(sizeof(*e) * PACK_MAX))) {
				ret = -ENOMEM;
				break;
			}
			if (pack_decode(seq, val, vl, e, &n, &last)) {
				rfs_log(RFS_LOG_ERR, "%s: change journal: damaged index item of directory %llu:%llu at seq %llu; run reflinkfs fsck",
					rfs_pool_path(j->pool), (unsigned long long)vol,
					(unsigned long long)ino, (unsigned long long)seq);
				ret = -EUCLEAN;
				break;
			}
			if (last < from)
				continue;
		} else {
			uint16_t dv[2] = {JNL_DEPTH_NONE, JNL_DEPTH_NONE};
			if (vl == sizeof(dv))
				memcpy(dv, val, sizeof(dv));
			struct jitem one = {vol, ino, seq, dv[0], dv[1]};
			if (!e && !(e = malloc(sizeof(*e) * PACK_MAX))) {
				ret = -ENOMEM;
				break;
			}
			e[0] = one;
		}
		for (size_t i = 0; !ret && i < n; i++) {
			if (e[i].seq >= upto)
				goto done;
			/* Below from, or kept by a reset or trim, not readable. */
			if (e[i].seq < from || e[i].seq < j->h.oldest)
				continue;
			ret = deliver_seq(j, &t, e[i].seq, e[i].dn, e[i].dold, fn, arg);
		}
		if (ret)
			break;
	}
done:
	free(e);
	rfs_cursor_close(c);
	return ret == -ENOENT ? 0 : ret;
}

int jnl_query_all(struct rfs_jnl *j, uint64_t from, uint64_t upto, rfs_change_fn fn, void *arg)
{
	rfs_tree t;
	rfs_cursor *c;
	int ret = jtree_cursor(j, &t, &c);
	if (ret || !c)
		return ret;
	uint8_t k[SKEY_LEN];
	skey(k, from < j->h.oldest ? j->h.oldest : from, 0);
	for (ret = rfs_cursor_seek(c, k, SKEY_LEN, 1); !ret; ret = rfs_cursor_step(c, 1)) {
		const void *key, *val;
		size_t kl, vl;
		rfs_cursor_get(c, &key, &kl, &val, &vl, NULL);
		const uint8_t *kb = key;
		if (kl != SKEY_LEN || kb[0] != 'S')
			break;
		if (kb[9] || kb[10]) /* a later chunk */
			continue;
		uint64_t seq = get64(kb + 1);
		if (seq >= upto)
			break;
		/* The mount root is above both names of a rename. */
		ret = deliver_seq(j, &t, seq, 0, 0, fn, arg);
		if (ret)
			break;
	}
	rfs_cursor_close(c);
	return ret == -ENOENT ? 0 : ret;
}

/* ---- cursors ------------------------------------------------------------------ */

void jnl_cursor_encode(const uint8_t uuid[16], uint64_t epoch, uint64_t seq,
		       char out[RFS_CURSOR_MAX])
{
	char u[33];
	for (int i = 0; i < 16; i++)
		snprintf(u + 2 * i, 3, "%02x", uuid[i]);
	snprintf(out, RFS_CURSOR_MAX, "rfsj1:%s:%016" PRIx64 ":%016" PRIx64, u, epoch, seq);
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

static int hex64(const char *s, uint64_t *v)
{
	*v = 0;
	for (int i = 0; i < 16; i++) {
		int h = hexval(s[i]);
		if (h < 0)
			return -EINVAL;
		*v = *v << 4 | (uint64_t)h;
	}
	return 0;
}

int jnl_cursor_decode(const char *text, uint8_t uuid[16], uint64_t *epoch, uint64_t *seq)
{
	if (strlen(text) != 6 + 32 + 1 + 16 + 1 + 16 || strncmp(text, "rfsj1:", 6) != 0 ||
	    text[38] != ':' || text[55] != ':')
		return -EINVAL;
	for (int i = 0; i < 16; i++) {
		int a = hexval(text[6 + 2 * i]), b = hexval(text[7 + 2 * i]);
		if (a < 0 || b < 0)
			return -EINVAL;
		uuid[i] = (uint8_t)(a << 4 | b);
	}
	if (hex64(text + 39, epoch) || hex64(text + 56, seq))
		return -EINVAL;
	return 0;
}
