#!/usr/bin/python3
"""Writes a Llama-3.2-1B-shaped Hugging Face folder with random weights (normal(0, 0.02), norms
at one) stored as bf16: config.json (LlamaConfig's keys, torch_dtype bfloat16) and
model.safetensors, written tensor by tensor so memory stays near one tensor. For measuring
training memory and speed (bench/lora_memory.sh) without downloading the model.

    /usr/bin/python3 bench/random_llama_checkpoint.py OUT_DIR [--layers N]
"""
import argparse
import json
import os
import struct

import torch

p = argparse.ArgumentParser()
p.add_argument("out")
p.add_argument("--layers", type=int, default=16)
a = p.parse_args()
H, I, L, NH, KV, V = 2048, 8192, a.layers, 32, 8, 128256
D = H // NH
config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": H,
          "intermediate_size": I, "num_hidden_layers": L, "num_attention_heads": NH,
          "num_key_value_heads": KV, "head_dim": D, "vocab_size": V, "max_position_embeddings": 131072,
          "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "tie_word_embeddings": True,
          "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                           "original_max_position_embeddings": 8192, "rope_type": "llama3"},
          "bos_token_id": 128000, "eos_token_id": 128001, "hidden_act": "silu",
          "attention_bias": False, "mlp_bias": False, "torch_dtype": "bfloat16",
          "initializer_range": 0.02}
shapes = {"model.embed_tokens.weight": (V, H), "model.norm.weight": (H,)}
for l in range(L):
    p_ = f"model.layers.{l}."
    shapes.update({p_ + "input_layernorm.weight": (H,), p_ + "post_attention_layernorm.weight": (H,),
                   p_ + "self_attn.q_proj.weight": (NH * D, H), p_ + "self_attn.k_proj.weight": (KV * D, H),
                   p_ + "self_attn.v_proj.weight": (KV * D, H), p_ + "self_attn.o_proj.weight": (H, NH * D),
                   p_ + "mlp.gate_proj.weight": (I, H), p_ + "mlp.up_proj.weight": (I, H),
                   p_ + "mlp.down_proj.weight": (H, I)})
os.makedirs(a.out, exist_ok=True)
with open(os.path.join(a.out, "config.json"), "w") as f:
    json.dump(config, f, indent=2)
# safetensors: 8-byte little-endian header length, JSON header (name -> dtype, shape, offsets), data.
header, offset = {"__metadata__": {"format": "pt"}}, 0
for name in sorted(shapes):
    n = 1
    for s in shapes[name]:
        n *= s
    header[name] = {"dtype": "BF16", "shape": list(shapes[name]), "data_offsets": [offset, offset + 2 * n]}
    offset += 2 * n
text = json.dumps(header).encode()
text += b" " * (-len(text) % 8)
gen = torch.Generator().manual_seed(0)
with open(os.path.join(a.out, "model.safetensors"), "wb") as f:
    f.write(struct.pack("<Q", len(text)))
    f.write(text)
    for name in sorted(shapes):
        if name.endswith("norm.weight"):
            t = torch.ones(shapes[name], dtype=torch.bfloat16)
        else:
            t = (torch.randn(shapes[name], generator=gen) * 0.02).to(torch.bfloat16)
        f.write(t.view(torch.int16).numpy().tobytes())
total = sum(torch.Size(s).numel() for s in shapes.values())
print(f"{a.out}: {L} layers, {total / 1e9:.3f}B parameters, bf16")
