// UTF-8 helpers the tokenizer pipeline shares: validation, code point iteration, lossy
// decoding with Rust's `String::from_utf8_lossy` rules (one U+FFFD per maximal invalid
// subpart, the rule Hugging Face tokenizers' decoders inherit), and GPT-2's byte-level
// alphabet (each byte 0..255 mapped to a printable code point).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace moeserve::unicode {

inline constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD";  // U+FFFD

// Byte offset of the first invalid UTF-8 sequence in `text`, or nullopt when it is valid.
std::optional<size_t> find_invalid_utf8(std::string_view text);

// Length in bytes of the (valid) UTF-8 character starting at text[pos]; 1 for invalid bytes.
size_t char_length(std::string_view text, size_t pos);

// Decodes the code point at text[pos] (text must be valid UTF-8) and advances pos.
uint32_t next_code_point(std::string_view text, size_t& pos);

void append_code_point(std::string& out, uint32_t code_point);

// Replaces each maximal invalid subpart with U+FFFD (Rust from_utf8_lossy semantics).
std::string from_utf8_lossy(std::string_view bytes);

// Unicode White_Space, as Rust's char::is_whitespace.
bool is_whitespace(uint32_t code_point);

// GPT-2's byte-to-unicode table: printable bytes map to themselves, the rest to U+0100+n.
// Invariant: byte_to_char is a bijection between 0..255 and 256 code points below 0x144.
class ByteLevelAlphabet {
 public:
  static const ByteLevelAlphabet& get();
  uint32_t byte_to_char(uint8_t byte) const { return byte_to_char_[byte]; }
  // The byte a code point stands for, or -1 when it is outside the alphabet.
  int char_to_byte(uint32_t code_point) const {
    return code_point < char_to_byte_.size() ? char_to_byte_[code_point] : -1;
  }
  // UTF-8 encoding of byte_to_char(byte), precomputed for speed.
  std::string_view encoded(uint8_t byte) const { return encoded_[byte]; }

 private:
  ByteLevelAlphabet();
  std::array<uint32_t, 256> byte_to_char_{};
  std::array<int16_t, 0x144> char_to_byte_{};
  std::array<std::string, 256> encoded_;
};

}  // namespace moeserve::unicode
