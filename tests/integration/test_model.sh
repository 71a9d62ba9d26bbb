#!/usr/bin/env bash
# Randomized model test: random writes, truncates, punches, clones,
# renames, links, unlinks, fsyncs, snapshots (read-only and writable, of
# directories and of snapshots), changes inside snapshots, snapshot
# deletes and restores, daemon kills (kill -9) and remounts on a real
# mount, checked against an in-memory model after every kill and remount
# and at random points; fsck after every kill.  Replay with RFS_SEED=N (RFS_STEPS=N sets
# the number of steps).
. "$(dirname "$0")/lib.bash"
rfs_seed 3000
# The driver kills only the daemons it started; rfs_cleanup (the exit
# trap) only unmounts a leftover mount.
rfs_pool_setup 1G
python3 - "$RFS_BIN" "$POOL" "$MNT" "$SEED" "$STEPS" <<'PY'
import ctypes, errno, json, os, random, shutil, signal, subprocess, sys, time

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
# Snapshots live in snaps/N; their files are names of the same model
# (a snapshot copies the names below its source with fresh inode ids, so
# hard links inside the source stay links, links leaving it do not).
# vols: the directories that root a volume (snapshots, restored
# directories): rename and link across volumes give EXDEV.
DIRS = ["", "d0", "d1", "d0/e0"]
NAMES = [f"{d}/f{i}".lstrip("/") for d in DIRS for i in range(6)]
model_names = {}      # path -> ino
model_data = {}       # ino -> bytearray
model_snaps = {}      # "snaps/N" -> {"src": source dir, "ro": bool}
model_vols = set()    # directories rooting a volume
next_ino = [1]
next_snap = [0]
saved = None

def snapshot():
    return (dict(model_names), {k: bytearray(v) for k, v in model_data.items()},
            {k: dict(v) for k, v in model_snaps.items()}, set(model_vols))

def P(name):
    return os.path.join(MNT, name)

def below(path, d):
    return d == "" or path == d or path.startswith(d + "/")

def snap_dirs():
    # a snapshot of d0 holds e0; one of a snapshot holds what that held
    out = []
    for k in model_snaps:
        out.append(k)
        if model_snaps[k]["src"] == "d0":
            out.append(k + "/e0")
    return out

def all_dirs():
    return DIRS + ["snaps"] + snap_dirs()

def vol_of(path):
    best = ""
    for v in model_vols:
        if below(path, v) and len(v) > len(best):
            best = v
    return best

def is_ro(path):
    return any(below(path, k) for k, v in model_snaps.items() if v["ro"])

def live_names():
    return sorted(n for n in model_names if not n.startswith("snaps/"))

def check_all(why):
    global passed, failed
    try:
        # names present
        seen = {}
        dirs = all_dirs()
        for d in dirs:
            for e in os.listdir(P(d) if d else MNT):
                p = f"{d}/{e}".lstrip("/")
                if p in dirs:
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
        assert len(set(by_ino.values())) == len(by_ino), "two inodes with one st_ino"
        # volumes: the mount's, one per snapshot and restored directory
        r = subprocess.run([BIN, "snapshot", "list", "--json", MNT], capture_output=True, text=True)
        assert r.returncode == 0, "snapshot list: " + r.stderr
        vols = sorted(v["relative_path"] for v in json.loads(r.stdout)["volumes"])
        assert vols == sorted([""] + list(model_vols)), f"volumes {vols} != model {sorted(model_vols)}"
        for k, v in model_snaps.items():
            if v["ro"]:
                try:
                    os.close(os.open(P(k + "/new"), os.O_WRONLY | os.O_CREAT, 0o644))
                    raise AssertionError(f"{k}: read-only snapshot took a new file")
                except OSError as e:
                    assert e.errno == errno.EROFS, f"{k}: {e!r}"
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
    names = live_names()
    return rng.choice(names) if names else None

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
    if vol_of(os.path.dirname(src)) != vol_of(os.path.dirname(dst)):
        expect_errno(errno.EXDEV, os.rename, P(src), P(dst))
        return
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
    if vol_of(os.path.dirname(src)) != vol_of(os.path.dirname(dst)):
        expect_errno(errno.EXDEV, os.link, P(src), P(dst))
        return
    os.link(P(src), P(dst))
    model_names[dst] = model_names[src]

def op_unlink():
    name = existing()
    if not name: return
    os.unlink(P(name))
    ino = model_names.pop(name)
    if ino not in model_names.values():
        del model_data[ino]

def expect_errno(want, fn, *args):
    try:
        fn(*args)
    except OSError as e:
        assert e.errno == want, f"{fn.__name__}{args}: {e!r}, wanted {errno.errorcode[want]}"
        return
    raise AssertionError(f"{fn.__name__}{args} succeeded, wanted {errno.errorcode[want]}")

def cli(*args):
    r = subprocess.run([BIN] + list(args), capture_output=True, text=True)
    assert r.returncode == 0, f"reflinkfs {' '.join(args)}: exit {r.returncode}: {r.stderr}"
    return r.stdout

def copy_names(src, dst):
    # the model of a snapshot of src as dst: fresh inodes, links kept inside
    fresh = {}
    for n in [n for n in model_names if below(n, src) and n != src]:
        rel = n[len(src) + 1:] if src else n
        old = model_names[n]
        if old not in fresh:
            fresh[old] = next_ino[0]; next_ino[0] += 1
            model_data[fresh[old]] = bytearray(model_data[old])
        model_names[dst + "/" + rel] = fresh[old]
    for v in [v for v in model_vols if below(v, src) and v != src]:
        model_vols.add(dst + "/" + (v[len(src) + 1:] if src else v))

def drop_names(d, keep_root=False):
    for n in [n for n in model_names if below(n, d) and n != d]:
        ino = model_names.pop(n)
        if ino not in model_names.values():
            del model_data[ino]
    for v in [v for v in model_vols if below(v, d) and (v != d or not keep_root)]:
        model_vols.discard(v)
    if not keep_root:
        model_snaps.pop(d, None)

def op_snap():
    srcs = ["d0", "d1", "d0/e0"] + sorted(model_snaps)
    src = rng.choice(srcs)
    if len(model_snaps) >= 6:
        return op_snapdel()
    dst = f"snaps/{next_snap[0]}"; next_snap[0] += 1
    ro = rng.random() < 0.4
    cli("snapshot", *(["--readonly"] if ro else []), P(src), P(dst))
    base = model_snaps[src]["src"] if src in model_snaps else src
    copy_names(src, dst)
    model_snaps[dst] = {"src": base, "ro": ro}
    model_vols.add(dst)

def op_snapdel():
    if not model_snaps: return
    k = rng.choice(sorted(model_snaps))
    if model_snaps[k]["ro"] or rng.random() < 0.7:
        cli("snapshot", "delete", *(["--wait"] if rng.random() < 0.5 else []), P(k))
    else:
        shutil.rmtree(P(k))
    drop_names(k)

def op_snapchange():
    names = [n for n in model_names if n.startswith("snaps/")]
    if not names: return
    name = rng.choice(sorted(names))
    ro = is_ro(name)
    d = model_data[model_names[name]]
    what = rng.choice(["write", "truncate", "unlink"])
    if what == "unlink":
        if ro:
            return expect_errno(errno.EROFS, os.unlink, P(name))
        os.unlink(P(name))
        ino = model_names.pop(name)
        if ino not in model_names.values():
            del model_data[ino]
        return
    if what == "truncate":
        size = rng.choice([0, len(d) // 2, len(d) + 3000])
        if ro:
            return expect_errno(errno.EROFS, os.truncate, P(name), size)
        os.truncate(P(name), size)
        if size < len(d): del d[size:]
        else: d.extend(b"\0" * (size - len(d)))
        return
    if ro:
        return expect_errno(errno.EROFS, os.open, P(name), os.O_WRONLY)
    off = rng.choice([0, len(d), rng.randrange(0, 70000)])
    buf = rnd_bytes(rng.choice([1, 4096, rng.randrange(1, 50000)]))
    fd = os.open(P(name), os.O_WRONLY)
    os.pwrite(fd, buf, off)
    os.close(fd)
    if len(d) < off + len(buf):
        d.extend(b"\0" * (off + len(buf) - len(d)))
    d[off:off + len(buf)] = buf

def op_restore():
    cands = sorted(k for k, v in model_snaps.items() if v["src"] in ("d0", "d1", "d0/e0"))
    if not cands: return
    k = rng.choice(cands)
    target = model_snaps[k]["src"]
    out = json.loads(cli("snapshot", "restore", "--json", P(k), P(target)))
    prev = out["previous"]
    assert os.path.dirname(prev) == os.path.dirname(P(target)), prev
    # the old content, now under prev: gone from the model, then deleted
    was_vol = target in model_vols
    drop_names(target, keep_root=True)
    model_vols.discard(target)
    if was_vol:
        cli("snapshot", "delete", prev)
    else:
        shutil.rmtree(prev)
    copy_names(k, target)
    model_vols.add(target)

def op_fsync():
    global saved
    name = existing()
    if name:
        fd = os.open(P(name), os.O_RDONLY); os.fsync(fd); os.close(fd)
    else:
        fd = os.open(MNT, os.O_RDONLY); os.fsync(fd); os.close(fd)
    saved = snapshot()

def op_kill():
    global model_names, model_data, model_snaps, model_vols
    kill9()
    fsck()
    model_names, model_data, model_snaps, model_vols = snapshot_restore(saved)
    mount()
    check_all("state after kill -9 equals the last fsync")

def snapshot_restore(s):
    return (dict(s[0]), {k: bytearray(v) for k, v in s[1].items()},
            {k: dict(v) for k, v in s[2].items()}, set(s[3]))

def op_remount():
    global saved
    umount()
    fsck()
    mount()
    saved = snapshot()
    check_all("state after a clean remount")

OPS = [(op_write, 30), (op_truncate, 6), (op_punch, 6), (op_clone, 12), (op_rename, 8),
       (op_link, 5), (op_unlink, 6), (op_fsync, 6), (op_kill, 2), (op_remount, 1),
       (op_snap, 3), (op_snapdel, 1), (op_snapchange, 6), (op_restore, 1)]
weights = [w for _, w in OPS]
try:
    mount()
    for d in DIRS + ["snaps"]:
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
