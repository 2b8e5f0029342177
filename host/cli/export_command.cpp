// `trainer export --checkpoint DIR --merge OUT`: a LoRA adapter folded into its base
// (W + (lora_alpha / r) B A on each adapted linear) and written as a full model folder in the
// base's layout, which loads anywhere the base does (no PEFT needed). OUT must not exist; it
// appears complete or not at all (write_checkpoint's temporary folder and rename).
#include <toml++/toml.h>

#include <sstream>

#include "cli/command_setup.hpp"
#include "cli/commands.hpp"
#include "errors.hpp"
#include "train/checkpoint.hpp"
#include "train/model_bundle.hpp"

namespace loom {
namespace fs = std::filesystem;

void use_as_base(TrainConfig& cfg, const std::string& base, const std::string& adapter);

namespace {

// The resolved config without the LoRA keys: the merged folder is a plain model.
std::string without_lora_keys(const std::string& resolved_toml) {
  toml::table root = toml::parse(resolved_toml);
  for (const char* key : {"adapter", "lora_r", "lora_alpha", "lora_dropout", "lora_target_modules",
                          "lora_modules_to_save"})
    root.erase(key);
  std::ostringstream out;
  out << root;
  return out.str();
}

}  // namespace

int run_export(const ExportArgs& a) {
  const fs::path ckpt = a.adapter.empty() ? fs::path(a.checkpoint) : fs::path(a.adapter);
  if (!fs::is_directory(ckpt)) throw UserError("--checkpoint " + ckpt.string() + ": not a folder");
  if (!is_adapter_folder(ckpt))
    throw UserError(ckpt.string() + " holds no LoRA adapter (adapter_config.json): nothing to merge");
  const fs::path out = a.merge;
  std::error_code ec;
  if (fs::exists(out, ec)) throw UserError("--merge " + out.string() + ": already exists; nothing written");
  TrainConfig cfg = config_for(a.common, ckpt);
  if (!a.adapter.empty()) use_as_base(cfg, a.checkpoint, a.adapter);
  PluginSet plugins = plugins_for(a.common, cfg);
  plugins.configure(cfg, run_info_for(cfg, "export"));
  // Merged in fp32 (bf16 = false keeps the base weights fp32 while loading).
  cfg.bf16 = false;
  ModelBundle b = build_model_bundle(cfg, ckpt, plugins, /*training=*/false);
  b.lora->merge();
  b.lora.reset();
  for (auto& p : b.model->model()->parameters()) p.requires_grad_(true);
  TrainerStateRecord none;
  write_checkpoint(out, b, nullptr, none, without_lora_keys(cfg.resolved_toml), nullptr);
  std::printf("merged %s into %s: %s\n", ckpt.string().c_str(), b.base_model.c_str(), out.string().c_str());
  return 0;
}

}  // namespace loom
