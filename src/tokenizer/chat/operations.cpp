// Operators, attribute/item lookup, slicing and iteration with Python/jinja2 semantics.
#include "tokenizer/chat/operations.h"

#include <cmath>

#include "tokenizer/chat/interpreter.h"
#include "tokenizer/chat/text_utils.h"

namespace moeserve::chat {

namespace {

Error unsupported(const std::string& op, const Value& left, const Value& right) {
  return make_error("unsupported operand type(s) for {}: '{}' and '{}'", op, left.type_name(), right.type_name());
}

Result<Value> repeat(Interpreter& interpreter, const Value& sequence, int64_t times) {
  if (times <= 0) return sequence.is_string() ? Value(std::string()) : Value(ValueList{});
  size_t unit = sequence.is_string() ? sequence.as_string().size() : sequence.as_list().size();
  if (unit != 0 && static_cast<uint64_t>(times) > interpreter.limits().max_value_size / unit + 1) {
    return make_error("result of '*' exceeds the template size limit");
  }
  MS_RETURN_IF_ERROR(interpreter.check_size(unit * static_cast<size_t>(times)));
  if (sequence.is_string()) {
    std::string out;
    for (int64_t i = 0; i < times; ++i) out += sequence.as_string();
    return Value(std::move(out));
  }
  ValueList out;
  for (int64_t i = 0; i < times; ++i) out.insert(out.end(), sequence.as_list().begin(), sequence.as_list().end());
  return Value(std::move(out));
}

Result<Value> arithmetic(const std::string& op, const Value& left, const Value& right) {
  bool use_float = left.is_float() || right.is_float() || op == "/";
  if (!use_float) {
    int64_t a = left.as_integer();
    int64_t b = right.as_integer();
    int64_t result = 0;
    if (op == "+" && !__builtin_add_overflow(a, b, &result)) return Value(result);
    if (op == "-" && !__builtin_sub_overflow(a, b, &result)) return Value(result);
    if (op == "*" && !__builtin_mul_overflow(a, b, &result)) return Value(result);
    if (op == "//" || op == "%") {
      if (b == 0) return make_error("integer division or modulo by zero");
      if (a == INT64_MIN && b == -1) return make_error("integer overflow in '{}'", op);
      int64_t quotient = a / b;
      int64_t remainder = a % b;
      if (remainder != 0 && ((remainder < 0) != (b < 0))) {
        --quotient;
        remainder += b;
      }
      return op == "//" ? Value(quotient) : Value(remainder);
    }
    if (op == "**" && b >= 0) {
      int64_t power = 1;
      for (int64_t i = 0; i < b; ++i) {
        if (__builtin_mul_overflow(power, a, &power)) return make_error("integer overflow in '**'");
        if (power == 0 || power == 1) break;
      }
      if (power == 1 && a == -1 && b % 2 == 1) power = -1;
      return Value(power);
    }
    if (op != "**") return make_error("integer overflow in '{}'", op);
  }
  double a = left.as_double();
  double b = right.as_double();
  if (op == "+") return Value(a + b);
  if (op == "-") return Value(a - b);
  if (op == "*") return Value(a * b);
  if (op == "**") return Value(std::pow(a, b));
  if (b == 0.0) return make_error("float division by zero");
  if (op == "/") return Value(a / b);
  if (op == "//") return Value(std::floor(a / b));
  double remainder = std::fmod(a, b);
  if (remainder != 0.0 && ((remainder < 0) != (b < 0))) remainder += b;
  return Value(remainder);
}

}  // namespace

Error undefined_error(const Value& undefined) {
  const std::string& hint = undefined.undefined_hint();
  return make_error("{}", hint.empty() ? "undefined value" : hint);
}

Result<Value> binary_operation(Interpreter& interpreter, const std::string& op, const Value& left, const Value& right) {
  if (op == "~") {
    std::string text = to_display_string(left) + to_display_string(right);
    MS_RETURN_IF_ERROR(interpreter.check_size(text.size()));
    return Value(std::move(text));
  }
  if (left.is_undefined()) return undefined_error(left);
  if (right.is_undefined()) return undefined_error(right);
  if (left.is_number() && right.is_number()) return arithmetic(op, left, right);
  if (op == "+" && left.is_string() && right.is_string()) {
    MS_RETURN_IF_ERROR(interpreter.check_size(left.as_string().size() + right.as_string().size()));
    return Value(left.as_string() + right.as_string());
  }
  if (op == "+" && left.is_list() && right.is_list()) {
    MS_RETURN_IF_ERROR(interpreter.check_size(left.as_list().size() + right.as_list().size()));
    ValueList joined = left.as_list();
    joined.insert(joined.end(), right.as_list().begin(), right.as_list().end());
    return Value(std::move(joined));
  }
  if (op == "*") {
    if ((left.is_string() || left.is_list()) && (right.is_int() || right.is_bool())) {
      return repeat(interpreter, left, right.as_integer());
    }
    if ((right.is_string() || right.is_list()) && (left.is_int() || left.is_bool())) {
      return repeat(interpreter, right, left.as_integer());
    }
  }
  return unsupported(op, left, right);
}

Result<bool> contains(const Value& container, const Value& item) {
  switch (container.kind()) {
    case ValueKind::kUndefined:
      return false;
    case ValueKind::kString:
      if (!item.is_string()) {
        return make_error("'in <string>' requires string as left operand, not {}", item.type_name());
      }
      return container.as_string().find(item.as_string()) != std::string::npos;
    case ValueKind::kList:
      for (const Value& element : container.as_list()) {
        if (values_equal(element, item)) return true;
      }
      return false;
    case ValueKind::kDict:
      return item.is_string() && container.as_dict().find(item.as_string()) != nullptr;
    default:
      return make_error("argument of type '{}' is not iterable", container.type_name());
  }
}

Result<Value> get_attribute(const Value& object, const std::string& name) {
  switch (object.kind()) {
    case ValueKind::kUndefined:
      return undefined_error(object);
    case ValueKind::kDict: {
      Value method = bound_method(object, name);
      if (!method.is_undefined()) return method;
      if (const Value* value = object.as_dict().find(name)) return *value;
      break;
    }
    case ValueKind::kNamespace:
      if (const Value* value = object.as_namespace().attributes.find(name)) return *value;
      break;
    default: {
      Value method = bound_method(object, name);
      if (!method.is_undefined()) return method;
      break;
    }
  }
  return Value(Undefined{fmt::format("'{} object' has no attribute '{}'", object.type_name(), name)});
}

Result<Value> get_item(const Value& object, const Value& key) {
  if (object.is_undefined()) return undefined_error(object);
  if (object.is_dict() && key.is_string()) {
    if (const Value* value = object.as_dict().find(key.as_string())) return *value;
  }
  if ((object.is_list() || object.is_string()) && (key.is_int() || key.is_bool())) {
    int64_t index = key.as_integer();
    if (object.is_list()) {
      const ValueList& list = object.as_list();
      int64_t size = static_cast<int64_t>(list.size());
      if (index < 0) index += size;
      if (index >= 0 && index < size) return list[static_cast<size_t>(index)];
    } else {
      std::vector<char32_t> points = decode_utf8(object.as_string());
      int64_t size = static_cast<int64_t>(points.size());
      if (index < 0) index += size;
      if (index >= 0 && index < size) {
        std::string out;
        append_utf8(out, points[static_cast<size_t>(index)]);
        return Value(std::move(out));
      }
    }
    return Value(Undefined{fmt::format("'{} object' has no element {}", object.type_name(), key.as_integer())});
  }
  if (key.is_string()) {
    if (object.is_dict()) {
      Value method = bound_method(object, key.as_string());
      if (!method.is_undefined()) return method;
      return Value(Undefined{fmt::format("'dict object' has no attribute '{}'", key.as_string())});
    }
    return get_attribute(object, key.as_string());
  }
  return Value(Undefined{fmt::format("'{} object' has no element {}", object.type_name(), to_repr(key))});
}

Result<Value> slice_value(const Value& object, const Value* start, const Value* stop, const Value* step) {
  if (object.is_undefined()) return undefined_error(object);
  if (!object.is_list() && !object.is_string()) {
    return make_error("'{}' object is not subscriptable", object.type_name());
  }
  auto bound = [](const Value* value, const char* what) -> Result<std::optional<int64_t>> {
    if (value == nullptr || value->is_none()) return std::optional<int64_t>();
    if (value->is_int() || value->is_bool()) return std::optional<int64_t>(value->as_integer());
    return make_error("slice {} must be an integer or None, not {}", what, value->type_name());
  };
  MS_ASSIGN_OR_RETURN(auto start_index, bound(start, "start"));
  MS_ASSIGN_OR_RETURN(auto stop_index, bound(stop, "stop"));
  MS_ASSIGN_OR_RETURN(auto step_value, bound(step, "step"));
  int64_t stride = step_value.value_or(1);
  if (stride == 0) return make_error("slice step cannot be zero");
  std::vector<char32_t> points;
  if (object.is_string()) points = decode_utf8(object.as_string());
  int64_t length = object.is_string() ? static_cast<int64_t>(points.size()) : static_cast<int64_t>(object.as_list().size());
  auto adjust = [&](std::optional<int64_t> index, int64_t fallback) {
    if (!index) return fallback;
    int64_t value = *index;
    if (value < 0) {
      value += length;
      if (value < 0) value = stride < 0 ? -1 : 0;
    } else if (value >= length) {
      value = stride < 0 ? length - 1 : length;
    }
    return value;
  };
  int64_t first = adjust(start_index, stride < 0 ? length - 1 : 0);
  int64_t last = adjust(stop_index, stride < 0 ? -1 : length);
  std::vector<int64_t> indices;
  for (int64_t i = first; stride > 0 ? i < last : i > last; i += stride) indices.push_back(i);
  if (object.is_string()) {
    std::string out;
    for (int64_t i : indices) append_utf8(out, points[static_cast<size_t>(i)]);
    return Value(std::move(out));
  }
  ValueList out;
  out.reserve(indices.size());
  for (int64_t i : indices) out.push_back(object.as_list()[static_cast<size_t>(i)]);
  return Value(std::move(out));
}

Result<ValueList> iterate(const Value& value) {
  switch (value.kind()) {
    case ValueKind::kUndefined:
      return ValueList{};
    case ValueKind::kList:
      return value.as_list();
    case ValueKind::kDict: {
      ValueList keys;
      for (const auto& entry : value.as_dict().entries()) keys.emplace_back(entry.first);
      return keys;
    }
    case ValueKind::kString: {
      ValueList characters;
      for (char32_t c : decode_utf8(value.as_string())) {
        std::string text;
        append_utf8(text, c);
        characters.emplace_back(std::move(text));
      }
      return characters;
    }
    default:
      return make_error("'{}' object is not iterable", value.type_name());
  }
}

}  // namespace moeserve::chat
