// Checkpoint folders in the Hugging Face layout (model.safetensors, config.json, tokenizer
// files) plus what resuming needs (optimizer.safetensors, trainer_state.json, the resolved
// config). Folders are written under a temporary name and renamed when complete, so a crash or
// Ctrl-C never leaves a half-written folder that --resume would pick up.
#pragma once

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "train/adamw.hpp"
#include "train/model_bundle.hpp"

namespace loom {

struct TrainerStateRecord {
  std::int64_t step = 0;  // optimizer steps completed
  double epoch = 0;
  std::int64_t optimizer_steps = 0;
  std::uint64_t seed = 0;
  int world_size = 1;
  // micro_batch_size x gradient_accumulation_steps x world_size: the rows of one optimizer
  // step. Resuming with the same global batch (whatever the world size) continues exactly.
  std::int64_t global_batch_rows = 0;  // 0: not recorded (older checkpoints)
};

// Writes `dir` atomically. `optimizer` may be null (model-only export, e.g. final/).
// `before_commit` runs with the temporary folder, to let plugins add files.
void write_checkpoint(const std::filesystem::path& dir, ModelBundle& bundle, const AdamW* optimizer,
                      const TrainerStateRecord& state, const std::string& resolved_toml,
                      const std::function<void(const std::filesystem::path&)>& before_commit);

// The checkpoint-<N> folder with the largest N in output_dir that checkpoint_problem finds
// nothing wrong with, or "" if none. Newer folders it passed over are added to `skipped` as
// "checkpoint-<N>: <what is wrong>". A folder left as checkpoint-<N>.old by a crash while it
// was being replaced is put back first.
std::filesystem::path find_latest_checkpoint(const std::filesystem::path& output_dir,
                                             std::vector<std::string>* skipped = nullptr);

// "" when `dir` holds everything resuming needs, each file readable (trainer_state.json,
// config.json and loom_config.toml parse; model and optimizer safetensors headers are sound);
// else what is wrong.
std::string checkpoint_problem(const std::filesystem::path& dir);

// Reads and validates trainer_state.json and checks the folder has every file resuming needs;
// throws UserError naming the folder and what is wrong.
TrainerStateRecord read_trainer_state(const std::filesystem::path& dir);

// Deletes the oldest checkpoint-<N> folders so at most `keep` remain (keep 0: no limit).
void prune_checkpoints(const std::filesystem::path& output_dir, std::int64_t keep);

}  // namespace loom
