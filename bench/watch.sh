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
me=watch.sh
. "$root/bench/lib.bash"
quick=0
bench_args 2,14 quick "$@"
bench_bin
bw=${RFS_BENCH_DIR:-$root/build/bench}/bench_watch_mount
nfiles=2000
[ "$quick" = 1 ] && nfiles=200
[ -e /dev/fuse ] || { echo "watch bench: no /dev/fuse, skipped"; exit 0; }
[ -x "$bw" ] || { echo "watch bench: $bw not built (make bench-build)"; exit 1; }
bench_traps
bench_work "${RFS_FS_BENCH_DIR:-/var/tmp}" wbench
mnt=$work/mnt
mkdir -p "$mnt"
"$bin" mkfs --size 2G "$work/pool" >/dev/null
rfs_mount "$work/pool"

echo "# bench_watch_mount $mnt/w $nfiles" >&3
mkdir "$mnt/w"
"$bw" "$mnt/w" "$nfiles" >&3

rfs_umount
