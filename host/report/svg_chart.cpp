#include "report/svg_chart.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

namespace loom {
namespace {

constexpr double kWidth = 460, kHeight = 220;
constexpr double kLeft = 64, kRight = 12, kTop = 30, kBottom = 34;

std::string number_text(double v) {
  char buf[32];
  const double a = std::fabs(v);
  if (v == 0) return "0";
  if (a >= 1e5 || a < 1e-3)
    std::snprintf(buf, sizeof buf, "%.2e", v);
  else
    std::snprintf(buf, sizeof buf, "%.4g", v);
  return buf;
}

std::string coord(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}

}  // namespace

std::string html_escape(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

void SvgChart::add_series(const std::string& name, const std::string& colour,
                          std::vector<std::pair<std::int64_t, double>> points) {
  if (log_)  // a log scale shows only positive values
    points.erase(
        std::remove_if(points.begin(), points.end(), [](const auto& p) { return p.second <= 0; }),
        points.end());
  if (!points.empty()) series_.push_back({name, colour, std::move(points)});
}

bool SvgChart::empty() const { return series_.empty(); }

std::string SvgChart::svg() const {
  double x0 = std::numeric_limits<double>::infinity(), x1 = -x0, y0 = x0, y1 = -x0;
  auto y_of = [&](double v) { return log_ ? std::log10(v) : v; };
  for (const auto& s : series_)
    for (const auto& [step, v] : s.points) {
      x0 = std::min(x0, double(step)), x1 = std::max(x1, double(step));
      y0 = std::min(y0, y_of(v)), y1 = std::max(y1, y_of(v));
    }
  if (series_.empty()) x0 = 0, x1 = 1, y0 = 0, y1 = 1;
  if (x1 == x0) x0 -= 1, x1 += 1;
  if (y1 == y0)
    y0 -= std::max(1e-9, std::fabs(y0) * 0.1), y1 += std::max(1e-9, std::fabs(y1) * 0.1);
  const double pad = (y1 - y0) * 0.05;
  y0 -= pad, y1 += pad;
  const double pw = kWidth - kLeft - kRight, ph = kHeight - kTop - kBottom;
  auto px = [&](double x) { return kLeft + (x - x0) / (x1 - x0) * pw; };
  auto py = [&](double y) { return kTop + (1.0 - (y - y0) / (y1 - y0)) * ph; };

  std::string o = "<svg class=\"chart\" width=\"" + coord(kWidth) + "\" height=\"" +
                  coord(kHeight) + "\" viewBox=\"0 0 " + coord(kWidth) + " " + coord(kHeight) +
                  "\" data-title=\"" + html_escape(title_) + "\">";
  o += "<text x=\"" + coord(kLeft) + "\" y=\"18\" class=\"title\">" + html_escape(title_) +
       (log_ ? " (log scale)" : "") + "</text>";
  o += "<rect x=\"" + coord(kLeft) + "\" y=\"" + coord(kTop) + "\" width=\"" + coord(pw) +
       "\" height=\"" + coord(ph) + "\" class=\"frame\"/>";
  // Grid and labels: 5 levels on y, 5 steps on x.
  for (int i = 0; i <= 4; ++i) {
    const double y = y0 + (y1 - y0) * i / 4.0, yy = py(y);
    o += "<line x1=\"" + coord(kLeft) + "\" x2=\"" + coord(kLeft + pw) + "\" y1=\"" + coord(yy) +
         "\" y2=\"" + coord(yy) + "\" class=\"grid\"/>";
    o += "<text x=\"" + coord(kLeft - 4) + "\" y=\"" + coord(yy + 4) + "\" class=\"ylabel\">" +
         number_text(log_ ? std::pow(10.0, y) : y) + "</text>";
    const double x = x0 + (x1 - x0) * i / 4.0;
    o += "<text x=\"" + coord(px(x)) + "\" y=\"" + coord(kTop + ph + 16) + "\" class=\"xlabel\">" +
         number_text(std::round(x)) + "</text>";
  }
  o += "<text x=\"" + coord(kLeft + pw / 2) + "\" y=\"" + coord(kHeight - 2) +
       "\" class=\"xlabel\">step</text>";
  // The legend after the title; a chart of one metric named like its title needs none.
  double legend_x = kLeft + 12 + 7.5 * double(title_.size() + (log_ ? 12 : 0));
  const bool legend = series_.size() > 1 || (series_.size() == 1 && series_[0].name != title_);
  for (const auto& s : series_) {
    std::string pts;
    for (const auto& [step, v] : s.points)
      pts += (pts.empty() ? "" : " ") + coord(px(double(step))) + "," + coord(py(y_of(v)));
    o += "<polyline fill=\"none\" stroke=\"" + s.colour + "\" stroke-width=\"1.6\" data-series=\"" +
         html_escape(s.name) + "\" data-points=\"" + std::to_string(s.points.size()) +
         "\" points=\"" + pts + "\"/>";
    if (s.points.size() == 1)  // a single point draws no line: a dot
      o += "<circle cx=\"" + coord(px(double(s.points[0].first))) + "\" cy=\"" +
           coord(py(y_of(s.points[0].second))) + "\" r=\"3\" fill=\"" + s.colour + "\"/>";
    if (!legend) continue;
    o += "<rect x=\"" + coord(legend_x) + "\" y=\"10\" width=\"10\" height=\"10\" fill=\"" +
         s.colour + "\"/><text x=\"" + coord(legend_x + 14) + "\" y=\"19\" class=\"legend\">" +
         html_escape(s.name) + "</text>";
    legend_x += 24 + 7.0 * double(s.name.size());
  }
  return o + "</svg>";
}

}  // namespace loom
