#!/usr/bin/env bash
# overlayfs with its upper and work directories on reflinkfs (what a
# container runtime does): the kernel accepts a FUSE upper layer only when
# it supports RENAME_WHITEOUT, d_type and trusted.* xattrs.  Deleting and
# renaming lower files in the merged view must leave whiteouts (character
# devices 0/0) in the upper directory, and the merged view must survive
# remounting both.
. "$(dirname "$0")/lib.bash"
if [ "$(id -u)" -ne 0 ] || ! grep -qw overlay /proc/filesystems; then
	echo "needs root and overlayfs: skipping"
	exit 77
fi
rfs_setup 1G
cd "$SCRATCH" || exit 1
LOWER=$SCRATCH/lower
MERGED=$SCRATCH/merged
mkdir -p "$LOWER/dir/sub" "$MERGED" "$MNT/upper" "$MNT/work"
echo lower-a >"$LOWER/a"
echo lower-b >"$LOWER/b"
echo lower-c >"$LOWER/c"
echo inner >"$LOWER/dir/sub/f"
echo keep >"$LOWER/dir/keep"

ovl_mount() {
	mount -t overlay overlay \
		-o "lowerdir=$LOWER,upperdir=$MNT/upper,workdir=$MNT/work" "$MERGED"
}
ovl_umount() {
	umount "$MERGED"
}
cleanup_ovl() {
	grep -q " $MERGED overlay" /proc/mounts && umount "$MERGED"
	rfs_cleanup
}
trap cleanup_ovl EXIT

# whiteout PATH: a character device 0/0
is_whiteout() {
	[ -c "$1" ] && [ "$(stat -c '%t:%T' "$1")" = 0:0 ]
}

check "overlay mounts with upper and work on reflinkfs" ovl_mount
check "the merged view shows the lower files" \
	bash -c "[ \"\$(cat '$MERGED/a')\" = lower-a ]"

# delete a lower file: whiteout in upper
check "rm of a lower file in the merged view" rm "$MERGED/a"
check "... is gone from the merged view" test ! -e "$MERGED/a"
check "... leaves a whiteout in upper" is_whiteout "$MNT/upper/a"
check "... and the lower file untouched" bash -c "[ \"\$(cat '$LOWER/a')\" = lower-a ]"

# rename a lower file (copy-up, then RENAME_WHITEOUT at the old name)
check "mv of a lower file in the merged view" mv "$MERGED/b" "$MERGED/b2"
check "... reads the same at the new name" bash -c "[ \"\$(cat '$MERGED/b2')\" = lower-b ]"
check "... the old name is gone" test ! -e "$MERGED/b"
check "... whiteout at the old name in upper" is_whiteout "$MNT/upper/b"
check "... the renamed file is in upper" bash -c "[ \"\$(cat '$MNT/upper/b2')\" = lower-b ]"

# modify a lower file: copy-up, lower untouched
check "append to a lower file" bash -c "echo more >>'$MERGED/c'"
check "... upper holds the copy" bash -c "[ \"\$(cat '$MNT/upper/c')\" = \$'lower-c\nmore' ]"
check "... lower unchanged" bash -c "[ \"\$(cat '$LOWER/c')\" = lower-c ]"

# remove a lower directory tree: whiteout for the directory
check "rm -r of a lower directory" rm -r "$MERGED/dir/sub"
check "... whiteout for it in upper" is_whiteout "$MNT/upper/dir/sub"
check "... its sibling stays" bash -c "[ \"\$(cat '$MERGED/dir/keep')\" = keep ]"

# new files and directories, renamed over and deleted again
check "new file in the merged view" bash -c "echo new >'$MERGED/new'"
check "new directory, renamed" bash -c "mkdir '$MERGED/nd' && echo x >'$MERGED/nd/x' && mv '$MERGED/nd' '$MERGED/nd2'"
check "... lands in upper" bash -c "[ \"\$(cat '$MNT/upper/nd2/x')\" = x ]"
check "a file recreated over a whiteout" bash -c "echo again >'$MERGED/a' && [ \"\$(cat '$MERGED/a')\" = again ]"
check "... is a regular file in upper" test -f "$MNT/upper/a"

check "overlay unmounts" ovl_umount
check "reflinkfs unmounts" rfs_umount
check "fsck clean after overlay use" rfs_fsck
check "reflinkfs mounts again" rfs_mount
check "overlay mounts again" ovl_mount
check "merged view after remount: deleted file stays deleted" test ! -e "$MERGED/b"
check "... renamed file" bash -c "[ \"\$(cat '$MERGED/b2')\" = lower-b ]"
check "... recreated file" bash -c "[ \"\$(cat '$MERGED/a')\" = again ]"
check "... deleted directory" test ! -e "$MERGED/dir/sub"
check "... copied-up file" bash -c "[ \"\$(cat '$MERGED/c')\" = \$'lower-c\nmore' ]"
check "overlay unmounts" ovl_umount
rfs_finish
