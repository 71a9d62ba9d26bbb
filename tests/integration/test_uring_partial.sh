#!/usr/bin/env bash
# FUSE over io_uring when a CPU's queue cannot get a ring thread
# (src/fuse/uring.c, rings_start).  Once the kernel took io_uring at
# INIT it answers no request until every CPU's queue has a registered
# ring entry; the daemon offered io_uring first and started its ring
# threads after, so when one could not start (no memory for its buffer,
# more CPUs than RFS_FUSE_URING_ENTRIES_MAX) every request on the mount
# waited for good, while the log said "the others' requests go through
# /dev/fuse".  Now the threads start before the INIT reply and io_uring
# is offered only when every queue has one; else they end and the
# mount serves over /dev/fuse, saying so.  The fault: an LD_PRELOAD shim
# fails every ring entry's buffer allocation (posix_memalign of the
# entry's size) but the first, so with -o threads=2 on two or more CPUs
# queue 0 has its thread and the others none.  A hang is the failure
# (each request gets 20 s; no timing threshold).  The kernel parameter
# is put back as it was.
source "$(dirname "$0")/lib.bash"
P=/sys/module/fuse/parameters/enable_uring
if [ ! -w "$P" ]; then
	echo "this kernel has no FUSE over io_uring ($P): skipping"
	exit 77
fi
if [ "$(getconf _NPROCESSORS_CONF)" -lt 2 ]; then
	echo "one CPU, one queue: its one entry is every queue's: skipping"
	exit 77
fi
# Overlapping runs take turns with the parameter (lib.bash).
rfs_uring_param_lock
OLD=$(cat "$P")
rfs_pool_setup 256M
trap 'rfs_cleanup; echo "$OLD" >"$P"' EXIT

# struct fuse_uring_req_header (288 bytes) and the 1 MiB + 4 KiB payload.
ENTSIZE=$((288 + (1 << 20) + 4096))
cat >"$SCRATCH/shim.c" <<C
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stddef.h>
static int seen;
int posix_memalign(void **p, size_t align, size_t n)
{
	static int (*real)(void **, size_t, size_t);
	if (!real)
		real = (int (*)(void **, size_t, size_t))dlsym(RTLD_NEXT, "posix_memalign");
	if (n == $ENTSIZE && __atomic_fetch_add(&seen, 1, __ATOMIC_RELAXED) > 0)
		return ENOMEM;
	return real(p, align, n);
}
C
if ! ${CC:-cc} -O2 -shared -fPIC -o "$SCRATCH/shim.so" "$SCRATCH/shim.c" -ldl; then
	echo "cannot build the posix_memalign shim: skipping"
	exit 77
fi

no_ring_threads() { test "$(ring_threads)" -eq 0; }

echo Y >"$P"
LD_PRELOAD=$SCRATCH/shim.so "$RFS_BIN" mount -f -o threads=2 "$POOL" "$MNT" 2>>"$SCRATCH/daemon.log" &
DAEMON_PID=$!
# /proc/mounts, not mountpoint(1): its stat would be the request that
# hangs.
check "mounted" wait_until 20 grep -q " $MNT fuse" /proc/mounts
conn=$(fuse_conn_of "$MNT")
if ! timeout -s KILL 20 bash -c "echo data >'$MNT/f'"; then
	check "the first request is answered (it waited for a ring that never came)" false
	abort_conn "$conn"
	rfs_finish
	exit 1
fi
check "the first request is answered" true
if ! grep -q "io_uring.*Cannot allocate memory" "$SCRATCH/daemon.log"; then
	echo "no ring entry allocation failed (another entry size?): skipping"
	cat "$SCRATCH/daemon.log"
	exit 77
fi
check "the log says io_uring was not offered, and why" \
	grep -q "io_uring not offered: .* got no ring thread" "$SCRATCH/daemon.log"
check "no ring thread is left ($(ring_threads))" wait_until 20 no_ring_threads
head -c 3000000 /dev/urandom >"$SCRATCH/a"
check "requests are served (a copy in and back)" \
	timeout -s KILL 20 bash -c "cp '$SCRATCH/a' '$MNT/a' && cmp '$SCRATCH/a' '$MNT/a'"
check "... from every CPU" timeout -s KILL 20 bash -c "for c in \$(seq 0 \$((\$(getconf _NPROCESSORS_ONLN) - 1))); do
	taskset -c \$c cat '$MNT/f' | grep -q data || exit 1; done"
"$RFS_BIN" sync "$MNT"
kill -TERM "$DAEMON_PID"
check "SIGTERM ends the daemon" wait_until 30 bash -c "! kill -0 $DAEMON_PID 2>/dev/null"
wait "$DAEMON_PID"
check "... with exit status 0" test $? -eq 0
DAEMON_PID=
fusermount3 -u "$MNT" 2>/dev/null
check "fsck clean" rfs_fsck
rfs_finish
