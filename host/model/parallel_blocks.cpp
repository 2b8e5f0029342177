#include "model/parallel_blocks.hpp"

#include <chrono>
#include <mutex>
#include <set>
#include <thread>

namespace loom {

int parallel_blocks_threads(std::int64_t blocks) {
  std::mutex mutex;
  std::set<std::thread::id> seen;
  parallel_blocks(blocks, 1, [&](std::int64_t, std::int64_t, std::int64_t) {
    {
      std::lock_guard<std::mutex> lock(mutex);
      seen.insert(std::this_thread::get_id());
    }
    // Long enough that a thread that claims no block before the others finish is rare.
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  });
  return int(seen.size());
}

}  // namespace loom
