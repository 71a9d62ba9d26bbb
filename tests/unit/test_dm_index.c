/*
 * The index of queued writes (src/fs/file_delay_index.c) against a model:
 * random puts, replacements, gets and deletions over a few nodes, up to
 * the 2 * DM_BLOCKS live entries it is sized for, so that probe runs
 * are long, wrap past the table's end and are cut by backward-shift
 * deletions; a deletion naming an older pool block leaves the entry.
 */
#include "../common/testutil.h"

#include <stdlib.h>

#include "fs/file_claim.h"

#define NODES 4
#define SPAN (3 * DM_BLOCKS) /* file blocks per node */

/* Stand-ins for nodes: the index only compares and hashes pointers. */
static struct rfs_node *g_node[NODES];
static uint64_t g_model[NODES][SPAN]; /* pool block + 1, 0: none */

static tu_rng g_rng = {0x2545f4914f6cdd1dull}; /* testutil.h */

static uint64_t rnd(void)
{
	return tu_next(&g_rng);
}

static void check_all(const struct dm_index *x)
{
	for (unsigned n = 0; n < NODES; n++)
		for (uint64_t b = 0; b < SPAN; b++) {
			uint64_t p = 0;
			uint32_t cs = 0;
			bool have = dmx_get(x, g_node[n], b, &p, &cs);
			if (have != (g_model[n][b] != 0))
				fail_msg("node %u block %llu: %s, the model says %s", n,
					 (unsigned long long)b, have ? "found" : "missing",
					 g_model[n][b] ? "there" : "absent");
			if (have && (p + 1 != g_model[n][b] || cs != (uint32_t)(p * 7)))
				fail_msg("node %u block %llu: pool block %llu, want %llu", n,
					 (unsigned long long)b, (unsigned long long)p,
					 (unsigned long long)(g_model[n][b] - 1));
		}
}

static void test_against_model(void **state)
{
	(void)state;
	char *mem = malloc(NODES * 64);
	assert_non_null(mem);
	for (unsigned n = 0; n < NODES; n++)
		g_node[n] = (struct rfs_node *)(mem + 64 * n);
	struct dm_index *x = dmx_new();
	assert_non_null(x);
	size_t live = 0;
	uint64_t pool = 1000;
	for (unsigned round = 0; round < 6; round++) {
		/* Fill towards the limit, some blocks written twice. */
		while (live < 2 * DM_BLOCKS - 64) {
			unsigned n = (unsigned)(rnd() % NODES);
			uint64_t b = rnd() % SPAN, p = pool++;
			if (!g_model[n][b])
				live++;
			g_model[n][b] = p + 1;
			dmx_put(x, g_node[n], b, p, (uint32_t)(p * 7));
		}
		check_all(x);
		/* Delete most: some by an older pool block (stays). */
		for (unsigned n = 0; n < NODES; n++)
			for (uint64_t b = 0; b < SPAN; b++) {
				if (!g_model[n][b] || rnd() % 8 == 0)
					continue;
				uint64_t p = g_model[n][b] - 1;
				if (rnd() % 5 == 0) {
					dmx_del(x, g_node[n], b, p - 1); /* not its block */
					continue;
				}
				dmx_del(x, g_node[n], b, p);
				g_model[n][b] = 0;
				live--;
			}
		check_all(x);
	}
	dmx_free(x);
	free(mem);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_against_model),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
