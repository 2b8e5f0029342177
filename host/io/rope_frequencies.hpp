// RoPE inverse frequencies theta^(-2i/d), i = 0 .. d/2-1, with the model's rope_scaling applied
// the way transformers' rope initialisation functions do ("linear", "llama3").
#pragma once

#include <vector>

#include "model/model_config.hpp"

namespace loom {

// head_dim/2 values, computed in double (transformers computes in float32; cast as needed).
// Throws std::invalid_argument for an odd or non-positive head_dim or an unknown scaling kind.
std::vector<double> rope_inverse_frequencies(const ModelConfig& config);

}  // namespace loom
