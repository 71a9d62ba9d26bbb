#!/usr/bin/env bash
# A SIGTERM while a worker waits in fuse_lowlevel_notify_inval_inode: a
# clone onto a file with dirty pages (writeback cache) makes the kernel
# write them back one WRITE per page, and the clone's worker waits in the
# kernel until each is answered.  The first of those WRITEs is held by a
# blocking watch whose subscriber never acknowledges, so the SIGTERM
# lands in the middle of the invalidation.  libfuse drops every request
# read once the session's exit flag is set, and the workers ended at it:
# the WRITEs after the released one were read by nobody, the clone's
# worker never came back and the daemon's join waited for good (only an
# abort through fusectl ended it).  Now the workers serve until no such
# wait is left (src/fuse/workers.c): the daemon exits with status 0, the
# clone returns, and after a remount the file holds the clone's bytes
# and a file fsynced before the SIGTERM its own.  No timing threshold:
# the exit is awaited up to 60 s; the hang lasts for ever.
source "$(dirname "$0")/lib.bash"
rfs_setup 512M -o threads=2,writeback
R=$RFS_BIN

gone() { ! kill -0 "$1" 2>/dev/null; }
trap 'held_watch_release; rfs_cleanup' EXIT

# The mount's FUSE connection, to abort a hung daemon (its worker waits
# in the kernel: no signal ends it).
conn=$(fuse_conn_of "$MNT")

cat >"$SCRATCH/clone_dirty.py" <<'PY'
import fcntl, os, struct, sys
# DIR: dirty every other page of DIR/w/f (64 pages, each its own folio:
# one WRITE each when the kernel drops them), then clone DIR/src onto it.
d = sys.argv[1]
RFS_IOC_CLONE = 0x40105201  # _IOW('R', 1, struct rfs_ioc_clone)
src = os.open(d + "/src", os.O_RDONLY)
ino = os.fstat(src).st_ino
fd = os.open(d + "/w/f", os.O_RDWR)
for i in range(64):
    os.pwrite(fd, b"d" * 4096, 2 * i * 4096)
fcntl.ioctl(fd, RFS_IOC_CLONE, struct.pack("qQ", src, ino))
PY

W=$MNT/w
mkdir -p "$W"
head -c 524288 /dev/urandom >"$SCRATCH/src"
cp "$SCRATCH/src" "$MNT/src"
head -c 524288 /dev/zero >"$W/f"
head -c 65536 /dev/urandom >"$SCRATCH/synced"
dd if="$SCRATCH/synced" of="$MNT/synced" conv=fsync status=none
"$R" sync "$MNT"

held_watch_start "$W"
check "the watch is ready" wait_until 60 grep -q ready "$SCRATCH/werr"
python3 "$SCRATCH/clone_dirty.py" "$MNT" >"$SCRATCH/clone.out" 2>&1 &
cloner=$!
check "a write-back WRITE is held by the watch" wait_until 60 test -e "$SCRATCH/in_exec"
# A daemon thread in the kernel's invalidation (fuse_reverse_inval_inode,
# waiting for the written-back pages): the SIGTERM lands in the middle.
in_inval() {
	grep -qs fuse_reverse_inval_inode /proc/"$DAEMON_PID"/task/*/stack
}
check "the clone's worker waits in the invalidation" wait_until 60 in_inval

kill -TERM "$DAEMON_PID"
if wait_until 60 gone "$DAEMON_PID"; then
	check "after a SIGTERM mid-invalidation the daemon exits" true
	wait "$DAEMON_PID"
	check "... with status 0" test "$?" = 0
else
	check "after a SIGTERM mid-invalidation the daemon exits" false
	abort_conn "$conn"
	wait "$DAEMON_PID"
fi
DAEMON_PID=
check "the clone returned" wait_until 60 gone "$cloner"
wait "$cloner"
check "... and succeeded" test "$?" = 0
cat "$SCRATCH/clone.out"
held_watch_release
grep -q " $MNT fuse" /proc/mounts && { fusermount3 -u "$MNT" 2>/dev/null || umount -l "$MNT"; }

check "mount again" rfs_mount
check "the cloned file holds the source's bytes" cmp "$SCRATCH/src" "$W/f"
check "the file fsynced before the SIGTERM is intact" cmp "$SCRATCH/synced" "$MNT/synced"
check "unmount" rfs_umount
check "fsck clean" rfs_fsck
rfs_finish
