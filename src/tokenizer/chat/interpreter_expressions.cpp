// Expression evaluation: names, literals, collections, attribute/item access, slices, calls,
// filters, tests, unary/binary operators, chained comparisons and conditionals.
#include "tokenizer/chat/interpreter.h"
#include "tokenizer/chat/operations.h"

namespace moeserve::chat {

Result<CallArgs> Interpreter::eval_args(const Expr& expr, size_t first_operand, const std::shared_ptr<Scope>& scope) {
  CallArgs args;
  for (size_t i = first_operand; i < expr.operands.size(); ++i) {
    MS_ASSIGN_OR_RETURN(Value value, eval(*expr.operands[i], scope));
    args.positional.push_back(std::move(value));
  }
  for (const auto& [key, value_expr] : expr.keyword_args) {
    MS_ASSIGN_OR_RETURN(Value value, eval(*value_expr, scope));
    args.keyword.emplace_back(key, std::move(value));
  }
  return args;
}

Result<Value> Interpreter::call(const Value& callee, CallArgs& args) {
  if (callee.is_undefined()) return undefined_error(callee);
  if (!callee.is_callable()) return make_error("'{}' object is not callable", callee.type_name());
  return callee.as_callable().function(*this, args);
}

Result<Value> Interpreter::eval_collection(const Expr& expr, const std::shared_ptr<Scope>& scope) {
  if (expr.kind == ExprKind::kDict) {
    ValueDict dict;
    for (size_t i = 0; i + 1 < expr.operands.size(); i += 2) {
      MS_ASSIGN_OR_RETURN(Value key, eval(*expr.operands[i], scope));
      MS_ASSIGN_OR_RETURN(Value value, eval(*expr.operands[i + 1], scope));
      if (!key.is_string()) return make_error("dict keys must be strings in templates, got {}", key.type_name());
      dict.set(key.as_string(), std::move(value));
    }
    return Value(std::move(dict));
  }
  ValueList list;
  for (const ExprPtr& item : expr.operands) {
    MS_ASSIGN_OR_RETURN(Value value, eval(*item, scope));
    list.push_back(std::move(value));
  }
  if (expr.kind == ExprKind::kTuple) return Value::tuple(std::move(list));
  return Value(std::move(list));
}

Result<Value> Interpreter::eval_binary(const Expr& expr, const std::shared_ptr<Scope>& scope) {
  MS_ASSIGN_OR_RETURN(Value left, eval(*expr.operands[0], scope));
  if (expr.name == "and") {
    if (!left.truthy()) return left;
    return eval(*expr.operands[1], scope);
  }
  if (expr.name == "or") {
    if (left.truthy()) return left;
    return eval(*expr.operands[1], scope);
  }
  MS_ASSIGN_OR_RETURN(Value right, eval(*expr.operands[1], scope));
  return binary_operation(*this, expr.name, left, right);
}

Result<Value> Interpreter::eval_compare(const Expr& expr, const std::shared_ptr<Scope>& scope) {
  MS_ASSIGN_OR_RETURN(Value left, eval(*expr.operands[0], scope));
  for (size_t i = 0; i < expr.compare_ops.size(); ++i) {
    MS_ASSIGN_OR_RETURN(Value right, eval(*expr.operands[i + 1], scope));
    const std::string& op = expr.compare_ops[i];
    bool result = false;
    if (op == "==") {
      result = values_equal(left, right);
    } else if (op == "!=") {
      result = !values_equal(left, right);
    } else if (op == "in" || op == "not in") {
      MS_ASSIGN_OR_RETURN(bool found, contains(right, left));
      result = (op == "in") == found;
    } else {
      if (left.is_undefined()) return undefined_error(left);
      if (right.is_undefined()) return undefined_error(right);
      if (op == "<") {
        MS_ASSIGN_OR_RETURN(result, value_less(left, right));
      } else if (op == ">") {
        MS_ASSIGN_OR_RETURN(result, value_less(right, left));
      } else if (op == "<=") {
        MS_ASSIGN_OR_RETURN(bool greater, value_less(right, left));
        result = !greater;
      } else {
        MS_ASSIGN_OR_RETURN(bool less, value_less(left, right));
        result = !less;
      }
    }
    if (!result) return Value(false);
    left = std::move(right);
  }
  return Value(true);
}

Result<Value> Interpreter::eval_call(const Expr& expr, const std::shared_ptr<Scope>& scope) {
  MS_ASSIGN_OR_RETURN(Value callee, eval(*expr.operands[0], scope));
  MS_ASSIGN_OR_RETURN(CallArgs args, eval_args(expr, 1, scope));
  return call(callee, args);
}

Result<Value> Interpreter::eval(const Expr& expr, const std::shared_ptr<Scope>& scope) {
  switch (expr.kind) {
    case ExprKind::kLiteral:
      return expr.literal;
    case ExprKind::kName: {
      if (const Value* value = scope->lookup(expr.name)) return *value;
      return Value(Undefined{fmt::format("'{}' is undefined", expr.name)});
    }
    case ExprKind::kList:
    case ExprKind::kTuple:
    case ExprKind::kDict:
      return eval_collection(expr, scope);
    case ExprKind::kGetAttr: {
      MS_ASSIGN_OR_RETURN(Value object, eval(*expr.operands[0], scope));
      return get_attribute(object, expr.name);
    }
    case ExprKind::kGetItem: {
      MS_ASSIGN_OR_RETURN(Value object, eval(*expr.operands[0], scope));
      MS_ASSIGN_OR_RETURN(Value key, eval(*expr.operands[1], scope));
      return get_item(object, key);
    }
    case ExprKind::kSlice: {
      MS_ASSIGN_OR_RETURN(Value object, eval(*expr.operands[0], scope));
      Value bounds[3];
      const Value* bound_pointers[3] = {nullptr, nullptr, nullptr};
      for (int i = 0; i < 3; ++i) {
        if (!expr.operands[static_cast<size_t>(i) + 1]) continue;
        MS_ASSIGN_OR_RETURN(bounds[i], eval(*expr.operands[static_cast<size_t>(i) + 1], scope));
        bound_pointers[i] = &bounds[i];
      }
      return slice_value(object, bound_pointers[0], bound_pointers[1], bound_pointers[2]);
    }
    case ExprKind::kCall:
      return eval_call(expr, scope);
    case ExprKind::kFilter: {
      MS_ASSIGN_OR_RETURN(Value subject, eval(*expr.operands[0], scope));
      MS_ASSIGN_OR_RETURN(CallArgs args, eval_args(expr, 1, scope));
      return apply_filter(expr.name, subject, args);
    }
    case ExprKind::kTest: {
      MS_ASSIGN_OR_RETURN(Value subject, eval(*expr.operands[0], scope));
      MS_ASSIGN_OR_RETURN(CallArgs args, eval_args(expr, 1, scope));
      MS_ASSIGN_OR_RETURN(bool passed, apply_test(expr.name, subject, args));
      return Value(passed != expr.negated);
    }
    case ExprKind::kUnary: {
      MS_ASSIGN_OR_RETURN(Value operand, eval(*expr.operands[0], scope));
      if (expr.name == "not") return Value(!operand.truthy());
      if (operand.is_undefined()) return undefined_error(operand);
      if (!operand.is_number()) return make_error("bad operand type for unary {}: '{}'", expr.name, operand.type_name());
      if (expr.name == "+") return operand.is_float() ? operand : Value(operand.as_integer());
      if (operand.is_float()) return Value(-operand.as_double());
      if (operand.as_integer() == INT64_MIN) return make_error("integer overflow in unary -");
      return Value(-operand.as_integer());
    }
    case ExprKind::kBinary:
      return eval_binary(expr, scope);
    case ExprKind::kCompare:
      return eval_compare(expr, scope);
    case ExprKind::kConditional: {
      MS_ASSIGN_OR_RETURN(Value condition, eval(*expr.operands[0], scope));
      if (condition.truthy()) return eval(*expr.operands[1], scope);
      if (expr.operands[2]) return eval(*expr.operands[2], scope);
      return Value(Undefined{"the conditional expression had no else branch"});
    }
  }
  return make_error("internal error: unknown expression kind");
}

}  // namespace moeserve::chat
