#!/usr/bin/env bash
# Set up, build, and run the whole test suite (unit + end-to-end) with CTest.
#   scripts/test.sh [--sanitize] [CTEST ARGS...]
# --sanitize: the same suite built with AddressSanitizer + UndefinedBehaviorSanitizer in
# build-sanitize/ (UBSan findings stop the process; LeakSanitizer is off: libtorch keeps
# allocations alive until exit by design).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = --sanitize ]; then
  shift
  export LOOM_SANITIZE=1 LOOM_BUILD_DIR="${LOOM_BUILD_DIR:-build-sanitize}"
  export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0}"
  export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
fi
scripts/setup.sh
build="${LOOM_BUILD_DIR:-build}"
# One thread per test process, as many test processes as cores. (Counted first: GNU nproc
# answers OMP_NUM_THREADS when it is set.)
jobs="$(OMP_NUM_THREADS= nproc)"
export OMP_NUM_THREADS=1
# Set, so each trainer the tests start does not restart itself to set it (host/main.cpp).
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY-PASSIVE}"
ctest --test-dir "$build" --output-on-failure -j "$jobs" "$@"
