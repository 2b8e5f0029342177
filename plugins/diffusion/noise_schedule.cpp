#include "noise_schedule.hpp"

#include <algorithm>
#include <cmath>

namespace loom::diffusion {

NoiseSchedule::NoiseSchedule(NoiseScheduleKind kind, double eps, double min_ratio, double max_ratio)
    : kind_(kind), eps_(eps), min_(min_ratio), max_(max_ratio) {}

NoiseSchedule::NoiseSchedule(const DiffusionConfig& config)
    : NoiseSchedule(config.noise_schedule, config.eps, config.min_mask_ratio,
                    config.max_mask_ratio) {}

double NoiseSchedule::mask_probability(double t) const {
  t = std::clamp(t, 0.0, 1.0);
  const double kPi = 3.14159265358979323846;
  double shape = kind_ == NoiseScheduleKind::Cosine ? 1.0 - std::cos(kPi * t / 2.0) : t;
  double p = (1.0 - eps_) * shape + eps_;
  return std::clamp(p, min_, max_);
}

}  // namespace loom::diffusion
