#include "model/fused_attention.hpp"

#include <c10/core/impl/LocalDispatchKeySet.h>

#include <cmath>
#include <limits>
#include <type_traits>

#include "model/cpu_kernels.hpp"
#include "model/parallel_blocks.hpp"

namespace loom {
namespace {

// Math type for a storage type: fp64 stays fp64, everything else computes in fp32.
template <class T>
using acc_type = std::conditional_t<std::is_same<T, double>::value, double, float>;

// The additive mask of row b of the batch (bias may broadcast over rows), or null.
template <class A>
const A* bias_for(const torch::Tensor& bias, std::int64_t b) {
  if (!bias.defined()) return nullptr;
  const std::int64_t S = bias.size(1);
  return bias.data_ptr<A>() + (bias.size(0) == 1 ? 0 : b) * S * S;
}

struct Prepared {
  torch::Tensor qkv, cos, sin, bias;  // contiguous; cos/sin/bias in the math dtype
};

Prepared prepare(const torch::Tensor& qkv, const torch::Tensor& cos, const torch::Tensor& sin,
                 const torch::Tensor& bias, bool causal, const AttentionDims& d) {
  if (qkv.dim() != 3 || qkv.size(2) != (d.heads + 2 * d.kv_heads) * d.head_dim)
    throw std::logic_error("fused attention: qkv must be [B, S, (H + 2 KV) D]");
  if (d.kv_heads < 1 || d.heads % d.kv_heads != 0 || d.head_dim % 2 != 0)
    throw std::logic_error("fused attention: heads must be a multiple of kv heads, head_dim even");
  const auto acc = qkv.scalar_type() == torch::kDouble ? torch::kDouble : torch::kFloat;
  const std::int64_t B = qkv.size(0), S = qkv.size(1);
  if (!qkv.device().is_cpu()) throw std::logic_error("fused attention: CPU tensors only");
  Prepared p;
  p.qkv = qkv.contiguous();
  p.cos = cos.to(acc).reshape({B, S, d.head_dim}).contiguous();
  p.sin = sin.to(acc).reshape({B, S, d.head_dim}).contiguous();
  if (bias.defined() && bias.numel() > 0) {
    p.bias = bias.to(acc).reshape({-1, S, S}).contiguous();
    if (p.bias.size(0) != 1 && p.bias.size(0) != B)  // bias_for indexes it by batch row
      throw std::logic_error("fused attention: bias must be [B or 1, S, S]");
  } else if (causal) {
    p.bias = torch::full({1, S, S}, -std::numeric_limits<double>::infinity(),
                         torch::dtype(acc).device(qkv.device()))
                 .triu(1);
  }
  return p;
}

// Autocast must not touch the fp32 work buffers (mm is on its lower-precision list).
using NoAutocast = c10::impl::ExcludeDispatchKeyGuard;
constexpr c10::DispatchKey kAutocastCPU = c10::DispatchKey::AutocastCPU;

struct FusedRopeAttention : public torch::autograd::Function<FusedRopeAttention> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, torch::Tensor qkv,
                               torch::Tensor cos, torch::Tensor sin, torch::Tensor bias,
                               bool causal, std::int64_t heads, std::int64_t kv_heads,
                               std::int64_t head_dim) {
    const AttentionDims d{heads, kv_heads, head_dim};
    Prepared p = prepare(qkv, cos, sin, bias, causal, d);
    const std::int64_t B = p.qkv.size(0), S = p.qkv.size(1), D = head_dim;
    const std::int64_t H = heads, KV = kv_heads, rep = H / KV, C = (H + 2 * KV) * D;
    auto out = torch::empty({B, S, H * D}, p.qkv.options());
    auto lse = torch::empty({B, H, S}, p.cos.options());
    AT_DISPATCH_FLOATING_TYPES_AND(at::kBFloat16, p.qkv.scalar_type(), "fused_rope_attention", [&] {
      using A = acc_type<scalar_t>;
      const A scale = A(1.0 / std::sqrt(double(D)));
      const scalar_t* x = p.qkv.data_ptr<scalar_t>();
      scalar_t* o_ptr = out.data_ptr<scalar_t>();
      const A* cos_p = p.cos.data_ptr<A>();
      const A* sin_p = p.sin.data_ptr<A>();
      A* lse_p = lse.data_ptr<A>();
      parallel_blocks(B * KV, 1, [&](std::int64_t, std::int64_t begin, std::int64_t end) {
        NoAutocast no_autocast(kAutocastCPU);
        auto opt = p.cos.options();
        auto kr = torch::empty({S, D}, opt), v = torch::empty({S, D}, opt);
        auto q = torch::empty({S, D}, opt), o = torch::empty({S, D}, opt);
        auto sc = torch::empty({S, S}, opt);
        for (std::int64_t task = begin; task < end; ++task) {
          const std::int64_t b = task / KV, g = task % KV;
          const scalar_t* xb = x + b * S * C;
          const A* cb = cos_p + b * S * D;
          const A* sb = sin_p + b * S * D;
          const A* bias_b = bias_for<A>(p.bias, b);
          kernels::rope_rows(xb + (H + g) * D, C, cb, sb, kr.data_ptr<A>(), S, D, A(1));
          kernels::load_rows(xb + (H + KV + g) * D, C, v.data_ptr<A>(), S, D);
          for (std::int64_t r = 0; r < rep; ++r) {
            const std::int64_t h = g * rep + r;
            kernels::rope_rows(xb + h * D, C, cb, sb, q.data_ptr<A>(), S, D, scale);
            at::mm_out(sc, q, kr.t());
            kernels::softmax_rows(sc.data_ptr<A>(), S, bias_b, S, S, S, lse_p + (b * H + h) * S);
            at::mm_out(o, sc, v);
            kernels::store_rows(o.data_ptr<A>(), o_ptr + b * S * H * D + h * D, H * D, S, D);
          }
        }
      });
    });
    ctx->save_for_backward({p.qkv, out, lse, p.cos, p.sin,
                            p.bias.defined() ? p.bias : torch::empty({0})});
    ctx->saved_data["heads"] = heads;
    ctx->saved_data["kv_heads"] = kv_heads;
    ctx->saved_data["head_dim"] = head_dim;
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const torch::Tensor &qkv = saved[0], &out = saved[1], &lse = saved[2], &cos = saved[3],
                        &sin = saved[4];
    const torch::Tensor bias = saved[5].numel() > 0 ? saved[5] : torch::Tensor();
    const std::int64_t H = ctx->saved_data["heads"].toInt();
    const std::int64_t KV = ctx->saved_data["kv_heads"].toInt();
    const std::int64_t D = ctx->saved_data["head_dim"].toInt();
    const std::int64_t B = qkv.size(0), S = qkv.size(1), rep = H / KV, C = (H + 2 * KV) * D;
    auto grad = grads[0].to(qkv.scalar_type()).contiguous();
    auto dqkv = torch::empty_like(qkv);
    AT_DISPATCH_FLOATING_TYPES_AND(at::kBFloat16, qkv.scalar_type(), "fused_rope_attention_backward", [&] {
      using A = acc_type<scalar_t>;
      const A scale = A(1.0 / std::sqrt(double(D)));
      const scalar_t* x = qkv.data_ptr<scalar_t>();
      const scalar_t* o_ptr = out.data_ptr<scalar_t>();
      const scalar_t* g_ptr = grad.data_ptr<scalar_t>();
      scalar_t* dx = dqkv.data_ptr<scalar_t>();
      const A* cos_p = cos.data_ptr<A>();
      const A* sin_p = sin.data_ptr<A>();
      const A* lse_p = lse.data_ptr<A>();
      parallel_blocks(B * KV, 1, [&](std::int64_t, std::int64_t begin, std::int64_t end) {
        NoAutocast no_autocast(kAutocastCPU);
        auto opt = cos.options();
        auto kr = torch::empty({S, D}, opt), v = torch::empty({S, D}, opt);
        auto q = torch::empty({S, D}, opt), o = torch::empty({S, D}, opt);
        auto dout = torch::empty({S, D}, opt), dq = torch::empty({S, D}, opt);
        auto dk = torch::empty({S, D}, opt), dv = torch::empty({S, D}, opt);
        auto p = torch::empty({S, S}, opt), dp = torch::empty({S, S}, opt);
        for (std::int64_t task = begin; task < end; ++task) {
          const std::int64_t b = task / KV, g = task % KV;
          const scalar_t* xb = x + b * S * C;
          scalar_t* dxb = dx + b * S * C;
          const A* cb = cos_p + b * S * D;
          const A* sb = sin_p + b * S * D;
          const A* bias_b = bias_for<A>(bias, b);
          kernels::rope_rows(xb + (H + g) * D, C, cb, sb, kr.data_ptr<A>(), S, D, A(1));
          kernels::load_rows(xb + (H + KV + g) * D, C, v.data_ptr<A>(), S, D);
          dk.zero_();
          dv.zero_();
          for (std::int64_t r = 0; r < rep; ++r) {
            const std::int64_t h = g * rep + r;
            kernels::rope_rows(xb + h * D, C, cb, sb, q.data_ptr<A>(), S, D, scale);
            kernels::load_rows(g_ptr + b * S * H * D + h * D, H * D, dout.data_ptr<A>(), S, D);
            kernels::load_rows(o_ptr + b * S * H * D + h * D, H * D, o.data_ptr<A>(), S, D);
            // P = exp(q k^T + bias - lse), recomputed.
            at::mm_out(p, q, kr.t());
            kernels::exp_rows(p.data_ptr<A>(), S, bias_b, S, lse_p + (b * H + h) * S, S, S);
            dv.addmm_(p.t(), dout);       // dV += P^T dO
            at::mm_out(dp, dout, v.t());  // dP = dO V^T
            // dS = P (dP - rowsum(dO o O))
            kernels::softmax_backward_rows(dp.data_ptr<A>(), p.data_ptr<A>(), S, dout.data_ptr<A>(),
                                           o.data_ptr<A>(), D, S, S, D);
            at::mm_out(dq, dp, kr);  // d(scaled q)
            dk.addmm_(dp.t(), q);    // dK_rot += dS^T (scaled q)
            kernels::rope_transpose_rows(dq.data_ptr<A>(), cb, sb, dxb + h * D, C, S, D, scale);
          }
          kernels::rope_transpose_rows(dk.data_ptr<A>(), cb, sb, dxb + (H + g) * D, C, S, D, A(1));
          kernels::store_rows(dv.data_ptr<A>(), dxb + (H + KV + g) * D, C, S, D);
        }
      });
    });
    return {dqkv, {}, {}, {}, {}, {}, {}, {}};
  }
};

}  // namespace

torch::Tensor fused_rope_attention(const torch::Tensor& qkv, const torch::Tensor& cos,
                                   const torch::Tensor& sin, const torch::Tensor& bias,
                                   bool causal, AttentionDims dims) {
  // libtorch 1.13's custom functions reject undefined tensor arguments: "no bias" travels as
  // an empty tensor.
  return FusedRopeAttention::apply(qkv, cos, sin, bias.defined() ? bias : torch::empty({0}),
                                   causal, dims.heads, dims.kv_heads, dims.head_dim);
}

torch::Tensor reference_rope_attention(const torch::Tensor& qkv, const torch::Tensor& cos,
                                       const torch::Tensor& sin, const torch::Tensor& bias,
                                       bool causal, AttentionDims d) {
  const std::int64_t B = qkv.size(0), S = qkv.size(1), D = d.head_dim;
  auto c = cos.reshape({B, S, 1, D}).to(qkv.scalar_type());
  auto s = sin.reshape({B, S, 1, D}).to(qkv.scalar_type());
  auto rope = [&](const torch::Tensor& x) {
    auto halves = x.chunk(2, -1);
    return x * c + torch::cat({-halves[1], halves[0]}, -1) * s;
  };
  auto q = rope(qkv.narrow(2, 0, d.heads * D).reshape({B, S, d.heads, D}));
  auto k = rope(qkv.narrow(2, d.heads * D, d.kv_heads * D).reshape({B, S, d.kv_heads, D}));
  auto v = qkv.narrow(2, (d.heads + d.kv_heads) * D, d.kv_heads * D).reshape({B, S, d.kv_heads, D});
  const std::int64_t rep = d.heads / d.kv_heads;
  k = k.repeat_interleave(rep, 2);
  v = v.repeat_interleave(rep, 2);
  q = q.transpose(1, 2), k = k.transpose(1, 2), v = v.transpose(1, 2);
  auto scores = torch::matmul(q, k.transpose(-2, -1)) / std::sqrt(double(D));
  if (bias.defined()) {
    scores = scores + bias.reshape({-1, 1, S, S}).to(scores.scalar_type());
  } else if (causal) {
    auto future = torch::ones({S, S}, torch::dtype(torch::kBool)).triu(1);
    scores = scores.masked_fill(future, -std::numeric_limits<double>::infinity());
  }
  auto out = torch::matmul(torch::softmax(scores, -1), v);
  return out.transpose(1, 2).reshape({B, S, d.heads * D});
}

}  // namespace loom
