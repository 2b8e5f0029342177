// metrics.jsonl in the output folder: one JSON object per logged step or evaluation.
#pragma once

#include <filesystem>
#include <map>
#include <string>

namespace loom {

class MetricsLog {
 public:
  // Opens (creating) <dir>/metrics.jsonl. With resume_step >= 0, records after that step are
  // dropped first, so a resumed run's log reads as one uninterrupted run.
  MetricsLog(const std::filesystem::path& dir, std::int64_t resume_step);
  void write(std::int64_t step, double epoch, const std::map<std::string, double>& values);
  const std::filesystem::path& path() const { return path_; }
  // The epoch as written (4 decimals), for other logs of the same values.
  static double rounded_epoch(double epoch);

 private:
  std::filesystem::path path_;
};

}  // namespace loom
