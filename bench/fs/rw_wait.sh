#!/usr/bin/env bash
# Does a reader of one file wait for a writer of another?  One fio job
# reads file r at random while another writes file w at random (4 KiB,
# libaio, queue depth 16, O_DIRECT, files of their own), on reflinkfs with
# its pool on tmpfs; meanwhile the daemon accounts what its READs waited
# for (`rfsbench readwaits`: time blocked on the pool lock, summed over
# all READs) and every write-lock span by holder.  The wait per READ and
# the write-lock time per WRITE are counted inside the daemon, so they
# move less with the machine's load than the IOPS do.  See "Parallel I/O"
# in bench/README.md.
#
#   bench/fs/rw_wait.sh [--keep] [--reps N] [--runtime S]
#     --keep       keep the temporary directory (pools, fio JSON, logs)
#     --reps N     repetitions (median; default 3)
#     --runtime S  seconds per run (default 5)
#
# stdout: "name: value unit" lines; progress on stderr.
#   rw_wait_read_iops, rw_wait_write_iops        IOPS of the two jobs
#   rw_wait_pool_us_per_read                      pool-lock wait per READ
#   rw_wait_reads_waited_1ms                      READs that waited > 1 ms
#   rw_wait_wrlock_us_per_write                   write-lock time per WRITE
#                                                 (the write operations')
# Environment:
#   RFS_BIN           the reflinkfs binary (default build/reflinkfs)
#   RFS_BIN_BEFORE    a second binary, run in turn with the first on a pool
#                     of its own: the same figures prefixed "before_"
#   RFS_FIO_BENCH_DIR a tmpfs directory (default /dev/shm)
#   RFS_MOUNT_OPTS    -o options for both mounts (say, nojournal)
set -euo pipefail
export LC_ALL=C
exec 3>&1 1>&2

root=$(cd "$(dirname "$0")/../.." && pwd)
me=rw_wait.sh
. "$root/bench/lib.bash"
keep=0 reps=3 runtime=5
bench_args 2,28 "keep reps= runtime=" "$@"
bench_bin
command -v fio >/dev/null || { echo "rw_wait.sh: fio is not installed (scripts/install-deps.sh)" >&2; exit 1; }
base=${RFS_FIO_BENCH_DIR:-/dev/shm}

mnt=""
bench_traps
bench_work "$base" rwwait
bench_rfsbench
bench_private_bin
bins="after"
if [ -n "${RFS_BIN_BEFORE:-}" ]; then
	cp "$RFS_BIN_BEFORE" "$work/bin/reflinkfs-before"
	bins="before after"
fi
binof() { [ "$1" = before ] && echo "$work/bin/reflinkfs-before" || echo "$work/bin/reflinkfs"; }

# run LABEL REP: a fresh pool, the two files laid out and committed, then
# the reader and the writer together; appends its figures to $work/vals.
run() {
	local label=$1 rep=$2 bin d daemon_log
	bin=$(binof "$label")
	d=$work/$label-$rep
	daemon_log=$d/daemon.log
	mkdir "$d" "$d/mnt"
	"$bin" mkfs --size 4G "$d/pool.img" >/dev/null
	mnt=$d/mnt
	rfs_mount "$d/pool.img" ${RFS_MOUNT_OPTS:+-o "$RFS_MOUNT_OPTS"}
	local common="--bs=4k --size=128M --ioengine=libaio --iodepth=16 --direct=1 --fallocate=none --directory=$mnt"
	fio --name=r $common --rw=randread --create_only=1 >/dev/null
	fio --name=w $common --rw=randwrite --create_only=1 >/dev/null
	"$bin" sync "$mnt" >/dev/null # the layout committed: no commit due at the start
	"$rb" readwaits "$mnt" start >/dev/null
	fio $common --time_based --runtime="$runtime" --output-format=json \
		--name=r --rw=randread --name=w --rw=randwrite >"$d/fio.json" 2>"$d/fio.err" ||
		{ log "fio failed: $(tail -3 "$d/fio.err")"; exit 1; }
	"$rb" readwaits "$mnt" stop >"$d/waits.txt"
	rfs_umount || true
	mnt=""
	python3 - "$d/fio.json" "$d/waits.txt" "$label" >>"$work/vals" <<'EOF'
import json, re, sys
text = open(sys.argv[1]).read()
jobs = json.loads(text[text.index("{"):])["jobs"]
r = next(j for j in jobs if j["jobname"] == "r")["read"]["iops"]
w = next(j for j in jobs if j["jobname"] == "w")
waits = open(sys.argv[2]).read()
m = dict(re.findall(r"(\w+)=(\S+)", waits.splitlines()[0]))
reads = int(m["reads"])
pool_us = int(m["sum_waits_us"].split("/")[0])
span = re.search(r"^wrlock write spans=(\d+) .* total_us=(\d+)", waits, re.M)
wr_us = int(span.group(2)) / max(int(span.group(1)), 1) if span else 0
print(sys.argv[3], int(r), int(w["write"]["iops"]), "%.2f" % (pool_us / max(reads, 1)),
      m["waited_1ms"], "%.2f" % wr_us)
EOF
	log "$label run $rep: $(tail -1 "$work/vals")"
}

log "reader and writer of two 128M files, ${runtime}s per run, $reps repetition(s): $bins"
: >"$work/vals"
for rep in $(seq "$reps"); do
	for label in $bins; do run "$label" "$rep"; done
done
for label in $bins; do
	pre=""
	[ "$label" = before ] && pre=before_
	col() { awk -v l="$label" -v c="$1" '$1 == l { printf "%s ", $c }' "$work/vals" | median_low; }
	fig "${pre}rw_wait_read_iops" "$(col 2)" IOPS
	fig "${pre}rw_wait_write_iops" "$(col 3)" IOPS
	fig "${pre}rw_wait_pool_us_per_read" "$(col 4)" us
	fig "${pre}rw_wait_reads_waited_1ms" "$(col 5)"
	fig "${pre}rw_wait_wrlock_us_per_write" "$(col 6)" us
done
