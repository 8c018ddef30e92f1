// Text forms of values: Python str()/repr() (what `{{ x }}` prints) and json.dumps (what
// transformers' `tojson` filter produces: ensure_ascii=False, separators ", " and ": ").
#include <charconv>
#include <cmath>
#include <cstdio>

#include "tokenizer/chat/text_utils.h"
#include "tokenizer/chat/value.h"

namespace moeserve::chat {

std::string format_python_float(double value) {
  if (std::isnan(value)) return "nan";
  if (std::isinf(value)) return value > 0 ? "inf" : "-inf";
  // Shortest round-trip digits in scientific form, then laid out as Python's repr does:
  // positional when -4 <= exponent < 16, scientific otherwise.
  char buffer[64];
  auto [end, ec] = std::to_chars(buffer, buffer + sizeof(buffer), value, std::chars_format::scientific);
  std::string scientific(buffer, end);
  bool negative = scientific[0] == '-';
  if (negative) scientific.erase(0, 1);
  size_t e_pos = scientific.find('e');
  std::string mantissa = scientific.substr(0, e_pos);
  int exponent = std::stoi(scientific.substr(e_pos + 1));
  std::string digits;
  for (char c : mantissa) {
    if (c != '.') digits.push_back(c);
  }
  std::string out = negative ? "-" : "";
  if (exponent >= -4 && exponent < 16) {
    if (exponent >= 0) {
      size_t integer_digits = static_cast<size_t>(exponent) + 1;
      if (digits.size() <= integer_digits) {
        out += digits + std::string(integer_digits - digits.size(), '0') + ".0";
      } else {
        out += digits.substr(0, integer_digits) + "." + digits.substr(integer_digits);
      }
    } else {
      out += "0." + std::string(static_cast<size_t>(-exponent - 1), '0') + digits;
    }
    return out;
  }
  out += digits.substr(0, 1);
  if (digits.size() > 1) out += "." + digits.substr(1);
  char exponent_text[16];
  std::snprintf(exponent_text, sizeof(exponent_text), "e%c%02d", exponent < 0 ? '-' : '+', std::abs(exponent));
  return out + exponent_text;
}

namespace {

// Python's repr of a str: single quotes unless the text has ' and no ".
std::string repr_string(const std::string& text) {
  bool has_single = text.find('\'') != std::string::npos;
  bool has_double = text.find('"') != std::string::npos;
  char quote = (has_single && !has_double) ? '"' : '\'';
  std::string out(1, quote);
  for (char32_t c : decode_utf8(text)) {
    if (c == static_cast<char32_t>(quote) || c == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c == 0x7F) {
      char hex[8];
      std::snprintf(hex, sizeof(hex), "\\x%02x", static_cast<unsigned>(c));
      out += hex;
    } else {
      append_utf8(out, c);
    }
  }
  out.push_back(quote);
  return out;
}

}  // namespace

std::string to_repr(const Value& value) {
  switch (value.kind()) {
    case ValueKind::kString:
      return repr_string(value.as_string());
    case ValueKind::kList: {
      std::string out = value.is_tuple() ? "(" : "[";
      bool first = true;
      for (const Value& item : value.as_list()) {
        if (!first) out += ", ";
        first = false;
        out += to_repr(item);
      }
      if (value.is_tuple()) return out + (value.as_list().size() == 1 ? ",)" : ")");
      return out + "]";
    }
    case ValueKind::kDict: {
      std::string out = "{";
      bool first = true;
      for (const auto& [key, item] : value.as_dict().entries()) {
        if (!first) out += ", ";
        first = false;
        out += repr_string(key) + ": " + to_repr(item);
      }
      return out + "}";
    }
    default:
      return to_display_string(value);
  }
}

std::string to_display_string(const Value& value) {
  switch (value.kind()) {
    case ValueKind::kUndefined:
      return "";
    case ValueKind::kNone:
      return "None";
    case ValueKind::kBool:
      return value.as_bool() ? "True" : "False";
    case ValueKind::kInt:
      return std::to_string(value.as_int());
    case ValueKind::kFloat:
      return format_python_float(value.as_double());
    case ValueKind::kString:
      return value.as_string();
    case ValueKind::kList:
    case ValueKind::kDict:
      return to_repr(value);
    case ValueKind::kNamespace: {
      std::string out = "<Namespace {";
      bool first = true;
      for (const auto& [key, item] : value.as_namespace().attributes.entries()) {
        if (!first) out += ", ";
        first = false;
        out += repr_string(key) + ": " + to_repr(item);
      }
      return out + "}>";
    }
    case ValueKind::kCallable:
      return "<function " + value.as_callable().name + ">";
  }
  return "";
}

namespace {

void append_json_string(std::string& out, const std::string& text, bool ensure_ascii) {
  out.push_back('"');
  for (char32_t c : decode_utf8(text)) {
    switch (c) {
      case '"': out += "\\\""; continue;
      case '\\': out += "\\\\"; continue;
      case '\n': out += "\\n"; continue;
      case '\r': out += "\\r"; continue;
      case '\t': out += "\\t"; continue;
      case '\b': out += "\\b"; continue;
      case '\f': out += "\\f"; continue;
      default: break;
    }
    char hex[16];
    if (c < 0x20 || (ensure_ascii && c >= 0x7F)) {
      if (c >= 0x10000) {
        char32_t offset = c - 0x10000;
        std::snprintf(hex, sizeof(hex), "\\u%04x\\u%04x", static_cast<unsigned>(0xD800 + (offset >> 10)),
                      static_cast<unsigned>(0xDC00 + (offset & 0x3FF)));
      } else {
        std::snprintf(hex, sizeof(hex), "\\u%04x", static_cast<unsigned>(c));
      }
      out += hex;
    } else {
      append_utf8(out, c);
    }
  }
  out.push_back('"');
}

Status append_json(std::string& out, const Value& value, const JsonDumpOptions& options, int depth) {
  if (depth > 512) return make_error("tojson: value nested too deeply");
  std::string newline_indent;
  std::string inner_indent;
  if (options.has_indent) {
    newline_indent = "\n";
    for (int level = 0; level < depth; ++level) newline_indent += options.indent;
    inner_indent = newline_indent + options.indent;
  }
  switch (value.kind()) {
    case ValueKind::kNone: out += "null"; return ok_status();
    case ValueKind::kBool: out += value.as_bool() ? "true" : "false"; return ok_status();
    case ValueKind::kInt: out += std::to_string(value.as_int()); return ok_status();
    case ValueKind::kFloat: {
      double number = value.as_double();
      if (std::isnan(number)) out += "NaN";
      else if (std::isinf(number)) out += number > 0 ? "Infinity" : "-Infinity";
      else out += format_python_float(number);
      return ok_status();
    }
    case ValueKind::kString: append_json_string(out, value.as_string(), options.ensure_ascii); return ok_status();
    case ValueKind::kList: {
      const ValueList& list = value.as_list();
      if (list.empty()) { out += "[]"; return ok_status(); }
      out.push_back('[');
      for (size_t i = 0; i < list.size(); ++i) {
        out += i == 0 ? inner_indent : options.item_separator + inner_indent;
        MS_RETURN_IF_ERROR(append_json(out, list[i], options, depth + 1));
      }
      out += newline_indent + "]";
      return ok_status();
    }
    case ValueKind::kDict: {
      auto entries = value.as_dict().entries();
      if (entries.empty()) { out += "{}"; return ok_status(); }
      if (options.sort_keys) {
        std::stable_sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
      }
      out.push_back('{');
      for (size_t i = 0; i < entries.size(); ++i) {
        out += i == 0 ? inner_indent : options.item_separator + inner_indent;
        append_json_string(out, entries[i].first, options.ensure_ascii);
        out += options.key_separator;
        MS_RETURN_IF_ERROR(append_json(out, entries[i].second, options, depth + 1));
      }
      out += newline_indent + "}";
      return ok_status();
    }
    case ValueKind::kUndefined:
    case ValueKind::kNamespace:
    case ValueKind::kCallable:
      break;
  }
  return make_error("Object of type {} is not JSON serializable", value.type_name());
}

}  // namespace

Result<std::string> to_json_text(const Value& value, const JsonDumpOptions& options) {
  std::string out;
  MS_RETURN_IF_ERROR(append_json(out, value, options, 0));
  return out;
}

}  // namespace moeserve::chat
