// Forms sampler batches from concurrent requests. HTTP threads submit rows (one per prompt);
// one scheduler thread takes up to `max_batch` waiting rows at a time (waiting `batch_wait_ms`
// for more once the first arrived) and samples them with one call, so concurrent clients share
// forward passes. The queue is bounded: rows beyond max_batch + max_queue in the server are
// refused at once (the caller answers 503), never piled up.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "loom/sdk/plugin.hpp"

namespace loom::serve {

// One prompt to sample. The callbacks run on the scheduler thread.
struct RowJob {
  sdk::GenerateRequest request;
  sdk::ConfigSection options;
  // After each step (only when set): false stops the row (its client is gone).
  std::function<bool(std::int64_t step, const std::vector<std::int64_t>& tokens,
                     std::int64_t mask_token_id)>
      on_step;
  // The last step on_step was given. A batch that fails is sampled again row by row, and
  // each row's steps up to this one are not given again (its client has them already).
  std::int64_t steps_delivered = 0;
  // Exactly once: the result, or null and the reason it failed (and whether the request, not
  // the server, was at fault).
  std::function<void(const sdk::GeneratedSequence* result, const std::string& error,
                     bool bad_request)>
      on_done;
};

struct SchedulerCounters {
  std::int64_t rows_submitted = 0;
  std::int64_t rows_rejected = 0;  // refused with a full queue
  std::int64_t batches = 0;        // sampler calls
  std::int64_t rows_batched = 0;   // rows over all batches
  std::int64_t largest_batch = 0;
  std::int64_t rows_cancelled = 0;  // stopped mid-way because the client left
  std::int64_t rows_failed = 0;
  std::int64_t queue_depth = 0;  // rows waiting now
  std::int64_t running = 0;      // rows being sampled now
};

class BatchScheduler {
 public:
  // Samples a batch: requests, their settings, an observer of every step (may be null).
  using SampleFn = std::function<std::vector<sdk::GeneratedSequence>(
      const std::vector<sdk::GenerateRequest>&, const std::vector<sdk::ConfigSection>&,
      sdk::GenerateObserver*)>;

  BatchScheduler(SampleFn sample, std::int64_t max_batch, std::int64_t max_queue,
                 std::int64_t batch_wait_ms);
  ~BatchScheduler();
  BatchScheduler(const BatchScheduler&) = delete;
  BatchScheduler& operator=(const BatchScheduler&) = delete;

  // Queues all of `rows` or none: false when they do not fit or the scheduler is stopping.
  bool submit(std::vector<RowJob> rows);
  // Samples what is queued, then ends the thread. Rows submitted afterwards are refused.
  void stop();
  SchedulerCounters counters() const;

 private:
  void loop();
  void run_batch(std::vector<RowJob>& batch);

  SampleFn sample_;
  const std::int64_t max_batch_, max_queue_, batch_wait_ms_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<RowJob> queue_;
  bool stopping_ = false;
  SchedulerCounters counters_;
  std::thread thread_;
};

}  // namespace loom::serve
