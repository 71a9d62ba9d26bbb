#!/usr/bin/env bash
# Run the reflinkfs benchmarks, one process per benchmark so that each
# run's peak memory is its own.  Prints "name: value unit" lines on stdout;
# progress and diagnostics go to stderr.
#
#   bench/run.sh [--quick] [--time] [--only clone|ops|instr|watch|journal|fs|small|meta|diff|fio|snapshot]
#     --quick   1,000,000 entries instead of 10,000,000 (smoke run); the
#               filesystem benchmarks get --quick too (sizes / 16), the
#               snapshot benchmarks 100,000 files instead of 1,000,000
#     --time    run every process under /usr/bin/time -v (its report goes
#               to stderr, stdout keeps the figure format)
#     --only X  run only benchmark X (fs: bench/fs/run.sh, small.sh and
#               meta.sh; small: only bench/fs/small.sh; meta: only
#               bench/fs/meta.sh; diff:
#               only bench/fs/diff.sh; fio: only bench/fs/fio.sh and
#               bench/fs/rw_wait.sh;
#               snapshot: only bench/snapshot/run.sh; instr: only
#               bench/ops_instr.sh)
#
# When build/reflinkfs (or $RFS_BIN) exists, bench/fs/run.sh (the
# filesystem benchmarks, needs root for its XFS part), bench/fs/diff.sh
# (diff of two snapshots beside btrfs send), bench/fs/small.sh and
# bench/fs/meta.sh (issue 9: small files, warm metadata, cp -a inside the
# mount), bench/fs/fio.sh (parallel
# random I/O beside tmpfs and passthrough_hp) and bench/snapshot/run.sh
# (snapshots beside XFS cp -a and btrfs) run last.
#
# Environment: RFS_BENCH_DIR   directory of the bench binaries
#                              (default build/bench, as `make bench` sets)
#              RFS_BENCH_TMPDIR where the temporary pool / LMDB go
#                              (default $TMPDIR or /tmp; needs ~2 GiB free)
#              RFS_BENCH_N     entry count, overrides --quick
#              RFS_FS_BENCH_DIR where bench/fs/run.sh puts its pool, XFS
#                              image and native directory (default /var/tmp)
set -euo pipefail
cd "$(dirname "$0")/.."

n=10000000
timed=()
fs_args=()
only=""
while [ $# -gt 0 ]; do
	case "$1" in
	--quick) n=1000000; fs_args=(--quick) ;;
	--time) timed=(/usr/bin/time -v) ;;
	--only) only=${2:?--only needs a benchmark name}; shift ;;
	-h|--help) sed -n '2,/^set -euo/{/^#/p}' "$0" | sed 's/^# \?//'; exit 0 ;;
	*) echo "run.sh: unknown argument '$1'" >&2; exit 2 ;;
	esac
	shift
done
n=${RFS_BENCH_N:-$n}

bindir=${RFS_BENCH_DIR:-build/bench}
bin=$bindir/bench_tree
if [ -n "$only" ] && [ "$only" != clone ] && [ "$only" != ops ]; then
	: # only a filesystem-level benchmark: bench_tree not needed
elif [ ! -x "$bin" ]; then
	echo "run.sh: $bin not found; build it with 'make bench-build'" >&2
	exit 1
fi

status=0
for b in clone ops; do
	if [ -n "$only" ] && [ "$only" != "$b" ]; then
		continue
	fi
	echo "run.sh: bench_tree $b $n" >&2
	if ! "${timed[@]}" "$bin" "$b" "$n"; then
		echo "run.sh: bench_tree $b FAILED" >&2
		status=1
	fi
done

# wanted NAME...: true when no --only was given or it names one of them.
wanted() {
	[ -z "$only" ] && return 0
	local w
	for w in "$@"; do [ "$only" = "$w" ] && return 0; done
	return 1
}
rfs_bin=${RFS_BIN:-$PWD/build/reflinkfs}
# fs_bench SCRIPT ARGS...: a script that mounts $rfs_bin, when it is built;
# a failure marks the run failed and the others still run.
fs_bench() {
	local script=$1
	shift
	if [ ! -x "$rfs_bin" ]; then
		echo "run.sh: $rfs_bin not built: $script skipped" >&2
		return 0
	fi
	echo "run.sh: $script $*" >&2
	if ! RFS_BIN=$rfs_bin RFS_BENCH_DIR=$bindir bash "$script" "$@"; then
		echo "run.sh: $script FAILED" >&2
		status=1
	fi
}

# Instructions per fs call for cp -a's and fio randwrite's requests
# (callgrind: figures that do not depend on the machine's load).
if wanted instr; then
	if command -v valgrind >/dev/null && [ -x "$bindir/bench_ops" ]; then
		instr_args=()
		[ "${fs_args[*]}" = --quick ] && instr_args=(--files 500 --writes 5000)
		echo "run.sh: bench/ops_instr.sh ${instr_args[*]}" >&2
		if ! RFS_BENCH_DIR=$bindir bash bench/ops_instr.sh "${instr_args[@]}"; then
			echo "run.sh: bench/ops_instr.sh FAILED" >&2
			status=1
		fi
	else
		echo "run.sh: valgrind or $bindir/bench_ops missing: bench/ops_instr.sh skipped" >&2
	fi
fi
# Pre-modification mark on the first write, at the fs API (bench_watch).
if wanted watch && [ -x "$bindir/bench_watch" ]; then
	echo "run.sh: bench_watch" >&2
	if ! "${timed[@]}" "$bindir/bench_watch"; then
		echo "run.sh: bench_watch FAILED" >&2
		status=1
	fi
fi
# The same on a mount, through FUSE and the watch socket.
if wanted watch; then
	if [ -x "$bindir/bench_watch_mount" ]; then
		fs_bench bench/watch.sh "${fs_args[@]}"
	else
		echo "run.sh: $bindir/bench_watch_mount not built: mount watch benchmark skipped" >&2
	fi
fi
# Change journal overhead and subtree query.
wanted journal && fs_bench bench/journal.sh "${fs_args[@]}"
# Filesystem benchmarks: clones, fio, small files beside XFS and btrfs.
wanted fs && fs_bench bench/fs/run.sh "${fs_args[@]}"
# Space of small files and of a tree clone (issue 9).
wanted fs small && fs_bench bench/fs/small.sh "${fs_args[@]}"
# Warm metadata, cp -a in and inside, rm -rf beside tmpfs and
# passthrough_hp, with FUSE requests per step (issue 9).
meta_args=()
[ "${fs_args[*]}" = --quick ] && meta_args=(--reps 1)
wanted fs meta && RFS_META_NDIRS=${RFS_META_NDIRS:-$([ "${fs_args[*]}" = --quick ] && echo 300 || echo 1200)} \
	fs_bench bench/fs/meta.sh "${meta_args[@]}"
# Diff of two snapshots beside btrfs send.
wanted diff && fs_bench bench/fs/diff.sh "${fs_args[@]}"
# Parallel random I/O, 1/2/4 fio jobs beside tmpfs and passthrough_hp.
if wanted fio; then
	fio_args=()
	[ "${fs_args[*]}" = --quick ] && fio_args=(--runtime 2)
	if command -v fio >/dev/null; then
		fs_bench bench/fs/fio.sh "${fio_args[@]}"
		# A reader of one file beside a writer of another: what the
		# READs waited for inside the daemon.
		fs_bench bench/fs/rw_wait.sh "${fio_args[@]}"
	else
		echo "run.sh: fio is not installed: fio benchmark skipped" >&2
	fi
fi
# Snapshots beside XFS cp -a and btrfs: need bench_snapshot too.
if wanted snapshot; then
	if [ -x "$bindir/bench_snapshot" ]; then
		fs_bench bench/snapshot/run.sh "${fs_args[@]}"
	else
		echo "run.sh: $bindir/bench_snapshot not built: snapshot benchmarks skipped" >&2
	fi
fi
exit $status
