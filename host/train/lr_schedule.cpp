#include "train/lr_schedule.hpp"

#include <algorithm>
#include <cmath>

namespace loom {

LrSchedule::LrSchedule(std::string kind, double peak, std::int64_t warmup, std::int64_t total)
    : kind_(std::move(kind)), peak_(peak), warmup_(warmup), total_(total) {}

double LrSchedule::at(std::int64_t step) const {
  if (step < warmup_) return peak_ * double(step) / double(std::max<std::int64_t>(1, warmup_));
  if (kind_ == "constant") return peak_;
  const double progress =
      double(step - warmup_) / double(std::max<std::int64_t>(1, total_ - warmup_));
  if (kind_ == "linear") return peak_ * std::max(0.0, 1.0 - progress);
  return peak_ * std::max(0.0, 0.5 * (1.0 + std::cos(M_PI * progress)));  // cosine
}

}  // namespace loom
