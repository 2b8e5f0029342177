// libtorch side of checkpoint I/O: saving named tensors as safetensors, and loading a Hugging Face
// checkpoint (model.safetensors, or model.safetensors.index.json with its shards) into existing
// parameters straight from the mapped files, so that loading costs little more memory than the
// parameters themselves.
#pragma once

#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>

namespace loom {

using NamedTensors = std::vector<std::pair<std::string, at::Tensor>>;

struct LoadOptions {
  // Parameters that the checkpoint may lack; they keep their current values. The caller decides,
  // e.g. lm_head.weight when the embeddings are tied.
  std::set<std::string> allow_missing;
  // Stored tensors the model has no parameter for and that are skipped without complaint, e.g.
  // lm_head.weight in an export of a tied model that wrote it anyway.
  std::set<std::string> allow_unexpected;
};

// Writes `file` with every tensor in the order given and in its own dtype. Tensors that are not
// contiguous CPU tensors are copied one at a time while writing. The metadata gets
// "format": "pt" unless it has a "format" (transformers refuses files without it). Throws
// std::invalid_argument for an undefined tensor, an unsupported dtype or a repeated name; UserError
// if the file cannot be written.
void save_tensors(const std::filesystem::path& file, const NamedTensors& tensors,
                  const std::map<std::string, std::string>& metadata = {});

// Copies the checkpoint at `model_dir_or_file` (a folder, a .safetensors file or an index .json)
// into `params`, converting between floating dtypes (e.g. BF16 stored -> F32 parameter). Nothing
// is copied unless the checkpoint matches: one UserError then lists every missing tensor, every
// unexpected one, and every shape or dtype mismatch. Stored
// `model.layers.*.self_attn.rotary_emb.inv_freq` buffers (older transformers) are ignored. A
// folder with only pickle weights (*.bin) is refused: loom never unpickles.
void load_into(const std::filesystem::path& model_dir_or_file, const NamedTensors& params,
               const LoadOptions& options = {});

// Every tensor of the checkpoint, copied into memory (for small files and tests).
std::map<std::string, at::Tensor> load_all(const std::filesystem::path& model_dir_or_file);

}  // namespace loom
