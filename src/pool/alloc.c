/*
 * Space allocation: one bit per block, three in-memory bitmaps and the
 * list of deferred frees.
 *
 *   persist  allocation state being built; the commit writes it to disk.
 *   avail    what the allocator may not hand out: persist plus the blocks
 *            freed in a transaction whose commit is not yet durable (the
 *            last committed state still references them).
 *   fresh    allocated in the running transaction: freeing such a block
 *            makes it reusable at once, since no committed state has it.
 *
 * A claimed block (rfs_claim_data) is in avail only: handed to no one
 * else, but free in what a commit writes, until rfs_claim_adopt puts it
 * in persist and fresh (or rfs_claim_drop gives it back).
 *
 * On disk there are two copies of the bitmap; the commit of generation g
 * writes copy g % 2 (see commit.c and docs/FORMAT.md).
 */
#include "pool/pool_internal.h"
#include "util/lockcheck.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static void set_range(uint64_t *map, uint64_t start, uint64_t n)
{
	while (n) {
		uint64_t w = start >> 6, bit = start & 63;
		uint64_t k = 64 - bit < n ? 64 - bit : n;
		uint64_t mask = (k == 64 ? ~0ull : ((1ull << k) - 1)) << bit;

		map[w] |= mask;
		start += k;
		n -= k;
	}
}

static void clear_range(uint64_t *map, uint64_t start, uint64_t n)
{
	while (n) {
		uint64_t w = start >> 6, bit = start & 63;
		uint64_t k = 64 - bit < n ? 64 - bit : n;
		uint64_t mask = (k == 64 ? ~0ull : ((1ull << k) - 1)) << bit;

		map[w] &= ~mask;
		start += k;
		n -= k;
	}
}

/* First bit in [from, limit) that is clear (want_set false) or set. */
static uint64_t find_bit(const uint64_t *map, uint64_t from, uint64_t limit, bool want_set)
{
	uint64_t w, word;

	if (from >= limit)
		return limit;
	w = from >> 6;
	word = want_set ? map[w] : ~map[w];
	word &= ~0ull << (from & 63);
	for (;;) {
		if (word) {
			uint64_t bit = (w << 6) + (uint64_t)__builtin_ctzll(word);

			return bit < limit ? bit : limit;
		}
		if (++w << 6 >= limit)
			return limit;
		word = want_set ? map[w] : ~map[w];
	}
}

static void touch_pages(rfs_pool *pool, uint64_t start, uint64_t n)
{
	uint64_t gen = pool->committed_gen + 1;

	for (uint64_t p = start / RFS_BITS_PER_PAGE; p <= (start + n - 1) / RFS_BITS_PER_PAGE; p++)
		pool->page_gen[p] = gen;
}

uint64_t rfs_pool_mem_bytes(uint64_t size_bytes)
{
	uint64_t blocks = size_bytes / RFS_BLOCK_SIZE, bitmap_blocks, data_start;
	rfs_geometry(blocks, &bitmap_blocks, &data_start);
	/* what rfs_alloc_init allocates */
	return 3 * ((blocks + 63) / 64) * sizeof(uint64_t) + bitmap_blocks * sizeof(uint64_t);
}

int rfs_alloc_init(rfs_pool *pool)
{
	uint64_t r = pool->total_blocks / 100;

	pool->nwords = (pool->total_blocks + 63) / 64;
	pool->persist = calloc(pool->nwords, sizeof(uint64_t));
	pool->avail = calloc(pool->nwords, sizeof(uint64_t));
	pool->fresh = calloc(pool->nwords, sizeof(uint64_t));
	pool->page_gen = calloc(pool->bitmap_blocks, sizeof(uint64_t));
	if (!pool->persist || !pool->avail || !pool->fresh || !pool->page_gen)
		return -ENOMEM;
	pool->meta_fail_after = UINT64_MAX;
	/* Blocks that metadata may use when data allocation already
	 * reports ENOSPC: shadowing a tree to delete from it needs space,
	 * and so does an fs operation's reservation (src/fs/op.c: 256
	 * blocks plus 16 per tree change), so that a data-full pool can
	 * still mkdir and rename.  At most an eighth of a small pool. */
	uint64_t lo = pool->total_blocks / 8 < 640 ? pool->total_blocks / 8 : 640;
	pool->reserve = r < lo ? lo : r > 8192 ? 8192 : r;
	if (pool->reserve < 64)
		pool->reserve = 64;
	return 0;
}

void rfs_alloc_destroy(rfs_pool *pool)
{
	free(pool->persist);
	free(pool->avail);
	free(pool->fresh);
	free(pool->page_gen);
	free(pool->pending);
	free(pool->warm);
}

void rfs_alloc_format(rfs_pool *pool)
{
	/* Superblocks and both bitmap copies are allocated for good. */
	set_range(pool->persist, 0, pool->data_start);
	set_range(pool->avail, 0, pool->data_start);
	pool->used_blocks = pool->avail_used = pool->data_start;
	pool->high_water = pool->hint = pool->data_start;
}

int rfs_alloc_loaded(rfs_pool *pool, uint64_t sb_used)
{
	uint64_t used = 0;

	for (uint64_t w = 0; w < pool->nwords; w++)
		used += (uint64_t)__builtin_popcountll(pool->persist[w]);
	if (find_bit(pool->persist, 0, pool->data_start, false) < pool->data_start ||
	    find_bit(pool->persist, pool->high_water, pool->total_blocks, true) <
		    pool->total_blocks ||
	    used != sb_used) {
		rfs_log(RFS_LOG_ERR, "%s: allocation bitmap does not match the superblock (%llu blocks marked used, superblock says %llu)",
			pool->path, (unsigned long long)used, (unsigned long long)sb_used);
		return -EIO;
	}
	memcpy(pool->avail, pool->persist, pool->nwords * 8);
	pool->used_blocks = pool->avail_used = used;
	pool->hint = pool->data_start;
	return 0;
}

uint64_t rfs_bitmap_pages_used(const rfs_pool *pool)
{
	return (pool->high_water - 1) / RFS_BITS_PER_PAGE + 1;
}

void rfs_bitmap_page_fill(rfs_pool *pool, uint64_t page, unsigned copy,
			  uint64_t gen, uint8_t *block)
{
	struct rfs_block_header h = {
		.magic = RFS_META_MAGIC,
		.blocknr = pool->bitmap_start + copy * pool->bitmap_blocks + page,
		.generation = gen,
		.type = RFS_BT_BITMAP,
	};
	uint64_t w0 = page * RFS_WORDS_PER_PAGE;
	uint64_t nw = pool->nwords - w0 < RFS_WORDS_PER_PAGE ? pool->nwords - w0
							       : RFS_WORDS_PER_PAGE;

	memset(block, 0, RFS_BLOCK_SIZE);
	memcpy(block + RFS_BLOCK_HEADER_SIZE, pool->persist + w0, nw * 8);
	memcpy(block, &h, sizeof(h));
	h.crc = rfs_meta_csum(block);
	memcpy(block, &h, sizeof(h));
}

void rfs_bitmap_page_load(rfs_pool *pool, uint64_t page, const uint8_t *block)
{
	uint64_t w0 = page * RFS_WORDS_PER_PAGE;
	uint64_t nw = pool->nwords - w0 < RFS_WORDS_PER_PAGE ? pool->nwords - w0
							       : RFS_WORDS_PER_PAGE;

	memcpy(pool->persist + w0, block + RFS_BLOCK_HEADER_SIZE, nw * 8);
}

/* Mark [start, start+n) allocated in the running transaction. */
static void mark_alloc(rfs_pool *pool, uint64_t start, uint64_t n)
{
	pool->changes++;
	set_range(pool->persist, start, n);
	set_range(pool->avail, start, n);
	set_range(pool->fresh, start, n);
	pool->used_blocks += n;
	pool->avail_used += n;
	touch_pages(pool, start, n);
	if (start + n > pool->high_water)
		pool->high_water = start + n;
	if (start == pool->hint)
		pool->hint = start + n;
}

/* Claim [start, start+n): taken from avail, persist untouched.  Its
 * bitmap pages are marked changed, since high_water may now cover a page
 * no commit wrote yet (open loads every page below it). */
static void mark_claim(rfs_pool *pool, uint64_t start, uint64_t n)
{
	set_range(pool->avail, start, n);
	pool->avail_used += n;
	pool->claimed_blocks += n;
	touch_pages(pool, start, n);
	if (start + n > pool->high_water)
		pool->high_water = start + n;
	if (start == pool->hint)
		pool->hint = start + n;
}

/* Find a free run of up to want blocks, keeping keep blocks free; mark
 * it allocated, or claimed. */
static int alloc_run(rfs_pool *pool, uint64_t want, uint64_t keep, bool claim,
		     uint64_t *start, uint64_t *got)
{
	uint64_t free_blocks = pool->total_blocks - pool->avail_used;
	uint64_t pos, best = 0, best_len = 0;
	int ret;

	ret = rfs_pool_check_writable(pool);
	if (ret)
		return ret;
	if (free_blocks <= keep)
		return -ENOSPC;
	if (want == 0)
		want = 1;
	if (want > free_blocks - keep)
		want = free_blocks - keep;

	/* Lowest addresses first keeps the pool file short; the first run
	 * long enough wins, else the longest one seen. */
	pos = pool->hint > pool->data_start ? pool->hint : pool->data_start;
	pos = find_bit(pool->avail, pos, pool->total_blocks, false);
	pool->hint = pos;
	while (pos < pool->total_blocks) {
		uint64_t lim = pool->total_blocks - pos < want ? pool->total_blocks : pos + want;
		uint64_t end = find_bit(pool->avail, pos, lim, true);

		if (end - pos > best_len) {
			best = pos;
			best_len = end - pos;
			if (best_len == want)
				break;
		}
		pos = find_bit(pool->avail, end, pool->total_blocks, false);
	}
	if (!best_len)
		return -ENOSPC; /* counters and bitmap disagree: be safe */
	if (claim)
		mark_claim(pool, best, best_len);
	else
		mark_alloc(pool, best, best_len);
	*start = best;
	*got = best_len;
	return 0;
}

/* What a data allocation keeps free. */
static uint64_t data_keep(const rfs_pool *pool)
{
	/* Metadata the running operation allocated came out of the
	 * reserve, not out of the space its data may take; half of the
	 * reserve stays for the tree's admission checks and deletions. */
	uint64_t credit = pool->credit_on ? pool->meta_allocs - pool->credit_base : 0;

	if (credit > pool->reserve / 2)
		credit = pool->reserve / 2;
	return pool->reserve - credit;
}

int rfs_alloc_data(rfs_pool *pool, uint64_t want, uint64_t *start, uint64_t *got)
{
	RFS_ASSERT_LOCK(rfs_pool_holds_wrlock(pool));
	return alloc_run(pool, want, data_keep(pool), false, start, got);
}

int rfs_claim_data(rfs_pool *pool, uint64_t want, uint64_t *start, uint64_t *got)
{
	/* The gate: only gate holders read what a claim changes, but for
	 * high_water (atomic, read by rfs_pool_stats). */
	RFS_ASSERT_LOCK(rfs_pool_holds_gate(pool) && rfs_pool_holds_lock(pool));
	return alloc_run(pool, want, data_keep(pool), true, start, got);
}

void rfs_claim_adopt(rfs_pool *pool, uint64_t start, uint64_t n)
{
	RFS_ASSERT_LOCK(rfs_pool_holds_wrlock(pool));
	assert(n <= pool->claimed_blocks);
	/* As mark_alloc, avail aside (the claim set it). */
	pool->changes++;
	set_range(pool->persist, start, n);
	set_range(pool->fresh, start, n);
	pool->used_blocks += n;
	pool->claimed_blocks -= n;
	touch_pages(pool, start, n);
}

void rfs_claim_drop(rfs_pool *pool, uint64_t start, uint64_t n)
{
	RFS_ASSERT_LOCK(rfs_pool_holds_gate(pool) && rfs_pool_holds_lock(pool));
	assert(n <= pool->claimed_blocks);
	clear_range(pool->avail, start, n);
	pool->avail_used -= n;
	pool->claimed_blocks -= n;
	if (start < pool->hint)
		pool->hint = start;
}

void rfs_pool_meta_from_reserve(rfs_pool *pool, bool on)
{
	RFS_ASSERT_LOCK(rfs_pool_holds_wrlock(pool));
	pool->credit_on = on;
	pool->credit_base = pool->meta_allocs;
}

uint64_t rfs_pool_data_avail(const rfs_pool *pool)
{
	RFS_ASSERT_LOCK(rfs_pool_holds_lock(pool));
	/* used_blocks (the persist bitmap) already excludes pending frees
	 * and includes the fixed region; alloc_run keeps `reserve` free. */
	uint64_t keep = pool->used_blocks + pool->reserve;

	return pool->total_blocks > keep ? pool->total_blocks - keep : 0;
}

int rfs_alloc_meta(rfs_pool *pool, uint64_t *blocknr)
{
	RFS_ASSERT_LOCK(rfs_pool_holds_wrlock(pool));
	if (pool->meta_fail_after != UINT64_MAX) {
		if (!pool->meta_fail_after)
			return -ENOSPC; /* injected (tests) */
		pool->meta_fail_after--;
	}
	uint64_t got;
	int ret = alloc_run(pool, 1, 0, false, blocknr, &got);

	if (!ret)
		pool->meta_allocs++;
	return ret;
}

static int add_pending(rfs_pool *pool, uint64_t start, uint64_t n)
{
	struct rfs_extent *last = pool->npending ? &pool->pending[pool->npending - 1] : NULL;

	if (last && last->start + last->n == start) {
		last->n += n;
		return 0;
	}
	if (pool->npending == pool->pending_cap) {
		size_t cap = pool->pending_cap ? pool->pending_cap * 2 : 64;
		struct rfs_extent *p = realloc(pool->pending, cap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		pool->pending = p;
		pool->pending_cap = cap;
	}
	pool->pending[pool->npending++] = (struct rfs_extent){ start, n };
	return 0;
}

/* rfs_free_blocks of one block, checked: a random overwrite frees one
 * old block per write, and the run scans below cost it 200
 * instructions more (bench/README.md, "Session 14"). */
static int free_one(rfs_pool *pool, uint64_t b)
{
	if (!rfs_bit_test(pool->persist, b)) {
		rfs_log(RFS_LOG_ERR, "%s: block %llu freed but not allocated",
			pool->path, (unsigned long long)b);
		return -EUCLEAN;
	}
	if (rfs_bit_test(pool->fresh, b)) {
		/* Never part of a committed state: reusable now. */
		pool->fresh[b >> 6] &= ~(1ull << (b & 63));
		pool->avail[b >> 6] &= ~(1ull << (b & 63));
		pool->avail_used--;
		if (b < pool->hint)
			pool->hint = b;
	} else {
		/* Still referenced by the last commit: reusable only once the
		 * next commit is durable. */
		int ret = add_pending(pool, b, 1); /* first: nothing changed */
		if (ret)
			return ret;
		pool->pending_blocks++;
	}
	pool->persist[b >> 6] &= ~(1ull << (b & 63));
	pool->used_blocks--;
	touch_pages(pool, b, 1);
	rfs_cache_drop(pool, b);
	return 0;
}

int rfs_free_blocks(rfs_pool *pool, uint64_t start, uint64_t n)
{
	uint64_t b, end;
	size_t runs;
	int ret;

	RFS_ASSERT_LOCK(rfs_pool_holds_wrlock(pool));
	ret = rfs_pool_check_writable(pool);
	pool->changes++;
	if (ret)
		return ret;
	if (n == 0)
		return 0;
	if (start < pool->data_start || start >= pool->total_blocks ||
	    n > pool->total_blocks - start) {
		rfs_log(RFS_LOG_ERR, "%s: block %llu freed but not allocated (%llu blocks outside the data area)",
			pool->path, (unsigned long long)start, (unsigned long long)n);
		return -EUCLEAN;
	}
	if (n == 1)
		return free_one(pool, start);
	end = start + n;
	b = find_bit(pool->persist, start, end, false);
	if (b < end) {
		rfs_log(RFS_LOG_ERR, "%s: block %llu freed but not allocated",
			pool->path, (unsigned long long)b);
		return -EUCLEAN;
	}
	/* Make room in the pending list first, so nothing changes on
	 * failure: one extent per run of blocks that are not fresh. */
	runs = 0;
	for (b = find_bit(pool->fresh, start, end, false); b < end;) {
		runs++;
		b = find_bit(pool->fresh, find_bit(pool->fresh, b, end, true), end, false);
	}
	if (pool->npending + runs > pool->pending_cap) {
		size_t cap = pool->npending + runs + 64;
		struct rfs_extent *p = realloc(pool->pending, cap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		pool->pending = p;
		pool->pending_cap = cap;
	}
	for (b = start; b < end;) {
		bool is_fresh = rfs_bit_test(pool->fresh, b);
		uint64_t run_end = find_bit(pool->fresh, b, end, !is_fresh);
		uint64_t k = run_end - b;

		if (is_fresh) {
			/* Never part of a committed state: reusable now. */
			clear_range(pool->fresh, b, k);
			clear_range(pool->avail, b, k);
			pool->avail_used -= k;
			if (b < pool->hint)
				pool->hint = b;
		} else {
			/* Still referenced by the last commit: reusable only
			 * once the next commit is durable. */
			add_pending(pool, b, k); /* cannot fail: room reserved */
			pool->pending_blocks += k;
		}
		b = run_end;
	}
	clear_range(pool->persist, start, n);
	pool->used_blocks -= n;
	touch_pages(pool, start, n);
	for (b = start; b < end; b++)
		rfs_cache_drop(pool, b);
	return 0;
}

bool rfs_block_allocated(const rfs_pool *pool, uint64_t blocknr)
{
	RFS_ASSERT_LOCK(rfs_pool_holds_lock(pool));
	if (blocknr >= pool->total_blocks)
		return false;
	return rfs_bit_test(pool->persist, blocknr);
}

static int cmp_extent(const void *a, const void *b)
{
	uint64_t x = ((const struct rfs_extent *)a)->start;
	uint64_t y = ((const struct rfs_extent *)b)->start;

	return x < y ? -1 : x > y;
}

/*
 * The commit that freed the pending blocks is durable, so nothing still
 * needs their contents: give runs of at least PUNCH_MIN_BLOCKS back to the
 * backing filesystem, so a pool file shrinks when files are deleted.
 * Short runs (mostly shadowed tree nodes, reused soon) are left alone to
 * spare syscalls and fragmentation.  Best effort: a backing filesystem
 * without hole punching just keeps the space.
 *
 * A background commit (defer_punch) keeps its runs *warm* instead, and
 * the next commit (or rfs_pool_punch_warm, when there is nothing to
 * commit) punches what of them is still free.  Copy-on-write moves every
 * overwritten block, and the allocator, lowest block first, hands out the
 * blocks a commit freed to the writes after it: punched, each of them
 * costs the backing filesystem a page allocation and zeroing (tmpfs) or
 * a block allocation again; warm, the write lands on a page that is
 * there.  fio randwrite over a 256 MiB file frees nearly every block of
 * it in one 5 s interval (bench/README.md, "Parallel I/O").  A warm block
 * is free in the committed state like a punched one; only its backing
 * space comes back later.
 */
#define PUNCH_MIN_BLOCKS 16

/* Punch the runs of PUNCH_MIN_BLOCKS or more free blocks (clear in
 * avail: neither allocated, claimed nor freed in the running
 * transaction) inside [start, end).  -EOPNOTSUPP when the backing
 * filesystem cannot. */
static int punch_free(rfs_pool *pool, uint64_t start, uint64_t end)
{
	uint64_t pos = start;

	while (pos < end) {
		uint64_t s = find_bit(pool->avail, pos, end, false);
		uint64_t e = find_bit(pool->avail, s, end, true);

		if (e - s >= PUNCH_MIN_BLOCKS &&
		    rfs_io_punch(&pool->io, s << RFS_BLOCK_SHIFT, (e - s) << RFS_BLOCK_SHIFT) ==
			    -EOPNOTSUPP)
			return -EOPNOTSUPP;
		pos = e;
	}
	return 0;
}

static void warm_forget(rfs_pool *pool)
{
	pool->nwarm = 0;
	atomic_store(&pool->warm_blocks, 0);
}

void rfs_alloc_punch_warm(rfs_pool *pool)
{
	RFS_ASSERT_LOCK(rfs_pool_holds_gate(pool));
	for (size_t i = 0; i < pool->nwarm; i++)
		if (punch_free(pool, pool->warm[i].start,
			       pool->warm[i].start + pool->warm[i].n) == -EOPNOTSUPP)
			break;
	warm_forget(pool);
}

/* Keep run [start, start+n) warm; false when there is no memory for it
 * (the caller punches it now). */
static bool warm_add(rfs_pool *pool, uint64_t start, uint64_t n)
{
	if (pool->nwarm == pool->warm_cap) {
		size_t cap = pool->warm_cap ? pool->warm_cap * 2 : 64;
		struct rfs_extent *p = realloc(pool->warm, cap * sizeof(*p));

		if (!p)
			return false;
		pool->warm = p;
		pool->warm_cap = cap;
	}
	pool->warm[pool->nwarm++] = (struct rfs_extent){ start, n };
	atomic_fetch_add(&pool->warm_blocks, n);
	return true;
}

void rfs_alloc_punch_freed(rfs_pool *pool)
{
	size_t n = pool->npending, i = 0;

	/* The commit's write-out, gen durable: pending is the gate's (only
	 * writers change it) and nothing the live state names is punched. */
	RFS_ASSERT_LOCK(rfs_pool_holds_gate(pool));

	if (pool->io.crashsim || pool->io.is_bdev)
		return;
	/* The warm runs of the commit before, first: this commit's frees
	 * are still in avail, so only blocks free before it are punched. */
	rfs_alloc_punch_warm(pool);
	if (!n)
		return;
	qsort(pool->pending, n, sizeof(*pool->pending), cmp_extent);
	while (i < n) {
		uint64_t start = pool->pending[i].start;
		uint64_t end = start + pool->pending[i].n;
		for (i++; i < n && pool->pending[i].start == end; i++)
			end += pool->pending[i].n;
		if (end - start < PUNCH_MIN_BLOCKS)
			continue;
		if (pool->defer_punch && warm_add(pool, start, end - start))
			continue;
		if (rfs_io_punch(&pool->io, start << RFS_BLOCK_SHIFT,
				 (end - start) << RFS_BLOCK_SHIFT) == -EOPNOTSUPP)
			return;
	}
}

void rfs_alloc_durable(rfs_pool *pool, uint64_t gen)
{
	/* Gate held: fresh, avail, avail_used and hint are only looked at by
	 * writers (readers use persist, used_blocks and pending_blocks), so
	 * this O(pages touched + frees) part needs no write lock. */
	RFS_ASSERT_LOCK(rfs_pool_holds_gate(pool) && rfs_pool_holds_lock(pool));
	/* Fresh bits can only be set in pages touched by this transaction. */
	for (uint64_t p = 0; p < pool->bitmap_blocks; p++) {
		uint64_t w0, nw;

		if (pool->page_gen[p] != gen)
			continue;
		w0 = p * RFS_WORDS_PER_PAGE;
		nw = pool->nwords - w0 < RFS_WORDS_PER_PAGE ? pool->nwords - w0
							      : RFS_WORDS_PER_PAGE;
		memset(pool->fresh + w0, 0, nw * 8);
	}
	for (size_t i = 0; i < pool->npending; i++) {
		struct rfs_extent *e = &pool->pending[i];

		clear_range(pool->avail, e->start, e->n);
		pool->avail_used -= e->n;
		if (e->start < pool->hint)
			pool->hint = e->start;
	}
}

void rfs_alloc_committed(rfs_pool *pool)
{
	RFS_ASSERT_LOCK(rfs_pool_holds_wrlock(pool));
	pool->npending = 0;
	pool->pending_blocks = 0;
	pool->full_bitmap_write = false;
}

void rfs_pool_fail_meta_allocs_after(rfs_pool *pool, uint64_t n)
{
	rfs_pool_wrlock(pool);
	pool->meta_fail_after = n;
	rfs_pool_unlock(pool);
}

void rfs_pool_note_change(rfs_pool *pool)
{
	RFS_ASSERT_LOCK(rfs_pool_holds_wrlock(pool));
	pool->changes++;
}

uint64_t rfs_pool_changes(const rfs_pool *pool)
{
	RFS_ASSERT_LOCK(rfs_pool_holds_wrlock(pool));
	return pool->changes;
}

void rfs_pool_note_item(rfs_pool *pool)
{
	RFS_ASSERT_LOCK(rfs_pool_holds_wrlock(pool));
	pool->items++;
}

uint64_t rfs_pool_items(const rfs_pool *pool)
{
	RFS_ASSERT_LOCK(rfs_pool_holds_wrlock(pool));
	return pool->items;
}

void rfs_pool_items_set(rfs_pool *pool, uint64_t v)
{
	RFS_ASSERT_LOCK(rfs_pool_holds_wrlock(pool));
	pool->items = v;
}
