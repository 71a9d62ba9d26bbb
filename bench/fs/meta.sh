#!/usr/bin/env bash
# Metadata benchmark of reflinkfs against native tmpfs and libfuse's
# passthrough_ll (the FUSE ceiling), all on tmpfs, so that the figures
# measure CPU work and round trips, not a disk.  On a generated tree shaped
# like /usr/share/doc (~6,300 entries, ~150 MB): cp -a into the filesystem,
# then warm find, ls -lR, stat of every entry and git status, cp -a of the
# tree inside the filesystem (reflinkfs clones every file) and rm -rf of
# the copy; with the FUSE requests reflinkfs received for each step.  See
# "Metadata" in bench/README.md.
#
#   bench/fs/meta.sh [--keep] [--reps N] [--cp-reps N]
#     --keep       keep the temporary directory
#     --reps N     timed repetitions of each warm step (median; default 3)
#     --cp-reps N  rounds of the cp -a in / cp -a inside / rm -rf steps
#                  (median; default 1).  Each round runs the three steps on
#                  every filesystem in turn, so that a change of the
#                  machine's load hits all of them alike; the order
#                  rotates by one per round.
#
# stdout: "name: value unit" lines; progress and request counts by opcode
# on stderr.
#
# Environment:
#   RFS_BIN             the reflinkfs binary (default build/reflinkfs)
#   RFS_META_BENCH_DIR  a tmpfs directory for the pool, the trees and the
#                       passthrough_ll source (default /dev/shm; ~2 GiB)
#   RFS_META_NDIRS      package directories of the tree (default 1200)
#   RFS_META_NO_PT=1    skip passthrough_ll
#   RFS_PASSTHROUGH_HP  libfuse's passthrough_hp binary (default: what
#                       bench/fs/passthrough_hp.sh builds or has built);
#                       skipped when there is none
#   RFS_BIN_BEFORE      a second reflinkfs binary (say, of the commit before
#                       a change), on a pool and mount of its own, in the
#                       same rounds: figures "meta_before_*", the ratio
#                       "meta_rfs_*_vs_before" (after / before, of the
#                       medians) and, for the cp -a and rm -rf steps,
#                       "meta_rfs_*_faster_rounds" (rounds in which
#                       reflinkfs was faster than before, of --cp-reps)
set -euo pipefail
export LC_ALL=C
exec 3>&1 1>&2

root=$(cd "$(dirname "$0")/../.." && pwd)
me=meta.sh
. "$root/bench/lib.bash"
keep=0
reps=3
cp_reps=1
bench_args 2,30 "keep reps= cp-reps=" "$@"
bench_bin
base=${RFS_META_BENCH_DIR:-/dev/shm}
ndirs=${RFS_META_NDIRS:-1200}

mnt="" fuse_mnts="" pids=""
bench_traps
bench_work "$base" meta
if [ "$(stat -f -c %T "$work")" != tmpfs ]; then
	log "note: $work is not on tmpfs ($(stat -f -c %T "$work")): the figures include its disk"
fi
mkdir "$work/native" "$work/mnt" "$work/pt" "$work/ptsrc" "$work/hp" "$work/hpsrc" "$work/bmnt"
bench_rfsbench
bench_private_bin

# passthrough_ll from Debian's libfuse3-dev examples (passthrough_hp.cc is
# not shipped there), with -o cache=always: 86400 s timeouts and
# keep_cache, its fastest setting.  It holds a descriptor per inode.
pt=""
if [ "${RFS_META_NO_PT:-0}" != 1 ]; then
	if bench_passthrough_ll "$work/pt-build.log"; then
		pt=$pt_ll
		ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
	else
		log "passthrough_ll not built (needs libfuse3-dev's examples; see $work/pt-build.log): skipped"
	fi
fi

# passthrough_hp (libfuse's C++ example; its default: 86400 s timeouts,
# keep_cache and cached listings).  One descriptor per inode too.
hp=""
if bench_passthrough_hp "$work/hp-build.log"; then
	hp=$pt_hp
	ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
else
	log "passthrough_hp not available (see $work/hp-build.log): skipped"
fi

log "generating the tree ($ndirs package directories)"
info=$("$rb" mktree "$work/src" "$ndirs")
log "tree: $info"
fig meta_tree_entries "$(echo "$info" | sed 's/.*entries=\([0-9]*\).*/\1/')" entries

# The binary before a change first, on a pool and mount of its own;
# then reflinkfs, whose daemon_pid the mount helpers keep.
rfs_mount_before 8G
"$bin" mkfs --size 8G "$work/pool.img" >&2
mnt=$work/mnt
rfs_mount "$work/pool.img"
ptmnt="" hpmnt=""
if [ -n "$pt" ]; then
	ptmnt=$work/pt
	pt_start ll "$pt" "$work/ptsrc" "$ptmnt" "$work/pt.log" ||
		{ log "passthrough_ll did not mount: skipped"; pt=""; ptmnt=""; }
fi
if [ -n "$hp" ]; then
	hpmnt=$work/hp
	pt_start hp "$hp" "$work/hpsrc" "$hpmnt" "$work/hp.log" ||
		{ log "passthrough_hp did not mount: skipped"; hp=""; hpmnt=""; }
fi

# The steps, each run in the filesystem's directory D.
step_cpin() { cp -a "$work/src" "$1/tree" 2>>"$work/cp.err" || true; }
step_find() { find "$1/tree" >/dev/null; }
step_lsR() { ls -lR "$1/tree" >/dev/null; }
step_statall() { find "$1/tree" -printf '%s %m %T@\n' >/dev/null; }
step_git() { git -C "$1/tree" status --porcelain >/dev/null; }
step_cpinside() { cp -a "$1/tree" "$1/copy" 2>>"$work/cp.err" || true; }
step_rmrf() { rm -rf "$1/copy"; }
git_setup() {
	git -C "$1/tree" init -q
	git -C "$1/tree" -c user.name=b -c user.email=b@b add -A
	git -C "$1/tree" -c user.name=b -c user.email=b@b commit -qm tree
}

# timed_step FS STEP DIR: one run; prints seconds (3 decimals).
timed_step() {
	local t0 t1
	t0=$(now_us)
	"step_$2" "$3"
	t1=$(now_us)
	calc "($t1 - $t0) / 1e6" 3
}

declare -A T   # T[fs,step] = seconds
declare -A R   # R[step] = reflinkfs requests
fss="native rfs"
[ -n "$bmnt" ] && fss="$fss before"
[ -n "$pt" ] && fss="$fss pt"
[ -n "$hp" ] && fss="$fss hp"
dir_of() { case "$1" in native) echo "$work/native" ;; rfs) echo "$mnt" ;; before) echo "$bmnt" ;; pt) echo "$ptmnt" ;; hp) echo "$hpmnt" ;; esac; }

# one_step STEP WARM: run STEP on every filesystem (warm: once untimed
# first, then the median of $reps), counting reflinkfs's requests of the
# timed runs (per run).
one_step() {
	local step=$1 warm=$2 fs d n times r
	for fs in $fss; do
		d=$(dir_of "$fs")
		n=1
		if [ "$warm" = 1 ]; then
			# Twice: the readdir that first fills a directory's cached
			# listing makes the kernel refetch the directory's atime at
			# its next stat, which the second run does.
			"step_$step" "$d"
			"step_$step" "$d"
			n=$reps
		fi
		[ "$fs" = rfs ] && "$rb" reqs "$mnt" >"$work/reqs.before"
		times=""
		for _ in $(seq "$n"); do times="$times $(timed_step "$fs" "$step" "$d")"; done
		if [ "$fs" = rfs ]; then
			r=$("$rb" reqs "$mnt" "$work/reqs.before")
			log "reflinkfs $step: $n run(s): $r"
			R[$step]=$(echo "$r" | sed 's/^total=\([0-9]*\).*/\1/')
			R[$step]=$(( (R[$step] + n / 2) / n ))
		fi
		T[$fs,$step]=$(echo $times | median_low)
		log "$fs $step:$times s"
	done
}

# cp_rounds: $cp_reps rounds of cp -a in, cp -a inside and rm -rf of the
# copy, each round on every filesystem in turn, the order rotated by one
# per round (one run of cp -a on this kind of VM can take 1.5-2x another
# of the same binary); T gets the medians, R reflinkfs's requests per run
# (their median), FR the rounds in which reflinkfs beat the binary before.
declare -A CT CR FR
cp_rounds() {
	local i fs d s r a b
	for i in $(seq "$cp_reps"); do
		for fs in $(rotate_list "$i" $fss); do
			d=$(dir_of "$fs")
			[ "$i" = 1 ] || rm -rf "$d/tree"
			for s in cpin cpinside rmrf; do
				[ "$fs" = rfs ] && "$rb" reqs "$mnt" >"$work/reqs.before"
				CT[$fs,$s]="${CT[$fs,$s]:-} $(timed_step "$fs" "$s" "$d")"
				if [ "$fs" = rfs ]; then
					r=$("$rb" reqs "$mnt" "$work/reqs.before")
					log "reflinkfs $s, round $i: $r"
					CR[$s]="${CR[$s]:-} $(echo "$r" | sed 's/^total=\([0-9]*\).*/\1/')"
				fi
			done
		done
		if [ -n "$bmnt" ]; then
			for s in cpin cpinside rmrf; do
				a=${CT[rfs,$s]##* }
				b=${CT[before,$s]##* }
				[ "$(calc "$a < $b" 0)" = 1 ] && FR[$s]=$((${FR[$s]:-0} + 1))
			done
		fi
	done
	for fs in $fss; do
		for s in cpin cpinside rmrf; do
			T[$fs,$s]=$(echo ${CT[$fs,$s]} | median_low)
			log "$fs $s:${CT[$fs,$s]} s"
		done
	done
	for s in cpin cpinside rmrf; do R[$s]=$(echo ${CR[$s]} | median_low); done
}

# kept_times FS: 1 when cp -a into FS kept a file's modification time (a
# filesystem that refuses to set times does less work per file: libfuse
# 3.14's passthrough_hp answers every utimensat with EOPNOTSUPP).
kept_times() {
	local f
	f=$(cd "$work/src" && find . -type f | head -1)
	[ "$(stat -c %Y "$work/src/$f")" = "$(stat -c %Y "$(dir_of "$1")/tree/$f")" ] && echo 1 || echo 0
}

log "cp -a of the tree into each filesystem, then inside it, then rm -rf of the copy ($cp_reps round(s))"
cp_rounds
for fs in $fss; do
	k=$(kept_times "$fs")
	fig "meta_${fs}_cp_kept_times" "$k"
	[ "$k" = 1 ] || log "note: cp -a into $fs did not keep modification times (see $work/cp.err): that filesystem skipped that work"
done
for fs in $fss; do git_setup "$(dir_of "$fs")"; done
for s in find lsR statall git; do one_step "$s" 1; done

for s in cpin find lsR statall git cpinside rmrf; do
	fig "meta_native_$s" "${T[native,$s]}" s
	fig "meta_rfs_$s" "${T[rfs,$s]}" s
	fig "meta_rfs_${s}_ratio" "$(calc "${T[rfs,$s]} / (${T[native,$s]} > 0 ? ${T[native,$s]} : 0.001)" 2)"
	fig "meta_rfs_${s}_requests" "${R[$s]}"
	if [ -n "$pt" ]; then
		fig "meta_pt_$s" "${T[pt,$s]}" s
	fi
	if [ -n "$hp" ]; then
		fig "meta_hp_$s" "${T[hp,$s]}" s
		fig "meta_rfs_${s}_vs_hp" "$(calc "${T[rfs,$s]} / (${T[hp,$s]} > 0 ? ${T[hp,$s]} : 0.001)" 2)"
	fi
	if [ -n "$bmnt" ]; then
		fig "meta_before_$s" "${T[before,$s]}" s
		fig "meta_rfs_${s}_vs_before" "$(calc "${T[rfs,$s]} / (${T[before,$s]} > 0 ? ${T[before,$s]} : 0.001)" 3)"
		case $s in cpin | cpinside | rmrf) fig "meta_rfs_${s}_faster_rounds" "${FR[$s]:-0}" "of $cp_reps" ;; esac
	fi
done
fig meta_rfs_cpinside_vs_cpin "$(calc "${T[rfs,cpinside]} / ${T[rfs,cpin]}" 2)"
rfs_umount || { log "reflinkfs daemon exited with an error"; exit 1; }
"$bin" fsck "$work/pool.img" >&2
if [ -n "$bmnt" ]; then
	mnt=$bmnt bin=$work/bin/reflinkfs-before daemon_pid=$bpid rfs_umount ||
		{ log "the daemon before exited with an error"; exit 1; }
fi
