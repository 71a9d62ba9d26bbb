#!/usr/bin/env bash
# Run the reflinkfs benchmarks, one process per benchmark so that each
# run's peak memory is its own.  Prints "name: value unit" lines on stdout;
# progress and diagnostics go to stderr.
#
#   bench/run.sh [--quick] [--time] [--only clone|ops|watch|journal|fs|small|diff|fio|snapshot]
#     --quick   1,000,000 entries instead of 10,000,000 (smoke run); the
#               filesystem benchmarks get --quick too (sizes / 16), the
#               snapshot benchmarks 100,000 files instead of 1,000,000
#     --time    run every process under /usr/bin/time -v (its report goes
#               to stderr, stdout keeps the figure format)
#     --only X  run only benchmark X (fs: bench/fs/run.sh and small.sh;
#               small: only bench/fs/small.sh; diff:
#               only bench/fs/diff.sh; fio: only bench/fs/fio.sh;
#               snapshot: only bench/snapshot/run.sh)
#
# When build/reflinkfs (or $RFS_BIN) exists, bench/fs/run.sh (the
# filesystem benchmarks, needs root for its XFS part), bench/fs/diff.sh
# (diff of two snapshots beside btrfs send), bench/fs/fio.sh (parallel
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
	-h|--help) sed -n '2,26p' "$0"; exit 0 ;;
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

# Pre-modification mark on the first write, at the fs API (bench_watch).
if [ -z "$only" ] || [ "$only" = watch ]; then
	if [ -x "$bindir/bench_watch" ]; then
		echo "run.sh: bench_watch" >&2
		if ! "${timed[@]}" "$bindir/bench_watch"; then
			echo "run.sh: bench_watch FAILED" >&2
			status=1
		fi
	fi
fi

# The same on a mount, through FUSE and the watch socket (bench/watch.sh).
if [ -z "$only" ] || [ "$only" = watch ]; then
	rfs_bin=${RFS_BIN:-$PWD/build/reflinkfs}
	if [ -x "$rfs_bin" ] && [ -x "$bindir/bench_watch_mount" ]; then
		echo "run.sh: bench/watch.sh ${fs_args[*]}" >&2
		if ! RFS_BIN=$rfs_bin RFS_BENCH_DIR=$bindir bash bench/watch.sh "${fs_args[@]}"; then
			echo "run.sh: bench/watch.sh FAILED" >&2
			status=1
		fi
	else
		echo "run.sh: $rfs_bin or $bindir/bench_watch_mount not built: mount watch benchmark skipped" >&2
	fi
fi

# Change journal overhead and subtree query (bench/journal.sh).
if [ -z "$only" ] || [ "$only" = journal ]; then
	rfs_bin=${RFS_BIN:-$PWD/build/reflinkfs}
	if [ -x "$rfs_bin" ]; then
		echo "run.sh: bench/journal.sh ${fs_args[*]}" >&2
		if ! RFS_BIN=$rfs_bin bash bench/journal.sh "${fs_args[@]}"; then
			echo "run.sh: bench/journal.sh FAILED" >&2
			status=1
		fi
	fi
fi

# Filesystem benchmarks (bench/fs/run.sh), when the binary is built.
if [ -z "$only" ] || [ "$only" = fs ]; then
	rfs_bin=${RFS_BIN:-$PWD/build/reflinkfs}
	if [ -x "$rfs_bin" ]; then
		echo "run.sh: bench/fs/run.sh ${fs_args[*]}" >&2
		if ! RFS_BIN=$rfs_bin bash bench/fs/run.sh "${fs_args[@]}"; then
			echo "run.sh: bench/fs/run.sh FAILED" >&2
			status=1
		fi
	else
		echo "run.sh: $rfs_bin not built: filesystem benchmarks skipped" >&2
	fi
fi
# Space of small files and of a tree clone (bench/fs/small.sh, issue 9).
if [ -z "$only" ] || [ "$only" = fs ] || [ "$only" = small ]; then
	rfs_bin=${RFS_BIN:-$PWD/build/reflinkfs}
	if [ -x "$rfs_bin" ]; then
		echo "run.sh: bench/fs/small.sh ${fs_args[*]}" >&2
		if ! RFS_BIN=$rfs_bin bash bench/fs/small.sh "${fs_args[@]}"; then
			echo "run.sh: bench/fs/small.sh FAILED" >&2
			status=1
		fi
	fi
fi
# Diff of two snapshots (bench/fs/diff.sh), when the binary is built.
if [ -z "$only" ] || [ "$only" = diff ]; then
	rfs_bin=${RFS_BIN:-$PWD/build/reflinkfs}
	if [ -x "$rfs_bin" ]; then
		echo "run.sh: bench/fs/diff.sh ${fs_args[*]}" >&2
		if ! RFS_BIN=$rfs_bin bash bench/fs/diff.sh "${fs_args[@]}"; then
			echo "run.sh: bench/fs/diff.sh FAILED" >&2
			status=1
		fi
	else
		echo "run.sh: $rfs_bin not built: diff benchmark skipped" >&2
	fi
fi

# Parallel random I/O, 1/2/4 fio jobs (bench/fs/fio.sh).
if [ -z "$only" ] || [ "$only" = fio ]; then
	rfs_bin=${RFS_BIN:-$PWD/build/reflinkfs}
	fio_args=()
	[ "${fs_args[*]}" = --quick ] && fio_args=(--runtime 2)
	if [ -x "$rfs_bin" ] && command -v fio >/dev/null; then
		echo "run.sh: bench/fs/fio.sh ${fio_args[*]}" >&2
		if ! RFS_BIN=$rfs_bin bash bench/fs/fio.sh "${fio_args[@]}"; then
			echo "run.sh: bench/fs/fio.sh FAILED" >&2
			status=1
		fi
	else
		echo "run.sh: $rfs_bin not built or fio missing: fio benchmark skipped" >&2
	fi
fi

# Snapshot benchmarks (bench/snapshot/run.sh): need bench_snapshot too.
if [ -z "$only" ] || [ "$only" = snapshot ]; then
	rfs_bin=${RFS_BIN:-$PWD/build/reflinkfs}
	if [ -x "$rfs_bin" ] && [ -x "$bindir/bench_snapshot" ]; then
		echo "run.sh: bench/snapshot/run.sh ${fs_args[*]}" >&2
		if ! RFS_BIN=$rfs_bin RFS_BENCH_DIR=$bindir bash bench/snapshot/run.sh "${fs_args[@]}"; then
			echo "run.sh: bench/snapshot/run.sh FAILED" >&2
			status=1
		fi
	else
		echo "run.sh: $rfs_bin or $bindir/bench_snapshot not built: snapshot benchmarks skipped" >&2
	fi
fi
exit $status
