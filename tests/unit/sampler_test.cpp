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

}  // namespace
}  // namespace moeserve
