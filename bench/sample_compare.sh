#!/usr/bin/env bash
# Side-by-side sampling speed of `trainer generate` and the PyTorch-eager reference sampler
# (../shared/bench/ref_llada.py sample: LLaDA's low-confidence remasking, semi-autoregressive
# blocks, one full forward over the whole sequence per step), 256 new tokens after a 32-token
# prompt, blocks of 32, on the two shapes of bench/compare.sh: "small" (hidden 256, 4 layers,
# 4 heads, 4 kv heads, SwiGLU 688, vocab 4096, byte tokenizer) and "llama3-vocab" (the same with
# vocab 128256 and the Llama-3 tokenizer of ../shared/data/tokenizers/llama3). The programs run
# alternately (reference, loom, reference, loom, ...) so that both see the same machine load;
# each figure is the median over --runs runs.
#
#   bench/sample_compare.sh [--shapes "small llama3-vocab"] [--runs 3] [--threads 2]
#        [--work /tmp/loom-sample-bench] [--train-steps 600] [--train-lr 2e-3] [--retrain]
#        [--batch-modes "dual dual-threshold"] [--trainer build/bin/trainer]
#        [--ref ../shared/bench/ref_llada.py] [--omp-wait-policy PASSIVE|ACTIVE|default]
#
# Weights. The reference cannot load weights: it samples from its own random init. Its speed
# does not depend on the weights -- it always makes exactly --gen-steps full forwards -- so it
# runs on random weights of the same shape. loom's speed does depend on them (threshold
# decoding reveals as many tokens per step as the model is confident about), so loom samples
# from a model of that shape trained on the demo corpus (configs/data/tiny_stories.jsonl) for
# --train-steps steps (cosine from --train-lr), long enough for the model to be confident: at
# 300 steps and lr 1e-3 the small shape's byte-level model was not (train accuracy 34%,
# dual + threshold 0.9 still needed one forward per token). The models are trained once
# and kept in --work/<shape> (reused by later runs; --retrain starts them over).
#
# Rows (loom: `trainer generate --complete 256 --block-length 32 --profile`, tokens/s from the
# profile JSON on stderr: generated_tokens / seconds, model load excluded; the reference's
# gen_tokens_per_s):
#   reference, 256 steps (one token per step) and 64 steps
#   loom no cache 256 steps, no cache 64 steps (equal work to the reference's)
#   loom --cache prefix 256 steps, --cache dual 256 steps
#   loom --cache dual --threshold 0.9 (256 steps at most; stops revealing one by one)
#   batch: 8 ragged prompts (4..32 tokens) in one `--input ... --batch-size 8` run (tokens/s:
#   new tokens / the batch's seconds) against the same 8 prompts as 8 solo `--prompt` runs
#   (summed profile tokens / summed seconds), for each of --batch-modes (dual: --cache dual,
#   dual-threshold: --cache dual --threshold 0.9; nocache: neither).
# Required (issue): dual + threshold 0.9 >= 5x the reference at 256 steps (the ratio against
# the reference at 64 steps is reported too); a cache alone >= 2x the reference at equal steps
# (256); the batch of 8 >= 3x the tokens/s of the 8 solo runs.
#
# Both programs run with --threads threads and the same OpenMP wait policy, PASSIVE unless told
# otherwise (see bench/compare.sh).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
shapes="small llama3-vocab"
runs=3
threads=2
work=/tmp/loom-sample-bench
train_steps=600
train_lr=2e-3
retrain=0
batch_modes="dual dual-threshold"
trainer="$root/build/bin/trainer"
ref="$root/../shared/bench/ref_llada.py"
llama3_tokenizer="$root/../shared/data/tokenizers/llama3/tokenizer.json"
python=/usr/bin/python3
policy=PASSIVE

while [ $# -gt 0 ]; do
  case "$1" in
    --shapes) shapes="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --work) work="$2"; shift 2 ;;
    --train-steps) train_steps="$2"; shift 2 ;;
    --train-lr) train_lr="$2"; shift 2 ;;
    --retrain) retrain=1; shift ;;
    --batch-modes) batch_modes="$2"; shift 2 ;;
    --trainer) trainer="$2"; shift 2 ;;
    --ref) ref="$2"; shift 2 ;;
    --omp-wait-policy) policy="$2"; shift 2 ;;
    -h|--help) sed -n 2,42p "$0"; exit 0 ;;
    *) echo "sample_compare.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -x "$trainer" ] || { echo "sample_compare.sh: no trainer at $trainer (build it first)" >&2; exit 1; }
[ -f "$ref" ] || { echo "sample_compare.sh: no reference script at $ref" >&2; exit 1; }
[ -x "$python" ] || { echo "sample_compare.sh: needs $python with python3-torch (apt-get install python3-torch)" >&2; exit 1; }
if [ "$policy" != default ]; then export OMP_WAIT_POLICY="$policy"; fi
work="$(mkdir -p "$work" && cd "$work" && pwd)"
trainer="$(cd "$(dirname "$trainer")" && pwd)/$(basename "$trainer")"
ref="$(cd "$(dirname "$ref")" && pwd)/$(basename "$ref")"
cd "$root"  # the bench configs name the corpus relative to the project root

gen=256
block=32
prompt_tokens=32
vocab_for() { case "$1" in small) echo 4096 ;; llama3-vocab) echo 128256 ;; esac; }
# Training rows per step: the llama3-vocab shape's output layer (128256 x 256) makes a step
# about 30x dearer, so it trains on fewer rows per step (the corpus is small either way).
train_batch_for() { case "$1" in llama3-vocab) echo 2 ;; *) echo 8 ;; esac; }
batch_flags_for() {
  case "$1" in
    nocache) echo "" ;;
    dual) echo "--cache dual" ;;
    prefix) echo "--cache prefix" ;;
    dual-threshold) echo "--cache dual --threshold 0.9" ;;
    *) echo "sample_compare.sh: unknown batch mode $1" >&2; exit 2 ;;
  esac
}

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }

# --- the models (trained once per shape, kept in $work/<shape>) -----------------------------
train_model() {
  local shape="$1" dir="$work/$1"
  local stamp="shape=$shape steps=$train_steps lr=$train_lr batch=$(train_batch_for "$shape")"
  if [ "$retrain" = 0 ] && [ -f "$dir/final/model.safetensors" ] && [ "$(cat "$dir/bench-model" 2>/dev/null)" = "$stamp" ]; then
    echo "$shape: reusing the model in $dir/final ($stamp)" >&2
    return
  fi
  local extra=()
  if [ "$shape" = llama3-vocab ]; then
    [ -f "$llama3_tokenizer" ] || { echo "sample_compare.sh: no Llama-3 tokenizer at $llama3_tokenizer" >&2; exit 1; }
    extra+=(--set "tokenizer.path=\"$llama3_tokenizer\"")
  fi
  echo "$shape: training $train_steps steps into $dir (once; --work reuses it)" >&2
  mkdir -p "$dir"
  local t0 t1
  t0="$(date +%s)"
  "$trainer" --config "$here/configs/$shape.toml" --overwrite --no-progress \
      --set "output_dir=\"$dir\"" --set "max_steps=$train_steps" --set "threads=$threads" \
      --set "micro_batch_size=$(train_batch_for "$shape")" --set "learning_rate=$train_lr" \
      --set lr_scheduler=cosine --set warmup_steps=30 --set max_grad_norm=1.0 \
      --set save_steps=0 --set logging_steps=25 --set val_set_size=0 "${extra[@]}" \
      > "$dir/train.log" 2>&1 || {
    echo "sample_compare.sh: training $shape failed:" >&2; tail -n 20 "$dir/train.log" >&2; exit 1; }
  t1="$(date +%s)"
  echo "$stamp" > "$dir/bench-model"
  echo "$shape: trained in $((t1 - t0)) s, final train/loss $("$python" -c 'import json,sys; print(json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])["train/loss"])' "$dir/metrics.jsonl")" >&2
}

# --- prompts: one of 32 tokens (the reference's prompt length) and 8 ragged ones ------------
# Prefixes of the demo stories cut at whole words with exactly the wanted token count (the
# byte tokenizer: one token per byte; else counted with `trainer tokenize`).
make_prompts() {
  local shape="$1" dir="$work/$1"
  local tok=""
  [ "$shape" = llama3-vocab ] && tok="$dir/final"
  "$python" - "$root/configs/data/tiny_stories.jsonl" "$dir" "$trainer" "$tok" "$prompt_tokens" "$gen" <<'PY'
import json, subprocess, sys
corpus, out, trainer, tok, n32, gen = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6])
stories = [json.loads(l)["text"] for l in open(corpus, encoding="utf-8") if l.strip()]

def counts(texts):
    if not tok:
        return [len(t.encode("utf-8")) for t in texts]
    r = subprocess.run([trainer, "tokenize", "--tokenizer", tok], input="".join(json.dumps(t) + "\n" for t in texts),
                       capture_output=True, text=True, check=True)
    return [len(json.loads(l)) for l in r.stdout.splitlines() if l.strip()]

def prefix_of(n, start):
    """A prefix of exactly n tokens of some story from index start on (cut at a word or byte)."""
    for s in stories[start:] + stories[:start]:
        cands = [s[:i] for i in range(1, len(s) + 1)] if not tok else \
                [" ".join(s.split(" ")[:k]) for k in range(1, len(s.split(" ")) + 1)]
        for c, k in zip(cands, counts(cands)):
            if k == n:
                return c
            if k > n:
                break
    sys.exit("sample_compare.sh: no story prefix of %d tokens" % n)

open(out + "/prompt32.txt", "w", encoding="utf-8").write(prefix_of(n32, 0))
with open(out + "/ragged.jsonl", "w", encoding="utf-8") as f:
    for i in range(8):
        f.write(json.dumps({"prompt": prefix_of(4 * (i + 1), 10 * (i + 1)), "max_new_tokens": gen}) + "\n")
PY
}

# --- one timed run of each kind ---------------------------------------------------------------
# ref LABEL STEPS: appends "tokens_per_s forwards" to $tmp/SHAPE.LABEL
ref_run() {
  local label="$1" steps="$2"
  "$python" "$ref" sample --hidden 256 --layers 4 --heads 4 --kv-heads 4 --ffn 688 \
      --vocab "$(vocab_for "$shape")" --gen "$gen" --block "$block" --gen-steps "$steps" \
      --threads "$threads" > "$tmp/out" 2> "$tmp/err" || {
    echo "sample_compare.sh: reference $label failed:" >&2; cat "$tmp/err" >&2; exit 1; }
  "$python" - "$tmp/out" >> "$tmp/$shape.$label" <<'PY'
import json, sys
j = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
print(j["gen_tokens_per_s"], j["forwards"])
PY
  printf '  %-26s %10.1f tokens/s\n' "$shape ref $label" "$(tail -n 1 "$tmp/$shape.$label" | cut -d' ' -f1)" >&2
}

# the profile JSON line (generated_tokens, seconds, tokens_per_s, forward_calls) on stderr
profile_of() {
  "$python" - "$1" <<'PY'
import json, sys
lines = [l for l in open(sys.argv[1], encoding="utf-8", errors="replace") if l.startswith("{") and "tokens_per_s" in l]
if not lines:
    sys.exit("sample_compare.sh: no --profile JSON in the trainer's stderr")
j = json.loads(lines[-1])
print(j["generated_tokens"], j["seconds"], j["tokens_per_s"], j["forward_calls"])
PY
}

# loom_run LABEL FLAGS...: appends "tokens_per_s forward_calls" to $tmp/SHAPE.LABEL
loom_run() {
  local label="$1"; shift
  "$trainer" generate --checkpoint "$work/$shape/final" --set "threads=$threads" \
      --prompt "$(cat "$work/$shape/prompt32.txt")" --complete "$gen" --block-length "$block" \
      --profile "$@" > "$tmp/out" 2> "$tmp/err" || {
    echo "sample_compare.sh: loom $label failed:" >&2; tail -n 20 "$tmp/err" >&2; exit 1; }
  local p
  p="$(profile_of "$tmp/err")"
  echo "$p" | awk '{print $3, $4}' >> "$tmp/$shape.$label"
  printf '  %-26s %10.1f tokens/s %6d forwards\n' "$shape loom $label" "$(echo "$p" | cut -d' ' -f3)" "$(echo "$p" | cut -d' ' -f4)" >&2
}

# batch_run MODE: one --input run of the 8 ragged prompts (--batch-size 8) and 8 solo runs;
# appends "batch_tokens_per_s solo_tokens_per_s" to $tmp/SHAPE.batch.MODE
batch_run() {
  local mode="$1" flags
  flags="$(batch_flags_for "$mode")"
  # shellcheck disable=SC2086
  "$trainer" generate --checkpoint "$work/$shape/final" --set "threads=$threads" \
      --input "$work/$shape/ragged.jsonl" --output "$tmp/batch.jsonl" --batch-size 8 \
      --block-length "$block" --steps "$gen" $flags > "$tmp/out" 2> "$tmp/err" || {
    echo "sample_compare.sh: loom batch ($mode) failed:" >&2; tail -n 20 "$tmp/err" >&2; exit 1; }
  local tokens=0 seconds=0 p
  : > "$tmp/solo"
  while IFS= read -r prompt; do
    # shellcheck disable=SC2086
    "$trainer" generate --checkpoint "$work/$shape/final" --set "threads=$threads" \
        --prompt "$prompt" --complete "$gen" --block-length "$block" --steps "$gen" --profile $flags \
        > "$tmp/out" 2> "$tmp/err" || {
      echo "sample_compare.sh: loom solo ($mode) failed:" >&2; tail -n 20 "$tmp/err" >&2; exit 1; }
    profile_of "$tmp/err" >> "$tmp/solo"
  done < <("$python" -c 'import json,sys; [print(json.loads(l)["prompt"]) for l in open(sys.argv[1]) if l.strip()]' "$work/$shape/ragged.jsonl")
  "$python" - "$tmp/batch.jsonl" "$tmp/solo" >> "$tmp/$shape.batch.$mode" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8") if l.strip()]
assert len(rows) == 8, "expected 8 results, got %d" % len(rows)
secs = {r["batch"]: r["seconds"] for r in rows}
batch = sum(r["new_tokens"] for r in rows) / sum(secs.values())
solo = [l.split() for l in open(sys.argv[2]) if l.strip()]
print(batch, sum(float(s[0]) for s in solo) / sum(float(s[1]) for s in solo))
PY
  printf '  %-26s %10.1f tokens/s batch, %8.1f solo\n' "$shape batch $mode" \
      "$(tail -n 1 "$tmp/$shape.batch.$mode" | cut -d' ' -f1)" "$(tail -n 1 "$tmp/$shape.batch.$mode" | cut -d' ' -f2)" >&2
}

echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc --all) CPUs; threads $threads; OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-unset}" >&2
for shape in $shapes; do
  case "$shape" in small|llama3-vocab) ;; *) echo "sample_compare.sh: unknown shape $shape (small, llama3-vocab)" >&2; exit 2 ;; esac
  train_model "$shape"
  make_prompts "$shape"
done
for shape in $shapes; do
  echo "$shape: $runs runs each, $gen new tokens, block $block, prompt: $(cat "$work/$shape/prompt32.txt")" >&2
  for i in $(seq "$runs"); do
    ref_run ref256 256
    loom_run nocache256 --steps 256
    loom_run dual256 --steps 256 --cache dual
    ref_run ref64 64
    loom_run nocache64 --steps 64
    loom_run prefix256 --steps 256 --cache prefix
    loom_run dualthr --steps 256 --cache dual --threshold 0.9
    for m in $batch_modes; do batch_run "$m"; done
  done
done

med() { cut -d' ' -f"$2" "$tmp/$1" | median; }
printf '\n| shape | sampler | steps | forwards | tokens/s | vs reference 256 steps | vs reference 64 steps | required |\n'
printf '| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |\n'
for shape in $shapes; do
  r256="$(med "$shape.ref256" 1)"; r64="$(med "$shape.ref64" 1)"
  row() {  # label steps file required(ratio vs ref256 or "-") required-against
    local tps fw
    tps="$(med "$shape.$3" 1)"; fw="$(med "$shape.$3" 2)"
    awk -v s="$shape" -v l="$1" -v st="$2" -v fw="$fw" -v t="$tps" -v a="$r256" -v b="$r64" -v req="$4" -v vs="$5" 'BEGIN {
      r = (vs == "64") ? t / b : t / a
      verdict = (req == "-") ? "-" : sprintf(">= %sx vs %s steps: %s", req, vs, (r >= req) ? "PASS" : "FAIL")
      printf "| %s | %s | %s | %.0f | %.1f | %.2fx | %.2fx | %s |\n", s, l, st, fw, t, t / a, t / b, verdict }'
  }
  row "reference" 256 ref256 - -
  row "reference" 64 ref64 - -
  row "loom, no cache" 256 nocache256 - -
  row "loom, no cache" 64 nocache64 - -
  row "loom, cache prefix" 256 prefix256 2 256
  row "loom, cache dual" 256 dual256 2 256
  row "loom, dual + threshold 0.9" "<= 256" dualthr 5 256
done
printf '\n| shape | batch mode | batch of 8 ragged prompts tokens/s | 8 solo runs tokens/s | ratio | required |\n'
printf '| --- | --- | ---: | ---: | ---: | --- |\n'
for shape in $shapes; do
  for m in $batch_modes; do
    b="$(med "$shape.batch.$m" 1)"; s="$(med "$shape.batch.$m" 2)"
    awk -v sh="$shape" -v m="$m" -v b="$b" -v s="$s" 'BEGIN {
      printf "| %s | %s | %.1f | %.1f | %.2fx | >= 3x: %s |\n", sh, m, b, s, b / s, (b / s >= 3) ? "PASS" : "FAIL" }'
  done
done
