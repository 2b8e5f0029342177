// Golden values from tests/model/llama_reference.py (an independent float64 PyTorch forward
// written from transformers' Llama formulas), regenerate with:
//   /usr/bin/python3 tests/model/llama_reference.py
#include "model/llama_model.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

namespace loom {
namespace {

const std::vector<double> kCausalPacked_r0p4 = {0.1292352254, -0.5987841878, -1.248686187, -1.735684527, -1.99624538, -1.996375965, -1.736059246, -1.249256155, -0.5994750457, 0.1285136066, 0.8397363676, 1.441407082, 1.855031759, 2.026648904, 1.933869336, 1.588797082, 1.036450284, 0.3488881328, -0.3841899812, -1.067146652, -1.610883319, -1.944464071, -2.024369948, -1.840176424, -1.415913396, -0.8069302377, -0.09267492242, 0.6336707677, 1.277347739, 1.754381863, 2.002539245, 1.989445262, 1.716808154, 1.220196172, 0.5643973392, -0.1650327977, -0.8729327478, -1.46694985, -1.869588604, -2.02832074};
const std::vector<double> kCausalPacked_r1p7 = {-0.4662475442, -0.9775152314, -1.361256235, -1.567407684, -1.569075052, -1.366040814, -0.9847928255, -0.4750687179, 0.09663287751, 0.655727743, 1.129276336, 1.455499484, 1.591838099, 1.52050544, 1.250807568, 0.8179292813, 0.2783439011, -0.2975542378, -0.8346334366, -1.262826317, -1.526270816, -1.590597951, -1.447415601, -1.115403343, -0.6378755105, -0.07713040879, 0.4936771298, 1.000079526, 1.3760115, 1.572428947, 1.563707239, 1.350984209, 0.962011715, 0.4475351262, -0.1253269166, -0.6818388039, -1.149397968, -1.467006618, -1.593229515, -1.511599613};
const std::vector<double> kCausalPacked_rowsums = {-3.712865956, 3.293027629, -4.060281716, 3.25975839, -6.262776061, -6.323669962, 5.36708368, -8.845713915, -5.546428895, -8.467521882, -4.439656446, -4.31831415};
const std::vector<double> kBidirectionalPacked_r0p4 = {-0.5268043154, -1.269991672, -1.847495854, -2.183975639, -2.235533857, -1.995444221, -1.495028836, -0.799571918, 0.0001971909182, 0.7999405743, 1.495323672, 1.995626772, 2.235580308, 2.183879929, 1.84727047, 1.269666018, 0.5264208756, -0.2855011593, -1.060176699, -1.696541536, -2.111575483, -2.251133191, -2.097007955, -1.669306961, -1.023828101, -0.2447805777, 0.5662010316, 1.303316027, 1.870400351, 2.193472156, 2.230383478, 1.976318865, 1.464423598, 0.7614795582, -0.04080714131, -0.8377701392, -1.525437605, -2.014096407, -2.239996096, -2.173665786};
const std::vector<double> kBidirectionalPacked_r1p7 = {-1.154198749, -1.552895623, -1.749001659, -1.716932855, -1.460872909, -1.014227413, -0.4352657595, 0.2004806854, 0.8100724105, 1.31398205, 1.646469528, 1.764158513, 1.651695294, 1.323751827, 0.8231116341, 0.2150882575, -0.4209955434, -1.002156246, -1.452575596, -1.713491865, -1.750865902, -1.559821891, -1.16528344, -0.6187220566, 0.008557836297, 0.6347212734, 1.178078943, 1.567744377, 1.752881804, 1.709338188, 1.442794229, 0.9880232665, 0.404354741, -0.2320659233, -0.8382112562, -1.335003508, -1.657631139, -1.764004132, -1.640245061, -1.302499541};
const std::vector<double> kBidirectionalPacked_rowsums = {-4.39906842, 2.574211823, -4.929622323, -6.484377083, -8.905570275, -8.386674944, 2.404037774, -4.913085744, -5.142842956, -5.631325744, -6.366625983, -6.038935205};
const std::vector<double> kCausalLlama3Rope_r0p4 = {0.1276558431, -0.5802727594, -1.21249895, -1.686542469, -1.940559577, -1.94141119, -1.688986206, -1.216216, -0.584778197, 0.1229497978, 0.8146377561, 1.400048034, 1.802807978, 1.970373507, 1.880884014, 1.546014302, 1.00945149, 0.3411955889, -0.3715727054, -1.035865607, -1.565019431, -1.890000746, -1.968412473, -1.790025014, -1.378110806, -0.7864081966, -0.09211073601, 0.6142034956, 1.24038871, 1.704752754, 1.946714671, 1.9347081, 1.670299417, 1.187983392, 0.550682997, -0.1584595283, -0.8469294159, -1.424908851, -1.81699461, -1.972035164};
const std::vector<double> kCausalLlama3Rope_r1p7 = {1.081441251, 0.4588363967, -0.2236282758, -0.8769183928, -1.415805694, -1.769986917, -1.893255562, -1.769529995, -1.414951461, -0.8757782909, -0.2223510433, 0.4600841321, 1.08249671, 1.563686714, 1.840878076, 1.877908395, 1.669946695, 1.244123669, 0.65599221, -0.01772002443, -0.6891205036, -1.270618289, -1.686351151, -1.882082562, -1.832277391, -1.543433224, -1.053232685, -0.4256273589, 0.2575053325, 0.9070438659, 1.438249413, 1.781820873, 1.892935896, 1.757098412, 1.392029785, 0.845356885, 0.1883986855, -0.4931380155, -1.110339907, -1.582686802};
const std::vector<double> kCausalLlama3Rope_rowsums = {-3.712865956, 3.732129025, -4.623323722, 3.25975839, -6.082366788, -6.469237949, 5.36708368, -9.006604952, -9.000976297, -8.056079457, -8.186693736, -4.495896181};

ModelConfig reference_config() {
  ModelConfig c;
  c.vocab_size = 40;
  c.hidden_size = 16;
  c.intermediate_size = 24;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.max_position_embeddings = 64;
  c.rope_theta = 10000.0;
  c.rms_norm_eps = 1e-5;
  return c;
}

// The reference script's deterministic weights: parameter j (in sorted name order) holds
// sin(0.37 i + 1.3 j) / 4, norms 1 + that / 2.
void set_reference_weights(LlamaForCausalLM& m) {
  torch::NoGradGuard no_grad;
  std::vector<std::string> names;
  for (const auto& kv : m->named_parameters()) names.push_back(kv.key());
  std::sort(names.begin(), names.end());
  auto params = m->named_parameters();
  for (std::size_t j = 0; j < names.size(); ++j) {
    auto& p = params[names[j]];
    auto i = torch::arange(p.numel(), torch::kDouble);
    auto w = (torch::sin(0.37 * i + 1.3 * double(j)) * 0.25).reshape(p.sizes());
    if (names[j].find("norm") != std::string::npos) w = 1.0 + 0.5 * w;
    p.copy_(w.to(torch::kFloat));
  }
}

struct Inputs {
  torch::Tensor ids = torch::tensor({3, 7, 1, 9, 22, 5, 0, 0, 11, 2, 2, 38, 4, 17, 25, 6}, torch::kLong).view({2, 8});
  torch::Tensor seg = torch::tensor({1, 1, 1, 2, 2, 2, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1}, torch::kLong).view({2, 8});
  torch::Tensor pos = torch::tensor({0, 1, 2, 0, 1, 2, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7}, torch::kLong).view({2, 8});
};

void expect_close(const torch::Tensor& got, const std::vector<double>& want, double tol) {
  auto g = got.to(torch::kDouble).contiguous();
  ASSERT_EQ(g.numel(), std::int64_t(want.size()));
  for (std::int64_t i = 0; i < g.numel(); ++i)
    EXPECT_NEAR(g.data_ptr<double>()[i], want[std::size_t(i)], tol) << "at " << i;
}

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
