// tokenizer.json normalizers: transformations of the text before pre-tokenization (Unicode
// normalization forms via utf8proc, Lowercase, Strip, Prepend, Replace, Sequence), with the
// semantics of Hugging Face tokenizers. Each works on valid UTF-8 and yields valid UTF-8.
#pragma once

#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "base/result.h"

namespace moeserve::tok {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual void normalize(std::string& text) const = 0;
};

// `spec` is tokenizer.json's "normalizer" value; null gives nullptr (no normalizer).
Result<std::unique_ptr<Normalizer>> parse_normalizer(const nlohmann::json& spec);

}  // namespace moeserve::tok
