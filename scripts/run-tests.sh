#!/usr/bin/env bash
# Run test programs and integration scripts one after another and print, as
# the very last line, "N passed, N failed" (", N skipped" is added when a
# script exits 77).  Exit status is non-zero when anything failed.
#
# Arguments: paths of test programs (built by make) and of *.sh scripts.
# A program path that does not exist did not build and counts as failed.
#
# Environment (set by the Makefile, all optional):
#   RFS_BUILD_FAILED  non-empty: the build failed, count one failure "build"
#   RFS_WRAPPER       command put in front of every program (e.g. valgrind)
#   RFS_TSAN_WRAPPER  command put in front of programs under $RFS_BUILD/tsan/
#                     instead (setarch -R for ThreadSanitizer)
#   RFS_TEST_TIMEOUT  seconds per program/script, default 1800, 0 = none
#   RFS_BUILD         build directory; each test gets a fresh scratch dir
#                     $RFS_BUILD/test-tmp/NAME exported as RFS_TEST_DIR
#                     (removed when the test passes)
# Everything else in the environment (RFS_SEED, RFS_STEPS, ASAN_OPTIONS...)
# is passed through unchanged.
set -u

timeout_s=${RFS_TEST_TIMEOUT:-1800}
build=${RFS_BUILD:-build}
wrapper=${RFS_WRAPPER:-}
passed=0
failed=0
skipped=0
failed_names=()

# The Makefile sets RFS_BUILD_FAILED=1 when part of the build failed (the
# errors are above); that counts as one failure of its own.
if [ -n "${RFS_BUILD_FAILED:-}" ]; then
	echo "FAIL build (make reported errors above)"
	failed=1
	failed_names+=(build)
fi

for t in "$@"; do
	name=${t#"$build"/}
	name=${name#build/}
	name=${name#asan/}
	name=${name#valgrind/}
	base=$(basename "$t")
	scratch="$build/test-tmp/${name//\//_}"
	echo "=== $name"
	if [ ! -e "$t" ]; then
		echo "FAIL $name (did not build)"
		failed=$((failed + 1))
		failed_names+=("$name")
		continue
	fi
	rm -rf "$scratch" && mkdir -p "$scratch"
	start=$(date +%s)
	case "$base" in
	*.sh) RFS_TEST_DIR="$scratch" timeout -k 10 "$timeout_s" bash "$t" ;;
	*)
		w=$wrapper
		case "$t" in */tsan/*) w=${RFS_TSAN_WRAPPER:-} ;; esac
		RFS_TEST_DIR="$scratch" timeout -k 10 "$timeout_s" $w "$t"
		;;
	esac
	rc=$?
	secs=$(($(date +%s) - start))
	if [ "$rc" -eq 0 ]; then
		echo "PASS $name (${secs}s)"
		passed=$((passed + 1))
		rm -rf "$scratch"
	elif [ "$rc" -eq 77 ] && [[ "$base" == *.sh ]]; then
		echo "SKIP $name (${secs}s)"
		skipped=$((skipped + 1))
		rm -rf "$scratch"
	else
		why="exit $rc"
		[ "$rc" -eq 124 ] && why="timed out after ${timeout_s}s"
		[ "$rc" -gt 128 ] && [ "$rc" -ne 124 ] && why="exit $rc, signal $((rc - 128))"
		echo "FAIL $name ($why, ${secs}s; scratch dir kept: $scratch)"
		failed=$((failed + 1))
		failed_names+=("$name")
	fi
done
rmdir "$build/test-tmp" 2>/dev/null

if [ "$failed" -gt 0 ]; then
	echo "failed: ${failed_names[*]}"
fi
summary="$passed passed, $failed failed"
[ "$skipped" -gt 0 ] && summary="$summary, $skipped skipped"
echo "$summary"
[ "$failed" -eq 0 ]
