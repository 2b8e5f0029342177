#include <gtest/gtest.h>

#include <cmath>

#include "train/adamw.hpp"
#include "train/causal_lm_loss.hpp"
#include "train/lr_schedule.hpp"

namespace loom {
namespace {

TEST(LrSchedule, WarmupThenCosineLinearConstant) {
  LrSchedule cos("cosine", 1.0, 10, 110);
  EXPECT_DOUBLE_EQ(cos.at(0), 0.0);
  EXPECT_DOUBLE_EQ(cos.at(5), 0.5);
  EXPECT_DOUBLE_EQ(cos.at(10), 1.0);
  EXPECT_NEAR(cos.at(60), 0.5, 1e-12);  // halfway through the decay: (1 + cos(pi/2)) / 2
  EXPECT_NEAR(cos.at(110), 0.0, 1e-12);
  LrSchedule lin("linear", 2.0, 0, 100);
  EXPECT_DOUBLE_EQ(lin.at(25), 1.5);
  LrSchedule con("constant", 3.0, 4, 100);
  EXPECT_DOUBLE_EQ(con.at(2), 1.5);
  EXPECT_DOUBLE_EQ(con.at(90), 3.0);
}

TEST(AdamW, MatchesTheUpdateWorkedByHand) {
  // One 2-D parameter (decayed) and one 1-D (not decayed), two steps with fixed gradients.
  auto w = torch::full({1, 1}, 1.0, torch::requires_grad());
  auto b = torch::full({1}, 1.0, torch::requires_grad());
  AdamW opt({{"w", w}, {"b", b}}, {0.9, 0.999, 1e-8, 0.1});
  const double lr = 0.01, g[2] = {0.5, -0.25};
  double pw = 1.0, pb = 1.0, m = 0, v = 0;
  for (int t = 1; t <= 2; ++t) {
    w.mutable_grad() = torch::full({1, 1}, g[t - 1]);
    b.mutable_grad() = torch::full({1}, g[t - 1]);
    opt.step(lr);
    m = 0.9 * m + 0.1 * g[t - 1];
    v = 0.999 * v + 0.001 * g[t - 1] * g[t - 1];
    const double mhat = m / (1 - std::pow(0.9, t)), vhat = v / (1 - std::pow(0.999, t));
    pw = pw * (1 - lr * 0.1) - lr * mhat / (std::sqrt(vhat) + 1e-8);
    pb = pb - lr * mhat / (std::sqrt(vhat) + 1e-8);
    EXPECT_NEAR(w.item<double>(), pw, 1e-6) << "step " << t;
    EXPECT_NEAR(b.item<double>(), pb, 1e-6) << "step " << t;
  }
  EXPECT_EQ(opt.steps_taken(), 2);
}

TEST(AdamW, FusedPassEqualsTheTensorOps) {
  // Sizes that leave vector tails and span several parallel chunks; decayed and not.
  torch::manual_seed(4);
  auto make = [] {
    return std::vector<torch::Tensor>{torch::randn({301, 257}), torch::randn({1000}), torch::randn({3})};
  };
  auto init = make();
  std::vector<std::pair<std::string, torch::Tensor>> a, b;
  for (std::size_t i = 0; i < init.size(); ++i) {
    a.emplace_back("p" + std::to_string(i), init[i].clone().requires_grad_(true));
    b.emplace_back("p" + std::to_string(i), init[i].clone().requires_grad_(true));
  }
  AdamW fused(a, {0.9, 0.95, 1e-8, 0.1}), ops(b, {0.9, 0.95, 1e-8, 0.1});
  ops.set_fused(false);
  for (int t = 0; t < 3; ++t) {
    auto grads = make();
    for (std::size_t i = 0; i < grads.size(); ++i) {
      a[i].second.mutable_grad() = grads[i].clone();
      b[i].second.mutable_grad() = grads[i].clone();
    }
    fused.step(1e-2);
    ops.step(1e-2);
  }
  for (std::size_t i = 0; i < a.size(); ++i)
    EXPECT_LT((a[i].second - b[i].second).abs().max().item<double>(), 1e-6) << a[i].first;
  auto sa = fused.state(), sb = ops.state();
  for (std::size_t i = 0; i < sa.size(); ++i)
    EXPECT_LT((sa[i].second - sb[i].second).abs().max().item<double>(), 1e-6) << sa[i].first;
}

TEST(ClipGradNorm, ScalesToTheLimitAndReportsTheNorm) {
  auto a = torch::zeros({2}, torch::requires_grad());
  a.mutable_grad() = torch::tensor({3.0f, 4.0f});
  EXPECT_NEAR(clip_grad_norm({a}, 1.0), 5.0, 1e-6);
  EXPECT_NEAR(a.grad().norm().item<double>(), 1.0, 1e-5);
}

TEST(CausalLmLoss, EqualsCrossEntropyWorkedByHandWithinSegments) {
  // Vocabulary 2, hidden = logits directly (identity projection). Row: segment 1 = [a b],
  // segment 2 = [c], then padding. Only position 0 predicts (label of position 1).
  sdk::Batch batch;
  batch.labels = torch::tensor({0, 1, 1, -100}, torch::kLong).view({1, 4});
  batch.segment_ids = torch::tensor({1, 1, 2, 0}, torch::kLong).view({1, 4});
  sdk::ModelOutput out;
  out.hidden = torch::tensor({2.0f, 0.0f, 0.0f, 0.0f, 5.0f, 5.0f, 1.0f, 1.0f}).view({1, 4, 2}).requires_grad_();
  out.project = [](const torch::Tensor& h) { return h; };
  sdk::StepContext ctx;
  ctx.window.next_token_targets = 2;  // as if the window had one more target elsewhere
  auto r = causal_lm_loss(out, batch, ctx);
  // Position 0 logits (2, 0), target 1: CE = log(e^2 + 1) - 0; divided by the window's 2 targets.
  EXPECT_NEAR(r.loss.item<double>(), std::log(std::exp(2.0) + 1.0) / 2.0, 1e-6);
  EXPECT_DOUBLE_EQ(r.metrics["num_targets"], 1.0);
  EXPECT_DOUBLE_EQ(r.metrics["accuracy"], 0.0);
  auto totals = window_totals({batch});
  EXPECT_EQ(totals.next_token_targets, 1);
  EXPECT_EQ(totals.tokens, 3);
  EXPECT_EQ(totals.documents, 2);
  EXPECT_EQ(totals.label_tokens, 3);
}

}  // namespace
}  // namespace loom
