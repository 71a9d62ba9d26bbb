#!/usr/bin/env bash
# -o threads=N sets the daemon's standing FUSE workers (src/fuse/workers.c;
# default rfs_fuse_default_threads, checked below): with 2, eight readers at once with O_DIRECT
# (each READ a request of its own) still get their data, and the daemon
# never runs more than 2 workers (temporary ones start only for requests
# that wait for something outside the daemon: test_watch_workers.sh).  Values out of range are refused
# with a message naming the option, and nothing is mounted.
source "$(dirname "$0")/lib.bash"
rfs_setup 1G -o threads=2

# The daemon's threads, each named for what it does (ps -L, top -H): the
# two workers and the fixed ones.  Some start just after the mount
# answers: wait for them.
named() { grep -lx "$1" /proc/"$DAEMON_PID"/task/*/comm 2>/dev/null | wc -l; }
for _ in $(seq 100); do
	[ "$(named rfs-fuse)" -ge 2 ] && [ "$(named rfs-status)" -ge 1 ] && break
	sleep 0.05
done
check "2 worker threads named rfs-fuse at rest ($(named rfs-fuse))" test "$(named rfs-fuse)" = 2
for t in rfs-commit rfs-reclaim rfs-status; do
	check "one thread named $t ($(named $t))" test "$(named $t)" = 1
done
for i in $(seq 8); do
	head -c 8388608 /dev/urandom >"$SCRATCH/src$i"
	cp "$SCRATCH/src$i" "$MNT/f$i"
done
"$RFS_BIN" sync "$MNT"
pids=()
for i in $(seq 8); do
	dd if="$MNT/f$i" of="$SCRATCH/out$i" bs=4k iflag=direct status=none &
	pids+=($!)
done
most=0
while kill -0 "${pids[@]}" 2>/dev/null; do
	n=$(named rfs-fuse)
	[ "$n" -gt "$most" ] && most=$n
	sleep 0.01
done
ok=1
for p in "${pids[@]}"; do wait "$p" || ok=0; done
check "eight O_DIRECT readers at once finish" test "$ok" = 1
same=1
for i in $(seq 8); do cmp -s "$SCRATCH/src$i" "$SCRATCH/out$i" || same=0; done
check "each reader got its file's bytes" test "$same" = 1
check "at most 2 workers while they ran ($most at most)" test "$most" -le 2 -a "$most" -ge 1
check "unmount" rfs_umount

# Without threads=: one per CPU (at least 2, at most 16) for a pool
# file in memory (tmpfs), 16 for a pool elsewhere.  Counted as the
# daemon's threads named rfs-fuse at rest (all are started before the
# loop serves the first request, and each names itself as it begins:
# counted until two readings 0.1 s apart agree; threads=16 checks the
# count itself).
rest_threads() { # POOL [MOUNT ARGS]: the daemon's workers at rest
	local pool=$1 d=$SCRATCH/m3 p n
	shift
	mkdir -p "$d"
	# -o nouring: the rule is for the /dev/fuse workers (with io_uring
	# as many ring threads come on top: test_uring.sh).
	"$RFS_BIN" mount -f -o nouring "$@" "$pool" "$d" 2>>"$SCRATCH/daemon.log" &
	p=$!
	for _ in $(seq 100); do mountpoint -q "$d" && break; sleep 0.05; done
	stat "$d" >/dev/null
	local was=-1
	for _ in $(seq 20); do
		n=$(grep -lx rfs-fuse /proc/"$p"/task/*/comm 2>/dev/null | wc -l)
		[ "$n" = "$was" ] && break
		was=$n
		sleep 0.1
	done
	fusermount3 -u "$d"
	wait "$p"
	echo "$n"
}
expect_default() { # POOL: the worker count the rule gives
	case $(stat -f -c %T "$(dirname "$1")") in
	tmpfs | ramfs)
		local n=$(nproc)
		[ "$n" -lt 2 ] && n=2
		[ "$n" -gt 16 ] && n=16
		echo "$n" ;;
	*) echo 16 ;;
	esac
}
pools=("$POOL")
SHM=
if [ "$(stat -f -c %T /dev/shm 2>/dev/null)" = tmpfs ]; then
	SHM=$(mktemp -d /dev/shm/rfs-threads.XXXXXX)
	trap 'rm -rf "$SHM"; rfs_cleanup' EXIT
	"$RFS_BIN" mkfs --size 64M "$SHM/pool" >/dev/null
	pools+=("$SHM/pool")
fi
for pool in "${pools[@]}"; do
	want=$(expect_default "$pool")
	dflt=$(rest_threads "$pool")
	full=$(rest_threads "$pool" -o threads=16)
	check "default workers for a pool on $(stat -f -c %T "$(dirname "$pool")"): $want (threads $dflt, with threads=16: $full)" \
		test "$dflt" = "$want" -a "$full" = 16
done
[ -n "$SHM" ] && rm -rf "$SHM"

for bad in 1 257 abc ""; do
	mkdir -p "$SCRATCH/m2"
	"$RFS_BIN" mount -f -o "threads=$bad" "$POOL" "$SCRATCH/m2" >"$SCRATCH/bad.out" 2>&1 &
	p=$!
	ended=0
	for _ in $(seq 50); do
		kill -0 "$p" 2>/dev/null || { ended=1; break; }
		sleep 0.1
	done
	if [ "$ended" = 0 ]; then
		fusermount3 -u "$SCRATCH/m2" 2>/dev/null
		kill "$p" 2>/dev/null
	fi
	wait "$p"
	rc=$?
	check "threads=$bad is refused (exit $rc)" test "$ended" = 1 -a "$rc" != 0
	check "threads=$bad: the message names the option" grep -q "threads=$bad: give a number of worker threads from 2 to 256" "$SCRATCH/bad.out"
done
check "fsck clean" rfs_fsck
rfs_finish
