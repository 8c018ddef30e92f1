// Executes a parsed template (ast.h) against a scope of variables and returns the rendered
// text. Runtime errors (undefined attribute access, type errors, raise_exception) come back
// as Result errors naming the template line. Runaway templates are stopped by limits on
// loop iterations, macro recursion, output size and the size of strings/lists built.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "base/result.h"
#include "tokenizer/chat/ast.h"
#include "tokenizer/chat/value.h"

namespace moeserve::chat {

// A variable scope. Invariant: lookups walk parent_ links to the globals; `set` writes only
// here (jinja2: a `set` inside a for loop or macro does not leak out; `if` has no scope).
class Scope {
 public:
  explicit Scope(std::shared_ptr<Scope> parent = nullptr) : parent_(std::move(parent)) {}
  const Value* lookup(const std::string& name) const;
  void set(const std::string& name, Value value) { variables_[name] = std::move(value); }

 private:
  std::unordered_map<std::string, Value> variables_;
  std::shared_ptr<Scope> parent_;
};

struct InterpreterLimits {
  int64_t max_loop_iterations = 1'000'000;     // summed over every loop and range() in one render
  int max_call_depth = 100;                    // nested macro calls
  size_t max_output_bytes = 16u << 20;         // any rendered text, including macro and set blocks
  size_t max_value_size = 16u << 20;           // bytes of a built string, items of a built list
};

class Interpreter {
 public:
  explicit Interpreter(InterpreterLimits limits) : limits_(limits) {}

  Result<std::string> render(const Body& body, std::shared_ptr<Scope> scope);

  // Used by builtins: calls a callable value, applies a filter or a test by name.
  Result<Value> call(const Value& callee, CallArgs& args);
  Result<Value> apply_filter(const std::string& name, const Value& subject, CallArgs& args);
  Result<bool> apply_test(const std::string& name, const Value& subject, CallArgs& args);
  // Spends `units` of the loop-iteration budget (loops, range(), filters over big lists).
  Status charge(int64_t units);
  // Errors when a built string or list exceeds the value-size limit.
  Status check_size(size_t size) const;
  const InterpreterLimits& limits() const { return limits_; }

 private:
  enum class Flow { kNormal, kBreak, kContinue };

  Status exec_body(const Body& body, const std::shared_ptr<Scope>& scope, std::string& out);
  Status exec(const Stmt& stmt, const std::shared_ptr<Scope>& scope, std::string& out);
  Status exec_for(const Stmt& stmt, const std::shared_ptr<Scope>& scope, std::string& out);
  Status exec_set(const Stmt& stmt, const std::shared_ptr<Scope>& scope);
  Status exec_call_block(const Stmt& stmt, const std::shared_ptr<Scope>& scope, std::string& out);
  Result<std::string> render_nested(const Body& body, const std::shared_ptr<Scope>& scope);
  Result<Value> apply_filter_chain(const std::vector<ExprPtr>& filters, Value subject,
                                   const std::shared_ptr<Scope>& scope);
  Status append_output(std::string& out, std::string_view text);
  Value make_macro(const Stmt& stmt, const std::shared_ptr<Scope>& scope, std::shared_ptr<const Callable> caller);
  Result<Value> invoke_macro(const Stmt& macro, const std::shared_ptr<Scope>& defining_scope, CallArgs& args,
                             const std::shared_ptr<const Callable>& caller);

 public:
  // Expression evaluation (interpreter_expressions.cpp).
  Result<Value> eval(const Expr& expr, const std::shared_ptr<Scope>& scope);

 private:
  Result<Value> eval_binary(const Expr& expr, const std::shared_ptr<Scope>& scope);
  Result<Value> eval_compare(const Expr& expr, const std::shared_ptr<Scope>& scope);
  Result<Value> eval_call(const Expr& expr, const std::shared_ptr<Scope>& scope);
  Result<CallArgs> eval_args(const Expr& expr, size_t first_operand, const std::shared_ptr<Scope>& scope);
  Result<Value> eval_collection(const Expr& expr, const std::shared_ptr<Scope>& scope);

  InterpreterLimits limits_;
  Flow flow_ = Flow::kNormal;
  int64_t iterations_ = 0;
  int call_depth_ = 0;
  size_t produced_bytes_ = 0;  // all text appended anywhere, bounded at 4x the output limit
  std::vector<std::shared_ptr<Scope>> macro_scopes_;  // scopes that defined macros, alive for the render
};

// Error position prefix "line N: ".
Error at_line(const SourcePosition& position, const Error& error);

}  // namespace moeserve::chat
