#include "runtime/logprobs.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace moeserve {

TokenLogprob compute_logprobs(std::span<const float> logits, int32_t token, int top_k) {
  const float max_logit = *std::max_element(logits.begin(), logits.end());
  double sum = 0.0;
  for (float logit : logits) sum += std::exp(static_cast<double>(logit - max_logit));
  const float log_normalizer = max_logit + static_cast<float>(std::log(sum));
  TokenLogprob result;
  result.token_id = token;
  result.logprob = logits[token] - log_normalizer;
  if (top_k > 0) {
    std::vector<int32_t> order(logits.size());
    std::iota(order.begin(), order.end(), 0);
    const int k = std::min<int>(top_k, static_cast<int>(order.size()));
    std::partial_sort(order.begin(), order.begin() + k, order.end(),
                      [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); });
    for (int i = 0; i < k; ++i) result.top.emplace_back(order[i], logits[order[i]] - log_normalizer);
  }
  return result;
}

}  // namespace moeserve
