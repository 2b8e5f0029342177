// The loss against golden values from loss_reference.py (an independent float64 computation).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "diffusion_loss.hpp"
#include "forward_process.hpp"
#include "test_support.hpp"

namespace loom::diffusion {
namespace {

using testing::to_tensor;

constexpr std::int64_t V = 6, H = 4, B = 2, S = 5;

// The fixed example of loss_reference.py.
struct Example {
  at::Tensor hidden;  // [B, S, H], requires grad
  at::Tensor weight;  // [V, H]
  sdk::Batch batch;

  Example() {
    hidden = torch::empty({B, S, H}, torch::kFloat);
    for (int b = 0; b < B; ++b)
      for (int s = 0; s < S; ++s)
        for (int h = 0; h < H; ++h) hidden[b][s][h] = std::sin(0.3 * (b * S * H + s * H + h) + 0.1);
    hidden.requires_grad_(true);
    weight = torch::empty({V, H}, torch::kFloat);
    for (int v = 0; v < V; ++v)
      for (int h = 0; h < H; ++h) weight[v][h] = 0.5 * std::cos(0.7 * (v * H + h));
    batch.extras[kTargetsKey] = to_tensor({{1, 2, 3, 4, 0}, {2, 5, 1, 3, 4}});
    batch.segment_ids = to_tensor({{1, 1, 1, 1, 0}, {1, 1, 1, 2, 2}});
    batch.input_ids = batch.extras[kTargetsKey].clone();
    batch.labels = batch.extras[kTargetsKey].clone();
    batch.extras[kPMaskKey] =
        torch::tensor({0.4f, 0.4f, 0.4f, 0.4f, 0.0f, 0.7f, 0.7f, 0.7f, 0.25f, 0.25f}).view({B, S});
    batch.extras[kEligibleKey] = batch.segment_ids.ne(0);
    batch.extras[kAnswerLenKey] = torch::zeros({B, S});
    set_masked({{0, 1, 0, 1, 0}, {1, 0, 1, 0, 1}});
  }
  void set_masked(const std::vector<std::vector<std::int64_t>>& m) {
    batch.extras[kMaskedKey] = to_tensor(m).to(torch::kBool);
  }
  void make_instruction() {
    batch.labels = to_tensor({{-100, 2, 3, 4, -100}, {-100, 5, 1, -100, 4}});
    batch.extras[kEligibleKey] = batch.labels.ne(-100);
    batch.extras[kAnswerLenKey] =
        torch::tensor({3.f, 3.f, 3.f, 3.f, 0.f, 2.f, 2.f, 2.f, 1.f, 1.f}).view({B, S});
    set_masked({{0, 1, 0, 1, 0}, {0, 0, 1, 0, 1}});
  }
  sdk::ModelOutput output() const {
    sdk::ModelOutput out;
    out.hidden = hidden;
    auto w = weight;
    out.project = [w](const at::Tensor& h) { return torch::matmul(h, w.t()); };
    return out;
  }
  // Rows [first, first+count) as a micro-batch of their own.
  Example rows(std::int64_t first, std::int64_t count) const {
    Example e = *this;
    auto cut = [&](const at::Tensor& t) { return t.narrow(0, first, count); };
    e.hidden = hidden.narrow(0, first, count);
    e.batch.input_ids = cut(batch.input_ids);
    e.batch.labels = cut(batch.labels);
    e.batch.segment_ids = cut(batch.segment_ids);
    for (auto& [k, v] : e.batch.extras) v = cut(batch.extras.at(k));
    return e;
  }
};

sdk::StepContext window(std::int64_t rows, std::int64_t documents) {
  sdk::StepContext ctx;
  ctx.window.rows = rows;
  ctx.window.documents = documents;
  return ctx;
}

double loss_of(const Example& e, const sdk::StepContext& ctx, LossOptions opt) {
  return diffusion_loss(e.output(), e.batch, ctx, opt).loss.item<double>();
}

constexpr double kTol = 2e-6;

TEST(DiffusionLoss, PretrainingWithImportanceWeightingMatchesReference) {
  Example e;
  auto r = diffusion_loss(e.output(), e.batch, window(2, 3), {true, false});
  EXPECT_NEAR(r.loss.item<double>(), 3.1326218152, kTol);
  EXPECT_NEAR(r.metrics.at("loss"), 3.1326218152, kTol);
  EXPECT_NEAR(r.metrics.at("ce_loss"), 2.4555698470, kTol);
  EXPECT_NEAR(r.metrics.at("accuracy"), 0.2, 1e-12);
  EXPECT_DOUBLE_EQ(r.metrics.at("num_masked_tokens"), 5);
  EXPECT_NEAR(r.metrics.at("mask_ratio"), 5.0 / 9.0, 1e-12);
  EXPECT_NEAR(r.metrics.at("avg_p_mask"), (0.4 + 0.4 + 0.7 + 0.7 + 0.25) / 5, 1e-6);
  EXPECT_NEAR(r.metrics.at("importance_weight_avg"), (2 / 0.4 + 2 / 0.7 + 1 / 0.25) / 5, 1e-5);
  EXPECT_EQ(r.metrics.count("answer_ratio"), 0u);
}

// The same golden values with every tensor on a CUDA device (skipped without one).
TEST(DiffusionLoss, PretrainingWithImportanceWeightingMatchesReferenceOnCuda) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  Example e;
  e.hidden = e.hidden.detach().to(torch::kCUDA).requires_grad_(true);
  e.weight = e.weight.to(torch::kCUDA);
  for (auto* t : {&e.batch.input_ids, &e.batch.labels, &e.batch.segment_ids}) *t = t->to(torch::kCUDA);
  for (auto& [k, v] : e.batch.extras) v = v.to(torch::kCUDA);
  auto r = diffusion_loss(e.output(), e.batch, window(2, 3), {true, false});
  EXPECT_TRUE(r.loss.is_cuda());
  EXPECT_NEAR(r.loss.item<double>(), 3.1326218152, kTol);
  EXPECT_NEAR(r.metrics.at("ce_loss"), 2.4555698470, kTol);
  EXPECT_NEAR(r.metrics.at("accuracy"), 0.2, 1e-12);
  r.loss.backward();
  EXPECT_TRUE(e.hidden.grad().defined());
}

TEST(DiffusionLoss, PretrainingWithoutImportanceWeightingMatchesReference) {
  Example e;
  auto r = diffusion_loss(e.output(), e.batch, window(2, 3), {false, false});
  EXPECT_NEAR(r.loss.item<double>(), 2.4183881608, kTol);
  EXPECT_NEAR(r.metrics.at("importance_weight_avg"), 1.0, 1e-12);
}

TEST(DiffusionLoss, LogitShiftPredictsFromThePreviousPosition) {
  Example e;
  e.set_masked({{0, 1, 0, 1, 0}, {0, 1, 0, 0, 1}});
  EXPECT_NEAR(loss_of(e, window(2, 3), {true, true}), 2.3492515895, kTol);
}

TEST(DiffusionLoss, InstructionDataNormalisesPerDocumentAnswer) {
  Example e;
  e.make_instruction();
  auto r = diffusion_loss(e.output(), e.batch, window(2, 3), {true, false});
  EXPECT_NEAR(r.loss.item<double>(), 6.5563967265, kTol);
  EXPECT_NEAR(r.metrics.at("answer_ratio"), 0.6666666667, 1e-9);
  EXPECT_NEAR(r.metrics.at("avg_answer_length"), 2.0, 1e-12);
  EXPECT_NEAR(loss_of(e, window(2, 3), {false, false}), 2.8185559390, kTol);
}

// Evaluation reports the bound per scored token: sum(CE / p) over the masked tokens divided by
// the eligible ones (padding and prompts never count), with or without importance weighting;
// golden values from loss_reference.py.
TEST(DiffusionLoss, EvaluationIsTheBoundPerScoredToken) {
  auto eval_ctx = window(2, 3);
  eval_ctx.training = false;
  for (bool iw : {true, false}) {
    Example e;
    auto r = diffusion_loss(e.output(), e.batch, eval_ctx, {iw, false});
    EXPECT_NEAR(r.loss.item<double>(), 3.4806909057, kTol);
    EXPECT_DOUBLE_EQ(r.metrics.at(sdk::kScoredTokensMetric), 9.0);
    e.make_instruction();
    r = diffusion_loss(e.output(), e.batch, eval_ctx, {iw, false});
    EXPECT_NEAR(r.loss.item<double>(), 4.8425359568, kTol);
    EXPECT_DOUBLE_EQ(r.metrics.at(sdk::kScoredTokensMetric), 6.0);
  }
  // Training never reports the count.
  Example e;
  EXPECT_EQ(diffusion_loss(e.output(), e.batch, window(2, 3), {true, false}).metrics.count(sdk::kScoredTokensMetric), 0u);
}

// Evaluated row by row and weighted by their scored tokens, the rows give the whole batch's
// bound: the value does not depend on how the documents are batched.
TEST(DiffusionLoss, EvaluationWeightedByScoredTokensDoesNotDependOnBatching) {
  auto eval_ctx = window(1, 1);
  eval_ctx.training = false;
  Example whole;
  double sum = 0, weight = 0;
  for (std::int64_t row = 0; row < 2; ++row) {
    auto part = whole.rows(row, 1);
    auto r = diffusion_loss(part.output(), part.batch, eval_ctx, {true, false});
    sum += r.loss.item<double>() * r.metrics.at(sdk::kScoredTokensMetric);
    weight += r.metrics.at(sdk::kScoredTokensMetric);
  }
  EXPECT_NEAR(sum / weight, 3.4806909057, kTol);
}

TEST(DiffusionLoss, MicroBatchLossesSumToTheWindowLoss) {
  for (bool instruction : {false, true}) {
    for (bool iw : {true, false}) {
      Example e;
      if (instruction) e.make_instruction();
      const double full = loss_of(e, window(2, 3), {iw, false});
      const double split = loss_of(e.rows(0, 1), window(2, 3), {iw, false}) +
                           loss_of(e.rows(1, 1), window(2, 3), {iw, false});
      EXPECT_NEAR(split, full, 1e-6) << "instruction " << instruction << " iw " << iw;
    }
  }
  // Golden value of one micro-batch, and a window twice as large halves the loss.
  Example e;
  EXPECT_NEAR(loss_of(e.rows(0, 1), window(2, 3), {true, false}), 1.1162398651, kTol);
  EXPECT_NEAR(loss_of(e, window(4, 6), {true, false}), 1.5663109076, kTol);
}

TEST(DiffusionLoss, GradientOfSplitWindowEqualsGradientOfWholeBatch) {
  Example whole;
  diffusion_loss(whole.output(), whole.batch, window(2, 3), {true, false}).loss.backward();
  auto full_grad = whole.hidden.grad().clone();

  Example parts;
  auto w = window(2, 3);
  for (std::int64_t r = 0; r < 2; ++r) {
    Example micro = parts.rows(r, 1);  // hidden is a view: grads flow into parts.hidden
    diffusion_loss(micro.output(), micro.batch, w, {true, false}).loss.backward();
  }
  EXPECT_TRUE(torch::allclose(parts.hidden.grad(), full_grad, 1e-5, 1e-7));
}

TEST(DiffusionLoss, NoMaskedTokenGivesZeroLossThatStillBackPropagates) {
  Example e;
  e.set_masked({{0, 0, 0, 0, 0}, {0, 0, 0, 0, 0}});
  auto r = diffusion_loss(e.output(), e.batch, window(2, 3), {true, false});
  EXPECT_EQ(r.loss.item<double>(), 0.0);
  ASSERT_TRUE(r.loss.requires_grad());
  r.loss.backward();
  ASSERT_TRUE(e.hidden.grad().defined());
  EXPECT_TRUE(e.hidden.grad().eq(0).all().item<bool>());
  EXPECT_FALSE(std::isnan(r.metrics.at("loss")));
  EXPECT_DOUBLE_EQ(r.metrics.at("num_masked_tokens"), 0);
}

TEST(DiffusionLoss, ProjectsOnlyTheMaskedPositions) {
  Example e;
  std::int64_t projected = -1;
  auto out = e.output();
  auto inner = out.project;
  out.project = [&](const at::Tensor& h) {
    projected = h.size(0);
    return inner(h);
  };
  diffusion_loss(out, e.batch, window(2, 3), {true, false});
  EXPECT_EQ(projected, 5);
}

TEST(DiffusionLoss, MissingTransformIsAClearError) {
  Example e;
  e.batch.extras.clear();
  EXPECT_THROW(diffusion_loss(e.output(), e.batch, window(2, 3), {true, false}),
               std::runtime_error);
}

}  // namespace
}  // namespace loom::diffusion
