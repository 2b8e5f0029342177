// Shape and numerics of a Llama-family model, with LlamaConfig's field names.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace loom {

// Llama 3.1/3.2 frequency-dependent RoPE scaling ("rope_type": "llama3"). kind "none" means
// plain RoPE; "linear" divides positions by factor.
struct RopeScaling {
  std::string kind = "none";  // none | linear | llama3
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  std::int64_t original_max_position_embeddings = 8192;
};

struct ModelConfig {
  std::int64_t vocab_size = 0;
  std::int64_t hidden_size = 256;
  std::int64_t intermediate_size = 688;
  std::int64_t num_hidden_layers = 4;
  std::int64_t num_attention_heads = 4;
  std::int64_t num_key_value_heads = 4;
  std::int64_t max_position_embeddings = 2048;
  std::int64_t head_dim() const { return hidden_size / num_attention_heads; }
  double rope_theta = 10000.0;
  double rms_norm_eps = 1e-5;
  bool tie_word_embeddings = false;
  RopeScaling rope_scaling;
  std::string torch_dtype = "float32";  // float32 | float16 | bfloat16 (storage dtype)
  std::optional<std::int64_t> bos_token_id;
  std::optional<std::int64_t> eos_token_id;
  std::optional<std::int64_t> pad_token_id;
  double initializer_range = 0.02;
};

}  // namespace loom
