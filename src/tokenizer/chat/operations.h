// Python semantics of the operators and of attribute/item access on values, shared by the
// interpreter and the builtins: `+ - * / // % **`, `in`, `obj.attr` (jinja2: attribute then
// item), `obj[key]` (jinja2: item then attribute), slicing, and iteration.
#pragma once

#include <string>

#include "base/result.h"
#include "tokenizer/chat/value.h"

namespace moeserve::chat {

class Interpreter;

Result<Value> binary_operation(Interpreter& interpreter, const std::string& op, const Value& left, const Value& right);
Result<bool> contains(const Value& container, const Value& item);
Result<Value> get_attribute(const Value& object, const std::string& name);
Result<Value> get_item(const Value& object, const Value& key);
// Python slicing (null pointers: omitted bounds) of a list or string.
Result<Value> slice_value(const Value& object, const Value* start, const Value* stop, const Value* step);
// The items `for x in value` visits: list items, dict keys, string characters; undefined is empty.
Result<ValueList> iterate(const Value& value);
// An error naming an undefined value (jinja2's UndefinedError).
Error undefined_error(const Value& undefined);

// Methods callable on values ('s'.strip(), d.items(), ...): a bound callable, or undefined.
Value bound_method(const Value& self, const std::string& name);

}  // namespace moeserve::chat
