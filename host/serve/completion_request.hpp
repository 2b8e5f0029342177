// POST /v1/completions: the request body (OpenAI's completion fields plus the sampler's own)
// parsed and checked once into a plain struct. Every problem is an ApiError 400 naming the
// field, raised before anything is queued.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "loom/sdk/config.hpp"
#include "serve/serve_limits.hpp"

namespace loom::serve {

struct CompletionRequest {
  std::vector<std::string> prompts;  // a string prompt is a list of one
  bool prompt_was_list = false;
  std::int64_t max_tokens = 16;  // new tokens after each prompt (0 only with mask; its default there)
  double temperature = 0;        // 0: the checkpoint's generation_temperature (0 = greedy)
  std::uint64_t seed = 0;
  bool seed_given = false;
  std::vector<std::string> stop;  // the answer is cut before the first of these
  bool stream = false;
  bool include_usage = false;     // stream_options.include_usage: a last chunk with the usage
  std::int64_t steps = 0;         // 0: the sampler's default
  std::int64_t block_length = 0;  // 0: the sampler's default
  double mask = 0;                // > 0: mask this share of the prompt and fill it back
  // Sampler settings for this request (top_p and the sampler plugin's request keys), typed as
  // the plugin's schema declares them.
  std::map<std::string, sdk::ConfigValue> options;
};

// `body`: the raw request body. `option_keys`: the schema entries of the keys the sampler lets
// a request set (empty for a sampler built before SDK 1.4).
CompletionRequest parse_completion_request(const std::string& body, const ServeLimits& limits,
                                           const std::vector<sdk::ConfigKey>& option_keys);

}  // namespace loom::serve
