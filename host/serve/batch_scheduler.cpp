#include "serve/batch_scheduler.hpp"

#include <algorithm>
#include <chrono>
#include <stdexcept>

namespace loom::serve {

namespace {

// Hands each step of a batch row to that row's job; counts the rows whose client left.
class BatchObserver final : public sdk::GenerateObserver {
 public:
  explicit BatchObserver(std::vector<RowJob>& rows) : rows_(rows), stopped_(rows.size(), false) {}
  bool on_step(std::size_t row, std::int64_t step, const std::vector<std::int64_t>& tokens,
               std::int64_t mask_token_id) override {
    if (row >= rows_.size() || !rows_[row].on_step) return true;
    if (step <= rows_[row].steps_delivered) return true;  // sampled again after a failed batch
    bool go_on = false;
    try {
      go_on = rows_[row].on_step(step, tokens, mask_token_id);
    } catch (...) {
      go_on = false;  // a callback that fails cannot be delivered to any more
    }
    rows_[row].steps_delivered = step;
    if (!go_on) stopped_[row] = true;
    return go_on;
  }
  bool stopped(std::size_t row) const { return stopped_[row]; }

 private:
  std::vector<RowJob>& rows_;
  std::vector<bool> stopped_;
};

}  // namespace

BatchScheduler::BatchScheduler(SampleFn sample, std::int64_t max_batch, std::int64_t max_queue,
                               std::int64_t batch_wait_ms)
    : sample_(std::move(sample)),
      max_batch_(std::max<std::int64_t>(1, max_batch)),
      max_queue_(std::max<std::int64_t>(0, max_queue)),
      batch_wait_ms_(std::max<std::int64_t>(0, batch_wait_ms)) {
  thread_ = std::thread([this] { loop(); });
}

BatchScheduler::~BatchScheduler() { stop(); }

bool BatchScheduler::submit(std::vector<RowJob> rows) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto n = static_cast<std::int64_t>(rows.size());
    const auto held = static_cast<std::int64_t>(queue_.size()) + counters_.running;
    if (stopping_ || held + n > max_batch_ + max_queue_) {
      counters_.rows_rejected += n;
      return false;
    }
    for (auto& r : rows) queue_.push_back(std::move(r));
    counters_.rows_submitted += n;
    counters_.queue_depth = static_cast<std::int64_t>(queue_.size());
  }
  wake_.notify_all();
  return true;
}

void BatchScheduler::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

SchedulerCounters BatchScheduler::counters() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return counters_;
}

void BatchScheduler::loop() {
  for (;;) {
    std::vector<RowJob> batch;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, and everything queued is done
      // Rows of concurrent requests arrive a little apart: give them a moment to join.
      if (static_cast<std::int64_t>(queue_.size()) < max_batch_ && batch_wait_ms_ > 0 && !stopping_)
        wake_.wait_for(lock, std::chrono::milliseconds(batch_wait_ms_), [&] {
          return stopping_ || static_cast<std::int64_t>(queue_.size()) >= max_batch_;
        });
      while (!queue_.empty() && static_cast<std::int64_t>(batch.size()) < max_batch_) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      const auto n = static_cast<std::int64_t>(batch.size());
      counters_.running = n;
      counters_.queue_depth = static_cast<std::int64_t>(queue_.size());
      counters_.batches += 1;
      counters_.rows_batched += n;
      counters_.largest_batch = std::max(counters_.largest_batch, n);
    }
    run_batch(batch);
  }
}

void BatchScheduler::run_batch(std::vector<RowJob>& batch) {
  std::vector<sdk::GenerateRequest> requests;
  std::vector<sdk::ConfigSection> options;
  for (const auto& r : batch) {
    requests.push_back(r.request);
    options.push_back(r.options);
  }
  BatchObserver observer(batch);
  std::vector<sdk::GeneratedSequence> results;
  std::string error;
  bool bad_request = false;
  try {
    results = sample_(requests, options, &observer);
    if (results.size() != batch.size())
      throw std::runtime_error("the sampler returned " + std::to_string(results.size()) +
                               " results for " + std::to_string(batch.size()) + " prompts");
  } catch (const std::invalid_argument& e) {
    error = e.what();
    bad_request = true;
  } catch (const std::exception& e) {
    error = e.what();
  }
  if (!error.empty() && batch.size() > 1) {
    // One row's failure must not fail its neighbours: each alone, so only the bad one fails.
    for (auto& r : batch) {
      std::vector<RowJob> one;
      one.push_back(std::move(r));
      run_batch(one);
    }
    return;
  }
  std::int64_t cancelled = 0, failed = 0;
  for (std::size_t i = 0; i < batch.size(); ++i) {
    if (observer.stopped(i)) ++cancelled;
    if (!error.empty()) ++failed;
  }
  {
    // The rows' places are free before their clients hear back, so a client that sends its
    // next request at once finds room.
    std::lock_guard<std::mutex> lock(mutex_);
    counters_.rows_cancelled += cancelled;
    counters_.rows_failed += failed;
    counters_.running -= static_cast<std::int64_t>(batch.size());
  }
  for (std::size_t i = 0; i < batch.size(); ++i) {
    if (!batch[i].on_done) continue;
    // A callback that throws must not end the scheduler thread (and with it the process).
    try {
      batch[i].on_done(error.empty() ? &results[i] : nullptr, error, bad_request);
    } catch (...) {
    }
  }
}

}  // namespace loom::serve
