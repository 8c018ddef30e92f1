// Python methods that templates call on values: str (strip, split, startswith, replace...),
// dict (items, keys, values, get) and list (index, count). Mutating methods exist in Python
// but transformers' ImmutableSandboxedEnvironment refuses them; so do we.
#include <algorithm>

#include "tokenizer/chat/call_args.h"
#include "tokenizer/chat/operations.h"
#include "tokenizer/chat/text_utils.h"

namespace moeserve::chat {

namespace {

using MethodBody = std::function<Result<Value>(const Value& self, const std::string& name, CallArgs& args)>;

Value make_method(const Value& self, const std::string& name, MethodBody body) {
  auto callable = std::make_shared<Callable>();
  callable->name = self.type_name() + "." + name;
  callable->function = [self, name, body = std::move(body)](Interpreter&, CallArgs& args) {
    return body(self, name, args);
  };
  return Value(std::shared_ptr<const Callable>(std::move(callable)));
}

// Optional string argument that may also be None (Python's strip(None), split(None)).
Result<std::optional<std::string>> optional_string(const std::string& function, const Value& value) {
  if (value.is_undefined() || value.is_none()) return std::optional<std::string>();
  if (!value.is_string()) return make_error("{}() argument must be str or None, not {}", function, value.type_name());
  return std::optional<std::string>(value.as_string());
}

Result<Value> strip_method(const Value& self, const std::string& name, CallArgs& args) {
  MS_ASSIGN_OR_RETURN(auto bound, bind_args(name, args, {"chars"}, 0));
  MS_ASSIGN_OR_RETURN(auto chars, optional_string(name, bound[0]));
  StripSide side = name == "lstrip" ? StripSide::kLeft : name == "rstrip" ? StripSide::kRight : StripSide::kBoth;
  return Value(strip_text(self.as_string(), chars ? &*chars : nullptr, side));
}

Result<Value> split_method(const Value& self, const std::string& name, CallArgs& args) {
  MS_ASSIGN_OR_RETURN(auto bound, bind_args(name, args, {"sep", "maxsplit"}, 0));
  MS_ASSIGN_OR_RETURN(auto separator, optional_string(name, bound[0]));
  MS_ASSIGN_OR_RETURN(int64_t max_split, int_arg(name, bound[1], -1));
  if (separator && separator->empty()) return make_error("empty separator");
  const std::string* sep = separator ? &*separator : nullptr;
  std::vector<std::string> parts = name == "split" ? split_text(self.as_string(), sep, max_split)
                                                   : rsplit_text(self.as_string(), sep, max_split);
  ValueList list(parts.begin(), parts.end());
  return Value(std::move(list));
}

Result<Value> affix_method(const Value& self, const std::string& name, CallArgs& args) {
  MS_ASSIGN_OR_RETURN(auto bound, bind_args(name, args, {"affix"}, 1));
  std::vector<std::string> affixes;
  if (bound[0].is_string()) {
    affixes.push_back(bound[0].as_string());
  } else if (bound[0].is_list()) {
    for (const Value& item : bound[0].as_list()) {
      if (!item.is_string()) return make_error("{}() tuple items must be str", name);
      affixes.push_back(item.as_string());
    }
  } else {
    return make_error("{} first arg must be str or a tuple of str, not {}", name, bound[0].type_name());
  }
  const std::string& text = self.as_string();
  for (const std::string& affix : affixes) {
    bool match = name == "startswith" ? text.compare(0, affix.size(), affix) == 0 && text.size() >= affix.size()
                                      : text.size() >= affix.size() &&
                                            text.compare(text.size() - affix.size(), affix.size(), affix) == 0;
    if (match) return Value(true);
  }
  return Value(false);
}

Result<Value> string_method(const Value& self, const std::string& name, CallArgs& args) {
  const std::string& text = self.as_string();
  if (name == "replace") {
    MS_ASSIGN_OR_RETURN(auto bound, bind_args(name, args, {"old", "new", "count"}, 2));
    MS_ASSIGN_OR_RETURN(std::string old_text, string_arg(name, bound[0], ""));
    MS_ASSIGN_OR_RETURN(std::string new_text, string_arg(name, bound[1], ""));
    MS_ASSIGN_OR_RETURN(int64_t count, int_arg(name, bound[2], -1));
    return Value(replace_text(text, old_text, new_text, count));
  }
  if (name == "find" || name == "rfind" || name == "count" || name == "index") {
    MS_ASSIGN_OR_RETURN(auto bound, bind_args(name, args, {"sub"}, 1));
    MS_ASSIGN_OR_RETURN(std::string sub, string_arg(name, bound[0], ""));
    if (name == "count") {
      if (sub.empty()) return Value(utf8_length(text) + 1);
      int64_t count = 0;
      for (size_t at = text.find(sub); at != std::string::npos; at = text.find(sub, at + sub.size())) ++count;
      return Value(count);
    }
    size_t at = name == "rfind" ? text.rfind(sub) : text.find(sub);
    if (at == std::string::npos) {
      if (name == "index") return make_error("substring not found");
      return Value(int64_t{-1});
    }
    return Value(utf8_length(std::string_view(text).substr(0, at)));
  }
  MS_ASSIGN_OR_RETURN(auto bound, bind_args(name, args, {}, 0));
  if (name == "upper") return Value(to_upper(text));
  if (name == "lower") return Value(to_lower(text));
  if (name == "title") return Value(to_title_python(text));
  if (name == "capitalize") return Value(capitalize_text(text));
  if (name == "splitlines") {
    ValueList lines;
    size_t start = 0;
    while (start < text.size()) {
      size_t end = text.find_first_of("\r\n", start);
      if (end == std::string::npos) end = text.size();
      lines.emplace_back(text.substr(start, end - start));
      start = end + ((end + 1 < text.size() && text[end] == '\r' && text[end + 1] == '\n') ? 2 : 1);
    }
    return Value(std::move(lines));
  }
  std::vector<char32_t> points = decode_utf8(text);
  auto all = [&](auto predicate) {
    return !points.empty() && std::all_of(points.begin(), points.end(), predicate);
  };
  if (name == "isspace") return Value(all(is_python_space));
  if (name == "isdigit") return Value(all([](char32_t c) { return c >= '0' && c <= '9'; }));
  if (name == "isalpha") return Value(all([](char32_t c) { return to_upper(encode_utf8({c})) != to_lower(encode_utf8({c})); }));
  if (name == "isupper") return Value(to_upper(text) == text && to_lower(text) != text);
  if (name == "islower") return Value(to_lower(text) == text && to_upper(text) != text);
  return make_error("str.{}() is not supported", name);
}

Result<Value> dict_method(const Value& self, const std::string& name, CallArgs& args) {
  const ValueDict& dict = self.as_dict();
  if (name == "get") {
    MS_ASSIGN_OR_RETURN(auto bound, bind_args(name, args, {"key", "default"}, 1));
    if (bound[0].is_string()) {
      if (const Value* value = dict.find(bound[0].as_string())) return *value;
    }
    return bound[1].is_undefined() ? Value(None{}) : bound[1];
  }
  MS_ASSIGN_OR_RETURN(auto bound, bind_args(name, args, {}, 0));
  ValueList out;
  for (const auto& [key, value] : dict.entries()) {
    if (name == "items") out.push_back(Value::tuple(ValueList{Value(key), value}));
    if (name == "keys") out.emplace_back(key);
    if (name == "values") out.push_back(value);
  }
  return Value(std::move(out));
}

Result<Value> list_method(const Value& self, const std::string& name, CallArgs& args) {
  MS_ASSIGN_OR_RETURN(auto bound, bind_args(name, args, {"value"}, 1));
  const ValueList& list = self.as_list();
  int64_t count = 0;
  for (size_t i = 0; i < list.size(); ++i) {
    if (!values_equal(list[i], bound[0])) continue;
    if (name == "index") return Value(static_cast<int64_t>(i));
    ++count;
  }
  if (name == "index") return make_error("{} is not in list", to_repr(bound[0]));
  return Value(count);
}

Result<Value> refuse_mutation(const Value& self, const std::string& name, CallArgs&) {
  return make_error("access to attribute '{}' of '{}' object is unsafe (templates cannot modify values; use "
                    "namespace() attributes)", name, self.type_name());
}

bool one_of(const std::string& name, std::initializer_list<const char*> names) {
  return std::any_of(names.begin(), names.end(), [&](const char* candidate) { return name == candidate; });
}

}  // namespace

Value bound_method(const Value& self, const std::string& name) {
  if (self.is_string()) {
    if (one_of(name, {"strip", "lstrip", "rstrip"})) return make_method(self, name, strip_method);
    if (one_of(name, {"split", "rsplit"})) return make_method(self, name, split_method);
    if (one_of(name, {"startswith", "endswith"})) return make_method(self, name, affix_method);
    if (one_of(name, {"replace", "find", "rfind", "count", "index", "upper", "lower", "title", "capitalize",
                      "splitlines", "isspace", "isdigit", "isalpha", "isupper", "islower"})) {
      return make_method(self, name, string_method);
    }
  } else if (self.is_dict()) {
    if (one_of(name, {"items", "keys", "values", "get"})) return make_method(self, name, dict_method);
    if (one_of(name, {"update", "pop", "popitem", "setdefault", "clear"})) {
      return make_method(self, name, refuse_mutation);
    }
  } else if (self.is_list()) {
    if (one_of(name, {"index", "count"})) return make_method(self, name, list_method);
    if (one_of(name, {"append", "extend", "insert", "pop", "remove", "clear", "sort", "reverse"})) {
      return make_method(self, name, refuse_mutation);
    }
  }
  return Value(Undefined{});
}

}  // namespace moeserve::chat
