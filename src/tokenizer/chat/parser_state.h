// The token cursor shared by the statement parser (parser.cpp) and the expression parser
// (parser_expressions.cpp). Invariant: the token vector ends with a kEnd token and pos_
// never moves past it, so peek() is always valid.
#pragma once

#include <string>
#include <vector>

#include "base/result.h"
#include "tokenizer/chat/ast.h"

namespace moeserve::chat {

class ParserState {
 public:
  explicit ParserState(std::vector<Token> tokens) : tokens_(std::move(tokens)) {}

 protected:
  const Token& peek(size_t ahead = 0) const { return tokens_[std::min(pos_ + ahead, tokens_.size() - 1)]; }
  const Token& next() {
    const Token& token = tokens_[pos_];
    if (pos_ + 1 < tokens_.size()) ++pos_;
    return token;
  }
  bool at_operator(const char* op) const { return peek().type == TokenType::kOperator && peek().text == op; }
  bool at_name(const char* name) const { return peek().type == TokenType::kName && peek().text == name; }
  bool accept_operator(const char* op);
  bool accept_name(const char* name);
  Status expect_operator(const char* op);
  Status expect(TokenType type, const char* what);
  Error error_at(const Token& token, const std::string& message) const;

  // Expression grammar (jinja2's precedence, lowest first).
  Result<ExprPtr> parse_tuple(bool with_condexpr);
  Result<ExprPtr> parse_expression(bool with_condexpr);
  Result<ExprPtr> parse_filter(ExprPtr subject);

 private:
  Result<ExprPtr> parse_condexpr();
  Result<ExprPtr> parse_or();
  Result<ExprPtr> parse_and();
  Result<ExprPtr> parse_not();
  Result<ExprPtr> parse_compare();
  Result<ExprPtr> parse_math1();
  Result<ExprPtr> parse_concat();
  Result<ExprPtr> parse_math2();
  Result<ExprPtr> parse_pow();
  Result<ExprPtr> parse_unary(bool with_filter);
  Result<ExprPtr> parse_primary();
  Result<ExprPtr> parse_postfix(ExprPtr node);
  Result<ExprPtr> parse_filter_expr(ExprPtr node);
  Result<ExprPtr> parse_subscript(ExprPtr node);
  Result<ExprPtr> parse_test(ExprPtr node);
  Status parse_call_args(Expr& call);
  Result<ExprPtr> parse_list_or_dict(bool is_list);
  Result<std::string> parse_dotted_name();

  std::vector<Token> tokens_;
  size_t pos_ = 0;
  int depth_ = 0;  // expression nesting, bounded so that hostile input cannot overflow the stack
};

}  // namespace moeserve::chat
