#!/usr/bin/python3
"""Independent reference for `trainer eval` on a diffusion checkpoint: LLaDA's Monte Carlo
likelihood estimator, written from the LLaDA paper's formulas in plain PyTorch (Debian's
python3-torch) and float64. It shares no code with loom: it reads the checkpoint folder itself
(config.json with transformers' LlamaConfig keys, model.safetensors parsed by hand) and runs
its own Llama forward pass with full bidirectional attention over one document.

    /usr/bin/python3 tests/diffusion/llada_likelihood_reference.py \
        --checkpoint CKPT --tokens DOCS.json [--mc 128] [--seed 0] [--mask-id ID] [--logit-shift]

DOCS.json: a JSON list of documents (or JSON lines, one document per line), each a list of
token ids exactly as loom lays the document into its row: for completion data
[BOS] + tokenizer.encode(text) + [EOS] (see host/data/dataset_reader.cpp). Each document is
scored as one sequence of its own (positions 0..n-1, every token sees every token, no padding),
as loom's eval sees it when the document fits in one row of sequence_len tokens (a longer one is
cut into row-sized segments there; give such pieces as separate documents here).

Prints one JSON object:
    {"nats_per_token": x, "stderr": s, "tokens": n, "documents": d, "draws": N, ...}

What is estimated (the LLaDA bound, per scored token)
---------------------------------------------------
For a document x with E scored positions, the negative ELBO of masked diffusion is

    B(x) = E_{t ~ U(0,1)} E_{x_t} [ (1/t) * sum_{i masked in x_t} -log p(x_i | x_t) ]

where x_t masks each scored token independently with probability t. LLaDA's low-variance
form (the published `get_log_likelihood`) draws l ~ U{1..E}, masks exactly l of the E positions
uniformly at random, and weights by E/l:

    B(x) = E_l E_{x_l} [ (E/l) * sum_{i masked} -log p(x_i | x_l) ].

Both are the same number: given k masked tokens the masked set is uniform either way, and
int_0^1 (1/t) C(E,k) t^k (1-t)^(E-k) dt = 1/k = (1/E) * (E/k). This script uses the second form,
one independent l per draw (LLaDA's code spreads l over a batch with a linspace; independent
draws make the standard error below valid).

Scored positions, as loom's forward process chooses them (plugins/diffusion/forward_process.cpp):
every position whose id is not special -- BOS, EOS, PAD (config.json), the mask token, and any
added token marked "special" in tokenizer.json. Special tokens stay visible as context and are
never scored. With --logit-shift (models adapted from an autoregressive checkpoint) the first
token of the document is not scored either, and token i is predicted from the hidden state at
i-1.

The value reported is sum_d B(x_d) / sum_d E_d over the documents: nats per scored token, the
quantity `trainer eval` reports as nll_bound_per_token (it divides the sum of CE/p over masked
tokens by the scored ("eligible") tokens, and weights micro-batches by that count).

Known differences from loom's estimator:
  * loom draws t ~ U[0,1), p = (1 - eps) t + eps, masks each scored token with probability p
    and weights by 1/p (diffusion_loss.cpp, evaluation branch). Same bound in expectation up
    to the eps floor, which moves the mean slightly (not only the variance). With
    g(p) = E[sum over masked of CE | each token masked with probability p] / p, the bound is
    B = int_0^1 g(p) dp, and loom's mean is 1/(1-eps) * int_eps^1 g(p) dp
    = (B - int_0^eps g(p) dp) / (1-eps): a relative difference of order eps (g(0)/E is the
    mean CE of one token masked alone, usually below the per-token bound), 1e-3 by default, far inside the
    Monte Carlo error of a test.
  * loom's evaluation draws with the linear schedule and no clamping, whatever the training
    config's noise_schedule and min/max_mask_ratio say (a cosine or clamped p with 1/p weights
    would not be this bound), and scores every document of at most sequence_len tokens whole
    (evaluation packing never cuts such a document to fill a row); give longer documents here
    as the row-sized pieces loom cuts them into.
  * loom runs the model in float32 (or bf16 with bf16 = true), this script in float64.

Standard error: draws of one document are i.i.d., and documents use independent draws, so the
per-document means are independent with variances s_d^2 / N (s_d^2: sample variance of the N
draws of document d). The total sum_d mean_d then has variance sum_d s_d^2 / N, and the
per-token value's standard error is sqrt(sum_d s_d^2 / N) / sum_d E_d.

--causal instead prints the ordinary next-token NLL per token with causal attention (all
tokens after the first are targets, as `trainer eval --objective causal --set
sample_packing=false` counts them): a deterministic check of this script's forward pass
against loom's, free of Monte Carlo noise.
"""
import argparse
import json
import math
import os
import struct
import sys

import numpy as np
import torch

torch.set_default_dtype(torch.float64)

# --------------------------------------------------------------------------------------------
# Checkpoint reading


def read_safetensors(path):
    """{name: float64 tensor} from a .safetensors file: u64 little-endian header size, a JSON
    header {name: {dtype, shape, data_offsets: [begin, end]}} (offsets relative to the end of
    the header), then the raw little-endian tensor bytes."""
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        raw = blob[base + begin:base + end]
        dtype, shape = info["dtype"], info["shape"]
        if dtype == "F32":
            a = np.frombuffer(raw, dtype="<f4").astype(np.float64)
        elif dtype == "F64":
            a = np.frombuffer(raw, dtype="<f8").astype(np.float64)
        elif dtype == "F16":
            a = np.frombuffer(raw, dtype="<f2").astype(np.float64)
        elif dtype == "BF16":  # the top 16 bits of a float32
            a = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32).astype(np.float64)
        else:
            raise SystemExit(f"{path}: tensor {name} has dtype {dtype}, not a float type")
        count = 1
        for s in shape:
            count *= s
        if a.size != count:
            raise SystemExit(f"{path}: tensor {name}: {a.size} values for shape {shape}")
        out[name] = torch.from_numpy(a.copy()).reshape(shape)
    return out


def rope_inverse_frequencies(config, head_dim):
    """transformers' RoPE frequencies: default, linear, or llama3 (Llama 3.1) scaling."""
    scaling = config.get("rope_scaling") or config.get("rope_parameters") or {}
    theta = config.get("rope_theta")
    if theta is None:
        theta = (config.get("rope_parameters") or {}).get("rope_theta", 10000.0)
    inv = [1.0 / theta ** (2 * i / head_dim) for i in range(head_dim // 2)]
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if kind == "linear":  # positions / factor
        inv = [f / scaling["factor"] for f in inv]
    elif kind == "llama3":
        factor, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
        context = scaling["original_max_position_embeddings"]
        scaled = []
        for f in inv:
            wavelength = 2 * math.pi / f
            if wavelength < context / high:  # high frequency: unchanged
                scaled.append(f)
            elif wavelength > context / low:  # low frequency: slowed by factor
                scaled.append(f / factor)
            else:  # in between: interpolate in context / wavelength
                w = (context / wavelength - low) / (high - low)
                scaled.append((1 - w) * f / factor + w * f)
        inv = scaled
    elif kind != "default":
        raise SystemExit(f"rope type {kind!r} is not implemented here")
    return torch.tensor(inv)


class Llama:
    """A Llama forward pass (transformers' LlamaForCausalLM formulas) in float64."""

    def __init__(self, folder):
        with open(os.path.join(folder, "config.json")) as f:
            self.config = c = json.load(f)
        self.w = read_safetensors(os.path.join(folder, "model.safetensors"))
        self.layers = c["num_hidden_layers"]
        self.heads = c["num_attention_heads"]
        self.kv_heads = c.get("num_key_value_heads") or self.heads
        self.hidden = c["hidden_size"]
        self.head_dim = c.get("head_dim") or self.hidden // self.heads
        self.eps = c.get("rms_norm_eps", 1e-6)
        self.inv_freq = rope_inverse_frequencies(c, self.head_dim)
        # Tied embeddings: no lm_head.weight in the file.
        self.lm_head = self.w.get("lm_head.weight", self.w["model.embed_tokens.weight"])
        self.vocab = self.lm_head.shape[0]

    def rms(self, x, weight):
        return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))

    @staticmethod
    def rotate_half(x):
        a, b = x.chunk(2, -1)
        return torch.cat([-b, a], -1)

    def hidden_states(self, ids, causal=False):
        """ids [B, S] (B copies of one document, differently masked) -> final hidden [B, S, H]."""
        B, S = ids.shape
        angles = torch.outer(torch.arange(S, dtype=torch.float64), self.inv_freq)  # [S, D/2]
        angles = torch.cat([angles, angles], -1)
        cos, sin = angles.cos(), angles.sin()  # [S, D], broadcast over [B, heads, S, D]
        allowed = torch.ones(S, S, dtype=torch.bool)  # one document: everyone sees everyone
        if causal:
            allowed = allowed.tril()
        D, NH, KV = self.head_dim, self.heads, self.kv_heads
        x = self.w["model.embed_tokens.weight"][ids]
        for layer in range(self.layers):
            p = f"model.layers.{layer}."
            W = lambda name: self.w[p + name]  # noqa: E731
            h = self.rms(x, W("input_layernorm.weight"))
            q = (h @ W("self_attn.q_proj.weight").T).view(B, S, NH, D).transpose(1, 2)
            k = (h @ W("self_attn.k_proj.weight").T).view(B, S, KV, D).transpose(1, 2)
            v = (h @ W("self_attn.v_proj.weight").T).view(B, S, KV, D).transpose(1, 2)
            q = q * cos + self.rotate_half(q) * sin
            k = k * cos + self.rotate_half(k) * sin
            # Grouped-query attention: kv head j serves query heads j*g .. j*g+g-1.
            k = k.repeat_interleave(NH // KV, dim=1)
            v = v.repeat_interleave(NH // KV, dim=1)
            scores = (q @ k.transpose(-1, -2)) / math.sqrt(D)
            scores = scores.masked_fill(~allowed, float("-inf"))
            o = (scores.softmax(-1) @ v).transpose(1, 2).reshape(B, S, NH * D)
            x = x + o @ W("self_attn.o_proj.weight").T
            h = self.rms(x, W("post_attention_layernorm.weight"))
            gate = h @ W("mlp.gate_proj.weight").T
            up = h @ W("mlp.up_proj.weight").T
            x = x + (torch.nn.functional.silu(gate) * up) @ W("mlp.down_proj.weight").T
        return self.rms(x, self.w["model.norm.weight"])

    def nll(self, hidden, targets):
        """-log p(target) for hidden [N, H], targets [N]."""
        logp = torch.log_softmax(hidden @ self.lm_head.T, -1)
        return -logp.gather(-1, targets[:, None])[:, 0]


# --------------------------------------------------------------------------------------------
# Which ids are never masked


def special_ids(folder, config, mask_id):
    ids = {mask_id}
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
        v = config.get(key)
        for x in (v if isinstance(v, list) else [v]):
            if isinstance(x, int):
                ids.add(x)
    path = os.path.join(folder, "tokenizer.json")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            for t in json.load(f).get("added_tokens", []):
                if t.get("special"):
                    ids.add(int(t["id"]))
    return ids


def resolve_mask_id(folder, text):
    path = os.path.join(folder, "tokenizer.json")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            tok = json.load(f)
        for t in tok.get("added_tokens", []):
            if t.get("content") == text:
                return int(t["id"])
        vocab = tok.get("model", {}).get("vocab", {})
        if isinstance(vocab, dict) and text in vocab:
            return int(vocab[text])
    raise SystemExit(f"{folder}: no token {text!r} in tokenizer.json; pass --mask-id")


def read_documents(path):
    with open(path) as f:
        text = f.read()
    try:
        docs = json.loads(text)
    except json.JSONDecodeError:  # JSON lines
        docs = [json.loads(line) for line in text.splitlines() if line.strip()]
    if not isinstance(docs, list) or not all(isinstance(d, list) and d for d in docs):
        raise SystemExit(f"{path}: expected a list of non-empty lists of token ids")
    return [[int(t) for t in d] for d in docs]


# --------------------------------------------------------------------------------------------
# The estimators


def llada_draws(model, doc, scored, mask_id, draws, rng, logit_shift, chunk):
    """N i.i.d. draws of LLaDA's estimator of B(doc): l ~ U{1..E}, exactly l of the E scored
    positions masked uniformly, (E/l) * sum of -log p over them. Returns a float64 array [N]."""
    E = len(scored)
    seq = torch.tensor(doc, dtype=torch.long)
    scored_t = torch.tensor(scored, dtype=torch.long)
    out = []
    for start in range(0, draws, chunk):
        n = min(chunk, draws - start)
        ids = seq.repeat(n, 1)
        masks, ls = [], []
        for r in range(n):
            l = int(rng.integers(1, E + 1))  # uniform in 1..E
            chosen = scored_t[torch.from_numpy(rng.permutation(E)[:l])]
            ids[r, chosen] = mask_id
            masks.append(chosen)
            ls.append(l)
        hidden = model.hidden_states(ids)
        for r in range(n):
            pos = masks[r]
            src = pos - 1 if logit_shift else pos
            ce = model.nll(hidden[r, src], seq[pos])
            out.append(E / ls[r] * float(ce.sum()))
    return np.array(out, dtype=np.float64)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", required=True, help="loom checkpoint folder (HF layout)")
    ap.add_argument("--tokens", required=True, help="JSON list (or JSON lines) of token-id lists")
    ap.add_argument("--mc", type=int, default=128, help="Monte Carlo draws per document")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mask-id", type=int, default=None, help="default: --mask-token's id")
    ap.add_argument("--mask-token", default="<|diffusion_mask|>")
    ap.add_argument("--logit-shift", action="store_true", help="predict token i at position i-1")
    ap.add_argument("--chunk", type=int, default=64, help="draws per forward pass")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--causal", action="store_true",
                    help="print the causal next-token NLL per token instead (forward check)")
    a = ap.parse_args()
    if a.mc < 2:
        raise SystemExit("--mc must be at least 2 (the standard error needs two draws)")
    torch.set_num_threads(a.threads)

    model = Llama(a.checkpoint)
    docs = read_documents(a.tokens)
    for d in docs:
        bad = [t for t in d if not 0 <= t < model.vocab]
        if bad:
            raise SystemExit(f"{a.tokens}: token id {bad[0]} outside the vocabulary of {model.vocab}")

    if a.causal:
        with torch.no_grad():
            total, count = 0.0, 0
            for d in docs:
                if len(d) < 2:
                    continue
                h = model.hidden_states(torch.tensor([d]), causal=True)[0]
                total += float(model.nll(h[:-1], torch.tensor(d[1:])).sum())
                count += len(d) - 1
        print(json.dumps({"nll_per_token": total / count, "tokens": count, "documents": len(docs)}))
        return

    mask_id = a.mask_id if a.mask_id is not None else resolve_mask_id(a.checkpoint, a.mask_token)
    special = special_ids(a.checkpoint, model.config, mask_id)
    if any(mask_id in d for d in docs):
        raise SystemExit("a document contains the mask token itself")
    rng = np.random.default_rng(a.seed)
    total_mean, total_var, scored_tokens, seq_tokens = 0.0, 0.0, 0, 0
    with torch.no_grad():
        for d in docs:
            scored = [i for i, t in enumerate(d) if t not in special and not (a.logit_shift and i == 0)]
            seq_tokens += len(d)
            if not scored:
                continue
            x = llada_draws(model, d, scored, mask_id, a.mc, rng, a.logit_shift, max(1, a.chunk))
            total_mean += x.mean()
            total_var += x.var(ddof=1) / len(x)  # variance of this document's mean
            scored_tokens += len(scored)
    if scored_tokens == 0:
        raise SystemExit("no scored tokens (every token is special)")
    print(json.dumps({
        "nats_per_token": total_mean / scored_tokens,
        "stderr": math.sqrt(total_var) / scored_tokens,
        "tokens": scored_tokens,
        "sequence_tokens": seq_tokens,
        "documents": len(docs),
        "draws": a.mc,
        "mask_id": mask_id,
        "log_vocab": math.log(model.vocab),
    }))


if __name__ == "__main__":
    sys.exit(main())
