#!/usr/bin/env bash
# How the cost grows: `trainer bench` on the small shape (bench/configs/small.toml) swept over
# sequence length at a fixed 2048 tokens per step (batch = 2048 / seq) and over model width
# at seq 256 x batch 8 (heads of 64, ffn = 2.6875 x hidden as in the small shape), with and
# without gradient checkpointing for the largest points. Prints markdown tables.
#
# Each point is the best of --runs runs (interference from other work only ever slows a run
# down), peak RSS from the same runs.
#
#   bench/curves.sh [--trainer build/bin/trainer] [--steps 4] [--warmup 1] [--threads 2] [--runs 3]
#                   [--seqs "128 256 512 1024"] [--widths "128 256 512 768 1024"]
#                   [--checkpointing "seq1024 width1024"]
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
trainer="$here/../build/bin/trainer"
steps=4
warmup=1
threads=2
runs=3
seqs="128 256 512 1024"
widths="128 256 512 768 1024"
ckpt="seq1024 width1024"
while [ $# -gt 0 ]; do
  case "$1" in
    --trainer) trainer="$2"; shift 2 ;;
    --steps) steps="$2"; shift 2 ;;
    --warmup) warmup="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    --seqs) seqs="$2"; shift 2 ;;
    --widths) widths="$2"; shift 2 ;;
    --checkpointing) ckpt="$2"; shift 2 ;;
    -h|--help) sed -n 2,10p "$0"; exit 0 ;;
    *) echo "curves.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"

# bench SETTINGS... : the JSON line of the fastest of $runs runs of trainer bench
bench() {
  local args=() best="" out
  for s in "$@"; do args+=(--set "$s"); done
  for _ in $(seq "$runs"); do
    out="$("$trainer" bench --config "$here/configs/small.toml" --steps "$steps" --warmup "$warmup" \
      --set "threads=$threads" "${args[@]}")"
    best="$(python3 -c '
import json, sys
a = json.loads(sys.argv[1]) if sys.argv[1] else None; b = json.loads(sys.argv[2])
print(json.dumps(b if a is None or b["tokens_per_s"] > a["tokens_per_s"] else a))' "$best" "$out")"
  done
  echo "$best"
}

row() {  # LABEL JSON
  python3 -c '
import json, sys
d = json.loads(sys.argv[2]); s = d["shapes"]
attn = 12.0 * s["layers"] * s["seq"] * s["hidden"]
print("| %s | %d | %d | %d | %.0f | %.3f | %.0f | %.1f | %.0f%% | %.0f%% | %.0f | %.0f |" % (
    sys.argv[1], s["seq"], s["batch"], s["hidden"], d["tokens_per_s"], d["step_s"],
    d["flops_per_token"] / 1e6, d["achieved_gflops"], 100 * d["mfu"],
    100 * attn / d["flops_per_token"], d["peak_rss_mb"], d["activation_mb"]))' "$1" "$2"
}

header='| point | seq | batch | hidden | tokens/s | step s | MFLOP/token | GFLOP/s | MFU | attention share of FLOPs | peak RSS MB | activations MB |
| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |'

echo "Sequence length at 2048 tokens per step (hidden 256, 4 layers, vocab 4096; OMP_WAIT_POLICY=$OMP_WAIT_POLICY):"
echo
echo "$header"
for s in $seqs; do
  row "seq$s" "$(bench "sequence_len=$s" "micro_batch_size=$((2048 / s))")"
done
echo
echo "Width at seq 256 x batch 8 (4 layers, heads of 64, ffn 2.6875 x hidden, vocab 4096):"
echo
echo "$header"
for w in $widths; do
  ffn=$(( (w * 43 / 16 + 7) / 8 * 8 ))
  row "width$w" "$(bench "model.hidden_size=$w" "model.num_attention_heads=$((w / 64 > 0 ? w / 64 : 1))" \
    "model.num_key_value_heads=$((w / 64 > 0 ? w / 64 : 1))" "model.intermediate_size=$ffn")"
done
echo
echo "Gradient checkpointing (off, then on):"
echo
echo "$header"
for p in $ckpt; do
  case "$p" in
    seq*) s="${p#seq}"; set -- "sequence_len=$s" "micro_batch_size=$((2048 / s))" ;;
    width*) w="${p#width}"; ffn=$(( (w * 43 / 16 + 7) / 8 * 8 ))
      set -- "model.hidden_size=$w" "model.num_attention_heads=$((w / 64))" \
        "model.num_key_value_heads=$((w / 64))" "model.intermediate_size=$ffn" ;;
  esac
  row "$p" "$(bench "$@" "gradient_checkpointing=false")"
  row "$p checkpointed" "$(bench "$@" "gradient_checkpointing=true")"
done
