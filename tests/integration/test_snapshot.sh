#!/usr/bin/env bash
# Snapshots on a real mount: `reflinkfs snapshot` (rw and --readonly) of a
# tree made with tar and cp -a (files, directories, symlinks, hard links,
# xattrs); independence both ways; read-only snapshots refuse every change
# with EROFS, also at their root; EXDEV across a snapshot's root (and mv
# still works by copying); st_ino unique over nested snapshots; open
# descriptors and a shared mmap across a snapshot; the kernel's caches
# (a cached negative entry, the deleted root) see the change at once;
# snapshot of the mount's root and inside its own source; list, delete
# and restore with --json; permissions of another user; error messages
# and exit statuses; everything back in place after a remount; all space
# back and fsck clean after deleting everything.
. "$(dirname "$0")/lib.bash"
# nojournal: the end compares the blocks in use after deleting everything
# with a fresh pool's, and the change journal keeps records of the
# deletions (snapshot records are tested in tests/unit/test_journal.c).
rfs_setup 1G -o allow_other,nojournal
cd "$SCRATCH" || exit 1
R=$RFS_BIN
M=$MNT

# A run of the CLI: output in $SCRATCH/out, errors in $SCRATCH/err, exit
# status in $SCRATCH/rc.
run() { "$R" "$@" >"$SCRATCH/out" 2>"$SCRATCH/err"; echo $? >"$SCRATCH/rc"; }
rc() { cat "$SCRATCH/rc"; }
err_has() { grep -q -- "$1" "$SCRATCH/err" || { cat "$SCRATCH/err"; return 1; }; }
# CMD must fail with EROFS (its message says "Read-only file system").
erofs() {
	if "$@" 2>"$SCRATCH/erofs.err"; then
		echo "succeeded: $*"
		return 1
	fi
	grep -q "Read-only file system" "$SCRATCH/erofs.err" || { cat "$SCRATCH/erofs.err"; return 1; }
}
# Python errno of a call, e.g. pyerr 'os.rename("a","b")' -> EXDEV or OK.
pyerr() {
	python3 -c "import os, errno, sys
try:
    $1
    print('OK')
except OSError as e:
    print(errno.errorcode[e.errno])"
}
# A listing that compares trees: type, mode, size, link count, symlink
# target, xattrs and contents of every path below $1.
tree_sum() {
	(cd "$1" && find . ! -type d -printf '%p %y %m %s %n %l\n' | sort &&
		find . -type d -printf '%p %m\n' | sort &&
		find . -type f -print0 | sort -z | xargs -0 -r md5sum &&
		find . -print0 | sort -z |
		xargs -0 getfattr -h -d -m '^user\.' --absolute-names 2>/dev/null)
}

# ---- a tree, made outside and brought in with tar and with cp -a
S=$SCRATCH/src
mkdir -p "$S/d1/d2/d3" "$S/empty"
head -c 200000 /dev/urandom >"$S/big"
echo small >"$S/d1/small"
head -c 5000 /dev/urandom >"$S/d1/d2/mid"
echo deep >"$S/d1/d2/d3/deep"
ln "$S/d1/small" "$S/d1/d2/hard"
ln -s ../big "$S/d1/link"
ln -s dangling "$S/d1/dangling"
setfattr -n user.color -v blue "$S/big"
setfattr -n user.dir -v yes "$S/d1"
chmod 640 "$S/d1/d2/mid"
mkdir "$M/t"
check "tar brings the tree in (with xattrs)" \
	bash -c "tar --xattrs -C '$S' -cf - . | tar --xattrs -xpf - -C '$M/t'"
check "cp -a brings a second copy in" cp -a "$S" "$M/c"
tree_sum "$M/t" >"$SCRATCH/t.sum"
check "the tar copy matches the source" diff <(tree_sum "$S") "$SCRATCH/t.sum"

# ---- rw and ro snapshots; the kernel's negative entry is dropped
stat "$M/rw" >/dev/null 2>&1 # caches a negative entry for rw
nlink_before=$(stat -c %h "$M")
run snapshot "$M/t" "$M/rw"
check "snapshot t rw (exit $(rc))" test "$(rc)" = 0
check "the new snapshot is visible at once (cached negative entry invalidated)" test -d "$M/rw"
check "the parent's link count changed at once" test "$(stat -c %h "$M")" = $((nlink_before + 1))
run snapshot --readonly --json "$M/t" "$M/ro"
check "snapshot --readonly --json (exit $(rc))" test "$(rc)" = 0
check "--json names the path and read-only" \
	bash -c "jq -e '.path == \"$M/ro\" and .readonly == true and .volume > 1' '$SCRATCH/out'"
check "clone of a directory is a snapshot" "$R" clone "$M/c" "$M/cl"
check "rw snapshot holds the same tree" diff "$SCRATCH/t.sum" <(tree_sum "$M/rw")
check "ro snapshot holds the same tree" diff "$SCRATCH/t.sum" <(tree_sum "$M/ro")
check "the clone of the cp -a copy too" diff <(tree_sum "$M/c") <(tree_sum "$M/cl")
check "hard links stay hard links inside the snapshot" \
	test "$(stat -c %i "$M/rw/d1/small")" = "$(stat -c %i "$M/rw/d1/d2/hard")"
check "snapshot inodes have their own st_ino" \
	test "$(stat -c %i "$M/rw/big")" != "$(stat -c %i "$M/t/big")"

# ---- independence, both ways
echo changed >"$M/rw/d1/small"
truncate -s 1000 "$M/rw/big"
rm "$M/rw/d1/d2/mid"
mv "$M/rw/d1/d2/d3" "$M/rw/d3moved"
echo new >"$M/rw/newfile"
check "changes in the snapshot leave the source as it was" diff "$SCRATCH/t.sum" <(tree_sum "$M/t")
check "... and the ro snapshot" diff "$SCRATCH/t.sum" <(tree_sum "$M/ro")
check "the hard link in the snapshot sees its own change" grep -qx changed "$M/rw/d1/d2/hard"
tree_sum "$M/rw" >"$SCRATCH/rw.sum"
printf 'src side' >"$M/t/d1/small"
truncate -s 10 "$M/t/big"
rm -r "$M/t/d1/d2/d3"
mv "$M/t/d1/link" "$M/t/link2"
setfattr -n user.color -v red "$M/t/d1/d2/mid"
check "changes in the source leave the snapshot as it was" diff "$SCRATCH/rw.sum" <(tree_sum "$M/rw")
check "... and the ro snapshot" diff "$SCRATCH/t.sum" <(tree_sum "$M/ro")

# ---- read-only: every change is EROFS, also on its root
RO=$M/ro
check "ro: write" erofs bash -c "echo x >>'$RO/big'"
check "ro: create" erofs bash -c "echo x >'$RO/newfile'"
check "ro: truncate" erofs truncate -s 0 "$RO/big"
check "ro: chmod" erofs chmod 600 "$RO/big"
check "ro: chown" erofs chown 1:1 "$RO/big"
check "ro: touch" erofs touch "$RO/big"
check "ro: unlink" erofs rm -f "$RO/big"
check "ro: rmdir" erofs rmdir "$RO/empty"
check "ro: mkdir" erofs mkdir "$RO/nd"
check "ro: rename inside" erofs mv "$RO/big" "$RO/big2"
check "ro: link inside" erofs ln "$RO/big" "$RO/big3"
check "ro: symlink" erofs ln -s x "$RO/sl"
check "ro: setxattr" erofs setfattr -n user.k -v v "$RO/big"
check "ro: removexattr" erofs setfattr -x user.color "$RO/big"
check "ro: root chmod" erofs chmod 700 "$RO"
check "ro: root touch" erofs touch "$RO"
check "ro: root setxattr" erofs setfattr -n user.k -v v "$RO"
check "ro: write through an fd opened before" erofs bash -c "exec 3<>'$RO/d1/small'; echo x >&3"
check "ro: nothing changed" diff "$SCRATCH/t.sum" <(tree_sum "$RO")
run snapshot "$M/t" "$RO/inside"
check "ro: a snapshot into it fails (exit $(rc), 1)" test "$(rc)" = 1
check "ro: ... saying it is read-only" err_has "read-only snapshot"

# ---- volume boundaries: EXDEV, and mv copies
check "rename across a snapshot's root: EXDEV" test "$(pyerr "os.rename('$M/t/big', '$M/rw/x')")" = EXDEV
check "rename out of a snapshot: EXDEV" test "$(pyerr "os.rename('$M/rw/newfile', '$M/t/x')")" = EXDEV
check "link across a snapshot's root: EXDEV" test "$(pyerr "os.link('$M/t/big', '$M/rw/x')")" = EXDEV
check "mv across still works (it copies)" mv "$M/rw/newfile" "$M/t/moved"
check "... the file arrived" grep -qx new "$M/t/moved"
check "... and left" test ! -e "$M/rw/newfile"
check "renaming a snapshot's root in its parent works" mv "$M/cl" "$M/cl2"
check "... and back" mv "$M/cl2" "$M/cl"

# ---- open descriptors and shared mmaps across a snapshot
echo base >"$M/t/open"
exec 4>>"$M/t/open"
check "snapshot while a file is open for writing" "$R" snapshot "$M/t" "$M/s_open"
echo after >&4
exec 4>&-
check "the open descriptor keeps writing into the source" \
	test "$(cat "$M/t/open")" = "$(printf 'base\nafter')"
check "... never into the snapshot" test "$(cat "$M/s_open/open")" = base
head -c 65536 /dev/zero >"$M/t/mm"
check "an mmap writer's data written before the snapshot is in it" python3 - "$R" "$M" <<'PY'
import mmap, os, subprocess, sys
R, M = sys.argv[1], sys.argv[2]
fd = os.open(M + "/t/mm", os.O_RDWR)
m = mmap.mmap(fd, 65536, mmap.MAP_SHARED)
m[100:111] = b"before snap"   # dirty in the page cache only, no msync
m[40000:40005] = b"page2"
subprocess.check_call([R, "snapshot", M + "/t", M + "/s_mmap"])
m[100:111] = b"after  snap"
m.flush()
got = open(M + "/s_mmap/mm", "rb").read()
assert got[100:111] == b"before snap", got[100:111]
assert got[40000:40005] == b"page2", got[40000:40005]
assert open(M + "/t/mm", "rb").read()[100:111] == b"after  snap"
PY
truncate -s 3 "$M/s_open/open"
check "truncate in the snapshot leaves the source" test "$(wc -c <"$M/t/open")" = 11

# ---- the mount's root, a snapshot inside its own source, nesting
tree_sum "$M/rw" >"$SCRATCH/rw.sum"
check "snapshot of the mount's root" "$R" snapshot "$M" "$M/rootsnap"
check "... holds the snapshots as they were" diff "$SCRATCH/rw.sum" <(tree_sum "$M/rootsnap/rw")
check "... and no copy of itself" test ! -e "$M/rootsnap/rootsnap"
check "snapshot inside its own source" "$R" snapshot "$M/t" "$M/t/self"
check "... holds the source as it was, without itself" test ! -e "$M/t/self/self"
check "... and the source's files" cmp "$M/t/big" "$M/t/self/big"
check "snapshot of a snapshot of a snapshot" "$R" snapshot "$M/rootsnap/rw" "$M/rootsnap/rw/d1/nest"
check "... holds the right tree" diff "$SCRATCH/rw.sum" <(tree_sum "$M/rootsnap/rw/d1/nest")
check "st_ino is unique over the whole tree (hard links: one per link group)" python3 - "$M" <<'PY'
import os, sys, collections
seen = collections.defaultdict(list)
for d, dirs, files in os.walk(sys.argv[1]):
    for n in dirs + files + ["."] * (d == sys.argv[1]):
        p = os.path.join(d, n)
        st = os.lstat(p)
        seen[st.st_ino].append((p, st.st_nlink, st.st_mode))
bad = []
for ino, ps in seen.items():
    nl = ps[0][1]
    if len(ps) > 1 and not (len(ps) == nl and all(x[1] == nl for x in ps) and not os.path.isdir(ps[0][0])):
        bad.append((ino, [x[0] for x in ps]))
assert not bad, bad[:5]
vols = {ino >> 48 for ino in seen}
assert len(vols) >= 8, vols
PY

# ---- list, delete, restore (--json)
run snapshot list --json "$M/t/big"
check "snapshot list --json (exit $(rc))" test "$(rc)" = 0
check "list: every snapshot with its path" bash -c "jq -r '.volumes[].path' '$SCRATCH/out' | sort >'$SCRATCH/paths'; for p in '$M' '$M/rw' '$M/ro' '$M/cl' '$M/s_open' '$M/s_mmap' '$M/rootsnap' '$M/rootsnap/rw' '$M/rootsnap/ro' '$M/t/self' '$M/rootsnap/rw/d1/nest'; do grep -qx \"\$p\" '$SCRATCH/paths' || { echo missing \$p; exit 1; }; done"
check "list: ro flag and source volume" \
	jq -e ".volumes[] | select(.path == \"$M/ro\") | .readonly == true and .source_volume == 1 and .parent == 1 and .created > 0" "$SCRATCH/out"
check "list: the source's path at creation" \
	jq -e ".volumes[] | select(.path == \"$M/ro\") | .source_path | type == \"string\" and length > 0" "$SCRATCH/out"
check "list: the mount's own volume first" jq -e '.volumes[0].id == 1 and .volumes[0].created == null' "$SCRATCH/out"
run snapshot list "$M"
check "snapshot list (text) shows ro and paths" bash -c "grep -q ' ro .*$M/ro (of /[^)]*)\$' '$SCRATCH/out' && grep -q '$M (the mount)' '$SCRATCH/out'"

echo precious >"$M/rw/keep"
run snapshot --readonly "$M/rw" "$M/rw_backup"
echo ruined >"$M/rw/keep"
rm -r "$M/rw/d1"
stat "$M/rw/d1" >/dev/null 2>&1
run snapshot restore --json "$M/rw_backup" "$M/rw"
check "restore --json (exit $(rc))" test "$(rc)" = 0
prev=$(jq -r .previous "$SCRATCH/out")
check "restore: DIR holds the snapshot's content" test "$(cat "$M/rw/keep")" = precious
check "restore: ... the whole tree" diff <(tree_sum "$M/rw_backup") <(tree_sum "$M/rw")
check "restore: the old content is kept under the printed name" test "$(cat "$prev/keep")" = ruined
check "restore: the printed name is DIR.pre-restore-TIME" bash -c "[[ '$prev' == '$M/rw.pre-restore-'* ]]"
check "restore: the restored copy is writable" bash -c "echo ok >'$M/rw/keep'"
check "restore: the read-only snapshot did not change" test "$(cat "$M/rw_backup/keep")" = precious
run snapshot restore "$M/rw_backup" "$M/nonexistent"
check "restore into a missing DIR: exit 3 (got $(rc))" test "$(rc)" = 3

stat "$M/cl/big" >/dev/null # the kernel caches the root and below
run snapshot delete --json "$M/cl"
check "delete --json (exit $(rc))" test "$(rc)" = 0
check "delete --json names the path" jq -e ".deleted == \"$M/cl\"" "$SCRATCH/out"
check "the deleted snapshot is gone at once (cached entry invalidated)" test ! -e "$M/cl"
check "its source is intact" diff <(tree_sum "$S") <(tree_sum "$M/c")
check "delete --wait" "$R" snapshot delete --wait "$M/s_open"
check "deleting the source leaves a snapshot intact" rm -r "$M/c"
run snapshot delete "$M/t/d1"
check "delete of an ordinary directory: exit 3 (got $(rc))" test "$(rc)" = 3
check "... saying it is not a snapshot" err_has "not a snapshot"
check "rm -rf of a snapshot works" rm -rf "$M/s_mmap"

# ---- another user: the daemon checks what the kernel would
U=(setpriv --reuid=65534 --regid=65534 --clear-groups)
mkdir -p "$M/pub" "$M/closed" "$M/mine"
chmod 777 "$M/pub"
chmod 755 "$M/closed"
chmod 744 "$M/t/d1/d2" # readable, not searchable by others
chown 65534:65534 "$M/mine"
echo x >"$M/mine/f"
chown 65534 "$M/mine/f"
chmod 755 "$SCRATCH" # mktemp made it 0700: let the user reach the mount
if "${U[@]}" true 2>/dev/null; then
	run_as() { "${U[@]}" "$R" "$@" >"$SCRATCH/out" 2>"$SCRATCH/err"; echo $? >"$SCRATCH/rc"; }
	run_as snapshot "$M/mine" "$M/closed/x"
	check "user: no write permission on DST's directory: exit 1 (got $(rc))" test "$(rc)" = 1
	check "... permission denied" err_has "permission denied"
	run_as snapshot "$M/t/d1/d2" "$M/pub/x"
	check "user: source not searchable: refused (exit $(rc))" test "$(rc)" = 1
	run_as snapshot "$M/mine" "$M/pub/mine_snap"
	check "user: snapshot of an own directory (exit $(rc))" test "$(rc)" = 0
	check "user: ... owned by the user like its source" test "$(stat -c %u "$M/pub/mine_snap")" = 65534
	run_as snapshot delete "$M/pub/mine_snap"
	check "user: delete of an own snapshot (exit $(rc))" test "$(rc)" = 0
	run_as snapshot delete "$M/ro"
	check "user: delete of root's snapshot is refused (exit $(rc))" test "$(rc)" = 1
	check "... which is still there" test -d "$M/ro"
	run_as snapshot list "$M"
	check "user: list is for root and the mounter (exit $(rc))" test "$(rc)" = 1
else
	log "skip another user's permissions: setpriv cannot change user here"
fi
chmod 755 "$M/t/d1/d2"

# ---- errors: messages that name the path, exit statuses
run snapshot "$M/t/big" "$M/x"
check "SRC not a directory: exit 3 (got $(rc))" test "$(rc)" = 3
check "... says so" err_has "$M/t/big is not a directory"
run snapshot "$M/t" "$M/rw"
check "DST exists: exit 3 (got $(rc))" test "$(rc)" = 3
check "... says so" err_has "$M/rw already exists"
run snapshot "$M/nope" "$M/x"
check "SRC missing: exit 3 (got $(rc))" test "$(rc)" = 3
check "... names it" err_has "$M/nope"
run snapshot "$M/t" "$SCRATCH/x"
check "DST on another mount: exit 4 (got $(rc))" test "$(rc)" = 4
check "... says different mounts" err_has "different mounts"
run snapshot "$SCRATCH" "$SCRATCH/y"
check "SRC not on reflinkfs: exit 4 (got $(rc))" test "$(rc)" = 4
check "... says so" err_has "not on a reflinkfs mount"
run snapshot list "$SCRATCH"
check "list off reflinkfs: exit 4 (got $(rc))" test "$(rc)" = 4
run snapshot delete "$M"
check "delete of the mount's root: exit 3 (got $(rc))" test "$(rc)" = 3
run snapshot --bogus "$M/t" "$M/x"
check "unknown option: exit 2 (got $(rc))" test "$(rc)" = 2
run snapshot "$M/t"
check "one argument: exit 2 (got $(rc))" test "$(rc)" = 2
for sub in "" list delete restore; do
	run snapshot $sub --help
	check "snapshot $sub --help (exit $(rc))" bash -c "[ $(rc) = 0 ] && grep -q usage '$SCRATCH/out'"
done

# ---- remount keeps everything
tree_sum "$M" >"$SCRATCH/all.sum"
"$R" snapshot list --json "$M" | jq -c '[.volumes[] | {id, path, readonly, source_volume}]' >"$SCRATCH/vols.before"
check "clean unmount" rfs_umount
check "fsck clean with snapshots" rfs_fsck
check "remount" rfs_mount
check "every file, snapshot and xattr is back" diff "$SCRATCH/all.sum" <(tree_sum "$M")
check "the volume list is the same" diff "$SCRATCH/vols.before" \
	<("$R" snapshot list --json "$M" | jq -c '[.volumes[] | {id, path, readonly, source_volume}]')
check "ro is still read-only" erofs touch "$M/ro/big"

# ---- delete everything: all space back
for p in $("$R" snapshot list --json "$M" | jq -r '.volumes[] | select(.parent == 1) | .path'); do
	"$R" snapshot delete "$p" || log "delete $p failed"
done
check "no snapshot left" test "$("$R" snapshot list --json "$M" | jq '.volumes | length')" = 1
check "rm -rf the rest" bash -c "rm -rf '$M'/*"
check "the mount is empty" test -z "$(ls -A "$M")"
check "the deleted snapshots' blocks are freed in the background" rfs_wait_reclaim
"$R" sync "$M"
used=$(stat -f -c '%b %f' "$M" | awk '{print $1 - $2}')
check "rfs_umount" rfs_umount
check "fsck clean after deleting everything" rfs_fsck
# The reference: a fresh pool of the same size, its root touched once.
"$R" mkfs --size 1G "$SCRATCH/pool2" >/dev/null
POOL_SAVE=$POOL
POOL=$SCRATCH/pool2
rfs_mount
touch "$M/x" && rm "$M/x" && "$R" sync "$M"
fresh=$(stat -f -c '%b %f' "$M" | awk '{print $1 - $2}')
rfs_umount

# ---- a full pool: a clear ENOSPC, and deleting makes room
"$R" mkfs --size 16M "$SCRATCH/pool3" >/dev/null
POOL=$SCRATCH/pool3
rfs_mount
mkdir "$M/a" && echo x >"$M/a/f"
dd if=/dev/zero of="$M/fill" bs=1M count=64 2>/dev/null
for i in $(seq 5000); do touch "$M/a/f$i" 2>/dev/null || break; done
run snapshot "$M/a" "$M/s"
check "full pool: snapshot fails with exit 1 (got $(rc))" test "$(rc)" = 1
check "... saying there is no space, naming the path" err_has "$M/s: no space left"
rm "$M/fill"
check "after deleting a file the snapshot works" "$R" snapshot "$M/a" "$M/s"
rfs_umount
check "fsck clean after ENOSPC" "$R" fsck "$POOL"

# ---- deletion detaches at once; the blocks come back in the background
"$R" mkfs --size 256M "$SCRATCH/pool4" >/dev/null
POOL=$SCRATCH/pool4
rfs_mount -o noreclaim
used_kb() { df -k --output=used "$M" | tail -1 | tr -d ' '; }
"$R" sync "$M"
used0=$(used_kb)
mkdir "$M/a"
python3 -c '
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o644)
for i in range(6000):
    os.pwrite(fd, bytes([i % 251]) * 4096, i * 8192)
os.close(fd)' "$M/a/sparse"
"$R" snapshot --readonly "$M/a" "$M/s"
rm -r "$M/a" # shared with s: nothing to free yet
"$R" sync "$M"
used1=$(used_kb)
check "the snapshot holds the data (df ${used0}K -> ${used1}K)" test $((used1 - used0)) -gt 20000
run snapshot delete "$M/s"
check "delete of the last copy returns (exit $(rc))" test "$(rc)" = 0
check "... the path is gone at once" test ! -e "$M/s"
check "... its blocks wait in the queue" bash -c "'$R' stat '$M' | grep -q 'reclaiming: about'"
"$R" sync "$M"
check "... and still count as used (df $(used_kb)K)" test $((used1 - $(used_kb))) -lt 4096
rfs_umount
check "fsck clean with a snapshot queued for release" "$R" fsck "$POOL"
rfs_mount
mkdir "$M/b"
"$R" snapshot "$M/b" "$M/t"
run snapshot delete --wait --json "$M/t"
check "delete --wait on a mount that releases (exit $(rc))" test "$(rc)" = 0
check "--wait returns when nothing is left to free" bash -c "'$R' stat '$M' | grep -q 'reclaiming: nothing'"
# (the daemon starts releasing the queue at mount, so how much of it this
# command saw come back depends on timing)
check "--json says how long it waited and how much came back" \
	jq -e '.freed_bytes >= 0 and .waited_seconds >= 0 and .deleted != null' "$SCRATCH/out"
rmdir "$M/b"
"$R" sync "$M"
check "every block is back (df $(used_kb)K, before ${used0}K)" test "$(used_kb)" -le $((used0 + 64))
rfs_umount
check "fsck clean after the release" "$R" fsck "$POOL"
POOL=$POOL_SAVE
log "blocks in use: $used after deleting everything, $fresh on a fresh pool"
check "every block is back (used $used, as many as on a fresh pool: $fresh)" \
	test "$used" -le "$fresh"
rfs_finish
