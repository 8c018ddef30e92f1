// runtime/perplexity: the NLL of one token against hand-computed log-softmaxes, the running mean
// and its standard error against llama-perplexity's formula, the window plan against hand-drawn
// windows, and compute_perplexity over a toy model whose every NLL is known in closed form, so
// each token must be scored exactly once, against the right logits row.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

#include "runtime/perplexity.h"

namespace moeserve {
namespace {

TEST(TokenNll, UniformLogitsGiveLogVocab) {
  const std::vector<float> logits(4, 0.0f);  // [vocab = 4]
  for (int32_t target = 0; target < 4; ++target) EXPECT_NEAR(token_nll(logits, target), std::log(4.0), 1e-15);
}

TEST(TokenNll, HandComputedSoftmax) {
  // softmax([0, ln 3]) = [1/4, 3/4].
  const std::vector<float> logits = {0.0f, static_cast<float>(std::log(3.0))};
  EXPECT_NEAR(token_nll(logits, 0), std::log(4.0), 1e-7);
  EXPECT_NEAR(token_nll(logits, 1), std::log(4.0 / 3.0), 1e-7);
  // softmax([1, 2, 3]): -log p(2) = log(e^1 + e^2 + e^3) - 3.
  const std::vector<float> three = {1.0f, 2.0f, 3.0f};
  EXPECT_NEAR(token_nll(three, 2), std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0)) - 3.0, 1e-12);
}

TEST(TokenNll, LargeLogitsDoNotOverflow) {
  const std::vector<float> logits = {1000.0f, 0.0f};
  EXPECT_NEAR(token_nll(logits, 1), 1000.0, 1e-9);
  EXPECT_NEAR(token_nll(logits, 0), 0.0, 1e-12);
  const std::vector<float> low = {-1000.0f, -1000.0f};
  EXPECT_NEAR(token_nll(low, 0), std::log(2.0), 1e-12);
}

TEST(TokenNll, NonFiniteLogitsGiveNonFiniteNll) {
  const std::vector<float> logits = {std::numeric_limits<float>::quiet_NaN(), 0.0f};
  EXPECT_FALSE(std::isfinite(token_nll(logits, 1)));
}

TEST(NllStats, HandComputedMeanAndError) {
  NllStats stats;
  for (double nll : {1.0, 2.0, 3.0}) stats.add(nll);
  EXPECT_EQ(stats.count, 3);
  EXPECT_NEAR(stats.mean, 2.0, 1e-15);
  EXPECT_NEAR(stats.perplexity(), std::exp(2.0), 1e-12);
  // Population variance 2/3, divided by count - 1 = 2: 1/3.
  EXPECT_NEAR(stats.mean_stderr(), std::sqrt(1.0 / 3.0), 1e-15);
  EXPECT_NEAR(stats.perplexity_stderr(), std::exp(2.0) * std::sqrt(1.0 / 3.0), 1e-12);
}

TEST(NllStats, OneTokenHasNoErrorEstimate) {
  NllStats stats;
  stats.add(0.5);
  EXPECT_NEAR(stats.perplexity(), std::exp(0.5), 1e-15);
  EXPECT_TRUE(std::isnan(stats.mean_stderr()));
}

TEST(NllStats, MatchesLlamaPerplexityFormula) {
  // llama-perplexity: nll = Σx / n, nll2 = Σx² / n - nll², err = sqrt(nll2 / (n - 1)).
  std::mt19937_64 rng(7);
  std::gamma_distribution<double> nlls(2.0, 1.5);
  NllStats stats;
  double sum = 0.0, sum_squares = 0.0;
  const int n = 10000;
  for (int i = 0; i < n; ++i) {
    const double x = nlls(rng);
    stats.add(x);
    sum += x;
    sum_squares += x * x;
  }
  const double mean = sum / n;
  const double err = std::sqrt((sum_squares / n - mean * mean) / (n - 1));
  EXPECT_NEAR(stats.mean, mean, 1e-12);
  EXPECT_NEAR(stats.mean_stderr(), err, 1e-10);
  EXPECT_NEAR(stats.perplexity_stderr(), std::exp(mean) * err, 1e-9);
}

TEST(PerplexityWindows, HandDrawnWithBos) {
  // ctx 4 = BOS + 3 text tokens; each later window moves on 2 and scores the tokens past the
  // previous end.
  auto windows = plan_perplexity_windows(10, 4, 2, /*with_bos=*/true);
  ASSERT_TRUE(windows.ok()) << windows.error().message;
  const std::vector<PerplexityWindow> expected = {
      {.begin = 0, .end = 3, .score_begin = 0},  {.begin = 2, .end = 5, .score_begin = 3},
      {.begin = 4, .end = 7, .score_begin = 5},  {.begin = 6, .end = 9, .score_begin = 7},
      {.begin = 7, .end = 10, .score_begin = 9},
  };
  EXPECT_EQ(*windows, expected);
}

TEST(PerplexityWindows, HandDrawnWithoutBos) {
  // ctx 4 text tokens; the text's first token has nothing before it and is not scored.
  auto windows = plan_perplexity_windows(10, 4, 2, /*with_bos=*/false);
  ASSERT_TRUE(windows.ok()) << windows.error().message;
  const std::vector<PerplexityWindow> expected = {
      {.begin = 0, .end = 4, .score_begin = 1},
      {.begin = 2, .end = 6, .score_begin = 4},
      {.begin = 4, .end = 8, .score_begin = 6},
      {.begin = 6, .end = 10, .score_begin = 8},
  };
  EXPECT_EQ(*windows, expected);
}

TEST(PerplexityWindows, ShortTextIsOneWindow) {
  auto windows = plan_perplexity_windows(3, 512, 256, /*with_bos=*/true);
  ASSERT_TRUE(windows.ok());
  EXPECT_EQ(*windows, (std::vector<PerplexityWindow>{{.begin = 0, .end = 3, .score_begin = 0}}));
}

TEST(PerplexityWindows, RefusesBadShapes) {
  EXPECT_FALSE(plan_perplexity_windows(10, 1, 1, true).ok());   // ctx < 2
  EXPECT_FALSE(plan_perplexity_windows(10, 4, 0, true).ok());   // stride < 1
  EXPECT_FALSE(plan_perplexity_windows(10, 4, 4, true).ok());   // stride > ctx - 1
  EXPECT_FALSE(plan_perplexity_windows(10, 4, 4, false).ok());  // (a token would have no context)
  EXPECT_FALSE(plan_perplexity_windows(1, 4, 2, true).ok());    // fewer than 2 tokens
  EXPECT_FALSE(plan_perplexity_windows(0, 4, 2, false).ok());
  const auto message = plan_perplexity_windows(1, 4, 2, true).error().message;
  EXPECT_NE(message.find("at least 2"), std::string::npos) << message;
}

// A toy model over kVocab tokens that only looks at the current token x: logit ln 3 for
// (x + 1) % kVocab, 0 elsewhere. So p(successor) = 3 / (kVocab + 2), anything else 1 / (kVocab + 2),
// whatever the window: the expected NLL of every token is known without windows.
constexpr int kVocab = 5;
constexpr int32_t kBos = 0;

Tensor successor_logits(std::span<const int32_t> rows) {
  Tensor logits(DType::kF32, Shape{static_cast<int64_t>(rows.size()), kVocab});  // float32 [rows, vocab]
  for (size_t r = 0; r < rows.size(); ++r) logits.f32()[r * kVocab + (rows[r] + 1) % kVocab] = std::log(3.0f);
  return logits;
}

// −log p in closed form, with the logit as stored (ln 3 rounded to float): log(e^L + kVocab − 1) − L
// for the successor, log(e^L + kVocab − 1) for any other token (≈ ln(7/3) and ln 7).
double successor_nll(int32_t previous, int32_t token) {
  const double logit = std::log(3.0f);
  const double log_sum = std::log(std::exp(logit) + (kVocab - 1));
  return token == (previous + 1) % kVocab ? log_sum - logit : log_sum;
}

std::vector<int32_t> test_text(int n) {
  std::mt19937 rng(11);
  std::vector<int32_t> ids = {1};
  while (static_cast<int>(ids.size()) < n) {  // mostly successors, some jumps
    ids.push_back(rng() % 3 == 0 ? static_cast<int32_t>(rng() % kVocab) : (ids.back() + 1) % kVocab);
  }
  return ids;
}

struct Call {
  std::vector<int32_t> context, rows;
};

TEST(ComputePerplexity, ScoresEveryTokenOnceAgainstItsOwnRow) {
  const std::vector<int32_t> ids = test_text(103);
  for (bool with_bos : {true, false}) {
    // The expected mean NLL, token by token, with no windows.
    NllStats expected;
    for (size_t i = with_bos ? 0 : 1; i < ids.size(); ++i)
      expected.add(successor_nll(i == 0 ? kBos : ids[i - 1], ids[i]));
    for (auto [ctx, stride] : {std::pair{3, 1}, {8, 4}, {8, 6}, {16, 5}, {64, 32}, {512, 256}}) {
      if (!with_bos && ctx == 8) stride = 7;  // the largest stride: one token of overlap
      SCOPED_TRACE(::testing::Message() << "bos " << with_bos << " ctx " << ctx << " stride " << stride);
      std::vector<Call> calls;
      const WindowRunner run = [&](std::span<const int32_t> context, std::span<const int32_t> rows) -> Result<Tensor> {
        calls.push_back({{context.begin(), context.end()}, {rows.begin(), rows.end()}});
        return successor_logits(rows);
      };
      int64_t reports = 0;
      const PerplexityOptions options{
          .ctx_size = ctx, .stride = stride, .bos_id = with_bos ? std::optional<int32_t>(kBos) : std::nullopt};
      auto result = compute_perplexity(ids, options, run, [&](const WindowReport& report) {
        EXPECT_EQ(report.index, reports++);
        EXPECT_EQ(report.running.count, report.index + 1 == report.total ? expected.count : report.running.count);
      });
      ASSERT_TRUE(result.ok()) << result.error().message;
      EXPECT_EQ(result->stats.count, expected.count);
      EXPECT_NEAR(result->stats.mean, expected.mean, 1e-12);
      EXPECT_EQ(result->windows_run, static_cast<int64_t>(calls.size()));
      EXPECT_EQ(reports, result->windows_run);
      for (size_t k = 0; k < calls.size(); ++k) {
        const Call& call = calls[k];
        std::vector<int32_t> run_ids = call.context;
        run_ids.insert(run_ids.end(), call.rows.begin(), call.rows.end());
        // A window never runs its last token, so it holds at most ctx - 1 of them...
        EXPECT_LE(static_cast<int>(run_ids.size()), ctx - 1);
        // ...starts with BOS when there is one, then a contiguous slice of the text...
        std::span<const int32_t> text(run_ids);
        if (with_bos) {
          ASSERT_EQ(run_ids.front(), kBos);
          text = text.subspan(1);
        }
        const auto at = std::search(ids.begin(), ids.end(), text.begin(), text.end());
        EXPECT_NE(at, ids.end()) << "window " << k << " is not a slice of the text";
        // ...and after the first window sees at least ctx - stride tokens before each scored one.
        if (k > 0) EXPECT_GE(static_cast<int>(call.context.size()) + 1, ctx - stride) << "window " << k;
      }
    }
  }
}

// With BOS and the largest stride (ctx − 1), windows do not overlap: the first token of each is
// predicted from BOS alone, as in llama-perplexity's chunks.
TEST(ComputePerplexity, LargestStrideWithBosRestartsFromBos) {
  const std::vector<int32_t> ids = test_text(50);
  const WindowRunner run = [](std::span<const int32_t>, std::span<const int32_t> rows) -> Result<Tensor> {
    return successor_logits(rows);
  };
  for (int ctx : {2, 4}) {
    NllStats expected;  // ctx 4: windows of 3 text tokens, so tokens 0, 3, 6, ... follow BOS
    for (size_t i = 0; i < ids.size(); ++i) {
      expected.add(successor_nll(i % (ctx - 1) == 0 ? kBos : ids[i - 1], ids[i]));
    }
    auto result = compute_perplexity(ids, {.ctx_size = ctx, .stride = ctx - 1, .bos_id = kBos}, run);
    ASSERT_TRUE(result.ok());
    EXPECT_EQ(result->stats.count, expected.count);
    EXPECT_NEAR(result->stats.mean, expected.mean, 1e-12) << "ctx " << ctx;
  }
}

TEST(ComputePerplexity, MaxWindowsStopsEarly) {
  const std::vector<int32_t> ids = test_text(100);
  int calls = 0;
  const WindowRunner run = [&](std::span<const int32_t>, std::span<const int32_t> rows) -> Result<Tensor> {
    ++calls;
    return successor_logits(rows);
  };
  auto result = compute_perplexity(ids, {.ctx_size = 10, .stride = 5, .bos_id = kBos, .max_windows = 3}, run);
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(calls, 3);
  EXPECT_EQ(result->windows_run, 3);
  EXPECT_EQ(result->windows_total, 1 + (100 - 9 + 4) / 5);  // 9 text tokens, then 5 more per window
  EXPECT_EQ(result->stats.count, 9 + 5 + 5);
}

TEST(ComputePerplexity, RunnerFailuresAreErrors) {
  const std::vector<int32_t> ids = test_text(40);
  const PerplexityOptions options{.ctx_size = 8, .stride = 4};
  int calls = 0;
  const WindowRunner failing = [&](std::span<const int32_t>, std::span<const int32_t> rows) -> Result<Tensor> {
    if (++calls == 2) return make_error("out of KV blocks");
    return successor_logits(rows);
  };
  auto failed = compute_perplexity(ids, options, failing);
  ASSERT_FALSE(failed.ok());
  EXPECT_NE(failed.error().message.find("window 2/"), std::string::npos) << failed.error().message;
  EXPECT_NE(failed.error().message.find("out of KV blocks"), std::string::npos);

  const WindowRunner short_rows = [](std::span<const int32_t>, std::span<const int32_t> rows) -> Result<Tensor> {
    return successor_logits(rows.first(rows.size() - 1));
  };
  EXPECT_FALSE(compute_perplexity(ids, options, short_rows).ok());

  const WindowRunner nan_logits = [](std::span<const int32_t>, std::span<const int32_t> rows) -> Result<Tensor> {
    Tensor logits = successor_logits(rows);
    logits.f32()[0] = std::numeric_limits<float>::quiet_NaN();
    return logits;
  };
  auto nan = compute_perplexity(ids, options, nan_logits);
  ASSERT_FALSE(nan.ok());
  EXPECT_NE(nan.error().message.find("not finite"), std::string::npos) << nan.error().message;

  const std::vector<int32_t> outside = {1, 2, kVocab + 3};
  auto bad_id = compute_perplexity(outside, options, [](std::span<const int32_t>, std::span<const int32_t> rows) {
    return Result<Tensor>(successor_logits(rows));
  });
  ASSERT_FALSE(bad_id.ok());
  EXPECT_NE(bad_id.error().message.find("outside the vocabulary"), std::string::npos) << bad_id.error().message;
}

}  // namespace
}  // namespace moeserve
