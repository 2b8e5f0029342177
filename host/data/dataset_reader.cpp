#include "data/dataset_reader.hpp"

#include <nlohmann/json.hpp>

#include <fstream>

#include "errors.hpp"
#include "loom/sdk/batch.hpp"

namespace loom {
namespace {

using json = nlohmann::json;

std::string field_text(const json& row, const std::string& field, const std::string& where) {
  auto it = row.find(field);
  if (it == row.end()) throw UserError(where + ": no field \"" + field + "\"");
  if (!it->is_string()) throw UserError(where + ": field \"" + field + "\" is not a string");
  return it->get<std::string>();
}

void append(std::vector<std::int64_t>& to, const std::vector<std::int64_t>& from) {
  to.insert(to.end(), from.begin(), from.end());
}

Document completion(const std::string& text, const Tokenizer& tok) {
  Document d;
  if (auto bos = tok.bos_id()) d.ids.push_back(*bos);
  append(d.ids, tok.encode(text));
  if (auto eos = tok.eos_id()) d.ids.push_back(*eos);
  d.labels = d.ids;
  if (tok.bos_id()) d.labels[0] = sdk::kIgnoreIndex;  // nothing learns to produce BOS
  return d;
}

Document prompt_response(const std::string& prompt, const std::string& response,
                         const Tokenizer& tok) {
  Document d;
  if (auto bos = tok.bos_id()) d.ids.push_back(*bos);
  append(d.ids, tok.encode(prompt));
  d.labels.assign(d.ids.size(), sdk::kIgnoreIndex);
  auto answer = tok.encode(response);
  if (auto eos = tok.eos_id()) answer.push_back(*eos);
  append(d.ids, answer);
  append(d.labels, answer);
  return d;
}

}  // namespace

std::string alpaca_prompt(const std::string& instruction, const std::string& input) {
  if (input.empty())
    return "Below is an instruction that describes a task. Write a response that appropriately "
           "completes the request.\n\n### Instruction:\n" +
           instruction + "\n\n### Response:\n";
  return "Below is an instruction that describes a task, paired with an input that provides "
         "further context. Write a response that appropriately completes the request.\n\n"
         "### Instruction:\n" +
         instruction + "\n\n### Input:\n" + input + "\n\n### Response:\n";
}

std::vector<Document> read_dataset(const DatasetConfig& ds, const Tokenizer& tok) {
  std::ifstream in(ds.path, std::ios::binary);
  if (!in) throw UserError("dataset " + ds.path + ": file not found or not readable");
  std::vector<Document> docs;
  const bool jsonl = ds.path.size() >= 6 && (ds.path.substr(ds.path.size() - 6) == ".jsonl" ||
                                             ds.path.substr(ds.path.size() - 5) == ".json");
  if (!jsonl) {
    if (ds.type != "completion")
      throw UserError("dataset " + ds.path + ": type " + ds.type + " needs a .jsonl file");
    // Plain text: documents are separated by blank lines.
    std::string line, doc;
    auto flush = [&] {
      if (!doc.empty()) docs.push_back(completion(doc, tok));
      doc.clear();
    };
    while (std::getline(in, line)) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.find_first_not_of(" \t") == std::string::npos) flush();
      else doc += (doc.empty() ? "" : "\n") + line;
    }
    flush();
  } else {
    std::string line;
    for (std::size_t n = 1; std::getline(in, line); ++n) {
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      const std::string where = ds.path + ":" + std::to_string(n);
      json row = json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (row.is_discarded()) throw UserError(where + ": not valid JSON");
      if (row.is_string() && ds.type == "completion") {
        docs.push_back(completion(row.get<std::string>(), tok));
        continue;
      }
      if (!row.is_object()) throw UserError(where + ": expected a JSON object");
      if (ds.type == "completion") {
        docs.push_back(completion(field_text(row, ds.field, where), tok));
      } else if (ds.type == "alpaca") {
        std::string input = row.contains("input") ? field_text(row, "input", where) : "";
        docs.push_back(prompt_response(alpaca_prompt(field_text(row, "instruction", where), input),
                                       field_text(row, "output", where), tok));
      } else {
        docs.push_back(prompt_response(field_text(row, ds.prompt_field, where),
                                       field_text(row, ds.response_field, where), tok));
      }
    }
  }
  if (docs.empty()) throw UserError("dataset " + ds.path + ": no documents (empty dataset)");
  return docs;
}

}  // namespace loom
