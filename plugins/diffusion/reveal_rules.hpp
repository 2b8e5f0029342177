// The per-step rules of the reverse sampler, as pure functions on tensors (sampler.cpp applies
// them; tests check them on hand-made inputs):
//  - which token each masked position gets: top-k / top-p filtering of its logits;
//  - how confident the step is in it: probability, margin or negative entropy;
//  - which positions a step reveals: LLaDA's fixed count, Fast-dLLM's threshold, or
//    Fast-dLLM's dynamic (factor) rule.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

#include "diffusion_config.hpp"

namespace loom::diffusion {

struct RevealRule {
  enum class Kind { Count, Threshold, Factor };
  Kind kind = Kind::Count;
  std::int64_t count = 1;  // Count: reveal this many (fewer if fewer are masked)
  double threshold = 1.0;  // Threshold: every confidence >= threshold
  double factor = 1.0;     // Factor: the top n while the n-th is >= 1 - factor / (n + 1)

  static RevealRule fixed(std::int64_t n) { return {Kind::Count, n, 1.0, 1.0}; }
  static RevealRule above(double t) { return {Kind::Threshold, 1, t, 1.0}; }
  static RevealRule dynamic(double f) { return {Kind::Factor, 1, 1.0, f}; }
};

// Indices into `confidence` ([C], C >= 1) of the positions to reveal, most confident first
// (ties: at::topk's order, as LLaDA's torch.topk). Count reveals min(count, C); Threshold and
// Factor always reveal at least the most confident one.
at::Tensor positions_to_reveal(const at::Tensor& confidence, const RevealRule& rule);

// Confidence of each row's prediction `x0` ([C] int64) under the distribution softmax(logits)
// ([C, V]), by `remasking` (not Random, which draws instead): LowConfidence p(x0); Margin
// top-1 minus top-2 probability; Entropy sum p log p (the negative entropy, <= 0). [C], the
// logits' dtype; -inf logits are tokens with no probability.
at::Tensor prediction_confidence(const at::Tensor& logits, const at::Tensor& x0,
                                 Remasking remasking);

// Logits [C, V] with every token outside each row's top-k (top_k > 0; ties with the k-th
// kept) and then outside its top-p nucleus (top_p < 1: the fewest most likely tokens whose
// probability reaches top_p; the most likely always stays) set to -inf. The nucleus is that
// of softmax(logits / temperature) -- the distribution sampling draws from -- with
// `temperature` [C, 1] (values <= 0 count as 1), or of softmax(logits) when undefined.
at::Tensor filter_top_k_top_p(const at::Tensor& logits, std::int64_t top_k, double top_p,
                              const at::Tensor& temperature = at::Tensor());

}  // namespace loom::diffusion
