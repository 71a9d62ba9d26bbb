#!/usr/bin/env python3
"""Helper of test_watch.sh: the mark's write-back of mmap pages, over many
trials, through the raw protocol (docs/WATCH.md), so that only the
daemon's step is exercised: no client-side sync_file_range/syncfs runs
before RFS_IOC_WATCH_MARK here.

Usage: watch_mmap.py DIR TRIALS

Each trial, in a directory of its own: file a (8 KiB of 'a') and file b.
Page 0 of a is dirtied through a shared writable mapping (in this
process, or in a child process that keeps its mapping), never synced.
Then a and b are marked (or, every third trial, their directory), and:

1. fdatasync(a) writes back whatever of a is still dirty; a WRITE of
   page 0 after the mark was armed would give an event for a before
   fdatasync returns.  A write to b follows; events arrive in the order
   they were made, so every event before b's is checked: none may be
   a's.  (Deterministic: no timing is involved.)
2. Page 1 of a is dirtied after the mark and msync'd: exactly one event
   for a, kind write (the next dirty page after the mark is reported).
3. Both changes are stored: page 0 'B', page 1 'C' (nothing lost).

Prints one line per failed check and the counts at the end; exits 1
on any failure.  The 60 s socket timeout is a watchdog against hangs only.
"""
import fcntl
import mmap
import os
import socket
import struct
import sys

IOC_WATCH_ADDR = 0x80745232  # _IOR('R', 50, struct rfs_ioc_watch_addr)
IOC_WATCH_MARK = 0xC0205233  # _IOWR('R', 51, struct rfs_ioc_watch_mark)
WMSG_HELLO, WMSG_WELCOME, WMSG_EVENT = 1, 64, 65
KIND_WRITE = 1
EVENT_HDR = struct.Struct("=IIQQQII")  # struct rfs_wmsg_event
PAGE = 4096


def connect(path):
    fd = os.open(path, os.O_RDONLY)
    buf = bytearray(4 + 4 + 108)  # struct rfs_ioc_watch_addr
    fcntl.ioctl(fd, IOC_WATCH_ADDR, buf)
    os.close(fd)
    n, version = struct.unpack_from("=II", buf)
    if version != 1:
        raise SystemExit(f"watch protocol version {version}, expected 1")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.connect(b"\0" + bytes(buf[8:8 + n]))
    s.settimeout(60)
    s.send(struct.pack("=IIII", WMSG_HELLO, 1, 0, 0))
    msg = s.recv(4096)
    typ, err = struct.unpack_from("=Ii", msg)
    if typ != WMSG_WELCOME or err != 0:
        raise SystemExit(f"no watch: type {typ} err {err}")
    return s, bytes(msg[16:32])


def mark(token, path):
    fd = os.open(path, os.O_RDONLY)
    buf = bytearray(token + bytes(16))  # struct rfs_ioc_watch_mark
    fcntl.ioctl(fd, IOC_WATCH_MARK, buf)
    os.close(fd)


def events_until(s, ino):
    """The events read up to and including the first one of ino."""
    seen = []
    while True:
        msg = s.recv(65536)
        typ, kind, _id, _mark, eino, _flags, _plen = EVENT_HDR.unpack_from(msg)
        if typ != WMSG_EVENT:
            continue
        seen.append((eino, kind))
        if eino == ino:
            return seen


def main():
    base, trials = sys.argv[1], int(sys.argv[2])
    s, token = connect(base)
    failed = 0

    def check(ok, what, t):
        nonlocal failed
        if not ok:
            failed += 1
            print(f"trial {t}: {what}")

    for t in range(trials):
        d = os.path.join(base, f"t{t}")
        os.mkdir(d)
        a, b = os.path.join(d, "a"), os.path.join(d, "b")
        with open(a, "wb") as f:
            f.write(b"a" * 2 * PAGE)
        with open(b, "wb") as f:
            f.write(b"b\n")
        ia, ib = os.stat(a).st_ino, os.stat(b).st_ino
        fa = os.open(a, os.O_RDWR)
        child = None
        if t % 3 == 1:
            # Page 0 dirtied in another process's mapping, kept mapped.
            r, w = os.pipe()
            r2, w2 = os.pipe()
            child = os.fork()
            if child == 0:
                cm = mmap.mmap(fa, 2 * PAGE, mmap.MAP_SHARED)
                cm[0:PAGE] = b"B" * PAGE
                os.write(w, b"x")
                os.read(r2, 1)  # until the parent is done
                os._exit(0)
            os.read(r, 1)
        m = mmap.mmap(fa, 2 * PAGE, mmap.MAP_SHARED)
        if child is None:
            m[0:PAGE] = b"B" * PAGE
        if t % 3 == 2:
            mark(token, d)
        else:
            mark(token, a)
            mark(token, b)
        os.fdatasync(fa)
        fb = os.open(b, os.O_WRONLY)
        os.pwrite(fb, b"x", 0)
        os.close(fb)
        seen = events_until(s, ib)
        early = any(e[0] == ia for e in seen)
        check(not early,
              f"an event for a before b's: page 0, dirtied before the mark, "
              f"was written back after it (events {seen})", t)
        m[PAGE:2 * PAGE] = b"C" * PAGE
        m.flush()
        if not early:  # else a's one event is spent
            seen = events_until(s, ia)
            check(seen[-1][1] == KIND_WRITE and len(seen) == 1,
                  f"the page dirtied after the mark: expected one write "
                  f"event for a, got {seen}", t)
        data = os.pread(fa, 2 * PAGE, 0)
        check(data == b"B" * PAGE + b"C" * PAGE,
              "page 0 (before the mark) or page 1 (after it) not stored", t)
        m.close()
        if child is not None:
            os.write(w2, b"x")
            os.waitpid(child, 0)
            for x in (r, w, r2, w2):
                os.close(x)
        os.close(fa)
    s.close()
    print(f"trials: {trials}, failed checks: {failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
