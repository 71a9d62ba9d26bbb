#!/usr/bin/env bash
# reflinkfs watch (pre-modification events) on a mount: an already-open
# file gets its event, one-shot, the kinds; --blocking: the writer waits
# until the subscriber acknowledges (the stored data is still the old one
# while it waits), the timeout lets it go on and the event is reported
# unacknowledged, a subscriber killed by SIGKILL releases the writer; an
# mmap writer (the next dirtied page gives an event before it is stored;
# a page dirtied before the mark is not lost);
# permission refusal for another user; the lazy snapshot with --exec
# 'reflinkfs clone'; errors.
. "$(dirname "$0")/lib.bash"
HERE=$(cd "$(dirname "$0")" && pwd)
rfs_setup 512M -o allow_other
cd "$SCRATCH" || exit 1
R=$RFS_BIN
WPID=

# Wait (watchdog 120 s: only a hang ever gets near it) until file $1
# contains pattern $2.
wait_for() {
	local i
	for i in $(seq 1200); do
		grep -q -- "$2" "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	echo "waited 120 s for '$2' in $1:"
	cat "$1"
	return 1
}
# Wait until file $1 exists (watchdog 120 s).
wait_file() {
	local i
	for i in $(seq 1200); do
		[ -e "$1" ] && return 0
		sleep 0.1
	done
	echo "no $1 after 120 s"
	return 1
}
# Wait until process $1 has ended (watchdog 120 s).
wait_gone() {
	local i
	for i in $(seq 1200); do
		kill -0 "$1" 2>/dev/null || return 0
		sleep 0.1
	done
	echo "process $1 still runs after 120 s"
	return 1
}
# Start `reflinkfs watch ARGS` in the background; wait until its marks are
# armed ("ready" on stderr).
start_watch() {
	: >"$SCRATCH/wout"
	: >"$SCRATCH/werr"
	"$R" watch "$@" >"$SCRATCH/wout" 2>"$SCRATCH/werr" &
	WPID=$!
	wait_for "$SCRATCH/werr" 'ready' || { cat "$SCRATCH/werr"; return 1; }
}
stop_watch() {
	[ -n "$WPID" ] || return 0
	kill "$WPID" 2>/dev/null
	wait "$WPID" 2>/dev/null
	WPID=
}
lines() { wc -l <"$SCRATCH/wout"; }
# ev REL FILTER: exactly one event of rel REL in wout, and FILTER holds.
ev() { jq -e -s --arg r "$1" "map(select(.rel == \$r)) | length == 1 and (.[0] | $2)" "$SCRATCH/wout"; }
# one FILTER: wout holds exactly one event, and FILTER holds.
one() { jq -e -s "length == 1 and (.[0] | $1)" "$SCRATCH/wout" || { cat "$SCRATCH/wout"; false; }; }

W=$MNT/w
mkdir -p "$W/sub"
for f in f1 f2 t a x r u; do echo "old $f" >"$W/$f"; done
echo "old deep" >"$W/sub/deep"

# ---- non-blocking: an already-open file, one-shot, kinds
exec 5>>"$W/f1" # open before the mark
start_watch --json "$W"
check "watch prints ready" grep -q 'ready: 1 path marked' "$SCRATCH/werr"
echo more >&5
wait_for "$SCRATCH/wout" '"rel":"f1"'
check "an already-open file gets its event (write)" \
	ev f1 '.kind == "write" and .path == "'"$W/f1"'" and .blocking == false and .status == "not_blocking"'
check "the event has the file's inode number" \
	ev f1 ".ino == $(stat -c %i "$W/f1")"
echo again >&5
exec 5>&-
truncate -s 2 "$W/t"
chmod 600 "$W/a"
setfattr -n user.k -v v "$W/x"
mv "$W/r" "$W/r2"
rm "$W/u"
echo deeper >>"$W/sub/deep"
echo f2 >>"$W/f2"
wait_for "$SCRATCH/wout" '"rel":"f2"'
check "one-shot: f1 reported once" test "$(grep -c '"rel":"f1"' "$SCRATCH/wout")" = 1
check "truncate" ev t '.kind == "truncate"'
check "chmod: attr" ev a '.kind == "attr"'
check "setfattr: xattr" ev x '.kind == "xattr"'
check "mv: rename, under the old name" ev r '.kind == "rename"'
check "rm: unlink" ev u '.kind == "unlink"'
check "a file in a subdirectory, path relative to the watched one" \
	ev sub/deep '.path == "'"$W/sub/deep"'"'
check "eight events in all" bash -c "[ $(lines) = 8 ] || { cat '$SCRATCH/wout'; false; }"
stop_watch

# ---- text output, a watched file, --count
echo one >"$W/single"
start_watch --count 1 "$W/single"
echo two >>"$W/single"
wait "$WPID"
rc=$?
WPID=
check "--count 1: exits 0 after one event (got $rc)" test "$rc" = 0
check "text line: KIND PATH" grep -qx "write $W/single" "$SCRATCH/wout"

# ---- blocking: the writer waits for the ack.  What is stored is seen
# through a clone: a read through the page cache would wait for the page
# the writer holds locked (docs/WATCH.md).
# stored FILE: its stored content (a clone of it, not flushing its pages).
stored() {
	rm -f "$MNT/.stored"
	REFLINKFS_WATCH_INO=$(stat -c %i "$1") "$R" clone "$1" "$MNT/.stored" && cat "$MNT/.stored"
}
echo "old data" >"$W/b"
rm -f "$SCRATCH/go" "$SCRATCH/in_exec"
start_watch --blocking --json --exec \
	"'$R' clone {} '$MNT/seen_b' && touch '$SCRATCH/in_exec' &&
	 while [ ! -e '$SCRATCH/go' ]; do sleep 0.05; done" "$W/b"
printf 'NEW' | dd of="$W/b" conv=notrunc status=none &
WRITER=$!
wait_file "$SCRATCH/in_exec"
check "while the subscriber runs, the writer waits" kill -0 "$WRITER"
check "the subscriber saw the old content" grep -qx "old data" "$MNT/seen_b"
check "... and it is still what is stored" bash -c "[ \"\$(REFLINKFS_WATCH_INO=$(stat -c %i "$W/b") '$R' clone '$W/b' '$MNT/seen_b2' && cat '$MNT/seen_b2')\" = 'old data' ]"
touch "$SCRATCH/go"
check "after the ack the write completes" wait_gone "$WRITER"
check "... and is stored" grep -qx "NEW data" "$W/b"
wait_for "$SCRATCH/wout" '"rel":"b"'
check "the event is reported acknowledged, with CMD's exit status" \
	one '.status == "acked" and .exit == 0 and .blocking == true'
stop_watch

# ---- blocking a metadata request (truncate: SETATTR).  The worker that
# read it left reading the next request to nobody (src/fuse/reader.c):
# the watchdog must hand it on, or the subscriber's own requests (the
# clone) would never be read while the truncate waits for their ack.
echo "old q" >"$W/q"
rm -f "$SCRATCH/go" "$SCRATCH/in_exec"
start_watch --blocking --timeout 600000 --json --exec \
	"'$R' clone {} '$MNT/seen_q' && touch '$SCRATCH/in_exec' &&
	 while [ ! -e '$SCRATCH/go' ]; do sleep 0.05; done" "$W/q"
truncate -s 2 "$W/q" &
WRITER=$!
check "a blocked truncate does not keep the subscriber's requests from being served" \
	wait_file "$SCRATCH/in_exec"
check "... the truncate waits meanwhile" kill -0 "$WRITER"
check "... the subscriber saw the old content" grep -qx "old q" "$MNT/seen_q"
touch "$SCRATCH/go"
check "after the ack the truncate completes" wait_gone "$WRITER"
check "... and is stored" test "$(stat -c %s "$W/q")" = 2
stop_watch

# ---- blocking: the timeout lets the write go on, unacknowledged
echo "old" >"$W/slow"
rm -f "$SCRATCH/go"
start_watch --blocking --timeout 500 --json --exec \
	"while [ ! -e '$SCRATCH/go' ]; do sleep 0.05; done" "$W/slow"
echo "new" >>"$W/slow" # returns only after the timeout (CMD waits for go)
touch "$SCRATCH/go"
wait_for "$SCRATCH/wout" '"status"'
check "timeout: the write went on without the ack" grep -qx new "$W/slow"
check "timeout: the event is reported timed out" one '.status == "timed_out"'
stop_watch

# ---- a subscriber killed while a writer waits releases it
echo "old" >"$W/k"
rm -f "$SCRATCH/in_exec" "$SCRATCH/sh.pid"
start_watch --blocking --timeout 600000 --exec \
	"echo \$\$ >'$SCRATCH/sh.pid'; touch '$SCRATCH/in_exec'; exec sleep 1000" "$W/k"
echo new >>"$W/k" &
WRITER=$!
wait_file "$SCRATCH/in_exec"
check "the writer waits for the subscriber" kill -0 "$WRITER"
{ kill -9 "$WPID"; wait "$WPID"; } 2>/dev/null
wait "$WPID" 2>/dev/null
WPID=
check "kill -9 of the subscriber releases the writer" wait_gone "$WRITER"
check "... whose write is stored" grep -qx new "$W/k"
kill "$(cat "$SCRATCH/sh.pid")" 2>/dev/null

# ---- mmap: the next dirtied page after the mark gives an event before it
# is stored; a page dirtied before the mark is not lost
cat >"$SCRATCH/mm.py" <<'EOF'
import mmap, os, sys, time
path, d = sys.argv[1], sys.argv[2]
fd = os.open(path, os.O_RDWR)
m = mmap.mmap(fd, 8192, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
m[0:4096] = b"B" * 4096          # dirty before the mark, never msync'd here
open(d + "/mm_dirty", "w").close()
while not os.path.exists(d + "/mm_marked"):
    time.sleep(0.05)
m[4096:8192] = b"C" * 4096       # dirtied after the mark
m.flush()                        # msync(MS_SYNC): the write-back waits for the ack
open(d + "/mm_done", "w").close()
EOF
head -c 8192 /dev/zero | tr '\0' a >"$W/mm"
rm -f "$SCRATCH"/mm_*
python3 "$SCRATCH/mm.py" "$W/mm" "$SCRATCH" &
MM=$!
wait_file "$SCRATCH/mm_dirty"
stored "$W/mm" >"$SCRATCH/mm_before"
# Normally the page is still only dirty in the kernel here; the kernel's
# own background writeback may have stored it already (the machine's
# dirty-memory limits, not ours), which leaves less for the mark to do but
# changes no outcome below.
if [ "$(tr -d a <"$SCRATCH/mm_before" | wc -c)" = 0 ]; then
	log "ok   before the mark, the mmap'd page is dirty in the kernel, not stored"
else
	log "note the kernel wrote the mmap'd page back before the mark"
fi
start_watch --blocking --json --exec "'$R' clone {} '$MNT/mm_seen'" "$W/mm"
# The mark made the kernel write the dirty page back before it was armed:
# stored, not reported.  (The output file is not mm_marked: that name
# lets mm.py go on.)
stored "$W/mm" >"$SCRATCH/mm_after_mark"
check "the mark wrote back the page dirtied before it" \
	bash -c "[ \"\$(head -c 4096 '$SCRATCH/mm_after_mark' | tr -d B | wc -c)\" = 0 ]"
check "... unreported" test "$(lines)" = 0
touch "$SCRATCH/mm_marked"
check "msync of the next dirtied page completes (after the ack)" wait_gone "$MM"
wait_for "$SCRATCH/wout" '"status"'
check "one event (one-shot), a write, acknowledged" one '.kind == "write" and .status == "acked"'
check "the subscriber's clone: page 1 not yet stored (old)" \
	bash -c "[ \"\$(tail -c 4096 '$MNT/mm_seen' | tr -d a | wc -c)\" = 0 ]"
check "after the ack both pages are stored" \
	bash -c "d=\$(dd if='$W/mm' iflag=direct bs=1M status=none); [ \"\$(printf %s \"\$d\" | head -c 4096 | tr -d B | wc -c)\" = 0 ] && [ \"\$(printf %s \"\$d\" | tail -c 4096 | tr -d C | wc -c)\" = 0 ]"
stop_watch

# ---- the same over many trials, through the raw protocol (no client-side
# write-back before the ioctl: the daemon's step alone), with the page
# dirtied in this process or in another one, marks on files and on their
# directory (tests/integration/watch_mmap.py says what each trial checks)
mkdir -p "$MNT/mmtrials"
check "200 trials: a page dirtied before the mark is never reported, the next one always is" \
	python3 "$HERE/watch_mmap.py" "$MNT/mmtrials" 200

# ---- permissions: a user who may not write PATH cannot mark it
U=(setpriv --reuid=65534 --regid=65534 --clear-groups)
chmod 755 "$SCRATCH" "$MNT" "$W"
mkdir -p "$MNT/pub"
chmod 777 "$MNT/pub"
echo "root's" >"$MNT/pub/roots"
chmod 644 "$MNT/pub/roots"
if "${U[@]}" true 2>/dev/null; then
	"${U[@]}" "$R" watch "$MNT/pub/roots" >"$SCRATCH/out" 2>"$SCRATCH/err"
	rc=$?
	check "another user cannot watch root's file: exit 1 (got $rc)" test "$rc" = 1
	check "... permission denied, naming the file" grep -q "pub/roots: permission denied" "$SCRATCH/err"
	"${U[@]}" "$R" watch "$W" >"$SCRATCH/out" 2>"$SCRATCH/err"
	rc=$?
	check "... nor root's directory (exit $rc)" test "$rc" = 1
	"${U[@]}" bash -c "echo mine >'$MNT/pub/mine'"
	"${U[@]}" "$R" watch --count 1 --json "$MNT/pub/mine" >"$SCRATCH/uout" 2>"$SCRATCH/uerr" &
	UW=$!
	wait_for "$SCRATCH/uerr" ready
	echo more >>"$MNT/pub/mine"
	wait "$UW"
	rc=$?
	check "the user can watch its own file (exit 0 after the event, got $rc)" test "$rc" = 0
	check "... and got its event" jq -e -s 'length == 1 and .[0].rel == "mine"' "$SCRATCH/uout"
else
	log "skip another user's permissions: setpriv cannot change user here"
fi

# ---- the lazy snapshot: versions keep each file's content before its
# first change
P=$MNT/project
V=$MNT/versions
mkdir -p "$P/src/deep" "$V"
for f in a b c d e; do echo "orig $f" >"$P/src/$f"; done
echo "orig z" >"$P/src/deep/z"
echo "orig top" >"$P/top"
head -c 8192 /dev/zero | tr '\0' m >"$P/map"
cp -a "$P" "$SCRATCH/orig"
start_watch --blocking --json --exec \
	"'$R' clone {} $V/{rel}" "$P"     # the issue's recipe, as written
echo changed >"$P/src/a"          # truncate first, then write
echo appended >>"$P/src/b"
rm "$P/src/c"                     # unlink: its directory is locked meanwhile
mv "$P/src/d" "$P/src/d.moved"    # rename
sed -i 's/orig/edited/' "$P/src/e" # a new file renamed over e
echo z >>"$P/src/deep/z"
echo twice >>"$P/top"
echo thrice >>"$P/top"
python3 -c '
import mmap, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
m = mmap.mmap(fd, 8192)
m[0:5] = b"MMAP!"
m.flush()' "$P/map"
wait_for "$SCRATCH/wout" '"rel":"map"'
for f in src/a src/b src/c src/d src/e src/deep/z top map; do
	check "lazy snapshot keeps $f as it was" cmp "$SCRATCH/orig/$f" "$V/$f"
done
check "every event was acknowledged, CMD exited 0" \
	bash -c "jq -e -s 'length > 0 and all(.status == \"acked\" and .exit == 0)' '$SCRATCH/wout' || { cat '$SCRATCH/wout'; false; }"
check "untouched files are not copied" bash -c "[ -z \"\$(find '$V' -name 'd.moved')\" ]"
check "the changes themselves happened" bash -c "grep -qx changed '$P/src/a' && grep -q edited '$P/src/e' && [ ! -e '$P/src/c' ]"
stop_watch

# ---- errors
mkdir -p "$SCRATCH/plain"
"$R" watch "$SCRATCH/plain" >"$SCRATCH/out" 2>"$SCRATCH/err"
rc=$?
check "not a reflinkfs mount: exit 2 (got $rc), says so" \
	bash -c "[ $rc = 2 ] && grep -q 'not on a reflinkfs mount' '$SCRATCH/err'"
"$R" watch "$MNT/nonexistent" >"$SCRATCH/out" 2>"$SCRATCH/err"
rc=$?
check "a missing path: exit 1, named" bash -c "[ $rc = 1 ] && grep -q nonexistent '$SCRATCH/err'"
"$R" watch --timeout x "$W" >"$SCRATCH/out" 2>"$SCRATCH/err"
check "a bad --timeout: exit 2" test $? = 2
"$R" watch >"$SCRATCH/out" 2>"$SCRATCH/err"
check "no PATH: usage, exit 2" bash -c "[ $? = 2 ] && grep -q usage '$SCRATCH/err'"
check "--help" bash -c "'$R' watch --help | grep -q 'reflinkfs watch'"

# ---- unmount while watching: the watcher says so and exits 1
start_watch "$W"
check "unmount with a watcher connected" rfs_umount
wait "$WPID"
rc=$?
WPID=
check "the watcher exits 1 (got $rc)" test "$rc" = 1
check "... saying the mount went away" grep -q 'went away' "$SCRATCH/werr"
rfs_finish
