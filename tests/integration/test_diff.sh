#!/usr/bin/env bash
# reflinkfs diff on a mount: a tree and its cp -a copy (files cloned, so
# their trees are shared), then changes of every kind in the copy; the
# output must be exactly the expected set, in text and JSON, with diff(1)'s
# exit statuses, and clear errors for bad arguments.  Then snapshots: a
# read-only snapshot against its changed source and two snapshots, where
# renames show as R.
. "$(dirname "$0")/lib.bash"
rfs_setup 1G -o allow_other
cd "$SCRATCH" || exit 1
A=$MNT/a
B=$MNT/b

mkdir -p "$A/d1" "$A/d2/sub" "$A/d3"
head -c 100 /dev/urandom >"$A/f1"
head -c 5000 /dev/urandom >"$A/f4"
echo five >"$A/f5"
head -c 20000 /dev/urandom >"$A/f6"
head -c 12000 /dev/urandom >"$A/d1/f2"
head -c 9000 /dev/urandom >"$A/d1/f3"
echo x >"$A/d2/x"
echo y >"$A/d2/sub/y"
echo z >"$A/d3/z"
head -c 300 /dev/urandom >"$A/h1"
ln "$A/h1" "$A/h2"
ln -s f1 "$A/link"
setfattr -n user.k -v v0 "$A/f5"
touch -d '2001-01-01' "$A"/f* "$A"/d1/* "$A"/d2/x "$A"/d2/sub/y "$A"/d3/z "$A"/h1
touch -d '2001-01-01' "$A/d1" "$A/d2/sub" "$A/d2" "$A/d3" "$A"

run_diff() { "$RFS_BIN" diff "$@" >"$SCRATCH/out" 2>"$SCRATCH/err"; echo $? >"$SCRATCH/rc"; }
rc() { cat "$SCRATCH/rc"; }

check "cp -a makes the copy" cp -a "$A" "$B"
run_diff "$A" "$B"
check "a fresh cp -a copy: no output, exit 0 (rc $(rc))" \
	bash -c "[ $(rc) = 0 ] && [ ! -s '$SCRATCH/out' ]"
run_diff "$A" "$A"
check "a directory against itself: exit 0" test "$(rc)" = 0

# Changes of every kind, in B.
echo new >"$B/new.txt"
rm "$B/f1"
printf 'changed' | dd of="$B/d1/f2" bs=1 seek=5000 conv=notrunc status=none
cat "$A/d1/f3" >"$SCRATCH/f3" && cat "$SCRATCH/f3" >"$B/d1/f3"
touch -d '2001-01-01' "$B/d1/f3" # the same bytes rewritten: no change
chmod 600 "$B/f4"
setfattr -n user.k -v v1 "$B/f5"
mv "$B/f6" "$B/f6b"
printf 'zz' | dd of="$B/h1" bs=1 seek=0 conv=notrunc status=none
ln -sf f4 "$B/link"
mv "$B/d2" "$B/d2x"
rm -r "$B/d3"
mkdir "$B/d4" && echo y >"$B/d4/y"
setfattr -n user.dir -v 1 "$B/d1"
touch "$B/$(printf 'new\nline')"

cat >"$SCRATCH/want" <<'EOF'
M .
A new.txt
D f1
M d1
M d1/f2
M f4
M f5
D f6
A f6b
M h1
M h2
M link
D d2
D d2/x
D d2/sub
D d2/sub/y
A d2x
A d2x/x
A d2x/sub
A d2x/sub/y
D d3
D d3/z
A d4
A d4/y
A "new\nline"
EOF
run_diff "$A" "$B"
check "changes: exit 1 (rc $(rc))" test "$(rc)" = 1
LC_ALL=C sort "$SCRATCH/want" >"$SCRATCH/want.s"
LC_ALL=C sort "$SCRATCH/out" >"$SCRATCH/out.s"
check "changes: exactly the expected lines" diff "$SCRATCH/want.s" "$SCRATCH/out.s"
check "lines come sorted by path" bash -c \
	"grep -v '\"' '$SCRATCH/out' | sed 's/^. //' | LC_ALL=C sort -c"
sed -e 's/^A /X /' -e 's/^D /A /' -e 's/^X /D /' "$SCRATCH/want" | LC_ALL=C sort >"$SCRATCH/back.s"
run_diff "$B" "$A"
LC_ALL=C sort "$SCRATCH/out" >"$SCRATCH/out.s"
check "B against A: A and D swap" diff "$SCRATCH/back.s" "$SCRATCH/out.s"
run_diff "$A/d1" "$B/d1"
check "a subdirectory pair: paths relative to it" \
	bash -c "[ $(rc) = 1 ] && [ \"\$(cat '$SCRATCH/out')\" = \"\$(printf 'M .\nM f2')\" ]"
run_diff "$A/d2/sub" "$B/d2x/sub"
check "a renamed, unchanged subdirectory against its old self: exit 0" test "$(rc)" = 0

# JSON: one object, what changed for each entry.
run_diff --json "$A" "$B"
check "--json: exit 1" test "$(rc)" = 1
check "--json: the expected entries and what changed" python3 - "$SCRATCH/out" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
assert d["identical"] is False
e = {x["path"]: x for x in d["entries"]}
assert len(d["entries"]) == 25, len(d["entries"])
assert d["added"] == 9 and d["removed"] == 8 and d["modified"] == 8, d
assert e["f4"]["changes"] == ["meta"] and e["f4"]["meta"] == ["mode"], e["f4"]
assert e["f5"]["changes"] == ["xattr"], e["f5"]
assert e["d1"]["changes"] == ["xattr"] and e["d1"]["type"] == "dir", e["d1"]
assert e["d1/f2"]["changes"] == ["data", "meta"] and e["d1/f2"]["meta"] == ["mtime"], e["d1/f2"]
assert e["link"]["type"] == "symlink" and "data" in e["link"]["changes"], e["link"]
assert e["new\nline"]["op"] == "A" and e["d2"]["op"] == "D", e
assert e["."]["meta"] == ["mtime"], e["."]
EOF

# Errors: exit 2 and a message naming the path.
mkdir -p "$SCRATCH/elsewhere"
run_diff "$A" "$A/f4"
check "B is a file: exit 2, says so" bash -c \
	"[ $(rc) = 2 ] && grep -q 'f4 is not a directory' '$SCRATCH/err'"
run_diff "$A/nonexistent" "$B"
check "A does not exist: exit 2, names it" bash -c \
	"[ $(rc) = 2 ] && grep -q 'nonexistent' '$SCRATCH/err'"
run_diff "$A" "$SCRATCH/elsewhere"
check "A and B on different mounts: exit 2, says so" bash -c \
	"[ $(rc) = 2 ] && grep -q 'different mounts' '$SCRATCH/err'"
mkdir -p "$SCRATCH/elsewhere2"
run_diff "$SCRATCH/elsewhere" "$SCRATCH/elsewhere2"
check "not on a reflinkfs mount: exit 2, says so" bash -c \
	"[ $(rc) = 2 ] && grep -q 'not on a reflinkfs mount' '$SCRATCH/err'"
run_diff "$A"
check "one argument: usage, exit 2" bash -c "[ $(rc) = 2 ] && grep -q usage '$SCRATCH/err'"
run_diff --bogus "$A" "$B"
check "an unknown option: exit 2" test "$(rc)" = 2
check "--help works" bash -c "'$RFS_BIN' diff --help | grep -q 'reflinkfs diff'"
if command -v setpriv >/dev/null; then
	chmod 0755 "$SCRATCH"
	setpriv --reuid 4321 --regid 4321 --clear-groups "$RFS_BIN" diff "$A" "$B" \
		>"$SCRATCH/out" 2>"$SCRATCH/err"
	rc=$?
	check "another user: exit 2, only root or the owner may diff (rc $rc)" bash -c \
		"[ $rc = 2 ] && grep -q 'only root or the user who mounted' '$SCRATCH/err'"
fi

# Snapshots: renames are recognised (a snapshot keeps inode numbers).
V=$MNT/v
mkdir -p "$V/d1" "$V/d2" "$V/d3" "$V/d5" "$V/d6"
for d in d1 d2 d3 d5 d6; do for f in f1 f2 f3; do echo "$d $f" >"$V/$d/$f"; done; done
echo x >"$V/x"
echo y >"$V/y"
head -c 5000 /dev/urandom >"$V/big"
echo h >"$V/h1" && ln "$V/h1" "$V/d1/h2"
touch -d '2001-01-01' "$V" "$V"/d?
check "reflinkfs snapshot --readonly v s1" "$RFS_BIN" snapshot --readonly "$V" "$MNT/s1"
run_diff "$MNT/s1" "$V"
check "a snapshot against its unchanged source: exit 0 (rc $(rc))" test "$(rc)" = 0
mv "$V/d1" "$V/d1x"
mv "$V/d2/f1" "$V/d2/g1"
mv "$V/d3/f1" "$V/d5/f1"
mkdir "$V/new" && mv "$V/d6" "$V/new/d6"
mv "$V/y" "$V/x"
printf 'zz' | dd of="$V/big" bs=1 seek=100 conv=notrunc status=none
printf 'H' | dd of="$V/h1" bs=1 seek=0 conv=notrunc status=none
chmod 600 "$V/d5/f2"
touch -d '2001-01-01' "$V" "$V"/d? "$V/d1x" "$V/new" "$V/big" "$V/h1"
check "reflinkfs snapshot v s2" "$RFS_BIN" snapshot "$V" "$MNT/s2"
cat >"$SCRATCH/want" <<'EOF'
R d1 -> d1x
M d1x/h2
R d2/f1 -> d2/g1
R d3/f1 -> d5/f1
D d5/f1
M d5/f2
A new
R d6 -> new/d6
D x
R y -> x
M big
M h1
EOF
LC_ALL=C sort "$SCRATCH/want" >"$SCRATCH/want.s"
for pair in "s1 $V" "s1 $MNT/s2"; do
	set -- $pair
	run_diff "$MNT/$1" "$2"
	LC_ALL=C sort "$SCRATCH/out" >"$SCRATCH/out.s"
	check "snapshots: diff $1 ${2#"$MNT"/}: exit 1 (rc $(rc))" test "$(rc)" = 1
	check "snapshots: diff $1 ${2#"$MNT"/}: exactly the expected lines, renames as R" \
		diff "$SCRATCH/want.s" "$SCRATCH/out.s"
done
run_diff "$MNT/s2" "$V"
check "a fresh snapshot against its source: exit 0" test "$(rc)" = 0
run_diff --json "$MNT/s1" "$MNT/s2"
check "--json: a rename names the old path" python3 - "$SCRATCH/out" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
r = [x for x in d["entries"] if x["op"] == "R"]
assert {(x["old"], x["path"]) for x in r} == {("d1", "d1x"), ("d2/f1", "d2/g1"),
    ("d3/f1", "d5/f1"), ("d6", "new/d6"), ("y", "x")}, r
assert d["renamed"] == 5, d
EOF
check "snapshots deleted" bash -c "'$RFS_BIN' snapshot delete '$MNT/s1' && '$RFS_BIN' snapshot delete '$MNT/s2'"

# Many changes: records come in several pages, all of them.
mkdir "$B/many"
for i in $(seq 1 3000); do : >"$B/many/file-with-a-longish-name-$i"; done
run_diff "$A" "$B"
check "3000 added files come through (several pages)" \
	test "$(grep -c '^A many/file-with' "$SCRATCH/out")" = 3000
rm -r "$B/many"

rfs_umount
check "fsck clean" rfs_fsck
rfs_finish
