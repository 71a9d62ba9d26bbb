#!/usr/bin/env bash
# What a 4 KiB random WRITE costs the daemon: fio randwrite (libaio, queue
# depth 16, O_DIRECT, as in fio.sh) on reflinkfs with its pool on tmpfs,
# a fresh pool per run, and the daemon's CPU time (utime + stime from
# /proc, and each apart: the user part is what the daemon's own code
# costs, the system part mostly the FUSE device and the pool's pwrite)
# and context switches (voluntary: a worker slept, on a lock or for
# want of a request; involuntary: it was preempted) per WRITE.  On a
# shared machine these move less with the load than the IOPS do; with
# RFS_BIN_BEFORE the two binaries run in turn, so compare within one run.
# See "Parallel I/O" in bench/README.md.
#
#   bench/fs/write_cost.sh [--keep] [--reps N] [--runtime S] [--jobs N]
#     --keep       keep the temporary directory (pools, fio JSON, logs)
#     --reps N     runs of each binary, alternated (default 3)
#     --runtime S  seconds per run (default 4)
#     --jobs N     fio jobs, each on a file of its own (default 1)
#
# stdout: one line per run ("run: LABEL iops N cpu_us_per_write X
# user_us_per_write U sys_us_per_write S vol_cs_per_write Y
# invol_cs_per_write Z"), then the medians as
# "name: value unit" lines (names prefixed "before_" for RFS_BIN_BEFORE);
# progress on stderr.
# Environment:
#   RFS_BIN            the reflinkfs binary (default build/reflinkfs)
#   RFS_BIN_BEFORE     a second binary, run in turn with the first
#   RFS_FIO_BENCH_DIR  a tmpfs directory (default /dev/shm)
#   RFS_FIO_SIZE       size of each job's file (default 256M)
set -euo pipefail
export LC_ALL=C
exec 3>&1 1>&2

root=$(cd "$(dirname "$0")/../.." && pwd)
me=write_cost.sh
. "$root/bench/lib.bash"
keep=0 reps=3 runtime=4 jobs=1
bench_args 2,25 "keep reps= runtime= jobs=" "$@"
rt=$runtime nj=$jobs
bench_bin
before=""
if [ -n "${RFS_BIN_BEFORE:-}" ]; then
	before=$RFS_BIN_BEFORE
	[ "${before#/}" != "$before" ] || before=$PWD/$before
	[ -x "$before" ] || { echo "$me: $before not found" >&2; exit 1; }
fi
command -v fio >/dev/null || { echo "$me: fio is not installed (scripts/install-deps.sh)" >&2; exit 1; }
base=${RFS_FIO_BENCH_DIR:-/dev/shm}
size=${RFS_FIO_SIZE:-256M}
hz=$(getconf CLK_TCK)
bench_traps
bench_work "$base" wcost

# The daemon's user and system CPU ticks (all threads) and its threads'
# context switches.
cpu_ticks() { awk '{ print $14, $15 }' "/proc/$1/stat"; }
ctx() {
	cat /proc/"$1"/task/*/status 2>/dev/null |
		awk '/^voluntary_ctxt/ { v += $2 } /^nonvoluntary_ctxt/ { n += $2 } END { print v + 0, n + 0 }'
}

# run LABEL BIN REP: one fresh pool, one fio run; prints the run line.
run() {
	local label=$1 b=$2 rep=$3
	local d=$work/$label-$rep
	mkdir -p "$d/mnt"
	"$b" mkfs --size 16G "$d/pool.img" >/dev/null
	mnt=$d/mnt daemon_log=$d/daemon.log bin=$b
	rfs_mount "$d/pool.img"
	local args=(--name=f --directory="$mnt" --rw=randwrite --bs=4k --size="$size"
		--numjobs="$nj" --ioengine=libaio --iodepth=16 --direct=1 --fallocate=none)
	# Lay the files out first (fio writes them whole), untimed.
	fio "${args[@]}" --time_based --runtime=0.1 >/dev/null 2>"$d/fio.err" ||
		{ log "fio failed: $(tail -3 "$d/fio.err")"; exit 1; }
	local t0 c0 t1 c1
	t0=$(cpu_ticks "$daemon_pid") c0=$(ctx "$daemon_pid")
	# No ramp: the counters cover exactly the I/O fio counts.
	fio "${args[@]}" --time_based --runtime="$rt" --group_reporting \
		--output-format=json >"$d/fio.json" 2>"$d/fio.err" ||
		{ log "fio failed: $(tail -3 "$d/fio.err")"; exit 1; }
	t1=$(cpu_ticks "$daemon_pid") c1=$(ctx "$daemon_pid")
	rfs_umount || true
	mnt=""
	# shellcheck disable=SC2086 # t0, t1: "utime stime"
	python3 - "$d/fio.json" "$label" "$hz" $t0 $t1 $c0 $c1 <<'EOF'
import json, sys
path, label, hz, u0, s0, u1, s1, v0, n0, v1, n1 = sys.argv[1:]
text = open(path).read()
job = json.loads(text[text.index("{"):])["jobs"][0]
ios = max(1, job["write"]["total_ios"])
us = lambda a, b: (int(b) - int(a)) * 1e6 / int(hz) / ios
print("run: %s iops %d cpu_us_per_write %.1f user_us_per_write %.1f sys_us_per_write %.1f "
      "vol_cs_per_write %.2f invol_cs_per_write %.2f"
      % (label, job["write"]["iops"], us(u0, u1) + us(s0, s1), us(u0, u1), us(s0, s1),
         (int(v1) - int(v0)) / ios, (int(n1) - int(n0)) / ios))
EOF
	rm -rf --one-file-system "$d/pool.img"
}

after=$bin
labels="after"
[ -n "$before" ] && labels="after before"
log "fio randwrite, $nj job(s), ${rt}s per run, $reps run(s) of: $labels"
out=$work/runs.txt
for rep in $(seq "$reps"); do
	for l in $labels; do
		b=$after
		[ "$l" = before ] && b=$before
		run "$l" "$b" "$rep" | tee -a "$out" >&3
		log "$(tail -1 "$out")"
	done
done
for l in $labels; do
	p=""
	[ "$l" = before ] && p=before_
	for k in iops cpu_us_per_write user_us_per_write sys_us_per_write vol_cs_per_write invol_cs_per_write; do
		m=$(awk -v l="$l" -v k="$k" '$2 == l { for (i = 3; i < NF; i += 2) if ($i == k) print $(i + 1) }' "$out" | median_low)
		u=""
		case $k in iops) u=IOPS ;; *_us_per_write) u=us ;; esac
		fig "${p}write_cost_${nj}j_$k" "$m" "$u"
	done
done
