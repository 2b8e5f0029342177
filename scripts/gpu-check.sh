#!/usr/bin/env bash
# The GPU check: on a machine with an NVIDIA GPU, CUDA, a C++ compiler, CMake, ninja and the
# `torch` Python package (whose libtorch is used), but no package registry:
#   1. builds loom against that CUDA libtorch, with the Debian packages that
#      scripts/gpu-deps.sh gathered into .device/ (run it first where a registry is reachable,
#      then copy the working tree with .device/ to the GPU machine);
#   2. runs `trainer bench` on a Llama-3.2-1B-shaped model at sequence length 2048 in bf16
#      (bench/configs/llama3.2-1b.toml), MFU against 989 TFLOP/s (H100/H200 dense bf16);
#   3. trains the tiny diffusion demo on the GPU for a few steps and samples from it;
#   4. runs the CUDA tests (attention paths, losses) and then the whole test suite with the
#      GPU visible (tests that need one skip without it elsewhere).
# Logs and JSON land in $OUT (default /tmp/loom-gpu-check). docs/gpu.md has the recipe.
#
# Usage: scripts/gpu-check.sh [--skip-suite]
set -uo pipefail
cd "$(dirname "$0")/.."
repo="$(pwd)"
out="${OUT:-/tmp/loom-gpu-check}"
deps="${LOOM_DEPS_PREFIX:-/tmp/loom-deps}"
build="${LOOM_BUILD_DIR:-/tmp/loom-gpu-build}"
jobs="$(nproc)"
skip_suite=0
[ "${1:-}" = "--skip-suite" ] && skip_suite=1
mkdir -p "$out"
status=0
say() { echo "gpu-check: $*" | tee -a "$out/summary.txt"; }
stamp() { date +%s; }
t_start=$(stamp)

# --- 0. the machine --------------------------------------------------------------------------
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | sed 's/^/gpu: /' | tee -a "$out/summary.txt"
python3 - <<'EOF' 2>&1 | tee -a "$out/summary.txt"
import torch
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, GPU visible: {torch.cuda.is_available()}, "
      f"cxx11 ABI: {torch.compiled_with_cxx11_abi()}")
EOF
torch_prefix="$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')"

# --- 1. dependencies and build ---------------------------------------------------------------
if ! ls .device/deps/*.deb >/dev/null 2>&1; then
  say "no .device/deps/*.deb: run scripts/gpu-deps.sh on a machine with Debian's registry first"
  exit 2
fi
mkdir -p "$deps"
for f in .device/deps/*.deb; do
  if command -v dpkg-deb >/dev/null; then
    dpkg-deb -x "$f" "$deps"
  else  # a .deb is an ar archive holding data.tar.*
    tmp="$(mktemp -d)"
    (cd "$tmp" && ar x "$repo/$f" && tar -xf data.tar.* -C "$deps")
    rm -rf "$tmp"
  fi
done
# The torch wheel ships third-party headers in its include folder, which comes first: a newer
# fmt (spdlog 1.10 needs fmt 9) and possibly others that Debian's libraries were built against
# (GoogleTest: headers of another version than Debian's libgtest.a would break the test binary).
# Those go in a folder of their own, named with -I (searched before every -isystem folder).
mkdir -p "$deps/first/include"
for h in fmt gtest gmock; do
  [ -d "$deps/usr/include/$h" ] && cp -r "$deps/usr/include/$h" "$deps/first/include/"
done
for h in fmt gtest gmock nlohmann; do
  [ -d "$torch_prefix/../../include/$h" ] && echo "gpu-check: the torch wheel ships $h/ headers" | tee -a "$out/summary.txt"
done
export LD_LIBRARY_PATH="$deps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
shared_dir="$repo/.device/shared"
[ -d "$shared_dir/data" ] || shared_dir="$repo/../shared"

t0=$(stamp)
if ! cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_PREFIX_PATH="$torch_prefix;$deps/usr" -DLOOM_SHARED_DIR="$shared_dir" \
      -DCMAKE_CXX_FLAGS="-I$deps/first/include" \
      -DLOOM_SERVE=OFF `# cpp-httplib needs OpenSSL/zlib/brotli headers this machine may lack` \
      >"$out/configure.log" 2>&1; then
  tail -n 40 "$out/configure.log"
  say "configure FAILED"
  exit 1
fi
grep -E "loom:|Torch|CUDA" "$out/configure.log" | head -n 8
# The trainer and plugins first (the bench needs only them), then the tests.
if ! cmake --build "$build" -j "$jobs" --target trainer diffusion -- -k 0 >"$out/build.log" 2>&1; then
  grep -E "error|FAILED" "$out/build.log" | head -n 40
  say "build of trainer FAILED"
  exit 1
fi
say "trainer built in $(($(stamp) - t0)) s"
trainer="$build/bin/trainer"

# --- 2. bench: Llama-3.2-1B shape, seq 2048, bf16 ----------------------------------------------
t0=$(stamp)
if "$trainer" bench --config bench/configs/llama3.2-1b.toml --steps 10 --warmup 3 --peak-tflops 989 \
     >"$out/bench-1b.json" 2>"$out/bench-1b.log"; then
  python3 - "$out/bench-1b.json" <<'EOF' | tee -a "$out/summary.txt"
import json, sys
j = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
ph = j["phases_s"]
print(f"bench llama3.2-1b seq {j['shapes']['seq']} x {j['shapes']['batch']} {j['dtype']}: "
      f"{j['tokens_per_s']:.0f} tokens/s, step {j['step_s']*1e3:.0f} ms, "
      f"{j['achieved_gflops']/1e3:.1f} TFLOP/s, MFU {100*j['mfu_declared']:.1f}% of 989 "
      f"(measured bf16 GEMM peak {j['peak_matmul_gflops']/1e3:.0f} TFLOP/s, MFU {100*j['mfu']:.1f}% of it); "
      f"phases ms: " + ", ".join(f"{k} {v*1e3:.0f}" for k, v in ph.items()))
EOF
else
  tail -n 20 "$out/bench-1b.log"
  say "bench FAILED"
  status=1
fi
say "bench took $(($(stamp) - t0)) s"
# The peer, same shape and objective, in the same session: transformers + PyTorch eager.
if python3 -c 'import transformers' 2>/dev/null; then
  t0=$(stamp)
  if python3 bench/hf_peer.py --steps 10 --warmup 3 >"$out/peer-1b.json" 2>"$out/peer-1b.log"; then
    python3 - "$out/peer-1b.json" <<'EOF' | tee -a "$out/summary.txt"
import json, sys
j = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
print(f"peer (transformers, same shape): {j['tokens_per_s']:.0f} tokens/s, step {j['step_s']*1e3:.0f} ms, "
      f"MFU {100*j['mfu_declared']:.1f}% of 989 (its FLOPs: LM head on every row), "
      f"peak memory {j['peak_memory_gb']:.1f} GiB")
EOF
  else
    tail -n 5 "$out/peer-1b.log"
    say "peer FAILED (not counted against loom)"
  fi
  say "peer took $(($(stamp) - t0)) s"
fi

# --- 3. train and sample on the GPU ------------------------------------------------------------
t0=$(stamp)
run_dir="$out/tiny"
if "$trainer" --config configs/tiny-diffusion.toml --no-progress --set device=cuda --set bf16=true \
     --set max_steps=30 --set save_steps=1000 --set logging_steps=10 --set output_dir="$build/tiny-run" >"$run_dir.train.log" 2>&1 &&
   "$trainer" generate --checkpoint "$build/tiny-run/final" --prompt "Once upon a time" --complete 32 \
     --steps 16 --profile >"$run_dir.generate.log" 2>&1; then
  say "train 30 steps + generate on cuda: ok ($(($(stamp) - t0)) s)"
  tail -n 3 "$run_dir.train.log"
  tail -n 4 "$run_dir.generate.log"
else
  tail -n 20 "$run_dir.train.log" "$run_dir.generate.log" 2>/dev/null
  say "train/generate on cuda FAILED"
  status=1
fi

# --- 4. tests ---------------------------------------------------------------------------------
t0=$(stamp)
if ! cmake --build "$build" -j "$jobs" -- -k 0 >>"$out/build.log" 2>&1; then
  grep -E "error|FAILED" "$out/build.log" | head -n 40
  say "build of the tests FAILED"
  exit 1
fi
say "tests built in $(($(stamp) - t0)) s"
t0=$(stamp)
"$build/tests/loom_tests" --gtest_filter='*AttentionPaths*:*Cuda*:*cuda*' --gtest_brief=1 \
  >"$out/cuda-tests.log" 2>&1
rc=$?
tail -n 25 "$out/cuda-tests.log"
say "CUDA tests: $( [ $rc -eq 0 ] && echo passed || echo FAILED) ($(($(stamp) - t0)) s)"
[ $rc -eq 0 ] || status=1
if [ $skip_suite -eq 0 ]; then
  t0=$(stamp)
  OMP_NUM_THREADS=1 timeout "${LOOM_SUITE_TIMEOUT:-300}" \
    ctest --test-dir "$build" -j "${LOOM_SUITE_JOBS:-8}" --timeout 240 >"$out/ctest.log" 2>&1
  rc=$?
  grep -E "tests passed|Failed|\*\*\*|Timeout|Not Run" "$out/ctest.log" | tail -n 40
  say "whole suite with the GPU visible: rc $rc ($(($(stamp) - t0)) s)"
  [ $rc -eq 0 ] || status=1
fi
say "total $(($(stamp) - t_start)) s, status $status"
exit $status
