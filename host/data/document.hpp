// A tokenized training example before packing.
#pragma once

#include <cstdint>
#include <vector>

namespace loom {

struct Document {
  std::vector<std::int64_t> ids;
  std::vector<std::int64_t> labels;  // same length; kIgnoreIndex (-100) where nothing is learned
};

}  // namespace loom
