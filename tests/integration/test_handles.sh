#!/usr/bin/env bash
# File handles (name_to_handle_at / open_by_handle_at, what NFS and
# fstests generic/426, 467, 477, 756, 777 use) stay valid after the kernel
# evicted the inode (drop_caches) and across a remount: the kernel then
# asks LOOKUP(node id, "."), which the daemon answers by inode number
# through the back-pointer index.  A deleted inode, or a handle with
# another generation, gives ESTALE.
. "$(dirname "$0")/lib.bash"
if [ "$(id -u)" -ne 0 ]; then
	echo "open_by_handle_at needs CAP_DAC_READ_SEARCH: skipping"
	exit 77
fi
rfs_setup 1G
cd "$SCRATCH" || exit 1

cat >"$SCRATCH/fh.py" <<'EOF'
# fh.py save PATH FILE | open MOUNT FILE [EXPECT] | gen MOUNT FILE
import ctypes, errno, os, sys
libc = ctypes.CDLL(None, use_errno=True)
class FH(ctypes.Structure):
    _fields_ = [("handle_bytes", ctypes.c_uint), ("handle_type", ctypes.c_int),
                ("f_handle", ctypes.c_ubyte * 128)]
def fail(what):
    e = ctypes.get_errno()
    raise OSError(e, "%s: %s" % (what, os.strerror(e)))
def open_handle(mnt, fh):
    mfd = os.open(mnt, os.O_RDONLY | os.O_DIRECTORY)
    fd = libc.open_by_handle_at(mfd, ctypes.byref(fh), os.O_RDONLY)
    os.close(mfd)
    if fd < 0:
        fail("open_by_handle_at")
    return fd
def content(fd):
    if os.path.isdir("/proc/self/fd/%d" % fd):
        # the path: the kernel reconnected the directory up to the root
        # (LOOKUP(dir, "..") at every level)
        return "dir:%s:%s" % (os.readlink("/proc/self/fd/%d" % fd),
                              ",".join(sorted(os.listdir("/proc/self/fd/%d" % fd))))
    return os.read(fd, 4096).decode()
cmd, a, f = sys.argv[1:4]
if cmd == "save":
    fh = FH(); fh.handle_bytes = 128; mid = ctypes.c_int()
    if libc.name_to_handle_at(-100, a.encode(), ctypes.byref(fh), ctypes.byref(mid), 0):
        fail("name_to_handle_at " + a)
    open(f, "wb").write(bytes(fh))
    sys.exit(0)
fh = FH.from_buffer_copy(open(f, "rb").read())
if cmd == "gen":  # the same node id with another generation
    fh.f_handle[8] ^= 0x55
    try:
        open_handle(a, fh)
    except OSError as e:
        sys.exit(0 if e.errno == errno.ESTALE else "errno %d, not ESTALE" % e.errno)
    sys.exit("opened a handle with a wrong generation")
try:
    fd = open_handle(a, fh)
except OSError as e:
    if len(sys.argv) > 4 and sys.argv[4] == "ESTALE" and e.errno == errno.ESTALE:
        sys.exit(0)
    raise
got = content(fd)
os.close(fd)
if len(sys.argv) > 4 and got != sys.argv[4]:
    sys.exit("read %r, expected %r" % (got, sys.argv[4]))
EOF
fh() { python3 "$SCRATCH/fh.py" "$@"; }
evict() {
	sync
	echo 2 >/proc/sys/vm/drop_caches
}

mkdir -p "$MNT/a/b/c" "$MNT/z"
echo deep >"$MNT/a/b/c/file"
echo linked >"$MNT/a/hard"
ln "$MNT/a/hard" "$MNT/z/hard2"
echo top >"$MNT/top"
check "name_to_handle_at of a file, a directory, a hard link" bash -c "
	python3 '$SCRATCH/fh.py' save '$MNT/a/b/c/file' '$SCRATCH/h.file' &&
	python3 '$SCRATCH/fh.py' save '$MNT/a/b' '$SCRATCH/h.dir' &&
	python3 '$SCRATCH/fh.py' save '$MNT/z/hard2' '$SCRATCH/h.hard' &&
	python3 '$SCRATCH/fh.py' save '$MNT/top' '$SCRATCH/h.top'"
check "open_by_handle_at while the inode is cached" fh open "$MNT" "$SCRATCH/h.file" $'deep\n'
check "drop_caches evicts the kernel's inodes" evict
check "... a file's handle still opens it" fh open "$MNT" "$SCRATCH/h.file" $'deep\n'
evict
check "... a directory's handle, reconnected to its path" \
	fh open "$MNT" "$SCRATCH/h.dir" "dir:$MNT/a/b:c"
evict
check "... a hard link's handle" fh open "$MNT" "$SCRATCH/h.hard" $'linked\n'
check "a handle with another generation gives ESTALE" fh gen "$MNT" "$SCRATCH/h.top"
evict
check "... also once evicted" fh gen "$MNT" "$SCRATCH/h.top"

mv "$MNT/a/b" "$MNT/z/moved"
evict
check "after renaming a directory on the way" fh open "$MNT" "$SCRATCH/h.file" $'deep\n'

check "unmount" rfs_umount
check "mount again" rfs_mount
check "after a remount: the file" fh open "$MNT" "$SCRATCH/h.file" $'deep\n'
check "... the directory (renamed before the remount)" \
	fh open "$MNT" "$SCRATCH/h.dir" "dir:$MNT/z/moved:c"
check "... the hard link" fh open "$MNT" "$SCRATCH/h.hard" $'linked\n'

rm "$MNT/z/moved/c/file"
evict
check "a deleted file's handle gives ESTALE" fh open "$MNT" "$SCRATCH/h.file" ESTALE
check "the other handles still work" fh open "$MNT" "$SCRATCH/h.top" $'top\n'
check "unmount" rfs_umount
check "fsck clean" rfs_fsck
rfs_finish
