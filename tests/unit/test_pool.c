/*
 * Unit tests of the pool (include/reflinkfs/pool.h): create/open, superblocks,
 * root slots, allocation and deferred frees, data blocks and checksums,
 * metadata block verification, crash simulation and write failures.
 */
#include "../common/testutil.h"

#define SMALL_POOL (16ull << 20) /* 4096 blocks, the minimum pool size */

/* Allocate a metadata node block with a recognizable payload. */
static uint64_t make_node(tu_pool *c, uint8_t fill)
{
	struct rfs_buf *b = NULL;
	OK(rfs_buf_new(c->pool, RFS_BT_NODE, 0, RFS_OWNER_USER, &b));
	CHECK(b != NULL && b->data != NULL, "rfs_buf_new gave no buffer");
	uint64_t blk = b->blocknr;
	struct rfs_block_header h;
	memcpy(&h, b->data, sizeof(h));
	EQ_U64(h.magic, RFS_META_MAGIC);
	EQ_U64(h.blocknr, blk);
	EQ_U64(h.type, RFS_BT_NODE);
	EQ_U64(h.level, 0);
	EQ_U64(h.owner, RFS_OWNER_USER);
	EQ_U64(h.generation, rfs_pool_txn_gen(c->pool));
	EQ_U64(rfs_buf_gen(b), rfs_pool_txn_gen(c->pool));
	CHECK(rfs_buf_is_dirty(c->pool, b), "fresh buffer must be dirty");
	for (size_t i = RFS_BLOCK_HEADER_SIZE; i < RFS_BLOCK_SIZE; i++)
		CHECK(b->data[i] == 0, "fresh buffer not zeroed at %zu", i);
	memset(b->data + RFS_BLOCK_HEADER_SIZE, fill,
	       RFS_BLOCK_SIZE - RFS_BLOCK_HEADER_SIZE);
	memcpy(b->data + RFS_BLOCK_HEADER_SIZE, &blk, 8);
	rfs_buf_put(c->pool, b);
	CHECK(rfs_block_allocated(c->pool, blk), "node %" PRIu64 " not allocated", blk);
	return blk;
}

/* Read node blk and check the payload make_node wrote. */
static void expect_node(tu_pool *c, uint64_t blk, uint8_t fill, uint64_t gen)
{
	struct rfs_buf *b = NULL;
	OK(rfs_buf_read(c->pool, blk, RFS_BT_NODE, gen, &b));
	CHECK(b && b->blocknr == blk, "wrong buffer");
	uint64_t self;
	memcpy(&self, b->data + RFS_BLOCK_HEADER_SIZE, 8);
	EQ_U64(self, blk);
	for (size_t i = RFS_BLOCK_HEADER_SIZE + 8; i < RFS_BLOCK_SIZE; i++)
		CHECK(b->data[i] == fill, "node %" PRIu64 " byte %zu = %u, want %u",
		      blk, i, b->data[i], fill);
	if (gen)
		EQ_U64(rfs_buf_gen(b), gen);
	rfs_buf_put(c->pool, b);
}

/*
 * Superblock copies: blocks below data_start starting with the magic
 * "RFLNKFS\0" (layout of src/pool: magic[8], u32 version at 8, u32
 * block_size, u64 generation at 16, ..., u32 crc at 160 over the whole
 * block; slot s copy c in block s + 2c).
 */
#define SB_VERSION_OFF 8
#define SB_GEN_OFF 16
#define SB_CRC_OFF 160
static size_t find_superblocks(tu_pool *c, uint64_t limit, uint64_t *out, size_t max)
{
	uint8_t b[RFS_BLOCK_SIZE];
	size_t n = 0;
	for (uint64_t i = 0; i < limit && n < max; i++) {
		if (tu_pread_block(c->path, i, b) != 0)
			continue;
		if (memcmp(b, "RFLNKFS", 8) == 0)
			out[n++] = i;
	}
	return n;
}

static void sb_fix_crc(uint8_t *b)
{
	memset(b + SB_CRC_OFF, 0, 4);
	uint32_t crc = tu_rfs_crc(b, RFS_BLOCK_SIZE);
	memcpy(b + SB_CRC_OFF, &crc, 4);
}

static void expect_open_fails(const char *path, unsigned flags)
{
	rfs_pool *p = (rfs_pool *)(uintptr_t)1;
	tu_log_clear();
	int rc = rfs_pool_open(path, flags, &p);
	if (rc == 0 && p)
		rfs_pool_close(p);
	CHECK(rc < 0, "rfs_pool_open(%s) = %d, expected an error", path, rc);
	CHECK(p == NULL, "*out must be NULL on error");
	bool named = false;
	for (size_t i = 0; i < tu_log.n; i++)
		if (strstr(tu_log.lines[i], path))
			named = true;
	CHECK(named, "no log line names the path %s (%zu lines)", path, tu_log.n);
}

/* ------------------------------------------------------------------------ */

static void test_create_open_roundtrip(void **state)
{
	tu_pool *c = *state;
	OK(rfs_pool_create(c->path, 64ull << 20, 0));
	tu_open(c, 0);
	CHECK(strcmp(rfs_pool_path(c->pool), c->path) == 0, "path %s", rfs_pool_path(c->pool));
	struct rfs_pool_stats st = tu_stats(c);
	EQ_U64(st.total_blocks, (64ull << 20) / RFS_BLOCK_SIZE);
	CHECK(st.data_start >= 2 && st.data_start < st.total_blocks,
	      "data_start %" PRIu64, st.data_start);
	CHECK(st.used_blocks < st.total_blocks, "used %" PRIu64, st.used_blocks);
	CHECK(st.high_water <= st.total_blocks, "high_water %" PRIu64, st.high_water);
	EQ_U64(st.dirty_blocks, 0);
	EQ_U64(st.pending_free, 0);
	EQ_U64(st.commits, 0);
	for (unsigned s = 0; s < RFS_ROOT_SLOTS; s++)
		EQ_U64(rfs_pool_root(c->pool, s), 0);
	uint64_t g0 = rfs_pool_committed_gen(c->pool);
	EQ_U64(rfs_pool_txn_gen(c->pool), g0 + 1);
	/* the file is sparse: created far below its configured size */
	struct stat sb;
	CHECK(stat(c->path, &sb) == 0, "stat");
	CHECK((uint64_t)sb.st_blocks * 512 < (16ull << 20),
	      "pool file not sparse: %lld bytes allocated", (long long)sb.st_blocks * 512);

	tu_commit(c);
	EQ_U64(rfs_pool_committed_gen(c->pool), g0 + 1);
	EQ_U64(rfs_pool_txn_gen(c->pool), g0 + 2);
	st = tu_stats(c);
	EQ_U64(st.commits, 1);
	CHECK(st.flushes >= 2, "a commit flushes at least twice, got %" PRIu64, st.flushes);
	tu_reopen(c, 0);
	EQ_U64(rfs_pool_committed_gen(c->pool), g0 + 1);
	struct rfs_pool_stats st2 = tu_stats(c);
	EQ_U64(st2.total_blocks, st.total_blocks);
	EQ_U64(st2.data_start, st.data_start);
	EQ_U64(st2.used_blocks, st.used_blocks);
	tu_close(c);

	/* read-only open: state visible, mutations refused */
	tu_open(c, RFS_OPEN_RDONLY);
	EQ_U64(rfs_pool_committed_gen(c->pool), g0 + 1);
	uint64_t s = 0, got = 0;
	tu_log_clear();
	int rc = rfs_alloc_data(c->pool, 1, &s, &got);
	CHECK(rc < 0, "rfs_alloc_data on a read-only pool = %d", rc);
	rc = rfs_pool_commit_locked(c->pool);
	CHECK(rc < 0 || rfs_pool_committed_gen(c->pool) == g0 + 1,
	      "read-only commit changed the generation");
	tu_close(c);
}

static void test_create_refuses_existing(void **state)
{
	tu_pool *c = *state;
	tu_pool_create(c, 64ull << 20);
	tu_open(c, 0);
	uint64_t n = make_node(c, 0x11);
	rfs_pool_set_root(c->pool, 3, n);
	tu_commit(c);
	uint64_t gen = rfs_pool_committed_gen(c->pool);
	tu_close(c);

	tu_log_clear();
	int rc = rfs_pool_create(c->path, 64ull << 20, 0);
	CHECK(rc < 0, "create over an existing pool without FORCE = %d", rc);
	/* nothing was lost */
	tu_open(c, 0);
	EQ_U64(rfs_pool_committed_gen(c->pool), gen);
	EQ_U64(rfs_pool_root(c->pool, 3), n);
	expect_node(c, n, 0x11, gen);
	tu_close(c);

	OK(rfs_pool_create(c->path, 32ull << 20, RFS_CREATE_FORCE));
	tu_open(c, 0);
	EQ_U64(rfs_pool_root(c->pool, 3), 0);
	EQ_U64(tu_stats(c).total_blocks, (32ull << 20) / RFS_BLOCK_SIZE);
	tu_close(c);
}

static void test_create_bad_input(void **state)
{
	tu_pool *c = *state;
	char p[2048];
	/* a regular file needs a size, and at least the minimum */
	tu_log_clear();
	int rc = rfs_pool_create(c->path, 0, 0);
	CHECK(rc < 0, "create of a file pool without a size = %d", rc);
	CHECK(tu_log.n > 0, "no message for a missing size");
	rc = rfs_pool_create(c->path, 1ull << 20, 0);
	CHECK(rc < 0, "create of a 1 MiB pool = %d", rc);
	/* a directory that does not exist */
	snprintf(p, sizeof p, "%s/no/such/dir/pool", c->dir);
	RC(rfs_pool_create(p, 64ull << 20, 0), -ENOENT);
	/* a file holding an ext4 superblock: refused without FORCE */
	snprintf(p, sizeof p, "%s/ext4", c->dir);
	int fd = open(p, O_CREAT | O_WRONLY | O_TRUNC, 0600);
	CHECK(fd >= 0, "open");
	uint8_t sb[2048];
	memset(sb, 0, sizeof sb);
	sb[1024 + 0x38] = 0x53; /* s_magic 0xEF53 at byte 1080 */
	sb[1024 + 0x39] = 0xef;
	CHECK(write(fd, sb, sizeof sb) == (ssize_t)sizeof sb, "write");
	CHECK(ftruncate(fd, 64 << 20) == 0, "ftruncate");
	close(fd);
	tu_log_clear();
	rc = rfs_pool_create(p, 64ull << 20, 0);
	CHECK(rc < 0, "create over an ext4 signature without FORCE = %d", rc);
	CHECK(tu_log.n > 0, "refusal not explained in the log");
	uint8_t back[2048];
	fd = open(p, O_RDONLY);
	CHECK(fd >= 0 && read(fd, back, sizeof back) == (ssize_t)sizeof back, "read back");
	close(fd);
	CHECK(memcmp(sb, back, sizeof sb) == 0, "a refused create modified the file");
	OK(rfs_pool_create(p, 64ull << 20, RFS_CREATE_FORCE));
	rfs_pool *pl = NULL;
	OK(rfs_pool_open(p, 0, &pl));
	rfs_pool_close(pl);
}

static void test_open_bad_files(void **state)
{
	tu_pool *c = *state;
	char p[2048];

	/* missing file */
	snprintf(p, sizeof p, "%s/missing", c->dir);
	{
		rfs_pool *pl = (rfs_pool *)(uintptr_t)1;
		int rc = rfs_pool_open(p, 0, &pl);
		RC(rc, -ENOENT);
		CHECK(pl == NULL, "*out not NULL");
	}
	/* a directory */
	expect_open_fails(c->dir, 0);

	/* empty file */
	snprintf(p, sizeof p, "%s/empty", c->dir);
	int fd = open(p, O_CREAT | O_WRONLY | O_TRUNC, 0600);
	CHECK(fd >= 0, "open");
	close(fd);
	expect_open_fails(p, 0);

	/* zeros */
	snprintf(p, sizeof p, "%s/zeros", c->dir);
	fd = open(p, O_CREAT | O_WRONLY | O_TRUNC, 0600);
	CHECK(fd >= 0 && ftruncate(fd, 1 << 20) == 0, "ftruncate");
	close(fd);
	expect_open_fails(p, 0);

	/* random bytes */
	snprintf(p, sizeof p, "%s/random", c->dir);
	fd = open(p, O_CREAT | O_WRONLY | O_TRUNC, 0600);
	CHECK(fd >= 0, "open");
	tu_rng r = {42};
	uint8_t blk[RFS_BLOCK_SIZE];
	for (int i = 0; i < 256; i++) {
		tu_fill(&r, blk, sizeof blk);
		CHECK(write(fd, blk, sizeof blk) == (ssize_t)sizeof blk, "write");
	}
	close(fd);
	expect_open_fails(p, 0);

	/* random bytes with a correct magic in block 0 and 1 */
	snprintf(p, sizeof p, "%s/magic", c->dir);
	fd = open(p, O_CREAT | O_WRONLY | O_TRUNC, 0600);
	CHECK(fd >= 0, "open");
	for (uint64_t i = 0; i < 256; i++) {
		tu_fill(&r, blk, sizeof blk);
		struct rfs_block_header h;
		memcpy(&h, blk, sizeof h);
		h.magic = RFS_META_MAGIC;
		h.blocknr = i;
		h.type = RFS_BT_SUPER;
		memcpy(blk, &h, sizeof h);
		CHECK(write(fd, blk, sizeof blk) == (ssize_t)sizeof blk, "write");
	}
	close(fd);
	expect_open_fails(p, 0);
}

static void test_open_truncated(void **state)
{
	tu_pool *c = *state;
	tu_pool_create(c, 64ull << 20);
	tu_open(c, 0);
	uint64_t n = make_node(c, 0x22);
	rfs_pool_set_root(c->pool, 2, n);
	tu_commit(c);
	uint64_t data_start = tu_stats(c).data_start;
	tu_close(c);

	char cp[2048];
	snprintf(cp, sizeof cp, "%s/trunc", c->dir);
	uint64_t sizes[] = {0, 100, RFS_BLOCK_SIZE, RFS_BLOCK_SIZE + 1, 2 * RFS_BLOCK_SIZE - 7};
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		OK(tu_copy_file(c->path, cp));
		CHECK(truncate(cp, (off_t)sizes[i]) == 0, "truncate");
		expect_open_fails(cp, 0);
	}
	/* cut everything from the first allocatable block on: either open
	 * fails, or reading the committed node gives -EIO (never garbage) */
	OK(tu_copy_file(c->path, cp));
	CHECK(truncate(cp, (off_t)(data_start * RFS_BLOCK_SIZE)) == 0, "truncate");
	rfs_pool *p = NULL;
	tu_log_clear();
	int rc = rfs_pool_open(cp, 0, &p);
	if (rc == 0) {
		struct rfs_buf *b = NULL;
		rfs_pool_rdlock(p);
		rc = rfs_buf_read(p, rfs_pool_root(p, 2), RFS_BT_NODE, 0, &b);
		if (rc == 0)
			rfs_buf_put(p, b);
		rfs_pool_unlock(p);
		rfs_pool_close(p);
		RC(rc, -EIO);
	} else {
		CHECK(p == NULL, "*out not NULL");
	}
}

static void test_superblock_damage(void **state)
{
	tu_pool *c = *state;
	tu_pool_create(c, 64ull << 20);
	tu_open(c, 0);
	uint64_t n1 = make_node(c, 0x31);
	rfs_pool_set_root(c->pool, 2, n1);
	tu_commit(c);
	uint64_t g1 = rfs_pool_committed_gen(c->pool);
	uint64_t n2 = make_node(c, 0x32);
	rfs_pool_set_root(c->pool, 2, n2);
	tu_commit(c);
	uint64_t g2 = rfs_pool_committed_gen(c->pool);
	uint64_t data_start = tu_stats(c).data_start;
	tu_close(c);

	uint64_t sb[8];
	size_t nsb = find_superblocks(c, data_start < 64 ? data_start : 64, sb, 8);
	CHECK(nsb == 4, "expected four superblock copies, found %zu", nsb);

	/* blocks s and s + 2 hold slot s (and our crc convention reproduces
	 * theirs) */
	uint64_t gens[4];
	uint8_t b[RFS_BLOCK_SIZE];
	for (int i = 0; i < 4; i++) {
		EQ_U64(sb[i], (uint64_t)i);
		OK(tu_pread_block(c->path, sb[i], b));
		memcpy(&gens[i], b + SB_GEN_OFF, 8);
		uint32_t stored;
		memcpy(&stored, b + SB_CRC_OFF, 4);
		sb_fix_crc(b);
		uint32_t mine;
		memcpy(&mine, b + SB_CRC_OFF, 4);
		EQ_U64(stored, mine);
	}
	EQ_U64(gens[0], gens[2]);
	EQ_U64(gens[1], gens[3]);
	CHECK((gens[0] == g2 && gens[1] == g1) || (gens[0] == g1 && gens[1] == g2),
	      "superblock generations %" PRIu64 "/%" PRIu64 ", commits %" PRIu64 "/%" PRIu64,
	      gens[0], gens[1], g1, g2);
	int newest = gens[0] == g2 ? 0 : 1;

	char cp[2048];
	snprintf(cp, sizeof cp, "%s/sbcopy", c->dir);
	char orig[2048];
	snprintf(orig, sizeof orig, "%s", c->path);

	/* one copy of the newest slot damaged: the newest is mounted */
	for (int copy = 0; copy < 2; copy++) {
		OK(tu_copy_file(orig, cp));
		tu_flip_bit(cp, sb[newest + 2 * copy], 8 * 100 + 3);
		snprintf(c->path, sizeof c->path, "%s", cp);
		tu_open(c, RFS_OPEN_RDONLY);
		EQ_U64(rfs_pool_committed_gen(c->pool), g2);
		EQ_U64(rfs_pool_root(c->pool, 2), n2);
		expect_node(c, n2, 0x32, g2);
		tu_close(c);
	}

	/* both copies of the newest slot damaged: the previous commit is
	 * mounted, and the report says a commit may be lost */
	OK(tu_copy_file(orig, cp));
	tu_flip_bit(cp, sb[newest], 8 * 100 + 3);
	tu_flip_bit(cp, sb[newest + 2], 8 * 40 + 5);
	tu_open(c, 0);
	EQ_U64(rfs_pool_committed_gen(c->pool), g1);
	CHECK(rfs_pool_super_report(c->pool)->lost_newer, "fallback not reported as a lost commit");
	EQ_U64(rfs_pool_root(c->pool, 2), n1);
	expect_node(c, n1, 0x31, g1);
	/* and a commit on top of it works and wins */
	uint64_t n3 = make_node(c, 0x33);
	rfs_pool_set_root(c->pool, 2, n3);
	tu_commit(c);
	tu_reopen(c, 0);
	EQ_U64(rfs_pool_root(c->pool, 2), n3);
	expect_node(c, n3, 0x33, 0);
	CHECK(rfs_super_health(rfs_pool_super_report(c->pool)) == RFS_SUPER_CLEAN,
	      "the commit after the fallback left damaged copies");
	tu_close(c);

	/* older slot damaged: the newest is mounted */
	OK(tu_copy_file(orig, cp));
	tu_flip_bit(cp, sb[1 - newest], 8 * 40 + 1);
	tu_flip_bit(cp, sb[3 - newest], 8 * 4000 + 1);
	tu_open(c, 0);
	EQ_U64(rfs_pool_committed_gen(c->pool), g2);
	EQ_U64(rfs_pool_root(c->pool, 2), n2);
	expect_node(c, n2, 0x32, g2);
	tu_close(c);

	/* all damaged: open fails */
	OK(tu_copy_file(orig, cp));
	for (int i = 0; i < 4; i++)
		tu_flip_bit(cp, sb[i], 8 * (uint64_t)(20 + 44 * i) + 7);
	expect_open_fails(cp, 0);

	/* a newer format version (crc fixed up) is refused with a clear message */
	OK(tu_copy_file(orig, cp));
	for (int i = 0; i < 4; i++) {
		OK(tu_pread_block(cp, sb[i], b));
		uint32_t v;
		memcpy(&v, b + SB_VERSION_OFF, 4);
		EQ_U64(v, RFS_FORMAT_VERSION);
		v = RFS_FORMAT_VERSION + 1;
		memcpy(b + SB_VERSION_OFF, &v, 4);
		sb_fix_crc(b);
		OK(tu_pwrite_block(cp, sb[i], b));
	}
	expect_open_fails(cp, 0);
	bool said = false;
	for (size_t i = 0; i < tu_log.n; i++)
		if (strstr(tu_log.lines[i], "version"))
			said = true;
	CHECK(said, "refusing a newer format does not mention the version");
	/* only the newest slot is newer: still refused (never silently mount
	 * an older state of a pool written by a newer version) -- or mounted
	 * as the older state; either way, no crash and no wrong data */
	OK(tu_copy_file(orig, cp));
	uint32_t v = RFS_FORMAT_VERSION + 1;
	for (int i = newest; i < 4; i += 2) {
		OK(tu_pread_block(cp, sb[i], b));
		memcpy(b + SB_VERSION_OFF, &v, 4);
		sb_fix_crc(b);
		OK(tu_pwrite_block(cp, sb[i], b));
	}
	rfs_pool *p = NULL;
	int rc = rfs_pool_open(cp, 0, &p);
	if (rc == 0) {
		rfs_pool_rdlock(p);
		CHECK(rfs_pool_committed_gen(p) == g1 && rfs_pool_root(p, 2) == n1,
		      "mixed-version pool mounted a wrong state");
		rfs_pool_unlock(p);
		rfs_pool_close(p);
	}
	snprintf(c->path, sizeof c->path, "%s", orig);
}

static void test_root_slots_persist(void **state)
{
	tu_pool *c = *state;
	tu_pool_create(c, 0);
	tu_open(c, 0);
	uint64_t nodes[RFS_ROOT_SLOTS];
	for (unsigned s = 2; s < RFS_ROOT_SLOTS; s++) {
		nodes[s] = make_node(c, (uint8_t)(0x40 + s));
		rfs_pool_set_root(c->pool, s, nodes[s]);
		EQ_U64(rfs_pool_root(c->pool, s), nodes[s]);
	}
	tu_commit(c);
	uint64_t gen = rfs_pool_committed_gen(c->pool);
	/* uncommitted changes are lost on close */
	uint64_t extra = make_node(c, 0x99);
	rfs_pool_set_root(c->pool, 5, extra);
	rfs_pool_set_root(c->pool, 6, 0);
	tu_close(c);
	tu_open(c, 0);
	EQ_U64(rfs_pool_committed_gen(c->pool), gen);
	for (unsigned s = 2; s < RFS_ROOT_SLOTS; s++) {
		EQ_U64(rfs_pool_root(c->pool, s), nodes[s]);
		expect_node(c, nodes[s], (uint8_t)(0x40 + s), gen);
		struct rfs_buf *b = NULL;
		OK(rfs_buf_read(c->pool, nodes[s], RFS_BT_NODE, 0, &b));
		CHECK(!rfs_buf_is_dirty(c->pool, b), "committed block reported dirty");
		rfs_buf_put(c->pool, b);
	}
	CHECK(!rfs_block_allocated(c->pool, extra) || extra == nodes[5] ||
	      extra < tu_stats(c).data_start,
	      "block %" PRIu64 " of a discarded transaction still allocated", extra);
	/* clearing a slot persists too */
	rfs_pool_set_root(c->pool, 7, 0);
	OK(rfs_free_blocks(c->pool, nodes[7], 1));
	tu_commit(c);
	tu_reopen(c, 0);
	EQ_U64(rfs_pool_root(c->pool, 7), 0);
	EQ_U64(rfs_pool_root(c->pool, 6), nodes[6]);
	CHECK(!rfs_block_allocated(c->pool, nodes[7]), "freed node still allocated after reopen");
	tu_close(c);
}

static void test_alloc_free_accounting(void **state)
{
	tu_pool *c = *state;
	tu_pool_create(c, 0);
	tu_open(c, 0);
	struct rfs_pool_stats st0 = tu_stats(c);
	uint64_t s = 0, got = 0;
	OK(rfs_alloc_data(c->pool, 10, &s, &got));
	CHECK(got >= 1 && got <= 10, "got %" PRIu64, got);
	CHECK(s >= st0.data_start && s + got <= st0.total_blocks, "run %" PRIu64 "+%" PRIu64, s, got);
	struct rfs_pool_stats st = tu_stats(c);
	EQ_U64(st.used_blocks, st0.used_blocks + got);
	CHECK(st.high_water >= s + got, "high_water %" PRIu64 " below %" PRIu64, st.high_water, s + got);
	for (uint64_t i = 0; i < got; i++)
		CHECK(rfs_block_allocated(c->pool, s + i), "block %" PRIu64 " not allocated", s + i);
	CHECK(!rfs_block_allocated(c->pool, st0.total_blocks - 1), "last block allocated");

	/* more runs, all disjoint */
	uint64_t runs[20][2];
	uint64_t total = got;
	runs[0][0] = s;
	runs[0][1] = got;
	for (int r = 1; r < 20; r++) {
		OK(rfs_alloc_data(c->pool, (uint64_t)r, &runs[r][0], &runs[r][1]));
		CHECK(runs[r][1] >= 1 && runs[r][1] <= (uint64_t)r, "got %" PRIu64, runs[r][1]);
		for (int q = 0; q < r; q++)
			CHECK(runs[r][0] + runs[r][1] <= runs[q][0] || runs[q][0] + runs[q][1] <= runs[r][0],
			      "runs %d and %d overlap", r, q);
		total += runs[r][1];
	}
	uint64_t meta = make_node(c, 1);
	total += 1;
	st = tu_stats(c);
	EQ_U64(st.used_blocks, st0.used_blocks + total);

	/* free in the running transaction: reusable at once, not pending */
	OK(rfs_free_blocks(c->pool, runs[5][0], runs[5][1]));
	total -= runs[5][1];
	st = tu_stats(c);
	EQ_U64(st.used_blocks, st0.used_blocks + total);
	EQ_U64(st.pending_free, 0);
	CHECK(!rfs_block_allocated(c->pool, runs[5][0]), "freed block still allocated");

	/* double free / free of a never allocated block: -EUCLEAN, nothing changes */
	tu_log_clear();
	RC(rfs_free_blocks(c->pool, runs[5][0], 1), -EUCLEAN);
	CHECK(tu_log_names_block(runs[5][0]), "bad free not logged with its block");
	RC(rfs_free_blocks(c->pool, st0.total_blocks - 2, 1), -EUCLEAN);
	/* partially allocated range: nothing freed */
	if (runs[6][1] >= 1) {
		RC(rfs_free_blocks(c->pool, runs[5][0], runs[5][1] + 0 + (runs[6][0] == runs[5][0] + runs[5][1] ? runs[6][1] : 0)), -EUCLEAN);
	}
	st = tu_stats(c);
	EQ_U64(st.used_blocks, st0.used_blocks + total);
	for (uint64_t i = 0; i < runs[6][1]; i++)
		CHECK(rfs_block_allocated(c->pool, runs[6][0] + i), "block freed by a failed free");

	tu_commit(c);
	struct rfs_pool_stats sc = tu_stats(c);
	EQ_U64(sc.pending_free, 0);
	EQ_U64(sc.dirty_blocks, 0);

	/* free committed blocks: pending until the next commit */
	OK(rfs_free_blocks(c->pool, runs[7][0], runs[7][1]));
	OK(rfs_free_blocks(c->pool, meta, 1));
	st = tu_stats(c);
	EQ_U64(st.pending_free, runs[7][1] + 1);
	EQ_U64(st.used_blocks, sc.used_blocks - runs[7][1] - 1);
	CHECK(!rfs_block_allocated(c->pool, meta), "freed node still allocated");
	tu_commit(c);
	st = tu_stats(c);
	EQ_U64(st.pending_free, 0);

	/* accounting survives reopen */
	uint64_t used = st.used_blocks;
	tu_reopen(c, 0);
	EQ_U64(tu_stats(c).used_blocks, used);
	CHECK(!rfs_block_allocated(c->pool, runs[7][0]), "freed block allocated after reopen");
	CHECK(rfs_block_allocated(c->pool, runs[8][0]), "block lost after reopen");
	tu_close(c);
}

static bool in_list(const uint64_t *v, size_t n, uint64_t x)
{
	for (size_t i = 0; i < n; i++)
		if (v[i] == x)
			return true;
	return false;
}

static void test_freed_not_reused_before_commit(void **state)
{
	tu_pool *c = *state;
	tu_pool_create(c, SMALL_POOL);
	tu_open(c, 0);
	uint64_t b = 0, got = 0, m;
	OK(rfs_alloc_data(c->pool, 1, &b, &got));
	m = make_node(c, 7);
	tu_commit(c);
	OK(rfs_free_blocks(c->pool, b, 1));
	OK(rfs_free_blocks(c->pool, m, 1));
	EQ_U64(tu_stats(c).pending_free, 2);

	size_t cap = SMALL_POOL / RFS_BLOCK_SIZE, n = 0;
	uint64_t *list = calloc(cap, sizeof(uint64_t));
	assert_non_null(list);
	int rc;
	for (;;) {
		uint64_t s, g;
		rc = rfs_alloc_data(c->pool, 1, &s, &g);
		if (rc)
			break;
		EQ_U64(g, 1);
		CHECK(n < cap, "allocated more blocks than the pool has");
		list[n++] = s;
	}
	RC(rc, -ENOSPC);
	CHECK(!in_list(list, n, b), "data block %" PRIu64 " freed after commit reused before the next commit", b);
	CHECK(!in_list(list, n, m), "node block %" PRIu64 " freed after commit reused before the next commit", m);
	/* metadata can still be allocated past the data ENOSPC (reserve) */
	struct rfs_buf *nb = NULL;
	OK(rfs_buf_new(c->pool, RFS_BT_NODE, 0, RFS_OWNER_USER, &nb));
	CHECK(nb->blocknr != b && nb->blocknr != m, "metadata got a block freed after commit: %" PRIu64, nb->blocknr);
	uint64_t nbn = nb->blocknr;
	rfs_buf_put(c->pool, nb);
	OK(rfs_free_blocks(c->pool, nbn, 1));

	for (size_t i = 0; i < n; i++)
		OK(rfs_free_blocks(c->pool, list[i], 1));
	tu_commit(c);
	EQ_U64(tu_stats(c).pending_free, 0);
	CHECK(!rfs_block_allocated(c->pool, b), "block still allocated");
	/* now the blocks come back */
	size_t n2 = 0;
	for (;;) {
		uint64_t s, g;
		rc = rfs_alloc_data(c->pool, 1, &s, &g);
		if (rc)
			break;
		CHECK(n2 < cap, "allocated more blocks than the pool has");
		list[n2++] = s;
	}
	RC(rc, -ENOSPC);
	CHECK(in_list(list, n2, b), "freed block %" PRIu64 " never reused after commit", b);
	free(list);
	tu_close(c);
}

static void test_data_roundtrip(void **state)
{
	tu_pool *c = *state;
	tu_pool_create(c, 0);
	tu_open(c, 0);
	uint64_t s = 0, got = 0;
	/* a run of 8 (the pool is empty; collect runs until one is long enough) */
	for (int tries = 0;; tries++) {
		OK(rfs_alloc_data(c->pool, 8, &s, &got));
		if (got == 8)
			break;
		CHECK(tries < 100, "no run of 8 blocks in an empty pool");
	}
	uint8_t *in = malloc(8 * RFS_BLOCK_SIZE), *out = malloc(8 * RFS_BLOCK_SIZE);
	assert_non_null(in);
	assert_non_null(out);
	tu_rng r = {7};
	tu_fill(&r, in, 8 * RFS_BLOCK_SIZE);
	memset(in + 2 * RFS_BLOCK_SIZE, 0, RFS_BLOCK_SIZE); /* a zero block */
	uint32_t cs[8] = {0};
	OK(rfs_data_write(c->pool, s, in, 8, cs));
	for (int i = 0; i < 8; i++)
		EQ_U64(cs[i], rfs_data_csum(s + (uint64_t)i, in + (size_t)i * RFS_BLOCK_SIZE));
	/* the checksum is seeded with the block number */
	CHECK(rfs_data_csum(s, in) != rfs_data_csum(s + 1, in), "csum does not depend on the block number");
	CHECK(rfs_data_csum(s, in) != rfs_data_csum(s, in + RFS_BLOCK_SIZE), "csum does not depend on the data");
	OK(rfs_data_read(c->pool, s, out, 8, cs));
	CHECK(memcmp(in, out, 8 * RFS_BLOCK_SIZE) == 0, "data differs before commit");
	OK(rfs_data_write(c->pool, s + 7, in, 1, NULL)); /* csums may be NULL */
	OK(rfs_data_read(c->pool, s + 7, out, 1, NULL));
	CHECK(memcmp(in, out, RFS_BLOCK_SIZE) == 0, "data differs");
	OK(rfs_data_write(c->pool, s + 7, in + 7 * RFS_BLOCK_SIZE, 1, NULL));

	/* wrong checksum: -EIO, logged with the block */
	uint32_t bad[8];
	memcpy(bad, cs, sizeof bad);
	bad[5] ^= 1;
	tu_log_clear();
	RC(rfs_data_read(c->pool, s, out, 8, bad), -EIO);
	CHECK(tu_log_names_block(s + 5), "no log line names block %" PRIu64, s + 5);
	/* checksums of the same data at another place do not match */
	RC(rfs_data_read(c->pool, s + 1, out, 1, &cs[0]), -EIO);

	/* writing into a block not allocated in the running transaction is refused */
	tu_commit(c);
	tu_log_clear();
	int rc = rfs_data_write(c->pool, tu_stats(c).total_blocks - 1, in, 1, NULL);
	CHECK(rc < 0, "data write to an unallocated block = %d", rc);
	tu_reopen(c, 0);
	memset(out, 0, 8 * RFS_BLOCK_SIZE);
	OK(rfs_data_read(c->pool, s, out, 8, cs));
	CHECK(memcmp(in, out, 8 * RFS_BLOCK_SIZE) == 0, "data differs after reopen");
	tu_close(c);

	/* a flipped byte on disk */
	tu_flip_bit(c->path, s + 3, 8 * 1000 + 5);
	tu_open(c, 0);
	tu_log_clear();
	RC(rfs_data_read(c->pool, s, out, 8, cs), -EIO);
	CHECK(tu_log_names_block(s + 3), "no log line names block %" PRIu64, s + 3);
	OK(rfs_data_read(c->pool, s, out, 3, cs));
	CHECK(memcmp(in, out, 3 * RFS_BLOCK_SIZE) == 0, "data differs");
	OK(rfs_data_read(c->pool, s + 4, out, 4, cs + 4));
	CHECK(memcmp(in + 4 * RFS_BLOCK_SIZE, out, 4 * RFS_BLOCK_SIZE) == 0, "data differs");
	RC(rfs_data_read(c->pool, s + 3, out, 1, cs + 3), -EIO);
	tu_close(c);
	free(in);
	free(out);
}

static void test_buf_read_verification(void **state)
{
	tu_pool *c = *state;
	tu_pool_create(c, 0);
	tu_open(c, 0);
	uint64_t a = make_node(c, 0xa1);
	uint64_t b = make_node(c, 0xb2);
	uint64_t d = make_node(c, 0xd4);
	CHECK(a != b && b != d && a != d, "same block twice");
	/* readable in the running transaction */
	expect_node(c, a, 0xa1, rfs_pool_txn_gen(c->pool));
	tu_commit(c);
	uint64_t gen = rfs_pool_committed_gen(c->pool);
	tu_reopen(c, 0);
	expect_node(c, a, 0xa1, gen);
	expect_node(c, b, 0xb2, 0);

	struct rfs_buf *buf = NULL;
	tu_log_clear();
	RC(rfs_buf_read(c->pool, a, RFS_BT_BITMAP, 0, &buf), -EIO);
	CHECK(tu_log_names_block(a), "wrong type: no log line names block %" PRIu64, a);
	tu_log_clear();
	RC(rfs_buf_read(c->pool, a, RFS_BT_NODE, gen + 5, &buf), -EIO);
	CHECK(tu_log_names_block(a), "wrong generation: no log line names block %" PRIu64, a);
	RC(rfs_buf_read(c->pool, a, RFS_BT_NODE, gen - 1 ? gen - 1 : 77, &buf), -EIO);
	/* an unallocated / never written block */
	tu_log_clear();
	uint64_t far = tu_stats(c).total_blocks - 3;
	RC(rfs_buf_read(c->pool, far, RFS_BT_NODE, 0, &buf), -EIO);
	tu_close(c);

	/* a flipped byte in the payload */
	tu_flip_bit(c->path, a, 8 * 3000 + 2);
	/* a misdirected write: b's location holds a valid copy of d */
	uint8_t raw[RFS_BLOCK_SIZE];
	OK(tu_pread_block(c->path, d, raw));
	OK(tu_pwrite_block(c->path, b, raw));
	tu_open(c, 0);
	tu_log_clear();
	RC(rfs_buf_read(c->pool, a, RFS_BT_NODE, gen, &buf), -EIO);
	CHECK(tu_log_names_block(a), "bad crc: no log line names block %" PRIu64, a);
	tu_log_clear();
	RC(rfs_buf_read(c->pool, b, RFS_BT_NODE, 0, &buf), -EIO);
	CHECK(tu_log_names_block(b), "misdirected: no log line names block %" PRIu64, b);
	/* repeated reads keep failing (no bad block cached as good) */
	RC(rfs_buf_read(c->pool, a, RFS_BT_NODE, gen, &buf), -EIO);
	expect_node(c, d, 0xd4, gen);
	tu_close(c);

	/* a block written "in the future" (generation above the running txn) */
	OK(tu_pread_block(c->path, d, raw));
	struct rfs_block_header h;
	memcpy(&h, raw, sizeof h);
	EQ_U64(h.crc, tu_meta_crc(raw)); /* the tests' crc helper is right */
	h.generation = gen + 100;
	memcpy(raw, &h, sizeof h);
	uint32_t crc = tu_meta_crc(raw);
	memcpy(raw + 4, &crc, 4);
	OK(tu_pwrite_block(c->path, d, raw));
	tu_open(c, 0);
	RC(rfs_buf_read(c->pool, d, RFS_BT_NODE, 0, &buf), -EIO);
	tu_close(c);
}

static void crash_case(tu_pool *c, enum rfs_crash_mode mode, uint64_t seed)
{
	OK(rfs_pool_create(c->path, 64ull << 20, RFS_CREATE_FORCE));
	tu_open(c, RFS_OPEN_CRASHSIM);
	uint64_t n1 = make_node(c, 0x51);
	rfs_pool_set_root(c->pool, 2, n1);
	uint64_t s = 0, got = 0;
	OK(rfs_alloc_data(c->pool, 4, &s, &got));
	uint8_t in[4 * RFS_BLOCK_SIZE], out[4 * RFS_BLOCK_SIZE];
	tu_rng r = {seed};
	tu_fill(&r, in, sizeof in);
	uint32_t cs[4];
	OK(rfs_data_write(c->pool, s, in, (uint32_t)got, cs));
	tu_commit(c);
	uint64_t gen = rfs_pool_committed_gen(c->pool);
	uint64_t used = tu_stats(c).used_blocks;

	/* a transaction that never commits */
	uint64_t n2 = make_node(c, 0x52);
	rfs_pool_set_root(c->pool, 2, n2);
	rfs_pool_set_root(c->pool, 3, n2);
	OK(rfs_free_blocks(c->pool, n1, 1));
	OK(rfs_free_blocks(c->pool, s, got));
	uint64_t s2 = 0, got2 = 0;
	OK(rfs_alloc_data(c->pool, 16, &s2, &got2));
	uint8_t junk[RFS_BLOCK_SIZE];
	memset(junk, 0xee, sizeof junk);
	for (uint64_t i = 0; i < got2; i++)
		OK(rfs_data_write(c->pool, s2 + i, junk, 1, NULL));
	tu_crash(c, mode, seed);

	tu_open(c, 0);
	EQ_U64(rfs_pool_committed_gen(c->pool), gen);
	EQ_U64(rfs_pool_root(c->pool, 2), n1);
	EQ_U64(rfs_pool_root(c->pool, 3), 0);
	expect_node(c, n1, 0x51, gen);
	OK(rfs_data_read(c->pool, s, out, (uint32_t)got, cs));
	CHECK(memcmp(in, out, got * RFS_BLOCK_SIZE) == 0, "committed data changed by a crash (mode %d)", mode);
	EQ_U64(tu_stats(c).used_blocks, used);
	CHECK(rfs_block_allocated(c->pool, n1), "committed node freed by a crash");
	/* the pool works after the crash */
	uint64_t n3 = make_node(c, 0x53);
	rfs_pool_set_root(c->pool, 4, n3);
	tu_commit(c);
	tu_reopen(c, 0);
	expect_node(c, n3, 0x53, gen + 1);
	expect_node(c, n1, 0x51, gen);
	tu_close(c);
}

static void test_crash_without_commit(void **state)
{
	tu_pool *c = *state;
	for (int mode = 0; mode < 3; mode++)
		for (uint64_t seed = 1; seed <= 4; seed++)
			crash_case(c, (enum rfs_crash_mode)mode, seed * 1000 + (uint64_t)mode);
}

static void test_crash_at_flush(void **state)
{
	tu_pool *c = *state;
	/* count the flushes of one commit */
	tu_pool_create(c, 0);
	tu_open(c, RFS_OPEN_CRASHSIM);
	make_node(c, 1);
	uint64_t f0 = tu_stats(c).flushes;
	tu_commit(c);
	uint64_t nflush = tu_stats(c).flushes - f0;
	tu_close(c);
	CHECK(nflush >= 2, "a commit has at least two flushes, got %" PRIu64, nflush);

	for (uint64_t k = 1; k <= nflush; k++) {
		for (int mode = 0; mode < 3; mode++) {
			OK(rfs_pool_create(c->path, 0 + TU_POOL_SIZE, RFS_CREATE_FORCE));
			tu_open(c, RFS_OPEN_CRASHSIM);
			uint64_t n1 = make_node(c, 0x61);
			rfs_pool_set_root(c->pool, 2, n1);
			tu_commit(c);
			uint64_t g1 = rfs_pool_committed_gen(c->pool);
			uint64_t n2 = make_node(c, 0x62);
			rfs_pool_set_root(c->pool, 2, n2);
			rfs_pool_crash_at_flush(c->pool, k, (enum rfs_crash_mode)mode, k * 7 + (uint64_t)mode);
			int rc = rfs_pool_commit_locked(c->pool);
			CHECK(rfs_pool_crashed(c->pool), "flush %" PRIu64 " of %" PRIu64 " did not crash", k, nflush);
			CHECK(rc == 0 || rc == -EIO, "commit at crash = %d", rc);
			if (k < nflush)
				RC(rc, -EIO);
			/* all later I/O fails */
			uint64_t s, sg;
			rc = rfs_alloc_data(c->pool, 1, &s, &sg);
			if (rc == 0) {
				uint8_t blk[RFS_BLOCK_SIZE] = {0};
				rc = rfs_data_write(c->pool, s, blk, 1, NULL);
				if (rc == 0)
					rc = rfs_pool_commit_locked(c->pool);
			}
			CHECK(rc < 0, "I/O after the simulated crash succeeded");
			tu_close(c);

			tu_open(c, 0);
			uint64_t g = rfs_pool_committed_gen(c->pool);
			if (g == g1) {
				EQ_U64(rfs_pool_root(c->pool, 2), n1);
				expect_node(c, n1, 0x61, g1);
			} else {
				EQ_U64(g, g1 + 1);
				/* with every unflushed write dropped, a crash at or
				 * before the last flush cannot have made it durable
				 * unless the superblock flush was not the last one */
				CHECK(mode != RFS_CRASH_DROP_ALL || k == nflush,
				      "DROP_ALL crash at flush %" PRIu64 "/%" PRIu64 " kept the new commit", k, nflush);
				EQ_U64(rfs_pool_root(c->pool, 2), n2);
				expect_node(c, n2, 0x62, g);
			}
			tu_close(c);
		}
	}
}

static void test_write_failure_turns_readonly(void **state)
{
	tu_pool *c = *state;
	tu_pool_create(c, 0);
	tu_open(c, 0);
	uint64_t n1 = make_node(c, 0x71);
	rfs_pool_set_root(c->pool, 2, n1);
	tu_commit(c);
	uint64_t g1 = rfs_pool_committed_gen(c->pool);
	uint64_t n2 = make_node(c, 0x72);
	rfs_pool_set_root(c->pool, 2, n2);
	rfs_pool_fail_writes_after(c->pool, 0);
	tu_log_clear();
	int rc = rfs_pool_commit_locked(c->pool);
	CHECK(rc < 0, "commit with failing writes = %d", rc);
	CHECK(tu_log.n > 0, "commit failure not logged");
	EQ_U64(rfs_pool_committed_gen(c->pool), g1);
	rfs_pool_fail_writes_after(c->pool, UINT64_MAX);
	uint64_t s, g;
	RC(rfs_alloc_data(c->pool, 1, &s, &g), -EROFS);
	struct rfs_buf *b = NULL;
	RC(rfs_buf_new(c->pool, RFS_BT_NODE, 0, RFS_OWNER_USER, &b), -EROFS);
	RC(rfs_pool_commit_locked(c->pool), -EROFS);
	tu_close(c);
	tu_open(c, 0);
	EQ_U64(rfs_pool_committed_gen(c->pool), g1);
	EQ_U64(rfs_pool_root(c->pool, 2), n1);
	expect_node(c, n1, 0x71, g1);
	tu_close(c);

	/* failure in the middle of a bigger commit */
	for (uint64_t after = 1; after < 40; after += 3) {
		OK(rfs_pool_create(c->path, TU_POOL_SIZE, RFS_CREATE_FORCE));
		tu_open(c, 0);
		uint64_t a = make_node(c, 0x73);
		rfs_pool_set_root(c->pool, 2, a);
		tu_commit(c);
		uint64_t ga = rfs_pool_committed_gen(c->pool);
		for (int i = 0; i < 30; i++)
			rfs_pool_set_root(c->pool, 3, make_node(c, (uint8_t)i));
		rfs_pool_fail_writes_after(c->pool, after);
		rc = rfs_pool_commit_locked(c->pool);
		tu_close(c);
		tu_open(c, 0);
		if (rc < 0) {
			EQ_U64(rfs_pool_committed_gen(c->pool), ga);
			EQ_U64(rfs_pool_root(c->pool, 3), 0);
		} else {
			EQ_U64(rfs_pool_committed_gen(c->pool), ga + 1);
			expect_node(c, rfs_pool_root(c->pool, 3), 29, ga + 1);
		}
		expect_node(c, a, 0x73, ga);
		tu_close(c);
	}
}

/* Whether block blk of the pool file is a hole (SEEK_HOLE lands on it). */
static bool is_hole(tu_pool *c, uint64_t blk)
{
	int fd = open(c->path, O_RDONLY);
	CHECK(fd >= 0, "open %s: %s", c->path, strerror(errno));
	off_t off = (off_t)(blk * RFS_BLOCK_SIZE);
	off_t h = lseek(fd, off, SEEK_HOLE);
	close(fd);
	return h == off;
}

/* Whether dir's filesystem punches holes that SEEK_HOLE then finds. */
static bool punch_seen(const char *dir)
{
	char path[1200];
	snprintf(path, sizeof(path), "%s/punch-probe", dir);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	CHECK(fd >= 0, "open %s: %s", path, strerror(errno));
	static uint8_t buf[256 * 1024];
	memset(buf, 1, sizeof(buf));
	bool ok = pwrite(fd, buf, sizeof(buf), 0) == (ssize_t)sizeof(buf) &&
		  fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 64 * 1024, 64 * 1024) == 0 &&
		  lseek(fd, 64 * 1024, SEEK_HOLE) == 64 * 1024;
	close(fd);
	unlink(path);
	return ok;
}

/* Allocate a run of n blocks (an empty pool has them) and fill it with
 * bytes of seed; its checksums into cs. */
static uint64_t data_run(tu_pool *c, uint64_t n, uint8_t seed, uint32_t *cs)
{
	uint64_t s = 0, got = 0;
	OK(rfs_alloc_data(c->pool, n, &s, &got));
	EQ_U64(got, n);
	uint8_t *in = malloc(n * RFS_BLOCK_SIZE);
	assert_non_null(in);
	for (uint64_t i = 0; i < n * RFS_BLOCK_SIZE; i++)
		in[i] = (uint8_t)(seed + i / RFS_BLOCK_SIZE);
	OK(rfs_data_write(c->pool, s, in, (uint32_t)n, cs));
	free(in);
	return s;
}

static void expect_data(tu_pool *c, uint64_t s, uint64_t n, uint8_t seed, const uint32_t *cs)
{
	uint8_t *out = malloc(n * RFS_BLOCK_SIZE);
	assert_non_null(out);
	OK(rfs_data_read(c->pool, s, out, (uint32_t)n, cs));
	for (uint64_t i = 0; i < n * RFS_BLOCK_SIZE; i++)
		CHECK(out[i] == (uint8_t)(seed + i / RFS_BLOCK_SIZE), "block %" PRIu64 " differs",
		      s + i / RFS_BLOCK_SIZE);
	free(out);
}

static void background_commit(tu_pool *c)
{
	tu_unlock(c);
	OK(rfs_pool_commit_background(c->pool));
	tu_lock(c);
}

/*
 * Freed runs and the pool file's holes: an explicit commit punches the
 * runs it frees at once; a background commit keeps them backed ("warm")
 * for the writes after it, and the next commit -- or rfs_pool_punch_warm
 * -- punches what of them is still free, never a block allocated since.
 */
static void test_background_commit_keeps_freed_warm(void **state)
{
	tu_pool *c = *state;
	tu_pool_create(c, 0);
	if (!punch_seen(c->dir)) {
		print_message("the test directory's filesystem does not punch holes: skipped\n");
		skip();
	}
	tu_open(c, 0);
	uint32_t cs[3][64], cr[16];
	uint64_t r[3];
	for (int i = 0; i < 3; i++)
		r[i] = data_run(c, 64, (uint8_t)(10 * i), cs[i]);
	tu_commit(c);
	for (int i = 0; i < 3; i++)
		for (uint64_t b = 0; b < 64; b++)
			CHECK(!is_hole(c, r[i] + b), "written block %" PRIu64 " is a hole", r[i] + b);

	/* A background commit frees run 0: still backed, allocatable. */
	OK(rfs_free_blocks(c->pool, r[0], 64));
	background_commit(c);
	EQ_U64(tu_stats(c).warm_blocks, 64);
	for (uint64_t b = 0; b < 64; b++)
		CHECK(!is_hole(c, r[0] + b), "block %" PRIu64 " punched by a background commit", r[0] + b);
	/* The next write takes the warm blocks, lowest first. */
	uint64_t w = data_run(c, 16, 200, cr);
	EQ_U64(w, r[0]);

	/* The next commit punches the rest of run 0, not the 16 reused;
	 * run 1, which it frees, is warm now. */
	OK(rfs_free_blocks(c->pool, r[1], 64));
	background_commit(c);
	EQ_U64(tu_stats(c).warm_blocks, 64);
	for (uint64_t b = 0; b < 64; b++) {
		CHECK(is_hole(c, r[0] + b) == (b >= 16), "block %" PRIu64 ": hole %d", r[0] + b,
		      is_hole(c, r[0] + b));
		CHECK(!is_hole(c, r[1] + b), "block %" PRIu64 " punched by a background commit", r[1] + b);
	}
	expect_data(c, w, 16, 200, cr);

	/* Nothing to commit: rfs_pool_punch_warm gives run 1 back. */
	tu_unlock(c);
	rfs_pool_punch_warm(c->pool);
	tu_lock(c);
	EQ_U64(tu_stats(c).warm_blocks, 0);
	for (uint64_t b = 0; b < 64; b++)
		CHECK(is_hole(c, r[1] + b), "block %" PRIu64 " not punched", r[1] + b);

	/* An explicit commit punches what it frees at once. */
	OK(rfs_free_blocks(c->pool, r[2], 64));
	tu_commit(c);
	EQ_U64(tu_stats(c).warm_blocks, 0);
	for (uint64_t b = 0; b < 64; b++)
		CHECK(is_hole(c, r[2] + b), "block %" PRIu64 " not punched by a commit", r[2] + b);

	/* Warm runs left by a background commit are punched by an explicit
	 * one; the blocks written since are not, and survive a reopen. */
	uint64_t w2 = data_run(c, 32, 90, cs[0]);
	OK(rfs_free_blocks(c->pool, w, 16));
	background_commit(c);
	EQ_U64(tu_stats(c).warm_blocks, 16);
	tu_commit(c);
	EQ_U64(tu_stats(c).warm_blocks, 0);
	for (uint64_t b = 0; b < 16; b++)
		CHECK(is_hole(c, w + b), "block %" PRIu64 " not punched by a commit", w + b);
	for (uint64_t b = 0; b < 32; b++)
		CHECK(!is_hole(c, w2 + b), "written block %" PRIu64 " is a hole", w2 + b);
	tu_reopen(c, 0);
	expect_data(c, w2, 32, 90, cs[0]);
	tu_close(c);
}

static void test_enospc_reserve(void **state)
{
	tu_pool *c = *state;
	tu_pool_create(c, SMALL_POOL);
	tu_open(c, 0);
	uint64_t s, g, total = 0;
	int rc;
	while ((rc = rfs_alloc_data(c->pool, 7, &s, &g)) == 0)
		total += g;
	RC(rc, -ENOSPC);
	struct rfs_pool_stats st = tu_stats(c);
	CHECK(st.used_blocks <= st.total_blocks, "used > total");
	CHECK(total > (SMALL_POOL / RFS_BLOCK_SIZE) / 2, "only %" PRIu64 " data blocks in a 1024-block pool", total);
	/* metadata still possible, and a commit of the full pool works */
	uint64_t n = make_node(c, 3);
	rfs_pool_set_root(c->pool, 2, n);
	tu_commit(c);
	tu_reopen(c, 0);
	expect_node(c, n, 3, 0);
	tu_close(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_create_open_roundtrip, tu_setup, tu_teardown),
		cmocka_unit_test_setup_teardown(test_create_refuses_existing, tu_setup, tu_teardown),
		cmocka_unit_test_setup_teardown(test_create_bad_input, tu_setup, tu_teardown),
		cmocka_unit_test_setup_teardown(test_open_bad_files, tu_setup, tu_teardown),
		cmocka_unit_test_setup_teardown(test_open_truncated, tu_setup, tu_teardown),
		cmocka_unit_test_setup_teardown(test_superblock_damage, tu_setup, tu_teardown),
		cmocka_unit_test_setup_teardown(test_root_slots_persist, tu_setup, tu_teardown),
		cmocka_unit_test_setup_teardown(test_alloc_free_accounting, tu_setup, tu_teardown),
		cmocka_unit_test_setup_teardown(test_freed_not_reused_before_commit, tu_setup, tu_teardown),
		cmocka_unit_test_setup_teardown(test_data_roundtrip, tu_setup, tu_teardown),
		cmocka_unit_test_setup_teardown(test_buf_read_verification, tu_setup, tu_teardown),
		cmocka_unit_test_setup_teardown(test_crash_without_commit, tu_setup, tu_teardown),
		cmocka_unit_test_setup_teardown(test_crash_at_flush, tu_setup, tu_teardown),
		cmocka_unit_test_setup_teardown(test_write_failure_turns_readonly, tu_setup, tu_teardown),
		cmocka_unit_test_setup_teardown(test_enospc_reserve, tu_setup, tu_teardown),
		cmocka_unit_test_setup_teardown(test_background_commit_keeps_freed_warm, tu_setup,
						tu_teardown),
	};
	return tu_exit(cmocka_run_group_tests(tests, NULL, NULL));
}
