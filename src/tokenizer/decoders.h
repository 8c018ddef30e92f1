// tokenizer.json decoders: turn the token strings of ids back into text (ByteLevel, Metaspace,
// Replace, ByteFallback, Fuse, Strip, BPEDecoder, Sequence), with Hugging Face tokenizers'
// decode_chain semantics: each decoder maps a list of token strings to a new list, and the
// final text is their concatenation. Output is always valid UTF-8 (invalid bytes become U+FFFD).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/result.h"

namespace moeserve::tok {

class Decoder {
 public:
  virtual ~Decoder() = default;
  virtual void decode_chain(std::vector<std::string>& tokens) const = 0;
};

// `spec` is tokenizer.json's "decoder" value; null gives nullptr (tokens joined by spaces).
Result<std::unique_ptr<Decoder>> parse_decoder(const nlohmann::json& spec);

// The byte a "<0xXX>" byte-fallback token stands for, or -1.
int byte_fallback_value(std::string_view token);

}  // namespace moeserve::tok
