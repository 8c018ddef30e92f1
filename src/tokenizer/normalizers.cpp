// Normalizer implementations and their tokenizer.json parsing (see
// normalizers.h).
#include "tokenizer/normalizers.h"

#include <algorithm>
#include <cstdlib>
#include <vector>

#include <utf8proc.h>

#include "tokenizer/json_fields.h"
#include "tokenizer/regex.h"
#include "tokenizer/unicode_utils.h"

namespace moeserve::tok {

namespace {

class UnicodeNormalizer final : public Normalizer {
public:
  explicit UnicodeNormalizer(int options) : options_(options) {}
  void normalize(std::string &text) const override {
    // ASCII has no decompositions or compatibility mappings: NFC/NFD/NFKC/NFKD
    // leave it as is.
    if (std::all_of(text.begin(), text.end(), [](char c) {
          return static_cast<unsigned char>(c) < 0x80;
        }))
      return;
    utf8proc_uint8_t *mapped = nullptr;
    const utf8proc_ssize_t length =
        utf8proc_map(reinterpret_cast<const utf8proc_uint8_t *>(text.data()),
                     static_cast<utf8proc_ssize_t>(text.size()), &mapped,
                     static_cast<utf8proc_option_t>(options_));
    // Input is validated UTF-8, so a failure can only be out-of-memory: keep
    // the text as is.
    if (length >= 0)
      text.assign(reinterpret_cast<const char *>(mapped),
                  static_cast<size_t>(length));
    std::free(mapped);
  }

private:
  int options_;
};

// Rust's str::to_lowercase: full case mapping. utf8proc gives the simple
// mapping; the one multi-character full mapping (U+0130) is added by hand.
// Final-sigma context is not applied.
class LowercaseNormalizer final : public Normalizer {
public:
  void normalize(std::string &text) const override {
    std::string out;
    out.reserve(text.size());
    size_t pos = 0;
    while (pos < text.size()) {
      const uint32_t code_point = unicode::next_code_point(text, pos);
      if (code_point == 0x130) {
        out.append("i\xCC\x87");
      } else {
        unicode::append_code_point(
            out, static_cast<uint32_t>(utf8proc_tolower(
                     static_cast<utf8proc_int32_t>(code_point))));
      }
    }
    text = std::move(out);
  }
};

class StripNormalizer final : public Normalizer {
public:
  StripNormalizer(bool left, bool right) : left_(left), right_(right) {}
  void normalize(std::string &text) const override {
    size_t begin = 0, end = text.size();
    if (left_) {
      size_t pos = 0;
      while (pos < text.size()) {
        size_t next = pos;
        if (!unicode::is_whitespace(unicode::next_code_point(text, next)))
          break;
        pos = next;
      }
      begin = pos;
    }
    if (right_) {
      size_t last_non_space = begin;
      size_t pos = begin;
      while (pos < text.size()) {
        const bool space =
            unicode::is_whitespace(unicode::next_code_point(text, pos));
        if (!space)
          last_non_space = pos;
      }
      end = last_non_space;
    }
    text = text.substr(begin, end - begin);
  }

private:
  bool left_, right_;
};

class PrependNormalizer final : public Normalizer {
public:
  explicit PrependNormalizer(std::string prefix) : prefix_(std::move(prefix)) {}
  void normalize(std::string &text) const override {
    if (!text.empty())
      text.insert(0, prefix_);
  }

private:
  std::string prefix_;
};

class ReplaceNormalizer final : public Normalizer {
public:
  ReplaceNormalizer(Regex pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}
  void normalize(std::string &text) const override {
    text = pattern_.replace_all(text, content_);
  }

private:
  Regex pattern_;
  std::string content_;
};

class SequenceNormalizer final : public Normalizer {
public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> steps)
      : steps_(std::move(steps)) {}
  void normalize(std::string &text) const override {
    for (const auto &step : steps_)
      step->normalize(text);
  }

private:
  std::vector<std::unique_ptr<Normalizer>> steps_;
};

Result<std::unique_ptr<Normalizer>> parse_sequence(const nlohmann::json &spec) {
  MS_ASSIGN_OR_RETURN(const nlohmann::json *items,
                      json_array(spec, "normalizers"));
  std::vector<std::unique_ptr<Normalizer>> steps;
  for (const auto &item : *items) {
    MS_ASSIGN_OR_RETURN(auto step, parse_normalizer(item));
    if (step)
      steps.push_back(std::move(step));
  }
  return std::unique_ptr<Normalizer>(new SequenceNormalizer(std::move(steps)));
}

} // namespace

Result<std::unique_ptr<Normalizer>>
parse_normalizer(const nlohmann::json &spec) {
  if (spec.is_null())
    return std::unique_ptr<Normalizer>();
  MS_ASSIGN_OR_RETURN(std::string type, json_type(spec, "normalizer"));
  constexpr int kStable = UTF8PROC_STABLE;
  if (type == "NFC")
    return std::unique_ptr<Normalizer>(
        new UnicodeNormalizer(kStable | UTF8PROC_COMPOSE));
  if (type == "NFD")
    return std::unique_ptr<Normalizer>(
        new UnicodeNormalizer(kStable | UTF8PROC_DECOMPOSE));
  if (type == "NFKC")
    return std::unique_ptr<Normalizer>(
        new UnicodeNormalizer(kStable | UTF8PROC_COMPOSE | UTF8PROC_COMPAT));
  if (type == "NFKD")
    return std::unique_ptr<Normalizer>(
        new UnicodeNormalizer(kStable | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT));
  if (type == "Lowercase")
    return std::unique_ptr<Normalizer>(new LowercaseNormalizer());
  if (type == "Strip") {
    MS_ASSIGN_OR_RETURN(bool left, json_bool(spec, "strip_left", true));
    MS_ASSIGN_OR_RETURN(bool right, json_bool(spec, "strip_right", true));
    return std::unique_ptr<Normalizer>(new StripNormalizer(left, right));
  }
  if (type == "Prepend") {
    MS_ASSIGN_OR_RETURN(std::string prefix, json_string(spec, "prepend"));
    return std::unique_ptr<Normalizer>(
        new PrependNormalizer(std::move(prefix)));
  }
  if (type == "Replace") {
    MS_ASSIGN_OR_RETURN(Regex pattern, json_pattern(spec, "pattern"));
    MS_ASSIGN_OR_RETURN(std::string content, json_string(spec, "content"));
    return std::unique_ptr<Normalizer>(
        new ReplaceNormalizer(std::move(pattern), std::move(content)));
  }
  if (type == "Sequence")
    return parse_sequence(spec);
  return make_error("unsupported normalizer type '{}' (supported: NFC, NFD, "
                    "NFKC, NFKD, Lowercase, Strip, "
                    "Prepend, Replace, Sequence)",
                    type);
}

} // namespace moeserve::tok
