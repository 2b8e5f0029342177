// The reverse process on small real models.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <numeric>
#include <set>

#include "sampler.hpp"
#include "test_support.hpp"

namespace loom::diffusion {
namespace {

using testing::PositionalModel;
using testing::TinyModel;
using testing::to_vector;

constexpr std::int64_t kVocab = 64, kMask = 63, kLen = 24;

// Position s predicts token 10 + s with confidence growing with s.
at::Tensor positional_table(double mask_bias = 0.0) {
  auto table = torch::zeros({kVocab, kLen});
  for (std::int64_t s = 0; s < kLen; ++s) table[10 + s][s] = 1.0 + 0.2 * s;
  table[kMask].fill_(mask_bias);
  return table;
}

at::Tensor start_sequence(std::int64_t prompt, std::int64_t masks) {
  return testing::start_sequence(prompt, masks, kMask);
}

SamplerOptions options(std::int64_t steps, std::int64_t block_length = 0) {
  return testing::sampler_options(steps, block_length, kMask);
}

TEST(Sampler, TransferScheduleFollowsLlada) {
  EXPECT_EQ(transfer_schedule(10, 4), (std::vector<std::int64_t>{3, 3, 2, 2}));
  EXPECT_EQ(transfer_schedule(8, 4), (std::vector<std::int64_t>{2, 2, 2, 2}));
  EXPECT_EQ(transfer_schedule(3, 5), (std::vector<std::int64_t>{1, 1, 1, 0, 0}));
  EXPECT_EQ(steps_per_block(7, 3), (std::vector<std::int64_t>{3, 2, 2}));
  EXPECT_EQ(steps_per_block(2, 3), (std::vector<std::int64_t>{1, 1, 1}));
}

TEST(Sampler, RevealsTheScheduledCountEachStepAndEverythingByTheLast) {
  PositionalModel model(positional_table());
  SamplerTrace trace;
  auto out = ReverseSampler(options(4)).run(model, start_sequence(6, 14), &trace);
  ASSERT_EQ(trace.steps.size(), 4u);
  std::vector<std::int64_t> counts;
  for (const auto& s : trace.steps) counts.push_back(static_cast<std::int64_t>(s.revealed.size()));
  EXPECT_EQ(counts, (std::vector<std::int64_t>{4, 4, 3, 3}));
  EXPECT_FALSE(out.eq(kMask).any().item<bool>());
  // Prompt kept; each masked position got its model prediction; most confident first.
  for (std::int64_t i = 0; i < 6; ++i) EXPECT_EQ(out[i].item<std::int64_t>(), 1 + i);
  for (std::int64_t i = 6; i < 20; ++i) EXPECT_EQ(out[i].item<std::int64_t>(), 10 + i);
  EXPECT_EQ(std::set<std::int64_t>(trace.steps[0].revealed.begin(), trace.steps[0].revealed.end()),
            (std::set<std::int64_t>{16, 17, 18, 19}));
  EXPECT_EQ(trace.forward_passes, 4);
}

TEST(Sampler, SemiAutoregressiveBlocksFillLeftToRight) {
  PositionalModel model(positional_table());
  SamplerTrace trace;
  // 12 masks in blocks of 5, 5, 2; 7 steps -> 3, 2, 2 steps per block.
  auto out = ReverseSampler(options(7, 5)).run(model, start_sequence(4, 12), &trace);
  EXPECT_FALSE(out.eq(kMask).any().item<bool>());
  std::vector<std::int64_t> counts, blocks;
  for (const auto& s : trace.steps) {
    counts.push_back(static_cast<std::int64_t>(s.revealed.size()));
    blocks.push_back(s.block);
    for (auto pos : s.revealed) {  // revealed positions lie inside their block
      EXPECT_GE(pos, 4 + 5 * s.block);
      EXPECT_LT(pos, std::min<std::int64_t>(4 + 5 * (s.block + 1), 16));
    }
  }
  EXPECT_EQ(counts, (std::vector<std::int64_t>{2, 2, 1, 3, 2, 1, 1}));
  EXPECT_EQ(blocks, (std::vector<std::int64_t>{0, 0, 0, 1, 1, 2, 2}));
}

TEST(Sampler, MoreStepsThanMasksSkipsEmptySteps) {
  PositionalModel model(positional_table());
  SamplerTrace trace;
  auto out = ReverseSampler(options(20)).run(model, start_sequence(3, 5), &trace);
  EXPECT_EQ(trace.forward_passes, 5);
  EXPECT_FALSE(out.eq(kMask).any().item<bool>());
}

TEST(Sampler, NeverEmitsTheMaskToken) {
  PositionalModel model(positional_table(/*mask_bias=*/100.0));  // the model loves [MASK]
  for (double temperature : {0.0, 1.0}) {
    auto o = options(3);
    o.temperature = temperature;
    auto out = ReverseSampler(o).run(model, start_sequence(2, 10));
    EXPECT_FALSE(out.eq(kMask).any().item<bool>()) << temperature;
  }
}

TEST(Sampler, TemperatureZeroIsDeterministicAndSeededSamplingRepeats) {
  TinyModel model(kVocab, 16, 64, /*seed=*/3);
  auto start = start_sequence(4, 16);
  auto greedy = options(8);
  auto a = ReverseSampler(greedy).run(model, start);
  greedy.seed = 999;  // the seed does not matter at temperature 0
  EXPECT_TRUE(a.equal(ReverseSampler(greedy).run(model, start)));

  auto hot = options(8);
  hot.temperature = 5.0;
  hot.seed = 1;
  auto s1 = ReverseSampler(hot).run(model, start);
  EXPECT_TRUE(s1.equal(ReverseSampler(hot).run(model, start)));
  hot.seed = 2;
  EXPECT_FALSE(s1.equal(ReverseSampler(hot).run(model, start)));
  hot.remasking = Remasking::Random;
  auto r = ReverseSampler(hot).run(model, start);
  EXPECT_TRUE(r.equal(ReverseSampler(hot).run(model, start)));
  EXPECT_FALSE(r.eq(kMask).any().item<bool>());
}

TEST(Sampler, LogitShiftReadsThePreviousPosition) {
  PositionalModel model(positional_table());
  auto o = options(2);
  o.logit_shift = true;
  auto out = ReverseSampler(o).run(model, start_sequence(5, 6));
  for (std::int64_t i = 5; i < 11; ++i) EXPECT_EQ(out[i].item<std::int64_t>(), 10 + i - 1);
}

TEST(Sampler, GuidanceAddsAnUnconditionalPassWithThePromptMasked) {
  PositionalModel model(positional_table());
  auto o = options(2);
  o.cfg_scale = 1.5;
  auto start = start_sequence(4, 6);
  start[6] = 7;  // an infilling hole pattern: visible tokens after the first masks
  auto out = ReverseSampler(o).run(model, start);
  EXPECT_FALSE(out.eq(kMask).any().item<bool>());
  ASSERT_EQ(model.inputs.size(), 2u);
  auto first = model.inputs[0];
  ASSERT_EQ(first.size(0), 2);
  EXPECT_TRUE(first[0].equal(start));
  EXPECT_TRUE(first[1].eq(kMask).all().item<bool>());  // every visible token masked
}

TEST(Sampler, RunsInEvalModeAndRestoresTheTrainingFlag) {
  PositionalModel model(positional_table());
  model.set_training(true);
  ReverseSampler(options(2)).run(model, start_sequence(2, 4));
  EXPECT_FALSE(model.training_during_forward);
  EXPECT_TRUE(model.is_training());
}

}  // namespace
}  // namespace loom::diffusion
