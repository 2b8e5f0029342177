#!/usr/bin/env bash
# Throughput of `trainer serve`: requests/s and generated tokens/s with 1, 4 and 16 concurrent
# clients (each sends its share of --requests completions one after another), on the "small"
# shape of bench/compare.sh (hidden 256, 4 layers, vocab 4096, byte tokenizer) trained briefly
# on the demo corpus (kept in --work; the speed depends on the weights only through threshold
# decoding, which is off unless --sampler says so).
#
#   bench/serve_throughput.sh [--clients "1 4 16"] [--requests 32] [--max-tokens 64] [--steps 64]
#        [--sampler '{"cache": "dual", "block_length": 32}'] [--max-batch 16] [--threads 2]
#        [--work /tmp/loom-serve-bench] [--train-steps 100] [--trainer build/bin/trainer]
#
# Prints one JSON line per client count: requests/s, generated tokens/s (completion_tokens of
# the answers / wall seconds), and the server's batches and rows batched over that run.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
clients="1 4 16"
requests=32
max_tokens=64
steps=64
sampler='{}'
max_batch=16
threads=2
work=/tmp/loom-serve-bench
train_steps=100
trainer="$root/build/bin/trainer"
while [ $# -gt 0 ]; do
  case "$1" in
    --clients) clients="$2"; shift 2 ;;
    --requests) requests="$2"; shift 2 ;;
    --max-tokens) max_tokens="$2"; shift 2 ;;
    --steps) steps="$2"; shift 2 ;;
    --sampler) sampler="$2"; shift 2 ;;
    --max-batch) max_batch="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --work) work="$2"; shift 2 ;;
    --train-steps) train_steps="$2"; shift 2 ;;
    --trainer) trainer="$2"; shift 2 ;;
    *) echo "serve_throughput.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
export OMP_WAIT_POLICY=PASSIVE

if [ ! -f "$work/final/model.safetensors" ] || [ "$(cat "$work/bench-model" 2>/dev/null)" != "steps=$train_steps" ]; then
  echo "training the small shape for $train_steps steps into $work (once)" >&2
  mkdir -p "$work"
  (cd "$root" && "$trainer" --config bench/configs/small.toml --overwrite --no-progress \
      --set "output_dir=\"$work\"" --set "max_steps=$train_steps" --set "threads=$threads" \
      --set learning_rate=2e-3 --set lr_scheduler=cosine --set warmup_steps=10 --set save_steps=0 \
      --set logging_steps=50 --set val_set_size=0 > "$work/train.log" 2>&1) || {
    echo "training failed:" >&2; tail -n 20 "$work/train.log" >&2; exit 1; }
  echo "steps=$train_steps" > "$work/bench-model"
fi

log="$(mktemp)"
"$trainer" serve --checkpoint "$work/final" --port 0 --max-batch "$max_batch" --max-queue 1024 \
    --set "threads=$threads" > "$log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null; rm -f "$log"' EXIT
port=""
for _ in $(seq 1 600); do
  port="$(sed -n 's/.*on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$log" | head -n 1)"
  [ -n "$port" ] && break
  kill -0 "$server" 2>/dev/null || { cat "$log" >&2; exit 1; }
  sleep 0.2
done
[ -n "$port" ] || { echo "the server did not start" >&2; cat "$log" >&2; exit 1; }

python3 - "$port" "$clients" "$requests" "$max_tokens" "$steps" "$sampler" "$root/configs/data/tiny_stories.jsonl" <<'PY'
import json, sys, threading, time, urllib.request
port, clients, requests, max_tokens, steps, sampler, corpus = sys.argv[1], sys.argv[2].split(), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), json.loads(sys.argv[6]), sys.argv[7]
base = f"http://127.0.0.1:{port}"
prompts = [json.loads(l)["text"][:40] for l in open(corpus) if l.strip()]

def health():
    return json.load(urllib.request.urlopen(base + "/health"))

def complete(i):
    body = dict(sampler, prompt=prompts[i % len(prompts)], max_tokens=max_tokens, steps=steps, seed=i)
    req = urllib.request.Request(base + "/v1/completions", json.dumps(body).encode(), {"Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(req, timeout=3600))["usage"]["completion_tokens"]

complete(0)  # warm-up
for c in map(int, clients):
    tokens = [0] * c
    def client(k):
        for i in range(k, requests, c):
            tokens[k] += complete(i)
    before = health()
    t0 = time.time()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(c)]
    for t in threads: t.start()
    for t in threads: t.join()
    s = time.time() - t0
    after = health()
    print(json.dumps({"clients": c, "requests": requests, "seconds": round(s, 3),
                      "requests_per_s": round(requests / s, 3), "tokens_per_s": round(sum(tokens) / s, 1),
                      "batches": after["batches"] - before["batches"],
                      "rows_batched": after["rows_batched"] - before["rows_batched"]}), flush=True)
PY
# SIGTERM drains and ends the server with status 0.
kill -TERM "$server"
rc=0
wait "$server" || rc=$?
trap - EXIT
if [ "$rc" != 0 ]; then echo "serve_throughput.sh: the server ended with status $rc:" >&2; cat "$log" >&2; fi
rm -f "$log"
exit "$rc"
