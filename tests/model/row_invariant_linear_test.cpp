// row_invariant_linear (model/row_invariant_linear.hpp): the products of the cached sampling
// passes. Checked against a float64 product (accuracy), against the documented summation order
// written out here with std::fma (exact bits), and for what it exists for: a row's bits do not
// depend on the rows beside it, on the thread count, or on the vector/scalar path.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "model/row_invariant_linear.hpp"
#include "support/thread_count.hpp"

namespace loom {
namespace {

struct Shape {
  std::int64_t M, N, K;
};

// The order the header documents, written independently: partial sum k mod 8 of fused
// multiply-adds in increasing k (lanes past K add fma(0, 0, s)), then (s0 + s4) + (s2 + s6),
// (s1 + s5) + (s3 + s7), their sum, then the bias.
float documented_element(const float* a, const float* w, std::int64_t K, const float* bias) {
  float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  const std::int64_t chunks = (K + 7) / 8;
  for (std::int64_t c = 0; c < chunks; ++c)
    for (int l = 0; l < 8; ++l) {
      const std::int64_t k = c * 8 + l;
      s[l] = k < K ? std::fma(a[k], w[k], s[l]) : std::fma(0.0f, 0.0f, s[l]);
    }
  float r = ((s[0] + s[4]) + (s[2] + s[6])) + ((s[1] + s[5]) + (s[3] + s[7]));
  if (bias) r += *bias;
  return r;
}

bool same_bits(const torch::Tensor& a, const torch::Tensor& b) {
  if (a.sizes() != b.sizes() || a.scalar_type() != b.scalar_type()) return false;
  auto x = a.contiguous(), y = b.contiguous();
  return std::memcmp(x.data_ptr(), y.data_ptr(), size_t(x.numel()) * x.element_size()) == 0;
}

using test::ThreadCount;

class ScalarPath {
 public:
  ScalarPath() : was_vector_(kernels::row_invariant_gemm_vectorised()) {
    kernels::set_row_invariant_gemm_scalar(true);
  }
  ~ScalarPath() { kernels::set_row_invariant_gemm_scalar(!was_vector_); }

 private:
  bool was_vector_;
};

const Shape kShapes[] = {{1, 1, 1},  {2, 3, 7},    {3, 4, 8},    {5, 9, 13},
                         {7, 17, 64}, {32, 256, 256}, {37, 45, 688}, {4, 6, 0}};

TEST(RowInvariantLinear, MatchesAFloat64Product) {
  torch::manual_seed(3);
  for (const Shape& s : kShapes) {
    auto x = torch::randn({s.M, s.K}), w = torch::randn({s.N, s.K}), b = torch::randn({s.N});
    auto got = row_invariant_linear(x, w, b);
    auto want = at::linear(x.to(torch::kDouble), w.to(torch::kDouble), b.to(torch::kDouble));
    ASSERT_EQ(got.sizes(), want.sizes());
    // fp32 accumulation over K terms of size ~sqrt(K): error ~ K * 2^-24 * sqrt(K).
    const double tol = 1e-5 * std::max<double>(1.0, double(s.K));
    EXPECT_LT((got.to(torch::kDouble) - want).abs().max().item<double>(), tol)
        << s.M << "x" << s.N << "x" << s.K;
  }
}

TEST(RowInvariantLinear, FollowsTheDocumentedSummationOrderBitForBit) {
  torch::manual_seed(4);
  for (bool scalar : {false, true}) {
    std::unique_ptr<ScalarPath> path;
    if (scalar) path = std::make_unique<ScalarPath>();
    for (const Shape& s : kShapes) {
      auto x = torch::randn({s.M, s.K}), w = torch::randn({s.N, s.K}), b = torch::randn({s.N});
      auto got = row_invariant_linear(x, w, b).contiguous();
      const float* xp = x.data_ptr<float>();
      const float* wp = w.data_ptr<float>();
      const float* bp = b.data_ptr<float>();
      const float* gp = got.data_ptr<float>();
      for (std::int64_t m = 0; m < s.M; ++m)
        for (std::int64_t n = 0; n < s.N; ++n) {
          const float want = documented_element(xp + m * s.K, wp + n * s.K, s.K, bp + n);
          ASSERT_EQ(std::memcmp(&want, gp + m * s.N + n, sizeof(float)), 0)
              << (scalar ? "scalar" : "vector") << " path, " << s.M << "x" << s.N << "x" << s.K
              << " at (" << m << ", " << n << "): " << gp[m * s.N + n] << " vs " << want;
        }
    }
  }
}

TEST(RowInvariantLinear, ARowsBitsDoNotDependOnTheOtherRowsOrOnThreads) {
  torch::manual_seed(5);
  const std::int64_t K = 260, N = 203;  // neither a multiple of the tiles nor of 8
  auto w = torch::randn({N, K}), b = torch::randn({N});
  auto rows = torch::randn({40, K});
  torch::Tensor alone[3];
  for (std::int64_t r = 0; r < 3; ++r) alone[r] = row_invariant_linear(rows.narrow(0, r, 1), w, b);
  for (int threads : {1, 2, 3}) {
    ThreadCount guard(threads);
    for (std::int64_t M : {1, 2, 3, 4, 7, 33, 40}) {
      auto all = row_invariant_linear(rows.narrow(0, 0, M), w, b);
      for (std::int64_t r = 0; r < std::min<std::int64_t>(M, 3); ++r)
        EXPECT_TRUE(same_bits(all.narrow(0, r, 1), alone[r]))
            << "row " << r << " in a product of " << M << " rows, " << threads << " threads";
    }
    // The same row placed after others, in a [.., K] batch with leading dimensions.
    auto batch = torch::cat({rows.narrow(0, 10, 5), rows.narrow(0, 1, 1), rows.narrow(0, 20, 6)})
                     .view({3, 4, K});
    auto out = row_invariant_linear(batch, w, b);
    EXPECT_EQ(out.sizes(), (std::vector<std::int64_t>{3, 4, N}));
    EXPECT_TRUE(same_bits(out.view({12, N}).narrow(0, 5, 1), alone[1])) << threads << " threads";
  }
}

TEST(RowInvariantLinear, SeveralWeightsAtOnceEqualTheirProductsSideBySide) {
  torch::manual_seed(9);
  auto x = torch::randn({2, 5, 72});
  std::vector<torch::Tensor> w = {torch::randn({8, 72}), torch::randn({3, 72}), torch::randn({13, 72})};
  std::vector<torch::Tensor> b = {torch::randn({8}), torch::Tensor(), torch::randn({13})};
  for (int threads : {1, 2}) {
    ThreadCount guard(threads);
    auto all = row_invariant_linear(x, w, b);
    auto want = torch::cat({row_invariant_linear(x, w[0], b[0]), row_invariant_linear(x, w[1]),
                            row_invariant_linear(x, w[2], b[2])},
                           -1);
    EXPECT_TRUE(same_bits(all, want)) << threads << " threads";
  }
}

TEST(RowInvariantLinear, TheScalarPathGivesTheVectorPathsBits) {
  if (!kernels::row_invariant_gemm_vectorised())
    GTEST_SKIP() << "this CPU has no AVX2 + FMA: only the scalar path runs";
  torch::manual_seed(6);
  auto x = torch::randn({11, 1000}), w = torch::randn({37, 1000}), b = torch::randn({37});
  auto vector = row_invariant_linear(x, w, b);
  ScalarPath scalar;
  EXPECT_TRUE(same_bits(vector, row_invariant_linear(x, w, b)));
}

TEST(RowInvariantLinear, LeavesWhatItCannotComputeToAtLinear) {
  torch::manual_seed(8);
  auto x = torch::randn({3, 5}, torch::kDouble), w = torch::randn({4, 5}, torch::kDouble);
  EXPECT_FALSE(row_invariant_linear_applies(x, w));
  EXPECT_TRUE(same_bits(row_invariant_linear(x, w), at::linear(x, w)));
  auto xf = torch::randn({3, 5}), wf = torch::randn({4, 5}).requires_grad_();
  EXPECT_FALSE(row_invariant_linear_applies(xf, wf));  // a gradient is wanted
  auto y = row_invariant_linear(xf, wf);
  EXPECT_TRUE(y.requires_grad());
  {
    torch::NoGradGuard no_grad;
    EXPECT_TRUE(row_invariant_linear_applies(xf, wf));
  }
}

}  // namespace
}  // namespace loom
