#include "io/hf_config.hpp"

#include <cmath>
#include <fstream>
#include <limits>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <system_error>

#include <nlohmann/json.hpp>

#include "errors.hpp"
#include "io/durable_file.hpp"

namespace loom {
namespace {

using nlohmann::json;

// The version written into config.json: the first transformers line with rope_type "llama3" and
// attention/mlp bias flags is 4.43; 4.45 is what Llama 3.2 shipped with.
constexpr const char* kTransformersVersion = "4.45.0";

// Typed access to one JSON object of config.json; every error names the file and the key.
class ConfigObject {
 public:
  ConfigObject(const json& object, const std::filesystem::path& file, std::string prefix = "")
      : object_(object), file_(file), prefix_(std::move(prefix)) {}

  // nullptr when the key is absent or null (transformers treats both as "use the default").
  const json* find(const std::string& key) const {
    const auto it = object_.find(key);
    return it == object_.end() || it->is_null() ? nullptr : &*it;
  }

  [[noreturn]] void fail(const std::string& key, const std::string& what) const {
    throw UserError("key '" + prefix_ + key + "' in " + file_.string() + " " + what);
  }

  std::int64_t integer(const std::string& key, std::optional<std::int64_t> fallback) const {
    const json* value = find(key);
    if (value == nullptr) {
      if (!fallback) fail(key, "is missing");
      return *fallback;
    }
    return to_integer(key, *value);
  }

  std::int64_t positive_integer(const std::string& key,
                                std::optional<std::int64_t> fallback) const {
    const std::int64_t value = integer(key, fallback);
    if (value <= 0) fail(key, "must be positive, got " + std::to_string(value));
    return value;
  }

  std::int64_t to_integer(const std::string& key, const json& value) const {
    if (value.is_number_unsigned()) {
      if (value.get<std::uint64_t>() > std::numeric_limits<std::int64_t>::max()) {
        fail(key, "is too large: " + value.dump());
      }
      return static_cast<std::int64_t>(value.get<std::uint64_t>());
    }
    if (value.is_number_integer()) return value.get<std::int64_t>();
    // Some exporters write 8192.0 for an integer.
    if (value.is_number_float()) {
      const double number = value.get<double>();
      if (std::isfinite(number) && number == std::floor(number) && std::fabs(number) < 9e18) {
        return static_cast<std::int64_t>(number);
      }
    }
    fail(key, "must be an integer, got " + value.dump());
  }

  double number(const std::string& key, std::optional<double> fallback) const {
    const json* value = find(key);
    if (value == nullptr) {
      if (!fallback) fail(key, "is missing");
      return *fallback;
    }
    if (!value->is_number()) fail(key, "must be a number, got " + value->dump());
    return value->get<double>();
  }

  double positive_number(const std::string& key, std::optional<double> fallback) const {
    const double value = number(key, fallback);
    if (!(value > 0.0) || !std::isfinite(value)) {
      fail(key, "must be a positive number, got " + json(value).dump());
    }
    return value;
  }

  bool boolean(const std::string& key, bool fallback) const {
    const json* value = find(key);
    if (value == nullptr) return fallback;
    if (!value->is_boolean()) fail(key, "must be true or false, got " + value->dump());
    return value->get<bool>();
  }

  std::optional<std::string> string(const std::string& key) const {
    const json* value = find(key);
    if (value == nullptr) return std::nullopt;
    if (!value->is_string()) fail(key, "must be a string, got " + value->dump());
    return value->get<std::string>();
  }

  // A token id: an integer, null, or (eos_token_id in chat models) a list whose first entry is
  // taken. Absent keys get LlamaConfig's default.
  std::optional<std::int64_t> token_id(const std::string& key,
                                       std::optional<std::int64_t> fallback) const {
    const auto it = object_.find(key);
    if (it == object_.end()) return fallback;
    if (it->is_null()) return std::nullopt;
    if (it->is_array()) {
      if (it->empty()) return std::nullopt;
      return to_integer(key, it->front());
    }
    return to_integer(key, *it);
  }

 private:
  const json& object_;
  const std::filesystem::path& file_;
  std::string prefix_;
};

RopeScaling read_rope_scaling(const json& object, const std::string& key,
                              const std::filesystem::path& file) {
  if (!object.is_object()) {
    throw UserError("key '" + key + "' in " + file.string() + " must be an object or null, got " +
                    object.dump());
  }
  const ConfigObject rope(object, file, key + ".");
  // transformers renamed "type" to "rope_type"; older Llama 2 configs still use "type".
  std::optional<std::string> type = rope.string("rope_type");
  if (!type) type = rope.string("type");
  if (!type) rope.fail("rope_type", "is missing");

  RopeScaling scaling;
  if (*type == "default") return scaling;
  if (*type == "linear") {
    scaling.kind = "linear";
    scaling.factor = rope.positive_number("factor", std::nullopt);
    return scaling;
  }
  if (*type == "llama3") {
    scaling.kind = "llama3";
    scaling.factor = rope.positive_number("factor", std::nullopt);
    scaling.low_freq_factor = rope.positive_number("low_freq_factor", std::nullopt);
    scaling.high_freq_factor = rope.positive_number("high_freq_factor", std::nullopt);
    scaling.original_max_position_embeddings =
        rope.positive_integer("original_max_position_embeddings", std::nullopt);
    if (!(scaling.high_freq_factor > scaling.low_freq_factor)) {
      rope.fail("high_freq_factor", "must be greater than low_freq_factor");
    }
    return scaling;
  }
  throw UserError("rope_type '" + *type + "' in " + file.string() +
                  " is not supported; loom supports default, linear and llama3");
}

std::string read_torch_dtype(const ConfigObject& config) {
  // transformers 4.56 renamed torch_dtype to dtype.
  const std::string key = config.find("torch_dtype") != nullptr ? "torch_dtype" : "dtype";
  std::optional<std::string> name = config.string(key);
  if (!name) return "float32";
  if (name->rfind("torch.", 0) == 0) name = name->substr(6);
  if (*name == "float32" || *name == "float") return "float32";
  if (*name == "float16" || *name == "half") return "float16";
  if (*name == "bfloat16") return "bfloat16";
  config.fail(key, "'" + *name + "' is not supported (float32, float16 or bfloat16)");
}

json read_json_file(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw UserError("cannot read " + file.string());
  std::ostringstream text;
  text << in.rdbuf();
  try {
    return json::parse(text.str());
  } catch (const json::exception& e) {  // parse_error, and out_of_range for a number like 1e400
    throw UserError(file.string() + " is not valid JSON: " + e.what());
  }
}

json rope_scaling_json(const RopeScaling& scaling) {
  if (scaling.kind == "none") return nullptr;
  if (scaling.kind == "linear") return {{"rope_type", "linear"}, {"factor", scaling.factor}};
  if (scaling.kind == "llama3") {
    return {{"rope_type", "llama3"},
            {"factor", scaling.factor},
            {"low_freq_factor", scaling.low_freq_factor},
            {"high_freq_factor", scaling.high_freq_factor},
            {"original_max_position_embeddings", scaling.original_max_position_embeddings}};
  }
  throw std::invalid_argument("write_hf_config: unknown rope scaling kind '" + scaling.kind + "'");
}

json optional_id(const std::optional<std::int64_t>& id) { return id ? json(*id) : json(nullptr); }

// The layouts loom reads, as config.json spells model_type (docs/architecture.md).
constexpr const char* kSupportedModelTypes = "llama, qwen2, qwen3, Dream and llada";

// head_dim, heads and key/value heads agree with each other (every layout).
void check_heads(const ModelConfig& model, const ConfigObject& config, const char* heads_key,
                 const char* kv_heads_key, const char* hidden_key) {
  if (model.explicit_head_dim == 0 && model.hidden_size % model.num_attention_heads != 0) {
    config.fail(hidden_key, std::to_string(model.hidden_size) + " is not a multiple of " +
                                heads_key + " " + std::to_string(model.num_attention_heads));
  }
  if (model.num_attention_heads % model.num_key_value_heads != 0) {
    config.fail(kv_heads_key, std::to_string(model.num_key_value_heads) + " does not divide " +
                                  heads_key + " " + std::to_string(model.num_attention_heads));
  }
  if (model.head_dim() % 2 != 0) {
    config.fail(model.explicit_head_dim > 0 ? "head_dim" : hidden_key,
                "gives an odd head_dim " + std::to_string(model.head_dim()) +
                    "; RoPE needs an even one");
  }
}

// rope_scaling / rope_parameters and rope_theta, as transformers' Llama and Qwen configs hold them.
void read_rope(ModelConfig& model, const ConfigObject& config, const std::filesystem::path& file,
               double default_theta) {
  // transformers 5 moved rope_theta and rope_scaling into one rope_parameters object.
  const json* rope_parameters = config.find("rope_parameters");
  const json* rope_scaling = config.find("rope_scaling");
  if (rope_scaling != nullptr) {
    model.rope_scaling = read_rope_scaling(*rope_scaling, "rope_scaling", file);
  } else if (rope_parameters != nullptr) {
    model.rope_scaling = read_rope_scaling(*rope_parameters, "rope_parameters", file);
  }
  model.rope_theta = config.positive_number("rope_theta", default_theta);
  if (config.find("rope_theta") == nullptr && rope_parameters != nullptr &&
      rope_parameters->is_object()) {
    model.rope_theta = ConfigObject(*rope_parameters, file, "rope_parameters.")
                           .positive_number("rope_theta", default_theta);
  }
}

void require_silu(const ConfigObject& config, const char* key) {
  const std::optional<std::string> activation = config.string(key);
  if (activation && *activation != "silu") {
    config.fail(key, "'" + *activation + "' is not supported (only silu)");
  }
}

// The shape and numerics keys LlamaConfig, Qwen2Config and Qwen3Config share (their defaults
// differ only in the context length and the BOS/EOS ids).
ModelConfig read_llama_like_shape(const ConfigObject& config, std::int64_t max_positions,
                                  std::optional<std::int64_t> bos, std::optional<std::int64_t> eos) {
  ModelConfig model;
  model.hidden_size = config.positive_integer("hidden_size", std::nullopt);
  model.intermediate_size = config.positive_integer("intermediate_size", std::nullopt);
  model.num_hidden_layers = config.positive_integer("num_hidden_layers", std::nullopt);
  model.num_attention_heads = config.positive_integer("num_attention_heads", std::nullopt);
  model.num_key_value_heads =
      config.positive_integer("num_key_value_heads", model.num_attention_heads);
  model.vocab_size = config.positive_integer("vocab_size", std::nullopt);
  model.max_position_embeddings = config.positive_integer("max_position_embeddings", max_positions);
  model.rms_norm_eps = config.positive_number("rms_norm_eps", 1e-6);
  model.initializer_range = config.number("initializer_range", 0.02);
  model.tie_word_embeddings = config.boolean("tie_word_embeddings", false);
  model.torch_dtype = read_torch_dtype(config);
  model.bos_token_id = config.token_id("bos_token_id", bos);
  model.eos_token_id = config.token_id("eos_token_id", eos);
  model.pad_token_id = config.token_id("pad_token_id", std::nullopt);
  return model;
}

// transformers' LlamaConfig.
ModelConfig read_llama(const ConfigObject& config, const std::filesystem::path& file) {
  ModelConfig model = read_llama_like_shape(config, 2048, 1, 2);

  check_heads(model, config, "num_attention_heads", "num_key_value_heads", "hidden_size");
  if (config.find("head_dim") != nullptr &&
      config.integer("head_dim", std::nullopt) != model.head_dim()) {
    config.fail("head_dim", "is " + std::to_string(config.integer("head_dim", std::nullopt)) +
                                ", not hidden_size / num_attention_heads = " +
                                std::to_string(model.head_dim()) +
                                "; a separate head_dim is not supported for model_type llama");
  }
  require_silu(config, "hidden_act");
  for (const char* key : {"attention_bias", "mlp_bias"}) {
    if (config.boolean(key, false)) config.fail(key, "is true; biases are not supported");
  }
  read_rope(model, config, file, 10000.0);
  return model;
}

// transformers' Qwen2Config (also Dream's, whose DreamConfig is Qwen2's with mask_token_id) and
// Qwen3Config: the Llama shape keys, with biases on q/k/v (Qwen2) or per-head q/k norms and a
// head_dim of its own (Qwen3).
ModelConfig read_qwen(const ConfigObject& config, const std::filesystem::path& file,
                      const std::string& model_type) {
  const bool qwen3 = model_type == "qwen3";
  ModelConfig model = read_llama_like_shape(config, 32768, std::nullopt, std::nullopt);
  if (qwen3) {
    // Qwen3Config's default head_dim is 128, whatever hidden_size is.
    model.explicit_head_dim = config.positive_integer("head_dim", 128);
    model.qk_norm = true;
    model.attention_qkv_bias = model.attention_output_bias = config.boolean("attention_bias", false);
  } else {
    // Qwen2 always has q/k/v biases and none on o_proj; it has no head_dim of its own. Dream
    // checkpoints converted from other bases say attention_bias = false (Qwen2 ignores the key).
    model.attention_qkv_bias = model_type == "Dream" ? config.boolean("attention_bias", true) : true;
    if (config.find("head_dim") != nullptr &&
        config.integer("head_dim", std::nullopt) != model.hidden_size / model.num_attention_heads) {
      config.fail("head_dim", "is " + std::to_string(config.integer("head_dim", std::nullopt)) +
                                  ", not hidden_size / num_attention_heads; " + model_type +
                                  " has no separate head_dim");
    }
  }
  // DreamConfig's default mask token (151666, "<|mask|>") when config.json does not say and
  // the vocabulary has that row (Qwen2.5's 152064 rows do).
  if (model_type == "Dream") {
    model.mask_token_id = config.token_id("mask_token_id", std::nullopt);
    if (config.find("mask_token_id") == nullptr && model.vocab_size > 151666) model.mask_token_id = 151666;
  }
  check_heads(model, config, "num_attention_heads", "num_key_value_heads", "hidden_size");
  require_silu(config, "hidden_act");
  if (config.boolean("mlp_bias", false)) config.fail("mlp_bias", "is true; MLP biases are not supported");
  // Qwen's sliding window is off unless use_sliding_window says otherwise (sliding_window alone
  // is only its size); loom always attends over the whole sequence.
  if (config.boolean("use_sliding_window", false)) {
    config.fail("use_sliding_window",
                "is true; sliding-window attention is not supported (loom attends over the whole "
                "sequence)");
  }
  // transformers 4.53+ also lists each layer's attention; only full attention is supported.
  if (const json* layer_types = config.find("layer_types")) {
    if (!layer_types->is_array()) config.fail("layer_types", "must be a list, got " + layer_types->dump());
    for (const json& type : *layer_types)
      if (type != "full_attention")
        config.fail("layer_types", "has " + type.dump() + "; only full_attention layers are supported");
  }
  read_rope(model, config, file, 10000.0);
  return model;
}

// LLaDA's configuration_llada.py (OLMo's ModelConfig keys). Its dataclass defaults describe
// another block (sequential, fused att_proj, LayerNorm, SwiGLU on a split projection), so the
// keys that choose the block loom implements must say so.
ModelConfig read_llada(const ConfigObject& config) {
  ModelConfig model;
  model.hidden_size = config.positive_integer("d_model", std::nullopt);
  model.num_hidden_layers = config.positive_integer("n_layers", std::nullopt);
  model.num_attention_heads = config.positive_integer("n_heads", std::nullopt);
  if (config.find("n_kv_heads") != nullptr) {
    model.num_key_value_heads = config.positive_integer("n_kv_heads", std::nullopt);
    // LLaDA's effective_n_kv_heads refuses a multi_query_attention that disagrees.
    if (config.find("multi_query_attention") != nullptr) {
      const std::int64_t implied =
          config.boolean("multi_query_attention", false) ? 1 : model.num_attention_heads;
      if (implied != model.num_key_value_heads) {
        config.fail("multi_query_attention",
                    "implies " + std::to_string(implied) + " key/value heads, but n_kv_heads is " +
                        std::to_string(model.num_key_value_heads));
      }
    }
  } else {
    model.num_key_value_heads =
        config.boolean("multi_query_attention", false) ? 1 : model.num_attention_heads;
  }
  if (config.find("mlp_hidden_size") != nullptr) {
    model.intermediate_size = config.positive_integer("mlp_hidden_size", std::nullopt);
  } else {
    model.intermediate_size = config.positive_integer("mlp_ratio", 4) * model.hidden_size;
  }
  // The embedding and output matrices have embedding_size rows (vocab_size padded up).
  const std::int64_t vocab = config.positive_integer("vocab_size", std::nullopt);
  model.vocab_size = config.positive_integer("embedding_size", vocab);
  if (model.vocab_size < vocab) {
    config.fail("embedding_size", std::to_string(model.vocab_size) + " is smaller than vocab_size " +
                                      std::to_string(vocab));
  }
  model.max_position_embeddings = config.positive_integer("max_sequence_length", 1024);
  model.rms_norm_eps = config.positive_number("rms_norm_eps", 1e-5);
  model.rope_theta = config.positive_number("rope_theta", 10000.0);
  model.initializer_range = config.number("init_std", 0.02);
  model.tie_word_embeddings = config.boolean("weight_tying", true);
  model.attention_qkv_bias = config.boolean("include_qkv_bias", false);
  model.torch_dtype = read_torch_dtype(config);
  model.bos_token_id = config.token_id("bos_token_id", std::nullopt);
  model.eos_token_id = config.token_id("eos_token_id", std::nullopt);
  model.pad_token_id = config.token_id("pad_token_id", std::nullopt);
  // LLaDA-8B's mask token is 126336 in its 126464-row vocabulary; its config.json names it.
  model.mask_token_id = config.token_id("mask_token_id", std::nullopt);
  if (config.find("mask_token_id") == nullptr && model.vocab_size == 126464) model.mask_token_id = 126336;

  auto require_string = [&](const char* key, const char* wanted) {
    const std::optional<std::string> value = config.string(key);
    if (!value) config.fail(key, std::string("is missing; loom loads LLaDA's ") + key + " = \"" + wanted + "\"");
    if (*value != wanted)
      config.fail(key, "is \"" + *value + "\"; loom supports only \"" + wanted + "\"");
  };
  require_string("block_type", "llama");
  require_string("activation_type", "silu");
  require_string("layer_norm_type", "rms");
  auto require_bool = [&](const char* key, bool fallback, bool wanted, const char* why) {
    if (config.boolean(key, fallback) != wanted)
      config.fail(key, std::string(wanted ? "is false" : "is true") + "; " + why);
  };
  require_bool("rope", false, true, "loom's LLaDA block uses rotary position embeddings");
  require_bool("alibi", false, false, "ALiBi is not supported");
  require_bool("include_bias", false, false, "biases outside q/k/v are not supported");
  require_bool("bias_for_layer_norm", false, false, "norm biases are not supported");
  require_bool("layer_norm_with_affine", true, true, "norms without a weight are not supported");
  require_bool("attention_layer_norm", false, false, "LLaDA's q/k layer norms are not supported");
  require_bool("input_emb_norm", false, false, "scaling the embeddings is not supported");
  require_bool("scale_logits", false, false, "scaled logits are not supported");
  if (config.find("clip_qkv") != nullptr) config.fail("clip_qkv", "is set; clipping q/k/v is not supported");
  // Grouped blocks (OLMo's block_group_size) store their tensors under other names.
  if (config.integer("block_group_size", 1) != 1)
    config.fail("block_group_size", "is not 1; grouped blocks are not supported");
  check_heads(model, config, "n_heads", "n_kv_heads", "d_model");
  return model;
}

}  // namespace

ModelConfig read_hf_config(const std::filesystem::path& config_json) {
  std::filesystem::path file = config_json;
  std::error_code ignored;
  if (std::filesystem::is_directory(file, ignored)) file /= "config.json";
  if (!std::filesystem::is_regular_file(file, ignored)) {
    throw UserError(file.parent_path().string() + ": " + file.filename().string() +
                    " not found (is base_model a Hugging Face model folder?)");
  }
  const json root = read_json_file(file);
  if (!root.is_object()) throw UserError(file.string() + " is not a JSON object");
  const ConfigObject config(root, file);

  const std::optional<std::string> model_type = config.string("model_type");
  if (!model_type) {
    throw UserError(file.string() + " has no model_type; loom loads model_type " +
                    kSupportedModelTypes);
  }
  ModelConfig model;
  if (*model_type == "llama") {
    model = read_llama(config, file);
  } else if (*model_type == "qwen2" || *model_type == "qwen3" || *model_type == "Dream") {
    model = read_qwen(config, file, *model_type);
  } else if (*model_type == "llada") {
    model = read_llada(config);
  } else {
    throw UserError("model_type '" + *model_type + "' in " + file.string() +
                    " is not supported; loom loads model_type " + kSupportedModelTypes);
  }
  model.model_type = *model_type;
  // Written back with loom's changes only (write_hf_config); a Llama config is written whole.
  if (*model_type != "llama") model.source_config_json = root.dump();
  return model;
}

namespace {

// A non-Llama layout's config.json: the keys it was read with, and only what loom changes set
// again -- the vocabulary size (a mask token added), the storage dtype and the tokenizer's
// special ids -- so that the model's own Python code (trust_remote_code for LLaDA and Dream)
// loads the checkpoint.
void write_source_layout_config(const std::filesystem::path& file, const ModelConfig& config) {
  if (config.source_config_json.empty()) {
    throw std::invalid_argument("write_hf_config: a " + config.model_type +
                                " model without the config.json it was read from");
  }
  json out = json::parse(config.source_config_json);
  if (config.model_type == "llada") {
    // The matrices have embedding_size rows; vocab_size is the tokenizer's count.
    const bool padded = out.contains("embedding_size") && !out["embedding_size"].is_null();
    if (padded || out.value("vocab_size", json(nullptr)) != json(config.vocab_size))
      out["embedding_size"] = config.vocab_size;
  } else {
    out["vocab_size"] = config.vocab_size;
  }
  const bool renamed_dtype = out.contains("dtype") && !out.contains("torch_dtype");
  if (renamed_dtype) out["dtype"] = config.torch_dtype;
  else if (out.contains("torch_dtype") || config.model_type != "llada") out["torch_dtype"] = config.torch_dtype;
  auto set_id = [&](const char* key, const std::optional<std::int64_t>& id) {
    if (!id) return;
    json& value = out[key];
    // A list (several EOS ids) that starts with the id stays as it is.
    if (value.is_array() && !value.empty() && value.front() == json(*id)) return;
    value = *id;
  };
  set_id("bos_token_id", config.bos_token_id);
  set_id("eos_token_id", config.eos_token_id);
  set_id("pad_token_id", config.pad_token_id);
  write_file_durably(file, out.dump(2) + "\n");
}

}  // namespace

void write_hf_config(const std::filesystem::path& file, const ModelConfig& config) {
  if (config.torch_dtype != "float32" && config.torch_dtype != "float16" &&
      config.torch_dtype != "bfloat16") {
    throw std::invalid_argument("write_hf_config: torch_dtype '" + config.torch_dtype +
                                "' is not float32, float16 or bfloat16");
  }
  if (config.model_type != "llama") {
    write_source_layout_config(file, config);
    return;
  }
  // nlohmann::json keeps keys sorted, as transformers' save_pretrained writes them.
  json out = {
      {"architectures", json::array({"LlamaForCausalLM"})},
      {"model_type", "llama"},
      {"attention_bias", false},
      {"attention_dropout", 0.0},
      {"bos_token_id", optional_id(config.bos_token_id)},
      {"eos_token_id", optional_id(config.eos_token_id)},
      {"head_dim", config.head_dim()},
      {"hidden_act", "silu"},
      {"hidden_size", config.hidden_size},
      {"initializer_range", config.initializer_range},
      {"intermediate_size", config.intermediate_size},
      {"max_position_embeddings", config.max_position_embeddings},
      {"mlp_bias", false},
      {"num_attention_heads", config.num_attention_heads},
      {"num_hidden_layers", config.num_hidden_layers},
      {"num_key_value_heads", config.num_key_value_heads},
      {"pretraining_tp", 1},
      {"rms_norm_eps", config.rms_norm_eps},
      {"rope_scaling", rope_scaling_json(config.rope_scaling)},
      {"rope_theta", config.rope_theta},
      {"tie_word_embeddings", config.tie_word_embeddings},
      {"torch_dtype", config.torch_dtype},
      {"transformers_version", kTransformersVersion},
      {"use_cache", true},
      {"vocab_size", config.vocab_size},
  };
  // LlamaConfig's default pad_token_id is None, so an absent key reads back the same.
  if (config.pad_token_id) out["pad_token_id"] = *config.pad_token_id;

  write_file_durably(file, out.dump(2) + "\n");
}

}  // namespace loom
