#include "data/packed_rows.hpp"

#include <algorithm>

#include "loom/sdk/batch.hpp"

namespace loom {

PackedRows pack_documents(const std::vector<Document>& docs, std::int64_t seq_len, bool packing,
                          std::int64_t pad_id, PackingStats* stats, bool fill_rows) {
  PackingStats local;
  PackingStats& st = stats ? *stats : local;
  PackedRows out;
  out.seq_len = seq_len;
  std::int64_t used = 0;     // tokens in the current row
  std::int64_t segment = 0;  // segments in the current row
  auto finish_row = [&] {
    if (used == 0) return;
    for (; used < seq_len; ++used) {
      out.ids.push_back(pad_id);
      out.labels.push_back(sdk::kIgnoreIndex);
      out.segments.push_back(0);
      out.positions.push_back(0);
      ++st.padding;
    }
    used = 0;
    segment = 0;
  };
  auto place = [&](const Document& d, std::size_t begin, std::size_t end) {
    const std::int64_t n = std::int64_t(end - begin);
    if (used + n > seq_len || (!packing && used > 0)) finish_row();
    ++segment;
    for (std::size_t i = begin; i < end; ++i) {
      out.ids.push_back(d.ids[i]);
      out.labels.push_back(d.labels[i]);
      out.segments.push_back(segment);
      out.positions.push_back(std::int64_t(i - begin));
    }
    used += n;
    st.tokens += n;
  };
  for (const auto& d : docs) {
    ++st.documents;
    const std::size_t n = d.ids.size();
    if (n == 0) continue;
    if (std::int64_t(n) <= seq_len && (used + std::int64_t(n) <= seq_len || !packing || used == 0)) {
      place(d, 0, n);
      continue;
    }
    const bool instruction =
        std::any_of(d.labels.begin() + 1, d.labels.end(),
                    [](std::int64_t l) { return l == sdk::kIgnoreIndex; });
    if (instruction) {
      if (std::int64_t(n) > seq_len) {
        ++st.dropped_documents;
        continue;
      }
      place(d, 0, n);  // starts a new row
      continue;
    }
    // Plain text that does not fit: with packing, fill the current row with its beginning and
    // continue in the next rows (as concatenate-and-chunk does, but keeping segment ids).
    std::size_t b = 0;
    if (std::int64_t(n) <= seq_len && !fill_rows) {
      place(d, 0, n);  // starts a new row, whole
      continue;
    }
    const bool fills_row = packing && fill_rows && used > 0 && used < seq_len;
    if (std::int64_t(n) > seq_len || fills_row) ++st.split_documents;  // really cut across rows
    if (fills_row) {
      b = std::size_t(seq_len - used);
      place(d, 0, b);
    }
    for (; b < n; b += std::size_t(seq_len)) place(d, b, std::min<std::size_t>(n, b + std::size_t(seq_len)));
  }
  finish_row();
  return out;
}

}  // namespace loom
