#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

namespace moeserve {

std::vector<LogitEdit> logit_edits(const SamplingParams& params, int vocab, std::span<const int32_t> prompt_ids,
                                   std::span<const int32_t> output_ids, std::span<const int32_t> masked) {
  const bool repetition = repetition_penalized(params);
  const bool counted = count_penalized(params);
  // (token, kind) pairs, sorted and folded into one edit per token.
  std::vector<std::pair<int32_t, int>> marks;
  enum : int { kMasked, kOutput, kPrompt };
  for (int32_t id : masked) marks.emplace_back(id, kMasked);
  if (repetition || counted) {
    for (int32_t id : output_ids) marks.emplace_back(id, kOutput);
  }
  if (repetition) {
    for (int32_t id : prompt_ids) marks.emplace_back(id, kPrompt);
  }
  std::sort(marks.begin(), marks.end());
  std::vector<LogitEdit> edits;
  for (const auto& [id, kind] : marks) {
    if (id < 0 || id >= vocab) continue;
    if (edits.empty() || edits.back().token != id) edits.push_back(LogitEdit{.token = id});
    LogitEdit& edit = edits.back();
    if (kind == kMasked) edit.masked = 1;
    if (kind == kOutput && counted) ++edit.output_count;
    if (kind != kMasked && repetition) edit.seen = 1;
  }
  return edits;
}

LogitEditTracker::LogitEditTracker(const SamplingParams& params, int vocab, std::span<const int32_t> prompt_ids)
    : repetition_(repetition_penalized(params)),
      counted_(count_penalized(params)),
      vocab_(vocab) {
  if (repetition_) marks_ = logit_edits(params, vocab, prompt_ids, {});
}

LogitEdit* LogitEditTracker::edit_of(std::vector<LogitEdit>& edits, int32_t token) const {
  if (token < 0 || token >= vocab_) return nullptr;
  auto it = std::lower_bound(edits.begin(), edits.end(), token,
                             [](const LogitEdit& edit, int32_t id) { return edit.token < id; });
  if (it == edits.end() || it->token != token) it = edits.insert(it, LogitEdit{.token = token});
  return &*it;
}

void LogitEditTracker::add_output(int32_t token) {
  if (!repetition_ && !counted_) return;
  LogitEdit* edit = edit_of(marks_, token);
  if (edit == nullptr) return;
  if (counted_) ++edit->output_count;
  if (repetition_) edit->seen = 1;
}

std::vector<LogitEdit> LogitEditTracker::edits(std::span<const int32_t> masked) const {
  std::vector<LogitEdit> edits = marks_;
  for (int32_t id : masked) {
    if (LogitEdit* edit = edit_of(edits, id)) edit->masked = 1;
  }
  return edits;
}

void apply_edits(std::span<float> logits, const SamplingParams& params, std::span<const LogitEdit> edits) {
  const float r = params.repetition_penalty;
  for (const LogitEdit& edit : edits) {
    float& logit = logits[edit.token];
    if (edit.masked) {
      logit = -std::numeric_limits<float>::infinity();
      continue;
    }
    if (edit.seen && r != 1.0f) logit = logit > 0 ? logit / r : logit * r;
    if (edit.output_count > 0)
      logit -= params.frequency_penalty * static_cast<float>(edit.output_count) + params.presence_penalty;
  }
}

double draw_uniform(std::mt19937_64& rng) {
  return std::generate_canonical<double, std::numeric_limits<double>::digits>(rng);
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

int32_t sample_token(std::span<const float> logits, const SamplingParams& params, std::mt19937_64& rng) {
  return params.temperature <= 0.0f ? argmax_token(logits) : sample_with_uniform(logits, params, draw_uniform(rng));
}

int32_t sample_with_uniform(std::span<const float> logits, const SamplingParams& params, double uniform) {
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
  for (int64_t i = 0; i < keep; ++i)
    total += probs[i] = std::exp(static_cast<double>(logits[order[i]] / params.temperature - max_logit));
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
  double draw = uniform * kept_total;
  for (int64_t i = 0; i < keep; ++i) {
    draw -= probs[i];
    if (draw <= 0.0) return order[i];
  }
  return order[keep - 1];
}

}  // namespace moeserve
