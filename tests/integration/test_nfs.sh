#!/usr/bin/env bash
# A reflinkfs mount exported over NFS.  The kernel's nfsd cannot be used
# where the kernel lacks it (the test machine's does; see
# docs/ARCHITECTURE.md, "Finding an inode by number"), so this uses
# NFS-Ganesha, a userspace NFS server whose VFS backend reaches every
# file through name_to_handle_at / open_by_handle_at, and libnfs's client
# tools (nfs-ls, nfs-cp, nfs-cat), which need no kernel NFS client.
# NFSv3 for reads and writes; NFSv4 for a listing and a small file
# (libnfs 4.0's NFSv4 writes of more than a few bytes fail against
# Ganesha 4.3 on ext4 as well).  Ganesha keeps descriptors open, so the
# kernel keeps these inodes cached: handles of evicted inodes are
# test_handles.sh's business.
. "$(dirname "$0")/lib.bash"
for tool in ganesha.nfsd rpcbind nfs-ls nfs-cp nfs-cat ss; do
	if ! command -v "$tool" >/dev/null; then
		echo "$tool is missing (scripts/install-deps.sh installs it): skipping"
		exit 77
	fi
done
if [ "$(id -u)" -ne 0 ]; then
	echo "needs root (open_by_handle_at, rpcbind): skipping"
	exit 77
fi
rfs_setup 1G -o allow_other
cd "$SCRATCH" || exit 1
NFSPORT=20490
MNTPORT=20048
RPCBIND_PID=
GANESHA_PID=

stop_servers() {
	if [ -n "$GANESHA_PID" ]; then
		kill "$GANESHA_PID" 2>/dev/null
		wait "$GANESHA_PID" 2>/dev/null
		GANESHA_PID=
	fi
	if [ -n "$RPCBIND_PID" ]; then
		kill "$RPCBIND_PID" 2>/dev/null
		wait "$RPCBIND_PID" 2>/dev/null
		RPCBIND_PID=
	fi
}
trap 'stop_servers; rfs_cleanup' EXIT

listening() { ss -ltn "sport = :$1" | grep -q LISTEN; }
# Ganesha registers with the portmapper; start one unless one runs.
if ! listening 111; then
	rpcbind -f -w >"$SCRATCH/rpcbind.log" 2>&1 &
	RPCBIND_PID=$!
fi
cat >"$SCRATCH/ganesha.conf" <<EOF
NFS_CORE_PARAM {
	NFS_Port = $NFSPORT;
	MNT_Port = $MNTPORT;
	Bind_addr = 127.0.0.1;
	Protocols = 3, 4;
	Enable_NLM = false;
	Enable_RQUOTA = false;
	Enable_UDP = false;
}
NFSV4 { Graceless = true; }
EXPORT {
	Export_Id = 101;
	Path = $MNT;
	Pseudo = /rfs;
	Access_Type = RW;
	Squash = No_Root_Squash;
	SecType = sys;
	Protocols = 3, 4;
	FSAL { Name = VFS; }
}
LOG { Default_Log_Level = EVENT; }
EOF
ganesha_start() {
	ganesha.nfsd -F -L "$SCRATCH/ganesha.log" -f "$SCRATCH/ganesha.conf" \
		-p "$SCRATCH/ganesha.pid" &
	GANESHA_PID=$!
	local i
	for i in $(seq 600); do
		listening "$NFSPORT" && listening "$MNTPORT" && return 0
		kill -0 "$GANESHA_PID" 2>/dev/null || break
		sleep 0.1
	done
	echo "ganesha did not start:"
	tail -20 "$SCRATCH/ganesha.log"
	return 1
}
V3="version=3&nfsport=$NFSPORT&mountport=$MNTPORT"
V4="version=4&nfsport=$NFSPORT"
url3() { echo "nfs://127.0.0.1$MNT/$1?$V3"; }

mkdir -p "$MNT/d/sub"
echo hello-nfs >"$MNT/d/f"
head -c 3000000 /dev/urandom >"$SCRATCH/big"
check "Ganesha exports the reflinkfs mount" ganesha_start
check "NFSv3: list a directory" bash -c "nfs-ls '$(url3 d)' | grep -q ' f\$'"
check "NFSv3: read a file" bash -c "[ \"\$(nfs-cat '$(url3 d/f)')\" = hello-nfs ]"
check "NFSv3: write 3 MB" nfs-cp "$SCRATCH/big" "$(url3 d/big)"
check "... the mount holds the same bytes" cmp "$SCRATCH/big" "$MNT/d/big"
echo 2 >/proc/sys/vm/drop_caches
check "NFSv3: read it back after drop_caches" nfs-cp "$(url3 d/big)" "$SCRATCH/big.back"
check "... same bytes" cmp "$SCRATCH/big" "$SCRATCH/big.back"
mv "$MNT/d/big" "$MNT/d/sub/big.moved"
echo 2 >/proc/sys/vm/drop_caches
check "NFSv3: a file renamed on the server" bash -c "
	nfs-cp '$(url3 d/sub/big.moved)' '$SCRATCH/big.back2' && cmp '$SCRATCH/big' '$SCRATCH/big.back2'"
check "NFSv4: list the export" bash -c "nfs-ls 'nfs://127.0.0.1/rfs/d?$V4' | grep -q ' f\$'"
check "NFSv4: read a file" bash -c "[ \"\$(nfs-cat 'nfs://127.0.0.1/rfs/d/f?$V4')\" = hello-nfs ]"
stop_servers
check "unmount after the export" rfs_umount
check "fsck clean" rfs_fsck
rfs_finish
