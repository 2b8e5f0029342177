// End-to-end: `trainer report` on a real diffusion run, opened in headless Chromium (Debian's
// `chromium`): the page's curves hold as many points as metrics.jsonl has values, every sample
// is there, and a screenshot is saved under the build folder (report-test/report.png). Skipped
// where chromium is not installed (scripts/setup.sh installs it with LOOM_REFERENCE_TESTS=1).
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <map>
#include <regex>
#include <set>

#include "e2e/tiny_run.hpp"

namespace loom::test {
namespace {
namespace fs = std::filesystem;

const std::string kPlugin = std::string(LOOM_BINARY_DIR) + "/plugins/libdiffusion.so";

std::string report_run_config(const fs::path& out) {
  return tiny_config(out, 12,
                     "plugins = [\"" + kPlugin +
                         "\"]\nval_set_size = 0.05\neval_steps = 6\n"
                         "eval_max_batches = 2\nsave_steps = 6\n") +
         "\n[diffusion]\ngeneration_interval = 6\nnum_generation_samples = 2\n"
         "generation_steps = 4\ngeneration_max_length = 16\n";
}

// One trained run per test process.
const fs::path& trained_run() {
  static const fs::path dir = [] {
    auto d = fresh_dir("report-" + std::to_string(getpid()));
    write_file(d / "c.toml", report_run_config(d / "out"));
    auto r = run_trainer({"--config", (d / "c.toml").string(), "--no-progress"});
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return d;
  }();
  return dir;
}

// Finite values per metric in metrics.jsonl (the points each curve must have), counted here
// from the file, independently of the report's reader.
std::map<std::string, int> value_counts(const fs::path& out) {
  std::map<std::string, int> counts;
  for (const auto& row : read_metrics(out))
    for (const auto& [k, v] : row.items())
      if (k != "step" && k != "epoch" && v.is_number() && std::isfinite(v.get<double>()))
        ++counts[k];
  return counts;
}

// data-series -> (data-points, number of x,y pairs in points="...") of every polyline.
std::map<std::string, std::pair<int, int>> curves_in(const std::string& html) {
  std::map<std::string, std::pair<int, int>> curves;
  static const std::regex polyline("<polyline[^>]*>"), series("data-series=\"([^\"]*)\""),
      declared("data-points=\"([0-9]+)\""), points(" points=\"([^\"]*)\"");
  for (auto it = std::sregex_iterator(html.begin(), html.end(), polyline);
       it != std::sregex_iterator(); ++it) {
    const std::string tag = it->str();
    std::smatch s, d, p;
    if (!std::regex_search(tag, s, series) || !std::regex_search(tag, d, declared) ||
        !std::regex_search(tag, p, points))
      continue;
    const std::string pts = p[1];
    int pairs = 0;
    for (char c : pts) pairs += c == ',';
    curves[s[1]] = {std::stoi(d[1]), pairs};
  }
  return curves;
}

std::string chromium() {
  for (const char* name : {"chromium", "chromium-browser"})
    if (run_command(std::string("command -v ") + name + " >/dev/null").exit_code == 0) return name;
  return "";
}

TEST(RunReportE2E, BrowserShowsEveryCurvePointAndSample) {
  const std::string browser = chromium();
  if (browser.empty()) GTEST_SKIP() << "chromium is not installed";
  const fs::path out = trained_run() / "out";
  const fs::path folder = fs::path(LOOM_BINARY_DIR) / "report-test";
  fs::create_directories(folder);
  const fs::path page = folder / "report.html";
  auto r = run_trainer({"report", "--run", out.string(), "--out", page.string()});
  ASSERT_EQ(r.exit_code, 0) << r.output;

  // Self-contained: nothing loaded from elsewhere, no script.
  const std::string html = read_file(page);
  for (const char* outside : {"<script", " src=", " href=", "url(", "http:", "https:", "@import"})
    EXPECT_EQ(html.find(outside), std::string::npos) << outside;

  const std::string profile = (folder / "chromium-profile").string();
  const std::string flags =
      " --headless --no-sandbox --disable-gpu --hide-scrollbars --user-data-dir=" +
      shell_quote(profile) + " ";
  const std::string url = shell_quote("file://" + page.string());
  auto dom = run_command("(timeout 120 " + browser + flags + "--dump-dom " + url + " 2>/dev/null)");
  ASSERT_EQ(dom.exit_code, 0) << dom.output;
  const auto curves = curves_in(dom.output);
  const auto counts = value_counts(out);
  for (const char* headline : {"train/loss", "eval/loss", "train/accuracy", "eval/accuracy",
                               "train/mask_ratio", "train/lr", "train/tokens_per_s"})
    EXPECT_TRUE(counts.count(headline)) << headline << " not in metrics.jsonl";
  EXPECT_EQ(counts.at("train/loss"), 12);
  EXPECT_EQ(counts.at("eval/loss"), 2);
  for (const auto& [name, n] : counts) {
    ASSERT_TRUE(curves.count(name)) << "no curve for " << name;
    EXPECT_EQ(curves.at(name).first, n) << name;
    EXPECT_EQ(curves.at(name).second, n) << name;
  }
  EXPECT_EQ(curves.size(), counts.size());
  // Every sample of samples.jsonl (2 at step 6, 2 at step 12), with its fills marked.
  std::size_t samples = 0;
  for (std::size_t at = 0; (at = dom.output.find("class=\"sample\"", at)) != std::string::npos;
       ++at)
    ++samples;
  EXPECT_EQ(samples, 4u);
  EXPECT_TRUE(dom.output.find("class=\"ok\"") != std::string::npos ||
              dom.output.find("class=\"bad\"") != std::string::npos);

  const fs::path shot = folder / "report.png";
  fs::remove(shot);
  auto s = run_command("(timeout 120 " + browser + flags + "--window-size=1200,1800 --screenshot=" +
                       shell_quote(shot.string()) + " " + url + " 2>/dev/null)");
  ASSERT_EQ(s.exit_code, 0) << s.output;
  ASSERT_TRUE(fs::exists(shot));
  EXPECT_EQ(read_file(shot).substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
}

TEST(RunReportE2E, KilledRunWithATornLastLineIsReported) {
  const fs::path dir = trained_run();
  const fs::path killed = dir / "killed";
  fs::create_directories(killed);
  // What a killed run leaves: metrics.jsonl ending in half a line, no final/, no checkpoint.
  write_file(killed / "metrics.jsonl",
             read_file(dir / "out" / "metrics.jsonl") + "{\"step\": 13, \"train/lo");
  auto r = run_trainer({"report", "--run", killed.string()});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string html = read_file(killed / "report.html");
  EXPECT_NE(html.find("no final/ yet"), std::string::npos);
  EXPECT_NE(html.find("1 unreadable line(s) skipped"), std::string::npos);
  const auto curves = curves_in(html);
  for (const auto& [name, n] : value_counts(dir / "out")) {
    ASSERT_TRUE(curves.count(name)) << name;
    EXPECT_EQ(curves.at(name).first, n) << name;
  }
}

TEST(RunReportE2E, FolderWithoutMetricsIsAClearError) {
  const auto dir = fresh_dir("report-empty-" + std::to_string(getpid()));
  auto r = run_trainer({"report", "--run", dir.string()});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("--run " + dir.string() + ": no metrics.jsonl"), std::string::npos)
      << r.output;
  EXPECT_FALSE(fs::exists(dir / "report.html"));
  auto missing = run_trainer({"report", "--run", (dir / "nope").string()});
  EXPECT_EQ(missing.exit_code, 1) << missing.output;
  EXPECT_NE(missing.output.find("no such folder"), std::string::npos) << missing.output;
  fs::remove_all(dir);
}

}  // namespace
}  // namespace loom::test
