#!/usr/bin/env bash
# kill -9 of the daemon: what was fsynced survives, the pool mounts and
# fscks clean, and it holds a state that existed at a commit point.
. "$(dirname "$0")/lib.bash"
# long commit interval: only fsync makes things durable here
rfs_setup 1G -o commit=3600
for round in 1 2 3; do
	mkdir -p "$MNT/r$round"
	head -c 5000000 /dev/urandom >"$SCRATCH/data$round"
	cp "$SCRATCH/data$round" "$MNT/r$round/synced"
	python3 -c "import os,sys; fd=os.open(sys.argv[1], os.O_RDONLY); os.fsync(fd)" "$MNT/r$round/synced"
	# fsync of the file makes the whole pool state durable (one commit)
	cp "$MNT/r$round/synced" "$MNT/r$round/clone"
	python3 -c "import os,sys; fd=os.open(sys.argv[1], os.O_RDONLY); os.fdatasync(fd)" "$MNT/r$round/clone"
	# unsynced work that may or may not survive, in flight during the kill
	( for i in $(seq 1 200); do echo "line $i" >>"$MNT/r$round/unsynced"; done ) &
	writer=$!
	head -c 3000000 /dev/urandom >"$MNT/r$round/partial" &
	writer2=$!
	sleep 0.2
	rfs_kill9
	wait "$writer" "$writer2" 2>/dev/null
	check "round $round: fsck clean after kill -9" rfs_fsck
	check "round $round: mounts again" rfs_mount
	check "round $round: fsynced file intact" cmp "$SCRATCH/data$round" "$MNT/r$round/synced"
	check "round $round: fdatasynced clone intact" cmp "$SCRATCH/data$round" "$MNT/r$round/clone"
	for prev in $(seq 1 $((round - 1))); do
		check "round $round: round $prev data still intact" cmp "$SCRATCH/data$prev" "$MNT/r$prev/synced"
	done
	check "round $round: the fs is writable after the crash" bash -c "echo ok >'$MNT/r$round/after' && [ \"\$(cat '$MNT/r$round/after')\" = ok ]"
done
# reflinkfs sync (syncfs's stand-in) makes the whole mount durable
head -c 1000000 /dev/urandom >"$SCRATCH/viasync"
mkdir -p "$MNT/s/d"
cp "$SCRATCH/viasync" "$MNT/s/d/f"
ln -s d/f "$MNT/s/link"
check "reflinkfs sync succeeds" "$RFS_BIN" sync "$MNT/s"
rfs_kill9
check "fsck clean after sync + kill -9" rfs_fsck
check "mounts again after sync + kill -9" rfs_mount
check "synced file intact" cmp "$SCRATCH/viasync" "$MNT/s/d/f"
check "synced symlink intact" test "$(readlink "$MNT/s/link")" = d/f
check_fail "reflinkfs sync outside a mount fails" "$RFS_BIN" sync "$SCRATCH"
# an unlinked-but-open file at the moment of the crash is freed at mount
exec 9>"$MNT/orphan"
head -c 2000000 /dev/urandom >&9
rm "$MNT/orphan"
python3 -c "import os; os.fsync(9)"
rfs_kill9
exec 9>&-
check "fsck clean with an orphan left by the crash" rfs_fsck
check "mounts again (frees the orphan)" rfs_mount
check "the orphan is gone" test ! -e "$MNT/orphan"
rfs_umount
check "fsck clean after the orphan was freed" rfs_fsck
rfs_finish
