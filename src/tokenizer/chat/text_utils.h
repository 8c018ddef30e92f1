// Unicode text helpers for the template engine: Python strings index, slice, strip and
// case-map by code point, while moeserve keeps text as UTF-8. These functions give the
// interpreter Python's str semantics over UTF-8 (invalid bytes decode as U+FFFD so that
// arbitrary input never crashes the engine).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace moeserve::chat {

// Decodes UTF-8 into code points; an invalid byte becomes U+FFFD.
std::vector<char32_t> decode_utf8(std::string_view text);
void append_utf8(std::string& out, char32_t code_point);
std::string encode_utf8(const std::vector<char32_t>& code_points);

// Number of code points (Python's len(str)).
int64_t utf8_length(std::string_view text);

// Python's str.isspace() for one code point.
bool is_python_space(char32_t code_point);

// Python's str.strip/lstrip/rstrip: `chars` empty-and-absent means whitespace.
enum class StripSide { kBoth, kLeft, kRight };
std::string strip_text(std::string_view text, const std::string* chars, StripSide side);

std::string to_upper(std::string_view text);
std::string to_lower(std::string_view text);
// Python's str.title(): first cased letter after a non-letter is upper-cased, others lowered.
std::string to_title_python(std::string_view text);
// Python's str.capitalize(): first character upper, the rest lower.
std::string capitalize_text(std::string_view text);

// Python's str.split(sep, maxsplit) (sep null: split on whitespace runs).
std::vector<std::string> split_text(std::string_view text, const std::string* sep, int64_t max_split);
// Python's str.rsplit(sep, maxsplit).
std::vector<std::string> rsplit_text(std::string_view text, const std::string* sep, int64_t max_split);
// Python's str.replace(old, new, count) (count < 0: all).
std::string replace_text(std::string_view text, std::string_view old_text, std::string_view new_text,
                         int64_t count);

}  // namespace moeserve::chat
