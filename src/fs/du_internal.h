/*
 * Internal state of a du (rfs_du_*), shared by du.c (the walk and the
 * steps), du_graph.c (shared nodes and blocks met, and the figures) and
 * du_links.c (hard-linked inodes).  A du is used by one thread at a time
 * (see fs.h), so its fields need no lock; the pool's read lock is held
 * while the walk reads trees.
 */
#ifndef RFS_DU_INTERNAL_H
#define RFS_DU_INTERNAL_H

#include "fs/fs_internal.h"

#define DU_BS RFS_BLOCK_SIZE

/* Fixed vertices. */
enum {
	V_OUTSIDE = 0, /* pointers held outside PATH: never exclusive */
	V_PATH = 1,    /* PATH's record: exclusive unless a node above it is shared */
	V_OWNED = 2,   /* held outside PATH's record, dropped with PATH: link
			* records of inodes whose every name is below PATH;
			* an embedded PATH's entries in unshared leaves */
	V_FIXED = 3,
};

struct vertex {
	uint64_t blocknr; /* 0 for the fixed ones */
	uint64_t count;   /* its refcount when met */
	uint64_t data;    /* data blocks of count 1 hanging below it */
	uint64_t meta;    /* nodes of count 1 below it, itself included */
	uint64_t got;     /* fixpoint: pointers from exclusive vertices */
	bool done;        /* its first (counting) visit is over */
	bool excl;
};

/* A pointer from vertex `from` to vertex `to`. */
struct edge {
	uint32_t from, to;
};

/* A run of data blocks with count >= 2 named by one extent. */
struct srun {
	uint64_t start, n, count;
	uint32_t from;
};

/* One tree level of the walk: PATH's tree, a directory or file below. */
struct dlevel {
	struct rfs_walk_pos pos;
	bool in_item; /* the item at pos (RFS_WALK_AT) has its subtree in progress */
	bool dir;     /* a directory's entries tree */
	struct dirloc loc; /* dir: where in it the directory's entries are */
	uint64_t vol; /* dir: volume of the inodes it holds */
};

/* Names of a hard-linked inode met below PATH. */
struct dlink {
	uint64_t vol, ino, names;
};

/* What a tree node hangs below: a vertex, and whether this is a second
 * pass through it (nothing counted). */
struct ctx {
	uint32_t v;
	bool shadow;
};

enum { PH_NS, PH_LINKS, PH_DONE };

struct rfs_du {
	rfs_fs *fs;
	rfs_pool *pool;
	rfs_nodeid node;
	struct rfs_du_stats st;
	uint64_t ops0; /* fs->ops when the walk began */
	int phase;
	bool started;
	bool path_shared; /* a node above PATH's record is shared */
	int fatal;        /* -ENOMEM etc.: the walk cannot go on */
	int64_t budget;
	/* Fresh work was done in this step: only then may it pause (the
	 * resumed path alone can eat a small budget). */
	bool progressed;

	struct dlevel **lv;
	int nlv, cur;

	struct ctx *cs; /* stack of contexts, one per node entered */
	size_t ncs, capcs;

	struct vertex *v;
	size_t nv, capv;
	uint32_t *vidx; /* open addressing: blocknr -> index + 1 */
	size_t vidx_cap;
	struct edge *e;
	size_t ne, cape;
	struct srun *runs;
	size_t nruns, capruns;

	struct dlink *links; /* open addressing by (vol, ino); sorted for PH_LINKS */
	size_t links_cap, nlinks;
	bool links_sorted;
	size_t link_i;      /* PH_LINKS: the next link to walk */
	bool link_in_item;  /* its file tree is in progress... */
	uint32_t link_from; /* ...below this vertex */
	/* Records in a link-table leaf that volumes share: (leaf, ino)
	 * pairs whose file tree was walked (open addressing). */
	struct gkey {
		uint64_t leaf, ino;
	} *groups;
	size_t groups_cap, ngroups;
	bool opened; /* PATH held open (rfs_fs_open_node) */

	struct rfs_irec rec; /* scratch for decoding records */
};

/* ---- du_graph.c ---- */
size_t du_hash64(uint64_t v, size_t cap);
/* Room for n + 1 elements of size bytes in *p (capacity *cap). */
int du_grow(void **p, size_t *cap, size_t n, size_t size);
/* Index + 1 of the vertex of blocknr, 0 when there is none. */
uint32_t du_vfind(const rfs_du *d, uint64_t blocknr);
/* A new vertex for blocknr (0: a fixed one) with its count; index + 1,
 * or 0 with d->fatal set. */
uint32_t du_vadd(rfs_du *d, uint64_t blocknr, uint64_t count);
/* A pointer from vertex from to vertex to (d->fatal on failure). */
void du_edge_add(rfs_du *d, uint32_t from, uint32_t to);
/* The context stack: one entry per node entered. */
void du_ctx_push(rfs_du *d, uint32_t v, bool shadow);
struct ctx du_ctx_top(const rfs_du *d);
/* Blocks [start, start + n) named by an extent below vertex v. */
int du_count_extent(rfs_du *d, uint32_t v, uint64_t start, uint64_t n);
/* The walk is over: solve the graph, set the figures in d->st. */
int du_finish(rfs_du *d);

/* ---- du_links.c ---- */
/* One more name of hard-linked inode ino of volume vol below PATH. */
int du_link_add(rfs_du *d, uint64_t vol, uint64_t ino);
/* Walk the hard-linked inodes met; 1 when the budget ran out, 0 when
 * done (phase -> PH_DONE), or a negative errno. */
int du_links_step(rfs_du *d);

/* ---- du.c ---- */
/* Walk the tree at root as level l (its position kept in d->lv[l]); dir:
 * the entries of the directory whose tree it is, NULL for a file's tree.
 * 1 when paused, 0 when done, or a negative errno. */
int du_walk_level(rfs_du *d, int l, uint64_t root, const struct dirloc *dir, uint64_t vol);

#endif
