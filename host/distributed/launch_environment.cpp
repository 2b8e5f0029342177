#include "distributed/launch_environment.hpp"

#include <cstdlib>

#include "errors.hpp"

namespace loom {
namespace {

const char* env(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? v : nullptr;
}

int env_int(const char* name, int fallback, int min, int max) {
  const char* v = env(name);
  if (!v) return fallback;
  char* end = nullptr;
  const long n = std::strtol(v, &end, 10);
  if (*end != '\0' || n < min || n > max)
    throw UserError(std::string("environment variable ") + name + "=" + v +
                    ": expected an integer in [" + std::to_string(min) + ", " +
                    std::to_string(max) + "]");
  return int(n);
}

}  // namespace

LaunchEnvironment LaunchEnvironment::from_environment() {
  LaunchEnvironment e;
  e.world_size = env_int("WORLD_SIZE", 1, 1, 1 << 20);
  e.rank = env_int("RANK", 0, 0, 1 << 20);
  if (e.rank >= e.world_size)
    throw UserError("RANK=" + std::to_string(e.rank) +
                    " is not below WORLD_SIZE=" + std::to_string(e.world_size));
  if (env("WORLD_SIZE") && e.world_size > 1 && !env("RANK"))
    throw UserError("WORLD_SIZE=" + std::to_string(e.world_size) +
                    " is set but RANK is not (launch with torchrun, srun, or trainer --nproc)");
  e.local_rank = env_int("LOCAL_RANK", e.rank, 0, 1 << 20);
  e.local_world_size = env_int("LOCAL_WORLD_SIZE", e.world_size, 1, 1 << 20);
  if (const char* a = env("MASTER_ADDR")) e.master_addr = a;
  e.master_port = env_int("MASTER_PORT", e.master_port, 1, 65535);
  if (const char* a = env("TORCHELASTIC_USE_AGENT_STORE")) e.agent_store = std::string(a) == "True";
  if (const char* a = env("TORCHELASTIC_RESTART_COUNT")) e.attempt = a;
  if (e.world_size > 1 && !env("MASTER_ADDR"))
    throw UserError("WORLD_SIZE=" + std::to_string(e.world_size) +
                    " but MASTER_ADDR is not set (the host of rank 0, where the ranks meet)");
  return e;
}

}  // namespace loom
