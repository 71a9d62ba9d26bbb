#!/usr/bin/env bash
# Pre-modification event latency (issue 8), on a real mount: what a
# blocking watch adds to the first 4 KiB write of a marked file when the
# subscriber acknowledges at once, against the first write of an unmarked
# file (median and p99; build/bench/bench_watch_mount, through FUSE and the
# watch socket), and the same with a non-blocking watch.  bench_watch
# measures the fs API alone; changes --follow latency: bench/journal.sh.
#
#   bench/watch.sh [--quick]      --quick: 200 files
#
# stdout: "name: value unit" lines, after the command lines they measure;
# progress on stderr.  Environment: RFS_BIN (default build/reflinkfs),
# RFS_BENCH_DIR (bench_watch_mount; default build/bench), RFS_FS_BENCH_DIR
# (default /var/tmp).
set -euo pipefail
export LC_ALL=C
exec 3>&1 1>&2
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${RFS_BIN:-$root/build/reflinkfs}
bw=${RFS_BENCH_DIR:-$root/build/bench}/bench_watch_mount
nfiles=2000
[ "${1:-}" = --quick ] && nfiles=200
[ -e /dev/fuse ] || { echo "watch bench: no /dev/fuse, skipped"; exit 0; }
[ -x "$bw" ] || { echo "watch bench: $bw not built (make bench-build)"; exit 1; }
tmp=$(mktemp -d "${RFS_FS_BENCH_DIR:-/var/tmp}/rfs-wbench.XXXXXX")
mnt=$tmp/mnt
pid=
cleanup() {
	if mountpoint -q "$mnt" 2>/dev/null; then fusermount3 -u "$mnt" || true; fi
	[ -n "$pid" ] && wait "$pid" 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT
mkdir -p "$mnt"
"$bin" mkfs --size 2G "$tmp/pool" >/dev/null
"$bin" mount -f "$tmp/pool" "$mnt" 2>>"$tmp/daemon.log" &
pid=$!
for _ in $(seq 200); do mountpoint -q "$mnt" && break; sleep 0.05; done
mountpoint -q "$mnt" || { echo "mount failed"; cat "$tmp/daemon.log"; exit 1; }

echo "# bench_watch_mount $mnt/w $nfiles" >&3
mkdir "$mnt/w"
"$bw" "$mnt/w" "$nfiles" >&3

fusermount3 -u "$mnt"
wait "$pid"
pid=
