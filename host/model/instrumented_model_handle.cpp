#include "model/instrumented_model_handle.hpp"

namespace loom {
namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

}  // namespace

sdk::ModelOutput InstrumentedModelHandle::forward(const at::Tensor& input_ids,
                                                  const at::Tensor& position_ids,
                                                  const at::Tensor& segment_ids,
                                                  const sdk::AttentionSpec& attention) {
  const auto t0 = Clock::now();
  sdk::ModelOutput out = inner_.forward(input_ids, position_ids, segment_ids, attention);
  forward_s += since(t0);
  ++forward_calls;
  return timed_projection(std::move(out));
}

std::unique_ptr<sdk::KeyValueCache> InstrumentedModelHandle::forward_caching(
    const at::Tensor& input_ids, const at::Tensor& position_ids, const at::Tensor& segment_ids,
    sdk::ModelOutput* out) {
  const auto t0 = Clock::now();
  auto cache = inner_.forward_caching(input_ids, position_ids, segment_ids, out);
  if (!cache) return cache;  // no cache: nothing ran, `out` untouched
  forward_s += since(t0);
  ++forward_calls;
  if (out) *out = timed_projection(std::move(*out));
  return cache;
}

sdk::ModelOutput InstrumentedModelHandle::forward_cached(sdk::KeyValueCache& cache,
                                                         const at::Tensor& input_ids,
                                                         const at::Tensor& positions) {
  const auto t0 = Clock::now();
  sdk::ModelOutput out = inner_.forward_cached(cache, input_ids, positions);
  forward_s += since(t0);
  ++forward_calls;
  return timed_projection(std::move(out));
}

sdk::ModelOutput InstrumentedModelHandle::timed_projection(sdk::ModelOutput out) {
  auto project = out.project;
  out.project = [this, project](const at::Tensor& h) {
    const auto t = Clock::now();
    auto logits = project(h);
    projection_s += since(t);
    return logits;
  };
  return out;
}

at::Tensor InstrumentedModelHandle::cross_entropy(const at::Tensor& hidden,
                                                  const at::Tensor& targets, at::Tensor* argmax) {
  const auto t = Clock::now();
  auto ce = inner_.cross_entropy(hidden, targets, argmax);
  projection_s += since(t);
  return ce;
}

at::Tensor InstrumentedModelHandle::cross_entropy_excluding(const at::Tensor& hidden,
                                                            const at::Tensor& targets,
                                                            const at::Tensor& exclude_ids,
                                                            at::Tensor* argmax) {
  const auto t = Clock::now();
  auto ce = inner_.cross_entropy_excluding(hidden, targets, exclude_ids, argmax);
  projection_s += since(t);
  return ce;
}

}  // namespace loom
