#!/usr/bin/env bash
# Instructions per call of each fs entry point for the requests of
# `cp -a` into and inside a mount, and of fio's 4 KiB random writes and
# reads:
# build/bench/bench_ops under valgrind's callgrind.  Instruction counts
# do not depend on the machine's load, so they compare two commits on a
# busy machine where wall-clock and CPU times swing by 2x.  See "Daemon
# work per request" in bench/README.md.
#
#   bench/ops_instr.sh [--files N] [--writes N]
#     --files N   files per half of the cp -a sequence (default 2000)
#     --writes N  4 KiB random writes into a 64 MiB file, and as many
#                 random reads of one (default 20000)
#
# stdout: "ops_<workload>_<entry point>: <instructions> instr/call" lines
# (inclusive: what the call and everything it calls executed; the
# commits of rfs_fs_sync are not listed); progress on stderr.
#
# Environment:
#   RFS_BENCH_DIR  the directory of bench_ops (default build/bench)
#   RFS_OPS_DIR    a directory for the pool (default /dev/shm)
set -euo pipefail
export LC_ALL=C
root=$(cd "$(dirname "$0")/.." && pwd)
files=2000 writes=20000
while [ $# -gt 0 ]; do
	case "$1" in
	--files) files=$2; shift ;;
	--writes) writes=$2; shift ;;
	-h | --help) sed -n '2,21p' "$0"; exit 0 ;;
	*) echo "ops_instr.sh: unknown argument '$1'" >&2; exit 2 ;;
	esac
	shift
done
ops=${RFS_BENCH_DIR:-$root/build/bench}/bench_ops
[ -x "$ops" ] || { echo "ops_instr.sh: $ops not found (build it with 'make bench-build')" >&2; exit 1; }
command -v valgrind >/dev/null && command -v callgrind_annotate >/dev/null ||
	{ echo "ops_instr.sh: valgrind is not installed (scripts/install-deps.sh)" >&2; exit 1; }
dir=${RFS_OPS_DIR:-/dev/shm}
work=$(mktemp -d "$dir/rfs-ops.XXXXXX")
trap 'rm -rf "$work"' EXIT

# run NAME ARGS...: bench_ops under callgrind; per-call figures of every
# rfs_fs_* entry point it called.
# VG_OPTS: more valgrind options.
run() {
	local name=$1; shift
	echo "ops_instr.sh: $name: valgrind --tool=callgrind ${VG_OPTS:-} $ops $*" >&2
	valgrind --tool=callgrind ${VG_OPTS:-} --callgrind-out-file="$work/$name.cg" "$ops" "$@" \
		>"$work/$name.out" 2>"$work/$name.err" ||
		{ tail -5 "$work/$name.err" >&2; exit 1; }
	callgrind_annotate --tree=caller --inclusive=yes "$work/$name.cg" 2>/dev/null |
		python3 -c '
import re, sys
name = sys.argv[1]
calls, cost = {}, {}
pending = 0
for line in sys.stdin:
    m = re.match(r"\s*([\d,]+) \([^)]*\)\s+([<*])\s+\S*?:([\w.]+)(?: \((\d[\d,]*)x\))?", line)
    if not m:
        pending = 0
        continue
    ir, kind, fn, n = m.groups()
    if kind == "<":
        pending += int(n.replace(",", "")) if n else 0
        continue
    if fn.startswith("rfs_fs_") and fn not in ("rfs_fs_sync", "rfs_fs_open", "rfs_fs_close", "rfs_fs_mkfs"):
        if pending and fn not in cost:
            calls[fn], cost[fn] = pending, int(ir.replace(",", ""))
    pending = 0
for fn in sorted(cost, key=lambda f: -cost[f] / calls[f]):
    print(f"ops_{name}_{fn[7:]}: {cost[fn] // calls[fn]} instr/call ({calls[fn]} calls)")
' "$name"
}

VG_OPTS="" run cpa cpa "$work/pool" "$files"
# Only the random writes count, not the file's first filling.
VG_OPTS="--collect-atstart=no --toggle-collect=randwrite_loop*" \
	run randwrite randwrite "$work/pool" "$writes" 64
VG_OPTS="--collect-atstart=no --toggle-collect=randread_loop*" \
	run randread randread "$work/pool" "$writes" 64
