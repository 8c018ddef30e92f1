// Global functions available to templates: jinja2's range, dict, namespace, plus what
// transformers adds: raise_exception(message) (refuses the conversation) and
// strftime_now(format) (the current local time, or the time a caller pinned; used by the
// Llama-3.x and GPT-OSS templates).
#include <ctime>

#include "tokenizer/chat/builtins.h"
#include "tokenizer/chat/call_args.h"

namespace moeserve::chat {

namespace {

Value make_global(const std::string& name, std::function<Result<Value>(Interpreter&, CallArgs&)> function) {
  auto callable = std::make_shared<Callable>();
  callable->name = name;
  callable->function = std::move(function);
  return Value(std::shared_ptr<const Callable>(std::move(callable)));
}

Result<Value> range_function(Interpreter& interpreter, CallArgs& args) {
  if (!args.keyword.empty()) return make_error("range() takes no keyword arguments");
  if (args.positional.empty() || args.positional.size() > 3) return make_error("range expected 1 to 3 arguments");
  std::vector<int64_t> numbers;
  for (const Value& value : args.positional) {
    if (!value.is_int() && !value.is_bool()) {
      return make_error("'{}' object cannot be interpreted as an integer", value.type_name());
    }
    numbers.push_back(value.as_integer());
  }
  int64_t start = numbers.size() == 1 ? 0 : numbers[0];
  int64_t stop = numbers.size() == 1 ? numbers[0] : numbers[1];
  int64_t step = numbers.size() == 3 ? numbers[2] : 1;
  if (step == 0) return make_error("range() arg 3 must not be zero");
  __int128 span = step > 0 ? static_cast<__int128>(stop) - start : static_cast<__int128>(start) - stop;
  __int128 count = span <= 0 ? 0 : (span + (step > 0 ? step : -static_cast<__int128>(step)) - 1) /
                                       (step > 0 ? step : -static_cast<__int128>(step));
  if (count > interpreter.limits().max_loop_iterations) {
    return make_error("range() of {} items exceeds the template loop limit", static_cast<int64_t>(count));
  }
  MS_RETURN_IF_ERROR(interpreter.charge(static_cast<int64_t>(count)));
  ValueList items;
  items.reserve(static_cast<size_t>(count));
  for (int64_t i = 0; i < static_cast<int64_t>(count); ++i) items.emplace_back(start + i * step);
  return Value(std::move(items));
}

// dict(mapping, **kwargs) / namespace(mapping, **kwargs).
Result<ValueDict> dict_from_args(const std::string& name, CallArgs& args) {
  ValueDict dict;
  if (args.positional.size() > 1) return make_error("{}() expected at most 1 positional argument", name);
  if (!args.positional.empty()) {
    const Value& source = args.positional[0];
    if (source.is_dict()) {
      for (const auto& [key, value] : source.as_dict().entries()) dict.set(key, value);
    } else if (source.is_list()) {
      for (const Value& pair : source.as_list()) {
        if (!pair.is_list() || pair.as_list().size() != 2 || !pair.as_list()[0].is_string()) {
          return make_error("{}(): expected (key, value) pairs with string keys", name);
        }
        dict.set(pair.as_list()[0].as_string(), pair.as_list()[1]);
      }
    } else if (!source.is_undefined()) {
      return make_error("{}(): cannot build a mapping from {}", name, source.type_name());
    }
  }
  for (const auto& [key, value] : args.keyword) dict.set(key, value);
  return dict;
}

}  // namespace

void add_global_functions(Scope& scope, const std::optional<std::tm>& now) {
  scope.set("range", make_global("range", range_function));
  scope.set("dict", make_global("dict", [](Interpreter&, CallArgs& args) -> Result<Value> {
    MS_ASSIGN_OR_RETURN(ValueDict dict, dict_from_args("dict", args));
    return Value(std::move(dict));
  }));
  scope.set("namespace", make_global("namespace", [](Interpreter&, CallArgs& args) -> Result<Value> {
    MS_ASSIGN_OR_RETURN(ValueDict dict, dict_from_args("namespace", args));
    auto ns = std::make_shared<Namespace>();
    ns->attributes = std::move(dict);
    return Value(std::move(ns));
  }));
  scope.set("raise_exception", make_global("raise_exception", [](Interpreter&, CallArgs& args) -> Result<Value> {
    MS_ASSIGN_OR_RETURN(auto bound, bind_args("raise_exception", args, {"message"}, 0));
    return make_error("{}{}", kTemplateRaisedPrefix, to_display_string(bound[0]));
  }));
  scope.set("strftime_now", make_global("strftime_now", [now](Interpreter&, CallArgs& args) -> Result<Value> {
    MS_ASSIGN_OR_RETURN(auto bound, bind_args("strftime_now", args, {"format"}, 1));
    if (!bound[0].is_string()) return make_error("strftime_now(): format must be a string");
    std::tm local{};
    if (now) {
      local = *now;
    } else {
      std::time_t clock = std::time(nullptr);
      localtime_r(&clock, &local);
    }
    char buffer[512];
    size_t length = std::strftime(buffer, sizeof(buffer), bound[0].as_string().c_str(), &local);
    return Value(std::string(buffer, length));
  }));
}

}  // namespace moeserve::chat
