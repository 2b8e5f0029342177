// Single-pass CPU loops behind the fused model functions (attention softmax, RMSNorm,
// SwiGLU). Each works on one thread's share of rows; callers split rows across threads.
//
// Float versions are vectorised: the file is compiled with -O3 and, on x86-64 with GCC or
// Clang, each function is cloned for AVX-512, AVX2 and baseline x86-64 and picked at load
// time (target_clones), with a polynomial exp (Cephes' expf, ~1 ulp) that vectorises. Double
// versions use std::exp and exist for tests that compare with fp64 references.
#pragma once

#include <c10/util/BFloat16.h>

#include <cstdint>

namespace loom::kernels {

// Attention rows. x: rows x cols, row stride ldx; bias: same shape (stride ldb) or null.
// softmax_rows: x <- softmax(x + bias) per row; lse[i] = log-sum-exp of row i of x + bias.
// A row whose every entry is -inf becomes all zeros with lse = +inf (exp_rows then gives
// zeros again).
void softmax_rows(float* x, std::int64_t ldx, const float* bias, std::int64_t ldb,
                  std::int64_t rows, std::int64_t cols, float* lse);
void softmax_rows(double* x, std::int64_t ldx, const double* bias, std::int64_t ldb,
                  std::int64_t rows, std::int64_t cols, double* lse);
// exp_rows: x <- exp(x + bias - lse[i]) (the probabilities again, from saved lse).
void exp_rows(float* x, std::int64_t ldx, const float* bias, std::int64_t ldb, const float* lse,
              std::int64_t rows, std::int64_t cols);
void exp_rows(double* x, std::int64_t ldx, const double* bias, std::int64_t ldb,
              const double* lse, std::int64_t rows, std::int64_t cols);
// softmax_backward_rows: dp <- p * (dp - sum_j(dout[i, j] * out[i, j])), with dout/out
// rows x d (stride ldo). The gradient of the scores from the gradient of the probabilities.
void softmax_backward_rows(float* dp, const float* p, std::int64_t ld, const float* dout,
                           const float* out, std::int64_t ldo, std::int64_t rows,
                           std::int64_t cols, std::int64_t d);
void softmax_backward_rows(double* dp, const double* p, std::int64_t ld, const double* dout,
                           const double* out, std::int64_t ldo, std::int64_t rows,
                           std::int64_t cols, std::int64_t d);

// Cross-entropy rows, in place: for each row i of logits x (rows x cols, stride ld),
// ce[i] = logsumexp(x_i) - x_i[t_i], argmax[i] = the first index of the row maximum, and
// x_i <- softmax(x_i) - onehot(t_i), the gradient of ce[i] with respect to the row.
void cross_entropy_rows(float* x, std::int64_t ld, std::int64_t rows, std::int64_t cols,
                        const std::int64_t* targets, float* ce, std::int64_t* argmax);
void cross_entropy_rows(double* x, std::int64_t ld, std::int64_t rows, std::int64_t cols,
                        const std::int64_t* targets, double* ce, std::int64_t* argmax);

// Rows of one attention head into / out of a packed work buffer (rows x d, stride d), from /
// to a [.., rows, ld] tensor: with rotary embedding (rope(x)[e] = x[e] cos[e] - x[e + d/2]
// sin[e] for e < d/2, x[e] cos[e] + x[e - d/2] sin[e] after) times `mul`, its transpose
// (for gradients), or plain. cos, sin: rows x d. bf16 sources and destinations use fp32 work
// buffers.
void rope_rows(const float* src, std::int64_t ld, const float* cos, const float* sin, float* dst,
               std::int64_t rows, std::int64_t d, float mul);
void rope_rows(const c10::BFloat16* src, std::int64_t ld, const float* cos, const float* sin,
               float* dst, std::int64_t rows, std::int64_t d, float mul);
void rope_rows(const double* src, std::int64_t ld, const double* cos, const double* sin,
               double* dst, std::int64_t rows, std::int64_t d, double mul);
void rope_transpose_rows(const float* y, const float* cos, const float* sin, float* dst,
                         std::int64_t ld, std::int64_t rows, std::int64_t d, float mul);
void rope_transpose_rows(const float* y, const float* cos, const float* sin, c10::BFloat16* dst,
                         std::int64_t ld, std::int64_t rows, std::int64_t d, float mul);
void rope_transpose_rows(const double* y, const double* cos, const double* sin, double* dst,
                         std::int64_t ld, std::int64_t rows, std::int64_t d, double mul);
void load_rows(const float* src, std::int64_t ld, float* dst, std::int64_t rows, std::int64_t d);
void load_rows(const c10::BFloat16* src, std::int64_t ld, float* dst, std::int64_t rows,
               std::int64_t d);
void load_rows(const double* src, std::int64_t ld, double* dst, std::int64_t rows, std::int64_t d);
void store_rows(const float* src, float* dst, std::int64_t ld, std::int64_t rows, std::int64_t d);
void store_rows(const float* src, c10::BFloat16* dst, std::int64_t ld, std::int64_t rows,
                std::int64_t d);
void store_rows(const double* src, double* dst, std::int64_t ld, std::int64_t rows,
                std::int64_t d);

// RMSNorm over rows of width n: y = w * x * rstd, rstd = 1 / sqrt(mean(x^2) + eps).
void rms_norm_forward(const float* x, const float* w, float* y, float* rstd, std::int64_t rows,
                      std::int64_t n, float eps);
void rms_norm_forward(const double* x, const double* w, double* y, double* rstd,
                      std::int64_t rows, std::int64_t n, double eps);
// dx = rstd * (g w - xhat * mean(g w xhat)), xhat = x rstd; dw_acc += sum_rows(g * xhat).
void rms_norm_backward(const float* x, const float* w, const float* rstd, const float* g,
                       float* dx, float* dw_acc, std::int64_t rows, std::int64_t n);
void rms_norm_backward(const double* x, const double* w, const double* rstd, const double* g,
                       double* dx, double* dw_acc, std::int64_t rows, std::int64_t n);

// SwiGLU over rows of a [rows, 2n] tensor holding a (gate) then b (up) in each row:
// y = silu(a) * b. Backward: da = g b silu'(a), db = g silu(a), written to a [rows, 2n] grad.
// bf16 rows compute in fp32.
void swiglu_forward(const float* ab, float* y, std::int64_t rows, std::int64_t n);
void swiglu_forward(const c10::BFloat16* ab, c10::BFloat16* y, std::int64_t rows, std::int64_t n);
void swiglu_forward(const double* ab, double* y, std::int64_t rows, std::int64_t n);
void swiglu_backward(const float* ab, const float* g, float* dab, std::int64_t rows,
                     std::int64_t n);
void swiglu_backward(const c10::BFloat16* ab, const c10::BFloat16* g, c10::BFloat16* dab,
                     std::int64_t rows, std::int64_t n);
void swiglu_backward(const double* ab, const double* g, double* dab, std::int64_t rows,
                     std::int64_t n);

}  // namespace loom::kernels
