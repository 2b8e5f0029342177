// Golden values from tests/model/llama_reference.py (an independent float64 PyTorch forward
// written from transformers' Llama formulas), regenerate with:
//   /usr/bin/python3 tests/model/llama_reference.py > tests/model/llama_reference_golden.hpp
#include "model/llama_model.hpp"
#include "model/llama_reference_golden.hpp"
#include "model/reference_model.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

namespace loom {
namespace {

using namespace golden;
using namespace reference;

void check(const ModelConfig& c, sdk::AttentionSpec spec, const std::vector<double>& r0p4,
           const std::vector<double>& r1p7, const std::vector<double>& rowsums) {
  LlamaForCausalLM m(c);
  set_reference_weights(m);
  Inputs in;
  torch::NoGradGuard no_grad;
  auto logits = m->project(m->forward(in.ids, in.pos, in.seg, spec));  // [2, 8, V]
  expect_close(logits[0][4], r0p4, 2e-4);
  expect_close(logits[1][7], r1p7, 2e-4);
  expect_close(logits.slice(1, 0, 6).sum(-1), rowsums, 2e-3);
  EXPECT_FALSE(logits.isnan().any().item<bool>()) << "padding rows must not produce NaN";
}

TEST(LlamaModel, CausalPackedSegmentsWithGqaMatchReference) {
  check(reference_config(), sdk::AttentionSpec::causal(), kCausalPacked_r0p4, kCausalPacked_r1p7,
        kCausalPacked_rowsums);
}

TEST(LlamaModel, BidirectionalPackedSegmentsMatchReference) {
  check(reference_config(), sdk::AttentionSpec::bidirectional(), kBidirectionalPacked_r0p4,
        kBidirectionalPacked_r1p7, kBidirectionalPacked_rowsums);
}

TEST(LlamaModel, Llama3RopeScalingMatchesReference) {
  auto c = reference_config();
  c.rope_scaling.kind = "llama3";
  c.rope_scaling.factor = 4.0;
  c.rope_scaling.low_freq_factor = 1.0;
  c.rope_scaling.high_freq_factor = 4.0;
  c.rope_scaling.original_max_position_embeddings = 8;
  check(c, sdk::AttentionSpec::causal(), kCausalLlama3Rope_r0p4, kCausalLlama3Rope_r1p7,
        kCausalLlama3Rope_rowsums);
}

TEST(LlamaModel, ParameterNamesAreTransformersNames) {
  auto c = reference_config();
  LlamaForCausalLM m(c);
  auto p = m->named_parameters();
  for (const char* n : {"model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight",
                        "model.layers.1.self_attn.k_proj.weight", "model.layers.1.mlp.down_proj.weight",
                        "model.layers.0.input_layernorm.weight",
                        "model.layers.0.post_attention_layernorm.weight", "model.norm.weight",
                        "lm_head.weight"})
    EXPECT_TRUE(p.contains(n)) << n;
  EXPECT_EQ(p["model.layers.0.self_attn.k_proj.weight"].sizes(), (std::vector<int64_t>{8, 16}));
  c.tie_word_embeddings = true;
  LlamaForCausalLM tied(c);
  EXPECT_FALSE(tied->named_parameters().contains("lm_head.weight"));
}

TEST(LlamaModel, AttentionMaskHonoursSegmentsPaddingAndCausality) {
  auto seg = torch::tensor({1, 1, 2, 2, 0}, torch::kLong).view({1, 5});
  bool causal = false;
  auto m = build_attention_mask(seg, sdk::AttentionSpec::bidirectional(), 5, &causal)[0][0];
  // Hand-written: row i lists which keys token i may see.
  const int want[5][5] = {{1, 1, 0, 0, 0}, {1, 1, 0, 0, 0}, {0, 0, 1, 1, 0}, {0, 0, 1, 1, 0}, {0, 0, 0, 0, 1}};
  for (int i = 0; i < 5; ++i)
    for (int j = 0; j < 5; ++j) EXPECT_EQ(m[i][j].item<bool>(), bool(want[i][j])) << i << "," << j;
  auto c = build_attention_mask(seg, sdk::AttentionSpec::causal(), 5, &causal)[0][0];
  const int want_c[5][5] = {{1, 0, 0, 0, 0}, {1, 1, 0, 0, 0}, {0, 0, 1, 0, 0}, {0, 0, 1, 1, 0}, {0, 0, 0, 0, 1}};
  for (int i = 0; i < 5; ++i)
    for (int j = 0; j < 5; ++j) EXPECT_EQ(c[i][j].item<bool>(), bool(want_c[i][j])) << i << "," << j;
  // One segment, no padding: no mask tensor at all (the fast path).
  EXPECT_FALSE(build_attention_mask(torch::ones({2, 4}, torch::kLong), sdk::AttentionSpec::bidirectional(), 4, &causal).defined());
}

TEST(LlamaModel, GradientCheckpointingGivesTheSameGradients) {
  auto c = reference_config();
  Inputs in;
  // With packed segments (an attention mask), with one segment per row (no mask at all), and
  // with a frozen embedding (the layers' input then needs no gradient).
  for (int variant = 0; variant < 3; ++variant) {
    const bool packed = variant == 0, frozen = variant == 2;
    std::vector<torch::Tensor> grads[2];
    for (int ck = 0; ck < 2; ++ck) {
      LlamaForCausalLM m(c);
      set_reference_weights(m);
      m->set_gradient_checkpointing(ck == 1);
      m->train();
      if (frozen) m->model->embed_tokens->weight.requires_grad_(false);
      auto seg = packed ? in.seg : torch::Tensor();
      auto pos = packed ? in.pos : torch::Tensor();
      auto loss = m->project(m->forward(in.ids, pos, seg, sdk::AttentionSpec::causal())).pow(2).mean();
      loss.backward();
      for (auto& p : m->parameters())
        grads[ck].push_back(p.grad().defined() ? p.grad().clone() : torch::zeros_like(p));
    }
    for (std::size_t i = 0; i < grads[0].size(); ++i)
      EXPECT_TRUE(torch::allclose(grads[0][i], grads[1][i], 1e-5, 1e-6))
          << "parameter " << i << " variant " << variant;
    if (frozen) EXPECT_GT(grads[1][1].abs().sum().item<double>(), 0) << "the layers still learn";
  }
}

TEST(LlamaModel, ResizeVocabKeepsRowsAndAddsTheMean) {
  auto c = reference_config();
  LlamaForCausalLM m(c);
  set_reference_weights(m);
  auto before = m->model->embed_tokens->weight.clone();
  m->resize_vocab(43);
  auto after = m->model->embed_tokens->weight;
  ASSERT_EQ(after.size(0), 43);
  EXPECT_TRUE(torch::equal(after.slice(0, 0, 40), before));
  EXPECT_TRUE(torch::allclose(after[42], before.mean(0)));
  EXPECT_EQ(m->lm_head->weight.size(0), 43);
  EXPECT_EQ(m->config().vocab_size, 43);
}

}  // namespace
}  // namespace loom
