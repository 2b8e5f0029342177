// Issue 13's sampler: parallel decoding, the key/value cache, EOS handling and batches, on small
// real models. Expected traces are worked out by hand from the fixed logits of PositionalModel.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <set>

#include "model/model_handle.hpp"
#include "sampler.hpp"
#include "support/thread_count.hpp"
#include "test_support.hpp"

namespace loom::diffusion {
namespace {

using testing::PositionalModel;
using testing::TinyModel;
using testing::to_vector;

constexpr std::int64_t kVocab = 64, kMask = 63, kLen = 24;

// Position s predicts token 10 + s with logit L_s, every other token 0 (the mask token is never
// predicted), so p_s = e^L / (e^L + 62) whatever the context:
//  certain (L = 10, p = 0.9972) at 5, 8, 9; p = 0.7 at 10 (L = ln(0.7 * 62 / 0.3));
//  unsure (L = 0.1 s, p = 0.024 .. 0.046, growing with s) elsewhere.
at::Tensor confidence_table() {
  auto table = torch::zeros({kVocab, kLen});
  for (std::int64_t s = 0; s < kLen; ++s) table[10 + s][s] = 0.1 * s;
  for (std::int64_t s : {5, 8, 9}) table[10 + s][s] = 10.0;
  table[20][10] = std::log(0.7 * 62 / 0.3);
  return table;
}

at::Tensor start_sequence(std::int64_t prompt, std::int64_t masks) {
  return testing::start_sequence(prompt, masks, kMask);
}

SamplerOptions options(std::int64_t steps, std::int64_t block_length = 0) {
  return testing::sampler_options(steps, block_length, kMask);
}

std::vector<std::set<std::int64_t>> revealed(const SamplerTrace& trace) {
  std::vector<std::set<std::int64_t>> out;
  for (const auto& s : trace.steps) out.emplace_back(s.revealed.begin(), s.revealed.end());
  return out;
}
using Sets = std::vector<std::set<std::int64_t>>;

TEST(ParallelSampler, ThresholdRevealsEveryConfidentPositionAndAtLeastOne) {
  PositionalModel model(confidence_table());
  auto o = options(/*steps (unused)=*/1);
  o.threshold = 0.9;
  SamplerTrace trace;
  auto out = ReverseSampler(o).run(model, start_sequence(4, 8), &trace);
  // One block 4..11: the three certain ones at once, then one per step, most confident first.
  EXPECT_EQ(revealed(trace), (Sets{{5, 8, 9}, {10}, {11}, {7}, {6}, {4}}));
  EXPECT_EQ(trace.forward_passes, 6);
  for (std::int64_t s = 4; s < 12; ++s) EXPECT_EQ(out[s].item<std::int64_t>(), 10 + s);

  // Blocks of 4: the rule applies inside the current block; a block goes on until revealed.
  o.block_length = 4;
  trace = {};
  ReverseSampler(o).run(model, start_sequence(4, 8), &trace);
  EXPECT_EQ(revealed(trace), (Sets{{5}, {7}, {6}, {4}, {8, 9}, {10}, {11}}));
  std::vector<std::int64_t> blocks;
  for (const auto& s : trace.steps) blocks.push_back(s.block);
  EXPECT_EQ(blocks, (std::vector<std::int64_t>{0, 0, 0, 0, 1, 1, 1}));
}

TEST(ParallelSampler, FactorRevealsWhileTheNthConfidenceClearsItsBar) {
  PositionalModel model(confidence_table());
  auto o = options(1);
  // factor 2: bars n=2: 0.333, 3: 0.5, 4: 0.6, 5: 0.667 -> 0.997 x3 and 0.7 pass, 0.046 not.
  o.factor = 2.0;
  SamplerTrace trace;
  ReverseSampler(o).run(model, start_sequence(4, 8), &trace);
  EXPECT_EQ(revealed(trace), (Sets{{5, 8, 9, 10}, {11}, {7}, {6}, {4}}));
  // factor 1: bar 4 is 0.8 > 0.7: the 0.7 waits for the next step.
  o.factor = 1.0;
  trace = {};
  ReverseSampler(o).run(model, start_sequence(4, 8), &trace);
  EXPECT_EQ(revealed(trace), (Sets{{5, 8, 9}, {10}, {11}, {7}, {6}, {4}}));
}

TEST(ParallelSampler, MarginConfidenceDrivesTheThresholdToo) {
  PositionalModel model(confidence_table());
  auto o = options(1);
  o.threshold = 0.9;
  o.remasking = Remasking::Margin;
  SamplerTrace trace;
  ReverseSampler(o).run(model, start_sequence(4, 8), &trace);
  // margin = p_top1 - p_top2: 0.9972 - 1/22088 for the certain ones, 0.7 - 0.3/62 at 10.
  EXPECT_EQ(revealed(trace).front(), (std::set<std::int64_t>{5, 8, 9}));
  EXPECT_EQ(revealed(trace).at(1), (std::set<std::int64_t>{10}));
}

TEST(ParallelSampler, AHandleWithoutCacheGetsFullPassesAndTheSameResult) {
  PositionalModel model(confidence_table());  // forward_caching: the SDK default, nullptr
  for (CacheMode cache : {CacheMode::Prefix, CacheMode::Dual}) {
    auto o = options(1, 4);
    o.threshold = 0.9;
    SamplerTrace plain, cached;
    auto a = ReverseSampler(o).run(model, start_sequence(4, 8), &plain);
    o.cache = cache;
    auto b = ReverseSampler(o).run(model, start_sequence(4, 8), &cached);
    EXPECT_TRUE(a.equal(b));
    EXPECT_EQ(revealed(plain), revealed(cached));
  }
}

// One attention layer: the keys and values of a position depend only on its token, and the
// tokens outside the block do not change during a block, so prefix and dual caches are exact
// here and the cached run must match the uncached one token for token. (On deeper models they
// are an approximation; see sampler.hpp.)
TEST(ParallelSampler, CachedRunsOfAOneLayerModelEqualTheUncachedRun) {
  for (bool shift : {false, true}) {
    for (double cfg : {0.0, 1.0}) {
      for (bool threshold : {false, true}) {
        TinyModel model(kVocab, 16, 64, /*seed=*/5);
        auto o = options(/*steps=*/8, /*block_length=*/4);  // 4 blocks of 2 steps
        o.logit_shift = shift;
        o.cfg_scale = cfg;
        if (threshold) o.threshold = 0.05;
        o.temperature = 0.5;
        o.seed = 11;
        auto start = start_sequence(5, 16);
        SamplerTrace plain;
        auto expected = ReverseSampler(o).run(model, start, &plain);
        for (CacheMode cache : {CacheMode::Prefix, CacheMode::Dual}) {
          model.caching_calls = model.cached_calls = model.forward_calls = 0;
          model.cached_positions.clear();
          o.cache = cache;
          SamplerTrace trace;
          auto out = ReverseSampler(o).run(model, start, &trace);
          const std::string what = std::string(to_string(cache)) + " shift " +
                                   std::to_string(shift) + " cfg " + std::to_string(cfg) +
                                   " threshold " + std::to_string(threshold);
          EXPECT_TRUE(out.equal(expected)) << what;
          EXPECT_FALSE(out.eq(kMask).any().item<bool>()) << what;
          EXPECT_EQ(revealed(trace), revealed(plain)) << what;
          // One caching pass per block (it is also the block's first step), cached passes for
          // the other steps, and no other forward.
          EXPECT_EQ(model.caching_calls, 4) << what;
          EXPECT_EQ(model.forward_calls, 4) << what;
          EXPECT_EQ(model.cached_calls, trace.forward_passes - 4) << what;
          if (!threshold && !model.cached_positions.empty()) {
            // Block 0 is positions 5..8; its second step recomputes the block (dual, plus
            // position 4 with the shift) or everything from it to the end (prefix).
            auto q = to_vector(model.cached_positions.front()[0]);  // the conditional row
            std::vector<std::int64_t> want;
            for (std::int64_t p = shift ? 4 : 5; p < (cache == CacheMode::Dual ? 9 : 21); ++p)
              want.push_back(p);
            EXPECT_EQ(q, want) << what;
          }
        }
      }
    }
  }
}

// The first step of each block comes from forward_caching's output: with one step per block
// every step is a first step, and a cached run is the uncached one, whatever the cache holds.
TEST(ParallelSampler, TheFirstStepOfEachBlockIsTheUncachedForward) {
  TinyModel model(kVocab, 16, 64, /*seed=*/2);
  auto o = options(/*steps=*/5, /*block_length=*/1);
  auto start = start_sequence(3, 5);
  auto expected = ReverseSampler(o).run(model, start);
  // (The uncached run's full passes are caching passes too, their caches dropped.)
  EXPECT_EQ(model.caching_calls, 5);
  model.caching_calls = 0;
  o.cache = CacheMode::Dual;
  EXPECT_TRUE(ReverseSampler(o).run(model, start).equal(expected));
  EXPECT_EQ(model.cached_calls, 0);
  EXPECT_EQ(model.caching_calls, 5);
}

// EOS: the positional model predicts token 5 at position 9 -- the test calls 5 the EOS id --
// and 10 + s elsewhere, with confidence growing with s (logit 1 + 0.2 s; 2.9 for the EOS, so
// 9 is revealed after 10 and before 8).
at::Tensor eos_table(double eos_logit) {
  auto table = torch::zeros({kVocab, kLen});
  for (std::int64_t s = 0; s < kLen; ++s) table[10 + s][s] = 1.0 + 0.2 * s;
  table[19][9] = 1.0;
  table[5][9] = eos_logit;
  return table;
}

TEST(ParallelSampler, StopAtEosEndsTheRowOnceEverythingBeforeTheEosIsRevealed) {
  PositionalModel model(eos_table(2.9));
  auto o = options(/*steps=*/16, /*block_length=*/4);  // 16 masks at 4..19, one per step
  o.eos_token_id = 5;
  o.stop_at_eos = true;
  SamplerTrace trace;
  auto out = ReverseSampler(o).run(model, start_sequence(4, 16), &trace);
  // Block 0: 7, 6, 5, 4. Block 1: 11, 10, 9 (EOS; 8 still masked), 8 -> finished after 8
  // forward passes instead of 16; 10 and 11 (revealed before) and 12..19 become EOS.
  EXPECT_EQ(trace.forward_passes, 8);
  EXPECT_EQ(trace.stopped_at, 5);  // position 9 is the sixth generated position
  for (std::int64_t s = 4; s < 9; ++s) EXPECT_EQ(out[s].item<std::int64_t>(), 10 + s) << s;
  for (std::int64_t s = 9; s < 20; ++s) EXPECT_EQ(out[s].item<std::int64_t>(), 5) << s;

  // In a batch, next to a row that never meets the EOS (its position 9 is prompt): the
  // stopped row leaves the batch, the other goes on alone, both as if run solo.
  std::vector<SamplerRow> rows{{start_sequence(4, 16), 16, 0.0, 4, 0},
                               {start_sequence(12, 12), 12, 0.0, 4, 0}};
  std::vector<SamplerTrace> traces;
  model.inputs.clear();
  auto outs = ReverseSampler(o).run_batch(model, rows, &traces);
  EXPECT_TRUE(outs[0].equal(out));
  EXPECT_EQ(traces[0].forward_passes, 8);
  EXPECT_EQ(traces[1].forward_passes, 12);
  EXPECT_EQ(traces[1].stopped_at, -1);
  // Without a cache each row runs its own forward (on its own tokens, as alone): both rows in
  // the first 8 steps, then the second alone -- 8 * 2 + 4 calls, not 2 * 12.
  ASSERT_EQ(model.inputs.size(), 20u);
  for (const auto& input : model.inputs) EXPECT_EQ(input.size(0), 1);
  auto o1 = o;
  o1.steps = 12;
  EXPECT_TRUE(outs[1].equal(ReverseSampler(o1).run(model, start_sequence(12, 12))));
}

TEST(ParallelSampler, SuppressEosNeverEmitsIt) {
  PositionalModel model(eos_table(10.0));  // EOS is the argmax at 9
  auto o = options(4);
  o.eos_token_id = 5;
  auto plain = ReverseSampler(o).run(model, start_sequence(4, 12));
  EXPECT_EQ(plain[9].item<std::int64_t>(), 5);  // the fixture does produce it
  o.suppress_eos = true;
  for (double temperature : {0.0, 3.0}) {
    o.temperature = temperature;
    auto out = ReverseSampler(o).run(model, start_sequence(4, 12));
    EXPECT_FALSE(out.eq(5).any().item<bool>()) << temperature;
    if (temperature == 0) EXPECT_EQ(out[9].item<std::int64_t>(), 19);  // the runner-up
  }
}

TEST(ParallelSampler, TopKOfOneLeavesNothingToChance) {
  TinyModel model(kVocab, 16, 64, /*seed=*/4);
  auto o = options(6, 4);
  o.temperature = 5.0;
  o.top_k = 1;
  o.seed = 1;
  auto a = ReverseSampler(o).run(model, start_sequence(3, 12));
  o.seed = 2;
  EXPECT_TRUE(a.equal(ReverseSampler(o).run(model, start_sequence(3, 12))));
  o.top_k = 0;  // without it, the seed matters at this temperature
  auto c = ReverseSampler(o).run(model, start_sequence(3, 12));
  o.seed = 1;
  EXPECT_FALSE(c.equal(ReverseSampler(o).run(model, start_sequence(3, 12))));
}

// A ragged batch: prompts of 1..8 tokens, 3..17 new tokens, an infilling row (holes inside the
// prompt), different steps, block lengths, seeds and temperatures.
std::vector<SamplerRow> ragged_rows() {
  std::vector<SamplerRow> rows;
  for (std::int64_t i = 0; i < 8; ++i) {
    SamplerRow r;
    r.sequence = start_sequence(1 + i, 3 + 2 * i);
    if (i == 5) r.sequence.index_fill_(0, torch::tensor({1, 3}, torch::kLong), kMask);
    r.steps = 2 + i;
    r.block_length = i % 3 == 0 ? 0 : 2 + i % 4;
    r.temperature = i % 2 == 0 ? 0.0 : 0.5 * i;
    r.seed = 100 + static_cast<std::uint64_t>(i);
    rows.push_back(r);
  }
  return rows;
}

TEST(ParallelSampler, EachRowOfARaggedBatchEqualsItsSoloRun) {
  struct Variant {
    const char* name;
    CacheMode cache;
    std::optional<double> threshold;
    double cfg;
    Remasking remasking;
  };
  for (const Variant& v :
       {Variant{"none", CacheMode::None, std::nullopt, 0.0, Remasking::LowConfidence},
        Variant{"none random", CacheMode::None, std::nullopt, 0.0, Remasking::Random},
        Variant{"dual+threshold", CacheMode::Dual, 0.025, 0.0, Remasking::LowConfidence},
        Variant{"prefix+threshold+cfg", CacheMode::Prefix, 0.004, 0.5, Remasking::Margin}}) {
    TinyModel model(kVocab, 16, 64, /*seed=*/7);
    auto o = options(1);
    o.cache = v.cache;
    o.threshold = v.threshold;
    o.cfg_scale = v.cfg;
    o.remasking = v.remasking;
    const auto rows = ragged_rows();
    std::vector<SamplerTrace> traces;
    auto batch = ReverseSampler(o).run_batch(model, rows, &traces);
    ASSERT_EQ(batch.size(), rows.size());
    if (v.threshold) {  // the threshold is low enough that some steps reveal several
      std::size_t steps = 0, masks = 0;
      for (std::size_t i = 0; i < rows.size(); ++i) {
        steps += traces[i].steps.size();
        masks += static_cast<std::size_t>(rows[i].sequence.eq(kMask).sum().item<std::int64_t>());
      }
      EXPECT_LT(steps, masks) << v.name;
      EXPECT_GT(steps, masks / 4) << v.name;  // and some reveal one
    }
    for (std::size_t i = 0; i < rows.size(); ++i) {
      auto solo_options = o;
      solo_options.steps = rows[i].steps;
      solo_options.block_length = rows[i].block_length;
      solo_options.temperature = rows[i].temperature;
      solo_options.seed = rows[i].seed;
      SamplerTrace trace;
      auto solo = ReverseSampler(solo_options).run(model, rows[i].sequence, &trace);
      EXPECT_EQ(to_vector(batch[i]), to_vector(solo)) << v.name << " row " << i;
      EXPECT_FALSE(batch[i].eq(kMask).any().item<bool>()) << v.name << " row " << i;
      EXPECT_EQ(traces[i].forward_passes, trace.forward_passes) << v.name << " row " << i;
      EXPECT_EQ(revealed(traces[i]), revealed(trace)) << v.name << " row " << i;
    }
  }
}

}  // namespace
}  // namespace loom::diffusion


namespace loom::diffusion {
namespace {

// The host's own cache (LlamaModelHandle, two layers: prefix and dual are approximations
// there): every run completes, a step per block is exact, and batches equal solo runs.
LlamaModelHandle small_llama() {
  ModelConfig c;
  c.vocab_size = kVocab;
  c.hidden_size = 32;
  c.intermediate_size = 64;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.max_position_embeddings = 64;
  torch::manual_seed(3);
  LlamaForCausalLM m(c);
  m->eval();
  return LlamaModelHandle(m);
}

TEST(ParallelSampler, TheHostCacheCompletesEveryRunAndBatchesEqualSoloRuns) {
  auto model = small_llama();
  auto start = start_sequence(5, 16);
  {
    auto o = options(4, 4);  // one step per block: every step is a caching pass
    auto expected = ReverseSampler(o).run(model, start);
    o.cache = CacheMode::Dual;
    EXPECT_TRUE(ReverseSampler(o).run(model, start).equal(expected));
  }
  // (None too: its full passes are the host's caching passes, whose rows do not depend on
  // the batch.) The batch runs with 2 threads, the solo runs with 1 and 3: on the CPU in fp32
  // every pass's rows are also independent of the thread count.
  test::ThreadCount batch_threads(2);
  for (CacheMode cache : {CacheMode::None, CacheMode::Prefix, CacheMode::Dual}) {
    auto o = options(8, 4);
    o.cache = cache;
    SamplerTrace trace;
    auto out = ReverseSampler(o).run(model, start, &trace);
    EXPECT_FALSE(out.eq(kMask).any().item<bool>()) << to_string(cache);
    EXPECT_EQ(trace.forward_passes, 8) << to_string(cache);
    o.threshold = 0.03;
    o.steps = 1;
    const auto rows = ragged_rows();
    std::vector<SamplerTrace> traces;
    auto batch = ReverseSampler(o).run_batch(model, rows, &traces);
    for (int threads : {1, 3}) {
      test::ThreadCount solo_threads(threads);
      for (std::size_t i = 0; i < rows.size(); ++i) {
        auto solo_options = o;
        solo_options.block_length = rows[i].block_length;
        solo_options.temperature = rows[i].temperature;
        solo_options.seed = rows[i].seed;
        auto solo = ReverseSampler(solo_options).run(model, rows[i].sequence);
        EXPECT_EQ(to_vector(batch[i]), to_vector(solo))
            << to_string(cache) << " row " << i << ", solo with " << threads << " threads";
        EXPECT_FALSE(batch[i].eq(kMask).any().item<bool>());
      }
    }
  }
}

// stop_at_eos inside a cached group: a row that reveals its EOS mid-block leaves the group
// (its slots go unused) while the other row finishes the block; the stopped row equals its solo
// run and took the same forward passes. The EOS is a token this model does predict: the one
// the full run reveals first at the row's sixth generated position.
TEST(ParallelSampler, StopAtEosInsideACachedBatch) {
  auto model = small_llama();
  auto start = start_sequence(5, 16);
  auto o = options(16, 8);
  o.cache = CacheMode::Dual;
  const auto full = ReverseSampler(o).run(model, start);
  o.eos_token_id = full[5 + 5].item<std::int64_t>();
  o.stop_at_eos = true;
  SamplerTrace solo_trace;
  const auto solo = ReverseSampler(o).run(model, start, &solo_trace);
  ASSERT_GE(solo_trace.stopped_at, 0);
  ASSERT_LT(solo_trace.forward_passes, 16);
  const auto gen = solo.narrow(0, 5, 16);
  const std::int64_t first = gen.eq(o.eos_token_id).nonzero()[0][0].item<std::int64_t>();
  EXPECT_EQ(first, solo_trace.stopped_at);
  EXPECT_FALSE(gen.eq(kMask).any().item<bool>());
  EXPECT_TRUE(gen.narrow(0, first, 16 - first).eq(o.eos_token_id).all().item<bool>());

  auto other = start_sequence(3, 20);
  std::vector<SamplerRow> rows{{start, 16, 0.0, 8, 0}, {other, 20, 0.0, 8, 0}};
  std::vector<SamplerTrace> traces;
  auto batch = ReverseSampler(o).run_batch(model, rows, &traces);
  EXPECT_EQ(to_vector(batch[0]), to_vector(solo));
  EXPECT_EQ(traces[0].forward_passes, solo_trace.forward_passes);
  auto o2 = o;
  o2.steps = 20;
  SamplerTrace other_trace;
  EXPECT_EQ(to_vector(batch[1]), to_vector(ReverseSampler(o2).run(model, other, &other_trace)));
  EXPECT_EQ(traces[1].forward_passes, other_trace.forward_passes);
}

}  // namespace
}  // namespace loom::diffusion
