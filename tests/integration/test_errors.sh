#!/usr/bin/env bash
# Bad input gives clear messages and changes nothing.
. "$(dirname "$0")/lib.bash"
rfs_setup 256M
echo data >"$MNT/f"
rfs_umount
B=$RFS_BIN
msg() { "$@" 2>&1; }
check "mkfs refuses to overwrite a pool" bash -c "! '$B' mkfs --size 64M '$POOL' 2>'$SCRATCH/e' && grep -q -- --force '$SCRATCH/e'"
head -c 1000000 /dev/urandom >"$SCRATCH/notapool"
check "mount of a file that is not a pool fails clearly" bash -c "! '$B' mount -f '$SCRATCH/notapool' '$MNT' 2>'$SCRATCH/e' && cat '$SCRATCH/e' && grep -qi pool '$SCRATCH/e'"
check "... and changes nothing" bash -c "head -c 1000000 /dev/null; [ \$(stat -c %s '$SCRATCH/notapool') = 1000000 ] && ! mountpoint -q '$MNT'"
cp --sparse=always "$POOL" "$SCRATCH/trunc"
truncate -s 4096 "$SCRATCH/trunc"
check "mount of a truncated pool fails clearly" bash -c "! '$B' mount -f '$SCRATCH/trunc' '$MNT' 2>'$SCRATCH/e' && cat '$SCRATCH/e' && [ -s '$SCRATCH/e' ]"
check "mount with a missing mountpoint fails clearly" bash -c "! '$B' mount '$POOL' '$SCRATCH/nodir' 2>'$SCRATCH/e' && grep -q nodir '$SCRATCH/e'"
check "mount with a missing pool fails clearly" bash -c "! '$B' mount '$SCRATCH/nopool' '$MNT' 2>'$SCRATCH/e' && grep -q nopool '$SCRATCH/e'"
check "mount again works" rfs_mount
check "the data is there" test "$(cat "$MNT/f")" = data
mkdir -p "$SCRATCH/mnt2"
check "mounting the same pool twice is refused (in use)" bash -c "! '$B' mount '$POOL' '$SCRATCH/mnt2' 2>'$SCRATCH/e' && grep -q 'in use' '$SCRATCH/e'"
check "mounting on a busy mountpoint is refused" bash -c "! '$B' mount '$SCRATCH/notapool' '$MNT' 2>'$SCRATCH/e' && cat '$SCRATCH/e'"
check "fsck of a mounted pool is refused" bash -c "! '$B' fsck '$POOL' 2>'$SCRATCH/e' && grep -q 'in use' '$SCRATCH/e'"
check "unknown command" bash -c "! '$B' frobnicate 2>'$SCRATCH/e' && grep -q 'not a command' '$SCRATCH/e'"
for c in mkfs mount umount clone stat fsck; do
	check "reflinkfs $c --help" bash -c "'$B' $c --help | grep -q usage"
done
# One option parser for every subcommand: a mistake names the option, the
# command and its --help, and exits with the command's usage status.
for c in "diff 2" "du 2" "stat 2" "changes 2" "watch 2" "snapshot 2" "scrub 16" "fsck 16"; do
	set -- $c
	check "reflinkfs $1 --bogus: says so, exit $2" bash -c "'$B' $1 --bogus x y 2>'$SCRATCH/e'; [ \$? = $2 ] && grep -q \"reflinkfs $1: unknown option '--bogus' (see \\\`reflinkfs $1 --help\\\`)\" '$SCRATCH/e'"
done
check "a missing value is named" bash -c "'$B' changes '$MNT' --since 2>'$SCRATCH/e'; [ \$? = 2 ] && grep -q \"option '--since' needs a value\" '$SCRATCH/e'"
check "options after operands and --opt=value work" bash -c "'$B' changes '$MNT' --json --since= >'$SCRATCH/o' && tail -1 '$SCRATCH/o' | grep -q '\"cursor\"'"
check "'--' ends the options" bash -c "'$B' stat -e -- '$MNT/f' | grep -q logical"
check "reflinkfs stat outside a reflinkfs mount" bash -c "! '$B' stat /etc/hostname 2>'$SCRATCH/e' && grep -q 'not on a reflinkfs' '$SCRATCH/e'"
check "reflinkfs umount" "$B" umount "$MNT"
DAEMON_PID_SAVED=$DAEMON_PID
wait "$DAEMON_PID_SAVED" 2>/dev/null
DAEMON_PID=
check "reflinkfs umount of something not mounted" bash -c "! '$B' umount '$MNT' 2>'$SCRATCH/e' && grep -q 'not a reflinkfs mount' '$SCRATCH/e'"
# the daemonizing mount and the mount helper (stopped with reflinkfs umount,
# which waits for the daemon's final commit)
check "reflinkfs mount (daemonizes)" bash -c "'$B' mount '$POOL' '$MNT' && mountpoint -q '$MNT'"
check "write, then reflinkfs umount" bash -c "echo helper >'$MNT/g' && '$B' umount '$MNT' && ! mountpoint -q '$MNT'"
check "fsck clean right after reflinkfs umount returns" rfs_fsck
ln -sf "$B" "$SCRATCH/mount.fuse.reflinkfs"
check "mount helper (mount.fuse.reflinkfs POOL MNT -o OPTS)" bash -c "'$SCRATCH/mount.fuse.reflinkfs' '$POOL' '$MNT' -o rw,defaults,noatime,_netdev && mountpoint -q '$MNT' && [ \"\$(cat '$MNT/g')\" = helper ]"
check "mount helper -o ro mounts read-only" bash -c "'$B' umount '$MNT' && '$SCRATCH/mount.fuse.reflinkfs' '$POOL' '$MNT' -o ro && ! touch '$MNT/x' 2>/dev/null && '$B' umount '$MNT'"
# damaged superblocks: all four copies zeroed
cp --sparse=always "$POOL" "$SCRATCH/damaged"
dd if=/dev/zero of="$SCRATCH/damaged" bs=4096 count=4 conv=notrunc status=none
check "mount of a pool with damaged superblocks fails clearly" bash -c "! '$B' mount -f '$SCRATCH/damaged' '$MNT' 2>'$SCRATCH/e' && cat '$SCRATCH/e' && [ -s '$SCRATCH/e' ]"
check "fsck reports the damaged pool" bash -c "! '$B' fsck '$SCRATCH/damaged'"
check "fsck of the good pool is clean" rfs_fsck
rfs_finish
