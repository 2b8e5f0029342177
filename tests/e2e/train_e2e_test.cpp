// End-to-end: the real trainer binary on a tiny model.
#include <gtest/gtest.h>

#include <csignal>
#include <thread>

#include "e2e/tiny_run.hpp"

namespace loom::test {
namespace {
namespace fs = std::filesystem;

TEST(TrainE2E, LossFallsAndAHuggingFaceFolderIsWritten) {
  auto dir = fresh_dir("loss-falls");
  write_file(dir / "cfg.toml", tiny_config(dir / "out", 60, "val_set_size = 0.05\neval_steps = 30\n"));
  auto r = run_trainer({"--config", (dir / "cfg.toml").string(), "--no-progress"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto losses = train_losses(dir / "out");
  ASSERT_EQ(losses.size(), 60u);
  double first = (losses[1] + losses[2] + losses[3]) / 3, last = (losses[58] + losses[59] + losses[60]) / 3;
  EXPECT_LT(last, first * 0.6) << "first " << first << " last " << last;
  // Every logged step carries the required keys; evaluation is logged at steps 30 and 60.
  int evals = 0;
  for (const auto& m : read_metrics(dir / "out")) {
    if (m.contains("eval/loss")) ++evals;
    else
      for (const char* k : {"step", "epoch", "train/loss", "train/lr", "train/grad_norm", "train/tokens_per_s"})
        EXPECT_TRUE(m.contains(k)) << k << " missing in " << m.dump();
  }
  EXPECT_EQ(evals, 2);
  for (const char* f : {"model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json"})
    EXPECT_TRUE(fs::exists(dir / "out" / "final" / f)) << f;
  auto config = nlohmann::json::parse(read_file(dir / "out" / "final" / "config.json"));
  EXPECT_EQ(config["architectures"][0], "LlamaForCausalLM");
  EXPECT_EQ(config["model_type"], "llama");
  EXPECT_EQ(config["hidden_size"], 32);
}

// A plugin's on_save runs for every checkpoint and for final/, inside the folder that is
// renamed when complete (the fixture writes the step it was called at).
TEST(TrainE2E, PluginsSaveIntoCheckpointsAndFinal) {
  auto dir = fresh_dir("train-on-save");
  write_file(dir / "cfg.toml", tiny_config(dir / "out", 4, "save_steps = 2\n"));
  auto r = run_trainer({"--config", (dir / "cfg.toml").string(), "--no-progress", "--plugin",
                        std::string(LOOM_FIXTURE_DIR) + "/libfixture_plain.so"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(read_file(dir / "out" / "checkpoint-2" / "fixture_on_save.txt"), "step 2\n");
  EXPECT_EQ(read_file(dir / "out" / "checkpoint-4" / "fixture_on_save.txt"), "step 4\n");
  EXPECT_EQ(read_file(dir / "out" / "final" / "fixture_on_save.txt"), "step 4\n");
}

TEST(TrainE2E, Bf16AutocastWithGradientCheckpointingTrains) {
  auto dir = fresh_dir("bf16");
  write_file(dir / "cfg.toml", tiny_config(dir / "out", 40, "bf16 = true\ngradient_checkpointing = true\n"));
  auto r = run_trainer({"--config", (dir / "cfg.toml").string(), "--no-progress"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto losses = train_losses(dir / "out");
  ASSERT_EQ(losses.size(), 40u);
  EXPECT_LT(losses[40], losses[1] * 0.7) << "first " << losses[1] << " last " << losses[40];
  // Weights stay fp32 on disk whatever the compute dtype.
  auto config = nlohmann::json::parse(read_file(dir / "out" / "final" / "config.json"));
  EXPECT_EQ(config["torch_dtype"], "float32");
}

TEST(TrainE2E, ResumeContinuesExactlyAsAnUninterruptedRun) {
  auto dir = fresh_dir("resume");
  // Run A: 16 steps straight through, with a checkpoint at step 8.
  write_file(dir / "a.toml", tiny_config(dir / "a", 16, "save_steps = 8\ngradient_accumulation_steps = 2\n"));
  auto a = run_trainer({"--config", (dir / "a.toml").string(), "--no-progress"});
  ASSERT_EQ(a.exit_code, 0) << a.output;
  ASSERT_TRUE(fs::exists(dir / "a" / "checkpoint-8" / "optimizer.safetensors"));
  // Run B: starts from A's checkpoint-8 in its own folder and resumes.
  fs::create_directories(dir / "b");
  fs::copy(dir / "a" / "checkpoint-8", dir / "b" / "checkpoint-8", fs::copy_options::recursive);
  write_file(dir / "b.toml", tiny_config(dir / "b", 16, "save_steps = 8\ngradient_accumulation_steps = 2\n"));
  auto b = run_trainer({"--config", (dir / "b.toml").string(), "--no-progress", "--resume"});
  ASSERT_EQ(b.exit_code, 0) << b.output;
  auto la = train_losses(dir / "a"), lb = train_losses(dir / "b");
  ASSERT_EQ(lb.size(), 8u);
  for (std::int64_t s = 9; s <= 16; ++s) {
    ASSERT_TRUE(lb.count(s)) << s;
    EXPECT_NEAR(lb[s], la[s], 1e-5 * std::abs(la[s])) << "step " << s;
  }
}

TEST(TrainE2E, CtrlCSavesAResumableCheckpoint) {
  auto dir = fresh_dir("sigint");
  write_file(dir / "cfg.toml", tiny_config(dir / "out", 100000));
  const std::string cmd = "OMP_NUM_THREADS=1 " + shell_quote(LOOM_TRAINER_BIN) + " --config " +
                          shell_quote((dir / "cfg.toml").string()) + " --no-progress > " +
                          shell_quote((dir / "log.txt").string()) + " 2>&1 & echo $!";
  auto started = run_command(cmd);
  const int pid = std::stoi(started.output);
  // Wait until training is under way (a metrics line exists), then interrupt.
  for (int i = 0; i < 600 && !fs::exists(dir / "out" / "metrics.jsonl"); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  for (int i = 0; i < 600 && read_file(dir / "out" / "metrics.jsonl").size() < 10; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_EQ(kill(pid, SIGINT), 0);
  // The shell that started it reaped nothing; wait for the process to go away.
  for (int i = 0; i < 600 && kill(pid, 0) == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  auto log = read_file(dir / "log.txt");
  EXPECT_NE(log.find("interrupted: saved"), std::string::npos) << log;
  int checkpoints = 0;
  for (const auto& e : fs::directory_iterator(dir / "out")) {
    EXPECT_NE(e.path().extension(), ".tmp") << "temporary folder left behind: " << e.path();
    if (e.path().filename().string().rfind("checkpoint-", 0) == 0) ++checkpoints;
  }
  EXPECT_EQ(checkpoints, 1);
  // It resumes (run two more steps past the saved one).
  auto steps = train_losses(dir / "out");
  ASSERT_FALSE(steps.empty());
  const auto last = steps.rbegin()->first;
  auto r = run_trainer({"--config", (dir / "cfg.toml").string(), "--no-progress", "--resume",
                        "--set", "max_steps=" + std::to_string(last + 2)});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("resuming from"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace loom::test
