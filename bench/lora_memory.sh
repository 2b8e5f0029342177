#!/usr/bin/env bash
# Full fine-tuning vs LoRA (r 16, all-linear) on a Llama-3.2-1B-shaped bf16 checkpoint with
# random weights (bench/random_llama_checkpoint.py): `trainer bench` at sequence length 512,
# micro-batch 1, gradient checkpointing, bf16 autocast, the diffusion objective; prints each
# run's JSON (peak_rss_mb, tokens_per_s, ...). A run the machine cannot hold is refused by the
# memory check before it allocates; its message is printed instead.
#
#   bench/lora_memory.sh --tokenizer PATH/tokenizer.json [--work /tmp/loom-lora-bench]
#        [--steps 3] [--warmup 1] [--threads 2] [--modes "lora full"] [--layers 16]
#        [--trainer build/bin/trainer]
# --layers N: the same widths and vocabulary with N decoder layers (a full fine-tune of all 16
# needs about 21 GB: measured 21.3 GB peak RSS, docs/performance.md).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
work=/tmp/loom-lora-bench
steps=3
warmup=1
threads=2
modes="lora full"
layers=16
tokenizer=""
trainer="$root/build/bin/trainer"
while [ $# -gt 0 ]; do
  case "$1" in
    --work) work="$2"; shift 2 ;;
    --steps) steps="$2"; shift 2 ;;
    --warmup) warmup="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --modes) modes="$2"; shift 2 ;;
    --layers) layers="$2"; shift 2 ;;
    --tokenizer) tokenizer="$2"; shift 2 ;;
    --trainer) trainer="$2"; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -n "$tokenizer" ] || { echo "--tokenizer: a Llama 3 tokenizer.json (128256 tokens) is needed" >&2; exit 2; }
mkdir -p "$work"
base="$work/llama-3.2-1b-random-$layers"
[ -f "$base/model.safetensors" ] || /usr/bin/python3 "$here/random_llama_checkpoint.py" "$base" --layers "$layers" >&2
cp "$tokenizer" "$base/tokenizer.json"

for mode in $modes; do
  lora=""
  if [ "$mode" = lora ]; then
    lora='adapter = "lora"
lora_r = 16
lora_alpha = 32
lora_target_modules = "all-linear"'
  fi
  cat > "$work/$mode-$layers.toml" <<TOML
base_model = "$base"
output_dir = "$work/out-$mode-$layers"
seed = 0
plugins = ["diffusion"]
threads = $threads
device = "cpu"
sequence_len = 512
micro_batch_size = 1
learning_rate = 1e-4
lr_scheduler = "constant"
bf16 = true
gradient_checkpointing = true
max_steps = 10
$lora

[[datasets]]
path = "$root/configs/data/tiny_stories.jsonl"

[diffusion]
mask_token_id = 128255
generate_samples = false
TOML
  echo "== $mode, $layers layers" >&2
  "$trainer" bench --config "$work/$mode-$layers.toml" --steps "$steps" --warmup "$warmup" 2>&1 | tail -n 3 || true
done
