#!/usr/bin/env bash
# What one FUSE request costs the daemon, counted rather than timed
# (timings on the shared machine are noisy; counts are not): system
# calls per request (strace -c), and instructions and lock calls per
# request in user space, libfuse and libc included (callgrind on the
# daemon), of reflinkfs beside passthrough_hp under the same fio load:
# 4 KiB random reads or writes, libaio, queue depth 16, O_DIRECT, one
# job, one file, a fixed number of I/Os.  See "Session 12: per-request
# overhead against passthrough_hp" in bench/README.md.
#
#   bench/fs/reqcost.sh [--keep] [--rw LIST] [--ios N] [--warm N]
#     --keep     keep the temporary directory (callgrind dumps, logs)
#     --rw LIST  workloads (default "randread randwrite")
#     --ios N    I/Os counted per daemon and tool (default 3000; strace
#                counts 5000)
#     --warm N   I/Os of the workload before counting (default 200; with
#                60000 random writes nearly every extent of the 64 MiB
#                file is one block: the steady state of a long fio run)
#
# stdout: "reqcost_RW_DAEMON_WHAT: value per_req" lines, DAEMON
# reflinkfs, before (RFS_BIN_BEFORE) or pt_hp; WHAT syscalls (all),
# futex, instr (user space, Ir), mutex (pthread_mutex_lock and
# _trylock calls), rwlock (read and write acquisitions of rwlocks).  Under valgrind
# sched_getcpu cannot use the rseq area and takes glibc's slower path:
# the instructions of a build with counters sharded by CPU
# (src/util/pcount.h) come out higher than they are natively.
#
# Environment:
#   RFS_BIN             the reflinkfs binary (default build/reflinkfs)
#   RFS_BIN_BEFORE      a second reflinkfs binary, counted in turn
#   RFS_PASSTHROUGH_HP  a passthrough_hp binary (else as bench/fs/fio.sh
#                       finds one; skipped when there is none)
#   RFS_FIO_BENCH_DIR   a tmpfs directory (default /dev/shm)
set -euo pipefail
export LC_ALL=C
exec 3>&1 1>&2

root=$(cd "$(dirname "$0")/../.." && pwd)
me=reqcost.sh
. "$root/bench/lib.bash"
keep=0 rw="randread randwrite" ios=3000 warm=200
bench_args 2,33 "keep rw= ios= warm=" "$@"
bench_bin
for t in fio strace valgrind callgrind_control; do
	command -v $t >/dev/null || { echo "$me: $t is not installed" >&2; exit 1; }
done
base=${RFS_FIO_BENCH_DIR:-/dev/shm}
mnt="" daemon_pid="" fuse_mnts="" pids=""
bench_traps
bench_work "$base" reqcost
bench_private_bin
pt=""
if bench_passthrough_hp "$work/pt-build.log"; then
	pt=$pt_hp
else
	log "no passthrough_hp (see $work/pt-build.log): skipped"
fi

# start LABEL DIR [WRAPPER...]: mount daemon LABEL on DIR (under
# WRAPPER: valgrind) in the background; its pid in dpid.
start() {
	local label=$1 dir=$2
	shift 2
	mkdir -p "$dir"
	case $label in
	pt_hp)
		mkdir -p "$dir.src"
		"$@" "$pt" --foreground "$dir.src" "$dir" 2>"$dir.log" &
		;;
	*)
		local b=$bin
		[ "$label" = before ] && b=$work/bin/reflinkfs-before
		"$b" mkfs --size 16G "$dir.img" >/dev/null
		"$@" "$b" mount -f "$dir.img" "$dir" >"$dir.log" 2>&1 &
		;;
	esac
	dpid=$!
	pids="$pids $dpid" fuse_mnts="$fuse_mnts $dir"
	mount_wait "$dir" "$dpid" || { log "$label did not mount: $(tail -3 "$dir.log")"; exit 1; }
}
stop() {
	fusermount3 -u "$1"
	wait "$dpid" || true
}

# fio_io DIR RW N [JSON]: N I/Os of the workload on DIR's file.
fio_io() {
	fio --name=f --directory="$1" --rw="$2" --bs=4k --size=64M --numjobs=1 \
		--ioengine=libaio --iodepth=16 --direct=1 --fallocate=none --number_ios="$3" \
		--output-format=json >"${4:-/dev/null}" 2>>"$work/fio.err"
}
# ios_of JSON RW: the I/Os fio did.
ios_of() {
	python3 -c 'import json, sys
t = open(sys.argv[1]).read()
print(json.loads(t[t.index("{"):])["jobs"][0][sys.argv[2]]["total_ios"])' "$1" "${2#rand}"
}
# prepare DIR RW: lay the file out (and write it, to be read).
prepare() {
	fio --name=f --directory="$1" --rw=write --bs=1M --size=64M --numjobs=1 \
		--direct=1 >/dev/null 2>>"$work/fio.err"
	fio_io "$1" "$2" "$warm"
}

# count LABEL RW: the figures of one daemon and workload.
count() {
	local label=$1 rw=$2 d=$work/$1-$2 n
	# System calls: strace on the running daemon.
	start "$label" "$d.s"
	prepare "$d.s" "$rw"
	strace -c -f -p "$dpid" -o "$d.strace" 2>/dev/null &
	local sp=$!
	sleep 1
	fio_io "$d.s" "$rw" 5000 "$d.s.json"
	kill -INT "$sp"
	wait "$sp" || true
	stop "$d.s"
	n=$(ios_of "$d.s.json" "$rw")
	# strace -c: "% time, seconds, usecs/call, calls, [errors,] syscall"
	awk -v n="$n" '$NF == "total" { t = $4 } $NF == "futex" { f = $4 }
		END { printf "%.3f %.3f\n", t / n, f / n }' "$d.strace" >"$d.sc"
	fig "reqcost_${rw}_${label}_syscalls" "$(cut -d' ' -f1 "$d.sc")" per_req
	fig "reqcost_${rw}_${label}_futex" "$(cut -d' ' -f2 "$d.sc")" per_req
	# Instructions and calls: the daemon under callgrind, counters
	# zeroed after the warm-up, dumped after the counted I/Os.
	start "$label" "$d.c" valgrind --tool=callgrind --separate-threads=no \
		--callgrind-out-file="$d.cg" --dump-instr=no
	prepare "$d.c" "$rw"
	callgrind_control -z "$dpid" >/dev/null
	fio_io "$d.c" "$rw" "$ios" "$d.c.json"
	callgrind_control -d "$dpid" >/dev/null
	stop "$d.c"
	n=$(ios_of "$d.c.json" "$rw")
	python3 - "$d.cg.1" "$n" >"$d.cgsum" <<'EOF'
import re, sys
names, calls, total = {}, {}, 0
cfn = None
def name(tok):
    m = re.match(r'\((\d+)\)(?: (.*))?', tok)
    if not m:
        return tok
    if m.group(2):
        names[m.group(1)] = m.group(2)
    return names.get(m.group(1), m.group(1))
for line in open(sys.argv[1]):
    if line.startswith(('fn=', 'cfn=')):
        f = name(line.split('=', 1)[1].strip())
        if line.startswith('cfn='):
            cfn = f
    elif line.startswith('calls='):
        calls[cfn] = calls.get(cfn, 0) + int(line[6:].split()[0])
    elif line.startswith('summary:') or line.startswith('totals:'):
        total = int(line.split()[1])
n = float(sys.argv[2])
def per(pat):
    return sum(v for k, v in calls.items() if re.match(pat, k)) / n
print("%.0f %.2f %.2f" % (total / n, per(r'pthread_mutex_(try)?lock(@|$)'),
                          per(r'pthread_rwlock_(try)?(rd|wr)lock(@|$)')))
EOF
	fig "reqcost_${rw}_${label}_instr" "$(cut -d' ' -f1 "$d.cgsum")" per_req
	fig "reqcost_${rw}_${label}_mutex" "$(cut -d' ' -f2 "$d.cgsum")" per_req
	fig "reqcost_${rw}_${label}_rwlock" "$(cut -d' ' -f3 "$d.cgsum")" per_req
}

labels=reflinkfs
if [ -n "${RFS_BIN_BEFORE:-}" ]; then
	cp "$RFS_BIN_BEFORE" "$work/bin/reflinkfs-before"
	labels="$labels before"
fi
[ -n "$pt" ] && labels="$labels pt_hp"
for r in $rw; do
	for l in $labels; do
		log "$l $r"
		count "$l" "$r"
	done
done
