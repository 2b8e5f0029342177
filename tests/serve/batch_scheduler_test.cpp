// BatchScheduler on a sampler stand-in that records what it was given: rows that wait while a
// batch runs form the next batches (up to max_batch), the queue refuses what does not fit, a
// failing row fails alone, an observer that returns false is counted, stop() finishes the queue.
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <future>
#include <map>
#include <mutex>
#include <stdexcept>

#include "serve/batch_scheduler.hpp"

namespace loom::serve {
namespace {

// A sampler that holds its first call until released, and records each batch's seeds.
class HeldSampler {
 public:
  BatchScheduler::SampleFn fn() {
    return [this](const std::vector<sdk::GenerateRequest>& requests, const std::vector<sdk::ConfigSection>&,
                  sdk::GenerateObserver* observer) {
      {
        std::unique_lock<std::mutex> lock(mutex_);
        std::vector<std::uint64_t> seeds;
        for (const auto& r : requests) seeds.push_back(r.seed);
        batches_.push_back(seeds);
        entered_.notify_all();
        released_cv_.wait(lock, [&] { return released_; });
      }
      std::vector<sdk::GeneratedSequence> out(requests.size());
      for (std::size_t i = 0; i < requests.size(); ++i) {
        if (requests[i].seed == 13) throw std::invalid_argument("seed 13 is refused");
        if (observer) observer->on_step(i, 1, {std::int64_t(requests[i].seed)}, -1);
        out[i].new_tokens = std::int64_t(requests[i].seed);
      }
      return out;
    };
  }
  void wait_for_batches(std::size_t n) {
    std::unique_lock<std::mutex> lock(mutex_);
    entered_.wait(lock, [&] { return batches_.size() >= n; });
  }
  void release() {
    std::lock_guard<std::mutex> lock(mutex_);
    released_ = true;
    released_cv_.notify_all();
  }
  std::vector<std::vector<std::uint64_t>> batches() {
    std::lock_guard<std::mutex> lock(mutex_);
    return batches_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable entered_, released_cv_;
  bool released_ = false;
  std::vector<std::vector<std::uint64_t>> batches_;
};

struct Outcome {
  std::mutex mutex;
  std::map<std::uint64_t, std::string> results;  // seed -> "ok <new_tokens>" or "error: ..."
};

RowJob row(std::uint64_t seed, Outcome& outcome, bool stop_at_first_step = false) {
  RowJob j;
  j.request.seed = seed;
  if (stop_at_first_step) j.on_step = [](std::int64_t, const std::vector<std::int64_t>&, std::int64_t) { return false; };
  j.on_done = [seed, &outcome](const sdk::GeneratedSequence* g, const std::string& error, bool bad) {
    std::lock_guard<std::mutex> lock(outcome.mutex);
    outcome.results[seed] = g ? "ok " + std::to_string(g->new_tokens) : std::string(bad ? "bad: " : "error: ") + error;
  };
  return j;
}

std::vector<RowJob> rows(std::initializer_list<std::uint64_t> seeds, Outcome& outcome) {
  std::vector<RowJob> v;
  for (auto s : seeds) v.push_back(row(s, outcome));
  return v;
}

TEST(BatchScheduler, RowsThatWaitWhileABatchRunsFormTheNextBatchesUpToMaxBatch) {
  HeldSampler sampler;
  Outcome outcome;
  BatchScheduler s(sampler.fn(), /*max_batch=*/3, /*max_queue=*/10, /*batch_wait_ms=*/0);
  ASSERT_TRUE(s.submit(rows({1}, outcome)));
  sampler.wait_for_batches(1);  // the first batch runs (held) with row 1 alone
  ASSERT_TRUE(s.submit(rows({2, 3}, outcome)));
  ASSERT_TRUE(s.submit(rows({4, 5, 6}, outcome)));
  EXPECT_EQ(s.counters().queue_depth, 5);
  EXPECT_EQ(s.counters().running, 1);
  sampler.release();
  s.stop();
  const std::vector<std::vector<std::uint64_t>> expected = {{1}, {2, 3, 4}, {5, 6}};
  EXPECT_EQ(sampler.batches(), expected);
  const SchedulerCounters c = s.counters();
  EXPECT_EQ(c.batches, 3);
  EXPECT_EQ(c.rows_batched, 6);
  EXPECT_EQ(c.largest_batch, 3);
  EXPECT_EQ(c.queue_depth, 0);
  for (std::uint64_t seed = 1; seed <= 6; ++seed) EXPECT_EQ(outcome.results[seed], "ok " + std::to_string(seed));
}

TEST(BatchScheduler, RefusesRowsBeyondMaxBatchPlusMaxQueueAllOrNone) {
  HeldSampler sampler;
  Outcome outcome;
  BatchScheduler s(sampler.fn(), /*max_batch=*/1, /*max_queue=*/2, 0);
  ASSERT_TRUE(s.submit(rows({1}, outcome)));
  sampler.wait_for_batches(1);
  EXPECT_FALSE(s.submit(rows({2, 3, 4}, outcome)));  // 1 running + 3 > 1 + 2: none is queued
  EXPECT_TRUE(s.submit(rows({2, 3}, outcome)));
  EXPECT_FALSE(s.submit(rows({4}, outcome)));
  EXPECT_EQ(s.counters().rows_rejected, 4);
  sampler.release();
  s.stop();
  EXPECT_EQ(outcome.results.size(), 3u);
  EXPECT_FALSE(s.submit(rows({5}, outcome)));  // stopped
}

TEST(BatchScheduler, ARowTheSamplerRefusesFailsAloneAndItsNeighboursAreAnswered) {
  HeldSampler sampler;
  sampler.release();
  Outcome outcome;
  BatchScheduler s(sampler.fn(), 4, 10, /*batch_wait_ms=*/0);
  std::vector<RowJob> batch = rows({7, 13, 8}, outcome);
  ASSERT_TRUE(s.submit(std::move(batch)));
  s.stop();
  EXPECT_EQ(outcome.results[7], "ok 7");
  EXPECT_EQ(outcome.results[8], "ok 8");
  EXPECT_EQ(outcome.results[13], "bad: seed 13 is refused");
  EXPECT_EQ(s.counters().rows_failed, 1);
}

TEST(BatchScheduler, ARowWhoseObserverSaysStopIsCountedAsCancelled) {
  HeldSampler sampler;
  sampler.release();
  Outcome outcome;
  BatchScheduler s(sampler.fn(), 4, 10, 0);
  std::vector<RowJob> batch;
  batch.push_back(row(1, outcome));
  batch.push_back(row(2, outcome, /*stop_at_first_step=*/true));
  ASSERT_TRUE(s.submit(std::move(batch)));
  s.stop();
  EXPECT_EQ(s.counters().rows_cancelled, 1);
  EXPECT_EQ(outcome.results.size(), 2u);  // on_done is still called once per row
}

// A client told its answer may send the next request at once: the row's place is free by then.
TEST(BatchScheduler, ARowsPlaceIsFreeWhenItsClientHearsBack) {
  HeldSampler sampler;
  sampler.release();
  Outcome outcome;
  BatchScheduler s(sampler.fn(), /*max_batch=*/1, /*max_queue=*/0, 0);
  std::promise<bool> accepted;
  RowJob first = row(1, outcome);
  first.on_done = [&](const sdk::GeneratedSequence*, const std::string&, bool) {
    accepted.set_value(s.submit(rows({2}, outcome)));
  };
  std::vector<RowJob> batch;
  batch.push_back(std::move(first));
  ASSERT_TRUE(s.submit(std::move(batch)));
  EXPECT_TRUE(accepted.get_future().get());
  s.stop();
  EXPECT_EQ(outcome.results[2], "ok 2");
}

// A sampler that streams steps 1..3 of every row in order, then refuses a batch that holds
// seed 13 (as a plugin that finds a bad row only after an earlier row streamed); alone, every
// other row is sampled.
std::vector<sdk::GeneratedSequence> steps_then_refuse(const std::vector<sdk::GenerateRequest>& requests,
                                                      const std::vector<sdk::ConfigSection>&,
                                                      sdk::GenerateObserver* observer) {
  for (std::size_t i = 0; i < requests.size(); ++i) {
    if (requests[i].seed == 13) throw std::invalid_argument("seed 13 is refused");
    for (std::int64_t step = 1; step <= 3; ++step)
      if (observer) observer->on_step(i, step, {std::int64_t(requests[i].seed)}, -1);
  }
  std::vector<sdk::GeneratedSequence> out(requests.size());
  for (std::size_t i = 0; i < requests.size(); ++i) out[i].new_tokens = std::int64_t(requests[i].seed);
  return out;
}

TEST(BatchScheduler, ARowSampledAgainAfterItsBatchFailedIsNotGivenItsStepsTwice) {
  Outcome outcome;
  BatchScheduler s(steps_then_refuse, 4, 10, 0);
  std::vector<std::int64_t> steps_of_7;
  std::vector<RowJob> batch;
  batch.push_back(row(7, outcome));
  batch.back().on_step = [&](std::int64_t step, const std::vector<std::int64_t>&, std::int64_t) {
    steps_of_7.push_back(step);
    return true;
  };
  batch.push_back(row(13, outcome));
  ASSERT_TRUE(s.submit(std::move(batch)));
  s.stop();
  EXPECT_EQ(steps_of_7, (std::vector<std::int64_t>{1, 2, 3}));
  EXPECT_EQ(outcome.results[7], "ok 7");
  EXPECT_EQ(outcome.results[13], "bad: seed 13 is refused");
}

TEST(BatchScheduler, AnOnDoneThatThrowsDoesNotEndTheScheduler) {
  HeldSampler sampler;
  sampler.release();
  Outcome outcome;
  BatchScheduler s(sampler.fn(), 1, 10, 0);
  RowJob throwing = row(1, outcome);
  throwing.on_done = [](const sdk::GeneratedSequence*, const std::string&, bool) {
    throw std::runtime_error("a client's callback failed");
  };
  std::vector<RowJob> first;
  first.push_back(std::move(throwing));
  ASSERT_TRUE(s.submit(std::move(first)));
  ASSERT_TRUE(s.submit(rows({2}, outcome)));
  s.stop();
  EXPECT_EQ(outcome.results[2], "ok 2");
  EXPECT_EQ(s.counters().batches, 2);
}

}  // namespace
}  // namespace loom::serve
