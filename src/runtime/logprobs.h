// Log-probabilities returned to clients: log_softmax of the model's raw logits (before
// penalties and temperature, vLLM's default "raw_logprobs"), for the sampled token and the
// top-k alternatives.
#pragma once

#include <cstdint>
#include <span>
#include <utility>
#include <vector>

namespace moeserve {

struct TokenLogprob {
  int32_t token_id = 0;
  float logprob = 0.0f;
  // The top-k alternatives at this position (token id, logprob), best first; empty when 0.
  std::vector<std::pair<int32_t, float>> top;
};

TokenLogprob compute_logprobs(std::span<const float> logits, int32_t token, int top_k);

}  // namespace moeserve
