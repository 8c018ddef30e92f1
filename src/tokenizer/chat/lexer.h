// Splits a Jinja2 template into tokens the way jinja2's lexer does under transformers'
// settings: text runs, `{{ }}` / `{% %}` delimiters with the expression tokens between them,
// comments dropped, and whitespace control applied to the text (`{%-`/`-%}`, `{%+`/`+%}`,
// trim_blocks, lstrip_blocks, and the single trailing newline jinja2 drops).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace moeserve::chat {

enum class TokenType {
  kText,           // literal template text (whitespace control already applied)
  kVariableBegin,  // {{
  kVariableEnd,    // }}
  kBlockBegin,     // {%
  kBlockEnd,       // %}
  kName,           // identifier or keyword
  kString,         // string literal; `text` holds the decoded value
  kInteger,
  kFloat,
  kOperator,       // `text` holds the operator
  kEnd,            // end of the template
};

struct SourcePosition {
  int line = 1;
  int column = 1;
};

struct Token {
  TokenType type = TokenType::kEnd;
  std::string text;
  int64_t int_value = 0;
  double float_value = 0.0;
  SourcePosition position;
};

// Tokens of `source`, ending with one kEnd token; a lexical error names its line and column.
Result<std::vector<Token>> tokenize_template(std::string_view source);

}  // namespace moeserve::chat
