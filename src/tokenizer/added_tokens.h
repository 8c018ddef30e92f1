// Added tokens of tokenizer.json (special tokens and user-added words) and
// their matching: before the model runs, the text is cut around every
// occurrence, leftmost first and longest at a position, first the tokens with
// normalized=false on the raw text, then those with normalized=true on the
// normalized pieces; single_word, lstrip and rstrip behave as in Hugging Face
// tokenizers' AddedVocabulary.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/result.h"
#include "tokenizer/bpe_model.h"
#include "tokenizer/normalizers.h"

namespace moeserve::tok {

struct AddedToken {
  int32_t id = 0;
  std::string content;
  bool special = false;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = false;
  std::string
      decoded; // content, normalized when `normalized` (what decode emits)
};

// A stretch of text: either an added token (token_id set) or plain text to
// tokenize.
struct TextSegment {
  size_t start, end; // byte range in the text that was split
  std::optional<int32_t> token_id;
};

// A byte trie for leftmost-longest matching. Invariant: node 0 is the root;
// terminal_[n] is the token id ending at node n or -1.
class TokenTrie {
public:
  TokenTrie() : terminal_(1, -1) {}
  void insert(std::string_view content, int32_t id);
  bool empty() const { return terminal_.size() == 1; }
  // The longest token starting at text[pos]: (id, end), or nullopt.
  std::optional<std::pair<int32_t, size_t>> longest_at(std::string_view text,
                                                       size_t pos) const;

private:
  std::unordered_map<uint64_t, int32_t>
      children_; // (node << 8 | byte) -> child node
  std::vector<int32_t> terminal_;
  std::array<bool, 256> first_bytes_{}; // bytes some token starts with
};

class AddedVocabulary {
public:
  // `tokens` is tokenizer.json's "added_tokens" array.
  static Result<AddedVocabulary> parse(const nlohmann::json &tokens,
                                       const Normalizer *normalizer);

  // Cuts `text` around the tokens of one set (normalized=false or
  // normalized=true).
  std::vector<TextSegment> split(std::string_view text,
                                 bool normalized_set) const;

  const AddedToken *find(int32_t id) const;
  std::optional<int32_t> token_to_id(std::string_view content) const;
  const std::vector<AddedToken> &tokens() const { return tokens_; }

private:
  std::vector<AddedToken> tokens_;
  std::unordered_map<int32_t, size_t> index_by_id_;
  Vocab id_by_content_; // content -> id
  TokenTrie raw_trie_, normalized_trie_;
};

} // namespace moeserve::tok
