// Python str semantics over UTF-8 text (see text_utils.h). Case mapping uses utf8proc's
// simple (one-to-one) mappings, which agree with Python for everything but a handful of
// special-casing letters (e.g. 'ß'.upper() is 'SS' in Python).
#include "tokenizer/chat/text_utils.h"

#include <algorithm>

#include <utf8proc.h>

namespace moeserve::chat {

std::vector<char32_t> decode_utf8(std::string_view text) {
  std::vector<char32_t> out;
  out.reserve(text.size());
  const auto* bytes = reinterpret_cast<const utf8proc_uint8_t*>(text.data());
  utf8proc_ssize_t remaining = static_cast<utf8proc_ssize_t>(text.size());
  while (remaining > 0) {
    utf8proc_int32_t code_point = 0;
    utf8proc_ssize_t used = utf8proc_iterate(bytes, remaining, &code_point);
    if (used <= 0) {
      out.push_back(0xFFFD);
      used = 1;
    } else {
      out.push_back(static_cast<char32_t>(code_point));
    }
    bytes += used;
    remaining -= used;
  }
  return out;
}

void append_utf8(std::string& out, char32_t code_point) {
  utf8proc_uint8_t buffer[4];
  utf8proc_ssize_t length = utf8proc_encode_char(static_cast<utf8proc_int32_t>(code_point), buffer);
  if (length <= 0) {
    length = utf8proc_encode_char(0xFFFD, buffer);
  }
  out.append(reinterpret_cast<const char*>(buffer), static_cast<size_t>(length));
}

std::string encode_utf8(const std::vector<char32_t>& code_points) {
  std::string out;
  out.reserve(code_points.size());
  for (char32_t code_point : code_points) append_utf8(out, code_point);
  return out;
}

int64_t utf8_length(std::string_view text) {
  bool ascii = std::all_of(text.begin(), text.end(), [](char c) { return (c & 0x80) == 0; });
  if (ascii) return static_cast<int64_t>(text.size());
  return static_cast<int64_t>(decode_utf8(text).size());
}

bool is_python_space(char32_t c) {
  if (c == ' ' || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F)) return true;
  if (c < 0x80) return false;
  return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 ||
         c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

std::string strip_text(std::string_view text, const std::string* chars, StripSide side) {
  std::vector<char32_t> points = decode_utf8(text);
  std::vector<char32_t> strip_set;
  if (chars != nullptr) strip_set = decode_utf8(*chars);
  auto strippable = [&](char32_t c) {
    if (chars == nullptr) return is_python_space(c);
    return std::find(strip_set.begin(), strip_set.end(), c) != strip_set.end();
  };
  size_t begin = 0;
  size_t end = points.size();
  if (side != StripSide::kRight) {
    while (begin < end && strippable(points[begin])) ++begin;
  }
  if (side != StripSide::kLeft) {
    while (end > begin && strippable(points[end - 1])) --end;
  }
  return encode_utf8(std::vector<char32_t>(points.begin() + static_cast<std::ptrdiff_t>(begin),
                                           points.begin() + static_cast<std::ptrdiff_t>(end)));
}

namespace {

bool is_cased(char32_t c) {
  auto category = utf8proc_category(static_cast<utf8proc_int32_t>(c));
  return category == UTF8PROC_CATEGORY_LU || category == UTF8PROC_CATEGORY_LL ||
         category == UTF8PROC_CATEGORY_LT;
}

char32_t upper(char32_t c) { return static_cast<char32_t>(utf8proc_toupper(static_cast<utf8proc_int32_t>(c))); }
char32_t lower(char32_t c) { return static_cast<char32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(c))); }
char32_t title(char32_t c) { return static_cast<char32_t>(utf8proc_totitle(static_cast<utf8proc_int32_t>(c))); }

}  // namespace

std::string to_upper(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char32_t c : decode_utf8(text)) append_utf8(out, upper(c));
  return out;
}

std::string to_lower(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char32_t c : decode_utf8(text)) append_utf8(out, lower(c));
  return out;
}

std::string to_title_python(std::string_view text) {
  std::string out;
  bool previous_cased = false;
  for (char32_t c : decode_utf8(text)) {
    char32_t mapped = previous_cased ? lower(c) : title(c);
    previous_cased = is_cased(c);
    append_utf8(out, mapped);
  }
  return out;
}

std::string capitalize_text(std::string_view text) {
  std::string out;
  bool first = true;
  for (char32_t c : decode_utf8(text)) {
    append_utf8(out, first ? title(c) : lower(c));
    first = false;
  }
  return out;
}

namespace {

// Whitespace split, left to right, at most max_split splits (negative: unlimited).
std::vector<std::string> split_whitespace(std::string_view text, int64_t max_split) {
  std::vector<char32_t> points = decode_utf8(text);
  std::vector<std::string> parts;
  size_t pos = 0;
  while (true) {
    while (pos < points.size() && is_python_space(points[pos])) ++pos;
    if (pos == points.size()) break;
    if (max_split >= 0 && static_cast<int64_t>(parts.size()) == max_split) {
      size_t end = points.size();
      while (end > pos && is_python_space(points[end - 1])) --end;
      parts.push_back(encode_utf8({points.begin() + static_cast<std::ptrdiff_t>(pos),
                                   points.begin() + static_cast<std::ptrdiff_t>(end)}));
      break;
    }
    size_t start = pos;
    while (pos < points.size() && !is_python_space(points[pos])) ++pos;
    parts.push_back(encode_utf8({points.begin() + static_cast<std::ptrdiff_t>(start),
                                 points.begin() + static_cast<std::ptrdiff_t>(pos)}));
  }
  return parts;
}

}  // namespace

std::vector<std::string> split_text(std::string_view text, const std::string* sep, int64_t max_split) {
  if (sep == nullptr) return split_whitespace(text, max_split);
  std::vector<std::string> parts;
  size_t start = 0;
  while (max_split < 0 || static_cast<int64_t>(parts.size()) < max_split) {
    size_t found = text.find(*sep, start);
    if (found == std::string_view::npos) break;
    parts.emplace_back(text.substr(start, found - start));
    start = found + sep->size();
  }
  parts.emplace_back(text.substr(start));
  return parts;
}

std::vector<std::string> rsplit_text(std::string_view text, const std::string* sep, int64_t max_split) {
  if (sep == nullptr || max_split < 0) {
    if (sep == nullptr && max_split >= 0) {
      // Whitespace rsplit with a limit: split reversed text, then reverse back.
      std::vector<char32_t> points = decode_utf8(text);
      std::reverse(points.begin(), points.end());
      std::vector<std::string> reversed_parts = split_whitespace(encode_utf8(points), max_split);
      std::vector<std::string> parts;
      for (auto it = reversed_parts.rbegin(); it != reversed_parts.rend(); ++it) {
        std::vector<char32_t> part = decode_utf8(*it);
        std::reverse(part.begin(), part.end());
        parts.push_back(encode_utf8(part));
      }
      return parts;
    }
    return split_text(text, sep, max_split);
  }
  std::vector<std::string> parts;
  size_t end = text.size();
  while (static_cast<int64_t>(parts.size()) < max_split) {
    if (end < sep->size()) break;
    size_t found = text.rfind(*sep, end - sep->size());
    if (found == std::string_view::npos) break;
    parts.emplace_back(text.substr(found + sep->size(), end - found - sep->size()));
    end = found;
  }
  parts.emplace_back(text.substr(0, end));
  std::reverse(parts.begin(), parts.end());
  return parts;
}

std::string replace_text(std::string_view text, std::string_view old_text, std::string_view new_text,
                         int64_t count) {
  std::string out;
  if (old_text.empty()) {
    // Python inserts `new` before every code point and at the end.
    std::vector<char32_t> points = decode_utf8(text);
    int64_t done = 0;
    for (char32_t c : points) {
      if (count < 0 || done < count) {
        out.append(new_text);
        ++done;
      }
      append_utf8(out, c);
    }
    if (count < 0 || done < count) out.append(new_text);
    return out;
  }
  size_t start = 0;
  int64_t done = 0;
  while (count < 0 || done < count) {
    size_t found = text.find(old_text, start);
    if (found == std::string_view::npos) break;
    out.append(text.substr(start, found - start));
    out.append(new_text);
    start = found + old_text.size();
    ++done;
  }
  out.append(text.substr(start));
  return out;
}

}  // namespace moeserve::chat
