#include "server/reasoning_parser.h"

#include "server/stream_markers.h"

namespace moeserve {
namespace {

constexpr std::string_view kStart = "<think>";
constexpr std::string_view kEnd = "</think>";

bool ends_with_start_marker(std::string_view prompt) {
  while (!prompt.empty() && (prompt.back() == '\n' || prompt.back() == ' ')) prompt.remove_suffix(1);
  return prompt.size() >= kStart.size() && prompt.substr(prompt.size() - kStart.size()) == kStart;
}

}  // namespace

Result<ReasoningParser> parse_reasoning_parser(const std::string& name) {
  if (name == "deepseek_r1") return ReasoningParser::kDeepseekR1;
  if (name == "qwen3") return ReasoningParser::kQwen3;
  if (name == "deepseek_v3") return ReasoningParser::kDeepseekV3;
  if (name == "openai_gptoss") return ReasoningParser::kOpenAiGptOss;
  return make_error("'{}' is not supported (supported: deepseek_r1, qwen3, deepseek_v3, openai_gptoss)", name);
}

ReasoningSplitter::ReasoningSplitter(ReasoningParser parser, bool thinking, std::string_view prompt) {
  switch (parser) {
    case ReasoningParser::kNone:
    case ReasoningParser::kOpenAiGptOss:
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
