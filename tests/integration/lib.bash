# Shared helpers of the integration scripts (sourced, not run).
#
#   rfs_setup [SIZE [MOUNT ARGS...]]  scratch dir, pool of SIZE (default 2G),
#                        mounted at $MNT
#   rfs_pool_setup [SIZE]  the same without the mount (a test whose own
#                        driver mounts, like the model tests)
#   rfs_seed STEPS       SEED ($RFS_SEED, else random) and STEPS ($RFS_STEPS,
#                        else STEPS) of a randomized test, printed with
#                        the command that replays the run
#   rfs_mount / rfs_umount / rfs_kill9
#   rfs_wait_reclaim     wait until deleted files' blocks are all freed
#   check DESC CMD...    run CMD, count it as passed or failed
#   rfs_finish           unmount, print "N passed, N failed", exit status
#
# The daemon runs in the foreground (-f) as a background job of this
# script, so its PID is known and only that process is ever killed.

set -u
RFS_BIN=${RFS_BIN:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/build/reflinkfs}
PASSED=0
FAILED=0
DAEMON_PID=
SCRATCH=
MNT=
POOL=

log() { printf '%s\n' "$*"; }

check() {
	local desc=$1
	shift
	if "$@" >"$SCRATCH/check.out" 2>&1; then
		PASSED=$((PASSED + 1))
		log "ok   $desc"
	else
		FAILED=$((FAILED + 1))
		log "FAIL $desc"
		sed 's/^/     | /' "$SCRATCH/check.out" | head -20
	fi
}

# check_fail DESC CMD...: CMD must fail.
check_fail() {
	local desc=$1
	shift
	if "$@" >"$SCRATCH/check.out" 2>&1; then
		FAILED=$((FAILED + 1))
		log "FAIL $desc (succeeded, should have failed)"
	else
		PASSED=$((PASSED + 1))
		log "ok   $desc"
	fi
}

rfs_cleanup() {
	# /proc/mounts, not mountpoint(1): the latter fails on a mount whose
	# daemon died ("transport endpoint is not connected").
	if [ -n "$MNT" ] && grep -q " $MNT fuse" /proc/mounts; then
		fusermount3 -u "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null || true
	fi
	if [ -n "$DAEMON_PID" ] && kill -0 "$DAEMON_PID" 2>/dev/null; then
		local i
		for i in $(seq 50); do
			kill -0 "$DAEMON_PID" 2>/dev/null || break
			sleep 0.1
		done
		kill -9 "$DAEMON_PID" 2>/dev/null
		wait "$DAEMON_PID" 2>/dev/null
	fi
	DAEMON_PID=
	# What the test started and left behind (a watch's --exec command
	# waiting for a file, a writer of the mount) names the scratch
	# directory, which is this test's alone: ended here, it cannot hold
	# the runner's output pipe open after the test (a run of make test
	# once waited on such a loop for good).
	if [ -n "$SCRATCH" ]; then
		pkill -f -- "$SCRATCH/" 2>/dev/null || true
	fi
	if [ -n "$SCRATCH" ] && [ -z "${RFS_KEEP:-}" ] && [ -z "${RFS_TEST_DIR:-}" ]; then
		rm -rf "$SCRATCH"
	fi
}

MOUNT_ARGS=()
rfs_setup() {
	local size=${1:-2G}
	shift || true
	MOUNT_ARGS=("$@")
	rfs_pool_setup "$size"
	rfs_mount
}

rfs_pool_setup() {
	local size=${1:-2G}
	if [ ! -x "$RFS_BIN" ]; then
		echo "no binary at $RFS_BIN (run make)"
		echo "0 passed, 1 failed"
		exit 1
	fi
	if [ ! -e /dev/fuse ]; then
		echo "no /dev/fuse: skipping"
		exit 77
	fi
	if [ -n "${RFS_TEST_DIR:-}" ]; then
		SCRATCH=$(mktemp -d "$RFS_TEST_DIR/itXXXXXX")
	else
		SCRATCH=$(mktemp -d /tmp/rfs-itXXXXXX)
	fi
	trap rfs_cleanup EXIT
	trap 'exit 130' INT TERM
	POOL=$SCRATCH/pool
	MNT=$SCRATCH/mnt
	mkdir -p "$MNT"
	"$RFS_BIN" mkfs --size "$size" "$POOL" >/dev/null || { echo "mkfs failed"; echo "0 passed, 1 failed"; exit 1; }
}

rfs_seed() {
	SEED=${RFS_SEED:-$(( (RANDOM << 15) | RANDOM ))}
	STEPS=${RFS_STEPS:-$1}
	echo "seed=$SEED steps=$STEPS (replay: RFS_SEED=$SEED RFS_STEPS=$STEPS bash $0)"
}

rfs_mount() {
	"$RFS_BIN" mount -f ${MOUNT_ARGS[@]+"${MOUNT_ARGS[@]}"} "$@" "$POOL" "$MNT" 2>>"$SCRATCH/daemon.log" &
	DAEMON_PID=$!
	local i
	for i in $(seq 100); do
		if mountpoint -q "$MNT"; then
			return 0
		fi
		if ! kill -0 "$DAEMON_PID" 2>/dev/null; then
			break
		fi
		sleep 0.05
	done
	echo "mount failed:"
	cat "$SCRATCH/daemon.log"
	return 1
}

# Clean unmount: wait for the daemon's final commit.
rfs_umount() {
	fusermount3 -u "$MNT" || return 1
	if [ -n "$DAEMON_PID" ]; then
		wait "$DAEMON_PID"
		local rc=$?
		DAEMON_PID=
		return $rc
	fi
}

# Simulated crash: SIGKILL the daemon, then clean up the dead mount.
rfs_kill9() {
	kill -9 "$DAEMON_PID"
	wait "$DAEMON_PID" 2>/dev/null
	DAEMON_PID=
	fusermount3 -u "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null
	return 0
}

# Wait (up to 60 s) until the daemon freed every deleted file's blocks:
# `reflinkfs stat` of the mount says "reclaiming: nothing".
# wait_until SECS CMD...: run CMD every 0.1 s until it succeeds; 1 if it
# never did within SECS seconds (a bound for liveness, not a timing check).
wait_until() {
	local secs=$1 i
	shift
	for i in $(seq $((secs * 10))); do
		"$@" && return 0
		sleep 0.1
	done
	return 1
}

# held_watch_start DIR: a blocking watch on DIR (600 s timeout) whose
# subscriber never acknowledges: each event's --exec command touches
# $SCRATCH/in_exec and waits until $SCRATCH/go exists (or the scratch
# directory goes).  Its output: $SCRATCH/wout, $SCRATCH/werr; pid WPID.
# held_watch_release: let the subscriber go and end the watch (safe to
# call again, e.g. from an EXIT trap).
WPID=
held_watch_start() {
	rm -f "$SCRATCH/go" "$SCRATCH/in_exec"
	"$RFS_BIN" watch --blocking --timeout 600000 --exec \
		"touch '$SCRATCH/in_exec'; while [ ! -e '$SCRATCH/go' ] && [ -d '$SCRATCH' ]; do sleep 0.05; done" \
		"$1" >"$SCRATCH/wout" 2>"$SCRATCH/werr" &
	WPID=$!
}
held_watch_release() {
	touch "$SCRATCH/go"
	if [ -n "$WPID" ]; then
		kill "$WPID" 2>/dev/null
		wait "$WPID" 2>/dev/null
		WPID=
	fi
}

# fuse_conn_of DIR: the FUSE connection number of the mount on DIR.
# abort_conn CONN: abort that connection through fusectl, for a hung
# daemon (a worker waiting in the kernel: no signal ends it).
fuse_conn_of() {
	awk -v m="$1" '$5 == m { split($3, d, ":"); print d[2] }' /proc/self/mountinfo
}
abort_conn() {
	local ctl=/sys/fs/fuse/connections mounted=0
	if [ ! -e "$ctl/$1/abort" ] && mount -t fusectl none "$ctl" 2>/dev/null; then
		mounted=1
	fi
	[ -e "$ctl/$1/abort" ] && echo 1 >"$ctl/$1/abort"
	[ "$mounted" = 1 ] && umount "$ctl"
	return 0
}

rfs_wait_reclaim() {
	local i
	for i in $(seq 600); do
		"$RFS_BIN" stat "$MNT" 2>/dev/null | grep -q 'reclaiming: nothing' && return 0
		sleep 0.1
	done
	"$RFS_BIN" stat "$MNT"
	return 1
}

rfs_fsck() {
	"$RFS_BIN" fsck "$POOL"
}

rfs_finish() {
	if [ -n "$DAEMON_PID" ]; then
		rfs_umount || FAILED=$((FAILED + 1))
	fi
	echo "$PASSED passed, $FAILED failed"
	[ "$FAILED" -eq 0 ]
}

# ring_threads: prints the number of io_uring ring threads the daemon
# ($DAEMON_PID) has now, all queues together: its threads whose name
# (comm) starts with rfs-ring (src/fuse/uring.c names them
# rfs-ring<queue>).  0 when the daemon serves /dev/fuse by read(2) only
# or is gone.
ring_threads() {
	local t n=0
	for t in /proc/"$DAEMON_PID"/task/*; do
		case "$(cat "$t/comm" 2>/dev/null)" in rfs-ring*) n=$((n + 1)) ;; esac
	done
	echo "$n"
}

# rfs_uring_param_lock: hold the machine-wide lock on
# /sys/module/fuse/parameters/enable_uring ($P) until this script exits.
# Other runs of the suite (helpers run make test at once) and the benches
# (bench/lib.bash) change the parameter too: each holds this lock from
# reading the old value until it is put back (the EXIT trap runs before
# the lock's descriptor closes), so overlapping runs take turns instead
# of putting back each other's Y.  Exits 1 when another run held it for
# 30 minutes (a test left hanging).
rfs_uring_param_lock() {
	local lock=/run/lock/reflinkfs-enable_uring.lock
	[ -d /run/lock ] || lock=/tmp/reflinkfs-enable_uring.lock
	exec {RFS_URING_LOCKFD}>>"$lock"
	if ! flock -w 1800 "$RFS_URING_LOCKFD"; then
		echo "another run has held $lock for 30 minutes (a test left hanging?): not changing $P"
		echo "0 passed, 1 failed"
		exit 1
	fi
}
