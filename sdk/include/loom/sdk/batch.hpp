// One micro-batch as the host hands it to plugins. All tensors are [B, S] int64 on the
// training device unless noted. Packed rows hold several documents; segment_ids tell them
// apart (1, 2, ... within a row; 0 = padding).
#pragma once

#include <ATen/core/Tensor.h>

#include <map>
#include <string>

namespace loom::sdk {

inline constexpr std::int64_t kIgnoreIndex = -100;

struct Batch {
  at::Tensor input_ids;     // [B, S] what the model reads; transforms may rewrite it
  at::Tensor labels;        // [B, S] token ids to learn, kIgnoreIndex where nothing is learned
                            //        (padding, prompt tokens of instruction data); NOT shifted
  at::Tensor segment_ids;   // [B, S] document index within the row, 0 = padding
  at::Tensor position_ids;  // [B, S] position within the document (restarts per segment)
  at::Tensor sample_index;  // [B]    index of each row in the run's row stream, unique over all
                            //        epochs and ranks, the same for any world size: derive
                            //        per-row randomness from it and the seed (not from rank)
  // Tensors added by batch transforms for later hooks (e.g. diffusion: "targets", "p_mask",
  // "masked"). Keys are namespaced by convention: "<plugin>.<name>".
  std::map<std::string, at::Tensor> extras;

  std::int64_t rows() const { return input_ids.size(0); }
  std::int64_t seq_len() const { return input_ids.size(1); }
};

}  // namespace loom::sdk
