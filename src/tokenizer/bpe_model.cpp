// BPE model implementation (see bpe_model.h).
#include "tokenizer/bpe_model.h"

#include <algorithm>
#include <queue>

#include <fmt/format.h>

#include "tokenizer/unicode_utils.h"

namespace moeserve::tok {

void MergeTable::reserve(size_t count) {
  size_t capacity = 16;
  while (capacity < 2 * count) capacity *= 2;
  slots_.assign(capacity, Slot{});
  size_ = 0;
}

static size_t mix(uint64_t key) {
  key ^= key >> 33;
  key *= 0xff51afd7ed558ccdull;
  key ^= key >> 33;
  return static_cast<size_t>(key);
}

void MergeTable::insert(int32_t left, int32_t right, Merge merge) {
  if (2 * (size_ + 1) > slots_.size()) {
    std::vector<Slot> old = std::move(slots_);
    reserve(std::max<size_t>(size_ + 1, old.size()));
    for (const Slot& slot : old)
      if (slot.key != ~0ull) insert(static_cast<int32_t>(slot.key >> 32), static_cast<int32_t>(slot.key), slot.merge);
  }
  const uint64_t k = key(left, right);
  const size_t mask = slots_.size() - 1;
  for (size_t i = mix(k) & mask;; i = (i + 1) & mask) {
    if (slots_[i].key == k) {
      slots_[i].merge = merge;
      return;
    }
    if (slots_[i].key == ~0ull) {
      slots_[i] = {k, merge};
      ++size_;
      return;
    }
  }
}

const MergeTable::Merge* MergeTable::find(int32_t left, int32_t right) const {
  if (slots_.empty()) return nullptr;
  const uint64_t k = key(left, right);
  const size_t mask = slots_.size() - 1;
  for (size_t i = mix(k) & mask;; i = (i + 1) & mask) {
    if (slots_[i].key == k) return &slots_[i].merge;
    if (slots_[i].key == ~0ull) return nullptr;
  }
}

// Symbols of one piece as a doubly linked list over a vector. Invariant: a symbol with
// length 0 has been merged into its left neighbour and is no longer linked.
struct SymbolList {
  struct Symbol {
    int32_t id;
    int32_t prev, next;  // -1 at the ends
    uint32_t length;     // bytes of the piece it covers
  };
  std::vector<Symbol> symbols;
  void add(int32_t id, size_t length) {
    const auto index = static_cast<int32_t>(symbols.size());
    if (!symbols.empty()) symbols.back().next = index;
    symbols.push_back({id, index - 1, -1, static_cast<uint32_t>(length)});
  }
};

namespace {

Result<std::vector<std::pair<std::string, std::string>>> read_merges(const nlohmann::json& merges) {
  std::vector<std::pair<std::string, std::string>> pairs;
  pairs.reserve(merges.size());
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& merge = merges[rank];
    if (merge.is_string()) {
      const std::string line = merge.get<std::string>();
      const size_t space = line.find(' ');
      if (space == std::string::npos || line.find(' ', space + 1) != std::string::npos)
        return make_error("merge {} ('{}') is not two tokens separated by one space", rank, line);
      pairs.emplace_back(line.substr(0, space), line.substr(space + 1));
    } else if (merge.is_array() && merge.size() == 2 && merge[0].is_string() && merge[1].is_string()) {
      pairs.emplace_back(merge[0].get<std::string>(), merge[1].get<std::string>());
    } else {
      return make_error("merge {} must be \"a b\" or [\"a\", \"b\"]", rank);
    }
  }
  return pairs;
}

Result<std::optional<std::string>> optional_string(const nlohmann::json& spec, const char* key) {
  auto it = spec.find(key);
  if (it == spec.end() || it->is_null()) return std::optional<std::string>();
  if (!it->is_string()) return make_error("BPE field \"{}\" must be a string or null", key);
  return std::optional<std::string>(it->get<std::string>());
}

}  // namespace

Result<std::unique_ptr<BpeModel>> BpeModel::parse(const nlohmann::json& spec) {
  auto model = std::make_unique<BpeModel>();
  auto vocab_it = spec.find("vocab");
  if (vocab_it == spec.end() || !vocab_it->is_object()) return make_error("BPE model has no \"vocab\" object");
  model->vocab_.reserve(vocab_it->size());
  int32_t max_id = -1;
  for (const auto& [token, id_json] : vocab_it->items()) {
    if (!id_json.is_number_integer() || id_json.get<int64_t>() < 0 || id_json.get<int64_t>() > INT32_MAX / 2)
      return make_error("vocab entry '{}' has no valid id", token);
    const auto id = id_json.get<int32_t>();
    model->vocab_.emplace(token, id);
    max_id = std::max(max_id, id);
  }
  model->id_to_token_.assign(static_cast<size_t>(max_id + 1), std::string());
  model->id_present_.assign(static_cast<size_t>(max_id + 1), false);
  for (const auto& [token, id] : model->vocab_) {
    model->id_to_token_[id] = token;
    model->id_present_[id] = true;
  }
  MS_ASSIGN_OR_RETURN(model->unk_token_, optional_string(spec, "unk_token"));
  MS_ASSIGN_OR_RETURN(model->continuing_subword_prefix_, optional_string(spec, "continuing_subword_prefix"));
  MS_ASSIGN_OR_RETURN(model->end_of_word_suffix_, optional_string(spec, "end_of_word_suffix"));
  model->fuse_unk_ = spec.value("fuse_unk", false);
  model->byte_fallback_ = spec.value("byte_fallback", false);
  model->ignore_merges_ = spec.value("ignore_merges", false);
  if (auto dropout = spec.find("dropout"); dropout != spec.end() && dropout->is_number() && dropout->get<double>() > 0)
    return make_error("BPE dropout is not supported (tokenization would be random)");
  for (int byte = 0; byte < 256; ++byte) {
    auto id = model->token_to_id(fmt::format("<0x{:02X}>", byte));
    model->byte_fallback_ids_[byte] = id ? *id : -1;
  }
  // min_tokens()'s bound: no character is dropped, and each symbol's covered bytes stay within
  // its entry's length (a character's own entry; a byte-fallback or unknown token covers at most
  // 4 bytes; a merge concatenates its parts' entries, with no prefix to take off).
  bool every_byte = true;
  for (int32_t id : model->byte_fallback_ids_) every_byte = every_byte && id >= 0;
  const bool no_drops = (model->byte_fallback_ && every_byte) || (model->unk_token_ && !model->fuse_unk_);
  if (no_drops && !model->continuing_subword_prefix_ && !model->end_of_word_suffix_) {
    size_t longest = 4;
    for (const auto& [token, id] : model->vocab_) longest = std::max(longest, token.size());
    model->max_token_bytes_ = longest;
  }
  auto merges_it = spec.find("merges");
  if (merges_it == spec.end() || !merges_it->is_array()) return make_error("BPE model has no \"merges\" array");
  MS_ASSIGN_OR_RETURN(auto pairs, read_merges(*merges_it));
  const size_t prefix_length = model->continuing_subword_prefix_ ? model->continuing_subword_prefix_->size() : 0;
  model->merges_.reserve(pairs.size());
  for (size_t rank = 0; rank < pairs.size(); ++rank) {
    const auto& [left, right] = pairs[rank];
    auto left_id = model->token_to_id(left), right_id = model->token_to_id(right);
    if (!left_id || !right_id) return make_error("merge {} ('{} {}') uses a token missing from the vocab", rank, left, right);
    const std::string merged = left + (right.size() >= prefix_length ? right.substr(prefix_length) : right);
    auto merged_id = model->token_to_id(merged);
    if (!merged_id) return make_error("merge {} produces '{}', which is missing from the vocab", rank, merged);
    model->merges_.insert(*left_id, *right_id, {static_cast<int32_t>(rank), *merged_id});
  }
  return model;
}

std::optional<int32_t> BpeModel::token_to_id(std::string_view token) const {
  auto it = vocab_.find(token);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

const std::string* BpeModel::id_to_token(int32_t id) const {
  if (id < 0 || id >= static_cast<int32_t>(id_to_token_.size()) || !id_present_[id]) return nullptr;
  return &id_to_token_[id];
}

// One symbol per character (with prefix/suffix), byte-fallback or unknown where a character
// is not in the vocabulary. Characters with neither are dropped, as Hugging Face does.
Status BpeModel::add_symbols(std::string_view piece, SymbolList& symbols) const {
  int32_t pending_unk_id = -1;  // an unknown run not yet added (fuse_unk grows it)
  size_t pending_unk_bytes = 0;
  const auto flush_unk = [&] {
    if (pending_unk_id >= 0) symbols.add(pending_unk_id, pending_unk_bytes);
    pending_unk_id = -1;
  };
  std::string decorated;
  size_t pos = 0;
  while (pos < piece.size()) {
    const size_t start = pos;
    pos += unicode::char_length(piece, pos);
    std::string_view character = piece.substr(start, pos - start);
    std::string_view lookup = character;
    const bool add_prefix = start > 0 && continuing_subword_prefix_;
    const bool add_suffix = pos == piece.size() && end_of_word_suffix_;
    if (add_prefix || add_suffix) {
      decorated.clear();
      if (add_prefix) decorated += *continuing_subword_prefix_;
      decorated += character;
      if (add_suffix) decorated += *end_of_word_suffix_;
      lookup = decorated;
    }
    if (auto id = token_to_id(lookup)) {
      flush_unk();
      symbols.add(*id, character.size());
      continue;
    }
    if (byte_fallback_) {
      bool all_bytes = true;
      for (unsigned char byte : lookup) all_bytes = all_bytes && byte_fallback_ids_[byte] >= 0;
      if (all_bytes) {
        for (unsigned char byte : lookup) symbols.add(byte_fallback_ids_[byte], 1);
        continue;
      }
    }
    if (!unk_token_) continue;
    auto unk_id = token_to_id(*unk_token_);
    if (!unk_id) return make_error("unk_token '{}' is not in the vocab", *unk_token_);
    if (pending_unk_id >= 0 && fuse_unk_) {
      pending_unk_bytes += character.size();
    } else {
      flush_unk();
      pending_unk_id = *unk_id;
      pending_unk_bytes = character.size();
    }
  }
  flush_unk();
  return ok_status();
}

Result<void> BpeModel::merge_piece(std::string_view piece, std::vector<int32_t>& out) const {
  SymbolList list;
  list.symbols.reserve(piece.size());
  MS_RETURN_IF_ERROR(add_symbols(piece, list));
  auto& symbols = list.symbols;
  struct Candidate {
    int32_t rank, pos, new_id;
    bool operator<(const Candidate& other) const {  // max-heap on (lowest rank, leftmost pos)
      return rank != other.rank ? rank > other.rank : pos > other.pos;
    }
  };
  std::priority_queue<Candidate> queue;
  const auto push_pair = [&](int32_t pos) {
    const int32_t next = symbols[pos].next;
    if (next < 0) return;
    if (const auto* merge = merges_.find(symbols[pos].id, symbols[next].id))
      queue.push({merge->rank, pos, merge->new_id});
  };
  for (int32_t pos = 0; pos + 1 < static_cast<int32_t>(symbols.size()); ++pos) push_pair(pos);
  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    auto& current = symbols[top.pos];
    if (current.length == 0 || current.next < 0) continue;
    auto& right = symbols[current.next];
    const auto* merge = merges_.find(current.id, right.id);
    if (merge == nullptr || merge->new_id != top.new_id) continue;  // stale candidate
    current.id = top.new_id;
    current.length += right.length;
    right.length = 0;
    current.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = top.pos;
    if (current.prev >= 0) push_pair(current.prev);
    push_pair(top.pos);
  }
  for (const auto& symbol : symbols)
    if (symbol.length > 0) out.push_back(symbol.id);
  return ok_status();
}

Result<void> BpeModel::tokenize(std::string_view piece, std::vector<int32_t>& out) const {
  if (piece.empty()) return ok_status();
  if (ignore_merges_) {
    if (auto id = token_to_id(piece)) {
      out.push_back(*id);
      return ok_status();
    }
  }
  const bool cacheable = piece.size() < kMaxCachedPieceBytes;
  if (cacheable) {
    std::lock_guard lock(cache_mutex_);
    if (auto it = cache_.find(piece); it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return ok_status();
    }
  }
  const size_t first = out.size();
  MS_RETURN_IF_ERROR(merge_piece(piece, out));
  if (cacheable) {
    std::lock_guard lock(cache_mutex_);
    if (cache_.size() < kCacheCapacity) cache_.emplace(std::string(piece), std::vector<int32_t>(out.begin() + first, out.end()));
  }
  return ok_status();
}

}  // namespace moeserve::tok
