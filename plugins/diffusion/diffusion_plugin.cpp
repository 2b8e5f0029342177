#include "diffusion_plugin.hpp"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <stdexcept>

#include "keyed_random.hpp"
#include "sample_render.hpp"
#include "sampler.hpp"

namespace loom::diffusion {

sdk::PluginInfo DiffusionPlugin::info() const {
  return {"diffusion", "0.1.0",
          "LLaDA masked-diffusion language modelling: random masking, bidirectional attention, "
          "the diffusion loss and the reverse-process sampler"};
}

std::vector<sdk::ConfigKey> DiffusionPlugin::config_schema() const {
  return diffusion_config_schema();
}

void DiffusionPlugin::configure(const sdk::ConfigSection& section, const sdk::RunInfo& run) {
  config_ = parse_diffusion_config(section);
  section_ = section;
  run_ = run;
  logit_shift_ = resolve_logit_shift(config_, run);
  configured_ = true;
}

void DiffusionPlugin::on_model_loaded(sdk::ModelHandle& model, sdk::TokenizerHandle& tokenizer) {
  if (!configured_) configure(sdk::ConfigSection("diffusion", {}), run_);
  // A trained checkpoint loaded for sampling or evaluation must already have its mask token:
  // a new one would be an untrained row.
  const bool inference = run_.command == "generate" || run_.command == "eval";
  // A checkpoint whose layout fixes where its logits point (LLaDA: the same position, Dream:
  // the next one) decides the shift, unless logit_shift is set.
  if (!config_.logit_shift)
    if (const std::optional<bool> next = model.predicts_next_token()) logit_shift_ = *next;
  mask_ = resolve_mask_token(config_, model, tokenizer, /*allow_add=*/!inference);
  std::vector<bool> excluded = excluded_token_ids(tokenizer, model.vocab_size(), mask_.id);
  has_eos_ = tokenizer.eos_id().has_value();

  ForwardProcessOptions fp;
  fp.schedule = NoiseSchedule(config_);
  // eps floored for evaluation: with p down to 0 the 1/p weights are unbounded and the
  // estimate's variance with them (eps = 0 is allowed for training, not for the bound).
  fp.eval_schedule =
      NoiseSchedule(NoiseScheduleKind::Linear, std::max(config_.eps, kEvalMinEps), 0.0, 1.0);
  fp.t_sampling = config_.t_sampling;
  fp.random_length_prob = config_.random_length_prob;
  fp.logit_shift = logit_shift_;
  fp.mask_token_id = mask_.id;
  fp.seed = run_.seed;
  std::vector<bool> never_masked = excluded;
  if (config_.mask_eos) {
    const auto eos = tokenizer.eos_id();
    if (!eos) throw std::invalid_argument("diffusion.mask_eos: the tokenizer has no EOS token");
    if (*eos >= 0 && *eos < std::int64_t(never_masked.size())) never_masked[std::size_t(*eos)] = false;
  }
  forward_.emplace(fp, std::move(never_masked));

  GenerationSetup gs;
  gs.config = config_;
  gs.logit_shift = logit_shift_;
  gs.mask_token_id = mask_.id;
  gs.excluded = std::move(excluded);
  gs.seed = run_.seed;
  gs.output_dir = run_.output_dir;
  generation_.setup(std::move(gs));
}

void DiffusionPlugin::require_model_loaded(const char* hook) const {
  if (!forward_)
    throw std::logic_error(std::string("diffusion ") + hook +
                           ": on_model_loaded has not run (no mask token yet)");
}

void DiffusionPlugin::transform_batch(sdk::Batch& batch, const sdk::StepContext& ctx) {
  require_model_loaded("transform_batch");
  // Originals for sample generation, kept only where they are printed (rank 0) and when they
  // are used: the training step that ends with a generation, and the first eval pass.
  const bool generation_step = ctx.training && (ctx.step + 1) % config_.generation_interval == 0;
  if (config_.generate_samples && ctx.rank == 0 &&
      (generation_step || (!ctx.training && ctx.repeat == 0)))
    generation_.observe(batch, ctx.training);
  forward_->apply(batch, DrawKind{ctx.training, ctx.training ? 0 : ctx.repeat});
}

sdk::AttentionSpec DiffusionPlugin::attention(const sdk::Batch&, const sdk::StepContext&) {
  return sdk::AttentionSpec::bidirectional();
}

sdk::LossResult DiffusionPlugin::loss(const sdk::ModelOutput& out, const sdk::Batch& batch,
                                      const sdk::StepContext& ctx) {
  return diffusion_loss(out, batch, ctx, LossOptions{config_.importance_weighting, logit_shift_});
}

int DiffusionPlugin::eval_repeats() const { return static_cast<int>(config_.eval_mc_samples); }

void DiffusionPlugin::on_step_end(sdk::TrainerState& state) { generation_.on_step_end(state); }

void DiffusionPlugin::on_load(sdk::TrainerState& state, const std::string& /*checkpoint_dir*/) {
  // A resumed run generates the samples after the checkpoint's step again: the earlier run's
  // samples past it go, as the host cuts metrics.jsonl.
  if (run_.command == "train") generation_.forget_samples_after(state);
}

std::vector<std::int64_t> DiffusionPlugin::start_sequence(
    const sdk::GenerateRequest& request) const {
  if (request.complete_tokens < 0) throw std::invalid_argument("generate: --complete must be > 0");
  if (request.mask_ratio < 0 || request.mask_ratio > 1)
    throw std::invalid_argument("generate: --mask must be in (0, 1]");
  if (request.complete_tokens == 0 && request.mask_ratio == 0)
    throw std::invalid_argument(
        "generate: give --complete N (append N tokens) or --mask R "
        "(mask a share R of the prompt)");
  if (request.steps < 0 || request.block_length < 0 || request.temperature < 0)
    throw std::invalid_argument("generate: steps, block length and temperature must be >= 0");

  const std::int64_t mask_id = mask_.id;
  std::vector<std::int64_t> start = request.prompt_ids;
  if (request.mask_ratio > 0) {
    std::vector<std::int64_t> candidates;
    for (std::size_t i = 0; i < start.size(); ++i)
      if (!forward_->is_excluded(start[i]) && !(logit_shift_ && i == 0))
        candidates.push_back(static_cast<std::int64_t>(i));
    if (candidates.empty())
      throw std::invalid_argument("generate: --mask: the prompt has no token that can be masked");
    auto count = static_cast<std::size_t>(
        std::llround(request.mask_ratio * static_cast<double>(candidates.size())));
    count = std::clamp<std::size_t>(count, 1, candidates.size());
    KeyedRandom rng{request.seed, static_cast<std::uint64_t>(RandomStream::Generation)};
    for (std::size_t i = 0; i < count; ++i) {
      std::size_t j = i + rng.below(i, candidates.size() - i);
      std::swap(candidates[i], candidates[j]);
    }
    for (std::size_t i = 0; i < count; ++i)
      start[static_cast<std::size_t>(candidates[i])] = mask_id;
  }
  start.insert(start.end(), static_cast<std::size_t>(request.complete_tokens), mask_id);
  return start;
}

sdk::GenerateResult DiffusionPlugin::generate(sdk::ModelHandle& model,
                                              sdk::TokenizerHandle& tokenizer,
                                              const sdk::GenerateRequest& request, bool colour) {
  // One path for one request and for many: a request alone is a batch of one.
  return generate_batch(model, tokenizer, {request}, colour).at(0).result;
}

std::vector<sdk::GeneratedSequence> DiffusionPlugin::generate_batch(
    sdk::ModelHandle& model, sdk::TokenizerHandle& tokenizer,
    const std::vector<sdk::GenerateRequest>& requests, bool colour) {
  std::vector<std::size_t> all(requests.size());
  for (std::size_t i = 0; i < all.size(); ++i) all[i] = i;
  std::vector<sdk::GeneratedSequence> out(requests.size());
  sample_group(model, tokenizer, requests, all, config_, nullptr, colour, out);
  return out;
}

namespace {

// The keys a request may set: how the sampler decides, never what the model is.
const std::vector<std::string>& request_keys() {
  static const std::vector<std::string> keys = {"remasking", "cfg_scale",  "threshold",
                                                "factor",    "cache",      "top_k",
                                                "top_p",     "stop_at_eos", "suppress_eos"};
  return keys;
}

// Requests whose sampler settings are equal can share one ReverseSampler batch.
bool same_sampler_settings(const DiffusionConfig& a, const DiffusionConfig& b) {
  return a.remasking == b.remasking && a.cfg_scale == b.cfg_scale && a.threshold == b.threshold &&
         a.factor == b.factor && a.cache == b.cache && a.top_k == b.top_k && a.top_p == b.top_p &&
         a.stop_at_eos == b.stop_at_eos && a.suppress_eos == b.suppress_eos;
}

// Forwards the sampler's step callback to the SDK observer with the caller's request index.
class ObserverBridge {
 public:
  ObserverBridge(sdk::GenerateObserver* observer, const std::vector<std::size_t>& indices,
                 std::int64_t mask_id)
      : observer_(observer), indices_(indices), mask_id_(mask_id) {}
  bool operator()(std::size_t row, std::int64_t step, const at::Tensor& x) {
    at::Tensor c = x.contiguous();
    tokens_.assign(c.data_ptr<std::int64_t>(), c.data_ptr<std::int64_t>() + c.numel());
    return observer_->on_step(indices_.at(row), step, tokens_, mask_id_);
  }

 private:
  sdk::GenerateObserver* observer_;
  const std::vector<std::size_t>& indices_;
  std::int64_t mask_id_;
  std::vector<std::int64_t> tokens_;
};

}  // namespace

std::vector<std::string> DiffusionPlugin::request_option_keys() const { return request_keys(); }

DiffusionConfig DiffusionPlugin::config_with(const sdk::ConfigSection& options) const {
  std::map<std::string, sdk::ConfigValue> merged = section_.values();
  const auto& keys = request_keys();
  for (const auto& [key, value] : options.values()) {
    if (std::find(keys.begin(), keys.end(), key) == keys.end())
      throw std::invalid_argument("[diffusion] " + key + " cannot be set per request");
    merged[key] = value;
  }
  return parse_diffusion_config(sdk::ConfigSection("diffusion", std::move(merged)));
}

void DiffusionPlugin::check_request_options(const sdk::ConfigSection& options) const {
  const DiffusionConfig c = config_with(options);
  if ((c.stop_at_eos || c.suppress_eos) && !has_eos_)
    throw std::invalid_argument(std::string("[diffusion] ") +
                                (c.stop_at_eos ? "stop_at_eos" : "suppress_eos") +
                                ": the tokenizer has no EOS token");
}

std::vector<sdk::GeneratedSequence> DiffusionPlugin::generate_batch_observed(
    sdk::ModelHandle& model, sdk::TokenizerHandle& tokenizer,
    const std::vector<sdk::GenerateRequest>& requests,
    const std::vector<sdk::ConfigSection>& options, sdk::GenerateObserver* observer) {
  if (options.size() != requests.size())
    throw std::invalid_argument("generate_batch_observed: " + std::to_string(options.size()) +
                                " option sets for " + std::to_string(requests.size()) +
                                " requests");
  std::vector<DiffusionConfig> configs;
  for (const auto& o : options) configs.push_back(config_with(o));
  // Groups of equal settings, in order of first appearance.
  std::vector<std::vector<std::size_t>> groups;
  std::vector<const DiffusionConfig*> group_config;
  for (std::size_t i = 0; i < requests.size(); ++i) {
    std::size_t g = 0;
    while (g < groups.size() && !same_sampler_settings(*group_config[g], configs[i])) ++g;
    if (g == groups.size()) {
      groups.emplace_back();
      group_config.push_back(&configs[i]);
    }
    groups[g].push_back(i);
  }
  // Every row and every group's settings are checked before any group samples: a bad row of
  // a later group found after an earlier group streamed its steps would fail the batch half-way
  // (the host then samples each row alone, and the earlier rows' steps would be seen twice).
  require_model_loaded("generate");
  for (std::size_t i = 0; i < requests.size(); ++i) {
    try {
      (void)start_sequence(requests[i]);
    } catch (const std::invalid_argument& e) {
      if (requests.size() == 1) throw;
      throw std::invalid_argument("request " + std::to_string(i + 1) + ": " + e.what());
    }
  }
  for (const DiffusionConfig* c : group_config)
    if ((c->stop_at_eos || c->suppress_eos) && !tokenizer.eos_id())
      throw std::invalid_argument(std::string("[diffusion] ") +
                                  (c->stop_at_eos ? "stop_at_eos" : "suppress_eos") +
                                  ": the tokenizer has no EOS token");
  std::vector<sdk::GeneratedSequence> out(requests.size());
  for (std::size_t g = 0; g < groups.size(); ++g)
    sample_group(model, tokenizer, requests, groups[g], *group_config[g], observer, false, out);
  return out;
}

void DiffusionPlugin::sample_group(sdk::ModelHandle& model, sdk::TokenizerHandle& tokenizer,
                                   const std::vector<sdk::GenerateRequest>& requests,
                                   const std::vector<std::size_t>& indices,
                                   const DiffusionConfig& config, sdk::GenerateObserver* observer,
                                   bool colour, std::vector<sdk::GeneratedSequence>& out) const {
  require_model_loaded("generate");
  if (mask_.added)
    throw std::invalid_argument(
        "[diffusion] mask_token_str: the checkpoint has no mask token ('" + config.mask_token_str +
        "' is not in its tokenizer and mask_token_id is not set); it was not trained with the "
        "diffusion plugin, or set mask_token_id to the id it was trained with");
  const std::int64_t eos = tokenizer.eos_id().value_or(-1);
  if ((config.stop_at_eos || config.suppress_eos) && eos < 0)
    throw std::invalid_argument(std::string("[diffusion] ") +
                                (config.stop_at_eos ? "stop_at_eos" : "suppress_eos") +
                                ": the tokenizer has no EOS token");

  std::vector<std::vector<std::int64_t>> starts;
  std::vector<SamplerRow> rows;
  for (std::size_t i : indices) {
    const sdk::GenerateRequest& request = requests[i];
    try {
      starts.push_back(start_sequence(request));
    } catch (const std::invalid_argument& e) {
      if (requests.size() == 1) throw;
      throw std::invalid_argument("request " + std::to_string(i + 1) + ": " + e.what());
    }
    SamplerRow row;
    row.sequence = at::tensor(starts.back(), at::kLong);
    row.steps = request.steps > 0 ? request.steps : config.num_diffusion_steps;
    row.temperature =
        request.temperature > 0 ? request.temperature : config.generation_temperature;
    row.block_length =
        request.block_length > 0 ? request.block_length : config.block_length.value_or(0);
    row.seed = request.seed;
    rows.push_back(std::move(row));
  }

  SamplerOptions opt = sampler_options(config, logit_shift_, mask_.id, eos);
  std::vector<SamplerTrace> traces;
  ReverseSampler::StepObserver observe;
  if (observer) observe = ObserverBridge(observer, indices, mask_.id);
  std::vector<at::Tensor> filled = ReverseSampler(opt).run_batch(model, rows, &traces, observe);

  for (std::size_t k = 0; k < indices.size(); ++k) {
    const std::size_t i = indices[k];
    sdk::GenerateResult& result = out[i].result;
    at::Tensor f = filled[k].contiguous();
    result.original = requests[i].prompt_ids;
    result.masked = starts[k];
    result.generated.assign(f.data_ptr<std::int64_t>(), f.data_ptr<std::int64_t>() + f.numel());
    SampleTokens tokens{result.original, result.masked, result.generated};
    result.rendered = describe_sample(tokenizer, tokens, mask_.id, colour).rendered;
    // Generated positions, up to and including the EOS that ended the row.
    const auto generated =
        static_cast<std::int64_t>(std::count(result.masked.begin(), result.masked.end(), mask_.id));
    out[i].new_tokens = traces[k].stopped_at >= 0 ? traces[k].stopped_at + 1 : generated;
    out[i].forward_passes = traces[k].forward_passes;
  }
}

}  // namespace loom::diffusion
