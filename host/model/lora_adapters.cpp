#include "model/lora_adapters.hpp"

#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>

#include "errors.hpp"
#include "io/durable_file.hpp"
#include "io/layout_tensor_names.hpp"
#include "io/tensor_io.hpp"

namespace loom {
namespace fs = std::filesystem;

namespace {

// The seven linears of a decoder layer, by their paths under model.layers.N in loom's (Llama's)
// names; the last part is the key of the module's LoraLinears.
constexpr const char* kLayerLinears[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                         "self_attn.o_proj", "mlp.gate_proj",    "mlp.up_proj",
                                         "mlp.down_proj"};

std::string last_part(const std::string& dotted) { return dotted.substr(dotted.rfind('.') + 1); }

// "model.layers.0.self_attn.q_proj.weight" stored by `layout`, without ".weight".
std::string stored_module(const std::string& layout, const std::string& parameter) {
  const std::string name = stored_tensor_name(layout, parameter);
  return name.substr(0, name.size() - std::string(".weight").size());
}

std::string joined(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

}  // namespace

std::vector<std::string> LoraAdapters::linear_module_names(const std::string& model_type) {
  std::vector<std::string> out;
  for (const char* linear : kLayerLinears)
    out.push_back(last_part(stored_module(model_type, std::string("model.layers.0.") + linear + ".weight")));
  return out;
}

LoraAdapters::LoraAdapters(LlamaForCausalLM model, const LoraConfig& config,
                           const std::string& where, std::uint64_t seed)
    : model_(std::move(model)), config_(config) {
  const ModelConfig& mc = model_->config();
  const std::string& layout = mc.model_type;
  const std::vector<std::string> names = linear_module_names(layout);

  // 1. which linears: each name must be one of this layout's (never silently skipped).
  std::vector<bool> chosen(names.size(), false);
  for (const auto& want : config_.target_modules) {
    if (want == "all-linear") {
      chosen.assign(names.size(), true);  // the blocks' linears; the output head is not one
      continue;
    }
    bool found = false;
    for (std::size_t i = 0; i < names.size(); ++i)
      if (names[i] == want) chosen[i] = found = true;
    if (!found)
      throw UserError(where + ": lora_target_modules entry \"" + want + "\" matches no module of this " +
                      layout + " model; its linear modules are: " + joined(names) + " (or \"all-linear\")");
  }
  for (std::size_t i = 0; i < names.size(); ++i)
    if (chosen[i]) targets_.push_back(names[i]);

  // 2. modules_to_save: the embeddings or the untied output head, by the layout's names.
  const std::string embed = stored_tensor_name(layout, "model.embed_tokens.weight");
  const std::string head = stored_tensor_name(layout, "lm_head.weight");
  std::vector<std::pair<std::string, torch::Tensor>> savable = {
      {embed, model_->model->embed_tokens->weight}};
  if (model_->lm_head) savable.emplace_back(head, model_->lm_head->weight);
  for (const auto& want : config_.modules_to_save) {
    if (!model_->lm_head && want == last_part(stored_module(layout, "lm_head.weight")))
      throw UserError(where + ": lora_modules_to_save entry \"" + want + "\": this model ties its "
                      "output head to its embeddings; list \"" + last_part(stored_module(layout, embed)) +
                      "\" to train both");
    bool found = false;
    for (const auto& [name, weight] : savable) {
      if (last_part(name.substr(0, name.size() - 7)) != want) continue;
      saved_modules_.emplace_back("base_model.model." + name, weight);
      found = true;
    }
    if (!found) {
      std::vector<std::string> available;
      for (const auto& [name, weight] : savable) available.push_back(last_part(name.substr(0, name.size() - 7)));
      throw UserError(where + ": lora_modules_to_save entry \"" + want + "\" matches no module of this " +
                      layout + " model; it can save: " + joined(available));
    }
  }

  // 3. the base frozen; what is saved whole trains.
  for (auto& p : model_->parameters()) p.requires_grad_(false);
  for (auto& [name, weight] : saved_modules_) weight.requires_grad_(true);

  // 4. A ~ U(-1/sqrt(in), 1/sqrt(in)) (kaiming-uniform, a = sqrt(5)), B = 0, in fp32, in a
  // fixed order from `seed` so every rank and every run with the seed starts alike.
  auto gen = at::detail::createCPUGenerator(seed);
  auto params = model_->named_parameters();
  for (std::size_t l = 0; l < model_->model->layers.size(); ++l) {
    auto& layer = model_->model->layers[l];
    for (std::size_t i = 0; i < names.size(); ++i) {
      if (!chosen[i]) continue;
      const std::string path = "model.layers." + std::to_string(l) + "." + kLayerLinears[i];
      const torch::Tensor& w = params[path + ".weight"];
      const std::int64_t in = w.size(1), out = w.size(0);
      const double bound = 1.0 / std::sqrt(double(in));
      LoraLinear a;
      a.A = torch::empty({config_.r, in}, torch::kFloat).uniform_(-bound, bound, gen).to(w.device());
      a.B = torch::zeros({out, config_.r}, torch::dtype(torch::kFloat).device(w.device()));
      a.A.requires_grad_(true);
      a.B.requires_grad_(true);
      a.scaling = config_.scaling();
      a.dropout = config_.dropout;
      const std::string local = last_part(kLayerLinears[i]);
      LoraLinears& owner = std::string(kLayerLinears[i]).rfind("self_attn.", 0) == 0
                               ? layer->attention().adapters
                               : layer->feed_forward().adapters;
      owner[local] = a;
      slots_.push_back({"base_model.model." + stored_module(layout, path + ".weight"), &owner[local], w});
    }
  }
}

LoraAdapters::~LoraAdapters() {
  for (auto& layer : model_->model->layers) {
    layer->attention().adapters.clear();
    layer->feed_forward().adapters.clear();
  }
}

std::vector<std::pair<std::string, torch::Tensor>> LoraAdapters::trainable() const {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const auto& s : slots_) {
    out.emplace_back(s.peft_prefix + ".lora_A.weight", s.adapter->A);
    out.emplace_back(s.peft_prefix + ".lora_B.weight", s.adapter->B);
  }
  for (const auto& m : saved_modules_) out.push_back(m);
  return out;
}

std::vector<torch::Tensor> LoraAdapters::parameters() const {
  std::vector<torch::Tensor> out;
  for (const auto& [name, t] : trainable()) out.push_back(t);
  return out;
}

void LoraAdapters::save(const fs::path& dir, const std::string& base_model) const {
  NamedTensors tensors;
  for (const auto& [name, t] : trainable())
    tensors.emplace_back(name, t.detach().to(torch::kCPU, torch::kFloat).contiguous());
  save_tensors(dir / "adapter_model.safetensors", tensors, {{"format", "pt"}});
  // PEFT's LoraConfig fields; target_modules as resolved (PEFT also writes "all-linear"
  // expanded).
  nlohmann::json j;
  j["peft_type"] = "LORA";
  j["task_type"] = "CAUSAL_LM";
  j["base_model_name_or_path"] = base_model;
  j["r"] = config_.r;
  if (config_.alpha == std::floor(config_.alpha)) j["lora_alpha"] = std::int64_t(config_.alpha);
  else j["lora_alpha"] = config_.alpha;
  j["lora_dropout"] = config_.dropout;
  j["target_modules"] = targets_;
  if (config_.modules_to_save.empty()) j["modules_to_save"] = nullptr;
  else j["modules_to_save"] = config_.modules_to_save;
  j["bias"] = "none";
  j["fan_in_fan_out"] = false;
  j["inference_mode"] = true;
  j["init_lora_weights"] = true;
  j["use_rslora"] = false;
  j["use_dora"] = false;
  j["layers_to_transform"] = nullptr;
  j["layers_pattern"] = nullptr;
  j["rank_pattern"] = nlohmann::json::object();
  j["alpha_pattern"] = nlohmann::json::object();
  j["revision"] = nullptr;
  write_file_durably(dir / "adapter_config.json", j.dump(2) + "\n");
}

void LoraAdapters::load(const fs::path& dir) {
  // load_into checks every name and shape first and copies nothing unless all match.
  load_into(dir / "adapter_model.safetensors", trainable());
}

void LoraAdapters::merge() {
  torch::NoGradGuard no_grad;
  for (auto& s : slots_) {
    auto delta = torch::matmul(s.adapter->B.to(torch::kFloat), s.adapter->A.to(torch::kFloat)) *
                 s.adapter->scaling;
    s.base_weight.copy_((s.base_weight.to(torch::kFloat) + delta.to(s.base_weight.device()))
                            .to(s.base_weight.scalar_type()));
  }
  slots_.clear();
  for (auto& layer : model_->model->layers) {
    layer->attention().adapters.clear();
    layer->feed_forward().adapters.clear();
  }
}

bool is_adapter_folder(const fs::path& dir) {
  std::error_code ec;
  return fs::is_regular_file(dir / "adapter_config.json", ec);
}

AdapterFolderConfig read_adapter_config(const fs::path& dir) {
  const fs::path file = dir / "adapter_config.json";
  std::ifstream in(file);
  if (!in) throw UserError(file.string() + ": cannot open");
  auto j = nlohmann::json::parse(in, nullptr, false);
  if (j.is_discarded() || !j.is_object()) throw UserError(file.string() + ": not a JSON object");
  auto bad = [&](const std::string& key, const std::string& what) -> UserError {
    return UserError(file.string() + ": " + key + " " + what);
  };
  if (j.value("peft_type", std::string()) != "LORA")
    throw bad("peft_type", "must be \"LORA\" (loom reads LoRA adapters only)");
  AdapterFolderConfig c;
  c.lora.enabled = true;
  if (!j.contains("r") || !j["r"].is_number_integer() || j["r"].get<std::int64_t>() < 1)
    throw bad("r", "must be an integer >= 1");
  c.lora.r = j["r"].get<std::int64_t>();
  if (!j.contains("lora_alpha") || !j["lora_alpha"].is_number() || j["lora_alpha"].get<double>() <= 0)
    throw bad("lora_alpha", "must be a number > 0");
  c.lora.alpha = j["lora_alpha"].get<double>();
  if (j.contains("lora_dropout") && j["lora_dropout"].is_number())
    c.lora.dropout = j["lora_dropout"].get<double>();
  const auto& t = j.value("target_modules", nlohmann::json());
  if (t.is_string()) {
    c.lora.target_modules = {t.get<std::string>()};
  } else if (t.is_array() && !t.empty()) {
    for (const auto& e : t) {
      if (!e.is_string()) throw bad("target_modules", "must be a list of module names");
      c.lora.target_modules.push_back(e.get<std::string>());
    }
  } else {
    throw bad("target_modules", "must be a list of module names");
  }
  if (j.contains("modules_to_save") && j["modules_to_save"].is_array())
    for (const auto& e : j["modules_to_save"])
      if (e.is_string()) c.lora.modules_to_save.push_back(e.get<std::string>());
  for (const char* key : {"use_dora", "use_rslora"})
    if (j.value(key, false)) throw bad(key, "is true: loom applies plain LoRA only");
  if (j.contains("bias") && j["bias"] != "none") throw bad("bias", "must be \"none\"");
  c.base_model = j.value("base_model_name_or_path", std::string());
  return c;
}

}  // namespace loom
