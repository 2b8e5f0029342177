// The noise schedule: diffusion time t in [0, 1] -> probability p that a token is masked.
//   linear: p = (1 - eps) * t + eps
//   cosine: p = (1 - eps) * (1 - cos(pi * t / 2)) + eps   (masks less at small t)
// then p is clamped into [min_mask_ratio, max_mask_ratio]. Clamping moves the tails of the
// distribution of p onto the bounds (a point mass at each), it does not rescale.
#pragma once

#include "diffusion_config.hpp"

namespace loom::diffusion {

class NoiseSchedule {
 public:
  NoiseSchedule() = default;
  NoiseSchedule(NoiseScheduleKind kind, double eps, double min_ratio, double max_ratio);
  explicit NoiseSchedule(const DiffusionConfig& config);

  double mask_probability(double t) const;

  NoiseScheduleKind kind() const { return kind_; }

 private:
  NoiseScheduleKind kind_ = NoiseScheduleKind::Linear;
  double eps_ = 1e-3;
  double min_ = 0.0;
  double max_ = 1.0;
};

}  // namespace loom::diffusion
