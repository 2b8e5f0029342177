// End-to-end: the trainer on small Hugging Face folders of the LLaDA, Dream and Qwen3 layouts
// (tests/model/layout_folder.hpp, with a byte-level tokenizer.json beside them): `trainer
// generate` takes the mask token and the logit shift from the model, training writes checkpoints
// in the layout it started from, and bad folders are refused before anything is written.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <regex>
#include <set>

#include "e2e/tiny_run.hpp"
#include "io/tensor_io.hpp"
#include "model/layout_folder.hpp"
#include "tokenizer/byte_tokenizer.hpp"

namespace loom::test {
namespace {
namespace fs = std::filesystem;
using namespace layout_golden;

const std::string kPlugin = std::string(LOOM_BINARY_DIR) + "/plugins/libdiffusion.so";

// No BOS, so the first prompt token is a letter that either objective could mask: EOS 256,
// pad 257 and the model's own mask token 258 (in neither case the diffusion plugin's default
// mask_token_str, so a run that did not take the model's token fails).
constexpr std::int64_t kVocab = 259, kMaskId = 258;

// `layout`'s reference folder at the tokenizer's vocabulary and a 256-token context.
fs::path layout_folder(const std::string& name, const std::string& config,
                       const std::vector<StoredTensor>& tensors, std::int64_t listed_rows) {
  const fs::path dir = fresh_dir("e2e-layout-" + name);
  layout_test::FolderOptions opt;
  opt.vocab_rows = kVocab;
  opt.listed_vocab_rows = listed_rows;
  opt.edit_config = [](nlohmann::json& c) {
    const bool llada = c["model_type"] == "llada";
    c["vocab_size"] = kVocab;
    if (llada) c["embedding_size"] = kVocab;
    c[llada ? "max_sequence_length" : "max_position_embeddings"] = 256;
    if (c.contains("mask_token_id")) c["mask_token_id"] = kMaskId;
    c["eos_token_id"] = 256;
    c["pad_token_id"] = 257;
    c.erase("bos_token_id");
  };
  layout_test::write_layout_folder(dir, config, tensors, opt);
  ByteTokenizer({"<|eos|>", "<|pad|>", "<|mdm_mask|>"}).save(dir);
  return dir;
}

// "Masked (m/n tokens, ...)" of a single-prompt generate.
std::pair<int, int> masked_count(const std::string& output) {
  std::smatch m;
  static const std::regex re("Masked \\(([0-9]+)/([0-9]+) tokens");
  if (!std::regex_search(output, m, re)) return {-1, -1};
  return {std::stoi(m[1]), std::stoi(m[2])};
}

TEST(ModelLayoutsE2E, GenerateOnLladaUsesItsMaskTokenAndNoShift) {
  const fs::path dir = layout_folder("llada", kLladaConfig, kLladaTensors, 48);
  // --mask 1: every maskable prompt token; without a shift that includes the first.
  auto r = run_trainer({"generate", "--checkpoint", dir.string(), "--plugin", kPlugin, "--prompt",
                        "abcdef", "--mask", "1", "--steps", "3", "--seed", "1"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(masked_count(r.output), std::make_pair(6, 6)) << r.output;
  // With the mask token named on the command line the same way, the result is identical; with
  // the plugin's default token string the model's token is still the one used.
  auto same = run_trainer({"generate", "--checkpoint", dir.string(), "--plugin", kPlugin, "--prompt",
                           "abcdef", "--mask", "1", "--steps", "3", "--seed", "1", "--set",
                           "diffusion.mask_token_id=" + std::to_string(kMaskId)});
  ASSERT_EQ(same.exit_code, 0) << same.output;
  EXPECT_EQ(same.output, r.output);
  // A user-set logit_shift still wins over the model's.
  auto shifted = run_trainer({"generate", "--checkpoint", dir.string(), "--plugin", kPlugin,
                              "--prompt", "abcdef", "--mask", "1", "--steps", "3", "--set",
                              "diffusion.logit_shift=true"});
  ASSERT_EQ(shifted.exit_code, 0) << shifted.output;
  EXPECT_EQ(masked_count(shifted.output), std::make_pair(5, 6)) << shifted.output;
  // trainer eval scores the folder with the diffusion bound.
  write_file(dir / "data.jsonl", "{\"text\": \"Ada went to the park with three red apples.\"}\n");
  auto e = run_trainer({"eval", "--checkpoint", dir.string(), "--plugin", kPlugin, "--data",
                        (dir / "data.jsonl").string(), "--mc-samples", "2"});
  ASSERT_EQ(e.exit_code, 0) << e.output;
  auto j = nlohmann::json::parse(e.output.substr(e.output.find('{')));
  EXPECT_GT(j["nll_bound_per_token"].get<double>(), 0.0) << e.output;
  EXPECT_EQ(j["mc_samples"], 2);
}

TEST(ModelLayoutsE2E, GenerateOnDreamUsesItsMaskTokenAndTheShift) {
  const fs::path dir = layout_folder("dream", kDreamConfig, kDreamTensors, 40);
  auto r = run_trainer({"generate", "--checkpoint", dir.string(), "--plugin", kPlugin, "--prompt",
                        "abcdef", "--mask", "1", "--steps", "3", "--seed", "1"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // Dream predicts token i from position i - 1: the first token is never masked.
  EXPECT_EQ(masked_count(r.output), std::make_pair(5, 6)) << r.output;
}

TEST(ModelLayoutsE2E, DiffusionTrainingOnQwen3AndLladaWritesTheirLayouts) {
  struct Case {
    std::string name;
    fs::path base;
    std::int64_t vocab_after;  // Qwen3 gets the plugin's mask token added; LLaDA has its own
  };
  const std::vector<Case> cases = {
      {"qwen3", layout_folder("qwen3-train", kQwen3Config, kQwen3Tensors, 40), kVocab + 1},
      {"llada", layout_folder("llada-train", kLladaConfig, kLladaTensors, 48), kVocab}};
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const fs::path dir = fresh_dir("e2e-layout-train-" + c.name);
    write_file(dir / "cfg.toml",
               "base_model = \"" + c.base.string() + "\"\noutput_dir = \"" + (dir / "out").string() +
                   "\"\nseed = 3\nsequence_len = 32\nmicro_batch_size = 2\nlearning_rate = 1e-3\n"
                   "max_steps = 3\nlogging_steps = 1\nthreads = 1\n"
                   "\n[[datasets]]\npath = \"" LOOM_SOURCE_DIR "/configs/data/tiny_stories.jsonl\"\n"
                   "\n[diffusion]\ngenerate_samples = false\n");
    auto r = run_trainer({"--config", (dir / "cfg.toml").string(), "--plugin", kPlugin, "--no-progress"});
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const auto losses = train_losses(dir / "out");
    ASSERT_EQ(losses.size(), 3u);
    for (const auto& [step, loss] : losses) EXPECT_TRUE(std::isfinite(loss)) << step;

    const fs::path final_dir = dir / "out" / "final";
    auto before = nlohmann::json::parse(read_file(c.base / "config.json"));
    auto after = nlohmann::json::parse(read_file(final_dir / "config.json"));
    EXPECT_EQ(after["model_type"], c.name);
    for (auto it = before.begin(); it != before.end(); ++it)
      EXPECT_TRUE(after.contains(it.key())) << it.key();
    EXPECT_EQ(after[c.name == "llada" ? "embedding_size" : "vocab_size"], c.vocab_after);
    std::set<std::string> base_names, saved_names;
    for (const auto& [n, t] : load_all(c.base / "model.safetensors")) base_names.insert(n);
    for (const auto& [n, t] : load_all(final_dir / "model.safetensors")) saved_names.insert(n);
    EXPECT_EQ(saved_names, base_names);
    // The checkpoint samples (its own mask token: the one added, or LLaDA's).
    auto g = run_trainer({"generate", "--checkpoint", final_dir.string(), "--prompt", "Once",
                          "--complete", "4", "--steps", "2"});
    EXPECT_EQ(g.exit_code, 0) << g.output;
  }
}

TEST(ModelLayoutsE2E, BadFolderIsRefusedNamingFileAndKeyAndNothingIsWritten) {
  const fs::path base = layout_folder("bad", kQwen3Config, kQwen3Tensors, 40);
  auto cfg = nlohmann::json::parse(read_file(base / "config.json"));
  cfg["model_type"] = "gemma";
  write_file(base / "config.json", cfg.dump());
  const fs::path dir = fresh_dir("e2e-layout-bad-run");
  write_file(dir / "cfg.toml", "base_model = \"" + base.string() + "\"\noutput_dir = \"" +
                                   (dir / "out").string() +
                                   "\"\nsequence_len = 32\nmax_steps = 1\n"
                                   "\n[[datasets]]\npath = \"" LOOM_SOURCE_DIR "/configs/data/tiny_stories.jsonl\"\n");
  auto r = run_trainer({"--config", (dir / "cfg.toml").string(), "--no-progress"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("model_type 'gemma'"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find((base / "config.json").string()), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("qwen3"), std::string::npos) << "lists the supported layouts: " << r.output;
  // Nothing is written but the run folder's lock (taken before the model is read).
  std::vector<std::string> written;
  if (fs::exists(dir / "out"))
    for (const auto& e : fs::recursive_directory_iterator(dir / "out"))
      if (e.path().filename() != ".loom.lock") written.push_back(e.path().string());
  EXPECT_TRUE(written.empty()) << written.front();
}

}  // namespace
}  // namespace loom::test
