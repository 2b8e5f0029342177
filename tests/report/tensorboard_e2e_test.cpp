// End-to-end: report_to = ["tensorboard"] in a real diffusion run; the event files are decoded
// by an independent reader (tests/report/tensorboard_reader.py: hand-written TFRecord and
// protobuf decoding, both CRCs checked) and compared with metrics.jsonl and samples.jsonl.
#include <gtest/gtest.h>

#include <unistd.h>

#include <set>

#include "e2e/tiny_run.hpp"

namespace loom::test {
namespace {
namespace fs = std::filesystem;

const std::string kPlugin = std::string(LOOM_BINARY_DIR) + "/plugins/libdiffusion.so";
const std::string kReader = std::string(LOOM_SOURCE_DIR) + "/tests/report/tensorboard_reader.py";

bool have_python() { return run_command("python3 -c 'import json, struct'").exit_code == 0; }

// 12 steps logged every 3 (averages over 3 steps), evaluated and sampled every 6.
std::string tensorboard_config(const fs::path& out, const std::string& extra = "") {
  return tiny_config(out, 12,
                     "plugins = [\"" + kPlugin +
                         "\"]\nreport_to = [\"tensorboard\"]\n"
                         "val_set_size = 0.05\neval_steps = 6\neval_max_batches = 2\n" +
                         extra) +
         "\n[diffusion]\ngeneration_interval = 6\nnum_generation_samples = 2\n"
         "generation_steps = 4\ngeneration_max_length = 16\n";
}

ProcessResult read_events(const fs::path& out, bool samples = true, bool config = true) {
  std::string cmd = "python3 " + shell_quote(kReader) + " " + shell_quote((out / "runs").string()) +
                    " " + shell_quote((out / "metrics.jsonl").string());
  if (samples) cmd += " --samples " + shell_quote((out / "samples.jsonl").string());
  if (config) cmd += " --config " + shell_quote((out / "final" / "loom_config.toml").string());
  return run_command(cmd);
}

std::vector<fs::path> event_files(const fs::path& runs) {
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(runs))
    if (e.path().filename().string().rfind("events.out.tfevents.", 0) == 0)
      files.push_back(e.path());
  return files;
}

TEST(TensorBoardE2E, EventFilesHoldEveryScalarSampleAndTheConfig) {
  if (!have_python()) GTEST_SKIP() << "python3 is not installed (the independent reader)";
  const auto dir = fresh_dir("tensorboard-" + std::to_string(getpid()));
  auto config = tensorboard_config(dir / "out");
  config.replace(config.find("logging_steps = 1"), 17, "logging_steps = 3");
  write_file(dir / "c.toml", config);
  auto r = run_trainer({"--config", (dir / "c.toml").string(), "--no-progress"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  ASSERT_EQ(event_files(dir / "out" / "runs").size(), 1u);
  // What the reader compares must be there to compare: train lines at 3, 6, 9, 12, eval lines at
  // 6 and 12, and 2 samples at 6 and 12.
  const auto rows = read_metrics(dir / "out");
  std::set<std::int64_t> train_steps, eval_steps;
  for (const auto& row : rows) {
    if (row.contains("train/loss")) train_steps.insert(row["step"].get<std::int64_t>());
    if (row.contains("eval/loss")) eval_steps.insert(row["step"].get<std::int64_t>());
  }
  EXPECT_EQ(train_steps, (std::set<std::int64_t>{3, 6, 9, 12}));
  EXPECT_EQ(eval_steps, (std::set<std::int64_t>{6, 12}));
  auto events = read_events(dir / "out");
  EXPECT_EQ(events.exit_code, 0) << events.output;
  EXPECT_NE(events.output.find(", 4 samples, 5 texts"), std::string::npos) << events.output;

  // runs/ belongs to the run: a fresh run there is refused, --overwrite starts the events over.
  auto again = run_trainer({"--config", (dir / "c.toml").string(), "--no-progress"});
  EXPECT_EQ(again.exit_code, 1) << again.output;
  EXPECT_NE(again.output.find("already holds a run"), std::string::npos) << again.output;
  const auto first = event_files(dir / "out" / "runs");
  auto over = run_trainer({"--config", (dir / "c.toml").string(), "--overwrite", "--no-progress"});
  ASSERT_EQ(over.exit_code, 0) << over.output;
  const auto second = event_files(dir / "out" / "runs");
  ASSERT_EQ(second.size(), 1u);
  EXPECT_NE(second, first);
  EXPECT_EQ(read_events(dir / "out").exit_code, 0);
  fs::remove_all(dir);
}

TEST(TensorBoardE2E, ResumedRunContinuesTheEventsWithoutDuplicates) {
  if (!have_python()) GTEST_SKIP() << "python3 is not installed (the independent reader)";
  const auto dir = fresh_dir("tensorboard-resume-" + std::to_string(getpid()));
  write_file(dir / "c.toml", tensorboard_config(dir / "out", "save_steps = 4\n"));
  // Dies after step 7 (logged and sampled up to 7; the last checkpoint is at 4) ...
  auto killed = run_command("LOOM_FAULT_INJECTION=rank=0,step=7,mode=exit OMP_NUM_THREADS=1 " +
                            shell_quote(LOOM_TRAINER_BIN) + " --config " +
                            shell_quote((dir / "c.toml").string()) + " --no-progress");
  ASSERT_NE(killed.exit_code, 0) << killed.output;
  EXPECT_EQ(read_metrics(dir / "out").size(), 8u);  // train lines 1..7, eval at 6
  // _Exit leaves no user-space buffer flushed: every line logged before it is in the events.
  auto at_kill = read_events(dir / "out", /*samples=*/false, /*config=*/false);
  EXPECT_EQ(at_kill.exit_code, 0) << at_kill.output;
  // ... and is resumed from checkpoint-4: steps 5..7 of the first file are cut, the second
  // file holds 5..12, and the two read as one run (no scalar twice, every one of metrics.jsonl).
  auto resumed = run_trainer({"--config", (dir / "c.toml").string(), "--resume", "--no-progress"});
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_EQ(event_files(dir / "out" / "runs").size(), 2u);
  // samples.jsonl is cut at the checkpoint's step too (the plugin's on_load): the samples at 6
  // are the resumed run's, once each in samples.jsonl and in the events, then those at 12.
  auto events = read_events(dir / "out", /*samples=*/true);
  EXPECT_EQ(events.exit_code, 0) << events.output;
  EXPECT_NE(events.output.find(", 4 samples"), std::string::npos) << events.output;
  fs::remove_all(dir);
}

TEST(TensorBoardE2E, UnwritableRunsFolderIsRefusedBeforeAnythingIsWritten) {
  const auto dir = fresh_dir("tensorboard-refused-" + std::to_string(getpid()));
  write_file(dir / "c.toml", tensorboard_config(dir / "out"));
  fs::create_directories(dir / "out");
  write_file(dir / "out" / "runs", "not a folder");
  const std::string config = (dir / "c.toml").string();
  for (const auto& r : {run_trainer({"check", "--config", config}),
                        run_trainer({"--config", config, "--no-progress"})}) {
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_NE(r.output.find("report_to tensorboard: " + (dir / "out" / "runs").string() +
                            " exists and is not a folder"),
              std::string::npos)
        << r.output;
  }
  std::vector<std::string> left;
  for (const auto& e : fs::directory_iterator(dir / "out")) left.push_back(e.path().filename());
  EXPECT_EQ(left, std::vector<std::string>{"runs"});
  // A folder that cannot be written into (permissions do not bind root: only as another user).
  if (geteuid() != 0) {
    fs::remove(dir / "out" / "runs");
    fs::permissions(dir / "out", fs::perms::owner_read | fs::perms::owner_exec);
    auto r = run_trainer({"--config", (dir / "c.toml").string(), "--no-progress"});
    fs::permissions(dir / "out", fs::perms::owner_all);
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_NE(r.output.find("report_to tensorboard: cannot make"), std::string::npos) << r.output;
    EXPECT_TRUE(fs::is_empty(dir / "out"));
  }
  fs::remove_all(dir);
}

}  // namespace
}  // namespace loom::test
