// Compiled with -O3 -fopenmp-simd -fno-trapping-math -fno-math-errno (host/model/CMakeLists.txt;
// without -fno-trapping-math GCC will not if-convert the compares, and nothing vectorises);
// see cpu_kernels.hpp.
#include "model/cpu_kernels.hpp"

#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(__INTEL_COMPILER) && \
    defined(__linux__)
#define LOOM_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define LOOM_VECTOR_CLONES
#endif

#if defined(__GNUC__) || defined(__clang__)
// The loops live in templates that each clone below must inline, so that they are compiled
// for the clone's instruction set.
#define LOOM_INLINE inline __attribute__((always_inline))
#else
#define LOOM_INLINE inline
#endif

namespace loom::kernels {
namespace {

LOOM_INLINE float bits_to_float(std::int32_t i) {
#if defined(__GNUC__) || defined(__clang__)
  return __builtin_bit_cast(float, i);
#else
  float f;
  std::memcpy(&f, &i, sizeof f);
  return f;
#endif
}

// Cephes' expf: exp(x) = 2^n exp(r) with |r| <= ln(2)/2 and a degree-6 polynomial for exp(r);
// about 1 ulp. Below -87.3 (including -inf) the result is 0; above 88 it saturates at e^88.
LOOM_INLINE float exp_approx(float x) {
  constexpr float lo = -87.33654475f, hi = 88.0f;
  const float xc = x < lo ? lo : (x > hi ? hi : x);
  const float n = std::floor(xc * 1.44269504088896341f + 0.5f);
  const float r = xc - n * 0.693359375f + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  const float y = p * bits_to_float((static_cast<std::int32_t>(n) + 127) << 23);
  return x < lo ? 0.0f : y;
}
LOOM_INLINE double exp_approx(double x) { return std::exp(x); }

LOOM_INLINE std::int32_t float_to_bits(float f) {
#if defined(__GNUC__) || defined(__clang__)
  return __builtin_bit_cast(std::int32_t, f);
#else
  std::int32_t i;
  std::memcpy(&i, &f, sizeof i);
  return i;
#endif
}

// Loads and stores with bf16 conversions that vectorise (c10's have a NaN branch).
LOOM_INLINE float load(float v) { return v; }
LOOM_INLINE double load(double v) { return v; }
LOOM_INLINE float load(c10::BFloat16 v) { return bits_to_float(std::int32_t(v.x) << 16); }
LOOM_INLINE void store(float& d, float v) { d = v; }
LOOM_INLINE void store(double& d, double v) { d = v; }
LOOM_INLINE void store(c10::BFloat16& d, float v) {
  const std::uint32_t u = static_cast<std::uint32_t>(float_to_bits(v));
  const std::uint32_t rounded = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;  // nearest even
  d.x = static_cast<std::uint16_t>(v != v ? 0x7FC0u : rounded);
}

template <class A>
LOOM_INLINE void softmax_rows_impl(A* x, std::int64_t ldx, const A* bias, std::int64_t ldb,
                              std::int64_t rows, std::int64_t cols, A* lse) {
  for (std::int64_t i = 0; i < rows; ++i) {
    A* r = x + i * ldx;
    A m = -std::numeric_limits<A>::infinity();
    if (bias) {
      const A* b = bias + i * ldb;
#pragma omp simd reduction(max : m)
      for (std::int64_t j = 0; j < cols; ++j) {
        const A v = r[j] + b[j];
        r[j] = v;
        m = v > m ? v : m;
      }
    } else {
#pragma omp simd reduction(max : m)
      for (std::int64_t j = 0; j < cols; ++j) m = r[j] > m ? r[j] : m;
    }
    if (m == -std::numeric_limits<A>::infinity()) {
      // Every key masked: an all-zero row (not NaN), and an lse of +inf so that exp_rows
      // recomputes zeros and the row gets no gradient.
      for (std::int64_t j = 0; j < cols; ++j) r[j] = 0;
      lse[i] = std::numeric_limits<A>::infinity();
      continue;
    }
    A s = 0;
#pragma omp simd reduction(+ : s)
    for (std::int64_t j = 0; j < cols; ++j) {
      const A e = exp_approx(r[j] - m);
      r[j] = e;
      s += e;
    }
    const A inv = A(1) / s;
#pragma omp simd
    for (std::int64_t j = 0; j < cols; ++j) r[j] *= inv;
    lse[i] = m + std::log(s);
  }
}

template <class A>
LOOM_INLINE void cross_entropy_rows_impl(A* x, std::int64_t ld, std::int64_t rows,
                                         std::int64_t cols, const std::int64_t* targets, A* ce,
                                         std::int64_t* argmax) {
  for (std::int64_t i = 0; i < rows; ++i) {
    A* r = x + i * ld;
    A m = -std::numeric_limits<A>::infinity();
#pragma omp simd reduction(max : m)
    for (std::int64_t j = 0; j < cols; ++j) m = r[j] > m ? r[j] : m;
    std::int64_t best = 0;
    while (best < cols - 1 && !(r[best] == m)) ++best;
    argmax[i] = best;
    const std::int64_t t = targets[i];
    const A picked = r[t];
    A s = 0;
#pragma omp simd reduction(+ : s)
    for (std::int64_t j = 0; j < cols; ++j) {
      const A e = exp_approx(r[j] - m);
      r[j] = e;
      s += e;
    }
    ce[i] = m + std::log(s) - picked;
    const A inv = A(1) / s;
#pragma omp simd
    for (std::int64_t j = 0; j < cols; ++j) r[j] *= inv;
    r[t] -= A(1);
  }
}

template <class A>
LOOM_INLINE void exp_rows_impl(A* x, std::int64_t ldx, const A* bias, std::int64_t ldb, const A* lse,
                          std::int64_t rows, std::int64_t cols) {
  for (std::int64_t i = 0; i < rows; ++i) {
    A* r = x + i * ldx;
    const A l = lse[i];
    if (bias) {
      const A* b = bias + i * ldb;
#pragma omp simd
      for (std::int64_t j = 0; j < cols; ++j) r[j] = exp_approx(r[j] + b[j] - l);
    } else {
#pragma omp simd
      for (std::int64_t j = 0; j < cols; ++j) r[j] = exp_approx(r[j] - l);
    }
  }
}

template <class A>
LOOM_INLINE void softmax_backward_rows_impl(A* dp, const A* p, std::int64_t ld, const A* dout,
                                       const A* out, std::int64_t ldo, std::int64_t rows,
                                       std::int64_t cols, std::int64_t d) {
  for (std::int64_t i = 0; i < rows; ++i) {
    const A* go = dout + i * ldo;
    const A* o = out + i * ldo;
    A dot = 0;
#pragma omp simd reduction(+ : dot)
    for (std::int64_t e = 0; e < d; ++e) dot += go[e] * o[e];
    A* g = dp + i * ld;
    const A* pr = p + i * ld;
#pragma omp simd
    for (std::int64_t j = 0; j < cols; ++j) g[j] = pr[j] * (g[j] - dot);
  }
}

template <class T, class A>
LOOM_INLINE void rope_rows_impl(const T* src, std::int64_t ld, const A* cos, const A* sin, A* dst,
                           std::int64_t rows, std::int64_t d, A mul) {
  const std::int64_t h = d / 2;
  for (std::int64_t i = 0; i < rows; ++i) {
    const T* x = src + i * ld;
    const A* c = cos + i * d;
    const A* s = sin + i * d;
    A* o = dst + i * d;
#pragma omp simd
    for (std::int64_t e = 0; e < h; ++e) o[e] = (load(x[e]) * c[e] - load(x[e + h]) * s[e]) * mul;
#pragma omp simd
    for (std::int64_t e = h; e < d; ++e) o[e] = (load(x[e]) * c[e] + load(x[e - h]) * s[e]) * mul;
  }
}

template <class T, class A>
LOOM_INLINE void rope_transpose_rows_impl(const A* y, const A* cos, const A* sin, T* dst,
                                     std::int64_t ld, std::int64_t rows, std::int64_t d, A mul) {
  const std::int64_t h = d / 2;
  for (std::int64_t i = 0; i < rows; ++i) {
    const A* v = y + i * d;
    const A* c = cos + i * d;
    const A* s = sin + i * d;
    T* o = dst + i * ld;
#pragma omp simd
    for (std::int64_t e = 0; e < h; ++e) store(o[e], (v[e] * c[e] + v[e + h] * s[e + h]) * mul);
#pragma omp simd
    for (std::int64_t e = h; e < d; ++e) store(o[e], (v[e] * c[e] - v[e - h] * s[e - h]) * mul);
  }
}

template <class T, class A>
LOOM_INLINE void load_rows_impl(const T* src, std::int64_t ld, A* dst, std::int64_t rows,
                           std::int64_t d) {
  for (std::int64_t i = 0; i < rows; ++i) {
#pragma omp simd
    for (std::int64_t e = 0; e < d; ++e) dst[i * d + e] = load(src[i * ld + e]);
  }
}

template <class T, class A>
LOOM_INLINE void store_rows_impl(const A* src, T* dst, std::int64_t ld, std::int64_t rows,
                            std::int64_t d) {
  for (std::int64_t i = 0; i < rows; ++i) {
#pragma omp simd
    for (std::int64_t e = 0; e < d; ++e) store(dst[i * ld + e], src[i * d + e]);
  }
}

template <class T, class A>
LOOM_INLINE void rms_norm_forward_impl(const T* x, const A* w, T* y, A* rstd, std::int64_t rows,
                                  std::int64_t n, A eps) {
  for (std::int64_t i = 0; i < rows; ++i) {
    const T* xr = x + i * n;
    T* yr = y + i * n;
    A ss = 0;
#pragma omp simd reduction(+ : ss)
    for (std::int64_t j = 0; j < n; ++j) ss += A(xr[j]) * A(xr[j]);
    const A r = A(1) / std::sqrt(ss / A(n) + eps);
    rstd[i] = r;
#pragma omp simd
    for (std::int64_t j = 0; j < n; ++j) yr[j] = T(w[j] * (A(xr[j]) * r));
  }
}

template <class T, class A>
LOOM_INLINE void rms_norm_backward_impl(const T* x, const A* w, const A* rstd, const T* g, T* dx,
                                   A* dw_acc, std::int64_t rows, std::int64_t n) {
  for (std::int64_t i = 0; i < rows; ++i) {
    const T* xr = x + i * n;
    const T* gr = g + i * n;
    T* dr = dx + i * n;
    const A r = rstd[i];
    A c = 0;
#pragma omp simd reduction(+ : c)
    for (std::int64_t j = 0; j < n; ++j) {
      const A xh = A(xr[j]) * r;
      c += A(gr[j]) * w[j] * xh;
      dw_acc[j] += A(gr[j]) * xh;
    }
    c /= A(n);
#pragma omp simd
    for (std::int64_t j = 0; j < n; ++j) dr[j] = T(r * (A(gr[j]) * w[j] - A(xr[j]) * r * c));
  }
}

template <class T>
LOOM_INLINE void swiglu_forward_impl(const T* ab, T* y, std::int64_t rows, std::int64_t n) {
  using A = std::conditional_t<std::is_same<T, double>::value, double, float>;
  for (std::int64_t i = 0; i < rows; ++i) {
    const T* a = ab + i * 2 * n;
    const T* b = a + n;
    T* yr = y + i * n;
#pragma omp simd
    for (std::int64_t j = 0; j < n; ++j) {
      const A av = load(a[j]);
      const A s = A(1) / (A(1) + exp_approx(-av));
      store(yr[j], av * s * load(b[j]));
    }
  }
}

template <class T>
LOOM_INLINE void swiglu_backward_impl(const T* ab, const T* g, T* dab, std::int64_t rows,
                                 std::int64_t n) {
  using A = std::conditional_t<std::is_same<T, double>::value, double, float>;
  for (std::int64_t i = 0; i < rows; ++i) {
    const T* a = ab + i * 2 * n;
    const T* b = a + n;
    const T* gr = g + i * n;
    T* da = dab + i * 2 * n;
    T* db = da + n;
#pragma omp simd
    for (std::int64_t j = 0; j < n; ++j) {
      const A av = load(a[j]), bv = load(b[j]), gv = load(gr[j]);
      const A s = A(1) / (A(1) + exp_approx(-av));
      store(da[j], gv * bv * s * (A(1) + av * (A(1) - s)));
      store(db[j], gv * av * s);
    }
  }
}

}  // namespace

// ---- float / bf16: vectorised clones ----------------------------------------------------
namespace detail {
LOOM_VECTOR_CLONES void softmax_rows_f(float* x, std::int64_t ldx, const float* bias,
                                       std::int64_t ldb, std::int64_t rows, std::int64_t cols,
                                       float* lse) {
  softmax_rows_impl(x, ldx, bias, ldb, rows, cols, lse);
}
LOOM_VECTOR_CLONES void cross_entropy_rows_f(float* x, std::int64_t ld, std::int64_t rows,
                                             std::int64_t cols, const std::int64_t* targets,
                                             float* ce, std::int64_t* argmax) {
  cross_entropy_rows_impl(x, ld, rows, cols, targets, ce, argmax);
}
LOOM_VECTOR_CLONES void exp_rows_f(float* x, std::int64_t ldx, const float* bias,
                                   std::int64_t ldb, const float* lse, std::int64_t rows,
                                   std::int64_t cols) {
  exp_rows_impl(x, ldx, bias, ldb, lse, rows, cols);
}
LOOM_VECTOR_CLONES void softmax_backward_rows_f(float* dp, const float* p, std::int64_t ld,
                                                const float* dout, const float* out,
                                                std::int64_t ldo, std::int64_t rows,
                                                std::int64_t cols, std::int64_t d) {
  softmax_backward_rows_impl(dp, p, ld, dout, out, ldo, rows, cols, d);
}
LOOM_VECTOR_CLONES void rms_norm_forward_f(const float* x, const float* w, float* y, float* rstd,
                                           std::int64_t rows, std::int64_t n, float eps) {
  rms_norm_forward_impl(x, w, y, rstd, rows, n, eps);
}
LOOM_VECTOR_CLONES void rms_norm_backward_f(const float* x, const float* w, const float* rstd,
                                            const float* g, float* dx, float* dw_acc,
                                            std::int64_t rows, std::int64_t n) {
  rms_norm_backward_impl(x, w, rstd, g, dx, dw_acc, rows, n);
}
LOOM_VECTOR_CLONES void swiglu_forward_f(const float* ab, float* y, std::int64_t rows,
                                         std::int64_t n) {
  swiglu_forward_impl(ab, y, rows, n);
}
LOOM_VECTOR_CLONES void swiglu_backward_f(const float* ab, const float* g, float* dab,
                                          std::int64_t rows, std::int64_t n) {
  swiglu_backward_impl(ab, g, dab, rows, n);
}
LOOM_VECTOR_CLONES void swiglu_forward_bf(const c10::BFloat16* ab, c10::BFloat16* y,
                                          std::int64_t rows, std::int64_t n) {
  swiglu_forward_impl(ab, y, rows, n);
}
LOOM_VECTOR_CLONES void swiglu_backward_bf(const c10::BFloat16* ab, const c10::BFloat16* g,
                                           c10::BFloat16* dab, std::int64_t rows,
                                           std::int64_t n) {
  swiglu_backward_impl(ab, g, dab, rows, n);
}
LOOM_VECTOR_CLONES void rope_rows_f(const float* src, std::int64_t ld, const float* cos,
                                    const float* sin, float* dst, std::int64_t rows,
                                    std::int64_t d, float mul) {
  rope_rows_impl(src, ld, cos, sin, dst, rows, d, mul);
}
LOOM_VECTOR_CLONES void rope_rows_bf(const c10::BFloat16* src, std::int64_t ld, const float* cos,
                                     const float* sin, float* dst, std::int64_t rows,
                                     std::int64_t d, float mul) {
  rope_rows_impl(src, ld, cos, sin, dst, rows, d, mul);
}
LOOM_VECTOR_CLONES void rope_transpose_rows_f(const float* y, const float* cos, const float* sin,
                                              float* dst, std::int64_t ld, std::int64_t rows,
                                              std::int64_t d, float mul) {
  rope_transpose_rows_impl(y, cos, sin, dst, ld, rows, d, mul);
}
LOOM_VECTOR_CLONES void rope_transpose_rows_bf(const float* y, const float* cos, const float* sin,
                                               c10::BFloat16* dst, std::int64_t ld,
                                               std::int64_t rows, std::int64_t d, float mul) {
  rope_transpose_rows_impl(y, cos, sin, dst, ld, rows, d, mul);
}
LOOM_VECTOR_CLONES void load_rows_f(const float* src, std::int64_t ld, float* dst,
                                    std::int64_t rows, std::int64_t d) {
  load_rows_impl(src, ld, dst, rows, d);
}
LOOM_VECTOR_CLONES void load_rows_bf(const c10::BFloat16* src, std::int64_t ld, float* dst,
                                     std::int64_t rows, std::int64_t d) {
  load_rows_impl(src, ld, dst, rows, d);
}
LOOM_VECTOR_CLONES void store_rows_f(const float* src, float* dst, std::int64_t ld,
                                     std::int64_t rows, std::int64_t d) {
  store_rows_impl(src, dst, ld, rows, d);
}
LOOM_VECTOR_CLONES void store_rows_bf(const float* src, c10::BFloat16* dst, std::int64_t ld,
                                      std::int64_t rows, std::int64_t d) {
  store_rows_impl(src, dst, ld, rows, d);
}
}  // namespace detail

void rope_rows(const float* src, std::int64_t ld, const float* cos, const float* sin, float* dst,
               std::int64_t rows, std::int64_t d, float mul) {
  detail::rope_rows_f(src, ld, cos, sin, dst, rows, d, mul);
}
void rope_rows(const c10::BFloat16* src, std::int64_t ld, const float* cos, const float* sin,
               float* dst, std::int64_t rows, std::int64_t d, float mul) {
  detail::rope_rows_bf(src, ld, cos, sin, dst, rows, d, mul);
}
void rope_rows(const double* src, std::int64_t ld, const double* cos, const double* sin,
               double* dst, std::int64_t rows, std::int64_t d, double mul) {
  rope_rows_impl(src, ld, cos, sin, dst, rows, d, mul);
}
void rope_transpose_rows(const float* y, const float* cos, const float* sin, float* dst,
                         std::int64_t ld, std::int64_t rows, std::int64_t d, float mul) {
  detail::rope_transpose_rows_f(y, cos, sin, dst, ld, rows, d, mul);
}
void rope_transpose_rows(const float* y, const float* cos, const float* sin, c10::BFloat16* dst,
                         std::int64_t ld, std::int64_t rows, std::int64_t d, float mul) {
  detail::rope_transpose_rows_bf(y, cos, sin, dst, ld, rows, d, mul);
}
void rope_transpose_rows(const double* y, const double* cos, const double* sin, double* dst,
                         std::int64_t ld, std::int64_t rows, std::int64_t d, double mul) {
  rope_transpose_rows_impl(y, cos, sin, dst, ld, rows, d, mul);
}
void load_rows(const float* src, std::int64_t ld, float* dst, std::int64_t rows, std::int64_t d) {
  detail::load_rows_f(src, ld, dst, rows, d);
}
void load_rows(const c10::BFloat16* src, std::int64_t ld, float* dst, std::int64_t rows,
               std::int64_t d) {
  detail::load_rows_bf(src, ld, dst, rows, d);
}
void load_rows(const double* src, std::int64_t ld, double* dst, std::int64_t rows,
               std::int64_t d) {
  load_rows_impl(src, ld, dst, rows, d);
}
void store_rows(const float* src, float* dst, std::int64_t ld, std::int64_t rows,
                std::int64_t d) {
  detail::store_rows_f(src, dst, ld, rows, d);
}
void store_rows(const float* src, c10::BFloat16* dst, std::int64_t ld, std::int64_t rows,
                std::int64_t d) {
  detail::store_rows_bf(src, dst, ld, rows, d);
}
void store_rows(const double* src, double* dst, std::int64_t ld, std::int64_t rows,
                std::int64_t d) {
  store_rows_impl(src, dst, ld, rows, d);
}

void softmax_rows(float* x, std::int64_t ldx, const float* bias, std::int64_t ldb,
                  std::int64_t rows, std::int64_t cols, float* lse) {
  detail::softmax_rows_f(x, ldx, bias, ldb, rows, cols, lse);
}
void softmax_rows(double* x, std::int64_t ldx, const double* bias, std::int64_t ldb,
                  std::int64_t rows, std::int64_t cols, double* lse) {
  softmax_rows_impl(x, ldx, bias, ldb, rows, cols, lse);
}
void cross_entropy_rows(float* x, std::int64_t ld, std::int64_t rows, std::int64_t cols,
                        const std::int64_t* targets, float* ce, std::int64_t* argmax) {
  detail::cross_entropy_rows_f(x, ld, rows, cols, targets, ce, argmax);
}
void cross_entropy_rows(double* x, std::int64_t ld, std::int64_t rows, std::int64_t cols,
                        const std::int64_t* targets, double* ce, std::int64_t* argmax) {
  cross_entropy_rows_impl(x, ld, rows, cols, targets, ce, argmax);
}
void exp_rows(float* x, std::int64_t ldx, const float* bias, std::int64_t ldb, const float* lse,
              std::int64_t rows, std::int64_t cols) {
  detail::exp_rows_f(x, ldx, bias, ldb, lse, rows, cols);
}
void exp_rows(double* x, std::int64_t ldx, const double* bias, std::int64_t ldb,
              const double* lse, std::int64_t rows, std::int64_t cols) {
  exp_rows_impl(x, ldx, bias, ldb, lse, rows, cols);
}
void softmax_backward_rows(float* dp, const float* p, std::int64_t ld, const float* dout,
                           const float* out, std::int64_t ldo, std::int64_t rows,
                           std::int64_t cols, std::int64_t d) {
  detail::softmax_backward_rows_f(dp, p, ld, dout, out, ldo, rows, cols, d);
}
void softmax_backward_rows(double* dp, const double* p, std::int64_t ld, const double* dout,
                           const double* out, std::int64_t ldo, std::int64_t rows,
                           std::int64_t cols, std::int64_t d) {
  softmax_backward_rows_impl(dp, p, ld, dout, out, ldo, rows, cols, d);
}

void rms_norm_forward(const float* x, const float* w, float* y, float* rstd,
                                    std::int64_t rows, std::int64_t n, float eps) {
  detail::rms_norm_forward_f(x, w, y, rstd, rows, n, eps);
}
void rms_norm_forward(const double* x, const double* w, double* y, double* rstd,
                                      std::int64_t rows, std::int64_t n, double eps) {
  rms_norm_forward_impl(x, w, y, rstd, rows, n, eps);
}
void rms_norm_backward(const float* x, const float* w, const float* rstd,
                                     const float* g, float* dx, float* dw_acc, std::int64_t rows,
                                     std::int64_t n) {
  detail::rms_norm_backward_f(x, w, rstd, g, dx, dw_acc, rows, n);
}
void rms_norm_backward(const double* x, const double* w, const double* rstd,
                                       const double* g, double* dx, double* dw_acc,
                                       std::int64_t rows, std::int64_t n) {
  rms_norm_backward_impl(x, w, rstd, g, dx, dw_acc, rows, n);
}

void swiglu_forward(const float* ab, float* y, std::int64_t rows, std::int64_t n) {
  detail::swiglu_forward_f(ab, y, rows, n);
}
void swiglu_forward(const c10::BFloat16* ab, c10::BFloat16* y, std::int64_t rows,
                                   std::int64_t n) {
  detail::swiglu_forward_bf(ab, y, rows, n);
}
void swiglu_forward(const double* ab, double* y, std::int64_t rows, std::int64_t n) {
  swiglu_forward_impl(ab, y, rows, n);
}
void swiglu_backward(const float* ab, const float* g, float* dab, std::int64_t rows,
                            std::int64_t n) {
  detail::swiglu_backward_f(ab, g, dab, rows, n);
}
void swiglu_backward(const c10::BFloat16* ab, const c10::BFloat16* g,
                                    c10::BFloat16* dab, std::int64_t rows, std::int64_t n) {
  detail::swiglu_backward_bf(ab, g, dab, rows, n);
}
void swiglu_backward(const double* ab, const double* g, double* dab, std::int64_t rows,
                             std::int64_t n) {
  swiglu_backward_impl(ab, g, dab, rows, n);
}

}  // namespace loom::kernels
