// The tokenizer and the model of a run, built from the config: from scratch, from a Hugging
// Face folder (base_model), or from a loom checkpoint (resume, generate, eval). Plugins see
// both through on_model_loaded before anything else uses them.
#pragma once

#include <filesystem>
#include <memory>

#include "config/train_config.hpp"
#include "model/lora_adapters.hpp"
#include "model/model_handle.hpp"
#include "plugins/plugin_set.hpp"
#include "tokenizer/tokenizer.hpp"

namespace loom {

struct ModelBundle {
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<LlamaModelHandle> model;
  torch::Device device = torch::kCPU;
  // The Hugging Face folder the weights came from (empty: built from scratch). Its Python files
  // (the modeling code that config.json's auto_map names, for LLaDA and Dream) are copied into
  // every checkpoint, so that the model's own code loads the checkpoint.
  std::filesystem::path source_dir;
  // adapter = "lora", or a weights folder holding a PEFT adapter: the adapters on the frozen
  // base (null otherwise). Checkpoints then hold the adapter, not the model.
  std::unique_ptr<LoraAdapters> lora;
  std::string base_model;  // the folder the base weights came from ("" from scratch)
  bool cuda() const { return device.is_cuda(); }
};

torch::Device resolve_device(const std::string& device);

// `weights_dir` empty: scratch or base_model as the config says; otherwise a folder holding
// config.json, model.safetensors and a tokenizer (a checkpoint or a Hugging Face model), or a
// PEFT adapter folder (adapter_config.json, adapter_model.safetensors): the base it names
// (base_model when the config sets one) with the adapter loaded onto it.
// Refuses, before allocating, a model this machine cannot hold (for `training`: with its
// gradients, optimizer state and activations; see train/memory_estimate.hpp).
ModelBundle build_model_bundle(const TrainConfig& config, const std::filesystem::path& weights_dir,
                               PluginSet& plugins, bool training = true);

// The tensors to save, under the names of the model's layout (io/layout_tensor_names.hpp; the
// output matrix is omitted when tied, as transformers does).
std::vector<std::pair<std::string, torch::Tensor>> named_weights(LlamaForCausalLM& model);

}  // namespace loom
