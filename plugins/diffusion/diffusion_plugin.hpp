// The diffusion plugin: LLaDA masked-diffusion training and sampling behind the loom SDK.
//
// Hooks:
//  configure        parse and validate [diffusion]; resolve logit_shift (auto: base_model set)
//  on_model_loaded  logit_shift unset: as the checkpoint's layout says, if it does (SDK 1.4:
//                   LLaDA no, Dream yes); resolve the mask token (mask_token_id, else the
//                   checkpoint's own, else mask_token_str, else add it and grow the model --
//                   refused for `generate`/`eval`), precompute the never-masked ids
//  transform_batch  keep a few originals for sample generation, then mask (ForwardProcess):
//                   rewrites input_ids, stores diffusion.* tensors in batch.extras
//  attention        bidirectional (the host keeps it inside segments and off padding)
//  loss             diffusion_loss (see diffusion_loss.hpp)
//  eval_repeats     eval_mc_samples fixed-seed mask draws per eval batch
//  on_step_end      sample generation every generation_interval steps on rank 0
//  on_load          --resume: samples.jsonl keeps the samples up to the checkpoint's step
//  generate         `trainer generate`: completion (--complete N) or infilling (--mask R);
//                   generate_batch with one request
//  generate_batch   several requests sampled as one batch (ReverseSampler::run_batch): each
//                   row equals its request alone; completion and infilling requests mix
#pragma once

#include <optional>

#include "diffusion_config.hpp"
#include "diffusion_loss.hpp"
#include "forward_process.hpp"
#include "generation_callback.hpp"
#include "loom/sdk.hpp"
#include "mask_token.hpp"

namespace loom::diffusion {

class DiffusionPlugin final : public sdk::Plugin {
 public:
  sdk::PluginInfo info() const override;

  std::vector<sdk::ConfigKey> config_schema() const override;
  void configure(const sdk::ConfigSection& section, const sdk::RunInfo& run) override;

  void on_model_loaded(sdk::ModelHandle& model, sdk::TokenizerHandle& tokenizer) override;

  void transform_batch(sdk::Batch& batch, const sdk::StepContext& ctx) override;
  bool owns_attention() const override { return true; }
  sdk::AttentionSpec attention(const sdk::Batch& batch, const sdk::StepContext& ctx) override;
  bool owns_loss() const override { return true; }
  sdk::LossResult loss(const sdk::ModelOutput& out, const sdk::Batch& batch,
                       const sdk::StepContext& ctx) override;
  int eval_repeats() const override;

  void on_step_end(sdk::TrainerState& state) override;
  void on_load(sdk::TrainerState& state, const std::string& checkpoint_dir) override;

  bool provides_sampler() const override { return true; }
  sdk::GenerateResult generate(sdk::ModelHandle& model, sdk::TokenizerHandle& tokenizer,
                               const sdk::GenerateRequest& request, bool colour) override;
  std::vector<sdk::GeneratedSequence> generate_batch(
      sdk::ModelHandle& model, sdk::TokenizerHandle& tokenizer,
      const std::vector<sdk::GenerateRequest>& requests, bool colour) override;

  // SDK 1.4 (`trainer serve`): the sampling keys a request may set (remasking, cfg_scale,
  // threshold, factor, cache, top_k, top_p, stop_at_eos, suppress_eos), checked by
  // parse_diffusion_config over the configured table; requests with equal settings are sampled
  // as one batch, groups one after another, so each row still equals its solo run.
  std::vector<std::string> request_option_keys() const override;
  void check_request_options(const sdk::ConfigSection& options) const override;
  std::vector<sdk::GeneratedSequence> generate_batch_observed(
      sdk::ModelHandle& model, sdk::TokenizerHandle& tokenizer,
      const std::vector<sdk::GenerateRequest>& requests,
      const std::vector<sdk::ConfigSection>& options, sdk::GenerateObserver* observer) override;

  // For tests and diagnostics.
  const DiffusionConfig& config() const { return config_; }
  bool logit_shift() const { return logit_shift_; }
  std::int64_t mask_token_id() const { return mask_.id; }
  GenerationCallback& generation() { return generation_; }

 private:
  void require_model_loaded(const char* hook) const;
  // The sequence a request starts from: the prompt (a share masked in mask mode) followed by
  // complete_tokens mask tokens. Throws for a request that asks for nothing or for nonsense.
  std::vector<std::int64_t> start_sequence(const sdk::GenerateRequest& request) const;
  // The configuration with one request's settings applied (throws naming the key).
  DiffusionConfig config_with(const sdk::ConfigSection& options) const;
  // Samples requests[indices] as one batch with `config`'s sampler settings into out[indices].
  void sample_group(sdk::ModelHandle& model, sdk::TokenizerHandle& tokenizer,
                    const std::vector<sdk::GenerateRequest>& requests,
                    const std::vector<std::size_t>& indices, const DiffusionConfig& config,
                    sdk::GenerateObserver* observer, bool colour,
                    std::vector<sdk::GeneratedSequence>& out) const;

  DiffusionConfig config_;
  sdk::ConfigSection section_;  // the table configure() was given, for per-request settings
  sdk::RunInfo run_;
  bool configured_ = false;
  bool logit_shift_ = false;
  MaskToken mask_;
  bool has_eos_ = false;
  std::optional<ForwardProcess> forward_;
  GenerationCallback generation_;
};

}  // namespace loom::diffusion
