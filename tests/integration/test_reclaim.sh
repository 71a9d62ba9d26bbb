#!/usr/bin/env bash
# Deleted files are freed in the background: rm -rf of a big tree only
# detaches it (the queue's counter says so right after; with -o
# noreclaim nothing is freed until a mount without it), the space comes
# back as the daemon works through the queue, and a queue left half done
# by an unmount or a kill -9 goes on at the next mount with fsck clean.
. "$(dirname "$0")/lib.bash"
# nojournal everywhere: the checks compare df with an empty pool's, and
# the change journal keeps records of the deletions (its purpose).
rfs_setup 1G -o noreclaim,nojournal

# sparse files of many extents (4 KiB written every 8 KiB)
sparse() {
	python3 -c '
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o644)
for i in range(int(sys.argv[2])):
    os.pwrite(fd, bytes([i % 251]) * 4096, i * 8192)
os.close(fd)' "$1" "$2"
}
used_kb() { df -k --output=used "$MNT" | tail -1 | tr -d ' '; }
reclaim_blocks() { "$RFS_BIN" stat "$MNT" | awk '/reclaiming:/ {print ($2 == "about") ? $3 : 0}'; }

sync -f "$MNT" 2>/dev/null
used0=$(used_kb)
mkdir -p "$MNT/tree/a/b" "$MNT/tree/c"
sparse "$MNT/tree/big1" 4000
sparse "$MNT/tree/a/big2" 3000
sparse "$MNT/tree/a/b/big3" 3000
for i in $(seq 200); do echo "small $i" >"$MNT/tree/c/s$i"; done
"$RFS_BIN" sync "$MNT"
used1=$(used_kb)
check "the tree takes space (df: ${used0}K -> ${used1}K)" test $((used1 - used0)) -gt 30000
check "reflinkfs stat of a directory: nothing to reclaim yet" bash -c "'$RFS_BIN' stat '$MNT' | grep -q 'reclaiming: nothing'"
check "rm -rf of the tree" rm -rf "$MNT/tree"
check "the tree is gone" test ! -e "$MNT/tree"
r=$(reclaim_blocks)
check "its blocks wait in the queue (reclaiming $r blocks)" test "${r:-0}" -ge 10000
used2=$(used_kb)
check "df still counts them (${used2}K)" test $((used1 - used2)) -lt 4096

# unmount with the queue full: fsck clean, the queue survives
check "unmount" rfs_umount
check "fsck clean with deleted files still queued" rfs_fsck
rfs_mount -o noreclaim
r2=$(reclaim_blocks)
check "the queue is still there after remount ($r2 blocks)" test "${r2:-0}" -eq "$r"
check "unmount" rfs_umount

# a mount without noreclaim frees them in the background
MOUNT_ARGS=(-o nojournal)
rfs_mount
check "the daemon frees the queued blocks" rfs_wait_reclaim
used3=$(used_kb)
check "the space is back (df: ${used1}K -> ${used3}K, empty ${used0}K)" test $((used3 - used0)) -lt 1024
check "unmount" rfs_umount
check "fsck clean after the release" rfs_fsck

# kill -9 while the daemon releases: the next mount goes on, fsck clean
rfs_mount
for i in 1 2 3 4; do sparse "$MNT/k$i" 6000; done
"$RFS_BIN" sync "$MNT"
rm -f "$MNT"/k*
"$RFS_BIN" sync "$MNT" # the rm is durable; the release may be under way
rfs_kill9
check "fsck clean after kill -9 during the release" rfs_fsck
rfs_mount
check "the next mount finishes the release" rfs_wait_reclaim
check "the deleted files stay deleted" bash -c "! ls '$MNT'/k* 2>/dev/null"
used4=$(used_kb)
check "the space is back after the crash (df ${used4}K)" test $((used4 - used0)) -lt 1024
check "unmount" rfs_umount
check "fsck clean" rfs_fsck

# a remount read-only while the daemon releases, then read-write: the
# release waits for the thaw and goes on
wait_log() {
	local i
	for i in $(seq 200); do
		grep -q "$1" "$SCRATCH/daemon.log" && return 0
		sleep 0.05
	done
	return 1
}
if [ "$(id -u)" = 0 ]; then
	rfs_mount
	for i in 1 2 3 4 5 6; do sparse "$MNT/r$i" 8000; done
	"$RFS_BIN" sync "$MNT"
	rm -f "$MNT"/r*
	mount -i -o remount,ro "$MNT"
	check "remounted read-only during the release" wait_log "remounted read-only"
	mount -i -o remount,rw "$MNT"
	check "... and read-write again" wait_log "remounted read-write"
	check "the release goes on after the remount" rfs_wait_reclaim
	used5=$(used_kb)
	check "the space is back (df ${used5}K)" test $((used5 - used0)) -lt 1024
	check "unmount" rfs_umount
	check "fsck clean at the end" rfs_fsck
fi
rfs_finish
