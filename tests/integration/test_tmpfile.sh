#!/usr/bin/env bash
# O_TMPFILE on a mount (the daemon answers FUSE_TMPFILE itself: libfuse
# 3.14 has no handler, src/fuse/tmpfile.c): a file with no name, which
# linkat can name unless it was opened with O_EXCL, and which is freed when
# closed unnamed, also after a crash.
. "$(dirname "$0")/lib.bash"
rfs_setup 1G
cd "$SCRATCH" || exit 1
mkdir "$MNT/d"
used_inodes() { stat -f -c '%c %d' "$MNT" | awk '{print $1 - $2}'; }
# The kernel sends the FORGET that frees a closed tmpfile asynchronously:
# wait (up to 5 s) for the inode count to reach $1.
inodes_become() {
	local i
	for i in $(seq 50); do
		[ "$(used_inodes)" = "$1" ] && return 0
		sleep 0.1
	done
	echo "inodes in use: $(used_inodes), expected $1"
	return 1
}

PY='
import ctypes, errno, os, sys
libc = ctypes.CDLL(None, use_errno=True)
def flink(fd, path):
    if libc.linkat(fd, b"", -100, path.encode(), 0x1000) != 0:  # AT_EMPTY_PATH
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), path)
d = sys.argv[1]
'

check "O_TMPFILE: a file with no name, readable and writable" python3 -c "$PY
fd = os.open(d, os.O_TMPFILE | os.O_RDWR, 0o640)
os.write(fd, b'x' * 100000)
st = os.fstat(fd)
assert st.st_nlink == 0, st
assert oct(st.st_mode) == '0o100640', oct(st.st_mode)
assert os.listdir(d) == [], os.listdir(d)
assert os.pread(fd, 10, 99995) == b'xxxxx'
" "$MNT/d"
check "... gone when closed: inodes back to where they were" inodes_become 2
check "linkat gives it a name" python3 -c "$PY
fd = os.open(d, os.O_TMPFILE | os.O_RDWR, 0o600)
os.write(fd, b'tmpdata')
flink(fd, d + '/named')
assert os.fstat(fd).st_nlink == 1
assert open(d + '/named', 'rb').read() == b'tmpdata'
assert os.stat(d + '/named').st_ino == os.fstat(fd).st_ino
" "$MNT/d"
check "O_TMPFILE | O_EXCL cannot be named (ENOENT)" python3 -c "$PY
fd = os.open(d, os.O_TMPFILE | os.O_RDWR | os.O_EXCL, 0o600)
try:
    flink(fd, d + '/excl')
    sys.exit('linked')
except OSError as e:
    assert e.errno == errno.ENOENT, e
" "$MNT/d"
check "O_TMPFILE on a file gives ENOTDIR" python3 -c "$PY
try:
    os.open(d + '/named', os.O_TMPFILE | os.O_RDWR, 0o600)
    sys.exit('opened')
except OSError as e:
    assert e.errno == errno.ENOTDIR, e
" "$MNT/d"

# A tmpfile held open by a process when the daemon dies.
python3 -c "$PY
import time
fd = os.open(d, os.O_TMPFILE | os.O_RDWR, 0o600)
os.write(fd, b'y' * 3000000)
os.fsync(fd)
print('ready', flush=True)
time.sleep(60)
" "$MNT/d" >"$SCRATCH/holder.out" 2>&1 &
holder=$!
for _ in $(seq 100); do grep -q ready "$SCRATCH/holder.out" && break; sleep 0.1; done
check "a tmpfile is held open and fsynced" grep -q ready "$SCRATCH/holder.out"
rfs_kill9
kill "$holder" 2>/dev/null
wait "$holder" 2>/dev/null
check "fsck after a crash with an open tmpfile" rfs_fsck
check "mount after the crash" rfs_mount
check "... freed the tmpfile (inode count)" test "$(used_inodes)" = 3
check "... the named tmpfile survived" bash -c "[ \"\$(cat '$MNT/d/named')\" = tmpdata ]"
check "unmount" rfs_umount
check "fsck clean" rfs_fsck
rfs_finish
