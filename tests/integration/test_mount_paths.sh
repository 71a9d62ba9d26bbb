#!/usr/bin/env bash
# A pool and a mount point whose paths hold a space, a comma and a
# backslash: mount, reflinkfs umount (which finds the pool through
# mountinfo, where the kernel escapes such characters) and mount again.
. "$(dirname "$0")/lib.bash"
rfs_setup 256M
rfs_umount
B=$RFS_BIN
D="$SCRATCH/a dir, odd\\name"
mkdir -p "$D/mnt"
"$B" mkfs --size 256M "$D/pool" >/dev/null
check "mount of a pool whose path holds ' ', ',' and '\\'" "$B" mount "$D/pool" "$D/mnt"
check "... the mount shows the pool path" \
	bash -c "grep -F ' - fuse.reflinkfs ' /proc/self/mountinfo | grep -qF '/a\\040dir,\\040odd\\134name/pool '"
echo data >"$D/mnt/f"
check "reflinkfs umount finds it" "$B" umount "$D/mnt"
check "... and waited for the pool: fsck right away is clean" "$B" fsck "$D/pool"
check "mount again" "$B" mount "$D/pool" "$D/mnt"
check "... the data is there" test "$(cat "$D/mnt/f")" = data
check "mounting on it again is refused (busy)" \
	bash -c "'$B' mount '$POOL' \"\$1\" 2>'$SCRATCH/e'; [ \$? -ne 0 ] && grep -q 'already mounted' '$SCRATCH/e'" _ "$D/mnt"
check "reflinkfs umount" "$B" umount "$D/mnt"
check "... and the mount is gone" bash -c "! grep -qF ' - fuse.reflinkfs ' /proc/self/mountinfo || ! grep -F ' - fuse.reflinkfs ' /proc/self/mountinfo | grep -qF 'odd\\134name/mnt '"
rfs_finish
