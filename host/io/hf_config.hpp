// Reads and writes a Hugging Face config.json -- transformers' LlamaConfig, Qwen2Config,
// Qwen3Config, Dream's and LLaDA's configs -- so that loom starts from these checkpoints and its
// checkpoints load in transformers (or the model's own code) unchanged.
#pragma once

#include <filesystem>

#include "model/model_config.hpp"

namespace loom {

// `config_json` is the file, or a model folder holding config.json. model_type chooses the layout
// (llama, qwen2, qwen3, Dream, llada). Keys absent from the file take the layout's config class
// defaults, except the shape keys (hidden_size, intermediate_size, num_hidden_layers,
// num_attention_heads, vocab_size; LLaDA: d_model, n_layers, n_heads, vocab_size), which are
// required. Throws UserError naming the file and the key for anything loom cannot train:
// another model_type (the message lists the supported ones), a head_dim that does not fit, a
// rope_type other than default, linear or llama3, biases the layout does not have, an
// activation other than silu, sliding-window attention, a LLaDA block other than "llama".
ModelConfig read_hf_config(const std::filesystem::path& config_json);

// Writes `file` (normally <checkpoint>/config.json) via a temporary file and a rename. A Llama
// config is written whole; another layout's is the config it was read from
// (ModelConfig::source_config_json) with the vocabulary size, dtype and token ids set again.
void write_hf_config(const std::filesystem::path& file, const ModelConfig& config);

}  // namespace loom
