// The template engine's value type: what a Jinja2 expression evaluates to, with Python's
// semantics (truthiness, equality between int/float/bool, ordering, str() and repr()).
// Lists and dicts are immutable once built (transformers renders in jinja2's
// ImmutableSandboxedEnvironment), so they are shared by pointer; a namespace() is the one
// mutable container and is shared by reference, as in Python.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/result.h"

namespace moeserve::chat {

class Value;
class Interpreter;

// A jinja2 Undefined: `hint` names what was looked up, for the error a later use raises.
struct Undefined {
  std::string hint;
};

struct None {};

using ValueList = std::vector<Value>;

// A Python dict with string keys. Invariant: keys are unique; `entries` keeps insertion order
// (Python dicts iterate in insertion order, and tojson/items() must too).
class ValueDict {
 public:
  const Value* find(std::string_view key) const;
  Value* find(std::string_view key);
  void set(std::string key, Value value);
  const std::vector<std::pair<std::string, Value>>& entries() const { return entries_; }
  size_t size() const { return entries_.size(); }

 private:
  std::vector<std::pair<std::string, Value>> entries_;
};

// jinja2's namespace(): attributes assignable with `{% set ns.attr = ... %}` from any scope.
struct Namespace {
  ValueDict attributes;
};

struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;
};

// A function value: a global (range, namespace, raise_exception...), a bound method
// ('x'.strip) or a macro. It runs against the interpreter so that macros can render.
struct Callable {
  std::string name;
  std::function<Result<Value>(Interpreter&, CallArgs&)> function;
};

enum class ValueKind { kUndefined, kNone, kBool, kInt, kFloat, kString, kList, kDict, kNamespace, kCallable };

class Value {
 public:
  Value() : storage_(Undefined{}) {}
  Value(Undefined undefined) : storage_(std::move(undefined)) {}  // NOLINT: implicit by design
  Value(None) : storage_(None{}) {}                                // NOLINT
  Value(bool value) : storage_(value) {}                           // NOLINT
  Value(int64_t value) : storage_(value) {}                        // NOLINT
  Value(int value) : storage_(static_cast<int64_t>(value)) {}      // NOLINT
  Value(double value) : storage_(value) {}                         // NOLINT
  Value(std::string value) : storage_(std::move(value)) {}         // NOLINT
  Value(const char* value) : storage_(std::string(value)) {}       // NOLINT
  Value(ValueList list) : storage_(std::make_shared<const ValueList>(std::move(list))) {}  // NOLINT
  Value(ValueDict dict) : storage_(std::make_shared<const ValueDict>(std::move(dict))) {}  // NOLINT
  Value(std::shared_ptr<Namespace> ns) : storage_(std::move(ns)) {}                     // NOLINT
  Value(std::shared_ptr<const Callable> callable) : storage_(std::move(callable)) {}    // NOLINT

  // JSON objects keep their key order (Python dicts do; tojson output depends on it).
  static Value from_json(const nlohmann::ordered_json& json);
  // A Python tuple: a list that prints as (a, b).
  static Value tuple(ValueList items);
  bool is_tuple() const { return tuple_; }

  ValueKind kind() const { return static_cast<ValueKind>(storage_.index()); }
  bool is_undefined() const { return kind() == ValueKind::kUndefined; }
  bool is_none() const { return kind() == ValueKind::kNone; }
  bool is_bool() const { return kind() == ValueKind::kBool; }
  bool is_int() const { return kind() == ValueKind::kInt; }
  bool is_float() const { return kind() == ValueKind::kFloat; }
  // int, float or bool (bool is an int subclass in Python).
  bool is_number() const { return is_int() || is_float() || is_bool(); }
  bool is_string() const { return kind() == ValueKind::kString; }
  bool is_list() const { return kind() == ValueKind::kList; }
  bool is_dict() const { return kind() == ValueKind::kDict; }
  bool is_namespace() const { return kind() == ValueKind::kNamespace; }
  bool is_callable() const { return kind() == ValueKind::kCallable; }

  bool as_bool() const { return std::get<bool>(storage_); }
  int64_t as_int() const { return std::get<int64_t>(storage_); }
  // The numeric value of an int, float or bool as a double.
  double as_double() const;
  // The integer value of an int or bool.
  int64_t as_integer() const { return is_bool() ? (as_bool() ? 1 : 0) : as_int(); }
  const std::string& as_string() const { return std::get<std::string>(storage_); }
  const ValueList& as_list() const { return *std::get<std::shared_ptr<const ValueList>>(storage_); }
  const ValueDict& as_dict() const { return *std::get<std::shared_ptr<const ValueDict>>(storage_); }
  Namespace& as_namespace() const { return *std::get<std::shared_ptr<Namespace>>(storage_); }
  const Callable& as_callable() const { return *std::get<std::shared_ptr<const Callable>>(storage_); }
  const std::string& undefined_hint() const { return std::get<Undefined>(storage_).hint; }

  // Python truthiness (undefined is false, as jinja2's Undefined).
  bool truthy() const;
  // Python's type name, for error messages ("str", "dict", "NoneType"...).
  std::string type_name() const;

 private:
  std::variant<Undefined, None, bool, int64_t, double, std::string, std::shared_ptr<const ValueList>,
               std::shared_ptr<const ValueDict>, std::shared_ptr<Namespace>, std::shared_ptr<const Callable>>
      storage_;
  bool tuple_ = false;  // only meaningful for lists
};

// Python `a == b` (1 == 1.0 == True; undefined equals only undefined).
bool values_equal(const Value& a, const Value& b);
// Python `a < b` for numbers, strings and lists; other pairs are a TypeError.
Result<bool> value_less(const Value& a, const Value& b);

// Python str(value) as jinja2 prints it; undefined prints as "".
std::string to_display_string(const Value& value);
// Python repr(value) (how containers print their items).
std::string to_repr(const Value& value);
// Python repr of a float: shortest round-trip digits, "1.0", "1e+16", "inf", "nan".
std::string format_python_float(double value);

// json.dumps(value, ensure_ascii, indent, separators, sort_keys) as transformers' tojson.
struct JsonDumpOptions {
  bool ensure_ascii = false;
  bool has_indent = false;
  std::string indent;  // the indent unit when has_indent
  std::string item_separator = ", ";
  std::string key_separator = ": ";
  bool sort_keys = false;
};
Result<std::string> to_json_text(const Value& value, const JsonDumpOptions& options);

}  // namespace moeserve::chat
