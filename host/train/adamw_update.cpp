// Compiled with -O3 -fopenmp-simd -fno-math-errno (host/train/CMakeLists.txt) so that the loop
// vectorises, sqrt included.
#include "train/adamw_update.hpp"

#include <cmath>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && defined(__linux__)
#define LOOM_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define LOOM_VECTOR_CLONES
#endif

namespace loom {

LOOM_VECTOR_CLONES void adamw_update(float* __restrict p, const float* __restrict g,
                                     float* __restrict m, float* __restrict v, std::int64_t n,
                                     const AdamWScalars& s) {
  const AdamWScalars c = s;  // locals: no aliasing with the arrays
#pragma omp simd
  for (std::int64_t i = 0; i < n; ++i) {
    const float gi = g[i];
    const float mi = m[i] * c.beta1 + gi * c.one_minus_beta1;
    const float vi = v[i] * c.beta2 + gi * gi * c.one_minus_beta2;
    m[i] = mi;
    v[i] = vi;
    const float denom = std::sqrt(vi) / c.bc2_sqrt + c.eps;
    p[i] = p[i] * c.decay_mul - c.step_size * (mi / denom);
  }
}

}  // namespace loom
