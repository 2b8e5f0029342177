#!/usr/bin/env bash
# Build loom against libtorch 2.x (Debian 13's libtorch-dev 2.6, CPU) and run the same test
# suite as scripts/test.sh, inside a Debian 13 ("trixie") tree made with debootstrap.
#
# The tree is made once and reused (about 6 minutes the first time): it lives outside the
# repository, in $LOOM_TORCH2_ROOT (default ~/.cache/loom/trixie), and keeps its build folder
# and ccache between runs, so a later run rebuilds only what changed.
#
# Usage: scripts/test-torch2.sh [ctest arguments...]
#        scripts/test-torch2.sh --run 'COMMAND'   build, then run COMMAND in the tree instead of
#                                                 the tests (from /loom/src; the build is
#                                                 /loom/build), e.g. a benchmark
#   LOOM_TORCH2_ROOT=/path  where the Debian 13 tree lives
#   LOOM_TORCH2_MIRROR=URL  Debian mirror (default: the one this machine's apt uses)
# Needs root (debootstrap, mount, chroot); uses sudo when not root.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$(pwd)"
home="${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}"
root="${LOOM_TORCH2_ROOT:-$home/.cache/loom/trixie}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

# Build dependencies inside the tree: the same list as scripts/setup.sh, for Debian 13.
packages=(
  build-essential cmake ninja-build ccache pkg-config python3
  libcpp-httplib-dev
  libtorch-dev libgloo-dev libopenblas0-openmp
  libtomlplusplus-dev libspdlog-dev libboost-dev libgtest-dev nlohmann-json3-dev
  libcli11-dev libpcre2-dev libyaml-cpp-dev
)

mirror() {
  if [ -n "${LOOM_TORCH2_MIRROR:-}" ]; then echo "$LOOM_TORCH2_MIRROR"; return; fi
  # The Debian archive this machine's apt already reaches (deb822 or one-line sources).
  local uri
  uri="$(grep -hoE '^(URIs:|deb)[[:space:]]+[^[:space:]]+/debian/?([[:space:]]|$)' \
           /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null |
         awk '{print $2}' | head -n1)"
  echo "${uri:-http://deb.debian.org/debian}"
}

make_tree() {
  . scripts/lib/install-packages.sh
  install_missing test-torch2 debootstrap
  local m
  m="$(mirror)"
  echo "test-torch2: making a Debian 13 tree in $root from $m (once)"
  $sudo rm -rf "$root"
  $sudo mkdir -p "$root"
  $sudo debootstrap --variant=minbase trixie "$root" "$m" >"$root.debootstrap.log" 2>&1 || {
    tail -n 20 "$root.debootstrap.log" >&2
    echo "test-torch2: debootstrap failed (log: $root.debootstrap.log)" >&2
    exit 1
  }
  $sudo chroot "$root" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo chroot "$root" \
    apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
  $sudo chroot "$root" apt-get clean
  $sudo touch "$root/.loom-ready"
}

# One run at a time per tree: two runs would mount different checkouts over each other and
# rebuild the shared build folder under each other's tests.
mkdir -p "$(dirname "$root")"
exec 9>"$root.lock"
if ! flock -n 9; then
  echo "test-torch2: another run is using $root; waiting for it"
  flock 9
fi

[ -f "$root/.loom-ready" ] || make_tree

# A tree made before a package joined the list gets it now (apt inside the tree).
missing=()
for p in "${packages[@]}"; do
  $sudo chroot "$root" dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
    missing+=("$p")
done
if ((${#missing[@]})); then
  echo "test-torch2: installing ${missing[*]} in the tree"
  $sudo chroot "$root" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo chroot "$root" \
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  $sudo chroot "$root" apt-get clean
fi

# The build folder in the tree belongs to one checkout: ninja trusts file times, and another
# checkout's files (a fresh clone, say) can be older than objects built from different code.
# A checkout seen for the first time starts from an empty build folder (ccache keeps that
# rebuild short: the tree's paths are the same for every checkout).
if [ "$(cat "$root/loom/build.origin" 2>/dev/null)" != "$repo" ]; then
  $sudo rm -rf "$root/loom/build"
  $sudo mkdir -p "$root/loom"
  echo "$repo" | $sudo tee "$root/loom/build.origin" >/dev/null
fi

# /proc, /dev and /dev/shm for the tests (processes, ranks, shared memory); the checkout and
# ../shared (read-only) at /loom/src and /loom/shared, so relative paths work as here.
mounts=()
cleanup() {
  local i
  for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do $sudo umount -l "${mounts[$i]}" 2>/dev/null || true; done
}
trap cleanup EXIT
bind() { # bind SRC DST [ro]
  $sudo mkdir -p "$2"
  $sudo mount --bind "$1" "$2"
  mounts+=("$2")
  if [ "${3:-}" = ro ]; then $sudo mount -o remount,bind,ro "$2"; fi
}
$sudo mkdir -p "$root/proc"
$sudo mount -t proc proc "$root/proc"
mounts+=("$root/proc")
bind /dev "$root/dev"
bind /dev/shm "$root/dev/shm"
bind "$repo" "$root/loom/src"
if [ -d "$repo/../shared" ]; then bind "$repo/../shared" "$root/loom/shared" ro; fi

run_cmd=""
if [ "${1:-}" = "--run" ]; then
  run_cmd="${2:?--run needs a command}"
  shift 2
fi
build_type="${LOOM_BUILD_TYPE:-RelWithDebInfo}"
# Counted here: GNU nproc answers OMP_NUM_THREADS when it is set.
jobs="$(OMP_NUM_THREADS= nproc)"
args=""
for a in "$@"; do args+=" $(printf '%q' "$a")"; done
$sudo chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
  CCACHE_DIR=/loom/ccache CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime \
  CI="${CI:-}" /bin/bash -c "
set -euo pipefail
cd /loom/src
echo \"test-torch2: \$(dpkg-query -W -f='libtorch-dev \${Version}' libtorch-dev), \$(g++ --version | head -n1)\"
cmake -S . -B /loom/build -G Ninja -DCMAKE_BUILD_TYPE=$build_type >/dev/null
start=\$(date +%s)
cmake --build /loom/build -j $jobs
echo \"test-torch2: build \$((\$(date +%s) - start)) s\"
if [ -n $(printf '%q' "$run_cmd") ]; then
  exec bash -c $(printf '%q' "$run_cmd")
fi
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE  # as scripts/test.sh
start=\$(date +%s)
ctest --test-dir /loom/build --output-on-failure -j $jobs$args
echo \"test-torch2: libtorch 2.x tests passed in \$((\$(date +%s) - start)) s\"
"
