#!/usr/bin/env bash
# Randomized model test: random writes, truncates, punches, clones,
# renames, links, unlinks, fsyncs, daemon kills (kill -9) and remounts on
# a real mount, checked against an in-memory model after every kill and
# remount and at random points.  Replay with RFS_SEED=N (RFS_STEPS=N sets
# the number of steps).
. "$(dirname "$0")/lib.bash"
SEED=${RFS_SEED:-$(( (RANDOM << 15) | RANDOM ))}
STEPS=${RFS_STEPS:-3000}
echo "seed=$SEED steps=$STEPS (replay: RFS_SEED=$SEED RFS_STEPS=$STEPS bash $0)"
if [ ! -x "$RFS_BIN" ]; then echo "no $RFS_BIN"; echo "0 passed, 1 failed"; exit 1; fi
if [ -n "${RFS_TEST_DIR:-}" ]; then SCRATCH=$(mktemp -d "$RFS_TEST_DIR/mXXXXXX"); else SCRATCH=$(mktemp -d /tmp/rfs-modelXXXXXX); fi
POOL=$SCRATCH/pool
MNT=$SCRATCH/mnt
mkdir -p "$MNT"
"$RFS_BIN" mkfs --size 1G "$POOL" >/dev/null || { echo "0 passed, 1 failed"; exit 1; }
cleanup() {
	# the driver kills only the daemons it started; here only a leftover mount
	# unconditionally: after a killed daemon, mountpoint(1) fails on the
	# dead connection ("transport endpoint is not connected")
	if grep -q " $MNT fuse" /proc/mounts; then
		fusermount3 -u "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null || true
	fi
	[ -z "${RFS_TEST_DIR:-}" ] && [ -z "${RFS_KEEP:-}" ] && rm -rf "$SCRATCH"
}
trap cleanup EXIT
python3 - "$RFS_BIN" "$POOL" "$MNT" "$SEED" "$STEPS" <<'PY'
import ctypes, os, random, signal, subprocess, sys, time

BIN, POOL, MNT, SEED, STEPS = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
rng = random.Random(SEED)
libc = ctypes.CDLL(None, use_errno=True)
passed = failed = 0
daemon = None

def mounted():
    return subprocess.call(["mountpoint", "-q", MNT]) == 0

def mount():
    global daemon
    daemon = subprocess.Popen([BIN, "mount", "-f", "-o", "commit=3600,no_writeback", POOL, MNT],
                              stderr=open(os.path.join(os.path.dirname(POOL), "daemon.log"), "a"))
    for _ in range(200):
        if mounted():
            return
        if daemon.poll() is not None:
            break
        time.sleep(0.05)
    raise RuntimeError("mount failed (see daemon.log)")

def umount():
    global daemon
    subprocess.check_call(["fusermount3", "-u", MNT])
    daemon.wait(timeout=120)
    assert daemon.returncode == 0, f"daemon exit {daemon.returncode}"
    daemon = None

def kill9():
    global daemon
    os.kill(daemon.pid, signal.SIGKILL)
    daemon.wait()
    daemon = None
    if subprocess.call(["fusermount3", "-u", MNT], stderr=subprocess.DEVNULL):
        subprocess.call(["umount", "-l", MNT])

def fsck():
    r = subprocess.run([BIN, "fsck", POOL], capture_output=True, text=True)
    assert r.returncode == 0, "fsck: " + r.stdout + r.stderr

# ---- the model: names -> inode ids; inodes -> bytearray; dirs ----
DIRS = ["", "d0", "d1", "d0/e0"]
NAMES = [f"{d}/f{i}".lstrip("/") for d in DIRS for i in range(6)]
model_names = {}      # path -> ino
model_data = {}       # ino -> bytearray
next_ino = [1]
saved = None

def snapshot():
    return (dict(model_names), {k: bytearray(v) for k, v in model_data.items()})

def P(name):
    return os.path.join(MNT, name)

def check_all(why):
    global passed, failed
    try:
        # names present
        seen = {}
        for d in DIRS:
            for e in os.listdir(P(d) if d else MNT):
                p = f"{d}/{e}".lstrip("/")
                if p in DIRS:
                    continue
                seen[p] = os.lstat(P(p))
        assert set(seen) == set(model_names), f"names differ: fs-only {sorted(set(seen)-set(model_names))} model-only {sorted(set(model_names)-set(seen))}"
        by_ino = {}
        for p, ino in model_names.items():
            st = seen[p]
            data = open(P(p), "rb").read()
            want = model_data[ino]
            assert len(data) == len(want), f"{p}: size {len(data)} != {len(want)}"
            if data != want:
                i = next(i for i in range(len(data)) if data[i] != want[i])
                raise AssertionError(f"{p}: contents differ at byte {i}")
            links = sum(1 for q in model_names.values() if q == ino)
            assert st.st_nlink == links, f"{p}: nlink {st.st_nlink} != {links}"
            if ino in by_ino:
                assert by_ino[ino] == st.st_ino, f"{p}: hard link with another st_ino"
            by_ino[ino] = st.st_ino
        passed += 1
        print(f"ok   {why}")
    except Exception as e:
        failed += 1
        print(f"FAIL {why}: {e}")
        print(f"     (replay: RFS_SEED={SEED} RFS_STEPS={STEPS})")
        raise SystemExit(finish())

def finish():
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0

def rnd_bytes(n):
    return rng.getrandbits(8 * n).to_bytes(n, "little") if n else b""

def op_write():
    name = rng.choice(NAMES)
    if name not in model_names:
        ino = next_ino[0]; next_ino[0] += 1
        model_names[name] = ino
        model_data[ino] = bytearray()
    d = model_data[model_names[name]]
    off = rng.choice([0, len(d), rng.randrange(0, 300000), rng.randrange(0, 4096)])
    n = rng.choice([1, 100, 4096, 5000, rng.randrange(1, 200000)])
    buf = rnd_bytes(n)
    fd = os.open(P(name), os.O_WRONLY | os.O_CREAT, 0o644)
    os.pwrite(fd, buf, off)
    os.close(fd)
    if len(d) < off + n:
        d.extend(b"\0" * (off + n - len(d)))
    d[off:off + n] = buf

def existing():
    return rng.choice(sorted(model_names)) if model_names else None

def op_truncate():
    name = existing()
    if not name: return
    d = model_data[model_names[name]]
    size = rng.choice([0, len(d) // 2, len(d) + 5000, rng.randrange(0, 300000)])
    os.truncate(P(name), size)
    if size < len(d): del d[size:]
    else: d.extend(b"\0" * (size - len(d)))

def op_punch():
    name = existing()
    if not name: return
    d = model_data[model_names[name]]
    if not d: return
    off = rng.randrange(0, len(d)); n = rng.randrange(1, 100000)
    fd = os.open(P(name), os.O_RDWR)
    r = libc.fallocate(fd, 3, ctypes.c_long(off), ctypes.c_long(n))
    os.close(fd)
    assert r == 0, os.strerror(ctypes.get_errno())
    end = min(len(d), off + n)
    d[off:end] = b"\0" * (end - off)

def op_clone():
    src = existing()
    if not src: return
    dst = rng.choice(NAMES)
    if dst == src: return
    sd = model_data[model_names[src]]
    if dst not in model_names:
        ino = next_ino[0]; next_ino[0] += 1
        model_names[dst] = ino; model_data[ino] = bytearray()
    dd = model_data[model_names[dst]]
    if dd is sd: return
    fi = os.open(P(src), os.O_RDONLY); fo = os.open(P(dst), os.O_WRONLY | os.O_CREAT, 0o644)
    if rng.random() < 0.5 or not sd:
        # whole file, as cp does
        os.ftruncate(fo, 0); del dd[:]
        n = 0
        while n < len(sd):
            k = os.copy_file_range(fi, fo, len(sd) - n, n, n)
            assert k > 0
            n += k
        dd.extend(sd)
    else:
        off_in = rng.randrange(0, len(sd))
        off_out = rng.choice([off_in, rng.randrange(0, 200000), off_in % 4096])
        n = rng.randrange(1, 150000)
        k = os.copy_file_range(fi, fo, n, off_in, off_out)
        want = min(n, len(sd) - off_in)
        assert k == want, f"copy_file_range returned {k}, wanted {want}"
        piece = sd[off_in:off_in + k]
        if len(dd) < off_out + k: dd.extend(b"\0" * (off_out + k - len(dd)))
        dd[off_out:off_out + k] = piece
    os.close(fi); os.close(fo)

def op_rename():
    src = existing()
    if not src: return
    dst = rng.choice(NAMES)
    if dst == src: return
    os.rename(P(src), P(dst))
    if model_names.get(dst) == model_names[src]:
        # POSIX: two names of one inode: nothing happens
        return
    model_names[dst] = model_names.pop(src)

def op_link():
    src = existing()
    if not src: return
    dst = rng.choice(NAMES)
    if dst in model_names: return
    os.link(P(src), P(dst))
    model_names[dst] = model_names[src]

def op_unlink():
    name = existing()
    if not name: return
    os.unlink(P(name))
    ino = model_names.pop(name)
    if ino not in model_names.values():
        del model_data[ino]

def op_fsync():
    global saved
    name = existing()
    if name:
        fd = os.open(P(name), os.O_RDONLY); os.fsync(fd); os.close(fd)
    else:
        fd = os.open(MNT, os.O_RDONLY); os.fsync(fd); os.close(fd)
    saved = snapshot()

def op_kill():
    global model_names, model_data
    kill9()
    fsck()
    model_names, model_data = snapshot_restore(saved)
    mount()
    check_all("state after kill -9 equals the last fsync")

def snapshot_restore(s):
    return dict(s[0]), {k: bytearray(v) for k, v in s[1].items()}

def op_remount():
    global saved
    umount()
    fsck()
    mount()
    saved = snapshot()
    check_all("state after a clean remount")

OPS = [(op_write, 30), (op_truncate, 6), (op_punch, 6), (op_clone, 12), (op_rename, 8),
       (op_link, 5), (op_unlink, 6), (op_fsync, 6), (op_kill, 2), (op_remount, 1)]
weights = [w for _, w in OPS]
try:
    mount()
    for d in DIRS:
        if d: os.makedirs(P(d), exist_ok=True)
    fd = os.open(MNT, os.O_RDONLY); os.fsync(fd); os.close(fd)
    saved = snapshot()
    for step in range(STEPS):
        op = rng.choices([o for o, _ in OPS], weights)[0]
        try:
            op()
        except SystemExit:
            raise
        except Exception as e:
            failed += 1
            print(f"FAIL step {step} {op.__name__}: {e!r} (replay: RFS_SEED={SEED} RFS_STEPS={STEPS})")
            raise SystemExit(finish())
        if step % 50 == 49:
            check_all(f"state after step {step}")
    check_all("final state")
    op_fsync()
    op_kill()
    umount()
    fsck()
    passed += 1
    print("ok   fsck clean at the end")
finally:
    if daemon is not None:
        try:
            os.kill(daemon.pid, signal.SIGKILL); daemon.wait()
        except ProcessLookupError:
            pass
sys.exit(finish())
PY
