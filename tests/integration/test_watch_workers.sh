#!/usr/bin/env bash
# More writers held by a blocking watch than the daemon has workers
# (-o threads=2, four writers of four files blocked in their
# pre-modification events): every held request's worker gets a temporary
# stand-in (src/fuse/workers.c), so an O_DIRECT read of another file, a
# statfs and the subscriber's clone of a held file are still answered
# while they wait; after the acks every write is stored and the
# temporary workers are gone.  With libfuse's loop the two workers slept
# in the first two writers until the watch's timeout and the mount
# answered nothing.  No timing threshold: the liveness checks wait up to
# 20 s (a stalled mount would stall them for the 600 s watch timeout).
source "$(dirname "$0")/lib.bash"
# -o nouring: these are the /dev/fuse workers (a held request over
# io_uring: test_uring.sh).
rfs_setup 512M -o threads=2,nouring
R=$RFS_BIN
WRITERS=()

tasks() { ls "/proc/$DAEMON_PID/task" | wc -l; }
# Nothing may outlive the test: the writers and the watcher are ours.
trap 'held_watch_release; rfs_cleanup' EXIT

W=$MNT/w
mkdir -p "$W"
for i in 1 2 3 4; do echo "old $i" >"$W/f$i"; done
head -c 1048576 /dev/urandom >"$SCRATCH/other"
cp "$SCRATCH/other" "$MNT/other"
"$R" sync "$MNT"
rest=$(tasks)

# Each event's CMD waits for go: the first holds its writer, and the
# others' events wait behind it in the watcher, their writers held too.
held_watch_start "$W"
check "the watch is ready" wait_until 60 grep -q ready "$SCRATCH/werr"
for i in 1 2 3 4; do
	printf 'NEW' | dd of="$W/f$i" conv=notrunc status=none &
	WRITERS+=($!)
done
check "the subscriber got the first event" wait_until 60 test -e "$SCRATCH/in_exec"
# Four held WRITEs, each worker's place taken by a temporary one: the
# two standing workers and four more (rest counted two workers).
check "a worker stands in for each held writer (daemon threads at rest: $rest)" \
	wait_until 20 bash -c "[ \$(ls /proc/$DAEMON_PID/task | wc -l) -ge $((rest + 4)) ]"
log "     daemon threads now: $(tasks)"
held=0
for p in "${WRITERS[@]}"; do kill -0 "$p" 2>/dev/null && held=$((held + 1)); done
check "the four writers are held ($held)" test "$held" = 4
check "an O_DIRECT read of another file is answered meanwhile" \
	timeout -s KILL 20 dd if="$MNT/other" of="$SCRATCH/other.out" bs=64k iflag=direct status=none
check "... with its bytes" cmp "$SCRATCH/other" "$SCRATCH/other.out"
check "a statfs is answered meanwhile" timeout -s KILL 20 stat -f "$MNT"
check "the subscriber's clone of a held file is answered, the old content" \
	bash -c "REFLINKFS_WATCH_INO=\$(stat -c %i '$W/f1') timeout -s KILL 20 '$R' clone '$W/f1' '$MNT/seen1' &&
		 grep -qx 'old 1' '$MNT/seen1'"
held=0
for p in "${WRITERS[@]}"; do kill -0 "$p" 2>/dev/null && held=$((held + 1)); done
check "the writers are still held ($held)" test "$held" = 4

touch "$SCRATCH/go"
ok=1
for p in "${WRITERS[@]}"; do wait "$p" || ok=0; done
check "after the acks every writer finishes" test "$ok" = 1
same=1
for i in 1 2 3 4; do grep -qx "NEW $i" "$W/f$i" || same=0; done
check "... and every write is stored" test "$same" = 1
check "the temporary workers end (daemon threads at rest: $rest)" \
	wait_until 20 bash -c "[ \$(ls /proc/$DAEMON_PID/task | wc -l) -le $rest ]"
held_watch_release
check "unmount" rfs_umount
check "fsck clean" rfs_fsck
rfs_finish
