#!/usr/bin/env python3
"""The inotify way on a tree: `inotifywait -r -m MNT` until it says
"Watches established." (one watch per directory: it reads every
directory of the tree first); prints that time and its peak RSS.
   inotify_setup.py MNT"""
import subprocess, sys, time, os
mnt = sys.argv[1]
t0 = time.monotonic()
p = subprocess.Popen(["inotifywait", "-r", "-m", "-e", "modify,create,delete,move", mnt],
                     stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
for line in p.stderr:
    if "Watches established" in line:
        break
t1 = time.monotonic()
hwm = None
for l in open(f"/proc/{p.pid}/status"):
    if l.startswith("VmHWM"): hwm = int(l.split()[1])
p.terminate(); p.wait()
print(f"inotify_setup_s: {t1-t0:.3f} s")
print(f"inotify_rss_kib: {hwm} KiB")
