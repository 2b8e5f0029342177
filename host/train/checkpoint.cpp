#include "train/checkpoint.hpp"

#include <nlohmann/json.hpp>

#include <fstream>
#include <iterator>
#include <regex>

#include "errors.hpp"
#include "io/durable_file.hpp"
#include "config/config_loader.hpp"
#include "io/hf_config.hpp"
#include "io/safetensors_file.hpp"
#include "io/tensor_io.hpp"
#include "loom/sdk/version.hpp"

namespace loom {
namespace fs = std::filesystem;

namespace {

std::int64_t checkpoint_step(const fs::path& p) {
  static const std::regex re("checkpoint-([0-9]+)");
  std::smatch m;
  std::string name = p.filename().string();
  if (!std::regex_match(name, m, re)) return -1;
  return std::stoll(m[1]);
}

// The top-level *.py files of the folder the model came from: transformers' remote code
// (config.json's auto_map names them, e.g. modeling_llada.py; they import each other, so all
// are copied). Without them `from_pretrained(..., trust_remote_code=True)` cannot load the
// checkpoint.
void copy_model_code(const fs::path& from, const fs::path& to) {
  std::error_code ec;
  if (from.empty() || !fs::is_directory(from, ec)) return;
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(from, ec))
    if (e.path().extension() == ".py" && e.is_regular_file(ec)) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  for (const fs::path& file : files) {
    std::ifstream in(file, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (!in.good() && !in.eof()) throw UserError(file.string() + ": cannot be read");
    write_file_durably(to / file.filename(), bytes);
  }
}

std::vector<std::pair<std::int64_t, fs::path>> list_checkpoints(const fs::path& out) {
  std::vector<std::pair<std::int64_t, fs::path>> v;
  std::error_code ec;
  if (!fs::is_directory(out, ec)) return v;
  for (const auto& e : fs::directory_iterator(out, ec)) {
    auto step = checkpoint_step(e.path());
    if (step >= 0 && e.is_directory()) v.emplace_back(step, e.path());
  }
  std::sort(v.begin(), v.end());
  return v;
}

}  // namespace

void write_checkpoint(const fs::path& dir, ModelBundle& bundle, const AdamW* optimizer,
                      const TrainerStateRecord& state, const std::string& resolved_toml,
                      const std::function<void(const fs::path&)>& before_commit) {
  const fs::path tmp = dir.string() + ".tmp";
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  auto& model = bundle.model->model();
  if (bundle.lora) {
    // A LoRA run: the PEFT adapter (adapter_config.json naming the base, and
    // adapter_model.safetensors) instead of a copy of the frozen base.
    bundle.lora->save(tmp, bundle.base_model);
  } else {
    // Checkpoints are always fp32 on disk: CPU copies of the parameters.
    std::vector<std::pair<std::string, torch::Tensor>> weights;
    for (auto& [name, t] : named_weights(model))
      weights.emplace_back(name, t.detach().to(torch::kCPU, torch::kFloat).contiguous());
    save_tensors(tmp / "model.safetensors", weights, {{"format", "pt"}});
  }
  ModelConfig mc = model->config();
  mc.torch_dtype = "float32";
  if (auto bos = bundle.tokenizer->bos_id()) mc.bos_token_id = *bos;
  if (auto eos = bundle.tokenizer->eos_id()) mc.eos_token_id = *eos;
  if (auto pad = bundle.tokenizer->pad_id()) mc.pad_token_id = *pad;
  if (!bundle.lora) write_hf_config(tmp / "config.json", mc);
  bundle.tokenizer->save(tmp);
  copy_model_code(bundle.source_dir, tmp);
  if (optimizer) {
    std::vector<std::pair<std::string, torch::Tensor>> st;
    for (auto& [name, t] : optimizer->state())
      st.emplace_back(name, t.detach().to(torch::kCPU).contiguous());
    save_tensors(tmp / "optimizer.safetensors", st, {});
    nlohmann::json j;
    j["step"] = state.step;
    j["epoch"] = state.epoch;
    j["optimizer_steps"] = state.optimizer_steps;
    j["seed"] = state.seed;
    j["world_size"] = state.world_size;
    j["global_batch_rows"] = state.global_batch_rows;
    j["loom_version"] = LOOM_VERSION;
    j["sdk_abi"] = std::to_string(LOOM_SDK_ABI_MAJOR) + "." + std::to_string(LOOM_SDK_ABI_MINOR);
    write_file_durably(tmp / "trainer_state.json", j.dump(2) + "\n");
  }
  // The resolved config, so `trainer generate/eval --checkpoint` know the plugins and keys.
  write_file_durably(tmp / "loom_config.toml", resolved_toml + "\n");
  if (before_commit) before_commit(tmp);
  sync_directory(tmp);
  // The folder being replaced (re-saving the step a run resumed from) stays until the new one
  // is in place.
  replace_folder(tmp, dir);
}

fs::path find_latest_checkpoint(const fs::path& output_dir, std::vector<std::string>* skipped) {
  std::error_code ec;
  std::vector<fs::path> entries;
  if (fs::is_directory(output_dir, ec))
    for (const auto& e : fs::directory_iterator(output_dir, ec)) entries.push_back(e.path());
  for (const fs::path& entry : entries) {
    // What a run killed while saving leaves: <name>.old (the fallback's old folder) is put
    // back if <name> is missing; otherwise it, and a <name>.tmp beside a committed <name>
    // (old contents after the exchange, or an unfinished re-save), is only old data.
    const std::string name = entry.filename().string();
    const bool old = name.size() > 4 && name.compare(name.size() - 4, 4, ".old") == 0;
    const bool tmp = name.size() > 4 && name.compare(name.size() - 4, 4, ".tmp") == 0;
    if (!old && !tmp) continue;
    const fs::path committed = entry.parent_path() / name.substr(0, name.size() - 4);
    if (checkpoint_step(committed) < 0) continue;
    if (old) recover_replaced_folder(committed);
    std::error_code rm;
    if (fs::is_directory(committed, rm) && fs::exists(entry, rm)) fs::remove_all(entry, rm);
  }
  auto all = list_checkpoints(output_dir);
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    const std::string problem = checkpoint_problem(it->second);
    if (problem.empty()) return it->second;
    if (skipped) skipped->push_back(it->second.filename().string() + ": " + problem);
  }
  return {};
}

std::string checkpoint_problem(const fs::path& dir) {
  try {
    read_trainer_state(dir);
    if (is_adapter_folder(dir)) {
      read_adapter_config(dir);
      SafetensorsFile::open(dir / "adapter_model.safetensors");
    } else {
      read_hf_config(dir / "config.json");
      SafetensorsFile::open(dir / "model.safetensors");
    }
    SafetensorsFile::open(dir / "optimizer.safetensors");
    std::error_code ec;
    if (!fs::exists(dir / "loom_config.toml") || fs::file_size(dir / "loom_config.toml", ec) == 0)
      return "loom_config.toml is missing or empty";
    (void)load_train_config(dir / "loom_config.toml", {});
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

TrainerStateRecord read_trainer_state(const fs::path& dir) {
  if (!fs::is_directory(dir)) throw UserError("checkpoint " + dir.string() + ": not a folder");
  // A LoRA checkpoint holds the adapter in place of the model.
  const bool adapter = is_adapter_folder(dir);
  for (const char* f : {"model.safetensors", "config.json", "optimizer.safetensors",
                        "trainer_state.json", "tokenizer.json"}) {
    std::string file = f;
    if (adapter && file == "model.safetensors") file = "adapter_model.safetensors";
    if (adapter && file == "config.json") continue;
    if (!fs::exists(dir / file))
      throw UserError("checkpoint " + dir.string() + " is incomplete or corrupt: " + file +
                      " is missing");
  }
  std::ifstream in(dir / "trainer_state.json");
  auto j = nlohmann::json::parse(in, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("step") || !j["step"].is_number_integer() ||
      j["step"].get<std::int64_t>() < 0)
    throw UserError("checkpoint " + dir.string() + ": trainer_state.json is corrupt");
  TrainerStateRecord r;
  r.step = j["step"].get<std::int64_t>();
  r.epoch = j.value("epoch", 0.0);
  r.optimizer_steps = j.value("optimizer_steps", r.step);
  r.seed = j.value("seed", std::uint64_t(0));
  r.world_size = j.value("world_size", 1);
  r.global_batch_rows = j.value("global_batch_rows", std::int64_t(0));
  return r;
}

void prune_checkpoints(const fs::path& output_dir, std::int64_t keep) {
  if (keep <= 0) return;
  auto all = list_checkpoints(output_dir);
  for (std::size_t i = 0; i + std::size_t(keep) < all.size(); ++i) fs::remove_all(all[i].second);
}

}  // namespace loom
