// Log-probabilities returned to clients: log_softmax of the model's raw logits (before
// penalties and temperature, vLLM's default "raw_logprobs"), for the sampled token and the
// top-k alternatives.
#pragma once

#include <span>

#include "engine/request.h"

namespace moeserve {

TokenLogprob compute_logprobs(std::span<const float> logits, int32_t token, int top_k);

}  // namespace moeserve
