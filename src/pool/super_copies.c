/*
 * The four superblock copies: judging each one at open, choosing the
 * generation to use, rewriting damaged or stale copies, and describing
 * what was found.
 *
 * Slot s holds the generations g with g % 2 == s; copy 0 of a slot is
 * written and flushed before copy 1 (commit.c).  So after any crash the
 * slot being written holds either its old generation in copy 1, or the
 * new one in copy 0: a slot without any valid copy cannot come from a
 * crash alone, and when it is the slot that is not in use, it may have
 * held the newest commit.  docs/ARCHITECTURE.md gives the reasoning.
 */
#include "pool/pool_internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t copy_block(unsigned slot, unsigned copy)
{
	return slot + (uint64_t)RFS_SUPER_SLOTS * copy;
}

/*
 * Why the superblock in block is unusable as copy copy of slot, or NULL
 * when it is valid (then *sb holds it).  *version gets the format version
 * of a copy with our magic that is not ours.
 */
static const char *copy_check(const uint8_t *block, unsigned slot, unsigned copy,
			      struct rfs_super_disk *sb, uint32_t *version)
{
	uint64_t bb, ds;

	memcpy(sb, block, sizeof(*sb));
	*version = 0;
	if (memcmp(sb->magic, RFS_SUPER_MAGIC, 8))
		return "no superblock (magic missing)";
	if (sb->version != RFS_FORMAT_VERSION) {
		/* Before the crc: another format may checksum otherwise. */
		*version = sb->version;
		return sb->version > RFS_FORMAT_VERSION ? "newer format version" : "older format version";
	}
	if (sb->crc != rfs_super_csum(block))
		return "checksum mismatch";
	if (sb->copy != copy)
		return "copy number does not match its block";
	if (sb->generation % RFS_SUPER_SLOTS != slot)
		return "generation does not belong in this slot";
	rfs_geometry(sb->total_blocks, &bb, &ds);
	if (sb->block_size != RFS_BLOCK_SIZE || sb->total_blocks < RFS_MIN_BLOCKS ||
	    sb->total_blocks > (UINT64_MAX >> RFS_BLOCK_SHIFT) ||
	    sb->bitmap_start != RFS_BITMAP_START || sb->bitmap_blocks != bb ||
	    sb->data_start != ds || sb->high_water < ds || sb->high_water > sb->total_blocks ||
	    sb->used_blocks < ds || sb->used_blocks > sb->high_water)
		return "inconsistent geometry";
	for (unsigned i = 0; i < RFS_ROOT_SLOTS; i++)
		if (sb->roots[i] && (sb->roots[i] < ds || sb->roots[i] >= sb->high_water))
			return "root outside the pool";
	return NULL;
}

int rfs_super_pick(const char *path, const uint8_t *raw, bool log,
		   struct rfs_super_report *r, struct rfs_super_disk *sb)
{
	struct rfs_super_disk sbs[RFS_SUPER_SLOTS][RFS_SUPER_COPIES];
	bool valid[RFS_SUPER_SLOTS][RFS_SUPER_COPIES];
	bool newer_at[RFS_SUPER_SLOTS][RFS_SUPER_COPIES] = {{false}};
	int best[RFS_SUPER_SLOTS] = {-1, -1}; /* copy with the newest valid generation */
	uint32_t newer = 0, older = 0;
	int live = -1;

	memset(r, 0, sizeof(*r));
	for (unsigned s = 0; s < RFS_SUPER_SLOTS; s++) {
		for (unsigned c = 0; c < RFS_SUPER_COPIES; c++) {
			struct rfs_super_copy *rc = &r->copies[s][c];
			uint64_t nr = copy_block(s, c);
			uint32_t version;
			const char *why = copy_check(raw + nr * RFS_BLOCK_SIZE, s, c, &sbs[s][c],
						     &version);

			rc->blocknr = nr;
			valid[s][c] = !why;
			if (why) {
				rc->state = RFS_SUPER_DAMAGED;
				snprintf(rc->why, sizeof(rc->why), "%s", why);
				if (version > RFS_FORMAT_VERSION && version > newer)
					newer_at[s][c] = true;
				if (version && version < RFS_FORMAT_VERSION && version > older)
					older = version;
				if (!memcmp(sbs[s][c].magic, RFS_SUPER_MAGIC, 8)) {
					rc->generation = sbs[s][c].generation;
					rc->claimed = true;
				}
				continue;
			}
			rc->generation = sbs[s][c].generation;
			if (best[s] < 0 || sbs[s][c].generation > sbs[s][best[s]].generation)
				best[s] = (int)c;
		}
		if (best[s] >= 0 &&
		    (live < 0 || sbs[s][best[s]].generation > sbs[live][best[live]].generation))
			live = (int)s;
	}
	/* A newer reflinkfs writes both copies of a slot in its format, or
	 * (cut off between them) leaves an older generation in copy 1.  A
	 * copy claiming a newer format whose mate is valid in ours with a
	 * generation at least as new is a damaged version field instead. */
	for (unsigned s = 0; s < RFS_SUPER_SLOTS; s++)
		for (unsigned c = 0; c < RFS_SUPER_COPIES; c++) {
			if (!newer_at[s][c])
				continue;
			if (valid[s][1 - c] &&
			    sbs[s][1 - c].generation >= sbs[s][c].generation)
				snprintf(r->copies[s][c].why, sizeof(r->copies[s][c].why),
					 "format version %u, but its other copy has this generation in version %u",
					 sbs[s][c].version, RFS_FORMAT_VERSION);
			else if (sbs[s][c].version > newer)
				newer = sbs[s][c].version;
		}
	if (newer) {
		/* Even if other copies are readable: the newest state may be
		 * in the newer format, and using an older one loses it. */
		if (log)
			rfs_log(RFS_LOG_ERR, "%s: format version %u is newer than this reflinkfs supports (%u); use a newer reflinkfs",
				path, newer, RFS_FORMAT_VERSION);
		return -EPROTONOSUPPORT;
	}
	if (live < 0 && older) {
		if (log)
			rfs_log(RFS_LOG_ERR, "%s: format version %u was written by an older reflinkfs; this one reads version %u only (it keeps two copies of each superblock, where version %u kept one) and does not convert pools: mount it with the reflinkfs that made it, copy the files out, and make a new pool with mkfs",
				path, older, RFS_FORMAT_VERSION, older);
		return -EPROTONOSUPPORT;
	}
	if (live < 0) {
		if (log)
			rfs_log(RFS_LOG_ERR, "%s: not a reflinkfs pool (none of the superblock copies in blocks 0 to %u is valid)",
				path, RFS_SUPER_BLOCKS - 1);
		return -EINVAL;
	}

	for (unsigned s = 0; s < RFS_SUPER_SLOTS; s++) {
		for (unsigned c = 0; c < RFS_SUPER_COPIES; c++) {
			struct rfs_super_copy *rc = &r->copies[s][c];

			if (!valid[s][c])
				r->damaged++;
			else if (sbs[s][c].generation < sbs[s][best[s]].generation) {
				rc->state = RFS_SUPER_STALE;
				r->stale++;
			}
		}
	}
	*sb = sbs[live][best[live]];
	r->generation = sb->generation;
	r->slot = (unsigned)live;
	r->copy = (unsigned)best[live];

	/* No slot can hold a generation above the one in use + 1 (that
	 * would need a newer one in the slot in use): a higher claim means
	 * the generation field is damaged too. */
	for (unsigned s = 0; s < RFS_SUPER_SLOTS; s++)
		for (unsigned c = 0; c < RFS_SUPER_COPIES; c++)
			if (r->copies[s][c].claimed && r->copies[s][c].generation > r->generation + 1) {
				r->copies[s][c].claimed = false;
				r->copies[s][c].generation = 0;
			}

	/* The other slot: a crash leaves at least one of its copies valid
	 * (copy 1 is written only once copy 0 is durable), so with none it
	 * was damaged, and may have held the next generation -- unless both
	 * copies still claim an older one. */
	unsigned other = 1 - (unsigned)live;
	if (best[other] < 0) {
		bool all_older = true;

		for (unsigned c = 0; c < RFS_SUPER_COPIES; c++) {
			const struct rfs_super_copy *rc = &r->copies[other][c];

			if (!rc->claimed || rc->generation % RFS_SUPER_SLOTS != other ||
			    rc->generation >= r->generation)
				all_older = false;
		}
		r->lost_newer = !all_older;
		if (r->lost_newer)
			r->lost_gen = r->generation + 1;
	}
	return 0;
}

void rfs_super_repair(rfs_pool *pool, const uint8_t *raw)
{
	struct rfs_super_report *r = &pool->super;
	uint8_t *block = aligned_alloc(RFS_BLOCK_SIZE, RFS_BLOCK_SIZE);
	unsigned written = 0;
	int ret = 0;

	if (!block)
		ret = -ENOMEM;
	for (unsigned s = 0; s < RFS_SUPER_SLOTS; s++) {
		int good = -1;

		for (unsigned c = 0; c < RFS_SUPER_COPIES; c++)
			if (r->copies[s][c].state == RFS_SUPER_OK)
				good = (int)c;
		if (good < 0)
			continue; /* nothing valid to copy: the next commit writes it */
		for (unsigned c = 0; c < RFS_SUPER_COPIES; c++) {
			struct rfs_super_copy *rc = &r->copies[s][c];
			struct rfs_super_disk sb;

			if (rc->state == RFS_SUPER_OK)
				continue;
			if (!ret) {
				memcpy(&sb, raw + copy_block(s, (unsigned)good) * RFS_BLOCK_SIZE,
				       sizeof(sb));
				rfs_super_encode(&sb, c, block);
				ret = rfs_io_write(&pool->io, rc->blocknr << RFS_BLOCK_SHIFT, block,
						   RFS_BLOCK_SIZE);
			}
			rc->repair_error = ret;
			rc->repaired = !ret;
			written += !ret;
		}
	}
	/* One flush for all: each rewrite holds what its slot already has,
	 * so any subset of them reaching the disk is as good as the start. */
	if (written && !ret)
		ret = rfs_io_flush(&pool->io);
	for (unsigned s = 0; s < RFS_SUPER_SLOTS; s++)
		for (unsigned c = 0; c < RFS_SUPER_COPIES; c++) {
			struct rfs_super_copy *rc = &r->copies[s][c];

			if (rc->repaired && ret) {
				rc->repaired = false;
				rc->repair_error = ret;
			}
			r->repaired += rc->repaired;
		}
	free(block);
}

enum rfs_super_health rfs_super_health(const struct rfs_super_report *r)
{
	if (r->lost_newer)
		return RFS_SUPER_LOST;
	return r->damaged || r->stale ? RFS_SUPER_DEGRADED : RFS_SUPER_CLEAN;
}

struct out {
	void (*line)(void *arg, int level, const char *text);
	void *arg;
};

static void say(const struct out *o, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void say(const struct out *o, int level, const char *fmt, ...)
{
	char text[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	o->line(o->arg, level, text);
}

/* What happens to a copy that is not OK: rewritten, or when. */
static const char *fate(const struct rfs_super_report *r, const struct rfs_super_copy *rc,
			bool slot_has_valid, char *buf, size_t len)
{
	if (rc->repaired)
		snprintf(buf, len, "rewritten now from the valid copy of its slot");
	else if (rc->repair_error)
		snprintf(buf, len, "rewriting it failed (%s); it stays as it is",
			 strerror(-rc->repair_error));
	else if (!slot_has_valid)
		snprintf(buf, len, "the next commit rewrites it");
	else if (r->rdonly)
		snprintf(buf, len, "not rewritten (read-only); the next read-write mount rewrites it");
	else
		snprintf(buf, len, "not rewritten");
	return buf;
}

static void describe_copy(const struct out *o, const struct rfs_super_report *r, unsigned s,
			  unsigned c)
{
	const struct rfs_super_copy *rc = &r->copies[s][c];
	const struct rfs_super_copy *mate = &r->copies[s][1 - c];
	bool mate_valid = mate->state != RFS_SUPER_DAMAGED;
	bool live = s == r->slot;
	char f[128], claim[64] = "";

	if (rc->state == RFS_SUPER_STALE) {
		say(o, RFS_LOG_WARN,
		    "superblock slot %u copy %u (block %llu) holds generation %llu, older than its other copy (block %llu, generation %llu)%s; %s",
		    s, c, (unsigned long long)rc->blocknr, (unsigned long long)rc->generation,
		    (unsigned long long)mate->blocknr, (unsigned long long)mate->generation,
		    c == 1 ? ": a commit was cut off between its two superblock writes, by a crash or a lost write"
			   : ": a write of it was lost",
		    fate(r, rc, true, f, sizeof(f)));
		return;
	}
	if (rc->claimed)
		snprintf(claim, sizeof(claim), ", claims generation %llu",
			 (unsigned long long)rc->generation);
	if (mate_valid && live) {
		say(o, RFS_LOG_WARN,
		    "superblock slot %u copy %u (block %llu) is damaged (%s%s); the generation in use (%llu) is read from its other copy (block %llu): nothing is lost; %s",
		    s, c, (unsigned long long)rc->blocknr, rc->why, claim,
		    (unsigned long long)r->generation, (unsigned long long)mate->blocknr,
		    fate(r, rc, true, f, sizeof(f)));
	} else if (mate_valid && rc->claimed && rc->generation > mate->generation) {
		say(o, RFS_LOG_WARN,
		    "superblock slot %u copy %u (block %llu) is damaged (%s%s), but its other copy (block %llu) still holds generation %llu, so that newer commit never completed (a crash while writing this copy leaves this): nothing is lost; %s",
		    s, c, (unsigned long long)rc->blocknr, rc->why, claim,
		    (unsigned long long)mate->blocknr, (unsigned long long)mate->generation,
		    fate(r, rc, true, f, sizeof(f)));
	} else if (mate_valid) {
		say(o, RFS_LOG_WARN,
		    "superblock slot %u copy %u (block %llu) is damaged (%s%s); its other copy (block %llu) holds the previous generation, %llu, intact: nothing is lost; %s",
		    s, c, (unsigned long long)rc->blocknr, rc->why, claim,
		    (unsigned long long)mate->blocknr, (unsigned long long)mate->generation,
		    fate(r, rc, true, f, sizeof(f)));
	} else {
		/* Both copies of the other slot: said once, for copy 0. */
		if (c)
			return;
		if (r->lost_newer) {
			say(o, RFS_LOG_ERR,
			    "both copies of superblock slot %u are damaged (block %llu: %s; block %llu: %s): they may have held generation %llu, the last commit: if so, that commit and every change in it are LOST; the pool fell back to generation %llu (slot %u); the next commit rewrites the damaged slot",
			    s, (unsigned long long)rc->blocknr, rc->why,
			    (unsigned long long)mate->blocknr, mate->why,
			    (unsigned long long)r->lost_gen, (unsigned long long)r->generation,
			    r->slot);
		} else {
			say(o, RFS_LOG_WARN,
			    "both copies of superblock slot %u are damaged (block %llu: %s; block %llu: %s); they held an older generation than the one in use (%llu): nothing is lost, but there is no older state to fall back to until the next commit rewrites them",
			    s, (unsigned long long)rc->blocknr, rc->why,
			    (unsigned long long)mate->blocknr, mate->why,
			    (unsigned long long)r->generation);
		}
	}
}

void rfs_super_describe(const struct rfs_super_report *r,
			void (*line)(void *arg, int level, const char *text), void *arg)
{
	const struct out o = {line, arg};

	say(&o, RFS_LOG_INFO, "superblock: generation %llu, read from slot %u copy %u (block %llu)",
	    (unsigned long long)r->generation, r->slot, r->copy,
	    (unsigned long long)r->copies[r->slot][r->copy].blocknr);
	for (unsigned s = 0; s < RFS_SUPER_SLOTS; s++)
		for (unsigned c = 0; c < RFS_SUPER_COPIES; c++)
			if (r->copies[s][c].state != RFS_SUPER_OK)
				describe_copy(&o, r, s, c);
	if (r->repaired)
		say(&o, RFS_LOG_INFO, "superblock: rewrote %u damaged or stale cop%s%s",
		    r->repaired, r->repaired == 1 ? "y" : "ies",
		    r->repaired == r->damaged + r->stale ? ": every generation is in two copies again" : "");
}
