// read_hf_config / write_hf_config against transformers' LlamaConfig files.
#include "io/hf_config.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "errors.hpp"
#include "support/files.hpp"

namespace loom {
namespace {

// meta-llama/Llama-3.2-1B's config.json as published.
const char* kLlama32Config = R"({
  "architectures": ["LlamaForCausalLM"],
  "attention_bias": false,
  "attention_dropout": 0.0,
  "bos_token_id": 128000,
  "eos_token_id": 128001,
  "head_dim": 64,
  "hidden_act": "silu",
  "hidden_size": 2048,
  "initializer_range": 0.02,
  "intermediate_size": 8192,
  "max_position_embeddings": 131072,
  "mlp_bias": false,
  "model_type": "llama",
  "num_attention_heads": 32,
  "num_hidden_layers": 16,
  "num_key_value_heads": 8,
  "pretraining_tp": 1,
  "rms_norm_eps": 1e-05,
  "rope_scaling": {
    "factor": 32.0,
    "high_freq_factor": 4.0,
    "low_freq_factor": 1.0,
    "original_max_position_embeddings": 8192,
    "rope_type": "llama3"
  },
  "rope_theta": 500000.0,
  "tie_word_embeddings": true,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.45.0.dev0",
  "use_cache": true,
  "vocab_size": 128256
})";

const char* kMinimal = R"({"model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
  "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 100})";

class HfConfig : public ::testing::Test {
 protected:
  // config.json from kMinimal with `patch` merged in (null values delete keys).
  std::filesystem::path write_config(const nlohmann::json& patch) {
    nlohmann::json config = nlohmann::json::parse(kMinimal);
    config.merge_patch(patch);
    test::write_file(dir_ / "config.json", config.dump());
    return dir_ / "config.json";
  }
  std::string error_for(const nlohmann::json& patch) {
    try {
      read_hf_config(write_config(patch));
    } catch (const UserError& e) {
      return e.what();
    }
    return "";
  }
  test::ScratchDir dir_;
};

TEST_F(HfConfig, ReadsLlama32OneB) {
  test::write_file(dir_ / "config.json", kLlama32Config);
  const ModelConfig config = read_hf_config(dir_ / "config.json");
  EXPECT_EQ(config.hidden_size, 2048);
  EXPECT_EQ(config.intermediate_size, 8192);
  EXPECT_EQ(config.num_hidden_layers, 16);
  EXPECT_EQ(config.num_attention_heads, 32);
  EXPECT_EQ(config.num_key_value_heads, 8);
  EXPECT_EQ(config.head_dim(), 64);
  EXPECT_EQ(config.vocab_size, 128256);
  EXPECT_EQ(config.max_position_embeddings, 131072);
  EXPECT_EQ(config.rope_theta, 500000.0);
  EXPECT_EQ(config.rms_norm_eps, 1e-5);
  EXPECT_TRUE(config.tie_word_embeddings);
  EXPECT_EQ(config.torch_dtype, "bfloat16");
  EXPECT_EQ(config.bos_token_id, 128000);
  EXPECT_EQ(config.eos_token_id, 128001);
  EXPECT_EQ(config.pad_token_id, std::nullopt);
  EXPECT_EQ(config.initializer_range, 0.02);
  EXPECT_EQ(config.rope_scaling.kind, "llama3");
  EXPECT_EQ(config.rope_scaling.factor, 32.0);
  EXPECT_EQ(config.rope_scaling.low_freq_factor, 1.0);
  EXPECT_EQ(config.rope_scaling.high_freq_factor, 4.0);
  EXPECT_EQ(config.rope_scaling.original_max_position_embeddings, 8192);
  // A folder works too.
  EXPECT_EQ(read_hf_config(dir_.path()).hidden_size, 2048);
}

TEST_F(HfConfig, DefaultsAreLlamaConfigs) {
  const ModelConfig config = read_hf_config(write_config(nlohmann::json::object()));
  EXPECT_EQ(config.num_key_value_heads, 4);  // = num_attention_heads
  EXPECT_EQ(config.rope_theta, 10000.0);
  EXPECT_EQ(config.rms_norm_eps, 1e-6);
  EXPECT_EQ(config.max_position_embeddings, 2048);
  EXPECT_FALSE(config.tie_word_embeddings);
  EXPECT_EQ(config.rope_scaling.kind, "none");
  EXPECT_EQ(config.torch_dtype, "float32");
  EXPECT_EQ(config.bos_token_id, 1);
  EXPECT_EQ(config.eos_token_id, 2);
  EXPECT_EQ(config.pad_token_id, std::nullopt);
}

TEST_F(HfConfig, TokenIds) {
  // Chat models list several eos ids; the first is taken. null means none.
  const ModelConfig config =
      read_hf_config(write_config({{"eos_token_id", {128001, 128008, 128009}},
                                   {"bos_token_id", nullptr},
                                   {"pad_token_id", 0}}));
  EXPECT_EQ(config.eos_token_id, 128001);
  EXPECT_EQ(config.pad_token_id, 0);
  // merge_patch deletes keys set to null, so write a literal null.
  test::write_file(dir_ / "config.json",
                   std::string(kMinimal).replace(1, 0, R"("bos_token_id": null, )"));
  EXPECT_EQ(read_hf_config(dir_ / "config.json").bos_token_id, std::nullopt);
}

TEST_F(HfConfig, RopeScalingForms) {
  ModelConfig config =
      read_hf_config(write_config({{"rope_scaling", {{"type", "linear"}, {"factor", 2}}}}));
  EXPECT_EQ(config.rope_scaling.kind, "linear");
  EXPECT_EQ(config.rope_scaling.factor, 2.0);
  config = read_hf_config(write_config({{"rope_scaling", {{"rope_type", "default"}}}}));
  EXPECT_EQ(config.rope_scaling.kind, "none");
  // transformers 5 form: rope_parameters carries rope_theta too.
  config = read_hf_config(write_config({{"rope_parameters",
                                         {{"rope_type", "llama3"},
                                          {"rope_theta", 500000.0},
                                          {"factor", 8.0},
                                          {"low_freq_factor", 1.0},
                                          {"high_freq_factor", 4.0},
                                          {"original_max_position_embeddings", 8192}}}}));
  EXPECT_EQ(config.rope_scaling.kind, "llama3");
  EXPECT_EQ(config.rope_scaling.factor, 8.0);
  EXPECT_EQ(config.rope_theta, 500000.0);
}

TEST_F(HfConfig, UnknownRopeTypeIsNamed) {
  const std::string message =
      error_for({{"rope_scaling", {{"rope_type", "yarn"}, {"factor", 4.0}}}});
  EXPECT_NE(message.find("rope_type 'yarn'"), std::string::npos) << message;
  EXPECT_NE(message.find("config.json"), std::string::npos) << message;
  EXPECT_NE(error_for({{"rope_scaling", {{"rope_type", "llama3"}, {"factor", 8.0}}}})
                .find("rope_scaling.low_freq_factor"),
            std::string::npos);
}

// A number JSON can write but a double cannot hold: a UserError naming the file, not an
// internal error.
TEST_F(HfConfig, ANumberOutOfRangeIsAnErrorNamingTheFile) {
  test::write_file(dir_ / "config.json", std::string(kMinimal).replace(std::string(kMinimal).find("64"), 2, "1e400"));
  try {
    read_hf_config(dir_ / "config.json");
    ADD_FAILURE() << "1e400 was accepted";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find((dir_ / "config.json").string() + " is not valid JSON"), std::string::npos)
        << e.what();
  }
}

TEST_F(HfConfig, UnsupportedModelTypeIsRefusedListingTheSupportedOnes) {
  const std::filesystem::path file = write_config({{"model_type", "mistral"}});
  try {
    read_hf_config(file);
    FAIL() << "accepted mistral";
  } catch (const UserError& e) {
    EXPECT_EQ(std::string(e.what()),
              "model_type 'mistral' in " + file.string() +
                  " is not supported; loom loads model_type llama, qwen2, qwen3, Dream and llada");
  }
}

TEST_F(HfConfig, MissingConfigJson) {
  try {
    read_hf_config(dir_.path());
    FAIL() << "no error";
  } catch (const UserError& e) {
    EXPECT_EQ(std::string(e.what()),
              dir_.path().string() +
                  ": config.json not found (is base_model a Hugging Face model folder?)");
  }
}

TEST_F(HfConfig, UnsupportedArchitectureVariants) {
  EXPECT_NE(error_for({{"head_dim", 32}}).find("head_dim"), std::string::npos);
  EXPECT_EQ(error_for({{"head_dim", 16}}), "");  // 64 / 4
  EXPECT_NE(error_for({{"hidden_act", "gelu"}}).find("hidden_act"), std::string::npos);
  EXPECT_NE(error_for({{"attention_bias", true}}).find("attention_bias"), std::string::npos);
  EXPECT_NE(error_for({{"mlp_bias", true}}).find("mlp_bias"), std::string::npos);
  EXPECT_NE(error_for({{"num_key_value_heads", 3}}).find("num_key_value_heads"), std::string::npos);
  EXPECT_NE(error_for({{"torch_dtype", "int8"}}).find("torch_dtype"), std::string::npos);
}

TEST_F(HfConfig, BadValuesNameTheKey) {
  EXPECT_NE(error_for({{"hidden_size", "64"}}).find("'hidden_size'"), std::string::npos);
  EXPECT_NE(error_for({{"hidden_size", nullptr}}).find("'hidden_size' in"), std::string::npos);
  EXPECT_NE(error_for({{"vocab_size", -5}}).find("'vocab_size'"), std::string::npos);
  EXPECT_NE(error_for({{"rms_norm_eps", 0}}).find("'rms_norm_eps'"), std::string::npos);
  EXPECT_NE(error_for({{"tie_word_embeddings", 1}}).find("'tie_word_embeddings'"),
            std::string::npos);
  EXPECT_EQ(error_for({{"max_position_embeddings", 4096.0}}), "");  // integral float is fine
  test::write_file(dir_ / "config.json", "{\"model_type\": ");
  EXPECT_THROW(read_hf_config(dir_ / "config.json"), UserError);
}

TEST_F(HfConfig, WriteThenReadRoundTrips) {
  ModelConfig config;
  config.vocab_size = 1000;
  config.hidden_size = 128;
  config.intermediate_size = 344;
  config.num_hidden_layers = 3;
  config.num_attention_heads = 8;
  config.num_key_value_heads = 2;
  config.max_position_embeddings = 4096;
  config.rope_theta = 500000.0;
  config.rms_norm_eps = 1e-5;
  config.tie_word_embeddings = true;
  config.rope_scaling = {"llama3", 32.0, 1.0, 4.0, 8192};
  config.torch_dtype = "bfloat16";
  config.bos_token_id = 1;
  config.eos_token_id = std::nullopt;
  config.pad_token_id = 7;
  config.initializer_range = 0.01;
  write_hf_config(dir_ / "config.json", config);
  EXPECT_FALSE(std::filesystem::exists(dir_ / "config.json.tmp"));

  const ModelConfig back = read_hf_config(dir_ / "config.json");
  EXPECT_EQ(back.vocab_size, 1000);
  EXPECT_EQ(back.hidden_size, 128);
  EXPECT_EQ(back.intermediate_size, 344);
  EXPECT_EQ(back.num_hidden_layers, 3);
  EXPECT_EQ(back.num_attention_heads, 8);
  EXPECT_EQ(back.num_key_value_heads, 2);
  EXPECT_EQ(back.max_position_embeddings, 4096);
  EXPECT_EQ(back.rope_theta, 500000.0);
  EXPECT_EQ(back.rms_norm_eps, 1e-5);
  EXPECT_TRUE(back.tie_word_embeddings);
  EXPECT_EQ(back.rope_scaling.kind, "llama3");
  EXPECT_EQ(back.rope_scaling.factor, 32.0);
  EXPECT_EQ(back.rope_scaling.original_max_position_embeddings, 8192);
  EXPECT_EQ(back.torch_dtype, "bfloat16");
  EXPECT_EQ(back.bos_token_id, 1);
  EXPECT_EQ(back.eos_token_id, std::nullopt);
  EXPECT_EQ(back.pad_token_id, 7);
  EXPECT_EQ(back.initializer_range, 0.01);

  // The keys transformers needs to rebuild the model, in LlamaConfig's spelling.
  const nlohmann::json json = nlohmann::json::parse(test::read_file(dir_ / "config.json"));
  EXPECT_EQ(json["architectures"], nlohmann::json::array({"LlamaForCausalLM"}));
  EXPECT_EQ(json["model_type"], "llama");
  EXPECT_EQ(json["hidden_act"], "silu");
  EXPECT_EQ(json["attention_bias"], false);
  EXPECT_EQ(json["mlp_bias"], false);
  EXPECT_EQ(json["use_cache"], true);
  EXPECT_EQ(json["head_dim"], 16);
  EXPECT_TRUE(json["transformers_version"].is_string());
  EXPECT_TRUE(json["eos_token_id"].is_null());
  EXPECT_EQ(json["rope_scaling"], nlohmann::json::parse(R"({"rope_type": "llama3", "factor": 32.0,
                "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                "original_max_position_embeddings": 8192})"));

  config.rope_scaling = {};
  write_hf_config(dir_ / "config.json", config);
  EXPECT_TRUE(
      nlohmann::json::parse(test::read_file(dir_ / "config.json"))["rope_scaling"].is_null());
  EXPECT_EQ(read_hf_config(dir_ / "config.json").rope_scaling.kind, "none");
  config.torch_dtype = "fp32";
  EXPECT_THROW(write_hf_config(dir_ / "config.json", config), std::invalid_argument);
}

}  // namespace
}  // namespace loom
