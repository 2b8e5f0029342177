// report_to = ["tensorboard"]: what the trainer logs, also as TensorBoard event files under
// <output_dir>/runs/ -- every scalar of metrics.jsonl at its step, the samples plugins append to
// samples.jsonl as text, the run's config as text at step 0. Rank 0 writes; every write is
// flushed, so a crash loses at most the interval being logged.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>

#include "report/event_file_writer.hpp"

namespace loom {

class TensorBoardLog {
 public:
  // Opens a new event file in <output_dir>/runs/ (made if needed). With resume_step >= 0 (a
  // --resume), events after that step are first cut from the earlier files, as metrics.jsonl
  // is, so the folder reads as one uninterrupted run. The config is written at step 0 unless
  // earlier event files (which have it) are there.
  TensorBoardLog(const std::filesystem::path& output_dir, std::int64_t resume_step,
                 const std::string& config_toml);
  ~TensorBoardLog();

  // One line of metrics.jsonl: its values as scalars under the same names, and the epoch as
  // train/epoch (once per step). Flushed.
  void write(std::int64_t step, double epoch, const std::map<std::string, double>& values);
  // The samples appended to samples.jsonl since the last call (or since this log was opened),
  // as text at their steps: samples/1, samples/2, ... Flushed.
  void add_new_samples();

  const std::filesystem::path& file() const { return file_->path(); }

  static std::filesystem::path folder(const std::filesystem::path& output_dir) {
    return output_dir / "runs";
  }
  // What `trainer train` and `trainer check` refuse before anything runs: a runs/ folder that
  // cannot be made or written (it is not made here). Throws UserError naming it.
  static void check_folder(const std::filesystem::path& output_dir);

 private:
  std::unique_ptr<EventFileWriter> file_;
  std::filesystem::path samples_path_;
  std::uintmax_t samples_offset_ = 0;
  std::int64_t epoch_step_ = -1;  // the last step whose train/epoch was written
  std::int64_t samples_step_ = -1;
  int samples_at_step_ = 0;
};

// The Markdown TensorBoard shows for one samples.jsonl record (a JSON object).
std::string sample_markdown(const std::string& json_line);

}  // namespace loom
