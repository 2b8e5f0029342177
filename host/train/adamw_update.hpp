// The AdamW update of one contiguous fp32 parameter as a single pass over parameter,
// gradient and both moments (the tensor-op form makes about ten passes and allocates the
// denominator). See AdamW::step for when it is used.
#pragma once

#include <cstdint>

namespace loom {

struct AdamWScalars {
  float decay_mul;  // 1 - lr * weight_decay (1 when the parameter is not decayed)
  float beta1, one_minus_beta1, beta2, one_minus_beta2;
  float step_size;  // lr / (1 - beta1^t)
  float bc2_sqrt;   // sqrt(1 - beta2^t)
  float eps;
};

// For i in [0, n): m = beta1 m + (1 - beta1) g; v = beta2 v + (1 - beta2) g^2;
// p = p decay_mul - step_size * (m / (sqrt(v) / bc2_sqrt + eps)) -- torch.optim.AdamW's
// formula, in the order its tensor ops apply it.
void adamw_update(float* p, const float* g, float* m, float* v, std::int64_t n,
                  const AdamWScalars& s);

}  // namespace loom
