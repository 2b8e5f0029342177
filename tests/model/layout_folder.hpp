// Small Hugging Face folders of the layouts in tests/model/layout_reference_golden.hpp: the
// reference script's config.json text and tensor names, with its deterministic weights, stored
// as fp32 or bf16, in one file or in shards with an index -- what a published checkpoint holds.
#pragma once

#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "io/tensor_io.hpp"
#include "model/layout_reference_golden.hpp"

namespace loom::layout_test {

// Weight j (in the listed, sorted order) as the reference script makes it: round(16 sin(0.37 i
// + 1.3 j)) / 64, norms 1 + that -- values bf16 holds exactly.
inline torch::Tensor reference_weight(std::size_t j, const std::vector<std::int64_t>& shape,
                                      bool norm) {
  std::int64_t n = 1;
  for (auto s : shape) n *= s;
  auto i = torch::arange(n, torch::kDouble);
  auto w = torch::round(torch::sin(0.37 * i + 1.3 * double(j)) * 16.0) / 64.0;
  if (norm) w = w + 1.0;
  return w.reshape(shape);
}

struct FolderOptions {
  torch::ScalarType dtype = torch::kFloat;
  int shards = 1;  // > 1: model-0000k-of-0000n.safetensors and model.safetensors.index.json
  // Changes to config.json (e.g. a larger vocabulary for a real tokenizer), and the rows the
  // vocabulary-sized matrices then get (0 = as listed).
  std::function<void(nlohmann::json&)> edit_config;
  std::int64_t vocab_rows = 0;
  std::int64_t listed_vocab_rows = 0;  // the listed row count to replace with vocab_rows
};

// Writes config.json and the weights into `dir`; returns the stored names and tensors (fp32
// values, before any bf16 cast).
inline std::vector<std::pair<std::string, torch::Tensor>> write_layout_folder(
    const std::filesystem::path& dir, const std::string& config_text,
    const std::vector<layout_golden::StoredTensor>& tensors, const FolderOptions& opt = {}) {
  std::filesystem::create_directories(dir);
  auto config = nlohmann::json::parse(config_text);
  if (opt.edit_config) opt.edit_config(config);
  std::ofstream(dir / "config.json") << config.dump(2) << "\n";
  std::vector<std::pair<std::string, torch::Tensor>> named;
  for (std::size_t j = 0; j < tensors.size(); ++j) {
    auto shape = tensors[j].shape;
    if (opt.vocab_rows > 0 && shape.size() == 2 && shape[0] == opt.listed_vocab_rows)
      shape[0] = opt.vocab_rows;
    named.emplace_back(tensors[j].name, reference_weight(j, shape, tensors[j].norm).to(torch::kFloat));
  }
  auto stored = [&](std::size_t begin, std::size_t end) {
    NamedTensors out;
    for (std::size_t k = begin; k < end; ++k)
      out.emplace_back(named[k].first, named[k].second.to(opt.dtype));
    return out;
  };
  if (opt.shards <= 1) {
    save_tensors(dir / "model.safetensors", stored(0, named.size()));
    return named;
  }
  nlohmann::json index = {{"metadata", {{"total_size", 0}}}, {"weight_map", nlohmann::json::object()}};
  const std::size_t per = (named.size() + std::size_t(opt.shards) - 1) / std::size_t(opt.shards);
  for (int s = 0; s < opt.shards; ++s) {
    char file[64];
    std::snprintf(file, sizeof file, "model-%05d-of-%05d.safetensors", s + 1, opt.shards);
    const std::size_t begin = std::size_t(s) * per, end = std::min(named.size(), begin + per);
    save_tensors(dir / file, stored(begin, end));
    for (std::size_t k = begin; k < end; ++k) index["weight_map"][named[k].first] = file;
  }
  std::ofstream(dir / "model.safetensors.index.json") << index.dump(2) << "\n";
  return named;
}

}  // namespace loom::layout_test
