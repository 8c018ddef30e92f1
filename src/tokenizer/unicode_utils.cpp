// UTF-8 validation, lossy decoding and the byte-level alphabet (see unicode_utils.h).
#include "tokenizer/unicode_utils.h"

namespace moeserve::unicode {

namespace {

bool in_range(uint8_t byte, uint8_t low, uint8_t high) { return byte >= low && byte <= high; }

// Inspects the sequence starting at text[pos]. Returns its length when it is one valid
// character; otherwise 0, with `invalid_length` set to the maximal invalid subpart (>= 1).
size_t scan_sequence(std::string_view text, size_t pos, size_t& invalid_length) {
  const auto byte_at = [&](size_t i) { return static_cast<uint8_t>(text[i]); };
  const uint8_t lead = byte_at(pos);
  if (lead < 0x80) return 1;
  size_t width = 0;
  uint8_t second_low = 0x80, second_high = 0xBF;
  if (in_range(lead, 0xC2, 0xDF)) {
    width = 2;
  } else if (in_range(lead, 0xE0, 0xEF)) {
    width = 3;
    if (lead == 0xE0) second_low = 0xA0;
    if (lead == 0xED) second_high = 0x9F;
  } else if (in_range(lead, 0xF0, 0xF4)) {
    width = 4;
    if (lead == 0xF0) second_low = 0x90;
    if (lead == 0xF4) second_high = 0x8F;
  } else {
    invalid_length = 1;
    return 0;
  }
  for (size_t i = 1; i < width; ++i) {
    const bool ok = pos + i < text.size() &&
                    (i == 1 ? in_range(byte_at(pos + i), second_low, second_high)
                            : in_range(byte_at(pos + i), 0x80, 0xBF));
    if (!ok) {
      invalid_length = i;
      return 0;
    }
  }
  return width;
}

}  // namespace

std::optional<size_t> find_invalid_utf8(std::string_view text) {
  size_t pos = 0;
  while (pos < text.size()) {
    size_t invalid_length = 0;
    const size_t length = scan_sequence(text, pos, invalid_length);
    if (length == 0) return pos;
    pos += length;
  }
  return std::nullopt;
}

size_t char_length(std::string_view text, size_t pos) {
  size_t invalid_length = 0;
  const size_t length = scan_sequence(text, pos, invalid_length);
  return length == 0 ? 1 : length;
}

uint32_t next_code_point(std::string_view text, size_t& pos) {
  const auto byte_at = [&](size_t i) { return static_cast<uint32_t>(static_cast<uint8_t>(text[i])); };
  const uint32_t lead = byte_at(pos);
  if (lead < 0x80) {
    pos += 1;
    return lead;
  }
  const size_t length = char_length(text, pos);
  uint32_t code_point = 0;
  switch (length) {
    case 2: code_point = ((lead & 0x1F) << 6) | (byte_at(pos + 1) & 0x3F); break;
    case 3: code_point = ((lead & 0x0F) << 12) | ((byte_at(pos + 1) & 0x3F) << 6) | (byte_at(pos + 2) & 0x3F); break;
    case 4:
      code_point = ((lead & 0x07) << 18) | ((byte_at(pos + 1) & 0x3F) << 12) |
                   ((byte_at(pos + 2) & 0x3F) << 6) | (byte_at(pos + 3) & 0x3F);
      break;
    default: code_point = 0xFFFD; break;  // invalid byte: callers validate first
  }
  pos += length;
  return code_point;
}

void append_code_point(std::string& out, uint32_t code_point) {
  if (code_point < 0x80) {
    out.push_back(static_cast<char>(code_point));
  } else if (code_point < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (code_point >> 6)));
    out.push_back(static_cast<char>(0x80 | (code_point & 0x3F)));
  } else if (code_point < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (code_point >> 12)));
    out.push_back(static_cast<char>(0x80 | ((code_point >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (code_point & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (code_point >> 18)));
    out.push_back(static_cast<char>(0x80 | ((code_point >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((code_point >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (code_point & 0x3F)));
  }
}

std::string from_utf8_lossy(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  size_t pos = 0;
  while (pos < bytes.size()) {
    size_t invalid_length = 0;
    const size_t length = scan_sequence(bytes, pos, invalid_length);
    if (length > 0) {
      out.append(bytes.substr(pos, length));
      pos += length;
    } else {
      out.append(kReplacementChar);
      pos += invalid_length;
    }
  }
  return out;
}

bool is_whitespace(uint32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x3000;
}

const ByteLevelAlphabet& ByteLevelAlphabet::get() {
  static const ByteLevelAlphabet alphabet;
  return alphabet;
}

ByteLevelAlphabet::ByteLevelAlphabet() {
  char_to_byte_.fill(-1);
  uint32_t next_extra = 0;
  for (int byte = 0; byte < 256; ++byte) {
    const bool printable = (byte >= '!' && byte <= '~') || (byte >= 0xA1 && byte <= 0xAC) || (byte >= 0xAE);
    const uint32_t code_point = printable ? static_cast<uint32_t>(byte) : 0x100 + next_extra++;
    byte_to_char_[byte] = code_point;
    char_to_byte_[code_point] = static_cast<int16_t>(byte);
    append_code_point(encoded_[byte], code_point);
  }
}

}  // namespace moeserve::unicode
