#!/usr/bin/env bash
# Change journal benchmarks (issue 8), on real mounts, same run:
#   - overhead: creating 100,000 files and writing 1 GiB sequentially
#     (dd, 1 MiB blocks, fsync at the end), on a mount with the journal
#     against one with -o nojournal (fresh pool each; alternated, best of
#     RUNS); ratios journal / nojournal (goal <= 1.05);
#   - subtree query: after those 100,000 creates, 10 changes in one
#     directory; `reflinkfs changes --since C DIR` against the same query
#     of the whole mount (all 100,010 changes).
#
#   bench/journal.sh [--quick]      --quick: 10,000 files, 128 MiB
#
# stdout: "name: value unit" lines; progress on stderr.
# Environment: RFS_BIN (default build/reflinkfs), RFS_FS_BENCH_DIR (default
# /var/tmp), RUNS (default 2).
set -euo pipefail
export LC_ALL=C
exec 3>&1 1>&2
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${RFS_BIN:-$root/build/reflinkfs}
nfiles=100000
mib=1024
[ "${1:-}" = --quick ] && { nfiles=10000; mib=128; }
runs=${RUNS:-2}
[ -e /dev/fuse ] || { echo "journal bench: no /dev/fuse, skipped"; exit 0; }
tmp=$(mktemp -d "${RFS_FS_BENCH_DIR:-/var/tmp}/rfs-jbench.XXXXXX")
mnt=$tmp/mnt
pid=
cleanup() {
	if mountpoint -q "$mnt" 2>/dev/null; then fusermount3 -u "$mnt" || true; fi
	[ -n "$pid" ] && wait "$pid" 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT
mkdir -p "$mnt"

now() { date +%s.%N; }
fig() { printf '%s: %s %s\n' "$1" "$2" "$3" >&3; }

mount_fresh() { # [mount options]
	rm -f "$tmp/pool"
	"$bin" mkfs --size 8G "$tmp/pool" >/dev/null
	"$bin" mount -f ${1:+-o "$1"} "$tmp/pool" "$mnt" 2>>"$tmp/daemon.log" &
	pid=$!
	for _ in $(seq 200); do mountpoint -q "$mnt" && return 0; sleep 0.05; done
	echo "mount failed"; cat "$tmp/daemon.log"; exit 1
}
umount_() { fusermount3 -u "$mnt"; wait "$pid"; pid=; }

creates() { # seconds to create nfiles files in 100 directories, synced
	local t0 t1
	t0=$(now)
	mkdir "$mnt/c"
	perl -e 'my ($d, $n) = @ARGV; mkdir "$d/d$_" for 0 .. 99;
		for my $i (0 .. $n - 1) { open(my $f, ">", "$d/d" . ($i % 100) . "/f$i") or die "$!"; close $f }' \
		"$mnt/c" "$nfiles"
	"$bin" sync "$mnt"
	t1=$(now)
	calc "$t1 - $t0"
}
writes() { # seconds to write mib MiB sequentially, fsync'ed
	local t0 t1
	t0=$(now)
	dd if=/dev/zero of="$mnt/big" bs=1M count="$mib" conv=fsync status=none
	t1=$(now)
	calc "$t1 - $t0"
}
calc() { awk "BEGIN { printf \"%.6f\", $1 }"; }
min() { if [ -z "$1" ] || [ "$(awk "BEGIN { print ($2 < $1) }")" = 1 ]; then echo "$2"; else echo "$1"; fi; }

cj= cn= wj= wn=
for r in $(seq "$runs"); do
	for mode in journal nojournal; do
		opts=; [ $mode = nojournal ] && opts=nojournal
		echo "run $r: $mode: $nfiles creates, $mib MiB write"
		mount_fresh "$opts"
		c=$(creates); w=$(writes)
		umount_
		if [ $mode = journal ]; then cj=$(min "$cj" "$c"); wj=$(min "$wj" "$w"); else cn=$(min "$cn" "$c"); wn=$(min "$wn" "$w"); fi
	done
done
fig journal_create_s "$(printf %.3f "$cj")" s
fig nojournal_create_s "$(printf %.3f "$cn")" s
fig journal_create_ratio "$(calc "$cj / $cn")" x
fig journal_write_s "$(printf %.3f "$wj")" s
fig nojournal_write_s "$(printf %.3f "$wn")" s
fig journal_write_ratio "$(calc "$wj / $wn")" x

echo "subtree query: $nfiles changes, then 10 in one directory"
mount_fresh ""
c0=$("$bin" changes "$mnt" | tail -n 1 | sed 's/^cursor: //')
creates >/dev/null
mkdir "$mnt/q"
for i in $(seq 10); do echo "$i" >"$mnt/q/f$i"; done
"$bin" sync "$mnt"
best() { # best of 5, milliseconds, of a command
	local b= t0 t1
	for _ in 1 2 3 4 5; do
		t0=$(now); "$@" >"$tmp/out"; t1=$(now)
		b=$(min "$b" "$(calc "($t1 - $t0) * 1000")")
	done
	echo "$b"
}
qs=$(best "$bin" changes --since "$c0" "$mnt/q")
ns=$(($(wc -l <"$tmp/out") - 1))
qa=$(best "$bin" changes --since "$c0" "$mnt")
na=$(($(wc -l <"$tmp/out") - 1))
fig journal_query_subtree_ms "$(printf %.1f "$qs")" ms
fig journal_query_subtree_changes "$ns" changes
fig journal_query_mount_ms "$(printf %.1f "$qa")" ms
fig journal_query_mount_changes "$na" changes
umount_
