#!/usr/bin/env bash
# Space of small files: pool space taken by a tree of small files copied
# in (cp -a), against `du` of the same tree on the host filesystem, and
# the metadata a clone of the tree inside the mount (cp -a, which clones
# every file) adds per entry.  Run twice: with the change journal (the
# default mount) and with -o nojournal, to tell the journal's share.
#
#   bench/fs/small.sh [--quick]
#     --quick  a generated tree of 2,000 files instead of /usr/share/doc
#
# The tree: $RFS_SMALL_SRC, else /usr/share/doc when present, else a
# generated tree shaped like it (directories of a few files of 1-64 KiB,
# mostly small).  stdout: "name: value unit" lines; progress on stderr.
# Environment: RFS_BIN (default build/reflinkfs), RFS_FS_BENCH_DIR (where
# the pool goes, default /var/tmp; its filesystem is what `du` measures
# for a generated tree).  After each step, stderr shows the pool's tree
# nodes by owner and level, with the step's difference (poolscan.py), and
# stdout the new nodes of the clone step per directory (small_clone_*).
set -euo pipefail
export LC_ALL=C
exec 3>&1 1>&2
root=$(cd "$(dirname "$0")/../.." && pwd)
me=small.sh
. "$root/bench/lib.bash"
quick=0
bench_args 2,19 quick "$@"
bench_bin
base=${RFS_FS_BENCH_DIR:-/var/tmp}

bench_traps
bench_work "$base" small
mnt=$work/mnt

src=${RFS_SMALL_SRC:-}
if [ -z "$src" ] && [ "$quick" = 0 ] && [ -d /usr/share/doc ]; then
	src=/usr/share/doc
fi
if [ -z "$src" ]; then
	# Shaped like /usr/share/doc: ~4.7 files per directory, sizes mostly
	# under 8 KiB with a tail to 64 KiB.
	src=$work/tree
	n=$([ "$quick" = 1 ] && echo 2000 || echo 20000)
	python3 - "$src" "$n" <<'EOF'
import os, random, sys
root, n = sys.argv[1], int(sys.argv[2])
r = random.Random(9)
d = None
for i in range(n):
    if i % 5 == 0:
        d = os.path.join(root, "pkg%05d" % (i // 5))
        os.makedirs(d)
    size = int(r.lognormvariate(7.3, 1.3)) % 65536 + 1
    with open(os.path.join(d, "f%d" % i), "wb") as f:
        f.write(r.randbytes(size))
EOF
fi
entries=$(find "$src" | wc -l)
files=$(find "$src" -type f | wc -l)
dirs=$(find "$src" -type d | wc -l)
du_kib=$(du -sk "$src" | cut -f1)
log "$src: $entries entries, $files files, $dirs directories, du $du_kib KiB"
fig small_entries "$entries" entries
fig small_du "$du_kib" KiB

used() { stat -f -c '%b %f %S' "$mnt" | awk '{ print int(($1 - $2) * $3 / 1024) }'; }
run() { # run LABEL [MOUNT OPTIONS]
	local label=$1
	shift
	rm -f "$work/pool"
	mkdir -p "$mnt"
	"$bin" mkfs --size 16G "$work/pool" >/dev/null
	rfs_mount "$work/pool" "$@"
	local u0 u1 u2 scan=$root/bench/fs/poolscan.py
	sync
	u0=$(used)
	cp -a "$src" "$mnt/a"
	"$bin" sync "$mnt"
	u1=$(used)
	log "$label: tree nodes after cp -a into the mount:"
	python3 "$scan" "$work/pool" --items --save "$work/scan1"
	cp -a "$mnt/a" "$mnt/b"
	"$bin" sync "$mnt"
	u2=$(used)
	log "$label: after cp -a inside the mount (last column: new):"
	python3 "$scan" "$work/pool" --items --save "$work/scan2" --before "$work/scan1"
	# New nodes of the clone step by owner, and per copied directory.
	python3 - "$work/scan1" "$work/scan2" "$dirs" "$label" <<'EOF' >&3
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
d, label = int(sys.argv[3]), sys.argv[4]
per = {}
for k in set(a) | set(b):
    if k.startswith("items:"):
        continue
    o = k.split("/")[0]
    per[o] = per.get(o, 0) + b.get(k, [0])[0] - a.get(k, [0])[0]
for o in sorted(per):
    if per[o]:
        print("small_clone_nodes_%s_%s: %d nodes" % (o, label, per[o]))
        print("small_clone_nodes_%s_per_dir_%s: %.2f nodes" % (o, label, per[o] / d))
EOF
	rfs_umount
	"$bin" fsck "$work/pool" >/dev/null
	fig "small_pool_$label" $((u1 - u0)) KiB
	fig "small_pool_vs_du_$label" "$(awk -v a=$((u1 - u0)) -v b="$du_kib" 'BEGIN { printf "%.3f", a / b }')" x
	fig "small_clone_meta_$label" $(((u2 - u1) * 1024 / entries)) B/entry
	fig "small_clone_meta_per_file_$label" $(((u2 - u1) * 1024 / files)) B/file
}
run journal
run nojournal -o nojournal
