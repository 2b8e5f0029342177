#include "report/run_history.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "errors.hpp"

namespace loom {
namespace fs = std::filesystem;
namespace {

std::string read_text(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Each line's JSON object; lines that are not one (a torn last line) are counted, not fatal.
template <typename Each>
void for_each_json_line(const fs::path& file, int& skipped, Each each) {
  std::ifstream in(file, std::ios::binary);
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("step") ||
        !j["step"].is_number_integer()) {
      ++skipped;
      continue;
    }
    each(j);
  }
}

std::optional<double> number(const nlohmann::json& j, const char* key) {
  if (!j.contains(key) || !j[key].is_number()) return std::nullopt;
  return j[key].get<double>();
}

std::string text(const nlohmann::json& j, const char* key) {
  return j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : std::string();
}

std::uintmax_t folder_bytes(const fs::path& dir) {
  std::uintmax_t total = 0;
  std::error_code ec;
  for (const auto& e : fs::recursive_directory_iterator(dir, ec))
    if (e.is_regular_file(ec)) total += e.file_size(ec);
  return total;
}

}  // namespace

RunHistory RunHistory::read(const fs::path& run_dir) {
  RunHistory h;
  h.folder_ = run_dir;
  std::error_code ec;
  if (!fs::is_directory(run_dir, ec))
    throw UserError("--run " + run_dir.string() + ": no such folder");
  const fs::path metrics = run_dir / "metrics.jsonl";
  if (!fs::is_regular_file(metrics, ec))
    throw UserError("--run " + run_dir.string() +
                    ": no metrics.jsonl (not a loom output_dir, or a run that has not logged yet)");
  for_each_json_line(metrics, h.skipped_lines_, [&](const nlohmann::json& j) {
    MetricsRow row;
    row.step = j["step"].get<std::int64_t>();
    for (const auto& [k, v] : j.items()) {
      if (k == "step") continue;
      if (v.is_number())
        row.values[k] = v.get<double>();
      else if (v.is_null())
        row.values[k] = std::nullopt;
    }
    h.rows_.push_back(std::move(row));
  });
  if (fs::is_regular_file(run_dir / "samples.jsonl", ec))
    for_each_json_line(run_dir / "samples.jsonl", h.skipped_lines_, [&](const nlohmann::json& j) {
      SampleRecord s;
      s.step = j["step"].get<std::int64_t>();
      s.original = text(j, "original");
      s.masked = text(j, "masked");
      s.generated = text(j, "generated");
      s.mask_ratio = number(j, "mask_ratio");
      s.accuracy = number(j, "accuracy");
      s.masked_tokens = std::int64_t(number(j, "masked_tokens").value_or(0));
      s.total_tokens = std::int64_t(number(j, "total_tokens").value_or(0));
      h.samples_.push_back(std::move(s));
    });

  static const std::regex checkpoint_name(R"(checkpoint-([0-9]+)|final)");
  for (const auto& e : fs::directory_iterator(run_dir, ec)) {
    const std::string name = e.path().filename().string();
    if (!e.is_directory(ec) || !std::regex_match(name, checkpoint_name)) continue;
    CheckpointEntry c;
    c.name = name;
    c.bytes = folder_bytes(e.path());
    auto state = nlohmann::json::parse(read_text(e.path() / "trainer_state.json"), nullptr, false);
    if (!state.is_discarded() && state.is_object() && state.contains("step") &&
        state["step"].is_number_integer())
      c.step = state["step"].get<std::int64_t>();
    // Folders are renamed into place only when complete (io/durable_file.hpp); these files are
    // checked anyway, for a folder copied by hand.
    // A LoRA run's final/ holds the adapter (adapter_config.json) instead of the model.
    c.complete = name == "final" ? fs::is_regular_file(e.path() / "config.json", ec) ||
                                       fs::is_regular_file(e.path() / "adapter_config.json", ec)
                                 : c.step >= 0;
    h.checkpoints_.push_back(c);
  }
  std::sort(h.checkpoints_.begin(), h.checkpoints_.end(), [](const auto& a, const auto& b) {
    if (a.name == "final" || b.name == "final") return b.name == "final" && a.name != "final";
    // By number (checkpoint-10 after checkpoint-9), as strings of digits: no overflow.
    const std::string x = a.name.substr(11), y = b.name.substr(11);
    return x.size() != y.size() ? x.size() < y.size() : x < y;
  });
  // The config: final/'s, else the newest checkpoint's (each holds the run's resolved config).
  for (auto it = h.checkpoints_.rbegin(); it != h.checkpoints_.rend(); ++it) {
    const fs::path file = run_dir / it->name / "loom_config.toml";
    if (fs::is_regular_file(file, ec)) {
      h.config_toml_ = read_text(file);
      h.config_from_ = (fs::path(it->name) / "loom_config.toml").string();
      break;
    }
  }
  return h;
}

bool RunHistory::finished() const {
  return std::any_of(checkpoints_.begin(), checkpoints_.end(),
                     [](const auto& c) { return c.name == "final" && c.complete; });
}

std::vector<std::pair<std::int64_t, double>> RunHistory::series(const std::string& key) const {
  std::vector<std::pair<std::int64_t, double>> points;
  for (const auto& row : rows_) {
    auto it = row.values.find(key);
    if (it != row.values.end() && it->second && std::isfinite(*it->second))
      points.emplace_back(row.step, *it->second);
  }
  return points;
}

std::vector<std::string> RunHistory::metric_names() const {
  std::set<std::string> names;
  for (const auto& row : rows_)
    for (const auto& [k, v] : row.values)
      if (v && std::isfinite(*v)) names.insert(k);
  return {names.begin(), names.end()};
}

}  // namespace loom
