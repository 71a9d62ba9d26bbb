/*
 * Superblock copies: each generation's superblock is in two blocks (slot
 * g % 2, copies 0 and 1 in blocks slot and slot + 2), written one after
 * the other with a flush between.  A damaged copy after a completed
 * commit must never lose that commit; every damaged or stale copy and any
 * fallback to an older generation must show in the report (what fsck and
 * the mount print), and a read-write open must rewrite what it can.  The
 * crash cases of a commit (copy 0 torn, copy 1 torn, crash between the
 * two) are built by hand from the images before and after a commit.
 */
#include "../common/testutil.h"

#define SB_VERSION_OFF 8
#define SB_GEN_OFF 16
#define SB_CRC_OFF 160

static tu_pool pc;
static struct {
	char img[3][2200]; /* pool images after generations gen[0..2] */
	uint64_t gen[3], root[3];
	char work[2200];
} g;

static uint64_t blk(unsigned slot, unsigned copy)
{
	return slot + 2ull * copy;
}

static unsigned slot_of(uint64_t gen)
{
	return (unsigned)(gen % 2);
}

/* Commit a fresh root 2 (a node marked with the generation). */
static void commit_marked(tu_pool *c, uint64_t *gen, uint64_t *root)
{
	struct rfs_buf *b = NULL;
	OK(rfs_buf_new(c->pool, RFS_BT_NODE, 0, RFS_OWNER_USER, &b));
	uint64_t txn = rfs_pool_txn_gen(c->pool);
	memcpy(b->data + RFS_BLOCK_HEADER_SIZE, &txn, 8);
	*root = b->blocknr;
	rfs_buf_put(c->pool, b);
	rfs_pool_set_root(c->pool, 2, *root);
	tu_commit(c);
	*gen = rfs_pool_committed_gen(c->pool);
	EQ_U64(*gen, txn);
}

static int group_setup(void **state)
{
	(void)state;
	tu_log_capture();
	tu_pool_init(&pc);
	tu_pool_create(&pc, 64ull << 20);
	tu_open(&pc, 0);
	for (int i = 0; i < 3; i++) {
		commit_marked(&pc, &g.gen[i], &g.root[i]);
		snprintf(g.img[i], sizeof(g.img[i]), "%s/img%d", pc.dir, i);
		OK(tu_copy_file(pc.path, g.img[i]));
	}
	tu_close(&pc);
	snprintf(g.work, sizeof(g.work), "%s/work", pc.dir);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	tu_pool_fini(&pc);
	tu_log_clear();
	return 0;
}

/* Open work (flags), expect generation gen[i] with its root, return the
 * report (copied: the pool is closed). */
static struct rfs_super_report open_expect(unsigned flags, int i)
{
	rfs_pool *p = NULL;
	struct rfs_super_report r;

	tu_log_clear();
	OK(rfs_pool_open(g.work, flags, &p));
	rfs_pool_rdlock(p);
	EQ_U64(rfs_pool_committed_gen(p), g.gen[i]);
	EQ_U64(rfs_pool_root(p, 2), g.root[i]);
	struct rfs_buf *b = NULL;
	OK(rfs_buf_read(p, g.root[i], RFS_BT_NODE, g.gen[i], &b));
	uint64_t mark;
	memcpy(&mark, b->data + RFS_BLOCK_HEADER_SIZE, 8);
	EQ_U64(mark, g.gen[i]);
	rfs_buf_put(p, b);
	rfs_pool_unlock(p);
	r = *rfs_pool_super_report(p);
	rfs_pool_close(p);
	return r;
}

static bool log_has(const char *needle)
{
	for (size_t i = 0; i < tu_log.n; i++)
		if (strstr(tu_log.lines[i], needle))
			return true;
	return false;
}

struct lines {
	char text[8][600];
	int level[8];
	int n;
};

static void collect(void *arg, int level, const char *text)
{
	struct lines *l = arg;
	if (l->n < 8) {
		snprintf(l->text[l->n], sizeof(l->text[0]), "%s", text);
		l->level[l->n++] = level;
	}
}

/* The description has a line of level `level` containing needle. */
static bool said(const struct rfs_super_report *r, int level, const char *needle)
{
	struct lines l = {.n = 0};
	rfs_super_describe(r, collect, &l);
	for (int i = 0; i < l.n; i++)
		if (l.level[i] == level && strstr(l.text[i], needle))
			return true;
	return false;
}

static void expect_clean_after_repair(int i)
{
	struct rfs_super_report r;
	OK(rfs_pool_super_inspect(g.work, &r));
	CHECK(rfs_super_health(&r) == RFS_SUPER_CLEAN,
	      "after a read-write open: %u damaged, %u stale", r.damaged, r.stale);
	r = open_expect(RFS_OPEN_RDONLY, i);
	CHECK(rfs_super_health(&r) == RFS_SUPER_CLEAN, "not clean after the repair");
}

/* ---- the pool as written --------------------------------------------------- */

static void test_layout(void **state)
{
	(void)state;
	uint8_t b[RFS_BLOCK_SIZE];
	for (unsigned s = 0; s < 2; s++) {
		for (unsigned c = 0; c < 2; c++) {
			OK(tu_pread_block(g.img[2], blk(s, c), b));
			CHECK(memcmp(b, "RFLNKFS", 8) == 0, "no superblock in block %" PRIu64, blk(s, c));
			uint32_t v, crc, copy;
			uint64_t gen;
			memcpy(&v, b + SB_VERSION_OFF, 4);
			memcpy(&gen, b + SB_GEN_OFF, 8);
			memcpy(&crc, b + SB_CRC_OFF, 4);
			memcpy(&copy, b + SB_CRC_OFF + 4, 4);
			EQ_U64(v, RFS_FORMAT_VERSION);
			EQ_U64(copy, c);
			EQ_U64(gen, s == slot_of(g.gen[2]) ? g.gen[2] : g.gen[1]);
			/* the crc covers the whole block */
			memset(b + SB_CRC_OFF, 0, 4);
			EQ_U64(tu_rfs_crc(b, RFS_BLOCK_SIZE), crc);
		}
	}
	OK(tu_copy_file(g.img[2], g.work));
	struct rfs_super_report r = open_expect(0, 2);
	CHECK(rfs_super_health(&r) == RFS_SUPER_CLEAN, "fresh pool not clean");
	EQ_U64(r.slot, slot_of(g.gen[2]));
	EQ_U64(r.copy, 0);
	CHECK(tu_log.n == 0, "a clean open logged %zu lines", tu_log.n);
}

/* ---- one damaged copy of the newest generation ------------------------------ */

static void test_newest_one_copy_damaged(void **state)
{
	(void)state;
	unsigned s = slot_of(g.gen[2]);
	/* a field, the crc, the zero tail */
	static const unsigned bytes[] = {16, 100, 162, 3000};
	for (unsigned c = 0; c < 2; c++) {
		for (size_t k = 0; k < sizeof(bytes) / sizeof(bytes[0]); k++) {
			OK(tu_copy_file(g.img[2], g.work));
			tu_flip_bit(g.work, blk(s, c), bytes[k] * 8 + 2);

			/* fsck's view: nothing lost, one damaged copy */
			struct rfs_super_report r;
			OK(rfs_pool_super_inspect(g.work, &r));
			CHECK(rfs_super_health(&r) == RFS_SUPER_DEGRADED,
			      "copy %u byte %u: health %d", c, bytes[k], rfs_super_health(&r));
			EQ_U64(r.damaged, 1);
			EQ_U64(r.copies[s][c].state, RFS_SUPER_DAMAGED);
			CHECK(!r.lost_newer, "a damaged copy with a valid mirror reported as a lost commit");
			char blkname[32];
			snprintf(blkname, sizeof blkname, "block %" PRIu64, blk(s, c));
			CHECK(said(&r, RFS_LOG_WARN, blkname), "the damaged block is not named");
			CHECK(said(&r, RFS_LOG_WARN, "nothing is lost"), "no word that nothing is lost");

			/* read-only open: the newest generation, nothing written */
			r = open_expect(RFS_OPEN_RDONLY, 2);
			EQ_U64(r.copy, 1 - c);
			EQ_U64(r.damaged, 1);
			EQ_U64(r.repaired, 0);
			CHECK(log_has(blkname), "open did not log the damaged block");
			OK(rfs_pool_super_inspect(g.work, &r));
			EQ_U64(r.damaged, 1);

			/* read-write open: rewritten, and says so */
			r = open_expect(0, 2);
			CHECK(r.copies[s][c].repaired, "the damaged copy was not rewritten");
			EQ_U64(r.repaired, 1);
			CHECK(said(&r, RFS_LOG_INFO, "rewrote 1"), "the repair is not described");
			CHECK(log_has("rewritten"), "open did not log the repair");
			expect_clean_after_repair(2);
		}
	}
}

/* ---- both copies of the newest generation damaged: fallback, loudly ---------- */

static void test_newest_both_copies_damaged(void **state)
{
	(void)state;
	unsigned s = slot_of(g.gen[2]);
	for (int zeroed = 0; zeroed < 2; zeroed++) {
		OK(tu_copy_file(g.img[2], g.work));
		for (unsigned c = 0; c < 2; c++) {
			if (zeroed) {
				uint8_t z[RFS_BLOCK_SIZE] = {0};
				OK(tu_pwrite_block(g.work, blk(s, c), z));
			} else {
				tu_flip_bit(g.work, blk(s, c), (40 + 30 * c) * 8 + 1);
			}
		}
		struct rfs_super_report r;
		OK(rfs_pool_super_inspect(g.work, &r));
		CHECK(rfs_super_health(&r) == RFS_SUPER_LOST, "fallback not reported as a lost commit");
		CHECK(r.lost_newer, "lost_newer not set");
		EQ_U64(r.lost_gen, g.gen[2]);
		char lost[64];
		snprintf(lost, sizeof lost, "generation %" PRIu64 ", the last commit", g.gen[2]);
		CHECK(said(&r, RFS_LOG_ERR, "LOST") && said(&r, RFS_LOG_ERR, lost),
		      "the description does not say which commit was lost");

		r = open_expect(RFS_OPEN_RDONLY, 1);
		CHECK(r.lost_newer, "open does not report the lost commit");
		CHECK(log_has("LOST"), "open did not log the lost commit loudly");
		/* a read-write open cannot rebuild the lost slot: the next
		 * commit writes it */
		r = open_expect(0, 1);
		EQ_U64(r.repaired, 0);
		CHECK(r.lost_newer, "lost commit not reported by a read-write open");
	}
}

/* ---- the older slot damaged: nothing lost ------------------------------------ */

static void test_older_slot_damaged(void **state)
{
	(void)state;
	unsigned s = slot_of(g.gen[1]);
	/* one copy: repaired from the other */
	OK(tu_copy_file(g.img[2], g.work));
	tu_flip_bit(g.work, blk(s, 1), 8 * 8 + 3);
	struct rfs_super_report r = open_expect(0, 2);
	EQ_U64(r.damaged, 1);
	CHECK(!r.lost_newer, "lost_newer");
	CHECK(r.copies[s][1].repaired, "older slot's copy not rewritten");
	expect_clean_after_repair(2);

	/* both copies, magic and generation intact: they claim the older
	 * generation, so nothing is lost (but there is no fallback) */
	OK(tu_copy_file(g.img[2], g.work));
	tu_flip_bit(g.work, blk(s, 0), 8 * 120 + 3);
	tu_flip_bit(g.work, blk(s, 1), 8 * 2000 + 3);
	OK(rfs_pool_super_inspect(g.work, &r));
	CHECK(rfs_super_health(&r) == RFS_SUPER_DEGRADED, "health %d", rfs_super_health(&r));
	CHECK(said(&r, RFS_LOG_WARN, "no older state"), "missing fallback not described");
	r = open_expect(0, 2);
	EQ_U64(r.repaired, 0);
}

/* ---- crash cases of a commit, built from the images before and after -------- */

/* Block nr of work := first `keep` bytes of block nr of `from`, the rest
 * as it is (a write torn after keep bytes). */
static void tear(const char *from, uint64_t nr, size_t keep)
{
	uint8_t a[RFS_BLOCK_SIZE], b[RFS_BLOCK_SIZE];
	OK(tu_pread_block(from, nr, a));
	OK(tu_pread_block(g.work, nr, b));
	memcpy(b, a, keep);
	OK(tu_pwrite_block(g.work, nr, b));
}

static void copy_block(const char *from, uint64_t nr)
{
	tear(from, nr, RFS_BLOCK_SIZE);
}

static void test_crash_cases(void **state)
{
	(void)state;
	/* commit of gen[2] into slot s over gen[0] */
	unsigned s = slot_of(g.gen[2]);
	EQ_U64(slot_of(g.gen[0]), s);
	struct rfs_super_report r;

	/* copy 0 torn: gen[2] never completed; gen[1] is used, nothing lost */
	OK(tu_copy_file(g.img[2], g.work));
	copy_block(g.img[1], blk(s, 0));
	copy_block(g.img[1], blk(s, 1));
	tear(g.img[2], blk(s, 0), 100);
	OK(rfs_pool_super_inspect(g.work, &r));
	CHECK(rfs_super_health(&r) == RFS_SUPER_DEGRADED, "torn copy 0: health %d", rfs_super_health(&r));
	CHECK(!r.lost_newer, "torn copy 0 reported as a lost commit");
	EQ_U64(r.copies[s][0].generation, g.gen[2]); /* claimed */
	EQ_U64(r.copies[s][1].generation, g.gen[0]);
	CHECK(said(&r, RFS_LOG_WARN, "nothing is lost"), "torn copy 0 not explained");
	r = open_expect(0, 1);
	CHECK(r.copies[s][0].repaired, "torn copy 0 not rewritten");
	expect_clean_after_repair(1);

	/* crash between the copies: gen[2] in copy 0, copy 1 still gen[0] */
	OK(tu_copy_file(g.img[2], g.work));
	copy_block(g.img[1], blk(s, 1));
	OK(rfs_pool_super_inspect(g.work, &r));
	CHECK(rfs_super_health(&r) == RFS_SUPER_DEGRADED, "between: health %d", rfs_super_health(&r));
	EQ_U64(r.stale, 1);
	EQ_U64(r.copies[s][1].state, RFS_SUPER_STALE);
	CHECK(said(&r, RFS_LOG_WARN, "cut off between"), "stale copy not explained");
	r = open_expect(0, 2);
	CHECK(r.copies[s][1].repaired, "stale copy 1 not rewritten");
	expect_clean_after_repair(2);

	/* copy 1 torn: gen[2] is in copy 0 */
	OK(tu_copy_file(g.img[2], g.work));
	copy_block(g.img[1], blk(s, 1));
	tear(g.img[2], blk(s, 1), 40);
	OK(rfs_pool_super_inspect(g.work, &r));
	EQ_U64(r.damaged, 1);
	CHECK(!r.lost_newer, "torn copy 1 reported as a lost commit");
	r = open_expect(0, 2);
	expect_clean_after_repair(2);
}

/* The commit's write order, through the crash simulation: a crash at the
 * flush of copy 0 loses the commit, at the flush of copy 1 keeps it with
 * copy 1 stale; both leave a report with nothing lost. */
static void test_commit_order(void **state)
{
	(void)state;
	for (int at = 0; at < 2; at++) {
		OK(tu_copy_file(g.img[1], g.work));
		rfs_pool *p = NULL;
		OK(rfs_pool_open(g.work, RFS_OPEN_CRASHSIM, &p));
		rfs_pool_wrlock(p);
		uint64_t f0 = 0;
		struct rfs_pool_stats st;
		rfs_pool_stats(p, &st);
		f0 = st.flushes;
		/* a commit flushes 3 times: data, copy 0, copy 1 */
		rfs_pool_crash_at_flush(p, 2 + (uint64_t)at, RFS_CRASH_DROP_ALL, 1);
		int rc = rfs_pool_commit_locked(p);
		CHECK(rfs_pool_crashed(p), "no crash at flush %d", 2 + at);
		CHECK(at ? rc == 0 : rc == -EIO, "commit with a crash at flush %d = %d", 2 + at, rc);
		rfs_pool_stats(p, &st);
		EQ_U64(st.flushes - f0, 2 + (uint64_t)at);
		rfs_pool_unlock(p);
		rfs_pool_close(p);

		struct rfs_super_report r;
		OK(rfs_pool_super_inspect(g.work, &r));
		CHECK(!r.lost_newer && r.damaged == 0, "crash at flush %d: damaged %u lost %d", 2 + at,
		      r.damaged, r.lost_newer);
		uint64_t want = g.gen[1] + (uint64_t)at;
		EQ_U64(r.generation, want);
		EQ_U64(r.stale, (uint64_t)at);
		if (at)
			EQ_U64(r.copies[slot_of(want)][1].state, RFS_SUPER_STALE);
	}
}

/* A write error on the second copy comes after the commit is durable: the
 * commit succeeds, the pool turns read-only, and the next read-write open
 * rewrites the copy. */
static void test_mirror_write_fails(void **state)
{
	(void)state;
	bool seen = false;
	for (uint64_t n = 0; n < 64 && !seen; n++) {
		OK(tu_copy_file(g.img[1], g.work));
		rfs_pool *p = NULL;
		OK(rfs_pool_open(g.work, 0, &p));
		rfs_pool_wrlock(p);
		rfs_pool_fail_writes_after(p, n);
		tu_log_clear();
		int rc = rfs_pool_commit_locked(p);
		int wr = rfs_pool_check_writable(p);
		uint64_t gen = rfs_pool_committed_gen(p);
		rfs_pool_unlock(p);
		rfs_pool_close(p);
		if (rc) {
			EQ_U64(gen, g.gen[1]);
			continue;
		}
		/* the first n that lets the commit succeed fails only copy 1 */
		seen = true;
		EQ_U64(gen, g.gen[1] + 1);
		RC(wr, -EROFS);
		CHECK(log_has("is committed, but writing the second copy"), "mirror failure not logged");
		struct rfs_super_report r;
		OK(rfs_pool_super_inspect(g.work, &r));
		EQ_U64(r.generation, gen);
		EQ_U64(r.copies[slot_of(gen)][1].state, RFS_SUPER_STALE);
		OK(rfs_pool_open(g.work, 0, &p));
		EQ_U64(rfs_pool_committed_gen(p), gen);
		CHECK(rfs_pool_super_report(p)->copies[slot_of(gen)][1].repaired,
		      "the copy whose write failed was not rewritten");
		rfs_pool_close(p);
		OK(rfs_pool_super_inspect(g.work, &r));
		CHECK(rfs_super_health(&r) == RFS_SUPER_CLEAN, "not clean after the repair");
	}
	CHECK(seen, "no write count made only the second copy fail");
}

/* ---- formats ------------------------------------------------------------------ */

static void set_version(uint64_t nr, uint32_t v)
{
	uint8_t b[RFS_BLOCK_SIZE];
	OK(tu_pread_block(g.work, nr, b));
	memcpy(b + SB_VERSION_OFF, &v, 4);
	memset(b + SB_CRC_OFF, 0, 4);
	uint32_t crc = tu_rfs_crc(b, RFS_BLOCK_SIZE);
	memcpy(b + SB_CRC_OFF, &crc, 4);
	OK(tu_pwrite_block(g.work, nr, b));
}

static void test_old_format_refused(void **state)
{
	(void)state;
	OK(tu_copy_file(g.img[2], g.work));
	for (unsigned i = 0; i < 4; i++)
		set_version(i, RFS_FORMAT_VERSION - 1);
	rfs_pool *p = NULL;
	tu_log_clear();
	RC(rfs_pool_open(g.work, 0, &p), -EPROTONOSUPPORT);
	CHECK(p == NULL, "pool returned");
	CHECK(log_has("older reflinkfs") && log_has(g.work),
	      "no clear message for an older format");
	struct rfs_super_report r;
	RC(rfs_pool_super_inspect(g.work, &r), -EPROTONOSUPPORT);

	/* the newest slot in a newer version: refused (an older state
	 * must not be mounted silently) */
	OK(tu_copy_file(g.img[2], g.work));
	set_version(blk(slot_of(g.gen[2]), 0), RFS_FORMAT_VERSION + 1);
	set_version(blk(slot_of(g.gen[2]), 1), RFS_FORMAT_VERSION + 1);
	tu_log_clear();
	RC(rfs_pool_open(g.work, 0, &p), -EPROTONOSUPPORT);
	CHECK(log_has("newer"), "no clear message for a newer format");

	/* a newer version in one copy only, its mate holding the same
	 * generation in this format: a damaged version field, not a newer
	 * pool (one flipped bit must not make the pool unusable) */
	for (unsigned c = 0; c < 2; c++) {
		OK(tu_copy_file(g.img[2], g.work));
		set_version(blk(slot_of(g.gen[2]), c), RFS_FORMAT_VERSION | 8);
		OK(rfs_pool_super_inspect(g.work, &r));
		EQ_U64(r.damaged, 1);
		EQ_U64(r.copies[slot_of(g.gen[2])][c].state, RFS_SUPER_DAMAGED);
		open_expect(RFS_OPEN_RDONLY, 2);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_layout),
		cmocka_unit_test(test_newest_one_copy_damaged),
		cmocka_unit_test(test_newest_both_copies_damaged),
		cmocka_unit_test(test_older_slot_damaged),
		cmocka_unit_test(test_crash_cases),
		cmocka_unit_test(test_commit_order),
		cmocka_unit_test(test_mirror_write_fails),
		cmocka_unit_test(test_old_format_refused),
	};
	return tu_exit(cmocka_run_group_tests(tests, group_setup, group_teardown));
}
