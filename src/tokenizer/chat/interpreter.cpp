// Statement execution: text and output, if/for/set/macro/call/filter/with blocks,
// break/continue, and the limits that stop runaway templates (see interpreter.h).
#include "tokenizer/chat/interpreter.h"

#include "tokenizer/chat/builtins.h"
#include "tokenizer/chat/operations.h"

namespace moeserve::chat {

const Value* Scope::lookup(const std::string& name) const {
  for (const Scope* scope = this; scope != nullptr; scope = scope->parent_.get()) {
    auto it = scope->variables_.find(name);
    if (it != scope->variables_.end()) return &it->second;
  }
  return nullptr;
}

Error at_line(const SourcePosition& position, const Error& error) {
  if (error.message.rfind("line ", 0) == 0 || error.message.rfind(kTemplateRaisedPrefix, 0) == 0) return error;
  return make_error("line {}: {}", position.line, error.message);
}

Status Interpreter::charge(int64_t units) {
  iterations_ += units;
  if (iterations_ > limits_.max_loop_iterations) {
    return make_error("template exceeded {} loop iterations (runaway template?)", limits_.max_loop_iterations);
  }
  return ok_status();
}

Status Interpreter::check_size(size_t size) const {
  if (size > limits_.max_value_size) {
    return make_error("template built a value over the size limit of {} (runaway template?)", limits_.max_value_size);
  }
  return ok_status();
}

Status Interpreter::append_output(std::string& out, std::string_view text) {
  produced_bytes_ += text.size();
  if (out.size() + text.size() > limits_.max_output_bytes || produced_bytes_ > 4 * limits_.max_output_bytes) {
    return make_error("template output exceeds the limit of {} bytes (runaway template?)", limits_.max_output_bytes);
  }
  out.append(text);
  return ok_status();
}

Result<std::string> Interpreter::render(const Body& body, std::shared_ptr<Scope> scope) {
  std::string out;
  MS_RETURN_IF_ERROR(exec_body(body, scope, out));
  return out;
}

Result<std::string> Interpreter::render_nested(const Body& body, const std::shared_ptr<Scope>& scope) {
  std::string out;
  MS_RETURN_IF_ERROR(exec_body(body, scope, out));
  return out;
}

Status Interpreter::exec_body(const Body& body, const std::shared_ptr<Scope>& scope, std::string& out) {
  for (const StmtPtr& stmt : body) {
    Status status = exec(*stmt, scope, out);
    if (!status.ok()) return at_line(stmt->position, status.error());
    if (flow_ != Flow::kNormal) return ok_status();
  }
  return ok_status();
}

Result<Value> Interpreter::apply_filter_chain(const std::vector<ExprPtr>& filters, Value subject,
                                              const std::shared_ptr<Scope>& scope) {
  for (const ExprPtr& filter : filters) {
    MS_ASSIGN_OR_RETURN(CallArgs args, eval_args(*filter, 1, scope));
    MS_ASSIGN_OR_RETURN(subject, apply_filter(filter->name, subject, args));
  }
  return subject;
}

Status Interpreter::exec(const Stmt& stmt, const std::shared_ptr<Scope>& scope, std::string& out) {
  switch (stmt.kind) {
    case StmtKind::kText:
      return append_output(out, stmt.text);
    case StmtKind::kOutput: {
      MS_ASSIGN_OR_RETURN(Value value, eval(*stmt.expr, scope));
      return append_output(out, to_display_string(value));
    }
    case StmtKind::kIf:
      for (const auto& [condition, body] : stmt.branches) {
        bool taken = true;
        if (condition) {
          MS_ASSIGN_OR_RETURN(Value value, eval(*condition, scope));
          taken = value.truthy();
        }
        if (taken) return exec_body(body, scope, out);
      }
      return ok_status();
    case StmtKind::kFor:
      return exec_for(stmt, scope, out);
    case StmtKind::kSet:
      return exec_set(stmt, scope);
    case StmtKind::kSetBlock: {
      MS_ASSIGN_OR_RETURN(std::string text, render_nested(stmt.body, scope));
      MS_ASSIGN_OR_RETURN(Value value, apply_filter_chain(stmt.filters, Value(std::move(text)), scope));
      scope->set(stmt.targets[0], std::move(value));
      return ok_status();
    }
    case StmtKind::kMacro:
      scope->set(stmt.name, make_macro(stmt, scope, nullptr));
      return ok_status();
    case StmtKind::kCallBlock:
      return exec_call_block(stmt, scope, out);
    case StmtKind::kFilterBlock: {
      MS_ASSIGN_OR_RETURN(std::string text, render_nested(stmt.body, scope));
      MS_ASSIGN_OR_RETURN(Value value, apply_filter_chain(stmt.filters, Value(std::move(text)), scope));
      return append_output(out, to_display_string(value));
    }
    case StmtKind::kWith: {
      auto inner = std::make_shared<Scope>(scope);
      for (size_t i = 0; i < stmt.targets.size(); ++i) {
        MS_ASSIGN_OR_RETURN(Value value, eval(*stmt.values[i], scope));
        inner->set(stmt.targets[i], std::move(value));
      }
      return exec_body(stmt.body, inner, out);
    }
    case StmtKind::kScope:
      return exec_body(stmt.body, scope, out);
    case StmtKind::kBreak:
      flow_ = Flow::kBreak;
      return ok_status();
    case StmtKind::kContinue:
      flow_ = Flow::kContinue;
      return ok_status();
  }
  return ok_status();
}

namespace {

Status bind_targets(Scope& scope, const std::vector<std::string>& targets, const Value& value) {
  if (targets.size() == 1) {
    scope.set(targets[0], value);
    return ok_status();
  }
  MS_ASSIGN_OR_RETURN(ValueList items, iterate(value));
  if (items.size() != targets.size()) {
    return make_error("cannot unpack {} values into {} names", items.size(), targets.size());
  }
  for (size_t i = 0; i < targets.size(); ++i) scope.set(targets[i], items[i]);
  return ok_status();
}

Value make_loop_object(const ValueList& items, size_t index, const Value& cycle) {
  ValueDict loop;
  int64_t length = static_cast<int64_t>(items.size());
  int64_t position = static_cast<int64_t>(index);
  loop.set("index0", Value(position));
  loop.set("index", Value(position + 1));
  loop.set("revindex0", Value(length - position - 1));
  loop.set("revindex", Value(length - position));
  loop.set("first", Value(index == 0));
  loop.set("last", Value(position == length - 1));
  loop.set("length", Value(length));
  loop.set("depth", Value(int64_t{1}));
  loop.set("depth0", Value(int64_t{0}));
  if (index > 0) loop.set("previtem", items[index - 1]);
  if (position + 1 < length) loop.set("nextitem", items[index + 1]);
  loop.set("cycle", cycle);
  return Value(std::move(loop));
}

}  // namespace

Status Interpreter::exec_for(const Stmt& stmt, const std::shared_ptr<Scope>& scope, std::string& out) {
  MS_ASSIGN_OR_RETURN(Value iterable, eval(*stmt.expr, scope));
  MS_ASSIGN_OR_RETURN(ValueList items, iterate(iterable));
  if (stmt.filter) {
    ValueList kept;
    for (const Value& item : items) {
      MS_RETURN_IF_ERROR(charge(1));
      auto probe = std::make_shared<Scope>(scope);
      MS_RETURN_IF_ERROR(bind_targets(*probe, stmt.targets, item));
      MS_ASSIGN_OR_RETURN(Value keep, eval(*stmt.filter, probe));
      if (keep.truthy()) kept.push_back(item);
    }
    items = std::move(kept);
  }
  if (items.empty()) return exec_body(stmt.else_body, scope, out);
  for (size_t index = 0; index < items.size(); ++index) {
    MS_RETURN_IF_ERROR(charge(1));
    auto iteration = std::make_shared<Scope>(scope);
    MS_RETURN_IF_ERROR(bind_targets(*iteration, stmt.targets, items[index]));
    auto cycle = std::make_shared<Callable>();
    cycle->name = "loop.cycle";
    cycle->function = [index](Interpreter&, CallArgs& args) -> Result<Value> {
      if (args.positional.empty()) return make_error("no items for cycling given");
      return args.positional[index % args.positional.size()];
    };
    iteration->set("loop", make_loop_object(items, index, Value(std::shared_ptr<const Callable>(std::move(cycle)))));
    MS_RETURN_IF_ERROR(exec_body(stmt.body, iteration, out));
    Flow flow = flow_;
    flow_ = Flow::kNormal;
    if (flow == Flow::kBreak) break;
  }
  return ok_status();
}

Status Interpreter::exec_set(const Stmt& stmt, const std::shared_ptr<Scope>& scope) {
  MS_ASSIGN_OR_RETURN(Value value, eval(*stmt.expr, scope));
  if (!stmt.attribute.empty()) {
    const Value* target = scope->lookup(stmt.targets[0]);
    if (target == nullptr || !target->is_namespace()) {
      return make_error("cannot assign attribute '{}' on '{}': it is not a namespace", stmt.attribute,
                        stmt.targets[0]);
    }
    target->as_namespace().attributes.set(stmt.attribute, std::move(value));
    return ok_status();
  }
  return bind_targets(*scope, stmt.targets, value);
}

Value Interpreter::make_macro(const Stmt& stmt, const std::shared_ptr<Scope>& scope,
                              std::shared_ptr<const Callable> caller) {
  auto callable = std::make_shared<Callable>();
  callable->name = stmt.name.empty() ? "caller" : stmt.name;
  const Stmt* macro = &stmt;
  // The scope holds the macro and the macro needs the scope: a weak link breaks the cycle,
  // and macro_scopes_ keeps the scope alive until the render ends.
  macro_scopes_.push_back(scope);
  std::weak_ptr<Scope> weak_scope = scope;
  callable->function = [macro, weak_scope, caller](Interpreter& interpreter, CallArgs& args) -> Result<Value> {
    std::shared_ptr<Scope> defining_scope = weak_scope.lock();
    if (!defining_scope) return make_error("macro called after its template finished rendering");
    return interpreter.invoke_macro(*macro, defining_scope, args, caller);
  };
  return Value(std::shared_ptr<const Callable>(std::move(callable)));
}

Result<Value> Interpreter::invoke_macro(const Stmt& macro, const std::shared_ptr<Scope>& defining_scope,
                                        CallArgs& args, const std::shared_ptr<const Callable>& caller) {
  if (call_depth_ >= limits_.max_call_depth) {
    return make_error("macro calls nested deeper than {} (runaway recursion?)", limits_.max_call_depth);
  }
  auto scope = std::make_shared<Scope>(defining_scope);
  const std::string name = macro.name.empty() ? "caller" : macro.name;
  std::vector<bool> given(macro.params.size(), false);
  ValueList varargs;
  for (size_t i = 0; i < args.positional.size(); ++i) {
    if (i < macro.params.size()) {
      scope->set(macro.params[i].name, args.positional[i]);
      given[i] = true;
    } else {
      varargs.push_back(args.positional[i]);
    }
  }
  ValueDict kwargs;
  for (auto& [key, value] : args.keyword) {
    size_t index = 0;
    while (index < macro.params.size() && macro.params[index].name != key) ++index;
    if (index == macro.params.size()) {
      if (key == "caller") {
        scope->set("caller", value);  // a {% call %} block's body
      } else {
        kwargs.set(key, value);
      }
      continue;
    }
    if (given[index]) return make_error("macro '{}' got multiple values for argument '{}'", name, key);
    scope->set(key, value);
    given[index] = true;
  }
  for (size_t i = 0; i < macro.params.size(); ++i) {
    if (given[i]) continue;
    if (macro.params[i].default_value) {
      MS_ASSIGN_OR_RETURN(Value value, eval(*macro.params[i].default_value, scope));
      scope->set(macro.params[i].name, std::move(value));
    } else {
      scope->set(macro.params[i].name, Value(Undefined{fmt::format("'{}' is undefined", macro.params[i].name)}));
    }
  }
  scope->set("varargs", Value::tuple(std::move(varargs)));
  scope->set("kwargs", Value(std::move(kwargs)));
  if (caller) scope->set("caller", Value(caller));
  ++call_depth_;
  Result<std::string> text = render_nested(macro.body, scope);
  --call_depth_;
  flow_ = Flow::kNormal;
  if (!text.ok()) return text.error();
  return Value(std::move(text).value());
}

Status Interpreter::exec_call_block(const Stmt& stmt, const std::shared_ptr<Scope>& scope, std::string& out) {
  // The call block's body becomes `caller()` inside the called macro; `stmt` doubles as its macro.
  Value caller = make_macro(stmt, scope, nullptr);
  const Expr& call = *stmt.expr;
  MS_ASSIGN_OR_RETURN(Value callee, eval(*call.operands[0], scope));
  MS_ASSIGN_OR_RETURN(CallArgs args, eval_args(call, 1, scope));
  args.keyword.emplace_back("caller", caller);
  MS_ASSIGN_OR_RETURN(Value result, this->call(callee, args));
  return append_output(out, to_display_string(result));
}

}  // namespace moeserve::chat
