#!/usr/bin/env bash
# Benchmark of `reflinkfs diff` (issue 7): two snapshots of a tree of
# 1,000,000 files that differ in 10 files, diffed; beside it, in the same
# run, `btrfs send --no-data -p` of the same change on btrfs (a loop
# file).  See the "diff" section of bench/README.md.
#
#   bench/fs/diff.sh [--quick] [--keep]
#     --quick   62,500 files instead of 1,000,000
#     --keep    keep the temporary directory
#
# stdout: only "name: value unit" lines; progress on stderr.
# Environment: RFS_BIN (default build/reflinkfs), RFS_FS_BENCH_DIR (where
# the pool and the btrfs image go, default /var/tmp), RFS_DIFF_BENCH_N
# (file count), RFS_FS_BENCH_NO_BTRFS=1 (skip btrfs).  The btrfs part needs
# root and mkfs.btrfs, else it is skipped with a note.
set -euo pipefail
export LC_ALL=C
exec 3>&1 1>&2

root=$(cd "$(dirname "$0")/../.." && pwd)
me=diff.sh
. "$root/bench/lib.bash"
quick=0
keep=0
bench_args 2,16 "quick keep" "$@"
n=1000000
[ "$quick" = 1 ] && n=62500
n=${RFS_DIFF_BENCH_N:-$n}
bench_bin
base=${RFS_FS_BENCH_DIR:-/var/tmp}

if ! "$bin" snapshot --help >/dev/null 2>&1; then
	log "skipped: this reflinkfs has no 'snapshot' command yet"
	exit 0
fi

bench_traps
bench_work "$base" diffbench
mnt=$work/mnt

# make_tree DIR: n empty files, 1,000 per directory.
make_tree() {
	python3 - "$1" "$n" <<'EOF'
import os, sys
top, n = sys.argv[1], int(sys.argv[2])
os.makedirs(top)
for d in range((n + 999) // 1000):
    p = os.path.join(top, "d%04d" % d)
    os.mkdir(p)
    for i in range(min(1000, n - d * 1000)):
        os.close(os.open(os.path.join(p, "file-%04d" % i), os.O_CREAT | os.O_WRONLY, 0o644))
EOF
}

# change DIR: the same 10 files changed on every filesystem.
change() {
	local t=$1 nd=$(((n + 999) / 1000)) i
	for i in 0 1 2 3; do
		printf 'changed %d' "$i" >>"$t/d$(printf %04d $((i * 37 % nd)))/file-0$((100 + i))"
	done
	chmod 600 "$t/d$(printf %04d $((5 % nd)))/file-0200" "$t/d$(printf %04d $((6 % nd)))/file-0201"
	setfattr -n user.k -v 1 "$t/d$(printf %04d $((7 % nd)))/file-0300"
	mv "$t/d$(printf %04d $((8 % nd)))/file-0400" "$t/d$(printf %04d $((8 % nd)))/renamed"
	rm "$t/d$(printf %04d $((9 % nd)))/file-0500"
	echo new >"$t/d$(printf %04d $((10 % nd)))/new-file"
}

ms_of() { # ms_of CMD...: wall time of one run, in ms
	local t0 t1
	t0=$(date +%s%N)
	"$@" >/dev/null
	t1=$(date +%s%N)
	echo $(((t1 - t0) / 1000)) | awk '{printf "%.2f\n", $1 / 1000}'
}

tag=$((n / 1000))k
[ "$n" = 1000000 ] && tag=1m

# ------------------------------------------------------------- reflinkfs
pool=$work/pool
mkdir -p "$mnt"
"$bin" mkfs --size 64G "$pool" >/dev/null
rfs_mount "$pool"
log "reflinkfs: creating $n files"
make_tree "$mnt/tree"
"$bin" sync "$mnt"
"$bin" snapshot "$mnt/tree" "$mnt/s1"
change "$mnt/tree"
"$bin" snapshot "$mnt/tree" "$mnt/s2"
"$bin" sync "$mnt"
set +e
"$bin" diff "$mnt/s1" "$mnt/s2" >"$work/diff.out"
rc=$?
set -e
[ "$rc" = 1 ] || { log "reflinkfs diff exited $rc, expected 1"; exit 1; }
log "reflinkfs diff s1 s2:"
sed 's/^/    /' "$work/diff.out" >&2
lines=$(wc -l <"$work/diff.out")
times=$(for i in 1 2 3 4 5 6 7; do ms_of "$bin" diff "$mnt/s1" "$mnt/s2" || true; done)
log "runs (ms): $(echo $times)"
t_rfs=$(echo "$times" | median_low)
reads=$("$bin" diff --json "$mnt/s1" "$mnt/s2" | python3 -c 'import json,sys; print(json.load(sys.stdin)["nodes_read"])' || true)
fig "diff_snapshots_$tag" "$t_rfs" ms
fig "diff_snapshots_${tag}_lines" "$lines" lines
fig "diff_snapshots_${tag}_nodes_read" "$reads" nodes
"$bin" umount "$mnt"
wait "$daemon_pid" || true
daemon_pid=

# ---------------------------------------------------------------- btrfs
if [ -n "${RFS_FS_BENCH_NO_BTRFS:-}" ]; then
	log "btrfs part skipped (RFS_FS_BENCH_NO_BTRFS)"
	exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v mkfs.btrfs >/dev/null; then
	log "btrfs part skipped (needs root and mkfs.btrfs)"
	exit 0
fi
img_setup btrfs 16G
bmnt=$img_mnt
btrfs -q subvolume create "$bmnt/vol" >&2
log "btrfs: creating $n files"
make_tree "$bmnt/vol/tree"
btrfs -q subvolume snapshot -r "$bmnt/vol" "$bmnt/s1" >&2
change "$bmnt/vol/tree"
btrfs -q subvolume snapshot -r "$bmnt/vol" "$bmnt/s2" >&2
sync
btrfs send -q --no-data -p "$bmnt/s1" "$bmnt/s2" -f "$work/send.stream" 2>&1 | head -3 >&2 || true
log "btrfs send --no-data stream: $(stat -c %s "$work/send.stream") bytes"
times=$(for i in 1 2 3 4 5 6 7; do ms_of btrfs send -q --no-data -p "$bmnt/s1" "$bmnt/s2" -f /dev/null || true; done)
log "btrfs runs (ms): $(echo $times)"
t_btrfs=$(echo "$times" | median_low)
fig "btrfs_send_nodata_$tag" "$t_btrfs" ms
fig "diff_vs_btrfs_send_ratio" "$(awk -v a="$t_rfs" -v b="$t_btrfs" 'BEGIN {printf "%.2f", a / b}')" ""
