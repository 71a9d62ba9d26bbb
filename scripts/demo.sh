#!/usr/bin/env bash
# `make demo`: the main job on the embedded default, a pool in a local
# file.  Creates ./demo.pool, mounts it, writes a 1 GiB file, clones it
# with plain `cp`, shows the time and the pool space before and after,
# shows that the copies are independent, then unmounts and runs fsck.
# Set RFS_DEMO_KEEP=1 to keep the pool file afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${RFS_BUILD:-build}
bin=$build/reflinkfs
pool=${RFS_DEMO_POOL:-$PWD/demo.pool}

if [ ! -x "$bin" ]; then
	echo "demo: $bin is not built; run make first" >&2
	exit 1
fi
if [ -e "$pool" ]; then
	echo "demo: $pool exists; remove it or set RFS_DEMO_POOL to another path" >&2
	exit 1
fi
mnt=$(mktemp -d "${TMPDIR:-/tmp}/reflinkfs-demo.XXXXXX")
mounted=0
cleanup() {
	if [ "$mounted" = 1 ]; then
		"$bin" umount "$mnt" 2>/dev/null || fusermount3 -u "$mnt" 2>/dev/null || true
	fi
	rmdir "$mnt" 2>/dev/null || true
	if [ "${RFS_DEMO_KEEP:-0}" != 1 ]; then rm -f "$pool"; fi
}
trap cleanup EXIT

# Space the pool has allocated, from the pool's own statfs view.
used_mib() { df -B1M --output=used "$mnt" | tail -1 | tr -d ' '; }
ms_since() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }

echo "== reflinkfs demo =="
"$bin" mkfs --size 8G "$pool" >/dev/null
echo "1. created a pool in $pool (8 GiB, sparse: it takes $(du -h "$pool" | cut -f1) on disk)"
"$bin" mount "$pool" "$mnt"
mounted=1
echo "   mounted it on $mnt"

t=$(date +%s%N)
dd if=/dev/urandom of="$mnt/vm.img" bs=1M count=1024 iflag=fullblock status=none
sync "$mnt/vm.img"
echo "2. wrote a 1 GiB file in $(ms_since "$t") ms; pool space used: $(used_mib) MiB"

before=$(used_mib)
t=$(date +%s%N)
cp "$mnt/vm.img" "$mnt/vm-copy.img"
ms=$(ms_since "$t")
sync "$mnt/vm-copy.img"
after=$(used_mib)
echo "3. cp vm.img vm-copy.img took $ms ms (a clone, not a copy)"
echo "   pool space used: $before MiB before, $after MiB after"
"$bin" stat "$mnt/vm-copy.img" | sed 's/^/   /'

t=$(date +%s%N)
"$bin" clone "$mnt/vm.img" "$mnt/vm-clone2.img"
echo "4. reflinkfs clone vm.img vm-clone2.img took $(ms_since "$t") ms"

printf 'changed' | dd of="$mnt/vm-copy.img" bs=1 seek=4096 conv=notrunc status=none
if cmp -s "$mnt/vm.img" "$mnt/vm-copy.img"; then
	echo "   ERROR: a write to the copy showed up in the original" >&2
	exit 1
fi
cmp -s "$mnt/vm.img" "$mnt/vm-clone2.img" && echo "5. wrote into vm-copy.img: vm.img and vm-clone2.img are unchanged (independent copies)"
sync "$mnt/vm-copy.img"
echo "   pool space used now: $(used_mib) MiB (only the changed block was copied)"

"$bin" umount "$mnt"
mounted=0
echo "6. unmounted; reflinkfs fsck:"
"$bin" fsck "$pool" | sed 's/^/   /'
echo "== done =="
