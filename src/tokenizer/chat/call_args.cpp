// Python-style argument binding for builtin filters, tests, methods and globals.
#include "tokenizer/chat/call_args.h"

namespace moeserve::chat {

Result<std::vector<Value>> bind_args(const std::string& function, const CallArgs& args,
                                     std::initializer_list<const char*> names, size_t required) {
  std::vector<const char*> name_list(names);
  if (args.positional.size() > name_list.size()) {
    return make_error("{}() takes at most {} argument(s) ({} given)", function, name_list.size(),
                      args.positional.size());
  }
  std::vector<Value> bound(name_list.size());
  std::vector<bool> given(name_list.size(), false);
  for (size_t i = 0; i < args.positional.size(); ++i) {
    bound[i] = args.positional[i];
    given[i] = true;
  }
  for (const auto& [key, value] : args.keyword) {
    size_t index = 0;
    while (index < name_list.size() && key != name_list[index]) ++index;
    if (index == name_list.size()) return make_error("{}() got an unexpected keyword argument '{}'", function, key);
    if (given[index]) return make_error("{}() got multiple values for argument '{}'", function, key);
    bound[index] = value;
    given[index] = true;
  }
  for (size_t i = 0; i < required; ++i) {
    if (!given[i]) return make_error("{}() missing required argument '{}'", function, name_list[i]);
  }
  return bound;
}

Result<int64_t> int_arg(const std::string& function, const Value& value, int64_t fallback) {
  if (value.is_undefined()) return fallback;
  if (value.is_int() || value.is_bool()) return value.as_integer();
  return make_error("{}(): expected an integer argument, got {}", function, value.type_name());
}

Result<std::string> string_arg(const std::string& function, const Value& value, const std::string& fallback) {
  if (value.is_undefined()) return fallback;
  if (value.is_string()) return value.as_string();
  return make_error("{}(): expected a string argument, got {}", function, value.type_name());
}

}  // namespace moeserve::chat
