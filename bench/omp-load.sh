#!/usr/bin/env bash
# `trainer bench` on one shape under each OpenMP wait policy, alone and with a CPU-bound
# background load on every core (one busy loop per core), median tokens/s of --runs runs,
# the policies alternating. "unset" is what the trainer now does when OMP_WAIT_POLICY is not
# set (it restarts itself with PASSIVE); "libgomp default" is OMP_WAIT_POLICY set but empty,
# which the trainer leaves alone and libgomp treats as unset (spin a while, then sleep) -- the
# trainer's behaviour before.
#
#   bench/omp-load.sh [--shape small] [--runs 3]
#   LOOM_OMP_POLICIES="spin10000 spin100000" bench/omp-load.sh   (other policies)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
shape=small
runs=3
while [ $# -gt 0 ]; do
  case "$1" in
    --shape) shape="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    *) echo "omp-load.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
trainer="$root/build/bin/trainer"
[ -x "$trainer" ] || { echo "omp-load.sh: build the trainer first (scripts/setup.sh)" >&2; exit 1; }
cores="$(OMP_NUM_THREADS= nproc)"
unset OMP_NUM_THREADS
tps() { python3 -c 'import json,sys; print(json.loads([l for l in sys.stdin.read().splitlines() if l.startswith("{")][-1])["tokens_per_s"])'; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
run() {  # $1: policy (unset | default | PASSIVE | ACTIVE | spinN: libgomp default, GOMP_SPINCOUNT=N)
  local env=(env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT)
  case "$1" in
    default) env+=(OMP_WAIT_POLICY=) ;;
    unset) ;;
    spin*) env+=(OMP_WAIT_POLICY= GOMP_SPINCOUNT="${1#spin}") ;;
    *) env+=(OMP_WAIT_POLICY="$1") ;;
  esac
  (cd "$root" && "${env[@]}" "$trainer" bench --config "bench/configs/$shape.toml" --steps 10 --warmup 2 2>/dev/null | tps)
}
policies="${LOOM_OMP_POLICIES:-unset default PASSIVE ACTIVE}"
echo "| load | $(for p in $policies; do printf '%s | ' "$p"; done)"
echo "| --- |$(for p in $policies; do printf ' ---: |'; done)"
for load in idle loaded; do
  pids=()
  if [ "$load" = loaded ]; then
    for ((c = 0; c < cores; c++)); do (while :; do :; done) & pids+=($!); done
  fi
  declare -A got=()
  for ((i = 0; i < runs; i++)); do
    for p in $policies; do got[$p]+="$(run "$p") "; done
  done
  [ ${#pids[@]} -gt 0 ] && kill "${pids[@]}" 2>/dev/null
  wait 2>/dev/null || true
  row="| $load ($cores cores, $shape) |"
  for p in $policies; do row+=" $(tr ' ' '\n' <<<"${got[$p]}" | grep . | median) |"; done
  echo "$row"
  unset got
done
