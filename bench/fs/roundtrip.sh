#!/usr/bin/env bash
# What one FUSE round trip costs, over io_uring and over /dev/fuse, with
# the same binary in turn (-o nouring for /dev/fuse): a python loop asks
# for an absent xattr of one file (GETXATTR, which the kernel never
# caches: one request each, almost no work in the daemon) and the run
# reports the wall time per call and the daemon's CPU time (utime +
# stime of all its threads) per request.  The CPU figure moves less with
# the machine's load than the wall time.  See "FUSE over io_uring" in
# bench/README.md.
#
#   bench/fs/roundtrip.sh [--keep] [--reps N] [--calls N]
#     --keep       keep the temporary directory (pools, logs)
#     --reps N     runs of each transport, alternated (default 5)
#     --calls N    round trips per run (default 20000)
#
# stdout: one line per run, then the medians as "name: value unit" lines
# and the ratios uring/devfuse; progress on stderr.
# Environment: RFS_BIN (default build/reflinkfs); RFS_FIO_BENCH_DIR, a
# tmpfs directory for the pools (default /dev/shm).
set -euo pipefail
export LC_ALL=C
exec 3>&1 1>&2

root=$(cd "$(dirname "$0")/../.." && pwd)
me=roundtrip.sh
. "$root/bench/lib.bash"
keep=0 reps=5 calls=20000
bench_args 2,19 "keep reps= calls=" "$@"
bench_bin
RFS_BENCH_URING=1
bench_traps
[ -z "$uring_old" ] && [ "$(cat "$uring_param" 2>/dev/null)" != Y ] &&
	{ log "this kernel has no FUSE over io_uring ($uring_param): nothing to compare"; exit 1; }
bench_work "${RFS_FIO_BENCH_DIR:-/dev/shm}" rtrip

# run LABEL OPTS REP: a fresh pool; prints "run: LABEL wall_us X cpu_us Y".
run() {
	local label=$1 opts=$2 rep=$3 d=$work/$1-$3
	mkdir -p "$d/mnt"
	"$bin" mkfs --size 1G "$d/pool" >/dev/null
	mnt=$d/mnt daemon_log=$d/daemon.log
	RFS_MOUNT_OPTS=$opts rfs_mount "$d/pool"
	if [ "$label" = uring ] && ! grep -q "FUSE over io_uring" "$d/daemon.log"; then
		log "the daemon did not start its rings: $(tail -2 "$d/daemon.log")"
		exit 1
	fi
	: >"$mnt/f"
	python3 - "$mnt/f" "$daemon_pid" "$calls" "$label" <<'PY' >"$work/line"
import os, sys
f, pid, n, label = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
import time
def cpu():
    s = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(s[11]) + int(s[12])) / os.sysconf("SC_CLK_TCK")
def loop(k):
    for _ in range(k):
        try:
            os.getxattr(f, "user.absent")
        except OSError:
            pass
loop(n // 10)  # warm: threads woken, caches filled
c0, t0 = cpu(), time.perf_counter()
loop(n)
t1, c1 = time.perf_counter(), cpu()
print(f"run: {label} wall_us {1e6 * (t1 - t0) / n:.2f} cpu_us {1e6 * (c1 - c0) / n:.2f}")
PY
	rfs_umount || true
	mnt=""
	cat "$work/line" >>"$work/runs"
	cat "$work/line" >&3
}

for i in $(seq "$reps"); do
	run uring "" "$i"
	run devfuse nouring "$i"
done
for l in uring devfuse; do
	for k in wall_us cpu_us; do
		v=$(awk -v l="$l" -v k="$k" '$2 == l { for (i = 3; i < NF; i++) if ($i == k) print $(i + 1) }' "$work/runs" | median_low)
		printf -v "${l}_$k" '%s' "$v"
		fig "roundtrip_${l}_$k" "$v" us
	done
done
fig roundtrip_wall_uring_vs_devfuse "$(calc "$uring_wall_us / $devfuse_wall_us" 2)"
fig roundtrip_cpu_uring_vs_devfuse "$(calc "$uring_cpu_us / $devfuse_cpu_us" 2)"
