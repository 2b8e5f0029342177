// What `trainer serve` accepts, set by its flags (every request beyond them gets a 400 or,
// for a full queue, a 503): plain values, validated once by the command line.
#pragma once

#include <cstddef>
#include <cstdint>

namespace loom::serve {

struct ServeLimits {
  std::size_t max_body_bytes = 1 << 20;  // request body
  std::int64_t max_new_tokens = 512;     // cap on max_tokens
  std::int64_t max_prompt_tokens = 1024; // cap on one prompt's tokens
  std::int64_t max_prompts = 16;         // prompts in one request (a list prompt)
  std::int64_t max_steps = 1024;         // cap on steps
  std::int64_t max_batch = 8;            // rows in one sampler batch
  std::int64_t max_queue = 64;           // rows that may wait beyond those being sampled
  std::int64_t batch_wait_ms = 5;        // how long a batch waits for more rows once one came
};

}  // namespace loom::serve
