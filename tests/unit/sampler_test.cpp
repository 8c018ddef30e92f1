// The host sampler, the reference of the CUDA runner's sample_rows:
//   - argmax_token returns the first index of the largest logit, as std::max_element does, for
//     any length (tails shorter than its 8 lanes) and with ties;
//   - logit_edits + apply_edits apply masks and vLLM's penalties as written out by hand here, and
//     LogitEditTracker (the engine's incremental version) gives logit_edits' edits at every step;
//   - sample_token is sample_with_uniform with one draw from the generator, and the tokens it
//     draws follow the probabilities left after temperature, top-k, top-p and min-p.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <numeric>
#include <optional>
#include <random>
#include <vector>

#include "runtime/sampler.h"

namespace moeserve {
namespace {

int32_t reference(const std::vector<float>& v) {
  return static_cast<int32_t>(std::max_element(v.begin(), v.end()) - v.begin());
}

TEST(ArgmaxToken, MatchesMaxElementOnRandomRowsOfEveryLength) {
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  for (int n : {1, 2, 7, 8, 9, 15, 16, 17, 1000, 32000, 151936}) {
    for (int trial = 0; trial < 20; ++trial) {
      std::vector<float> v(n);
      for (float& x : v) x = normal(rng);
      ASSERT_EQ(argmax_token(v), reference(v)) << n;
    }
  }
}

TEST(ArgmaxToken, FirstOfTiesAndMaxInTheTailOrAtTheEdges) {
  std::vector<float> v(21, -1.0f);
  v[20] = 5.0f;  // the tail past the last full group of 8
  EXPECT_EQ(argmax_token(v), 20);
  v[3] = 5.0f;
  v[11] = 5.0f;
  EXPECT_EQ(argmax_token(v), 3);
  std::vector<float> all_equal(13, 0.5f);
  EXPECT_EQ(argmax_token(all_equal), 0);
  std::vector<float> negative = {-9.0f, -3.0f, -7.0f};
  EXPECT_EQ(argmax_token(negative), 1);
}

TEST(LogitEdits, MasksAndPenaltiesAsVllmDefinesThem) {
  const SamplingParams params{.presence_penalty = 0.5f, .frequency_penalty = 0.25f, .repetition_penalty = 2.0f};
  // prompt {1, 2}, output {2, 3, 3}, token 4 masked, 9 out of the vocabulary.
  const std::vector<int32_t> prompt = {1, 2}, output = {2, 3, 3}, masked = {4, 9};
  const std::vector<LogitEdit> edits = logit_edits(params, 6, prompt, output, masked);
  ASSERT_EQ(edits.size(), 4u);
  EXPECT_EQ(edits[0].token, 1);
  EXPECT_EQ(edits[0].output_count, 0);
  EXPECT_EQ(edits[1].token, 2);
  EXPECT_EQ(edits[1].output_count, 1);
  EXPECT_EQ(edits[2].output_count, 2);
  EXPECT_EQ(edits[3].masked, 1);
  std::vector<float> logits = {1.0f, 3.0f, -1.0f, 4.0f, 7.0f, 0.5f};
  apply_edits(logits, params, edits);
  EXPECT_FLOAT_EQ(logits[0], 1.0f);                     // untouched
  EXPECT_FLOAT_EQ(logits[1], 1.5f);                     // prompt only: 3 / 2
  EXPECT_FLOAT_EQ(logits[2], -2.0f - 0.25f - 0.5f);     // −1 · 2, then once in the output
  EXPECT_FLOAT_EQ(logits[3], 2.0f - 2 * 0.25f - 0.5f);  // 4 / 2, then twice
  EXPECT_EQ(logits[4], -std::numeric_limits<float>::infinity());
  EXPECT_FLOAT_EQ(logits[5], 0.5f);
  // Nothing to do: no edits at all.
  EXPECT_TRUE(logit_edits(SamplingParams{}, 6, prompt, output).empty());
}

bool same_edits(const std::vector<LogitEdit>& a, const std::vector<LogitEdit>& b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(), [](const LogitEdit& x, const LogitEdit& y) {
    return x.token == y.token && x.output_count == y.output_count && x.seen == y.seen && x.masked == y.masked;
  });
}

// The engine's per-request tracker gives logit_edits' edits after every output token, for every
// mix of penalties, with repeated ids, ids outside the vocabulary and masks that come and go.
TEST(LogitEditTracker, EqualsLogitEditsAfterEveryToken) {
  std::mt19937 rng(7);
  const int vocab = 50;
  std::uniform_int_distribution<int32_t> id(-3, vocab + 3);  // some outside the vocabulary
  const SamplingParams cases[] = {
      {.repetition_penalty = 1.3f},
      {.presence_penalty = 0.5f},
      {.frequency_penalty = 0.25f},
      {.presence_penalty = 0.5f, .frequency_penalty = 0.25f, .repetition_penalty = 2.0f},
      {},
  };
  for (const SamplingParams& params : cases) {
    std::vector<int32_t> prompt(40);
    for (int32_t& p : prompt) p = id(rng);
    LogitEditTracker tracker(params, vocab, prompt);
    std::vector<int32_t> output;
    for (int step = 0; step < 60; ++step) {
      std::vector<int32_t> masked;
      if (step % 3 == 0) masked = {id(rng), id(rng), prompt[0]};
      ASSERT_TRUE(same_edits(tracker.edits(masked), logit_edits(params, vocab, prompt, output, masked)))
          << "step " << step << " repetition " << params.repetition_penalty;
      const int32_t token = step % 4 == 0 ? prompt[step % prompt.size()] : id(rng);
      output.push_back(token);
      tracker.add_output(token);
    }
  }
}

TEST(SampleToken, IsSampleWithUniformOfOneDrawAndFollowsTheKeptProbabilities) {
  // Logits 0..7 → descending order 7, 6, ..., with a tie between 2 and 5 (2 first).
  const std::vector<float> logits = {0.1f, 0.2f, 1.0f, 0.3f, 0.4f, 1.0f, 1.5f, 2.0f};
  const SamplingParams params{.temperature = 0.7f, .top_p = 0.9f, .top_k = 5, .min_p = 0.1f};
  // The kept set and its probabilities, written out: top-5 = {7, 6, 2, 5, 4}, then top-p and min-p.
  std::vector<int32_t> order = {7, 6, 2, 5, 4};
  std::vector<double> probs;
  for (int32_t id : order) probs.push_back(std::exp(double(logits[id] / 0.7f - logits[7] / 0.7f)));
  double total = 0;
  for (double p : probs) total += p;
  for (double& p : probs) p /= total;
  size_t keep = 0;
  for (double cumulative = 0; keep < order.size() && cumulative < 0.9f;) cumulative += probs[keep++];
  while (keep > 1 && probs[keep - 1] < 0.1f * probs[0]) --keep;
  double kept = 0;
  for (size_t i = 0; i < keep; ++i) kept += probs[i];

  std::mt19937_64 rng(3), replay(3);
  std::map<int32_t, int> counts;
  const int draws = 20000;
  for (int i = 0; i < draws; ++i) {
    const int32_t token = sample_token(logits, params, rng);
    ASSERT_EQ(token, sample_with_uniform(logits, params, draw_uniform(replay)));
    ++counts[token];
  }
  for (const auto& [token, count] : counts) {
    const auto at = std::find(order.begin(), order.begin() + keep, token);
    ASSERT_NE(at, order.begin() + keep) << "token " << token << " is outside the kept set";
    const double expected = probs[at - order.begin()] / kept;
    EXPECT_NEAR(double(count) / draws, expected, 4 * std::sqrt(expected * (1 - expected) / draws)) << token;
  }
  EXPECT_EQ(counts.size(), keep);
  // The draw walks the kept candidates in order: 0 takes the first, just under 1 the last, and
  // the tie between 2 and 5 goes to 2 first.
  EXPECT_EQ(sample_with_uniform(logits, params, 0.0), 7);
  EXPECT_EQ(sample_with_uniform(logits, params, std::nextafter(1.0, 0.0)), order[keep - 1]);
  ASSERT_GE(keep, 3u);
  EXPECT_EQ(sample_with_uniform(logits, params, (probs[0] + probs[1] + probs[2] / 2) / kept), 2);
  EXPECT_EQ(sample_with_uniform(logits, {.temperature = 0.0f}, 0.5), 7);  // greedy ignores the draw
}


// The sampler as first written, spelled out over the whole vocabulary: stable-sorted by logit
// (lowest id first on ties), probabilities exp(logit / T − max) in double over top-k, the first
// cumulative probability >= top_p, min-p against the first probability, then the first candidate
// whose running draw reaches 0 (the last kept one if none does). Built once per row and settings
// (the row's stable sort is shared among settings, as it depends on none); pick() is its choice
// for one draw.
struct FullSortSampler {
  std::vector<int32_t> order;
  std::vector<double> probs;
  int64_t keep = 0;
  double kept_total = 0.0;

  static std::vector<int32_t> stable_order(const std::vector<float>& logits) {
    std::vector<int32_t> order(logits.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
    return order;
  }

  FullSortSampler(const std::vector<float>& logits, const SamplingParams& params)
      : FullSortSampler(logits, stable_order(logits), params) {}

  FullSortSampler(const std::vector<float>& logits, std::vector<int32_t> sorted, const SamplingParams& params)
      : order(std::move(sorted)) {
    const int64_t vocab = static_cast<int64_t>(logits.size());
    keep = params.top_k > 0 ? std::min<int64_t>(vocab, params.top_k) : vocab;
    const float max_logit = logits[order[0]] / params.temperature;
    probs.resize(keep);
    double total = 0.0;
    for (int64_t i = 0; i < keep; ++i) {
      probs[i] = std::exp(static_cast<double>(logits[order[i]] / params.temperature - max_logit));
      total += probs[i];
    }
    for (double& p : probs) p /= total;
    if (params.top_p < 1.0f) {
      double cumulative = 0.0;
      for (int64_t i = 0; i < keep; ++i) {
        cumulative += probs[i];
        if (cumulative >= params.top_p) {
          keep = i + 1;
          break;
        }
      }
    }
    if (params.min_p > 0.0f) {
      int64_t cut = 1;
      while (cut < keep && probs[cut] >= params.min_p * probs[0]) ++cut;
      keep = cut;
    }
    for (int64_t i = 0; i < keep; ++i) kept_total += probs[i];
  }

  int32_t pick(double uniform) const {
    double draw = uniform * kept_total;
    for (int64_t i = 0; i < keep; ++i) {
      draw -= probs[i];
      if (draw <= 0.0) return order[i];
    }
    return order[keep - 1];
  }
};

// sample_with_uniform selects only the candidates it needs instead of sorting the vocabulary;
// its token must be the full sort's for every row, setting and draw: random rows of 1003, 32000
// and 151936 logits (narrow, so every logit counts, and wide, so most are negligible), with ties
// (a quarter on a coarse grid, ±0 among them) and −inf entries, under every combination of
// top-k, top-p and min-p at several temperatures, with random draws, 0, just under 1, and draws
// landing exactly on the full sort's cumulative boundaries.
TEST(SampleWithUniform, EqualsTheFullSortOnRandomRowsSettingsAndDraws) {
  std::mt19937_64 rng(24);
  const std::vector<float> temperatures = {1.0f, 0.7f, 0.05f, 3.0f};
  const std::vector<int> top_ks = {0, 1, 2, 50, 1000, 5000};
  const std::vector<float> top_ps = {1.0f, 0.95f, 0.5f, 0.9999999f};
  const std::vector<float> min_ps = {0.0f, 0.05f, 1e-20f};
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  int compared = 0;
  for (int vocab : {1003, 32000, 151936}) {
    const int rows = vocab == 151936 ? 2 : 4;
    for (int row = 0; row < rows; ++row) {
      const float spread = row % 2 == 0 ? 3.0f : 25.0f;
      std::normal_distribution<float> normal(0.0f, spread);
      std::vector<float> logits(vocab);
      for (float& v : logits) v = normal(rng);
      for (int i = 0; i < vocab; i += 4) logits[i] = std::round(logits[i] * 2.0f) / 2.0f;  // ties
      for (int i = 1; i < vocab; i += 97) logits[i] = -std::numeric_limits<float>::infinity();
      for (int i = 2; i < vocab; i += 1009) logits[i] = i % 2 == 0 ? 0.0f : -0.0f;
      // A tie at the top, between a low and a high id.
      const float top = *std::max_element(logits.begin(), logits.end());
      logits[vocab - 3] = top;
      logits[5] = top;
      const std::vector<int32_t> order = FullSortSampler::stable_order(logits);
      for (float temperature : temperatures) {
        for (int top_k : top_ks) {
          for (float top_p : top_ps) {
            for (float min_p : min_ps) {
              const SamplingParams params{.temperature = temperature, .top_p = top_p, .top_k = top_k, .min_p = min_p};
              const FullSortSampler want(logits, order, params);
              std::vector<double> draws = {0.0, std::nextafter(1.0, 0.0), 0.5};
              for (int d = vocab > 100000 ? 2 : 6; d > 0; --d) draws.push_back(uniform(rng));
              // Draws on the boundaries: the cumulative probability of the first few kept, / kept total.
              double cumulative = 0.0;
              for (int64_t i = 0; i < std::min<int64_t>(want.keep, 4); ++i) {
                cumulative += want.probs[i];
                draws.push_back(cumulative / want.kept_total);
              }
              for (double u : draws) {
                ASSERT_EQ(sample_with_uniform(logits, params, u), want.pick(u))
                    << "vocab " << vocab << " row " << row << " T " << temperature << " top_k " << top_k << " top_p "
                    << top_p << " min_p " << min_p << " u " << u;
                ++compared;
              }
            }
          }
        }
      }
    }
  }
  EXPECT_GT(compared, 30000);
}

// Rows the selection cannot settle alone fall back to the full sort, with the same result: NaN,
// +inf, all −inf, a temperature so small that logit / T overflows, and a vocabulary of one.
TEST(SampleWithUniform, EqualsTheFullSortOnDegenerateRows) {
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<std::vector<float>> rows = {
      {1.0f, std::nanf(""), 3.0f, 2.0f}, {1.0f, inf, 3.0f, inf}, {-inf, -inf, -inf}, {3e38f, 1.0f, 3e38f, -2.0f},
      {0.5f},
  };
  for (const auto& logits : rows) {
    for (float temperature : {1.0f, 1e-30f}) {
      for (const SamplingParams& params :
           {SamplingParams{.temperature = temperature}, SamplingParams{.temperature = temperature, .top_p = 0.9f},
            SamplingParams{.temperature = temperature, .top_k = 2, .min_p = 0.1f}}) {
        const FullSortSampler want(logits, params);
        for (double u : {0.0, 0.3, 0.7, std::nextafter(1.0, 0.0)})
          EXPECT_EQ(sample_with_uniform(logits, params, u), want.pick(u)) << logits.size() << " T " << temperature;
      }
    }
  }
}

// approx_exp, the fast path's term, against std::exp on floats spread over [−38.5, 0] (its error
// bound, 2.3e-16, was found by checking every float there; the fast path's margin assumes 1e-15).
TEST(SampleFast, ApproxExpIsWithin1e15OfExp) {
  std::mt19937_64 rng(5);
  std::uniform_real_distribution<float> x_of(-38.5f, 0.0f);
  double worst = 0.0;
  for (int i = 0; i < 2'000'000; ++i) {
    const float x = i < 1000 ? -i * 0.0385f : x_of(rng);
    const double want = std::exp(static_cast<double>(x));
    worst = std::max(worst, std::abs(sampler_internal::approx_exp(x) - want) / want);
  }
  EXPECT_LT(worst, 1e-15);
  EXPECT_EQ(sampler_internal::approx_exp(0.0), 1.0);  // the top candidate's term is exactly 1
}

// A row like a language model's: a broad body of logits, a few strong candidates above it, ties
// (a quarter rounded to a grid) and some −inf; or, with `flat`, every logit within 1e-3 of 0.
std::vector<float> model_like_row(std::mt19937_64& rng, int vocab, float spread, bool flat) {
  std::normal_distribution<float> normal(0.0f, spread);
  std::vector<float> logits(vocab);
  for (float& v : logits) v = flat ? normal(rng) * 1e-3f : normal(rng);
  if (!flat) {
    std::uniform_int_distribution<int> id(0, vocab - 1);
    std::exponential_distribution<float> lead(0.5f);
    for (int i = 0; i < 20; ++i) logits[id(rng)] += 4.0f * spread + lead(rng);
  }
  for (int i = 3; i < vocab; i += 4) logits[i] = std::round(logits[i] * 8.0f) / 8.0f;
  for (int i = 7; i < vocab; i += 211) logits[i] = -std::numeric_limits<float>::infinity();
  return logits;
}

// The fast path against the full sort written out above, draw for draw: for random rows (a model's
// shape, flat ones, vocabularies of 32000 and 151936), temperatures, top-k, top-p and min-p, and
// requests with their own seeds, sample_token's token is the full sort's for the same draw of the
// same generator, and every token the fast path settles alone is the full sort's. It must settle
// nearly all of them (else the test would compare only the exact fallback).
TEST(SampleFast, EqualsTheFullSortDrawForDrawWithSeededRequests) {
  std::mt19937_64 rng(2024);
  const SamplingParams settings[] = {
      {.temperature = 1.0f, .top_p = 0.95f},
      {.temperature = 1.0f},
      {.temperature = 0.7f, .top_p = 0.9f, .top_k = 50},
      {.temperature = 1.3f, .top_p = 0.99f, .min_p = 0.01f},
      {.temperature = 0.3f, .top_k = 5000, .min_p = 0.001f},
      {.temperature = 2.0f, .top_p = 0.5f, .top_k = 20000},
  };
  int settled = 0, compared = 0;
  for (int vocab : {32000, 151936}) {
    for (int row = 0; row < (vocab > 100000 ? 3 : 8); ++row) {
      const float spread = row % 3 == 0 ? 1.0f : row % 3 == 1 ? 2.5f : 6.0f;
      const std::vector<float> logits = model_like_row(rng, vocab, spread, row == 4);
      const std::vector<int32_t> order = FullSortSampler::stable_order(logits);
      for (const SamplingParams& base : settings) {
        SamplingParams params = base;
        params.seed = rng();
        const FullSortSampler want(logits, order, params);
        std::mt19937_64 request(*params.seed), replay(*params.seed);
        for (int draw = 0; draw < (vocab > 100000 ? 20 : 60); ++draw) {
          const double u = draw_uniform(replay);
          const int32_t expected = want.pick(u);
          if (const std::optional<int32_t> fast = sampler_internal::sample_fast(logits, params, u)) {
            ASSERT_EQ(*fast, expected) << "fast path: vocab " << vocab << " row " << row << " T " << params.temperature
                                       << " top_k " << params.top_k << " top_p " << params.top_p << " min_p "
                                       << params.min_p << " u " << u;
            ++settled;
          }
          ASSERT_EQ(sample_token(logits, params, request), expected)
              << "vocab " << vocab << " row " << row << " T " << params.temperature << " u " << u;
          ++compared;
        }
      }
    }
  }
  EXPECT_GT(compared, 3000);
  EXPECT_GE(settled, compared * 99 / 100)
      << "the fast path left " << compared - settled << " of " << compared << " draws to the exact path";
}

// Draws on the full sort's boundaries (the cumulative probability of a candidate, as the full
// sort sums it, times the kept total) and next to them: the fast path must leave each to the exact
// path or give the full sort's token, never the neighbour's.
TEST(SampleFast, DrawsOnAndNextToBoundariesGiveTheFullSortsToken) {
  std::mt19937_64 rng(31);
  for (int row = 0; row < 6; ++row) {
    const std::vector<float> logits = model_like_row(rng, 32000, row % 2 == 0 ? 1.0f : 3.0f, false);
    for (const SamplingParams& params :
         {SamplingParams{.temperature = 1.0f, .top_p = 0.95f}, SamplingParams{.temperature = 0.8f, .min_p = 0.02f}}) {
      const FullSortSampler want(logits, params);
      double cumulative = 0.0;
      for (int64_t i = 0; i < std::min<int64_t>(want.keep, 200); ++i) {
        cumulative += want.probs[i];
        const double boundary = cumulative / want.kept_total;
        for (double u : {boundary, std::nextafter(boundary, 0.0), std::nextafter(boundary, 1.0), boundary * (1 - 1e-12),
                         boundary * (1 + 1e-12)}) {
          if (!(u < 1.0)) continue;
          const std::optional<int32_t> fast = sampler_internal::sample_fast(logits, params, u);
          if (fast) ASSERT_EQ(*fast, want.pick(u)) << "row " << row << " candidate " << i << " u " << u;
          ASSERT_EQ(sample_with_uniform(logits, params, u), want.pick(u)) << "row " << row << " candidate " << i;
        }
      }
    }
  }
}

}  // namespace
}  // namespace moeserve
