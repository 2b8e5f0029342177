// Shape and numerics of a Llama-family model, with LlamaConfig's field names, and what the other
// Hugging Face layouts loom reads (Qwen2, Qwen3, Dream, LLaDA; docs/architecture.md, "Model
// layouts") add to it.
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
  // Qwen3 sets head_dim in config.json, and it may differ from hidden_size / heads; 0 = that.
  std::int64_t explicit_head_dim = 0;
  std::int64_t head_dim() const {
    return explicit_head_dim > 0 ? explicit_head_dim : hidden_size / num_attention_heads;
  }
  double rope_theta = 10000.0;
  double rms_norm_eps = 1e-5;
  bool tie_word_embeddings = false;
  RopeScaling rope_scaling;
  std::string torch_dtype = "float32";  // float32 | float16 | bfloat16 (storage dtype)
  std::optional<std::int64_t> bos_token_id;
  std::optional<std::int64_t> eos_token_id;
  std::optional<std::int64_t> pad_token_id;
  double initializer_range = 0.02;

  // The layout: config.json's model_type as spelled there (llama | qwen2 | qwen3 | Dream |
  // llada). It fixes the tensor names (io/layout_tensor_names.hpp) and the config keys written.
  std::string model_type = "llama";
  bool attention_qkv_bias = false;     // biases on q/k/v_proj (Qwen2, Dream; opt-in elsewhere)
  bool attention_output_bias = false;  // a bias on o_proj (Qwen3's attention_bias)
  bool qk_norm = false;                // Qwen3: RMSNorm over each head of q and k, before RoPE
  // The mask token the checkpoint was trained with (LLaDA, Dream), if the layout has one.
  std::optional<std::int64_t> mask_token_id;
  // The config.json text a non-Llama layout was read from: written back with only the keys loom
  // changes (vocabulary size, dtype, token ids), so the model's own Python code loads it.
  std::string source_config_json;
};

}  // namespace loom
