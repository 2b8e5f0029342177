// A checkpoint folder is a Hugging Face model folder: loading it back with base_model gives
// bit-identical fp32 logits, for untied, tied and grouped-query shapes.
#include <gtest/gtest.h>

#include "config/config_loader.hpp"
#include "errors.hpp"
#include "support/process.hpp"
#include "train/checkpoint.hpp"
#include "train/model_bundle.hpp"

namespace loom {
namespace {
namespace fs = std::filesystem;

torch::Tensor logits_of(ModelBundle& b, const torch::Tensor& ids) {
  torch::NoGradGuard no_grad;
  auto out = b.model->forward(ids, {}, {}, sdk::AttentionSpec::causal());
  return out.project(out.hidden);
}

void round_trip(const std::string& model_table, const std::string& name) {
  auto dir = test::fresh_dir("hf-" + name);
  PluginSet none;
  auto cfg = parse_train_config("seed = 11\nsequence_len = 16\n[model]\n" + model_table, "c.toml");
  ModelBundle a = build_model_bundle(cfg, "", none);
  write_checkpoint(dir / "export", a, nullptr, {}, cfg.resolved_toml, {});
  for (const char* f : {"model.safetensors", "config.json", "tokenizer.json"})
    ASSERT_TRUE(fs::exists(dir / "export" / f)) << f;
  auto cfg2 = parse_train_config("base_model = \"" + (dir / "export").string() + "\"\nsequence_len = 16\n", "c2.toml");
  ModelBundle b = build_model_bundle(cfg2, "", none);
  auto ids = torch::randint(0, 250, {2, 16}, torch::kLong);
  EXPECT_TRUE(torch::equal(logits_of(a, ids), logits_of(b, ids))) << name;
  EXPECT_EQ(b.model->model()->config().num_key_value_heads, a.model->model()->config().num_key_value_heads);
  EXPECT_EQ(b.tokenizer->vocab_size(), a.tokenizer->vocab_size());
}

TEST(HfRoundTrip, UntiedModelReloadsBitForBit) {
  round_trip("hidden_size = 32\nintermediate_size = 48\nnum_hidden_layers = 2\nnum_attention_heads = 4\n"
             "num_key_value_heads = 4\nmax_position_embeddings = 64\n", "untied");
}

TEST(HfRoundTrip, TiedGqaModelReloadsBitForBit) {
  round_trip("hidden_size = 32\nintermediate_size = 48\nnum_hidden_layers = 2\nnum_attention_heads = 4\n"
             "num_key_value_heads = 2\nmax_position_embeddings = 64\ntie_word_embeddings = true\n", "tied-gqa");
}

TEST(HfRoundTrip, BaseModelProblemsAreClearErrors) {
  auto dir = test::fresh_dir("hf-bad");
  PluginSet none;
  auto error_of = [&](const fs::path& folder) {
    try {
      auto cfg = parse_train_config("base_model = \"" + folder.string() + "\"\nsequence_len = 16\n", "c.toml");
      build_model_bundle(cfg, "", none);
    } catch (const UserError& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  // A folder with only pickle weights: safetensors is required, nothing is unpickled.
  test::write_file(dir / "bin" / "config.json",
                   R"({"model_type":"llama","hidden_size":32,"intermediate_size":48,"num_hidden_layers":1,)"
                   R"("num_attention_heads":4,"vocab_size":50257,"max_position_embeddings":64})");
  test::write_file(dir / "bin" / "pytorch_model.bin", "not really a pickle");
  fs::copy(fs::path(LOOM_SHARED_DIR) / "data" / "tokenizers" / "gpt2" / "tokenizer.json", dir / "bin" / "tokenizer.json");
  EXPECT_NE(error_of(dir / "bin").find("safetensors"), std::string::npos) << error_of(dir / "bin");
  // No config.json.
  fs::create_directories(dir / "empty");
  fs::copy(dir / "bin" / "tokenizer.json", dir / "empty" / "tokenizer.json");
  EXPECT_NE(error_of(dir / "empty").find("config.json"), std::string::npos) << error_of(dir / "empty");
  // Not a Llama.
  test::write_file(dir / "gpt" / "config.json", R"({"model_type":"gpt2","n_embd":32})");
  fs::copy(dir / "bin" / "tokenizer.json", dir / "gpt" / "tokenizer.json");
  EXPECT_NE(error_of(dir / "gpt").find("gpt2"), std::string::npos) << error_of(dir / "gpt");
}

}  // namespace
}  // namespace loom
