// Tokenizer encode/decode and vocabulary queries (loading is in tokenizer_loading.cpp).
#include "tokenizer/tokenizer.h"

#include "tokenizer/added_tokens.h"
#include "tokenizer/bpe_model.h"
#include "tokenizer/decoders.h"
#include "tokenizer/normalizers.h"
#include "tokenizer/post_processors.h"
#include "tokenizer/pre_tokenizers.h"
#include "tokenizer/unicode_utils.h"

namespace moeserve {

// One stretch of raw text between non-normalized added tokens: normalize it, cut out the
// normalized added tokens, pre-tokenize and run the model on each remaining piece.
Status Tokenizer::encode_segment(std::string_view segment, bool at_origin, std::vector<int32_t>& ids,
                                 std::optional<size_t> limit, bool* over) const {
  std::string normalized(segment);
  if (normalizer_) normalizer_->normalize(normalized);
  for (const auto& part : added_->split(normalized, /*normalized_set=*/true)) {
    if (part.token_id) {
      ids.push_back(*part.token_id);
      continue;
    }
    if (part.start == part.end) continue;
    std::vector<tok::PreSplit> splits;
    splits.push_back({normalized.substr(part.start, part.end - part.start), at_origin && part.start == 0});
    if (pre_tokenizer_) pre_tokenizer_->pre_tokenize(splits);
    // Bounded: the fewest ids this part's pieces still to go can give; ids only grow from here.
    size_t still_to_come = 0;
    if (limit) {
      for (const auto& split : splits) still_to_come += model_->min_tokens(split.text);
    }
    for (const auto& split : splits) {
      if (limit && ids.size() + still_to_come > *limit) {
        *over = true;
        return ok_status();
      }
      MS_RETURN_IF_ERROR(model_->tokenize(split.text, ids));
      if (limit) still_to_come -= model_->min_tokens(split.text);
    }
  }
  return ok_status();
}

Result<std::vector<int32_t>> Tokenizer::encode(std::string_view text, bool add_special_tokens) const {
  std::vector<int32_t> ids;
  bool over = false;
  MS_RETURN_IF_ERROR(encode_into(text, add_special_tokens, std::nullopt, ids, over));
  return ids;
}

Result<std::optional<std::vector<int32_t>>> Tokenizer::encode_within(std::string_view text, bool add_special_tokens,
                                                                     size_t max_tokens) const {
  std::vector<int32_t> ids;
  bool over = false;
  MS_RETURN_IF_ERROR(encode_into(text, add_special_tokens, max_tokens, ids, over));
  if (over) return std::optional<std::vector<int32_t>>();
  return std::optional<std::vector<int32_t>>(std::move(ids));
}

Status Tokenizer::encode_into(std::string_view text, bool add_special_tokens, std::optional<size_t> limit,
                              std::vector<int32_t>& ids, bool& over) const {
  if (auto bad = unicode::find_invalid_utf8(text)) return make_error("text is not valid UTF-8 (byte offset {})", *bad);
  for (const auto& segment : added_->split(text, /*normalized_set=*/false)) {
    if (segment.token_id) {
      ids.push_back(*segment.token_id);
    } else {
      MS_RETURN_IF_ERROR(encode_segment(text.substr(segment.start, segment.end - segment.start), segment.start == 0,
                                        ids, limit, &over));
    }
    // The special tokens added below only add ids, so this is already the answer.
    if (over || (limit && ids.size() > *limit)) {
      over = true;
      return ok_status();
    }
  }
  if (add_special_tokens) {
    if (post_processor_) post_processor_->process(ids);
    if (add_bos_ && (ids.empty() || ids.front() != *bos_id_)) ids.insert(ids.begin(), *bos_id_);
    if (add_eos_ && (ids.empty() || ids.back() != *eos_id_)) ids.push_back(*eos_id_);
  }
  over = limit && ids.size() > *limit;
  return ok_status();
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int32_t id : ids) {
    if (const auto* added = added_->find(id)) {
      if (!(skip_special_tokens && added->special)) tokens.push_back(added->decoded);
    } else if (const std::string* token = model_->id_to_token(id)) {
      // A vocabulary entry spelled like a special token is skipped too (Hugging Face compares strings).
      const auto same_as = added_->token_to_id(*token);
      const bool special = same_as && added_->find(*same_as)->special;
      if (!(skip_special_tokens && special)) tokens.push_back(*token);
    }
  }
  if (!decoder_) {
    std::string joined;
    for (size_t i = 0; i < tokens.size(); ++i) {
      if (i > 0) joined.push_back(' ');
      joined.append(tokens[i]);
    }
    return unicode::from_utf8_lossy(joined);
  }
  decoder_->decode_chain(tokens);
  std::string text;
  for (const auto& token : tokens) text += token;
  return text;
}

std::optional<int32_t> Tokenizer::token_to_id(std::string_view token) const {
  if (auto id = added_->token_to_id(token)) return id;
  return model_->token_to_id(token);
}

std::optional<std::string> Tokenizer::id_to_token(int32_t id) const {
  if (const auto* added = added_->find(id)) return added->content;
  if (const std::string* token = model_->id_to_token(id)) return *token;
  return std::nullopt;
}

bool Tokenizer::is_special(int32_t id) const {
  const auto* added = added_->find(id);
  return added != nullptr && added->special;
}

bool Tokenizer::is_byte_fallback_token(int32_t id) const {
  if (added_->find(id) != nullptr) return false;
  const std::string* token = model_->id_to_token(id);
  return token != nullptr && tok::byte_fallback_value(*token) >= 0;
}

}  // namespace moeserve
