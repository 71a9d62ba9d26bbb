#!/usr/bin/env bash
# reflinkfs umount reports how the daemon's final commit went: non-zero
# and the daemon's reason when it failed (the pool file on a full
# filesystem), non-zero when the daemon died without a word, 0 otherwise.
. "$(dirname "$0")/lib.bash"
rfs_setup 64M
rfs_umount
B=$RFS_BIN
SMALL=$SCRATCH/small
MNT2=$SCRATCH/mnt2
mkdir -p "$SMALL" "$MNT2"
if ! mount -t tmpfs -o size=16m rfs-test "$SMALL" 2>/dev/null; then
	echo "cannot mount a tmpfs here: skipping"
	exit 77
fi
cleanup_small() {
	grep -q " $SCRATCH/inner fuse" /proc/mounts && umount -l "$SCRATCH/inner"
	grep -q " $SCRATCH/bind fuse" /proc/mounts && umount -l "$SCRATCH/bind"
	if grep -q " $MNT2 fuse" /proc/mounts; then
		fusermount3 -u "$MNT2" 2>/dev/null || umount -l "$MNT2"
		sleep 1 # the daemon closes the pool file on the tmpfs
	fi
	umount "$SMALL" 2>/dev/null || umount -l "$SMALL"
}
trap 'cleanup_small; rfs_cleanup' EXIT

# --- the final commit fails: the filesystem holding the pool is full
"$B" mkfs --size 256M "$SMALL/pool" >/dev/null
"$B" mount -o commit=3600 "$SMALL/pool" "$MNT2"
echo committed >"$MNT2/old"
"$B" sync "$MNT2"
for i in $(seq 300); do echo "file $i" >"$MNT2/f$i"; done
mkdir -p "$MNT2/d1/d2/d3"
dd if=/dev/zero of="$SMALL/filler" bs=64k status=none 2>/dev/null # until ENOSPC
check "the filesystem holding the pool is full" bash -c "[ \$(df --output=avail -k '$SMALL' | tail -1) -lt 64 ]"
"$B" umount "$MNT2" 2>"$SCRATCH/u.err"
rc=$?
cat "$SCRATCH/u.err"
check "reflinkfs umount exits non-zero when the final commit failed" test "$rc" -ne 0
check "... and says the final commit failed, with the daemon's reason" \
	bash -c "grep -q 'final commit of $SMALL/pool failed' '$SCRATCH/u.err' && grep -q 'No space left on device' '$SCRATCH/u.err'"
check "... and what that means" grep -q "Changes made after the last commit that succeeded are lost" "$SCRATCH/u.err"
check "... and the mount is gone" bash -c "! grep -q ' $MNT2 fuse' /proc/mounts"
check "... and the pool is released" flock -n -x "$SMALL/pool" true
rm -f "$SMALL/filler"
check "the pool holds its last commit: fsck clean" "$B" fsck "$SMALL/pool"
"$B" mount "$SMALL/pool" "$MNT2"
check "... with what was committed" test "$(cat "$MNT2/old")" = committed
check "... and without what was not" test ! -e "$MNT2/f1"
check "a clean unmount exits 0" "$B" umount "$MNT2"

# --- the daemon dies after the unmount, before its verdict
rfs_mount
echo x >"$MNT/x"
kill -STOP "$DAEMON_PID"
"$B" umount "$MNT" 2>"$SCRATCH/k.err" &
up=$!
for i in $(seq 400); do grep -q " $MNT fuse" /proc/mounts || break; sleep 0.05; done
kill -9 "$DAEMON_PID"
kill -CONT "$DAEMON_PID" 2>/dev/null
wait "$DAEMON_PID" 2>/dev/null
DAEMON_PID=
wait "$up"
rc=$?
cat "$SCRATCH/k.err"
check "reflinkfs umount exits non-zero when the daemon died before its verdict" test "$rc" -ne 0
check "... and says so" grep -q "exited without saying how its final commit went" "$SCRATCH/k.err"
check "fsck after the killed daemon: clean" rfs_fsck

# --- a SIGTERM (kill, systemd) during the final commit does not cut it
# short.  The pool lives on the first mount, whose daemon is stopped, so
# the second daemon's final commit waits for it: a window of any length.
rfs_mount
"$B" mkfs --size 64M "$MNT/inner.pool" >/dev/null
mkdir -p "$SCRATCH/inner"
"$B" mount -f "$MNT/inner.pool" "$SCRATCH/inner" 2>>"$SCRATCH/inner.log" &
inner=$!
for i in $(seq 100); do mountpoint -q "$SCRATCH/inner" && break; sleep 0.05; done
for i in $(seq 50); do echo "inner $i" >"$SCRATCH/inner/f$i"; done
kill -STOP "$DAEMON_PID"
umount --no-canonicalize "$SCRATCH/inner"
blocked=
for i in $(seq 200); do
	grep -qx request_wait_answer /proc/"$inner"/task/*/wchan 2>/dev/null && { blocked=1; break; }
	sleep 0.05
done
check "the inner daemon's final commit waits for the stopped outer one" test -n "$blocked"
kill -TERM "$inner"
kill -CONT "$DAEMON_PID"
wait "$inner"
rc=$?
check "... a SIGTERM then does not stop it: it exits 0" test "$rc" = 0
check "... and the commit is complete" bash -c "'$B' mount '$MNT/inner.pool' '$SCRATCH/inner' && [ \"\$(cat '$SCRATCH/inner/f50')\" = 'inner 50' ] && '$B' umount '$SCRATCH/inner'"
rm -f "$MNT/inner.pool"
rfs_umount

# --- the filesystem is still mounted elsewhere (a bind mount): the daemon
# goes on serving it, so umount must not wait for it
rfs_mount
mkdir -p "$SCRATCH/bind"
mount --bind "$MNT" "$SCRATCH/bind"
"$B" umount "$MNT" 2>"$SCRATCH/b.err"
rc=$?
cat "$SCRATCH/b.err"
check "reflinkfs umount of one of two mounts of the filesystem exits non-zero" test "$rc" -ne 0
check "... naming the other mount" grep -q "still mounted at $SCRATCH/bind" "$SCRATCH/b.err"
check "reflinkfs umount of the other one finishes" "$B" umount "$SCRATCH/bind"
wait "$DAEMON_PID"
DAEMON_PID=
rfs_finish
