// tokenizer.json pre-tokenizers: they cut normalized text into the pieces the model sees one
// at a time (Split with a regex and a delimiter behavior, ByteLevel, Metaspace, Digits,
// Whitespace, WhitespaceSplit, Punctuation, BertPreTokenizer, Sequence), with the semantics
// of Hugging Face tokenizers. ByteLevel also rewrites each piece's bytes into GPT-2's alphabet.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/result.h"

namespace moeserve::tok {

// One piece of text. Invariant: text is non-empty valid UTF-8; at_origin is true only when
// the piece starts at offset 0 of the original input (Metaspace's "first" scheme needs it).
struct PreSplit {
  std::string text;
  bool at_origin = false;
};

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Replaces every split by its sub-splits (empty ones are dropped).
  virtual void pre_tokenize(std::vector<PreSplit>& splits) const = 0;
};

// `spec` is tokenizer.json's "pre_tokenizer" value; null gives nullptr.
Result<std::unique_ptr<PreTokenizer>> parse_pre_tokenizer(const nlohmann::json& spec);

}  // namespace moeserve::tok
