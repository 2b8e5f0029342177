#include "diffusion_config.hpp"

#include <algorithm>
#include <cmath>
#include <sstream>
#include <stdexcept>

namespace loom::diffusion {

using sdk::ConfigKey;
using sdk::ConfigSection;
using sdk::ConfigType;
using sdk::ConfigValue;

namespace {

constexpr const char* kTable = "[diffusion] ";

std::vector<ConfigKey> build_schema() {
  using sdk::key_bool;
  using sdk::key_float;
  using sdk::key_int;
  using sdk::key_string;
  const double kMaxSteps = 1e6;
  return {
      key_string(
          "noise_schedule", "linear",
          "t -> mask probability: linear p=(1-eps)t+eps, cosine p=(1-eps)(1-cos(pi t/2))+eps",
          {"linear", "cosine"}),
      key_float("min_mask_ratio", 0.1, "lower clamp of the mask probability p", 0.0, 1.0),
      key_float("max_mask_ratio", 0.9, "upper clamp of the mask probability p", 0.0, 1.0),
      key_int("num_diffusion_steps", 128, "default number of reverse steps for `trainer generate`",
              1, kMaxSteps),
      key_float("eps", 1e-3, "minimum masking probability of the schedule", 0.0, 1.0),
      key_bool("importance_weighting", true,
               "divide each masked token's cross-entropy by its mask probability (LLaDA bound)"),
      key_int("mask_token_id", std::nullopt,
              "id of the mask token (must be < vocab size, not pad/eos); unset: use mask_token_str",
              0),
      key_string("mask_token_str", "<|diffusion_mask|>",
                 "mask token text; resolved in the tokenizer, or added as a special token"),
      key_bool("logit_shift", std::nullopt,
               "predict token i from position i-1 (AR-initialised models); unset: shift iff "
               "base_model is set"),
      key_bool("generate_samples", true, "print and record sample generations during training"),
      key_int("generation_interval", 100, "optimizer steps between sample generations", 1, 1e12),
      key_int("num_generation_samples", 3, "sequences generated each time", 1, 64),
      key_int("generation_steps", 128, "reverse steps for samples during training", 1, kMaxSteps),
      key_float("generation_temperature", 0.0,
                "sampling temperature during training (0 = greedy, deterministic)", 0.0, 100.0),
      key_int("generation_max_length", 100, "maximum tokens per generated sample", 1, 1e7),
      key_int("block_length", std::nullopt,
              "semi-autoregressive block length in masked tokens; unset: one block", 1, 1e9),
      key_string("remasking", "low_confidence",
                 "which predictions a reverse step keeps: most confident or random",
                 {"low_confidence", "random"}),
      key_float("cfg_scale", 0.0,
                "classifier-free guidance scale (0 = off; unconditional pass masks the prompt)",
                0.0, 1000.0),
      key_string(
          "t_sampling", "uniform",
          "uniform: independent t per document; stratified: one t per stratum of a row group",
          {"uniform", "stratified"}),
      key_float("random_length_prob", 0.0,
                "probability that a row is cut to a random length in [1, L] (LLaDA pretraining)",
                0.0, 1.0),
      key_int("eval_mc_samples", 4,
              "mask draws (fixed seeds) averaged per evaluation batch for eval/loss", 1, 4096),
  };
}

const ConfigKey& schema_key(const std::vector<ConfigKey>& schema, const std::string& name) {
  for (const auto& k : schema)
    if (k.name == name) return k;
  throw std::logic_error("diffusion: no schema key " + name);
}

std::string format_value(const ConfigValue& v) {
  std::ostringstream os;
  if (auto* b = std::get_if<bool>(&v)) os << (*b ? "true" : "false");
  if (auto* i = std::get_if<std::int64_t>(&v)) os << *i;
  if (auto* d = std::get_if<double>(&v)) os << *d;
  if (auto* s = std::get_if<std::string>(&v)) os << '"' << *s << '"';
  return os.str();
}

[[noreturn]] void fail(const std::string& key, const std::string& what) {
  throw std::invalid_argument(kTable + key + " " + what);
}

// Resolves one key: the user's value if present, else the schema default; validates type,
// range and choices. Returns nullopt for an unset key without default.
std::optional<ConfigValue> lookup(const ConfigSection& section,
                                  const std::vector<ConfigKey>& schema, const std::string& name) {
  const ConfigKey& key = schema_key(schema, name);
  std::optional<ConfigValue> value;
  auto it = section.values().find(name);
  if (it != section.values().end())
    value = it->second;
  else
    value = key.default_value;
  if (!value) return std::nullopt;

  // Type check, widening an integer where a float is declared.
  switch (key.type) {
    case ConfigType::Bool:
      if (!std::holds_alternative<bool>(*value))
        fail(name, "= " + format_value(*value) + " must be a bool");
      break;
    case ConfigType::Int:
      if (auto* d = std::get_if<double>(&*value); d && std::floor(*d) == *d)
        value = static_cast<std::int64_t>(*d);
      if (!std::holds_alternative<std::int64_t>(*value))
        fail(name, "= " + format_value(*value) + " must be an integer");
      break;
    case ConfigType::Float:
      if (auto* i = std::get_if<std::int64_t>(&*value)) value = static_cast<double>(*i);
      if (!std::holds_alternative<double>(*value))
        fail(name, "= " + format_value(*value) + " must be a number");
      break;
    case ConfigType::String:
      if (!std::holds_alternative<std::string>(*value))
        fail(name, "= " + format_value(*value) + " must be a string");
      break;
  }
  if (key.type == ConfigType::Int || key.type == ConfigType::Float) {
    double x = key.type == ConfigType::Int ? static_cast<double>(std::get<std::int64_t>(*value))
                                           : std::get<double>(*value);
    bool bad = std::isnan(x) || (key.min && x < *key.min) || (key.max && x > *key.max);
    if (bad) {
      std::ostringstream os;
      os << "= " << format_value(*value) << " is out of range [";
      if (key.min) os << *key.min;
      os << ", ";
      if (key.max) os << *key.max;
      os << "]";
      fail(name, os.str());
    }
  }
  if (key.type == ConfigType::String && !key.choices.empty()) {
    const auto& s = std::get<std::string>(*value);
    if (std::find(key.choices.begin(), key.choices.end(), s) == key.choices.end()) {
      std::string all;
      for (const auto& c : key.choices) all += (all.empty() ? "" : ", ") + c;
      fail(name, "= " + format_value(*value) + " must be one of: " + all);
    }
  }
  return value;
}

}  // namespace

std::vector<ConfigKey> diffusion_config_schema() { return build_schema(); }

DiffusionConfig parse_diffusion_config(const ConfigSection& section) {
  const auto schema = build_schema();
  for (const auto& [name, value] : section.values()) {
    bool known = std::any_of(schema.begin(), schema.end(),
                             [&](const ConfigKey& k) { return k.name == name; });
    if (!known) fail(name, "is not a diffusion setting");
  }
  auto get = [&](const std::string& n) { return lookup(section, schema, n); };
  auto get_b = [&](const std::string& n) { return std::get<bool>(*get(n)); };
  auto get_i = [&](const std::string& n) { return std::get<std::int64_t>(*get(n)); };
  auto get_f = [&](const std::string& n) { return std::get<double>(*get(n)); };
  auto get_s = [&](const std::string& n) { return std::get<std::string>(*get(n)); };

  DiffusionConfig c;
  c.noise_schedule =
      get_s("noise_schedule") == "cosine" ? NoiseScheduleKind::Cosine : NoiseScheduleKind::Linear;
  c.min_mask_ratio = get_f("min_mask_ratio");
  c.max_mask_ratio = get_f("max_mask_ratio");
  c.eps = get_f("eps");
  c.t_sampling = get_s("t_sampling") == "stratified" ? TSampling::Stratified : TSampling::Uniform;
  c.random_length_prob = get_f("random_length_prob");
  c.importance_weighting = get_b("importance_weighting");
  if (auto v = get("logit_shift")) c.logit_shift = std::get<bool>(*v);
  c.eval_mc_samples = get_i("eval_mc_samples");
  if (auto v = get("mask_token_id")) c.mask_token_id = std::get<std::int64_t>(*v);
  c.mask_token_str = get_s("mask_token_str");
  c.num_diffusion_steps = get_i("num_diffusion_steps");
  if (auto v = get("block_length")) c.block_length = std::get<std::int64_t>(*v);
  c.remasking = get_s("remasking") == "random" ? Remasking::Random : Remasking::LowConfidence;
  c.cfg_scale = get_f("cfg_scale");
  c.generate_samples = get_b("generate_samples");
  c.generation_interval = get_i("generation_interval");
  c.num_generation_samples = get_i("num_generation_samples");
  c.generation_steps = get_i("generation_steps");
  c.generation_temperature = get_f("generation_temperature");
  c.generation_max_length = get_i("generation_max_length");

  // Cross-key rules.
  if (c.min_mask_ratio > c.max_mask_ratio) {
    std::ostringstream os;
    os << "= " << c.min_mask_ratio << " must not exceed max_mask_ratio = " << c.max_mask_ratio;
    fail("min_mask_ratio", os.str());
  }
  if (c.max_mask_ratio <= 0.0)
    fail("max_mask_ratio", "= 0 would never mask a token; use a value in (0, 1]");
  if (c.mask_token_str.empty() && !c.mask_token_id)
    fail("mask_token_str", "is empty and mask_token_id is not set");
  return c;
}

bool resolve_logit_shift(const DiffusionConfig& config, const sdk::RunInfo& run) {
  return config.logit_shift.value_or(!run.base_model.empty());
}

const char* to_string(NoiseScheduleKind kind) {
  return kind == NoiseScheduleKind::Cosine ? "cosine" : "linear";
}
const char* to_string(Remasking remasking) {
  return remasking == Remasking::Random ? "random" : "low_confidence";
}
const char* to_string(TSampling sampling) {
  return sampling == TSampling::Stratified ? "stratified" : "uniform";
}

}  // namespace loom::diffusion
