#!/usr/bin/env bash
# Sparse files, fallocate, SEEK_DATA / SEEK_HOLE on written, cloned and
# punched files (where ZFS 2.2 shipped silent corruption), truncate.
. "$(dirname "$0")/lib.bash"
rfs_setup 2G
check "SEEK_DATA/SEEK_HOLE, clones and punches" python3 - "$MNT" <<'PY'
import os, sys, random
m = sys.argv[1]
B = 4096
def regions(path):
    """(data_start, data_end) list via SEEK_DATA/SEEK_HOLE"""
    fd = os.open(path, os.O_RDONLY)
    size = os.fstat(fd).st_size
    out, off = [], 0
    while off < size:
        try:
            d = os.lseek(fd, off, os.SEEK_DATA)
        except OSError as e:
            assert e.errno == 6, e  # ENXIO
            break
        h = os.lseek(fd, d, os.SEEK_HOLE)
        assert h > d, (d, h)
        out.append((d, h))
        off = h
    os.close(fd)
    return out

def check_against(path, model):
    data = open(path, "rb").read()
    assert data == bytes(model), f"{path}: contents differ from the model"
    # every byte outside the reported data regions must be zero
    regs = regions(path)
    pos = 0
    for d, h in regs:
        assert not any(data[pos:d]), f"{path}: non-zero bytes in a hole [{pos},{d})"
        pos = h
    assert not any(data[pos:]), f"{path}: non-zero bytes in the final hole"
    return regs

rng = random.Random(1234)
p = m + "/sparse"
model = bytearray()
with open(p, "wb") as f:
    for i in range(200):
        off = rng.randrange(0, 64 << 20)
        n = rng.randrange(1, 3 * B)
        buf = bytes(rng.randrange(1, 256) for _ in range(n))
        f.seek(off)
        f.write(buf)
        if len(model) < off + n:
            model.extend(b"\0" * (off + n - len(model)))
        model[off:off + n] = buf
regs = check_against(p, model)
assert len(regs) > 50, regs[:5]
assert os.stat(p).st_blocks * 512 < len(model) // 4, "file is not sparse"
# a clone has the same regions and bytes
os.system(f"cp '{p}' '{m}/sparse.clone'")
assert regions(m + "/sparse.clone") == regs
check_against(m + "/sparse.clone", model)
# punch holes in the clone: the source keeps its data
cm = bytearray(model)
fd = os.open(m + "/sparse.clone", os.O_RDWR)
for i in range(50):
    off = rng.randrange(0, len(cm))
    n = rng.randrange(1, 5 * B)
    n = min(n, len(cm) - off)
    os.posix_fallocate  # noqa
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    r = libc.fallocate(fd, 3, ctypes.c_long(off), ctypes.c_long(n))  # PUNCH_HOLE|KEEP_SIZE
    assert r == 0, os.strerror(ctypes.get_errno())
    cm[off:off + n] = b"\0" * n
os.close(fd)
check_against(m + "/sparse.clone", cm)
check_against(p, model)
# whole-block punch makes a real hole
fd = os.open(p, os.O_RDWR)
first = regs[0]
start = (first[0] + B - 1) // B * B
if start + B <= first[1]:
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.fallocate(fd, 3, ctypes.c_long(start), ctypes.c_long(B)) == 0
    model[start:start + B] = b"\0" * B
    assert os.lseek(fd, start, os.SEEK_HOLE) == start
os.close(fd)
check_against(p, model)
# truncate down and up: the cut tail reads as zeros
with open(p, "r+b") as f:
    cut = len(model) // 2 + 123
    f.truncate(cut)
    f.truncate(len(model))
model[cut:] = b"\0" * (len(model) - cut)
check_against(p, model)
print("ok", len(regs), "regions")
PY
check "SEEK_DATA/SEEK_HOLE see data just written through an open fd" python3 -c "
import os
fd = os.open('$MNT/fresh', os.O_CREAT | os.O_RDWR, 0o644)
os.pwrite(fd, b'x' * 100, 1 << 20)
assert os.lseek(fd, 0, os.SEEK_DATA) == 1 << 20
assert os.lseek(fd, 0, os.SEEK_HOLE) == 0
os.pwrite(fd, b'y' * 100, 0)
assert os.lseek(fd, 0, os.SEEK_DATA) == 0
assert os.lseek(fd, 0, os.SEEK_HOLE) == 4096
"
check "fallocate -l (preallocate) reads zeros, counts blocks" bash -c "fallocate -l 8M '$MNT/pre' && [ \$(stat -c %s '$MNT/pre') = 8388608 ] && [ \$(stat -c %b '$MNT/pre') -ge 16384 ] && cmp -n 8388608 '$MNT/pre' /dev/zero"
check "fallocate --keep-size" bash -c "fallocate -n -o 8M -l 4M '$MNT/pre' && [ \$(stat -c %s '$MNT/pre') = 8388608 ]"
check "fallocate --zero-range" bash -c "head -c 100000 /dev/urandom >'$MNT/z' && fallocate -z -o 1000 -l 50000 '$MNT/z' && cmp -n 50000 -i 1000:0 '$MNT/z' /dev/zero"
check "fallocate --collapse-range is refused" bash -c "! fallocate -c -o 0 -l 4096 '$MNT/z' 2>/dev/null"
check "a file of 8 TiB (sparse)" bash -c "truncate -s 8T '$MNT/huge' && echo end | dd of='$MNT/huge' bs=1 seek=\$((8*1024*1024*1024*1024-4)) conv=notrunc status=none && [ \$(stat -c %s '$MNT/huge') = 8796093022208 ] && tail -c 4 '$MNT/huge' | grep -q end"
check "cp of the 8 TiB sparse file" bash -c "cp '$MNT/huge' '$MNT/huge2' && tail -c 4 '$MNT/huge2' | grep -q end"
check "SEEK_DATA on the 8 TiB file" python3 -c "
import os; fd=os.open('$MNT/huge2', os.O_RDONLY); d=os.lseek(fd,0,os.SEEK_DATA); assert d >= 8*2**40-4096, d"
rfs_umount
check "fsck clean" rfs_fsck
rfs_finish
