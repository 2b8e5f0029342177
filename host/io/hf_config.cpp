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
    throw UserError(file.string() +
                    " has no model_type; loom loads Llama-family models (model_type = llama)");
  }
  if (*model_type != "llama") {
    throw UserError("model_type '" + *model_type + "' in " + file.string() +
                    " is not supported; loom loads Llama-family models (model_type = llama)");
  }

  ModelConfig model;
  model.hidden_size = config.positive_integer("hidden_size", std::nullopt);
  model.intermediate_size = config.positive_integer("intermediate_size", std::nullopt);
  model.num_hidden_layers = config.positive_integer("num_hidden_layers", std::nullopt);
  model.num_attention_heads = config.positive_integer("num_attention_heads", std::nullopt);
  model.num_key_value_heads =
      config.positive_integer("num_key_value_heads", model.num_attention_heads);
  model.vocab_size = config.positive_integer("vocab_size", std::nullopt);
  model.max_position_embeddings = config.positive_integer("max_position_embeddings", 2048);
  model.rms_norm_eps = config.positive_number("rms_norm_eps", 1e-6);
  model.initializer_range = config.number("initializer_range", 0.02);
  model.tie_word_embeddings = config.boolean("tie_word_embeddings", false);
  model.torch_dtype = read_torch_dtype(config);
  model.bos_token_id = config.token_id("bos_token_id", 1);
  model.eos_token_id = config.token_id("eos_token_id", 2);
  model.pad_token_id = config.token_id("pad_token_id", std::nullopt);

  if (model.hidden_size % model.num_attention_heads != 0) {
    config.fail("hidden_size", std::to_string(model.hidden_size) +
                                   " is not a multiple of num_attention_heads " +
                                   std::to_string(model.num_attention_heads));
  }
  if (model.num_attention_heads % model.num_key_value_heads != 0) {
    config.fail("num_key_value_heads", std::to_string(model.num_key_value_heads) +
                                           " does not divide num_attention_heads " +
                                           std::to_string(model.num_attention_heads));
  }
  if (config.find("head_dim") != nullptr &&
      config.integer("head_dim", std::nullopt) != model.head_dim()) {
    config.fail("head_dim", "is " + std::to_string(config.integer("head_dim", std::nullopt)) +
                                ", not hidden_size / num_attention_heads = " +
                                std::to_string(model.head_dim()) +
                                "; a separate head_dim is not supported");
  }
  if (model.head_dim() % 2 != 0) {
    config.fail("hidden_size", "gives an odd head_dim " + std::to_string(model.head_dim()) +
                                   "; RoPE needs an even one");
  }
  const std::optional<std::string> activation = config.string("hidden_act");
  if (activation && *activation != "silu") {
    config.fail("hidden_act", "'" + *activation + "' is not supported (only silu)");
  }
  for (const char* key : {"attention_bias", "mlp_bias"}) {
    if (config.boolean(key, false)) config.fail(key, "is true; biases are not supported");
  }

  // transformers 5 moved rope_theta and rope_scaling into one rope_parameters object.
  const json* rope_parameters = config.find("rope_parameters");
  const json* rope_scaling = config.find("rope_scaling");
  if (rope_scaling != nullptr) {
    model.rope_scaling = read_rope_scaling(*rope_scaling, "rope_scaling", file);
  } else if (rope_parameters != nullptr) {
    model.rope_scaling = read_rope_scaling(*rope_parameters, "rope_parameters", file);
  }
  model.rope_theta = config.positive_number("rope_theta", 10000.0);
  if (config.find("rope_theta") == nullptr && rope_parameters != nullptr &&
      rope_parameters->is_object()) {
    model.rope_theta = ConfigObject(*rope_parameters, file, "rope_parameters.")
                           .positive_number("rope_theta", 10000.0);
  }
  return model;
}

void write_hf_config(const std::filesystem::path& file, const ModelConfig& config) {
  if (config.torch_dtype != "float32" && config.torch_dtype != "float16" &&
      config.torch_dtype != "bfloat16") {
    throw std::invalid_argument("write_hf_config: torch_dtype '" + config.torch_dtype +
                                "' is not float32, float16 or bfloat16");
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
