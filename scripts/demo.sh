#!/usr/bin/env bash
# `make demo`: show what reflinkfs can do today.  Until the mountable
# filesystem exists this runs the storage-engine demo (build/engine-demo,
# built from tools/engine_demo.c).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${RFS_BUILD:-build}

if [ -x "$build/engine-demo" ]; then
	exec "$build/engine-demo" "$@"
fi
echo "demo: no demo program has been built yet (tools/engine_demo.c does not exist)" >&2
exit 1
