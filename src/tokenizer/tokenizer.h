// moeserve's tokenizer: loads a Hugging Face tokenizer.json (+ tokenizer_config.json) and
// encodes/decodes exactly as Hugging Face tokenizers does, with transformers 4.x's handling of
// add_bos_token/add_eos_token. The pipeline is: added tokens cut out of the raw text ->
// normalizer -> normalized added tokens -> pre-tokenizer -> BPE model -> post-processor;
// decoding maps ids to token strings and runs the decoder chain.
// A Tokenizer is immutable after loading and safe to share between threads.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace moeserve {

namespace tok {
class AddedVocabulary;
class BpeModel;
class Decoder;
class Normalizer;
class PostProcessor;
class PreTokenizer;
}  // namespace tok

class Tokenizer {
 public:
  // Loads DIR/tokenizer.json, and DIR/tokenizer_config.json when present (add_bos_token,
  // add_eos_token, bos/eos tokens, chat_template; DIR/chat_template.jinja as a fallback).
  static Result<std::shared_ptr<const Tokenizer>> from_dir(const std::string& dir);
  // The same from file contents (config_json may be empty: no tokenizer_config.json).
  static Result<std::shared_ptr<const Tokenizer>> from_json(std::string_view tokenizer_json, std::string_view config_json);

  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  // Invalid UTF-8 in `text` is an error. add_special_tokens=true behaves as transformers 4.x
  // encode(): the post-processor's tokens plus the add_bos_token/add_eos_token rule.
  Result<std::vector<int32_t>> encode(std::string_view text, bool add_special_tokens) const;
  // encode(), unless the text has more than `max_tokens` ids: then nullopt, known as soon as the
  // ids so far plus the fewest the rest of a pre-tokenized segment can give exceed it (a 30 MB
  // prompt against a 4,096-token context is refused without being tokenized). Never nullopt for a
  // text whose encode() fits.
  Result<std::optional<std::vector<int32_t>>> encode_within(std::string_view text, bool add_special_tokens,
                                                            size_t max_tokens) const;
  // Ids outside the vocabulary are skipped, as Hugging Face does. Always valid UTF-8.
  std::string decode(std::span<const int32_t> ids, bool skip_special_tokens) const;

  std::optional<int32_t> token_to_id(std::string_view token) const;
  std::optional<std::string> id_to_token(int32_t id) const;
  bool is_special(int32_t id) const;
  // One past the largest id of the vocabulary and the added tokens.
  int32_t vocab_size() const { return vocab_size_; }
  std::optional<int32_t> bos_token_id() const { return bos_id_; }
  std::optional<int32_t> eos_token_id() const { return eos_id_; }
  const std::string& bos_token() const { return bos_token_; }  // "" if none
  const std::string& eos_token() const { return eos_token_; }  // "" if none
  // tokenizer_config.json's chat_template (string form, or the "default" entry of the list
  // form), else chat_template.jinja next to it; nullopt when there is none.
  std::optional<std::string> chat_template() const { return chat_template_; }

  // The token strings decode() would hand to the decoder (used by the incremental detokenizer).
  bool is_byte_fallback_token(int32_t id) const;

 private:
  Tokenizer();
  static Result<std::shared_ptr<const Tokenizer>> parse_components(std::string_view tokenizer_json, std::string_view config_json);
  Status load_config(std::string_view config_json, bool has_config);
  // With `limit`, stops (returning true in *over) once the ids cannot stay within it.
  Status encode_segment(std::string_view segment, bool at_origin, std::vector<int32_t>& ids,
                        std::optional<size_t> limit = std::nullopt, bool* over = nullptr) const;
  // encode() into `ids`; with `limit`, stops with `over` set once they cannot stay within it.
  Status encode_into(std::string_view text, bool add_special_tokens, std::optional<size_t> limit,
                     std::vector<int32_t>& ids, bool& over) const;

  std::unique_ptr<tok::Normalizer> normalizer_;
  std::unique_ptr<tok::PreTokenizer> pre_tokenizer_;
  std::unique_ptr<tok::BpeModel> model_;
  std::unique_ptr<tok::PostProcessor> post_processor_;
  std::unique_ptr<tok::Decoder> decoder_;
  std::unique_ptr<tok::AddedVocabulary> added_;
  int32_t vocab_size_ = 0;
  std::optional<int32_t> bos_id_, eos_id_;
  std::string bos_token_, eos_token_;
  bool add_bos_ = false, add_eos_ = false;  // the add-if-missing rule (non-Llama classes)
  std::optional<std::string> chat_template_;
};

// Streaming detokenization: feed generated ids one at a time and get the text that became
// final. Text is held back while it ends in an incomplete UTF-8 character or an open run of
// byte-fallback tokens; the concatenation of every push() and finish() equals the decode of
// prompt + generated ids minus the decode of the prompt (the prompt's context is kept, so the
// leading space of the first generated word survives).
class IncrementalDetokenizer {
 public:
  IncrementalDetokenizer(std::shared_ptr<const Tokenizer> tokenizer, std::span<const int32_t> prompt_ids,
                         bool skip_special_tokens);
  std::string push(int32_t id);  // newly final text (maybe "")
  std::string finish();          // whatever is left

 private:
  std::string decode_range(size_t begin, size_t end) const;

  std::shared_ptr<const Tokenizer> tokenizer_;
  bool skip_special_tokens_;
  // Invariant: prefix_offset_ <= read_offset_ <= ids_.size(); text of ids_[prefix_offset_,
  // read_offset_) has been emitted (as the tail of what came before), later ids have not.
  std::vector<int32_t> ids_;
  size_t prefix_offset_ = 0;
  size_t read_offset_ = 0;
};

}  // namespace moeserve
