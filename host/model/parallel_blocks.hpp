// Work split for the fused CPU functions: blocks claimed one at a time by up to
// at::get_num_threads() threads. On a machine whose cores are shared with other work a
// static split (at::parallel_for's) waits for whichever thread was descheduled; claiming
// blocks lets the running threads take over its share.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cstdint>

namespace loom {

// Number of slots parallel_blocks may use for `blocks` blocks (per-thread accumulators).
inline int parallel_slots(std::int64_t blocks) {
  return int(std::max<std::int64_t>(1, std::min<std::int64_t>(at::get_num_threads(), blocks)));
}

// Calls fn(slot, begin, end) for consecutive ranges of at most `block` items covering [0, n);
// slot < parallel_slots(blocks) is the same for every call made by one thread.
template <class F>
void parallel_blocks(std::int64_t n, std::int64_t block, F&& fn) {
  if (n <= 0) return;
  block = std::max<std::int64_t>(1, block);
  const std::int64_t blocks = (n + block - 1) / block;
  std::atomic<std::int64_t> next{0};
  at::parallel_for(0, parallel_slots(blocks), 1, [&](std::int64_t slot, std::int64_t) {
    for (std::int64_t b; (b = next.fetch_add(1)) < blocks;)
      fn(slot, b * block, std::min(n, (b + 1) * block));
  });
}

// How many threads a parallel_blocks loop over `blocks` blocks of slow work actually runs on,
// measured (distinct threads seen). at::set_num_threads(n) should give min(n, blocks); 1 means
// loom was built without OpenMP (at::parallel_for then runs its loop on the calling thread).
int parallel_blocks_threads(std::int64_t blocks);

}  // namespace loom
