// `trainer --nproc N`: runs N copies of this program on this machine as ranks 0..N-1 of one
// job, the way torchrun --standalone --nproc_per_node N would: each child gets RANK,
// LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR (127.0.0.1 unless set) and MASTER_PORT
// (a free port unless set). SIGINT/SIGTERM are forwarded to the ranks. When a rank fails, the
// others get a few seconds to notice (a closed connection is noticed at once) and report their
// own error, then they are killed; the launcher returns the first non-zero exit status
// (128 + signal for a rank killed by a signal), else 0.
#pragma once

#include <string>
#include <vector>

namespace loom {

class LocalLauncher {
 public:
  // `args`: this program's arguments (without argv[0]); --nproc is removed from them.
  LocalLauncher(int nproc, std::vector<std::string> args);
  int run();

  static std::vector<std::string> without_nproc(const std::vector<std::string>& args);
  static int free_port();  // an unused TCP port on 127.0.0.1

 private:
  int nproc_;
  std::vector<std::string> args_;
};

}  // namespace loom
