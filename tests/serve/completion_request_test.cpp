// parse_completion_request: OpenAI's fields and the sampler's, typed and capped, every refusal
// an ApiError 400 naming the field.
#include <gtest/gtest.h>

#include "serve/api_error.hpp"
#include "serve/completion_request.hpp"

namespace loom::serve {
namespace {

const std::vector<sdk::ConfigKey> kKeys = {
    sdk::key_float("threshold", std::nullopt, "", 0.0, 1.0),
    sdk::key_string("cache", "none", "", {"none", "prefix", "dual"}),
    sdk::key_int("top_k", 0, "", 0, 1e9),
    sdk::key_bool("stop_at_eos", false, ""),
};

ServeLimits limits() {
  ServeLimits l;
  l.max_new_tokens = 64;
  l.max_prompts = 3;
  l.max_steps = 100;
  return l;
}

std::string refused_param(const std::string& body) {
  try {
    parse_completion_request(body, limits(), kKeys);
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status(), 400) << body;
    const auto j = e.body();
    EXPECT_EQ(j["error"]["type"], "invalid_request_error");
    return e.param().empty() ? "<none>" : e.param();
  }
  ADD_FAILURE() << "accepted: " << body;
  return "";
}

TEST(CompletionRequest, ParsesOpenAIFieldsAndTheSamplerKeysWithTheirTypes) {
  auto r = parse_completion_request(
      R"({"model": "m", "prompt": "hi", "max_tokens": 7, "temperature": 0.5, "seed": 18446744073709551615,
          "stop": ["\n", "END"], "stream": true, "steps": 9, "block_length": 4, "n": 1,
          "threshold": 1, "cache": "dual", "top_k": 5, "stop_at_eos": true})",
      limits(), kKeys);
  EXPECT_EQ(r.prompts, std::vector<std::string>{"hi"});
  EXPECT_FALSE(r.prompt_was_list);
  EXPECT_EQ(r.max_tokens, 7);
  EXPECT_DOUBLE_EQ(r.temperature, 0.5);
  EXPECT_TRUE(r.seed_given);
  EXPECT_EQ(r.seed, 18446744073709551615ull);
  EXPECT_EQ(r.stop, (std::vector<std::string>{"\n", "END"}));
  EXPECT_TRUE(r.stream);
  EXPECT_EQ(r.steps, 9);
  EXPECT_EQ(r.block_length, 4);
  EXPECT_EQ(std::get<double>(r.options.at("threshold")), 1.0);  // an int given for a float key
  EXPECT_EQ(std::get<std::string>(r.options.at("cache")), "dual");
  EXPECT_EQ(std::get<std::int64_t>(r.options.at("top_k")), 5);
  EXPECT_EQ(std::get<bool>(r.options.at("stop_at_eos")), true);

  auto list = parse_completion_request(R"({"prompt": ["a", "b"]})", limits(), kKeys);
  EXPECT_EQ(list.prompts, (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE(list.prompt_was_list);
  EXPECT_EQ(list.max_tokens, 16);  // OpenAI's default
  EXPECT_FALSE(list.seed_given);

  auto refill = parse_completion_request(R"({"prompt": "abc", "max_tokens": 0, "mask": 0.5})", limits(), kKeys);
  EXPECT_DOUBLE_EQ(refill.mask, 0.5);
}

TEST(CompletionRequest, RefusesWhatIsMalformedWrongOrOverACapNamingTheField) {
  EXPECT_EQ(refused_param("{"), "<none>");
  EXPECT_EQ(refused_param("\"prompt\""), "<none>");
  EXPECT_EQ(refused_param(R"({"max_tokens": 3})"), "prompt");
  EXPECT_EQ(refused_param(R"({"prompt": ["a", "b", "c", "d"]})"), "prompt");  // --max-prompts 3
  EXPECT_EQ(refused_param(R"({"prompt": []})"), "prompt");
  EXPECT_EQ(refused_param(R"({"prompt": [1]})"), "prompt");
  EXPECT_EQ(refused_param(R"({"prompt": "a", "max_tokens": -1})"), "max_tokens");
  EXPECT_EQ(refused_param(R"({"prompt": "a", "max_tokens": 65})"), "max_tokens");
  EXPECT_EQ(refused_param(R"({"prompt": "a", "max_tokens": 99999999999999999999})"), "max_tokens");
  EXPECT_EQ(refused_param(R"({"prompt": "a", "max_tokens": 0})"), "max_tokens");
  EXPECT_EQ(refused_param(R"({"prompt": "a", "max_tokens": 2.5})"), "max_tokens");
  EXPECT_EQ(refused_param(R"({"prompt": "a", "temperature": -0.1})"), "temperature");
  EXPECT_EQ(refused_param(R"({"prompt": "a", "seed": "1"})"), "seed");
  EXPECT_EQ(refused_param(R"({"prompt": "a", "stop": ["x", 1]})"), "stop");
  EXPECT_EQ(refused_param(R"({"prompt": "a", "stop": ""})"), "stop");
  EXPECT_EQ(refused_param(R"({"prompt": "a", "stream": 1})"), "stream");
  EXPECT_EQ(refused_param(R"({"prompt": "a", "steps": 0})"), "steps");
  EXPECT_EQ(refused_param(R"({"prompt": "a", "steps": 101})"), "steps");
  EXPECT_EQ(refused_param(R"({"prompt": "a", "mask": 1.5})"), "mask");
  EXPECT_EQ(refused_param(R"({"prompt": "a", "n": 2})"), "n");
  EXPECT_EQ(refused_param(R"({"prompt": "a", "echo": true})"), "echo");
  EXPECT_EQ(refused_param(R"({"prompt": "a", "top_p": 0.5})"), "top_p");  // not a key of this sampler
  EXPECT_EQ(refused_param(R"({"prompt": "a", "cache": 3})"), "cache");
  EXPECT_EQ(refused_param(R"({"prompt": "a", "stop_at_eos": "yes"})"), "stop_at_eos");
  EXPECT_EQ(refused_param(R"({"prompt": "a", "treshold": 0.9})"), "treshold");
}

// OpenAI fields this server does not implement are accepted only at the value that changes
// nothing; any other value is refused naming the field, never silently ignored.
TEST(CompletionRequest, UnimplementedOpenAIFieldsAreAcceptedOnlyAtTheirNeutralValues) {
  auto neutral = parse_completion_request(
      R"({"prompt": "a", "presence_penalty": 0, "frequency_penalty": 0.0, "logit_bias": {},
          "suffix": "", "best_of": 1, "n": 1, "logprobs": null, "echo": false, "user": "u",
          "stream_options": {"include_usage": false}})",
      limits(), kKeys);
  EXPECT_FALSE(neutral.include_usage);
  auto nulls = parse_completion_request(
      R"({"prompt": "a", "presence_penalty": null, "frequency_penalty": null, "logit_bias": null,
          "suffix": null, "stream_options": null, "max_tokens": null})",
      limits(), kKeys);
  EXPECT_EQ(nulls.max_tokens, 16);
  EXPECT_EQ(refused_param(R"({"prompt": "a", "presence_penalty": 0.5})"), "presence_penalty");
  EXPECT_EQ(refused_param(R"({"prompt": "a", "frequency_penalty": -1})"), "frequency_penalty");
  EXPECT_EQ(refused_param(R"({"prompt": "a", "frequency_penalty": "0"})"), "frequency_penalty");
  EXPECT_EQ(refused_param(R"({"prompt": "a", "logit_bias": {"50256": -100}})"), "logit_bias");
  EXPECT_EQ(refused_param(R"({"prompt": "a", "suffix": "the end"})"), "suffix");
  EXPECT_EQ(refused_param(R"({"prompt": "a", "best_of": 3})"), "best_of");
  EXPECT_EQ(refused_param(R"({"prompt": "a", "logprobs": 5})"), "logprobs");
  EXPECT_EQ(refused_param(R"({"prompt": "a", "stream_options": {"include_usage": "yes"}})"), "stream_options");
  EXPECT_EQ(refused_param(R"({"prompt": "a", "stream_options": {"continuous_usage": true}})"), "stream_options");
  EXPECT_EQ(refused_param(R"({"prompt": "a", "stream_options": true})"), "stream_options");
  auto usage = parse_completion_request(
      R"({"prompt": "a", "stream": true, "stream_options": {"include_usage": true}})", limits(), kKeys);
  EXPECT_TRUE(usage.include_usage);
}

// mask refills the prompt: without max_tokens nothing is appended (docs/serving.md), and an
// empty prompt has nothing to refill.
TEST(CompletionRequest, MaskWithoutMaxTokensOnlyRefillsAndAnEmptyPromptIsRefused) {
  auto refill = parse_completion_request(R"({"prompt": "abc", "mask": 0.5})", limits(), kKeys);
  EXPECT_EQ(refill.max_tokens, 0);
  auto both = parse_completion_request(R"({"prompt": "abc", "mask": 0.5, "max_tokens": 4})", limits(), kKeys);
  EXPECT_EQ(both.max_tokens, 4);
  EXPECT_EQ(refused_param(R"({"prompt": "", "mask": 0.5, "max_tokens": 0})"), "prompt");
  EXPECT_EQ(refused_param(R"({"prompt": ["a", ""], "mask": 0.5})"), "prompt");
  auto appended = parse_completion_request(R"({"prompt": "", "mask": 0.5, "max_tokens": 3})", limits(), kKeys);
  EXPECT_EQ(appended.max_tokens, 3);
}

}  // namespace
}  // namespace loom::serve
