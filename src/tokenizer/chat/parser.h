// Builds the syntax tree (ast.h) from the lexer's tokens with jinja2's grammar and operator
// precedence. Syntax errors name the line and column of the offending token.
#pragma once

#include <string_view>

#include "base/result.h"
#include "tokenizer/chat/ast.h"

namespace moeserve::chat {

Result<Body> parse_template(std::string_view source);

}  // namespace moeserve::chat
