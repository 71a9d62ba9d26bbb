#!/usr/bin/env bash
# Alternated fio runs of two or more daemons, each run on a fresh mount:
# an A/B comparison for one fio cell when fio.sh's long-lived mounts and
# reused pools leave too much noise between daemons (bench/README.md,
# "Session 16").
#
#   bench/fs/fio_ab.sh [--rw randwrite] [--jobs 1] [--reps 6] [--runtime 4] DAEMON...
#     DAEMON     a reflinkfs binary, BINARY@OPTS to mount it with -o OPTS,
#                or `pt` for libfuse's passthrough_hp over a directory on
#                the same tmpfs (RFS_PASSTHROUGH_HP, else built by
#                bench/fs/passthrough_hp.sh)
#     --rw       fio workload (randread, randwrite, randrw)
#     --jobs     fio jobs, each on a file of its own
#     --reps     rounds; each round runs every daemon once, the order
#                rotated by one per round
#     --runtime  seconds per run, after 1 s of ramp
#
# Each run: a new pool on RFS_FIO_BENCH_DIR (default /dev/shm), mount,
# fio 4 KiB at queue depth 16 (libaio, O_DIRECT, 256 MiB per job; as
# fio.sh), unmount. stdout: one line per run ("DAEMON IOPS CPU_US
# P999_US IDLE FIO_US", the daemon's user + system time per I/O over the
# ramp and the run, the 99.9th percentile of the completion latency, of
# writes where the run writes, the share of the machine's CPU time left
# idle meanwhile (a daemon that leaves CPUs idle while fio waits on it
# loses to wake-ups, not work), and fio's own CPU time per I/O (its
# usr_cpu + sys_cpu, the jobs' mean times their number: the rest of the
# machine's work per I/O), then per daemon the medians, and each daemon's
# median IOPS against the first's; then, per daemon after the first, the
# median and range of its IOPS against the first's in the same round
# (paired: what the host's drift between rounds does not move).
set -u
exec 3>&1
root=$(cd "$(dirname "$0")/../.." && pwd)
me=fio_ab.sh
. "$root/bench/lib.bash"
rw=randwrite jobs=1 reps=6 runtime=4
args=()
while [ $# -gt 0 ]; do
	case $1 in
	--rw | --jobs | --reps | --runtime) [ $# -ge 2 ] || { echo "$me: $1 needs a value" >&2; exit 2; }
		printf -v "${1#--}" '%s' "$2"; shift 2 ;;
	-h | --help) sed -n 2,22p "$0"; exit 0 ;;
	--*) echo "$me: unknown option '$1' (see $0 --help)" >&2; exit 2 ;;
	*) args+=("$1"); shift ;;
	esac
done
[ ${#args[@]} -ge 2 ] || { echo "$me: give at least two daemons (see $0 --help)" >&2; exit 2; }
command -v fio >/dev/null || { echo "$me: fio is not installed (scripts/install-deps.sh)" >&2; exit 1; }
bench_traps
bench_work "${RFS_FIO_BENCH_DIR:-/dev/shm}" fioab
pt_hp=
bin=/bin/false # bench_cleanup unmounts with fusermount3
for d in "${args[@]}"; do
	if [ "$d" = pt ]; then
		bench_passthrough_hp "$work/pt.log" || { echo "$me: no passthrough_hp ($(cat "$work/pt.log"))" >&2; exit 1; }
	elif [ ! -x "${d%%@*}" ]; then
		echo "$me: ${d%%@*} is not an executable" >&2
		exit 1
	fi
done
mnt=$work/mnt
mkdir -p "$mnt" "$work/src"
# run1 INDEX DAEMON: one mount, one fio run, one line on stdout.
run1() {
	local i=$1 d=$2 pid c0 c1 b o
	if [ "$d" = pt ]; then
		rm -rf "$work/src" && mkdir "$work/src"
		"$pt_hp" --foreground "$work/src" "$mnt" >>"$work/daemon.log" 2>&1 &
	else
		b=${d%%@*} o=
		[ "$b" != "$d" ] && o=${d#*@}
		rm -f "$work/pool.img"
		"$b" mkfs --size 8G "$work/pool.img" >/dev/null || return 1
		"$b" mount -f ${o:+-o "$o"} "$work/pool.img" "$mnt" >>"$work/daemon.log" 2>&1 &
	fi
	pid=$!
	daemon_pid=$pid
	mount_wait "$mnt" "$pid" || { log "$d did not mount (log: $work/daemon.log)"; return 1; }
	local f=(--name=f --directory="$mnt" --rw="$rw" --bs=4k --size=256M --numjobs="$jobs"
		--ioengine=libaio --iodepth=16 --direct=1 --fallocate=none
		--percentile_list=99.9)
	fio "${f[@]}" --create_only=1 >/dev/null 2>>"$work/fio.err"
	c0=$(awk '{ print $14 + $15 }' "/proc/$pid/stat")
	# all CPUs' idle and total ticks (idle + iowait against the sum)
	local s0 s1
	s0=$(awk '/^cpu / { t = 0; for (k = 2; k <= NF; k++) t += $k; print $5 + $6, t }' /proc/stat)
	fio "${f[@]}" --time_based --runtime="$runtime" --ramp_time=1 --group_reporting \
		--output-format=json >"$work/fio.json" 2>>"$work/fio.err"
	c1=$(awk '{ print $14 + $15 }' "/proc/$pid/stat")
	s1=$(awk '/^cpu / { t = 0; for (k = 2; k <= NF; k++) t += $k; print $5 + $6, t }' /proc/stat)
	fusermount3 -u "$mnt"
	wait "$pid"
	daemon_pid=
	python3 - "$work/fio.json" "$i" "$((c1 - c0))" "$(getconf CLK_TCK)" "$runtime" $s0 $s1 "$jobs" <<'EOF'
import json, sys
text = open(sys.argv[1]).read()
job = json.loads(text[text.index("{"):])["jobs"][0]
iops = job["read"]["iops"] + job["write"]["iops"]
ticks, hz, rt = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
side = job["write"] if job["write"]["iops"] else job["read"]
p999 = float(next(iter(side["clat_ns"].get("percentile", {"": 0}).values()))) / 1000
# CPU over ramp + run against the I/O rate of the run
idle = (int(sys.argv[8]) - int(sys.argv[6])) / max(1, int(sys.argv[9]) - int(sys.argv[7]))
# group_reporting gives the jobs' mean CPU share: times the jobs, the total
fio_us = (job["usr_cpu"] + job["sys_cpu"]) / 100 * int(sys.argv[10]) * 1e6 / max(iops, 1)
print(sys.argv[2], int(iops), "%.2f" % (ticks / hz * 1e6 / (iops * (rt + 1))), "%.0f" % p999,
      "%.1f" % (100 * idle), "%.2f" % fio_us)
EOF
}
n=${#args[@]}
for r in $(seq "$reps"); do
	for k in $(seq 0 $((n - 1))); do
		i=$(((k + r) % n))
		line=$(run1 "$i" "${args[$i]}") || exit 1
		echo "$line" >>"$work/runs"
		set -- $line
		printf '%s %s IOPS %s us p99.9 %s us idle %s %% fio %s us\n' "${args[$1]}" "$2" "$3" "$4" "$5" "$6" >&3
	done
done
python3 - "$work/runs" "${args[@]}" <<'EOF' >&3
import statistics, sys
names = sys.argv[2:]
runs = {}
rounds = []
for k, line in enumerate(open(sys.argv[1])):
    i, iops, cpu, p999, idle, fio = line.split()
    runs.setdefault(int(i), []).append((int(iops), float(cpu), float(p999), float(idle), float(fio)))
    if k % len(names) == 0:
        rounds.append({})
    rounds[-1][int(i)] = int(iops)
base = statistics.median(x[0] for x in runs[0])
for i, name in enumerate(names):
    iops = statistics.median(x[0] for x in runs[i])
    cpu = statistics.median(x[1] for x in runs[i])
    p999 = statistics.median(x[2] for x in runs[i])
    idle = statistics.median(x[3] for x in runs[i])
    fio = statistics.median(x[4] for x in runs[i])
    print("median %s: %d IOPS, %.2f us CPU per I/O, p99.9 %.0f us, CPUs idle %.1f %%, fio %.2f us per I/O, %.2f of the first"
          % (name, iops, cpu, p999, idle, fio, iops / base))
# Each round's ratio to the first daemon in the same round: the host's
# drift between rounds cancels out of these.
for i, name in enumerate(names[1:], 1):
    r = sorted(x[i] / x[0] for x in rounds if 0 in x and i in x)
    print("paired %s: %.2f of the first (median of %d rounds; %.2f-%.2f)"
          % (name, statistics.median(r), len(r), r[0], r[-1]))
EOF
