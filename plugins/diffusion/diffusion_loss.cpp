#include "diffusion_loss.hpp"

#include <torch/torch.h>

#include <map>
#include <stdexcept>
#include <utility>
#include <vector>

#include "forward_process.hpp"

namespace loom::diffusion {

namespace {

const at::Tensor& extra(const sdk::Batch& batch, const char* key) {
  auto it = batch.extras.find(key);
  if (it == batch.extras.end() || !it->second.defined())
    throw std::runtime_error(std::string("diffusion loss: batch has no '") + key +
                             "' (did the diffusion transform_batch run on this batch?)");
  return it->second;
}

// Hidden-state positions that predict the masked tokens: the token's own position, or the
// previous one with logit shift.
at::Tensor source_positions(const at::Tensor& masked, bool logit_shift) {
  if (!logit_shift) return masked;
  auto src = at::zeros_like(masked);
  const auto S = masked.size(1);
  if (S > 1) src.narrow(1, 0, S - 1).copy_(masked.narrow(1, 1, S - 1));
  return src;
}

struct MaskedToken {
  std::int64_t row;
  std::int64_t segment;
  float p;
  float answer_len;
};

}  // namespace

sdk::LossResult diffusion_loss(const sdk::ModelOutput& out, const sdk::Batch& batch,
                               const sdk::StepContext& ctx, const LossOptions& options) {
  const at::Tensor& masked = extra(batch, kMaskedKey);         // [B, S] bool
  const at::Tensor& targets = extra(batch, kTargetsKey);       // [B, S] int64
  const at::Tensor& p_mask = extra(batch, kPMaskKey);          // [B, S] float
  const at::Tensor& eligible = extra(batch, kEligibleKey);     // [B, S] bool
  const at::Tensor& answer_len = extra(batch, kAnswerLenKey);  // [B, S] float
  const std::int64_t B = masked.size(0), S = masked.size(1);

  // Row-major walk on the CPU (small [B, S] tensors): documents and masked tokens.
  at::Tensor m_cpu = masked.to(at::kCPU).contiguous();
  at::Tensor p_cpu = p_mask.to(at::kCPU, at::kFloat).contiguous();
  at::Tensor a_cpu = answer_len.to(at::kCPU, at::kFloat).contiguous();
  at::Tensor seg_cpu = batch.segment_ids.defined()
                           ? batch.segment_ids.to(at::kCPU, at::kLong).contiguous()
                           : at::ones({B, S}, at::kLong);
  auto m_a = m_cpu.accessor<bool, 2>();
  auto p_a = p_cpu.accessor<float, 2>();
  auto a_a = a_cpu.accessor<float, 2>();
  auto seg_a = seg_cpu.accessor<std::int64_t, 2>();

  std::vector<MaskedToken> tokens;
  std::vector<std::int64_t> masked_pretrain_in_row(static_cast<std::size_t>(B), 0);
  std::map<std::pair<std::int64_t, std::int64_t>, std::int64_t> masked_in_doc;
  std::int64_t documents = 0, nonpad_tokens = 0, instruction_docs = 0;
  double answer_tokens = 0;
  for (std::int64_t b = 0; b < B; ++b) {
    for (std::int64_t s = 0; s < S; ++s) {
      const std::int64_t sid = seg_a[b][s];
      if (sid != 0) {
        ++nonpad_tokens;
        if (s == 0 || seg_a[b][s - 1] != sid) {  // a document starts
          ++documents;
          if (a_a[b][s] > 0) {
            ++instruction_docs;
            answer_tokens += a_a[b][s];
          }
        }
      }
      if (!m_a[b][s]) continue;
      tokens.push_back({b, sid, p_a[b][s], a_a[b][s]});
      if (a_a[b][s] > 0)
        ++masked_in_doc[{b, sid}];
      else
        ++masked_pretrain_in_row[static_cast<std::size_t>(b)];
    }
  }
  const auto n_masked = static_cast<std::int64_t>(tokens.size());
  const std::int64_t n_eligible = eligible.sum().item<std::int64_t>();

  sdk::LossResult result;
  // Evaluation reports the bound per scored token (see the header); the host weights batches
  // by this count.
  const bool bound = !ctx.training;
  if (bound) result.metrics[sdk::kScoredTokensMetric] = static_cast<double>(n_eligible);
  result.metrics["num_masked_tokens"] = static_cast<double>(n_masked);
  result.metrics["mask_ratio"] =
      n_eligible > 0 ? static_cast<double>(n_masked) / static_cast<double>(n_eligible) : 0.0;
  if (instruction_docs > 0) {
    result.metrics["answer_ratio"] =
        nonpad_tokens > 0 ? answer_tokens / static_cast<double>(nonpad_tokens) : 0.0;
    result.metrics["avg_answer_length"] = answer_tokens / static_cast<double>(instruction_docs);
  }

  if (n_masked == 0) {
    // Zero, but still a function of the parameters: backward runs, gradients are zero.
    result.loss = out.hidden.sum().to(at::kFloat) * 0.0;
    result.metrics["loss"] = 0.0;
    return result;
  }

  // Normalisers: window totals (exact accumulation) for the loss; this micro-batch's own
  // totals for the logged value.
  const double L = static_cast<double>(S);
  const double rows_window = ctx.window.rows > 0 ? static_cast<double>(ctx.window.rows) : B;
  const double docs_window =
      ctx.window.documents > 0 ? static_cast<double>(ctx.window.documents) : documents;
  const double rows_local = static_cast<double>(B);
  const double docs_local = static_cast<double>(std::max<std::int64_t>(documents, 1));

  std::vector<float> weight_window, weight_local, importance;
  weight_window.reserve(tokens.size());
  weight_local.reserve(tokens.size());
  importance.reserve(tokens.size());
  for (const auto& t : tokens) {
    const double iw = options.importance_weighting || bound ? 1.0 / static_cast<double>(t.p) : 1.0;
    double per_window = 0, per_local = 0;
    if (bound) {
      per_window = per_local = iw / static_cast<double>(n_eligible);
    } else if (t.answer_len > 0) {  // instruction document
      const double doc_norm = options.importance_weighting
                                  ? static_cast<double>(t.answer_len)
                                  : static_cast<double>(masked_in_doc[{t.row, t.segment}]);
      per_window = iw / (doc_norm * docs_window);
      per_local = iw / (doc_norm * docs_local);
    } else if (options.importance_weighting) {
      per_window = iw / (rows_window * L);
      per_local = iw / (rows_local * L);
    } else {
      const double m_row =
          static_cast<double>(masked_pretrain_in_row[static_cast<std::size_t>(t.row)]);
      per_window = 1.0 / (m_row * rows_window);
      per_local = 1.0 / (m_row * rows_local);
    }
    weight_window.push_back(static_cast<float>(per_window));
    weight_local.push_back(static_cast<float>(per_local));
    importance.push_back(static_cast<float>(iw));
  }

  const at::Device device = out.hidden.device();
  auto as_tensor = [&](const std::vector<float>& v) {
    return at::from_blob(const_cast<float*>(v.data()), {n_masked}, at::kFloat).clone().to(device);
  };
  at::Tensor w_window = as_tensor(weight_window);   // [N]
  at::Tensor w_local = as_tensor(weight_local);     // [N]
  at::Tensor w_importance = as_tensor(importance);  // [N]

  if (options.logit_shift && m_cpu.select(1, 0).any().item<bool>())
    throw std::runtime_error(
        "diffusion loss: a row's first token is masked, but with logit shift nothing predicts it");
  const at::Tensor where = source_positions(masked.to(device), options.logit_shift);
  at::Tensor target = targets.to(device).masked_select(masked.to(device));  // [N]
  // Per-token cross-entropy; the host's fused projection + loss when it has one (no [N, V]
  // logits kept), else log-softmax of project()'s logits.
  at::Tensor argmax;
  at::Tensor ce = sdk::cross_entropy_where(out, ctx.model, where, target, &argmax).to(at::kFloat);  // [N]
  result.loss = (ce * w_window).sum();

  {
    at::NoGradGuard no_grad;
    at::Tensor ce_d = ce.detach();
    result.metrics["loss"] = (ce_d * w_local).sum().item<double>();
    result.metrics["ce_loss"] = ce_d.mean().item<double>();
    result.metrics["accuracy"] =
        argmax.eq(target).to(at::kDouble).mean().item<double>();
    double p_sum = 0;
    for (const auto& t : tokens) p_sum += t.p;
    result.metrics["avg_p_mask"] = p_sum / static_cast<double>(n_masked);
    result.metrics["importance_weight_avg"] = w_importance.to(at::kDouble).mean().item<double>();
  }
  return result;
}

}  // namespace loom::diffusion
