// The float64 reference's model (tests/model/llama_reference.py): its config, its
// deterministic weights and its inputs, shared by the model tests.
#pragma once

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <string>
#include <vector>

#include "model/llama_model.hpp"

namespace loom::reference {

inline ModelConfig reference_config() {
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
inline void set_reference_weights(LlamaForCausalLM& m) {
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

inline void expect_close(const torch::Tensor& got, const std::vector<double>& want, double tol) {
  auto g = got.to(torch::kDouble).contiguous();
  ASSERT_EQ(g.numel(), std::int64_t(want.size()));
  for (std::int64_t i = 0; i < g.numel(); ++i)
    EXPECT_NEAR(g.data_ptr<double>()[i], want[std::size_t(i)], tol) << "at " << i;
}

}  // namespace loom::reference
