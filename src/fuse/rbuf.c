/*
 * Each worker thread reads into a buffer of its own, kept between
 * requests and freed when the thread ends: a malloc and free of every
 * read's size went through glibc's shared arena lock (sizes above its
 * per-thread cache) for every 4 KiB read.
 *
 * The buffer starts on a page: the kernel takes a reply's data from the
 * writev to /dev/fuse page by page (pins each source page, copies from
 * it), and a 4 KiB read at offset 24 of a page (behind malloc's header
 * and the buffer's own) spanned two pages: two pins, two copies and two
 * unpins per READ (docs/ARCHITECTURE.md, "FUSE workers").
 *
 * No lock: each thread has its own (a thread-specific key, whose
 * destructor frees it).
 */
#include "fuse/rbuf.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#define RBUF_MIN (128u << 10)

static pthread_key_t rbuf_key;
static pthread_once_t rbuf_once = PTHREAD_ONCE_INIT;
static _Thread_local size_t t_cap; /* bytes of this thread's buffer */

static void rbuf_key_make(void)
{
	pthread_key_create(&rbuf_key, free);
}

char *rfs_fuse_read_buf(size_t size)
{
	pthread_once(&rbuf_once, rbuf_key_make);
	char *b = pthread_getspecific(rbuf_key);
	if (b && t_cap >= size)
		return b;
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	size_t cap = size < RBUF_MIN ? RBUF_MIN : size;
	if (cap > SIZE_MAX - page)
		return NULL;
	cap = (cap + page - 1) / page * page; /* aligned_alloc: a multiple */
	char *nb = aligned_alloc(page, cap);
	if (!nb)
		return NULL;
	if (pthread_setspecific(rbuf_key, nb)) {
		free(nb);
		return NULL;
	}
	free(b);
	t_cap = cap;
	return nb;
}
