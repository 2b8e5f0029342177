// Axolotl YAML through the real trainer: each example in configs/axolotl/, made tiny, is
// converted with `trainer convert-config`; `trainer check --print-config` resolves the YAML
// and the TOML to the same config, and a run from each writes the same losses. Bad input
// stops before anything is written.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <set>
#include <sstream>

#include "e2e/tiny_run.hpp"

namespace loom::test {
namespace {
namespace fs = std::filesystem;

// The YAML with the top-level keys in `drop` removed (with their indented blocks), relative
// data paths made absolute, and `extra` appended.
std::string edit_yaml(const std::string& yaml, const std::set<std::string>& drop,
                      const std::string& extra) {
  std::istringstream in(yaml);
  std::string out;
  bool skipping = false;
  for (std::string line; std::getline(in, line);) {
    const bool top = !line.empty() && line[0] != ' ' && line[0] != '-';
    if (top) {
      const std::string key = line.substr(0, line.find(':'));
      skipping = drop.count(key) > 0;
    }
    if (skipping) continue;
    for (std::size_t at; (at = line.find(" configs/data/")) != std::string::npos;)
      line.replace(at, 14, " " LOOM_SOURCE_DIR "/configs/data/");
    out += line + "\n";
  }
  return out + extra;
}

// Small enough to train in seconds on one thread.
const std::set<std::string> kSizeKeys = {
    "base_model", "max_steps", "num_epochs", "sequence_len", "micro_batch_size",
    "gradient_accumulation_steps", "logging_steps", "eval_steps", "save_steps", "warmup_steps",
    "warmup_ratio", "model", "diffusion_mask_token_id", "diffusion_generation_interval"};
const char* kTinyKeys = R"(
max_steps: 6
sequence_len: 256
micro_batch_size: 4
gradient_accumulation_steps: 1
logging_steps: 1
warmup_steps: 2
eval_steps: 3
eval_max_batches: 2
save_steps: 0
threads: 1
model:
  hidden_size: 32
  intermediate_size: 64
  num_hidden_layers: 1
  num_attention_heads: 2
  num_key_value_heads: 1
  max_position_embeddings: 256
)";

// From the "<file>: OK" line on, without the file's name: what check resolved.
std::string resolved_part(const ProcessResult& r) {
  const auto at = r.output.find(": OK (");
  return at == std::string::npos ? "(no OK line)\n" + r.output : r.output.substr(at);
}

// Every logged step's train/loss, train/grad_norm, train/lr and eval/loss (timings differ).
std::vector<std::string> trained_values(const fs::path& out) {
  std::vector<std::string> v;
  for (const auto& row : read_metrics(out)) {
    nlohmann::json kept;
    for (const char* k : {"step", "train/loss", "train/grad_norm", "train/lr", "eval/loss"})
      if (row.contains(k)) kept[k] = row[k];
    v.push_back(kept.dump());
  }
  return v;
}

class AxolotlE2E : public ::testing::TestWithParam<std::string> {};

TEST_P(AxolotlE2E, YamlAndConvertedTomlResolveAndTrainTheSame) {
  const std::string name = GetParam();
  const fs::path dir = fresh_dir("axolotl-" + name);
  const fs::path yml = dir / (name + ".yml"), toml = dir / (name + ".toml");
  write_file(yml, edit_yaml(read_file(fs::path(LOOM_SOURCE_DIR) / "configs/axolotl" / (name + ".yml")),
                            kSizeKeys, kTinyKeys));

  // stdout alone is the TOML; the warnings go to stderr.
  const ProcessResult convert = run_command(
      "(OMP_NUM_THREADS=1 " + shell_quote(LOOM_TRAINER_BIN) + " convert-config " +
      shell_quote(yml.string()) + " 2>" + shell_quote((dir / "convert.err").string()) + ") >" +
      shell_quote(toml.string()));
  ASSERT_EQ(convert.exit_code, 0) << convert.output << read_file(dir / "convert.err");
  ASSERT_NE(read_file(toml).find("[model]"), std::string::npos) << read_file(toml);

  const ProcessResult check_yaml = run_trainer({"check", "--config", yml.string(), "--print-config"});
  const ProcessResult check_toml = run_trainer({"check", "--config", toml.string(), "--print-config"});
  ASSERT_EQ(check_yaml.exit_code, 0) << check_yaml.output;
  ASSERT_EQ(check_toml.exit_code, 0) << check_toml.output;
  EXPECT_EQ(resolved_part(check_yaml), resolved_part(check_toml));
  EXPECT_NE(resolved_part(check_yaml).find("max_steps = 6"), std::string::npos) << check_yaml.output;

  const ProcessResult run_yaml = run_trainer({"--config", yml.string(), "--no-progress", "--set",
                                              "output_dir=" + (dir / "run-yaml").string()});
  const ProcessResult run_toml = run_trainer({"--config", toml.string(), "--no-progress", "--set",
                                              "output_dir=" + (dir / "run-toml").string()});
  ASSERT_EQ(run_yaml.exit_code, 0) << run_yaml.output;
  ASSERT_EQ(run_toml.exit_code, 0) << run_toml.output;
  const auto losses = train_losses(dir / "run-yaml");
  EXPECT_EQ(losses.size(), 6u);
  EXPECT_EQ(losses, train_losses(dir / "run-toml"));
  EXPECT_EQ(trained_values(dir / "run-yaml"), trained_values(dir / "run-toml"));
  // The checkpoint remembers the run as TOML, so generate, eval and --resume read it back.
  EXPECT_TRUE(fs::exists(dir / "run-yaml/final"));
}

INSTANTIATE_TEST_SUITE_P(Examples, AxolotlE2E,
                         ::testing::Values("diffusion-readme", "llama-3.2-1b-diffusion-pretrain",
                                           "instruct-alpaca"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (auto& c : n) c = std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
                           return n;
                         });

// `lock_only`: the run folder may exist holding only its lock file (.loom.lock): the trainer
// takes the folder before the plugins validate their tables, for TOML configs as well.
void expect_refused(const ProcessResult& r, const std::string& needle, const fs::path& out,
                    bool lock_only = false) {
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_EQ(r.signal, 0) << r.output;
  EXPECT_NE(r.output.find("error: "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(needle), std::string::npos) << "wanted: " << needle << "\ngot: " << r.output;
  if (!lock_only) {
    EXPECT_FALSE(fs::exists(out)) << "written before the error: " << out;
  } else if (fs::exists(out)) {
    for (const auto& e : fs::directory_iterator(out))
      EXPECT_EQ(e.path().filename(), ".loom.lock") << "written before the error: " << e.path();
    fs::remove_all(out);
  }
}

TEST(AxolotlE2EBadInput, StopsBeforeAnythingIsWritten) {
  const fs::path dir = fresh_dir("axolotl-bad");
  const fs::path out = dir / "out";
  std::set<std::string> drop = kSizeKeys;
  drop.insert("output_dir");
  const std::string base = edit_yaml(
      read_file(fs::path(LOOM_SOURCE_DIR) / "configs/axolotl/instruct-alpaca.yml"), drop,
      kTinyKeys) + "output_dir: " + out.string() + "\n";
  auto train = [&](const std::string& yaml) {
    write_file(dir / "a.yml", yaml);
    return run_trainer({"--config", (dir / "a.yml").string(), "--no-progress"});
  };
  // Malformed: a value indented under a scalar, two lines after the base config (yaml-cpp and
  // PyYAML both report its column 6, the ':').
  const auto lines = std::count(base.begin(), base.end(), '\n');
  expect_refused(train(base + "seed: 1\n  bad: 2\n"),
                 "a.yml:" + std::to_string(lines + 2) + ":6: not valid YAML", out);
  expect_refused(train(base + "seed: many\n"), "seed must be an integer", out);
  expect_refused(train("plugins:\n  - axolotl.integrations.nope.NopePlugin\n" + base),
                 "plugins: unknown plugin path 'axolotl.integrations.nope.NopePlugin'", out);
  expect_refused(train(base + "adapter: qlora\n"), "adapter must be \"lora\" (got \"qlora\"", out);
  // A diffusion key of the wrong type: the plugin's schema check, at the key's YAML line.
  const std::string diffusion = "plugins:\n  - diffusion.DiffusionPlugin\ndiffusion:\n  eps: high\n";
  expect_refused(train(diffusion + base), "a.yml:4:8: diffusion.eps must be of type float", out,
                 /*lock_only=*/true);
  const ProcessResult toml = run_trainer({"convert-config", (dir / "a.toml").string()});
  EXPECT_EQ(toml.exit_code, 1);
  EXPECT_NE(toml.output.find("convert-config reads an Axolotl YAML config"), std::string::npos) << toml.output;
}

TEST(AxolotlE2EBadInput, ToolingKeysWarnAndTheRunProceeds) {
  const fs::path dir = fresh_dir("axolotl-tooling");
  std::set<std::string> drop = kSizeKeys;
  drop.insert("output_dir");
  write_file(dir / "a.yml",
             edit_yaml(read_file(fs::path(LOOM_SOURCE_DIR) / "configs/axolotl/instruct-alpaca.yml"),
                       drop, kTinyKeys) +
                 "output_dir: " + (dir / "out").string() + "\nwandb_project: loom-test\n"
                 "hub_model_id: me/tiny\n");
  const ProcessResult r = run_trainer({"--config", (dir / "a.yml").string(), "--no-progress"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("ignored (they only concern Axolotl's Python tooling): wandb_project"),
            std::string::npos)
      << r.output;
  EXPECT_EQ(train_losses(dir / "out").size(), 6u);
}

}  // namespace
}  // namespace loom::test
