#!/usr/bin/env bash
# Crash campaign: train a small model while killing the trainer with SIGKILL at random moments,
# resuming each time, and check that every interrupted run ends exactly where an uninterrupted
# one does, with its whole history.
#
#   scripts/crash-campaign.sh [--trials N] [--steps S] [--trainer PATH]
#
# Per trial: start the run (fresh), kill -9 it after a random 0.3-2.5 s, start it again with
# --resume (or --overwrite when no checkpoint was complete yet), ... until a start finishes.
# Then compare with the reference run: final/model.safetensors byte-identical, and
# metrics.jsonl holding every step's train/loss exactly once with the reference's value.
# Prints one line per trial and a summary; exits 1 if any trial lost or changed anything.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
trials=10
steps=400
trainer="$root/build/bin/trainer"
while [ $# -gt 0 ]; do
  case "$1" in
    --trials) trials="$2"; shift 2 ;;
    --steps) steps="$2"; shift 2 ;;
    --trainer) trainer="$2"; shift 2 ;;
    *) echo "crash-campaign.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -x "$trainer" ] || { echo "crash-campaign.sh: no trainer at $trainer (build first)" >&2; exit 1; }
work="$(mktemp -d /tmp/loom-crash.XXXXXX)"
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE

config() {  # $1: output folder
  cat <<TOML
output_dir = "$1"
seed = 3
sequence_len = 64
micro_batch_size = 4
learning_rate = 3e-3
max_steps = $steps
logging_steps = 1
save_steps = 1
save_total_limit = 2
threads = 1
[model]
hidden_size = 64
intermediate_size = 128
num_hidden_layers = 2
num_attention_heads = 4
num_key_value_heads = 2
max_position_embeddings = 128
[[datasets]]
path = "$root/configs/data/tiny_stories.jsonl"
TOML
}

losses() {  # step -> train/loss of a metrics.jsonl, one "step loss" per line
  python3 -c '
import json, sys
for line in open(sys.argv[1]):
    j = json.loads(line)
    if "train/loss" in j: print(j["step"], repr(j["train/loss"]))' "$1"
}

config "$work/reference" >"$work/reference.toml"
"$trainer" --config "$work/reference.toml" --no-progress >"$work/reference.log" 2>&1
losses "$work/reference/metrics.jsonl" >"$work/reference.losses"

total_kills=0 total_starts=0 identical=0 lost=0
for ((t = 1; t <= trials; t++)); do
  out="$work/trial-$t"
  config "$out" >"$out.toml"
  kills=0 starts=0 mode=()
  while true; do
    starts=$((starts + 1))
    "$trainer" --config "$out.toml" --no-progress "${mode[@]}" >>"$out.log" 2>&1 &
    pid=$!
    sleep "$(python3 -c 'import random; print(round(random.uniform(0.3, 2.5), 2))')"
    if kill -9 "$pid" 2>/dev/null; then
      wait "$pid" 2>/dev/null || true
      kills=$((kills + 1))
      if ls -d "$out"/checkpoint-[0-9]* >/dev/null 2>&1; then mode=(--resume); else mode=(--overwrite); fi
      continue
    fi
    if wait "$pid"; then break; fi
    echo "trial $t: a start failed (see $out.log)"; tail -5 "$out.log"; exit 1
  done
  same=no
  cmp -s "$work/reference/final/model.safetensors" "$out/final/model.safetensors" && same=yes
  losses "$out/metrics.jsonl" >"$out.losses"
  if cmp -s "$work/reference.losses" "$out.losses"; then history=complete; else history=DIFFERENT; fi
  [ "$same" = yes ] && [ "$history" = complete ] && identical=$((identical + 1)) || lost=$((lost + 1))
  total_kills=$((total_kills + kills)) total_starts=$((total_starts + starts))
  echo "trial $t: $kills kills, $starts starts, final weights identical: $same, metrics history: $history"
done
echo "crash campaign: $trials trials, $total_kills kills, $total_starts starts, $identical identical finishes, $lost with data lost or changed"
[ "$lost" -eq 0 ]
