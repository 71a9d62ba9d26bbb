#!/usr/bin/env bash
# Tiny files keep their data in the inode record (volume format 4): through
# a real mount, cp, cat, appends past the limit, an mmap write, truncate,
# SEEK_DATA / SEEK_HOLE, du, `reflinkfs stat`, snapshot + diff and scrub
# behave as for any file, a clone of a tree of tiny files adds no data
# block, and fsck is clean after a remount.
. "$(dirname "$0")/lib.bash"
rfs_setup 1G
SRC=$SCRATCH/src
mkdir -p "$SRC"
python3 - "$SRC" <<'PY'
import os, random, sys
r = random.Random(9)
for i in range(200):
    n = r.choice([1, 17, 100, 500, 887, 888, 889, 3000])
    with open(os.path.join(sys.argv[1], "f%03d" % i), "wb") as f:
        f.write(bytes(r.randrange(256) for _ in range(n)))
with open(os.path.join(sys.argv[1], "tiny"), "wb") as f:
    f.write(b"a tiny file\n" * 10)
PY
used() { stat -f -c '%b %f' "$MNT" | awk '{ print $1 - $2 }'; }

check "cp -a of tiny files in, cat and cmp them back" bash -c "
cp -a '$SRC' '$MNT/a' && for f in '$SRC'/*; do cat \"\$f\" | cmp - '$MNT/a/'\$(basename \"\$f\") || exit 1; done"
check "a tiny file takes no data block: stat -e shows one inline extent" bash -c "
out=\$('$RFS_BIN' stat -e '$MNT/a/tiny') && echo \"\$out\" && echo \"\$out\" | grep -q 'blocks:   0 ' && echo \"\$out\" | grep -q ' inline'"
check "st_blocks of a tiny file counts its bytes (not sparse to cp/tar)" bash -c "
s=\$(stat -c %s '$MNT/a/tiny'); b=\$(stat -c %b '$MNT/a/tiny'); [ \$b -eq \$(( (s + 511) / 512 )) ]"
"$RFS_BIN" sync "$MNT"
u0=$(used)
check "cp -a of the tree inside the mount (clones) adds no data block per tiny file" bash -c "
cp -a '$MNT/a' '$MNT/b' && '$RFS_BIN' sync '$MNT' && u1=\$(stat -f -c '%b %f' '$MNT' | awk '{ print \$1 - \$2 }') &&
echo \"blocks added: \$((u1 - $u0))\" && [ \$((u1 - $u0)) -lt 100 ] && diff -r '$SRC' '$MNT/b'"
check "appends within and past the limit, then cat" bash -c "
: >'$MNT/log' && : >'$SCRATCH/log' && for i in \$(seq 60); do
  echo \"line \$i of a log that grows past the inline limit\" | tee -a '$SCRATCH/log' >>'$MNT/log'; done &&
cmp '$SCRATCH/log' '$MNT/log' && [ \$(stat -c %s '$MNT/log') -gt 888 ]"
check "mmap write into a tiny file" python3 - "$MNT" <<'PY'
import mmap, os, sys
p = sys.argv[1] + "/m"
with open(p, "wb") as f:
    f.write(b"a" * 300)
fd = os.open(p, os.O_RDWR)
mm = mmap.mmap(fd, 300)
mm[10:15] = b"HELLO"
mm.flush()
mm.close()
os.close(fd)
os.system("sync")
d = open(p, "rb").read()
assert d == b"a" * 10 + b"HELLO" + b"a" * 285, d[:32]
PY
check "SEEK_DATA / SEEK_HOLE on a tiny file and after it grows" python3 - "$MNT" <<'PY'
import os, sys
p = sys.argv[1] + "/s"
fd = os.open(p, os.O_CREAT | os.O_RDWR, 0o644)
os.pwrite(fd, b"x" * 200, 0)
assert os.lseek(fd, 0, os.SEEK_DATA) == 0
assert os.lseek(fd, 50, os.SEEK_HOLE) == 200
try:
    os.lseek(fd, 200, os.SEEK_DATA)
    raise AssertionError("SEEK_DATA at EOF succeeded")
except OSError as e:
    assert e.errno == 6, e
os.pwrite(fd, b"y" * 10, 1 << 20)
assert os.lseek(fd, 0, os.SEEK_HOLE) == 4096
assert os.lseek(fd, 4096, os.SEEK_DATA) == 1 << 20
assert os.pread(fd, 200, 0) == b"x" * 200
os.close(fd)
PY
check "truncate down, up within the limit and past it" bash -c "
printf 'abcdefghij' >'$MNT/t' && truncate -s 4 '$MNT/t' && truncate -s 600 '$MNT/t' &&
[ \"\$(head -c 4 '$MNT/t')\" = abcd ] && cmp -s -i 4:0 -n 596 '$MNT/t' /dev/zero &&
truncate -s 100000 '$MNT/t' && [ \"\$(head -c 4 '$MNT/t')\" = abcd ] && [ \$(stat -c %s '$MNT/t') = 100000 ]"
check "hole punch and fallocate on a tiny file" bash -c "
head -c 700 /dev/urandom >'$MNT/p' && cp '$MNT/p' '$SCRATCH/p' && fallocate -p -o 100 -l 50 '$MNT/p' &&
cmp -n 100 '$MNT/p' '$SCRATCH/p' && cmp -n 50 -i 100:0 '$MNT/p' /dev/zero && cmp -i 150:150 '$MNT/p' '$SCRATCH/p' &&
fallocate -l 64K '$MNT/p' && [ \$(stat -c %s '$MNT/p') = 65536 ] && cmp -n 100 '$MNT/p' '$SCRATCH/p'"
check "du of the tiny files is their bytes, not 4 KiB each" bash -c "
k=\$(du -sk '$MNT/a' | cut -f1); echo \"du -sk: \$k KiB\"; [ \$k -lt 400 ]"
check "reflinkfs du: inline data holds no data block" bash -c "
'$RFS_BIN' du --json '$MNT/a/tiny' | tee /dev/stderr | python3 -c 'import json,sys; d=json.load(sys.stdin)[0]; assert d[\"total\"] == 0 and d[\"exclusive\"] == 0, d'"
# (diff exits 1 when it found a difference, as diff(1))
check "snapshot, a byte changed in a tiny file: diff names only it, the snapshot keeps the old bytes" bash -c "
'$RFS_BIN' snapshot '$MNT/a' '$MNT/snap' >/dev/null && printf Z | dd of='$MNT/a/tiny' bs=1 seek=3 conv=notrunc status=none &&
out=\$('$RFS_BIN' diff '$MNT/snap' '$MNT/a'); [ \$? = 1 ] && echo \"\$out\" && [ \$(echo \"\$out\" | grep -c tiny) = 1 ] &&
! echo \"\$out\" | grep -q f000 && cmp '$SRC/tiny' '$MNT/snap/tiny' && ! cmp -s '$SRC/tiny' '$MNT/a/tiny'"
check "scrub reads every file, tiny ones included, and finds nothing wrong" "$RFS_BIN" scrub "$MNT"
rfs_umount
check "fsck clean" rfs_fsck
check "fsck --data clean" "$RFS_BIN" fsck --data "$POOL"
rfs_mount
check "after a remount: the bytes are all there" diff -r "$SRC" "$MNT/b"
rfs_finish
