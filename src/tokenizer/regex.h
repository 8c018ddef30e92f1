// A compiled PCRE2 pattern (UTF + UCP, JIT when available) with the two operations the
// tokenizer needs: list every match (split points for pre-tokenizers) and replace every match.
// Real tokenizer patterns use \p{L}, \p{N}, (?i:...) groups and lookahead, which PCRE2 covers.
// Immutable after compile, so one Regex may be used from several threads at once.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/result.h"

namespace moeserve {

class Regex {
 public:
  // `literal`: the pattern is a plain string (tokenizer.json's {"String": ...} form).
  static Result<Regex> compile(std::string_view pattern, bool literal);

  // Byte ranges [start, end) of the successive non-overlapping matches in `text` (valid UTF-8).
  // An empty match right after the previous match is skipped, as Rust's regex iterators do.
  std::vector<std::pair<size_t, size_t>> find_all(std::string_view text) const;

  std::string replace_all(std::string_view text, std::string_view replacement) const;

 private:
  struct Compiled;
  std::shared_ptr<const Compiled> compiled_;
  // A non-empty literal pattern (tokenizer.json's {"String": " "} of Metaspace-style
  // normalizers) is found with string_view::find: the same leftmost non-overlapping matches,
  // without a PCRE2 call per match (a 30 MB prompt has 5 million spaces).
  std::string literal_;
};

}  // namespace moeserve
