#!/usr/bin/env bash
# Parallel I/O benchmark: fio 4 KiB random read and random write with 1, 2
# and 4 jobs, each job on a file of its own, on native tmpfs, on reflinkfs
# with its pool on tmpfs, and on libfuse's passthrough_hp over tmpfs (the
# FUSE ceiling), in the same run, so that the figures measure CPU work,
# round trips and serialization in the daemons, not a disk.  See
# "Parallel I/O" in bench/README.md.
#
# The filesystems take turns, one fio run each, and the order rotates by
# one per repetition (with native, reflinkfs, before and passthrough_hp:
# rep 1 in that order, rep 2 reflinkfs before passthrough_hp native, ...):
# a machine whose load drifts during a repetition then does not favour
# the same filesystem every time, so the medians and ratios are not
# biased by the order.  With --reps a multiple of the number of
# filesystems each takes every place equally often; with --reps 1 the
# fixed order's bias stays.
#
#   bench/fs/fio.sh [--keep] [--busy] [--reps N] [--runtime S] [--jobs "1 2 4"] [--rw LIST]
#     --keep       keep the temporary directory (pool, fio JSON, logs)
#     --reps N     repetitions of every job (median; default 1)
#     --runtime S  seconds per fio job (default 5)
#     --jobs LIST  job counts (default "1 2 4")
#     --rw LIST    workloads (default "randread randwrite"; also randrw:
#                  half reads, half writes, mixed on each job's file, where
#                  a READ maps the file's delayed writes first; its figure
#                  counts reads and writes together)
#     --busy       run one `nice -n 19` busy loop per CPU during the runs,
#                  so that no CPU goes idle between requests: on a virtual
#                  machine an idle vCPU halts, and waking it costs a
#                  single-job run more than the daemons' own work
#                  (bench/README.md, "Session 15"); figures are named as
#                  without it
#
# stdout: "name: value unit" lines (IOPS per filesystem, and the ratios
# reflinkfs / passthrough_hp and reflinkfs / native: higher is better;
# and the daemons' CPU time per I/O, user + system, from /proc: lower
# is better, and steadier than IOPS on a shared machine); progress on
# stderr.
#
# Environment:
#   RFS_BIN             the reflinkfs binary (default build/reflinkfs)
#   RFS_FIO_BENCH_DIR   a tmpfs directory (default /dev/shm)
#   RFS_FIO_SIZE        size of each job's file (default 256M)
#   RFS_PASSTHROUGH_HP  a passthrough_hp binary; else bench/fs/passthrough_hp.sh
#                       builds one from Debian's fuse3 source package when
#                       it can, else passthrough_ll (libfuse3-dev's
#                       examples) stands in, else that column is skipped
#   RFS_FIO_NO_PT=1     skip the passthrough daemon
#   RFS_BIN_BEFORE      a second reflinkfs binary (say, of the commit before
#                       a change), run in turn with the others on a pool of
#                       its own: figures "before_fio_*" and the ratio
#                       "fio_*_vs_before" (after / before)
set -euo pipefail
export LC_ALL=C
exec 3>&1 1>&2

root=$(cd "$(dirname "$0")/../.." && pwd)
me=fio.sh
. "$root/bench/lib.bash"
keep=0 busy=0 reps=1 runtime=5 jobs="1 2 4" rw="randread randwrite"
bench_args 2,52 "keep busy reps= runtime= jobs= rw=" "$@"
rt=$runtime rws=$rw
bench_bin
command -v fio >/dev/null || { echo "$me: fio is not installed (scripts/install-deps.sh)" >&2; exit 1; }
base=${RFS_FIO_BENCH_DIR:-/dev/shm}
size=${RFS_FIO_SIZE:-256M}

mnt="" ptmnt="" bmnt="" bpid="" pt_pid="" fuse_mnts="" pids=""
bench_traps
bench_work "$base" fio
if [ "$(stat -f -c %T "$work")" != tmpfs ]; then
	log "note: $work is not on tmpfs ($(stat -f -c %T "$work")): the figures include its disk"
fi
mkdir "$work/native" "$work/mnt" "$work/pt" "$work/ptsrc"
bench_private_bin

# The FUSE ceiling: passthrough_hp (multi-threaded, splice, one open
# descriptor per file), else passthrough_ll.
pt="" ptname=""
if [ "${RFS_FIO_NO_PT:-0}" != 1 ]; then
	if bench_passthrough_hp "$work/pt-build.log"; then
		pt=$pt_hp ptname=pt_hp
	else
		# Say why (no deb-src line, no g++): the log goes with $work.
		why=$(grep 'passthrough_hp.sh:' "$work/pt-build.log" | tail -1 || true)
		log "passthrough_hp: ${why:-$(tail -1 "$work/pt-build.log")}"
		if bench_passthrough_ll "$work/pt-build.log"; then
			pt=$pt_ll ptname=pt_ll
			log "passthrough_hp not available (see $work/pt-build.log): passthrough_ll stands in"
		else
			log "no passthrough daemon could be built (see $work/pt-build.log): skipped"
		fi
	fi
fi

# The binary before a change first, on a pool and mount of its own;
# then reflinkfs, whose daemon_pid the mount helpers keep.
rfs_mount_before 16G
"$bin" mkfs --size 16G "$work/pool.img" >&2
mnt=$work/mnt
rfs_mount "$work/pool.img"
log "reflinkfs daemon pid $daemon_pid"
if [ -n "$pt" ]; then
	ptk=hp
	[ "$ptname" = pt_hp ] || ptk=ll
	if pt_start "$ptk" "$pt" "$work/ptsrc" "$work/pt" "$work/pt.log"; then
		ptmnt=$work/pt
		log "$ptname daemon pid $pt_pid"
	else
		log "$ptname did not mount: skipped"; pt=""
	fi
fi

tck=$(getconf CLK_TCK)

# fio_run DIR LABEL RW NJOBS REP PID: one fio run; on stdout its IOPS and
# the CPU time of daemon PID (none for native: -) per I/O in us, over
# the ramp and the run (taken as running at the measured rate).  The
# files are laid out by a run of their own first (one per job,
# name.JOB.0 in DIR), so that no layout counts.
fio_run() {
	local dir=$1 label=$2 rw=$3 nj=$4 rep=$5 pid=${6:-}
	local out=$work/fio-$label-$rw-$nj-$rep.json
	local common=(--name=f --directory="$dir" --rw="$rw" --bs=4k --size="$size"
		--numjobs="$nj" --ioengine=libaio --iodepth=16 --direct=1 --fallocate=none)
	fio "${common[@]}" --create_only=1 >/dev/null 2>"$work/fio-$label.err" ||
		{ log "fio $label layout $nj failed: $(tail -3 "$work/fio-$label.err")"; return 1; }
	local c0=0
	[ -n "$pid" ] && c0=$(cpu_ticks "$pid")
	fio "${common[@]}" --time_based --runtime="$rt" --ramp_time=1 --group_reporting \
		--output-format=json >"$out" 2>"$work/fio-$label.err" ||
		{ log "fio $label $rw $nj failed: $(tail -3 "$work/fio-$label.err")"; return 1; }
	local c1=0
	[ -n "$pid" ] && c1=$(cpu_ticks "$pid")
	python3 -c 'import json, sys
text = open(sys.argv[1]).read()
job = json.loads(text[text.index("{"):])["jobs"][0]  # fio may print notes first
iops = sum(job[k]["iops"] for k in sys.argv[2].split("+"))
ticks, tck, secs, pid = float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), sys.argv[6]
cpu = "%.2f" % (ticks / tck * 1e6 / (iops * secs)) if pid and iops else "-"
print(int(iops), cpu)' "$out" "$(case $rw in randread) echo read ;; randrw) echo read+write ;; *) echo write ;; esac)" \
		"$((c1 - c0))" "$tck" "$((rt + 1))" "$pid"
}

fss="native reflinkfs"
[ -n "$bmnt" ] && fss="$fss before"
[ -n "$pt" ] && fss="$fss $ptname"
dir_of() { case $1 in native) echo "$work/native" ;; reflinkfs) echo "$mnt" ;; before) echo "$bmnt" ;; *) echo "$ptmnt" ;; esac; }
pid_of() { case $1 in native) echo "" ;; reflinkfs) echo "$daemon_pid" ;; before) echo "$bpid" ;; *) echo "$pt_pid" ;; esac; }
log "files of $size per job, ${rt}s per run, $reps repetition(s), jobs: $jobs; filesystems: $fss"
if [ "$busy" = 1 ]; then
	# Lowest priority: they take only what nobody else wants.  Killed
	# by PID first thing at exit (bench_cleanup's kill_pids).
	for _ in $(seq "$(nproc)"); do
		nice -n 19 sh -c 'while :; do :; done' &
		kill_pids="${kill_pids:-} $!"
	done
	log "busy: $(nproc) nice 19 busy loops"
fi
status=0
for rw in $rws; do
	for nj in $jobs; do
		declare -A vals=() cpus=()
		for rep in $(seq "$reps"); do
			if [ "$reps" -gt 1 ]; then log "$rw ${nj}j repetition $rep: $(rotate_list "$rep" $fss)"; fi
			for fs in $(rotate_list "$rep" $fss); do
				r=$(fio_run "$(dir_of "$fs")" "$fs" "$rw" "$nj" "$rep" "$(pid_of "$fs")") ||
					{ status=1; continue; }
				v=${r% *} c=${r#* }
				vals[$fs]="${vals[$fs]:-} $v"
				[ "$c" = - ] || cpus[$fs]="${cpus[$fs]:-} $c"
				if [ "$c" = - ]; then log "$rw ${nj}j $fs: $v IOPS"
				else log "$rw ${nj}j $fs: $v IOPS, $c us of daemon CPU per I/O"; fi
			done
		done
		tag=${rw#rand}_${nj}j
		for fs in $fss; do
			[ -n "${vals[$fs]:-}" ] || continue
			m=$(echo "${vals[$fs]}" | median_low)
			case $fs in reflinkfs) name=fio_rand$tag ;; *) name=${fs}_fio_rand$tag ;; esac
			fig "$name" "$m" IOPS
			[ -n "${cpus[$fs]:-}" ] && fig "${name}_cpu_per_io" "$(echo "${cpus[$fs]}" | median_low)" us
			eval "m_$fs=$m"
		done
		if [ -n "${m_reflinkfs:-}" ]; then
			[ -n "$pt" ] && [ -n "$(eval echo "\${m_$ptname:-}")" ] &&
				fig "fio_rand${tag}_vs_$ptname" "$(calc "$m_reflinkfs / $(eval echo "\$m_$ptname")" 2)"
			[ -n "${m_native:-}" ] && fig "fio_rand${tag}_vs_native" "$(calc "$m_reflinkfs / $m_native" 2)"
			[ -n "${m_before:-}" ] && fig "fio_rand${tag}_vs_before" "$(calc "$m_reflinkfs / $m_before" 2)"
			[ -n "${m_before:-}" ] && [ -n "$pt" ] && [ -n "$(eval echo "\${m_$ptname:-}")" ] &&
				fig "before_fio_rand${tag}_vs_$ptname" "$(calc "$m_before / $(eval echo "\$m_$ptname")" 2)"
		fi
		unset vals cpus m_reflinkfs m_native m_before "m_$ptname" 2>/dev/null || true
		rm -f "$work"/native/f.* "$mnt"/f.* ${bmnt:+"$bmnt"/f.*} ${ptmnt:+"$ptmnt"/f.*}
	done
done
log "reflinkfs daemon: $(grep -E '^(VmHWM|Threads)' /proc/$daemon_pid/status | tr -s ' \t\n' ' ')"
exit $status
