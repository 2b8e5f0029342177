// End-to-end: nothing a run wrote is lost -- the output folder is one run's, a failed write stops
// the run naming the file, and --resume passes over a damaged checkpoint to the newest sound one.
#include <gtest/gtest.h>

#include <unistd.h>

#include <csignal>

#include "e2e/tiny_run.hpp"
#include "train/run_folder.hpp"

namespace loom::test {
namespace {
namespace fs = std::filesystem;

ProcessResult train(const fs::path& cfg, std::vector<std::string> extra = {}) {
  std::vector<std::string> args = {"--config", cfg.string(), "--no-progress"};
  args.insert(args.end(), extra.begin(), extra.end());
  return run_trainer(args);
}

TEST(ReliabilityE2E, AnOutputFolderInUseIsRefusedNamingTheHolder) {
  auto dir = fresh_dir("rel-lock");
  write_file(dir / "c.toml", tiny_config(dir / "out", 2));
  RunFolderLock held(dir / "out");  // as another trainer would hold it
  auto r = train(dir / "c.toml");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("is in use by another trainer (pid " + std::to_string(::getpid()) + ")"), std::string::npos)
      << r.output;
  EXPECT_FALSE(fs::exists(dir / "out" / "metrics.jsonl"));
}

// A fresh run where a run is: refused (its metrics and checkpoints untouched) unless --resume or
// --overwrite; --overwrite starts over.
TEST(ReliabilityE2E, AFreshRunDoesNotOverwriteARunUnlessAsked) {
  auto dir = fresh_dir("rel-fresh");
  write_file(dir / "c.toml", tiny_config(dir / "out", 3, "save_steps = 1\n"));
  ASSERT_EQ(train(dir / "c.toml").exit_code, 0);
  const std::string before = read_file(dir / "out" / "metrics.jsonl");
  auto again = train(dir / "c.toml");
  EXPECT_EQ(again.exit_code, 1) << again.output;
  EXPECT_NE(again.output.find("already holds a run (checkpoint-1, checkpoint-2, checkpoint-3, final"), std::string::npos)
      << again.output;
  EXPECT_EQ(read_file(dir / "out" / "metrics.jsonl"), before);
  auto over = train(dir / "c.toml", {"--overwrite", "--set", "max_steps=2"});
  ASSERT_EQ(over.exit_code, 0) << over.output;
  EXPECT_FALSE(fs::exists(dir / "out" / "checkpoint-3")) << "the old run's checkpoints went";
  EXPECT_EQ(read_metrics(dir / "out").back()["step"], 2);
}

// A write that fails (here: files limited to 40 KB with `ulimit -f`, as a full disk would) stops
// the run with the file and the reason; the checkpoint being written is not committed, the
// earlier ones are intact, and --resume continues from the newest complete one.
TEST(ReliabilityE2E, AFailedWriteStopsTheRunNamingTheFile) {
  auto dir = fresh_dir("rel-full");
  write_file(dir / "c.toml", tiny_config(dir / "out", 4, "save_steps = 2\n"));
  ASSERT_EQ(train(dir / "c.toml", {"--set", "max_steps=2"}).exit_code, 0);
  const auto optimizer_bytes = fs::file_size(dir / "out" / "checkpoint-2" / "optimizer.safetensors");
  const auto model_bytes = fs::file_size(dir / "out" / "checkpoint-2" / "model.safetensors");
  ASSERT_GT(optimizer_bytes, model_bytes + 2048) << "the limit must fall between the two files";
  const std::uintmax_t limit_kb = (model_bytes + optimizer_bytes) / 2 / 1024;
  // SIGXFSZ ignored (inherited through exec): the write fails with EFBIG instead of killing.
  // (bash: its ulimit -f counts 1024-byte blocks.)
  auto r = run_command("bash -c " + shell_quote("trap '' XFSZ; ulimit -f " + std::to_string(limit_kb) +
                                                "; OMP_NUM_THREADS=1 exec " + shell_quote(LOOM_TRAINER_BIN) +
                                                " --config " + shell_quote((dir / "c.toml").string()) +
                                                " --no-progress --resume"));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("error: cannot write " +
                          (dir / "out" / "checkpoint-4.tmp" / "optimizer.safetensors.tmp").string() +
                          ": File too large"),
            std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(dir / "out" / "checkpoint-4"));
  EXPECT_TRUE(fs::exists(dir / "out" / "checkpoint-2" / "optimizer.safetensors"));
  auto resumed = train(dir / "c.toml", {"--resume"});
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("resuming from " + (dir / "out" / "checkpoint-2").string()), std::string::npos)
      << resumed.output;
  EXPECT_TRUE(fs::exists(dir / "out" / "checkpoint-4" / "trainer_state.json"));
}

// --resume passes over a newest checkpoint that is damaged (an empty trainer_state.json, as a
// full disk used to leave; a model file cut short), saying which it skipped and why, and
// resumes from the newest sound one. A damaged folder named explicitly is refused.
TEST(ReliabilityE2E, ResumeFallsBackFromADamagedCheckpoint) {
  auto dir = fresh_dir("rel-damaged");
  write_file(dir / "c.toml", tiny_config(dir / "out", 6, "save_steps = 2\n"));
  ASSERT_EQ(train(dir / "c.toml", {"--set", "max_steps=6"}).exit_code, 0);
  write_file(dir / "out" / "checkpoint-6" / "trainer_state.json", "");
  fs::resize_file(dir / "out" / "checkpoint-4" / "model.safetensors", 100);
  auto explicit_resume = train(dir / "c.toml", {"--resume", (dir / "out" / "checkpoint-4").string()});
  EXPECT_EQ(explicit_resume.exit_code, 1) << explicit_resume.output;
  EXPECT_NE(explicit_resume.output.find("--resume " + (dir / "out" / "checkpoint-4").string() + ": "), std::string::npos)
      << explicit_resume.output;
  auto r = train(dir / "c.toml", {"--resume"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("--resume: skipping checkpoint-6: "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("--resume: skipping checkpoint-4: "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("resuming from " + (dir / "out" / "checkpoint-2").string()), std::string::npos) << r.output;
  // The history up to step 2 is kept and steps 3-6 are logged again, once each.
  std::vector<std::int64_t> steps;
  for (const auto& m : read_metrics(dir / "out"))
    if (m.contains("train/loss")) steps.push_back(m["step"].get<std::int64_t>());
  EXPECT_EQ(steps, (std::vector<std::int64_t>{1, 2, 3, 4, 5, 6}));
}

// The trainer with LOOM_CRASH_AT=<point> (host/io/durable_file.hpp): it kills itself with
// SIGKILL at that point, as a `kill -9` at the worst moment would.
ProcessResult train_killed_at(const std::string& point, const fs::path& cfg, std::vector<std::string> extra,
                              const std::string& env = "") {
  std::string cmd = "LOOM_CRASH_AT=" + shell_quote(point) + " " + env + " OMP_NUM_THREADS=1 " +
                    shell_quote(LOOM_TRAINER_BIN) + " --config " + shell_quote(cfg.string()) + " --no-progress";
  for (const auto& a : extra) cmd += " " + shell_quote(a);
  return run_command(cmd);
}
bool was_killed(const ProcessResult& r) { return r.signal == SIGKILL || r.exit_code == 128 + SIGKILL; }

// D1: --resume cuts metrics.jsonl back to the checkpoint's step. Killed at the worst moment
// (the cut copy complete, not yet in place) the file still holds the whole history; the next
// --resume cuts it and logs the steps again, once each. (The file used to be truncated first
// and rewritten: a kill in between left it empty.)
TEST(ReliabilityE2E, AKillWhileResumeCutsTheMetricsLosesNoHistory) {
  auto dir = fresh_dir("rel-kill-metrics");
  write_file(dir / "c.toml", tiny_config(dir / "out", 4, "save_steps = 2\n"));
  ASSERT_EQ(train(dir / "c.toml").exit_code, 0);
  const std::string history = read_file(dir / "out" / "metrics.jsonl");
  const std::string ckpt2 = (dir / "out" / "checkpoint-2").string();
  auto killed = train_killed_at("write:metrics.jsonl", dir / "c.toml", {"--resume", ckpt2});
  ASSERT_TRUE(was_killed(killed)) << killed.output;
  EXPECT_EQ(read_file(dir / "out" / "metrics.jsonl"), history);
  auto r = train(dir / "c.toml", {"--resume", ckpt2});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::vector<std::int64_t> steps;
  for (const auto& m : read_metrics(dir / "out"))
    if (m.contains("train/loss")) steps.push_back(m["step"].get<std::int64_t>());
  EXPECT_EQ(steps, (std::vector<std::int64_t>{1, 2, 3, 4}));
}

// D2: re-saving the checkpoint a run resumed from (a finished run resumed: its last step is
// saved again) never deletes it before the new one is in place. Killed just before the swap,
// just after it, and -- on the fallback for filesystems without an atomic exchange -- with the
// old folder moved aside: each time, with save_total_limit = 1 (no older checkpoint to fall
// back to), --resume finds checkpoint-4 and the run goes on to the same end.
TEST(ReliabilityE2E, AKillWhileReSavingACheckpointLosesNothing) {
  auto dir = fresh_dir("rel-kill-resave");
  write_file(dir / "c.toml", tiny_config(dir / "out", 4, "save_steps = 2\nsave_total_limit = 1\n"));
  ASSERT_EQ(train(dir / "c.toml").exit_code, 0);
  ASSERT_FALSE(fs::exists(dir / "out" / "checkpoint-2"));
  const std::string ckpt4 = (dir / "out" / "checkpoint-4").string();
  const std::string model_bytes = read_file(dir / "out" / "checkpoint-4" / "model.safetensors");
  const std::vector<std::pair<std::string, std::string>> points = {
      {"replace:checkpoint-4", ""},
      {"replaced:checkpoint-4", ""},
      {"replace:checkpoint-4", "LOOM_TEST_NO_RENAME_EXCHANGE=1"},
      {"aside:checkpoint-4", "LOOM_TEST_NO_RENAME_EXCHANGE=1"},
      {"replaced:checkpoint-4", "LOOM_TEST_NO_RENAME_EXCHANGE=1"}};
  for (const auto& [point, env] : points) {
    SCOPED_TRACE(point + " " + env);
    auto killed = train_killed_at(point, dir / "c.toml", {"--resume"}, env);
    ASSERT_TRUE(was_killed(killed)) << killed.output;
    auto again = train(dir / "c.toml", {"--resume"});
    ASSERT_EQ(again.exit_code, 0) << again.output;
    EXPECT_NE(again.output.find("resuming from " + ckpt4), std::string::npos) << again.output;
    EXPECT_EQ(read_file(dir / "out" / "checkpoint-4" / "model.safetensors"), model_bytes);
    EXPECT_FALSE(fs::exists(ckpt4 + ".tmp"));
    EXPECT_FALSE(fs::exists(ckpt4 + ".old"));
  }
  auto longer = train(dir / "c.toml", {"--resume", "--set", "max_steps=6"});
  ASSERT_EQ(longer.exit_code, 0) << longer.output;
  std::vector<std::int64_t> steps;
  for (const auto& m : read_metrics(dir / "out"))
    if (m.contains("train/loss")) steps.push_back(m["step"].get<std::int64_t>());
  EXPECT_EQ(steps, (std::vector<std::int64_t>{1, 2, 3, 4, 5, 6}));
}

// A model the machine cannot hold is refused before anything is allocated, naming the shape and
// the numbers (these used to end in an out-of-memory kill after 10-25 s, or in libtorch's raw
// allocation error). The estimate is compared with /proc/meminfo's MemAvailable.
TEST(ReliabilityE2E, OversizedModelsAreRefusedBeforeAllocating) {
  auto dir = fresh_dir("rel-oversized");
  write_file(dir / "c.toml", tiny_config(dir / "out", 2));
  for (const std::string set : {"model.hidden_size=65536", "model.num_hidden_layers=1000000000",
                                "model.hidden_size=1000000000"}) {
    auto r = train(dir / "c.toml", {"--set", set});
    EXPECT_EQ(r.exit_code, 1) << set << "\n" << r.output;
    EXPECT_NE(r.output.find("parameters) needs about"), std::string::npos) << set << "\n" << r.output;
    EXPECT_NE(r.output.find("available"), std::string::npos) << r.output;
    EXPECT_EQ(r.output.find("internal error"), std::string::npos) << r.output;
  }
}

}  // namespace
}  // namespace loom::test
