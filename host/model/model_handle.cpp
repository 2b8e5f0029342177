#include "model/model_handle.hpp"

#include <algorithm>

#include "model/fused_cross_entropy.hpp"

namespace loom {

sdk::ModelOutput LlamaModelHandle::forward(const at::Tensor& input_ids,
                                           const at::Tensor& position_ids,
                                           const at::Tensor& segment_ids,
                                           const sdk::AttentionSpec& attention) {
  sdk::ModelOutput out;
  out.hidden = model_->forward(input_ids, position_ids, segment_ids, attention);
  out.project = [this](const at::Tensor& h) {
    projected_rows_ += h.numel() / std::max<std::int64_t>(1, h.size(-1));
    return model_->project(h);
  };
  return out;
}

at::Tensor LlamaModelHandle::cross_entropy(const at::Tensor& hidden, const at::Tensor& targets,
                                           at::Tensor* argmax) {
  projected_rows_ += hidden.size(0);
  return linear_cross_entropy(hidden, model_->output_weight(), targets, argmax);
}

at::Device LlamaModelHandle::device() const {
  return model_->model->embed_tokens->weight.device();
}

}  // namespace loom
