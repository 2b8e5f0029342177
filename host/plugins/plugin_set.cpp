#include "plugins/plugin_set.hpp"

#include <c10/util/Exception.h>
#include <spdlog/spdlog.h>

#include "config/config_loader.hpp"
#include "config/key_suggestion.hpp"
#include "errors.hpp"
#include "model/llama_model.hpp"
#include "plugins/plugin_search_path.hpp"

namespace loom {

template <class Fn>
auto PluginSet::guarded(const LoadedPlugin& p, const char* hook, Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const c10::Error& e) {
    throw UserError("plugin '" + p.name + "' failed in hook " + hook + ": " +
                    e.what_without_backtrace());
  } catch (const std::exception& e) {
    throw UserError("plugin '" + p.name + "' failed in hook " + hook + ": " + e.what());
  } catch (...) {  // `throw 42` and the like: still a clean stop, not std::terminate
    throw UserError("plugin '" + p.name + "' failed in hook " + hook +
                    ": it threw something that is not a std::exception");
  }
}

namespace {

// The plugin name a spec asks for: "diffusion" for diffusion, libdiffusion.so or diffusion.so;
// "" for a path (anything with a '/'), which names a file rather than a plugin.
std::string name_asked_for(const std::string& spec) {
  if (spec.find('/') != std::string::npos) return "";
  std::string n = spec;
  if (n.size() > 3 && n.compare(n.size() - 3, 3, ".so") == 0) {
    n.resize(n.size() - 3);
    if (n.rfind("lib", 0) == 0) n = n.substr(3);
  }
  return n;
}

}  // namespace

PluginSet PluginSet::load(const std::vector<std::string>& specs) {
  PluginSet set;
  for (const auto& spec : specs) {
    auto lib = PluginLibrary::load(resolve_plugin(spec));
    // Asked for by name, the library must hold the plugin of that name: a file called
    // libdiffusion.so holding another plugin would otherwise stand in for the real one.
    const std::string asked = name_asked_for(spec);
    if (!asked.empty() && asked != lib->info().name)
      throw UserError("plugin '" + asked + "': " + lib->info().path.string() + " holds plugin '" +
                      lib->info().name + "', not '" + asked +
                      "'; rename the file or give its path to load it as '" + lib->info().name + "'");
    bool dup = false;
    for (const auto& p : set.plugins_) {
      // The same file named twice (say, recorded in a checkpoint and given again with
      // --plugin, by another spelling of its path) is loaded once.
      if (std::filesystem::weakly_canonical(p.library->info().path) ==
          std::filesystem::weakly_canonical(lib->info().path))
        dup = true;
      else if (p.name == lib->info().name)
        throw UserError("two plugins are both named '" + p.name + "': " +
                        p.library->info().path.string() + " and " + lib->info().path.string());
    }
    if (dup) continue;
    LoadedPlugin lp{lib, lib->create(), lib->info().name};
    const std::string declared = set.guarded(lp, "info", [&] { return lp.plugin->info().name; });
    if (declared != lp.name)
      throw UserError("plugin " + lib->info().path.string() + ": its handshake names it '" + lp.name +
                      "' but its info() says '" + declared +
                      "'; the name in LOOM_PLUGIN(Class, \"name\") and PluginInfo::name must agree");
    set.plugins_.push_back(std::move(lp));
  }
  return set;
}

sdk::RunInfo run_info_for(const TrainConfig& config, const std::string& command) {
  sdk::RunInfo run;
  run.seed = config.seed;
  run.output_dir = config.output_dir;
  run.base_model = config.base_model;
  run.sequence_len = config.sequence_len;
  run.micro_batch_size = config.micro_batch_size;
  run.gradient_accumulation_steps = config.gradient_accumulation_steps;
  run.bf16 = config.bf16;
  // As resolve_device decides (train/model_bundle.cpp): "cuda", "cuda:N", or "auto" with a
  // usable CUDA device.
  const bool cuda = config.device.rfind("cuda", 0) == 0 ||
                    (config.device == "auto" && torch::cuda::is_available());
  run.device = cuda ? "cuda" : "cpu";
  run.command = command;
  return run;
}

void PluginSet::configure(const TrainConfig& config, const sdk::RunInfo& run) {
  std::vector<std::string> names;
  for (const auto& p : plugins_) names.push_back(p.name);
  for (const auto& [table, values] : config.plugin_tables) {
    if (std::find(names.begin(), names.end(), table) != names.end()) continue;
    std::string msg = config.source.string() + ": table [" + table +
                      "] belongs to no loaded plugin";
    msg += names.empty() ? " (no plugins are loaded; add plugins = [\"" + table + "\"] or --plugin)"
                         : " (loaded: " + [&] {
                             std::string s;
                             for (const auto& n : names) s += (s.empty() ? "" : ", ") + n;
                             return s;
                           }() + ")";
    std::string near = closest_key(table, names);
    if (!near.empty()) msg += "; did you mean [" + near + "]?";
    throw UserError(msg);
  }
  for (auto& p : plugins_) {
    auto schema = guarded(p, "config_schema", [&] { return p.plugin->config_schema(); });
    auto it = config.plugin_tables.find(p.name);
    static const std::map<std::string, sdk::ConfigValue> none;
    static const std::map<std::string, std::string> nowhere;
    auto src = config.plugin_key_sources.find(p.name);
    auto section = validate_plugin_section(p.name, schema,
                                           it == config.plugin_tables.end() ? none : it->second,
                                           config.source.string(),
                                           src == config.plugin_key_sources.end() ? nowhere : src->second);
    guarded(p, "configure", [&] { p.plugin->configure(section, run); });
  }
  resolve_owners();
}

void PluginSet::resolve_owners() {
  loss_owner_ = attention_owner_ = nullptr;
  warnings_.clear();
  future_checked_ = false;
  for (auto& p : plugins_) {
    if (guarded(p, "owns_loss", [&] { return p.plugin->owns_loss(); })) {
      if (loss_owner_)
        throw UserError("plugins '" + loss_owner_->name + "' and '" + p.name +
                        "' both provide the loss; load only one of them");
      loss_owner_ = &p;
    }
    if (guarded(p, "owns_attention", [&] { return p.plugin->owns_attention(); })) {
      if (attention_owner_)
        throw UserError("plugins '" + attention_owner_->name + "' and '" + p.name +
                        "' both provide the attention mask; load only one of them");
      attention_owner_ = &p;
    }
  }
}

void PluginSet::on_model_loaded(sdk::ModelHandle& model, sdk::TokenizerHandle& tokenizer) {
  for (auto& p : plugins_)
    guarded(p, "on_model_loaded", [&] { p.plugin->on_model_loaded(model, tokenizer); });
}

void PluginSet::transform_batch(sdk::Batch& batch, const sdk::StepContext& ctx) {
  for (auto& p : plugins_) guarded(p, "transform_batch", [&] { p.plugin->transform_batch(batch, ctx); });
}

sdk::AttentionSpec PluginSet::attention(const sdk::Batch& batch, const sdk::StepContext& ctx) {
  if (!attention_owner_) return sdk::AttentionSpec::causal();
  auto spec = guarded(*attention_owner_, "attention",
                      [&] { return attention_owner_->plugin->attention(batch, ctx); });
  if (spec.kind == sdk::AttentionSpec::Kind::Explicit) {
    // The model's own check, said here with the plugin's name rather than deep in the model.
    const std::string problem =
        explicit_mask_problem(spec.mask, batch.input_ids.size(0), batch.input_ids.size(1));
    if (!problem.empty())
      throw UserError("plugin '" + attention_owner_->name + "' failed in hook attention: " + problem);
  }
  if (!loss_owner_ && !future_checked_) warn_if_future_visible(spec);
  return spec;
}

void PluginSet::warn_if_future_visible(const sdk::AttentionSpec& spec) {
  // A plugin's attention that lets a position see later tokens, with the host's next-token
  // loss: each position sees the very token it is asked to predict, so the loss falls to zero
  // and teaches nothing. Checked on the first batch (a mask that changes later is not seen).
  future_checked_ = true;
  bool future = spec.kind == sdk::AttentionSpec::Kind::Bidirectional;
  if (spec.kind == sdk::AttentionSpec::Kind::Explicit) {
    const auto S = spec.mask.size(-1);
    auto later = torch::ones({S, S}, spec.mask.options().dtype(torch::kBool)).triu(1);
    future = spec.mask.logical_and(later).any().item<bool>();
  }
  if (!future) return;
  warnings_.push_back("plugin '" + attention_owner_->name +
                      "' lets positions attend to later tokens, but no plugin provides the loss: "
                      "with the host's causal next-token loss each position sees the token it "
                      "predicts (load an objective plugin that owns the loss, or keep the "
                      "attention causal)");
  spdlog::warn("{}", warnings_.back());
}

sdk::LossResult PluginSet::loss(const sdk::ModelOutput& out, const sdk::Batch& batch,
                                const sdk::StepContext& ctx) {
  auto r = guarded(*loss_owner_, "loss", [&] { return loss_owner_->plugin->loss(out, batch, ctx); });
  if (!r.loss.defined() || r.loss.numel() != 1)
    throw UserError("plugin '" + loss_owner_->name + "' failed in hook loss: it returned no scalar loss");
  return r;
}

int PluginSet::eval_repeats() {
  if (!loss_owner_) return 1;
  int n = guarded(*loss_owner_, "eval_repeats", [&] { return loss_owner_->plugin->eval_repeats(); });
  return std::max(1, n);
}

void PluginSet::on_train_begin(sdk::TrainerState& s) {
  for (auto& p : plugins_) guarded(p, "on_train_begin", [&] { p.plugin->on_train_begin(s); });
}
namespace {

// Each plugin sees the training-control flags cleared and its requests are OR'ed into the
// state, so one plugin cannot cancel another's request by writing false.
template <class Call>
void with_own_requests(sdk::TrainerState& s, Call&& call) {
  const bool stop = s.should_training_stop, save = s.should_save, evaluate = s.should_evaluate;
  s.should_training_stop = s.should_save = s.should_evaluate = false;
  call();
  s.should_training_stop |= stop;
  s.should_save |= save;
  s.should_evaluate |= evaluate;
}

}  // namespace

void PluginSet::on_step_end(sdk::TrainerState& s) {
  for (auto& p : plugins_)
    with_own_requests(s, [&] { guarded(p, "on_step_end", [&] { p.plugin->on_step_end(s); }); });
}
void PluginSet::on_evaluate(sdk::TrainerState& s, sdk::Metrics& m) {
  for (auto& p : plugins_)
    with_own_requests(s, [&] { guarded(p, "on_evaluate", [&] { p.plugin->on_evaluate(s, m); }); });
}
bool PluginSet::any_supports(int minor) const {
  for (const auto& p : plugins_)
    if (p.library->info().supports(minor)) return true;
  return false;
}
void PluginSet::on_save(sdk::TrainerState& s, const std::string& dir) {
  for (auto& p : plugins_) guarded(p, "on_save", [&] { p.plugin->on_save(s, dir); });
}
void PluginSet::on_train_end(sdk::TrainerState& s) {
  for (auto& p : plugins_) guarded(p, "on_train_end", [&] { p.plugin->on_train_end(s); });
}
void PluginSet::on_load(sdk::TrainerState& s, const std::string& dir) {
  for (auto& p : plugins_)
    if (p.library->info().supports(sdk::kMinorControlAndLoad))  // no vtable slot before 1.2
      guarded(p, "on_load", [&] { p.plugin->on_load(s, dir); });
}

LoadedPlugin* PluginSet::sampler() {
  if (loss_owner_ && guarded(*loss_owner_, "provides_sampler",
                             [&] { return loss_owner_->plugin->provides_sampler(); }))
    return loss_owner_;
  return nullptr;
}

}  // namespace loom
