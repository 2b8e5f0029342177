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
      key_bool("mask_eos", false,
               "mask and predict EOS like other labelled tokens (LLaDA SFT: the model learns where "
               "answers end, for stop_at_eos); false: never masked (Axolotl)"),
      key_int("mask_token_id", std::nullopt,
              "id of the mask token (must be < vocab size, not pad/eos); unset: the checkpoint's own "
              "(LLaDA, Dream), else mask_token_str",
              0),
      key_string("mask_token_str", "<|diffusion_mask|>",
                 "mask token text; resolved in the tokenizer, or added as a special token"),
      key_bool("logit_shift", std::nullopt,
               "predict token i from position i-1 (AR-initialised models); unset: as the checkpoint's "
               "layout says (LLaDA: no, Dream: yes), else shift iff base_model is set"),
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
                 "which predictions a reverse step keeps: highest probability (low_confidence), "
                 "random, lowest entropy (entropy) or largest top-1 minus top-2 probability "
                 "(margin)",
                 {"low_confidence", "random", "entropy", "margin"}),
      key_float("threshold", std::nullopt,
                "parallel decoding: each step reveals every masked position of the block whose "
                "confidence is >= threshold (at least one); unset: LLaDA's fixed schedule",
                0.0, 1.0),
      key_float("factor", std::nullopt,
                "parallel decoding (Fast-dLLM's dynamic rule): reveal the top n while the n-th "
                "confidence is >= 1 - factor / (n + 1) (at least one); unset: fixed schedule",
                0.0),
      key_string("cache", "none",
                 "key/value cache while sampling: none, prefix (positions before the block "
                 "computed once per block) or dual (every position outside the block)",
                 {"none", "prefix", "dual"}),
      key_int("top_k", 0, "sample only among the k most likely tokens (0 = off)", 0, 1e9),
      key_float("top_p", 1.0, "sample only within the top-p nucleus, in (0, 1] (1 = off)", 0.0,
                1.0),
      key_bool("stop_at_eos", false,
               "a sequence ends once an EOS is revealed with everything before it revealed: "
               "the rest becomes EOS and costs no more forward passes"),
      key_bool("suppress_eos", false,
               "never generate EOS (its logit is -inf; for answers of a fixed length)"),
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

[[noreturn]] void fail(const std::string& key, const std::string& what) {
  throw std::invalid_argument("[diffusion] " + key + " " + what);
}

}  // namespace

std::vector<ConfigKey> diffusion_config_schema() { return build_schema(); }

DiffusionConfig parse_diffusion_config(const ConfigSection& section) {
  // The host has validated the table against the schema (types, ranges, choices, unknown
  // keys) and filled in defaults; a key missing here (a section the host did not build, as
  // when configure() was never called) takes its schema default. Only rules between keys are
  // checked below.
  const auto schema = build_schema();
  auto get = [&](const std::string& n) -> std::optional<ConfigValue> {
    if (section.has(n)) return section.values().at(n);
    for (const auto& k : schema)
      if (k.name == n) return k.default_value;
    throw std::logic_error("diffusion: no schema key " + n);
  };
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
  c.mask_eos = get_b("mask_eos");
  if (auto v = get("logit_shift")) c.logit_shift = std::get<bool>(*v);
  c.eval_mc_samples = get_i("eval_mc_samples");
  if (auto v = get("mask_token_id")) c.mask_token_id = std::get<std::int64_t>(*v);
  c.mask_token_str = get_s("mask_token_str");
  c.num_diffusion_steps = get_i("num_diffusion_steps");
  if (auto v = get("block_length")) c.block_length = std::get<std::int64_t>(*v);
  const std::string remasking = get_s("remasking");
  c.remasking = remasking == "random"    ? Remasking::Random
                : remasking == "entropy" ? Remasking::Entropy
                : remasking == "margin"  ? Remasking::Margin
                                         : Remasking::LowConfidence;
  c.cfg_scale = get_f("cfg_scale");
  if (auto v = get("threshold")) c.threshold = std::get<double>(*v);
  if (auto v = get("factor")) c.factor = std::get<double>(*v);
  const std::string cache = get_s("cache");
  c.cache = cache == "prefix" ? CacheMode::Prefix
            : cache == "dual" ? CacheMode::Dual
                              : CacheMode::None;
  c.top_k = get_i("top_k");
  c.top_p = get_f("top_p");
  c.stop_at_eos = get_b("stop_at_eos");
  c.suppress_eos = get_b("suppress_eos");
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
  if (c.threshold && !(*c.threshold > 0.0 && *c.threshold <= 1.0)) {
    std::ostringstream os;
    os << "= " << *c.threshold << " must be in (0, 1]";
    fail("threshold", os.str());
  }
  if (c.factor && !(*c.factor > 0.0)) {
    std::ostringstream os;
    os << "= " << *c.factor << " must be > 0";
    fail("factor", os.str());
  }
  if (c.threshold && c.factor)
    fail("threshold", "and factor are both set: they are two rules for the same choice, set one");
  // Both rules compare a confidence with a probability: random draws and negative entropies
  // are no such thing.
  if ((c.threshold || c.factor) &&
      (c.remasking == Remasking::Random || c.remasking == Remasking::Entropy))
    fail("remasking", std::string("= \"") + to_string(c.remasking) + "\" cannot be used with " +
                          (c.threshold ? "threshold" : "factor") +
                          ", which compare a probability: use low_confidence or margin");
  if (!(c.top_p > 0.0 && c.top_p <= 1.0)) {
    std::ostringstream os;
    os << "= " << c.top_p << " must be in (0, 1]";
    fail("top_p", os.str());
  }
  if (c.top_k < 0) fail("top_k", "= " + std::to_string(c.top_k) + " must be >= 0 (0 = off)");
  if (c.stop_at_eos && c.suppress_eos)
    fail("stop_at_eos", "and suppress_eos are both set: with EOS suppressed it never stops");
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
  switch (remasking) {
    case Remasking::Random:
      return "random";
    case Remasking::Entropy:
      return "entropy";
    case Remasking::Margin:
      return "margin";
    case Remasking::LowConfidence:
      break;
  }
  return "low_confidence";
}
const char* to_string(CacheMode cache) {
  return cache == CacheMode::Prefix ? "prefix" : cache == CacheMode::Dual ? "dual" : "none";
}
const char* to_string(TSampling sampling) {
  return sampling == TSampling::Stratified ? "stratified" : "uniform";
}

}  // namespace loom::diffusion
