// trainer: the loom command-line program. Everything happens in cli/.
#include <unistd.h>

#include <cstdlib>

#include "cli/cli.hpp"

int main(int argc, char** argv) {
  // Passive OpenMP waits unless the user chose: libgomp's default lets idle workers spin, and
  // on cores shared with other processes that made training and evaluation several times
  // slower (docs/performance.md, "Under load"). libgomp reads the variable when it is loaded,
  // before main(), so the program starts itself again with it set. OMP_WAIT_POLICY set to
  // anything (even empty: libgomp's default) is left as it is.
  if (std::getenv("OMP_WAIT_POLICY") == nullptr && ::setenv("OMP_WAIT_POLICY", "PASSIVE", 1) == 0)
    ::execv("/proc/self/exe", argv);  // returns only on failure: then run as we are
  return loom::run_cli(argc, argv);
}
