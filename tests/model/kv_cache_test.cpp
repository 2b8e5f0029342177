// The key/value cache of LlamaModelHandle (SDK 1.3: forward_caching, forward_cached).
// The reference is the model's own uncached forward() (checked against the float64 Python
// reference in llama_model_test.cpp): the cached passes must reproduce it where the contract
// says they are exact, and rows must not depend on the batch around them.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "model/instrumented_model_handle.hpp"
#include "model/model_handle.hpp"
#include "model/reference_model.hpp"
#include "support/thread_count.hpp"

namespace loom {
namespace {

using reference::reference_config;
using reference::set_reference_weights;

LlamaModelHandle make_handle(std::int64_t layers, torch::ScalarType dtype = torch::kFloat) {
  auto c = reference_config();  // GQA: 4 query heads, 2 key/value heads
  c.num_hidden_layers = layers;
  LlamaForCausalLM m(c);
  set_reference_weights(m);
  m->to(dtype);
  m->eval();
  return LlamaModelHandle(m);
}

torch::Tensor forward_hidden(LlamaModelHandle& h, const torch::Tensor& ids,
                             const torch::Tensor& seg) {
  torch::NoGradGuard no_grad;
  return h.forward(ids, torch::Tensor(), seg, sdk::AttentionSpec::bidirectional()).hidden;
}

// hidden[b, positions[b, q]] for the used slots, and the cached output at those slots.
void expect_matches_at(const torch::Tensor& cached, const torch::Tensor& full,
                       const torch::Tensor& positions, double tol, const std::string& what) {
  ASSERT_EQ(cached.size(0), positions.size(0));
  ASSERT_EQ(cached.size(1), positions.size(1));
  EXPECT_FALSE(cached.isnan().any().item<bool>()) << what << ": NaN in the output";
  for (std::int64_t b = 0; b < positions.size(0); ++b)
    for (std::int64_t q = 0; q < positions.size(1); ++q) {
      const auto p = positions[b][q].item<std::int64_t>();
      if (p < 0) continue;
      const double err = (cached[b][q] - full[b][p]).abs().max().item<double>();
      EXPECT_LT(err, tol) << what << ": row " << b << " slot " << q << " (position " << p << ")";
    }
}

// Two rows of 10: row 0 with leading and trailing padding, row 1 two packed documents and
// trailing padding.
struct RaggedBatch {
  torch::Tensor ids = torch::tensor({5,  3, 7, 1,  9, 22, 5,  0, 0,  4,  //
                                     11, 2, 2, 38, 4, 17, 25, 6, 30, 8},
                                    torch::kLong)
                          .view({2, 10});
  torch::Tensor seg = torch::tensor({0, 1, 1, 1, 1, 1, 1, 0, 0, 0,  //
                                     1, 1, 1, 1, 2, 2, 2, 2, 2, 0},
                                    torch::kLong)
                          .view({2, 10});
};

TEST(KvCache, ForwardCachingEqualsBidirectionalForward) {
  for (auto dtype : {torch::kFloat, torch::kDouble}) {
    auto h = make_handle(2, dtype);
    RaggedBatch in;
    sdk::ModelOutput out;
    auto cache = h.forward_caching(in.ids, torch::Tensor(), in.seg, &out);
    ASSERT_TRUE(cache);
    EXPECT_EQ(cache->batch_size(), 2);
    EXPECT_EQ(cache->sequence_length(), 10);
    auto want = forward_hidden(h, in.ids, in.seg);
    ASSERT_EQ(out.hidden.sizes(), want.sizes());
    // Padding positions too: forward lets a padding token see itself only.
    const double tol = dtype == torch::kDouble ? 1e-10 : 1e-5;
    EXPECT_LT((out.hidden - want).abs().max().item<double>(), tol) << c10::toString(dtype);
    EXPECT_EQ(out.project(out.hidden[0][2]).size(-1), 40);
  }
}

// Rows the sampler never makes, but the SDK allows: segments interleaved (1, 2, 1), padding on
// both sides and between, and a row of padding only. forward() is the reference (its mask:
// a segment sees its own keys, padding only itself).
TEST(KvCache, ForwardCachingHandlesInterleavedSegmentsAndAllPaddingRows) {
  for (int threads : {1, 3}) {
    test::ThreadCount thread_count(threads);
    auto h = make_handle(2);
    auto ids = torch::tensor({4, 9, 3, 12, 7, 7, 30, 2, 5, 1,  //
                              8, 8, 8, 8,  8, 8, 8,  8, 8, 8},
                             torch::kLong)
                   .view({2, 10});
    auto seg = torch::tensor({0, 1, 2, 1, 1, 0, 2, 1, 0, 0,  //
                              0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
                             torch::kLong)
                   .view({2, 10});
    sdk::ModelOutput out;
    auto cache = h.forward_caching(ids, torch::Tensor(), seg, &out);
    auto want = forward_hidden(h, ids, seg);
    EXPECT_LT((out.hidden - want).abs().max().item<double>(), 1e-5) << threads << " threads";
    // And the cached pass over the interleaved row's segment 2 reads the right keys.
    auto pos = torch::tensor({2, 6}, torch::kLong).view({1, 2});
    auto row0 = ids[0].index_select(0, pos[0]).unsqueeze(0);
    auto cache0 =
        h.forward_caching(ids.narrow(0, 0, 1), torch::Tensor(), seg.narrow(0, 0, 1), nullptr);
    auto cached = h.forward_cached(*cache0, row0, pos).hidden;
    for (int q = 0; q < 2; ++q)
      EXPECT_LT((cached[0][q] - want[0][pos[0][q].item<std::int64_t>()]).abs().max().item<double>(),
                1e-5)
          << "slot " << q << ", " << threads << " threads";
  }
}

// A batch of more tokens than one chunk of the layer-major pass's per-position work (4096):
// each row still has its solo run's bits.
TEST(KvCache, ABatchLongerThanATokenChunkKeepsEachRowsBits) {
  ModelConfig c;
  c.vocab_size = 64;
  c.hidden_size = 64;
  c.intermediate_size = 96;
  c.num_hidden_layers = 1;
  c.num_attention_heads = 2;
  c.num_key_value_heads = 1;
  c.max_position_embeddings = 2048;
  LlamaForCausalLM m(c);
  m->reset_parameters(5);
  m->eval();
  LlamaModelHandle h(m);
  const std::int64_t B = 3, S = 1400;  // 4200 tokens
  auto gen = at::detail::createCPUGenerator(9);
  auto ids = torch::randint(0, 64, {B, S}, gen, torch::kLong);
  sdk::ModelOutput batch;
  auto batch_cache = h.forward_caching(ids, torch::Tensor(), torch::Tensor(), &batch);
  for (std::int64_t b = 0; b < B; ++b) {
    sdk::ModelOutput solo;
    auto solo_cache =
        h.forward_caching(ids.narrow(0, b, 1), torch::Tensor(), torch::Tensor(), &solo);
    EXPECT_TRUE(torch::equal(solo.hidden[0], batch.hidden[b])) << "row " << b;
  }
}

TEST(KvCache, UnchangedTokensGiveForwardsHiddenStates) {
  for (auto dtype : {torch::kFloat, torch::kDouble}) {
    auto h = make_handle(2, dtype);
    RaggedBatch in;
    auto cache = h.forward_caching(in.ids, torch::Tensor(), in.seg, nullptr);
    auto want = forward_hidden(h, in.ids, in.seg);
    // Different counts per row, unused slots (holding ids outside the vocabulary: they must be
    // ignored) first, between and last; row 0 also asks for a padding position (8).
    auto pos = torch::tensor({-1, 2, 5, 8, -1, 1,  //
                              9, 3, 4, -1, 7, 0},
                             torch::kLong)
                   .view({2, 6});
    auto ids = torch::full({2, 6}, 999, torch::kLong);
    for (std::int64_t b = 0; b < 2; ++b)
      for (std::int64_t q = 0; q < 6; ++q)
        if (pos[b][q].item<std::int64_t>() >= 0)
          ids[b][q] = in.ids[b][pos[b][q].item<std::int64_t>()];
    auto out = h.forward_cached(*cache, ids, pos);
    ASSERT_EQ(out.hidden.sizes(), (std::vector<std::int64_t>{2, 6, 16}));
    expect_matches_at(out.hidden, want, pos, dtype == torch::kDouble ? 1e-10 : 1e-5,
                      c10::toString(dtype));
    // Asked again (the cache now holds the recomputed keys and values): the same.
    auto again = h.forward_cached(*cache, ids, pos);
    expect_matches_at(again.hidden, want, pos, dtype == torch::kDouble ? 1e-10 : 1e-5, "again");
    EXPECT_EQ(out.project(out.hidden).sizes(), (std::vector<std::int64_t>{2, 6, 40}));
  }
}

// With one layer, the keys and values of a position depend on its token only, so after
// changing tokens the cached pass is exact: it proves the cache update and RoPE positions.
TEST(KvCache, OneLayerChangedTokensAreExact) {
  auto h = make_handle(1);
  RaggedBatch in;
  auto cache = h.forward_caching(in.ids, torch::Tensor(), in.seg, nullptr);
  auto pos = torch::tensor({2, 4, 5, 1, 6, -1}, torch::kLong).view({2, 3});
  auto new_ids = torch::tensor({13, 27, 39, 0, 21, 7}, torch::kLong).view({2, 3});
  auto changed = in.ids.clone();
  changed[0][2] = 13, changed[0][4] = 27, changed[0][5] = 39;
  changed[1][1] = 0, changed[1][6] = 21;
  auto want = forward_hidden(h, changed, in.seg);
  auto out = h.forward_cached(*cache, new_ids, pos);
  expect_matches_at(out.hidden, want, pos, 1e-5, "changed positions");
  // Elsewhere, later: the unchanged tokens now see the changed ones' keys and values.
  auto other = torch::tensor({1, 3, 6, 8, 9, 4}, torch::kLong).view({2, 3});
  auto other_ids =
      torch::stack({changed[0].index_select(0, other[0]), changed[1].index_select(0, other[1])});
  auto later = h.forward_cached(*cache, other_ids, other);
  expect_matches_at(later.hidden, want, other, 1e-5, "unchanged positions");
  // Sanity: against the unchanged sequence they differ, so the check above has teeth.
  auto before = forward_hidden(h, in.ids, in.seg);
  EXPECT_GT((later.hidden[0][0] - before[0][1]).abs().max().item<double>(), 1e-3);
}

// Fast-dLLM's two call shapes during one semi-autoregressive block: the block and everything
// after it (prefix cache), or the block only (dual cache).
TEST(KvCache, PrefixAndDualCallsMatchForward) {
  auto h = make_handle(3);
  const std::int64_t S = 16;
  auto gen = at::detail::createCPUGenerator(7);
  auto ids = torch::randint(0, 40, {2, S}, gen, torch::kLong);
  auto seg = torch::ones({2, S}, torch::kLong);
  seg[1].slice(0, 13).fill_(0);  // row 1: 13 tokens, then padding
  auto cache = h.forward_caching(ids, torch::Tensor(), seg, nullptr);
  auto want = forward_hidden(h, ids, seg);
  const std::int64_t block = 4, block_len = 4;
  auto prefix = torch::full({2, S - block}, -1, torch::kLong);
  for (std::int64_t p = block; p < S; ++p) prefix[0][p - block] = p;
  for (std::int64_t p = block; p < 13; ++p) prefix[1][p - block] = p;
  auto dual = torch::arange(block, block + block_len, torch::kLong).repeat({2, 1});
  for (const auto& [name, pos] :
       {std::pair<const char*, torch::Tensor>{"prefix", prefix}, {"dual", dual}}) {
    auto tok = torch::where(pos.ge(0), ids.gather(1, pos.clamp_min(0)), torch::full_like(pos, -1));
    auto out = h.forward_cached(*cache, tok, pos);
    expect_matches_at(out.hidden, want, pos, 1e-5, name);
  }
}

// Each row of a ragged batch equals the same prompt run alone, unpadded, bit for bit: the
// cache pass and cached passes with changed tokens, hidden states and the logits projected
// from them (all rows' at once in the batch). The batch runs with two threads (rows then share
// each product, attention pairs run in parallel), the solo cached passes with one and with
// two; with one and with two key/value heads (one head: a solo row's attention is one task).
TEST(KvCache, RowsDoNotDependOnTheBatch) {
  for (std::int64_t kv_heads : {2, 1}) {
    test::ThreadCount batch_threads(2);
    ModelConfig c;
    c.vocab_size = 64;
    c.hidden_size = 128;
    c.intermediate_size = 344;
    c.num_hidden_layers = 2;
    c.num_attention_heads = 4;
    c.num_key_value_heads = kv_heads;
    c.max_position_embeddings = 128;
    LlamaForCausalLM m(c);
    m->reset_parameters(11);
    m->eval();
    LlamaModelHandle h(m);
    const std::int64_t S = 48;
    const std::vector<std::int64_t> len = {48, 29, 40};
    auto gen = at::detail::createCPUGenerator(3);
    auto ids = torch::randint(0, 64, {3, S}, gen, torch::kLong);
    auto seg = torch::zeros({3, S}, torch::kLong);
    for (std::int64_t b = 0; b < 3; ++b) seg[b].slice(0, 0, len[b]).fill_(1);
    // Two rounds of the block 20..27 (rows 1 and 2 with unused slots in different places), the
    // second with new tokens.
    auto pos = torch::tensor({20, 21, 22, 23, 24, 25, 26, 27,  //
                              -1, 20, 21, -1, 22, 23, 24, -1,  //
                              20, 21, 22, 23, 24, -1, -1, -1},
                             torch::kLong)
                   .view({3, 8});
    const auto tok0 = ids.gather(1, pos.clamp_min(0)),
               tok1 = torch::randint(0, 64, {3, 8}, gen, torch::kLong);

    sdk::ModelOutput batch_out;
    auto batch_cache = h.forward_caching(ids, torch::Tensor(), seg, &batch_out);
    std::vector<torch::Tensor> batch_rounds, batch_logits;
    for (const auto& tok : {tok0, tok1}) {
      auto out = h.forward_cached(*batch_cache, tok, pos);
      batch_rounds.push_back(out.hidden);
      batch_logits.push_back(out.project(out.hidden.reshape({-1, c.hidden_size})).view({3, 8, -1}));
    }

    for (int solo_threads : {1, 2, 3}) {
      const std::string where = std::to_string(kv_heads) + " key/value heads, solo passes with " +
                                std::to_string(solo_threads) + " threads";
      for (std::int64_t b = 0; b < 3; ++b) {
        // Solo runs with 1, 2 and 3 threads against the batch's 2 (3 threads: more threads
        // than (row, key/value head) pairs, so each pair's queries are split in ranges).
        test::ThreadCount solo_thread_count(solo_threads);
        auto solo_ids = ids[b].slice(0, 0, len[b]).unsqueeze(0);
        sdk::ModelOutput solo_out;
        auto solo_cache = h.forward_caching(solo_ids, torch::Tensor(), torch::Tensor(), &solo_out);
        EXPECT_TRUE(torch::equal(solo_out.hidden[0], batch_out.hidden[b].slice(0, 0, len[b])))
            << "forward_caching, row " << b << ", " << where;
        EXPECT_TRUE(torch::equal(solo_out.project(solo_out.hidden[0]),
                                 batch_out.project(batch_out.hidden[b].slice(0, 0, len[b]))))
            << "forward_caching's logits, row " << b << ", " << where;
        auto used = pos[b].ge(0).nonzero().squeeze(1);
        for (int r = 0; r < 2; ++r) {
          const auto& tok = r == 0 ? tok0 : tok1;
          auto out = h.forward_cached(*solo_cache, tok[b].index_select(0, used).unsqueeze(0),
                                      pos[b].index_select(0, used).unsqueeze(0));
          auto solo = out.hidden[0];
          auto batched = batch_rounds[std::size_t(r)][b].index_select(0, used);
          EXPECT_TRUE(torch::equal(solo, batched))
              << "forward_cached round " << r << ", row " << b << ", " << where
              << ": max difference " << (solo - batched).abs().max().item<double>();
          EXPECT_TRUE(torch::equal(out.project(solo),
                                   batch_logits[std::size_t(r)][b].index_select(0, used)))
              << "logits, round " << r << ", row " << b << ", " << where;
        }
      }
    }
  }
}

void expect_invalid(const std::function<void()>& call, const std::string& message_part) {
  try {
    call();
    ADD_FAILURE() << "no error; expected one mentioning '" << message_part << "'";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find(message_part), std::string::npos) << e.what();
  }
}

TEST(KvCache, BadInputsAreRefusedWithTheReason) {
  auto h = make_handle(1);
  RaggedBatch in;
  auto cache = h.forward_caching(in.ids, torch::Tensor(), in.seg, nullptr);
  auto ids = torch::tensor({1, 2, 3, 4}, torch::kLong).view({2, 2});
  auto pos = torch::tensor({0, 1, 2, 3}, torch::kLong).view({2, 2});
  expect_invalid([&] { h.forward_cached(*cache, ids.view({4}), pos); }, "[B, Q]");
  expect_invalid([&] { h.forward_cached(*cache, ids, pos.view({1, 4})); }, "[B, Q]");
  expect_invalid([&] { h.forward_cached(*cache, ids, pos.to(torch::kFloat)); }, "int64");
  expect_invalid([&] { h.forward_cached(*cache, ids.to(torch::kFloat), pos); }, "integer");
  expect_invalid([&] { h.forward_cached(*cache, ids.slice(0, 0, 1), pos.slice(0, 0, 1)); },
                 "the cache holds 2");
  expect_invalid(
      [&] {
        h.forward_cached(*cache, ids, torch::tensor({0, 10, 2, 3}).view({2, 2}));
      },
      "position 10 (row 0, slot 1) is out of range");
  expect_invalid(
      [&] {
        h.forward_cached(*cache, ids, torch::tensor({0, -2, 2, 3}).view({2, 2}));
      },
      "out of range");
  expect_invalid(
      [&] {
        h.forward_cached(*cache, ids, torch::tensor({0, 1, 3, 3}).view({2, 2}));
      },
      "position 3 (row 1, slot 1) appears twice");
  expect_invalid(
      [&] {
        h.forward_cached(*cache, torch::tensor({1, 40, 3, 4}).view({2, 2}), pos);
      },
      "token id 40 (row 0, slot 1) is outside the vocabulary");
  auto other = make_handle(1);
  expect_invalid([&] { other.forward_cached(*cache, ids, pos); }, "another model handle");
  expect_invalid(
      [&] { h.forward_caching(in.ids, torch::Tensor(), in.seg.slice(1, 0, 5), nullptr); },
      "segment_ids");
  expect_invalid(
      [&] { h.forward_caching(in.ids.view({20}), torch::Tensor(), torch::Tensor(), nullptr); },
      "[B, S]");
  // Nothing above touched the cache: with one layer, a pass with new tokens is still exact.
  auto changed = in.ids.clone();
  changed[0][0] = 1, changed[0][1] = 2, changed[1][2] = 3, changed[1][3] = 4;
  auto out = h.forward_cached(*cache, ids, pos);
  expect_matches_at(out.hidden, forward_hidden(h, changed, in.seg), pos, 1e-5,
                    "after the refusals");
}

TEST(KvCache, InstrumentedHandleForwardsAndCounts) {
  auto h = make_handle(2);
  InstrumentedModelHandle timed(h);
  RaggedBatch in;
  sdk::ModelOutput out;
  auto cache = timed.forward_caching(in.ids, torch::Tensor(), in.seg, &out);
  auto pos = torch::tensor({1, 2, 1, 3}, torch::kLong).view({2, 2});
  auto cached = timed.forward_cached(*cache, in.ids.gather(1, pos), pos);
  EXPECT_EQ(timed.forward_calls, 2);
  EXPECT_GT(timed.forward_s, 0.0);
  cached.project(cached.hidden);
  EXPECT_GT(timed.projection_s, 0.0);
  expect_matches_at(cached.hidden, out.hidden, pos, 1e-5, "through the instrumented handle");
}

// Not a test: `loom_tests --gtest_also_run_disabled_tests --gtest_filter='*KvCacheTiming*'`
// prints forward() vs forward_cached() for a sampler-sized step. Nothing is asserted.
TEST(KvCache, DISABLED_KvCacheTimingPrintsOnly) {
  ModelConfig c;
  c.vocab_size = 4096;
  c.hidden_size = 256;
  c.intermediate_size = 688;
  c.num_hidden_layers = 4;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 4;
  LlamaForCausalLM m(c);
  m->reset_parameters(1);
  m->eval();
  LlamaModelHandle h(m);
  torch::NoGradGuard no_grad;
  for (auto [B, Q] : {std::pair<std::int64_t, std::int64_t>{1, 1}, {1, 32}, {4, 32}}) {
    const std::int64_t S = 288;
    auto ids = torch::randint(0, 4096, {B, S}, torch::kLong);
    auto cache = h.forward_caching(ids, torch::Tensor(), torch::Tensor(), nullptr);
    auto pos = torch::arange(128, 128 + Q, torch::kLong).repeat({B, 1});
    auto tok = ids.gather(1, pos);
    auto time = [](const std::function<void()>& f) {
      f();
      const int n = 10;
      const auto t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < n; ++i) f();
      return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                 .count() /
             n;
    };
    const double full = time([&] { h.forward(ids, {}, {}, sdk::AttentionSpec::bidirectional()); });
    const double cached = time([&] { h.forward_cached(*cache, tok, pos); });
    const double caching =
        time([&] { h.forward_caching(ids, torch::Tensor(), torch::Tensor(), nullptr); });
    std::printf(
        "B=%lld S=%lld Q=%lld threads=%d: forward %.2f ms, forward_caching %.2f ms, "
        "forward_cached %.2f ms (%.1fx)\n",
        (long long)B, (long long)S, (long long)Q, at::get_num_threads(), full, caching, cached,
        full / cached);
  }
}

}  // namespace
}  // namespace loom
