// The [diffusion] table: its schema (every key with default, range and help) and its
// parsing into a plain, validated struct that the rest of the plugin reads.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "loom/sdk.hpp"

namespace loom::diffusion {

enum class NoiseScheduleKind { Linear, Cosine };
// Which predictions a reverse step keeps: the highest confidence, where confidence is the
// probability of the prediction (LowConfidence), a uniform draw (Random), the position's
// negative entropy (Entropy) or its top-1 minus top-2 probability (Margin).
enum class Remasking { LowConfidence, Random, Entropy, Margin };
// Key/value cache while sampling (Fast-dLLM): None, Prefix (positions before the block are
// cached once per block), Dual (every position outside the block is).
enum class CacheMode { None, Prefix, Dual };
enum class TSampling { Uniform, Stratified };

struct DiffusionConfig {
  // forward process
  NoiseScheduleKind noise_schedule = NoiseScheduleKind::Linear;
  double min_mask_ratio = 0.1;
  double max_mask_ratio = 0.9;
  double eps = 1e-3;
  TSampling t_sampling = TSampling::Uniform;
  double random_length_prob = 0.0;
  // loss
  bool importance_weighting = true;
  // The EOS token is masked and predicted like any other labelled token (LLaDA's SFT), so the
  // model learns where an answer ends (what stop_at_eos needs); false: never masked, as
  // Axolotl does with every special token.
  bool mask_eos = false;
  std::optional<bool> logit_shift;  // unset: auto (shift when the run has a base_model)
  std::int64_t eval_mc_samples = 4;
  // mask token
  std::optional<std::int64_t> mask_token_id;
  std::string mask_token_str = "<|diffusion_mask|>";
  // sampling
  std::int64_t num_diffusion_steps = 128;
  std::optional<std::int64_t> block_length;  // unset: the whole generated span is one block
  Remasking remasking = Remasking::LowConfidence;
  double cfg_scale = 0.0;
  std::optional<double> threshold;  // parallel decoding: reveal every confidence >= threshold
  std::optional<double> factor;     // parallel decoding: Fast-dLLM's dynamic rule
  CacheMode cache = CacheMode::None;
  std::int64_t top_k = 0;  // 0: off
  double top_p = 1.0;      // 1: off
  bool stop_at_eos = false;
  bool suppress_eos = false;
  // sample generation during training
  bool generate_samples = true;
  std::int64_t generation_interval = 100;
  std::int64_t num_generation_samples = 3;
  std::int64_t generation_steps = 128;
  double generation_temperature = 0.0;
  std::int64_t generation_max_length = 100;
};

// The schema the host validates the user's table against (and prints in `trainer plugins`).
std::vector<sdk::ConfigKey> diffusion_config_schema();

// Builds the config from a section; keys missing from `section` take their schema default.
// Throws std::invalid_argument naming the key for any out-of-range, unknown-choice, wrongly
// typed or inconsistent value (e.g. min_mask_ratio > max_mask_ratio).
DiffusionConfig parse_diffusion_config(const sdk::ConfigSection& section);

// Whether the loss and sampler predict token i from position i-1.
bool resolve_logit_shift(const DiffusionConfig& config, const sdk::RunInfo& run);

const char* to_string(NoiseScheduleKind kind);
const char* to_string(Remasking remasking);
const char* to_string(TSampling sampling);
const char* to_string(CacheMode cache);

}  // namespace loom::diffusion
