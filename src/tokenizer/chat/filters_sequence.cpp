// Filters over sequences and mappings: first, last, list, join, reverse, sort, unique, map,
// select/reject, selectattr/rejectattr, items, dictsort, sum, min, max, batch, attr; and the
// interpreter's filter dispatch.
#include <algorithm>
#include <charconv>

#include "tokenizer/chat/builtins.h"
#include "tokenizer/chat/call_args.h"
#include "tokenizer/chat/operations.h"
#include "tokenizer/chat/text_utils.h"

namespace moeserve::chat {

namespace {

// jinja2's attribute getter: "a.b.0" looks up each part with item-then-attribute semantics.
Result<Value> lookup_path(const Value& item, const Value& path) {
  if (!path.is_string()) return get_item(item, path);
  Value current = item;
  const std::string dot = ".";
  for (const std::string& part : split_text(path.as_string(), &dot, -1)) {
    Value key(part);
    if (!part.empty() && std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      int64_t index = 0;
      auto [end, error] = std::from_chars(part.data(), part.data() + part.size(), index);
      if (error == std::errc()) key = Value(index);
    }
    MS_ASSIGN_OR_RETURN(current, get_item(current, key));
  }
  return current;
}

// Sort key: strings compare lower-cased unless case_sensitive (jinja2's ignore_case).
Value sort_key(const Value& value, bool case_sensitive) {
  if (!case_sensitive && value.is_string()) return Value(to_lower(value.as_string()));
  return value;
}

Status sort_values(ValueList& items, const Value& attribute, bool case_sensitive, bool reverse) {
  std::vector<std::pair<Value, Value>> keyed;
  for (Value& item : items) {
    Value key = item;
    if (!attribute.is_undefined() && !attribute.is_none()) {
      MS_ASSIGN_OR_RETURN(key, lookup_path(item, attribute));
    }
    keyed.emplace_back(sort_key(key, case_sensitive), std::move(item));
  }
  Status failure = ok_status();
  std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& a, const auto& b) {
    Result<bool> less = reverse ? value_less(b.first, a.first) : value_less(a.first, b.first);
    if (!less.ok()) {
      if (failure.ok()) failure = less.error();
      return false;
    }
    return *less;
  });
  MS_RETURN_IF_ERROR(failure);
  items.clear();
  for (auto& entry : keyed) items.push_back(std::move(entry.second));
  return ok_status();
}

// select/reject/selectattr/rejectattr: keeps items whose (attribute's) test result == keep.
Result<Value> select_filter(Interpreter& interpreter, const std::string& name, const Value& subject, CallArgs& args) {
  bool by_attribute = name == "selectattr" || name == "rejectattr";
  bool keep = name == "select" || name == "selectattr";
  size_t next_arg = 0;
  Value attribute;
  if (by_attribute) {
    if (args.positional.empty()) return make_error("{}() missing required argument 'attribute'", name);
    attribute = args.positional[next_arg++];
  }
  std::string test_name;
  if (next_arg < args.positional.size()) {
    if (!args.positional[next_arg].is_string()) return make_error("{}(): the test name must be a string", name);
    test_name = args.positional[next_arg++].as_string();
  }
  CallArgs test_args;
  test_args.positional.assign(args.positional.begin() + static_cast<std::ptrdiff_t>(next_arg), args.positional.end());
  test_args.keyword = args.keyword;
  MS_ASSIGN_OR_RETURN(ValueList items, iterate(subject));
  ValueList kept;
  for (const Value& item : items) {
    MS_RETURN_IF_ERROR(interpreter.charge(1));
    Value probe = item;
    if (by_attribute) {
      MS_ASSIGN_OR_RETURN(probe, lookup_path(item, attribute));
    }
    bool passed = probe.truthy();
    if (!test_name.empty()) {
      CallArgs call_args = test_args;
      MS_ASSIGN_OR_RETURN(passed, interpreter.apply_test(test_name, probe, call_args));
    }
    if (passed == keep) kept.push_back(item);
  }
  return Value(std::move(kept));
}

Result<Value> map_filter(Interpreter& interpreter, const Value& subject, CallArgs& args) {
  MS_ASSIGN_OR_RETURN(ValueList items, iterate(subject));
  ValueList out;
  const Value* attribute = nullptr;
  const Value* fallback = nullptr;
  for (const auto& [key, value] : args.keyword) {
    if (key == "attribute") attribute = &value;
    if (key == "default") fallback = &value;
  }
  if (attribute != nullptr) {
    for (const Value& item : items) {
      MS_RETURN_IF_ERROR(interpreter.charge(1));
      MS_ASSIGN_OR_RETURN(Value mapped, lookup_path(item, *attribute));
      if (mapped.is_undefined() && fallback != nullptr) mapped = *fallback;
      out.push_back(std::move(mapped));
    }
    return Value(std::move(out));
  }
  if (args.positional.empty() || !args.positional[0].is_string()) {
    return make_error("map(): expected a filter name or attribute=");
  }
  std::string filter = args.positional[0].as_string();
  CallArgs filter_args;
  filter_args.positional.assign(args.positional.begin() + 1, args.positional.end());
  filter_args.keyword = args.keyword;
  for (const Value& item : items) {
    MS_RETURN_IF_ERROR(interpreter.charge(1));
    CallArgs call_args = filter_args;
    MS_ASSIGN_OR_RETURN(Value mapped, interpreter.apply_filter(filter, item, call_args));
    out.push_back(std::move(mapped));
  }
  return Value(std::move(out));
}

Result<Value> join_filter(Interpreter& interpreter, const Value& subject, CallArgs& args) {
  MS_ASSIGN_OR_RETURN(auto bound, bind_args("join", args, {"d", "attribute"}, 0));
  std::string separator = bound[0].is_undefined() ? "" : to_display_string(bound[0]);
  MS_ASSIGN_OR_RETURN(ValueList items, iterate(subject));
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    Value item = items[i];
    if (!bound[1].is_undefined() && !bound[1].is_none()) {
      MS_ASSIGN_OR_RETURN(item, lookup_path(item, bound[1]));
    }
    if (i > 0) out += separator;
    out += to_display_string(item);
    MS_RETURN_IF_ERROR(interpreter.check_size(out.size()));
  }
  return Value(std::move(out));
}

Result<Value> aggregate_filter(const std::string& name, const Value& subject, CallArgs& args) {
  MS_ASSIGN_OR_RETURN(ValueList items, iterate(subject));
  if (name == "sum") {
    MS_ASSIGN_OR_RETURN(auto bound, bind_args(name, args, {"attribute", "start"}, 0));
    Value total = bound[1].is_undefined() ? Value(int64_t{0}) : bound[1];
    for (const Value& item : items) {
      Value term = item;
      if (!bound[0].is_undefined() && !bound[0].is_none()) {
        MS_ASSIGN_OR_RETURN(term, lookup_path(item, bound[0]));
      }
      if (!term.is_number() || !total.is_number()) return make_error("sum(): items must be numbers");
      if (total.is_float() || term.is_float()) {
        total = Value(total.as_double() + term.as_double());
      } else {
        int64_t result = 0;
        if (__builtin_add_overflow(total.as_integer(), term.as_integer(), &result)) return make_error("sum(): overflow");
        total = Value(result);
      }
    }
    return total;
  }
  MS_ASSIGN_OR_RETURN(auto bound, bind_args(name, args, {"case_sensitive", "attribute"}, 0));
  if (items.empty()) return Value(Undefined{"No aggregated item, sequence was empty."});
  MS_RETURN_IF_ERROR(sort_values(items, bound[1], bound[0].truthy(), false));
  return name == "min" ? items.front() : items.back();
}

Result<Value> dict_filter(const std::string& name, const Value& subject, CallArgs& args) {
  if (subject.is_undefined()) return Value(ValueList{});
  if (!subject.is_dict()) return make_error("{}(): expected a mapping, got {}", name, subject.type_name());
  ValueList pairs;
  for (const auto& [key, value] : subject.as_dict().entries()) pairs.push_back(Value::tuple(ValueList{Value(key), value}));
  if (name == "items") return Value(std::move(pairs));
  MS_ASSIGN_OR_RETURN(auto bound, bind_args(name, args, {"case_sensitive", "by", "reverse"}, 0));
  MS_ASSIGN_OR_RETURN(std::string by, string_arg(name, bound[1], "key"));
  if (by != "key" && by != "value") return make_error("dictsort(): 'by' must be 'key' or 'value'");
  MS_RETURN_IF_ERROR(sort_values(pairs, Value(int64_t{by == "key" ? 0 : 1}), bound[0].truthy(), bound[2].truthy()));
  return Value(std::move(pairs));
}

Result<std::optional<Value>> sequence_filter(Interpreter& interpreter, const std::string& name,
                                             const Value& subject, CallArgs& args) {
  using Optional = std::optional<Value>;
  auto wrap = [](Result<Value> result) -> Result<Optional> {
    if (!result.ok()) return result.error();
    return Optional(std::move(result).value());
  };
  if (name == "join") return wrap(join_filter(interpreter, subject, args));
  if (name == "map") return wrap(map_filter(interpreter, subject, args));
  if (name == "select" || name == "reject" || name == "selectattr" || name == "rejectattr") {
    return wrap(select_filter(interpreter, name, subject, args));
  }
  if (name == "sum" || name == "min" || name == "max") return wrap(aggregate_filter(name, subject, args));
  if (name == "items" || name == "dictsort") return wrap(dict_filter(name, subject, args));
  if (name == "attr") {
    MS_ASSIGN_OR_RETURN(auto bound, bind_args(name, args, {"name"}, 1));
    MS_ASSIGN_OR_RETURN(std::string attribute, string_arg(name, bound[0], ""));
    if (subject.is_dict()) return Optional(bound_method(subject, attribute));  // getattr only: keys are not attributes
    return wrap(get_attribute(subject, attribute));
  }
  if (name == "sort" || name == "unique") {
    MS_ASSIGN_OR_RETURN(ValueList items, iterate(subject));
    if (name == "sort") {
      MS_ASSIGN_OR_RETURN(auto bound, bind_args(name, args, {"reverse", "case_sensitive", "attribute"}, 0));
      MS_RETURN_IF_ERROR(sort_values(items, bound[2], bound[1].truthy(), bound[0].truthy()));
      return Optional(Value(std::move(items)));
    }
    MS_ASSIGN_OR_RETURN(auto bound, bind_args(name, args, {"case_sensitive", "attribute"}, 0));
    ValueList unique;
    std::vector<Value> seen;
    for (const Value& item : items) {
      MS_RETURN_IF_ERROR(interpreter.charge(static_cast<int64_t>(seen.size()) / 64 + 1));
      Value key = item;
      if (!bound[1].is_undefined() && !bound[1].is_none()) {
        MS_ASSIGN_OR_RETURN(key, lookup_path(item, bound[1]));
      }
      key = sort_key(key, bound[0].truthy());
      if (std::any_of(seen.begin(), seen.end(), [&](const Value& other) { return values_equal(other, key); })) continue;
      seen.push_back(key);
      unique.push_back(item);
    }
    return Optional(Value(std::move(unique)));
  }
  if (name == "batch") {
    MS_ASSIGN_OR_RETURN(auto bound, bind_args(name, args, {"linecount", "fill_with"}, 1));
    MS_ASSIGN_OR_RETURN(int64_t size, int_arg(name, bound[0], 1));
    if (size <= 0) return make_error("batch(): linecount must be positive");
    MS_ASSIGN_OR_RETURN(ValueList items, iterate(subject));
    ValueList batches;
    for (size_t start = 0; start < items.size(); start += static_cast<size_t>(size)) {
      ValueList batch(items.begin() + static_cast<std::ptrdiff_t>(start),
                      items.begin() + static_cast<std::ptrdiff_t>(std::min(items.size(), start + static_cast<size_t>(size))));
      while (!bound[1].is_undefined() && batch.size() < static_cast<size_t>(size)) batch.push_back(bound[1]);
      batches.emplace_back(std::move(batch));
    }
    return Optional(Value(std::move(batches)));
  }
  if (name != "list" && name != "first" && name != "last" && name != "reverse") return Optional();
  MS_ASSIGN_OR_RETURN(auto no_args, bind_args(name, args, {}, 0));
  if (name == "list") {
    MS_ASSIGN_OR_RETURN(ValueList items, iterate(subject));
    return Optional(Value(std::move(items)));
  }
  if (name == "first" || name == "last") {
    MS_ASSIGN_OR_RETURN(ValueList items, iterate(subject));
    if (items.empty()) return Optional(Value(Undefined{fmt::format("No {} item, sequence was empty.", name)}));
    return Optional(name == "first" ? items.front() : items.back());
  }
  if (name == "reverse") {
    const Value backwards(int64_t{-1});
    if (subject.is_string()) return wrap(slice_value(subject, nullptr, nullptr, &backwards));
    MS_ASSIGN_OR_RETURN(ValueList items, iterate(subject));
    std::reverse(items.begin(), items.end());
    return Optional(Value(std::move(items)));
  }
  return Optional();
}

}  // namespace

Result<std::optional<Value>> apply_sequence_filter(Interpreter& interpreter, const std::string& name,
                                                   const Value& subject, CallArgs& args) {
  return sequence_filter(interpreter, name, subject, args);
}

Result<Value> Interpreter::apply_filter(const std::string& name, const Value& subject, CallArgs& args) {
  MS_ASSIGN_OR_RETURN(std::optional<Value> result, apply_sequence_filter(*this, name, subject, args));
  if (result) return std::move(*result);
  MS_ASSIGN_OR_RETURN(result, apply_text_filter(*this, name, subject, args));
  if (result) return std::move(*result);
  return make_error("no filter named '{}'", name);
}

}  // namespace moeserve::chat
