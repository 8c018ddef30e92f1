// The BPE model of tokenizer.json: turns one pre-tokenized piece into token ids by applying
// merges in rank order (Hugging Face tokenizers' algorithm: a priority queue over adjacent
// pairs on a linked list of symbols, O(n log n) per piece), with byte_fallback (<0xXX> tokens
// for characters outside the vocabulary), the unknown token (optionally fused), ignore_merges
// (a piece that is itself a vocabulary entry is one token), continuing_subword_prefix and
// end_of_word_suffix. Results for short pieces are cached.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/result.h"

namespace moeserve::tok {

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using Vocab = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

// Open-addressing map from a pair of token ids to its merge (rank, merged id).
// Invariant: capacity is a power of two and at least twice the number of entries.
class MergeTable {
 public:
  struct Merge {
    int32_t rank;
    int32_t new_id;
  };
  void reserve(size_t count);
  void insert(int32_t left, int32_t right, Merge merge);  // a repeated pair keeps the last
  const Merge* find(int32_t left, int32_t right) const;

 private:
  static uint64_t key(int32_t left, int32_t right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
  }
  struct Slot {
    uint64_t key = ~0ull;  // ~0: empty (no real pair has two ids of 0xFFFFFFFF)
    Merge merge{};
  };
  std::vector<Slot> slots_;
  size_t size_ = 0;
};

struct SymbolList;  // the linked list of symbols merged inside one piece (bpe_model.cpp)

class BpeModel {
 public:
  static Result<std::unique_ptr<BpeModel>> parse(const nlohmann::json& spec);

  // Appends the ids of `piece` (non-empty valid UTF-8) to `out`.
  Result<void> tokenize(std::string_view piece, std::vector<int32_t>& out) const;
  // The fewest ids tokenize() can give `piece`, without tokenizing it: every character becomes a
  // symbol (all 256 byte-fallback tokens exist, or an unfused unknown token), and a symbol covers
  // at most the bytes of its vocabulary entry (a merge's entry is its two parts' concatenation),
  // so each id spans at most max_token_bytes_ of the piece. 0 when no bound holds (characters
  // may be dropped, fused unknowns, a subword prefix or suffix).
  size_t min_tokens(std::string_view piece) const {
    return max_token_bytes_ == 0 ? 0 : (piece.size() + max_token_bytes_ - 1) / max_token_bytes_;
  }

  std::optional<int32_t> token_to_id(std::string_view token) const;
  // nullptr when the id is not in the vocabulary.
  const std::string* id_to_token(int32_t id) const;
  int32_t max_id() const { return static_cast<int32_t>(id_to_token_.size()) - 1; }

 private:
  Result<void> merge_piece(std::string_view piece, std::vector<int32_t>& out) const;
  Status add_symbols(std::string_view piece, SymbolList& symbols) const;

  Vocab vocab_;
  std::vector<std::string> id_to_token_;  // "" where no token has the id
  std::vector<bool> id_present_;
  MergeTable merges_;
  std::optional<std::string> unk_token_;
  std::optional<std::string> continuing_subword_prefix_;
  std::optional<std::string> end_of_word_suffix_;
  bool fuse_unk_ = false;
  bool byte_fallback_ = false;
  bool ignore_merges_ = false;
  std::array<int32_t, 256> byte_fallback_ids_{};  // -1 where <0xXX> is not in the vocabulary
  size_t max_token_bytes_ = 0;                    // min_tokens()'s bound; 0: none

  static constexpr size_t kCacheCapacity = 1 << 16;
  static constexpr size_t kMaxCachedPieceBytes = 256;
  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int32_t>, StringHash, std::equal_to<>> cache_;
};

}  // namespace moeserve::tok
