// Where this process sits in a data-parallel job, read from the variables torchrun, Slurm
// (with the variables exported) or `trainer --nproc` set: RANK, WORLD_SIZE, LOCAL_RANK,
// LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT (and torchrun's TORCHELASTIC_USE_AGENT_STORE,
// TORCHELASTIC_RESTART_COUNT). Without RANK/WORLD_SIZE it is a single process.
#pragma once

#include <string>

namespace loom {

struct LaunchEnvironment {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  int local_world_size = 1;  // ranks on this machine (for the default thread count)
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;  // torchrun's default
  // torchrun (PyTorch >= 2.3) may host the store itself in its agent and tell the ranks so with
  // TORCHELASTIC_USE_AGENT_STORE=True; then every rank is a client, under the prefix
  // /worker/attempt_<TORCHELASTIC_RESTART_COUNT>, as torch.distributed does.
  bool agent_store = false;
  std::string attempt = "0";

  bool distributed() const { return world_size > 1; }
  std::string endpoint() const { return master_addr + ":" + std::to_string(master_port); }

  // Throws UserError naming the variable when one is malformed or inconsistent.
  static LaunchEnvironment from_environment();
};

}  // namespace loom
