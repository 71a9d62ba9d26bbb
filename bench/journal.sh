#!/usr/bin/env bash
# Change journal benchmarks (issue 8), same run:
#   - overhead: creating 100,000 files and writing 1 GiB sequentially
#     (dd, 1 MiB blocks, fsync at the end), on a mount with the journal
#     against one with -o nojournal (fresh pool each); RUNS pairs, the
#     order alternated (journal first in odd runs, nojournal first in
#     even ones), medians; ratios journal / nojournal (goal <= 1.05);
#   - subtree query at scale: bench_journal (build/bench, through the fs
#     API) makes JOURNAL_FILES files (default 100,000; 1000000 for the
#     issue's scale) and then as many changes, 10 of them below one
#     directory, and times rfs_fs_changes in process; then the pool is
#     mounted and `reflinkfs changes --since C0 DIR` of that directory
#     (10 changes) and of the whole mount are timed (best of 5, process
#     start included: `reflinkfs changes --help` is timed for reference);
#   - the inotify way on the same tree: `inotifywait -r` until its watches
#     are set (time, peak RSS), against 0 for a cursor (skipped when
#     inotifywait is missing: Debian package inotify-tools);
#   - `changes --follow` change-to-delivery latency (median, p99 of 40).
#
#   bench/journal.sh [--quick]      --quick: 10,000 files, 128 MiB
#
# stdout: "name: value unit" lines; progress on stderr.
# Environment: RFS_BIN (default build/reflinkfs), RFS_BENCH_DIR (bench
# binaries, default build/bench), RFS_FS_BENCH_DIR (default /var/tmp),
# RUNS (default 3), JOURNAL_FILES (default 100000).
set -euo pipefail
export LC_ALL=C
exec 3>&1 1>&2
root=$(cd "$(dirname "$0")/.." && pwd)
me=journal.sh
. "$root/bench/lib.bash"
quick=0
bench_args 2,25 quick "$@"
bench_bin
nfiles=100000
mib=1024
qfiles=${JOURNAL_FILES:-100000}
[ "$quick" = 1 ] && { nfiles=10000; mib=128; qfiles=${JOURNAL_FILES:-10000}; }
runs=${RUNS:-3}
benchdir=${RFS_BENCH_DIR:-$root/build/bench}
[ -e /dev/fuse ] || { echo "journal bench: no /dev/fuse, skipped"; exit 0; }
bench_traps
bench_work "${RFS_FS_BENCH_DIR:-/var/tmp}" jbench
mnt=$work/mnt
mkdir -p "$mnt"

mount_pool() { # [mount options]
	rfs_mount "$work/pool" ${1:+-o "$1"}
}
mount_fresh() { # [mount options]
	rm -f "$work/pool"
	"$bin" mkfs --size 8G "$work/pool" >/dev/null
	mount_pool "$@"
}

creates() { # seconds to create nfiles files in 100 directories, synced
	local t0 t1
	t0=$(now_us)
	mkdir "$mnt/c"
	perl -e 'my ($d, $n) = @ARGV; mkdir "$d/d$_" for 0 .. 99;
		for my $i (0 .. $n - 1) { open(my $f, ">", "$d/d" . ($i % 100) . "/f$i") or die "$!"; close $f }' \
		"$mnt/c" "$nfiles"
	"$bin" sync "$mnt"
	t1=$(now_us)
	calc "($t1 - $t0) / 1e6" 6
}
writes() { # seconds to write mib MiB sequentially, fsync'ed
	local t0 t1
	t0=$(now_us)
	dd if=/dev/zero of="$mnt/big" bs=1M count="$mib" conv=fsync status=none
	t1=$(now_us)
	calc "($t1 - $t0) / 1e6" 6
}
min() { if [ -z "$1" ] || [ "$(awk "BEGIN { print ($2 < $1) }")" = 1 ]; then echo "$2"; else echo "$1"; fi; }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

cjs=() cns=() wjs=() wns=()
for r in $(seq "$runs"); do
	order="journal nojournal"
	[ $((r % 2)) = 0 ] && order="nojournal journal"
	for mode in $order; do
		opts=; [ $mode = nojournal ] && opts=nojournal
		echo "run $r: $mode: $nfiles creates, $mib MiB write"
		mount_fresh "$opts"
		c=$(creates); w=$(writes)
		rfs_umount
		echo "run $r: $mode: creates $c s, write $w s"
		if [ $mode = journal ]; then cjs+=("$c"); wjs+=("$w"); else cns+=("$c"); wns+=("$w"); fi
	done
done
cj=$(median "${cjs[@]}") cn=$(median "${cns[@]}") wj=$(median "${wjs[@]}") wn=$(median "${wns[@]}")
fig journal_create_s "$(printf %.3f "$cj")" s
fig nojournal_create_s "$(printf %.3f "$cn")" s
fig journal_create_ratio "$(calc "$cj / $cn" 6)" x
fig journal_write_s "$(printf %.3f "$wj")" s
fig nojournal_write_s "$(printf %.3f "$wn")" s
fig journal_write_ratio "$(calc "$wj / $wn" 6)" x

best() { # best of 5, milliseconds, of a command
	local b= t0 t1
	for _ in 1 2 3 4 5; do
		t0=$(now_us); "$@" >"$work/out"; t1=$(now_us)
		b=$(min "$b" "$(calc "($t1 - $t0) / 1000" 6)")
	done
	echo "$b"
}

echo "subtree query: $qfiles files, then $qfiles changes, 10 below t/d00/e00"
if [ ! -x "$benchdir/bench_journal" ]; then
	echo "journal bench: no $benchdir/bench_journal (make bench-build): query part skipped"
else
	rm -f "$work/pool"
	"$benchdir/bench_journal" "$work/pool" "$qfiles" >"$work/api"
	grep -v '^cursor:' "$work/api" >&3
	c0=$(sed -n 's/^cursor: //p' "$work/api")
	mount_pool ""
	qs=$(best "$bin" changes --since "$c0" "$mnt/t/d00/e00")
	ns=$(($(wc -l <"$work/out") - 1))
	qh=$(best "$bin" changes --help)
	qa=$(best "$bin" changes --since "$c0" "$mnt")
	na=$(($(wc -l <"$work/out") - 1))
	fig journal_query_subtree_ms "$(printf %.1f "$qs")" ms
	fig journal_query_subtree_changes "$ns" changes
	fig journal_cli_start_ms "$(printf %.1f "$qh")" ms
	fig journal_query_mount_ms "$(printf %.1f "$qa")" ms
	fig journal_query_mount_changes "$na" changes
	fig journal_cursor_setup_s 0 s
	if command -v inotifywait >/dev/null; then
		echo "inotifywait -r on the same tree"
		python3 "$root/bench/journal/inotify_setup.py" "$mnt" >&3
	else
		echo "journal bench: no inotifywait (Debian package inotify-tools): inotify part skipped"
	fi
	rfs_umount
	rm -f "$work/pool"
fi

echo "--follow latency"
mount_fresh ""
python3 "$root/bench/journal/follow_latency.py" "$bin" "$mnt" 40 >&3
rfs_umount
