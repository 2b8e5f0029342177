#include "report/tensorboard_log.hpp"

#include <unistd.h>
#include <nlohmann/json.hpp>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <vector>

#include "errors.hpp"
#include "io/durable_file.hpp"

namespace loom {
namespace fs = std::filesystem;
namespace {

const std::string kEventPrefix = "events.out.tfevents.";

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// TensorBoard's naming: events.out.tfevents.<seconds>.<host>, here with the pid and a counter
// so that a run resumed within the same second gets a file of its own. The seconds are padded
// so that files sort by time (TensorBoard reads a folder's files in name order).
fs::path new_event_file_name(const fs::path& dir) {
  char host[256] = "localhost";
  if (gethostname(host, sizeof host - 1) != 0) std::strcpy(host, "localhost");
  host[sizeof host - 1] = '\0';
  const auto secs = static_cast<long long>(now_seconds());
  for (int n = 0;; ++n) {
    char name[512];
    std::snprintf(name, sizeof name, "%s%010lld.%s.%d.%d", kEventPrefix.c_str(), secs, host,
                  int(getpid()), n);
    if (!fs::exists(dir / name)) return dir / name;
  }
}

// --resume: events after the checkpoint's step were written by the run that died; they are cut
// (the file rewritten atomically) so the resumed run's events are the only ones for those steps.
void cut_after(const fs::path& dir, std::int64_t resume_step) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind(kEventPrefix, 0) != 0 || !entry.is_regular_file()) continue;
    std::string kept;
    std::size_t total = 0;
    for (const auto& record : read_tfrecords(entry.path())) {
      total += record.size() + 16;
      if (event_step(record) <= resume_step) kept += tfrecord_frame(record);
    }
    // Untouched when nothing is cut and nothing is torn.
    if (kept.size() == total && fs::file_size(entry.path(), ec) == total) continue;
    write_file_durably(entry.path(), kept);
  }
}

std::string indented(const std::string& text) {
  // A Markdown code block: shown as written, whatever characters the text holds.
  std::string out = "    ";
  for (char c : text) {
    out += c;
    if (c == '\n') out += "    ";
  }
  return out;
}

std::string percent(double share) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f%%", 100.0 * share);
  return buf;
}

}  // namespace

std::string sample_markdown(const std::string& json_line) {
  const auto j = nlohmann::json::parse(json_line);
  auto text = [&](const char* key) {
    return j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : std::string();
  };
  std::string md = "**Original**\n\n" + indented(text("original")) + "\n\n**Masked**";
  if (j.contains("masked_tokens") && j.contains("total_tokens") && j.contains("mask_ratio") &&
      j["mask_ratio"].is_number())
    md += " (" + j["masked_tokens"].dump() + "/" + j["total_tokens"].dump() + " tokens, " +
          percent(j["mask_ratio"].get<double>()) + ")";
  md += "\n\n" + indented(text("masked")) + "\n\n**Generated**";
  if (j.contains("accuracy") && j["accuracy"].is_number())
    md += " (" + percent(j["accuracy"].get<double>()) + " of fills correct)";
  md += "\n\n" + indented(text("generated")) + "\n";
  return md;
}

void TensorBoardLog::check_folder(const fs::path& output_dir) {
  const fs::path runs = folder(output_dir);
  const std::string what = "report_to tensorboard: ";
  std::error_code ec;
  if (fs::exists(runs, ec)) {
    if (!fs::is_directory(runs, ec))
      throw UserError(what + runs.string() + " exists and is not a folder (event files go there)");
    if (::access(runs.c_str(), W_OK | X_OK) != 0)
      throw UserError(what + "cannot write into " + runs.string() + ": " + std::strerror(errno));
    return;
  }
  // The folder is made when training starts: its nearest existing parent must take it.
  fs::path parent = runs.parent_path();
  while (!parent.empty() && !fs::exists(parent, ec)) parent = parent.parent_path();
  if (parent.empty()) parent = ".";
  if (!fs::is_directory(parent, ec))
    throw UserError(what + "cannot make " + runs.string() + ": " + parent.string() +
                    " is not a folder");
  if (::access(parent.c_str(), W_OK | X_OK) != 0)
    throw UserError(what + "cannot make " + runs.string() + ": " + parent.string() + ": " +
                    std::strerror(errno));
}

TensorBoardLog::TensorBoardLog(const fs::path& output_dir, std::int64_t resume_step,
                               const std::string& config_toml)
    : samples_path_(output_dir / "samples.jsonl") {
  const fs::path dir = folder(output_dir);
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec)
    throw UserError("report_to tensorboard: cannot make " + dir.string() + ": " + ec.message());
  bool earlier_files = false;
  for (const auto& entry : fs::directory_iterator(dir, ec))
    earlier_files |= entry.path().filename().string().rfind(kEventPrefix, 0) == 0;
  if (resume_step >= 0) cut_after(dir, resume_step);
  // Samples already in samples.jsonl belong to the run before (a resumed run's are in its
  // earlier event files).
  samples_offset_ = fs::exists(samples_path_, ec) ? fs::file_size(samples_path_, ec) : 0;
  file_ = std::make_unique<EventFileWriter>(new_event_file_name(dir), now_seconds());
  // The config at step 0, once: by the fresh run, or by a resumed one whose earlier part was
  // not reported to TensorBoard.
  if (resume_step < 0 || !earlier_files) {
    file_->add_text(0, now_seconds(), "config", indented(config_toml));
    file_->flush();
  }
}

TensorBoardLog::~TensorBoardLog() = default;

void TensorBoardLog::write(std::int64_t step, double epoch,
                           const std::map<std::string, double>& values) {
  std::vector<std::pair<std::string, double>> scalars(values.begin(), values.end());
  if (step != epoch_step_) {  // a step's train and eval lines share one epoch
    scalars.emplace_back("train/epoch", epoch);
    epoch_step_ = step;
  }
  file_->add_scalars(step, now_seconds(), scalars);
  file_->flush();
}

void TensorBoardLog::add_new_samples() {
  std::ifstream in(samples_path_, std::ios::binary);
  if (!in) return;
  in.seekg(std::streamoff(samples_offset_));
  std::string line;
  bool added = false;
  // Whole lines only: a line still being written is read at the next call.
  while (std::getline(in, line) && !in.eof()) {
    samples_offset_ += line.size() + 1;
    const auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("step") || !j["step"].is_number_integer())
      continue;
    const std::int64_t step = j["step"].get<std::int64_t>();
    samples_at_step_ = step == samples_step_ ? samples_at_step_ + 1 : 1;
    samples_step_ = step;
    file_->add_text(step, now_seconds(), "samples/" + std::to_string(samples_at_step_),
                    sample_markdown(line));
    added = true;
  }
  if (added) file_->flush();
}

}  // namespace loom
