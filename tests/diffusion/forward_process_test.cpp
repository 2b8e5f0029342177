// Masking statistics and determinism of the forward process.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <set>

#include "forward_process.hpp"
#include "test_support.hpp"

namespace loom::diffusion {
namespace {

using testing::ByteTokenizer;
using testing::make_batch;
using testing::to_vector;

constexpr std::int64_t kMask = 259;

std::vector<bool> excluded_ids() {
  std::vector<bool> ex(260, false);
  for (int id = 256; id < 260; ++id) ex[id] = true;
  return ex;
}

ForwardProcess make_process(NoiseScheduleKind kind = NoiseScheduleKind::Linear, double eps = 1e-3,
                            double min_ratio = 0.0, double max_ratio = 1.0,
                            std::uint64_t seed = 1234) {
  ForwardProcessOptions o;
  o.schedule = NoiseSchedule(kind, eps, min_ratio, max_ratio);
  o.mask_token_id = kMask;
  o.seed = seed;
  return ForwardProcess(o, excluded_ids());
}

// `rows` rows of `len` letters, one document each, sample indices first..first+rows-1.
sdk::Batch letter_rows(std::int64_t rows, std::int64_t len, std::int64_t first = 0) {
  std::vector<std::vector<std::int64_t>> ids(rows);
  std::vector<std::int64_t> index;
  for (std::int64_t b = 0; b < rows; ++b) {
    for (std::int64_t s = 0; s < len; ++s) ids[b].push_back('a' + (b + s) % 26);
    index.push_back(first + b);
  }
  return make_batch(ids, {}, {}, index);
}

TEST(ForwardProcess, LinearScheduleMeanPIsOneHalfAndMaskedShareTracksP) {
  auto batch = letter_rows(4000, 32);
  make_process().apply(batch, DrawKind{});
  auto p = batch.extras.at(kPMaskKey).select(1, 0);  // [B] the document's p
  auto masked = batch.extras.at(kMaskedKey).to(torch::kDouble);
  EXPECT_NEAR(p.mean().item<double>(), 0.5, 0.02);
  EXPECT_GE(p.min().item<double>(), 1e-3 - 1e-7);  // eps is the minimum
  EXPECT_LE(p.max().item<double>(), 1.0);
  EXPECT_NEAR(masked.mean().item<double>(), p.mean().item<double>(), 0.02);
  // Per document: the masked share follows its own p.
  auto share = masked.mean(1);
  for (double lo : {0.1, 0.4, 0.8}) {
    auto in = (p >= lo) & (p < lo + 0.1);
    ASSERT_GT(in.sum().item<int64_t>(), 200);
    EXPECT_NEAR(share.masked_select(in).mean().item<double>(), lo + 0.05, 0.02) << lo;
  }
  // Masked positions hold the mask token, the rest are untouched.
  auto noisy = batch.input_ids;
  auto orig = batch.extras.at(kTargetsKey);
  auto m = batch.extras.at(kMaskedKey);
  EXPECT_TRUE(noisy.masked_select(m).eq(kMask).all().item<bool>());
  EXPECT_TRUE(noisy.masked_select(m.logical_not()).equal(orig.masked_select(m.logical_not())));
}

TEST(ForwardProcess, CosineScheduleMasksLessAsDocumented) {
  auto batch = letter_rows(4000, 4);
  make_process(NoiseScheduleKind::Cosine).apply(batch, DrawKind{});
  auto p = batch.extras.at(kPMaskKey).select(1, 0).to(torch::kDouble);
  const double pi = 3.14159265358979;
  // E[1 - cos(pi t / 2)] = 1 - 2/pi; P(p < 0.5) = P(t < 2/3).
  EXPECT_NEAR(p.mean().item<double>(), (1 - 1e-3) * (1 - 2 / pi) + 1e-3, 0.02);
  EXPECT_NEAR(p.lt(0.5).to(torch::kDouble).mean().item<double>(), 2.0 / 3.0, 0.03);
}

TEST(ForwardProcess, ClampingPutsTheTailsOnTheBounds) {
  auto batch = letter_rows(4000, 4);
  make_process(NoiseScheduleKind::Linear, 1e-3, 0.1, 0.9).apply(batch, DrawKind{});
  auto p = batch.extras.at(kPMaskKey).select(1, 0).to(torch::kDouble);
  EXPECT_GE(p.min().item<double>(), 0.1 - 1e-6);
  EXPECT_LE(p.max().item<double>(), 0.9 + 1e-6);
  // P(p = 0.1) = P(t < (0.1 - eps)/(1 - eps)) ~ 0.099; likewise at 0.9.
  EXPECT_NEAR(p.lt(0.1 + 1e-6).to(torch::kDouble).mean().item<double>(), 0.0991, 0.015);
  EXPECT_NEAR(p.gt(0.9 - 1e-6).to(torch::kDouble).mean().item<double>(), 0.1001, 0.015);
  EXPECT_NEAR(p.mean().item<double>(), 0.5, 0.02);
}

TEST(ForwardProcess, NeverMasksPaddingSpecialTokensOrPrompts) {
  // p = 1 for every document: exactly the eligible tokens are masked.
  auto process = make_process(NoiseScheduleKind::Linear, 1e-3, 1.0, 1.0);
  const std::int64_t B = ByteTokenizer::kBos, E = ByteTokenizer::kEos, P = ByteTokenizer::kPad;
  auto batch =
      make_batch({{B, 'q', '?', 'a', 'b', E, P, P}, {B, 'x', 'y', E, B, 'z', E, P}},
                 {{1, 1, 1, 1, 1, 1, 0, 0}, {1, 1, 1, 1, 2, 2, 2, 0}},
                 {{B, -100, -100, 'a', 'b', E, -100, -100}, {B, 'x', 'y', E, B, 'z', E, -100}});
  process.apply(batch, DrawKind{});
  auto masked = to_vector(batch.extras.at(kMaskedKey));
  std::vector<std::int64_t> expected = {0, 0, 0, 1, 1, 0, 0, 0, 0, 1, 1, 0, 0, 1, 0, 0};
  EXPECT_EQ(masked, expected);
  EXPECT_EQ(to_vector(batch.extras.at(kEligibleKey)), expected);
  // The instruction document (row 0) records its answer length; the others are pretraining.
  auto answer = batch.extras.at(kAnswerLenKey);
  EXPECT_FLOAT_EQ(answer[0][1].item<float>(), 2.0f);
  EXPECT_FLOAT_EQ(answer[0][6].item<float>(), 0.0f);
  EXPECT_FLOAT_EQ(answer[1][1].item<float>(), 0.0f);
  EXPECT_FLOAT_EQ(answer[1][5].item<float>(), 0.0f);
}

TEST(ForwardProcess, LogitShiftNeverMasksTheFirstTokenOfADocument) {
  ForwardProcessOptions o;
  o.schedule = NoiseSchedule(NoiseScheduleKind::Linear, 0, 1.0, 1.0);
  o.mask_token_id = kMask;
  o.logit_shift = true;
  ForwardProcess process(o, excluded_ids());
  auto batch = make_batch({{'a', 'b', 'c', 'd', 'e', 'f'}}, {{1, 1, 2, 2, 2, 3}});
  process.apply(batch, DrawKind{});
  EXPECT_EQ(to_vector(batch.extras.at(kMaskedKey)), (std::vector<std::int64_t>{0, 1, 0, 1, 1, 0}));
}

TEST(ForwardProcess, EveryDocumentOfAPackedRowHasItsOwnT) {
  const std::int64_t rows = 2000, docs = 4, len = 8;
  std::vector<std::vector<std::int64_t>> ids(rows), seg(rows);
  for (std::int64_t b = 0; b < rows; ++b)
    for (std::int64_t s = 0; s < docs * len; ++s) {
      ids[b].push_back('a' + s % 26);
      seg[b].push_back(1 + s / len);
    }
  auto batch = make_batch(ids, seg);
  make_process().apply(batch, DrawKind{});
  auto p = batch.extras.at(kPMaskKey).to(torch::kDouble);
  auto first = p.select(1, 0), second = p.select(1, len), fourth = p.select(1, 3 * len);
  // Constant inside a document, different between documents.
  EXPECT_TRUE(p.narrow(1, 0, len).eq(first.unsqueeze(1)).all().item<bool>());
  EXPECT_LT(first.eq(second).to(torch::kDouble).mean().item<double>(), 0.01);
  for (const auto& d : {first, second, fourth}) EXPECT_NEAR(d.mean().item<double>(), 0.5, 0.03);
  // Independent: correlation near 0.
  auto a = first - first.mean(), c = second - second.mean();
  double corr = ((a * c).mean() / (a.std(false) * c.std(false))).item<double>();
  EXPECT_LT(std::abs(corr), 0.1);
}

TEST(ForwardProcess, SameSeedAndSampleIndexGiveTheSameMaskInAnyBatch) {
  auto process = make_process();
  std::vector<std::int64_t> row(48);
  for (int i = 0; i < 48; ++i) row[i] = 'a' + i % 26;
  std::vector<std::int64_t> other(48, 'z');
  auto alone = make_batch({row}, {}, {}, {42});
  auto mixed = make_batch({other, row, other}, {}, {}, {3, 42, 9});
  process.apply(alone, DrawKind{});
  process.apply(mixed, DrawKind{});
  EXPECT_TRUE(alone.input_ids[0].equal(mixed.input_ids[1]));
  EXPECT_TRUE(alone.extras.at(kMaskedKey)[0].equal(mixed.extras.at(kMaskedKey)[1]));

  // Another seed, sample index, eval repeat or split draws differently; a repeat is stable.
  auto draw = [&](const ForwardProcess& fp, std::int64_t index, DrawKind kind) {
    auto b = make_batch({row}, {}, {}, {index});
    fp.apply(b, kind);
    return b.extras.at(kMaskedKey);
  };
  const auto base = draw(process, 42, DrawKind{});
  EXPECT_FALSE(base.equal(draw(make_process(NoiseScheduleKind::Linear, 1e-3, 0, 1, 99), 42, {})));
  EXPECT_FALSE(base.equal(draw(process, 43, DrawKind{})));
  const auto eval0 = draw(process, 42, DrawKind{false, 0});
  EXPECT_TRUE(eval0.equal(draw(process, 42, DrawKind{false, 0})));
  EXPECT_FALSE(eval0.equal(draw(process, 42, DrawKind{false, 1})));
  EXPECT_FALSE(eval0.equal(base));
}

TEST(ForwardProcess, StratifiedTGivesOneDrawPerStratumInEveryMicroBatch) {
  ForwardProcessOptions o;
  o.schedule = NoiseSchedule(NoiseScheduleKind::Linear, 0.0, 0.0, 1.0);  // p = t
  o.t_sampling = TSampling::Stratified;
  o.mask_token_id = kMask;
  o.seed = 7;
  ForwardProcess process(o, excluded_ids());
  double sum = 0;
  int n = 0;
  for (std::int64_t group = 0; group < 200; ++group) {
    auto batch = letter_rows(8, 4, group * 8);
    process.apply(batch, DrawKind{});
    auto p = batch.extras.at(kPMaskKey).select(1, 0);  // [8]
    std::set<std::int64_t> strata;
    for (std::int64_t b = 0; b < 8; ++b) {
      const double t = p[b].item<double>();
      strata.insert(static_cast<std::int64_t>(std::floor(t * 8)));
      sum += t;
      ++n;
    }
    EXPECT_EQ(strata.size(), 8u) << "micro-batch " << group;
  }
  EXPECT_NEAR(sum / n, 0.5, 0.01);

  // The same rows in another order draw the same t per row.
  auto forward = letter_rows(8, 4, 80);
  auto reversed = letter_rows(8, 4, 80);
  reversed.input_ids = reversed.input_ids.flip(0);
  reversed.sample_index = reversed.sample_index.flip(0);
  process.apply(forward, DrawKind{});
  process.apply(reversed, DrawKind{});
  EXPECT_TRUE(forward.extras.at(kPMaskKey).equal(reversed.extras.at(kPMaskKey).flip(0)));
  EXPECT_TRUE(forward.input_ids.equal(reversed.input_ids.flip(0)));

  // Packed rows: the second documents of a micro-batch are stratified too.
  std::vector<std::vector<std::int64_t>> ids(8, std::vector<std::int64_t>(8, 'k'));
  std::vector<std::vector<std::int64_t>> seg(8, {1, 1, 1, 1, 2, 2, 2, 2});
  auto packed = make_batch(ids, seg);
  process.apply(packed, DrawKind{});
  std::set<std::int64_t> second;
  for (std::int64_t b = 0; b < 8; ++b) {
    const double t = packed.extras.at(kPMaskKey)[b][4].item<double>() - 0.6180339887498949;
    second.insert(static_cast<std::int64_t>(std::floor((t - std::floor(t)) * 8 + 1e-6)) % 8);
  }
  EXPECT_EQ(second.size(), 8u);
}

TEST(ForwardProcess, RandomLengthCutTurnsTheTailIntoPadding) {
  ForwardProcessOptions o;
  o.schedule = NoiseSchedule(NoiseScheduleKind::Linear, 1e-3, 0.0, 1.0);
  o.random_length_prob = 1.0;
  o.mask_token_id = kMask;
  ForwardProcess process(o, excluded_ids());
  auto batch = letter_rows(64, 16);
  process.apply(batch, DrawKind{});
  std::set<std::int64_t> lengths;
  auto seg = batch.segment_ids, masked = batch.extras.at(kMaskedKey), labels = batch.labels;
  for (std::int64_t b = 0; b < 64; ++b) {
    const std::int64_t keep = seg[b].ne(0).sum().item<std::int64_t>();
    ASSERT_GE(keep, 1);
    lengths.insert(keep);
    EXPECT_TRUE(seg[b].narrow(0, 0, keep).eq(1).all().item<bool>());  // a prefix is kept
    if (keep < 16) {
      EXPECT_FALSE(masked[b].narrow(0, keep, 16 - keep).any().item<bool>());
      EXPECT_TRUE(labels[b].narrow(0, keep, 16 - keep).eq(-100).all().item<bool>());
    }
  }
  EXPECT_GT(lengths.size(), 8u);
  // Evaluation never cuts.
  auto eval = letter_rows(64, 16);
  process.apply(eval, DrawKind{false, 0});
  EXPECT_TRUE(eval.segment_ids.eq(1).all().item<bool>());
}

}  // namespace
}  // namespace loom::diffusion
