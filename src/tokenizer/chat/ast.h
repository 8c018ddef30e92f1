// The syntax tree of a parsed template. Nodes are plain structs with a kind and the fields
// that kind uses (listed per kind below); they are immutable after parsing, and every node
// records where it came from so that runtime errors can name a line.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tokenizer/chat/lexer.h"
#include "tokenizer/chat/value.h"

namespace moeserve::chat {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

enum class ExprKind {
  kLiteral,      // literal
  kName,         // name
  kList,         // operands: items
  kTuple,        // operands: items (evaluates to a list)
  kDict,         // operands: key0, value0, key1, value1, ...
  kGetAttr,      // operands[0].name
  kGetItem,      // operands[0][operands[1]]
  kSlice,        // operands[0][operands[1]:operands[2]:operands[3]] (null operand: omitted)
  kCall,         // operands[0](operands[1..], keyword_args)
  kFilter,       // operands[0] | name(operands[1..], keyword_args); operands[0] null in {% filter %}
  kTest,         // operands[0] is [not] name(operands[1..]); negated
  kUnary,        // name ("-", "+", "not") operands[0]
  kBinary,       // operands[0] name operands[1]: + - * / // % ** ~ and or
  kCompare,      // operands[0] compare_ops[0] operands[1] compare_ops[1] ... (chained)
  kConditional,  // operands[1] if operands[0] else operands[2] (operands[2] null: undefined)
};

struct Expr {
  ExprKind kind = ExprKind::kLiteral;
  SourcePosition position;
  Value literal;
  std::string name;
  std::vector<ExprPtr> operands;
  std::vector<std::pair<std::string, ExprPtr>> keyword_args;
  std::vector<std::string> compare_ops;  // "==", "!=", "<", "<=", ">", ">=", "in", "not in"
  bool negated = false;
};

struct Stmt;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

enum class StmtKind {
  kText,         // text
  kOutput,       // {{ expr }}
  kIf,           // branches: (condition, body); the else branch has a null condition
  kFor,          // for targets in expr [if filter]: body [else else_body]
  kSet,          // set targets = expr, or set targets[0].attribute = expr (namespace)
  kSetBlock,     // set targets[0] [| filters] %} body {% endset
  kMacro,        // macro name(params with defaults) body
  kCallBlock,    // call[(params)] expr %} body (becomes caller())
  kFilterBlock,  // filter filters %} body
  kWith,         // with targets = values %} body
  kScope,        // body rendered as is (transformers' {% generation %})
  kBreak,
  kContinue,
};

struct MacroParam {
  std::string name;
  ExprPtr default_value;  // null: required
};

struct Stmt {
  StmtKind kind = StmtKind::kText;
  SourcePosition position;
  std::string text;
  ExprPtr expr;
  ExprPtr filter;
  std::vector<std::pair<ExprPtr, Body>> branches;
  std::vector<std::string> targets;
  std::string attribute;
  std::vector<ExprPtr> values;
  std::vector<ExprPtr> filters;  // kFilter exprs with a null subject, applied in order
  std::string name;
  std::vector<MacroParam> params;
  Body body;
  Body else_body;
};

}  // namespace moeserve::chat
