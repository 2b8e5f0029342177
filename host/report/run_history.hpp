// What a run folder holds, read for `trainer report`: metrics.jsonl, samples.jsonl, the
// checkpoints and the config. Works on a run that is still going or was killed: a line that
// does not parse (the last one, cut short) is skipped and counted.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace loom {

struct MetricsRow {
  std::int64_t step = 0;
  std::map<std::string, std::optional<double>> values;  // null in the file: nullopt
};

struct SampleRecord {
  std::int64_t step = 0;
  std::string original, masked, generated;
  std::optional<double> mask_ratio, accuracy;
  std::int64_t masked_tokens = 0, total_tokens = 0;
};

struct CheckpointEntry {
  std::string name;          // checkpoint-<step> or final
  std::int64_t step = -1;    // trainer_state.json's; -1 when it has none (final/ has none)
  bool complete = false;     // checkpoint: trainer_state.json parses; final/: config.json is there
  std::uintmax_t bytes = 0;  // on disk, every file in it
};

class RunHistory {
 public:
  // Throws UserError when the folder or its metrics.jsonl is missing.
  static RunHistory read(const std::filesystem::path& run_dir);

  const std::filesystem::path& folder() const { return folder_; }
  const std::vector<MetricsRow>& rows() const { return rows_; }
  const std::vector<SampleRecord>& samples() const { return samples_; }
  const std::vector<CheckpointEntry>& checkpoints() const { return checkpoints_; }
  // loom_config.toml of final/, else of the newest checkpoint; empty when there is none yet.
  const std::string& config_toml() const { return config_toml_; }
  const std::string& config_from() const { return config_from_; }
  int skipped_lines() const { return skipped_lines_; }
  bool finished() const;  // final/ is there

  // The (step, value) points of one metric, in file order, finite values only.
  std::vector<std::pair<std::int64_t, double>> series(const std::string& key) const;
  // Every metric name that has at least one finite value, sorted.
  std::vector<std::string> metric_names() const;

 private:
  std::filesystem::path folder_;
  std::vector<MetricsRow> rows_;
  std::vector<SampleRecord> samples_;
  std::vector<CheckpointEntry> checkpoints_;
  std::string config_toml_, config_from_;
  int skipped_lines_ = 0;
};

}  // namespace loom
