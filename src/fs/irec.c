/*
 * On-disk forms of an inode record (docs/FORMAT.md, "Inode records").
 *
 * Fixed (volume formats 1-5, and whenever the compact form would not be
 * smaller): struct rfs_inode as it is in memory (136 bytes), then the
 * tail.  Compact (format 6): the 8-byte subtree root (kept first, for
 * RFS_ITEM_TREE), the inode number in 6 bytes, two bytes of presence
 * bits whose last byte has its top bit set, then LEB128 numbers, only
 * the fields that differ from their usual value, then the tail.
 *
 * Why a byte tells the forms apart: in a fixed record bytes 8..15 are the
 * inode number, which is below 2^48 (st_ino packs the volume above it),
 * so byte 15 is 0; in a compact record it has bit 7 set.  A record of a
 * small file shrinks from 136 to about 50 bytes, which is most of what a
 * clone of the file writes (docs/ARCHITECTURE.md, "Cost of a tree
 * clone").
 */
#include "fs/fs_internal.h"

/* Presence bits (bytes 14 and 15 of a compact record, little-endian;
 * bit 15 is the compact marker, 13-14 are reserved and zero). */
enum {
	CR_MNS = 1u << 0,    /* mtime_ns != 0: u32 */
	CR_CT = 1u << 1,     /* ctime != mtime: zigzag(ctime - mtime) */
	CR_CNS = 1u << 2,    /* ctime_ns != 0: u32 */
	CR_AT = 1u << 3,     /* atime != mtime: zigzag(atime - mtime) */
	CR_ANS = 1u << 4,    /* atime_ns != 0: u32 */
	CR_BT = 1u << 5,     /* btime != ctime: zigzag(btime - ctime) */
	CR_BNS = 1u << 6,    /* btime_ns != 0: u32 */
	CR_NLINK = 1u << 7,  /* nlink != 1 */
	CR_BLOCKS = 1u << 8, /* blocks != 0 */
	CR_RDEV = 1u << 9,   /* rdev != 0 */
	CR_FLAGS = 1u << 10, /* flags != 0 */
	CR_GEN = 1u << 11,   /* generation != 1 */
	CR_DIRX = 1u << 12,  /* links_below, volume, vols_below (any != 0) */
	CR_KNOWN = (1u << 13) - 1,
	CR_MARK = 1u << 15,
};
#define CR_HDR 16u
#define CR_INO_MAX ((1ull << 48) - 1)

static inline size_t put_uv(uint8_t *p, uint64_t v)
{
	if (v < 0x80) {
		*p = (uint8_t)v;
		return 1;
	}
	size_t n = 0;
	while (v >= 0x80) {
		p[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	p[n++] = (uint8_t)v;
	return n;
}

static uint64_t zz(uint64_t d) /* d: a two's complement difference */
{
	return (d << 1) ^ (uint64_t)-(int64_t)(d >> 63);
}

static uint64_t unzz(uint64_t v)
{
	return (v >> 1) ^ (uint64_t)-(int64_t)(v & 1);
}

static inline size_t put_u32(uint8_t *p, uint32_t v)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	memcpy(p, &v, 4);
#else
	for (int k = 0; k < 4; k++)
		p[k] = (uint8_t)(v >> (8 * k));
#endif
	return 4;
}

/* The compact form of r's inode into val (RFS_VAL_MAX bytes, written
 * directly): its length, or 0 when it would not be shorter than the
 * fixed form (or the inode number does not fit). */
static size_t compact_encode(const struct rfs_inode *i, uint8_t *val)
{
	if (i->ino > CR_INO_MAX)
		return 0;
	/* Every field at its longest: 5 + 5 + 5 + 10 + 10 + 4 + 3 * (10 +
	 * 4) + 5 + 10 + 10 + 5 + 5 + 30 = 146 bytes after the header. */
	_Static_assert(CR_HDR + 146 <= RFS_VAL_MAX, "a compact record fits in val");
	uint8_t *b = val;
	unsigned pres = 0;
	size_t n = CR_HDR;
	uint64_t mt = (uint64_t)i->mtime;
	n += put_uv(b + n, i->mode);
	n += put_uv(b + n, i->uid);
	n += put_uv(b + n, i->gid);
	n += put_uv(b + n, i->size);
	n += put_uv(b + n, zz(mt));
	if (i->mtime_ns) {
		pres |= CR_MNS;
		n += put_u32(b + n, i->mtime_ns);
	}
	if (i->ctime != i->mtime) {
		pres |= CR_CT;
		n += put_uv(b + n, zz((uint64_t)i->ctime - mt));
	}
	if (i->ctime_ns) {
		pres |= CR_CNS;
		n += put_u32(b + n, i->ctime_ns);
	}
	if (i->atime != i->mtime) {
		pres |= CR_AT;
		n += put_uv(b + n, zz((uint64_t)i->atime - mt));
	}
	if (i->atime_ns) {
		pres |= CR_ANS;
		n += put_u32(b + n, i->atime_ns);
	}
	if (i->btime != i->ctime) {
		pres |= CR_BT;
		n += put_uv(b + n, zz((uint64_t)i->btime - (uint64_t)i->ctime));
	}
	if (i->btime_ns) {
		pres |= CR_BNS;
		n += put_u32(b + n, i->btime_ns);
	}
	if (i->nlink != 1) {
		pres |= CR_NLINK;
		n += put_uv(b + n, i->nlink);
	}
	if (i->blocks) {
		pres |= CR_BLOCKS;
		n += put_uv(b + n, i->blocks);
	}
	if (i->rdev) {
		pres |= CR_RDEV;
		n += put_uv(b + n, i->rdev);
	}
	if (i->flags) {
		pres |= CR_FLAGS;
		n += put_uv(b + n, i->flags);
	}
	if (i->generation != 1) {
		pres |= CR_GEN;
		n += put_uv(b + n, i->generation);
	}
	if (i->links_below || i->volume || i->vols_below) {
		pres |= CR_DIRX;
		n += put_uv(b + n, i->links_below);
		n += put_uv(b + n, i->volume);
		n += put_uv(b + n, i->vols_below);
	}
	if (n >= RFS_INODE_SIZE)
		return 0;
	memcpy(b, &i->subtree, 8);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	memcpy(b + 8, &i->ino, 8); /* bytes 14 and 15 are set below */
#else
	for (int k = 0; k < 6; k++)
		b[8 + k] = (uint8_t)(i->ino >> (8 * k));
#endif
	pres |= CR_MARK;
	b[14] = (uint8_t)pres;
	b[15] = (uint8_t)(pres >> 8);
	return n;
}

size_t rec_encode(const struct rfs_irec *r, uint8_t *val, bool compact)
{
	size_t n = compact ? compact_encode(&r->i, val) : 0;
	if (!n) {
		memcpy(val, &r->i, RFS_INODE_SIZE);
		n = RFS_INODE_SIZE;
	}
	memcpy(val + n, r->tail, r->taillen);
	return n + r->taillen;
}

/* A reader of the numbers of a compact record; bad once it ran out or
 * met a malformed number. */
struct crd {
	const uint8_t *p, *end;
	bool bad;
};

static inline uint64_t get_uv(struct crd *c)
{
	if (c->p < c->end && *c->p < 0x80)
		return *c->p++;
	uint64_t v = 0;
	for (unsigned sh = 0; sh < 64; sh += 7) {
		if (c->p == c->end) {
			c->bad = true;
			return 0;
		}
		uint8_t x = *c->p++;
		if (sh == 63 && x > 1) { /* past 64 bits */
			c->bad = true;
			return 0;
		}
		v |= (uint64_t)(x & 0x7f) << sh;
		if (!(x & 0x80))
			return v;
	}
	c->bad = true;
	return 0;
}

static uint32_t get_uv32(struct crd *c)
{
	uint64_t v = get_uv(c);
	if (v > UINT32_MAX)
		c->bad = true;
	return (uint32_t)v;
}

static uint32_t get_u32(struct crd *c)
{
	if (c->end - c->p < 4) {
		c->bad = true;
		return 0;
	}
	uint32_t v = 0;
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	memcpy(&v, c->p, 4);
#else
	for (int k = 0; k < 4; k++)
		v |= (uint32_t)c->p[k] << (8 * k);
#endif
	c->p += 4;
	return v;
}

static int compact_decode(const uint8_t *v, size_t vlen, struct rfs_irec *r)
{
	struct rfs_inode *i = &r->i;
	unsigned pres = v[14] | (unsigned)v[15] << 8;
	if (pres & ~(unsigned)(CR_KNOWN | CR_MARK))
		return -EUCLEAN;
	memset(i, 0, sizeof(*i));
	memcpy(&i->subtree, v, 8);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	memcpy(&i->ino, v + 8, 8);
	i->ino &= CR_INO_MAX; /* bytes 14 and 15 are the presence bits */
#else
	for (int k = 0; k < 6; k++)
		i->ino |= (uint64_t)v[8 + k] << (8 * k);
#endif
	struct crd c = {v + CR_HDR, v + vlen, false};
	i->mode = get_uv32(&c);
	i->uid = get_uv32(&c);
	i->gid = get_uv32(&c);
	i->size = get_uv(&c);
	uint64_t mt = unzz(get_uv(&c));
	i->mtime = (int64_t)mt;
	i->mtime_ns = (pres & CR_MNS) ? get_u32(&c) : 0;
	i->ctime = (pres & CR_CT) ? (int64_t)(mt + unzz(get_uv(&c))) : i->mtime;
	i->ctime_ns = (pres & CR_CNS) ? get_u32(&c) : 0;
	i->atime = (pres & CR_AT) ? (int64_t)(mt + unzz(get_uv(&c))) : i->mtime;
	i->atime_ns = (pres & CR_ANS) ? get_u32(&c) : 0;
	i->btime = (pres & CR_BT) ? (int64_t)((uint64_t)i->ctime + unzz(get_uv(&c))) : i->ctime;
	i->btime_ns = (pres & CR_BNS) ? get_u32(&c) : 0;
	i->nlink = (pres & CR_NLINK) ? get_uv32(&c) : 1;
	i->blocks = (pres & CR_BLOCKS) ? get_uv(&c) : 0;
	i->rdev = (pres & CR_RDEV) ? get_uv(&c) : 0;
	i->flags = (pres & CR_FLAGS) ? get_uv32(&c) : 0;
	i->generation = (pres & CR_GEN) ? get_uv32(&c) : 1;
	if (pres & CR_DIRX) {
		i->links_below = get_uv(&c);
		i->volume = get_uv(&c);
		i->vols_below = get_uv(&c);
	}
	if (c.bad)
		return -EUCLEAN;
	r->taillen = (size_t)(c.end - c.p);
	if (r->taillen > RFS_INLINE_MAX)
		return -EUCLEAN;
	memcpy(r->tail, c.p, r->taillen);
	return 0;
}

bool rec_is_compact(const void *val, size_t vlen)
{
	return vlen >= CR_HDR && (((const uint8_t *)val)[15] & 0x80);
}

int rec_decode(const void *val, size_t vlen, struct rfs_irec *r)
{
	if (vlen > RFS_VAL_MAX)
		goto bad;
	if (rec_is_compact(val, vlen)) {
		if (compact_decode(val, vlen, r))
			goto bad;
		return 0;
	}
	if (vlen < RFS_INODE_SIZE)
		goto bad;
	memcpy(&r->i, val, RFS_INODE_SIZE);
	r->taillen = vlen - RFS_INODE_SIZE;
	memcpy(r->tail, (const uint8_t *)val + RFS_INODE_SIZE, r->taillen);
	return 0;
bad:
	rfs_log(RFS_LOG_ERR, "inode record of %zu bytes (corrupt)", vlen);
	return -EUCLEAN;
}
