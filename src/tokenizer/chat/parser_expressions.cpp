// Expression parsing with jinja2's grammar: condexpr < or < and < not < compare < + - < ~
// < * / // % < ** < unary minus/plus < primary with postfix (. [] ()) and filters/tests.
#include <algorithm>

#include "tokenizer/chat/parser_state.h"

namespace moeserve::chat {

namespace {

constexpr int kMaxExpressionDepth = 200;

ExprPtr make_expr(ExprKind kind, SourcePosition position) {
  auto expr = std::make_unique<Expr>();
  expr->kind = kind;
  expr->position = position;
  return expr;
}

ExprPtr make_binary(const std::string& op, ExprPtr left, ExprPtr right) {
  auto expr = make_expr(ExprKind::kBinary, left->position);
  expr->name = op;
  expr->operands.push_back(std::move(left));
  expr->operands.push_back(std::move(right));
  return expr;
}

// Bounds recursion depth for the lifetime of one parse call.
class DepthGuard {
 public:
  explicit DepthGuard(int& depth) : depth_(depth) { ++depth_; }
  ~DepthGuard() { --depth_; }
  bool exceeded() const { return depth_ > kMaxExpressionDepth; }

 private:
  int& depth_;
};

}  // namespace

bool ParserState::accept_operator(const char* op) {
  if (!at_operator(op)) return false;
  next();
  return true;
}

bool ParserState::accept_name(const char* name) {
  if (!at_name(name)) return false;
  next();
  return true;
}

Error ParserState::error_at(const Token& token, const std::string& message) const {
  return make_error("template syntax error at line {}, column {}: {}", token.position.line, token.position.column,
                    message);
}

Status ParserState::expect_operator(const char* op) {
  if (accept_operator(op)) return ok_status();
  const Token& token = peek();
  std::string found = token.type == TokenType::kEnd ? "end of template" : "'" + token.text + "'";
  return error_at(token, fmt::format("expected '{}', found {}", op, found));
}

Status ParserState::expect(TokenType type, const char* what) {
  if (peek().type == type) {
    next();
    return ok_status();
  }
  const Token& token = peek();
  std::string found = token.type == TokenType::kEnd ? "end of template" : "'" + token.text + "'";
  return error_at(token, fmt::format("expected {}, found {}", what, found));
}

Result<ExprPtr> ParserState::parse_tuple(bool with_condexpr) {
  SourcePosition position = peek().position;
  MS_ASSIGN_OR_RETURN(ExprPtr first, parse_expression(with_condexpr));
  if (!at_operator(",")) return first;
  auto tuple = make_expr(ExprKind::kTuple, position);
  tuple->operands.push_back(std::move(first));
  while (accept_operator(",")) {
    const Token& token = peek();
    bool ends = token.type == TokenType::kVariableEnd || token.type == TokenType::kBlockEnd ||
                (token.type == TokenType::kOperator && token.text == ")") ||
                (token.type == TokenType::kName && (token.text == "if" || token.text == "recursive"));
    if (ends) break;
    MS_ASSIGN_OR_RETURN(ExprPtr item, parse_expression(with_condexpr));
    tuple->operands.push_back(std::move(item));
  }
  return tuple;
}

Result<ExprPtr> ParserState::parse_expression(bool with_condexpr) {
  DepthGuard guard(depth_);
  if (guard.exceeded()) return error_at(peek(), "expression nested too deeply");
  return with_condexpr ? parse_condexpr() : parse_or();
}

Result<ExprPtr> ParserState::parse_condexpr() {
  MS_ASSIGN_OR_RETURN(ExprPtr value, parse_or());
  while (at_name("if")) {
    SourcePosition position = next().position;
    MS_ASSIGN_OR_RETURN(ExprPtr condition, parse_or());
    ExprPtr otherwise;
    if (accept_name("else")) {
      MS_ASSIGN_OR_RETURN(otherwise, parse_condexpr());
    }
    auto conditional = make_expr(ExprKind::kConditional, position);
    conditional->operands.push_back(std::move(condition));
    conditional->operands.push_back(std::move(value));
    conditional->operands.push_back(std::move(otherwise));
    value = std::move(conditional);
  }
  return value;
}

Result<ExprPtr> ParserState::parse_or() {
  MS_ASSIGN_OR_RETURN(ExprPtr left, parse_and());
  while (accept_name("or")) {
    MS_ASSIGN_OR_RETURN(ExprPtr right, parse_and());
    left = make_binary("or", std::move(left), std::move(right));
  }
  return left;
}

Result<ExprPtr> ParserState::parse_and() {
  MS_ASSIGN_OR_RETURN(ExprPtr left, parse_not());
  while (accept_name("and")) {
    MS_ASSIGN_OR_RETURN(ExprPtr right, parse_not());
    left = make_binary("and", std::move(left), std::move(right));
  }
  return left;
}

Result<ExprPtr> ParserState::parse_not() {
  if (at_name("not")) {
    DepthGuard guard(depth_);
    if (guard.exceeded()) return error_at(peek(), "expression nested too deeply");
    SourcePosition position = next().position;
    MS_ASSIGN_OR_RETURN(ExprPtr operand, parse_not());
    auto expr = make_expr(ExprKind::kUnary, position);
    expr->name = "not";
    expr->operands.push_back(std::move(operand));
    return expr;
  }
  return parse_compare();
}

Result<ExprPtr> ParserState::parse_compare() {
  MS_ASSIGN_OR_RETURN(ExprPtr first, parse_math1());
  ExprPtr compare;
  while (true) {
    std::string op;
    const Token& token = peek();
    static const char* kOperators[] = {"==", "!=", "<", "<=", ">", ">="};
    if (token.type == TokenType::kOperator &&
        std::any_of(std::begin(kOperators), std::end(kOperators), [&](const char* o) { return token.text == o; })) {
      op = token.text;
      next();
    } else if (at_name("in")) {
      op = "in";
      next();
    } else if (at_name("not") && peek(1).type == TokenType::kName && peek(1).text == "in") {
      op = "not in";
      next();
      next();
    } else {
      break;
    }
    if (!compare) {
      compare = make_expr(ExprKind::kCompare, first->position);
      compare->operands.push_back(std::move(first));
    }
    MS_ASSIGN_OR_RETURN(ExprPtr operand, parse_math1());
    compare->compare_ops.push_back(op);
    compare->operands.push_back(std::move(operand));
  }
  return compare ? std::move(compare) : std::move(first);
}

Result<ExprPtr> ParserState::parse_math1() {
  MS_ASSIGN_OR_RETURN(ExprPtr left, parse_concat());
  while (at_operator("+") || at_operator("-")) {
    std::string op = next().text;
    MS_ASSIGN_OR_RETURN(ExprPtr right, parse_concat());
    left = make_binary(op, std::move(left), std::move(right));
  }
  return left;
}

Result<ExprPtr> ParserState::parse_concat() {
  MS_ASSIGN_OR_RETURN(ExprPtr left, parse_math2());
  while (accept_operator("~")) {
    MS_ASSIGN_OR_RETURN(ExprPtr right, parse_math2());
    left = make_binary("~", std::move(left), std::move(right));
  }
  return left;
}

Result<ExprPtr> ParserState::parse_math2() {
  MS_ASSIGN_OR_RETURN(ExprPtr left, parse_pow());
  while (at_operator("*") || at_operator("/") || at_operator("//") || at_operator("%")) {
    std::string op = next().text;
    MS_ASSIGN_OR_RETURN(ExprPtr right, parse_pow());
    left = make_binary(op, std::move(left), std::move(right));
  }
  return left;
}

Result<ExprPtr> ParserState::parse_pow() {
  MS_ASSIGN_OR_RETURN(ExprPtr left, parse_unary(true));
  while (accept_operator("**")) {
    MS_ASSIGN_OR_RETURN(ExprPtr right, parse_unary(true));
    left = make_binary("**", std::move(left), std::move(right));
  }
  return left;
}

Result<ExprPtr> ParserState::parse_unary(bool with_filter) {
  DepthGuard guard(depth_);
  if (guard.exceeded()) return error_at(peek(), "expression nested too deeply");
  ExprPtr node;
  if (at_operator("-") || at_operator("+")) {
    const Token& sign = next();
    node = make_expr(ExprKind::kUnary, sign.position);
    node->name = sign.text;
    MS_ASSIGN_OR_RETURN(ExprPtr operand, parse_unary(false));
    node->operands.push_back(std::move(operand));
  } else {
    MS_ASSIGN_OR_RETURN(node, parse_primary());
  }
  MS_ASSIGN_OR_RETURN(node, parse_postfix(std::move(node)));
  if (with_filter) return parse_filter_expr(std::move(node));
  return node;
}

Result<ExprPtr> ParserState::parse_primary() {
  const Token& token = peek();
  switch (token.type) {
    case TokenType::kName: {
      next();
      auto expr = make_expr(ExprKind::kLiteral, token.position);
      if (token.text == "true" || token.text == "True") {
        expr->literal = Value(true);
      } else if (token.text == "false" || token.text == "False") {
        expr->literal = Value(false);
      } else if (token.text == "none" || token.text == "None") {
        expr->literal = Value(None{});
      } else {
        expr->kind = ExprKind::kName;
        expr->name = token.text;
      }
      return expr;
    }
    case TokenType::kString: {
      auto expr = make_expr(ExprKind::kLiteral, token.position);
      std::string text;
      while (peek().type == TokenType::kString) text += next().text;  // adjacent literals concatenate
      expr->literal = Value(std::move(text));
      return expr;
    }
    case TokenType::kInteger:
    case TokenType::kFloat: {
      next();
      auto expr = make_expr(ExprKind::kLiteral, token.position);
      expr->literal = token.type == TokenType::kInteger ? Value(token.int_value) : Value(token.float_value);
      return expr;
    }
    case TokenType::kOperator:
      if (token.text == "(") {
        next();
        if (accept_operator(")")) {
          return make_expr(ExprKind::kTuple, token.position);
        }
        MS_ASSIGN_OR_RETURN(ExprPtr inner, parse_tuple(true));
        MS_RETURN_IF_ERROR(expect_operator(")"));
        return inner;
      }
      if (token.text == "[" || token.text == "{") return parse_list_or_dict(token.text == "[");
      break;
    default:
      break;
  }
  std::string found = token.type == TokenType::kEnd ? "end of template" : "'" + token.text + "'";
  return error_at(token, "unexpected " + found + " in expression");
}

Result<ExprPtr> ParserState::parse_list_or_dict(bool is_list) {
  const Token& open = next();
  auto expr = make_expr(is_list ? ExprKind::kList : ExprKind::kDict, open.position);
  const char* close = is_list ? "]" : "}";
  while (!accept_operator(close)) {
    if (!expr->operands.empty()) {
      MS_RETURN_IF_ERROR(expect_operator(","));
      if (accept_operator(close)) break;
    }
    MS_ASSIGN_OR_RETURN(ExprPtr item, parse_expression(true));
    expr->operands.push_back(std::move(item));
    if (!is_list) {
      MS_RETURN_IF_ERROR(expect_operator(":"));
      MS_ASSIGN_OR_RETURN(ExprPtr value, parse_expression(true));
      expr->operands.push_back(std::move(value));
    }
  }
  return expr;
}

Result<ExprPtr> ParserState::parse_postfix(ExprPtr node) {
  while (true) {
    if (at_operator(".")) {
      SourcePosition position = next().position;
      const Token& attribute = peek();
      if (attribute.type == TokenType::kName) {
        auto expr = make_expr(ExprKind::kGetAttr, position);
        expr->name = next().text;
        expr->operands.push_back(std::move(node));
        node = std::move(expr);
      } else if (attribute.type == TokenType::kInteger) {
        auto expr = make_expr(ExprKind::kGetItem, position);
        auto index = make_expr(ExprKind::kLiteral, attribute.position);
        index->literal = Value(next().int_value);
        expr->operands.push_back(std::move(node));
        expr->operands.push_back(std::move(index));
        node = std::move(expr);
      } else {
        return error_at(attribute, "expected an attribute name after '.'");
      }
    } else if (at_operator("[")) {
      MS_ASSIGN_OR_RETURN(node, parse_subscript(std::move(node)));
    } else if (at_operator("(")) {
      auto call = make_expr(ExprKind::kCall, node->position);
      call->operands.push_back(std::move(node));
      MS_RETURN_IF_ERROR(parse_call_args(*call));
      node = std::move(call);
    } else {
      return node;
    }
  }
}

Result<ExprPtr> ParserState::parse_subscript(ExprPtr node) {
  SourcePosition position = next().position;  // '['
  ExprPtr parts[3];
  int part = 0;
  bool is_slice = false;
  while (!at_operator("]")) {
    if (accept_operator(":")) {
      is_slice = true;
      if (++part > 2) return error_at(peek(), "too many ':' in slice");
      continue;
    }
    if (parts[part]) return error_at(peek(), "expected ':' or ']' in subscript");
    MS_ASSIGN_OR_RETURN(parts[part], parse_expression(true));
  }
  next();  // ']'
  if (!is_slice && !parts[0]) return error_at(peek(), "empty subscript");
  auto expr = make_expr(is_slice ? ExprKind::kSlice : ExprKind::kGetItem, position);
  expr->operands.push_back(std::move(node));
  expr->operands.push_back(std::move(parts[0]));
  if (is_slice) {
    expr->operands.push_back(std::move(parts[1]));
    expr->operands.push_back(std::move(parts[2]));
  }
  return expr;
}

Status ParserState::parse_call_args(Expr& call) {
  next();  // '('
  bool first = true;
  while (!accept_operator(")")) {
    if (!first) {
      MS_RETURN_IF_ERROR(expect_operator(","));
      if (accept_operator(")")) break;
    }
    first = false;
    if (at_operator("*") || at_operator("**")) return error_at(peek(), "*args and **kwargs in calls are not supported");
    if (peek().type == TokenType::kName && peek(1).type == TokenType::kOperator && peek(1).text == "=") {
      std::string key = next().text;
      next();
      MS_ASSIGN_OR_RETURN(ExprPtr value, parse_expression(true));
      call.keyword_args.emplace_back(std::move(key), std::move(value));
      continue;
    }
    if (!call.keyword_args.empty()) return error_at(peek(), "positional argument follows keyword argument");
    MS_ASSIGN_OR_RETURN(ExprPtr value, parse_expression(true));
    call.operands.push_back(std::move(value));
  }
  return ok_status();
}

Result<std::string> ParserState::parse_dotted_name() {
  const Token& token = peek();
  if (token.type != TokenType::kName) return error_at(token, "expected a filter or test name");
  std::string name = next().text;
  while (at_operator(".") && peek(1).type == TokenType::kName) {
    next();
    name += "." + next().text;
  }
  return name;
}

Result<ExprPtr> ParserState::parse_filter(ExprPtr subject) {
  SourcePosition position = peek().position;
  auto filter = make_expr(ExprKind::kFilter, position);
  MS_ASSIGN_OR_RETURN(filter->name, parse_dotted_name());
  filter->operands.push_back(std::move(subject));
  if (at_operator("(")) MS_RETURN_IF_ERROR(parse_call_args(*filter));
  return filter;
}

Result<ExprPtr> ParserState::parse_test(ExprPtr node) {
  SourcePosition position = next().position;  // 'is'
  auto test = make_expr(ExprKind::kTest, position);
  test->negated = accept_name("not");
  MS_ASSIGN_OR_RETURN(test->name, parse_dotted_name());
  test->operands.push_back(std::move(node));
  const Token& token = peek();
  if (at_operator("(")) {
    MS_RETURN_IF_ERROR(parse_call_args(*test));
  } else {
    bool starts_argument = token.type == TokenType::kName || token.type == TokenType::kString ||
                           token.type == TokenType::kInteger || token.type == TokenType::kFloat ||
                           at_operator("[") || at_operator("{");
    bool is_keyword = token.type == TokenType::kName && (token.text == "else" || token.text == "or" || token.text == "and");
    if (starts_argument && !is_keyword) {
      MS_ASSIGN_OR_RETURN(ExprPtr argument, parse_primary());
      MS_ASSIGN_OR_RETURN(argument, parse_postfix(std::move(argument)));
      test->operands.push_back(std::move(argument));
    }
  }
  return test;
}

Result<ExprPtr> ParserState::parse_filter_expr(ExprPtr node) {
  while (true) {
    if (accept_operator("|")) {
      MS_ASSIGN_OR_RETURN(node, parse_filter(std::move(node)));
    } else if (at_name("is")) {
      MS_ASSIGN_OR_RETURN(node, parse_test(std::move(node)));
    } else if (at_operator("(")) {
      auto call = make_expr(ExprKind::kCall, node->position);
      call->operands.push_back(std::move(node));
      MS_RETURN_IF_ERROR(parse_call_args(*call));
      node = std::move(call);
    } else {
      return node;
    }
  }
}

}  // namespace moeserve::chat

