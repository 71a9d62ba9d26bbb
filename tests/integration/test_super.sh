#!/usr/bin/env bash
# Damaged superblock copies.  One damaged copy of the newest superblock:
# fsck reports it (exit 1) and the mount still gets the newest commit,
# logs which superblock it used and rewrites the copy.  Both copies of the
# newest damaged: the mount falls back to the commit before, and fsck
# (exit 4) and the mount's log say that a commit was lost.
. "$(dirname "$0")/lib.bash"
rfs_setup 256M
B=$RFS_BIN
mkdir "$MNT/d"
for i in $(seq 50); do echo "file $i" >"$MNT/d/f$i"; done
rfs_umount

fsck_status() { "$B" fsck "$POOL" >"$SCRATCH/fsck.out" 2>&1; echo $? >"$SCRATCH/fsck.rc"; cat "$SCRATCH/fsck.out"; }
fsck_rc() { fsck_status >/dev/null; cat "$SCRATCH/fsck.rc"; }
# generation of the superblock copy in block $1
gen() { od -An -t u8 -j $(($1 * 4096 + 16)) -N 8 "$POOL" | tr -d ' '; }
# flip bit 5 of byte $2 of block $1 of the pool
flip() {
	local off=$(($1 * 4096 + $2)) b
	b=$(od -An -t u1 -j "$off" -N 1 "$POOL" | tr -d ' ')
	printf "$(printf '\\%03o' $((b ^ 32)))" | dd of="$POOL" bs=1 seek="$off" conv=notrunc status=none
}
newest() { if [ "$(gen 0)" -gt "$(gen 1)" ]; then echo 0; else echo 1; fi; }

check "fsck clean: exit 0" test "$(fsck_rc)" = 0
check "fsck names the superblock in use" grep -q "superblock: generation $(gen "$(newest)"), read from slot $(newest) copy 0" "$SCRATCH/fsck.out"
check "fsck --help lists every exit status" bash -c "'$B' fsck --help | grep -q '^  1 ' && '$B' fsck --help | grep -q '^  4 ' && '$B' fsck --help | grep -q '^  8 ' && '$B' fsck --help | grep -q '^  16 '"
check "fsck usage error: exit 16" bash -c "'$B' fsck >/dev/null 2>&1; [ \$? = 16 ]"
check "fsck of a missing pool: exit 8" bash -c "'$B' fsck '$SCRATCH/nopool' >/dev/null 2>&1; [ \$? = 8 ]"

# one byte of copy 0 of the newest superblock
N=$(newest)
G=$(gen "$N")
flip "$N" 100
check "one damaged copy: fsck exits 1" test "$(fsck_rc)" = 1
check "... and names the damaged block" grep -q "(block $N) is damaged" "$SCRATCH/fsck.out"
check "... and says nothing is lost" grep -q "nothing is lost" "$SCRATCH/fsck.out"
check "... and still reads generation $G" grep -q "superblock: generation $G, read from slot $N copy 1" "$SCRATCH/fsck.out"
: >"$SCRATCH/daemon.log"
check "mount with a damaged copy" rfs_mount
check "the newest commit is there" bash -c "[ \$(ls '$MNT/d' | wc -l) = 50 ] && [ \"\$(cat '$MNT/d/f50')\" = 'file 50' ]"
check "the mount logs the superblock it used" grep -q "superblock: generation $G, read from slot $N copy 1" "$SCRATCH/daemon.log"
check "the mount logs the repair" grep -q "(block $N) is damaged.*rewritten now" "$SCRATCH/daemon.log"
echo last >"$MNT/last"
check "unmount" rfs_umount
check "fsck clean after the repair: exit 0" test "$(fsck_rc)" = 0

# both copies of the newest superblock: the commit that wrote "last" is lost
N=$(newest)
G=$(gen "$N")
flip "$N" 100
flip $((N + 2)) 140
check "both copies damaged: fsck exits 4" test "$(fsck_rc)" = 4
check "... and says the commit was lost" grep -q "generation $G, the last commit: if so, that commit and every change in it are LOST" "$SCRATCH/fsck.out"
: >"$SCRATCH/daemon.log"
check "mount falls back" rfs_mount
check "the older commit is there" bash -c "[ \$(ls '$MNT/d' | wc -l) = 50 ]"
check "the lost commit's file is gone" test ! -e "$MNT/last"
check "the mount logs the lost commit" grep -q "LOST; the pool fell back to generation $((G - 1))" "$SCRATCH/daemon.log"
echo again >"$MNT/again"
check "unmount" rfs_umount
check "fsck clean once a commit rewrote the slot: exit 0" test "$(fsck_rc)" = 0

# a read-only mount reports, and rewrites nothing
N=$(newest)
flip $((N + 2)) 3000
: >"$SCRATCH/daemon.log"
check "read-only mount with a damaged copy" rfs_mount -o ro
check "it says the copy is not rewritten" grep -q "(block $((N + 2))) is damaged.*not rewritten (read-only)" "$SCRATCH/daemon.log"
check "unmount" rfs_umount
check "fsck still reports it: exit 1" test "$(fsck_rc)" = 1

# the same on a block device (a loop device; needs root)
if [ "$(id -u)" = 0 ] && truncate -s 64M "$SCRATCH/dev.img" &&
	LOOP=$(losetup -f --show "$SCRATCH/dev.img" 2>/dev/null); then
	trap 'losetup -d "$LOOP"; rfs_cleanup' EXIT
	POOL=$LOOP
	check "mkfs on a block device" "$B" mkfs "$POOL"
	check "mount the block device" rfs_mount
	echo dev >"$MNT/f"
	check "unmount" rfs_umount
	N=$(newest)
	G=$(gen "$N")
	flip "$N" 20
	check "block device, one damaged copy: fsck exits 1" test "$(fsck_rc)" = 1
	: >"$SCRATCH/daemon.log"
	check "mount the block device with a damaged copy" rfs_mount
	check "the newest commit is there" test "$(cat "$MNT/f")" = dev
	check "the mount logs the repair" grep -q "(block $N) is damaged.*rewritten now" "$SCRATCH/daemon.log"
	check "unmount" rfs_umount
	check "block device: fsck clean after the repair" test "$(fsck_rc)" = 0
	N=$(newest)
	G=$(gen "$N")
	flip "$N" 20
	flip $((N + 2)) 20
	check "block device, both copies damaged: fsck exits 4" test "$(fsck_rc)" = 4
	check "... naming the lost generation" grep -q "generation $G, the last commit" "$SCRATCH/fsck.out"
else
	log "skip block device checks (needs root and a loop device)"
fi
rfs_finish
