#include "train/causal_lm_loss.hpp"

namespace loom {

torch::Tensor next_token_targets(const torch::Tensor& labels, const torch::Tensor& segment_ids) {
  auto seg_here = segment_ids.slice(1, 0, -1);
  auto seg_next = segment_ids.slice(1, 1);
  return labels.slice(1, 1).ne(sdk::kIgnoreIndex).logical_and(seg_next.eq(seg_here)).logical_and(seg_here.gt(0));
}

sdk::LossResult causal_lm_loss(const sdk::ModelOutput& out, const sdk::Batch& batch,
                               const sdk::StepContext& ctx) {
  auto where = next_token_targets(batch.labels, batch.segment_ids);  // [B, S-1]
  auto hidden = out.hidden.slice(1, 0, -1);                          // [B, S-1, H]
  auto targets = batch.labels.slice(1, 1).masked_select(where);      // [N]
  sdk::LossResult r;
  const auto n = targets.numel();
  if (n == 0) {
    r.loss = out.hidden.sum() * 0.0;  // keeps the graph, so backward and bookkeeping still run
    r.metrics = {{"accuracy", 0.0}, {"num_targets", 0.0}};
    return r;
  }
  // Through the host's fused projection + cross-entropy when ctx.model has one (no [N, V]
  // logits kept; see docs/performance.md), else log-softmax of project()'s logits.
  sdk::ModelOutput shifted{hidden, out.project};
  torch::Tensor argmax;
  auto ce = sdk::cross_entropy_where(shifted, ctx.model, where, targets, &argmax);  // [N]
  const double denom = double(std::max<std::int64_t>(1, ctx.window.next_token_targets));
  r.loss = ce.to(torch::kFloat).sum() / denom;
  {
    torch::NoGradGuard no_grad;
    r.metrics["accuracy"] = argmax.eq(targets).to(torch::kFloat).mean().item<double>();
    r.metrics["num_targets"] = double(n);
  }
  return r;
}

double eval_weight(const sdk::LossResult& result, const sdk::StepContext& ctx, bool plugin_loss) {
  const auto it = result.metrics.find(sdk::kScoredTokensMetric);
  if (it != result.metrics.end()) return it->second;
  return double(plugin_loss ? ctx.window.tokens : ctx.window.next_token_targets);
}

sdk::WindowTotals window_totals(const std::vector<sdk::Batch>& batches) {
  sdk::WindowTotals t;
  for (const auto& b : batches) {
    t.rows += b.rows();
    auto seg = b.segment_ids;
    t.tokens += seg.gt(0).sum().item<std::int64_t>();
    t.label_tokens += b.labels.ne(sdk::kIgnoreIndex).sum().item<std::int64_t>();
    t.next_token_targets += next_token_targets(b.labels, seg).sum().item<std::int64_t>();
    // Segments are numbered 1..k within a row, so the row maximum counts them.
    t.documents += std::get<0>(seg.max(1)).sum().item<std::int64_t>();
  }
  return t;
}

}  // namespace loom
