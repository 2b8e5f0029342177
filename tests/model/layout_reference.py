#!/usr/bin/python3
"""Independent reference for tests/model/model_layouts_test.cpp: the forward passes of the Hugging
Face layouts loom loads besides Llama -- Qwen2 (and Dream, which is Qwen2's computation), Qwen3
and LLaDA -- written in plain float64 PyTorch from the published architecture descriptions
(Qwen2: Llama with biases on the q/k/v projections; Qwen3: RMSNorm over each head of q and k
before RoPE, head_dim of its own, no q/k/v bias; LLaDA-8B: a Llama block under OLMo's names,
ff_proj the SiLU gate, embedding_size rows in the embedding and output matrices). Prints a C++
header with, per layout: the config.json text, the stored tensor names and shapes (in the order
that numbers their deterministic weights) and golden logits.

    /usr/bin/python3 tests/model/layout_reference.py > tests/model/layout_reference_golden.hpp
"""
import json
import math
import torch

torch.set_default_dtype(torch.float64)
H, L, NH, KV, FF = 16, 2, 4, 2, 24


def weight(index, shape, norm):
    """Deterministic weights that bf16 holds exactly: k / 64 with |k| <= 16, norms 1 + k / 64,
    so a bf16 checkpoint and an fp32 one describe the same model."""
    n = 1
    for s in shape:
        n *= s
    i = torch.arange(n, dtype=torch.float64)
    w = torch.round(torch.sin(0.37 * i + 1.3 * index) * 16) / 64
    return (1.0 + w if norm else w).reshape(shape)


def rms(x, w, eps):
    return w * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)


def rot(x):
    a, b = x.chunk(2, -1)
    return torch.cat([-b, a], -1)


def layout(kind):
    """(config.json dict, {stored name: shape}, names of norms, a function name -> role)."""
    if kind in ("qwen2", "Dream", "qwen3", "qwen3_bias"):
        qwen3 = kind.startswith("qwen3")
        bias3 = kind == "qwen3_bias"  # Qwen3's attention_bias: q, k, v and o biases
        kind = "qwen3" if qwen3 else kind
        hd = 8 if qwen3 else H // NH  # Qwen3: head_dim 8 while hidden / heads = 4
        vocab = 40
        cfg = {"model_type": kind, "hidden_size": H, "intermediate_size": FF,
               "num_hidden_layers": L, "num_attention_heads": NH, "num_key_value_heads": KV,
               "vocab_size": vocab, "max_position_embeddings": 64, "rms_norm_eps": 1e-6,
               "rope_theta": 1000000.0 if kind != "qwen3" else 500.0, "hidden_act": "silu",
               "tie_word_embeddings": kind == "qwen2", "torch_dtype": "bfloat16",
               "use_sliding_window": False, "sliding_window": 4096, "max_window_layers": 28,
               "bos_token_id": 1, "eos_token_id": 2, "attention_dropout": 0.0,
               "initializer_range": 0.02, "use_cache": True, "transformers_version": "4.51.0"}
        if qwen3:
            cfg.update({"head_dim": hd, "attention_bias": bias3, "architectures": ["Qwen3ForCausalLM"]})
        elif kind == "Dream":
            cfg.update({"mask_token_id": 37, "pad_token_id": 2, "architectures": ["DreamModel"],
                        "auto_map": {"AutoConfig": "configuration_dream.DreamConfig",
                                     "AutoModel": "modeling_dream.DreamModel"}})
        else:
            cfg.update({"architectures": ["Qwen2ForCausalLM"]})
        shapes = {"model.embed_tokens.weight": (vocab, H), "model.norm.weight": (H,)}
        if not cfg["tie_word_embeddings"]:
            shapes["lm_head.weight"] = (vocab, H)
        for l in range(L):
            p = f"model.layers.{l}."
            shapes.update({p + "input_layernorm.weight": (H,), p + "post_attention_layernorm.weight": (H,),
                           p + "self_attn.q_proj.weight": (NH * hd, H), p + "self_attn.k_proj.weight": (KV * hd, H),
                           p + "self_attn.v_proj.weight": (KV * hd, H), p + "self_attn.o_proj.weight": (H, NH * hd),
                           p + "mlp.gate_proj.weight": (FF, H), p + "mlp.up_proj.weight": (FF, H),
                           p + "mlp.down_proj.weight": (H, FF)})
            if qwen3:
                shapes.update({p + "self_attn.q_norm.weight": (hd,), p + "self_attn.k_norm.weight": (hd,)})
            if bias3:
                shapes[p + "self_attn.o_proj.bias"] = (H,)
            if not qwen3 or bias3:
                shapes.update({p + "self_attn.q_proj.bias": (NH * hd,), p + "self_attn.k_proj.bias": (KV * hd,),
                               p + "self_attn.v_proj.bias": (KV * hd,)})
        return cfg, shapes
    # LLaDA: OLMo's names; 40 tokens padded to 48 rows (embedding_size), GQA, untied head.
    vocab, rows = 40, 48
    cfg = {"model_type": "llada", "architectures": ["LLaDAModelLM"], "d_model": H, "n_layers": L,
           "n_heads": NH, "n_kv_heads": KV, "mlp_hidden_size": FF, "mlp_ratio": 4,
           "vocab_size": vocab, "embedding_size": rows, "max_sequence_length": 64,
           "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "weight_tying": False,
           "include_bias": False, "include_qkv_bias": False, "activation_type": "silu",
           "block_type": "llama", "layer_norm_type": "rms", "layer_norm_with_affine": True,
           "attention_layer_norm": False, "bias_for_layer_norm": False, "alibi": False,
           "rope": True, "rope_full_precision": True, "input_emb_norm": False,
           "scale_logits": False, "mask_token_id": 39, "eos_token_id": 2, "pad_token_id": 2,
           "precision": "amp_bf16", "use_cache": False, "init_std": 0.02,
           "auto_map": {"AutoConfig": "configuration_llada.LLaDAConfig",
                        "AutoModel": "modeling_llada.LLaDAModelLM"}}
    t = "model.transformer."
    shapes = {t + "wte.weight": (rows, H), t + "ln_f.weight": (H,), t + "ff_out.weight": (rows, H)}
    hd = H // NH
    for l in range(L):
        p = f"{t}blocks.{l}."
        shapes.update({p + "attn_norm.weight": (H,), p + "ff_norm.weight": (H,),
                       p + "q_proj.weight": (NH * hd, H), p + "k_proj.weight": (KV * hd, H),
                       p + "v_proj.weight": (KV * hd, H), p + "attn_out.weight": (H, NH * hd),
                       p + "ff_proj.weight": (FF, H), p + "up_proj.weight": (FF, H),
                       p + "ff_out.weight": (H, FF)})
    return cfg, shapes


def is_norm(name):
    return "norm" in name or name.endswith("ln_f.weight")


def weights(shapes):
    return {n: weight(j, shapes[n], is_norm(n)) for j, n in enumerate(sorted(shapes))}


def forward(kind, cfg, W, ids, pos, seg, causal):
    B, S = ids.shape
    llada = kind == "llada"
    eps = cfg["rms_norm_eps"]
    hd = cfg.get("head_dim", H // NH)
    theta = cfg["rope_theta"]
    inv = 1.0 / theta ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd)
    f = torch.outer(pos.reshape(-1).double(), inv).reshape(B, S, hd // 2)
    emb = torch.cat([f, f], -1)
    cos, sin = emb.cos()[:, None], emb.sin()[:, None]  # [B,1,S,D]
    allowed = (seg[:, :, None] == seg[:, None, :]) & (seg[:, None, :] > 0)
    if causal:
        allowed &= torch.ones(S, S, dtype=torch.bool).tril()
    allowed |= torch.eye(S, dtype=torch.bool) & (seg[:, :, None] == 0)

    def get(name):
        return W[name]

    def lin(x, name, bias=None):
        y = x @ get(name).T
        return y + get(bias) if bias is not None and bias in W else y

    x = get("model.transformer.wte.weight" if llada else "model.embed_tokens.weight")[ids]
    for l in range(L):
        if llada:
            p = f"model.transformer.blocks.{l}."
            n1, n2 = p + "attn_norm.weight", p + "ff_norm.weight"
            qn, kn, vn, on = p + "q_proj", p + "k_proj", p + "v_proj", p + "attn_out"
            gate, up, down = p + "ff_proj", p + "up_proj", p + "ff_out"
        else:
            p = f"model.layers.{l}."
            n1, n2 = p + "input_layernorm.weight", p + "post_attention_layernorm.weight"
            qn, kn, vn, on = (p + "self_attn." + s for s in ("q_proj", "k_proj", "v_proj", "o_proj"))
            gate, up, down = (p + "mlp." + s for s in ("gate_proj", "up_proj", "down_proj"))
        h = rms(x, get(n1), eps)
        q = lin(h, qn + ".weight", qn + ".bias").view(B, S, NH, hd)
        k = lin(h, kn + ".weight", kn + ".bias").view(B, S, KV, hd)
        v = lin(h, vn + ".weight", vn + ".bias").view(B, S, KV, hd)
        if kind.startswith("qwen3"):  # per head, over head_dim, before RoPE
            q = rms(q, get(p + "self_attn.q_norm.weight"), eps)
            k = rms(k, get(p + "self_attn.k_norm.weight"), eps)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        q, k = q * cos + rot(q) * sin, k * cos + rot(k) * sin
        k, v = k.repeat_interleave(NH // KV, 1), v.repeat_interleave(NH // KV, 1)
        a = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
        a = a.masked_fill(~allowed[:, None], float("-inf")).softmax(-1)
        o = (a @ v).transpose(1, 2).reshape(B, S, NH * hd)
        x = x + lin(o, on + ".weight", on + ".bias")
        h = rms(x, get(n2), eps)
        x = x + lin(torch.nn.functional.silu(lin(h, gate + ".weight")) * lin(h, up + ".weight"),
                    down + ".weight")
    if llada:
        x = rms(x, get("model.transformer.ln_f.weight"), eps)
        return x @ get("model.transformer.ff_out.weight").T
    x = rms(x, get("model.norm.weight"), eps)
    head = "model.embed_tokens.weight" if cfg["tie_word_embeddings"] else "lm_head.weight"
    return x @ get(head).T


ids = torch.tensor([[3, 7, 1, 9, 22, 5, 0, 0], [11, 2, 2, 38, 4, 17, 25, 6]])
seg = torch.tensor([[1, 1, 1, 2, 2, 2, 0, 0], [1, 1, 1, 1, 1, 1, 1, 1]])
pos = torch.tensor([[0, 1, 2, 0, 1, 2, 0, 0], [0, 1, 2, 3, 4, 5, 6, 7]])
seg1 = torch.ones(2, 8, dtype=torch.long)
pos1 = torch.arange(8).expand(2, 8)


def cpp_string(text):
    return "R\"json(" + text + ")json\""


print("// Generated by tests/model/layout_reference.py (float64 reference); do not edit.")
print("#pragma once")
print("#include <cstdint>")
print("#include <string>")
print("#include <vector>")
print("namespace loom::layout_golden {")
print("struct StoredTensor {\n  const char* name;\n  std::vector<std::int64_t> shape;\n  bool norm;\n};")


def emit(name, t):
    vals = ", ".join(f"{v:.10g}" for v in t.reshape(-1).tolist())
    print(f"const std::vector<double> {name} = {{{vals}}};")


for kind, ident in (("qwen2", "kQwen2"), ("qwen3", "kQwen3"), ("qwen3_bias", "kQwen3Bias"),
                    ("Dream", "kDream"), ("llada", "kLlada")):
    cfg, shapes = layout(kind)
    W = weights(shapes)
    print(f"const std::string {ident}Config = {cpp_string(json.dumps(cfg, indent=2))};")
    print(f"const std::vector<StoredTensor> {ident}Tensors = {{")
    for n in sorted(shapes):
        dims = ", ".join(str(d) for d in shapes[n])
        print(f"    {{\"{n}\", {{{dims}}}, {'true' if is_norm(n) else 'false'}}},")
    print("};")
    for case, p_, s_, causal in (("CausalPacked", pos, seg, True),
                                 ("BidirectionalUnpadded", pos1, seg1, False)):
        logits = forward(kind, cfg, W, ids, p_, s_, causal)
        emit(f"{ident}{case}_r0p4", logits[0, 4])
        emit(f"{ident}{case}_r1p7", logits[1, 7])
        emit(f"{ident}{case}_rowsums", logits[:, :6].sum(-1))

print("}  // namespace loom::layout_golden")
