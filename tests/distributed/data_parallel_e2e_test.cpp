// End-to-end: data-parallel training with real processes (`trainer --nproc 2`, Gloo on CPU).
//
// The equivalence claim: a step's global window is the same rows for any world size, every
// loss is normalised by the totals of the whole window (summed over ranks first), and the
// gradients are summed over ranks once per step. So 2 ranks x micro batch b computes
//   - exactly what 1 rank computes with micro batch b and accumulation 2: the same micro-batches
//     go through the same kernels, and the sum g0 + g1 is one fp32 addition either way (the
//     rank sum runs in rank order). Expected bit-identical; asserted to 1e-6 relative.
//   - what 1 rank computes with micro batch 2b up to fp32 reassociation: the matmuls reduce over
//     a different row blocking. Asserted: losses to 1e-5 relative per step and weights to 1e-4
//     absolute after 12 AdamW steps. Rounding differences of ~1e-7 relative in the gradients
//     reach the weights through Adam's m / sqrt(v), whose relative error is of the same order,
//     times lr = 3e-3 per step, i.e. ~1e-8 per step; measured on this machine: ~1e-7 on the
//     weights and ~2e-7 relative on the losses, so the bounds leave two to three orders of
//     margin, while a real bug moves far more: a missing rank's gradient or a wrong normaliser
//     changes the update direction (weights off by ~lr = 3e-3 after one step), and a constant
//     factor such as the world size (which clipping and Adam would hide from the weights) shows
//     in train/grad_norm, compared to 1e-4.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <functional>
#include <thread>

#include "distributed/process_group.hpp"
#include "e2e/tiny_run.hpp"
#include "io/tensor_io.hpp"
#include "train/run_folder.hpp"

namespace loom::test {
namespace {

// These runs use Gloo on the CPU; a build without it (a libtorch that ships no Gloo headers)
// says so instead (docs/gpu.md).
#define LOOM_REQUIRE_GLOO() \
  if (!gloo_available()) GTEST_SKIP() << "this build has no Gloo backend"
namespace fs = std::filesystem;

const std::string kDiffusion = std::string(LOOM_BINARY_DIR) + "/plugins/libdiffusion.so";

// The trainer with `env` (VAR=value ...) in its environment; a generous timeout so a real hang
// fails the test in a minute, not half an hour.
ProcessResult train(const fs::path& config, const std::vector<std::string>& args,
                    const std::string& env = "") {
  std::string cmd = "OMP_NUM_THREADS=1 " + env + " " + shell_quote(LOOM_TRAINER_BIN) +
                    " --config " + shell_quote(config.string()) + " --no-progress";
  for (const auto& a : args) cmd += " " + shell_quote(a);
  return run_command(cmd);
}

std::string causal_config(const fs::path& out, int steps, const std::string& extra = "") {
  return tiny_config(out, steps,
                     "val_set_size = 0.05\neval_max_batches = 4\n"
                     "distributed_timeout_s = 60\n"
                     "device = \"cpu\"\n" +  // Gloo ranks on the CPU, also where a GPU is present
                         extra);
}

std::string diffusion_config(const fs::path& out, int steps) {
  return causal_config(out, steps, "plugins = [\"" + kDiffusion + "\"]\n") +
         "\n[diffusion]\nmin_mask_ratio = 0.0\nmax_mask_ratio = 1.0\ngeneration_interval = " +
         std::to_string(steps) +
         "\nnum_generation_samples = 1\ngeneration_steps = 4\n"
         "generation_max_length = 16\n";
}

double relative(double a, double b) { return std::abs(a - b) / std::max(1e-12, std::abs(b)); }

// The largest |a - b| over all tensors of two final/ folders.
double max_weight_difference(const fs::path& a, const fs::path& b) {
  auto wa = load_all(a / "final" / "model.safetensors");
  auto wb = load_all(b / "final" / "model.safetensors");
  EXPECT_EQ(wa.size(), wb.size());
  double worst = 0;
  for (const auto& [name, t] : wa) {
    EXPECT_TRUE(wb.count(name)) << name;
    if (!wb.count(name)) continue;
    worst = std::max(worst, (t - wb.at(name)).abs().max().item<double>());
  }
  return worst;
}

std::map<std::int64_t, nlohmann::json> by_step(const fs::path& out, const char* key) {
  std::map<std::int64_t, nlohmann::json> m;
  for (const auto& r : read_metrics(out))
    if (r.contains(key)) m[r["step"].get<std::int64_t>()] = r;
  return m;
}

// 2 ranks x micro 2 vs 1 rank x micro 2 x accumulation 2 vs 1 rank x micro 4.
void expect_equivalent_runs(const std::function<std::string(const fs::path&, int)>& config,
                            const std::string& name) {
  constexpr int kSteps = 12;
  auto dir = fresh_dir("dp-" + name);
  write_file(dir / "cfg.toml", config(dir / "unused", kSteps));
  const auto cfg = dir / "cfg.toml";
  auto two = train(cfg, {"--nproc", "2", "--set", "output_dir=" + (dir / "two").string(), "--set",
                         "micro_batch_size=2"});
  ASSERT_EQ(two.exit_code, 0) << two.output;
  auto acc = train(cfg, {"--set", "output_dir=" + (dir / "acc").string(), "--set",
                         "micro_batch_size=2", "--set", "gradient_accumulation_steps=2"});
  ASSERT_EQ(acc.exit_code, 0) << acc.output;
  auto big =
      train(cfg, {"--set", "output_dir=" + (dir / "big").string(), "--set", "micro_batch_size=4"});
  ASSERT_EQ(big.exit_code, 0) << big.output;
  EXPECT_NE(two.output.find("global batch 4 rows"), std::string::npos) << two.output;

  auto t = by_step(dir / "two", "train/loss"), a = by_step(dir / "acc", "train/loss"),
       b = by_step(dir / "big", "train/loss");
  ASSERT_EQ(t.size(), std::size_t(kSteps)) << "one metrics line per step, written once";
  ASSERT_EQ(a.size(), t.size());
  ASSERT_EQ(b.size(), t.size());
  double worst_big = 0;
  for (const auto& [step, row] : t) {
    for (const auto& [key, value] : row.items()) {
      if (key == "step" || key == "epoch" || key == "train/tokens_per_s" ||
          key == "train/allreduce_s")
        continue;
      ASSERT_TRUE(a[step].contains(key)) << key;
      // Every metric, averaged over the window in one process and over ranks in two.
      EXPECT_LE(relative(value.get<double>(), a[step][key].get<double>()), 1e-6)
          << name << " step " << step << " " << key;
    }
    const double l = row["train/loss"].get<double>();
    worst_big = std::max(worst_big, relative(l, b[step]["train/loss"].get<double>()));
    EXPECT_LE(
        relative(row["train/grad_norm"].get<double>(), b[step]["train/grad_norm"].get<double>()),
        1e-4)
        << name << " step " << step;
  }
  EXPECT_LE(worst_big, 1e-5) << name << ": loss curve of 2 ranks x 2 vs 1 rank x 4";
  // Same eval batches with the same micro batch size: the same eval loss.
  auto te = by_step(dir / "two", "eval/loss"), ae = by_step(dir / "acc", "eval/loss");
  ASSERT_EQ(te.size(), 1u);
  EXPECT_LE(relative(te.begin()->second["eval/loss"].get<double>(),
                     ae.begin()->second["eval/loss"].get<double>()),
            1e-6);

  const double d_acc = max_weight_difference(dir / "two", dir / "acc");
  const double d_big = max_weight_difference(dir / "two", dir / "big");
  std::printf(
      "[%s] max |w| difference: vs accumulation %.3g, vs micro batch 4 %.3g; max loss "
      "difference vs micro batch 4: %.3g relative\n",
      name.c_str(), d_acc, d_big, worst_big);
  EXPECT_LE(d_acc, 1e-6) << name;
  EXPECT_LE(d_big, 1e-4) << name;
  // Only rank 0 wrote: one final folder and one checkpoint, no temporary folders.
  for (const auto& e : fs::directory_iterator(dir / "two"))
    EXPECT_NE(e.path().extension(), ".tmp") << e.path();
}

TEST(DataParallelE2E, TwoRanksTrainLikeOneRankOnTheSameGlobalBatchCausal) {
  LOOM_REQUIRE_GLOO();
  expect_equivalent_runs([](const fs::path& out, int steps) { return causal_config(out, steps); },
                         "causal");
}

TEST(DataParallelE2E, TwoRanksTrainLikeOneRankOnTheSameGlobalBatchDiffusion) {
  LOOM_REQUIRE_GLOO();
  expect_equivalent_runs(diffusion_config, "diffusion");
  // Samples are generated on rank 0 only: as many lines as with one process.
  auto dir = std::filesystem::temp_directory_path() / "loom-test-dp-diffusion";
  auto lines = [](const fs::path& f) {
    auto text = read_file(f);
    return std::count(text.begin(), text.end(), '\n');
  };
  EXPECT_EQ(lines(dir / "two" / "samples.jsonl"), lines(dir / "acc" / "samples.jsonl"));
  EXPECT_GT(lines(dir / "two" / "samples.jsonl"), 0);
}

TEST(DataParallelE2E, ARankThatExitsEndsTheRunNamingItAndTheCheckpointResumes) {
  LOOM_REQUIRE_GLOO();
  auto dir = fresh_dir("dp-dies");
  write_file(dir / "cfg.toml", causal_config(dir / "out", 10, "save_steps = 2\n"));
  const auto t0 = std::chrono::steady_clock::now();
  auto r = train(dir / "cfg.toml", {"--nproc", "2", "--set", "micro_batch_size=2"},
                 "LOOM_FAULT_INJECTION=rank=1,step=3");
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(r.exit_code, 3) << "the failed rank's status is forwarded\n" << r.output;
  EXPECT_NE(r.output.find("rank 1 did not arrive: its connection closed"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("rank 1 exited with status 3"), std::string::npos) << r.output;
  EXPECT_LT(secs, 60) << "a closed connection is noticed at once, not after the timeout";
  ASSERT_TRUE(fs::exists(dir / "out" / "checkpoint-2" / "trainer_state.json"));
  EXPECT_FALSE(fs::exists(dir / "out" / "final"));
  // The last complete checkpoint resumes, here with the same world size.
  auto resumed =
      train(dir / "cfg.toml", {"--nproc", "2", "--set", "micro_batch_size=2", "--resume"});
  EXPECT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("resuming from"), std::string::npos) << resumed.output;
  EXPECT_TRUE(fs::exists(dir / "out" / "final" / "model.safetensors"));
}

TEST(DataParallelE2E, AHungRankEndsTheRunAfterTheTimeoutNamingIt) {
  LOOM_REQUIRE_GLOO();
  auto dir = fresh_dir("dp-hangs");
  write_file(dir / "cfg.toml", causal_config(dir / "out", 10));
  const auto t0 = std::chrono::steady_clock::now();
  auto r =
      train(dir / "cfg.toml",
            {"--nproc", "2", "--set", "micro_batch_size=2", "--set", "distributed_timeout_s=8"},
            "LOOM_FAULT_INJECTION=rank=1,step=3,mode=hang");
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("rank 1 did not arrive within the 8 s timeout (distributed_timeout_s)"),
            std::string::npos)
      << r.output;
  // 8 s timeout + 5 s before the launcher kills the hung rank + start-up.
  EXPECT_LT(secs, 45) << r.output;
}

TEST(DataParallelE2E, ResumeWithADifferentWorldSizeContinuesExactly) {
  LOOM_REQUIRE_GLOO();
  // One process (micro 2 x accumulation 2) saves at step 4; two ranks (micro 2) resume from it:
  // the same global batch, so steps 5..8 are those of the uninterrupted one-process run.
  auto dir = fresh_dir("dp-resume");
  write_file(dir / "cfg.toml", causal_config(dir / "unused", 8, "save_steps = 4\n"));
  auto one =
      train(dir / "cfg.toml", {"--set", "output_dir=" + (dir / "one").string(), "--set",
                               "micro_batch_size=2", "--set", "gradient_accumulation_steps=2"});
  ASSERT_EQ(one.exit_code, 0) << one.output;
  fs::create_directories(dir / "two");
  fs::copy(dir / "one" / "checkpoint-4", dir / "two" / "checkpoint-4", fs::copy_options::recursive);
  auto two =
      train(dir / "cfg.toml", {"--nproc", "2", "--set", "output_dir=" + (dir / "two").string(),
                               "--set", "micro_batch_size=2", "--resume"});
  ASSERT_EQ(two.exit_code, 0) << two.output;
  EXPECT_EQ(two.output.find("global batch changes"), std::string::npos) << two.output;
  auto lo = train_losses(dir / "one"), lt = train_losses(dir / "two");
  ASSERT_EQ(lt.size(), 4u);
  for (std::int64_t s = 5; s <= 8; ++s) EXPECT_LE(relative(lt[s], lo[s]), 1e-6) << "step " << s;
  EXPECT_LE(max_weight_difference(dir / "one", dir / "two"), 1e-6);

  // A different global batch resumes too, with a warning (the data windows change size).
  auto other = train(dir / "cfg.toml", {"--set", "output_dir=" + (dir / "two").string(), "--set",
                                        "micro_batch_size=2", "--set", "max_steps=10", "--resume"});
  EXPECT_EQ(other.exit_code, 0) << other.output;
  EXPECT_NE(other.output.find("global batch changes from 4 to 2 rows"), std::string::npos)
      << other.output;
}

TEST(DataParallelE2E, CtrlCStopsEveryRankAfterTheSameStepWithOneCheckpoint) {
  LOOM_REQUIRE_GLOO();
  auto dir = fresh_dir("dp-sigint");
  write_file(dir / "cfg.toml", causal_config(dir / "out", 100000));
  const std::string cmd = "OMP_NUM_THREADS=1 " + shell_quote(LOOM_TRAINER_BIN) + " --config " +
                          shell_quote((dir / "cfg.toml").string()) +
                          " --no-progress --nproc 2 --set micro_batch_size=2 > " +
                          shell_quote((dir / "log.txt").string()) + " 2>&1 & echo $!";
  const int launcher = std::stoi(run_command(cmd).output);
  for (int i = 0; i < 600 && read_file(dir / "out" / "metrics.jsonl").size() < 10; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_EQ(kill(launcher, SIGINT), 0) << read_file(dir / "log.txt");  // forwarded to the ranks
  for (int i = 0; i < 600 && kill(launcher, 0) == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  const auto log = read_file(dir / "log.txt");
  EXPECT_NE(log.find("interrupted: saved"), std::string::npos) << log;
  EXPECT_EQ(log.find("error"), std::string::npos) << "no rank may be left waiting:\n" << log;
  int checkpoints = 0;
  for (const auto& e : fs::directory_iterator(dir / "out")) {
    EXPECT_NE(e.path().extension(), ".tmp") << e.path();
    if (e.path().filename().string().rfind("checkpoint-", 0) == 0) ++checkpoints;
  }
  EXPECT_EQ(checkpoints, 1);
  const auto steps = train_losses(dir / "out");
  ASSERT_FALSE(steps.empty());
  auto r =
      train(dir / "cfg.toml", {"--nproc", "2", "--set", "micro_batch_size=2", "--resume", "--set",
                               "max_steps=" + std::to_string(steps.rbegin()->first + 2)});
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

// A TCP socket bound to a port the kernel picks (on all interfaces, or loopback); -1 on failure.
int bound_socket(std::uint32_t address, int* port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(address);
  socklen_t len = sizeof addr;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    close(fd);
    return -1;
  }
  *port = ntohs(addr.sin_port);
  return fd;
}

TEST(DataParallelE2E, APortInUseIsAClearError) {
  LOOM_REQUIRE_GLOO();
  int port = 0;
  const int fd = bound_socket(INADDR_ANY, &port);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(listen(fd, 1), 0);
  auto dir = fresh_dir("dp-port");
  write_file(dir / "cfg.toml", causal_config(dir / "out", 2));
  auto r = train(dir / "cfg.toml", {"--nproc", "2"}, "MASTER_PORT=" + std::to_string(port));
  close(fd);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("MASTER_PORT " + std::to_string(port) + " is already in use"),
            std::string::npos)
      << r.output;
}

// Ranks started by a launcher (torchrun sets RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT): when
// rank 0 cannot have the output folder (here another process holds its lock), every rank ends
// at once with rank 0's reason -- rank 1 used to wait for rank 0 until the timeout.
TEST(DataParallelE2E, ARefusedOutputFolderEndsEveryLaunchedRankWithTheReason) {
  LOOM_REQUIRE_GLOO();
  auto dir = fresh_dir("dp-refused");
  // (distributed_timeout_s = 60: a rank left waiting would end with a timeout message.)
  write_file(dir / "cfg.toml", causal_config(dir / "out", 2));
  RunFolderLock held(dir / "out");
  int port = 0;
  const int fd = bound_socket(INADDR_LOOPBACK, &port);
  ASSERT_GE(fd, 0);
  close(fd);  // free again for rank 0's store
  auto rank = [&](int r) {
    return "RANK=" + std::to_string(r) + " WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=" +
           std::to_string(port) + " OMP_NUM_THREADS=1 " + shell_quote(LOOM_TRAINER_BIN) + " --config " +
           shell_quote((dir / "cfg.toml").string()) + " --no-progress";
  };
  const fs::path r1_log = dir / "rank1.log";
  auto r0 = run_command("(" + rank(1) + " > " + shell_quote(r1_log.string()) + " 2>&1; echo \"rank1 exit $?\" >> " +
                        shell_quote(r1_log.string()) + ") & " + rank(0) + " 2>&1; s=$?; wait; exit $s");
  const std::string r1 = read_file(r1_log);
  EXPECT_EQ(r0.exit_code, 1) << r0.output;
  EXPECT_NE(r0.output.find("is in use by another trainer (pid " + std::to_string(::getpid()) + ")"), std::string::npos)
      << r0.output;
  EXPECT_NE(r1.find("rank 0 refused the output folder: "), std::string::npos) << r1;
  EXPECT_NE(r1.find("is in use by another trainer"), std::string::npos) << r1;
  EXPECT_NE(r1.find("rank1 exit 1"), std::string::npos) << r1;
  EXPECT_EQ(r1.find("did not arrive"), std::string::npos) << r1;
  EXPECT_FALSE(fs::exists(dir / "out" / "metrics.jsonl"));
}

TEST(DataParallelE2E, NprocInsideALaunchedRankIsRefused) {
  auto dir = fresh_dir("dp-nested");
  write_file(dir / "cfg.toml", causal_config(dir / "out", 2));
  auto r = train(dir / "cfg.toml", {"--nproc", "2"}, "RANK=0 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("drop --nproc"), std::string::npos) << r.output;
}

// A callback that asks on one rank only (TrainerState::should_save, should_training_stop):
// every rank acts on it -- a checkpoint at step 2 (no save_steps), then a normal end after step
// 3 (without the ranks agreeing, rank 0 would wait in the next step's all-reduce for a rank that
// has left, until the timeout).
TEST(DataParallelE2E, ACallbackRequestOnOneRankCountsForAll) {
  LOOM_REQUIRE_GLOO();
  auto dir = fresh_dir("dp-control");
  write_file(dir / "cfg.toml", causal_config(dir / "out", 8, "save_steps = 0\n") +
                                   "\n[plain]\nstop_at = 3\nsave_at = 2\nrequests_on_rank = 1\n");
  auto r = train(dir / "cfg.toml", {"--nproc", "2", "--set", "micro_batch_size=2", "--plugin",
                                    std::string(LOOM_FIXTURE_DIR) + "/libfixture_plain.so"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(fs::exists(dir / "out" / "checkpoint-2" / "model.safetensors")) << r.output;
  EXPECT_TRUE(fs::exists(dir / "out" / "checkpoint-3" / "model.safetensors")) << r.output;
  EXPECT_TRUE(fs::exists(dir / "out" / "final" / "model.safetensors")) << r.output;
  EXPECT_FALSE(fs::exists(dir / "out" / "checkpoint-8"));
  // Both ranks ended at step 3 (each fixture writes one line into the shared output folder).
  EXPECT_EQ(read_file(dir / "out" / "fixture_plain_train_end.txt"), "step 3\nstep 3\n");
}

}  // namespace
}  // namespace loom::test
