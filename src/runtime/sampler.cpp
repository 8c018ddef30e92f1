#include "runtime/sampler.h"

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cmath>
#include <limits>
#include <numeric>
#include <optional>

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

// sample_full_sort's result by exact selection: the definition at its cost (every relevant term in
// double, its candidates radix-sorted), for the rows and draws sample_sliced leaves undecided.
int32_t sample_selected(std::span<const float> logits, const SamplingParams& params, double uniform) {
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

// The fast path: sample_full_sort's choice settled from sums taken in another order, with margins
// wide enough that the full sort's own sums cannot decide otherwise; a row or draw it leaves
// undecided gets sample_selected.
//
// Each relevant candidate (x = logit / T − max >= kRelevant, the same float x as the full sort)
// gets its term approx_exp(x), within 2.3e-16 of the full sort's exp(x), and a slice of x: 2048
// equal slices of [−38, 0], the largest x first. x never decreases with the logit, so slice order
// is the sort's order, and only the few slices a decision lands in are gathered and sorted (by
// logit descending, lowest id first). Each decision of the full sort — the top-k candidates, the
// first cumulative probability >= top_p, the candidates min-p keeps, the one the draw reaches —
// compares a sum of terms (or one term) with a threshold. Both sides' sums are of positive terms,
// so each is within (n + slices) · 2^-53 of the exact sum whatever the order (n: the row's
// length); a comparison whose sides differ by more than margin_for(n) (relative) settles the full
// sort's comparison too. A draw that lands closer to a boundary than that (rare: about 3e-11 of
// the boundary's sum) falls back.
constexpr int kSlices = 2048;
constexpr float kSliceScale = kSlices / 38.0f;  // x's slice: ⌊−x · kSliceScale⌋, at most kSlices − 1

// Relative margin for a row of n logits: 8 times the worst relative error of either side's sums
// ((n + kSlices + 16) · 2^-53: the terms' additions, the normalisation and the draw's
// subtractions), plus the terms' own error (< 1e-15, approx_exp against std::exp).
double margin_for(size_t n) { return 8.0 * static_cast<double>(n + kSlices + 16) * 0x1p-53 + 1e-15; }

struct Hit {
  int64_t index = 0;     // position in the sorted order
  double before = 0.0;   // the terms before it, summed
  double through = 0.0;  // ... and its own
  int32_t id = 0;
};

class SlicedRow {
 public:
  // Terms and slices of a row whose largest logit / T is max_logit (finite).
  void build(std::span<const float> logits, float temperature, float max_logit) {
    logits_ = logits;
    const size_t n = logits.size();
    terms_.resize(n);
    slices_.resize(n);
    double* terms = terms_.data();
    uint16_t* slices = slices_.data();
    const float* values = logits.data();
    // Vectorised: the full sort's x, its term, its slice.
    for (size_t i = 0; i < n; ++i) {
      const float x = values[i] / temperature - max_logit;
      const bool relevant = x >= kRelevant;
      const float clamped = relevant ? x : 0.0f;
      const double term = sampler_internal::approx_exp(clamped);
      terms[i] = relevant ? term : 0.0;
      const int slice = static_cast<int>(-clamped * kSliceScale);
      // Not relevant: one of 8 slices past the last, in turn, so that the histogram's additions
      // below do not wait on each other.
      slices[i] = static_cast<uint16_t>(relevant ? (slice < kSlices ? slice : kSlices - 1) : kSlices + (i & 7));
    }
    std::fill(std::begin(mass_), std::end(mass_), 0.0);
    std::fill(std::begin(count_), std::end(count_), 0);
    for (size_t i = 0; i < n; ++i) {
      mass_[slices[i]] += terms[i];
      ++count_[slices[i]];
    }
    // mass_before_[s], count_before_[s]: of the slices before s (s = kSlices: every relevant one).
    double mass = 0.0;
    int64_t count = 0;
    for (int s = 0; s <= kSlices; ++s) {
      mass_before_[s] = mass;
      count_before_[s] = count;
      if (s < kSlices) {
        mass += mass_[s];
        count += count_[s];
      }
    }
    cached_ = 0;
  }

  int64_t relevant() const { return count_before_[kSlices]; }
  double relevant_mass() const { return mass_before_[kSlices]; }
  std::span<const double> terms() const { return terms_; }

  // The terms of the first `count` candidates (1 <= count <= relevant()), summed.
  double mass_of_first(int64_t count) {
    int s = 0;
    while (count_before_[s + 1] < count) ++s;
    const std::vector<uint64_t>& items = sorted_slice(s);
    double mass = mass_before_[s];
    for (int64_t i = 0; i < count - count_before_[s]; ++i) mass += terms_[static_cast<uint32_t>(items[i])];
    return mass;
  }

  // The first candidate whose running sum of terms reaches `target`; nullopt past the relevant.
  std::optional<Hit> first_reaching(double target) {
    int s = 0;
    while (s < kSlices && mass_before_[s + 1] < target) ++s;
    for (; s < kSlices; ++s) {
      if (count_[s] == 0) continue;
      const std::vector<uint64_t>& items = sorted_slice(s);
      double mass = mass_before_[s];
      for (size_t i = 0; i < items.size(); ++i) {
        const uint32_t id = static_cast<uint32_t>(items[i]);
        const double before = mass;
        mass += terms_[id];
        if (mass >= target) {
          return Hit{.index = count_before_[s] + static_cast<int64_t>(i),
                     .before = before,
                     .through = mass,
                     .id = static_cast<int32_t>(id)};
        }
      }
    }
    return std::nullopt;
  }

 private:
  // Slice s's candidates as (descending key, id) items, ascending: the full sort's order.
  const std::vector<uint64_t>& sorted_slice(int s) {
    for (int c = 0; c < cached_; ++c)
      if (cached_slice_[c] == s) return cache_[c];
    const int slot = cached_ < kCache ? cached_++ : kCache - 1;
    std::vector<uint64_t>& items = cache_[slot];
    cached_slice_[slot] = s;
    items.clear();
    const uint16_t* slices = slices_.data();
    for (size_t i = 0; i < slices_.size(); ++i)
      if (slices[i] == s) items.push_back(uint64_t{descending_key(logits_[i])} << 32 | static_cast<uint32_t>(i));
    if (!std::is_sorted(items.begin(), items.end())) std::sort(items.begin(), items.end());
    return items;
  }

  static constexpr int kCache = 4;
  std::span<const float> logits_;
  std::vector<double> terms_;
  std::vector<uint16_t> slices_;
  double mass_[kSlices + 8];
  int64_t count_[kSlices + 8];
  double mass_before_[kSlices + 1];
  int64_t count_before_[kSlices + 1];
  std::vector<uint64_t> cache_[kCache];
  int cached_slice_[kCache] = {};
  int cached_ = 0;
};

// sample_full_sort's token, or nullopt when a decision is too close to call (the caller then
// takes the exact path).
std::optional<int32_t> sample_sliced(std::span<const float> logits, const SamplingParams& params, double uniform,
                                     float max_logit) {
  if (logits.size() > (size_t{1} << 24)) return std::nullopt;  // the margin grows with the row
  const double eta = margin_for(logits.size());
  // a < b on both sides: a and b differ by more than either side's error.
  const auto certainly_less = [eta](double a, double b) { return a + eta * std::max(a, b) < b; };
  thread_local SlicedRow row;
  row.build(logits, params.temperature, max_logit);
  const int64_t vocab = static_cast<int64_t>(logits.size());
  const int64_t relevant = row.relevant();
  // Top-k: the first `keep` candidates. Past the relevant ones, the rest change no sum (each of
  // their terms is < 2^-54 against a total >= 1; all together < vocab · 3.2e-17).
  int64_t keep = params.top_k > 0 ? std::min<int64_t>(vocab, params.top_k) : vocab;
  const double total = keep < relevant ? row.mass_of_first(keep) : row.relevant_mass();
  double kept = total;  // the kept candidates' terms, summed
  if (params.top_p < 1.0f) {
    // The first candidate whose cumulative probability reaches top_p.
    const double target = static_cast<double>(params.top_p) * total;
    if (!certainly_less(target, total)) return std::nullopt;
    const std::optional<Hit> hit = row.first_reaching(target);
    if (!hit || (hit->index > 0 && !certainly_less(hit->before, target)) || !certainly_less(target, hit->through))
      return std::nullopt;
    if (hit->index + 1 < keep) {
      keep = hit->index + 1;
      kept = hit->through;
    }
  }
  if (params.min_p > 0.0f) {
    // probs[i] >= min_p · probs[0] is term >= min_p (the top term is exp(0) = 1): a prefix of the
    // order, as terms never increase along it; no term may be too close to min_p to call.
    if (params.min_p < 1e-15f) return std::nullopt;  // the tail's terms could count
    const double min_p = params.min_p, low = min_p * (1.0 - 2 * eta), high = min_p * (1.0 + 2 * eta);
    int64_t above = 0;
    bool close = false;
    for (double term : row.terms()) {
      above += term >= min_p;
      close |= term > low && term < high;
    }
    if (close) return std::nullopt;
    const int64_t cut = std::max<int64_t>(1, above);
    if (cut < keep) {
      keep = cut;
      kept = row.mass_of_first(cut);
    }
  }
  // The draw: the first kept candidate whose running sum reaches uniform × the kept sum.
  const double draw = uniform * kept;
  if (!certainly_less(draw, kept)) return std::nullopt;
  const std::optional<Hit> hit = row.first_reaching(draw);
  if (!hit || hit->index >= keep || (hit->index > 0 && !certainly_less(hit->before, draw)) ||
      !certainly_less(draw, hit->through))
    return std::nullopt;
  return hit->id;
}

}  // namespace

std::optional<int32_t> sampler_internal::sample_fast(std::span<const float> logits, const SamplingParams& params,
                                                     double uniform) {
  if (params.temperature <= 0.0f || logits.empty()) return std::nullopt;
  float max_value = logits[0];
  bool nan = false;
  for (float v : logits) {
    max_value = v > max_value ? v : max_value;
    nan |= v != v;
  }
  if (nan || !std::isfinite(max_value)) return std::nullopt;
  const float max_logit = max_value / params.temperature;
  if (!std::isfinite(max_logit)) return std::nullopt;
  return sample_sliced(logits, params, uniform, max_logit);
}

int32_t sample_with_uniform(std::span<const float> logits, const SamplingParams& params, double uniform) {
  if (params.temperature <= 0.0f) return argmax_token(logits);
  if (const std::optional<int32_t> token = sampler_internal::sample_fast(logits, params, uniform)) return *token;
  // NaN, ±inf or an overflowing logit / T (sample_selected hands those to the full sort), or a
  // decision too close to call from the fast path's sums.
  return sample_selected(logits, params, uniform);
}

}  // namespace moeserve
