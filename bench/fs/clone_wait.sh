#!/usr/bin/env bash
# What a reader of a file with about 1M extents waits for while the file
# is cloned (issue 9: "reader wait during a clone of a 1M-extent file").
#
#   bench/fs/clone_wait.sh [--size 4G] [--rounds 3] [--window 2] [--rt]
#
# One fresh pool under ${RFS_FS_BENCH_DIR:-/var/tmp}: a file of SIZE
# written sequentially, cloned (cp), every other 4 KiB block of the clone
# overwritten (SIZE/8K extents: 524,288 exclusive ones between as many
# shared, 1,048,576 in all for 4G), the original deleted.  Then ROUNDS
# times: `rfsbench reader` (O_DIRECT 4 KiB preads of the file) alone for
# WINDOW seconds ("no clone": the mount's floor), then the same reader
# during `cp` of the file (a clone: copy_file_range) and the commit that
# follows it (`reflinkfs sync`), each followed by
# `rfsbench readwaits` -- what the daemon's READs waited for inside it:
# the longest READ from handler start to reply, its lock waits, the
# longest lock wait of each kind (pool lock read side / cache shard / cache
# slab / node table), and the write-lock spans per holder.  A reader's
# outside wait that is long while the daemon's READs were short and
# waited for no lock was lost to scheduling, not to the filesystem.
# Each round also runs the same reader for WINDOW seconds on a 64 MiB
# file on native tmpfs (/dev/shm), with nothing else running: the
# machine's own floor for a reader's longest wait, which no filesystem
# can go under.  The reader prints its longest wait, the 99th and 99.9th
# percentiles and the number of reads that took 1 ms or more.
# --rt runs the reader and the daemon's FUSE workers (the threads named
# rfs-fuse) under SCHED_FIFO, priority 50 (chrt), and everything else
# (cp, the commit, the release, anything else on the machine) as before: on
# a 2-vCPU machine a reader under the normal scheduler waits milliseconds
# for a CPU whatever the filesystem does (the floor says how long), and
# with --rt what is left of its wait is what the filesystem makes it
# wait: its locks, its commit, its I/O.  Needs root (or CAP_SYS_NICE).
set -u
exec 3>&1 # the report is stdout (help too)
root=$(cd "$(dirname "$0")/../.." && pwd)
me=clone_wait.sh
. "$root/bench/lib.bash"
size=4G rounds=3 window=2 rt=
bench_args 2,32 "size= rounds= window= rt" "$@"
bench_bin
bench_traps
bench_work "${RFS_FS_BENCH_DIR:-/var/tmp}" clonewait
mnt=$work/mnt rpid=
kill_pids=
# The report on stdout: wall clock time and what was measured.
log() { printf '%s %s\n' "$(date +%T)" "$*"; }
mkdir -p "$mnt"
floordir=$(mktemp -d /dev/shm/rfs-clonewait-floor.XXXXXX)
trap 'rc=$?; rm -rf "$floordir"; (exit $rc); bench_cleanup' EXIT
bench_rfsbench || exit 1
"$rb" fill "$floordir/native.img" 64M 2>/dev/null
bytes=$(numfmt --from=iec "$size")
"$bin" mkfs --size "$((bytes * 3 + (2 << 30)))" "$work/pool" >/dev/null || exit 1
rfs_mount "$work/pool"
log "pool $work/pool, load $(cut -d' ' -f1-3 /proc/loadavg)"
rtcmd=
if [ -n "$rt" ]; then
	rtcmd="chrt -f 50"
	# Each worker names itself as it starts: wait until the count holds.
	was=-1
	for _ in $(seq 20); do
		nw=$(grep -lx rfs-fuse /proc/"$daemon_pid"/task/*/comm 2>/dev/null | wc -l)
		[ "$nw" = "$was" ] && break
		was=$nw
		sleep 0.1
	done
	nw=0
	for c in /proc/"$daemon_pid"/task/*/comm; do
		[ "$(cat "$c" 2>/dev/null)" = rfs-fuse ] || continue
		t=${c%/comm}
		chrt -f -p 50 "${t##*/}" >/dev/null || { echo "$me: --rt: chrt failed (needs root or CAP_SYS_NICE)" >&2; exit 1; }
		nw=$((nw + 1))
	done
	[ "$nw" -gt 0 ] || { echo "$me: --rt: no thread named rfs-fuse in the daemon $daemon_pid" >&2; exit 1; }
	log "--rt: the reader and $nw FUSE workers under SCHED_FIFO 50; RT runtime limit $(cat /proc/sys/kernel/sched_rt_runtime_us 2>/dev/null) us per $(cat /proc/sys/kernel/sched_rt_period_us 2>/dev/null) us"
fi
a=$mnt/a.img b=$mnt/b.img d=$mnt/d.img
log "fill $size"; "$rb" fill "$a" "$size"
cp "$a" "$b"
log "stride: every other 4 KiB block of the clone"; "$rb" stride "$b" "$size" 8K 4K
rm -f "$a"
sync
log "b.img: $("$bin" stat "$b" | grep -E '^ *(extents|shared|exclusive):' | tr -s ' \n' ' ')"
settle() { # the deleted file's background release, then a commit
	for _ in $(seq 600); do
		"$bin" stat "$mnt" 2>/dev/null | grep -q 'reclaiming: nothing' && break
		sleep 0.1
	done
	sync
}
settle
# measure NAME CMD...: the reader during CMD, then the daemon's view.
measure() {
	local name=$1 ready=$work/ready out=$work/reader.out
	shift
	rm -f "$ready"
	"$rb" readwaits "$mnt" start >/dev/null
	$rtcmd "$rb" reader "$b" "$ready" >"$out" &
	rpid=$!
	kill_pids=$rpid
	for _ in $(seq 500); do [ -e "$ready" ] && break; sleep 0.01; done
	sleep 0.3
	local t0=$(date +%s%N)
	"$@"
	local t1=$(date +%s%N)
	sleep 0.3
	kill -USR1 "$rpid"; wait "$rpid"; rpid= kill_pids=
	log "$name ($(((t1 - t0) / 1000000)) ms): reader $(cat "$out")"
	"$rb" readwaits "$mnt" stop | sed 's/^/    daemon: /'
}
# floor NAME: the same reader on native tmpfs for WINDOW seconds.
floor() {
	local ready=$work/ready out=$work/reader.out
	rm -f "$ready"
	$rtcmd "$rb" reader "$floordir/native.img" "$ready" >"$out" &
	rpid=$!
	kill_pids=$rpid
	for _ in $(seq 500); do [ -e "$ready" ] && break; sleep 0.01; done
	sleep "$window"
	kill -USR1 "$rpid"; wait "$rpid"; rpid= kill_pids=
	log "$1: reader $(cat "$out")"
}
for r in $(seq "$rounds"); do
	floor "round $r, native tmpfs (the machine's floor)"
	measure "round $r, no clone" sleep "$window"
	measure "round $r, cp b.img d.img + commit" sh -c "cp '$b' '$d' && '$bin' sync '$mnt'"
	"$rb" samplecmp "$b" "$d" 200 || log "d.img differs from b.img"
	rm -f "$d"
	settle
done
log "load $(cut -d' ' -f1-3 /proc/loadavg)"
