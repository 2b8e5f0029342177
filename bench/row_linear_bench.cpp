// Times row_invariant_linear (model/row_invariant_linear.hpp) against at::linear (the BLAS
// sgemm libtorch was built with) on the products of a cached sampling step, side by side in
// one process: the same inputs, alternating, best of --repeats timings each.
//
//   build/bin/row_linear_bench [--threads 2] [--repeats 200]
//
// Prints one line per shape: M x K -> N, microseconds per product for both, the ratio, and
// GFLOP/s.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "model/row_invariant_linear.hpp"

namespace {

template <class F>
double best_seconds(int repeats, F&& f) {
  double best = 1e30;
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 2, repeats = 200;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--threads") threads = std::atoi(argv[i + 1]);
    else if (flag == "--repeats") repeats = std::atoi(argv[i + 1]);
    else {
      std::fprintf(stderr, "usage: row_linear_bench [--threads N] [--repeats N]\n");
      return 2;
    }
  }
  at::set_num_threads(threads);
  at::NoGradGuard no_grad;
  struct Shape {
    const char* what;
    std::int64_t M, K, N;
  };
  const Shape shapes[] = {
      {"q/k/v/o, small shape, one block", 32, 256, 256},
      {"gate/up, small shape, one block", 32, 256, 688},
      {"down, small shape, one block", 32, 688, 256},
      {"LM head, vocab 4096, one block", 32, 256, 4096},
      {"gate/up, 8 rows x 32 queries", 256, 256, 688},
      {"LM head, vocab 128256, 32 rows", 32, 256, 128256},
      {"q/k/v/o, hidden 4096 (8B), one block", 32, 4096, 4096},
      {"attention scores, full pass of 288, D 64", 288, 64, 288},
      {"attention p @ V, full pass of 288, D 64", 288, 288, 64},
      {"q/k/v/o, full pass of 288", 288, 256, 256},
      {"gate/up, full pass of 4 x 288", 1152, 256, 1376},
      {"down, full pass of 4 x 288", 1152, 688, 256},
  };
  std::printf("threads %d, best of %d, AVX2 path: %s\n", threads, repeats,
              loom::kernels::row_invariant_gemm_vectorised() ? "yes" : "no");
  std::printf("%-40s %16s %12s %12s %8s %10s\n", "product", "M x K -> N", "linear us",
              "row-inv us", "ratio", "GFLOP/s");
  for (const Shape& s : shapes) {
    auto x = at::randn({s.M, s.K}), w = at::randn({s.N, s.K});
    const int n = s.N * s.K > 100'000'000 ? std::max(5, repeats / 20) : repeats;
    double blas = 1e30, ours = 1e30;
    for (int round = 0; round < 2; ++round) {  // alternate: both see the same machine
      blas = std::min(blas, best_seconds(n / 2, [&] { at::linear(x, w); }));
      ours = std::min(ours, best_seconds(n / 2, [&] { loom::row_invariant_linear(x, w); }));
    }
    char dims[64];
    std::snprintf(dims, sizeof dims, "%ldx%ld->%ld", long(s.M), long(s.K), long(s.N));
    std::printf("%-40s %16s %12.1f %12.1f %7.2fx %10.1f\n", s.what, dims, blas * 1e6, ours * 1e6,
                blas / ours, 2.0 * double(s.M) * double(s.K) * double(s.N) / ours * 1e-9);
  }
  return 0;
}
