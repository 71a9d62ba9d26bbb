#!/usr/bin/env bash
# READ and WRITE answered past libfuse (src/fuse/fastpath.c): the request
# hook decodes them and replies itself.  Checked here against the same
# operations on a native file (ext4, the scratch directory): O_DIRECT
# writes of 4 KiB to 1 MiB (each a WRITE request of its own, max_write is
# 1 MiB) and unaligned ones, buffered writes of odd sizes at odd offsets,
# appends, truncates and holes; O_DIRECT and buffered reads that cross
# EOF or start past it (short and empty replies); many requests in
# flight at once.  The replies go through the reply hook (the request
# counts and times of RFS_IOC_REQ_STATS / RFS_IOC_REQ_TIMES grow), an
# error comes back as the error (EFBIG, ENOSPC on a full pool, with the
# daemon serving on and fsck clean), and what must not take the fast
# path does not: a mount with -d (libfuse logs the READs and WRITEs) and
# a write by a user without CAP_FSETID (FUSE_WRITE_KILL_SUIDGID: the
# set-user-ID bit is cleared and the data written).  Where the kernel
# offers FUSE over io_uring, the fast path's replies go into ring
# entries too.
source "$(dirname "$0")/lib.bash"
rfs_setup 1G -o allow_other,suid
cd "$SCRATCH" || exit 1

NATIVE=$SCRATCH/native
mkdir -p "$NATIVE"
# A request never answered leaves its caller waiting in the kernel where
# no signal ends it (a synchronous O_DIRECT write): after 150 s the
# test's FUSE connections are aborted and, 10 s later, the daemons it
# started ($SCRATCH/daemons) that are still there are killed, so the
# hang fails the test then instead of at the runner's timeout.
watchdog() {
	local i m p
	for i in $(seq 150); do
		sleep 1
		[ -d "$SCRATCH" ] || return 0
	done
	for m in $(awk -v s="$SCRATCH/" 'index($5, s) == 1 && index($0, " - fuse") {print $5}' /proc/self/mountinfo); do
		echo "watchdog: a request on $m went unanswered for 150 s: connection aborted"
		abort_conn "$(fuse_conn_of "$m")"
	done
	sleep 10
	for p in $(cat "$SCRATCH/daemons"); do
		# still this test's daemon (its command line names the pool)
		tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -qF "$SCRATCH/" || continue
		echo "watchdog: daemon $p killed"
		kill -9 "$p"
	done
}
echo "$DAEMON_PID" >"$SCRATCH/daemons"
watchdog >"$SCRATCH/watchdog.log" 2>&1 &
WATCHDOG=$!
P=/sys/module/fuse/parameters/enable_uring
OLD=
fp_exit() {
	kill "$WATCHDOG" 2>/dev/null
	rfs_cleanup
	if [ -n "$OLD" ]; then echo "$OLD" >"$P"; fi
}
trap fp_exit EXIT
# The system's python: a version manager's shim costs ~0.4 s a start.
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3

# fp.py MNT_FILE NATIVE_FILE SEED OP...: each OP applied to both files,
# the same random bytes; on the mount "d" and "A" use O_DIRECT, on the
# native file everything is buffered.  Prints the O_DIRECT writes made.
#   d:OFF:LEN  pwrite      b:OFF:LEN  buffered pwrite
#   A:LEN      O_DIRECT append (O_APPEND)   a:LEN  buffered append
#   m:OFF:LEN  store through a shared mapping, msync
#   t:SIZE     truncate
cat >"$SCRATCH/fp.py" <<'EOF'
import mmap, os, random, sys
mf, nf, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
rng = random.Random(seed)
direct = 0
def aligned(data):
    m = mmap.mmap(-1, max(4096, (len(data) + 4095) & ~4095))
    m[:len(data)] = data
    return memoryview(m)[:len(data)]
def put(path, data, off, flags, odirect):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | flags | (os.O_DIRECT if odirect else 0), 0o644)
    try:
        buf = aligned(data) if odirect else data
        w = os.write(fd, buf) if off is None else os.pwrite(fd, buf, off)
    finally:
        os.close(fd)
    if w != len(data):
        sys.exit(f"{path}: short write {w} of {len(data)} at {off}")
for op in sys.argv[4:]:
    kind, *a = op.split(":")
    a = [int(x, 0) for x in a]
    if kind in ("d", "b"):
        data = rng.randbytes(a[1])
        put(mf, data, a[0], 0, kind == "d")
        put(nf, data, a[0], 0, False)
        direct += kind == "d"
    elif kind in ("A", "a"):
        data = rng.randbytes(a[0])
        put(mf, data, None, os.O_APPEND, kind == "A")
        put(nf, data, None, os.O_APPEND, False)
        direct += kind == "A"
    elif kind == "m":
        # a store through a shared mapping (the file covers it), msync:
        # WRITEs the kernel sends from the page cache
        off, n = a
        data = rng.randbytes(n)
        fd = os.open(mf, os.O_RDWR)
        base = off & ~(mmap.PAGESIZE - 1)
        mm = mmap.mmap(fd, off + n - base, offset=base)
        mm[off - base:off - base + n] = data
        mm.flush()
        mm.close()
        os.close(fd)
        put(nf, data, off, 0, False)
    elif kind == "t":
        for f in (mf, nf):
            fd = os.open(f, os.O_WRONLY | os.O_CREAT, 0o644)
            os.ftruncate(fd, a[0])
            os.close(fd)
    else:
        sys.exit(f"bad op {op}")
print(direct)
EOF

# rd.py MNT_FILE NATIVE_FILE: reads of the mount's file, O_DIRECT and
# buffered, against preads of the native one: the whole file and more,
# reads across EOF, at EOF, past it, unaligned ones.  Each must return
# the native bytes, as many.  Prints the O_DIRECT reads made; fails also
# if no read came back short or empty (what the test is for).
cat >"$SCRATCH/rd.py" <<'EOF'
import mmap, os, sys
mf, nf = sys.argv[1:3]
size = os.stat(nf).st_size
if os.stat(mf).st_size != size:
    sys.exit(f"size {os.stat(mf).st_size}, native {size}")
reads = [(0, size + 4096), (0, 1 << 20), (max(0, size - 10), 4096),
         (size & ~4095, 8192), (size, 4096), (size + 1, 1), (size + 65536, 4096),
         (1, 5000), (4095, 2), (size // 2, 131072), (0, 4096)]
short = empty = direct = 0
nfd = os.open(nf, os.O_RDONLY)
dfd = os.open(mf, os.O_RDONLY | os.O_DIRECT)
bfd = os.open(mf, os.O_RDONLY)
for off, n in reads:
    want = os.pread(nfd, n, off)
    m = mmap.mmap(-1, max(4096, (n + 4095) & ~4095))
    got = os.preadv(dfd, [memoryview(m)[:n]], off)
    direct += 1
    if m[:got] != want:
        sys.exit(f"O_DIRECT read of {n} at {off} (size {size}): {got} bytes, "
                 f"want {len(want)}, same bytes: {m[:min(got, len(want))] == want[:min(got, len(want))]}")
    b = os.pread(bfd, n, off)
    if b != want:
        sys.exit(f"buffered read of {n} at {off} (size {size}): {len(b)} bytes, want {len(want)}")
    short += 0 < len(want) < n
    empty += len(want) == 0
if not short or not empty:
    sys.exit(f"no short ({short}) or empty ({empty}) read: the read set is wrong")
print(direct)
EOF

# stats.py MNT: "READ WRITE READ_ns WRITE_ns" of the daemon
cat >"$SCRATCH/stats.py" <<'EOF'
import array, fcntl, os, sys
RFS_IOC_REQ_STATS = (2 << 30) | (512 << 16) | (ord("R") << 8) | 40
RFS_IOC_REQ_TIMES = (2 << 30) | (520 << 16) | (ord("R") << 8) | 41
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)
c = array.array("Q", [0] * 64)
t = array.array("Q", [0] * 65)
fcntl.ioctl(fd, RFS_IOC_REQ_STATS, c, True)
fcntl.ioctl(fd, RFS_IOC_REQ_TIMES, t, True)
os.close(fd)
print(c[15], c[16], t[15], t[16])
EOF
stats() { "$PY" "$SCRATCH/stats.py" "$MNT"; }
fail_with() {
	echo "$1"
	return 1
}

# same NAME: $MNT/NAME equals $NATIVE/NAME, read with O_DIRECT and
# buffered, and all the EOF reads of rd.py agree.
DREADS=0
same() {
	local m=$MNT/$1 n=$NATIVE/$1
	check "$1: O_DIRECT read equals native ($(stat -c %s "$n") bytes)" \
		bash -c "dd if='$m' iflag=direct bs=1M status=none | cmp - '$n'"
	check "$1: buffered read equals native" cmp "$m" "$n"
	local out
	if out=$("$PY" "$SCRATCH/rd.py" "$m" "$n" 2>&1); then
		DREADS=$((DREADS + out))
		check "$1: reads across, at and past EOF (short and empty replies) equal native" true
	else
		check "$1: reads across, at and past EOF (short and empty replies) equal native" \
			fail_with "$out"
	fi
}
DWRITES=0
# ops NAME SEED OP...: apply to $MNT/NAME and $NATIVE/NAME
ops() {
	local name=$1 seed=$2 out
	shift 2
	if out=$("$PY" "$SCRATCH/fp.py" "$MNT/$name" "$NATIVE/$name" "$seed" "$@" 2>&1); then
		DWRITES=$((DWRITES + out))
	else
		check "$name: writes ($*)" fail_with "$out"
	fi
}

s0=$(stats)
# ---- data, against the native file
log "== data (t=${SECONDS}s)"
# O_DIRECT: 4 KiB, 12 KiB, 128 KiB, 1 MiB at aligned offsets, over each
# other, across 1 MiB boundaries, leaving a hole (2 MiB..3 MiB)
ops d1 1 d:0:4096 d:8192:12288 d:65536:131072 d:1048576:1048576 d:3145728:4096 \
	d:4096:12288 d:0:131072 d:2093056:1048576 d:12288:4096 d:3149824:1048576
same d1
# unaligned O_DIRECT (FUSE takes any), and buffered odd ones over them
ops d1 2 d:4097:1000 d:1:1 d:4198399:5000 b:5000:3 b:1048575:2 d:1044480:8192 b:3149823:2
same d1
# buffered writes of odd sizes at odd offsets, appends (buffered and
# O_DIRECT) to a file of odd size
ops b1 3 b:4097:1000 b:0:1 a:777 a:3 b:70001:5000 b:74000:2000 a:1 b:1:4094 A:4096 A:12345 a:5
same b1
# holes: a file extended by truncate, written in the middle and at its
# start; a file cut inside a block and extended again (the tail must read
# as zeros, not the old bytes)
ops s1 4 t:10485760 d:8388608:4096 d:0:4096 b:9000001:10
same s1
ops s2 5 d:0:1048576 t:100 t:2097152 d:1576960:4096 t:1576961 b:1576970:7
same s2
check "s1: a hole reads as zeros with O_DIRECT (1 MiB at 1 MiB)" bash -c \
	"dd if='$MNT/s1' iflag=direct,skip_bytes skip=1048576 bs=1M count=1 status=none | cmp - <(head -c 1048576 /dev/zero)"
check "s2: the tail cut by truncate reads as zeros after it grew (100..1 MiB)" bash -c \
	"dd if='$MNT/s2' iflag=direct,skip_bytes skip=100 bs=1048476 count=1 status=none | cmp - <(head -c 1048476 /dev/zero)"
# larger than max_write (1 MiB): several requests for one call
ops big 12 d:0:4194304 b:4194303:3000001 d:1048576:2097152 b:12345:1048577
same big
# stores through a shared mapping: WRITEs from the page cache, then an
# O_DIRECT write over them (the kernel writes the dirty pages first)
ops mm 13 t:3000000 m:4097:10000 m:1048570:100000 b:500000:7 d:8192:4096 m:2999000:1000
same mm
# an empty file: reads of it are all empty
: >"$MNT/e0"
: >"$NATIVE/e0"
check "e0: O_DIRECT read of an empty file returns nothing" \
	test "$(dd if="$MNT/e0" iflag=direct bs=4k count=4 status=none | wc -c)" = 0

# many requests in flight: 4 writers of 2 MiB each at once (64 KiB
# O_DIRECT writes), then 4 readers at once
head -c $((8 << 20)) /dev/urandom >"$NATIVE/par"
pids=()
for i in 0 1 2 3; do
	dd if="$NATIVE/par" of="$MNT/par" bs=64k skip=$((i * 32)) seek=$((i * 32)) count=32 \
		oflag=direct conv=notrunc status=none &
	pids+=($!)
done
wait "${pids[@]}"
DWRITES=$((DWRITES + 128))
pids=()
for i in 0 1 2 3; do
	dd if="$MNT/par" of="$SCRATCH/par.$i" bs=128k skip=$((i * 16)) count=16 iflag=direct status=none &
	pids+=($!)
done
wait "${pids[@]}"
DREADS=$((DREADS + 64))
check "par: 4 O_DIRECT writers at once, 4 readers at once: native bytes" bash -c \
	"cat '$SCRATCH'/par.0 '$SCRATCH'/par.1 '$SCRATCH'/par.2 '$SCRATCH'/par.3 | cmp - '$NATIVE/par'"
same par
# libaio, 16 requests in flight, random 4 KiB writes then fio's verify
fio_verify() {
	timeout 60 fio --name=fp --filename="$MNT/fio" --size=4M --rw=randwrite --bs=4k \
		--direct=1 --ioengine=libaio --iodepth=16 --verify=crc32c --do_verify=1 \
		--verify_fatal=1 --randseed=7 --output="$SCRATCH/fio.out" || { tail -30 "$SCRATCH/fio.out"; return 1; }
}
check "fio: random 4 KiB O_DIRECT writes, 16 in flight (libaio), verified by reading back" fio_verify
DWRITES=$((DWRITES + 1024))
DREADS=$((DREADS + 1024))

# ---- the replies went through the reply hook (counted and timed)
log "== accounting (t=${SECONDS}s)"
s1=$(stats)
read -r r0 w0 rt0 wt0 <<<"$s0"
read -r r1 w1 rt1 wt1 <<<"$s1"
check "WRITE requests counted: $((w1 - w0)) for $DWRITES O_DIRECT writes" test $((w1 - w0)) -ge "$DWRITES"
check "READ requests counted: $((r1 - r0)) for $DREADS O_DIRECT reads" test $((r1 - r0)) -ge "$DREADS"
check "time on WRITE requests counted ($((wt1 - wt0)) ns)" test "$wt1" -gt "$wt0"
check "time on READ requests counted ($((rt1 - rt0)) ns)" test "$rt1" -gt "$rt0"
# exactly one request per 4 KiB O_DIRECT write, and its time
s2=$(stats)
ops c1 6 d:0:4096 d:4096:4096 d:8192:4096 d:12288:4096 d:16384:4096 \
	d:20480:4096 d:24576:4096 d:28672:4096 d:32768:4096 d:36864:4096
s3=$(stats)
read -r r2 w2 rt2 wt2 <<<"$s2"
read -r r3 w3 rt3 wt3 <<<"$s3"
check "10 O_DIRECT writes of 4 KiB: 10 WRITE requests ($((w3 - w2))), timed" \
	test $((w3 - w2)) -eq 10 -a "$wt3" -gt "$wt2"
same c1

# ---- an error through the fast path: EFBIG past the fs's largest file
# (2^62, below the kernel's limit: the daemon answers it)
log "== errors (t=${SECONDS}s)"
cat >"$SCRATCH/efbig.py" <<'EOF'
import errno, mmap, os, sys
path, odirect = sys.argv[1], sys.argv[2] == "direct"
fd = os.open(path, os.O_WRONLY | os.O_CREAT | (os.O_DIRECT if odirect else 0), 0o644)
m = mmap.mmap(-1, 4096)
try:
    os.pwrite(fd, m, 1 << 62)
except OSError as e:
    sys.exit(0 if e.errno == errno.EFBIG else f"errno {e.errno} ({e.strerror}), want EFBIG")
sys.exit("the write at 2^62 succeeded")
EOF
check "an O_DIRECT write at 2^62 fails with EFBIG" "$PY" "$SCRATCH/efbig.py" "$MNT/efbig" direct
check "a buffered write at 2^62 fails with EFBIG" "$PY" "$SCRATCH/efbig.py" "$MNT/efbig" buffered
check "the file the failed writes were for is empty" test "$(stat -c %s "$MNT/efbig")" = 0

# ---- writes that must go to libfuse: a user's write to a set-user-ID
# file (FUSE_WRITE_KILL_SUIDGID), against ext4
log "== set-user-ID (t=${SECONDS}s)"
U=(setpriv --reuid=65534 --regid=65534 --clear-groups)
chmod 755 "$SCRATCH"
chmod 777 "$NATIVE" "$MNT"
head -c 65536 /dev/urandom >"$SCRATCH/usrc"
chmod 644 "$SCRATCH/usrc"
# priv NAME MODE WHO DD_ARGS...: a root-owned file of 16 KiB of zeros
# with MODE, written by WHO (root or user) with dd DD_ARGS, on both;
# prints "mode(mount) mode(native)"
priv() {
	local name=$1 mode=$2 who=$3 d
	shift 3
	for d in "$MNT" "$NATIVE"; do
		rm -f "$d/$name"
		head -c 16384 /dev/zero >"$d/$name"
		chown 0:0 "$d/$name"
		chmod "$mode" "$d/$name"
		if [ "$who" = user ]; then
			"${U[@]}" dd if="$SCRATCH/usrc" of="$d/$name" conv=notrunc status=none "$@"
		else
			dd if="$SCRATCH/usrc" of="$d/$name" conv=notrunc status=none "$@"
		fi
	done
	echo "$(stat -c %a "$MNT/$name") $(stat -c %a "$NATIVE/$name")"
}
if "${U[@]}" true 2>/dev/null; then
	got=$(priv suid 4777 user bs=4k seek=1 count=2 oflag=direct)
	check "user O_DIRECT write to a set-user-ID file clears it (mount, ext4: $got)" test "$got" = "777 777"
	same suid
	got=$(priv suid2 4777 user bs=1000 seek=4097 count=3 oflag=seek_bytes)
	check "user buffered write at an odd offset to a set-user-ID file clears it ($got)" \
		test "$got" = "777 777"
	same suid2
	got=$(priv sgid 2777 user bs=128k count=1 oflag=direct)
	check "user O_DIRECT write clears set-group-ID of a group-executable file ($got)" \
		test "$got" = "777 777"
	same sgid
	got=$(priv plain 666 user bs=4k seek=3 count=5 oflag=direct)
	check "user O_DIRECT write to a plain file ($got)" test "$got" = "666 666"
	same plain
	# The kernel knows the file as one with nothing to clear (S_NOSEC,
	# from the first write) when it is made set-user-ID: only the
	# WRITE's FUSE_WRITE_KILL_SUIDGID says to clear it then.
	# zeros FILE: FILE anew, 16 KiB of zeros (on the mount and on ext4).
	zeros() { rm -f "$1" && head -c 16384 /dev/zero >"$1"; }
	for d in "$MNT" "$NATIVE"; do
		zeros "$d/late"
		chmod 777 "$d/late"
		"${U[@]}" dd if="$SCRATCH/usrc" of="$d/late" bs=4k count=1 oflag=direct conv=notrunc status=none
		chmod 4777 "$d/late"
		"${U[@]}" dd if="$SCRATCH/usrc" of="$d/late" bs=4k skip=1 seek=2 count=1 oflag=direct \
			conv=notrunc status=none
	done
	got="$(stat -c %a "$MNT/late") $(stat -c %a "$NATIVE/late")"
	check "user O_DIRECT write, chmod u+s, user O_DIRECT write: set-user-ID cleared ($got)" \
		test "$got" = "777 777"
	same late
	# struct vfs_cap_data, revision 2, effective, permitted cap_net_raw
	CAP=0x0100000200200000000000000000000000000000
	for d in "$MNT" "$NATIVE"; do
		zeros "$d/cap"
		setfattr -n security.capability -v "$CAP" "$d/cap"
		dd if="$SCRATCH/usrc" of="$d/cap" bs=4k seek=2 count=1 oflag=direct conv=notrunc status=none
	done
	capof() { getfattr -n security.capability "$1" >/dev/null 2>&1 && echo cap || echo nocap; }
	got="$(capof "$MNT/cap") $(capof "$NATIVE/cap")"
	check "root O_DIRECT write to a file with security.capability: as ext4 ($got)" \
		test "$got" = "nocap nocap"
	same cap
	got=$(priv rootsuid 4777 root bs=4k seek=1 count=2 oflag=direct)
	check "root O_DIRECT write keeps set-user-ID (CAP_FSETID) ($got)" test "$got" = "4777 4777"
	same rootsuid
else
	log "skip set-user-ID writes: setpriv cannot change user here"
fi

# ---- persistence: unmount, fsck, every file again after a remount
log "== remount (t=${SECONDS}s)"
check "unmount" rfs_umount
check "fsck clean after the writes" rfs_fsck

# ---- -d: libfuse serves READ and WRITE (and logs them)
log "== mount -d (t=${SECONDS}s)"
"$RFS_BIN" mount -d "$POOL" "$MNT" >"$SCRATCH/debug.log" 2>&1 &
DAEMON_PID=$!
echo "$DAEMON_PID" >>"$SCRATCH/daemons"
for i in $(seq 100); do
	mountpoint -q "$MNT" && break
	kill -0 "$DAEMON_PID" 2>/dev/null || break
	sleep 0.05
done
check "mount -d" mountpoint -q "$MNT"
if mountpoint -q "$MNT"; then
	for f in d1 b1 s1 s2 par big mm c1; do
		check "$f after the remount (-d): O_DIRECT read equals native" \
			bash -c "dd if='$MNT/$f' iflag=direct bs=1M status=none | cmp - '$NATIVE/$f'"
	done
	wl0=$(grep -c 'opcode: WRITE' "$SCRATCH/debug.log")
	rl0=$(grep -c 'opcode: READ ' "$SCRATCH/debug.log")
	DWRITES=0
	ops dbg 8 d:0:4096 d:8192:131072 d:1048576:1048576 d:4097:1000 b:70001:333
	DREADS=0
	same dbg
	wl1=$(grep -c 'opcode: WRITE' "$SCRATCH/debug.log")
	rl1=$(grep -c 'opcode: READ ' "$SCRATCH/debug.log")
	check "-d: libfuse logged the WRITEs ($((wl1 - wl0)) for $DWRITES O_DIRECT writes)" \
		test $((wl1 - wl0)) -ge "$DWRITES" -a "$DWRITES" -ge 4
	check "-d: libfuse logged the READs ($((rl1 - rl0)) for $DREADS O_DIRECT reads)" \
		test $((rl1 - rl0)) -ge "$DREADS" -a "$DREADS" -ge 10
	fusermount3 -u "$MNT"
	wait "$DAEMON_PID"
	check "-d: the daemon exits 0 after unmount" test $? = 0
	DAEMON_PID=
	check "fsck clean after -d" rfs_fsck
fi

# ---- ENOSPC through the fast path, on a pool of 64 MiB.  4 KiB writes
# fail whole; a 1 MiB write the pool has room for part of is answered
# short, which the kernel's asynchronous direct I/O (FUSE_ASYNC_DIO,
# fuse_get_res_by_io) reports as EIO, not as the short write, and then
# truncates the file back with a SETATTR, which must work on the full
# pool (the size is on a block boundary: no block to rewrite).  The
# file must hold what the writer was told was written.
log "== ENOSPC (t=${SECONDS}s)"
POOL=$SCRATCH/pool2
MNT=$SCRATCH/mnt2
NATIVE=$SCRATCH/native2
mkdir -p "$MNT" "$NATIVE"
"$RFS_BIN" mkfs --size 64M "$POOL" >/dev/null
MOUNT_ARGS=()
rfs_mount
echo "$DAEMON_PID" >>"$SCRATCH/daemons"
ops keep 9 d:0:1048576 d:1048576:1048576 b:2097152:4097
same keep
# fill_until BS: O_DIRECT writes of BS to $MNT/fill until they fail;
# FILL_RC (124: it hung), FILL_OUT (bytes dd says it wrote), fill.err
fill_until() {
	FILL_RC=0
	timeout 30 dd if=/dev/urandom of="$MNT/fill" bs="$1" count=$(((200 << 20) / $1)) \
		iflag=fullblock oflag=direct 2>"$SCRATCH/fill.err" || FILL_RC=$?
	FILL_OUT=$(sed -n 's/^\([0-9]*\) bytes.*/\1/p' "$SCRATCH/fill.err")
}
for bs in 4096 1048576; do
	fill_until $bs
	check "$bs-byte O_DIRECT writes until the pool is full: dd fails (rc $FILL_RC, not a timeout)" \
		test "$FILL_RC" != 0 -a "$FILL_RC" != 124
	if [ "$bs" = 4096 ]; then
		check "... with 'No space left on device', not EIO ($(grep -m1 error "$SCRATCH/fill.err"))" \
			bash -c "grep -q 'No space left on device' '$SCRATCH/fill.err' && ! grep -q 'Input/output error' '$SCRATCH/fill.err'"
	else
		# A known limit (docs/ARCHITECTURE.md, "Known limits"): the
		# short answer reaches the writer as EIO.  What must hold is
		# that it fails with one of the two and nothing else.
		check "... with 'No space left on device' or, for the short write, EIO ($(grep -m1 error "$SCRATCH/fill.err"))" \
			grep -Eq 'No space left on device|Input/output error' "$SCRATCH/fill.err"
	fi
	check "... the file got most of the pool ($(stat -c %s "$MNT/fill") bytes)" \
		test "$(stat -c %s "$MNT/fill")" -ge $((40 << 20))
	check "... its size is what dd was told was written (${FILL_OUT:-?} bytes)" \
		test "$(stat -c %s "$MNT/fill")" = "${FILL_OUT:-?}"
	check "... the daemon still runs" kill -0 "$DAEMON_PID"
	# After the 1 MiB round the truncate back gave up to 1 MiB again:
	# more than that must still not fit (EIO for a short 1 MiB write,
	# the known limit above).
	if [ "$bs" = 4096 ]; then
		more="bs=4k count=4" want='No space left on device'
	else
		more="bs=1M count=2" want='No space left on device|Input/output error'
	fi
	check "another O_DIRECT write on the full pool ($more): ENOSPC too" bash -c \
		"! timeout 30 dd if=/dev/urandom of='$MNT/more' $more oflag=direct status=none 2>'$SCRATCH/more.err' && grep -Eq '$want' '$SCRATCH/more.err'"
	check "the file written before reads back (O_DIRECT, buffered)" bash -c \
		"dd if='$MNT/keep' iflag=direct bs=1M status=none | cmp - '$NATIVE/keep' && cmp '$MNT/keep' '$NATIVE/keep'"
	check "the fill file reads back as far as it got (O_DIRECT, no error)" bash -c \
		"dd if='$MNT/fill' iflag=direct bs=1M status=none | wc -c | grep -qx '$(stat -c %s "$MNT/fill")'"
	rm -f "$MNT/fill" "$MNT/more"
	check "the deleted files' blocks are freed" rfs_wait_reclaim
done
ops after 10 d:0:4096 d:4096:1048576 b:1052673:999 d:2097152:131072
same after
check "unmount the full pool" rfs_umount
check "fsck clean after ENOSPC" rfs_fsck

# ---- the fast path's replies in ring entries (FUSE over io_uring), where
# the kernel has it.  The parameter is machine-wide: taken in turns with
# the other runs (lib.bash), put back as it was; skipped when another
# run has it for more than 5 s.
log "== io_uring (t=${SECONDS}s)"
if [ -w "$P" ]; then
	lock=/run/lock/reflinkfs-enable_uring.lock
	[ -d /run/lock ] || lock=/tmp/reflinkfs-enable_uring.lock
	exec {LOCKFD}>>"$lock"
	if flock -w 5 "$LOCKFD"; then
		OLD=$(cat "$P")
		echo Y >"$P"
		: >"$SCRATCH/daemon.log"
		rfs_mount
		echo "$DAEMON_PID" >>"$SCRATCH/daemons"
		if grep -q "FUSE over io_uring" "$SCRATCH/daemon.log"; then
			check "io_uring: ring threads serve ($(ring_threads))" test "$(ring_threads)" -gt 0
			u0=$(stats)
			DWRITES=0
			DREADS=0
			ops ring 11 d:0:4096 d:8192:12288 d:65536:131072 d:1048576:1048576 \
				d:4097:1000 b:3000001:4567 A:8192
			same ring
			same keep
			u1=$(stats)
			read -r r0 w0 rt0 wt0 <<<"$u0"
			read -r r1 w1 rt1 wt1 <<<"$u1"
			check "io_uring: WRITE and READ counted ($((w1 - w0)) for $DWRITES, $((r1 - r0)) for $DREADS) and timed" \
				test $((w1 - w0)) -ge "$DWRITES" -a $((r1 - r0)) -ge "$DREADS" -a \
				"$wt1" -gt "$wt0" -a "$rt1" -gt "$rt0"
		else
			log "skip io_uring: the daemon did not serve over it ($(tail -1 "$SCRATCH/daemon.log"))"
		fi
		check "io_uring: unmount" rfs_umount
		check "io_uring: fsck clean" rfs_fsck
		echo "$OLD" >"$P"
		OLD=
		flock -u "$LOCKFD"
	else
		log "skip io_uring: another run holds $lock"
	fi
else
	log "skip io_uring: the kernel has no FUSE over io_uring"
fi

check "no request went unanswered (watchdog: $(cat "$SCRATCH/watchdog.log"))" test ! -s "$SCRATCH/watchdog.log"
rfs_finish
