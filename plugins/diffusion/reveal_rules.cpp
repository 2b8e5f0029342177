#include "reveal_rules.hpp"

#include <algorithm>
#include <limits>
#include <stdexcept>
#include <string>

namespace loom::diffusion {

at::Tensor positions_to_reveal(const at::Tensor& confidence, const RevealRule& rule) {
  const std::int64_t C = confidence.size(0);
  if (C == 0) return at::empty({0}, at::kLong);
  if (rule.kind == RevealRule::Kind::Count)
    return std::get<1>(at::topk(confidence, std::min(rule.count, C)));
  auto [sorted, order] = at::topk(confidence, C);  // [C] descending
  std::int64_t n = 1;
  if (rule.kind == RevealRule::Kind::Threshold) {
    // Descending: the confidences >= t form a prefix.
    n = std::max<std::int64_t>(1, sorted.ge(rule.threshold).sum().item<std::int64_t>());
  } else {
    // The n-th (1-based) passes when >= 1 - factor / (n + 1); the first always passes.
    // Reveal the longest passing prefix.
    auto rank = at::arange(1, C + 1, sorted.options());
    auto pass = sorted.ge(1.0 - rule.factor / (rank + 1.0));
    pass.index_fill_(0, at::zeros({1}, at::kLong), true);
    n = pass.to(at::kLong).cumprod(0).sum().item<std::int64_t>();
  }
  return order.narrow(0, 0, n);
}

at::Tensor prediction_confidence(const at::Tensor& logits, const at::Tensor& x0,
                                 Remasking remasking) {
  switch (remasking) {
    case Remasking::LowConfidence:
      return at::softmax(logits, -1).gather(1, x0.unsqueeze(1)).squeeze(1);
    case Remasking::Margin: {
      auto p = at::softmax(logits, -1);
      if (p.size(1) < 2) return p.select(1, 0);
      auto top = std::get<0>(at::topk(p, 2, -1));  // [C, 2]
      return top.select(1, 0) - top.select(1, 1);
    }
    case Remasking::Entropy: {
      auto logp = at::log_softmax(logits, -1);
      auto plogp = logp.exp() * logp;  // 0 * -inf = nan where p = 0: counts as 0
      return at::where(logp.isneginf(), at::zeros_like(plogp), plogp).sum(-1);
    }
    case Remasking::Random:
      break;
  }
  throw std::logic_error("prediction_confidence: random remasking draws its confidences");
}

at::Tensor filter_top_k_top_p(const at::Tensor& logits, std::int64_t top_k, double top_p,
                              const at::Tensor& temperature) {
  const double neg_inf = -std::numeric_limits<double>::infinity();
  at::Tensor out = logits;
  const std::int64_t V = logits.size(-1);
  if (top_k > 0 && top_k < V) {
    auto kth = std::get<0>(at::topk(out, top_k, -1)).narrow(-1, top_k - 1, 1);  // [C, 1]
    out = out.masked_fill(out < kth, neg_inf);
  }
  if (top_p < 1.0) {
    at::Tensor scaled = out;
    if (temperature.defined())
      scaled =
          out /
          at::where(temperature > 0, temperature, at::ones_like(temperature)).to(out.scalar_type());
    auto [sorted, order] = at::sort(scaled, -1, /*descending=*/true);
    auto p = at::softmax(sorted, -1);
    // Drop a token when the tokens before it already hold top_p.
    auto drop_sorted = (p.cumsum(-1) - p) >= top_p;
    drop_sorted.select(-1, 0).fill_(false);
    auto drop = at::zeros_like(drop_sorted).scatter(-1, order, drop_sorted);
    out = out.masked_fill(drop, neg_inf);
  }
  return out;
}

}  // namespace loom::diffusion
