#!/usr/bin/env python3
"""Count the allocated tree nodes of a pool by owner and level.

    poolscan.py POOL [--save NOW.json] [--before BEFORE.json]

Reads the committed state of POOL (a pool file; safe on a mounted pool
after `reflinkfs sync`, since only committed blocks are read): the newest
valid superblock, its bitmap copy, and the header of every allocated block
in [data_start, high_water).  Prints one line per (owner, level): nodes,
average fill of their 4096 bytes (header, slots and live item bytes).
--save writes the counts as JSON; --before takes such a file and adds the
difference to it per line.  --items also prints, per owner and first
key byte (and the item flags), the live items of the leaves and their
bytes (8-byte slot, key and value): where a step's new bytes went.
Format: docs/FORMAT.md ("Superblock", "Metadata
block header", "Trees").  A benchmark aid, not a checker: `reflinkfs fsck`
checks pools.
"""
import json
import struct
import sys

BS = 4096
OWNERS = {1: "catalog", 2: "refcount", 3: "dropq", 17: "volume", 18: "dir",
          19: "file", 20: "links", 21: "index", 22: "journal"}


def scan(path, items=False):
    with open(path, "rb") as f:
        best = None
        for b in range(4):
            f.seek(b * BS)
            d = f.read(BS)
            if len(d) < 168 or d[:8] != b"RFLNKFS\0":
                continue
            gen, = struct.unpack_from("<Q", d, 16)
            if best is None or gen > best[0]:
                best = (gen, d)
        if best is None:
            sys.exit("poolscan: %s: no superblock" % path)
        gen, sb = best
        bm_start, bm_blocks, data_start = struct.unpack_from("<QQQ", sb, 32)
        high_water, = struct.unpack_from("<Q", sb, 128)
        copy = gen % 2
        bits = bytearray()
        for p in range(bm_blocks):
            f.seek((bm_start + copy * bm_blocks + p) * BS)
            bits += f.read(BS)[40:]
        counts = {}
        for b in range(data_start, high_water):
            if not bits[b // 8] >> (b % 8) & 1:
                continue
            f.seek(b * BS)
            h = f.read(48)
            if len(h) < 48:
                continue
            magic, = struct.unpack_from("<I", h, 0)
            blk, = struct.unpack_from("<Q", h, 8)
            if magic != 0x52464D42 or blk != b or h[32] != 3:
                continue  # a data block
            owner, = struct.unpack_from("<Q", h, 24)
            n, dstart, frag = struct.unpack_from("<HHH", h, 40)
            used = 48 + 8 * n + (BS - dstart - frag)
            key = "%s/L%d" % (OWNERS.get(owner, str(owner)), h[33])
            c = counts.setdefault(key, [0, 0])
            c[0] += 1
            c[1] += used
            if items and h[33] == 0:
                f.seek(b * BS)
                d = f.read(BS)
                for i in range(n):
                    off, kl, vl, fl = struct.unpack_from("<HHHB", d, 48 + 8 * i)
                    k0 = d[off:off + 1]
                    k0 = chr(k0[0]) if k0 and 33 <= k0[0] < 127 else "%02x" % (k0[0] if k0 else 0)
                    ik = "items:%s/%s/f%d" % (OWNERS.get(owner, str(owner)), k0, fl)
                    c = counts.setdefault(ik, [0, 0])
                    c[0] += 1
                    c[1] += 8 + kl + vl
        return counts


def main():
    args = sys.argv[1:]
    if not args or args[0] in ("-h", "--help"):
        print(__doc__.strip())
        return
    opts = dict(zip(args[1::2], args[2::2]))
    items = "--items" in args
    if items:
        args.remove("--items")
        opts = dict(zip(args[1::2], args[2::2]))
    now = scan(args[0], items)
    before = {}
    if "--before" in opts:
        with open(opts["--before"]) as f:
            before = json.load(f)
    if "--save" in opts:
        with open(opts["--save"], "w") as f:
            json.dump(now, f)
    for k in sorted(set(now) | set(before)):
        n, used = now.get(k, [0, 0])
        if k.startswith("items:"):
            b = before.get(k, [0, 0])
            print("%-26s %8d items %10d bytes  %+8d items %+10d bytes"
                  % (k[6:], n, used, n - b[0], used - b[1]))
            continue
        b = before.get(k, [0, 0])[0]
        fill = 100.0 * used / (n * BS) if n else 0.0
        print("%-14s %8d nodes %5.1f%% full  %+8d" % (k, n, fill, n - b))


if __name__ == "__main__":
    main()
