#!/usr/bin/env bash
# The mount helper through mount(8): mount -t fuse.reflinkfs, /etc/fstab
# entries and mount -a, umount(8), `mount -o remount,ro|rw` (fstests
# generic/294, 306, 452), and dev/suid, which mount(8) does not pass on,
# restored as libfuse's mount.fuse3 does (generic/184, 434, 633).
#
# It runs in a private mount namespace (unshare -m): the helper is added
# to /sbin through a read-only overlay and /etc/fstab is a bind-mounted
# copy with this test's entry, so nothing outside the namespace changes
# and test runs in other worktrees never see each other's entries.
if [ -z "${RFS_IN_NS:-}" ]; then
	if ! command -v unshare >/dev/null || ! unshare -m true 2>/dev/null; then
		echo "cannot create a mount namespace (unshare -m): skipping"
		exit 77
	fi
	RFS_IN_NS=1 exec unshare -m --propagation private bash "$0" "$@"
fi
. "$(dirname "$0")/lib.bash"
rfs_setup 256M
rfs_umount
B=$RFS_BIN

SBIN=$(readlink -f /sbin)
mkdir -p "$SCRATCH/sbin"
ln -s "$B" "$SCRATCH/sbin/mount.fuse.reflinkfs"
if ! mount -t overlay rfs-helper -o "lowerdir=$SCRATCH/sbin:$SBIN" "$SBIN"; then
	echo "cannot put the helper into $SBIN (overlayfs): skipping"
	exit 77
fi
# Mount points that user nobody can reach (the scratch dir is 0700).
TOP=$(mktemp -d /tmp/rfs-helperXXXXXX)
chmod 755 "$TOP"
M=$TOP/m
mkdir -p "$M"
cleanup_helper() {
	local d
	for d in "$M"; do
		grep -q " $d fuse" /proc/mounts && { umount "$d" 2>/dev/null || umount -l "$d"; }
	done
	rm -rf "$TOP"
}
trap 'cleanup_helper; rfs_cleanup' EXIT
cp /etc/fstab "$SCRATCH/fstab"
echo "$POOL $M fuse.reflinkfs allow_other,commit=5,x-rfstest 0 0" >>"$SCRATCH/fstab"
mount --bind "$SCRATCH/fstab" /etc/fstab
daemon_gone() { # wait (bounded) until no daemon holds the pool
	local i
	for i in $(seq 200); do
		flock -n -x "$POOL" true && return 0
		sleep 0.05
	done
	return 1
}

# --- /etc/fstab, mount -a, dev and suid
check "mount -a mounts the fstab entry" mount -a -O x-rfstest
check "... as fuse.reflinkfs" bash -c "grep -q ' $M fuse.reflinkfs ' /proc/mounts"
check "... with dev and suid (mount(8) does not pass them; the helper restores them)" \
	bash -c "o=\$(awk -v m='$M' '\$5 == m {print \$6}' /proc/self/mountinfo); echo \$o; [[ ,\$o, != *,nodev,* && ,\$o, != *,nosuid,* ]]"
mknod "$M/null" c 1 3 && mknod "$M/zero" c 1 5
check "a device node on the mount works (write to null)" bash -c "echo data >'$M/null'"
check "... (read from zero)" bash -c "[ \"\$(head -c 4 '$M/zero' | od -An -tx1 | tr -d ' ')\" = 00000000 ]"
cp /usr/bin/id "$M/id"
chmod 4755 "$M/id"
check "a setuid-root program runs with euid 0 for user nobody" \
	bash -c "[ \"\$(setpriv --reuid=65534 --regid=65534 --clear-groups '$M/id' -u)\" = 0 ]"
echo hello >"$M/hello"

# --- remount read-only and back
"$B" sync "$M"
check "mount -o remount,ro" mount -o remount,ro "$M"
check "... the mount is read-only" bash -c "[[ ,\$(awk -v m='$M' '\$5 == m {print \$6}' /proc/self/mountinfo), == *,ro,* ]]"
check "... writing fails with EROFS" bash -c "! touch '$M/new' 2>'$SCRATCH/e'; grep -q 'Read-only file system' '$SCRATCH/e'"
before=$(md5sum <"$POOL")
check "... reading works" test "$(cat "$M/hello")" = hello
cat "$M/hello" "$M/id" >/dev/null
ls -lR "$M" >/dev/null
check "... reflinkfs sync works (nothing to commit)" "$B" sync "$M"
check "... and the pool file did not change (no atime updates, no commits)" test "$(md5sum <"$POOL")" = "$before"
check "... devices and setuid still work" \
	bash -c "echo x >'$M/null' && [ \"\$(setpriv --reuid=65534 --regid=65534 --clear-groups '$M/id' -u)\" = 0 ]"
check "mount -o remount,rw" mount -o remount,rw "$M"
check "... writing works again" bash -c "echo again >'$M/again' && [ \"\$(cat '$M/again')\" = again ]"
exec 8>>"$M/again"
check_fail "remount,ro with a file open for writing is refused" mount -o remount,ro "$M"
exec 8>&-
check "... and works once it is closed" mount -o remount,ro "$M"
check "remount,rw again" mount -o remount,rw "$M"

# --- umount(8), and mount by mount point from fstab right after it
check "umount(8) of the mount" umount "$M"
check "mount MOUNTPOINT (fstab) right after umount(8)" mount "$M"
check "... the data is there" test "$(cat "$M/hello" "$M/again")" = "hello
again"
check "reflinkfs umount of a mount(8) mount" "$B" umount "$M"

# --- nosuid and nodev asked for are kept
check "mount -t fuse.reflinkfs -o nosuid,nodev,allow_other" mount -t fuse.reflinkfs -o nosuid,nodev,allow_other "$POOL" "$M"
check "... setuid is not honoured" \
	bash -c "[ \"\$(setpriv --reuid=65534 --regid=65534 --clear-groups '$M/id' -u)\" = 65534 ]"
check "... devices cannot be opened" bash -c "! echo x >'$M/null'"
check "umount(8)" umount "$M"
daemon_gone

# --- a read-only mount cannot be remounted read-write (its pool was
# opened read-only); it says so and stays read-only
check "mount -t fuse.reflinkfs -o ro" mount -t fuse.reflinkfs -o ro "$POOL" "$M"
check_fail "remount,rw of a read-only mount fails" mount -o remount,rw "$M"
mount -o remount,rw "$M" 2>"$SCRATCH/rw.err"
cat "$SCRATCH/rw.err"
check "... saying why" grep -q "mounted read-only" "$SCRATCH/rw.err"
check "... and it stays read-only" bash -c "! touch '$M/x' 2>/dev/null"
check "umount(8)" umount "$M"
daemon_gone

# --- a remount the daemon is not told about (mount -i: no helper, the
# kernel alone): the daemon sees it in the mount table and freezes
rfs_mount
echo data >"$MNT/d"
"$B" sync "$MNT"
check "mount -i -o remount,ro (without the helper)" mount -i -o remount,ro "$MNT"
wait_log() {
	local i
	for i in $(seq 200); do
		grep -q "$1" "$SCRATCH/daemon.log" && return 0
		sleep 0.05
	done
	return 1
}
check "... the daemon notices" wait_log "remounted read-only"
before=$(md5sum <"$POOL")
cat "$MNT/d" >/dev/null
"$B" sync "$MNT"
check "... and the pool file does not change on reads" test "$(md5sum <"$POOL")" = "$before"
check "mount -i -o remount,rw" mount -i -o remount,rw "$MNT"
check "... the daemon notices" wait_log "remounted read-write"
check "... writing works" bash -c "echo more >>'$MNT/d'"
rfs_umount
check "fsck clean" rfs_fsck

# --- the systemd mount unit of the docs
if command -v systemd-analyze >/dev/null; then
	check "systemd-analyze verify docs/systemd/mnt-reflinkfs.mount" \
		systemd-analyze verify "$(dirname "$0")/../../docs/systemd/mnt-reflinkfs.mount"
fi
rfs_finish
