#include "report/run_report.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <optional>
#include <set>

#include "report/svg_chart.hpp"

namespace loom {
namespace {

const std::string kMask = "[MASK]";

// The masked text as literal pieces around runs of masks: lits.size() == runs + 1, and the
// number of masks in each run.
struct MaskedText {
  std::vector<std::string> lits;
  std::vector<std::size_t> run_lengths;
};

MaskedText literal_pieces(const std::string& masked) {
  MaskedText m;
  auto& lits = m.lits;
  std::string cur;
  bool after_mask = false;
  for (std::size_t i = 0; i < masked.size();) {
    if (masked.compare(i, kMask.size(), kMask) == 0) {
      if (!after_mask) lits.push_back(cur), cur.clear(), m.run_lengths.push_back(0);
      ++m.run_lengths.back();
      after_mask = true;
      i += kMask.size();
    } else {
      cur += masked[i++];
      after_mask = false;
    }
  }
  lits.push_back(cur);
  return m;
}

// The text of each run of masks in `text`, found between the literal pieces.
std::optional<std::vector<std::string>> gaps_in(const std::string& text, const MaskedText& masked) {
  const auto& lits = masked.lits;
  if (text.compare(0, lits[0].size(), lits[0]) != 0) return std::nullopt;
  std::size_t pos = lits[0].size();
  std::vector<std::string> gaps;
  for (std::size_t g = 0; g + 1 < lits.size(); ++g) {
    const std::string& next = lits[g + 1];
    std::size_t end;
    if (g + 2 == lits.size()) {  // the last piece ends the text
      if (text.size() < pos + next.size() ||
          text.compare(text.size() - next.size(), next.size(), next) != 0)
        return std::nullopt;
      end = text.size() - next.size();
    } else if (pos + masked.run_lengths[g] <= text.size() &&
               text.compare(pos + masked.run_lengths[g], next.size(), next) == 0) {
      // Where one byte per mask puts it (a byte-level tokenizer: exact); a fill may hold the
      // next piece's text itself, so this comes before searching.
      end = pos + masked.run_lengths[g];
    } else {
      end = text.find(next, pos);
      if (end == std::string::npos) return std::nullopt;
    }
    gaps.push_back(text.substr(pos, end - pos));
    pos = end + next.size();
  }
  return gaps;
}

std::vector<std::string> utf8_chars(const std::string& s) {
  std::vector<std::string> out;
  for (std::size_t i = 0; i < s.size();) {
    std::size_t n = 1;
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0xF0)
      n = 4;
    else if (c >= 0xE0)
      n = 3;
    else if (c >= 0xC0)
      n = 2;
    n = std::min(n, s.size() - i);
    out.push_back(s.substr(i, n));
    i += n;
  }
  return out;
}

void append(std::vector<FillPiece>& pieces, FillPiece::Kind kind, const std::string& text) {
  if (text.empty()) return;
  if (!pieces.empty() && pieces.back().kind == kind)
    pieces.back().text += text;
  else
    pieces.push_back({kind, text});
}

std::string fmt(double v, const char* format = "%.4g") {
  char buf[48];
  std::snprintf(buf, sizeof buf, format, v);
  return buf;
}

std::string percent(double share) { return fmt(100.0 * share, "%.1f") + "%"; }

std::string bytes_text(std::uintmax_t b) {
  if (b >= (1u << 30)) return fmt(double(b) / double(1u << 30), "%.2f") + " GiB";
  if (b >= (1u << 20)) return fmt(double(b) / double(1u << 20), "%.1f") + " MiB";
  return fmt(double(b) / 1024.0, "%.1f") + " KiB";
}

const char* kCss = R"(
body{font-family:system-ui,sans-serif;margin:24px;color:#222;background:#fafafa}
h1{font-size:22px;margin:0 0 4px} h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd}
.status{color:#555;margin-bottom:12px}
.charts{display:flex;flex-wrap:wrap;gap:12px}
svg.chart{background:#fff;border:1px solid #ddd}
svg .title{font-size:13px;font-weight:600} svg .legend{font-size:11px}
svg .ylabel{font-size:10px;text-anchor:end;fill:#555} svg .xlabel{font-size:10px;text-anchor:middle;fill:#555}
svg .frame{fill:none;stroke:#bbb} svg .grid{stroke:#eee}
table{border-collapse:collapse;background:#fff} td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;font-size:13px}
td.num{text-align:right;font-variant-numeric:tabular-nums}
pre{background:#fff;border:1px solid #ddd;padding:8px;font-size:12px;overflow:auto}
.sample{background:#fff;border:1px solid #ddd;padding:6px 10px;margin:6px 0;font-family:monospace;font-size:13px;white-space:pre-wrap;word-break:break-all}
.sample .label{color:#777;font-family:system-ui,sans-serif}
.ok{background:#c8f0c8;color:#064d06} .bad{background:#f7c6c6;color:#7a0b0b} .fill{background:#cfe0ff}
.kept{color:#888} .mask{color:#b36b00}
.legendline span{padding:0 4px;margin-right:8px}
)";

const std::vector<std::string> kColours = {"#1f77b4", "#d62728", "#2ca02c",
                                           "#9467bd", "#ff7f0e", "#8c564b"};

}  // namespace

std::vector<FillPiece> fill_pieces(const std::string& masked, const std::string& generated,
                                   const std::string& original, bool has_reference) {
  const auto lits = literal_pieces(masked);
  const auto fills = gaps_in(generated, lits);
  if (!fills) return {};
  std::optional<std::vector<std::string>> refs;
  if (has_reference) refs = gaps_in(original, lits);
  std::vector<FillPiece> pieces;
  for (std::size_t g = 0; g < lits.lits.size(); ++g) {
    append(pieces, FillPiece::Kind::Kept, lits.lits[g]);
    if (g >= fills->size()) break;
    const std::string& fill = (*fills)[g];
    if (!refs) {
      append(pieces, FillPiece::Kind::Fill, fill);
      continue;
    }
    const auto got = utf8_chars(fill), want = utf8_chars((*refs)[g]);
    if (got.size() != want.size()) {
      append(pieces, FillPiece::Kind::Wrong, fill);
      continue;
    }
    for (std::size_t i = 0; i < got.size(); ++i)
      append(pieces, got[i] == want[i] ? FillPiece::Kind::Correct : FillPiece::Kind::Wrong, got[i]);
  }
  return pieces;
}

std::string render_run_report(const RunHistory& run) {
  std::string h =
      "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>loom run: " +
      html_escape(run.folder().string()) + "</title><style>" + kCss + "</style></head><body>\n";
  h += "<h1>loom run: " + html_escape(run.folder().string()) + "</h1>\n";

  // Status: how far the run got.
  std::int64_t last_step = 0;
  for (const auto& r : run.rows()) last_step = std::max(last_step, r.step);
  h += "<div class=\"status\" id=\"status\">";
  h += run.finished() ? "finished" : "in progress, stopped or killed (no final/ yet)";
  h += "; last logged step " + std::to_string(last_step) + "; " +
       std::to_string(run.rows().size()) + " lines in metrics.jsonl";
  if (run.skipped_lines() > 0)
    h += "; " + std::to_string(run.skipped_lines()) +
         " unreadable line(s) skipped (a line cut short)";
  h += "</div>\n";

  // Curves: the headline ones first, then every other metric on its own.
  struct Panel {
    std::string title;
    std::vector<std::string> keys;
    bool log;
  };
  const std::vector<Panel> panels = {
      {"Loss", {"train/loss", "eval/loss"}, false},
      {"Accuracy", {"train/accuracy", "eval/accuracy"}, false},
      {"Mask ratio", {"train/mask_ratio"}, false},
      {"Learning rate", {"train/lr"}, false},
      {"Tokens/s", {"train/tokens_per_s"}, false},
  };
  std::set<std::string> shown = {"epoch"};
  h += "<h2>Curves</h2>\n<div class=\"charts\">";
  for (const auto& p : panels) {
    SvgChart chart(p.title, p.log);
    for (std::size_t i = 0; i < p.keys.size(); ++i) {
      chart.add_series(p.keys[i], kColours[i % kColours.size()], run.series(p.keys[i]));
      shown.insert(p.keys[i]);
    }
    if (!chart.empty()) h += chart.svg();
  }
  h += "</div>\n";
  // Final numbers: the last value of every metric.
  h += "<h2>Final numbers</h2>\n<table id=\"final\"><tr><th>metric</th><th>step</th><th>last "
       "value</th><th>best</th></tr>";
  for (const auto& name : run.metric_names()) {
    if (name == "epoch") continue;
    const auto s = run.series(name);
    if (s.empty()) continue;
    const bool lower_better = name.find("loss") != std::string::npos;
    const bool higher_better = name.find("accuracy") != std::string::npos;
    std::string best;
    if (lower_better || higher_better) {
      auto it = lower_better
                    ? std::min_element(s.begin(), s.end(),
                                       [](auto& a, auto& b) { return a.second < b.second; })
                    : std::max_element(s.begin(), s.end(),
                                       [](auto& a, auto& b) { return a.second < b.second; });
      best = fmt(it->second) + " (step " + std::to_string(it->first) + ")";
    }
    h += "<tr><td>" + html_escape(name) + "</td><td class=\"num\">" +
         std::to_string(s.back().first) + "</td><td class=\"num\">" + fmt(s.back().second) +
         "</td><td class=\"num\">" + best + "</td></tr>";
  }
  h += "</table>\n";

  // Samples over training.
  h += "<h2>Samples</h2>\n";
  if (run.samples().empty()) {
    h += "<p>No samples.jsonl (the diffusion plugin writes one when generate_samples is on).</p>\n";
  } else {
    h += "<p class=\"legendline\"><span class=\"ok\">fill equal to the original</span><span "
         "class=\"bad\">fill "
         "that differs</span><span class=\"fill\">fill with no original to compare</span><span "
         "class=\"kept\">kept text</span> (compared character by character: samples.jsonl holds "
         "text, not "
         "tokens)</p>\n";
    std::int64_t current = -1;
    int index = 0;
    for (const auto& s : run.samples()) {
      if (s.step != current) {
        h += "<h3>Step " + std::to_string(s.step) + "</h3>\n";
        current = s.step;
        index = 0;
      }
      ++index;
      h += "<div class=\"sample\" data-step=\"" + std::to_string(s.step) +
           "\"><span class=\"label\">Sample " + std::to_string(index) + " &mdash; " +
           std::to_string(s.masked_tokens) + "/" + std::to_string(s.total_tokens) +
           " tokens masked";
      if (s.accuracy) h += ", " + percent(*s.accuracy) + " of fills correct";
      h += "</span>\n<span class=\"label\">Original:  </span>" + html_escape(s.original) + "\n";
      std::string masked_html = html_escape(s.masked), marked;
      for (std::size_t i = 0; i < masked_html.size();) {
        if (masked_html.compare(i, kMask.size(), kMask) == 0) {
          marked += "<span class=\"mask\">[MASK]</span>";
          i += kMask.size();
        } else {
          marked += masked_html[i++];
        }
      }
      h += "<span class=\"label\">Masked:    </span>" + marked +
           "\n<span class=\"label\">Generated: </span>";
      const auto pieces = fill_pieces(s.masked, s.generated, s.original, s.accuracy.has_value());
      if (pieces.empty()) {
        h += html_escape(s.generated) +
             " <span class=\"label\">(fills not aligned with the masked text)</span>";
      } else {
        for (const auto& p : pieces) {
          const char* cls = p.kind == FillPiece::Kind::Correct ? "ok"
                            : p.kind == FillPiece::Kind::Wrong ? "bad"
                            : p.kind == FillPiece::Kind::Fill  ? "fill"
                                                               : "kept";
          h += std::string("<span class=\"") + cls + "\">" + html_escape(p.text) + "</span>";
        }
      }
      h += "</div>\n";
    }
  }

  h += "<h2>Other metrics</h2>\n<div class=\"charts\">";
  for (const auto& name : run.metric_names()) {
    if (shown.count(name)) continue;
    SvgChart chart(name);
    chart.add_series(name, kColours[0], run.series(name));
    if (!chart.empty()) h += chart.svg();
  }
  h += "</div>\n";

  // Checkpoints.
  h += "<h2>Checkpoints</h2>\n";
  if (run.checkpoints().empty()) {
    h += "<p>None yet.</p>\n";
  } else {
    h += "<table id=\"checkpoints\"><tr><th>folder</th><th>step</th><th>size</th></tr>";
    for (const auto& c : run.checkpoints())
      h += "<tr><td>" + html_escape(c.name) + "</td><td class=\"num\">" +
           (c.step >= 0 ? std::to_string(c.step) : std::string(c.complete ? "" : "incomplete")) +
           "</td><td class=\"num\">" + bytes_text(c.bytes) + "</td></tr>";
    h += "</table>\n";
  }

  // Config.
  h += "<h2>Config</h2>\n";
  if (run.config_toml().empty())
    h += "<p>No checkpoint yet (each checkpoint holds the run's resolved config, "
         "loom_config.toml).</p>\n";
  else
    h += "<p>From " + html_escape(run.config_from()) + ":</p><pre id=\"config\">" +
         html_escape(run.config_toml()) + "</pre>\n";
  h += "</body></html>\n";
  return h;
}

}  // namespace loom
