// IncrementalDetokenizer (see tokenizer.h). Each push decodes a short window of ids twice —
// up to the last emitted id and up to the new one — and emits the difference once it is
// final: not ending in U+FFFD (an incomplete UTF-8 character) and not inside a run of
// byte-fallback tokens (a later byte can turn the whole run into U+FFFDs). Decoding both
// windows from the same first id makes context-dependent decoders (Strip, Metaspace's first
// token) treat them alike, so the differences add up to the full decode.
#include "tokenizer/tokenizer.h"

#include "tokenizer/unicode_utils.h"

namespace moeserve {

namespace {

// How many prompt tokens of context the first window starts with (vLLM uses 5 as well).
constexpr size_t kContextTokens = 5;

bool ends_with(std::string_view text, std::string_view suffix) {
  return text.size() >= suffix.size() && text.substr(text.size() - suffix.size()) == suffix;
}

}  // namespace

IncrementalDetokenizer::IncrementalDetokenizer(std::shared_ptr<const Tokenizer> tokenizer,
                                               std::span<const int32_t> prompt_ids, bool skip_special_tokens)
    : tokenizer_(std::move(tokenizer)), skip_special_tokens_(skip_special_tokens), ids_(prompt_ids.begin(), prompt_ids.end()) {
  read_offset_ = ids_.size();
  // Start the window kContextTokens decodable tokens back, and never inside a byte-fallback run.
  size_t start = read_offset_;
  size_t context = 0;
  while (start > 0 && context < kContextTokens) {
    --start;
    if (!(skip_special_tokens_ && tokenizer_->is_special(ids_[start]))) ++context;
  }
  while (start > 0 && tokenizer_->is_byte_fallback_token(ids_[start])) --start;
  prefix_offset_ = start;
}

std::string IncrementalDetokenizer::decode_range(size_t begin, size_t end) const {
  return tokenizer_->decode(std::span<const int32_t>(ids_).subspan(begin, end - begin), skip_special_tokens_);
}

std::string IncrementalDetokenizer::push(int32_t id) {
  ids_.push_back(id);
  // A byte-fallback token may still join the bytes after it; a token decode() drops (skipped
  // special, unknown id) changes no text and must not end a byte run either, since the
  // bytes on both sides of it meet in the decoder.
  if (tokenizer_->is_byte_fallback_token(id)) return "";
  if ((skip_special_tokens_ && tokenizer_->is_special(id)) || !tokenizer_->id_to_token(id)) return "";
  const std::string prefix_text = decode_range(prefix_offset_, read_offset_);
  const std::string new_text = decode_range(prefix_offset_, ids_.size());
  if (new_text.size() <= prefix_text.size() || ends_with(new_text, unicode::kReplacementChar)) return "";
  prefix_offset_ = read_offset_;
  read_offset_ = ids_.size();
  return new_text.substr(prefix_text.size());
}

std::string IncrementalDetokenizer::finish() {
  const std::string prefix_text = decode_range(prefix_offset_, read_offset_);
  const std::string new_text = decode_range(prefix_offset_, ids_.size());
  prefix_offset_ = read_offset_ = ids_.size();
  return new_text.size() > prefix_text.size() ? new_text.substr(prefix_text.size()) : "";
}

}  // namespace moeserve

