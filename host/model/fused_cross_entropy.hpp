// Vocabulary projection and cross-entropy as one autograd function (what
// sdk::ModelHandle::cross_entropy runs on the host): per-row losses for the rows an objective scores, without the tensors the
// composite (linear, log_softmax, gather) keeps or builds.
//
// Forward computes the logits once, then in row blocks small enough to stay in cache the
// row maximum (and argmax), the log-sum-exp, the loss, and in place the gradient of the loss
// with respect to the logits, softmax - onehot. Backward is two matrix products with that
// buffer, the upstream gradient folded into the small [N, H] operands. One [N, V] buffer in
// all, against four or five [N, V] tensors and a dozen passes over them for the composite:
// at a 128k vocabulary that is most of the step's memory traffic and of its peak memory.
#pragma once

#include <torch/torch.h>

namespace loom {

// hidden [N, H], weight [V, H] (the output matrix), targets [N] int64 in [0, V). Returns the
// per-row cross-entropy [N] in fp32 (fp64 for fp64 inputs), differentiable with respect to
// hidden and weight. Under CPU bf16 autocast the products run in bf16 and the softmax in fp32.
// With `argmax`, also each row's highest-scoring id [N] (int64). `exclude_ids` ([K] int64,
// undefined = none): ids left out of the softmax (their logits count as -inf); a target may
// not be one of them.
torch::Tensor linear_cross_entropy(const torch::Tensor& hidden, const torch::Tensor& weight,
                                   const torch::Tensor& targets, torch::Tensor* argmax = nullptr,
                                   const torch::Tensor& exclude_ids = {});

// The same from ordinary differentiable ops (the path on CUDA, and the reference for tests).
torch::Tensor reference_linear_cross_entropy(const torch::Tensor& hidden,
                                             const torch::Tensor& weight,
                                             const torch::Tensor& targets,
                                             torch::Tensor* argmax = nullptr,
                                             const torch::Tensor& exclude_ids = {});

}  // namespace loom
