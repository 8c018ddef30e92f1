// Token sampling from one row of logits, following vLLM's order: penalties → temperature →
// top-k → top-p → min-p → draw. temperature == 0 is greedy (argmax, lowest id on ties). A
// request's draws come from its own generator seeded by `seed`, so its output does not depend
// on what else is in the batch.
#pragma once

#include <cstdint>
#include <optional>
#include <random>
#include <span>
#include <vector>

namespace moeserve {

struct SamplingParams {
  float temperature = 1.0f;
  float top_p = 1.0f;
  int top_k = 0;  // 0 or -1: disabled
  float min_p = 0.0f;
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  float repetition_penalty = 1.0f;
  std::optional<uint64_t> seed;
};

// Adjusts `logits` in place by the penalties, given the prompt and the generated tokens so far
// (repetition applies to both, presence/frequency to generated tokens only, as in vLLM).
void apply_penalties(std::span<float> logits, const SamplingParams& params, std::span<const int32_t> prompt_ids,
                     std::span<const int32_t> output_ids);

int32_t argmax_token(std::span<const float> logits);

// Picks the next token. `logits` is modified (scaled, masked).
int32_t sample_token(std::span<float> logits, const SamplingParams& params, std::mt19937_64& rng);

}  // namespace moeserve
