#include "model/row_invariant_linear.hpp"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <atomic>
#include <cmath>

#include "train/autocast_guard.hpp"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define LOOM_ROW_GEMM_X86 1
#define LOOM_AVX2 __attribute__((target("avx2,fma")))
#else
#define LOOM_ROW_GEMM_X86 0
#endif

// The bit-for-bit promise rests on the compiler keeping each sum's order and its fused
// multiply-adds as written.
#ifdef __FAST_MATH__
#error "row_invariant_linear.cpp must not be compiled with -ffast-math (it reorders the sums)"
#endif

namespace loom {
namespace kernels {
namespace {

// Tile of MR rows x NR columns: MR * NR accumulators of 8 lanes, MR + NR loads per 8 values of
// k. 3 x 4 keeps the 12 accumulators, 3 row vectors and one weight vector in AVX2's 16
// registers.
constexpr int kRows = 3;
constexpr int kCols = 4;
constexpr int kLanes = 8;

std::atomic<bool> force_scalar{false};

// The fixed tree over the eight partial sums: (s0 + s4) + (s2 + s6), (s1 + s5) + (s3 + s7),
// then the sum of the two. (IEEE addition is commutative, so only the grouping matters.)
inline float tree_sum(const float* s) {
  const float u0 = s[0] + s[4], u1 = s[1] + s[5], u2 = s[2] + s[6], u3 = s[3] + s[7];
  return (u0 + u2) + (u1 + u3);
}

// The scalar path: the same fused multiply-adds in the same order as the AVX2 one (a lane past
// K's end adds fma(0, 0, s), as the masked load's zeros do there).
void gemm_scalar(const float* A, std::int64_t lda, std::int64_t M, const float* W,
                 std::int64_t ldw, std::int64_t K, const float* bias, float* C,
                 std::int64_t ldc, std::int64_t n_begin, std::int64_t n_end) {
  const std::int64_t full = K / kLanes * kLanes;
  for (std::int64_t n = n_begin; n < n_end; ++n) {
    const float* w = W + n * ldw;
    for (std::int64_t m = 0; m < M; ++m) {
      const float* a = A + m * lda;
      float s[kLanes] = {0, 0, 0, 0, 0, 0, 0, 0};
      for (std::int64_t k = 0; k < full; k += kLanes)
        for (int l = 0; l < kLanes; ++l) s[l] = std::fma(a[k + l], w[k + l], s[l]);
      if (full < K)
        for (int l = 0; l < kLanes; ++l)
          s[l] = full + l < K ? std::fma(a[full + l], w[full + l], s[l]) : std::fma(0.0f, 0.0f, s[l]);
      float r = tree_sum(s);
      if (bias) r += bias[n];
      C[m * ldc + n] = r;
    }
  }
}

#if LOOM_ROW_GEMM_X86
LOOM_AVX2 inline float tree_sum_avx2(__m256 v) {
  const __m128 u = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 t = _mm_add_ps(u, _mm_movehl_ps(u, u));  // u0 + u2, u1 + u3
  return _mm_cvtss_f32(_mm_add_ss(t, _mm_movehdup_ps(t)));
}

template <int MR, int NR>
LOOM_AVX2 void tile_avx2(const float* A, std::int64_t lda, const float* W, std::int64_t ldw,
                         std::int64_t K, const float* bias, float* C, std::int64_t ldc) {
  __m256 acc[MR][NR];
#pragma GCC unroll 4
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < NR; ++j) acc[i][j] = _mm256_setzero_ps();
  std::int64_t k = 0;
  for (; k + kLanes <= K; k += kLanes) {
    __m256 a[MR];
#pragma GCC unroll 4
    for (int i = 0; i < MR; ++i) a[i] = _mm256_loadu_ps(A + i * lda + k);
#pragma GCC unroll 4
    for (int j = 0; j < NR; ++j) {
      const __m256 w = _mm256_loadu_ps(W + j * ldw + k);
#pragma GCC unroll 4
      for (int i = 0; i < MR; ++i) acc[i][j] = _mm256_fmadd_ps(a[i], w, acc[i][j]);
    }
  }
  if (k < K) {
    const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(int(K - k)),
                                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    __m256 a[MR];
#pragma GCC unroll 4
    for (int i = 0; i < MR; ++i) a[i] = _mm256_maskload_ps(A + i * lda + k, mask);
#pragma GCC unroll 4
    for (int j = 0; j < NR; ++j) {
      const __m256 w = _mm256_maskload_ps(W + j * ldw + k, mask);
#pragma GCC unroll 4
      for (int i = 0; i < MR; ++i) acc[i][j] = _mm256_fmadd_ps(a[i], w, acc[i][j]);
    }
  }
#pragma GCC unroll 4
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < NR; ++j) {
      float r = tree_sum_avx2(acc[i][j]);
      if (bias) r += bias[j];
      C[i * ldc + j] = r;
    }
}

using TileFn = void (*)(const float*, std::int64_t, const float*, std::int64_t, std::int64_t,
                        const float*, float*, std::int64_t);
// tiles[mr - 1][nr - 1]: the edge tiles are the same loop with fewer rows or columns.
constexpr TileFn kTiles[kRows][kCols] = {
    {tile_avx2<1, 1>, tile_avx2<1, 2>, tile_avx2<1, 3>, tile_avx2<1, 4>},
    {tile_avx2<2, 1>, tile_avx2<2, 2>, tile_avx2<2, 3>, tile_avx2<2, 4>},
    {tile_avx2<3, 1>, tile_avx2<3, 2>, tile_avx2<3, 3>, tile_avx2<3, 4>},
};

void gemm_avx2(const float* A, std::int64_t lda, std::int64_t M, const float* W,
               std::int64_t ldw, std::int64_t K, const float* bias, float* C, std::int64_t ldc,
               std::int64_t n_begin, std::int64_t n_end) {
  // Blocks for the caches: a block of weight rows (about 256 KB, for L2) against a block of
  // A's rows (about 32 KB, for L1); within them columns outside, rows inside, so the NR weight
  // rows of a tile stay in L1 while the block's rows pass. (Without the blocks, a product of
  // many rows read all of A from L3 once per 4 columns.) The visiting order changes no bit:
  // every element is one tile's fixed sum.
  const std::int64_t row_bytes = std::max<std::int64_t>(1, K) * std::int64_t(sizeof(float));
  const std::int64_t n_block =
      std::max<std::int64_t>(kCols, (256 << 10) / row_bytes / kCols * kCols);
  const std::int64_t m_block =
      std::max<std::int64_t>(kRows, (32 << 10) / row_bytes / kRows * kRows);
  for (std::int64_t n0 = n_begin; n0 < n_end; n0 += n_block) {
    const std::int64_t n1 = std::min(n_end, n0 + n_block);
    for (std::int64_t m0 = 0; m0 < M; m0 += m_block) {
      const std::int64_t m1 = std::min(M, m0 + m_block);
      for (std::int64_t n = n0; n < n1; n += kCols) {
        const int nr = int(std::min<std::int64_t>(kCols, n1 - n));
        for (std::int64_t m = m0; m < m1; m += kRows) {
          const int mr = int(std::min<std::int64_t>(kRows, m1 - m));
          kTiles[mr - 1][nr - 1](A + m * lda, lda, W + n * ldw, ldw, K, bias ? bias + n : nullptr,
                                 C + m * ldc + n, ldc);
        }
      }
    }
  }
}

bool cpu_has_avx2_fma() {
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return has;
}
#endif

}  // namespace

bool row_invariant_gemm_vectorised() {
#if LOOM_ROW_GEMM_X86
  return cpu_has_avx2_fma() && !force_scalar.load(std::memory_order_relaxed);
#else
  return false;
#endif
}

void set_row_invariant_gemm_scalar(bool on) { force_scalar.store(on); }

void row_invariant_gemm(const float* A, std::int64_t lda, std::int64_t M, const float* W,
                        std::int64_t ldw, std::int64_t K, const float* bias, float* C,
                        std::int64_t ldc, std::int64_t n_begin, std::int64_t n_end) {
  if (M <= 0 || n_end <= n_begin) return;
#if LOOM_ROW_GEMM_X86
  if (row_invariant_gemm_vectorised())
    return gemm_avx2(A, lda, M, W, ldw, K, bias, C, ldc, n_begin, n_end);
#endif
  gemm_scalar(A, lda, M, W, ldw, K, bias, C, ldc, n_begin, n_end);
}

}  // namespace kernels

bool row_invariant_linear_applies(const at::Tensor& x, const at::Tensor& weight,
                                  const at::Tensor& bias) {
  auto cpu_float = [](const at::Tensor& t) {
    return t.device().is_cpu() && t.scalar_type() == at::kFloat && !t.is_sparse();
  };
  if (!x.defined() || !weight.defined() || !cpu_float(x) || !cpu_float(weight)) return false;
  if (weight.dim() != 2 || x.dim() < 1 || x.size(-1) != weight.size(1)) return false;
  if (bias.defined() && (!cpu_float(bias) || bias.dim() != 1 || bias.size(0) != weight.size(0)))
    return false;
  if (autocast_enabled(/*cuda=*/false)) return false;
  if (at::GradMode::is_enabled() &&
      (x.requires_grad() || weight.requires_grad() || (bias.defined() && bias.requires_grad())))
    return false;
  return true;
}

at::Tensor row_invariant_linear(const at::Tensor& x, const at::Tensor& weight,
                                const at::Tensor& bias) {
  return row_invariant_linear(x, std::vector<at::Tensor>{weight},
                              std::vector<at::Tensor>{bias});
}

at::Tensor row_invariant_linear(const at::Tensor& x, const std::vector<at::Tensor>& weights,
                                const std::vector<at::Tensor>& biases) {
  TORCH_CHECK(!weights.empty(), "row_invariant_linear: no weights");
  TORCH_CHECK(biases.empty() || biases.size() == weights.size(),
              "row_invariant_linear: ", biases.size(), " biases for ", weights.size(), " weights");
  auto bias_of = [&](std::size_t i) { return biases.empty() ? at::Tensor() : biases[i]; };
  bool applies = true;
  for (std::size_t i = 0; i < weights.size(); ++i)
    applies = applies && row_invariant_linear_applies(x, weights[i], bias_of(i));
  if (!applies) {
    std::vector<at::Tensor> parts;
    for (std::size_t i = 0; i < weights.size(); ++i)
      parts.push_back(at::linear(x, weights[i], bias_of(i)));
    return parts.size() == 1 ? parts[0] : at::cat(parts, -1);
  }
  const std::int64_t K = weights[0].size(1);
  std::int64_t M = 1;  // the product of the leading dimensions (also when K = 0)
  for (std::int64_t d = 0; d + 1 < x.dim(); ++d) M *= x.size(d);
  const at::Tensor a = x.reshape({M, K}).contiguous();
  // Each weight's columns within the output: [first[i], first[i + 1]).
  std::vector<at::Tensor> w(weights.size()), b(weights.size());
  std::vector<std::int64_t> first{0};
  for (std::size_t i = 0; i < weights.size(); ++i) {
    w[i] = weights[i].contiguous();
    b[i] = bias_of(i).defined() ? bias_of(i).contiguous() : at::Tensor();
    first.push_back(first.back() + w[i].size(0));
  }
  const std::int64_t N = first.back();
  auto out_shape = x.sizes().vec();
  out_shape.back() = N;
  at::Tensor out = at::empty({M, N}, a.options());
  if (M > 0 && N > 0) {
    const float* ap = a.data_ptr<float>();
    float* cp = out.data_ptr<float>();
    // About 64k multiply-adds per task at least, so that small products stay on one thread.
    const std::int64_t per_column = std::max<std::int64_t>(1, M * K);
    const std::int64_t grain = std::max<std::int64_t>(4, (std::int64_t(1) << 16) / per_column);
    at::parallel_for(0, N, grain, [&](std::int64_t begin, std::int64_t end) {
      for (std::size_t i = 0; i < w.size(); ++i) {
        const std::int64_t lo = std::max(begin, first[i]), hi = std::min(end, first[i + 1]);
        if (lo >= hi) continue;
        // Weight i's rows lo - first[i] .. hi - first[i], written at output columns lo .. hi.
        const std::int64_t row = lo - first[i];
        const float* wp = w[i].data_ptr<float>() + row * K;
        const float* bp = b[i].defined() ? b[i].data_ptr<float>() + row : nullptr;
        kernels::row_invariant_gemm(ap, K, M, wp, K, K, bp, cp + lo, N, 0, hi - lo);
      }
    });
  }
  return out.view(out_shape);
}

}  // namespace loom
