#include "config/config_loader.hpp"

#include <toml++/toml.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>

#include <spdlog/spdlog.h>

#include "config/axolotl_config.hpp"
#include "config/key_suggestion.hpp"
#include "errors.hpp"

namespace loom {
namespace {

// While a translated Axolotl YAML is parsed, the YAML location of each TOML line (see
// AxolotlTranslation::line_origins), so that errors point into the file the user wrote. Set
// only for the duration of one parse on this thread (YamlOriginsScope).
thread_local const std::vector<std::string>* yaml_line_origins = nullptr;

struct YamlOriginsScope {
  explicit YamlOriginsScope(const std::vector<std::string>& origins) { yaml_line_origins = &origins; }
  ~YamlOriginsScope() { yaml_line_origins = nullptr; }
};

std::string where(const std::string& source, const toml::node& node) {
  // A value given with --set carries the argument as its source (apply_override).
  const auto& path = node.source().path;
  if (path && path->rfind("--set ", 0) == 0) return *path;
  const auto& b = node.source().begin;
  if (yaml_line_origins) {
    if (b.line >= 1 && b.line <= yaml_line_origins->size() && !(*yaml_line_origins)[b.line - 1].empty())
      return (*yaml_line_origins)[b.line - 1];
    return source;
  }
  if (b.line == 0) return source;
  return source + ":" + std::to_string(b.line) + ":" + std::to_string(b.column);
}

// Reads the keys of one TOML table into struct fields, remembering which keys were read so
// the rest can be reported as unknown.
class TableReader {
 public:
  TableReader(const toml::table& table, std::string source, std::string prefix)
      : table_(table), source_(std::move(source)), prefix_(std::move(prefix)) {}

  void read(const char* key, std::int64_t& out, std::optional<std::int64_t> min = {},
            std::optional<std::int64_t> max = {}) {
    known_.push_back(key);
    const toml::node* n = table_.get(key);
    if (!n) return;
    // is_integer() first: value<int64_t>() of a float like 2e24 converts out of range (UB).
    if (!n->is_integer()) fail(*n, key, "must be an integer");
    auto v = n->value<std::int64_t>();
    if (!v) fail(*n, key, "must be an integer");
    if ((min && *v < *min) || (max && *v > *max)) fail(*n, key, range_text(min, max));
    out = *v;
  }
  void read(const char* key, int& out, std::optional<std::int64_t> min = {},
            std::optional<std::int64_t> max = {}) {
    if (!min) min = std::numeric_limits<int>::min();  // an int key holds no more than an int
    if (!max) max = std::numeric_limits<int>::max();
    std::int64_t v = out;
    read(key, v, min, max);
    out = static_cast<int>(v);
  }
  void read(const char* key, std::uint64_t& out) {
    std::int64_t v = static_cast<std::int64_t>(out);
    read(key, v, 0);
    out = static_cast<std::uint64_t>(v);
  }
  void read(const char* key, double& out, std::optional<double> min = {},
            std::optional<double> max = {}, bool exclusive_min = false) {
    known_.push_back(key);
    const toml::node* n = table_.get(key);
    if (!n) return;
    if (!n->is_number()) fail(*n, key, "must be a number");
    double v = n->is_integer() ? static_cast<double>(*n->value<std::int64_t>())
                               : *n->value<double>();
    bool below = min && (exclusive_min ? v <= *min : v < *min);
    if (below || (max && v > *max) || !std::isfinite(v)) {
      std::string lo = min ? (exclusive_min ? "> " : ">= ") + fmt(*min) : "";
      std::string hi = max ? "<= " + fmt(*max) : "";
      fail(*n, key, "must be " + lo + (lo.empty() || hi.empty() ? "" : " and ") + hi);
    }
    out = v;
  }
  void read(const char* key, bool& out) {
    known_.push_back(key);
    const toml::node* n = table_.get(key);
    if (!n) return;
    if (!n->is_boolean()) fail(*n, key, "must be true or false");
    out = *n->value<bool>();
  }
  void read(const char* key, std::string& out, const std::vector<std::string>& choices = {}) {
    known_.push_back(key);
    const toml::node* n = table_.get(key);
    if (!n) return;
    if (!n->is_string()) fail(*n, key, "must be a string");
    std::string v = *n->value<std::string>();
    if (!choices.empty() && std::find(choices.begin(), choices.end(), v) == choices.end()) {
      std::string list;
      for (const auto& c : choices) list += (list.empty() ? "" : ", ") + c;
      fail(*n, key, "must be one of: " + list + " (got \"" + v + "\")");
    }
    out = v;
  }
  void read(const char* key, std::vector<std::string>& out) {
    known_.push_back(key);
    const toml::node* n = table_.get(key);
    if (!n) return;
    const toml::array* arr = n->as_array();
    if (!arr) fail(*n, key, "must be an array of strings");
    out.clear();
    for (const auto& e : *arr) {
      if (!e.is_string()) fail(e, key, "must be an array of strings");
      out.push_back(*e.value<std::string>());
    }
  }
  void read(const char* key, std::map<std::string, std::string>& out) {
    known_.push_back(key);
    const toml::node* n = table_.get(key);
    if (!n) return;
    const toml::table* t = n->as_table();
    if (!t) fail(*n, key, "must be a table of strings");
    for (const auto& [k, v] : *t) {
      if (!v.is_string()) fail(v, key + std::string(".") + std::string(k.str()), "must be a string");
      out[std::string(k.str())] = *v.value<std::string>();
    }
  }
  const std::string& source() const { return source_; }
  // Declares keys handled elsewhere (sub-tables) so they are not reported as unknown.
  void also_known(const char* key) { known_.push_back(key); }

  void reject_unknown(bool skip_tables = false) const {
    for (const auto& [k, v] : table_) {
      std::string key(k.str());
      if (skip_tables && v.is_table()) continue;
      if (std::find(known_.begin(), known_.end(), key) != known_.end()) continue;
      std::string msg = where(source_, v) + ": unknown key '" + prefix_ + key + "'";
      std::string near = closest_key(key, known_);
      if (!near.empty()) msg += " (did you mean '" + prefix_ + near + "'?)";
      throw UserError(msg);
    }
  }

  [[noreturn]] void fail(const toml::node& n, const std::string& key, const std::string& what) const {
    throw UserError(where(source_, n) + ": " + prefix_ + key + " " + what);
  }

 private:
  static std::string fmt(double v) {
    std::ostringstream s;
    s << v;
    return s.str();
  }
  static std::string range_text(std::optional<std::int64_t> min, std::optional<std::int64_t> max) {
    if (min && max) return "must be between " + std::to_string(*min) + " and " + std::to_string(*max);
    if (min) return "must be >= " + std::to_string(*min);
    return "must be <= " + std::to_string(*max);
  }

  const toml::table& table_;
  std::string source_;
  std::string prefix_;
  std::vector<std::string> known_;
};

// special_tokens is a table too (an inline one), read above as a host key.
const std::vector<std::string> kHostTables = {"model", "tokenizer", "special_tokens"};

void read_model(const toml::table& t, const std::string& src, ModelConfig& m) {
  TableReader r(t, src, "model.");
  r.read("vocab_size", m.vocab_size, 0);
  r.read("hidden_size", m.hidden_size, 8);
  r.read("intermediate_size", m.intermediate_size, 1);
  r.read("num_hidden_layers", m.num_hidden_layers, 1);
  r.read("num_attention_heads", m.num_attention_heads, 1);
  r.read("num_key_value_heads", m.num_key_value_heads, 1);
  r.read("max_position_embeddings", m.max_position_embeddings, 2);
  r.read("rope_theta", m.rope_theta, 0.0, {}, true);
  r.read("rms_norm_eps", m.rms_norm_eps, 0.0, {}, true);
  r.read("tie_word_embeddings", m.tie_word_embeddings);
  r.read("initializer_range", m.initializer_range, 0.0, {}, true);
  r.reject_unknown();
  if (m.hidden_size % m.num_attention_heads != 0)
    throw UserError(src + ": model.hidden_size (" + std::to_string(m.hidden_size) +
                    ") must be divisible by model.num_attention_heads (" +
                    std::to_string(m.num_attention_heads) + ")");
  if (m.head_dim() % 2 != 0)
    throw UserError(src + ": model.hidden_size / model.num_attention_heads must be even (RoPE)");
  if (m.num_attention_heads % m.num_key_value_heads != 0)
    throw UserError(src + ": model.num_attention_heads (" +
                    std::to_string(m.num_attention_heads) +
                    ") must be a multiple of model.num_key_value_heads (" +
                    std::to_string(m.num_key_value_heads) + ")");
}

// adapter and the lora_* keys (Axolotl's names). LoRA keys without adapter = "lora" are refused
// rather than ignored: a run that silently trains every weight is not what was asked for.
void read_lora(const toml::table& root, TableReader& r, LoraConfig& lora) {
  std::string adapter;
  r.read("adapter", adapter);
  if (!adapter.empty() && adapter != "lora")
    r.fail(*root.get("adapter"), "adapter",
           "must be \"lora\" (got \"" + adapter + "\"; qlora and other adapters are not supported)");
  lora.enabled = adapter == "lora";
  r.read("lora_r", lora.r, 1, 1 << 16);
  r.read("lora_alpha", lora.alpha, 0.0, {}, true);
  r.read("lora_dropout", lora.dropout, 0.0, 1.0);
  if (const toml::node* d = root.get("lora_dropout"); d && lora.dropout >= 1.0)
    r.fail(*d, "lora_dropout", "must be >= 0 and < 1");
  // A string (Axolotl's "all-linear") or an array of module names.
  if (const toml::node* t = root.get("lora_target_modules"); t && t->is_string()) {
    r.also_known("lora_target_modules");
    lora.target_modules = {*t->value<std::string>()};
  } else {
    r.read("lora_target_modules", lora.target_modules);
  }
  r.read("lora_modules_to_save", lora.modules_to_save);
  for (const char* key : {"lora_r", "lora_alpha", "lora_dropout", "lora_target_modules",
                          "lora_modules_to_save"}) {
    if (!lora.enabled && root.contains(key))
      r.fail(*root.get(key), key, "is a LoRA key: set adapter = \"lora\" to train adapters");
  }
  if (!lora.enabled) return;
  if (lora.target_modules.empty())
    throw UserError(r.source() + ": adapter = \"lora\" needs lora_target_modules (module names "
                    "such as [\"q_proj\", \"v_proj\"], or \"all-linear\")");
  for (const auto& m : lora.target_modules)
    if (m == "all-linear" && lora.target_modules.size() > 1)
      r.fail(*root.get("lora_target_modules"), "lora_target_modules",
             "\"all-linear\" stands alone (it already names every linear layer)");
}

void read_datasets(const toml::node& node, const std::string& src, std::vector<DatasetConfig>& out) {
  const toml::array* arr = node.as_array();
  if (!arr || !arr->is_array_of_tables())
    throw UserError(where(src, node) + ": datasets must be an array of tables ([[datasets]])");
  for (const auto& e : *arr) {
    const toml::table& t = *e.as_table();
    DatasetConfig d;
    TableReader r(t, src, "datasets.");
    r.read("path", d.path);
    r.read("type", d.type, {"completion", "alpaca", "prompt_response"});
    r.read("field", d.field);
    r.read("prompt_field", d.prompt_field);
    r.read("response_field", d.response_field);
    r.reject_unknown();
    if (d.path.empty()) throw UserError(where(src, e) + ": datasets entry needs a path");
    out.push_back(d);
  }
}

// Converts a plugin table's TOML values to SDK values (scalars only).
std::map<std::string, sdk::ConfigValue> plugin_values(const toml::table& t, const std::string& src,
                                                      const std::string& table,
                                                      std::map<std::string, std::string>& sources) {
  std::map<std::string, sdk::ConfigValue> out;
  for (const auto& [k, v] : t) {
    std::string key(k.str());
    sources[key] = where(src, v);
    if (v.is_boolean()) out[key] = *v.value<bool>();
    else if (v.is_integer()) out[key] = *v.value<std::int64_t>();
    else if (v.is_floating_point()) out[key] = *v.value<double>();
    else if (v.is_string()) out[key] = *v.value<std::string>();
    else
      throw UserError(where(src, v) + ": " + table + "." + key +
                      " must be a boolean, number or string");
  }
  return out;
}

void apply_override(toml::table& root, const std::string& assignment) {
  auto eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0)
    throw UserError("--set " + assignment + ": expected key=value");
  std::string path = assignment.substr(0, eq);
  std::string text = assignment.substr(eq + 1);
  // Parsed with the argument as its source, so errors about the value name the --set.
  const std::string source = "--set " + assignment;
  toml::table parsed;
  try {
    parsed = toml::parse("v = " + text, source);
  } catch (const toml::parse_error&) {
    std::ostringstream quoted;  // a bare word: take it as a string
    quoted << toml::table{{"v", text}};
    parsed = toml::parse(quoted.str(), source);
  }
  toml::table* t = &root;
  std::size_t start = 0;
  for (std::size_t dot; (dot = path.find('.', start)) != std::string::npos; start = dot + 1) {
    std::string part = path.substr(start, dot - start);
    toml::node* child = t->get(part);
    if (!child) child = &t->insert_or_assign(part, toml::table{}).first->second;
    if (!child->is_table()) throw UserError("--set " + assignment + ": " + part + " is not a table");
    t = child->as_table();
  }
  t->insert_or_assign(path.substr(start), std::move(*parsed.get("v")));
}

}  // namespace

TrainConfig parse_train_config(const std::string& toml_text, const std::string& source_name,
                               const std::vector<std::string>& overrides) {
  toml::table root;
  try {
    root = toml::parse(toml_text, source_name);
  } catch (const toml::parse_error& e) {
    const auto& b = e.source().begin;
    throw UserError(source_name + ":" + std::to_string(b.line) + ":" + std::to_string(b.column) +
                    ": not valid TOML: " + std::string(e.description()));
  }
  for (const auto& o : overrides) apply_override(root, o);

  TrainConfig c;
  c.source = source_name;
  const std::string& src = source_name;
  TableReader r(root, src, "");
  r.read("base_model", c.base_model);
  r.read("output_dir", c.output_dir);
  r.read("seed", c.seed);
  r.read("plugins", c.plugins);
  r.read("sequence_len", c.sequence_len, 8, 1 << 20);
  r.read("sample_packing", c.sample_packing);
  r.read("val_set_size", c.val_set_size, 0.0);
  r.read("micro_batch_size", c.micro_batch_size, 1);
  r.read("gradient_accumulation_steps", c.gradient_accumulation_steps, 1);
  r.read("learning_rate", c.learning_rate, 0.0, 10.0, true);
  r.read("lr_scheduler", c.lr_scheduler, {"cosine", "linear", "constant"});
  r.read("warmup_steps", c.warmup_steps, 0);
  r.read("warmup_ratio", c.warmup_ratio, 0.0, 1.0);
  r.read("max_steps", c.max_steps, 1);
  r.read("num_epochs", c.num_epochs, 0.0, {}, true);
  r.read("optimizer", c.optimizer, {"adamw", "adamw_torch", "adamw_torch_fused"});
  r.read("weight_decay", c.weight_decay, 0.0);
  r.read("adam_beta1", c.adam_beta1, 0.0, 1.0);
  r.read("adam_beta2", c.adam_beta2, 0.0, 1.0);
  r.read("adam_epsilon", c.adam_epsilon, 0.0, {}, true);
  r.read("max_grad_norm", c.max_grad_norm, 0.0);
  r.read("bf16", c.bf16);
  r.read("gradient_checkpointing", c.gradient_checkpointing);
  r.read("attn_implementation", c.attn_implementation, {"auto", "sdpa", "fused_cpu", "eager"});
  r.read("logging_steps", c.logging_steps, 1);
  r.read("report_to", c.report_to);
  r.read("eval_steps", c.eval_steps, 0);
  r.read("eval_max_batches", c.eval_max_batches, 0);
  r.read("save_steps", c.save_steps, 0);
  r.read("save_total_limit", c.save_total_limit, 0);
  r.read("special_tokens", c.special_tokens);
  r.read("threads", c.threads, 0, 1024);
  r.read("device", c.device, {"auto", "cpu", "cuda"});
  r.read("distributed_backend", c.distributed_backend, {"auto", "gloo", "nccl"});
  r.read("distributed_timeout_s", c.distributed_timeout_s, 0.0, 1e7, true);
  read_lora(root, r, c.lora);
  if (c.lora.enabled && c.base_model.empty())
    r.fail(*root.get("adapter"), "adapter",
           "= \"lora\" needs base_model (the model whose weights the adapters train on)");
  r.also_known("datasets");
  for (const auto& t : kHostTables) r.also_known(t.c_str());
  if (c.optimizer != "adamw") c.optimizer = "adamw";  // Axolotl's spellings of the same thing
  {
    // transformers' values: "none" switches reporting off; every other integration (wandb,
    // mlflow, ...) is a Python library loom does not have, so it is refused rather than ignored.
    std::vector<std::string> wanted;
    for (const auto& target : c.report_to) {
      if (target == "none") continue;
      if (target != "tensorboard")
        r.fail(*root.get("report_to"), "report_to",
               "entries must be \"tensorboard\" or \"none\" (got \"" + target + "\")");
      if (std::find(wanted.begin(), wanted.end(), target) == wanted.end()) wanted.push_back(target);
    }
    c.report_to = wanted;
  }

  if (const toml::table* m = root["model"].as_table()) read_model(*m, src, c.model);
  else if (root.contains("model")) r.fail(*root.get("model"), "model", "must be a table");
  if (const toml::table* t = root["tokenizer"].as_table()) {
    TableReader tr(*t, src, "tokenizer.");
    tr.read("path", c.tokenizer.path);
    tr.reject_unknown();
  }
  if (const toml::node* d = root.get("datasets")) read_datasets(*d, src, c.datasets);

  // Remaining tables belong to plugins (checked against their schemas once the plugins are
  // loaded); any other unknown key is an error now.
  r.reject_unknown(/*skip_tables=*/true);
  for (const auto& [k, v] : root) {
    std::string key(k.str());
    if (v.is_table() && std::find(kHostTables.begin(), kHostTables.end(), key) == kHostTables.end())
      c.plugin_tables[key] = plugin_values(*v.as_table(), src, key, c.plugin_key_sources[key]);
  }
  if (c.warmup_steps >= 0 && root.contains("warmup_ratio"))
    throw UserError(src + ": give warmup_steps or warmup_ratio, not both");
  if (c.max_steps > 0 && root.contains("num_epochs"))
    throw UserError(src + ": give max_steps or num_epochs, not both");
  std::ostringstream resolved;
  resolved << root;
  c.resolved_toml = resolved.str();
  return c;
}

void record_command_line_plugins(TrainConfig& config, const std::vector<std::string>& specs) {
  if (specs.empty()) return;
  toml::table root = toml::parse(config.resolved_toml);
  toml::array* list = root["plugins"].as_array();
  if (!list) {
    root.insert_or_assign("plugins", toml::array{});
    list = root["plugins"].as_array();
  }
  for (const auto& spec : specs) {
    // As the plugin search path reads a spec: with a '/' it is a path, else a name (diffusion,
    // libdiffusion.so) looked up on the search path, which stays valid from anywhere.
    const bool is_path = spec.find('/') != std::string::npos;
    const std::string entry =
        is_path ? std::filesystem::absolute(spec).lexically_normal().string() : spec;
    bool present = false;
    for (const auto& e : *list) present |= e.value<std::string>() == entry;
    if (present) continue;
    list->push_back(entry);
    config.plugins.push_back(entry);
  }
  std::ostringstream out;
  out << root;
  config.resolved_toml = out.str();
}

TrainConfig load_train_config(const std::filesystem::path& file,
                              const std::vector<std::string>& overrides) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw UserError(file.string() + ": cannot open config file");
  std::stringstream text;
  text << in.rdbuf();
  if (is_axolotl_yaml_path(file)) {
    // Translated to loom's TOML, then validated like any TOML config.
    const AxolotlTranslation yaml = translate_axolotl_yaml(text.str(), file.string());
    if (!yaml.warning.empty()) spdlog::warn("{}", yaml.warning);
    YamlOriginsScope origins(yaml.line_origins);
    return parse_train_config(yaml.toml, file.string(), overrides);
  }
  TrainConfig c = parse_train_config(text.str(), file.string(), overrides);
  // Relative data and tokenizer paths are relative to the directory the trainer runs in, as in
  // Axolotl; nothing to rewrite here.
  return c;
}

sdk::ConfigSection validate_plugin_section(const std::string& plugin_name,
                                           const std::vector<sdk::ConfigKey>& schema,
                                           const std::map<std::string, sdk::ConfigValue>& given,
                                           const std::string& source_name,
                                           const std::map<std::string, std::string>& key_sources) {
  auto at = [&](const std::string& key) {
    auto it = key_sources.find(key);
    return it != key_sources.end() ? it->second : source_name;
  };
  std::map<std::string, sdk::ConfigValue> out;
  std::vector<std::string> names;
  for (const auto& k : schema) names.push_back(k.name);
  for (const auto& [key, value] : given) {
    if (std::find(names.begin(), names.end(), key) != names.end()) continue;
    std::string msg = at(key) + ": unknown key '" + plugin_name + "." + key + "'";
    std::string near = closest_key(key, names);
    if (!near.empty()) msg += " (did you mean '" + plugin_name + "." + near + "'?)";
    throw UserError(msg);
  }
  for (const auto& k : schema) {
    auto it = given.find(k.name);
    std::string name = plugin_name + "." + k.name;
    if (it == given.end()) {
      if (k.default_value) out[k.name] = *k.default_value;
      continue;
    }
    sdk::ConfigValue v = it->second;
    auto bad_type = [&] {
      throw UserError(at(k.name) + ": " + name + " must be of type " + sdk::to_string(k.type));
    };
    switch (k.type) {
      case sdk::ConfigType::Bool:
        if (!std::holds_alternative<bool>(v)) bad_type();
        break;
      case sdk::ConfigType::Int:
        if (!std::holds_alternative<std::int64_t>(v)) bad_type();
        break;
      case sdk::ConfigType::Float:
        if (auto* i = std::get_if<std::int64_t>(&v)) v = static_cast<double>(*i);
        if (!std::holds_alternative<double>(v)) bad_type();
        break;
      case sdk::ConfigType::String:
        if (!std::holds_alternative<std::string>(v)) bad_type();
        break;
    }
    double num = 0;
    if (auto* i = std::get_if<std::int64_t>(&v)) num = static_cast<double>(*i);
    if (auto* d = std::get_if<double>(&v)) num = *d;
    if (std::isnan(num) || (k.min && num < *k.min) || (k.max && num > *k.max)) {
      std::ostringstream m;
      m << at(k.name) << ": " << name << " = " << num << " is out of range";
      if (k.min && k.max) m << " [" << *k.min << ", " << *k.max << "]";
      else if (k.min) m << " (must be >= " << *k.min << ")";
      else m << " (must be <= " << *k.max << ")";
      throw UserError(m.str());
    }
    if (auto* s = std::get_if<std::string>(&v); s && !k.choices.empty() &&
        std::find(k.choices.begin(), k.choices.end(), *s) == k.choices.end()) {
      std::string list;
      for (const auto& c : k.choices) list += (list.empty() ? "" : ", ") + c;
      throw UserError(at(k.name) + ": " + name + " must be one of: " + list + " (got \"" + *s +
                      "\")");
    }
    out[k.name] = v;
  }
  return sdk::ConfigSection(plugin_name, std::move(out));
}

}  // namespace loom
