// The fused CPU kernels against the same math written with ordinary differentiable ops:
// outputs and gradients, fp64 (tight) and fp32, with GQA, packed-segment masks and causality.
#include <gtest/gtest.h>

#include <limits>

#include "model/fused_attention.hpp"
#include "model/fused_cross_entropy.hpp"
#include "model/fused_layers.hpp"
#include "model/model_handle.hpp"
#include "model/parallel_blocks.hpp"
#include "support/thread_count.hpp"
#include "train/autocast_guard.hpp"

namespace loom {
namespace {

struct Case {
  std::int64_t B, S, H, KV, D;
  enum { Full, Causal, Masked } kind;
};

torch::Tensor segment_bias(std::int64_t B, std::int64_t S, torch::ScalarType t) {
  // Row b: two documents split at S/2 + b, the last token of row 1 is padding (sees itself).
  auto bias = torch::full({B, S, S}, -std::numeric_limits<double>::infinity(), torch::dtype(t));
  for (std::int64_t b = 0; b < B; ++b) {
    const std::int64_t cut = std::min(S - 1, S / 2 + b);
    bias[b].narrow(0, 0, cut).narrow(1, 0, cut).fill_(0);
    bias[b].narrow(0, cut, S - cut).narrow(1, cut, S - cut).fill_(0);
    if (b == 1) {
      bias[b][S - 1].fill_(-std::numeric_limits<double>::infinity());
      bias[b].select(1, S - 1).fill_(-std::numeric_limits<double>::infinity());
      bias[b][S - 1][S - 1] = 0;
    }
  }
  return bias;
}

void run(const Case& c, torch::ScalarType dtype, double tol) {
  torch::manual_seed(7);
  const auto opts = torch::dtype(dtype);
  auto qkv = torch::randn({c.B, c.S, (c.H + 2 * c.KV) * c.D}, opts);
  auto pos = torch::arange(c.S, torch::kDouble).unsqueeze(1);
  auto inv = torch::pow(10000.0, -torch::arange(0, c.D, 2, torch::kDouble) / double(c.D));
  auto f = pos * inv.unsqueeze(0);
  auto emb = torch::cat({f, f}, -1).unsqueeze(0).expand({c.B, c.S, c.D});
  auto cos = emb.cos().to(dtype).contiguous(), sin = emb.sin().to(dtype).contiguous();
  torch::Tensor bias;
  if (c.kind == Case::Masked) bias = segment_bias(c.B, c.S, dtype);
  const bool causal = c.kind == Case::Causal;
  const AttentionDims dims{c.H, c.KV, c.D};
  auto grad = torch::randn({c.B, c.S, c.H * c.D}, opts);

  auto a = qkv.clone().requires_grad_(true);
  auto out_a = fused_rope_attention(a, cos, sin, bias, causal, dims);
  out_a.backward(grad);
  auto b = qkv.clone().requires_grad_(true);
  auto out_b = reference_rope_attention(b, cos, sin, bias, causal, dims);
  out_b.backward(grad);

  EXPECT_FALSE(out_a.isnan().any().item<bool>());
  EXPECT_LT((out_a - out_b).abs().max().item<double>(), tol);
  EXPECT_LT((a.grad() - b.grad()).abs().max().item<double>(), tol);
}

using test::ThreadCount;

// loom's own loops (parallel_blocks over at::parallel_for) really run on the threads they are
// given: at::parallel_for is a header template that runs serially in a file compiled without
// OpenMP, which these loops were until 2026-12.
TEST(LoomLoops, RunOnEveryThreadTheyAreGiven) {
  ThreadCount two(2);
  EXPECT_EQ(parallel_blocks_threads(8), 2);
  ThreadCount one(1);
  EXPECT_EQ(parallel_blocks_threads(8), 1);
}

// The fused RMSNorm's weight gradient (a sum over all rows) has the same bits whatever the
// thread count: the rows are summed in fixed chunks, not per thread.
TEST(FusedRmsNorm, WeightGradientHasTheSameBitsForAnyThreadCount) {
  torch::manual_seed(12);
  auto x = torch::randn({2000, 256});
  auto g = torch::randn({2000, 256});
  torch::Tensor first;
  for (int threads : {1, 2, 3}) {
    ThreadCount count(threads);
    auto w = torch::randn({256}, torch::TensorOptions().requires_grad(true));
    {
      torch::NoGradGuard no_grad;
      w.copy_(torch::linspace(0.5, 1.5, 256));
    }
    rms_norm(x, w, 1e-5).backward(g);
    if (!first.defined()) {
      first = w.grad().clone();
      auto want = (g * x * torch::rsqrt(x.pow(2).mean(-1, true) + 1e-5)).to(torch::kDouble).sum(0);
      EXPECT_LT((first.to(torch::kDouble) - want).abs().max().item<double>(), 1e-2);
    } else {
      EXPECT_TRUE(torch::equal(first, w.grad())) << threads << " threads";
    }
  }
}

TEST(FusedAttention, MatchesReferenceInDouble) {
  run({2, 9, 4, 2, 8, Case::Full}, torch::kDouble, 1e-10);
  run({2, 9, 4, 2, 8, Case::Causal}, torch::kDouble, 1e-10);
  run({2, 9, 4, 2, 8, Case::Masked}, torch::kDouble, 1e-10);
  run({3, 5, 2, 2, 4, Case::Causal}, torch::kDouble, 1e-10);
}

TEST(FusedAttention, MatchesReferenceInFloat) {
  run({2, 33, 4, 1, 16, Case::Masked}, torch::kFloat, 1e-4);
  run({2, 64, 4, 4, 32, Case::Full}, torch::kFloat, 1e-4);
}

TEST(FusedAttention, Bfloat16StaysCloseToFp32WithGradients) {
  // Real rotary tables (so the bf16 rotation and its transpose run), GQA, causal.
  torch::manual_seed(3);
  const AttentionDims dims{4, 2, 8};
  const std::int64_t S = 6;
  auto pos = torch::arange(S, torch::kDouble).unsqueeze(1);
  auto inv = torch::pow(10000.0, -torch::arange(0, 8, 2, torch::kDouble) / 8.0);
  auto f = pos * inv.unsqueeze(0);
  auto emb = torch::cat({f, f}, -1).unsqueeze(0);
  auto cos = emb.cos().to(torch::kFloat), sin = emb.sin().to(torch::kFloat);
  auto qkv = torch::randn({1, S, (4 + 2 * 2) * 8}).to(torch::kBFloat16).to(torch::kFloat);
  auto grad = torch::randn({1, S, 4 * 8});
  auto a = qkv.clone().requires_grad_(true);
  auto want = reference_rope_attention(a, cos, sin, {}, true, dims);
  want.backward(grad);
  auto b = qkv.to(torch::kBFloat16).requires_grad_(true);
  auto got = fused_rope_attention(b, cos, sin, {}, true, dims);
  got.backward(grad.to(torch::kBFloat16));
  EXPECT_EQ(got.scalar_type(), torch::kBFloat16);
  EXPECT_LT((got.to(torch::kFloat) - want).abs().max().item<double>(), 5e-2);
  const double scale = a.grad().abs().max().item<double>();
  EXPECT_LT((b.grad().to(torch::kFloat) - a.grad()).abs().max().item<double>(), 3e-2 * scale);
}

TEST(FusedAttention, AQueryAllowedNoKeyGetsZerosNotNaN) {
  // Row 4 of the mask allows nothing. The other rows match the composite (where row 4 is
  // let see itself, which changes no other row's output); nothing is NaN.
  torch::manual_seed(9);
  const AttentionDims dims{2, 1, 4};
  const std::int64_t S = 5;
  auto qkv = torch::randn({1, S, (2 + 2) * 4}, torch::kDouble);
  auto cos = torch::ones({1, S, 4}, torch::kDouble), sin = torch::zeros({1, S, 4}, torch::kDouble);
  const double inf = std::numeric_limits<double>::infinity();
  auto bias = torch::zeros({1, S, S}, torch::kDouble);
  bias[0][4].fill_(-inf);
  auto seen = bias.clone();
  seen[0][4][4] = 0;
  auto x = qkv.clone().requires_grad_(true);
  auto out = fused_rope_attention(x, cos, sin, bias, false, dims);
  out.sum().backward();
  auto want = reference_rope_attention(qkv, cos, sin, seen, false, dims);
  EXPECT_TRUE(out[0][4].eq(0).all().item<bool>());
  EXPECT_LT((out[0].narrow(0, 0, 4) - want[0].narrow(0, 0, 4)).abs().max().item<double>(), 1e-10);
  EXPECT_TRUE(torch::isfinite(x.grad()).all().item<bool>());
}

TEST(FusedAttention, RefusesABiasForAnotherBatchSize) {
  const AttentionDims dims{2, 1, 4};
  auto qkv = torch::randn({3, 5, 16});
  auto cos = torch::ones({3, 5, 4}), sin = torch::zeros({3, 5, 4});
  EXPECT_THROW(fused_rope_attention(qkv, cos, sin, torch::zeros({2, 5, 5}), false, dims),
               std::logic_error);
}

void check_cross_entropy(torch::ScalarType dtype, std::int64_t N, std::int64_t H, std::int64_t V,
                         double tol) {
  torch::manual_seed(11);
  auto hidden = torch::randn({N, H}, torch::dtype(dtype));
  auto weight = torch::randn({V, H}, torch::dtype(dtype)) * 0.5;
  auto targets = torch::randint(V, {N}, torch::kLong);
  auto up = torch::rand({N}, torch::dtype(dtype));
  torch::Tensor results[2][3], argmax[2];
  for (int fused = 0; fused < 2; ++fused) {
    auto h = hidden.clone().requires_grad_(true);
    auto w = weight.clone().requires_grad_(true);
    auto ce = fused ? linear_cross_entropy(h, w, targets, &argmax[fused])
                    : reference_linear_cross_entropy(h, w, targets, &argmax[fused]);
    (ce * up).sum().backward();
    results[fused][0] = ce.detach();
    results[fused][1] = h.grad();
    results[fused][2] = w.grad();
  }
  for (int i = 0; i < 3; ++i)
    EXPECT_LT((results[0][i] - results[1][i]).abs().max().item<double>(), tol) << "output " << i;
  EXPECT_TRUE(argmax[0].equal(argmax[1]));
}

TEST(FusedCrossEntropy, MatchesReferenceWithGradients) {
  check_cross_entropy(torch::kDouble, 7, 5, 11, 1e-12);
  check_cross_entropy(torch::kDouble, 37, 8, 3000, 1e-12);  // several rows per block
  check_cross_entropy(torch::kFloat, 5, 16, 70000, 1e-4);    // one row per block
}

TEST(FusedCrossEntropy, Bfloat16AutocastStaysCloseToFp32) {
  torch::manual_seed(5);
  auto hidden = torch::randn({16, 32}), weight = torch::randn({100, 32}) * 0.2;
  auto targets = torch::randint(100, {16}, torch::kLong);
  auto want = reference_linear_cross_entropy(hidden, weight, targets);
  auto h = hidden.clone().requires_grad_(true), w = weight.clone().requires_grad_(true);
  torch::Tensor got;
  {
    AutocastGuard autocast(true, false);
    ASSERT_TRUE(autocast_enabled(/*cuda=*/false));
    got = linear_cross_entropy(h, w, targets);
  }
  EXPECT_EQ(got.scalar_type(), torch::kFloat);
  EXPECT_LT((got - want).abs().max().item<double>(), 0.05);
  auto up = torch::rand({16});
  (got * up).sum().backward();
  EXPECT_EQ(h.grad().scalar_type(), torch::kFloat);
  EXPECT_EQ(w.grad().scalar_type(), torch::kFloat);
  // Gradients against fp32 (bf16 products: a few parts in a thousand of the largest entry).
  auto h32 = hidden.clone().requires_grad_(true), w32 = weight.clone().requires_grad_(true);
  (reference_linear_cross_entropy(h32, w32, targets) * up).sum().backward();
  auto rel = [](const torch::Tensor& a, const torch::Tensor& b) {
    return (a - b).abs().max().item<double>() / b.abs().max().item<double>();
  };
  EXPECT_LT(rel(h.grad(), h32.grad()), 2e-2);
  EXPECT_LT(rel(w.grad(), w32.grad()), 2e-2);
}

TEST(FusedCrossEntropy, ArgmaxTiesGoToTheFirstIndexAsInTorch) {
  // Identity projection: the hidden rows are the logits.
  auto logits = torch::tensor({1.0f, 3.0f, 3.0f, 0.0f, 2.0f, 2.0f, 2.0f, 2.0f}).view({2, 4});
  torch::Tensor argmax;
  linear_cross_entropy(logits, torch::eye(4), torch::tensor({0, 3}, torch::kLong), &argmax);
  EXPECT_EQ(argmax[0].item<std::int64_t>(), 1);
  EXPECT_EQ(argmax[1].item<std::int64_t>(), 0);
  EXPECT_TRUE(argmax.equal(logits.argmax(-1)));
}

template <class Fused, class Ref>
void check_unary(Fused fused, Ref ref, torch::Tensor x, const std::vector<torch::Tensor>& params,
                 double tol) {
  torch::manual_seed(2);
  std::vector<torch::Tensor> grads[2];
  torch::Tensor outs[2];
  for (int f = 0; f < 2; ++f) {
    auto xi = x.clone().requires_grad_(true);
    std::vector<torch::Tensor> ps;
    for (const auto& p : params) ps.push_back(p.clone().requires_grad_(true));
    auto y = f ? fused(xi, ps) : ref(xi, ps);
    auto up = torch::sin(torch::arange(y.numel(), torch::kDouble)).reshape(y.sizes()).to(y.scalar_type());
    (y * up).sum().backward();
    outs[f] = y.detach().to(torch::kDouble);
    grads[f].push_back(xi.grad().to(torch::kDouble));
    for (auto& p : ps) grads[f].push_back(p.grad().to(torch::kDouble));
  }
  // Relative to the largest reference value: weight gradients are sums over many rows.
  auto rel = [](const torch::Tensor& a, const torch::Tensor& b) {
    return (a - b).abs().max().item<double>() / (1.0 + b.abs().max().item<double>());
  };
  EXPECT_LT(rel(outs[1], outs[0]), tol);
  for (std::size_t i = 0; i < grads[0].size(); ++i)
    EXPECT_LT(rel(grads[1][i], grads[0][i]), tol) << "gradient " << i;
}

TEST(FusedLayers, RmsNormMatchesReference) {
  auto fused = [](const torch::Tensor& x, const std::vector<torch::Tensor>& p) { return rms_norm(x, p[0], 1e-5); };
  auto ref = [](const torch::Tensor& x, const std::vector<torch::Tensor>& p) { return reference_rms_norm(x, p[0], 1e-5); };
  for (auto dt : {torch::kDouble, torch::kFloat}) {
    const double tol = dt == torch::kDouble ? 1e-12 : 1e-4;
    check_unary(fused, ref, torch::randn({3, 70, 37}, dt), {1.0 + 0.1 * torch::randn({37}, dt)}, tol);
    check_unary(fused, ref, torch::randn({2000, 256}, dt), {1.0 + 0.1 * torch::randn({256}, dt)}, tol);
  }
}

TEST(FusedLayers, SwigluMatchesReference) {
  auto fused = [](const torch::Tensor& x, const std::vector<torch::Tensor>&) { return swiglu(x); };
  auto ref = [](const torch::Tensor& x, const std::vector<torch::Tensor>&) { return reference_swiglu(x); };
  check_unary(fused, ref, torch::randn({3, 5, 2 * 19}, torch::kDouble) * 4, {}, 1e-12);
  check_unary(fused, ref, torch::randn({300, 2 * 688}) * 4, {}, 1e-4);
  // Saturated tails: no NaN or inf.
  auto big = torch::tensor({-200.0, -90.0, 0.0, 90.0, 200.0, 1.0, 1.0, 1.0, 1.0, 1.0}).view({1, 10});
  auto y = swiglu(big);
  EXPECT_TRUE(torch::isfinite(y).all().item<bool>());
  EXPECT_LT((y - reference_swiglu(big)).abs().max().item<double>(), 1e-4);
  auto yb = swiglu(big.to(torch::kBFloat16));
  EXPECT_LT((yb.to(torch::kFloat) - reference_swiglu(big)).abs().max().item<double>(), 1.0);
}

// A small model's inputs for the handle's cross-entropy: rows where a loss is taken (at
// least one), their targets, and the value by hand from full logits.
struct CrossEntropyCase {
  ModelConfig config;
  torch::Tensor ids, where, targets;

  explicit CrossEntropyCase(std::uint64_t seed) {
    torch::manual_seed(seed);
    config.vocab_size = 300;
    config.hidden_size = 32;
    config.intermediate_size = 48;
    config.num_hidden_layers = 1;
    config.num_attention_heads = 4;
    config.num_key_value_heads = 2;
    config.max_position_embeddings = 32;
    ids = torch::randint(config.vocab_size, {2, 12}, torch::kLong);
    where = torch::rand({2, 12}).lt(0.5);
    where[0][3] = true;
    targets = torch::randint(config.vocab_size, {where.sum().item<std::int64_t>()}, torch::kLong);
  }
  // logsumexp - logit of the target, in float64, from the model's logits at every position.
  torch::Tensor by_hand(const torch::Tensor& all_logits) const {
    auto logits = all_logits.reshape({-1, config.vocab_size})
                      .cpu()
                      .index_select(0, where.reshape({-1}).nonzero().squeeze(1))
                      .to(torch::kDouble);
    return logits.exp().sum(-1).log() - logits.gather(1, targets.unsqueeze(1)).squeeze(1);
  }
};

// The SDK's cross_entropy_where through the host's handle (the fused path) gives what the
// SDK's own fallback through project() gives, values, argmax and weight gradients, and the
// handle counts the rows it projects either way.
TEST(ModelHandleCrossEntropy, MatchesTheProjectFallback) {
  const CrossEntropyCase t(11);
  LlamaModelHandle handle{LlamaForCausalLM(t.config)};
  torch::Tensor ce[2], argmax[2], grad[2];
  for (int fused = 0; fused < 2; ++fused) {
    auto out = handle.forward(t.ids, {}, {}, sdk::AttentionSpec::bidirectional());
    ce[fused] = sdk::cross_entropy_where(out, fused ? &handle : nullptr, t.where, t.targets, &argmax[fused]);
    ce[fused].sum().backward();
    auto w = handle.model()->output_weight();
    grad[fused] = w.grad().clone();
    w.grad().zero_();
  }
  EXPECT_EQ(handle.projected_rows(), 2 * t.targets.numel());
  EXPECT_LT((ce[0] - ce[1]).abs().max().item<double>(), 1e-5);
  EXPECT_TRUE(argmax[0].equal(argmax[1]));
  EXPECT_LT((grad[0] - grad[1]).abs().max().item<double>(), 1e-5);
  // The value itself, by hand from the logits.
  auto by_hand = t.by_hand(
      handle.model()->project(handle.model()->forward(t.ids, {}, {}, sdk::AttentionSpec::bidirectional())));
  EXPECT_LT((ce[1].to(torch::kDouble) - by_hand).abs().max().item<double>(), 1e-5);
}

// Ids excluded from the softmax (SDK 1.2): the value is logsumexp over the other ids minus the
// target's logit (by hand, in float64, from logits with those columns removed), the argmax is
// never an excluded id, and excluded ids get no gradient -- through the fused path and the
// project() fallback alike, in fp32 and under CPU bf16 autocast. An excluded target is an error.
TEST(ModelHandleCrossEntropy, ExcludedIdsLeaveTheSoftmax) {
  const CrossEntropyCase t(13);
  LlamaModelHandle handle{LlamaForCausalLM(t.config)};
  const auto V = t.config.vocab_size;
  // The ids the model likes best at the scored rows (so excluding them changes the argmax),
  // and the last id; none of them a target.
  torch::Tensor logits_all;
  {
    torch::NoGradGuard no_grad;
    logits_all = handle.model()->project(
        handle.model()->forward(t.ids, {}, {}, sdk::AttentionSpec::bidirectional()));
  }
  auto rows = logits_all.reshape({-1, V}).index_select(0, t.where.reshape({-1}).nonzero().squeeze(1));
  std::vector<std::int64_t> ex_list;
  auto is_target = [&](std::int64_t id) { return t.targets.eq(id).any().item<bool>(); };
  for (std::int64_t id : {rows.argmax(-1)[0].item<std::int64_t>(), rows.argmax(-1)[1].item<std::int64_t>(), V - 1})
    if (!is_target(id) && std::find(ex_list.begin(), ex_list.end(), id) == ex_list.end()) ex_list.push_back(id);
  ASSERT_FALSE(ex_list.empty());
  auto ex = torch::tensor(ex_list, torch::kLong);
  auto keep_mask = torch::ones({V}, torch::kBool).index_fill(0, ex, false);
  auto kept_ids = keep_mask.nonzero().squeeze(1);
  // By hand: drop the excluded columns.
  auto kept = rows.to(torch::kDouble).index_select(1, kept_ids);
  auto by_hand = kept.exp().sum(-1).log() - rows.to(torch::kDouble).gather(1, t.targets.unsqueeze(1)).squeeze(1);
  auto argmax_by_hand = kept_ids.index_select(0, kept.argmax(-1));

  for (bool bf16 : {false, true}) {
    torch::Tensor ce[2], argmax[2], grad[2];
    for (int fused = 0; fused < 2; ++fused) {
      AutocastGuard autocast(bf16, /*cuda=*/false);
      auto out = handle.forward(t.ids, {}, {}, sdk::AttentionSpec::bidirectional());
      ce[fused] = sdk::cross_entropy_where(out, fused ? &handle : nullptr, t.where, t.targets,
                                           &argmax[fused], ex);
      ce[fused].sum().backward();
      auto w = handle.model()->output_weight();
      grad[fused] = w.grad().clone();
      w.grad().zero_();
    }
    const double tol = bf16 ? 5e-2 : 1e-5;
    for (int fused = 0; fused < 2; ++fused) {
      SCOPED_TRACE(std::string(bf16 ? "bf16 " : "fp32 ") + (fused ? "fused" : "project()"));
      EXPECT_LT((ce[fused].to(torch::kDouble) - by_hand).abs().max().item<double>(), tol);
      EXPECT_FALSE(torch::isin(argmax[fused], ex).any().item<bool>());
      if (!bf16) EXPECT_TRUE(argmax[fused].equal(argmax_by_hand));
      // lm_head (not tied here): the excluded rows get exactly no gradient, the others the
      // fallback's.
      EXPECT_EQ(grad[fused].index_select(0, ex).abs().max().item<double>(), 0.0);
      EXPECT_LT((grad[fused] - grad[0]).abs().max().item<double>(), bf16 ? 5e-2 : 1e-5);
    }
  }
  // An excluded target.
  auto out = handle.forward(t.ids, {}, {}, sdk::AttentionSpec::bidirectional());
  auto bad = torch::cat({ex.slice(0, 0, 1), t.targets.slice(0, 1)});
  for (sdk::ModelHandle* m : {static_cast<sdk::ModelHandle*>(&handle), static_cast<sdk::ModelHandle*>(nullptr)}) {
    try {
      sdk::cross_entropy_where(out, m, t.where, bad, nullptr, ex);
      ADD_FAILURE() << "an excluded target was accepted";
    } catch (const std::exception& e) {
      EXPECT_NE(std::string(e.what()).find("among the excluded ids"), std::string::npos) << e.what();
    }
  }
}

// On a CUDA device (skipped without one) the handle's cross-entropy is the composite path:
// the same values as logsumexp - target logit by hand, and the CPU's values.
TEST(ModelHandleCrossEntropy, MatchesByHandOnCuda) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const CrossEntropyCase t(12);
  LlamaModelHandle cpu{LlamaForCausalLM(t.config)};
  LlamaModelHandle gpu{LlamaForCausalLM(t.config)};
  {
    torch::NoGradGuard no_grad;
    auto src = cpu.model()->parameters();
    auto dst = gpu.model()->parameters();
    for (std::size_t i = 0; i < src.size(); ++i) dst[i].copy_(src[i]);
  }
  gpu.model()->to(torch::kCUDA);
  auto out_gpu = gpu.forward(t.ids.cuda(), {}, {}, sdk::AttentionSpec::bidirectional());
  auto ce_gpu = sdk::cross_entropy_where(out_gpu, &gpu, t.where.cuda(), t.targets.cuda(), nullptr);
  ASSERT_TRUE(ce_gpu.is_cuda());
  auto out_cpu = cpu.forward(t.ids, {}, {}, sdk::AttentionSpec::bidirectional());
  auto ce_cpu = sdk::cross_entropy_where(out_cpu, &cpu, t.where, t.targets, nullptr);
  EXPECT_LT((ce_gpu.cpu() - ce_cpu).abs().max().item<double>(), 1e-4);
  auto by_hand = t.by_hand(out_gpu.project(out_gpu.hidden));
  EXPECT_LT((ce_gpu.cpu().to(torch::kDouble) - by_hand).abs().max().item<double>(), 1e-5);
  ce_gpu.sum().backward();
  EXPECT_TRUE(gpu.model()->output_weight().grad().is_cuda());
}

}  // namespace
}  // namespace loom
