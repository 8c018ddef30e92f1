// Pre-tokenizer implementations and their tokenizer.json parsing (see pre_tokenizers.h).
#include "tokenizer/pre_tokenizers.h"

#include <algorithm>
#include <functional>
#include <utility>

#include <utf8proc.h>

#include "tokenizer/json_fields.h"
#include "tokenizer/regex.h"
#include "tokenizer/unicode_utils.h"

namespace moeserve::tok {

namespace {

enum class Behavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

// A stretch of a split's text and whether the pattern matched it. Stretches tile the text.
struct Stretch {
  size_t start, end;
  bool is_match;
};

Result<Behavior> parse_behavior(const std::string& name) {
  if (name == "Removed") return Behavior::kRemoved;
  if (name == "Isolated") return Behavior::kIsolated;
  if (name == "MergedWithPrevious") return Behavior::kMergedWithPrevious;
  if (name == "MergedWithNext") return Behavior::kMergedWithNext;
  if (name == "Contiguous") return Behavior::kContiguous;
  return make_error("unknown split behavior '{}' (Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous)", name);
}

std::vector<Stretch> stretches_from_regex(const Regex& regex, std::string_view text, bool invert) {
  std::vector<Stretch> stretches;
  size_t previous = 0;
  for (const auto& [start, end] : regex.find_all(text)) {
    if (previous != start) stretches.push_back({previous, start, invert});
    stretches.push_back({start, end, !invert});
    previous = end;
  }
  if (previous != text.size()) stretches.push_back({previous, text.size(), invert});
  return stretches;
}

// Each character for which `predicate` holds is a one-character match.
std::vector<Stretch> stretches_from_chars(std::string_view text, const std::function<bool(uint32_t)>& predicate) {
  std::vector<Stretch> stretches;
  size_t last_offset = 0, pos = 0;
  while (pos < text.size()) {
    const size_t start = pos;
    if (predicate(unicode::next_code_point(text, pos))) {
      if (last_offset < start) stretches.push_back({last_offset, start, false});
      stretches.push_back({start, pos, true});
      last_offset = pos;
    }
  }
  if (last_offset < text.size()) stretches.push_back({last_offset, text.size(), false});
  return stretches;
}

// Applies a delimiter behavior: the byte ranges kept as pieces (Hugging Face's
// NormalizedString::split).
std::vector<std::pair<size_t, size_t>> apply_behavior(const std::vector<Stretch>& stretches, Behavior behavior) {
  std::vector<std::pair<size_t, size_t>> pieces;
  bool previous_match = false;
  switch (behavior) {
    case Behavior::kIsolated:
      for (const auto& s : stretches) pieces.emplace_back(s.start, s.end);
      break;
    case Behavior::kRemoved:
      for (const auto& s : stretches)
        if (!s.is_match) pieces.emplace_back(s.start, s.end);
      break;
    case Behavior::kContiguous:
      for (const auto& s : stretches) {
        if (s.is_match == previous_match && !pieces.empty()) pieces.back().second = s.end;
        else pieces.emplace_back(s.start, s.end);
        previous_match = s.is_match;
      }
      break;
    case Behavior::kMergedWithPrevious:
      for (const auto& s : stretches) {
        if (s.is_match && !previous_match && !pieces.empty()) pieces.back().second = s.end;
        else pieces.emplace_back(s.start, s.end);
        previous_match = s.is_match;
      }
      break;
    case Behavior::kMergedWithNext:
      for (auto it = stretches.rbegin(); it != stretches.rend(); ++it) {
        if (it->is_match && !previous_match && !pieces.empty()) pieces.back().first = it->start;
        else pieces.emplace_back(it->start, it->end);
        previous_match = it->is_match;
      }
      std::reverse(pieces.begin(), pieces.end());
      break;
  }
  return pieces;
}

// Replaces each split by the pieces `cut` returns for it, dropping empty pieces.
void split_each(std::vector<PreSplit>& splits,
                const std::function<std::vector<std::pair<size_t, size_t>>(const std::string&)>& cut) {
  std::vector<PreSplit> result;
  result.reserve(splits.size());
  for (auto& split : splits) {
    for (const auto& [start, end] : cut(split.text)) {
      if (start == end) continue;
      result.push_back({split.text.substr(start, end - start), split.at_origin && start == 0});
    }
  }
  splits = std::move(result);
}

class SplitPreTokenizer final : public PreTokenizer {
 public:
  SplitPreTokenizer(Regex regex, Behavior behavior, bool invert)
      : regex_(std::move(regex)), behavior_(behavior), invert_(invert) {}
  void pre_tokenize(std::vector<PreSplit>& splits) const override {
    split_each(splits, [&](const std::string& text) {
      return apply_behavior(stretches_from_regex(regex_, text, invert_), behavior_);
    });
  }

 private:
  Regex regex_;
  Behavior behavior_;
  bool invert_;
};

class CharSplitPreTokenizer final : public PreTokenizer {
 public:
  CharSplitPreTokenizer(std::function<bool(uint32_t)> predicate, Behavior behavior)
      : predicate_(std::move(predicate)), behavior_(behavior) {}
  void pre_tokenize(std::vector<PreSplit>& splits) const override {
    split_each(splits, [&](const std::string& text) {
      return apply_behavior(stretches_from_chars(text, predicate_), behavior_);
    });
  }

 private:
  std::function<bool(uint32_t)> predicate_;
  Behavior behavior_;
};

// GPT-2 byte-level: optional prefix space, optional GPT-2 regex split, then every byte is
// rewritten to its alphabet character.
class ByteLevelPreTokenizer final : public PreTokenizer {
 public:
  ByteLevelPreTokenizer(bool add_prefix_space, std::unique_ptr<Regex> regex)
      : add_prefix_space_(add_prefix_space), regex_(std::move(regex)) {}
  void pre_tokenize(std::vector<PreSplit>& splits) const override {
    if (add_prefix_space_) {
      for (auto& split : splits)
        if (split.text[0] != ' ') split.text.insert(0, " ");
    }
    if (regex_) {
      split_each(splits, [&](const std::string& text) {
        return apply_behavior(stretches_from_regex(*regex_, text, false), Behavior::kIsolated);
      });
    }
    const auto& alphabet = unicode::ByteLevelAlphabet::get();
    for (auto& split : splits) {
      std::string mapped;
      mapped.reserve(split.text.size() * 2);
      for (unsigned char byte : split.text) mapped.append(alphabet.encoded(byte));
      split.text = std::move(mapped);
    }
  }

 private:
  bool add_prefix_space_;
  std::unique_ptr<Regex> regex_;
};

enum class PrependScheme { kAlways, kFirst, kNever };

class MetaspacePreTokenizer final : public PreTokenizer {
 public:
  MetaspacePreTokenizer(std::string replacement, PrependScheme scheme, bool split)
      : replacement_(std::move(replacement)), scheme_(scheme), split_(split) {}
  void pre_tokenize(std::vector<PreSplit>& splits) const override {
    for (auto& split : splits) {
      std::string replaced;
      for (char c : split.text) {
        if (c == ' ') replaced.append(replacement_);
        else replaced.push_back(c);
      }
      const bool starts_with_replacement = replaced.compare(0, replacement_.size(), replacement_) == 0;
      const bool prepend = !starts_with_replacement &&
                           (scheme_ == PrependScheme::kAlways || (scheme_ == PrependScheme::kFirst && split.at_origin));
      if (prepend) replaced.insert(0, replacement_);
      split.text = std::move(replaced);
    }
    if (!split_) return;
    split_each(splits, [&](const std::string& text) {
      std::vector<Stretch> stretches;
      size_t last = 0, pos = 0;
      while ((pos = text.find(replacement_, pos)) != std::string::npos) {
        if (last < pos) stretches.push_back({last, pos, false});
        stretches.push_back({pos, pos + replacement_.size(), true});
        pos += replacement_.size();
        last = pos;
      }
      if (last < text.size()) stretches.push_back({last, text.size(), false});
      return apply_behavior(stretches, Behavior::kMergedWithNext);
    });
  }

 private:
  std::string replacement_;
  PrependScheme scheme_;
  bool split_;
};

class SequencePreTokenizer final : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<std::unique_ptr<PreTokenizer>> steps) : steps_(std::move(steps)) {}
  void pre_tokenize(std::vector<PreSplit>& splits) const override {
    for (const auto& step : steps_) step->pre_tokenize(splits);
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> steps_;
};

bool is_numeric(uint32_t c) {
  const auto category = utf8proc_category(static_cast<utf8proc_int32_t>(c));
  return category == UTF8PROC_CATEGORY_ND || category == UTF8PROC_CATEGORY_NL || category == UTF8PROC_CATEGORY_NO;
}

// Rust: char::is_ascii_punctuation || Unicode punctuation (P*).
bool is_punctuation(uint32_t c) {
  if (c < 0x80) return (c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x40) || (c >= 0x5B && c <= 0x60) || (c >= 0x7B && c <= 0x7E);
  const auto category = utf8proc_category(static_cast<utf8proc_int32_t>(c));
  return category >= UTF8PROC_CATEGORY_PC && category <= UTF8PROC_CATEGORY_PO;
}

Result<std::unique_ptr<PreTokenizer>> make_regex_split(std::string_view pattern, Behavior behavior, bool invert) {
  MS_ASSIGN_OR_RETURN(Regex regex, Regex::compile(pattern, false));
  return std::unique_ptr<PreTokenizer>(new SplitPreTokenizer(std::move(regex), behavior, invert));
}

Result<std::unique_ptr<PreTokenizer>> parse_byte_level(const nlohmann::json& spec) {
  MS_ASSIGN_OR_RETURN(bool add_prefix_space, json_bool(spec, "add_prefix_space", true));
  MS_ASSIGN_OR_RETURN(bool use_regex, json_bool(spec, "use_regex", true));
  std::unique_ptr<Regex> regex;
  if (use_regex) {
    MS_ASSIGN_OR_RETURN(Regex gpt2, Regex::compile(R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)", false));
    regex = std::make_unique<Regex>(std::move(gpt2));
  }
  return std::unique_ptr<PreTokenizer>(new ByteLevelPreTokenizer(add_prefix_space, std::move(regex)));
}

Result<std::unique_ptr<PreTokenizer>> parse_metaspace(const nlohmann::json& spec) {
  MS_ASSIGN_OR_RETURN(std::string replacement, json_string(spec, "replacement"));
  if (replacement.empty() || unicode::char_length(replacement, 0) != replacement.size())
    return make_error("Metaspace replacement must be one character, got '{}'", replacement);
  MS_ASSIGN_OR_RETURN(bool split, json_bool(spec, "split", true));
  MS_ASSIGN_OR_RETURN(bool add_prefix_space, json_bool(spec, "add_prefix_space", true));
  PrependScheme scheme = add_prefix_space ? PrependScheme::kAlways : PrependScheme::kNever;
  if (auto it = spec.find("prepend_scheme"); it != spec.end() && it->is_string()) {
    const std::string name = it->get<std::string>();
    if (name == "always") scheme = PrependScheme::kAlways;
    else if (name == "first") scheme = PrependScheme::kFirst;
    else if (name == "never") scheme = PrependScheme::kNever;
    else return make_error("unknown Metaspace prepend_scheme '{}' (always, first, never)", name);
  }
  return std::unique_ptr<PreTokenizer>(new MetaspacePreTokenizer(std::move(replacement), scheme, split));
}

Result<std::unique_ptr<PreTokenizer>> parse_split(const nlohmann::json& spec) {
  MS_ASSIGN_OR_RETURN(Regex regex, json_pattern(spec, "pattern"));
  MS_ASSIGN_OR_RETURN(std::string behavior_name, json_string(spec, "behavior"));
  MS_ASSIGN_OR_RETURN(Behavior behavior, parse_behavior(behavior_name));
  MS_ASSIGN_OR_RETURN(bool invert, json_bool(spec, "invert", false));
  return std::unique_ptr<PreTokenizer>(new SplitPreTokenizer(std::move(regex), behavior, invert));
}

Result<std::unique_ptr<PreTokenizer>> parse_sequence(const nlohmann::json& spec) {
  MS_ASSIGN_OR_RETURN(const nlohmann::json* items, json_array(spec, "pretokenizers"));
  std::vector<std::unique_ptr<PreTokenizer>> steps;
  for (const auto& item : *items) {
    MS_ASSIGN_OR_RETURN(auto step, parse_pre_tokenizer(item));
    if (step) steps.push_back(std::move(step));
  }
  return std::unique_ptr<PreTokenizer>(new SequencePreTokenizer(std::move(steps)));
}

}  // namespace

Result<std::unique_ptr<PreTokenizer>> parse_pre_tokenizer(const nlohmann::json& spec) {
  using Ptr = std::unique_ptr<PreTokenizer>;
  if (spec.is_null()) return Ptr();
  MS_ASSIGN_OR_RETURN(std::string type, json_type(spec, "pre_tokenizer"));
  if (type == "Split") return parse_split(spec);
  if (type == "ByteLevel") return parse_byte_level(spec);
  if (type == "Metaspace") return parse_metaspace(spec);
  if (type == "Sequence") return parse_sequence(spec);
  if (type == "Digits") {
    MS_ASSIGN_OR_RETURN(bool individual, json_bool(spec, "individual_digits", false));
    return Ptr(new CharSplitPreTokenizer(is_numeric, individual ? Behavior::kIsolated : Behavior::kContiguous));
  }
  if (type == "Whitespace") return make_regex_split(R"(\w+|[^\w\s]+)", Behavior::kRemoved, /*invert=*/true);
  if (type == "WhitespaceSplit") return Ptr(new CharSplitPreTokenizer(unicode::is_whitespace, Behavior::kRemoved));
  if (type == "Punctuation") {
    Behavior behavior = Behavior::kIsolated;
    if (auto it = spec.find("behavior"); it != spec.end() && it->is_string()) {
      MS_ASSIGN_OR_RETURN(behavior, parse_behavior(it->get<std::string>()));
    }
    return Ptr(new CharSplitPreTokenizer(is_punctuation, behavior));
  }
  if (type == "BertPreTokenizer") {
    std::vector<Ptr> steps;
    steps.push_back(Ptr(new CharSplitPreTokenizer(unicode::is_whitespace, Behavior::kRemoved)));
    steps.push_back(Ptr(new CharSplitPreTokenizer(is_punctuation, Behavior::kIsolated)));
    return Ptr(new SequencePreTokenizer(std::move(steps)));
  }
  return make_error("unsupported pre_tokenizer type '{}' (supported: Split, ByteLevel, Metaspace, Digits, "
                    "Whitespace, WhitespaceSplit, Punctuation, BertPreTokenizer, Sequence)", type);
}

}  // namespace moeserve::tok
