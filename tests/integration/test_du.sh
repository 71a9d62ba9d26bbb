#!/usr/bin/env bash
# reflinkfs du on a mount: exact figures for plain files, cp clones below
# and outside PATH, hard links, a snapshot of a directory and then writes
# to one side (each side's exclusive bytes grow by exactly the blocks
# written); -h, --meta and --json output; several PATHs; files, symlinks
# and FIFOs as PATH; errors that name the path, exit statuses; and a walk
# of a big tree while another process writes into it.
. "$(dirname "$0")/lib.bash"
rfs_setup 1G -o allow_other
cd "$SCRATCH" || exit 1
K=4096
M=$((1024 * 1024))

run_du() { "$RFS_BIN" du "$@" >"$SCRATCH/out" 2>"$SCRATCH/err"; echo $? >"$SCRATCH/rc"; }
rc() { cat "$SCRATCH/rc"; }
# field NAME [N]: the number NAME of the Nth object (1st by default) of
# the JSON output.
field() { grep -o "\"$1\":[0-9]*" "$SCRATCH/out" | sed -n "${2:-1}p" | cut -d: -f2; }
# expect PATH TOTAL SET EXCLUSIVE: du --json PATH gives exactly these.
expect() {
	local p=$1 t=$2 s=$3 e=$4
	run_du --json "$p"
	local gt gs ge gsh
	gt=$(field total) gs=$(field set) ge=$(field exclusive) gsh=$(field shared)
	check "du $p: total $t = $gt, set $s = $gs, exclusive $e = $ge, shared = set - exclusive" \
		bash -c "[ $(rc) = 0 ] && [ '$gt' = $t ] && [ '$gs' = $s ] && [ '$ge' = $e ] && [ '$gsh' = $((s - e)) ]"
}

mkdir -p "$MNT/a/sub" "$MNT/b"
head -c $((2 * M)) /dev/urandom >"$MNT/a/f"
head -c $((100 * K)) /dev/urandom >"$MNT/a/sub/g"
# one block: past the 888 bytes a file may keep inline in its record
head -c 1000 /dev/urandom >"$MNT/a/small"
expect "$MNT/a" $((2 * M + 101 * K)) $((2 * M + 101 * K)) $((2 * M + 101 * K))
run_du --json "$MNT/a"
check "files and directories counted" bash -c "[ '$(field files)' = 3 ] && [ '$(field dirs)' = 2 ]"

# cp clones (copy_file_range of a whole file shares its tree).
cp "$MNT/a/f" "$MNT/a/f2"
expect "$MNT/a" $((4 * M + 101 * K)) $((2 * M + 101 * K)) $((2 * M + 101 * K))
expect "$MNT/a/f" $((2 * M)) $((2 * M)) 0
cp "$MNT/a/sub/g" "$MNT/b/g"
expect "$MNT/a" $((4 * M + 101 * K)) $((2 * M + 101 * K)) $((2 * M + K))
expect "$MNT/b" $((100 * K)) $((100 * K)) 0
expect "$MNT" $((4 * M + 201 * K)) $((2 * M + 101 * K)) $((2 * M + 101 * K))
# Rewriting 3 blocks of the clone outside makes them its own.
dd if=/dev/urandom of="$MNT/b/g" bs=$K seek=5 count=3 conv=notrunc status=none
expect "$MNT/b" $((100 * K)) $((100 * K)) $((3 * K))
expect "$MNT/a" $((4 * M + 101 * K)) $((2 * M + 101 * K)) $((2 * M + 4 * K))

# Hard links: the inode counts once; it is PATH's own only when every
# name is below PATH.
head -c $((10 * K)) /dev/urandom >"$MNT/a/h"
ln "$MNT/a/h" "$MNT/a/sub/h2"
expect "$MNT/a" $((4 * M + 111 * K)) $((2 * M + 111 * K)) $((2 * M + 14 * K))
# (g's 3 blocks that b/g no longer shares are the only ones of sub's own)
expect "$MNT/a/sub" $((110 * K)) $((110 * K)) $((3 * K))
ln "$MNT/a/h" "$MNT/b/h3"
expect "$MNT/a" $((4 * M + 111 * K)) $((2 * M + 111 * K)) $((2 * M + 4 * K))
rm "$MNT/b/h3"

# A snapshot of a directory: everything shared until written.
head -c $((8 * K)) /dev/urandom >"$MNT/a/solo"
A_SET=$((2 * M + 119 * K))
A_TOT=$((4 * M + 119 * K))
expect "$MNT/a" $A_TOT $A_SET $((2 * M + 22 * K))
check "snapshot a -> snap" "$RFS_BIN" snapshot "$MNT/a" "$MNT/snap"
expect "$MNT/a" $A_TOT $A_SET 0
expect "$MNT/snap" $A_TOT $A_SET 0
expect "$MNT/a/sub" $((110 * K)) $((110 * K)) 0
expect "$MNT" $((2 * A_TOT + 100 * K)) $((A_SET + 3 * K)) $((A_SET + 3 * K))
# Rewrite 5 blocks of a/solo: exactly those 5 become a's own, and the 5
# old ones the snapshot's.
dd if=/dev/urandom of="$MNT/a/solo" bs=$K seek=2 count=5 conv=notrunc status=none
expect "$MNT/a" $A_TOT $A_SET $((5 * K))
expect "$MNT/snap" $A_TOT $A_SET $((5 * K))
# Appending 2 blocks to the snapshot's copy of g: its own, a unchanged.
head -c $((2 * K)) /dev/urandom >>"$MNT/snap/sub/g"
expect "$MNT/snap" $((A_TOT + 2 * K)) $((A_SET + 2 * K)) $((7 * K))
expect "$MNT/a" $A_TOT $A_SET $((5 * K))
# Blocks of a/f, which a/f2 shares, written through a/f: a's own; the old
# ones are still a/f2's, so shared with the snapshot.
dd if=/dev/urandom of="$MNT/a/f" bs=$K seek=100 count=4 conv=notrunc status=none
expect "$MNT/a" $((A_TOT)) $((A_SET + 4 * K)) $((9 * K))
expect "$MNT/snap" $((A_TOT + 2 * K)) $((A_SET + 2 * K)) $((7 * K))

# A deleted clone gives its blocks back in the background; du waits for
# that, so they are the original's own at once.
head -c $((8 * M)) /dev/urandom >"$MNT/b/big"
cp "$MNT/b/big" "$MNT/b/bigclone"
dd if=/dev/urandom of="$MNT/b/bigclone" bs=$K count=1 conv=notrunc status=none
expect "$MNT/b/big" $((8 * M)) $((8 * M)) $((1 * K))
rm "$MNT/b/bigclone"
expect "$MNT/b/big" $((8 * M)) $((8 * M)) $((8 * M))
rm "$MNT/b/big"

# Several PATHs in one directory, and one PATH twice, in one command: a du
# belongs to the directory and the calling process, so each must end
# before the next starts (du.c ends it with its last step).
run_du --json "$MNT/a/small" "$MNT/a/h" "$MNT/a/h"
check "du of two files of one directory, one of them twice: all three figures" bash -c \
	"[ $(rc) = 0 ] && [ '$(field total 1)' = $K ] && [ '$(field total 2)' = $((10 * K)) ] &&
	 [ '$(field total 3)' = $((10 * K)) ]"

# Output forms.
run_du "$MNT/a" "$MNT/snap"
check "text: a header and one line per PATH, in bytes" bash -c \
	"[ $(rc) = 0 ] && head -1 '$SCRATCH/out' | grep -q 'Total.*Set.*Exclusive.*Shared.*Path' &&
	 [ \$(wc -l <'$SCRATCH/out') = 3 ] && grep -q ' $((9 * K)) .*$MNT/a\$' '$SCRATCH/out'"
run_du -h "$MNT/a"
check "-h: powers of 1024 as du -h" bash -c "grep -q '4.5M *2.5M *36K .*$MNT/a\$' '$SCRATCH/out'"
run_du --meta "$MNT/a"
check "--meta: two more columns" bash -c "head -1 '$SCRATCH/out' | grep -q 'Meta set.*Meta excl'"
run_du --json "$MNT/a" "$MNT/snap"
check "--json: an array of one object per PATH" bash -c \
	"[ $(rc) = 0 ] && python3 -c 'import json,sys; d=json.load(open(\"$SCRATCH/out\")); assert len(d)==2 and d[1][\"exclusive\"]==$((7 * K)) and d[0][\"exact\"] is True'"

# Any kind of file as PATH; a symlink is not followed.
ln -s f "$MNT/a/link"
mkfifo "$MNT/a/fifo"
chmod 000 "$MNT/a/sub/g"
expect "$MNT/a/link" 0 0 0
expect "$MNT/a/fifo" 0 0 0
expect "$MNT/a/sub/g" $((100 * K)) $((100 * K)) 0

# Errors and exit statuses.
run_du "$MNT/a" "$MNT/missing"
check "a missing PATH: exit 1, named, the others still done" bash -c \
	"[ $(rc) = 1 ] && grep -q 'cannot access $MNT/missing' '$SCRATCH/err' && grep -q '$MNT/a\$' '$SCRATCH/out'"
mkdir -p "$SCRATCH/elsewhere"
run_du "$SCRATCH/elsewhere"
check "not on a reflinkfs mount: exit 1, says so" bash -c \
	"[ $(rc) = 1 ] && grep -q '$SCRATCH/elsewhere is not on a reflinkfs mount' '$SCRATCH/err'"
run_du
check "no PATH: usage, exit 2" bash -c "[ $(rc) = 2 ] && grep -q usage '$SCRATCH/err'"
run_du --bogus "$MNT/a"
check "an unknown option: exit 2" test "$(rc)" = 2
check "--help works" bash -c "'$RFS_BIN' du --help | grep -q 'reflinkfs du'"
if command -v setpriv >/dev/null; then
	chmod 0755 "$SCRATCH"
	setpriv --reuid 4321 --regid 4321 --clear-groups "$RFS_BIN" du "$MNT/a" \
		>"$SCRATCH/out" 2>"$SCRATCH/err"
	rc=$?
	check "another user: exit 1, only root or the owner may (rc $rc)" bash -c \
		"[ $rc = 1 ] && grep -q 'only root or the user who mounted' '$SCRATCH/err'"
fi

# A big tree walked in many steps while another process writes into it:
# the du ends and says the figures are approximate.
mkdir "$MNT/big"
for d in $(seq 1 20); do
	mkdir "$MNT/big/d$d"
	# 1000 bytes: one block each (not inline)
	for i in $(seq 1 150); do printf '%1000s' x >"$MNT/big/d$d/file-$i"; done
done
expect "$MNT/big" $((3000 * K)) $((3000 * K)) $((3000 * K))
(for i in $(seq 1 400); do printf y >"$MNT/big/d1/new-$i"; done) &
WRITER=$!
run_du --json "$MNT/big"
wait "$WRITER"
check "du during writes: exit 0, at least the 3000 files seen before" bash -c \
	"[ $(rc) = 0 ] && [ \$(grep -o '\"files\":[0-9]*' '$SCRATCH/out' | cut -d: -f2) -ge 3000 ]"
if [ "$(field changes)" != 0 ]; then
	check "changes during the walk: exact is false, a note says so" bash -c \
		"grep -q '\"exact\":false' '$SCRATCH/out' && grep -q 'approximate' '$SCRATCH/err'"
fi
# the 400 one-byte files keep their data inline, in no block
expect "$MNT/big" $((3000 * K)) $((3000 * K)) $((3000 * K))
run_du --json --meta "$MNT/big/d1/new-1"
check "a tiny file's data inline: no data block" bash -c \
	"[ $(rc) = 0 ] && [ '$(field total)' = 0 ] && [ '$(field files)' = 1 ] && [ \$(wc -c <'$MNT/big/d1/new-1') = 1 ]"

rfs_umount
check "fsck clean" rfs_fsck
rfs_finish
