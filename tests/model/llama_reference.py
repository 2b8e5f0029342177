#!/usr/bin/python3
"""Independent reference for tests/model/llama_model_test.cpp: a Llama forward pass written
from transformers' LlamaForCausalLM formulas in plain PyTorch (Debian's python3-torch), with
deterministic weights, printing golden values as C++ initialisers.

    /usr/bin/python3 tests/model/llama_reference.py
"""
import math
import torch

torch.set_default_dtype(torch.float64)
V, H, L, NH, KV, FF = 40, 16, 2, 4, 2, 24
HD = H // NH


def weight(index, shape):
    n = 1
    for s in shape:
        n *= s
    i = torch.arange(n, dtype=torch.float64)
    return (torch.sin(0.37 * i + 1.3 * index) * 0.25).reshape(shape)


names = []
shapes = {"model.embed_tokens.weight": (V, H), "model.norm.weight": (H,), "lm_head.weight": (V, H)}
for l in range(L):
    p = f"model.layers.{l}."
    shapes.update({p + "input_layernorm.weight": (H,), p + "post_attention_layernorm.weight": (H,),
                   p + "self_attn.q_proj.weight": (NH * HD, H), p + "self_attn.k_proj.weight": (KV * HD, H),
                   p + "self_attn.v_proj.weight": (KV * HD, H), p + "self_attn.o_proj.weight": (H, NH * HD),
                   p + "mlp.gate_proj.weight": (FF, H), p + "mlp.up_proj.weight": (FF, H),
                   p + "mlp.down_proj.weight": (H, FF)})
W = {n: weight(j, shapes[n]) for j, n in enumerate(sorted(shapes))}
for n in W:
    if "norm" in n:
        W[n] = 1.0 + 0.5 * W[n]


def inv_freq(theta, scaling=None):
    f = 1.0 / theta ** (torch.arange(0, HD, 2, dtype=torch.float64) / HD)
    if scaling:  # transformers' _compute_llama3_parameters
        factor, lo, hi, old = scaling
        lw, hw = old / lo, old / hi
        out = []
        for x in f.tolist():
            wl = 2 * math.pi / x
            if wl < hw:
                out.append(x)
            elif wl > lw:
                out.append(x / factor)
            else:
                s = (old / wl - lo) / (hi - lo)
                out.append((1 - s) * x / factor + s * x)
        f = torch.tensor(out)
    return f


def rms(x, w):
    return w * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5)


def rot(x):
    a, b = x.chunk(2, -1)
    return torch.cat([-b, a], -1)


def forward(ids, pos, seg, causal, theta=10000.0, scaling=None):
    B, S = ids.shape
    f = torch.outer(pos.reshape(-1).double(), inv_freq(theta, scaling)).reshape(B, S, HD // 2)
    emb = torch.cat([f, f], -1)
    cos, sin = emb.cos()[:, None], emb.sin()[:, None]  # [B,1,S,D]
    allowed = (seg[:, :, None] == seg[:, None, :]) & (seg[:, None, :] > 0)
    if causal:
        allowed &= torch.ones(S, S, dtype=torch.bool).tril()
    allowed |= torch.eye(S, dtype=torch.bool) & (seg[:, :, None] == 0)
    x = W["model.embed_tokens.weight"][ids]
    for l in range(L):
        p = f"model.layers.{l}."
        h = rms(x, W[p + "input_layernorm.weight"])
        q = (h @ W[p + "self_attn.q_proj.weight"].T).view(B, S, NH, HD).transpose(1, 2)
        k = (h @ W[p + "self_attn.k_proj.weight"].T).view(B, S, KV, HD).transpose(1, 2)
        v = (h @ W[p + "self_attn.v_proj.weight"].T).view(B, S, KV, HD).transpose(1, 2)
        q, k = q * cos + rot(q) * sin, k * cos + rot(k) * sin
        k, v = k.repeat_interleave(NH // KV, 1), v.repeat_interleave(NH // KV, 1)
        a = (q @ k.transpose(-1, -2)) / math.sqrt(HD)
        a = a.masked_fill(~allowed[:, None], float("-inf")).softmax(-1)
        o = (a @ v).transpose(1, 2).reshape(B, S, H)
        x = x + o @ W[p + "self_attn.o_proj.weight"].T
        h = rms(x, W[p + "post_attention_layernorm.weight"])
        g = h @ W[p + "mlp.gate_proj.weight"].T
        u = h @ W[p + "mlp.up_proj.weight"].T
        x = x + (torch.nn.functional.silu(g) * u) @ W[p + "mlp.down_proj.weight"].T
    x = rms(x, W["model.norm.weight"])
    return x @ W["lm_head.weight"].T


ids = torch.tensor([[3, 7, 1, 9, 22, 5, 0, 0], [11, 2, 2, 38, 4, 17, 25, 6]])
seg = torch.tensor([[1, 1, 1, 2, 2, 2, 0, 0], [1, 1, 1, 1, 1, 1, 1, 1]])
pos = torch.tensor([[0, 1, 2, 0, 1, 2, 0, 0], [0, 1, 2, 3, 4, 5, 6, 7]])


def emit(name, t):
    vals = ", ".join(f"{v:.10g}" for v in t.reshape(-1).tolist())
    print(f"const std::vector<double> {name} = {{{vals}}};")


for name, causal, scaling in [("kCausalPacked", True, None), ("kBidirectionalPacked", False, None),
                              ("kCausalLlama3Rope", True, (4.0, 1.0, 4.0, 8.0))]:
    logits = forward(ids, pos, seg, causal, scaling=scaling)
    # Golden: logits at (row 0, pos 4) and (row 1, pos 7), and the per-position sums.
    emit(name + "_r0p4", logits[0, 4])
    emit(name + "_r1p7", logits[1, 7])
    emit(name + "_rowsums", logits[:, :6].sum(-1))
