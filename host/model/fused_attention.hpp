// Rotary embedding + scaled dot-product attention as one autograd function for the CPU, for
// libtorch builds without a fused attention kernel (1.13).
//
// Work is split over (row, key/value head) pairs; each task keeps its S x S scores in a
// per-thread buffer and runs its matrix products single-threaded. Compared with the
// composite (rope, transposes, matmul, masked_fill, softmax, matmul) this
//  - avoids batched matmul, which with OpenBLAS and more than one thread is pathologically
//    slow in libtorch 1.13 (tens of times slower than the same products done per matrix);
//  - never stores the [B, H, S, S] probabilities: backward recomputes them from the saved
//    row log-sum-exp, as flash attention does, so activation memory is linear in S;
//  - reads q, k, v straight from the fused projection output and writes the output in the
//    [B, S, H * D] layout that o_proj reads (no transposes or copies).
#pragma once

#include <torch/torch.h>

namespace loom {

struct AttentionDims {
  std::int64_t heads = 0, kv_heads = 0, head_dim = 0;
};

// qkv: [B, S, (H + 2 KV) * D], query heads, then key heads, then value heads (any floating
// dtype; math in fp32, or fp64 for double inputs). cos, sin: [B, S, D] rotary tables at each
// token's position. bias: [B, S, S] additive mask (0 = may attend, -inf = may not) or
// undefined; with an undefined bias, `causal` selects causal or full attention. A query allowed
// no key gets a zero output and no gradient (the composite gives NaN; the host's masks always
// let a query see at least itself). Returns [B, S, H * D] in qkv's dtype.
torch::Tensor fused_rope_attention(const torch::Tensor& qkv, const torch::Tensor& cos,
                                   const torch::Tensor& sin, const torch::Tensor& bias,
                                   bool causal, AttentionDims dims);

// The same computation from ordinary differentiable ops (reference for tests).
torch::Tensor reference_rope_attention(const torch::Tensor& qkv, const torch::Tensor& cos,
                                       const torch::Tensor& sin, const torch::Tensor& bias,
                                       bool causal, AttentionDims dims);

}  // namespace loom
