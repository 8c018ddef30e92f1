// Jinja2 lexer (see lexer.h). Whitespace rules follow jinja2 3.x exactly: `-` strips all
// whitespace on that side; lstrip_blocks strips spaces/tabs before a `{%` or `{#` that starts
// its line (unless `{%+`); trim_blocks drops one newline after `%}` or `#}` (unless `+%}`).
#include "tokenizer/chat/lexer.h"

#include <algorithm>
#include <cctype>

#include "tokenizer/chat/text_utils.h"

namespace moeserve::chat {

namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

// Python str.rstrip() over UTF-8 (ASCII and Unicode whitespace).
std::string rstrip_whitespace(std::string_view text) { return strip_text(text, nullptr, StripSide::kRight); }

// Jinja2 normalizes every newline sequence to "\n" and drops one trailing newline.
std::string normalize_source(std::string_view source) {
  std::string out;
  out.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      out.push_back('\n');
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      out.push_back(source[i]);
    }
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

class Lexer {
 public:
  explicit Lexer(std::string_view source) : source_(normalize_source(source)) {
    line_starts_.push_back(0);
    for (size_t i = 0; i < source_.size(); ++i) {
      if (source_[i] == '\n') line_starts_.push_back(i + 1);
    }
  }

  Result<std::vector<Token>> run() {
    while (pos_ < source_.size()) MS_RETURN_IF_ERROR(lex_text_and_tag());
    add_token(TokenType::kEnd, "", pos_);
    return std::move(tokens_);
  }

 private:
  SourcePosition position_of(size_t offset) const {
    auto it = std::upper_bound(line_starts_.begin(), line_starts_.end(), offset);
    size_t line_index = static_cast<size_t>(it - line_starts_.begin()) - 1;
    return SourcePosition{static_cast<int>(line_index) + 1, static_cast<int>(offset - line_starts_[line_index]) + 1};
  }

  Error error_at(size_t offset, const std::string& message) const {
    SourcePosition position = position_of(offset);
    return make_error("template syntax error at line {}, column {}: {}", position.line, position.column, message);
  }

  void add_token(TokenType type, std::string text, size_t offset) {
    Token token;
    token.type = type;
    token.text = std::move(text);
    token.position = position_of(offset);
    tokens_.push_back(std::move(token));
  }

  // Skips whitespace after a `-` end marker; returns whether the consumed run ended a line.
  void skip_whitespace_after_tag() {
    while (pos_ < source_.size() && is_space(source_[pos_])) ++pos_;
  }

  // Emits the text before the next tag (applying the tag's left-side whitespace rule), then lexes the tag.
  Status lex_text_and_tag() {
    size_t tag = source_.find('{', pos_);
    while (tag != std::string::npos && tag + 1 < source_.size() && source_[tag + 1] != '{' &&
           source_[tag + 1] != '%' && source_[tag + 1] != '#') {
      tag = source_.find('{', tag + 1);
    }
    if (tag == std::string::npos || tag + 1 >= source_.size()) {
      add_token(TokenType::kText, source_.substr(pos_), pos_);
      pos_ = source_.size();
      return ok_status();
    }
    char kind = source_[tag + 1];
    char sign = tag + 2 < source_.size() ? source_[tag + 2] : '\0';
    std::string text = source_.substr(pos_, tag - pos_);
    if (sign == '-') {
      text = rstrip_whitespace(text);
    } else if (sign != '+' && kind != '{') {
      size_t line_begin = text.rfind('\n');
      line_begin = line_begin == std::string::npos ? 0 : line_begin + 1;
      bool only_blanks = line_begin < text.size() &&
                         std::all_of(text.begin() + static_cast<std::ptrdiff_t>(line_begin), text.end(), is_space);
      if ((line_begin > 0 || line_starting_) && only_blanks) text.resize(line_begin);
    }
    if (!text.empty()) add_token(TokenType::kText, std::move(text), pos_);
    pos_ = tag + 2 + ((sign == '-' || sign == '+') ? 1 : 0);
    if (kind == '#') return lex_comment(tag);
    return lex_tag(tag, kind == '%');
  }

  Status lex_comment(size_t begin) {
    size_t end = source_.find("#}", pos_);
    if (end == std::string::npos) return error_at(begin, "unclosed comment");
    char sign = end > pos_ ? source_[end - 1] : '\0';
    pos_ = end + 2;
    apply_block_end_rule(sign);
    return ok_status();
  }

  // After `%}` or `#}`: `-` strips whitespace, `+` keeps it, otherwise trim_blocks drops one newline.
  void apply_block_end_rule(char sign) {
    size_t before = pos_;
    if (sign == '-') {
      skip_whitespace_after_tag();
    } else if (sign != '+' && pos_ < source_.size() && source_[pos_] == '\n') {
      ++pos_;
    }
    line_starting_ = pos_ > before && source_[pos_ - 1] == '\n';
  }

  Status lex_tag(size_t begin, bool is_block) {
    add_token(is_block ? TokenType::kBlockBegin : TokenType::kVariableBegin, is_block ? "{%" : "{{", begin);
    size_t first_token = tokens_.size();
    int depth = 0;
    while (true) {
      while (pos_ < source_.size() && is_space(source_[pos_])) ++pos_;
      if (pos_ >= source_.size()) return error_at(begin, is_block ? "unclosed '{%' tag" : "unclosed '{{' tag");
      if (depth == 0 && try_lex_tag_end(is_block)) break;
      MS_RETURN_IF_ERROR(lex_expression_token(depth));
    }
    if (is_block && tokens_.size() == first_token + 2 && tokens_[first_token].type == TokenType::kName &&
        tokens_[first_token].text == "raw") {
      return lex_raw(begin, first_token);
    }
    return ok_status();
  }

  // Recognizes `}}`/`%}` with an optional `-`/`+` marker at pos_; consumes it and what it trims.
  bool try_lex_tag_end(bool is_block) {
    const char* close = is_block ? "%}" : "}}";
    char sign = source_[pos_];
    size_t marker = (sign == '-' || (sign == '+' && is_block)) ? 1 : 0;
    if (source_.compare(pos_ + marker, 2, close) != 0) return false;
    add_token(is_block ? TokenType::kBlockEnd : TokenType::kVariableEnd, close, pos_);
    pos_ += marker + 2;
    if (is_block) {
      apply_block_end_rule(marker ? sign : '\0');
    } else {
      size_t before = pos_;
      if (marker) skip_whitespace_after_tag();
      line_starting_ = pos_ > before && source_[pos_ - 1] == '\n';
    }
    return true;
  }

  // `{% raw %}...{% endraw %}`: the body is literal text.
  Status lex_raw(size_t begin, size_t first_token) {
    tokens_.resize(first_token - 1);
    size_t search = pos_;
    while (true) {
      size_t tag = source_.find("{%", search);
      if (tag == std::string::npos) return error_at(begin, "missing '{% endraw %}'");
      size_t cursor = tag + 2;
      char sign = cursor < source_.size() ? source_[cursor] : '\0';
      if (sign == '-' || sign == '+') ++cursor;
      while (cursor < source_.size() && is_space(source_[cursor])) ++cursor;
      if (source_.compare(cursor, 6, "endraw") != 0) {
        search = tag + 2;
        continue;
      }
      cursor += 6;
      while (cursor < source_.size() && is_space(source_[cursor])) ++cursor;
      char end_sign = cursor < source_.size() ? source_[cursor] : '\0';
      if (end_sign == '-' || end_sign == '+') ++cursor;
      if (source_.compare(cursor, 2, "%}") != 0) return error_at(tag, "malformed '{% endraw %}'");
      std::string text = source_.substr(pos_, tag - pos_);
      if (sign == '-') text = rstrip_whitespace(text);
      if (!text.empty()) add_token(TokenType::kText, std::move(text), pos_);
      pos_ = cursor + 2;
      apply_block_end_rule((end_sign == '-' || end_sign == '+') ? end_sign : '\0');
      return ok_status();
    }
  }

  Status lex_expression_token(int& depth) {
    size_t start = pos_;
    char c = source_[pos_];
    if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      while (pos_ < source_.size() &&
             (std::isalnum(static_cast<unsigned char>(source_[pos_])) || source_[pos_] == '_')) {
        ++pos_;
      }
      add_token(TokenType::kName, source_.substr(start, pos_ - start), start);
      return ok_status();
    }
    if (std::isdigit(static_cast<unsigned char>(c))) return lex_number();
    if (c == '\'' || c == '"') return lex_string();
    static const char* kTwoCharOperators[] = {"//", "**", "==", "!=", ">=", "<="};
    for (const char* op : kTwoCharOperators) {
      if (source_.compare(pos_, 2, op) == 0) {
        add_token(TokenType::kOperator, op, start);
        pos_ += 2;
        return ok_status();
      }
    }
    static const std::string kOneCharOperators = "+-/*%~[](){}<>=.:|,;";
    if (kOneCharOperators.find(c) == std::string::npos) {
      return error_at(start, std::string("unexpected character '") + c + "'");
    }
    if (c == '(' || c == '[' || c == '{') ++depth;
    if (c == ')' || c == ']' || c == '}') {
      if (depth == 0) return error_at(start, std::string("unexpected '") + c + "'");
      --depth;
    }
    add_token(TokenType::kOperator, std::string(1, c), start);
    ++pos_;
    return ok_status();
  }

  size_t scan_digits(size_t at) const {
    while (at < source_.size() && (std::isdigit(static_cast<unsigned char>(source_[at])) ||
                                   (source_[at] == '_' && at + 1 < source_.size() &&
                                    std::isdigit(static_cast<unsigned char>(source_[at + 1]))))) {
      ++at;
    }
    return at;
  }

  Status lex_number() {
    size_t start = pos_;
    size_t end = scan_digits(pos_);
    bool is_float = false;
    if (end + 1 < source_.size() && source_[end] == '.' && std::isdigit(static_cast<unsigned char>(source_[end + 1]))) {
      end = scan_digits(end + 1);
      is_float = true;
    }
    if (end < source_.size() && (source_[end] == 'e' || source_[end] == 'E')) {
      size_t exponent = end + 1;
      if (exponent < source_.size() && (source_[exponent] == '+' || source_[exponent] == '-')) ++exponent;
      if (exponent < source_.size() && std::isdigit(static_cast<unsigned char>(source_[exponent]))) {
        end = scan_digits(exponent);
        is_float = true;
      }
    }
    std::string digits;
    for (size_t i = start; i < end; ++i) {
      if (source_[i] != '_') digits.push_back(source_[i]);
    }
    pos_ = end;
    add_token(is_float ? TokenType::kFloat : TokenType::kInteger, digits, start);
    try {
      if (is_float) {
        tokens_.back().float_value = std::stod(digits);
      } else {
        tokens_.back().int_value = std::stoll(digits);
      }
    } catch (const std::exception&) {
      return error_at(start, "number literal out of range: " + digits);
    }
    return ok_status();
  }

  Status lex_string() {
    size_t start = pos_;
    char quote = source_[pos_++];
    std::string value;
    while (true) {
      if (pos_ >= source_.size()) return error_at(start, "unterminated string literal");
      char c = source_[pos_++];
      if (c == quote) break;
      if (c != '\\') {
        value.push_back(c);
        continue;
      }
      if (pos_ >= source_.size()) return error_at(start, "unterminated string literal");
      MS_RETURN_IF_ERROR(decode_escape(value, start));
    }
    add_token(TokenType::kString, std::move(value), start);
    return ok_status();
  }

  // Python's unicode-escape decoding of one escape (pos_ is just past the backslash).
  Status decode_escape(std::string& value, size_t string_start) {
    char c = source_[pos_++];
    switch (c) {
      case '\n': return ok_status();
      case '\\': value.push_back('\\'); return ok_status();
      case '\'': value.push_back('\''); return ok_status();
      case '"': value.push_back('"'); return ok_status();
      case 'a': value.push_back('\a'); return ok_status();
      case 'b': value.push_back('\b'); return ok_status();
      case 'f': value.push_back('\f'); return ok_status();
      case 'n': value.push_back('\n'); return ok_status();
      case 'r': value.push_back('\r'); return ok_status();
      case 't': value.push_back('\t'); return ok_status();
      case 'v': value.push_back('\v'); return ok_status();
      default: break;
    }
    if (c >= '0' && c <= '7') {
      unsigned code = static_cast<unsigned>(c - '0');
      for (int i = 0; i < 2 && pos_ < source_.size() && source_[pos_] >= '0' && source_[pos_] <= '7'; ++i) {
        code = code * 8 + static_cast<unsigned>(source_[pos_++] - '0');
      }
      append_utf8(value, code);
      return ok_status();
    }
    int hex_digits = c == 'x' ? 2 : c == 'u' ? 4 : c == 'U' ? 8 : 0;
    if (hex_digits == 0) {
      value.push_back('\\');
      value.push_back(c);
      return ok_status();
    }
    if (pos_ + static_cast<size_t>(hex_digits) > source_.size()) return error_at(string_start, "truncated \\x/\\u escape");
    uint32_t code = 0;
    for (int i = 0; i < hex_digits; ++i) {
      char digit = source_[pos_++];
      if (!std::isxdigit(static_cast<unsigned char>(digit))) return error_at(string_start, "truncated \\x/\\u escape");
      code = code * 16 + static_cast<uint32_t>(std::isdigit(static_cast<unsigned char>(digit)) ? digit - '0'
                                                                                              : std::tolower(digit) - 'a' + 10);
    }
    if (code > 0x10FFFF) return error_at(string_start, "illegal Unicode character in escape");
    append_utf8(value, code);
    return ok_status();
  }

  std::string source_;
  std::vector<size_t> line_starts_;
  std::vector<Token> tokens_;
  size_t pos_ = 0;
  bool line_starting_ = true;
};

}  // namespace

Result<std::vector<Token>> tokenize_template(std::string_view source) { return Lexer(source).run(); }

}  // namespace moeserve::chat
