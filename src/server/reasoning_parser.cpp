#include "server/reasoning_parser.h"

#include <algorithm>

namespace moeserve {
namespace {

constexpr std::string_view kStart = "<think>";
constexpr std::string_view kEnd = "</think>";

// The length of the longest suffix of `text` that is a proper prefix of `marker`.
size_t partial_marker_suffix(std::string_view text, std::string_view marker) {
  for (size_t n = std::min(text.size(), marker.size() - 1); n > 0; --n) {
    if (text.substr(text.size() - n) == marker.substr(0, n)) return n;
  }
  return 0;
}

bool ends_with_start_marker(std::string_view prompt) {
  while (!prompt.empty() && (prompt.back() == '\n' || prompt.back() == ' ')) prompt.remove_suffix(1);
  return prompt.size() >= kStart.size() && prompt.substr(prompt.size() - kStart.size()) == kStart;
}

}  // namespace

Result<ReasoningParser> parse_reasoning_parser(const std::string& name) {
  if (name == "deepseek_r1") return ReasoningParser::kDeepseekR1;
  if (name == "qwen3") return ReasoningParser::kQwen3;
  if (name == "deepseek_v3") return ReasoningParser::kDeepseekV3;
  return make_error("'{}' is not supported (supported: deepseek_r1, qwen3, deepseek_v3)", name);
}

ReasoningSplitter::ReasoningSplitter(ReasoningParser parser, bool thinking, std::string_view prompt) {
  switch (parser) {
    case ReasoningParser::kNone:
      state_ = State::kContent;
      break;
    case ReasoningParser::kDeepseekV3:
      state_ = thinking ? State::kStart : State::kContent;
      break;
    case ReasoningParser::kDeepseekR1:
      state_ = State::kStart;
      break;
    case ReasoningParser::kQwen3:
      state_ = State::kStart;
      break;
  }
  content_without_marker_ = parser == ReasoningParser::kQwen3 && !ends_with_start_marker(prompt);
}

ReasoningSplitter::Delta ReasoningSplitter::push(std::string_view text, bool last) {
  Delta delta = split(text);
  if (last) {
    const Delta rest = finish();
    delta.reasoning += rest.reasoning;
    delta.content += rest.content;
  }
  return delta;
}

ReasoningSplitter::Delta ReasoningSplitter::split(std::string_view text) {
  Delta delta;
  if (state_ == State::kContent) {
    delta.content = std::move(held_);
    held_.clear();
    delta.content += text;
    return delta;
  }
  held_ += text;
  if (state_ == State::kStart) {
    if (held_.size() < kStart.size() && kStart.substr(0, held_.size()) == held_) return delta;  // undecided
    if (held_.compare(0, kStart.size(), kStart) == 0) {
      held_.erase(0, kStart.size());
      state_ = State::kReasoning;
    } else {
      state_ = content_without_marker_ ? State::kContent : State::kReasoning;
      if (state_ == State::kContent) return split("");
    }
  }
  // kReasoning: up to </think>, then the rest is content.
  if (const size_t end = held_.find(kEnd); end != std::string::npos) {
    delta.reasoning = held_.substr(0, end);
    delta.content = held_.substr(end + kEnd.size());
    held_.clear();
    state_ = State::kContent;
    return delta;
  }
  const size_t keep = partial_marker_suffix(held_, kEnd);
  delta.reasoning = held_.substr(0, held_.size() - keep);
  held_.erase(0, held_.size() - keep);
  return delta;
}

ReasoningSplitter::Delta ReasoningSplitter::finish() {
  Delta delta;
  if (state_ == State::kContent || (state_ == State::kStart && content_without_marker_)) {
    delta.content = std::move(held_);
  } else {
    delta.reasoning = std::move(held_);
  }
  held_.clear();
  return delta;
}

}  // namespace moeserve
