// Recursive-descent parser for the statements of a template (see parser.h); expressions are
// parsed in parser_expressions.cpp through the same ParserState.
#include "tokenizer/chat/parser.h"

#include <algorithm>

#include "tokenizer/chat/parser_state.h"

namespace moeserve::chat {

namespace {

class StatementParser : public ParserState {
 public:
  using ParserState::ParserState;

  // Parses statements until a `{% tag %}` in end_tags (consumed up to the tag name, which is
  // stored in found_tag) or the end of the template (only allowed when end_tags is empty).
  Result<Body> parse_body(const std::vector<std::string>& end_tags, std::string* found_tag) {
    if (!end_tags.empty()) open_blocks_.push_back(end_tags.back());
    auto body = parse_body_inner(end_tags, found_tag);
    if (!end_tags.empty()) open_blocks_.pop_back();
    return body;
  }

 private:
  Result<Body> parse_body_inner(const std::vector<std::string>& end_tags, std::string* found_tag) {
    Body body;
    while (true) {
      const Token& token = peek();
      if (token.type == TokenType::kEnd) {
        if (end_tags.empty()) return body;
        return error_at(token, fmt::format("unexpected end of template, expected '{}'", end_tags.back()));
      }
      if (token.type == TokenType::kText) {
        auto stmt = make_stmt(StmtKind::kText, token);
        stmt->text = token.text;
        body.push_back(std::move(stmt));
        next();
        continue;
      }
      if (token.type == TokenType::kVariableBegin) {
        auto stmt = make_stmt(StmtKind::kOutput, token);
        next();
        MS_ASSIGN_OR_RETURN(stmt->expr, parse_tuple(true));
        MS_RETURN_IF_ERROR(expect(TokenType::kVariableEnd, "'}}'"));
        body.push_back(std::move(stmt));
        continue;
      }
      if (token.type != TokenType::kBlockBegin) return error_at(token, "unexpected token '" + token.text + "'");
      const Token& tag = peek(1);
      if (tag.type != TokenType::kName) return error_at(tag, "expected a tag name after '{%'");
      if (std::find(end_tags.begin(), end_tags.end(), tag.text) != end_tags.end()) {
        next();
        next();
        *found_tag = tag.text;
        return body;
      }
      next();
      MS_ASSIGN_OR_RETURN(auto stmt, parse_statement());
      body.push_back(std::move(stmt));
    }
  }

  StmtPtr make_stmt(StmtKind kind, const Token& token) {
    auto stmt = std::make_unique<Stmt>();
    stmt->kind = kind;
    stmt->position = token.position;
    return stmt;
  }

  Status expect_block_end() { return expect(TokenType::kBlockEnd, "'%}'"); }

  // Parses `body {% end_tag %}`.
  Result<Body> parse_block_until(const std::string& end_tag) {
    std::string found;
    MS_ASSIGN_OR_RETURN(Body body, parse_body({end_tag}, &found));
    MS_RETURN_IF_ERROR(expect_block_end());
    return body;
  }

  Result<StmtPtr> parse_statement() {
    // Nested blocks recurse; bound them so that hostile input cannot overflow the stack.
    if (block_depth_ >= kMaxBlockDepth) return error_at(peek(), "blocks nested too deeply");
    ++block_depth_;
    auto stmt = parse_tag();
    --block_depth_;
    return stmt;
  }

  Result<StmtPtr> parse_tag() {
    const Token& tag = next();
    const std::string& name = tag.text;
    if (name == "if") return parse_if(tag);
    if (name == "for") return parse_for(tag);
    if (name == "set") return parse_set(tag);
    if (name == "macro") return parse_macro(tag);
    if (name == "call") return parse_call_block(tag);
    if (name == "filter") return parse_filter_block(tag);
    if (name == "with") return parse_with(tag);
    if (name == "generation") {
      auto stmt = make_stmt(StmtKind::kScope, tag);
      MS_RETURN_IF_ERROR(expect_block_end());
      MS_ASSIGN_OR_RETURN(stmt->body, parse_block_until("endgeneration"));
      return stmt;
    }
    if (name == "break" || name == "continue") {
      if (loop_depth_ == 0) return error_at(tag, "'" + name + "' outside of a loop");
      auto stmt = make_stmt(name == "break" ? StmtKind::kBreak : StmtKind::kContinue, tag);
      MS_RETURN_IF_ERROR(expect_block_end());
      return stmt;
    }
    static const char* kEndTags[] = {"endif", "endfor", "endset", "endmacro", "endcall", "endfilter",
                                     "endwith", "endgeneration", "elif", "else"};
    for (const char* end_tag : kEndTags) {
      if (name != end_tag) continue;
      if (open_blocks_.empty()) return error_at(tag, "unexpected '" + name + "' (no block is open that it could close)");
      return error_at(tag, "unexpected '" + name + "', expected '" + open_blocks_.back() + "'");
    }
    return error_at(tag, "unknown or unsupported tag '" + name + "'");
  }

  Result<StmtPtr> parse_if(const Token& tag) {
    auto stmt = make_stmt(StmtKind::kIf, tag);
    MS_ASSIGN_OR_RETURN(ExprPtr condition, parse_tuple(true));
    MS_RETURN_IF_ERROR(expect_block_end());
    while (true) {
      std::string found;
      MS_ASSIGN_OR_RETURN(Body body, parse_body({"elif", "else", "endif"}, &found));
      stmt->branches.emplace_back(std::move(condition), std::move(body));
      if (found == "endif") break;
      if (found == "else") {
        MS_RETURN_IF_ERROR(expect_block_end());
        MS_ASSIGN_OR_RETURN(Body else_body, parse_block_until("endif"));
        stmt->branches.emplace_back(nullptr, std::move(else_body));
        return stmt;
      }
      MS_ASSIGN_OR_RETURN(condition, parse_tuple(true));
      MS_RETURN_IF_ERROR(expect_block_end());
    }
    MS_RETURN_IF_ERROR(expect_block_end());
    return stmt;
  }

  Result<std::vector<std::string>> parse_target_names() {
    std::vector<std::string> names;
    bool parenthesized = accept_operator("(");
    do {
      const Token& token = peek();
      if (token.type != TokenType::kName) return error_at(token, "expected a variable name");
      names.push_back(next().text);
    } while (accept_operator(","));
    if (parenthesized) MS_RETURN_IF_ERROR(expect_operator(")"));
    return names;
  }

  Result<StmtPtr> parse_for(const Token& tag) {
    auto stmt = make_stmt(StmtKind::kFor, tag);
    MS_ASSIGN_OR_RETURN(stmt->targets, parse_target_names());
    if (!accept_name("in")) return error_at(peek(), "expected 'in' in for loop");
    MS_ASSIGN_OR_RETURN(stmt->expr, parse_tuple(false));
    if (accept_name("if")) {
      MS_ASSIGN_OR_RETURN(stmt->filter, parse_expression(true));
    }
    if (peek().type == TokenType::kName && peek().text == "recursive") {
      return error_at(peek(), "recursive for loops are not supported");
    }
    MS_RETURN_IF_ERROR(expect_block_end());
    ++loop_depth_;
    std::string found;
    auto body = parse_body({"else", "endfor"}, &found);
    --loop_depth_;
    if (!body.ok()) return body.error();
    stmt->body = std::move(body).value();
    MS_RETURN_IF_ERROR(expect_block_end());
    if (found == "else") {
      MS_ASSIGN_OR_RETURN(stmt->else_body, parse_block_until("endfor"));
    }
    return stmt;
  }

  Result<StmtPtr> parse_set(const Token& tag) {
    const Token& first = peek();
    if (first.type != TokenType::kName) return error_at(first, "expected a variable name after 'set'");
    if (peek(1).type == TokenType::kOperator && peek(1).text == ".") {
      auto stmt = make_stmt(StmtKind::kSet, tag);
      stmt->targets.push_back(next().text);
      next();
      const Token& attribute = peek();
      if (attribute.type != TokenType::kName) return error_at(attribute, "expected an attribute name");
      stmt->attribute = next().text;
      MS_RETURN_IF_ERROR(expect_operator("="));
      MS_ASSIGN_OR_RETURN(stmt->expr, parse_tuple(true));
      MS_RETURN_IF_ERROR(expect_block_end());
      return stmt;
    }
    MS_ASSIGN_OR_RETURN(std::vector<std::string> targets, parse_target_names());
    if (accept_operator("=")) {
      auto stmt = make_stmt(StmtKind::kSet, tag);
      stmt->targets = std::move(targets);
      MS_ASSIGN_OR_RETURN(stmt->expr, parse_tuple(true));
      MS_RETURN_IF_ERROR(expect_block_end());
      return stmt;
    }
    if (targets.size() != 1) return error_at(peek(), "a block set assigns exactly one name");
    auto stmt = make_stmt(StmtKind::kSetBlock, tag);
    stmt->targets = std::move(targets);
    MS_ASSIGN_OR_RETURN(stmt->filters, parse_filter_chain(accept_operator("|")));
    MS_RETURN_IF_ERROR(expect_block_end());
    MS_ASSIGN_OR_RETURN(stmt->body, parse_block_until("endset"));
    return stmt;
  }

  // `name(args) (| name(args))*` with null subjects; `want` false means no chain.
  Result<std::vector<ExprPtr>> parse_filter_chain(bool want) {
    std::vector<ExprPtr> filters;
    if (!want) return filters;
    do {
      MS_ASSIGN_OR_RETURN(ExprPtr filter, parse_filter(nullptr));
      filters.push_back(std::move(filter));
    } while (accept_operator("|"));
    return filters;
  }

  Result<std::vector<MacroParam>> parse_params() {
    std::vector<MacroParam> params;
    MS_RETURN_IF_ERROR(expect_operator("("));
    while (!accept_operator(")")) {
      if (!params.empty()) MS_RETURN_IF_ERROR(expect_operator(","));
      if (accept_operator(")")) break;
      const Token& token = peek();
      if (token.type != TokenType::kName) return error_at(token, "expected a parameter name");
      MacroParam param{next().text, nullptr};
      if (accept_operator("=")) {
        MS_ASSIGN_OR_RETURN(param.default_value, parse_expression(true));
      } else if (!params.empty() && params.back().default_value) {
        return error_at(token, "non-default parameter follows a default parameter");
      }
      params.push_back(std::move(param));
    }
    return params;
  }

  Result<StmtPtr> parse_macro(const Token& tag) {
    auto stmt = make_stmt(StmtKind::kMacro, tag);
    const Token& name = peek();
    if (name.type != TokenType::kName) return error_at(name, "expected a macro name");
    stmt->name = next().text;
    MS_ASSIGN_OR_RETURN(stmt->params, parse_params());
    MS_RETURN_IF_ERROR(expect_block_end());
    int saved_depth = loop_depth_;
    loop_depth_ = 0;
    auto body = parse_block_until("endmacro");
    loop_depth_ = saved_depth;
    if (!body.ok()) return body.error();
    stmt->body = std::move(body).value();
    return stmt;
  }

  Result<StmtPtr> parse_call_block(const Token& tag) {
    auto stmt = make_stmt(StmtKind::kCallBlock, tag);
    if (peek().type == TokenType::kOperator && peek().text == "(") {
      MS_ASSIGN_OR_RETURN(stmt->params, parse_params());
    }
    MS_ASSIGN_OR_RETURN(stmt->expr, parse_expression(true));
    if (stmt->expr->kind != ExprKind::kCall) return error_at(tag, "expected a macro call after 'call'");
    MS_RETURN_IF_ERROR(expect_block_end());
    int saved_depth = loop_depth_;
    loop_depth_ = 0;
    auto body = parse_block_until("endcall");
    loop_depth_ = saved_depth;
    if (!body.ok()) return body.error();
    stmt->body = std::move(body).value();
    return stmt;
  }

  Result<StmtPtr> parse_filter_block(const Token& tag) {
    auto stmt = make_stmt(StmtKind::kFilterBlock, tag);
    MS_ASSIGN_OR_RETURN(stmt->filters, parse_filter_chain(true));
    MS_RETURN_IF_ERROR(expect_block_end());
    MS_ASSIGN_OR_RETURN(stmt->body, parse_block_until("endfilter"));
    return stmt;
  }

  Result<StmtPtr> parse_with(const Token& tag) {
    auto stmt = make_stmt(StmtKind::kWith, tag);
    while (peek().type != TokenType::kBlockEnd) {
      if (!stmt->targets.empty()) MS_RETURN_IF_ERROR(expect_operator(","));
      const Token& name = peek();
      if (name.type != TokenType::kName) return error_at(name, "expected a variable name");
      stmt->targets.push_back(next().text);
      MS_RETURN_IF_ERROR(expect_operator("="));
      MS_ASSIGN_OR_RETURN(ExprPtr value, parse_expression(true));
      stmt->values.push_back(std::move(value));
    }
    MS_RETURN_IF_ERROR(expect_block_end());
    MS_ASSIGN_OR_RETURN(stmt->body, parse_block_until("endwith"));
    return stmt;
  }

  static constexpr int kMaxBlockDepth = 100;
  int loop_depth_ = 0;
  int block_depth_ = 0;
  std::vector<std::string> open_blocks_;  // the end tag each open block waits for, innermost last
};

}  // namespace

Result<Body> parse_template(std::string_view source) {
  MS_ASSIGN_OR_RETURN(std::vector<Token> tokens, tokenize_template(source));
  StatementParser parser(std::move(tokens));
  std::string found;
  return parser.parse_body({}, &found);
}

}  // namespace moeserve::chat
