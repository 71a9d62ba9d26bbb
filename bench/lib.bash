# bench/lib.bash: shell functions shared by the benchmark scripts.
# shellcheck shell=bash disable=SC2034,SC2154 # sourced: sets and reads its caller's variables
#
# A script sources it after its own set-up, with `me` set to its name for
# messages:
#
#   set -euo pipefail
#   export LC_ALL=C
#   exec 3>&1 1>&2        # figures on fd 3 (stdout), the rest on stderr
#   root=$(cd "$(dirname "$0")/../.." && pwd)
#   me=fs/run.sh
#   . "$root/bench/lib.bash"
#
# Arguments and set-up
#   bench_args HELP OPTS ARGS...
#       Parse ARGS.  OPTS names the options the script takes ("quick keep
#       reps="): --NAME sets NAME=1, or with "NAME=" in OPTS, --NAME V sets
#       NAME=V (a '-' in NAME is '_' in the variable: --cp-reps sets
#       cp_reps).  -h/--help prints lines HELP of the script (a sed range,
#       "2,23") on fd 3 and exits 0; anything else exits 2.
#   bench_bin
#       bin: $RFS_BIN, else build/reflinkfs, made absolute; exit 1 when it
#       is not built.
#   bench_work DIR NAME
#       work: a new temporary directory DIR/rfs-NAME.XXXXXX, removed at
#       exit unless keep=1 (see bench_cleanup).
#   bench_rfsbench
#       rb: bench/fs/rfsbench.c built into $work/bin.
#   bench_private_bin
#       Run a copy of $bin from $work/bin, so that a rebuild of
#       build/reflinkfs during the run cannot mix two versions.
#
# Figures and time
#   log MSG...              "ME [Ns]: MSG" on stderr
#   fig NAME VALUE [UNIT]   "NAME: VALUE UNIT" on fd 3, echoed on stderr
#   calc EXPR [DECIMALS]    EXPR worked out by awk (3 decimals by default)
#   now_us                  the wall clock in microseconds
#   timed VAR CMD...        run CMD; its wall time in ms (2 decimals) in VAR
#   median_low              the median of the numbers on stdin (separated
#                           by blanks or lines; of an even count the lower)
#   rotate_list N WORDS...  WORDS rotated left by N - 1 (round N of an
#                           alternated comparison: each filesystem takes
#                           every place in turn, so a drifting load does
#                           not favour one of them)
#
# Mounts
#   is_mounted DIR          from the mount table, not stat(), which fails
#                           with ENOTCONN on the mountpoint of a FUSE
#                           daemon that died
#   mount_wait DIR PID      wait (30 s at most) for the mount on DIR of
#                           daemon PID; 1 when it does not appear or PID
#                           exits first
#   rfs_mount POOL [MOUNT ARGS...]
#       Mount POOL on $mnt with `$bin mount -f` in the background
#       (daemon_pid; its output appended to $daemon_log, by default
#       $work/daemon.log) and wait for the mount; exit 1 with the daemon's
#       log when it does not come.  $RFS_MOUNT_OPTS, when set, is passed
#       as one more -o (RFS_MOUNT_OPTS=threads=4 bench/fs/meta.sh).
#   rfs_umount
#       `$bin umount $mnt` and wait for the daemon; its exit status.
#   rfs_mount_before SIZE
#       When $RFS_BIN_BEFORE is set (a second reflinkfs binary, say of the
#       commit before a change): a copy of it mounts a fresh pool of SIZE
#       on $work/bmnt (bmnt, its daemon bpid; added to fuse_mnts and pids
#       so that the exit unmounts it).  Else bmnt and bpid are empty.
#
# FUSE ceilings: libfuse's example daemons, on tmpfs like the pool
#   bench_passthrough_hp LOG
#       pt_hp: $RFS_PASSTHROUGH_HP, else what bench/fs/passthrough_hp.sh
#       builds (or built before); 1 when there is none, with the reason
#       in LOG.
#   bench_passthrough_ll LOG
#       pt_ll: passthrough_ll of libfuse3-dev's examples built into
#       $work/bin; 1 when it cannot be, with the reason in LOG.
#   pt_start KIND BIN SRC DIR LOG
#       Run passthrough daemon BIN (KIND hp: passthrough_hp, with its
#       defaults; ll: passthrough_ll with -o cache=always, its fastest
#       setting) over SRC on DIR in the background (pt_pid, also added to
#       pids; DIR to fuse_mnts; its stderr in LOG) and wait for the mount;
#       1 when it does not come.
#   cpu_ticks PID           the CPU time (user + system, all threads) of
#                           process PID so far, in clock ticks
#
# Parts and loop filesystems
#   part NAME CMD...        run one part of a bench in a subshell with
#                           errexit on: a failure is logged and sets
#                           status=1 without stopping the other parts;
#                           then $part_after (a command), when set
#   img_setup TYPE SIZE [MKFS ARGS...]
#       A sparse image file of SIZE in $work on a loop device (loopdev),
#       with a TYPE (xfs, btrfs) filesystem mounted on $work/TYPE
#       (img_mnt).  Needs root.
#   img_teardown TYPE       unmount it, free the loop device, remove the image
#
# Cleanup: bench_traps sets bench_cleanup as the EXIT trap (INT and TERM
# exit 130 and 143 through it).  It keeps the exit status and undoes what
# these variables name (empty or unset: nothing): img_mnt and loopdev (a
# loop filesystem), mnt (the reflinkfs mount), fuse_mnts (other FUSE
# mounts, a list), kill_pids (processes to kill first, a list: readers
# and the like), daemon_pid and pids (daemons to wait for after the
# unmount, 10 s at most before they are killed), work (removed unless
# keep=1).

log() { echo "$me [${SECONDS}s]: $*" >&2; }
fig() {
	printf '%s: %s%s\n' "$1" "$2" "${3:+ $3}" >&3
	printf '%s: >> %s: %s%s\n' "$me" "$1" "$2" "${3:+ $3}" >&2
}
calc() { awk "BEGIN { printf \"%.${2:-3}f\", $1 }"; }
now_us() { local t=$EPOCHREALTIME; echo "${t//[.,]/}"; }
timed() {
	local __var=$1 __t0 __t1
	shift
	__t0=${EPOCHREALTIME//[.,]/} # no $(...): a fork costs milliseconds here
	"$@"
	__t1=${EPOCHREALTIME//[.,]/}
	printf -v "$__var" '%d.%02d' $(((__t1 - __t0) / 1000)) $((((__t1 - __t0) % 1000) / 10))
}
rotate_list() {
	local n=$1 i
	shift
	local -a a=("$@")
	for ((i = 0; i < ${#a[@]}; i++)); do
		printf '%s%s' "$([ "$i" = 0 ] || echo ' ')" "${a[(i + n - 1) % ${#a[@]}]}"
	done
	echo
}
median_low() { tr ' ' '\n' | awk NF | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
is_mounted() { awk -v m="$1" '$5 == m { f = 1 } END { exit !f }' /proc/self/mountinfo; }

bench_args() {
	local help=$1 opts=" $2 " o
	shift 2
	while [ $# -gt 0 ]; do
		o=${1#--}
		if [ "$1" = -h ] || [ "$1" = --help ]; then
			sed -n "${help}p" "$0" >&3
			exit 0
		elif [ "$o" != "$1" ] && [[ "$opts" == *" $o= "* ]] && [ $# -ge 2 ]; then
			printf -v "${o//-/_}" '%s' "$2"
			shift
		elif [ "$o" != "$1" ] && [[ "$opts" == *" $o "* ]]; then
			printf -v "${o//-/_}" 1
		else
			echo "$me: unknown argument '$1' (see $0 --help)" >&2
			exit 2
		fi
		shift
	done
}
bench_bin() {
	bin=${RFS_BIN:-$root/build/reflinkfs}
	case "$bin" in */*) [ "${bin#/}" != "$bin" ] || bin=$PWD/$bin ;; esac
	[ -x "$bin" ] || { echo "$me: $bin not found (build it with 'make')" >&2; exit 1; }
}
bench_work() {
	work=$(mktemp -d "$1/rfs-$2.XXXXXX")
	mkdir -p "$work/bin"
}
bench_rfsbench() {
	"${CC:-cc}" -O2 -Wall -o "$work/bin/rfsbench" "$root/bench/fs/rfsbench.c"
	rb=$work/bin/rfsbench
}
bench_private_bin() {
	cp "$bin" "$work/bin/reflinkfs"
	bin=$work/bin/reflinkfs
}

mount_wait() {
	local i
	for i in $(seq 600); do
		is_mounted "$1" && return 0
		kill -0 "$2" 2>/dev/null || break
		sleep 0.05
	done
	is_mounted "$1"
}
rfs_mount() {
	local pool=$1 dlog=${daemon_log:-$work/daemon.log}
	shift
	"$bin" mount -f ${RFS_MOUNT_OPTS:+-o "$RFS_MOUNT_OPTS"} "$@" "$pool" "$mnt" >>"$dlog" 2>&1 &
	daemon_pid=$!
	mount_wait "$mnt" "$daemon_pid" && return 0
	log "the mount on $mnt did not appear; the daemon's log ($dlog):"
	cat "$dlog" >&2
	exit 1
}
rfs_umount() {
	local rc=0
	"$bin" umount "$mnt" >&2 || rc=$?
	wait "$daemon_pid" || rc=$?
	daemon_pid=""
	return "$rc"
}

rfs_mount_before() {
	bmnt="" bpid=""
	[ -n "${RFS_BIN_BEFORE:-}" ] || return 0
	mkdir -p "$work/bmnt"
	cp "$RFS_BIN_BEFORE" "$work/bin/reflinkfs-before"
	"$work/bin/reflinkfs-before" mkfs --size "$1" "$work/bpool.img" >&2
	bmnt=$work/bmnt
	fuse_mnts="${fuse_mnts:-} $bmnt"
	mnt=$bmnt bin=$work/bin/reflinkfs-before daemon_log=$work/bdaemon.log rfs_mount "$work/bpool.img"
	bpid=$daemon_pid daemon_pid=""
	pids="${pids:-} $bpid"
	log "reflinkfs (before: $RFS_BIN_BEFORE) daemon pid $bpid"
}

bench_passthrough_hp() {
	pt_hp=${RFS_PASSTHROUGH_HP:-$(bash "$root/bench/fs/passthrough_hp.sh" 2>>"$1" || true)}
	[ -n "$pt_hp" ] && [ -x "$pt_hp" ] && return 0
	[ -z "$pt_hp" ] || echo "$me: $pt_hp is not an executable" >>"$1"
	pt_hp=""
	return 1
}
bench_passthrough_ll() {
	local ex=/usr/share/doc/libfuse3-dev/examples
	pt_ll=""
	[ -r "$ex/passthrough_ll.c" ] || { echo "$me: no $ex/passthrough_ll.c (install libfuse3-dev)" >>"$1"; return 1; }
	# shellcheck disable=SC2046 # pkg-config's flags are words
	"${CC:-cc}" -O2 -D_GNU_SOURCE -I"$ex" -o "$work/bin/passthrough_ll" "$ex/passthrough_ll.c" \
		$(pkg-config --cflags --libs fuse3) 2>>"$1" || return 1
	pt_ll=$work/bin/passthrough_ll
}
pt_start() {
	local kind=$1 b=$2 src=$3 dir=$4 plog=$5
	if [ "$kind" = hp ]; then
		"$b" --foreground "$src" "$dir" 2>"$plog" &
	else
		"$b" -f -o source="$src",cache=always "$dir" 2>"$plog" &
	fi
	pt_pid=$!
	pids="${pids:-} $pt_pid"
	fuse_mnts="${fuse_mnts:-} $dir"
	mount_wait "$dir" "$pt_pid"
}
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

part() {
	local name=$1 rc
	shift
	log "---- $name"
	set +e
	(
		set -e
		"$@"
	)
	rc=$?
	set -e
	if [ -n "${part_after:-}" ]; then "$part_after"; fi
	if [ "$rc" != 0 ]; then
		log "PART FAILED: $name (exit $rc); its remaining figures are missing"
		status=1
	fi
}
img_setup() {
	local type=$1 img=$work/$1.img
	truncate -s "$2" "$img"
	shift 2
	loopdev=$(losetup -f --show "$img")
	log "$type on $loopdev -> $img"
	"mkfs.$type" -q -f "$@" "$loopdev" >&2
	mkdir -p "$work/$type"
	mount "$loopdev" "$work/$type"
	img_mnt=$work/$type
}
img_teardown() {
	log "$1 teardown (umount, losetup -d, rm of the image)"
	if [ -n "${img_mnt:-}" ]; then
		umount "$img_mnt"
		img_mnt=""
	fi
	if [ -n "${loopdev:-}" ]; then
		losetup -d "$loopdev"
		loopdev=""
	fi
	rm -f "$work/$1.img"
	sync
	log "$1 teardown done"
}

bench_cleanup() {
	local rc=$? m p i
	set +e
	for p in ${kill_pids:-}; do
		kill "$p" 2>/dev/null
	done
	if [ -n "${img_mnt:-}" ] && is_mounted "$img_mnt"; then
		umount "$img_mnt" || umount -l "$img_mnt"
	fi
	[ -n "${loopdev:-}" ] && losetup -d "$loopdev"
	if [ -n "${mnt:-}" ] && is_mounted "$mnt"; then
		"$bin" umount "$mnt" 2>/dev/null || fusermount3 -u "$mnt" ||
			{ sleep 1; fusermount3 -u "$mnt"; } || fusermount3 -uz "$mnt"
	fi
	for m in ${fuse_mnts:-}; do
		is_mounted "$m" && { fusermount3 -u "$m" || fusermount3 -uz "$m"; }
	done
	for p in ${daemon_pid:-} ${pids:-}; do
		for i in $(seq 50); do
			kill -0 "$p" 2>/dev/null || break
			sleep 0.2
		done
		if kill -0 "$p" 2>/dev/null; then
			log "process $p still running after unmount: killing it"
			kill "$p"
		fi
		wait "$p" 2>/dev/null
	done
	if [ -n "${work:-}" ]; then
		if [ "${keep:-0}" = 1 ]; then log "kept $work"; else rm -rf --one-file-system "$work"; fi
	fi
	[ -n "${uring_old:-}" ] && echo "$uring_old" >"$uring_param"
	exit "$rc"
}
bench_traps() {
	trap bench_cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	bench_uring
}

# FUSE over io_uring (src/fuse/uring.c): reflinkfs uses it when the
# kernel's enable_uring is Y (off by default in the kernel).  The
# benchmarks measure the machine as it is unless RFS_BENCH_URING=1, which
# turns it on for the run (and back at exit); RFS_MOUNT_OPTS=nouring then
# measures the /dev/fuse transport of the same binary.  Other FUSE
# daemons (passthrough_hp of libfuse 3.14) do not use it either way.
uring_param=/sys/module/fuse/parameters/enable_uring
# The tests that change enable_uring (tests/integration/test_uring*.sh)
# hold this machine-wide lock while they do.  A bench holds it too, for
# its whole run: exclusive when it turns io_uring on (the EXIT trap puts
# the old value back before the descriptor closes), shared otherwise, so
# that no test flips the transport in the middle of a measurement.
uring_lock=/run/lock/reflinkfs-enable_uring.lock
[ -d /run/lock ] || uring_lock=/tmp/reflinkfs-enable_uring.lock
bench_uring() {
	uring_old=
	# A bench run by another (bench/fs/run.sh) shares its parent's hold.
	if [ -e "$uring_param" ] && [ -z "${RFS_BENCH_URING_LOCKED:-}" ]; then
		local mode=-s
		[ "${RFS_BENCH_URING:-0}" = 1 ] && [ -w "$uring_param" ] && mode=-x
		exec {uring_lockfd}>>"$uring_lock"
		if ! flock -n "$mode" "$uring_lockfd"; then
			log "waiting for $uring_lock (a test is changing $uring_param)"
			flock -w 1800 "$mode" "$uring_lockfd" ||
				{ echo "$me: $uring_lock held for 30 minutes: not measuring" >&2; exit 1; }
		fi
		export RFS_BENCH_URING_LOCKED=1
	fi
	if [ "${RFS_BENCH_URING:-0}" != 1 ] || [ ! -w "$uring_param" ]; then
		log "FUSE transport: $([ "$(cat "$uring_param" 2>/dev/null)" = Y ] && echo "io_uring (enable_uring is Y)" || echo "/dev/fuse (RFS_BENCH_URING=1 for io_uring)")"
		return 0
	fi
	local cur
	cur=$(cat "$uring_param")
	if [ "$cur" != Y ]; then
		uring_old=$cur
		echo Y >"$uring_param"
	fi
	log "FUSE transport: io_uring where the daemon supports it ($uring_param Y for this run)"
}
