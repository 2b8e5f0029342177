// The run's configuration as plain, validated structs. Built once by load_train_config();
// every other component receives these and never looks at TOML.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "loom/sdk/config.hpp"
#include "model/lora_config.hpp"
#include "model/model_config.hpp"

namespace loom {

struct DatasetConfig {
  std::string path;
  std::string type = "completion";  // completion | alpaca | prompt_response
  std::string field = "text";       // completion: the JSON field holding the text
  std::string prompt_field = "prompt";      // prompt_response
  std::string response_field = "response";  // prompt_response
};

struct TokenizerConfig {
  std::string path;  // tokenizer.json or a folder holding one; empty: base_model's, else bytes
};

struct TrainConfig {
  std::filesystem::path source;  // the config file ("<embedded>" for the built-in default)

  std::string base_model;  // Hugging Face model folder; empty = train from scratch
  std::string output_dir = "outputs/run";
  std::uint64_t seed = 42;
  std::vector<std::string> plugins;

  std::int64_t sequence_len = 256;
  bool sample_packing = true;
  double val_set_size = 0.0;  // < 1: share of documents; >= 1: number of documents
  std::int64_t micro_batch_size = 8;
  std::int64_t gradient_accumulation_steps = 1;

  double learning_rate = 3e-4;
  std::string lr_scheduler = "cosine";  // cosine | linear | constant
  std::int64_t warmup_steps = -1;       // -1: use warmup_ratio
  double warmup_ratio = 0.0;
  std::int64_t max_steps = -1;  // -1: use num_epochs
  double num_epochs = 1.0;
  std::string optimizer = "adamw";
  double weight_decay = 0.0;
  double adam_beta1 = 0.9;
  double adam_beta2 = 0.999;
  double adam_epsilon = 1e-8;
  double max_grad_norm = 1.0;  // 0 disables clipping
  bool bf16 = false;
  bool gradient_checkpointing = false;
  // How attention is computed (model/llama_model.hpp AttentionKernel): auto | sdpa | fused_cpu |
  // eager. auto: SDPA on libtorch 2.x, the fused CPU kernel on 1.13's CPU, eager otherwise.
  std::string attn_implementation = "auto";

  std::int64_t logging_steps = 1;
  // Where logged values go besides metrics.jsonl (transformers' report_to): "tensorboard"
  // writes event files under <output_dir>/runs/. Validated: only "tensorboard" and "none".
  std::vector<std::string> report_to;
  std::int64_t eval_steps = 0;  // 0: evaluate only at the end (when there is an eval split)
  std::int64_t eval_max_batches = 0;  // 0: the whole eval split
  std::int64_t save_steps = 0;  // 0: save only at the end
  std::int64_t save_total_limit = 0;  // 0: keep every checkpoint

  // bos_token, eos_token, pad_token, and extra tokens to add: name -> token text.
  std::map<std::string, std::string> special_tokens;

  ModelConfig model;  // used when base_model is empty
  LoraConfig lora;    // adapter = "lora": the base frozen, adapters trained (docs/lora.md)
  TokenizerConfig tokenizer;
  std::vector<DatasetConfig> datasets;

  int threads = 0;  // 0: all cores (divided among the ranks on this machine)
  std::string device = "auto";  // auto | cpu | cuda

  // Data-parallel runs (several ranks; see docs/distributed.md).
  std::string distributed_backend = "auto";  // auto | gloo | nccl (auto: nccl on CUDA, if built)
  double distributed_timeout_s = 1800;  // a rank waiting longer than this for another gives up

  // Plugin tables ([diffusion], ...) as given; validated against each plugin's schema once
  // the plugins are loaded (validate_plugin_section).
  std::map<std::string, std::map<std::string, sdk::ConfigValue>> plugin_tables;
  // Where each of those keys was given ("file:line:column"), for the validation's messages.
  std::map<std::string, std::map<std::string, std::string>> plugin_key_sources;
  // The resolved TOML text, written into every checkpoint.
  std::string resolved_toml;
};

}  // namespace loom
