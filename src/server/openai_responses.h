// OpenAI response JSON: choices, deltas, usage and logprobs in each API's shape (completions:
// tokens / token_logprobs / top_logprobs / text_offset; chat: content[] with token, logprob,
// bytes, top_logprobs), plus SSE framing. Key order follows OpenAI's/vLLM's bodies.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/request.h"
#include "server/field_reader.h"
#include "tokenizer/tokenizer.h"

namespace moeserve {

// Accumulates the completions-API logprobs of one choice; text offsets continue across calls.
class CompletionLogprobs {
 public:
  explicit CompletionLogprobs(int initial_offset = 0) : next_offset_(initial_offset) {}
  void append(const Tokenizer& tokenizer, const std::vector<TokenLogprob>& logprobs);
  Json to_json() const;
  void clear_keep_offset();  // streaming: each chunk carries only its own tokens

 private:
  Json tokens_ = Json::array(), token_logprobs_ = Json::array(), top_logprobs_ = Json::array(),
       text_offset_ = Json::array();
  int next_offset_ = 0;
};

// Chat-API logprobs entries ({"token", "logprob", "bytes", "top_logprobs"}) for `logprobs`.
Json chat_logprob_entries(const Tokenizer& tokenizer, const std::vector<TokenLogprob>& logprobs);

Json usage_json(int prompt_tokens, int completion_tokens);
// finish_reason as OpenAI spells it ("stop", "length"; vLLM's "abort"/"error" otherwise).
const char* openai_finish_reason(FinishReason reason);
// stop_reason: the matched stop string, the stop token id, or null.
Json stop_reason_json(const RequestOutput& output);

// "data: <json>\n\n"
std::string sse_event(const Json& payload);
inline constexpr const char* kSseDone = "data: [DONE]\n\n";
std::string dump_json(const Json& value);  // invalid UTF-8 replaced, never throws

// Random ids: "cmpl-<32 hex>", "chatcmpl-<32 hex>".
std::string random_id(const std::string& prefix);

}  // namespace moeserve
