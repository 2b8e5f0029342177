#!/usr/bin/env bash
# Side-by-side throughput of `trainer bench` and the PyTorch-eager reference trainer
# (../shared/bench/ref_llada.py) on the same shapes, objective and thread count. The two
# programs run alternately (loom, reference, loom, reference, ...) so that both see the same
# machine load; each figure is the median over --runs runs. Peak RSS is measured the same way
# for both (GNU time's maximum resident set size).
#
#   bench/compare.sh [--shapes "small llama3-vocab bf16"] [--runs 3] [--threads 2]
#                    [--trainer build/bin/trainer] [--ref ../shared/bench/ref_llada.py]
#                    [--omp-wait-policy PASSIVE|ACTIVE|default]
#
# Both programs run with the same OpenMP wait policy, PASSIVE unless told otherwise: on a
# machine whose cores are shared with other work, libgomp's spinning waits make both several
# times slower and the timings much noisier (docs/performance.md). "default" leaves the
# variable as the caller has it.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
shapes="small llama3-vocab bf16"
runs=3
threads=2
trainer="$root/build/bin/trainer"
ref="$root/../shared/bench/ref_llada.py"
python=/usr/bin/python3
policy=PASSIVE

while [ $# -gt 0 ]; do
  case "$1" in
    --shapes) shapes="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --trainer) trainer="$2"; shift 2 ;;
    --ref) ref="$2"; shift 2 ;;
    --omp-wait-policy) policy="$2"; shift 2 ;;
    -h|--help) sed -n 2,16p "$0"; exit 0 ;;
    *) echo "compare.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -x "$trainer" ] || { echo "compare.sh: no trainer at $trainer (build it first)" >&2; exit 1; }
[ -f "$ref" ] || { echo "compare.sh: no reference script at $ref" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "compare.sh: needs GNU time (/usr/bin/time)" >&2; exit 1; }
if [ "$policy" != default ]; then export OMP_WAIT_POLICY="$policy"; fi

# name -> reference arguments, timed steps, warmup steps, required tokens/s ratio
ref_args() {
  case "$1" in
    small|bf16) echo "--hidden 256 --layers 4 --heads 4 --kv-heads 4 --ffn 688 --vocab 4096 --seq 256 --batch 8" ;;
    llama3-vocab) echo "--hidden 256 --layers 4 --heads 4 --kv-heads 4 --ffn 688 --vocab 128256 --seq 256 --batch 8" ;;
  esac
}
steps_for() { case "$1" in llama3-vocab) echo "4 1" ;; *) echo "10 2" ;; esac; }
target_for() { case "$1" in small) echo 1.15 ;; *) echo 1.8 ;; esac; }

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# run LABEL CMD... : appends "tokens_per_s rss_mb" to $tmp/LABEL
run() {
  local label="$1"; shift
  /usr/bin/time -f "%M" -o "$tmp/time" "$@" > "$tmp/out" 2> "$tmp/err" || {
    echo "compare.sh: $label failed:" >&2; cat "$tmp/err" >&2; exit 1; }
  local tps
  tps="$("$python" -c 'import json,sys; print(json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])["tokens_per_s"])' "$tmp/out")"
  echo "$tps $(( $(tail -n 1 "$tmp/time") / 1024 ))" >> "$tmp/$label"
  printf '  %-22s %10.1f tokens/s  %6d MB\n' "$label" "$tps" "$(( $(tail -n 1 "$tmp/time") / 1024 ))" >&2
}

median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }

echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs; threads $threads; OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-unset}" >&2
for shape in $shapes; do
  config="$here/configs/$shape.toml"
  [ -f "$config" ] || { echo "compare.sh: no config $config" >&2; exit 1; }
  read -r steps warmup <<< "$(steps_for "$shape")"
  echo "$shape: $runs runs each, $steps steps after $warmup warmup" >&2
  for i in $(seq "$runs"); do
    run "$shape.loom" "$trainer" bench --config "$config" --steps "$steps" --warmup "$warmup" --set "threads=$threads"
    # shellcheck disable=SC2046
    run "$shape.ref" "$python" "$ref" bench $(ref_args "$shape") --steps "$steps" --warmup "$warmup" --threads "$threads"
  done
done

printf '\n| shape | loom tokens/s | reference tokens/s | ratio | required | loom peak RSS MB | reference peak RSS MB |\n'
printf '| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n'
for shape in $shapes; do
  lt="$(cut -d' ' -f1 "$tmp/$shape.loom" | median)"; rt="$(cut -d' ' -f1 "$tmp/$shape.ref" | median)"
  lm="$(cut -d' ' -f2 "$tmp/$shape.loom" | median)"; rm_="$(cut -d' ' -f2 "$tmp/$shape.ref" | median)"
  awk -v s="$shape" -v lt="$lt" -v rt="$rt" -v lm="$lm" -v rm="$rm_" -v req="$(target_for "$shape")" \
    'BEGIN { printf "| %s | %.0f | %.0f | %.2fx | %sx | %.0f | %.0f |\n", s, lt, rt, lt / rt, req, lm, rm }'
done
