#!/usr/bin/env bash
# mkfs --size: every bad size says what is wrong (not "Cannot allocate
# memory"), exits 2 and creates nothing; sizes the backing filesystem, the
# process's file size limit or a device cannot take are named.
. "$(dirname "$0")/lib.bash"
rfs_setup 64M
rfs_umount
B=$RFS_BIN
P=$SCRATCH/p

# mkfs_says SIZE RC TEXT: mkfs --size SIZE exits RC, its stderr holds
# TEXT and not ENOMEM's message, and no pool file is left
mkfs_says() {
	local size=$1 want_rc=$2 text=$3 rc
	rm -f "$P"
	"$B" mkfs --size "$size" "$P" >/dev/null 2>"$SCRATCH/e"
	rc=$?
	cat "$SCRATCH/e"
	[ "$rc" = "$want_rc" ] || { echo "exit $rc, want $want_rc"; return 1; }
	grep -qF -- "$text" "$SCRATCH/e" || { echo "no '$text'"; return 1; }
	! grep -q "Cannot allocate memory" "$SCRATCH/e" || return 1
	[ ! -e "$P" ] || { echo "$P was left behind"; return 1; }
}
while IFS='|' read -r size text; do
	check "mkfs --size '$size': $text" mkfs_says "$size" 2 "$text"
done <<'EOF'
-5|is not a size: a size cannot be negative
abc|is not a size: not a number
|is not a size: empty
1.5G|no fractions: give whole numbers of a smaller unit (1536M, not 1.5G)
10X|unknown unit: use K, M, G, T, P or E
10 G|unknown unit
0|too small: a pool needs at least 16 MiB
1K|too small: a pool needs at least 16 MiB
16777215|too small: a pool needs at least 16 MiB
5E|too large: the largest pool is 4 EiB
16E|too large: the largest pool is 4 EiB
18446744073709551615|too large: the largest pool is 4 EiB
18446744073709551616|too large: the largest pool is 4 EiB
1000000T|too large for this machine: a pool of about 976.6 PiB needs about 91.6 TiB of memory
EOF
check "mkfs --size 16M (the minimum) works" bash -c "rm -f '$P' && '$B' mkfs --size 16M '$P' | grep -q '(16 MiB)'"

# the process's file size limit (ulimit -f, in KiB)
check "a pool over ulimit -f: the limit is named" bash -c \
	"rm -f '$P'; trap '' XFSZ; ulimit -f 65536; ! '$B' mkfs --size 128M '$P' 2>'$SCRATCH/e'; cat '$SCRATCH/e'; grep -q 'ulimit -f: 64 MiB' '$SCRATCH/e' && [ ! -e '$P' ]"

# the backing filesystem's largest file (ext4: 16 TiB - 4 KiB)
if ! truncate -s 17T "$SCRATCH/probe" 2>/dev/null; then
	check "a pool over the backing filesystem's largest file: the limit is named" bash -c \
		"rm -f '$P'; ! '$B' mkfs --size 17T '$P' 2>'$SCRATCH/e'; cat '$SCRATCH/e'; grep -q 'allows for one file (at most [0-9]* bytes' '$SCRATCH/e' && [ ! -e '$P' ]"
else
	log "skip: $(stat -f -c %T "$SCRATCH") takes a 17 TiB file (the limit is checked with ulimit -f above)"
fi
rm -f "$SCRATCH/probe"

# more than the free space is fine (sparse), with a note
free_k=$(df -Pk "$SCRATCH" | awk 'NR == 2 { print $4 }')
big=$(((free_k / 1024 + 1024) / 1024 + 1))G
check "a pool larger than the free space ($big): created, with a note" bash -c \
	"rm -f '$P'; '$B' mkfs --size $big '$P' 2>'$SCRATCH/e' && cat '$SCRATCH/e' && grep -q 'note: .* free, less than the pool' '$SCRATCH/e'"
check "... and the pool file takes little room" test "$(du -k "$P" | cut -f1)" -lt 65536
rm -f "$P"

# a block device (a loop device; needs root)
truncate -s 64M "$SCRATCH/dev.img"
if [ "$(id -u)" = 0 ] && LOOP=$(losetup -f --show "$SCRATCH/dev.img" 2>/dev/null); then
	trap 'losetup -d "$LOOP"; rfs_cleanup' EXIT
	check "--size larger than the device: named" bash -c \
		"! '$B' mkfs --size 128M '$LOOP' 2>'$SCRATCH/e'; cat '$SCRATCH/e'; grep -q 'larger than the device (67108864 bytes, 64 MiB)' '$SCRATCH/e'"
	check "the whole device without --size" "$B" mkfs "$LOOP"
else
	log "skip block device checks (needs root and a loop device)"
fi
rfs_finish
