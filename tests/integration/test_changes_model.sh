#!/usr/bin/env bash
# Change journal model test with daemon kills: a random mix of creates,
# writes, truncates, renames (of files and of directories, over existing
# names too), hard links, unlinks, mkdir/rmdir, chmod, xattrs, fsyncs
# (each one takes a cursor and remembers the tree it describes) and
# kill -9 of the daemon.  After each kill, replaying `reflinkfs changes
# --json --since C` from every cursor C taken so far must turn the tree
# at C into exactly the surviving tree (names and inodes), and name
# every inode whose data, mode or xattrs changed; a record delivered
# once keeps its seq forever (same seq, same change, across kills), new
# changes get higher seqs, and uncommitted changes are never delivered.
# Replay with RFS_SEED=N (RFS_STEPS=N sets the number of steps).
. "$(dirname "$0")/lib.bash"
rfs_seed 400
rfs_pool_setup 256M
python3 - "$RFS_BIN" "$POOL" "$MNT" "$SEED" "$STEPS" <<'PY'
import errno, hashlib, json, os, random, signal, stat, subprocess, sys, time

BIN, POOL, MNT, SEED, STEPS = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
rng = random.Random(SEED)
passed = failed = 0
daemon = None

def mounted():
    return subprocess.call(["mountpoint", "-q", MNT]) == 0

def mount():
    global daemon
    # commit=3600: nothing commits but fsync, so a cursor taken right
    # after an fsync describes exactly the tree seen then.
    daemon = subprocess.Popen([BIN, "mount", "-f", "-o", "commit=3600,no_writeback", POOL, MNT],
                              stderr=open(os.path.join(os.path.dirname(POOL), "daemon.log"), "a"))
    for _ in range(200):
        if mounted():
            return
        if daemon.poll() is not None:
            break
        time.sleep(0.05)
    raise RuntimeError("mount failed (see daemon.log)")

def kill9():
    global daemon
    os.kill(daemon.pid, signal.SIGKILL)  # only the daemon this test started
    daemon.wait()
    daemon = None
    if subprocess.call(["fusermount3", "-u", MNT], stderr=subprocess.DEVNULL):
        subprocess.call(["umount", "-l", MNT])

def P(rel):
    return os.path.join(MNT, rel) if rel else MNT

def tree():
    """path -> (st_ino, kind, mode, content hash, xattrs) of the mount."""
    out = {}
    for d, dirs, files in os.walk(MNT):
        for n in dirs + files:
            p = os.path.join(d, n)
            rel = os.path.relpath(p, MNT)
            st = os.lstat(p)
            h = xa = None
            if stat.S_ISREG(st.st_mode):
                h = hashlib.sha1(open(p, "rb").read()).hexdigest()
                xa = tuple(sorted((k, os.getxattr(p, k)) for k in os.listxattr(p)))
            out[rel] = (st.st_ino, "d" if stat.S_ISDIR(st.st_mode) else "f",
                        stat.S_IMODE(st.st_mode), h, xa)
    return out

def changes(since):
    r = subprocess.run([BIN, "changes", "--json", "--since", since, MNT],
                       capture_output=True, text=True)
    assert r.returncode == 0, f"changes --since {since}: exit {r.returncode}: {r.stderr}"
    lines = [json.loads(l) for l in r.stdout.splitlines()]
    assert lines and "cursor" in lines[-1], "no cursor line last"
    return lines[:-1], lines[-1]["cursor"]

def ok(what):
    global passed
    passed += 1
    print(f"ok   {what}")

def fail(what):
    global failed
    failed += 1
    print(f"FAIL {what} (replay: RFS_SEED={SEED} RFS_STEPS={STEPS})")
    raise SystemExit(finish())

def finish():
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0

# ---- replay: apply journal records to a tree's names ----
def replay(names, recs):
    """names: path -> st_ino.  Returns the new names and the inodes named
    by data / attr / xattr records."""
    names = dict(names)
    touched = {"data": set(), "attr": set(), "xattr": set()}
    for r in recs:
        k, p = r["kind"], r["path"]
        for a in r.get("also", []):  # merged into this record (same commit)
            touched[a].add(r["ino"])
        if k in ("create", "mkdir", "symlink", "mknod", "mkfifo", "link"):
            assert p not in names, f"seq {r['seq']}: {k} of existing {p}"
            names[p] = r["ino"]
        elif k in ("unlink", "rmdir"):
            assert p in names, f"seq {r['seq']}: {k} of missing {p}"
            del names[p]
            for q in [q for q in names if q.startswith(p + "/")]:
                raise AssertionError(f"seq {r['seq']}: rmdir {p} with {q} below")
        elif k == "rename":
            old = r["old_path"]
            assert old in names, f"seq {r['seq']}: rename of missing {old}"
            moved = {q: i for q, i in names.items() if q == old or q.startswith(old + "/")}
            for q in list(names):
                if q == p or q.startswith(p + "/"):
                    del names[q]  # replaced (an empty directory or a file)
            for q in moved:
                names.pop(q, None)
            for q, i in moved.items():
                names[p + q[len(old):]] = i
        elif k in touched:
            if p is not None:
                assert names.get(p) == r["ino"], f"seq {r['seq']}: {k} of {p}: ino {r['ino']} is not that name's ({names.get(p)})"
            touched[k].add(r["ino"])
        else:
            raise AssertionError(f"seq {r['seq']}: unexpected kind {k}")
    return names, touched

# ---- random operations ----
DIRS0 = ["a", "b", "a/c"]
FILES = ["f0", "f1", "f2", "f3"]
SUBDIRS = ["", "a", "b", "a/c", "b/c", "x", "a/x"]

def live_dirs():
    return [""] + sorted(p for p in tree_names() if os.path.isdir(P(p)))

def tree_names():
    out = []
    for d, dirs, files in os.walk(MNT):
        for n in dirs + files:
            out.append(os.path.relpath(os.path.join(d, n), MNT))
    return out

def some_file():
    fs = [p for p in tree_names() if os.path.isfile(P(p))]
    return rng.choice(sorted(fs)) if fs else None

def new_name():
    d = rng.choice(live_dirs())
    return os.path.join(d, rng.choice(FILES)) if d else rng.choice(FILES)

def op_write():
    p = rng.choice([new_name(), some_file() or new_name()])
    if os.path.isdir(P(p)):
        return
    fd = os.open(P(p), os.O_WRONLY | os.O_CREAT, 0o644)
    os.pwrite(fd, rng.randbytes(rng.choice([1, 4096, rng.randrange(1, 70000)])),
              rng.choice([0, rng.randrange(0, 100000)]))
    os.close(fd)

def op_truncate():
    p = some_file()
    if p:
        os.truncate(P(p), rng.choice([0, rng.randrange(0, 50000)]))

def op_rename():
    src = some_file() if rng.random() < 0.7 else rng.choice(["a/c", "b/c", "x", "a/x"])
    if not src or not os.path.exists(P(src)):
        return
    if os.path.isdir(P(src)):
        dst = rng.choice(["a/c", "b/c", "x", "a/x"])
    else:
        dst = new_name()
    try:
        os.rename(P(src), P(dst))
    except OSError as e:
        assert e.errno in (errno.EISDIR, errno.ENOTDIR, errno.ENOTEMPTY, errno.EINVAL,
                           errno.ENOENT, errno.EEXIST), repr(e)

def op_link():
    src = some_file()
    dst = new_name()
    if src and not os.path.lexists(P(dst)):
        os.link(P(src), P(dst))

def op_unlink():
    p = some_file()
    if p:
        os.unlink(P(p))

def op_mkdir():
    d = rng.choice(["x", "a/x", "b/c", "a/c"])
    if os.path.isdir(P(os.path.dirname(d)) or MNT) and not os.path.lexists(P(d)):
        os.mkdir(P(d))

def op_rmdir():
    d = rng.choice(["x", "a/x", "b/c", "a/c"])
    try:
        os.rmdir(P(d))
    except OSError as e:
        assert e.errno in (errno.ENOENT, errno.ENOTEMPTY), repr(e)

def op_chmod():
    p = some_file()
    if p:
        os.chmod(P(p), rng.choice([0o600, 0o644, 0o640, 0o755]))

def op_xattr():
    p = some_file()
    if p:
        os.setxattr(P(p), "user.k" + str(rng.randrange(2)), rng.randbytes(rng.randrange(1, 40)))

cursors = []     # (cursor, tree at it)
seqs = {}        # seq -> (kind, path, old_path, ino): every record delivered
max_seq = [0]

def remember(recs, why):
    for r in recs:
        key = (r["kind"], r["path"], r.get("old_path"), r["ino"])
        if r["seq"] in seqs and seqs[r["seq"]] != key:
            fail(f"{why}: seq {r['seq']} was {seqs[r['seq']]}, now {key}")
        seqs[r["seq"]] = key
        max_seq[0] = max(max_seq[0], r["seq"])

def op_fsync():
    fd = os.open(MNT, os.O_RDONLY); os.fsync(fd); os.close(fd)
    since = cursors[-1][0] if cursors else ""
    recs, cur = changes(since)
    remember(recs, "after fsync")
    t = tree()
    if cursors:
        check_replay(cursors[-1], recs, t, "since the previous fsync")
    cursors.append((cur, t))

def check_replay(c, recs, now, why):
    names0 = {p: v[0] for p, v in c[1].items()}
    try:
        got, touched = replay(names0, recs)
        want = {p: v[0] for p, v in now.items()}
        if got != want:
            extra = sorted(set(got.items()) - set(want.items()))
            missing = sorted(set(want.items()) - set(got.items()))
            raise AssertionError(f"replayed names differ: replay-only {extra[:5]} tree-only {missing[:5]}")
        before = {}
        for p, v in c[1].items():
            before.setdefault(v[0], v)
        for p, v in now.items():
            b = before.get(v[0])
            if v[1] != "f" or not b:
                continue
            if b[3] != v[3]:
                assert v[0] in touched["data"], f"{p}: content changed, no data record"
            if b[2] != v[2]:
                assert v[0] in touched["attr"], f"{p}: mode changed, no attr record"
            if b[4] != v[4]:
                assert v[0] in touched["xattr"], f"{p}: xattrs changed, no xattr record"
    except AssertionError as e:
        fail(f"{why}: {e}")

kills = [0]

def op_kill():
    # Uncommitted changes: never delivered, lost by the kill.
    os.close(os.open(P("uncommitted"), os.O_WRONLY | os.O_CREAT, 0o644))
    recs, _ = changes(cursors[-1][0])
    if any(r["path"] == "uncommitted" for r in recs):
        fail("an uncommitted change was delivered")
    kill9()
    kills[0] += 1
    mount()
    now = tree()
    last = cursors[-1]
    if {p: v for p, v in now.items()} != last[1]:
        fail(f"kill {kills[0]}: the surviving tree is not the last fsync's")
    for i, c in enumerate(cursors):
        recs, _ = changes(c[0])
        remember(recs, f"kill {kills[0]}: replay from cursor {i}")
        check_replay(c, recs, now, f"kill {kills[0]}: replay from cursor {i} of {len(cursors)}")
    ok(f"kill {kills[0]}: replay from each of {len(cursors)} cursors gives the surviving tree")
    # A new change gets a seq above every seq delivered before.
    before = max_seq[0]
    os.close(os.open(P("after-kill"), os.O_WRONLY | os.O_CREAT, 0o644))
    os.unlink(P("after-kill"))
    fd = os.open(MNT, os.O_RDONLY); os.fsync(fd); os.close(fd)
    recs, cur = changes(cursors[-1][0])
    new = [r for r in recs if r["path"] == "after-kill"]
    if len(new) != 2 or min(r["seq"] for r in new) <= before:
        fail(f"kill {kills[0]}: new change seqs {[r['seq'] for r in new]} not above {before}")
    remember(recs, "after kill")
    cursors.append((cur, tree()))
    # Keep the replays short: the last few cursors and the first.
    if len(cursors) > 6:
        del cursors[1:-5]

OPS = [(op_write, 25), (op_truncate, 5), (op_rename, 10), (op_link, 5), (op_unlink, 6),
       (op_mkdir, 4), (op_rmdir, 3), (op_chmod, 4), (op_xattr, 4), (op_fsync, 8), (op_kill, 2)]
weights = [w for _, w in OPS]
try:
    mount()
    for d in DIRS0:
        os.makedirs(P(d), exist_ok=True)
    op_fsync()
    for step in range(STEPS):
        op = rng.choices([o for o, _ in OPS], weights)[0]
        try:
            op()
        except SystemExit:
            raise
        except Exception as e:
            fail(f"step {step} {op.__name__}: {e!r}")
    op_fsync()
    op_kill()
    ok(f"{STEPS} steps, {kills[0]} kills, {len(seqs)} records checked")
    subprocess.check_call(["fusermount3", "-u", MNT])
    daemon.wait(timeout=120)
    r = subprocess.run([BIN, "fsck", POOL], capture_output=True, text=True)
    if r.returncode != 0:
        fail("fsck: " + r.stdout + r.stderr)
    ok("fsck clean")
    daemon = None
finally:
    if daemon is not None:
        try:
            os.kill(daemon.pid, signal.SIGKILL); daemon.wait()
        except ProcessLookupError:
            pass
sys.exit(finish())
PY
