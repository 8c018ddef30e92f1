#include "server/harmony_parser.h"

#include <array>
#include <nlohmann/json.hpp>

#include "server/stream_markers.h"
#include "tokenizer/chat/value.h"

namespace moeserve {
namespace {

constexpr std::string_view kStart = "<|start|>";
constexpr std::string_view kChannel = "<|channel|>";
constexpr std::string_view kConstrain = "<|constrain|>";
constexpr std::string_view kMessage = "<|message|>";
constexpr std::string_view kFunctions = "functions.";
// What ends a message's text: <|start|> too, for a message that begins without an <|end|>.
constexpr std::array<std::string_view, 4> kEnds = {"<|end|>", "<|call|>", "<|return|>", kStart};
// How a header may begin: the answer's first one right after the prompt's <|start|>assistant
// (with a recipient or a channel), every later one with <|start|>.
constexpr std::array<std::string_view, 4> kHeaderStarts = {kChannel, kStart, " to=", "to="};
// A header longer than this without <|message|> is not one.
constexpr size_t kMaxHeader = 1024;

// Whether `text` (what came since the last message ended) is, or may still become, a header.
bool may_be_header(std::string_view text) {
  if (text.size() > kMaxHeader) return false;
  for (std::string_view start : kHeaderStarts) {
    if (text.starts_with(start) || start.starts_with(text)) return true;
  }
  return false;
}

struct Header {
  std::string channel, recipient, content_type;
};

// A header's fields: the words between and after its markers (the role after <|start|> is not
// needed: the model only writes the assistant's messages).
Header parse_header(std::string_view text) {
  Header header;
  if (text.starts_with(kStart)) {
    text.remove_prefix(kStart.size());
    while (!text.empty() && text.front() != ' ' && !text.starts_with("<|")) text.remove_prefix(1);
  }
  std::string* next = nullptr;  // the field the next word fills (after <|channel|> / <|constrain|>)
  while (!text.empty()) {
    if (text.front() == ' ' || text.front() == '\n' || text.front() == '\t') {
      text.remove_prefix(1);
      continue;
    }
    if (text.starts_with(kChannel) || text.starts_with(kConstrain)) {
      next = text.starts_with(kChannel) ? &header.channel : &header.content_type;
      text.remove_prefix(text.starts_with(kChannel) ? kChannel.size() : kConstrain.size());
      continue;
    }
    size_t end = 0;
    while (end < text.size() && text[end] != ' ' && text[end] != '\n' && text[end] != '\t' &&
           text.substr(end, 2) != "<|") {
      ++end;
    }
    if (end == 0) end = text.find("|>", 2) == std::string_view::npos ? text.size() : text.find("|>", 2) + 2;
    const std::string_view word = text.substr(0, end);
    text.remove_prefix(end);
    if (next != nullptr) {
      *next = std::string(word);
      next = nullptr;
    } else if (word.starts_with("to=")) {
      header.recipient = std::string(word.substr(3));
    } else if (!header.channel.empty() && header.content_type.empty()) {
      header.content_type = std::string(word);  // `commentary json`
    }
  }
  return header;
}

}  // namespace

void HarmonySplitter::begin_message(std::string_view text) {
  const Header header = parse_header(text);
  new_message_ = true;
  if (header.recipient.starts_with(kFunctions)) {
    route_ = parse_tool_calls_ ? Route::kCall : Route::kContent;
    call_name_ = header.recipient.substr(kFunctions.size());
    call_type_ = header.content_type;
    call_body_.clear();
  } else if (!header.recipient.empty() || header.channel == "analysis") {
    route_ = Route::kReasoning;
  } else {
    route_ = Route::kContent;  // final, or a commentary preamble
  }
}

void HarmonySplitter::emit(std::string_view text, Delta& out) {
  if (text.empty()) return;
  switch (route_) {
    case Route::kReasoning:
      if (new_message_ && reasoning_sent_) out.reasoning += '\n';
      out.reasoning += text;
      reasoning_sent_ = true;
      break;
    case Route::kContent:
      out.content += text;
      break;
    case Route::kCall:
      call_body_ += text;
      break;
  }
  new_message_ = false;
}

void HarmonySplitter::end_message() {
  if (route_ != Route::kCall) return;
  ToolCall call{.name = call_name_, .arguments = call_body_};
  if (call_type_.empty() || call_type_.find("json") != std::string::npos) {
    const nlohmann::ordered_json arguments = nlohmann::ordered_json::parse(call_body_, nullptr, false);
    if (!arguments.is_discarded()) {
      auto text = chat::to_json_text(chat::Value::from_json(arguments), chat::JsonDumpOptions{});
      if (text.ok()) call.arguments = *text;
    }
  }
  calls_.push_back(std::move(call));
  route_ = Route::kContent;
}

HarmonySplitter::Delta HarmonySplitter::push(std::string_view text, bool last) {
  Delta out;
  held_ += text;
  while (true) {
    if (state_ == State::kPlain) {
      out.content += held_;
      held_.clear();
      break;
    }
    if (state_ == State::kHeader) {
      const size_t message = held_.find(kMessage);
      const std::string_view header = std::string_view(held_).substr(0, message);
      if (!may_be_header(header)) {
        state_ = State::kPlain;
        continue;
      }
      if (message == std::string::npos) {
        if (last) held_.clear();  // a header the end of the answer cut off carries no text
        break;
      }
      begin_message(header);
      held_.erase(0, message + kMessage.size());
      state_ = State::kBody;
      continue;
    }
    size_t end = std::string::npos;
    std::string_view marker;
    for (std::string_view candidate : kEnds) {
      const size_t at = held_.find(candidate);
      if (at < end) end = at, marker = candidate;
    }
    if (end != std::string::npos) {
      emit(std::string_view(held_).substr(0, end), out);
      end_message();
      held_.erase(0, marker == kStart ? end : end + marker.size());
      state_ = State::kHeader;
      continue;
    }
    size_t keep = 0;
    if (!last) {
      for (std::string_view candidate : kEnds) keep = std::max(keep, partial_marker_suffix(held_, candidate));
    }
    emit(std::string_view(held_).substr(0, held_.size() - keep), out);
    held_.erase(0, held_.size() - keep);
    if (last) end_message();
    break;
  }
  return out;
}

}  // namespace moeserve
