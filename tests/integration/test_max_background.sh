#!/usr/bin/env bash
# The mount lets 64 asynchronous requests through at once
# (RFS_FUSE_MAX_BACKGROUND, op_init in src/fuse/ops.c), not the kernel's
# 12: with 12, fio at queue depth 16 slept in io_submit until each reply
# woke it (issue 9).  The kernel shows what it took in the fuse control
# filesystem, /sys/fs/fuse/connections/DEV/, DEV being the minor device
# number of the mount; it is mounted here in a mount namespace of this
# test's own when the host has not mounted it.
source "$(dirname "$0")/lib.bash"
rfs_setup 1G

# st_dev of the mount: the connection's number is its minor device.
d=$(stat -c '%d' "$MNT")
dev=$(((d & 0xff) | ((d >> 12) & ~0xff)))
read_ctl() {
	local f=/sys/fs/fuse/connections/$dev/$1
	if [ -r "$f" ]; then
		cat "$f"
	else
		unshare -m sh -c 'mount -t fusectl none /sys/fs/fuse/connections && cat "$1"' _ "$f"
	fi
}
if ! mb=$(read_ctl max_background 2>"$SCRATCH/ctl.err"); then
	log "skip: the fuse control filesystem cannot be read here ($(tail -1 "$SCRATCH/ctl.err"))"
	rfs_finish
	exit
fi
check "max_background is 64 (the kernel says $mb)" test "$mb" = 64
ct=$(read_ctl congestion_threshold)
check "congestion_threshold is 48 (the kernel says $ct)" test "$ct" = 48
# Still a working mount: a file written with more requests in flight than
# the old limit reads back whole.
if command -v fio >/dev/null; then
	check "fio randwrite, queue depth 32, then verify" \
		fio --name=v --directory="$MNT" --rw=randwrite --bs=4k --size=8M \
		--ioengine=libaio --iodepth=32 --direct=1 --verify=crc32c --do_verify=1 \
		--verify_state_save=0
fi
check "unmount" rfs_umount
check "fsck clean" rfs_fsck
rfs_finish
