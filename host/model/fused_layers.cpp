#include "model/fused_layers.hpp"

#include "model/cpu_kernels.hpp"
#include "model/parallel_blocks.hpp"

namespace loom {
namespace {

// Up to this many elements an element-wise pass runs on the calling thread.
constexpr std::int64_t kInlineElements = std::int64_t(1) << 16;

// Rows per block: about 16k elements, so a block's rows stay in a core's cache.
std::int64_t rows_per_block(std::int64_t width) {
  return std::max<std::int64_t>(1, (std::int64_t(1) << 14) / std::max<std::int64_t>(1, width));
}

struct RmsNormFn : public torch::autograd::Function<RmsNormFn> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, torch::Tensor x,
                               torch::Tensor weight, double eps) {
    auto xc = x.contiguous();
    auto w = weight.contiguous();
    const std::int64_t n = xc.size(-1), rows = xc.numel() / std::max<std::int64_t>(1, n);
    auto y = torch::empty_like(xc);
    auto rstd = torch::empty({rows}, xc.options());
    AT_DISPATCH_FLOATING_TYPES(xc.scalar_type(), "rms_norm", [&] {
      const scalar_t* xp = xc.data_ptr<scalar_t>();
      const scalar_t* wp = w.data_ptr<scalar_t>();
      scalar_t* yp = y.data_ptr<scalar_t>();
      scalar_t* rp = rstd.data_ptr<scalar_t>();
      parallel_blocks(rows, rows_per_block(n), [&](std::int64_t, std::int64_t b, std::int64_t e) {
        kernels::rms_norm_forward(xp + b * n, wp, yp + b * n, rp + b, e - b, n, scalar_t(eps));
      });
    });
    ctx->save_for_backward({xc, w, rstd});
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const torch::Tensor &x = saved[0], &w = saved[1], &rstd = saved[2];
    auto g = grads[0].to(x.scalar_type()).contiguous();
    const std::int64_t n = x.size(-1), rows = x.numel() / std::max<std::int64_t>(1, n);
    // dweight sums over all rows. Each of a fixed number of chunks of rows (not one per thread:
    // blocks are claimed as threads free up, so a per-thread split would change with the
    // scheduling, and the rounding with it) sums its rows in order, then the chunks are added
    // in order: the same bits whatever the thread count.
    const std::int64_t blocks = (rows + rows_per_block(n) - 1) / rows_per_block(n);
    const std::int64_t chunks = std::max<std::int64_t>(1, std::min<std::int64_t>(blocks, 16));
    const std::int64_t block = (blocks + chunks - 1) / chunks * rows_per_block(n);
    auto dx = torch::empty_like(x);
    auto dw = torch::zeros({chunks, n}, w.options());
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "rms_norm_backward", [&] {
      const scalar_t* xp = x.data_ptr<scalar_t>();
      const scalar_t* wp = w.data_ptr<scalar_t>();
      const scalar_t* rp = rstd.data_ptr<scalar_t>();
      const scalar_t* gp = g.data_ptr<scalar_t>();
      scalar_t* dxp = dx.data_ptr<scalar_t>();
      scalar_t* dwp = dw.data_ptr<scalar_t>();
      parallel_blocks(rows, block, [&](std::int64_t, std::int64_t b, std::int64_t e) {
        kernels::rms_norm_backward(xp + b * n, wp, rp + b, gp + b * n, dxp + b * n,
                                   dwp + b / block * n, e - b, n);
      });
    });
    auto dweight = dw[0].clone();
    for (std::int64_t c = 1; c < dw.size(0); ++c) dweight.add_(dw[c]);
    return {dx, dweight, torch::Tensor()};
  }
};

struct SwiGluFn : public torch::autograd::Function<SwiGluFn> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, torch::Tensor gate_up) {
    auto ab = gate_up.contiguous();
    const std::int64_t n = ab.size(-1) / 2, rows = ab.numel() / std::max<std::int64_t>(1, 2 * n);
    auto sizes = ab.sizes().vec();
    sizes.back() = n;
    auto y = torch::empty(sizes, ab.options());
    AT_DISPATCH_FLOATING_TYPES_AND(at::kBFloat16, ab.scalar_type(), "swiglu", [&] {
      const scalar_t* ap = ab.data_ptr<scalar_t>();
      scalar_t* yp = y.data_ptr<scalar_t>();
      auto work = [&](std::int64_t, std::int64_t b, std::int64_t e) {
        kernels::swiglu_forward(ap + b * 2 * n, yp + b * n, e - b, n);
      };
      // A few blocks (a sampler's cached step: 32 rows) cost less than waking the threads.
      if (rows * 2 * n <= kInlineElements)
        work(0, 0, rows);
      else
        parallel_blocks(rows, rows_per_block(2 * n), work);
    });
    ctx->save_for_backward({ab});
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto ab = ctx->get_saved_variables()[0];
    auto g = grads[0].to(ab.scalar_type()).contiguous();
    const std::int64_t n = ab.size(-1) / 2, rows = ab.numel() / std::max<std::int64_t>(1, 2 * n);
    auto dab = torch::empty_like(ab);
    AT_DISPATCH_FLOATING_TYPES_AND(at::kBFloat16, ab.scalar_type(), "swiglu_backward", [&] {
      const scalar_t* ap = ab.data_ptr<scalar_t>();
      const scalar_t* gp = g.data_ptr<scalar_t>();
      scalar_t* dp = dab.data_ptr<scalar_t>();
      parallel_blocks(rows, rows_per_block(2 * n), [&](std::int64_t, std::int64_t b, std::int64_t e) {
        kernels::swiglu_backward(ap + b * 2 * n, gp + b * n, dp + b * 2 * n, e - b, n);
      });
    });
    return {dab};
  }
};

}  // namespace

torch::Tensor reference_rms_norm(const torch::Tensor& x, const torch::Tensor& weight, double eps) {
  // Statistics in fp32 (or fp64) as transformers does, whatever the activation dtype.
  auto xf = x.scalar_type() == torch::kDouble ? x : x.to(torch::kFloat);
  auto normed = xf * torch::rsqrt(xf.pow(2).mean(-1, /*keepdim=*/true) + eps);
  return weight * normed.to(x.scalar_type());
}

torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& weight, double eps) {
  const auto t = x.scalar_type();
  if (x.device().is_cpu() && t == weight.scalar_type() && (t == torch::kFloat || t == torch::kDouble) &&
      x.dim() >= 1 && x.size(-1) == weight.numel())
    return RmsNormFn::apply(x, weight, eps);
  return reference_rms_norm(x, weight, eps);
}

torch::Tensor reference_swiglu(const torch::Tensor& gate_up) {
  auto parts = gate_up.chunk(2, -1);
  return torch::silu(parts[0]) * parts[1];
}

torch::Tensor swiglu(const torch::Tensor& gate_up) {
  const auto t = gate_up.scalar_type();
  if (gate_up.device().is_cpu() && gate_up.size(-1) % 2 == 0 &&
      (t == torch::kFloat || t == torch::kBFloat16 || t == torch::kDouble))
    return SwiGluFn::apply(gate_up);
  return reference_swiglu(gate_up);
}

}  // namespace loom
