// LoRA adapters on a LlamaForCausalLM, in PEFT's conventions: on each targeted linear,
// y = W x (+ b) + (lora_alpha / r) * B(A(dropout(x))), A [r, in] drawn as PEFT draws it
// (kaiming-uniform with a = sqrt(5), i.e. U(-1/sqrt(in), 1/sqrt(in))), B [out, r] zeros, so a
// fresh adapter changes nothing. The base is frozen: only the adapters and the
// modules_to_save (embeddings / output head) require gradients.
//
// Names follow the loaded layout (io/layout_tensor_names.hpp): target modules are the
// layout's own linear names (Llama/Qwen: q_proj ... down_proj; LLaDA: q_proj k_proj v_proj
// attn_out ff_proj up_proj ff_out), and the tensors are saved under PEFT's names
// (base_model.model.<stored module>.lora_A.weight), so Python's PEFT loads them on the base.
#pragma once

#include <torch/torch.h>

#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "model/llama_model.hpp"
#include "model/lora_config.hpp"

namespace loom {

// An adapter folder's adapter_config.json: the LoRA settings and the base it was trained on.
struct AdapterFolderConfig {
  LoraConfig lora;
  std::string base_model;  // base_model_name_or_path ("" if not given)
};

class LoraAdapters {
 public:
  // Attaches adapters to `model` (which must outlive this) and freezes its base. `where` names
  // the config for errors (a target module the layout does not have lists those it has).
  LoraAdapters(LlamaForCausalLM model, const LoraConfig& config, const std::string& where,
               std::uint64_t seed);
  ~LoraAdapters();
  LoraAdapters(const LoraAdapters&) = delete;
  LoraAdapters& operator=(const LoraAdapters&) = delete;

  // What trains, under PEFT's names: each adapter's lora_A and lora_B, then the
  // modules_to_save weights (base_model.model.<stored name>).
  std::vector<std::pair<std::string, torch::Tensor>> trainable() const;
  std::vector<torch::Tensor> parameters() const;
  // The target modules as resolved ("all-linear" expanded), in the layout's names.
  const std::vector<std::string>& target_modules() const { return targets_; }
  const LoraConfig& config() const { return config_; }

  // adapter_model.safetensors (fp32) and adapter_config.json into `dir` (durably).
  void save(const std::filesystem::path& dir, const std::string& base_model) const;
  // Reads `dir`/adapter_model.safetensors into the adapters; a tensor missing, unexpected or
  // of another shape (an adapter of another base) is one UserError naming the file and the
  // tensors, and nothing is changed.
  void load(const std::filesystem::path& dir);
  // Folds every adapter into its base weight (W += scaling * B A, in the weight's dtype) and
  // removes the adapters from the model: it is then a plain model with the merged weights.
  void merge();

  // The linear module names of a layout, in its own naming scheme, in Llama's order.
  static std::vector<std::string> linear_module_names(const std::string& model_type);

 private:
  struct Slot {
    std::string peft_prefix;  // base_model.model.<stored module name>
    LoraLinear* adapter;      // in the layer's LoraLinears
    torch::Tensor base_weight;
  };
  LlamaForCausalLM model_;
  LoraConfig config_;
  std::vector<std::string> targets_;
  std::vector<Slot> slots_;
  std::vector<std::pair<std::string, torch::Tensor>> saved_modules_;  // modules_to_save
};

// Reads `dir`/adapter_config.json (peft_type LORA); UserError naming the file and key otherwise.
AdapterFolderConfig read_adapter_config(const std::filesystem::path& dir);
// Whether `dir` holds a PEFT adapter (adapter_config.json).
bool is_adapter_folder(const std::filesystem::path& dir);

}  // namespace loom
