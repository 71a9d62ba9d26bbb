#!/usr/bin/env bash
# reflinkfs umount: many mount/write/umount cycles must all unmount (the
# kernel may keep a mount busy for a moment after the writer has exited:
# io_uring releases registered files in a kernel worker), while a mount
# that a process really uses is refused at once, naming the process.
. "$(dirname "$0")/lib.bash"
rfs_setup 512M
rfs_umount
B=$RFS_BIN
CYCLES=${RFS_UMOUNT_CYCLES:-40}
have_fio=$(command -v fio || true)

write_cycle() { # i: write through a different path each cycle
	local i=$1
	case $((i % 4)) in
	0) echo "cycle $i" >"$MNT/f$i" ;;
	1) echo "cycle $i" >"$SCRATCH/src" && cp "$SCRATCH/src" "$MNT/f$i" ;;
	2) echo "cycle $i" | dd of="$MNT/f$i" status=none ;;
	3)
		echo "cycle $i" >"$MNT/f$i"
		# io_uring with registered files: the files are dropped by a
		# kernel worker after fio has exited
		if [ -n "$have_fio" ]; then
			fio --name=w --directory="$MNT" --filename=fio.dat --size=1M --bs=4k \
				--rw=randwrite --ioengine=io_uring --iodepth=8 --registerfiles=1 \
				--minimal >/dev/null 2>>"$SCRATCH/fio.err" || echo "fio failed in cycle $i" >>"$SCRATCH/fio.err"
		fi
		;;
	esac
}

busy=0
failed_mount=0
for i in $(seq "$CYCLES"); do
	if ! "$B" mount "$POOL" "$MNT" 2>>"$SCRATCH/cycles.err"; then
		failed_mount=$((failed_mount + 1))
		continue
	fi
	write_cycle "$i"
	if ! "$B" umount "$MNT" 2>>"$SCRATCH/cycles.err"; then
		busy=$((busy + 1))
		fusermount3 -u "$MNT" 2>/dev/null || umount -l "$MNT"
		sleep 1
	fi
done
cat "$SCRATCH/cycles.err"
check "$CYCLES mount/write/umount cycles: every mount worked" test "$failed_mount" = 0
check "$CYCLES mount/write/umount cycles: every reflinkfs umount worked ($busy failed)" test "$busy" = 0
check "every mount had its status socket (the previous daemon freed its name in time)" \
	bash -c "! grep 'no status socket' '$SCRATCH/cycles.err'"
check "fio ran (io_uring writers)" bash -c "[ -z '$have_fio' ] || ! grep -q 'fio failed' '$SCRATCH/fio.err'"
rfs_mount
check "every cycle's file is there" bash -c "for i in \$(seq $CYCLES); do [ \"\$(cat '$MNT'/f\$i)\" = \"cycle \$i\" ] || { echo f\$i; exit 1; }; done"
rfs_umount
check "fsck clean after the cycles" rfs_fsck

# A mount that a process really uses: refused at once, naming it.
"$B" mount "$POOL" "$MNT"
(cd "$MNT" && exec sleep 600) &
holder=$!
exec 7<"$MNT/f1"
check_fail "reflinkfs umount of a mount in use fails" "$B" umount "$MNT"
"$B" umount "$MNT" 2>"$SCRATCH/busy.err"
cat "$SCRATCH/busy.err"
check "... naming the process that has its working directory there" \
	grep -q "process $holder (sleep): working directory" "$SCRATCH/busy.err"
check "... and this shell, which has a file open there" grep -q "process $$ .*open files" "$SCRATCH/busy.err"
check "... and the mount stays" mountpoint -q "$MNT"
kill "$holder"
wait "$holder" 2>/dev/null
exec 7<&-
check "reflinkfs umount works once they are gone" "$B" umount "$MNT"
check "... and the mount is gone" bash -c "! grep -q ' $MNT fuse' /proc/mounts"

# --- The pool is released when reflinkfs umount returns; after an unmount
# that does not wait (fusermount3 -u, umount(8)), mount and fsck wait for
# the daemon that is still committing.  The daemon is stopped (SIGSTOP) so
# that it cannot finish before the command under test has looked.
wait_for() { # FILE PATTERN: until FILE holds PATTERN (bounded)
	local i
	for i in $(seq 400); do
		grep -q "$2" "$1" 2>/dev/null && return 0
		sleep 0.05
	done
	return 1
}
wait_unmounted() {
	local i
	for i in $(seq 400); do
		grep -q " $MNT fuse" /proc/mounts || return 0
		sleep 0.05
	done
	return 1
}
rfs_mount
echo one >"$MNT/r1"
kill -STOP "$DAEMON_PID"
"$B" umount "$MNT" 2>"$SCRATCH/u.err" &
up=$!
wait_unmounted
check "reflinkfs umount has unmounted, and still waits while the daemon holds the pool" kill -0 "$up"
kill -CONT "$DAEMON_PID"
wait "$up"
check "reflinkfs umount returns 0 once the daemon is done" test $? = 0
check "... and the pool is released by then" flock -n -x "$POOL" true
wait "$DAEMON_PID"
DAEMON_PID=

rfs_mount
echo two >"$MNT/r2"
old=$DAEMON_PID
kill -STOP "$old"
fusermount3 -u "$MNT"
"$B" mount -f "$POOL" "$MNT" 2>"$SCRATCH/m2.err" &
DAEMON_PID=$!
wait_for "$SCRATCH/m2.err" "still making its final commit"
check "mount right after fusermount3 -u says it waits for the exiting daemon" \
	grep -q "waiting for it to exit" "$SCRATCH/m2.err"
kill -CONT "$old"
wait "$old"
check "the old daemon finished cleanly" test $? = 0
for i in $(seq 200); do mountpoint -q "$MNT" && break; sleep 0.05; done
check "... and the mount goes ahead once it has exited" mountpoint -q "$MNT"
check "... with the data of both mounts" bash -c "[ \"\$(cat '$MNT/r1' '$MNT/r2')\" = \"one
two\" ]"
mkdir -p "$SCRATCH/mnt2"
check "a mount of a pool that is mounted is refused at once" \
	bash -c "! '$B' mount '$POOL' '$SCRATCH/mnt2' 2>'$SCRATCH/e' && grep -q 'in use' '$SCRATCH/e' && ! grep -q waiting '$SCRATCH/e'"
grep -q " $SCRATCH/mnt2 fuse" /proc/mounts && fusermount3 -u "$SCRATCH/mnt2"
old=$DAEMON_PID
kill -STOP "$old"
umount --no-canonicalize "$MNT" # (canonicalizing would stat the stopped mount)
"$B" fsck "$POOL" >"$SCRATCH/fsck.out" 2>"$SCRATCH/fsck.err" &
fp=$!
wait_for "$SCRATCH/fsck.err" "still making its final commit"
kill -CONT "$old"
wait "$old"
DAEMON_PID=
wait "$fp"
check "fsck right after umount(8) waits for the daemon, then checks: clean" test $? = 0
cat "$SCRATCH/fsck.err"
rfs_finish
