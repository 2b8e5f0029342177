// `trainer report --run OUTPUT_DIR [--out FILE]`: one self-contained HTML page about a run.
#include <spdlog/spdlog.h>

#include <cstdio>

#include "cli/commands.hpp"
#include "io/durable_file.hpp"
#include "report/run_history.hpp"
#include "report/run_report.hpp"

namespace loom {

int run_report(const ReportArgs& args) {
  const RunHistory run = RunHistory::read(args.run);
  const std::string out =
      args.out.empty() ? (std::filesystem::path(args.run) / "report.html").string() : args.out;
  write_file_durably(out, render_run_report(run));
  std::printf("%s: %zu metrics lines, %zu samples, %zu checkpoints%s\n", out.c_str(),
              run.rows().size(), run.samples().size(), run.checkpoints().size(),
              run.finished() ? "" : " (run not finished)");
  return 0;
}

}  // namespace loom
