#include "train/metrics_log.hpp"

#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>
#include <sstream>
#include <vector>

#include "errors.hpp"

namespace loom {

MetricsLog::MetricsLog(const std::filesystem::path& dir, std::int64_t resume_step)
    : path_(dir / "metrics.jsonl") {
  std::vector<std::string> keep;
  if (resume_step >= 0) {
    std::ifstream in(path_);
    for (std::string line; std::getline(in, line);) {
      auto j = nlohmann::json::parse(line, nullptr, false);
      if (!j.is_discarded() && j.contains("step") && j["step"].is_number() &&
          j["step"].get<std::int64_t>() <= resume_step)
        keep.push_back(line);
    }
  }
  std::ofstream out(path_, std::ios::trunc);
  if (!out) throw UserError(path_.string() + ": cannot write");
  for (const auto& l : keep) out << l << "\n";
}

void MetricsLog::write(std::int64_t step, double epoch, const std::map<std::string, double>& values) {
  nlohmann::json j;
  j["step"] = step;
  j["epoch"] = std::round(epoch * 1e4) / 1e4;
  for (const auto& [k, v] : values) {
    if (std::isfinite(v)) j[k] = v;
    else j[k] = nullptr;  // JSON has no NaN; null says "not a number" honestly
  }
  std::ofstream out(path_, std::ios::app);
  out << j.dump() << "\n";
}

}  // namespace loom
