// One line chart as inline SVG (no script, no external asset): steps on x, one polyline per
// series. Each polyline carries data-series (the metric's name) and data-points (how many
// points it has), so that a test can count them from the page's DOM.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace loom {

class SvgChart {
 public:
  SvgChart(std::string title, bool log_scale = false) : title_(std::move(title)), log_(log_scale) {}
  void add_series(const std::string& name, const std::string& colour,
                  std::vector<std::pair<std::int64_t, double>> points);
  bool empty() const;
  std::string svg() const;

 private:
  struct Series {
    std::string name, colour;
    std::vector<std::pair<std::int64_t, double>> points;
  };
  std::string title_;
  bool log_;
  std::vector<Series> series_;
};

// Text made safe inside HTML/SVG elements and attribute values.
std::string html_escape(const std::string& text);

}  // namespace loom
