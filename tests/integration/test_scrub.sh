#!/usr/bin/env bash
# Scrub on a real mount, and fsck --data on the unmounted pool: damaged
# data blocks (of a file and its clone, of a hard-linked file) are
# reported with every path that uses them and a non-zero exit status,
# while the mount keeps serving writers; a clean pool exits 0.
. "$(dirname "$0")/lib.bash"
rfs_setup 512M

head -c 3000000 /dev/urandom >"$MNT/a"
cp "$MNT/a" "$MNT/a.clone" # copy_file_range: a clone sharing every block
mkdir -p "$MNT/d/e"
head -c 200000 /dev/urandom >"$MNT/d/h"
ln "$MNT/d/h" "$MNT/d/e/h2"
head -c 100000 /dev/urandom >"$MNT/plain"
for i in $(seq 20); do head -c 1000000 /dev/urandom >"$MNT/d/e/f$i"; done
truncate -s 1G "$MNT/sparse"
echo tail >>"$MNT/sparse"
"$RFS_BIN" sync "$MNT"
cp "$MNT/a" "$SCRATCH/a.orig"

check "scrub of a clean mount exits 0 and says nothing is damaged" bash -c \
	"'$RFS_BIN' scrub '$MNT' | grep ': 0 damaged, 0 files affected, 0 unreadable trees'"
check "no progress bar when stderr is not a terminal" bash -c "'$RFS_BIN' scrub '$MNT' 2>'$SCRATCH/err' >/dev/null; [ ! -s '$SCRATCH/err' ]"

# Pool block number of the block at file offset OFF of FILE (from the
# extent list of `reflinkfs stat -e`).
phys_block() {
	"$RFS_BIN" stat -e "$1" | awk -v off="$2" '
		NR > 7 && $1 <= off && off < $1 + $3 { print int(($2 + off - $1) / 4096); exit }'
}
# Damage one block of the pool file in place (the mount is live: data
# blocks are read from the file, not cached by the daemon).
damage() {
	printf 'XXXX' | dd of="$POOL" bs=1 seek=$(($1 * 4096 + 123)) conv=notrunc status=none
}
ba=$(phys_block "$MNT/a" 1048576)
bh=$(phys_block "$MNT/d/h" 65536)
bp=$(phys_block "$MNT/plain" 0)
check "found the blocks to damage" test -n "$ba" -a -n "$bh" -a -n "$bp"
check "the clone shares the block" test "$(phys_block "$MNT/a.clone" 1048576)" = "$ba"
damage "$ba"
damage "$bh"
damage "$bp"

# A writer keeps going while the scrub runs (the mount keeps serving).
(
	i=0
	while [ ! -e "$SCRATCH/stop" ]; do
		head -c 300000 /dev/urandom >"$MNT/d/w$((i % 5))" || exit 1
		i=$((i + 1))
	done
) &
writer=$!
"$RFS_BIN" scrub "$MNT" >"$SCRATCH/scrub.out" 2>"$SCRATCH/scrub.err"
rc=$?
touch "$SCRATCH/stop"
wait "$writer"
wrc=$?
check "scrub exits 4 when it found damage" test "$rc" = 4
check "the writer was never refused" test "$wrc" = 0
cat >"$SCRATCH/want" <<EOF
$MNT: data block $ba: checksum mismatch: $MNT/a at offset 1048576
$MNT: data block $ba: checksum mismatch: $MNT/a.clone at offset 1048576
$MNT: data block $bh: checksum mismatch: $MNT/d/e/h2 at offset 65536
$MNT: data block $bh: checksum mismatch: $MNT/d/h at offset 65536
$MNT: data block $bp: checksum mismatch: $MNT/plain at offset 0
EOF
sort -n -t' ' -k4 "$SCRATCH/want" >"$SCRATCH/want.sorted"
grep ': data block ' "$SCRATCH/scrub.out" >"$SCRATCH/got"
check "scrub names exactly the damaged blocks and every path using them" diff "$SCRATCH/want.sorted" "$SCRATCH/got"
check "the summary counts blocks and files" grep -q ": 3 damaged, 4 files affected, 0 unreadable trees" "$SCRATCH/scrub.out"
check "scrub --json" python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
assert r["damaged_blocks"] == 3 and r["files_affected"] == 4, r
assert r["unreadable_trees"] == 0
assert sorted((d["block"], d["path"]) for d in r["damage"]) == sorted([
    (int(sys.argv[2]), sys.argv[5] + "/a"), (int(sys.argv[2]), sys.argv[5] + "/a.clone"),
    (int(sys.argv[3]), sys.argv[5] + "/d/h"), (int(sys.argv[3]), sys.argv[5] + "/d/e/h2"),
    (int(sys.argv[4]), sys.argv[5] + "/plain")]), r["damage"]
assert all(d["error"] == "checksum mismatch" for d in r["damage"])
assert r["blocks_checked"] > 5000
' <("$RFS_BIN" scrub --json "$MNT") "$ba" "$bh" "$bp" "$MNT"
# O_DIRECT: the kernel's page cache still holds what was written.
check "the damaged block reads as EIO" bash -c \
	"! dd if='$MNT/a' of=/dev/null bs=4096 skip=256 count=1 iflag=direct 2>'$SCRATCH/err' && grep -q 'Input/output error' '$SCRATCH/err'"
check "scrub of a directory that is not reflinkfs exits 8" bash -c "'$RFS_BIN' scrub '$SCRATCH'; [ \$? = 8 ]"
check "scrub without a mount point is a usage error (16)" bash -c "'$RFS_BIN' scrub; [ \$? = 16 ]"

rfs_umount
check "fsck without --data reads no data: clean" rfs_fsck
check "fsck --data exits 4 (problems)" bash -c "'$RFS_BIN' fsck --data '$POOL' >'$SCRATCH/fsck.out'; [ \$? = 4 ]"
sed "s|^$MNT: |$POOL: |; s| $MNT/| /|" "$SCRATCH/want.sorted" >"$SCRATCH/want.fsck"
grep ': data block ' "$SCRATCH/fsck.out" >"$SCRATCH/got.fsck"
check "fsck --data names the same blocks and paths" diff "$SCRATCH/want.fsck" "$SCRATCH/got.fsck"

# Repair by rewriting the damaged files: scrub and fsck --data are clean.
rfs_mount
rm -f "$MNT/a.clone" "$MNT/d/h" "$MNT/d/e/h2" "$MNT/plain"
cp "$SCRATCH/a.orig" "$MNT/a.new" && mv "$MNT/a.new" "$MNT/a"
"$RFS_BIN" sync "$MNT"
check "scrub is clean after the damaged files were replaced" "$RFS_BIN" scrub "$MNT"
rfs_umount
check "fsck POOL --data (either order) is clean too" "$RFS_BIN" fsck "$POOL" --data
rfs_finish
