// jinja2's tests (`x is defined`, `x is none`, `x is string`, `n is divisibleby 3`, ...),
// with Python's type rules: bool counts as a number but not as an integer, `is false` is
// identity with False (0 is not false).
#include <algorithm>
#include <cmath>

#include "tokenizer/chat/builtins.h"
#include "tokenizer/chat/call_args.h"
#include "tokenizer/chat/operations.h"
#include "tokenizer/chat/text_utils.h"

namespace moeserve::chat {

namespace {

Result<bool> comparison_test(const std::string& name, const Value& subject, const Value& other) {
  if (name == "eq" || name == "equalto" || name == "==") return values_equal(subject, other);
  if (name == "ne" || name == "!=") return !values_equal(subject, other);
  if (name == "lt" || name == "lessthan" || name == "<") return value_less(subject, other);
  if (name == "gt" || name == "greaterthan" || name == ">") return value_less(other, subject);
  if (name == "le" || name == "<=") {
    MS_ASSIGN_OR_RETURN(bool greater, value_less(other, subject));
    return !greater;
  }
  if (name == "ge" || name == ">=") {
    MS_ASSIGN_OR_RETURN(bool less, value_less(subject, other));
    return !less;
  }
  if (name == "in") return contains(other, subject);
  if (name == "sameas") {
    if (subject.kind() != other.kind()) return false;
    if (subject.is_none() || subject.is_undefined()) return true;
    return values_equal(subject, other);
  }
  return make_error("no test named '{}'", name);
}

}  // namespace

Result<bool> Interpreter::apply_test(const std::string& name, const Value& subject, CallArgs& args) {
  static const char* kBinaryTests[] = {"eq", "equalto", "==", "ne", "!=", "lt", "lessthan", "<", "gt",
                                       "greaterthan", ">", "le", "<=", "ge", ">=", "in", "sameas"};
  if (std::any_of(std::begin(kBinaryTests), std::end(kBinaryTests), [&](const char* test) { return name == test; })) {
    MS_ASSIGN_OR_RETURN(auto bound, bind_args(name, args, {"other"}, 1));
    return comparison_test(name, subject, bound[0]);
  }
  if (name == "divisibleby") {
    MS_ASSIGN_OR_RETURN(auto bound, bind_args(name, args, {"num"}, 1));
    if (!subject.is_number() || !bound[0].is_number()) return make_error("divisibleby: expected numbers");
    if (subject.is_float() || bound[0].is_float()) {
      if (bound[0].as_double() == 0.0) return make_error("float modulo by zero");
      return std::fmod(subject.as_double(), bound[0].as_double()) == 0.0;
    }
    if (bound[0].as_integer() == 0) return make_error("integer division or modulo by zero");
    if (bound[0].as_integer() == -1) return true;
    return subject.as_integer() % bound[0].as_integer() == 0;
  }
  MS_ASSIGN_OR_RETURN(auto no_args, bind_args(name, args, {}, 0));
  if (name == "defined") return !subject.is_undefined();
  if (name == "undefined") return subject.is_undefined();
  if (name == "none") return subject.is_none();
  if (name == "boolean") return subject.is_bool();
  if (name == "true") return subject.is_bool() && subject.as_bool();
  if (name == "false") return subject.is_bool() && !subject.as_bool();
  if (name == "integer") return subject.is_int();
  if (name == "float") return subject.is_float();
  if (name == "number") return subject.is_number();
  if (name == "string") return subject.is_string();
  if (name == "mapping") return subject.is_dict();
  if (name == "iterable") return subject.is_list() || subject.is_dict() || subject.is_string() || subject.is_undefined();
  if (name == "sequence") return subject.is_list() || subject.is_dict() || subject.is_string() || subject.is_undefined();
  if (name == "callable") return subject.is_callable();
  if (name == "escaped") return false;
  if (name == "odd" || name == "even") {
    if (!subject.is_int() && !subject.is_bool()) return make_error("{}: expected an integer, got {}", name, subject.type_name());
    bool odd = (subject.as_integer() % 2) != 0;
    return name == "odd" ? odd : !odd;
  }
  if (name == "lower" || name == "upper") {
    std::string text = to_display_string(subject);
    return name == "lower" ? to_lower(text) == text : to_upper(text) == text;
  }
  return make_error("no test named '{}'", name);
}

}  // namespace moeserve::chat
