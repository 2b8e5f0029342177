#!/usr/bin/env bash
# Installs the Debian packages loom needs (only those missing), then configures and builds.
# Usage: scripts/setup.sh            (build folder: ./build, or $LOOM_BUILD_DIR)
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  build-essential cmake ninja-build ccache pkg-config
  libcpp-httplib-dev  # `trainer serve`'s HTTP server (and the tests' client)
  libtorch-dev        # libtorch 1.13 (CPU)
  libgloo-dev         # headers that libtorch's c10d headers include
  libopenblas0-openmp # fast BLAS for libtorch: without it, matmuls are ~20x slower
  libtomlplusplus-dev libspdlog-dev libboost-dev libgtest-dev nlohmann-json3-dev
  libcli11-dev libpcre2-dev libyaml-cpp-dev
)
# LOOM_REFERENCE_TESTS=1 (CI): also what the test suite's independent Python reference
# implementations need (without it those tests skip).
# chromium: the headless browser of the `trainer serve` web page test and the `trainer report`
# page test.
if [ "${LOOM_REFERENCE_TESTS:-0}" = 1 ]; then packages+=(python3-torch python3-numpy chromium); fi
. scripts/lib/install-packages.sh
install_missing setup "${packages[@]}"

build="${LOOM_BUILD_DIR:-build}"
# Precompiled headers and ccache together need these (see ccache's manual, "Precompiled headers").
export CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime
# LOOM_SANITIZE=1 (scripts/test.sh --sanitize): AddressSanitizer + UndefinedBehaviorSanitizer.
sanitize=()
if [ "${LOOM_SANITIZE:-0}" = 1 ]; then
  flags="-fsanitize=address,undefined -fno-omit-frame-pointer"
  sanitize=(-DCMAKE_CXX_FLAGS="$flags" -DCMAKE_EXE_LINKER_FLAGS="$flags"
            -DCMAKE_SHARED_LINKER_FLAGS="$flags" -DCMAKE_MODULE_LINKER_FLAGS="$flags")
fi
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE="${LOOM_BUILD_TYPE:-RelWithDebInfo}" "${sanitize[@]}" >/dev/null
cmake --build "$build" -j "$(nproc)"
