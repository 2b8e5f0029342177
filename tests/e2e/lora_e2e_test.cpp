// End-to-end LoRA (docs/lora.md): a diffusion fine-tune with adapters on a small generated
// LLaDA-layout checkpoint trains (loss falls) and samples; its checkpoints hold PEFT adapters
// (not the model); --resume continues exactly; `trainer export --merge` writes a full LLaDA
// folder scoring as base + adapter does; an adapter for another base is refused, nothing written.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <set>

#include "distributed/process_group.hpp"
#include "e2e/tiny_run.hpp"
#include "io/tensor_io.hpp"
#include "model/layout_folder.hpp"
#include "tokenizer/byte_tokenizer.hpp"

namespace loom::test {
namespace {
namespace fs = std::filesystem;
using namespace layout_golden;

const std::string kPlugin = std::string(LOOM_BINARY_DIR) + "/plugins/libdiffusion.so";
constexpr std::int64_t kVocab = 259, kMaskId = 258;

// The reference LLaDA folder at a byte tokenizer's vocabulary, `hidden` wide.
fs::path llada_folder(const std::string& name) {
  const fs::path dir = fresh_dir("e2e-lora-" + name);
  layout_test::FolderOptions opt;
  opt.vocab_rows = kVocab;
  opt.listed_vocab_rows = 48;
  opt.edit_config = [](nlohmann::json& c) {
    c["vocab_size"] = kVocab;
    c["embedding_size"] = kVocab;
    c["max_sequence_length"] = 256;
    c["mask_token_id"] = kMaskId;
    c["eos_token_id"] = 256;
    c["pad_token_id"] = 257;
  };
  layout_test::write_layout_folder(dir, kLladaConfig, kLladaTensors, opt);
  ByteTokenizer({"<|eos|>", "<|pad|>", "<|mdm_mask|>"}).save(dir);
  return dir;
}

std::string lora_config(const fs::path& base, const fs::path& out, int steps, const std::string& extra = "") {
  return "base_model = \"" + base.string() + "\"\noutput_dir = \"" + out.string() +
         "\"\nseed = 3\nsequence_len = 32\nmicro_batch_size = 4\nlearning_rate = 2e-2\n"
         "lr_scheduler = \"constant\"\nmax_steps = " + std::to_string(steps) +
         "\nlogging_steps = 1\nthreads = 1\nsave_steps = 4\ngradient_checkpointing = true\n"
         "adapter = \"lora\"\nlora_r = 4\nlora_alpha = 8\nlora_dropout = 0.05\n"
         "lora_target_modules = \"all-linear\"\n" + extra +
         "\n[[datasets]]\npath = \"" LOOM_SOURCE_DIR "/configs/data/tiny_stories.jsonl\"\n"
         "\n[diffusion]\ngenerate_samples = false\n";
}

double eval_nll(const std::vector<std::string>& args) {
  auto r = run_trainer(args);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  if (r.exit_code != 0) return NAN;
  return nlohmann::json::parse(r.output.substr(r.output.find('{')))["nll_bound_per_token"].get<double>();
}

TEST(LoraE2E, DiffusionFineTuneOnLladaTrainsSavesResumesSamplesAndMerges) {
  const fs::path base = llada_folder("base");
  const fs::path dir = fresh_dir("e2e-lora-run");
  write_file(dir / "cfg.toml", lora_config(base, dir / "out", 12));
  auto r = run_trainer({"--config", (dir / "cfg.toml").string(), "--plugin", kPlugin, "--no-progress"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("LoRA r 4 alpha 8 on q_proj k_proj v_proj attn_out ff_proj up_proj ff_out"),
            std::string::npos) << r.output;
  const auto losses = train_losses(dir / "out");
  ASSERT_EQ(losses.size(), 12u);
  double first = 0, last = 0;
  for (const auto& [step, loss] : losses) {
    if (step <= 3) first += loss;
    if (step >= 10) last += loss;
  }
  EXPECT_LT(last, first) << "loss of steps 10-12 vs 1-3";

  // The run's report sees a finished run (final/ holds the adapter, not config.json).
  auto report = run_trainer({"report", "--run", (dir / "out").string()});
  ASSERT_EQ(report.exit_code, 0) << report.output;
  EXPECT_NE(read_file(dir / "out" / "report.html").find("finished"), std::string::npos);

  // Checkpoints hold the PEFT adapter, not the model.
  const fs::path ckpt = dir / "out" / "checkpoint-8";
  for (const char* f : {"adapter_config.json", "adapter_model.safetensors", "optimizer.safetensors",
                        "trainer_state.json", "tokenizer.json", "loom_config.toml"})
    EXPECT_TRUE(fs::exists(ckpt / f)) << f;
  EXPECT_FALSE(fs::exists(ckpt / "model.safetensors"));
  auto adapter_cfg = nlohmann::json::parse(read_file(dir / "out" / "final" / "adapter_config.json"));
  EXPECT_EQ(adapter_cfg["peft_type"], "LORA");
  EXPECT_EQ(adapter_cfg["base_model_name_or_path"], fs::absolute(base).lexically_normal().string());
  std::set<std::string> names, optimizer_names;
  for (const auto& [n, t] : load_all(ckpt / "adapter_model.safetensors")) names.insert(n);
  EXPECT_EQ(names.size(), 2u * 7u * 2u);  // lora_A and lora_B x 7 linears x 2 blocks
  EXPECT_TRUE(names.count("base_model.model.model.transformer.blocks.1.attn_out.lora_B.weight"));
  for (const auto& [n, t] : load_all(ckpt / "optimizer.safetensors")) optimizer_names.insert(n);
  EXPECT_EQ(optimizer_names.size(), 2 * names.size());  // exp_avg and exp_avg_sq, adapters only

  // --resume from checkpoint-8 continues exactly: the same losses and adapters at the end.
  const fs::path again = fresh_dir("e2e-lora-resume");
  fs::copy(dir / "out", again / "out", fs::copy_options::recursive);
  fs::remove_all(again / "out" / "final");
  fs::remove_all(again / "out" / "checkpoint-12");
  write_file(again / "cfg.toml", lora_config(base, again / "out", 12));
  auto resumed = run_trainer({"--config", (again / "cfg.toml").string(), "--plugin", kPlugin,
                              "--no-progress", "--resume", (again / "out" / "checkpoint-8").string()});
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  const auto resumed_losses = train_losses(again / "out");
  for (std::int64_t step = 9; step <= 12; ++step)
    EXPECT_DOUBLE_EQ(resumed_losses.at(step), losses.at(step)) << step;
  auto a = load_all(dir / "out" / "final" / "adapter_model.safetensors");
  auto b = load_all(again / "out" / "final" / "adapter_model.safetensors");
  for (const auto& [n, t] : a) EXPECT_TRUE(torch::equal(t, b.at(n))) << n;

  // The adapter folder samples (the base it names, with the adapter on it).
  const fs::path final_dir = dir / "out" / "final";
  auto g = run_trainer({"generate", "--checkpoint", final_dir.string(), "--prompt", "Once",
                        "--complete", "4", "--steps", "2"});
  EXPECT_EQ(g.exit_code, 0) << g.output;

  // Merged export: a full LLaDA folder scoring as base + adapter does (same Monte Carlo draws).
  const fs::path merged = dir / "merged";
  auto x = run_trainer({"export", "--checkpoint", final_dir.string(), "--merge", merged.string()});
  ASSERT_EQ(x.exit_code, 0) << x.output;
  auto merged_cfg = nlohmann::json::parse(read_file(merged / "config.json"));
  EXPECT_EQ(merged_cfg["model_type"], "llada");
  std::set<std::string> base_names, merged_names;
  for (const auto& [n, t] : load_all(base / "model.safetensors")) base_names.insert(n);
  for (const auto& [n, t] : load_all(merged / "model.safetensors")) merged_names.insert(n);
  EXPECT_EQ(merged_names, base_names);
  write_file(dir / "data.jsonl", "{\"text\": \"Ada went to the park with three red apples.\"}\n");
  const std::vector<std::string> common = {"--data", (dir / "data.jsonl").string(), "--mc-samples", "4"};
  auto with = [&](std::vector<std::string> v) {
    v.insert(v.end(), common.begin(), common.end());
    return v;
  };
  const double adapted = eval_nll(with({"eval", "--checkpoint", final_dir.string()}));
  const double folded = eval_nll(with({"eval", "--checkpoint", merged.string()}));
  const double on_base = eval_nll(with({"eval", "--checkpoint", base.string(), "--adapter", final_dir.string()}));
  const double plain = eval_nll(with({"eval", "--checkpoint", base.string(), "--plugin", kPlugin}));
  EXPECT_NEAR(folded, adapted, 1e-4 * std::abs(adapted));
  EXPECT_DOUBLE_EQ(on_base, adapted);
  EXPECT_NE(plain, adapted);  // the adapter changes the model
  // Exporting again into an existing folder is refused.
  auto twice = run_trainer({"export", "--checkpoint", final_dir.string(), "--merge", merged.string()});
  EXPECT_NE(twice.exit_code, 0);
  EXPECT_NE(twice.output.find("already exists"), std::string::npos) << twice.output;
}

// An adapter trained for another base (here: another r in the file than its config says, as a
// wider model's would differ): one error naming the file and a tensor; no merged folder.
TEST(LoraE2E, AdapterOfAnotherShapeIsRefusedAndNothingIsWritten) {
  const fs::path base = llada_folder("shape-base");
  const fs::path dir = fresh_dir("e2e-lora-shape");
  write_file(dir / "cfg.toml", lora_config(base, dir / "out", 1));
  auto r = run_trainer({"--config", (dir / "cfg.toml").string(), "--plugin", kPlugin, "--no-progress"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const fs::path final_dir = dir / "out" / "final";
  auto cfg = nlohmann::json::parse(read_file(final_dir / "adapter_config.json"));
  cfg["r"] = 2;
  write_file(final_dir / "adapter_config.json", cfg.dump(2));
  auto x = run_trainer({"export", "--checkpoint", final_dir.string(), "--merge", (dir / "merged").string()});
  EXPECT_NE(x.exit_code, 0);
  EXPECT_NE(x.output.find("adapter_model.safetensors"), std::string::npos) << x.output;
  EXPECT_NE(x.output.find("lora_A.weight"), std::string::npos) << x.output;
  EXPECT_FALSE(fs::exists(dir / "merged"));
  EXPECT_FALSE(fs::exists(dir / "merged.tmp"));
  // A target module the layout lacks stops training before anything is written.
  write_file(dir / "bad.toml", lora_config(base, dir / "bad-out", 1).replace(
                                   lora_config(base, dir / "bad-out", 1).find("\"all-linear\""), 12,
                                   "[\"q_proj\", \"o_proj\"]"));
  auto bad = run_trainer({"--config", (dir / "bad.toml").string(), "--plugin", kPlugin, "--no-progress"});
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.output.find("\"o_proj\" matches no module of this llada model"), std::string::npos) << bad.output;
  EXPECT_NE(bad.output.find("attn_out"), std::string::npos) << bad.output;
  EXPECT_FALSE(fs::exists(dir / "bad-out" / "checkpoint-1"));
}

// Data parallel: only the adapters are broadcast and summed over ranks, and 2 ranks x micro
// batch 2 train exactly as 1 rank x micro batch 2 x accumulation 2 (dropout off: its draws are
// per rank).
TEST(LoraE2E, TwoRanksTrainTheAdaptersLikeOneRankWithAccumulation) {
  if (!gloo_available()) GTEST_SKIP() << "this build has no Gloo backend";
  const fs::path base = llada_folder("dp-base");
  const fs::path dir = fresh_dir("e2e-lora-dp");
  std::string cfg = lora_config(base, dir / "unused", 4, "device = \"cpu\"\n");
  cfg.replace(cfg.find("lora_dropout = 0.05"), 19, "lora_dropout = 0.0");
  write_file(dir / "cfg.toml", cfg);
  auto run = [&](const std::string& name, std::vector<std::string> extra) {
    std::vector<std::string> args = {"--config", (dir / "cfg.toml").string(), "--plugin", kPlugin,
                                     "--no-progress", "--set", "output_dir=" + (dir / name).string(),
                                     "--set", "micro_batch_size=2"};
    args.insert(args.end(), extra.begin(), extra.end());
    auto r = run_trainer(args);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return r.exit_code == 0;
  };
  ASSERT_TRUE(run("two", {"--nproc", "2"}));
  ASSERT_TRUE(run("acc", {"--set", "gradient_accumulation_steps=2"}));
  const auto two = train_losses(dir / "two"), acc = train_losses(dir / "acc");
  ASSERT_EQ(two.size(), 4u);
  for (const auto& [step, loss] : two)
    EXPECT_NEAR(loss, acc.at(step), 1e-6 * std::abs(loss)) << step;
  auto a = load_all(dir / "two" / "final" / "adapter_model.safetensors");
  auto b = load_all(dir / "acc" / "final" / "adapter_model.safetensors");
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [n, t] : a) EXPECT_LE((t - b.at(n)).abs().max().item<double>(), 1e-6) << n;
}

// A Qwen3 base gets the diffusion plugin's mask token: trained as a row of the embeddings and
// the head saved whole (lora_modules_to_save), stored under PEFT's names, and sampled.
TEST(LoraE2E, AddedMaskTokenTrainsWithTheModulesToSave) {
  const fs::path base = fresh_dir("e2e-lora-qwen3");
  layout_test::FolderOptions opt;
  opt.vocab_rows = 258;
  opt.listed_vocab_rows = 40;
  opt.edit_config = [](nlohmann::json& c) {
    c["vocab_size"] = 258;
    c["max_position_embeddings"] = 256;
    c["eos_token_id"] = 256;
    c["pad_token_id"] = 257;
    c.erase("bos_token_id");
  };
  layout_test::write_layout_folder(base, kQwen3Config, kQwen3Tensors, opt);
  ByteTokenizer({"<|eos|>", "<|pad|>"}).save(base);
  const fs::path dir = fresh_dir("e2e-lora-qwen3-run");
  // bf16 = true on a checkpoint whose config.json says bfloat16: the frozen matrices are bf16,
  // and the samples the plugin draws while training run on them.
  write_file(dir / "cfg.toml", lora_config(base, dir / "out", 2,
                                           "lora_modules_to_save = [\"embed_tokens\", \"lm_head\"]\n"
                                           "bf16 = true\n"));
  auto r = run_trainer({"--config", (dir / "cfg.toml").string(), "--plugin", kPlugin, "--no-progress",
                        "--set", "diffusion.generate_samples=true", "--set",
                        "diffusion.generation_interval=1", "--set", "diffusion.generation_max_length=8",
                        "--set", "diffusion.generation_steps=2"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto stored = load_all(dir / "out" / "final" / "adapter_model.safetensors");
  ASSERT_TRUE(stored.count("base_model.model.model.embed_tokens.weight"));
  ASSERT_TRUE(stored.count("base_model.model.lm_head.weight"));
  EXPECT_EQ(stored["base_model.model.model.embed_tokens.weight"].size(0), 259);  // + the mask token
  EXPECT_TRUE(stored.count("base_model.model.model.layers.1.self_attn.o_proj.lora_B.weight"));
  auto cfg = nlohmann::json::parse(read_file(dir / "out" / "final" / "adapter_config.json"));
  EXPECT_EQ(cfg["modules_to_save"], nlohmann::json({"embed_tokens", "lm_head"}));
  auto g = run_trainer({"generate", "--checkpoint", (dir / "out" / "final").string(), "--prompt",
                        "Once", "--complete", "4", "--steps", "2"});
  EXPECT_EQ(g.exit_code, 0) << g.output;
  // Resuming rebuilds the base, grows it by the saved tokenizer's mask token and loads the
  // trained rows back.
  EXPECT_TRUE(fs::exists(dir / "out" / "samples.jsonl"));
  auto resumed = run_trainer({"--config", (dir / "cfg.toml").string(), "--plugin", kPlugin,
                              "--no-progress", "--set", "max_steps=3", "--resume"});
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_EQ(train_losses(dir / "out").size(), 3u);
}

}  // namespace
}  // namespace loom::test
