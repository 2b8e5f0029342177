#include "model/model_handle.hpp"

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <stdexcept>

#include "errors.hpp"
#include "io/layout_tensor_names.hpp"
#include "io/tensor_io.hpp"
#include "model/fused_cross_entropy.hpp"
#include "model/kv_cache.hpp"

namespace loom {
namespace {

std::uint64_t next_handle_id() {
  static std::atomic<std::uint64_t> next{1};
  return next++;
}

}  // namespace

LlamaModelHandle::LlamaModelHandle(LlamaForCausalLM model)
    : model_(std::move(model)), id_(next_handle_id()) {}

sdk::ModelOutput LlamaModelHandle::output(at::Tensor hidden, bool row_invariant) {
  sdk::ModelOutput out;
  out.hidden = std::move(hidden);
  out.project = [this, row_invariant](const at::Tensor& h) {
    projected_rows_ += h.numel() / std::max<std::int64_t>(1, h.size(-1));
    return model_->project(h, row_invariant);
  };
  return out;
}

sdk::ModelOutput LlamaModelHandle::forward(const at::Tensor& input_ids,
                                           const at::Tensor& position_ids,
                                           const at::Tensor& segment_ids,
                                           const sdk::AttentionSpec& attention) {
  return output(model_->forward(input_ids, position_ids, segment_ids, attention));
}

std::unique_ptr<sdk::KeyValueCache> LlamaModelHandle::forward_caching(const at::Tensor& input_ids,
                                                                      const at::Tensor& position_ids,
                                                                      const at::Tensor& segment_ids,
                                                                      sdk::ModelOutput* out) {
  if (input_ids.dim() != 2)
    throw std::invalid_argument("forward_caching: input_ids must be [B, S], got " +
                                c10::str(input_ids.sizes()));
  auto cache = std::make_unique<LlamaKeyValueCache>(id_, input_ids.size(0), input_ids.size(1),
                                                    position_ids, segment_ids);
  auto hidden = model_->forward_caching(input_ids, position_ids, segment_ids, *cache);
  // Row-invariant logits too: the samplers that batch prompts also read this pass's.
  if (out) *out = output(std::move(hidden), /*row_invariant=*/true);
  return cache;
}

sdk::ModelOutput LlamaModelHandle::forward_cached(sdk::KeyValueCache& cache,
                                                  const at::Tensor& input_ids,
                                                  const at::Tensor& positions) {
  auto* own = dynamic_cast<LlamaKeyValueCache*>(&cache);
  if (!own || own->owner() != id_)
    throw std::invalid_argument("forward_cached: the cache was made by another model handle");
  // Cached passes serve samplers that batch prompts: logits whose rows do not depend on the
  // rows projected with them (as the cached pass's own products).
  return output(model_->forward_cached(*own, input_ids, positions), /*row_invariant=*/true);
}

at::Tensor LlamaModelHandle::cross_entropy(const at::Tensor& hidden, const at::Tensor& targets,
                                           at::Tensor* argmax) {
  projected_rows_ += hidden.size(0);
  return linear_cross_entropy(hidden, model_->output_weight(), targets, argmax);
}

at::Tensor LlamaModelHandle::cross_entropy_excluding(const at::Tensor& hidden,
                                                     const at::Tensor& targets,
                                                     const at::Tensor& exclude_ids,
                                                     at::Tensor* argmax) {
  projected_rows_ += hidden.size(0);
  return linear_cross_entropy(hidden, model_->output_weight(), targets, argmax, exclude_ids);
}

std::vector<std::pair<std::string, at::Tensor>> LlamaModelHandle::named_parameters() {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& kv : model_->named_parameters())
    out.emplace_back(stored_tensor_name(model_->config().model_type, kv.key()), kv.value().detach());
  return out;
}

std::optional<bool> LlamaModelHandle::predicts_next_token() const {
  const std::string& type = model_->config().model_type;
  if (type == "Dream") return true;
  if (type == "llada") return false;
  return std::nullopt;
}

void LlamaModelHandle::save_tensors(const std::string& file,
                                    const std::vector<std::pair<std::string, at::Tensor>>& tensors) {
  namespace fs = std::filesystem;
  // Written under a temporary name and renamed: a reader never sees half a file.
  const fs::path target(file), tmp = file + ".tmp";
  NamedTensors cpu;
  for (const auto& [name, t] : tensors) {
    if (!t.defined()) throw UserError("save_tensors " + file + ": tensor '" + name + "' is undefined");
    cpu.emplace_back(name, t.detach().to(at::kCPU).contiguous());
  }
  try {
    loom::save_tensors(tmp, cpu);
  } catch (const std::invalid_argument& e) {
    fs::remove(tmp);
    throw UserError("save_tensors " + file + ": " + e.what());
  }
  fs::rename(tmp, target);
}

std::map<std::string, at::Tensor> LlamaModelHandle::load_tensors(const std::string& file) {
  if (!std::filesystem::is_regular_file(file)) throw UserError("load_tensors: " + file + " not found");
  return load_all(file);
}

at::Device LlamaModelHandle::device() const {
  return model_->model->embed_tokens->weight.device();
}

}  // namespace loom
