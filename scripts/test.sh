#!/usr/bin/env bash
# Set up, build, and run the whole test suite (unit + end-to-end) with CTest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
build="${LOOM_BUILD_DIR:-build}"
# One thread per test process, as many test processes as cores. (Counted first: GNU nproc
# answers OMP_NUM_THREADS when it is set.)
jobs="$(OMP_NUM_THREADS= nproc)"
export OMP_NUM_THREADS=1
ctest --test-dir "$build" --output-on-failure -j "$jobs" "$@"
