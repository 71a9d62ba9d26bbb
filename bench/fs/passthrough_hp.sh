#!/usr/bin/env bash
# Print the path of libfuse's passthrough_hp example daemon, building it
# first when needed.  Debian ships no binary of it and libfuse3-dev's
# examples leave out the C++ sources, so it is built from the fuse3 source
# package (`apt-get source fuse3`, which needs a deb-src line in the apt
# sources) against the installed libfuse3, with g++.  The binary is kept
# in $RFS_PT_CACHE (default /var/tmp/rfs-passthrough_hp) for later runs.
# Exit 1 (and why on stderr) when it cannot be had.
set -euo pipefail
cache=${RFS_PT_CACHE:-/var/tmp/rfs-passthrough_hp}
out=$cache/passthrough_hp
if [ -x "$out" ]; then
	echo "$out"
	exit 0
fi
command -v g++ >/dev/null || { echo "passthrough_hp.sh: g++ is not installed" >&2; exit 1; }
mkdir -p "$cache"
src=$(mktemp -d "$cache/src.XXXXXX")
trap 'rm -rf "$src"' EXIT
if ! (cd "$src" && apt-get source --download-only fuse3 >&2); then
	echo "passthrough_hp.sh: 'apt-get source fuse3' failed: enable deb-src in /etc/apt/sources.list.d and run apt-get update" >&2
	exit 1
fi
tar -C "$src" -xf "$(ls "$src"/fuse3_*.orig.tar.* | grep -v '\.asc$')"
ex=$(echo "$src"/fuse-*/example)
g++ -O2 -std=c++17 -I"$ex" -o "$out.tmp" "$ex/passthrough_hp.cc" \
	$(pkg-config --cflags --libs fuse3) -lpthread >&2
mv "$out.tmp" "$out"
echo "$out"
