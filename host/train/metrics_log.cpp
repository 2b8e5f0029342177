#include "train/metrics_log.hpp"

#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>
#include <sstream>
#include <vector>

#include "errors.hpp"
#include "io/durable_file.hpp"

namespace loom {

MetricsLog::MetricsLog(const std::filesystem::path& dir, std::int64_t resume_step)
    : path_(dir / "metrics.jsonl") {
  std::string keep;
  if (resume_step >= 0) {
    // The history up to the checkpoint's step; records after it (and a torn last line) are
    // dropped by replacing the file atomically, so it is never shorter than that history.
    std::ifstream in(path_);
    for (std::string line; std::getline(in, line);) {
      auto j = nlohmann::json::parse(line, nullptr, false);
      if (!j.is_discarded() && j.contains("step") && j["step"].is_number() &&
          j["step"].get<std::int64_t>() <= resume_step)
        keep += line + "\n";
    }
  }
  write_file_durably(path_, keep);
}

double MetricsLog::rounded_epoch(double epoch) { return std::round(epoch * 1e4) / 1e4; }

void MetricsLog::write(std::int64_t step, double epoch, const std::map<std::string, double>& values) {
  nlohmann::json j;
  j["step"] = step;
  j["epoch"] = rounded_epoch(epoch);
  for (const auto& [k, v] : values) {
    if (std::isfinite(v)) j[k] = v;
    else j[k] = nullptr;  // JSON has no NaN; null says "not a number" honestly
  }
  append_durably(path_, j.dump() + "\n");  // a failed write stops the run, leaves no torn line
}

}  // namespace loom
