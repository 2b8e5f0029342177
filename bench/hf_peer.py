#!/usr/bin/env python3
"""The GPU peer for `trainer bench`: the same LLaDA masked-diffusion training step written the
way a Python stack (Axolotl's diffusion plugin, LLaDA's reference code) runs it -- Hugging Face
transformers' LlamaForCausalLM with SDPA attention, a [B, 1, S, S] bidirectional mask, bf16
autocast, full logits then cross-entropy over the masked positions, weighted by 1/p, and
PyTorch's fused AdamW -- on random tokens, timed, as one JSON line.

    python3 bench/hf_peer.py --hidden 2048 --layers 16 --heads 32 --kv-heads 8 --ffn 8192 \
        --vocab 128256 --seq 2048 --batch 8 --steps 10 --warmup 3 --peak-tflops 989

Needs torch with CUDA and transformers (scripts/gpu-check.sh runs it where both are present).
"""
import argparse
import json
import time

import torch
import torch.nn.functional as F


def main():
    ap = argparse.ArgumentParser()
    for k, v in dict(hidden=2048, layers=16, heads=32, kv_heads=8, ffn=8192, vocab=128256, seq=2048,
                     batch=8, steps=10, warmup=3).items():
        ap.add_argument("--" + k.replace("_", "-"), type=int, default=v)
    ap.add_argument("--peak-tflops", type=float, default=989.0)
    ap.add_argument("--theta", type=float, default=500000.0)
    a = ap.parse_args()
    from transformers import LlamaConfig, LlamaForCausalLM

    dev = torch.device("cuda")
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=a.vocab, hidden_size=a.hidden, intermediate_size=a.ffn,
                      num_hidden_layers=a.layers, num_attention_heads=a.heads,
                      num_key_value_heads=a.kv_heads, max_position_embeddings=max(4096, a.seq),
                      rope_theta=a.theta, tie_word_embeddings=True, rms_norm_eps=1e-5)
    cfg._attn_implementation = "sdpa"
    model = LlamaForCausalLM(cfg).to(dev).train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.0, fused=True)
    mask_id, eps = a.vocab - 1, 1e-3
    gen = torch.Generator(device=dev).manual_seed(0)
    # Bidirectional attention as the diffusion plugins pass it: an additive 4D mask of zeros.
    attn = torch.zeros(a.batch, 1, a.seq, a.seq, device=dev, dtype=torch.bfloat16)

    def step():
        ids = torch.randint(0, a.vocab - 1, (a.batch, a.seq), device=dev, generator=gen)
        t = torch.rand(a.batch, device=dev, generator=gen)
        p = ((1 - eps) * t + eps)[:, None].expand(a.batch, a.seq)
        masked = torch.rand(a.batch, a.seq, device=dev, generator=gen) < p
        noisy = torch.where(masked, torch.full_like(ids, mask_id), ids)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = model(input_ids=noisy, attention_mask=attn).logits
        ce = F.cross_entropy(logits[masked].float(), ids[masked], reduction="none") / p[masked]
        loss = ce.sum() / (a.batch * a.seq)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item(), int(masked.sum())

    for _ in range(a.warmup):
        step()
    torch.cuda.synchronize()
    times, rows = [], 0
    for _ in range(a.steps):
        t0 = time.perf_counter()
        _, n = step()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        rows += n
    times.sort()
    med = times[len(times) // 2]
    tokens = a.batch * a.seq
    params = sum(p.numel() for p in model.parameters())
    # FLOPs per token counted as `trainer bench` counts them: 6 x matmul parameters, the output
    # matrix at the rows the loss uses (this peer projects every row: counted at all), attention.
    hd = a.hidden // a.heads
    layer = a.layers * (a.hidden * a.heads * hd * 2 + 2 * a.hidden * a.kv_heads * hd + 3 * a.hidden * a.ffn)
    flops_all = 6.0 * (layer + a.hidden * a.vocab) + a.layers * 12.0 * a.seq * a.heads * hd
    print(json.dumps({
        "peer": "transformers LlamaForCausalLM (sdpa, 4D mask, bf16 autocast, fused AdamW)",
        "tokens_per_s": tokens / med, "step_s": med, "params": params,
        "achieved_tflops": flops_all * tokens / med / 1e12,
        "mfu_declared": flops_all * tokens / med / 1e12 / a.peak_tflops,
        "peak_memory_gb": torch.cuda.max_memory_allocated() / 2**30,
        "masked_share": rows / (tokens * a.steps),
    }))


if __name__ == "__main__":
    main()
