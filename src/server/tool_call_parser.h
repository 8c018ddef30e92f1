// vLLM's --enable-auto-tool-choice --tool-call-parser: a chat answer's tool-call markup becomes
// the message's `tool_calls` (finish_reason "tool_calls"), the text before it its `content`.
//   hermes (Qwen2.5/Qwen3, Hermes): <tool_call>{"name": ..., "arguments": {...}}</tool_call> blocks
//     (the last may be cut off); arguments re-serialised as Python's json.dumps writes them.
//   qwen3_coder (Qwen3-Coder): <tool_call><function=NAME><parameter=K>V</parameter>...</function></tool_call>
//     (the last closing tags may be cut off); each V typed by the request's schema for K, as vLLM's
//     parser types it: "null" → null, integer, number (a whole one as an integer), boolean, object
//     or array (JSON), anything else (and what does not convert) a string. Arguments written as
//     Python's json.dumps writes them.
//   deepseek_v3: <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME
//     ```json ARGS ```<｜tool▁call▁end｜>...<｜tool▁calls▁end｜>, ARGS as written.
//   deepseek_v31: the same without "function" and the json fence: <｜tool▁call▁begin｜>NAME<｜tool▁sep｜>ARGS<｜tool▁call▁end｜>.
//   deepseek_v32: DeepSeek-V3.2's DSML, <｜DSML｜function_calls> of <｜DSML｜invoke name="NAME"> blocks whose
//     <｜DSML｜parameter name="K" string="true|false">V</｜DSML｜parameter> lines become {"K": V} (V a JSON
//     string when string="true", else as written), as the encoder published with the model decodes them.
//   kimi_k2: <|tool_calls_section_begin|><|tool_call_begin|>functions.NAME:N<|tool_call_argument_begin|>ARGS
//     <|tool_call_end|>...<|tool_calls_section_end|>; the call's id is "functions.NAME:N" (Kimi's
//     template names tool results by it), ARGS as written.
//   llama3_json / llama4_json (Llama 3.1-3.3, Llama 4): an answer that begins (after whitespace) with
//     {"name": NAME, "parameters": ARGS} (or "arguments"), or with <|python_tag|> before it; calls
//     separated by ';'. ARGS re-serialised as Python's json.dumps writes them (vLLM's
//     Llama3JsonToolParser). Unlike vLLM's whole-answer form, which takes the first JSON object
//     anywhere in the answer and drops the text around it, only an answer that begins with a call
//     is one, as in vLLM's streaming form, so a streamed and a whole answer split alike; text after
//     the last call leaves the answer content.
//   pythonic / llama4_pythonic (Llama 3.2, Llama 4 with their pythonic templates): an answer that is
//     a Python list of calls, [f(a='x', b=[1, 2]), g()] (server/pythonic_calls.h), from its first
//     character, as vLLM's parsers take it; llama4_pythonic also reads it wrapped in
//     <|python_start|>...<|python_end|>. Arguments as json.dumps writes them (pythonic: not ASCII-escaped).
//   openai: GPT-OSS's harmony messages to=functions.NAME (server/harmony_parser.h, not this file).
// Markup that does not parse leaves the whole answer content, as vLLM's parsers do. Streams hold
// everything from the first marker to the end of the answer, then send the calls in one delta.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/result.h"

namespace moeserve {

enum class ToolCallParser {
  kNone,
  kHermes,
  kQwen3Coder,
  kDeepseekV3,
  kDeepseekV31,
  kDeepseekV32,
  kKimiK2,
  kLlamaJson,
  kPythonic,
  kLlama4Pythonic,
  kOpenAi
};

// The parser of a --tool-call-parser name; unknown names list the supported ones.
Result<ToolCallParser> parse_tool_call_parser(const std::string& name);

// Whether the parser's calls are the whole answer, decided by how it begins (llama3_json,
// pythonic, llama4_pythonic). Their calls are text, so the answer's special tokens stay skipped,
// as in vLLM; the other parsers' markup may be special tokens (DeepSeek's), kept in the text.
bool whole_answer(ToolCallParser parser);

struct ToolCall {
  std::string name;
  std::string arguments;  // JSON text
  std::string id;         // the model's own id for the call (kimi_k2); empty: the server makes one
};

struct ToolCallSplit {
  std::string content;  // the text before the first call (the whole answer when none parsed)
  std::vector<ToolCall> calls;
};

// A whole answer's split. tools: the request's `tools` (qwen3_coder types the values by them).
ToolCallSplit split_tool_calls(ToolCallParser parser, std::string_view answer,
                               const nlohmann::ordered_json& tools = nlohmann::ordered_json());

// One streamed answer's split: content passes through until the parser's first marker, which
// (and all after it) is held to the end.
class ToolCallStream {
 public:
  explicit ToolCallStream(ToolCallParser parser, nlohmann::ordered_json tools = nlohmann::ordered_json())
      : parser_(parser), tools_(std::move(tools)) {}
  // The content that can be sent now; `last`: the answer ends here, and calls() is final.
  std::string push(std::string_view text, bool last);
  const std::vector<ToolCall>& calls() const { return calls_; }

 private:
  ToolCallParser parser_;
  nlohmann::ordered_json tools_;
  std::string held_;
  bool in_calls_ = false;
  bool plain_ = false;  // a whole-answer parser (llama3_json, pythonic): the answer began otherwise
  std::vector<ToolCall> calls_;
};

}  // namespace moeserve
