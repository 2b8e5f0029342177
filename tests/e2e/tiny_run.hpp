// A tiny, fast training config for end-to-end tests.
#pragma once

#include <nlohmann/json.hpp>

#include <filesystem>
#include <string>
#include <vector>

#include "support/process.hpp"

namespace loom::test {

inline std::string tiny_config(const std::filesystem::path& out, int max_steps,
                               const std::string& extra = "") {
  return "output_dir = \"" + out.string() + "\"\n"
         "seed = 3\n"
         "sequence_len = 64\n"
         "micro_batch_size = 4\n"
         "learning_rate = 3e-3\n"
         "lr_scheduler = \"cosine\"\n"
         "warmup_steps = 5\n"
         "max_steps = " + std::to_string(max_steps) + "\n"
         "logging_steps = 1\n"
         "threads = 1\n" + extra +
         "\n[model]\nhidden_size = 32\nintermediate_size = 64\nnum_hidden_layers = 1\n"
         "num_attention_heads = 2\nnum_key_value_heads = 1\nmax_position_embeddings = 128\n"
         "\n[[datasets]]\npath = \"" LOOM_SOURCE_DIR "/configs/data/tiny_stories.jsonl\"\n";
}

// metrics.jsonl as a list of JSON objects.
inline std::vector<nlohmann::json> read_metrics(const std::filesystem::path& out) {
  std::vector<nlohmann::json> rows;
  std::istringstream in(read_file(out / "metrics.jsonl"));
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) rows.push_back(nlohmann::json::parse(line));
  return rows;
}

// train/loss by step.
inline std::map<std::int64_t, double> train_losses(const std::filesystem::path& out) {
  std::map<std::int64_t, double> m;
  for (const auto& r : read_metrics(out))
    if (r.contains("train/loss")) m[r["step"].get<std::int64_t>()] = r["train/loss"].get<double>();
  return m;
}

}  // namespace loom::test
