#include "distributed/gradient_buckets.hpp"

#include "distributed/process_group.hpp"

namespace loom {
namespace {
constexpr std::size_t kInFlight = 2;
}

GradientBuckets::GradientBuckets(std::vector<torch::Tensor> params, std::int64_t bucket_bytes)
    : params_(std::move(params)), buffers_(kInFlight) {
  for (std::size_t i = 0; i < params_.size(); ++i) {
    const auto& p = params_[i];
    const std::int64_t bytes = p.numel() * std::int64_t(p.element_size());
    const bool fits = !buckets_.empty() && [&] {
      const Bucket& b = buckets_.back();
      const auto& first = params_[b.params.front()];
      return first.scalar_type() == p.scalar_type() && first.device() == p.device() &&
             (b.numel * std::int64_t(first.element_size()) + bytes <= bucket_bytes);
    }();
    if (!fits) buckets_.emplace_back();
    Bucket& b = buckets_.back();
    b.params.push_back(i);
    b.offsets.push_back(b.numel);
    b.numel += p.numel();
  }
}

torch::Tensor GradientBuckets::pack(std::size_t k) {
  const Bucket& b = buckets_[k];
  const auto options = params_[b.params.front()].options().requires_grad(false);
  const std::int64_t n = b.numel + std::int64_t(b.params.size());  // gradients, then flags
  torch::Tensor& buffer = buffers_[k % kInFlight];
  if (!buffer.defined() || buffer.numel() < n || buffer.scalar_type() != options.dtype() ||
      buffer.device() != options.device())
    buffer = torch::empty({n}, options);
  torch::Tensor flat = buffer.narrow(0, 0, n);
  auto flags = flat.narrow(0, b.numel, std::int64_t(b.params.size()));
  for (std::size_t j = 0; j < b.params.size(); ++j) {
    const auto& p = params_[b.params[j]];
    auto dst = flat.narrow(0, b.offsets[j], p.numel());
    const auto& g = p.grad();
    if (g.defined())
      dst.copy_(g.reshape({-1}));
    else
      dst.zero_();
    flags[std::int64_t(j)].fill_(g.defined() ? 1 : 0);
  }
  return flat;
}

void GradientBuckets::unpack(std::size_t k, const torch::Tensor& reduced) {
  const Bucket& b = buckets_[k];
  auto flags = reduced.narrow(0, b.numel, std::int64_t(b.params.size()))
                   .to(torch::kCPU, torch::kFloat)
                   .contiguous();
  const float* touched = flags.data_ptr<float>();  // ranks that had a gradient
  for (std::size_t j = 0; j < b.params.size(); ++j) {
    auto& p = params_[b.params[j]];
    if (touched[j] == 0) continue;
    auto src = reduced.narrow(0, b.offsets[j], p.numel()).view(p.sizes());
    auto& g = p.mutable_grad();
    if (g.defined())
      g.copy_(src);
    else
      g = src.clone();
  }
}

void GradientBuckets::all_reduce(ProcessGroup& group, const std::string& what) {
  torch::NoGradGuard no_grad;
  group.all_reduce_sum_pipelined(
      buckets_.size(), [&](std::size_t k) { return pack(k); },
      [&](std::size_t k, const torch::Tensor& reduced) { unpack(k, reduced); }, what, kInFlight);
}

}  // namespace loom
