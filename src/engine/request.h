// What a client asks the engine for and what comes back. The server turns an OpenAI request
// into one GenerationRequest per choice (n > 1 → n requests) after tokenizing and validating it;
// the engine streams RequestOutput events back through the callback given at submit.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "runtime/logprobs.h"
#include "runtime/sampler.h"

namespace moeserve {

struct StopParams {
  int max_tokens = 16;  // generated tokens at most
  int min_tokens = 0;   // EOS and stop tokens/strings are ignored before this many
  std::vector<std::string> stop;       // stop strings, matched across token boundaries
  std::vector<int32_t> stop_token_ids;  // besides EOS
  bool ignore_eos = false;
  bool include_stop_str_in_output = false;
  bool skip_special_tokens = true;
};

struct GenerationRequest {
  std::string request_id;  // unique among in-flight requests
  std::vector<int32_t> prompt_ids;
  SamplingParams sampling;
  StopParams stop;
  // Number of top log-probabilities to return per generated token (0..20); nullopt = none.
  std::optional<int> logprobs;
};

enum class FinishReason { kStop, kLength, kAbort, kError };
const char* finish_reason_name(FinishReason reason);  // "stop", "length", "abort", "error"

// One streaming event. Text is incremental (new_text since the previous event) and already
// cut at a stop string when one matched. The last event of a request has `finished` set.
struct RequestOutput {
  std::string request_id;
  std::vector<int32_t> new_token_ids;
  std::string new_text;
  std::vector<TokenLogprob> new_logprobs;  // one per new token when logprobs were requested
  bool finished = false;
  std::optional<FinishReason> finish_reason;
  // What stopped it: the matched stop string or stop token id (OpenAI/vLLM `stop_reason`).
  std::optional<std::string> stop_reason_text;
  std::optional<int32_t> stop_reason_token;
  std::string error;  // set when finish_reason == kError
  int num_prompt_tokens = 0;
  int num_output_tokens = 0;   // so far
  int num_cached_tokens = 0;   // prompt tokens served from the prefix cache
};

// Called from the engine thread; must not block (post to your own executor).
using OutputCallback = std::function<void(RequestOutput)>;

}  // namespace moeserve
