#!/usr/bin/env python3
"""Change-to-delivery latency of `reflinkfs changes --follow`:
   follow_latency.py BIN MNT N
creates N files one at a time (at irregular intervals of 50 to 236 ms)
and measures from the create's return to the line naming it on the
follower's stdout.  Prints median and p99 in ms.  Each run makes its own
directory, so it can run again on the same mount."""
import os, subprocess, sys, time, json
bin_, mnt, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
cur = subprocess.run([bin_, "changes", "--json", mnt], capture_output=True, text=True, check=True).stdout.splitlines()[-1]
cur = json.loads(cur)["cursor"]
p = subprocess.Popen([bin_, "changes", "--follow", "--json", "--since", cur, mnt],
                     stdout=subprocess.PIPE, text=True, bufsize=1)
d = "lat%d" % os.getpid()
os.makedirs(os.path.join(mnt, d))
lat = []
for i in range(n):
    time.sleep(0.05 + (i % 7) * 0.031)  # irregular: not in step with commits
    name = f"{d}/f{i}"
    t0 = time.monotonic()
    os.close(os.open(os.path.join(mnt, name), os.O_WRONLY | os.O_CREAT, 0o644))
    for line in p.stdout:
        if f'"path":"{name}"' in line:
            lat.append((time.monotonic() - t0) * 1000)
            break
p.terminate(); p.wait()
lat.sort()
print(f"follow_latency_median_ms: {lat[len(lat)//2]:.1f} ms")
print(f"follow_latency_p99_ms: {lat[min(len(lat)-1, int(len(lat)*0.99))]:.1f} ms")
print(f"follow_latency_samples: {len(lat)} samples")
