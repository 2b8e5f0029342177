// The diffusion plugin's SDK 1.4 hooks for `trainer serve`: per-request sampler settings
// (checked by the plugin's config parser; a request with settings equals a plugin configured
// with them) and the step observer (told every step of every row; false stops the row, which
// takes no more forward passes while its neighbours go on unchanged).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <stdexcept>

#include "config/config_loader.hpp"
#include "diffusion_plugin.hpp"
#include "test_support.hpp"

namespace loom::diffusion {
namespace {

using testing::ByteTokenizer;
using testing::TinyModel;

std::unique_ptr<DiffusionPlugin> plugin_with(std::map<std::string, sdk::ConfigValue> values,
                                             TinyModel& model, ByteTokenizer& tok) {
  auto plugin = std::make_unique<DiffusionPlugin>();
  plugin->configure(validate_plugin_section("diffusion", diffusion_config_schema(), values, "c.toml"),
                    sdk::RunInfo{});
  plugin->on_model_loaded(model, tok);  // adds the mask token
  plugin->on_model_loaded(model, tok);  // as from a checkpoint: the mask token is known
  return plugin;
}

sdk::ConfigSection options(std::map<std::string, sdk::ConfigValue> values) {
  return sdk::ConfigSection("diffusion", std::move(values));
}

sdk::GenerateRequest completion(ByteTokenizer& tok, const std::string& prompt, std::int64_t tokens,
                                std::int64_t steps, std::uint64_t seed, double temperature) {
  sdk::GenerateRequest r;
  r.prompt_ids = tok.encode(prompt);
  r.complete_tokens = tokens;
  r.steps = steps;
  r.seed = seed;
  r.temperature = temperature;
  return r;
}

// Records each step; says stop for one row at one step.
class RecordingObserver final : public sdk::GenerateObserver {
 public:
  RecordingObserver(std::size_t stop_row, std::int64_t stop_step, std::size_t prompt_tokens)
      : stop_row_(stop_row), stop_step_(stop_step), prompt_tokens_(prompt_tokens) {}
  bool on_step(std::size_t row, std::int64_t step, const std::vector<std::int64_t>& tokens,
               std::int64_t mask_id) override {
    steps[row].push_back(step);
    masked[row].push_back(std::count(tokens.begin() + std::ptrdiff_t(prompt_tokens_), tokens.end(), mask_id));
    return !(row == stop_row_ && step == stop_step_);
  }
  std::map<std::size_t, std::vector<std::int64_t>> steps, masked;

 private:
  std::size_t stop_row_;
  std::int64_t stop_step_;
  std::size_t prompt_tokens_;
};

TEST(DiffusionPluginServing, TheObserverSeesEveryStepAndStoppingARowSavesItsForwardPasses) {
  ByteTokenizer tok;
  TinyModel model(259, 16, 64, /*seed=*/9);
  auto plugin = plugin_with({}, model, tok);
  // Same prompt length, 8 tokens over 8 steps each: LLaDA's schedule reveals one per step.
  const std::vector<sdk::GenerateRequest> requests = {completion(tok, "abc", 8, 8, 1, 0.7),
                                                      completion(tok, "xyz", 8, 8, 2, 0.7)};
  RecordingObserver observer(/*stop_row=*/0, /*stop_step=*/3, tok.encode("abc").size());
  auto out = plugin->generate_batch_observed(model, tok, requests, {options({}), options({})}, &observer);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(observer.steps[0], (std::vector<std::int64_t>{1, 2, 3}));
  EXPECT_EQ(observer.steps[1], (std::vector<std::int64_t>{1, 2, 3, 4, 5, 6, 7, 8}));
  EXPECT_EQ(observer.masked[1], (std::vector<std::int64_t>{7, 6, 5, 4, 3, 2, 1, 0}));
  EXPECT_EQ(out[0].forward_passes, 3);  // stopped: no forward pass after its third step
  EXPECT_EQ(out[1].forward_passes, 8);
  // The row that went on equals its solo run.
  auto solo = plugin->generate_batch(model, tok, {requests[1]}, false).at(0);
  EXPECT_EQ(out[1].result.generated, solo.result.generated);
}

// A row that cannot start (here: mask mode with an empty prompt, nothing to mask) in a later
// settings group fails the batch before any group samples: no step was observed, so a client of
// an earlier group is not shown steps that the host's row-by-row retry shows again.
TEST(DiffusionPluginServing, ABadRowInALaterSettingsGroupFailsTheBatchBeforeAnyStep) {
  ByteTokenizer tok;
  TinyModel model(259, 16, 64, /*seed=*/9);
  auto plugin = plugin_with({}, model, tok);
  sdk::GenerateRequest empty;
  empty.mask_ratio = 0.5;
  empty.seed = 3;
  const std::vector<sdk::GenerateRequest> requests = {completion(tok, "abc", 6, 6, 1, 0.7), empty};
  RecordingObserver observer(/*stop_row=*/9, /*stop_step=*/0, tok.encode("abc").size());
  try {
    plugin->generate_batch_observed(model, tok, requests,
                                    {options({}), options({{"remasking", std::string("random")}})},
                                    &observer);
    ADD_FAILURE() << "the batch with a row that has nothing to mask was sampled";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("request 2"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(observer.steps.empty()) << observer.steps[0].size() << " steps of row 1 were observed";
}

TEST(DiffusionPluginServing, ARequestsSettingsGiveWhatThePluginConfiguredWithThemGives) {
  ByteTokenizer tok;
  TinyModel model(259, 16, 64, /*seed=*/9);
  auto plain = plugin_with({{"num_diffusion_steps", std::int64_t{6}}}, model, tok);
  auto fast = plugin_with({{"num_diffusion_steps", std::int64_t{6}}, {"cache", std::string("dual")},
                           {"threshold", 0.0055}, {"remasking", std::string("margin")}},
                          model, tok);
  std::vector<sdk::GenerateRequest> requests;
  std::vector<sdk::ConfigSection> settings;
  for (int i = 0; i < 6; ++i) {
    requests.push_back(completion(tok, std::string(std::size_t(1 + i), char('a' + i)), 4 + i, 0, 50 + i, 0.5));
    settings.push_back(i % 2 ? options({{"cache", std::string("dual")}, {"threshold", 0.0055},
                                        {"remasking", std::string("margin")}})
                             : options({}));
  }
  auto out = plain->generate_batch_observed(model, tok, requests, settings, nullptr);
  ASSERT_EQ(out.size(), requests.size());
  for (std::size_t i = 0; i < requests.size(); ++i) {
    auto& reference = i % 2 ? *fast : *plain;
    auto solo = reference.generate_batch(model, tok, {requests[i]}, false).at(0);
    EXPECT_EQ(out[i].result.generated, solo.result.generated) << i;
    EXPECT_EQ(out[i].forward_passes, solo.forward_passes) << i;
  }
}

TEST(DiffusionPluginServing, RequestSettingsAreCheckedByTheConfigParser) {
  ByteTokenizer tok;
  TinyModel model(259, 16, 64, /*seed=*/9);
  auto plugin = plugin_with({}, model, tok);
  const auto keys = plugin->request_option_keys();
  for (const char* k : {"threshold", "factor", "cache", "remasking", "top_k", "top_p", "cfg_scale",
                        "stop_at_eos", "suppress_eos"})
    EXPECT_NE(std::find(keys.begin(), keys.end(), k), keys.end()) << k;
  EXPECT_NO_THROW(plugin->check_request_options(options({{"threshold", 0.9}, {"cache", std::string("dual")}})));
  auto refused = [&](std::map<std::string, sdk::ConfigValue> values, const std::string& needle) {
    try {
      plugin->check_request_options(options(std::move(values)));
      ADD_FAILURE() << "accepted: " << needle;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  refused({{"threshold", 0.5}, {"factor", 1.0}}, "[diffusion] threshold and factor are both set");
  refused({{"threshold", 0.5}, {"remasking", std::string("random")}}, "remasking");
  refused({{"stop_at_eos", true}, {"suppress_eos", true}}, "stop_at_eos");
  refused({{"noise_schedule", std::string("cosine")}}, "noise_schedule cannot be set per request");
  // generate_batch_observed applies the same check.
  EXPECT_THROW(plugin->generate_batch_observed(model, tok, {completion(tok, "a", 2, 2, 0, 0)},
                                               {options({{"threshold", 0.5}, {"factor", 1.0}})}, nullptr),
               std::invalid_argument);
}

}  // namespace
}  // namespace loom::diffusion
