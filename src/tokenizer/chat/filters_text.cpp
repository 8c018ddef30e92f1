// Filters over strings and scalars: default, length, string, trim, upper/lower/title/
// capitalize, replace, int/float/abs/round, escape, indent, center, wordcount and transformers'
// tojson (json.dumps with ensure_ascii=False; indent, separators and sort_keys honoured).
#include <algorithm>
#include <cmath>

#include "tokenizer/chat/builtins.h"
#include "tokenizer/chat/call_args.h"
#include "tokenizer/chat/operations.h"
#include "tokenizer/chat/text_utils.h"

namespace moeserve::chat {

Result<int64_t> value_length(const Value& value) {
  switch (value.kind()) {
    case ValueKind::kUndefined: return 0;
    case ValueKind::kString: return utf8_length(value.as_string());
    case ValueKind::kList: return static_cast<int64_t>(value.as_list().size());
    case ValueKind::kDict: return static_cast<int64_t>(value.as_dict().size());
    default: return make_error("object of type '{}' has no len()", value.type_name());
  }
}

namespace {

Result<Value> tojson_filter(const Value& subject, CallArgs& args) {
  MS_ASSIGN_OR_RETURN(auto bound, bind_args("tojson", args, {"ensure_ascii", "indent", "separators", "sort_keys"}, 0));
  JsonDumpOptions options;
  options.ensure_ascii = bound[0].truthy();
  if (!bound[1].is_undefined() && !bound[1].is_none()) {
    options.has_indent = true;
    if (bound[1].is_string()) {
      options.indent = bound[1].as_string();
    } else if (bound[1].is_int()) {
      options.indent = std::string(static_cast<size_t>(std::max<int64_t>(0, std::min<int64_t>(bound[1].as_int(), 64))), ' ');
    } else {
      return make_error("tojson(): indent must be an int or a string");
    }
    options.item_separator = ",";
  }
  if (!bound[2].is_undefined() && !bound[2].is_none()) {
    if (!bound[2].is_list() || bound[2].as_list().size() != 2 || !bound[2].as_list()[0].is_string() ||
        !bound[2].as_list()[1].is_string()) {
      return make_error("tojson(): separators must be a pair of strings");
    }
    options.item_separator = bound[2].as_list()[0].as_string();
    options.key_separator = bound[2].as_list()[1].as_string();
  }
  options.sort_keys = bound[3].truthy();
  MS_ASSIGN_OR_RETURN(std::string text, to_json_text(subject, options));
  return Value(std::move(text));
}

std::string html_escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&#34;"; break;
      case '\'': out += "&#39;"; break;
      default: out.push_back(c);
    }
  }
  return out;
}

// jinja2's title filter: words begin after runs of '-', whitespace and opening brackets.
std::string jinja_title(const std::string& text) {
  std::string out;
  bool word_start = true;
  for (char32_t c : decode_utf8(text)) {
    bool separator = c == '-' || c == '(' || c == '{' || c == '[' || c == '<' || is_python_space(c);
    std::string piece;
    append_utf8(piece, c);
    if (separator) {
      out += piece;
      word_start = true;
    } else {
      out += word_start ? to_upper(piece) : to_lower(piece);
      word_start = false;
    }
  }
  return out;
}

Result<Value> indent_filter(const std::string& text, CallArgs& args) {
  MS_ASSIGN_OR_RETURN(auto bound, bind_args("indent", args, {"width", "first", "blank"}, 0));
  std::string indentation = bound[0].is_string() ? bound[0].as_string() : "";
  if (!bound[0].is_string()) {
    MS_ASSIGN_OR_RETURN(int64_t width, int_arg("indent", bound[0], 4));
    indentation = std::string(static_cast<size_t>(std::clamp<int64_t>(width, 0, 1024)), ' ');
  }
  // jinja2 appends a newline before splitting, so a trailing newline yields an empty last line.
  std::vector<std::string> lines;
  std::string source = text + "\n";
  for (size_t start = 0; start < source.size();) {
    size_t end = source.find('\n', start);
    lines.push_back(source.substr(start, end - start));
    start = end + 1;
  }
  std::string out;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (i > 0) out += "\n";
    bool indent_line = i > 0 && (bound[2].truthy() || !lines[i].empty());
    out += (indent_line ? indentation : "") + lines[i];
  }
  if (bound[1].truthy()) out = indentation + out;
  return Value(std::move(out));
}

Result<Value> number_filter(const std::string& name, const Value& subject, CallArgs& args) {
  if (name == "int") {
    MS_ASSIGN_OR_RETURN(auto bound, bind_args("int", args, {"default", "base"}, 0));
    Value fallback = bound[0].is_undefined() ? Value(int64_t{0}) : bound[0];
    MS_ASSIGN_OR_RETURN(int64_t base, int_arg("int", bound[1], 10));
    if (subject.is_int() || subject.is_bool()) return Value(subject.as_integer());
    if (subject.is_float()) {
      double value = subject.as_double();
      if (!std::isfinite(value) || std::fabs(value) >= 9.2e18) return fallback;
      return Value(static_cast<int64_t>(value));
    }
    if (!subject.is_string()) return fallback;
    std::string text = strip_text(subject.as_string(), nullptr, StripSide::kBoth);
    try {
      size_t used = 0;
      int64_t value = std::stoll(text, &used, static_cast<int>(base));
      if (used == text.size()) return Value(value);
      double as_float = std::stod(text, &used);
      if (used == text.size() && std::isfinite(as_float)) return Value(static_cast<int64_t>(as_float));
    } catch (const std::exception&) {
    }
    return fallback;
  }
  if (name == "float") {
    MS_ASSIGN_OR_RETURN(auto bound, bind_args("float", args, {"default"}, 0));
    Value fallback = bound[0].is_undefined() ? Value(0.0) : bound[0];
    if (subject.is_number()) return Value(subject.as_double());
    if (!subject.is_string()) return fallback;
    std::string text = strip_text(subject.as_string(), nullptr, StripSide::kBoth);
    try {
      size_t used = 0;
      double value = std::stod(text, &used);
      if (used == text.size()) return Value(value);
    } catch (const std::exception&) {
    }
    return fallback;
  }
  if (!subject.is_number()) return make_error("{}: expected a number, got {}", name, subject.type_name());
  if (name == "abs") {
    if (subject.is_float()) return Value(std::fabs(subject.as_double()));
    if (subject.as_integer() == INT64_MIN) return make_error("integer overflow in abs");
    return Value(subject.as_integer() < 0 ? -subject.as_integer() : subject.as_integer());
  }
  MS_ASSIGN_OR_RETURN(auto bound, bind_args("round", args, {"precision", "method"}, 0));
  MS_ASSIGN_OR_RETURN(int64_t precision, int_arg("round", bound[0], 0));
  MS_ASSIGN_OR_RETURN(std::string method, string_arg("round", bound[1], "common"));
  double scale = std::pow(10.0, static_cast<double>(std::clamp<int64_t>(precision, -300, 300)));
  double scaled = subject.as_double() * scale;
  double rounded = method == "ceil" ? std::ceil(scaled) : method == "floor" ? std::floor(scaled) : std::nearbyint(scaled);
  if (method != "common" && method != "ceil" && method != "floor") {
    return make_error("round(): method must be 'common', 'ceil' or 'floor'");
  }
  return Value(rounded / scale);
}

}  // namespace

Result<std::optional<Value>> apply_text_filter(Interpreter& interpreter, const std::string& name,
                                               const Value& subject, CallArgs& args) {
  if (name == "default" || name == "d") {
    MS_ASSIGN_OR_RETURN(auto bound, bind_args(name, args, {"default_value", "boolean"}, 0));
    Value fallback = bound[0].is_undefined() ? Value(std::string()) : bound[0];
    if (subject.is_undefined() || (bound[1].truthy() && !subject.truthy())) return std::optional<Value>(fallback);
    return std::optional<Value>(subject);
  }
  if (name == "length" || name == "count") {
    MS_ASSIGN_OR_RETURN(int64_t length, value_length(subject));
    return std::optional<Value>(Value(length));
  }
  if (name == "tojson") {
    MS_ASSIGN_OR_RETURN(Value json, tojson_filter(subject, args));
    return std::optional<Value>(std::move(json));
  }
  if (name == "int" || name == "float" || name == "abs" || name == "round") {
    MS_ASSIGN_OR_RETURN(Value number, number_filter(name, subject, args));
    return std::optional<Value>(std::move(number));
  }
  static const char* kTextFilters[] = {"replace", "trim", "indent", "center", "string", "safe", "upper", "lower",
                                       "title", "capitalize", "escape", "e", "forceescape", "wordcount"};
  if (std::none_of(std::begin(kTextFilters), std::end(kTextFilters), [&](const char* known) { return name == known; })) {
    return std::optional<Value>();
  }
  std::string text = to_display_string(subject);
  if (name == "replace") {
    MS_ASSIGN_OR_RETURN(auto bound, bind_args(name, args, {"old", "new", "count"}, 2));
    int64_t count = -1;
    if (!bound[2].is_undefined() && !bound[2].is_none()) {
      MS_ASSIGN_OR_RETURN(count, int_arg(name, bound[2], -1));
    }
    std::string replaced = replace_text(text, to_display_string(bound[0]), to_display_string(bound[1]), count);
    MS_RETURN_IF_ERROR(interpreter.check_size(replaced.size()));
    return std::optional<Value>(Value(std::move(replaced)));
  }
  if (name == "trim") {
    MS_ASSIGN_OR_RETURN(auto bound, bind_args(name, args, {"chars"}, 0));
    std::optional<std::string> chars;
    if (bound[0].is_string()) chars = bound[0].as_string();
    return std::optional<Value>(Value(strip_text(text, chars ? &*chars : nullptr, StripSide::kBoth)));
  }
  if (name == "indent") {
    MS_ASSIGN_OR_RETURN(Value indented, indent_filter(text, args));
    MS_RETURN_IF_ERROR(interpreter.check_size(indented.as_string().size()));
    return std::optional<Value>(std::move(indented));
  }
  if (name == "center") {
    MS_ASSIGN_OR_RETURN(auto bound, bind_args(name, args, {"width"}, 0));
    MS_ASSIGN_OR_RETURN(int64_t width, int_arg(name, bound[0], 80));
    int64_t length = utf8_length(text);
    if (width > static_cast<int64_t>(interpreter.limits().max_value_size)) return make_error("center(): width too large");
    if (width <= length) return std::optional<Value>(Value(text));
    int64_t pad = width - length;
    int64_t left = pad / 2 + (pad & width & 1);
    return std::optional<Value>(Value(std::string(static_cast<size_t>(left), ' ') + text +
                                      std::string(static_cast<size_t>(pad - left), ' ')));
  }
  MS_ASSIGN_OR_RETURN(auto no_args, bind_args(name, args, {}, 0));
  if (name == "string" || name == "safe") return std::optional<Value>(Value(text));
  if (name == "upper") return std::optional<Value>(Value(to_upper(text)));
  if (name == "lower") return std::optional<Value>(Value(to_lower(text)));
  if (name == "title") return std::optional<Value>(Value(jinja_title(text)));
  if (name == "capitalize") return std::optional<Value>(Value(capitalize_text(text)));
  if (name == "escape" || name == "e" || name == "forceescape") return std::optional<Value>(Value(html_escape(text)));
  if (name == "wordcount") {
    int64_t words = 0;
    bool in_word = false;
    for (char32_t c : decode_utf8(text)) {
      bool word_char = c == '_' || (c < 0x80 ? std::isalnum(static_cast<int>(c)) != 0 : !is_python_space(c));
      if (word_char && !in_word) ++words;
      in_word = word_char;
    }
    return std::optional<Value>(Value(words));
  }
  return std::optional<Value>();
}

}  // namespace moeserve::chat
