// DeepSeek-V3.2's chat prompts. The model ships no chat template: its prompts are written by the
// Python encoder published with it (encoding/encoding_dsv32.py, which vLLM runs under
// `--tokenizer-mode deepseek_v32`). This is that encoder, called as vLLM calls it:
//   - thinking mode when `thinking` (or `enable_thinking`) is truthy: the last user turn opens
//     <think>, the others close it;
//   - the request's tools in a system message inserted first ("## Tools" and their JSON schemas);
//   - tool calls of earlier assistant turns as <｜DSML｜function_calls> blocks, their results in
//     <function_results>;
//   - the reasoning of earlier turns dropped when the last message is the user's;
//   - BOS first.
// Messages the published encoder refuses (a tool result with no call before it, an empty
// developer message, a thinking-mode answer after the last user turn with neither reasoning nor
// tool calls, an unknown role) are refused here with the reason. Checked case by case against
// the published encoder: tests/fixtures/chat/deepseek_v32_encoding_reference.json.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "base/result.h"

namespace moeserve::chat {

// messages: OpenAI chat messages (content already a string or null; tool-call arguments a JSON
// string or the object it encodes). tools: the request's `tools` (null or an array).
Result<std::string> encode_deepseek_v32(const nlohmann::ordered_json& messages, const nlohmann::ordered_json& tools,
                                        bool thinking);

}  // namespace moeserve::chat
