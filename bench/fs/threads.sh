#!/usr/bin/env bash
# FUSE worker count: fio 4 KiB random read and random write (as fio.sh:
# libaio, queue depth 16, O_DIRECT, one file per job) on one reflinkfs
# pool mounted with `-o threads=N` for each N in turn, the order rotated
# per point so that no N always runs first.  With --cold the pool's file
# is synced and the host's page cache dropped before every run (root),
# so that the pool's preads go to the device: the pool opens its file
# without O_DIRECT.  See "FUSE worker count" in bench/README.md.
#
#   bench/fs/threads.sh [--keep] [--reps N] [--runtime S] [--threads "2 4 8 16"]
#                       [--jobs "1 2 4"] [--rw LIST] [--cold]
#     --threads LIST  standing worker counts to compare (default "2 4 8 16")
#     --cold          sync and drop the page cache before each run
#     (--keep, --reps, --runtime, --jobs, --rw: as bench/fs/fio.sh)
#
# stdout: "threads_N_randread_Jj: X IOPS" (the median of the reps) and
# "threads_N_randread_Jj_cpu_per_io: X us" (the daemon's user + system
# CPU per I/O); progress on stderr.
#
# Environment:
#   RFS_BIN             the reflinkfs binary (default build/reflinkfs)
#   RFS_FIO_BENCH_DIR   where the pool goes (default /dev/shm; a directory
#                       on a disk filesystem with --cold)
#   RFS_FIO_SIZE        size of each job's file (default 256M)
set -euo pipefail
export LC_ALL=C
exec 3>&1 1>&2
root=$(cd "$(dirname "$0")/../.." && pwd)
me=threads.sh
. "$root/bench/lib.bash"
keep=0 reps=1 runtime=5 jobs="1 2 4" rw="randread randwrite" threads="2 4 8 16" cold=0
bench_args 2,23 "keep reps= runtime= jobs= rw= threads= cold" "$@"
rws=$rw
bench_bin
command -v fio >/dev/null || { echo "$me: fio is not installed (scripts/install-deps.sh)" >&2; exit 1; }
if [ "$cold" = 1 ] && [ ! -w /proc/sys/vm/drop_caches ]; then
	echo "$me: --cold drops the page cache: run as root" >&2
	exit 1
fi
base=${RFS_FIO_BENCH_DIR:-/dev/shm}
size=${RFS_FIO_SIZE:-256M}
mnt="" daemon_pid=""
bench_traps
bench_work "$base" threads
log "pool on $(stat -f -c %T "$work") ($work)"
mkdir "$work/mnt"
mnt=$work/mnt
bench_private_bin
"$bin" mkfs --size 16G "$work/pool.img" >&2
maxj=0
for nj in $jobs; do [ "$nj" -gt "$maxj" ] && maxj=$nj; done
common=(--name=f --directory="$mnt" --bs=4k --size="$size" --ioengine=libaio
	--iodepth=16 --direct=1 --fallocate=none)
# Every job's file once, written in full (a read of a hole would read
# no block), for all runs and all worker counts.
rfs_mount "$work/pool.img"
fio "${common[@]}" --rw=write --bs=1M --numjobs="$maxj" >/dev/null 2>"$work/layout.err" ||
	{ log "fio layout failed: $(tail -3 "$work/layout.err")"; exit 1; }
rfs_umount
tck=$(getconf CLK_TCK)

# run N RW NJ REP: mount with threads=N, one fio run; prints IOPS and
# the daemon's CPU per I/O in us (over the ramp and the run).
run() {
	local n=$1 rw=$2 nj=$3 rep=$4 out=$work/fio-$1-$2-$3-$4.json
	rfs_mount "$work/pool.img" -o "threads=$n"
	if [ "$cold" = 1 ]; then
		sync
		echo 3 >/proc/sys/vm/drop_caches
	fi
	local c0 c1
	c0=$(cpu_ticks "$daemon_pid")
	fio "${common[@]}" --rw="$rw" --numjobs="$nj" --time_based --runtime="$runtime" \
		--ramp_time=1 --group_reporting --output-format=json >"$out" 2>"$work/fio.err" ||
		{ log "fio $rw $nj (threads=$n) failed: $(tail -3 "$work/fio.err")"; rfs_umount; return 1; }
	c1=$(cpu_ticks "$daemon_pid")
	rfs_umount
	python3 -c 'import json, sys
text = open(sys.argv[1]).read()
job = json.loads(text[text.index("{"):])["jobs"][0]
iops = job[sys.argv[2]]["iops"]
ticks, tck, secs = float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
print(int(iops), "%.2f" % (ticks / tck * 1e6 / (iops * secs)) if iops else "-")' \
		"$out" "$([ "$rw" = randread ] && echo read || echo write)" "$((c1 - c0))" "$tck" \
		"$((runtime + 1))"
}

read -ra ns <<<"$threads"
log "files of $size per job, ${runtime}s per run, $reps repetition(s), jobs: $jobs, threads: $threads, cold: $cold"
status=0 rot=0
for rw in $rws; do
	for nj in $jobs; do
		declare -A vals=() cpus=()
		for rep in $(seq "$reps"); do
			for i in "${!ns[@]}"; do
				n=${ns[$(((i + rot) % ${#ns[@]}))]}
				r=$(run "$n" "$rw" "$nj" "$rep") || { status=1; continue; }
				vals[$n]="${vals[$n]:-} ${r% *}"
				cpus[$n]="${cpus[$n]:-} ${r#* }"
				log "$rw ${nj}j threads=$n: ${r% *} IOPS, ${r#* } us of daemon CPU per I/O"
			done
			rot=$((rot + 1))
		done
		for n in "${ns[@]}"; do
			[ -n "${vals[$n]:-}" ] || continue
			fig "threads_${n}_${rw}_${nj}j" "$(echo "${vals[$n]}" | median_low)" IOPS
			fig "threads_${n}_${rw}_${nj}j_cpu_per_io" "$(echo "${cpus[$n]}" | median_low)" us
		done
		unset vals cpus
	done
done
exit $status
