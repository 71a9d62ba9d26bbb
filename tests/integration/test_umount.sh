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
rfs_finish
