// GPT-OSS's chat answers in OpenAI's harmony format, split as vLLM's chat completions split them
// for a gpt-oss model. The answer follows the template's generation prompt `<|start|>assistant`
// and is a run of messages, each
//     [<|start|>ROLE][ to=RECIPIENT]<|channel|>CHANNEL[ to=RECIPIENT][ <|constrain|>TYPE | TYPE]<|message|>TEXT END
// where END is <|end|> (another message follows), <|call|> (a tool call) or <|return|> (the
// answer is done); the last two are stop tokens, so an answer usually just ends after TEXT.
//   - analysis → `reasoning` (several analysis messages joined by "\n");
//   - final, and commentary without a recipient (a preamble) → `content`;
//   - to=functions.NAME → a tool call when tool calls are parsed (--enable-auto-tool-choice
//     --tool-call-parser openai and the request has tools), its JSON arguments re-serialised as
//     Python's json.dumps writes them (as written when they do not parse); otherwise its text is
//     content;
//   - any other recipient (the builtin browser.* / python tools) → reasoning.
// Text that does not start as a harmony message (no <|channel|> header) is all content. The
// special tokens must be in the text (the server asks the engine for skip_special_tokens false).
// A stream and a whole answer go through the same state machine, so both give the same fields.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "server/reasoning_parser.h"
#include "server/tool_call_parser.h"

namespace moeserve {

class HarmonySplitter {
 public:
  explicit HarmonySplitter(bool parse_tool_calls) : parse_tool_calls_(parse_tool_calls) {}

  using Delta = ReasoningSplitter::Delta;
  // The next piece of the answer → what can be told of it now (a piece that may be the start of a
  // marker is held back until the next one settles it); `last`: the answer ends with it.
  Delta push(std::string_view text, bool last = false);
  // The tool calls of the messages that have ended so far (all of them after `last`).
  const std::vector<ToolCall>& calls() const { return calls_; }

 private:
  enum class State { kHeader, kBody, kPlain };
  enum class Route { kReasoning, kContent, kCall };

  void begin_message(std::string_view header);
  void emit(std::string_view text, Delta& out);
  void end_message();

  bool parse_tool_calls_;
  State state_ = State::kHeader;
  std::string held_;
  Route route_ = Route::kContent;
  bool reasoning_sent_ = false;  // reasoning text already told (the next message's is joined by "\n")
  bool new_message_ = false;     // no text of the current message told yet
  std::string call_name_, call_type_, call_body_;
  std::vector<ToolCall> calls_;
};

}  // namespace moeserve
