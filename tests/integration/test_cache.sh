#!/usr/bin/env bash
# The kernel keeps names, attributes, symlink targets and directory
# listings of the mount for a day (src/fuse/mount.c, op_opendir): warm
# metadata must cost no request to the daemon, and no process may ever see
# a stale name, size, link count, target or listing after a change, made
# through the mount by another process or by the daemon itself (clone
# ioctl).  Requests are counted with RFS_IOC_REQ_STATS.
. "$(dirname "$0")/lib.bash"
rfs_setup 1G
cd "$SCRATCH" || exit 1

# reqs: "OP=N" lines of the daemon's request counts (probe included).
cat >"$SCRATCH/reqs.py" <<'EOF'
import array, fcntl, os, sys
NAMES = {1: "LOOKUP", 3: "GETATTR", 5: "READLINK", 18: "RELEASE", 25: "FLUSH",
         22: "GETXATTR", 27: "OPENDIR", 28: "READDIR", 29: "RELEASEDIR", 39: "IOCTL",
         44: "READDIRPLUS"}
RFS_IOC_REQ_STATS = (2 << 30) | (512 << 16) | (ord("R") << 8) | 40  # _IOR('R', 40, 64 x u64)
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)
buf = array.array("Q", [0] * 64)
fcntl.ioctl(fd, RFS_IOC_REQ_STATS, buf, True)
os.close(fd)
for op, name in NAMES.items():
    print(f"{name}={buf[op]}")
EOF
reqs() { python3 "$SCRATCH/reqs.py" "$MNT"; }
# count OP FILE: the count of OP in a saved reqs output.
count() { sed -n "s/^$1=//p" "$2"; }

mkdir -p "$MNT/t/a/b" "$MNT/t/c"
for i in $(seq 40); do echo "$i" >"$MNT/t/a/f$i"; echo "$i" >"$MNT/t/a/b/g$i"; done
ln -s a/f1 "$MNT/t/link1"
ln -s ../a/b "$MNT/t/c/link2"
walk() {
	find "$MNT/t" -printf '%p %s %m %n\n' >/dev/null &&
		ls -lR "$MNT/t" >/dev/null && readlink "$MNT/t/link1" "$MNT/t/c/link2" >/dev/null &&
		stat "$MNT"/t/a/f* >/dev/null
}
check "requests are counted" bash -c "python3 '$SCRATCH/reqs.py' '$MNT' | grep -q '^IOCTL=[1-9]'"
# Twice: the first readlink (READLINK) makes the kernel refetch the
# symlink's atime at its next stat, which comes in the second walk.
walk
walk
reqs >"$SCRATCH/r1"
walk
walk
reqs >"$SCRATCH/r2"
warm_free() {
	local op bad=0
	for op in LOOKUP GETATTR READLINK OPENDIR READDIR READDIRPLUS RELEASEDIR; do
		if [ "$(count $op "$SCRATCH/r1")" != "$(count $op "$SCRATCH/r2")" ]; then
			echo "$op: $(count $op "$SCRATCH/r1") before, $(count $op "$SCRATCH/r2") after"
			bad=1
		fi
	done
	return $bad
}
check "warm find, ls -lR, readlink, stat: no lookup, getattr, readlink, opendir, readdir or releasedir request" warm_free
check "warm walk: the IOCTL probe itself was counted" \
	test "$(count IOCTL "$SCRATCH/r2")" -gt "$(count IOCTL "$SCRATCH/r1")"

# Every readdir reply carries the entries' attributes (READDIRPLUS, not
# only the first reply of a listing): what `cp -a` inside the mount does
# to a tree just copied in.  Setting an ACL (cp -a sets one on every file)
# makes the kernel drop the file's cached attributes; the listing of a
# directory too large for one reply (1,000 entries against ~190 per
# 32 KiB reply) then brings them all back, and a stat of every entry
# costs no GETATTR or LOOKUP.  With READDIRPLUS_AUTO the replies after
# the first were plain READDIR, and each later entry cost a GETATTR.
cat >"$SCRATCH/plus.py" <<'EOF'
import os, struct, sys
d = sys.argv[1]
os.mkdir(d)
acl = struct.pack("<I", 2) + b"".join(struct.pack("<HHI", tag, perm, 0xFFFFFFFF)
                                      for tag, perm in ((1, 6), (4, 4), (0x20, 4)))
for i in range(1000):
    p = os.path.join(d, "entry-with-a-longer-name-%04d" % i)
    os.close(os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    os.setxattr(p, "system.posix_acl_access", acl)
EOF
python3 "$SCRATCH/plus.py" "$MNT/plus"
reqs >"$SCRATCH/p0"
ls "$MNT/plus" >"$SCRATCH/plus.ls"
# The directory's own attributes: the readdir that fills its cached
# listing makes the kernel refetch its atime at the next stat.
stat "$MNT/plus" >/dev/null
reqs >"$SCRATCH/p1"
(cd "$MNT/plus" && xargs stat -c '%s %a' <"$SCRATCH/plus.ls") >"$SCRATCH/plus.st"
reqs >"$SCRATCH/p2"
check "listing of 1,000 entries whose attributes were dropped: all of them listed" \
	test "$(wc -l <"$SCRATCH/plus.ls")" = 1000
check "the listing was READDIRPLUS only" \
	test "$(count READDIR "$SCRATCH/p1")" = "$(count READDIR "$SCRATCH/p0")" -a \
	"$(count READDIRPLUS "$SCRATCH/p1")" -gt "$(count READDIRPLUS "$SCRATCH/p0")"
check "a stat of each entry after the listing: no GETATTR ($(($(count GETATTR "$SCRATCH/p2") - $(count GETATTR "$SCRATCH/p1")))) or LOOKUP" \
	test "$(count GETATTR "$SCRATCH/p2")" = "$(count GETATTR "$SCRATCH/p1")" -a \
	"$(count LOOKUP "$SCRATCH/p2")" = "$(count LOOKUP "$SCRATCH/p1")"
check "the stat saw the modes the ACL set" \
	test "$(sort -u "$SCRATCH/plus.st")" = "0 644"

# The daemon's time per opcode (RFS_IOC_REQ_TIMES): an absent user xattr
# is not cached by the kernel, so each getfattr is a GETXATTR whose
# handling time is added.
cat >"$SCRATCH/times.py" <<'EOF'
import array, fcntl, os, sys
RFS_IOC_REQ_TIMES = (2 << 30) | (520 << 16) | (ord("R") << 8) | 41  # _IOR('R', 41, 65 x u64)
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)
buf = array.array("Q", [0] * 65)
fcntl.ioctl(fd, RFS_IOC_REQ_TIMES, buf, True)
os.close(fd)
print(buf[22 if sys.argv[2:] != ["switches"] else 64])  # GETXATTR's time or the switches
EOF
gx0=$(python3 "$SCRATCH/times.py" "$MNT")
for i in 1 2 3; do getfattr -n user.absent "$MNT/t/a/f1" >/dev/null 2>&1; done
gx1=$(python3 "$SCRATCH/times.py" "$MNT")
check "the daemon's time on GETXATTR requests is counted" test "$gx1" -gt "$gx0"

# Worker switches are counted (RFS_IOC_REQ_TIMES): libfuse's pool serves
# a sequential client's requests on alternating workers, one switch per
# request or nearly.
sw0=$(python3 "$SCRATCH/times.py" "$MNT" switches)
for i in $(seq 20); do getfattr -n user.absent "$MNT/t/a/f1" >/dev/null 2>&1; done
sw1=$(python3 "$SCRATCH/times.py" "$MNT" switches)
if grep -q "FUSE over io_uring" "$SCRATCH/daemon.log"; then
	# Over io_uring (uring.c) the client's CPU's ring thread serves
	# them all: counted, but no switch is needed.
	check "ring thread switches are counted ($((sw1 - sw0)) for 20 GETXATTRs over io_uring)" \
		test $((sw1 - sw0)) -ge 0 -a $((sw1 - sw0)) -le 20
else
	check "worker switches are counted ($((sw1 - sw0)) for 20 GETXATTRs)" test $((sw1 - sw0)) -ge 1
fi

# ls -l asks every file for security.selinux; without SELinux on the host
# an absent label is "not supported", and ls then stops asking for the
# whole mount: one GETXATTR per ls, not one per file.  A label that was
# set is still stored and returned.
if [ ! -e /sys/fs/selinux/enforce ]; then
	ls -l "$MNT/t/a" >/dev/null
	reqs >"$SCRATCH/x1"
	ls -l "$MNT/t/a" >/dev/null
	reqs >"$SCRATCH/x2"
	check "ls -l of 41 entries: at most one GETXATTR" \
		test $(($(count GETXATTR "$SCRATCH/x2") - $(count GETXATTR "$SCRATCH/x1"))) -le 1
	check "an absent security.selinux is 'not supported'" bash -c \
		"! getfattr -n security.selinux '$MNT/t/a/f2' 2>&1 | grep -q 'No such attribute' &&
		 getfattr -n security.selinux '$MNT/t/a/f2' 2>&1 | grep -q 'Operation not supported'"
	setfattr -n security.selinux -v system_u:object_r:etc_t:s0 "$MNT/t/a/f3"
	check "a security.selinux that was set is returned" bash -c \
		"getfattr --only-values -n security.selinux '$MNT/t/a/f3' | grep -q '^system_u:object_r:etc_t:s0'"
	check "other absent xattrs are still 'no such attribute'" bash -c \
		"getfattr -n user.none '$MNT/t/a/f2' 2>&1 | grep -q 'No such attribute' &&
		 getfattr -n security.other '$MNT/t/a/f2' 2>&1 | grep -q 'No such attribute'"
	setfattr -x security.selinux "$MNT/t/a/f3"
fi

# close() costs no FLUSH: the daemon answered the first one ENOSYS, so
# the kernel stops sending them (RELEASE still comes, one per open).
for i in $(seq 20); do echo "$i" >"$MNT/t/flush$i"; cat "$MNT/t/flush$i" >/dev/null; done
reqs >"$SCRATCH/f1"
for i in $(seq 20); do echo "$i" >>"$MNT/t/flush$i"; cat "$MNT/t/flush$i" >/dev/null; done
reqs >"$SCRATCH/f2"
check "40 opens and closes: 40 RELEASE" \
	test $(($(count RELEASE "$SCRATCH/f2") - $(count RELEASE "$SCRATCH/f1"))) -eq 40
check "40 opens and closes: no FLUSH" \
	test "$(count FLUSH "$SCRATCH/f2")" = "$(count FLUSH "$SCRATCH/f1")"
check "appended data was written at close without FLUSH" \
	test "$(cat "$MNT/t/flush7")" = "$(printf '7\n7')"

# Every change below is made by one process and checked at once by others
# (ls, stat, readlink, cat are separate processes; python keeps its own
# descriptors), after the listing and attributes were cached.
cat >"$SCRATCH/coherent.py" <<'EOF'
import os, subprocess, sys
mnt, rfs = sys.argv[1], sys.argv[2]
d = os.path.join(mnt, "co")
os.mkdir(d)
def run(*a):
    return subprocess.run(a, check=True, capture_output=True, text=True).stdout
def ls(p=d):
    return sorted(run("ls", "-a", p).split())
def stat(fmt, p):
    return run("stat", "-c", fmt, p).strip()
def expect(what, got, want):
    if got != want:
        print(f"STALE {what}: got {got!r}, want {want!r}")
        sys.exit(1)
def prime(*paths):
    ls()
    for p in paths:
        if os.path.lexists(p):
            stat("%s %h %i %a", p)
f, g, h = (os.path.join(d, n) for n in ("f", "g", "h"))
prime(f)
fd = os.open(f, os.O_CREAT | os.O_RDWR, 0o644)
expect("listing after create", ls(), [".", "..", "f"])
expect("size of a new file", stat("%s", f), "0")
prime(f)
os.write(fd, b"x" * 1000)
expect("size after a write (file still open)", stat("%s", f), "1000")
os.close(fd)
prime(f)
os.rename(f, g)
expect("listing after rename", ls(), [".", "..", "g"])
expect("old name after rename", os.path.lexists(f), False)
prime(g)
os.link(g, h)
expect("link count after link", stat("%h", g), "2")
expect("listing after link", ls(), [".", "..", "g", "h"])
prime(g, h)
os.unlink(h)
expect("link count after unlink", stat("%h", g), "1")
expect("listing after unlink", ls(), [".", "..", "g"])
prime(g)
run("truncate", "-s", "10", g)
expect("size after truncate by another process", os.stat(g).st_size, 10)
run("chmod", "600", g)
expect("mode after chmod by another process", oct(os.stat(g).st_mode & 0o777), "0o600")
# symlink replaced by one with another target: same name, new inode
s = os.path.join(d, "s")
os.symlink("one", s)
expect("readlink", run("readlink", s).strip(), "one")
os.unlink(s)
os.symlink("two", s)
expect("readlink of a replaced symlink", run("readlink", s).strip(), "two")
os.unlink(s)
# a directory moved between two cached listings
sub, other = os.path.join(d, "sub"), os.path.join(d, "other")
os.mkdir(sub); os.mkdir(other)
open(os.path.join(sub, "inner"), "w").close()
prime(sub, other)
ls(sub); ls(other)
os.rename(sub, os.path.join(other, "sub"))
expect("listing of the old parent", ls(), [".", "..", "g", "other"])
expect("listing of the new parent", ls(other), [".", "..", "sub"])
expect("listing inside the moved directory", ls(os.path.join(other, "sub")), [".", "..", "inner"])
expect("link count of the new parent", stat("%h", other), "3")
os.unlink(os.path.join(other, "sub", "inner"))
os.rmdir(os.path.join(other, "sub"))
expect("listing after rmdir", ls(other), [".", ".."])
expect("link count after rmdir", stat("%h", other), "2")
# clone ioctl onto a file whose size and data another process has cached
c = os.path.join(d, "c")
with open(c, "w") as fh:
    fh.write("old")
expect("data before clone", run("cat", c), "old")
prime(c)
with open(g, "wb") as fh:
    fh.write(b"new data, longer")
run(rfs, "clone", g, c)
expect("size after clone ioctl", stat("%s", c), "16")
expect("data after clone ioctl", run("cat", c), "new data, longer")
# copy_file_range (cp) onto a file another process has cached
c2 = os.path.join(d, "c2")
with open(c2, "w") as fh:
    fh.write("x" * 100)
expect("data before cp", run("cat", c2), "x" * 100)
prime(c2)
run("cp", g, c2)
expect("size after cp", stat("%s", c2), "16")
expect("data after cp", run("cat", c2), "new data, longer")
print("ok")
EOF
check "no stale name, size, link count, target, listing or data" \
	python3 "$SCRATCH/coherent.py" "$MNT" "$RFS_BIN"
# Snapshot create and delete change the parent behind the kernel's back:
# its cached listing must go, also when the new name was never looked up
# (os.listdir neither stats the directory nor looks the name up).
mkdir -p "$MNT/sn/src" "$MNT/sn/parent"
echo data >"$MNT/sn/src/file"
listing() { python3 -c 'import os, sys; print(" ".join(sorted(os.listdir(sys.argv[1]))))' "$1"; }
listing "$MNT/sn/parent" >/dev/null
listing "$MNT/sn/parent" >/dev/null
"$RFS_BIN" snapshot "$MNT/sn/src" "$MNT/sn/parent/snap" >/dev/null
check "listing right after a snapshot shows it" test "$(listing "$MNT/sn/parent")" = "snap"
check "the snapshot's content" test "$(cat "$MNT/sn/parent/snap/file")" = data
"$RFS_BIN" snapshot delete "$MNT/sn/parent/snap" >/dev/null
check "listing right after the snapshot's delete" test "$(listing "$MNT/sn/parent")" = ""
check "the deleted snapshot's name is gone" test ! -e "$MNT/sn/parent/snap"
# The CLI looks DST up first (a negative dentry, which the entry
# invalidation finds); the bare ioctl names a name the kernel never saw.
cat >"$SCRATCH/snap.py" <<'EOF'
import fcntl, os, struct, sys
src, parent, name = sys.argv[1:4]
RFS_IOC_SNAPSHOT = (3 << 30) | (288 << 16) | (ord("R") << 8) | 11
sfd = os.open(src, os.O_RDONLY | os.O_DIRECTORY)
pfd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY)
arg = bytearray(struct.pack("=qQIIQ256s", sfd, os.fstat(sfd).st_ino, 0, 0, 0, name.encode()))
fcntl.ioctl(pfd, RFS_IOC_SNAPSHOT, arg, True)
EOF
listing "$MNT/sn/parent" >/dev/null
python3 "$SCRATCH/snap.py" "$MNT/sn/src" "$MNT/sn/parent" unseen
check "listing right after a snapshot (RFS_IOC_SNAPSHOT) of a name never looked up" \
	test "$(listing "$MNT/sn/parent")" = "unseen"
# A reader that keeps the directory open and rewinds it (rewinddir: no
# path walk or fstat refreshes the parent's attributes in between, so
# only dropping the cached listing itself shows the new entry).
cat >"$SCRATCH/rewind.py" <<'EOF'
import ctypes, os, subprocess, sys
d, snap, src, name = sys.argv[1:5]
libc = ctypes.CDLL(None, use_errno=True)
libc.opendir.restype = ctypes.c_void_p
libc.readdir.restype = ctypes.c_void_p
libc.readdir.argtypes = libc.rewinddir.argtypes = libc.closedir.argtypes = [ctypes.c_void_p]
def names(dp):
    out = []
    while True:
        e = libc.readdir(dp)
        if not e:
            return sorted(n for n in out if n not in (".", ".."))
        out.append(ctypes.string_at(e + 19).decode())  # glibc x86-64 d_name
dp = libc.opendir(d.encode())
before = names(dp)
subprocess.run(["python3", snap, src, d, name], check=True)
libc.rewinddir(dp)
after = names(dp)
libc.closedir(dp)
if after != sorted(before + [name]):
    sys.exit(f"STALE listing after rewinddir: before {before}, after {after}")
EOF
mkdir "$MNT/sn/p2"
check "rewinddir of an open directory right after a snapshot in it" \
	python3 "$SCRATCH/rewind.py" "$MNT/sn/p2" "$SCRATCH/snap.py" "$MNT/sn/src" s2
rfs_finish
