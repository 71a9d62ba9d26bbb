#!/usr/bin/env bash
# Ordinary tools on a mounted reflinkfs: cp (a clone), mv, rm -r, ln,
# tar, rsync, diff -r, git clone, xattrs, permissions, persistence.
. "$(dirname "$0")/lib.bash"
rfs_setup 2G -o allow_other
cd "$SCRATCH" || exit 1
# Inodes in use (statfs) of the empty mount: see "pool file" below.
iused() { df --output=iused "$MNT" | tail -1; }
IUSED_EMPTY=$(iused)
iused_empty() { [ "$(iused)" -eq "$IUSED_EMPTY" ]; }
SRC=$SCRATCH/src
mkdir -p "$SRC/sub/deeper"
head -c 3000000 /dev/urandom >"$SRC/random.bin"
seq 1 100000 >"$SRC/sub/numbers.txt"
echo small >"$SRC/sub/deeper/small"
ln -s ../random.bin "$SRC/sub/link"
: >"$SRC/empty"

# --- cp is a clone ---
head -c 20000000 /dev/urandom >"$MNT/big"
check "cp of a file inside the mount" cp "$MNT/big" "$MNT/big.copy"
check "the copy has the same bytes" cmp "$MNT/big" "$MNT/big.copy"
shared_of() { "$RFS_BIN" stat "$1" | awk '/shared:/ {print $2}'; }
blocks_of() { "$RFS_BIN" stat "$1" | awk '/blocks:/ {print $2}'; }
check "reflinkfs stat: all blocks of the copy are shared" \
	test "$(shared_of "$MNT/big.copy")" = "$(blocks_of "$MNT/big.copy")" -a "$(blocks_of "$MNT/big.copy")" -gt 0
used_before=$(df -k --output=used "$MNT" | tail -1)
cp "$MNT/big" "$MNT/big.copy2"
used_after=$(df -k --output=used "$MNT" | tail -1)
check "a clone takes (almost) no space (df: ${used_before}K -> ${used_after}K)" \
	test $((used_after - used_before)) -lt 1024
# independence after writes, both ways
printf 'XXXXXXXX' | dd of="$MNT/big.copy" bs=1 seek=5000 conv=notrunc status=none
check "writing the clone leaves the source unchanged" cmp "$MNT/big" "$MNT/big.copy2"
check "the clone changed" bash -c "! cmp -s '$MNT/big' '$MNT/big.copy'"
printf 'YYYY' | dd of="$MNT/big" bs=1 seek=7000000 conv=notrunc status=none
check "writing the source leaves the clone unchanged" \
	bash -c "[ \"\$(dd if='$MNT/big.copy2' bs=1 skip=7000000 count=4 status=none)\" != YYYY ]"
check "after a write the clone has exclusive blocks" \
	test "$(shared_of "$MNT/big.copy")" -lt "$(blocks_of "$MNT/big.copy")"
# Sharing through shared interior nodes counts (lazy refcounts): one
# 4 KiB write into a fresh clone leaves all other blocks shared.
cp "$MNT/big" "$MNT/big.copy3"
printf 'Z' | dd of="$MNT/big.copy3" bs=1 seek=100 conv=notrunc status=none
check "one write into a clone unshares exactly one block" \
	test "$(shared_of "$MNT/big.copy3")" = $(( $(blocks_of "$MNT/big.copy3") - 1 ))
check "reflinkfs clone" "$RFS_BIN" clone "$MNT/big" "$MNT/big.rc"
# The kernel caches file pages (keep_cache, no auto_inval_data): a clone
# over a destination whose pages are cached must not show the old bytes.
head -c 3000000 /dev/urandom >"$MNT/cached.dst"
cat "$MNT/cached.dst" >/dev/null
check "reflinkfs clone over a cached destination" "$RFS_BIN" clone "$MNT/big" "$MNT/cached.dst"
check "... reads the clone, not stale cached pages" cmp "$MNT/big" "$MNT/cached.dst"
head -c 3000000 /dev/urandom >"$MNT/cached.d2"
cat "$MNT/cached.d2" >/dev/null
check "copy_file_range into the middle of a cached file" python3 -c "
import os, sys
s = os.open(sys.argv[1], os.O_RDONLY); d = os.open(sys.argv[2], os.O_WRONLY)
assert os.copy_file_range(s, d, 1000000, 8192, 40960) == 1000000
a = open(sys.argv[1], 'rb').read(); b = open(sys.argv[2], 'rb').read()
assert b[40960:1040960] == a[8192:1008192]" "$MNT/big" "$MNT/cached.d2"
check "reflinkfs clone: same bytes" cmp "$MNT/big" "$MNT/big.rc"
check "reflinkfs clone makes DST's missing directories" \
	"$RFS_BIN" clone "$MNT/big" "$MNT/versions/a//b/big"
check "... and the clone in them has the same bytes" cmp "$MNT/big" "$MNT/versions/a/b/big"
: >"$MNT/notadir"
check_fail "reflinkfs clone below a file fails" "$RFS_BIN" clone "$MNT/big" "$MNT/notadir/x/big"
check "... and says which directory it could not make" bash -c \
	"'$RFS_BIN' clone '$MNT/big' '$MNT/notadir/x/big' 2>&1 | grep -q 'cannot create directory $MNT/notadir/x'"
check "reflinkfs stat -e lists extents" bash -c "'$RFS_BIN' stat -e '$MNT/big.rc' | grep -q logical"
check_fail "cp --reflink=always fails on FUSE (kernel has no FICLONE path)" \
	cp --reflink=always "$MNT/big" "$MNT/big.rl"
rm -f "$MNT/big.rl"

# --- copying in, tar, rsync, diff -r ---
check "cp -a of a tree into the mount" cp -a "$SRC" "$MNT/cpa"
check "diff -r after cp -a" diff -r "$SRC" "$MNT/cpa"
check "tar into the mount" bash -c "tar -C '$SCRATCH' -cf - src | tar -C '$MNT' -xf -"
check "diff -r after tar" diff -r "$SRC" "$MNT/src"
check "tar out of the mount" bash -c "tar -C '$MNT' -cf '$SCRATCH/out.tar' src && mkdir -p '$SCRATCH/untar' && tar -C '$SCRATCH/untar' -xf '$SCRATCH/out.tar'"
check "diff -r after tar out" diff -r "$SRC" "$SCRATCH/untar/src"
check "rsync -a into the mount" rsync -a "$SRC/" "$MNT/rs/"
check "diff -r after rsync" diff -r "$SRC" "$MNT/rs"
echo changed >>"$SRC/sub/numbers.txt"
check "rsync again (update)" rsync -a "$SRC/" "$MNT/rs/"
check "diff -r after rsync update" diff -r "$SRC" "$MNT/rs"
check "cp -r inside the mount (clones)" cp -r "$MNT/rs" "$MNT/rs2"
check "diff -r of the cloned tree" diff -r "$MNT/rs" "$MNT/rs2"

# --- mv, rename, rm -r ---
check "mv a file" mv "$MNT/rs2/random.bin" "$MNT/moved.bin"
check "mv keeps the bytes" cmp "$SRC/random.bin" "$MNT/moved.bin"
check "mv a directory" mv "$MNT/rs2/sub" "$MNT/subdir"
check "the moved directory is intact" diff -r --no-dereference "$MNT/rs/sub" "$MNT/subdir"
check "mv onto an existing file replaces it" bash -c "echo a >'$MNT/r1' && echo b >'$MNT/r2' && mv '$MNT/r1' '$MNT/r2' && [ \"\$(cat '$MNT/r2')\" = a ] && [ ! -e '$MNT/r1' ]"
check "mv -T a dir onto a non-empty dir fails" bash -c "! mv -T '$MNT/rs' '$MNT/subdir' 2>/dev/null"
check "rename exchange (RENAME_EXCHANGE)" python3 - "$MNT" <<'PY'
import ctypes, os, sys
m = sys.argv[1]
open(m + "/x1", "w").write("one")
open(m + "/x2", "w").write("two")
libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD = -100
r = libc.renameat2(AT_FDCWD, (m + "/x1").encode(), AT_FDCWD, (m + "/x2").encode(), 2)
assert r == 0, os.strerror(ctypes.get_errno())
assert open(m + "/x1").read() == "two" and open(m + "/x2").read() == "one"
r = libc.renameat2(AT_FDCWD, (m + "/x1").encode(), AT_FDCWD, (m + "/x2").encode(), 1)
assert r != 0 and ctypes.get_errno() == 17, "NOREPLACE"
PY
check "rm -r of a tree" rm -r "$MNT/rs2" "$MNT/cpa"
check "the tree is gone" test ! -e "$MNT/rs2" -a ! -e "$MNT/cpa"

# --- links ---
check "ln (hard link)" ln "$MNT/moved.bin" "$MNT/hard"
check "hard link: link count 2 and same inode" bash -c "[ \$(stat -c %h '$MNT/hard') = 2 ] && [ \$(stat -c %i '$MNT/hard') = \$(stat -c %i '$MNT/moved.bin') ]"
check "writes through one name show through the other" bash -c "echo tail >>'$MNT/hard' && cmp '$MNT/hard' '$MNT/moved.bin'"
check "rm one name keeps the other" bash -c "rm '$MNT/moved.bin' && [ \$(stat -c %h '$MNT/hard') = 1 ] && tail -c 5 '$MNT/hard' | grep -q tail"
check "ln -s (symlink)" ln -s hard "$MNT/soft"
check "readlink" test "$(readlink "$MNT/soft")" = hard
check "through the symlink" cmp "$MNT/soft" "$MNT/hard"
long=$(printf 'x%.0s' $(seq 1 3000))
check "long symlink target (3000 bytes)" bash -c "ln -s '$long' '$MNT/longlink' && [ \"\$(readlink '$MNT/longlink')\" = '$long' ]"
check "mkfifo" bash -c "mkfifo '$MNT/fifo' && [ -p '$MNT/fifo' ]"
check "mknod (char device)" bash -c "mknod '$MNT/null2' c 1 3 && [ -c '$MNT/null2' ] && [ \"\$(stat -c %t:%T '$MNT/null2')\" = 1:3 ]"
name255=$(printf 'n%.0s' $(seq 1 255))
check "a name of 255 bytes" bash -c "echo x >'$MNT/$name255' && [ -f '$MNT/$name255' ]"
check_fail "a name of 256 bytes is refused" bash -c "echo x >'$MNT/${name255}n'"

# --- attributes, xattrs, permissions ---
check "chmod" bash -c "chmod 640 '$MNT/hard' && [ \$(stat -c %a '$MNT/hard') = 640 ]"
check "chown" bash -c "chown 1234:5678 '$MNT/hard' && [ \"\$(stat -c %u:%g '$MNT/hard')\" = 1234:5678 ]"
check "touch -d sets mtime" bash -c "touch -d '2001-02-03 04:05:06' '$MNT/hard' && [ \"\$(stat -c %Y '$MNT/hard')\" = \$(date -d '2001-02-03 04:05:06' +%s) ]"
check "setfattr / getfattr (user.)" bash -c "setfattr -n user.color -v blue '$MNT/hard' && getfattr --only-values -n user.color '$MNT/hard' | grep -qx blue"
check "xattr on a directory" bash -c "setfattr -n user.d -v 1 '$MNT/subdir' && getfattr -d '$MNT/subdir' | grep -q user.d"
check "trusted. xattr" bash -c "setfattr -n trusted.t -v 2 '$MNT/hard' && getfattr -n trusted.t --only-values '$MNT/hard' | grep -qx 2"
check "remove xattr" bash -c "setfattr -x user.color '$MNT/hard' && ! getfattr -n user.color '$MNT/hard' 2>/dev/null"
chmod 0755 "$SCRATCH"
mkdir -m 0777 "$MNT/shared"
if command -v setpriv >/dev/null; then
	check "a file created by a non-root caller belongs to that caller" bash -c "setpriv --reuid 4321 --regid 4321 --clear-groups touch '$MNT/shared/mine' && [ \"\$(stat -c %u:%g '$MNT/shared/mine')\" = 4321:4321 ]"
	echo secret >"$MNT/shared/private"
	chmod 600 "$MNT/shared/private"
	check_fail "permissions are enforced against the caller" setpriv --reuid 4321 --regid 4321 --clear-groups cat "$MNT/shared/private"
	check_fail "a non-owner cannot chmod" setpriv --reuid 4321 --regid 4321 --clear-groups chmod 777 "$MNT/shared/private"
fi
if command -v setfacl >/dev/null && command -v setpriv >/dev/null; then
	mkdir "$MNT/acl"
	check "setfacl -m / getfacl" bash -c "setfacl -m u:4321:rwx '$MNT/acl' && getfacl -p '$MNT/acl' 2>/dev/null | grep -q 'user:4321:rwx'"
	check "setfacl -d (default ACL)" setfacl -d -m u:4321:rwx "$MNT/acl"
	touch "$MNT/acl/inherited"
	mkdir "$MNT/acl/subdir"
	check "new files inherit the default ACL" bash -c "getfacl -p '$MNT/acl/inherited' 2>/dev/null | grep -q '^user:4321:'"
	check "new directories inherit the default ACL as default" bash -c "getfacl -p '$MNT/acl/subdir' 2>/dev/null | grep -q '^default:user:4321:rwx'"
	echo secret >"$MNT/acl/private"
	chmod 600 "$MNT/acl/private"
	setfacl -m u:4321:r "$MNT/acl/private"
	check "an ACL entry grants access to its user" setpriv --reuid 4321 --regid 4321 --clear-groups cat "$MNT/acl/private"
	check_fail "... and not to others" setpriv --reuid 4322 --regid 4322 --clear-groups cat "$MNT/acl/private"
	chmod 600 "$MNT/acl/private"
	check_fail "chmod updates the ACL mask (access revoked)" setpriv --reuid 4321 --regid 4321 --clear-groups cat "$MNT/acl/private"
fi
if command -v fio >/dev/null; then
	check "fio random writes with verify" fio --name=verify --filename="$MNT/fio.dat" --size=32M --rw=randwrite --bs=4k \
		--ioengine=psync --verify=crc32c --do_verify=1 --verify_fatal=1 --output="$SCRATCH/fio.out"
	check "fio sequential writes with verify, then a clone verifies too" bash -c "fio --name=seq --filename='$MNT/fio2.dat' --size=32M --rw=write --bs=1M --ioengine=psync --verify=md5 --output='$SCRATCH/fio2.out' && cp '$MNT/fio2.dat' '$MNT/fio2.clone' && cmp '$MNT/fio2.dat' '$MNT/fio2.clone'"
fi
check "statfs has true numbers" bash -c "df -k '$MNT' | tail -1 | awk '{exit !(\$2 > 2000000 && \$3 > 0)}'"

# --- git ---
if command -v git >/dev/null; then
	git init -q "$SCRATCH/repo" && (cd "$SCRATCH/repo" && cp -r "$SRC"/* . && git add -A && git -c user.email=t@t -c user.name=t commit -qm init) >/dev/null 2>&1
	check "git clone of a local repository into the mount" git clone -q "$SCRATCH/repo" "$MNT/repo"
	check "git status in the mount is clean" bash -c "cd '$MNT/repo' && git status --porcelain | wc -l | grep -qx 0"
	check "git fsck in the mount" bash -c "cd '$MNT/repo' && git fsck --no-progress"
fi

# --- persistence across unmount ---
sums() { (cd "$MNT" && find . -type f -print0 | sort -z | xargs -0 md5sum); }
sums >"$SCRATCH/sum.before"
check "unmount" rfs_umount
check "fsck after unmount is clean" rfs_fsck
check "mount again" rfs_mount
sums >"$SCRATCH/sum.after"
check "every file is the same after remount" diff "$SCRATCH/sum.before" "$SCRATCH/sum.after"
check "hard link count survives" test "$(stat -c %h "$MNT/hard")" = 1
check "rm -rf everything" bash -c "rm -rf '$MNT'/*"
check "the mount is empty" test -z "$(ls -A "$MNT")"
# Freed space goes back to the backing filesystem (hole punching of the
# runs of 16 blocks or more that a commit freed).  What the pool file
# gives back depends on where the file's blocks are, so nothing else
# may be freed meanwhile: the background release of what rm -rf deleted,
# running while the file was written, interleaved the file's blocks
# with the released ones (short runs, never punched), and the file then
# gave back 12 of its 32 MiB.  So wait until every deleted inode is gone
# (the kernel's FORGET of each may come after rm returned: the daemon's
# inode count, statfs, says when) and released ("reclaiming: nothing"),
# and commit, before and after the file; no sleep.
all_released() {
	wait_until 60 iused_empty && rfs_wait_reclaim && "$RFS_BIN" sync "$MNT"
}
check "every deleted inode is released" all_released
kb_base=$(du -k "$POOL" | cut -f1)
head -c 33554432 /dev/urandom >"$MNT/space.bin"
"$RFS_BIN" sync "$MNT"
kb_full=$(du -k "$POOL" | cut -f1)
rm "$MNT/space.bin"
check "the deleted file's blocks are freed in the background" all_released
kb_empty=$(du -k "$POOL" | cut -f1)
check "deleting 32 MiB shrinks the pool file (${kb_full}K -> ${kb_empty}K)" \
	test $((kb_full - kb_empty)) -gt 30000
check "... back to its size before the file (${kb_base}K, 1 MiB for metadata)" \
	test "$kb_empty" -le $((kb_base + 1024))
# Without a sync the background commit frees the blocks but keeps them
# backed for the writes after it (warm); with nothing left to commit,
# the committer's next round punches them (docs/ARCHITECTURE.md, "Pool").
head -c 33554432 /dev/urandom >"$MNT/space2.bin"
"$RFS_BIN" sync "$MNT"
rm "$MNT/space2.bin"
pool_back() { [ "$(du -k "$POOL" | cut -f1)" -le $((kb_base + 1024)) ]; }
bg_back() { wait_until 60 iused_empty && rfs_wait_reclaim && wait_until 60 pool_back; }
check "the background commits give a deleted file's space back" bg_back
rfs_umount
check "fsck after deleting everything is clean" rfs_fsck
rfs_finish
