#include "serve/completion_request.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <set>

#include "serve/api_error.hpp"

namespace loom::serve {

namespace {

using nlohmann::json;

[[noreturn]] void bad(const std::string& param, const std::string& message,
                      const std::string& code = "invalid_value") {
  throw ApiError(400, message, "invalid_request_error", param, code);
}

std::int64_t integer_in(const json& v, const std::string& name, std::int64_t lo, std::int64_t hi,
                        const std::string& cap_hint = {}) {
  if (!v.is_number_integer()) bad(name, name + " must be an integer", "invalid_type");
  // A huge unsigned value does not fit in int64: treat it as above the cap.
  const bool too_big = v.is_number_unsigned() && v.get<std::uint64_t>() > std::uint64_t(hi);
  const std::int64_t n = too_big ? hi : v.get<std::int64_t>();
  if (too_big || n < lo || n > hi)
    bad(name, name + " must be between " + std::to_string(lo) + " and " + std::to_string(hi) +
                  (cap_hint.empty() ? "" : " (" + cap_hint + ")"));
  return n;
}

double number_in(const json& v, const std::string& name, double lo, double hi) {
  if (!v.is_number()) bad(name, name + " must be a number", "invalid_type");
  const double x = v.get<double>();
  if (!std::isfinite(x) || x < lo || x > hi)
    bad(name, name + " must be between " + std::to_string(lo) + " and " + std::to_string(hi));
  return x;
}

// A sampler setting from JSON, typed by its schema entry; ranges and choices are checked by
// the host's schema validation afterwards.
sdk::ConfigValue option_value(const json& v, const sdk::ConfigKey& key) {
  switch (key.type) {
    case sdk::ConfigType::Bool:
      if (!v.is_boolean()) bad(key.name, key.name + " must be a boolean", "invalid_type");
      return v.get<bool>();
    case sdk::ConfigType::Int:
      if (!v.is_number_integer() || (v.is_number_unsigned() && v.get<std::uint64_t>() > (1ull << 62)))
        bad(key.name, key.name + " must be an integer", "invalid_type");
      return v.get<std::int64_t>();
    case sdk::ConfigType::Float:
      if (!v.is_number()) bad(key.name, key.name + " must be a number", "invalid_type");
      if (!std::isfinite(v.get<double>())) bad(key.name, key.name + " must be finite");
      return v.get<double>();
    case sdk::ConfigType::String:
      if (!v.is_string()) bad(key.name, key.name + " must be a string", "invalid_type");
      return v.get<std::string>();
  }
  bad(key.name, key.name + ": unsupported type");
}

}  // namespace

CompletionRequest parse_completion_request(const std::string& body, const ServeLimits& limits,
                                           const std::vector<sdk::ConfigKey>& option_keys) {
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) bad("", "the request body is not valid JSON", "invalid_json");
  if (!j.is_object()) bad("", "the request body must be a JSON object", "invalid_json");

  CompletionRequest r;
  // OpenAI fields that change nothing here, accepted at their neutral values only (standard
  // clients send some of them); any other value is a 400 naming the field, never ignored.
  static const std::set<std::string> neutral = {"model", "user", "n", "best_of", "echo",
                                                "logprobs", "presence_penalty",
                                                "frequency_penalty", "logit_bias", "suffix",
                                                "stream_options"};
  bool max_tokens_given = false;
  std::set<std::string> option_names;
  for (const auto& k : option_keys) option_names.insert(k.name);

  for (const auto& [name, v] : j.items()) {
    if (name == "prompt") {
      if (v.is_string()) {
        r.prompts = {v.get<std::string>()};
      } else if (v.is_array()) {
        r.prompt_was_list = true;
        if (v.empty()) bad("prompt", "prompt must not be an empty list");
        if (std::int64_t(v.size()) > limits.max_prompts)
          bad("prompt", "prompt has " + std::to_string(v.size()) + " prompts; at most " +
                            std::to_string(limits.max_prompts) + " per request (--max-prompts)");
        for (const auto& p : v) {
          if (!p.is_string())
            bad("prompt", "prompt must be a string or a list of strings (token-id prompts are "
                          "not supported)", "invalid_type");
          r.prompts.push_back(p.get<std::string>());
        }
      } else {
        bad("prompt", "prompt must be a string or a list of strings", "invalid_type");
      }
    } else if (name == "max_tokens") {
      if (v.is_null()) continue;
      r.max_tokens = integer_in(v, name, 0, limits.max_new_tokens, "--max-new-tokens");
      max_tokens_given = true;
    } else if (name == "temperature") {
      if (!v.is_null()) r.temperature = number_in(v, name, 0.0, 100.0);
    } else if (name == "seed") {
      if (v.is_null()) continue;
      if (!v.is_number_integer() || (!v.is_number_unsigned() && v.get<std::int64_t>() < 0))
        bad(name, "seed must be an integer >= 0", "invalid_type");
      r.seed = v.get<std::uint64_t>();
      r.seed_given = true;
    } else if (name == "stop") {
      if (v.is_null()) continue;
      if (v.is_string()) {
        r.stop = {v.get<std::string>()};
      } else if (v.is_array() && v.size() <= 4) {
        for (const auto& s : v) {
          if (!s.is_string()) bad(name, "stop must be a string or a list of strings", "invalid_type");
          r.stop.push_back(s.get<std::string>());
        }
      } else {
        bad(name, "stop must be a string or a list of at most 4 strings", "invalid_type");
      }
      for (const auto& s : r.stop)
        if (s.empty()) bad(name, "a stop string must not be empty");
    } else if (name == "stream") {
      if (!v.is_boolean()) bad(name, "stream must be a boolean", "invalid_type");
      r.stream = v.get<bool>();
    } else if (name == "steps") {
      r.steps = integer_in(v, name, 1, limits.max_steps, "--max-steps");
    } else if (name == "block_length") {
      r.block_length = integer_in(v, name, 1, limits.max_new_tokens);
    } else if (name == "mask") {
      r.mask = number_in(v, name, 0.0, 1.0);
    } else if (name == "top_p" && !option_names.count("top_p")) {
      // A sampler without per-request settings: only the neutral value is honest.
      if (number_in(v, name, 0.0, 1.0) != 1.0)
        bad(name, "this checkpoint's sampler takes no per-request top_p", "unsupported_parameter");
    } else if (option_names.count(name)) {
      const auto& key = *std::find_if(option_keys.begin(), option_keys.end(),
                                      [&](const sdk::ConfigKey& k) { return k.name == name; });
      if (!v.is_null()) r.options[name] = option_value(v, key);
    } else if (neutral.count(name)) {
      if (name == "n" || name == "best_of") {
        if (!v.is_null() && !(v.is_number_integer() && v.get<std::int64_t>() == 1))
          bad(name, name + " must be 1 (one answer per prompt)", "unsupported_parameter");
      } else if (name == "echo") {
        if (!v.is_null() && !(v.is_boolean() && !v.get<bool>()))
          bad(name, "echo is not supported", "unsupported_parameter");
      } else if (name == "logprobs") {
        if (!v.is_null() && !(v.is_number_integer() && v.get<std::int64_t>() == 0))
          bad(name, "logprobs are not supported", "unsupported_parameter");
      } else if (name == "model" || name == "user") {
        if (!v.is_string()) bad(name, name + " must be a string", "invalid_type");
      } else if (name == "presence_penalty" || name == "frequency_penalty") {
        if (!v.is_null() && !(v.is_number() && v.get<double>() == 0.0))
          bad(name, name + " is not supported (only 0)", "unsupported_parameter");
      } else if (name == "logit_bias") {
        if (!v.is_null() && !(v.is_object() && v.empty()))
          bad(name, "logit_bias is not supported (only {} or null)", "unsupported_parameter");
      } else if (name == "suffix") {
        if (!v.is_null() && !(v.is_string() && v.get<std::string>().empty()))
          bad(name, "suffix is not supported (only \"\" or null)", "unsupported_parameter");
      } else if (name == "stream_options") {
        if (v.is_null()) continue;
        if (!v.is_object()) bad(name, "stream_options must be an object", "invalid_type");
        for (const auto& [key, value] : v.items()) {
          if (key != "include_usage")
            bad(name, "stream_options." + key + " is not supported (only include_usage)",
                "unsupported_parameter");
          if (!value.is_boolean())
            bad(name, "stream_options.include_usage must be a boolean", "invalid_type");
          r.include_usage = value.get<bool>();
        }
      }
    } else {
      std::string known;
      for (const auto& k : option_names) known += (known.empty() ? "" : ", ") + k;
      bad(name, "unknown field '" + name + "'" +
                    (known.empty() ? "" : " (sampler settings this server takes: " + known + ")"),
          "unknown_parameter");
    }
  }
  if (r.prompts.empty()) bad("prompt", "prompt is required", "missing_parameter");
  // Mask mode refills the prompt; new tokens after it only when asked for.
  if (r.mask > 0 && !max_tokens_given) r.max_tokens = 0;
  if (r.mask > 0 && r.max_tokens == 0)
    for (const auto& p : r.prompts)
      if (p.empty()) bad("prompt", "mask: an empty prompt has nothing to mask (give max_tokens to generate)");
  if (r.max_tokens == 0 && r.mask == 0)
    bad("max_tokens", "max_tokens must be >= 1 (or give mask to refill the prompt)");
  return r;
}

}  // namespace loom::serve
