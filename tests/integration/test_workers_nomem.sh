#!/usr/bin/env bash
# A FUSE worker whose 1 MiB request buffer cannot be allocated: libfuse's
# fuse_session_receive_buf returns -ENOMEM, on which libfuse's own loop,
# and ours before, ended the whole mount (the daemon exited at its first
# request).  Now the worker backs off and retries while the others serve
# (src/util/workpool.c), and the daemon logs it.  The fault is
# injected into the daemon's own process: an LD_PRELOAD malloc fails the
# first allocations of libfuse's request-buffer size (256 pages and a
# header page: libfuse 3.14's se->bufsize); when no allocation of that
# size happens (another libfuse), the test is skipped.
source "$(dirname "$0")/lib.bash"
rfs_pool_setup 256M
BUFSIZE=$(( (256 + 1) * $(getconf PAGESIZE) ))
cat >"$SCRATCH/shim.c" <<C
#include <errno.h>
#include <stddef.h>
extern void *__libc_malloc(size_t);
static int fails = 6;
void *malloc(size_t n)
{
	if (n == $BUFSIZE && __atomic_fetch_sub(&fails, 1, __ATOMIC_RELAXED) > 0) {
		errno = ENOMEM;
		return NULL;
	}
	return __libc_malloc(n);
}
C
if ! ${CC:-cc} -O2 -shared -fPIC -o "$SCRATCH/shim.so" "$SCRATCH/shim.c"; then
	echo "cannot build the malloc shim: skipping"
	exit 77
fi
LD_PRELOAD=$SCRATCH/shim.so "$RFS_BIN" mount -f -o threads=2 "$POOL" "$MNT" 2>>"$SCRATCH/daemon.log" &
DAEMON_PID=$!
check "mounted" wait_until 20 mountpoint -q "$MNT"
head -c 1000000 /dev/urandom >"$SCRATCH/a"
check "a file copied in" cp "$SCRATCH/a" "$MNT/a"
if ! grep -q "failed to allocate read buffer" "$SCRATCH/daemon.log"; then
	echo "no allocation of $BUFSIZE bytes failed (not libfuse 3.14's buffer size?): skipping"
	exit 77
fi
check "the daemon survives its workers' failed buffer allocations" kill -0 "$DAEMON_PID"
check "... and the copy reads back from the mount" cmp "$SCRATCH/a" "$MNT/a"
check "... and it logged the shortage, naming the pool" \
	grep -q "$POOL: out of memory for a worker's next request" "$SCRATCH/daemon.log"
check "unmount" rfs_umount
check "fsck clean" rfs_fsck
rfs_finish
