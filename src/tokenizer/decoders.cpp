// Decoder implementations and their tokenizer.json parsing (see decoders.h).
#include "tokenizer/decoders.h"

#include "tokenizer/json_fields.h"
#include "tokenizer/regex.h"
#include "tokenizer/unicode_utils.h"

namespace moeserve::tok {

int byte_fallback_value(std::string_view token) {
  if (token.size() != 6 || token.substr(0, 3) != "<0x" || token[5] != '>') return -1;
  int value = 0;
  for (char c : token.substr(3, 2)) {
    int digit = -1;
    if (c >= '0' && c <= '9') digit = c - '0';
    else if (c >= 'A' && c <= 'F') digit = c - 'A' + 10;
    else if (c >= 'a' && c <= 'f') digit = c - 'a' + 10;
    if (digit < 0) return -1;
    value = value * 16 + digit;
  }
  return value;
}

namespace {

// Joins all tokens into one, mapping byte-level alphabet characters back to bytes; a token
// with any character outside the alphabet contributes its own UTF-8 bytes.
class ByteLevelDecoder final : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    const auto& alphabet = unicode::ByteLevelAlphabet::get();
    std::string bytes;
    for (const auto& token : tokens) {
      const size_t mark = bytes.size();
      size_t pos = 0;
      bool in_alphabet = true;
      while (pos < token.size() && in_alphabet) {
        const int byte = alphabet.char_to_byte(unicode::next_code_point(token, pos));
        if (byte < 0) in_alphabet = false;
        else bytes.push_back(static_cast<char>(byte));
      }
      if (!in_alphabet) {
        bytes.resize(mark);
        bytes.append(token);
      }
    }
    tokens.assign(1, unicode::from_utf8_lossy(bytes));
  }
};

class MetaspaceDecoder final : public Decoder {
 public:
  MetaspaceDecoder(std::string replacement, bool drop_first) : replacement_(std::move(replacement)), drop_first_(drop_first) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      std::string out;
      size_t pos = 0;
      const std::string& token = tokens[i];
      while (pos < token.size()) {
        if (token.compare(pos, replacement_.size(), replacement_) == 0) {
          if (i != 0 || !drop_first_) out.push_back(' ');
          pos += replacement_.size();
        } else {
          out.push_back(token[pos++]);
        }
      }
      tokens[i] = std::move(out);
    }
  }

 private:
  std::string replacement_;
  bool drop_first_;  // prepend_scheme != never: the first token's replacements vanish
};

class ReplaceDecoder final : public Decoder {
 public:
  ReplaceDecoder(Regex pattern, std::string content) : pattern_(std::move(pattern)), content_(std::move(content)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (auto& token : tokens) token = pattern_.replace_all(token, content_);
  }

 private:
  Regex pattern_;
  std::string content_;
};

// Runs of <0xXX> tokens become their bytes when those form valid UTF-8, else one U+FFFD per byte.
class ByteFallbackDecoder final : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::vector<std::string> out;
    std::string pending;
    const auto flush = [&] {
      if (pending.empty()) return;
      if (!unicode::find_invalid_utf8(pending)) out.push_back(pending);
      else
        for (size_t i = 0; i < pending.size(); ++i) out.emplace_back(unicode::kReplacementChar);
      pending.clear();
    };
    for (auto& token : tokens) {
      const int byte = byte_fallback_value(token);
      if (byte >= 0) {
        pending.push_back(static_cast<char>(byte));
      } else {
        flush();
        out.push_back(std::move(token));
      }
    }
    flush();
    tokens = std::move(out);
  }
};

class FuseDecoder final : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::string joined;
    for (const auto& token : tokens) joined += token;
    tokens.assign(1, std::move(joined));
  }
};

// Removes up to `start` leading and `stop` trailing `content` characters from each token.
class StripDecoder final : public Decoder {
 public:
  StripDecoder(std::string content, size_t start, size_t stop) : content_(std::move(content)), start_(start), stop_(stop) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (auto& token : tokens) {
      size_t begin = 0, end = token.size();
      for (size_t i = 0; i < start_ && token.compare(begin, content_.size(), content_) == 0 && begin < end; ++i)
        begin += content_.size();
      for (size_t i = 0; i < stop_ && end >= begin + content_.size() &&
                         token.compare(end - content_.size(), content_.size(), content_) == 0; ++i)
        end -= content_.size();
      token = token.substr(begin, end - begin);
    }
  }

 private:
  std::string content_;
  size_t start_, stop_;
};

// Classic BPE end-of-word suffix: the suffix becomes a space except on the last token.
class BpeSuffixDecoder final : public Decoder {
 public:
  explicit BpeSuffixDecoder(std::string suffix) : suffix_(std::move(suffix)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      const std::string replacement = i + 1 == tokens.size() ? "" : " ";
      std::string& token = tokens[i];
      std::string out;
      for (size_t pos = 0; pos < token.size();) {
        if (!suffix_.empty() && token.compare(pos, suffix_.size(), suffix_) == 0) {
          out += replacement;
          pos += suffix_.size();
        } else {
          out.push_back(token[pos++]);
        }
      }
      token = std::move(out);
    }
  }

 private:
  std::string suffix_;
};

class SequenceDecoder final : public Decoder {
 public:
  explicit SequenceDecoder(std::vector<std::unique_ptr<Decoder>> steps) : steps_(std::move(steps)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (const auto& step : steps_) step->decode_chain(tokens);
  }

 private:
  std::vector<std::unique_ptr<Decoder>> steps_;
};

Result<std::unique_ptr<Decoder>> parse_metaspace(const nlohmann::json& spec) {
  MS_ASSIGN_OR_RETURN(std::string replacement, json_string(spec, "replacement"));
  MS_ASSIGN_OR_RETURN(bool add_prefix_space, json_bool(spec, "add_prefix_space", true));
  bool drop_first = add_prefix_space;
  if (auto it = spec.find("prepend_scheme"); it != spec.end() && it->is_string()) drop_first = it->get<std::string>() != "never";
  return std::unique_ptr<Decoder>(new MetaspaceDecoder(std::move(replacement), drop_first));
}

Result<std::unique_ptr<Decoder>> parse_strip(const nlohmann::json& spec) {
  MS_ASSIGN_OR_RETURN(std::string content, json_string(spec, "content"));
  MS_ASSIGN_OR_RETURN(int64_t start, json_int(spec, "start", 0));
  MS_ASSIGN_OR_RETURN(int64_t stop, json_int(spec, "stop", 0));
  if (content.empty() || start < 0 || stop < 0) return make_error("Strip decoder needs a content character and counts >= 0");
  return std::unique_ptr<Decoder>(new StripDecoder(std::move(content), static_cast<size_t>(start), static_cast<size_t>(stop)));
}

}  // namespace

Result<std::unique_ptr<Decoder>> parse_decoder(const nlohmann::json& spec) {
  using Ptr = std::unique_ptr<Decoder>;
  if (spec.is_null()) return Ptr();
  MS_ASSIGN_OR_RETURN(std::string type, json_type(spec, "decoder"));
  if (type == "ByteLevel") return Ptr(new ByteLevelDecoder());
  if (type == "Metaspace") return parse_metaspace(spec);
  if (type == "ByteFallback") return Ptr(new ByteFallbackDecoder());
  if (type == "Fuse") return Ptr(new FuseDecoder());
  if (type == "Strip") return parse_strip(spec);
  if (type == "Replace") {
    MS_ASSIGN_OR_RETURN(Regex pattern, json_pattern(spec, "pattern"));
    MS_ASSIGN_OR_RETURN(std::string content, json_string(spec, "content"));
    return Ptr(new ReplaceDecoder(std::move(pattern), std::move(content)));
  }
  if (type == "BPEDecoder") {
    std::string suffix = "</w>";
    if (auto it = spec.find("suffix"); it != spec.end() && it->is_string()) suffix = it->get<std::string>();
    return Ptr(new BpeSuffixDecoder(std::move(suffix)));
  }
  if (type == "Sequence") {
    MS_ASSIGN_OR_RETURN(const nlohmann::json* items, json_array(spec, "decoders"));
    std::vector<Ptr> steps;
    for (const auto& item : *items) {
      MS_ASSIGN_OR_RETURN(auto step, parse_decoder(item));
      if (step) steps.push_back(std::move(step));
    }
    return Ptr(new SequenceDecoder(std::move(steps)));
  }
  return make_error("unsupported decoder type '{}' (supported: ByteLevel, Metaspace, ByteFallback, Fuse, Strip, "
                    "Replace, BPEDecoder, Sequence)", type);
}

}  // namespace moeserve::tok
