// `trainer train` and `trainer check`.
#include <spdlog/spdlog.h>

#include <filesystem>

#include "cli/command_setup.hpp"
#include "cli/commands.hpp"
#include "config/config_loader.hpp"
#include "distributed/launch_environment.hpp"
#include "distributed/local_launcher.hpp"
#include "distributed/process_group.hpp"
#include "errors.hpp"
#include "train/model_bundle.hpp"
#include "train/preflight.hpp"
#include "train/run_folder.hpp"
#include "train/trainer.hpp"

namespace loom {

int run_train(const TrainArgs& args) {
  const LaunchEnvironment env = LaunchEnvironment::from_environment();
  if (args.nproc > 1) {
    if (env.distributed())
      throw UserError("--nproc " + std::to_string(args.nproc) +
                      ": this process already is rank " + std::to_string(env.rank) +
                      " of WORLD_SIZE=" + std::to_string(env.world_size) +
                      " (torchrun or srun started the ranks); drop --nproc");
    // A config or output_dir problem is reported once, not by every rank.
    const TrainConfig cfg = config_for(args.common);
    check_run_inputs(cfg);
    if (std::filesystem::exists(cfg.output_dir)) {  // (no folder is made before the ranks start)
      RunFolderLock lock(cfg.output_dir);  // released here: the ranks' rank 0 takes it for the run
      if (!args.resume) prepare_fresh_run_folder(cfg.output_dir, args.overwrite);
    }
    return LocalLauncher(args.nproc, args.command_line).run();
  }
  TrainConfig cfg = config_for(args.common);
  check_run_inputs(cfg);
  PluginSet plugins = plugins_for(args.common, cfg);
  record_command_line_plugins(cfg, args.common.plugins);  // checkpoints remember them
  TrainOptions opt;
  opt.resume = args.resume;
  opt.resume_dir = args.resume_dir;
  opt.progress = args.progress;
  opt.rank = env.rank;
  opt.world_size = env.world_size;
  opt.local_world_size = env.local_world_size;
  if (env.distributed()) {
    // One GPU per rank: LOCAL_RANK picks it.
    torch::Device device = resolve_device(cfg.device);
    if (device.is_cuda()) {
      cfg.device = "cuda:" + std::to_string(env.local_rank);
      device = resolve_device(cfg.device);
    }
    ProcessGroupOptions po;
    po.backend = cfg.distributed_backend;
    po.timeout = std::chrono::milliseconds(std::int64_t(cfg.distributed_timeout_s * 1000.0));
    po.device = device;
    opt.group = std::make_shared<ProcessGroup>(env, po);
  }
  // The output folder is this run's while it runs (rank 0 holds the lock for all ranks); taken
  // once the ranks are connected, so a run that cannot start leaves no folder behind.
  // Rank 0's verdict is shared with every rank, so that a refused folder ends all of them at
  // once with its reason (instead of leaving them to time out waiting for rank 0).
  RunFolderLock lock;
  std::string refused;
  if (env.rank == 0) {
    try {
      lock = RunFolderLock(cfg.output_dir);
      if (!args.resume) prepare_fresh_run_folder(cfg.output_dir, args.overwrite);
    } catch (const UserError& e) {
      refused = e.what();
      if (refused.empty()) refused = "output_dir " + cfg.output_dir + " refused";
    }
  }
  if (opt.group) {
    refused = opt.group->from_rank0("output folder check", refused);
    // Rank 0 hosts the store: it leaves only after every rank has read the verdict.
    if (!refused.empty()) opt.group->all_gather("", "output folder refusal");
  }
  if (!refused.empty())
    throw UserError(env.rank == 0 ? refused : "rank 0 refused the output folder: " + refused);
  Trainer trainer(cfg, plugins, opt);
  return trainer.run();
}

int run_check(const CheckArgs& check) {
  // What `trainer train` checks before it starts, then the plugins' tables, as training
  // configures them.
  const CommonOptions& args = check.common;
  TrainConfig cfg = config_for(args);
  check_run_inputs(cfg);
  PluginSet plugins = plugins_for(args, cfg);
  plugins.configure(cfg, run_info_for(cfg, "check"));
  std::string names;
  for (const auto& p : plugins.plugins()) names += (names.empty() ? "" : ", ") + p.name;
  std::printf("%s: OK (plugins: %s; objective: %s)\n", cfg.source.string().c_str(),
              names.empty() ? "none" : names.c_str(),
              plugins.owns_loss() ? "plugin loss" : "causal LM");
  if (check.print_config) {
    record_command_line_plugins(cfg, args.plugins);  // as a training run records them
    std::fputs(cfg.resolved_toml.c_str(), stdout);
    if (!cfg.resolved_toml.empty() && cfg.resolved_toml.back() != '\n') std::fputc('\n', stdout);
  }
  return 0;
}

}  // namespace loom
