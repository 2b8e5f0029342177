// Bad input: the real trainer exits 1 with one readable line naming the culprit, never a
// crash, an abort or a stack dump.
#include <gtest/gtest.h>

#include <torch/cuda.h>
#include <torch/version.h>

#include "e2e/tiny_run.hpp"
#include "loom/sdk/version.hpp"

namespace loom::test {
namespace {
namespace fs = std::filesystem;

void expect_error(const ProcessResult& r, const std::string& needle) {
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_EQ(r.signal, 0) << r.output;
  EXPECT_NE(r.output.find("error: "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(needle), std::string::npos) << "wanted: " << needle << "\ngot: " << r.output;
  EXPECT_EQ(r.output.find("Exception raised from"), std::string::npos) << "stack dump: " << r.output;
}

ProcessResult train_with(const fs::path& dir, const std::string& config, std::vector<std::string> extra = {}) {
  write_file(dir / "cfg.toml", config);
  std::vector<std::string> args = {"--config", (dir / "cfg.toml").string(), "--no-progress"};
  args.insert(args.end(), extra.begin(), extra.end());
  return run_trainer(args);
}

TEST(ErrorsE2E, ConfigProblems) {
  auto dir = fresh_dir("errors-config");
  expect_error(train_with(dir, "seed = [1,\n"), "cfg.toml:");
  expect_error(train_with(dir, "learning_rat = 0.1\n"), "did you mean 'learning_rate'");
  expect_error(train_with(dir, "micro_batch_size = \"big\"\n"), "micro_batch_size must be an integer");
  expect_error(train_with(dir, "warmup_ratio = 2.0\n"), "warmup_ratio must be >= 0 and <= 1");
  expect_error(train_with(dir, tiny_config(dir / "o", 2, "sequence_len = 4\n")), "sequence_len");
  expect_error(run_trainer({"--config", (dir / "nope.toml").string()}), "nope.toml: cannot open");
}

TEST(ErrorsE2E, DataProblems) {
  auto dir = fresh_dir("errors-data");
  auto cfg = tiny_config(dir / "o", 2);
  auto missing = cfg.substr(0, cfg.find("[[datasets]]")) + "[[datasets]]\npath = \"" + (dir / "none.jsonl").string() + "\"\n";
  expect_error(train_with(dir, missing), "none.jsonl: file not found");
  write_file(dir / "empty.jsonl", "");
  auto empty = cfg.substr(0, cfg.find("[[datasets]]")) + "[[datasets]]\npath = \"" + (dir / "empty.jsonl").string() + "\"\n";
  expect_error(train_with(dir, empty), "empty.jsonl: no documents (empty dataset)");
  write_file(dir / "bad.jsonl", "{\"text\": \"ok\"}\n{\"text\": \n");
  auto bad = cfg.substr(0, cfg.find("[[datasets]]")) + "[[datasets]]\npath = \"" + (dir / "bad.jsonl").string() + "\"\n";
  expect_error(train_with(dir, bad), "bad.jsonl:2: not valid JSON");
}

TEST(ErrorsE2E, PluginProblems) {
  auto dir = fresh_dir("errors-plugins");
  auto cfg = tiny_config(dir / "o", 2);
  expect_error(train_with(dir, cfg, {"--plugin", (dir / "none.so").string()}), "none.so: file not found");
  write_file(dir / "libfake.so", "not an ELF file");
  expect_error(train_with(dir, cfg, {"--plugin", (dir / "libfake.so").string()}), "libfake.so: not a shared library");
  expect_error(train_with(dir, cfg, {"--plugin", std::string(LOOM_FIXTURE_DIR) + "/libfixture_undefined_symbol.so"}),
               "undefined symbol: loom_fixture_symbol_nobody_defines");
  const std::string fx = LOOM_FIXTURE_DIR;
  expect_error(train_with(dir, cfg, {"--plugin", fx + "/libfixture_bad_abi.so"}), "built for loom SDK ABI 99." + std::to_string(LOOM_SDK_ABI_MINOR));
  expect_error(train_with(dir, cfg, {"--plugin", fx + "/libfixture_thrower.so"}),
               "plugin 'thrower' failed in hook transform_batch: boom");
  expect_error(train_with(dir, cfg, {"--plugin", fx + "/libfixture_mask_wrong_shape.so"}),
               "plugin 'mask_wrong_shape' failed in hook attention: the explicit mask must be [4 or 1, 1, 64, 64], got [1, 1, 64, 63]");
  expect_error(train_with(dir, cfg, {"--plugin", fx + "/libfixture_mask_float.so"}),
               "plugin 'mask_float' failed in hook attention: the explicit mask must be bool");
  expect_error(train_with(dir, cfg, {"--plugin", fx + "/libfixture_odd_thrower.so"}),
               "plugin 'odd_thrower' failed in hook transform_batch: it threw something that is "
               "not a std::exception");
  expect_error(train_with(dir, cfg, {"--plugin", fx + "/libfixture_loss_a.so", "--plugin", fx + "/libfixture_loss_b.so"}),
               "both provide the loss");
  expect_error(train_with(dir, cfg + "\n[diffusoin]\neps = 0.1\n"), "table [diffusoin] belongs to no loaded plugin");
  // Nothing was written for runs that failed before training.
  EXPECT_FALSE(fs::exists(dir / "o" / "final"));
}

// A GPU asked for where there is none, NCCL where it cannot run: one message saying what is
// missing, before the output folder exists.
TEST(ErrorsE2E, DeviceAndBackendProblems) {
  auto dir = fresh_dir("errors-device");
  if (!torch::cuda::is_available()) {
    expect_error(train_with(dir, tiny_config(dir / "o", 2, "device = \"cuda\"\n")),
                 "device = \"cuda\" but ");
    EXPECT_FALSE(fs::exists(dir / "o"));
  }
  expect_error(train_with(dir, tiny_config(dir / "o", 2, "device = \"cpu\"\ndistributed_backend = \"nccl\"\n"),
                          {"--nproc", "2"}),
               "distributed_backend = \"nccl\"");
  EXPECT_FALSE(fs::exists(dir / "o"));
  // An attention kernel this build cannot run.
#if TORCH_VERSION_MAJOR < 2
  expect_error(train_with(dir, tiny_config(dir / "o", 2, "attn_implementation = \"sdpa\"\n")),
               "attn_implementation = \"sdpa\" needs libtorch 2.x");
  EXPECT_FALSE(fs::exists(dir / "o"));
  // `trainer check` refuses it too.
  expect_error(run_trainer({"check", "--config", (dir / "cfg.toml").string()}),
               "attn_implementation = \"sdpa\" needs libtorch 2.x");
#endif
  expect_error(train_with(dir, tiny_config(dir / "o", 2, "attn_implementation = \"flash\"\n")),
               "attn_implementation");
}

TEST(ErrorsE2E, CorruptCheckpointOnResume) {
  auto dir = fresh_dir("errors-resume");
  write_file(dir / "cfg.toml", tiny_config(dir / "o", 4, "save_steps = 2\n"));
  auto ok = run_trainer({"--config", (dir / "cfg.toml").string(), "--no-progress"});
  ASSERT_EQ(ok.exit_code, 0) << ok.output;
  // Truncate the newest checkpoint's weights: named with --resume DIR, it is refused with the
  // file named; found by --resume alone, it is passed over, saying why, for the newest sound one.
  auto weights = dir / "o" / "checkpoint-4" / "model.safetensors";
  fs::resize_file(weights, fs::file_size(weights) / 2);
  expect_error(run_trainer({"--config", (dir / "cfg.toml").string(), "--resume", (dir / "o" / "checkpoint-4").string()}),
               "model.safetensors");
  auto fallback = run_trainer({"--config", (dir / "cfg.toml").string(), "--resume"});
  EXPECT_EQ(fallback.exit_code, 0) << fallback.output;
  EXPECT_NE(fallback.output.find("--resume: skipping checkpoint-4: " + weights.string()), std::string::npos)
      << fallback.output;
  EXPECT_NE(fallback.output.find("resuming from " + (dir / "o" / "checkpoint-2").string()), std::string::npos)
      << fallback.output;
  fs::remove(dir / "o" / "checkpoint-2" / "optimizer.safetensors");
  expect_error(run_trainer({"--config", (dir / "cfg.toml").string(), "--resume", (dir / "o" / "checkpoint-2").string()}),
               "optimizer.safetensors is missing");
  expect_error(run_trainer({"--config", (dir / "cfg.toml").string(), "--resume", (dir / "nowhere").string()}),
               "not a folder");
}

}  // namespace
}  // namespace loom::test
