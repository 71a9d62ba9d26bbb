#!/usr/bin/env bash
# A full pool: ENOSPC without damage, deleting still works, space comes
# back, and the pool stays consistent.
. "$(dirname "$0")/lib.bash"
rfs_setup 64M
head -c 4000000 /dev/urandom >"$SCRATCH/keep"
cp "$SCRATCH/keep" "$MNT/keep"
sync "$MNT/keep"
i=0
full=0
while [ $i -lt 100 ]; do
	if ! head -c 4000000 /dev/urandom >"$MNT/fill$i" 2>"$SCRATCH/err"; then
		full=1
		break
	fi
	i=$((i + 1))
done
check "writing eventually fails with ENOSPC" bash -c "[ $full = 1 ] && grep -q 'No space left' '$SCRATCH/err'"
check "statfs says the pool is (nearly) full" bash -c "df -k '$MNT' | tail -1 | awk '{exit !(\$4 < 8192)}'"
check "the file written before is intact" cmp "$SCRATCH/keep" "$MNT/keep"
check "metadata operations still work when full (mkdir, rename)" bash -c "mkdir '$MNT/d' && mv '$MNT/fill0' '$MNT/d/'"
# A truncate to a block boundary rewrites no block: on a full pool it is
# how space is freed (and how the kernel undoes a short direct write).
# One to a size inside a block must rewrite that block, so it still
# needs one free.
check "truncate to a block boundary works on a full pool" bash -c \
	"truncate -s 8192 '$MNT/fill1' && [ \$(stat -c %s '$MNT/fill1') = 8192 ]"
check "... and truncate -s 0 too" bash -c "truncate -s 0 '$MNT/fill2' && [ ! -s '$MNT/fill2' ]"
check "deleting files works on a full pool" bash -c "rm -f '$MNT'/fill* '$MNT'/d/fill*"
sync -f "$MNT" 2>/dev/null
python3 -c "import os,sys; fd=os.open(sys.argv[1], os.O_RDONLY); os.fsync(fd)" "$MNT/keep"
check "space comes back after deleting" bash -c "head -c 20000000 /dev/urandom >'$MNT/again'"
check "the old file is still intact" cmp "$SCRATCH/keep" "$MNT/keep"
check "a clone still works" cp "$MNT/again" "$MNT/again.clone"
# statfs advertises what data allocations can get (fstests generic/103):
# fallocate of exactly f_bavail blocks (the new file's extent leaf comes
# out of the reserve) succeeds; one block more does not.
rm -f "$MNT/again" "$MNT/again.clone"
# their blocks are freed in the background; statfs counts them until then
check "the deleted files' blocks are freed in the background" rfs_wait_reclaim
read -r bavail frsize < <(stat -f -c '%a %S' "$MNT")
check "fallocate of the advertised free space succeeds" \
	fallocate -l $((bavail * frsize)) "$MNT/falloc"
check "nothing is advertised after it" bash -c "[ \$(stat -f -c %a '$MNT') = 0 ]"
check "one block more fails with ENOSPC" bash -c \
	"! fallocate -l '$frsize' '$MNT/falloc2' 2>'$SCRATCH/err' && grep -q 'No space left' '$SCRATCH/err'"
check "the old file is intact after fallocate filled the pool" cmp "$SCRATCH/keep" "$MNT/keep"
# A tiny file's bytes live in its inode record (inline data): writing
# one needs no data block, so a data-full pool still takes it.
check "a tiny file can be written on a data-full pool" \
	bash -c "printf 'tiny file on a full pool' >'$MNT/tiny' && [ \"\$(cat '$MNT/tiny')\" = 'tiny file on a full pool' ]"
check "and appended to within the inline limit" \
	bash -c "printf ', appended' >>'$MNT/tiny' && [ \"\$(cat '$MNT/tiny')\" = 'tiny file on a full pool, appended' ]"
check "a write past the inline limit still fails with ENOSPC" \
	bash -c "! head -c 8192 /dev/zero >>'$MNT/tiny' 2>'$SCRATCH/err' && grep -q 'No space left' '$SCRATCH/err'"
rfs_umount
check "fsck clean after ENOSPC" rfs_fsck
check "mount again" rfs_mount
check "the tiny file written on the full pool survived the remount" \
	bash -c "[ \"\$(cat '$MNT/tiny')\" = 'tiny file on a full pool, appended' ]"
rfs_finish
