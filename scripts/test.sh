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
# Set, so each trainer the tests start does not restart itself to set it (host/main.cpp).
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY-PASSIVE}"
ctest --test-dir "$build" --output-on-failure -j "$jobs" "$@"
