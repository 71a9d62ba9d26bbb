#!/usr/bin/env bash
# Xattrs and POSIX ACLs on a real mount: the errno of each refused name or
# value is the one ext4 gives (the kernel passes every xattr name through
# FUSE, so the daemon applies the namespace rules).
. "$(dirname "$0")/lib.bash"
rfs_setup 256M -o allow_other

# xerr FILE NAME [HEXVALUE | zeros:N]: print the errno name of setxattr (or "ok";
# Python names EOPNOTSUPP ENOTSUP, the same number on Linux)
xerr() {
	python3 - "$@" <<'EOF'
import errno, os, sys
f, name = sys.argv[1], sys.argv[2]
val = sys.argv[3] if len(sys.argv) > 3 else "76"
val = bytes(int(val[6:])) if val.startswith("zeros:") else bytes.fromhex(val)
try:
    os.setxattr(f, name, val)
    print("ok")
except OSError as e:
    print(errno.errorcode[e.errno])
EOF
}
# is WANT CMD...: CMD prints WANT
is() {
	local want=$1 got
	shift
	got=$("$@")
	[ "$got" = "$want" ] || { echo "got '$got', want '$want'"; return 1; }
}

touch "$MNT/f"
mkdir "$MNT/d"
for n in bogus.x os2.x system.foo system. system.data; do
	check "setxattr $n: EOPNOTSUPP (as ext4)" is ENOTSUP xerr "$MNT/f" "$n"
done
for n in user. trusted. security.; do
	check "setxattr $n: EINVAL (as ext4)" is EINVAL xerr "$MNT/f" "$n"
done
for n in user.a trusted.a security.a; do
	check "setxattr $n works" is ok xerr "$MNT/f" "$n"
done
check "getfattr -d lists what was set" bash -c "getfattr -d -m - '$MNT/f' | grep -c '^[a-z]' | grep -qx 3"
check "getxattr bogus.x: EOPNOTSUPP" bash -c "getfattr -n bogus.x '$MNT/f' 2>&1 | grep -q 'Operation not supported'"
# ACLs: the kernel validates the value before it reaches FUSE
check "a valid ACL is set" setfacl -m u:1234:rw "$MNT/f"
check "... and read back" bash -c "getfacl -p '$MNT/f' | grep -q 'user:1234:rw-'"
check "an ACL without the other entry: EINVAL" is EINVAL xerr "$MNT/f" system.posix_acl_access \
	0200000001000600ffffffff04000400ffffffff
check "setfacl -b removes the ACL" bash -c "setfacl -b '$MNT/f' && ! getfattr -n system.posix_acl_access '$MNT/f' 2>/dev/null"
check "setfacl -b without an ACL is no error" setfacl -b "$MNT/f"
check "setfacl -k without a default ACL is no error" setfacl -k "$MNT/d"

# fstests generic/375: setting an access ACL clears the set-gid bit when
# the caller is neither in the file's group nor holds CAP_FSETID.  The
# kernel leaves that to a FUSE daemon, which reads the caller's groups and
# capabilities from /proc.  (setpriv drops every capability with --reuid.)
mkdir "$MNT/sg"
chmod 777 "$MNT/sg"
chmod 755 "$SCRATCH" # mktemp's 0700 would keep uid 1000 out
sgfile() { touch "$MNT/sg/$1" && chown 1000:0 "$MNT/sg/$1" && chmod 2775 "$MNT/sg/$1"; }
as_user() { setpriv --reuid=1000 --regid=1000 "$@"; }
mode() { stat -c %a "$MNT/sg/$1"; }
check "uid 1000 reaches the mount (else the parents of $SCRATCH need o+x)" \
	setpriv --reuid=1000 --regid=1000 --clear-groups test -w "$MNT/sg"
sgfile full
sgfile min
sgfile member
sgfile root
check "owner outside the group: setfacl -m u:2000:rwx clears set-gid" \
	bash -c "$(declare -f as_user); as_user --clear-groups setfacl -m u:2000:rwx '$MNT/sg/full'"
check "... mode 775" is 775 mode full
check "owner outside the group: setfacl -m u::rw (no named entry) clears set-gid" \
	bash -c "$(declare -f as_user); as_user --clear-groups setfacl -m u::rw '$MNT/sg/min'"
check "... mode 675" is 675 mode min
check "owner in the group (supplementary): set-gid kept" \
	bash -c "$(declare -f as_user); as_user --groups=0 setfacl -m u:2000:rwx '$MNT/sg/member'"
check "... mode 2775" is 2775 mode member
check "root (CAP_FSETID), not in the group: set-gid kept" \
	bash -c "chown 0:1000 '$MNT/sg/root' && chmod 2775 '$MNT/sg/root' && setpriv --regid=3000 --clear-groups setfacl -m u:2000:rwx '$MNT/sg/root'"
check "... mode 2775" is 2775 mode root

# 10,000 names: the name list stops at the kernel's 64 KiB, so that the
# names can still be listed (and so removed) through the mount.
touch "$MNT/many"
many() {
	python3 - "$MNT/many" <<'EOF'
import errno, os, sys
f = sys.argv[1]
for i in range(10000):
    try:
        os.setxattr(f, "user.%010d" % i, b"")
    except OSError as e:
        print(i, errno.errorcode[e.errno])
        break
EOF
}
check "10,000 xattr names: refused with ENOSPC at 64 KiB of names" is "4096 ENOSPC" many
listed() { getfattr -d "$MNT/many" | grep -c '^user\.'; }
check "getfattr -d lists all 4096" is 4096 listed
rfs_umount
rfs_mount
check "... also after a remount" is 4096 listed
check "the cleared set-gid bit stays cleared after the remount" is 775 mode full
check "every name can be removed by listing them" python3 -c "
import os, sys
f = sys.argv[1]
for n in os.listxattr(f):
    os.removexattr(f, n)
assert os.listxattr(f) == []
" "$MNT/many"
check "a value over 64 KiB: E2BIG" is E2BIG xerr "$MNT/f" user.big zeros:65537
rfs_umount
check "fsck clean" rfs_fsck
rfs_finish
