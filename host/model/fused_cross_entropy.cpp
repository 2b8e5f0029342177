#include "model/fused_cross_entropy.hpp"

#include <ATen/Parallel.h>
#include <c10/core/impl/LocalDispatchKeySet.h>

#include <algorithm>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "model/cpu_kernels.hpp"
#include "model/parallel_blocks.hpp"
#include "train/autocast_guard.hpp"

namespace loom {


namespace {

using NoAutocast = c10::impl::ExcludeDispatchKeyGuard;
constexpr c10::DispatchKey kAutocastCPU = c10::DispatchKey::AutocastCPU;

// Elements per row block: a block of logits and its fp32 copy stay in a core's cache.
constexpr std::int64_t kBlockElements = 1 << 16;

// bf16 products go through oneDNN (ideep), which caches a primitive per shape, up to 1024
// of them: with a row count that changes every step (the number of masked tokens) the caches
// grew by several MB per step. Rows are padded to a multiple of this, so a run uses a few
// dozen shapes.
constexpr std::int64_t kRowBucket = 64;

struct LinearCrossEntropy : public torch::autograd::Function<LinearCrossEntropy> {
  // compute_dtype: the dtype of the matrix products (the inputs' own, or autocast's).
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx,
                                                torch::Tensor hidden, torch::Tensor weight,
                                                torch::Tensor targets,
                                                torch::Tensor exclude_ids,
                                                std::int64_t compute_dtype) {
    NoAutocast no_autocast(kAutocastCPU);
    const auto ct = static_cast<torch::ScalarType>(compute_dtype);
    const auto acc = ct == torch::kDouble ? torch::kDouble : torch::kFloat;
    auto h = hidden.to(ct).contiguous();
    auto w = weight.to(ct).contiguous();
    auto t = targets.to(torch::kLong).contiguous();
    const std::int64_t rows = h.size(0);
    if (ct == torch::kBFloat16 && rows % kRowBucket != 0) {
      const std::int64_t pad = kRowBucket - rows % kRowBucket;
      h = torch::cat({h, torch::zeros({pad, h.size(1)}, h.options())});
      t = torch::cat({t, torch::zeros({pad}, t.options())});
    }
    const std::int64_t N = h.size(0), V = w.size(0);
    if (N > 0 && (t.min().item<std::int64_t>() < 0 || t.max().item<std::int64_t>() >= V))
      throw std::invalid_argument("cross_entropy: a target id is outside the vocabulary [0, " +
                                  std::to_string(V) + ")");
    auto g = torch::mm(h, w.t());  // [N, V] logits; becomes softmax - onehot in place
    // Excluded ids: -inf logits, so exp() gives them 0 probability and 0 gradient.
    if (exclude_ids.defined() && exclude_ids.numel() > 0)
      g.index_fill_(1, exclude_ids, -std::numeric_limits<double>::infinity());
    auto ce = torch::empty({N}, h.options().dtype(acc));
    auto best = torch::empty({N}, t.options());
    const std::int64_t R = std::max<std::int64_t>(1, std::min<std::int64_t>(N, kBlockElements / std::max<std::int64_t>(V, 1)));
    const std::int64_t blocks = (N + R - 1) / R;
    std::int64_t* tp = t.data_ptr<std::int64_t>();
    std::int64_t* bp = best.data_ptr<std::int64_t>();
    if (ct == torch::kBFloat16) {
      // Rows through a per-thread fp32 copy.
      std::vector<torch::Tensor> bufs(std::size_t(parallel_slots(blocks)));
      auto* gp = g.data_ptr<at::BFloat16>();
      float* cp = ce.data_ptr<float>();
      parallel_blocks(N, R, [&](std::int64_t slot, std::int64_t r0, std::int64_t r1) {
        auto& buf = bufs[std::size_t(slot)];
        if (!buf.defined()) buf = torch::empty({R, V}, torch::kFloat);
        float* x = buf.data_ptr<float>();
        kernels::load_rows(gp + r0 * V, V, x, r1 - r0, V);
        kernels::cross_entropy_rows(x, V, r1 - r0, V, tp + r0, cp + r0, bp + r0);
        kernels::store_rows(x, gp + r0 * V, V, r1 - r0, V);
      });
    } else {
      AT_DISPATCH_FLOATING_TYPES(ct, "linear_cross_entropy", [&] {
        scalar_t* gp = g.data_ptr<scalar_t>();
        scalar_t* cp = ce.data_ptr<scalar_t>();
        parallel_blocks(N, R, [&](std::int64_t, std::int64_t r0, std::int64_t r1) {
          kernels::cross_entropy_rows(gp + r0 * V, V, r1 - r0, V, tp + r0, cp + r0, bp + r0);
        });
      });
    }
    ctx->save_for_backward({h, w, g});
    ctx->saved_data["hidden_dtype"] = static_cast<std::int64_t>(hidden.scalar_type());
    ctx->saved_data["weight_dtype"] = static_cast<std::int64_t>(weight.scalar_type());
    ctx->saved_data["rows"] = rows;
    if (N != rows) {
      ce = ce.narrow(0, 0, rows).clone();
      best = best.narrow(0, 0, rows).clone();
    }
    ctx->mark_non_differentiable({best});
    return {ce, best};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    NoAutocast no_autocast(kAutocastCPU);
    auto saved = ctx->get_saved_variables();
    const torch::Tensor &h = saved[0], &w = saved[1], &g = saved[2];
    torch::Tensor dce = grads[0];
    if (!dce.defined()) return {torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor()};
    const std::int64_t rows = ctx->saved_data["rows"].toInt();
    // The upstream gradient stays in the math dtype (fp32, fp64): bf16 products are rounded
    // once, as the composite under autocast rounds them.
    const auto acc = h.scalar_type() == torch::kDouble ? torch::kDouble : torch::kFloat;
    auto scale = dce.to(acc);
    if (scale.size(0) != h.size(0))  // padded rows (see kRowBucket) get no gradient
      scale = torch::cat({scale, torch::zeros({h.size(0) - scale.size(0)}, scale.options())});
    scale = scale.unsqueeze(1);  // [N, 1]
    // d hidden = diag(dce) G W;  d weight = G^T diag(dce) hidden.
    auto dh = torch::mm(g, w).to(acc).mul_(scale);
    auto dw = torch::mm(g.t(), (h.to(acc) * scale).to(h.scalar_type()));
    if (dh.size(0) != rows) dh = dh.narrow(0, 0, rows);
    const auto hd = static_cast<torch::ScalarType>(ctx->saved_data["hidden_dtype"].toInt());
    const auto wd = static_cast<torch::ScalarType>(ctx->saved_data["weight_dtype"].toInt());
    return {dh.to(hd), dw.to(wd), torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

namespace {

// [K] int64 ids on `device`, checked against the vocabulary and the targets ("" = none).
torch::Tensor checked_exclusions(const torch::Tensor& exclude_ids, const torch::Tensor& targets,
                                 std::int64_t V, const torch::Device& device) {
  if (!exclude_ids.defined() || exclude_ids.numel() == 0) return {};
  auto ex = exclude_ids.to(device, torch::kLong).reshape({-1});
  if (ex.min().item<std::int64_t>() < 0 || ex.max().item<std::int64_t>() >= V)
    throw std::invalid_argument("cross_entropy: an excluded id is outside the vocabulary [0, " +
                                std::to_string(V) + ")");
  if (targets.numel() > 0 && torch::isin(targets.to(device, torch::kLong), ex).any().item<bool>())
    throw std::invalid_argument("cross_entropy: a target id is among the excluded ids");
  return ex;
}

}  // namespace

torch::Tensor reference_linear_cross_entropy(const torch::Tensor& hidden,
                                             const torch::Tensor& weight,
                                             const torch::Tensor& targets, torch::Tensor* argmax,
                                             const torch::Tensor& exclude_ids) {
  auto logits = torch::nn::functional::linear(hidden, weight);
  logits = logits.to(logits.scalar_type() == torch::kDouble ? torch::kDouble : torch::kFloat);
  auto ex = checked_exclusions(exclude_ids, targets, weight.size(0), hidden.device());
  if (ex.defined()) logits = logits.index_fill(1, ex, -std::numeric_limits<double>::infinity());
  if (argmax) *argmax = logits.detach().argmax(-1);
  auto t = targets.to(torch::kLong).unsqueeze(1);
  return (torch::logsumexp(logits, -1, true) - logits.gather(1, t)).squeeze(1);
}

torch::Tensor linear_cross_entropy(const torch::Tensor& hidden, const torch::Tensor& weight,
                                   const torch::Tensor& targets, torch::Tensor* argmax,
                                   const torch::Tensor& exclude_ids) {
  if (hidden.dim() != 2 || weight.dim() != 2 || targets.dim() != 1 ||
      hidden.size(0) != targets.size(0) || hidden.size(1) != weight.size(1))
    throw std::invalid_argument("cross_entropy: expected hidden [N, H], weight [V, H], targets [N]");
  auto ct = hidden.scalar_type();
  if (autocast_enabled(/*cuda=*/false) && ct == torch::kFloat) ct = autocast_dtype(/*cuda=*/false);
  if (!hidden.device().is_cpu() || hidden.size(0) == 0 ||
      !(ct == torch::kFloat || ct == torch::kDouble || ct == torch::kBFloat16))
    return reference_linear_cross_entropy(hidden, weight, targets, argmax, exclude_ids);
  auto ex = checked_exclusions(exclude_ids, targets, weight.size(0), hidden.device());
  if (!ex.defined()) ex = torch::empty({0}, targets.options().dtype(torch::kLong));  // none
  auto out = LinearCrossEntropy::apply(hidden, weight, targets, ex, static_cast<std::int64_t>(ct));
  if (argmax) *argmax = out[1];
  return out[0];
}

}  // namespace loom
