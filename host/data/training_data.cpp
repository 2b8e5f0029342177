#include "data/training_data.hpp"

#include <random>
#include <sstream>

#include "data/dataset_reader.hpp"
#include "errors.hpp"

namespace loom {

TrainingData build_training_data(const TrainConfig& cfg, const Tokenizer& tok, int rank,
                                 int world_size) {
  if (cfg.datasets.empty())
    throw UserError(cfg.source.string() + ": no [[datasets]] given (nothing to train on)");
  std::vector<Document> docs;
  for (const auto& ds : cfg.datasets) {
    auto more = read_dataset(ds, tok);
    docs.insert(docs.end(), std::make_move_iterator(more.begin()), std::make_move_iterator(more.end()));
  }
  // Shuffle documents once (so packing mixes sources), then hold out the eval share.
  std::mt19937_64 rng(cfg.seed ^ 0xD1B54A32D192ED03ULL);
  for (std::size_t i = docs.size(); i > 1; --i) std::swap(docs[i - 1], docs[rng() % i]);
  std::size_t n_eval = 0;
  if (cfg.val_set_size > 0) {
    n_eval = cfg.val_set_size < 1 ? std::size_t(cfg.val_set_size * double(docs.size()) + 0.5)
                                  : std::size_t(cfg.val_set_size);
    n_eval = std::max<std::size_t>(1, n_eval);
    if (n_eval >= docs.size())
      throw UserError(cfg.source.string() + ": val_set_size leaves no training documents (" +
                      std::to_string(docs.size()) + " documents in all)");
  }
  std::vector<Document> eval_docs(std::make_move_iterator(docs.end() - std::ptrdiff_t(n_eval)),
                                  std::make_move_iterator(docs.end()));
  docs.resize(docs.size() - n_eval);

  const std::int64_t pad = tok.pad_id().value_or(tok.eos_id().value_or(0));
  TrainingData out;
  LoaderShape shape{cfg.micro_batch_size, cfg.gradient_accumulation_steps, world_size, rank};
  auto rows = pack_documents(docs, cfg.sequence_len, cfg.sample_packing, pad, &out.train_stats);
  const std::int64_t global = cfg.micro_batch_size * cfg.gradient_accumulation_steps * world_size;
  if (rows.rows() < global)
    throw UserError("the dataset gives " + std::to_string(rows.rows()) + " rows of " +
                    std::to_string(cfg.sequence_len) + " tokens, fewer than one global batch (" +
                    std::to_string(global) +
                    " = micro_batch_size x gradient_accumulation_steps x world size)");
  out.train = std::make_unique<DataLoader>(std::move(rows), shape, cfg.seed);
  if (!eval_docs.empty()) {
    // Whole documents (no row filling): the eval loss does not depend on how they are packed.
    auto eval_rows = pack_documents(eval_docs, cfg.sequence_len, cfg.sample_packing, pad, &out.eval_stats,
                                    /*fill_rows=*/false);
    out.eval = std::make_unique<DataLoader>(std::move(eval_rows), shape, cfg.seed);
  }
  return out;
}

std::string TrainingData::summary() const {
  std::ostringstream s;
  s << "data: " << train_stats.documents << " train documents -> " << train->rows() << " rows ("
    << train_stats.tokens << " tokens, " << train_stats.padding << " padding";
  if (train_stats.split_documents) s << ", " << train_stats.split_documents << " documents cut across rows";
  if (train_stats.dropped_documents)
    s << ", " << train_stats.dropped_documents << " instruction examples longer than sequence_len dropped";
  s << ")";
  if (eval) s << "; " << eval_stats.documents << " eval documents -> " << eval->rows() << " rows";
  return s.str();
}

}  // namespace loom
