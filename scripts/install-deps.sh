#!/usr/bin/env bash
# Install the Debian 12 packages reflinkfs needs to build, test, benchmark
# and demo.  Idempotent and silent when everything is already installed
# (checked with dpkg-query, without touching the network).
# Set RFS_SKIP_DEPS=1 to skip this step entirely.
set -euo pipefail

[ "${RFS_SKIP_DEPS:-0}" = 1 ] && exit 0

packages=(
	build-essential pkg-config libtsan2
	libfuse3-dev fuse3 liburing-dev
	libisal-dev libcmocka-dev liblmdb-dev
	fio xfsprogs btrfs-progs rsync git valgrind time attr acl python3
	inotify-tools
	nfs-ganesha nfs-ganesha-vfs libnfs-utils rpcbind
)

missing=()
for p in "${packages[@]}"; do
	status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
	[ "$status" = installed ] || missing+=("$p")
done
[ "${#missing[@]}" -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
	echo "install-deps: missing packages: ${missing[*]} (and no apt-get to install them)" >&2
	exit 1
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
	if command -v sudo >/dev/null 2>&1; then
		sudo=(sudo)
	else
		echo "install-deps: missing packages: ${missing[*]}; run as root or install sudo" >&2
		exit 1
	fi
fi

echo "install-deps: installing ${missing[*]}" >&2
"${sudo[@]}" apt-get update -qq >&2
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
	apt-get install -y -qq -o Dpkg::Use-Pty=0 --no-install-recommends "${missing[@]}" >&2
