#!/usr/bin/env bash
# Clearing set-user-ID, set-group-ID and security.capability when a file
# changes, with FUSE_HANDLE_KILLPRIV_V2 (src/fuse/killpriv.c): the kernel
# leaves it to the daemon, so each way of changing a file is checked here
# against the same steps on native ext4 (the scratch directory), by a
# non-root user (setpriv) and by root.  And the point of it: a run of
# writes reaches the daemon with no GETXATTR per WRITE.
source "$(dirname "$0")/lib.bash"
rfs_setup 1G -o allow_other,suid

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
U=(setpriv --reuid=65534 --regid=65534 --clear-groups)
chmod 755 "$SCRATCH" # mktemp made it 0700: let the user reach both
NATIVE=$SCRATCH/native
mkdir -p "$NATIVE"
chmod 777 "$NATIVE" "$MNT"
# struct vfs_cap_data, revision 2, effective, permitted cap_net_raw
CAP=0x0100000200200000000000000000000000000000

if ! "${U[@]}" true 2>/dev/null; then
	log "skip: setpriv cannot change user here"
	rfs_finish
	exit
fi

# mk DIR NAME MODE OWNER [cap]: a file of 8 KiB made by root.
mk() {
	local f=$1/$2
	rm -f "$f"
	head -c 8192 /dev/zero >"$f"
	chown "$4" "$f"
	chmod "$3" "$f"
	if [ "${5:-}" = cap ]; then
		setfattr -n security.capability -v "$CAP" "$f" || return 1
	fi
}
# state DIR NAME: "MODE cap|nocap"
state() {
	local c=nocap
	getfattr -n security.capability "$1/$2" >/dev/null 2>&1 && c=cap
	echo "$(stat -c %a "$1/$2") $c"
}
# same DESC WANT NAME MODE OWNER CAPARG -- ACTION...: run ACTION (with
# the file's path appended) on native ext4 and on the mount; both must
# end in state WANT.
same() {
	local desc=$1 want=$2 name=$3 mode=$4 owner=$5 cap=$6
	shift 7
	local d got=()
	for d in "$NATIVE" "$MNT"; do
		mk "$d" "$name" "$mode" "$owner" "$cap" || { check "$desc: setup" false; return; }
		"$@" "$d/$name" >/dev/null 2>&1
		got+=("$(state "$d" "$name")")
	done
	check "$desc: ext4 '${got[0]}', reflinkfs '${got[1]}', want '$want'" \
		test "${got[0]}" = "$want" -a "${got[1]}" = "$want"
}

append() { echo x >>"$1"; }
user_append() { "${U[@]}" bash -c 'echo x >>"$1"' _ "$1"; }
user_trunc() { "${U[@]}" truncate -s 100 "$1"; }
user_otrunc() { "${U[@]}" bash -c ': >"$1"' _ "$1"; }
user_falloc() { "${U[@]}" fallocate -o 8192 -l 65536 "$1"; }
# from a file of the same filesystem (across them Linux says EXDEV)
# copy_range SRC DST LEN: copy_file_range(2) of LEN bytes at offset 0.
# Not xfs_io: it stats every mount of the machine as it starts, so a
# FUSE daemon stopped or stuck elsewhere (another test's) hangs it.
copy_range() {
	python3 -c 'import os, sys
s = os.open(sys.argv[1], os.O_RDONLY)
d = os.open(sys.argv[2], os.O_WRONLY)
n = int(sys.argv[3])
while n > 0:
    c = os.copy_file_range(s, d, n, 0, 0)
    if c == 0:
        break
    n -= c' "$@"
}
user_copy() { "${U[@]}" bash -c "$(declare -f copy_range); copy_range ${1%/*}/src $1 4096"; }
chown_user() { chown 65534 "$1"; }
head -c 4096 /dev/urandom >"$SCRATCH/src"
chmod 644 "$SCRATCH/src"
cp "$SCRATCH/src" "$NATIVE/src"
cp "$SCRATCH/src" "$MNT/src"

same "user write clears set-user-ID" "777 nocap" f 4777 0:0 - -- user_append
same "user write clears security.capability" "777 nocap" f 777 0:0 cap -- user_append
same "user write clears set-group-ID of a group-executable file" "777 nocap" f 2777 0:0 - -- user_append
# the writer is in the file's group: Linux keeps the bit then
same "user write keeps set-group-ID without group execute" "2666 nocap" f 2666 0:65534 - -- user_append
same "root write keeps set-user-ID and set-group-ID (CAP_FSETID)" "6777 nocap" f 6777 0:0 - -- append
same "root write still clears security.capability" "777 nocap" f 777 0:0 cap -- append
same "user truncate clears set-user-ID and capability" "777 nocap" f 4777 0:0 cap -- user_trunc
same "user open O_TRUNC clears set-user-ID" "777 nocap" f 4777 0:0 - -- user_otrunc
same "chown, even by root, clears set-user-ID, capability" "755 nocap" f 4755 0:0 cap -- chown_user
same "chown clears set-group-ID of a group-executable file" "755 nocap" f 2755 0:0 - -- chown_user
same "user fallocate clears set-user-ID" "777 nocap" f 4777 0:0 - -- user_falloc
: >"$SCRATCH/probe"
if copy_range "$SCRATCH/src" "$SCRATCH/probe" 1 2>/dev/null; then
	same "user copy_file_range clears set-user-ID" "777 nocap" f 4777 0:0 - -- user_copy
else
	log "skip copy_file_range: not supported here"
fi

# The clone ioctl (no native counterpart): new content, so the same rule.
mk "$MNT" f 4777 0:0
mk "$MNT" g 644 0:0
"${U[@]}" "$RFS_BIN" clone "$MNT/g" "$MNT/f" >/dev/null 2>&1
check "user clone onto a set-user-ID file clears it ($(state "$MNT" f))" test "$(state "$MNT" f)" = "777 nocap"

# The kernel must not keep the old mode: an exec right after a user's
# write must not run set-user-ID (the daemon invalidates the attributes).
cp /usr/bin/id "$MNT/id"
chmod 4777 "$MNT/id"
"${U[@]}" "$MNT/id" -u >"$SCRATCH/before" 2>&1
"${U[@]}" bash -c 'printf "\0" >>"$1"' _ "$MNT/id"
"${U[@]}" "$MNT/id" -u >"$SCRATCH/after" 2>&1
if [ "$(cat "$SCRATCH/before")" = 0 ]; then
	check "exec after a user's write runs as the user ($(cat "$SCRATCH/after"))" \
		test "$(cat "$SCRATCH/after")" = 65534
else
	log "skip exec check: the mount does not honour set-user-ID here ($(cat "$SCRATCH/before"))"
fi

# ---- no GETXATTR per WRITE
cc -O2 -o "$SCRATCH/rfsbench" "$ROOT/bench/fs/rfsbench.c"
head -c 1M /dev/zero >"$MNT/w"
for who in root user; do
	chmod 666 "$MNT/w"
	"$SCRATCH/rfsbench" reqs "$MNT" >"$SCRATCH/reqs0"
	if [ $who = root ]; then
		dd if=/dev/zero of="$MNT/w" bs=4k count=256 conv=notrunc status=none
	else
		"${U[@]}" dd if=/dev/zero of="$MNT/w" bs=4k count=256 conv=notrunc status=none
	fi
	"$SCRATCH/rfsbench" reqs "$MNT" "$SCRATCH/reqs0" >"$SCRATCH/reqs"
	w=$(grep -o 'WRITE=[0-9]*' "$SCRATCH/reqs" | cut -d= -f2)
	x=$(grep -o 'GETXATTR=[0-9]*' "$SCRATCH/reqs" | cut -d= -f2)
	check "$who: 256 writes of 4 KiB: ${w:-0} WRITE, ${x:-0} GETXATTR (at most 4)" \
		test "${w:-0}" -ge 256 -a "${x:-0}" -le 4
done

rfs_finish
