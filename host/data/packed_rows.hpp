// Documents laid into fixed-length rows: packed several to a row (with segment ids and
// per-document positions) or one per row with padding.
#pragma once

#include <cstdint>
#include <vector>

#include "data/document.hpp"

namespace loom {

struct PackedRows {
  std::int64_t seq_len = 0;
  // Row-major [rows, seq_len].
  std::vector<std::int64_t> ids, labels, segments, positions;
  std::int64_t rows() const { return seq_len ? std::int64_t(ids.size()) / seq_len : 0; }
};

struct PackingStats {
  std::int64_t documents = 0;
  std::int64_t split_documents = 0;    // plain-text documents cut across rows
  std::int64_t dropped_documents = 0;  // instruction examples longer than a row, dropped
  std::int64_t tokens = 0;
  std::int64_t padding = 0;
};

// Lays documents into rows in the order given. With `packing`, documents are appended to the
// current row while they fit; a document longer than a row is cut into row-sized pieces if it
// is plain text and dropped if it is an instruction example (its answer would be cut).
// `fill_rows` (training): a plain-text document that does not fit in the rest of the current
// row fills it with its beginning and goes on in the next row, so rows carry no padding.
// Without it (evaluation) such a document starts a new row: every document of at most a row
// is scored whole, so the context each token sees does not depend on the packing.
PackedRows pack_documents(const std::vector<Document>& docs, std::int64_t seq_len, bool packing,
                          std::int64_t pad_id, PackingStats* stats = nullptr,
                          bool fill_rows = true);

}  // namespace loom
