#!/usr/bin/env bash
# A SIGTERM while a blocking watch holds a writer (its subscriber never
# acknowledges, the watch's timeout is 600 s): the daemon releases the
# held request before it joins its workers (rfs_fs_release_waits), so
# the write is stored, the final commit runs and the daemon exits at
# once instead of after the watch's timeout.  No timing threshold: the
# exit is awaited up to 60 s, a stall would last the 600 s timeout.
source "$(dirname "$0")/lib.bash"
rfs_setup 256M
R=$RFS_BIN

gone() { ! kill -0 "$1" 2>/dev/null; }
trap 'held_watch_release; rfs_cleanup' EXIT

W=$MNT/w
mkdir -p "$W"
echo "old" >"$W/f"
"$R" sync "$MNT"
held_watch_start "$W"
check "the watch is ready" wait_until 60 grep -q ready "$SCRATCH/werr"
printf 'NEW' | dd of="$W/f" conv=notrunc status=none &
writer=$!
check "the subscriber got the event" wait_until 60 test -e "$SCRATCH/in_exec"
check "the writer is held" kill -0 "$writer"

kill -TERM "$DAEMON_PID"
check "after a SIGTERM the daemon exits without waiting for the watch's timeout" \
	wait_until 60 gone "$DAEMON_PID"
wait "$DAEMON_PID"
check "... with status 0" test "$?" = 0
DAEMON_PID=
check "the held writer finished" wait_until 60 gone "$writer"
wait "$writer"
check "... and succeeded" test "$?" = 0
held_watch_release
grep -q " $MNT fuse" /proc/mounts && { fusermount3 -u "$MNT" 2>/dev/null || umount -l "$MNT"; }

check "mount again" rfs_mount
check "the held write was stored by the final commit" grep -qx "NEW" "$W/f"
check "unmount" rfs_umount
check "fsck clean" rfs_fsck
rfs_finish
