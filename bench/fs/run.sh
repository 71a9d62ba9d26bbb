#!/usr/bin/env bash
# Filesystem benchmarks of reflinkfs: clones through plain cp (1 extent vs
# ~1,000,000 extents, beside XFS and btrfs reflink on loop devices),
# `reflinkfs clone` of a sparse file, the longest wait of a reader of the
# source during a clone, fio throughput and small-file metadata rates
# beside the native backing filesystem, the space a clone takes, and the
# daemon's peak RSS.  Everything is measured in the same run.  See the
# "Filesystem benchmarks" section of bench/README.md.
#
#   bench/fs/run.sh [--quick] [--keep]
#     --quick   sizes scaled down 16x (256 MiB files, 65,536 extents,
#               6,250 small files): a smoke run of a few minutes
#     --keep    keep the temporary directory (pool, logs, fio JSON)
#
# stdout: only "name: value unit" lines.  Progress, logs and the reasons
# for skipped figures go to stderr.  Exit 1 when a part failed (its
# figures are missing; the other parts still ran).
#
# Environment:
#   RFS_BIN           the reflinkfs binary (default build/reflinkfs)
#   RFS_FS_BENCH_DIR  where the temporary directory goes (default /var/tmp;
#                     not /tmp, which may be tmpfs).  The pool file, the
#                     native comparison directory and the XFS image all
#                     live there, on the same backing filesystem.  The full
#                     run needs ~16 GiB free, --quick ~2 GiB; with less
#                     than 16 GiB the run falls back to the --quick sizes.
#   RFS_FS_BENCH_MOUNT_OPTS  extra -o options for `reflinkfs mount`
#   RFS_FS_BENCH_NO_BTRFS=1  skip the btrfs contrast
#
# Needs root (loop devices, drop_caches); without root the XFS and btrfs
# parts are skipped and caches are not dropped.  The btrfs part also
# needs mkfs.btrfs (btrfs-progs), else it is skipped with a note.
set -euo pipefail
export LC_ALL=C
# Figures go to fd 3 (the original stdout); everything else to stderr.
exec 3>&1 1>&2

root=$(cd "$(dirname "$0")/../.." && pwd)
me=fs/run.sh
. "$root/bench/lib.bash"
quick=0
keep=0
bench_args 2,32 "quick keep" "$@"
bench_bin
base=${RFS_FS_BENCH_DIR:-/var/tmp}
is_root=0
[ "$(id -u)" = 0 ] && is_root=1

# ------------------------------------------------------------------ sizes
avail_kib=$(df -Pk "$base" | awk 'NR == 2 { print $4 }')
need_full_kib=$((16 * 1024 * 1024))
need_quick_kib=$((2 * 1024 * 1024))
if [ "$quick" = 0 ] && [ "$avail_kib" -lt "$need_full_kib" ]; then
	log "only $((avail_kib / 1024)) MiB free under $base, the full run needs" \
		"$((need_full_kib / 1024)) MiB: using the --quick sizes (16x smaller)"
	quick=1
fi
if [ "$avail_kib" -lt "$need_quick_kib" ]; then
	log "only $((avail_kib / 1024)) MiB free under $base; need at least" \
		"$((need_quick_kib / 1024)) MiB (set RFS_FS_BENCH_DIR)"
	exit 1
fi
if [ "$quick" = 1 ]; then
	big=$((256 << 20))       # the file that gets cloned
	sparse=$((512 << 20))    # sparse file: 4 KiB data every 8 KiB
	tag=64k                  # ~65,536 extents / data regions
	nsmall=6250
	space_file=$((64 << 20))
	fio_size=256M
	fio_rio=64M              # random I/O volume
	fio_rt=10                # cap per random job, seconds
	fio_reps=1               # fio repetitions (median)
	pool_size=8G
	img_size=2G
	sparse_cp_limit=60       # plain cp of the sparse file, seconds
else
	big=$((4 << 30))
	sparse=$((8 << 30))
	tag=1m
	nsmall=100000
	space_file=$((1 << 30))
	fio_size=4G
	fio_rio=1G
	fio_rt=30
	fio_reps=3
	pool_size=32G
	img_size=12G
	sparse_cp_limit=600
fi

# ------------------------------------------------------------------ state
pool=""
daemon_pid=""
daemon_peak_kib=0 daemon_anon_kib=0
status=0
bench_traps
bench_work "$base" fsbench
log "working in $work ($((avail_kib / 1024)) MiB free; $([ "$quick" = 1 ] && echo quick || echo full) sizes)"

# ------------------------------------------------------------------ helpers
drop_caches() {
	sync
	if [ "$is_root" = 1 ]; then
		echo 3 >/proc/sys/vm/drop_caches
	fi
}
sample_rss() { # remember the daemon's VmHWM, and the largest RssAnon seen
	local k a
	[ -n "$daemon_pid" ] && [ -r "/proc/$daemon_pid/status" ] || return 0
	k=$(awk '/^VmHWM:/ { print $2 }' "/proc/$daemon_pid/status" 2>/dev/null || true)
	if [ -n "$k" ] && [ "$k" -gt "$daemon_peak_kib" ]; then
		daemon_peak_kib=$k
	fi
	a=$(awk '/^RssAnon:/ { print $2 }' "/proc/$daemon_pid/status" 2>/dev/null || true)
	if [ -n "$a" ] && [ "$a" -gt "$daemon_anon_kib" ]; then
		daemon_anon_kib=$a
	fi
}
part_after=sample_rss # the daemon's peak RSS after every part (lib.bash)

# ------------------------------------------------------------------ build
log "binary: $bin ($(date -u -r "$bin" '+%F %T UTC'), sha256 $(sha256sum "$bin" | cut -c1-16))"
bench_private_bin
bench_rfsbench

# ------------------------------------------------------------------ mounts
pool=$work/pool.img
mnt=$work/mnt
native=$work/native
mkdir -p "$mnt" "$native"

log "reflinkfs mkfs --size $pool_size $pool"
"$bin" mkfs --size "$pool_size" "$pool" >&2
mount_opts=()
if [ -n "${RFS_FS_BENCH_MOUNT_OPTS:-}" ]; then
	mount_opts=(-o "$RFS_FS_BENCH_MOUNT_OPTS")
fi
log "reflinkfs mount -f ${mount_opts[*]} $pool $mnt (daemon log: $work/daemon.log)"
rfs_mount "$pool" "${mount_opts[@]}"
log "mounted: $(findmnt -no SOURCE,FSTYPE,OPTIONS "$mnt")"

# ------------------------------------------------------------------ clones
# clone_part DIR NAME_1EXT NAME_MANY NAME_RATIO NAME_WAIT CP...
# In DIR: write a file of $big bytes sequentially (a.img), time `CP a b`
# (and a second clone of a, NAME_1EXT_repeat), overwrite every other
# 4 KiB block of b (fsync), time `CP b c`; then run `CP b d` again while a
# reader does 4 KiB reads of b, and report the longest single read.
clone_part() {
	local dir=$1 n1=$2 nm=$3 nr=$4 nw=$5
	shift 5
	local a=$dir/a.img b=$dir/b.img c=$dir/c.img d=$dir/d.img t1 t1r tm td
	log "writing $((big >> 20)) MiB sequentially: $a"
	"$rb" fill "$a" "$big"
	sync
	timed t1 "$@" "$a" "$b"
	log "$* a.img b.img: $t1 ms"
	"$rb" samplecmp "$a" "$b" 1000
	timed t1r "$@" "$a" "$c"
	log "$* a.img c.img (second clone of a.img): $t1r ms"
	rm -f "$c"
	sync
	log "overwriting every other 4 KiB block of b.img ($((big / 8192)) writes)"
	"$rb" stride "$b" "$big" 8K 4K
	sync
	if [ "$dir" = "$mnt" ]; then
		log "reflinkfs stat b.img: $("$bin" stat "$b" | grep -E '^ *(extents|shared|exclusive):' | tr -s ' \n' ' ')"
	elif command -v filefrag >/dev/null; then
		log "filefrag b.img: $(filefrag "$b" | sed 's/.*: //')"
	fi
	timed tm "$@" "$b" "$c"
	log "$* b.img c.img: $tm ms"
	"$rb" samplecmp "$b" "$c" 1000
	fig "$n1" "$t1" ms
	fig "${n1}_repeat" "$t1r" ms
	fig "$nm" "$tm" ms
	fig "$nr" "$(calc "$tm / ($t1 > 0 ? $t1 : 0.01)" 2)"
	fig "${nr}_repeat" "$(calc "$tm / ($t1r > 0 ? $t1r : 0.01)" 2)"
	rm -f "$c" "$a"
	sync

	# the reader: 4 KiB preads of the source during the clone
	local ready=$work/reader.ready out=$work/reader.out rpid
	rm -f "$ready"
	"$rb" reader "$b" "$ready" >"$out" &
	rpid=$!
	trap 'kill '"$rpid"' 2>/dev/null || true' EXIT
	for i in $(seq 500); do
		[ -e "$ready" ] && break
		kill -0 "$rpid" 2>/dev/null || break
		sleep 0.01
	done
	[ -e "$ready" ] || { log "reader did not start"; return 1; }
	sleep 0.3
	timed td "$@" "$b" "$d"
	sleep 0.3
	kill -USR1 "$rpid"
	wait "$rpid"
	trap - EXIT
	log "reader during '$* b.img d.img' ($td ms): $(cat "$out")"
	local maxus
	maxus=$(sed -n 's/.*max_us=\([0-9]*\).*/\1/p' "$out")
	fig "$nw" "$(calc "$maxus / 1000" 2)" ms
	"$rb" samplecmp "$b" "$d" 1000
	rm -f "$b" "$d"
	sync
}

# img_clones TYPE: clone_part on a TYPE loop filesystem, figures TYPE_*.
# Set up in this shell (the cleanup trap must know the loop device and
# the mount), measured in a part.
img_clones() {
	local type=$1
	if [ "$is_root" != 1 ] || ! command -v "mkfs.$type" >/dev/null; then
		log "$type part skipped (needs root and mkfs.$type)"
		return 0
	fi
	local mkfs_args=()
	[ "$type" = xfs ] && mkfs_args=(-m reflink=1)
	if img_setup "$type" "$img_size" "${mkfs_args[@]}"; then
		part "$type clones" clone_part "$img_mnt" "${type}_clone_1extent" \
			"${type}_clone_${tag}_extents" "${type}_clone_extent_ratio" \
			"${type}_clone_reader_max_wait" cp --reflink=always
	else
		log "PART FAILED: $type setup"
		status=1
	fi
	img_teardown "$type"
}
img_clones xfs
if [ -n "${RFS_FS_BENCH_NO_BTRFS:-}" ]; then
	log "btrfs part skipped (RFS_FS_BENCH_NO_BTRFS)"
else
	img_clones btrfs
fi

part "reflinkfs clones (cp)" clone_part "$mnt" clone_cp_1extent \
	"clone_cp_${tag}_extents" clone_extent_ratio clone_reader_max_wait cp

# `reflinkfs clone` of a file with ~1M extents (one request), for contrast
# with cp (several copy_file_range calls above 4 GiB).
clone_cmd_part() {
	local a=$mnt/x.img b=$mnt/y.img c=$mnt/z.img t
	"$rb" fill "$a" "$big"
	"$rb" stride "$a" "$big" 8K 4K
	sync
	timed t "$bin" clone "$a" "$b"
	"$rb" samplecmp "$a" "$b" 1000
	fig "clone_cmd_${tag}_extents" "$t" ms
	log "reflinkfs stat of the clone: $("$bin" stat "$b" | grep -E '^ *(extents|shared|exclusive):' | tr -s ' \n' ' ')"
	rm -f "$a" "$b" "$c"
	sync
}
part "reflinkfs clone of a ~$tag-extent file" clone_cmd_part

# A sparse file with $sparse/8K data regions of 4 KiB.
sparse_part() {
	local s=$mnt/sparse.img s2=$mnt/sparse2.img s3=$mnt/sparse3.img t rc
	log "writing a sparse $((sparse >> 20)) MiB file, 4 KiB every 8 KiB ($((sparse / 8192)) regions)"
	"$rb" stride "$s" "$sparse" 8K 4K
	sync
	timed t "$bin" clone "$s" "$s2"
	"$rb" samplecmp "$s" "$s2" 1000
	fig "clone_sparse_${tag}_regions" "$t" ms
	rm -f "$s2"
	log "plain cp of the sparse file (walks it region by region; limit ${sparse_cp_limit} s)"
	local t0 t1
	t0=$(now_us)
	set +e
	timeout "$sparse_cp_limit" cp "$s" "$s3"
	rc=$?
	set -e
	t1=$(now_us)
	if [ "$rc" = 0 ]; then
		"$rb" samplecmp "$s" "$s3" 1000
		fig "cp_sparse_${tag}_regions" "$(calc "($t1 - $t0) / 1000" 2)" ms
	elif [ "$rc" = 124 ]; then
		log "cp_sparse_${tag}_regions skipped: plain cp did not finish in ${sparse_cp_limit} s"
	else
		log "cp of the sparse file failed (exit $rc)"
		return 1
	fi
	rm -f "$s" "$s3"
	sync
}
part "sparse clone" sparse_part

# Growth of the pool file's allocated space from one clone of a file.
space_part() {
	local f=$mnt/space.img g=$mnt/space2.img a0 a1 u0 u1
	"$rb" fill "$f" "$space_file"
	sync
	sleep 1
	sync
	a0=$("$rb" allocated "$pool")
	u0=$("$rb" used "$mnt")
	cp "$f" "$g"
	sync "$g"
	sync
	a1=$("$rb" allocated "$pool")
	u1=$("$rb" used "$mnt")
	"$rb" samplecmp "$f" "$g" 100
	log "pool file allocated: $a0 -> $a1 bytes; statfs used: $u0 -> $u1 bytes"
	fig clone_space $(((a1 - a0) / 1024)) KiB
	fig clone_space_statfs $(((u1 - u0) / 1024)) KiB
	rm -f "$f" "$g"
	sync
}
part "clone space ($((space_file >> 20)) MiB file)" space_part

# ------------------------------------------------------------------ fio
# fio_job DIR LABEL JOB REP: one fio job on DIR/fio.dat, its JSON in
# $work/fio-LABEL-JOB-REP.json.  seqwrite creates the file anew; the other
# jobs use it.
fio_job() {
	local dir=$1 label=$2 job=$3 rep=$4 f=$1/fio.dat
	local out=$work/fio-$label-$job-$rep.json
	local common=(--ioengine=psync --direct=0 --numjobs=1 --fallocate=none
		--filename="$f" --output-format=json --name="$job")
	if [ "$job" = seqwrite ]; then
		rm -f "$f"
	fi
	drop_caches
	case "$job" in
	seqwrite)
		fio --rw=write --bs=1M --size="$fio_size" --end_fsync=1 \
			"${common[@]}" >"$out"
		;;
	seqread)
		fio --rw=read --bs=1M --size="$fio_size" "${common[@]}" >"$out"
		;;
	randread)
		fio --rw=randread --bs=4k --size="$fio_size" --io_size="$fio_rio" \
			--runtime="$fio_rt" "${common[@]}" >"$out"
		;;
	randwrite)
		fio --rw=randwrite --bs=4k --size="$fio_size" --io_size="$fio_rio" \
			--runtime="$fio_rt" --end_fsync=1 "${common[@]}" >"$out"
		;;
	esac
	sample_rss
}
# fio_get read|write bw|iops FILE...: median over the files of MiB/s or
# IOPS (the first job of each); all values go to stderr.
fio_get() {
	python3 - "$@" <<'EOF'
import json, statistics, sys
ddir, what, paths = sys.argv[1], sys.argv[2], sys.argv[3:]
vals = []
for path in paths:
    with open(path) as fh:
        text = fh.read()
    doc = json.loads(text[text.index("{"):])  # fio may print notes first
    job = doc["jobs"][0]
    if job.get("error"):
        sys.exit("fio job %s failed: error %s" % (job.get("jobname"), job["error"]))
    d = job[ddir]
    vals.append(d["bw_bytes"] / 1048576.0 if what == "bw" else d["iops"])
med = statistics.median(vals)
print("fs/run.sh: %s: %s" % (paths[0].rsplit("/", 1)[-1].rsplit("-", 1)[0],
                             " ".join("%.1f" % v for v in vals)), file=sys.stderr)
print("%.1f" % med if what == "bw" else "%.0f" % med)
EOF
}
# Each job on reflinkfs and then natively, back to back (so both see the
# same state of the host), $fio_reps times; the figures are medians.
fio_part() {
	local rep job
	for rep in $(seq "$fio_reps"); do
		for job in seqwrite seqread randread randwrite; do
			log "fio $job (repetition $rep of $fio_reps): reflinkfs, then native"
			fio_job "$mnt" rfs "$job" "$rep"
			fio_job "$native" native "$job" "$rep"
		done
	done
	rm -f "$mnt/fio.dat" "$native/fio.dat"
	sync
	local spec j dd what name unit r n
	for spec in seqwrite:write:bw:seq_write seqread:read:bw:seq_read \
		randread:read:iops:rand_read randwrite:write:iops:rand_write; do
		IFS=: read -r j dd what name <<<"$spec"
		unit=MiB/s
		[ "$what" = iops ] && unit=IOPS
		r=$(fio_get "$dd" "$what" "$work"/fio-rfs-"$j"-*.json)
		n=$(fio_get "$dd" "$what" "$work"/fio-native-"$j"-*.json)
		fig "fio_$name" "$r" "$unit"
		fig "native_fio_$name" "$n" "$unit"
		fig "fio_${name}_ratio" "$(calc "$r / ($n > 0 ? $n : 1)" 3)"
	done
}
part "fio (reflinkfs vs native)" fio_part

# ------------------------------------------------------------------ small files
# Each phase on reflinkfs and then natively, back to back; the times go to
# $work/small-{rfs,native}-{create,stat,unlink}.
small_part() {
	local op r n
	mkdir "$mnt/small" "$native/small"
	for op in create stat unlink; do
		drop_caches
		"$rb" small "$op" "$mnt/small" "$nsmall" 1K >"$work/small-rfs-$op"
		sample_rss
		drop_caches
		"$rb" small "$op" "$native/small" "$nsmall" 1K >"$work/small-native-$op"
	done
	rmdir "$mnt/small" "$native/small"
	fig small_files "$nsmall" files
	for op in create stat unlink; do
		r=$(cat "$work/small-rfs-$op")
		n=$(cat "$work/small-native-$op")
		fig "small_$op" "$(calc "$nsmall / ($r / 1e9)" 0)" files/s
		fig "native_small_$op" "$(calc "$nsmall / ($n / 1e9)" 0)" files/s
		fig "small_${op}_ratio" "$(calc "$r / $n" 3)"
	done
}
part "small files ($nsmall)" small_part

# ------------------------------------------------------------------ end
sample_rss
if [ "$daemon_peak_kib" -gt 0 ]; then
	fig fs_daemon_peak_rss $(((daemon_peak_kib + 1023) / 1024)) MiB
	fig fs_daemon_anon_rss $(((daemon_anon_kib + 1023) / 1024)) MiB
else
	log "fs_daemon_peak_rss: no /proc/$daemon_pid/status (daemon gone?)"
	status=1
fi

log "reflinkfs umount $mnt"
if ! "$bin" umount "$mnt" >&2; then
	log "reflinkfs umount failed; trying fusermount3 -u"
	fusermount3 -u "$mnt" || true
	status=1
fi
set +e
wait "$daemon_pid"
rc=$?
set -e
daemon_pid=""
if [ "$rc" != 0 ]; then
	log "the daemon exited with status $rc; its log:"
	tail -n 20 "$work/daemon.log" >&2
	status=1
fi
log "reflinkfs fsck $pool"
if ! "$bin" fsck "$pool" >&2; then
	log "fsck of the pool after the run found problems"
	status=1
fi
exit $status
