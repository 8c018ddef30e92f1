#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <unordered_map>

namespace moeserve {

void apply_penalties(std::span<float> logits, const SamplingParams& params, std::span<const int32_t> prompt_ids,
                     std::span<const int32_t> output_ids) {
  const int64_t vocab = static_cast<int64_t>(logits.size());
  if (params.repetition_penalty != 1.0f) {
    std::vector<bool> seen(vocab, false);
    for (int32_t id : prompt_ids) seen[id] = true;
    for (int32_t id : output_ids) seen[id] = true;
    for (int64_t id = 0; id < vocab; ++id) {
      if (!seen[id]) continue;
      logits[id] = logits[id] > 0 ? logits[id] / params.repetition_penalty : logits[id] * params.repetition_penalty;
    }
  }
  if (params.presence_penalty != 0.0f || params.frequency_penalty != 0.0f) {
    std::unordered_map<int32_t, int> counts;
    for (int32_t id : output_ids) ++counts[id];
    for (const auto& [id, count] : counts) {
      logits[id] -= params.frequency_penalty * static_cast<float>(count) + params.presence_penalty;
    }
  }
}

int32_t argmax_token(std::span<const float> logits) {
  // The first index of the largest logit (as std::max_element), in two streaming passes: the
  // maximum over 8 independent lanes (vectorisable, no loop-carried index), then its first
  // position. A greedy step over 64 rows of a 32k vocabulary spent ~2 ms in max_element.
  const size_t n = logits.size();
  if (n == 0) return 0;
  constexpr size_t kLanes = 8;
  float lanes[kLanes];
  std::fill(std::begin(lanes), std::end(lanes), logits[0]);
  size_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (size_t l = 0; l < kLanes; ++l) lanes[l] = logits[i + l] > lanes[l] ? logits[i + l] : lanes[l];
  float best = lanes[0];
  for (size_t l = 1; l < kLanes; ++l) best = lanes[l] > best ? lanes[l] : best;
  for (; i < n; ++i) best = logits[i] > best ? logits[i] : best;
  for (size_t j = 0; j < n; ++j)
    if (logits[j] == best) return static_cast<int32_t>(j);
  return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());  // NaNs only
}

int32_t sample_token(std::span<float> logits, const SamplingParams& params, std::mt19937_64& rng) {
  if (params.temperature <= 0.0f) return argmax_token(logits);
  const int64_t vocab = static_cast<int64_t>(logits.size());
  std::vector<int32_t> order(vocab);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
  int64_t keep = vocab;
  if (params.top_k > 0) keep = std::min<int64_t>(keep, params.top_k);
  // Probabilities of the kept candidates after temperature.
  const float max_logit = logits[order[0]] / params.temperature;
  std::vector<double> probs(keep);
  double total = 0.0;
  for (int64_t i = 0; i < keep; ++i) total += probs[i] = std::exp(logits[order[i]] / params.temperature - max_logit);
  for (double& p : probs) p /= total;
  if (params.top_p < 1.0f) {
    double cumulative = 0.0;
    int64_t cut = keep;
    for (int64_t i = 0; i < keep; ++i) {
      cumulative += probs[i];
      if (cumulative >= params.top_p) {
        cut = i + 1;
        break;
      }
    }
    keep = cut;
  }
  if (params.min_p > 0.0f) {
    const double threshold = params.min_p * probs[0];
    int64_t cut = 1;
    while (cut < keep && probs[cut] >= threshold) ++cut;
    keep = cut;
  }
  double kept_total = 0.0;
  for (int64_t i = 0; i < keep; ++i) kept_total += probs[i];
  std::uniform_real_distribution<double> uniform(0.0, kept_total);
  double draw = uniform(rng);
  for (int64_t i = 0; i < keep; ++i) {
    draw -= probs[i];
    if (draw <= 0.0) return order[i];
  }
  return order[keep - 1];
}

}  // namespace moeserve
