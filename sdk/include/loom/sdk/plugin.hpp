// The plugin interface. Every hook has a default, so a plugin overrides only what it needs.
//
// How the host combines several plugins (rules in docs/writing-a-plugin.md):
//  - configure, on_model_loaded, callbacks: every plugin, in config order;
//  - transform_batch: every plugin, in config order (each sees the previous one's output);
//  - loss: the one plugin whose owns_loss() is true, else the host's causal LM loss;
//  - attention: the one plugin whose owns_attention() is true, else causal;
//  - generate: the plugin that owns the loss, if it provides a sampler.
// Two plugins claiming the loss (or the attention) is a configuration error.
// An exception thrown from a hook stops the run cleanly with the plugin's and hook's name.
// Hooks are only ever appended (version.hpp): a hook of SDK 1.N is called only on plugins
// built for 1.N or later.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "loom/sdk/batch.hpp"
#include "loom/sdk/config.hpp"
#include "loom/sdk/context.hpp"
#include "loom/sdk/model.hpp"
#include "loom/sdk/tokenizer.hpp"
#include "loom/sdk/version.hpp"

namespace loom::sdk {

struct PluginInfo {
  std::string name;     // also the name of the plugin's TOML table, e.g. "diffusion"
  std::string version;  // the plugin's own version
  std::string description;
};

// `trainer generate`: what the user asked for.
struct GenerateRequest {
  std::vector<std::int64_t> prompt_ids;
  std::int64_t complete_tokens = 0;  // > 0: append this many tokens after the prompt
  double mask_ratio = 0;             // > 0: mask this share of the prompt and fill it back
  std::int64_t steps = 0;            // 0: the plugin's default
  double temperature = 0;
  std::int64_t block_length = 0;  // 0: the plugin's default
  std::uint64_t seed = 0;
};

struct GenerateResult {
  std::vector<std::int64_t> original;   // the reference tokens (mask mode) or the prompt
  std::vector<std::int64_t> masked;     // the sequence the sampler started from
  std::vector<std::int64_t> generated;  // the sequence after the last step
  std::string rendered;                 // human-readable, may hold ANSI colours if asked
};

class Plugin {
 public:
  virtual ~Plugin() = default;

  virtual PluginInfo info() const = 0;

  // --- configuration -------------------------------------------------------------------
  virtual std::vector<ConfigKey> config_schema() const { return {}; }
  virtual void configure(const ConfigSection& /*section*/, const RunInfo& /*run*/) {}

  // --- model ---------------------------------------------------------------------------
  // After the model and tokenizer exist and before training or sampling starts (also after a
  // checkpoint is loaded). May add tokens and resize the vocabulary.
  virtual void on_model_loaded(ModelHandle& /*model*/, TokenizerHandle& /*tokenizer*/) {}

  // --- the training step, in data-flow order -------------------------------------------
  virtual void transform_batch(Batch& /*batch*/, const StepContext& /*ctx*/) {}
  virtual bool owns_attention() const { return false; }
  virtual AttentionSpec attention(const Batch& /*batch*/, const StepContext& /*ctx*/) {
    return AttentionSpec::causal();
  }
  virtual bool owns_loss() const { return false; }
  virtual LossResult loss(const ModelOutput& /*out*/, const Batch& /*batch*/,
                          const StepContext& /*ctx*/) {
    return {};
  }
  // How many times the host evaluates each eval batch (with StepContext::repeat = 0..n-1),
  // averaging the results; > 1 for objectives whose loss is a Monte Carlo estimate.
  virtual int eval_repeats() const { return 1; }

  // --- callbacks -----------------------------------------------------------------------
  virtual void on_train_begin(TrainerState& /*state*/) {}
  virtual void on_step_end(TrainerState& /*state*/) {}
  // `metrics` holds the host's eval/... values; a plugin may add its own.
  virtual void on_evaluate(TrainerState& /*state*/, Metrics& /*metrics*/) {}
  virtual void on_save(TrainerState& /*state*/, const std::string& /*checkpoint_dir*/) {}
  virtual void on_train_end(TrainerState& /*state*/) {}

  // --- sampling ------------------------------------------------------------------------
  virtual bool provides_sampler() const { return false; }
  virtual GenerateResult generate(ModelHandle& /*model*/, TokenizerHandle& /*tokenizer*/,
                                  const GenerateRequest& /*request*/, bool /*colour*/) {
    return {};
  }

#if LOOM_SDK_TARGET_MINOR >= 2
  // --- SDK 1.2 -------------------------------------------------------------------------
  // A checkpoint folder was loaded: on --resume (after the model and optimizer state are
  // restored, before on_train_begin) and when generate/eval load a checkpoint (after
  // on_model_loaded). Read back here what on_save wrote into that folder. state.step is the
  // checkpoint's step (0 for a folder without trainer_state.json, e.g. final/).
  virtual void on_load(TrainerState& /*state*/, const std::string& /*checkpoint_dir*/) {}
#endif
};

// The handshake record a plugin library exports. Fields are only ever appended: the host reads
// the fields that `struct_size` covers (at least the 1.0 record, up to plugin_name).
struct PluginAbi {
  std::uint32_t struct_size;
  std::uint32_t abi_major;
  std::uint32_t abi_minor;
  std::uint32_t torch_major;
  std::uint32_t torch_minor;
  std::uint32_t torch_patch;
  std::int32_t cxx11_abi;  // _GLIBCXX_USE_CXX11_ABI the plugin was built with
  const char* plugin_name;
#if LOOM_SDK_TARGET_MINOR >= 2
  const char* compiler;  // SDK 1.2: the compiler that built the plugin (__VERSION__), for messages
#endif
};

}  // namespace loom::sdk

#if defined(_WIN32)
#define LOOM_PLUGIN_EXPORT extern "C" __declspec(dllexport)
#else
#define LOOM_PLUGIN_EXPORT extern "C" __attribute__((visibility("default")))
#endif

#include <torch/version.h>
#ifndef _GLIBCXX_USE_CXX11_ABI
#define LOOM_SDK_CXX11_ABI_VALUE -1
#else
#define LOOM_SDK_CXX11_ABI_VALUE _GLIBCXX_USE_CXX11_ABI
#endif

#if LOOM_SDK_TARGET_MINOR >= 2
#define LOOM_SDK_ABI_TAIL , __VERSION__
#else
#define LOOM_SDK_ABI_TAIL
#endif

// Exports the handshake record and the factory of plugin class `Class` under stable names.
// Use once per plugin library, in a .cpp file, at global scope:  LOOM_PLUGIN(MyPlugin, "my")
#define LOOM_PLUGIN(Class, name_literal)                                                    \
  LOOM_PLUGIN_EXPORT const ::loom::sdk::PluginAbi* loom_plugin_abi() {                      \
    static const ::loom::sdk::PluginAbi abi{sizeof(::loom::sdk::PluginAbi),                \
                                            LOOM_SDK_ABI_MAJOR,                             \
                                            LOOM_SDK_TARGET_MINOR,                          \
                                            TORCH_VERSION_MAJOR,                            \
                                            TORCH_VERSION_MINOR,                            \
                                            TORCH_VERSION_PATCH,                            \
                                            LOOM_SDK_CXX11_ABI_VALUE,                       \
                                            name_literal LOOM_SDK_ABI_TAIL};                \
    return &abi;                                                                            \
  }                                                                                         \
  LOOM_PLUGIN_EXPORT ::loom::sdk::Plugin* loom_plugin_create() { return new Class(); }
