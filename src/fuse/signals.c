/*
 * SIGTERM, SIGINT and SIGHUP: a request to stop serving, in place of
 * libfuse's fuse_set_signal_handlers.  libfuse's handler sets the
 * session's exit flag, and from then on fuse_session_receive_buf drops
 * every request it reads (it returns 0 after the read).  A worker may
 * wait inside fuse_lowlevel_notify_inval_inode until the kernel's
 * WRITEs of the file's dirty pages are answered (writeback cache): those
 * read after the flag were dropped, the notify never returned, and the
 * join of the workers waited for good.  Here the handler only notes the
 * request; the workers (workers.c) serve until no such wait is left and
 * then end (docs/ARCHITECTURE.md, "FUSE workers").
 */
#include "fuse/rfs_fuse.h"

#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>

/* Set by the handler (lock-free, so async-signal-safe); read anywhere. */
static atomic_bool g_stop;

static void on_stop(int sig)
{
	(void)sig;
	atomic_store(&g_stop, true);
}

static const int stop_signals[] = {SIGTERM, SIGINT, SIGHUP};

/* As libfuse: a signal somebody set to be ignored (nohup) stays so. */
static int set_one(int sig, void (*fn)(int), void (*only_over)(int))
{
	struct sigaction sa = {.sa_handler = fn}, old;
	sigemptyset(&sa.sa_mask);
	if (sigaction(sig, NULL, &old) == -1)
		return -1;
	if (old.sa_handler == only_over && sigaction(sig, &sa, NULL) == -1)
		return -1;
	return 0;
}

int rfs_fuse_signals_set(void)
{
	for (size_t i = 0; i < sizeof(stop_signals) / sizeof(stop_signals[0]); i++)
		if (set_one(stop_signals[i], on_stop, SIG_DFL))
			return -1;
	/* A client gone in the middle of a reply is the write's error. */
	return set_one(SIGPIPE, SIG_IGN, SIG_DFL);
}

void rfs_fuse_signals_remove(void)
{
	for (size_t i = 0; i < sizeof(stop_signals) / sizeof(stop_signals[0]); i++)
		set_one(stop_signals[i], SIG_DFL, on_stop);
	set_one(SIGPIPE, SIG_DFL, SIG_IGN);
}

bool rfs_fuse_stop_requested(void)
{
	return atomic_load(&g_stop);
}
