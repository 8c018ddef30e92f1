// Added-token parsing and matching (see added_tokens.h).
#include "tokenizer/added_tokens.h"

#include <utf8proc.h>

#include "tokenizer/unicode_utils.h"

namespace moeserve::tok {

void TokenTrie::insert(std::string_view content, int32_t id) {
  if (!content.empty())
    first_bytes_[static_cast<unsigned char>(content.front())] = true;
  int32_t node = 0;
  for (unsigned char byte : content) {
    const uint64_t key = (static_cast<uint64_t>(node) << 8) | byte;
    auto it = children_.find(key);
    if (it == children_.end()) {
      const auto child = static_cast<int32_t>(terminal_.size());
      terminal_.push_back(-1);
      it = children_.emplace(key, child).first;
    }
    node = it->second;
  }
  terminal_[node] =
      id; // a repeated content keeps the last id, as a map insert would
}

std::optional<std::pair<int32_t, size_t>>
TokenTrie::longest_at(std::string_view text, size_t pos) const {
  std::optional<std::pair<int32_t, size_t>> best;
  // Most positions cannot start any token: one table look-up instead of a hash
  // probe.
  if (pos >= text.size() ||
      !first_bytes_[static_cast<unsigned char>(text[pos])])
    return best;
  int32_t node = 0;
  for (size_t i = pos; i < text.size(); ++i) {
    auto it = children_.find((static_cast<uint64_t>(node) << 8) |
                             static_cast<unsigned char>(text[i]));
    if (it == children_.end())
      break;
    node = it->second;
    if (terminal_[node] >= 0)
      best = std::make_pair(terminal_[node], i + 1);
  }
  return best;
}

namespace {

// Rust regex \w (Unicode): letters, marks, decimal digits, connector
// punctuation.
bool is_word_char(uint32_t c) {
  switch (utf8proc_category(static_cast<utf8proc_int32_t>(c))) {
  case UTF8PROC_CATEGORY_LU:
  case UTF8PROC_CATEGORY_LL:
  case UTF8PROC_CATEGORY_LT:
  case UTF8PROC_CATEGORY_LM:
  case UTF8PROC_CATEGORY_LO:
  case UTF8PROC_CATEGORY_MN:
  case UTF8PROC_CATEGORY_MC:
  case UTF8PROC_CATEGORY_ME:
  case UTF8PROC_CATEGORY_ND:
  case UTF8PROC_CATEGORY_NL:
  case UTF8PROC_CATEGORY_PC:
    return true;
  default:
    return c == 0x200C || c == 0x200D;
  }
}

// Code point of the last character of text[0, end).
uint32_t last_code_point(std::string_view text, size_t end) {
  size_t start = end - 1;
  while (start > 0 && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80)
    --start;
  return unicode::next_code_point(text, start);
}

// Start of the whitespace run that ends at `end`.
size_t whitespace_run_start(std::string_view text, size_t end) {
  while (end > 0) {
    size_t start = end - 1;
    while (start > 0 &&
           (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80)
      --start;
    size_t probe = start;
    if (!unicode::is_whitespace(unicode::next_code_point(text, probe)))
      break;
    end = start;
  }
  return end;
}

size_t whitespace_run_end(std::string_view text, size_t start) {
  while (start < text.size()) {
    size_t next = start;
    if (!unicode::is_whitespace(unicode::next_code_point(text, next)))
      break;
    start = next;
  }
  return start;
}

Result<AddedToken> parse_token(const nlohmann::json &item) {
  if (!item.is_object())
    return make_error("added_tokens entries must be objects");
  auto id = item.find("id");
  auto content = item.find("content");
  if (id == item.end() || !id->is_number_integer() || id->get<int64_t>() < 0 ||
      id->get<int64_t>() > INT32_MAX / 2)
    return make_error("added token without a valid \"id\"");
  if (content == item.end() || !content->is_string())
    return make_error("added token {} without \"content\"", id->dump());
  AddedToken token;
  token.id = id->get<int32_t>();
  token.content = content->get<std::string>();
  if (unicode::find_invalid_utf8(token.content))
    return make_error("added token {} is not valid UTF-8", token.id);
  token.special = item.value("special", false);
  token.single_word = item.value("single_word", false);
  token.lstrip = item.value("lstrip", false);
  token.rstrip = item.value("rstrip", false);
  token.normalized = item.value("normalized", !token.special);
  token.decoded = token.content;
  return token;
}

} // namespace

Result<AddedVocabulary> AddedVocabulary::parse(const nlohmann::json &tokens,
                                               const Normalizer *normalizer) {
  AddedVocabulary vocabulary;
  if (tokens.is_null())
    return vocabulary;
  if (!tokens.is_array())
    return make_error("\"added_tokens\" must be an array");
  for (const auto &item : tokens) {
    MS_ASSIGN_OR_RETURN(AddedToken token, parse_token(item));
    if (token.content.empty())
      continue; // Hugging Face ignores empty added tokens
    if (token.normalized && normalizer != nullptr)
      normalizer->normalize(token.decoded);
    if (token.normalized)
      vocabulary.normalized_trie_.insert(token.decoded, token.id);
    else
      vocabulary.raw_trie_.insert(token.content, token.id);
    vocabulary.id_by_content_[token.content] = token.id;
    vocabulary.index_by_id_[token.id] = vocabulary.tokens_.size();
    vocabulary.tokens_.push_back(std::move(token));
  }
  return vocabulary;
}

std::vector<TextSegment> AddedVocabulary::split(std::string_view text,
                                                bool normalized_set) const {
  const TokenTrie &trie = normalized_set ? normalized_trie_ : raw_trie_;
  std::vector<TextSegment> segments;
  size_t start_offset = 0; // end of the last emitted segment
  size_t search_from = 0;
  while (!trie.empty() && search_from < text.size()) {
    std::optional<std::pair<int32_t, size_t>> match;
    size_t match_start = search_from;
    for (; match_start < text.size() && !match; ++match_start)
      match = trie.longest_at(text, match_start);
    if (!match)
      break;
    --match_start;
    auto [id, stop] = *match;
    search_from = stop;
    size_t start = match_start;
    const AddedToken &token = *find(id);
    if (token.single_word) {
      const bool space_before =
          start == 0 || !is_word_char(last_code_point(text, start));
      size_t probe = stop;
      const bool space_after =
          stop == text.size() ||
          !is_word_char(unicode::next_code_point(text, probe));
      if (!space_before || !space_after)
        continue;
    }
    if (token.lstrip)
      start = std::max(whitespace_run_start(text, start), start_offset);
    if (token.rstrip)
      stop = whitespace_run_end(text, stop);
    search_from = stop; // never let the next match overlap stripped spaces
    if (start_offset < start)
      segments.push_back({start_offset, start, std::nullopt});
    segments.push_back({start, stop, id});
    start_offset = stop;
  }
  if (start_offset < text.size() || segments.empty())
    segments.push_back({start_offset, text.size(), std::nullopt});
  return segments;
}

const AddedToken *AddedVocabulary::find(int32_t id) const {
  auto it = index_by_id_.find(id);
  return it == index_by_id_.end() ? nullptr : &tokens_[it->second];
}

std::optional<int32_t>
AddedVocabulary::token_to_id(std::string_view content) const {
  auto it = id_by_content_.find(content);
  if (it == id_by_content_.end())
    return std::nullopt;
  return it->second;
}

} // namespace moeserve::tok
