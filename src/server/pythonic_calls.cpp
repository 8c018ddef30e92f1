#include "server/pythonic_calls.h"

#include <cctype>
#include <charconv>
#include <optional>
#include <string>

#include "tokenizer/chat/text_utils.h"
#include "tokenizer/chat/value.h"

namespace moeserve {
namespace {

using chat::Value;

// A recursive-descent reader of the Python literal subset above; every reader returns nullopt
// (or false) where the text leaves it.
class LiteralReader {
 public:
  explicit LiteralReader(std::string_view text) : text_(text) {}

  bool calls(std::vector<ToolCall>& out, bool ensure_ascii) {
    if (!take('[')) return false;
    skip_space();
    if (take(']')) return false;  // an empty list calls nothing
    std::vector<ToolCall> calls;
    for (;;) {
      std::optional<ToolCall> call = one_call(ensure_ascii);
      if (!call) return false;
      calls.push_back(std::move(*call));
      skip_space();
      if (take(']')) break;
      if (!take(',')) return false;
      skip_space();
    }
    skip_space();
    if (at_ != text_.size()) return false;
    out.insert(out.end(), calls.begin(), calls.end());
    return true;
  }

 private:
  static constexpr int kMaxDepth = 64;

  void skip_space() {
    while (at_ < text_.size() && std::isspace(static_cast<unsigned char>(text_[at_]))) ++at_;
  }
  bool take(char c) {
    if (at_ < text_.size() && text_[at_] == c) {
      ++at_;
      return true;
    }
    return false;
  }
  bool take(std::string_view word) {
    if (text_.substr(at_).starts_with(word)) {
      at_ += word.size();
      return true;
    }
    return false;
  }
  std::string identifier() {
    const size_t begin = at_;
    if (at_ < text_.size() && (std::isalpha(static_cast<unsigned char>(text_[at_])) || text_[at_] == '_')) {
      ++at_;
      while (at_ < text_.size() && (std::isalnum(static_cast<unsigned char>(text_[at_])) || text_[at_] == '_')) ++at_;
    }
    return std::string(text_.substr(begin, at_ - begin));
  }

  std::optional<ToolCall> one_call(bool ensure_ascii) {
    std::string name = identifier();
    if (name.empty()) return std::nullopt;
    skip_space();
    if (!take('(')) return std::nullopt;
    chat::ValueDict arguments;
    skip_space();
    while (!take(')')) {
      std::string key = identifier();
      skip_space();
      if (key.empty() || !take('=')) return std::nullopt;  // positional arguments included
      skip_space();
      std::optional<Value> value = literal(0);
      if (!value) return std::nullopt;
      arguments.set(std::move(key), std::move(*value));
      skip_space();
      if (take(')')) break;
      if (!take(',')) return std::nullopt;
      skip_space();
    }
    chat::JsonDumpOptions options;
    options.ensure_ascii = ensure_ascii;
    auto text = chat::to_json_text(Value(std::move(arguments)), options);
    if (!text.ok()) return std::nullopt;
    return ToolCall{.name = std::move(name), .arguments = std::move(*text), .id = ""};
  }

  std::optional<Value> literal(int depth) {
    if (depth > kMaxDepth || at_ >= text_.size()) return std::nullopt;
    const char c = text_[at_];
    if (c == '\'' || c == '"') return string();
    if (c == '[') return list(depth);
    if (c == '{') return dict(depth);
    if (c == '-' || c == '.' || std::isdigit(static_cast<unsigned char>(c))) return number();
    if (take("True")) return Value(true);
    if (take("False")) return Value(false);
    if (take("None")) return Value(chat::None{});
    return std::nullopt;
  }

  std::optional<Value> list(int depth) {
    take('[');
    chat::ValueList items;
    skip_space();
    while (!take(']')) {
      std::optional<Value> item = literal(depth + 1);
      if (!item) return std::nullopt;
      items.push_back(std::move(*item));
      skip_space();
      if (take(']')) break;
      if (!take(',')) return std::nullopt;
      skip_space();
    }
    return Value(std::move(items));
  }

  // json.dumps writes an integer key as its digits; other keys than strings and integers are
  // left unread.
  std::optional<Value> dict(int depth) {
    take('{');
    chat::ValueDict entries;
    skip_space();
    while (!take('}')) {
      std::optional<Value> key = literal(depth + 1);
      if (!key || !(key->is_string() || key->is_int())) return std::nullopt;
      skip_space();
      if (!take(':')) return std::nullopt;
      skip_space();
      std::optional<Value> value = literal(depth + 1);
      if (!value) return std::nullopt;
      entries.set(key->is_string() ? key->as_string() : std::to_string(key->as_int()), std::move(*value));
      skip_space();
      if (take('}')) break;
      if (!take(',')) return std::nullopt;
      skip_space();
    }
    return Value(std::move(entries));
  }

  std::optional<Value> number() {
    const size_t begin = at_;
    take('-');
    bool is_float = false;
    const auto digits = [&] {
      const size_t from = at_;
      while (at_ < text_.size() && std::isdigit(static_cast<unsigned char>(text_[at_]))) ++at_;
      return at_ > from;
    };
    bool any = digits();
    if (take('.')) {
      is_float = true;
      any = digits() || any;
    }
    if (!any) return std::nullopt;
    if (at_ < text_.size() && (text_[at_] == 'e' || text_[at_] == 'E')) {
      is_float = true;
      ++at_;
      if (!take('+')) take('-');
      if (!digits()) return std::nullopt;
    }
    const std::string_view token = text_.substr(begin, at_ - begin);
    if (is_float) {
      double value = 0;
      const auto [end, error] = std::from_chars(token.data(), token.data() + token.size(), value);
      if (error != std::errc() || end != token.data() + token.size()) return std::nullopt;
      return Value(value);
    }
    int64_t value = 0;
    const auto [end, error] = std::from_chars(token.data(), token.data() + token.size(), value);
    if (error != std::errc() || end != token.data() + token.size()) return std::nullopt;  // past int64 too
    return Value(value);
  }

  // A string literal: '...' or "..." (or tripled), with Python's escapes; an unknown escape keeps
  // its backslash, as Python's does.
  std::optional<Value> string() {
    const char quote = text_[at_];
    const bool triple = text_.substr(at_).starts_with(std::string(3, quote));
    at_ += triple ? 3 : 1;
    std::string out;
    for (;;) {
      if (at_ >= text_.size()) return std::nullopt;
      const char c = text_[at_];
      if (c == quote && (!triple || text_.substr(at_).starts_with(std::string(3, quote)))) {
        at_ += triple ? 3 : 1;
        return Value(std::move(out));
      }
      if (c == '\n' && !triple) return std::nullopt;
      ++at_;
      if (c != '\\') {
        out.push_back(c);
        continue;
      }
      if (at_ >= text_.size()) return std::nullopt;
      const char e = text_[at_++];
      switch (e) {
        case '\n':
          break;  // a line continuation
        case '\\':
          out.push_back('\\');
          break;
        case '\'':
          out.push_back('\'');
          break;
        case '"':
          out.push_back('"');
          break;
        case 'n':
          out.push_back('\n');
          break;
        case 't':
          out.push_back('\t');
          break;
        case 'r':
          out.push_back('\r');
          break;
        case 'b':
          out.push_back('\b');
          break;
        case 'f':
          out.push_back('\f');
          break;
        case 'v':
          out.push_back('\v');
          break;
        case 'a':
          out.push_back('\a');
          break;
        case '0':
          out.push_back('\0');
          break;
        case 'x':
        case 'u':
        case 'U': {
          const size_t width = e == 'x' ? 2 : e == 'u' ? 4 : 8;
          if (at_ + width > text_.size()) return std::nullopt;
          uint32_t code = 0;
          const auto [end, error] = std::from_chars(text_.data() + at_, text_.data() + at_ + width, code, 16);
          if (error != std::errc() || end != text_.data() + at_ + width || code > 0x10FFFF) return std::nullopt;
          at_ += width;
          chat::append_utf8(out, static_cast<char32_t>(code));
          break;
        }
        default:
          out.push_back('\\');
          out.push_back(e);
      }
    }
  }

  std::string_view text_;
  size_t at_ = 0;
};

}  // namespace

bool pythonic_calls(std::string_view text, bool ensure_ascii, std::vector<ToolCall>& out) {
  return LiteralReader(text).calls(out, ensure_ascii);
}

}  // namespace moeserve
