#!/usr/bin/env bash
# A clone onto a file makes the kernel drop its cached pages
# (notify_inval_inode), and with the writeback cache the dirty ones are
# written back first: WRITE requests that other workers must serve while
# the clone's worker waits.  With -o threads=2 and eight such clones at
# once every worker waited for WRITEs nobody read, for good (libfuse's
# loop: the daemon hung).  Now each such wait has a temporary worker
# stand in (src/fuse/workers.c): every clone returns, and each file holds
# the source's bytes.  The clones get 20 s (a hang is the failure; no
# timing threshold).
source "$(dirname "$0")/lib.bash"
rfs_setup 512M -o threads=2,writeback
cat >"$SCRATCH/clone_dirty.py" <<'PY'
import fcntl, os, struct, sys, threading
# DIR N: files DIR/d0..d(N-1), each with a dirty page cache (writeback
# cache), cloned over from DIR/src by RFS_IOC_CLONE all at once.
d, n = sys.argv[1], int(sys.argv[2])
RFS_IOC_CLONE = 0x40105201  # _IOW('R', 1, struct rfs_ioc_clone)
src = os.open(d + "/src", os.O_RDONLY)
ino = os.fstat(src).st_ino
fds = []
for i in range(n):
    fd = os.open("%s/d%d" % (d, i), os.O_RDWR)
    os.pwrite(fd, b"x" * 65536, 0)
    fds.append(fd)
bar = threading.Barrier(n)
errs = []
def one(fd):
    bar.wait()
    try:
        fcntl.ioctl(fd, RFS_IOC_CLONE, struct.pack("qQ", src, ino))
    except OSError as e:
        errs.append(e)
ts = [threading.Thread(target=one, args=(fd,)) for fd in fds]
for t in ts:
    t.start()
for t in ts:
    t.join()
if errs:
    print("clone errors:", errs)
sys.exit(1 if errs else 0)
PY
head -c 65536 /dev/urandom >"$SCRATCH/src"
cp "$SCRATCH/src" "$MNT/src"
for i in $(seq 0 7); do echo old >"$MNT/d$i"; done
# The mount's FUSE connection (its device minor), to abort a hung daemon:
# its workers would wait in the kernel for good, and no signal ends them.
conn=$(fuse_conn_of "$MNT")
if ! timeout -s KILL 20 python3 "$SCRATCH/clone_dirty.py" "$MNT" 8 >"$SCRATCH/clone.out" 2>&1; then
	cat "$SCRATCH/clone.out"
	abort_conn "$conn"
	check "eight clones onto files with dirty pages at once all return" false
	rfs_finish
	exit 1
fi
check "eight clones onto files with dirty pages at once all return" true
same=1
for i in $(seq 0 7); do cmp -s "$SCRATCH/src" "$MNT/d$i" || same=0; done
check "... and each file holds the source's bytes" test "$same" = 1
check "unmount" rfs_umount
check "fsck clean" rfs_fsck
rfs_finish
