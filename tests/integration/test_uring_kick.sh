#!/usr/bin/env bash
# The kick of FUSE over io_uring (src/fuse/uring.c, kick_queue).  When a
# request holds the last free ring entry of its CPU's queue (a blocking
# watch holds a write), the daemon starts a new entry for that queue; a
# request the queue took before the new entry was registered is fetched
# only by a commit of one of the queue's entries (fs/fuse/dev_uring.c),
# so the daemon sends one request of its own from that CPU ("the kick"),
# which the new entry takes and whose commit fetches the stranded one.
# A daemon confined by a cpuset that leaves out the queue's CPU cannot
# move there (sched_setaffinity says EINVAL; an affinity set by taskset
# does not stop it: a thread may widen its own), so its kick went to
# another queue and the stranded request waited until the held ones
# ended.  Such a daemon is now refused io_uring at INIT (the log says
# why) and serves over /dev/fuse.  Suspected too, and not so: a daemon
# that may not read its mount's root (non-root, or without
# CAP_DAC_OVERRIDE; the root another user's, mode 0711) still kicks,
# since with default_permissions the kernel refreshes the root's
# attributes (a GETATTR, from the kicking CPU) before it refuses the
# kick's GETXATTR; that case is checked here as well.
# The window is made to last: an LD_PRELOAD shim holds each ring
# thread's first io_uring_submit (its registration) while a file exists.
# A read of an xattr from the queue's CPU is sent in that window and
# must be answered while the write is still held (20 s: a hang is the
# failure; no timing threshold).  A plain root daemon is checked too.
# The kernel parameter is put back as it was.
source "$(dirname "$0")/lib.bash"
P=/sys/module/fuse/parameters/enable_uring
if [ ! -w "$P" ]; then
	echo "this kernel has no FUSE over io_uring ($P): skipping"
	exit 77
fi
nq=$(getconf _NPROCESSORS_CONF)
if [ "$nq" -lt 2 ] || ! taskset -c 1 true 2>/dev/null; then
	echo "needs CPU 1 (a queue other than the cpuset's CPU 0): skipping"
	exit 77
fi
# Overlapping runs take turns with the parameter (lib.bash).
rfs_uring_param_lock
OLD=$(cat "$P")
rfs_pool_setup 256M
chmod 1777 "$SCRATCH" # the non-root daemon and its callers write here too
CPUSET=
cleanup_all() {
	held_watch_release
	rfs_cleanup_kick
	[ -n "$CPUSET" ] && rmdir "$CPUSET" 2>/dev/null
	echo "$OLD" >"$P"
}
rfs_cleanup_kick() {
	[ -n "${RPID:-}" ] && kill "$RPID" 2>/dev/null
	[ -n "${W1PID:-}" ] && kill "$W1PID" 2>/dev/null
	[ -n "${W2PID:-}" ] && kill "$W2PID" 2>/dev/null
	[ -n "${HOLD:-}" ] && rm -f "$HOLD"
	rfs_cleanup
}
trap cleanup_all EXIT

cat >"$SCRATCH/shim.c" <<'C'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>
struct io_uring;
static __thread int seen;
/* A ring thread's first submit is its entry's registration: held while
 * the file $RFS_SHIM_HOLD exists. */
int io_uring_submit(struct io_uring *ring)
{
	static int (*real)(struct io_uring *);
	if (!real)
		real = (int (*)(struct io_uring *))dlsym(RTLD_NEXT, "io_uring_submit");
	char name[16] = "";
	prctl(PR_GET_NAME, name);
	if (!seen && !strncmp(name, "rfs-ring", 8)) {
		seen = 1;
		const char *h = getenv("RFS_SHIM_HOLD");
		while (h && access(h, F_OK) == 0)
			usleep(10000);
	}
	return real(ring);
}
C
if ! ${CC:-cc} -O2 -shared -fPIC -o "$SCRATCH/shim.so" "$SCRATCH/shim.c" -ldl; then
	echo "cannot build the io_uring_submit shim: skipping"
	exit 77
fi
chmod 755 "$SCRATCH/shim.so"
HOLD=$SCRATCH/hold_registration

ring_threads_are() { test "$(ring_threads)" -eq "$1"; }
# In the kernel, waiting for the daemon's answer.
waits_on_fuse() { grep -q fuse "/proc/$1/stack" 2>/dev/null; }
gone() { ! kill -0 "$1" 2>/dev/null; }

# mount_as LABEL PREFIX...: the daemon, started through PREFIX (a user
# switch, a cpuset), with the shim; -o threads=2: two entries per queue.
mount_as() {
	local label=$1
	shift
	: >"$SCRATCH/daemon.log"
	chmod 666 "$SCRATCH/daemon.log"
	"$@" env LD_PRELOAD="$SCRATCH/shim.so" RFS_SHIM_HOLD="$HOLD" \
		"$RFS_BIN" mount -f -o threads=2 "$POOL" "$MNT" 2>>"$SCRATCH/daemon.log" &
	DAEMON_PID=$!
	wait_until 20 grep -q " $MNT fuse" /proc/mounts || cat "$SCRATCH/daemon.log"
	check "$label: mounted" grep -q " $MNT fuse" /proc/mounts
}

# stranded LABEL AS...: two writes from CPU 1 held by a blocking watch
# take queue 1's two entries; with the new entry's registration held, a
# GETXATTR from CPU 1 (AS: the user to run as) is queued; then the
# registration goes on and the GETXATTR must be answered before the
# write is let go.
stranded() {
	local label=$1
	shift
	local base
	base=$(ring_threads)
	check "$label: two ring threads per queue ($base)" test "$base" -eq $((2 * nq))
	# held_watch_start, run as the user too.
	rm -f "$SCRATCH/go" "$SCRATCH/in_exec"
	"$@" "$RFS_BIN" watch --blocking --timeout 600000 --exec \
		"touch '$SCRATCH/in_exec'; while [ ! -e '$SCRATCH/go' ] && [ -d '$SCRATCH' ]; do sleep 0.05; done" \
		"$MNT/d" >"$SCRATCH/wout" 2>"$SCRATCH/werr" &
	WPID=$!
	sleep 1 # the mark is set (its absence shows as a write not held)
	touch "$HOLD"
	"$@" taskset -c 1 sh -c "echo new >'$MNT/d/w1'" &
	W1PID=$!
	"$@" taskset -c 1 sh -c "echo new >'$MNT/d/w2'" &
	W2PID=$!
	check "$label: the subscriber was asked (the write is held)" wait_until 20 test -e "$SCRATCH/in_exec"
	check "$label: the second held write got a new ring thread" wait_until 20 ring_threads_are $((base + 1))
	"$@" taskset -c 1 getfattr -n user.k "$MNT/d/r" >"$SCRATCH/r.out" 2>&1 &
	RPID=$!
	check "$label: the GETXATTR from CPU 1 waits for an entry" wait_until 20 waits_on_fuse "$RPID"
	rm -f "$HOLD"
	if wait_until 20 gone "$RPID"; then
		check "$label: the GETXATTR is answered while the write is held" true
	else
		check "$label: the GETXATTR is answered while the write is held (it waited for an entry that was never kicked)" false
	fi
	check "$label: ... with the value" grep -q 'user.k="v"' "$SCRATCH/r.out"
	check "$label: the writes are still held" kill -0 "$W1PID" "$W2PID"
	held_watch_release
	check "$label: the writes land after the release" wait_until 20 bash -c "! kill -0 $W1PID $W2PID 2>/dev/null"
	wait "$W1PID"
	local r1=$?
	wait "$W2PID"
	check "$label: ... with exit status 0" test "$r1$?" = 00
	W1PID= W2PID=
	wait "$RPID" 2>/dev/null
	RPID=
}

umount_daemon() {
	fusermount3 -u "$MNT" 2>/dev/null || { abort_conn "$(fuse_conn_of "$MNT")"; umount -l "$MNT" 2>/dev/null; }
	wait_until 30 gone "$DAEMON_PID"
	wait "$DAEMON_PID" 2>/dev/null
	DAEMON_PID=
}

echo Y >"$P"

# A plain root daemon.
mount_as root
mkdir "$MNT/d"
echo old >"$MNT/d/w1"
echo old >"$MNT/d/w2"
echo r >"$MNT/d/r"
setfattr -n user.k -v v "$MNT/d/r"
check "root: the daemon serves over io_uring" grep -q "FUSE over io_uring" "$SCRATCH/daemon.log"
stranded root
umount_daemon

# A daemon whose cpuset leaves out CPU 1 (cgroup v1 cpuset, or v2).
cg=
if [ -w /sys/fs/cgroup/cpuset/cgroup.procs ]; then
	cg=/sys/fs/cgroup/cpuset
elif grep -qw cpuset /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null; then
	cg=/sys/fs/cgroup
fi
if [ -n "$cg" ] && mkdir "$cg/rfs-kick-$$" 2>/dev/null; then
	CPUSET=$cg/rfs-kick-$$
	pfx=
	[ -e "$CPUSET/cpuset.cpus" ] && pfx=cpuset.
	echo 0 >"$CPUSET/${pfx}cpus"
	W1PID= W2PID= RPID=
	[ -e "$CPUSET/${pfx}mems" ] && cat "$cg/${pfx}mems" >"$CPUSET/${pfx}mems" 2>/dev/null
	mount_as cpuset sh -c "echo \$\$ >'$CPUSET/cgroup.procs' && exec \"\$@\"" sh
	if grep -q "FUSE over io_uring: " "$SCRATCH/daemon.log"; then
		stranded cpuset
	else
		check "cpuset: the log says io_uring was not offered, and why" \
			grep -q "io_uring not offered: this daemon may not run on CPU 1" "$SCRATCH/daemon.log"
		check "cpuset: no ring thread" ring_threads_are 0
		check "cpuset: requests from CPU 1 are served (over /dev/fuse)" \
			timeout -s KILL 20 taskset -c 1 getfattr -n user.k "$MNT/d/r"
	fi
	umount_daemon
	rmdir "$CPUSET" && CPUSET=
else
	echo "no cpuset controller to confine the daemon: that part skipped"
fi

# A daemon that may not read its mount's root: the root becomes uid
# 12345's, mode 0711, and the daemon runs without CAP_DAC_OVERRIDE and
# CAP_DAC_READ_SEARCH (for the kernel's check, as a non-root daemon;
# the callers stay root, whom a mount by root serves).
nodac=(setpriv --bounding-set=-dac_override,-dac_read_search)
if "${nodac[@]}" true 2>/dev/null; then
	mount_as setup
	chown 12345 "$MNT"
	chmod 0711 "$MNT"
	umount_daemon
	mount_as nodac "${nodac[@]}"
	check "nodac: the daemon serves over io_uring" grep -q "FUSE over io_uring" "$SCRATCH/daemon.log"
	check "nodac: the daemon may not read the root" \
		bash -c "! ${nodac[*]} ls '$MNT' >/dev/null 2>&1"
	stranded nodac
	umount_daemon
else
	echo "setpriv cannot drop capabilities: the part without CAP_DAC_OVERRIDE skipped"
fi
check "fsck clean" rfs_fsck
rfs_finish
