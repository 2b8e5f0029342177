// `trainer bench`: placeholder until the benchmark lands (issue 5).
#include "cli/commands.hpp"
#include "errors.hpp"

namespace loom {

int run_bench(const BenchArgs&) { throw UserError("trainer bench is not implemented yet"); }

}  // namespace loom
