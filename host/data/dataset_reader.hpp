// Reads the [[datasets]] files (JSONL, or plain text with blank-line separated documents) and
// tokenizes them into Documents, formatting instruction data with its prompt template.
#pragma once

#include <vector>

#include "config/train_config.hpp"
#include "data/document.hpp"
#include "tokenizer/tokenizer.hpp"

namespace loom {

// Throws UserError naming the file (and line) for a missing file, a malformed line, a missing
// field or an empty dataset.
std::vector<Document> read_dataset(const DatasetConfig& dataset, const Tokenizer& tokenizer);

// Axolotl's alpaca prompt, without the response.
std::string alpaca_prompt(const std::string& instruction, const std::string& input);

}  // namespace loom
