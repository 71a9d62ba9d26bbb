#!/usr/bin/env bash
# Snapshot benchmarks: the time to snapshot a directory of 1,000,000 files
# against one of 10 files (through the fs API and with `reflinkfs
# snapshot` on a mount), beside `cp -a --reflink=always` of the same tree
# on XFS and `btrfs subvolume snapshot` of it on btrfs (loop files, same
# run); the time of `reflinkfs snapshot delete` of the 1,000,000-file
# snapshot (sharing its tree with the source, and as the last copy) and
# the time until its space is back; the first write into a file of a fresh snapshot
# against the same write before the snapshot.  See the "Snapshot
# benchmarks" section of bench/README.md.
#
#   bench/snapshot/run.sh [--quick] [--keep]
#     --quick   100,000 files instead of 1,000,000
#     --keep    keep the temporary directory
#
# stdout: only "name: value unit" lines; progress on stderr.  Exit 1 when
# a part failed (its figures are missing; the others still ran).
#
# Environment:
#   RFS_BIN           the reflinkfs binary (default build/reflinkfs)
#   RFS_BENCH_DIR     directory of bench_snapshot (default build/bench)
#   RFS_FS_BENCH_DIR  where the temporary directory goes (default /var/tmp)
#   RFS_SNAP_BENCH_N  the file count (overrides --quick)
#
# Needs root for the XFS and btrfs parts (loop devices); they are skipped
# with a message without root or without mkfs.xfs / mkfs.btrfs / btrfs.
set -euo pipefail
export LC_ALL=C
exec 3>&1 1>&2

root=$(cd "$(dirname "$0")/../.." && pwd)
me=snapshot/run.sh
. "$root/bench/lib.bash"
quick=0
keep=0
bench_args 2,28 "quick keep" "$@"
n=1000000
tag=1m
if [ "$quick" = 1 ]; then
	n=100000
	tag=100k
fi
if [ -n "${RFS_SNAP_BENCH_N:-}" ]; then
	n=$RFS_SNAP_BENCH_N
	tag=n$n
fi
bench_bin
bs=${RFS_BENCH_DIR:-$root/build/bench}/bench_snapshot
base=${RFS_FS_BENCH_DIR:-/var/tmp}
if [ ! -x "$bs" ]; then
	echo "snapshot/run.sh: $bs not found (make bench-build)" >&2
	exit 1
fi
is_root=0
[ "$(id -u)" = 0 ] && is_root=1

status=0
bench_traps
bench_work "$base" snapbench
log "working in $work, $n files"
bench_private_bin

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# ------------------------------------------------------------- the fs API
pool=$work/pool
api_part() {
	"$bs" api "$pool" "$n" | while read -r line; do
		fig "${line%%: *}" "${line#*: }"
	done
}
part "fs API: build the tree, snapshot, delete, first write" api_part

# ------------------------------------------------------------- the mount
mnt=$work/mnt
mkdir -p "$mnt"
rfs_mount "$pool"
log "mounted $pool on $mnt"

mount_part() {
	local r t tb=() ts=()
	[ -d "$mnt/vol/big/d0000" ] || { log "no tree in the pool (the API part failed)"; return 1; }
	for r in $(seq 11); do
		"$bin" sync "$mnt"
		timed t "$bin" snapshot "$mnt/vol/big" "$mnt/snaps/b$r"
		tb+=("$t")
		"$bin" sync "$mnt"
		timed t "$bin" snapshot "$mnt/vol/small" "$mnt/snaps/s$r"
		ts+=("$t")
		"$bin" snapshot delete "$mnt/snaps/b$r"
		"$bin" snapshot delete "$mnt/snaps/s$r"
	done
	log "reflinkfs snapshot of big: ${tb[*]} ms; of small: ${ts[*]} ms"
	local mb ms
	mb=$(printf '%s\n' "${tb[@]}" | median)
	ms=$(printf '%s\n' "${ts[@]}" | median)
	fig "snapshot_$tag" "$mb" ms
	fig snapshot_10 "$ms" ms
	fig snapshot_size_ratio "$(calc "$mb / $ms" 3)"

	# first write through the mount: 4 KiB into a probe file before and
	# after a fresh snapshot (each after a commit), 11 probes
	local w0=() w1=() p
	for r in $(seq 0 10); do
		p=$(printf 'big/d%04d/f%07d' "$r" $((r * 1000)))
		"$bin" sync "$mnt"
		w0+=("$("$bs" pwrite "$mnt/vol/$p")")
		"$bin" snapshot "$mnt/vol" "$mnt/snaps/fw"
		"$bin" sync "$mnt"
		w1+=("$("$bs" pwrite "$mnt/snaps/fw/$p")")
		"$bin" snapshot delete "$mnt/snaps/fw"
	done
	log "pwrite before: ${w0[*]} us; in a fresh snapshot: ${w1[*]} us"
	local m0 m1
	m0=$(printf '%s\n' "${w0[@]}" | median)
	m1=$(printf '%s\n' "${w1[@]}" | median)
	fig first_write_mount_before_snapshot "$m0" us
	fig first_write_mount_snapshot "$m1" us
	fig first_write_mount_ratio "$(calc "$m1 / $m0" 2)"

	# delete: a snapshot sharing everything with its source, then the
	# last copy of the tree (vol deleted first), whose blocks go back
	local td tl u0 u1
	"$bin" snapshot "$mnt/vol/big" "$mnt/snaps/keep"
	"$bin" sync "$mnt"
	timed td "$bin" snapshot delete "$mnt/snaps/keep"
	fig "snapshot_delete_$tag" "$td" ms
	"$bin" snapshot "$mnt/vol/big" "$mnt/snaps/last"
	"$bin" snapshot delete "$mnt/vol"
	"$bin" sync "$mnt"
	u0=$(stat -f -c '%b %f' "$mnt" | awk '{ print $1 - $2 }')
	local t0=${EPOCHREALTIME//[.,]/} t1
	timed tl "$bin" snapshot delete "$mnt/snaps/last"
	# the blocks come back in the background: poll until nothing is left
	until "$bin" stat "$mnt" | grep -q 'reclaiming: nothing'; do sleep 0.01; done
	t1=${EPOCHREALTIME//[.,]/}
	"$bin" sync "$mnt"
	u1=$(stat -f -c '%b %f' "$mnt" | awk '{ print $1 - $2 }')
	fig "snapshot_delete_last_$tag" "$tl" ms
	fig "snapshot_space_back_$tag" "$(calc "($t1 - $t0) / 1000" 1)" ms
	fig snapshot_delete_last_freed "$(((u0 - u1) * 4))" KiB
	log "blocks in use: $u0 before the last copy's delete, $u1 after"
}
part "reflinkfs snapshot on the mount" mount_part
"$bin" umount "$mnt"
wait "$daemon_pid" || { log "daemon exit status $?"; status=1; }
daemon_pid=""
if "$bin" fsck "$pool" >"$work/fsck.log" 2>&1; then
	log "fsck clean"
else
	log "fsck of the pool FAILED:"
	cat "$work/fsck.log" >&2
	status=1
fi
rm -f "$pool"

# ------------------------------------------------------------- XFS and btrfs
xfs_part() {
	local x=$img_mnt t tb ts=() r
	timed t "$bs" gen "$x" "$n"
	log "XFS: tree of $n files made in $t ms"
	sync
	timed tb cp -a --reflink=always "$x/big" "$x/big.copy"
	for r in $(seq 5); do
		timed t cp -a --reflink=always "$x/small" "$x/small.copy$r"
		ts+=("$t")
	done
	local ms
	ms=$(printf '%s\n' "${ts[@]}" | median)
	fig "xfs_cp_reflink_$tag" "$tb" ms
	fig xfs_cp_reflink_10 "$ms" ms
	fig xfs_cp_reflink_size_ratio "$(calc "$tb / $ms" 1)"
}
btrfs_part() {
	local b=$img_mnt t tb=() ts=() r
	btrfs -q subvolume create "$b/big" >&2
	btrfs -q subvolume create "$b/small" >&2
	timed t "$bs" gen "$b" "$n"
	log "btrfs: tree of $n files made in $t ms"
	sync
	for r in $(seq 5); do
		timed t btrfs -q subvolume snapshot "$b/big" "$b/bigsnap$r"
		tb+=("$t")
		timed t btrfs -q subvolume snapshot "$b/small" "$b/smallsnap$r"
		ts+=("$t")
	done
	local mb ms
	mb=$(printf '%s\n' "${tb[@]}" | median)
	ms=$(printf '%s\n' "${ts[@]}" | median)
	fig "btrfs_snapshot_$tag" "$mb" ms
	fig btrfs_snapshot_10 "$ms" ms
	fig btrfs_snapshot_size_ratio "$(calc "$mb / $ms" 3)"
}
if [ "$is_root" != 1 ]; then
	log "XFS and btrfs parts skipped: they need root (loop devices)"
else
	if command -v mkfs.xfs >/dev/null; then
		img_setup xfs 32G -m reflink=1 -i maxpct=50
		part "XFS: cp -a --reflink=always" xfs_part
		img_teardown xfs
	else
		log "XFS part skipped: mkfs.xfs not installed (xfsprogs)"
	fi
	if command -v mkfs.btrfs >/dev/null && command -v btrfs >/dev/null; then
		img_setup btrfs 32G
		part "btrfs: subvolume snapshot" btrfs_part
		img_teardown btrfs
	else
		log "btrfs part skipped: mkfs.btrfs / btrfs not installed (btrfs-progs)"
	fi
fi
exit "$status"
