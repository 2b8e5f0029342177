// The pieces of data parallelism without the trainer: the launch environment, the launcher's
// argument handling, and gradient buckets over a real two-rank Gloo group (two threads of this
// process, each its own rank, meeting at a TCPStore on a free local port).
#include <gtest/gtest.h>

#include <cstdlib>
#include <future>
#include <map>
#include <mutex>
#include <thread>

#include "distributed/data_parallel.hpp"
#include "distributed/gradient_buckets.hpp"
#include "distributed/launch_environment.hpp"
#include "distributed/local_launcher.hpp"
#include "distributed/process_group.hpp"
#include "errors.hpp"

namespace loom {
namespace {

class ScopedEnv {
 public:
  explicit ScopedEnv(std::map<std::string, std::string> vars) {
    for (const char* k :
         {"RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"}) {
      if (const char* v = std::getenv(k)) saved_[k] = v;
      unsetenv(k);
    }
    for (const auto& [k, v] : vars) setenv(k.c_str(), v.c_str(), 1);
  }
  ~ScopedEnv() {
    for (const char* k :
         {"RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"})
      unsetenv(k);
    for (const auto& [k, v] : saved_) setenv(k.c_str(), v.c_str(), 1);
  }

 private:
  std::map<std::string, std::string> saved_;
};

TEST(LaunchEnvironment, ReadsTorchrunsVariables) {
  {
    ScopedEnv env({});
    auto e = LaunchEnvironment::from_environment();
    EXPECT_FALSE(e.distributed());
    EXPECT_EQ(e.rank, 0);
  }
  {
    ScopedEnv env({{"RANK", "3"},
                   {"WORLD_SIZE", "16"},
                   {"LOCAL_RANK", "3"},
                   {"LOCAL_WORLD_SIZE", "8"},
                   {"MASTER_ADDR", "node01"},
                   {"MASTER_PORT", "29400"}});
    auto e = LaunchEnvironment::from_environment();
    EXPECT_TRUE(e.distributed());
    EXPECT_EQ(e.rank, 3);
    EXPECT_EQ(e.world_size, 16);
    EXPECT_EQ(e.local_world_size, 8);
    EXPECT_EQ(e.endpoint(), "node01:29400");
  }
}

TEST(LaunchEnvironment, RejectsInconsistentValuesNamingTheVariable) {
  auto message = [](std::map<std::string, std::string> vars) {
    ScopedEnv env(std::move(vars));
    try {
      LaunchEnvironment::from_environment();
    } catch (const UserError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message({{"RANK", "2"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "x"}})
                .find("RANK=2 is not below"),
            std::string::npos);
  EXPECT_NE(message({{"RANK", "x"}, {"WORLD_SIZE", "2"}}).find("RANK=x"), std::string::npos);
  EXPECT_NE(message({{"RANK", "0"}, {"WORLD_SIZE", "2"}}).find("MASTER_ADDR is not set"),
            std::string::npos);
  EXPECT_NE(message({{"WORLD_SIZE", "2"}, {"MASTER_ADDR", "x"}}).find("RANK is not"),
            std::string::npos);
  EXPECT_NE(
      message({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "x"}, {"MASTER_PORT", "70000"}})
          .find("MASTER_PORT=70000"),
      std::string::npos);
}

TEST(LocalLauncher, RemovesNprocFromTheRanksArguments) {
  using V = std::vector<std::string>;
  EXPECT_EQ(LocalLauncher::without_nproc(V{"train", "--nproc", "2", "--config", "c.toml"}),
            (V{"train", "--config", "c.toml"}));
  EXPECT_EQ(LocalLauncher::without_nproc(V{"train", "--config", "c.toml", "--nproc=4"}),
            (V{"train", "--config", "c.toml"}));
  EXPECT_GT(LocalLauncher::free_port(), 0);
}

TEST(GradientBuckets, CapsBucketsBySizeAndDtype) {
  std::vector<torch::Tensor> params{torch::zeros({100}), torch::zeros({100}), torch::zeros({300}),
                                    torch::zeros({10}, torch::kDouble)};
  GradientBuckets b(params, /*bucket_bytes=*/800);  // 200 floats
  // [100, 100] | [300] (alone: larger than a bucket) | [10 doubles]
  EXPECT_EQ(b.size(), 3u);
}

// Runs `body(group)` as ranks 0 and 1 of a two-rank Gloo group in two threads.
template <class F>
void two_ranks(F body) {
  const int port = LocalLauncher::free_port();
  auto rank = [&](int r) {
    LaunchEnvironment env;
    env.rank = r;
    env.world_size = 2;
    env.local_world_size = 2;
    env.master_addr = "127.0.0.1";
    env.master_port = port;
    ProcessGroupOptions o;
    o.backend = "gloo";
    o.timeout = std::chrono::seconds(30);
    auto group = std::make_shared<ProcessGroup>(env, o);
    body(group);
  };
  auto other = std::async(std::launch::async, rank, 1);
  rank(0);
  other.get();
}

TEST(GradientBuckets, SumsGradientsAndKeepsUntouchedParametersWithout) {
  if (!gloo_available()) GTEST_SKIP() << "this build has no Gloo backend";
  std::vector<torch::Tensor> seen0, seen1;
  std::mutex m;
  two_ranks([&](std::shared_ptr<ProcessGroup> group) {
    const int r = group->rank();
    // a: both ranks have a gradient; b: only rank 1; c: nobody.
    auto a = torch::zeros({3}, torch::requires_grad()),
         b = torch::zeros({2, 2}, torch::requires_grad()),
         c = torch::zeros({4}, torch::requires_grad());
    a.mutable_grad() = torch::full({3}, double(r + 1));
    if (r == 1) b.mutable_grad() = torch::ones({2, 2}) * 5;
    GradientBuckets buckets({a, b, c}, /*bucket_bytes=*/16);  // several buckets
    EXPECT_GT(buckets.size(), 1u);
    buckets.all_reduce(*group, "test gradients");
    std::lock_guard<std::mutex> lock(m);
    auto& seen = r == 0 ? seen0 : seen1;
    seen = {a.grad(), b.grad(), c.grad()};
  });
  for (const auto* seen : {&seen0, &seen1}) {
    ASSERT_EQ(seen->size(), 3u);
    EXPECT_TRUE(torch::equal((*seen)[0], torch::full({3}, 3.0)));  // 1 + 2
    ASSERT_TRUE((*seen)[1].defined());
    EXPECT_TRUE(torch::equal((*seen)[1], torch::ones({2, 2}) * 5));
    EXPECT_FALSE((*seen)[2].defined()) << "no rank had a gradient: AdamW must skip it";
  }
}

TEST(DataParallel, SumsTotalsAndMetricsOverRanksInRankOrder) {
  if (!gloo_available()) GTEST_SKIP() << "this build has no Gloo backend";
  std::map<int, sdk::Metrics> got;
  std::map<int, sdk::WindowTotals> totals;
  std::mutex m;
  two_ranks([&](std::shared_ptr<ProcessGroup> group) {
    DataParallel dp(group);
    const int r = dp.rank();
    sdk::WindowTotals t;
    t.rows = 2, t.tokens = 100 + r, t.next_token_targets = 7;
    dp.sum_totals(t, 0);
    // Rank 1 has a metric rank 0 lacks (it counts as 0 there).
    sdk::Metrics mine{{"loss", 0.5 + r}};
    if (r == 1) mine["answer_ratio"] = 0.25;
    auto sums = dp.sum_metrics(mine, "test metrics");
    EXPECT_EQ(dp.from_rank0("test-key", r == 0 ? "from rank 0" : "ignored"), "from rank 0");
    std::lock_guard<std::mutex> lock(m);
    got[r] = sums;
    totals[r] = t;
  });
  for (int r : {0, 1}) {
    EXPECT_EQ(totals[r].rows, 4);
    EXPECT_EQ(totals[r].tokens, 201);
    EXPECT_EQ(totals[r].next_token_targets, 14);
    EXPECT_DOUBLE_EQ(got[r]["loss"], 2.0);
    EXPECT_DOUBLE_EQ(got[r]["answer_ratio"], 0.25);
  }
}

TEST(DataParallel, OneProcessReturnsItsInputs) {
  DataParallel dp;
  EXPECT_FALSE(dp.active());
  sdk::WindowTotals t;
  t.rows = 3;
  dp.sum_totals(t, 0);
  EXPECT_EQ(t.rows, 3);
  EXPECT_DOUBLE_EQ(dp.sum_metrics({{"x", 1.5}}, "m")["x"], 1.5);
  EXPECT_EQ(dp.sum_gradients({}, 0), 0.0);
  EXPECT_EQ(dp.from_rank0("k", "v"), "v");
}

}  // namespace
}  // namespace loom
