#include "train/preflight.hpp"

#include <filesystem>

#include "errors.hpp"
#include "model/llama_model.hpp"
#include "report/tensorboard_log.hpp"
#include "train/model_bundle.hpp"

namespace loom {

void check_run_inputs(const TrainConfig& cfg) {
  resolve_attention_kernel(attention_kernel_from_name(cfg.attn_implementation), resolve_device(cfg.device));
  if (cfg.datasets.empty())
    throw UserError(cfg.source.string() + ": no [[datasets]] given (nothing to train on)");
  for (const auto& d : cfg.datasets)
    if (!std::filesystem::exists(d.path)) throw UserError("dataset " + d.path + ": file not found");
  if (!cfg.base_model.empty() && !std::filesystem::exists(std::filesystem::path(cfg.base_model) / "config.json"))
    throw UserError("base_model " + cfg.base_model + ": config.json not found");
  for (const auto& target : cfg.report_to)
    if (target == "tensorboard") TensorBoardLog::check_folder(cfg.output_dir);
}

}  // namespace loom
