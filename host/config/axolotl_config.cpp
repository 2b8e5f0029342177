#include "config/axolotl_config.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <set>
#include <sstream>

#include "config/key_suggestion.hpp"
#include "errors.hpp"

namespace loom {
namespace {

// Keys whose meaning is loom's own meaning, under the same name (Axolotl's, or loom-only keys,
// which a YAML config may use too). Their values are passed through; the TOML validation checks
// them and names the key and the YAML line on a wrong type or range.
const std::set<std::string> kSameKeys = {
    "base_model", "output_dir", "seed", "sequence_len", "sample_packing", "val_set_size",
    "micro_batch_size", "gradient_accumulation_steps", "learning_rate", "warmup_steps",
    "warmup_ratio", "weight_decay", "adam_beta1", "adam_beta2", "adam_epsilon", "max_grad_norm",
    "logging_steps", "eval_steps", "save_steps", "save_total_limit", "special_tokens",
    "eval_max_batches", "threads", "device", "distributed_backend", "distributed_timeout_s",
    "attn_implementation", "adapter", "lora_r", "lora_alpha", "lora_dropout",
    "lora_target_modules", "lora_modules_to_save"};

// Axolotl's diffusion plugin keys, as its first releases took them at the top level (bare);
// later releases spelled them diffusion_<key> at the top level, now under `diffusion:`.
const std::set<std::string> kBareDiffusionKeys = {
    "noise_schedule", "min_mask_ratio", "max_mask_ratio", "num_diffusion_steps", "eps",
    "importance_weighting", "mask_token_id", "mask_token_str", "generate_samples",
    "generation_interval", "num_generation_samples", "generation_steps",
    "generation_temperature", "generation_max_length"};

const std::set<std::string> kDiffusionPluginPaths = {
    "axolotl.integrations.diffusion.DiffusionPlugin", "diffusion.DiffusionPlugin",
    "axolotl.integrations.diffusion.plugin.DiffusionPlugin"};

// Set keys that only concern Axolotl's Python tooling: ignored with a warning. -> what they do.
const std::map<std::string, std::string> kToolingKeys = {
    {"strict", "config strictness"},
    {"tokens", "tokens Axolotl's tokenizer set-up adds; not added (loom adds special_tokens)"},
    {"wandb_project", "Weights & Biases"}, {"wandb_entity", "Weights & Biases"},
    {"wandb_watch", "Weights & Biases"}, {"wandb_name", "Weights & Biases"},
    {"wandb_run_id", "Weights & Biases"}, {"wandb_log_model", "Weights & Biases"},
    {"wandb_mode", "Weights & Biases"}, {"use_wandb", "Weights & Biases"},
    {"mlflow_tracking_uri", "MLflow"}, {"mlflow_experiment_name", "MLflow"},
    {"mlflow_run_name", "MLflow"}, {"hf_mlflow_log_artifacts", "MLflow"}, {"use_mlflow", "MLflow"},
    {"comet_api_key", "Comet"}, {"comet_workspace", "Comet"}, {"comet_project_name", "Comet"},
    {"comet_experiment_key", "Comet"}, {"comet_mode", "Comet"}, {"comet_online", "Comet"},
    {"use_comet", "Comet"},
    {"hub_model_id", "Hugging Face Hub upload"}, {"hub_strategy", "Hugging Face Hub upload"},
    {"hub_private_repo", "Hugging Face Hub upload"}, {"push_dataset_to_hub", "Hugging Face Hub upload"},
    {"hf_use_auth_token", "Hugging Face Hub login"},
    {"dataset_prepared_path", "Axolotl's preprocessed-dataset cache"},
    {"dataset_processes", "Python preprocessing workers"},
    {"dataset_num_proc", "Python preprocessing workers"},
    {"dataset_keep_in_memory", "Python dataset caching"},
    {"skip_prepare_dataset", "Axolotl's preprocessed-dataset cache"},
    {"dataloader_num_workers", "PyTorch DataLoader workers"},
    {"dataloader_pin_memory", "PyTorch DataLoader"},
    {"dataloader_prefetch_factor", "PyTorch DataLoader"},
    {"debug", "Axolotl debug output"}, {"local_rank", "Python launcher"},
    {"ddp_find_unused_parameters", "PyTorch DDP"}, {"ddp_bucket_cap_mb", "PyTorch DDP"},
    {"ddp_broadcast_buffers", "PyTorch DDP"},
    {"tf32", "PyTorch's TF32 matmul switch"},
    {"flash_attention", "attention kernel (loom: attn_implementation, same results)"},
    {"sdp_attention", "attention kernel (loom: attn_implementation, same results)"},
    {"xformers_attention", "attention kernel (loom: attn_implementation, same results)"},
    {"flex_attention", "attention kernel (loom: attn_implementation, same results)"},
    {"eager_attention", "attention kernel (loom: attn_implementation, same results)"},
    {"flash_attn_cross_entropy", "fused kernel (same math)"},
    {"flash_attn_rms_norm", "fused kernel (same math)"},
    {"flash_attn_fuse_qkv", "fused kernel (same math)"},
    {"flash_attn_fuse_mlp", "fused kernel (same math)"},
    {"liger_rope", "Liger kernel (same math)"}, {"liger_rms_norm", "Liger kernel (same math)"},
    {"liger_glu_activation", "Liger kernel (same math)"},
    {"liger_layer_norm", "Liger kernel (same math)"},
    {"liger_cross_entropy", "Liger kernel (same math)"},
    {"liger_fused_linear_cross_entropy", "Liger kernel (same math)"},
    {"torch_compile", "torch.compile"}, {"torch_compile_backend", "torch.compile"},
    {"torch_compile_mode", "torch.compile"},
    {"gradient_checkpointing_kwargs", "options of PyTorch's checkpoint function"},
    {"trust_remote_code", "Python model loading"}, {"tokenizer_use_fast", "Python tokenizer loading"},
    {"tokenizer_legacy", "Python tokenizer loading"},
    {"is_llama_derived_model", "Axolotl model hint"}, {"is_mistral_derived_model", "Axolotl model hint"},
    {"is_qwen_derived_model", "Axolotl model hint"}, {"is_falcon_derived_model", "Axolotl model hint"},
    {"eval_sample_packing", "Axolotl's packing of eval batches"},
    {"sample_packing_eff_est", "Axolotl's packing estimate"},
    {"total_num_tokens", "Axolotl's packing estimate"},
    {"pretrain_multipack_attn", "Axolotl's packing set-up"},
    {"pretrain_multipack_buffer_size", "Axolotl's packing set-up"},
    {"multipack_real_batches", "Axolotl's packing set-up"},
    {"sample_packing_group_size", "Axolotl's packing set-up"},
    {"sample_packing_bin_size", "Axolotl's packing set-up"},
    {"eval_table_size", "wandb prediction table"}, {"eval_max_new_tokens", "wandb prediction table"},
    {"do_causal_lm_eval", "extra Python eval metrics"},
    {"eval_causal_lm_metrics", "extra Python eval metrics"},
    {"include_tokens_per_second", "logging (loom always logs train/tokens_per_s)"},
    {"save_first_step", "a checkpoint-writing check"}, {"gc_steps", "Python garbage collection"},
    {"profiler_steps", "PyTorch profiler"}, {"eval_batch_size", "evaluation batch size"},
    {"chat_template", "chat template saved with the tokenizer"},
    {"default_system_message", "chat template"},
    {"save_safetensors", "checkpoint format (loom always writes safetensors)"},
    {"save_only_model", "checkpoint contents"},
};

// Set keys that change what is trained and loom does not support -> why. Unset (null, false,
// empty) they are accepted: Axolotl's examples list many of them empty.
const std::map<std::string, std::string> kRefusedKeys = {
    // adapter: lora and its lora_* keys are loom's own (kSameKeys, lora_target_linear below).
    {"lora_model_dir", "adapter training from a saved adapter (give the adapter folder to "
                       "trainer generate/eval --adapter)"},
    {"lora_fan_in_fan_out", "adapter training"},
    {"peft_use_dora", "adapter training"}, {"peft_use_rslora", "adapter training"},
    {"peft_layer_replication", "adapter training"}, {"relora_steps", "adapter training"},
    {"loraplus_lr_ratio", "adapter training"}, {"loraplus_lr_embedding", "adapter training"},
    {"load_in_8bit", "8-bit quantised base weights"},
    {"load_in_4bit", "4-bit quantised base weights"}, {"gptq", "quantised base weights"},
    {"bnb_config_kwargs", "quantised base weights"},
    {"deepspeed", "DeepSpeed sharding (loom is data-parallel: --nproc or torchrun)"},
    {"fsdp", "FSDP sharding (loom is data-parallel: --nproc or torchrun)"},
    {"fsdp_config", "FSDP sharding (loom is data-parallel: --nproc or torchrun)"},
    {"fsdp_version", "FSDP sharding (loom is data-parallel: --nproc or torchrun)"},
    {"sequence_parallel_degree", "sequence parallelism"},
    {"context_parallel_size", "context parallelism"},
    {"tensor_parallel_size", "tensor parallelism"},
    {"fp16", "fp16 mixed precision (loom: bf16)"},
    {"float16", "fp16 weights"}, {"bfloat16", "bf16 weights (loom keeps fp32 weights; bf16: true autocasts)"},
    {"resume_from_checkpoint", "resuming from the config (loom: trainer --resume [DIR])"},
    {"auto_resume_from_checkpoints", "resuming from the config (loom: trainer --resume)"},
    {"random_init_weights", "random init of a base model (loom: no base_model and a model: table)"},
    {"base_model_config", "a separate model config"}, {"revision_of_model", "a hub revision"},
    {"test_datasets", "separate eval datasets (loom: val_set_size)"},
    {"dataset_shard_num", "dataset sharding"}, {"dataset_shard_idx", "dataset sharding"},
    {"dataset_exact_deduplication", "dataset deduplication"},
    {"train_on_inputs", "learning the prompt tokens (loom never does)"},
    {"group_by_length", "length-grouped batches"},
    {"neftune_noise_alpha", "NEFTune embedding noise"}, {"noisy_embedding_alpha", "NEFTune embedding noise"},
    {"lr_quadratic_warmup", "quadratic warmup"}, {"cosine_min_lr_ratio", "cosine floor"},
    {"cosine_constant_lr_ratio", "cosine plateau"}, {"lr_scheduler_kwargs", "scheduler options"},
    {"lr_div_factor", "one-cycle schedule"}, {"embedding_lr", "per-group learning rates"},
    {"embedding_lr_scale", "per-group learning rates"}, {"lr_groups", "per-group learning rates"},
    {"optim_args", "optimizer options"}, {"optim_target_modules", "optimizer options"},
    {"unfrozen_parameters", "freezing parameters"},
    {"early_stopping_patience", "early stopping"},
    {"loss_watchdog_threshold", "stopping on a loss threshold"},
    {"loss_watchdog_patience", "stopping on a loss threshold"},
    {"rl", "preference / RL training"}, {"reward_model", "reward-model training"},
    {"process_reward_model", "reward-model training"},
    {"batch_size", "a total batch size (loom: micro_batch_size x gradient_accumulation_steps)"},
    {"evals_per_epoch", "evaluation per epoch (loom: eval_steps)"},
    {"saves_per_epoch", "saving per epoch (loom: save_steps)"},
    {"added_tokens_overrides", "renaming tokenizer tokens"},
    {"s2_attention", "shifted sparse attention"}, {"rope_scaling", "RoPE scaling"},
    {"max_packed_sequence_len", "an old packing mode"},
    {"pretraining_sample_concatenation", "a packing mode"},
};

// A scalar written without quotes is typed as YAML 1.1 (PyYAML, what Axolotl reads with) types
// it: booleans, integers, floats; anything else, and every quoted scalar, is a string. Floats
// such as 5e-4 (a string to YAML 1.1, turned into a float by Axolotl's pydantic) are floats.
enum class ScalarKind { Bool, Int, Float, String };

bool plain(const YAML::Node& n) { return n.Tag() == "?"; }

ScalarKind kind_of(const YAML::Node& n, bool* b, long long* i, double* d) {
  const std::string& s = n.Scalar();
  if (!plain(n)) return ScalarKind::String;
  static const std::set<std::string> yes = {"true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON"};
  static const std::set<std::string> no = {"false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF"};
  if (yes.count(s) || no.count(s)) {
    *b = yes.count(s) > 0;
    return ScalarKind::Bool;
  }
  if (s.empty()) return ScalarKind::String;
  std::size_t start = (s[0] == '+' || s[0] == '-') ? 1 : 0;
  if (start < s.size() && std::all_of(s.begin() + start, s.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    errno = 0;
    *i = std::strtoll(s.c_str(), nullptr, 10);
    if (errno != ERANGE) return ScalarKind::Int;
  }
  static const std::map<std::string, double> special = {
      {".inf", INFINITY}, {".Inf", INFINITY}, {"+.inf", INFINITY}, {"-.inf", -INFINITY},
      {"-.Inf", -INFINITY}, {".nan", NAN}, {".NaN", NAN}};
  if (auto it = special.find(s); it != special.end()) {
    *d = it->second;
    return ScalarKind::Float;
  }
  // Only decimal spellings (strtod would also take hex and "inf").
  if (s.find_first_not_of("0123456789+-.eE") == std::string::npos) {
    char* end = nullptr;
    *d = std::strtod(s.c_str(), &end);
    if (end && *end == '\0' && s.find_first_of("0123456789") != std::string::npos)
      return ScalarKind::Float;
  }
  return ScalarKind::String;
}

// TOML text is UTF-8; YAML bytes are not checked by yaml-cpp. Strict: no overlong forms, no
// surrogates, nothing above U+10FFFF.
bool valid_utf8(const std::string& s) {
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t n = 0;
    std::uint32_t cp = 0;
    if (c < 0x80) n = 1, cp = c;
    else if ((c & 0xE0) == 0xC0) n = 2, cp = c & 0x1F;
    else if ((c & 0xF0) == 0xE0) n = 3, cp = c & 0x0F;
    else if ((c & 0xF8) == 0xF0) n = 4, cp = c & 0x07;
    else return false;
    if (i + n > s.size()) return false;
    for (std::size_t k = 1; k < n; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    static const std::uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += n;
  }
  return true;
}

std::string toml_string(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"') out += "\\\"";
    else if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else if (c == '\t') out += "\\t";
    else if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else out += static_cast<char>(c);
  }
  return out + "\"";
}

// Text for a TOML comment: no control characters but TAB, valid UTF-8 (a key name in the
// "ignored" list is the user's bytes).
std::string comment_text(std::string s) {
  const bool utf8 = valid_utf8(s);
  for (auto& ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if ((c < 0x20 && c != '\t') || c == 0x7f || (!utf8 && c >= 0x80)) ch = '?';
  }
  return s;
}

// A key as TOML writes it: bare when it may be, else quoted.
std::string toml_key(const std::string& k) {
  const bool bare = !k.empty() && std::all_of(k.begin(), k.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
  });
  return bare ? k : toml_string(k);
}

// The shortest text that reads back as the same double, as a TOML float.
std::string toml_float(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[40];
  for (int precision = 1; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof buf, "%.*g", precision, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  std::string s = buf;
  if (s.find_first_of(".eEn") == std::string::npos) s += ".0";
  return s;
}

std::string location(const std::string& source, const YAML::Mark& m) {
  return source + ":" + std::to_string(m.line + 1) + ":" + std::to_string(m.column + 1);
}

// null, false, "" and empty lists and maps: how Axolotl's examples leave a key unused.
bool is_unset(const YAML::Node& n) {
  if (!n || n.IsNull()) return true;
  if (n.IsScalar()) {
    bool b = true;
    long long i = 0;
    double d = 0;
    if (kind_of(n, &b, &i, &d) == ScalarKind::Bool) return !b;
    return n.Scalar().empty();
  }
  return n.size() == 0;
}

class AxolotlTranslator {
 public:
  explicit AxolotlTranslator(std::string source) : source_(std::move(source)) {}

  AxolotlTranslation run(const YAML::Node& root) {
    if (root && !root.IsNull() && !root.IsMap())
      throw UserError(location(source_, root.Mark()) +
                      ": an Axolotl config must be a mapping of keys to values");
    if (root && root.IsMap()) {
      collect_plugins(root);
      for (const auto& kv : root) {
        if (kv.first.IsScalar()) translate_top(kv.first, kv.second);
        else refuse(kv.first, "(a list or mapping used as a key)", "a key must be a name");
      }
    }
    if (!refused_.empty()) {
      std::string msg = source_ + ": loom cannot run this Axolotl config as written; "
                        "these keys change what is trained and loom does not support them:";
      for (const auto& r : refused_) msg += "\n  " + r;
      if (!ignored_.empty()) msg += "\n(also ignored, Python tooling only: " + join(ignored_) + ")";
      throw UserError(msg);
    }
    return emit();
  }

 private:
  struct Line {
    std::string key, value, origin;
  };
  using Table = std::vector<Line>;

  static std::string join(const std::vector<std::string>& v) {
    std::string s;
    for (const auto& e : v) s += (s.empty() ? "" : ", ") + e;
    return s;
  }

  std::string at(const YAML::Node& n) const { return location(source_, n.Mark()); }

  void refuse(const YAML::Node& where, const std::string& key, const std::string& why) {
    refused_.push_back(at(where) + ": " + key + ": " + why);
  }
  void ignore(const YAML::Node& where, const std::string& key, const std::string& what) {
    ignored_.push_back(key + " (line " + std::to_string(where.Mark().line + 1) + ", " + what + ")");
  }

  // The YAML value as a TOML value; lists and maps as inline arrays and tables.
  std::string render(const YAML::Node& n, const std::string& key) {
    if (n.IsScalar()) {
      bool b = false;
      long long i = 0;
      double d = 0;
      switch (kind_of(n, &b, &i, &d)) {
        case ScalarKind::Bool: return b ? "true" : "false";
        case ScalarKind::Int: return std::to_string(i);
        case ScalarKind::Float: return toml_float(d);
        case ScalarKind::String:
          if (!valid_utf8(n.Scalar())) throw UserError(at(n) + ": " + key + ": not valid UTF-8");
          return toml_string(n.Scalar());
      }
    }
    if (n.IsSequence()) {
      std::string s = "[";
      for (std::size_t k = 0; k < n.size(); ++k) s += (k ? ", " : "") + render(n[k], key);
      return s + "]";
    }
    if (n.IsMap()) {
      std::string s = "{ ";
      bool first = true;
      for (const auto& kv : n) {
        if (!valid_utf8(kv.first.Scalar()))
          throw UserError(at(kv.first) + ": " + key + ": a key that is not valid UTF-8");
        s += (first ? "" : ", ") + toml_string(kv.first.Scalar()) + " = " +
             render(kv.second, key + "." + kv.first.Scalar());
        first = false;
      }
      return s + " }";
    }
    throw UserError(at(n) + ": " + key + ": a null value inside a list or mapping");
  }

  void put(Table& table, const std::string& table_name, const std::string& key,
           const std::string& value, const YAML::Node& origin) {
    if (!valid_utf8(key)) {
      refused_.push_back(at(origin) + ": " + table_name + ": a key that is not valid UTF-8");
      return;
    }
    for (const auto& l : table)
      if (l.key == key) {
        refused_.push_back(at(origin) + ": " + (table_name.empty() ? "" : table_name + ".") + key +
                           ": given twice (also at " + l.origin + ")");
        return;
      }
    table.push_back({key, value, at(origin)});
  }
  void put_top(const std::string& key, const YAML::Node& v) { put(top_, "", key, render(v, key), v); }
  Table& plugin_table(const std::string& name) {
    for (auto& [n, t] : plugin_tables_)
      if (n == name) return t;
    plugin_tables_.push_back({name, {}});
    return plugin_tables_.back().second;
  }

  void collect_plugins(const YAML::Node& root) {
    const YAML::Node list = root["plugins"];
    if (!list || list.IsNull() || !list.IsSequence()) return;  // a wrong type: see translate_top
    for (const auto& e : list) {
      if (!e.IsScalar()) continue;
      const std::string& spec = e.Scalar();
      if (!valid_utf8(spec)) refused_.push_back(at(e) + ": plugins: an entry that is not valid UTF-8");
      else if (kDiffusionPluginPaths.count(spec)) loom_plugins_.push_back("diffusion");
      else if (spec.find('/') == std::string::npos && spec.find('.') != std::string::npos &&
               spec.size() > 3 && spec.compare(spec.size() - 3, 3, ".so") != 0)
        refused_.push_back(at(e) + ": plugins: unknown plugin path '" + spec +
                           "' (loom runs axolotl.integrations.diffusion.DiffusionPlugin as its "
                           "diffusion plugin; other entries are loom plugin names or paths)");
      else loom_plugins_.push_back(spec);  // a loom plugin name (ema) or a library's path
    }
  }
  bool is_loom_plugin(const std::string& name) const {
    return std::find(loom_plugins_.begin(), loom_plugins_.end(), name) != loom_plugins_.end();
  }

  void diffusion_key(const std::string& key, const std::string& given_as, const YAML::Node& v) {
    if (v.IsNull()) return;  // null: Axolotl's default, which is loom's
    if (!valid_utf8(key)) {
      refused_.push_back(at(v) + ": diffusion: a key that is not valid UTF-8");
      return;
    }
    Table& t = plugin_table("diffusion");
    for (const auto& l : t)
      if (l.key == key) {
        refused_.push_back(at(v) + ": " + given_as + ": diffusion." + key +
                           " given twice (also at " + l.origin + ")");
        return;
      }
    t.push_back({key, render(v, given_as), at(v)});
  }

  void translate_top(const YAML::Node& key_node, const YAML::Node& v) {
    const std::string key = key_node.Scalar();
    if (key == "plugins") {
      if (v.IsNull()) return;
      if (!v.IsSequence()) {
        put_top("plugins", v);  // the TOML check names the wrong type
        return;
      }
      std::string list = "[";
      for (std::size_t i = 0; i < loom_plugins_.size(); ++i)
        list += (i ? ", " : "") + toml_string(loom_plugins_[i]);
      put(top_, "", "plugins", list + "]", v);
      return;
    }
    if (key == "diffusion") {
      if (v.IsMap())
        for (const auto& kv : v)
          diffusion_key(kv.first.Scalar(), "diffusion." + kv.first.Scalar(), kv.second);
      else if (!v.IsNull())
        refuse(v, key, "must be a mapping of the diffusion plugin's keys");
      return;
    }
    if (key.rfind("diffusion_", 0) == 0) {
      diffusion_key(key.substr(10), key, v);
      return;
    }
    if (kBareDiffusionKeys.count(key)) {
      diffusion_key(key, key, v);
      return;
    }
    if (v.IsNull()) return;  // Axolotl's default: the key is as good as absent
    if (key == "lora_target_linear") {  // Axolotl's "every linear layer": loom's "all-linear"
      bool b = false;
      long long i = 0;
      double d = 0;
      if (!v.IsScalar() || kind_of(v, &b, &i, &d) != ScalarKind::Bool)
        refuse(v, key, "must be true or false");
      else if (b)
        put(top_, "", "lora_target_modules", toml_string("all-linear"), v);
      return;
    }
    if (kSameKeys.count(key)) {
      // transformers reads a float below 1 here as a share of the run's steps.
      bool b = false;
      long long i = 0;
      double d = 0;
      if ((key == "eval_steps" || key == "save_steps" || key == "logging_steps") && v.IsScalar() &&
          kind_of(v, &b, &i, &d) == ScalarKind::Float && d > 0 && d < 1) {
        refuse(v, key, "a share of the run's steps (loom: a number of steps)");
        return;
      }
      put_top(key, v);
      return;
    }
    if (key == "model" || key == "tokenizer" || (v.IsMap() && is_loom_plugin(key))) {
      table_key(key, v);
      return;
    }
    if (key == "datasets" || key == "pretraining_dataset") {
      datasets_key(key, v);
      return;
    }
    if (auto it = kToolingKeys.find(key); it != kToolingKeys.end()) {
      if (!is_unset(v)) ignore(v, key, it->second);
      return;
    }
    if (auto it = kRefusedKeys.find(key); it != kRefusedKeys.end()) {
      if (!is_unset(v)) refuse(v, key, it->second);
      return;
    }
    // Families of keys, for the members not listed one by one above.
    static const std::vector<std::pair<std::string, std::string>> tooling_prefixes = {
        {"wandb_", "Weights & Biases"}, {"mlflow_", "MLflow"}, {"comet_", "Comet"},
        {"liger_", "Liger kernel (same math)"}, {"flash_attn_", "fused kernel (same math)"},
        {"torch_compile", "torch.compile"}, {"ddp_", "PyTorch DDP"},
        {"dataloader_", "PyTorch DataLoader"}, {"pretrain_multipack_", "Axolotl's packing set-up"}};
    static const std::vector<std::string> adapter_prefixes = {"lora_", "peft_", "relora_", "loraplus_"};
    for (const auto& [prefix, what] : tooling_prefixes)
      if (key.rfind(prefix, 0) == 0 && key != "ddp_timeout") {  // ddp_timeout: special_key
        if (!is_unset(v)) ignore(v, key, what);
        return;
      }
    for (const auto& prefix : adapter_prefixes)
      if (key.rfind(prefix, 0) == 0) {
        if (!is_unset(v)) refuse(v, key, "adapter training");
        return;
      }
    special_key(key, v);
  }

  // A loom table given as a YAML mapping: model, tokenizer, a loom plugin's table.
  void table_key(const std::string& key, const YAML::Node& v) {
    if (!v.IsMap()) {
      put_top(key, v);  // the TOML check: "must be a table"
      return;
    }
    Table& t = key == "model" ? model_ : key == "tokenizer" ? tokenizer_ : plugin_table(key);
    for (const auto& kv : v) {
      if (kv.second.IsNull()) continue;
      put(t, key, kv.first.Scalar(), render(kv.second, key + "." + kv.first.Scalar()), kv.second);
    }
  }

  void datasets_key(const std::string& key, const YAML::Node& v) {
    if (!datasets_given_.empty()) {
      refuse(v, key, "datasets given twice (also as " + datasets_given_ + "); give one list");
      return;
    }
    datasets_given_ = key;
    // pretraining_dataset may be one mapping instead of a list.
    std::vector<YAML::Node> entries;
    if (v.IsMap() && key == "pretraining_dataset") entries.push_back(v);
    else if (v.IsSequence()) for (const auto& e : v) entries.push_back(e);
    else {
      refuse(v, key, "must be a list of datasets (each a mapping with path and type)");
      return;
    }
    for (const auto& e : entries) {
      if (!e.IsMap()) {
        refuse(e, key, "each entry must be a mapping with path and type");
        continue;
      }
      Table t;
      for (const auto& kv : e) {
        const std::string k = kv.first.Scalar();
        const YAML::Node& x = kv.second;
        const std::string name = key + "." + k;
        if (x.IsNull()) continue;
        if (k == "path" || k == "field" || k == "prompt_field" || k == "response_field") {
          put(t, "datasets", k, render(x, name), x);
        } else if (k == "text_column") {  // pretraining_dataset's name for the text field
          put(t, "datasets", "field", render(x, name), x);
        } else if (k == "type") {
          static const std::set<std::string> types = {"completion", "alpaca", "prompt_response"};
          if (x.IsScalar() && types.count(x.Scalar())) put(t, "datasets", "type", render(x, name), x);
          else if (x.IsScalar())
            refuse(x, name, "dataset type '" + x.Scalar() +
                                "' is not supported (loom reads completion, alpaca, prompt_response)");
          else refuse(x, name, "custom dataset formats are not supported (loom reads completion, "
                               "alpaca, prompt_response)");
        } else if (k == "ds_type") {
          if (!x.IsScalar() || (x.Scalar() != "json" && x.Scalar() != "text"))
            refuse(x, name, "loom reads JSON lines and text files (ds_type json or text)");
        } else if (k == "split") {
          if (!x.IsScalar() || x.Scalar() != "train")
            refuse(x, name, "loom reads the whole file as the train split");
        } else if (k == "streaming" || k == "trust_remote_code") {
          // how Python loads the data; loom reads the file
        } else {
          refuse(x, name, "not supported by loom's dataset reader (it reads local JSONL or text "
                          "files by path, type, field)");
        }
      }
      datasets_.push_back(std::move(t));
    }
  }

  // Keys with a value mapping of their own.
  void special_key(const std::string& key, const YAML::Node& v) {
    const std::string value = v.IsScalar() ? v.Scalar() : "";
    if (key == "num_epochs" || key == "max_steps") {
      put_top(key, v);
      return;
    }
    if (key == "bf16") {
      if (v.IsScalar() && value == "auto") {
        // Axolotl's auto is bf16 where the GPU has it, fp32 elsewhere (as on any CPU); loom's
        // bf16 is explicit, so a config says the same run everywhere.
        put(top_, "", "bf16", "false", v);
        notes_.push_back("bf16: auto is read as bf16 = false (line " +
                         std::to_string(v.Mark().line + 1) +
                         "; write bf16: true for bf16 autocast on a GPU)");
      } else if (v.IsScalar() && value == "full") {
        refuse(v, key, "pure bf16 training (loom keeps fp32 weights; bf16: true autocasts)");
      } else {
        put_top(key, v);
      }
      return;
    }
    if (key == "optimizer") {
      static const std::set<std::string> same = {"adamw", "adamw_torch", "adamw_torch_fused"};
      if (v.IsScalar() && !same.count(value))
        refuse(v, key, "optimizer '" + value + "' is not supported (loom: adamw_torch, adamw_torch_fused)");
      else put_top(key, v);
      return;
    }
    if (key == "lr_scheduler") {
      if (!v.IsScalar()) put_top(key, v);
      else if (value == "cosine" || value == "linear") put_top(key, v);
      else if (value == "constant_with_warmup") put(top_, "", key, toml_string("constant"), v);
      else if (value == "constant") {
        // transformers' constant has no warmup; loom's constant warms up when asked to.
        constant_scheduler_at_ = at(v);
        put_top(key, v);
      } else refuse(v, key, "scheduler '" + value + "' is not supported (loom: cosine, linear, "
                                                    "constant, constant_with_warmup)");
      return;
    }
    if (key == "report_to") report_targets(v);
    else if (key == "use_tensorboard") {
      if (!is_unset(v)) add_report_target("tensorboard", v);
    } else if (key == "ddp_timeout") put(top_, "", "distributed_timeout_s", render(v, key), v);
    else if (key == "tokenizer_config") put(tokenizer_, "tokenizer", "path", render(v, key), v);
    else if (key == "model_type") {
      // The Python class that loads the model; loom takes the layout from base_model's
      // config.json (and refuses one it does not read), so any causal-LM class is the same.
      auto ends_with = [&](const std::string& tail) {
        return value.size() >= tail.size() && value.compare(value.size() - tail.size(), tail.size(), tail) == 0;
      };
      if (!ends_with("ForCausalLM"))
        refuse(v, key, "loom trains causal-LM layouts (a *ForCausalLM class, e.g. AutoModelForCausalLM)");
    } else if (key == "tokenizer_type") {
      // Likewise: loom reads tokenizer.json whatever Python class would have read it.
      if (value.find("Tokenizer") == std::string::npos)
        refuse(v, key, "loom reads the model's tokenizer.json (a *Tokenizer class)");
    } else if (key == "gradient_checkpointing") {
      if (v.IsScalar() && (value == "unsloth" || value == "offload"))
        refuse(v, key, "activation offloading");
      else put_top(key, v);
    } else if (key == "pad_to_sequence_len") {
      // loom pads every row to sequence_len already; the loss is the same either way.
    } else if (key == "shuffle_merged_datasets") {
      if (is_unset(v)) refuse(v, key, "loom always shuffles the documents");
    } else if (key == "save_strategy" || key == "eval_strategy" || key == "evaluation_strategy") {
      if (value != "steps") refuse(v, key, "loom saves and evaluates every N steps (save_steps, eval_steps)");
    } else {
      std::vector<std::string> known(kSameKeys.begin(), kSameKeys.end());
      for (const auto& [k, w] : kToolingKeys) known.push_back(k);
      for (const auto& [k, w] : kRefusedKeys) known.push_back(k);
      for (const char* k : {"num_epochs", "max_steps", "bf16", "optimizer", "lr_scheduler",
                            "report_to", "datasets", "plugins", "model_type", "tokenizer_type",
                            "gradient_checkpointing", "pad_to_sequence_len"})
        known.push_back(k);
      std::string near = closest_key(key, known);
      refuse(v, key, "not a key loom knows" + (near.empty() ? std::string() : " (did you mean '" + near + "'?)"));
    }
  }

  void add_report_target(const std::string& target, const YAML::Node& where) {
    if (std::find(report_to_.begin(), report_to_.end(), target) == report_to_.end())
      report_to_.push_back(target);
    if (report_to_origin_.empty()) report_to_origin_ = at(where);
  }
  void report_targets(const YAML::Node& v) {
    std::vector<YAML::Node> items;
    if (v.IsSequence()) for (const auto& e : v) items.push_back(e);
    else items.push_back(v);
    for (const auto& e : items) {
      if (!e.IsScalar()) {
        put_top("report_to", v);  // the TOML check names the wrong type
        return;
      }
      if (e.Scalar() == "tensorboard" || e.Scalar() == "none") add_report_target(e.Scalar(), e);
      else ignore(e, "report_to: " + e.Scalar(), "a Python logging integration");
    }
  }

  AxolotlTranslation emit() {
    AxolotlTranslation out;
    // transformers: max_steps > 0 overrides num_train_epochs; loom wants one of them.
    auto find = [&](const std::string& k) {
      return std::find_if(top_.begin(), top_.end(), [&](const Line& l) { return l.key == k; });
    };
    if (find("max_steps") != top_.end() && find("num_epochs") != top_.end()) {
      notes_.push_back("num_epochs is ignored: max_steps is given (as in transformers)");
      top_.erase(find("num_epochs"));
    }
    if (!constant_scheduler_at_.empty() && (find("warmup_steps") != top_.end() || find("warmup_ratio") != top_.end()))
      throw UserError(constant_scheduler_at_ +
                      ": lr_scheduler: constant in transformers has no warmup, but a warmup is "
                      "given; write constant_with_warmup (loom's constant) or drop the warmup");
    // A key given both as a value and as a table (model: x and model: {...}, YAML's duplicate
    // keys) or twice through two spellings: one of them would be lost.
    auto twice = [&](const std::string& k, bool again) {
      if (find(k) != top_.end() && again)
        throw UserError(find(k)->origin + ": " + k + " given twice (as a value and as a table or list)");
    };
    twice("model", !model_.empty());
    twice("tokenizer", !tokenizer_.empty());
    twice("report_to", !report_to_.empty());
    for (const auto& [name, t] : plugin_tables_) twice(name, true);
    if (!report_to_.empty()) {
      std::string list = "[";
      for (std::size_t i = 0; i < report_to_.size(); ++i)
        list += (i ? ", " : "") + toml_string(report_to_[i]);
      top_.push_back({"report_to", list + "]", report_to_origin_});
    }

    if (!ignored_.empty())
      out.warning = source_ + ": ignored (they only concern Axolotl's Python tooling): " + join(ignored_);
    if (!notes_.empty())
      out.warning += (out.warning.empty() ? source_ + ": " : "; ") + join(notes_);

    std::ostringstream text;
    auto line = [&](const std::string& s, const std::string& origin) {
      text << s << "\n";
      out.line_origins.push_back(origin);
    };
    line(comment_text("# loom config converted from " + source_ + " (Axolotl YAML) by trainer convert-config"), "");
    if (!ignored_.empty()) line("# ignored (they only concern Axolotl's Python tooling):", "");
    for (const auto& i : ignored_) line(comment_text("#   " + i), "");
    for (const auto& n : notes_) line(comment_text("# note: " + n), "");
    for (const auto& l : top_) line(toml_key(l.key) + " = " + l.value, l.origin);
    auto table = [&](const std::string& header, const Table& t) {
      line("", "");
      line(header, "");
      for (const auto& l : t) line(toml_key(l.key) + " = " + l.value, l.origin);
    };
    if (!model_.empty()) table("[model]", model_);
    if (!tokenizer_.empty()) table("[tokenizer]", tokenizer_);
    for (const auto& d : datasets_) table("[[datasets]]", d);
    for (const auto& [name, t] : plugin_tables_) table("[" + toml_key(name) + "]", t);
    out.toml = text.str();
    return out;
  }

  std::string source_;
  std::vector<std::string> loom_plugins_;
  Table top_, model_, tokenizer_;
  std::vector<Table> datasets_;
  std::vector<std::pair<std::string, Table>> plugin_tables_;
  std::string datasets_given_;
  std::vector<std::string> report_to_;
  std::string report_to_origin_;
  std::string constant_scheduler_at_;
  std::vector<std::string> refused_, ignored_, notes_;
};

}  // namespace

bool is_axolotl_yaml_path(const std::filesystem::path& file) {
  const std::string ext = file.extension().string();
  return ext == ".yml" || ext == ".yaml";
}

AxolotlTranslation translate_axolotl_yaml(const std::string& yaml_text,
                                          const std::string& source_name) {
  auto at = [&](const YAML::Mark& m) {
    // yaml-cpp's marks are 0-based; a mark of -1 (no position) names the file alone.
    if (m.line < 0) return source_name;
    return source_name + ":" + std::to_string(m.line + 1) + ":" + std::to_string(m.column + 1);
  };
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    throw UserError(at(e.mark) + ": not valid YAML: " + e.msg);
  }
  try {
    return AxolotlTranslator(source_name).run(root);
  } catch (const YAML::Exception& e) {  // a node yaml-cpp cannot hand out (none known)
    throw UserError(at(e.mark) + ": " + e.msg);
  }
}

}  // namespace loom
