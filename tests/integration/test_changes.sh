#!/usr/bin/env bash
# reflinkfs changes on a mount: subtree filtering (changes outside PATH
# never appear, renames into and out of PATH appear as move_in/move_out),
# hard links listed under each name,
# text and JSON output with the cursor last, --since, --follow, and the
# exit statuses of an expired cursor (3), a foreign or reset one (4) and
# bad input (2); --info: the journal's state and the verdict on a cursor.
. "$(dirname "$0")/lib.bash"
rfs_setup 256M
cd "$SCRATCH" || exit 1

ch() { "$RFS_BIN" changes "$@" >"$SCRATCH/out" 2>"$SCRATCH/err"; echo $? >"$SCRATCH/rc"; }
rc() { cat "$SCRATCH/rc"; }
cursor() { tail -n 1 "$SCRATCH/out" | sed -e 's/^cursor: //' -e 's/^{"cursor":"\(.*\)"}$/\1/'; }

mkdir "$MNT/a" "$MNT/b"
"$RFS_BIN" sync "$MNT"
ch "$MNT"
check "changes of the mount: exit 0 (rc $(rc))" test "$(rc)" = 0
check "the last line is the cursor" grep -q '^cursor: rfsj1:' "$SCRATCH/out"
check "mkdir a listed" grep -q ' mkdir a$' "$SCRATCH/out"
C0=$(cursor)

echo x >"$MNT/a/x"
echo y >"$MNT/b/y"
mv "$MNT/b/y" "$MNT/a/y"
mv "$MNT/a/x" "$MNT/b/x"
echo more >>"$MNT/b/x"
"$RFS_BIN" sync "$MNT"

ch --since "$C0" "$MNT/a"
check "since C0 below a: exit 0" test "$(rc)" = 0
# The write of a new file merges into its create (same commit).
check "create x in a, its write merged" grep -q ' create x +data 0+2$' "$SCRATCH/out"
check "y moved into a" grep -q ' move_in y$' "$SCRATCH/out"
check "x moved out of a" grep -q ' move_out x$' "$SCRATCH/out"
check_fail "nothing of b's own changes below a" grep -q 'create y\|data x 5' "$SCRATCH/out"
ch --since "$C0" "$MNT/b"
check "b: create y, move_out y, move_in x" \
	bash -c "grep -q ' create y +data 0+2$' '$SCRATCH/out' && grep -q ' move_out y$' '$SCRATCH/out' && grep -q ' move_in x$' '$SCRATCH/out'"
check "b: the append to x, with its byte range" grep -q ' data x 2+5$' "$SCRATCH/out"
ch --since "$C0" "$MNT"
check "the mount: the renames with both names" \
	bash -c "grep -q ' rename b/y -> a/y$' '$SCRATCH/out' && grep -q ' rename a/x -> b/x$' '$SCRATCH/out'"

ch --json --since "$C0" "$MNT/a"
check "JSON: move_in with path" grep -q '"kind":"move_in","path":"y"' "$SCRATCH/out"
check "JSON: the merged write: also and ranges" \
	grep -q '"kind":"create","path":"x",.*"also":\["data"\],"ranges":\[\[0,2\]\]' "$SCRATCH/out"
check "JSON: cursor object last" bash -c "tail -n 1 '$SCRATCH/out' | grep -q '^{\"cursor\":\"rfsj1:'"
C1=$(cursor)
ch --json --since "$C1" "$MNT"
check "nothing since the new cursor: only the cursor line" \
	test "$(wc -l <"$SCRATCH/out")" = 1

# --follow: a change made after it started shows up (the daemon waits for
# it and commits it).
"$RFS_BIN" changes --follow --json --since "$C1" "$MNT" >"$SCRATCH/follow" 2>&1 &
FPID=$!
sleep 0.5
touch "$MNT/a/followed"
for i in $(seq 100); do
	grep -q '"path":"a/followed"' "$SCRATCH/follow" && break
	sleep 0.1
done
check "--follow delivers a new change" grep -q '"kind":"create","path":"a/followed"' "$SCRATCH/follow"
kill "$FPID"
wait "$FPID" 2>/dev/null

# Followers killed (-9) while they wait in the daemon: their requests are
# interrupted and answered, so they exit, and more of them than may wait
# at once (8) leave the mount able to serve a follower that waits.
KILLED=""
for i in $(seq 10); do
	"$RFS_BIN" changes --follow --since "$C1" "$MNT/b" >/dev/null 2>&1 &
	KP=$!
	KILLED="$KILLED $KP"
	sleep 0.2
	kill -9 "$KP"
	wait "$KP" 2>/dev/null
done
check "killed followers are gone" bash -c "! ps -o pid= -p '${KILLED# }' >/dev/null"
"$RFS_BIN" changes --follow --json --since "$C1" "$MNT/a" >"$SCRATCH/follow2" 2>&1 &
FPID=$!
sleep 0.3
touch "$MNT/a/followed2"
for i in $(seq 100); do
	grep -q '"path":"followed2"' "$SCRATCH/follow2" && break
	sleep 0.1
done
check "after killed followers, --follow still delivers" grep -q '"path":"followed2"' "$SCRATCH/follow2"
kill "$FPID"
wait "$FPID" 2>/dev/null

# Hard links: a write through one name is listed under each name's
# directory, with that name.
ln "$MNT/a/y" "$MNT/b/ylink"
"$RFS_BIN" sync "$MNT"
ch "$MNT"
CH=$(cursor)
echo appended >>"$MNT/b/ylink"
"$RFS_BIN" sync "$MNT"
ch --since "$CH" "$MNT/a"
check "hard link: the write listed under a as y" grep -q ' data y ' "$SCRATCH/out"
ch --since "$CH" "$MNT/b"
check "hard link: the write listed under b as ylink" grep -q ' data ylink ' "$SCRATCH/out"
ch --since "$CH" "$MNT"
check "hard link: the mount lists both names" \
	bash -c "grep -q ' data a/y ' '$SCRATCH/out' && grep -q ' data b/ylink ' '$SCRATCH/out'"
check_fail "hard link: no record without a path" grep -q '(inode ' "$SCRATCH/out"

# Errors.
ch --since "rfsj1:00000000000000000000000000000000:0000000000000001:0000000000000001" "$MNT"
check "another pool's cursor: exit 4 (rc $(rc))" test "$(rc)" = 4
ch --since garbage "$MNT"
check "not a cursor: exit 2" test "$(rc)" = 2
check "not a cursor: says so" grep -q 'not a cursor' "$SCRATCH/err"
ch "$MNT/a/y"
check "a file: exit 2" test "$(rc)" = 2
ch "$SCRATCH"
check "not on a mount: exit 2" test "$(rc)" = 2
check "--help" "$RFS_BIN" changes --help

# Retention: a small journal trims; an old cursor has expired.
ch "$MNT"
C2=$(cursor)
rfs_umount
check "mount with journal_size=64K" rfs_mount -o journal_size=64K
mkdir "$MNT/many"
for i in $(seq 1500); do : >"$MNT/many/file-with-a-long-name-$i"; done
"$RFS_BIN" sync "$MNT"
ch --since "$C2" "$MNT"
check "expired cursor: exit 3 (rc $(rc))" test "$(rc)" = 3
check "expired cursor: says rescan" grep -q 'cursor expired: rescan needed' "$SCRATCH/err"
# --info: the journal's state, and the same verdict on a cursor.
ch --info "$MNT"
check "--info: exit 0 (rc $(rc))" test "$(rc)" = 0
check "--info: records kept against the 64 KiB limit" \
	grep -Eq '^records kept: +[0-9]+ \(.* of the 64 KiB retention limit\)$' "$SCRATCH/out"
OLDEST=$(sed -n 's/^oldest cursor: *//p' "$SCRATCH/out")
NOW=$(sed -n 's/^current cursor: *//p' "$SCRATCH/out")
check "--info: an oldest and a current cursor" \
	bash -c "[[ '$OLDEST' == rfsj1:* && '$NOW' == rfsj1:* && '$OLDEST' != '$NOW' ]]"
ch --info --since "$C2" "$MNT"
check "--info of the expired cursor: exit 3 (rc $(rc))" test "$(rc)" = 3
check "--info of the expired cursor: says expired" grep -q '^given cursor: *expired$' "$SCRATCH/out"
ch --since "$OLDEST" "$MNT"
check "the oldest cursor is readable (rc $(rc))" test "$(rc)" = 0
N=$(grep -vc '^cursor: ' "$SCRATCH/out")
ch --info --json --since "$OLDEST" "$MNT"
check "--info --json: the oldest cursor, with as many changes after it as a read gives ($N)" \
	grep -q "\"since\":\"readable\",\"since_behind\":$N}" "$SCRATCH/out"
ch --info --since "$NOW" "$MNT"
check "--info of the current cursor: 0 changes after it" \
	grep -q '^given cursor: *readable, 0 changes committed after it' "$SCRATCH/out"
ch --info --follow "$MNT"
check "--info with --follow: exit 2" test "$(rc)" = 2

# A mount without journal resets it: old cursors get exit 4.
ch "$MNT"
C3=$(cursor)
rfs_umount
check "mount -o nojournal" rfs_mount -o nojournal
touch "$MNT/unrecorded"
ch "$MNT"
check "nojournal mount: changes says so (exit 2)" \
	bash -c "[ $(rc) = 2 ] && grep -q nojournal '$SCRATCH/err'"
rfs_umount
check "mount again" rfs_mount
ch --since "$C3" "$MNT"
check "cursor of before a nojournal mount: exit 4 (rc $(rc))" test "$(rc)" = 4
ch --info --since "$C3" "$MNT"
check "--info of a cursor of before the reset: exit 4, says reset" \
	bash -c "[ $(rc) = 4 ] && grep -q '^given cursor: *reset$' '$SCRATCH/out'"

rfs_umount
check "fsck clean" rfs_fsck

# Retention set at mkfs, kept in the pool: a small journal trims.
check "mkfs --journal-size 1K: too small (exit 2)" \
	bash -c "! '$RFS_BIN' mkfs --force --size 64M --journal-size 1K '$POOL' 2>'$SCRATCH/err'; grep -q 'at least 64K' '$SCRATCH/err'"
check "mkfs --journal-size larger than the pool: exit 2" \
	bash -c "'$RFS_BIN' mkfs --force --size 64M --journal-size 1G '$POOL' 2>'$SCRATCH/err'; [ \$? = 2 ] && grep -q 'larger than the pool' '$SCRATCH/err'"
check "mkfs --journal-size 64K" "$RFS_BIN" mkfs --force --size 64M --journal-size 64K "$POOL"
check "mount the new pool" rfs_mount
ch "$MNT"
C4=$(cursor)
mkdir "$MNT/many"
for i in $(seq 1500); do : >"$MNT/many/file-with-a-long-name-$i"; done
"$RFS_BIN" sync "$MNT"
ch --since "$C4" "$MNT"
check "journal of mkfs --journal-size 64K trimmed: exit 3 (rc $(rc))" test "$(rc)" = 3
rfs_umount
check "fsck clean" rfs_fsck
rfs_finish
