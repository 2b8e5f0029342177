// Reads and writes a Hugging Face config.json for transformers' LlamaConfig, so that loom starts
// from Llama-family checkpoints and its checkpoints load in transformers unchanged.
#pragma once

#include <filesystem>

#include "model/model_config.hpp"

namespace loom {

// `config_json` is the file, or a model folder holding config.json. Keys absent from the file take
// LlamaConfig's defaults, except the shape keys (hidden_size, intermediate_size,
// num_hidden_layers, num_attention_heads, vocab_size), which are required. Throws UserError naming
// the file and the key for anything loom cannot train: another model_type, a head_dim that is
// not hidden_size / num_attention_heads, a rope_type other than default, linear or llama3,
// biases, an activation other than silu.
ModelConfig read_hf_config(const std::filesystem::path& config_json);

// Writes `file` (normally <checkpoint>/config.json) via a temporary file and a rename.
void write_hf_config(const std::filesystem::path& file, const ModelConfig& config);

}  // namespace loom
