// How much memory a model needs, estimated from its shape before anything is allocated, so that
// a shape the machine cannot hold is refused with the numbers instead of ending in an
// out-of-memory kill (or libtorch's raw "can't allocate memory").
#pragma once

#include <cstdint>
#include <string>

#include "config/train_config.hpp"
#include "model/model_config.hpp"

namespace loom {

struct MemoryEstimate {
  double parameters = 0;        // count (double: absurd shapes must not overflow)
  double weights_bytes = 0;     // fp32 parameters
  double training_bytes = 0;    // + gradients and AdamW's two moments + activations of a micro-batch
};

MemoryEstimate estimate_memory(const ModelConfig& model, const TrainConfig& config);

// The memory this machine can still give (MemAvailable of /proc/meminfo; 0 if unknown).
double available_memory_bytes();

// Throws UserError naming the shape and both numbers when the model (for training: with its
// gradients, optimizer state and activations) needs more memory than is available. CPU only:
// on a GPU the device's memory decides, and libtorch's CUDA allocator reports that itself.
void check_memory(const ModelConfig& model, const TrainConfig& config, bool training, bool cuda);

}  // namespace loom
