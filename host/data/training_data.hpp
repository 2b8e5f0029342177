// All [[datasets]] of a run read, tokenized, split into train and eval documents (held out
// deterministically from the seed) and packed into rows.
#pragma once

#include <memory>
#include <string>

#include "config/train_config.hpp"
#include "data/data_loader.hpp"
#include "tokenizer/tokenizer.hpp"

namespace loom {

struct TrainingData {
  std::unique_ptr<DataLoader> train;
  std::unique_ptr<DataLoader> eval;  // null when val_set_size is 0
  PackingStats train_stats, eval_stats;
  std::string summary() const;
};

TrainingData build_training_data(const TrainConfig& config, const Tokenizer& tokenizer, int rank,
                                 int world_size);

}  // namespace loom
