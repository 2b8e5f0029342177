// Learning rate per optimizer step: linear warmup from 0, then cosine / linear decay to 0 or
// constant, as transformers' get_scheduler does.
#pragma once

#include <cstdint>
#include <string>

namespace loom {

class LrSchedule {
 public:
  LrSchedule(std::string kind, double peak, std::int64_t warmup_steps, std::int64_t total_steps);
  // The rate used by optimizer step `step` (0-based).
  double at(std::int64_t step) const;
  std::int64_t warmup_steps() const { return warmup_; }

 private:
  std::string kind_;
  double peak_;
  std::int64_t warmup_, total_;
};

}  // namespace loom
