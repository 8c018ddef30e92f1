// PCRE2 wrapper (see regex.h). Match data is allocated per call so a Regex stays immutable.
#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer/regex.h"

#include <pcre2.h>

#include "tokenizer/unicode_utils.h"

namespace moeserve {

struct Regex::Compiled {
  pcre2_code* code = nullptr;
  ~Compiled() { pcre2_code_free(code); }
};

Result<Regex> Regex::compile(std::string_view pattern, bool literal) {
  // PCRE2 refuses UCP together with LITERAL; a literal needs no character classes anyway.
  const uint32_t options = literal ? (PCRE2_UTF | PCRE2_LITERAL) : (PCRE2_UTF | PCRE2_UCP);
  int error_code = 0;
  PCRE2_SIZE error_offset = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), options,
                                   &error_code, &error_offset, nullptr);
  if (code == nullptr) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(error_code, message, sizeof(message));
    return make_error("invalid regex /{}/ at offset {}: {}", pattern, error_offset,
                      reinterpret_cast<const char*>(message));
  }
  // JIT is an optimisation only: interpretation gives the same matches when it is unavailable.
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
  Regex regex;
  if (literal) regex.literal_ = std::string(pattern);
  auto compiled = std::make_shared<Compiled>();
  compiled->code = code;
  regex.compiled_ = std::move(compiled);
  return regex;
}

std::vector<std::pair<size_t, size_t>> Regex::find_all(std::string_view text) const {
  std::vector<std::pair<size_t, size_t>> matches;
  if (!literal_.empty()) {
    for (size_t at = text.find(literal_); at != std::string_view::npos;
         at = text.find(literal_, at + literal_.size())) {
      matches.emplace_back(at, at + literal_.size());
    }
    return matches;
  }
  pcre2_match_data* data = pcre2_match_data_create_from_pattern(compiled_->code, nullptr);
  size_t search_from = 0;
  size_t previous_end = std::string_view::npos;
  while (search_from <= text.size()) {
    const int rc = pcre2_match(compiled_->code, reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(),
                               search_from, PCRE2_NO_UTF_CHECK, data, nullptr);
    if (rc < 0) break;  // no match (or a resource limit: treat the rest as unmatched)
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(data);
    const size_t start = ovector[0], end = ovector[1];
    if (start == end) {
      if (start != previous_end) matches.emplace_back(start, end);
      if (start >= text.size()) break;
      search_from = start + unicode::char_length(text, start);
    } else {
      matches.emplace_back(start, end);
      search_from = end;
    }
    previous_end = end;
  }
  pcre2_match_data_free(data);
  return matches;
}

std::string Regex::replace_all(std::string_view text, std::string_view replacement) const {
  if (!literal_.empty()) {  // two finds over the text: no list of matches, one allocation
    size_t count = 0;
    for (size_t at = text.find(literal_); at != std::string_view::npos;
         at = text.find(literal_, at + literal_.size())) {
      ++count;
    }
    std::string out;
    out.reserve(text.size() - count * literal_.size() + count * replacement.size());
    size_t copied = 0;
    for (size_t at = text.find(literal_); at != std::string_view::npos;
         at = text.find(literal_, at + literal_.size())) {
      out.append(text.substr(copied, at - copied));
      out.append(replacement);
      copied = at + literal_.size();
    }
    out.append(text.substr(copied));
    return out;
  }
  const std::vector<std::pair<size_t, size_t>> matches = find_all(text);
  size_t length = text.size();
  for (const auto& [start, end] : matches) length = length - (end - start) + replacement.size();
  std::string out;
  out.reserve(length);
  size_t copied = 0;
  for (const auto& [start, end] : matches) {
    out.append(text.substr(copied, start - copied));
    out.append(replacement);
    copied = end;
  }
  out.append(text.substr(copied));
  return out;
}

}  // namespace moeserve
