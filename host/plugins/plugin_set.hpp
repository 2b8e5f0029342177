// The run's active plugins and the rules that combine them (see sdk/plugin.hpp): broadcast
// hooks go to every plugin in config order; the loss and the attention mask have at most one
// owner each. Every hook call is guarded: an exception from a plugin becomes a UserError that
// names the plugin and the hook.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "config/train_config.hpp"
#include "loom/sdk/plugin.hpp"
#include "plugins/plugin_library.hpp"

namespace loom {

struct LoadedPlugin {
  std::shared_ptr<PluginLibrary> library;
  std::shared_ptr<sdk::Plugin> plugin;
  std::string name;
};

// What plugins are told about a run (Plugin::configure): the config's values, for the trainer
// command `command` (train | generate | eval | check | bench), on one process; a data-parallel
// caller sets rank and world size.
sdk::RunInfo run_info_for(const TrainConfig& config, const std::string& command);

class PluginSet {
 public:
  PluginSet() = default;
  // Loads plugins named on the command line and in the config, in that order (duplicates are
  // loaded once). Throws UserError for files that cannot be used.
  static PluginSet load(const std::vector<std::string>& specs);

  const std::vector<LoadedPlugin>& plugins() const { return plugins_; }
  bool empty() const { return plugins_.empty(); }
  // Whether some loaded plugin was built for SDK minor `minor` or later.
  bool any_supports(int minor) const;

  // Validates every plugin table of the config against the plugins' schemas (tables that no
  // loaded plugin owns are an error) and calls configure(); then asks each plugin whether it
  // owns the loss and the attention -- after configure(), so the answer may depend on its
  // config -- and throws UserError for two owners of either. Before configure() no plugin
  // owns anything.
  void configure(const TrainConfig& config, const sdk::RunInfo& run);
  void on_model_loaded(sdk::ModelHandle& model, sdk::TokenizerHandle& tokenizer);

  void transform_batch(sdk::Batch& batch, const sdk::StepContext& ctx);
  sdk::AttentionSpec attention(const sdk::Batch& batch, const sdk::StepContext& ctx);
  bool owns_loss() const { return loss_owner_ != nullptr; }
  const LoadedPlugin* loss_owner() const { return loss_owner_; }
  sdk::LossResult loss(const sdk::ModelOutput& out, const sdk::Batch& batch,
                       const sdk::StepContext& ctx);
  int eval_repeats();

  void on_train_begin(sdk::TrainerState& s);
  // Training control: each plugin's should_* requests are kept (a later plugin cannot clear
  // an earlier one's).
  void on_step_end(sdk::TrainerState& s);
  void on_evaluate(sdk::TrainerState& s, sdk::Metrics& m);
  void on_save(sdk::TrainerState& s, const std::string& dir);
  void on_train_end(sdk::TrainerState& s);
  // SDK 1.2: only plugins built for 1.2 or later are called.
  void on_load(sdk::TrainerState& s, const std::string& dir);

  // Warnings about how the loaded plugins combine (logged when found, kept for tests): an
  // attention that shows later tokens to the host's causal loss.
  const std::vector<std::string>& warnings() const { return warnings_; }

  // The plugin that owns the loss, if it provides a sampler (for `trainer generate`).
  LoadedPlugin* sampler();

 private:
  template <class Fn>
  auto guarded(const LoadedPlugin& p, const char* hook, Fn&& fn) -> decltype(fn());
  void resolve_owners();
  void warn_if_future_visible(const sdk::AttentionSpec& spec);

  std::vector<LoadedPlugin> plugins_;
  LoadedPlugin* loss_owner_ = nullptr;
  LoadedPlugin* attention_owner_ = nullptr;
  std::vector<std::string> warnings_;
  bool future_checked_ = false;
};

}  // namespace loom
