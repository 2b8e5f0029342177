#include "config/config_loader.hpp"

#include <gtest/gtest.h>

#include "errors.hpp"

namespace loom {
namespace {

std::string error_of(const std::string& toml, const std::vector<std::string>& overrides = {}) {
  try {
    parse_train_config(toml, "cfg.toml", overrides);
  } catch (const UserError& e) {
    return e.what();
  }
  return "";
}

TEST(ConfigLoader, ReadsAxolotlNamedKeysAndTables) {
  auto c = parse_train_config(R"(
base_model = ""
output_dir = "out/x"
seed = 7
plugins = ["diffusion"]
sequence_len = 64
sample_packing = false
val_set_size = 0.1
micro_batch_size = 2
gradient_accumulation_steps = 3
learning_rate = 1e-3
lr_scheduler = "linear"
warmup_ratio = 0.1
num_epochs = 2
weight_decay = 0.01
max_grad_norm = 0.5
bf16 = true
special_tokens = { pad_token = "<pad>" }
[model]
hidden_size = 64
num_attention_heads = 4
num_key_value_heads = 2
[tokenizer]
path = "tok.json"
[[datasets]]
path = "a.jsonl"
type = "alpaca"
[diffusion]
eps = 0.001
noise_schedule = "cosine"
)",
                              "cfg.toml");
  EXPECT_EQ(c.output_dir, "out/x");
  EXPECT_EQ(c.seed, 7u);
  EXPECT_EQ(c.plugins, std::vector<std::string>{"diffusion"});
  EXPECT_EQ(c.sequence_len, 64);
  EXPECT_FALSE(c.sample_packing);
  EXPECT_EQ(c.gradient_accumulation_steps, 3);
  EXPECT_DOUBLE_EQ(c.learning_rate, 1e-3);
  EXPECT_EQ(c.lr_scheduler, "linear");
  EXPECT_DOUBLE_EQ(c.num_epochs, 2.0);
  EXPECT_TRUE(c.bf16);
  EXPECT_EQ(c.special_tokens.at("pad_token"), "<pad>");
  EXPECT_EQ(c.model.hidden_size, 64);
  EXPECT_EQ(c.model.num_key_value_heads, 2);
  EXPECT_EQ(c.tokenizer.path, "tok.json");
  ASSERT_EQ(c.datasets.size(), 1u);
  EXPECT_EQ(c.datasets[0].type, "alpaca");
  ASSERT_EQ(c.plugin_tables.count("diffusion"), 1u);
  EXPECT_DOUBLE_EQ(std::get<double>(c.plugin_tables["diffusion"]["eps"]), 0.001);
}

TEST(ConfigLoader, SyntaxErrorGivesLineAndColumn) {
  auto msg = error_of("seed = 1\nlearning_rate = = 3\n");
  EXPECT_NE(msg.find("cfg.toml:2:"), std::string::npos) << msg;
  EXPECT_NE(msg.find("not valid TOML"), std::string::npos) << msg;
}

// A bad value given with --set is reported as that argument, not as a place in the file.
TEST(ConfigLoader, SetErrorsNameTheSetArgument) {
  auto msg = error_of("seed = 1\nmicro_batch_size = 2\n", {"micro_batch_size=0"});
  EXPECT_EQ(msg.rfind("--set micro_batch_size=0: micro_batch_size must be >= 1", 0), 0u) << msg;
  msg = error_of("seed = 1\n", {"micro_batch_size=eight"});
  EXPECT_EQ(msg.rfind("--set micro_batch_size=eight: micro_batch_size must be an integer", 0), 0u) << msg;
  msg = error_of("seed = 1\n", {"learning_rat=0.1"});
  EXPECT_EQ(msg.rfind("--set learning_rat=0.1: unknown key 'learning_rat'", 0), 0u) << msg;
  // Values from the file still point into the file.
  EXPECT_EQ(error_of("seed = 1\nmicro_batch_size = 0\n").rfind("cfg.toml:2:", 0), 0u);
}

TEST(ConfigLoader, UnknownKeySuggestsTheClosest) {
  auto msg = error_of("learning_rat = 0.1\n");
  EXPECT_NE(msg.find("unknown key 'learning_rat'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("did you mean 'learning_rate'"), std::string::npos) << msg;
  msg = error_of("[model]\nhiden_size = 3\n");
  EXPECT_NE(msg.find("did you mean 'model.hidden_size'"), std::string::npos) << msg;
}

TEST(ConfigLoader, WrongTypeAndRangeNameTheKey) {
  EXPECT_NE(error_of("micro_batch_size = \"eight\"\n").find("micro_batch_size must be an integer"),
            std::string::npos);
  EXPECT_NE(error_of("micro_batch_size = 0\n").find("micro_batch_size must be >= 1"), std::string::npos);
  EXPECT_NE(error_of("sequence_len = 4\n").find("sequence_len"), std::string::npos);
  EXPECT_NE(error_of("lr_scheduler = \"exp\"\n").find("must be one of: cosine, linear, constant"),
            std::string::npos);
  EXPECT_NE(error_of("[model]\nhidden_size = 30\nnum_attention_heads = 4\n").find("divisible"),
            std::string::npos);
  EXPECT_NE(error_of("max_steps = 5\nnum_epochs = 1\n").find("not both"), std::string::npos);
}

TEST(ConfigLoader, SetOverridesReachTablesAndParseTomlValues) {
  auto c = parse_train_config("seed = 1\n[model]\nhidden_size = 64\n", "cfg.toml",
                              {"seed=9", "model.hidden_size=128", "output_dir=runs/a",
                               "diffusion.eps=0.01", "bf16=true"});
  EXPECT_EQ(c.seed, 9u);
  EXPECT_EQ(c.model.hidden_size, 128);
  EXPECT_EQ(c.output_dir, "runs/a");
  EXPECT_TRUE(c.bf16);
  EXPECT_DOUBLE_EQ(std::get<double>(c.plugin_tables["diffusion"]["eps"]), 0.01);
  EXPECT_NE(error_of("", {"novalue"}).find("expected key=value"), std::string::npos);
}

TEST(ConfigLoader, PluginSectionIsValidatedAgainstItsSchema) {
  std::vector<sdk::ConfigKey> schema = {
      sdk::key_float("eps", 1e-3, "minimum masking probability", 0.0, 1.0),
      sdk::key_string("noise_schedule", std::string("linear"), "schedule", {"linear", "cosine"}),
      sdk::key_int("steps", 128, "steps", 1.0),
      sdk::key_int("mask_token_id", std::nullopt, "mask id", 0.0)};
  auto s = validate_plugin_section("diffusion", schema, {{"steps", std::int64_t(4)}}, "cfg.toml");
  EXPECT_DOUBLE_EQ(s.get_float("eps"), 1e-3);
  EXPECT_EQ(s.get_string("noise_schedule"), "linear");
  EXPECT_EQ(s.get_int("steps"), 4);
  EXPECT_FALSE(s.has("mask_token_id"));
  // An integer where a float is declared is widened.
  EXPECT_DOUBLE_EQ(validate_plugin_section("d", schema, {{"eps", std::int64_t(0)}}, "c").get_float("eps"), 0.0);
  auto err = [&](std::map<std::string, sdk::ConfigValue> given) {
    try {
      validate_plugin_section("diffusion", schema, given, "cfg.toml");
    } catch (const UserError& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(err({{"epz", 0.1}}).find("did you mean 'diffusion.eps'"), std::string::npos);
  EXPECT_NE(err({{"eps", 2.0}}).find("diffusion.eps = 2 is out of range"), std::string::npos);
  EXPECT_NE(err({{"steps", 0.5}}).find("diffusion.steps must be of type int"), std::string::npos);
  EXPECT_NE(err({{"noise_schedule", std::string("exp")}}).find("must be one of"), std::string::npos);
}

TEST(ConfigLoader, EmbeddedDefaultParses) {
  auto c = parse_train_config(embedded_default_config(), "<built-in>");
  EXPECT_FALSE(c.datasets.empty());
  EXPECT_GT(c.max_steps, 0);
}

}  // namespace
}  // namespace loom
