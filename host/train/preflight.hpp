// What a run needs before anything is built, checked in one place for `trainer train` (before
// it loads plugins or starts ranks) and `trainer check`, so the two refuse the same configs:
// the device and the attention kernel it can run, the datasets, the base model.
#pragma once

#include "config/train_config.hpp"

namespace loom {

// Throws UserError naming the key or file for the first problem found.
void check_run_inputs(const TrainConfig& config);

}  // namespace loom
