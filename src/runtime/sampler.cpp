#include "runtime/sampler.h"

#include <algorithm>
#include <bit>
#include <cstdint>
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

namespace {

// The sampler as first written, over the whole vocabulary stable-sorted by logit: the definition
// sample_with_uniform keeps, and its fallback for rows the fast path does not settle (a NaN or an
// infinite maximum, or a draw or cut that reaches the negligible tail).
int32_t sample_full_sort(std::span<const float> logits, const SamplingParams& params, double uniform) {
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

// Terms (and probabilities) of candidates below kRelevant = exp(-38) ≈ 3.1e-17 are under kTail:
// the total starts from the top candidate's exp(0) = 1, so each of them is less than half the
// spacing of doubles there and rounds away; absorbs_tail checks the same of the other sums.
constexpr float kRelevant = -38.0f;
constexpr double kTail = 0x1p-54;

// True when adding any number of terms in [0, kTail] to `sum`, one at a time, leaves it as is.
bool absorbs_tail(double sum) {
  return kTail < (std::nextafter(sum, std::numeric_limits<double>::infinity()) - sum) / 2;
}

// Top-k at most this large is a partial sort of the candidates; more, a radix sort of them all.
constexpr int64_t kPartialSortMax = 1024;

// An order-preserving key of a non-NaN float, descending: a larger float, a smaller key; −0 and
// +0 alike (they compare equal, so their order is the ids').
uint32_t descending_key(float v) {
  const uint32_t bits = std::bit_cast<uint32_t>(v == 0.0f ? 0.0f : v);
  const uint32_t ascending = (bits & 0x80000000u) != 0 ? ~bits : bits | 0x80000000u;
  return ~ascending;
}

// Stable LSD radix sort of `items` by their upper 32 bits, in 11-bit digits; a digit that all
// items share is skipped. Items that come in ascending by their lower bits are then ascending.
void radix_sort_by_key(std::vector<uint64_t>& items, std::vector<uint64_t>& scratch) {
  constexpr int kBits = 11, kBuckets = 1 << kBits, kDigits = 3;
  const size_t n = items.size();
  if (n < 2) return;
  uint32_t counts[kDigits * kBuckets] = {};
  for (uint64_t item : items) {
    const uint32_t key = static_cast<uint32_t>(item >> 32);
    for (int d = 0; d < kDigits; ++d) ++counts[d * kBuckets + ((key >> (d * kBits)) & (kBuckets - 1))];
  }
  scratch.resize(n);
  for (int d = 0; d < kDigits; ++d) {
    uint32_t* count = &counts[size_t(d) * kBuckets];
    const int shift = 32 + d * kBits;
    if (count[(items[0] >> shift) & (kBuckets - 1)] == n) continue;
    uint32_t offset = 0;
    for (int b = 0; b < kBuckets; ++b) {
      const uint32_t c = count[b];
      count[b] = offset;
      offset += c;
    }
    for (uint64_t item : items) scratch[count[(item >> shift) & (kBuckets - 1)]++] = item;
    items.swap(scratch);
  }
}

}  // namespace

int32_t sample_with_uniform(std::span<const float> logits, const SamplingParams& params, double uniform) {
  if (params.temperature <= 0.0f) return argmax_token(logits);
  // sample_full_sort's result without sorting the vocabulary: only the candidates whose terms can
  // reach a sum (exp(logit / T − max) >= kTail) are selected, and of them only the top k (by
  // partial sort) when top-k keeps fewer; the tail beyond them rounds away from the total and the
  // kept total, and a cut or a draw that would reach it falls back to the full sort.
  const int64_t vocab = static_cast<int64_t>(logits.size());
  const float temperature = params.temperature;
  if (vocab == 0) return sample_full_sort(logits, params, uniform);
  float max_value = logits[0];
  bool nan = false;
  for (float v : logits) {
    max_value = v > max_value ? v : max_value;
    nan |= v != v;
  }
  if (nan || !std::isfinite(max_value)) return sample_full_sort(logits, params, uniform);
  const float max_logit = max_value / temperature;
  if (!std::isfinite(max_logit)) return sample_full_sort(logits, params, uniform);
  // The relevant prefix of the order, by logit descending and lowest id first on ties (the
  // stable sort's order): x = logit / T − max is monotone in the logit, so {x >= kRelevant} is a
  // prefix. Each candidate is one 64-bit item, its descending key above its id, so ascending items
  // are that order.
  // Buffers kept per thread: a fresh vocabulary-sized allocation per token costs page faults.
  thread_local std::vector<uint64_t> items, scratch;
  thread_local std::vector<double> probs;
  items.clear();
  items.reserve(static_cast<size_t>(vocab));
  for (int64_t i = 0; i < vocab; ++i)
    if (logits[i] / temperature - max_logit >= kRelevant)
      items.push_back(uint64_t{descending_key(logits[i])} << 32 | static_cast<uint32_t>(i));
  int64_t keep = vocab;
  if (params.top_k > 0) keep = std::min<int64_t>(keep, params.top_k);
  int64_t sorted = static_cast<int64_t>(items.size());
  if (keep < sorted && keep <= kPartialSortMax) {
    std::partial_sort(items.begin(), items.begin() + keep, items.end());
    sorted = keep;
  } else {
    radix_sort_by_key(items, scratch);
    sorted = std::min(sorted, keep);
  }
  const auto order = [&](int64_t i) { return static_cast<int32_t>(items[i] & 0xffffffffu); };
  const bool tail = keep > sorted;  // kept candidates past the relevant prefix, each term < kTail
  probs.resize(static_cast<size_t>(sorted));
  double total = 0.0;
  for (int64_t i = 0; i < sorted; ++i)
    total += probs[i] = std::exp(static_cast<double>(logits[order(i)] / temperature - max_logit));
  if (tail && !absorbs_tail(total)) return sample_full_sort(logits, params, uniform);
  for (int64_t i = 0; i < sorted; ++i) probs[i] /= total;  // the tail's probabilities stay below kTail (total >= 1)
  if (params.top_p < 1.0f) {
    double cumulative = 0.0;
    int64_t cut = -1;
    for (int64_t i = 0; i < sorted; ++i) {
      cumulative += probs[i];
      if (cumulative >= params.top_p) {
        cut = i + 1;
        break;
      }
    }
    if (cut < 0 && tail) return sample_full_sort(logits, params, uniform);
    keep = cut < 0 ? keep : cut;
  }
  if (params.min_p > 0.0f) {
    const double threshold = params.min_p * probs[0];
    int64_t cut = 1;
    while (cut < keep && cut < sorted && probs[cut] >= threshold) ++cut;
    if (cut == sorted && cut < keep && !(kTail < threshold)) return sample_full_sort(logits, params, uniform);
    keep = cut;
  }
  const int64_t summed = std::min(keep, sorted);
  double kept_total = 0.0;
  for (int64_t i = 0; i < summed; ++i) kept_total += probs[i];
  if (keep > summed && !absorbs_tail(kept_total)) return sample_full_sort(logits, params, uniform);
  double draw = uniform * kept_total;
  for (int64_t i = 0; i < summed; ++i) {
    draw -= probs[i];
    if (draw <= 0.0) return order(i);
  }
  if (keep > summed) return sample_full_sort(logits, params, uniform);  // the draw runs into the tail
  return order(keep - 1);
}

}  // namespace moeserve
