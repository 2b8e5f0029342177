#include "train/model_bundle.hpp"

#include <dlfcn.h>

#include <algorithm>
#include <optional>
#include <torch/version.h>

#include "errors.hpp"
#include "train/memory_estimate.hpp"
#include "io/hf_config.hpp"
#include "io/layout_tensor_names.hpp"
#include "io/tensor_io.hpp"
#include "tokenizer/byte_tokenizer.hpp"
#include "tokenizer/tokenizer_loader.hpp"

namespace loom {
namespace fs = std::filesystem;

namespace {

// Why CUDA cannot be used: a CPU-only libtorch (libtorch_cuda is not part of this process), or
// no device visible to it.
[[noreturn]] void no_cuda(const std::string& asked) {
  void* lib = dlopen("libtorch_cuda.so", RTLD_LAZY | RTLD_NOLOAD);
  const bool cuda_build = lib != nullptr;
  if (lib) dlclose(lib);
  if (!cuda_build)
    throw UserError("device = \"" + asked + "\" but this libtorch (" TORCH_VERSION
                    ") was built without CUDA: build loom against a CUDA libtorch (docs/gpu.md)");
  throw UserError("device = \"" + asked + "\" but no CUDA device is visible (see nvidia-smi and "
                  "CUDA_VISIBLE_DEVICES)");
}

}  // namespace

torch::Device resolve_device(const std::string& device) {
  if (device.rfind("cuda:", 0) == 0) {  // set by the trainer for data-parallel ranks
    if (!torch::cuda::is_available()) no_cuda(device);
    const torch::Device d(device);
    const auto visible = std::int64_t(torch::cuda::device_count());
    if (d.index() >= visible)
      throw UserError("device " + device + ": one GPU per local rank, but only " +
                      std::to_string(visible) + " visible; use --nproc " + std::to_string(visible) +
                      " or fewer");
    return d;
  }
  if (device == "cuda") {
    if (!torch::cuda::is_available()) no_cuda(device);
    return torch::kCUDA;
  }
  if (device == "auto" && torch::cuda::is_available()) return torch::kCUDA;
  return torch::kCPU;
}

std::vector<std::pair<std::string, torch::Tensor>> named_weights(LlamaForCausalLM& model) {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  const std::string& layout = model->config().model_type;
  for (const auto& kv : model->named_parameters())
    out.emplace_back(stored_tensor_name(layout, kv.key()), kv.value());
  return out;
}

ModelBundle build_model_bundle(const TrainConfig& cfg, const fs::path& weights_dir,
                               PluginSet& plugins, bool training) {
  ModelBundle b;
  b.device = resolve_device(cfg.device);
  // An adapter folder: its base, and the adapter's own settings (PEFT's or a loom checkpoint's).
  const bool adapter_dir = !weights_dir.empty() && is_adapter_folder(weights_dir);
  LoraConfig lora = cfg.lora;
  std::string lora_where = cfg.source.string();
  fs::path hf_dir = !weights_dir.empty() ? weights_dir : fs::path(cfg.base_model);
  if (adapter_dir) {
    const AdapterFolderConfig adapter = read_adapter_config(weights_dir);
    lora = adapter.lora;
    lora_where = (weights_dir / "adapter_config.json").string();
    hf_dir = !cfg.base_model.empty() ? fs::path(cfg.base_model) : fs::path(adapter.base_model);
    if (hf_dir.empty())
      throw UserError(lora_where + ": base_model_name_or_path is empty and the config sets no "
                      "base_model: which model is this adapter for?");
  }
  b.source_dir = hf_dir;
  // Absolute, so an adapter's adapter_config.json names its base from anywhere.
  if (!hf_dir.empty()) b.base_model = fs::absolute(hf_dir).lexically_normal().string();

  // 1. tokenizer
  std::error_code ec;
  if (!weights_dir.empty() && (!adapter_dir || fs::exists(weights_dir / "tokenizer.json", ec)))
    b.tokenizer = load_tokenizer(weights_dir);
  else if (adapter_dir) b.tokenizer = load_tokenizer(hf_dir);
  else if (!cfg.tokenizer.path.empty()) b.tokenizer = load_tokenizer(cfg.tokenizer.path);
  else if (!cfg.base_model.empty()) b.tokenizer = load_tokenizer(cfg.base_model);
  else b.tokenizer = std::make_unique<ByteTokenizer>();
  for (const auto& [role, token] : cfg.special_tokens) b.tokenizer->add_special_token(token);

  // 2. model shape
  ModelConfig mc;
  if (!hf_dir.empty()) {
    if (!fs::is_directory(hf_dir))
      throw UserError("base_model " + hf_dir.string() + ": not a folder");
    mc = read_hf_config(hf_dir / "config.json");
  } else {
    mc = cfg.model;
    if (mc.vocab_size == 0) mc.vocab_size = b.tokenizer->vocab_size();
    if (auto bos = b.tokenizer->bos_id()) mc.bos_token_id = *bos;
    if (auto eos = b.tokenizer->eos_id()) mc.eos_token_id = *eos;
    if (auto pad = b.tokenizer->pad_id()) mc.pad_token_id = *pad;
  }
  // An adapter's saved tokenizer may hold tokens a plugin added to the base at training (a
  // mask token); the vocabulary grows to it below, as it did then.
  if (mc.vocab_size < b.tokenizer->vocab_size() && !adapter_dir)
    throw UserError("model.vocab_size (" + std::to_string(mc.vocab_size) +
                    ") is smaller than the tokenizer's vocabulary (" +
                    std::to_string(b.tokenizer->vocab_size()) + ")");
  if (cfg.sequence_len > mc.max_position_embeddings)
    throw UserError(cfg.source.string() + ": sequence_len (" + std::to_string(cfg.sequence_len) +
                    ") exceeds the model's max_position_embeddings (" +
                    std::to_string(mc.max_position_embeddings) + ")");

  // 3. weights, once the machine can hold them (and, training, what training adds)
  check_memory(mc, cfg, training, b.cuda());
  // LoRA on a bf16 checkpoint with bf16 autocast: the frozen matrices stay in the checkpoint's
  // bf16 (half the memory of fp32; autocast computes in bf16 anyway). They are made in bf16 from
  // the start, so the peak is not an fp32 copy of the model either; the norms and what trains
  // (adapters, modules_to_save) are fp32.
  // Training only: generate, serve and export run without autocast, on fp32 weights as for any
  // other checkpoint.
  const bool frozen_bf16 = training && lora.enabled && cfg.bf16 && mc.torch_dtype == "bfloat16";
  const caffe2::TypeMeta default_dtype = c10::get_default_dtype();
  if (frozen_bf16) c10::set_default_dtype(caffe2::TypeMeta::Make<at::BFloat16>());
  std::optional<LlamaForCausalLM> made;
  try {
    made.emplace(mc);
  } catch (...) {
    c10::set_default_dtype(default_dtype);
    throw;
  }
  c10::set_default_dtype(default_dtype);
  LlamaForCausalLM model = *made;
  if (frozen_bf16) {
    torch::NoGradGuard no_grad;
    for (auto& kv : model->named_parameters()) {
      const std::string stored = stored_tensor_name(mc.model_type, kv.key());
      const std::string module = stored.substr(0, stored.size() - 7);  // without ".weight"
      const std::string short_name = module.substr(module.rfind('.') + 1);
      const bool saved = kv.key().rfind("model.layers.", 0) != 0 &&
                         std::find(lora.modules_to_save.begin(), lora.modules_to_save.end(),
                                   short_name) != lora.modules_to_save.end();
      if (kv.value().dim() < 2 || saved) kv.value().set_data(kv.value().to(torch::kFloat));
    }
  }
  if (!hf_dir.empty()) {
    LoadOptions opt;
    // A tied model has no output matrix of its own; an exporter may have written one anyway.
    if (mc.tie_word_embeddings) {
      opt.allow_missing.insert(stored_tensor_name(mc.model_type, "lm_head.weight"));
      if (mc.model_type != "llama")
        opt.allow_unexpected.insert(stored_tensor_name(mc.model_type, "lm_head.weight"));
    }
    load_into(hf_dir, named_weights(model), opt);
  } else {
    model->reset_parameters(cfg.seed);
  }
  // The rows added at training, made as resize_vocab made them then (the mean of the base's
  // rows); trained ones come from the adapter's modules_to_save below.
  if (adapter_dir && b.tokenizer->vocab_size() > mc.vocab_size) model->resize_vocab(b.tokenizer->vocab_size());
  model->set_bf16_matrices(frozen_bf16);
  model->set_gradient_checkpointing(cfg.gradient_checkpointing);
  model->set_attention_kernel(attention_kernel_from_name(cfg.attn_implementation));
  model->resolved_attention_kernel(b.device);  // refuses what this build or device cannot run
  model->to(b.device);
  b.model = std::make_unique<LlamaModelHandle>(model);
  // Adapters on the base (target names checked against the layout before anything runs).
  if (lora.enabled) b.lora = std::make_unique<LoraAdapters>(model, lora, lora_where, cfg.seed);

  // 4. plugins may add tokens (and grow the vocabulary) now.
  plugins.on_model_loaded(*b.model, *b.tokenizer);
  // 5. a trained adapter, once the vocabulary has the size it was trained with.
  if (adapter_dir) b.lora->load(weights_dir);
  return b;
}

}  // namespace loom
