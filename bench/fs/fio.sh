#!/usr/bin/env bash
# Parallel I/O benchmark: fio 4 KiB random read and random write with 1, 2
# and 4 jobs, each job on a file of its own, on native tmpfs, on reflinkfs
# with its pool on tmpfs, and on libfuse's passthrough_hp over tmpfs (the
# FUSE ceiling), in the same run, so that the figures measure CPU work,
# round trips and serialization in the daemons, not a disk.  See
# "Parallel I/O" in bench/README.md.
#
#   bench/fs/fio.sh [--keep] [--reps N] [--runtime S] [--jobs "1 2 4"] [--rw LIST]
#     --keep       keep the temporary directory (pool, fio JSON, logs)
#     --reps N     repetitions of every job (median; default 1)
#     --runtime S  seconds per fio job (default 5)
#     --jobs LIST  job counts (default "1 2 4")
#     --rw LIST    workloads (default "randread randwrite")
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
keep=0 reps=1 rt=5 jobs="1 2 4" rws="randread randwrite"
while [ $# -gt 0 ]; do
	case "$1" in
	--keep) keep=1 ;;
	--reps) reps=$2; shift ;;
	--runtime) rt=$2; shift ;;
	--jobs) jobs=$2; shift ;;
	--rw) rws=$2; shift ;;
	-h | --help) sed -n '2,34p' "$0" >&3; exit 0 ;;
	*) echo "fio.sh: unknown argument '$1'" >&2; exit 2 ;;
	esac
	shift
done
bin=${RFS_BIN:-$root/build/reflinkfs}
case "$bin" in */*) [ "${bin#/}" != "$bin" ] || bin=$PWD/$bin ;; esac
[ -x "$bin" ] || { echo "fio.sh: $bin not found (build it with 'make')" >&2; exit 1; }
command -v fio >/dev/null || { echo "fio.sh: fio is not installed (scripts/install-deps.sh)" >&2; exit 1; }
base=${RFS_FIO_BENCH_DIR:-/dev/shm}
size=${RFS_FIO_SIZE:-256M}

log() { echo "fio.sh [${SECONDS}s]: $*" >&2; }
fig() {
	printf '%s: %s%s\n' "$1" "$2" "${3:+ $3}" >&3
	printf 'fio.sh: >> %s: %s%s\n' "$1" "$2" "${3:+ $3}" >&2
}
calc() { awk "BEGIN { printf \"%.${2:-3}f\", $1 }"; }
is_mounted() { awk -v m="$1" '$5 == m { f = 1 } END { exit !f }' /proc/self/mountinfo; }

work="" mnt="" ptmnt="" daemon_pid="" pt_pid="" bmnt="" bpid=""
cleanup() {
	local rc=$?
	set +e
	if [ -n "$mnt" ] && is_mounted "$mnt"; then
		"$bin" umount "$mnt" 2>/dev/null || fusermount3 -u "$mnt" || fusermount3 -uz "$mnt"
	fi
	if [ -n "$bmnt" ] && is_mounted "$bmnt"; then
		fusermount3 -u "$bmnt" || fusermount3 -uz "$bmnt"
	fi
	if [ -n "$ptmnt" ] && is_mounted "$ptmnt"; then
		fusermount3 -u "$ptmnt" || fusermount3 -uz "$ptmnt"
	fi
	local p
	for p in $daemon_pid $pt_pid $bpid; do
		wait "$p" 2>/dev/null
	done
	if [ -n "$work" ]; then
		if [ "$keep" = 1 ]; then log "kept $work"; else rm -rf --one-file-system "$work"; fi
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

work=$(mktemp -d "$base/rfs-fio.XXXXXX")
if [ "$(stat -f -c %T "$work")" != tmpfs ]; then
	log "note: $work is not on tmpfs ($(stat -f -c %T "$work")): the figures include its disk"
fi
mkdir "$work/bin" "$work/native" "$work/mnt" "$work/pt" "$work/ptsrc"
cp "$bin" "$work/bin/reflinkfs"
bin=$work/bin/reflinkfs

# The FUSE ceiling: passthrough_hp (multi-threaded, splice, one open
# descriptor per file), else passthrough_ll.
pt="" ptname=""
if [ "${RFS_FIO_NO_PT:-0}" != 1 ]; then
	if [ -n "${RFS_PASSTHROUGH_HP:-}" ]; then
		pt=$RFS_PASSTHROUGH_HP
	else
		pt=$("$root/bench/fs/passthrough_hp.sh" 2>"$work/pt-build.log") || pt=""
		# Say why (no deb-src line, no g++): the log goes with $work.
		if [ -z "$pt" ]; then
			why=$(grep 'passthrough_hp.sh:' "$work/pt-build.log" | tail -1)
			log "passthrough_hp: ${why:-$(tail -1 "$work/pt-build.log")}"
		fi
	fi
	if [ -n "$pt" ]; then
		ptname=pt_hp
	else
		ex=/usr/share/doc/libfuse3-dev/examples
		if [ -r "$ex/passthrough_ll.c" ] &&
			"${CC:-cc}" -O2 -D_GNU_SOURCE -I"$ex" -o "$work/bin/passthrough_ll" \
				"$ex/passthrough_ll.c" $(pkg-config --cflags --libs fuse3) 2>>"$work/pt-build.log"; then
			pt=$work/bin/passthrough_ll ptname=pt_ll
			log "passthrough_hp not available (see $work/pt-build.log): passthrough_ll stands in"
		else
			log "no passthrough daemon could be built (see $work/pt-build.log): skipped"
		fi
	fi
fi

"$bin" mkfs --size 16G "$work/pool.img" >&2
"$bin" mount -f "$work/pool.img" "$work/mnt" 2>"$work/daemon.log" &
daemon_pid=$!
mnt=$work/mnt
for _ in $(seq 100); do is_mounted "$mnt" && break; sleep 0.1; done
is_mounted "$mnt" || { log "reflinkfs did not mount; log:"; cat "$work/daemon.log" >&2; exit 1; }
log "reflinkfs daemon pid $daemon_pid"
if [ -n "${RFS_BIN_BEFORE:-}" ]; then
	mkdir "$work/bmnt"
	cp "$RFS_BIN_BEFORE" "$work/bin/reflinkfs-before"
	"$work/bin/reflinkfs-before" mkfs --size 16G "$work/bpool.img" >&2
	"$work/bin/reflinkfs-before" mount -f "$work/bpool.img" "$work/bmnt" 2>"$work/bdaemon.log" &
	bpid=$!
	bmnt=$work/bmnt
	for _ in $(seq 100); do is_mounted "$bmnt" && break; sleep 0.1; done
	is_mounted "$bmnt" || { log "$RFS_BIN_BEFORE did not mount; log:"; cat "$work/bdaemon.log" >&2; exit 1; }
	log "reflinkfs (before: $RFS_BIN_BEFORE) daemon pid $bpid"
fi
if [ -n "$pt" ]; then
	if [ "$ptname" = pt_hp ]; then
		"$pt" --foreground "$work/ptsrc" "$work/pt" 2>"$work/pt.log" &
	else
		"$pt" -f -o source="$work/ptsrc",cache=always "$work/pt" 2>"$work/pt.log" &
	fi
	pt_pid=$!
	ptmnt=$work/pt
	for _ in $(seq 100); do is_mounted "$ptmnt" && break; sleep 0.1; done
	if ! is_mounted "$ptmnt"; then
		log "$ptname did not mount: skipped"; pt="" ptmnt=""
	else
		log "$ptname daemon pid $pt_pid"
	fi
fi

# CPU time (user + system) of process PID so far, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
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
iops = job[sys.argv[2]]["iops"]
ticks, tck, secs, pid = float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), sys.argv[6]
cpu = "%.2f" % (ticks / tck * 1e6 / (iops * secs)) if pid and iops else "-"
print(int(iops), cpu)' "$out" "$([ "$rw" = randread ] && echo read || echo write)" \
		"$((c1 - c0))" "$tck" "$((rt + 1))" "$pid"
}
median() { tr ' ' '\n' | grep . | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

fss="native reflinkfs"
[ -n "$bmnt" ] && fss="$fss before"
[ -n "$pt" ] && fss="$fss $ptname"
dir_of() { case $1 in native) echo "$work/native" ;; reflinkfs) echo "$mnt" ;; before) echo "$bmnt" ;; *) echo "$ptmnt" ;; esac; }
pid_of() { case $1 in native) echo "" ;; reflinkfs) echo "$daemon_pid" ;; before) echo "$bpid" ;; *) echo "$pt_pid" ;; esac; }
log "files of $size per job, ${rt}s per run, $reps repetition(s), jobs: $jobs; filesystems: $fss"
status=0
for rw in $rws; do
	for nj in $jobs; do
		declare -A vals=() cpus=()
		for rep in $(seq "$reps"); do
			for fs in $fss; do
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
			m=$(echo "${vals[$fs]}" | median)
			case $fs in reflinkfs) name=fio_rand$tag ;; *) name=${fs}_fio_rand$tag ;; esac
			fig "$name" "$m" IOPS
			[ -n "${cpus[$fs]:-}" ] && fig "${name}_cpu_per_io" "$(echo "${cpus[$fs]}" | median)" us
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
