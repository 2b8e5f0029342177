// A linear layer whose output rows do not depend on which other rows share the product: the
// cached sampling passes (model/llama_model_cached.cpp) stack the queries of every row of a
// batch into one matrix product per layer, and each prompt must still get exactly the bits of
// its solo run. A BLAS sgemm does not promise that -- OpenBLAS rounds a matrix of 1-4 rows
// differently from the same rows inside a larger one -- so these products use their own loop.
//
// Every output element is summed in one fixed order that depends only on K: eight running
// partial sums of fused multiply-adds (element k goes to partial sum k mod 8, in increasing k),
// then one fixed tree over the eight, then the bias. Nothing is packed or reordered by M, and
// threads split the output columns, so a row's result is the same whatever M is, whatever the
// other rows are, and however many threads run. The weight is read in its own [N, K] layout
// (no packed copy, no extra memory). AVX2 + FMA where the CPU has them, else a scalar loop that
// performs the same operations in the same order (the same bits, slower).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace loom {
namespace kernels {

// C[m, n] = sum_k A[m, k] * W[n, k] (+ bias[n]) for m < M, n in [n_begin, n_end); A: M x K
// (row stride lda), W: rows of K (stride ldw), C: row stride ldc; bias may be null.
void row_invariant_gemm(const float* A, std::int64_t lda, std::int64_t M, const float* W,
                        std::int64_t ldw, std::int64_t K, const float* bias, float* C,
                        std::int64_t ldc, std::int64_t n_begin, std::int64_t n_end);

// Whether row_invariant_gemm takes its AVX2 path on this CPU; set_row_invariant_gemm_scalar
// forces the scalar one (tests: both must give the same bits).
bool row_invariant_gemm_vectorised();
void set_row_invariant_gemm_scalar(bool on);

}  // namespace kernels

// Whether row_invariant_linear computes x's product itself: CPU fp32 x, weight (and bias),
// no bf16 autocast, no gradient wanted.
bool row_invariant_linear_applies(const at::Tensor& x, const at::Tensor& weight,
                                  const at::Tensor& bias = {});

// x [..., K] times weight [N, K] transposed, plus bias [N]: [..., N], through
// kernels::row_invariant_gemm with the columns split among at::get_num_threads() threads where
// row_invariant_linear_applies; otherwise at::linear (no promise about rows).
at::Tensor row_invariant_linear(const at::Tensor& x, const at::Tensor& weight,
                                const at::Tensor& bias = {});

// The products of x with several weights [N_i, K] (biases [N_i] or undefined, one per weight
// or none), side by side: [..., sum N_i], equal to concatenating row_invariant_linear's
// results, in one parallel region (the same bits; fewer thread wake-ups than one call each).
at::Tensor row_invariant_linear(const at::Tensor& x, const std::vector<at::Tensor>& weights,
                                const std::vector<at::Tensor>& biases = {});

}  // namespace loom
