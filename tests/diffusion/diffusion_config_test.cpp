#include <gtest/gtest.h>

#include <set>

#include "config/config_loader.hpp"
#include "diffusion_config.hpp"

namespace loom::diffusion {
namespace {

// As the plugin receives it: validated by the host against the plugin's schema, the one
// validation of plugin tables (types, ranges, choices, unknown keys, defaults).
sdk::ConfigSection section(std::map<std::string, sdk::ConfigValue> values) {
  return validate_plugin_section("diffusion", diffusion_config_schema(), values, "c.toml");
}

// The error names the key (and the table): the host's checks as diffusion.<key>, the plugin's
// rules between keys as [diffusion] <key>.
void expect_error_naming(std::map<std::string, sdk::ConfigValue> values, const std::string& key) {
  try {
    parse_diffusion_config(section(std::move(values)));
    FAIL() << "expected an error naming " << key;
  } catch (const std::exception& e) {
    const std::string what = e.what();
    EXPECT_TRUE(what.find("diffusion." + key) != std::string::npos ||
                what.find("[diffusion] " + key) != std::string::npos)
        << what;
  }
}

TEST(DiffusionConfig, SchemaDeclaresEveryKeyOfTheIssueWithHelp) {
  const std::set<std::string> expected = {"noise_schedule",
                                          "min_mask_ratio",
                                          "max_mask_ratio",
                                          "num_diffusion_steps",
                                          "eps",
                                          "importance_weighting",
                                          "mask_token_id",
                                          "mask_token_str",
                                          "logit_shift",
                                          "generate_samples",
                                          "generation_interval",
                                          "num_generation_samples",
                                          "generation_steps",
                                          "generation_temperature",
                                          "generation_max_length",
                                          "block_length",
                                          "remasking",
                                          "cfg_scale",
                                          "t_sampling",
                                          "random_length_prob",
                                          "eval_mc_samples",
                                          "threshold",
                                          "factor",
                                          "cache",
                                          "top_k",
                                          "top_p",
                                          "stop_at_eos",
                                          "suppress_eos",
                                          "mask_eos"};
  std::set<std::string> names;
  for (const auto& key : diffusion_config_schema()) {
    names.insert(key.name);
    EXPECT_FALSE(key.help.empty()) << key.name;
  }
  EXPECT_EQ(names, expected);
}

TEST(DiffusionConfig, DefaultsMatchTheIssue) {
  const auto c = parse_diffusion_config(section({}));
  EXPECT_EQ(c.noise_schedule, NoiseScheduleKind::Linear);
  EXPECT_DOUBLE_EQ(c.min_mask_ratio, 0.1);
  EXPECT_DOUBLE_EQ(c.max_mask_ratio, 0.9);
  EXPECT_EQ(c.num_diffusion_steps, 128);
  EXPECT_DOUBLE_EQ(c.eps, 1e-3);
  EXPECT_TRUE(c.importance_weighting);
  EXPECT_FALSE(c.mask_token_id.has_value());
  EXPECT_EQ(c.mask_token_str, "<|diffusion_mask|>");
  EXPECT_FALSE(c.logit_shift.has_value());
  EXPECT_TRUE(c.generate_samples);
  EXPECT_EQ(c.generation_interval, 100);
  EXPECT_EQ(c.num_generation_samples, 3);
  EXPECT_EQ(c.generation_steps, 128);
  EXPECT_DOUBLE_EQ(c.generation_temperature, 0.0);
  EXPECT_EQ(c.generation_max_length, 100);
  EXPECT_FALSE(c.block_length.has_value());
  EXPECT_EQ(c.remasking, Remasking::LowConfidence);
  EXPECT_DOUBLE_EQ(c.cfg_scale, 0.0);
  EXPECT_EQ(c.t_sampling, TSampling::Uniform);
  EXPECT_DOUBLE_EQ(c.random_length_prob, 0.0);
  EXPECT_EQ(c.eval_mc_samples, 4);
}

TEST(DiffusionConfig, ParsesUserValuesAndWidensIntegersToFloats) {
  const auto c = parse_diffusion_config(section({
      {"noise_schedule", std::string("cosine")},
      {"min_mask_ratio", 0.15},
      {"max_mask_ratio", std::int64_t{1}},
      {"eps", 5e-4},
      {"mask_token_id", std::int64_t{128002}},
      {"logit_shift", false},
      {"block_length", std::int64_t{32}},
      {"remasking", std::string("random")},
      {"t_sampling", std::string("stratified")},
  }));
  EXPECT_EQ(c.noise_schedule, NoiseScheduleKind::Cosine);
  EXPECT_DOUBLE_EQ(c.max_mask_ratio, 1.0);
  EXPECT_EQ(c.mask_token_id.value(), 128002);
  EXPECT_EQ(c.logit_shift.value(), false);
  EXPECT_EQ(c.block_length.value(), 32);
  EXPECT_EQ(c.remasking, Remasking::Random);
  EXPECT_EQ(c.t_sampling, TSampling::Stratified);
}

TEST(DiffusionConfig, LogitShiftAutoFollowsBaseModel) {
  const auto c = parse_diffusion_config(section({}));
  sdk::RunInfo scratch, adapted;
  adapted.base_model = "meta-llama/Llama-3.2-1B";
  EXPECT_FALSE(resolve_logit_shift(c, scratch));
  EXPECT_TRUE(resolve_logit_shift(c, adapted));
  const auto forced = parse_diffusion_config(section({{"logit_shift", false}}));
  EXPECT_FALSE(resolve_logit_shift(forced, adapted));
}

TEST(DiffusionConfig, SamplerKeysParse) {
  const auto d = parse_diffusion_config(section({}));
  EXPECT_FALSE(d.threshold.has_value());
  EXPECT_FALSE(d.factor.has_value());
  EXPECT_EQ(d.cache, CacheMode::None);
  EXPECT_EQ(d.top_k, 0);
  EXPECT_DOUBLE_EQ(d.top_p, 1.0);
  EXPECT_FALSE(d.stop_at_eos);
  EXPECT_FALSE(d.suppress_eos);
  const auto c = parse_diffusion_config(section({{"threshold", 0.9},
                                                 {"cache", std::string("dual")},
                                                 {"remasking", std::string("margin")},
                                                 {"top_k", std::int64_t{50}},
                                                 {"top_p", 0.95},
                                                 {"stop_at_eos", true}}));
  EXPECT_DOUBLE_EQ(c.threshold.value_or(0), 0.9);
  EXPECT_EQ(c.cache, CacheMode::Dual);
  EXPECT_EQ(c.remasking, Remasking::Margin);
  EXPECT_EQ(c.top_k, 50);
  EXPECT_DOUBLE_EQ(c.top_p, 0.95);
  EXPECT_TRUE(c.stop_at_eos);
  const auto f = parse_diffusion_config(
      section({{"factor", 1.0}, {"cache", std::string("prefix")}, {"suppress_eos", true}}));
  EXPECT_DOUBLE_EQ(f.factor.value_or(0), 1.0);
  EXPECT_EQ(f.cache, CacheMode::Prefix);
  EXPECT_TRUE(f.suppress_eos);
  // Entropy (not a probability) goes with LLaDA's fixed schedule.
  EXPECT_EQ(parse_diffusion_config(section({{"remasking", std::string("entropy")}})).remasking,
            Remasking::Entropy);
}

TEST(DiffusionConfig, BadValuesThrowNamingTheKey) {
  expect_error_naming({{"min_mask_ratio", 0.9}, {"max_mask_ratio", 0.1}}, "min_mask_ratio");
  expect_error_naming({{"min_mask_ratio", -0.1}}, "min_mask_ratio");
  expect_error_naming({{"max_mask_ratio", 1.5}}, "max_mask_ratio");
  expect_error_naming({{"eps", 2.0}}, "eps");
  expect_error_naming({{"generation_steps", std::int64_t{0}}}, "generation_steps");
  expect_error_naming({{"num_diffusion_steps", std::int64_t{-3}}}, "num_diffusion_steps");
  expect_error_naming({{"generation_interval", std::int64_t{0}}}, "generation_interval");
  expect_error_naming({{"mask_token_id", std::int64_t{-1}}}, "mask_token_id");
  expect_error_naming({{"noise_schedule", std::string("quadratic")}}, "noise_schedule");
  expect_error_naming({{"remasking", std::string("topk")}}, "remasking");
  expect_error_naming({{"t_sampling", std::string("sobol")}}, "t_sampling");
  expect_error_naming({{"random_length_prob", 1.01}}, "random_length_prob");
  expect_error_naming({{"eval_mc_samples", std::int64_t{0}}}, "eval_mc_samples");
  expect_error_naming({{"generation_temperature", -1.0}}, "generation_temperature");
  expect_error_naming({{"cfg_scale", -0.5}}, "cfg_scale");
  expect_error_naming({{"importance_weighting", std::string("yes")}}, "importance_weighting");
  expect_error_naming({{"generation_steps", 2.5}}, "generation_steps");
  expect_error_naming({{"not_a_key", true}}, "not_a_key");
  // One set of rules: an integer key given as a float is refused (3.0 as much as 2.5), a
  // float key takes an integer.
  expect_error_naming({{"generation_steps", 3.0}}, "generation_steps");
  // Issue 13's sampler keys.
  expect_error_naming({{"threshold", 0.0}}, "threshold");
  expect_error_naming({{"threshold", -0.2}}, "threshold");
  expect_error_naming({{"threshold", 1.5}}, "threshold");
  expect_error_naming({{"factor", 0.0}}, "factor");
  expect_error_naming({{"factor", -1.0}}, "factor");
  expect_error_naming({{"threshold", 0.9}, {"factor", 1.0}}, "threshold");
  expect_error_naming({{"cache", std::string("triple")}}, "cache");
  expect_error_naming({{"remasking", std::string("lowest")}}, "remasking");
  expect_error_naming({{"threshold", 0.9}, {"remasking", std::string("random")}}, "remasking");
  expect_error_naming({{"factor", 1.0}, {"remasking", std::string("entropy")}}, "remasking");
  expect_error_naming({{"top_p", 0.0}}, "top_p");
  expect_error_naming({{"top_p", 1.5}}, "top_p");
  expect_error_naming({{"top_k", std::int64_t{-1}}}, "top_k");
  expect_error_naming({{"stop_at_eos", true}, {"suppress_eos", true}}, "stop_at_eos");
  EXPECT_DOUBLE_EQ(parse_diffusion_config(section({{"eps", std::int64_t{0}}})).eps, 0.0);
}

}  // namespace
}  // namespace loom::diffusion
