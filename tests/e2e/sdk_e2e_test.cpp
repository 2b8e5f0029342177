// The SDK as a third party uses it: install loom, build the example plugins out of tree with
// find_package(loom_sdk), and train with them; the SDK 1.2 callback parts (training control,
// the load hook, parameters and tensor files) in real runs.
#include <gtest/gtest.h>

#include <set>
#include <sstream>

#include "e2e/tiny_run.hpp"
#include "io/tensor_io.hpp"
#include "loom/sdk/version.hpp"

namespace loom::test {
namespace {
namespace fs = std::filesystem;

TEST(SdkE2E, ExamplePluginBuiltOutOfTreeAgainstTheInstalledSdkTrains) {
  auto dir = fresh_dir("sdk");
  const std::string cmake = shell_quote(LOOM_CMAKE_COMMAND);
  auto install = run_command(cmake + " --install " + shell_quote(LOOM_BINARY_DIR) + " --prefix " +
                             shell_quote((dir / "prefix").string()));
  ASSERT_EQ(install.exit_code, 0) << install.output;
  ASSERT_TRUE(fs::exists(dir / "prefix" / "include" / "loom" / "sdk.hpp"));
  // A copy of the example, so nothing of the source tree is reachable from it.
  fs::copy(fs::path(LOOM_SOURCE_DIR) / "plugins" / "examples" / "label_smoothing", dir / "src",
           fs::copy_options::recursive);
  auto configure = run_command(cmake + " -S " + shell_quote((dir / "src").string()) + " -B " +
                               shell_quote((dir / "build").string()) + " -DCMAKE_BUILD_TYPE=Release" +
                               " -DCMAKE_PREFIX_PATH=" + shell_quote((dir / "prefix").string()));
  ASSERT_EQ(configure.exit_code, 0) << configure.output;
  auto build = run_command(cmake + " --build " + shell_quote((dir / "build").string()));
  ASSERT_EQ(build.exit_code, 0) << build.output;
  const auto plugin = dir / "build" / "liblabel_smoothing.so";
  ASSERT_TRUE(fs::exists(plugin));

  // The installed trainer lists it with its config key ...
  const std::string trainer = (dir / "prefix" / "bin" / "trainer").string();
  auto listed = run_command(shell_quote(trainer) + " plugins --plugin " + shell_quote(plugin.string()));
  ASSERT_EQ(listed.exit_code, 0) << listed.output;
  EXPECT_NE(listed.output.find("label_smoothing 1.0"), std::string::npos) << listed.output;
  EXPECT_NE(listed.output.find("epsilon"), std::string::npos) << listed.output;
  EXPECT_NE(listed.output.find("SDK ABI 1."), std::string::npos) << listed.output;
  // An installed trainer does not search the build tree it was compiled in.
  EXPECT_EQ(listed.output.find(std::string(LOOM_BINARY_DIR) + "/plugins"), std::string::npos) << listed.output;

  // ... and trains with it. With epsilon = 0 its loss is exactly the host's causal loss, so
  // the two runs must log the same losses; with epsilon = 0.1 the loss still falls.
  write_file(dir / "causal.toml", tiny_config(dir / "causal", 6));
  write_file(dir / "ls0.toml", tiny_config(dir / "ls0", 6, "") + "\n[label_smoothing]\nepsilon = 0.0\n");
  write_file(dir / "ls.toml", tiny_config(dir / "ls", 40, "") + "\n[label_smoothing]\nepsilon = 0.1\n");
  ASSERT_EQ(run_trainer({"--config", (dir / "causal.toml").string(), "--no-progress"}).exit_code, 0);
  auto r0 = run_command(shell_quote(trainer) + " --config " + shell_quote((dir / "ls0.toml").string()) +
                        " --plugin " + shell_quote(plugin.string()) + " --no-progress");
  ASSERT_EQ(r0.exit_code, 0) << r0.output;
  auto a = train_losses(dir / "causal"), b = train_losses(dir / "ls0");
  ASSERT_EQ(a.size(), 6u);
  for (auto& [step, loss] : a) EXPECT_NEAR(b[step], loss, 1e-5 * loss) << "step " << step;
  auto r = run_command(shell_quote(trainer) + " --config " + shell_quote((dir / "ls.toml").string()) +
                       " --plugin " + shell_quote(plugin.string()) + " --no-progress");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto l = train_losses(dir / "ls");
  EXPECT_LT(l[40], l[1] * 0.7);
  EXPECT_TRUE(read_metrics(dir / "ls").back().contains("train/ce_loss"));

  // The callback example (SDK 1.2 hooks) the same way: find_package(loom_sdk 1.2), built out of
  // tree, loaded by the installed trainer; its tensor file lands in every checkpoint.
  fs::copy(fs::path(LOOM_SOURCE_DIR) / "plugins" / "examples" / "ema", dir / "ema-src", fs::copy_options::recursive);
  auto ema_configure = run_command(cmake + " -S " + shell_quote((dir / "ema-src").string()) + " -B " +
                                   shell_quote((dir / "ema-build").string()) + " -DCMAKE_BUILD_TYPE=Release" +
                                   " -DCMAKE_PREFIX_PATH=" + shell_quote((dir / "prefix").string()));
  ASSERT_EQ(ema_configure.exit_code, 0) << ema_configure.output;
  auto ema_build = run_command(cmake + " --build " + shell_quote((dir / "ema-build").string()));
  ASSERT_EQ(ema_build.exit_code, 0) << ema_build.output;
  const auto ema = dir / "ema-build" / "libema.so";
  auto ema_listed = run_command(shell_quote(trainer) + " plugins --plugin " + shell_quote(ema.string()));
  EXPECT_NE(ema_listed.output.find("ema 1.0"), std::string::npos) << ema_listed.output;
  EXPECT_NE(ema_listed.output.find("SDK ABI " + std::to_string(LOOM_SDK_ABI_MAJOR) + "." +
                                   std::to_string(LOOM_SDK_ABI_MINOR)),
            std::string::npos) << ema_listed.output;
  write_file(dir / "ema.toml", tiny_config(dir / "ema-out", 4, "save_steps = 2\n"));
  auto re = run_command(shell_quote(trainer) + " --config " + shell_quote((dir / "ema.toml").string()) +
                        " --plugin " + shell_quote(ema.string()) + " --no-progress");
  ASSERT_EQ(re.exit_code, 0) << re.output;
  for (const char* folder : {"checkpoint-2", "checkpoint-4", "final"})
    EXPECT_TRUE(fs::exists(dir / "ema-out" / folder / "ema.safetensors")) << folder;
}

std::string fixture(const std::string& kind) {
  return (fs::path(LOOM_FIXTURE_DIR) / ("libfixture_" + kind + ".so")).string();
}

std::set<std::string> checkpoints_in(const fs::path& out) {
  std::set<std::string> names;
  for (const auto& e : fs::directory_iterator(out))
    if (e.is_directory()) names.insert(e.path().filename().string());
  return names;
}

// A callback stops training at step 4 of 10 (should_training_stop): a normal end -- the last
// checkpoint, final/, on_train_end, exit 0 -- at step 4. It also asks for a checkpoint at step
// 2 and an evaluation at step 3, which the schedule (no save_steps, eval only at the end) would
// not do.
TEST(SdkE2E, CallbackControlsTraining) {
  auto dir = fresh_dir("sdk-control");
  write_file(dir / "c.toml", tiny_config(dir / "out", 10, "val_set_size = 0.05\nsave_steps = 0\n") +
                                 "\n[plain]\nstop_at = 4\nsave_at = 2\nevaluate_at = 3\n");
  auto r = run_trainer({"--config", (dir / "c.toml").string(), "--plugin", fixture("plain"), "--no-progress"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("a plugin callback stopped training at step 4 of 10"), std::string::npos) << r.output;
  EXPECT_EQ(checkpoints_in(dir / "out"), (std::set<std::string>{"checkpoint-2", "checkpoint-4", "final"}));
  EXPECT_NE(read_file(dir / "out" / "checkpoint-4" / "trainer_state.json").find("\"step\": 4"), std::string::npos);
  EXPECT_TRUE(fs::exists(dir / "out" / "final" / "fixture_on_save.txt"));
  EXPECT_EQ(read_file(dir / "out" / "fixture_plain_train_end.txt"), "step 4\n");
  std::vector<std::int64_t> eval_steps;
  std::int64_t last_train = 0;
  for (const auto& m : read_metrics(dir / "out")) {
    if (m.contains("eval/loss")) eval_steps.push_back(m["step"].get<std::int64_t>());
    if (m.contains("train/loss")) last_train = m["step"].get<std::int64_t>();
  }
  EXPECT_EQ(eval_steps, (std::vector<std::int64_t>{3, 4})) << "asked for at 3, and at the end";
  EXPECT_EQ(last_train, 4);
}

// On --resume each plugin built for SDK 1.2 is told the checkpoint (on_load), before training
// goes on; a plugin built for 1.0 is not (it has no such hook) and still trains. `trainer eval`
// on a checkpoint calls it too.
TEST(SdkE2E, LoadHookOnResumeAndEval) {
  auto dir = fresh_dir("sdk-load");
  const auto out = dir / "out";
  write_file(dir / "c.toml", tiny_config(out, 4, "save_steps = 2\n"));
  const std::vector<std::string> plugins = {"--plugin", fixture("plain"), "--plugin", fixture("v1_0")};
  auto args = [&](std::vector<std::string> a) {
    a.insert(a.end(), plugins.begin(), plugins.end());
    return a;
  };
  auto r = run_trainer(args({"--config", (dir / "c.toml").string(), "--no-progress"}));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_FALSE(fs::exists(out / "fixture_plain_load.txt")) << "a fresh run loads nothing";
  r = run_trainer(args({"--config", (dir / "c.toml").string(), "--no-progress", "--resume",
                        (out / "checkpoint-2").string()}));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(read_file(out / "fixture_plain_load.txt"), "step 2 " + (out / "checkpoint-2").string() + "\n");
  EXPECT_FALSE(fs::exists(out / "fixture_v1_0_load.txt"));
  EXPECT_EQ(read_file(out / "fixture_v1_0_train_end.txt"), "step 4\nstep 4\n");
  write_file(dir / "held_out.jsonl", "{\"text\": \"Once upon a time there was a cat.\"}\n");
  r = run_trainer({"eval", "--checkpoint", (out / "checkpoint-4").string(), "--data",
                   (dir / "held_out.jsonl").string()});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(read_file(out / "fixture_plain_load.txt"),
            "step 2 " + (out / "checkpoint-2").string() + "\nstep 4 " + (out / "checkpoint-4").string() + "\n");
}

// `trainer generate --input` (SDK 1.3): a sampler built for 1.3 gets each batch at once
// (generate_batch, which the fixture notes); one built for an older minor gets the requests one
// by one through generate(), the trainer counting each one's forward passes. Either way every
// prompt gets one result line, in order.
TEST(SdkE2E, GenerateBatchIsCalledOnlyOnSamplersBuiltForIt) {
  auto dir = fresh_dir("sdk-batch");
  write_file(dir / "prompts.jsonl",
             "{\"prompt\": \"Once upon\"}\n{\"prompt\": \"A cat\", \"max_new_tokens\": 3}\n\n"
             "{\"prompt\": \"The dog ran\", \"max_new_tokens\": 5, \"seed\": 7}\n");
  for (const std::string kind : {"plain", "v1_0"}) {
    SCOPED_TRACE(kind);
    const auto out = dir / kind;
    write_file(dir / (kind + ".toml"), tiny_config(out, 2) + "\n[" + kind + "]\nown_loss = true\n");
    auto r = run_trainer({"--config", (dir / (kind + ".toml")).string(), "--no-progress", "--plugin", fixture(kind)});
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const auto results = dir / (kind + "_results.jsonl");
    r = run_trainer({"generate", "--checkpoint", (out / "final").string(), "--input", (dir / "prompts.jsonl").string(),
                     "--output", results.string(), "--batch-size", "2", "--max-new-tokens", "4"});
    ASSERT_EQ(r.exit_code, 0) << r.output;
    std::vector<nlohmann::json> lines;
    std::istringstream in(read_file(results));
    for (std::string l; std::getline(in, l);) lines.push_back(nlohmann::json::parse(l));
    ASSERT_EQ(lines.size(), 3u);
    EXPECT_EQ(lines[0]["line"], 1);
    EXPECT_EQ(lines[2]["line"], 4);
    EXPECT_EQ(lines[2]["prompt"], "The dog ran");
    EXPECT_EQ(lines[0]["new_tokens"], 4);  // --max-new-tokens, where the line gives none
    EXPECT_EQ(lines[1]["new_tokens"], 3);
    EXPECT_EQ(lines[2]["new_tokens"], 5);
    for (const auto& l : lines) EXPECT_EQ(l["forward_passes"], 1) << l.dump();
    EXPECT_EQ(lines[0]["batch"], 0);
    EXPECT_EQ(lines[2]["batch"], 1);
    if (kind == "plain")
      EXPECT_EQ(read_file(out / "fixture_plain_generate_batch.txt"), "2 requests\n1 requests\n");
    else
      EXPECT_FALSE(fs::exists(out / "fixture_v1_0_generate_batch.txt"));
  }
}

// The EMA example plugin (plugins/examples/ema): every checkpoint holds ema.safetensors with the
// model's tensor names, and each checkpoint's average follows from the previous one and the
// checkpoint's own weights: ema_k = d ema_(k-1) + (1 - d) w_k. A run resumed from step 3
// ends with the same average as the uninterrupted one (the load hook read it back).
TEST(SdkE2E, EmaExampleKeepsTheAverageAcrossCheckpointsAndResume) {
  auto dir = fresh_dir("sdk-ema");
  const auto out = dir / "out";
  const double d = 0.75;
  write_file(dir / "c.toml", tiny_config(out, 6, "save_steps = 1\nplugins = [\"ema\"]\n") +
                                 "\n[ema]\ndecay = 0.75\n");
  auto r = run_trainer({"--config", (dir / "c.toml").string(), "--no-progress"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto model = [&](int k) { return load_all(out / ("checkpoint-" + std::to_string(k)) / "model.safetensors"); };
  auto ema = [&](int k) { return load_all(out / ("checkpoint-" + std::to_string(k)) / "ema.safetensors"); };
  for (int k = 2; k <= 6; ++k) {
    auto w = model(k), prev = ema(k - 1), now = ema(k);
    ASSERT_EQ(now.size(), w.size());
    for (const auto& [name, t] : w) {
      ASSERT_TRUE(now.count(name)) << name;
      auto expected = prev.at(name).to(torch::kDouble) * d + t.to(torch::kDouble) * (1 - d);
      EXPECT_LT((now.at(name).to(torch::kDouble) - expected).abs().max().item<double>(), 1e-6)
          << name << " at step " << k;
    }
  }
  auto final_ema = load_all(out / "final" / "ema.safetensors");
  const auto uninterrupted = ema(6);
  for (const auto& [name, t] : uninterrupted) EXPECT_TRUE(final_ema.at(name).equal(t)) << name;
  r = run_trainer({"--config", (dir / "c.toml").string(), "--no-progress", "--resume",
                   (out / "checkpoint-3").string()});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto resumed = ema(6);
  for (const auto& [name, t] : uninterrupted) EXPECT_TRUE(resumed.at(name).equal(t)) << name;
}

}  // namespace
}  // namespace loom::test
