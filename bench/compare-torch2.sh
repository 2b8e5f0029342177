#!/usr/bin/env bash
# `trainer bench` built against libtorch 1.13 (build/, Debian 12) and against libtorch 2.6 (the
# Debian 13 tree of scripts/test-torch2.sh), alternately on the same shapes as
# bench/compare.sh, median tokens/s of --runs runs each. On 2.x, also with
# attn_implementation = "fused_cpu" (loom's own CPU attention kernel instead of SDPA).
#
#   bench/compare-torch2.sh [--shapes "small llama3-vocab bf16"] [--runs 3]
#
# Both with OMP_WAIT_POLICY=PASSIVE (docs/performance.md explains why).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
shapes="small llama3-vocab bf16"
runs=3
while [ $# -gt 0 ]; do
  case "$1" in
    --shapes) shapes="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    *) echo "compare-torch2.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
trainer="$root/build/bin/trainer"
[ -x "$trainer" ] || { echo "compare-torch2.sh: build the 1.13 trainer first (scripts/setup.sh)" >&2; exit 1; }
export OMP_WAIT_POLICY=PASSIVE
steps_for() { case "$1" in llama3-vocab) echo "4 1" ;; *) echo "10 2" ;; esac; }
tps() { python3 -c 'import json,sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1])["tokens_per_s"])'; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

echo "| shape | libtorch 1.13 tokens/s | libtorch 2.6 (sdpa) tokens/s | 2.6 / 1.13 | libtorch 2.6 (fused_cpu) tokens/s |"
echo "| --- | ---: | ---: | ---: | ---: |"
for shape in $shapes; do
  read -r steps warmup <<<"$(steps_for "$shape")"
  cfg="bench/configs/$shape.toml"
  args="bench --config $cfg --steps $steps --warmup $warmup"
  : >"/tmp/ct2.$shape.a"; : >"/tmp/ct2.$shape.b"; : >"/tmp/ct2.$shape.c"
  for ((i = 0; i < runs; i++)); do
    (cd "$root" && "$trainer" $args 2>/dev/null | tps) >>"/tmp/ct2.$shape.a"
    "$root/scripts/test-torch2.sh" --run "OMP_WAIT_POLICY=PASSIVE /loom/build/bin/trainer $args 2>/dev/null" 2>/dev/null |
      grep '^{' | tps >>"/tmp/ct2.$shape.b"
    "$root/scripts/test-torch2.sh" --run "OMP_WAIT_POLICY=PASSIVE /loom/build/bin/trainer $args --set attn_implementation=fused_cpu 2>/dev/null" 2>/dev/null |
      grep '^{' | tps >>"/tmp/ct2.$shape.c"
  done
  a=$(median <"/tmp/ct2.$shape.a"); b=$(median <"/tmp/ct2.$shape.b"); c=$(median <"/tmp/ct2.$shape.c")
  printf '| %s | %.0f | %.0f | %.2fx | %.0f |\n' "$shape" "$a" "$b" "$(awk -v a="$a" -v b="$b" 'BEGIN {print b / a}')" "$c"
  echo "  runs ($shape): 1.13 $(tr '\n' ' ' <"/tmp/ct2.$shape.a"); 2.6 sdpa $(tr '\n' ' ' <"/tmp/ct2.$shape.b"); 2.6 fused_cpu $(tr '\n' ' ' <"/tmp/ct2.$shape.c")" >&2
done
