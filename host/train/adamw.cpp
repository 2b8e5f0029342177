#include "train/adamw.hpp"

#include <ATen/Parallel.h>

#include <cmath>

#include "errors.hpp"
#include "train/adamw_update.hpp"

namespace loom {

AdamW::AdamW(std::vector<std::pair<std::string, torch::Tensor>> params, AdamWOptions options)
    : opt_(options) {
  for (auto& [name, p] : params) {
    slots_.push_back({name, p, torch::zeros_like(p, torch::MemoryFormat::Preserve),
                      torch::zeros_like(p, torch::MemoryFormat::Preserve), p.dim() >= 2});
  }
}

void AdamW::step(double lr) {
  torch::NoGradGuard no_grad;
  ++steps_;
  const double bc1 = 1.0 - std::pow(opt_.beta1, double(steps_));
  const double bc2 = 1.0 - std::pow(opt_.beta2, double(steps_));
  const double step_size = lr / bc1;
  const double bc2_sqrt = std::sqrt(bc2);
  AdamWScalars k{1.0f,
                  float(opt_.beta1), float(1.0 - opt_.beta1), float(opt_.beta2), float(1.0 - opt_.beta2),
                  float(step_size), float(bc2_sqrt), float(opt_.eps)};
  for (auto& s : slots_) {
    const auto& g = s.param.grad();
    if (!g.defined()) continue;
    const bool decay = s.decay && opt_.weight_decay != 0;
    if (fused_ && s.param.device().is_cpu() && s.param.scalar_type() == torch::kFloat &&
        g.scalar_type() == torch::kFloat && s.param.is_contiguous() && g.is_contiguous() &&
        s.exp_avg.is_contiguous() && s.exp_avg_sq.is_contiguous()) {
      // One pass over the four arrays, in cache-sized chunks across threads.
      k.decay_mul = decay ? float(1.0 - lr * opt_.weight_decay) : 1.0f;
      float* p = s.param.data_ptr<float>();
      const float* gp = g.data_ptr<float>();
      float* m = s.exp_avg.data_ptr<float>();
      float* v = s.exp_avg_sq.data_ptr<float>();
      at::parallel_for(0, s.param.numel(), 1 << 14, [&](std::int64_t b, std::int64_t e) {
        adamw_update(p + b, gp + b, m + b, v + b, e - b, k);
      });
      // Written through pointers: tell autograd, as in-place tensor ops would.
      torch::autograd::impl::bump_version(s.param);
      torch::autograd::impl::bump_version(s.exp_avg);
      torch::autograd::impl::bump_version(s.exp_avg_sq);
      continue;
    }
    if (decay) s.param.mul_(1.0 - lr * opt_.weight_decay);
    s.exp_avg.mul_(opt_.beta1).add_(g, 1.0 - opt_.beta1);
    s.exp_avg_sq.mul_(opt_.beta2).addcmul_(g, g, 1.0 - opt_.beta2);
    auto denom = (s.exp_avg_sq.sqrt() / bc2_sqrt).add_(opt_.eps);
    s.param.addcdiv_(s.exp_avg, denom, -step_size);
  }
}

void AdamW::zero_grad() {
  for (auto& s : slots_) {
    auto& g = s.param.mutable_grad();
    if (g.defined()) g = torch::Tensor();  // set_to_none, as PyTorch does by default
  }
}

std::vector<std::pair<std::string, torch::Tensor>> AdamW::state() const {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const auto& s : slots_) {
    out.emplace_back(s.name + ".exp_avg", s.exp_avg);
    out.emplace_back(s.name + ".exp_avg_sq", s.exp_avg_sq);
  }
  return out;
}

void AdamW::load_state(const std::map<std::string, torch::Tensor>& state, std::int64_t steps) {
  torch::NoGradGuard no_grad;
  auto load = [&](const std::string& key, torch::Tensor& dst) {
    auto it = state.find(key);
    if (it == state.end()) throw UserError("optimizer state has no entry " + key);
    if (it->second.sizes() != dst.sizes())
      throw UserError("optimizer state " + key + " has the wrong shape");
    dst.copy_(it->second);
  };
  for (auto& s : slots_) {
    load(s.name + ".exp_avg", s.exp_avg);
    load(s.name + ".exp_avg_sq", s.exp_avg_sq);
  }
  steps_ = steps;
}

double clip_grad_norm(const std::vector<torch::Tensor>& params, double max_norm) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> norms;
  for (const auto& p : params)
    if (p.grad().defined()) norms.push_back(p.grad().norm().to(torch::kFloat));
  if (norms.empty()) return 0.0;
  const double total = torch::stack(norms).norm().item<double>();
  if (max_norm > 0 && total > max_norm) {
    const double scale = max_norm / (total + 1e-6);
    for (const auto& p : params)
      if (p.grad().defined()) p.grad().mul_(scale);
  }
  return total;
}

}  // namespace loom
