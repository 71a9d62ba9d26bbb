/*
 * The pool mapped read-only, for data reads (issue 9, "Parallel I/O").
 *
 * A 4 KiB READ costs the daemon three system calls: read(2) of the
 * request from /dev/fuse, pread(2) of the block from the pool, writev(2)
 * of the reply.  On the paravirtualized machines these benchmarks run on
 * a system call is the dearest thing a request does (bench/README.md,
 * "Session 15"), so data blocks are copied out of a shared read-only
 * mapping of the whole pool instead: one memcpy, no call into the
 * kernel once the page is mapped.  The mapping shows the page cache the
 * pool's pwrite(2)s fill, so it is never stale, and a pool on a block
 * device is mapped the same way.
 *
 * What pread(2) reports as an error, a mapping reports as SIGBUS: a page
 * past the end of the file (the pool file cut short behind the daemon's
 * back), a disk's read error, a poisoned page.  So every copy runs under
 * a guard: a SIGBUS handler that, in a thread whose copy is under way,
 * jumps back to rfs_io_map_copy, which answers false, and the caller
 * reads the same bytes with pread(2), which says what went wrong as
 * before.  A SIGBUS anywhere else goes to the handler that was there
 * before, or kills the process as it would have.
 *
 * Mapping a page costs more than a pread(2) of it here (a page table
 * entry is dear in this guest: a fault per 4 KiB page made reading a
 * freshly written 1 GiB file once 3 times as slow as pread(2), and
 * madvise(MADV_POPULATE_READ) of each 128 KiB read still 1.8 times), and
 * pays only when the block is read again.  So the map remembers, two
 * bits per block (io->seen), which blocks were read before and which
 * it has mapped: a block's first read is a pread(2), its second maps its
 * range with one MADV_POPULATE_READ, and later ones are a memcpy.  A file
 * read once (cp, a backup) costs what it did; a working set read over
 * and over in small reads (RFS_MAP_MAX_BLOCKS) costs no system call beyond
 * the request's own; large reads always use pread(2).  The bits are
 * hints: a page unmapped since (a punched hole, reclaim) faults once in
 * the copy and is mapped again.
 *
 * Only blocks below the file's known length are copied from the map (a
 * pool file grows as it fills); the rest is read with pread(2), which
 * gives zeros there.
 */
#include "pool/pool_internal.h"

#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* The copy under way in this thread, NULL when none: written before and
 * after the copy, read by the signal handler (volatile: the compiler
 * must neither drop nor move the stores around the memcpy). */
static _Thread_local sigjmp_buf *volatile guard;

/* The SIGBUS disposition ours replaced, for the faults that are not a
 * copy's; under guard_lock, and read by the handler (which runs only
 * once ours is installed, after the write). */
static struct sigaction prev_bus;
static pthread_mutex_t guard_lock = PTHREAD_MUTEX_INITIALIZER;

/* Blocks per leaf of io->seen: a leaf is two 64 KiB bitmaps (read
 * before, mapped) of 2 GiB of pool, allocated when a block of it is
 * first read. */
#define SEEN_LEAF_BITS (1u << 19)
#define SEEN_LEAF_WORDS (SEEN_LEAF_BITS / 64)
enum { SEEN_READ = 0, SEEN_MAPPED = SEEN_LEAF_WORDS }; /* word offsets */

/* True when every block of [b0, b1] has the bit of kind (SEEN_READ,
 * SEEN_MAPPED). */
static bool seen_all(const struct rfs_io *io, uint64_t b0, uint64_t b1, unsigned kind)
{
	for (uint64_t b = b0; b <= b1; b++) {
		uint64_t *leaf = atomic_load_explicit(&io->seen[b / SEEN_LEAF_BITS],
						      memory_order_acquire);
		uint64_t w = b % SEEN_LEAF_BITS;
		if (!leaf || !(atomic_load_explicit((_Atomic uint64_t *)&leaf[kind + w / 64],
						    memory_order_relaxed) &
			       (1ull << (w % 64))))
			return false;
	}
	return true;
}

/* Set the bits of kind for [b0, b1]; a leaf that cannot be allocated
 * stays clear (those blocks are read with pread(2): slower, not wrong). */
static void seen_set(struct rfs_io *io, uint64_t b0, uint64_t b1, unsigned kind)
{
	for (uint64_t b = b0; b <= b1; b++) {
		_Atomic(uint64_t *) *slot = &io->seen[b / SEEN_LEAF_BITS];
		uint64_t *leaf = atomic_load_explicit(slot, memory_order_acquire);
		if (!leaf) {
			uint64_t *fresh = calloc(2 * SEEN_LEAF_WORDS, sizeof(uint64_t));
			if (!fresh)
				continue;
			if (atomic_compare_exchange_strong(slot, &leaf, fresh))
				leaf = fresh;
			else
				free(fresh); /* another thread's came first: leaf */
		}
		uint64_t w = b % SEEN_LEAF_BITS;
		atomic_fetch_or_explicit((_Atomic uint64_t *)&leaf[kind + w / 64], 1ull << (w % 64),
					 memory_order_relaxed);
	}
}

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
	sigjmp_buf *g = guard;
	if (g) {
		guard = NULL;
		/* SA_NODEFER left SIGBUS unblocked: nothing to restore. */
		siglongjmp(*g, 1);
	}
	/* SIG_DFL and SIG_IGN are values of the handler whatever the
	 * flags say: never called. */
	if (prev_bus.sa_handler == SIG_DFL || prev_bus.sa_handler == SIG_IGN) {
		/* As without us: the faulting access runs again and the
		 * default action ends the process (an ignored fault cannot be
		 * survived). */
		struct sigaction dfl = {.sa_handler = SIG_DFL};
		sigemptyset(&dfl.sa_mask);
		sigaction(SIGBUS, &dfl, NULL);
		return;
	}
	if (prev_bus.sa_flags & SA_SIGINFO)
		prev_bus.sa_sigaction(sig, si, uc);
	else
		prev_bus.sa_handler(sig);
}

static int install_guard(void)
{
	struct sigaction cur, sa = {.sa_sigaction = on_sigbus, .sa_flags = SA_SIGINFO | SA_NODEFER};
	int ret = 0;
	sigemptyset(&sa.sa_mask);
	pthread_mutex_lock(&guard_lock);
	if (sigaction(SIGBUS, NULL, &cur))
		ret = -errno;
	else if (!(cur.sa_flags & SA_SIGINFO) || cur.sa_sigaction != on_sigbus) {
		prev_bus = cur;
		if (sigaction(SIGBUS, &sa, NULL))
			ret = -errno;
	}
	pthread_mutex_unlock(&guard_lock);
	return ret;
}

void rfs_io_map(struct rfs_io *io, uint64_t len)
{
	/* A pool past 64 TiB would take half of a 47-bit address space
	 * (and its io->seen array megabytes): read with pread(2). */
	if (len == 0 || len > SIZE_MAX || len > (uint64_t)1 << 46)
		return;
	int err = install_guard();
	if (err) {
		rfs_log(RFS_LOG_DEBUG, "%s: no SIGBUS guard (%s): data is read with pread(2)",
			io->path, strerror(-err));
		return;
	}
	/* Without MADV_POPULATE_READ (Linux 5.14) every first read of a
	 * page would fault: slower than pread(2) (a zero length tests the
	 * advice and nothing else). */
	if (madvise(NULL, 0, MADV_POPULATE_READ)) {
		rfs_log(RFS_LOG_DEBUG, "%s: no MADV_POPULATE_READ (%s): data is read with pread(2)",
			io->path, strerror(errno));
		return;
	}
	size_t leaves = (size_t)((len / RFS_BLOCK_SIZE + SEEN_LEAF_BITS - 1) / SEEN_LEAF_BITS);
	io->seen = calloc(leaves, sizeof(*io->seen));
	if (!io->seen)
		return;
	io->seen_leaves = leaves;
	void *p = mmap(NULL, (size_t)len, PROT_READ, MAP_SHARED, io->fd, 0);
	if (p == MAP_FAILED) {
		/* Not an error: pread(2) reads what the map would have. */
		rfs_log(RFS_LOG_DEBUG, "%s: cannot map the pool (%s): data is read with pread(2)",
			io->path, strerror(errno));
		rfs_io_unmap(io);
		return;
	}
	/* The pool's pages belong in no core dump of the daemon. */
	(void)madvise(p, (size_t)len, MADV_DONTDUMP);
	io->map = p;
	io->map_len = len;
}

void rfs_io_unmap(struct rfs_io *io)
{
	if (io->map)
		munmap((void *)io->map, (size_t)io->map_len);
	for (size_t i = 0; i < io->seen_leaves; i++)
		free(atomic_load(&io->seen[i]));
	free(io->seen);
	io->seen = NULL;
	io->seen_leaves = 0;
	io->map = NULL;
	io->map_len = 0;
}

bool rfs_io_map_copy(struct rfs_io *io, uint64_t off, void *buf, size_t len)
{
	if (!io->map || len == 0 || off > io->map_len || len > io->map_len - off ||
	    off + len > atomic_load_explicit(&io->file_size, memory_order_relaxed))
		return false;
	uint64_t b0 = off / RFS_BLOCK_SIZE, b1 = (off + len - 1) / RFS_BLOCK_SIZE;
	if (b1 - b0 >= RFS_MAP_MAX_BLOCKS)
		return false;
	if (!seen_all(io, b0, b1, SEEN_MAPPED)) {
		/* Read before: mapped now, for the reads to come. */
		if (!seen_all(io, b0, b1, SEEN_READ)) {
			seen_set(io, b0, b1, SEEN_READ);
			return false;
		}
		/* EFAULT past the end of the file, ENOMEM, EINTR...: pread
		 * says what it is. */
		if (madvise((void *)(io->map + b0 * RFS_BLOCK_SIZE),
			    (size_t)(b1 - b0 + 1) * RFS_BLOCK_SIZE, MADV_POPULATE_READ))
			return false;
		seen_set(io, b0, b1, SEEN_MAPPED);
	}
	sigjmp_buf env;
	/* No signal mask saved: that would be a system call per copy. */
	if (sigsetjmp(env, 0)) {
		rfs_log(RFS_LOG_WARN, "%s: the mapped read of %zu bytes at offset %llu faulted (SIGBUS): read with pread(2) instead",
			io->path, len, (unsigned long long)off);
		atomic_fetch_add_explicit(&io->map_faults, 1, memory_order_relaxed);
		return false;
	}
	guard = &env;
	memcpy(buf, io->map + off, len);
	guard = NULL;
	return true;
}
