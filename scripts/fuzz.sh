#!/usr/bin/env bash
# Builds loom's libFuzzer harnesses (tests/fuzz/) with clang, ASan and UBSan, and runs each for
# SECONDS (default 30). Prints executions and crashes per harness; exits non-zero if any harness
# found a crash (or a leak, timeout or out-of-memory), keeping the input that caused it.
# Installs the Debian packages it needs (only those missing).
#
# Usage: scripts/fuzz.sh [SECONDS] [HARNESS...]
#   HARNESS: safetensors hf_config tokenizer_json toml_config axolotl_config dataset (default: all)
# Environment:
#   LOOM_FUZZ_BUILD_DIR  build folder (default build-fuzz; git-ignored)
#   LOOM_FUZZ_JOBS       parallel compile jobs (default: nproc)
#   LOOM_FUZZ_ARGS       extra libFuzzer flags for every harness (e.g. "-max_len=65536")
#
# Per harness, under the build folder: corpus/<h>/ grows with what the fuzzer finds (the seeds in
# tests/fuzz/corpus/<h>/ are only read), artifacts/<h>/ gets crash-*/leak-*/timeout-*/oom-*
# inputs, logs/<h>.log the full libFuzzer output. Reproduce a crash with
#   build-fuzz/fuzz_<h> build-fuzz/artifacts/<h>/crash-...
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-30}"
if ! [[ "$seconds" =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: scripts/fuzz.sh [SECONDS] [HARNESS...]" >&2
  exit 2
fi
shift || true
all_harnesses=(safetensors hf_config tokenizer_json toml_config axolotl_config dataset)
harnesses=("$@")
((${#harnesses[@]})) || harnesses=("${all_harnesses[@]}")
for h in "${harnesses[@]}"; do
  if [ ! -f "tests/fuzz/fuzz_$h.cpp" ]; then
    echo "fuzz: unknown harness '$h' (have: ${all_harnesses[*]})" >&2
    exit 2
  fi
done

# clang + its runtime libraries (libclang-rt-dev pulls in Debian 12's libclang-rt-14-dev, which
# holds libclang_rt.fuzzer and the sanitizer runtimes), and what the parsers include.
packages=(
  clang libclang-rt-dev cmake ninja-build pkg-config
  nlohmann-json3-dev libtomlplusplus-dev libpcre2-dev libspdlog-dev libyaml-cpp-dev
  libtorch-dev  # headers only: the dataset reader includes an SDK header with <ATen/core/Tensor.h>
)
. scripts/lib/install-packages.sh
install_missing fuzz "${packages[@]}"

build="${LOOM_FUZZ_BUILD_DIR:-build-fuzz}"
CXX=clang++ cmake -S tests/fuzz -B "$build" -G Ninja >/dev/null
targets=()
for h in "${harnesses[@]}"; do targets+=("fuzz_$h"); done
cmake --build "$build" -j "${LOOM_FUZZ_JOBS:-$(nproc)}" --target "${targets[@]}"

build_abs="$(cd "$build" && pwd)"
# The harnesses write the files they hand to path-taking parsers under $TMPDIR: in memory where
# there is /dev/shm (about 20x more executions per second than on disk), removed at the end.
scratch_base="$build_abs"
if [ -d /dev/shm ] && [ -w /dev/shm ]; then scratch_base=/dev/shm; fi
TMPDIR="$(mktemp -d "$scratch_base/loom-fuzz.XXXXXX")"
export TMPDIR
trap 'rm -rf "$TMPDIR"' EXIT
# UBSan: a stack with every report (its findings abort: -fno-sanitize-recover).
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1}"

# What one saved input does: the first line of its report, run again on its own.
describe() {
  local bin="$1" input="$2" kind
  kind="$(basename "$input")"
  kind="${kind%%-*}"
  case "$kind" in
    timeout | oom | slow) echo "$kind" ;;
    *)
      timeout 120 "$bin" -rss_limit_mb=2048 "$input" 2>&1 |
        grep -m1 -E 'loom fuzz: |runtime error: |ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer): ' |
        sed -E 's/^.*(loom fuzz: |runtime error: |ERROR: )/\1/; s/==[0-9]+==//' |
        sed -E 's#/tmp/[^ ]*|'"$TMPDIR"'[^ ]*#<file>#g' |
        cut -c1-220 || true
      ;;
  esac
}

failed=0
summary=()
for h in "${harnesses[@]}"; do
  bin="$build_abs/fuzz_$h"
  corpus="$build_abs/corpus/$h"
  artifacts="$build_abs/artifacts/$h"
  log="$build_abs/logs/$h.log"
  mkdir -p "$corpus" "$artifacts" "$(dirname "$log")"
  stamp="$build_abs/logs/$h.start"
  touch "$stamp"
  echo "fuzz: $h for ${seconds}s (log: $log)"
  rc=0
  # First every stored input once, in one process: fork mode below silently skips inputs that
  # crash while it loads the corpus, so a regression seed (or a corpus entry that a change in loom
  # now crashes on) would go unnoticed. A crash here stops this pass and saves the input.
  "$bin" -runs=0 -timeout=25 -rss_limit_mb=2048 -artifact_prefix="$artifacts/" \
    "$corpus" "tests/fuzz/corpus/$h" >"$log.replay" 2>&1 || rc=$?
  # -fork=1: one fuzzing process at a time, restarted after a crash (-ignore_crashes), so one
  # finding does not end the run; the parent counts crashes, timeouts and OOMs.
  # shellcheck disable=SC2086  # LOOM_FUZZ_ARGS is a list of flags
  "$bin" -fork=1 -ignore_crashes=1 -max_total_time="$seconds" -timeout=25 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$artifacts/" ${LOOM_FUZZ_ARGS:-} \
    "$corpus" "tests/fuzz/corpus/$h" >"$log" 2>&1 || rc=$?
  cat "$log.replay" >>"$log"
  rm -f "$log.replay"

  # Fork mode's status lines: "#<executions>: cov: ... oom/timeout/crash: 0/0/2 time: ...".
  last="$(grep -E '^#[0-9]+: ' "$log" | tail -1 || true)"
  executions="$(sed -E 's/^#([0-9]+):.*/\1/' <<<"$last")"
  if [ -z "$executions" ]; then  # not fork mode (LOOM_FUZZ_ARGS=-fork=0)
    executions="$(awk '/^stat::number_executed_units:/ {n += $2} END {print n + 0}' "$log")"
  fi
  found="$(find "$artifacts" -maxdepth 1 -type f -newer "$stamp" \
    \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' \) | sort)"
  crashes=0
  [ -z "$found" ] || crashes="$(wc -l <<<"$found")"
  counted="$(grep -oE 'oom/timeout/crash: [0-9/]+' <<<"$last" | grep -oE '[0-9]+/[0-9]+/[0-9]+' || true)"
  if [ -n "$counted" ]; then
    IFS=/ read -r n_oom n_timeout n_crash <<<"$counted"
    total=$((n_oom + n_timeout + n_crash))
    if ((total > crashes)); then crashes=$total; fi
  fi
  if [ "$rc" -ne 0 ] && [ "$crashes" -eq 0 ]; then  # died without saving an input
    echo "fuzz: $h: libFuzzer exited with status $rc"
    crashes=1
  fi

  line="$(printf '%-15s %4ss %12s executions %4s crashes' \
    "$h" "$seconds" "${executions:-0}" "$crashes")"
  echo "$line"
  summary+=("$line")
  if [ "$crashes" -ne 0 ]; then
    failed=1
    echo "fuzz: $h FOUND PROBLEMS; distinct reports, with one input each:"
    if [ -z "$found" ]; then
      grep -m5 -E 'loom fuzz: |runtime error: |ERROR: ' "$log" | sed 's/^/  /' || true
    else
      declare -A example=()
      declare -A count=()
      while IFS= read -r input; do
        what="$(describe "$bin" "$input")"
        [ -n "$what" ] || what="(did not reproduce alone)"
        count["$what"]=$((${count["$what"]:-0} + 1))
        [ -n "${example["$what"]:-}" ] || example["$what"]="$input"
      done <<<"$found"
      for what in "${!count[@]}"; do
        echo "  ${count[$what]}x $what"
        echo "      input: ${example[$what]}"
      done
      if [ -n "${count["(did not reproduce alone)"]:-}" ]; then
        # An empty crash-* input is libFuzzer's mark for a crash outside any input (at exit, in
        # another thread); the parent copied each crashed child's error lines into the log.
        echo "  error lines of the crashed fuzzing processes (from $log):"
        grep -m5 -E 'loom fuzz: |runtime error: |ERROR: |deadly signal' "$log" | sed 's/^/    /' ||
          echo "    (none)"
      fi
      unset example count
    fi
    echo "  reproduce: $bin <input>   (full log: $log)"
  fi
  rm -f "$stamp"
done

echo
echo "fuzz summary (${seconds}s each):"
printf '  %s\n' "${summary[@]}"
exit "$failed"
