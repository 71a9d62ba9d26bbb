#!/usr/bin/env bash
# FUSE over io_uring (src/fuse/uring.c).  With the kernel's enable_uring
# set, the daemon takes its requests from per-CPU io_uring queues: the
# ring threads (named rfs-ring<queue>) serve them, data and metadata come
# back intact (1 MiB O_DIRECT writes and reads fill a ring buffer), the
# replies libfuse cannot give (O_TMPFILE) go through the ring too, a
# request a blocking watch holds gets a new ring entry in its place so
# the other requests of its CPU are still served, and umount, SIGTERM and
# -o nouring behave (and test_workers_inval.sh passes over the rings).
# Without enable_uring, -o uring says what to do and
# mounts over /dev/fuse.  The kernel parameter is put back as it was.
source "$(dirname "$0")/lib.bash"
P=/sys/module/fuse/parameters/enable_uring
if [ ! -w "$P" ]; then
	echo "this kernel has no FUSE over io_uring ($P): skipping"
	exit 77
fi
# Overlapping runs take turns with the parameter (lib.bash).
rfs_uring_param_lock
OLD=$(cat "$P")
rfs_pool_setup 1G
trap 'held_watch_release; rfs_cleanup; echo "$OLD" >"$P"' EXIT

ring_tids() {
	local t
	for t in /proc/"$DAEMON_PID"/task/*; do
		case "$(cat "$t/comm" 2>/dev/null)" in rfs-ring*) echo "${t##*/}" ;; esac
	done
}
# Voluntary context switches of the ring threads: each request served
# is one (the thread sleeps in io_uring_enter for the next).
ring_switches() {
	local t n=0
	for t in $(ring_tids); do
		n=$((n + $(awk '/^voluntary_ctxt_switches/ {print $2}' "/proc/$DAEMON_PID/task/$t/status")))
	done
	echo "$n"
}

check "mount --help names -o uring and nouring" \
	bash -c "'$RFS_BIN' mount --help | grep -q 'uring, nouring'"
echo Y >"$P"
MOUNT_ARGS=(-o threads=2)
rfs_mount
# The line is logged as the INIT reply is made, which may come after the
# mount is visible.
check "the daemon serves over io_uring" \
	wait_until 10 grep -q "FUSE over io_uring" "$SCRATCH/daemon.log"
nq=$(getconf _NPROCESSORS_CONF)
# threads=2: two entries per queue (RFS_FUSE_URING_STANDING_MAX, 64, in
# all, one per queue at least).
perq=$((64 / nq))
[ "$perq" -gt 2 ] && perq=2
[ "$perq" -lt 1 ] && perq=1
check "threads=2: $perq ring threads per CPU queue ($(ring_tids | wc -l) for $nq queues)" \
	test "$(ring_tids | wc -l)" -eq $((perq * nq))
# The ring threads run on any CPU the daemon may: one CPU's callers
# (whose requests all go to that CPU's queue) are served on the others too.
mask=$(awk '/^Cpus_allowed_list/ {print $2}' "/proc/$DAEMON_PID/status")
pinned=0
for t in $(ring_tids); do
	[ "$(awk '/^Cpus_allowed_list/ {print $2}' "/proc/$DAEMON_PID/task/$t/status")" = "$mask" ] || pinned=1
done
check "the ring threads are not pinned to their queue's CPU" test "$pinned" = 0
before=$(ring_switches)
mkdir "$MNT/d"
for i in $(seq 500); do : >"$MNT/d/f$i"; done
ls -l "$MNT/d" >/dev/null
after=$(ring_switches)
check "the ring threads served the requests ($before -> $after switches for 500 creates)" \
	test $((after - before)) -ge 500

head -c $((24 << 20)) /dev/urandom >"$SCRATCH/src"
dd if="$SCRATCH/src" of="$MNT/big" bs=1M oflag=direct status=none
check "1 MiB O_DIRECT writes and reads keep the bytes" \
	bash -c "dd if='$MNT/big' bs=1M iflag=direct status=none | cmp -s - '$SCRATCH/src'"
check "4 KiB O_DIRECT reads keep the bytes" \
	bash -c "dd if='$MNT/big' bs=4k iflag=direct status=none | cmp -s - '$SCRATCH/src'"
cp "$MNT/big" "$MNT/clone"
check "a clone inside the mount has the bytes" cmp -s "$MNT/clone" "$SCRATCH/src"
setfattr -n user.k -v "$(head -c 3000 /dev/zero | tr '\0' v)" "$MNT/big"
check "an xattr of 3000 bytes reads back" \
	test "$(getfattr --only-values -n user.k "$MNT/big" | wc -c)" -eq 3000
check "a listing of 500 entries" test "$(ls "$MNT/d" | wc -l)" -eq 500
check "O_TMPFILE, answered by the daemon past libfuse, through the ring" python3 - "$MNT" <<'PY'
import os, sys
fd = os.open(sys.argv[1], os.O_TMPFILE | os.O_RDWR, 0o600)
os.write(fd, b"tmp")
assert os.pread(fd, 3, 0) == b"tmp"
assert os.fstat(fd).st_nlink == 0
PY

# A stopped and continued daemon: each ring thread's io_uring_enter,
# waiting for a request, returns EINTR (the wait's EINTR is returned
# when the call submitted nothing); the thread waits again and sends
# no command twice (a commit sent again would get ENOENT and end it).
nr=$(ring_tids | wc -l)
dd if="$SCRATCH/src" of="$MNT/stopped" bs=64k status=none &
ddpid=$!
for i in $(seq 30); do
	kill -STOP "$DAEMON_PID"
	sleep 0.05
	kill -CONT "$DAEMON_PID"
	sleep 0.05
done
wait "$ddpid"
check "30 SIGSTOP/SIGCONT during a copy: the copy has its bytes" cmp -s "$SCRATCH/src" "$MNT/stopped"
check "... no ring thread ended ($(ring_tids | wc -l) of $nr)" test "$(ring_tids | wc -l)" -eq "$nr"
check "... none said it would" bash -c "! grep -q 'this ring thread ends' '$SCRATCH/daemon.log'"

# Four writers held by a blocking watch take their ring entries; reads of
# another file from every CPU are still answered meanwhile.
for i in 1 2 3 4; do echo old >"$MNT/w$i"; done
"$RFS_BIN" sync "$MNT"
held_watch_start "$MNT"
sleep 1
wpids=()
for i in 1 2 3 4; do
	taskset -c $((i % nq)) sh -c "echo new >'$MNT/w$i'" &
	wpids+=($!)
done
check "the subscriber was asked (the writes are held)" wait_until 20 test -e "$SCRATCH/in_exec"
ok=1
for c in $(seq 0 $((nq - 1))); do
	taskset -c "$c" timeout 20 dd if="$MNT/big" of=/dev/null bs=4k count=64 iflag=direct status=none || ok=0
done
check "O_DIRECT reads from every CPU are answered while the writes are held" test "$ok" = 1
check "the held requests got new ring entries ($(ring_tids | wc -l) ring threads)" \
	test "$(ring_tids | wc -l)" -gt $((perq * nq))
held_watch_release
ok=1
for p in "${wpids[@]}"; do wait "$p" || ok=0; done
check "the held writes land after the release" test "$ok" = 1
check "... with their bytes" test "$(cat "$MNT/w1" "$MNT/w4")" = "$(printf 'new\nnew')"
check "unmount" rfs_umount
check "fsck after the io_uring mount" rfs_fsck

rfs_mount
echo data >"$MNT/after_term"
"$RFS_BIN" sync "$MNT"
kill -TERM "$DAEMON_PID"
check "SIGTERM ends the daemon" wait_until 30 bash -c "! kill -0 $DAEMON_PID 2>/dev/null"
wait "$DAEMON_PID" 2>/dev/null
DAEMON_PID=
fusermount3 -u "$MNT" 2>/dev/null
check "fsck after SIGTERM" rfs_fsck

: >"$SCRATCH/daemon.log"
MOUNT_ARGS=(-o nouring)
rfs_mount
check "-o nouring: no ring threads" test -z "$(ring_tids)"
check "-o nouring: the data is there" test "$(cat "$MNT/after_term")" = data
check "unmount" rfs_umount

# Clones onto files with dirty pages (-o threads=2,writeback): each
# waits for WRITEs that reach the rings while its entry is held; those
# that came while the queue had no free entry must still be fetched.
check "test_workers_inval.sh passes over io_uring" \
	env RFS_TEST_DIR="$SCRATCH" bash "$(dirname "$0")/test_workers_inval.sh"

echo N >"$P"
: >"$SCRATCH/daemon.log"
MOUNT_ARGS=(-o uring)
rfs_mount
check "-o uring without enable_uring says how to allow it" grep -q "echo Y > /sys/module/fuse/parameters/enable_uring" "$SCRATCH/daemon.log"
check "... and serves over /dev/fuse" test "$(cat "$MNT/after_term")" = data
check "unmount" rfs_umount
rfs_finish
