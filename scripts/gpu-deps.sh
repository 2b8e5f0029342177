#!/usr/bin/env bash
# Gathers what scripts/gpu-check.sh needs on a GPU machine that has CUDA, a compiler, CMake,
# ninja and the `torch` Python package but no package registry: loom's build dependencies as
# Debian 12 packages (header-only ones, and the few shared libraries: spdlog, fmt, toml++,
# PCRE2, GoogleTest's static libraries), fetched with `apt-get download` and unpacked there
# with `dpkg -x`; and a copy of ../shared/data for the tests. Everything lands in .device/
# (ignored by git); copy or carry that folder with the working tree.
#
# Usage (on a Debian 12 machine with a package registry): scripts/gpu-deps.sh
set -euo pipefail
cd "$(dirname "$0")/.."
out=.device
packages=(
  libtomlplusplus-dev libtomlplusplus3
  libspdlog-dev libspdlog1.10 libfmt-dev libfmt9
  libgtest-dev libgmock-dev nlohmann-json3-dev libcli11-dev
  libpcre2-dev libpcre2-8-0
  libyaml-cpp-dev libyaml-cpp0.7
  libboost1.74-dev
)
mkdir -p "$out/deps"
rm -f "$out"/deps/*.deb
(cd "$out/deps" && apt-get download "${packages[@]}" >/dev/null)
if [ -d ../shared/data ]; then
  rm -rf "$out/shared"
  mkdir -p "$out/shared"
  cp -r ../shared/data "$out/shared/data"
fi
du -sh "$out"
