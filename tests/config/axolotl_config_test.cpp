// Axolotl YAML configs: each key lands on loom's key (values by hand from the YAML), the
// diffusion keys in their three spellings, and bad input (malformed YAML with the line and
// column PyYAML also reports, wrong types, unknown plugin paths, unsupported keys).
#include "config/axolotl_config.hpp"

#include <gtest/gtest.h>

#include <filesystem>

#include "config/config_loader.hpp"
#include "errors.hpp"
#include "support/files.hpp"

namespace loom {
namespace {
namespace fs = std::filesystem;

// Loads `yaml` from <scratch>/cfg.yml as `trainer --config cfg.yml` does.
class AxolotlConfig : public ::testing::Test {
 protected:
  TrainConfig load(const std::string& yaml, const std::vector<std::string>& overrides = {}) {
    test::write_file(file(), yaml);
    return load_train_config(file(), overrides);
  }
  // The error's text, with the scratch folder cut from the file name ("cfg.yml:3:3: ...").
  std::string error_of(const std::string& yaml) {
    try {
      load(yaml);
    } catch (const UserError& e) {
      std::string msg = e.what();
      const std::string dir = scratch_.path().string() + "/";
      for (std::size_t at; (at = msg.find(dir)) != std::string::npos;) msg.erase(at, dir.size());
      return msg;
    }
    return "";
  }
  fs::path file() const { return scratch_ / "cfg.yml"; }

  test::ScratchDir scratch_;
};

TEST_F(AxolotlConfig, MapsAxolotlKeysOntoLoomKeys) {
  const TrainConfig c = load(R"(base_model: models/tiny
output_dir: ./out
seed: 7
plugins:
  - axolotl.integrations.diffusion.DiffusionPlugin
datasets:
  - path: a.jsonl
    type: alpaca
  - path: b.jsonl
    type: completion
    field: body
sequence_len: 64
sample_packing: false
val_set_size: 0.1
micro_batch_size: 2
gradient_accumulation_steps: 3
learning_rate: 1e-3
lr_scheduler: linear
warmup_ratio: 0.1
num_epochs: 2
optimizer: adamw_torch_fused
weight_decay: 0.01
max_grad_norm: 0.5
bf16: true
gradient_checkpointing: true
logging_steps: 5
eval_steps: 50
save_steps: 100
save_total_limit: 3
adam_beta2: 0.95
adam_epsilon: 1e-6
special_tokens:
  pad_token: "<pad>"
ddp_timeout: 600
tokenizer_config: tok.json
)");
  EXPECT_EQ(c.base_model, "models/tiny");
  EXPECT_EQ(c.output_dir, "./out");
  EXPECT_EQ(c.seed, 7u);
  EXPECT_EQ(c.plugins, std::vector<std::string>{"diffusion"});
  ASSERT_EQ(c.datasets.size(), 2u);
  EXPECT_EQ(c.datasets[0].path, "a.jsonl");
  EXPECT_EQ(c.datasets[0].type, "alpaca");
  EXPECT_EQ(c.datasets[1].type, "completion");
  EXPECT_EQ(c.datasets[1].field, "body");
  EXPECT_EQ(c.sequence_len, 64);
  EXPECT_FALSE(c.sample_packing);
  EXPECT_DOUBLE_EQ(c.val_set_size, 0.1);
  EXPECT_EQ(c.micro_batch_size, 2);
  EXPECT_EQ(c.gradient_accumulation_steps, 3);
  EXPECT_DOUBLE_EQ(c.learning_rate, 1e-3);
  EXPECT_EQ(c.lr_scheduler, "linear");
  EXPECT_DOUBLE_EQ(c.warmup_ratio, 0.1);
  EXPECT_DOUBLE_EQ(c.num_epochs, 2.0);
  EXPECT_EQ(c.max_steps, -1);
  EXPECT_EQ(c.optimizer, "adamw");
  EXPECT_DOUBLE_EQ(c.weight_decay, 0.01);
  EXPECT_DOUBLE_EQ(c.max_grad_norm, 0.5);
  EXPECT_TRUE(c.bf16);
  EXPECT_TRUE(c.gradient_checkpointing);
  EXPECT_EQ(c.logging_steps, 5);
  EXPECT_EQ(c.eval_steps, 50);
  EXPECT_EQ(c.save_steps, 100);
  EXPECT_EQ(c.save_total_limit, 3);
  EXPECT_DOUBLE_EQ(c.adam_beta2, 0.95);
  EXPECT_DOUBLE_EQ(c.adam_epsilon, 1e-6);
  EXPECT_EQ(c.special_tokens.at("pad_token"), "<pad>");
  EXPECT_DOUBLE_EQ(c.distributed_timeout_s, 600.0);
  EXPECT_EQ(c.tokenizer.path, "tok.json");
}

// Axolotl's diffusion keys were bare top-level keys, then diffusion_<key>, now a `diffusion:`
// block; each spelling gives the same [diffusion] table.
TEST_F(AxolotlConfig, DiffusionKeysInEachSpellingGiveTheSameTable) {
  const std::string plugin = "plugins:\n  - axolotl.integrations.diffusion.DiffusionPlugin\n";
  for (const std::string& keys :
       {std::string("diffusion:\n  noise_schedule: cosine\n  eps: 5e-4\n  mask_token_id: 7\n"
                    "  generate_samples: false\n"),
        std::string("diffusion_noise_schedule: cosine\ndiffusion_eps: 5e-4\n"
                    "diffusion_mask_token_id: 7\ndiffusion_generate_samples: false\n"),
        std::string("noise_schedule: cosine\neps: 5e-4\nmask_token_id: 7\ngenerate_samples: false\n")}) {
    SCOPED_TRACE(keys);
    const TrainConfig c = load(plugin + keys);
    const auto& t = c.plugin_tables.at("diffusion");
    ASSERT_EQ(t.size(), 4u);
    EXPECT_EQ(std::get<std::string>(t.at("noise_schedule")), "cosine");
    EXPECT_DOUBLE_EQ(std::get<double>(t.at("eps")), 5e-4);
    EXPECT_EQ(std::get<std::int64_t>(t.at("mask_token_id")), 7);
    EXPECT_FALSE(std::get<bool>(t.at("generate_samples")));
    EXPECT_EQ(c.plugins, std::vector<std::string>{"diffusion"});
  }
  // The short plugin path of Axolotl's SFT example is the same plugin.
  EXPECT_EQ(load("plugins:\n  - diffusion.DiffusionPlugin\n").plugins,
            std::vector<std::string>{"diffusion"});
}

TEST_F(AxolotlConfig, DiffusionKeyGivenTwiceIsAnError) {
  EXPECT_EQ(error_of("eps: 1e-3\ndiffusion:\n  eps: 2e-3\n"),
            "cfg.yml: loom cannot run this Axolotl config as written; these keys change what is "
            "trained and loom does not support them:\n"
            "  cfg.yml:3:8: diffusion.eps: diffusion.eps given twice (also at cfg.yml:1:6)");
}

// Golden locations: PyYAML reports the same line and column for each of these.
TEST_F(AxolotlConfig, MalformedYamlNamesLineAndColumn) {
  EXPECT_EQ(error_of("seed: 1\nplugins: [a, b\nlr: 2\n"),
            "cfg.yml:3:3: not valid YAML: end of sequence flow not found");
  EXPECT_EQ(error_of("seed: 1\ndatasets:\n  - path: a\n   type: b\n"),
            "cfg.yml:4:4: not valid YAML: end of sequence not found");
  EXPECT_EQ(error_of("seed: 1\n  bad: 2\n"), "cfg.yml:2:6: not valid YAML: illegal map value");
  EXPECT_EQ(error_of("- a\n- b\n"), "cfg.yml:1:1: an Axolotl config must be a mapping of keys to values");
  EXPECT_EQ(error_of("? [a, b]\n: 3\n"),
            "cfg.yml: loom cannot run this Axolotl config as written; these keys change what is "
            "trained and loom does not support them:\n"
            "  cfg.yml:1:3: (a list or mapping used as a key): a key must be a name");
  // yaml-cpp 0.8 (Debian 13) appends the anchor's name to its message: the location and the
  // reason are what must be there.
  const std::string anchor = error_of("seed: *nope\n");
  EXPECT_EQ(anchor.rfind("cfg.yml:1:7: not valid YAML: the referenced anchor is not defined", 0), 0u)
      << anchor;
  // Found by tests/fuzz/fuzz_axolotl_config.cpp: bytes that are not UTF-8, and keys TOML cannot
  // write bare, used to make a translation that was not valid TOML.
  EXPECT_EQ(error_of("base_model: a\xff\n"), "cfg.yml:1:13: base_model: not valid UTF-8");
  EXPECT_EQ(error_of("model:\n  \"a b\": 3\n"), "cfg.yml:2:10: unknown key 'model.a b'");
  EXPECT_EQ(error_of("model: tiny\nmodel:\n  hidden_size: 64\n"),
            "cfg.yml:1:8: model given twice (as a value and as a table or list)");
}

// The TOML validation's messages point at the YAML value ("micro_batch_size: " is 18
// characters, so the value starts in column 19).
TEST_F(AxolotlConfig, WrongTypeOrRangeNamesTheKeyAndItsYamlLine) {
  EXPECT_EQ(error_of("seed: 1\nmicro_batch_size: four\n"),
            "cfg.yml:2:19: micro_batch_size must be an integer");
  EXPECT_EQ(error_of("seed: 1\nlearning_rate: [1e-3]\n"), "cfg.yml:2:16: learning_rate must be a number");
  EXPECT_EQ(error_of("sample_packing: \"yes\"\n"), "cfg.yml:1:17: sample_packing must be true or false");
  EXPECT_EQ(error_of("seed: 3\nwarmup_ratio: 1.5\n"), "cfg.yml:2:15: warmup_ratio must be >= 0 and <= 1");
  EXPECT_EQ(error_of("datasets:\n  - path: a.jsonl\n    field: 3\n"), "cfg.yml:3:12: datasets.field must be a string");
  EXPECT_EQ(error_of("model:\n  hidden_size: 1.5\n"), "cfg.yml:2:16: model.hidden_size must be an integer");
  // Diffusion keys are checked against the plugin's schema when it is loaded; where they came
  // from is kept for that message.
  const TrainConfig c = load("plugins:\n  - diffusion.DiffusionPlugin\ndiffusion:\n  eps: high\n");
  EXPECT_EQ(c.plugin_key_sources.at("diffusion").at("eps"), file().string() + ":4:8");
}

TEST_F(AxolotlConfig, UnknownPluginPathIsAnErrorNamingIt) {
  const std::string msg = error_of("plugins:\n  - axolotl.integrations.liger.LigerPlugin\n");
  EXPECT_NE(msg.find("cfg.yml:2:5: plugins: unknown plugin path 'axolotl.integrations.liger.LigerPlugin'"),
            std::string::npos)
      << msg;
  // loom plugin names and library paths pass through as loom reads them.
  EXPECT_EQ(load("plugins:\n  - ema\n  - ./libx.so\n").plugins,
            (std::vector<std::string>{"ema", "./libx.so"}));
}

// Every unsupported key that changes what is trained, in one message, each with its line.
TEST_F(AxolotlConfig, TrainingChangingKeysAreListedInOneError) {
  const std::string msg = error_of(R"(load_in_8bit: true
lora_model_dir: ./lora-out
peft_use_dora: true
deepspeed: zero3.json
optimizer: adamw_8bit
datasets:
  - path: chats.jsonl
    type: chat_template
wandb_project: mine
learnin_rate: 1e-3
)");
  EXPECT_EQ(msg,
            "cfg.yml: loom cannot run this Axolotl config as written; these keys change what is "
            "trained and loom does not support them:\n"
            "  cfg.yml:1:15: load_in_8bit: 8-bit quantised base weights\n"
            "  cfg.yml:2:17: lora_model_dir: adapter training from a saved adapter (give the "
            "adapter folder to trainer generate/eval --adapter)\n"
            "  cfg.yml:3:16: peft_use_dora: adapter training\n"
            "  cfg.yml:4:12: deepspeed: DeepSpeed sharding (loom is data-parallel: --nproc or torchrun)\n"
            "  cfg.yml:5:12: optimizer: optimizer 'adamw_8bit' is not supported (loom: adamw_torch, "
            "adamw_torch_fused)\n"
            "  cfg.yml:8:11: datasets.type: dataset type 'chat_template' is not supported (loom "
            "reads completion, alpaca, prompt_response)\n"
            "  cfg.yml:10:15: learnin_rate: not a key loom knows (did you mean 'learning_rate'?)\n"
            "(also ignored, Python tooling only: wandb_project (line 9, Weights & Biases))");
}

// adapter: lora and the lora_* keys are loom's; lora_target_linear: true is "all-linear".
TEST_F(AxolotlConfig, LoraKeysMapOntoLoomsAndAreValidatedThere) {
  test::write_file(file(), "base_model: m\nadapter: lora\nlora_r: 16\nlora_alpha: 32\nlora_dropout: 0.05\n"
                           "lora_target_linear: true\nlora_modules_to_save:\n  - embed_tokens\n");
  const TrainConfig c = load_train_config(file());
  EXPECT_TRUE(c.lora.enabled);
  EXPECT_EQ(c.lora.r, 16);
  EXPECT_DOUBLE_EQ(c.lora.alpha, 32.0);
  EXPECT_DOUBLE_EQ(c.lora.dropout, 0.05);
  EXPECT_EQ(c.lora.target_modules, (std::vector<std::string>{"all-linear"}));
  EXPECT_EQ(c.lora.modules_to_save, (std::vector<std::string>{"embed_tokens"}));
  test::write_file(file(), "base_model: m\nadapter: lora\nlora_target_modules:\n  - q_proj\n  - v_proj\n"
                           "lora_target_linear: false\n");
  EXPECT_EQ(load_train_config(file()).lora.target_modules, (std::vector<std::string>{"q_proj", "v_proj"}));
  EXPECT_NE(error_of("adapter: qlora\nlora_target_linear: true\n").find("cfg.yml:1:10: adapter must be \"lora\""),
            std::string::npos)
      << error_of("adapter: qlora\nlora_target_linear: true\n");
  EXPECT_NE(error_of("lora_r: 0\nadapter: lora\nlora_target_linear: true\n").find("cfg.yml:1:9: lora_r must be"),
            std::string::npos);
}

// Axolotl's examples leave unused keys empty or false: that is accepted silently.
TEST_F(AxolotlConfig, UnsetKeysAreAccepted) {
  test::write_file(file(), "load_in_8bit: false\nload_in_4bit: false\nadapter:\ndeepspeed:\nfsdp:\n"
                           "fsdp_config:\nwandb_project:\nfp16:\nresume_from_checkpoint:\n"
                           "train_on_inputs: false\nstrict: false\nseed: 5\n");
  const AxolotlTranslation t = translate_axolotl_yaml(test::read_file(file()), "cfg.yml");
  EXPECT_EQ(t.warning, "");
  EXPECT_EQ(load_train_config(file()).seed, 5u);
}

TEST_F(AxolotlConfig, ToolingKeysAreOneWarningAndIgnored) {
  const std::string yaml =
      "seed: 5\nwandb_project: mine\nhub_model_id: me/model\nstrict: true\ntf32: true\n"
      "report_to: [wandb, tensorboard]\n";
  const AxolotlTranslation t = translate_axolotl_yaml(yaml, "cfg.yml");
  EXPECT_EQ(t.warning,
            "cfg.yml: ignored (they only concern Axolotl's Python tooling): wandb_project (line 2, "
            "Weights & Biases), hub_model_id (line 3, Hugging Face Hub upload), strict (line 4, "
            "config strictness), tf32 (line 5, PyTorch's TF32 matmul switch), report_to: wandb "
            "(line 6, a Python logging integration)");
  const TrainConfig c = load(yaml);
  EXPECT_EQ(c.seed, 5u);
  EXPECT_EQ(c.report_to, std::vector<std::string>{"tensorboard"});
  EXPECT_EQ(load("use_tensorboard: true\n").report_to, std::vector<std::string>{"tensorboard"});
}

TEST_F(AxolotlConfig, ValuesReadAsTransformersReadsThem) {
  // max_steps > 0 wins over num_epochs (transformers); loom takes one of them.
  TrainConfig c = load("num_epochs: 3\nmax_steps: 40\n");
  EXPECT_EQ(c.max_steps, 40);
  EXPECT_DOUBLE_EQ(c.num_epochs, 1.0);  // loom's default, unused with max_steps
  // bf16: auto is fp32 where there is no bf16 GPU; loom's bf16 is explicit.
  EXPECT_FALSE(load("bf16: auto\n").bf16);
  EXPECT_NE(translate_axolotl_yaml("bf16: auto\n", "cfg.yml").warning.find("bf16: auto is read as bf16 = false"),
            std::string::npos);
  EXPECT_EQ(load("lr_scheduler: constant_with_warmup\nwarmup_steps: 10\n").lr_scheduler, "constant");
  EXPECT_EQ(load("lr_scheduler: constant\n").lr_scheduler, "constant");
  // A float below 1 is a share of the steps to transformers: refused, not read as 0 steps.
  EXPECT_NE(error_of("eval_steps: 0.25\n").find("cfg.yml:1:13: eval_steps: a share of the run's steps"),
            std::string::npos);
  EXPECT_EQ(error_of("lr_scheduler: constant\nwarmup_steps: 10\n"),
            "cfg.yml:1:15: lr_scheduler: constant in transformers has no warmup, but a warmup is "
            "given; write constant_with_warmup (loom's constant) or drop the warmup");
  // pretraining_dataset: one mapping or a list; text_column is the text field.
  c = load("pretraining_dataset:\n  path: corpus.jsonl\n  type: completion\n  text_column: body\n");
  ASSERT_EQ(c.datasets.size(), 1u);
  EXPECT_EQ(c.datasets[0].path, "corpus.jsonl");
  EXPECT_EQ(c.datasets[0].field, "body");
  // A quoted scalar stays a string; 5e-4 unquoted is a float (as Axolotl's pydantic reads it).
  c = load("special_tokens:\n  pad_token: \"123\"\nlearning_rate: 5e-4\n");
  EXPECT_EQ(c.special_tokens.at("pad_token"), "123");
  EXPECT_DOUBLE_EQ(c.learning_rate, 5e-4);
}

// special_tokens is an inline table of the host's, not a plugin's table (a TOML config with it
// used to fail `trainer check`: "table [special_tokens] belongs to no loaded plugin").
TEST_F(AxolotlConfig, SpecialTokensIsNoPluginTable) {
  const TrainConfig c = parse_train_config("special_tokens = { pad_token = \"<pad>\" }\n", "c.toml");
  EXPECT_EQ(c.special_tokens.at("pad_token"), "<pad>");
  EXPECT_TRUE(c.plugin_tables.empty());
}

// The TOML that convert-config prints is the same config: same resolved TOML as the YAML.
TEST_F(AxolotlConfig, ConvertedTomlResolvesLikeTheYaml) {
  for (const char* name : {"diffusion-readme.yml", "llama-3.2-1b-diffusion-pretrain.yml",
                           "instruct-alpaca.yml"}) {
    SCOPED_TRACE(name);
    const fs::path yml = fs::path(LOOM_SOURCE_DIR) / "configs/axolotl" / name;
    const TrainConfig from_yaml = load_train_config(yml);
    const AxolotlTranslation t = translate_axolotl_yaml(test::read_file(yml), yml.string());
    const TrainConfig from_toml = parse_train_config(t.toml, "converted.toml");
    EXPECT_EQ(from_yaml.resolved_toml, from_toml.resolved_toml);
    EXPECT_FALSE(from_yaml.datasets.empty());
  }
}

TEST_F(AxolotlConfig, ExamplesMapAsTheirCommentsSay) {
  const fs::path dir = fs::path(LOOM_SOURCE_DIR) / "configs/axolotl";
  const TrainConfig pre = load_train_config(dir / "llama-3.2-1b-diffusion-pretrain.yml");
  EXPECT_EQ(pre.base_model, "models/Llama-3.2-1B");
  EXPECT_EQ(pre.max_steps, 10000);
  EXPECT_EQ(pre.gradient_accumulation_steps, 8);
  EXPECT_FALSE(pre.bf16);  // bf16: auto
  EXPECT_EQ(pre.special_tokens.at("pad_token"), "<|end_of_text|>");
  const auto& d = pre.plugin_tables.at("diffusion");
  EXPECT_EQ(std::get<std::int64_t>(d.at("mask_token_id")), 128002);
  EXPECT_DOUBLE_EQ(std::get<double>(d.at("eps")), 5e-4);
  EXPECT_EQ(std::get<std::int64_t>(d.at("generation_interval")), 10);

  const TrainConfig sft = load_train_config(dir / "instruct-alpaca.yml");
  EXPECT_TRUE(sft.plugins.empty());
  EXPECT_EQ(sft.datasets.at(0).type, "alpaca");
  EXPECT_DOUBLE_EQ(sft.num_epochs, 20.0);
  EXPECT_DOUBLE_EQ(sft.warmup_ratio, 0.1);
  EXPECT_EQ(sft.model.hidden_size, 64);
}

}  // namespace
}  // namespace loom
