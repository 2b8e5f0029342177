// libtorch's intra-op thread count for a scope: set on construction, the previous count back at
// scope exit (tests that compare results across thread counts nest these).
#pragma once

#include <ATen/Parallel.h>

namespace loom::test {

class ThreadCount {
 public:
  explicit ThreadCount(int threads) : before_(at::get_num_threads()) {
    at::set_num_threads(threads);
  }
  ~ThreadCount() { at::set_num_threads(before_); }
  ThreadCount(const ThreadCount&) = delete;
  ThreadCount& operator=(const ThreadCount&) = delete;

 private:
  int before_;
};

}  // namespace loom::test
