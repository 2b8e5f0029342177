#include "tokenizer/bpe_model.hpp"

#include <algorithm>
#include <atomic>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "errors.hpp"
#include "tokenizer/byte_level_alphabet.hpp"

namespace loom {
namespace {

using nlohmann::json;

// Ids index dense tables, so a corrupt file must not be able to ask for a huge one.
constexpr std::int64_t kMaxTokenId = 1 << 24;
// Words longer than this are rare and would bloat the cache (Hugging Face uses 256 too).
constexpr std::size_t kMaxCachedWordBytes = 256;
// About 6 MB per thread and model when full; a corpus's frequent words fit easily.
constexpr std::size_t kMaxCachedWords = 1 << 16;

std::atomic<std::uint64_t> next_cache_owner{1};

// Per-thread memo of word -> ids for one model. Ids live in one arena so a cached word costs
// no allocation beyond its key (short keys fit std::string's SSO).
struct WordCache {
  struct Span {
    std::uint32_t offset;
    std::uint32_t length;
  };
  std::uint64_t owner = 0;
  std::uint64_t last_use = 0;
  std::unordered_map<std::string, Span> words;
  std::vector<std::int32_t> arena;
};

// Each thread keeps caches for the few models it used last, so alternating between two
// tokenizers does not wipe them; a model that is gone simply ages out.
WordCache& thread_word_cache(std::uint64_t owner) {
  constexpr std::size_t kModelsPerThread = 4;
  thread_local std::vector<WordCache> caches = [] {
    std::vector<WordCache> v;
    v.reserve(kModelsPerThread);  // references handed out stay valid
    return v;
  }();
  thread_local std::uint64_t clock = 0;
  ++clock;
  WordCache* oldest = nullptr;
  for (WordCache& cache : caches) {
    if (cache.owner == owner) {
      cache.last_use = clock;
      return cache;
    }
    if (oldest == nullptr || cache.last_use < oldest->last_use) oldest = &cache;
  }
  if (caches.size() < kModelsPerThread) {
    caches.emplace_back();
    oldest = &caches.back();
  }
  oldest->words.clear();
  oldest->arena.clear();
  oldest->owner = owner;
  oldest->last_use = clock;
  return *oldest;
}

struct Symbol {
  std::int32_t id;
  std::int32_t prev;
  std::int32_t next;
  bool removed;
};

struct PendingMerge {
  std::int32_t rank;
  std::int32_t pos;
  std::int32_t new_id;
};

// Heap order: lowest rank first, then leftmost, as Hugging Face's Word::merge_all.
bool merges_later(const PendingMerge& a, const PendingMerge& b) {
  return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos;
}

bool optional_bool(const json& model, const char* key, const std::string& where) {
  const auto it = model.find(key);
  if (it == model.end() || it->is_null()) return false;
  if (!it->is_boolean()) throw UserError(where + ": model." + key + " must be true or false");
  return it->get<bool>();
}

}  // namespace

void BpeModel::MergeTable::reserve(std::size_t count) {
  std::size_t capacity = 16;
  int bits = 4;
  while (capacity < count * 2) {
    capacity *= 2;
    ++bits;
  }
  entries_.assign(capacity, Entry());
  shift_ = 64 - bits;
  size_ = 0;
}

void BpeModel::MergeTable::insert(std::int32_t left, std::int32_t right, MergeResult result) {
  if ((size_ + 1) * 2 > entries_.size()) {
    std::vector<Entry> old;
    old.swap(entries_);
    reserve(std::max<std::size_t>(16, old.size()));
    for (const Entry& e : old) {
      if (e.key != kEmpty)
        insert(static_cast<std::int32_t>(e.key >> 32),
               static_cast<std::int32_t>(e.key & 0xFFFFFFFFu), e.result);
    }
  }
  const std::uint64_t k = key(left, right);
  const std::size_t mask = entries_.size() - 1;
  for (std::size_t i = slot(k);; i = (i + 1) & mask) {
    if (entries_[i].key == kEmpty) {
      entries_[i] = {k, result};
      ++size_;
      return;
    }
    if (entries_[i].key == k) {  // a repeated merge: the later one wins, as in Hugging Face
      entries_[i].result = result;
      return;
    }
  }
}

const BpeModel::MergeResult* BpeModel::MergeTable::find(std::int32_t left,
                                                        std::int32_t right) const {
  if (entries_.empty()) return nullptr;
  const std::uint64_t k = key(left, right);
  const std::size_t mask = entries_.size() - 1;
  for (std::size_t i = slot(k);; i = (i + 1) & mask) {
    if (entries_[i].key == k) return &entries_[i].result;
    if (entries_[i].key == kEmpty) return nullptr;
  }
}

BpeModel BpeModel::from_json(const json& model, const std::string& file) {
  const std::string& where = file;
  if (!model.is_object()) throw UserError(where + ": 'model' must be an object");
  if (const auto type = model.find("type"); type != model.end() && !type->is_null()) {
    if (!type->is_string()) throw UserError(where + ": model.type must be a string");
    if (type->get<std::string>() != "BPE") {
      throw UserError(where + ": model type '" + type->get<std::string>() +
                      "' is not supported (only byte-level BPE)");
    }
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    const auto it = model.find(key);
    if (it != model.end() && !it->is_null() &&
        !(it->is_string() && it->get<std::string>().empty())) {
      throw UserError(where + ": model." + key + " is not supported by byte-level BPE");
    }
  }
  if (const auto dropout = model.find("dropout"); dropout != model.end() && !dropout->is_null()) {
    if (!dropout->is_number() || dropout->get<double>() != 0.0) {
      throw UserError(where + ": model.dropout (BPE dropout) is not supported");
    }
  }

  BpeModel bpe;
  bpe.file_ = file;
  bpe.cache_owner_ = next_cache_owner.fetch_add(1);
  bpe.ignore_merges_ = optional_bool(model, "ignore_merges", where);
  bpe.byte_fallback_ = optional_bool(model, "byte_fallback", where);
  bpe.fuse_unk_ = optional_bool(model, "fuse_unk", where);
  if (const auto unk = model.find("unk_token"); unk != model.end() && !unk->is_null()) {
    if (!unk->is_string()) throw UserError(where + ": model.unk_token must be a string");
    bpe.unk_token_ = unk->get<std::string>();
  }

  // Vocabulary.
  const auto vocab = model.find("vocab");
  if (vocab == model.end() || !vocab->is_object()) {
    throw UserError(where + ": model.vocab must be an object of token -> id");
  }
  std::int64_t max_id = -1;
  for (const auto& [spelling, id] : vocab->items()) {
    if (!id.is_number_integer() || id.get<std::int64_t>() < 0 ||
        id.get<std::int64_t>() >= kMaxTokenId) {
      throw UserError(where + ": model.vocab['" + spelling + "'] is not an id in [0, " +
                      std::to_string(kMaxTokenId) + ")");
    }
    max_id = std::max(max_id, id.get<std::int64_t>());
  }
  if (max_id >= 2 * static_cast<std::int64_t>(vocab->size()) + 65536) {
    throw UserError(where + ": model.vocab ids are too sparse (largest " + std::to_string(max_id) +
                    " for " + std::to_string(vocab->size()) + " tokens)");
  }
  const auto size = static_cast<std::size_t>(max_id + 1);
  bpe.spellings_.resize(size);
  bpe.decoded_.resize(size);
  bpe.has_id_.assign(size, false);
  bpe.id_by_spelling_.reserve(vocab->size());
  bpe.id_by_bytes_.reserve(vocab->size());
  const ByteLevelAlphabet& alphabet = ByteLevelAlphabet::get();
  for (const auto& [spelling, id_json] : vocab->items()) {
    const auto id = static_cast<std::int32_t>(id_json.get<std::int64_t>());
    if (bpe.has_id_[id]) {
      throw UserError(where + ": model.vocab gives id " + std::to_string(id) + " to both '" +
                      bpe.spellings_[id] + "' and '" + spelling + "'");
    }
    bpe.has_id_[id] = true;
    bpe.spellings_[id] = spelling;
    bpe.id_by_spelling_.emplace(spelling, id);
    if (auto bytes = alphabet.unspell(spelling)) {
      bpe.decoded_[id] = *bytes;
      bpe.id_by_bytes_.emplace(std::move(*bytes), id);
    } else {
      bpe.decoded_[id] = spelling;  // not byte-level: Hugging Face's decoder keeps it as is
    }
  }
  for (int b = 0; b < 256; ++b) {
    const auto it = bpe.id_by_spelling_.find(alphabet.spell(static_cast<std::uint8_t>(b)));
    bpe.byte_ids_[b] = it == bpe.id_by_spelling_.end() ? -1 : it->second;
  }
  if (bpe.unk_token_) {
    const auto it = bpe.id_by_spelling_.find(*bpe.unk_token_);
    if (it != bpe.id_by_spelling_.end()) bpe.unk_id_ = it->second;
  }

  // Merges, ranked by position: "a b" strings or ["a", "b"] pairs.
  const auto merges = model.find("merges");
  if (merges == model.end() || !merges->is_array()) {
    throw UserError(where + ": model.merges must be an array");
  }
  bpe.merges_.reserve(merges->size());
  std::int32_t rank = 0;
  std::string left;
  std::string right;
  for (const json& merge : *merges) {
    if (merge.is_string()) {
      const std::string& line = merge.get_ref<const std::string&>();
      if (line.rfind("#version", 0) == 0) continue;
      const std::size_t space = line.find(' ');
      if (space == std::string::npos || line.find(' ', space + 1) != std::string::npos) {
        throw UserError(where + ": model.merges entry " + std::to_string(rank + 1) + " ('" + line +
                        "') is not two tokens separated by one space");
      }
      left.assign(line, 0, space);
      right.assign(line, space + 1);
    } else if (merge.is_array() && merge.size() == 2 && merge[0].is_string() &&
               merge[1].is_string()) {
      left = merge[0].get<std::string>();
      right = merge[1].get<std::string>();
    } else {
      throw UserError(where + ": model.merges entry " + std::to_string(rank + 1) +
                      " must be \"a b\" or [\"a\", \"b\"]");
    }
    const auto find = [&](const std::string& token) {
      const auto it = bpe.id_by_spelling_.find(token);
      if (it == bpe.id_by_spelling_.end()) {
        throw UserError(where + ": model.merges entry " + std::to_string(rank + 1) + " uses '" +
                        token + "', which is not in model.vocab");
      }
      return it->second;
    };
    const std::int32_t left_id = find(left);
    const std::int32_t right_id = find(right);
    const std::int32_t new_id = find(left + right);
    bpe.merges_.insert(left_id, right_id, {rank, new_id});
    ++rank;
  }
  return bpe;
}

std::optional<std::int64_t> BpeModel::token_to_id(const std::string& spelling) const {
  const auto it = id_by_spelling_.find(spelling);
  if (it == id_by_spelling_.end()) return std::nullopt;
  return it->second;
}

const std::string* BpeModel::spelling(std::int64_t id) const {
  if (id < 0 || id >= id_limit() || !has_id_[id]) return nullptr;
  return &spellings_[id];
}

const std::string* BpeModel::decoded(std::int64_t id) const {
  if (id < 0 || id >= id_limit() || !has_id_[id]) return nullptr;
  return &decoded_[id];
}

void BpeModel::encode(std::string_view bytes, std::vector<std::int64_t>& ids) const {
  if (bytes.empty()) return;
  thread_local std::string key;  // lookup buffer: no allocation once it has grown
  thread_local std::vector<std::int32_t> merged;
  key.assign(bytes.data(), bytes.size());
  // Most words were seen before, so one cache lookup usually settles it.
  WordCache& cache = thread_word_cache(cache_owner_);
  if (const auto hit = cache.words.find(key); hit != cache.words.end()) {
    const std::int32_t* first = cache.arena.data() + hit->second.offset;
    ids.insert(ids.end(), first, first + hit->second.length);
    return;
  }
  const auto whole = ignore_merges_ ? id_by_bytes_.find(key) : id_by_bytes_.end();
  if (whole != id_by_bytes_.end()) {  // a word that is itself a token skips the merges
    merged.assign(1, whole->second);
  } else {
    merge_word(bytes, merged);
  }
  ids.insert(ids.end(), merged.begin(), merged.end());
  if (bytes.size() <= kMaxCachedWordBytes) {
    if (cache.words.size() >= kMaxCachedWords) {
      cache.words.clear();
      cache.arena.clear();
    }
    const auto offset = static_cast<std::uint32_t>(cache.arena.size());
    cache.arena.insert(cache.arena.end(), merged.begin(), merged.end());
    cache.words.emplace(key, WordCache::Span{offset, static_cast<std::uint32_t>(merged.size())});
  }
}

// Hugging Face's BPE::merge_word: one symbol per byte-level character; unknown characters go
// to byte_fallback tokens, the unk token (fused or not) or are dropped.
void BpeModel::initial_symbols(std::string_view bytes, std::vector<std::int32_t>& symbols) const {
  symbols.clear();
  std::int32_t pending_unk = -1;
  const ByteLevelAlphabet& alphabet = ByteLevelAlphabet::get();
  for (const char c : bytes) {
    const auto byte = static_cast<std::uint8_t>(c);
    const std::int32_t id = byte_ids_[byte];
    if (id >= 0) {
      if (pending_unk >= 0) symbols.push_back(pending_unk);
      pending_unk = -1;
      symbols.push_back(id);
      continue;
    }
    if (byte_fallback_) {
      std::vector<std::int32_t> fallback;
      for (const char spelled : alphabet.spell(byte)) {
        char name[8];
        std::snprintf(name, sizeof(name), "<0x%02X>", static_cast<unsigned char>(spelled));
        const auto it = id_by_spelling_.find(name);
        if (it == id_by_spelling_.end()) break;
        fallback.push_back(it->second);
      }
      if (fallback.size() == alphabet.spell(byte).size()) {
        symbols.insert(symbols.end(), fallback.begin(), fallback.end());
        continue;
      }
    }
    if (unk_token_) {
      if (unk_id_ < 0) {
        throw UserError(file_ + ": model.unk_token '" + *unk_token_ + "' is not in model.vocab");
      }
      if (pending_unk >= 0 && !fuse_unk_) symbols.push_back(pending_unk);
      pending_unk = unk_id_;
    }
  }
  if (pending_unk >= 0) symbols.push_back(pending_unk);
}

void BpeModel::merge_word(std::string_view bytes, std::vector<std::int32_t>& out) const {
  thread_local std::vector<std::int32_t> ids;
  thread_local std::vector<Symbol> symbols;
  thread_local std::vector<PendingMerge> heap;
  initial_symbols(bytes, ids);
  const auto n = static_cast<std::int32_t>(ids.size());
  symbols.resize(ids.size());
  heap.clear();
  for (std::int32_t i = 0; i < n; ++i) {
    symbols[i] = {ids[i], i - 1, i + 1 < n ? i + 1 : -1, false};
    if (i + 1 < n) {
      if (const MergeResult* m = merges_.find(ids[i], ids[i + 1])) {
        heap.push_back({m->rank, i, m->new_id});
      }
    }
  }
  std::make_heap(heap.begin(), heap.end(), merges_later);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), merges_later);
    const PendingMerge top = heap.back();
    heap.pop_back();
    Symbol& left = symbols[top.pos];
    if (left.removed || left.next < 0) continue;
    Symbol& right = symbols[left.next];
    // Skip entries made stale by an earlier merge, by the same test as Hugging Face.
    const MergeResult* current = merges_.find(left.id, right.id);
    if (current == nullptr || current->new_id != top.new_id) continue;
    left.id = top.new_id;
    right.removed = true;
    left.next = right.next;
    if (left.next >= 0) symbols[left.next].prev = top.pos;
    if (left.prev >= 0) {
      if (const MergeResult* m = merges_.find(symbols[left.prev].id, left.id)) {
        heap.push_back({m->rank, left.prev, m->new_id});
        std::push_heap(heap.begin(), heap.end(), merges_later);
      }
    }
    if (left.next >= 0) {
      if (const MergeResult* m = merges_.find(left.id, symbols[left.next].id)) {
        heap.push_back({m->rank, top.pos, m->new_id});
        std::push_heap(heap.begin(), heap.end(), merges_later);
      }
    }
  }
  out.clear();
  for (std::int32_t i = 0; i < n; ++i) {
    if (!symbols[i].removed) out.push_back(symbols[i].id);
  }
}

}  // namespace loom
